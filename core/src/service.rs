//! `v1` Service manifests, read into [`ServiceRequest`]s: what `ferrolb plan` and the
//! reconciler's file mode use instead of a Kubernetes API server.
//!
//! A file holds any number of documents. `Service` documents become requests; `Namespace`
//! documents give their labels to the Services in them (for `namespaceSelectors`); `List`
//! documents (what `kubectl get svc -A -o yaml` prints) are read item by item. Other kinds (a
//! Deployment next to its Service, say) are skipped without a word. `status.loadBalancer.ingress`
//! is the Service's current state.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::alloc::{FamilyPolicy, Port, ServiceKey, ServiceRequest};
use crate::config::read_documents;
use crate::diag::{Code, Diagnostic, Origin, Sink};
use crate::net::Family;
use crate::yaml::Node;

/// A Service read from a file, with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceManifest {
    /// The request.
    pub request: ServiceRequest,
    /// Where it was written.
    pub origin: Origin,
}

/// What a set of manifest files holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifests {
    /// Services, in file order, namespace labels filled in.
    pub services: Vec<ServiceManifest>,
    /// Problems; a Service with an error is left out.
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads a set of manifest files given as `(name, bytes)`.
pub fn load<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Manifests {
    let mut out = Manifests::default();
    let mut namespaces: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let mut seen: HashMap<ServiceKey, Origin> = HashMap::new();
    for (name, bytes) in files {
        let Some(docs) = read_documents(name, bytes, &mut out.diagnostics) else {
            continue;
        };
        let mut objects = Vec::new();
        for doc in &docs {
            if doc.get("kind").and_then(Node::as_str) == Some("List") {
                objects.extend(doc.get("items").and_then(Node::as_seq).unwrap_or_default());
            } else {
                objects.push(doc);
            }
        }
        for doc in objects {
            match doc.get("kind").and_then(Node::as_str) {
                Some("Namespace") => {
                    let meta = doc.get("metadata");
                    if let Some(ns) = meta.and_then(|m| m.get("name")).and_then(Node::as_str) {
                        let labels = meta
                            .and_then(|m| m.get("labels"))
                            .map(string_map)
                            .unwrap_or_default();
                        namespaces.insert(ns.to_string(), labels);
                    }
                }
                Some("Service") => {
                    let mut sink = Sink {
                        out: &mut out.diagnostics,
                        file: name,
                        kind: Some("Service"),
                        name: doc
                            .get("metadata")
                            .and_then(|m| m.get("name"))
                            .and_then(Node::as_str),
                    };
                    match read_service(doc) {
                        Ok(request) => {
                            let origin = Origin {
                                file: name.to_string(),
                                line: doc.line,
                            };
                            if let Some(first) = seen.get(&request.key) {
                                sink.error(
                                    Code::BadService,
                                    doc.line,
                                    format!("Service {} is also defined at {first}", request.key),
                                );
                                continue;
                            }
                            seen.insert(request.key.clone(), origin.clone());
                            out.services.push(ServiceManifest { request, origin });
                        }
                        Err((line, why)) => sink.error(Code::BadService, line, why),
                    }
                }
                _ => {}
            }
        }
    }
    for s in &mut out.services {
        if let Some(labels) = namespaces.get(&*s.request.key.namespace) {
            s.request.namespace_labels = labels.clone();
        }
    }
    out
}

fn string_map(node: &Node) -> BTreeMap<String, String> {
    node.as_map()
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str()?.to_string(),
                v.as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

type Failure = (u32, String);

fn text<'a>(node: Option<&'a Node>, field: &str) -> Result<Option<&'a str>, Failure> {
    match node {
        None => Ok(None),
        Some(n) if n.is_null() => Ok(None),
        Some(n) => n.as_str().map(Some).ok_or_else(|| {
            (
                n.line,
                format!("{field} must be a string, found {}", n.describe()),
            )
        }),
    }
}

fn read_service(doc: &Node) -> Result<ServiceRequest, Failure> {
    let meta = doc.get("metadata");
    let name = text(meta.and_then(|m| m.get("name")), "metadata.name")?
        .filter(|n| !n.is_empty())
        .ok_or((doc.line, "metadata.name is required".to_string()))?;
    let namespace =
        text(meta.and_then(|m| m.get("namespace")), "metadata.namespace")?.unwrap_or("default");
    let spec = doc.get("spec");
    let field = |f: &str| spec.and_then(|s| s.get(f));
    let mut req = ServiceRequest {
        key: ServiceKey::new(namespace, name),
        labels: meta
            .and_then(|m| m.get("labels"))
            .map(string_map)
            .unwrap_or_default(),
        annotations: meta
            .and_then(|m| m.get("annotations"))
            .map(string_map)
            .unwrap_or_default(),
        service_type: text(field("type"), "spec.type")?
            .unwrap_or("ClusterIP")
            .to_string(),
        load_balancer_ip: text(field("loadBalancerIP"), "spec.loadBalancerIP")?.map(str::to_string),
        load_balancer_class: text(field("loadBalancerClass"), "spec.loadBalancerClass")?
            .map(str::to_string),
        traffic_policy_local: text(field("externalTrafficPolicy"), "spec.externalTrafficPolicy")?
            == Some("Local"),
        selector: field("selector").map(string_map).unwrap_or_default(),
        created: text(
            meta.and_then(|m| m.get("creationTimestamp")),
            "creationTimestamp",
        )?
        .map(str::to_string),
        ..ServiceRequest::default()
    };
    if let Some(p) = text(field("ipFamilyPolicy"), "spec.ipFamilyPolicy")? {
        req.ip_family_policy = FamilyPolicy::parse(p).ok_or_else(|| {
            (
                field("ipFamilyPolicy").map_or(doc.line, |n| n.line),
                format!("spec.ipFamilyPolicy {p:?} is not SingleStack, PreferDualStack or RequireDualStack"),
            )
        })?;
    }
    for f in field("ipFamilies")
        .and_then(Node::as_seq)
        .unwrap_or_default()
    {
        req.ip_families.push(match f.as_str() {
            Some("IPv4") => Family::V4,
            Some("IPv6") => Family::V6,
            _ => {
                return Err((
                    f.line,
                    format!("spec.ipFamilies: {} is not IPv4 or IPv6", f.describe()),
                ));
            }
        });
    }
    for p in field("ports").and_then(Node::as_seq).unwrap_or_default() {
        let port = p
            .get("port")
            .and_then(Node::as_str)
            .and_then(|s| s.parse::<i32>().ok())
            .filter(|n| (1..=65535).contains(n))
            .ok_or_else(|| {
                (
                    p.line,
                    "spec.ports: each port needs a port number from 1 to 65535".to_string(),
                )
            })?;
        let protocol = text(p.get("protocol"), "protocol")?
            .unwrap_or("TCP")
            .to_string();
        req.ports.push(Port { port, protocol });
    }
    // What the allocator would read from these fields must be readable: a Service whose
    // requested addresses are not addresses is an error in its file, so the set in force (and
    // the address the Service holds) stays, instead of a Service left without an address.
    req.requested_ips().map_err(|why| {
        let line = field("loadBalancerIP")
            .filter(|_| req.annotation("loadBalancerIPs").is_none())
            .or_else(|| meta.and_then(|m| m.get("annotations")))
            .map_or(doc.line, |n| n.line);
        (line, why)
    })?;
    let ingress = doc
        .get("status")
        .and_then(|s| s.get("loadBalancer"))
        .and_then(|l| l.get("ingress"))
        .and_then(Node::as_seq)
        .unwrap_or_default();
    for i in ingress {
        if let Some(ip) = text(i.get("ip"), "status.loadBalancer.ingress.ip")? {
            let ip: IpAddr = ip.parse().map_err(|_| {
                (
                    i.line,
                    format!("status.loadBalancer.ingress: {ip:?} is not an IP address"),
                )
            })?;
            req.current.push(ip);
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_service_with_its_namespace_labels_and_status() {
        let text = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: b}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations:
    metallb.io/allow-shared-ip: web
  creationTimestamp: "2026-01-02T03:04:05Z"
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  externalTrafficPolicy: Local
  selector: {app: web}
  ports:
    - {port: 80}
    - {port: 53, protocol: UDP}
status:
  loadBalancer:
    ingress:
      - ip: 10.0.0.1
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
"#;
        let m = load([("s.yaml", text.as_bytes())]);
        assert!(m.diagnostics.is_empty(), "{:?}", m.diagnostics);
        let s = &m.services[0];
        assert_eq!(s.origin.line, 8);
        let r = &s.request;
        assert_eq!(r.key.to_string(), "shop/web");
        assert_eq!(
            r.namespace_labels.get("team").map(String::as_str),
            Some("b")
        );
        assert_eq!(r.sharing_key(), Some("web"));
        assert_eq!(r.ip_family_policy, FamilyPolicy::PreferDualStack);
        assert_eq!(r.ip_families, [Family::V4, Family::V6]);
        assert!(r.traffic_policy_local);
        assert_eq!(
            r.ports[1],
            Port {
                port: 53,
                protocol: "UDP".into()
            }
        );
        assert_eq!(r.current, ["10.0.0.1".parse::<IpAddr>().expect("ip")]);
        assert_eq!(r.created.as_deref(), Some("2026-01-02T03:04:05Z"));
    }

    #[test]
    fn reads_kubectl_lists() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: b, namespace: x}\n";
        let m = load([("l.yaml", text.as_bytes())]);
        let keys: Vec<String> = m
            .services
            .iter()
            .map(|s| s.request.key.to_string())
            .collect();
        assert_eq!(keys, ["default/a", "x/b"]);
        assert_eq!(m.services[0].request.service_type, "ClusterIP");
    }

    #[test]
    fn requested_addresses_that_are_not_addresses_are_errors_with_their_line() {
        let text = "kind: Service\nmetadata: {name: a}\nspec:\n  type: LoadBalancer\n  loadBalancerIP: banana\n---\nkind: Service\nmetadata:\n  name: b\n  annotations:\n    metallb.io/loadBalancerIPs: 10.0.0.1,10.0.0.2\n---\nkind: Service\nmetadata: {name: c}\nspec: {loadBalancerIP: \" 10.0.0.3 \"}\n";
        let m = load([("ips.yaml", text.as_bytes())]);
        let found: Vec<(u32, String)> = m
            .diagnostics
            .iter()
            .map(|d| (d.line, d.to_string()))
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 5);
        assert!(
            found[0].1.contains("ips.yaml:5")
                && found[0].1.contains("\"a\"")
                && found[0]
                    .1
                    .contains("spec.loadBalancerIP: \"banana\" is not an IP address"),
            "{}",
            found[0].1
        );
        assert_eq!(found[1].0, 11);
        assert!(
            found[1]
                .1
                .contains("loadBalancerIPs lists two IPv4 addresses"),
            "{}",
            found[1].1
        );
        let keys: Vec<String> = m
            .services
            .iter()
            .map(|s| s.request.key.to_string())
            .collect();
        assert_eq!(keys, ["default/c"], "only the readable request is kept");
    }

    #[test]
    fn malformed_services_are_reported_and_left_out() {
        let text = "kind: Service\nmetadata: {name: a}\nspec:\n  ports:\n    - {port: 70000}\n---\nkind: Service\nmetadata: {name: b}\nstatus: {loadBalancer: {ingress: [{ip: nope}]}}\n---\nkind: Service\nmetadata: {name: b}\n---\nkind: Service\nmetadata: {}\n";
        let m = load([("bad.yaml", text.as_bytes())]);
        assert_eq!(
            m.services.len(),
            1,
            "only the third document is a good Service"
        );
        let lines: Vec<(Code, u32)> = m.diagnostics.iter().map(|d| (d.code, d.line)).collect();
        assert_eq!(
            lines,
            [
                (Code::BadService, 5),
                (Code::BadService, 9),
                (Code::BadService, 14)
            ]
        );
    }
}
