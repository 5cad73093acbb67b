//! Whether to answer an ARP request or a Neighbor Solicitation: a pure decision that returns
//! [`Answer::Reply`] or [`Answer::Drop`] with a reason (for logs and metrics), plus the
//! per-requester rate limit.
//!
//! A speaker answers only requests (never replies or gratuitous announcements) sent to it (to
//! the Ethernet broadcast, the interface's own address, or for Neighbor Solicitations an IPv6
//! multicast address), only for addresses it holds, only on the interfaces it holds them on,
//! and at most [`RATE_PER_SECOND`] times a second per requester.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

/// Requests per second always answered for any one requester (the bucket's size and refill).
pub const RATE_PER_SECOND: u32 = 100;
/// Requesters tracked at once. Past that, idle ones are forgotten first; if the table is still
/// full (a flood from made-up addresses), some entry makes room for the newcomer. Memory stays
/// bounded, and a real requester is still answered in the middle of such a flood: refusing
/// newcomers would refuse it too, since it cannot be told apart from the flood.
pub const MAX_REQUESTERS: usize = 16_384;

/// What arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKind {
    /// An ARP request.
    ArpRequest,
    /// An ARP reply, or a gratuitous ARP (sender address equals target address).
    ArpAnnouncement,
    /// A Neighbor Solicitation (multicast or unicast).
    NeighborSolicit,
    /// A Neighbor Solicitation with the unspecified source: duplicate address detection.
    DadProbe,
    /// A Neighbor Advertisement.
    NeighborAdvert,
}

/// A request seen on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query<'a> {
    /// What it is.
    pub kind: QueryKind,
    /// The address asked about.
    pub target: IpAddr,
    /// The requester's MAC address.
    pub requester: [u8; 6],
    /// The frame's Ethernet destination.
    pub destination: [u8; 6],
    /// The interface it arrived on.
    pub interface: &'a str,
    /// That interface's MAC address.
    pub interface_mac: [u8; 6],
}

impl Query<'_> {
    /// Whether the frame was sent to this interface: to the broadcast address or to the
    /// interface's own; a Neighbor Solicitation also to an IPv6 multicast address (`33:33:…`,
    /// the solicited-node group). A raw socket also sees frames for other hosts when the
    /// interface is promiscuous (a bridge port, a capture): those were meant for someone else,
    /// and answering them would be a second answer.
    pub fn sent_here(&self) -> bool {
        let multicast6 = self.destination[..2] == [0x33, 0x33];
        self.destination == crate::wire::MacAddr::BROADCAST.0
            || self.destination == self.interface_mac
            || (multicast6 && matches!(self.kind, QueryKind::NeighborSolicit | QueryKind::DadProbe))
    }
}

/// Why a request is not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a request (a reply, an advertisement, a gratuitous announcement).
    NotARequest,
    /// Sent to another host's Ethernet address (seen only because the interface is
    /// promiscuous).
    NotSentHere,
    /// Duplicate address detection: answering would make the prober give up its address.
    DadProbe,
    /// The address is not held by this node.
    NotHeld,
    /// Held, but not on this interface.
    WrongInterface,
    /// The requester asked more than its share.
    RateLimited,
}

impl DropReason {
    /// A short label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotARequest => "not_a_request",
            DropReason::NotSentHere => "not_sent_here",
            DropReason::DadProbe => "dad_probe",
            DropReason::NotHeld => "not_held",
            DropReason::WrongInterface => "wrong_interface",
            DropReason::RateLimited => "rate_limited",
        }
    }
}

/// The decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Reply with the interface's MAC address.
    Reply,
    /// Stay silent.
    Drop(DropReason),
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens in thousandths.
    milli: u64,
    last: Duration,
}

/// A token bucket per requester, with time passed in so tests control it.
#[derive(Clone, Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<[u8; 6], Bucket>,
}

impl RateLimiter {
    const FULL: u64 = RATE_PER_SECOND as u64 * 1000;

    /// Takes one token for `requester` at time `now` (any monotonic clock); false when empty.
    pub fn allow(&mut self, requester: [u8; 6], now: Duration) -> bool {
        if !self.buckets.contains_key(&requester) && self.buckets.len() >= MAX_REQUESTERS {
            self.forget_idle(now);
            if self.buckets.len() >= MAX_REQUESTERS {
                if let Some(victim) = self.buckets.keys().next().copied() {
                    self.buckets.remove(&victim);
                }
            }
        }
        let b = self.buckets.entry(requester).or_insert(Bucket {
            milli: Self::FULL,
            last: now,
        });
        let elapsed = now.saturating_sub(b.last);
        let refill = elapsed.as_micros() as u64 * u64::from(RATE_PER_SECOND) / 1000;
        b.milli = (b.milli + refill).min(Self::FULL);
        b.last = now;
        if b.milli >= 1000 {
            b.milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Forgets requesters whose buckets have refilled completely (idle for a second or more).
    pub fn forget_idle(&mut self, now: Duration) {
        self.buckets
            .retain(|_, b| now.saturating_sub(b.last) < Duration::from_secs(1));
    }

    /// Requesters tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no requester is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The addresses a speaker holds and the interfaces it answers on for each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldSet {
    held: HashMap<IpAddr, HashSet<String>>,
}

impl HeldSet {
    /// Holds `ip` on `interfaces` (replacing what was there).
    pub fn hold(&mut self, ip: IpAddr, interfaces: impl IntoIterator<Item = String>) {
        self.held.insert(ip, interfaces.into_iter().collect());
    }

    /// Stops answering for `ip`; true when it was held.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        self.held.remove(&ip).is_some()
    }

    /// Whether `ip` is held on any interface.
    pub fn holds(&self, ip: IpAddr) -> bool {
        self.held.contains_key(&ip)
    }

    /// The held addresses.
    pub fn addresses(&self) -> impl Iterator<Item = &IpAddr> {
        self.held.keys()
    }

    /// The interfaces `ip` is held on.
    pub fn interfaces(&self, ip: IpAddr) -> impl Iterator<Item = &str> {
        self.held.get(&ip).into_iter().flatten().map(String::as_str)
    }

    /// Number of held addresses.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether to answer `q` (the rate limit is consulted last, so only answerable requests
    /// spend tokens).
    pub fn answer(&self, q: &Query<'_>, limiter: &mut RateLimiter, now: Duration) -> Answer {
        match q.kind {
            QueryKind::ArpRequest | QueryKind::NeighborSolicit => {}
            QueryKind::DadProbe => return Answer::Drop(DropReason::DadProbe),
            QueryKind::ArpAnnouncement | QueryKind::NeighborAdvert => {
                return Answer::Drop(DropReason::NotARequest);
            }
        }
        if !q.sent_here() {
            return Answer::Drop(DropReason::NotSentHere);
        }
        let Some(interfaces) = self.held.get(&q.target) else {
            return Answer::Drop(DropReason::NotHeld);
        };
        if !interfaces.contains(q.interface) {
            return Answer::Drop(DropReason::WrongInterface);
        }
        if !limiter.allow(q.requester, now) {
            return Answer::Drop(DropReason::RateLimited);
        }
        Answer::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    const OWN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    /// A query as it arrives in the usual way: ARP to the broadcast address, Neighbor
    /// Solicitations to the target's solicited-node group.
    fn query<'a>(kind: QueryKind, target: &str, interface: &'a str) -> Query<'a> {
        let destination = match kind {
            QueryKind::ArpRequest | QueryKind::ArpAnnouncement => [0xff; 6],
            _ => [0x33, 0x33, 0xff, 0, 0, 5],
        };
        Query {
            kind,
            target: ip(target),
            requester: [2, 0, 0, 0, 0, 9],
            destination,
            interface,
            interface_mac: OWN_MAC,
        }
    }

    #[test]
    fn requests_sent_to_another_hosts_ethernet_address_are_not_answered() {
        let h = held();
        let mut l = RateLimiter::default();
        let t = Duration::ZERO;
        let other = [2, 0, 0, 0, 0, 7];
        use QueryKind::*;
        let to = |kind, target, destination| Query {
            destination,
            ..query(kind, target, "eth0")
        };
        let cases = [
            // Broadcast, unicast to this interface (a neighbour cache refresh), the
            // solicited-node group: answered.
            (to(ArpRequest, "10.0.0.5", [0xff; 6]), Answer::Reply),
            (to(ArpRequest, "10.0.0.5", OWN_MAC), Answer::Reply),
            (to(NeighborSolicit, "fd00::5", OWN_MAC), Answer::Reply),
            (
                to(NeighborSolicit, "fd00::5", [0x33, 0x33, 0xff, 0, 0, 5]),
                Answer::Reply,
            ),
            // Unicast to another host, or an ARP request to an IPv6 multicast address.
            (
                to(ArpRequest, "10.0.0.5", other),
                Answer::Drop(DropReason::NotSentHere),
            ),
            (
                to(NeighborSolicit, "fd00::5", other),
                Answer::Drop(DropReason::NotSentHere),
            ),
            (
                to(ArpRequest, "10.0.0.5", [0x33, 0x33, 0xff, 0, 0, 5]),
                Answer::Drop(DropReason::NotSentHere),
            ),
            (
                to(ArpRequest, "10.0.0.5", [0x01, 0x00, 0x5e, 0, 0, 1]),
                Answer::Drop(DropReason::NotSentHere),
            ),
        ];
        for (q, want) in cases {
            assert_eq!(h.answer(&q, &mut l, t), want, "{q:?}");
        }
    }

    fn held() -> HeldSet {
        let mut h = HeldSet::default();
        h.hold(ip("10.0.0.5"), ["eth0".to_string()]);
        h.hold(ip("fd00::5"), ["eth0".to_string()]);
        h
    }

    #[test]
    fn answers_only_requests_for_held_addresses_on_their_interfaces() {
        let h = held();
        let mut l = RateLimiter::default();
        let t = Duration::ZERO;
        use QueryKind::*;
        let cases = [
            (query(ArpRequest, "10.0.0.5", "eth0"), Answer::Reply),
            (query(NeighborSolicit, "fd00::5", "eth0"), Answer::Reply),
            (
                query(ArpRequest, "10.0.0.6", "eth0"),
                Answer::Drop(DropReason::NotHeld),
            ),
            (
                query(ArpRequest, "10.0.0.5", "eth1"),
                Answer::Drop(DropReason::WrongInterface),
            ),
            (
                query(ArpAnnouncement, "10.0.0.5", "eth0"),
                Answer::Drop(DropReason::NotARequest),
            ),
            (
                query(NeighborAdvert, "fd00::5", "eth0"),
                Answer::Drop(DropReason::NotARequest),
            ),
            (
                query(DadProbe, "fd00::5", "eth0"),
                Answer::Drop(DropReason::DadProbe),
            ),
        ];
        for (q, want) in cases {
            assert_eq!(h.answer(&q, &mut l, t), want, "{q:?}");
        }
        let mut h = h;
        assert!(h.release(ip("10.0.0.5")));
        assert_eq!(
            h.answer(&query(ArpRequest, "10.0.0.5", "eth0"), &mut l, t),
            Answer::Drop(DropReason::NotHeld)
        );
    }

    #[test]
    fn a_hundred_requests_a_second_are_always_answered() {
        let mut l = RateLimiter::default();
        let me = [2, 0, 0, 0, 0, 1];
        // 100 at once, then one every 10 ms for ten seconds: all allowed.
        for _ in 0..100 {
            assert!(l.allow(me, Duration::ZERO));
        }
        for i in 1..=1000u64 {
            assert!(l.allow(me, Duration::from_millis(10 * i)), "request {i}");
        }
    }

    #[test]
    fn beyond_the_rate_requests_are_dropped_then_allowed_again() {
        let mut l = RateLimiter::default();
        let me = [2, 0, 0, 0, 0, 1];
        let allowed = (0..1000).filter(|_| l.allow(me, Duration::ZERO)).count();
        assert_eq!(allowed, 100);
        assert!(
            l.allow(me, Duration::from_millis(10)),
            "one token back after 10 ms"
        );
        assert!(!l.allow(me, Duration::from_millis(10)));
        let other = [2, 0, 0, 0, 0, 2];
        assert!(
            l.allow(other, Duration::from_millis(10)),
            "others have their own bucket"
        );
    }

    #[test]
    fn a_flood_of_random_requesters_is_bounded() {
        let mut l = RateLimiter::default();
        let mut n = 0u64;
        let mut mac = || {
            n += 1;
            let b = n.to_be_bytes();
            [2, b[3], b[4], b[5], b[6], b[7]]
        };
        for _ in 0..MAX_REQUESTERS {
            assert!(l.allow(mac(), Duration::ZERO));
        }
        assert!(
            l.allow(mac(), Duration::from_millis(500)),
            "a newcomer is still answered when the table is full"
        );
        assert_eq!(l.len(), MAX_REQUESTERS, "memory stays bounded");
        assert!(
            l.allow(mac(), Duration::from_secs(2)),
            "idle ones are forgotten"
        );
        assert_eq!(l.len(), 1);
    }
}
