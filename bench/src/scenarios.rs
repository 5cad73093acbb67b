//! The measurements of `ferrolb-lab-bench run`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_testkit::{Etcd, Host, Lab, LabProcess, Signal};
use serde::Serialize;

use crate::RunArgs;

/// Median, maximum and count of a set of samples, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Samples.
    pub n: usize,
    /// Median.
    pub median_ms: f64,
    /// 99th percentile (the maximum for fewer than 100 samples).
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Stats {
    /// The statistics of `samples` (milliseconds).
    pub fn of(mut samples: Vec<f64>) -> Stats {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        if n == 0 {
            return Stats::default();
        }
        let at = |q: f64| samples[((n as f64 - 1.0) * q).round() as usize];
        Stats {
            n,
            median_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: samples[n - 1],
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// Lease TTL used, seconds.
    pub lease_ttl_s: u32,
    /// Client-observed outage after SIGKILL of the holder.
    pub crash_failover: Stats,
    /// Client-observed outage after SIGTERM of the holder.
    pub graceful_handover: Stats,
    /// ARP round trip answered by the speaker (a held address).
    pub reply_latency_speaker: Stats,
    /// ARP round trip answered by the kernel (the node's own address), same run.
    pub reply_latency_kernel: Stats,
    /// Median speaker RTT / median kernel RTT.
    pub reply_latency_ratio: f64,
    /// Requests per second sent during the flood, and replies received per second.
    pub flood_requests_per_s: f64,
    /// Replies per second during the flood.
    pub flood_replies_per_s: f64,
    /// CPU of the holder's speaker during the flood, percent of one core.
    pub flood_cpu_percent: f64,
    /// CPU of the same speaker when idle, percent of one core.
    pub idle_cpu_percent: f64,
    /// Resident memory of a speaker holding nothing, KiB.
    pub rss_idle_kib: u64,
    /// Resident memory of a speaker holding 1,000 addresses, KiB.
    pub rss_1000_kib: u64,
    /// etcd writes (puts, deletes, txns) per minute in steady state with 1,000 held addresses.
    pub etcd_writes_per_minute: f64,
}

struct Bench {
    lab: Lab,
    etcd: Etcd,
    speakers: Vec<LabProcess>,
    speaker_bin: PathBuf,
    ttl: u32,
    /// Further speaker flags.
    extra: Vec<String>,
}

/// What a failover trial does to the holder.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Sends it a signal (Kill: a crash; Term: a clean stop).
    Signal(Signal),
}

impl Bench {
    fn spawn_speaker(&self, i: usize) -> anyhow::Result<LabProcess> {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        crate::spawn_speaker(
            &self.lab,
            &self.speaker_bin,
            i,
            &self.etcd.endpoints(),
            self.ttl,
            &extra,
        )
    }

    fn put(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.etcd.ctl(&["put", key, value])?;
        Ok(())
    }

    fn announce(&self, ip: IpAddr, nodes: &str) -> anyhow::Result<()> {
        self.put(
            &format!("/ferrolb/announcements/{ip}"),
            &format!(r#"{{"ip":"{ip}","services":["bench/{ip}"],"nodes":[{nodes}]}}"#),
        )
    }

    fn holder(&self, ip: IpAddr) -> Option<String> {
        let v = self.etcd.get_json(&format!("/ferrolb/claims/{ip}"))?;
        v["node"].as_str().map(str::to_string)
    }

    fn wait_holder(
        &self,
        ip: IpAddr,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(h) = self.holder(ip).filter(|h| ok(h)) {
                return Ok(h);
            }
            if Instant::now() > end {
                bail!("no suitable holder for {ip} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn probe(&self, extra: &[String]) -> anyhow::Result<Child> {
        let exe = std::env::current_exe()?;
        let mut cmd = self.lab.command(Host::Client, exe);
        cmd.arg("probe")
            .arg("--source")
            .arg(self.lab.ip(Host::Client).to_string())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Ok(cmd.spawn()?)
    }

    fn index(node: &str) -> anyhow::Result<usize> {
        node.trim_start_matches("node").parse().context("node name")
    }

    /// One failover trial: returns the client-observed outage in milliseconds.
    fn failover_trial(&mut self, ip: Ipv4Addr, fault: Fault) -> anyhow::Result<f64> {
        let old = self.wait_holder(IpAddr::V4(ip), Duration::from_secs(15), |_| true)?;
        let old_i = Self::index(&old)?;
        let old_mac = self.lab.mac(Host::Node(old_i));
        let mut child = self.probe(&[
            "--mode".into(),
            "watch".into(),
            "--target".into(),
            ip.to_string(),
            "--interval-ms".into(),
            "5".into(),
            "--seconds".into(),
            (self.ttl as u64 + 6).to_string(),
        ])?;
        let stdout = child.stdout.take().context("probe stdout")?;
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
                .filter_map(|v| Some((v["t"].as_f64()?, v["mac"].as_str()?.to_string())))
                .collect::<Vec<(f64, String)>>()
        });
        std::thread::sleep(Duration::from_millis(800));
        let t_signal = crate::unix_now();
        match fault {
            Fault::Signal(signal) => self.speakers[old_i - 1].signal(signal)?,
        }
        let new = self.wait_holder(IpAddr::V4(ip), Duration::from_secs(15), |h| h != old)?;
        std::thread::sleep(Duration::from_millis(500));
        let _ = child.kill();
        let _ = child.wait();
        let replies = reader
            .join()
            .map_err(|_| anyhow::anyhow!("probe reader panicked"))?;
        let new_mac = self.lab.mac(Host::Node(Self::index(&new)?));
        let last_old = replies
            .iter()
            .filter(|(_, m)| *m == old_mac)
            .map(|(t, _)| *t)
            .fold(f64::NAN, f64::max);
        let first_new = replies
            .iter()
            .filter(|(t, m)| *m == new_mac && *t > t_signal - 0.001)
            .map(|(t, _)| *t)
            .fold(f64::NAN, f64::min);
        if first_new.is_nan() || last_old.is_nan() {
            bail!(
                "trial saw no reply from {} (old) or {} (new)",
                old_mac,
                new_mac
            );
        }
        // Restart the old speaker (after its clean exit, or killing it); claims are sticky, so
        // the address stays where it is.
        match fault {
            Fault::Signal(Signal::Term) => {
                let _ = self.speakers[old_i - 1].wait_timeout(Duration::from_secs(2));
            }
            Fault::Signal(_) => {}
        }
        let _ = self.speakers[old_i - 1].kill();
        self.speakers[old_i - 1] = self.spawn_speaker(old_i)?;
        std::thread::sleep(Duration::from_millis(800));
        // The client was cut off from its last answer by the old holder to its first answer by
        // the new one (negative would mean both answered at once: reported as 0 and logged).
        let gap = (first_new - last_old) * 1000.0;
        if gap < 0.0 {
            eprintln!(
                "warning: {old_mac} answered {:.0} ms after {new_mac} first did",
                -gap
            );
        }
        Ok(gap.max(0.0))
    }

    fn rtt(&self, target: Ipv4Addr, count: u32) -> anyhow::Result<Vec<f64>> {
        let out = self
            .probe(&[
                "--mode".into(),
                "rtt".into(),
                "--target".into(),
                target.to_string(),
                "--count".into(),
                count.to_string(),
            ])?
            .wait_with_output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["rtt_us"].as_u64())
            .map(|us| us as f64 / 1000.0)
            .collect())
    }

    fn etcd_writes(&self) -> anyhow::Result<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.etcd.client_port());
        let text = self
            .lab
            .exec_ok(Host::Infra, ["curl", "-sf", url.as_str()])?;
        Ok(text
            .lines()
            .filter(|l| {
                l.starts_with("etcd_mvcc_put_total ")
                    || l.starts_with("etcd_mvcc_delete_total ")
                    || l.starts_with("etcd_mvcc_txn_total ")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .sum())
    }

    fn held(&self, node: usize) -> anyhow::Result<u64> {
        let text = self.lab.exec_ok(
            Host::Node(node),
            ["curl", "-sf", "http://127.0.0.1:7472/metrics"],
        )?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("ferrolb_speaker_held_addresses "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }
}

fn speaker_next_to(exe: &Path) -> PathBuf {
    exe.parent()
        .map(|d| d.join("ferrolb-speaker"))
        .unwrap_or_else(|| PathBuf::from("ferrolb-speaker"))
}

/// Runs every measurement.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    if !ferrolb_testkit::is_root() {
        bail!("the lab benchmark needs root (network namespaces and raw sockets)");
    }
    let speaker_bin = match &args.speaker {
        Some(p) => p.clone(),
        None => speaker_next_to(&std::env::current_exe()?),
    };
    let lab = Lab::new(3)?;
    let etcd = lab.start_etcd()?;
    let mut b = Bench {
        lab,
        etcd,
        speakers: Vec::new(),
        speaker_bin,
        ttl: args.lease_ttl,
        extra: Vec::new(),
    };
    for i in 1..=3 {
        let s = b.spawn_speaker(i)?;
        b.speakers.push(s);
    }
    let mut r = Results {
        lease_ttl_s: args.lease_ttl,
        ..Results::default()
    };
    let vip = b.lab.vip4(0);
    b.announce(IpAddr::V4(vip), "")?;
    b.wait_holder(IpAddr::V4(vip), Duration::from_secs(15), |_| true)?;

    let mut crash = Vec::new();
    for t in 0..args.trials {
        let ms = b.failover_trial(vip, Fault::Signal(Signal::Kill))?;
        eprintln!("crash failover trial {}: {ms:.0} ms", t + 1);
        crash.push(ms);
    }
    r.crash_failover = Stats::of(crash);
    let mut graceful = Vec::new();
    for t in 0..args.trials {
        let ms = b.failover_trial(vip, Fault::Signal(Signal::Term))?;
        eprintln!("graceful handover trial {}: {ms:.0} ms", t + 1);
        graceful.push(ms);
    }
    r.graceful_handover = Stats::of(graceful);

    // Reply latency: the held address against a node's own address, alternating in one run.
    let holder = b.wait_holder(IpAddr::V4(vip), Duration::from_secs(5), |_| true)?;
    let holder_i = Bench::index(&holder)?;
    let own = b.lab.ip(Host::Node(holder_i));
    let (mut sp, mut ke) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        sp.extend(b.rtt(vip, 100)?);
        ke.extend(b.rtt(own, 100)?);
    }
    r.reply_latency_speaker = Stats::of(sp);
    r.reply_latency_kernel = Stats::of(ke);
    r.reply_latency_ratio = r.reply_latency_speaker.median_ms / r.reply_latency_kernel.median_ms;
    eprintln!(
        "reply latency: speaker {:.3} ms, kernel {:.3} ms",
        r.reply_latency_speaker.median_ms, r.reply_latency_kernel.median_ms
    );

    // CPU: idle for 10 s, then 10 s at 10,000 requests a second from 200 requesters.
    let pid = b.speakers[holder_i - 1].pid();
    let tck = crate::procstat::clk_tck();
    let t0 = crate::procstat::cpu_ticks(pid)?;
    std::thread::sleep(Duration::from_secs(10));
    let t1 = crate::procstat::cpu_ticks(pid)?;
    r.idle_cpu_percent = (t1 - t0) as f64 / tck / 10.0 * 100.0;
    let started = Instant::now();
    let out = b
        .probe(&[
            "--mode".into(),
            "flood".into(),
            "--target".into(),
            vip.to_string(),
            "--rate".into(),
            "10000".into(),
            "--seconds".into(),
            "10".into(),
            "--requesters".into(),
            "200".into(),
        ])?
        .wait_with_output()?;
    let seconds = started.elapsed().as_secs_f64();
    let t2 = crate::procstat::cpu_ticks(pid)?;
    r.flood_cpu_percent = (t2 - t1) as f64 / tck / seconds * 100.0;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let probe_secs = summary["seconds"].as_f64().unwrap_or(seconds);
    r.flood_requests_per_s = summary["sent"].as_f64().unwrap_or(0.0) / probe_secs;
    r.flood_replies_per_s = summary["replies"].as_f64().unwrap_or(0.0) / probe_secs;
    eprintln!(
        "flood: {:.0} req/s, {:.0} replies/s, speaker CPU {:.1} % (idle {:.2} %)",
        r.flood_requests_per_s, r.flood_replies_per_s, r.flood_cpu_percent, r.idle_cpu_percent
    );

    // Memory: node1's speaker before and after it holds 1,000 addresses (100 IPv4, 900 IPv6).
    let pid1 = b.speakers[0].pid();
    r.rss_idle_kib = crate::procstat::memory_kib(pid1)?.1;
    let s = b.lab.subnet();
    for k in 1..VIP4_FOR_RSS {
        b.announce(IpAddr::V4(b.lab.vip4(k)), r#""node1""#)?;
    }
    for k in 0..(1000 - u16::from(VIP4_FOR_RSS) + 1) {
        let ip = Ipv6Addr::new(0xfd00, 0x250, u16::from(s), 0, 0, 0, 0x1, k);
        b.announce(IpAddr::V6(ip), r#""node1""#)?;
    }
    let end = Instant::now() + Duration::from_secs(60);
    while b.held(1)? < 1000 {
        if Instant::now() > end {
            bail!("node1 holds {} addresses, not 1000", b.held(1)?);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(6));
    r.rss_1000_kib = crate::procstat::memory_kib(pid1)?.1;
    eprintln!(
        "resident memory: {} KiB idle, {} KiB with 1,000 addresses",
        r.rss_idle_kib, r.rss_1000_kib
    );

    // Steady state: nothing changes, so etcd should see no writes (keepalives are not writes).
    let w0 = b.etcd_writes()?;
    std::thread::sleep(Duration::from_secs(args.steady_seconds));
    let w1 = b.etcd_writes()?;
    r.etcd_writes_per_minute = (w1 - w0) * 60.0 / args.steady_seconds as f64;
    eprintln!(
        "etcd writes per minute in steady state: {:.1}",
        r.etcd_writes_per_minute
    );

    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&r)?)?;
    println!("{}", table(&r));
    for s in &mut b.speakers {
        let _ = s.stop(Duration::from_secs(2));
    }
    Ok(())
}

/// IPv4 service addresses used in the memory measurement (the lab has 100).
const VIP4_FOR_RSS: u8 = 100;

/// IPv4 service addresses used in the memory measurement (the lab has 100).
fn table(r: &Results) -> String {
    let row = |name: &str, s: &Stats| {
        format!(
            "| {name} | {} | {:.1} ms | {:.1} ms |\n",
            s.n, s.median_ms, s.max_ms
        )
    };
    let mut t = String::from("| measurement | n | median | max |\n| --- | --- | --- | --- |\n");
    t.push_str(&row(
        &format!("crash failover (TTL {} s)", r.lease_ttl_s),
        &r.crash_failover,
    ));
    t.push_str(&row("graceful handover", &r.graceful_handover));
    t.push_str(&format!(
        "| ARP reply latency, speaker | {} | {:.3} ms | p99 {:.3} ms |\n",
        r.reply_latency_speaker.n,
        r.reply_latency_speaker.median_ms,
        r.reply_latency_speaker.p99_ms
    ));
    t.push_str(&format!(
        "| ARP reply latency, kernel | {} | {:.3} ms | p99 {:.3} ms |\n",
        r.reply_latency_kernel.n, r.reply_latency_kernel.median_ms, r.reply_latency_kernel.p99_ms
    ));
    t.push_str(&format!(
        "\nreply latency ratio (speaker / kernel, medians): {:.2}\n",
        r.reply_latency_ratio
    ));
    t.push_str(&format!(
        "flood: {:.0} requests/s, {:.0} replies/s; speaker CPU {:.1} % of a core (idle {:.2} %)\n",
        r.flood_requests_per_s, r.flood_replies_per_s, r.flood_cpu_percent, r.idle_cpu_percent
    ));
    t.push_str(&format!(
        "resident memory: {:.1} MB idle, {:.1} MB holding 1,000 addresses\n",
        r.rss_idle_kib as f64 / 1024.0,
        r.rss_1000_kib as f64 / 1024.0
    ));
    t.push_str(&format!(
        "etcd writes per minute in steady state: {:.1}\n",
        r.etcd_writes_per_minute
    ));
    t
}

/// Arguments of `failover`.
#[derive(Clone, Debug, clap::Args)]
pub struct FailoverArgs {
    /// Trials of each fault and system.
    #[arg(long, default_value_t = 20)]
    pub trials: u32,
    /// The speakers' lease TTL, in seconds.
    #[arg(long, default_value_t = 2)]
    pub lease_ttl: u32,
    /// keepalived's `advert_int` settings to compare with, in the same run (empty: none).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1")]
    pub keepalived: Vec<String>,
    /// The speaker binary (default: next to this one).
    #[arg(long)]
    pub speaker: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench-results/failover.json")]
    pub out: PathBuf,
}

/// One system's figures for one fault.
#[derive(Debug, Serialize)]
struct FailoverRow {
    /// From the fault to the first answer from another MAC.
    takeover: Stats,
    /// The client's gap: the old MAC's last answer to the new one's first.
    gap: Stats,
    /// Requests answered by two MACs, over all trials.
    answered_twice: usize,
    /// Trials with at least one such request.
    trials_answered_twice: usize,
}

impl FailoverRow {
    fn of(trials: &[crate::peer::Trial]) -> FailoverRow {
        FailoverRow {
            takeover: Stats::of(trials.iter().map(|t| t.takeover_ms).collect()),
            gap: Stats::of(trials.iter().map(|t| t.gap_ms).collect()),
            answered_twice: trials.iter().map(|t| t.answered_twice).sum(),
            trials_answered_twice: trials.iter().filter(|t| t.answered_twice > 0).count(),
        }
    }
}

impl crate::peer::System for Bench {
    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn logs(&self) -> String {
        crate::peer::tail_logs(self.speakers.iter())
    }

    fn fault(&mut self, node: usize, fault: crate::peer::Fault) -> anyhow::Result<()> {
        use crate::peer::Fault as F;
        match fault {
            F::Kill => self.speakers[node - 1].signal(Signal::Kill)?,
            F::Stop => self.speakers[node - 1].signal(Signal::Stop)?,
            F::LinkDown => self.lab.set_link(Host::Node(node), false)?,
        }
        Ok(())
    }

    fn restore(&mut self, node: usize, fault: crate::peer::Fault) -> anyhow::Result<()> {
        if fault == crate::peer::Fault::LinkDown {
            self.lab.set_link(Host::Node(node), true)?;
        }
        // A crashed or frozen speaker is replaced by a new one; claims are sticky, so the
        // address stays with its new holder.
        let _ = self.speakers[node - 1].kill();
        self.speakers[node - 1] = self.spawn_speaker(node)?;
        Ok(())
    }
}

/// Client-observed failover after SIGKILL, SIGSTOP and interface-down of the node answering:
/// ferrolb's three profiles (leases only, default, fast), then keepalived (VRRPv3) at each
/// `--keepalived` advert interval, in labs of three nodes built one after the other in this run,
/// measured by the same client ([`crate::peer`]).
pub fn failover(args: &FailoverArgs) -> anyhow::Result<()> {
    use crate::peer::{self, Fault};
    if !ferrolb_testkit::is_root() {
        bail!("the lab benchmark needs root (network namespaces and raw sockets)");
    }
    let speaker_bin = match &args.speaker {
        Some(p) => p.clone(),
        None => speaker_next_to(&std::env::current_exe()?),
    };
    let modes: [(&str, &[&str]); 3] = [
        (
            "ferrolb, leases only",
            &["--failover-profile", "leases-only"],
        ),
        ("ferrolb, default profile", &[]),
        ("ferrolb, fast profile", &["--failover-profile", "fast"]),
    ];
    let window = Duration::from_secs(u64::from(args.lease_ttl) + 6);
    let mut results: BTreeMap<String, BTreeMap<String, FailoverRow>> = BTreeMap::new();
    let mut record = |system: &str, fault: &str, trials: &[peer::Trial]| {
        results
            .entry(system.to_string())
            .or_default()
            .insert(fault.to_string(), FailoverRow::of(trials));
    };
    for (mode, extra) in modes {
        let lab = Lab::new(3)?;
        let etcd = lab.start_etcd()?;
        let mut b = Bench {
            lab,
            etcd,
            speakers: Vec::new(),
            speaker_bin: speaker_bin.clone(),
            ttl: args.lease_ttl,
            extra: extra.iter().map(ToString::to_string).collect(),
        };
        for i in 1..=3 {
            let s = b.spawn_speaker(i)?;
            b.speakers.push(s);
        }
        let vip = b.lab.vip4(0);
        b.announce(IpAddr::V4(vip), "")?;
        b.wait_holder(IpAddr::V4(vip), Duration::from_secs(15), |_| true)?;
        for (name, fault) in Fault::ALL {
            let mut trials = Vec::new();
            for t in 0..args.trials {
                let trial = peer::trial(&mut b, vip, fault, window)?;
                eprintln!("{mode}, {name}, trial {}: {trial:?}", t + 1);
                trials.push(trial);
            }
            record(mode, name, &trials);
        }
    }
    for advert in &args.keepalived {
        let lab = Lab::new(3)?;
        let vip = lab.vip4(0);
        let mode = format!("keepalived 2.2.7, advert_int {advert}");
        let mut k = peer::Keepalived::start(&lab, vip, advert)?;
        for (name, fault) in Fault::ALL {
            let mut trials = Vec::new();
            for t in 0..args.trials {
                let trial = peer::trial(&mut k, vip, fault, window)?;
                eprintln!("{mode}, {name}, trial {}: {trial:?}", t + 1);
                trials.push(trial);
            }
            record(&mode, name, &trials);
        }
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)?;
    println!(
        "| system | fault | trials | takeover median | takeover max | client gap median | client gap max | requests answered by two MACs (trials) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (system, by) in &results {
        for (fault, row) in by {
            println!(
                "| {system} | {fault} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {} ({}) |",
                row.takeover.n,
                row.takeover.median_ms,
                row.takeover.max_ms,
                row.gap.median_ms,
                row.gap.max_ms,
                row.answered_twice,
                row.trials_answered_twice
            );
        }
    }
    Ok(())
}
