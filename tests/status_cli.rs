//! `ferrolb status` reading a real etcd.

use std::process::Command;

use ferrolb_testkit::Etcd;

fn status(etcd: &Etcd, format: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args([
            "status",
            "--etcd-endpoints",
            &etcd.endpoints(),
            "--format",
            format,
        ])
        .output()
        .expect("run ferrolb");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn put(etcd: &Etcd, key: &str, value: &str) {
    etcd.ctl(&["put", key, value]).expect("put");
}

#[test]
fn status_shows_holders_flags_unanswered_addresses_and_pool_use() {
    let etcd = Etcd::start().expect("etcd");
    put(&etcd, "/ferrolb/reconciler/leader", "host-a/17");
    put(
        &etcd,
        "/ferrolb/reconciler/config",
        r#"{"revision":"abc123","applied_at":"2026-11-29T00:00:00Z","error":"pools/lab.yaml:6: error: bad","pools":[{"pool":"lab","family":"IPv4","in_use":"2","total":"4"}]}"#,
    );
    put(
        &etcd,
        "/ferrolb/speakers/node1",
        r#"{"node":"node1","labels":{},"interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01"}]}"#,
    );
    put(
        &etcd,
        "/ferrolb/announcements/10.0.0.1",
        r#"{"ip":"10.0.0.1","services":["default/web"],"nodes":[],"interfaces":[]}"#,
    );
    put(
        &etcd,
        "/ferrolb/announcements/10.0.0.2",
        r#"{"ip":"10.0.0.2","services":["default/api"],"nodes":["node9"],"interfaces":[]}"#,
    );
    put(
        &etcd,
        "/ferrolb/claims/10.0.0.1",
        r#"{"node":"node1","interfaces":["eth0"],"since":"2026-11-29T01:00:00Z"}"#,
    );

    let (code, json) = status(&etcd, "json");
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["leader"], "host-a/17");
    assert_eq!(v["config"]["revision"], "abc123");
    assert_eq!(v["addresses"][0]["node"], "node1");
    assert_eq!(v["addresses"][0]["since"], "2026-11-29T01:00:00Z");
    assert!(v["addresses"][1]["node"].is_null());
    assert_eq!(v["speakers"][0]["node"], "node1");

    let (_, table) = status(&etcd, "table");
    assert!(table.contains("revision abc123"), "{table}");
    assert!(table.contains("NOT in force"), "{table}");
    assert!(table.contains("speakers       node1 (eth0)"), "{table}");
    let unanswered = table
        .lines()
        .find(|l| l.starts_with("10.0.0.2"))
        .expect("row");
    assert!(
        unanswered.contains("!! NOBODY") && unanswered.contains("node9"),
        "{unanswered}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["lab", "IPv4", "2", "4", "[##########..........]"]),
        "{table}"
    );
}

#[test]
fn an_unreachable_etcd_exits_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args([
            "status",
            "--etcd-endpoints",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the state from etcd"));
}
