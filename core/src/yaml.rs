//! A small YAML tree that remembers the line of every node.
//!
//! Validation messages must name the line of the offending value (`pools/lab.yaml:12: ...`), which
//! serde-based readers cannot give once a value is deserialized. So documents are read with
//! `saphyr-parser` (a maintained, pure-Rust YAML 1.2 parser that reports a position for every
//! event) into [`Node`]s, and the configuration and Service readers walk that tree themselves.
//!
//! Hostile input is bounded here, once, for every reader:
//! - nesting deeper than [`MAX_DEPTH`] is refused (no stack overflow);
//! - aliases are expanded by copying, but never more than [`MAX_ALIAS_NODES`] nodes in a file,
//!   which stops "billion laughs" bombs after a few milliseconds;
//! - the caller bounds the text's size (see `load::MAX_FILE_BYTES`).

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// Deepest nesting of sequences and mappings accepted in a document.
pub const MAX_DEPTH: usize = 64;
/// Most nodes that alias expansion may add to one file.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// One YAML value with the (1-based) line it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Line of the node's first character, counted from 1.
    pub line: u32,
    /// The value itself.
    pub value: Value,
}

/// The shape of a YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar; `plain` is false for quoted and block scalars, which are always strings.
    Scalar { text: String, plain: bool },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order (duplicate keys are refused while reading).
    Map(Vec<(Node, Node)>),
}

/// Why a YAML text could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// Line the problem was found on, counted from 1.
    pub line: u32,
    /// What is wrong, in lowercase words.
    pub message: String,
}

impl Node {
    /// A plain scalar that YAML reads as null (`~`, `null`, or nothing at all).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The text of a scalar that is not null.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    /// The entries of a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The items of a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A short description of the node's type for error messages: `a list`, `"maybe"`, ...
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "a mapping".to_string(),
            Value::Scalar { .. } if self.is_null() => "null".to_string(),
            Value::Scalar { text, .. } => format!("{:?}", truncate(text, 60)),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar { text, .. } => f.write_str(text),
            Value::Seq(items) => write!(f, "[{} items]", items.len()),
            Value::Map(entries) => write!(f, "{{{} entries}}", entries.len()),
        }
    }
}

/// Shortens `text` to at most `max` characters for messages.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

/// Reads every document of a YAML stream. Empty documents come back as null nodes.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        alias_budget: MAX_ALIAS_NODES,
        last_line: 1,
    };
    let mut documents = Vec::new();
    loop {
        let (event, span) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Ok(documents),
            Event::DocumentStart(_) => {
                reader.anchors.clear();
                let (event, span) = reader.next()?;
                documents.push(reader.node(event, span, 0)?);
            }
            other => {
                return Err(YamlError {
                    line: line_of(&span),
                    message: format!("unexpected yaml event {other:?}"),
                });
            }
        }
    }
}

struct Reader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, (Node, usize)>,
    alias_budget: usize,
    last_line: u32,
}

fn line_of(span: &Span) -> u32 {
    u32::try_from(span.start.line()).unwrap_or(u32::MAX)
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok((event, span))) => {
                self.last_line = line_of(&span);
                Ok((event, span))
            }
            Some(Err(e)) => Err(scan_error(&e)),
            None => Err(YamlError {
                line: self.last_line,
                message: "unexpected end of yaml".to_string(),
            }),
        }
    }

    /// Builds the node that starts with `event`; returns it with the number of nodes it holds.
    fn node(&mut self, event: Event<'a>, span: Span, depth: usize) -> Result<Node, YamlError> {
        self.sized_node(event, span, depth).map(|(node, _)| node)
    }

    fn sized_node(
        &mut self,
        event: Event<'a>,
        span: Span,
        depth: usize,
    ) -> Result<(Node, usize), YamlError> {
        let line = line_of(&span);
        if depth > MAX_DEPTH {
            return Err(YamlError {
                line,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        let (node, size, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                let node = Node {
                    line,
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain,
                    },
                };
                (node, 1, anchor)
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                let mut size = 1;
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    let (item, n) = self.sized_node(event, span, depth + 1)?;
                    size += n;
                    items.push(item);
                }
                (
                    Node {
                        line,
                        value: Value::Seq(items),
                    },
                    size,
                    anchor,
                )
            }
            Event::MappingStart(anchor, _tag) => {
                let mut entries: Vec<(Node, Node)> = Vec::new();
                let mut size = 1;
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let (key, n) = self.sized_node(event, span, depth + 1)?;
                    let (event, span) = self.next()?;
                    let (value, m) = self.sized_node(event, span, depth + 1)?;
                    if entries.iter().any(|(k, _)| k.value == key.value) {
                        return Err(YamlError {
                            line: key.line,
                            message: format!("duplicate key {}", key.describe()),
                        });
                    }
                    size += n + m;
                    entries.push((key, value));
                }
                (
                    Node {
                        line,
                        value: Value::Map(entries),
                    },
                    size,
                    anchor,
                )
            }
            Event::Alias(id) => {
                let Some((target, size)) = self.anchors.get(&id) else {
                    return Err(YamlError {
                        line,
                        message: "alias to an unknown anchor".to_string(),
                    });
                };
                if *size > self.alias_budget {
                    return Err(YamlError {
                        line,
                        message: format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)"
                        ),
                    });
                }
                self.alias_budget -= size;
                let mut node = target.clone();
                node.line = line;
                return Ok((node, *size));
            }
            other => {
                return Err(YamlError {
                    line,
                    message: format!("unexpected yaml event {other:?}"),
                });
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok((node, size))
    }
}

fn scan_error(e: &ScanError) -> YamlError {
    YamlError {
        line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
        message: format!("yaml syntax error: {}", e.info()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_several_documents_with_lines() {
        let docs = parse_documents("a: 1\n---\nb:\n  - x\n  - 'y'\n").expect("valid yaml");
        assert_eq!(docs.len(), 2);
        let b = docs[1].get("b").expect("b");
        assert_eq!(b.line, 4);
        let items = b.as_seq().expect("seq");
        assert_eq!(items[1].line, 5);
        assert_eq!(
            items[1].value,
            Value::Scalar {
                text: "y".into(),
                plain: false
            }
        );
    }

    #[test]
    fn empty_document_is_null() {
        let docs = parse_documents("---\n---\na: b\n").expect("valid yaml");
        assert!(docs[0].is_null());
        assert_eq!(docs[1].get("a").and_then(Node::as_str), Some("b"));
    }

    #[test]
    fn syntax_error_names_its_line() {
        let err = parse_documents("a: b\nc: [d\n").expect_err("invalid yaml");
        assert!(err.line >= 2, "line {}", err.line);
        assert!(
            err.message.starts_with("yaml syntax error"),
            "{}",
            err.message
        );
    }

    #[test]
    fn duplicate_key_is_refused() {
        let err = parse_documents("a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(err.line, 2);
        assert!(err.message.contains("duplicate key \"a\""));
    }

    #[test]
    fn aliases_are_expanded() {
        let docs = parse_documents("x: &a [1, 2]\ny: *a\n").expect("valid");
        assert_eq!(
            docs[0].get("y").and_then(Node::as_seq).map(<[Node]>::len),
            Some(2)
        );
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = parse_documents(&text).expect_err("bomb");
        assert!(err.message.contains("alias bomb"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let err = parse_documents(&text).expect_err("too deep");
        assert!(err.message.contains("nesting deeper"), "{}", err.message);
    }
}
