//! `ferrolb plan`: what the reconciler would do with these pools and Services, without a cluster.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ferrolb_core::alloc::{Allocator, Decision, Outcome, PoolUsage, ServiceRequest};
use ferrolb_core::announce;
use ferrolb_core::config::Config;
use ferrolb_core::diag::escape_controls;
use ferrolb_core::load;
use ferrolb_core::net::Count;
use ferrolb_core::service;
use serde::Serialize;

use crate::validate::{EXIT_UNREADABLE, load_report, print_diagnostics};

/// Output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Like `kubectl get svc`, then each pool's use.
    #[default]
    Table,
    /// A JSON array, one object per Service.
    Json,
}

/// Arguments of `ferrolb plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pool configuration: a file or a directory (read recursively).
    #[arg(long, required = true)]
    pub config: Vec<PathBuf>,
    /// Service manifests: a file or a directory (read recursively); `status.loadBalancer.ingress`
    /// is taken as the current state.
    #[arg(long, required = true)]
    pub services: Vec<PathBuf>,
    /// Serve only Services of this loadBalancerClass (default: only Services without a class).
    #[arg(long)]
    pub lb_class: Option<String>,
    /// Namespace MetalLB runs in: pool objects of other namespaces are ignored with a warning
    /// (default: read every namespace, and warn when the objects name several).
    #[arg(long, value_parser = crate::validate::parse_namespace)]
    pub config_namespace: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Serialize)]
struct Row<'a> {
    namespace: &'a str,
    name: &'a str,
    state: &'static str,
    ips: &'a [IpAddr],
    pool: Option<&'a str>,
    reason: Option<String>,
    previous_ips: &'a [IpAddr],
    /// The L2Advertisements that would announce its addresses (after `serviceSelectors`).
    advertisements: Vec<String>,
}

/// For each allocated Service, the L2Advertisements covering its addresses: those of its pool
/// without `serviceSelectors` and those selecting at least one Service at the address (all the
/// Services of a shared address count), as the reconciler builds announcements.
fn announced_by(
    config: &Config,
    decisions: &[Decision],
    requests: &[ServiceRequest],
) -> Vec<Vec<String>> {
    let mut at: BTreeMap<IpAddr, Vec<&ServiceRequest>> = BTreeMap::new();
    for (d, r) in decisions.iter().zip(requests) {
        for ip in d.outcome.ips() {
            at.entry(*ip).or_default().push(r);
        }
    }
    decisions
        .iter()
        .map(|d| {
            let Some(pool) = d.outcome.pool().and_then(|p| config.pool(p)) else {
                return Vec::new();
            };
            let mut names: Vec<String> = d
                .outcome
                .ips()
                .iter()
                .flat_map(|ip| {
                    let services = at.get(ip).map(Vec::as_slice).unwrap_or_default();
                    announce::advertisements_at(config, pool, services.iter().map(|s| &s.labels))
                })
                .map(|a| a.name.clone())
                .collect();
            names.sort();
            names.dedup();
            names
        })
        .collect()
}

fn row(d: &Decision, advertisements: Vec<String>) -> Row<'_> {
    let (state, reason) = match &d.outcome {
        Outcome::Allocated { .. } => ("allocated", None),
        Outcome::Pending { reason } => ("pending", Some(reason.to_string())),
        Outcome::Ignored { reason } => ("ignored", Some(reason.to_string())),
    };
    Row {
        namespace: &d.key.namespace,
        name: &d.key.name,
        state,
        ips: d.outcome.ips(),
        pool: d.outcome.pool(),
        reason,
        previous_ips: &d.previous,
        advertisements,
    }
}

/// Runs `ferrolb plan`.
pub fn run(args: &Args) -> ExitCode {
    let report = match load_report(&args.config, args.config_namespace.as_deref()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    print_diagnostics(&report);
    let Some(config) = report.config else {
        eprintln!("ferrolb: the pool configuration is invalid; nothing planned");
        return ExitCode::FAILURE;
    };
    let files = match load::read_paths(&args.services) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ferrolb: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let manifests = service::load(files.iter().map(|f| (f.name.as_str(), f.bytes.as_slice())));
    for d in &manifests.diagnostics {
        eprintln!("{d}");
    }
    if !manifests.diagnostics.is_empty() {
        eprintln!("ferrolb: some Service manifests are invalid; nothing planned");
        return ExitCode::FAILURE;
    }
    let requests: Vec<_> = manifests.services.into_iter().map(|s| s.request).collect();
    let mut allocator = Allocator::new(config, args.lb_class.clone());
    let decisions = allocator.allocate_all(&requests);
    let ads = announced_by(allocator.config(), &decisions, &requests);
    match args.format {
        Format::Json => {
            let rows: Vec<Row<'_>> = decisions.iter().zip(ads).map(|(d, a)| row(d, a)).collect();
            match serde_json::to_string_pretty(&rows) {
                Ok(s) => crate::out(&format!("{s}\n")),
                Err(e) => {
                    eprintln!("ferrolb: cannot encode the plan: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Format::Table => {
            crate::out(&format!(
                "{}\n{}",
                services_table(&decisions, ads),
                usage_table(&allocator.usage())
            ));
        }
    }
    ExitCode::SUCCESS
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Lays out rows in columns two spaces apart, as kubectl does. Every cell is printed with its
/// control characters escaped: names, reasons and values read from etcd come from outside.
pub fn columns(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|r| r.iter().map(|cell| escape_controls(cell)).collect())
        .collect();
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn services_table(decisions: &[Decision], ads: Vec<Vec<String>>) -> String {
    let mut rows = vec![
        [
            "NAMESPACE",
            "NAME",
            "EXTERNAL-IP",
            "POOL",
            "STATE",
            "ANNOUNCED-BY",
            "REASON",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (d, a) in decisions.iter().zip(ads) {
        let r = row(d, a);
        let ip = match &d.outcome {
            Outcome::Allocated { ips, .. } => join(ips),
            Outcome::Pending { .. } => "<pending>".to_string(),
            Outcome::Ignored { .. } => "-".to_string(),
        };
        let reason = match (&r.reason, d.moved()) {
            (Some(reason), true) => format!("{reason} (held {})", join(&d.previous)),
            (None, true) => format!("moved from {}", join(&d.previous)),
            (reason, false) => reason.clone().unwrap_or_default(),
        };
        rows.push(vec![
            r.namespace.to_string(),
            r.name.to_string(),
            ip,
            r.pool.unwrap_or("-").to_string(),
            r.state.to_string(),
            match (&d.outcome, r.advertisements.is_empty()) {
                (Outcome::Allocated { .. }, true) => "<none>".to_string(),
                (Outcome::Allocated { .. }, false) => r.advertisements.join(","),
                _ => "-".to_string(),
            },
            reason,
        ]);
    }
    columns(&rows)
}

/// A 20-character bar for a fraction of use.
pub fn bar(in_use: u128, total: Count) -> String {
    // 2^128 is one more than u128 holds; for a 20-mark bar the difference does not show.
    let total = match total {
        Count::Below(n) => n,
        Count::All => u128::MAX,
    };
    let scaled = match in_use.checked_mul(20) {
        Some(x) => x.checked_div(total).unwrap_or(0),
        None => in_use.checked_div(total / 20).unwrap_or(20),
    };
    // Any use at all shows at least one mark.
    let scaled = if in_use > 0 { scaled.max(1) } else { 0 };
    let filled = usize::try_from(scaled).unwrap_or(20).min(20);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(20 - filled))
}

fn usage_table(usage: &[PoolUsage]) -> String {
    let mut rows = vec![
        ["POOL", "FAMILY", "IN-USE", "TOTAL", "USE"]
            .map(String::from)
            .to_vec(),
    ];
    for u in usage {
        rows.push(vec![
            u.pool.clone(),
            u.family.to_string(),
            u.in_use.to_string(),
            u.total.to_string(),
            bar(u.in_use, u.total),
        ]);
    }
    columns(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_escape_controls_and_align_on_the_escaped_text() {
        let rows = vec![
            vec!["NAME".to_string(), "REASON".to_string()],
            vec!["we\nb\u{1b}[31m".to_string(), "held by x\r".to_string()],
        ];
        assert_eq!(
            columns(&rows),
            "NAME             REASON\nwe\\nb\\u{1b}[31m  held by x\\r\n"
        );
    }
}
