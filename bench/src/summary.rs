//! `ferrolb-lab-bench summary`: gathers every benchmark's figures into one JSON document
//! (`target/bench-results.json`) and prints a readable summary. It reads what the other
//! benchmarks left: criterion's estimates (`target/criterion/**/new/estimates.json`), the plan
//! timings (`target/bench-results/plan.txt`), and the lab, reconciler and Kubernetes results
//! (`target/bench-results/{speaker,reconciler,kube}.json`). Missing parts are reported as such.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Arguments of `summary`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The cargo target directory.
    #[arg(long, default_value = "target")]
    pub target: PathBuf,
}

/// Every `new/estimates.json` under `dir`, as benchmark id → median in milliseconds.
fn criterion(dir: &Path) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.ends_with("new/estimates.json") {
                let id = p
                    .strip_prefix(dir)
                    .ok()
                    .and_then(|r| r.parent()?.parent())
                    .map(|r| r.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let median = std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|v| v["median"]["point_estimate"].as_f64());
                if let (false, Some(ns)) = (id.is_empty() || id.contains("report"), median) {
                    out.insert(id, ns / 1e6);
                }
            }
        }
    }
    out
}

/// `plan services=N run=R wall=Xs maxrss=YKB` lines.
fn plan_runs(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| {
            let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k));
            Some(json!({
                "services": field("services=")?.parse::<u64>().ok()?,
                "wall_s": field("wall=")?.trim_end_matches('s').parse::<f64>().ok()?,
                "maxrss_kib": field("maxrss=")?.trim_end_matches("KB").parse::<u64>().ok()?,
            }))
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// Runs `summary`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let results = args.target.join("bench-results");
    let crit = criterion(&args.target.join("criterion"));
    let plan = std::fs::read_to_string(results.join("plan.txt"))
        .map(|t| plan_runs(&t))
        .unwrap_or_default();
    let doc = json!({
        "criterion_median_ms": crit,
        "plan": plan,
        "speaker_lab": read_json(&results.join("speaker.json")),
        "reconciler_changes": read_json(&results.join("reconciler.json")),
        "reconciler_kubernetes": read_json(&results.join("kube.json")),
    });
    let out = args.target.join("bench-results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    println!("# ferrolb benchmark summary ({})\n", out.display());
    println!("## criterion (median)");
    if crit.is_empty() {
        println!("(not run: `cargo bench -p ferrolb-core`)");
    }
    for (id, ms) in &crit {
        println!("- {id}: {ms:.2} ms");
    }
    println!("\n## ferrolb plan as a process");
    if plan.is_empty() {
        println!("(not run: scripts/bench-plan.sh)");
    }
    for p in &plan {
        println!(
            "- {} Services: {} s, {} KiB",
            p["services"], p["wall_s"], p["maxrss_kib"]
        );
    }
    let s = &doc["speaker_lab"];
    println!("\n## speaker in the lab");
    if s.is_null() {
        println!("(not run: ferrolb-lab-bench run, as root)");
    } else {
        println!(
            "- crash failover (TTL {} s): median {:.0} ms, max {:.0} ms\n- graceful handover: median {:.1} ms, max {:.1} ms\n- ARP reply latency speaker/kernel: {:.3}/{:.3} ms (ratio {:.2})\n- CPU at {:.0} requests/s: {:.1} %\n- memory idle / 1,000 addresses: {} / {} KiB\n- etcd writes per minute in steady state: {}",
            s["lease_ttl_s"],
            s["crash_failover"]["median_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            s["crash_failover"]["max_ms"].as_f64().unwrap_or(f64::NAN),
            s["graceful_handover"]["median_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            s["graceful_handover"]["max_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            s["reply_latency_speaker"]["median_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            s["reply_latency_kernel"]["median_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            s["reply_latency_ratio"].as_f64().unwrap_or(f64::NAN),
            s["flood_requests_per_s"].as_f64().unwrap_or(f64::NAN),
            s["flood_cpu_percent"].as_f64().unwrap_or(f64::NAN),
            s["rss_idle_kib"],
            s["rss_1000_kib"],
            s["etcd_writes_per_minute"],
        );
    }
    let r = &doc["reconciler_changes"];
    println!("\n## configuration changes to etcd");
    if r.is_null() {
        println!("(not run: ferrolb-lab-bench reconciler)");
    } else {
        for (name, key) in [
            ("pool file replaced", "directory_change"),
            ("git push (poll)", "git_poll"),
            ("webhook", "git_webhook"),
        ] {
            println!(
                "- {name}: median {:.0} ms, max {:.0} ms",
                r[key]["median_ms"].as_f64().unwrap_or(f64::NAN),
                r[key]["max_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    let k = &doc["reconciler_kubernetes"];
    println!("\n## reconciler against Kubernetes API servers");
    if k.is_null() {
        println!("(not run: ferrolb-lab-bench kube)");
    }
    for (name, server) in [("real kube-apiserver", "real"), ("fake API server", "fake")] {
        let k = &k[server];
        if k.is_null() {
            continue;
        }
        println!(
            "- {name}: {} Services synced in {:.2} s with {} status writes; CPU reconciler {} s, server {} s; after a restart: {} writes, {} announcements rewritten",
            k["services"],
            k["sync_seconds"].as_f64().unwrap_or(f64::NAN),
            k["status_writes"],
            k["reconciler_cpu_seconds"],
            k["server_cpu_seconds"],
            k["writes_after_restart"],
            k["announcements_rewritten"],
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_lines_are_read() {
        let runs = plan_runs("plan services=10000 run=1 wall=0.13s maxrss=29224KB\nnoise\n");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["services"], 10000);
        assert_eq!(runs[0]["maxrss_kib"], 29224);
    }
}
