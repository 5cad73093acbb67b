//! The reconciler's Prometheus metrics (ferrolb's names, and MetalLB's allocator metrics so that
//! existing dashboards keep working) and its HTTP listener.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use ferrolb_core::alloc::{PendingKind, PoolUsage};
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

/// Why Services wait ([`PendingKind::as_str`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PendingLabel {
    /// `request`, `taken`, `full`, `not_served` or `changed`.
    pub reason: &'static str,
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
    /// LoadBalancer Services waiting for an address, by reason.
    pub services_pending: Family<PendingLabel, Gauge>,
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
            "services_pending",
            "LoadBalancer Services waiting for an address, by reason",
            self.services_pending.clone(),
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

    /// Records how many Services wait for an address, by reason.
    /// Every kind is set, so that one no Service has any more reads 0.
    pub fn record_pending(&self, decisions: &[ferrolb_core::alloc::Decision]) {
        let mut counts: std::collections::BTreeMap<PendingKind, i64> =
            PendingKind::ALL.iter().map(|k| (*k, 0)).collect();
        for d in decisions {
            if let ferrolb_core::alloc::Outcome::Pending { reason } = &d.outcome {
                *counts.entry(reason.kind()).or_default() += 1;
            }
        }
        for (kind, n) in counts {
            self.services_pending
                .get_or_create(&PendingLabel {
                    reason: kind.as_str(),
                })
                .set(n);
        }
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

/// The Git webhook: where calls go, the HMAC secret, when the last call was taken, and the
/// bounds on reading bodies.
#[derive(Debug)]
pub struct Hook {
    /// Signals the controller to fetch now.
    pub tx: tokio::sync::mpsc::Sender<()>,
    /// The shared secret; without it, calls are not authenticated.
    pub secret: Option<Vec<u8>>,
    /// When the last call was taken (at most one a second).
    pub last: std::sync::Mutex<Option<std::time::Instant>>,
    /// Bodies read at once; a call beyond them is answered 503 before its body is read.
    pub bodies: tokio::sync::Semaphore,
    /// Time a body may take to arrive.
    pub body_timeout: std::time::Duration,
}

impl Hook {
    /// A webhook with [`HOOK_BODIES`] bodies read at once, each within [`HOOK_BODY_TIMEOUT`].
    pub fn new(tx: tokio::sync::mpsc::Sender<()>, secret: Option<Vec<u8>>) -> Hook {
        Hook {
            tx,
            secret,
            last: std::sync::Mutex::new(None),
            bodies: tokio::sync::Semaphore::new(HOOK_BODIES),
            body_timeout: HOOK_BODY_TIMEOUT,
        }
    }
}

/// Largest webhook body accepted.
pub const HOOK_BODY_LIMIT: usize = 1 << 20;

/// Webhook bodies read at once: a Git server sends one call per push, so a few are plenty, and
/// together they hold at most this many times [`HOOK_BODY_LIMIT`].
pub const HOOK_BODIES: usize = 4;

/// Time a webhook body may take to arrive.
pub const HOOK_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    let status = s.status.borrow();
    if status.ready {
        (StatusCode::OK, "ready\n".to_string())
    } else if !status.kubernetes_refused.is_empty() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the Kubernetes API refuses a permission the reconciler needs:\n{}\n",
                status.kubernetes_refused.join("\n")
            ),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: sources or etcd not read yet\n".to_string(),
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
    let Some(sig) = header.and_then(|h| h.strip_prefix("sha256=")).and_then(hex) else {
        return false;
    };
    mac_valid(secret, &sig, body)
}

/// Why a webhook call is refused before its body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Content-Length` says the body is over [`HOOK_BODY_LIMIT`].
    TooLarge,
    /// A secret is set and `X-Hub-Signature-256` is missing or not `sha256=` and 64 hex digits.
    Unsigned,
}

impl Refusal {
    fn answer(self) -> (StatusCode, &'static str) {
        match self {
            Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB\n"),
            Refusal::Unsigned => (
                StatusCode::UNAUTHORIZED,
                "missing or wrong X-Hub-Signature-256\n",
            ),
        }
    }
}

/// The checks a call must pass before its body is read: its announced length, and, when a
/// secret is set, a well-formed signature header. Hands back the signature to verify.
pub fn precheck(
    secret_set: bool,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Vec<u8>>, Refusal> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > HOOK_BODY_LIMIT as u64) {
        return Err(Refusal::TooLarge);
    }
    if !secret_set {
        return Ok(None);
    }
    headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("sha256="))
        .and_then(hex)
        .filter(|sig| sig.len() == 32)
        .map(Some)
        .ok_or(Refusal::Unsigned)
}

/// Checks an HMAC-SHA256 `signature` of `body` (in constant time).
fn mac_valid(secret: &[u8], signature: &[u8], body: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

/// `POST /hooks/git`: refuses what [`precheck`] refuses without reading the body; reads at
/// most [`HOOK_BODIES`] bodies at once (503 beyond), each up to [`HOOK_BODY_LIMIT`] within the
/// hook's body timeout (408 after it); checks the signature (when a secret is set) and a rate
/// of one call a second, then asks the controller to fetch now.
async fn git_hook(
    State(s): State<HttpState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> (StatusCode, &'static str) {
    let Some(h) = &s.hook else {
        return (
            StatusCode::NOT_FOUND,
            "this reconciler does not read its configuration from Git\n",
        );
    };
    let signature = match precheck(h.secret.is_some(), &headers) {
        Ok(sig) => sig,
        Err(refusal) => return refusal.answer(),
    };
    let Ok(_reading) = h.bodies.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many webhook calls at once\n",
        );
    };
    let body =
        match tokio::time::timeout(h.body_timeout, axum::body::to_bytes(body, HOOK_BODY_LIMIT))
            .await
        {
            Ok(Ok(body)) => body,
            // Over the limit, or the client went away.
            Ok(Err(_)) => return Refusal::TooLarge.answer(),
            Err(_) => return (StatusCode::REQUEST_TIMEOUT, "the body took too long\n"),
        };
    if let (Some(secret), Some(sig)) = (&h.secret, &signature) {
        if !mac_valid(secret, sig, &body) {
            return Refusal::Unsigned.answer();
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
    ferrolb_etcd::daemon::http::serve(
        listener,
        app,
        ferrolb_etcd::daemon::http::Limits::default(),
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_services_are_counted_by_reason_and_a_reason_gone_reads_zero() {
        use ferrolb_core::alloc::{Decision, Outcome, Pending, ServiceKey};
        let pending = |name: &str, reason: Pending| Decision {
            key: ServiceKey::new("default", name),
            outcome: Outcome::Pending { reason },
            previous: Vec::new(),
        };
        let taken = Pending::AddressTaken {
            ip: "10.0.0.1".parse().expect("ip"),
            why: "held by default/web without a shared key".into(),
        };
        let m = Arc::new(Metrics::default());
        let value = |reason| {
            m.services_pending
                .get_or_create(&PendingLabel { reason })
                .get()
        };
        m.record_pending(&[
            pending("a", taken.clone()),
            pending("b", taken),
            pending("c", Pending::NoPool),
        ]);
        assert_eq!(
            (value("taken"), value("not_served"), value("full")),
            (2, 1, 0)
        );
        m.record_pending(&[pending("c", Pending::NoPool)]);
        assert_eq!((value("taken"), value("not_served")), (0, 1));
    }

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

    fn headers(pairs: &[(&'static str, &str)]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    const SIG: &str = "sha256=88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b";

    #[test]
    fn calls_are_refused_before_their_body_when_unsigned_malformed_or_too_long() {
        assert_eq!(precheck(true, &headers(&[])), Err(Refusal::Unsigned));
        let malformed = headers(&[("x-hub-signature-256", "sha256=88aa")]);
        assert_eq!(precheck(true, &malformed), Err(Refusal::Unsigned));
        let sha1 = headers(&[(
            "x-hub-signature-256",
            "sha1=88aab3ede8d3adf94d26ab90d3bafd4a2083070c",
        )]);
        assert_eq!(precheck(true, &sha1), Err(Refusal::Unsigned));
        let long = headers(&[("x-hub-signature-256", SIG), ("content-length", "1048577")]);
        assert_eq!(precheck(true, &long), Err(Refusal::TooLarge));
        assert_eq!(precheck(false, &long), Err(Refusal::TooLarge));
        let good = headers(&[("x-hub-signature-256", SIG), ("content-length", "5")]);
        assert!(matches!(precheck(true, &good), Ok(Some(sig)) if sig.len() == 32));
        assert_eq!(precheck(false, &headers(&[])), Ok(None));
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

    /// A listener with a Git webhook, its hook, and the sender that stops it.
    async fn listen(hook: Hook) -> (std::net::SocketAddr, Arc<Hook>, watch::Sender<bool>) {
        let hook = Arc::new(hook);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = watch::channel(false);
        let (_status_tx, status) = watch::channel(StatusView::default());
        tokio::spawn(serve(
            listener,
            Registry::default(),
            status,
            Some(hook.clone()),
            stopped,
        ));
        (addr, hook, stop)
    }

    /// Sends `head` (a request without its body) and reads the status line of the answer.
    async fn send_head(s: &mut tokio::net::TcpStream, head: &str) {
        s.write_all(head.as_bytes()).await.expect("write");
    }

    async fn status_line(s: &mut tokio::net::TcpStream) -> String {
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("answered in time")
            .expect("read");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    fn head(signature: Option<&str>, length: usize) -> String {
        let sig = signature.map_or(String::new(), |s| format!("X-Hub-Signature-256: {s}\r\n"));
        format!("POST /hooks/git HTTP/1.1\r\nHost: t\r\n{sig}Content-Length: {length}\r\n\r\n")
    }

    #[tokio::test]
    async fn an_unsigned_or_oversized_call_is_answered_without_its_body() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let (addr, _hook, _stop) = listen(Hook::new(tx, Some(b"secret".to_vec()))).await;
        for (h, want) in [
            (head(None, 1 << 20), "401"),
            (head(Some("sha256=zz"), 1 << 20), "401"),
            (head(Some(SIG), (1 << 20) + 1), "413"),
        ] {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            // The body never comes: the answer must not wait for it.
            send_head(&mut s, &h).await;
            let line = status_line(&mut s).await;
            assert!(line.contains(want), "{h:?}: {line}");
        }
    }

    #[tokio::test]
    async fn bodies_beyond_the_bound_are_refused_at_once_and_a_stalled_body_times_out() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let mut hook = Hook::new(tx, Some(b"secret".to_vec()));
        hook.bodies = tokio::sync::Semaphore::new(1);
        hook.body_timeout = std::time::Duration::from_millis(300);
        let (addr, hook, _stop) = listen(hook).await;

        let mut stalled = tokio::net::TcpStream::connect(addr).await.expect("connect");
        send_head(&mut stalled, &head(Some(SIG), 5)).await;
        tokio::time::timeout(PATIENCE, async {
            while hook.bodies.available_permits() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the first body is being read");

        let mut second = tokio::net::TcpStream::connect(addr).await.expect("connect");
        send_head(&mut second, &head(Some(SIG), 5)).await;
        assert!(status_line(&mut second).await.contains("503"));

        assert!(status_line(&mut stalled).await.contains("408"));

        // Once the stalled body gave up its place, a signed call is taken.
        let mut good = tokio::net::TcpStream::connect(addr).await.expect("connect");
        send_head(&mut good, &head(Some(SIG), 5)).await;
        good.write_all(b"hello").await.expect("body");
        assert!(status_line(&mut good).await.contains("202"));
        assert!(rx.try_recv().is_ok(), "the controller was asked to fetch");
    }
}
