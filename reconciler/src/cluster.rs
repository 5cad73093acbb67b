//! Services, Nodes, Namespaces and EndpointSlices from the Kubernetes API, and the writes back:
//! `status.loadBalancer.ingress` and Events.
//!
//! Kubernetes types stop here: [`Cluster::snapshot`] converts them into the allocator's
//! `ServiceRequest`s and the announcement builder's `NodeInfo`s. Four reflectors keep caches;
//! nothing is decided before every cache has synced ([`Cluster::wait_ready`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use ferrolb_core::alloc::{FamilyPolicy, Port, ServiceKey, ServiceRequest};
use ferrolb_core::announce::NodeInfo;
use ferrolb_core::net::Family;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, ObjectReference, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

/// The label EndpointSlices carry with their Service's name.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the planner needs from the cluster, converted.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The Services, their current addresses from their status.
    pub services: Vec<ServiceRequest>,
    /// For each Service, the nodes with a ready endpoint of it.
    pub local_nodes: HashMap<ServiceKey, BTreeSet<String>>,
    /// The nodes.
    pub nodes: BTreeMap<String, NodeInfo>,
}

/// What the API server refused for want of a permission (`403 Forbidden`), by operation, until
/// that operation next succeeds. While any is refused the reconciler is not ready, and
/// `/status` names each refusal in the server's words (which name the user, verb and
/// resource).
#[derive(Clone, Debug, Default)]
pub struct Refusals(Arc<Mutex<BTreeMap<&'static str, String>>>);

impl Refusals {
    /// Records the outcome of `operation`: refused with `message`, or (`None`) allowed.
    fn record(&self, operation: &'static str, refused: Option<&str>) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match refused {
            Some(message) => {
                map.insert(operation, message.to_string());
            }
            None => {
                map.remove(operation);
            }
        }
    }

    /// Each refusal as `operation: message`, sorted by operation.
    pub fn list(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(op, message)| format!("{op}: {message}"))
            .collect()
    }
}

/// The server's message when `e` is a `403 Forbidden`.
fn forbidden(e: &kube::Error) -> Option<&str> {
    match e {
        kube::Error::Api(s) if s.code == 403 => Some(&s.message),
        _ => None,
    }
}

/// The server's message when a watch failed with `403 Forbidden`.
fn forbidden_watch(e: &watcher::Error) -> Option<&str> {
    match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => forbidden(k),
        watcher::Error::WatchError(s) if s.code == 403 => Some(&s.message),
        _ => None,
    }
}

/// Caches of the cluster, and the client to write with.
pub struct Cluster {
    client: Client,
    services: Store<Service>,
    nodes: Store<Node>,
    namespaces: Store<Namespace>,
    slices: Store<EndpointSlice>,
    tasks: Vec<JoinHandle<()>>,
    /// One `()` per burst of changes in any cache.
    pub changes: mpsc::Receiver<()>,
    recorder: Recorder,
    refusals: Refusals,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A client from `--kubeconfig`, or inferred (in-cluster, then `KUBECONFIG`, then
/// `~/.kube/config`).
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer()
            .await
            .context("finding the cluster (in-cluster or KUBECONFIG)")?,
    };
    Ok(Client::try_from(config)?)
}

fn spawn_reflector<K>(
    api: Api<K>,
    tx: mpsc::Sender<()>,
    what: &'static str,
    refusals: Refusals,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => {
                    refusals.record(what, None);
                    let _ = tx.try_send(());
                }
                Err(e) => {
                    if let Some(message) = forbidden_watch(&e) {
                        refusals.record(what, Some(message));
                    }
                    warn!(resource = what, error = %e, "watch error; retrying");
                }
            }
        }
    });
    (reader, task)
}

impl Cluster {
    /// Starts the four reflectors.
    pub fn start(client: Client, instance: &str) -> Cluster {
        let (tx, changes) = mpsc::channel(1);
        let refusals = Refusals::default();
        let (services, t1) = spawn_reflector(
            Api::<Service>::all(client.clone()),
            tx.clone(),
            "list/watch services",
            refusals.clone(),
        );
        let (nodes, t2) = spawn_reflector(
            Api::<Node>::all(client.clone()),
            tx.clone(),
            "list/watch nodes",
            refusals.clone(),
        );
        let (namespaces, t3) = spawn_reflector(
            Api::<Namespace>::all(client.clone()),
            tx.clone(),
            "list/watch namespaces",
            refusals.clone(),
        );
        let (slices, t4) = spawn_reflector(
            Api::<EndpointSlice>::all(client.clone()),
            tx,
            "list/watch endpointslices",
            refusals.clone(),
        );
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "ferrolb".into(),
                instance: Some(instance.to_string()),
            },
        );
        Cluster {
            client,
            services,
            nodes,
            namespaces,
            slices,
            tasks: vec![t1, t2, t3, t4],
            changes,
            recorder,
            refusals,
        }
    }

    /// What the API server refuses this reconciler right now (see [`Refusals`]).
    pub fn refusals(&self) -> Vec<String> {
        self.refusals.list()
    }

    /// Waits until every cache has been filled once.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        self.services.wait_until_ready().await?;
        self.nodes.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await?;
        self.slices.wait_until_ready().await?;
        Ok(())
    }

    /// The cluster as the planner sees it.
    pub fn snapshot(&self) -> Snapshot {
        let ns_labels: HashMap<String, BTreeMap<String, String>> = self
            .namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        let mut services: Vec<ServiceRequest> = self
            .services
            .state()
            .iter()
            .map(|s| to_request(s, &ns_labels))
            .collect();
        services.sort_by(|a, b| a.key.cmp(&b.key));
        let mut local_nodes: HashMap<ServiceKey, BTreeSet<String>> = HashMap::new();
        for slice in self.slices.state() {
            let (Some(ns), Some(svc)) = (slice.namespace(), slice.labels().get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            let ready = slice.endpoints.iter().filter(|e| {
                e.conditions
                    .as_ref()
                    .is_none_or(|c| c.ready.unwrap_or(true) || c.serving.unwrap_or(false))
            });
            let entry = local_nodes.entry(ServiceKey::new(&ns, svc)).or_default();
            entry.extend(ready.filter_map(|e| e.node_name.clone()));
        }
        let nodes = self
            .nodes
            .state()
            .iter()
            .map(|n| {
                let unavailable = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True")
                    });
                (
                    n.name_any(),
                    NodeInfo {
                        labels: n.labels().clone(),
                        network_unavailable: unavailable,
                    },
                )
            })
            .collect();
        Snapshot {
            services,
            local_nodes,
            nodes,
        }
    }

    /// Sets `status.loadBalancer.ingress` to `ips` (empty: clears it), retrying conflicts and
    /// server errors with back-off.
    pub async fn write_status(&self, key: &ServiceKey, ips: &[IpAddr]) -> anyhow::Result<()> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
        let ingress: Vec<serde_json::Value> = ips
            .iter()
            .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
            .collect();
        let body = if ips.is_empty() {
            json!({"status": {"loadBalancer": {"ingress": null}}})
        } else {
            json!({"status": {"loadBalancer": {"ingress": ingress}}})
        };
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&body))
                .await;
            const OP: &str = "patch services/status";
            match &result {
                Ok(_) => self.refusals.record(OP, None),
                Err(e) => {
                    if let Some(message) = forbidden(e) {
                        self.refusals.record(OP, Some(message));
                    }
                }
            }
            match result {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) if attempt < 6 && retryable(&e) => {
                    warn!(service = %key, error = %e, ?delay, "status write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e).with_context(|| format!("writing the status of {key}")),
            }
        }
    }

    /// Sets (`Some`) or removes the annotation that names the pool of a Service's addresses.
    pub async fn write_pool_annotation(
        &self,
        key: &ServiceKey,
        pool: Option<&str>,
    ) -> anyhow::Result<()> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
        let body = json!({"metadata": {"annotations": {crate::feedback::POOL_ANNOTATION: pool}}});
        let result = api
            .patch(&key.name, &PatchParams::default(), &Patch::Merge(&body))
            .await;
        const OP: &str = "patch services";
        match &result {
            Ok(_) => self.refusals.record(OP, None),
            Err(e) => self.refusals.record(OP, forbidden(e)),
        }
        match result {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("annotating {key}")),
        }
    }

    /// The client, for the other caches and writes.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Records an Event on a Service.
    pub async fn event(
        &self,
        key: &ServiceKey,
        warning: bool,
        reason: &str,
        note: String,
    ) -> anyhow::Result<()> {
        let uid = self
            .services
            .get(&reflector::ObjectRef::new(&key.name).within(&key.namespace))
            .and_then(|s| s.metadata.uid.clone());
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            name: Some(key.name.to_string()),
            namespace: Some(key.namespace.to_string()),
            uid,
            ..ObjectReference::default()
        };
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        let result = self.recorder.publish(&ev, &reference).await;
        const OP: &str = "create events";
        match &result {
            Ok(()) => self.refusals.record(OP, None),
            Err(e) => self.refusals.record(OP, forbidden(e)),
        }
        result.with_context(|| format!("recording {reason} on {key}"))
    }
}

fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Converts a Service at the edge.
pub fn to_request(
    s: &Service,
    ns_labels: &HashMap<String, BTreeMap<String, String>>,
) -> ServiceRequest {
    let namespace = s.namespace().unwrap_or_else(|| "default".into());
    let spec = s.spec.clone().unwrap_or_default();
    let current = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ing| {
            ing.iter()
                .filter_map(|i| i.ip.as_ref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    ServiceRequest {
        key: ServiceKey::new(&namespace, s.name_any()),
        labels: s.labels().clone(),
        namespace_labels: ns_labels.get(&namespace).cloned().unwrap_or_default(),
        annotations: s.annotations().clone(),
        service_type: spec.type_.unwrap_or_else(|| "ClusterIP".into()),
        load_balancer_ip: spec.load_balancer_ip,
        load_balancer_class: spec.load_balancer_class,
        ip_families: spec
            .ip_families
            .unwrap_or_default()
            .iter()
            .filter_map(|f| match f.as_str() {
                "IPv4" => Some(Family::V4),
                "IPv6" => Some(Family::V6),
                _ => None,
            })
            .collect(),
        ip_family_policy: spec
            .ip_family_policy
            .as_deref()
            .and_then(FamilyPolicy::parse)
            .unwrap_or_default(),
        ports: spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| Port {
                port: p.port,
                protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
            })
            .collect(),
        traffic_policy_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        selector: spec.selector.unwrap_or_default(),
        created: s
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        current,
    }
}
