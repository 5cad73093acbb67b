//! The answering fence: the responder threads answer, and the heartbeats and gratuitous
//! announcements go out, only while it is open at that instant. It is what keeps a speaker whose
//! event loop stalls (CPU starvation, a huge etcd event, a slow disk) from answering after the
//! others have taken its addresses.
//!
//! Two deadlines close it, each checked by the thread that answers, with no help from the
//! controller:
//! - **beat**: every heartbeat sent opens it for `--suspect-after` more (without heartbeats, a
//!   pulse on the same event loop does, for a third of the TTL). A stalled event loop sends no
//!   heartbeats, so the fence closes exactly when the first peer may start to suspect this node;
//!   a takeover needs that silence and then a suspicion, a revocation and a claim in etcd, so the
//!   stalled holder has gone quiet before a new holder answers.
//! - **lease** (`--on-etcd-loss release`): the lease's end as last confirmed by a keepalive
//!   (counted from when the keepalive was sent), less a margin. With `hold` there is no lease
//!   deadline: answering on through an etcd outage is that mode's documented exception.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// No deadline.
const OPEN: u64 = u64::MAX;

/// The fence; share it in an `Arc`.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    beat_until: AtomicU64,
    lease_until: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Fence::new()
    }
}

impl Fence {
    /// A closed fence with no lease deadline.
    pub fn new() -> Self {
        Fence {
            base: Instant::now(),
            beat_until: AtomicU64::new(0),
            lease_until: AtomicU64::new(OPEN),
        }
    }

    fn at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(OPEN - 1)
    }

    /// A sign of life of the event loop at `now`: open until `now + window` (never shortens).
    pub fn beat(&self, now: Instant, window: Duration) {
        self.beat_until
            .fetch_max(self.at(now + window), Ordering::AcqRel);
    }

    /// Closes the beat deadline at once (the lease is gone).
    pub fn close(&self) {
        self.beat_until.store(0, Ordering::Release);
    }

    /// The lease deadline: `None` for none (`hold`).
    pub fn set_lease_until(&self, until: Option<Instant>) {
        let v = until.map_or(OPEN, |u| self.at(u));
        self.lease_until.store(v, Ordering::Release);
    }

    /// Whether answering is allowed at `now`.
    pub fn is_open(&self, now: Instant) -> bool {
        let t = self.at(now);
        t < self.beat_until.load(Ordering::Acquire) && t < self.lease_until.load(Ordering::Acquire)
    }
}

/// Opens `fence` for `window` every third of it, until `stop` turns true: the sign of life of
/// the event loop when no heartbeats are sent.
pub async fn pulse(fence: Arc<Fence>, window: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(window / 3);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = crate::controller::stopped(&mut stop) => return,
            _ = tick.tick() => fence.beat(Instant::now(), window),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn closed_until_the_first_beat_then_open_for_the_window_only() {
        let f = Fence::new();
        let t0 = Instant::now();
        assert!(!f.is_open(t0));
        f.beat(t0, 300 * MS);
        assert!(f.is_open(t0 + 299 * MS));
        assert!(!f.is_open(t0 + 300 * MS), "no beat for the window: closed");
        // A late, shorter beat never shortens the window.
        f.beat(t0, 100 * MS);
        assert!(f.is_open(t0 + 299 * MS));
        f.beat(t0 + 200 * MS, 300 * MS);
        assert!(f.is_open(t0 + 499 * MS));
        f.close();
        assert!(!f.is_open(t0 + 201 * MS));
    }

    #[test]
    fn the_lease_deadline_closes_it_whatever_the_beats_say() {
        let f = Fence::new();
        let t0 = Instant::now();
        f.beat(t0, 10_000 * MS);
        f.set_lease_until(Some(t0 + 500 * MS));
        assert!(f.is_open(t0 + 499 * MS));
        assert!(!f.is_open(t0 + 500 * MS));
        f.set_lease_until(None);
        assert!(f.is_open(t0 + 5000 * MS));
    }
}
