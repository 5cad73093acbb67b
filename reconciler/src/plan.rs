//! Decide in one place: from the configuration, the Services and the nodes to the writes that
//! bring etcd to the wanted state ([`plan`]), and, for one round of the leader, everything else
//! it writes: the configuration status, and the Service statuses and Events for Kubernetes
//! ([`round`]). Pure; the controller only acts on the result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ferrolb_core::alloc::{Allocator, Decision, Pending, PoolUsage, ServiceKey, ServiceRequest};
use ferrolb_core::announce::{self, Announcements, NodeInfo, Placed};
use ferrolb_core::config::Config;
use ferrolb_core::layout::{Announcement, ConfigStatus, PoolUse, Unannounced};
use ferrolb_core::net::Family;
use ferrolb_core::view::HeldClaim;

use crate::feedback::{self, AnnotationWrite, ConfigState, L2Change, L2Holder, Note, StatusWrite};

/// One change to `P/announcements/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Create or replace an announcement.
    Put(Announcement),
    /// Withdraw an address.
    Delete(IpAddr),
}

/// What one round of decisions produced.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// One decision per Service, in input order.
    pub decisions: Vec<Decision>,
    /// Use of every pool.
    pub usage: Vec<PoolUsage>,
    /// The announcements etcd should hold.
    pub desired: Announcements,
    /// The writes that get it there: nothing for what is already right.
    pub writes: Vec<Write>,
}

/// Everything the decision depends on.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The configuration in force.
    pub config: &'a Config,
    /// `--lb-class`.
    pub lb_class: Option<&'a str>,
    /// The Services, with their current addresses.
    pub services: &'a [ServiceRequest],
    /// The nodes that may announce.
    pub nodes: &'a BTreeMap<String, NodeInfo>,
    /// What etcd holds now.
    pub announced: &'a BTreeMap<IpAddr, Announcement>,
    /// For Services with `externalTrafficPolicy: Local`, the nodes with a ready endpoint; `None`
    /// when endpoints are unknown (file mode), where the policy then restricts nothing.
    pub local_nodes: Option<&'a HashMap<ServiceKey, BTreeSet<String>>>,
}

/// Decides everything: allocation, announcements, and the difference to etcd.
pub fn plan(inputs: Inputs<'_>) -> Plan {
    let mut allocator = Allocator::new(inputs.config.clone(), inputs.lb_class.map(str::to_string));
    let decisions = allocator.allocate_all(inputs.services);
    let no_endpoints = BTreeSet::new();
    let placed: Vec<Placed<'_>> = decisions
        .iter()
        .zip(inputs.services)
        .map(|(d, s)| Placed {
            decision: d,
            local_nodes: inputs
                .local_nodes
                .filter(|_| s.traffic_policy_local)
                .map(|l| l.get(&s.key).unwrap_or(&no_endpoints)),
            labels: &s.labels,
        })
        .collect();
    let desired = announce::build(inputs.config, &placed, inputs.nodes);
    let writes = diff(&desired.by_ip, inputs.announced);
    Plan {
        usage: allocator.usage(),
        decisions,
        desired,
        writes,
    }
}

/// The writes that turn `have` into `want`; unchanged announcements are never rewritten.
pub fn diff(
    want: &BTreeMap<IpAddr, Announcement>,
    have: &BTreeMap<IpAddr, Announcement>,
) -> Vec<Write> {
    let mut writes: Vec<Write> = want
        .iter()
        .filter(|(ip, a)| have.get(ip) != Some(a))
        .map(|(_, a)| Write::Put(a.clone()))
        .collect();
    writes.extend(
        have.keys()
            .filter(|ip| !want.contains_key(ip))
            .map(|ip| Write::Delete(*ip)),
    );
    writes
}

/// In file mode etcd holds the state: a Service's current addresses are the announced addresses
/// that name it (primary family first). A Service no announcement names keeps the addresses its
/// manifest's status gives (a first start on an empty etcd agrees with `ferrolb plan`).
pub fn current_from_announcements(
    services: &mut [ServiceRequest],
    announced: &BTreeMap<IpAddr, Announcement>,
) {
    let mut by_service: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
    for (ip, a) in announced {
        for s in &a.services {
            by_service.entry(s.as_str()).or_default().push(*ip);
        }
    }
    for s in services.iter_mut() {
        let key = s.key.to_string();
        let Some(mut ips) = by_service.get(key.as_str()).cloned() else {
            continue;
        };
        let primary = s.ip_families.first().copied().unwrap_or(Family::V4);
        ips.sort_by_key(|ip| (Family::of(*ip) != primary, *ip));
        s.current = ips;
    }
}

/// What was last told to Kubernetes, so that each Event is recorded once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    /// The last `AllocationFailed` reason per Service.
    pub failed: HashMap<ServiceKey, Pending>,
    /// The holder last reported (`nodeAssigned`) per address.
    pub assigned: HashMap<IpAddr, String>,
    /// The reason last reported (`AnnouncementFailed`) per unannounced address.
    pub unannounced: HashMap<IpAddr, String>,
    /// The `ConfigurationState` last written.
    pub config_state: Option<ConfigState>,
}

/// Everything one round of the leader depends on.
#[derive(Clone, Copy, Debug)]
pub struct RoundInputs<'a> {
    /// Allocation and announcements.
    pub plan: Inputs<'a>,
    /// The configuration revision in force.
    pub revision: &'a str,
    /// When this replica applied it.
    pub applied_at: &'a str,
    /// The last error reading a newer configuration.
    pub config_error: Option<&'a str>,
    /// `P/reconciler/config` as etcd holds it.
    pub config_in_etcd: Option<&'a ConfigStatus>,
    /// Who answers for each address, as etcd says.
    pub claims: &'a BTreeMap<IpAddr, HeldClaim>,
    /// With Services from Kubernetes: what was last told to it.
    pub reported: Option<&'a Reported>,
    /// The newer configuration revision refused, when known.
    pub rejected: Option<&'a str>,
    /// The `ServiceL2Status` objects in the cluster, when they are kept.
    pub l2_in_cluster: Option<&'a BTreeMap<ServiceKey, L2Holder>>,
}

/// What one round of the leader writes.
#[derive(Clone, Debug)]
pub struct Round {
    /// Allocation, announcements and the writes to `P/announcements/`.
    pub plan: Plan,
    /// `P/reconciler/config` to write, when it differs from etcd's.
    pub config_status: Option<ConfigStatus>,
    /// With Services from Kubernetes: what to tell it, once etcd holds the announcements.
    pub kubernetes: Option<Feedback>,
}

/// What to tell Kubernetes after a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feedback {
    /// Service statuses that differ.
    pub statuses: Vec<StatusWrite>,
    /// Pool annotations that differ.
    pub annotations: Vec<AnnotationWrite>,
    /// Events to record.
    pub events: Vec<Note>,
    /// Changes to the `ServiceL2Status` objects (none when they are not kept).
    pub l2: Vec<L2Change>,
    /// The `ConfigurationState` to write, when it differs from the one last written.
    pub config_state: Option<ConfigState>,
    /// What will have been reported once these are carried out.
    pub reported: Reported,
}

/// One round: the plan, the configuration status, and the feedback for Kubernetes, computed
/// against the announcements etcd will hold once the plan's writes are made.
pub fn round(inputs: RoundInputs<'_>) -> Round {
    let plan = plan(inputs.plan);
    // The same revision keeps the time it was first applied, so a restart rewrites nothing.
    let applied_at = match inputs.config_in_etcd {
        Some(c) if c.revision == inputs.revision => c.applied_at.clone(),
        _ => inputs.applied_at.to_string(),
    };
    let status = ConfigStatus {
        revision: inputs.revision.to_string(),
        applied_at,
        error: inputs.config_error.map(str::to_string),
        pools: pool_use(&plan.usage),
        unannounced: unannounced(&plan),
    };
    let kubernetes = inputs
        .reported
        .map(|reported| feedback_of(&inputs, &plan, &status, reported.clone()));
    let config_status = (inputs.config_in_etcd != Some(&status)).then_some(status);
    Round {
        plan,
        config_status,
        kubernetes,
    }
}

/// What to tell Kubernetes about a round's plan.
fn feedback_of(
    inputs: &RoundInputs<'_>,
    plan: &Plan,
    status: &ConfigStatus,
    mut reported: Reported,
) -> Feedback {
    let services = inputs.plan.services;
    let (statuses, mut events) =
        feedback::statuses(services, &plan.decisions, &mut reported.failed);
    events.extend(feedback::node_assignments(
        inputs.claims,
        &plan.desired.by_ip,
        &mut reported.assigned,
    ));
    events.extend(feedback::announcement_failures(
        &status.unannounced,
        &mut reported.unannounced,
    ));
    let l2 = inputs
        .l2_in_cluster
        .map(|current| {
            let want = feedback::l2_holders(inputs.claims, &plan.desired.by_ip);
            feedback::l2_changes(&want, current)
        })
        .unwrap_or_default();
    let state = ConfigState {
        valid: inputs.config_error.is_none(),
        revision: inputs.revision.to_string(),
        rejected: inputs.rejected.map(str::to_string),
        error_summary: inputs.config_error.unwrap_or_default().to_string(),
    };
    let config_state = (reported.config_state.as_ref() != Some(&state)).then(|| state.clone());
    reported.config_state = Some(state);
    Feedback {
        statuses,
        annotations: feedback::pool_annotations(services, &plan.decisions),
        events,
        l2,
        config_state,
        reported,
    }
}

/// The allocated addresses that no speaker is asked to announce, with their Services.
fn unannounced(plan: &Plan) -> Vec<Unannounced> {
    plan.desired
        .unannounced
        .iter()
        .map(|(ip, reason)| Unannounced {
            ip: *ip,
            services: plan
                .decisions
                .iter()
                .filter(|d| d.outcome.ips().contains(ip))
                .map(|d| d.key.to_string())
                .collect(),
            reason: reason.clone(),
        })
        .collect()
}

/// Use of every pool, as `ferrolb status` shows it.
pub fn pool_use(usage: &[PoolUsage]) -> Vec<PoolUse> {
    usage
        .iter()
        .map(|u| PoolUse {
            pool: u.pool.clone(),
            family: u.family.to_string(),
            in_use: u.in_use.to_string(),
            total: u.total.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let y = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: p\nspec:\n  addresses: [10.0.0.0/30]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: all\n";
        ferrolb_core::config::load([("c.yaml", y.as_bytes())])
            .config
            .expect("valid")
    }

    fn svc(name: &str) -> ServiceRequest {
        ServiceRequest {
            key: ServiceKey::new("default", name),
            service_type: "LoadBalancer".into(),
            ..ServiceRequest::default()
        }
    }

    #[test]
    fn a_second_round_on_its_own_result_writes_nothing() {
        let c = config();
        let services = [svc("a"), svc("b")];
        let nodes = BTreeMap::new();
        let empty = BTreeMap::new();
        let first = plan(Inputs {
            config: &c,
            lb_class: None,
            services: &services,
            nodes: &nodes,
            announced: &empty,
            local_nodes: None,
        });
        assert_eq!(first.writes.len(), 2);
        let announced = first.desired.by_ip.clone();
        let mut again = services.to_vec();
        current_from_announcements(&mut again, &announced);
        assert_eq!(
            again[1].current,
            ["10.0.0.1".parse::<IpAddr>().expect("ip")]
        );
        let second = plan(Inputs {
            config: &c,
            lb_class: None,
            services: &again,
            nodes: &nodes,
            announced: &announced,
            local_nodes: None,
        });
        assert!(second.writes.is_empty(), "{:?}", second.writes);
    }

    #[test]
    fn removed_services_are_withdrawn_and_changed_ones_rewritten() {
        let c = config();
        let nodes = BTreeMap::new();
        let empty = BTreeMap::new();
        let first = plan(Inputs {
            config: &c,
            lb_class: None,
            services: &[svc("a"), svc("b")],
            nodes: &nodes,
            announced: &empty,
            local_nodes: None,
        });
        let announced = first.desired.by_ip;
        let mut only_b = vec![svc("b")];
        current_from_announcements(&mut only_b, &announced);
        let p = plan(Inputs {
            config: &c,
            lb_class: None,
            services: &only_b,
            nodes: &nodes,
            announced: &announced,
            local_nodes: None,
        });
        assert_eq!(p.writes, [Write::Delete("10.0.0.0".parse().expect("ip"))]);
    }

    fn round_of<'a>(
        c: &'a Config,
        services: &'a [ServiceRequest],
        announced: &'a BTreeMap<IpAddr, Announcement>,
        in_etcd: Option<&'a ConfigStatus>,
        claims: &'a BTreeMap<IpAddr, HeldClaim>,
        reported: Option<&'a Reported>,
    ) -> Round {
        static NODES: std::sync::LazyLock<BTreeMap<String, NodeInfo>> =
            std::sync::LazyLock::new(BTreeMap::new);
        round(RoundInputs {
            plan: Inputs {
                config: c,
                lb_class: None,
                services,
                nodes: &NODES,
                announced,
                local_nodes: None,
            },
            revision: "r1",
            applied_at: "2026-12-02T00:00:00Z",
            config_error: None,
            config_in_etcd: in_etcd,
            claims,
            reported,
            rejected: None,
            l2_in_cluster: None,
        })
    }

    #[test]
    fn a_round_writes_the_configuration_status_only_when_it_differs_and_keeps_its_time() {
        let c = config();
        let services = [svc("a")];
        let none = BTreeMap::new();
        let no_claims = BTreeMap::new();
        let first = round_of(&c, &services, &none, None, &no_claims, None);
        let status = first.config_status.expect("nothing in etcd yet");
        assert_eq!(status.applied_at, "2026-12-02T00:00:00Z");
        assert_eq!(status.pools[0].in_use, "1");
        assert!(
            first.kubernetes.is_none(),
            "file mode tells Kubernetes nothing"
        );
        let announced = first.plan.desired.by_ip.clone();
        let mut again = services.to_vec();
        current_from_announcements(&mut again, &announced);
        let second = round_of(&c, &again, &announced, Some(&status), &no_claims, None);
        assert!(second.plan.writes.is_empty() && second.config_status.is_none());
        // Another replica (or a restart) applied the same revision later: etcd's time stands.
        let earlier = ConfigStatus {
            applied_at: "2026-11-30T00:00:00Z".into(),
            ..status
        };
        let third = round_of(&c, &again, &announced, Some(&earlier), &no_claims, None);
        assert!(third.config_status.is_none());
    }

    #[test]
    fn the_feedback_is_computed_against_the_announcements_etcd_will_hold() {
        let c = config();
        let services = [svc("a")];
        let none = BTreeMap::new();
        let ip: IpAddr = "10.0.0.0".parse().expect("ip");
        let claims = BTreeMap::from([(
            ip,
            HeldClaim {
                claim: ferrolb_core::layout::Claim {
                    node: "n1".into(),
                    interfaces: vec!["eth0".into()],
                    since: String::new(),
                },
                lease: 7,
                revision: 1,
            },
        )]);
        let reported = Reported::default();
        let r = round_of(&c, &services, &none, None, &claims, Some(&reported));
        let fb = r.kubernetes.expect("Kubernetes mode");
        assert_eq!(
            fb.statuses,
            [StatusWrite {
                key: services[0].key.clone(),
                ips: vec![ip]
            }]
        );
        let reasons: Vec<&str> = fb.events.iter().map(|n| n.reason).collect();
        // The announcement is written in this very round: the holder is reported already.
        assert_eq!(reasons, ["IPAllocated", "nodeAssigned"]);
        assert_eq!(
            fb.reported.assigned.get(&ip).map(String::as_str),
            Some("n1")
        );
        // The memory passed in is untouched: it changes only once the feedback is carried out.
        assert_eq!(reported, Reported::default());
        let again = round_of(&c, &services, &none, None, &claims, Some(&fb.reported));
        let fb = again.kubernetes.expect("Kubernetes mode");
        assert!(
            fb.events.iter().all(|n| n.reason != "nodeAssigned"),
            "reported once"
        );
    }

    /// What the leader's executor does with a round, on a model of etcd and the API server:
    /// the announcement writes land in `announced`, the configuration status in `status`, the
    /// statuses in the Services' current addresses, and the memory of what was reported is kept.
    #[derive(Default)]
    struct Leader {
        announced: BTreeMap<IpAddr, Announcement>,
        status: Option<ConfigStatus>,
        reported: Reported,
        events: Vec<&'static str>,
        l2: BTreeMap<ServiceKey, L2Holder>,
    }

    impl Leader {
        fn carry_out(&mut self, r: Round, services: &mut [ServiceRequest]) -> (usize, usize) {
            let writes = r.plan.writes.len();
            for w in r.plan.writes {
                match w {
                    Write::Put(a) => {
                        self.announced.insert(a.ip, a);
                    }
                    Write::Delete(ip) => {
                        self.announced.remove(&ip);
                    }
                }
            }
            if let Some(s) = r.config_status {
                self.status = Some(s);
            }
            let fb = r.kubernetes.expect("Kubernetes mode");
            let told = fb.statuses.len()
                + fb.annotations.len()
                + fb.l2.len()
                + usize::from(fb.config_state.is_some());
            for st in fb.statuses {
                if let Some(s) = services.iter_mut().find(|s| s.key == st.key) {
                    s.current = st.ips;
                }
            }
            for a in fb.annotations {
                if let Some(s) = services.iter_mut().find(|s| s.key == a.key) {
                    match a.pool {
                        Some(p) => s.annotations.insert(feedback::POOL_ANNOTATION.into(), p),
                        None => s.annotations.remove(feedback::POOL_ANNOTATION),
                    };
                }
            }
            for change in fb.l2 {
                match change {
                    L2Change::Put(k, h) | L2Change::Replace(k, h) => {
                        self.l2.insert(k, h);
                    }
                    L2Change::Delete(k) => {
                        self.l2.remove(&k);
                    }
                }
            }
            self.events.extend(fb.events.iter().map(|n| n.reason));
            self.reported = fb.reported;
            (writes, told)
        }

        fn round(
            &self,
            c: &Config,
            services: &[ServiceRequest],
            claims: &BTreeMap<IpAddr, HeldClaim>,
            error: Option<&str>,
        ) -> Round {
            let nodes = BTreeMap::new();
            round(RoundInputs {
                plan: Inputs {
                    config: c,
                    lb_class: None,
                    services,
                    nodes: &nodes,
                    announced: &self.announced,
                    local_nodes: None,
                },
                revision: "r1",
                applied_at: "2026-12-02T00:00:00Z",
                config_error: error,
                config_in_etcd: self.status.as_ref(),
                claims,
                reported: Some(&self.reported),
                rejected: error.map(|_| "r2"),
                l2_in_cluster: Some(&self.l2),
            })
        }
    }

    /// A scripted sequence of rounds, each carried out before the next is decided: every round
    /// writes exactly what changed since the one before, and each Event is recorded once.
    #[test]
    fn a_sequence_of_rounds_writes_only_what_each_change_calls_for() {
        let c = config();
        let mut leader = Leader::default();
        let mut services = vec![svc("a"), svc("b")];
        let mut claims = BTreeMap::new();
        // Two new Services: two announcements; two statuses, two pool annotations and the
        // ConfigurationState; two IPAllocated.
        let r = leader.round(&c, &services, &claims, None);
        assert_eq!(leader.carry_out(r, &mut services), (2, 5));
        assert!(
            services
                .iter()
                .all(|s| s.annotation("ip-allocated-from-pool") == Some("p"))
        );
        assert_eq!(leader.events, ["IPAllocated", "IPAllocated"]);
        assert!(leader.status.as_ref().is_some_and(|s| s.error.is_none()));
        // Nothing changed: nothing is written.
        let r = leader.round(&c, &services, &claims, None);
        assert!(r.config_status.is_none());
        assert_eq!(leader.carry_out(r, &mut services), (0, 0));
        assert_eq!(leader.events.len(), 2);
        // A speaker claims a's address: nodeAssigned, once.
        let a_ip = services[0].current[0];
        let claim = HeldClaim {
            claim: ferrolb_core::layout::Claim {
                node: "n1".into(),
                interfaces: vec!["eth0".into()],
                since: String::new(),
            },
            lease: 7,
            revision: 9,
        };
        claims.insert(a_ip, claim);
        // A speaker claims a's address: its ServiceL2Status is written, nodeAssigned once.
        let written: Vec<_> = (0..2)
            .map(|_| {
                let r = leader.round(&c, &services, &claims, None);
                leader.carry_out(r, &mut services)
            })
            .collect();
        assert_eq!(written, [(0, 1), (0, 0)]);
        assert_eq!(leader.events[2..], ["nodeAssigned"]);
        assert_eq!(
            leader.l2.get(&services[0].key).map(|h| h.node.as_str()),
            Some("n1")
        );
        // b is deleted: its address is withdrawn; no status to write for a Service that is gone.
        services.pop();
        let r = leader.round(&c, &services, &claims, None);
        assert_eq!(leader.carry_out(r, &mut services), (1, 0));
        assert_eq!(leader.announced.len(), 1);
        // A newer configuration revision is invalid: the status and the ConfigurationState say
        // so, nothing else moves.
        let r = leader.round(&c, &services, &claims, Some("pool p: overlaps pool q"));
        assert!(r.config_status.as_ref().is_some_and(|s| s.error.is_some()));
        let state = r.kubernetes.as_ref().and_then(|f| f.config_state.clone());
        assert!(state.is_some_and(|s| !s.valid && s.rejected.as_deref() == Some("r2")));
        assert_eq!(leader.carry_out(r, &mut services), (0, 1));
        assert_eq!(leader.events.len(), 3);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Whatever Services there are (some asking for an address of their own, some of them
        /// more than the pool holds), a round carried out and then decided again on its own
        /// result writes nothing, tells Kubernetes nothing and records no Event again.
        #[test]
        fn a_round_on_the_result_of_the_one_before_writes_nothing(
            asks in proptest::collection::vec(proptest::option::of(0u8..6), 0..7)
        ) {
            let c = config();
            let mut leader = Leader::default();
            let mut services: Vec<ServiceRequest> = asks
                .iter()
                .enumerate()
                .map(|(i, ask)| {
                    let mut s = svc(&format!("s{i}"));
                    if let Some(n) = ask {
                        s.annotations.insert(
                            "metallb.io/loadBalancerIPs".into(),
                            format!("10.0.0.{n}"),
                        );
                    }
                    s
                })
                .collect();
            let claims = BTreeMap::new();
            let r = leader.round(&c, &services, &claims, None);
            leader.carry_out(r, &mut services);
            let events = leader.events.len();
            let again = leader.round(&c, &services, &claims, None);
            proptest::prop_assert!(again.config_status.is_none());
            proptest::prop_assert_eq!(leader.carry_out(again, &mut services), (0, 0));
            proptest::prop_assert_eq!(leader.events.len(), events);
        }
    }
}
