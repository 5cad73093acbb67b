//! Who answers for an address: ranking, claiming, holding and releasing, as pure decisions.
//!
//! Every live speaker that may announce an address ranks the eligible speakers by their
//! preference score (the announcement's `preferred`, from `preferredNodeSelectors`; higher
//! first, absent is 0), then by `sha256("<node>#<ip>")` (MetalLB's hash key and order, so
//! placement matches MetalLB's for the same nodes).
//! The first-ranked tries to claim at once; the one ranked `r` waits `r × stagger` and tries only
//! if the address is still unclaimed. etcd decides: a claim is created only when absent and lives
//! on its holder's lease. Claims are sticky: a better-ranked node that comes back does not take an
//! address from a live holder, and that includes a preferred node (MetalLB re-elects it and moves
//! the address back; ferrolb moves an address only when its holder goes away). The addresses of one Service share a rank key (see [`rank_keys`]),
//! so a dual-stack Service's two addresses land on the same node.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::layout::{Announcement, Claim, Registration};
use crate::net::Family;

/// `sha256("<node>#<key>")`.
pub fn rank_hash(node: &str, key: IpAddr) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update(b"#");
    h.update(key.to_string().as_bytes());
    h.finalize().into()
}

/// `nodes` in rank order for `key`: lowest hash first, then name (a total order).
pub fn ranked<'a>(nodes: impl IntoIterator<Item = &'a str>, key: IpAddr) -> Vec<&'a str> {
    let mut v: Vec<([u8; 32], &str)> = nodes.into_iter().map(|n| (rank_hash(n, key), n)).collect();
    v.sort_unstable();
    v.into_iter().map(|(_, n)| n).collect()
}

/// `nodes` in rank order for `key` with preference scores: highest score first (a node not in
/// `preferred` scores 0), then as [`ranked`] orders them.
pub fn ranked_preferred<'a>(
    nodes: impl IntoIterator<Item = &'a str>,
    key: IpAddr,
    preferred: &BTreeMap<String, u32>,
) -> Vec<&'a str> {
    let mut v: Vec<(std::cmp::Reverse<u32>, [u8; 32], &str)> = nodes
        .into_iter()
        .map(|n| {
            let score = preferred.get(n).copied().unwrap_or(0);
            (std::cmp::Reverse(score), rank_hash(n, key), n)
        })
        .collect();
    v.sort_unstable();
    v.into_iter().map(|(_, _, n)| n).collect()
}

/// The rank key of every announced address: the first address (IPv4 before IPv6, then lowest)
/// among all addresses of the Services it serves. Addresses without Services rank by themselves.
pub fn rank_keys(announcements: &BTreeMap<IpAddr, Announcement>) -> HashMap<IpAddr, IpAddr> {
    let order = |ip: &IpAddr| (Family::of(*ip), *ip);
    let mut first_of_service: HashMap<&str, IpAddr> = HashMap::new();
    for (ip, a) in announcements {
        for s in &a.services {
            first_of_service
                .entry(s.as_str())
                .and_modify(|cur| {
                    if order(ip) < order(cur) {
                        *cur = *ip;
                    }
                })
                .or_insert(*ip);
        }
    }
    announcements
        .iter()
        .map(|(ip, a)| {
            let key = a
                .services
                .iter()
                .filter_map(|s| first_of_service.get(s.as_str()))
                .chain(std::iter::once(ip))
                .min_by_key(|k| order(k))
                .copied()
                .unwrap_or(*ip);
            (*ip, key)
        })
        .collect()
}

/// The interfaces a speaker answers on for an announcement: the announcement's list intersected
/// with the speaker's usable interfaces, or all usable interfaces when the list is empty.
pub fn interfaces_for(announcement: &Announcement, usable: &[String]) -> Vec<String> {
    usable
        .iter()
        .filter(|i| announcement.interfaces.is_empty() || announcement.interfaces.contains(i))
        .cloned()
        .collect()
}

/// What one speaker knows when it decides about one address.
#[derive(Clone, Copy, Debug)]
pub struct Situation<'a> {
    /// This speaker's node name.
    pub me: &'a str,
    /// The announcement.
    pub announcement: &'a Announcement,
    /// The address its rank is computed from (see [`rank_keys`]).
    pub rank_key: IpAddr,
    /// The live speakers (their registrations).
    pub speakers: &'a BTreeMap<String, Registration>,
    /// This speaker's usable interfaces now (fresher than its registration).
    pub my_interfaces: &'a [String],
    /// The current claim, if any.
    pub claim: Option<&'a Claim>,
}

impl Situation<'_> {
    fn may_answer(&self, node: &str, interfaces: &mut dyn Iterator<Item = &str>) -> bool {
        let listed =
            self.announcement.nodes.is_empty() || self.announcement.nodes.iter().any(|n| n == node);
        let mut ifs = interfaces.peekable();
        let has_interface = if self.announcement.interfaces.is_empty() {
            ifs.peek().is_some()
        } else {
            ifs.any(|i| self.announcement.interfaces.iter().any(|a| a == i))
        };
        listed && has_interface
    }

    /// Whether this speaker may answer: listed (or nobody is), and with a usable interface.
    pub fn i_am_eligible(&self) -> bool {
        self.may_answer(self.me, &mut self.my_interfaces.iter().map(String::as_str))
    }

    /// The eligible live speakers in rank order (this speaker judged by its own interfaces):
    /// preference score first, hash second.
    pub fn ranking(&self) -> Vec<&str> {
        let eligible = self.speakers.iter().filter_map(|(node, reg)| {
            let ok = if node == self.me {
                self.i_am_eligible()
            } else {
                self.may_answer(node, &mut reg.interfaces.iter().map(|i| i.name.as_str()))
            };
            ok.then_some(node.as_str())
        });
        ranked_preferred(eligible, self.rank_key, &self.announcement.preferred)
    }
}

/// Whether the claim on an address holds it for nobody: its holder has no registration (it never
/// registered, or wrote the claim on some other lease than its registration's and is gone), or
/// the key is on no lease at all, so it would never end. Such a claim black-holes the address:
/// every speaker respects it and none answers. The caller waits a grace period (a registration
/// may still be on its way) and then has [`clears_orphan`] decide who deletes it.
pub fn is_orphaned(
    claim: &Claim,
    claim_lease: i64,
    speakers: &BTreeMap<String, Registration>,
) -> bool {
    claim_lease == 0 || !speakers.contains_key(&claim.node)
}

/// Whether this speaker is the one to delete an orphaned claim: the first in rank among the
/// eligible live speakers, the one that would claim the address next. (Two speakers that
/// disagree on the ranking for a moment both try; the deletion is guarded by the claim's
/// revision, so a claim written since is never deleted.)
pub fn clears_orphan(s: &Situation<'_>) -> bool {
    s.i_am_eligible() && s.ranking().first() == Some(&s.me)
}

/// Whether this speaker takes the address over from `gone`, its suspected holder: eligible, and
/// the first in rank among the eligible live speakers other than `gone` (the one that would
/// claim it first once `gone`'s claim ends). The takeover is a transaction that succeeds only
/// while the claim is still on `gone`'s lease, so when two speakers disagree on the ranking for
/// a moment, one of them wins and the other learns it from the transaction.
pub fn takes_over(s: &Situation<'_>, gone: &str) -> bool {
    s.i_am_eligible() && s.ranking().into_iter().find(|n| *n != gone) == Some(s.me)
}

/// What a speaker should do about one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Try to claim it now (ranked `rank`, counting from 0).
    Claim {
        /// This speaker's rank.
        rank: usize,
    },
    /// Unclaimed, but a better-ranked speaker goes first: look again after `remaining`.
    Wait {
        /// This speaker's rank.
        rank: usize,
        /// Time left of its stagger.
        remaining: Duration,
    },
    /// It holds the claim and may keep answering.
    Hold,
    /// It holds the claim but may no longer answer: delete the claim so the next node takes over.
    Release {
        /// Why, for logs and events.
        reason: Release,
    },
    /// Nothing to do.
    Idle {
        /// Why, for logs.
        reason: Idle,
    },
}

/// Why a speaker gives up an address it holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Release {
    /// The announcement lists nodes, and this one no longer.
    NotListed,
    /// None of this node's usable interfaces may carry the address.
    NoInterface,
    /// The address is no longer announced.
    NotAnnounced,
}

impl Release {
    /// The reason as a label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Release::NotListed => "not_listed",
            Release::NoInterface => "no_interface",
            Release::NotAnnounced => "not_announced",
        }
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Release::NotListed => "this node is no longer listed for the address",
            Release::NoInterface => "no usable interface for the address",
            Release::NotAnnounced => "the address is no longer announced",
        })
    }
}

/// Why a speaker does nothing about an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Idle {
    /// Another node holds it.
    HeldBy(String),
    /// This node may not answer for it (not listed, or no usable interface).
    NotEligible,
    /// The claim is this node's, but on an older lease: it ends with that lease.
    OlderLease,
}

impl fmt::Display for Idle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Idle::HeldBy(node) => write!(f, "held by {node}"),
            Idle::NotEligible => f.write_str("this node may not answer for the address"),
            Idle::OlderLease => f.write_str("claimed on an older lease of this node"),
        }
    }
}

/// Decides about one address. `unclaimed_for` is how long this speaker has seen it unclaimed.
pub fn decide(s: &Situation<'_>, unclaimed_for: Duration, stagger: Duration) -> Step {
    let eligible = s.i_am_eligible();
    match s.claim {
        Some(c) if c.node == s.me => {
            if eligible {
                Step::Hold
            } else if !s.announcement.nodes.is_empty()
                && !s.announcement.nodes.iter().any(|n| n == s.me)
            {
                Step::Release {
                    reason: Release::NotListed,
                }
            } else {
                Step::Release {
                    reason: Release::NoInterface,
                }
            }
        }
        Some(c) => Step::Idle {
            reason: Idle::HeldBy(c.node.clone()),
        },
        None if !eligible => Step::Idle {
            reason: Idle::NotEligible,
        },
        None => {
            let ranking = s.ranking();
            let rank = ranking
                .iter()
                .position(|n| *n == s.me)
                .unwrap_or(ranking.len());
            let wait = stagger.saturating_mul(u32::try_from(rank).unwrap_or(u32::MAX));
            if unclaimed_for >= wait {
                Step::Claim { rank }
            } else {
                Step::Wait {
                    rank,
                    remaining: wait - unclaimed_for,
                }
            }
        }
    }
}

/// When the `n`-th gratuitous announcement (counting from 0) is due, measured from taking the
/// address: at once, then every 1.1 s until 5 s have passed, then every `refresh` if set.
pub fn gratuitous_due(n: u32, refresh: Option<Duration>) -> Option<Duration> {
    const STEP: Duration = Duration::from_millis(1100);
    const BURST: Duration = Duration::from_secs(5);
    let burst = STEP.saturating_mul(n);
    if burst < BURST {
        return Some(burst);
    }
    let last = STEP.saturating_mul(BURST.as_millis().div_ceil(STEP.as_millis()) as u32 - 1);
    let beyond = n - (last.as_millis() / STEP.as_millis()) as u32;
    refresh.map(|r| last + r.saturating_mul(beyond))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::InterfaceInfo;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn speakers(names: &[&str]) -> BTreeMap<String, Registration> {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Registration {
                        node: n.to_string(),
                        labels: BTreeMap::new(),
                        interfaces: vec![InterfaceInfo {
                            name: "eth0".into(),
                            mac: "02:00:00:00:00:01".into(),
                        }],
                        heartbeats: false,
                    },
                )
            })
            .collect()
    }

    fn ann(ip_: &str) -> Announcement {
        Announcement {
            ip: ip(ip_),
            services: vec![],
            nodes: vec![],
            interfaces: vec![],
            preferred: BTreeMap::new(),
        }
    }

    const ETH0: &[String] = &[];

    fn eth0() -> Vec<String> {
        vec!["eth0".to_string()]
    }

    #[test]
    fn ranking_is_sha256_of_node_hash_ip() {
        // Known value: sha256("node-1#10.0.0.5"), checked with `printf 'node-1#10.0.0.5' | sha256sum`.
        let h = rank_hash("node-1", ip("10.0.0.5"));
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "b2871de284287ec985b9fa1143a3c3c1aba13544ea68cec9d1ea8b2ee6c5efe2"
        );
        let order = ranked(["node-1", "node-2", "node-3"], ip("10.0.0.5"));
        let mut by_hash = vec!["node-1", "node-2", "node-3"];
        by_hash.sort_by_key(|n| rank_hash(n, ip("10.0.0.5")));
        assert_eq!(order, by_hash);
        assert_eq!(order.len(), 3);
    }

    #[test]
    fn exactly_the_first_ranked_eligible_speaker_after_the_suspect_takes_over() {
        let sp = speakers(&["a", "b", "c", "d"]);
        let a = ann("10.0.0.9");
        let ifs = eth0();
        let order = ranked(["a", "b", "c", "d"], a.ip);
        let holder = order[0];
        let held = Claim {
            node: holder.into(),
            interfaces: eth0(),
            since: "x".into(),
        };
        let taking = |announcement: &Announcement| -> Vec<&str> {
            ["a", "b", "c", "d"]
                .into_iter()
                .filter(|me| {
                    takes_over(
                        &Situation {
                            me,
                            announcement,
                            rank_key: announcement.ip,
                            speakers: &sp,
                            my_interfaces: &ifs,
                            claim: Some(&held),
                        },
                        holder,
                    )
                })
                .collect()
        };
        assert_eq!(taking(&a), [order[1]], "the next in rank, and only it");
        // The next in rank is not listed: the one after it takes over.
        let listed: Vec<String> = order
            .iter()
            .filter(|n| **n != order[1])
            .map(|n| n.to_string())
            .collect();
        let without_second = Announcement {
            nodes: listed,
            ..a.clone()
        };
        let taking = taking(&without_second);
        assert_eq!(taking, [order[2]]);
    }

    #[test]
    fn a_claim_for_an_unregistered_node_or_on_no_lease_is_orphaned_and_the_first_ranked_clears_it()
    {
        let sp = speakers(&["a", "b", "c"]);
        let claim = |node: &str| Claim {
            node: node.into(),
            interfaces: vec!["eth0".into()],
            since: "x".into(),
        };
        assert!(is_orphaned(&claim("ghost"), 7, &sp), "never registered");
        assert!(
            is_orphaned(&claim("a"), 0, &sp),
            "on no lease: it would never end"
        );
        assert!(!is_orphaned(&claim("a"), 7, &sp), "a live holder");
        let a = ann("10.0.0.9");
        let order = ranked(["a", "b", "c"], a.ip);
        let ifs = eth0();
        let ghost = claim("ghost");
        let clearing: Vec<&str> = order
            .iter()
            .copied()
            .filter(|me| {
                clears_orphan(&Situation {
                    me,
                    announcement: &a,
                    rank_key: a.ip,
                    speakers: &sp,
                    my_interfaces: &ifs,
                    claim: Some(&ghost),
                })
            })
            .collect();
        assert_eq!(clearing, [order[0]], "exactly the first-ranked one");
        // A node that may not answer for the address does not clear it.
        let only_b = Announcement {
            nodes: vec!["b".into()],
            ..ann("10.0.0.9")
        };
        let s = Situation {
            me: "a",
            announcement: &only_b,
            rank_key: only_b.ip,
            speakers: &sp,
            my_interfaces: &ifs,
            claim: Some(&ghost),
        };
        assert!(!clears_orphan(&s));
        assert!(clears_orphan(&Situation { me: "b", ..s }));
    }

    #[test]
    fn first_ranked_claims_at_once_others_wait_their_stagger() {
        let sp = speakers(&["a", "b", "c"]);
        let a = ann("10.0.0.5");
        let order = ranked(["a", "b", "c"], a.ip);
        let stagger = Duration::from_millis(100);
        for (rank, me) in order.iter().enumerate() {
            let ifs = eth0();
            let s = Situation {
                me,
                announcement: &a,
                rank_key: a.ip,
                speakers: &sp,
                my_interfaces: &ifs,
                claim: None,
            };
            if rank == 0 {
                assert_eq!(decide(&s, Duration::ZERO, stagger), Step::Claim { rank: 0 });
            } else {
                assert_eq!(
                    decide(&s, Duration::from_millis(50), stagger),
                    Step::Wait {
                        rank,
                        remaining: stagger * rank as u32 - Duration::from_millis(50)
                    }
                );
                assert_eq!(
                    decide(&s, stagger * rank as u32, stagger),
                    Step::Claim { rank }
                );
            }
        }
    }

    #[test]
    fn claims_are_sticky_and_only_the_holder_answers() {
        let sp = speakers(&["a", "b"]);
        let a = ann("10.0.0.5");
        let claim = Claim {
            node: "b".into(),
            interfaces: eth0(),
            since: String::new(),
        };
        let ifs = eth0();
        for me in ["a", "b"] {
            let s = Situation {
                me,
                announcement: &a,
                rank_key: a.ip,
                speakers: &sp,
                my_interfaces: &ifs,
                claim: Some(&claim),
            };
            let step = decide(&s, Duration::from_secs(60), Duration::ZERO);
            if me == "b" {
                assert_eq!(step, Step::Hold);
            } else {
                assert!(
                    matches!(step, Step::Idle { reason: Idle::HeldBy(ref n) } if n == "b"),
                    "{step:?}"
                );
            }
        }
    }

    #[test]
    fn holder_releases_when_unlisted_or_without_interface() {
        let sp = speakers(&["a", "b"]);
        let claim = Claim {
            node: "a".into(),
            interfaces: eth0(),
            since: String::new(),
        };
        let mut a = ann("10.0.0.5");
        a.nodes = vec!["b".into()];
        let ifs = eth0();
        let s = Situation {
            me: "a",
            announcement: &a,
            rank_key: a.ip,
            speakers: &sp,
            my_interfaces: &ifs,
            claim: Some(&claim),
        };
        assert!(matches!(
            decide(&s, Duration::ZERO, Duration::ZERO),
            Step::Release { .. }
        ));
        let a = ann("10.0.0.5");
        let s = Situation {
            me: "a",
            announcement: &a,
            rank_key: a.ip,
            speakers: &sp,
            my_interfaces: ETH0,
            claim: Some(&claim),
        };
        assert!(matches!(
            decide(&s, Duration::ZERO, Duration::ZERO),
            Step::Release {
                reason: Release::NoInterface
            }
        ));
    }

    #[test]
    fn nodes_and_interfaces_limit_who_is_ranked() {
        let mut sp = speakers(&["a", "b", "c"]);
        if let Some(r) = sp.get_mut("c") {
            r.interfaces[0].name = "eth1".into();
        }
        let mut a = ann("10.0.0.5");
        a.nodes = vec!["a".into(), "c".into()];
        a.interfaces = vec!["eth0".into()];
        let ifs = eth0();
        let s = Situation {
            me: "a",
            announcement: &a,
            rank_key: a.ip,
            speakers: &sp,
            my_interfaces: &ifs,
            claim: None,
        };
        assert_eq!(s.ranking(), ["a"], "b is not listed, c has no eth0");
        assert_eq!(
            decide(&s, Duration::ZERO, Duration::from_secs(1)),
            Step::Claim { rank: 0 }
        );
        let s = Situation { me: "b", ..s };
        assert!(matches!(
            decide(&s, Duration::ZERO, Duration::ZERO),
            Step::Idle { .. }
        ));
    }

    #[test]
    fn a_higher_preference_score_ranks_first_and_ties_fall_back_to_the_hash() {
        let sp = speakers(&["a", "b", "c", "d"]);
        let mut a = ann("10.0.0.5");
        let by_hash = ranked(["a", "b", "c", "d"], a.ip);
        // Prefer the two nodes the hash ranks last: they must come first, still in hash order
        // between themselves, with the best of them scoring more on top.
        let (third, last) = (by_hash[2], by_hash[3]);
        a.preferred = BTreeMap::from([(third.to_string(), 50), (last.to_string(), 100)]);
        let ifs = eth0();
        let s = Situation {
            me: last,
            announcement: &a,
            rank_key: a.ip,
            speakers: &sp,
            my_interfaces: &ifs,
            claim: None,
        };
        assert_eq!(s.ranking(), [last, third, by_hash[0], by_hash[1]]);
        assert_eq!(
            decide(&s, Duration::ZERO, Duration::from_secs(1)),
            Step::Claim { rank: 0 }
        );
        let s = Situation {
            me: by_hash[0],
            ..s
        };
        assert_eq!(
            decide(&s, Duration::ZERO, Duration::from_millis(100)),
            Step::Wait {
                rank: 2,
                remaining: Duration::from_millis(200)
            }
        );
        // Equal scores: the hash decides, as without preferences.
        let mut tied = a.clone();
        tied.preferred = BTreeMap::from([(third.to_string(), 70), (last.to_string(), 70)]);
        let s = Situation {
            announcement: &tied,
            ..s
        };
        assert_eq!(s.ranking(), [third, last, by_hash[0], by_hash[1]]);
    }

    #[test]
    fn a_preferred_node_that_is_not_eligible_or_not_alive_is_skipped() {
        let sp = speakers(&["a", "b", "c"]);
        let mut a = ann("10.0.0.5");
        a.nodes = vec!["a".into(), "b".into()];
        a.preferred = BTreeMap::from([("c".to_string(), 100), ("ghost".to_string(), 100)]);
        let ifs = eth0();
        let s = Situation {
            me: "a",
            announcement: &a,
            rank_key: a.ip,
            speakers: &sp,
            my_interfaces: &ifs,
            claim: None,
        };
        assert_eq!(s.ranking(), ranked(["a", "b"], a.ip));
    }

    #[test]
    fn a_preferred_node_does_not_take_a_claimed_address_back() {
        let sp = speakers(&["a", "b"]);
        let mut a = ann("10.0.0.5");
        a.preferred = BTreeMap::from([("a".to_string(), 100)]);
        let claim = Claim {
            node: "b".into(),
            interfaces: eth0(),
            since: String::new(),
        };
        let ifs = eth0();
        let s = Situation {
            me: "a",
            announcement: &a,
            rank_key: a.ip,
            speakers: &sp,
            my_interfaces: &ifs,
            claim: Some(&claim),
        };
        assert_eq!(s.ranking().first(), Some(&"a"));
        assert!(
            matches!(decide(&s, Duration::from_secs(60), Duration::ZERO), Step::Idle { reason: Idle::HeldBy(ref n) } if n == "b")
        );
        assert_eq!(
            decide(&Situation { me: "b", ..s }, Duration::ZERO, Duration::ZERO),
            Step::Hold
        );
    }

    #[test]
    fn a_services_addresses_share_one_rank_key() {
        let mut anns = BTreeMap::new();
        for (i, svc) in [
            ("fd00::5", "ns/dual"),
            ("10.0.0.9", "ns/dual"),
            ("10.0.0.1", "ns/other"),
        ] {
            let mut a = ann(i);
            a.services = vec![svc.into()];
            anns.insert(a.ip, a);
        }
        let keys = rank_keys(&anns);
        assert_eq!(keys[&ip("fd00::5")], ip("10.0.0.9"));
        assert_eq!(keys[&ip("10.0.0.9")], ip("10.0.0.9"));
        assert_eq!(keys[&ip("10.0.0.1")], ip("10.0.0.1"));
    }

    #[test]
    fn gratuitous_schedule_is_a_five_second_burst_then_refresh() {
        let due: Vec<Option<Duration>> = (0..7).map(|n| gratuitous_due(n, None)).collect();
        let ms = |m| Some(Duration::from_millis(m));
        assert_eq!(
            due,
            [ms(0), ms(1100), ms(2200), ms(3300), ms(4400), None, None]
        );
        let refresh = Some(Duration::from_secs(60));
        assert_eq!(gratuitous_due(5, refresh), ms(64_400));
        assert_eq!(gratuitous_due(6, refresh), ms(124_400));
    }
}
