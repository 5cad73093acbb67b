//! The control loop: keep the last good configuration and Service set, keep the view of etcd,
//! elect a leader, and, on the leader only, decide (`plan`) then write what differs.
//!
//! ```text
//!  pool files ──watch/resync──▶ last good Config ─┐
//!  Service files ─watch/resync─▶ last good Services ├─▶ plan ──▶ fenced etcd writes (leader only)
//!  etcd P/ (announcements, speakers, leader) ──────┘
//! ```
//!
//! Nothing is written before the configuration, the Services and etcd have all been read; an
//! invalid or unreadable source never replaces what is in force; an unchanged announcement is
//! never rewritten, so a restart writes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrolb_core::alloc::ServiceRequest;
use ferrolb_core::announce::NodeInfo;
use ferrolb_core::config::Config;
use ferrolb_core::layout::{ConfigStatus, Keys};
use ferrolb_etcd::bounded;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::plan::{self, Inputs, Write};
use crate::settings::{ServicesFrom, Settings};
use crate::source::{self, Watcher};
use crate::store::{self, NotLeader, Observed, Store};

/// How long a burst of file events may last before the sources are read again.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the sources are read again even without events (a replaced directory is not
/// watched any more; the content hash makes an unchanged read free of consequences).
const RESYNC: Duration = Duration::from_secs(5);

/// Use of one pool in one family, for `/status`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PoolUse {
    /// The pool.
    pub pool: String,
    /// `IPv4` or `IPv6`.
    pub family: &'static str,
    /// Addresses in use (as a string: it may exceed 2^53).
    pub in_use: String,
    /// Addresses in the pool.
    pub total: String,
}

/// What `/status` shows.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct StatusView {
    /// The configuration revision in force.
    pub revision: Option<String>,
    /// When it was applied.
    pub applied_at: Option<String>,
    /// The last error reading a newer configuration.
    pub config_error: Option<String>,
    /// The last error reading the Services.
    pub services_error: Option<String>,
    /// This replica's identity.
    pub identity: String,
    /// The leader's identity, when known.
    pub leader: Option<String>,
    /// Whether this replica leads.
    pub is_leader: bool,
    /// Configuration, Services and etcd have all been read.
    pub ready: bool,
    /// Pool use (leader only: standbys do not allocate).
    pub pools: Vec<PoolUse>,
}

enum SessionEnd {
    Shutdown,
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for SessionEnd {
    fn from(e: E) -> Self {
        SessionEnd::Failed(e.into())
    }
}

/// The reconciler's state.
pub struct Reconciler {
    settings: Settings,
    keys: Keys,
    identity: String,
    config_paths: Vec<PathBuf>,
    services_paths: Vec<PathBuf>,
    config: Option<(String, Arc<Config>)>,
    applied_at: String,
    config_error: Option<String>,
    services: Option<(String, Vec<ServiceRequest>)>,
    services_error: Option<String>,
    lease: Option<i64>,
    observed: Observed,
    synced: bool,
    status_written: Option<ConfigStatus>,
    status_tx: watch::Sender<StatusView>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Reconciler {
    /// A reconciler in file mode (configuration and Services from paths).
    pub fn new(
        settings: Settings,
        identity: String,
        status_tx: watch::Sender<StatusView>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let Some(config) = settings.config.clone() else {
            anyhow::bail!("--config-git is not available in this build yet; use --config PATH");
        };
        let ServicesFrom::Files(services) = settings.services.clone() else {
            anyhow::bail!(
                "--services kubernetes is not available in this build yet; use --services PATH"
            );
        };
        Ok(Reconciler {
            keys: Keys::new(&settings.etcd.etcd_prefix),
            settings,
            identity,
            config_paths: vec![config],
            services_paths: vec![services],
            config: None,
            applied_at: String::new(),
            config_error: None,
            services: None,
            services_error: None,
            lease: None,
            observed: Observed::default(),
            synced: false,
            status_written: None,
            status_tx,
            metrics,
        })
    }

    /// Reads the configuration again; a new valid one replaces the one in force, anything else
    /// keeps it and records the error.
    fn reload_config(&mut self) {
        match source::read_config(&self.config_paths) {
            Err(e) => {
                let msg = format!("cannot read the configuration: {e}");
                if self.config_error.as_deref() != Some(msg.as_str()) {
                    warn!(error = %msg, "keeping the configuration in force");
                }
                self.config_error = Some(msg);
            }
            Ok(read) => {
                let new =
                    self.config.as_ref().map(|(r, _)| r.as_str()) != Some(read.revision.as_str());
                if new && read.report.config.is_some() {
                    for w in read.report.warnings() {
                        warn!(warning = %w, "configuration");
                    }
                }
                match read.report.config {
                    Some(config) => {
                        if new {
                            info!(revision = %read.revision, pools = config.pools.len(), "configuration applied");
                            self.config = Some((read.revision, Arc::new(config)));
                            self.applied_at = now_rfc3339();
                        }
                        self.config_error = None;
                    }
                    None => {
                        let msg = source::summarize(&read.report.diagnostics, 20);
                        if self.config_error.as_deref() != Some(msg.as_str()) {
                            for d in read.report.errors() {
                                warn!(error = %d, "invalid configuration");
                            }
                            warn!(revision = %read.revision, "invalid configuration; keeping the one in force");
                        }
                        self.config_error = Some(msg);
                    }
                }
            }
        }
        self.metrics
            .config_loaded
            .set(i64::from(self.config.is_some()));
        self.metrics
            .config_stale
            .set(i64::from(self.config_error.is_some()));
    }

    /// Reads the Service manifests again, with the same rule: a set with errors does not
    /// replace the last good one (a broken file must not withdraw its Services' addresses).
    fn reload_services(&mut self) {
        match source::read_services(&self.services_paths) {
            Err(e) => {
                let msg = format!("cannot read the Services: {e}");
                if self.services_error.as_deref() != Some(msg.as_str()) {
                    warn!(error = %msg, "keeping the Services in force");
                }
                self.services_error = Some(msg);
            }
            Ok(read) if !read.manifests.diagnostics.is_empty() => {
                let msg = source::summarize(&read.manifests.diagnostics, 20);
                if self.services_error.as_deref() != Some(msg.as_str()) {
                    for d in &read.manifests.diagnostics {
                        warn!(error = %d, "invalid Service manifest");
                    }
                }
                self.services_error = Some(msg);
            }
            Ok(read) => {
                if self.services.as_ref().map(|(r, _)| r.as_str()) != Some(read.revision.as_str()) {
                    info!(revision = %read.revision, services = read.manifests.services.len(), "Services read");
                    let list = read
                        .manifests
                        .services
                        .into_iter()
                        .map(|s| s.request)
                        .collect();
                    self.services = Some((read.revision, list));
                }
                self.services_error = None;
            }
        }
    }

    /// Runs until `shutdown` turns true; then releases leadership.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut config_watch = Watcher::new(&self.config_paths)?;
        let mut services_watch = Watcher::new(&self.services_paths)?;
        self.reload_config();
        self.reload_services();
        self.publish_status(None);
        let mut client: Option<Store> = None;
        loop {
            match self
                .session(
                    &mut client,
                    &mut shutdown,
                    &mut config_watch,
                    &mut services_watch,
                )
                .await
            {
                SessionEnd::Shutdown => break,
                SessionEnd::Failed(e) => {
                    warn!(error = %format!("{e:#}"), "etcd unavailable or leadership lost; retrying");
                    self.metrics.leader.set(0);
                    self.synced = false;
                    self.publish_status(None);
                    tokio::select! {
                        _ = stopped(&mut shutdown) => break,
                        _ = tokio::time::sleep(self.settings.step()) => {}
                    }
                }
            }
        }
        // Release leadership: revoking the lease deletes the leader key at once, so a standby
        // takes over without waiting for the TTL.
        if let (Some(store), Some(lease)) = (client.as_mut(), self.lease) {
            match bounded(Duration::from_millis(800), "revoke", async {
                Ok(store.client.lease_revoke(lease).await?)
            })
            .await
            {
                Ok(_) => info!("leadership released"),
                Err(e) => warn!(error = %e, "could not revoke the lease; it ends with its TTL"),
            }
        }
        Ok(())
    }

    async fn session(
        &mut self,
        client: &mut Option<Store>,
        shutdown: &mut watch::Receiver<bool>,
        config_watch: &mut Watcher,
        services_watch: &mut Watcher,
    ) -> SessionEnd {
        let step = self.settings.step();
        let options = match self.settings.etcd.options(step) {
            Ok(o) => o,
            Err(e) => return SessionEnd::Failed(e),
        };
        let connected = bounded(step, "connect", self.settings.etcd.connect(options)).await;
        let mut store = match connected {
            Ok(c) => Store {
                client: c,
                keys: self.keys.clone(),
            },
            Err(e) => return SessionEnd::Failed(e),
        };
        *client = Some(store.clone());
        match self
            .connected(&mut store, shutdown, config_watch, services_watch)
            .await
        {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn connected(
        &mut self,
        store: &mut Store,
        shutdown: &mut watch::Receiver<bool>,
        config_watch: &mut Watcher,
        services_watch: &mut Watcher,
    ) -> Result<std::convert::Infallible, SessionEnd> {
        let step = self.settings.step();
        let lease = bounded(step, "lease grant", async {
            Ok(store
                .client
                .lease_grant(self.settings.lease_ttl, None)
                .await?
                .id())
        })
        .await?;
        self.lease = Some(lease);
        let (kvs, revision) = bounded(step, "list", store.list()).await?;
        self.observed = Observed::default();
        for (k, v, l) in &kvs {
            if let Err(e) = self.observed.apply(&self.keys, k, Some((v, *l))) {
                warn!(error = %e, "skipping an unreadable key");
            }
        }
        let mut watch = bounded(step, "watch", store.watch(revision + 1)).await?;
        let (mut keeper, mut keepalives) = bounded(step, "keepalive", async {
            Ok(store.client.lease_keep_alive(lease).await?)
        })
        .await?;
        self.synced = true;
        let mut keepalive_tick = tokio::time::interval(step);
        keepalive_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_keepalive = tokio::time::Instant::now();
        loop {
            if self.observed.leader.is_none()
                && bounded(step, "campaign", store.campaign(&self.identity, lease)).await?
            {
                info!(identity = %self.identity, "elected leader");
                self.observed.leader = Some((self.identity.clone(), lease));
            }
            self.reconcile(store, lease).await?;
            tokio::select! {
                _ = stopped(shutdown) => return Err(SessionEnd::Shutdown),
                msg = watch.message() => {
                    let resp = msg?.ok_or_else(|| anyhow::anyhow!("the watch stream ended"))?;
                    if resp.canceled() {
                        return Err(anyhow::anyhow!("the watch was canceled: {}", resp.cancel_reason()).into());
                    }
                    for (k, v) in store::changes(&resp) {
                        if let Err(e) = self.observed.apply(&self.keys, &k, v.as_ref().map(|(v, l)| (v.as_slice(), *l))) {
                            warn!(error = %e, "skipping an unreadable key");
                        }
                    }
                }
                _ = keepalive_tick.tick() => {
                    if last_keepalive.elapsed() > step * 2 {
                        return Err(anyhow::anyhow!("no keepalive answer for {:?}", last_keepalive.elapsed()).into());
                    }
                    keeper.keep_alive().await?;
                }
                resp = keepalives.message() => {
                    let resp = resp?.ok_or_else(|| anyhow::anyhow!("the keepalive stream ended"))?;
                    if resp.ttl() <= 0 {
                        return Err(anyhow::anyhow!("lease {lease} expired").into());
                    }
                    last_keepalive = tokio::time::Instant::now();
                }
                Some(()) = config_watch.changes.recv() => {
                    settle(&mut config_watch.changes).await;
                    self.reload_config();
                }
                Some(()) = services_watch.changes.recv() => {
                    settle(&mut services_watch.changes).await;
                    self.reload_services();
                }
                _ = resync.tick() => {
                    self.reload_config();
                    self.reload_services();
                }
            }
        }
    }

    fn is_leader(&self, lease: i64) -> bool {
        self.observed
            .leader
            .as_ref()
            .is_some_and(|(_, l)| *l == lease)
    }

    /// Decides and, on the leader, writes what differs.
    async fn reconcile(&mut self, store: &mut Store, lease: i64) -> anyhow::Result<()> {
        let leader = self.is_leader(lease);
        self.metrics.leader.set(i64::from(leader));
        let (Some((revision, config)), Some((_, services))) = (&self.config, &self.services) else {
            self.publish_status(None);
            return Ok(());
        };
        if !leader || !self.synced {
            self.publish_status(None);
            return Ok(());
        }
        let mut requests = services.clone();
        plan::current_from_announcements(&mut requests, &self.observed.announcements);
        let nodes: BTreeMap<String, NodeInfo> = self
            .observed
            .speakers
            .iter()
            .map(|(n, r)| {
                (
                    n.clone(),
                    NodeInfo {
                        labels: r.labels.clone(),
                        network_unavailable: false,
                    },
                )
            })
            .collect();
        let p = plan::plan(Inputs {
            config,
            lb_class: self.settings.lb_class.as_deref(),
            services: &requests,
            nodes: &nodes,
            announced: &self.observed.announcements,
        });
        for d in p.decisions.iter().filter(|d| d.moved()) {
            info!(service = %d.key, from = ?d.previous, to = ?d.outcome.ips(), "address changed");
        }
        for (ip, why) in &p.desired.unannounced {
            warn!(%ip, reason = %why, "allocated but not announced");
        }
        let status = ConfigStatus {
            revision: revision.clone(),
            applied_at: self.applied_at.clone(),
            error: self.config_error.clone(),
        };
        if !p.writes.is_empty() {
            let applied = bounded(
                self.settings.step() * 3,
                "write announcements",
                store.apply(&p.writes, lease),
            )
            .await
            .inspect_err(|e| {
                self.metrics.etcd_errors.inc();
                if e.is::<NotLeader>() {
                    self.observed.leader = None;
                }
            })?;
            self.metrics.etcd_writes.inc_by(applied as u64);
            for w in &p.writes {
                match w {
                    Write::Put(a) => {
                        info!(ip = %a.ip, services = ?a.services, nodes = ?a.nodes, "announce");
                        self.observed.announcements.insert(a.ip, a.clone());
                    }
                    Write::Delete(ip) => {
                        info!(%ip, "withdraw");
                        self.observed.announcements.remove(ip);
                    }
                }
            }
        }
        if self.status_written.as_ref() != Some(&status) {
            bounded(
                self.settings.step(),
                "write config status",
                store.put_status(&status, lease),
            )
            .await
            .inspect_err(|_| {
                self.metrics.etcd_errors.inc();
            })?;
            self.metrics.etcd_writes.inc();
            self.status_written = Some(status);
        }
        self.metrics.record_usage(&p.usage);
        self.publish_status(Some(&p));
        Ok(())
    }

    fn publish_status(&self, plan: Option<&plan::Plan>) {
        let leader = self.observed.leader.as_ref().map(|(id, _)| id.clone());
        let is_leader = self.lease.is_some_and(|l| self.is_leader(l));
        let pools = plan
            .map(|p| {
                p.usage
                    .iter()
                    .map(|u| PoolUse {
                        pool: u.pool.clone(),
                        family: u.family.as_str(),
                        in_use: u.in_use.to_string(),
                        total: u.total.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_else(|| self.status_tx.borrow().pools.clone());
        let view = StatusView {
            revision: self.config.as_ref().map(|(r, _)| r.clone()),
            applied_at: self.config.as_ref().map(|_| self.applied_at.clone()),
            config_error: self.config_error.clone(),
            services_error: self.services_error.clone(),
            identity: self.identity.clone(),
            leader,
            is_leader,
            ready: self.synced && self.config.is_some() && self.services.is_some(),
            pools,
        };
        self.status_tx.send_if_modified(|cur| {
            if *cur == view {
                false
            } else {
                *cur = view;
                true
            }
        });
    }
}

/// Waits out a burst of file events: returns once none arrived for [`DEBOUNCE`].
async fn settle(changes: &mut tokio::sync::mpsc::Receiver<()>) {
    loop {
        match tokio::time::timeout(DEBOUNCE, changes.recv()).await {
            Ok(Some(())) => continue,
            _ => return,
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone), dropping the guard inside.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
