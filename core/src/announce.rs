//! From allocations to announcements: one `P/announcements/<ip>` value per allocated address,
//! saying which nodes may answer for it and on which interfaces.
//!
//! - `nodes`: the nodes matched by the node selectors of the L2Advertisements that cover the
//!   address's pool (an advertisement without selectors matches every node), minus nodes labelled
//!   `node.kubernetes.io/exclude-from-external-load-balancers` or with `NetworkUnavailable`; with
//!   `externalTrafficPolicy: Local`, only nodes with a ready endpoint of the Service. Empty means
//!   every node, so it is written empty only when no restriction applies at all; when
//!   restrictions leave no node, the address is not announced (and a warning says why), rather
//!   than announced everywhere.
//! - `interfaces`: the union of the covering advertisements' interfaces; empty (any interface)
//!   when one of them names none.
//! - `preferred`: each eligible node's score, the sum over the covering advertisements of the
//!   weights of the `preferredNodeSelectors` it matches (an advertisement scores only nodes its
//!   own `nodeSelectors` allow); nodes scoring 0 are left out.
//! - An advertisement with `serviceSelectors` covers an address only when it selects at least
//!   one of the Services at the address; one without covers every address of its pools. (A
//!   Service with `allow-shared-ip` that such selectors match is never allocated, see
//!   `alloc`, so the Services sharing an address all see the same advertisements.)
//! - A pool no advertisement covers is allocated but not announced.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::alloc::{Decision, Outcome};
use crate::config::{Config, L2Advertisement, Pool};
use crate::layout::Announcement;
use crate::selector::Labels;

/// The label that keeps a node out of load balancing.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// What the announcement builder knows about a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its labels (Node labels in Kubernetes mode, the speaker's `--labels` in file mode).
    pub labels: Labels,
    /// The `NetworkUnavailable` condition is true.
    pub network_unavailable: bool,
}

impl NodeInfo {
    fn usable(&self) -> bool {
        !self.network_unavailable && !self.labels.contains_key(EXCLUDE_LABEL)
    }
}

/// One allocated Service, as the builder needs it.
#[derive(Clone, Copy, Debug)]
pub struct Placed<'a> {
    /// The allocator's decision (only allocated ones produce announcements).
    pub decision: &'a Decision,
    /// With `externalTrafficPolicy: Local`, the nodes that have a ready endpoint of it.
    pub local_nodes: Option<&'a BTreeSet<String>>,
    /// Its labels, for the advertisements' `serviceSelectors`.
    pub labels: &'a Labels,
}

/// The announcements, and why some addresses are not announced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announcements {
    /// One per announced address.
    pub by_ip: BTreeMap<IpAddr, Announcement>,
    /// Addresses left unannounced, with the reason.
    pub unannounced: BTreeMap<IpAddr, String>,
}

/// The advertisements that cover an address of `pool` whose Services have `labels`: those of
/// the pool without `serviceSelectors`, and those whose selectors match at least one of the
/// Services. `ferrolb plan` shows them; [`build`] takes nodes and interfaces from them.
pub fn advertisements_at<'a, 'l>(
    config: &'a Config,
    pool: &'a Pool,
    labels: impl Iterator<Item = &'l Labels> + Clone,
) -> Vec<&'a L2Advertisement> {
    config
        .advertisements_for(pool)
        .filter(|a| labels.clone().any(|l| a.selects_service(l)))
        .collect()
}

/// Builds every announcement.
pub fn build(
    config: &Config,
    placed: &[Placed<'_>],
    nodes: &BTreeMap<String, NodeInfo>,
) -> Announcements {
    // Group Services by address (shared addresses carry several).
    let mut per_ip: BTreeMap<IpAddr, (String, Vec<Placed<'_>>)> = BTreeMap::new();
    for p in placed {
        if let Outcome::Allocated { ips, pool } = &p.decision.outcome {
            for ip in ips {
                per_ip
                    .entry(*ip)
                    .or_insert_with(|| (pool.clone(), Vec::new()))
                    .1
                    .push(*p);
            }
        }
    }
    let mut out = Announcements::default();
    for (ip, (pool_name, services)) in per_ip {
        let Some(pool) = config.pool(&pool_name) else {
            continue;
        };
        if config.advertisements_for(pool).next().is_none() {
            out.unannounced
                .insert(ip, format!("no L2Advertisement covers pool {pool_name:?}"));
            continue;
        }
        let ads = advertisements_at(config, pool, services.iter().map(|s| s.labels));
        if ads.is_empty() {
            out.unannounced.insert(
                ip,
                format!(
                    "the L2Advertisements of pool {pool_name:?} select none of its Services (serviceSelectors)"
                ),
            );
            continue;
        }
        let selected = ads.iter().any(|a| !a.node_selectors.is_empty());
        let excluded = nodes.values().any(|n| !n.usable());
        let locals: Vec<&BTreeSet<String>> =
            services.iter().filter_map(|s| s.local_nodes).collect();
        let restricted = selected || excluded || !locals.is_empty();
        let mut eligible: Vec<String> = nodes
            .iter()
            .filter(|(_, n)| n.usable())
            .filter(|(_, n)| ads.iter().any(|a| a.selects_node(&n.labels)))
            .filter(|(name, _)| locals.iter().all(|l| l.contains(*name)))
            .map(|(name, _)| name.clone())
            .collect();
        eligible.sort();
        if restricted && eligible.is_empty() {
            out.unannounced.insert(
                ip,
                "no node may announce it (node selectors, exclusions, or no local endpoint)".into(),
            );
            continue;
        }
        let interfaces: Vec<String> = if ads.iter().any(|a| a.interfaces.is_empty()) {
            Vec::new()
        } else {
            ads.iter()
                .flat_map(|a| a.interfaces.iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let preferred: BTreeMap<String, u32> = eligible
            .iter()
            .filter_map(|name| {
                let labels = &nodes.get(name)?.labels;
                let score: u32 = ads.iter().map(|a| a.preference_score(labels)).sum();
                (score > 0).then(|| (name.clone(), score))
            })
            .collect();
        let mut names: Vec<String> = services
            .iter()
            .map(|s| s.decision.key.to_string())
            .collect();
        names.sort();
        names.dedup();
        out.by_ip.insert(
            ip,
            Announcement {
                ip,
                services: names,
                nodes: if restricted { eligible } else { Vec::new() },
                interfaces,
                preferred,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::ServiceKey;

    fn config(yaml: &str) -> Config {
        let r = crate::config::load([("c.yaml", yaml.as_bytes())]);
        r.config.unwrap_or_else(|| panic!("{:#?}", r.diagnostics))
    }

    static NONE: Labels = Labels::new();

    const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: p\nspec:\n  addresses: [10.0.0.0/29]\n";

    fn ad(spec: &str) -> String {
        format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: a{}\nspec:\n{spec}",
            spec.len()
        )
    }

    fn decision(name: &str, ip: &str) -> Decision {
        Decision {
            key: ServiceKey::new("default", name),
            outcome: Outcome::Allocated {
                ips: vec![ip.parse().expect("ip")],
                pool: "p".into(),
            },
            previous: vec![],
        }
    }

    fn nodes(list: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, NodeInfo> {
        list.iter()
            .map(|(n, labels)| {
                let labels = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                (
                    n.to_string(),
                    NodeInfo {
                        labels,
                        network_unavailable: false,
                    },
                )
            })
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn without_restrictions_nodes_and_interfaces_are_empty() {
        let c = config(&format!("{POOL}{}", ad("  ipAddressPools: [p]\n")));
        let d = [decision("web", "10.0.0.1"), decision("dns", "10.0.0.1")];
        let placed: Vec<_> = d
            .iter()
            .map(|d| Placed {
                decision: d,
                local_nodes: None,
                labels: &NONE,
            })
            .collect();
        let a = build(&c, &placed, &nodes(&[("n1", &[]), ("n2", &[])]));
        let got = &a.by_ip[&ip("10.0.0.1")];
        assert_eq!(got.services, ["default/dns", "default/web"]);
        assert!(got.nodes.is_empty() && got.interfaces.is_empty());
    }

    #[test]
    fn node_selectors_exclusions_and_local_endpoints_restrict_nodes() {
        let c = config(&format!(
            "{POOL}{}",
            ad(
                "  nodeSelectors:\n    - matchLabels: {edge: \"true\"}\n  interfaces: [eth1, eth0]\n"
            )
        ));
        let n = nodes(&[
            ("n1", &[("edge", "true")]),
            ("n2", &[("edge", "true"), (EXCLUDE_LABEL, "")]),
            ("n3", &[]),
            ("n4", &[("edge", "true")]),
        ]);
        let d = [decision("web", "10.0.0.1")];
        let a = build(
            &c,
            &[Placed {
                decision: &d[0],
                local_nodes: None,
                labels: &NONE,
            }],
            &n,
        );
        let got = &a.by_ip[&ip("10.0.0.1")];
        assert_eq!(got.nodes, ["n1", "n4"]);
        assert_eq!(got.interfaces, ["eth0", "eth1"]);
        let local: BTreeSet<String> = ["n4".to_string(), "n3".to_string()].into();
        let a = build(
            &c,
            &[Placed {
                decision: &d[0],
                local_nodes: Some(&local),
                labels: &NONE,
            }],
            &n,
        );
        assert_eq!(a.by_ip[&ip("10.0.0.1")].nodes, ["n4"]);
        let none: BTreeSet<String> = BTreeSet::new();
        let a = build(
            &c,
            &[Placed {
                decision: &d[0],
                local_nodes: Some(&none),
                labels: &NONE,
            }],
            &n,
        );
        assert!(a.by_ip.is_empty(), "no eligible node: not announced at all");
        assert!(a.unannounced.contains_key(&ip("10.0.0.1")));
    }

    #[test]
    fn an_uncovered_pool_is_not_announced() {
        let c = config(POOL);
        let d = [decision("web", "10.0.0.1")];
        let a = build(
            &c,
            &[Placed {
                decision: &d[0],
                local_nodes: None,
                labels: &NONE,
            }],
            &BTreeMap::new(),
        );
        assert!(a.by_ip.is_empty());
        assert!(a.unannounced[&ip("10.0.0.1")].contains("no L2Advertisement"));
    }

    #[test]
    fn an_advertisement_without_interfaces_means_any_interface() {
        let c = config(&format!(
            "{POOL}{}{}",
            ad("  interfaces: [eth1]\n"),
            ad("  ipAddressPools: [p]\n")
        ));
        let d = [decision("web", "10.0.0.1")];
        let a = build(
            &c,
            &[Placed {
                decision: &d[0],
                local_nodes: None,
                labels: &NONE,
            }],
            &BTreeMap::new(),
        );
        assert!(a.by_ip[&ip("10.0.0.1")].interfaces.is_empty());
    }

    #[test]
    fn preference_scores_sum_per_advertisement_over_the_nodes_it_allows() {
        let c = config(&format!(
            "{POOL}{}{}",
            ad(
                "  nodeSelectors:\n    - matchLabels: {role: lb}\n  preferredNodeSelectors:\n    - weight: 70\n      preference:\n        matchLabels: {zone: primary}\n"
            ),
            ad(
                "  nodeSelectors:\n    - matchLabels: {role: gpu}\n  preferredNodeSelectors:\n    - weight: 30\n      preference: {}\n    - weight: 5\n      preference:\n        matchLabels: {zone: primary}\n"
            )
        ));
        let n = nodes(&[
            ("x", &[("role", "lb"), ("zone", "primary")]),
            ("y", &[("role", "lb")]),
            ("z", &[("role", "gpu"), ("zone", "primary")]),
            ("w", &[("zone", "primary")]),
        ]);
        let d = [decision("web", "10.0.0.1")];
        let a = build(
            &c,
            &[Placed {
                decision: &d[0],
                local_nodes: None,
                labels: &NONE,
            }],
            &n,
        );
        let got = &a.by_ip[&ip("10.0.0.1")];
        assert_eq!(got.nodes, ["x", "y", "z"]);
        // x: 70 from the first; z: 30 + 5 from the second only (the first does not allow z);
        // y scores nothing and is left out; w is not eligible at all.
        assert_eq!(
            got.preferred,
            BTreeMap::from([("x".to_string(), 70), ("z".to_string(), 35)])
        );
    }

    #[test]
    fn service_selectors_decide_which_advertisements_cover_an_address() {
        let c = config(&format!(
            "{POOL}{}{}",
            ad(
                "  serviceSelectors:\n    - matchLabels: {app: web}\n  nodeSelectors:\n    - matchLabels: {edge: \"true\"}\n  interfaces: [eth1]\n"
            ),
            ad("  nodeSelectors:\n    - matchLabels: {core: \"true\"}\n  interfaces: [eth0]\n")
        ));
        let n = nodes(&[("e", &[("edge", "true")]), ("k", &[("core", "true")])]);
        let web: Labels = [("app".to_string(), "web".to_string())].into();
        let d = [decision("web", "10.0.0.1"), decision("db", "10.0.0.2")];
        let a = build(
            &c,
            &[
                Placed {
                    decision: &d[0],
                    local_nodes: None,
                    labels: &web,
                },
                Placed {
                    decision: &d[1],
                    local_nodes: None,
                    labels: &NONE,
                },
            ],
            &n,
        );
        let selected = &a.by_ip[&ip("10.0.0.1")];
        assert_eq!(selected.nodes, ["e", "k"]);
        assert_eq!(selected.interfaces, ["eth0", "eth1"]);
        let outside = &a.by_ip[&ip("10.0.0.2")];
        assert_eq!(
            outside.nodes,
            ["k"],
            "only the advertisement without selectors"
        );
        assert_eq!(outside.interfaces, ["eth0"]);

        // Only selector-bearing advertisements, and none selects the Service: not announced.
        let c = config(&format!(
            "{POOL}{}",
            ad("  serviceSelectors:\n    - matchLabels: {app: web}\n")
        ));
        let a = build(
            &c,
            &[Placed {
                decision: &d[1],
                local_nodes: None,
                labels: &NONE,
            }],
            &n,
        );
        assert!(a.by_ip.is_empty());
        assert!(a.unannounced[&ip("10.0.0.2")].contains("serviceSelectors"));
    }
}
