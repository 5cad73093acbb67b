//! `ferrolb-reconciler`: the control loop. Keeps the pool configuration from its source (never
//! replacing a good configuration with a broken one), allocates addresses with
//! `ferrolb_core::alloc`, and publishes one announcement per address into etcd for the
//! speakers. Any number of replicas; one leader, elected through an etcd lease, writes.
//!
//! - [`settings`]: the command line.
//! - [`source`]: reading and watching configuration and Service files.
//! - [`check`]: loading and validating a revision off the async thread, within a budget.
//! - [`plan`]: deciding (pure): allocation, announcements, the writes that differ.
//! - [`store`]: etcd requests, with every write fenced by leadership.
//! - [`controller`]: the loop that ties them together.
//! - [`leadership`]: whether the leader may still write where etcd does not fence it.
//! - [`status`]: what `/status` shows; [`metrics`]: Prometheus metrics; [`http`]: the listener
//!   (`/metrics`, `/healthz`, `/readyz`, `/status`) and [`webhook`] (`/hooks/git`).
//!
//! - [`git`], [`known_hosts`]: the configuration from a Git repository, SSH host keys checked.
//! - [`cluster`], [`feedback`]: Services from the Kubernetes API, and the statuses and Events
//!   written back.
//! - [`pools`]: the configuration from `IPAddressPool` and `L2Advertisement` objects in the
//!   cluster; [`admission`]: the validating admission webhook that refuses invalid ones;
//!   [`objects`]: the ConfigurationState and ServiceL2Status objects kubectl shows.

#![forbid(unsafe_code)]

pub mod admission;
pub mod check;
pub mod cluster;
pub mod controller;
pub mod feedback;
pub mod git;
pub mod http;
pub mod known_hosts;
pub mod leadership;
pub mod metrics;
pub mod objects;
pub mod plan;
pub mod pools;
pub mod settings;
pub mod source;
pub mod status;
pub mod store;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrolb_daemon::{self as daemon, Companion};
use tokio::sync::watch;
use tracing::info;

use crate::controller::Reconciler;
use crate::metrics::Metrics;
use crate::settings::{ConfigSource, Settings};
use crate::status::StatusView;

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
    metrics
        .etcd_plaintext_endpoints
        .set(settings.etcd.warn_plaintext());
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
        let hook = webhook::Hook::new(tx, secret);
        (Some(Arc::new(hook)), Some(rx))
    } else {
        (None, None)
    };
    let pool_watch = match settings.config {
        Some(ConfigSource::Kubernetes) => {
            let client = cluster::client(settings.kubeconfig.as_deref()).await?;
            Some(pools::PoolWatch::start(&client))
        }
        _ => None,
    };
    let admission = admission_webhook(&settings, pool_watch.as_ref(), stop_rx.clone()).await?;
    let reconciler = Reconciler::new(
        settings.clone(),
        identity,
        status_tx,
        metrics.clone(),
        hooks,
        pool_watch,
    )?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let http = http::serve(
        listener,
        metrics.register(),
        status_rx,
        hook,
        stop_rx.clone(),
    );
    let mut companions = vec![Companion::spawn(
        "HTTP listener",
        async move { Ok(http.await?) },
    )];
    if let Some(webhook) = admission {
        companions.push(Companion::spawn("admission webhook", async move {
            Ok(webhook.await?)
        }));
    }
    let control = tokio::spawn(reconciler.run(stop_rx));
    let outcome = daemon::supervise(control, &mut companions, &stop_tx).await;
    daemon::finish(companions, Duration::from_secs(1)).await;
    outcome
}

/// The admission webhook's server, when `--admission-listen` is given (with `--config
/// kubernetes`: it validates against the pool objects' caches).
async fn admission_webhook(
    settings: &Settings,
    pool_watch: Option<&pools::PoolWatch>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<impl std::future::Future<Output = std::io::Result<()>> + use<>>> {
    let Some(addr) = settings.admission_listen else {
        return Ok(None);
    };
    let Some(watch) = pool_watch else {
        anyhow::bail!("--admission-listen validates pool objects: it needs --config kubernetes");
    };
    let (Some(cert), Some(key)) = (&settings.admission_cert, &settings.admission_key) else {
        anyhow::bail!("--admission-listen needs --admission-cert and --admission-key");
    };
    let tls = ferrolb_daemon::http::tls_acceptor(cert, key)?;
    let listener = admission::bind(addr).await?;
    info!(%addr, "admission webhook listening");
    let app = admission::router(watch.caches.clone(), settings.config_options());
    Ok(Some(admission::serve(listener, tls, app, stop)))
}
