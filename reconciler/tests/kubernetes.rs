//! The reconciler against a real `kube-apiserver` and against the fake API server (kube's real client on one side, the
//! real `kubectl` reading back) and a real etcd.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferrolb_testkit::{Etcd, KubeApiServer, RECONCILER_USER};

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

/// What the tests need of an API server: the fake (`FakeApiServer`, which can also inject
/// faults) or a real `kube-apiserver` (`KubeApiServer`). Every scenario that the real server can
/// play runs against both.
trait Api {
    fn create(&self, object: Value);
    fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value>;
    fn replace(&self, object: Value);
    fn delete(&self, resource: &str, namespace: Option<&str>, name: &str);
    /// Replaces a Node's status (through the status subresource where there is one).
    fn set_node_status(&self, name: &str, status: Value);
    /// Sets a label on a Node.
    fn label_node(&self, name: &str, key: &str, value: &str);
    /// events.k8s.io/v1 Events (and core ones, where the back end keeps them apart).
    fn events(&self) -> Vec<Value>;
    /// The kubeconfig the reconciler runs with.
    fn kubeconfig(&self) -> PathBuf;
    fn kubectl(&self, args: &[&str]) -> String;
    /// Successful writes the reconciler made to `resource` (`subresource`) since the last
    /// [`clear_writes`](Self::clear_writes).
    fn writes(&self, resource: &str, subresource: Option<&str>) -> usize;
    /// Successful writes the reconciler made to anything since the last `clear_writes`.
    fn total_writes(&self) -> usize;
    fn clear_writes(&self);
    /// What the server saw of the reconciler, for messages.
    fn describe(&self) -> String;
}

impl Api for FakeApiServer {
    fn create(&self, object: Value) {
        FakeApiServer::create(self, object).expect("create");
    }
    fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        FakeApiServer::get(self, resource, namespace, name)
    }
    fn replace(&self, object: Value) {
        self.upsert(object).expect("update");
    }
    fn delete(&self, resource: &str, namespace: Option<&str>, name: &str) {
        FakeApiServer::delete(self, resource, namespace, name);
    }
    fn set_node_status(&self, name: &str, status: Value) {
        let mut node = FakeApiServer::get(self, "nodes", None, name).expect("node");
        node["status"] = status;
        self.upsert(node).expect("update");
    }
    fn label_node(&self, name: &str, key: &str, value: &str) {
        let mut node = FakeApiServer::get(self, "nodes", None, name).expect("node");
        node["metadata"]["labels"][key] = json!(value);
        self.upsert(node).expect("update");
    }
    fn events(&self) -> Vec<Value> {
        FakeApiServer::events(self)
    }
    fn kubeconfig(&self) -> PathBuf {
        FakeApiServer::kubeconfig(self)
    }
    fn kubectl(&self, args: &[&str]) -> String {
        FakeApiServer::kubectl(self, args).expect("kubectl")
    }
    fn writes(&self, resource: &str, subresource: Option<&str>) -> usize {
        FakeApiServer::writes(self, resource, subresource)
    }
    fn total_writes(&self) -> usize {
        FakeApiServer::total_writes(self)
    }
    fn clear_writes(&self) {
        self.clear_requests();
    }
    fn describe(&self) -> String {
        format!("{:#?}", self.requests())
    }
}

/// The real server; the reconciler runs as `RECONCILER_USER` with exactly the RBAC that the
/// real Helm renders from the chart.
struct Real {
    server: KubeApiServer,
    /// Writes of the reconciler's user before the last `clear_writes`.
    baseline: Cell<(usize, usize)>,
    /// One real server at a time: each is an etcd and a kube-apiserver, and several starting at
    /// once on two cores would make the scenarios' waits race their start-up. Last, so it is
    /// released after the server is gone.
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// The namespace the chart is installed into (that of `RECONCILER_USER`'s service account).
const NAMESPACE: &str = "ferrolb-system";

fn chart_rbac() -> String {
    common::chart_rbac(NAMESPACE)
}

impl Real {
    fn start() -> Real {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let server = KubeApiServer::start().expect("kube-apiserver");
        server
            .kubectl(["create", "namespace", NAMESPACE])
            .expect("kubectl create namespace");
        server.apply(&chart_rbac(), &[]).expect("kubectl apply");
        Real {
            server,
            baseline: Cell::new((0, 0)),
            _turn: turn,
        }
    }

    fn all_writes(&self) -> usize {
        self.server.all_writes_by(RECONCILER_USER)
    }
}

impl Api for Real {
    fn create(&self, object: Value) {
        self.server.create(&object).expect("create");
    }
    fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.server.get(resource, namespace, name)
    }
    fn replace(&self, object: Value) {
        self.server.replace(&object).expect("kubectl replace");
    }
    fn delete(&self, resource: &str, namespace: Option<&str>, name: &str) {
        let mut args = vec!["delete", resource, name, "--wait=false"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        self.server.kubectl(&args).expect("kubectl delete");
    }
    fn set_node_status(&self, name: &str, status: Value) {
        let patch = json!({ "status": status }).to_string();
        self.server
            .kubectl([
                "patch",
                "node",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ])
            .expect("kubectl patch --subresource=status");
    }
    fn label_node(&self, name: &str, key: &str, value: &str) {
        self.server
            .kubectl([
                "label",
                "node",
                name,
                &format!("{key}={value}"),
                "--overwrite",
            ])
            .expect("kubectl label");
    }
    fn events(&self) -> Vec<Value> {
        self.server.list("events.events.k8s.io")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.server.reconciler_kubeconfig()
    }
    fn kubectl(&self, args: &[&str]) -> String {
        self.server.kubectl(args).expect("kubectl")
    }
    fn writes(&self, resource: &str, subresource: Option<&str>) -> usize {
        let base = if subresource == Some("status") {
            self.baseline.get().0
        } else {
            0
        };
        self.server
            .writes_by(RECONCILER_USER, resource, subresource)
            .saturating_sub(base)
    }
    fn total_writes(&self) -> usize {
        self.all_writes().saturating_sub(self.baseline.get().1)
    }
    fn clear_writes(&self) {
        self.baseline.set((
            self.server
                .writes_by(RECONCILER_USER, "services", Some("status")),
            self.all_writes(),
        ));
    }
    fn describe(&self) -> String {
        self.server.requests_by(RECONCILER_USER).join("\n")
    }
}

struct World<A: Api> {
    api: A,
    etcd: Etcd,
    dir: tempfile::TempDir,
    pools: PathBuf,
}

fn world<A: Api>(api: A) -> World<A> {
    let etcd = Etcd::start().expect("etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    let pools = dir.path().join("pools");
    std::fs::create_dir_all(&pools).expect("mkdir");
    std::fs::write(pools.join("lab.yaml"), POOLS).expect("write");
    // Both servers start with the `default` namespace.
    for n in ["n1", "n2"] {
        api.create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}));
    }
    World {
        api,
        etcd,
        dir,
        pools,
    }
}

fn fake() -> World<FakeApiServer> {
    world(FakeApiServer::start().expect("fake api"))
}

fn real() -> World<Real> {
    world(Real::start())
}

/// The reconciler on the world's API server.
fn start<A: Api>(w: &World<A>, name: &str) -> Reconciler {
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

fn ingress(api: &dyn Api, name: &str) -> Vec<String> {
    api.get("services", Some("default"), name)
        .and_then(|s| s["status"]["loadBalancer"]["ingress"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect()
}

fn reasons(api: &dyn Api, name: &str) -> Vec<String> {
    api.events()
        .iter()
        .filter(|e| e["regarding"]["name"] == name || e["involvedObject"]["name"] == name)
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect()
}

fn wait(what: &str, log: &dyn Fn() -> String, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out: {what}\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn announcement_nodes(etcd: &Etcd, ip: &str) -> Option<Value> {
    let v = etcd.get_json(&format!("/ferrolb/announcements/{ip}"))?;
    Some(v["nodes"].clone())
}

/// A test per back end for each scenario that both can play.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        mod fake_server {
            $(#[test]
            fn $scenario() {
                super::$scenario(&super::fake());
            })*
        }
        mod real_server {
            $(#[test]
            fn $scenario() {
                super::$scenario(&super::real());
            })*
        }
    };
}

on_both!(
    services_get_their_status_events_and_announcements,
    classes_excluded_and_unavailable_nodes_are_followed,
    changes_deletions_and_exhaustion_are_followed,
    a_restart_writes_nothing_when_nothing_changed,
    local_traffic_policy_announces_from_nodes_with_endpoints,
);

fn services_get_their_status_events_and_announcements<A: Api>(w: &World<A>) {
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})));
    w.api.create(service(
        "db",
        "2026-01-02T00:00:00Z",
        json!({"type": "ClusterIP"}),
    ));
    let r = start(w, "r");
    let log = || r.log();
    wait("web's status", &log, || {
        ingress(&w.api, "web") == ["10.250.0.100"]
    });
    let kubectl = w.api.kubectl(&[
        "get",
        "svc",
        "web",
        "-n",
        "default",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ip}",
    ]);
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

fn changes_deletions_and_exhaustion_are_followed<A: Api>(w: &World<A>) {
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})));
    let r = start(w, "r");
    let log = || r.log();
    wait("web's status", &log, || {
        ingress(&w.api, "web") == ["10.250.0.100"]
    });
    let mut web = w.api.get("services", Some("default"), "web").expect("web");
    web["metadata"]["annotations"] = json!({"metallb.io/loadBalancerIPs": "10.250.0.103"});
    w.api.replace(web);
    wait("web moved", &log, || {
        ingress(&w.api, "web") == ["10.250.0.103"]
    });
    wait("IPChanged", &log, || {
        reasons(&w.api, "web").contains(&"IPChanged".to_string())
    });
    for i in 0..4 {
        w.api.create(service(
            &format!("s{i}"),
            &format!("2026-02-0{}T00:00:00Z", i + 1),
            json!({}),
        ));
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

fn a_restart_writes_nothing_when_nothing_changed<A: Api>(w: &World<A>) {
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})));
    w.api
        .create(service("api", "2026-01-02T00:00:00Z", json!({})));
    let mut r = start(w, "r1");
    let log = || r.log();
    // Which gets which depends on creation times, which only the fake lets a test choose.
    wait("both allocated", &log, || {
        ingress(&w.api, "api").len() == 1 && ingress(&w.api, "web").len() == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    r.term();
    let before = w
        .etcd
        .ctl(&["get", "--prefix", "/ferrolb/announcements/", "-w", "json"])
        .expect("get");
    w.api.clear_writes();
    let r2 = start(w, "r2");
    let log2 = || r2.log();
    wait("ready and leading", &log2, || {
        r2.status()["ready"] == true && r2.status()["is_leader"] == true
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        w.api.total_writes(),
        0,
        "no write to Kubernetes\n{}\n{}",
        w.api.describe(),
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

/// A Service of another `loadBalancerClass` is left alone; a node labelled
/// `node.kubernetes.io/exclude-from-external-load-balancers` or whose `NetworkUnavailable`
/// condition is true (set through the status subresource) leaves the announcement's nodes.
fn classes_excluded_and_unavailable_nodes_are_followed<A: Api>(w: &World<A>) {
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})));
    w.api.create(service(
        "theirs",
        "2026-01-02T00:00:00Z",
        json!({"loadBalancerClass": "other.example.com/lb"}),
    ));
    let r = start(w, "r");
    let log = || r.log();
    wait("web's status", &log, || {
        ingress(&w.api, "web") == ["10.250.0.100"]
    });
    // No restriction: the empty list, every node.
    wait("announced from every node", &log, || {
        announcement_nodes(&w.etcd, "10.250.0.100") == Some(json!([]))
    });
    w.api.label_node(
        "n1",
        "node.kubernetes.io/exclude-from-external-load-balancers",
        "",
    );
    wait("n1 excluded", &log, || {
        announcement_nodes(&w.etcd, "10.250.0.100") == Some(json!(["n2"]))
    });
    w.api.set_node_status(
        "n2",
        json!({"conditions": [{"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated", "message": "test", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
    );
    // No node left: not announced at all, rather than everywhere.
    wait("n2 unavailable", &log, || {
        announcement_nodes(&w.etcd, "10.250.0.100").is_none()
    });
    assert!(
        ingress(&w.api, "theirs").is_empty(),
        "another class's Service is not ours"
    );
    assert!(!reasons(&w.api, "theirs").contains(&"IPAllocated".to_string()));
}

/// Events reach the real server and show where users look: `kubectl describe svc` and
/// `kubectl get events`.
#[test]
fn real_server_events_show_in_kubectl_describe_and_get_events() {
    let w = real();
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})));
    let r = start(&w, "r");
    let log = || r.log();
    wait("IPAllocated", &log, || {
        reasons(&w.api, "web").contains(&"IPAllocated".to_string())
    });
    let describe = w.api.kubectl(&["describe", "svc", "web", "-n", "default"]);
    assert!(
        describe.contains("IPAllocated") && describe.contains("10.250.0.100"),
        "{describe}"
    );
    let events = w.api.kubectl(&["get", "events", "-n", "default"]);
    assert!(
        events.contains("IPAllocated") && events.contains("service/web"),
        "{events}"
    );
}

#[test]
fn api_errors_and_conflicts_are_retried_until_written() {
    let w = fake();
    w.api.fail_next(Matcher::new("PATCH", "/status"), 500, 2);
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})))
        .expect("create");
    let r = start(&w, "r");
    let log = || r.log();
    wait("web's status despite two 500s", &log, || {
        ingress(&w.api, "web") == ["10.250.0.100"]
    });
    w.api.fail_next(Matcher::new("PATCH", "/status"), 409, 2);
    w.api
        .create(service("api", "2026-01-02T00:00:00Z", json!({})))
        .expect("create");
    wait("api's status despite two 409s", &log, || {
        ingress(&w.api, "api") == ["10.250.0.101"]
    });
}

fn local_traffic_policy_announces_from_nodes_with_endpoints<A: Api>(w: &World<A>) {
    w.api.create(service(
        "web",
        "2026-01-01T00:00:00Z",
        json!({"externalTrafficPolicy": "Local"}),
    ));
    w.api
        .create(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "nodeName": "n2"}]
        }));
    let r = start(w, "r");
    let log = || r.log();
    wait("announced from n2 only", &log, || {
        announcement_nodes(&w.etcd, "10.250.0.100") == Some(json!(["n2"]))
    });
}

#[test]
fn a_compacted_watch_is_relisted_and_followed() {
    let w = fake();
    let r = start(&w, "r");
    let log = || r.log();
    wait("ready", &log, || r.status()["ready"] == true);
    w.api.compact();
    w.api
        .create(service("late", "2026-03-01T00:00:00Z", json!({})))
        .expect("create");
    wait("late allocated", &log, || {
        ingress(&w.api, "late") == ["10.250.0.100"]
    });
}

/// The real API server restarted under a running reconciler: its watches resume, a Service
/// created after the restart is allocated, and nothing already written is written again.
#[test]
fn real_server_restarted_mid_run_resumes_watches_and_writes_nothing_twice() {
    let mut w = real();
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})));
    let r = start(&w, "r");
    let log = || r.log();
    wait("web's status", &log, || {
        ingress(&w.api, "web") == ["10.250.0.100"]
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(w.api.writes("services", Some("status")), 1);
    w.api.server.stop().expect("stop kube-apiserver");
    std::thread::sleep(Duration::from_secs(2));
    w.api.server.restart().expect("restart kube-apiserver");
    w.api
        .create(service("late", "2026-01-02T00:00:00Z", json!({})));
    wait("late allocated after the restart", &log, || {
        ingress(&w.api, "late") == ["10.250.0.101"]
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        w.api.writes("services", Some("status")),
        2,
        "web written once, late once\n{}\n{}",
        w.api.describe(),
        r.log()
    );
    assert_eq!(ingress(&w.api, "web"), ["10.250.0.100"]);
}

/// etcd compacted past every revision the reconciler's watches saw, while the API server was
/// down: the watches get `410 Gone` ("too old resource version"), the reconciler lists again,
/// follows new Services and rewrites nothing.
#[test]
fn real_server_compacted_etcd_makes_the_reconciler_relist_without_writes() {
    let mut w = real();
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})));
    let r = start(&w, "r");
    let log = || r.log();
    wait("web's status", &log, || {
        ingress(&w.api, "web") == ["10.250.0.100"]
    });
    std::thread::sleep(Duration::from_millis(500));
    // Revisions none of the reconciler's watches sees.
    for i in 0..5 {
        w.api.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i}"), "namespace": "default"}}));
    }
    w.api.server.stop().expect("stop kube-apiserver");
    let status = w
        .api
        .server
        .etcd()
        .ctl(&["endpoint", "status", "-w", "json"])
        .expect("etcd status");
    let revision =
        serde_json::from_str::<Value>(&status).expect("json")[0]["Status"]["header"]["revision"]
            .as_u64()
            .expect("revision");
    w.api
        .server
        .etcd()
        .ctl(&["compact", &revision.to_string()])
        .expect("etcdctl compact");
    w.api.server.restart().expect("restart kube-apiserver");
    w.api
        .create(service("late", "2026-01-02T00:00:00Z", json!({})));
    wait("late allocated after the relist", &log, || {
        ingress(&w.api, "late") == ["10.250.0.101"]
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        r.log().contains("too old resource version"),
        "the watches were told they are too old\n{}",
        r.log()
    );
    assert_eq!(
        w.api.writes("services", Some("status")),
        2,
        "web written once, late once\n{}\n{}",
        w.api.describe(),
        r.log()
    );
}

/// Least privilege, proven on the real server: the reconciler runs with exactly the chart's
/// role, rendered by Helm. Take one rule away (patching `services/status`): it names the
/// refused permission in `/status`, `/readyz` says not ready and why; give it back: the status
/// is written and it is ready again.
#[test]
fn real_server_a_missing_permission_is_named_unready_and_heals_when_granted() {
    let w = real();
    let r = start(&w, "r");
    let log = || r.log();
    wait("ready", &log, || r.status()["ready"] == true);
    let rbac = chart_rbac();
    let rule = "  - apiGroups: [\"\"]\n    resources: [\"services/status\"]\n    verbs: [\"patch\", \"update\"]\n";
    assert!(rbac.contains(rule), "the chart's status rule:\n{rbac}");
    w.api
        .server
        .apply(&rbac.replace(rule, ""), &[])
        .expect("role without the status rule");
    // RBAC changes reach the authorizer through its own watch: wait until the rule is gone.
    wait("the rule revoked", &log, || {
        w.api
            .server
            .kubectl([
                "auth",
                "can-i",
                "patch",
                // `services/status` would read as the Service named "status", which the
                // chart's `patch services` (the pool annotation) allows.
                "services",
                "--subresource=status",
                "--as",
                RECONCILER_USER,
            ])
            .is_err()
    });
    w.api
        .create(service("web", "2026-01-01T00:00:00Z", json!({})));
    wait("the refusal reported", &log, || {
        let s = r.status();
        s["ready"] == false
            && s["kubernetes_refused"][0].as_str().is_some_and(|m| {
                m.starts_with("patch services/status: ")
                    && m.contains(RECONCILER_USER)
                    && m.contains("services/status")
            })
    });
    assert!(r.get("/readyz").is_none(), "/readyz answers 503");
    let body = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{}/readyz", r.port)])
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&body.stdout);
    assert!(
        body.starts_with("not ready: the Kubernetes API refuses")
            && body.contains("services/status"),
        "{body}"
    );
    assert!(ingress(&w.api, "web").is_empty());
    w.api.server.apply(&rbac, &[]).expect("the rule back");
    wait("written once the rule is back", &log, || {
        ingress(&w.api, "web") == ["10.250.0.100"]
    });
    wait("ready again", &log, || {
        let s = r.status();
        s["ready"] == true && s["kubernetes_refused"] == json!([])
    });
}
