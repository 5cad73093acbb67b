//! `ferrolb status`: which address serves which Services, who answers for it and since when,
//! addresses nobody answers for, the live speakers, the configuration in force and pool use,
//! read from etcd, or from a reconciler's `/status` (`--reconciler`, e.g. through
//! `kubectl port-forward`: no etcd client certificate needed).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use ferrolb_core::diag::escape_controls;
use ferrolb_core::layout::Keys;
use ferrolb_core::net::Count;
use ferrolb_core::status::ClusterStatus;
use ferrolb_core::view::View;
use ferrolb_etcd::{EtcdArgs, bounded};

use crate::plan::{bar, columns};
use crate::validate::EXIT_UNREADABLE;

/// Output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

/// Arguments of `ferrolb status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// etcd connection (or --reconciler).
    #[command(flatten)]
    pub etcd: Option<EtcdArgs>,
    /// Read the state from a reconciler's /status instead of etcd, e.g. http://127.0.0.1:7473
    /// after `kubectl -n ferrolb-system port-forward deploy/ferrolb-reconciler 7473`.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "etcd_endpoints",
        required_unless_present = "etcd_endpoints"
    )]
    pub reconciler: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Redraw every two seconds until interrupted.
    #[arg(long)]
    pub watch: bool,
}

/// Reads the whole picture from etcd.
pub async fn read(etcd: &EtcdArgs) -> anyhow::Result<ClusterStatus> {
    let step = Duration::from_secs(2);
    let mut client = bounded(step, "connect", etcd.connect(etcd.options(step)?)).await?;
    let keys = Keys::new(&etcd.etcd_prefix);
    let prefix = format!("{}/", keys.prefix());
    let (changes, _) = bounded(
        step,
        "list",
        ferrolb_etcd::list_prefix(&mut client, &prefix),
    )
    .await?;
    let mut view = View::default();
    let unreadable = changes
        .iter()
        .filter_map(|c| view.apply(&keys, c).err().map(|e| e.to_string()))
        .collect();
    Ok(ClusterStatus::from_view(&view, unreadable))
}

/// The largest `/status` document read (a reconciler's is a few hundred KiB at 10,000
/// Services).
const MAX_STATUS_BYTES: usize = 64 << 20;

/// What `ferrolb status` reads of a reconciler's `/status`.
#[derive(serde::Deserialize)]
struct ReconcilerStatus {
    cluster: Option<ClusterStatus>,
}

/// Reads the picture from the reconciler at `base` (`http://host:port`).
pub async fn fetch(base: &str) -> anyhow::Result<ClusterStatus> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper::body::Bytes;
    let uri: hyper::Uri = format!("{}/status", base.trim_end_matches('/'))
        .parse()
        .with_context(|| format!("--reconciler {base}: not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!(
            "--reconciler {base}: give an http:// URL (the reconciler serves /status over plain \
             HTTP; reach it with kubectl port-forward)"
        );
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let step = Duration::from_secs(5);
    let response = tokio::time::timeout(step, client.get(uri.clone()))
        .await
        .map_err(|_| anyhow!("GET {uri}: no answer within {step:?}"))?
        .with_context(|| format!("GET {uri}"))?;
    let code = response.status();
    let body = tokio::time::timeout(
        step,
        Limited::new(response.into_body(), MAX_STATUS_BYTES).collect(),
    )
    .await
    .map_err(|_| anyhow!("GET {uri}: the answer did not end within {step:?}"))?
    .map_err(|e| anyhow!("GET {uri}: {e}"))?
    .to_bytes();
    if !code.is_success() {
        bail!(
            "GET {uri}: {code}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let status: ReconcilerStatus = serde_json::from_slice(&body)
        .with_context(|| format!("GET {uri}: not a reconciler's status"))?;
    status.cluster.ok_or_else(|| {
        anyhow!("GET {uri}: this reconciler's /status has no cluster view (an older version?)")
    })
}

/// The tables. Everything read from etcd is printed with its control characters escaped (the
/// tables through [`columns`]), so a hostile node name or error text cannot drive the terminal.
pub fn render(v: &ClusterStatus) -> String {
    let mut out = String::new();
    match &v.config {
        Some(c) => {
            out.push_str(&format!(
                "configuration  revision {} applied {}\n",
                escape_controls(&c.revision),
                escape_controls(&c.applied_at)
            ));
            if let Some(e) = &c.error {
                out.push_str("               !! the newest configuration is NOT in force:\n");
                for line in e.lines() {
                    out.push_str(&format!("                  {}\n", escape_controls(line)));
                }
            }
        }
        None => out.push_str("configuration  (no reconciler has written its status yet)\n"),
    }
    for u in v.config.iter().flat_map(|c| &c.unannounced) {
        out.push_str(&format!(
            "               !! {} ({}) is allocated but NOT announced: {}\n",
            u.ip,
            escape_controls(&u.services.join(",")),
            escape_controls(&u.reason)
        ));
    }
    out.push_str(&format!(
        "leader         {}\n",
        escape_controls(v.leader.as_deref().unwrap_or("(none)"))
    ));
    let speakers: Vec<String> = v
        .speakers
        .iter()
        .map(|s| {
            let ifs: Vec<&str> = s.interfaces.iter().map(|i| i.name.as_str()).collect();
            format!("{} ({})", s.node, ifs.join(","))
        })
        .collect();
    out.push_str(&format!(
        "speakers       {}\n\n",
        if speakers.is_empty() {
            "(none alive)".to_string()
        } else {
            escape_controls(&speakers.join(", ")).into_owned()
        }
    ));
    let mut rows = vec![
        ["ADDRESS", "SERVICES", "NODE", "INTERFACES", "SINCE"]
            .map(String::from)
            .to_vec(),
    ];
    for a in &v.addresses {
        let (node, since) = match &a.node {
            Some(n) => (n.clone(), a.since.clone().unwrap_or_default()),
            None => {
                let who = if a.eligible_nodes.is_empty() {
                    "any node".to_string()
                } else {
                    a.eligible_nodes.join(",")
                };
                let why = match &a.orphaned_claim {
                    Some(ghost) => format!(
                        "claimed by {ghost}, which is not a live speaker (cleared after a grace period)"
                    ),
                    None => format!("no eligible speaker answers ({who})"),
                };
                ("!! NOBODY".to_string(), why)
            }
        };
        rows.push(vec![
            a.ip.to_string(),
            a.services.join(","),
            node,
            a.interfaces.join(","),
            since,
        ]);
    }
    out.push_str(&columns(&rows));
    let pools = v
        .config
        .as_ref()
        .map(|c| c.pools.as_slice())
        .unwrap_or_default();
    if !pools.is_empty() {
        out.push('\n');
        let mut rows = vec![
            ["POOL", "FAMILY", "IN-USE", "TOTAL", "USE"]
                .map(String::from)
                .to_vec(),
        ];
        for p in pools {
            let (used, total) = (
                p.in_use.parse().unwrap_or(0u128),
                p.total.parse().unwrap_or(Count::ZERO),
            );
            rows.push(vec![
                p.pool.clone(),
                p.family.clone(),
                p.in_use.clone(),
                p.total.clone(),
                bar(used, total),
            ]);
        }
        out.push_str(&columns(&rows));
    }
    for u in &v.unreadable {
        out.push_str(&format!("!! unreadable: {}\n", escape_controls(u)));
    }
    out
}

/// Runs `ferrolb status`.
pub fn run(args: &Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrolb: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        loop {
            let view = match (&args.reconciler, &args.etcd) {
                (Some(url), _) => fetch(url)
                    .await
                    .map_err(|e| format!("cannot read the state from the reconciler: {e:#}")),
                (None, Some(etcd)) => read(etcd)
                    .await
                    .map_err(|e| format!("cannot read the state from etcd: {e:#}")),
                (None, None) => Err("give --etcd-endpoints or --reconciler".to_string()),
            };
            let view = match view {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("ferrolb: {e}");
                    return ExitCode::from(EXIT_UNREADABLE);
                }
            };
            let text = match args.format {
                Format::Json => match serde_json::to_string_pretty(&view) {
                    Ok(s) => s + "\n",
                    Err(e) => {
                        eprintln!("ferrolb: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                Format::Table => render(&view),
            };
            let mut stdout = std::io::stdout().lock();
            if args.watch {
                let _ = write!(stdout, "\x1b[2J\x1b[H");
            }
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
            if !args.watch {
                return ExitCode::SUCCESS;
            }
            drop(stdout);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_core::layout::{ConfigStatus, InterfaceInfo, PoolUse, Registration, Unannounced};
    use std::collections::BTreeMap;

    /// Text with a newline, a terminal escape sequence and a right-to-left override.
    const EVIL: &str = "x\n\u{1b}[2J\u{202e}y";
    const SHOWN: &str = r"x\n\u{1b}[2J\u{202e}y";

    #[test]
    fn every_value_read_from_etcd_is_printed_with_controls_escaped() {
        let view = ClusterStatus {
            config: Some(ConfigStatus {
                revision: EVIL.to_string(),
                applied_at: EVIL.to_string(),
                // The error is several diagnostics, one a line: its newlines are kept.
                error: Some("first line\n\u{1b}[2J\u{202e}second".to_string()),
                pools: vec![PoolUse {
                    pool: EVIL.to_string(),
                    family: EVIL.to_string(),
                    in_use: "1".to_string(),
                    total: "4".to_string(),
                }],
                unannounced: vec![Unannounced {
                    ip: "10.0.0.3".parse().expect("ip"),
                    services: vec![EVIL.to_string()],
                    reason: EVIL.to_string(),
                }],
            }),
            leader: Some(EVIL.to_string()),
            speakers: vec![Registration {
                node: EVIL.to_string(),
                labels: BTreeMap::new(),
                interfaces: vec![InterfaceInfo {
                    name: EVIL.to_string(),
                    mac: "02:00:00:00:00:01".to_string(),
                }],
                heartbeats: false,
            }],
            addresses: vec![
                ferrolb_core::status::AddressStatus {
                    ip: "10.0.0.1".parse().expect("ip"),
                    services: vec![EVIL.to_string()],
                    node: Some(EVIL.to_string()),
                    interfaces: vec![EVIL.to_string()],
                    since: Some(EVIL.to_string()),
                    eligible_nodes: Vec::new(),
                    orphaned_claim: None,
                },
                ferrolb_core::status::AddressStatus {
                    ip: "10.0.0.2".parse().expect("ip"),
                    services: Vec::new(),
                    node: None,
                    interfaces: Vec::new(),
                    since: None,
                    eligible_nodes: vec![EVIL.to_string()],
                    orphaned_claim: Some(EVIL.to_string()),
                },
            ],
            unreadable: vec![EVIL.to_string()],
        };
        let text = render(&view);
        assert!(
            !text
                .chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{text}"
        );
        // Exactly the lines the layout has: none injected by a value.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 15, "{text}");
        assert_eq!(
            lines[0],
            format!("configuration  revision {SHOWN} applied {SHOWN}")
        );
        assert_eq!(lines[3], r"                  \u{1b}[2J\u{202e}second");
        assert_eq!(
            lines[4],
            format!("               !! 10.0.0.3 ({SHOWN}) is allocated but NOT announced: {SHOWN}")
        );
        assert_eq!(lines[5], format!("leader         {SHOWN}"));
        assert_eq!(lines[6], format!("speakers       {SHOWN} ({SHOWN})"));
        assert!(
            lines[9].starts_with("10.0.0.1") && lines[9].contains(SHOWN),
            "{text}"
        );
        assert!(
            lines[10].contains(&format!("claimed by {SHOWN},")),
            "{text}"
        );
        assert!(lines[13].starts_with(SHOWN), "{text}");
        assert_eq!(lines[14], format!("!! unreadable: {SHOWN}"));
    }
}
