//! `ferrolb-speaker`: one per node. Holds an etcd lease, claims addresses through etcd
//! transactions and answers ARP and NDP for exactly the addresses it holds. It needs no
//! Kubernetes credentials: etcd is its only peer.
//!
//! ```text
//!  run ──▶ controller (lease, watch, decide, claim/release) ──HeldSet──▶ responders (per interface)
//!      └─▶ HTTP (/metrics, /healthz, /readyz)              ◀──yields──┘
//! ```
//!
//! - [`settings`]: the command line (exact; other parts and the tests drive it).
//! - [`state`]: every decision (`SpeakerState`, pure, on `ferrolb_core::view::View` and
//!   `ferrolb_core::election`); [`etcd`]: the requests.
//! - [`controller`]: the executor: the etcd session (`ferrolb_etcd::session`), the actions.
//! - [`links`]: the messages and channels between the tasks.
//! - [`responder`]: answers and gratuitous announcements, one task per interface.
//! - [`sys`]: the only unsafe code: raw sockets; and the interface list from /sys.
//! - [`metrics`]: Prometheus metrics and the HTTP listener.
//!
//! Shutdown (SIGTERM or SIGINT): stop answering, revoke the lease (claims vanish at once and the
//! next node takes over), exit 0. The same, but exit 1, when a companion task of the controller
//! (the responders, the HTTP listener, the fence pulse) ends on its own.

#![deny(unsafe_code)]

pub mod controller;
pub mod etcd;
pub mod fence;
pub mod heartbeat;
pub mod links;
pub mod metrics;
pub mod responder;
pub mod settings;
pub mod state;
pub mod sys;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use ferrolb_core::respond::HeldSet;
use ferrolb_daemon::{self as daemon, Companion};
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::controller::Controller;
use crate::fence::Fence;
use crate::links::Links;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// How long the companions (HTTP listener, responders, fence pulse) may take to stop after the
/// controller did.
const COMPANION_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the speaker until SIGTERM or SIGINT (then stops gracefully and returns `Ok`), or until a
/// part of it fails.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    info!(node = %settings.node_name, endpoints = ?settings.etcd.etcd_endpoints, prefix = %settings.etcd.etcd_prefix, "starting");
    settings.check()?;
    let metrics = Arc::new(Metrics::default());
    metrics
        .etcd_plaintext_endpoints
        .set(settings.etcd.warn_plaintext());
    let healthy = Arc::new(AtomicBool::new(true));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (held_tx, held_rx) = watch::channel(Arc::new(HeldSet::default()));
    let (interfaces_tx, interfaces_rx) = watch::channel(Vec::new());
    let (events_tx, events_rx) = mpsc::channel(256);
    let (beat_tx, beat_rx) = watch::channel(heartbeat::Beat::default());
    let links = Links {
        held_tx,
        interfaces_tx,
        events: events_rx,
        beat_tx,
        liveness: Arc::new(Mutex::new(ferrolb_core::liveness::Liveness::default())),
        clock: tokio::time::Instant::now(),
        fence: Arc::new(Fence::new()),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let heartbeat = heartbeats(&settings, &links, beat_rx)?;
    let fence = links.fence.clone();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let http = metrics::serve(
        listener,
        metrics.register(),
        healthy.clone(),
        links.ready.clone(),
        stop_rx.clone(),
    );
    let mut companions = vec![Companion::spawn(
        "HTTP listener",
        async move { Ok(http.await?) },
    )];
    let controller = Controller::new(settings.clone(), links, metrics.clone())?;
    let control = tokio::spawn(controller.run(stop_rx.clone()));
    // Without heartbeats, a pulse on the same event loop keeps the fence open: a stalled loop
    // stops answering within a third of the TTL, before its lease can expire.
    if !settings.heartbeats() {
        let pulse = fence::pulse(fence.clone(), settings.fence_window(), stop_rx.clone());
        companions.push(Companion::spawn("fence pulse", ended_ok(pulse)));
    }
    // The responders stop after the controller, which first empties the held set. If they
    // end on their own, the node answers nothing: the daemon stops, its controller releases
    // every claim, and it exits with an error for the DaemonSet to restart it.
    let (responders_stop_tx, responders_stop_rx) = watch::channel(false);
    let shared = responder::Shared {
        held: held_rx,
        events: events_tx,
        metrics,
        refresh: settings.garp_refresh,
        heartbeat,
        fence,
    };
    let responders = responder::supervise(interfaces_rx, shared, responders_stop_rx);
    let hook = (settings.debug_stall_dir.as_ref())
        .map(|d| d.join(format!("{}.end-responders", settings.node_name)));
    let responders = ended_by_hook(responders, hook);
    companions.push(Companion::spawn("responders", ended_ok(responders)));
    let outcome = daemon::supervise(control, &mut companions, &stop_tx).await;
    healthy.store(false, Ordering::Relaxed);
    let _ = responders_stop_tx.send(true);
    daemon::finish(companions, COMPANION_GRACE).await;
    outcome
}

/// A task that returns nothing, as a companion that ended without an error.
async fn ended_ok(task: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    task.await;
    Ok(())
}

/// The `--debug-stall-dir` test hook for supervision: `task`, ended early once the file `hook`
/// (`<node>.end-responders` in that directory) appears (looked for every 100 ms).
async fn ended_by_hook(
    task: impl std::future::Future<Output = ()>,
    hook: Option<std::path::PathBuf>,
) {
    let Some(path) = hook else {
        return task.await;
    };
    let appears = async {
        while !path.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tracing::warn!("test hook: ending the responders task");
    };
    tokio::select! {
        () = task => {}
        () = appears => {}
    }
}

/// What the heartbeat tasks (inside the responders) need, when heartbeats are on.
fn heartbeats(
    settings: &Settings,
    links: &Links,
    beat_rx: watch::Receiver<heartbeat::Beat>,
) -> anyhow::Result<Option<(watch::Receiver<heartbeat::Beat>, heartbeat::Config)>> {
    if !settings.heartbeats() {
        return Ok(None);
    }
    let config = heartbeat::Config {
        node: settings.node_name.clone(),
        interval: settings.heartbeat_interval,
        key: settings.heartbeat_key()?.map(Into::into),
        liveness: links.liveness.clone(),
        clock: links.clock,
        seq: Default::default(),
        fence: links.fence.clone(),
        window: settings.fence_window(),
    };
    Ok(Some((beat_rx, config)))
}
