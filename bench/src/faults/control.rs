//! The scenarios about the reconciler: its leader killed (6), faults of the pool repository
//! (7), and of the Kubernetes API (8).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_testkit::Etcd;
use ferrolb_testkit::kubeapi::{FakeApiServer, Matcher};
use serde_json::{Value, json};

use super::{Outcome, Settings, TTL, World, pairs, pools, services};
use crate::procstat::memory_kib;

fn now() -> f64 {
    crate::unix_now()
}

fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// The leader key's `<hostname>/<pid>`, as its pid.
fn leader_pid(w: &World) -> Option<u32> {
    let v = w
        .ctl(&["get", "/ferrolb/reconciler/leader", "--print-value-only"])
        .ok()?;
    v.trim().rsplit('/').next()?.parse().ok()
}

/// Every announcement's key and modification revision: a rewrite shows even when the value is
/// the same.
fn revisions(w: &World) -> anyhow::Result<BTreeMap<String, String>> {
    let out = w.ctl(&["get", "--prefix", "/ferrolb/announcements/", "-w", "fields"])?;
    let mut map = BTreeMap::new();
    let mut key = None;
    for line in out.lines() {
        if let Some(k) = line.strip_prefix("\"Key\" : ") {
            key = Some(k.trim_matches('"').to_string());
        } else if let (Some(r), Some(k)) = (line.strip_prefix("\"ModRevision\" : "), key.take()) {
            map.insert(k, r.trim().to_string());
        }
    }
    Ok(map)
}

/// Scenario 6: the reconciler leader is killed; the standby takes over and changes nothing.
pub fn reconciler_leader_killed(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(6);
    let mut w = World::start(s, false, 2)?;
    let start = Instant::now();
    let pid = loop {
        if let Some(p) = leader_pid(&w) {
            break p;
        }
        if start.elapsed() > Duration::from_secs(15) {
            bail!("no reconciler leader\n{}", w.logs());
        }
        sleep(Duration::from_millis(100));
    };
    let k = w
        .reconcilers
        .iter()
        .position(|r| r.pid() == pid)
        .context("the leader is none of the replicas")?;
    // Let the leader finish its first pass.
    sleep(Duration::from_secs(2));
    let anns = w.prefix("announcements")?;
    let revs = revisions(&w)?;
    let t_kill = now();
    w.reconcilers[k].kill()?;
    let standby = w.reconcilers[1 - k].pid();
    let mut expired = None;
    let took = loop {
        let current = leader_pid(&w);
        if current.is_none() && expired.is_none() {
            expired = Some((now() - t_kill) * 1000.0);
        }
        if current == Some(standby) {
            break (now() - t_kill) * 1000.0;
        }
        if now() - t_kill > 15.0 {
            bail!("the standby did not take over\n{}", w.logs());
        }
        sleep(Duration::from_millis(20));
    };
    let bound = f64::from(TTL) * 1000.0 + 1000.0;
    o.figure(format!(
        "standby leader {took:.0} ms after the kill (bound {bound:.0} ms); the killed leader's \
         key gone (its lease expired) after {}",
        expired.map_or_else(|| "n/a".to_string(), |e| format!("{e:.0} ms"))
    ));
    o.check(took <= bound, || {
        format!("the standby took over after {took:.0} ms")
    });
    // Give the new leader time to reconcile (and to write, were it to write anything).
    sleep(Duration::from_secs(3));
    let after = w.prefix("announcements")?;
    let revs_after = revisions(&w)?;
    let changed = anns
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .count()
        + after.keys().filter(|k| !anns.contains_key(*k)).count();
    let rewritten = revs
        .iter()
        .filter(|(k, r)| revs_after.get(*k) != Some(r))
        .count();
    o.lost = changed + rewritten;
    o.figure(format!(
        "announcements changed: {changed}, rewritten: {rewritten} (of {})",
        anns.len()
    ));
    o.check(changed + rewritten == 0, || {
        format!("{changed} announcements changed and {rewritten} were rewritten")
    });
    w.measure(&mut o, t_kill, now(), &BTreeMap::new())?;
    let longest = o.longest_unanswered_ms.unwrap_or(f64::INFINITY);
    o.check(longest <= super::CONTINUOUS_MS, || {
        format!("an address went unanswered for {longest:.0} ms")
    });
    Ok(o)
}

/// A process killed when dropped, its stderr in a file.
struct Proc {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Proc {
    fn reconciler(s: &Settings, args: &[&str], dir: &Path) -> anyhow::Result<Proc> {
        let port = free_port()?;
        let log = dir.join("reconciler.log");
        let child = Command::new(s.exe("ferrolb-reconciler"))
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("ferrolb-reconciler")?;
        Ok(Proc { child, log, port })
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn status(&self) -> Value {
        let url = format!("http://127.0.0.1:{}/status", self.port);
        Command::new("curl")
            .args(["-sf", "--max-time", "2", &url])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(20).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Waits until `/status` satisfies `pred`; returns it.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let start = Instant::now();
        loop {
            let st = self.status();
            if pred(&st) {
                return Ok(st);
            }
            if start.elapsed() > timeout {
                bail!(
                    "{what}: not within {timeout:?}; /status {st}\n{}",
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }
}

fn announcements(etcd: &Etcd) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(pairs(&etcd.ctl(&[
        "get",
        "--prefix",
        "/ferrolb/announcements/",
    ])?))
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=faults",
            "-c",
            "user.email=faults@example.invalid",
        ])
        .args(args)
        .output()
        .context("git")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A bare remote and a working clone.
struct Repo {
    remote: PathBuf,
    work: PathBuf,
}

impl Repo {
    fn new(root: &Path) -> anyhow::Result<Repo> {
        let remote = root.join("remote.git");
        let work = root.join("work");
        std::fs::create_dir_all(&remote)?;
        std::fs::create_dir_all(work.join("pools"))?;
        git(&remote, &["init", "-q", "--bare", "-b", "main"])?;
        git(&work, &["init", "-q", "-b", "main"])?;
        git(
            &work,
            &["remote", "add", "origin", remote.to_str().context("path")?],
        )?;
        Ok(Repo { remote, work })
    }

    /// Commits the working tree as it is and pushes it (forced with `force`); the new head.
    fn commit(&self, message: &str, force: bool) -> anyhow::Result<String> {
        git(&self.work, &["add", "-A"])?;
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        )?;
        let mut push = vec!["push", "-q", "origin", "HEAD:main"];
        if force {
            push.push("-f");
        }
        git(&self.work, &push)?;
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn write(&self, file: &str, text: &[u8]) -> anyhow::Result<()> {
        Ok(std::fs::write(self.work.join("pools").join(file), text)?)
    }

    fn remove(&self, file: &str) -> anyhow::Result<()> {
        Ok(std::fs::remove_file(self.work.join("pools").join(file))?)
    }
}

/// The YAML alias bomb: nine levels of nine references.
fn alias_bomb() -> String {
    let mut text = String::from("a0: &a0 [\"lol\"]\n");
    for level in 1..=9 {
        let refs = vec![format!("*a{}", level - 1); 9].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    text
}

/// Scenario 7: faults of the pool repository.
pub fn repository_faults(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(7);
    let etcd = Etcd::start()?;
    let root = tempfile::tempdir()?;
    let repo = Repo::new(root.path())?;
    let svc_dir = root.path().join("services");
    std::fs::create_dir_all(&svc_dir)?;
    std::fs::write(svc_dir.join("services.yaml"), services(20))?;
    let good = pools("10.250.7.100-10.250.7.199");
    repo.write("lab.yaml", good.as_bytes())?;
    let mut head = repo.commit("pools", false)?;
    let url = format!("file://{}", repo.remote.display());
    let endpoints = etcd.endpoints();
    let cache = root.path().join("cache");
    let mut r = Proc::reconciler(
        s,
        &[
            "--config-git",
            &url,
            "--git-ref",
            "main",
            "--git-path",
            "pools",
            "--git-interval",
            "1s",
            "--git-cache",
            cache.to_str().context("path")?,
            "--services",
            svc_dir.to_str().context("path")?,
            "--etcd-endpoints",
            &endpoints,
            "--lease-ttl",
            "2",
        ],
        root.path(),
    )?;
    let wait_for = Duration::from_secs(20);
    let h = head.clone();
    r.wait("the first commit in force", wait_for, |st| {
        st["revision"] == h.as_str() && st["config_error"].is_null()
    })?;
    let start = Instant::now();
    let anns = loop {
        let a = announcements(&etcd)?;
        if a.len() == 20 {
            break a;
        }
        if start.elapsed() > wait_for {
            bail!("{} of 20 Services announced\n{}", a.len(), r.log_tail());
        }
        sleep(Duration::from_millis(100));
    };
    let mut changed = 0;
    let mut fault = |o: &mut Outcome, r: &mut Proc, name: &str, error: Option<String>| {
        let now_anns = announcements(&etcd).unwrap_or_default();
        let same = now_anns == anns;
        if !same {
            changed += 1;
        }
        let alive = r.alive();
        o.check(alive, || {
            format!("{name}: the reconciler died\n{}", r.log_tail())
        });
        o.check(same, || format!("{name}: the announcements changed"));
        let shown = error.map_or_else(
            || "(no error)".to_string(),
            |e| {
                let e: String = e.chars().take(110).collect();
                format!("error shown: {e}")
            },
        );
        o.figure(format!("{name}: configuration in force kept; {shown}"));
    };
    let error_of = |st: &Value| st["config_error"].as_str().map(str::to_string);

    // An unreachable remote.
    let gone = root.path().join("remote.gone");
    std::fs::rename(&repo.remote, &gone)?;
    let st = r.wait("the fetch error shown", wait_for, |st| {
        !st["config_error"].is_null()
    })?;
    fault(&mut o, &mut r, "unreachable remote", error_of(&st));
    std::fs::rename(&gone, &repo.remote)?;
    r.wait("the remote back", wait_for, |st| {
        st["config_error"].is_null()
    })?;

    // Broken YAML, a 100 MiB file, an alias bomb: each pushed, then removed again.
    let huge = vec![b'#'; 100 << 20];
    let bomb = alias_bomb();
    let broken: [(&str, &str, &[u8]); 3] = [
        (
            "a commit with broken YAML",
            "broken.yaml",
            b"kind: [unclosed\n  - x: {",
        ),
        ("a file of 100 MiB", "huge.yaml", &huge),
        ("a YAML alias bomb", "bomb.yaml", bomb.as_bytes()),
    ];
    for (name, file, text) in broken {
        repo.write(file, text)?;
        let bad = repo.commit(name, false)?;
        let st = r.wait(name, wait_for, |st| {
            st["config_error"]
                .as_str()
                .is_some_and(|e| e.contains(file))
        })?;
        o.check(st["revision"] == head.as_str(), || {
            format!("{name}: revision {} in force, not {head}", st["revision"])
        });
        fault(&mut o, &mut r, name, error_of(&st));
        let _ = bad;
        repo.remove(file)?;
        head = repo.commit(&format!("revert {name}"), false)?;
        let h = head.clone();
        r.wait("the fix in force", wait_for, |st| {
            st["revision"] == h.as_str() && st["config_error"].is_null()
        })?;
    }

    // A force-push rewriting history (same pools): followed, nothing moves.
    git(
        &repo.work,
        &["commit", "-q", "--amend", "-m", "rewritten history"],
    )?;
    git(&repo.work, &["push", "-q", "-f", "origin", "HEAD:main"])?;
    head = git(&repo.work, &["rev-parse", "HEAD"])?;
    let h = head.clone();
    let st = r.wait("the force-push followed", wait_for, |st| {
        st["revision"] == h.as_str() && st["config_error"].is_null()
    })?;
    fault(
        &mut o,
        &mut r,
        "a force-push rewriting history",
        error_of(&st),
    );

    let (peak, _) = memory_kib(r.child.id())?;
    o.figure(format!(
        "reconciler peak resident memory: {peak} KiB (bound 262144 KiB)"
    ));
    o.check(peak <= 262_144, || {
        format!("the reconciler's peak memory was {peak} KiB")
    });

    // Deleting every pool is a valid change: the addresses are withdrawn, the plan says why.
    repo.remove("lab.yaml")?;
    let empty = repo.commit("remove every pool", false)?;
    r.wait("the empty configuration in force", wait_for, |st| {
        st["revision"] == empty.as_str() && st["config_error"].is_null()
    })?;
    let start = Instant::now();
    while !announcements(&etcd)?.is_empty() {
        if start.elapsed() > wait_for {
            bail!("addresses still announced without pools\n{}", r.log_tail());
        }
        sleep(Duration::from_millis(100));
    }
    let plan = Command::new(s.exe("ferrolb"))
        .args(["plan", "--config"])
        .arg(repo.work.join("pools"))
        .arg("--services")
        .arg(&svc_dir)
        .output()?;
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    let pending = plan.lines().filter(|l| l.contains("svc-")).count();
    o.figure(format!(
        "every pool deleted: applied (a valid change), all 20 addresses withdrawn; `ferrolb plan` \
         lists {pending} Services without an address"
    ));
    o.check(pending == 20, || {
        format!("the plan names {pending} of 20 Services\n{plan}")
    });
    repo.write("lab.yaml", good.as_bytes())?;
    let back = repo.commit("pools again", false)?;
    r.wait("the pools back", wait_for, |st| {
        st["revision"] == back.as_str()
    })?;
    let start = Instant::now();
    loop {
        let a = announcements(&etcd)?;
        if a.len() == 20 {
            let same = a.keys().eq(anns.keys());
            o.figure(format!(
                "pools restored: all 20 Services announced again, {} addresses",
                if same { "the same" } else { "different" }
            ));
            break;
        }
        if start.elapsed() > wait_for {
            bail!("Services not announced again\n{}", r.log_tail());
        }
        sleep(Duration::from_millis(100));
    }
    o.lost = changed;
    o.check(r.alive(), || "the reconciler died at the end".into());
    Ok(o)
}

fn service(k: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{k:03}"), "namespace": "default",
                     "creationTimestamp": format!("2026-01-01T00:{:02}:{:02}Z", k / 60, k % 60)},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}
    })
}

/// Scenario 8: the Kubernetes API fails for a while (500s, then 409 conflicts on status
/// writes, then requests that hang) while Services are created.
pub fn api_faults(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(8);
    let total = Duration::from_secs(if s.long { 60 } else { 15 });
    let phase = total / 3;
    let count = 30;
    let api = FakeApiServer::start()?;
    let etcd = Etcd::start()?;
    let root = tempfile::tempdir()?;
    let pools_dir = root.path().join("pools");
    std::fs::create_dir_all(&pools_dir)?;
    std::fs::write(
        pools_dir.join("lab.yaml"),
        pools("10.250.8.100-10.250.8.199"),
    )?;
    for n in ["n1", "n2"] {
        api.create(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}))
            .map_err(|e| anyhow::anyhow!("node: {e:?}"))?;
    }
    let kubeconfig = api.kubeconfig();
    let endpoints = etcd.endpoints();
    let mut r = Proc::reconciler(
        s,
        &[
            "--config",
            pools_dir.to_str().context("path")?,
            "--services",
            "kubernetes",
            "--kubeconfig",
            kubeconfig.to_str().context("path")?,
            "--etcd-endpoints",
            &endpoints,
            "--lease-ttl",
            "2",
        ],
        root.path(),
    )?;
    r.wait("the reconciler ready", Duration::from_secs(20), |st| {
        !st["revision"].is_null()
    })?;
    let start = Instant::now();
    let phases = [
        "500 for every request",
        "409 for every status write",
        "every request hangs",
    ];
    let mut created = 0;
    for (p, name) in phases.iter().enumerate() {
        api.clear_faults();
        match p {
            0 => api.fail_next(Matcher::any(), 500, usize::MAX),
            1 => api.fail_next(Matcher::new("PATCH", "/status"), 409, usize::MAX),
            _ => api.delay(Matcher::any(), phase),
        }
        o.figure(format!("{:.0} s: {name}", phase.as_secs_f64()));
        let phase_start = Instant::now();
        let per_phase = count / 3;
        for k in 0..per_phase {
            let due = phase.mul_f64(k as f64 / per_phase as f64);
            if let Some(wait) = due.checked_sub(phase_start.elapsed()) {
                sleep(wait);
            }
            api.create(service(p * per_phase + k))
                .map_err(|e| anyhow::anyhow!("create: {e:?}"))?;
            created += 1;
        }
        if let Some(rest) = phase.checked_sub(phase_start.elapsed()) {
            sleep(rest);
        }
    }
    api.clear_faults();
    let faults_over = start.elapsed();
    let ingress = |k: usize| -> Option<String> {
        api.get("services", Some("default"), &format!("svc-{k:03}"))?["status"]["loadBalancer"]
            ["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    };
    let wait_start = Instant::now();
    while (0..created).any(|k| ingress(k).is_none()) {
        if wait_start.elapsed() > Duration::from_secs(60) {
            break;
        }
        sleep(Duration::from_millis(200));
    }
    let recovered = wait_start.elapsed();
    // Time for any duplicate write to happen.
    sleep(Duration::from_secs(5));
    let statuses: BTreeMap<usize, String> = (0..created)
        .filter_map(|k| Some((k, ingress(k)?)))
        .collect();
    let missing = created - statuses.len();
    let mut writes: BTreeMap<String, usize> = BTreeMap::new();
    for rec in api.requests() {
        if rec.method == "PATCH"
            && rec.subresource.as_deref() == Some("status")
            && rec.succeeded()
            && !rec.injected
        {
            *writes.entry(rec.path.clone()).or_default() += 1;
        }
    }
    let twice = writes.values().filter(|n| **n > 1).count();
    let anns = announcements(&etcd)?;
    let announced: Vec<String> = anns
        .values()
        .filter_map(|v| serde_json::from_str::<Value>(v).ok())
        .filter_map(|v| v["ip"].as_str().map(str::to_string))
        .collect();
    let unannounced = statuses
        .values()
        .filter(|ip| !announced.contains(ip))
        .count();
    let mut distinct: Vec<&String> = statuses.values().collect();
    distinct.sort();
    distinct.dedup();
    o.figure(format!(
        "{created} Services created during {:.0} s of faults; all statuses written {:.1} s after \
         the faults ended",
        faults_over.as_secs_f64(),
        recovered.as_secs_f64()
    ));
    o.figure(format!(
        "statuses missing: {missing}; written more than once: {twice}; not announced in etcd: \
         {unannounced}; distinct addresses: {}",
        distinct.len()
    ));
    o.lost = missing + twice + unannounced;
    o.check(missing == 0, || {
        format!("{missing} Services without a status")
    });
    o.check(twice == 0, || {
        format!("{twice} Services' status written more than once")
    });
    o.check(unannounced == 0, || {
        format!("{unannounced} statuses not announced")
    });
    o.check(distinct.len() == statuses.len(), || {
        "an address given twice".into()
    });
    o.check(r.alive(), || {
        format!("the reconciler died\n{}", r.log_tail())
    });
    Ok(o)
}
