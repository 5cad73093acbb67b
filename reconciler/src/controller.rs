//! The control loop: keep the last good configuration and Service set, keep the view of etcd,
//! elect a leader, and, on the leader only, decide (`plan`) then write what differs.
//!
//! ```text
//!  pool files, Git or objects ─▶ last good Config ─┐
//!  Service files ─watch/resync─▶ last good Services ├─▶ plan ──▶ fenced etcd writes (leader only)
//!  etcd P/ (announcements, speakers, leader) ──────┘
//! ```
//!
//! Nothing is written before the configuration, the Services and etcd have all been read; an
//! invalid or unreadable source never replaces what is in force; an unchanged announcement is
//! never rewritten, so a restart writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrolb_core::alloc::{ServiceKey, ServiceRequest};
use ferrolb_core::announce::NodeInfo;
use ferrolb_core::config::{Config, Report};
use ferrolb_core::layout::Keys;
use ferrolb_core::load::{self, SourceFile};
use ferrolb_core::service::Manifests;
use ferrolb_etcd::session::{Opening, Session, SessionEvent};
use ferrolb_etcd::{LeaseState, bounded};
use futures::stream::{self, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::check::{CheckError, Checker};
use crate::cluster::{self, Cluster};
use crate::feedback;
use crate::feedback::L2Holder;
use crate::git::{GitError, GitSource};
use crate::known_hosts::KnownHosts;
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::objects::StateObjects;
use crate::plan::{self, Feedback, Inputs, Reported, Round, RoundInputs, Write};
use crate::pools::{self, PoolObject, PoolWatch};
use crate::settings::{ConfigSource, ServicesFrom, Settings};
use crate::source::{self, Watcher};
use crate::status::StatusView;
use crate::store::{NotLeader, Store};
use ferrolb_core::status::ClusterStatus;
use ferrolb_core::view::View;

/// How long a burst of file events may last before the sources are read again.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Kubernetes writes (statuses, then Events) in flight at once: enough to keep a small API
/// server's cores busy, few enough not to flood it.
const KUBERNETES_IN_FLIGHT: usize = 16;
/// How often the sources are read again even without events (a replaced directory is not
/// watched any more; the content hash makes an unchanged read free of consequences).
const RESYNC: Duration = Duration::from_secs(5);

/// The Services, the nodes, and the nodes with local endpoints, for one round.
type RoundServices = (
    Vec<ServiceRequest>,
    BTreeMap<String, NodeInfo>,
    Option<HashMap<ServiceKey, std::collections::BTreeSet<String>>>,
);

enum SessionEnd {
    Shutdown,
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for SessionEnd {
    fn from(e: E) -> Self {
        SessionEnd::Failed(e.into())
    }
}

/// Where the pool configuration comes from.
#[derive(Clone, Debug)]
pub enum ConfigFrom {
    /// Files under these paths, watched.
    Files(Vec<PathBuf>),
    /// A Git repository, fetched every interval and on webhook calls.
    Git(Arc<GitSource>),
    /// Objects in the cluster, watched ([`PoolWatch`]).
    Kubernetes,
}

/// One read of the configuration, to validate.
enum Revision {
    Files(Vec<SourceFile>),
    Objects(Vec<PoolObject>),
}

impl Revision {
    fn validate(&self, options: &ferrolb_core::config::Options) -> Report {
        match self {
            Revision::Files(files) => ferrolb_core::config::load_with(
                files.iter().map(|f| (f.name.as_str(), f.bytes.as_slice())),
                options,
            ),
            Revision::Objects(objects) => pools::validate(objects, options),
        }
    }
}

/// The reconciler's state.
pub struct Reconciler {
    settings: Settings,
    keys: Keys,
    identity: String,
    config_from: ConfigFrom,
    /// Service manifests (file mode); empty with Kubernetes.
    services_paths: Vec<PathBuf>,
    /// The Kubernetes caches (Kubernetes mode), once started.
    cluster: Option<Cluster>,
    /// The watches on pool objects (`--config kubernetes`).
    pool_watch: Option<PoolWatch>,
    /// ConfigurationState and ServiceL2Status (Kubernetes mode with a state namespace).
    state_objects: Option<StateObjects>,
    /// The last error writing the ConfigurationState, logged once (a missing CRD would
    /// otherwise warn every round); cleared by a successful write.
    config_state_error: Option<String>,
    /// Pool annotations and ServiceL2Status objects written and when, until the caches show
    /// them (as `written` for statuses).
    annotated: HashMap<ServiceKey, (Option<String>, tokio::time::Instant)>,
    l2_written: HashMap<ServiceKey, (Option<L2Holder>, tokio::time::Instant)>,
    /// The newer configuration revision refused, while one is.
    config_rejected: Option<String>,
    /// What was last told to Kubernetes (`AllocationFailed` reasons, `nodeAssigned` holders).
    reported: Reported,
    /// Statuses written and when, until the cache shows them: the cache lags behind the
    /// writes, and deciding on a stale status would write the same status twice.
    written: HashMap<ServiceKey, (Vec<IpAddr>, tokio::time::Instant)>,
    /// Addresses last reported as allocated but not announced (warned about once).
    unannounced: BTreeMap<IpAddr, String>,
    /// Webhook calls asking for an immediate fetch.
    hooks: Option<mpsc::Receiver<()>>,
    /// Next Git fetch, and the current back-off after failures.
    git_due: tokio::time::Instant,
    git_backoff: Duration,
    config: Option<(String, Arc<Config>)>,
    /// Loading and validation, off the async thread and within `--validation-timeout`.
    checker: Checker,
    /// File mode: a valid new configuration seen once, applied when a read `--config-quiet`
    /// later finds the same content.
    config_pending: Option<Pending<Report>>,
    /// A configuration revision refused for taking too long (not validated again).
    config_slow: Option<String>,
    /// The same for the Service manifests.
    services_pending: Option<Pending<Manifests>>,
    services_slow: Option<String>,
    applied_at: String,
    config_error: Option<String>,
    services: Option<(String, Vec<ServiceRequest>)>,
    services_error: Option<String>,
    lease: Option<i64>,
    /// The lease renewals' state, read live (the renewals run in their own task).
    lease_state: Option<watch::Receiver<LeaseState>>,
    observed: View,
    /// Keys of the view that could not be read, with why (shown in `/status`).
    unreadable: BTreeMap<Vec<u8>, String>,
    synced: bool,
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
    /// A reconciler; `hooks` receives webhook calls (Git mode), `pool_watch` keeps the pool
    /// objects (`--config kubernetes`).
    pub fn new(
        settings: Settings,
        identity: String,
        status_tx: watch::Sender<StatusView>,
        metrics: Arc<Metrics>,
        hooks: Option<mpsc::Receiver<()>>,
        pool_watch: Option<PoolWatch>,
    ) -> anyhow::Result<Self> {
        let config_from = match (&settings.config, &settings.config_git) {
            (Some(ConfigSource::Files(path)), _) => ConfigFrom::Files(vec![path.clone()]),
            (Some(ConfigSource::Kubernetes), _) => {
                anyhow::ensure!(
                    pool_watch.is_some(),
                    "--config kubernetes needs the pool watches"
                );
                ConfigFrom::Kubernetes
            }
            (None, Some(url)) => ConfigFrom::Git(Arc::new(git_source(&settings, url)?)),
            (None, None) => anyhow::bail!("one of --config and --config-git is required"),
        };
        let services_paths = match &settings.services {
            ServicesFrom::Files(p) => vec![p.clone()],
            ServicesFrom::Kubernetes => Vec::new(),
        };
        let checker = Checker::new(settings.validation_timeout);
        Ok(Reconciler {
            keys: Keys::new(&settings.etcd.etcd_prefix),
            settings,
            identity,
            config_from,
            services_paths,
            cluster: None,
            pool_watch,
            state_objects: None,
            config_state_error: None,
            annotated: HashMap::new(),
            l2_written: HashMap::new(),
            config_rejected: None,
            reported: Reported::default(),
            written: HashMap::new(),
            unannounced: BTreeMap::new(),
            hooks,
            git_due: tokio::time::Instant::now(),
            git_backoff: Duration::ZERO,
            config: None,
            checker,
            config_pending: None,
            config_slow: None,
            services_pending: None,
            services_slow: None,
            applied_at: String::new(),
            config_error: None,
            services: None,
            services_error: None,
            lease: None,
            lease_state: None,
            observed: View::default(),
            unreadable: BTreeMap::new(),
            synced: false,
            status_tx,
            metrics,
        })
    }

    /// Takes a read of the configuration: a new valid one replaces the one in force; an invalid
    /// one keeps it and records the error.
    fn apply_config(&mut self, revision: String, report: Report) {
        let new = self.config.as_ref().map(|(r, _)| r.as_str()) != Some(revision.as_str());
        if new && report.config.is_some() {
            for w in report.warnings() {
                warn!(warning = %w, "configuration");
            }
        }
        match report.config {
            Some(config) => {
                if new {
                    info!(%revision, pools = config.pools.len(), "configuration applied");
                    self.config = Some((revision, Arc::new(config)));
                    self.applied_at = now_rfc3339();
                }
                self.config_error = None;
                self.config_rejected = None;
            }
            None => {
                let msg = source::summarize(&report.diagnostics, 20);
                if self.config_error.as_deref() != Some(msg.as_str()) {
                    for d in report.errors() {
                        warn!(error = %d, "invalid configuration");
                    }
                    warn!(%revision, "invalid configuration; keeping the one in force");
                }
                self.config_error = Some(msg);
                self.config_rejected = Some(revision);
            }
        }
        self.record_config_metrics();
    }

    fn config_unreadable(&mut self, msg: String) {
        if self.config_error.as_deref() != Some(msg.as_str()) {
            warn!(error = %msg, "keeping the configuration in force");
        }
        self.config_error = Some(msg);
        self.record_config_metrics();
    }

    fn record_config_metrics(&self) {
        self.metrics
            .record_config(self.config.is_some(), self.config_error.is_some());
    }

    /// Fetches the Git source if it is due (or `now`), in a blocking task; on failure retries
    /// with a back-off from 1 s up to the interval.
    async fn refresh_git(&mut self, now: bool) {
        let ConfigFrom::Git(git) = &self.config_from else {
            return;
        };
        if !now && tokio::time::Instant::now() < self.git_due {
            return;
        }
        let git = git.clone();
        // A fetch that hangs (a remote that accepts and never answers) must not hold the loop:
        // it is abandoned after the interval (at least 30 s) and retried with back-off.
        let limit = self.settings.git_interval.max(Duration::from_secs(30));
        let result =
            match tokio::time::timeout(limit, tokio::task::spawn_blocking(move || git.fetch()))
                .await
            {
                Ok(r) => r,
                Err(_) => Ok(Err(GitError::Timeout(limit))),
            };
        let interval = self.settings.git_interval;
        match result {
            Ok(Ok(fetched)) => {
                self.git_backoff = Duration::ZERO;
                self.git_due = tokio::time::Instant::now() + interval;
                if fetched.path_missing {
                    warn!(commit = %fetched.commit, path = %self.settings.git_path.display(), "--git-path is not in the commit: an empty configuration (no pools)");
                }
                // A commit is written at once, never half: no need to wait for it to settle.
                let files = Revision::Files(fetched.files);
                self.take_config(fetched.commit, files, false).await;
            }
            Ok(Err(e)) => {
                self.git_backoff = (self.git_backoff * 2).clamp(Duration::from_secs(1), interval);
                self.git_due = tokio::time::Instant::now() + self.git_backoff;
                self.config_unreadable(format!("cannot fetch the configuration: {e}"));
            }
            Err(e) => {
                self.git_backoff = (self.git_backoff * 2).clamp(Duration::from_secs(1), interval);
                self.git_due = tokio::time::Instant::now() + self.git_backoff;
                self.config_unreadable(format!("the fetch task failed: {e}"));
            }
        }
    }

    /// Reads configuration files again (file mode), off the async thread, or the pool objects
    /// from their caches (`--config kubernetes`).
    async fn reload_config(&mut self) {
        if let (ConfigFrom::Kubernetes, Some(w)) = (&self.config_from, &self.pool_watch) {
            match w.caches.objects() {
                Ok(objects) => {
                    let revision = pools::revision(&objects);
                    // The API server stores an object whole: nothing to wait for.
                    let objects = Revision::Objects(objects);
                    self.take_config(revision, objects, false).await;
                }
                Err(why) => self.config_unreadable(why),
            }
            return;
        }
        let ConfigFrom::Files(paths) = &self.config_from else {
            return;
        };
        let paths = paths.clone();
        match self.checker.run(move || load::read_paths(&paths)).await {
            Ok(Ok(files)) => {
                let revision = source::revision(&files);
                self.take_config(revision, Revision::Files(files), true)
                    .await;
            }
            Ok(Err(e)) => self.config_unreadable(format!("cannot read the configuration: {e}")),
            Err(e) => self.config_unreadable(format!("cannot read the configuration: {e}")),
        }
    }

    /// Takes one read of the configuration: unchanged, nothing to do; new, validated off the
    /// async thread within the budget; valid and `settle` (file mode), applied only once a
    /// later read, `--config-quiet` on, finds the same content (a file written slowly is
    /// not applied half-written).
    async fn take_config(&mut self, revision: String, read: Revision, settle: bool) {
        if self.config.as_ref().map(|(r, _)| r.as_str()) == Some(revision.as_str()) {
            if self.config_pending.take().is_some() {
                info!(%revision, "the configuration is back to the one in force");
            }
            self.config_error = None;
            self.record_config_metrics();
            return;
        }
        if self.config_slow.as_deref() == Some(revision.as_str()) {
            return;
        }
        let quiet = self.settings.config_quiet;
        match self.config_pending.take() {
            Some(p) if p.revision == revision => {
                if p.seen.elapsed() >= quiet {
                    info!(%revision, "the configuration stayed the same for {quiet:?}: applying it");
                    self.apply_config(revision, p.value);
                } else {
                    self.config_pending = Some(p);
                }
                return;
            }
            _ => {}
        }
        let options = self.settings.config_options();
        let report = self.checker.run(move || read.validate(&options)).await;
        match report {
            Ok(report) if settle && report.config.is_some() && !quiet.is_zero() => {
                info!(%revision, "configuration changed; applying it if it stays the same for {quiet:?}");
                self.config_pending = Some(Pending::new(revision, report, quiet));
            }
            Ok(report) => self.apply_config(revision, report),
            Err(e) => {
                if matches!(e, CheckError::TooSlow(_)) {
                    self.config_slow = Some(revision.clone());
                }
                self.config_unreadable(format!("configuration {revision}: {e}"));
            }
        }
    }

    /// Reads the Service manifests again, with the same rule: a set with errors does not
    /// replace the last good one (a broken file must not withdraw its Services' addresses),
    /// and a new set is applied once it has stayed the same for `--config-quiet`.
    async fn reload_services(&mut self) {
        if self.services_paths.is_empty() {
            return;
        }
        let paths = self.services_paths.clone();
        let files = match self.checker.run(move || load::read_paths(&paths)).await {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => {
                return self.services_unreadable(format!("cannot read the Services: {e}"));
            }
            Err(e) => return self.services_unreadable(format!("cannot read the Services: {e}")),
        };
        let revision = source::revision(&files);
        if self.services.as_ref().map(|(r, _)| r.as_str()) == Some(revision.as_str()) {
            self.services_pending = None;
            self.services_error = None;
            return;
        }
        if self.services_slow.as_deref() == Some(revision.as_str()) {
            return;
        }
        let Some(manifests) = self.settled_services(revision.clone(), files).await else {
            return;
        };
        if !manifests.diagnostics.is_empty() {
            let msg = source::summarize(&manifests.diagnostics, 20);
            if self.services_error.as_deref() != Some(msg.as_str()) {
                for d in &manifests.diagnostics {
                    warn!(error = %d, "invalid Service manifest");
                }
                warn!(%revision, "invalid Service manifests; keeping the Services in force");
            }
            self.services_error = Some(msg);
            return;
        }
        info!(%revision, services = manifests.services.len(), "Services read");
        let list = manifests.services.into_iter().map(|s| s.request).collect();
        self.services = Some((revision, list));
        self.services_error = None;
    }

    /// The manifests of Service files read at `revision`, once they are settled: parsed at
    /// once when `--config-quiet` is zero or they have errors (never applied then), otherwise
    /// applied once a later read, the quiet period on, finds the same content. `None`: not yet,
    /// or unreadable (recorded).
    async fn settled_services(
        &mut self,
        revision: String,
        files: Vec<SourceFile>,
    ) -> Option<Manifests> {
        let quiet = self.settings.config_quiet;
        match self.services_pending.take() {
            Some(p) if p.revision == revision => {
                if p.seen.elapsed() < quiet {
                    self.services_pending = Some(p);
                    return None;
                }
                return Some(p.value);
            }
            _ => {}
        }
        let parsed = self
            .checker
            .run(move || {
                ferrolb_core::service::load(
                    files.iter().map(|f| (f.name.as_str(), f.bytes.as_slice())),
                )
            })
            .await;
        match parsed {
            Ok(m) if m.diagnostics.is_empty() && !quiet.is_zero() => {
                info!(%revision, "Services changed; applying them if they stay the same for {quiet:?}");
                self.services_pending = Some(Pending::new(revision, m, quiet));
                None
            }
            Ok(m) => Some(m),
            Err(e) => {
                if matches!(e, CheckError::TooSlow(_)) {
                    self.services_slow = Some(revision.clone());
                }
                self.services_unreadable(format!("Services {revision}: {e}"));
                None
            }
        }
    }

    fn services_unreadable(&mut self, msg: String) {
        if self.services_error.as_deref() != Some(msg.as_str()) {
            warn!(error = %msg, "keeping the Services in force");
        }
        self.services_error = Some(msg);
    }

    /// When the next check of a pending (not yet settled) read is due.
    fn settle_due(&self) -> Option<tokio::time::Instant> {
        [
            &self.config_pending.as_ref().map(|p| p.due),
            &self.services_pending.as_ref().map(|p| p.due),
        ]
        .into_iter()
        .flatten()
        .min()
        .copied()
    }

    /// Runs until `shutdown` turns true; then releases leadership.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut config_watch = match &self.config_from {
            ConfigFrom::Files(paths) => Some(Watcher::new(paths)?),
            ConfigFrom::Git(_) | ConfigFrom::Kubernetes => None,
        };
        let mut services_watch = if self.services_paths.is_empty() {
            None
        } else {
            Some(Watcher::new(&self.services_paths)?)
        };
        self.reload_config().await;
        self.refresh_git(true).await;
        self.reload_services().await;
        if self.services_paths.is_empty() {
            let client = cluster::client(self.settings.kubeconfig.as_deref()).await?;
            if let Some(ns) = self.settings.state_namespace() {
                self.state_objects = Some(StateObjects::start(&client, ns));
            }
            let c = Cluster::start(client, &self.identity);
            info!("waiting for the Kubernetes caches");
            tokio::select! {
                _ = stopped(&mut shutdown) => return Ok(()),
                ready = c.wait_ready() => ready?,
            }
            info!("Kubernetes caches synced");
            self.cluster = Some(c);
        }
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
        self.release(client.as_mut()).await;
        Ok(())
    }

    /// Releases leadership: revoking the lease deletes the leader key at once, so a standby
    /// takes over without waiting for the TTL.
    async fn release(&self, store: Option<&mut Store>) {
        let (Some(store), Some(lease)) = (store, self.lease) else {
            return;
        };
        let revoke = async { Ok(store.client.lease_revoke(lease).await?) };
        match bounded(Duration::from_millis(800), "revoke", revoke).await {
            Ok(_) => info!("leadership released"),
            Err(e) => warn!(error = %e, "could not revoke the lease; it ends with its TTL"),
        }
    }

    async fn session(
        &mut self,
        client: &mut Option<Store>,
        shutdown: &mut watch::Receiver<bool>,
        config_watch: &mut Option<Watcher>,
        services_watch: &mut Option<Watcher>,
    ) -> SessionEnd {
        let mut session = match self.open_session().await {
            Ok(s) => s,
            Err(e) => return SessionEnd::Failed(e),
        };
        let mut store = Store {
            client: session.client.clone(),
            keys: self.keys.clone(),
        };
        *client = Some(store.clone());
        match self
            .connected(
                &mut session,
                &mut store,
                shutdown,
                config_watch,
                services_watch,
            )
            .await
        {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    /// Connects, takes a new lease (renewed from a task of its own, so a long round of many
    /// status writes or a slow fetch never lets it lapse), lists and watches the prefix.
    async fn open_session(&mut self) -> anyhow::Result<Session> {
        let step = self.settings.step();
        let options = self.settings.etcd.options(step)?;
        let mut opening = Opening::connect(&self.settings.etcd, options, step).await?;
        let (lease, _) = opening.grant(self.settings.lease_ttl).await?;
        self.lease = Some(lease);
        let ttl = Duration::from_secs(u64::try_from(self.settings.lease_ttl).unwrap_or(3));
        let mut session = opening.renew(lease, ttl, None).await?;
        let listing = session
            .list_then_watch(&format!("{}/", self.keys.prefix()))
            .await?;
        self.observed = View::default();
        self.unreadable.clear();
        for c in &listing {
            if let Err(e) = self.observed.apply(&self.keys, c) {
                warn!(error = %e, "skipping an unreadable key");
            }
        }
        self.lease_state = Some(session.lease_state());
        Ok(session)
    }

    async fn connected(
        &mut self,
        session: &mut Session,
        store: &mut Store,
        shutdown: &mut watch::Receiver<bool>,
        config_watch: &mut Option<Watcher>,
        services_watch: &mut Option<Watcher>,
    ) -> Result<std::convert::Infallible, SessionEnd> {
        let lease = session.lease;
        self.synced = true;
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A standby also looks at the leader key itself every renewal interval: its watch was
        // seen to report the key's deletion seconds late (fault suite, scenario 6).
        let mut leader_check = tokio::time::interval(self.settings.step());
        leader_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.campaign(store, lease).await?;
            self.reconcile(store, lease).await?;
            let settle_due = self.settle_due();
            tokio::select! {
                _ = stopped(shutdown) => return Err(SessionEnd::Shutdown),
                event = session.next() => match event? {
                    SessionEvent::Changes(changes) => self.watched(&changes),
                    SessionEvent::Lease(news) => lease_news(lease, news)?,
                },
                Some(()) = changed(config_watch) => {
                    if let Some(w) = config_watch.as_mut() {
                        settle(&mut w.changes).await;
                    }
                    self.reload_config().await;
                }
                Some(()) = pools_changed(&mut self.pool_watch) => {
                    if let Some(w) = self.pool_watch.as_mut() {
                        settle(&mut w.changes).await;
                    }
                    self.reload_config().await;
                }
                Some(()) = hooked(&mut self.hooks) => {
                    info!("webhook: fetching now");
                    self.refresh_git(true).await;
                }
                _ = tokio::time::sleep_until(self.git_due), if matches!(self.config_from, ConfigFrom::Git(_)) => {
                    self.refresh_git(false).await;
                }
                Some(()) = changed(services_watch) => {
                    if let Some(w) = services_watch.as_mut() {
                        settle(&mut w.changes).await;
                    }
                    self.reload_services().await;
                }
                Some(()) = cluster_changed(&mut self.cluster) => {
                    if let Some(c) = self.cluster.as_mut() {
                        settle(&mut c.changes).await;
                    }
                }
                _ = resync.tick() => self.reload_sources().await,
                _ = sleep_until_some(settle_due) => self.reload_sources().await,
                _ = leader_check.tick(), if !self.is_leader(lease) => self.check_leader(store).await?,
            }
        }
    }

    /// Becomes leader if there is none.
    async fn campaign(&mut self, store: &mut Store, lease: i64) -> anyhow::Result<()> {
        let step = self.settings.step();
        if self.observed.leader.is_none()
            && bounded(step, "campaign", store.campaign(&self.identity, lease)).await?
        {
            info!(identity = %self.identity, "elected leader");
            self.observed.leader = Some((self.identity.clone(), lease));
        }
        Ok(())
    }

    /// Looks at the leader key itself (a standby whose watch is late to report its deletion).
    async fn check_leader(&mut self, store: &mut Store) -> anyhow::Result<()> {
        let step = self.settings.step();
        if !bounded(step, "leader check", store.leader_exists()).await?
            && self.observed.leader.take().is_some()
        {
            info!("the leader key is gone; campaigning");
        }
        Ok(())
    }

    /// Reads the configuration and the Services again.
    async fn reload_sources(&mut self) {
        self.reload_config().await;
        self.reload_services().await;
    }

    /// Changes the watch delivered.
    fn watched(&mut self, changes: &[ferrolb_etcd::KeyChange]) {
        let had_leader = self.observed.leader.is_some();
        for c in changes {
            match self.observed.apply(&self.keys, c) {
                Ok(()) => {
                    self.unreadable.remove(&c.key);
                }
                Err(e) => {
                    warn!(error = %e, "skipping an unreadable key");
                    self.unreadable.insert(c.key.clone(), e.to_string());
                }
            }
        }
        if had_leader && self.observed.leader.is_none() {
            info!("the leader key is gone; campaigning");
        }
    }

    fn is_leader(&self, lease: i64) -> bool {
        self.observed
            .leader
            .as_ref()
            .is_some_and(|(_, l)| *l == lease)
    }

    /// Decides (`plan::round`) and, on the leader, writes what differs.
    async fn reconcile(&mut self, store: &mut Store, lease: i64) -> anyhow::Result<()> {
        let leader = self.is_leader(lease);
        self.metrics.leader.set(i64::from(leader));
        let (Some((revision, config)), true, true) = (self.config.clone(), leader, self.synced)
        else {
            self.publish_status(None);
            return Ok(());
        };
        let Some((requests, nodes, local_nodes)) = self.round_inputs() else {
            self.publish_status(None);
            return Ok(());
        };
        let l2_in_cluster = self.l2_in_cluster();
        let round = plan::round(RoundInputs {
            plan: Inputs {
                config: &config,
                lb_class: self.settings.lb_class.as_deref(),
                services: &requests,
                nodes: &nodes,
                announced: &self.observed.announcements,
                local_nodes: local_nodes.as_ref(),
            },
            revision: &revision,
            applied_at: &self.applied_at,
            config_error: self.config_error.as_deref(),
            config_in_etcd: self.observed.config.as_ref(),
            claims: &self.observed.claims,
            reported: self.cluster.as_ref().map(|_| &self.reported),
            rejected: self.config_rejected.as_deref(),
            l2_in_cluster: l2_in_cluster.as_ref(),
        });
        self.log_round(&round.plan);
        self.write_etcd(store, lease, &round).await?;
        if let Some(feedback) = round.kubernetes {
            self.tell_kubernetes(feedback).await;
        }
        self.metrics.record_usage(&round.plan.usage);
        self.metrics.record_pending(&round.plan.decisions);
        self.publish_status(Some(&round.plan));
        Ok(())
    }

    /// The Services (with their current addresses), the nodes, and the nodes with local
    /// endpoints, from Kubernetes or from the files and etcd; `None` before the Services were
    /// read.
    fn round_inputs(&mut self) -> Option<RoundServices> {
        match (&self.cluster, &self.services) {
            (Some(cluster), _) => {
                let mut snap = cluster.snapshot();
                // Statuses written and not yet in the cache count as written (for a while).
                let fresh = Duration::from_secs(10);
                self.written.retain(|key, (ips, at)| {
                    match snap.services.iter_mut().find(|s| s.key == *key) {
                        Some(s) if s.current != *ips && at.elapsed() < fresh => {
                            s.current = ips.clone();
                            true
                        }
                        _ => false,
                    }
                });
                self.annotated.retain(|key, (pool, at)| {
                    let Some(s) = snap.services.iter_mut().find(|s| s.key == *key) else {
                        return false;
                    };
                    let shown = s.annotations.get(feedback::POOL_ANNOTATION);
                    if shown == pool.as_ref() || at.elapsed() >= fresh {
                        return false;
                    }
                    match pool {
                        Some(p) => s
                            .annotations
                            .insert(feedback::POOL_ANNOTATION.into(), p.clone()),
                        None => s.annotations.remove(feedback::POOL_ANNOTATION),
                    };
                    true
                });
                Some((snap.services, snap.nodes, Some(snap.local_nodes)))
            }
            (None, Some((_, services))) => {
                // File mode: etcd holds the state, and the speakers' labels stand for Node labels.
                let mut requests = services.clone();
                plan::current_from_announcements(&mut requests, &self.observed.announcements);
                let nodes: BTreeMap<String, NodeInfo> = self
                    .observed
                    .speakers
                    .iter()
                    .map(|(n, r)| {
                        let info = NodeInfo {
                            labels: r.labels.clone(),
                            network_unavailable: false,
                        };
                        (n.clone(), info)
                    })
                    .collect();
                Some((requests, nodes, None))
            }
            (None, None) => None,
        }
    }

    /// The ServiceL2Status objects as the cluster will hold them: the cache, with what was
    /// written lately and is not in it yet; `None` when they are not kept.
    fn l2_in_cluster(&mut self) -> Option<BTreeMap<ServiceKey, L2Holder>> {
        let mut current = self.state_objects.as_ref()?.l2_in_cluster()?;
        let fresh = Duration::from_secs(10);
        self.l2_written.retain(|key, (holder, at)| {
            if current.get(key) == holder.as_ref() || at.elapsed() >= fresh {
                return false;
            }
            match holder {
                Some(h) => current.insert(key.clone(), h.clone()),
                None => current.remove(key),
            };
            true
        });
        Some(current)
    }

    /// Logs what moved and what is allocated but not announced (the latter when it changed).
    fn log_round(&mut self, p: &plan::Plan) {
        let list = |ips: &[IpAddr]| match ips {
            [] => "none".to_string(),
            _ => ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        };
        for d in p.decisions.iter().filter(|d| d.moved()) {
            let reason = match &d.outcome {
                ferrolb_core::alloc::Outcome::Pending { reason } => Some(reason.to_string()),
                ferrolb_core::alloc::Outcome::Ignored { reason } => Some(reason.to_string()),
                ferrolb_core::alloc::Outcome::Allocated { .. } => None,
            };
            let (from, to) = (list(&d.previous), list(d.outcome.ips()));
            warn!(service = %d.key, reason, "address changed: {} {from} -> {to}", d.key);
        }
        if p.desired.unannounced != self.unannounced {
            for (ip, why) in &p.desired.unannounced {
                warn!(%ip, reason = %why, "allocated but not announced");
            }
            self.unannounced = p.desired.unannounced.clone();
        }
    }

    /// Writes the round's announcements and configuration status (fenced by leadership).
    async fn write_etcd(
        &mut self,
        store: &mut Store,
        lease: i64,
        round: &Round,
    ) -> anyhow::Result<()> {
        let writes = &round.plan.writes;
        if !writes.is_empty() {
            let step = self.settings.step() * 3;
            let applied = bounded(step, "write announcements", store.apply(writes, lease))
                .await
                .inspect_err(|e| {
                    self.metrics.etcd_errors.inc();
                    if e.is::<NotLeader>() {
                        self.observed.leader = None;
                    }
                })?;
            self.metrics.etcd_writes.inc_by(applied as u64);
            for w in writes {
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
        if let Some(status) = &round.config_status {
            let step = self.settings.step();
            bounded(step, "write config status", store.put_status(status, lease))
                .await
                .inspect_err(|_| {
                    self.metrics.etcd_errors.inc();
                })?;
            self.metrics.etcd_writes.inc();
            self.observed.config = Some(status.clone());
        }
        Ok(())
    }

    /// Writes Service statuses and then Events (leader only, after the announcements are in
    /// etcd), each only while leadership is safe (`Leadership`). A failed write is logged and
    /// counted; the next round retries it, since the status still differs.
    async fn tell_kubernetes(&mut self, feedback: Feedback) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let leadership = Leadership::new(self.lease_state.clone(), self.settings.step());
        if !leadership.safe_at(tokio::time::Instant::now()) {
            warn!("lease renewal overdue: not writing to Kubernetes this round");
            return;
        }
        // A bounded number of requests in flight: one at a time leaves a real API server idle
        // between round trips (10,000 Services took 124 s that way). A write not yet started
        // when the lease runs short is not started.
        // (The futures are made before they become a stream: a closure in the stream's type
        // would keep the daemon's future from being `Send`.)
        let leadership = &leadership;
        let statuses: Vec<_> = feedback
            .statuses
            .iter()
            .map(|w| async move {
                if !leadership.safe_at(tokio::time::Instant::now()) {
                    return (w, None);
                }
                (w, Some(cluster.write_status(&w.key, &w.ips).await))
            })
            .collect();
        let results = bounded_calls(statuses).await;
        let mut stopped = false;
        for (w, result) in results {
            match result {
                None => stopped = true,
                Some(Ok(())) => {
                    self.metrics.kubernetes_writes.inc();
                    let at = tokio::time::Instant::now();
                    self.written.insert(w.key.clone(), (w.ips.clone(), at));
                }
                Some(Err(e)) => {
                    self.metrics.kubernetes_errors.inc();
                    warn!(error = %format!("{e:#}"), "status not written; retrying next round");
                }
            }
        }
        if stopped {
            // What was not reported is reported again next round.
            warn!("lease renewal overdue: stopped this round's status writes");
            return;
        }
        self.write_annotations(&feedback.annotations).await;
        self.reported = feedback.reported;
        self.record_events(feedback.events).await;
        self.write_state_objects(feedback.l2, feedback.config_state)
            .await;
    }

    /// Sets or removes the pool annotations that differ.
    async fn write_annotations(&mut self, writes: &[feedback::AnnotationWrite]) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let calls: Vec<_> = writes
            .iter()
            .map(|w| async move {
                (
                    w,
                    cluster
                        .write_pool_annotation(&w.key, w.pool.as_deref())
                        .await,
                )
            })
            .collect();
        let results = bounded_calls(calls).await;
        for (w, result) in results {
            match result {
                Ok(()) => {
                    self.metrics.kubernetes_writes.inc();
                    let at = tokio::time::Instant::now();
                    self.annotated.insert(w.key.clone(), (w.pool.clone(), at));
                }
                Err(e) => {
                    self.metrics.kubernetes_errors.inc();
                    warn!(error = %format!("{e:#}"), "annotation not written; retrying next round");
                }
            }
        }
    }

    /// Carries out the ServiceL2Status changes and writes the ConfigurationState. A failed
    /// write is logged; the next round finds the difference again (the ConfigurationState is
    /// forgotten as written, so it is written again).
    async fn write_state_objects(
        &mut self,
        l2: Vec<feedback::L2Change>,
        config_state: Option<feedback::ConfigState>,
    ) {
        let Some(objects) = &self.state_objects else {
            return;
        };
        let calls: Vec<_> = l2
            .iter()
            .map(|c| async move { (c, objects.apply_l2(c).await) })
            .collect();
        let results = bounded_calls(calls).await;
        for (change, result) in results {
            match result {
                Ok(()) => {
                    self.metrics.kubernetes_writes.inc();
                    let (key, holder) = match change {
                        feedback::L2Change::Put(k, h) | feedback::L2Change::Replace(k, h) => {
                            (k, Some(h.clone()))
                        }
                        feedback::L2Change::Delete(k) => (k, None),
                    };
                    let at = tokio::time::Instant::now();
                    self.l2_written.insert(key.clone(), (holder, at));
                }
                Err(e) => {
                    self.metrics.kubernetes_errors.inc();
                    warn!(error = %format!("{e:#}"), "ServiceL2Status not written; retrying next round");
                }
            }
        }
        if let Some(state) = config_state {
            if let Err(e) = objects.write_config_state(&state).await {
                self.metrics.kubernetes_errors.inc();
                let error = format!("{e:#}");
                if self.config_state_error.as_ref() != Some(&error) {
                    warn!(%error, "retrying every round (logged again when the error changes)");
                } else {
                    debug!(%error, "retrying next round");
                }
                self.config_state_error = Some(error);
                self.reported.config_state = None;
            } else {
                self.metrics.kubernetes_writes.inc();
                if self.config_state_error.take().is_some() {
                    info!("ConfigurationState written again");
                }
            }
        }
    }

    /// Records Events on Services, a bounded number at a time.
    async fn record_events(&self, events: Vec<feedback::Note>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let events: Vec<_> = events
            .into_iter()
            .map(|n| async move { cluster.event(&n.key, n.warning, n.reason, n.note).await })
            .collect();
        let results = bounded_calls(events).await;
        for result in results {
            match result {
                Ok(()) => {
                    self.metrics.kubernetes_writes.inc();
                }
                Err(e) => {
                    self.metrics.kubernetes_errors.inc();
                    warn!(error = %format!("{e:#}"), "event not recorded");
                }
            }
        }
    }

    fn publish_status(&self, plan: Option<&plan::Plan>) {
        let leader = self.observed.leader.as_ref().map(|(id, _)| id.clone());
        let is_leader = self.lease.is_some_and(|l| self.is_leader(l));
        let pools = plan
            .map(|p| plan::pool_use(&p.usage))
            .unwrap_or_else(|| self.status_tx.borrow().pools.clone());
        let refused = self
            .cluster
            .as_ref()
            .map(Cluster::refusals)
            .unwrap_or_default();
        let view = StatusView {
            revision: self.config.as_ref().map(|(r, _)| r.clone()),
            applied_at: self.config.as_ref().map(|_| self.applied_at.clone()),
            config_error: self.config_error.clone(),
            services_error: self.services_error.clone(),
            identity: self.identity.clone(),
            leader,
            is_leader,
            ready: self.synced
                && self.config.is_some()
                && (self.services.is_some() || self.cluster.is_some())
                && refused.is_empty(),
            kubernetes_refused: refused,
            pools,
            cluster: ClusterStatus::from_view(
                &self.observed,
                self.unreadable.values().cloned().collect(),
            ),
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

/// What the renewals say of the session's lease: the session ends when it is gone or failing.
fn lease_news(lease: i64, news: LeaseState) -> anyhow::Result<()> {
    match news {
        LeaseState::Alive { .. } => Ok(()),
        LeaseState::Expired => Err(anyhow::anyhow!("lease {lease} expired")),
        LeaseState::Failed(why) => Err(anyhow::anyhow!(why)),
    }
}

/// A read that has not yet stayed the same for the quiet period.
#[derive(Debug)]
struct Pending<T> {
    revision: String,
    value: T,
    seen: tokio::time::Instant,
    due: tokio::time::Instant,
}

impl<T> Pending<T> {
    fn new(revision: String, value: T, quiet: Duration) -> Self {
        let seen = tokio::time::Instant::now();
        Pending {
            revision,
            value,
            seen,
            due: seen + quiet,
        }
    }
}

/// Sleeps until `at` (never, for `None`).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next change signal of an optional watcher (never, without one).
async fn changed(w: &mut Option<Watcher>) -> Option<()> {
    match w {
        Some(w) => w.changes.recv().await,
        None => std::future::pending().await,
    }
}

/// The next change of the Kubernetes caches (never, in file mode).
async fn cluster_changed(c: &mut Option<Cluster>) -> Option<()> {
    match c {
        Some(c) => c.changes.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs Kubernetes calls, at most [`KUBERNETES_IN_FLIGHT`] at a time; the results come in the
/// order the calls end.
async fn bounded_calls<F: std::future::Future>(calls: Vec<F>) -> Vec<F::Output> {
    stream::iter(calls)
        .buffer_unordered(KUBERNETES_IN_FLIGHT)
        .collect()
        .await
}

/// The next change of the pool objects (never, unless `--config kubernetes`).
async fn pools_changed(w: &mut Option<PoolWatch>) -> Option<()> {
    match w {
        Some(w) => w.changes.recv().await,
        None => std::future::pending().await,
    }
}

/// The next webhook call (never, without a webhook).
async fn hooked(h: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match h {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

/// The Git source the settings describe.
fn git_source(s: &Settings, url: &str) -> anyhow::Result<GitSource> {
    use anyhow::Context as _;
    let token = s
        .git_token_file
        .as_ref()
        .map(|f| {
            std::fs::read_to_string(f)
                .map(|t| t.trim().to_string())
                .with_context(|| format!("reading --git-token-file {}", f.display()))
        })
        .transpose()?;
    let known_hosts = s
        .git_known_hosts
        .as_ref()
        .map(|f| {
            std::fs::read_to_string(f)
                .map(|t| KnownHosts::parse(&t))
                .with_context(|| format!("reading --git-known-hosts {}", f.display()))
        })
        .transpose()?;
    let cache = s.git_cache.clone().unwrap_or_else(|| {
        let digest: String = Sha256::digest(url.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        std::env::temp_dir().join(format!("ferrolb-git-{digest}"))
    });
    Ok(GitSource {
        url: url.to_string(),
        reference: s.git_ref.clone(),
        path: s.git_path.clone(),
        cache,
        token,
        ssh_key: s.git_ssh_key.clone(),
        known_hosts,
    })
}

/// Waits out a burst of change signals: returns once none arrived for [`DEBOUNCE`], or after
/// half a second at most (steady churn must not keep the loop from its other work).
async fn settle(changes: &mut tokio::sync::mpsc::Receiver<()>) {
    let end = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < end {
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
