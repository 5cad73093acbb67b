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

struct Responder {
    iface: Interface,
    mac: MacAddr,
    shared: Shared,
    limiter: RateLimiter,
    started: Instant,
    announcing: HashMap<IpAddr, Announcing>,
    joined: HashSet<[u8; 6]>,
}

async fn respond(
    iface: Interface,
    mut shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let arp = AsyncRawSocket::open(iface.index, ETH_P_ARP)?;
    let ip6 = AsyncRawSocket::open(iface.index, ETH_P_IPV6)?;
    info!(interface = %iface.name, mac = %format_mac(iface.mac), "answering ARP and NDP");
    let mut held_rx = shared.held.clone();
    shared.held.mark_unchanged();
    let mut r = Responder {
        mac: MacAddr(iface.mac),
        iface,
        shared,
        limiter: RateLimiter::default(),
        started: Instant::now(),
        announcing: HashMap::new(),
        joined: HashSet::new(),
    };
    r.sync(&ip6);
    let mut arp_buf = vec![0u8; 2048];
    let mut ip6_buf = vec![0u8; 9216];
    let mut sweep = tokio::time::interval(Duration::from_secs(10));
    loop {
        let next = r.next_announcement();
        tokio::select! {
            _ = stopped(&mut stop) => return Ok(()),
            changed = held_rx.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                r.sync(&ip6);
            }
            got = arp.recv(&mut arp_buf) => {
                let (n, outgoing) = got?;
                if !outgoing {
                    r.frame(&arp_buf[..n.min(arp_buf.len())], &arp).await;
                }
            }
            got = ip6.recv(&mut ip6_buf) => {
                let (n, outgoing) = got?;
                if !outgoing {
                    r.frame(&ip6_buf[..n.min(ip6_buf.len())], &ip6).await;
                }
            }
            _ = tokio::time::sleep_until(next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))), if next.is_some() => {
                r.announce_due(&arp, &ip6).await;
            }
            _ = sweep.tick() => r.limiter.forget_idle(r.started.elapsed()),
        }
    }
}

impl Responder {
    fn held(&self) -> Arc<HeldSet> {
        self.shared.held.borrow().clone()
    }

    /// Addresses held on this interface now.
    fn mine(&self, held: &HeldSet) -> HashSet<IpAddr> {
        held.addresses()
            .filter(|ip| held.interfaces(**ip).any(|i| i == self.iface.name))
            .copied()
            .collect()
    }

    /// Follows the held set: starts announcing new addresses, joins and leaves multicast groups.
    fn sync(&mut self, ip6: &AsyncRawSocket) {
        let held = self.held();
        let mine = self.mine(&held);
        let now = Instant::now();
        self.announcing.retain(|ip, _| mine.contains(ip));
        for ip in &mine {
            self.announcing.entry(*ip).or_insert(Announcing {
                taken: now,
                sent: 0,
            });
        }
        let groups: HashSet<[u8; 6]> = mine
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V6(v6) => Some(wire::multicast_mac(wire::solicited_node_multicast(*v6)).0),
                IpAddr::V4(_) => None,
            })
            .collect();
        for g in groups.difference(&self.joined) {
            if let Err(e) = ip6.join_multicast(*g) {
                warn!(interface = %self.iface.name, group = %format_mac(*g), error = %e, "cannot join multicast group");
            }
        }
        for g in self.joined.difference(&groups) {
            let _ = ip6.leave_multicast(*g);
        }
        self.joined = groups;
    }

    fn next_announcement(&self) -> Option<Instant> {
        self.announcing
            .values()
            .filter_map(|a| gratuitous_due(a.sent, self.shared.refresh).map(|d| a.taken + d))
            .min()
    }

    async fn announce_due(&mut self, arp: &AsyncRawSocket, ip6: &AsyncRawSocket) {
        let now = Instant::now();
        let refresh = self.shared.refresh;
        let mut due = Vec::new();
        for (ip, a) in &mut self.announcing {
            if let Some(d) = gratuitous_due(a.sent, refresh) {
                if a.taken + d <= now {
                    due.push((*ip, if a.sent < 5 { "takeover" } else { "refresh" }));
                    a.sent += 1;
                }
            }
        }
        for (ip, reason) in due {
            let result = match ip {
                IpAddr::V4(v4) => {
                    let a = arp.send(&wire::gratuitous_arp_request(self.mac, v4)).await;
                    let b = arp.send(&wire::gratuitous_arp_reply(self.mac, v4)).await;
                    a.and(b)
                }
                IpAddr::V6(v6) => {
                    ip6.send(&wire::unsolicited_neighbor_advert(self.mac, v6))
                        .await
                }
            };
            match result {
                Ok(()) => {
                    self.shared
                        .metrics
                        .gratuitous
                        .get_or_create(&ReasonLabels { reason })
                        .inc();
                    debug!(%ip, interface = %self.iface.name, reason, "gratuitous announcement");
                }
                Err(e) => {
                    warn!(%ip, interface = %self.iface.name, error = %e, "cannot send a gratuitous announcement")
                }
            }
        }
    }

    async fn frame(&mut self, bytes: &[u8], socket: &AsyncRawSocket) {
        let frame = match wire::parse_frame(bytes) {
            Ok(f) => f,
            Err(_) => {
                self.shared.metrics.malformed.inc();
                return;
            }
        };
        let held = self.held();
        let now = self.started.elapsed();
        let (query, reply, protocol) = match frame {
            Frame::Arp { eth, arp } => {
                let sender = IpAddr::V4(arp.sender_ip);
                if held.holds(sender) && arp.sender_mac != self.mac {
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
                let reply = wire::arp_reply(self.mac, arp.target_ip, arp.sender_mac, arp.sender_ip);
                (q, reply, "arp")
            }
            Frame::NeighborSolicit {
                eth,
                ip,
                target,
                source_lladdr,
            } => {
                let kind = if ip.src.is_unspecified() {
                    QueryKind::DadProbe
                } else {
                    QueryKind::NeighborSolicit
                };
                let to_mac = source_lladdr.unwrap_or(eth.src);
                let q = Query {
                    kind,
                    target: IpAddr::V6(target),
                    requester: eth.src.0,
                    interface: &self.iface.name,
                };
                let reply =
                    wire::neighbor_advert(self.mac, target, to_mac, ip.src, target, true, true);
                (q, reply, "ndp")
            }
            Frame::NeighborAdvert {
                eth,
                flags,
                target,
                target_lladdr,
                ..
            } => {
                let from = target_lladdr.unwrap_or(eth.src);
                if flags.overrides && held.holds(IpAddr::V6(target)) && from != self.mac {
                    self.foreign(IpAddr::V6(target), from).await;
                }
                return;
            }
            _ => return,
        };
        let address = query.target;
        if held.holds(address) {
            self.shared
                .metrics
                .requests
                .get_or_create(&AddressLabels {
                    address: address.to_string(),
                    protocol,
                })
                .inc();
        }
        match held.answer(&query, &mut self.limiter, now) {
            Answer::Reply => match socket.send(&reply).await {
                Ok(()) => {
                    self.shared
                        .metrics
                        .replies
                        .get_or_create(&AddressLabels {
                            address: address.to_string(),
                            protocol,
                        })
                        .inc();
                }
                Err(e) => {
                    warn!(%address, interface = %self.iface.name, error = %e, "cannot send a reply")
                }
            },
            Answer::Drop(reason) => {
                self.shared
                    .metrics
                    .dropped
                    .get_or_create(&ReasonLabels {
                        reason: reason.as_str(),
                    })
                    .inc();
            }
        }
    }

    async fn foreign(&self, ip: IpAddr, mac: MacAddr) {
        let _ = self
            .shared
            .events
            .send(LocalEvent::ForeignAnnouncement {
                ip,
                mac: mac.to_string(),
            })
            .await;
    }
}
