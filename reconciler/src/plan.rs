//! Decide in one place: from the configuration, the Services and the nodes to the writes that
//! bring etcd to the wanted state. Pure; the controller only acts on the result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ferrolb_core::alloc::{Allocator, Decision, PoolUsage, ServiceKey, ServiceRequest};
use ferrolb_core::announce::{self, Announcements, NodeInfo, Placed};
use ferrolb_core::config::Config;
use ferrolb_core::layout::Announcement;
use ferrolb_core::net::Family;

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
}
