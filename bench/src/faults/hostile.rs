//! The scenarios about the heartbeats' defences: a hostile host on the LAN forging, replaying
//! and flooding heartbeats (11), and a holder whose event loop stalls (12).
//!
//! The hostile host is the client namespace, the same one the monitor asks from. Its frames
//! carry source MACs of its own making, never a node's: a host that sends with a node's MAC
//! steals that MAC's port in the switch's forwarding table, which cuts the node off whatever the
//! heartbeats say (an attack on the LAN, not on ferrolb). Replayed frames are the recorded
//! heartbeats byte for byte after the Ethernet header, so signatures still verify.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_core::wire::MacAddr;
use ferrolb_core::wire::heartbeat::{ETHERTYPE, GROUP, HeartbeatRepr, parse_heartbeat_frame};
use ferrolb_speaker::sys::{RawSocket, enter_netns};
use ferrolb_testkit::Host;

use super::lan::{busiest, moved, takeover_bound_ms, wait_moved};
use super::{CONTINUOUS_MS, Outcome, ROUND, Rng, Settings, World};
use crate::procstat::cpu_seconds;

fn now() -> f64 {
    crate::unix_now()
}

/// The key of the signed half of scenario 11.
const KEY: &str = "ferrolb fault suite heartbeat key\n";
/// The speakers' `--suspect-after` (their default: three 100 ms heartbeat intervals).
const SUSPECT_AFTER_MS: f64 = 300.0;
/// Junk heartbeats sent every millisecond in scenario 11.
const JUNK_PER_MS: usize = 4;
/// The forged and replayed set is sent every this often in scenario 11.
const FORGED_EVERY: Duration = Duration::from_millis(10);

/// The lease each node's registration (`P/speakers/<node>`) is on; nodes not registered are
/// missing.
fn registration_leases(w: &World) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut leases = BTreeMap::new();
    for i in 1..=3 {
        let node = format!("node{i}");
        let out = w.ctl(&["get", &format!("/ferrolb/speakers/{node}"), "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("etcdctl json")?;
        if let Some(lease) = v["kvs"][0]["lease"].as_i64() {
            leases.insert(node, lease);
        }
    }
    Ok(leases)
}

/// The value of the metric line `name` (with its labels, if any) on node `i`'s speaker; `None`
/// when it does not answer within a second or has no such line.
fn metric(w: &World, i: usize, name: &str) -> Option<f64> {
    let text = w
        .lab
        .exec_ok(
            Host::Node(i),
            [
                "curl",
                "-s",
                "--max-time",
                "1",
                "http://127.0.0.1:7472/metrics",
            ],
        )
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The counters scenario 11 reads from every speaker.
const COUNTERS: [(&str, &str); 4] = [
    ("counted", "ferrolb_speaker_heartbeats_heard_total"),
    (
        "ignored: not the current lease",
        "ferrolb_speaker_heartbeats_ignored_total{reason=\"not_current_lease\"}",
    ),
    (
        "ignored: replays",
        "ferrolb_speaker_heartbeats_ignored_total{reason=\"replay\"}",
    ),
    ("refused", "ferrolb_speaker_heartbeats_refused_total"),
];

/// Every counter of [`COUNTERS`] on every speaker (0 when missing).
fn counters(w: &World) -> Vec<[f64; 4]> {
    (1..=3)
        .map(|i| COUNTERS.map(|(_, name)| metric(w, i, name).unwrap_or(0.0)))
        .collect()
}

/// The client's `eth0`: the namespace path and the interface index.
fn client_nic(w: &World) -> anyhow::Result<(PathBuf, u32)> {
    let ifindex = w
        .lab
        .exec_ok(Host::Client, ["cat", "/sys/class/net/eth0/ifindex"])?
        .trim()
        .parse()
        .context("ifindex")?;
    Ok((
        PathBuf::from("/run/netns").join(w.lab.ns(Host::Client)),
        ifindex,
    ))
}

/// Records up to `per_node` heartbeat frames of each of `nodes` from the client's interface,
/// for at most `timeout`, on a thread of its own (it enters the client namespace).
fn capture(
    ns: PathBuf,
    ifindex: u32,
    nodes: BTreeSet<String>,
    per_node: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Vec<u8>>> {
    std::thread::spawn(move || -> anyhow::Result<Vec<Vec<u8>>> {
        enter_netns(&ns)?;
        let sock = RawSocket::open(ifindex, ETHERTYPE)?;
        sock.join_multicast(GROUP.0)?;
        sock.set_blocking(Duration::from_millis(100))?;
        let mut got: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        let mut buf = vec![0u8; 512];
        let end = Instant::now() + timeout;
        while Instant::now() < end
            && nodes
                .iter()
                .any(|n| got.get(n).is_none_or(|f| f.len() < per_node))
        {
            let Ok((n, _)) = sock.recv(&mut buf) else {
                continue;
            };
            let frame = &buf[..n.min(buf.len())];
            if let Ok((_, hb, _)) = parse_heartbeat_frame(frame, None)
                && nodes.contains(&hb.node)
            {
                let frames = got.entry(hb.node).or_default();
                if frames.len() < per_node {
                    frames.push(frame.to_vec());
                }
            }
        }
        Ok(got.into_values().flatten().collect())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the capture thread panicked"))?
}

/// A made-up, locally administered source MAC of the hostile host.
fn forger_mac(k: u16) -> MacAddr {
    let b = k.to_be_bytes();
    MacAddr([0x02, 0xef, 0, 0, b[0], b[1]])
}

/// `frame` with its source MAC replaced by `src`.
fn resent_from(frame: &[u8], src: MacAddr) -> Vec<u8> {
    let mut f = frame.to_vec();
    if let Some(s) = f.get_mut(6..12) {
        s.copy_from_slice(&src.0);
    }
    f
}

/// The forged frames in every holder's name, and what each kind stands for. `leases` are the
/// nodes' current leases; `key` is the speakers' key when they have one.
fn forged_frames(
    leases: &BTreeMap<String, i64>,
    key: Option<&[u8]>,
    recorded: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut k = 0u16;
    let mut push = |node: &str, lease: i64, seq: u64, key: Option<&[u8]>| {
        k += 1;
        let hb = HeartbeatRepr {
            node: node.to_string(),
            lease,
            seq,
            digest: [0; 8],
        };
        out.extend(hb.frame(forger_mac(k), key));
    };
    for (node, &lease) in leases {
        // Unsigned on the current lease, with the highest sequence numbers: counted without a
        // key (a sign of life of a live node), refused with one.
        push(node, lease, u64::MAX, None);
        push(node, lease, u64::MAX - 1, None);
        // Older and made-up leases.
        push(node, lease.wrapping_sub(1), u64::MAX, None);
        push(node, lease.wrapping_sub(2), 7, None);
        push(node, 0x4242_4242, 1, None);
        if let Some(key) = key {
            // Signed with the right key on other leases: what a recording made before a restart
            // would hold. And a wrong key on the current lease.
            push(node, lease.wrapping_sub(1), u64::MAX, Some(key));
            push(node, lease.wrapping_add(1), 1, Some(key));
            push(node, lease, u64::MAX, Some(b"not the key"));
        }
    }
    for (j, f) in recorded.iter().enumerate() {
        out.push(resent_from(f, forger_mac(0x8000 + j as u16)));
    }
    out
}

/// `n` junk heartbeats: random node names, leases and sequence numbers from 256 made-up MACs;
/// with `signed`, half carry a signature made with a wrong key (so the speakers pay for checking
/// it) and half none.
fn junk_frames(n: usize, seed: u64, signed: bool) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .filter_map(|j| {
            let hb = HeartbeatRepr {
                node: format!("junk-{:012x}", rng.below(1 << 48)),
                lease: i64::try_from(rng.below(i64::MAX as u64)).unwrap_or(1),
                seq: rng.below(u64::MAX),
                digest: [0; 8],
            };
            let key = (signed && j % 2 == 0).then_some(&b"junk"[..]);
            hb.frame(forger_mac(0x4000 + (j % 256) as u16), key)
        })
        .collect()
}

/// What the hostile host sent.
#[derive(Debug, Default)]
struct Sent {
    forged: u64,
    junk: u64,
}

/// Sends `junk` round-robin, [`JUNK_PER_MS`] every millisecond, and all of `forged` every
/// [`FORGED_EVERY`], for `seconds`, from the interface `ifindex` of namespace `ns`.
fn attack(
    ns: &Path,
    ifindex: u32,
    forged: &[Vec<u8>],
    junk: &[Vec<u8>],
    seconds: u64,
) -> anyhow::Result<Sent> {
    enter_netns(ns)?;
    let sock = RawSocket::open(ifindex, ETHERTYPE)?;
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut sent = Sent::default();
    let mut next_forged = start;
    let (mut ms, mut j) = (0u64, 0usize);
    while Instant::now() < end {
        for _ in 0..JUNK_PER_MS {
            if let Some(f) = junk.get(j % junk.len().max(1))
                && sock.send(f).is_ok()
            {
                sent.junk += 1;
            }
            j += 1;
        }
        if Instant::now() >= next_forged {
            next_forged += FORGED_EVERY;
            sent.forged += forged.iter().filter(|f| sock.send(f).is_ok()).count() as u64;
        }
        ms += 1;
        let due = start + Duration::from_millis(ms);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(sent)
}

/// Runs `f` and merges what it found into `o`, each figure and failure under `label`.
fn phase(
    o: &mut Outcome,
    label: &str,
    f: impl FnOnce(&mut Outcome) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut p = Outcome::new(o.scenario);
    let result = f(&mut p);
    o.longest_unanswered_ms = match (o.longest_unanswered_ms, p.longest_unanswered_ms) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    o.total_unanswered_ms = match (o.total_unanswered_ms, p.total_unanswered_ms) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    o.double_answers = match (o.double_answers, p.double_answers) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    o.lost += p.lost;
    o.figures
        .extend(p.figures.into_iter().map(|f| format!("{label}: {f}")));
    o.failures
        .extend(p.failures.into_iter().map(|f| format!("{label}: {f}")));
    result.with_context(|| label.to_string())
}

/// Scenario 11: a hostile host on the LAN, first against unsigned heartbeats, then against
/// speakers with `--heartbeat-key-file`.
pub fn hostile_lan_host(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(11);
    let seconds = if s.long { 60 } else { 10 };
    phase(&mut o, "unsigned heartbeats", |p| {
        hostile_run(p, s, None, seconds)
    })?;
    phase(&mut o, "signed heartbeats", |p| {
        hostile_run(p, s, Some(KEY), seconds)
    })?;
    Ok(o)
}

/// One world under the hostile host for `seconds`; `key` is the speakers' heartbeat key.
fn hostile_run(
    o: &mut Outcome,
    s: &Settings,
    key: Option<&str>,
    seconds: u64,
) -> anyhow::Result<()> {
    let mut w = World::start_with(s, false, 1, |dir| {
        let Some(k) = key else {
            return Ok(Vec::new());
        };
        let path = dir.join("heartbeat.key");
        std::fs::write(&path, k)?;
        Ok(vec![
            "--heartbeat-key-file".into(),
            path.to_string_lossy().into_owned(),
        ])
    })?;
    let key_bytes = key.map(|k| k.trim().as_bytes().to_vec());
    let leases = registration_leases(&w)?;
    if leases.len() != 3 {
        bail!("registered leases: {leases:?}");
    }
    let claims = w.claims()?;
    let holders: BTreeSet<String> = claims.values().cloned().collect();
    let (ns, ifindex) = client_nic(&w)?;
    let recorded = capture(
        ns.clone(),
        ifindex,
        holders.clone(),
        3,
        Duration::from_secs(5),
    )?;
    o.check(recorded.len() == 3 * holders.len(), || {
        format!(
            "recorded {} real heartbeats of {} holders (3 each expected)",
            recorded.len(),
            holders.len()
        )
    });
    let holder_leases: BTreeMap<String, i64> = leases
        .iter()
        .filter(|(n, _)| holders.contains(*n))
        .map(|(n, l)| (n.clone(), *l))
        .collect();
    let forged = forged_frames(&holder_leases, key_bytes.as_deref(), &recorded);
    let junk = junk_frames(4096, s.seed, key.is_some());
    let pids: Vec<u32> = (1..=3)
        .map(|i| w.speaker(i).map(|p| p.pid()))
        .collect::<anyhow::Result<_>>()?;
    let cpu0: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(*p))
        .collect::<anyhow::Result<_>>()?;
    let c0 = counters(&w);
    let from = now();
    let sender = {
        let (ns, forged) = (ns.clone(), forged.clone());
        std::thread::spawn(move || attack(&ns, ifindex, &forged, &junk, seconds))
    };
    // Watch etcd while it lasts: a registration on another lease, or a claim on another node.
    let mut changes = Vec::new();
    while !sender.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        if let (Ok(l), Ok(c)) = (registration_leases(&w), w.claims())
            && (l != leases || moved(&claims, &c) > 0)
        {
            changes.push(format!(
                "after {:.1} s: leases {l:?} (were {leases:?}), {} addresses moved",
                now() - from,
                moved(&claims, &c)
            ));
        }
    }
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
    let to = now();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| Ok((cpu_seconds(*p)? - c0) / (to - from) * 100.0))
        .collect::<anyhow::Result<_>>()?;
    // Past a suspicion window and a detection tick: whatever the frames would have ended has.
    std::thread::sleep(Duration::from_secs(1));
    let c1 = counters(&w);
    let leases_after = registration_leases(&w)?;
    let claims_after = w.claims()?;
    w.measure(o, from, to, &BTreeMap::new())?;
    o.figure(format!(
        "{:.1} s from the client: {} forged and replayed frames ({} kinds in the holders' names, \
         {} of them recorded real heartbeats, every {} ms) and {} junk heartbeats from made-up \
         nodes ({:.0} frames a second in all)",
        to - from,
        sent.forged,
        forged.len(),
        recorded.len(),
        FORGED_EVERY.as_millis(),
        sent.junk,
        (sent.forged + sent.junk) as f64 / (to - from)
    ));
    let totals: Vec<String> = COUNTERS
        .iter()
        .enumerate()
        .map(|(k, (what, _))| {
            let d: f64 = c1.iter().zip(&c0).map(|(a, b)| a[k] - b[k]).sum();
            format!("{what} {d:.0}")
        })
        .collect();
    o.figure(format!(
        "heartbeats the three speakers saw meanwhile: {}",
        totals.join(", ")
    ));
    o.figure(format!(
        "speakers' CPU under it: {} % of a core",
        cpu.iter()
            .map(|c| format!("{c:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    ));
    // Every speaker saw the frames for what they are.
    let delta = |i: usize, k: usize| c1[i][k] - c0[i][k];
    for i in 0..3 {
        o.check(delta(i, 1) > 0.0, || {
            format!("node{} ignored no frame of another lease", i + 1)
        });
        if key.is_some() {
            o.check(delta(i, 2) > 0.0 && delta(i, 3) > 0.0, || {
                format!(
                    "node{} ignored {} replays and refused {} frames (some of each expected)",
                    i + 1,
                    delta(i, 2),
                    delta(i, 3)
                )
            });
        }
    }
    let n = moved(&claims, &claims_after);
    o.figure(format!(
        "registration leases changed: {}; addresses that changed node: {n} of {}",
        leases
            .iter()
            .filter(|(k, v)| leases_after.get(*k) != Some(v))
            .count(),
        claims.len()
    ));
    o.check(leases_after == leases, || {
        format!("registration leases changed: {leases:?} became {leases_after:?}")
    });
    o.check(n == 0, || format!("{n} addresses changed node"));
    if let Some(first) = changes.first() {
        o.failures
            .push(format!("etcd changed during the attack: {first}"));
    }
    let ended = (1..=3).any(|i| {
        w.speaker(i)
            .is_ok_and(|p| p.log().contains("ending the lease"))
    });
    o.check(!ended, || "a speaker ended a lease".into());
    let longest = o.longest_unanswered_ms.unwrap_or(f64::INFINITY);
    o.check(longest <= CONTINUOUS_MS, || {
        format!("an address went unanswered for {longest:.0} ms (bound {CONTINUOUS_MS} ms)")
    });
    Ok(())
}

/// Waits until the file at `path` is gone; returns when that was seen.
fn wait_gone(path: &Path, timeout: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    while path.exists() {
        if start.elapsed() > timeout {
            bail!("{} still there after {timeout:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(now())
}

/// Scenario 12: the busiest holder's event loop stalls (the `--debug-stall-dir` hook).
pub fn stalled_holder(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(12);
    let stall = Duration::from_secs(if s.long { 8 } else { 4 });
    let mut w = World::start_with(s, false, 1, |dir| {
        let stall_dir = dir.join("stall");
        std::fs::create_dir_all(&stall_dir)?;
        Ok(vec![
            "--debug-stall-dir".into(),
            stall_dir.to_string_lossy().into_owned(),
        ])
    })?;
    let stall_file = |node: &str| w.dir.path().join("stall").join(node);
    let (victim, held) = busiest(&w)?;
    let vi = super::node_index(&victim)?;
    let old_mac = w.mac_of(&victim)?;
    let leases = registration_leases(&w)?;
    let others: Vec<usize> = (1..=3).filter(|i| *i != vi).collect();
    let revoked = |w: &World| -> f64 {
        others
            .iter()
            .filter_map(|i| metric(w, *i, "ferrolb_speaker_leases_revoked_total"))
            .sum()
    };
    let revoked0 = revoked(&w);
    let from = now();
    let path = stall_file(&victim);
    std::fs::write(&path, format!("{}s", stall.as_secs()))?;
    // The event loop takes the file on its next interface tick (every second).
    let t_stall = wait_gone(&path, Duration::from_secs(5))?;
    wait_moved(&w, &victim, &held, Duration::from_secs(15))?;
    let t_moved = now();
    // The successors take the addresses over first; the revocation follows them.
    let start = Instant::now();
    let mut revocations = revoked(&w) - revoked0;
    while revocations < 1.0 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        revocations = revoked(&w) - revoked0;
    }
    let taken: f64 = others
        .iter()
        .filter_map(|i| metric(&w, *i, "ferrolb_speaker_takeovers_total"))
        .sum();
    o.check(revocations >= 1.0, || {
        format!(
            "the others ended no lease ({revocations} revocations, {taken} takeovers): the \
             takeover did not come from heartbeats"
        )
    });
    // Back as a newcomer: a new registration lease, and no address taken back.
    let start = Instant::now();
    let rejoined = loop {
        let l = registration_leases(&w)?;
        if let Some(new) = l.get(&victim)
            && Some(new) != leases.get(&victim)
        {
            break Some(*new);
        }
        if start.elapsed() > Duration::from_secs(15) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    o.check(rejoined.is_some(), || {
        format!("{victim} did not register on a new lease after its stall")
    });
    std::thread::sleep(Duration::from_secs(u64::from(super::TTL) + 2));
    // The others are live throughout: their leases must not end.
    let leases_after = registration_leases(&w)?;
    let ended: Vec<&String> = leases
        .iter()
        .filter(|(n, l)| **n != victim && leases_after.get(*n) != Some(l))
        .map(|(n, _)| n)
        .collect();
    o.figure(format!(
        "leases of the other (live) speakers ended: {}",
        ended.len()
    ));
    o.check(ended.is_empty(), || {
        format!("the lease of live {ended:?} ended")
    });
    w.wait_settled(Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(1));
    // What the client saw of the stalled holder and its successors, stall and return included.
    let claims = w.claims()?;
    let mut takeover = Vec::new();
    let mut last_old: f64 = 0.0;
    let mut late_garps = Vec::new();
    for ip in &held {
        let node = claims
            .get(ip)
            .with_context(|| format!("{ip} has no claim"))?;
        let new_mac = w.mac_of(node)?;
        let first = w
            .seen(|s| s.first_reply(*ip, t_stall, |m| m == new_mac))?
            .with_context(|| format!("the client never saw {node} answer for {ip}"))?;
        takeover.push((first - t_stall) * 1000.0);
        if let Some(t) = w.seen(|s| s.last_reply_within(*ip, &old_mac, t_stall, f64::MAX))? {
            last_old = last_old.max((t - t_stall) * 1000.0);
        }
        if let Some(t) = w.seen(|s| s.first_garp(*ip, &old_mac, t_stall))? {
            late_garps.push((*ip, (t - t_stall) * 1000.0));
        }
    }
    let t = crate::scenarios::Stats::of(takeover);
    o.figure(format!(
        "{victim}'s event loop stalled for {} s; its {} addresses claimed by others {:.0} ms \
         after the stall began, {revocations:.0} lease ended by the others' heartbeat suspicion",
        stall.as_secs(),
        held.len(),
        (t_moved - t_stall) * 1000.0
    ));
    o.figure(format!(
        "takeover as the client saw it: median {:.0} ms, max {:.0} ms after the stall began \
         (bound {:.0} ms)",
        t.median_ms,
        t.max_ms,
        takeover_bound_ms()
    ));
    o.check(t.max_ms <= takeover_bound_ms(), || {
        format!("a takeover took {:.0} ms", t.max_ms)
    });
    let fence_bound = SUSPECT_AFTER_MS + ROUND.as_secs_f64() * 1000.0;
    o.figure(format!(
        "the stalled holder's last answer for those addresses: {last_old:.0} ms after the stall \
         began (bound: --suspect-after and a round, {fence_bound:.0} ms)"
    ));
    o.check(last_old <= fence_bound, || {
        format!("the stalled holder answered {last_old:.0} ms after its stall began")
    });
    o.figure(format!(
        "gratuitous ARPs from the stalled holder for those addresses after the stall began: {}",
        late_garps.len()
    ));
    if let Some((ip, at)) = late_garps.first() {
        o.failures.push(format!(
            "the stalled holder announced {} of its former addresses, first {ip} {at:.0} ms \
             after its stall began",
            late_garps.len()
        ));
    }
    let after = w.claims()?;
    let back = held
        .iter()
        .filter(|ip| after.get(ip) == Some(&victim))
        .count();
    o.figure(format!(
        "{victim} back on a new lease; addresses it holds again: {} (of its {} before the \
         stall: {back})",
        after.values().filter(|n| **n == victim).count(),
        held.len()
    ));
    // No allowance: a stalled holder has no documented overlap.
    w.measure(&mut o, from, now(), &BTreeMap::new())?;
    let others_longest = w.seen(|seen| {
        w.targets
            .iter()
            .filter(|ip| !held.contains(ip))
            .map(|ip| {
                seen.availability(*ip, from, now(), ROUND.as_secs_f64())
                    .longest_ms
            })
            .fold(0.0f64, f64::max)
    })?;
    o.figure(format!(
        "longest unanswered of the addresses the stalled node did not hold: {others_longest:.0} ms"
    ));
    o.check(others_longest <= CONTINUOUS_MS, || {
        format!("an address of another node went unanswered for {others_longest:.0} ms")
    });
    let alive = w.speaker(vi)?.try_wait()?.is_none();
    o.figure(format!(
        "{victim}'s speaker {}",
        if alive {
            "still running"
        } else {
            "exited (and was not restarted)"
        }
    ));
    Ok(o)
}
