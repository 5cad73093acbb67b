//! The middle tier: the speaker's state machine (`SpeakerState`) driven through scripted event
//! sequences with virtual time, against a model of etcd's key space (revisions, leases,
//! transactions, an ordered watch that each speaker reads at its own pace). No root, no network,
//! no etcd process: what is tested is the decisions, and the actions they ask for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ferrolb_core::layout::{
    self, Announcement, Claim, InterfaceInfo, Keys, Registration, Suspicion,
};
use ferrolb_core::liveness::Liveness;
use ferrolb_core::view::KeyChange;
use ferrolb_core::wire::heartbeat::HeartbeatRepr;
use ferrolb_speaker::settings::OnEtcdLoss;
use ferrolb_speaker::state::{Action, Config, Foreign, LeaseLoss, SpeakerState};
use proptest::prelude::*;

const PREFIX: &str = "/ferrolb";
const TTL: Duration = Duration::from_secs(3);
const STAGGER: Duration = Duration::from_millis(100);
const SUSPECT_AFTER: Duration = Duration::from_millis(300);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([10, 250, 0, n])
}

fn keys() -> Keys {
    Keys::new(PREFIX)
}

fn config(node: &str, on_etcd_loss: OnEtcdLoss) -> Config {
    Config {
        node: node.to_string(),
        claim_stagger: STAGGER,
        heartbeats: true,
        suspect_after: SUSPECT_AFTER,
        suspect_quorum: 2,
        on_etcd_loss,
        ttl: TTL,
    }
}

/// etcd's key space as the speakers see it: one revision counter, keys on leases, and the log
/// of every change in revision order (the watch).
#[derive(Debug, Default)]
struct Model {
    revision: i64,
    kv: BTreeMap<String, (Vec<u8>, i64, i64)>,
    next_lease: i64,
    log: Vec<KeyChange>,
    /// Leases ended: etcd refuses to write on them.
    ended: BTreeSet<i64>,
}

impl Model {
    fn put(&mut self, key: &str, value: Vec<u8>, lease: i64) -> i64 {
        self.revision += 1;
        self.kv
            .insert(key.to_string(), (value.clone(), lease, self.revision));
        self.log.push(KeyChange {
            key: key.as_bytes().to_vec(),
            value: Some((value, lease)),
            revision: self.revision,
        });
        self.revision
    }

    fn delete(&mut self, key: &str) -> Option<i64> {
        self.kv.remove(key)?;
        self.revision += 1;
        self.log.push(KeyChange {
            key: key.as_bytes().to_vec(),
            value: None,
            revision: self.revision,
        });
        Some(self.revision)
    }

    fn grant(&mut self) -> i64 {
        self.next_lease += 1;
        self.next_lease
    }

    /// Ends a lease: every key on it goes, at one revision (as etcd does).
    fn revoke(&mut self, lease: i64) {
        self.ended.insert(lease);
        let gone: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, (_, l, _))| *l == lease)
            .map(|(k, _)| k.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        self.revision += 1;
        for key in gone {
            self.kv.remove(&key);
            self.log.push(KeyChange {
                key: key.into_bytes(),
                value: None,
                revision: self.revision,
            });
        }
    }

    /// Deletes every key at one revision, as `etcdctl del --prefix` does; the number of changes
    /// the watch delivers for it.
    fn wipe(&mut self) -> usize {
        let gone: Vec<String> = std::mem::take(&mut self.kv).into_keys().collect();
        self.revision += 1;
        for key in &gone {
            self.log.push(KeyChange {
                key: key.clone().into_bytes(),
                value: None,
                revision: self.revision,
            });
        }
        gone.len()
    }

    /// A new, empty store, as etcd started again without its data: revisions and leases
    /// start over (lease IDs are never those of before).
    fn empty(after: &Model) -> Model {
        Model {
            next_lease: after.next_lease + 1000,
            ..Model::default()
        }
    }

    fn list(&self) -> Vec<KeyChange> {
        self.kv
            .iter()
            .map(|(k, (v, lease, rev))| KeyChange {
                key: k.as_bytes().to_vec(),
                value: Some((v.clone(), *lease)),
                revision: *rev,
            })
            .collect()
    }

    fn announce(&mut self, ip: IpAddr, nodes: &[&str]) {
        let ann = Announcement {
            ip,
            services: vec!["default/web".into()],
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            interfaces: Vec::new(),
            preferred: BTreeMap::new(),
        };
        self.put(&keys().announcement(ip), layout::encode(&ann), 0);
    }

    fn claim_holder(&self, ip: IpAddr) -> Option<(String, i64)> {
        let (value, lease, _) = self.kv.get(&keys().claim(ip))?;
        let claim: Claim = serde_json::from_slice(value).ok()?;
        Some((claim.node, *lease))
    }
}

/// One speaker: its state machine, how far it has read the watch, and its lease in the model.
struct Speaker {
    name: String,
    state: SpeakerState,
    cursor: usize,
    lease: i64,
    /// Whether its interface is up.
    up: bool,
    /// Every action it was asked to carry out, in order.
    actions: Vec<Action>,
}

impl Speaker {
    /// Starts a session as the controller does: lease, registration, listing.
    fn start(model: &mut Model, name: &str, on_etcd_loss: OnEtcdLoss, now: Duration) -> Self {
        let mut s = Speaker {
            name: name.to_string(),
            state: SpeakerState::new(config(name, on_etcd_loss), keys()),
            cursor: 0,
            lease: 0,
            up: true,
            actions: Vec::new(),
        };
        s.state.set_interfaces(vec!["eth0".into()]);
        s.session(model, now);
        s
    }

    /// A new session: the old lease if it is still registered, or a new one.
    fn session(&mut self, model: &mut Model, now: Duration) {
        if self.state.lease().is_none() {
            self.lease = model.grant();
        }
        let actions = self.state.renewed(self.lease, now + TTL);
        self.actions.extend(actions);
        self.register(model);
        let listing = model.list();
        self.cursor = model.log.len();
        let (actions, unreadable) = self.state.session_started(&listing);
        assert!(unreadable.is_empty(), "{unreadable:?}");
        self.actions.extend(actions);
    }

    /// etcd answers again after an outage (the speaker had been disconnected) and says its lease
    /// is gone; a new session on a new lease follows, as the controller's.
    fn reconnect_lease_gone(&mut self, model: &mut Model, now: Duration) {
        let actions = self.state.lease_gone_while_away(now);
        self.actions.extend(actions);
        self.cursor = 0;
        self.session(model, now);
    }

    /// Writes its registration, with its interface if it is up.
    fn register(&self, model: &mut Model) {
        if model.ended.contains(&self.lease) {
            return;
        }
        let eth0 = InterfaceInfo {
            name: "eth0".into(),
            mac: "02:00:00:00:00:01".into(),
        };
        let reg = Registration {
            node: self.name.clone(),
            labels: BTreeMap::new(),
            interfaces: if self.up { vec![eth0] } else { Vec::new() },
            heartbeats: true,
        };
        model.put(
            &keys().speaker(&self.name),
            layout::encode(&reg),
            self.lease,
        );
    }

    /// Its interface goes or comes back; the controller registers again.
    fn set_up(&mut self, model: &mut Model, up: bool) {
        self.up = up;
        let names = if up {
            vec!["eth0".to_string()]
        } else {
            Vec::new()
        };
        self.state.set_interfaces(names);
        self.register(model);
    }

    /// Reads up to `n` more changes from the watch.
    fn deliver(&mut self, model: &Model, n: usize, now: Duration) -> Vec<Action> {
        let end = self.cursor.saturating_add(n).min(model.log.len());
        let changes = model.log[self.cursor..end].to_vec();
        self.cursor = end;
        let (actions, unreadable) = self.state.apply(&changes, now);
        assert!(unreadable.is_empty(), "{unreadable:?}");
        self.actions.extend(actions.clone());
        actions
    }

    fn catch_up(&mut self, model: &Model, now: Duration) -> Vec<Action> {
        self.deliver(model, usize::MAX, now)
    }

    /// One round of decisions as the controller runs it: decide, act, and once more when an
    /// action went to etcd. Returns the actions.
    fn reconcile(&mut self, model: &mut Model, now: Duration) -> Vec<Action> {
        let mut all = Vec::new();
        for _ in 0..2 {
            let actions = self.state.tick(now);
            let acted = actions.iter().any(|a| !is_local(a));
            self.execute(model, actions.clone());
            all.extend(actions);
            if !acted {
                break;
            }
        }
        all
    }

    fn detect(&mut self, model: &mut Model, now: Duration, heard: &Liveness) -> Vec<Action> {
        let actions = self.state.detect(now, heard);
        self.execute(model, actions.clone());
        actions
    }

    /// Carries out the requests to etcd against the model and reports back, as the
    /// controller's executor does.
    fn execute(&mut self, model: &mut Model, actions: Vec<Action>) {
        let k = keys();
        for action in actions {
            self.actions.push(action.clone());
            let writes = matches!(
                action,
                Action::Claim { .. }
                    | Action::Takeover { .. }
                    | Action::Suspect { .. }
                    | Action::Register
            );
            if writes && model.ended.contains(&self.lease) {
                // etcd refuses a write on an ended lease; the controller's session ends with
                // the error, and the speaker learns of the end from its watch.
                break;
            }
            match action {
                Action::Claim { ip, interfaces, .. } => {
                    let key = k.claim(ip);
                    match model.kv.get(&key) {
                        None => {
                            let claim = Claim {
                                node: self.name.clone(),
                                interfaces,
                                since: String::new(),
                            };
                            let rev = model.put(&key, layout::encode(&claim), self.lease);
                            self.state.claim_won(ip, claim, rev);
                        }
                        Some((value, lease, rev)) => {
                            let current = KeyChange {
                                key: key.clone().into_bytes(),
                                value: Some((value.clone(), *lease)),
                                revision: *rev,
                            };
                            assert!(self.state.claim_lost(Some(current)).is_empty());
                        }
                    }
                }
                Action::Release { ip, .. } => {
                    let key = k.claim(ip);
                    let mine = model.kv.get(&key).is_some_and(|(_, l, _)| *l == self.lease);
                    let deleted = if mine { model.delete(&key) } else { None };
                    self.state.released(ip, deleted);
                }
                Action::Clear { ip, revision, .. } => {
                    let key = k.claim(ip);
                    if model.kv.get(&key).is_some_and(|(_, _, r)| *r == revision)
                        && let Some(rev) = model.delete(&key)
                    {
                        self.state.cleared(ip, rev);
                    }
                }
                Action::Suspect { node, lease } => {
                    let value = layout::encode(&Suspicion { lease });
                    model.put(&k.suspect(&node, &self.name), value, self.lease);
                }
                Action::Unsuspect { node } => {
                    model.delete(&k.suspect(&node, &self.name));
                }
                Action::Takeover {
                    ip,
                    interfaces,
                    node,
                    lease,
                    suspicions,
                } => {
                    let key = k.claim(ip);
                    let suspicion = layout::encode(&Suspicion { lease });
                    let still_suspected = suspicions.iter().all(|(observer, l)| {
                        model
                            .kv
                            .get(&k.suspect(&node, observer))
                            .is_some_and(|(v, sl, _)| *v == suspicion && sl == l)
                    });
                    let on_lease = model.kv.get(&key).is_some_and(|(_, l, _)| *l == lease);
                    if on_lease && still_suspected {
                        let claim = Claim {
                            node: self.name.clone(),
                            interfaces,
                            since: String::new(),
                        };
                        let rev = model.put(&key, layout::encode(&claim), self.lease);
                        self.state.claim_won(ip, claim, rev);
                    } else {
                        let current = model.kv.get(&key).map(|(value, lease, rev)| KeyChange {
                            key: key.clone().into_bytes(),
                            value: Some((value.clone(), *lease)),
                            revision: *rev,
                        });
                        assert!(self.state.claim_lost(current).is_empty());
                    }
                }
                Action::Revoke { lease, .. } => model.revoke(lease),
                Action::Register => self.register(model),
                Action::Answer(_)
                | Action::AnswerUntil(_)
                | Action::LeaseLost(_)
                | Action::Current(_) => {}
            }
        }
    }

    fn holds(&self, ip: IpAddr) -> bool {
        self.state.answering().holds(ip)
    }
}

fn is_local(a: &Action) -> bool {
    matches!(
        a,
        Action::Answer(_) | Action::AnswerUntil(_) | Action::LeaseLost(_) | Action::Current(_)
    )
}

fn claims(actions: &[Action]) -> Vec<IpAddr> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Claim { ip, .. } => Some(*ip),
            _ => None,
        })
        .collect()
}

/// The nodes in rank order for an address that every node may answer for.
fn ranking(nodes: &[&str], address: IpAddr) -> Vec<String> {
    ferrolb_core::election::ranked(nodes.iter().copied(), address)
        .into_iter()
        .map(String::from)
        .collect()
}

/// Two speakers, started in rank order for `address`, both having seen its announcement.
fn pair(model: &mut Model, address: IpAddr) -> (Speaker, Speaker) {
    let order = ranking(&["a", "b"], address);
    let mut first = Speaker::start(model, &order[0], OnEtcdLoss::Hold, ms(0));
    let mut second = Speaker::start(model, &order[1], OnEtcdLoss::Hold, ms(0));
    model.announce(address, &[]);
    first.catch_up(model, ms(0));
    second.catch_up(model, ms(0));
    (first, second)
}

#[test]
fn the_first_ranked_claims_at_once_and_the_second_waits_its_stagger() {
    let mut model = Model::default();
    let (mut first, mut second) = pair(&mut model, ip(1));
    assert!(claims(&second.reconcile(&mut model, ms(0))).is_empty());
    assert_eq!(second.state.next_wake(), Some(STAGGER));
    let actions = first.reconcile(&mut model, ms(0));
    assert_eq!(claims(&actions), vec![ip(1)]);
    assert!(first.holds(ip(1)));
    assert_eq!(
        model.claim_holder(ip(1)).map(|c| c.0),
        Some(first.name.clone())
    );
}

#[test]
fn a_claim_lost_in_etcd_is_learned_from_the_transaction_and_not_answered() {
    let mut model = Model::default();
    let (mut first, mut second) = pair(&mut model, ip(1));
    second.reconcile(&mut model, ms(0));
    first.reconcile(&mut model, ms(0));
    // The second has not yet seen the first's claim when its stagger ends.
    let actions = second.reconcile(&mut model, STAGGER);
    assert_eq!(claims(&actions), vec![ip(1)], "it tries once");
    assert!(!second.holds(ip(1)));
    assert!(claims(&second.reconcile(&mut model, STAGGER + ms(10))).is_empty());
    assert!(first.holds(ip(1)));
}

/// Regression (lab): the speaker's own claim was undone by older watch news of the key (the
/// previous holder's claim and its deletion) that arrived after its transaction had won.
#[test]
fn older_watch_news_does_not_undo_a_claim_won_since() {
    let mut model = Model::default();
    let (mut first, mut second) = pair(&mut model, ip(1));
    second.reconcile(&mut model, ms(0));
    // The first claims and gives the address up again (its interface went away) before the
    // second has read any of it.
    first.reconcile(&mut model, ms(0));
    first.set_up(&mut model, false);
    first.reconcile(&mut model, ms(1));
    assert!(!first.holds(ip(1)));
    let actions = second.reconcile(&mut model, STAGGER);
    assert_eq!(claims(&actions), vec![ip(1)]);
    assert!(second.holds(ip(1)));
    // Now the watch brings the first's claim and its deletion, one change at a time.
    while second.cursor < model.log.len() {
        second.deliver(&model, 1, STAGGER + ms(1));
        second.reconcile(&mut model, STAGGER + ms(1));
        assert!(second.holds(ip(1)), "the claim won stands");
    }
}

/// Found by the property test below: a speaker that released an address (its interface went)
/// and got the interface back read its own older claim from the watch and answered again,
/// while the next node had already claimed the address.
#[test]
fn a_released_claim_read_late_from_the_watch_is_not_answered_again() {
    let mut model = Model::default();
    let (mut first, mut second) = pair(&mut model, ip(1));
    first.reconcile(&mut model, ms(0));
    first.set_up(&mut model, false);
    first.reconcile(&mut model, ms(1));
    second.catch_up(&model, STAGGER);
    second.reconcile(&mut model, STAGGER);
    assert!(second.holds(ip(1)));
    first.set_up(&mut model, true);
    // The first reads its own claim (older than its release) before anything else.
    first.deliver(&model, 1, STAGGER);
    first.reconcile(&mut model, STAGGER);
    assert!(
        !first.holds(ip(1)),
        "a deleted claim came back from stale news"
    );
    first.catch_up(&model, STAGGER);
    first.reconcile(&mut model, STAGGER);
    assert!(!first.holds(ip(1)) && second.holds(ip(1)));
}

#[test]
fn a_claim_of_this_node_on_an_older_lease_is_neither_answered_nor_claimed() {
    let mut model = Model::default();
    let mut a = Speaker::start(&mut model, "a", OnEtcdLoss::Hold, ms(0));
    let old = Claim {
        node: "a".into(),
        interfaces: vec!["eth0".into()],
        since: String::new(),
    };
    let stale = model.grant();
    model.put(&keys().claim(ip(1)), layout::encode(&old), stale);
    model.announce(ip(1), &[]);
    a.catch_up(&model, ms(0));
    let actions = a.reconcile(&mut model, ms(0));
    assert!(claims(&actions).is_empty());
    assert!(!a.holds(ip(1)));
}

/// Regression (lab, false suspicion): the others ended this node's lease; its registration
/// vanished. It stops answering at once and comes back as a newcomer on a new lease.
#[test]
fn a_node_whose_lease_was_ended_stops_answering_at_once_and_claims_again_on_a_new_lease() {
    let mut model = Model::default();
    let mut a = Speaker::start(&mut model, "a", OnEtcdLoss::Hold, ms(0));
    model.announce(ip(1), &[]);
    a.catch_up(&model, ms(0));
    a.reconcile(&mut model, ms(0));
    assert!(a.holds(ip(1)));
    let old = a.lease;
    model.revoke(old);
    let actions = a.catch_up(&model, ms(500));
    assert!(actions.contains(&Action::LeaseLost(LeaseLoss::Ended)));
    assert!(!a.holds(ip(1)), "still answering on an ended lease");
    assert!(a.state.lease().is_none());
    a.state.disconnected();
    a.session(&mut model, ms(600));
    assert_ne!(a.lease, old);
    a.reconcile(&mut model, ms(600));
    assert!(a.holds(ip(1)));
    assert_eq!(model.claim_holder(ip(1)), Some(("a".into(), a.lease)));
}

/// Regression (fault suite, the quorum-loss read): a speaker that finds its lease alive when it
/// comes back keeps its claims: it answers again without claiming anything.
#[test]
fn a_lease_that_survived_an_etcd_outage_keeps_its_claims() {
    let mut model = Model::default();
    let mut a = Speaker::start(&mut model, "a", OnEtcdLoss::Hold, ms(0));
    model.announce(ip(1), &[]);
    a.catch_up(&model, ms(0));
    a.reconcile(&mut model, ms(0));
    let lease = a.lease;
    a.state.disconnected();
    assert!(
        a.state.tick(ms(1000)).is_empty(),
        "no decisions without etcd"
    );
    a.session(&mut model, ms(2000));
    assert_eq!(a.lease, lease);
    let actions = a.reconcile(&mut model, ms(2000));
    assert!(claims(&actions).is_empty());
    assert!(a.holds(ip(1)));
}

#[test]
fn with_hold_an_unreachable_etcd_keeps_answering_until_another_node_announces_the_address() {
    let mut model = Model::default();
    let mut a = Speaker::start(&mut model, "a", OnEtcdLoss::Hold, ms(0));
    model.announce(ip(1), &[]);
    a.catch_up(&model, ms(0));
    a.reconcile(&mut model, ms(0));
    a.state.disconnected();
    assert_eq!(a.state.release_at(), None);
    assert!(a.state.unrenewed(TTL * 10).is_empty());
    assert!(a.holds(ip(1)));
    let (what, actions) = a.state.foreign(ip(1), TTL * 10);
    assert_eq!(what, Foreign::Yielded);
    assert!(matches!(&actions[..], [Action::Answer(h)] if !h.holds(ip(1))));
    // Back with etcd and the lease alive, it answers for it again.
    a.session(&mut model, TTL * 10);
    a.reconcile(&mut model, TTL * 10);
    assert!(a.holds(ip(1)));
}

#[test]
fn with_hold_and_etcd_answering_a_foreign_announcement_changes_nothing() {
    let mut model = Model::default();
    let mut a = Speaker::start(&mut model, "a", OnEtcdLoss::Hold, ms(0));
    model.announce(ip(1), &[]);
    a.catch_up(&model, ms(0));
    a.reconcile(&mut model, ms(0));
    assert_eq!(
        a.state.foreign(ip(1), ms(10)).0,
        Foreign::Kept { warn: true }
    );
    assert_eq!(
        a.state.foreign(ip(1), ms(20)).0,
        Foreign::Kept { warn: false }
    );
    assert_eq!(a.state.foreign(ip(2), ms(20)).0, Foreign::NotHeld);
    assert!(a.holds(ip(1)));
}

#[test]
fn with_release_an_unreachable_etcd_stops_the_answers_before_the_lease_can_expire() {
    let mut model = Model::default();
    let mut a = Speaker::start(&mut model, "a", OnEtcdLoss::Release, ms(0));
    model.announce(ip(1), &[]);
    a.catch_up(&model, ms(0));
    a.reconcile(&mut model, ms(0));
    // The fence's deadline: a second before the lease's end (a third of a 3 s TTL).
    assert!(
        a.actions
            .contains(&Action::AnswerUntil(Some(TTL - ms(1000))))
    );
    a.state.disconnected();
    assert!(a.state.unrenewed(ms(1999)).is_empty());
    assert!(a.holds(ip(1)));
    let actions = a.state.unrenewed(ms(2000));
    assert!(matches!(&actions[..], [Action::Answer(h)] if h.is_empty()));
    // A renewal moves the deadline.
    let actions = a.state.renewed(a.lease, ms(5000));
    assert_eq!(actions, vec![Action::AnswerUntil(Some(ms(4000)))]);
}

/// Two speakers in rank order for ip(1); the second holds it (it came first, and claims are
/// sticky), the first has seen that.
fn second_holds(model: &mut Model) -> (Speaker, Speaker) {
    let order = ranking(&["a", "b"], ip(1));
    let mut second = Speaker::start(model, &order[1], OnEtcdLoss::Hold, ms(0));
    model.announce(ip(1), &[]);
    second.catch_up(model, ms(0));
    second.reconcile(model, ms(0));
    let mut first = Speaker::start(model, &order[0], OnEtcdLoss::Hold, ms(0));
    first.catch_up(model, ms(0));
    second.catch_up(model, ms(0));
    assert!(claims(&first.reconcile(model, ms(0))).is_empty());
    assert!(second.holds(ip(1)) && !first.holds(ip(1)));
    (first, second)
}

/// Regression (fault scenario 14): every key under the prefix deleted at once (`etcdctl del
/// --prefix`) read to each speaker as its lease ended: every holder stopped answering at once,
/// and the addresses went to whoever ranked first when the reconciler announced them again.
#[test]
fn keys_deleted_wholesale_leave_each_address_answered_by_its_holder_throughout() {
    let mut model = Model::default();
    let (mut first, mut second) = second_holds(&mut model);
    let lease = second.lease;
    let n = model.wipe();
    // The reconciler announces the address again before the holder has read the deletion; the
    // first-ranked reads both and leaves the address to its holder.
    model.announce(ip(1), &[]);
    first.catch_up(&model, ms(10));
    assert!(claims(&first.reconcile(&mut model, ms(10))).is_empty());
    assert!(!first.holds(ip(1)));
    let actions = second.deliver(&model, n, ms(10));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::LeaseLost(_))),
        "{actions:?}"
    );
    assert!(second.holds(ip(1)), "the holder went dark");
    assert_eq!(second.state.carried(), 1);
    let actions = second.reconcile(&mut model, ms(10));
    assert_eq!(actions.first(), Some(&Action::Register));
    assert_eq!(claims(&actions), vec![ip(1)], "claimed again at once");
    assert!(second.holds(ip(1)));
    assert_eq!(
        model.claim_holder(ip(1)),
        Some((second.name.clone(), lease)),
        "on the same lease"
    );
    for now in [ms(20), ms(6000), ms(7000)] {
        second.catch_up(&model, now);
        first.catch_up(&model, now);
        second.reconcile(&mut model, now);
        assert!(claims(&first.reconcile(&mut model, now)).is_empty());
        assert!(second.holds(ip(1)) && !first.holds(ip(1)));
    }
    assert_eq!(second.state.carried(), 0, "the ordinary rules again");
    assert_eq!(second.state.lease().map(|l| l.id), Some(lease));
}

/// Regression (fault scenario 14): etcd back as a new, empty store after an outage: each speaker
/// found its lease gone and stopped answering everything at once, and the announcements written
/// again went to whoever ranked first.
#[test]
fn an_etcd_back_empty_leaves_each_address_answered_by_its_holder_throughout() {
    let mut old = Model::default();
    let (mut first, mut second) = second_holds(&mut old);
    first.state.disconnected();
    second.state.disconnected();
    let mut model = Model::empty(&old);
    // The first-ranked is back first, and the reconciler announces the address again: it
    // leaves the address to the holder of before, until that one is back or the rebuild ends.
    first.reconnect_lease_gone(&mut model, ms(1000));
    model.announce(ip(1), &[]);
    first.catch_up(&model, ms(1000));
    assert!(claims(&first.reconcile(&mut model, ms(1000))).is_empty());
    let grace = first.state.config().orphan_grace();
    assert_eq!(first.state.next_wake(), Some(ms(1000) + grace));
    assert!(second.holds(ip(1)), "hold: answering while etcd is away");
    second.reconnect_lease_gone(&mut model, ms(1500));
    assert!(
        second.holds(ip(1)),
        "the holder went dark on finding its lease gone"
    );
    let actions = second.reconcile(&mut model, ms(1500));
    assert_eq!(claims(&actions), vec![ip(1)], "claimed again at once");
    assert!(second.holds(ip(1)));
    assert_eq!(
        model.claim_holder(ip(1)),
        Some((second.name.clone(), second.lease))
    );
    first.catch_up(&model, ms(1600));
    assert!(claims(&first.reconcile(&mut model, ms(1600))).is_empty());
    assert!(!first.holds(ip(1)));
}

#[test]
fn an_address_whose_holder_does_not_come_back_is_claimed_when_the_rebuild_ends() {
    let mut old = Model::default();
    let (mut first, mut second) = second_holds(&mut old);
    first.state.disconnected();
    second.state.disconnected();
    let mut model = Model::empty(&old);
    first.reconnect_lease_gone(&mut model, ms(1000));
    model.announce(ip(1), &[]);
    first.catch_up(&model, ms(1000));
    let end = ms(1000) + first.state.config().orphan_grace();
    assert!(claims(&first.reconcile(&mut model, end - ms(1))).is_empty());
    assert_eq!(claims(&first.reconcile(&mut model, end)), vec![ip(1)]);
    assert!(first.holds(ip(1)));
    // The holder of before, back now, finds the address claimed and stops answering it.
    second.reconnect_lease_gone(&mut model, end + ms(100));
    assert!(claims(&second.reconcile(&mut model, end + ms(100))).is_empty());
    assert!(!second.holds(ip(1)));
}

#[test]
fn with_release_a_lease_gone_while_away_stops_every_answer_at_once() {
    let mut model = Model::default();
    let mut a = Speaker::start(&mut model, "a", OnEtcdLoss::Release, ms(0));
    model.announce(ip(1), &[]);
    a.catch_up(&model, ms(0));
    a.reconcile(&mut model, ms(0));
    a.state.disconnected();
    let actions = a.state.lease_gone_while_away(ms(500));
    assert!(actions.contains(&Action::LeaseLost(LeaseLoss::ExpiredWhileAway)));
    assert!(!a.holds(ip(1)));
    assert_eq!(a.state.carried(), 0);
}

#[test]
fn a_carried_address_not_announced_again_is_released_when_the_rebuild_ends() {
    let mut model = Model::default();
    let mut a = Speaker::start(&mut model, "a", OnEtcdLoss::Hold, ms(0));
    let mut b = Speaker::start(&mut model, "b", OnEtcdLoss::Hold, ms(0));
    model.announce(ip(1), &["a"]);
    a.catch_up(&model, ms(0));
    a.reconcile(&mut model, ms(0));
    model.wipe();
    a.catch_up(&model, ms(100));
    b.catch_up(&model, ms(100));
    assert_eq!(claims(&a.reconcile(&mut model, ms(100))), vec![ip(1)]);
    let end = ms(100) + a.state.config().orphan_grace();
    a.reconcile(&mut model, end - ms(1));
    assert!(a.holds(ip(1)));
    let actions = a.reconcile(&mut model, end);
    assert!(
        actions
            .iter()
            .any(|x| matches!(x, Action::Release { ip: i, .. } if *i == ip(1)))
    );
    assert!(!a.holds(ip(1)));
    assert_eq!(model.claim_holder(ip(1)), None);
}

/// A lease that ends deletes the keys on it and nothing else: that is still the lease lost,
/// even when the others' keys go a moment later.
#[test]
fn only_this_nodes_keys_deleted_at_one_revision_is_still_its_lease_ended() {
    let mut model = Model::default();
    let (_first, mut second) = second_holds(&mut model);
    model.revoke(second.lease);
    model.wipe();
    let actions = second.catch_up(&model, ms(10));
    assert!(actions.contains(&Action::LeaseLost(LeaseLoss::Ended)));
    assert!(!second.holds(ip(1)));
    assert_eq!(second.state.carried(), 0);
}

fn heartbeat(node: &str, lease: i64, seq: u64) -> HeartbeatRepr {
    HeartbeatRepr {
        node: node.into(),
        lease,
        seq,
        digest: [0; 8],
    }
}

/// Three nodes: `holder` holds the address; the two others watch it.
fn trio(model: &mut Model) -> (Speaker, Speaker, Speaker) {
    let mut holder = Speaker::start(model, "a", OnEtcdLoss::Hold, ms(0));
    let mut b = Speaker::start(model, "b", OnEtcdLoss::Hold, ms(0));
    let mut c = Speaker::start(model, "c", OnEtcdLoss::Hold, ms(0));
    model.announce(ip(1), &["a", "b", "c"]);
    holder.catch_up(model, ms(0));
    // Only the holder is eligible at first, so it holds the address whatever the ranking.
    let only_a = Announcement {
        ip: ip(1),
        services: Vec::new(),
        nodes: vec!["a".into()],
        interfaces: Vec::new(),
        preferred: BTreeMap::new(),
    };
    model.put(&keys().announcement(ip(1)), layout::encode(&only_a), 0);
    holder.catch_up(model, ms(0));
    holder.reconcile(model, ms(0));
    assert!(holder.holds(ip(1)));
    model.announce(ip(1), &["a", "b", "c"]);
    for s in [&mut holder, &mut b, &mut c] {
        s.catch_up(model, ms(0));
        s.reconcile(model, ms(0));
    }
    assert!(holder.holds(ip(1)) && !b.holds(ip(1)) && !c.holds(ip(1)));
    (holder, b, c)
}

/// What the heartbeat tasks of `observer` record into, told the current leases.
fn liveness_of(observer: &Speaker) -> Liveness {
    let mut l = Liveness::default();
    l.set_current(observer.state.world().speaker_leases.clone());
    l
}

#[test]
fn a_silent_holder_is_suspected_and_the_suspicion_withdrawn_when_it_is_heard_again() {
    let mut model = Model::default();
    let (holder, mut b, _c) = trio(&mut model);
    let mut heard = liveness_of(&b);
    heard.heard(&heartbeat("a", holder.lease, 1), ms(0), false);
    // The first detection starts watching the holder.
    assert!(b.detect(&mut model, ms(0), &heard).is_empty());
    assert!(b.detect(&mut model, ms(299), &heard).is_empty());
    let actions = b.detect(&mut model, ms(300), &heard);
    assert_eq!(
        actions,
        vec![Action::Suspect {
            node: "a".into(),
            lease: holder.lease
        }]
    );
    b.catch_up(&model, ms(300));
    assert!(
        b.detect(&mut model, ms(310), &heard).is_empty(),
        "recorded once"
    );
    heard.heard(&heartbeat("a", holder.lease, 2), ms(320), false);
    let actions = b.detect(&mut model, ms(330), &heard);
    assert_eq!(actions, vec![Action::Unsuspect { node: "a".into() }]);
}

/// Regression (fault scenario 14): after every key was deleted at once, the holder registered
/// again on its lease within milliseconds; its heartbeats heard meanwhile had not counted (it
/// was not registered), but the observers still watched it since before the deletion and
/// suspected it at once. Two agreed and ended the lease of a live holder.
#[test]
fn a_holder_registered_again_after_its_keys_were_deleted_gets_a_full_period_to_be_heard() {
    let mut model = Model::default();
    let (mut holder, mut b, mut c) = trio(&mut model);
    let mut heard = liveness_of(&b);
    heard.heard(&heartbeat("a", holder.lease, 1), ms(0), false);
    assert!(b.detect(&mut model, ms(0), &heard).is_empty());
    heard.heard(&heartbeat("a", holder.lease, 2), ms(900), false);
    assert!(b.detect(&mut model, ms(900), &heard).is_empty());
    model.wipe();
    for s in [&mut holder, &mut b, &mut c] {
        s.catch_up(&model, ms(1000));
    }
    holder.reconcile(&mut model, ms(1000));
    assert!(holder.holds(ip(1)));
    // The reconciler announces again; b reads it all, its heartbeat record told the leases.
    model.announce(ip(1), &["a", "b", "c"]);
    b.catch_up(&model, ms(1010));
    let mut heard = liveness_of(&b);
    assert!(
        b.detect(&mut model, ms(1010), &heard).is_empty(),
        "suspected before a heartbeat on its lease could count"
    );
    heard.heard(&heartbeat("a", holder.lease, 3), ms(1100), false);
    assert!(b.detect(&mut model, ms(1300), &heard).is_empty());
    // Silent for a full period from then on, it is suspected as ever.
    let actions = b.detect(&mut model, ms(1400), &heard);
    assert!(matches!(&actions[..], [Action::Suspect { node, .. }] if node == "a"));
}

fn is_revoke(a: &Action) -> bool {
    matches!(a, Action::Revoke { .. })
}

fn takeovers(actions: &[Action]) -> Vec<IpAddr> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Takeover { ip, .. } => Some(*ip),
            _ => None,
        })
        .collect()
}

#[test]
fn the_lease_of_a_suspect_is_ended_once_a_quorum_agrees_by_the_first_of_them_only() {
    let mut model = Model::default();
    let (holder, mut b, mut c) = trio(&mut model);
    let heard = liveness_of(&b);
    b.detect(&mut model, ms(0), &heard);
    c.detect(&mut model, ms(0), &heard);
    // b alone suspects: one of two observers is not a quorum of two.
    let actions = b.detect(&mut model, ms(300), &heard);
    assert!(!actions.iter().any(is_revoke));
    assert!(
        takeovers(&actions).is_empty(),
        "no takeover without a quorum"
    );
    // c suspects too, having read b's suspicion: b is the first agreeing observer by name.
    c.catch_up(&model, ms(300));
    let c_acts = c.detect(&mut model, ms(300), &heard);
    assert!(!c_acts.iter().any(is_revoke));
    b.catch_up(&model, ms(310));
    let b_acts = b.detect(&mut model, ms(310), &heard);
    let agreeing: BTreeSet<String> = ["b".to_string(), "c".to_string()].into();
    assert_eq!(
        b_acts.last(),
        Some(&Action::Revoke {
            node: "a".into(),
            lease: holder.lease,
            agreeing
        })
    );
    assert_eq!(b_acts.iter().filter(|a| is_revoke(a)).count(), 1);
    assert!(b.detect(&mut model, ms(320), &heard).is_empty(), "once");
    // The successor (the first in rank after the suspect) took the address over before the
    // lease ended, in its own round, and only it tried.
    let successor = ranking(&["b", "c"], ip(1))[0].clone();
    let (succ_acts, other_acts) = if successor == "b" {
        (&b_acts, &c_acts)
    } else {
        (&c_acts, &b_acts)
    };
    assert_eq!(takeovers(succ_acts), vec![ip(1)]);
    assert!(takeovers(other_acts).is_empty());
    let lease = if successor == "b" { b.lease } else { c.lease };
    assert_eq!(model.claim_holder(ip(1)), Some((successor, lease)));
}

/// Of `trio`: `b` and `c` start watching the holder, hear nothing from it, and each records
/// its suspicion at 300 ms, neither having read the other's. What they heard.
fn both_suspect_the_holder(model: &mut Model, b: &mut Speaker, c: &mut Speaker) -> Liveness {
    let heard = liveness_of(b);
    b.detect(model, ms(0), &heard);
    c.detect(model, ms(0), &heard);
    b.detect(model, ms(300), &heard);
    c.detect(model, ms(300), &heard);
    heard
}

#[test]
fn a_revoker_that_is_not_the_successor_waits_for_the_takeover_or_the_grace() {
    // c is the successor for this address, b the first observer by name (the revoker).
    assert_eq!(ranking(&["b", "c"], ip(1))[0], "c");
    let mut model = Model::default();
    let (_holder, mut b, mut c) = trio(&mut model);
    let heard = both_suspect_the_holder(&mut model, &mut b, &mut c);
    // b reads c's suspicion first: the suspicion stands, but the claim is still on the
    // suspect's lease and c has not taken it over yet: b waits.
    b.catch_up(&model, ms(301));
    let acts = b.detect(&mut model, ms(301), &heard);
    assert!(!acts.iter().any(is_revoke), "{acts:?}");
    assert_eq!(b.state.next_detect(), Some(ms(301) + SUSPECT_AFTER));
    // c takes over; b, reading it, ends the lease at once.
    c.catch_up(&model, ms(302));
    assert_eq!(
        takeovers(&c.detect(&mut model, ms(302), &heard)),
        vec![ip(1)]
    );
    b.catch_up(&model, ms(303));
    let acts = b.detect(&mut model, ms(303), &heard);
    assert!(acts.iter().any(is_revoke), "{acts:?}");
    assert_eq!(model.claim_holder(ip(1)), Some(("c".into(), c.lease)));
    assert!(
        !model.kv.contains_key(&keys().speaker("a")),
        "the suspect's lease ended with its registration"
    );

    // The successor does not act (it died, say): the lease is ended after the grace.
    let mut model = Model::default();
    let (_holder, mut b, mut c) = trio(&mut model);
    let heard = both_suspect_the_holder(&mut model, &mut b, &mut c);
    b.catch_up(&model, ms(301));
    assert!(!b.detect(&mut model, ms(301), &heard).iter().any(is_revoke));
    assert!(!b.detect(&mut model, ms(600), &heard).iter().any(is_revoke));
    assert!(b.detect(&mut model, ms(601), &heard).iter().any(is_revoke));
    assert_eq!(model.claim_holder(ip(1)), None);
}

#[test]
fn a_holder_that_reads_a_quorum_suspecting_it_stops_answering_before_any_takeover() {
    let mut model = Model::default();
    let (mut holder, mut b, mut c) = trio(&mut model);
    // Both observers record their suspicions; neither has read the other's yet, so no
    // takeover has been asked for.
    let heard = both_suspect_the_holder(&mut model, &mut b, &mut c);
    assert_eq!(model.claim_holder(ip(1)).map(|h| h.0), Some("a".into()));
    // The holder is alive (only its heartbeats go missing): reading the suspicions, it stops
    // answering, although its claim still stands.
    holder.catch_up(&model, ms(301));
    holder.reconcile(&mut model, ms(301));
    assert!(!holder.holds(ip(1)));
    assert!(holder.state.fenced());
    assert_eq!(model.claim_holder(ip(1)).map(|h| h.0), Some("a".into()));
    // One observer withdraws: the holder answers again, and a takeover asked for on the
    // old suspicions is refused by etcd. (c is the successor for this address, b the first
    // observer by name, which would end the lease: c is the one left behind.)
    assert_eq!(ranking(&["b", "c"], ip(1))[0], "c");
    b.catch_up(&model, ms(302));
    c.catch_up(&model, ms(302));
    let mut heard_again = liveness_of(&b);
    heard_again.heard(&heartbeat("a", holder.lease, 9), ms(303), false);
    assert_eq!(
        b.detect(&mut model, ms(303), &heard_again),
        vec![Action::Unsuspect { node: "a".into() }]
    );
    // The successor, still behind, asks for the takeover: refused, the claim stays.
    let acts = c.detect(&mut model, ms(304), &heard);
    assert_eq!(takeovers(&acts), vec![ip(1)]);
    assert!(!acts.iter().any(is_revoke));
    assert_eq!(model.claim_holder(ip(1)).map(|h| h.0), Some("a".into()));
    c.reconcile(&mut model, ms(304));
    assert!(!c.holds(ip(1)));
    holder.catch_up(&model, ms(305));
    holder.reconcile(&mut model, ms(305));
    assert!(holder.holds(ip(1)) && !holder.state.fenced());
}

#[test]
fn an_orphaned_claim_is_cleared_after_the_grace_by_the_first_ranked_only() {
    let mut model = Model::default();
    let (mut first, mut second) = pair(&mut model, ip(1));
    let orphan = Claim {
        node: "gone".into(),
        interfaces: Vec::new(),
        since: String::new(),
    };
    model.put(&keys().claim(ip(1)), layout::encode(&orphan), 0);
    first.catch_up(&model, ms(0));
    second.catch_up(&model, ms(0));
    let grace = first.state.config().orphan_grace();
    assert!(first.reconcile(&mut model, ms(0)).is_empty());
    assert_eq!(first.state.next_wake(), Some(grace));
    assert!(
        !second
            .reconcile(&mut model, grace)
            .iter()
            .any(|a| matches!(a, Action::Clear { .. }))
    );
    let actions = first.reconcile(&mut model, grace);
    assert!(actions.iter().any(|a| matches!(a, Action::Clear { .. })));
    assert_eq!(
        claims(&actions),
        vec![ip(1)],
        "cleared, then claimed in the same round"
    );
    first.reconcile(&mut model, grace);
    assert!(first.holds(ip(1)));
}

// ---- the property: at most one speaker answers for an address ----

const NODES: [&str; 3] = ["a", "b", "c"];
const ADDRESSES: [u8; 2] = [1, 2];

#[derive(Clone, Debug)]
enum Event {
    /// Speaker `i` reads up to `n` changes from its watch.
    Deliver(usize, usize),
    /// Time passes, then speaker `i` decides and acts.
    Reconcile(usize, u64),
    /// The announcement of address `a`, for the nodes in the mask (0: every node).
    Announce(usize, u8),
    /// The announcement of address `a` goes.
    Withdraw(usize),
    /// Speaker `i`'s interface goes away or comes back.
    Interfaces(usize, bool),
    /// Speaker `i` stops gracefully: stops answering, then revokes its lease.
    Stop(usize),
    /// Speaker `i` (stopped) starts again with a new lease.
    Start(usize),
    /// Every key is deleted at once; each speaker reads it and decides, as its controller does
    /// on a watch batch.
    Wipe,
    /// Speaker `i`'s heartbeats stop reaching the others (it is alive and reads etcd), or
    /// reach them again.
    Silence(usize, bool),
    /// Time passes, then speaker `i` runs heartbeat detection on what it heard (every speaker
    /// not silenced is heard up to now) and acts, then decides.
    Detect(usize, u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0..3usize, 1..4usize).prop_map(|(i, n)| Event::Deliver(i, n)),
        4 => (0..3usize, 0..150u64).prop_map(|(i, d)| Event::Reconcile(i, d)),
        1 => (0..2usize, 0..8u8).prop_map(|(a, m)| Event::Announce(a, m)),
        1 => (0..2usize).prop_map(Event::Withdraw),
        1 => (0..3usize, any::<bool>()).prop_map(|(i, up)| Event::Interfaces(i, up)),
        1 => (0..3usize).prop_map(Event::Stop),
        1 => (0..3usize).prop_map(Event::Start),
        1 => Just(Event::Wipe),
        1 => (0..3usize, any::<bool>()).prop_map(|(i, quiet)| Event::Silence(i, quiet)),
        3 => (0..3usize, 0..400u64).prop_map(|(i, d)| Event::Detect(i, d)),
    ]
}

/// Events around heartbeats only: holders going unheard and heard again, detection rounds,
/// partial watch reads.
fn heartbeat_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        5 => (0..3usize, 1..3usize).prop_map(|(i, n)| Event::Deliver(i, n)),
        5 => (0..3usize, 0..200u64).prop_map(|(i, d)| Event::Detect(i, d)),
        2 => (0..3usize, any::<bool>()).prop_map(|(i, quiet)| Event::Silence(i, quiet)),
        1 => (0..3usize, 0..50u64).prop_map(|(i, d)| Event::Reconcile(i, d)),
    ]
}

struct Cluster {
    model: Model,
    speakers: Vec<Option<Speaker>>,
    /// Whose heartbeats go unheard.
    silent: [bool; 3],
    /// What each speaker's heartbeat tasks heard.
    heard: Vec<Liveness>,
    now: Duration,
}

impl Cluster {
    fn new() -> Self {
        let mut model = Model::default();
        let speakers = NODES
            .iter()
            .map(|n| Some(Speaker::start(&mut model, n, OnEtcdLoss::Hold, ms(0))))
            .collect();
        Cluster {
            model,
            speakers,
            silent: [false; 3],
            heard: vec![Liveness::default(); 3],
            now: ms(0),
        }
    }

    fn run(&mut self, e: &Event) {
        let now = self.now;
        match *e {
            Event::Deliver(i, n) => {
                if let Some(s) = self.speakers[i].as_mut() {
                    s.deliver(&self.model, n, now);
                    if s.state.lease().is_none() {
                        // Its lease was ended: the controller starts a new session.
                        s.state.disconnected();
                        s.session(&mut self.model, now);
                    }
                }
            }
            Event::Silence(i, quiet) => self.silent[i] = quiet,
            Event::Detect(i, d) => {
                self.now += ms(d);
                self.detect(i);
            }
            Event::Reconcile(i, d) => {
                self.now += ms(d);
                if let Some(s) = self.speakers[i].as_mut() {
                    s.reconcile(&mut self.model, self.now);
                }
            }
            Event::Announce(a, mask) => {
                let nodes: Vec<&str> = (0..3)
                    .filter(|b| mask & (1 << b) != 0)
                    .map(|b| NODES[b])
                    .collect();
                self.model.announce(ip(ADDRESSES[a]), &nodes);
            }
            Event::Withdraw(a) => {
                self.model.delete(&keys().announcement(ip(ADDRESSES[a])));
            }
            Event::Interfaces(i, up) => {
                if let Some(s) = self.speakers[i].as_mut() {
                    s.set_up(&mut self.model, up);
                }
            }
            Event::Stop(i) => {
                if let Some(s) = self.speakers[i].take() {
                    // The controller empties the held set before it revokes.
                    self.model.revoke(s.lease);
                }
            }
            Event::Wipe => {
                // Each has read everything before (what it knows of the holders counts).
                for s in self.speakers.iter_mut().flatten() {
                    s.catch_up(&self.model, now);
                }
                self.model.wipe();
                for s in self.speakers.iter_mut().flatten() {
                    s.catch_up(&self.model, now);
                    if s.state.lease().is_none() {
                        // Only its own keys were there: read as its lease ended.
                        s.state.disconnected();
                        s.session(&mut self.model, now);
                    }
                    s.reconcile(&mut self.model, now);
                }
            }
            Event::Start(i) => {
                if self.speakers[i].is_none() {
                    self.speakers[i] = Some(Speaker::start(
                        &mut self.model,
                        NODES[i],
                        OnEtcdLoss::Hold,
                        now,
                    ));
                }
            }
        }
    }

    /// Speaker `i` hears every speaker that is not silenced, then detects, acts and decides.
    fn detect(&mut self, i: usize) {
        let now = self.now;
        let Some(s) = self.speakers[i].as_mut() else {
            return;
        };
        let heard = &mut self.heard[i];
        heard.set_current(s.state.world().speaker_leases.clone());
        for (j, peer) in NODES.iter().enumerate() {
            if let Some(lease) = s.state.world().speaker_leases.get(*peer)
                && !self.silent[j]
            {
                heard.heard(&heartbeat(peer, *lease, 0), now, false);
            }
        }
        s.detect(&mut self.model, now, heard);
        s.reconcile(&mut self.model, now);
    }

    /// Whether `s` answers for `address` only because it has not yet read what ends that: a
    /// suspicion of it (the quorum's suspicions come before any takeover of its addresses, and
    /// reading them it stops answering), or the end of its lease.
    fn behind(&self, s: &Speaker) -> bool {
        let k = keys();
        let suspicions = format!("{}{}/", k.suspects(), s.name);
        let registration = k.speaker(&s.name);
        self.model.log[s.cursor..].iter().any(|c| {
            c.key.starts_with(suspicions.as_bytes())
                || (c.value.is_none() && c.key == registration.as_bytes())
        })
    }

    fn answering(&self, address: IpAddr) -> Vec<&str> {
        self.speakers
            .iter()
            .flatten()
            .filter(|s| s.holds(address))
            .map(|s| s.name.as_str())
            .collect()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for a in ADDRESSES {
            let answering = self.answering(ip(a));
            // Whoever answers holds the claim in etcd, on its current lease, unless it has not
            // yet read what ended its hold; so two answer only while one of them is behind.
            let holder = self.model.claim_holder(ip(a));
            for s in self.speakers.iter().flatten().filter(|s| s.holds(ip(a))) {
                let holds = holder == Some((s.name.clone(), s.lease));
                prop_assert!(
                    holds || self.behind(s),
                    "{} answered by {answering:?}; {} does not hold it (etcd: {holder:?}) and has read why",
                    ip(a),
                    s.name
                );
            }
        }
        Ok(())
    }

    /// Every speaker reads everything and decides until nothing changes (past any rebuild's end).
    /// Every speaker is heard again.
    fn settle(&mut self) {
        self.silent = [false; 3];
        self.now += config("a", OnEtcdLoss::Hold).orphan_grace();
        for _ in 0..6 {
            self.now += STAGGER * 3;
            for i in 0..NODES.len() {
                let Some(s) = self.speakers[i].as_mut() else {
                    continue;
                };
                s.catch_up(&self.model, self.now);
                if s.state.lease().is_none() {
                    s.state.disconnected();
                    s.session(&mut self.model, self.now);
                }
                self.detect(i);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Both addresses held, then holders go unheard while alive and are taken over from: no
    /// holder answers after it has read the suspicions of it, and whoever else answers holds
    /// the claim.
    #[test]
    fn an_unheard_holder_is_taken_over_from_only_after_it_stopped_answering(
        events in proptest::collection::vec(heartbeat_event(), 1..120)
    ) {
        let mut cluster = Cluster::new();
        for a in ADDRESSES {
            cluster.model.announce(ip(a), &[]);
        }
        cluster.settle();
        prop_assert!(ADDRESSES.iter().all(|a| cluster.answering(ip(*a)).len() == 1));
        for e in &events {
            cluster.run(e);
            cluster.check()?;
        }
        cluster.settle();
        cluster.check()?;
        for a in ADDRESSES {
            prop_assert_eq!(cluster.answering(ip(a)).len(), 1, "{}", ip(a));
        }
    }

    /// From any sequence of events, including holders that go unheard while alive (suspected,
    /// taken over from, their leases ended), whoever answers for an address is the one etcd
    /// says holds it, unless it has not yet read the suspicions of it or the end of its lease
    /// (so no live holder is taken over from without being told first); and once everyone has
    /// caught up and is heard, every announced address some live node may answer for is
    /// answered, by one speaker.
    #[test]
    fn no_address_is_answered_by_two_speakers(events in proptest::collection::vec(event(), 1..80)) {
        let mut cluster = Cluster::new();
        for e in &events {
            cluster.run(e);
            cluster.check()?;
        }
        cluster.settle();
        cluster.check()?;
        for a in ADDRESSES {
            let Some((value, _, _)) = cluster.model.kv.get(&keys().announcement(ip(a))) else {
                continue;
            };
            let ann: Announcement = serde_json::from_slice(value).expect("written by the test");
            let eligible = cluster.speakers.iter().flatten().any(|s| {
                s.up && (ann.nodes.is_empty() || ann.nodes.contains(&s.name))
            });
            prop_assert_eq!(cluster.answering(ip(a)).len(), usize::from(eligible), "{}", ip(a));
        }
    }
}
