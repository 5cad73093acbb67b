//! Helpers for the parts of an object the server manages: `apiVersion` and `kind`, name and
//! namespace checks, metadata fields, `generation` and `managedFields`.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::resources::{self, ResourceType};
use super::status::StatusError;
use super::store::{Part, WriteOptions};

/// `400` for a body naming another object than the URL.
pub(crate) fn name_mismatch(body: &str, url: &str) -> StatusError {
    StatusError::bad_request(format!(
        "the name of the object ({body}) does not match the name on the URL ({url})"
    ))
}

/// The served type of an object, from its `apiVersion` and `kind`.
pub(crate) fn type_of(object: &Value) -> Result<&'static ResourceType, StatusError> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    resources::by_kind(api_version, kind).ok_or_else(|| {
        StatusError::new(
            404,
            "NotFound",
            format!("no kind \"{kind}\" is registered for version \"{api_version}\""),
        )
    })
}

/// Checks that the body is an object of type `rt`, filling in `apiVersion` and `kind`.
pub(crate) fn check_type(rt: &ResourceType, object: &mut Value) -> Result<(), StatusError> {
    let Some(map) = object.as_object_mut() else {
        return Err(StatusError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    let api_version = rt.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(api_version));
        }
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(StatusError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(rt.kind));
        }
        Some(k) if k == rt.kind => {}
        Some(k) => {
            return Err(StatusError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )));
        }
    }
    if !map.get("metadata").is_some_and(Value::is_object) {
        map.insert("metadata".into(), json!({}));
    }
    Ok(())
}

/// Sets the namespace a write addresses (`ns`, from the URL) in the object, or removes it for
/// cluster-scoped types; a different namespace in the body is a `400`.
pub(crate) fn set_namespace(
    rt: &ResourceType,
    object: &mut Value,
    ns: Option<&str>,
    name: &str,
) -> Result<(), StatusError> {
    if !rt.namespaced {
        set_meta(object, "namespace", Value::Null);
        return Ok(());
    }
    let given = meta_str(object, "namespace").filter(|n| !n.is_empty());
    let ns = match (ns, given) {
        (Some(url), Some(body)) if url != body => {
            return Err(StatusError::bad_request(format!(
                "the namespace of the provided object ({body}) does not match the namespace sent \
                 on the request ({url})"
            )));
        }
        (Some(url), _) => url.to_string(),
        (None, Some(body)) => body.to_string(),
        (None, None) => "default".to_string(),
    };
    if ns.is_empty() || name.contains('/') {
        return Err(StatusError::invalid(rt, name, "metadata: Invalid value"));
    }
    set_meta(object, "namespace", json!(ns));
    Ok(())
}

/// A string field of `metadata`.
pub(crate) fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// Sets (or with `Value::Null` removes) a field of `metadata`.
pub(crate) fn set_meta(object: &mut Value, field: &str, value: Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    if let Some(metadata) = metadata.as_object_mut() {
        if value.is_null() {
            metadata.remove(field);
        } else {
            metadata.insert(field.to_string(), value);
        }
    }
}

/// Sets or removes a top-level field.
pub(crate) fn set_field(object: &mut Value, field: &str, value: Option<Value>) {
    if let Some(map) = object.as_object_mut() {
        match value {
            Some(v) if !v.is_null() => {
                map.insert(field.to_string(), v);
            }
            _ => {
                map.remove(field);
            }
        }
    }
}

/// What `metadata.generation` counts changes of: everything but metadata and status.
pub(crate) fn spec_of(object: &Value) -> Value {
    let mut spec = object.clone();
    if let Some(map) = spec.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    spec
}

/// The object without what every write touches, to detect writes that change nothing.
pub(crate) fn without_bookkeeping(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
        metadata.remove("generation");
    }
    object
}

/// Records the writer in `metadata.managedFields` (one entry per manager, operation and
/// subresource, with the time of its last write; the field sets themselves are not tracked).
pub(crate) fn record_manager(
    object: &mut Value,
    rt: &ResourceType,
    opts: &WriteOptions,
    part: Part,
) {
    let Some(manager) = &opts.manager else {
        return;
    };
    let mut entry = json!({
        "manager": manager,
        "operation": if opts.apply { "Apply" } else { "Update" },
        "apiVersion": rt.api_version(),
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    });
    if let Some(sub) = part.subresource() {
        entry["subresource"] = json!(sub);
    }
    let mut entries: Vec<Value> = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries.retain(|e| {
        e.get("manager") != entry.get("manager")
            || e.get("operation") != entry.get("operation")
            || e.get("subresource") != entry.get("subresource")
    });
    entries.push(entry);
    set_meta(object, "managedFields", Value::Array(entries));
}

/// The current time in RFC 3339, seconds precision.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
