//! The answering fence: the responder threads answer, and the heartbeats and gratuitous
//! announcements go out, only while it is open at that instant. It is what keeps a speaker whose
//! event loop stalls (CPU starvation, a huge etcd event, a slow disk) from answering after the
//! others have taken its addresses.
//!
//! Two deadlines close it, each checked by the thread that answers, with no help from the
//! controller:
//! - **beat**: every heartbeat sent keeps it open for `--suspect-after` more (without heartbeats,
//!   a pulse on the same event loop does, for a third of the TTL). A stalled event loop sends no
//!   heartbeats, so the fence closes exactly when the first peer may start to suspect this node;
//!   a takeover needs that silence and then a suspicion, a revocation and a claim in etcd, so the
//!   stalled holder has gone quiet before a new holder answers. Once closed, a heartbeat cannot
//!   open it again: after such a silence the others may have ended the lease, so only etcd
//!   confirming the lease by a request sent after the fence closed ([`Fence::reopen`]: a
//!   keepalive answer, a lease granted or found alive) does. A holder back from a stall stays
//!   silent until then, instead of answering on a lease that may be gone.
//! - **lease** (`--on-etcd-loss release`): the lease's end as last confirmed by a keepalive
//!   (counted from when the keepalive was sent), less a margin. With `hold` there is no lease
//!   deadline: answering on through an etcd outage is that mode's documented exception.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::{Instant, MissedTickBehavior};

/// No deadline.
const OPEN: u64 = u64::MAX;

/// The fence; share it in an `Arc`.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    beat_until: AtomicU64,
    lease_until: AtomicU64,
    /// Notified when a beat finds the fence closed: the keepalive task asks etcd at once, so a
    /// holder that was only slow is open again after one round trip, not a keepalive interval.
    confirm: Arc<Notify>,
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
            confirm: Arc::default(),
        }
    }

    fn at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(OPEN - 1)
    }

    /// What a closed fence notifies to ask for a confirmation of the lease (see `beat`).
    pub fn confirmations(&self) -> Arc<Notify> {
        self.confirm.clone()
    }

    /// A sign of life of the event loop at `now`: keeps the fence open until `now + window`
    /// (never shortens), but only while it is still open; false when it had closed, and then
    /// it asks for a confirmation of the lease ([`confirmations`](Self::confirmations)).
    pub fn beat(&self, now: Instant, window: Duration) -> bool {
        let (t, until) = (self.at(now), self.at(now + window));
        let mut current = self.beat_until.load(Ordering::Acquire);
        loop {
            if t >= current {
                self.confirm.notify_one();
                return false;
            }
            match self.beat_until.compare_exchange_weak(
                current,
                current.max(until),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// etcd confirmed the lease in answer to a request sent at `sent`: opens the fence until
    /// `now + window` if that request went out after the fence closed (or while it was open);
    /// a confirmation asked for before a silence says nothing about after it.
    pub fn reopen(&self, sent: Instant, now: Instant, window: Duration) {
        let (s, until) = (self.at(sent), self.at(now + window));
        let mut current = self.beat_until.load(Ordering::Acquire);
        loop {
            let closed = self.at(now) >= current;
            if closed && s < current {
                return;
            }
            match self.beat_until.compare_exchange_weak(
                current,
                current.max(until),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Closes the beat deadline at once (the lease is gone); only a confirmation asked for
    /// from now on reopens it.
    pub fn close(&self) {
        self.beat_until
            .store(self.at(Instant::now()), Ordering::Release);
    }

    /// The lease deadline: `None` for none (`hold`).
    pub fn set_lease_until(&self, until: Option<Instant>) {
        let v = until.map_or(OPEN, |u| self.at(u));
        self.lease_until.store(v, Ordering::Release);
    }

    /// Whether the beat deadline has passed at `now`: the event loop went silent for the fence
    /// window (and no confirmation of the lease since reopened it), so the others may have
    /// suspected this node and taken its addresses.
    pub fn beat_closed(&self, now: Instant) -> bool {
        self.at(now) >= self.beat_until.load(Ordering::Acquire)
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
            () = crate::links::stopped(&mut stop) => return,
            _ = tick.tick() => {
                fence.beat(Instant::now(), window);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn closed_until_etcd_confirms_then_kept_open_by_beats_for_the_window_only() {
        let f = Fence::new();
        let t0 = Instant::now();
        assert!(!f.is_open(t0));
        assert!(!f.beat(t0, 300 * MS), "a heartbeat alone does not open it");
        assert!(!f.is_open(t0));
        f.reopen(t0, t0, 300 * MS);
        assert!(f.is_open(t0 + 299 * MS));
        assert!(!f.is_open(t0 + 300 * MS), "no beat for the window: closed");
        // A late, shorter beat never shortens the window.
        assert!(f.beat(t0, 100 * MS));
        assert!(f.is_open(t0 + 299 * MS));
        assert!(f.beat(t0 + 200 * MS, 300 * MS));
        assert!(f.is_open(t0 + 499 * MS));
        f.close();
        assert!(!f.is_open(t0 + 201 * MS));
    }

    #[test]
    fn after_a_silence_only_a_confirmation_asked_for_after_it_reopens() {
        let f = Fence::new();
        let t0 = Instant::now();
        f.reopen(t0, t0, 300 * MS);
        // The event loop stalls from 0 to 4 s: the fence closed at 300 ms.
        let back = t0 + 4000 * MS;
        let asks = f.confirmations();
        assert!(
            !f.beat(back, 300 * MS),
            "the first heartbeat after the stall"
        );
        // ...and asks the keepalive task for a confirmation at once.
        let asked = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(async {
                tokio::time::timeout(Duration::ZERO, asks.notified())
                    .await
                    .is_ok()
            });
        assert!(asked, "a closed fence asks for a confirmation");
        assert!(!f.is_open(back));
        // An answer to a keepalive sent before the stall does not reopen it...
        f.reopen(t0 + 100 * MS, back, 300 * MS);
        assert!(!f.is_open(back));
        // ...one sent after the stall does, and heartbeats keep it open again.
        f.reopen(back + 5 * MS, back + 10 * MS, 300 * MS);
        assert!(f.is_open(back + 10 * MS));
        assert!(f.beat(back + 100 * MS, 300 * MS));
        assert!(f.is_open(back + 399 * MS));
    }

    #[test]
    fn the_lease_deadline_closes_it_whatever_the_beats_say() {
        let f = Fence::new();
        let t0 = Instant::now();
        f.reopen(t0, t0, 10_000 * MS);
        f.set_lease_until(Some(t0 + 500 * MS));
        assert!(f.is_open(t0 + 499 * MS));
        assert!(!f.is_open(t0 + 500 * MS));
        f.set_lease_until(None);
        assert!(f.is_open(t0 + 5000 * MS));
    }
}
