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

use crate::wire::{self, ArpOperation, Frame, MacAddr};

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
    /// Answerable, but the answering fence is closed (the speaker may no longer hold it).
    Fenced,
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
            DropReason::Fenced => "fenced",
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

/// The interface a frame arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Station<'a> {
    /// Its name.
    pub interface: &'a str,
    /// Its MAC address.
    pub mac: MacAddr,
}

/// What to do about one frame: [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Another host announced an address this node answers for (a gratuitous ARP, an ARP from
    /// that address, or an overriding Neighbor Advertisement): the address and the other MAC.
    pub foreign: Option<(IpAddr, MacAddr)>,
    /// When the frame was a query: the address asked about and the response.
    pub query: Option<(IpAddr, Response)>,
}

/// The response to a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Send this frame (the reply).
    Send(Vec<u8>),
    /// Stay silent, for this reason.
    Drop(DropReason),
}

/// The per-frame decision of a responder: whether `frame`, seen on `station`, tells of another
/// host announcing a held address, and whether (and with what frame) to answer it. `fence_open`
/// reads the answering fence at this instant, and is called only for a query that would be
/// answered; the rate limit is consulted only for answerable queries, so only they spend tokens.
pub fn decide(
    frame: &Frame,
    held: &HeldSet,
    station: Station<'_>,
    limiter: &mut RateLimiter,
    now: Duration,
    fence_open: impl FnOnce() -> bool,
) -> Verdict {
    let (query, reply, foreign) = match *frame {
        Frame::Arp { eth, arp } => {
            let sender = IpAddr::V4(arp.sender_ip);
            let foreign = (held.holds(sender) && arp.sender_mac != station.mac)
                .then_some((sender, arp.sender_mac));
            let gratuitous = arp.sender_ip == arp.target_ip;
            let kind = match arp.operation {
                ArpOperation::Request if !gratuitous => QueryKind::ArpRequest,
                _ => QueryKind::ArpAnnouncement,
            };
            let query = station.query(kind, IpAddr::V4(arp.target_ip), eth.src, eth.dst);
            let reply = Reply::Arp {
                to_mac: arp.sender_mac,
                to_ip: arp.sender_ip,
                ip: arp.target_ip,
            };
            (query, reply, foreign)
        }
        Frame::NeighborSolicit {
            eth,
            ip,
            target,
            source_lladdr,
        } => {
            let kind = match ip.src.is_unspecified() {
                true => QueryKind::DadProbe,
                false => QueryKind::NeighborSolicit,
            };
            let query = station.query(kind, IpAddr::V6(target), eth.src, eth.dst);
            let reply = Reply::Ndp {
                to_mac: source_lladdr.unwrap_or(eth.src),
                to_ip: ip.src,
                target,
            };
            (query, reply, None)
        }
        Frame::NeighborAdvert {
            eth,
            flags,
            target,
            target_lladdr,
            ..
        } => {
            let from = target_lladdr.unwrap_or(eth.src);
            let ip = IpAddr::V6(target);
            let foreign =
                (flags.overrides && held.holds(ip) && from != station.mac).then_some((ip, from));
            return Verdict {
                foreign,
                query: None,
            };
        }
        Frame::Other => {
            return Verdict {
                foreign: None,
                query: None,
            };
        }
    };
    let response = match held.answer(&query, limiter, now) {
        Answer::Reply if !fence_open() => Response::Drop(DropReason::Fenced),
        Answer::Reply => Response::Send(reply.build(station.mac)),
        Answer::Drop(reason) => Response::Drop(reason),
    };
    Verdict {
        foreign,
        query: Some((query.target, response)),
    }
}

impl<'a> Station<'a> {
    fn query(self, kind: QueryKind, target: IpAddr, from: MacAddr, to: MacAddr) -> Query<'a> {
        Query {
            kind,
            target,
            requester: from.0,
            destination: to.0,
            interface: self.interface,
            interface_mac: self.mac.0,
        }
    }
}

/// The reply a query would get, built only once the decision is to answer.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Arp {
        to_mac: MacAddr,
        to_ip: std::net::Ipv4Addr,
        ip: std::net::Ipv4Addr,
    },
    Ndp {
        to_mac: MacAddr,
        to_ip: std::net::Ipv6Addr,
        target: std::net::Ipv6Addr,
    },
}

impl Reply {
    fn build(self, mac: MacAddr) -> Vec<u8> {
        match self {
            Reply::Arp { to_mac, to_ip, ip } => wire::arp_reply(mac, ip, to_mac, to_ip),
            Reply::Ndp {
                to_mac,
                to_ip,
                target,
            } => wire::neighbor_advert(mac, target, to_mac, to_ip, target, true, true),
        }
    }
}

/// Why a gratuitous announcement goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gratuitous {
    /// One of the first five after taking the address: neighbours learn the new MAC at once.
    Takeover,
    /// A periodic refresh (`--garp-refresh`).
    Refresh,
}

impl Gratuitous {
    /// A short label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Gratuitous::Takeover => "takeover",
            Gratuitous::Refresh => "refresh",
        }
    }
}

/// The gratuitous announcements of the addresses one interface answers for, on a clock passed
/// in: at once on taking an address, then every 1.1 s for 5 s, then every `refresh` if set
/// ([`crate::election::gratuitous_due`]); nothing while the answering fence is closed.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    /// When each address was taken, and how many announcements of it went out.
    announcing: HashMap<IpAddr, (Duration, u32)>,
}

impl Schedule {
    /// Follows the held set: an address new to it starts its schedule at `now`; one no longer
    /// in it is forgotten (taken again later, it starts over).
    pub fn follow(&mut self, held: &HashSet<IpAddr>, now: Duration) {
        self.announcing.retain(|ip, _| held.contains(ip));
        for ip in held {
            self.announcing.entry(*ip).or_insert((now, 0));
        }
    }

    /// The announcements due at `now` (counted as sent), and when the next one is due. While
    /// `fenced`, none goes out and the next look is `retry` away (the fence may open again
    /// with the next heartbeat).
    pub fn due(
        &mut self,
        now: Duration,
        refresh: Option<Duration>,
        fenced: bool,
        retry: Duration,
    ) -> (Vec<(IpAddr, Gratuitous)>, Option<Duration>) {
        let mut out = Vec::new();
        let mut next: Option<Duration> = None;
        let mut wake = |at: Duration| next = Some(next.map_or(at, |n: Duration| n.min(at)));
        for (ip, (taken, sent)) in &mut self.announcing {
            while let Some(at) = crate::election::gratuitous_due(*sent, refresh).map(|d| *taken + d)
            {
                if at > now {
                    wake(at);
                    break;
                }
                if fenced {
                    wake(now + retry);
                    break;
                }
                let why = if *sent < 5 {
                    Gratuitous::Takeover
                } else {
                    Gratuitous::Refresh
                };
                *sent += 1;
                out.push((*ip, why));
            }
        }
        (out, next)
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

    mod verdicts {
        //! The per-frame decision on frames captured from real hosts.
        use super::*;
        use crate::wire::build::{gratuitous_arp_request, unsolicited_neighbor_advert};
        use crate::wire::fixtures::*;

        const ASKED_V4: &str = "192.0.2.240";
        const ASKED_V6: &str = "2001:db8::f0";

        fn holding(addresses: &[&str], interface: &str) -> HeldSet {
            let mut held = HeldSet::default();
            for a in addresses {
                held.hold(ip(a), [interface.to_string()]);
            }
            held
        }

        fn verdict(bytes: &[u8], held: &HeldSet, mac: MacAddr, fence_open: bool) -> Verdict {
            let frame = wire::parse_frame(bytes).expect("a valid fixture");
            let station = Station {
                interface: "eth0",
                mac,
            };
            let mut limiter = RateLimiter::default();
            decide(&frame, held, station, &mut limiter, Duration::ZERO, || {
                fence_open
            })
        }

        fn response(v: &Verdict) -> &Response {
            &v.query.as_ref().expect("a query").1
        }

        #[test]
        fn a_who_has_for_a_held_address_gets_the_reply_a_real_host_expects() {
            let held = holding(&[ASKED_V4], "eth0");
            let v = verdict(&ARP_WHO_HAS, &held, SPEAKER_MAC, true);
            assert_eq!(v.foreign, None);
            assert_eq!(
                v.query,
                Some((ip(ASKED_V4), Response::Send(ARP_REPLY.to_vec())))
            );
        }

        #[test]
        fn a_solicitation_for_a_held_address_gets_the_advertisement() {
            let held = holding(&[ASKED_V6], "eth0");
            let v = verdict(&NS, &held, SPEAKER_MAC, true);
            assert_eq!(v.query, Some((ip(ASKED_V6), Response::Send(NA.to_vec()))));
        }

        #[test]
        fn requests_that_must_not_be_answered_each_say_why() {
            let v4 = holding(&[ASKED_V4], "eth0");
            let v6 = holding(&[ASKED_V6], "eth0");
            let elsewhere = holding(&[ASKED_V4], "eth1");
            let mut unicast_elsewhere = ARP_WHO_HAS;
            unicast_elsewhere[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x77]);
            let cases: [(&[u8], &HeldSet, bool, DropReason); 6] = [
                (&ARP_WHO_HAS, &v4, false, DropReason::Fenced),
                (&ARP_WHO_HAS, &HeldSet::default(), true, DropReason::NotHeld),
                (&ARP_WHO_HAS, &elsewhere, true, DropReason::WrongInterface),
                (&unicast_elsewhere, &v4, true, DropReason::NotSentHere),
                (&DAD_NS, &v6, true, DropReason::DadProbe),
                (&ARP_REPLY, &v4, true, DropReason::NotARequest),
            ];
            for (bytes, held, open, reason) in cases {
                let v = verdict(bytes, held, SPEAKER_MAC, open);
                assert_eq!(response(&v), &Response::Drop(reason));
            }
        }

        #[test]
        fn another_mac_announcing_a_held_address_is_reported_and_our_own_is_not() {
            let held = holding(&[ASKED_V4, ASKED_V6], "eth0");
            let v4 = ASKED_V4.parse().expect("v4");
            let garp = gratuitous_arp_request(CLIENT_MAC, v4);
            let v = verdict(&garp, &held, SPEAKER_MAC, true);
            assert_eq!(v.foreign, Some((ip(ASKED_V4), CLIENT_MAC)));
            assert_eq!(response(&v), &Response::Drop(DropReason::NotARequest));
            let own = gratuitous_arp_request(SPEAKER_MAC, v4);
            assert_eq!(verdict(&own, &held, SPEAKER_MAC, true).foreign, None);
            // An overriding advertisement: the fixture is the speaker's own answer.
            assert_eq!(verdict(&NA, &held, SPEAKER_MAC, true).foreign, None);
            let v = verdict(&NA, &held, CLIENT_MAC, true);
            assert_eq!(v.foreign, Some((ip(ASKED_V6), SPEAKER_MAC)));
            assert_eq!(v.query, None);
            let na = unsolicited_neighbor_advert(CLIENT_MAC, ASKED_V6.parse().expect("v6"));
            let v = verdict(&na, &held, SPEAKER_MAC, true);
            assert_eq!(v.foreign, Some((ip(ASKED_V6), CLIENT_MAC)));
            // Not held: nobody to warn.
            let v = verdict(&garp, &HeldSet::default(), SPEAKER_MAC, true);
            assert_eq!(v.foreign, None);
        }

        #[test]
        fn only_answerable_requests_spend_the_rate_limit() {
            let held = holding(&[ASKED_V4], "eth0");
            let frame = wire::parse_frame(&ARP_WHO_HAS).expect("valid");
            let station = Station {
                interface: "eth0",
                mac: SPEAKER_MAC,
            };
            let mut limiter = RateLimiter::default();
            let none = HeldSet::default();
            // The fence is read only for an answer (not on every frame of a flood).
            let v = decide(&frame, &none, station, &mut limiter, Duration::ZERO, || {
                panic!("the fence was read for a request not to be answered")
            });
            assert_eq!(
                v.query,
                Some((ip(ASKED_V4), Response::Drop(DropReason::NotHeld)))
            );
            for _ in 0..1000 {
                decide(&frame, &none, station, &mut limiter, Duration::ZERO, || {
                    true
                });
            }
            let answered = (0..RATE_PER_SECOND + 10)
                .filter(|_| {
                    let v = decide(&frame, &held, station, &mut limiter, Duration::ZERO, || {
                        true
                    });
                    matches!(v.query, Some((_, Response::Send(_))))
                })
                .count();
            assert_eq!(answered, RATE_PER_SECOND as usize);
        }
    }

    mod schedule {
        use super::*;

        const S: Duration = Duration::from_secs(1);
        const RETRY: Duration = Duration::from_millis(10);

        fn held(addresses: &[&str]) -> HashSet<IpAddr> {
            addresses.iter().map(|a| ip(a)).collect()
        }

        #[test]
        fn an_address_taken_is_announced_at_once_then_in_a_burst_then_every_refresh() {
            let mut s = Schedule::default();
            s.follow(&held(&["10.0.0.1"]), Duration::ZERO);
            let (sent, next) = s.due(Duration::ZERO, Some(S * 60), false, RETRY);
            assert_eq!(sent, [(ip("10.0.0.1"), Gratuitous::Takeover)]);
            assert_eq!(next, Some(Duration::from_millis(1100)));
            let mut kinds = Vec::new();
            let mut now = Duration::ZERO;
            while now < S * 130 {
                now += Duration::from_millis(100);
                kinds.extend(
                    s.due(now, Some(S * 60), false, RETRY)
                        .0
                        .into_iter()
                        .map(|x| x.1),
                );
            }
            let takeovers = kinds.iter().filter(|k| **k == Gratuitous::Takeover).count();
            assert_eq!(takeovers, 4, "five in the burst, the first counted above");
            assert_eq!(kinds.len() - takeovers, 2, "then one a minute");
        }

        #[test]
        fn nothing_goes_out_while_fenced_and_what_was_due_goes_once_it_opens() {
            let mut s = Schedule::default();
            s.follow(&held(&["10.0.0.1"]), Duration::ZERO);
            let (sent, next) = s.due(Duration::ZERO, None, true, RETRY);
            assert!(sent.is_empty());
            assert_eq!(next, Some(RETRY));
            let (sent, _) = s.due(RETRY, None, false, RETRY);
            assert_eq!(sent.len(), 1);
        }

        #[test]
        fn an_address_given_up_and_taken_again_starts_over() {
            let mut s = Schedule::default();
            s.follow(&held(&["10.0.0.1", "2001:db8::1"]), Duration::ZERO);
            assert_eq!(s.due(Duration::ZERO, None, false, RETRY).0.len(), 2);
            let (half, later) = (S / 2, S * 6 / 10);
            s.follow(&held(&["2001:db8::1"]), half);
            s.follow(&held(&["10.0.0.1", "2001:db8::1"]), later);
            // The address taken again is announced at once; the other's next is at 1.1 s.
            let (sent, next) = s.due(later, None, false, RETRY);
            assert_eq!(sent, [(ip("10.0.0.1"), Gratuitous::Takeover)]);
            assert_eq!(next, Some(Duration::from_millis(1100)));
            // Without a refresh, the schedule ends after the burst.
            let (_, next) = s.due(S * 100, None, false, RETRY);
            assert_eq!(next, None);
        }
    }
}
