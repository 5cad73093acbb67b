//! The speaker's etcd operations, each one request: lease, registration, listing, watching,
//! claiming and releasing. Claims are created only when absent and only deleted while they are
//! still on this speaker's lease, both in one transaction, so etcd alone decides who holds what.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions, WatchStream,
};
use ferrolb_core::layout::{self, Claim, Keys, Registration};

use crate::settings::Settings;
use crate::world::Change;

/// Builds the connection options (timeouts, TLS, user) from the settings.
pub fn options(s: &Settings) -> anyhow::Result<ConnectOptions> {
    let step = s.keepalive_interval();
    let mut o = ConnectOptions::new()
        .with_connect_timeout(step)
        .with_timeout(step)
        .with_keep_alive(step, step)
        // A member without a leader refuses requests instead of serving stale reads.
        .with_require_leader(true);
    if let (Some(user), Some(file)) = (&s.etcd_username, &s.etcd_password_file) {
        let password = std::fs::read_to_string(file)
            .with_context(|| format!("reading --etcd-password-file {}", file.display()))?;
        o = o.with_user(
            user.clone(),
            password.trim_end_matches(['\n', '\r']).to_string(),
        );
    }
    if s.etcd_cacert.is_some() || s.etcd_cert.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &s.etcd_cacert {
            let pem = std::fs::read(ca)
                .with_context(|| format!("reading --etcd-cacert {}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&s.etcd_cert, &s.etcd_key) {
            let cert = std::fs::read(cert)
                .with_context(|| format!("reading --etcd-cert {}", cert.display()))?;
            let key = std::fs::read(key)
                .with_context(|| format!("reading --etcd-key {}", key.display()))?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        o = o.with_tls(tls);
    }
    Ok(o)
}

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
    /// Connects to the endpoints.
    pub async fn connect(s: &Settings, options: ConnectOptions) -> anyhow::Result<Self> {
        let client = Client::connect(&s.etcd_endpoints, Some(options))
            .await
            .context("connecting to etcd")?;
        Ok(Etcd {
            client,
            keys: Keys::new(&s.etcd_prefix),
        })
    }

    /// Grants a new lease.
    pub async fn grant(&mut self, ttl: i64) -> anyhow::Result<i64> {
        Ok(self.client.lease_grant(ttl, None).await?.id())
    }

    /// Whether the lease is still alive in etcd.
    pub async fn alive(&mut self, lease: i64) -> anyhow::Result<bool> {
        Ok(self.client.lease_time_to_live(lease, None).await?.ttl() > 0)
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

    /// Everything under the prefix, as changes, and the revision it was read at.
    pub async fn list(&mut self) -> anyhow::Result<(Vec<Change>, i64)> {
        let resp = self
            .client
            .get(
                format!("{}/", self.keys.prefix()),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let changes = resp
            .kvs()
            .iter()
            .map(|kv| Change::Put {
                key: kv.key().to_vec(),
                value: kv.value().to_vec(),
                lease: kv.lease(),
            })
            .collect();
        Ok((changes, revision))
    }

    /// Watches everything under the prefix from `revision` on.
    pub async fn watch(&mut self, revision: i64) -> anyhow::Result<WatchStream> {
        Ok(self
            .client
            .watch(
                format!("{}/", self.keys.prefix()),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision),
                ),
            )
            .await?)
    }

    /// Creates the claim on `ip` if nobody holds it; true when this speaker won.
    pub async fn claim(&mut self, ip: IpAddr, claim: &Claim, lease: i64) -> anyhow::Result<bool> {
        let key = self.keys.claim(ip);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                layout::encode(claim),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        Ok(self.client.txn(txn).await?.succeeded())
    }

    /// Deletes the claim on `ip` if it is still on `lease`; true when it was.
    pub async fn release(&mut self, ip: IpAddr, lease: i64) -> anyhow::Result<bool> {
        let key = self.keys.claim(ip);
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
            .and_then([TxnOp::delete(key, None)]);
        Ok(self.client.txn(txn).await?.succeeded())
    }
}

/// The changes in one watch response.
pub fn changes(resp: &etcd_client::WatchResponse) -> Vec<Change> {
    resp.events()
        .iter()
        .filter_map(|ev| {
            let kv = ev.kv()?;
            Some(match ev.event_type() {
                EventType::Put => Change::Put {
                    key: kv.key().to_vec(),
                    value: kv.value().to_vec(),
                    lease: kv.lease(),
                },
                EventType::Delete => Change::Delete {
                    key: kv.key().to_vec(),
                },
            })
        })
        .collect()
}

/// A timeout for one etcd request that may hang while etcd is unreachable.
pub async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow::anyhow!("{what}: etcd did not answer within {limit:?}"))?
}
