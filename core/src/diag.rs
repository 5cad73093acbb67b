//! Diagnostics: errors and warnings that name the file, line, object and offending value.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration is invalid.
    Error,
    /// Suspicious, but valid (an error under `--strict`).
    Warning,
    /// A valid field that ferrolb applies otherwise than MetalLB, on purpose (never an error).
    Note,
}

/// Which rule a diagnostic comes from, so callers and tests classify by type, not by text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// The file is too large, not UTF-8, or contains NUL bytes.
    File,
    /// The YAML does not parse.
    Syntax,
    /// A field has the wrong type (`addresses: 10.0.0.0/24`, `autoAssign: maybe`).
    Type,
    /// A document kind that ferrolb does not read.
    Skipped,
    /// A field that no version of the kind has.
    UnknownField,
    /// A kind ferrolb reads, under an apiVersion it does not.
    ApiVersion,
    /// `metadata.name` missing or empty.
    MissingName,
    /// `metadata.name` is not a Kubernetes object name (an RFC 1123 subdomain).
    BadName,
    /// `spec.addresses` missing or empty.
    NoAddresses,
    /// An address range that does not parse.
    BadAddress,
    /// A CIDR with bits set past its prefix.
    HostBits,
    /// A CIDR written with spaces, which ferrolb trims and MetalLB cannot parse.
    CidrSpaces,
    /// Two address ranges share an address.
    Overlap,
    /// Two objects of one kind with the same name.
    DuplicateName,
    /// A namespace listed twice.
    DuplicateNamespace,
    /// A malformed label selector, match expression, label or priority.
    BadSelector,
    /// A label selector or match expression given twice.
    DuplicateSelector,
    /// An interface name that Linux would not accept.
    BadInterface,
    /// A pool named twice in one `ipAddressPools`.
    DuplicatePoolRef,
    /// An advertisement names a pool that does not exist.
    UnknownPool,
    /// A pool that no advertisement covers.
    UncoveredPool,
    /// The objects of one configuration name different namespaces (MetalLB would read only
    /// those of its own).
    MixedNamespaces,
    /// An object of another namespace than `--config-namespace`, ignored.
    OtherNamespace,
    /// A Service manifest that cannot be read.
    BadService,
    /// `preferredNodeSelectors`: a preferred node that returns does not take an address back.
    PreferenceSticky,
    /// `serviceSelectors`: Services they match cannot share an address; left pending.
    SharingWithServiceSelectors,
}

/// One error or warning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    #[serde(skip)]
    pub severity: Severity,
    /// The rule it comes from.
    pub code: Code,
    /// The file, as the user named it.
    pub file: String,
    /// The line, counted from 1; 0 when the object has no lines (one read from the Kubernetes
    /// API, where `file` names its namespace).
    pub line: u32,
    /// The object's kind, when the problem is inside one.
    pub kind: Option<String>,
    /// The object's name, when it has one.
    pub name: Option<String>,
    /// What is wrong, naming the offending value.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `file:line: error: Kind "name": message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let origin = Origin {
            file: escape_controls(&self.file).into_owned(),
            line: self.line,
        };
        write!(f, "{origin}: {severity}: ")?;
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => write!(f, "{kind} {name:?}: ")?,
            (Some(kind), None) => write!(f, "{kind}: ")?,
            _ => {}
        }
        f.write_str(&escape_controls(&self.message))
    }
}

/// Whether `c` would change a terminal or how text reads rather than show as itself: control
/// characters (newlines, ESC, DEL, C1) and the invisible format characters that reorder or hide
/// text (bidirectional overrides and isolates, zero-width characters, the byte-order mark).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{61c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Text from outside (names, reasons, file names, values read from etcd) made safe to print on a
/// terminal: every control or invisible format character is written as its Rust escape (`\n`,
/// `\u{1b}`, `\u{202e}`); everything else, backslashes included, is left as it is. Borrows when
/// there is nothing to escape.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_invisible_format_characters_are_escaped() {
        assert_eq!(escape_controls("web-1"), "web-1");
        assert!(matches!(escape_controls("web-1"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(escape_controls("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(escape_controls("x\u{7f}\u{9b}"), "x\\u{7f}\\u{9b}");
        assert_eq!(escape_controls("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape_controls("\u{200b}\u{feff}"), "\\u{200b}\\u{feff}");
        // Printable text, quotes and backslashes stay as written.
        assert_eq!(escape_controls(r#"é "q" \n"#), r#"é "q" \n"#);
    }

    #[test]
    fn a_diagnostic_prints_its_file_and_message_escaped() {
        let d = Diagnostic {
            severity: Severity::Error,
            code: Code::Syntax,
            file: "pools/\u{1b}[31mx.yaml".to_string(),
            line: 3,
            kind: Some("IPAddressPool".to_string()),
            name: Some("a\nb".to_string()),
            message: "bad\nvalue".to_string(),
        };
        assert_eq!(
            d.to_string(),
            r#"pools/\u{1b}[31mx.yaml:3: error: IPAddressPool "a\nb": bad\nvalue"#
        );
    }
}

/// Where an object or value was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The file.
    pub file: String,
    /// The line, counted from 1; 0 for an object without lines (from the Kubernetes API).
    pub line: u32,
}

impl fmt::Display for Origin {
    /// `file:line`, or only `file` when there is no line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => f.write_str(&self.file),
            line => write!(f, "{}:{line}", self.file),
        }
    }
}

/// Collects diagnostics about one object (or one file, when `kind` is `None`).
#[derive(Debug)]
pub struct Sink<'a> {
    /// Where diagnostics go.
    pub out: &'a mut Vec<Diagnostic>,
    /// The file.
    pub file: &'a str,
    /// The object's kind.
    pub kind: Option<&'a str>,
    /// The object's name.
    pub name: Option<&'a str>,
}

impl Sink<'_> {
    /// Records an error.
    pub fn error(&mut self, code: Code, line: u32, message: impl Into<String>) {
        self.push(Severity::Error, code, line, message.into());
    }

    /// Records a warning.
    pub fn warn(&mut self, code: Code, line: u32, message: impl Into<String>) {
        self.push(Severity::Warning, code, line, message.into());
    }

    /// Records a note: a deliberate difference from MetalLB.
    pub fn note(&mut self, code: Code, line: u32, message: impl Into<String>) {
        self.push(Severity::Note, code, line, message.into());
    }

    fn push(&mut self, severity: Severity, code: Code, line: u32, message: String) {
        self.out.push(Diagnostic {
            severity,
            code,
            file: self.file.to_string(),
            line,
            kind: self.kind.map(str::to_string),
            name: self.name.map(str::to_string),
            message,
        });
    }
}
