//! `ferrolb-lab-bench faults`: the fault suite of issue 7.
//!
//! Each scenario builds its own world: a lab of three nodes and a client on one bridge, etcd
//! (one member in the infrastructure namespace, or three on the nodes), the reconciler in file
//! mode with 100 Services on a 100-address pool, one speaker per node, an HTTP server on every
//! node (the addresses delivered locally, as kube-proxy would), and the monitor in the client
//! namespace asking for every address by ARP every 50 ms and fetching a page from each every
//! 250 ms. It injects its fault, measures what the client saw and what etcd holds, and says
//! whether what must hold held. The scenarios about the pool repository and the Kubernetes API
//! run the reconciler alone. The results go to a JSON file and a markdown report.

mod control;
mod hostile;
mod kubectl;
mod lan;
mod observe;
mod report;
mod wipe;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_testkit::{Etcd, EtcdCluster, Host, Lab, LabProcess};
use serde::Serialize;

use crate::monitor::Event;
use observe::Observations;

/// Arguments of `faults`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The scenarios to run (1-14), comma-separated; all by default.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<u8>,
    /// The long variants: etcd quorum lost for 30 s, 50 kill rounds, a minute of API faults,
    /// a minute of flood, a minute of hostile heartbeats, a longer stall. The short ones (the
    /// default) fit in CI.
    #[arg(long)]
    pub long: bool,
    /// How many times to run each scenario.
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// The directory holding the ferrolb binaries (default: next to this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench-results/faults.json")]
    pub out: PathBuf,
    /// Where to write the markdown report (none if not given).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Seed of the random choices (scenario 5); the time by default.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The speakers' and reconcilers' lease TTL, seconds.
const TTL: u32 = 2;
/// How many service addresses (and Services).
const ADDRESSES: u8 = 100;
/// The monitor's ARP round interval.
const ROUND: Duration = Duration::from_millis(50);
/// The monitor's HTTP interval per address.
const HTTP_EVERY: Duration = Duration::from_millis(250);
/// An address counts as answered "at every moment" when no gap is longer than this: two missed
/// rounds of the monitor, which a loaded two-core machine can lose without any fault.
const CONTINUOUS_MS: f64 = 150.0;

/// What one run of one scenario found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    /// Scenario number (1-14).
    pub scenario: u8,
    /// What it does.
    pub title: String,
    /// What must hold.
    pub must_hold: String,
    /// Whether everything that must hold held.
    pub passed: bool,
    /// The longest time any address went unanswered (ARP), milliseconds; `None` when the
    /// scenario has no client.
    pub longest_unanswered_ms: Option<f64>,
    /// Unanswered time of all addresses added up, milliseconds.
    pub total_unanswered_ms: Option<f64>,
    /// Requests answered by two MACs outside the documented `hold` overlap.
    pub double_answers: Option<usize>,
    /// Service statuses or announcements lost, changed or written twice when they must not be.
    pub lost: usize,
    /// Measured figures, one line each.
    pub figures: Vec<String>,
    /// What did not hold.
    pub failures: Vec<String>,
    /// How long the scenario took, seconds.
    pub seconds: f64,
}

impl Outcome {
    fn new(scenario: u8) -> Outcome {
        let (title, must_hold) = report::describe(scenario);
        Outcome {
            scenario,
            title: title.into(),
            must_hold: must_hold.into(),
            ..Outcome::default()
        }
    }

    /// Records `what` as a failure unless `ok`.
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(what());
        }
    }

    fn figure(&mut self, line: impl Into<String>) {
        self.figures.push(line.into());
    }
}

/// The suite's settings for one invocation.
#[derive(Clone, Debug)]
pub struct Settings {
    bin: PathBuf,
    long: bool,
    seed: u64,
}

impl Settings {
    fn exe(&self, name: &str) -> String {
        self.bin.join(name).to_string_lossy().into_owned()
    }
}

/// Runs the suite.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if !ferrolb_testkit::is_root() {
        bail!("the fault suite needs root (network namespaces and raw sockets)");
    }
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .to_path_buf(),
    };
    let seed = args.seed.unwrap_or_else(|| crate::unix_now() as u64);
    let settings = Settings {
        bin,
        long: args.long,
        seed,
    };
    let scenarios: Vec<u8> = if args.scenarios.is_empty() {
        (1..=14).collect()
    } else {
        args.scenarios.clone()
    };
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for &n in &scenarios {
        for run in 1..=args.runs.max(1) {
            eprintln!("== scenario {n} (run {run}): {}", report::describe(n).0);
            let t = Instant::now();
            let mut o = match run_one(n, &settings) {
                Ok(o) => o,
                Err(e) => {
                    let mut o = Outcome::new(n);
                    o.failures
                        .push(format!("the scenario could not run: {e:#}"));
                    o
                }
            };
            o.passed = o.failures.is_empty();
            o.seconds = t.elapsed().as_secs_f64();
            eprintln!(
                "   {} in {:.0} s{}",
                if o.passed { "passed" } else { "FAILED" },
                o.seconds,
                o.failures
                    .iter()
                    .map(|f| format!("\n   - {f}"))
                    .collect::<String>()
            );
            outcomes.push(o);
        }
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&outcomes)?)?;
    let text = report::markdown(&outcomes, args, seed, started.elapsed());
    if let Some(path) = &args.report {
        std::fs::write(path, &text).with_context(|| format!("{}", path.display()))?;
    }
    println!("{}", report::table(&outcomes));
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if failed > 0 {
        bail!("{failed} of {} scenario runs failed", outcomes.len());
    }
    Ok(())
}

fn run_one(n: u8, s: &Settings) -> anyhow::Result<Outcome> {
    match n {
        1 => lan::etcd_down(s),
        2 => lan::etcd_restarted(s),
        3 => lan::holder_cut_from_etcd(s),
        4 => lan::holder_link_down(s),
        5 => lan::kill_rounds(s),
        6 => control::reconciler_leader_killed(s),
        7 => control::repository_faults(s),
        8 => control::api_faults(s),
        9 => lan::flood(s),
        10 => lan::etcd_cluster_losses(s),
        11 => hostile::hostile_lan_host(s),
        12 => hostile::stalled_holder(s),
        13 => kubectl::l2_status_follows_a_failover(s),
        14 => wipe::etcd_wiped(s),
        _ => bail!("there is no scenario {n} (1-14)"),
    }
}

/// Where etcd runs.
enum Store {
    One(Etcd),
    Three(EtcdCluster),
}

/// The monitor process and what it reported so far.
struct Monitor {
    child: Child,
    seen: Arc<Mutex<Observations>>,
    reader: Option<JoinHandle<()>>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// A running system in a lab.
struct World {
    lab: Lab,
    store: Store,
    speakers: Vec<Option<LabProcess>>,
    reconcilers: Vec<LabProcess>,
    servers: Vec<LabProcess>,
    monitor: Option<Monitor>,
    dir: tempfile::TempDir,
    settings: Settings,
    targets: Vec<Ipv4Addr>,
    /// Flags every speaker of this world starts with (also when started again).
    speaker_args: Vec<String>,
    /// The monitor's ARP round interval ([`ROUND`] unless a scenario asks for finer rounds).
    round: Duration,
}

impl Drop for World {
    /// FERROLB_FAULTS_LOGS=DIR keeps the processes' logs, etcd's too, for looking into a failure.
    fn drop(&mut self) {
        if let Some(dir) = std::env::var_os("FERROLB_FAULTS_LOGS") {
            let dir = PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            if let Ok(entries) = std::fs::read_dir(self.lab.log_dir()) {
                for e in entries.flatten() {
                    let _ = std::fs::copy(e.path(), dir.join(e.file_name()));
                }
            }
            let members = match &self.store {
                Store::One(e) => std::slice::from_ref(e),
                Store::Three(c) => c.members(),
            };
            for (i, m) in members.iter().enumerate() {
                let _ = std::fs::copy(m.log_path(), dir.join(format!("etcd-member{i}.log")));
            }
        }
    }
}

/// How all addresses fared over a window.
struct Overall {
    /// The longest gap of any address, milliseconds.
    longest: f64,
    /// All gaps added up, milliseconds.
    total: f64,
    /// Rounds answered by two MACs: (address, send time).
    doubles: Vec<(Ipv4Addr, f64)>,
}

/// The pool configuration of every world: the lab's 100 addresses, announced from every node.
fn pools(range: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: lab, namespace: metallb-system}}\n\
         spec:\n  addresses: [{range}]\n---\n\
         apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: lab, namespace: metallb-system}}\n\
         spec:\n  ipAddressPools: [lab]\n"
    )
}

/// `n` Services, `svc-000` onwards, created a second apart (so allocation follows their order).
fn services(n: u8) -> String {
    (0..n)
        .map(|k| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{k:03}\n  namespace: default\n  \
                 creationTimestamp: \"2026-01-01T00:{:02}:{:02}Z\"\nspec:\n  type: LoadBalancer\n  \
                 ports:\n    - {{port: 80}}\n",
                k / 60,
                k % 60
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The key/value pairs under `prefix`, from `etcdctl get --prefix` output.
fn pairs(text: &str) -> BTreeMap<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

fn node_index(node: &str) -> anyhow::Result<usize> {
    node.trim_start_matches("node")
        .parse()
        .with_context(|| format!("not a lab node name: {node}"))
}

impl World {
    /// Builds a world; `cluster` puts a three-member etcd on the nodes instead of one member in
    /// the infrastructure namespace; `reconcilers` replicas.
    fn start(settings: &Settings, cluster: bool, reconcilers: usize) -> anyhow::Result<World> {
        World::start_with(settings, cluster, reconcilers, |_| Ok(Vec::new()))
    }

    /// [`World::start`] with speakers started with the flags `speaker_args` returns; it is given
    /// the world's temporary directory, for files the flags name.
    fn start_with(
        settings: &Settings,
        cluster: bool,
        reconcilers: usize,
        speaker_args: impl FnOnce(&std::path::Path) -> anyhow::Result<Vec<String>>,
    ) -> anyhow::Result<World> {
        let lab = Lab::new(3)?;
        let store = if cluster {
            let places: Vec<(&str, Ipv4Addr)> = (1..=3)
                .map(|i| (lab.ns(Host::Node(i)), lab.ip(Host::Node(i))))
                .collect();
            Store::Three(EtcdCluster::start_in_netns(&places)?)
        } else {
            Store::One(lab.start_etcd()?)
        };
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("pools"))?;
        std::fs::create_dir_all(dir.path().join("services"))?;
        std::fs::write(dir.path().join("pools/lab.yaml"), pools(&lab.vip_range4()))?;
        std::fs::write(dir.path().join("services/lab.yaml"), services(ADDRESSES))?;
        let targets = (0..ADDRESSES).map(|k| lab.vip4(k)).collect();
        let speaker_args = speaker_args(dir.path())?;
        let mut w = World {
            lab,
            store,
            speakers: Vec::new(),
            reconcilers: Vec::new(),
            servers: Vec::new(),
            monitor: None,
            dir,
            settings: settings.clone(),
            targets,
            speaker_args,
            round: ROUND,
        };
        w.serve_http()?;
        for k in 0..reconcilers {
            let r = w.spawn_reconciler(k)?;
            w.reconcilers.push(r);
        }
        for i in 1..=3 {
            let s = w.spawn_speaker(i)?;
            w.speakers.push(Some(s));
        }
        w.start_monitor()?;
        w.wait_settled(Duration::from_secs(30))
            .context("the world did not settle")?;
        Ok(w)
    }

    fn endpoints(&self) -> String {
        match &self.store {
            Store::One(e) => e.endpoints(),
            Store::Three(c) => c.endpoints(),
        }
    }

    /// `etcdctl` on a running member.
    fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        match &self.store {
            Store::One(e) => Ok(e.ctl(args)?),
            Store::Three(c) => {
                let mut last = None;
                for i in 0..c.len() {
                    if c.member(i).pid().is_none() {
                        continue;
                    }
                    match c.member(i).ctl(args) {
                        Ok(out) => return Ok(out),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.map_or_else(|| anyhow::anyhow!("no etcd member runs"), Into::into))
            }
        }
    }

    /// Every key/value under `P/<dir>/`.
    fn prefix(&self, dir: &str) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(pairs(&self.ctl(&[
            "get",
            "--prefix",
            &format!("/ferrolb/{dir}/"),
        ])?))
    }

    /// The node holding each claimed address.
    fn claims(&self) -> anyhow::Result<BTreeMap<Ipv4Addr, String>> {
        Ok(self
            .prefix("claims")?
            .into_iter()
            .filter_map(|(k, v)| {
                let ip = k.rsplit('/').next()?.parse().ok()?;
                let v: serde_json::Value = serde_json::from_str(&v).ok()?;
                Some((ip, v["node"].as_str()?.to_string()))
            })
            .collect())
    }

    fn mac_of(&self, node: &str) -> anyhow::Result<String> {
        Ok(self.lab.mac(Host::Node(node_index(node)?)))
    }

    fn spawn_speaker(&self, i: usize) -> anyhow::Result<LabProcess> {
        let extra: Vec<&str> = self.speaker_args.iter().map(String::as_str).collect();
        crate::spawn_speaker(
            &self.lab,
            &self.settings.bin.join("ferrolb-speaker"),
            i,
            &self.endpoints(),
            TTL,
            &extra,
        )
    }

    fn spawn_reconciler(&self, k: usize) -> anyhow::Result<LabProcess> {
        let ttl = TTL.to_string();
        crate::spawn_reconciler(
            &self.lab,
            &self.settings.bin.join("ferrolb-reconciler"),
            &self.dir.path().join("pools"),
            &self.dir.path().join("services"),
            &self.endpoints(),
            &format!("127.0.0.1:{}", 7473 + k),
            &["--lease-ttl", &ttl],
        )
    }

    /// An HTTP server on every node, and every address delivered locally there (kube-proxy's
    /// job); `arp_ignore=1` so that only the speakers answer ARP for them.
    fn serve_http(&mut self) -> anyhow::Result<()> {
        let exe = self.settings.exe("ferrolb-lab-bench");
        for i in 1..=3 {
            for key in [
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.eth0.arp_ignore=1",
            ] {
                self.lab
                    .exec_ok(Host::Node(i), ["sysctl", "-q", "-w", key])?;
            }
            for ip in &self.targets {
                let cidr = format!("{ip}/32");
                self.lab.exec_ok(
                    Host::Node(i),
                    [
                        "ip", "route", "add", "local", &cidr, "dev", "lo", "table", "local",
                    ],
                )?;
            }
            let text = format!("node{i}");
            let p = self.lab.spawn(
                Host::Node(i),
                [exe.as_str(), "serve", "--port", "80", "--text", &text],
                &format!("http-node{i}.log"),
            )?;
            self.servers.push(p);
        }
        Ok(())
    }

    fn start_monitor(&mut self) -> anyhow::Result<()> {
        let exe = self.settings.exe("ferrolb-lab-bench");
        let targets: Vec<String> = self.targets.iter().map(ToString::to_string).collect();
        let mut child = self
            .lab
            .command(Host::Client, exe)
            .args(["monitor", "--source"])
            .arg(self.lab.ip(Host::Client).to_string())
            .arg("--targets")
            .arg(targets.join(","))
            .arg("--interval-ms")
            .arg(self.round.as_millis().to_string())
            .arg("--http-interval-ms")
            .arg(HTTP_EVERY.as_millis().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("the monitor")?;
        let stdout = child.stdout.take().context("monitor stdout")?;
        let seen = Arc::new(Mutex::new(Observations::default()));
        let sink = seen.clone();
        // FERROLB_FAULTS_DUMP=FILE keeps the monitor's raw output, for looking into a failure.
        let mut dump =
            std::env::var_os("FERROLB_FAULTS_DUMP").and_then(|p| std::fs::File::create(p).ok());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(f) = dump.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if let Ok(e) = serde_json::from_str::<Event>(&line)
                    && let Ok(mut s) = sink.lock()
                {
                    s.push(e);
                }
            }
        });
        self.monitor = Some(Monitor {
            child,
            seen,
            reader: Some(reader),
        });
        Ok(())
    }

    /// Runs `f` over what the monitor saw so far.
    fn seen<T>(&self, f: impl FnOnce(&Observations) -> T) -> anyhow::Result<T> {
        let m = self.monitor.as_ref().context("no monitor")?;
        let s = m
            .seen
            .lock()
            .map_err(|_| anyhow::anyhow!("monitor reader panicked"))?;
        Ok(f(&s))
    }

    /// Why the world is not settled: an address without a claim, or not answered by its claim
    /// holder's MAC alone in the newest round at least 150 ms old.
    fn unsettled(&self) -> anyhow::Result<Option<String>> {
        let claims = self.claims()?;
        let before = crate::unix_now() - 0.15;
        for ip in &self.targets {
            let Some(node) = claims.get(ip) else {
                return Ok(Some(format!("{ip} has no claim")));
            };
            let mac = self.mac_of(node)?;
            let seen = self.seen(|o| o.current_macs(*ip, before))?;
            if seen.len() != 1 || !seen.contains(&mac) {
                return Ok(Some(format!(
                    "{ip} is claimed by {node} ({mac}) but answered by {seen:?}"
                )));
            }
        }
        Ok(None)
    }

    /// Waits until every address has exactly one holder and the client sees exactly that
    /// holder answer; returns how long that took.
    fn wait_settled(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let why = match self.unsettled() {
                Ok(None) => return Ok(start.elapsed()),
                Ok(Some(why)) => why,
                Err(e) => format!("{e:#}"),
            };
            if start.elapsed() > timeout {
                bail!("not settled after {timeout:?}: {why}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Availability of all addresses over `[from, to]`: the longest gap, the sum of gaps, and
    /// the rounds answered by two MACs (address, send time).
    fn availability(&self, from: f64, to: f64) -> anyhow::Result<Overall> {
        self.seen(|o| {
            let mut longest: f64 = 0.0;
            let mut total = 0.0;
            let mut doubles = Vec::new();
            for ip in &self.targets {
                let a = o.availability(*ip, from, to, self.round.as_secs_f64());
                longest = longest.max(a.longest_ms);
                total += a.total_ms;
                doubles.extend(a.doubles.iter().map(|t| (*ip, *t)));
            }
            Overall {
                longest,
                total,
                doubles,
            }
        })
    }

    /// The longest HTTP outage over `[from, to]` and the number of failed requests.
    fn http(&self, from: f64, to: f64) -> anyhow::Result<(f64, usize)> {
        self.seen(|o| {
            self.targets.iter().fold((0.0f64, 0usize), |(l, f), ip| {
                let (longest, failed) = o.http(*ip, from, to, HTTP_EVERY.as_secs_f64());
                (l.max(longest), f + failed)
            })
        })
    }

    /// Fills the client-side figures of `o` over `[from, to]`; doubles before `allowed_until`
    /// (per address) are the documented overlap and are not counted.
    fn measure(
        &self,
        o: &mut Outcome,
        from: f64,
        to: f64,
        allowed_until: &BTreeMap<Ipv4Addr, f64>,
    ) -> anyhow::Result<()> {
        let Overall {
            longest,
            total,
            doubles,
        } = self.availability(from, to)?;
        let doubles: Vec<_> = doubles
            .into_iter()
            .filter(|(ip, t)| allowed_until.get(ip).is_none_or(|until| t > until))
            .collect();
        let (http_longest, http_failed) = self.http(from, to)?;
        o.longest_unanswered_ms = Some(longest);
        o.total_unanswered_ms = Some(total);
        o.double_answers = Some(doubles.len());
        o.figure(format!(
            "HTTP: longest outage {http_longest:.0} ms, {http_failed} failed requests"
        ));
        o.check(doubles.is_empty(), || {
            format!(
                "{} requests answered by two MACs, first for {}",
                doubles.len(),
                doubles[0].0
            )
        });
        Ok(())
    }

    fn speaker(&mut self, i: usize) -> anyhow::Result<&mut LabProcess> {
        self.speakers
            .get_mut(i - 1)
            .and_then(Option::as_mut)
            .with_context(|| format!("speaker {i} is not running"))
    }

    fn logs(&self) -> String {
        self.speakers
            .iter()
            .flatten()
            .chain(&self.reconcilers)
            .map(|p| {
                let log = p.log();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

/// A small deterministic random number generator (xorshift64*), for reproducible choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdctl_pairs_are_read_two_lines_at_a_time() {
        let p =
            pairs("/ferrolb/claims/10.0.0.1\n{\"node\":\"node1\"}\n/ferrolb/claims/10.0.0.2\n{}\n");
        assert_eq!(p.len(), 2);
        assert_eq!(p["/ferrolb/claims/10.0.0.1"], "{\"node\":\"node1\"}");
    }

    #[test]
    fn the_generated_configuration_and_services_validate_and_allocate_in_order() {
        let text = pools("10.250.7.100-10.250.7.199");
        let report = ferrolb_core::config::load([("lab.yaml", text.as_bytes())]);
        assert!(
            report.is_valid(true),
            "{:?}",
            report.errors().collect::<Vec<_>>()
        );
        let text = services(100);
        assert_eq!(text.matches("kind: Service").count(), 100);
        assert!(text.contains("name: svc-099") && text.contains("\"2026-01-01T00:01:39Z\""));
    }

    #[test]
    fn the_random_choices_stay_in_range_and_repeat_with_the_seed() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..100).map(|_| a.below(3)).collect();
        assert!(xs.iter().all(|x| *x < 3));
        assert!((0..3).all(|v| xs.contains(&v)));
        assert_eq!(xs, (0..100).map(|_| b.below(3)).collect::<Vec<_>>());
    }
}
