//! A small YAML tree that remembers the line of every node.
//!
//! Validation messages must name the line of the offending value (`pools/lab.yaml:12: ...`), which
//! serde-based readers cannot give once a value is deserialized. So documents are read with
//! `saphyr-parser` (a maintained, pure-Rust YAML 1.2 parser that reports a position for every
//! event) into [`Node`]s, and the configuration and Service readers walk that tree themselves.
//!
//! Hostile input is bounded here, once, for every reader:
//! - nesting deeper than [`MAX_DEPTH`] is refused (no stack overflow);
//! - every copy the reader makes (an anchored value kept for later aliases, and each alias
//!   expanded) is charged to one budget per file, in nodes ([`MAX_COPIED_NODES`]) and in scalar
//!   bytes ([`MAX_COPIED_BYTES`]), and checked *before* the copy is made: "billion laughs" bombs,
//!   one long string aliased many times and deeply nested anchors are all refused with the line
//!   of the alias or anchor, and the tree never grows past a few times the text's size;
//! - mapping keys must be scalars, and duplicates are found with a hash set (linear time);
//! - the caller bounds the text's size (see `load::MAX_FILE_BYTES`).

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// Deepest nesting of sequences and mappings accepted in a document.
pub const MAX_DEPTH: usize = 64;
/// Most nodes that anchors and aliases may copy in one file.
pub const MAX_COPIED_NODES: usize = 100_000;
/// Most scalar bytes that anchors and aliases may copy in one file (as much as the largest file).
pub const MAX_COPIED_BYTES: usize = 4 * 1024 * 1024;

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
    /// Sets the line of this node and of everything in it to 0 ("no line"): for a document that
    /// was not written by a person (an object read from the Kubernetes API).
    pub fn forget_lines(&mut self) {
        self.line = 0;
        match &mut self.value {
            Value::Scalar { .. } => {}
            Value::Seq(items) => items.iter_mut().for_each(Node::forget_lines),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.forget_lines();
                v.forget_lines();
            }),
        }
    }

    /// Adds `by` to the line of this node and of everything in it: for documents read from a
    /// text embedded in another file, whose lines count from that text's start.
    pub fn shift_lines(&mut self, by: u32) {
        self.line = self.line.saturating_add(by);
        match &mut self.value {
            Value::Scalar { .. } => {}
            Value::Seq(items) => items.iter_mut().for_each(|n| n.shift_lines(by)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.shift_lines(by);
                v.shift_lines(by);
            }),
        }
    }

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
        copy_budget: Size {
            nodes: MAX_COPIED_NODES,
            bytes: MAX_COPIED_BYTES,
        },
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
    /// Anchored values of the current document, with their size.
    anchors: HashMap<usize, (Node, Size)>,
    /// What anchors and aliases may still copy in this file.
    copy_budget: Size,
    last_line: u32,
}

/// The size of a subtree: its nodes and the bytes of its scalars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Size {
    nodes: usize,
    bytes: usize,
}

impl Size {
    fn add(self, other: Size) -> Size {
        Size {
            nodes: self.nodes.saturating_add(other.nodes),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// How a mapping key is compared with the other keys of its mapping: YAML reads `a`, `'a'` and
/// `"a"` as the same string, and every spelling of null as null.
#[derive(Debug, PartialEq, Eq, Hash)]
enum KeyId {
    Null,
    Text(String),
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

    /// Builds the node that starts with `event`.
    fn node(&mut self, event: Event<'a>, span: Span, depth: usize) -> Result<Node, YamlError> {
        self.sized_node(event, span, depth).map(|(node, _)| node)
    }

    /// Builds the node that starts with `event`; returns it with its size.
    fn sized_node(
        &mut self,
        event: Event<'a>,
        span: Span,
        depth: usize,
    ) -> Result<(Node, Size), YamlError> {
        let line = line_of(&span);
        if depth > MAX_DEPTH {
            return Err(YamlError {
                line,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        let one = Size { nodes: 1, bytes: 0 };
        let (node, size, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                let size = Size {
                    nodes: 1,
                    bytes: text.len(),
                };
                let node = Node {
                    line,
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain,
                    },
                };
                (node, size, anchor)
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                let mut size = one;
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    let (item, n) = self.sized_node(event, span, depth + 1)?;
                    size = size.add(n);
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
                let mut keys: HashMap<KeyId, u32> = HashMap::new();
                let mut size = one;
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let (key, n) = self.sized_node(event, span, depth + 1)?;
                    if let Some(first) = keys.insert(key_id(&key)?, key.line) {
                        return Err(YamlError {
                            line: key.line,
                            message: format!(
                                "duplicate key {} (first at line {first})",
                                key.describe()
                            ),
                        });
                    }
                    let (event, span) = self.next()?;
                    let (value, m) = self.sized_node(event, span, depth + 1)?;
                    size = size.add(n).add(m);
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
                charge_copy(&mut self.copy_budget, *size, line)?;
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
            // Keeping the anchored value for later aliases is a copy too: nested anchors would
            // otherwise copy each level's subtree again.
            charge_copy(&mut self.copy_budget, size, line)?;
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok((node, size))
    }
}

/// Takes `size` from the copy budget, or refuses the copy (made at `line`) before it is made.
fn charge_copy(budget: &mut Size, size: Size, line: u32) -> Result<(), YamlError> {
    let over = if size.nodes > budget.nodes {
        Some(format!("{MAX_COPIED_NODES} nodes"))
    } else if size.bytes > budget.bytes {
        Some(format!("{} MiB of text", MAX_COPIED_BYTES >> 20))
    } else {
        None
    };
    if let Some(limit) = over {
        return Err(YamlError {
            line,
            message: format!("anchors and aliases expand to more than {limit} (an alias bomb?)"),
        });
    }
    budget.nodes -= size.nodes;
    budget.bytes -= size.bytes;
    Ok(())
}

/// A scalar key's identity; other keys are refused (Kubernetes objects are JSON, whose keys
/// are strings).
fn key_id(key: &Node) -> Result<KeyId, YamlError> {
    match &key.value {
        Value::Scalar { .. } if key.is_null() => Ok(KeyId::Null),
        Value::Scalar { text, .. } => Ok(KeyId::Text(text.clone())),
        _ => Err(YamlError {
            line: key.line,
            message: format!("a mapping key must be a scalar, found {}", key.describe()),
        }),
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
    fn duplicate_key_names_both_lines_among_many_keys() {
        let mut text: String = (0..5_000).map(|i| format!("k{i}: {i}\n")).collect();
        text.push_str("k17: again\n");
        let err = parse_documents(&text).expect_err("duplicate");
        assert_eq!(err.line, 5_001);
        assert_eq!(err.message, "duplicate key \"k17\" (first at line 18)");
    }

    #[test]
    fn quoted_and_plain_spellings_of_a_key_are_the_same_key() {
        let err = parse_documents("name: a\n'name': b\n").expect_err("duplicate");
        assert_eq!(err.line, 2);
        let err = parse_documents("~: a\nnull: b\n").expect_err("duplicate null");
        assert_eq!(err.line, 2);
        // A quoted "null" is a string, not null.
        assert!(parse_documents("~: a\n'null': b\n").is_ok());
    }

    #[test]
    fn keys_that_are_not_scalars_are_refused() {
        let err = parse_documents("a: 1\n? [x, y]\n: 2\n").expect_err("complex key");
        assert_eq!(err.line, 2);
        assert_eq!(err.message, "a mapping key must be a scalar, found a list");
    }

    #[test]
    fn ordinary_aliases_still_load() {
        let text = "base: &base {autoAssign: false, labels: {team: a}}\none: *base\ntwo: *base\n";
        let docs = parse_documents(text).expect("valid");
        let one = docs[0].get("one").expect("one");
        assert_eq!(one.line, 2);
        assert_eq!(
            one.get("labels")
                .and_then(|l| l.get("team"))
                .and_then(Node::as_str),
            Some("a")
        );
        assert_eq!(docs[0].get("two").map(|n| &n.value), Some(&one.value));
    }

    #[test]
    fn one_long_string_aliased_is_refused_at_the_alias_past_the_byte_budget() {
        // The anchor's copy and each alias cost a quarter of the budget plus one byte, so the
        // anchor and two aliases fit and the third alias (line 4) does not.
        let long = "x".repeat(MAX_COPIED_BYTES / 4 + 1);
        let text = format!("a: &s {long}\nb: *s\nc: *s\nd: *s\ne: *s\n");
        let err = parse_documents(&text).expect_err("string bomb");
        assert_eq!(err.line, 4);
        assert_eq!(
            err.message,
            "anchors and aliases expand to more than 4 MiB of text (an alias bomb?)"
        );
        // One alias fewer loads.
        let text = format!("a: &s {long}\nb: *s\nc: *s\n");
        assert!(parse_documents(&text).is_ok());
    }

    #[test]
    fn nested_anchors_without_aliases_are_refused_past_the_byte_budget() {
        // Each anchor keeps a copy of its subtree, and every subtree holds the string: 40 levels
        // copy 40 times the string, more than the budget although the text is small.
        let long = "x".repeat(MAX_COPIED_BYTES / 32);
        let levels = 40;
        let mut text = String::from("a: ");
        for i in 0..levels {
            text.push_str(&format!("&a{i} ["));
        }
        text.push_str(&long);
        text.push_str(&"]".repeat(levels));
        text.push('\n');
        assert!(text.len() < MAX_COPIED_BYTES / 16);
        let err = parse_documents(&text).expect_err("nested anchors");
        assert!(err.message.contains("(an alias bomb?)"), "{}", err.message);
        // With few levels the same string loads.
        let text = format!("a: &a0 [&a1 [{long}]]\n");
        assert!(parse_documents(&text).is_ok());
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
