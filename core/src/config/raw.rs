//! Reading `metallb.io/v1beta1` documents into raw objects: strings and numbers with their lines,
//! not yet checked against each other. Type errors are reported here; meaning is checked in
//! `validate`.

use crate::diag::{Code, Diagnostic, Sink};
use crate::yaml::{self, Node, Value};

/// The apiVersion ferrolb reads (MetalLB's, unchanged).
pub const API_VERSION: &str = "metallb.io/v1beta1";
/// Largest configuration or manifest file read, in bytes.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
/// Largest configuration or set of manifests read as one revision, in bytes: the contents and
/// names of all its files together. Each file is bounded by [`MAX_FILE_BYTES`]; this bounds
/// their number too (one blob named by many tree entries, one file behind many symlinks).
pub const MAX_REVISION_BYTES: usize = 4 * MAX_FILE_BYTES;

const BGP_KINDS: [&str; 4] = ["BGPPeer", "BGPAdvertisement", "BFDProfile", "Community"];

/// A value and the line it was written on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Its line.
    pub line: u32,
}

/// A field that may be absent, present, or present with the wrong type (already reported).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Field<T> {
    /// Not written.
    #[default]
    Absent,
    /// Written with the wrong type; the error is recorded.
    Invalid,
    /// Written and readable.
    Present(T),
}

impl<T> Field<T> {
    /// The value, if present.
    pub fn present(&self) -> Option<&T> {
        match self {
            Field::Present(v) => Some(v),
            _ => None,
        }
    }
}

/// The metadata ferrolb reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawMeta {
    /// Line of the document's first node.
    pub line: u32,
    /// `metadata.name`.
    pub name: Option<Located<String>>,
    /// `metadata.namespace`.
    pub namespace: Option<Located<String>>,
    /// `metadata.labels`.
    pub labels: Vec<(Located<String>, Located<String>)>,
}

/// A selector as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawSelector {
    /// Its line.
    pub line: u32,
    /// `matchLabels`.
    pub match_labels: Vec<(Located<String>, Located<String>)>,
    /// `matchExpressions`.
    pub match_expressions: Vec<RawRequirement>,
}

/// A match expression as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawRequirement {
    /// Its line.
    pub line: u32,
    /// `key`.
    pub key: Option<String>,
    /// `operator`.
    pub operator: Option<String>,
    /// `values`.
    pub values: Vec<String>,
}

/// `spec.serviceAllocation` as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawAllocation {
    /// Its line.
    pub line: u32,
    /// `priority`.
    pub priority: Option<Located<i64>>,
    /// `namespaces`.
    pub namespaces: Vec<Located<String>>,
    /// `namespaceSelectors`.
    pub namespace_selectors: Vec<RawSelector>,
    /// `serviceSelectors`.
    pub service_selectors: Vec<RawSelector>,
}

/// An IPAddressPool as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawPool {
    /// Metadata.
    pub meta: RawMeta,
    /// `spec.addresses`, with the list's own line.
    pub addresses: Field<Located<Vec<Located<String>>>>,
    /// `spec.autoAssign`.
    pub auto_assign: Option<bool>,
    /// `spec.avoidBuggyIPs`.
    pub avoid_buggy_ips: Option<bool>,
    /// `spec.serviceAllocation`.
    pub allocation: Option<RawAllocation>,
}

/// An L2Advertisement as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawL2Advertisement {
    /// Metadata.
    pub meta: RawMeta,
    /// `spec.ipAddressPools`.
    pub pools: Vec<Located<String>>,
    /// `spec.ipAddressPoolSelectors`.
    pub pool_selectors: Vec<RawSelector>,
    /// `spec.nodeSelectors`.
    pub node_selectors: Vec<RawSelector>,
    /// `spec.interfaces`.
    pub interfaces: Vec<Located<String>>,
    /// `spec.serviceSelectors`.
    pub service_selectors: Vec<RawSelector>,
    /// `spec.preferredNodeSelectors`.
    pub preferred_node_selectors: Vec<RawPreference>,
}

/// A `preferredNodeSelectors` entry as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawPreference {
    /// Its line.
    pub line: u32,
    /// `weight`.
    pub weight: Option<Located<i64>>,
    /// `preference`.
    pub preference: Option<RawSelector>,
}

/// One object ferrolb reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawObject {
    /// An IPAddressPool.
    Pool(RawPool),
    /// An L2Advertisement.
    L2(RawL2Advertisement),
}

/// What one file holds: the objects that could be read, and what was wrong while reading.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawFile {
    /// The file's name as the user gave it.
    pub name: String,
    /// The IPAddressPool and L2Advertisement objects, in order.
    pub objects: Vec<RawObject>,
    /// Problems found while reading.
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks size and encoding and reads the YAML documents of a file; on failure the diagnostic
/// has been pushed and `None` comes back.
pub fn read_documents(name: &str, bytes: &[u8], out: &mut Vec<Diagnostic>) -> Option<Vec<Node>> {
    let mut sink = Sink {
        out,
        file: name,
        kind: None,
        name: None,
    };
    if bytes.len() > MAX_FILE_BYTES {
        sink.error(
            Code::File,
            1,
            format!(
                "file is larger than {} MiB; refusing to read it",
                MAX_FILE_BYTES >> 20
            ),
        );
        return None;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            sink.error(
                Code::File,
                u32::try_from(line).unwrap_or(u32::MAX),
                "file is not UTF-8 text",
            );
            return None;
        }
    };
    match yaml::parse_documents(text) {
        Ok(docs) => Some(docs),
        Err(e) => {
            sink.error(Code::Syntax, e.line, e.message);
            None
        }
    }
}

/// Reads one configuration file. Never fails: problems become diagnostics.
pub fn parse_file(name: &str, bytes: &[u8]) -> RawFile {
    parse(name, bytes, true)
}

/// Reads one object from the Kubernetes API, serialized, with `name` naming its namespace:
/// like [`parse_file`], but nothing carries a line (they would count lines of ferrolb's
/// serialization, not of anything the user wrote).
pub fn parse_object(name: &str, bytes: &[u8]) -> RawFile {
    parse(name, bytes, false)
}

fn parse(name: &str, bytes: &[u8], lines: bool) -> RawFile {
    let mut file = RawFile {
        name: name.to_string(),
        ..RawFile::default()
    };
    let Some(docs) = read_documents(name, bytes, &mut file.diagnostics) else {
        return file;
    };
    // Pool files kept inside another file: the data of a ConfigMap manifest, or the
    // `pools.configMap.data` of ferrolb's chart values; each text is read as a file's documents.
    let mut docs: Vec<Node> = docs
        .into_iter()
        .flat_map(|doc| embedded(name, doc, &mut file.diagnostics))
        .collect();
    if !lines {
        docs.iter_mut().for_each(Node::forget_lines);
        file.diagnostics.iter_mut().for_each(|d| d.line = 0);
    }
    // `kubectl get ipaddresspools,l2advertisements -A -o yaml` prints one `kind: List`: read
    // its items as documents of their own.
    for doc in &docs {
        let items = match (doc.get("kind").and_then(Node::as_str), doc.get("items")) {
            (Some("List"), Some(items)) => items.as_seq().unwrap_or_default(),
            _ => std::slice::from_ref(doc),
        };
        for item in items {
            if let Some(obj) = parse_document(name, item, &mut file.diagnostics) {
                file.objects.push(obj);
            }
        }
    }
    file
}

/// The texts of a document that holds pool files rather than being one: a `v1` ConfigMap's
/// `data` values, or the `pools.configMap.data` values of ferrolb's chart values (a document
/// without a kind), each with the line its text is written on.
fn embedded_texts(doc: &Node) -> Option<Vec<(u32, String)>> {
    let data = match doc.get("kind").and_then(Node::as_str) {
        Some("ConfigMap") if doc.get("apiVersion").and_then(Node::as_str) == Some("v1") => {
            doc.get("data")?
        }
        None => doc.get("pools")?.get("configMap")?.get("data")?,
        Some(_) => return None,
    };
    Some(
        data.as_map()?
            .iter()
            .filter_map(|(_, v)| Some((v.line, v.as_str()?.to_string())))
            .collect(),
    )
}

/// One embedded text: its first line in the file, the text, and what reading it gave.
type Embedded<'a> = (u32, &'a str, Result<Vec<Node>, yaml::YamlError>);

/// `doc`, or the documents of the pool files it holds. A ConfigMap counts as holding pool files
/// only when one of its texts reads as YAML with an IPAddressPool or L2Advertisement in it:
/// other ConfigMaps in a repository stay skipped documents, and their texts, YAML or not, are
/// not judged. The chart's values always do (`pools.configMap.data` is nothing but pool files),
/// also when they hold none, as the chart's defaults.
fn embedded(file: &str, doc: Node, out: &mut Vec<Diagnostic>) -> Vec<Node> {
    let Some(texts) = embedded_texts(&doc) else {
        return vec![doc];
    };
    let values = doc.get("kind").is_none();
    let read: Vec<Embedded<'_>> = texts
        .iter()
        .map(|(at, text)| (*at, text.as_str(), yaml::parse_documents(text)))
        .collect();
    let pool_kind = |d: &Node| {
        matches!(
            d.get("kind").and_then(Node::as_str),
            Some("IPAddressPool" | "L2Advertisement")
        )
    };
    if !values
        && !read
            .iter()
            .any(|(_, _, r)| r.as_ref().is_ok_and(|docs| docs.iter().any(pool_kind)))
    {
        return vec![doc];
    }
    read.into_iter()
        .flat_map(|(at, text, result)| embedded_documents(file, at, text, result, out))
        .collect()
}

/// The documents of a text whose first line is line `at` of the file (a block scalar's node
/// starts on its first content line), or its syntax error on the file's line.
fn embedded_documents(
    file: &str,
    at: u32,
    text: &str,
    read: Result<Vec<Node>, yaml::YamlError>,
    out: &mut Vec<Diagnostic>,
) -> Vec<Node> {
    let before = at.saturating_sub(1);
    match read {
        Ok(mut docs) => {
            docs.iter_mut().for_each(|d| d.shift_lines(before));
            docs
        }
        Err(e) => {
            let mut sink = Sink {
                out,
                file,
                kind: None,
                name: None,
            };
            // An error at the end of the text is reported on its last line, not after it.
            let last = u32::try_from(text.lines().count().max(1)).unwrap_or(u32::MAX);
            sink.error(
                Code::Syntax,
                e.line.min(last).saturating_add(before),
                e.message,
            );
            Vec::new()
        }
    }
}

fn parse_document(file: &str, doc: &Node, out: &mut Vec<Diagnostic>) -> Option<RawObject> {
    if doc.is_null() {
        return None;
    }
    let mut sink = Sink {
        out,
        file,
        kind: None,
        name: None,
    };
    if doc.as_map().is_none() {
        sink.error(
            Code::Type,
            doc.line,
            format!("a document must be a mapping, found {}", doc.describe()),
        );
        return None;
    }
    let kind = doc.get("kind").and_then(Node::as_str);
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str);
    let Some(kind) = kind else {
        sink.warn(
            Code::Skipped,
            doc.line,
            "skipping a document without a kind",
        );
        return None;
    };
    sink.kind = Some(kind);
    sink.name = name;
    if BGP_KINDS.contains(&kind) {
        sink.warn(
            Code::Skipped,
            doc.line,
            "skipped: BGP mode is not supported; ferrolb announces addresses in layer 2 only",
        );
        return None;
    }
    if kind != "IPAddressPool" && kind != "L2Advertisement" {
        sink.warn(
            Code::Skipped,
            doc.line,
            "skipped: not a kind ferrolb reads (IPAddressPool, L2Advertisement)",
        );
        return None;
    }
    let api = doc.get("apiVersion");
    if api.and_then(Node::as_str) != Some(API_VERSION) {
        let found = api.map_or_else(|| "none".to_string(), Node::describe);
        sink.error(
            Code::ApiVersion,
            api.map_or(doc.line, |n| n.line),
            format!("apiVersion must be {API_VERSION}, found {found}"),
        );
        return None;
    }
    let mut d = Decoder { sink };
    d.known_keys(doc, &["apiVersion", "kind", "metadata", "spec", "status"]);
    let meta = d.meta(doc);
    let spec = doc.get("spec");
    let spec = match spec {
        Some(s) if s.is_null() => None,
        Some(s) if s.as_map().is_none() => {
            d.type_error(s, "spec", "a mapping");
            None
        }
        other => other,
    };
    Some(if kind == "IPAddressPool" {
        RawObject::Pool(d.pool(meta, spec))
    } else {
        RawObject::L2(d.l2(meta, spec))
    })
}

struct Decoder<'a> {
    sink: Sink<'a>,
}

impl Decoder<'_> {
    fn type_error(&mut self, node: &Node, field: &str, expected: &str) {
        self.sink.error(
            Code::Type,
            node.line,
            format!("{field} must be {expected}, found {}", node.describe()),
        );
    }

    fn known_keys(&mut self, node: &Node, known: &[&str]) {
        for (k, _) in node.as_map().unwrap_or_default() {
            let key = k.as_str().unwrap_or_default();
            if !known.contains(&key) {
                self.sink.warn(
                    Code::UnknownField,
                    k.line,
                    format!(
                        "unknown field {}: it is ignored (known: {})",
                        k.describe(),
                        known.join(", ")
                    ),
                );
            }
        }
    }

    fn string(&mut self, node: &Node, field: &str) -> Option<Located<String>> {
        match &node.value {
            Value::Scalar { text, .. } if !node.is_null() => Some(Located {
                value: text.clone(),
                line: node.line,
            }),
            _ => {
                self.type_error(node, field, "a string");
                None
            }
        }
    }

    fn bool(&mut self, parent: Option<&Node>, field: &str) -> Option<bool> {
        let node = parent?.get(field)?;
        if node.is_null() {
            return None;
        }
        match &node.value {
            Value::Scalar { text, plain: true } => match text.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => {
                    self.type_error(node, field, "true or false");
                    None
                }
            },
            _ => {
                self.type_error(node, field, "true or false");
                None
            }
        }
    }

    fn int(&mut self, node: &Node, field: &str) -> Option<Located<i64>> {
        match &node.value {
            Value::Scalar { text, plain: true } => match text.parse::<i64>() {
                Ok(n) => Some(Located {
                    value: n,
                    line: node.line,
                }),
                Err(_) => {
                    self.type_error(node, field, "an integer");
                    None
                }
            },
            _ => {
                self.type_error(node, field, "an integer");
                None
            }
        }
    }

    /// A list of items; null counts as empty, anything else is a type error.
    fn list<'n>(&mut self, node: &'n Node, field: &str) -> Field<&'n [Node]> {
        if node.is_null() {
            return Field::Present(&[]);
        }
        match node.as_seq() {
            Some(items) => Field::Present(items),
            None => {
                self.type_error(node, field, "a list");
                Field::Invalid
            }
        }
    }

    fn string_list(&mut self, parent: Option<&Node>, field: &str) -> Vec<Located<String>> {
        let Some(node) = parent.and_then(|p| p.get(field)) else {
            return Vec::new();
        };
        match self.list(node, field) {
            Field::Present(items) => items
                .iter()
                .filter_map(|i| self.string(i, &format!("an item of {field}")))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn string_map(&mut self, node: &Node, field: &str) -> Vec<(Located<String>, Located<String>)> {
        if node.is_null() {
            return Vec::new();
        }
        let Some(entries) = node.as_map() else {
            self.type_error(node, field, "a mapping of strings");
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|(k, v)| {
                let key = self.string(k, &format!("a key of {field}"))?;
                let value = if v.is_null() {
                    Located {
                        value: String::new(),
                        line: v.line,
                    }
                } else {
                    self.string(v, &format!("{field}.{}", key.value))?
                };
                Some((key, value))
            })
            .collect()
    }

    fn meta(&mut self, doc: &Node) -> RawMeta {
        let mut meta = RawMeta {
            line: doc.line,
            ..RawMeta::default()
        };
        let Some(m) = doc.get("metadata") else {
            return meta;
        };
        if m.as_map().is_none() {
            if !m.is_null() {
                self.type_error(m, "metadata", "a mapping");
            }
            return meta;
        }
        if let Some(n) = m.get("name").filter(|n| !n.is_null()) {
            meta.name = self.string(n, "metadata.name");
        }
        if let Some(n) = m.get("namespace").filter(|n| !n.is_null()) {
            meta.namespace = self.string(n, "metadata.namespace");
        }
        if let Some(l) = m.get("labels") {
            meta.labels = self.string_map(l, "metadata.labels");
        }
        meta
    }

    fn selector(&mut self, node: &Node, field: &str) -> Option<RawSelector> {
        if node.as_map().is_none() {
            self.type_error(
                node,
                field,
                "a label selector (matchLabels, matchExpressions)",
            );
            return None;
        }
        self.known_keys(node, &["matchLabels", "matchExpressions"]);
        let mut sel = RawSelector {
            line: node.line,
            ..RawSelector::default()
        };
        if let Some(ml) = node.get("matchLabels") {
            sel.match_labels = self.string_map(ml, "matchLabels");
        }
        if let Some(me) = node.get("matchExpressions") {
            if let Field::Present(items) = self.list(me, "matchExpressions") {
                for item in items {
                    if item.as_map().is_none() {
                        self.type_error(item, "a match expression", "a mapping");
                        continue;
                    }
                    self.known_keys(item, &["key", "operator", "values"]);
                    let key = item
                        .get("key")
                        .and_then(|k| self.string(k, "key"))
                        .map(|l| l.value);
                    let operator = item
                        .get("operator")
                        .and_then(|k| self.string(k, "operator"))
                        .map(|l| l.value);
                    let values = self
                        .string_list(Some(item), "values")
                        .into_iter()
                        .map(|l| l.value)
                        .collect();
                    sel.match_expressions.push(RawRequirement {
                        line: item.line,
                        key,
                        operator,
                        values,
                    });
                }
            }
        }
        Some(sel)
    }

    fn selectors(&mut self, parent: Option<&Node>, field: &str) -> Vec<RawSelector> {
        let Some(node) = parent.and_then(|p| p.get(field)) else {
            return Vec::new();
        };
        match self.list(node, field) {
            Field::Present(items) => items
                .iter()
                .filter_map(|i| self.selector(i, &format!("an item of {field}")))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn pool(&mut self, meta: RawMeta, spec: Option<&Node>) -> RawPool {
        if let Some(s) = spec {
            self.known_keys(
                s,
                &[
                    "addresses",
                    "autoAssign",
                    "avoidBuggyIPs",
                    "serviceAllocation",
                ],
            );
        }
        let addresses = match spec.and_then(|s| s.get("addresses")) {
            None => Field::Absent,
            Some(node) => match self.list(node, "addresses") {
                Field::Present(items) => Field::Present(Located {
                    line: node.line,
                    value: items
                        .iter()
                        .filter_map(|i| self.string(i, "an address range"))
                        .collect(),
                }),
                _ => Field::Invalid,
            },
        };
        let auto_assign = self.bool(spec, "autoAssign");
        let avoid_buggy_ips = self.bool(spec, "avoidBuggyIPs");
        let allocation = spec
            .and_then(|s| s.get("serviceAllocation"))
            .filter(|n| !n.is_null())
            .and_then(|node| {
                if node.as_map().is_none() {
                    self.type_error(node, "serviceAllocation", "a mapping");
                    return None;
                }
                self.known_keys(
                    node,
                    &[
                        "priority",
                        "namespaces",
                        "namespaceSelectors",
                        "serviceSelectors",
                    ],
                );
                Some(RawAllocation {
                    line: node.line,
                    priority: node
                        .get("priority")
                        .filter(|p| !p.is_null())
                        .and_then(|p| self.int(p, "priority")),
                    namespaces: self.string_list(Some(node), "namespaces"),
                    namespace_selectors: self.selectors(Some(node), "namespaceSelectors"),
                    service_selectors: self.selectors(Some(node), "serviceSelectors"),
                })
            });
        RawPool {
            meta,
            addresses,
            auto_assign,
            avoid_buggy_ips,
            allocation,
        }
    }

    fn l2(&mut self, meta: RawMeta, spec: Option<&Node>) -> RawL2Advertisement {
        if let Some(s) = spec {
            self.known_keys(
                s,
                &[
                    "ipAddressPools",
                    "ipAddressPoolSelectors",
                    "nodeSelectors",
                    "interfaces",
                    "serviceSelectors",
                    "preferredNodeSelectors",
                ],
            );
        }
        RawL2Advertisement {
            meta,
            pools: self.string_list(spec, "ipAddressPools"),
            pool_selectors: self.selectors(spec, "ipAddressPoolSelectors"),
            node_selectors: self.selectors(spec, "nodeSelectors"),
            interfaces: self.string_list(spec, "interfaces"),
            service_selectors: self.selectors(spec, "serviceSelectors"),
            preferred_node_selectors: self.preferences(spec),
        }
    }

    /// `spec.preferredNodeSelectors`: a list of `{weight, preference}` mappings.
    fn preferences(&mut self, spec: Option<&Node>) -> Vec<RawPreference> {
        const FIELD: &str = "preferredNodeSelectors";
        let Some(node) = spec.and_then(|s| s.get(FIELD)) else {
            return Vec::new();
        };
        let Field::Present(items) = self.list(node, FIELD) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            if item.as_map().is_none() {
                self.type_error(
                    item,
                    "an item of preferredNodeSelectors",
                    "a mapping (weight, preference)",
                );
                continue;
            }
            self.known_keys(item, &["weight", "preference"]);
            let weight = item
                .get("weight")
                .filter(|w| !w.is_null())
                .and_then(|w| self.int(w, "weight"));
            let preference = item
                .get("preference")
                .filter(|p| !p.is_null())
                .and_then(|p| self.selector(p, "preference"));
            out.push(RawPreference {
                line: item.line,
                weight,
                preference,
            });
        }
        out
    }
}
