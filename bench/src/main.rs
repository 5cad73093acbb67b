//! `ferrolb-lab-bench`: measures real speakers in a network lab (needs root).
//!
//! `ferrolb-lab-bench run` builds a lab (a client and three nodes on one bridge, etcd in its own
//! namespace), starts one `ferrolb-speaker` per node and measures, as the client sees it:
//! crash failover and graceful handover (N trials each: the gap between the last reply from the
//! old MAC and the first from the new one), ARP reply latency of the speaker against the kernel's
//! own reply for an address configured on a node, CPU of a speaker at 10,000 ARP requests a
//! second, resident memory with 1,000 held addresses, and etcd writes per minute in steady state.
//! It prints a table and writes JSON (default `target/bench-results/speaker.json`).
//!
//! `ferrolb-lab-bench probe` is the client side, run inside the client namespace.
//! `ferrolb-lab-bench reconciler` measures how fast pool changes reach etcd (files, Git, webhook).

mod demo;
mod faults;
mod heartbeats;
mod kube;
mod monitor;
mod peer;
mod probe;
mod procstat;
mod reconciler;
mod scenarios;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ferrolb-lab-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole system in a lab of network namespaces, shown step by step (root).
    Demo(demo::Args),
    /// A tiny HTTP server answering every request with one line (the demo's nodes run it).
    Serve(demo::ServeArgs),
    /// Build a lab and run every measurement.
    Run(RunArgs),
    /// Failover after SIGKILL, SIGSTOP and interface-down: ferrolb (leases only, heartbeats)
    /// and keepalived (VRRPv3) in the same run, measured by the same client.
    Failover(scenarios::FailoverArgs),
    /// False revocations under random frame loss on the bridge.
    Soak(heartbeats::SoakArgs),
    /// What heartbeats from 99 other nodes cost a speaker.
    Hbcost(heartbeats::CostArgs),
    /// The client side of a measurement (runs inside the client namespace).
    Probe(probe::Args),
    /// How fast configuration changes (files, git push, webhook) reach etcd.
    Reconciler(reconciler::Args),
    /// The reconciler against the fake Kubernetes API with many Services.
    Kube(kube::Args),
    /// The client of the fault suite (runs inside the client namespace).
    Monitor(monitor::Args),
    /// The fault suite: scenarios that must lose nothing, and the reliability report.
    Faults(faults::Args),
    /// Gather every benchmark's figures into target/bench-results.json and print a summary.
    Summary(summary::Args),
}

/// Arguments of `run`.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Trials of each failover kind.
    #[arg(long, default_value_t = 20)]
    pub trials: u32,
    /// The speakers' lease TTL, in seconds.
    #[arg(long, default_value_t = 2)]
    pub lease_ttl: u32,
    /// How long to count etcd writes in steady state.
    #[arg(long, default_value_t = 60)]
    pub steady_seconds: u64,
    /// The speaker binary (default: next to this one).
    #[arg(long)]
    pub speaker: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench-results/speaker.json")]
    pub out: PathBuf,
}

/// Starts `ferrolb-speaker` (the binary at `exe`) on lab node `i` as `node<i>`, with the given
/// etcd endpoints and lease TTL, its HTTP listener on 127.0.0.1:7472 inside the node, and
/// `extra` flags; its log is `speaker-node<i>-<time>.log` in the lab's log directory.
pub fn spawn_speaker(
    lab: &ferrolb_testkit::Lab,
    exe: &std::path::Path,
    i: usize,
    endpoints: &str,
    ttl: u32,
    extra: &[&str],
) -> anyhow::Result<ferrolb_testkit::LabProcess> {
    let node = format!("node{i}");
    let exe = exe.to_string_lossy().into_owned();
    let ttl = ttl.to_string();
    let mut args = vec![
        exe.as_str(),
        "--node-name",
        &node,
        "--etcd-endpoints",
        endpoints,
        "--lease-ttl",
        &ttl,
        "--listen",
        "127.0.0.1:7472",
    ];
    args.extend_from_slice(extra);
    let log = format!("speaker-{node}-{}.log", unix_now());
    Ok(lab.spawn(ferrolb_testkit::Host::Node(i), args, &log)?)
}

/// Starts `ferrolb-reconciler` (the binary at `exe`) in the lab's infrastructure namespace in
/// file mode (`pools`, `services`), with the given etcd endpoints, HTTP listener and `extra`
/// flags; its log is `reconciler-<listen>.log` in the lab's log directory.
pub fn spawn_reconciler(
    lab: &ferrolb_testkit::Lab,
    exe: &std::path::Path,
    pools: &std::path::Path,
    services: &std::path::Path,
    endpoints: &str,
    listen: &str,
    extra: &[&str],
) -> anyhow::Result<ferrolb_testkit::LabProcess> {
    use anyhow::Context;
    let log = format!("reconciler-{}.log", listen.replace([':', '.'], "-"));
    let exe = exe.to_string_lossy().into_owned();
    let mut args = vec![
        exe.as_str(),
        "--config",
        pools.to_str().context("path")?,
        "--services",
        services.to_str().context("path")?,
        "--etcd-endpoints",
        endpoints,
        "--listen",
        listen,
    ];
    args.extend_from_slice(extra);
    Ok(lab.spawn(ferrolb_testkit::Host::Infra, args, &log)?)
}

/// Now, in seconds since the Unix epoch (the lab's processes share the clock).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Serve(args) => demo::serve(&args),
        Command::Run(args) => scenarios::run(&args),
        Command::Failover(args) => scenarios::failover(&args),
        Command::Soak(args) => heartbeats::soak(&args),
        Command::Hbcost(args) => heartbeats::cost(&args),
        Command::Probe(args) => probe::run(&args),
        Command::Reconciler(args) => reconciler::run(&args),
        Command::Kube(args) => kube::run(&args),
        Command::Summary(args) => summary::run(&args),
        Command::Monitor(args) => monitor::run(&args),
        Command::Faults(args) => faults::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrolb-lab-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
