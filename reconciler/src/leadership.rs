//! Whether the leader may still write where etcd does not fence its writes. Writes to etcd are
//! transactions that check the leader key (`store`); writes to Kubernetes are not, so the
//! leader makes them only while its lease is confirmed for a while longer, and asks again
//! before each one: leadership can be lost between the decision and the write.

use std::time::Duration;

use ferrolb_etcd::LeaseState;
use tokio::sync::watch;
use tokio::time::Instant;

/// The leader's lease, as its renewals report it.
#[derive(Clone, Debug)]
pub struct Leadership {
    lease: Option<watch::Receiver<LeaseState>>,
    margin: Duration,
}

impl Leadership {
    /// Leadership on the lease whose renewals report into `lease` (`None`: no lease, never
    /// safe); writes stop once the lease is confirmed for no more than `margin`.
    pub fn new(lease: Option<watch::Receiver<LeaseState>>, margin: Duration) -> Self {
        Leadership { lease, margin }
    }

    /// Whether a write may start at `now`.
    pub fn safe_at(&self, now: Instant) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|rx| safe(&rx.borrow(), now, self.margin))
    }
}

/// Whether a lease in `state` lasts more than `margin` after `now`.
pub fn safe(state: &LeaseState, now: Instant, margin: Duration) -> bool {
    match state {
        LeaseState::Alive { until, .. } => until.saturating_duration_since(now) > margin,
        LeaseState::Expired | LeaseState::Failed(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARGIN: Duration = Duration::from_millis(666);

    fn alive(now: Instant, left: Duration) -> LeaseState {
        LeaseState::Alive {
            until: now + left,
            sent: now,
        }
    }

    #[test]
    fn writes_are_safe_only_while_the_lease_lasts_more_than_the_margin() {
        let now = Instant::now();
        assert!(safe(&alive(now, MARGIN * 3), now, MARGIN));
        assert!(safe(&alive(now, MARGIN * 3), now + MARGIN, MARGIN));
        assert!(!safe(&alive(now, MARGIN * 3), now + MARGIN * 2, MARGIN));
        assert!(!safe(&alive(now, MARGIN * 3), now + MARGIN * 4, MARGIN));
        assert!(!safe(&LeaseState::Expired, now, MARGIN));
        assert!(!safe(&LeaseState::Failed("no answer".into()), now, MARGIN));
    }

    /// A round decided while its lease was sound; the lease is reported lost before its
    /// writes start: none of them may start.
    #[test]
    fn leadership_lost_between_the_decision_and_the_write_stops_the_write() {
        let now = Instant::now();
        let (tx, rx) = watch::channel(alive(now, MARGIN * 3));
        let leadership = Leadership::new(Some(rx), MARGIN);
        assert!(leadership.safe_at(now), "at the decision");
        tx.send_replace(LeaseState::Failed("renewals unanswered".into()));
        assert!(!leadership.safe_at(now), "at the write");
        // Renewals that stall without an error: the last confirmation runs out on its own.
        tx.send_replace(alive(now, MARGIN * 3));
        assert!(!leadership.safe_at(now + MARGIN * 2 + Duration::from_millis(1)));
        assert!(!Leadership::new(None, MARGIN).safe_at(now));
    }
}
