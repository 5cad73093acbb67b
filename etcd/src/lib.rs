//! What both ferrolb daemons share: the etcd connection — the `--etcd-*` flags (each also read
//! from an environment variable), TLS with CA verification and client certificates, username and
//! password from a file, request timeouts, listing a prefix in pages and watching it (in
//! [`listing`]), lease renewals, and the session both daemons hold ([`session`]). Process
//! start-up and shutdown are `ferrolb-daemon`'s.

pub mod listing;
pub mod session;

pub use ferrolb_core::view::KeyChange;
pub use listing::{list_prefix, watch_prefix};

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use ferrolb_core::layout::DEFAULT_PREFIX;

/// The `--etcd-*` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (`http://10.0.0.10:2379,https://...`).
    #[arg(
        long,
        env = "FERROLB_ETCD_ENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    pub etcd_endpoints: Vec<String>,
    /// Prefix of every key ferrolb uses in etcd.
    #[arg(long, env = "FERROLB_ETCD_PREFIX", default_value = DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// CA certificate (PEM) that etcd's server certificate must chain to.
    #[arg(long, env = "FERROLB_ETCD_CACERT")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for etcd.
    #[arg(long, env = "FERROLB_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd.
    #[arg(long, env = "FERROLB_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user name.
    #[arg(long, env = "FERROLB_ETCD_USERNAME", requires = "etcd_password_file")]
    pub etcd_username: Option<String>,
    /// File holding the etcd user's password.
    #[arg(long, env = "FERROLB_ETCD_PASSWORD_FILE", requires = "etcd_username")]
    pub etcd_password_file: Option<PathBuf>,
}

impl EtcdArgs {
    /// Connection options: `step` bounds connecting and every request; TLS and credentials as
    /// the flags say. A member without a leader refuses requests instead of serving stale reads.
    pub fn options(&self, step: Duration) -> anyhow::Result<ConnectOptions> {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(step)
            .with_timeout(step)
            .with_keep_alive(step, step)
            .with_require_leader(true);
        if let (Some(user), Some(file)) = (&self.etcd_username, &self.etcd_password_file) {
            let password = std::fs::read_to_string(file)
                .with_context(|| format!("reading --etcd-password-file {}", file.display()))?;
            o = o.with_user(
                user.clone(),
                password.trim_end_matches(['\n', '\r']).to_string(),
            );
        }
        if self.etcd_cacert.is_some() || self.etcd_cert.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.etcd_cacert {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("reading --etcd-cacert {}", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&self.etcd_cert, &self.etcd_key) {
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

    /// The endpoints reached over plain HTTP on another host than this one: allowed, but worth a
    /// warning at start and a metric (anyone on the path can read and forge what the daemons
    /// exchange with etcd).
    pub fn plaintext_remote(&self) -> Vec<&str> {
        self.etcd_endpoints
            .iter()
            .map(String::as_str)
            .filter(|e| plaintext_remote(e))
            .collect()
    }

    /// Logs a warning for each [`plaintext_remote`](Self::plaintext_remote) endpoint and returns
    /// how many there are, for the daemons' gauges.
    pub fn warn_plaintext(&self) -> i64 {
        let plaintext = self.plaintext_remote();
        for e in &plaintext {
            tracing::warn!(endpoint = %e, "etcd over plain HTTP to another host: use TLS (--etcd-cacert, --etcd-cert, --etcd-key)");
        }
        i64::try_from(plaintext.len()).unwrap_or(i64::MAX)
    }

    /// Connects to one endpoint that answers, trying them in turn from the one after the
    /// endpoint of the previous call, so that a session that failed on a dead member starts the
    /// next on another. (A client over all endpoints at once keeps sending some requests to a
    /// dead member, and every such request ends the session.) When none answers, connects over
    /// all of them and lets the caller's first request fail.
    pub async fn connect(&self, options: ConnectOptions) -> anyhow::Result<Client> {
        let n = self.etcd_endpoints.len();
        if n > 1 {
            let first = NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed);
            for k in 0..n {
                let endpoint = &self.etcd_endpoints[(first + k) % n];
                let attempt = async {
                    let mut c = Client::connect([endpoint], Some(options.clone())).await?;
                    c.status().await?;
                    Ok::<Client, etcd_client::Error>(c)
                };
                match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
                    Ok(Ok(client)) => {
                        NEXT_ENDPOINT.store((first + k + 1) % n, Ordering::Relaxed);
                        return Ok(client);
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%endpoint, error = %e, "etcd endpoint not answering")
                    }
                    Err(_) => tracing::debug!(%endpoint, "etcd endpoint not answering in time"),
                }
            }
        }
        Client::connect(&self.etcd_endpoints, Some(options))
            .await
            .context("connecting to etcd")
    }
}

/// Where the next [`EtcdArgs::connect`] starts trying endpoints: one past the last that worked,
/// since a new connection is only asked for when the session on it failed.
static NEXT_ENDPOINT: AtomicUsize = AtomicUsize::new(0);

/// How long one endpoint may take to connect and answer a status request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether `endpoint` is plain HTTP (or has no scheme) to a host other than loopback.
pub fn plaintext_remote(endpoint: &str) -> bool {
    let rest = match endpoint.split_once("://") {
        Some(("https", _)) => return false,
        Some((_, rest)) => rest,
        None => endpoint,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_to_another_host_is_flagged() {
        assert!(plaintext_remote("http://10.0.0.10:2379"));
        assert!(plaintext_remote("etcd.example.com:2379"));
        assert!(plaintext_remote("http://[fd00::10]:2379"));
        assert!(!plaintext_remote("https://10.0.0.10:2379"));
        assert!(!plaintext_remote("http://127.0.0.1:2379"));
        assert!(!plaintext_remote("http://localhost:2379"));
        assert!(!plaintext_remote("http://[::1]:2379"));
    }
}

/// Bounds one etcd request that may hang while etcd is unreachable.
pub async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow::anyhow!("{what}: etcd did not answer within {limit:?}"))?
}

/// The changes one watch message carries; an error when the watch failed, ended or was canceled
/// (the caller starts a new session, listing again).
pub fn watch_changes(
    msg: Result<Option<etcd_client::WatchResponse>, etcd_client::Error>,
) -> anyhow::Result<Vec<KeyChange>> {
    let resp = msg?.ok_or_else(|| anyhow::anyhow!("the watch stream ended"))?;
    if resp.canceled() {
        anyhow::bail!("the watch was canceled: {}", resp.cancel_reason());
    }
    Ok(resp
        .events()
        .iter()
        .filter_map(|ev| {
            let kv = ev.kv()?;
            let value = match ev.event_type() {
                etcd_client::EventType::Put => Some((kv.value().to_vec(), kv.lease())),
                etcd_client::EventType::Delete => None,
            };
            Some(KeyChange {
                key: kv.key().to_vec(),
                value,
                revision: kv.mod_revision(),
            })
        })
        .collect())
}

/// What the keepalive task last learned about the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed; etcd keeps it until `until` unless renewed again.
    Alive {
        /// When the lease ends without another renewal.
        until: tokio::time::Instant,
        /// When the request that etcd confirmed was sent (`until` less the TTL).
        sent: tokio::time::Instant,
    },
    /// etcd says the lease no longer exists.
    Expired,
    /// Renewals failed or went unanswered; the lease may still be alive until the last `until`.
    Failed(String),
}

/// Keeps a lease alive from a task of its own, so that slow work in the owner's loop never delays
/// a renewal. Dropping it stops the renewals.
#[derive(Debug)]
pub struct Keepalive {
    task: tokio::task::JoinHandle<()>,
    /// The lease's state, updated after every answer.
    pub state: tokio::sync::watch::Receiver<LeaseState>,
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts renewing `lease` every `interval` (a third of the TTL, say), and at once whenever
/// `renew` is notified (an owner that wants a fresh confirmation). The state starts as alive for
/// `ttl` from now; a renewal without an answer within two intervals is a failure.
pub async fn keep_alive(
    client: &mut Client,
    lease: i64,
    ttl: std::time::Duration,
    interval: std::time::Duration,
    renew: Option<std::sync::Arc<tokio::sync::Notify>>,
) -> anyhow::Result<Keepalive> {
    let (mut keeper, mut answers) = client.lease_keep_alive(lease).await?;
    let now = tokio::time::Instant::now();
    let (tx, state) = tokio::sync::watch::channel(LeaseState::Alive {
        until: now + ttl,
        sent: now,
    });
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut answered = tokio::time::Instant::now();
        // When each unanswered keepalive went out: etcd restarts the TTL when it receives one,
        // so the lease is sure to live until the send time plus the TTL, never longer (the
        // answer's arrival would overstate it by the round trip).
        let mut sent: std::collections::VecDeque<tokio::time::Instant> = Default::default();
        let wanted = || async {
            match &renew {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if answered.elapsed() > interval * 2 {
                        let _ = tx.send(LeaseState::Failed(format!("no keepalive answer for {:?}", answered.elapsed())));
                        return;
                    }
                }
                () = wanted() => {}
                answer = answers.message() => {
                    match answer {
                        Ok(Some(a)) if a.ttl() > 0 => {
                            answered = tokio::time::Instant::now();
                            let from = sent.pop_front().unwrap_or(answered).min(answered);
                            let secs = u64::try_from(a.ttl()).unwrap_or(0);
                            let _ = tx.send(LeaseState::Alive { until: from + std::time::Duration::from_secs(secs), sent: from });
                        }
                        Ok(Some(_)) => {
                            let _ = tx.send(LeaseState::Expired);
                            return;
                        }
                        Ok(None) => {
                            let _ = tx.send(LeaseState::Failed("the keepalive stream ended".into()));
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(LeaseState::Failed(format!("keepalive: {e}")));
                            return;
                        }
                    }
                    continue;
                }
            }
            if let Err(e) = keeper.keep_alive().await {
                let _ = tx.send(LeaseState::Failed(format!("sending a keepalive: {e}")));
                return;
            }
            sent.push_back(tokio::time::Instant::now());
            // Answers come in order; more outstanding than this means they are lost.
            if sent.len() > 16 {
                sent.pop_front();
            }
        }
    });
    Ok(Keepalive { task, state })
}
