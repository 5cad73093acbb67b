//! `ferrolb-lab-bench kube`: the reconciler against the fake Kubernetes API server with many
//! Services: time from start to every status written, the number of writes, the CPU time spent
//! by the reconciler and by the fake server (this process), and the writes after a restart.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_testkit::Etcd;
use ferrolb_testkit::kubeapi::FakeApiServer;
use serde::Serialize;
use serde_json::json;

use crate::procstat::cpu_seconds;

/// Arguments of `kube`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// How many LoadBalancer Services.
    #[arg(long, default_value_t = 10_000)]
    pub services: u32,
    /// The reconciler binary (default: next to this one).
    #[arg(long)]
    pub reconciler: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench-results/kube.json")]
    pub out: PathBuf,
}

/// What was measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// Services.
    pub services: u32,
    /// Reconciler start → every status written, seconds.
    pub sync_seconds: f64,
    /// Status writes during the first sync.
    pub status_writes: usize,
    /// CPU seconds of the reconciler process until then.
    pub reconciler_cpu_seconds: f64,
    /// CPU seconds of this process (the fake API server, and the polling) in the same time.
    pub fake_server_cpu_seconds: f64,
    /// Writes to Kubernetes in the 5 s after a restart with nothing changed.
    pub writes_after_restart: usize,
    /// Announcements rewritten by the restart.
    pub announcements_rewritten: usize,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(
    bin: &PathBuf,
    api: &FakeApiServer,
    etcd: &Etcd,
    pools: &std::path::Path,
    port: u16,
) -> anyhow::Result<Proc> {
    Ok(Proc(
        Command::new(bin)
            .args([
                "--config",
                pools.to_str().context("path")?,
                "--services",
                "kubernetes",
            ])
            .args(["--kubeconfig", api.kubeconfig().to_str().context("path")?])
            .args([
                "--etcd-endpoints",
                &etcd.endpoints(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("FERROLB_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

fn mod_revisions(etcd: &Etcd) -> anyhow::Result<Vec<i64>> {
    let out = etcd.ctl(&[
        "get",
        "--prefix",
        "/ferrolb/announcements/",
        "-w",
        "json",
        "--keys-only",
    ])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["kvs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|kv| kv["mod_revision"].as_i64())
                .collect()
        })
        .unwrap_or_default())
}

/// Runs the measurement.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let bin = match &args.reconciler {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("ferrolb-reconciler"))
            .context("no directory")?,
    };
    let api = FakeApiServer::start()?;
    let etcd = Etcd::start()?;
    let dir = tempfile::tempdir()?;
    let pools = dir.path().join("pools");
    std::fs::create_dir_all(&pools)?;
    std::fs::write(
        pools.join("pools.yaml"),
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: big\nspec:\n  addresses: [10.0.0.0/16]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: all\n",
    )?;
    for i in 0..args.services {
        api.create(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc{i}"), "namespace": format!("ns{}", i % 50)},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 443, "protocol": "TCP"}], "selector": {"app": format!("a{i}")}}
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    eprintln!("{} Services created", args.services);
    let me = std::process::id();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let own0 = cpu_seconds(me)?;
    let started = Instant::now();
    let r = start(&bin, &api, &etcd, &pools, port)?;
    let pid = r.0.id();
    let expected = args.services as usize;
    while api.writes("services", Some("status")) < expected {
        if started.elapsed() > Duration::from_secs(300) {
            bail!(
                "only {} statuses after 300 s",
                api.writes("services", Some("status"))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut results = Results {
        services: args.services,
        sync_seconds: started.elapsed().as_secs_f64(),
        reconciler_cpu_seconds: cpu_seconds(pid)?,
        fake_server_cpu_seconds: cpu_seconds(me)? - own0,
        ..Results::default()
    };
    std::thread::sleep(Duration::from_secs(3));
    results.status_writes = api.writes("services", Some("status"));
    eprintln!(
        "synced in {:.2} s with {} status writes",
        results.sync_seconds, results.status_writes
    );
    drop(r);
    let before = mod_revisions(&etcd)?;
    api.clear_requests();
    let _r2 = start(&bin, &api, &etcd, &pools, port)?;
    std::thread::sleep(Duration::from_secs(8));
    results.writes_after_restart =
        api.writes("services", Some("status")) + api.writes("events", None);
    let after = mod_revisions(&etcd)?;
    results.announcements_rewritten = before.iter().zip(&after).filter(|(a, b)| a != b).count()
        + before.len().abs_diff(after.len());
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)?;
    println!("{}", serde_json::to_string_pretty(&results)?);
    Ok(())
}
