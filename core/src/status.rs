//! What `ferrolb status` shows of the cluster: which address serves which Services, who answers
//! for it and since when, addresses nobody answers for, the live speakers, the configuration in
//! force and pool use. Built from a [`View`] of etcd, which the CLI lists itself and every
//! reconciler keeps (and serves in its `/status`, for `ferrolb status --reconciler`). Pure.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::election;
use crate::layout::{ConfigStatus, Registration};
use crate::view::View;

/// One address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressStatus {
    /// The address.
    pub ip: IpAddr,
    /// The Services using it.
    pub services: Vec<String>,
    /// The node answering for it (none: nobody answers).
    pub node: Option<String>,
    /// The interfaces it answers on.
    pub interfaces: Vec<String>,
    /// Since when.
    pub since: Option<String>,
    /// The nodes that may answer (empty: every node).
    pub eligible_nodes: Vec<String>,
    /// A claim that holds the address for nobody: the node it names has no registration, or
    /// the claim is on no lease ([`election::is_orphaned`]). The speakers clear it after a
    /// grace period; until then nobody answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphaned_claim: Option<String>,
}

/// Everything `ferrolb status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The configuration in force.
    pub config: Option<ConfigStatus>,
    /// The reconciler leader's identity.
    pub leader: Option<String>,
    /// Live speakers.
    pub speakers: Vec<Registration>,
    /// Every announced address.
    pub addresses: Vec<AddressStatus>,
    /// Keys that could not be read.
    #[serde(default)]
    pub unreadable: Vec<String>,
}

impl ClusterStatus {
    /// The status `view` shows; `unreadable`: what could not be read into it.
    pub fn from_view(view: &View, unreadable: Vec<String>) -> ClusterStatus {
        let addresses = view
            .announcements
            .values()
            .map(|a| {
                let (claim, orphaned_claim) = match view.claims.get(&a.ip) {
                    Some(c) if election::is_orphaned(&c.claim, c.lease, &view.speakers) => {
                        (None, Some(c.claim.node.clone()))
                    }
                    Some(c) => (Some(&c.claim), None),
                    None => (None, None),
                };
                AddressStatus {
                    ip: a.ip,
                    services: a.services.clone(),
                    node: claim.map(|c| c.node.clone()),
                    interfaces: claim
                        .map(|c| c.interfaces.clone())
                        .unwrap_or_else(|| a.interfaces.clone()),
                    since: claim.map(|c| c.since.clone()),
                    eligible_nodes: a.nodes.clone(),
                    orphaned_claim,
                }
            })
            .collect();
        ClusterStatus {
            config: view.config.clone(),
            leader: view.leader.as_ref().map(|(id, _)| id.clone()),
            speakers: view.speakers.values().cloned().collect(),
            addresses,
            unreadable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Keys;
    use crate::view::KeyChange;

    fn put(key: &str, value: &str, lease: i64) -> KeyChange {
        KeyChange {
            key: key.as_bytes().to_vec(),
            value: Some((value.as_bytes().to_vec(), lease)),
            revision: 1,
        }
    }

    #[test]
    fn an_address_shows_its_holder_or_nobody_and_a_ghost_claim_is_named() {
        let keys = Keys::new("/ferrolb");
        let mut view = View::default();
        for c in [
            put(
                "/ferrolb/announcements/10.0.0.1",
                r#"{"ip":"10.0.0.1","services":["default/web"]}"#,
                0,
            ),
            put(
                "/ferrolb/announcements/10.0.0.2",
                r#"{"ip":"10.0.0.2","services":["default/db"],"nodes":["b"]}"#,
                0,
            ),
            put(
                "/ferrolb/announcements/10.0.0.3",
                r#"{"ip":"10.0.0.3","services":["default/gone"]}"#,
                0,
            ),
            put(
                "/ferrolb/speakers/a",
                r#"{"node":"a","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01"}]}"#,
                7,
            ),
            put(
                "/ferrolb/claims/10.0.0.1",
                r#"{"node":"a","interfaces":["eth0"],"since":"2026-12-03T10:00:00Z"}"#,
                7,
            ),
            put(
                "/ferrolb/claims/10.0.0.3",
                r#"{"node":"z","interfaces":["eth0"],"since":"2026-12-03T10:00:00Z"}"#,
                9,
            ),
            put("/ferrolb/reconciler/leader", "reconciler-0", 3),
        ] {
            view.apply(&keys, &c).expect("readable");
        }
        let status = ClusterStatus::from_view(&view, vec!["broken".into()]);
        assert_eq!(status.leader.as_deref(), Some("reconciler-0"));
        assert_eq!(status.speakers.len(), 1);
        let by_ip = |ip: &str| {
            status
                .addresses
                .iter()
                .find(|a| a.ip.to_string() == ip)
                .expect("address")
        };
        let held = by_ip("10.0.0.1");
        assert_eq!(held.node.as_deref(), Some("a"));
        assert_eq!(held.since.as_deref(), Some("2026-12-03T10:00:00Z"));
        let nobody = by_ip("10.0.0.2");
        assert_eq!(
            (nobody.node.as_ref(), &nobody.eligible_nodes),
            (None, &vec!["b".to_string()])
        );
        let ghost = by_ip("10.0.0.3");
        assert_eq!(
            (ghost.node.as_ref(), ghost.orphaned_claim.as_deref()),
            (None, Some("z"))
        );
        // What the reconciler serves is what the CLI reads back.
        let json = serde_json::to_string(&status).expect("serialize");
        let back: ClusterStatus = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, status);
    }
}
