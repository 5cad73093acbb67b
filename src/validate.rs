//! `ferrolb validate`: the check a pool repository runs in its CI before a merge.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use ferrolb_core::config::{self, Report};
use ferrolb_core::diag::Diagnostic;
use ferrolb_core::load;
use ferrolb_core::net::Family;
use ferrolb_core::selector;
use serde::Serialize;

/// Output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line: error: message` lines and a summary.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Arguments of `ferrolb validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Namespace MetalLB runs in: objects of other namespaces are ignored with a warning
    /// (default: read every namespace, and warn when the objects name several).
    #[arg(long, value_parser = parse_namespace)]
    pub config_namespace: Option<String>,
    /// Files or directories (read recursively: *.yaml, *.yml).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Exit code for usage errors and unreadable paths.
pub const EXIT_UNREADABLE: u8 = 2;

#[derive(Serialize)]
struct PoolJson<'a> {
    name: &'a str,
    ipv4_addresses: String,
    ipv6_addresses: String,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    valid: bool,
    errors: Vec<&'a Diagnostic>,
    warnings: Vec<&'a Diagnostic>,
    notes: Vec<&'a Diagnostic>,
    pools: Vec<PoolJson<'a>>,
}

/// Reads `--config-namespace`: a Kubernetes namespace name.
pub fn parse_namespace(text: &str) -> Result<String, String> {
    if selector::is_dns_label(text) {
        Ok(text.to_string())
    } else {
        Err("not a namespace name: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit".to_string())
    }
}

/// Reads and validates the paths; `Err` carries the exit code for unreadable paths.
pub fn load_report(paths: &[PathBuf], namespace: Option<&str>) -> Result<Report, ExitCode> {
    let files = load::read_paths(paths).map_err(|e| {
        eprintln!("ferrolb: {e}");
        ExitCode::from(EXIT_UNREADABLE)
    })?;
    let options = config::Options {
        namespace: namespace.map(str::to_string),
    };
    Ok(config::load_with(
        files.iter().map(|f| (f.name.as_str(), f.bytes.as_slice())),
        &options,
    ))
}

/// Prints every diagnostic to stderr.
pub fn print_diagnostics(report: &Report) {
    let mut err = std::io::stderr().lock();
    for d in &report.diagnostics {
        let _ = writeln!(err, "{d}");
    }
}

/// Runs `ferrolb validate`.
pub fn run(args: &Args) -> ExitCode {
    let report = match load_report(&args.paths, args.config_namespace.as_deref()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    print_diagnostics(&report);
    let valid = report.is_valid(args.strict);
    match args.format {
        Format::Json => {
            let pools = report
                .config
                .iter()
                .flat_map(|c| &c.pools)
                .map(|p| PoolJson {
                    name: &p.name,
                    ipv4_addresses: p.size(Family::V4).to_string(),
                    ipv6_addresses: p.size(Family::V6).to_string(),
                })
                .collect();
            let doc = ReportJson {
                valid,
                errors: report.errors().collect(),
                warnings: report.warnings().collect(),
                notes: report.notes().collect(),
                pools,
            };
            match serde_json::to_string_pretty(&doc) {
                Ok(s) => crate::out(&format!("{s}\n")),
                Err(e) => eprintln!("ferrolb: cannot encode the report: {e}"),
            }
        }
        Format::Text => crate::out(&format!("{}\n", summary(&report, valid, args.strict))),
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The one-line summary: `valid: 3 pools (...), 2 L2Advertisements` or `invalid: ...`.
fn summary(report: &Report, valid: bool, strict: bool) -> String {
    let errors = report.errors().count();
    let warnings = report.warnings().count();
    let mut parts = Vec::new();
    if let Some(c) = &report.config {
        let totals = c.totals();
        parts.push(format!(
            "{} ({} IPv4 addresses, {} IPv6 addresses)",
            plural(c.pools.len(), "pool"),
            totals.get(&Family::V4).copied().unwrap_or_default(),
            totals.get(&Family::V6).copied().unwrap_or_default(),
        ));
        parts.push(plural(c.advertisements.len(), "L2Advertisement"));
    }
    parts.push(plural(errors, "error"));
    parts.push(plural(warnings, "warning"));
    let notes = report.notes().count();
    if notes > 0 {
        parts.push(plural(notes, "note"));
    }
    let mut s = format!(
        "{}: {}",
        if valid { "valid" } else { "invalid" },
        parts.join(", ")
    );
    if strict && warnings > 0 {
        s.push_str(" (--strict: warnings count as errors)");
    }
    s
}
