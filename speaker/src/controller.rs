//! The speaker's control loop: keep a lease, keep the view of etcd current, decide per address
//! (`ferrolb_core::election`), then act: claim, release, and publish the set of held addresses
//! that the responders answer for.
//!
//! ```text
//!            watch P/ ──▶ World ──decide──▶ claims / releases (etcd txns)
//!  keepalive every TTL/3        │
//!                               └──▶ HeldSet ──watch channel──▶ responders (one per interface)
//!                                        ▲                          │
//!                                        └──── yields (foreign gratuitous ARP/NA while etcd is away)
//! ```
//!
//! While etcd cannot be reached the held set stays as it was (`--on-etcd-loss hold`) until
//! another node announces one of its addresses, or it is emptied before the lease can have
//! expired (`release`). The loop retries etcd every TTL/3 and, when the lease survived (etcd
//! extends leases across a restart), carries on with the same claims: nothing moves.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use ferrolb_core::election::{self, Situation, Step};
use ferrolb_core::layout::{Claim, InterfaceInfo, Keys, Registration};
use ferrolb_core::liveness::{self, Liveness};
use ferrolb_core::respond::HeldSet;
use ferrolb_core::wire::heartbeat::held_digest;
use ferrolb_etcd::LeaseState;
use regex::Regex;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::etcd::{self, Etcd, bounded};
use crate::fence::Fence;
use crate::heartbeat::Beat;
use crate::metrics::{Metrics, OpLabels};
use crate::settings::{OnEtcdLoss, Settings};
use crate::sys::interfaces::{self, Interface};
use crate::world::World;

/// Something a responder saw that the controller must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalEvent {
    /// Another MAC announced an address this node answers for (gratuitous ARP or override NA).
    ForeignAnnouncement {
        /// The address.
        ip: IpAddr,
        /// The other MAC, for the log.
        mac: String,
    },
}

/// Why a session with etcd ended.
#[derive(Debug)]
enum SessionEnd {
    /// Shutdown was asked for.
    Shutdown,
    /// etcd failed; retry.
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for SessionEnd {
    fn from(e: E) -> Self {
        SessionEnd::Failed(e.into())
    }
}

/// What links the controller to the responders and the heartbeat tasks.
#[derive(Debug)]
pub struct Links {
    /// The addresses to answer for, to the responders.
    pub held_tx: watch::Sender<Arc<HeldSet>>,
    /// The usable interfaces, to the responder supervisor.
    pub interfaces_tx: watch::Sender<Vec<Interface>>,
    /// What the responders saw.
    pub events: mpsc::Receiver<LocalEvent>,
    /// What the heartbeats say.
    pub beat_tx: watch::Sender<Beat>,
    /// What the heartbeat tasks heard, on the clock started at `clock`.
    pub liveness: Arc<Mutex<Liveness>>,
    /// The start of the liveness clock.
    pub clock: Instant,
    /// The responders' answering fence.
    pub fence: Arc<Fence>,
}

/// The control loop's state.
pub struct Controller {
    settings: Settings,
    keys: Keys,
    interfaces_regex: Option<Regex>,
    options: etcd_client::ConnectOptions,
    etcd: Option<Etcd>,
    lease: Option<i64>,
    /// When the lease ends unless renewed, as last confirmed by etcd.
    lease_until: Option<Instant>,
    world: World,
    unclaimed_since: HashMap<IpAddr, Instant>,
    /// Since when each address has been claimed for nobody (`election::is_orphaned`).
    orphaned_since: HashMap<IpAddr, Instant>,
    next_wake: Option<Instant>,
    /// Addresses given up after another node announced them while etcd was away.
    yielded: HashSet<IpAddr>,
    /// When a foreign announcement of a held address was last logged, per address.
    foreign_warned: HashMap<IpAddr, Instant>,
    interfaces: Vec<Interface>,
    held_tx: watch::Sender<Arc<HeldSet>>,
    interfaces_tx: watch::Sender<Vec<Interface>>,
    events: mpsc::Receiver<LocalEvent>,
    metrics: Arc<Metrics>,
    /// What the heartbeats say.
    beat_tx: watch::Sender<Beat>,
    /// Heartbeats heard (written by the heartbeat tasks), on the clock that starts at `started`.
    liveness: Arc<Mutex<Liveness>>,
    started: Instant,
    /// The answering fence the responders check.
    fence: Arc<Fence>,
    /// Since when each (holder, lease) has been watched, on the same clock.
    watching: HashMap<(String, i64), Duration>,
    /// Leases this node has ended, so it asks once.
    revoked: HashSet<i64>,
    /// Since when the current session has been renewing the lease.
    renewing_since: Option<Instant>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node", &self.settings.node_name)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller, linked to the responders and heartbeats by `links`.
    pub fn new(settings: Settings, links: Links, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let Links {
            held_tx,
            interfaces_tx,
            events,
            beat_tx,
            liveness,
            clock,
            fence,
        } = links;
        let interfaces_regex = settings
            .interfaces
            .as_deref()
            .map(|r| Regex::new(&format!("^(?:{r})$")))
            .transpose()
            .context("--interfaces is not a valid regular expression")?;
        let options = settings.etcd.options(settings.keepalive_interval())?;
        Ok(Controller {
            keys: Keys::new(&settings.etcd.etcd_prefix),
            settings,
            interfaces_regex,
            options,
            etcd: None,
            lease: None,
            lease_until: None,
            world: World::default(),
            unclaimed_since: HashMap::new(),
            orphaned_since: HashMap::new(),
            next_wake: None,
            yielded: HashSet::new(),
            foreign_warned: HashMap::new(),
            interfaces: Vec::new(),
            held_tx,
            interfaces_tx,
            events,
            metrics,
            beat_tx,
            liveness,
            started: clock,
            fence,
            watching: HashMap::new(),
            revoked: HashSet::new(),
            renewing_since: None,
        })
    }

    /// Runs until `shutdown` turns true; then stops answering and revokes the lease.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        self.refresh_interfaces();
        loop {
            match self.session(&mut shutdown).await {
                SessionEnd::Shutdown => break,
                SessionEnd::Failed(e) => {
                    let step = self.settings.keepalive_interval();
                    let renewed_for = self.renewing_since.take().map(|t| t.elapsed());
                    let delay = retry_delay(renewed_for, step);
                    warn!(error = %format!("{e:#}"), retry_in = ?delay, "etcd unavailable; retrying every {step:?}");
                    self.metrics.etcd_connected.set(0);
                    self.etcd = None;
                    if self.wait_for_etcd(&mut shutdown, delay).await {
                        break;
                    }
                }
            }
        }
        self.stop().await;
        Ok(())
    }

    /// Graceful stop: stop answering first, then end the lease so claims vanish at once.
    async fn stop(&mut self) {
        self.publish(HeldSet::default());
        if let (Some(etcd), Some(lease)) = (self.etcd.as_mut(), self.lease) {
            match bounded(Duration::from_millis(800), "revoke", etcd.revoke(lease)).await {
                Ok(()) => info!(lease, "lease revoked; claims released"),
                Err(e) => warn!(error = %e, "could not revoke the lease; claims end with its TTL"),
            }
        }
    }

    /// One connection to etcd, from connecting to the first failure.
    async fn session(&mut self, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        let step = self.settings.keepalive_interval();
        let mut etcd = match bounded(
            step,
            "connect",
            Etcd::connect(&self.settings, self.options.clone()),
        )
        .await
        {
            Ok(e) => e,
            Err(e) => return SessionEnd::Failed(e),
        };
        // When the lease was last asked about: a confirmation opens the answering fence only if
        // it was asked for after the fence closed (`Fence::reopen`).
        let asked = Instant::now();
        let alive = match self.lease {
            // An error here means etcd did not answer: the lease may well be alive. Only etcd
            // saying so ends it.
            Some(id) => match bounded(step, "lease status", etcd.alive(id)).await {
                Ok(Some(remaining)) => Some((id, Some(remaining))),
                // A member without a quorum can call a live lease gone (seen in the fault suite
                // with two of three members down): only a read that needs the quorum decides.
                Ok(None) => {
                    let node = self.settings.node_name.clone();
                    match bounded(step, "lease check", etcd.registered_on(&node, id)).await {
                        Ok(true) => Some((id, Some(self.settings.ttl()))),
                        Ok(false) => Some((id, None)),
                        Err(e) => return SessionEnd::Failed(e),
                    }
                }
                Err(e) => return SessionEnd::Failed(e),
            },
            None => None,
        };
        let lease = match alive {
            Some((id, Some(remaining))) => {
                self.lease_confirmed(Some(Instant::now() + remaining));
                self.fence
                    .reopen(asked, Instant::now(), self.settings.fence_window());
                info!(lease = id, "connected; lease still alive, claims kept");
                id
            }
            previous => {
                if previous.is_some() {
                    self.lease_lost("the lease expired while etcd was away");
                }
                let asked = Instant::now();
                match bounded(step, "lease grant", etcd.grant(self.settings.lease_ttl)).await {
                    Ok(id) => {
                        self.fence
                            .reopen(asked, Instant::now(), self.settings.fence_window());
                        info!(lease = id, ttl = self.settings.lease_ttl, "lease granted");
                        id
                    }
                    Err(e) => return SessionEnd::Failed(e),
                }
            }
        };
        self.lease = Some(lease);
        self.beat_tx.send_modify(|b| b.lease = Some(lease));
        if self.lease_until.is_none_or(|u| u <= Instant::now()) {
            self.lease_confirmed(Some(Instant::now() + self.settings.ttl()));
        }
        // Renew before anything else. A renewal needs a leader but no quorum; registering,
        // listing and watching need a quorum. A leader that has just lost its quorum still
        // counts the lease down: left unrenewed there, the lease expires on its clock and it
        // proposes the revocation, which commits when that member is elected again as the
        // others return (etcd applies a new leader's log before it extends the leases), and
        // every claim on the lease moves. Renewals run in a task of their own: slow claims
        // or releases never delay them.
        let keepalive = match bounded(
            step,
            "keepalive",
            ferrolb_etcd::keep_alive(
                &mut etcd.client,
                lease,
                self.settings.ttl(),
                step,
                Some(self.fence.confirmations()),
            ),
        )
        .await
        {
            Ok(k) => k,
            Err(e) => return SessionEnd::Failed(e),
        };
        self.renewing_since = Some(Instant::now());
        self.metrics.lease_alive.set(1);
        self.metrics.etcd_connected.set(1);
        self.etcd = Some(etcd.clone());
        match self.connected(&mut etcd, lease, keepalive, shutdown).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn connected(
        &mut self,
        etcd: &mut Etcd,
        lease: i64,
        mut keepalive: ferrolb_etcd::Keepalive,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<std::convert::Infallible, SessionEnd> {
        let step = self.settings.keepalive_interval();
        self.register(etcd, lease).await?;
        let (changes, revision) = bounded(step, "list", etcd.list()).await?;
        self.world = World::default();
        // Stagger timers start again from what this session sees.
        self.unclaimed_since.clear();
        for c in &changes {
            if let Err(e) = self.world.apply(&self.keys, c) {
                warn!(error = %e, "skipping an unreadable key");
            }
        }
        self.sync_liveness();
        self.yielded.clear();
        let mut watch = bounded(step, "watch", etcd.watch(revision + 1)).await?;
        let mut interface_tick = tokio::time::interval(Duration::from_secs(1));
        interface_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let heartbeats = self.settings.heartbeats();
        let mut detect_tick = tokio::time::interval(if heartbeats {
            self.settings.heartbeat_interval
        } else {
            Duration::from_secs(3600)
        });
        detect_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.reconcile(etcd, lease).await?;
        loop {
            let wake = self
                .next_wake
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let release_at = self.release_at();
            tokio::select! {
                _ = stopped(shutdown) => return Err(SessionEnd::Shutdown),
                msg = watch.message() => {
                    for c in etcd::changes(msg)? {
                        if let Err(e) = self.world.apply(&self.keys, &c) {
                            warn!(error = %e, "skipping an unreadable key");
                        }
                    }
                    self.sync_liveness();
                    // One thread runs every task: let the heartbeats and renewals go first.
                    tokio::task::yield_now().await;
                    // The registration lives on the lease: gone means the lease was ended, by
                    // the others when they heard no heartbeat (a false suspicion, if we are
                    // here to see it). Stop answering at once and come back as a newcomer.
                    if !self.world.speakers.contains_key(&self.settings.node_name) {
                        self.lease_lost("this node's lease was ended in etcd");
                        return Err(anyhow::anyhow!("lease {lease} ended").into());
                    }
                }
                _ = detect_tick.tick(), if heartbeats => self.detect(etcd, lease).await?,
                changed = keepalive.state.changed() => {
                    if changed.is_err() {
                        return Err(anyhow::anyhow!("the keepalive task ended").into());
                    }
                    let state = keepalive.state.borrow_and_update().clone();
                    match state {
                        LeaseState::Alive { until, sent } => {
                            self.lease_confirmed(Some(until));
                            self.fence.reopen(sent, Instant::now(), self.settings.fence_window());
                        }
                        LeaseState::Expired => {
                            self.lease_lost("etcd says the lease has expired");
                            return Err(anyhow::anyhow!("lease {lease} expired").into());
                        }
                        LeaseState::Failed(why) => return Err(anyhow::anyhow!(why).into()),
                    }
                }
                _ = tokio::time::sleep_until(release_at.unwrap_or(wake)), if release_at.is_some() => {
                    // Renewals stalled while etcd still looked reachable: the same rule as when
                    // it is not (`--on-etcd-loss release`).
                    warn!("no lease renewal; stopping answering before the lease can expire (--on-etcd-loss release)");
                    self.publish(HeldSet::default());
                    return Err(anyhow::anyhow!("lease renewals stalled").into());
                }
                _ = interface_tick.tick() => {
                    self.stall_if_asked();
                    if self.refresh_interfaces() {
                        self.register(etcd, lease).await?;
                    }
                }
                Some(ev) = self.events.recv() => self.local_event(ev, true),
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.reconcile(etcd, lease).await?;
        }
    }

    /// With `--on-etcd-loss release`: when to stop answering, a margin before the lease can
    /// have expired (a third of the TTL, at most a second).
    fn release_at(&self) -> Option<Instant> {
        let margin = (self.settings.ttl() / 3).min(Duration::from_secs(1));
        match self.settings.on_etcd_loss {
            OnEtcdLoss::Release => self.lease_until.map(|u| u - margin),
            OnEtcdLoss::Hold => None,
        }
    }

    /// Records when the lease ends unless renewed, as last confirmed by etcd, and with
    /// `--on-etcd-loss release` closes the answering fence a margin before then.
    fn lease_confirmed(&mut self, until: Option<Instant>) {
        self.lease_until = until;
        let deadline = match self.lease {
            Some(_) => self.release_at(),
            None => Some(Instant::now()),
        };
        self.fence
            .set_lease_until(match self.settings.on_etcd_loss {
                OnEtcdLoss::Release => deadline,
                OnEtcdLoss::Hold => None,
            });
    }

    /// Waits `delay` before the next attempt while etcd is away (see [`retry_delay`]); true
    /// when shutdown was asked for.
    async fn wait_for_etcd(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        delay: Duration,
    ) -> bool {
        let retry = Instant::now() + delay;
        let release_at = self.release_at();
        loop {
            if let Some(at) = release_at {
                if Instant::now() >= at && !self.held_tx.borrow().is_empty() {
                    warn!(
                        "etcd still unreachable; stopping answering before the lease can expire (--on-etcd-loss release)"
                    );
                    self.publish(HeldSet::default());
                }
            }
            let next = release_at
                .filter(|at| *at > Instant::now())
                .map_or(retry, |at| at.min(retry));
            tokio::select! {
                _ = stopped(shutdown) => return true,
                Some(ev) = self.events.recv() => self.local_event(ev, false),
                _ = tokio::time::sleep_until(next) => {
                    if Instant::now() >= retry {
                        return false;
                    }
                }
            }
        }
    }

    fn local_event(&mut self, ev: LocalEvent, connected: bool) {
        match ev {
            LocalEvent::ForeignAnnouncement { ip, mac } => {
                if connected {
                    // etcd decides while it answers: our claim stands; the other host is wrong.
                    // Once a minute per address at most: a host repeating it must not flood the log.
                    let now = Instant::now();
                    let quiet = self
                        .foreign_warned
                        .get(&ip)
                        .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60));
                    if self.held_tx.borrow().holds(ip) && !quiet {
                        warn!(%ip, %mac, "another host announced an address this node holds in etcd; still answering");
                        self.foreign_warned.insert(ip, now);
                    }
                    return;
                }
                let mut held = (**self.held_tx.borrow()).clone();
                if held.release(ip) {
                    info!(%ip, %mac, reason = "another node announced it while etcd is unreachable", "yield");
                    self.metrics.claims_lost.inc();
                    self.yielded.insert(ip);
                    self.publish(held);
                }
            }
        }
    }

    /// Tells the heartbeat record which lease each registered node is on now: only heartbeats
    /// on that lease count.
    fn sync_liveness(&self) {
        self.liveness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set_current(self.world.speaker_leases.clone());
    }

    /// The lease is gone: so are this node's claims. Stop answering at once.
    fn lease_lost(&mut self, why: &str) {
        warn!(
            reason = why,
            "lease lost; no longer answering for any address"
        );
        self.lease = None;
        self.lease_confirmed(None);
        self.fence.close();
        self.beat_tx.send_modify(|b| b.lease = None);
        self.unclaimed_since.clear();
        self.metrics.lease_alive.set(0);
        self.publish(HeldSet::default());
    }

    /// The `--debug-stall-dir` test hook: blocks the event loop's thread (and so every task on
    /// it) for the duration the node's file holds.
    fn stall_if_asked(&self) {
        let Some(dir) = &self.settings.debug_stall_dir else {
            return;
        };
        let path = dir.join(&self.settings.node_name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        let _ = std::fs::remove_file(&path);
        match humantime::parse_duration(text.trim()) {
            Ok(d) => {
                warn!(duration = ?d, "test hook: stalling the event loop");
                std::thread::sleep(d);
                warn!("test hook: the event loop runs again");
            }
            Err(e) => warn!(error = %e, "test hook: unreadable stall duration"),
        }
    }

    /// Reads the interfaces again; true when the usable set changed.
    fn refresh_interfaces(&mut self) -> bool {
        let found = match interfaces::list() {
            Ok(list) => list,
            Err(e) => {
                warn!(error = %e, "cannot list interfaces");
                return false;
            }
        };
        let usable: Vec<Interface> = found
            .into_iter()
            .filter(
                |i| match interfaces::eligible(i, self.interfaces_regex.as_ref()) {
                    Ok(()) => true,
                    Err(why) => {
                        debug!(interface = %i.name, reason = why, "not announcing on interface");
                        false
                    }
                },
            )
            .collect();
        let changed = usable != self.interfaces;
        if changed {
            let names: Vec<&str> = usable.iter().map(|i| i.name.as_str()).collect();
            info!(interfaces = ?names, "usable interfaces");
            self.interfaces = usable.clone();
            self.interfaces_tx.send_replace(usable);
        }
        changed
    }

    fn registration(&self) -> Registration {
        Registration {
            node: self.settings.node_name.clone(),
            labels: self.settings.labels.0.clone(),
            interfaces: self
                .interfaces
                .iter()
                .map(|i| InterfaceInfo {
                    name: i.name.clone(),
                    mac: format_mac(i.mac),
                })
                .collect(),
            heartbeats: self.settings.heartbeats(),
        }
    }

    async fn register(&mut self, etcd: &mut Etcd, lease: i64) -> anyhow::Result<()> {
        let reg = self.registration();
        bounded(
            self.settings.keepalive_interval(),
            "register",
            etcd.register(&reg, lease),
        )
        .await
        .inspect_err(|_| self.etcd_error("register"))
    }

    fn etcd_error(&self, op: &'static str) {
        self.metrics
            .etcd_errors
            .get_or_create(&OpLabels { op })
            .inc();
    }

    /// Heartbeat failure detection: suspects the holders of addresses this node may answer for
    /// that have gone unheard for `--suspect-after`, records and withdraws its suspicions in
    /// etcd, and ends a suspect's lease when enough live speakers agree and this node is the one
    /// to act (`ferrolb_core::liveness`).
    async fn detect(&mut self, etcd: &mut Etcd, lease: i64) -> anyhow::Result<()> {
        let now = self.started.elapsed();
        let step = self.settings.keepalive_interval();
        let me = self.settings.node_name.clone();
        let mut holders: BTreeMap<String, i64> = BTreeMap::new();
        for (ip, c) in &self.world.claims {
            let Some(ann) = self.world.announcements.get(ip) else {
                continue;
            };
            let heartbeats = self
                .world
                .speakers
                .get(&c.claim.node)
                .is_some_and(|r| r.heartbeats);
            let eligible = ann.nodes.is_empty() || ann.nodes.contains(&me);
            if c.claim.node != me && heartbeats && eligible {
                holders.insert(c.claim.node.clone(), c.lease);
            }
        }
        self.watching
            .retain(|(node, l), _| holders.get(node) == Some(l));
        let suspect_after = self.settings.suspect_after();
        let mut suspected: BTreeMap<String, i64> = BTreeMap::new();
        for (node, l) in &holders {
            let since = *self.watching.entry((node.clone(), *l)).or_insert(now);
            let last = self
                .liveness
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .last_heard(node, *l);
            if liveness::is_suspect(last, since, now, suspect_after) {
                suspected.insert(node.clone(), *l);
            }
        }
        self.metrics
            .suspected
            .set(i64::try_from(suspected.len()).unwrap_or(i64::MAX));
        let mine: BTreeMap<String, i64> = self
            .world
            .suspects
            .iter()
            .filter_map(|(n, obs)| obs.get(&me).map(|l| (n.clone(), *l)))
            .collect();
        for (node, l) in &suspected {
            if mine.get(node) != Some(l) {
                info!(%node, lease = l, silent_for = ?suspect_after, "suspect: no heartbeat");
                bounded(step, "suspect", etcd.suspect(node, &me, *l, lease)).await?;
            }
        }
        for node in mine.keys().filter(|n| !suspected.contains_key(*n)) {
            info!(%node, "suspicion withdrawn");
            bounded(step, "unsuspect", etcd.unsuspect(node, &me)).await?;
        }
        let live: BTreeSet<String> = self.world.speakers.keys().cloned().collect();
        for (node, l) in &suspected {
            let mut agreeing: BTreeSet<String> = self
                .world
                .suspects
                .get(node)
                .map(|obs| {
                    obs.iter()
                        .filter(|(_, sl)| *sl == l)
                        .map(|(o, _)| o.clone())
                        .collect()
                })
                .unwrap_or_default();
            agreeing.insert(me.clone());
            let acts = liveness::revoker(node, &agreeing, &live, self.settings.suspect_quorum)
                == Some(me.as_str());
            if acts && self.revoked.insert(*l) {
                warn!(%node, lease = l, agreeing = ?agreeing, "ending the lease of a holder no heartbeat comes from");
                match bounded(step, "revoke", etcd.revoke(*l)).await {
                    Ok(()) => {
                        self.metrics.leases_revoked.inc();
                    }
                    Err(e) => debug!(%node, error = %e, "could not end the lease (already gone?)"),
                }
            }
        }
        Ok(())
    }

    fn publish(&self, held: HeldSet) {
        self.metrics
            .held_addresses
            .set(i64::try_from(held.len()).unwrap_or(i64::MAX));
        let digest = held_digest(held.addresses());
        self.beat_tx.send_if_modified(|b| {
            let changed = b.digest != digest;
            b.digest = digest;
            changed
        });
        self.held_tx.send_if_modified(|current| {
            if **current == held {
                false
            } else {
                *current = Arc::new(held);
                true
            }
        });
    }

    /// Decides about every address, then acts; repeats once when an action changed the view.
    async fn reconcile(&mut self, etcd: &mut Etcd, lease: i64) -> anyhow::Result<()> {
        for _ in 0..2 {
            let plan = self.decide(lease);
            self.publish(plan.held);
            self.next_wake = plan.wake;
            if plan.claim.is_empty() && plan.release.is_empty() && plan.clear.is_empty() {
                return Ok(());
            }
            self.clear_orphans(etcd, plan.clear).await?;
            self.act(etcd, lease, plan.claim, plan.release).await?;
        }
        Ok(())
    }

    fn decide(&mut self, lease: i64) -> Plan {
        let now = Instant::now();
        let me = self.settings.node_name.as_str();
        let usable: Vec<String> = self.interfaces.iter().map(|i| i.name.clone()).collect();
        let rank_keys = election::rank_keys(&self.world.announcements);
        let mut plan = Plan::default();
        self.unclaimed_since.retain(|ip, _| {
            self.world.announcements.contains_key(ip) && !self.world.claims.contains_key(ip)
        });
        let speakers = &self.world.speakers;
        self.orphaned_since.retain(|ip, _| {
            self.world
                .claims
                .get(ip)
                .is_some_and(|c| election::is_orphaned(&c.claim, c.lease, speakers))
        });
        let grace = self.orphan_grace();
        for (ip, ann) in &self.world.announcements {
            let claim = self.world.claims.get(ip);
            // A claim under this node's name on an older lease is a leftover that ends with that
            // lease: it is neither ours to answer for nor free to claim.
            let claim_ref = claim.map(|c| &c.claim);
            let unclaimed_for = if claim.is_none() {
                now - *self.unclaimed_since.entry(*ip).or_insert(now)
            } else {
                Duration::ZERO
            };
            let situation = Situation {
                me,
                announcement: ann,
                rank_key: rank_keys.get(ip).copied().unwrap_or(*ip),
                speakers: &self.world.speakers,
                my_interfaces: &usable,
                claim: claim_ref,
            };
            if let Some(c) = claim
                && election::is_orphaned(&c.claim, c.lease, &self.world.speakers)
            {
                let since = *self.orphaned_since.entry(*ip).or_insert(now);
                let at = since + grace;
                if now >= at {
                    if election::clears_orphan(&situation) {
                        plan.clear.push((*ip, c.revision, c.claim.node.clone()));
                    }
                } else {
                    plan.wake = Some(plan.wake.map_or(at, |w: Instant| w.min(at)));
                }
                continue;
            }
            let step = match claim {
                Some(c) if c.claim.node == me && c.lease != lease => Step::Idle {
                    reason: "claimed on an older lease of this node".into(),
                },
                _ => election::decide(&situation, unclaimed_for, self.settings.claim_stagger),
            };
            match step {
                Step::Claim { rank } => {
                    plan.claim
                        .push((*ip, election::interfaces_for(ann, &usable), rank));
                }
                Step::Wait { remaining, .. } => {
                    let at = now + remaining;
                    plan.wake = Some(plan.wake.map_or(at, |w: Instant| w.min(at)));
                }
                Step::Hold => {
                    if !self.yielded.contains(ip) {
                        plan.held.hold(*ip, election::interfaces_for(ann, &usable));
                    }
                }
                Step::Release { reason } => plan.release.push((*ip, reason)),
                Step::Idle { .. } => {}
            }
        }
        for (ip, c) in self.world.claimed_by(me) {
            if c.lease == lease && !self.world.announcements.contains_key(ip) {
                plan.release
                    .push((*ip, "the address is no longer announced".into()));
            }
        }
        plan
    }

    /// How long a claim may hold an address for nobody before it is cleared: twice this node's
    /// lease TTL, at least 5 s (a registration may be on its way; a lease may be about to end).
    fn orphan_grace(&self) -> Duration {
        (self.settings.ttl() * 2).max(Duration::from_secs(5))
    }

    /// Deletes orphaned claims, each only if unchanged since it was read.
    async fn clear_orphans(
        &mut self,
        etcd: &mut Etcd,
        clear: Vec<(IpAddr, i64, String)>,
    ) -> anyhow::Result<()> {
        let step = self.settings.keepalive_interval();
        for (ip, revision, holder) in clear {
            let done = bounded(step, "clear", etcd.clear_orphan(ip, revision))
                .await
                .inspect_err(|_| self.etcd_error("clear"))?;
            if done {
                warn!(%ip, %holder, grace = ?self.orphan_grace(), "cleared a claim that held the address for nobody (no registration, or no lease)");
                self.world.claims.remove(&ip);
                self.orphaned_since.remove(&ip);
            }
        }
        Ok(())
    }

    async fn act(
        &mut self,
        etcd: &mut Etcd,
        lease: i64,
        claims: Vec<(IpAddr, Vec<String>, usize)>,
        releases: Vec<(IpAddr, String)>,
    ) -> anyhow::Result<()> {
        let step = self.settings.keepalive_interval();
        for (ip, reason) in releases {
            let done = bounded(step, "release", etcd.release(ip, lease))
                .await
                .inspect_err(|_| self.etcd_error("release"))?;
            self.world.claims.remove(&ip);
            if done {
                info!(%ip, %reason, "release");
            }
        }
        for (ip, interfaces, rank) in claims {
            let claim = Claim {
                node: self.settings.node_name.clone(),
                interfaces,
                since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            };
            let outcome = bounded(step, "claim", etcd.claim(ip, &claim, lease))
                .await
                .inspect_err(|_| self.etcd_error("claim"))?;
            match outcome {
                etcd::ClaimOutcome::Won { revision } => {
                    info!(%ip, rank, interfaces = ?claim.interfaces, "claim");
                    self.metrics.claims_won.inc();
                    self.world.claims.insert(
                        ip,
                        crate::world::HeldClaim {
                            claim,
                            lease,
                            revision,
                        },
                    );
                }
                etcd::ClaimOutcome::Lost { current } => {
                    debug!(%ip, rank, "another node claimed first");
                    self.metrics.claims_lost.inc();
                    if let Some(c) = current
                        && let Err(e) = self.world.apply(&self.keys, &c)
                    {
                        warn!(error = %e, "skipping an unreadable key");
                    }
                }
            }
        }
        Ok(())
    }
}

/// How long to wait before connecting again after a session failed, given how long that
/// session renewed the lease (`None`: it never got that far). A session that had been renewing
/// for a retry interval or more lost a member that worked: the next member is tried at once, so
/// that renewals reach the cluster again long before the lease can expire on a leader's clock,
/// even when the member the session was on died just before its next renewal. Otherwise the
/// cluster itself is failing: wait a retry interval, so that attempts come at most once per
/// interval.
fn retry_delay(renewed_for: Option<Duration>, step: Duration) -> Duration {
    match renewed_for {
        Some(d) if d >= step => Duration::ZERO,
        _ => step,
    }
}

/// The outcome of one round of decisions.
#[derive(Debug, Default)]
struct Plan {
    held: HeldSet,
    claim: Vec<(IpAddr, Vec<String>, usize)>,
    release: Vec<(IpAddr, String)>,
    /// Orphaned claims to delete: address, the claim's revision, its holder's name.
    clear: Vec<(IpAddr, i64, String)>,
    wake: Option<Instant>,
}

/// Resolves once `stop` turns true (or its sender is gone). The guard `wait_for` returns is
/// dropped here, so callers can use this in `select!` next to other awaits.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_millis(666);

    /// Regression (fault scenario 10): a speaker whose member died waited a retry interval
    /// before renewing elsewhere, long enough for the lease to expire on the clock of a leader
    /// that had lost its quorum, which revoked it once elected again; every claim moved.
    #[test]
    fn a_session_that_was_renewing_is_retried_on_the_next_member_at_once() {
        assert_eq!(retry_delay(Some(STEP), STEP), Duration::ZERO);
        assert_eq!(
            retry_delay(Some(Duration::from_secs(3600)), STEP),
            Duration::ZERO
        );
    }

    #[test]
    fn a_session_that_failed_before_renewing_for_an_interval_waits_one() {
        assert_eq!(retry_delay(None, STEP), STEP);
        assert_eq!(retry_delay(Some(Duration::ZERO), STEP), STEP);
        assert_eq!(retry_delay(Some(STEP / 2), STEP), STEP);
    }
}
