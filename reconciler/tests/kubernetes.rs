//! The reconciler against the fake Kubernetes API server (kube's real client on one side, the
//! real `kubectl` reading back) and a real etcd.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferrolb_testkit::Etcd;

mod common;
use common::Reconciler;
use ferrolb_testkit::kubeapi::{FakeApiServer, Matcher};
use serde_json::{Value, json};

const POOLS: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: lab\nspec:\n  addresses: [10.250.0.100-10.250.0.103]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: lab\n";

fn service(name: &str, created: &str, extra_spec: Value) -> Value {
    let mut spec = json!({"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": name}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
        "spec": spec
    })
}

struct World {
    api: FakeApiServer,
    etcd: Etcd,
    dir: tempfile::TempDir,
    pools: PathBuf,
}

fn world() -> World {
    let api = FakeApiServer::start().expect("fake api");
    let etcd = Etcd::start().expect("etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    let pools = dir.path().join("pools");
    std::fs::create_dir_all(&pools).expect("mkdir");
    std::fs::write(pools.join("lab.yaml"), POOLS).expect("write");
    // The fake server, like a real one, starts with the `default` namespace.
    for n in ["n1", "n2"] {
        api.create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}))
            .expect("node");
    }
    World {
        api,
        etcd,
        dir,
        pools,
    }
}

/// The reconciler on the fake API server.
fn start(w: &World, name: &str) -> Reconciler {
    let a = common::args(&[
        "--config",
        w.pools.to_str().expect("path"),
        "--services",
        "kubernetes",
        "--kubeconfig",
        w.api.kubeconfig().to_str().expect("path"),
        "--etcd-endpoints",
        &w.etcd.endpoints(),
        "--lease-ttl",
        "2",
    ]);
    Reconciler::spawn(&a, w.dir.path(), name)
}

fn ingress(api: &FakeApiServer, name: &str) -> Vec<String> {
    api.get("services", Some("default"), name)
        .and_then(|s| s["status"]["loadBalancer"]["ingress"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect()
}

fn reasons(api: &FakeApiServer, name: &str) -> Vec<String> {
    api.events()
        .iter()
        .filter(|e| e["regarding"]["name"] == name || e["involvedObject"]["name"] == name)
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect()
}

fn wait(what: &str, log: &dyn Fn() -> String, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out: {what}\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn announcement_nodes(etcd: &Etcd, ip: &str) -> Option<Value> {
    let v = etcd.get_json(&format!("/ferrolb/announcements/{ip}"))?;
    Some(v["nodes"].clone())
}

#[test]
fn services_get_their_status_events_and_announcements() {
    let w = world();
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})))
        .expect("web");
    w.api
        .create(service(
            "db",
            "2026-01-02T00:00:00Z",
            json!({"type": "ClusterIP"}),
        ))
        .expect("db");
    let r = start(&w, "r");
    let log = || r.log();
    wait("web's status", &log, || {
        ingress(&w.api, "web") == ["10.250.0.100"]
    });
    let kubectl = w
        .api
        .kubectl([
            "get",
            "svc",
            "web",
            "-n",
            "default",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ])
        .expect("kubectl");
    assert_eq!(kubectl.trim(), "10.250.0.100");
    wait("IPAllocated", &log, || {
        reasons(&w.api, "web").contains(&"IPAllocated".to_string())
    });
    assert_eq!(announcement_nodes(&w.etcd, "10.250.0.100"), Some(json!([])));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        w.api.writes("services", Some("status")),
        1,
        "one status write for one Service"
    );
    assert!(ingress(&w.api, "db").is_empty());
    assert_eq!(r.status()["ready"], true);
    // A speaker claims the address: the Service hears which node announces it.
    w.etcd
        .ctl(&[
            "put",
            "/ferrolb/claims/10.250.0.100",
            r#"{"node":"n1","interfaces":["eth0"],"since":"2026-11-29T00:00:00Z"}"#,
        ])
        .expect("claim");
    wait("nodeAssigned", &log, || {
        reasons(&w.api, "web").contains(&"nodeAssigned".to_string())
    });
    let note = w
        .api
        .events()
        .iter()
        .find(|e| e["reason"] == "nodeAssigned")
        .and_then(|e| {
            e["note"]
                .as_str()
                .or(e["message"].as_str())
                .map(str::to_string)
        });
    assert_eq!(
        note.as_deref(),
        Some("announcing 10.250.0.100 from node n1 on eth0")
    );
}

#[test]
fn changes_deletions_and_exhaustion_are_followed() {
    let w = world();
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})))
        .expect("web");
    let r = start(&w, "r");
    let log = || r.log();
    wait("web's status", &log, || {
        ingress(&w.api, "web") == ["10.250.0.100"]
    });
    let mut web = w.api.get("services", Some("default"), "web").expect("web");
    web["metadata"]["annotations"] = json!({"metallb.io/loadBalancerIPs": "10.250.0.103"});
    w.api.upsert(web).expect("update");
    wait("web moved", &log, || {
        ingress(&w.api, "web") == ["10.250.0.103"]
    });
    wait("IPChanged", &log, || {
        reasons(&w.api, "web").contains(&"IPChanged".to_string())
    });
    for i in 0..4 {
        w.api
            .create(service(
                &format!("s{i}"),
                &format!("2026-02-0{}T00:00:00Z", i + 1),
                json!({}),
            ))
            .expect("svc");
    }
    wait("the last one pending", &log, || {
        reasons(&w.api, "s3").contains(&"AllocationFailed".to_string())
    });
    assert!(ingress(&w.api, "s3").is_empty());
    w.api.delete("services", Some("default"), "web");
    // Its address is free again: the pending Service gets it.
    wait("s3 allocated", &log, || {
        ingress(&w.api, "s3") == ["10.250.0.103"]
    });
}

#[test]
fn a_restart_writes_nothing_when_nothing_changed() {
    let w = world();
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})))
        .expect("web");
    w.api
        .create(service("api", "2026-01-02T00:00:00Z", json!({})))
        .expect("api");
    let mut r = start(&w, "r1");
    let log = || r.log();
    wait("both allocated", &log, || {
        ingress(&w.api, "api") == ["10.250.0.101"]
    });
    std::thread::sleep(Duration::from_millis(500));
    r.term();
    let before = w
        .etcd
        .ctl(&["get", "--prefix", "/ferrolb/announcements/", "-w", "json"])
        .expect("get");
    w.api.clear_requests();
    let r2 = start(&w, "r2");
    let log2 = || r2.log();
    wait("ready and leading", &log2, || {
        r2.status()["ready"] == true && r2.status()["is_leader"] == true
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        w.api.total_writes(),
        0,
        "no write to Kubernetes\n{}",
        r2.log()
    );
    let after = w
        .etcd
        .ctl(&["get", "--prefix", "/ferrolb/announcements/", "-w", "json"])
        .expect("get");
    let kvs = |s: &str| {
        serde_json::from_str::<Value>(s)
            .map(|v| v["kvs"].clone())
            .unwrap_or_default()
    };
    assert_eq!(kvs(&before), kvs(&after), "no announcement rewritten");
}

#[test]
fn api_errors_and_conflicts_are_retried_until_written() {
    let w = world();
    w.api.fail_next(Matcher::new("PATCH", "/status"), 500, 2);
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})))
        .expect("web");
    let r = start(&w, "r");
    let log = || r.log();
    wait("web's status despite two 500s", &log, || {
        ingress(&w.api, "web") == ["10.250.0.100"]
    });
    w.api.fail_next(Matcher::new("PATCH", "/status"), 409, 2);
    w.api
        .create(service("api", "2026-01-02T00:00:00Z", json!({})))
        .expect("api");
    wait("api's status despite two 409s", &log, || {
        ingress(&w.api, "api") == ["10.250.0.101"]
    });
}

#[test]
fn local_traffic_policy_announces_from_nodes_with_endpoints() {
    let w = world();
    w.api
        .create(service(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"externalTrafficPolicy": "Local"}),
        ))
        .expect("web");
    w.api
        .create(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "nodeName": "n2"}]
        }))
        .expect("slice");
    let r = start(&w, "r");
    let log = || r.log();
    wait("announced from n2 only", &log, || {
        announcement_nodes(&w.etcd, "10.250.0.100") == Some(json!(["n2"]))
    });
}

#[test]
fn a_compacted_watch_is_relisted_and_followed() {
    let w = world();
    let r = start(&w, "r");
    let log = || r.log();
    wait("ready", &log, || r.status()["ready"] == true);
    w.api.compact();
    w.api
        .create(service("late", "2026-03-01T00:00:00Z", json!({})))
        .expect("late");
    wait("late allocated", &log, || {
        ingress(&w.api, "late") == ["10.250.0.100"]
    });
}
