//! Request bodies and patches: JSON or YAML objects, JSON merge patch (RFC 7386), strategic
//! merge patch (as a merge patch), JSON patch (RFC 6902) and server-side apply (as a merge).

use ferrolb_core::yaml::{self, Node};
use serde_json::{Map, Number, Value};

use super::status::StatusError;

/// How a `PATCH` body is to be applied, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`, applied as a merge patch.
    Strategic,
    /// `application/json-patch+json`.
    Json,
    /// `application/apply-patch+yaml` (server-side apply), merged into the object.
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value, if it is one.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Parses a request body: JSON, or YAML when `yaml` is set or the text is not JSON.
pub(crate) fn parse_body(body: &[u8], yaml: bool) -> Result<Value, StatusError> {
    let undecodable = |why: String| {
        StatusError::bad_request(format!(
            "the body of the request could not be decoded: {why}"
        ))
    };
    if !yaml {
        return serde_json::from_slice(body).map_err(|e| undecodable(e.to_string()));
    }
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let text = std::str::from_utf8(body).map_err(|e| undecodable(e.to_string()))?;
    let documents =
        yaml::parse_documents(text).map_err(|e| undecodable(format!("line {}: {e}", e.line)))?;
    match documents.as_slice() {
        [document] => yaml_to_json(document).map_err(undecodable),
        _ => Err(undecodable(format!(
            "expected one YAML document, found {}",
            documents.len()
        ))),
    }
}

/// Converts a YAML tree to JSON, resolving plain scalars by the YAML 1.2 core schema.
fn yaml_to_json(node: &Node) -> Result<Value, String> {
    Ok(match &node.value {
        yaml::Value::Scalar { text, plain } => {
            if !*plain {
                Value::String(text.clone())
            } else if node.is_null() {
                Value::Null
            } else {
                plain_scalar(text)
            }
        }
        yaml::Value::Seq(items) => {
            Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        yaml::Value::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let key = key
                    .as_str()
                    .ok_or_else(|| format!("line {}: mapping keys must be scalars", key.line))?;
                map.insert(key.to_string(), yaml_to_json(value)?);
            }
            Value::Object(map)
        }
    })
}

fn plain_scalar(text: &str) -> Value {
    match text {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::Number(n.into());
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(n) = i64::from_str_radix(hex, 16)
    {
        return Value::Number(n.into());
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(n) = i64::from_str_radix(oct, 8)
    {
        return Value::Number(n.into());
    }
    let looks_numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    if looks_numeric
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

/// Applies a patch of type `kind` with body `patch` to `target`, giving the patched object.
pub(crate) fn apply(target: &Value, kind: PatchType, patch: &Value) -> Result<Value, StatusError> {
    let mut out = target.clone();
    match kind {
        PatchType::Merge | PatchType::Apply => merge(&mut out, patch),
        PatchType::Strategic => merge(&mut out, &strip_directives(patch)),
        PatchType::Json => json_patch(&mut out, patch)?,
    }
    Ok(out)
}

/// RFC 7386: objects merge recursively, `null` removes a member, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Removes the `$patch`, `$setElementOrder/...`, `$retainKeys` and `$deleteFromPrimitiveList`
/// directives of a strategic merge patch, which a plain merge would otherwise store.
fn strip_directives(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// RFC 6902: `add`, `remove`, `replace`, `move`, `copy` and `test`.
fn json_patch(target: &mut Value, patch: &Value) -> Result<(), StatusError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| StatusError::bad_request("a JSON patch must be an array of operations"))?;
    for (i, op) in ops.iter().enumerate() {
        let failed = |why: &str| {
            StatusError::new(
                422,
                "Invalid",
                format!(
                    "the server rejected our request due to an error in our request: operation {i} ({op}): {why}"
                ),
            )
        };
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| failed("missing op"))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| failed("missing path"))?;
        let path = parse_pointer(path).ok_or_else(|| failed("invalid path"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| failed("missing value"))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .and_then(parse_pointer)
                .ok_or_else(|| failed("missing or invalid from"))
        };
        match name {
            "add" => add(target, &path, value()?).map_err(failed)?,
            "remove" => {
                remove(target, &path).map_err(failed)?;
            }
            "replace" if path.is_empty() => *target = value()?,
            "replace" => {
                remove(target, &path).map_err(failed)?;
                add(target, &path, value()?).map_err(failed)?;
            }
            "move" => {
                let moved = remove(target, &from()?).map_err(failed)?;
                add(target, &path, moved).map_err(failed)?;
            }
            "copy" => {
                let copied = get(target, &from()?)
                    .cloned()
                    .ok_or_else(|| failed("from not found"))?;
                add(target, &path, copied).map_err(failed)?;
            }
            "test" => {
                if get(target, &path) != Some(&value()?) {
                    return Err(failed("test failed"));
                }
            }
            _ => return Err(failed("unknown op")),
        }
    }
    Ok(())
}

/// Splits a JSON pointer into unescaped tokens; `None` unless it is empty or starts with `/`.
fn parse_pointer(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

fn get<'a>(target: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(target, |v, token| match v {
        Value::Object(map) => map.get(token),
        Value::Array(items) => items.get(token.parse::<usize>().ok()?),
        _ => None,
    })
}

fn parent<'a>(target: &'a mut Value, path: &[String]) -> Result<&'a mut Value, &'static str> {
    let mut v = target;
    for token in path {
        v = match v {
            Value::Object(map) => map.get_mut(token).ok_or("path not found")?,
            Value::Array(items) => {
                let i: usize = token.parse().map_err(|_| "invalid array index")?;
                items.get_mut(i).ok_or("array index out of bounds")?
            }
            _ => return Err("path not found"),
        };
    }
    Ok(v)
}

fn add(target: &mut Value, path: &[String], value: Value) -> Result<(), &'static str> {
    let Some((last, init)) = path.split_last() else {
        *target = value;
        return Ok(());
    };
    match parent(target, init)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            let i = if last == "-" {
                items.len()
            } else {
                last.parse().map_err(|_| "invalid array index")?
            };
            if i > items.len() {
                return Err("array index out of bounds");
            }
            items.insert(i, value);
        }
        _ => return Err("path not found"),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &[String]) -> Result<Value, &'static str> {
    let (last, init) = path
        .split_last()
        .ok_or("cannot remove the whole document")?;
    match parent(target, init)? {
        Value::Object(map) => map.remove(last).ok_or("path not found"),
        Value::Array(items) => {
            let i: usize = last.parse().map_err(|_| "invalid array index")?;
            if i >= items.len() {
                return Err("array index out of bounds");
            }
            Ok(items.remove(i))
        }
        _ => Err("path not found"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let patch = json!({"a": "z", "c": {"f": null}, "l": [3]});
        let out = apply(&target, PatchType::Merge, &patch).expect("patch");
        assert_eq!(out, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn strategic_merge_patch_drops_directives() {
        let patch = json!({"metadata": {"labels": {"x": "y"}, "$retainKeys": ["labels"]}});
        let out = apply(&json!({}), PatchType::Strategic, &patch).expect("patch");
        assert_eq!(out, json!({"metadata": {"labels": {"x": "y"}}}));
    }

    #[test]
    fn json_patch_follows_rfc_6902() {
        let target = json!({"status": {"loadBalancer": {}}, "list": [1, 3], "a/b": 1});
        let patch = json!([
            {"op": "add", "path": "/status/loadBalancer/ingress", "value": [{"ip": "1.2.3.4"}]},
            {"op": "add", "path": "/list/1", "value": 2},
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "replace", "path": "/a~1b", "value": 2},
            {"op": "test", "path": "/a~1b", "value": 2},
            {"op": "copy", "from": "/a~1b", "path": "/c"},
            {"op": "move", "from": "/c", "path": "/d"},
            {"op": "remove", "path": "/list/0"},
        ]);
        let out = apply(&target, PatchType::Json, &patch).expect("patch");
        assert_eq!(
            out,
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
                   "list": [2, 3, 4], "a/b": 2, "d": 2})
        );
        let failing = json!([{"op": "replace", "path": "/missing", "value": 1}]);
        assert_eq!(
            apply(&target, PatchType::Json, &failing).map_err(|e| e.code),
            Err(422)
        );
        assert_eq!(
            apply(&target, PatchType::Json, &json!({})).map_err(|e| e.code),
            Err(400)
        );
    }

    #[test]
    fn yaml_bodies_resolve_scalars_like_the_core_schema() {
        let body = b"apiVersion: v1\nkind: Service\nspec:\n  ports:\n  - port: 80\n    name: '80'\n  x: true\n  y: ~\n  z: 1.5\n";
        let out = parse_body(body, true).expect("yaml");
        assert_eq!(
            out,
            json!({"apiVersion": "v1", "kind": "Service",
                   "spec": {"ports": [{"port": 80, "name": "80"}], "x": true, "y": null, "z": 1.5}})
        );
        assert_eq!(parse_body(b"{", false).map_err(|e| e.code), Err(400));
        assert_eq!(parse_body(b"a: [", true).map_err(|e| e.code), Err(400));
    }
}
