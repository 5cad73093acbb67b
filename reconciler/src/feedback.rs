//! What to tell Kubernetes about the decisions (pure): which Service statuses to write, and which
//! Events to record. The controller only carries them out.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ferrolb_core::alloc::{Decision, Outcome, Pending, ServiceKey, ServiceRequest};
use ferrolb_core::layout::{Announcement, Unannounced};
use ferrolb_core::view::HeldClaim;

/// The annotation MetalLB sets on a Service with the pool its addresses come from.
pub const POOL_ANNOTATION: &str = "metallb.io/ip-allocated-from-pool";

/// An Event to record on a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The Service.
    pub key: ServiceKey,
    /// Warning rather than Normal.
    pub warning: bool,
    /// `IPAllocated`, `IPChanged`, `ClearAssignment`, `AllocationFailed`, `nodeAssigned`.
    pub reason: &'static str,
    /// The message.
    pub note: String,
}

/// A status to write: the Service's `status.loadBalancer.ingress` becomes `ips`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusWrite {
    /// The Service.
    pub key: ServiceKey,
    /// The addresses (empty: cleared).
    pub ips: Vec<IpAddr>,
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Status writes and Events for one round. Statuses are written only when they differ; an
/// `AllocationFailed` Event is recorded once per distinct reason (`failed` remembers the last one
/// per Service). Services of another load balancer's class are never touched; a Service that is
/// no longer a LoadBalancer has its addresses cleared.
pub fn statuses(
    requests: &[ServiceRequest],
    decisions: &[Decision],
    failed: &mut HashMap<ServiceKey, Pending>,
) -> (Vec<StatusWrite>, Vec<Note>) {
    let mut writes = Vec::new();
    let mut notes = Vec::new();
    for (req, d) in requests.iter().zip(decisions) {
        let want: Vec<IpAddr> = match &d.outcome {
            Outcome::Allocated { ips, .. } => ips.clone(),
            Outcome::Pending { reason } => {
                if failed.get(&req.key) != Some(reason) {
                    failed.insert(req.key.clone(), reason.clone());
                    notes.push(Note {
                        key: req.key.clone(),
                        warning: true,
                        reason: "AllocationFailed",
                        note: reason.to_string(),
                    });
                }
                Vec::new()
            }
            Outcome::Ignored { .. } if req.service_type != "LoadBalancer" => Vec::new(),
            Outcome::Ignored { .. } => continue,
        };
        if !matches!(d.outcome, Outcome::Pending { .. }) {
            failed.remove(&req.key);
        }
        if want == req.current {
            continue;
        }
        let note = change_note(&d.outcome, &req.current, &want);
        if let Some((reason, note)) = note {
            notes.push(Note {
                key: req.key.clone(),
                warning: false,
                reason,
                note,
            });
        }
        writes.push(StatusWrite {
            key: req.key.clone(),
            ips: want,
        });
    }
    failed.retain(|k, _| requests.iter().any(|r| r.key == *k));
    (writes, notes)
}

/// The Event that tells of a Service's addresses going from `current` to `want` (both
/// non-empty: moved; from none: allocated; to none: released).
fn change_note(
    outcome: &Outcome,
    current: &[IpAddr],
    want: &[IpAddr],
) -> Option<(&'static str, String)> {
    match (outcome, current.is_empty(), want.is_empty()) {
        (Outcome::Allocated { pool, .. }, true, false) => Some((
            "IPAllocated",
            format!("Assigned IP [{}] from pool {pool}", list(want)),
        )),
        (_, false, false) => Some((
            "IPChanged",
            format!("Moved from [{}] to [{}]", list(current), list(want)),
        )),
        (Outcome::Pending { reason }, false, true) => Some((
            "ClearAssignment",
            format!("Released [{}]: {reason}", list(current)),
        )),
        (_, false, true) => Some((
            "ClearAssignment",
            format!("Released [{}]: not a LoadBalancer Service", list(current)),
        )),
        _ => None,
    }
}

/// A Service's pool annotation to set (`Some`) or remove (`None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationWrite {
    /// The Service.
    pub key: ServiceKey,
    /// The pool its addresses come from; `None` removes the annotation.
    pub pool: Option<String>,
}

/// The pool annotations that differ from what each Service carries: the pool of its addresses
/// while it has some, none once it has none. Services of another class are not touched.
pub fn pool_annotations(
    requests: &[ServiceRequest],
    decisions: &[Decision],
) -> Vec<AnnotationWrite> {
    let mut writes = Vec::new();
    for (req, d) in requests.iter().zip(decisions) {
        let want = match &d.outcome {
            Outcome::Allocated { pool, .. } => Some(pool.to_string()),
            Outcome::Ignored { .. } if req.service_type == "LoadBalancer" => continue,
            Outcome::Pending { .. } | Outcome::Ignored { .. } => None,
        };
        if req.annotations.get(POOL_ANNOTATION) != want.as_ref() {
            writes.push(AnnotationWrite {
                key: req.key.clone(),
                pool: want,
            });
        }
    }
    writes
}

/// `AnnouncementFailed` Events on the Services of addresses that no speaker is asked to
/// announce, once per address and reason (`last` remembers the reason reported).
pub fn announcement_failures(
    unannounced: &[Unannounced],
    last: &mut HashMap<IpAddr, String>,
) -> Vec<Note> {
    let mut notes = Vec::new();
    for u in unannounced {
        if last.get(&u.ip) == Some(&u.reason) {
            continue;
        }
        last.insert(u.ip, u.reason.clone());
        for s in &u.services {
            let Some((ns, name)) = s.split_once('/') else {
                continue;
            };
            notes.push(Note {
                key: ServiceKey::new(ns, name),
                warning: true,
                reason: "AnnouncementFailed",
                note: format!("{} is allocated but not announced: {}", u.ip, u.reason),
            });
        }
    }
    last.retain(|ip, _| unannounced.iter().any(|u| u.ip == *ip));
    notes
}

/// Who answers for a Service (a `ServiceL2Status`): the holder of its first address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct L2Holder {
    /// The node.
    pub node: String,
    /// The interfaces it answers on.
    pub interfaces: Vec<String>,
}

/// One change to the `ServiceL2Status` objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L2Change {
    /// Create the object, or update its interfaces (same node).
    Put(ServiceKey, L2Holder),
    /// The node changed, which the object's schema does not allow: delete it and create it anew.
    Replace(ServiceKey, L2Holder),
    /// Nobody answers any more: delete it.
    Delete(ServiceKey),
}

/// Who answers for each announced Service, from the claims in etcd: the holder of the Service's
/// lowest claimed address.
pub fn l2_holders(
    claims: &BTreeMap<IpAddr, HeldClaim>,
    announced: &BTreeMap<IpAddr, Announcement>,
) -> BTreeMap<ServiceKey, L2Holder> {
    let mut holders = BTreeMap::new();
    for (ip, held) in claims {
        let Some(a) = announced.get(ip) else {
            continue;
        };
        for s in &a.services {
            let Some((ns, name)) = s.split_once('/') else {
                continue;
            };
            holders
                .entry(ServiceKey::new(ns, name))
                .or_insert_with(|| L2Holder {
                    node: held.claim.node.clone(),
                    interfaces: held.claim.interfaces.clone(),
                });
        }
    }
    holders
}

/// The changes that bring the objects in the cluster (`current`) to `want`.
pub fn l2_changes(
    want: &BTreeMap<ServiceKey, L2Holder>,
    current: &BTreeMap<ServiceKey, L2Holder>,
) -> Vec<L2Change> {
    let mut changes = Vec::new();
    for (key, holder) in want {
        match current.get(key) {
            Some(c) if c == holder => {}
            Some(c) if c.node != holder.node => {
                changes.push(L2Change::Replace(key.clone(), holder.clone()));
            }
            _ => changes.push(L2Change::Put(key.clone(), holder.clone())),
        }
    }
    for key in current.keys().filter(|k| !want.contains_key(*k)) {
        changes.push(L2Change::Delete(key.clone()));
    }
    changes
}

/// What a `ConfigurationState` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigState {
    /// `Valid` (the newest revision is in force) or `Invalid` (a newer one was refused, or the
    /// source cannot be read; the one in force stays).
    pub valid: bool,
    /// The revision in force.
    pub revision: String,
    /// The newer revision refused, when known.
    pub rejected: Option<String>,
    /// Why (empty when valid).
    pub error_summary: String,
}

/// `nodeAssigned` Events for addresses whose holder changed since the last call (`last`
/// remembers the holder each address was last reported with).
pub fn node_assignments(
    claims: &BTreeMap<IpAddr, HeldClaim>,
    announced: &BTreeMap<IpAddr, Announcement>,
    last: &mut HashMap<IpAddr, String>,
) -> Vec<Note> {
    let mut notes = Vec::new();
    for (ip, held) in claims {
        let claim = &held.claim;
        if last.get(ip) == Some(&claim.node) {
            continue;
        }
        let Some(a) = announced.get(ip) else {
            continue;
        };
        last.insert(*ip, claim.node.clone());
        for s in &a.services {
            let Some((ns, name)) = s.split_once('/') else {
                continue;
            };
            notes.push(Note {
                key: ServiceKey::new(ns, name),
                warning: false,
                reason: "nodeAssigned",
                note: format!(
                    "announcing {ip} from node {} on {}",
                    claim.node,
                    claim.interfaces.join(", ")
                ),
            });
        }
    }
    last.retain(|ip, _| claims.contains_key(ip));
    notes
}

#[cfg(test)]
mod tests {
    use ferrolb_core::alloc::Ignored;
    use ferrolb_core::net::{Count, Family};

    use super::*;

    fn full() -> Pending {
        Pending::Exhausted {
            pool: "p".into(),
            family: Family::V4,
            in_use: 4,
            total: Count::from(4u128),
        }
    }

    fn req(name: &str, current: &[&str]) -> ServiceRequest {
        ServiceRequest {
            key: ServiceKey::new("default", name),
            service_type: "LoadBalancer".into(),
            current: current.iter().map(|s| s.parse().expect("ip")).collect(),
            ..ServiceRequest::default()
        }
    }

    fn decision(name: &str, outcome: Outcome) -> Decision {
        Decision {
            key: ServiceKey::new("default", name),
            outcome,
            previous: vec![],
        }
    }

    fn allocated(ip: &str) -> Outcome {
        Outcome::Allocated {
            ips: vec![ip.parse().expect("ip")],
            pool: "p".into(),
        }
    }

    #[test]
    fn statuses_are_written_only_when_they_differ_with_the_right_events() {
        let requests = [
            req("new", &[]),
            req("same", &["10.0.0.2"]),
            req("moved", &["10.0.0.9"]),
            req("gone", &["10.0.0.4"]),
        ];
        let decisions = [
            decision("new", allocated("10.0.0.1")),
            decision("same", allocated("10.0.0.2")),
            decision("moved", allocated("10.0.0.3")),
            decision("gone", Outcome::Pending { reason: full() }),
        ];
        let mut failed = HashMap::new();
        let (writes, notes) = statuses(&requests, &decisions, &mut failed);
        let written: Vec<&str> = writes.iter().map(|w| &*w.key.name).collect();
        assert_eq!(written, ["new", "moved", "gone"]);
        let reasons: Vec<(&str, &str)> = notes.iter().map(|n| (&*n.key.name, n.reason)).collect();
        assert_eq!(
            reasons,
            [
                ("new", "IPAllocated"),
                ("moved", "IPChanged"),
                ("gone", "AllocationFailed"),
                ("gone", "ClearAssignment")
            ]
        );
        // The same pending reason again: no second AllocationFailed.
        let requests = [req("gone", &[])];
        let decisions = [decision("gone", Outcome::Pending { reason: full() })];
        let (writes, notes) = statuses(&requests, &decisions, &mut failed);
        assert!(writes.is_empty() && notes.is_empty());
    }

    #[test]
    fn other_classes_are_untouched_and_non_load_balancers_are_cleared() {
        let mut other = req("other", &["10.0.0.5"]);
        other.load_balancer_class = Some("x".into());
        let mut cluster_ip = req("cip", &["10.0.0.6"]);
        cluster_ip.service_type = "ClusterIP".into();
        let ignored = |n| {
            let reason = Ignored::OtherClass { class: "x".into() };
            decision(n, Outcome::Ignored { reason })
        };
        let (writes, _) = statuses(
            &[other, cluster_ip],
            &[ignored("other"), ignored("cip")],
            &mut HashMap::new(),
        );
        assert_eq!(
            writes,
            [StatusWrite {
                key: ServiceKey::new("default", "cip"),
                ips: vec![]
            }]
        );
    }

    /// `default/web` announced at `ip`.
    fn web_announced(ip: IpAddr) -> BTreeMap<IpAddr, Announcement> {
        BTreeMap::from([(
            ip,
            Announcement {
                ip,
                services: vec!["default/web".into()],
                nodes: vec![],
                interfaces: vec![],
                preferred: BTreeMap::new(),
            },
        )])
    }

    /// A claim by node `n` on eth0.
    fn claim(n: &str) -> HeldClaim {
        HeldClaim {
            claim: ferrolb_core::layout::Claim {
                node: n.into(),
                interfaces: vec!["eth0".into()],
                since: String::new(),
            },
            lease: 7,
            revision: 1,
        }
    }

    fn with_pool(mut r: ServiceRequest, pool: &str) -> ServiceRequest {
        r.annotations.insert(POOL_ANNOTATION.into(), pool.into());
        r
    }

    #[test]
    fn the_pool_annotation_is_set_changed_and_removed_only_when_it_differs() {
        let requests = [
            req("new", &[]),
            with_pool(req("same", &["10.0.0.2"]), "p"),
            with_pool(req("other-pool", &["10.0.0.3"]), "q"),
            with_pool(req("gone", &["10.0.0.4"]), "p"),
            req("never", &[]),
        ];
        let decisions = [
            decision("new", allocated("10.0.0.1")),
            decision("same", allocated("10.0.0.2")),
            decision("other-pool", allocated("10.0.0.3")),
            decision("gone", Outcome::Pending { reason: full() }),
            decision("never", Outcome::Pending { reason: full() }),
        ];
        let writes = pool_annotations(&requests, &decisions);
        let got: Vec<(&str, Option<&str>)> = writes
            .iter()
            .map(|w| (&*w.key.name, w.pool.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("new", Some("p")),
                ("other-pool", Some("p")),
                ("gone", None)
            ]
        );
    }

    #[test]
    fn an_unannounced_address_is_reported_on_its_services_once_per_reason() {
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let u = |reason: &str| Unannounced {
            ip,
            services: vec!["default/a".into(), "default/b".into()],
            reason: reason.into(),
        };
        let mut last = HashMap::new();
        let notes = announcement_failures(&[u("no L2Advertisement covers pool p")], &mut last);
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].reason, "AnnouncementFailed");
        assert!(notes[0].warning);
        assert_eq!(
            notes[1].note,
            "10.0.0.1 is allocated but not announced: no L2Advertisement covers pool p"
        );
        assert!(
            announcement_failures(&[u("no L2Advertisement covers pool p")], &mut last).is_empty()
        );
        assert_eq!(
            announcement_failures(&[u("no eligible node")], &mut last).len(),
            2
        );
        assert!(announcement_failures(&[], &mut last).is_empty());
        assert!(last.is_empty());
    }

    #[test]
    fn l2_statuses_follow_the_claims_and_a_new_node_replaces_the_object() {
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let announced = web_announced(ip);
        let web = ServiceKey::new("default", "web");
        let on = |n: &str| L2Holder {
            node: n.into(),
            interfaces: vec!["eth0".into()],
        };
        let want = l2_holders(&BTreeMap::from([(ip, claim("n1"))]), &announced);
        assert_eq!(want, BTreeMap::from([(web.clone(), on("n1"))]));
        assert_eq!(
            l2_changes(&want, &BTreeMap::new()),
            [L2Change::Put(web.clone(), on("n1"))]
        );
        assert!(l2_changes(&want, &want).is_empty());
        let moved = l2_holders(&BTreeMap::from([(ip, claim("n2"))]), &announced);
        assert_eq!(
            l2_changes(&moved, &want),
            [L2Change::Replace(web.clone(), on("n2"))]
        );
        let mut other_if = on("n1");
        other_if.interfaces = vec!["eth1".into()];
        let current = BTreeMap::from([(web.clone(), other_if)]);
        assert_eq!(
            l2_changes(&want, &current),
            [L2Change::Put(web.clone(), on("n1"))]
        );
        assert_eq!(l2_changes(&BTreeMap::new(), &want), [L2Change::Delete(web)]);
    }

    #[test]
    fn node_assignment_is_reported_once_per_holder() {
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let announced = web_announced(ip);
        let mut last = HashMap::new();
        let notes = node_assignments(&BTreeMap::from([(ip, claim("n1"))]), &announced, &mut last);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].note, "announcing 10.0.0.1 from node n1 on eth0");
        assert!(
            node_assignments(&BTreeMap::from([(ip, claim("n1"))]), &announced, &mut last)
                .is_empty()
        );
        assert_eq!(
            node_assignments(&BTreeMap::from([(ip, claim("n2"))]), &announced, &mut last).len(),
            1
        );
    }
}
