//! `meta.k8s.io/v1` `Table` answers, which kubectl asks for to print `kubectl get` for people.
//!
//! Services get kubectl's usual columns (NAME, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), AGE,
//! and SELECTOR with `-o wide`); Namespaces and Nodes a STATUS column; everything else NAME and
//! AGE.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::resources::ResourceType;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    /// Nothing.
    None,
    /// The object's metadata, as `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// From the `includeObject` query parameter.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// A table of `objects`; `rv` is the list's resource version (`None` for a single get).
pub(crate) fn table(
    rt: &ResourceType,
    objects: &[Value],
    rv: Option<u64>,
    include: IncludeObject,
) -> Value {
    let columns: Vec<Value> = columns(rt)
        .iter()
        .map(|(name, format, priority, description)| {
            json!({"name": name, "type": "string", "format": format,
                   "description": description, "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({ "cells": cells(rt, o) });
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                }
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = rv {
        metadata["resourceVersion"] = json!(rv.to_string());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

type Column = (&'static str, &'static str, u8, &'static str);

const NAME: Column = ("Name", "name", 0, "Name must be unique within a namespace.");
const AGE: Column = (
    "Age",
    "",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

fn columns(rt: &ResourceType) -> Vec<Column> {
    match rt.kind {
        "Service" => vec![
            NAME,
            ("Type", "", 0, "The type of the service."),
            ("Cluster-IP", "", 0, "The cluster IP of the service."),
            ("External-IP", "", 0, "The external IPs of the service."),
            ("Port(s)", "", 0, "The ports of the service."),
            AGE,
            ("Selector", "", 1, "The selector of the service."),
        ],
        "Namespace" => vec![NAME, ("Status", "", 0, "The namespace's phase."), AGE],
        "Node" => vec![NAME, ("Status", "", 0, "The node's readiness."), AGE],
        _ => vec![NAME, AGE],
    }
}

fn cells(rt: &ResourceType, o: &Value) -> Vec<Value> {
    let text = |pointer: &str| o.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let name = json!(text("/metadata/name"));
    let age = json!(age(text("/metadata/creationTimestamp")));
    match rt.kind {
        "Service" => vec![
            name,
            json!(text("/spec/type")),
            json!(or_none(text("/spec/clusterIP"))),
            json!(external_ips(o)),
            json!(ports(o)),
            age,
            json!(selector(o)),
        ],
        "Namespace" => vec![name, json!(text("/status/phase")), age],
        "Node" => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| {
                    c.iter()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                })
                .and_then(|c| c.get("status").and_then(Value::as_str))
                == Some("True");
            let status = if ready { "Ready" } else { "NotReady" };
            vec![name, json!(status), age]
        }
        _ => vec![name, age],
    }
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        "<none>".to_string()
    } else {
        text.to_string()
    }
}

/// kubectl's EXTERNAL-IP: load-balancer ingress and external IPs, `<pending>` for a
/// LoadBalancer without any.
fn external_ips(o: &Value) -> String {
    let strings = |pointer: &str, field: Option<&str>| -> Vec<String> {
        o.pointer(pointer)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| match field {
                        Some(_) => i
                            .get("ip")
                            .or_else(|| i.get("hostname"))
                            .and_then(Value::as_str),
                        None => i.as_str(),
                    })
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let external = strings("/spec/externalIPs", None);
    match o.pointer("/spec/type").and_then(Value::as_str) {
        Some("LoadBalancer") => {
            let mut all = strings("/status/loadBalancer/ingress", Some("ip"));
            all.extend(external);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        Some("ExternalName") => or_none(
            o.pointer("/spec/externalName")
                .and_then(Value::as_str)
                .unwrap_or(""),
        ),
        _ => or_none(&external.join(",")),
    }
}

/// kubectl's PORT(S): `80:30080/TCP,443/TCP`.
fn ports(o: &Value) -> String {
    let ports: Vec<String> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_u64).unwrap_or(0);
                    let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_u64) {
                        Some(node) if node > 0 => format!("{port}:{node}/{protocol}"),
                        _ => format!("{port}/{protocol}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(&ports.join(","))
}

fn selector(o: &Value) -> String {
    let pairs: Vec<String> = o
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    or_none(&pairs.join(","))
}

/// The age of an object created at `timestamp` (RFC 3339), as kubectl prints it.
fn age(timestamp: &str) -> String {
    let Ok(created) = humantime::parse_rfc3339_weak(timestamp) else {
        return "<unknown>".to_string();
    };
    match SystemTime::now().duration_since(created) {
        Ok(elapsed) => human_duration(elapsed),
        Err(e) if e.duration() > Duration::from_secs(1) => "<invalid>".to_string(),
        Err(_) => "0s".to_string(),
    }
}

/// Kubernetes' `duration.HumanDuration`: `45s`, `5m3s`, `3h10m`, `12d`, `2y30d`.
fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{days}d")
    } else if hours < 24 * 365 * 8 {
        match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        }
    } else {
        format!("{}y", days / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (45, "45s"),
            (303, "5m3s"),
            (3600, "60m"),
            (11_400, "3h10m"),
            (36 * 3600, "36h"),
            (3 * 86_400 + 3600, "3d1h"),
            (30 * 86_400, "30d"),
        ];
        for (secs, text) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn a_load_balancer_row_shows_its_ingress_and_node_ports() {
        let svc = json!({"metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10",
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}],
                     "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}});
        assert_eq!(external_ips(&svc), "192.0.2.10");
        assert_eq!(ports(&svc), "80:30080/TCP");
        assert_eq!(selector(&svc), "app=web");
        let pending = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(external_ips(&pending), "<pending>");
    }
}
