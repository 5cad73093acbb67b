//! `ferrolb-lab-bench demo`: the whole system, for real, on one machine.
//!
//! A lab of private network namespaces (a client and three nodes on one bridge, etcd in its own
//! namespace), the reconciler in file mode reading `examples/pools/` and `examples/services/`,
//! one speaker per node, and on every node an HTTP server that says which node it is, reached
//! through a local route per announced address as kube-proxy would set up (`arp_ignore=1`, so
//! only the speaker answers ARP). It shows who answers for each address, fetches each page,
//! kills the announcing speaker of one address, measures how long the client was cut off, and
//! tears everything down (also on Ctrl-C or failure; a killed run is cleaned up by the next).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_testkit::{Etcd, Host, Lab, LabProcess, Signal};

/// The lab's own subnet, 10.250.200.0/24: apart from the examples' addresses (10.250.0–3.x).
const SUBNET: u8 = 200;

/// Arguments of `demo`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The directory holding the ferrolb binaries (default: next to this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Pool configuration.
    #[arg(long, default_value = "examples/pools")]
    pub pools: PathBuf,
    /// Service manifests.
    #[arg(long, default_value = "examples/services")]
    pub services: PathBuf,
}

/// Arguments of `serve`: a tiny HTTP server that answers every request with one line.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Port.
    #[arg(long, default_value_t = 80)]
    pub port: u16,
    /// The line to answer with.
    #[arg(long)]
    pub text: String,
}

/// Runs `serve`.
pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    // One dual-stack socket: IPv4 and IPv6 clients alike.
    let listener = TcpListener::bind(("::", args.port))?;
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let body = format!("{}\n", args.text);
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(())
}

struct Demo {
    lab: Lab,
    etcd: Etcd,
    speakers: BTreeMap<usize, LabProcess>,
    others: Vec<LabProcess>,
    bin: PathBuf,
    stop: Arc<AtomicBool>,
}

fn say(text: &str) {
    println!("\n==> {text}");
}

impl Demo {
    fn check(&self) -> anyhow::Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    fn exe(&self, name: &str) -> String {
        self.bin.join(name).to_string_lossy().into_owned()
    }

    fn spawn_speaker(&self, i: usize) -> anyhow::Result<LabProcess> {
        let labels = if i == 3 {
            "node-role.example/edge=true"
        } else {
            ""
        };
        crate::spawn_speaker(
            &self.lab,
            &self.bin.join("ferrolb-speaker"),
            i,
            &self.etcd.endpoints(),
            2,
            &["--labels", labels],
        )
    }

    fn announcements(&self) -> BTreeMap<IpAddr, serde_json::Value> {
        let Ok(out) = self.etcd.ctl(&[
            "get",
            "--prefix",
            "/ferrolb/announcements/",
            "--print-value-only",
        ]) else {
            return BTreeMap::new();
        };
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| Some((v["ip"].as_str()?.parse().ok()?, v)))
            .collect()
    }

    fn holder(&self, ip: IpAddr) -> Option<String> {
        let v = self.etcd.get_json(&format!("/ferrolb/claims/{ip}"))?;
        v["node"].as_str().map(str::to_string)
    }

    fn curl(&self, ip: IpAddr) -> String {
        let url = match ip {
            IpAddr::V4(_) => format!("http://{ip}/"),
            IpAddr::V6(_) => format!("http://[{ip}]/"),
        };
        self.lab
            .exec_ok(
                Host::Client,
                ["curl", "-s", "--max-time", "2", url.as_str()],
            )
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    fn node_of_mac(&self, mac: &str) -> String {
        (1..=3)
            .find(|i| self.lab.mac(Host::Node(*i)) == mac)
            .map_or_else(|| mac.to_string(), |i| format!("node{i}"))
    }
}

/// Runs the demo.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if !ferrolb_testkit::is_root() {
        bail!("the demo builds network namespaces and needs root");
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            eprintln!("\ninterrupted: tearing the lab down");
            stop.store(true, Ordering::Relaxed);
        })?;
    }
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .to_path_buf(),
    };
    let pools =
        std::fs::canonicalize(&args.pools).with_context(|| format!("{}", args.pools.display()))?;
    let services = std::fs::canonicalize(&args.services)
        .with_context(|| format!("{}", args.services.display()))?;

    say("building the lab: a client and three nodes on one bridge, etcd in its own namespace");
    let lab = Lab::with_subnet(3, SUBNET)?;
    let etcd = lab.start_etcd()?;
    let mut demo = Demo {
        lab,
        etcd,
        speakers: BTreeMap::new(),
        others: Vec::new(),
        bin,
        stop,
    };
    // The client reaches every example address on the bridge; each node only answers ARP for
    // addresses configured on its interface (the announced ones are on a local route instead).
    demo.lab.exec_ok(
        Host::Client,
        ["ip", "route", "add", "10.250.0.0/16", "dev", "eth0"],
    )?;
    demo.lab.exec_ok(
        Host::Client,
        ["ip", "-6", "route", "add", "fd00:250::/64", "dev", "eth0"],
    )?;
    for i in 1..=3 {
        for key in [
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.eth0.arp_ignore=1",
        ] {
            demo.lab
                .exec_ok(Host::Node(i), ["sysctl", "-q", "-w", key])?;
        }
        let exe = demo.exe("ferrolb-lab-bench");
        let text = format!("hello from node{i}");
        let p = demo.lab.spawn(
            Host::Node(i),
            [exe.as_str(), "serve", "--port", "80", "--text", &text],
            &format!("http-node{i}.log"),
        )?;
        demo.others.push(p);
    }
    for (host, ip) in demo
        .lab
        .hosts()
        .iter()
        .map(|h| (h.to_string(), demo.lab.ip(*h)))
    {
        println!("   {host:<7} {ip}");
    }
    demo.check()?;

    say(
        "starting the reconciler (file mode: examples/pools, examples/services) and three speakers",
    );
    let endpoints = format!("http://127.0.0.1:{}", demo.etcd.client_port());
    let reconciler = crate::spawn_reconciler(
        &demo.lab,
        &demo.bin.join("ferrolb-reconciler"),
        &pools,
        &services,
        &endpoints,
        "127.0.0.1:7473",
        &[],
    )?;
    demo.others.push(reconciler);
    for i in 1..=3 {
        let s = demo.spawn_speaker(i)?;
        demo.speakers.insert(i, s);
    }

    // Wait until every announcement that some node may answer for has a holder.
    let end = Instant::now() + Duration::from_secs(20);
    let anns = loop {
        demo.check()?;
        let anns = demo.announcements();
        let unclaimed = anns
            .iter()
            .filter(|(ip, a)| {
                a["interfaces"].as_array().is_none_or(|i| i.is_empty())
                    && demo.holder(**ip).is_none()
            })
            .count();
        if !anns.is_empty() && unclaimed == 0 {
            break anns;
        }
        if Instant::now() > end {
            bail!(
                "addresses still unclaimed after 20 s:\n{}",
                demo.others[demo.others.len() - 1].log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Announcements restricted to some nodes follow the speakers' registrations: give them a
    // moment, then take the final list.
    std::thread::sleep(Duration::from_secs(1));
    let anns = if demo.announcements().len() > anns.len() {
        demo.announcements()
    } else {
        anns
    };
    // What kube-proxy would do on every node: deliver the Service addresses locally.
    for ip in anns.keys() {
        for i in 1..=3 {
            let (fam, cidr) = match ip {
                IpAddr::V4(_) => ("-4", format!("{ip}/32")),
                IpAddr::V6(_) => ("-6", format!("{ip}/128")),
            };
            demo.lab.exec_ok(
                Host::Node(i),
                [
                    "ip", fam, "route", "add", "local", &cidr, "dev", "lo", "table", "local",
                ],
            )?;
        }
    }

    say("what the reconciler allocated (the same decision as `ferrolb plan`)");
    let plan = std::process::Command::new(demo.exe("ferrolb"))
        .args([
            "plan",
            "--config",
            pools.to_str().context("path")?,
            "--services",
            services.to_str().context("path")?,
        ])
        .output()?;
    for line in String::from_utf8_lossy(&plan.stdout).lines() {
        println!("   {line}");
    }

    say("who answers for each announced address, as the client sees it");
    println!(
        "   {:<24} {:<34} {:<8} {:<19} HTTP",
        "ADDRESS", "SERVICES", "HOLDER", "CLIENT SEES (ARP/ND)"
    );
    for (ip, a) in &anns {
        demo.check()?;
        let services = a["services"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let holder = demo.holder(*ip).unwrap_or_else(|| "-".into());
        let seen = match ip {
            IpAddr::V4(v4) => demo
                .lab
                .arping(Host::Client, *v4, Duration::from_millis(500))?,
            IpAddr::V6(v6) => demo
                .lab
                .ndisc(Host::Client, *v6, Duration::from_millis(600))?
                .into_iter()
                .collect(),
        };
        let seen = if seen.is_empty() {
            "nobody".to_string()
        } else {
            seen.iter()
                .map(|m| demo.node_of_mac(m))
                .collect::<Vec<_>>()
                .join(",")
        };
        let page = if holder == "-" {
            String::new()
        } else {
            demo.curl(*ip)
        };
        println!(
            "   {:<24} {services:<34} {holder:<8} {seen:<19} {page}",
            ip.to_string()
        );
        if holder == "-" {
            println!("   {:<24} (not answered: {})", "", why_unclaimed(a));
        }
    }

    say("`ferrolb status`, as an operator sees it (read from etcd)");
    let exe = demo.exe("ferrolb");
    let text = demo.lab.exec_ok(
        Host::Infra,
        [
            exe.as_str(),
            "status",
            "--etcd-endpoints",
            endpoints.as_str(),
        ],
    )?;
    for line in text.lines() {
        println!("   {line}");
    }

    // Failover: kill the speaker that answers for web's address, and watch from the client.
    let (web, _) = anns
        .iter()
        .find(|(_, a)| {
            a["services"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == "default/web"))
        })
        .context("default/web is not announced")?;
    let IpAddr::V4(web4) = *web else {
        bail!("default/web has no IPv4 address")
    };
    let old = demo.holder(*web).context("web has no holder")?;
    let old_i: usize = old.trim_start_matches("node").parse()?;
    say(&format!(
        "killing the speaker of {old}, which answers for default/web ({web}); the client keeps asking"
    ));
    let exe = std::env::current_exe()?;
    let mut probe = demo.lab.command(Host::Client, exe);
    probe
        .args([
            "probe",
            "--mode",
            "watch",
            "--interval-ms",
            "5",
            "--seconds",
            "8",
        ])
        .args([
            "--source",
            &demo.lab.ip(Host::Client).to_string(),
            "--target",
            &web4.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut probe = probe.spawn()?;
    let out = probe.stdout.take().context("probe output")?;
    let reader = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .filter_map(|v| Some((v["t"].as_f64()?, v["mac"].as_str()?.to_string())))
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(700));
    let killed_at = crate::unix_now();
    if let Some(s) = demo.speakers.get(&old_i) {
        s.signal(Signal::Kill)?;
    }
    let end = Instant::now() + Duration::from_secs(10);
    let new = loop {
        demo.check()?;
        if let Some(h) = demo.holder(*web).filter(|h| *h != old) {
            break h;
        }
        if Instant::now() > end {
            bail!("nobody took over {web}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(500));
    let _ = probe.kill();
    let _ = probe.wait();
    let replies = reader.join().map_err(|_| anyhow::anyhow!("probe reader"))?;
    let old_mac = demo.lab.mac(Host::Node(old_i));
    let last_old = replies
        .iter()
        .filter(|(_, m)| *m == old_mac)
        .map(|(t, _)| *t)
        .fold(killed_at, f64::max);
    let first_new = replies
        .iter()
        .filter(|(t, m)| *m != old_mac && *t >= killed_at)
        .map(|(t, _)| *t)
        .fold(f64::NAN, f64::min);
    if first_new.is_nan() {
        println!("   {new} holds {web} now, but the client saw no answer yet");
    } else {
        println!(
            "   the client was cut off for {:.0} ms; {new} answers for {web} now (lease TTL 2 s)",
            (first_new - last_old) * 1000.0
        );
    }
    println!("   curl http://{web}/ -> {}", demo.curl(*web));
    say("tearing the lab down");
    Ok(())
}

fn why_unclaimed(a: &serde_json::Value) -> String {
    let list = |k: &str| {
        a[k].as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    format!(
        "nodes [{}], interfaces [{}]",
        list("nodes"),
        list("interfaces")
    )
}
