//! The fake API server against real clients: curl for raw HTTP, kubectl, and the kube crate.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrolb_testkit::kubeapi::{FakeApiServer, Matcher};
use serde_json::{Value, json};

fn start() -> FakeApiServer {
    FakeApiServer::start().expect("fake API server starts")
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": name}},
    })
}

/// An HTTP request with curl: the status code and the body (parsed as JSON when it is).
fn http(
    server: &FakeApiServer,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some((content_type, body)) = body {
        cmd.args([
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            body,
        ]);
    }
    let output = cmd
        .arg(format!("{}{path}", server.url()))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text
        .rsplit_once('\n')
        .expect("curl printed the status code");
    let code = code.trim().parse().expect("a status code");
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
    (code, body)
}

/// Reads a watch stream with curl until the server ends it (`timeoutSeconds`), while `during`
/// writes; returns the events.
fn watch(server: &FakeApiServer, path_and_query: &str, during: impl FnOnce()) -> Vec<Value> {
    let child = Command::new("curl")
        .args(["-sN", "--max-time", "20"])
        .arg(format!("{}{path_and_query}", server.url()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    during();
    let output = child.wait_with_output().expect("curl ends");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is a JSON event"))
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect()
}

#[test]
fn kubectl_prints_the_load_balancer_ip_written_through_the_status_subresource() {
    let server = start();
    let svc = service("web").to_string();
    let (code, created) = http(
        &server,
        "POST",
        "/api/v1/namespaces/default/services",
        Some(("application/json", &svc)),
    );
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["status"],
        json!({"loadBalancer": {}}),
        "a create starts with an empty status"
    );
    assert!(
        created["spec"]["clusterIP"].is_string(),
        "a cluster IP is allocated: {created}"
    );

    let patch = r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}"#;
    let (code, patched) = http(
        &server,
        "PATCH",
        "/api/v1/namespaces/default/services/web/status",
        Some(("application/merge-patch+json", patch)),
    );
    assert_eq!(code, 200, "{patched}");
    assert_eq!(
        patched["metadata"]["generation"],
        json!(1),
        "status writes leave the generation"
    );

    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(["get", "svc", "web", "-n", "default", "-o"])
        .arg("jsonpath={.status.loadBalancer.ingress[0].ip}")
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "192.0.2.10");

    assert_eq!(server.writes("services", Some("status")), 1);
    assert_eq!(server.writes("services", None), 1);
    assert_eq!(server.total_writes(), 2, "kubectl only reads");
}

#[test]
fn kubectl_lists_services_of_all_namespaces_as_json_and_as_a_table() {
    let server = start();
    server.create(service("web")).expect("create web");
    let mut other = service("dns");
    other["metadata"]["namespace"] = json!("kube-system");
    other["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.53"}]}});
    server.create(other).expect("create dns");

    let list: Value = serde_json::from_str(
        &server
            .kubectl(["get", "svc", "-A", "-o", "json"])
            .expect("kubectl get -o json"),
    )
    .expect("JSON");
    let names: Vec<_> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["metadata"]["namespace"].as_str().unwrap_or(""),
                s["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(names, ["default/web", "kube-system/dns"]);

    let table = server.kubectl(["get", "svc", "-A"]).expect("kubectl get");
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert!(table.contains("192.0.2.53"), "{table}");
    assert!(table.contains("<pending>"), "{table}");

    let resources = server
        .kubectl(["api-resources"])
        .expect("kubectl api-resources");
    assert!(resources.contains("endpointslices"), "{resources}");
    assert_eq!(
        server
            .kubectl(["get", "ns", "default", "-o", "name"])
            .expect("get ns"),
        "namespace/default\n"
    );
}

#[test]
fn a_watch_replays_and_streams_added_modified_deleted_and_bookmarks_until_its_timeout() {
    let server = start();
    let rv = server.resource_version();
    let started = Instant::now();
    let events = watch(
        &server,
        &format!(
            "/api/v1/namespaces/default/services?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=3"
        ),
        || {
            server.create(service("web")).expect("create");
            let mut changed = service("web");
            changed["spec"]["ports"] = json!([{"port": 8080}]);
            server.upsert(changed).expect("update");
            std::thread::sleep(Duration::from_millis(1500));
            server
                .delete("services", Some("default"), "web")
                .expect("delete");
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "timeoutSeconds ends the stream"
    );
    let changes: Vec<&str> = kinds(&events)
        .into_iter()
        .filter(|k| *k != "BOOKMARK")
        .collect();
    assert_eq!(changes, ["ADDED", "MODIFIED", "DELETED"], "{events:?}");
    assert_eq!(events[1]["object"]["metadata"]["generation"], json!(2));
    let bookmarks: Vec<&Value> = events.iter().filter(|e| e["type"] == "BOOKMARK").collect();
    assert!(!bookmarks.is_empty(), "{events:?}");
    assert_eq!(bookmarks[0]["object"]["kind"], "Service");
    assert!(bookmarks[0]["object"]["metadata"]["resourceVersion"].is_string());

    // The object's resource versions increase, and the deletion has its own.
    let rvs: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] != "BOOKMARK")
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0)
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
}

#[test]
fn a_watch_with_a_label_selector_sees_objects_enter_and_leave_it() {
    let server = start();
    let rv = server.resource_version();
    let events = watch(
        &server,
        &format!(
            "/apis/discovery.k8s.io/v1/endpointslices?watch=true&resourceVersion={rv}&labelSelector=kubernetes.io%2Fservice-name%3Dweb&timeoutSeconds=1"
        ),
        || {
            let slice = |service: &str| {
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": "web-abcde", "namespace": "default",
                                    "labels": {"kubernetes.io/service-name": service}},
                       "addressType": "IPv4", "endpoints": []})
            };
            server.create(slice("other")).expect("create");
            server.upsert(slice("web")).expect("relabel in");
            server.upsert(slice("other")).expect("relabel out");
        },
    );
    assert_eq!(kinds(&events), ["ADDED", "DELETED"], "{events:?}");

    // Lists filter the same way.
    let (code, list) = http(
        &server,
        "GET",
        "/apis/discovery.k8s.io/v1/endpointslices?labelSelector=kubernetes.io/service-name%3Dother",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "EndpointSliceList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let (_, none) = http(
        &server,
        "GET",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name%3Dweb",
        None,
    );
    assert_eq!(none["items"], json!([]));
}

#[test]
fn an_update_with_a_stale_resource_version_gets_409_conflict() {
    let server = start();
    let stored = server.create(service("web")).expect("create");
    let mut update = stored.clone();
    update["spec"]["ports"] = json!([{"port": 81}]);
    let path = "/api/v1/namespaces/default/services/web";
    let (code, updated) = http(
        &server,
        "PUT",
        path,
        Some(("application/json", &update.to_string())),
    );
    assert_eq!(code, 200, "{updated}");
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        stored["metadata"]["resourceVersion"]
    );

    update["spec"]["ports"] = json!([{"port": 82}]);
    let (code, status) = http(
        &server,
        "PUT",
        path,
        Some(("application/json", &update.to_string())),
    );
    assert_eq!(code, 409);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(status["details"]["name"], "web");

    // The same precondition holds for patches that carry a resource version.
    let patch = json!({"metadata": {"resourceVersion": stored["metadata"]["resourceVersion"]}, "spec": {"ports": [{"port": 83}]}});
    let (code, _) = http(
        &server,
        "PATCH",
        path,
        Some(("application/merge-patch+json", &patch.to_string())),
    );
    assert_eq!(code, 409);

    let (code, exists) = http(
        &server,
        "POST",
        "/api/v1/namespaces/default/services",
        Some(("application/json", &service("web").to_string())),
    );
    assert_eq!(
        (code, exists["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    let (code, missing) = http(
        &server,
        "GET",
        "/api/v1/namespaces/default/services/nope",
        None,
    );
    assert_eq!((code, missing["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(
        server.writes("services", None),
        1,
        "only the successful PUT counts"
    );
}

#[test]
fn after_a_compaction_a_watch_from_an_older_resource_version_gets_410_expired() {
    let server = start();
    let old = server.resource_version();
    server.create(service("web")).expect("create");
    server.compact();
    let events = watch(
        &server,
        &format!("/api/v1/services?watch=true&resourceVersion={old}&timeoutSeconds=1"),
        || {},
    );
    assert_eq!(kinds(&events), ["ERROR"], "{events:?}");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");

    let (code, _) = http(
        &server,
        "GET",
        &format!("/api/v1/services?resourceVersion={old}&resourceVersionMatch=Exact"),
        None,
    );
    assert_eq!(code, 410);
    let (code, list) = http(
        &server,
        "GET",
        &format!("/api/v1/services?resourceVersion={old}&resourceVersionMatch=NotOlderThan"),
        None,
    );
    assert_eq!(code, 200, "NotOlderThan answers with the current state");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    // From "now" (resourceVersion 0), the current objects come as ADDED.
    let current = watch(
        &server,
        "/api/v1/services?watch=true&resourceVersion=0&timeoutSeconds=1",
        || {},
    );
    assert_eq!(kinds(&current), ["ADDED"]);
}

#[test]
fn fail_next_fails_the_matching_requests_then_lets_them_through() {
    let server = start();
    server.create(service("web")).expect("create");
    let status_path = "/api/v1/namespaces/default/services/web/status";
    let patch = r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}"#;
    let body = Some(("application/merge-patch+json", patch));

    server.fail_next(Matcher::new("PATCH", "/status"), 500, 1);
    server.fail_next(Matcher::new("PATCH", "/status"), 429, 1);
    let (code, first) = http(&server, "PATCH", status_path, body);
    assert_eq!(
        (code, first["reason"].as_str()),
        (500, Some("InternalError"))
    );
    let (code, _) = http(
        &server,
        "GET",
        "/api/v1/namespaces/default/services/web",
        None,
    );
    assert_eq!(code, 200, "other requests are not affected");
    let (code, second) = http(&server, "PATCH", status_path, body);
    assert_eq!(
        (code, second["reason"].as_str()),
        (429, Some("TooManyRequests"))
    );
    let (code, third) = http(&server, "PATCH", status_path, body);
    assert_eq!(code, 200, "{third}");

    server.fail_next(Matcher::any().method("put"), 409, 1);
    let (code, conflict) = http(
        &server,
        "PUT",
        status_path,
        Some(("application/json", &third.to_string())),
    );
    assert_eq!((code, conflict["reason"].as_str()), (409, Some("Conflict")));

    assert_eq!(
        server.writes("services", Some("status")),
        1,
        "injected failures are not writes"
    );
    let injected = server.requests().iter().filter(|r| r.injected).count();
    assert_eq!(injected, 3);
}

#[test]
fn delay_holds_matching_requests_until_cleared() {
    let server = start();
    server.delay(Matcher::new("GET", "/api/v1/nodes"), Duration::from_secs(2));
    let output = Command::new("curl")
        .args(["-s", "--max-time", "0.5"])
        .arg(format!("{}/api/v1/nodes", server.url()))
        .output()
        .expect("curl runs");
    assert_eq!(output.status.code(), Some(28), "curl times out");
    let (code, _) = http(&server, "GET", "/api/v1/namespaces", None);
    assert_eq!(code, 200, "other requests are not delayed");
    server.clear_faults();
    let (code, nodes) = http(&server, "GET", "/api/v1/nodes", None);
    assert_eq!((code, nodes["kind"].as_str()), (200, Some("NodeList")));
}

#[test]
fn patches_of_every_kind_and_status_writes_change_what_the_real_server_changes() {
    let server = start();
    server.create(service("web")).expect("create");
    let main = "/api/v1/namespaces/default/services/web";
    let status = "/api/v1/namespaces/default/services/web/status";

    // JSON patch on the status.
    let ops =
        r#"[{"op":"add","path":"/status/loadBalancer/ingress","value":[{"ip":"192.0.2.10"}]}]"#;
    let (code, svc) = http(
        &server,
        "PATCH",
        status,
        Some(("application/json-patch+json", ops)),
    );
    assert_eq!(code, 200, "{svc}");
    assert_eq!(
        svc["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.10"
    );

    // A write to the object ignores .status; a write to /status ignores the rest.
    let both = r#"{"metadata":{"labels":{"x":"y"}},"status":{"loadBalancer":{}}}"#;
    let (_, svc) = http(
        &server,
        "PATCH",
        main,
        Some(("application/strategic-merge-patch+json", both)),
    );
    assert_eq!(svc["metadata"]["labels"]["x"], "y");
    assert_eq!(
        svc["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.10"
    );
    let spec_change = r#"{"spec":{"type":"ClusterIP"},"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.11"}]}}}"#;
    let (_, svc) = http(
        &server,
        "PATCH",
        status,
        Some(("application/merge-patch+json", spec_change)),
    );
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.11"
    );

    // Server-side apply, YAML, with a field manager; it creates what is missing.
    let applied =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    a: b\n";
    let (code, svc) = http(
        &server,
        "PATCH",
        &format!("{main}?fieldManager=ferrolb&force=true"),
        Some(("application/apply-patch+yaml", applied)),
    );
    assert_eq!(code, 200, "{svc}");
    assert_eq!(svc["metadata"]["annotations"]["a"], "b");
    let managers: Vec<&str> = svc["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"ferrolb"), "{managers:?}");
    let new = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"api"},"spec":{"ports":[{"port":443}]}}"#;
    let (code, created) = http(
        &server,
        "PATCH",
        "/api/v1/namespaces/default/services/api?fieldManager=ferrolb",
        Some(("application/apply-patch+yaml", new)),
    );
    assert_eq!(code, 201, "{created}");
    let (code, invalid) = http(
        &server,
        "PATCH",
        main,
        Some(("application/apply-patch+yaml", applied)),
    );
    assert_eq!(
        (code, invalid["reason"].as_str()),
        (422, Some("Invalid")),
        "apply needs a fieldManager"
    );

    // A patch that changes nothing keeps the resource version.
    let before = server.get("svc", Some("default"), "web").expect("web");
    let (_, same) = http(
        &server,
        "PATCH",
        main,
        Some((
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"x":"y"}}}"#,
        )),
    );
    assert_eq!(
        same["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );

    // Malformed requests get Status errors, not crashes.
    for (method, path, content_type, body, expected) in [
        (
            "POST",
            "/api/v1/namespaces/default/services",
            "application/json",
            "{not json",
            400,
        ),
        ("PATCH", main, "application/merge-patch+json", "[", 400),
        ("PATCH", main, "text/plain", "{}", 415),
        (
            "PATCH",
            main,
            "application/json-patch+json",
            r#"[{"op":"remove","path":"/nope"}]"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/services",
            "application/json",
            r#"{"kind":"Node"}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/services",
            "application/json",
            r#"{"metadata":{}}"#,
            422,
        ),
        ("GET", "/api/v1/pods", "application/json", "", 404),
        (
            "GET",
            "/api/v1/services?labelSelector=a%20b",
            "application/json",
            "",
            400,
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/services",
            "application/json",
            "",
            405,
        ),
    ] {
        let body = (!body.is_empty()).then_some((content_type, body));
        let (code, answer) = http(&server, method, path, body);
        assert_eq!(code, expected, "{method} {path}: {answer}");
        assert_eq!(answer["kind"], "Status", "{answer}");
    }
}

#[test]
fn finalizers_hold_a_deletion_until_an_update_removes_them() {
    let server = start();
    let mut svc = service("web");
    svc["metadata"]["finalizers"] = json!(["ferrolb.io/ip"]);
    server.create(svc).expect("create");
    let path = "/api/v1/namespaces/default/services/web";
    let (code, deleting) = http(&server, "DELETE", path, None);
    assert_eq!(code, 200);
    assert!(
        deleting["metadata"]["deletionTimestamp"].is_string(),
        "{deleting}"
    );
    assert!(server.get("services", Some("default"), "web").is_some());
    let (code, _) = http(
        &server,
        "PATCH",
        path,
        Some((
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )),
    );
    assert_eq!(code, 200);
    assert!(server.get("services", Some("default"), "web").is_none());
}

mod kube_client {
    //! The real kube client, watcher and event recorder against the fake server.

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::{ObjectReference, Service};
    use kube::api::{Api, Patch, PatchParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    use kube::runtime::watcher;
    use kube::{Client, Config};
    use serde_json::json;
    use tokio::time::timeout;

    use super::*;

    const STEP: Duration = Duration::from_secs(10);

    async fn client(server: &FakeApiServer) -> Client {
        let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig parses");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("config");
        Client::try_from(config).expect("client")
    }

    fn ingress_ip(svc: &Service) -> Option<String> {
        svc.status
            .as_ref()?
            .load_balancer
            .as_ref()?
            .ingress
            .as_ref()?
            .first()?
            .ip
            .clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_and_patches_status_with_the_kube_client() {
        let server = start();
        server.create(service("web")).expect("create");
        let services: Api<Service> = Api::default_namespaced(client(&server).await);

        let list = services.list(&Default::default()).await.expect("list");
        assert_eq!(list.items.len(), 1);
        assert!(list.metadata.resource_version.is_some());

        let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}});
        let patched = services
            .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch status");
        assert_eq!(ingress_ip(&patched).as_deref(), Some("192.0.2.10"));
        let stored = server
            .get("services", Some("default"), "web")
            .expect("stored");
        assert_eq!(
            stored["status"]["loadBalancer"]["ingress"][0]["ip"],
            "192.0.2.10"
        );
        assert_eq!(server.writes("services", Some("status")), 1);

        let apply = json!({"apiVersion": "v1", "kind": "Service",
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.11"}]}}});
        let applied = services
            .patch_status(
                "web",
                &PatchParams::apply("ferrolb").force(),
                &Patch::Apply(&apply),
            )
            .await
            .expect("apply status");
        assert_eq!(ingress_ip(&applied).as_deref(), Some("192.0.2.11"));

        match services.get("missing").await {
            Err(kube::Error::Api(status)) => {
                assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"))
            }
            other => panic!("expected 404, got {other:?}"),
        }
        server.fail_next(Matcher::new("PATCH", "/status"), 409, 1);
        match services
            .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
            other => panic!("expected 409, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watcher_relists_after_a_compaction_and_continues() {
        let server = start();
        server.create(service("web")).expect("create");
        let services: Api<Service> = Api::default_namespaced(client(&server).await);
        let mut events = watcher(services, watcher::Config::default()).boxed();

        let mut next = async || {
            timeout(STEP, events.next())
                .await
                .expect("an event in time")
                .expect("stream goes on")
        };
        let name = |svc: &Service| svc.metadata.name.clone().unwrap_or_default();
        assert!(matches!(next().await, Ok(watcher::Event::Init)));
        assert!(matches!(next().await, Ok(watcher::Event::InitApply(s)) if name(&s) == "web"));
        assert!(matches!(next().await, Ok(watcher::Event::InitDone)));

        server.create(service("api")).expect("create api");
        assert!(matches!(next().await, Ok(watcher::Event::Apply(s)) if name(&s) == "api"));

        // Compaction expires the watch: the watcher reports the 410 and lists again.
        server.compact();
        match next().await {
            Err(watcher::Error::WatchError(status)) => assert_eq!(status.code, 410),
            other => panic!("expected a 410 watch error, got {other:?}"),
        }
        assert!(matches!(next().await, Ok(watcher::Event::Init)));
        let mut relisted = Vec::new();
        loop {
            match next().await {
                Ok(watcher::Event::InitApply(s)) => relisted.push(name(&s)),
                Ok(watcher::Event::InitDone) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(relisted, ["api", "web"]);

        server
            .delete("services", Some("default"), "web")
            .expect("delete");
        assert!(matches!(next().await, Ok(watcher::Event::Delete(s)) if name(&s) == "web"));

        // A dropped connection: the watcher watches again from where it was, without a relist.
        server.close_watches();
        server.create(service("dns")).expect("create dns");
        assert!(matches!(next().await, Ok(watcher::Event::Apply(s)) if name(&s) == "dns"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watcher_works_with_streaming_lists() {
        let server = start();
        server.create(service("web")).expect("create");
        let services: Api<Service> = Api::default_namespaced(client(&server).await);
        let config = watcher::Config::default().streaming_lists();
        let mut events = watcher(services, config).boxed();
        let mut next = async || {
            timeout(STEP, events.next())
                .await
                .expect("an event in time")
                .expect("stream goes on")
        };
        assert!(matches!(next().await, Ok(watcher::Event::Init)));
        assert!(matches!(next().await, Ok(watcher::Event::InitApply(_))));
        assert!(matches!(next().await, Ok(watcher::Event::InitDone)));
        server.create(service("api")).expect("create api");
        assert!(matches!(next().await, Ok(watcher::Event::Apply(_))));
        let watches = server
            .requests()
            .into_iter()
            .filter(|r| r.query.contains("sendInitialEvents=true"))
            .count();
        assert_eq!(watches, 1, "{:?}", server.requests());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_recorder_creates_an_event_and_patches_it_when_it_repeats() {
        let server = start();
        let stored = server.create(service("web")).expect("create");
        let recorder_client = client(&server).await;
        let recorder = Recorder::new(
            recorder_client.clone(),
            Reporter::from("ferrolb-reconciler"),
        );
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: stored["metadata"]["uid"].as_str().map(str::to_string),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Normal,
            reason: "IPAllocated".into(),
            note: Some("assigned 192.0.2.10".into()),
            action: "Allocate".into(),
            secondary: None,
        };
        recorder.publish(&event, &reference).await.expect("publish");
        recorder
            .publish(&event, &reference)
            .await
            .expect("publish again");

        let events = server.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["apiVersion"], "events.k8s.io/v1");
        assert_eq!(events[0]["reason"], "IPAllocated");
        assert_eq!(events[0]["regarding"]["name"], "web");
        assert_eq!(events[0]["series"]["count"], 2);
        assert_eq!(server.writes("events.events.k8s.io", None), 2);

        let listed = Api::<k8s_openapi::api::events::v1::Event>::all(recorder_client)
            .list(&Default::default())
            .await
            .expect("list events");
        assert_eq!(listed.items.len(), 1);
    }
}
