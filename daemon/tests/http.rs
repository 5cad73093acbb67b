//! The shared HTTP listener against stalled and slow clients, on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ferrolb_daemon::http::{Limits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Generous: every wait below ends long before this unless the behaviour is broken.
const PATIENCE: Duration = Duration::from_secs(10);

/// Serves `/healthz`, and `/slow`, which counts its calls in `running` and never ends.
async fn start_counting(
    limits: Limits,
    running: Arc<AtomicUsize>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/slow",
            get(move || async move {
                running.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late\n"
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn start(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    start_counting(limits, Arc::default()).await
}

/// One request on a fresh connection; the whole answer.
async fn request(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether the server closes `s` (end of stream or reset) within [`PATIENCE`], without
/// answering anything.
async fn closed_silently(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(PATIENCE, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn stalled_requests_beyond_the_cap_neither_starve_healthz_nor_stay_open() {
    let limits = Limits {
        max_connections: 16,
        header_read_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
    };
    let (addr, _stop) = start(limits).await;
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            .await
            .expect("half a request");
        stalled.push(s);
    }

    // While they stall, a fresh connection is served: it evicts the oldest stalled one.
    assert!(request(addr, "/healthz").await.starts_with("HTTP/1.1 200"));

    // Every stalled connection is closed: beyond the cap at once, the rest at the timeout.
    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(
            closed_silently(s).await,
            "stalled connection {i} still open"
        );
    }
    assert!(request(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_handler_running_past_the_request_timeout_is_answered_408() {
    let limits = Limits {
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _stop) = start(limits).await;
    let answer = request(addr, "/slow").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _stop) = start(limits).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
        .await
        .expect("answered")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert!(
        closed_silently(&mut s).await,
        "the idle connection stayed open"
    );
}

#[tokio::test]
async fn at_the_cap_with_every_connection_busy_a_new_one_is_closed() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let running = Arc::new(AtomicUsize::new(0));
    let (addr, _stop) = start_counting(limits, running.clone()).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        busy.push(s);
    }
    // Both handlers must run: a connection still reading its headers would be evicted instead.
    tokio::time::timeout(PATIENCE, async {
        while running.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both handlers run");
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    // Sent whole, so only a refusal leaves it unanswered.
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert!(closed_silently(&mut extra).await, "served beyond the cap");
}
