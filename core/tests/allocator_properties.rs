//! Properties of the allocator over random pools and Services.

use std::collections::HashMap;
use std::net::IpAddr;

use ferrolb_core::alloc::{
    Allocator, Decision, FamilyPolicy, Outcome, Port, ServiceKey, ServiceRequest,
};
use ferrolb_core::config::{self, Config};
use ferrolb_core::net::Family;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct PoolSpec {
    size: u8,
    v6: bool,
    avoid_buggy: bool,
    auto_assign: bool,
    team: Option<u8>,
}

fn pool_spec() -> impl Strategy<Value = PoolSpec> {
    (
        1u8..8,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.3, 0u8..2),
    )
        .prop_map(|(size, v6, avoid_buggy, auto_assign, team)| PoolSpec {
            size,
            v6,
            avoid_buggy,
            auto_assign,
            team,
        })
}

fn build_config(specs: &[PoolSpec]) -> Config {
    let mut y = String::new();
    for (i, p) in specs.iter().enumerate() {
        // Pool i owns 10.0.i.250-10.0.(i+1).x so that .255 and .0 fall inside.
        let start = format!("10.0.{i}.250");
        let end_n = 250 + u32::from(p.size) * 2;
        let end = format!("10.0.{}.{}", i + end_n as usize / 256, end_n % 256);
        let mut addrs = vec![format!("{start}-{end}")];
        if p.v6 {
            addrs.push(format!("fd00:{i}::/125"));
        }
        y.push_str(&format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: pool{i}\nspec:\n  addresses: [{}]\n  avoidBuggyIPs: {}\n  autoAssign: {}\n",
            addrs.join(", "),
            p.avoid_buggy,
            p.auto_assign
        ));
        if let Some(t) = p.team {
            y.push_str(&format!(
                "  serviceAllocation:\n    priority: {}\n    namespaces: [ns{t}]\n",
                i % 3
            ));
        }
    }
    let report = config::load([("p.yaml", y.as_bytes())]);
    report
        .config
        .unwrap_or_else(|| panic!("{:#?}\n{y}", report.diagnostics))
}

fn candidate_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4, 245u8..=255).prop_map(|(i, h)| IpAddr::from([10, 0, i, h])),
        (1u8..4, 0u8..20).prop_map(|(i, h)| IpAddr::from([10, 0, i, h])),
        (0u16..4, 0u16..10).prop_map(|(i, h)| IpAddr::from([0xfd00, i, 0, 0, 0, 0, 0, h])),
    ]
}

fn service(i: usize) -> impl Strategy<Value = ServiceRequest> {
    (
        0u8..3,
        prop::option::of(0u8..2),
        prop::collection::vec(1i32..4, 1..3),
        0u8..3,
        prop::option::weighted(0.2, candidate_ip()),
        prop::collection::vec(candidate_ip(), 0..2),
        0u8..5,
        any::<bool>(),
    )
        .prop_map(
            move |(ns, key, ports, policy, requested, current, created, v6_first)| {
                let mut s = ServiceRequest {
                    key: ServiceKey::new(format!("ns{ns}"), format!("svc{i}")),
                    service_type: "LoadBalancer".into(),
                    ports: ports
                        .into_iter()
                        .map(|p| Port {
                            port: p,
                            protocol: "TCP".into(),
                        })
                        .collect(),
                    ip_family_policy: [
                        FamilyPolicy::SingleStack,
                        FamilyPolicy::PreferDualStack,
                        FamilyPolicy::RequireDualStack,
                    ][usize::from(policy)],
                    ip_families: if v6_first {
                        vec![Family::V6, Family::V4]
                    } else {
                        vec![Family::V4, Family::V6]
                    },
                    created: Some(format!("2026-01-0{}T00:00:00Z", created + 1)),
                    current,
                    ..ServiceRequest::default()
                };
                if let Some(k) = key {
                    s.annotations
                        .insert("metallb.io/allow-shared-ip".into(), format!("k{k}"));
                }
                if let Some(ip) = requested {
                    s.annotations
                        .insert("metallb.io/loadBalancerIPs".into(), ip.to_string());
                }
                s
            },
        )
}

fn scenario() -> impl Strategy<Value = (Vec<PoolSpec>, Vec<ServiceRequest>)> {
    (
        prop::collection::vec(pool_spec(), 1..4),
        (1usize..16).prop_flat_map(|n| (0..n).map(service).collect::<Vec<_>>()),
    )
}

/// Each Service's addresses and pool, or `None` when it has none. (Pending reasons may differ:
/// they describe the pools as they were when the Service was considered.)
type Placement = Option<(Vec<IpAddr>, String)>;

fn by_key(decisions: &[Decision]) -> HashMap<ServiceKey, Placement> {
    decisions
        .iter()
        .map(|d| {
            let placed = match &d.outcome {
                Outcome::Allocated { ips, pool } => Some((ips.clone(), pool.clone())),
                _ => None,
            };
            (d.key.clone(), placed)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_address_is_held_by_two_services_that_may_not_share((pools, services) in scenario()) {
        let decisions = Allocator::new(build_config(&pools), None).allocate_all(&services);
        let mut by_ip: HashMap<IpAddr, Vec<&ServiceRequest>> = HashMap::new();
        for (d, s) in decisions.iter().zip(&services) {
            for ip in d.outcome.ips() {
                by_ip.entry(*ip).or_default().push(s);
            }
        }
        for (ip, holders) in by_ip {
            for a in &holders {
                for b in &holders {
                    if a.key != b.key {
                        prop_assert_eq!(a.sharing().conflict_with(&b.sharing()), None, "{} shared", ip);
                    }
                }
            }
        }
    }

    #[test]
    fn every_address_is_inside_a_pool_the_service_may_use((pools, services) in scenario()) {
        let config = build_config(&pools);
        let decisions = Allocator::new(config.clone(), None).allocate_all(&services);
        for (d, s) in decisions.iter().zip(&services) {
            let Outcome::Allocated { ips, pool } = &d.outcome else { continue };
            let pool = config.pool(pool).expect("pool exists");
            let mut families: Vec<Family> = ips.iter().map(|ip| Family::of(*ip)).collect();
            families.dedup();
            prop_assert_eq!(families.len(), ips.len(), "one address per family");
            for ip in ips {
                prop_assert!(pool.contains(*ip), "{} not in {}", ip, pool.name);
            }
            if let Some(a) = &pool.allocation {
                prop_assert!(a.namespaces.iter().any(|n| **n == *s.key.namespace));
            }
            let asked = s.annotation("loadBalancerIPs").is_some();
            prop_assert!(pool.auto_assign || asked || !s.current.is_empty(), "manual pool used unasked");
            if s.ip_family_policy == FamilyPolicy::RequireDualStack {
                prop_assert_eq!(ips.len(), 2);
            }
        }
    }

    #[test]
    fn running_again_on_its_own_output_changes_nothing((pools, services) in scenario()) {
        let config = build_config(&pools);
        let first = Allocator::new(config.clone(), None).allocate_all(&services);
        let settled: Vec<ServiceRequest> = services
            .iter()
            .zip(&first)
            .map(|(s, d)| ServiceRequest { current: d.outcome.ips().to_vec(), ..s.clone() })
            .collect();
        let second = Allocator::new(config, None).allocate_all(&settled);
        prop_assert_eq!(by_key(&first), by_key(&second));
        prop_assert!(second.iter().all(|d| !d.moved()));
    }

    #[test]
    fn the_result_does_not_depend_on_input_order((pools, services) in scenario(), seed in any::<u64>()) {
        let config = build_config(&pools);
        let mut shuffled = services.clone();
        // A deterministic shuffle driven by the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let a = Allocator::new(config.clone(), None).allocate_all(&services);
        let b = Allocator::new(config, None).allocate_all(&shuffled);
        prop_assert_eq!(by_key(&a), by_key(&b));
    }

    #[test]
    fn releasing_everything_frees_every_address((pools, services) in scenario()) {
        let mut alloc = Allocator::new(build_config(&pools), None);
        alloc.allocate_all(&services);
        for s in &services {
            alloc.release(&s.key);
        }
        prop_assert!(alloc.usage().iter().all(|u| u.in_use == 0));
    }
}
