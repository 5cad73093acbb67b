//! Scenario 14: etcd wiped while the speakers answer. With Services from Kubernetes, etcd holds
//! only what the cluster rebuilds: announcements come from the Services' status (the reconciler
//! publishes them again), claims and registrations from the speakers' leases. The real
//! `kube-apiserver` (reached from the infrastructure namespace through a forwarded port, as in
//! scenario 13), the reconciler with `--services kubernetes`, three real speakers and the client
//! asking for every address by ARP every 20 ms. The busiest holder is killed and started again
//! first, so that some addresses sit on nodes that are not first in their ranking (claims are
//! sticky), where a rebuild that ranked afresh would move them. Phase 1 deletes every key under
//! the prefix; phase 2 stops etcd, removes its data directory and starts it empty on the same
//! port 3 s later. After each, every address must be announced and claimed again by the node
//! that held it, answered by one MAC at a time and without a gap (`hold`), on the Service's
//! unchanged address; the longest gap in answers is the outage measured.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_testkit::{KubeApiServer, Lab};
use serde_json::json;

use super::kubectl::{reconciler_on, wait_for};
use super::lan::{busiest, wait_moved};
use super::{CONTINUOUS_MS, Outcome, Overall, Settings, Store, TTL, World, node_index};

/// How many LoadBalancer Services.
const SERVICES: usize = 4;
/// The client's ARP round interval: fine enough to measure short outages.
const PROBE: Duration = Duration::from_millis(20);
/// Every address claimed again within this after the wipe (phase 2: after etcd is back).
const RECLAIM_BOUND: Duration = Duration::from_secs(10);
/// The longest gap in answers for any address, per phase: `hold` answers throughout, which the
/// suite counts as no gap over [`CONTINUOUS_MS`] (rounds a loaded two-core machine can lose
/// without any fault); the figure measured is reported.
const OUTAGE_BOUND_MS: f64 = CONTINUOUS_MS;
/// How long etcd stays down in phase 2, longer than the lease TTL.
const ETCD_DOWN: Duration = Duration::from_secs(3);
/// The user whose credentials the reconciler has (`reconciler_on`): Service status writes by it
/// are counted in the API server's audit log.
const ADMIN: &str = "admin";

fn now() -> f64 {
    crate::unix_now()
}

fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// What held before a wipe: each Service's address, each address's holder.
struct Before {
    addresses: BTreeMap<String, Ipv4Addr>,
    holders: BTreeMap<Ipv4Addr, String>,
}

/// The Service's address as its status shows it.
fn ingress(api: &KubeApiServer, name: &str) -> Option<Ipv4Addr> {
    api.get("services", Some("default"), name)?["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()?
        .parse()
        .ok()
}

fn service_name(k: usize) -> String {
    format!("web-{k}")
}

/// The store's revision (a new, empty etcd starts again from 1).
fn revision(w: &World) -> anyhow::Result<i64> {
    let out = w.ctl(&["get", "--prefix", "/ferrolb/", "--limit", "1", "-w", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("etcdctl's JSON")?;
    v["header"]["revision"]
        .as_i64()
        .context("no revision in etcdctl's answer")
}

/// Waits until every address is announced and claimed in etcd; how long that took.
fn wait_rebuilt(w: &World, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let rebuilt = w.prefix("announcements").ok().zip(w.claims().ok());
        if let Some((anns, claims)) = rebuilt
            && w.targets.iter().all(|ip| {
                claims.contains_key(ip)
                    && anns.contains_key(&format!("/ferrolb/announcements/{ip}"))
            })
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("not every address announced and claimed again within {timeout:?}");
        }
        sleep(Duration::from_millis(20));
    }
}

/// One wipe: `wipe` empties etcd and describes what it did; then the checks and figures.
/// Returns what the client saw over the phase.
fn phase(
    o: &mut Outcome,
    w: &mut World,
    api: &KubeApiServer,
    before: &Before,
    label: &str,
    wipe: impl FnOnce(&mut World) -> anyhow::Result<String>,
) -> anyhow::Result<Overall> {
    let writes = api.writes_by(ADMIN, "services", Some("status"));
    let from = now();
    let what = wipe(w)?;
    let wiped = now();
    let rebuilt = wait_rebuilt(w, RECLAIM_BOUND).with_context(|| w.logs())?;
    let settled = w
        .wait_settled(Duration::from_secs(20))
        .with_context(|| w.logs())?;
    let settled_ms = (now() - from) * 1000.0;
    // Past a lease TTL: an old lease that would expire has, and what it took along shows.
    sleep(Duration::from_secs(u64::from(TTL) + 2));
    w.wait_settled(Duration::from_secs(20))
        .with_context(|| w.logs())?;
    let to = now();
    let overall = w.availability(from, to)?;
    let (http_longest, http_failed) = w.http(from, to)?;
    let per_address: Vec<String> = w
        .targets
        .iter()
        .map(|ip| {
            let a = w.seen(|s| s.availability(*ip, from, to, PROBE.as_secs_f64()))?;
            Ok(format!("{ip} {:.0} ms", a.longest_ms))
        })
        .collect::<anyhow::Result<_>>()?;
    let after = w.claims()?;
    let stayed: Vec<Ipv4Addr> = before
        .holders
        .iter()
        .filter(|(ip, n)| after.get(ip) == Some(n))
        .map(|(ip, _)| *ip)
        .collect();
    let moved: Vec<String> = before
        .holders
        .iter()
        .filter(|(ip, _)| !stayed.contains(ip))
        .map(|(ip, n)| {
            format!(
                "{ip} {n} -> {}",
                after.get(ip).map_or("none", String::as_str)
            )
        })
        .collect();
    let changed: Vec<String> = before
        .addresses
        .iter()
        .filter_map(|(name, ip)| {
            let now = ingress(api, name);
            (now != Some(*ip)).then(|| format!("{name}: {ip} -> {now:?}"))
        })
        .collect();
    let status_writes = api.writes_by(ADMIN, "services", Some("status")) - writes;
    o.figure(format!("{label}: {what}"));
    let rebuilt_ms = rebuilt.as_secs_f64() * 1000.0;
    o.figure(format!(
        "{label}: every address announced and claimed again {:.0} ms after the wipe began \
         ({rebuilt_ms:.0} ms after it ended), answered by its holder alone {settled_ms:.0} ms \
         after it began (bound for claims again: {RECLAIM_BOUND:?}, the client's view settled \
         {:.0} ms after the claims)",
        (wiped - from) * 1000.0 + rebuilt_ms,
        settled.as_secs_f64() * 1000.0,
    ));
    o.figure(format!(
        "{label}: longest unanswered {:.0} ms (bound {OUTAGE_BOUND_MS:.0} ms; per address: {}), \
         all unanswered time {:.0} ms, requests answered by two MACs: {}; HTTP: longest outage \
         {http_longest:.0} ms, {http_failed} failed requests",
        overall.longest,
        per_address.join(", "),
        overall.total,
        overall.doubles.len()
    ));
    o.figure(format!(
        "{label}: {} of {} addresses kept their holder{}; Service addresses changed: {}; \
         Service status writes: {status_writes}",
        stayed.len(),
        before.holders.len(),
        if moved.is_empty() {
            String::new()
        } else {
            format!(" (moved: {})", moved.join(", "))
        },
        changed.len()
    ));
    o.check(overall.doubles.is_empty(), || {
        format!(
            "{label}: {} requests answered by two MACs, first for {}",
            overall.doubles.len(),
            overall.doubles[0].0
        )
    });
    o.check(overall.longest <= OUTAGE_BOUND_MS, || {
        format!(
            "{label}: an address went unanswered for {:.0} ms (bound {OUTAGE_BOUND_MS:.0} ms)",
            overall.longest
        )
    });
    // Every node stays up: each holder can keep its addresses, and must.
    o.check(moved.is_empty(), || {
        format!("{label}: addresses changed node: {}", moved.join(", "))
    });
    o.check(changed.is_empty(), || {
        format!("{label}: Service addresses changed: {}", changed.join(", "))
    });
    o.check(status_writes == 0, || {
        format!("{label}: {status_writes} Service status writes (none needed)")
    });
    o.lost += changed.len();
    Ok(overall)
}

/// Scenario 14.
pub fn etcd_wiped(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(14);
    let lab = Lab::new(3)?;
    let etcd = lab.start_etcd()?;
    let api = KubeApiServer::start()?;
    for k in 0..SERVICES {
        api.create(&json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service_name(k), "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}
        }))?;
    }
    let dir = tempfile::tempdir()?;
    let (reconciler, forward) = reconciler_on(s, &lab, &api, dir.path(), &etcd.endpoints(), &[])?;
    let mut w = World {
        lab,
        store: Store::One(etcd),
        speakers: Vec::new(),
        reconcilers: vec![reconciler],
        servers: Vec::new(),
        monitor: None,
        dir,
        settings: s.clone(),
        targets: Vec::new(),
        speaker_args: Vec::new(),
        round: PROBE,
    };
    for i in 1..=3 {
        let sp = w.spawn_speaker(i)?;
        w.speakers.push(Some(sp));
    }
    let mut addresses = BTreeMap::new();
    for k in 0..SERVICES {
        let name = service_name(k);
        let ip = wait_for(
            &format!("{name}'s address"),
            Duration::from_secs(30),
            || ingress(&api, &name),
        )
        .with_context(|| w.logs())?;
        addresses.insert(name, ip);
    }
    w.targets = addresses.values().copied().collect();
    w.serve_http()?;
    w.start_monitor()?;
    w.wait_settled(Duration::from_secs(30))
        .context("the world did not settle")
        .with_context(|| w.logs())?;
    // Claims are sticky: kill the busiest holder so that its addresses move to the next-ranked
    // nodes, and start it again. A rebuild that ranked afresh would move them back.
    let (victim, moved) = busiest(&w)?;
    let vi = node_index(&victim)?;
    w.speaker(vi)?.kill()?;
    wait_moved(&w, &victim, &moved, Duration::from_secs(15))?;
    w.speakers[vi - 1] = Some(w.spawn_speaker(vi)?);
    sleep(Duration::from_secs(2));
    w.wait_settled(Duration::from_secs(20))
        .with_context(|| w.logs())?;
    o.figure(format!(
        "{victim} killed and started again first: {} addresses moved to the next-ranked nodes \
         and stay there (claims are sticky)",
        moved.len()
    ));
    let before = Before {
        holders: w.claims()?,
        addresses,
    };
    let held: Vec<String> = before
        .holders
        .iter()
        .map(|(ip, n)| format!("{ip} on {n}"))
        .collect();
    o.figure(format!(
        "{SERVICES} Services, addresses and holders before: {}",
        held.join(", ")
    ));
    let deleted = phase(&mut o, &mut w, &api, &before, "keys deleted", |w| {
        let n = w.ctl(&["del", "--prefix", "/ferrolb/"])?;
        Ok(format!(
            "every key under /ferrolb/ deleted ({} keys)",
            n.trim()
        ))
    })?;
    let replaced = phase(&mut o, &mut w, &api, &before, "etcd replaced", |w| {
        let old = revision(w)?;
        let Store::One(etcd) = &mut w.store else {
            bail!("one etcd member expected");
        };
        let t = now();
        etcd.stop()?;
        std::fs::remove_dir_all(etcd.data_dir()).context("removing etcd's data directory")?;
        // Down past a lease TTL: every session fails and retries, `hold` answers meanwhile.
        sleep(ETCD_DOWN);
        etcd.restart()?;
        let down = now() - t;
        let new = revision(w)?;
        Ok(format!(
            "etcd stopped, its data directory removed, started empty on the same port: down \
             {down:.1} s (store revision {old} before, {new} just after)"
        ))
    })?;
    o.longest_unanswered_ms = Some(deleted.longest.max(replaced.longest));
    o.total_unanswered_ms = Some(deleted.total + replaced.total);
    o.double_answers = Some(deleted.doubles.len() + replaced.doubles.len());
    drop(w);
    drop(forward);
    Ok(o)
}
