//! Pools as cluster objects, against the real `kube-apiserver`: the CRDs from `deploy/crds/`,
//! pools applied with `kubectl apply -f examples/pools/`, `--config kubernetes`, the validating
//! admission webhook called by the API server over TLS, the ConfigurationState and
//! ServiceL2Status objects, the pool annotation and `AnnouncementFailed` Events.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Reconciler;
use ferrolb_testkit::{Etcd, KubeApiServer};
use serde_json::{Value, json};

/// Where the chart puts the reconciler (its service account's namespace).
const NAMESPACE: &str = "ferrolb-system";
/// Where the pools live, as with MetalLB.
const POOLS: &str = "metallb-system";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart_rbac() -> String {
    common::chart_rbac(NAMESPACE)
}

/// Whose CRDs the server has.
#[derive(Clone, Copy)]
enum Crds {
    /// ferrolb's, from deploy/crds/.
    Ferrolb,
    /// MetalLB's own (v0.16.2, from its Go module), as after a MetalLB installation.
    MetalLb,
}

/// A real API server with the namespaces, the chart's RBAC and the CRDs.
fn server(crds: Crds) -> KubeApiServer {
    let server = KubeApiServer::start().expect("kube-apiserver");
    for ns in [NAMESPACE, POOLS] {
        server
            .kubectl(["create", "namespace", ns])
            .expect("create namespace");
    }
    server.apply(&chart_rbac(), &[]).expect("apply RBAC");
    let crds = match crds {
        Crds::Ferrolb => repo().join("deploy/crds"),
        Crds::MetalLb => ferrolb_testkit::metallb_crds().expect("MetalLB's CRDs"),
    };
    server
        .kubectl(["apply", "-f", crds.to_str().expect("path")])
        .expect("apply the CRDs");
    server
        .kubectl([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/ipaddresspools.metallb.io",
            "crd/l2advertisements.metallb.io",
            "crd/servicel2statuses.metallb.io",
            "crd/configurationstates.metallb.io",
        ])
        .expect("CRDs established");
    for n in ["n1", "n2"] {
        server
            .create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}))
            .expect("node");
    }
    server
}

/// A self-signed certificate for 127.0.0.1 (its own CA), from openssl.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("webhook.crt"), dir.join("webhook.key"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=ferrolb-webhook"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The webhook registration, as the chart writes it, pointing at `port` on loopback.
fn webhook_configuration(port: u16, ca: &Path) -> Value {
    let bundle = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(ca).expect("read the certificate"));
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "ferrolb"},
        "webhooks": [{
            "name": "pools.ferrolb.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate"), "caBundle": bundle},
            "rules": [{
                "apiGroups": ["metallb.io"],
                "apiVersions": ["v1beta1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["ipaddresspools", "l2advertisements"],
                "scope": "Namespaced",
            }],
        }],
    })
}

struct World {
    server: KubeApiServer,
    etcd: Etcd,
    dir: tempfile::TempDir,
    webhook_port: u16,
}

fn world() -> World {
    world_with(Crds::Ferrolb)
}

fn world_with(crds: Crds) -> World {
    let server = server(crds);
    let etcd = Etcd::start().expect("etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    World {
        server,
        etcd,
        dir,
        webhook_port: common::free_port(),
    }
}

fn start(w: &World, name: &str) -> Reconciler {
    let (cert, key) = certificate(w.dir.path());
    let args = common::args(&[
        "--config",
        "kubernetes",
        "--config-namespace",
        POOLS,
        "--state-namespace",
        NAMESPACE,
        "--services",
        "kubernetes",
        "--kubeconfig",
        w.server.reconciler_kubeconfig().to_str().expect("path"),
        "--etcd-endpoints",
        &w.etcd.endpoints(),
        "--lease-ttl",
        "2",
        "--admission-listen",
        &format!("127.0.0.1:{}", w.webhook_port),
        "--admission-cert",
        cert.to_str().expect("path"),
        "--admission-key",
        key.to_str().expect("path"),
    ]);
    Reconciler::spawn(&args, w.dir.path(), name)
}

fn wait(what: &str, log: &dyn Fn() -> String, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < end, "timed out: {what}\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn service(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    })
}

fn ingress(server: &KubeApiServer, name: &str) -> Vec<String> {
    server
        .get("services", Some("default"), name)
        .and_then(|s| s["status"]["loadBalancer"]["ingress"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect()
}

fn annotation(server: &KubeApiServer, name: &str) -> Option<String> {
    let s = server.get("services", Some("default"), name)?;
    s["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"]
        .as_str()
        .map(str::to_string)
}

fn config_state(server: &KubeApiServer) -> Value {
    server
        .get("configurationstates", Some(NAMESPACE), "ferrolb-reconciler")
        .map(|o| o["status"].clone())
        .unwrap_or_default()
}

fn l2_node(server: &KubeApiServer, service: &str) -> Option<String> {
    let o = server.get(
        "servicel2statuses",
        Some(NAMESPACE),
        &format!("l2-default.{service}"),
    )?;
    o["status"]["node"].as_str().map(str::to_string)
}

/// A pool that overlaps examples/pools/homelab.yaml.
const OVERLAPPING: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: intruder
  namespace: metallb-system
spec:
  addresses:
    - 10.250.0.140-10.250.0.160
";

fn apply_text(server: &KubeApiServer, text: &str) -> Result<String, String> {
    server.apply(text, &[]).map_err(|e| e.to_string())
}

#[test]
fn pools_applied_with_kubectl_allocate_and_an_invalid_change_is_refused_or_not_applied() {
    let w = world();
    let examples = repo().join("examples/pools");
    w.server
        .kubectl(["apply", "-n", POOLS, "-f", examples.to_str().expect("path")])
        .expect("kubectl apply -f examples/pools/ works unchanged");
    w.server
        .create(&service(
            "web",
            json!({"metallb.io/address-pool": "homelab"}),
        ))
        .expect("service");
    let r = start(&w, "r");
    let log = || r.log();
    wait("web's address from homelab", &log, || {
        ingress(&w.server, "web") == ["10.250.0.100"]
    });
    wait("the pool annotation", &log, || {
        annotation(&w.server, "web").as_deref() == Some("homelab")
    });
    wait("ConfigurationState Valid", &log, || {
        config_state(&w.server)["result"] == "Valid"
    });
    let revision = config_state(&w.server)["revision"].clone();
    assert_eq!(r.status()["revision"], revision, "the revision in force");

    // With the webhook registered, an overlapping pool is refused with the validator's words.
    let hook = webhook_configuration(w.webhook_port, &w.dir.path().join("webhook.crt"));
    w.server.create(&hook).expect("register the webhook");
    let refused = {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            // The API server takes a moment to start calling a new registration.
            match apply_text(&w.server, OVERLAPPING) {
                Err(e) if e.contains("denied the request") => break e,
                Err(e) => panic!("refused, but not by the webhook: {e}"),
                Ok(_) if Instant::now() < end => {
                    let _ = w
                        .server
                        .kubectl(["delete", "ipaddresspool", "-n", POOLS, "intruder"]);
                    std::thread::sleep(Duration::from_millis(300));
                }
                Ok(out) => panic!("an overlapping pool was stored: {out}\n{}", log()),
            }
        }
    };
    assert!(
        refused.contains(
            r#"metallb-system: error: IPAddressPool "intruder": address range 10.250.0.140-10.250.0.160 overlaps 10.250.0.100-10.250.0.149 of IPAddressPool "homelab" (metallb-system)"#
        ),
        "{refused}"
    );
    // A valid change still goes through.
    apply_text(
        &w.server,
        &OVERLAPPING
            .replace("intruder", "spare")
            .replace("10.250.0.140-10.250.0.160", "10.250.7.0/24"),
    )
    .expect("a valid pool is admitted");

    // Without the webhook the server stores it, and ferrolb keeps the configuration in force.
    w.server
        .kubectl(["delete", "validatingwebhookconfiguration", "ferrolb"])
        .expect("unregister");
    std::thread::sleep(Duration::from_secs(1));
    apply_text(&w.server, OVERLAPPING).expect("stored without the webhook");
    wait("ConfigurationState Invalid", &log, || {
        config_state(&w.server)["result"] == "Invalid"
    });
    let state = config_state(&w.server);
    assert!(
        state["errorSummary"]
            .as_str()
            .is_some_and(|e| e.contains(r#"IPAddressPool "intruder""#)),
        "{state}"
    );
    assert_ne!(state["revision"], Value::Null);
    let shown = w
        .server
        .kubectl(["get", "configurationstates", "-n", NAMESPACE])
        .expect("kubectl get");
    assert!(shown.contains("Invalid"), "{shown}");
    assert_eq!(ingress(&w.server, "web"), ["10.250.0.100"], "nothing moved");

    // Removing the intruder makes the set valid again.
    w.server
        .kubectl(["delete", "ipaddresspool", "-n", POOLS, "intruder"])
        .expect("delete");
    wait("Valid again", &log, || {
        config_state(&w.server)["result"] == "Valid"
    });
}

#[test]
fn l2_statuses_follow_the_claims_and_the_annotation_and_events_follow_the_service() {
    let w = world();
    w.server
        .apply(
            "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec: {addresses: [10.250.0.100-10.250.0.109]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lonely, namespace: metallb-system}
spec: {addresses: [10.250.1.100-10.250.1.109], autoAssign: false}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan, namespace: metallb-system}
spec: {ipAddressPools: [lan]}
",
            &[],
        )
        .expect("pools");
    w.server.create(&service("web", json!({}))).expect("web");
    w.server
        .create(&service(
            "alone",
            json!({"metallb.io/address-pool": "lonely"}),
        ))
        .expect("alone");
    let r = start(&w, "r");
    let log = || r.log();
    wait("web allocated", &log, || {
        ingress(&w.server, "web") == ["10.250.0.100"]
    });
    // An address no advertisement covers: an Event on its Service says so.
    wait("AnnouncementFailed", &log, || {
        w.server.list("events.events.k8s.io").iter().any(|e| {
            e["reason"] == "AnnouncementFailed"
                && e["regarding"]["name"] == "alone"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("10.250.1.100 is allocated but not announced"))
        })
    });
    // A speaker claims web's address; then another takes it over.
    let claim = |node: &str| {
        let value = json!({"node": node, "interfaces": ["eth0"], "since": "2026-12-02T00:00:00Z"});
        w.etcd
            .ctl(&["put", "/ferrolb/claims/10.250.0.100", &value.to_string()])
            .expect("claim");
    };
    claim("n1");
    wait("ServiceL2Status names n1", &log, || {
        l2_node(&w.server, "web").as_deref() == Some("n1")
    });
    let listed = w
        .server
        .kubectl(["get", "servicel2status", "-A"])
        .expect("kubectl get servicel2status -A");
    assert!(listed.contains("n1") && listed.contains("web"), "{listed}");
    claim("n2");
    wait("ServiceL2Status names n2", &log, || {
        l2_node(&w.server, "web").as_deref() == Some("n2")
    });
    // The address leaves the Service: the annotation and the object go.
    assert_eq!(annotation(&w.server, "web").as_deref(), Some("lan"));
    let mut web = w
        .server
        .get("services", Some("default"), "web")
        .expect("web");
    web["spec"]["type"] = json!("ClusterIP");
    web["spec"]["ports"][0]
        .as_object_mut()
        .map(|p| p.remove("nodePort"));
    w.server.replace(&web).expect("replace");
    wait("annotation cleared", &log, || {
        annotation(&w.server, "web").is_none()
    });
    w.etcd
        .ctl(&["del", "/ferrolb/claims/10.250.0.100"])
        .expect("release");
    wait("ServiceL2Status deleted", &log, || {
        l2_node(&w.server, "web").is_none()
    });
}

/// Where MetalLB's own CRDs are installed, ferrolb uses them as they are: the pools MetalLB
/// reads are read, and the state objects are written in MetalLB's schema (its `result`,
/// `errorSummary` and conditions; ferrolb's extra revision fields are pruned).
#[test]
fn with_metallbs_own_crds_the_pools_are_read_and_the_state_written() {
    let w = world_with(Crds::MetalLb);
    let homelab = repo().join("examples/pools/homelab.yaml");
    w.server
        .kubectl(["apply", "-n", POOLS, "-f", homelab.to_str().expect("path")])
        .expect("a MetalLB pool file applies to MetalLB's CRDs");
    w.server.create(&service("web", json!({}))).expect("web");
    let r = start(&w, "r");
    let log = || r.log();
    wait("web's address from homelab", &log, || {
        ingress(&w.server, "web") == ["10.250.0.100"]
    });
    wait("ConfigurationState Valid", &log, || {
        config_state(&w.server)["result"] == "Valid"
    });
    let state = config_state(&w.server);
    assert_eq!(state["revision"], Value::Null, "pruned by MetalLB's schema");
    let condition = &state["conditions"][0];
    assert_eq!(condition["type"], "Valid");
    let revision = r.status()["revision"].as_str().map(str::to_string);
    assert!(
        revision
            .as_deref()
            .is_some_and(|rev| condition["message"] == format!("revision {rev} is in force")),
        "{condition} / {revision:?}"
    );
    w.etcd
        .ctl(&[
            "put",
            "/ferrolb/claims/10.250.0.100",
            &json!({"node": "n1", "interfaces": ["eth0"], "since": "2026-12-02T00:00:00Z"})
                .to_string(),
        ])
        .expect("claim");
    wait("ServiceL2Status names n1", &log, || {
        l2_node(&w.server, "web").as_deref() == Some("n1")
    });
    // MetalLB's printer columns show ferrolb's summary.
    apply_text(&w.server, OVERLAPPING).expect("stored: no webhook");
    wait("ConfigurationState Invalid", &log, || {
        config_state(&w.server)["result"] == "Invalid"
    });
    let shown = w
        .server
        .kubectl(["get", "configurationstates", "-n", NAMESPACE])
        .expect("kubectl get");
    assert!(
        shown.contains("Invalid") && shown.contains("ERRORSUMMARY") && shown.contains("intruder"),
        "{shown}"
    );
    assert_eq!(ingress(&w.server, "web"), ["10.250.0.100"], "nothing moved");
}
