//! `deploy/`: the plain Kubernetes manifests, the Helm chart, the images and the Grafana
//! dashboard, checked statically against each other and against the daemons' real flags and
//! metrics. The chart is linted and rendered by the real Helm (built from `helm.sh/helm/v3` by
//! `scripts/kube-binaries.sh`), and the checks read Helm's output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrolb_core::yaml::{Node, Value, parse_documents};
use ferrolb_testkit::KUBE_VERSION;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The files of a directory with one of the extensions, sorted by name.
fn files(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no files in {}", dir.display());
    out
}

/// The non-empty documents of a YAML text.
fn documents(text: &str, origin: &str) -> Vec<Node> {
    parse_documents(text)
        .unwrap_or_else(|e| panic!("{origin}:{}: {}", e.line, e.message))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn manifest_dir() -> PathBuf {
    root().join("deploy/manifests")
}

fn chart_dir() -> PathBuf {
    root().join("deploy/helm/ferrolb")
}

/// Every document of the plain manifests.
fn manifests() -> Vec<Node> {
    files(&manifest_dir(), &["yaml", "yml"])
        .iter()
        .flat_map(|p| documents(&read(p), &p.display().to_string()))
        .collect()
}

fn at<'a>(node: &'a Node, path: &[&str]) -> Option<&'a Node> {
    path.iter().try_fold(node, |n, key| n.get(key))
}

fn str_at<'a>(node: &'a Node, path: &[&str]) -> Option<&'a str> {
    at(node, path).and_then(Node::as_str)
}

/// The scalars of a list (empty when absent).
fn strings(node: Option<&Node>) -> Vec<String> {
    node.and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .map(|n| n.as_str().expect("a list of scalars").to_string())
        .collect()
}

fn kind_and_name(doc: &Node) -> (String, String) {
    (
        str_at(doc, &["kind"]).expect("kind").to_string(),
        str_at(doc, &["metadata", "name"])
            .expect("metadata.name")
            .to_string(),
    )
}

fn object<'a>(docs: &'a [Node], kind: &str, name: &str) -> &'a Node {
    docs.iter()
        .find(|d| kind_and_name(d) == (kind.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The (only) container of a workload's pod template.
fn container(workload: &Node) -> &Node {
    let containers = at(workload, &["spec", "template", "spec", "containers"])
        .and_then(Node::as_seq)
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container expected");
    &containers[0]
}

fn args(workload: &Node) -> Vec<String> {
    strings(container(workload).get("args"))
}

/// The YAML tree as JSON, without line numbers, for comparisons and readable failures.
fn json(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Scalar { .. } if node.is_null() => serde_json::Value::Null,
        Value::Scalar { text, .. } => serde_json::Value::String(text.clone()),
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().expect("string key").to_string(), json(v)))
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The real Helm.

/// `helm ARGS` (the real Helm, from the test kit); panics with its stderr unless it succeeds.
fn helm(args: &[&str]) -> String {
    ferrolb_testkit::helm(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Every object `helm template` renders with the chart's values and `overrides` (YAML).
fn chart_with(overrides: &str) -> Vec<Node> {
    let text = render(overrides).unwrap_or_else(|e| panic!("{e}"));
    documents(&text, "helm template")
}

/// `helm template` with `overrides`: the text, or Helm's error.
fn render(overrides: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("overrides.yaml");
    std::fs::write(&values, overrides).expect("write overrides");
    let chart = chart_dir();
    ferrolb_testkit::helm(&[
        "template",
        "ferrolb",
        chart.to_str().expect("path"),
        "--namespace",
        "ferrolb-system",
        "--kube-version",
        KUBE_VERSION,
        "--values",
        values.to_str().expect("path"),
    ])
    .map_err(|e| e.to_string())
}

/// With the chart's own values.
fn chart_defaults() -> Vec<Node> {
    chart_with("{}\n")
}

fn default_values() -> Node {
    let path = chart_dir().join("values.yaml");
    documents(&read(&path), "values.yaml")
        .into_iter()
        .next()
        .expect("values.yaml holds a mapping")
}

/// The value at `.Values.a.b` of `values`.
fn lookup<'a>(values: &'a Node, reference: &str) -> Option<&'a Node> {
    let path = reference.strip_prefix(".Values.")?;
    path.split('.').try_fold(values, |n, key| n.get(key))
}

/// The chart's templates and helpers.
fn templates() -> Vec<PathBuf> {
    files(&chart_dir().join("templates"), &["yaml", "yml", "tpl"])
}

/// The names of the reconciler's ClusterRole and ClusterRoleBinding for a release `ferrolb` in
/// `ferrolb-system`: cluster-scoped objects carry the namespace, so that releases of one name in
/// two namespaces do not collide.
const CLUSTER_ROLE: &str = "ferrolb-ferrolb-system-reconciler";
/// The name of the ValidatingWebhookConfiguration of that release.
const WEBHOOK_CONFIGURATION: &str = "ferrolb-ferrolb-system-pools";

// ---------------------------------------------------------------------------------------------
// Checks shared by the plain manifests and the rendered chart.

/// The ClusterRole's grants as (apiGroup, resource, verb).
fn grants(role: &Node) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role.get("rules").and_then(Node::as_seq).expect("rules") {
        let keys: BTreeSet<&str> = rule
            .as_map()
            .expect("rule mapping")
            .iter()
            .map(|(k, _)| k.as_str().expect("key"))
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["apiGroups", "resources", "verbs"]),
            "rules name groups, resources and verbs only (no resourceNames, no nonResourceURLs)"
        );
        for group in strings(rule.get("apiGroups")) {
            for resource in strings(rule.get("resources")) {
                for verb in strings(rule.get("verbs")) {
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

fn expected_grants() -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let mut grant = |group: &str, resource: &str, verbs: &[&str]| {
        for verb in verbs {
            out.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    };
    for resource in ["services", "nodes", "namespaces"] {
        grant("", resource, &["get", "list", "watch"]);
    }
    grant(
        "discovery.k8s.io",
        "endpointslices",
        &["get", "list", "watch"],
    );
    grant("", "services/status", &["patch", "update"]);
    grant("", "services", &["patch"]);
    grant("", "events", &["create", "patch"]);
    grant("events.k8s.io", "events", &["create", "patch"]);
    for resource in ["ipaddresspools", "l2advertisements"] {
        grant("metallb.io", resource, &["get", "list", "watch"]);
    }
    grant(
        "metallb.io",
        "servicel2statuses",
        &["get", "list", "watch", "create", "patch", "delete"],
    );
    grant(
        "metallb.io",
        "configurationstates",
        &["get", "create", "patch"],
    );
    grant("metallb.io", "servicel2statuses/status", &["patch"]);
    grant("metallb.io", "configurationstates/status", &["patch"]);
    out
}

fn assert_least_privilege_rbac(docs: &[Node], origin: &str) {
    let rbac: Vec<(String, String)> = docs
        .iter()
        .map(kind_and_name)
        .filter(|(kind, _)| kind.contains("Role"))
        .collect();
    let expected = vec![
        ("ClusterRole".to_string(), CLUSTER_ROLE.to_string()),
        ("ClusterRoleBinding".to_string(), CLUSTER_ROLE.to_string()),
    ];
    assert_eq!(rbac, expected, "{origin}: RBAC objects");
    assert_eq!(
        grants(object(docs, "ClusterRole", CLUSTER_ROLE)),
        expected_grants(),
        "{origin}: the reconciler's ClusterRole"
    );
    let binding = object(docs, "ClusterRoleBinding", CLUSTER_ROLE);
    assert_eq!(str_at(binding, &["roleRef", "name"]), Some(CLUSTER_ROLE));
    let subjects = binding
        .get("subjects")
        .and_then(Node::as_seq)
        .expect("subjects");
    assert_eq!(subjects.len(), 1, "{origin}: one subject");
    assert_eq!(str_at(&subjects[0], &["kind"]), Some("ServiceAccount"));
    assert_eq!(str_at(&subjects[0], &["name"]), Some("ferrolb-reconciler"));
    assert_eq!(str_at(&subjects[0], &["namespace"]), Some("ferrolb-system"));
    let deployment = object(docs, "Deployment", "ferrolb-reconciler");
    assert_eq!(
        str_at(
            deployment,
            &["spec", "template", "spec", "serviceAccountName"]
        ),
        Some("ferrolb-reconciler")
    );
}

fn assert_speaker_is_confined(docs: &[Node], origin: &str) {
    let daemonset = object(docs, "DaemonSet", "ferrolb-speaker");
    let pod = at(daemonset, &["spec", "template", "spec"]).expect("pod spec");
    assert_eq!(str_at(pod, &["hostNetwork"]), Some("true"), "{origin}");
    assert_eq!(
        str_at(pod, &["automountServiceAccountToken"]),
        Some("false"),
        "{origin}: the speaker gets no Kubernetes token"
    );
    assert_eq!(
        str_at(pod, &["priorityClassName"]),
        Some("system-node-critical")
    );
    assert_eq!(
        str_at(container(daemonset), &["readinessProbe", "httpGet", "path"]),
        Some("/readyz"),
        "{origin}: a rolling update waits for the lease and the announcements"
    );
    let tolerations = pod
        .get("tolerations")
        .and_then(Node::as_seq)
        .expect("tolerations");
    assert!(
        tolerations
            .iter()
            .any(|t| str_at(t, &["operator"]) == Some("Exists")
                && t.get("key").is_none()
                && t.get("effect").is_none()),
        "{origin}: the speaker tolerates every taint"
    );
    let account = str_at(pod, &["serviceAccountName"]).expect("serviceAccountName");
    assert_eq!(
        str_at(
            object(docs, "ServiceAccount", account),
            &["automountServiceAccountToken"]
        ),
        Some("false"),
        "{origin}: the speaker's ServiceAccount does not automount a token"
    );

    let c = container(daemonset);
    let security = c.get("securityContext").expect("securityContext");
    assert_eq!(strings(at(security, &["capabilities", "drop"])), ["ALL"]);
    assert_eq!(
        strings(at(security, &["capabilities", "add"])),
        ["NET_RAW"],
        "{origin}: NET_RAW and nothing else"
    );
    assert_eq!(str_at(security, &["readOnlyRootFilesystem"]), Some("true"));
    assert_ne!(str_at(security, &["privileged"]), Some("true"));
    assert_eq!(
        str_at(security, &["runAsNonRoot"]),
        Some("true"),
        "{origin}"
    );
    // Without this, no_new_privs would make the kernel ignore the binary's file capability.
    assert_eq!(
        str_at(security, &["allowPrivilegeEscalation"]),
        Some("true"),
        "{origin}: a non-root speaker needs its file capability"
    );

    let env = c.get("env").and_then(Node::as_seq).expect("env");
    let node_name = env
        .iter()
        .find(|e| str_at(e, &["name"]) == Some("NODE_NAME"))
        .expect("NODE_NAME");
    assert_eq!(
        str_at(node_name, &["valueFrom", "fieldRef", "fieldPath"]),
        Some("spec.nodeName")
    );
    let args = args(daemonset);
    assert!(args.iter().any(|a| a.starts_with("--etcd-endpoints=")));
    assert!(args.contains(&"--listen=0.0.0.0:7472".to_string()));
}

fn assert_reconciler_is_hardened(docs: &[Node], origin: &str) {
    let deployment = object(docs, "Deployment", "ferrolb-reconciler");
    assert_eq!(str_at(deployment, &["spec", "replicas"]), Some("2"));
    let c = container(deployment);
    let security = c.get("securityContext").expect("securityContext");
    assert_eq!(
        str_at(security, &["runAsNonRoot"]),
        Some("true"),
        "{origin}"
    );
    assert_eq!(str_at(security, &["readOnlyRootFilesystem"]), Some("true"));
    assert_eq!(
        str_at(security, &["allowPrivilegeEscalation"]),
        Some("false")
    );
    assert_eq!(strings(at(security, &["capabilities", "drop"])), ["ALL"]);
    assert!(at(security, &["capabilities", "add"]).is_none());
    assert_eq!(
        str_at(c, &["readinessProbe", "httpGet", "path"]),
        Some("/readyz")
    );
    assert_eq!(
        str_at(c, &["livenessProbe", "httpGet", "path"]),
        Some("/healthz")
    );
    assert!(at(c, &["resources", "requests"]).is_some(), "{origin}");
    let args = args(deployment);
    for expected in [
        "--services=kubernetes",
        "--lease-ttl=3",
        "--listen=0.0.0.0:7473",
    ] {
        assert!(args.contains(&expected.to_string()), "{origin}: {expected}");
    }
    let service = object(docs, "Service", "ferrolb-reconciler");
    let ports = at(service, &["spec", "ports"])
        .and_then(Node::as_seq)
        .expect("ports");
    assert!(ports.iter().any(|p| str_at(p, &["port"]) == Some("7473")));
}

/// Every file argument (`--x=/path`) of a workload lies under one of its volume mounts, and a
/// file from a Secret volume is one of that Secret's keys (as the Secret templates list them).
fn assert_file_arguments_are_mounted(docs: &[Node], secret_keys: &BTreeMap<String, Vec<String>>) {
    for doc in docs {
        let (kind, name) = kind_and_name(doc);
        if !["Deployment", "DaemonSet", "StatefulSet"].contains(&kind.as_str()) {
            continue;
        }
        let c = container(doc);
        let volumes = at(doc, &["spec", "template", "spec", "volumes"])
            .and_then(Node::as_seq)
            .unwrap_or_default();
        let mounts = c
            .get("volumeMounts")
            .and_then(Node::as_seq)
            .unwrap_or_default();
        for arg in args(doc) {
            let Some((flag, path)) = arg.split_once('=') else {
                continue;
            };
            if !path.starts_with('/') || flag == "--etcd-prefix" {
                continue;
            }
            let mount = mounts
                .iter()
                .find(|m| {
                    let dir = str_at(m, &["mountPath"]).expect("mountPath");
                    path == dir || path.starts_with(&format!("{dir}/"))
                })
                .unwrap_or_else(|| panic!("{kind} {name}: {arg} is not under a volume mount"));
            let volume_name = str_at(mount, &["name"]).expect("mount name");
            let volume = volumes
                .iter()
                .find(|v| str_at(v, &["name"]) == Some(volume_name))
                .unwrap_or_else(|| panic!("{kind} {name}: no volume {volume_name}"));
            if let Some(secret) = str_at(volume, &["secret", "secretName"]) {
                let file = path.rsplit('/').next().expect("file name");
                let keys = secret_keys
                    .get(secret)
                    .unwrap_or_else(|| panic!("no Secret template {secret}"));
                assert!(
                    keys.iter().any(|k| k == file),
                    "{kind} {name}: {arg}: Secret {secret} has no key {file} (keys: {keys:?})"
                );
            }
        }
    }
}

/// The keys of every Secret in `docs`, by name.
fn secret_keys(docs: &[Node]) -> BTreeMap<String, Vec<String>> {
    docs.iter()
        .filter(|d| str_at(d, &["kind"]) == Some("Secret"))
        .map(|d| {
            let data = d
                .get("stringData")
                .or_else(|| d.get("data"))
                .and_then(Node::as_map)
                .unwrap_or_default();
            (
                kind_and_name(d).1,
                data.iter()
                    .map(|(k, _)| k.as_str().expect("key").to_string())
                    .collect(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Flags.

/// The `--flags` of a daemon's real `--help`.
fn help_flags(package: &str) -> (BTreeSet<String>, String) {
    let out = Command::new(env!("CARGO"))
        .args([
            "run", "--quiet", "-p", package, "--bin", package, "--", "--help",
        ])
        .current_dir(root())
        .output()
        .expect("run cargo");
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{package} --help: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (flags_in(&help), help)
}

/// Every `--word` in a text (not `---` document separators).
fn flags_in(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(offset) = text[i..].find("--") {
        let start = i + offset;
        let boundary =
            start == 0 || !(bytes[start - 1] == b'-' || bytes[start - 1].is_ascii_alphanumeric());
        let mut end = start + 2;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'-')
        {
            end += 1;
        }
        if boundary && bytes.get(start + 2).is_some_and(u8::is_ascii_lowercase) {
            out.insert(text[start..end].to_string());
        }
        i = end.max(start + 2);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Metrics.

/// The metric names the daemons export, from the `register` calls in their metrics.rs (a field
/// of a `Counter` type is exported with `_total`, as prometheus-client does).
fn exported_metrics() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (file, prefixes) in [
        (
            "speaker/src/metrics.rs",
            vec![
                ("r.register(", "ferrolb_speaker_"),
                ("m.register(", "metallb_"),
            ],
        ),
        (
            "reconciler/src/metrics.rs",
            vec![
                ("f.register(", "ferrolb_"),
                ("m.register(", "metallb_allocator_"),
                ("k.register(", "metallb_k8s_client_"),
            ],
        ),
    ] {
        let source = read(&root().join(file));
        for (call, prefix) in prefixes {
            for piece in source.split(call).skip(1) {
                let name = piece
                    .split('"')
                    .nth(1)
                    .expect("a metric name after register(");
                let field = piece
                    .split("self.")
                    .nth(1)
                    .and_then(|f| f.split('.').next())
                    .expect("self.<field>.clone()");
                let declaration = source
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("pub {field}:")))
                    .unwrap_or_else(|| panic!("{file}: no field {field}"));
                let suffix = if declaration.contains("Counter") {
                    "_total"
                } else {
                    ""
                };
                out.insert(format!("{prefix}{name}{suffix}"));
            }
        }
    }
    assert!(out.len() > 10, "too few metrics found: {out:?}");
    out
}

/// Every metric name (`ferrolb_...`, `metallb_...`) in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (start, _) in expr.match_indices(|c: char| c.is_ascii_lowercase()) {
        let before = expr[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let word: String = expr[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word.starts_with("ferrolb_") || word.starts_with("metallb_") {
            out.push(word);
        }
    }
    out
}

fn dashboard_exprs(panels: &[serde_json::Value], out: &mut Vec<String>) {
    for panel in panels {
        if let Some(nested) = panel["panels"].as_array() {
            dashboard_exprs(nested, out);
        }
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}");
            out.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn every_manifest_document_is_a_named_kubernetes_object_in_the_right_namespace() {
    let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
    let mut seen = BTreeSet::new();
    for doc in manifests() {
        assert!(doc.as_map().is_some(), "a document is not a mapping");
        assert!(str_at(&doc, &["apiVersion"]).is_some(), "no apiVersion");
        let (kind, name) = kind_and_name(&doc);
        assert!(
            seen.insert((kind.clone(), name.clone())),
            "{kind} {name} twice"
        );
        let namespace = str_at(&doc, &["metadata", "namespace"]);
        if cluster_scoped.contains(&kind.as_str()) {
            assert_eq!(namespace, None, "{kind} {name} is cluster-scoped");
        } else {
            assert_eq!(namespace, Some("ferrolb-system"), "{kind} {name}");
        }
    }
    for expected in [
        ("Namespace", "ferrolb-system"),
        ("Deployment", "ferrolb-reconciler"),
        ("DaemonSet", "ferrolb-speaker"),
        ("Service", "ferrolb-reconciler"),
        ("Service", "ferrolb-speaker-metrics"),
        ("ConfigMap", "ferrolb-pools"),
        ("Secret", "ferrolb-etcd-tls"),
        ("Secret", "ferrolb-git-credentials"),
        ("Secret", "ferrolb-heartbeat-key"),
        ("ServiceAccount", "ferrolb-speaker"),
        ("ClusterRole", CLUSTER_ROLE),
    ] {
        assert!(
            seen.contains(&(expected.0.to_string(), expected.1.to_string())),
            "missing {expected:?}"
        );
    }
}

/// Heartbeats are signed by default: the speaker reads the key from the mounted Secret.
fn assert_heartbeats_are_signed(docs: &[Node], origin: &str, secret: &str) {
    let daemonset = object(docs, "DaemonSet", "ferrolb-speaker");
    assert!(
        args(daemonset).contains(&"--heartbeat-key-file=/etc/ferrolb/heartbeat/key".to_string()),
        "{origin}: heartbeats are signed by default"
    );
    let spec = json(daemonset);
    let pod = &spec["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "heartbeat-key"))
        .unwrap_or_else(|| panic!("{origin}: no heartbeat-key volume"));
    assert_eq!(volume["secret"]["secretName"], secret, "{origin}");
    let mounted = pod["containers"][0]["volumeMounts"]
        .as_array()
        .is_some_and(|m| {
            m.iter()
                .any(|m| m["name"] == "heartbeat-key" && m["mountPath"] == "/etc/ferrolb/heartbeat")
        });
    assert!(
        mounted,
        "{origin}: the key is mounted where the flag points"
    );
}

#[test]
fn heartbeat_authentication_is_on_by_default_in_the_manifests_and_the_chart() {
    assert_heartbeats_are_signed(&manifests(), "deploy/manifests", "ferrolb-heartbeat-key");
    assert_heartbeats_are_signed(&chart_defaults(), "chart", "ferrolb-heartbeat-key");
    // Turned off in the chart, no flag and no volume.
    let off = chart_with("speaker:\n  heartbeatKey:\n    enabled: false\n");
    let daemonset = object(&off, "DaemonSet", "ferrolb-speaker");
    assert!(
        !args(daemonset)
            .iter()
            .any(|a| a.starts_with("--heartbeat-key-file"))
    );
    assert!(!json(daemonset).to_string().contains("heartbeat-key"));
    let key_secret = |docs: &[Node]| {
        docs.iter()
            .any(|d| kind_and_name(d) == ("Secret".into(), "ferrolb-heartbeat-key".into()))
    };
    assert!(key_secret(&chart_defaults()), "generated by default");
    assert!(!key_secret(&off));
    // A key of one's own: signed, from that Secret, none generated.
    let own = chart_with("speaker:\n  heartbeatKey:\n    create: false\n    secretName: mine\n");
    assert_heartbeats_are_signed(&own, "chart (own key)", "mine");
    assert!(!key_secret(&own));
    assert!(
        own.iter()
            .all(|d| kind_and_name(d) != ("Secret".into(), "mine".into())),
        "a key of one's own is not rendered"
    );
}

#[test]
fn the_speaker_runs_on_the_host_network_with_only_net_raw_and_no_kubernetes_token() {
    assert_speaker_is_confined(&manifests(), "deploy/manifests");
}

#[test]
fn the_reconciler_runs_non_root_read_only_without_capabilities_and_probes_its_endpoints() {
    assert_reconciler_is_hardened(&manifests(), "deploy/manifests");
}

#[test]
fn the_reconciler_role_grants_exactly_what_it_uses_and_the_speaker_gets_no_role() {
    assert_least_privilege_rbac(&manifests(), "deploy/manifests");
}

#[test]
fn every_file_a_daemon_is_given_is_mounted_from_a_volume_holding_it() {
    let mut keys = secret_keys(&manifests());
    let cluster = chart_with(KUBERNETES_VALUES);
    keys.extend(secret_keys(&cluster));
    assert!(keys.contains_key("ferrolb-webhook-tls"), "{keys:?}");
    assert_file_arguments_are_mounted(&manifests(), &keys);
    assert_file_arguments_are_mounted(&chart_defaults(), &keys);
    assert_file_arguments_are_mounted(&git_variant(), &keys);
    assert_file_arguments_are_mounted(&cluster, &keys);
}

#[test]
fn the_sample_pools_validate_with_ferrolb_validate_strict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pools = object(&manifests(), "ConfigMap", "ferrolb-pools")
        .get("data")
        .and_then(Node::as_map)
        .expect("data")
        .to_vec();
    for (file, text) in &pools {
        std::fs::write(
            dir.path().join(file.as_str().expect("file name")),
            text.as_str().expect("file text"),
        )
        .expect("write");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(["validate", "--strict"])
        .arg(dir.path())
        .output()
        .expect("run ferrolb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_flag_in_the_manifests_and_templates_exists_in_the_daemons_help() {
    let (speaker, speaker_help) = help_flags("ferrolb-speaker");
    let (reconciler, _) = help_flags("ferrolb-reconciler");
    assert!(
        speaker_help.contains("[env: NODE_NAME=]"),
        "the DaemonSet passes the node name in NODE_NAME"
    );
    let mut checked = 0;
    for path in files(&manifest_dir(), &["yaml"])
        .into_iter()
        .chain(templates())
    {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        let known = if name.contains("speaker") {
            &speaker
        } else if name.contains("reconciler") {
            &reconciler
        } else {
            continue;
        };
        // Comments count too: the Git variant is documented there.
        for flag in flags_in(&read(&path)) {
            assert!(
                known.contains(&flag),
                "{}: {flag} is not a flag of the binary (its flags: {known:?})",
                path.display()
            );
            checked += 1;
        }
    }
    // And every argument the chart renders with each value set, by workload.
    for overrides in VALUE_SETS {
        for doc in chart_with(overrides) {
            let (kind, name) = kind_and_name(&doc);
            let known = match kind.as_str() {
                "DaemonSet" => &speaker,
                "Deployment" => &reconciler,
                _ => continue,
            };
            for arg in args(&doc) {
                let flag = arg.split('=').next().expect("a flag");
                assert!(
                    known.contains(flag),
                    "{overrides}: {kind} {name}: {arg} is not a flag of the binary"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 150, "only {checked} flags found");
}

#[test]
fn every_values_path_the_templates_use_exists_in_values_yaml() {
    let values = default_values();
    let mut used = BTreeSet::new();
    for path in templates() {
        let text = read(&path);
        for (start, _) in text.match_indices(".Values.") {
            let reference: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                .collect();
            assert!(
                lookup(&values, &reference).is_some(),
                "{}: {reference} is not in values.yaml",
                path.display()
            );
            used.insert(reference);
        }
    }
    for expected in [
        ".Values.image.registry",
        ".Values.image.reconciler",
        ".Values.image.speaker.pullPolicy",
        ".Values.fullnameOverride",
        ".Values.etcd.bundled",
        ".Values.etcd.replicas",
        ".Values.etcd.persistence.enabled",
        ".Values.etcd.bundledTLS.serverSecretName",
        ".Values.prometheus.podMonitor.enabled",
        ".Values.prometheus.scrapeAnnotations",
        ".Values.etcd.endpoints",
        ".Values.etcd.prefix",
        ".Values.etcd.tls.secretName",
        ".Values.pools.git.url",
        ".Values.pools.git.ref",
        ".Values.pools.git.path",
        ".Values.pools.git.interval",
        ".Values.pools.git.credentials.secretName",
        ".Values.lbClass",
        ".Values.reconciler.leaseTTL",
        ".Values.speaker.leaseTTL",
        ".Values.reconciler.replicas",
        ".Values.reconciler.resources",
        ".Values.speaker.tolerations",
        ".Values.speaker.heartbeatKey.enabled",
        ".Values.speaker.heartbeatKey.secretName",
    ] {
        assert!(used.contains(expected), "the chart does not use {expected}");
    }
}

#[test]
fn the_chart_metadata_names_the_chart_and_its_versions() {
    let chart = documents(&read(&chart_dir().join("Chart.yaml")), "Chart.yaml").remove(0);
    assert_eq!(str_at(&chart, &["apiVersion"]), Some("v2"));
    assert_eq!(str_at(&chart, &["name"]), Some("ferrolb"));
    assert!(str_at(&chart, &["version"]).is_some_and(|v| v.split('.').count() == 3));
    assert_eq!(
        str_at(&chart, &["appVersion"]),
        Some(env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn the_plain_manifests_are_the_chart_rendered_with_their_values_and_current() {
    // `scripts/manifests.sh --check` (what `make manifests` writes) with the test kit's Helm.
    let helm = ferrolb_testkit::go_bin("helm").expect("helm");
    let out = Command::new(root().join("scripts/manifests.sh"))
        .arg("--check")
        .env("HELM", &helm)
        .output()
        .expect("run scripts/manifests.sh");
    assert!(
        out.status.success(),
        "deploy/manifests/50-ferrolb.yaml is stale: run `make manifests`\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The generated file is the own-etcd variant: no etcd of its own, no generated secret (the
    // Secret templates of 10-secrets.yaml are filled in by the user).
    let generated = documents(
        &read(&manifest_dir().join("50-ferrolb.yaml")),
        "50-ferrolb.yaml",
    );
    assert!(
        generated
            .iter()
            .all(|d| !["StatefulSet", "Secret"].contains(&kind_and_name(d).0.as_str())),
        "no bundled etcd and no generated Secret in the plain manifests"
    );
    let speaker = args(object(&generated, "DaemonSet", "ferrolb-speaker"));
    assert!(
        speaker
            .iter()
            .any(|a| a.starts_with("--etcd-endpoints=https://etcd-0.example.invalid:2379")),
        "{speaker:?}"
    );
}

#[test]
fn the_chart_defaults_bring_their_etcd_and_follow_helms_conventions() {
    let chart = chart_defaults();
    let names: BTreeSet<_> = chart.iter().map(kind_and_name).collect();
    assert_eq!(names.len(), chart.len(), "an object rendered twice");
    for expected in [
        ("StatefulSet", "ferrolb-etcd"),
        ("Service", "ferrolb-etcd"),
        ("Service", "ferrolb-etcd-peer"),
        ("PodDisruptionBudget", "ferrolb-etcd"),
        ("Secret", "ferrolb-etcd-server-tls"),
        ("Secret", "ferrolb-etcd-client-tls"),
        ("Secret", "ferrolb-heartbeat-key"),
        ("Service", "ferrolb-speaker-metrics"),
    ] {
        let expected = (expected.0.to_string(), expected.1.to_string());
        assert!(names.contains(&expected), "{expected:?} in {names:?}");
    }
    // Every object: the release's namespace (cluster-scoped ones none), Helm's labels.
    for doc in &chart {
        let (kind, name) = kind_and_name(doc);
        let namespace = str_at(doc, &["metadata", "namespace"]);
        if kind.starts_with("Cluster") {
            assert_eq!(namespace, None, "{kind} {name}");
        } else {
            assert_eq!(namespace, Some("ferrolb-system"), "{kind} {name}");
        }
        let labels = json(at(doc, &["metadata", "labels"]).expect("labels"));
        for (key, value) in [
            ("app.kubernetes.io/name", "ferrolb"),
            ("app.kubernetes.io/instance", "ferrolb"),
            ("app.kubernetes.io/version", env!("CARGO_PKG_VERSION")),
            ("app.kubernetes.io/managed-by", "Helm"),
            (
                "helm.sh/chart",
                &format!("ferrolb-{}", env!("CARGO_PKG_VERSION")),
            ),
        ] {
            assert_eq!(labels[key], value, "{kind} {name}: {key}");
        }
        assert!(
            labels["app.kubernetes.io/component"].is_string(),
            "{kind} {name}"
        );
    }
    // The daemons reach the bundled etcd through its client Service, over TLS, with the
    // generated client certificate; the images default to the chart's appVersion.
    for (kind, name, image) in [
        ("DaemonSet", "ferrolb-speaker", "ferrolb-speaker"),
        ("Deployment", "ferrolb-reconciler", "ferrolb-reconciler"),
    ] {
        let workload = object(&chart, kind, name);
        let args = args(workload);
        assert!(
            args.contains(&"--etcd-endpoints=https://ferrolb-etcd.ferrolb-system.svc:2379".into()),
            "{args:?}"
        );
        assert!(args.contains(&"--etcd-cacert=/etc/ferrolb/etcd-tls/ca.crt".into()));
        let pod = json(workload);
        let volumes = pod["spec"]["template"]["spec"]["volumes"].to_string();
        assert!(volumes.contains("ferrolb-etcd-client-tls"), "{volumes}");
        assert_eq!(
            str_at(container(workload), &["image"]),
            Some(format!("{image}:{}", env!("CARGO_PKG_VERSION")).as_str())
        );
    }
    // The shared assertions hold for the chart too.
    assert_speaker_is_confined(&chart, "chart");
    assert_reconciler_is_hardened(&chart, "chart");
    assert_least_privilege_rbac(&chart, "chart");
}

#[test]
fn two_releases_never_share_a_name_and_names_follow_the_release_or_fullname_override() {
    let render_as = |release: &str, namespace: &str, overrides: &str| -> Vec<Node> {
        let dir = tempfile::tempdir().expect("tempdir");
        let values = dir.path().join("values.yaml");
        std::fs::write(&values, overrides).expect("write");
        let text = helm(&[
            "template",
            release,
            chart_dir().to_str().expect("path"),
            "--namespace",
            namespace,
            "--kube-version",
            KUBE_VERSION,
            "--values",
            values.to_str().expect("path"),
        ]);
        documents(&text, "helm template")
    };
    let names = |docs: &[Node]| -> BTreeSet<(String, String, String)> {
        docs.iter()
            .map(|d| {
                let (kind, name) = kind_and_name(d);
                let ns = str_at(d, &["metadata", "namespace"])
                    .unwrap_or("")
                    .to_string();
                (kind, ns, name)
            })
            .collect()
    };
    let everything = "pools:\n  kubernetes:\n    enabled: true\nprometheus:\n  podMonitor:\n    enabled: true\n  prometheusRule:\n    enabled: true\n";
    let a = render_as("ferrolb", "lb", everything);
    let b = render_as("lab", "lb", everything);
    let c = render_as("ferrolb", "other", everything);
    for (x, y, what) in [
        (&a, &b, "two releases in one namespace"),
        (&a, &c, "one name in two namespaces"),
    ] {
        let shared: Vec<_> = names(x).intersection(&names(y)).cloned().collect();
        assert!(shared.is_empty(), "{what}: {shared:?}");
    }
    // A release named otherwise: <release>-ferrolb-...; its selectors select only its own pods.
    let lab = object(&b, "DaemonSet", "lab-ferrolb-speaker");
    assert_eq!(
        str_at(
            lab,
            &[
                "spec",
                "selector",
                "matchLabels",
                "app.kubernetes.io/instance"
            ]
        ),
        Some("lab")
    );
    assert!(args(lab).contains(&"--etcd-endpoints=https://lab-ferrolb-etcd.lb.svc:2379".into()));
    let webhook = json(object(
        &b,
        "ValidatingWebhookConfiguration",
        "lab-ferrolb-lb-pools",
    ));
    assert_eq!(
        webhook["webhooks"][0]["clientConfig"]["service"]["name"],
        "lab-ferrolb-webhook"
    );
    let binding = json(object(
        &b,
        "ClusterRoleBinding",
        "lab-ferrolb-lb-reconciler",
    ));
    assert_eq!(binding["subjects"][0]["name"], "lab-ferrolb-reconciler");
    assert_eq!(binding["subjects"][0]["namespace"], "lb");
    // fullnameOverride names everything.
    let over = render_as("x", "lb", "fullnameOverride: edge\n");
    object(&over, "DaemonSet", "edge-speaker");
    object(&over, "StatefulSet", "edge-etcd");
    object(&over, "Secret", "edge-heartbeat-key");
    object(&over, "ConfigMap", "edge-pools");
}

#[test]
fn a_typo_or_a_wrong_type_in_the_values_fails_with_the_schemas_message() {
    for (values, message) in [
        (
            "speaker:\n  logformat: json\n",
            "additional properties 'logformat' not allowed",
        ),
        ("etcd:\n  replicas: 2\n", "/etcd/replicas"),
        ("reconciler:\n  replicas: two\n", "/reconciler/replicas"),
        ("speaker:\n  logFormat: yaml\n", "/speaker/logFormat"),
        (
            "pools:\n  kubernetes:\n    webhook:\n      failurePolicy: Never\n",
            "failurePolicy",
        ),
        (
            "prometheus:\n  servicemonitor: {}\n",
            "'servicemonitor' not allowed",
        ),
    ] {
        let refused = render(values).expect_err(values);
        assert!(refused.contains(message), "{values}: {refused}");
    }
    // And the chart's own checks.
    let refused = render("etcd:\n  bundled: false\n").expect_err("no endpoints");
    assert!(
        refused.contains("etcd.endpoints: with etcd.bundled false, give the client URLs"),
        "{refused}"
    );
    let refused = render("etcd:\n  replicas: 3\n").expect_err("3 members without persistence");
    assert!(
        refused.contains("needs etcd.persistence.enabled"),
        "{refused}"
    );
    let refused =
        render("etcd:\n  bundledTLS:\n    serverSecretName: mine\n").expect_err("no client");
    assert!(
        refused.contains("needs etcd.tls.secretName too"),
        "{refused}"
    );
}

#[test]
fn image_registry_repository_and_tag_compose_and_default_to_the_app_version() {
    let image = |docs: &[Node], kind: &str, name: &str| {
        str_at(container(object(docs, kind, name)), &["image"])
            .expect("image")
            .to_string()
    };
    let chart =
        chart_with("image:\n  registry: registry.example.com/me\n  speaker:\n    tag: dev\n");
    assert_eq!(
        image(&chart, "DaemonSet", "ferrolb-speaker"),
        "registry.example.com/me/ferrolb-speaker:dev"
    );
    assert_eq!(
        image(&chart, "Deployment", "ferrolb-reconciler"),
        format!(
            "registry.example.com/me/ferrolb-reconciler:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    // etcd's image keeps its own registry.
    assert!(image(&chart, "StatefulSet", "ferrolb-etcd").starts_with("quay.io/coreos/etcd:v3.6."));
    let own =
        chart_with("image:\n  reconciler:\n    registry: ghcr.io/x\n    pullPolicy: Always\n");
    let reconciler = container(object(&own, "Deployment", "ferrolb-reconciler"));
    assert_eq!(
        str_at(reconciler, &["image"]),
        Some(format!("ghcr.io/x/ferrolb-reconciler:{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(str_at(reconciler, &["imagePullPolicy"]), Some("Always"));
}

/// The value sets the chart is checked with: its defaults, Git with every credential, the
/// speaker as root, etcd without TLS.
const GIT_VALUES: &str = "pools:\n  git:\n    enabled: true\n    url: ssh://git@git.example.com/infra/pools.git\n    credentials:\n      token: true\n      sshKey: true\n      webhookSecret: true\nlbClass: example.com/ferrolb\n";
const ROOT_SPEAKER_VALUES: &str = "speaker:\n  runAsRoot: true\n";
const NO_TLS_VALUES: &str = "etcd:\n  tls:\n    enabled: false\n";
const CRD_VALUES: &str = "crds:\n  enabled: true\n";
/// Pools from the cluster's objects, with the admission webhook and a generated certificate.
const KUBERNETES_VALUES: &str = "pools:\n  kubernetes:\n    enabled: true\n";

/// Your own etcd instead of the bundled one.
const OWN_ETCD_VALUES: &str = "etcd:\n  bundled: false\n  endpoints: https://etcd-0.example.com:2379,https://etcd-1.example.com:2379\n";
/// Three bundled members on persistent volumes, strictly on three nodes.
const ETCD_HA_VALUES: &str = "etcd:\n  replicas: 3\n  podAntiAffinity: hard\n  persistence:\n    enabled: true\n    storageClass: local-path\n    size: 2Gi\n";
/// Every Prometheus object and the scrape annotations.
const MONITORING_VALUES: &str = "prometheus:\n  scrapeAnnotations: true\n  podMonitor:\n    enabled: true\n    labels: {release: kube-prometheus-stack}\n  serviceMonitor:\n    enabled: true\n  prometheusRule:\n    enabled: true\ngrafana:\n  dashboard:\n    enabled: true\n";

const VALUE_SETS: [&str; 10] = [
    "{}\n",
    OWN_ETCD_VALUES,
    ETCD_HA_VALUES,
    MONITORING_VALUES,
    GIT_VALUES,
    ROOT_SPEAKER_VALUES,
    NO_TLS_VALUES,
    CRD_VALUES,
    KUBERNETES_VALUES,
    WORKLOAD_VALUES,
];

#[test]
fn the_charts_crds_are_those_of_deploy_crds_kept_on_uninstall_and_rendered_only_when_enabled() {
    let shipped = files(&root().join("deploy/crds"), &["yaml"]);
    let copied = files(&chart_dir().join("files/crds"), &["yaml"]);
    assert_eq!(shipped.len(), 4, "{shipped:?}");
    assert_eq!(
        shipped.iter().map(|p| p.file_name()).collect::<Vec<_>>(),
        copied.iter().map(|p| p.file_name()).collect::<Vec<_>>()
    );
    for (a, b) in shipped.iter().zip(&copied) {
        assert_eq!(
            read(a),
            read(b),
            "{} is not a copy of {}",
            b.display(),
            a.display()
        );
    }
    let crds = |docs: &[Node]| -> BTreeSet<String> {
        docs.iter()
            .filter(|d| str_at(d, &["kind"]) == Some("CustomResourceDefinition"))
            .map(|d| {
                let keep = str_at(d, &["metadata", "annotations", "helm.sh/resource-policy"]);
                assert_eq!(keep, Some("keep"), "{d:?}");
                kind_and_name(d).1
            })
            .collect()
    };
    assert!(crds(&chart_defaults()).is_empty(), "off by default");
    assert_eq!(
        crds(&chart_with(CRD_VALUES)),
        BTreeSet::from(
            [
                "configurationstates.metallb.io",
                "ipaddresspools.metallb.io",
                "l2advertisements.metallb.io",
                "servicel2statuses.metallb.io",
            ]
            .map(String::from)
        )
    );
}

#[test]
fn helm_lints_the_chart_strictly_with_every_value_set() {
    let chart = chart_dir();
    for overrides in VALUE_SETS {
        let dir = tempfile::tempdir().expect("tempdir");
        let values = dir.path().join("values.yaml");
        std::fs::write(&values, overrides).expect("write");
        let out = helm(&[
            "lint",
            "--strict",
            "--kube-version",
            KUBE_VERSION,
            chart.to_str().expect("path"),
            "--values",
            values.to_str().expect("path"),
        ]);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
        // Every value set renders objects that the shared checks accept (a root speaker has a
        // test of its own).
        let docs = chart_with(overrides);
        if overrides != ROOT_SPEAKER_VALUES {
            assert_speaker_is_confined(&docs, overrides);
        }
        assert_reconciler_is_hardened(&docs, overrides);
        assert_least_privilege_rbac(&docs, overrides);
    }
}

/// A process killed when dropped (a failing test leaves none behind).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The Secret's files (base64-decoded `data`) written into `dir`.
fn write_secret(docs: &[Node], name: &str, dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let secret = json(object(docs, "Secret", name));
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        let data = secret["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no {key}"));
        std::fs::write(dir.join(key), base64_decode(data)).expect("write");
    }
}

/// The bundled etcd of `values` run for real: every member of the rendered StatefulSet started
/// with its rendered flags and the generated certificates (the pods' DNS names and ports
/// replaced by loopback ones: there is no kubelet here), then the daemons' generated client
/// certificate writes and reads through every member, and a client without one is refused.
fn run_bundled_etcd(values: &str, replicas: usize) {
    let chart = chart_with(values);
    let sts = object(&chart, "StatefulSet", "ferrolb-etcd");
    assert_eq!(
        str_at(sts, &["spec", "replicas"]),
        Some(replicas.to_string().as_str())
    );
    let dir = tempfile::tempdir().expect("tempdir");
    write_secret(
        &chart,
        "ferrolb-etcd-server-tls",
        &dir.path().join("server"),
    );
    write_secret(
        &chart,
        "ferrolb-etcd-client-tls",
        &dir.path().join("client"),
    );
    let ports: Vec<(u16, u16, u16)> = (0..replicas)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let peer_host = |i: usize| format!("ferrolb-etcd-{i}.ferrolb-etcd-peer.ferrolb-system.svc");
    let members: Vec<Killed> = (0..replicas)
        .map(|i| {
            let (client, peer, metrics) = ports[i];
            let mut args: Vec<String> = Vec::new();
            for arg in self::args(sts) {
                let mut arg = arg
                    .replace("$(POD_NAME)", &format!("ferrolb-etcd-{i}"))
                    .replace("0.0.0.0:2379", &format!("127.0.0.1:{client}"))
                    .replace("0.0.0.0:2380", &format!("127.0.0.1:{peer}"))
                    .replace("0.0.0.0:2381", &format!("127.0.0.1:{metrics}"))
                    .replace(
                        "/etc/etcd/tls/",
                        &format!("{}/server/", dir.path().display()),
                    )
                    .replace(
                        "/var/lib/etcd/data",
                        &format!("{}/data-{i}", dir.path().display()),
                    );
                for (j, (c, p, _)) in ports.iter().enumerate() {
                    // localhost is one of the certificate's names, as the pods' names are.
                    arg = arg
                        .replace(&format!("{}:2379", peer_host(j)), &format!("localhost:{c}"))
                        .replace(&format!("{}:2380", peer_host(j)), &format!("localhost:{p}"));
                }
                args.push(arg);
            }
            let log = std::fs::File::create(dir.path().join(format!("etcd-{i}.log"))).expect("log");
            Killed(
                Command::new(ferrolb_testkit::go_bin("etcd").expect("etcd"))
                    .args(&args)
                    .stdout(log.try_clone().expect("log"))
                    .stderr(log)
                    .spawn()
                    .expect("start etcd"),
            )
        })
        .collect();
    let endpoints: Vec<String> = ports
        .iter()
        .map(|(c, _, _)| format!("https://localhost:{c}"))
        .collect();
    let client = dir.path().join("client");
    let etcdctl = |endpoint: &str, args: &[&str]| {
        Command::new(ferrolb_testkit::go_bin("etcdctl").expect("etcdctl"))
            .arg(format!("--endpoints={endpoint}"))
            .arg(format!("--cacert={}", client.join("ca.crt").display()))
            .arg(format!("--cert={}", client.join("tls.crt").display()))
            .arg(format!("--key={}", client.join("tls.key").display()))
            .arg("--command-timeout=2s")
            .args(args)
            .output()
            .expect("run etcdctl")
    };
    let logs = || {
        (0..replicas)
            .map(|i| read(&dir.path().join(format!("etcd-{i}.log"))))
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = etcdctl(&endpoints[0], &["put", "/ferrolb/probe", "written"]);
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bundled etcd never accepted a write: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    for endpoint in &endpoints {
        let out = etcdctl(endpoint, &["get", "/ferrolb/probe", "--print-value-only"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "written",
            "{endpoint}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = etcdctl(&endpoints[0], &["member", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), replicas, "{listed}");
    // Without the client certificate, nothing (client-cert-auth).
    let out = Command::new(ferrolb_testkit::go_bin("etcdctl").expect("etcdctl"))
        .arg(format!("--endpoints={}", endpoints[0]))
        .arg(format!("--cacert={}", client.join("ca.crt").display()))
        .args(["--command-timeout=2s", "get", "/ferrolb/probe"])
        .output()
        .expect("run etcdctl");
    assert!(
        !out.status.success(),
        "a client without a certificate was served"
    );
    drop(members);
}

#[test]
fn the_bundled_etcd_is_a_hardened_statefulset_with_generated_tls_for_its_names() {
    let chart = chart_defaults();
    let sts = object(&chart, "StatefulSet", "ferrolb-etcd");
    let spec = json(sts);
    let pod = &spec["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], "true");
    assert_eq!(pod["automountServiceAccountToken"], "false");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], "true");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], "false");
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(
        pod["volumes"].to_string().contains("emptyDir"),
        "emptyDir by default"
    );
    assert!(spec["spec"]["volumeClaimTemplates"].is_null());
    let preferred =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(
        preferred[0]["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let args = args(sts);
    for expected in [
        "--client-cert-auth",
        "--peer-client-cert-auth",
        "--initial-cluster=ferrolb-etcd-0=https://ferrolb-etcd-0.ferrolb-etcd-peer.ferrolb-system.svc:2380",
    ] {
        assert!(
            args.contains(&expected.to_string()),
            "{expected} in {args:?}"
        );
    }
    let pdb = json(object(&chart, "PodDisruptionBudget", "ferrolb-etcd"));
    assert_eq!(pdb["spec"]["maxUnavailable"], "1");
    let peers = json(object(&chart, "Service", "ferrolb-etcd-peer"));
    assert_eq!(peers["spec"]["clusterIP"], "None");
    assert_eq!(peers["spec"]["publishNotReadyAddresses"], "true");
    // The members' certificate is valid for the client Service and each member's name; the
    // daemons' client certificate is signed by the same CA.
    let dir = tempfile::tempdir().expect("tempdir");
    write_secret(
        &chart,
        "ferrolb-etcd-server-tls",
        &dir.path().join("server"),
    );
    write_secret(
        &chart,
        "ferrolb-etcd-client-tls",
        &dir.path().join("client"),
    );
    let file = |p: &str| dir.path().join(p).to_str().expect("path").to_string();
    for name in [
        "ferrolb-etcd.ferrolb-system.svc",
        "ferrolb-etcd-0.ferrolb-etcd-peer.ferrolb-system.svc",
        "ferrolb-etcd-2.ferrolb-etcd-peer.ferrolb-system.svc.cluster.local",
    ] {
        let ok = openssl(
            &[
                "verify",
                "-CAfile",
                &file("server/ca.crt"),
                "-verify_hostname",
                name,
                &file("server/tls.crt"),
            ],
            b"",
        );
        assert!(String::from_utf8_lossy(&ok).contains(": OK"), "{name}");
    }
    let client = openssl(
        &[
            "verify",
            "-CAfile",
            &file("server/ca.crt"),
            "-purpose",
            "sslclient",
            &file("client/tls.crt"),
        ],
        b"",
    );
    assert!(String::from_utf8_lossy(&client).contains(": OK"));
    // Three members: persistent volumes, strict anti-affinity, every member in the cluster list.
    let ha = chart_with(ETCD_HA_VALUES);
    let sts = json(object(&ha, "StatefulSet", "ferrolb-etcd"));
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "2Gi");
    assert!(
        sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            .is_array()
    );
    let initial = self::args(object(&ha, "StatefulSet", "ferrolb-etcd"))
        .into_iter()
        .find(|a| a.starts_with("--initial-cluster="))
        .expect("--initial-cluster");
    assert_eq!(initial.matches("https://").count(), 3, "{initial}");
    // Own etcd: none of it.
    let own = chart_with(OWN_ETCD_VALUES);
    assert!(
        own.iter()
            .all(|d| !kind_and_name(d).1.contains("ferrolb-etcd")
                || kind_and_name(d) == ("Secret".into(), "ferrolb-etcd-tls".into()))
    );
    assert!(args_of(&own, "DaemonSet", "ferrolb-speaker").contains(
        &"--etcd-endpoints=https://etcd-0.example.com:2379,https://etcd-1.example.com:2379".into()
    ));
    let volumes =
        json(object(&own, "DaemonSet", "ferrolb-speaker"))["spec"]["template"]["spec"]["volumes"]
            .to_string();
    assert!(
        volumes.contains("\"ferrolb-etcd-tls\""),
        "own etcd: the user's client Secret: {volumes}"
    );
}

fn args_of(docs: &[Node], kind: &str, name: &str) -> Vec<String> {
    args(object(docs, kind, name))
}

#[test]
fn the_bundled_etcd_runs_with_its_rendered_flags_and_generated_certificates() {
    run_bundled_etcd("{}\n", 1);
}

#[test]
fn three_bundled_etcd_members_form_a_cluster_over_peer_tls() {
    run_bundled_etcd(ETCD_HA_VALUES, 3);
}

#[test]
fn the_monitoring_objects_scrape_every_component_and_alert_on_exported_metrics() {
    let chart = chart_defaults();
    assert!(
        chart
            .iter()
            .all(|d| !str_at(d, &["apiVersion"])
                .is_some_and(|v| v.starts_with("monitoring.coreos.com"))),
        "off by default"
    );
    assert!(
        !json(object(&chart, "DaemonSet", "ferrolb-speaker"))
            .to_string()
            .contains("prometheus.io/scrape"),
        "no scrape annotations by default"
    );
    let on = chart_with(MONITORING_VALUES);
    for (kind, name, port) in [
        ("DaemonSet", "ferrolb-speaker", "7472"),
        ("Deployment", "ferrolb-reconciler", "7473"),
        ("StatefulSet", "ferrolb-etcd", "2381"),
    ] {
        let annotations =
            &json(object(&on, kind, name))["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{name}");
        assert_eq!(annotations["prometheus.io/port"], port, "{name}");
    }
    let monitor = json(object(&on, "PodMonitor", "ferrolb"));
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchExpressions"][0]["values"],
        serde_json::json!(["speaker", "reconciler", "etcd"])
    );
    // Each component's pods expose one of the endpoints' ports.
    let ports: BTreeSet<String> = monitor["spec"]["podMetricsEndpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["port"].as_str().expect("port").to_string())
        .collect();
    for (kind, name) in [
        ("DaemonSet", "ferrolb-speaker"),
        ("Deployment", "ferrolb-reconciler"),
        ("StatefulSet", "ferrolb-etcd"),
    ] {
        let named = json(container(object(&on, kind, name)))["ports"].to_string();
        assert!(
            ports.iter().any(|p| named.contains(&format!("\"{p}\""))),
            "{name}: {named}"
        );
    }
    let service_monitor = json(object(&on, "ServiceMonitor", "ferrolb"));
    assert!(service_monitor["spec"]["endpoints"].is_array());
    let metrics_service = json(object(&on, "Service", "ferrolb-speaker-metrics"));
    assert_eq!(metrics_service["spec"]["ports"][0]["port"], "7472");
    // The alerts the issue names, each on metrics the daemons export.
    let rule = json(object(&on, "PrometheusRule", "ferrolb"));
    let exported = exported_metrics();
    let mut alerts = BTreeSet::new();
    for r in rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
    {
        alerts.insert(r["alert"].as_str().expect("alert").to_string());
        let expr = r["expr"].as_str().expect("expr");
        for metric in metric_names(expr) {
            assert!(
                exported.contains(&metric),
                "{expr}: {metric} is not exported"
            );
        }
        assert!(r["annotations"]["summary"].is_string());
    }
    // The dashboard, as deploy/grafana has it, for Grafana's sidecar.
    let dashboard = read(&root().join("deploy/grafana/ferrolb-dashboard.json"));
    assert_eq!(
        read(&chart_dir().join("files/grafana/ferrolb-dashboard.json")),
        dashboard,
        "the chart's copy of the dashboard"
    );
    let config_map = json(object(&on, "ConfigMap", "ferrolb-dashboard"));
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        config_map["data"]["ferrolb-dashboard.json"]
            .as_str()
            .map(str::trim),
        Some(dashboard.trim())
    );
    assert_eq!(
        alerts,
        BTreeSet::from(
            [
                "FerrolbAddressUnanswered",
                "FerrolbConfigurationStale",
                "FerrolbPoolExhausted",
                "FerrolbSpeakerLeaseLost"
            ]
            .map(String::from)
        )
    );
}

fn git_variant() -> Vec<Node> {
    chart_with(GIT_VALUES)
}

#[test]
fn the_chart_reads_pools_from_git_with_every_credential_when_asked() {
    let chart = git_variant();
    let deployment = object(&chart, "Deployment", "ferrolb-reconciler");
    let args = args(deployment);
    for expected in [
        "--config-git=ssh://git@git.example.com/infra/pools.git",
        "--git-ref=main",
        "--git-path=.",
        "--git-interval=30s",
        "--git-cache=/var/cache/ferrolb/git",
        "--git-token-file=/etc/ferrolb/git/token",
        "--git-ssh-key=/etc/ferrolb/git/ssh-key",
        "--git-known-hosts=/etc/ferrolb/git/known_hosts",
        "--webhook-secret-file=/etc/ferrolb/git/webhook-secret",
        "--lb-class=example.com/ferrolb",
    ] {
        assert!(
            args.contains(&expected.to_string()),
            "{expected} in {args:?}"
        );
    }
    assert!(!args.iter().any(|a| a.starts_with("--config=")));
    let volumes = json(at(deployment, &["spec", "template", "spec", "volumes"]).expect("volumes"));
    assert_eq!(volumes[1]["name"], "git-cache");
    assert!(volumes[1]["emptyDir"].is_object());
    assert_reconciler_is_hardened(&chart, "chart (git)");
    assert_least_privilege_rbac(&chart, "chart (git)");
}

/// `openssl ARGS` with `input` on stdin; its stdout, or a panic with its stderr.
fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn base64_decode(text: &str) -> Vec<u8> {
    openssl(&["base64", "-d", "-A"], text.trim().as_bytes())
}

/// The webhook's serving certificate (`tls.crt`, `tls.key`, base64) and the CA bundle the
/// ValidatingWebhookConfiguration trusts are a pair: the certificate is signed by that CA, is
/// valid for the webhook Service's DNS name, and the key is the certificate's.
fn assert_webhook_certificate_is_for_the_service(crt: &str, key: &str, ca_bundle: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.crt");
    let leaf = dir.path().join("tls.crt");
    std::fs::write(&ca, base64_decode(ca_bundle)).expect("write");
    std::fs::write(&leaf, base64_decode(crt)).expect("write");
    let verified = openssl(
        &[
            "verify",
            "-CAfile",
            ca.to_str().expect("path"),
            "-verify_hostname",
            "ferrolb-webhook.ferrolb-system.svc",
            leaf.to_str().expect("path"),
        ],
        b"",
    );
    assert!(String::from_utf8_lossy(&verified).contains(": OK"));
    let cert_key = openssl(
        &[
            "x509",
            "-noout",
            "-pubkey",
            "-in",
            leaf.to_str().expect("path"),
        ],
        b"",
    );
    let own_key = openssl(&["pkey", "-pubout"], &base64_decode(key));
    assert_eq!(cert_key, own_key, "tls.key is the certificate's key");
}

/// The ValidatingWebhookConfiguration's caBundle.
fn ca_bundle(vwc: &Node) -> String {
    let webhook = &json(vwc)["webhooks"][0];
    webhook["clientConfig"]["caBundle"]
        .as_str()
        .expect("caBundle")
        .to_string()
}

#[test]
fn the_chart_reads_pools_from_the_cluster_and_registers_a_webhook_for_only_those_kinds() {
    let chart = chart_with(KUBERNETES_VALUES);
    let deployment = object(&chart, "Deployment", "ferrolb-reconciler");
    let args = args(deployment);
    for expected in [
        "--config=kubernetes",
        "--config-namespace=metallb-system",
        "--admission-listen=0.0.0.0:9443",
        "--admission-cert=/etc/ferrolb/webhook-tls/tls.crt",
        "--admission-key=/etc/ferrolb/webhook-tls/tls.key",
    ] {
        assert!(
            args.contains(&expected.to_string()),
            "{expected} in {args:?}"
        );
    }
    assert!(!args.iter().any(|a| a.starts_with("--state-namespace")));
    assert!(
        !chart
            .iter()
            .any(|d| kind_and_name(d) == ("ConfigMap".into(), "ferrolb-pools".into())),
        "no pools ConfigMap when the pools are objects"
    );
    let vwc = json(object(
        &chart,
        "ValidatingWebhookConfiguration",
        WEBHOOK_CONFIGURATION,
    ));
    let webhook = &vwc["webhooks"][0];
    assert_eq!(webhook["failurePolicy"], "Fail");
    assert_eq!(webhook["sideEffects"], "None");
    assert_eq!(
        webhook["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "metallb-system"
    );
    assert_eq!(
        webhook["rules"],
        serde_json::json!([{
            "apiGroups": ["metallb.io"],
            "apiVersions": ["v1beta1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["ipaddresspools", "l2advertisements"],
            "scope": "Namespaced",
        }])
    );
    let service = &webhook["clientConfig"]["service"];
    assert_eq!(
        (&service["name"], &service["namespace"], &service["path"]),
        (
            &serde_json::json!("ferrolb-webhook"),
            &serde_json::json!("ferrolb-system"),
            &serde_json::json!("/validate")
        )
    );
    let svc = json(object(&chart, "Service", "ferrolb-webhook"));
    assert_eq!(svc["spec"]["ports"][0]["port"], "443");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "webhook");
    let secret = json(object(&chart, "Secret", "ferrolb-webhook-tls"));
    assert_webhook_certificate_is_for_the_service(
        secret["data"]["tls.crt"].as_str().expect("tls.crt"),
        secret["data"]["tls.key"].as_str().expect("tls.key"),
        &ca_bundle(object(
            &chart,
            "ValidatingWebhookConfiguration",
            WEBHOOK_CONFIGURATION,
        )),
    );

    // The choices: another failure policy and state namespace; no webhook; a certificate of
    // one's own (cert-manager's CA injection); and the refusals.
    let other = chart_with(
        "pools:\n  kubernetes:\n    enabled: true\n    namespace: lb\n    webhook:\n      failurePolicy: Ignore\nstate:\n  namespace: ferrolb-system\n",
    );
    let vwc = json(object(
        &other,
        "ValidatingWebhookConfiguration",
        WEBHOOK_CONFIGURATION,
    ));
    assert_eq!(vwc["webhooks"][0]["failurePolicy"], "Ignore");
    assert_eq!(
        vwc["webhooks"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "lb"
    );
    let other_args = self::args(object(&other, "Deployment", "ferrolb-reconciler"));
    assert!(other_args.contains(&"--config-namespace=lb".to_string()));
    assert!(other_args.contains(&"--state-namespace=ferrolb-system".to_string()));
    let off = chart_with(
        "pools:\n  kubernetes:\n    enabled: true\n    webhook:\n      enabled: false\n",
    );
    let webhook_secret = ("Secret".to_string(), "ferrolb-webhook-tls".to_string());
    assert!(off.iter().all(|d| {
        let (kind, name) = kind_and_name(d);
        kind != "ValidatingWebhookConfiguration" && (kind, name) != webhook_secret
    }));
    assert!(
        !self::args(object(&off, "Deployment", "ferrolb-reconciler"))
            .iter()
            .any(|a| a.starts_with("--admission"))
    );
    let own = chart_with(
        "pools:\n  kubernetes:\n    enabled: true\n    webhook:\n      certificate:\n        secretName: my-cert\n        certManagerInjectFrom: ferrolb-system/my-cert\n",
    );
    assert!(own.iter().all(|d| kind_and_name(d) != webhook_secret));
    let vwc = json(object(
        &own,
        "ValidatingWebhookConfiguration",
        WEBHOOK_CONFIGURATION,
    ));
    assert_eq!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "ferrolb-system/my-cert"
    );
    let volumes = json(
        at(
            object(&own, "Deployment", "ferrolb-reconciler"),
            &["spec", "template", "spec", "volumes"],
        )
        .expect("volumes"),
    );
    assert!(
        volumes
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["secret"]["secretName"] == "my-cert")),
        "{volumes}"
    );
    let refused = render(
        "pools:\n  kubernetes:\n    enabled: true\n    webhook:\n      certificate:\n        secretName: my-cert\n",
    )
    .expect_err("a certificate without its CA");
    assert!(
        refused.contains("needs caBundle or certManagerInjectFrom"),
        "{refused}"
    );
    let refused = render("pools:\n  git:\n    enabled: true\n  kubernetes:\n    enabled: true\n")
        .expect_err("two sources");
    assert!(
        refused.contains("choose one source of the pools"),
        "{refused}"
    );
}

/// The values a MetalLB user expects on both workloads: flags and environment the chart has no
/// value for, node selection, pod metadata, pull secrets, priority.
const WORKLOAD_VALUES: &str = r#"
imagePullSecrets: [{name: my-registry}]
reconciler:
  extraArgs: ["--config-quiet=5s"]
  extraEnv: [{name: RUST_BACKTRACE, value: "1"}]
  nodeSelector: {node-role.kubernetes.io/control-plane: ""}
  podAnnotations: {prometheus.io/scrape: "true"}
  podLabels: {team: net}
  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}
  priorityClassName: system-cluster-critical
speaker:
  extraArgs: ["--on-etcd-loss=release", "--interfaces=^eth0$"]
  extraEnv: [{name: RUST_BACKTRACE, value: "1"}]
  podLabels: {team: net}
  logLevel: debug
  logFormat: json
"#;

#[test]
fn the_workloads_take_extra_flags_environment_node_selection_and_pod_metadata() {
    let defaults = chart_defaults();
    for (kind, name) in [
        ("Deployment", "ferrolb-reconciler"),
        ("DaemonSet", "ferrolb-speaker"),
    ] {
        let pod =
            json(at(object(&defaults, kind, name), &["spec", "template", "spec"]).expect("pod"));
        assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux", "{name}");
        assert!(pod["imagePullSecrets"].is_null(), "{name}");
    }
    let chart = chart_with(WORKLOAD_VALUES);
    let reconciler = object(&chart, "Deployment", "ferrolb-reconciler");
    let speaker = object(&chart, "DaemonSet", "ferrolb-speaker");
    let r_args = args(reconciler);
    assert_eq!(r_args.last().map(String::as_str), Some("--config-quiet=5s"));
    let s_args = args(speaker);
    assert!(s_args.ends_with(&[
        "--on-etcd-loss=release".into(),
        "--interfaces=^eth0$".into()
    ]));
    assert!(s_args.contains(&"--log-level=debug".to_string()));
    assert!(s_args.contains(&"--log-format=json".to_string()));
    let r = json(reconciler);
    let r_pod = &r["spec"]["template"];
    assert_eq!(
        r_pod["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert_eq!(r_pod["metadata"]["labels"]["team"], "net");
    assert_eq!(
        r_pod["metadata"]["labels"]["app.kubernetes.io/component"], "reconciler",
        "the selector's labels stay"
    );
    assert_eq!(r_pod["spec"]["imagePullSecrets"][0]["name"], "my-registry");
    // Helm merges maps with the defaults (`kubernetes.io/os: null` would drop that key).
    assert_eq!(
        r_pod["spec"]["nodeSelector"],
        serde_json::json!({"kubernetes.io/os": "linux", "node-role.kubernetes.io/control-plane": ""})
    );
    assert!(r_pod["spec"]["affinity"]["nodeAffinity"].is_object());
    assert!(
        r_pod["spec"]["affinity"]["podAntiAffinity"].is_null(),
        "replaced"
    );
    assert_eq!(
        r_pod["spec"]["priorityClassName"],
        "system-cluster-critical"
    );
    assert_eq!(
        r_pod["spec"]["containers"][0]["env"][0]["name"],
        "RUST_BACKTRACE"
    );
    let sp = json(speaker);
    let env = &sp["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["name"], "NODE_NAME", "{env}");
    assert_eq!(env[1]["name"], "RUST_BACKTRACE", "{env}");
    assert_eq!(
        sp["spec"]["template"]["spec"]["imagePullSecrets"][0]["name"],
        "my-registry"
    );
    assert_speaker_is_confined(&chart, "workload values");
    // Every extra flag is one the daemons have.
    let (speaker_flags, _) = help_flags("ferrolb-speaker");
    let (reconciler_flags, _) = help_flags("ferrolb-reconciler");
    for (flags, given) in [(&speaker_flags, &s_args), (&reconciler_flags, &r_args)] {
        for arg in given.iter() {
            let flag = arg.split('=').next().unwrap_or_default();
            assert!(flags.contains(flag), "{flag}");
        }
    }
}

#[test]
fn the_chart_can_run_the_speaker_as_root_with_only_net_raw_and_no_escalation() {
    let chart = chart_with(ROOT_SPEAKER_VALUES);
    let daemonset = object(&chart, "DaemonSet", "ferrolb-speaker");
    let security = container(daemonset)
        .get("securityContext")
        .expect("securityContext");
    assert_eq!(str_at(security, &["runAsNonRoot"]), Some("false"));
    assert_eq!(
        str_at(security, &["allowPrivilegeEscalation"]),
        Some("false")
    );
    assert_eq!(
        str_at(
            daemonset,
            &["spec", "template", "spec", "securityContext", "runAsUser"]
        ),
        Some("0")
    );
    assert_eq!(strings(at(security, &["capabilities", "drop"])), ["ALL"]);
    assert_eq!(strings(at(security, &["capabilities", "add"])), ["NET_RAW"]);
}

#[test]
fn without_etcd_tls_the_chart_passes_no_certificate_flags_and_mounts_no_secret() {
    let chart = chart_with(NO_TLS_VALUES);
    for (kind, name) in [
        ("Deployment", "ferrolb-reconciler"),
        ("DaemonSet", "ferrolb-speaker"),
    ] {
        let workload = object(&chart, kind, name);
        assert!(
            !args(workload)
                .iter()
                .any(|a| a.starts_with("--etcd-c") || a.starts_with("--etcd-key")),
            "{kind}"
        );
        assert!(
            !json(workload).to_string().contains("ferrolb-etcd-tls"),
            "{kind} still mounts the TLS Secret"
        );
    }
}

#[test]
fn the_dashboard_queries_only_metrics_the_daemons_export_and_covers_the_key_ones() {
    let text = read(&root().join("deploy/grafana/ferrolb-dashboard.json"));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert!(dashboard["title"].is_string());
    assert!(dashboard["uid"].is_string());
    let mut exprs = Vec::new();
    dashboard_exprs(dashboard["panels"].as_array().expect("panels"), &mut exprs);
    let exported = exported_metrics();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no ferrolb metric in {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{expr}: {name} is not exported (exported: {exported:?})"
            );
            used.insert(name);
        }
    }
    for expected in [
        "ferrolb_pool_addresses_in_use",
        "ferrolb_pool_addresses",
        "ferrolb_config_stale",
        "ferrolb_reconciler_leader",
        "ferrolb_speaker_held_addresses",
        "ferrolb_speaker_claims_won_total",
        "ferrolb_speaker_claims_lost_total",
        "ferrolb_speaker_replies_total",
        "ferrolb_speaker_lease_alive",
        "ferrolb_speaker_etcd_errors_total",
        "ferrolb_reconciler_etcd_errors_total",
    ] {
        assert!(used.contains(expected), "no panel shows {expected}");
    }
}

/// The stages of a Dockerfile: `FROM ... AS name` → the lines up to the next `FROM`.
fn stages(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(from) = line.strip_prefix("FROM ") {
            out.extend(current.take());
            let name = from
                .rsplit(" AS ")
                .next()
                .expect("a stage name")
                .to_string();
            current = Some((name, format!("{line}\n")));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out.extend(current);
    out
}

#[test]
fn the_images_cross_build_both_daemons_with_cached_dependencies_and_run_them_non_root() {
    let text = read(&root().join("deploy/docker/Dockerfile"));
    assert!(
        root()
            .join("deploy/docker/Dockerfile.dockerignore")
            .is_file(),
        "BuildKit's per-Dockerfile ignore file"
    );
    let stages = stages(&text);
    assert_eq!(
        stages.keys().map(String::as_str).collect::<Vec<_>>(),
        ["builder", "reconciler", "speaker"]
    );
    // The build runs on the build machine's platform and cross-compiles for amd64 and arm64.
    let builder = &stages["builder"];
    assert!(builder.starts_with("FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS builder"));
    for needed in [
        "amd64) echo x86_64-unknown-linux-gnu",
        "arm64) echo aarch64-unknown-linux-gnu",
        "gcc-aarch64-linux-gnu",
        "libssl-dev:$TARGETARCH",
        "rustup target add",
        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc",
        "PKG_CONFIG_ALLOW_CROSS=1",
        "protobuf-compiler",
        "libprotobuf-dev",
        "--target \"$target\"",
    ] {
        assert!(builder.contains(needed), "builder: {needed}");
    }
    // Cargo's registry and target directory are cache mounts (per architecture): a changed
    // source file does not rebuild every crate.
    assert!(builder.contains("--mount=type=cache,target=/usr/local/cargo/registry"));
    assert!(
        builder.contains("--mount=type=cache,target=/src/target,id=ferrolb-target-$TARGETARCH")
    );
    for binary in ["ferrolb-reconciler", "ferrolb-speaker", "ferrolb"] {
        assert!(
            builder.contains(&format!("-p {binary} --bin {binary}")),
            "builder: {binary}"
        );
    }
    for (daemon, port) in [("reconciler", "7473"), ("speaker", "7472")] {
        let stage = &stages[daemon];
        assert!(stage.starts_with("FROM debian:bookworm-slim"), "{daemon}");
        assert!(stage.contains("ca-certificates"), "{daemon}");
        assert!(
            stage.contains(&format!("ENTRYPOINT [\"/usr/local/bin/ferrolb-{daemon}\"]")),
            "{daemon}"
        );
        assert!(
            stage.contains("USER 65532:65532"),
            "{daemon}: numeric non-root user"
        );
        assert!(stage.contains(&format!("EXPOSE {port}")), "{daemon}");
    }
    let reconciler = &stages["reconciler"];
    assert!(reconciler.contains("libssl3"), "git2 links libssl3");
    assert!(
        reconciler
            .contains("COPY --from=builder /out/ferrolb-reconciler /out/ferrolb /usr/local/bin/"),
        "the reconciler image carries the ferrolb CLI"
    );
    let speaker = &stages["speaker"];
    assert!(speaker.contains("setcap cap_net_raw+ep /usr/local/bin/ferrolb-speaker"));
    assert!(speaker.contains("-perm /6000 -exec chmod a-s"));
    // `make images` builds both targets for both architectures, tagged as the chart expects.
    let script = read(&root().join("scripts/images.sh"));
    assert!(script.contains("linux/amd64,linux/arm64"));
    assert!(script.contains("--target \"$daemon\""));
    assert!(script.contains("ferrolb-$daemon:$version"));
    let values = default_values();
    for daemon in ["reconciler", "speaker"] {
        assert_eq!(
            lookup(&values, &format!(".Values.image.{daemon}.repository")).and_then(Node::as_str),
            Some(format!("ferrolb-{daemon}").as_str())
        );
    }
    let makefile = read(&root().join("Makefile"));
    assert!(makefile.contains("images:") && makefile.contains("./scripts/images.sh"));
}

/// `helm install` of the chart into a real `kube-apiserver` (no kubelet: nothing runs, but every
/// object must be accepted by the server's validation and admission): every variant at once, in
/// one namespace and in a second one (so no two releases may share a name): the defaults (the
/// bundled etcd), your own etcd, three etcd members, Git with every credential, more reconciler
/// replicas, etcd without TLS, the workload values, and the Prometheus Operator's objects (its
/// CRDs installed first); `helm uninstall` removes every object again.
#[test]
fn helm_installs_every_variant_side_by_side_into_a_real_api_server_and_uninstalls_it() {
    let server = ferrolb_testkit::KubeApiServer::start().expect("kube-apiserver");
    let kubeconfig = server.admin_kubeconfig();
    let kubeconfig = kubeconfig.to_str().expect("path");
    let crds = ferrolb_testkit::prometheus_operator_crds().expect("the Prometheus Operator's CRDs");
    server
        .kubectl(["create", "-f", crds.to_str().expect("path")])
        .expect("the Prometheus Operator's CRDs");
    let chart = chart_dir();
    let releases = [
        ("ferrolb", "ferrolb-system", "{}\n"),
        ("ferrolb", "lb", "{}\n"),
        ("ownetcd", "ferrolb-system", OWN_ETCD_VALUES),
        ("etcdha", "ferrolb-system", ETCD_HA_VALUES),
        ("git", "ferrolb-system", GIT_VALUES),
        ("ha", "ferrolb-system", "reconciler:\n  replicas: 3\n"),
        ("notls", "ferrolb-system", NO_TLS_VALUES),
        ("workload", "ferrolb-system", WORKLOAD_VALUES),
        ("monitoring", "ferrolb-system", MONITORING_VALUES),
    ];
    let mut installed = Vec::new();
    for (release, namespace, overrides) in releases {
        let dir = tempfile::tempdir().expect("tempdir");
        let values = dir.path().join("values.yaml");
        std::fs::write(&values, overrides).expect("write");
        // The CRDs are served a moment after they are created.
        let mut result = Err(String::new());
        for _ in 0..50 {
            result = ferrolb_testkit::helm(&[
                "install",
                release,
                chart.to_str().expect("path"),
                "--kubeconfig",
                kubeconfig,
                "--namespace",
                namespace,
                "--create-namespace",
                "--values",
                values.to_str().expect("path"),
            ])
            .map_err(|e| e.to_string());
            if result.is_ok()
                || !result
                    .as_ref()
                    .is_err_and(|e| e.contains("ensure CRDs are installed"))
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        result.unwrap_or_else(|e| panic!("{release} in {namespace}: {e}"));
        let manifest = helm(&[
            "get",
            "manifest",
            release,
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            namespace,
        ]);
        let objects: Vec<(String, String)> = documents(&manifest, "helm get manifest")
            .iter()
            .map(kind_and_name)
            .collect();
        assert!(objects.len() >= 8, "{release}: {objects:?}");
        installed.push((release, namespace, objects));
    }
    for (release, namespace, objects) in &installed {
        for (kind, name) in objects {
            let found = server
                .kubectl([
                    "get",
                    kind.as_str(),
                    name.as_str(),
                    "-n",
                    namespace,
                    "-o",
                    "name",
                ])
                .unwrap_or_else(|e| panic!("{release}: {kind} {name} not in the server: {e}"));
            assert!(!found.trim().is_empty(), "{release}: {kind} {name}");
        }
        let fullname = if release.contains("ferrolb") {
            release.to_string()
        } else {
            format!("{release}-ferrolb")
        };
        let replicas = server
            .kubectl([
                "get",
                "deployment",
                &format!("{fullname}-reconciler"),
                "-n",
                namespace,
                "-o",
                "jsonpath={.spec.replicas}",
            ])
            .expect("deployment");
        let expected = if *release == "ha" { "3" } else { "2" };
        assert_eq!(replicas.trim(), expected, "{release}");
        let has_etcd = objects.iter().any(|(k, _)| k == "StatefulSet");
        assert_eq!(has_etcd, *release != "ownetcd", "{release}: bundled etcd");
    }
    let monitoring = &installed.last().expect("monitoring").2;
    for kind in ["PodMonitor", "ServiceMonitor", "PrometheusRule"] {
        assert!(
            monitoring.iter().any(|(k, _)| k == kind),
            "{kind}: {monitoring:?}"
        );
    }
    for (release, namespace, objects) in &installed {
        helm(&[
            "uninstall",
            release,
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            namespace,
            "--wait",
        ]);
        for (kind, name) in objects {
            let left = server
                .kubectl([
                    "get",
                    kind.as_str(),
                    name.as_str(),
                    "-n",
                    namespace,
                    "--ignore-not-found",
                    "-o",
                    "name",
                ])
                .expect("kubectl get");
            assert!(
                left.trim().is_empty(),
                "{release}: {kind} {name} left behind"
            );
        }
    }
}

/// What a new user does: `helm install` with only a pool in the values. The real API server
/// accepts everything (the bundled etcd with its certificates, the heartbeat key, both
/// daemons), and the pool the reconciler will read, as the server holds it, passes
/// `ferrolb validate --strict` (which reads the ConfigMap manifest itself).
#[test]
fn helm_install_with_only_a_pool_in_the_values_brings_everything_else() {
    let server = ferrolb_testkit::KubeApiServer::start().expect("kube-apiserver");
    let kubeconfig = server.admin_kubeconfig();
    let kubeconfig = kubeconfig.to_str().expect("path");
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("values.yaml");
    let homelab = read(&root().join("examples/pools/homelab.yaml"));
    let indented: String = homelab.lines().map(|l| format!("        {l}\n")).collect();
    std::fs::write(
        &values,
        format!("pools:\n  configMap:\n    data:\n      homelab.yaml: |\n{indented}"),
    )
    .expect("write");
    helm(&[
        "install",
        "ferrolb",
        chart_dir().to_str().expect("path"),
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        "ferrolb-system",
        "--create-namespace",
        "--values",
        values.to_str().expect("path"),
    ]);
    for (kind, name) in [
        ("statefulset", "ferrolb-etcd"),
        ("service", "ferrolb-etcd"),
        ("secret", "ferrolb-etcd-server-tls"),
        ("secret", "ferrolb-etcd-client-tls"),
        ("secret", "ferrolb-heartbeat-key"),
        ("daemonset", "ferrolb-speaker"),
        ("deployment", "ferrolb-reconciler"),
        ("configmap", "ferrolb-pools"),
    ] {
        server
            .kubectl(["get", kind, name, "-n", "ferrolb-system", "-o", "name"])
            .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
    }
    let held = server
        .kubectl([
            "get",
            "configmap",
            "ferrolb-pools",
            "-n",
            "ferrolb-system",
            "-o",
            "yaml",
        ])
        .expect("the pools");
    let file = dir.path().join("pools-configmap.yaml");
    std::fs::write(&file, held).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(["validate", "--strict"])
        .arg(&file)
        .output()
        .expect("run ferrolb validate");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("1 pool (50 IPv4 addresses") && said.contains("1 L2Advertisement"),
        "the pool was read: {said}"
    );
}

/// Where MetalLB's CRDs and pools are installed (as after MetalLB), `helm install` with the
/// pools read from the cluster (CRD installation off, the default) overwrites nothing: the
/// CRDs and the pool keep their uid and resourceVersion. The webhook's generated certificate
/// is for its Service, and `helm upgrade` keeps it, the CA bundle the API server trusts, and
/// the generated heartbeat key.
#[test]
fn helm_installs_beside_metallbs_crds_and_pools_overwriting_nothing_and_upgrades_keep_the_certificate()
 {
    let server = ferrolb_testkit::KubeApiServer::start().expect("kube-apiserver");
    let kubeconfig = server.admin_kubeconfig();
    let kubeconfig = kubeconfig.to_str().expect("path");
    let crds = ferrolb_testkit::metallb_crds().expect("MetalLB's CRDs");
    server
        .kubectl(["apply", "-f", crds.to_str().expect("path")])
        .expect("MetalLB's CRDs");
    server
        .kubectl(["create", "namespace", "metallb-system"])
        .expect("namespace");
    let homelab = root().join("examples/pools/homelab.yaml");
    // The CRDs are served a moment after they are created.
    let mut applied = Err(String::new());
    for _ in 0..50 {
        applied = server
            .kubectl([
                "apply",
                "-n",
                "metallb-system",
                "-f",
                homelab.to_str().expect("path"),
            ])
            .map_err(|e| e.to_string());
        if applied.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    applied.expect("MetalLB's pool");
    let identity = |kind: &str, name: &str, ns: &str| {
        server
            .kubectl([
                "get",
                kind,
                name,
                "-n",
                ns,
                "-o",
                "jsonpath={.metadata.uid} {.metadata.resourceVersion}",
            ])
            .unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
    };
    let objects = [
        ("crd", "ipaddresspools.metallb.io", "default"),
        ("crd", "l2advertisements.metallb.io", "default"),
        ("crd", "configurationstates.metallb.io", "default"),
        ("crd", "servicel2statuses.metallb.io", "default"),
        ("ipaddresspools", "homelab", "metallb-system"),
        ("l2advertisements", "homelab", "metallb-system"),
    ];
    let before: Vec<String> = objects
        .iter()
        .map(|(k, n, ns)| identity(k, n, ns))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, KUBERNETES_VALUES).expect("write");
    let chart = chart_dir();
    let release = |verb: &str| {
        helm(&[
            verb,
            "ferrolb",
            chart.to_str().expect("path"),
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            "ferrolb-system",
            "--create-namespace",
            "--values",
            values.to_str().expect("path"),
        ])
    };
    release("install");
    let after: Vec<String> = objects
        .iter()
        .map(|(k, n, ns)| identity(k, n, ns))
        .collect();
    assert_eq!(before, after, "{objects:?}: nothing overwritten");
    let tls = |key: &str| {
        server
            .kubectl([
                "get",
                "secret",
                "ferrolb-webhook-tls",
                "-n",
                "ferrolb-system",
                "-o",
                &format!("jsonpath={{.data.{}}}", key.replace('.', "\\.")),
            ])
            .expect("the webhook's Secret")
    };
    let served_ca = || {
        server
            .kubectl([
                "get",
                "validatingwebhookconfiguration",
                WEBHOOK_CONFIGURATION,
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ])
            .expect("the webhook's configuration")
    };
    let heartbeat_key = || {
        server
            .kubectl([
                "get",
                "secret",
                "ferrolb-heartbeat-key",
                "-n",
                "ferrolb-system",
                "-o",
                "jsonpath={.data.key}",
            ])
            .expect("the generated heartbeat key")
    };
    let signing = heartbeat_key();
    assert!(base64_decode(&signing).len() >= 32, "{signing}");
    let (crt, key, ca) = (tls("tls.crt"), tls("tls.key"), served_ca());
    assert_eq!(tls("ca.crt"), ca);
    assert_webhook_certificate_is_for_the_service(&crt, &key, &ca);
    release("upgrade");
    assert_eq!(
        (tls("tls.crt"), tls("tls.key"), served_ca()),
        (crt, key, ca),
        "the upgrade kept the certificate"
    );
    assert_eq!(
        heartbeat_key(),
        signing,
        "the upgrade kept the heartbeat key"
    );
    helm(&[
        "uninstall",
        "ferrolb",
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        "ferrolb-system",
        "--wait",
    ]);
    let after: Vec<String> = objects
        .iter()
        .map(|(k, n, ns)| identity(k, n, ns))
        .collect();
    assert_eq!(before, after, "the uninstall kept MetalLB's CRDs and pools");
}
