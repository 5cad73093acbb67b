//! What links the speaker's tasks: the messages and channels between the controller, the
//! responders and the heartbeats, and the small helpers they share.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ferrolb_core::liveness::Liveness;
use ferrolb_core::respond::HeldSet;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::fence::Fence;
use crate::heartbeat::Beat;
use crate::sys::interfaces::Interface;

/// Something a responder saw that the controller must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalEvent {
    /// Another MAC announced an address this node answers for (gratuitous ARP or override NA).
    ForeignAnnouncement {
        /// The address.
        ip: IpAddr,
        /// The other MAC, for the log.
        mac: String,
    },
}

/// What links the controller to the responders and the heartbeat tasks.
#[derive(Debug)]
pub struct Links {
    /// The addresses to answer for, to the responders.
    pub held_tx: watch::Sender<Arc<HeldSet>>,
    /// The usable interfaces, to the responder supervisor.
    pub interfaces_tx: watch::Sender<Vec<Interface>>,
    /// What the responders saw.
    pub events: mpsc::Receiver<LocalEvent>,
    /// What the heartbeats say.
    pub beat_tx: watch::Sender<Beat>,
    /// What the heartbeat tasks heard, on the clock started at `clock`.
    pub liveness: Arc<Mutex<Liveness>>,
    /// The start of the speaker's clock (liveness, and the decisions' time).
    pub clock: Instant,
    /// The responders' answering fence.
    pub fence: Arc<Fence>,
    /// Ready (`/readyz`): the current etcd session holds the lease and has read the
    /// announcements and claims; false before, between sessions and once the lease is lost.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

/// Resolves once `stop` turns true (or its sender is gone). The guard `wait_for` returns is
/// dropped here, so callers can use this in `select!` next to other awaits.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
