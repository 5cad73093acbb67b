//! Heartbeats on one interface: every `--heartbeat-interval`, one frame saying this node is
//! alive on its lease (with a digest of what it holds); every heartbeat heard from another node
//! is recorded in the shared [`Liveness`], which the controller reads to decide
//! (`ferrolb_core::liveness`). Runs inside each interface's responder, so it follows the
//! interfaces as they come and go.
//!
//! Heard heartbeats go straight into the shared record rather than through a queue, so a flood
//! of frames (forged or not) cannot crowd real heartbeats out of a full queue and make a live
//! holder look silent. Each heartbeat sent opens the answering [`Fence`] for `--suspect-after`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolb_core::liveness::{Hearing, Liveness};
use ferrolb_core::wire::MacAddr;
use ferrolb_core::wire::heartbeat::{ETHERTYPE, GROUP, HeartbeatRepr, parse_heartbeat_frame};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, warn};

use crate::fence::Fence;
use crate::links::stopped;
use crate::metrics::{Metrics, ReasonLabels};
use crate::sys::AsyncRawSocket;
use crate::sys::interfaces::Interface;

/// What the controller lets the heartbeats say: the lease (none: say nothing) and the digest of
/// the held addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Beat {
    /// The lease this node holds its claims on.
    pub lease: Option<i64>,
    /// `held_digest` of the addresses it answers for.
    pub digest: [u8; 8],
}

/// The heartbeat settings every interface shares.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name.
    pub node: String,
    /// Time between heartbeats.
    pub interval: Duration,
    /// The signing key; with one, only heartbeats signed with it are heard.
    pub key: Option<Arc<[u8]>>,
    /// What has been heard from the others, on the clock that starts at `clock`.
    pub liveness: Arc<Mutex<Liveness>>,
    /// The start of the liveness clock.
    pub clock: Instant,
    /// The sequence number, one for all interfaces: a responder started again (an interface
    /// that flapped) goes on counting, so signed heartbeats never look like replays.
    pub seq: Arc<AtomicU64>,
    /// The answering fence, opened for `window` by every heartbeat sent.
    pub fence: Arc<Fence>,
    /// `--suspect-after`.
    pub window: Duration,
}

impl Config {
    /// Records a heartbeat heard now; a poisoned lock (a panic elsewhere) is recovered, since
    /// the record is a plain map.
    fn hear(&self, hb: &HeartbeatRepr, signed: bool) -> Hearing {
        let at = self.clock.elapsed();
        let mut l = self
            .liveness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.heard(hb, at, signed)
    }
}

/// Sends and hears heartbeats on `iface` until `stop` turns true; errors end it (the responder
/// supervisor starts the interface again).
pub async fn run(
    iface: Interface,
    config: Config,
    mut beat: watch::Receiver<Beat>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let socket = AsyncRawSocket::open(iface.index, ETHERTYPE)?;
    socket.join_multicast(GROUP.0)?;
    let own = MacAddr(iface.mac);
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 512];
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return Ok(()),
            // A new lease or a changed held set is said at once: the first heartbeat on a lease
            // opens the fence, so a fresh holder answers without waiting for the next tick.
            woke = async {
                tokio::select! {
                    _ = tick.tick() => true,
                    changed = beat.changed() => changed.is_ok(),
                }
            } => {
                if !woke {
                    return Ok(());
                }
                let b = *beat.borrow_and_update();
                send(&socket, &iface, &config, b, &metrics).await;
            }
            got = socket.recv(&mut buf) => {
                let (n, outgoing) = got?;
                if outgoing {
                    continue;
                }
                hear(&buf[..n.min(buf.len())], own, &config, &metrics);
            }
        }
    }
}

/// Sends one heartbeat saying `b` (nothing without a lease); a heartbeat sent keeps the
/// answering fence open.
async fn send(
    socket: &AsyncRawSocket,
    iface: &Interface,
    config: &Config,
    b: Beat,
    metrics: &Metrics,
) {
    let Some(lease) = b.lease else { return };
    let seq = config.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let hb = HeartbeatRepr {
        node: config.node.clone(),
        lease,
        seq,
        digest: b.digest,
    };
    let Some(frame) = hb.frame(MacAddr(iface.mac), config.key.as_deref()) else {
        warn!(node = %config.node, "the node name is too long for heartbeats (63 bytes at most)");
        return;
    };
    match socket.send(&frame).await {
        Ok(_) => {
            config.fence.beat(Instant::now(), config.window);
            metrics.heartbeats_sent.inc();
        }
        Err(e) => debug!(interface = %iface.name, error = %e, "heartbeat not sent"),
    }
}

/// Records a heartbeat frame heard from another node (not from this one, not unsigned when
/// a key is set).
fn hear(bytes: &[u8], own: MacAddr, config: &Config, metrics: &Metrics) {
    let key = config.key.as_deref();
    match parse_heartbeat_frame(bytes, key) {
        Ok((src, hb, signed)) if src != own && hb.node != config.node => {
            if key.is_some() && !signed {
                metrics.heartbeats_refused.inc();
                return;
            }
            match config.hear(&hb, signed) {
                Hearing::Counted => metrics.heartbeats_heard.inc(),
                other => metrics
                    .heartbeats_ignored
                    .get_or_create(&ReasonLabels {
                        reason: other.as_str(),
                    })
                    .inc(),
            };
        }
        Ok(_) => {}
        Err(_) => {
            metrics.heartbeats_refused.inc();
        }
    }
}
