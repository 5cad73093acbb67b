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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrolb_core::respond::{self, HeldSet, RateLimiter, Response, Schedule, Station};
use ferrolb_core::wire::{self, MacAddr};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::links::{LocalEvent, format_mac, stopped};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{AddressLabels, IpLabels, Metrics, ReasonLabels};
use crate::sys::interfaces::Interface;
use crate::sys::{ETH_P_ARP, ETH_P_IPV6, RawSocket};

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
    /// Heartbeats: what to say, and the settings (none: heartbeats off).
    pub heartbeat: Option<(
        watch::Receiver<crate::heartbeat::Beat>,
        crate::heartbeat::Config,
    )>,
    /// The answering fence: nothing is sent while it is closed.
    pub fence: Arc<crate::fence::Fence>,
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

/// Counters of one held address, looked up once per change of the held set rather than once
/// per frame.
#[derive(Clone, Debug, Default)]
struct AddressCounters {
    requests: Counter,
    replies: Counter,
    /// MetalLB's names of the same counts.
    metallb_requests: Gauge,
    metallb_responses: Gauge,
}

/// How soon a gratuitous announcement held back by the closed fence is tried again.
const FENCED_RETRY: Duration = Duration::from_millis(10);

/// How long a receiving thread blocks before it looks at the stop flag.
const RECV_TIMEOUT: Duration = Duration::from_millis(200);

/// Answers one interface. Each of its two raw sockets (ARP, IPv6) is read by a thread of its
/// own in blocking reads, so an arriving request wakes exactly the thread that answers it, with
/// no event loop in between. Gratuitous announcements and multicast memberships run in a task
/// ([`announce`]) that sends on the same sockets.
async fn respond(
    iface: Interface,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let arp = Arc::new(RawSocket::open(iface.index, ETH_P_ARP)?);
    let ip6 = Arc::new(RawSocket::open(iface.index, ETH_P_IPV6)?);
    arp.set_blocking(RECV_TIMEOUT)?;
    ip6.set_blocking(RECV_TIMEOUT)?;
    info!(interface = %iface.name, mac = %format_mac(iface.mac), "answering ARP and NDP");
    let halt = Arc::new(AtomicBool::new(false));
    let (done_tx, mut done_rx) = mpsc::channel::<std::io::Error>(2);
    let sockets = [(arp.clone(), 2048), (ip6.clone(), 9216)];
    let threads = readers(&iface, &shared, sockets, &halt, done_tx)?;
    // Whatever ends this future (its result, or the supervisor aborting it), the threads stop
    // and the announcer ends with it.
    let mut heartbeats = match shared.heartbeat.clone() {
        Some((beat, config)) => tokio::spawn(crate::heartbeat::run(
            iface.clone(),
            config,
            beat,
            shared.metrics.clone(),
            stop.clone(),
        )),
        None => tokio::spawn(std::future::pending()),
    };
    let _guard = Halt {
        halt: halt.clone(),
        announcer: tokio::spawn(announce(iface, shared, arp, ip6, stop.clone())),
        heartbeats: heartbeats.abort_handle(),
    };
    let result = tokio::select! {
        _ = stopped(&mut stop) => Ok(()),
        Some(e) = done_rx.recv() => Err(e),
        ended = &mut heartbeats => match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(std::io::Error::other(format!("heartbeats: {e}"))),
        },
    };
    halt.store(true, Ordering::Relaxed);
    // The threads notice the flag within one receive timeout.
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    result
}

/// Starts a receiving thread per socket (with its buffer size), answering what it reads; the
/// threads stop once `halt` is set, and each says on `done` when it ends, for any reason.
fn readers(
    iface: &Interface,
    shared: &Shared,
    sockets: [(Arc<RawSocket>, usize); 2],
    halt: &Arc<AtomicBool>,
    done_tx: mpsc::Sender<std::io::Error>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (socket, buf_len) in sockets {
        let mut r = Responder::new(iface, shared);
        let (flag, done) = (halt.clone(), done_tx.clone());
        let name = format!("answer-{}", iface.name);
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            // A thread that ends for any reason, a panic included, says so, so the supervisor
            // starts the interface again.
            let _ended = Ended(done.clone());
            let mut buf = vec![0u8; buf_len];
            while !flag.load(Ordering::Relaxed) {
                match socket.recv(&mut buf) {
                    Ok((n, false)) => r.frame(&buf[..n.min(buf.len())], &socket),
                    Ok((_, true)) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        let _ = done.try_send(e);
                        return;
                    }
                }
            }
        });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                halt.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    Ok(threads)
}

/// Reports the end of a receiving thread.
struct Ended(mpsc::Sender<std::io::Error>);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self
            .0
            .try_send(std::io::Error::other("a receiving thread ended"));
    }
}

/// Stops an interface's receiving threads, announcer and heartbeats when dropped.
struct Halt {
    halt: Arc<AtomicBool>,
    announcer: JoinHandle<()>,
    heartbeats: tokio::task::AbortHandle,
}

impl Drop for Halt {
    fn drop(&mut self) {
        self.halt.store(true, Ordering::Relaxed);
        self.announcer.abort();
        self.heartbeats.abort();
    }
}

/// The state of one receiving thread.
struct Responder {
    iface: String,
    mac: MacAddr,
    held_rx: watch::Receiver<Arc<HeldSet>>,
    held: Arc<HeldSet>,
    counters: HashMap<IpAddr, AddressCounters>,
    shared: Shared,
    limiter: RateLimiter,
    started: Instant,
    swept: Duration,
}

/// Addresses of `held` held on `interface`.
fn held_on(held: &HeldSet, interface: &str) -> HashSet<IpAddr> {
    held.addresses()
        .filter(|ip| held.interfaces(**ip).any(|i| i == interface))
        .copied()
        .collect()
}

impl Responder {
    fn new(iface: &Interface, shared: &Shared) -> Self {
        let mut held_rx = shared.held.clone();
        let held = held_rx.borrow_and_update().clone();
        let mut r = Responder {
            iface: iface.name.clone(),
            mac: MacAddr(iface.mac),
            held_rx,
            held,
            counters: HashMap::new(),
            shared: shared.clone(),
            limiter: RateLimiter::default(),
            started: Instant::now(),
            swept: Duration::ZERO,
        };
        r.refresh_counters();
        r
    }

    fn refresh_counters(&mut self) {
        let metrics = &self.shared.metrics;
        self.counters = self
            .held
            .addresses()
            .map(|ip| {
                let protocol = if ip.is_ipv4() { "arp" } else { "ndp" };
                let labels = AddressLabels {
                    address: ip.to_string(),
                    protocol,
                };
                let ip_labels = IpLabels { ip: ip.to_string() };
                let c = AddressCounters {
                    requests: metrics.requests.get_or_create_owned(&labels),
                    replies: metrics.replies.get_or_create_owned(&labels),
                    metallb_requests: metrics.metallb_requests.get_or_create_owned(&ip_labels),
                    metallb_responses: metrics.metallb_responses.get_or_create_owned(&ip_labels),
                };
                (*ip, c)
            })
            .collect();
    }

    /// Handles one received frame.
    fn frame(&mut self, bytes: &[u8], socket: &RawSocket) {
        if self.held_rx.has_changed().unwrap_or(false) {
            self.held = self.held_rx.borrow_and_update().clone();
            self.refresh_counters();
        }
        let Ok(frame) = wire::parse_frame(bytes) else {
            self.shared.metrics.malformed.inc();
            return;
        };
        let now = self.started.elapsed();
        if now.saturating_sub(self.swept) > Duration::from_secs(10) {
            self.limiter.forget_idle(now);
            self.swept = now;
        }
        let station = Station {
            interface: &self.iface,
            mac: self.mac,
        };
        // The fence is read here, in the answering thread, at the instant of an answer: a
        // stalled event loop cannot keep this node answering after others took the address.
        let fence = &self.shared.fence;
        let open = || fence.is_open(Instant::now());
        let verdict = respond::decide(&frame, &self.held, station, &mut self.limiter, now, open);
        if let Some((ip, mac)) = verdict.foreign {
            self.foreign(ip, mac);
        }
        let Some((address, response)) = verdict.query else {
            return;
        };
        let counters = self.counters.get(&address);
        if let Some(c) = counters {
            c.requests.inc();
            c.metallb_requests.inc();
        }
        match response {
            Response::Send(reply) => match socket.send(&reply) {
                Ok(()) => {
                    if let Some(c) = counters {
                        c.replies.inc();
                        c.metallb_responses.inc();
                    }
                }
                Err(e) => {
                    warn!(%address, interface = %self.iface, error = %e, "cannot send a reply")
                }
            },
            Response::Drop(reason) => {
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

    fn foreign(&self, ip: IpAddr, mac: MacAddr) {
        // From a plain thread: never block; the controller drains the queue quickly, and a
        // repeated announcement arrives again if this one is dropped.
        let _ = self
            .shared
            .events
            .try_send(LocalEvent::ForeignAnnouncement {
                ip,
                mac: mac.to_string(),
            });
    }
}

/// Gratuitous announcements and multicast memberships of one interface: follows the held set,
/// sends at once, then every 1.1 s for 5 s, then every `--garp-refresh` if set.
async fn announce(
    iface: Interface,
    shared: Shared,
    arp: Arc<RawSocket>,
    ip6: Arc<RawSocket>,
    mut stop: watch::Receiver<bool>,
) {
    let mac = MacAddr(iface.mac);
    let base = Instant::now();
    let mut held_rx = shared.held.clone();
    let mut schedule = Schedule::default();
    let mut joined: HashSet<[u8; 6]> = HashSet::new();
    loop {
        // Follow the held set.
        let mine = held_on(&held_rx.borrow_and_update(), &iface.name);
        schedule.follow(&mine, base.elapsed());
        joined = join_groups(&ip6, &iface, &mine, joined);
        // Send what is due, then sleep until the next one or a change.
        loop {
            let now = Instant::now();
            let fenced = !shared.fence.is_open(now);
            let (due, next) = schedule.due(now - base, shared.refresh, fenced, FENCED_RETRY);
            for (ip, why) in due {
                let result = match ip {
                    IpAddr::V4(v4) => {
                        let x = arp.send(&wire::gratuitous_arp_request(mac, v4));
                        let y = arp.send(&wire::gratuitous_arp_reply(mac, v4));
                        x.and(y)
                    }
                    IpAddr::V6(v6) => ip6.send(&wire::unsolicited_neighbor_advert(mac, v6)),
                };
                let reason = why.as_str();
                match result {
                    Ok(()) => {
                        let labels = ReasonLabels { reason };
                        shared.metrics.gratuitous.get_or_create(&labels).inc();
                        let ip_labels = IpLabels { ip: ip.to_string() };
                        shared
                            .metrics
                            .metallb_gratuitous
                            .get_or_create(&ip_labels)
                            .inc();
                        debug!(%ip, interface = %iface.name, reason, "gratuitous announcement");
                    }
                    Err(e) => {
                        warn!(%ip, interface = %iface.name, error = %e, "cannot send a gratuitous announcement")
                    }
                }
            }
            let wake = next.map_or(now + Duration::from_secs(3600), |n| base + n);
            tokio::select! {
                _ = stopped(&mut stop) => return,
                changed = held_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// Joins the solicited-node multicast groups of the IPv6 addresses in `mine` and leaves those
/// of addresses no longer held; returns the groups joined now.
fn join_groups(
    ip6: &RawSocket,
    iface: &Interface,
    mine: &HashSet<IpAddr>,
    joined: HashSet<[u8; 6]>,
) -> HashSet<[u8; 6]> {
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
    groups
}
