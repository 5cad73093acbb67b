//! The HTTP listener both daemons serve their routes on, hardened against clients that open
//! connections and never finish them (slow-loris).
//!
//! - **Headers** must arrive within [`Limits::header_read_timeout`], or the connection closes.
//! - **A request** (handler and body read) gets [`Limits::request_timeout`]; after it the client
//!   gets `408 Request Timeout`.
//! - **An idle connection** (no request in flight) closes after [`Limits::idle_timeout`].
//! - **At most [`Limits::max_connections`]** are open at once, so the process never runs out of
//!   file descriptors. A new connection beyond the cap evicts the oldest one that has no request
//!   in flight (it is stalled in its headers, or idle between keep-alive requests); only when
//!   every open connection is running a handler is the new one refused. A kubelet probe opens a
//!   fresh connection and sends its request at once, so stalled connections cannot starve it:
//!   an attacker would have to open the whole cap of new connections in the moment between the
//!   probe's connect and its request.
//!
//! Which connection gives way is decided by [`admit`], a pure function over the open
//! connections, oldest first; the accept loop acts on its answer.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
pub use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Bounds on what one client can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time from the start of a request's headers to their end.
    pub header_read_timeout: Duration,
    /// Time a handler (with the body it reads) may take.
    pub request_timeout: Duration,
    /// Time a connection may stay open without a request in flight.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    /// 128 connections (Prometheus and the kubelet need a handful), headers in 5 s, a request in
    /// 10 s, idle for 30 s.
    fn default() -> Self {
        Limits {
            max_connections: 128,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Largest request head (request line and headers) read.
const MAX_HEADER_BYTES: usize = 16 << 10;

/// What to do with a newly accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Below the cap: serve it.
    Accept,
    /// At the cap: close this connection (the oldest without a request in flight) and serve the
    /// new one.
    Evict(u64),
    /// At the cap with every connection running a handler: close the new one.
    Refuse,
}

/// Decides about a new connection, given the open ones oldest first as `(id, busy)` (`busy`: a
/// request in flight).
pub fn admit(max: usize, open: impl ExactSizeIterator<Item = (u64, bool)>) -> Admit {
    if open.len() < max {
        return Admit::Accept;
    }
    let mut open = open;
    match open.find(|(_, busy)| !busy) {
        Some((id, _)) => Admit::Evict(id),
        None => Admit::Refuse,
    }
}

/// What the accept loop knows about one open connection.
#[derive(Debug)]
struct Conn {
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

/// Requests in flight on one connection, and when the last one ended.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// When the connection turns idle for too long, if it has no request in flight now.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.busy() {
            return None;
        }
        Some(*self.last.lock().unwrap_or_else(|p| p.into_inner()) + idle)
    }
}

/// Marks a request in flight while it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open connections by id; ids grow, so the map is oldest first.
type Open = Arc<Mutex<BTreeMap<u64, Conn>>>;

/// Removes a connection from the open set when its task ends.
struct Registered {
    open: Open,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.open).remove(&self.id);
    }
}

fn lock(open: &Open) -> std::sync::MutexGuard<'_, BTreeMap<u64, Conn>> {
    open.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes; then closes every
/// connection. Failing to accept (out of file descriptors, say) is logged and retried, never
/// fatal.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, None, app, limits, shutdown).await
}

/// [`serve`] over TLS: each connection's handshake must end within
/// [`Limits::header_read_timeout`], and a connection still in its handshake counts as idle
/// (the first to give way at the cap).
pub async fn serve_tls(
    listener: TcpListener,
    tls: TlsAcceptor,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, Some(tls), app, limits, shutdown).await
}

/// A TLS acceptor serving the PEM certificate chain and private key in these files (read once:
/// a renewed certificate takes a restart).
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading the certificate chain {}", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate in it",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the key do not make a TLS server configuration")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve_with(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let open: Open = Arc::default();
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if !make_room(&open, limits) {
            drop(stream);
            continue;
        }
        let id = next_id;
        next_id += 1;
        let (activity, close, registered) = register(&open, id);
        let conn = Connection {
            app: app.clone(),
            limits,
            activity,
            close,
            _registered: registered,
        };
        tokio::spawn(conn.run(stream, tls.clone()));
    }
    for c in std::mem::take(&mut *lock(&open)).into_values() {
        c.close.notify_one();
    }
    Ok(())
}

/// Whether a new connection may be served: under the cap, or once the oldest idle connection
/// is closed to make room; not when every connection is busy.
fn make_room(open: &Open, limits: Limits) -> bool {
    let decision = {
        let conns = lock(open);
        admit(
            limits.max_connections,
            conns.iter().map(|(id, c)| (*id, c.activity.busy())),
        )
    };
    match decision {
        Admit::Accept => true,
        Admit::Evict(id) => {
            tracing::debug!(
                connection = id,
                "HTTP connection cap reached: closing the oldest idle one"
            );
            if let Some(c) = lock(open).remove(&id) {
                c.close.notify_one();
            }
            true
        }
        Admit::Refuse => {
            tracing::debug!("HTTP connection cap reached, every connection busy: refusing");
            false
        }
    }
}

/// Records connection `id` as open: its activity, the notice that closes it, and the guard
/// that forgets it when the connection ends.
fn register(open: &Open, id: u64) -> (Arc<Activity>, Arc<Notify>, Registered) {
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last: Mutex::new(Instant::now()),
    });
    let close = Arc::new(Notify::new());
    let conn = Conn {
        activity: activity.clone(),
        close: close.clone(),
    };
    lock(open).insert(id, conn);
    let registered = Registered {
        open: open.clone(),
        id,
    };
    (activity, close, registered)
}

/// One open connection: what serves it, and how the accept loop follows and closes it.
struct Connection {
    app: Router,
    limits: Limits,
    activity: Arc<Activity>,
    close: Arc<Notify>,
    _registered: Registered,
}

impl Connection {
    /// Completes the TLS handshake, if any, within the header timeout, then serves.
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let Some(tls) = tls else {
            return self.serve(stream).await;
        };
        let handshake = tls.accept(stream);
        tokio::select! {
            r = tokio::time::timeout(self.limits.header_read_timeout, handshake) => match r {
                Ok(Ok(stream)) => self.serve(stream).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake took too long"),
            },
            () = self.close.notified() => {}
        }
    }

    /// Serves the connection until the client closes it, it stays idle too long or the accept
    /// loop asks it to close.
    async fn serve<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (app, limits) = (self.app.clone(), self.limits);
        let service = {
            let activity = self.activity.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let in_flight = InFlight::enter(&activity);
                let call = app.clone().oneshot(req);
                async move {
                    let response = match tokio::time::timeout(limits.request_timeout, call).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(_) => timed_out(),
                    };
                    drop(in_flight);
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(MAX_HEADER_BYTES)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        loop {
            let idle = self.activity.idle_deadline(limits.idle_timeout);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "HTTP connection ended");
                    }
                    return;
                }
                () = self.close.notified() => return,
                () = sleep_until(idle, limits.idle_timeout) => {
                    if self
                        .activity
                        .idle_deadline(limits.idle_timeout)
                        .is_some_and(|d| d <= Instant::now())
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or for `recheck` when there is none (a request is in flight).
async fn sleep_until(deadline: Option<Instant>, recheck: Duration) {
    tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + recheck)).await;
}

fn timed_out() -> Response {
    (
        StatusCode::REQUEST_TIMEOUT,
        [(axum::http::header::CONNECTION, "close")],
        "the request took too long\n",
    )
        .into_response()
}

/// `/metrics`: the registry in the OpenMetrics text format.
pub fn openmetrics(registry: &prometheus_client::registry::Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_cap_every_connection_is_served() {
        assert_eq!(admit(2, [(0, false)].into_iter()), Admit::Accept);
        assert_eq!(admit(2, std::iter::empty::<(u64, bool)>()), Admit::Accept);
    }

    #[test]
    fn at_the_cap_the_oldest_connection_without_a_request_gives_way() {
        let open = [(3, true), (5, false), (8, false)];
        assert_eq!(admit(3, open.into_iter()), Admit::Evict(5));
        assert_eq!(admit(2, open.into_iter()), Admit::Evict(5));
    }

    #[test]
    fn at_the_cap_with_every_connection_busy_the_new_one_is_refused() {
        let open = [(3, true), (5, true)];
        assert_eq!(admit(2, open.into_iter()), Admit::Refuse);
    }
}
