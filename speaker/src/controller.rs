//! The speaker's controller: the executor of [`SpeakerState`]'s decisions. It keeps a session
//! with etcd (lease, listing, watch), feeds what happens into the state machine, and carries
//! out the [`Action`]s it answers with: etcd transactions, the set of held addresses that the
//! responders answer for, the fence and the heartbeats. It decides nothing itself.
//!
//! ```text
//!            watch P/ ──▶ SpeakerState ──actions──▶ claims / releases / suspicions (etcd txns)
//!  keepalive every TTL/3        │
//!                               └──▶ HeldSet ──watch channel──▶ responders (one per interface)
//!                                        ▲                          │
//!                                        └──── yields (foreign gratuitous ARP/NA while etcd is away)
//! ```
//!
//! While etcd cannot be reached the held set stays as it was (`--on-etcd-loss hold`) until
//! another node announces one of its addresses, or it is emptied before the lease can have
//! expired (`release`). The loop retries etcd every TTL/3 and, when the lease survived (etcd
//! extends leases across a restart), carries on with the same claims: nothing moves. When etcd
//! lost its keys (every key deleted at once, or a new, empty etcd), the state machine rebuilds
//! them from what it answered (`SpeakerState::apply`, `SpeakerState::lease_gone_while_away`):
//! the same node registers and claims again, and keeps answering meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use ferrolb_core::layout::{Claim, InterfaceInfo, Keys, Registration};
use ferrolb_core::respond::HeldSet;
use ferrolb_core::wire::heartbeat::held_digest;
use ferrolb_etcd::LeaseState;
use ferrolb_etcd::session::{Opening, Session, SessionEvent};
use regex::Regex;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::etcd::{self, Etcd, bounded};
use crate::links::{Links, LocalEvent, format_mac, stopped};
use crate::metrics::{Metrics, OpLabels};
use crate::settings::Settings;
use crate::state::{self, Action, Foreign, LeaseLoss, SpeakerState};
use crate::sys::interfaces::{self, Interface};
use ferrolb_core::view::{KeyChange, Unreadable};

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

/// The executor.
pub struct Controller {
    settings: Settings,
    interfaces_regex: Option<Regex>,
    options: etcd_client::ConnectOptions,
    state: SpeakerState,
    /// The last session's client, to revoke the lease on the way out.
    etcd: Option<Etcd>,
    interfaces: Vec<Interface>,
    links: Links,
    metrics: Arc<Metrics>,
    /// Since when the current session has been renewing the lease.
    renewing_since: Option<Instant>,
    /// Whether a standing suspicion of this node keeps it silent (as last logged).
    fenced: bool,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node", &self.settings.node_name)
            .field("lease", &self.state.lease())
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller, linked to the responders and heartbeats by `links`.
    pub fn new(settings: Settings, links: Links, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let interfaces_regex = settings
            .interfaces
            .as_deref()
            .map(|r| Regex::new(&format!("^(?:{r})$")))
            .transpose()
            .context("--interfaces is not a valid regular expression")?;
        let options = settings.etcd.options(settings.keepalive_interval())?;
        let state = SpeakerState::new(
            state::Config::from_settings(&settings),
            Keys::new(&settings.etcd.etcd_prefix),
        );
        Ok(Controller {
            settings,
            interfaces_regex,
            options,
            state,
            etcd: None,
            interfaces: Vec::new(),
            links,
            metrics,
            renewing_since: None,
            fenced: false,
        })
    }

    /// Now, on the speaker's clock.
    fn now(&self) -> Duration {
        self.links.clock.elapsed()
    }

    /// A time on the speaker's clock as an instant.
    fn instant(&self, at: Duration) -> Instant {
        self.links.clock + at
    }

    /// Runs until `shutdown` turns true; then stops answering and revokes the lease.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        self.refresh_interfaces();
        loop {
            match self.session(&mut shutdown).await {
                SessionEnd::Shutdown => break,
                SessionEnd::Failed(e) => {
                    self.links.ready.store(false, Ordering::Release);
                    self.state.disconnected();
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
        self.links.ready.store(false, Ordering::Release);
        self.publish(HeldSet::default());
        if let (Some(etcd), Some(lease)) = (self.etcd.as_mut(), self.state.lease()) {
            match bounded(Duration::from_millis(800), "revoke", etcd.revoke(lease.id)).await {
                Ok(()) => info!(lease = lease.id, "lease revoked; claims released"),
                Err(e) => warn!(error = %e, "could not revoke the lease; claims end with its TTL"),
            }
        }
    }

    /// One session with etcd, from connecting to the first failure.
    async fn session(&mut self, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        let step = self.settings.keepalive_interval();
        let opened = Opening::connect(&self.settings.etcd, self.options.clone(), step).await;
        let mut session = match async { self.lease(opened?).await }.await {
            Ok(s) => s,
            Err(e) => return SessionEnd::Failed(e),
        };
        let lease = session.lease;
        self.links.beat_tx.send_modify(|b| b.lease = Some(lease));
        self.renewing_since = Some(Instant::now());
        self.metrics.lease_alive.set(1);
        self.metrics.etcd_connected.set(1);
        let mut etcd = Etcd::new(session.client.clone(), &self.settings.etcd.etcd_prefix);
        self.etcd = Some(etcd.clone());
        match self.connected(&mut session, &mut etcd, shutdown).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    /// The session's lease: the one this node had if it is still alive, or a new one. Opens
    /// the answering fence once etcd confirmed it; renewals start before anything else (a
    /// renewal needs a leader but no quorum: a leader that has just lost its quorum still
    /// counts the lease down, and left unrenewed there the lease expires on its clock and
    /// every claim on it moves when that member is elected again).
    async fn lease(&mut self, mut opening: Opening) -> anyhow::Result<Session> {
        let ttl = self.settings.ttl();
        if let Some(old) = self.state.lease() {
            let witness =
                Keys::new(&self.settings.etcd.etcd_prefix).speaker(&self.settings.node_name);
            match opening.resume(old.id, ttl, Some(&witness)).await? {
                Some((until, asked)) => {
                    self.confirmed(old.id, until, asked);
                    info!(lease = old.id, "connected; lease still alive, claims kept");
                    let renew = Some(self.links.fence.confirmations());
                    return opening.renew(old.id, ttl, renew).await;
                }
                None if self.links.fence.beat_closed(Instant::now()) => {
                    // This node went silent (its event loop stalled) long enough to be
                    // suspected: its addresses may be another node's now. Nothing is carried.
                    warn!(
                        lease = old.id,
                        "lease gone after this node went silent; no longer answering for any address"
                    );
                    let actions = self
                        .state
                        .lease_lost(LeaseLoss::ExpiredWhileAway, self.now());
                    self.execute_local(actions);
                }
                None => {
                    let actions = self.state.lease_gone_while_away(self.now());
                    self.execute_local(actions);
                    let carried = self.state.carried();
                    if carried > 0 {
                        info!(
                            lease = old.id,
                            carried,
                            "lease gone while etcd was away (expired, or etcd lost its data); still answering what no other node claims, claiming it again first"
                        );
                    }
                }
            }
        }
        let (id, asked) = opening.grant(self.settings.lease_ttl).await?;
        self.confirmed(id, Instant::now() + ttl, asked);
        info!(lease = id, ttl = self.settings.lease_ttl, "lease granted");
        opening
            .renew(id, ttl, Some(self.links.fence.confirmations()))
            .await
    }

    /// etcd confirmed lease `id` until `until`, in answer to a request sent at `asked`.
    fn confirmed(&mut self, id: i64, until: Instant, asked: Instant) {
        let until = until.saturating_duration_since(self.links.clock);
        let actions = self.state.renewed(id, until);
        self.execute_local(actions);
        self.links
            .fence
            .reopen(asked, Instant::now(), self.settings.fence_window());
    }

    async fn connected(
        &mut self,
        session: &mut Session,
        etcd: &mut Etcd,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<std::convert::Infallible, SessionEnd> {
        let lease = session.lease;
        self.register(etcd, lease).await?;
        let prefix = format!("{}/", self.settings.etcd.etcd_prefix);
        let listing = session.list_then_watch(&prefix).await?;
        let (actions, unreadable) = self.state.session_started(&listing);
        skipped(unreadable);
        self.execute_local(actions);
        let mut interface_tick = tokio::time::interval(Duration::from_secs(1));
        interface_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let heartbeats = self.settings.heartbeats();
        // Detection runs when the next watched holder becomes suspect unless heard first, and at
        // least every heartbeat interval (to withdraw suspicions of holders heard again).
        let mut detect_at = Instant::now();
        self.reconcile(etcd, lease).await?;
        self.links.ready.store(true, Ordering::Release);
        loop {
            let idle = Instant::now() + Duration::from_secs(3600);
            let wake = self.state.next_wake().map_or(idle, |w| self.instant(w));
            let release_at = self.state.release_at().map(|r| self.instant(r));
            tokio::select! {
                _ = stopped(shutdown) => return Err(SessionEnd::Shutdown),
                event = session.next() => match event? {
                    SessionEvent::Changes(changes) => {
                        self.watched(&changes, lease).await?;
                        // Another observer's suspicion may complete a quorum: act on it now.
                        if heartbeats {
                            detect_at = self.detect(etcd, lease).await?;
                        }
                    }
                    SessionEvent::Lease(news) => self.lease_news(lease, news)?,
                },
                _ = tokio::time::sleep_until(detect_at), if heartbeats => {
                    detect_at = self.detect(etcd, lease).await?;
                }
                _ = tokio::time::sleep_until(release_at.unwrap_or(wake)), if release_at.is_some() => {
                    // Renewals stalled while etcd still looked reachable: the same rule as when
                    // it is not (`--on-etcd-loss release`).
                    warn!("no lease renewal; stopping answering before the lease can expire (--on-etcd-loss release)");
                    let actions = self.state.unrenewed(self.now());
                    self.execute_local(actions);
                    return Err(anyhow::anyhow!("lease renewals stalled").into());
                }
                _ = interface_tick.tick() => {
                    self.stall_if_asked();
                    if self.refresh_interfaces() {
                        self.register(etcd, lease).await?;
                    }
                }
                Some(ev) = self.links.events.recv() => self.local_event(ev),
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.reconcile(etcd, lease).await?;
        }
    }

    /// Logs when a standing suspicion of this node starts or stops keeping it silent.
    fn log_fence(&mut self, lease: i64) {
        let fenced = self.state.fenced();
        if fenced == std::mem::replace(&mut self.fenced, fenced) {
            return;
        }
        if fenced {
            warn!(
                lease,
                "a quorum of peers hears no heartbeat from this node: answering nothing while they take its addresses over"
            );
        } else {
            info!(lease, "the peers' suspicions of this node were withdrawn");
        }
    }

    /// Changes the watch delivered.
    async fn watched(&mut self, changes: &[KeyChange], lease: i64) -> anyhow::Result<()> {
        let carried = self.state.carried();
        let (actions, unreadable) = self.state.apply(changes, self.now());
        skipped(unreadable);
        self.log_fence(lease);
        if carried == 0 && self.state.carried() > 0 {
            warn!(
                lease,
                carried = self.state.carried(),
                "this node's keys were deleted with others (not by its lease ending): registering again on the same lease, still answering what no other node claims, claiming it again first"
            );
        }
        self.execute_local(actions);
        // One thread runs every task: let the heartbeats and renewals go first.
        tokio::task::yield_now().await;
        match self.state.lease() {
            Some(_) => Ok(()),
            None => Err(anyhow::anyhow!("lease {lease} ended")),
        }
    }

    /// What the keepalive task says of the lease.
    fn lease_news(&mut self, lease: i64, news: LeaseState) -> anyhow::Result<()> {
        match news {
            LeaseState::Alive { until, sent } => {
                self.confirmed(lease, until, sent);
                Ok(())
            }
            LeaseState::Expired => {
                let actions = self.state.lease_lost(LeaseLoss::Expired, self.now());
                self.execute_local(actions);
                Err(anyhow::anyhow!("lease {lease} expired"))
            }
            LeaseState::Failed(why) => Err(anyhow::anyhow!(why)),
        }
    }

    /// Waits `delay` before the next attempt while etcd is away (see [`retry_delay`]); true
    /// when shutdown was asked for.
    async fn wait_for_etcd(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        delay: Duration,
    ) -> bool {
        let retry = Instant::now() + delay;
        let release_at = self.state.release_at().map(|r| self.instant(r));
        loop {
            let actions = self.state.unrenewed(self.now());
            if !actions.is_empty() {
                warn!(
                    "etcd still unreachable; stopping answering before the lease can expire (--on-etcd-loss release)"
                );
                self.execute_local(actions);
            }
            let next = release_at
                .filter(|at| *at > Instant::now())
                .map_or(retry, |at| at.min(retry));
            tokio::select! {
                _ = stopped(shutdown) => return true,
                Some(ev) = self.links.events.recv() => self.local_event(ev),
                _ = tokio::time::sleep_until(next) => {
                    if Instant::now() >= retry {
                        return false;
                    }
                }
            }
        }
    }

    fn local_event(&mut self, ev: LocalEvent) {
        let LocalEvent::ForeignAnnouncement { ip, mac } = ev;
        let (what, actions) = self.state.foreign(ip, self.now());
        match what {
            Foreign::Kept { warn: true } => {
                warn!(%ip, %mac, "another host announced an address this node holds in etcd; still answering");
            }
            Foreign::Yielded => {
                info!(%ip, %mac, reason = "another node announced it while etcd is unreachable", "yield");
                self.metrics.claims_lost.inc();
            }
            Foreign::Kept { warn: false } | Foreign::NotHeld => {}
        }
        self.execute_local(actions);
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
            let names: Vec<String> = usable.iter().map(|i| i.name.clone()).collect();
            info!(interfaces = ?names, "usable interfaces");
            self.state.set_interfaces(names);
            self.interfaces = usable.clone();
            self.links.interfaces_tx.send_replace(usable);
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
        let step = self.settings.keepalive_interval();
        bounded(step, "register", etcd.register(&reg, lease))
            .await
            .inspect_err(|_| self.etcd_error("register"))
    }

    fn etcd_error(&self, op: &'static str) {
        self.metrics
            .etcd_errors
            .get_or_create(&OpLabels { op })
            .inc();
    }

    /// Heartbeat failure detection (`SpeakerState::detect`) on what the heartbeat tasks heard;
    /// when to detect again.
    async fn detect(&mut self, etcd: &mut Etcd, lease: i64) -> anyhow::Result<Instant> {
        let now = self.now();
        let actions = {
            let heard = self
                .links
                .liveness
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.state.detect(now, &heard)
        };
        self.metrics
            .suspected
            .set(i64::try_from(self.state.suspected()).unwrap_or(i64::MAX));
        let interval = Instant::now() + self.settings.heartbeat_interval;
        let next = self
            .state
            .next_detect()
            .map_or(interval, |at| self.instant(at).min(interval));
        self.execute(etcd, lease, actions).await?;
        Ok(next)
    }

    /// Decides about every address, then acts; repeats once when an action changed the view.
    async fn reconcile(&mut self, etcd: &mut Etcd, lease: i64) -> anyhow::Result<()> {
        for _ in 0..2 {
            let actions = self.state.tick(self.now());
            self.log_fence(lease);
            let acts = actions.iter().any(needs_etcd);
            self.execute(etcd, lease, actions).await?;
            if !acts {
                break;
            }
        }
        Ok(())
    }

    /// Carries out `actions` in order.
    async fn execute(
        &mut self,
        etcd: &mut Etcd,
        lease: i64,
        actions: Vec<Action>,
    ) -> anyhow::Result<()> {
        for action in actions {
            if needs_etcd(&action) {
                self.request(etcd, lease, action).await?;
            } else {
                self.effect(action);
            }
        }
        Ok(())
    }

    /// Carries out actions that need no etcd (none of the others come without a session).
    fn execute_local(&mut self, actions: Vec<Action>) {
        for action in actions {
            if needs_etcd(&action) {
                debug!(?action, "no etcd session; not carried out");
            } else {
                self.effect(action);
            }
        }
    }

    /// An action on this process: the responders, the fence, the heartbeats.
    fn effect(&mut self, action: Action) {
        match action {
            Action::Answer(held) => self.publish(held),
            Action::AnswerUntil(until) => {
                let until = until.map(|u| self.instant(u));
                self.links.fence.set_lease_until(until);
            }
            Action::LeaseLost(why) => {
                warn!(reason = %why, "lease lost; no longer answering for any address");
                self.links.ready.store(false, Ordering::Release);
                self.links.fence.close();
                self.links.beat_tx.send_modify(|b| b.lease = None);
                self.metrics.lease_alive.set(0);
            }
            Action::Current(leases) => self
                .links
                .liveness
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set_current(leases),
            other => debug!(action = ?other, "not a local action"),
        }
    }

    /// An action in etcd; what came of it goes back to the state.
    async fn request(&mut self, etcd: &mut Etcd, lease: i64, action: Action) -> anyhow::Result<()> {
        let step = self.settings.keepalive_interval();
        let me = self.settings.node_name.clone();
        match action {
            Action::Claim {
                ip,
                interfaces,
                rank,
            } => self.claim(etcd, lease, ip, interfaces, rank).await?,
            Action::Takeover {
                ip,
                interfaces,
                node,
                lease: from,
                suspicions,
            } => {
                let claim = self.new_claim(interfaces);
                let outcome = bounded(
                    step,
                    "takeover",
                    etcd.take_over(ip, &claim, lease, &node, from, &suspicions),
                )
                .await
                .inspect_err(|_| self.etcd_error("takeover"))?;
                match outcome {
                    etcd::ClaimOutcome::Won { revision } => {
                        let agreeing: Vec<&str> =
                            suspicions.iter().map(|(o, _)| o.as_str()).collect();
                        warn!(%ip, from = %node, ?agreeing, "took the address over from a holder no heartbeat comes from");
                        self.metrics.claims_won.inc();
                        self.metrics.takeovers.inc();
                        self.state.claim_won(ip, claim, revision);
                    }
                    etcd::ClaimOutcome::Lost { current } => {
                        debug!(%ip, from = %node, "takeover refused: the claim or the suspicions changed");
                        skipped(self.state.claim_lost(current));
                    }
                }
            }
            Action::Release { ip, reason } => {
                let deleted = bounded(step, "release", etcd.release(ip, lease))
                    .await
                    .inspect_err(|_| self.etcd_error("release"))?;
                self.state
                    .released(ip, deleted.done.then_some(deleted.revision));
                if deleted.done {
                    info!(%ip, %reason, "release");
                }
            }
            Action::Clear {
                ip,
                revision,
                holder,
            } => {
                let deleted = bounded(step, "clear", etcd.clear_orphan(ip, revision))
                    .await
                    .inspect_err(|_| self.etcd_error("clear"))?;
                if deleted.done {
                    let grace = self.state.config().orphan_grace();
                    warn!(%ip, %holder, ?grace, "cleared a claim that held the address for nobody (no registration, or no lease)");
                    self.state.cleared(ip, deleted.revision);
                }
            }
            Action::Register => self.register(etcd, lease).await?,
            Action::Suspect { node, lease: l } => {
                let silent_for = self.state.config().suspect_after;
                info!(%node, lease = l, ?silent_for, "suspect: no heartbeat");
                bounded(step, "suspect", etcd.suspect(&node, &me, l, lease)).await?;
            }
            Action::Unsuspect { node } => {
                info!(%node, "suspicion withdrawn");
                bounded(step, "unsuspect", etcd.unsuspect(&node, &me)).await?;
            }
            Action::Revoke {
                node,
                lease: l,
                agreeing,
            } => {
                warn!(%node, lease = l, ?agreeing, "ending the lease of a holder no heartbeat comes from");
                match bounded(step, "revoke", etcd.revoke(l)).await {
                    Ok(()) => {
                        self.metrics.leases_revoked.inc();
                    }
                    Err(e) => debug!(%node, error = %e, "could not end the lease (already gone?)"),
                }
            }
            other => self.effect(other),
        }
        Ok(())
    }

    async fn claim(
        &mut self,
        etcd: &mut Etcd,
        lease: i64,
        ip: std::net::IpAddr,
        interfaces: Vec<String>,
        rank: usize,
    ) -> anyhow::Result<()> {
        let claim = self.new_claim(interfaces);
        let step = self.settings.keepalive_interval();
        let outcome = bounded(step, "claim", etcd.claim(ip, &claim, lease))
            .await
            .inspect_err(|_| self.etcd_error("claim"))?;
        match outcome {
            etcd::ClaimOutcome::Won { revision } => {
                info!(%ip, rank, interfaces = ?claim.interfaces, "claim");
                self.metrics.claims_won.inc();
                self.state.claim_won(ip, claim, revision);
            }
            etcd::ClaimOutcome::Lost { current } => {
                debug!(%ip, rank, "another node claimed first");
                self.metrics.claims_lost.inc();
                skipped(self.state.claim_lost(current));
            }
        }
        Ok(())
    }

    /// This node's claim, answering on `interfaces`, written now.
    fn new_claim(&self, interfaces: Vec<String>) -> Claim {
        Claim {
            node: self.settings.node_name.clone(),
            interfaces,
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    fn publish(&self, held: HeldSet) {
        self.metrics
            .held_addresses
            .set(i64::try_from(held.len()).unwrap_or(i64::MAX));
        let announcements = &self.state.world().announcements;
        self.metrics.record_announced(
            &self.settings.node_name,
            held.addresses().map(|ip| {
                let services = announcements.get(ip).map(|a| a.services.as_slice());
                (ip, services.unwrap_or_default())
            }),
        );
        let digest = held_digest(held.addresses());
        self.links.beat_tx.send_if_modified(|b| {
            let changed = b.digest != digest;
            b.digest = digest;
            changed
        });
        self.links.held_tx.send_if_modified(|current| {
            if **current == held {
                false
            } else {
                *current = Arc::new(held);
                true
            }
        });
    }
}

/// Whether an action is a request to etcd.
fn needs_etcd(action: &Action) -> bool {
    matches!(
        action,
        Action::Claim { .. }
            | Action::Takeover { .. }
            | Action::Register
            | Action::Release { .. }
            | Action::Clear { .. }
            | Action::Suspect { .. }
            | Action::Unsuspect { .. }
            | Action::Revoke { .. }
    )
}

/// Logs the keys that could not be read.
fn skipped(unreadable: Vec<Unreadable>) {
    for e in unreadable {
        warn!(error = %e, "skipping an unreadable key");
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
