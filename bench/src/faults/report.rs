//! The reliability report: a table per scenario over all runs, then each run's figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::{Args, CONTINUOUS_MS, Outcome};

/// Title and what must hold, per scenario.
pub fn describe(n: u8) -> (&'static str, &'static str) {
    match n {
        1 => (
            "etcd down for 30 s and back (`hold`)",
            "no address unanswered at any moment; no address changes node afterwards",
        ),
        2 => (
            "etcd killed and started again with the same data",
            "no address unanswered at any moment; no address changes node afterwards",
        ),
        3 => (
            "the holder cut off from etcd, not from the LAN",
            "a new node answers within TTL + 1 s; the cut-off node stops answering within 100 ms \
             of the new holder's gratuitous ARP; never again two MACs for one request",
        ),
        4 => (
            "the holder's interface goes down",
            "its addresses move within TTL + 1 s; one holder per address afterwards",
        ),
        5 => (
            "rounds of SIGKILL and restart of a random speaker, 100 addresses",
            "every round ends with exactly one holder per address, claims and ARP agreeing; the \
             unanswered time is reported",
        ),
        6 => (
            "the reconciler leader killed",
            "the standby leads within TTL + 1 s; no announcement changes or is rewritten",
        ),
        7 => (
            "pool repository faults: unreachable remote, broken YAML, 100 MiB file, alias bomb, \
             force-push, every pool deleted",
            "the last good configuration stays in force (deletion is a valid change and is \
             applied); the reconciler stays up within 256 MiB; the error is visible",
        ),
        8 => (
            "Kubernetes API: 500s, 409 conflicts and hanging requests",
            "every Service gets its status once the API is back; none written twice; all \
             announced",
        ),
        9 => (
            "a flood of ARP requests and malformed frames at a speaker",
            "legitimate requests answered (no gap over 250 ms); the speaker stays under one core \
             and 64 MiB, and alive",
        ),
        10 => (
            "three-member etcd: the leader member lost, then a second (quorum lost)",
            "with one member lost nothing moves; with quorum lost every address stays answered; \
             nothing moves when quorum returns",
        ),
        11 => (
            "a hostile LAN host: forged, replayed and junk heartbeats (unsigned, then signed)",
            "no registration lease of a live speaker changes; no address changes node; no \
             request answered by two MACs; no address unanswered longer than 150 ms",
        ),
        12 => (
            "the holder's event loop stalls for 4 s (8 s long)",
            "its addresses move within TTL + 1 s, its lease ended by the others' heartbeats; it \
             answers nothing after --suspect-after and a round; no request answered by two MACs \
             at any time; it comes back on a new lease; the other addresses stay answered",
        ),
        13 => (
            "the holder of a Service's address is killed (real kube-apiserver; 3 rounds, 10 long)",
            "the Service's ServiceL2Status names the new holder within 1 s of its claim in etcd",
        ),
        14 => (
            "etcd wiped while the speakers answer: every key deleted, then etcd down 3 s and \
             back empty (real kube-apiserver)",
            "every address announced and claimed again within 10 s, by the node that held it \
             (some were moved off their first-ranked node before); no Service address or \
             status changes; never two MACs for one request; `hold` answers throughout: no gap \
             over 150 ms in either phase",
        ),
        _ => ("unknown scenario", ""),
    }
}

/// What the heartbeat defences cost, in every report: the figures are benchmarks' (they need a
/// quiet machine and a release build), the report says where.
const DEFENCES: &str = "The heartbeat defences scenarios 11 and 12 exercise, and what they cost \
(measured in `docs/BENCHMARKS.md`, \"What the heartbeat defences cost\"): a heard heartbeat \
counts only on the lease etcd says its node is on, and a signed one only with a higher sequence \
number (a map lookup under a mutex per frame heard, in place of a channel send); the answering \
fence closes a speaker's responders `--suspect-after` after its last heartbeat (a clock read and \
two atomic loads per answer; the failover times with it are in the same section); \
`--heartbeat-key-file` adds one \
HMAC-SHA256 per frame sent and per signed frame heard. Scenario 11 reports the speakers' CPU \
under thousands of hostile heartbeat frames a second.\n\n";

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0} ms"))
}

/// One line per scenario over all its runs.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut by: BTreeMap<u8, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        by.entry(o.scenario).or_default().push(o);
    }
    let mut t = String::from(
        "| # | scenario | runs | passes | longest unanswered | two MACs for one request | \
         statuses / announcements lost |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (n, runs) in &by {
        let longest = runs
            .iter()
            .filter_map(|o| o.longest_unanswered_ms)
            .reduce(f64::max);
        let doubles = runs
            .iter()
            .filter_map(|o| o.double_answers)
            .reduce(|a, b| a + b);
        let lost: usize = runs.iter().map(|o| o.lost).sum();
        let _ = writeln!(
            t,
            "| {n} | {} | {} | {} | {} | {} | {lost} |",
            describe(*n).0,
            runs.len(),
            runs.iter().filter(|o| o.passed).count(),
            ms(longest),
            doubles.map_or_else(|| "n/a".to_string(), |d| d.to_string()),
        );
    }
    t
}

/// The whole report.
pub fn markdown(outcomes: &[Outcome], args: &Args, seed: u64, took: Duration) -> String {
    let mut m = String::from("# Reliability report\n\n");
    let _ = writeln!(
        m,
        "Generated by `ferrolb-lab-bench faults{}{}` (seed {seed}) on {}, in {:.0} s, on a \
         {}-core machine. Regenerate it with `make faults` (short variants) or `make \
         faults-long`; do not edit it by hand.\n",
        if args.long { " --long" } else { "" },
        if args.runs > 1 {
            format!(" --runs {}", args.runs)
        } else {
            String::new()
        },
        today(),
        took.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    m.push_str(
        "Each scenario runs in a lab of network namespaces with real etcd, real speakers and a \
         real reconciler (scenarios 7 and 8: the reconciler alone, on a Git remote and on the \
         fake Kubernetes API; scenario 13: on the real kube-apiserver, without the client; \
         scenario 14: on the real kube-apiserver with four Services, the client asking every 20 \
         ms). The client asks for each of the 100 addresses by ARP every 50 ms, \
         each round from a requester MAC of its own so that two MACs answering one request are \
         seen, and fetches a page from each address every 250 ms. \"Longest unanswered\" is the \
         longest run of unanswered rounds for any address; an address counts as answered at \
         every moment when that stays within ",
    );
    let _ = write!(
        m,
        "{CONTINUOUS_MS:.0} ms (two rounds of the monitor). Two MACs answering during the \
         documented `hold` overlap (up to 100 ms after the new holder's gratuitous ARP, scenarios \
         3 and 4) are not counted.\n\n"
    );
    m.push_str(DEFENCES);
    m.push_str(&table(outcomes));
    m.push_str("\n## Runs\n");
    for o in outcomes {
        let _ = write!(
            m,
            "\n### {}. {} — {} ({:.0} s)\n\nMust hold: {}.\n\n",
            o.scenario,
            o.title,
            if o.passed { "passed" } else { "FAILED" },
            o.seconds,
            o.must_hold
        );
        if let Some(l) = o.longest_unanswered_ms {
            let _ = writeln!(
                m,
                "- longest unanswered: {l:.0} ms; all unanswered time added up: {:.0} ms; \
                 requests answered by two MACs: {}",
                o.total_unanswered_ms.unwrap_or(0.0),
                o.double_answers.unwrap_or(0)
            );
        }
        for f in &o.figures {
            let _ = writeln!(m, "- {f}");
        }
        for f in &o.failures {
            let _ = writeln!(m, "- **did not hold:** {f}");
        }
    }
    m
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
