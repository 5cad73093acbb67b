//! Diagnostics: errors and warnings that name the file, line, object and offending value.

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
    /// A Service manifest that cannot be read.
    BadService,
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
    /// The line, counted from 1.
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
        };
        write!(f, "{}:{}: {severity}: ", self.file, self.line)?;
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => write!(f, "{kind} {name:?}: ")?,
            (Some(kind), None) => write!(f, "{kind}: ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

/// Where an object or value was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The file.
    pub file: String,
    /// The line, counted from 1.
    pub line: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
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
