//! `ferrolb plan` on the examples and on broken inputs.

use std::process::{Command, Output};

fn ferrolb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run ferrolb")
}

fn plan_json(extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "plan",
        "--config",
        "examples/pools",
        "--services",
        "examples/services",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = ferrolb(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON array")
}

fn find<'a>(rows: &'a [serde_json::Value], ns: &str, name: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["namespace"] == ns && r["name"] == name)
        .unwrap_or_else(|| panic!("{ns}/{name} missing"))
}

#[test]
fn examples_plan_as_documented() {
    let rows = plan_json(&[]);
    assert_eq!(rows.len(), 13, "one object per Service document");
    let web = find(&rows, "default", "web");
    assert_eq!(web["state"], "allocated");
    assert_eq!(web["pool"], "homelab");
    assert_eq!(find(&rows, "default", "grafana")["ips"][0], "10.250.0.140");
    assert_eq!(
        find(&rows, "default", "dns-tcp")["ips"],
        find(&rows, "default", "dns-udp")["ips"]
    );
    let copy = find(&rows, "default", "dns-copy");
    assert_eq!(copy["state"], "pending");
    assert!(
        copy["reason"]
            .as_str()
            .is_some_and(|r| r.contains("held by default/dns-tcp"))
    );
    assert_eq!(
        find(&rows, "default", "dual")["ips"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let moved = find(&rows, "default", "old-address");
    assert_eq!(moved["previous_ips"][0], "10.250.9.9");
    assert_ne!(moved["ips"][0], "10.250.9.9");
    assert_eq!(find(&rows, "default", "internal")["state"], "ignored");
    assert_eq!(find(&rows, "default", "cloud")["state"], "ignored");
    assert_eq!(find(&rows, "team-a", "api")["pool"], "team-a");
    assert_eq!(find(&rows, "shop", "frontend")["pool"], "team-b");
    assert_eq!(find(&rows, "marketing", "site")["pool"], "public-web");
}

#[test]
fn lb_class_flag_serves_only_that_class() {
    let rows = plan_json(&["--lb-class", "example.com/cloud-lb"]);
    assert_eq!(find(&rows, "default", "cloud")["state"], "allocated");
    assert_eq!(find(&rows, "default", "web")["state"], "ignored");
}

#[test]
fn table_looks_like_kubectl_get_svc_then_pool_use() {
    let out = ferrolb(&[
        "plan",
        "--config",
        "examples/pools",
        "--services",
        "examples/services",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "EXTERNAL-IP",
            "POOL",
            "STATE",
            "ANNOUNCED-BY",
            "REASON"
        ]
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("default") && l.contains("<pending>") && l.contains("dns-copy"))
    );
    assert!(text.lines().any(|l| l.contains("moved from 10.250.9.9")));
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["homelab", "IPv4", "3", "50", "[#...................]"]),
        "{text}"
    );
}

#[test]
fn invalid_pools_exit_1_with_validate_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: x\nspec:\n  addresses: [10.0.0.0/33]\n").expect("write");
    let out = ferrolb(&[
        "plan",
        "--config",
        dir.path().to_str().expect("path"),
        "--services",
        "examples/services",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("p.yaml:6: error: IPAddressPool \"x\": invalid prefix length")
    );
}

#[test]
fn malformed_service_manifests_exit_1_and_missing_paths_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("s.yaml"),
        "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{port: 0}]\n",
    )
    .expect("write");
    let out = ferrolb(&[
        "plan",
        "--config",
        "examples/pools",
        "--services",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("s.yaml:4: error: Service \"a\""));
    let out = ferrolb(&[
        "plan",
        "--config",
        "examples/pools",
        "--services",
        "/nonexistent/services",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_service_asking_for_a_non_address_exits_1_naming_its_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("web.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: LoadBalancer\n  loadBalancerIP: banana\n",
    )
    .expect("write");
    let out = ferrolb(&[
        "plan",
        "--config",
        "examples/pools",
        "--services",
        dir.path().to_str().expect("path"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("web.yaml:6: error: Service \"web\"")
            && stderr.contains("spec.loadBalancerIP: \"banana\" is not an IP address"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing planned");
}

#[test]
fn plan_shows_which_advertisements_announce_each_address_after_service_selectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = |name: &str, labels: &str, extra: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: shop\n  labels: {{{labels}}}\n  annotations:\n    metallb.io/address-pool: frontends\n{extra}spec:\n  type: LoadBalancer\n  ports:\n    - {{port: 80}}\n"
        )
    };
    let text = [
        svc("storefront", "tier: frontend", ""),
        svc("backoffice", "tier: backend", ""),
        svc(
            "shared-front",
            "tier: frontend",
            "    metallb.io/allow-shared-ip: k\n",
        ),
    ]
    .concat();
    std::fs::write(dir.path().join("svc.yaml"), text).expect("write");
    let services = dir.path().to_string_lossy().into_owned();
    let out = ferrolb(&[
        "plan",
        "--config",
        "examples/pools",
        "--services",
        &services,
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    let front = find(&rows, "shop", "storefront");
    assert_eq!(front["state"], "allocated");
    assert_eq!(
        front["advertisements"],
        serde_json::json!(["frontends-any", "frontends-edge"])
    );
    assert_eq!(
        find(&rows, "shop", "backoffice")["advertisements"],
        serde_json::json!(["frontends-any"])
    );
    let shared = find(&rows, "shop", "shared-front");
    assert_eq!(shared["state"], "pending");
    assert!(
        shared["reason"].as_str().is_some_and(|r| r.contains(
            "L2Advertisement \"frontends-edge\" of pool \"frontends\" selects it by serviceSelectors"
        )),
        "{shared}"
    );
    let table = ferrolb(&[
        "plan",
        "--config",
        "examples/pools",
        "--services",
        &services,
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("backoffice")
                && l.split_whitespace().nth(5) == Some("frontends-any")),
        "{text}"
    );
}
