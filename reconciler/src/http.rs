//! The reconciler's HTTP listener: `/metrics`, `/healthz`, `/readyz`, `/status` and the Git
//! webhook (`/hooks/git`, [`webhook`](crate::webhook)).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::status::StatusView;
use crate::webhook::{self, Hook};

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    status: watch::Receiver<StatusView>,
    hook: Option<Arc<Hook>>,
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    ferrolb_daemon::http::openmetrics(&s.registry)
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

async fn git_hook(
    State(s): State<HttpState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> (StatusCode, &'static str) {
    webhook::call(s.hook.as_deref(), headers, body).await
}

async fn status_json(State(s): State<HttpState>) -> Json<StatusView> {
    Json(s.status.borrow().clone())
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
        .layer(axum::extract::DefaultBodyLimit::max(
            webhook::HOOK_BODY_LIMIT,
        ))
        .with_state(state);
    ferrolb_daemon::http::serve(
        listener,
        app,
        ferrolb_daemon::http::Limits::default(),
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "sha256=88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b";

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
