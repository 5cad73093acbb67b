//! The speaker's Prometheus metrics, and the HTTP listener that serves them with `/healthz` and
//! `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Labels naming an address and a protocol (`arp` or `ndp`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AddressLabels {
    /// The address.
    pub address: String,
    /// `arp` or `ndp`.
    pub protocol: &'static str,
}

/// MetalLB's label naming an address (`metallb_layer2_*`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IpLabels {
    /// The address.
    pub ip: String,
}

/// MetalLB's labels of `metallb_speaker_announced`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnnouncedLabels {
    /// A Service using the address, `namespace/name`.
    pub service: String,
    /// This node.
    pub node: String,
    /// The address.
    pub ip: String,
    /// Always `layer2`.
    pub protocol: &'static str,
}

/// Labels naming a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: &'static str,
}

/// Labels naming an etcd operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// The operation.
    pub op: &'static str,
}

/// Every metric the speaker exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Addresses this node answers for.
    pub held_addresses: Gauge,
    /// Claims this node created.
    pub claims_won: Counter,
    /// Claim attempts another node won, and claims this node lost (lease ended, yielded).
    pub claims_lost: Counter,
    /// Requests received for held addresses.
    pub requests: Family<AddressLabels, Counter>,
    /// Replies sent.
    pub replies: Family<AddressLabels, Counter>,
    /// Requests not answered, by reason.
    pub dropped: Family<ReasonLabels, Counter>,
    /// Gratuitous ARPs and unsolicited NAs sent.
    pub gratuitous: Family<ReasonLabels, Counter>,
    /// Frames that could not be parsed.
    pub malformed: Counter,
    /// Failed etcd operations.
    pub etcd_errors: Family<OpLabels, Counter>,
    /// 1 while the lease is known to be alive in etcd.
    pub lease_alive: Gauge,
    /// 1 while etcd answers.
    pub etcd_connected: Gauge,
    /// Endpoints reached over plain HTTP on another host (0 is the safe value).
    pub etcd_plaintext_endpoints: Gauge,
    /// Heartbeats sent (all interfaces).
    pub heartbeats_sent: Counter,
    /// Heartbeats heard from other nodes.
    pub heartbeats_heard: Counter,
    /// Heartbeat frames ignored: broken, or unsigned or wrongly signed when a key is set.
    pub heartbeats_refused: Counter,
    /// Heartbeats heard but not counted as a sign of life, by reason (`replay`: signed and not
    /// newer than one heard; `not_current_lease`: not on the lease etcd says the node is on).
    pub heartbeats_ignored: Family<ReasonLabels, Counter>,
    /// Holders this node suspects now.
    pub suspected: Gauge,
    /// Leases of silent holders this node ended.
    pub leases_revoked: Counter,
    /// Addresses this node took over from silent holders (before their leases ended).
    pub takeovers: Counter,
    /// MetalLB's `metallb_layer2_requests_received`: requests received for held addresses.
    /// MetalLB's counters are exported as gauges here, so that their names stay exactly
    /// MetalLB's (OpenMetrics gives a counter a `_total` suffix); `rate()` reads them alike.
    pub metallb_requests: Family<IpLabels, Gauge>,
    /// MetalLB's `metallb_layer2_responses_sent`.
    pub metallb_responses: Family<IpLabels, Gauge>,
    /// MetalLB's `metallb_layer2_gratuitous_sent`: gratuitous ARPs and unsolicited NAs sent.
    pub metallb_gratuitous: Family<IpLabels, Gauge>,
    /// MetalLB's `metallb_speaker_announced`: 1 for each Service address this node answers for.
    pub metallb_announced: Family<AnnouncedLabels, Gauge>,
}

impl Metrics {
    /// A registry holding every metric.
    ///
    /// Longer than the rest on purpose: one registration per metric, each with its help text,
    /// in the order `/metrics` lists them. Cut into pieces, the list would only be harder to
    /// check against the documentation's.
    pub fn register(self: &Arc<Self>) -> Registry {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("ferrolb_speaker");
        r.register(
            "held_addresses",
            "Addresses this node answers for",
            self.held_addresses.clone(),
        );
        r.register(
            "claims_won",
            "Claims this node created",
            self.claims_won.clone(),
        );
        r.register(
            "claims_lost",
            "Claims lost: attempts another node won, leases ended, yields",
            self.claims_lost.clone(),
        );
        r.register(
            "requests",
            "ARP/NDP requests received for held addresses",
            self.requests.clone(),
        );
        r.register("replies", "ARP/NDP replies sent", self.replies.clone());
        r.register(
            "dropped",
            "Requests not answered, by reason",
            self.dropped.clone(),
        );
        r.register(
            "gratuitous",
            "Gratuitous ARPs and unsolicited NAs sent",
            self.gratuitous.clone(),
        );
        r.register(
            "malformed_frames",
            "Frames that could not be parsed",
            self.malformed.clone(),
        );
        r.register(
            "etcd_errors",
            "Failed etcd operations",
            self.etcd_errors.clone(),
        );
        r.register(
            "lease_alive",
            "1 while the lease is known to be alive",
            self.lease_alive.clone(),
        );
        r.register(
            "etcd_connected",
            "1 while etcd answers",
            self.etcd_connected.clone(),
        );
        r.register(
            "etcd_plaintext_endpoints",
            "etcd endpoints reached over plain HTTP on another host",
            self.etcd_plaintext_endpoints.clone(),
        );
        r.register(
            "heartbeats_sent",
            "Heartbeats sent",
            self.heartbeats_sent.clone(),
        );
        r.register(
            "heartbeats_heard",
            "Heartbeats heard from other nodes",
            self.heartbeats_heard.clone(),
        );
        r.register(
            "heartbeats_refused",
            "Heartbeat frames ignored (broken, or not signed with the key)",
            self.heartbeats_refused.clone(),
        );
        r.register(
            "heartbeats_ignored",
            "Heartbeats heard but not counted as a sign of life, by reason",
            self.heartbeats_ignored.clone(),
        );
        r.register(
            "suspected_holders",
            "Holders this node hears no heartbeat from",
            self.suspected.clone(),
        );
        r.register(
            "leases_revoked",
            "Leases of silent holders this node ended",
            self.leases_revoked.clone(),
        );
        r.register(
            "takeovers",
            "Addresses this node took over from holders no heartbeat comes from",
            self.takeovers.clone(),
        );
        let m = root.sub_registry_with_prefix("metallb");
        m.register(
            "layer2_requests_received",
            "Requests received for held addresses (MetalLB's metric)",
            self.metallb_requests.clone(),
        );
        m.register(
            "layer2_responses_sent",
            "Replies sent (MetalLB's metric)",
            self.metallb_responses.clone(),
        );
        m.register(
            "layer2_gratuitous_sent",
            "Gratuitous ARPs and unsolicited NAs sent (MetalLB's metric)",
            self.metallb_gratuitous.clone(),
        );
        m.register(
            "speaker_announced",
            "1 for each Service address this node answers for (MetalLB's metric)",
            self.metallb_announced.clone(),
        );
        root
    }

    /// Sets `metallb_speaker_announced` to the Services of the addresses `node` answers for:
    /// one series per held address and Service, the series of addresses no longer held removed.
    pub fn record_announced<'a>(
        &self,
        node: &str,
        held: impl IntoIterator<Item = (&'a std::net::IpAddr, &'a [String])>,
    ) {
        self.metallb_announced.clear();
        for (ip, services) in held {
            for service in services {
                let labels = AnnouncedLabels {
                    service: service.clone(),
                    node: node.to_string(),
                    ip: ip.to_string(),
                    protocol: "layer2",
                };
                self.metallb_announced.get_or_create(&labels).set(1);
            }
        }
    }
}

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    healthy: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    ferrolb_daemon::http::openmetrics(&s.registry)
}

async fn healthz(State(s): State<HttpState>) -> impl IntoResponse {
    if s.healthy.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not running\n")
    }
}

/// Ready while the speaker holds its lease and has read the announcements (the DaemonSet's
/// rolling update waits for it).
async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no etcd lease, or the announcements not read yet\n",
        )
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    healthy: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let state = HttpState {
        registry: Arc::new(registry),
        healthy,
        ready,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    ferrolb_daemon::http::serve(
        listener,
        app,
        ferrolb_daemon::http::Limits::default(),
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        },
    )
    .await
}
