//! The scenarios with speakers on the LAN: etcd outages (1, 2, 10), a holder cut off (3, 4),
//! crash rounds (5) and a hostile frame stream (9).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_testkit::Host;

use super::{CONTINUOUS_MS, Outcome, Rng, Settings, Store, TTL, World, node_index};
use crate::procstat::{cpu_seconds, memory_kib};
use crate::scenarios::Stats;

fn now() -> f64 {
    crate::unix_now()
}

fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// The bound on a takeover: the lease TTL and one second.
pub(super) fn takeover_bound_ms() -> f64 {
    f64::from(TTL) * 1000.0 + 1000.0
}

/// Waits until every address has a claim again (etcd may just have come back).
pub(super) fn wait_claims(
    w: &World,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<Ipv4Addr, String>> {
    let start = Instant::now();
    loop {
        if let Ok(c) = w.claims()
            && w.targets.iter().all(|ip| c.contains_key(ip))
        {
            return Ok(c);
        }
        if start.elapsed() > timeout {
            bail!("addresses without a claim after {timeout:?}");
        }
        sleep(Duration::from_millis(200));
    }
}

pub(super) fn moved(
    before: &BTreeMap<Ipv4Addr, String>,
    after: &BTreeMap<Ipv4Addr, String>,
) -> usize {
    before
        .iter()
        .filter(|(ip, n)| after.get(ip) != Some(n))
        .count()
}

/// Checks that nothing moved and every address stayed answered; the common end of the etcd
/// outage scenarios.
fn nothing_moved_nothing_dark(
    o: &mut Outcome,
    w: &World,
    before: &BTreeMap<Ipv4Addr, String>,
    anns_before: &BTreeMap<String, String>,
    from: f64,
) -> anyhow::Result<()> {
    let after = wait_claims(w, Duration::from_secs(20))?;
    // Let the client see a few rounds with everyone back.
    w.wait_settled(Duration::from_secs(20))?;
    w.measure(o, from, now(), &BTreeMap::new())?;
    let n = moved(before, &after);
    o.figure(format!(
        "addresses that changed node: {n} of {}",
        before.len()
    ));
    o.check(n == 0, || format!("{n} addresses changed node"));
    let longest = o.longest_unanswered_ms.unwrap_or(f64::INFINITY);
    o.check(longest <= CONTINUOUS_MS, || {
        format!("an address went unanswered for {longest:.0} ms (bound {CONTINUOUS_MS} ms)")
    });
    let anns_after = w.prefix("announcements")?;
    o.lost = anns_before
        .iter()
        .filter(|(k, v)| anns_after.get(*k) != Some(v))
        .count();
    let lost = o.lost;
    o.check(lost == 0, || format!("{lost} announcements changed"));
    Ok(())
}

/// Scenarios 1 and 2: etcd stopped for 30 s, or killed and started again at once.
fn etcd_outage(s: &Settings, scenario: u8, kill: bool) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(scenario);
    let mut w = World::start(s, false, 1)?;
    let before = w.claims()?;
    let anns = w.prefix("announcements")?;
    let from = now();
    {
        let Store::One(etcd) = &mut w.store else {
            bail!("one etcd member expected");
        };
        if kill {
            etcd.kill()?;
        } else {
            etcd.stop()?;
            sleep(Duration::from_secs(30));
        }
        etcd.restart()?;
    }
    o.figure(format!(
        "etcd {} for {:.1} s",
        if kill { "killed and restarted" } else { "down" },
        now() - from
    ));
    // Past a lease TTL after the return: anything that would expire has.
    sleep(Duration::from_secs(u64::from(TTL) + 2));
    nothing_moved_nothing_dark(&mut o, &w, &before, &anns, from)?;
    Ok(o)
}

/// Scenario 1.
pub fn etcd_down(s: &Settings) -> anyhow::Result<Outcome> {
    etcd_outage(s, 1, false)
}

/// Scenario 2.
pub fn etcd_restarted(s: &Settings) -> anyhow::Result<Outcome> {
    etcd_outage(s, 2, true)
}

/// What the client saw of the addresses `victim` held when it failed at `t_fail`: the
/// takeover times, and the overlap (the victim's last answer after the new holder's first
/// gratuitous ARP). Returns, per address, until when two answers are the documented overlap.
fn takeovers(
    o: &mut Outcome,
    w: &World,
    victim: &str,
    held: &[Ipv4Addr],
    t_fail: f64,
) -> anyhow::Result<BTreeMap<Ipv4Addr, f64>> {
    let old_mac = w.mac_of(victim)?;
    let claims = w.claims()?;
    let mut takeover = Vec::new();
    let mut overlap = Vec::new();
    let mut allowed = BTreeMap::new();
    for ip in held {
        let node = claims
            .get(ip)
            .with_context(|| format!("{ip} has no claim"))?;
        let new_mac = w.mac_of(node)?;
        let first_new = w
            .seen(|s| s.first_reply(*ip, t_fail, |m| m == new_mac))?
            .with_context(|| format!("the client never saw {node} answer for {ip}"))?;
        takeover.push((first_new - t_fail) * 1000.0);
        let announced = w
            .seen(|s| s.first_garp(*ip, &new_mac, t_fail))?
            .unwrap_or(first_new);
        let last_old = w.seen(|s| s.last_reply(*ip, &old_mac))?.unwrap_or(0.0);
        overlap.push(((last_old - announced) * 1000.0).max(0.0));
        allowed.insert(*ip, announced + 0.1);
    }
    let t = Stats::of(takeover);
    let ov = Stats::of(overlap);
    o.figure(format!(
        "takeover of {} addresses: median {:.0} ms, max {:.0} ms (bound {:.0} ms)",
        t.n,
        t.median_ms,
        t.max_ms,
        takeover_bound_ms()
    ));
    o.check(t.max_ms <= takeover_bound_ms(), || {
        format!("a takeover took {:.0} ms", t.max_ms)
    });
    o.figure(format!(
        "old holder answering after the new holder's gratuitous ARP: max {:.0} ms (bound 100 ms)",
        ov.max_ms
    ));
    Ok(allowed)
}

/// Waits until no address in `held` is claimed by `victim`.
pub(super) fn wait_moved(
    w: &World,
    victim: &str,
    held: &[Ipv4Addr],
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(c) = w.claims()
            && held.iter().all(|ip| c.get(ip).is_some_and(|n| n != victim))
        {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "{victim}'s addresses did not move within {timeout:?}\n{}",
                w.logs()
            );
        }
        sleep(Duration::from_millis(50));
    }
}

/// The node holding the most addresses, and those addresses.
pub(super) fn busiest(w: &World) -> anyhow::Result<(String, Vec<Ipv4Addr>)> {
    let claims = w.claims()?;
    let mut by_node: BTreeMap<&str, Vec<Ipv4Addr>> = BTreeMap::new();
    for (ip, n) in &claims {
        by_node.entry(n).or_default().push(*ip);
    }
    by_node
        .into_iter()
        .max_by_key(|(_, ips)| ips.len())
        .map(|(n, ips)| (n.to_string(), ips))
        .context("nothing is claimed")
}

/// Scenario 3: the holder loses etcd but not the LAN.
pub fn holder_cut_from_etcd(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(3);
    let w = World::start(s, false, 1)?;
    let (victim, held) = busiest(&w)?;
    let vi = node_index(&victim)?;
    let etcd_ip = w.lab.ip(Host::Infra);
    let t_cut = now();
    w.lab.blackhole(Host::Node(vi), etcd_ip)?;
    wait_moved(&w, &victim, &held, Duration::from_secs(15))?;
    sleep(Duration::from_secs(1));
    let allowed = takeovers(&mut o, &w, &victim, &held, t_cut)?;
    let old_mac = w.mac_of(&victim)?;
    let overlap = held
        .iter()
        .filter_map(|ip| {
            let last = w.seen(|s| s.last_reply(*ip, &old_mac)).ok()??;
            Some(((last - (allowed.get(ip)? - 0.1)) * 1000.0).max(0.0))
        })
        .fold(0.0f64, f64::max);
    o.check(overlap <= 100.0, || {
        format!("the cut-off node answered {overlap:.0} ms after the new holder's announcement")
    });
    w.lab.unblackhole(Host::Node(vi), etcd_ip)?;
    // The cut-off node reconnects, finds its lease gone and must stay silent.
    sleep(Duration::from_secs(u64::from(TTL) + 2));
    w.wait_settled(Duration::from_secs(20))?;
    sleep(Duration::from_secs(1));
    w.measure(&mut o, t_cut, now(), &allowed)?;
    o.figure(format!("{} addresses moved from {victim}", held.len()));
    Ok(o)
}

/// Scenario 4: the holder's interface goes down.
pub fn holder_link_down(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(4);
    let w = World::start(s, false, 1)?;
    let (victim, held) = busiest(&w)?;
    let vi = node_index(&victim)?;
    let t_down = now();
    w.lab.set_link(Host::Node(vi), false)?;
    wait_moved(&w, &victim, &held, Duration::from_secs(15))?;
    sleep(Duration::from_secs(1));
    let allowed = takeovers(&mut o, &w, &victim, &held, t_down)?;
    w.lab.set_link(Host::Node(vi), true)?;
    sleep(Duration::from_secs(u64::from(TTL) + 2));
    w.wait_settled(Duration::from_secs(20))?;
    sleep(Duration::from_secs(1));
    w.measure(&mut o, t_down, now(), &allowed)?;
    o.figure(format!("{} addresses moved from {victim}", held.len()));
    Ok(o)
}

/// Scenario 5: rounds of SIGKILL and restart of a random speaker.
pub fn kill_rounds(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(5);
    let rounds = if s.long { 50 } else { 10 };
    let mut w = World::start(s, false, 1)?;
    let mut rng = Rng::new(s.seed);
    let from = now();
    let mut settle = Vec::new();
    for round in 1..=rounds {
        let i = usize::try_from(rng.below(3)).unwrap_or(0) + 1;
        let killed = Instant::now();
        w.speaker(i)?.kill()?;
        w.speakers[i - 1] = Some(w.spawn_speaker(i)?);
        // Rounds sent before the kill must not count as settled.
        sleep(Duration::from_millis(300));
        match w.wait_settled(Duration::from_secs(20)) {
            Ok(_) => settle.push(killed.elapsed().as_secs_f64() * 1000.0),
            Err(e) => o.failures.push(format!("round {round} (node{i}): {e:#}")),
        }
    }
    sleep(Duration::from_millis(500));
    w.measure(&mut o, from, now(), &BTreeMap::new())?;
    let st = Stats::of(settle);
    o.figure(format!(
        "{rounds} rounds (seed {}): each round settled (one claim per address, the client sees \
         exactly its holder) in median {:.0} ms, max {:.0} ms after the kill",
        s.seed, st.median_ms, st.max_ms
    ));
    o.figure(format!(
        "unanswered time, all {} addresses and rounds added up: {:.1} s",
        w.targets.len(),
        o.total_unanswered_ms.unwrap_or(0.0) / 1000.0
    ));
    Ok(o)
}

/// Scenario 9: a flood of requests from made-up MACs and malformed frames at the busiest node.
pub fn flood(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(9);
    let seconds = if s.long { 60 } else { 10 };
    let mut w = World::start(s, false, 1)?;
    let (victim, held) = busiest(&w)?;
    let vi = node_index(&victim)?;
    let target = *held.first().context("nothing held")?;
    let pid = w.speaker(vi)?.pid();
    let ifindex: u32 = w
        .lab
        .exec_ok(Host::Client, ["cat", "/sys/class/net/eth0/ifindex"])?
        .trim()
        .parse()
        .context("ifindex")?;
    let ns = std::path::PathBuf::from("/run/netns").join(w.lab.ns(Host::Client));
    let source = w.lab.ip(Host::Client);
    let cpu0 = cpu_seconds(pid)?;
    let from = now();
    let flood = std::thread::spawn(move || flood_frames(&ns, ifindex, source, target, seconds));
    let sent = flood
        .join()
        .map_err(|_| anyhow::anyhow!("the flood thread panicked"))??;
    let to = now();
    let cpu = (cpu_seconds(pid)? - cpu0) / (to - from) * 100.0;
    let (peak, rss) = memory_kib(pid)?;
    let alive = w.speaker(vi)?.try_wait()?.is_none();
    o.check(alive, || format!("{victim}'s speaker died"));
    sleep(Duration::from_millis(300));
    w.measure(&mut o, from, to, &BTreeMap::new())?;
    let rate = sent as f64 / (to - from);
    o.figure(format!(
        "{sent} frames in {:.1} s ({rate:.0} a second): a third requests for {target} from \
         made-up MACs, two thirds malformed",
        to - from
    ));
    o.figure(format!(
        "{victim}'s speaker: {cpu:.0} % of a core (bound 100 %), resident memory {rss} KiB, \
         peak {peak} KiB (bound 65536 KiB)"
    ));
    o.check(cpu <= 100.0, || {
        format!("the speaker used {cpu:.0} % of a core")
    });
    o.check(peak <= 65_536, || {
        format!("the speaker's peak memory was {peak} KiB")
    });
    let longest = o.longest_unanswered_ms.unwrap_or(f64::INFINITY);
    o.check(longest <= 250.0, || {
        format!("a legitimate request went unanswered for {longest:.0} ms (bound 250 ms)")
    });
    Ok(o)
}

/// Sends about 50,000 frames a second for `seconds` from `ifindex` in namespace `ns`: requests
/// for `target` from a new made-up MAC each, frames cut short, and frames with a wrong hardware
/// type. Returns how many were sent.
fn flood_frames(
    ns: &std::path::Path,
    ifindex: u32,
    source: Ipv4Addr,
    target: Ipv4Addr,
    seconds: u64,
) -> anyhow::Result<u64> {
    ferrolb_speaker::sys::enter_netns(ns)?;
    let sock = ferrolb_speaker::sys::RawSocket::open(ifindex, 0x0806)?;
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut sent = 0u64;
    let mut ms = 0u64;
    while Instant::now() < end {
        for _ in 0..17 {
            let n = sent.to_be_bytes();
            let mac = ferrolb_core::wire::MacAddr([0x02, 0xee, n[4], n[5], n[6], n[7]]);
            let req = ferrolb_core::wire::arp_request(mac, source, target);
            // Cut anywhere inside the 42 bytes that matter (the rest is padding).
            let cut = (sent as usize) % 42;
            let mut bad = req.clone();
            bad[15] = 0x09;
            bad[19] = (sent % 256) as u8;
            for f in [&req[..], &req[..cut.max(14)], &bad[..]] {
                if sock.send(f).is_ok() {
                    sent += 1;
                }
            }
        }
        ms += 1;
        // 51 frames a millisecond, paced against the start.
        let due = start + Duration::from_millis(ms);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            sleep(wait);
        }
    }
    Ok(sent)
}

/// Scenario 10: a three-member etcd loses its leader member, then a second member.
pub fn etcd_cluster_losses(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(10);
    let quorum_lost_for = Duration::from_secs(if s.long { 30 } else { 10 });
    let mut w = World::start(s, true, 1)?;
    let before = w.claims()?;
    let anns = w.prefix("announcements")?;
    let from = now();
    let Store::Three(cluster) = &mut w.store else {
        bail!("three etcd members expected");
    };
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    cluster.kill_member(leader)?;
    sleep(Duration::from_secs(u64::from(TTL) + 3));
    let mid = w.claims()?;
    let n = moved(&before, &mid);
    o.figure(format!(
        "leader member (on node{}) killed: {n} addresses changed node",
        leader + 1
    ));
    o.check(n == 0, || {
        format!("{n} addresses moved with one member lost")
    });
    let Store::Three(cluster) = &mut w.store else {
        bail!("three etcd members expected");
    };
    let second = (0..3).find(|i| *i != leader).context("a second member")?;
    let t_lost = now();
    cluster.kill_member(second)?;
    sleep(quorum_lost_for);
    cluster.restart_stopped()?;
    o.figure(format!(
        "quorum lost for {:.1} s (members on node{} and node{} down)",
        now() - t_lost,
        leader + 1,
        second + 1
    ));
    sleep(Duration::from_secs(u64::from(TTL) + 2));
    nothing_moved_nothing_dark(&mut o, &w, &before, &anns, from)?;
    Ok(o)
}
