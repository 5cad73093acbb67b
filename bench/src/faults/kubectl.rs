//! Scenario 13: the kubectl view follows a failover. The real `kube-apiserver` (outside the
//! lab, reached from the infrastructure namespace through a forwarded port), the reconciler
//! with Services from it and the state objects in `ferrolb-system`, three real speakers. The
//! holder of a Service's address is killed; the Service's `ServiceL2Status` must name the new
//! holder within a second of its claim in etcd.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_testkit::{Etcd, Forward, Host, KubeApiServer, Lab, LabProcess, Signal};
use serde_json::{Value, json};

use super::{Outcome, Settings, TTL, node_index, pools};

/// How long after the new claim the object may name the new node.
const BOUND: Duration = Duration::from_secs(1);
/// Where the reconciler writes its state objects.
const STATE_NS: &str = "ferrolb-system";

/// `kubectl get servicel2statuses --watch`: every node an event names, with when it was read.
struct Watch {
    child: Child,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    fn start(api: &KubeApiServer) -> anyhow::Result<Watch> {
        let mut child = std::process::Command::new(api.kubectl_path())
            .arg("--kubeconfig")
            .arg(api.admin_kubeconfig())
            .args([
                "get",
                "servicel2statuses",
                "-n",
                STATE_NS,
                "--watch",
                "-o",
                "jsonpath={.status.node}{\"\\n\"}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("kubectl get --watch")?;
        let out = child.stdout.take().context("kubectl's stdout")?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut s) = into.lock() {
                    s.push((Instant::now(), line.trim().to_string()));
                }
            }
        });
        Ok(Watch { child, seen })
    }

    /// When the watch first named `node` after `since`.
    fn first(&self, node: &str, since: Instant) -> Option<Instant> {
        let seen = self.seen.lock().ok()?;
        seen.iter()
            .find(|(t, n)| *t >= since && n == node)
            .map(|(t, _)| *t)
    }
}

fn holder(etcd: &Etcd, ip: IpAddr) -> Option<String> {
    etcd.get_json(&format!("/ferrolb/claims/{ip}"))?["node"]
        .as_str()
        .map(str::to_string)
}

pub(super) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn speaker(s: &Settings, lab: &Lab, etcd: &Etcd, i: usize) -> anyhow::Result<LabProcess> {
    crate::spawn_speaker(
        lab,
        &s.bin.join("ferrolb-speaker"),
        i,
        &etcd.endpoints(),
        TTL,
        &[],
    )
}

/// Starts the reconciler in the lab's infrastructure namespace (beside etcd) with Services from
/// `api` (`--services kubernetes`, the admin's credentials), the lab's pool written under
/// `dir/pools`, `--lease-ttl 2` and `extra` flags. The API server runs outside the lab: it is
/// reached through a port forwarded into the infrastructure namespace, on 127.0.0.1 there, which
/// its certificate is for. The forward must live as long as the reconciler.
pub(super) fn reconciler_on(
    s: &Settings,
    lab: &Lab,
    api: &KubeApiServer,
    dir: &Path,
    endpoints: &str,
    extra: &[&str],
) -> anyhow::Result<(LabProcess, Forward)> {
    let port = api
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .context("the API server's port")?;
    let forward = lab.forward(Host::Infra, SocketAddr::from(([127, 0, 0, 1], port)))?;
    let kubeconfig = dir.join("kubeconfig");
    let text = std::fs::read_to_string(api.admin_kubeconfig())?;
    std::fs::write(
        &kubeconfig,
        text.replace(&api.url(), &format!("https://127.0.0.1:{}", forward.port())),
    )?;
    std::fs::create_dir_all(dir.join("pools"))?;
    std::fs::write(dir.join("pools/lab.yaml"), pools(&lab.vip_range4()))?;
    let mut args = vec![
        "--kubeconfig",
        kubeconfig.to_str().context("path")?,
        "--lease-ttl",
        "2",
    ];
    args.extend_from_slice(extra);
    let reconciler = crate::spawn_reconciler(
        lab,
        &s.bin.join("ferrolb-reconciler"),
        &dir.join("pools"),
        Path::new("kubernetes"),
        endpoints,
        "127.0.0.1:7473",
        &args,
    )?;
    Ok((reconciler, forward))
}

/// Scenario 13.
pub fn l2_status_follows_a_failover(s: &Settings) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(13);
    let rounds = if s.long { 10 } else { 3 };
    let lab = Lab::new(3)?;
    let etcd = lab.start_etcd()?;
    let api = KubeApiServer::start()?;
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    api.kubectl(["create", "namespace", STATE_NS])?;
    api.kubectl(["apply", "-f", crds.to_str().context("path")?])?;
    api.kubectl([
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=30s",
    ])?;
    api.create(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}
    }))?;
    let dir = tempfile::tempdir()?;
    let (reconciler, forward) = reconciler_on(
        s,
        &lab,
        &api,
        dir.path(),
        &etcd.endpoints(),
        &["--state-namespace", STATE_NS],
    )?;
    let mut speakers: Vec<LabProcess> = (1..=3)
        .map(|i| speaker(s, &lab, &etcd, i))
        .collect::<anyhow::Result<_>>()?;
    let watch = Watch::start(&api)?;
    let logs = |speakers: &[LabProcess]| {
        format!(
            "{}\n{}",
            reconciler.log(),
            speakers
                .iter()
                .map(LabProcess::log)
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    let ip: IpAddr = wait_for("web's address", Duration::from_secs(30), || {
        api.get("services", Some("default"), "web")?["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()?
            .parse()
            .ok()
    })
    .with_context(|| logs(&speakers))?;
    let l2_node = || -> Option<String> {
        let o: Value = api.get("servicel2statuses", Some(STATE_NS), "l2-default.web")?;
        o["status"]["node"].as_str().map(str::to_string)
    };
    let mut current = wait_for(
        "the first claim in the object",
        Duration::from_secs(30),
        || {
            let h = holder(&etcd, ip)?;
            (l2_node()? == h).then_some(h)
        },
    )
    .with_context(|| logs(&speakers))?;
    let mut delays = Vec::new();
    for round in 0..rounds {
        // Every speaker hears the others before the fault.
        std::thread::sleep(Duration::from_secs(1));
        let i = node_index(&current)?;
        let killed = Instant::now();
        speakers[i - 1].signal(Signal::Kill)?;
        let old = current.clone();
        let (new, claimed) = wait_for(
            "a new claim",
            Duration::from_secs(u64::from(TTL) + 10),
            || {
                holder(&etcd, ip)
                    .filter(|h| *h != old)
                    .map(|h| (h, Instant::now()))
            },
        )
        .with_context(|| logs(&speakers))?;
        let shown = wait_for(
            "the object naming the new node",
            Duration::from_secs(10),
            || watch.first(&new, killed),
        );
        match shown {
            Ok(t) => {
                let delay = t.saturating_duration_since(claimed);
                o.check(delay <= BOUND, || {
                    format!("round {round}: ServiceL2Status named {new} {delay:?} after its claim")
                });
                delays.push(delay.as_secs_f64() * 1000.0);
            }
            Err(e) => o.failures.push(format!("round {round}: {e:#}")),
        }
        o.check(l2_node().as_deref() == Some(new.as_str()), || {
            format!("round {round}: the object does not name {new} in the end")
        });
        speakers[i - 1] = speaker(s, &lab, &etcd, i)?;
        current = new;
    }
    let worst = delays.iter().copied().fold(0.0, f64::max);
    let mean = delays.iter().sum::<f64>() / delays.len().max(1) as f64;
    o.figure(format!(
        "{rounds} holders killed: ServiceL2Status named the new holder {mean:.0} ms after its \
         claim on average, {worst:.0} ms at worst (claims polled every 20 ms, the object read \
         through kubectl --watch)"
    ));
    drop(watch);
    drop(forward);
    lab.close()?;
    Ok(o)
}
