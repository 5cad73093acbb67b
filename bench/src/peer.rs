//! Failover measured the same way for ferrolb and for a peer, keepalived (VRRPv3), in one lab:
//! a client asks for the address every 5 ms, each request from a MAC of its own, and a trial
//! faults the node answering (SIGKILL, SIGSTOP or interface down of its process or link). Per
//! trial: the takeover (from the fault to the first answer from another MAC), the client's gap
//! (from the old MAC's last answer before that to the first new one) and the requests answered
//! by two MACs. [`analyse`] is pure; the rest drives the lab.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferrolb_testkit::{Host, Lab, LabProcess, PREFIX4, Signal};
use serde::{Deserialize, Serialize};

/// What a trial does to the node answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Its process gets SIGKILL (a crash).
    Kill,
    /// Its process gets SIGSTOP (a freeze).
    Stop,
    /// Its interface goes down.
    LinkDown,
}

impl Fault {
    /// Every fault, with the name the table shows.
    pub const ALL: [(&'static str, Fault); 3] = [
        ("SIGKILL", Fault::Kill),
        ("SIGSTOP", Fault::Stop),
        ("interface down", Fault::LinkDown),
    ];
}

/// One reply the client saw.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Reply {
    /// When (Unix seconds).
    pub t: f64,
    /// Who answered.
    pub mac: String,
    /// The request it answers (none: gratuitous).
    #[serde(default)]
    pub seq: Option<u32>,
}

/// What one trial measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trial {
    /// From the fault to the first answer from another MAC, ms.
    pub takeover_ms: f64,
    /// From the old MAC's last answer before that to the first new one, ms (0 when the old
    /// MAC answered after it).
    pub gap_ms: f64,
    /// Requests answered by two or more MACs.
    pub answered_twice: usize,
    /// The MAC that took over.
    pub new_mac: String,
}

/// The trial in `replies` of a fault at `t_fault` to the node with `old_mac`; `None` when no
/// other MAC answered after the fault.
pub fn analyse(replies: &[Reply], t_fault: f64, old_mac: &str) -> Option<Trial> {
    let first_new = replies
        .iter()
        .filter(|r| r.mac != old_mac && r.t >= t_fault && r.seq.is_some())
        .min_by(|a, b| a.t.total_cmp(&b.t))?;
    let last_old = replies
        .iter()
        .filter(|r| r.mac == old_mac && r.t <= first_new.t)
        .map(|r| r.t)
        .fold(f64::NAN, f64::max);
    let mut by_request: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
    for r in replies {
        if let Some(seq) = r.seq {
            by_request.entry(seq).or_default().insert(&r.mac);
        }
    }
    let answered_twice = by_request.values().filter(|m| m.len() > 1).count();
    let old_answered_after = replies
        .iter()
        .any(|r| r.mac == old_mac && r.t > first_new.t && r.seq.is_some());
    let gap_ms = if last_old.is_nan() || old_answered_after {
        0.0
    } else {
        (first_new.t - last_old) * 1000.0
    };
    Some(Trial {
        takeover_ms: (first_new.t - t_fault) * 1000.0,
        gap_ms,
        answered_twice,
        new_mac: first_new.mac.clone(),
    })
}

/// A system that answers for one address on the lab's nodes.
pub trait System {
    /// The lab it runs in.
    fn lab(&self) -> &Lab;
    /// Faults `node` (1-based).
    fn fault(&mut self, node: usize, fault: Fault) -> anyhow::Result<()>;
    /// Undoes the fault on `node` (a crashed process is started again).
    fn restore(&mut self, node: usize, fault: Fault) -> anyhow::Result<()>;
    /// The end of its processes' logs, for a failed trial's message.
    fn logs(&self) -> String;
}

/// The node whose MAC is `mac`.
fn node_of(lab: &Lab, mac: &str) -> Option<usize> {
    (1..=lab.nodes()).find(|i| lab.mac(Host::Node(*i)) == mac)
}

/// Waits until exactly one node answers for `vip`, twice in a row; returns it.
fn stable_holder(lab: &Lab, vip: Ipv4Addr, timeout: Duration) -> anyhow::Result<usize> {
    let end = Instant::now() + timeout;
    let mut last = None;
    loop {
        let macs = lab.arping(Host::Client, vip, Duration::from_millis(300))?;
        let now = match macs.as_slice() {
            [one] => node_of(lab, one),
            _ => None,
        };
        if now.is_some() && now == last {
            return now.context("holder");
        }
        last = now;
        if Instant::now() > end {
            bail!("no single node answers for {vip} within {timeout:?} (last: {macs:?})");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One trial: waits for a single holder, watches from the client, faults the holder, waits for
/// another MAC to answer (up to `window`), then restores the node.
pub fn trial(
    system: &mut dyn System,
    vip: Ipv4Addr,
    fault: Fault,
    window: Duration,
) -> anyhow::Result<Trial> {
    let lab = system.lab();
    let old = stable_holder(lab, vip, Duration::from_secs(30))?;
    let old_mac = lab.mac(Host::Node(old));
    let exe = std::env::current_exe()?;
    let mut cmd = lab.command(Host::Client, exe);
    cmd.arg("probe")
        .args(["--mode", "watch", "--numbered", "--interval-ms", "5"])
        .arg("--source")
        .arg(lab.ip(Host::Client).to_string())
        .arg("--target")
        .arg(vip.to_string())
        .arg("--seconds")
        .arg((window.as_secs() + 3).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("the probe")?;
    let stdout = child.stdout.take().context("probe stdout")?;
    let seen: Arc<Mutex<Vec<Reply>>> = Arc::default();
    let into = seen.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(r) = serde_json::from_str::<Reply>(&line) {
                into.lock().map(|mut v| v.push(r)).ok();
            }
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    let t_fault = crate::unix_now();
    let faulted = system.fault(old, fault);
    let end = Instant::now() + window;
    while faulted.is_ok() && Instant::now() < end {
        let taken = seen
            .lock()
            .map(|v| v.iter().any(|r| r.mac != old_mac && r.t >= t_fault))
            .unwrap_or(false);
        if taken {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Answers from both after the takeover count too.
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let logs = system.logs();
    let restored = system.restore(old, fault);
    faulted?;
    restored?;
    let replies = seen.lock().map(|v| v.clone()).unwrap_or_default();
    analyse(&replies, t_fault, &old_mac).with_context(|| {
        format!(
            "no node but node{old} answered within {window:?} of the fault ({} replies seen)\n{logs}",
            replies.len()
        )
    })
}

/// keepalived (VRRPv3) on every node of the lab, for one address, with priorities 200, 150,
/// 100, ... and `advert_int`.
pub struct Keepalived<'a> {
    lab: &'a Lab,
    dir: PathBuf,
    advert_int: String,
    vip: Ipv4Addr,
    processes: Vec<Option<LabProcess>>,
}

impl<'a> Keepalived<'a> {
    /// Starts keepalived on every node.
    pub fn start(lab: &'a Lab, vip: Ipv4Addr, advert_int: &str) -> anyhow::Result<Self> {
        let dir = lab.log_dir().join(format!("keepalived-{advert_int}"));
        std::fs::create_dir_all(&dir)?;
        let mut k = Keepalived {
            lab,
            dir,
            advert_int: advert_int.to_string(),
            vip,
            processes: Vec::new(),
        };
        for i in 1..=lab.nodes() {
            let p = k.spawn(i)?;
            k.processes.push(Some(p));
        }
        Ok(k)
    }

    /// Its configuration on node `i`.
    fn config(&self, i: usize) -> String {
        let priority = 250usize.saturating_sub(50 * i).max(1);
        format!(
            "global_defs {{\n  vrrp_version 3\n  router_id node{i}\n  enable_script_security\n}}\n\
             vrrp_instance ferrolb_bench {{\n  state BACKUP\n  interface {iface}\n  \
             virtual_router_id 51\n  priority {priority}\n  advert_int {advert}\n  \
             virtual_ipaddress {{\n    {vip}/{prefix} dev {iface}\n  }}\n}}\n",
            iface = ferrolb_testkit::IFACE,
            advert = self.advert_int,
            vip = self.vip,
            prefix = PREFIX4,
        )
    }

    fn spawn(&self, i: usize) -> anyhow::Result<LabProcess> {
        let conf = self.dir.join(format!("node{i}.conf"));
        std::fs::write(&conf, self.config(i))?;
        let path = |name: &str| {
            self.dir
                .join(format!("node{i}.{name}"))
                .display()
                .to_string()
        };
        let conf = conf.display().to_string();
        let (pid, vrrp_pid) = (path("pid"), path("vrrp.pid"));
        // A crashed keepalived leaves its pid files, naming processes that may linger as
        // zombies: keepalived would take them for a running daemon and refuse to start.
        for stale in [&pid, &vrrp_pid] {
            let _ = std::fs::remove_file(stale);
        }
        let log = format!("keepalived-{}-node{i}.log", self.advert_int);
        Ok(self.lab.spawn(
            Host::Node(i),
            [
                "keepalived",
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--vrrp",
                "--use-file",
                conf.as_str(),
                "--pid",
                pid.as_str(),
                "--vrrp_pid",
                vrrp_pid.as_str(),
            ],
            &log,
        )?)
    }

    fn process(&self, node: usize) -> anyhow::Result<&LabProcess> {
        self.processes
            .get(node - 1)
            .and_then(Option::as_ref)
            .with_context(|| format!("no keepalived on node{node}"))
    }
}

impl System for Keepalived<'_> {
    fn lab(&self) -> &Lab {
        self.lab
    }

    fn logs(&self) -> String {
        tail_logs(self.processes.iter().flatten())
    }

    fn fault(&mut self, node: usize, fault: Fault) -> anyhow::Result<()> {
        match fault {
            // keepalived's VRRP process is a child of the one started; SIGKILL and SIGSTOP go
            // to the whole process group as a crash or a freeze of the program would.
            Fault::Kill => signal_group(self.process(node)?, Signal::Kill),
            Fault::Stop => signal_group(self.process(node)?, Signal::Stop),
            Fault::LinkDown => Ok(self.lab.set_link(Host::Node(node), false)?),
        }
    }

    fn restore(&mut self, node: usize, fault: Fault) -> anyhow::Result<()> {
        match fault {
            Fault::Kill => {
                if let Some(mut p) = self.processes[node - 1].take() {
                    let _ = p.kill();
                }
                // A crashed keepalived leaves its address on the interface (the kernel keeps
                // answering for it); a rebooted node would not have it.
                let _ = self.lab.exec(
                    Host::Node(node),
                    [
                        "ip",
                        "addr",
                        "del",
                        &format!("{}/{PREFIX4}", self.vip),
                        "dev",
                        ferrolb_testkit::IFACE,
                    ],
                );
                self.processes[node - 1] = Some(self.spawn(node)?);
            }
            Fault::Stop => signal_group(self.process(node)?, Signal::Cont)?,
            Fault::LinkDown => self.lab.set_link(Host::Node(node), true)?,
        }
        Ok(())
    }
}

/// The last lines of each process's log.
pub fn tail_logs<'p>(processes: impl Iterator<Item = &'p LabProcess>) -> String {
    processes
        .map(|p| {
            let log = p.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            format!("--- {}\n{tail}", p.log_path().display())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends `signal` to keepalived's processes: the one started and every descendant (its VRRP
/// child), the descendants first: a VRRP child that outlives its parent shuts down cleanly
/// (it resigns with priority 0), which a crash does not.
fn signal_group(p: &LabProcess, signal: Signal) -> anyhow::Result<()> {
    let mut pids = descendants(p.pid());
    pids.reverse();
    pids.push(p.pid());
    for pid in pids {
        let status = std::process::Command::new("kill")
            .arg(format!("-{}", signal.name()))
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{} {pid} failed", signal.name());
        }
    }
    Ok(())
}

/// Every descendant of `pid`, parents before their children (read from /proc).
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // "pid (comm) state ppid ...": the command may hold spaces and parentheses.
            let after = stat.rsplit_once(')')?.1;
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, _) in parents.iter().filter(|(_, pp)| *pp == parent) {
            out.push(*child);
            frontier.push(*child);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(t: f64, mac: &str, seq: Option<u32>) -> Reply {
        Reply {
            t,
            mac: mac.into(),
            seq,
        }
    }

    #[test]
    fn a_clean_takeover_has_a_gap_and_no_double_answer() {
        let replies = [
            r(10.000, "a", Some(1)),
            r(10.005, "a", Some(2)),
            r(10.300, "b", None), // gratuitous: not an answer to a request
            r(10.310, "b", Some(63)),
            r(10.315, "b", Some(64)),
        ];
        let t = analyse(&replies, 10.006, "a").expect("a takeover");
        assert!((t.takeover_ms - 304.0).abs() < 0.01, "{t:?}");
        assert!((t.gap_ms - 305.0).abs() < 0.01, "{t:?}");
        assert_eq!((t.answered_twice, t.new_mac.as_str()), (0, "b"));
    }

    #[test]
    fn requests_answered_by_two_macs_are_counted_and_the_gap_is_zero() {
        let replies = [
            r(10.000, "a", Some(1)),
            r(10.050, "b", Some(11)),
            r(10.050, "a", Some(11)),
            r(10.055, "c", Some(12)),
            r(10.055, "b", Some(12)),
            r(10.060, "b", Some(13)),
        ];
        let t = analyse(&replies, 10.001, "a").expect("a takeover");
        assert_eq!(t.answered_twice, 2);
        assert_eq!(t.gap_ms, 0.0, "the old MAC answered after the new one");
        assert!((t.takeover_ms - 49.0).abs() < 0.01);
    }

    #[test]
    fn without_another_mac_there_is_no_trial() {
        let replies = [r(10.0, "a", Some(1)), r(11.0, "a", Some(200))];
        assert_eq!(analyse(&replies, 10.5, "a"), None);
    }
}
