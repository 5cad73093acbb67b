//! `ferrolb-reconciler`: the control loop. Keeps the pool configuration from its source (never
//! replacing a good configuration with a broken one), allocates addresses with
//! `ferrolb_core::alloc`, and publishes one announcement per address into etcd for the
//! speakers. Any number of replicas; one leader, elected through an etcd lease, writes.
//!
//! - [`settings`]: the command line.
//! - [`source`]: reading and watching configuration and Service files.
//! - [`plan`]: deciding (pure): allocation, announcements, the writes that differ.
//! - [`store`]: etcd requests, with every write fenced by leadership.
//! - [`controller`]: the loop that ties them together.
//! - [`metrics`]: Prometheus metrics and the HTTP listener (`/metrics`, `/healthz`, `/readyz`,
//!   `/status`, `/hooks/git`).
//!
//! - [`git`], [`known_hosts`]: the configuration from a Git repository, SSH host keys checked.
//! - [`cluster`], [`feedback`]: Services from the Kubernetes API, and the statuses and Events
//!   written back.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod controller;
pub mod feedback;
pub mod git;
pub mod known_hosts;
pub mod metrics;
pub mod plan;
pub mod settings;
pub mod source;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::info;

use crate::controller::{Reconciler, StatusView};
use crate::metrics::Metrics;
use crate::settings::Settings;

/// This replica's identity: the host name and the process id.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{host}/{}", std::process::id())
}

/// Runs the reconciler until SIGTERM or SIGINT (then finishes its writes, releases leadership
/// and returns `Ok`), or until a part of it fails.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let identity = identity();
    info!(%identity, endpoints = ?settings.etcd.etcd_endpoints, "starting");
    let metrics = Arc::new(Metrics::default());
    let plaintext = settings.etcd.plaintext_remote();
    for e in &plaintext {
        tracing::warn!(endpoint = %e, "etcd over plain HTTP to another host: use TLS (--etcd-cacert, --etcd-cert, --etcd-key)");
    }
    metrics
        .etcd_plaintext_endpoints
        .set(i64::try_from(plaintext.len()).unwrap_or(i64::MAX));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (status_tx, status_rx) = watch::channel(StatusView::default());
    let (hook, hooks) = if settings.config_git.is_some() {
        let secret = settings
            .webhook_secret_file
            .as_ref()
            .map(|f| {
                std::fs::read(f)
                    .map(|s| s.trim_ascii().to_vec())
                    .with_context(|| format!("reading --webhook-secret-file {}", f.display()))
            })
            .transpose()?;
        if secret.is_none() {
            tracing::warn!("no --webhook-secret-file: webhook calls are not authenticated");
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let hook = metrics::Hook {
            tx,
            secret,
            last: std::sync::Mutex::new(None),
        };
        (Some(Arc::new(hook)), Some(rx))
    } else {
        (None, None)
    };
    let reconciler = Reconciler::new(
        settings.clone(),
        identity,
        status_tx,
        metrics.clone(),
        hooks,
    )?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let mut http = tokio::spawn(metrics::serve(
        listener,
        metrics.register(),
        status_rx,
        hook,
        stop_rx.clone(),
    ));
    let mut control = tokio::spawn(reconciler.run(stop_rx));
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let early = tokio::select! {
        _ = term.recv() => { info!("SIGTERM: stopping"); None }
        _ = int.recv() => { info!("SIGINT: stopping"); None }
        r = &mut control => {
            // Its result is taken here: `finish` must not wait for it again.
            return r.context("controller task").and_then(|r| r).context("controller stopped");
        }
        r = &mut http => Some(match r {
            Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP listener stopped")),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("the HTTP listener failed")),
            Err(e) => Err(anyhow::Error::new(e).context("the HTTP task")),
        }),
    };
    let _ = stop_tx.send(true);
    let outcome = finish(control, early).await;
    http.abort();
    outcome
}

/// Lets the controller finish its graceful stop (stop answering or writing, then end the lease)
/// whatever ended the run, within a few seconds; the first error wins.
async fn finish(
    control: tokio::task::JoinHandle<anyhow::Result<()>>,
    early: Option<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let stopped = match tokio::time::timeout(std::time::Duration::from_secs(3), control).await {
        Ok(r) => r.context("controller task").and_then(|r| r),
        Err(_) => Err(anyhow::anyhow!("the controller did not stop within 3 s")),
    };
    match early {
        Some(Err(e)) => Err(e),
        _ => stopped,
    }
}
