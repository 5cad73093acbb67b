//! One session with etcd, as both daemons hold it: connect (the client spreads requests over
//! every endpoint and moves to the next when one fails), take a lease (resume the one held
//! before if etcd says it is alive, or grant a new one), renew it from a task of its own, list
//! a prefix and watch it from the listing's revision, and revoke the lease on the way out. What
//! happens is reported as [`SessionEvent`]s: key changes, and the lease's [`LeaseState`].
//!
//! ```text
//!  Opening: connect ─▶ resume | grant ─▶ renew (keepalive task) ─▶ Session
//!  Session: list_then_watch (a paged listing at revision r, a watch from r + 1)
//!           next: watch message | lease news ─▶ SessionEvent
//! ```
//!
//! Every request is bounded by the session's step (a third of the TTL): etcd that does not
//! answer ends the session with an error, and the daemon starts a new one.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, WatchStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::{EtcdArgs, Keepalive, KeyChange, LeaseState, bounded};

/// What happened in a session.
#[derive(Debug)]
pub enum SessionEvent {
    /// Changes the watch delivered, in revision order.
    Changes(Vec<KeyChange>),
    /// News of the lease from the renewals.
    Lease(LeaseState),
}

/// A session: a client, a lease kept alive, and (after [`Session::list_then_watch`]) a watch.
pub struct Session {
    /// The client (cheap to clone) for the daemon's own requests.
    pub client: Client,
    /// The session's lease.
    pub lease: i64,
    step: Duration,
    keepalive: Keepalive,
    watch: Option<WatchStream>,
}

/// A connection on its way to a session: take a lease ([`Opening::resume`], or
/// [`Opening::grant`]), then start renewing it ([`Opening::renew`]).
pub struct Opening {
    client: Client,
    step: Duration,
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opening").field("step", &self.step).finish()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("lease", &self.lease)
            .field("watching", &self.watch.is_some())
            .finish()
    }
}

impl Opening {
    /// Connects to the endpoints; each later request is bounded by `step`.
    pub async fn connect(
        args: &EtcdArgs,
        options: ConnectOptions,
        step: Duration,
    ) -> anyhow::Result<Opening> {
        let client = bounded(step, "connect", args.connect(options)).await?;
        Ok(Opening { client, step })
    }

    /// Whether lease `id` (held before) is alive: until when, and when that was asked; `None`
    /// when etcd says it is gone. An error means etcd did not answer: the lease may well be
    /// alive, and only etcd saying so ends it. When the member says it is gone, `witness` (a
    /// key that lives on the lease) decides by a linearizable read: a member cut off from its
    /// quorum can call a live lease gone, a read that needs the quorum cannot. (A lease the
    /// witness confirms counts as alive for `ttl`; the first renewal, sent at once, says more.)
    pub async fn resume(
        &mut self,
        id: i64,
        ttl: Duration,
        witness: Option<&str>,
    ) -> anyhow::Result<Option<(Instant, Instant)>> {
        let asked = Instant::now();
        let status = async { Ok(self.client.lease_time_to_live(id, None).await?.ttl()) };
        let left = bounded(self.step, "lease status", status).await?;
        if left > 0 {
            let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
            return Ok(Some((asked + left, asked)));
        }
        let Some(key) = witness else {
            return Ok(None);
        };
        let read = async { Ok(self.client.get(key, None).await?) };
        let resp = bounded(self.step, "lease check", read).await?;
        let on_lease = resp.kvs().first().is_some_and(|kv| kv.lease() == id);
        Ok(on_lease.then_some((asked + ttl, asked)))
    }

    /// A new lease of `ttl` seconds, and when it was asked for.
    pub async fn grant(&mut self, ttl: i64) -> anyhow::Result<(i64, Instant)> {
        let asked = Instant::now();
        let grant = async { Ok(self.client.lease_grant(ttl, None).await?.id()) };
        Ok((bounded(self.step, "lease grant", grant).await?, asked))
    }

    /// Starts renewing `lease` (alive for `ttl` as far as anyone knows now) every step, and at
    /// once whenever `renew` is notified: the session.
    pub async fn renew(
        mut self,
        lease: i64,
        ttl: Duration,
        renew: Option<Arc<Notify>>,
    ) -> anyhow::Result<Session> {
        let renewals = crate::keep_alive(&mut self.client, lease, ttl, self.step, renew);
        let keepalive = bounded(self.step, "keepalive", renewals).await?;
        Ok(Session {
            client: self.client,
            lease,
            step: self.step,
            keepalive,
            watch: None,
        })
    }
}

impl Session {
    /// Lists everything under `prefix` (one consistent view, however large) and watches it
    /// from just after the listing: no change is missed or seen twice.
    pub async fn list_then_watch(&mut self, prefix: &str) -> anyhow::Result<Vec<KeyChange>> {
        let listing = crate::list_prefix(&mut self.client, prefix);
        let (changes, revision) = bounded(self.step, "list", listing).await?;
        let watching = crate::watch_prefix(&mut self.client, prefix, revision + 1);
        self.watch = Some(bounded(self.step, "watch", watching).await?);
        Ok(changes)
    }

    /// The lease's state as the renewals last reported it, to be read at any time.
    pub fn lease_state(&self) -> watch::Receiver<LeaseState> {
        self.keepalive.state.clone()
    }

    /// The next event: changes from the watch (once watching) or news of the lease. An error
    /// when the watch fails or ends, or the renewal task is gone: the session is over.
    /// Cancel-safe (use it in `select!`).
    pub async fn next(&mut self) -> anyhow::Result<SessionEvent> {
        let watched = async {
            match self.watch.as_mut() {
                Some(w) => crate::watch_changes(w.message().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changes = watched => Ok(SessionEvent::Changes(changes?)),
            changed = self.keepalive.state.changed() => {
                changed.map_err(|_| anyhow::anyhow!("the keepalive task ended"))?;
                Ok(SessionEvent::Lease(self.keepalive.state.borrow_and_update().clone()))
            }
        }
    }

    /// Ends the lease now, within `limit`: every key on it goes at once.
    pub async fn revoke(&mut self, limit: Duration) -> anyhow::Result<()> {
        let lease = self.lease;
        let revoke = async { Ok(self.client.lease_revoke(lease).await.map(|_| ())?) };
        bounded(limit, "revoke", revoke).await
    }
}
