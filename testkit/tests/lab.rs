//! The network lab: real namespaces, a real bridge, real ARP and NDP.

use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferrolb_testkit::{Host, Lab, Signal, require_root};

/// The namespaces that exist now whose names start with `prefix`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_client_reaches_node1_by_ping_arp_and_ndp() {
    require_root!();
    let lab = Lab::new(3).expect("lab");
    let node1 = Host::Node(1);
    assert_eq!(
        lab.read_mac(node1).expect("read mac"),
        lab.mac(node1),
        "the configured MAC is the live one"
    );
    assert!(lab.reaches(Host::Client, lab.ip(node1)).expect("ping"));
    assert!(lab.reaches(Host::Client, lab.ip6(node1)).expect("ping6"));

    let macs = lab
        .arping(Host::Client, lab.ip(node1), Duration::from_millis(500))
        .expect("arping");
    assert_eq!(macs, vec![lab.mac(node1)]);

    let mac = lab
        .ndisc(Host::Client, lab.ip6(node1), Duration::from_secs(1))
        .expect("ndisc6");
    assert_eq!(mac, Some(lab.mac(node1)));
    assert_eq!(
        lab.neighbor(Host::Client, lab.ip(node1)).expect("neigh"),
        Some(lab.mac(node1)),
        "ping left node1 in the client's ARP cache"
    );
}

#[test]
fn nobody_answers_for_an_unused_service_address() {
    require_root!();
    let lab = Lab::new(1).expect("lab");
    let macs = lab
        .arping(Host::Client, lab.vip4(0), Duration::from_millis(300))
        .expect("arping");
    assert!(macs.is_empty(), "{macs:?}");
    let mac = lab
        .ndisc(Host::Client, lab.vip6(0), Duration::from_millis(300))
        .expect("ndisc6");
    assert_eq!(mac, None);
}

#[test]
fn two_hosts_answering_for_one_address_are_both_reported() {
    require_root!();
    let lab = Lab::new(2).expect("lab");
    let vip = lab.vip4(7);
    let vip6 = lab.vip6(7);
    for node in [Host::Node(1), Host::Node(2)] {
        lab.exec_ok(
            node,
            ["ip", "addr", "add", &format!("{vip}/32"), "dev", "eth0"],
        )
        .expect("add vip");
        lab.exec_ok(
            node,
            [
                "ip",
                "addr",
                "add",
                &format!("{vip6}/128"),
                "dev",
                "eth0",
                "nodad",
            ],
        )
        .expect("add vip6");
    }
    let mut macs = lab
        .arping(Host::Client, vip, Duration::from_millis(500))
        .expect("arping");
    macs.sort();
    let mut expected = vec![lab.mac(Host::Node(1)), lab.mac(Host::Node(2))];
    expected.sort();
    assert_eq!(macs, expected);
    let mut macs6 = lab
        .ndisc_all(Host::Client, vip6, Duration::from_millis(500))
        .expect("ndisc6 -m");
    macs6.sort();
    assert_eq!(macs6, expected);
}

#[test]
fn links_blackholes_and_firewalls_cut_traffic_and_come_back() {
    require_root!();
    let lab = Lab::new(2).expect("lab");
    let node2 = lab.ip(Host::Node(2));

    lab.set_link(Host::Node(2), false).expect("link down");
    assert!(!lab.ping(Host::Client, node2).expect("ping"));
    lab.set_link(Host::Node(2), true).expect("link up");
    assert!(lab.reaches(Host::Client, node2).expect("ping"));
    assert!(
        lab.reaches(Host::Client, lab.ip6(Host::Node(2)))
            .expect("ping6"),
        "IPv6 addresses survive a link down"
    );

    lab.blackhole(Host::Client, node2).expect("blackhole");
    assert!(!lab.ping(Host::Client, node2).expect("ping"));
    lab.unblackhole(Host::Client, node2).expect("unblackhole");
    assert!(lab.reaches(Host::Client, node2).expect("ping"));

    lab.nft(
        Host::Node(2),
        "table inet t { chain c { type filter hook input priority 0; icmp type echo-request drop; }; }",
    )
    .expect("nft");
    assert!(!lab.ping(Host::Client, node2).expect("ping"));
    assert!(
        lab.reaches(Host::Client, lab.ip(Host::Node(1)))
            .expect("ping"),
        "the rule is node2's alone"
    );
    lab.nft(Host::Node(2), "flush ruleset").expect("flush");
    assert!(lab.reaches(Host::Client, node2).expect("ping"));
}

#[test]
fn spawned_processes_log_take_signals_and_die_with_their_handle() {
    require_root!();
    let lab = Lab::new(1).expect("lab");
    let mut proc = lab
        .spawn(
            Host::Node(1),
            [
                "sh",
                "-c",
                "ip -o -4 addr show dev eth0; trap 'echo got TERM; exit 7' TERM; \
                 while :; do sleep 0.05; done",
            ],
            "node1-sh.log",
        )
        .expect("spawn");
    let node1 = lab.ip(Host::Node(1)).to_string();
    let log_has = |p: &ferrolb_testkit::LabProcess, text: &str| {
        (0..100).any(|_| {
            if p.log().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
            false
        })
    };
    assert!(
        log_has(&proc, &node1),
        "it runs in node1's namespace: {}",
        proc.log()
    );
    proc.signal(Signal::Stop).expect("SIGSTOP");
    assert!(proc.is_running());
    proc.signal(Signal::Cont).expect("SIGCONT");
    proc.signal(Signal::Term).expect("SIGTERM");
    let status = proc
        .wait_timeout(Duration::from_secs(5))
        .expect("wait")
        .expect("exits on TERM");
    assert_eq!(status.code(), Some(7));
    assert!(proc.log().contains("got TERM"), "{}", proc.log());
    assert!(proc.signal(Signal::Kill).is_err(), "it is gone");

    let sleeper = lab
        .spawn(Host::Client, ["sleep", "600"], "sleep.log")
        .expect("spawn sleep");
    let pid = sleeper.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(sleeper);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "dropping the handle kills and reaps the process"
    );
}

#[test]
fn dropping_a_lab_removes_its_namespaces_and_processes() {
    require_root!();
    let lab = Lab::new(2).expect("lab");
    let prefix = format!("{}-", lab.id());
    assert_eq!(
        namespaces_with(&prefix).len(),
        5,
        "sw, client, 2 nodes, infra"
    );
    // A process the test forgot about, started behind the lab's back.
    let mut stray = Command::new("ip")
        .args(["netns", "exec", lab.ns(Host::Infra), "sleep", "600"])
        .spawn()
        .expect("spawn stray");
    let stray_pid = stray.id().to_string();
    let inside = (0..250).any(|_| {
        let pids = Command::new("ip")
            .args(["netns", "pids", lab.ns(Host::Infra)])
            .output()
            .expect("ip netns pids");
        if String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .any(|p| p == stray_pid)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
        false
    });
    if !inside {
        let _ = stray.kill();
        let _ = stray.wait();
    }
    assert!(inside, "the stray process entered the infra namespace");
    drop(lab);
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
    let status = stray.wait().expect("wait stray");
    assert!(!status.success(), "the lab killed its stray process");
}

#[test]
fn a_panicking_test_still_removes_its_lab() {
    require_root!();
    let mut prefix = String::new();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::new(1).expect("lab");
        prefix = format!("{}-", lab.id());
        assert_eq!(namespaces_with(&prefix).len(), 4);
        panic!("a test failing with its lab alive");
    }));
    assert!(result.is_err());
    assert!(!prefix.is_empty());
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[test]
fn explicit_close_reports_success() {
    require_root!();
    let lab = Lab::new(0).expect("lab without nodes");
    let prefix = format!("{}-", lab.id());
    assert_eq!(lab.hosts(), vec![Host::Client, Host::Infra]);
    lab.close().expect("close");
    assert!(namespaces_with(&prefix).is_empty());
}

#[test]
fn leftovers_of_a_dead_test_process_are_removed() {
    require_root!();
    // A pid that is certainly dead: a child that has exited and been reaped.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let dead = child.id();
    child.wait().expect("wait true");
    let ns = format!("flb{dead}-0-node1");
    let status = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .expect("ip netns add");
    assert!(status.success());
    let removed = Lab::cleanup_stale().expect("cleanup");
    let gone = namespaces_with(&ns).is_empty();
    if !gone {
        // Never leave it behind, even when the assertion below fails.
        let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
    }
    assert!(gone, "{ns} survived; removed: {removed:?}");
    assert!(removed.iter().any(|r| r.contains(&ns)), "{removed:?}");
}

#[test]
fn addresses_follow_the_plan() {
    require_root!();
    let lab = Lab::new(2).expect("lab");
    let s = lab.subnet();
    assert_eq!(lab.ip(Host::Client).to_string(), format!("10.250.{s}.1"));
    assert_eq!(lab.ip(Host::Node(2)).to_string(), format!("10.250.{s}.12"));
    assert_eq!(lab.ip(Host::Infra).to_string(), format!("10.250.{s}.250"));
    assert_eq!(
        lab.ip6(Host::Node(1)).to_string(),
        format!("fd00:250:{s}::11")
    );
    assert_eq!(lab.cidr4(), format!("10.250.{s}.0/24"));
    assert_eq!(lab.cidr6(), format!("fd00:250:{s}::/64"));
    assert_eq!(lab.vip_range4(), format!("10.250.{s}.100-10.250.{s}.199"));
    let addrs = lab
        .exec_ok(Host::Node(2), ["ip", "-o", "addr", "show", "dev", "eth0"])
        .expect("ip addr");
    for addr in [
        IpAddr::from(lab.ip(Host::Node(2))),
        IpAddr::from(lab.ip6(Host::Node(2))),
    ] {
        assert!(addrs.contains(&addr.to_string()), "{addr} in {addrs}");
    }
    let client_links = lab
        .exec_ok(Host::Client, ["ip", "-o", "link"])
        .expect("ip link");
    assert_eq!(
        client_links.lines().count(),
        2,
        "lo and eth0: {client_links}"
    );
}

#[test]
#[should_panic(expected = "has no host node3")]
fn asking_for_a_node_the_lab_lacks_panics_clearly() {
    if !ferrolb_testkit::require_root() {
        panic!("has no host node3 (skipped: needs root)");
    }
    let lab = Lab::new(2).expect("lab");
    let _ = lab.ip(Host::Node(3));
}
