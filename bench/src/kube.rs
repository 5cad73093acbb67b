//! `ferrolb-lab-bench kube`: the reconciler with many Services, against a real `kube-apiserver`
//! (v1.37 on etcd 3.6, the reconciler bound to the manifests' role) and against the fake API
//! server, in one run: time from start to every status written, the number of writes, the CPU
//! time spent by the reconciler and by the server, and the writes after a restart.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_testkit::kubeapi::FakeApiServer;
use ferrolb_testkit::{Etcd, KubeApiServer, RECONCILER_USER};
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
    /// Which API servers: `real`, `fake` or `both`.
    #[arg(long, default_value = "both")]
    pub server: String,
}

/// The two back ends, as the measurement needs them.
enum Server {
    Fake(FakeApiServer),
    Real(Box<KubeApiServer>),
}

impl Server {
    fn name(&self) -> &'static str {
        match self {
            Server::Fake(_) => "fake",
            Server::Real(_) => "real",
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        match self {
            Server::Fake(f) => f.kubeconfig(),
            Server::Real(r) => r.reconciler_kubeconfig(),
        }
    }

    /// The reconciler's successful writes to `resource` (`subresource`) so far.
    fn writes(&self, resource: &str, subresource: Option<&str>) -> usize {
        match self {
            Server::Fake(f) => f.writes(resource, subresource),
            Server::Real(r) => r.writes_by(RECONCILER_USER, resource, subresource),
        }
    }

    /// CPU seconds of the server: this process for the fake, `kube-apiserver` and its etcd
    /// for the real one.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        match self {
            Server::Fake(_) => cpu_seconds(std::process::id()),
            Server::Real(r) => {
                let api = r.pid().context("kube-apiserver not running")?;
                let etcd = r.etcd().pid().context("etcd not running")?;
                Ok(cpu_seconds(api)? + cpu_seconds(etcd)?)
            }
        }
    }

    /// `n` LoadBalancer Services in 50 namespaces, without node ports: a real server has only
    /// 2,768 of them (30000–32767), and layer-2 load balancing needs none.
    fn create_services(&self, n: u32) -> anyhow::Result<()> {
        let service = |i: u32| {
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc{i}"), "namespace": format!("ns{}", i % 50)},
                "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 443, "protocol": "TCP"}], "selector": {"app": format!("a{i}")}}
            })
        };
        match self {
            Server::Fake(f) => {
                for i in 0..n {
                    f.create(service(i)).map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
            Server::Real(r) => {
                let namespaces: Vec<_> = (0..50)
                    .map(|k| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns{k}")}}))
                    .collect();
                r.apply(
                    &json!({"apiVersion": "v1", "kind": "List", "items": namespaces}).to_string(),
                    &[],
                )?;
                // Lists of 500, four `kubectl` at a time: one alone leaves the server waiting
                // on its round trips.
                let all: Vec<u32> = (0..n).collect();
                let chunks: Vec<&[u32]> = all.chunks(500).collect();
                for batch in chunks.chunks(4) {
                    std::thread::scope(|scope| {
                        let running: Vec<_> = batch
                            .iter()
                            .map(|chunk| {
                                let items: Vec<_> = chunk.iter().map(|i| service(*i)).collect();
                                scope.spawn(move || {
                                    r.apply(
                                        &json!({"apiVersion": "v1", "kind": "List", "items": items})
                                            .to_string(),
                                        &["--server-side"],
                                    )
                                })
                            })
                            .collect();
                        running.into_iter().try_for_each(|t| {
                            t.join()
                                .map_err(|_| anyhow::anyhow!("kubectl apply thread panicked"))?
                                .map(drop)
                                .map_err(anyhow::Error::from)
                        })
                    })?;
                }
            }
        }
        Ok(())
    }
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
    /// CPU seconds of the API server in the same time: for the fake, this process (the fake
    /// server and the polling); for the real one, `kube-apiserver` and its etcd.
    pub server_cpu_seconds: f64,
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
    api: &Server,
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

/// Runs the measurement against the servers `--server` names, in one run.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let bin = match &args.reconciler {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("ferrolb-reconciler"))
            .context("no directory")?,
    };
    let mut doc = serde_json::Map::new();
    for which in ["real", "fake"] {
        if args.server != "both" && args.server != which {
            continue;
        }
        let server = if which == "real" {
            let r = KubeApiServer::start()?;
            let manifests =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/manifests");
            r.apply(
                &std::fs::read_to_string(manifests.join("00-namespace.yaml"))?,
                &[],
            )?;
            // The reconciler's least-privilege role, as the plain manifests grant it: their
            // accounts and cluster roles (the workloads would only sit there without a kubelet).
            let all = std::fs::read_to_string(manifests.join("50-ferrolb.yaml"))?;
            let rbac: Vec<&str> = all
                .split("\n---\n")
                .filter(|doc| {
                    doc.lines().any(|l| {
                        matches!(
                            l.trim_end(),
                            "kind: ServiceAccount"
                                | "kind: ClusterRole"
                                | "kind: ClusterRoleBinding"
                        )
                    })
                })
                .collect();
            r.apply(&rbac.join("\n---\n"), &[])?;
            Server::Real(Box::new(r))
        } else {
            Server::Fake(FakeApiServer::start()?)
        };
        let results = measure(&bin, &server, args.services)?;
        doc.insert(server.name().to_string(), serde_json::to_value(results)?);
    }
    if doc.is_empty() {
        bail!("--server must be real, fake or both, not {:?}", args.server);
    }
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(&args.out, &text)?;
    println!("{text}");
    Ok(())
}

fn measure(bin: &PathBuf, api: &Server, services: u32) -> anyhow::Result<Results> {
    let etcd = Etcd::start()?;
    let dir = tempfile::tempdir()?;
    let pools = dir.path().join("pools");
    std::fs::create_dir_all(&pools)?;
    std::fs::write(
        pools.join("pools.yaml"),
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: big\nspec:\n  addresses: [10.0.0.0/16]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: all\n",
    )?;
    let created = Instant::now();
    api.create_services(services)?;
    eprintln!(
        "{}: {services} Services created in {:.1} s",
        api.name(),
        created.elapsed().as_secs_f64()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let server0 = api.cpu_seconds()?;
    let started = Instant::now();
    let r = start(bin, api, &etcd, &pools, port)?;
    let pid = r.0.id();
    let expected = services as usize;
    // The real server's writes are counted from its audit log, which is read whole: poll it
    // less often.
    let poll = match api {
        Server::Fake(_) => Duration::from_millis(20),
        Server::Real(_) => Duration::from_millis(250),
    };
    while api.writes("services", Some("status")) < expected {
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "{}: only {} statuses after 600 s",
                api.name(),
                api.writes("services", Some("status"))
            );
        }
        std::thread::sleep(poll);
    }
    let mut results = Results {
        services,
        sync_seconds: started.elapsed().as_secs_f64(),
        reconciler_cpu_seconds: cpu_seconds(pid)?,
        server_cpu_seconds: api.cpu_seconds()? - server0,
        ..Results::default()
    };
    std::thread::sleep(Duration::from_secs(3));
    results.status_writes = api.writes("services", Some("status"));
    eprintln!(
        "{}: synced in {:.2} s with {} status writes",
        api.name(),
        results.sync_seconds,
        results.status_writes
    );
    drop(r);
    let before = mod_revisions(&etcd)?;
    let writes_before = api.writes("services", Some("status")) + api.writes("events", None);
    let _r2 = start(bin, api, &etcd, &pools, port)?;
    std::thread::sleep(Duration::from_secs(8));
    results.writes_after_restart =
        api.writes("services", Some("status")) + api.writes("events", None) - writes_before;
    let after = mod_revisions(&etcd)?;
    results.announcements_rewritten = before.iter().zip(&after).filter(|(a, b)| a != b).count()
        + before.len().abs_diff(after.len());
    Ok(results)
}
