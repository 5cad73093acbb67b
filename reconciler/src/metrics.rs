//! The reconciler's Prometheus metrics (ferrolb's names, and MetalLB's allocator metrics so that
//! existing dashboards keep working) and its HTTP listener.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use ferrolb_core::alloc::PoolUsage;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::controller::StatusView;

/// A pool and a family.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolFamily {
    /// The pool.
    pub pool: String,
    /// `IPv4` or `IPv6`.
    pub family: &'static str,
}

/// A pool (MetalLB's label set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// The pool.
    pub pool: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the reconciler exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Addresses per pool and family.
    pub pool_addresses: Family<PoolFamily, FloatGauge>,
    /// Addresses in use per pool and family.
    pub pool_in_use: Family<PoolFamily, FloatGauge>,
    /// MetalLB's `metallb_allocator_addresses_total`.
    pub metallb_total: Family<PoolLabel, FloatGauge>,
    /// MetalLB's `metallb_allocator_addresses_in_use_total`.
    pub metallb_in_use: Family<PoolLabel, FloatGauge>,
    /// 1 when a valid configuration is in force.
    pub config_loaded: Gauge,
    /// 1 when the newest configuration could not be used (the last good one stays in force).
    pub config_stale: Gauge,
    /// 1 on the leader.
    pub leader: Gauge,
    /// etcd keys written.
    pub etcd_writes: Counter,
    /// Failed etcd writes.
    pub etcd_errors: Counter,
    /// Kubernetes writes (status patches, events).
    pub kubernetes_writes: Counter,
    /// Failed Kubernetes writes.
    pub kubernetes_errors: Counter,
    /// etcd endpoints reached over plain HTTP on another host (0 is the safe value).
    pub etcd_plaintext_endpoints: Gauge,
}

impl Metrics {
    /// A registry holding every metric.
    pub fn register(self: &Arc<Self>) -> Registry {
        let mut r = Registry::default();
        let f = r.sub_registry_with_prefix("ferrolb");
        f.register(
            "pool_addresses",
            "Addresses per pool and family",
            self.pool_addresses.clone(),
        );
        f.register(
            "pool_addresses_in_use",
            "Addresses in use per pool and family",
            self.pool_in_use.clone(),
        );
        f.register(
            "config_loaded",
            "1 when a valid configuration is in force",
            self.config_loaded.clone(),
        );
        f.register(
            "config_stale",
            "1 when the newest configuration could not be used",
            self.config_stale.clone(),
        );
        f.register("reconciler_leader", "1 on the leader", self.leader.clone());
        f.register(
            "reconciler_etcd_writes",
            "etcd keys written",
            self.etcd_writes.clone(),
        );
        f.register(
            "reconciler_etcd_errors",
            "Failed etcd writes",
            self.etcd_errors.clone(),
        );
        f.register(
            "reconciler_kubernetes_writes",
            "Kubernetes writes",
            self.kubernetes_writes.clone(),
        );
        f.register(
            "reconciler_kubernetes_errors",
            "Failed Kubernetes writes",
            self.kubernetes_errors.clone(),
        );
        f.register(
            "reconciler_etcd_plaintext_endpoints",
            "etcd endpoints reached over plain HTTP on another host",
            self.etcd_plaintext_endpoints.clone(),
        );
        let m = r.sub_registry_with_prefix("metallb_allocator");
        m.register(
            "addresses_total",
            "Addresses per pool (MetalLB's metric)",
            self.metallb_total.clone(),
        );
        m.register(
            "addresses_in_use_total",
            "Addresses in use per pool (MetalLB's metric)",
            self.metallb_in_use.clone(),
        );
        r
    }

    /// Records pool use.
    pub fn record_usage(&self, usage: &[PoolUsage]) {
        let mut totals: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
        for u in usage {
            let labels = PoolFamily {
                pool: u.pool.clone(),
                family: u.family.as_str(),
            };
            self.pool_addresses
                .get_or_create(&labels)
                .set(u.total.as_f64());
            self.pool_in_use.get_or_create(&labels).set(u.in_use as f64);
            let t = totals.entry(u.pool.as_str()).or_default();
            t.0 += u.total.as_f64();
            t.1 += u.in_use as f64;
        }
        for (pool, (total, in_use)) in totals {
            let labels = PoolLabel {
                pool: pool.to_string(),
            };
            self.metallb_total.get_or_create(&labels).set(total);
            self.metallb_in_use.get_or_create(&labels).set(in_use);
        }
    }
}

/// The Git webhook: where calls go, the HMAC secret, and when the last call was taken.
#[derive(Debug)]
pub struct Hook {
    /// Signals the controller to fetch now.
    pub tx: tokio::sync::mpsc::Sender<()>,
    /// The shared secret; without it, calls are not authenticated.
    pub secret: Option<Vec<u8>>,
    /// When the last call was taken (at most one a second).
    pub last: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Largest webhook body accepted.
pub const HOOK_BODY_LIMIT: usize = 1 << 20;

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    status: watch::Receiver<StatusView>,
    hook: Option<Arc<Hook>>,
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if s.status.borrow().ready {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: sources or etcd not read yet\n",
        )
    }
}

async fn status_json(State(s): State<HttpState>) -> Json<StatusView> {
    Json(s.status.borrow().clone())
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks a GitHub/Gitea-style `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`
/// (in constant time).
pub fn signature_valid(secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    let Some(sig) = header.and_then(|h| h.strip_prefix("sha256=")).and_then(hex) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// `POST /hooks/git`: checks the signature (when a secret is set) and a rate of one call a
/// second, then asks the controller to fetch now. Bodies over [`HOOK_BODY_LIMIT`] are refused
/// before this runs.
async fn git_hook(
    State(s): State<HttpState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, &'static str) {
    let Some(h) = &s.hook else {
        return (
            StatusCode::NOT_FOUND,
            "this reconciler does not read its configuration from Git\n",
        );
    };
    if let Some(secret) = &h.secret {
        let header = headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok());
        if !signature_valid(secret, header, &body) {
            return (
                StatusCode::UNAUTHORIZED,
                "missing or wrong X-Hub-Signature-256\n",
            );
        }
    }
    {
        let Ok(mut last) = h.last.lock() else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "webhook state poisoned\n",
            );
        };
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
            return (StatusCode::TOO_MANY_REQUESTS, "at most one call a second\n");
        }
        *last = Some(std::time::Instant::now());
    }
    // A pending signal already means "fetch now": nothing is lost when this one is dropped.
    let _ = h.tx.try_send(());
    (StatusCode::ACCEPTED, "fetching\n")
}

/// Serves the listener until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    status: watch::Receiver<StatusView>,
    hook: Option<Arc<Hook>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let state = HttpState {
        registry: Arc::new(registry),
        status,
        hook,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .route("/hooks/git", post(git_hook))
        .layer(axum::extract::DefaultBodyLimit::max(HOOK_BODY_LIMIT))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_against_the_body() {
        // `printf 'hello' | openssl dgst -sha256 -hmac secret`
        let good = "sha256=88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b";
        assert!(signature_valid(b"secret", Some(good), b"hello"));
        assert!(!signature_valid(b"secret", Some(good), b"hello!"));
        assert!(!signature_valid(b"other", Some(good), b"hello"));
        assert!(!signature_valid(b"secret", None, b"hello"));
        assert!(!signature_valid(b"secret", Some("sha1=88aa"), b"hello"));
        assert!(!signature_valid(b"secret", Some("sha256=zz"), b"hello"));
    }
}
