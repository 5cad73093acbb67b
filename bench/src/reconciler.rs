//! `ferrolb-lab-bench reconciler`: how fast configuration changes reach etcd.
//!
//! A real etcd on loopback and a real `ferrolb-reconciler`; the time is taken from the change
//! (a file renamed into place, a `git push` returning, a webhook call) to the moment an etcd
//! watch sees the announcement change.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use etcd_client::{Client, EventType, WatchOptions};
use ferrolb_testkit::Etcd;
use serde::Serialize;

use crate::scenarios::Stats;

const POOL_A: &str = "10.250.0.100-10.250.0.103";
const POOL_B: &str = "10.250.0.110-10.250.0.113";

fn pools(range: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: lab\nspec:\n  addresses: [{range}]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: lab\n"
    )
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n";

/// Arguments of `reconciler`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Trials of each kind.
    #[arg(long, default_value_t = 20)]
    pub trials: u32,
    /// `--git-interval` for the polling measurement, in seconds.
    #[arg(long, default_value_t = 5)]
    pub git_interval: u64,
    /// The reconciler binary (default: next to this one).
    #[arg(long)]
    pub reconciler: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench-results/reconciler.json")]
    pub out: PathBuf,
}

/// What was measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// Pool file replaced → announcement changed.
    pub directory_change: Stats,
    /// `git push` returned → announcement changed, polling only.
    pub git_poll: Stats,
    /// The polling interval used.
    pub git_interval_s: u64,
    /// Webhook call → announcement changed.
    pub git_webhook: Stats,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let ok = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("git {args:?} failed");
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits for the next announcement put, then returns when it happened.
async fn next_put(watch: &mut etcd_client::WatchStream) -> anyhow::Result<Instant> {
    loop {
        let resp = watch.message().await?.context("watch ended")?;
        if resp
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Put)
        {
            return Ok(Instant::now());
        }
    }
}

async fn measure(
    endpoints: &str,
    trials: u32,
    mut change: impl FnMut(u32) -> anyhow::Result<Instant>,
) -> anyhow::Result<Stats> {
    let mut client = Client::connect([endpoints], None).await?;
    let mut samples = Vec::new();
    for t in 0..trials {
        let mut watch = client
            .watch(
                "/ferrolb/announcements/",
                Some(WatchOptions::new().with_prefix()),
            )
            .await?;
        // Let the watch start before changing anything.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = change(t)?;
        let seen = tokio::time::timeout(Duration::from_secs(60), next_put(&mut watch))
            .await
            .context("no announcement change within 60 s")??;
        samples.push(seen.duration_since(started).as_secs_f64() * 1000.0);
    }
    Ok(Stats::of(samples))
}

/// Runs the measurements.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let bin = match &args.reconciler {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("ferrolb-reconciler"))
            .context("no directory")?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let services = dir.path().join("services");
    std::fs::create_dir_all(&services)?;
    std::fs::write(services.join("web.yaml"), SERVICE)?;
    let mut results = Results {
        git_interval_s: args.git_interval,
        ..Results::default()
    };

    // Directory source.
    {
        let etcd = Etcd::start()?;
        let pool_dir = dir.path().join("pools");
        std::fs::create_dir_all(&pool_dir)?;
        std::fs::write(pool_dir.join("lab.yaml"), pools(POOL_A))?;
        let _r = Proc(
            Command::new(&bin)
                .args(["--config", pool_dir.to_str().context("path")?])
                .args(["--services", services.to_str().context("path")?])
                .args([
                    "--etcd-endpoints",
                    &etcd.endpoints(),
                    "--listen",
                    &format!("127.0.0.1:{}", free_port()?),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        std::thread::sleep(Duration::from_secs(2));
        results.directory_change = rt.block_on(measure(&etcd.endpoints(), args.trials, |t| {
            let tmp = pool_dir.join("lab.yaml.tmp");
            std::fs::write(&tmp, pools(if t % 2 == 0 { POOL_B } else { POOL_A }))?;
            let at = Instant::now();
            std::fs::rename(&tmp, pool_dir.join("lab.yaml"))?;
            Ok(at)
        }))?;
        eprintln!(
            "directory change: median {:.0} ms, max {:.0} ms",
            results.directory_change.median_ms, results.directory_change.max_ms
        );
    }

    // Git source: polling, then the webhook.
    for webhook in [false, true] {
        let etcd = Etcd::start()?;
        let remote = dir.path().join(format!("remote-{webhook}.git"));
        let work = dir.path().join(format!("work-{webhook}"));
        std::fs::create_dir_all(&remote)?;
        std::fs::create_dir_all(work.join("pools"))?;
        git(&remote, &["init", "--bare", "-q"])?;
        git(&work, &["init", "-q"])?;
        std::fs::write(work.join("pools/lab.yaml"), pools(POOL_A))?;
        git(&work, &["add", "-A"])?;
        git(&work, &["commit", "-q", "-m", "a"])?;
        git(
            &work,
            &["push", "-q", remote.to_str().context("path")?, "HEAD:main"],
        )?;
        let port = free_port()?;
        let interval = if webhook {
            "10m".to_string()
        } else {
            format!("{}s", args.git_interval)
        };
        let _r = Proc(
            Command::new(&bin)
                .args([
                    "--config-git",
                    &format!("file://{}", remote.display()),
                    "--git-path",
                    "pools",
                    "--git-interval",
                    &interval,
                ])
                .args([
                    "--git-cache",
                    dir.path()
                        .join(format!("cache-{webhook}"))
                        .to_str()
                        .context("path")?,
                ])
                .args(["--services", services.to_str().context("path")?])
                .args([
                    "--etcd-endpoints",
                    &etcd.endpoints(),
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        std::thread::sleep(Duration::from_secs(2));
        let remote_s = remote.to_string_lossy().into_owned();
        let stats = rt.block_on(measure(&etcd.endpoints(), args.trials, |t| {
            std::fs::write(
                work.join("pools/lab.yaml"),
                pools(if t % 2 == 0 { POOL_B } else { POOL_A }),
            )?;
            git(&work, &["commit", "-q", "-a", "-m", "change"])?;
            git(&work, &["push", "-q", &remote_s, "HEAD:main"])?;
            if webhook {
                // More than a second apart: the webhook takes one call a second.
                std::thread::sleep(Duration::from_millis(1100));
                let at = Instant::now();
                let code = Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
                    .arg(format!("http://127.0.0.1:{port}/hooks/git"))
                    .output()?;
                if String::from_utf8_lossy(&code.stdout) != "202" {
                    bail!("webhook answered {}", String::from_utf8_lossy(&code.stdout));
                }
                Ok(at)
            } else {
                Ok(Instant::now())
            }
        }))?;
        if webhook {
            results.git_webhook = stats;
        } else {
            results.git_poll = stats;
        }
        let s = if webhook {
            &results.git_webhook
        } else {
            &results.git_poll
        };
        eprintln!(
            "git {}: median {:.0} ms, max {:.0} ms",
            if webhook { "webhook" } else { "poll" },
            s.median_ms,
            s.max_ms
        );
    }
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)?;
    println!("| change | n | median | max | target |\n| --- | --- | --- | --- | --- |");
    println!(
        "| pool file replaced → announcement | {} | {:.0} ms | {:.0} ms | 300 ms |",
        results.directory_change.n,
        results.directory_change.median_ms,
        results.directory_change.max_ms
    );
    println!(
        "| git push → announcement (poll every {} s) | {} | {:.0} ms | {:.0} ms | interval + 1 s |",
        args.git_interval, results.git_poll.n, results.git_poll.median_ms, results.git_poll.max_ms
    );
    println!(
        "| webhook call → announcement | {} | {:.0} ms | {:.0} ms | 1 s |",
        results.git_webhook.n, results.git_webhook.median_ms, results.git_webhook.max_ms
    );
    Ok(())
}
