//! Noticing a dead holder on the LAN, and deciding who ends its lease: pure logic on virtual time
//! (a `Duration` since any fixed start), so every rule is tested without a network.
//!
//! Each speaker hears the others' heartbeats ([`crate::wire::heartbeat`]). A holder of an address
//! this speaker could take over, silent for `suspect_after`, is suspected: the speaker records
//! the suspicion in etcd. When enough live observers agree ([`revoker`]), the first of them ends
//! the suspect's lease, and the ordinary claim path moves its addresses. Heartbeats only shorten
//! detection: claims on leases still decide who answers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::wire::heartbeat::HeartbeatRepr;

/// The last heartbeat heard from one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Heard {
    lease: i64,
    seq: u64,
    at: Duration,
}

/// What a speaker has heard from the others.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    heard: BTreeMap<String, Heard>,
}

impl Liveness {
    /// Records a heartbeat heard at `at`. A heartbeat that repeats or goes back on a sequence
    /// number already heard for the same lease is ignored (a replay): false.
    pub fn heard(&mut self, hb: &HeartbeatRepr, at: Duration) -> bool {
        if let Some(h) = self.heard.get(&hb.node)
            && h.lease == hb.lease
            && hb.seq <= h.seq
        {
            return false;
        }
        self.heard.insert(
            hb.node.clone(),
            Heard {
                lease: hb.lease,
                seq: hb.seq,
                at,
            },
        );
        true
    }

    /// When `node` was last heard on `lease`.
    pub fn last_heard(&self, node: &str, lease: i64) -> Option<Duration> {
        self.heard
            .get(node)
            .filter(|h| h.lease == lease)
            .map(|h| h.at)
    }

    /// Forgets the nodes `keep` rejects.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.heard.retain(|n, _| keep(n));
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

/// Who ends `suspect`'s lease, if anyone yet. The observers are the live speakers other than the
/// suspect; the suspicion stands once `agreeing` observers reach `quorum`, or all observers when
/// there are fewer than that. The revoker is then the first agreeing observer by name, so exactly
/// one acts however many agree.
pub fn revoker<'a>(
    suspect: &str,
    agreeing: &'a BTreeSet<String>,
    live: &BTreeSet<String>,
    quorum: usize,
) -> Option<&'a str> {
    let observers = live.iter().filter(|n| *n != suspect).count();
    let votes: Vec<&'a String> = agreeing
        .iter()
        .filter(|n| *n != suspect && live.contains(*n))
        .collect();
    let needed = quorum.min(observers).max(1);
    (votes.len() >= needed).then(|| votes[0].as_str())
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

    #[test]
    fn a_holder_heard_every_interval_is_never_suspected() {
        let mut l = Liveness::default();
        for k in 0..100u64 {
            let now = MS * (100 * u32::try_from(k).expect("small"));
            assert!(l.heard(&hb("a", 7, k), now));
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
        l.heard(&hb("a", 7, 1), 1000 * MS);
        let last = l.last_heard("a", 7);
        assert!(!is_suspect(last, Duration::ZERO, 1299 * MS, 300 * MS));
        assert!(is_suspect(last, Duration::ZERO, 1300 * MS, 300 * MS));
    }

    #[test]
    fn a_new_lease_is_a_new_holder_and_replays_are_ignored() {
        let mut l = Liveness::default();
        assert!(l.heard(&hb("a", 7, 5), 100 * MS));
        assert!(!l.heard(&hb("a", 7, 5), 200 * MS), "a repeat");
        assert!(!l.heard(&hb("a", 7, 4), 200 * MS), "going back");
        assert_eq!(l.last_heard("a", 7), Some(100 * MS));
        // The node came back on another lease: its old lease is no longer heard.
        assert!(l.heard(&hb("a", 9, 1), 300 * MS));
        assert_eq!(l.last_heard("a", 7), None);
        assert!(is_suspect(
            l.last_heard("a", 7),
            Duration::ZERO,
            400 * MS,
            300 * MS
        ));
        l.retain(|n| n != "a");
        assert_eq!(l.last_heard("a", 9), None);
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
    fn exactly_one_observer_revokes_whoever_computes_it() {
        let live = set(&["a", "b", "c"]);
        let agreeing = set(&["b", "c"]);
        let picks: BTreeSet<&str> = ["b", "c"]
            .iter()
            .filter_map(|_| revoker("a", &agreeing, &live, 2))
            .collect();
        assert_eq!(picks, BTreeSet::from(["b"]));
    }
}
