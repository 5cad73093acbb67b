//! What a daemon knows of etcd: announcements, claims, live speakers, suspicions, the
//! reconciler's leader and configuration status, fed by a listing and then by watch events
//! ([`KeyChange`]) through [`View::apply`]. Pure: tested by calling it, no etcd needed. Both
//! daemons keep one (the speaker decides from it, the reconciler plans from it).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::layout::{self, Announcement, Claim, ConfigStatus, Keys, Registration, Suspicion};

/// A key and its new value and lease, from a listing or a watch (`value: None`: deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyChange {
    /// The key.
    pub key: Vec<u8>,
    /// The value and the lease it is attached to (0: none); `None` when the key was deleted.
    pub value: Option<(Vec<u8>, i64)>,
    /// The revision of the change: the key's modification revision, or that of its deletion.
    pub revision: i64,
}

/// A claim and the lease it lives on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldClaim {
    /// The claim.
    pub claim: Claim,
    /// The lease the key is attached to.
    pub lease: i64,
    /// The etcd revision that wrote it: older news of the key is ignored.
    pub revision: i64,
}

/// What a daemon knows of etcd under its prefix, fed by a listing and then by watch events
/// through [`View::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// Announced addresses.
    pub announcements: BTreeMap<IpAddr, Announcement>,
    /// Current claims.
    pub claims: BTreeMap<IpAddr, HeldClaim>,
    /// Live speakers.
    pub speakers: BTreeMap<String, Registration>,
    /// The lease each live speaker's registration is on: its current lease, the only one its
    /// heartbeats count on.
    pub speaker_leases: BTreeMap<String, i64>,
    /// Suspicions: suspected node → observer → the suspected lease.
    pub suspects: BTreeMap<String, BTreeMap<String, i64>>,
    /// The reconciler leader key's value (the leader's identity) and lease.
    pub leader: Option<(String, i64)>,
    /// `P/reconciler/config`: the configuration in force, as the leader wrote it.
    pub config: Option<ConfigStatus>,
    /// Claim keys this speaker deleted itself, at the revision of the deletion, until the watch
    /// has passed it: older news of such a key is stale.
    deleted: BTreeMap<IpAddr, i64>,
}

/// Something in etcd that could not be read; the key is skipped.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// A value is not the JSON the layout says.
    #[error(transparent)]
    Decode(#[from] layout::DecodeError),
    /// The key's address and the value's address differ.
    #[error("announcement at {key} names {ip}")]
    Mismatch {
        /// The key.
        key: String,
        /// The address in the value.
        ip: IpAddr,
    },
}

impl View {
    /// Applies one change; keys outside the layout are ignored. On an unreadable value the old
    /// entry is removed (a broken announcement must not keep being answered) and the error is
    /// returned for logging.
    ///
    /// A claim older than the one known is ignored: the speaker learns of its own claims (and of
    /// the claims that beat it) from its transactions, before the watch delivers the changes
    /// that came earlier, such as the deletion of the previous holder's claim.
    pub fn apply(&mut self, keys: &Keys, change: &KeyChange) -> Result<(), Unreadable> {
        let key = change.key.as_slice();
        let put = change.value.as_ref().map(|(v, lease)| (v, *lease));
        let revision = change.revision;
        if let Some(ip) = keys.ip_in(&keys.announcements(), key) {
            self.announcements.remove(&ip);
            if let Some((value, _)) = put {
                let a: Announcement = layout::decode("announcement", key, value)?;
                if a.ip != ip {
                    return Err(Unreadable::Mismatch {
                        key: String::from_utf8_lossy(key).into_owned(),
                        ip: a.ip,
                    });
                }
                self.announcements.insert(ip, a);
            }
        } else if let Some(ip) = keys.ip_in(&keys.claims(), key) {
            let known = self.claims.get(&ip).map(|c| c.revision);
            let deleted = self.deleted.get(&ip).copied();
            if known.max(deleted).is_some_and(|r| r > revision) {
                return Ok(());
            }
            self.claims.remove(&ip);
            if let Some((value, lease)) = put {
                let claim: Claim = layout::decode("claim", key, value)?;
                self.claims.insert(
                    ip,
                    HeldClaim {
                        claim,
                        lease,
                        revision,
                    },
                );
            }
        } else if let Some((node, observer)) = keys.suspect_in(key) {
            let entry = self.suspects.entry(node.clone()).or_default();
            entry.remove(&observer);
            if let Some((value, _)) = put {
                let s: Suspicion = layout::decode("suspicion", key, value)?;
                entry.insert(observer, s.lease);
            } else if entry.is_empty() {
                self.suspects.remove(&node);
            }
        } else if let Some(node) = keys.node_in(key) {
            self.speakers.remove(&node);
            self.speaker_leases.remove(&node);
            if let Some((value, lease)) = put {
                let reg: Registration = layout::decode("registration", key, value)?;
                self.speakers.insert(node.clone(), reg);
                self.speaker_leases.insert(node, lease);
            }
        } else if key == keys.reconciler_config().as_bytes() {
            self.config = None;
            if let Some((value, _)) = put {
                self.config = Some(layout::decode("configuration status", key, value)?);
            }
        } else if key == keys.reconciler_leader().as_bytes() {
            self.leader =
                put.map(|(value, lease)| (String::from_utf8_lossy(value).into_owned(), lease));
        }
        Ok(())
    }

    /// This speaker deleted the claim on `ip` at `revision` (a release or a clearing that
    /// succeeded): until the watch gets there, older news of it must not bring it back.
    pub fn deleted(&mut self, ip: IpAddr, revision: i64) {
        self.claims.remove(&ip);
        self.deleted.insert(ip, revision);
    }

    /// The watch has delivered everything up to `revision` (it delivers in revision order):
    /// deletions this speaker made up to there are no longer ahead of it.
    pub fn watched_to(&mut self, revision: i64) {
        self.deleted.retain(|_, r| *r > revision);
    }

    /// The addresses whose claim is held by `node`.
    pub fn claimed_by<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a IpAddr, &'a HeldClaim)> + 'a {
        self.claims
            .iter()
            .filter(move |(_, c)| c.claim.node == node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str, lease: i64) -> KeyChange {
        put_at(key, value, lease, 0)
    }

    fn put_at(key: &str, value: &str, lease: i64, revision: i64) -> KeyChange {
        KeyChange {
            key: key.as_bytes().to_vec(),
            value: Some((value.as_bytes().to_vec(), lease)),
            revision,
        }
    }

    fn del(key: &str) -> KeyChange {
        del_at(key, 0)
    }

    fn del_at(key: &str, revision: i64) -> KeyChange {
        KeyChange {
            key: key.as_bytes().to_vec(),
            value: None,
            revision,
        }
    }

    #[test]
    fn suspicions_are_kept_per_suspect_and_observer() {
        let keys = Keys::new("/ferrolb");
        let mut w = View::default();
        w.apply(&keys, &put("/ferrolb/suspects/a/b", r#"{"lease":7}"#, 3))
            .expect("valid");
        w.apply(&keys, &put("/ferrolb/suspects/a/c", r#"{"lease":7}"#, 4))
            .expect("valid");
        assert_eq!(w.suspects["a"].len(), 2);
        w.apply(&keys, &del("/ferrolb/suspects/a/b"))
            .expect("valid");
        w.apply(&keys, &del("/ferrolb/suspects/a/c"))
            .expect("valid");
        assert!(w.suspects.is_empty());
        assert!(
            w.apply(&keys, &put("/ferrolb/suspects/a/b", "{", 3))
                .is_err()
        );
    }

    #[test]
    fn older_news_of_a_claim_does_not_undo_a_newer_one() {
        let keys = Keys::new("/ferrolb");
        let key = "/ferrolb/claims/10.0.0.5";
        let claim = |n: &str| format!(r#"{{"node":"{n}","interfaces":["eth0"],"since":"x"}}"#);
        let mut w = View::default();
        // This speaker's own claim, written at revision 30 (learned from its transaction).
        w.apply(&keys, &put_at(key, &claim("b"), 2, 30))
            .expect("valid");
        // The watch, behind, still brings the old holder's claim and its deletion.
        w.apply(&keys, &put_at(key, &claim("a"), 1, 10))
            .expect("valid");
        w.apply(&keys, &del_at(key, 29)).expect("valid");
        assert_eq!(
            w.claims
                .get(&"10.0.0.5".parse().expect("ip"))
                .map(|c| c.claim.node.as_str()),
            Some("b")
        );
        // Then its own write, and later changes, apply as usual.
        w.apply(&keys, &put_at(key, &claim("b"), 2, 30))
            .expect("valid");
        w.apply(&keys, &del_at(key, 31)).expect("valid");
        assert!(w.claims.is_empty());
    }

    #[test]
    fn events_build_and_tear_down_the_view() {
        let keys = Keys::new("/ferrolb");
        let mut w = View::default();
        w.apply(
            &keys,
            &put(
                "/ferrolb/announcements/10.0.0.5",
                r#"{"ip":"10.0.0.5","nodes":["a"]}"#,
                0,
            ),
        )
        .expect("valid");
        w.apply(
            &keys,
            &put(
                "/ferrolb/claims/10.0.0.5",
                r#"{"node":"a","interfaces":["eth0"],"since":"x"}"#,
                7,
            ),
        )
        .expect("valid");
        w.apply(
            &keys,
            &put(
                "/ferrolb/speakers/a",
                r#"{"node":"a","labels":{},"interfaces":[]}"#,
                7,
            ),
        )
        .expect("valid");
        w.apply(&keys, &put("/ferrolb/reconciler/leader", "r1", 9))
            .expect("valid");
        assert_eq!(w.leader, Some(("r1".to_string(), 9)));
        assert_eq!(w.announcements.len(), 1);
        assert_eq!(w.claims.values().next().map(|c| c.lease), Some(7));
        assert_eq!(w.claimed_by("a").count(), 1);
        assert!(w.speakers.contains_key("a"));
        assert_eq!(
            w.speaker_leases.get("a"),
            Some(&7),
            "the registration's lease"
        );
        w.apply(&keys, &del("/ferrolb/claims/10.0.0.5"))
            .expect("valid");
        w.apply(&keys, &del("/ferrolb/speakers/a")).expect("valid");
        w.apply(&keys, &del("/ferrolb/reconciler/leader"))
            .expect("valid");
        assert!(w.claims.is_empty() && w.speakers.is_empty() && w.speaker_leases.is_empty());
        assert_eq!(w.leader, None);
    }

    #[test]
    fn unreadable_values_remove_the_old_entry_and_say_why() {
        let keys = Keys::new("/ferrolb");
        let mut w = View::default();
        w.apply(
            &keys,
            &put("/ferrolb/announcements/10.0.0.5", r#"{"ip":"10.0.0.5"}"#, 0),
        )
        .expect("valid");
        let err = w
            .apply(
                &keys,
                &put("/ferrolb/announcements/10.0.0.5", "{not json", 0),
            )
            .expect_err("invalid");
        assert!(err.to_string().contains("/ferrolb/announcements/10.0.0.5"));
        assert!(w.announcements.is_empty());
        let err = w
            .apply(
                &keys,
                &put("/ferrolb/announcements/10.0.0.6", r#"{"ip":"10.0.0.7"}"#, 0),
            )
            .expect_err("mismatch");
        assert!(matches!(err, Unreadable::Mismatch { .. }));
        assert!(w.announcements.is_empty());
    }
}
