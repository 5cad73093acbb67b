//! The real `kube-apiserver` harness: it starts on its own etcd 3.6, authenticates the admin and
//! the reconciler's token, authorizes by RBAC and records writes in its audit log.

use ferrolb_testkit::{KubeApiServer, RECONCILER_USER};
use serde_json::json;

#[test]
fn a_real_server_authorizes_by_rbac_and_audits_writes() {
    let server = KubeApiServer::start().expect("kube-apiserver");
    // The server made its own namespaces.
    assert!(server.get("namespaces", None, "default").is_some());
    let version = server.kubectl(["version", "-o", "json"]).expect("version");
    assert!(version.contains("\"gitVersion\": \"v1.37"), "{version}");

    let as_reconciler = |args: &[&str]| {
        std::process::Command::new(server.kubectl_path())
            .arg(format!(
                "--kubeconfig={}",
                server.reconciler_kubeconfig().display()
            ))
            .args(args)
            .output()
            .expect("kubectl")
    };
    let denied = as_reconciler(&["get", "services", "-A"]);
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("forbidden") && stderr.contains(RECONCILER_USER),
        "{stderr}"
    );

    server
        .apply(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: read-services}\nrules:\n- apiGroups: ['']\n  resources: [services]\n  verbs: [list]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: read-services}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: read-services}\nsubjects:\n- {kind: ServiceAccount, name: ferrolb-reconciler, namespace: ferrolb-system}\n",
            &[],
        )
        .expect("rbac");
    let allowed = as_reconciler(&["get", "services", "-A", "-o", "name"]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(String::from_utf8_lossy(&allowed.stdout).contains("service/kubernetes"));

    // Writes are counted per user from the audit log.
    server
        .create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))
        .expect("node");
    assert_eq!(server.writes_by("admin", "nodes", None), 1);
    assert_eq!(server.writes_by(RECONCILER_USER, "nodes", None), 0);
    let refused = as_reconciler(&["delete", "node", "n1"]);
    assert!(!refused.status.success());
    assert_eq!(
        server.writes_by(RECONCILER_USER, "nodes", None),
        0,
        "a refused write is not a write"
    );
}
