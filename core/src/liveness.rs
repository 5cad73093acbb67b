//! Noticing a dead holder on the LAN, and deciding who ends its lease: pure logic on virtual time
//! (a `Duration` since any fixed start), so every rule is tested without a network.
//!
//! Each speaker hears the others' heartbeats ([`crate::wire::heartbeat`]). A holder of an address
//! this speaker could take over, silent for `suspect_after`, is suspected: the speaker records
//! the suspicion in etcd. When enough live observers agree ([`standing`]), the successor of each
//! of the suspect's addresses takes it over in one etcd transaction that checks those
//! suspicions and that the claim is still on the suspect's lease, and the first of them
//! ([`revoker`]) ends the suspect's lease. Heartbeats only shorten detection: claims on leases
//! still decide who answers.
//!
//! What a host on the LAN can do with heartbeats of its own making is bounded here:
//! - Only a heartbeat on the lease that etcd says a node is on now ([`Liveness::set_current`])
//!   counts. A frame naming another lease (an older one, replayed after a restart, or a made-up
//!   one) changes nothing, so it can never replace the view of the current lease.
//! - Signed heartbeats (with `--heartbeat-key-file`) must raise the sequence number: a recorded
//!   frame replayed on the same lease is ignored. Unsigned ones prove nothing about their
//!   sequence number (anyone can write 2^64−1 into one), so it is not checked: every unsigned
//!   heartbeat on the current lease counts as a sign of life.
//!
//! Together: a forged or replayed frame can at most make a node look alive a little longer
//! (delaying a takeover until its lease expires), never make a live node look dead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::wire::heartbeat::HeartbeatRepr;

/// The last heartbeat heard from one node on its current lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Heard {
    lease: i64,
    seq: u64,
    at: Duration,
}

/// What became of one heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hearing {
    /// A sign of life of the node on its current lease.
    Counted,
    /// Signed, on the current lease, but not newer than one already heard: a replay.
    Replay,
    /// Not on the lease etcd says the node is on (an older lease, a made-up one, or a node etcd
    /// does not know).
    NotCurrent,
}

impl Hearing {
    /// The reason, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Hearing::Counted => "counted",
            Hearing::Replay => "replay",
            Hearing::NotCurrent => "not_current_lease",
        }
    }
}

/// What a speaker has heard from the others.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    /// The lease each registered node is on, as etcd says.
    current: BTreeMap<String, i64>,
    heard: BTreeMap<String, Heard>,
}

impl Liveness {
    /// Tells which lease each node is on now (from the registrations in etcd). What was heard
    /// on any other lease, or from nodes no longer listed, is forgotten.
    pub fn set_current(&mut self, leases: BTreeMap<String, i64>) {
        self.heard
            .retain(|node, h| leases.get(node) == Some(&h.lease));
        self.current = leases;
    }

    /// Records a heartbeat heard at `at`; `signed` says whether its signature was checked with
    /// the shared key (a speaker with a key refuses unsigned frames before this).
    pub fn heard(&mut self, hb: &HeartbeatRepr, at: Duration, signed: bool) -> Hearing {
        if self.current.get(&hb.node) != Some(&hb.lease) {
            return Hearing::NotCurrent;
        }
        if let Some(h) = self.heard.get_mut(&hb.node)
            && h.lease == hb.lease
        {
            if signed && hb.seq <= h.seq {
                return Hearing::Replay;
            }
            h.seq = h.seq.max(hb.seq);
            h.at = h.at.max(at);
            return Hearing::Counted;
        }
        self.heard.insert(
            hb.node.clone(),
            Heard {
                lease: hb.lease,
                seq: hb.seq,
                at,
            },
        );
        Hearing::Counted
    }

    /// When `node` was last heard on `lease`.
    pub fn last_heard(&self, node: &str, lease: i64) -> Option<Duration> {
        self.heard
            .get(node)
            .filter(|h| h.lease == lease)
            .map(|h| h.at)
    }
}

/// Whether a holder is suspected at `now`: nothing heard from it on its lease for
/// `suspect_after`, counting from when this speaker started watching it (`watched_since`) if
/// that is later, so that a speaker that just started, or a holder that just claimed, gets a
/// full `suspect_after` to be heard.
pub fn is_suspect(
    last_heard: Option<Duration>,
    watched_since: Duration,
    now: Duration,
    suspect_after: Duration,
) -> bool {
    let from = last_heard.map_or(watched_since, |h| h.max(watched_since));
    now.saturating_sub(from) >= suspect_after
}

/// The suspicion of `suspect` once it stands: the agreeing live observers (other than the
/// suspect), by name, when they reach `quorum`, or all observers when there are fewer than that;
/// `None` before. The observers are the live speakers other than the suspect.
pub fn standing<'a>(
    suspect: &str,
    agreeing: &'a BTreeSet<String>,
    live: &BTreeSet<String>,
    quorum: usize,
) -> Option<Vec<&'a str>> {
    let observers = live.iter().filter(|n| *n != suspect).count();
    let votes: Vec<&'a str> = agreeing
        .iter()
        .filter(|n| *n != suspect && live.contains(*n))
        .map(String::as_str)
        .collect();
    let needed = quorum.min(observers).max(1);
    (votes.len() >= needed).then_some(votes)
}

/// Who ends `suspect`'s lease, if anyone yet: once the suspicion [stands](standing), the first
/// agreeing observer by name, so exactly one acts however many agree.
pub fn revoker<'a>(
    suspect: &str,
    agreeing: &'a BTreeSet<String>,
    live: &BTreeSet<String>,
    quorum: usize,
) -> Option<&'a str> {
    standing(suspect, agreeing, live, quorum).and_then(|votes| votes.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn hb(node: &str, lease: i64, seq: u64) -> HeartbeatRepr {
        HeartbeatRepr {
            node: node.into(),
            lease,
            seq,
            digest: [0; 8],
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn current(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(n, l)| (n.to_string(), *l)).collect()
    }

    #[test]
    fn a_holder_heard_every_interval_is_never_suspected() {
        let mut l = Liveness::default();
        l.set_current(current(&[("a", 7)]));
        for k in 0..100u64 {
            let now = MS * (100 * u32::try_from(k).expect("small"));
            assert_eq!(l.heard(&hb("a", 7, k), now, true), Hearing::Counted);
            assert!(!is_suspect(
                l.last_heard("a", 7),
                Duration::ZERO,
                now + 99 * MS,
                300 * MS
            ));
        }
    }

    #[test]
    fn silence_for_three_intervals_is_suspect_and_not_before() {
        let mut l = Liveness::default();
        l.set_current(current(&[("a", 7)]));
        l.heard(&hb("a", 7, 1), 1000 * MS, false);
        let last = l.last_heard("a", 7);
        assert!(!is_suspect(last, Duration::ZERO, 1299 * MS, 300 * MS));
        assert!(is_suspect(last, Duration::ZERO, 1300 * MS, 300 * MS));
    }

    #[test]
    fn signed_replays_on_the_current_lease_are_ignored() {
        let mut l = Liveness::default();
        l.set_current(current(&[("a", 7)]));
        assert_eq!(l.heard(&hb("a", 7, 5), 100 * MS, true), Hearing::Counted);
        assert_eq!(l.heard(&hb("a", 7, 5), 200 * MS, true), Hearing::Replay);
        assert_eq!(l.heard(&hb("a", 7, 4), 200 * MS, true), Hearing::Replay);
        assert_eq!(l.last_heard("a", 7), Some(100 * MS));
    }

    #[test]
    fn only_the_lease_etcd_knows_counts_and_a_new_one_forgets_the_old() {
        let mut l = Liveness::default();
        l.set_current(current(&[("a", 7)]));
        assert_eq!(l.heard(&hb("a", 7, 1), 100 * MS, true), Hearing::Counted);
        // A frame of another lease (an old one replayed, or made up) does not replace the view
        // of the current one: the holder stays heard.
        assert_eq!(
            l.heard(&hb("a", 6, 99), 150 * MS, true),
            Hearing::NotCurrent
        );
        assert_eq!(l.heard(&hb("a", 8, 1), 150 * MS, true), Hearing::NotCurrent);
        assert_eq!(l.last_heard("a", 7), Some(100 * MS));
        // Nodes etcd does not know are not tracked at all.
        assert_eq!(
            l.heard(&hb("z", 1, 1), 150 * MS, false),
            Hearing::NotCurrent
        );
        assert_eq!(l.last_heard("z", 1), None);
        // The node came back on lease 9: what was heard on 7 is gone, 9 starts afresh.
        l.set_current(current(&[("a", 9)]));
        assert_eq!(l.last_heard("a", 7), None);
        assert_eq!(l.heard(&hb("a", 9, 1), 300 * MS, true), Hearing::Counted);
        assert_eq!(l.last_heard("a", 9), Some(300 * MS));
        l.set_current(BTreeMap::new());
        assert_eq!(l.last_heard("a", 9), None);
    }

    #[test]
    fn an_unsigned_frame_with_the_highest_sequence_number_cannot_silence_a_live_holder() {
        // The outside test's attack: one forged frame in the holder's name, on its lease, with
        // sequence number 2^64-1. Without a key the sequence number proves nothing, so the
        // holder's own later heartbeats still count and it is never suspected.
        let mut l = Liveness::default();
        l.set_current(current(&[("a", 7)]));
        l.heard(&hb("a", 7, 3), 100 * MS, false);
        assert_eq!(
            l.heard(&hb("a", 7, u64::MAX), 150 * MS, false),
            Hearing::Counted
        );
        for k in 4..20u64 {
            let at = MS * (100 * u32::try_from(k).expect("small"));
            assert_eq!(l.heard(&hb("a", 7, k), at, false), Hearing::Counted);
            assert!(!is_suspect(
                l.last_heard("a", 7),
                Duration::ZERO,
                at + 299 * MS,
                300 * MS
            ));
        }
        // A forged frame heard earlier than the last real one does not move the time back.
        assert_eq!(l.heard(&hb("a", 7, 1), 500 * MS, false), Hearing::Counted);
        assert_eq!(l.last_heard("a", 7), Some(1900 * MS));
    }

    #[test]
    fn watching_starts_the_clock_for_a_holder_never_heard() {
        // Started watching at 5 s: not suspect before 5.3 s, whatever came before.
        assert!(!is_suspect(None, 5000 * MS, 5299 * MS, 300 * MS));
        assert!(is_suspect(None, 5000 * MS, 5300 * MS, 300 * MS));
        assert!(!is_suspect(Some(100 * MS), 5000 * MS, 5299 * MS, 300 * MS));
    }

    #[test]
    fn two_of_several_observers_or_all_of_fewer_must_agree() {
        let live = set(&["a", "b", "c", "d"]);
        assert_eq!(revoker("a", &set(&["c"]), &live, 2), None);
        assert_eq!(revoker("a", &set(&["d", "c"]), &live, 2), Some("c"));
        // The suspect's own word and dead observers do not count.
        assert_eq!(revoker("a", &set(&["a", "c"]), &live, 2), None);
        assert_eq!(revoker("a", &set(&["c", "z"]), &live, 2), None);
        // Two nodes: the only other one decides alone.
        assert_eq!(revoker("a", &set(&["b"]), &set(&["a", "b"]), 2), Some("b"));
        // A quorum of 0 still needs one voice.
        assert_eq!(revoker("a", &set(&[]), &live, 0), None);
        // Nobody else alive: nobody revokes.
        assert_eq!(revoker("a", &set(&[]), &set(&["a"]), 2), None);
    }

    #[test]
    fn a_standing_suspicion_names_every_live_agreeing_observer_but_the_suspect() {
        let live = set(&["a", "b", "c", "d"]);
        assert_eq!(standing("a", &set(&["c"]), &live, 2), None);
        assert_eq!(
            standing("a", &set(&["a", "d", "c", "z"]), &live, 2),
            Some(vec!["c", "d"])
        );
        assert_eq!(
            standing("a", &set(&["b", "c", "d"]), &live, 2),
            Some(vec!["b", "c", "d"])
        );
    }

    #[test]
    fn exactly_one_observer_revokes_whoever_computes_it() {
        let live = set(&["a", "b", "c"]);
        let agreeing = set(&["b", "c"]);
        let picks: BTreeSet<&str> = ["b", "c"]
            .iter()
            .filter_map(|_| revoker("a", &agreeing, &live, 2))
            .collect();
        assert_eq!(picks, BTreeSet::from(["b"]));
    }

    mod forged {
        use super::*;
        use proptest::prelude::*;

        /// One frame of an attacker on the LAN: without the key anything unsigned; with it, only
        /// replays of frames the holder signed before (on its old lease 6, or earlier on 7).
        #[derive(Clone, Debug)]
        struct Forged {
            node: &'static str,
            lease: i64,
            seq: u64,
            after_ms: u32,
        }

        fn forged() -> impl Strategy<Value = Forged> {
            (
                prop::sample::select(vec!["a", "b", "z"]),
                prop_oneof![Just(6i64), Just(7i64), Just(8i64), any::<i64>()],
                prop_oneof![Just(u64::MAX), Just(0u64), any::<u64>()],
                0u32..100,
            )
                .prop_map(|(node, lease, seq, after_ms)| Forged {
                    node,
                    lease,
                    seq,
                    after_ms,
                })
        }

        proptest! {
            #[test]
            fn forged_and_replayed_frames_never_make_a_live_holder_suspect(
                attacks in prop::collection::vec(prop::option::of(forged()), 1..60),
                signed in any::<bool>(),
            ) {
                let mut l = Liveness::default();
                l.set_current(current(&[("a", 7), ("b", 3)]));
                let mut sent = 0u64;
                for (k, attack) in attacks.iter().enumerate() {
                    let at = MS * (100 * u32::try_from(k).expect("small"));
                    sent += 1;
                    l.heard(&hb("a", 7, sent), at, signed);
                    if let Some(f) = attack {
                        // With a key, only what the holder signed exists: replays.
                        let (lease, seq) = if signed {
                            (if f.lease == 6 { 6 } else { 7 }, f.seq % sent.max(1))
                        } else {
                            (f.lease, f.seq)
                        };
                        l.heard(&hb(f.node, lease, seq), at + MS * f.after_ms, signed);
                    }
                    prop_assert!(!is_suspect(l.last_heard("a", 7), Duration::ZERO, at + 299 * MS, 300 * MS));
                }
            }
        }
    }
}
