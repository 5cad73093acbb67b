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
                .set(u.total as f64);
            self.pool_in_use.get_or_create(&labels).set(u.in_use as f64);
            let t = totals.entry(u.pool.as_str()).or_default();
            t.0 += u.total as f64;
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

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    status: watch::Receiver<StatusView>,
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

async fn hook() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "this reconciler does not read its configuration from Git\n",
    )
}

/// Serves the listener until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    status: watch::Receiver<StatusView>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let state = HttpState {
        registry: Arc::new(registry),
        status,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .route("/hooks/git", post(hook))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}
