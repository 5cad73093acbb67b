//! Heartbeat benchmarks: `soak` (false revocations under random frame loss on the bridge) and
//! `hbcost` (what heartbeats from 99 other nodes cost a speaker, against one without them).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_core::wire::MacAddr;
use ferrolb_core::wire::heartbeat::HeartbeatRepr;
use ferrolb_testkit::{Etcd, Host, Lab, LabProcess};
use serde::Serialize;

use crate::procstat::cpu_seconds;

/// Arguments of `soak`.
#[derive(Clone, Debug, clap::Args)]
pub struct SoakArgs {
    /// How long each setting runs, in minutes.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Percent of all frames the bridge drops, at random.
    #[arg(long, default_value_t = 5)]
    pub loss: u32,
    /// The speakers' failover profiles to soak, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "default,fast")]
    pub profiles: Vec<String>,
    /// The directory holding the ferrolb binaries (default: next to this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench-results/soak.json")]
    pub out: PathBuf,
}

/// Arguments of `hbcost`.
#[derive(Clone, Debug, clap::Args)]
pub struct CostArgs {
    /// How long each measurement runs, in seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// The directory holding the ferrolb binaries (default: next to this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Register the simulated nodes in etcd (each on a lease of its own), so that their
    /// heartbeats are on the current lease and counted and tracked, not ignored at once.
    #[arg(long)]
    pub registered: bool,
    /// The speaker and the simulated nodes share a heartbeat key (`--heartbeat-key-file`): every
    /// frame is signed and checked.
    #[arg(long)]
    pub signed: bool,
    /// The speaker's failover profile; the simulated nodes send at its heartbeat interval
    /// (default 100 ms, fast 10 ms).
    #[arg(long, default_value = "default")]
    pub profile: String,
}

/// The heartbeat interval of a failover profile's name, as the speaker has it.
fn profile_interval(profile: &str) -> anyhow::Result<Duration> {
    let settings = ferrolb_speaker::settings::Settings::try_parse_profiled_from([
        "ferrolb-speaker",
        "--node-name",
        "n",
        "--etcd-endpoints",
        "http://127.0.0.1:2379",
        "--failover-profile",
        profile,
    ])
    .map_err(|e| anyhow::anyhow!("--profile {profile}: {e}"))?;
    Ok(settings.heartbeat_interval)
}

#[derive(Debug, Serialize)]
struct SoakResult {
    setting: String,
    minutes: f64,
    loss_percent: u32,
    leases_revoked: u64,
    /// Addresses taken over from a holder suspected by a quorum (false takeovers here).
    takeovers: u64,
    heartbeats_sent: u64,
}

fn bin_dir(bin: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match bin {
        Some(b) => Ok(b.clone()),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("no directory")?
            .to_path_buf()),
    }
}

fn spawn_speaker(
    lab: &Lab,
    etcd: &Etcd,
    bin: &std::path::Path,
    i: usize,
    extra: &[&str],
) -> anyhow::Result<LabProcess> {
    crate::spawn_speaker(
        lab,
        &bin.join("ferrolb-speaker"),
        i,
        &etcd.endpoints(),
        3,
        extra,
    )
}

/// The sum of a counter over the speakers of `nodes` nodes.
fn counter(lab: &Lab, nodes: usize, name: &str) -> u64 {
    (1..=nodes)
        .filter_map(|i| {
            lab.exec_ok(
                Host::Node(i),
                ["curl", "-s", "http://127.0.0.1:7472/metrics"],
            )
            .ok()
        })
        .filter_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|v| v as u64)
        .sum()
}

/// Runs `soak`.
pub fn soak(args: &SoakArgs) -> anyhow::Result<()> {
    if !ferrolb_testkit::is_root() {
        bail!("the soak needs root (network namespaces and raw sockets)");
    }
    let bin = bin_dir(&args.bin)?;
    let mut results = Vec::new();
    for profile in &args.profiles {
        profile_interval(profile)?;
        let name = format!("--failover-profile {profile}");
        let name = name.as_str();
        let extra: &[&str] = &["--failover-profile", profile];
        let lab = Lab::new(3)?;
        let etcd = lab.start_etcd()?;
        let speakers: Vec<LabProcess> = (1..=3)
            .map(|i| spawn_speaker(&lab, &etcd, &bin, i, extra))
            .collect::<anyhow::Result<_>>()?;
        for k in 0..30 {
            let ip = IpAddr::V4(lab.vip4(k));
            etcd.ctl(&[
                "put",
                &format!("/ferrolb/announcements/{ip}"),
                &format!(r#"{{"ip":"{ip}","services":["soak/{k}"]}}"#),
            ])?;
        }
        std::thread::sleep(Duration::from_secs(3));
        // Every frame through the bridge, heartbeats and etcd traffic alike, is dropped with
        // probability `loss` percent.
        let rule = format!(
            "table bridge loss {{\n chain forward {{\n type filter hook forward priority 0;\n numgen random mod 100 < {} drop\n }}\n}}\n",
            args.loss
        );
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", lab.switch_ns(), "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn()?;
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .context("nft stdin")?
                .write_all(rule.as_bytes())?;
        }
        if !child.wait()?.success() {
            bail!("nft refused the loss rule");
        }
        let revoked0 = counter(&lab, 3, "ferrolb_speaker_leases_revoked_total");
        let takeovers0 = counter(&lab, 3, "ferrolb_speaker_takeovers_total");
        let sent0 = counter(&lab, 3, "ferrolb_speaker_heartbeats_sent_total");
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(args.minutes * 60.0));
        let r = SoakResult {
            setting: name.into(),
            minutes: start.elapsed().as_secs_f64() / 60.0,
            loss_percent: args.loss,
            leases_revoked: counter(&lab, 3, "ferrolb_speaker_leases_revoked_total") - revoked0,
            takeovers: counter(&lab, 3, "ferrolb_speaker_takeovers_total") - takeovers0,
            heartbeats_sent: counter(&lab, 3, "ferrolb_speaker_heartbeats_sent_total") - sent0,
        };
        eprintln!(
            "{name}: {} false revocations and {} false takeovers in {:.1} min at {} % loss ({} heartbeats sent)",
            r.leases_revoked, r.takeovers, r.minutes, r.loss_percent, r.heartbeats_sent
        );
        results.push(r);
        drop(speakers);
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)?;
    Ok(())
}

/// Runs `hbcost`: a speaker on node1 hears heartbeats from 99 simulated nodes (one per heartbeat
/// interval of `--profile` each, sent from the client); its CPU with heartbeats on (that
/// profile), then with them off, in one run.
pub fn cost(args: &CostArgs) -> anyhow::Result<()> {
    if !ferrolb_testkit::is_root() {
        bail!("hbcost needs root (network namespaces and raw sockets)");
    }
    let bin = bin_dir(&args.bin)?;
    let lab = Lab::new(1)?;
    let etcd = lab.start_etcd()?;
    let ifindex: u32 = lab
        .exec_ok(Host::Client, ["cat", "/sys/class/net/eth0/ifindex"])?
        .trim()
        .parse()
        .context("ifindex")?;
    let ns = PathBuf::from("/run/netns").join(lab.ns(Host::Client));
    let leases = if args.registered {
        register_simulated(&etcd, 99)?
    } else {
        (1..=99).collect()
    };
    let dir = tempfile::tempdir()?;
    let key_path = dir.path().join("heartbeat.key");
    std::fs::write(&key_path, COST_KEY)?;
    let key_arg = key_path.to_string_lossy().into_owned();
    let signing: &[&str] = if args.signed {
        &["--heartbeat-key-file", &key_arg]
    } else {
        &[]
    };
    let key = args.signed.then(|| COST_KEY.as_bytes().to_vec());
    let interval = profile_interval(&args.profile)?;
    for (name, extra) in [
        (
            "heartbeats on",
            vec!["--failover-profile", args.profile.as_str()],
        ),
        ("heartbeats off", vec!["--heartbeat-interval", "0s"]),
    ] {
        let extra: Vec<&str> = extra.into_iter().chain(signing.iter().copied()).collect();
        let mut speaker = spawn_speaker(&lab, &etcd, &bin, 1, &extra)?;
        std::thread::sleep(Duration::from_secs(2));
        let pid = speaker.pid();
        let cpu0 = cpu_seconds(pid)?;
        let t0 = Instant::now();
        let seconds = args.seconds;
        let (ns2, leases2, key2) = (ns.clone(), leases.clone(), key.clone());
        let sent =
            std::thread::spawn(move || simulate(&ns2, ifindex, &leases2, key2, seconds, interval))
                .join()
                .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
        let cpu = (cpu_seconds(pid)? - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
        println!(
            "{name} (profile {}): {cpu:.2} % of a core while hearing {:.0} heartbeats a second from 99 nodes \
             ({}, {})",
            args.profile,
            sent as f64 / t0.elapsed().as_secs_f64(),
            if args.registered {
                "registered in etcd"
            } else {
                "not registered"
            },
            if args.signed { "signed" } else { "unsigned" }
        );
        println!(
            "  the speaker counted {} of them, ignored {} (not on a current lease), refused {}",
            counter(&lab, 1, "ferrolb_speaker_heartbeats_heard_total"),
            counter(
                &lab,
                1,
                "ferrolb_speaker_heartbeats_ignored_total{reason=\"not_current_lease\"}"
            ),
            counter(&lab, 1, "ferrolb_speaker_heartbeats_refused_total"),
        );
        speaker.kill()?;
    }
    Ok(())
}

/// The key of `hbcost --signed`.
const COST_KEY: &str = "hbcost key";

/// Registers `n` simulated nodes `sim-0`.. in etcd, each on a lease of its own (10 minutes);
/// returns their leases in order.
fn register_simulated(etcd: &Etcd, n: u16) -> anyhow::Result<Vec<i64>> {
    (0..n)
        .map(|k| {
            let out = etcd.ctl(&["lease", "grant", "600"])?;
            // "lease 694d7a1b2c3d4e5f granted with TTL(600s)"
            let hex = out
                .split_whitespace()
                .nth(1)
                .context("lease grant output")?;
            let lease = i64::from_str_radix(hex, 16).context("lease id")?;
            let value = format!(r#"{{"node":"sim-{k}","heartbeats":true}}"#);
            etcd.ctl(&[
                "put",
                &format!("/ferrolb/speakers/sim-{k}"),
                &value,
                "--lease",
                hex,
            ])?;
            Ok(lease)
        })
        .collect()
}

/// Sends heartbeats for one made-up node per lease in `leases` (node `sim-<k>` on the k-th),
/// one every `interval` each, signed with `key` if given, for `seconds`.
fn simulate(
    ns: &std::path::Path,
    ifindex: u32,
    leases: &[i64],
    key: Option<Vec<u8>>,
    seconds: u64,
    interval: Duration,
) -> anyhow::Result<u64> {
    ferrolb_speaker::sys::enter_netns(ns)?;
    let sock = ferrolb_speaker::sys::RawSocket::open(ifindex, 0x88b5)?;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut seq = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        seq += 1;
        for (k, lease) in leases.iter().enumerate() {
            let b = u16::try_from(k).unwrap_or(u16::MAX).to_be_bytes();
            let hb = HeartbeatRepr {
                node: format!("sim-{k}"),
                lease: *lease,
                seq,
                digest: [0; 8],
            };
            if let Some(frame) = hb.frame(MacAddr([0x02, 0xdd, 0, 0, b[0], b[1]]), key.as_deref())
                && sock.send(&frame).is_ok()
            {
                sent += 1;
            }
        }
        let due = start + interval.saturating_mul(u32::try_from(seq).unwrap_or(u32::MAX));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(sent)
}
