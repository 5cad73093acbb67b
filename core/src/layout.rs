//! The etcd layout: the contract between the reconciler, the speakers and `ferrolb status`.
//!
//! ```text
//! P/speakers/<node>        Registration   attached to the speaker's lease: "this speaker is alive"
//! P/announcements/<ip>     Announcement   written by the reconciler; deleting it withdraws the address
//! P/claims/<ip>            Claim          created only if absent, attached to the holder's lease
//! P/reconciler/leader      identity       `<hostname>/<pid>` of the leader, plain text, on its lease
//! P/reconciler/config      ConfigStatus   the configuration revision in force and its last error
//! P/suspects/<node>/<obs>  Suspicion      observer <obs> hears no heartbeat from <node>; on <obs>'s lease
//! ```
//!
//! `P` is `--etcd-prefix` (default `/ferrolb`). Values are JSON. Readers ignore fields they do not
//! know, so the layout can grow.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The default `--etcd-prefix`.
pub const DEFAULT_PREFIX: &str = "/ferrolb";

/// Builds and parses the keys under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`; a trailing `/` is ignored, and an empty prefix means `/`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// The prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P/speakers/`.
    pub fn speakers(&self) -> String {
        format!("{}/speakers/", self.prefix)
    }

    /// `P/speakers/<node>`.
    pub fn speaker(&self, node: &str) -> String {
        format!("{}{node}", self.speakers())
    }

    /// `P/announcements/`.
    pub fn announcements(&self) -> String {
        format!("{}/announcements/", self.prefix)
    }

    /// `P/announcements/<ip>`.
    pub fn announcement(&self, ip: IpAddr) -> String {
        format!("{}{ip}", self.announcements())
    }

    /// `P/claims/`.
    pub fn claims(&self) -> String {
        format!("{}/claims/", self.prefix)
    }

    /// `P/claims/<ip>`.
    pub fn claim(&self, ip: IpAddr) -> String {
        format!("{}{ip}", self.claims())
    }

    /// `P/reconciler/leader`.
    pub fn reconciler_leader(&self) -> String {
        format!("{}/reconciler/leader", self.prefix)
    }

    /// `P/reconciler/config`.
    pub fn reconciler_config(&self) -> String {
        format!("{}/reconciler/config", self.prefix)
    }

    /// The address at the end of `key`, when `key` lies directly under `dir`
    /// (one of `announcements()` or `claims()`).
    pub fn ip_in(&self, dir: &str, key: &[u8]) -> Option<IpAddr> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(dir)?
            .parse()
            .ok()
    }

    /// `P/suspects/`.
    pub fn suspects(&self) -> String {
        format!("{}/suspects/", self.prefix)
    }

    /// `P/suspects/<node>/<observer>`.
    pub fn suspect(&self, node: &str, observer: &str) -> String {
        format!("{}{node}/{observer}", self.suspects())
    }

    /// The suspected node and the observer of a `suspect()` key.
    pub fn suspect_in(&self, key: &[u8]) -> Option<(String, String)> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.suspects())?;
        let (node, observer) = rest.split_once('/')?;
        (!node.is_empty() && !observer.is_empty() && !observer.contains('/'))
            .then(|| (node.to_string(), observer.to_string()))
    }

    /// The node name at the end of a `speakers()` key.
    pub fn node_in(&self, key: &[u8]) -> Option<String> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.speakers())?;
        (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
    }
}

/// An interface a speaker may announce on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    /// Its name.
    pub name: String,
    /// Its MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

/// `P/speakers/<node>`: a live speaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The node's name.
    pub node: String,
    /// The node's labels (`--labels`), matched by L2Advertisement node selectors in file mode.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The interfaces it may announce on now.
    #[serde(default)]
    pub interfaces: Vec<InterfaceInfo>,
    /// Whether it sends heartbeats: only then may the others suspect it when none comes.
    #[serde(default)]
    pub heartbeats: bool,
}

/// `P/announcements/<ip>`: an address to be answered for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The address.
    pub ip: IpAddr,
    /// The Services using it, `namespace/name`.
    #[serde(default)]
    pub services: Vec<String>,
    /// The nodes that may answer; empty: every live speaker.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// The interfaces to answer on; empty: any suitable interface.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Preference scores of nodes (`preferredNodeSelectors`): speakers rank a higher score
    /// first, then by hash. A node not named scores 0. Left out of the JSON when empty, so
    /// values without preferences stay byte-for-byte what older reconcilers wrote, and older
    /// speakers (which ignore unknown fields) still read values with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub preferred: BTreeMap<String, u32>,
}

/// `P/claims/<ip>`: who answers for the address now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The holder.
    pub node: String,
    /// The interfaces it answers on.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// When it took the address (RFC 3339).
    #[serde(default)]
    pub since: String,
}

/// `P/suspects/<node>/<observer>`: the observer has heard no heartbeat from the node on `lease`
/// for `--suspect-after`. On the observer's lease, so it ends with the observer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspicion {
    /// The suspected node's lease: the one to end.
    pub lease: i64,
}

/// `P/reconciler/config`: the configuration in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// Commit id or content hash of the configuration in force.
    pub revision: String,
    /// When it was applied (RFC 3339).
    pub applied_at: String,
    /// The last error reading a newer configuration, if any.
    #[serde(default)]
    pub error: Option<String>,
    /// Use of every pool per family (for `ferrolb status`).
    #[serde(default)]
    pub pools: Vec<PoolUse>,
    /// Allocated addresses that no speaker is asked to announce (for `ferrolb status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unannounced: Vec<Unannounced>,
}

/// An allocated address that no speaker is asked to announce: no advertisement covers it, or no
/// node is eligible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unannounced {
    /// The address.
    pub ip: IpAddr,
    /// The Services given it, as `namespace/name`.
    pub services: Vec<String>,
    /// Why nobody announces it.
    pub reason: String,
}

/// Use of one pool in one family. Counts are strings: a /64 holds 2^64 addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUse {
    /// The pool.
    pub pool: String,
    /// `IPv4` or `IPv6`.
    pub family: String,
    /// Addresses in use.
    pub in_use: String,
    /// Addresses in the pool.
    pub total: String,
}

/// Why a value read from etcd could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} at {key}: {source}")]
pub struct DecodeError {
    /// Which kind of value.
    pub what: &'static str,
    /// The key, lossily decoded.
    pub key: String,
    /// The JSON error.
    #[source]
    pub source: serde_json::Error,
}

/// The largest value ferrolb reads from etcd: far above any real announcement (a shared address
/// of 1,000 Services on 1,000 nodes is about 100 KiB), far below what could stall a daemon.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;

/// Decodes a JSON value read from `key`; a value over [`MAX_VALUE_BYTES`] is refused unread.
pub fn decode<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<T, DecodeError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(DecodeError {
            what,
            key: String::from_utf8_lossy(key).into_owned(),
            source: serde::de::Error::custom(format!(
                "{} bytes, over the limit of {MAX_VALUE_BYTES}",
                value.len()
            )),
        });
    }
    serde_json::from_slice(value).map_err(|source| DecodeError {
        what,
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

/// Encodes a value for etcd.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no custom code.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_over_the_limit_are_refused_unread() {
        let ip = r#""ip":"10.0.0.5""#;
        let pad = "x".repeat(MAX_VALUE_BYTES);
        let big = format!(r#"{{{ip},"services":["{pad}"]}}"#);
        let err = decode::<Announcement>(
            "announcement",
            b"/ferrolb/announcements/10.0.0.5",
            big.as_bytes(),
        )
        .expect_err("too big");
        assert!(err.to_string().contains("over the limit"), "{err}");
        let small = format!(r#"{{{ip},"services":["{}"]}}"#, "x".repeat(1000));
        assert!(decode::<Announcement>("announcement", b"k", small.as_bytes()).is_ok());
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let k = Keys::new("/ferrolb/");
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        assert_eq!(k.speaker("node-1"), "/ferrolb/speakers/node-1");
        assert_eq!(k.announcement(ip), "/ferrolb/announcements/10.0.0.5");
        assert_eq!(k.claim(ip), "/ferrolb/claims/10.0.0.5");
        assert_eq!(k.reconciler_leader(), "/ferrolb/reconciler/leader");
        assert_eq!(k.suspect("n1", "n2"), "/ferrolb/suspects/n1/n2");
        assert_eq!(
            k.suspect_in(b"/ferrolb/suspects/n1/n2"),
            Some(("n1".into(), "n2".into()))
        );
        assert_eq!(k.suspect_in(b"/ferrolb/suspects/n1"), None);
        assert_eq!(k.suspect_in(b"/ferrolb/suspects/n1/n2/x"), None);
        assert_eq!(k.ip_in(&k.claims(), b"/ferrolb/claims/10.0.0.5"), Some(ip));
        assert_eq!(k.ip_in(&k.claims(), b"/ferrolb/claims/junk"), None);
        assert_eq!(
            k.node_in(b"/ferrolb/speakers/node-1").as_deref(),
            Some("node-1")
        );
        assert_eq!(k.node_in(b"/ferrolb/speakers/a/b"), None);
    }

    #[test]
    fn values_read_the_documented_json() {
        let a: Announcement = decode(
            "announcement",
            b"k",
            br#"{"ip": "10.0.0.5", "services": ["default/web"], "nodes": ["node-1", "node-2"], "interfaces": ["eth0"], "future": 1}"#,
        )
        .expect("valid");
        assert_eq!(a.nodes, ["node-1", "node-2"]);
        let minimal: Announcement =
            decode("announcement", b"k", br#"{"ip": "fd00::1"}"#).expect("valid");
        assert!(minimal.nodes.is_empty() && minimal.interfaces.is_empty());
        let c: Claim = decode(
            "claim",
            b"k",
            br#"{"node": "n", "interfaces": ["eth0"], "since": "2026-11-29T00:00:00Z"}"#,
        )
        .expect("valid");
        assert_eq!(c.node, "n");
        let err = decode::<Claim>("claim", b"/p/claims/x", b"{").expect_err("invalid");
        assert!(err.to_string().starts_with("invalid claim at /p/claims/x"));
        let back: Announcement = decode("announcement", b"k", &encode(&a)).expect("round trip");
        assert_eq!(back, a);
    }

    #[test]
    fn preference_scores_are_optional_and_left_out_when_empty() {
        let mut a: Announcement =
            decode("announcement", b"k", br#"{"ip": "10.0.0.5", "nodes": []}"#).expect("valid");
        assert!(a.preferred.is_empty());
        let plain = String::from_utf8(encode(&a)).expect("utf-8");
        assert!(!plain.contains("preferred"), "{plain}");
        a.preferred.insert("edge-1".into(), 100);
        let text = String::from_utf8(encode(&a)).expect("utf-8");
        assert!(text.contains(r#""preferred":{"edge-1":100}"#), "{text}");
        let back: Announcement = decode("announcement", b"k", text.as_bytes()).expect("valid");
        assert_eq!(back.preferred.get("edge-1"), Some(&100));
    }
}
