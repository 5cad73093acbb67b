//! The speaker's etcd operations, each one request: registration, suspicions, revocation,
//! claiming, taking over and releasing. Claims are created only when absent, replaced only while
//! still on a suspect's lease with the quorum's suspicions in place, and deleted only while still
//! on this speaker's lease, each in one transaction, so etcd alone decides who holds what.

use std::net::IpAddr;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use ferrolb_core::layout::{self, Claim, Keys, Registration};

use ferrolb_core::view::KeyChange;

/// A connected etcd client with the speaker's keys.
#[derive(Clone)]
pub struct Etcd {
    /// The client (cheap to clone).
    pub client: Client,
    keys: Keys,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("prefix", &self.keys.prefix())
            .finish()
    }
}

impl Etcd {
    /// The speaker's requests on `client`, under `prefix`.
    pub fn new(client: Client, prefix: &str) -> Self {
        Etcd {
            client,
            keys: Keys::new(prefix),
        }
    }

    /// Records that `observer` (this node, on `lease`) hears nothing from `node` on
    /// `suspected_lease`.
    pub async fn suspect(
        &mut self,
        node: &str,
        observer: &str,
        suspected_lease: i64,
        lease: i64,
    ) -> anyhow::Result<()> {
        let value = layout::encode(&layout::Suspicion {
            lease: suspected_lease,
        });
        self.client
            .put(
                self.keys.suspect(node, observer),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        Ok(())
    }

    /// Withdraws `observer`'s suspicion of `node`.
    pub async fn unsuspect(&mut self, node: &str, observer: &str) -> anyhow::Result<()> {
        self.client
            .delete(self.keys.suspect(node, observer), None)
            .await?;
        Ok(())
    }

    /// Ends the lease now: every key on it (registration, claims) is deleted at once.
    pub async fn revoke(&mut self, lease: i64) -> anyhow::Result<()> {
        self.client.lease_revoke(lease).await?;
        Ok(())
    }

    /// Writes this speaker's registration on its lease.
    pub async fn register(&mut self, reg: &Registration, lease: i64) -> anyhow::Result<()> {
        self.client
            .put(
                self.keys.speaker(&reg.node),
                layout::encode(reg),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        Ok(())
    }

    /// Creates the claim on `ip` if nobody holds it. When it exists already, the transaction
    /// reads it instead, so the speaker learns who won without waiting for its watch.
    pub async fn claim(
        &mut self,
        ip: IpAddr,
        claim: &Claim,
        lease: i64,
    ) -> anyhow::Result<ClaimOutcome> {
        let key = self.keys.claim(ip);
        let when = vec![Compare::create_revision(key.clone(), CompareOp::Equal, 0)];
        self.claim_txn(key, claim, lease, when).await
    }

    /// Puts `claim` at `key` on `lease` when every comparison in `when` holds, else reads the
    /// claim there.
    async fn claim_txn(
        &mut self,
        key: String,
        claim: &Claim,
        lease: i64,
        when: Vec<Compare>,
    ) -> anyhow::Result<ClaimOutcome> {
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::put(
                key.clone(),
                layout::encode(claim),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.client.txn(txn).await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        if resp.succeeded() {
            return Ok(ClaimOutcome::Won { revision });
        }
        let current = resp.op_responses().into_iter().find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(get) => get.kvs().first().map(|kv| KeyChange {
                key: kv.key().to_vec(),
                value: Some((kv.value().to_vec(), kv.lease())),
                revision: kv.mod_revision(),
            }),
            _ => None,
        });
        Ok(ClaimOutcome::Lost { current })
    }

    /// Takes `ip` over from a suspect: replaces the claim with this speaker's (on `lease`) only
    /// if it is still on `from_lease` and each observer in `suspicions` (name, lease) still
    /// suspects `suspect` on `from_lease` with a suspicion on that observer's lease (so from an
    /// observer alive now). Otherwise reads the claim, as [`claim`](Self::claim) does.
    pub async fn take_over(
        &mut self,
        ip: IpAddr,
        claim: &Claim,
        lease: i64,
        suspect: &str,
        from_lease: i64,
        suspicions: &[(String, i64)],
    ) -> anyhow::Result<ClaimOutcome> {
        let key = self.keys.claim(ip);
        let suspicion = layout::encode(&layout::Suspicion { lease: from_lease });
        let mut when = vec![Compare::lease(key.clone(), CompareOp::Equal, from_lease)];
        for (observer, observer_lease) in suspicions {
            let k = self.keys.suspect(suspect, observer);
            when.push(Compare::value(
                k.clone(),
                CompareOp::Equal,
                suspicion.clone(),
            ));
            when.push(Compare::lease(k, CompareOp::Equal, *observer_lease));
        }
        self.claim_txn(key, claim, lease, when).await
    }

    /// Deletes the claim on `ip` if it is still the one written at `revision` (an orphaned claim,
    /// `ferrolb_core::election::is_orphaned`).
    pub async fn clear_orphan(&mut self, ip: IpAddr, revision: i64) -> anyhow::Result<Deleted> {
        let key = self.keys.claim(ip);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::delete(key, None)]);
        Ok(Deleted::from(self.client.txn(txn).await?))
    }

    /// Deletes the claim on `ip` if it is still on `lease`.
    pub async fn release(&mut self, ip: IpAddr, lease: i64) -> anyhow::Result<Deleted> {
        let key = self.keys.claim(ip);
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
            .and_then([TxnOp::delete(key, None)]);
        Ok(Deleted::from(self.client.txn(txn).await?))
    }
}

/// How a conditional deletion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// Whether the key was deleted (false: its condition failed).
    pub done: bool,
    /// The store's revision after the transaction (when `done`, the key is gone at it).
    pub revision: i64,
}

impl From<etcd_client::TxnResponse> for Deleted {
    fn from(resp: etcd_client::TxnResponse) -> Self {
        Deleted {
            done: resp.succeeded(),
            revision: resp.header().map_or(0, |h| h.revision()),
        }
    }
}

/// How a claim transaction ended.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// This speaker holds the address now; its claim was written at `revision`.
    Won {
        /// The revision of the write.
        revision: i64,
    },
    /// Someone else holds it: `current` is their claim as the transaction read it (`None` if it
    /// was gone again by then).
    Lost {
        /// The claim that won.
        current: Option<KeyChange>,
    },
}

pub use ferrolb_etcd::bounded;
