//! Answering ARP and NDP: one task per usable interface, owned by a supervisor that follows
//! interfaces as they appear and disappear.
//!
//! Each task reads frames from two raw sockets (ARP, IPv6), decides with
//! `ferrolb_core::respond` whether to answer, and sends gratuitous announcements for addresses it
//! has just taken (at once, then every 1.1 s for 5 s, then every `--garp-refresh` if set). It also
//! joins the solicited-node multicast group of each held IPv6 address, and reports announcements
//! of held addresses by other MACs to the controller.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_core::election::gratuitous_due;
use ferrolb_core::respond::{Answer, HeldSet, Query, QueryKind, RateLimiter};
use ferrolb_core::wire::{self, Frame, MacAddr};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::controller::{LocalEvent, format_mac, stopped};
use prometheus_client::metrics::counter::Counter;

use crate::metrics::{AddressLabels, Metrics, ReasonLabels};
use crate::sys::interfaces::Interface;
use crate::sys::{AsyncRawSocket, ETH_P_ARP, ETH_P_IPV6};

/// What every responder shares.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The addresses to answer for.
    pub held: watch::Receiver<Arc<HeldSet>>,
    /// Observations for the controller.
    pub events: mpsc::Sender<LocalEvent>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// `--garp-refresh`.
    pub refresh: Option<Duration>,
}

/// Runs one responder per usable interface until `stop` turns true.
pub async fn supervise(
    mut interfaces: watch::Receiver<Vec<Interface>>,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks: HashMap<(String, u32, [u8; 6]), JoinHandle<()>> = HashMap::new();
    let mut retry = tokio::time::interval(Duration::from_secs(5));
    loop {
        let wanted: HashSet<(String, u32, [u8; 6])> = interfaces
            .borrow()
            .iter()
            .map(|i| (i.name.clone(), i.index, i.mac))
            .collect();
        tasks.retain(|key, task| {
            let keep = wanted.contains(key) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for iface in interfaces.borrow().iter() {
            let key = (iface.name.clone(), iface.index, iface.mac);
            if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(key) {
                let (iface, shared, stop) = (iface.clone(), shared.clone(), stop.clone());
                slot.insert(tokio::spawn(async move {
                    let name = iface.name.clone();
                    if let Err(e) = respond(iface, shared, stop).await {
                        warn!(interface = %name, error = %e, "responder stopped; retrying in 5 s");
                    }
                }));
            }
        }
        tokio::select! {
            _ = stopped(&mut stop) => break,
            changed = interfaces.changed() => if changed.is_err() { break },
            _ = retry.tick() => {}
        }
    }
    for (_, task) in tasks {
        task.abort();
        let _ = task.await;
    }
}

/// Gratuitous announcements of one address on one interface.
#[derive(Clone, Copy, Debug)]
struct Announcing {
    taken: Instant,
    sent: u32,
}

/// Counters of one held address, looked up once per change of the held set rather than once
/// per frame.
#[derive(Clone, Debug, Default)]
struct AddressCounters {
    requests: Counter,
    replies: Counter,
}

/// Answers one interface: a receive loop with nothing else in it (timers live in
/// [`announce`]), so a request waits only for the wake-up of this task.
async fn respond(iface: Interface, shared: Shared, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let arp = Arc::new(AsyncRawSocket::open(iface.index, ETH_P_ARP)?);
    let ip6 = Arc::new(AsyncRawSocket::open(iface.index, ETH_P_IPV6)?);
    info!(interface = %iface.name, mac = %format_mac(iface.mac), "answering ARP and NDP");
    let announcer = tokio::spawn(announce(
        iface.clone(),
        shared.clone(),
        arp.clone(),
        ip6.clone(),
        stop.clone(),
    ));
    let mut held_rx = shared.held.clone();
    let mut r = Responder {
        mac: MacAddr(iface.mac),
        iface,
        held: held_rx.borrow_and_update().clone(),
        counters: HashMap::new(),
        shared,
        limiter: RateLimiter::default(),
        started: Instant::now(),
        swept: Instant::now(),
    };
    r.refresh_counters();
    let mut arp_buf = vec![0u8; 2048];
    let mut ip6_buf = vec![0u8; 9216];
    let result = loop {
        tokio::select! {
            _ = stopped(&mut stop) => break Ok(()),
            changed = held_rx.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                r.held = held_rx.borrow_and_update().clone();
                r.refresh_counters();
            }
            got = arp.recv(&mut arp_buf) => match got {
                Ok((n, false)) => r.frame(&arp_buf[..n.min(arp_buf.len())], &arp).await,
                Ok((_, true)) => {}
                Err(e) => break Err(e),
            },
            got = ip6.recv(&mut ip6_buf) => match got {
                Ok((n, false)) => r.frame(&ip6_buf[..n.min(ip6_buf.len())], &ip6).await,
                Ok((_, true)) => {}
                Err(e) => break Err(e),
            },
        }
    };
    announcer.abort();
    result
}

struct Responder {
    iface: Interface,
    mac: MacAddr,
    held: Arc<HeldSet>,
    counters: HashMap<IpAddr, AddressCounters>,
    shared: Shared,
    limiter: RateLimiter,
    started: Instant,
    swept: Instant,
}

/// Addresses of `held` held on `interface`.
fn held_on(held: &HeldSet, interface: &str) -> HashSet<IpAddr> {
    held.addresses()
        .filter(|ip| held.interfaces(**ip).any(|i| i == interface))
        .copied()
        .collect()
}

impl Responder {
    fn refresh_counters(&mut self) {
        let metrics = &self.shared.metrics;
        self.counters = self
            .held
            .addresses()
            .map(|ip| {
                let protocol = if ip.is_ipv4() { "arp" } else { "ndp" };
                let labels = AddressLabels { address: ip.to_string(), protocol };
                let c = AddressCounters {
                    requests: metrics.requests.get_or_create_owned(&labels),
                    replies: metrics.replies.get_or_create_owned(&labels),
                };
                (*ip, c)
            })
            .collect();
    }

    async fn frame(&mut self, bytes: &[u8], socket: &AsyncRawSocket) {
        let frame = match wire::parse_frame(bytes) {
            Ok(f) => f,
            Err(_) => {
                self.shared.metrics.malformed.inc();
                return;
            }
        };
        let now = self.started.elapsed();
        if now.saturating_sub(self.swept.duration_since(self.started)) > Duration::from_secs(10) {
            self.limiter.forget_idle(now);
            self.swept = Instant::now();
        }
        // The reply is built only once the decision is to answer.
        let (query, reply): (Query<'_>, Reply) = match frame {
            Frame::Arp { eth, arp } => {
                let sender = IpAddr::V4(arp.sender_ip);
                if self.held.holds(sender) && arp.sender_mac != self.mac {
                    self.foreign(sender, arp.sender_mac).await;
                }
                let gratuitous = arp.sender_ip == arp.target_ip;
                let kind = if arp.operation == wire::ArpOperation::Request && !gratuitous {
                    QueryKind::ArpRequest
                } else {
                    QueryKind::ArpAnnouncement
                };
                let q = Query {
                    kind,
                    target: IpAddr::V4(arp.target_ip),
                    requester: eth.src.0,
                    interface: &self.iface.name,
                };
                (q, Reply::Arp { to_mac: arp.sender_mac, to_ip: arp.sender_ip, ip: arp.target_ip })
            }
            Frame::NeighborSolicit { eth, ip, target, source_lladdr } => {
                let kind = if ip.src.is_unspecified() {
                    QueryKind::DadProbe
                } else {
                    QueryKind::NeighborSolicit
                };
                let q = Query {
                    kind,
                    target: IpAddr::V6(target),
                    requester: eth.src.0,
                    interface: &self.iface.name,
                };
                let to_mac = source_lladdr.unwrap_or(eth.src);
                (q, Reply::Ndp { to_mac, to_ip: ip.src, target })
            }
            Frame::NeighborAdvert { eth, flags, target, target_lladdr, .. } => {
                let from = target_lladdr.unwrap_or(eth.src);
                if flags.overrides && self.held.holds(IpAddr::V6(target)) && from != self.mac {
                    self.foreign(IpAddr::V6(target), from).await;
                }
                return;
            }
            _ => return,
        };
        let address = query.target;
        match self.held.answer(&query, &mut self.limiter, now) {
            Answer::Reply => {
                let bytes = match reply {
                    Reply::Arp { to_mac, to_ip, ip } => wire::arp_reply(self.mac, ip, to_mac, to_ip),
                    Reply::Ndp { to_mac, to_ip, target } => {
                        wire::neighbor_advert(self.mac, target, to_mac, to_ip, target, true, true)
                    }
                };
                let sent = socket.send(&bytes).await;
                let counters = self.counters.get(&address);
                if let Some(c) = counters {
                    c.requests.inc();
                }
                match sent {
                    Ok(()) => {
                        if let Some(c) = counters {
                            c.replies.inc();
                        }
                    }
                    Err(e) => warn!(%address, interface = %self.iface.name, error = %e, "cannot send a reply"),
                }
            }
            Answer::Drop(reason) => {
                if let Some(c) = self.counters.get(&address) {
                    c.requests.inc();
                }
                self.shared
                    .metrics
                    .dropped
                    .get_or_create(&ReasonLabels { reason: reason.as_str() })
                    .inc();
            }
        }
    }

    async fn foreign(&self, ip: IpAddr, mac: MacAddr) {
        let _ = self
            .shared
            .events
            .send(LocalEvent::ForeignAnnouncement { ip, mac: mac.to_string() })
            .await;
    }
}

/// What to send back, kept as data until the decision is made.
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

/// Gratuitous announcements and multicast memberships of one interface: follows the held set,
/// sends at once, then every 1.1 s for 5 s, then every `--garp-refresh` if set.
async fn announce(
    iface: Interface,
    shared: Shared,
    arp: Arc<AsyncRawSocket>,
    ip6: Arc<AsyncRawSocket>,
    mut stop: watch::Receiver<bool>,
) {
    let mac = MacAddr(iface.mac);
    let mut held_rx = shared.held.clone();
    let mut announcing: HashMap<IpAddr, Announcing> = HashMap::new();
    let mut joined: HashSet<[u8; 6]> = HashSet::new();
    loop {
        // Follow the held set.
        let mine = held_on(&held_rx.borrow_and_update(), &iface.name);
        let now = Instant::now();
        announcing.retain(|ip, _| mine.contains(ip));
        for ip in &mine {
            announcing.entry(*ip).or_insert(Announcing { taken: now, sent: 0 });
        }
        let groups: HashSet<[u8; 6]> = mine
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V6(v6) => Some(wire::multicast_mac(wire::solicited_node_multicast(*v6)).0),
                IpAddr::V4(_) => None,
            })
            .collect();
        for g in groups.difference(&joined) {
            if let Err(e) = ip6.join_multicast(*g) {
                warn!(interface = %iface.name, group = %format_mac(*g), error = %e, "cannot join multicast group");
            }
        }
        for g in joined.difference(&groups) {
            let _ = ip6.leave_multicast(*g);
        }
        joined = groups;
        // Send what is due, then sleep until the next one or a change.
        loop {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for (ip, a) in &mut announcing {
                while let Some(at) = gratuitous_due(a.sent, shared.refresh).map(|d| a.taken + d) {
                    if at > now {
                        next = Some(next.map_or(at, |n| n.min(at)));
                        break;
                    }
                    let reason = if a.sent < 5 { "takeover" } else { "refresh" };
                    a.sent += 1;
                    let result = match ip {
                        IpAddr::V4(v4) => {
                            let x = arp.send(&wire::gratuitous_arp_request(mac, *v4)).await;
                            let y = arp.send(&wire::gratuitous_arp_reply(mac, *v4)).await;
                            x.and(y)
                        }
                        IpAddr::V6(v6) => ip6.send(&wire::unsolicited_neighbor_advert(mac, *v6)).await,
                    };
                    match result {
                        Ok(()) => {
                            shared.metrics.gratuitous.get_or_create(&ReasonLabels { reason }).inc();
                            debug!(%ip, interface = %iface.name, reason, "gratuitous announcement");
                        }
                        Err(e) => warn!(%ip, interface = %iface.name, error = %e, "cannot send a gratuitous announcement"),
                    }
                }
            }
            let sleep = tokio::time::sleep_until(next.unwrap_or_else(|| now + Duration::from_secs(3600)));
            tokio::select! {
                _ = stopped(&mut stop) => return,
                changed = held_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                _ = sleep => {}
            }
        }
    }
}
