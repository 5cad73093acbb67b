//! The reconciler's etcd requests: lease, leader election, listing and watching, and writes
//! fenced by leadership.
//!
//! Leadership is the key `P/reconciler/leader` created only when absent, on this replica's
//! lease. Every write is a transaction that first checks the leader key is still on that lease,
//! so a replica that lost leadership (its lease expired while it was paused, say) cannot write.

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use ferrolb_core::layout::{self, ConfigStatus, Keys};

use crate::plan::Write;

/// Most operations per transaction (etcd's default `--max-txn-ops` is 128).
const MAX_OPS: usize = 100;

/// The reconciler's etcd client.
#[derive(Clone)]
pub struct Store {
    /// The client.
    pub client: Client,
    /// The keys.
    pub keys: Keys,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.keys.prefix())
            .finish()
    }
}

impl Store {
    /// Tries to become leader; true when this replica now holds the leader key.
    pub async fn campaign(&mut self, identity: &str, lease: i64) -> anyhow::Result<bool> {
        let key = self.keys.reconciler_leader();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                identity,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        Ok(self.client.txn(txn).await?.succeeded())
    }

    /// Whether the leader key exists now (a linearizable read).
    pub async fn leader_exists(&mut self) -> anyhow::Result<bool> {
        let resp = self
            .client
            .get(
                self.keys.reconciler_leader(),
                Some(etcd_client::GetOptions::new().with_count_only()),
            )
            .await?;
        Ok(resp.count() > 0)
    }

    fn fence(&self, lease: i64) -> Compare {
        Compare::lease(self.keys.reconciler_leader(), CompareOp::Equal, lease)
    }

    /// Applies writes in transactions fenced by leadership; the number applied. Fails with
    /// [`NotLeader`] when the leader key is no longer on `lease`.
    pub async fn apply(&mut self, writes: &[Write], lease: i64) -> anyhow::Result<usize> {
        let mut done = 0;
        for chunk in writes.chunks(MAX_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|w| match w {
                    Write::Put(a) => {
                        TxnOp::put(self.keys.announcement(a.ip), layout::encode(a), None)
                    }
                    Write::Delete(ip) => TxnOp::delete(self.keys.announcement(*ip), None),
                })
                .collect();
            let txn = Txn::new().when([self.fence(lease)]).and_then(ops);
            if !self.client.txn(txn).await?.succeeded() {
                return Err(NotLeader.into());
            }
            done += chunk.len();
        }
        Ok(done)
    }

    /// Writes `P/reconciler/config`, fenced like every write.
    pub async fn put_status(&mut self, status: &ConfigStatus, lease: i64) -> anyhow::Result<()> {
        let txn = Txn::new().when([self.fence(lease)]).and_then([TxnOp::put(
            self.keys.reconciler_config(),
            layout::encode(status),
            None,
        )]);
        if self.client.txn(txn).await?.succeeded() {
            Ok(())
        } else {
            Err(NotLeader.into())
        }
    }
}

/// A fenced write found that this replica is no longer the leader.
#[derive(Debug, thiserror::Error)]
#[error("no longer the leader: the leader key is not on this replica's lease")]
pub struct NotLeader;
