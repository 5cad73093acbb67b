//! The dependency graph is the architecture: `ferrolb-core` stays pure, and the reconciler and
//! the speaker never depend on each other.

use std::process::Command;

fn normal_deps(package: &str) -> Vec<String> {
    tree(package, &[])
}

/// The crates `package` names in its own `[dependencies]` (and itself).
fn direct_deps(package: &str) -> Vec<String> {
    tree(package, &["--depth", "1"])
}

fn tree(package: &str, extra: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn core_has_no_runtime_network_or_cluster_dependencies() {
    let forbidden = [
        "tokio",
        "kube",
        "kube-client",
        "kube-runtime",
        "k8s-openapi",
        "etcd-client",
        "git2",
        "libc",
        "notify",
        "axum",
        "hyper",
        "tonic",
    ];
    let deps = normal_deps("ferrolb-core");
    assert!(
        deps.iter().any(|d| d == "ferrolb-core"),
        "cargo tree listed the crate: {deps:?}"
    );
    for d in &deps {
        assert!(
            !forbidden.contains(&d.as_str()) && !d.starts_with("pnet"),
            "ferrolb-core must stay pure, but depends on {d}"
        );
    }
}

#[test]
fn reconciler_and_speaker_do_not_depend_on_each_other() {
    assert!(
        !normal_deps("ferrolb-reconciler")
            .iter()
            .any(|d| d == "ferrolb-speaker")
    );
    assert!(
        !normal_deps("ferrolb-speaker")
            .iter()
            .any(|d| d == "ferrolb-reconciler")
    );
}

/// Process start-up, supervision and HTTP live in `ferrolb-daemon`; `ferrolb-etcd` is etcd only
/// (its gRPC client brings an HTTP stack of its own, so only what it names itself is checked).
#[test]
fn the_etcd_crate_holds_no_process_start_up_or_http() {
    let deps = direct_deps("ferrolb-etcd");
    assert!(deps.iter().any(|d| d == "etcd-client"), "listed: {deps:?}");
    for d in [
        "ferrolb-daemon",
        "tracing-subscriber",
        "axum",
        "hyper",
        "hyper-util",
    ] {
        assert!(!deps.iter().any(|x| x == d), "ferrolb-etcd depends on {d}");
    }
    let daemon = normal_deps("ferrolb-daemon");
    assert!(daemon.iter().all(|d| d != "ferrolb-etcd"), "{daemon:?}");
}
