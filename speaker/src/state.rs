//! The speaker's decisions, with no I/O and no clock of its own: [`SpeakerState`] takes what
//! happened (key changes from etcd, the lease's news, results of its own requests, what the
//! responders and the heartbeats saw) and the time, and answers with [`Action`]s for the
//! controller to carry out. Time is the speaker's own clock, a [`Duration`] since it started
//! (the clock heartbeats are recorded on), so tests drive it with virtual time.
//!
//! ```text
//!  KeyChange ─┐                       ┌─▶ Answer(HeldSet)        ─▶ responders, heartbeat digest
//!  lease news ┼─▶ SpeakerState ─tick─▶┼─▶ Claim / Release / Clear ─▶ etcd transactions
//!  results   ─┤   (View, timers,      ├─▶ Suspect / Unsuspect / Revoke / Register
//!  heartbeats ┘    rebuild)           └─▶ AnswerUntil / LeaseLost / Current ─▶ fence, heartbeats
//! ```
//!
//! When etcd loses the keys the speakers wrote (every key deleted at once, or a new, empty etcd)
//! the state rebuilds them from what it knew: it keeps answering what it answered while etcd
//! shows no other node's claim on it, registers and claims it again first, and leaves what
//! other nodes held to them for a while, so no address moves and none goes dark.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ferrolb_core::election::{self, Idle, Release, Situation, Step};
use ferrolb_core::layout::{Claim, Keys};
use ferrolb_core::liveness::{self, Liveness};
use ferrolb_core::respond::HeldSet;
use ferrolb_core::view::{HeldClaim, KeyChange, Unreadable, View};

use crate::settings::{OnEtcdLoss, Settings};

/// The lease this speaker is on, and how long it lasts unless renewed (as etcd last confirmed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The lease's ID.
    pub id: i64,
    /// When it ends unless renewed, on the speaker's clock.
    pub valid_until: Duration,
}

/// What the decisions depend on from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name.
    pub node: String,
    /// The wait per rank before claiming an unclaimed address.
    pub claim_stagger: Duration,
    /// Whether this speaker sends and hears heartbeats (and so suspects silent holders).
    pub heartbeats: bool,
    /// Silence after which a holder is suspected.
    pub suspect_after: Duration,
    /// How many observers must agree before a suspect's lease is ended.
    pub suspect_quorum: usize,
    /// What to do while etcd cannot be reached.
    pub on_etcd_loss: OnEtcdLoss,
    /// The lease TTL.
    pub ttl: Duration,
}

impl Config {
    /// The decisions' part of the command line.
    pub fn from_settings(s: &Settings) -> Self {
        Config {
            node: s.node_name.clone(),
            claim_stagger: s.claim_stagger,
            heartbeats: s.heartbeats(),
            suspect_after: s.suspect_after(),
            suspect_quorum: s.suspect_quorum,
            on_etcd_loss: s.on_etcd_loss,
            ttl: s.ttl(),
        }
    }

    /// How long a claim may hold an address for nobody before it is cleared: twice the lease
    /// TTL, at least 5 s (a registration may be on its way; a lease may be about to end).
    pub fn orphan_grace(&self) -> Duration {
        (self.ttl * 2).max(Duration::from_secs(5))
    }

    /// With `--on-etcd-loss release`, how long before the lease can have expired answering
    /// stops: a third of the TTL, at most a second.
    fn release_margin(&self) -> Duration {
        (self.ttl / 3).min(Duration::from_secs(1))
    }
}

/// Why the lease is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseLoss {
    /// etcd said so when the speaker came back.
    ExpiredWhileAway,
    /// The keepalive stream said so.
    Expired,
    /// This node's registration vanished: the others ended the lease after hearing no
    /// heartbeat from it (a false suspicion, if it is here to see it).
    Ended,
}

impl fmt::Display for LeaseLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeaseLoss::ExpiredWhileAway => "the lease expired while etcd was away",
            LeaseLoss::Expired => "etcd says the lease has expired",
            LeaseLoss::Ended => "this node's lease was ended in etcd",
        })
    }
}

/// Something for the controller to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer for exactly these addresses from now on (and say so in the heartbeats).
    Answer(HeldSet),
    /// Try to claim `ip` (this node ranks `rank`), answering on `interfaces`; report the
    /// outcome with [`SpeakerState::claim_won`] or [`SpeakerState::claim_lost`].
    Claim {
        /// The address.
        ip: IpAddr,
        /// The interfaces to answer on.
        interfaces: Vec<String>,
        /// This node's rank for it.
        rank: usize,
    },
    /// Delete this node's claim on `ip` (if still on its lease); report with
    /// [`SpeakerState::released`].
    Release {
        /// The address.
        ip: IpAddr,
        /// Why.
        reason: Release,
    },
    /// Delete the claim on `ip` that holds it for nobody, if still at `revision`; report with
    /// [`SpeakerState::cleared`].
    Clear {
        /// The address.
        ip: IpAddr,
        /// The claim's revision.
        revision: i64,
        /// Its holder's name.
        holder: String,
    },
    /// Write this node's registration again, on the current lease: it was deleted with the rest
    /// of the keys (see [`SpeakerState::apply`]).
    Register,
    /// Record in etcd that this node suspects `node` (on `lease`).
    Suspect {
        /// The suspect.
        node: String,
        /// Its lease.
        lease: i64,
    },
    /// Withdraw this node's suspicion of `node`.
    Unsuspect {
        /// The node.
        node: String,
    },
    /// Take `ip` over from `node`, its suspected holder on `lease`: in one transaction that
    /// succeeds only while the claim is still on `lease` and every observer in `suspicions` (name,
    /// and the lease it is on) still suspects `node` on `lease`, replace the claim with this
    /// node's; report with [`SpeakerState::claim_won`] or [`SpeakerState::claim_lost`].
    Takeover {
        /// The address.
        ip: IpAddr,
        /// The interfaces to answer on.
        interfaces: Vec<String>,
        /// The suspected holder.
        node: String,
        /// Its lease, which the claim must still be on.
        lease: i64,
        /// The observers whose suspicions make the quorum, and their leases.
        suspicions: Vec<(String, i64)>,
    },
    /// End `node`'s lease: enough observers agree it is silent, and this node is the one to act.
    Revoke {
        /// The suspect.
        node: String,
        /// Its lease.
        lease: i64,
        /// The observers that agree.
        agreeing: BTreeSet<String>,
    },
    /// Stop answering at this time on the speaker's clock unless told otherwise (`None`: no
    /// deadline), for the answering fence.
    AnswerUntil(Option<Duration>),
    /// The lease is gone: close the fence, stop carrying it in heartbeats; the session ends.
    LeaseLost(LeaseLoss),
    /// The lease each registered node is on now: only heartbeats on it count.
    Current(BTreeMap<String, i64>),
}

/// What became of a foreign announcement of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Foreign {
    /// This node does not answer for it: nothing to do.
    NotHeld,
    /// etcd answers and says the address is ours: keep answering; `warn` says whether to log
    /// it (once a minute per address at most).
    Kept {
        /// Whether to log.
        warn: bool,
    },
    /// etcd is away: the other node may have taken it; this node stops answering for it.
    Yielded,
}

/// etcd lost the keys the speakers wrote while this node's lease was, or may have been, alive:
/// every key under the prefix was deleted at once, or etcd came back as a new, empty store.
/// Nobody took an address from its holder by that (no claim moved; they all went), and the
/// cluster writes the keys again: the reconciler its announcements, each speaker its
/// registration and claims. Until `until`, so that the holders stay where they were and keep
/// answering, this node goes on answering what it answered then while etcd shows no other
/// node's claim on it and claims it again at once, ahead of any stagger; and it leaves each
/// address that another node held then to that node. Etcd still decides: a claim of another
/// node ends the carrying at once, and a claim lost is not answered.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rebuild {
    /// When carrying and waiting end; after that the ordinary rules apply.
    until: Duration,
    /// What this node answered for when the keys went.
    carried: HeldSet,
    /// Who held each address when the keys went.
    holders: BTreeMap<IpAddr, String>,
}

/// The speaker's state: its view of etcd and every timer its decisions need.
#[derive(Debug)]
pub struct SpeakerState {
    config: Config,
    keys: Keys,
    lease: Option<Lease>,
    /// Whether a session with etcd is up (listed and watching).
    connected: bool,
    world: View,
    interfaces: Vec<String>,
    /// What the responders were last told to answer for.
    answering: HeldSet,
    unclaimed_since: HashMap<IpAddr, Duration>,
    /// Since when each address has been claimed for nobody (`election::is_orphaned`).
    orphaned_since: HashMap<IpAddr, Duration>,
    /// Addresses given up after another node announced them while etcd was away.
    yielded: HashSet<IpAddr>,
    /// When a foreign announcement of a held address was last logged, per address.
    foreign_warned: HashMap<IpAddr, Duration>,
    /// Since when each (holder, lease) has been watched for heartbeats.
    watching: HashMap<(String, i64), Duration>,
    /// Leases this node has ended, so it asks once.
    revoked: HashSet<i64>,
    /// Addresses this node tried to take over from a suspect's lease, so it tries once.
    taken_over: HashSet<(IpAddr, i64)>,
    /// When the next watched holder becomes suspect unless it is heard first, or a revocation
    /// is due.
    next_detect: Option<Duration>,
    /// Since when the suspicion of each lease has stood, as this node saw it.
    standing_since: HashMap<i64, Duration>,
    /// Whether a quorum of live observers suspects this node on its lease: it answers nothing
    /// (its successors are about to take its addresses over).
    fenced: bool,
    /// How many holders the last detection suspected.
    suspected: usize,
    next_wake: Option<Duration>,
    /// A rebuild of etcd's keys under way.
    rebuild: Option<Rebuild>,
    /// This node's registration went with the rest of the keys while its lease lives on: write
    /// it again at the next decision.
    reregister: bool,
    /// Until this node's registration is seen again, its absence does not mean its lease ended.
    awaiting_registration: bool,
}

impl SpeakerState {
    /// A speaker with no lease, not connected, answering for nothing.
    pub fn new(config: Config, keys: Keys) -> Self {
        SpeakerState {
            config,
            keys,
            lease: None,
            connected: false,
            world: View::default(),
            interfaces: Vec::new(),
            answering: HeldSet::default(),
            unclaimed_since: HashMap::new(),
            orphaned_since: HashMap::new(),
            yielded: HashSet::new(),
            foreign_warned: HashMap::new(),
            watching: HashMap::new(),
            revoked: HashSet::new(),
            taken_over: HashSet::new(),
            next_detect: None,
            standing_since: HashMap::new(),
            fenced: false,
            suspected: 0,
            next_wake: None,
            rebuild: None,
            reregister: false,
            awaiting_registration: false,
        }
    }

    /// The decisions' settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The lease, if the speaker has one.
    pub fn lease(&self) -> Option<Lease> {
        self.lease
    }

    /// The view of etcd.
    pub fn world(&self) -> &View {
        &self.world
    }

    /// What the responders answer for.
    pub fn answering(&self) -> &HeldSet {
        &self.answering
    }

    /// When [`tick`](Self::tick) next has something to do (a stagger or a grace period ends).
    pub fn next_wake(&self) -> Option<Duration> {
        self.next_wake
    }

    /// How many addresses a rebuild of etcd's keys still carries (answered while etcd shows no
    /// other node's claim on them; see [`apply`](Self::apply) and
    /// [`lease_gone_while_away`](Self::lease_gone_while_away)).
    pub fn carried(&self) -> usize {
        self.rebuild.as_ref().map_or(0, |r| r.carried.len())
    }

    /// How many holders the last [`detect`](Self::detect) suspected.
    pub fn suspected(&self) -> usize {
        self.suspected
    }

    /// When a watched holder becomes suspect unless it is heard before (as the last
    /// [`detect`](Self::detect) saw it): the time to detect again.
    pub fn next_detect(&self) -> Option<Duration> {
        self.next_detect
    }

    /// Whether this node answers nothing because a quorum of live observers suspects it on its
    /// lease (as the last [`tick`](Self::tick) saw it).
    pub fn fenced(&self) -> bool {
        self.fenced
    }

    /// The usable interfaces changed (their names).
    pub fn set_interfaces(&mut self, names: Vec<String>) {
        self.interfaces = names;
    }

    /// With `--on-etcd-loss release`: when answering stops unless the lease is renewed first.
    pub fn release_at(&self) -> Option<Duration> {
        match self.config.on_etcd_loss {
            OnEtcdLoss::Release => self
                .lease
                .map(|l| l.valid_until.saturating_sub(self.config.release_margin())),
            OnEtcdLoss::Hold => None,
        }
    }

    fn answer_until(&self) -> Action {
        Action::AnswerUntil(self.release_at())
    }

    /// A session with etcd is up on the lease last [`renewed`](Self::renewed): etcd listed
    /// `changes`. The view and the stagger timers start again from what this session sees;
    /// yielded addresses may be claimed again.
    pub fn session_started(&mut self, changes: &[KeyChange]) -> (Vec<Action>, Vec<Unreadable>) {
        self.connected = true;
        self.world = View::default();
        self.unclaimed_since.clear();
        self.yielded.clear();
        // The controller registers before it lists.
        self.reregister = false;
        self.awaiting_registration = false;
        let unreadable = self.absorb(changes);
        let actions = vec![
            self.answer_until(),
            Action::Current(self.world.speaker_leases.clone()),
        ];
        (actions, unreadable)
    }

    /// The session with etcd ended (etcd failed); the lease may well be alive.
    pub fn disconnected(&mut self) {
        self.connected = false;
    }

    /// etcd confirmed the lease until `valid_until`.
    pub fn renewed(&mut self, id: i64, valid_until: Duration) -> Vec<Action> {
        self.lease = Some(Lease { id, valid_until });
        vec![self.answer_until()]
    }

    /// The lease is gone, and so are this node's claims: stop answering at once.
    pub fn lease_lost(&mut self, why: LeaseLoss, now: Duration) -> Vec<Action> {
        self.lease = None;
        self.unclaimed_since.clear();
        self.rebuild = None;
        self.reregister = false;
        self.awaiting_registration = false;
        let until = match self.config.on_etcd_loss {
            OnEtcdLoss::Release => Some(now),
            OnEtcdLoss::Hold => None,
        };
        let mut actions = vec![Action::LeaseLost(why), Action::AnswerUntil(until)];
        actions.extend(self.answer(HeldSet::default()));
        actions
    }

    /// etcd answers again and says the lease this node had is gone: it expired while etcd was
    /// away, or etcd lost its data and came back empty. With `--on-etcd-loss release` nothing is
    /// answered by then, and the lease is lost as ever ([`LeaseLoss::ExpiredWhileAway`]). With
    /// `hold`, what this node answers stays answered while etcd shows no other node's claim on
    /// it: a rebuild (see [`Rebuild`]) starts from the view of before, and the next session's
    /// listing decides; an address another node claimed meanwhile stops being answered with that
    /// listing, one it announced stopped being answered already (a yield).
    pub fn lease_gone_while_away(&mut self, now: Duration) -> Vec<Action> {
        match self.config.on_etcd_loss {
            OnEtcdLoss::Release => self.lease_lost(LeaseLoss::ExpiredWhileAway, now),
            OnEtcdLoss::Hold => {
                self.lease = None;
                self.unclaimed_since.clear();
                self.begin_rebuild(now);
                Vec::new()
            }
        }
    }

    /// Starts a rebuild from what this node answers and the claims it knows of now.
    fn begin_rebuild(&mut self, now: Duration) {
        let holders = self
            .world
            .claims
            .iter()
            .map(|(ip, c)| (*ip, c.claim.node.clone()))
            .collect();
        self.rebuild = Some(Rebuild {
            until: now + self.config.orphan_grace(),
            carried: self.answering.clone(),
            holders,
        });
    }

    /// Whether `changes` delete this node's registration in the same request (revision) as a
    /// key that is not on its lease: keys under the prefix were deleted wholesale, not by the
    /// lease ending, which deletes the keys on it and nothing else.
    fn wiped(&self, changes: &[KeyChange]) -> bool {
        let Some(lease) = self.lease else {
            return false;
        };
        let mine = self.keys.speaker(&self.config.node);
        let Some(revision) = changes
            .iter()
            .find(|c| c.value.is_none() && c.key == mine.as_bytes())
            .map(|c| c.revision)
        else {
            return false;
        };
        let claims = self.keys.claims();
        let on_my_lease = |key: &[u8]| {
            key == mine.as_bytes()
                || self.keys.ip_in(&claims, key).is_some_and(|ip| {
                    self.world
                        .claims
                        .get(&ip)
                        .is_some_and(|c| c.lease == lease.id)
                })
                || self
                    .keys
                    .suspect_in(key)
                    .is_some_and(|(_, observer)| observer == self.config.node)
        };
        changes
            .iter()
            .filter(|c| c.value.is_none() && c.revision == revision)
            .any(|c| !on_my_lease(&c.key))
    }

    /// Renewals stalled while etcd still looked reachable, or etcd is away: with
    /// `--on-etcd-loss release`, stop answering once the lease may be about to expire.
    pub fn unrenewed(&mut self, now: Duration) -> Vec<Action> {
        match self.release_at() {
            Some(at) if now >= at => self.answer(HeldSet::default()).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Changes the watch delivered. Unreadable keys are skipped (returned for the log).
    pub fn apply(
        &mut self,
        changes: &[KeyChange],
        now: Duration,
    ) -> (Vec<Action>, Vec<Unreadable>) {
        let before = self.world.speaker_leases.clone();
        if self.wiped(changes) {
            // The lease lives on (its end deletes only its own keys): register again and
            // rebuild from what was known just before.
            self.begin_rebuild(now);
            self.reregister = true;
            self.awaiting_registration = true;
        }
        let unreadable = self.absorb(changes);
        if let Some(last) = changes.iter().map(|c| c.revision).max() {
            self.world.watched_to(last);
        }
        let mut actions = Vec::new();
        if self.world.speaker_leases != before {
            // Heartbeats of a node count only while it is registered: one whose registration
            // goes and comes back (the keys deleted wholesale) is watched afresh, with a full
            // period to be heard, as a newcomer is.
            let current = &self.world.speaker_leases;
            self.watching
                .retain(|(node, l), _| current.get(node) == Some(l));
            actions.push(Action::Current(self.world.speaker_leases.clone()));
        }
        // Reading a standing suspicion of itself, a holder stops answering there and then,
        // before it asks etcd anything: its successors may take its addresses over next.
        if let Some(lease) = self.lease
            && self.suspected_by_quorum(lease.id)
        {
            self.fenced = true;
            actions.extend(self.answer(HeldSet::default()));
        }
        let registered = self.world.speakers.contains_key(&self.config.node);
        self.awaiting_registration &= !registered;
        // The registration lives on the lease: gone means the lease was ended.
        if self.lease.is_some() && !registered && !self.awaiting_registration {
            actions.extend(self.lease_lost(LeaseLoss::Ended, now));
        }
        (actions, unreadable)
    }

    fn absorb(&mut self, changes: &[KeyChange]) -> Vec<Unreadable> {
        changes
            .iter()
            .filter_map(|c| self.world.apply(&self.keys, c).err())
            .collect()
    }

    /// This node's claim on `ip` was written at `revision`.
    pub fn claim_won(&mut self, ip: IpAddr, claim: Claim, revision: i64) {
        if let Some(lease) = self.lease {
            let held = HeldClaim {
                claim,
                lease: lease.id,
                revision,
            };
            self.world.claims.insert(ip, held);
        }
    }

    /// Another claim won; `current` is it as the transaction read it.
    pub fn claim_lost(&mut self, current: Option<KeyChange>) -> Vec<Unreadable> {
        self.absorb(current.as_slice())
    }

    /// This node asked to delete its claim on `ip`: `deleted` at that revision, or it was no
    /// longer on this node's lease. Either way the claim is no longer this node's.
    pub fn released(&mut self, ip: IpAddr, deleted: Option<i64>) {
        match deleted {
            Some(revision) => self.world.deleted(ip, revision),
            None => {
                self.world.claims.remove(&ip);
            }
        }
    }

    /// The orphaned claim on `ip` was deleted at `revision`.
    pub fn cleared(&mut self, ip: IpAddr, revision: i64) {
        self.world.deleted(ip, revision);
        self.orphaned_since.remove(&ip);
    }

    /// Another MAC announced `ip` (a gratuitous ARP or an override NA).
    pub fn foreign(&mut self, ip: IpAddr, now: Duration) -> (Foreign, Vec<Action>) {
        if !self.answering.holds(ip) {
            return (Foreign::NotHeld, Vec::new());
        }
        let carried = self.rebuild.as_ref().is_some_and(|r| r.carried.holds(ip));
        if self.connected && !carried {
            // etcd decides while it answers: our claim stands; the other host is wrong.
            let quiet = self
                .foreign_warned
                .get(&ip)
                .is_some_and(|t| now.saturating_sub(*t) < Duration::from_secs(60));
            if !quiet {
                self.foreign_warned.insert(ip, now);
            }
            return (Foreign::Kept { warn: !quiet }, Vec::new());
        }
        let mut held = self.answering.clone();
        held.release(ip);
        self.yielded.insert(ip);
        if let Some(r) = self.rebuild.as_mut() {
            r.carried.release(ip);
        }
        (Foreign::Yielded, self.answer(held).into_iter().collect())
    }

    fn answer(&mut self, held: HeldSet) -> Option<Action> {
        (held != self.answering).then(|| {
            self.answering = held.clone();
            Action::Answer(held)
        })
    }

    /// Decides about every address at `now`: what to answer for, what to claim, release or
    /// clear. Does nothing without a lease or a session (what is answered for then stays as
    /// it is, `--on-etcd-loss` aside).
    pub fn tick(&mut self, now: Duration) -> Vec<Action> {
        let (Some(lease), true) = (self.lease, self.connected) else {
            return Vec::new();
        };
        self.forget_stale_timers();
        if self.rebuild.as_ref().is_some_and(|r| now >= r.until) {
            self.rebuild = None;
        }
        let mut d = Decided::default();
        if std::mem::take(&mut self.reregister) {
            d.actions.push(Action::Register);
        }
        let rank_keys = election::rank_keys(&self.world.announcements);
        let grace = self.config.orphan_grace();
        for (ip, ann) in &self.world.announcements {
            let claim = self.world.claims.get(ip);
            let situation = Situation {
                me: &self.config.node,
                announcement: ann,
                rank_key: rank_keys.get(ip).copied().unwrap_or(*ip),
                speakers: &self.world.speakers,
                my_interfaces: &self.interfaces,
                claim: claim.map(|c| &c.claim),
            };
            if let Some(c) = claim
                && election::is_orphaned(&c.claim, c.lease, &self.world.speakers)
            {
                let due = *self.orphaned_since.entry(*ip).or_insert(now) + grace;
                d.orphan(*ip, c, &situation, due, now);
                continue;
            }
            let unclaimed_for = match claim {
                None => now.saturating_sub(*self.unclaimed_since.entry(*ip).or_insert(now)),
                Some(_) => Duration::ZERO,
            };
            // A claim under this node's name on an older lease is a leftover that ends with that
            // lease: it is neither ours to answer for nor free to claim.
            let step = match claim {
                Some(c) if c.claim.node == self.config.node && c.lease != lease.id => Step::Idle {
                    reason: Idle::OlderLease,
                },
                None => rebuilt_step(
                    self.rebuild.as_ref(),
                    *ip,
                    &situation,
                    election::decide(&situation, unclaimed_for, self.config.claim_stagger),
                    now,
                ),
                Some(_) => election::decide(&situation, unclaimed_for, self.config.claim_stagger),
            };
            let interfaces = || election::interfaces_for(ann, &self.interfaces);
            d.step(*ip, step, interfaces, self.yielded.contains(ip), now);
        }
        if let Some(r) = self.rebuild.as_mut() {
            carry(
                r,
                &self.world,
                &self.config.node,
                lease.id,
                &self.interfaces,
                &mut d,
            );
            d.wake_at(r.until);
        }
        let carried = self.rebuild.as_ref().map(|r| &r.carried);
        for (ip, c) in self.world.claimed_by(&self.config.node) {
            if c.lease == lease.id
                && !self.world.announcements.contains_key(ip)
                && !carried.is_some_and(|held| held.holds(*ip))
            {
                let reason = Release::NotAnnounced;
                d.actions.push(Action::Release { ip: *ip, reason });
            }
        }
        self.next_wake = d.wake;
        // Suspected by a quorum: the successors take the addresses over without waiting for this
        // node's lease to end, so it stops answering now (it reads the suspicions before any
        // takeover that checks them), and answers again if they are withdrawn first.
        self.fenced = self.suspected_by_quorum(lease.id);
        if self.fenced {
            d.held = HeldSet::default();
        }
        // Stop answering for what is released before releasing it.
        let mut out: Vec<Action> = self.answer(d.held).into_iter().collect();
        out.extend(d.actions);
        out
    }

    fn forget_stale_timers(&mut self) {
        let world = &self.world;
        self.unclaimed_since
            .retain(|ip, _| world.announcements.contains_key(ip) && !world.claims.contains_key(ip));
        self.orphaned_since.retain(|ip, _| {
            world
                .claims
                .get(ip)
                .is_some_and(|c| election::is_orphaned(&c.claim, c.lease, &world.speakers))
        });
    }

    /// Heartbeat failure detection at `now`, from what the heartbeats recorded in `heard`:
    /// suspects the holders of addresses this node may answer for that have gone unheard for
    /// `suspect_after`, records and withdraws its suspicions, and ends a suspect's lease when
    /// enough live speakers agree and this node is the one to act (`ferrolb_core::liveness`).
    pub fn detect(&mut self, now: Duration, heard: &Liveness) -> Vec<Action> {
        if !self.config.heartbeats || self.lease.is_none() || !self.connected {
            return Vec::new();
        }
        let me = self.config.node.clone();
        let mut holders = self.watched_holders();
        // A suspect stays watched until it is heard again or its lease ends, also once its
        // addresses were taken over: the suspicion stands for the revocation.
        for (node, obs) in &self.world.suspects {
            if let Some(l) = obs.get(&me)
                && self.world.speaker_leases.get(node) == Some(l)
            {
                holders.entry(node.clone()).or_insert(*l);
            }
        }
        self.watching
            .retain(|(node, l), _| holders.get(node) == Some(l));
        let mut suspected: BTreeMap<String, i64> = BTreeMap::new();
        for (node, l) in &holders {
            let since = *self.watching.entry((node.clone(), *l)).or_insert(now);
            let last = heard.last_heard(node, *l);
            if liveness::is_suspect(last, since, now, self.config.suspect_after) {
                suspected.insert(node.clone(), *l);
            }
        }
        self.suspected = suspected.len();
        self.next_detect = holders
            .iter()
            .filter(|(node, _)| !suspected.contains_key(*node))
            .filter_map(|(node, l)| {
                let since = self.watching.get(&(node.clone(), *l))?;
                let from = heard.last_heard(node, *l).map_or(*since, |h| h.max(*since));
                Some(from + self.config.suspect_after)
            })
            .min();
        let mine: BTreeMap<String, i64> = self
            .world
            .suspects
            .iter()
            .filter_map(|(n, obs)| obs.get(&me).map(|l| (n.clone(), *l)))
            .collect();
        let mut actions: Vec<Action> = suspected
            .iter()
            .filter(|(node, l)| mine.get(*node) != Some(l))
            .map(|(node, l)| Action::Suspect {
                node: node.clone(),
                lease: *l,
            })
            .collect();
        actions.extend(
            mine.keys()
                .filter(|n| !suspected.contains_key(*n))
                .map(|n| Action::Unsuspect { node: n.clone() }),
        );
        let live_leases: HashSet<i64> = self.world.speaker_leases.values().copied().collect();
        self.taken_over.retain(|(_, l)| live_leases.contains(l));
        let suspected_leases: HashSet<i64> = suspected.values().copied().collect();
        self.standing_since
            .retain(|l, _| suspected_leases.contains(l));
        for (node, l) in suspected {
            actions.extend(self.standing_suspicion(node, l, now));
        }
        actions
    }

    /// The observers that suspect `node` on `lease`, as etcd shows it.
    fn suspecting(&self, node: &str, lease: i64) -> BTreeSet<String> {
        self.world
            .suspects
            .get(node)
            .map_or_else(BTreeSet::new, |obs| {
                obs.iter()
                    .filter(|(_, sl)| **sl == lease)
                    .map(|(o, _)| o.clone())
                    .collect()
            })
    }

    /// The live speakers: those registered.
    fn live(&self) -> BTreeSet<String> {
        self.world.speakers.keys().cloned().collect()
    }

    /// Whether a quorum of live observers suspects this node on `lease`, as etcd shows it.
    fn suspected_by_quorum(&self, lease: i64) -> bool {
        let me = &self.config.node;
        let agreeing = self.suspecting(me, lease);
        liveness::standing(me, &agreeing, &self.live(), self.config.suspect_quorum).is_some()
    }

    /// Once enough observers (this one included) suspect `node` on `lease`: takes over each of
    /// its addresses this node is the successor for, once per address and lease, and ends the
    /// lease if this node is the one to act, once per lease. The takeovers come first: they
    /// put the addresses on this node's lease before the revocation deletes the old claims.
    fn standing_suspicion(&mut self, node: String, lease: i64, now: Duration) -> Vec<Action> {
        let me = self.config.node.clone();
        let mut agreeing = self.suspecting(&node, lease);
        agreeing.insert(me.clone());
        let live = self.live();
        let quorum = self.config.suspect_quorum;
        let Some(votes) = liveness::standing(&node, &agreeing, &live, quorum) else {
            self.standing_since.remove(&lease);
            return Vec::new();
        };
        let mut actions = Vec::new();
        if let Some(my_lease) = self.lease.map(|l| l.id) {
            let suspicions: Vec<(String, i64)> = votes
                .iter()
                .filter_map(|o| {
                    let l = if *o == me {
                        Some(my_lease)
                    } else {
                        self.world.speaker_leases.get(*o).copied()
                    };
                    l.map(|l| (o.to_string(), l))
                })
                .collect();
            let rank_keys = election::rank_keys(&self.world.announcements);
            for (ip, c) in &self.world.claims {
                if c.claim.node != node || c.lease != lease {
                    continue;
                }
                let Some(ann) = self.world.announcements.get(ip) else {
                    continue;
                };
                let situation = Situation {
                    me: &me,
                    announcement: ann,
                    rank_key: rank_keys.get(ip).copied().unwrap_or(*ip),
                    speakers: &self.world.speakers,
                    my_interfaces: &self.interfaces,
                    claim: Some(&c.claim),
                };
                if election::takes_over(&situation, &node) && self.taken_over.insert((*ip, lease)) {
                    actions.push(Action::Takeover {
                        ip: *ip,
                        interfaces: election::interfaces_for(ann, &self.interfaces),
                        node: node.clone(),
                        lease,
                        suspicions: suspicions.clone(),
                    });
                }
            }
        }
        // The revoker ends the lease once no claim is left on it for a successor to take
        // over (its own takeovers, if any, go first in this batch), or once the suspicion has
        // stood for the revocation grace (a successor that does not act): revoking earlier
        // would delete claims under the successors' takeovers and send them the slower way.
        let since = *self.standing_since.entry(lease).or_insert(now);
        let due = since + self.revocation_grace();
        let taken = |ip: &IpAddr| self.taken_over.contains(&(*ip, lease));
        let left = self
            .world
            .claims
            .iter()
            .any(|(ip, c)| c.lease == lease && !taken(ip));
        let revoker = liveness::revoker(&node, &agreeing, &live, quorum) == Some(me.as_str());
        if revoker && !self.revoked.contains(&lease) {
            if left && now < due {
                self.next_detect = Some(self.next_detect.map_or(due, |d| d.min(due)));
            } else {
                self.revoked.insert(lease);
                actions.push(Action::Revoke {
                    node,
                    lease,
                    agreeing,
                });
            }
        }
        actions
    }

    /// How long a standing suspicion waits for the takeovers before the lease is ended anyway:
    /// `--suspect-after`, at least 100 ms.
    fn revocation_grace(&self) -> Duration {
        self.config.suspect_after.max(Duration::from_millis(100))
    }

    /// The holders this node watches: other nodes, with heartbeats, holding addresses this node
    /// may answer for.
    fn watched_holders(&self) -> BTreeMap<String, i64> {
        let me = &self.config.node;
        let mut holders = BTreeMap::new();
        for (ip, c) in &self.world.claims {
            let Some(ann) = self.world.announcements.get(ip) else {
                continue;
            };
            let heartbeats = self
                .world
                .speakers
                .get(&c.claim.node)
                .is_some_and(|r| r.heartbeats);
            let eligible = ann.nodes.is_empty() || ann.nodes.contains(me);
            if &c.claim.node != me && heartbeats && eligible {
                holders.insert(c.claim.node.clone(), c.lease);
            }
        }
        holders
    }
}

/// The election's `step` for an unclaimed address during a rebuild: what this node carries it
/// claims at once; what another node held before the keys went is left to that node until the
/// rebuild ends (unless the announcement no longer lists it).
fn rebuilt_step(
    rebuild: Option<&Rebuild>,
    ip: IpAddr,
    s: &Situation<'_>,
    step: Step,
    now: Duration,
) -> Step {
    let Some(r) = rebuild else {
        return step;
    };
    let listed = |node: &str| {
        s.announcement.nodes.is_empty() || s.announcement.nodes.iter().any(|n| n == node)
    };
    match step {
        Step::Claim { .. } | Step::Wait { .. } if r.carried.holds(ip) => Step::Claim { rank: 0 },
        Step::Claim { rank } | Step::Wait { rank, .. }
            if r.holders
                .get(&ip)
                .is_some_and(|h| h.as_str() != s.me && listed(h)) =>
        {
            Step::Wait {
                rank,
                remaining: r.until.saturating_sub(now),
            }
        }
        other => other,
    }
}

/// What a rebuild still carries after the election decided about the announced addresses (in
/// `d`): an address stays carried, and answered, while etcd shows no claim on it (announced:
/// while this node claims it, so while it may answer; not announced yet: claimed again here
/// at once, on the interfaces it was answered on) or shows this node's own claim while the
/// announcement has not come back. Another node's claim ends the carrying at once; so does the
/// announcement returning to this node's claim, since the ordinary rules then decide.
fn carry(
    r: &mut Rebuild,
    world: &View,
    me: &str,
    lease: i64,
    my_interfaces: &[String],
    d: &mut Decided,
) {
    let mut kept = HeldSet::default();
    for ip in r.carried.addresses() {
        let announced = world.announcements.get(ip);
        let interfaces = match (world.claims.get(ip), announced) {
            (Some(c), _) if c.claim.node != me || c.lease != lease => continue,
            (Some(_), Some(_)) => continue,
            (Some(_), None) => r.carried.interfaces(*ip).map(str::to_string).collect(),
            (None, Some(ann)) => {
                let claimed = d
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Claim { ip: i, .. } if i == ip));
                if !claimed {
                    continue;
                }
                election::interfaces_for(ann, my_interfaces)
            }
            (None, None) => {
                let interfaces: Vec<String> =
                    r.carried.interfaces(*ip).map(str::to_string).collect();
                d.actions.push(Action::Claim {
                    ip: *ip,
                    interfaces: interfaces.clone(),
                    rank: 0,
                });
                interfaces
            }
        };
        d.held.hold(*ip, interfaces.iter().cloned());
        kept.hold(*ip, interfaces);
    }
    r.carried = kept;
}

/// What one [`SpeakerState::tick`] decided so far.
#[derive(Debug, Default)]
struct Decided {
    held: HeldSet,
    actions: Vec<Action>,
    wake: Option<Duration>,
}

impl Decided {
    fn wake_at(&mut self, at: Duration) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    /// A claim that holds `ip` for nobody: cleared once `due`, by the one the situation says.
    fn orphan(
        &mut self,
        ip: IpAddr,
        c: &HeldClaim,
        s: &Situation<'_>,
        due: Duration,
        now: Duration,
    ) {
        if now < due {
            self.wake_at(due);
        } else if election::clears_orphan(s) {
            self.actions.push(Action::Clear {
                ip,
                revision: c.revision,
                holder: c.claim.node.clone(),
            });
        }
    }

    /// The election's step for `ip`; `interfaces` are those to answer on, `yielded` whether it
    /// was given up to another node's announcement while etcd was away.
    fn step(
        &mut self,
        ip: IpAddr,
        step: Step,
        interfaces: impl FnOnce() -> Vec<String>,
        yielded: bool,
        now: Duration,
    ) {
        match step {
            Step::Claim { rank } => self.actions.push(Action::Claim {
                ip,
                interfaces: interfaces(),
                rank,
            }),
            Step::Wait { remaining, .. } => self.wake_at(now + remaining),
            Step::Hold if !yielded => self.held.hold(ip, interfaces()),
            Step::Release { reason } => self.actions.push(Action::Release { ip, reason }),
            Step::Hold | Step::Idle { .. } => {}
        }
    }
}
