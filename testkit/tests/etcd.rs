//! The etcd harness against Debian's real etcd (or the one `FERROLB_TEST_ETCD_DIR` names), and the 3.6 build.

use std::time::Duration;

use ferrolb_testkit::{Etcd, EtcdBinaries, EtcdCluster, Host, Lab, require_root};

#[test]
fn a_started_etcd_stores_and_returns_a_key() {
    let etcd = Etcd::start().expect("start etcd");
    assert!(etcd.endpoints().starts_with("http://127.0.0.1:"));
    etcd.ctl(&["put", "/ferrolb/k", "v1"]).expect("put");
    let got = etcd
        .ctl(&["get", "/ferrolb/k", "--print-value-only"])
        .expect("get");
    assert_eq!(got.trim(), "v1", "log:\n{}", etcd.log());
}

#[test]
fn a_restarted_etcd_keeps_its_keys_ports_and_leases() {
    let mut etcd = Etcd::start().expect("start etcd");
    let endpoints = etcd.endpoints();
    etcd.ctl(&["put", "/ferrolb/kept", "yes"]).expect("put");
    let grant = etcd.ctl(&["lease", "grant", "600"]).expect("lease grant");
    // "lease 694d77aa9e38260f granted with TTL(600s)"
    let lease = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id in etcdctl's answer")
        .to_owned();

    etcd.kill().expect("kill");
    assert!(!etcd.is_running());
    assert!(
        etcd.ctl(&["--command-timeout=500ms", "get", "/ferrolb/kept"])
            .is_err()
    );
    etcd.restart().expect("restart after kill");
    assert_eq!(etcd.endpoints(), endpoints);
    let got = etcd
        .ctl(&["get", "/ferrolb/kept", "--print-value-only"])
        .expect("get");
    assert_eq!(got.trim(), "yes");
    let ttl = etcd.ctl(&["lease", "timetolive", &lease]).expect("ttl");
    assert!(ttl.contains("remaining"), "lease lost after restart: {ttl}");

    etcd.restart().expect("graceful restart");
    let got = etcd
        .ctl(&["get", "/ferrolb/kept", "--print-value-only"])
        .expect("get");
    assert_eq!(got.trim(), "yes");
}

#[test]
fn a_paused_etcd_answers_again_after_resume() {
    let mut etcd = Etcd::start().expect("start etcd");
    etcd.pause().expect("pause");
    assert!(!etcd.is_healthy());
    let err = etcd
        .ctl(&["--command-timeout=300ms", "get", "/x"])
        .expect_err("a paused etcd answers nothing");
    assert!(err.to_string().contains("etcdctl"), "{err}");
    etcd.resume().expect("resume");
    etcd.wait_ready(Duration::from_secs(10))
        .expect("healthy again");
    etcd.stop().expect("stop");
    assert!(etcd.pid().is_none());
}

#[test]
fn a_three_member_cluster_elects_a_leader_and_survives_losing_it() {
    let mut cluster = EtcdCluster::start(3).expect("start cluster");
    assert_eq!(cluster.endpoints().split(',').count(), 3);
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .expect("a leader");
    cluster.ctl(&["put", "/ferrolb/c", "1"]).expect("put");

    cluster.kill_member(leader).expect("kill the leader");
    let next = cluster
        .wait_for_leader(Duration::from_secs(10))
        .expect("a new leader");
    assert_ne!(next, leader);
    cluster
        .ctl(&["put", "/ferrolb/c", "2"])
        .expect("put with two members");

    cluster.restart_member(leader).expect("restart member");
    let got = cluster
        .member(leader)
        .ctl(&["get", "/ferrolb/c", "--print-value-only"])
        .expect("get from the restarted member");
    assert_eq!(got.trim(), "2");
}

#[test]
fn a_cluster_without_a_majority_comes_back_when_its_members_restart() {
    let mut cluster = EtcdCluster::start(3).expect("start cluster");
    cluster.ctl(&["put", "/ferrolb/q", "before"]).expect("put");
    cluster.kill_member(0).expect("kill 0");
    cluster.kill_member(1).expect("kill 1");
    assert!(
        !cluster.member(2).is_healthy(),
        "one of three has no quorum"
    );
    cluster.restart_stopped().expect("restart both");
    let got = cluster
        .ctl(&["get", "/ferrolb/q", "--print-value-only"])
        .expect("get");
    assert_eq!(got.trim(), "before");
}

#[test]
fn an_etcd_in_the_infra_namespace_serves_the_nodes() {
    require_root!();
    let lab = Lab::new(1).expect("lab");
    let etcd = lab.start_etcd().expect("etcd in infra");
    assert_eq!(
        etcd.endpoints(),
        format!("http://{}:{}", lab.ip(Host::Infra), etcd.client_port())
    );
    let endpoints = format!("--endpoints={}", etcd.endpoints());
    lab.exec_ok(
        Host::Node(1),
        [
            "etcdctl",
            endpoints.as_str(),
            "put",
            "/ferrolb/from",
            "node1",
        ],
    )
    .expect("put from node1");
    let got = etcd
        .ctl(&["get", "/ferrolb/from", "--print-value-only"])
        .expect("get in infra");
    assert_eq!(got.trim(), "node1");

    // A partition between node1 and etcd.
    lab.blackhole(Host::Node(1), lab.ip(Host::Infra))
        .expect("blackhole");
    let cut = lab
        .exec(
            Host::Node(1),
            [
                "etcdctl",
                endpoints.as_str(),
                "--dial-timeout=500ms",
                "--command-timeout=1s",
                "get",
                "/ferrolb/from",
            ],
        )
        .expect("run etcdctl");
    assert!(!cut.status.success());
    lab.unblackhole(Host::Node(1), lab.ip(Host::Infra))
        .expect("unblackhole");
    lab.exec_ok(Host::Node(1), ["etcdctl", endpoints.as_str(), "get", "/x"])
        .expect("reachable again");
}

#[test]
fn a_cluster_spread_over_lab_nodes_survives_a_cut_link() {
    require_root!();
    let lab = Lab::new(3).expect("lab");
    let places: Vec<(&str, _)> = (1..=3)
        .map(|i| (lab.ns(Host::Node(i)), lab.ip(Host::Node(i))))
        .collect();
    let mut cluster = EtcdCluster::start_in_netns(&places).expect("cluster on nodes");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .expect("a leader");
    lab.set_link(Host::Node(leader + 1), false)
        .expect("cut the leader's link");
    // A write proposed through the isolated leader is lost; etcd answers "request timed out,
    // possibly due to previous leader failure", and clients retry, as this does.
    let survivor = (leader + 1) % 3;
    let write = || {
        cluster
            .member(survivor)
            .ctl(&["--command-timeout=2s", "put", "/ferrolb/p", "after-cut"])
    };
    let mut result = write();
    for _ in 0..5 {
        if result.is_ok() {
            break;
        }
        result = write();
    }
    result.expect("the majority still writes");
    lab.set_link(Host::Node(leader + 1), true).expect("replug");
    cluster
        .member_mut(leader)
        .wait_ready(Duration::from_secs(10))
        .expect("the old leader rejoins");
}

/// The etcd 3.6 built from Go modules (`scripts/kube-binaries.sh`) runs under the same harness,
/// and is what it says it is.
#[test]
fn the_etcd_3_6_build_serves_the_harness() {
    let etcd = Etcd::start_with(&EtcdBinaries::v3_6().expect("etcd 3.6 built")).expect("etcd");
    let status = etcd
        .ctl(&["endpoint", "status", "-w", "json"])
        .expect("status");
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    let version = v[0]["Status"]["version"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.6."), "{status}");
    etcd.ctl(&["put", "k", "v"]).expect("put");
    assert_eq!(
        etcd.ctl(&["get", "k", "--print-value-only"])
            .expect("get")
            .trim(),
        "v"
    );
}
