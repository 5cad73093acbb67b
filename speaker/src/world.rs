//! What the speaker knows of etcd: announcements, claims and live speakers, fed by a listing and
//! then by watch events through [`World::apply`]. Tested by calling it; no etcd needed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrolb_core::layout::{self, Announcement, Claim, Keys, Registration, Suspicion};

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

/// One change seen in etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A key was written.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The lease the key is attached to (0: none).
        lease: i64,
        /// The key's modification revision.
        revision: i64,
    },
    /// A key was deleted (or its lease ended).
    Delete {
        /// The key.
        key: Vec<u8>,
        /// The revision of the deletion.
        revision: i64,
    },
}

impl Change {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            Change::Put { revision, .. } | Change::Delete { revision, .. } => *revision,
        }
    }
}

impl From<ferrolb_etcd::KeyChange> for Change {
    fn from(c: ferrolb_etcd::KeyChange) -> Self {
        match c.value {
            Some((value, lease)) => Change::Put {
                key: c.key,
                value,
                lease,
                revision: c.revision,
            },
            None => Change::Delete {
                key: c.key,
                revision: c.revision,
            },
        }
    }
}

/// The speaker's view of etcd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct World {
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

impl World {
    /// Applies one change; keys outside the layout are ignored. On an unreadable value the old
    /// entry is removed (a broken announcement must not keep being answered) and the error is
    /// returned for logging.
    ///
    /// A claim older than the one known is ignored: the speaker learns of its own claims (and of
    /// the claims that beat it) from its transactions, before the watch delivers the changes
    /// that came earlier, such as the deletion of the previous holder's claim.
    pub fn apply(&mut self, keys: &Keys, change: &Change) -> Result<(), Unreadable> {
        let (key, put, revision) = match change {
            Change::Put {
                key,
                value,
                lease,
                revision,
            } => (key.as_slice(), Some((value, *lease)), *revision),
            Change::Delete { key, revision } => (key.as_slice(), None, *revision),
        };
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

    fn put(key: &str, value: &str, lease: i64) -> Change {
        put_at(key, value, lease, 0)
    }

    fn put_at(key: &str, value: &str, lease: i64, revision: i64) -> Change {
        Change::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            lease,
            revision,
        }
    }

    fn del(key: &str) -> Change {
        del_at(key, 0)
    }

    fn del_at(key: &str, revision: i64) -> Change {
        Change::Delete {
            key: key.as_bytes().to_vec(),
            revision,
        }
    }

    #[test]
    fn suspicions_are_kept_per_suspect_and_observer() {
        let keys = Keys::new("/ferrolb");
        let mut w = World::default();
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
        let mut w = World::default();
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
        let mut w = World::default();
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
            .expect("ignored");
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
        assert!(w.claims.is_empty() && w.speakers.is_empty() && w.speaker_leases.is_empty());
    }

    #[test]
    fn unreadable_values_remove_the_old_entry_and_say_why() {
        let keys = Keys::new("/ferrolb");
        let mut w = World::default();
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
