//! Heartbeats on one interface: every `--heartbeat-interval`, one frame saying this node is
//! alive on its lease (with a digest of what it holds); every heartbeat heard from another node
//! goes to the controller, which decides with `ferrolb_core::liveness`. Runs inside each
//! interface's responder, so it follows the interfaces as they come and go.

use std::sync::Arc;
use std::time::Duration;

use ferrolb_core::wire::MacAddr;
use ferrolb_core::wire::heartbeat::{ETHERTYPE, GROUP, HeartbeatRepr, parse_heartbeat_frame};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

use crate::controller::{LocalEvent, stopped};
use crate::metrics::Metrics;
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
}

/// Sends and hears heartbeats on `iface` until `stop` turns true; errors end it (the responder
/// supervisor starts the interface again).
pub async fn run(
    iface: Interface,
    config: Config,
    mut beat: watch::Receiver<Beat>,
    events: mpsc::Sender<LocalEvent>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let socket = AsyncRawSocket::open(iface.index, ETHERTYPE)?;
    socket.join_multicast(GROUP.0)?;
    let own = MacAddr(iface.mac);
    let key = config.key.as_deref();
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut buf = vec![0u8; 512];
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return Ok(()),
            _ = tick.tick() => {
                let b = *beat.borrow_and_update();
                let Some(lease) = b.lease else { continue };
                seq += 1;
                let hb = HeartbeatRepr { node: config.node.clone(), lease, seq, digest: b.digest };
                match hb.frame(own, key) {
                    Some(frame) => {
                        if let Err(e) = socket.send(&frame).await {
                            debug!(interface = %iface.name, error = %e, "heartbeat not sent");
                        } else {
                            metrics.heartbeats_sent.inc();
                        }
                    }
                    None => warn!(node = %config.node, "the node name is too long for heartbeats (63 bytes at most)"),
                }
            }
            got = socket.recv(&mut buf) => {
                let (n, outgoing) = got?;
                if outgoing {
                    continue;
                }
                match parse_heartbeat_frame(&buf[..n.min(buf.len())], key) {
                    Ok((src, hb, signed)) if src != own && hb.node != config.node => {
                        if key.is_some() && !signed {
                            metrics.heartbeats_refused.inc();
                            continue;
                        }
                        metrics.heartbeats_heard.inc();
                        // The controller may be busy: a heartbeat lost here is one of many.
                        let _ = events.try_send(LocalEvent::Heartbeat(hb));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        metrics.heartbeats_refused.inc();
                    }
                }
            }
        }
    }
}
