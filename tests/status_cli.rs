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

/// A lease, as a speaker holds its registration and claims on one.
fn grant(etcd: &Etcd) -> String {
    let out = etcd.ctl(&["lease", "grant", "600"]).expect("grant");
    // "lease 694d77aa9e38260f granted with TTL(600s)"
    out.split_whitespace().nth(1).expect("lease id").to_string()
}

fn put_on(etcd: &Etcd, lease: &str, key: &str, value: &str) {
    etcd.ctl(&["put", &format!("--lease={lease}"), key, value])
        .expect("put on lease");
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
    let lease = grant(&etcd);
    put_on(
        &etcd,
        &lease,
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
    put_on(
        &etcd,
        &lease,
        "/ferrolb/claims/10.0.0.1",
        r#"{"node":"node1","interfaces":["eth0"],"since":"2026-11-29T01:00:00Z"}"#,
    );
    // A claim for a node that never registered, on no lease: it holds the address for nobody.
    put(
        &etcd,
        "/ferrolb/announcements/10.0.0.3",
        r#"{"ip":"10.0.0.3","services":["default/ghosted"],"nodes":[],"interfaces":[]}"#,
    );
    put(
        &etcd,
        "/ferrolb/claims/10.0.0.3",
        r#"{"node":"ghost","interfaces":["eth0"],"since":"2026-11-29T01:00:00Z"}"#,
    );

    let (code, json) = status(&etcd, "json");
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["leader"], "host-a/17");
    assert_eq!(v["config"]["revision"], "abc123");
    assert_eq!(v["addresses"][0]["node"], "node1");
    assert_eq!(v["addresses"][0]["since"], "2026-11-29T01:00:00Z");
    assert!(v["addresses"][1]["node"].is_null());
    assert!(
        v["addresses"][2]["node"].is_null(),
        "nobody answers for 10.0.0.3"
    );
    assert_eq!(v["addresses"][2]["orphaned_claim"], "ghost");
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
    let ghosted = table
        .lines()
        .find(|l| l.starts_with("10.0.0.3"))
        .expect("row");
    assert!(
        ghosted.contains("!! NOBODY") && ghosted.contains("claimed by ghost"),
        "{ghosted}"
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

/// Regression: one range request for the whole prefix passed gRPC's 4 MiB receive limit at some
/// 15,000 addresses, and `ferrolb status` exited 2.
#[test]
fn status_reads_twenty_thousand_announcements() {
    let etcd = Etcd::start().expect("etcd");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoints()], None)
            .await
            .expect("connect");
        let ips: Vec<u32> = (0..20_000).collect();
        // etcd's default --max-txn-ops is 128.
        for chunk in ips.chunks(128) {
            let ops: Vec<etcd_client::TxnOp> = chunk
                .iter()
                .map(|i| {
                    let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
                    etcd_client::TxnOp::put(
                        format!("/ferrolb/announcements/{ip}"),
                        format!(
                            r#"{{"ip":"{ip}","services":["production/frontend-{i}"],"nodes":["worker-a-01","worker-a-02","worker-a-03","worker-b-01","worker-b-02","worker-b-03"],"interfaces":["eth0","bond0.100"]}}"#
                        ),
                        None,
                    )
                })
                .collect();
            c.txn(etcd_client::Txn::new().and_then(ops))
                .await
                .expect("txn");
        }
    });

    let (code, json) = status(&etcd, "json");
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let addresses = v["addresses"].as_array().expect("addresses");
    assert_eq!(addresses.len(), 20_000);
    assert_eq!(v["unreadable"].as_array().map(Vec::len), Some(0));
}

/// A one-connection-at-a-time HTTP server on loopback answering every request with `status`
/// and `body`; the address to give `--reconciler`.
fn serve(status: &'static str, body: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let n = stream.read(&mut request).unwrap_or(0);
            let path_ok = String::from_utf8_lossy(&request[..n]).starts_with("GET /status ");
            let (status, body) = if path_ok {
                (status, body.as_str())
            } else {
                ("404 Not Found", "not found\n")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn status_from(url: &str, format: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .env_remove("FERROLB_ETCD_ENDPOINTS")
        .args(["status", "--reconciler", url, "--format", format])
        .output()
        .expect("run ferrolb");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_reads_a_reconcilers_status_endpoint_without_etcd() {
    // What a reconciler serves: its own fields, and the cluster view.
    let body = serde_json::json!({
        "identity": "r-0",
        "is_leader": true,
        "ready": true,
        "cluster": {
            "config": {"revision": "abc123", "applied_at": "2026-12-03T00:00:00Z", "pools": []},
            "leader": "r-0",
            "speakers": [{"node": "node1", "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01"}]}],
            "addresses": [
                {"ip": "10.0.0.1", "services": ["default/web"], "node": "node1",
                 "interfaces": ["eth0"], "since": "2026-12-03T01:00:00Z", "eligible_nodes": []},
                {"ip": "10.0.0.2", "services": ["default/api"], "node": null,
                 "interfaces": [], "since": null, "eligible_nodes": ["node9"]}
            ],
            "unreadable": []
        }
    })
    .to_string();
    let url = serve("200 OK", body);
    let (code, table, err) = status_from(&url, "table");
    assert_eq!(code, Some(0), "{err}");
    assert!(table.contains("revision abc123"), "{table}");
    let web = table
        .lines()
        .find(|l| l.starts_with("10.0.0.1"))
        .expect("10.0.0.1");
    assert!(
        web.contains("default/web") && web.contains("node1"),
        "{table}"
    );
    let api = table
        .lines()
        .find(|l| l.starts_with("10.0.0.2"))
        .expect("10.0.0.2");
    assert!(
        api.contains("!! NOBODY") && api.contains("node9"),
        "{table}"
    );
    // JSON: the same document the etcd path prints.
    let (code, json, _) = status_from(&format!("{url}/"), "json");
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["addresses"][0]["node"], "node1");
    assert_eq!(v["leader"], "r-0");
}

#[test]
fn status_from_a_reconciler_that_refuses_or_is_not_one_exits_2_with_the_reason() {
    let (code, _, err) = status_from(
        &serve("503 Service Unavailable", "not ready\n".into()),
        "table",
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("503") && err.contains("not ready"), "{err}");
    let (code, _, err) = status_from(&serve("200 OK", "<html>hello</html>".into()), "table");
    assert_eq!(code, Some(2));
    assert!(err.contains("not a reconciler's status"), "{err}");
    let (code, _, err) = status_from(&serve("200 OK", r#"{"identity":"old"}"#.into()), "table");
    assert_eq!(code, Some(2));
    assert!(err.contains("has no cluster view"), "{err}");
    let (code, _, err) = status_from("https://127.0.0.1:1", "table");
    assert_eq!(code, Some(2));
    assert!(err.contains("give an http:// URL"), "{err}");
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let (code, _, err) = status_from(&format!("http://127.0.0.1:{port}"), "table");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("cannot read the state from the reconciler"),
        "{err}"
    );
    // Neither source, or both: refused.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .env_remove("FERROLB_ETCD_ENDPOINTS")
        .arg("status")
        .output()
        .expect("run ferrolb");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reconciler"));
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args([
            "status",
            "--reconciler",
            "http://x",
            "--etcd-endpoints",
            "http://127.0.0.1:1",
        ])
        .output()
        .expect("run ferrolb");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
