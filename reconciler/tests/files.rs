//! The reconciler in file mode against a real etcd: pools and Services from watched directories,
//! announcements in etcd, leader election, and the last good configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrolb_testkit::Etcd;

mod common;
use common::Reconciler;

const POOLS: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: lab\nspec:\n  addresses: [10.250.0.100-10.250.0.103]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: lab\n";

fn service(name: &str, created: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  creationTimestamp: \"{created}\"\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n"
    )
}

/// Replaces a file the way editors do: write aside, then rename over.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

struct Files;

impl Files {
    fn start(etcd: &Etcd, pools: &Path, services: &Path, dir: &Path, name: &str) -> Reconciler {
        let a = common::args(&[
            "--config",
            pools.to_str().expect("path"),
            "--services",
            services.to_str().expect("path"),
            "--etcd-endpoints",
            &etcd.endpoints(),
            "--lease-ttl",
            "2",
        ]);
        Reconciler::spawn(&a, dir, name)
    }
}

/// ip → (services, mod_revision) of every announcement.
fn announcements(etcd: &Etcd) -> BTreeMap<String, (Vec<String>, i64)> {
    let out = etcd
        .ctl(&["get", "--prefix", "/ferrolb/announcements/", "-w", "json"])
        .expect("get");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let mut map = BTreeMap::new();
    for kv in v["kvs"].as_array().cloned().unwrap_or_default() {
        let value = decode_b64(kv["value"].as_str().unwrap_or_default());
        let a: serde_json::Value = serde_json::from_slice(&value).expect("announcement json");
        let services = a["services"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        map.insert(
            a["ip"].as_str().unwrap_or_default().to_string(),
            (services, kv["mod_revision"].as_i64().unwrap_or_default()),
        );
    }
    map
}

/// The mod revision of `P/reconciler/config` (0: absent).
fn config_revision(etcd: &Etcd) -> i64 {
    let out = etcd
        .ctl(&["get", "/ferrolb/reconciler/config", "-w", "json"])
        .expect("get");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v["kvs"][0]["mod_revision"].as_i64().unwrap_or(0)
}

fn decode_b64(s: &str) -> Vec<u8> {
    let table = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(table) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn by_service(a: &BTreeMap<String, (Vec<String>, i64)>) -> BTreeMap<String, String> {
    a.iter()
        .flat_map(|(ip, (svcs, _))| svcs.iter().map(move |s| (s.clone(), ip.clone())))
        .collect()
}

fn wait_for<T>(
    what: &str,
    timeout: Duration,
    logs: &dyn Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Setup {
    etcd: Etcd,
    dir: tempfile::TempDir,
    pools: PathBuf,
    services: PathBuf,
}

fn setup() -> Setup {
    let etcd = Etcd::start().expect("etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    let pools = dir.path().join("pools");
    let services = dir.path().join("services");
    std::fs::create_dir_all(&pools).expect("mkdir");
    std::fs::create_dir_all(&services).expect("mkdir");
    write(&pools.join("lab.yaml"), POOLS);
    write(
        &services.join("web.yaml"),
        &service("web", "2026-01-01T00:00:00Z"),
    );
    write(
        &services.join("api.yaml"),
        &service("api", "2026-01-02T00:00:00Z"),
    );
    Setup {
        etcd,
        dir,
        pools,
        services,
    }
}

#[test]
fn services_get_announcements_that_follow_their_files() {
    let s = setup();
    let r = Files::start(&s.etcd, &s.pools, &s.services, s.dir.path(), "r1");
    let logs = || r.log();
    let got = wait_for("two announcements", Duration::from_secs(10), &logs, || {
        let a = by_service(&announcements(&s.etcd));
        (a.len() == 2).then_some(a)
    });
    assert_eq!(got["default/web"], "10.250.0.100", "oldest Service first");
    assert_eq!(got["default/api"], "10.250.0.101");
    std::fs::remove_file(s.services.join("web.yaml")).expect("rm");
    write(
        &s.services.join("db.yaml"),
        &service("db", "2026-01-03T00:00:00Z"),
    );
    let got = wait_for(
        "web withdrawn, db announced",
        Duration::from_secs(5),
        &logs,
        || {
            let a = by_service(&announcements(&s.etcd));
            (a.len() == 2 && a.contains_key("default/db")).then_some(a)
        },
    );
    assert_eq!(got["default/api"], "10.250.0.101", "api keeps its address");
    assert_eq!(
        got["default/db"], "10.250.0.100",
        "db gets the freed lowest address"
    );
    let status = r.status();
    assert_eq!(status["is_leader"], true);
    assert_eq!(status["ready"], true);
    assert_eq!(r.get("/readyz").as_deref(), Some("ready\n"));
    let metrics = r.get("/metrics").expect("metrics");
    assert!(
        metrics.contains(r#"metallb_allocator_addresses_in_use_total{pool="lab"} 2.0"#),
        "{metrics}"
    );
    assert!(metrics.contains("ferrolb_config_stale 0"), "{metrics}");
}

#[test]
fn a_broken_configuration_changes_nothing_and_says_why() {
    let s = setup();
    let r = Files::start(&s.etcd, &s.pools, &s.services, s.dir.path(), "r1");
    let logs = || r.log();
    let before = wait_for("announcements", Duration::from_secs(10), &logs, || {
        let a = announcements(&s.etcd);
        (a.len() == 2).then_some(a)
    });
    write(
        &s.pools.join("lab.yaml"),
        &POOLS.replace("10.250.0.100-10.250.0.103", "10.250.0.100/33"),
    );
    let status = wait_for("the error in etcd", Duration::from_secs(5), &logs, || {
        let v = s.etcd.get_json("/ferrolb/reconciler/config")?;
        v["error"].as_str().map(str::to_string)
    });
    assert!(
        status.contains("lab.yaml:6: error: IPAddressPool \"lab\": invalid prefix length"),
        "{status}"
    );
    assert!(
        r.status()["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid prefix length"))
    );
    assert!(
        r.get("/metrics")
            .is_some_and(|m| m.contains("ferrolb_config_stale 1"))
    );
    assert_eq!(announcements(&s.etcd), before, "nothing written");
    // Deleting the file is a valid change: an empty configuration (no pools at all).
    write(&s.pools.join("lab.yaml"), POOLS);
    wait_for("the error cleared", Duration::from_secs(5), &logs, || {
        r.status()["config_error"].is_null().then_some(())
    });
    assert_eq!(announcements(&s.etcd), before);
}

#[test]
fn a_shrunk_pool_moves_its_services() {
    let s = setup();
    let r = Files::start(&s.etcd, &s.pools, &s.services, s.dir.path(), "r1");
    let logs = || r.log();
    wait_for("announcements", Duration::from_secs(10), &logs, || {
        (announcements(&s.etcd).len() == 2).then_some(())
    });
    write(
        &s.pools.join("lab.yaml"),
        &POOLS.replace("10.250.0.100-10.250.0.103", "10.250.0.102-10.250.0.103"),
    );
    let got = wait_for(
        "both moved into the smaller pool",
        Duration::from_secs(5),
        &logs,
        || {
            let a = by_service(&announcements(&s.etcd));
            (a.values()
                .all(|ip| ip == "10.250.0.102" || ip == "10.250.0.103")
                && a.len() == 2)
                .then_some(a)
        },
    );
    assert_ne!(got["default/web"], got["default/api"]);
    assert!(r.log().contains("address changed"));
}

#[test]
fn a_restart_writes_nothing_when_nothing_changed() {
    let s = setup();
    let mut r = Files::start(&s.etcd, &s.pools, &s.services, s.dir.path(), "r1");
    let logs = || String::new();
    let before = wait_for("announcements", Duration::from_secs(10), &logs, || {
        let a = announcements(&s.etcd);
        (a.len() == 2).then_some(a)
    });
    let config_before = config_revision(&s.etcd);
    assert!(config_before > 0, "the configuration status is written");
    assert!(r.term().success());
    let r2 = Files::start(&s.etcd, &s.pools, &s.services, s.dir.path(), "r2");
    let logs2 = || r2.log();
    wait_for(
        "the new process to lead",
        Duration::from_secs(10),
        &logs2,
        || (r2.status()["is_leader"] == true && r2.status()["ready"] == true).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        announcements(&s.etcd),
        before,
        "same values, same mod revisions\n{}",
        r2.log()
    );
    assert!(!r2.log().contains("announce ip"), "{}", r2.log());
    assert_eq!(
        config_revision(&s.etcd),
        config_before,
        "P/reconciler/config not rewritten"
    );
}

#[test]
fn a_standby_takes_over_a_crashed_leader_and_moves_nothing() {
    let s = setup();
    let mut a = Files::start(&s.etcd, &s.pools, &s.services, s.dir.path(), "a");
    let logs = || a_log(&s);
    let before = wait_for("announcements", Duration::from_secs(10), &logs, || {
        let x = announcements(&s.etcd);
        (x.len() == 2).then_some(x)
    });
    let mut b = Files::start(&s.etcd, &s.pools, &s.services, s.dir.path(), "b");
    wait_for("b ready as standby", Duration::from_secs(10), &logs, || {
        (b.status()["ready"] == true && b.status()["is_leader"] == false).then_some(())
    });
    let _ = a.child.kill();
    let killed = Instant::now();
    wait_for("b to lead", Duration::from_secs(2 + 1 + 1), &logs, || {
        (b.status()["is_leader"] == true).then_some(())
    });
    assert!(
        killed.elapsed() < Duration::from_secs(2 + 1),
        "took over in {:?}",
        killed.elapsed()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        announcements(&s.etcd),
        before,
        "nothing moved or was rewritten"
    );
    write(
        &s.services.join("db.yaml"),
        &service("db", "2026-01-03T00:00:00Z"),
    );
    wait_for(
        "the new leader to write",
        Duration::from_secs(5),
        &logs,
        || (announcements(&s.etcd).len() == 3).then_some(()),
    );
    assert!(b.term().success());
}

fn a_log(s: &Setup) -> String {
    ["a", "b"]
        .iter()
        .map(|n| std::fs::read_to_string(s.dir.path().join(format!("{n}.log"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

#[test]
fn a_configmap_style_symlink_swap_is_applied() {
    let etcd = Etcd::start().expect("etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    let cm = dir.path().join("config");
    let services = dir.path().join("services");
    std::fs::create_dir_all(cm.join("..v1")).expect("mkdir");
    std::fs::create_dir_all(&services).expect("mkdir");
    std::fs::write(cm.join("..v1/pools.yaml"), POOLS).expect("write");
    std::os::unix::fs::symlink("..v1", cm.join("..data")).expect("link");
    std::os::unix::fs::symlink("..data/pools.yaml", cm.join("pools.yaml")).expect("link");
    write(
        &services.join("web.yaml"),
        &service("web", "2026-01-01T00:00:00Z"),
    );
    let r = Files::start(&etcd, &cm, &services, dir.path(), "r1");
    let logs = || r.log();
    wait_for("web announced", Duration::from_secs(10), &logs, || {
        let a = by_service(&announcements(&etcd));
        (a.get("default/web").map(String::as_str) == Some("10.250.0.100")).then_some(())
    });
    // What kubelet does: new directory, new ..data link renamed over the old one.
    std::fs::create_dir_all(cm.join("..v2")).expect("mkdir");
    std::fs::write(
        cm.join("..v2/pools.yaml"),
        POOLS.replace("10.250.0.100-10.250.0.103", "10.250.0.110-10.250.0.113"),
    )
    .expect("write");
    std::os::unix::fs::symlink("..v2", cm.join("..data_tmp")).expect("link");
    std::fs::rename(cm.join("..data_tmp"), cm.join("..data")).expect("swap");
    std::fs::remove_dir_all(cm.join("..v1")).expect("rm old");
    wait_for(
        "web moved into the new pool",
        Duration::from_secs(8),
        &logs,
        || {
            let a = by_service(&announcements(&etcd));
            (a.get("default/web").map(String::as_str) == Some("10.250.0.110")).then_some(())
        },
    );
}

#[test]
fn a_service_asking_for_a_non_address_keeps_its_address_and_says_why() {
    let s = setup();
    let r = Files::start(&s.etcd, &s.pools, &s.services, s.dir.path(), "r1");
    let logs = || r.log();
    let before = wait_for("announcements", Duration::from_secs(10), &logs, || {
        let a = announcements(&s.etcd);
        (a.len() == 2).then_some(a)
    });
    write(
        &s.services.join("web.yaml"),
        &service("web", "2026-01-01T00:00:00Z").replace(
            "  type: LoadBalancer\n",
            "  type: LoadBalancer\n  loadBalancerIP: banana\n",
        ),
    );
    let error = wait_for(
        "the Service error in /status",
        Duration::from_secs(5),
        &logs,
        || r.status()["services_error"].as_str().map(str::to_string),
    );
    assert!(
        error.contains("web.yaml:9: error: Service \"web\"")
            && error.contains("spec.loadBalancerIP: \"banana\" is not an IP address"),
        "{error}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        announcements(&s.etcd),
        before,
        "web's address stays announced\n{}",
        r.log()
    );
    assert!(!r.log().contains("withdraw"), "{}", r.log());
}

/// Two pools in one file, `lab` last: without it, Services move to `spare`.
const TWO_POOLS: &str = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: all\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: spare\nspec:\n  addresses: [10.250.0.110-10.250.0.113]\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: lab\nspec:\n  addresses: [10.250.0.100-10.250.0.103]\n";

#[test]
fn a_pool_file_written_slowly_in_place_moves_nothing() {
    use std::io::Write as _;
    let s = setup();
    write(&s.pools.join("lab.yaml"), TWO_POOLS);
    let r = Files::start(&s.etcd, &s.pools, &s.services, s.dir.path(), "r1");
    let logs = || r.log();
    let before = wait_for("announcements", Duration::from_secs(10), &logs, || {
        let a = by_service(&announcements(&s.etcd));
        (a.len() == 2).then_some(a)
    });
    assert_eq!(before["default/web"], "10.250.0.100");
    // A slow writer rewrites the file in place: the first part (without the lab pool, valid
    // on its own), a pause, then the rest.
    let (first, rest) = TWO_POOLS.split_at(TWO_POOLS.rfind("---\napiVersion").expect("split") + 4);
    let mut f = std::fs::File::create(s.pools.join("lab.yaml")).expect("open");
    f.write_all(first.as_bytes()).expect("write");
    f.sync_all().expect("sync");
    std::thread::sleep(Duration::from_millis(300));
    f.write_all(rest.as_bytes()).expect("write");
    drop(f);
    // Watch well past the quiet period: the Services never leave their pool.
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        assert_eq!(
            by_service(&announcements(&s.etcd)),
            before,
            "a half-written file moved a Service\n{}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!r.log().contains("address changed"), "{}", r.log());
    // A real change still applies once it has stayed the same for the quiet period.
    write(&s.pools.join("lab.yaml"), first);
    let got = wait_for("both moved to spare", Duration::from_secs(8), &logs, || {
        let a = by_service(&announcements(&s.etcd));
        (a.len() == 2 && a.values().all(|ip| ip.starts_with("10.250.0.11"))).then_some(a)
    });
    assert_eq!(got["default/web"], "10.250.0.110");
    let log = r.log();
    assert!(
        log.contains("address changed: default/web 10.250.0.100 -> 10.250.0.110")
            && log.contains("WARN"),
        "{log}"
    );
}

#[test]
fn a_revision_too_slow_to_validate_is_refused_while_leadership_and_health_go_on() {
    let s = setup();
    let a = common::args(&[
        "--config",
        s.pools.to_str().expect("path"),
        "--services",
        s.services.to_str().expect("path"),
        "--etcd-endpoints",
        &s.etcd.endpoints(),
        "--lease-ttl",
        "2",
        "--validation-timeout",
        "300ms",
        "--config-quiet",
        "0s",
    ]);
    let r = Reconciler::spawn(&a, s.dir.path(), "r1");
    let logs = || r.log();
    r.wait(
        "leading with the first revision",
        Duration::from_secs(10),
        |v| v["is_leader"] == true && v["ready"] == true,
    );
    let first = r.status()["revision"].clone();
    let leader = s
        .etcd
        .ctl(&["get", "/ferrolb/reconciler/leader", "-w", "json"])
        .expect("get");
    let lease = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json).expect("json")["kvs"][0]["lease"].as_i64()
    };
    let lease_before = lease(&leader);
    assert!(lease_before.is_some());
    // About 4 MB of pool entries: far more than 300 ms of reading and validating.
    let mut big = POOLS.to_string();
    big.push_str("---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: big\nspec:\n  addresses:\n");
    let mut i = 0u32;
    while big.len() < 4_000_000 {
        big.push_str(&format!(
            "  - 10.{}.{}.{}/32\n",
            1 + (i >> 16) % 200,
            (i >> 8) & 255,
            i & 255
        ));
        i += 1;
    }
    write(&s.pools.join("big.yaml"), &big);
    let error = wait_for(
        "the slow revision refused",
        Duration::from_secs(20),
        &logs,
        || r.status()["config_error"].as_str().map(str::to_string),
    );
    assert!(error.contains("took longer than 300ms"), "{error}");
    // While the validation keeps its thread, the listener answers and the lease is renewed:
    // the leader key stays on the same lease for well over its TTL.
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        assert_eq!(
            r.get("/healthz").map(|_| ()),
            Some(()),
            "/healthz\n{}",
            r.log()
        );
        let status = r.status();
        assert_eq!(status["is_leader"], true, "{status}\n{}", r.log());
        assert_eq!(status["revision"], first, "the revision in force stays");
        let now = s
            .etcd
            .ctl(&["get", "/ferrolb/reconciler/leader", "-w", "json"])
            .expect("get");
        assert_eq!(
            lease(&now),
            lease_before,
            "the leader key lapsed\n{}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `--log-format json` writes one JSON object per line; the default text format, written to a
/// file as in `kubectl logs`, carries no colour codes; `--log-level debug` shows debug lines.
#[test]
fn logs_are_json_lines_when_asked_and_plain_text_without_colour_codes() {
    let s = setup();
    let start = |name: &str, extra: &[&str]| {
        let mut a = common::args(&[
            "--config",
            s.pools.to_str().expect("path"),
            "--services",
            s.services.to_str().expect("path"),
            "--etcd-endpoints",
            &s.etcd.endpoints(),
            "--lease-ttl",
            "2",
        ]);
        a.extend(common::args(extra));
        let r = Reconciler::spawn(&a, s.dir.path(), name);
        r.wait("ready", Duration::from_secs(10), |v| v["ready"] == true);
        r
    };
    let json = start("json", &["--log-format", "json", "--log-level", "debug"]);
    let log = json.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "nothing logged");
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["fields"].is_object())
    );
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "--log-level debug: {log}"
    );
    drop(json);
    let text = start("text", &[]);
    let log = text.log();
    assert!(log.contains(" INFO "), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a file: {log:?}");
    assert!(!log.contains("DEBUG"), "info by default: {log}");
}

/// `/status` carries what `ferrolb status` shows (for `ferrolb status --reconciler`, no etcd
/// certificate needed): the announcements with their holders and the live speakers, as every
/// replica's view of etcd has them, and the configuration in force.
#[test]
fn the_status_endpoint_carries_the_cluster_view_ferrolb_status_shows() {
    let s = setup();
    let r = Files::start(&s.etcd, &s.pools, &s.services, s.dir.path(), "r1");
    let logs = || r.log();
    wait_for("announcements", Duration::from_secs(10), &logs, || {
        (announcements(&s.etcd).len() == 2).then_some(())
    });
    let lease = s.etcd.ctl(&["lease", "grant", "600"]).expect("grant");
    let lease = lease
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    let on_lease = format!("--lease={lease}");
    s.etcd
        .ctl(&[
            "put",
            &on_lease,
            "/ferrolb/speakers/node1",
            r#"{"node":"node1","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01"}]}"#,
        ])
        .expect("register");
    s.etcd
        .ctl(&[
            "put",
            &on_lease,
            "/ferrolb/claims/10.250.0.100",
            r#"{"node":"node1","interfaces":["eth0"],"since":"2026-12-03T10:00:00Z"}"#,
        ])
        .expect("claim");
    s.etcd
        .ctl(&["put", "/ferrolb/claims/10.250.0.250", "not json"])
        .expect("a broken claim");
    r.wait(
        "the claim in the cluster view",
        Duration::from_secs(5),
        |v| {
            let cluster = &v["cluster"];
            let held = cluster["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["ip"] == "10.250.0.100"));
            held.is_some_and(|a| a["node"] == "node1" && a["services"][0] == "default/web")
                && cluster["speakers"][0]["node"] == "node1"
                && cluster["unreadable"].as_array().is_some_and(|u| {
                    u.iter()
                        .any(|e| e.as_str().is_some_and(|e| e.contains("10.250.0.250")))
                })
        },
    );
    let v = r.status();
    let cluster = &v["cluster"];
    assert!(cluster["leader"].is_string(), "{v}");
    assert!(cluster["config"]["revision"].is_string(), "{v}");
    let unheld = cluster["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["ip"] == "10.250.0.101"))
        .expect("the second address");
    assert!(unheld["node"].is_null(), "nobody answers it: {unheld}");
    // Deserialized as the CLI does.
    let typed: ferrolb_core::status::ClusterStatus =
        serde_json::from_value(cluster.clone()).expect("a ClusterStatus");
    assert_eq!(typed.addresses.len(), 2);
}
