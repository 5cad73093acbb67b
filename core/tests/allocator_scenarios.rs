//! One scenario per allocation rule, calling the allocator directly.

use std::net::IpAddr;

use ferrolb_core::alloc::{
    Allocator, Decision, FamilyPolicy, Ignored, Outcome, Pending, PendingKind, Port, ServiceKey,
    ServiceRequest,
};
use ferrolb_core::config::{self, Config};
use ferrolb_core::net::Family;

fn config(yaml: &str) -> Config {
    let report = config::load([("pools.yaml", yaml.as_bytes())]);
    report
        .config
        .unwrap_or_else(|| panic!("invalid test config: {:#?}", report.diagnostics))
}

/// Pools given as `name: ranges; extra spec lines`.
fn pools(specs: &[(&str, &[&str], &str)]) -> Config {
    let mut y = String::new();
    for (name, ranges, extra) in specs {
        y.push_str(&format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: {name}\nspec:\n  addresses: [{}]\n{extra}",
            ranges.join(", ")
        ));
    }
    config(&y)
}

fn svc(ns: &str, name: &str) -> ServiceRequest {
    ServiceRequest {
        key: ServiceKey::new(ns, name),
        service_type: "LoadBalancer".into(),
        ports: vec![Port {
            port: 80,
            protocol: "TCP".into(),
        }],
        ..ServiceRequest::default()
    }
}

fn annotate(mut s: ServiceRequest, key: &str, value: &str) -> ServiceRequest {
    s.annotations
        .insert(format!("metallb.io/{key}"), value.into());
    s
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn run(config: Config, services: &[ServiceRequest]) -> Vec<Decision> {
    Allocator::new(config, None).allocate_all(services)
}

#[track_caller]
fn assert_allocated(d: &Decision, want: &[&str], pool: &str) {
    assert_eq!(
        d.outcome,
        Outcome::Allocated {
            ips: ips(want),
            pool: pool.into()
        },
        "{}",
        d.key
    );
}

/// Whether `reason`, or a reason it is made of (per pool), is what `wanted` looks for.
fn is_or_holds(reason: &Pending, wanted: &dyn Fn(&Pending) -> bool) -> bool {
    wanted(reason)
        || matches!(reason, Pending::InPool(all) | Pending::EveryPoolFull(all) if all.iter().any(|r| is_or_holds(r, wanted)))
}

#[track_caller]
fn assert_pending(d: &Decision, wanted: impl Fn(&Pending) -> bool) {
    match &d.outcome {
        Outcome::Pending { reason } => assert!(
            is_or_holds(reason, &wanted),
            "{}: not the reason expected: {reason:?}",
            d.key
        ),
        other => panic!("{}: expected pending, got {other:?}", d.key),
    }
}

type Wanted = Box<dyn Fn(&Pending) -> bool>;

/// A request refused as malformed, saying `why`.
fn bad_request(why: &'static str) -> Wanted {
    Box::new(move |r| matches!(r, Pending::BadRequest(s) if s.contains(why)))
}

#[test]
fn only_load_balancer_services_are_served() {
    let mut cluster_ip = svc("default", "c");
    cluster_ip.service_type = "ClusterIP".into();
    let d = run(pools(&[("p", &["10.0.0.0/30"], "")]), &[cluster_ip]);
    assert!(
        matches!(&d[0].outcome, Outcome::Ignored { reason: Ignored::NotLoadBalancer { service_type } } if service_type == "ClusterIP")
    );
}

#[test]
fn load_balancer_class_selects_which_services_are_ours() {
    let mut classed = svc("default", "classed");
    classed.load_balancer_class = Some("example.com/other".into());
    let plain = svc("default", "plain");
    let cfg = pools(&[("p", &["10.0.0.0/30"], "")]);
    let d = Allocator::new(cfg.clone(), None).allocate_all(&[classed.clone(), plain.clone()]);
    assert!(matches!(d[0].outcome, Outcome::Ignored { .. }));
    assert_allocated(&d[1], &["10.0.0.0"], "p");
    let d = Allocator::new(cfg, Some("example.com/other".into())).allocate_all(&[classed, plain]);
    assert_allocated(&d[0], &["10.0.0.0"], "p");
    assert!(matches!(d[1].outcome, Outcome::Ignored { .. }));
}

#[test]
fn lowest_free_address_first_and_avoid_buggy_ips() {
    let cfg = pools(&[("p", &["10.0.0.255-10.0.1.2"], "  avoidBuggyIPs: true\n")]);
    let d = run(cfg, &[svc("a", "1"), svc("a", "2"), svc("a", "3")]);
    assert_allocated(&d[0], &["10.0.1.1"], "p");
    assert_allocated(&d[1], &["10.0.1.2"], "p");
    assert_pending(
        &d[2],
        |r| matches!(r, Pending::Exhausted { pool, family: Family::V4, in_use: 2, .. } if pool == "p"),
    );
}

#[test]
fn requested_address_comes_from_any_pool_even_manual() {
    let cfg = pools(&[
        ("auto", &["10.0.0.0/30"], ""),
        ("manual", &["10.0.9.0/30"], "  autoAssign: false\n"),
    ]);
    let d = run(
        cfg,
        &[annotate(svc("a", "dns"), "loadBalancerIPs", "10.0.9.2")],
    );
    assert_allocated(&d[0], &["10.0.9.2"], "manual");
}

#[test]
fn spec_load_balancer_ip_is_honoured() {
    let mut s = svc("a", "old-style");
    s.load_balancer_ip = Some("10.0.0.3".into());
    let d = run(pools(&[("p", &["10.0.0.0/30"], "")]), &[s]);
    assert_allocated(&d[0], &["10.0.0.3"], "p");
}

#[test]
fn older_annotation_prefix_is_read_and_newer_wins() {
    let cfg = pools(&[("p", &["10.0.0.0/29"], "")]);
    let mut old = svc("a", "old");
    old.annotations.insert(
        "metallb.universe.tf/loadBalancerIPs".into(),
        "10.0.0.5".into(),
    );
    let mut both = old.clone();
    both.key.name = "both".into();
    both.annotations
        .insert("metallb.io/loadBalancerIPs".into(), "10.0.0.6".into());
    let d = run(cfg, &[old, both]);
    assert_allocated(&d[0], &["10.0.0.5"], "p");
    assert_allocated(&d[1], &["10.0.0.6"], "p");
}

#[test]
fn requests_that_cannot_be_met_stay_pending_with_a_reason() {
    let cfg = pools(&[
        ("p", &["10.0.0.0/29", "fd00::/120"], ""),
        ("q", &["10.0.1.0/29"], ""),
    ]);
    let mut both_fields = annotate(svc("a", "both"), "loadBalancerIPs", "10.0.0.1");
    both_fields.load_balancer_ip = Some("10.0.0.2".into());
    let mut dual = annotate(svc("a", "split"), "loadBalancerIPs", "10.0.1.1,fd00::1");
    dual.ip_family_policy = FamilyPolicy::RequireDualStack;
    let cases = [
        (
            both_fields,
            bad_request("both spec.loadBalancerIP and the loadBalancerIPs annotation"),
        ),
        (
            annotate(svc("a", "nowhere"), "loadBalancerIPs", "10.9.9.9"),
            Box::new(|r: &Pending| *r == Pending::NotInPool(ip("10.9.9.9"))),
        ),
        (
            annotate(svc("a", "garbage"), "loadBalancerIPs", "ten"),
            bad_request("\"ten\" is not an IP address"),
        ),
        (
            annotate(svc("a", "two"), "loadBalancerIPs", "10.0.0.1,10.0.0.2"),
            bad_request("at most one per family"),
        ),
        (
            dual,
            Box::new(|r: &Pending| matches!(r, Pending::DifferentPools { .. })),
        ),
        (
            annotate(svc("a", "ghost"), "address-pool", "ghost"),
            Box::new(|r: &Pending| *r == Pending::NoSuchPool("ghost".into())),
        ),
        (
            annotate(svc("a", "v6"), "loadBalancerIPs", "fd00::5"),
            Box::new(|r: &Pending| {
                matches!(
                    r,
                    Pending::WrongFamily {
                        family: Family::V6,
                        service: Family::V4,
                        ..
                    }
                )
            }),
        ),
    ];
    for (s, wanted) in cases {
        let d = run(cfg.clone(), &[s]);
        assert_pending(&d[0], wanted);
    }
}

#[test]
fn address_pool_annotation_picks_any_pool_even_manual() {
    let cfg = pools(&[
        ("auto", &["10.0.0.0/30"], ""),
        ("manual", &["10.0.9.0/30"], "  autoAssign: false\n"),
    ]);
    let d = run(cfg, &[annotate(svc("a", "s"), "address-pool", "manual")]);
    assert_allocated(&d[0], &["10.0.9.0"], "manual");
}

#[test]
fn manual_pools_are_never_picked_automatically() {
    let cfg = pools(&[("manual", &["10.0.9.0/30"], "  autoAssign: false\n")]);
    let d = run(cfg, &[svc("a", "s")]);
    assert_pending(&d[0], |r| *r == Pending::NoPool);
}

#[test]
fn service_allocation_pools_by_priority_then_name_and_never_as_fallback() {
    let team =
        |prio: u32| format!("  serviceAllocation:\n    priority: {prio}\n    namespaces: [team]\n");
    let cfg = pools(&[
        ("general", &["10.0.0.0/30"], ""),
        ("team-low", &["10.0.1.0/30"], &team(20)),
        ("team-high", &["10.0.2.0/30"], &team(10)),
        ("team-tie", &["10.0.3.0/30"], &team(10)),
        ("team-zero", &["10.0.4.0/30"], &team(0)),
    ]);
    let d = run(cfg, &[svc("team", "a"), svc("other", "b")]);
    assert_allocated(&d[0], &["10.0.2.0"], "team-high");
    assert_allocated(&d[1], &["10.0.0.0"], "general");
}

#[test]
fn team_pools_overflow_in_priority_order_and_zero_is_last() {
    let team =
        |prio: u32| format!("  serviceAllocation:\n    priority: {prio}\n    namespaces: [team]\n");
    let cfg = pools(&[
        ("a-zero", &["10.0.4.0/32"], &team(0)),
        ("b-ten", &["10.0.2.0/32"], &team(10)),
    ]);
    let d = run(cfg, &[svc("team", "1"), svc("team", "2"), svc("team", "3")]);
    assert_allocated(&d[0], &["10.0.2.0"], "b-ten");
    assert_allocated(&d[1], &["10.0.4.0"], "a-zero");
    assert_pending(&d[2], |r| matches!(r, Pending::EveryPoolFull(_)));
}

#[test]
fn namespace_and_service_selectors_admit_services() {
    let cfg = pools(&[
        (
            "by-ns-label",
            &["10.0.1.0/30"],
            "  serviceAllocation:\n    namespaceSelectors:\n      - matchLabels: {team: b}\n",
        ),
        (
            "by-svc-label",
            &["10.0.2.0/30"],
            "  serviceAllocation:\n    serviceSelectors:\n      - matchExpressions: [{key: exposure, operator: In, values: [public]}]\n",
        ),
    ]);
    let mut in_b = svc("shop", "web");
    in_b.namespace_labels.insert("team".into(), "b".into());
    let mut public = svc("x", "site");
    public.labels.insert("exposure".into(), "public".into());
    let d = run(cfg.clone(), &[in_b, public, svc("x", "other")]);
    assert_allocated(&d[0], &["10.0.1.0"], "by-ns-label");
    assert_allocated(&d[1], &["10.0.2.0"], "by-svc-label");
    assert_pending(&d[2], |r| *r == Pending::NoPool);
    let d = run(
        cfg,
        &[annotate(svc("x", "forced"), "address-pool", "by-ns-label")],
    );
    assert_pending(
        &d[0],
        |r| matches!(r, Pending::NamespaceNotServed { namespace, .. } if namespace == "x"),
    );
}

#[test]
fn families_follow_the_policy_and_dual_stack_comes_from_one_pool() {
    let cfg = pools(&[
        ("v4only", &["10.0.0.0/30"], ""),
        ("dual", &["10.0.1.0/30", "fd00::/64"], ""),
    ]);
    let mut v6_first = svc("a", "single-v6");
    v6_first.ip_families = vec![Family::V6, Family::V4];
    let mut require = svc("a", "require");
    require.ip_family_policy = FamilyPolicy::RequireDualStack;
    require.ip_families = vec![Family::V4, Family::V6];
    let mut prefer = svc("a", "prefer");
    prefer.ip_family_policy = FamilyPolicy::PreferDualStack;
    prefer.ip_families = vec![Family::V6, Family::V4];
    let d = run(cfg.clone(), &[v6_first, require, prefer]);
    // Served by name: prefer, require, single-v6.
    assert_allocated(&d[2], &["fd00::", "10.0.1.0"], "dual");
    assert_allocated(&d[1], &["10.0.1.1", "fd00::1"], "dual");
    assert_allocated(&d[0], &["fd00::2"], "dual");

    let only_v4 = pools(&[("v4only", &["10.0.0.0/30"], "")]);
    let mut require = svc("a", "require");
    require.ip_family_policy = FamilyPolicy::RequireDualStack;
    let mut prefer = svc("a", "prefer");
    prefer.ip_family_policy = FamilyPolicy::PreferDualStack;
    let d = run(only_v4, &[require, prefer]);
    assert_pending(
        &d[0],
        |r| matches!(r, Pending::NoFamily { families, .. } if families.contains(&Family::V6)),
    );
    assert_allocated(&d[1], &["10.0.0.0"], "v4only");
}

#[test]
fn services_with_one_key_and_distinct_ports_share_an_address() {
    let cfg = pools(&[("p", &["10.0.0.0/29"], "")]);
    let mut tcp = annotate(svc("dns", "tcp"), "allow-shared-ip", "dns");
    tcp.ports = vec![Port {
        port: 53,
        protocol: "TCP".into(),
    }];
    let mut udp = annotate(svc("dns", "udp"), "allow-shared-ip", "dns");
    udp.ports = vec![Port {
        port: 53,
        protocol: "UDP".into(),
    }];
    let mut clash = annotate(svc("dns", "z-clash"), "allow-shared-ip", "dns");
    clash.ports = vec![Port {
        port: 53,
        protocol: "UDP".into(),
    }];
    let mut alloc = Allocator::new(cfg, None);
    let d = alloc.allocate_all(&[tcp, udp, clash]);
    assert_allocated(&d[0], &["10.0.0.0"], "p");
    assert_allocated(&d[1], &["10.0.0.0"], "p");
    assert_allocated(&d[2], &["10.0.0.1"], "p");
    let holders: Vec<String> = alloc
        .holders(ip("10.0.0.0"))
        .map(ToString::to_string)
        .collect();
    assert_eq!(holders, ["dns/tcp", "dns/udp"]);
    let usage = alloc.usage();
    assert_eq!(usage[0].in_use, 2, "a shared address counts once");
}

#[test]
fn requested_address_held_without_a_key_leaves_the_requester_pending() {
    let cfg = pools(&[("p", &["10.1.0.0/29"], "")]);
    let web = annotate(svc("default", "web"), "loadBalancerIPs", "10.1.0.4");
    let mut other = annotate(svc("default", "other"), "loadBalancerIPs", "10.1.0.4");
    other.created = Some("2030-01-01T00:00:00Z".into());
    let d = run(cfg, &[web, other]);
    assert_allocated(&d[0], &["10.1.0.4"], "p");
    assert_pending(
        &d[1],
        |r| matches!(r, Pending::AddressTaken { ip: taken, .. } if *taken == ip("10.1.0.4")),
    );
}

#[test]
fn local_traffic_policy_shares_only_with_the_same_selector() {
    let cfg = pools(&[("p", &["10.0.0.0/29"], "")]);
    let mk = |name: &str, port: i32, app: &str| {
        let mut s = annotate(svc("a", name), "allow-shared-ip", "k");
        s.ports = vec![Port {
            port,
            protocol: "TCP".into(),
        }];
        s.traffic_policy_local = true;
        s.selector.insert("app".into(), app.into());
        s
    };
    let d = run(
        cfg,
        &[
            mk("one", 80, "x"),
            mk("two", 443, "x"),
            mk("three", 8080, "y"),
        ],
    );
    assert_allocated(&d[0], &["10.0.0.0"], "p");
    assert_allocated(&d[1], &["10.0.0.0"], "p");
    assert_allocated(&d[2], &["10.0.0.1"], "p");
}

#[test]
fn held_addresses_are_kept_and_holders_settle_before_newcomers() {
    let cfg = pools(&[("p", &["10.0.0.0/29"], "")]);
    let mut holder = svc("b", "holder");
    holder.created = Some("2030-01-01T00:00:00Z".into());
    holder.current = ips(&["10.0.0.0"]);
    let mut early = svc("a", "early");
    early.created = Some("2020-01-01T00:00:00Z".into());
    let mut keeps_high = svc("c", "high");
    keeps_high.current = ips(&["10.0.0.7"]);
    let d = run(cfg, &[early, holder, keeps_high]);
    assert_allocated(&d[0], &["10.0.0.1"], "p");
    assert_allocated(&d[1], &["10.0.0.0"], "p");
    assert_allocated(&d[2], &["10.0.0.7"], "p");
    assert!(d.iter().all(|d| !d.moved()));
}

#[test]
fn newcomers_are_served_by_creation_time_then_namespace_then_name() {
    let cfg = pools(&[("p", &["10.0.0.0/30"], "")]);
    let at = |ns: &str, name: &str, t: &str| {
        let mut s = svc(ns, name);
        s.created = Some(t.into());
        s
    };
    let d = run(
        cfg,
        &[
            at("b", "x", "2026-01-01T00:00:00Z"),
            at("a", "y", "2026-01-01T00:00:00Z"),
            at("a", "x", "2026-01-01T00:00:00Z"),
            at("z", "z", "2025-01-01T00:00:00Z"),
        ],
    );
    let got: Vec<String> = d.iter().map(|d| d.outcome.ips()[0].to_string()).collect();
    assert_eq!(got, ["10.0.0.3", "10.0.0.2", "10.0.0.1", "10.0.0.0"]);
}

#[test]
fn shrinking_or_removing_a_pool_moves_its_services() {
    let before = pools(&[("p", &["10.0.0.0/29"], ""), ("q", &["10.0.1.0/30"], "")]);
    let mut services = run(before, &[svc("a", "1"), svc("a", "2")])
        .into_iter()
        .zip([svc("a", "1"), svc("a", "2")])
        .map(|(d, mut s)| {
            s.current = d.outcome.ips().to_vec();
            s
        })
        .collect::<Vec<_>>();
    assert_eq!(services[1].current, ips(&["10.0.0.1"]));
    // p shrinks to its first address: a/1 keeps 10.0.0.0, a/2 moves to q.
    let shrunk = pools(&[("p", &["10.0.0.0/32"], ""), ("q", &["10.0.1.0/30"], "")]);
    let d = run(shrunk, &services);
    assert!(!d[0].moved());
    assert!(d[1].moved());
    assert_eq!(d[1].previous, ips(&["10.0.0.1"]));
    assert_allocated(&d[1], &["10.0.1.0"], "q");
    // Every pool removed: both become pending, and that is a move too.
    services[1].current = ips(&["10.0.1.0"]);
    let d = run(
        pools(&[("other", &["10.0.5.0/32"], "  autoAssign: false\n")]),
        &services,
    );
    assert!(
        d.iter()
            .all(|d| d.moved() && matches!(d.outcome, Outcome::Pending { .. }))
    );
}

#[test]
fn release_frees_an_address_for_the_next_service_without_a_rescan() {
    let cfg = pools(&[("p", &["10.0.0.0/31"], "")]);
    let mut alloc = Allocator::new(cfg, None);
    alloc.allocate_all(&[svc("a", "1"), svc("a", "2")]);
    assert_pending(&alloc.settle(&svc("a", "3")), |r| {
        matches!(r, Pending::Exhausted { in_use: 2, .. })
    });
    assert_eq!(
        alloc.release(&ServiceKey::new("a", "1")),
        Some(ips(&["10.0.0.0"]))
    );
    assert_allocated(&alloc.settle(&svc("a", "3")), &["10.0.0.0"], "p");
    // Settling a held Service again changes nothing.
    let again = alloc.settle(&svc("a", "2"));
    assert_allocated(&again, &["10.0.0.1"], "p");
    assert!(!again.moved());
}

#[test]
fn a_changed_request_moves_a_held_service() {
    let cfg = pools(&[("p", &["10.0.0.0/29"], "")]);
    let mut alloc = Allocator::new(cfg, None);
    let d = alloc.settle(&svc("a", "s"));
    assert_allocated(&d, &["10.0.0.0"], "p");
    let d = alloc.settle(&annotate(svc("a", "s"), "loadBalancerIPs", "10.0.0.5"));
    assert_allocated(&d, &["10.0.0.5"], "p");
    assert!(d.moved());
    let d = alloc.settle(&svc("b", "t"));
    assert_allocated(&d, &["10.0.0.0"], "p");
}

#[test]
fn metallb_refuses_requested_addresses_outside_the_pool_the_service_names() {
    // MetalLB: loadBalancerIPs together with an address-pool annotation naming a pool that
    // does not hold them is an incompatible request; the Service stays pending with that
    // reason instead of getting the address from the other pool.
    let cfg = pools(&[
        ("auto", &["10.0.0.0/30"], ""),
        ("manual", &["10.0.9.0/30"], "  autoAssign: false\n"),
    ]);
    let asks = |ips: &str, pool: &str| {
        annotate(
            annotate(svc("a", "dns"), "loadBalancerIPs", ips),
            "address-pool",
            pool,
        )
    };
    let d = run(cfg.clone(), &[asks("10.0.9.2", "auto")]);
    assert_pending(&d[0], |r| {
        *r == Pending::PoolMismatch {
            asked: vec![ip("10.0.9.2")],
            wanted: "auto".into(),
            pool: "manual".into(),
        }
    });
    // spec.loadBalancerIP is a request too.
    let mut s = annotate(svc("a", "old"), "address-pool", "auto");
    s.load_balancer_ip = Some("10.0.9.1".into());
    assert_pending(&run(cfg.clone(), &[s])[0], |r| {
        matches!(r, Pending::PoolMismatch { .. })
    });
    // A pool that does not exist holds none of them.
    assert_pending(
        &run(cfg.clone(), &[asks("10.0.9.2", "nowhere")])[0],
        |r| matches!(r, Pending::PoolMismatch { wanted, .. } if wanted == "nowhere"),
    );
    // When the pool does hold them, both annotations together are fine.
    let d = run(cfg.clone(), &[asks("10.0.9.2", "manual")]);
    assert_allocated(&d[0], &["10.0.9.2"], "manual");

    // A Service already holding the address does not keep it once its request is incompatible.
    let mut held = asks("10.0.9.2", "auto");
    held.current = ips(&["10.0.9.2"]);
    let d = run(cfg, &[held]);
    assert_pending(&d[0], |r| matches!(r, Pending::PoolMismatch { .. }));
    assert!(d[0].moved());
}

#[test]
fn a_service_that_advertisement_service_selectors_match_cannot_share_an_address() {
    let cfg = config(
        "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: p\nspec:\n  addresses: [10.0.0.0/30]\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: q\nspec:\n  addresses: [10.0.1.0/30]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: web-only\nspec:\n  ipAddressPools: [p]\n  serviceSelectors:\n    - matchLabels: {app: web}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: everything\nspec:\n  ipAddressPools: [p, q]\n",
    );
    let web = |name: &str| {
        let mut s = annotate(svc("a", name), "allow-shared-ip", "k");
        s.labels.insert("app".into(), "web".into());
        s
    };
    // Pool p is refused (web-only selects the Service); q has no selecting advertisement.
    let d = run(cfg.clone(), &[web("auto")]);
    assert_allocated(&d[0], &["10.0.1.0"], "q");
    for forced in [
        annotate(web("by-pool"), "address-pool", "p"),
        annotate(web("by-ip"), "loadBalancerIPs", "10.0.0.1"),
    ] {
        let d = run(cfg.clone(), &[forced]);
        assert_pending(&d[0], |r| {
            *r == Pending::SharingWithServiceSelectors {
                advertisement: "web-only".into(),
                pool: "p".into(),
            }
        });
    }
    // A Service it held before is not kept either.
    let mut held = web("held");
    held.current = ips(&["10.0.0.2"]);
    let d = run(cfg.clone(), &[held]);
    assert_allocated(&d[0], &["10.0.1.0"], "q");
    // Without the sharing key, or not matched by the selectors: allowed.
    let mut plain = svc("a", "plain");
    plain.labels.insert("app".into(), "web".into());
    let other = annotate(svc("a", "other"), "allow-shared-ip", "k");
    let d = run(
        cfg,
        &[
            annotate(plain, "address-pool", "p"),
            annotate(other, "address-pool", "p"),
        ],
    );
    // Settled by name: other, then plain.
    assert_allocated(&d[1], &["10.0.0.0"], "p");
    assert_allocated(&d[0], &["10.0.0.1"], "p");
}

/// The reasons are typed: a full pool and a taken address are told apart without reading the
/// words, which stay what people read.
#[test]
fn a_full_pool_and_a_taken_address_are_different_reasons() {
    let cfg = pools(&[("p", &["10.1.0.0/31"], "")]);
    let web = annotate(svc("default", "web"), "loadBalancerIPs", "10.1.0.0");
    let mut taker = annotate(svc("default", "taker"), "loadBalancerIPs", "10.1.0.0");
    taker.created = Some("2030-01-01T00:00:00Z".into());
    let mut second = svc("default", "second");
    second.created = Some("2030-06-01T00:00:00Z".into());
    let mut third = svc("default", "third");
    third.created = Some("2031-01-01T00:00:00Z".into());
    let d = run(cfg, &[web, taker, second, third]);
    let reason = |d: &Decision| match &d.outcome {
        Outcome::Pending { reason } => reason.clone(),
        other => panic!("{}: expected pending, got {other:?}", d.key),
    };
    assert_eq!(
        reason(&d[1]),
        Pending::AddressTaken {
            ip: ip("10.1.0.0"),
            why: "held by default/web without a shared key".into()
        }
    );
    assert_eq!(reason(&d[1]).kind(), PendingKind::Taken);
    assert_allocated(&d[2], &["10.1.0.1"], "p");
    let full = reason(&d[3]);
    assert!(
        matches!(&full, Pending::Exhausted { pool, family: Family::V4, in_use: 2, .. } if pool == "p"),
        "{full:?}"
    );
    assert_eq!(full.kind(), PendingKind::Full);
}
