//! The speaker's command line (exact: other parts and the tests drive it). Every flag also reads
//! an environment variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ferrolb_etcd::EtcdArgs;

/// What to do while etcd cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnEtcdLoss {
    /// Keep answering for held addresses until another node announces one of them.
    Hold,
    /// Stop answering before the lease can have expired in etcd.
    Release,
}

/// Failure-detection settings shipped together (`--failover-profile`); `--heartbeat-interval`,
/// `--suspect-after` and `--claim-stagger` given on the command line or in the environment
/// override the profile's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum FailoverProfile {
    /// Heartbeats every 100 ms, a holder suspected after 300 ms of silence, claims staggered by
    /// 100 ms per rank.
    #[default]
    Default,
    /// No heartbeats: a crashed holder's addresses move when its lease expires.
    LeasesOnly,
    /// Heartbeats every 10 ms, a holder suspected after 30 ms of silence, claims staggered by
    /// 20 ms per rank (docs/BENCHMARKS.md has its figures and its cost).
    Fast,
}

/// What a profile sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileValues {
    /// `--heartbeat-interval`.
    pub heartbeat_interval: Duration,
    /// `--suspect-after` (none: three intervals).
    pub suspect_after: Option<Duration>,
    /// `--claim-stagger`.
    pub claim_stagger: Duration,
}

impl FailoverProfile {
    /// The settings of the profile.
    pub fn values(self) -> ProfileValues {
        let ms = Duration::from_millis;
        match self {
            FailoverProfile::Default => ProfileValues {
                heartbeat_interval: ms(100),
                suspect_after: None,
                claim_stagger: ms(100),
            },
            FailoverProfile::LeasesOnly => ProfileValues {
                heartbeat_interval: Duration::ZERO,
                suspect_after: None,
                claim_stagger: ms(100),
            },
            FailoverProfile::Fast => ProfileValues {
                heartbeat_interval: ms(10),
                suspect_after: Some(ms(30)),
                claim_stagger: ms(20),
            },
        }
    }
}

/// ferrolb-speaker: answers ARP and NDP for the addresses this node holds, coordinated through
/// etcd leases and claims. Needs no Kubernetes credentials.
#[derive(Clone, Debug, Parser)]
#[command(name = "ferrolb-speaker", version, about)]
pub struct Settings {
    /// This node's name (in Kubernetes: the Node's name, from the downward API).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// etcd connection.
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Logging.
    #[command(flatten)]
    pub log: ferrolb_daemon::logging::LogArgs,
    /// TTL of this speaker's lease, in seconds (etcd's minimum is about 2).
    #[arg(long, env = "FERROLB_LEASE_TTL", default_value_t = 3, value_parser = clap::value_parser!(i64).range(2..=3600))]
    pub lease_ttl: i64,
    /// How long the speaker ranked r waits (times r) before claiming an unclaimed address
    /// (default: the profile's).
    #[arg(long, env = "FERROLB_CLAIM_STAGGER", default_value = "100ms", value_parser = parse_duration)]
    pub claim_stagger: Duration,
    /// The failure-detection settings: default, leases-only or fast; the individual flags
    /// override it.
    #[arg(long, env = "FERROLB_FAILOVER_PROFILE", value_enum, default_value_t = FailoverProfile::Default)]
    pub failover_profile: FailoverProfile,
    /// Interfaces to announce on (a regular expression over names), instead of the default:
    /// every interface that is up, broadcast-capable and not loopback, except the usual virtual
    /// ones, as MetalLB's default exclusions (docker*, cbr*, dummy*, veth*, cali*, flannel*, cni*,
    /// kube-ipvs*, lxc*, virbr*, tunl*, nodelocaldns*).
    #[arg(long, env = "FERROLB_INTERFACES")]
    pub interfaces: Option<String>,
    /// Repeat one gratuitous ARP / unsolicited NA per held address this often (default: off).
    #[arg(long, env = "FERROLB_GARP_REFRESH", value_parser = parse_refresh)]
    pub garp_refresh: Option<Duration>,
    /// What to do while etcd cannot be reached.
    #[arg(long, env = "FERROLB_ON_ETCD_LOSS", value_enum, default_value_t = OnEtcdLoss::Hold)]
    pub on_etcd_loss: OnEtcdLoss,
    /// This node's labels, `k=v,k2=v2` (matched by L2Advertisement nodeSelectors in file mode).
    #[arg(long, env = "FERROLB_LABELS", value_parser = parse_labels, default_value = "")]
    pub labels: Labels,
    /// Address of the HTTP listener for /metrics and /healthz.
    #[arg(long, env = "FERROLB_LISTEN", default_value = "0.0.0.0:7472")]
    pub listen: SocketAddr,
    /// How often to send a heartbeat on each interface (0s: no heartbeats, and failures are
    /// detected by lease expiry alone; default: the profile's).
    #[arg(long, env = "FERROLB_HEARTBEAT_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// How long a holder may go unheard before this speaker suspects it (default: the
    /// profile's, else 3 intervals).
    #[arg(long, env = "FERROLB_SUSPECT_AFTER", value_parser = parse_duration)]
    pub suspect_after: Option<Duration>,
    /// How many live speakers must suspect a holder before its lease is ended (or all the others,
    /// when fewer).
    #[arg(long, env = "FERROLB_SUSPECT_QUORUM", default_value_t = 2)]
    pub suspect_quorum: usize,
    /// A file holding the key heartbeats are signed with (HMAC-SHA256); with it, unsigned or
    /// wrongly signed heartbeats are ignored. Without it, any host on the segment can send them.
    #[arg(long, env = "FERROLB_HEARTBEAT_KEY_FILE")]
    pub heartbeat_key_file: Option<PathBuf>,
    /// Test hook, not for production: when the file named after this node appears in this
    /// directory, the event loop removes it and blocks its thread for the duration the file holds
    /// (e.g. `3s`), as a stall would (CPU starvation, a huge etcd event). The lab tests and the
    /// fault suite provoke stalls with it. A file named `<node>.end-responders` there ends the
    /// responders task, as a bug would (the lab test of supervision).
    #[arg(long, env = "FERROLB_DEBUG_STALL_DIR", hide = true)]
    pub debug_stall_dir: Option<PathBuf>,
}

/// Node labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(pub BTreeMap<String, String>);

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 100ms, 1s, 2m)"))
}

fn parse_refresh(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_secs(1) {
        return Err(
            "must be at least 1s (each refresh sends one announcement per held address)".into(),
        );
    }
    Ok(d)
}

fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        ferrolb_core::selector::check_key(k.trim())?;
        ferrolb_core::selector::check_value(v.trim())?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(Labels(labels))
}

impl Settings {
    /// The command line of this process, with `--failover-profile` applied; exits with clap's
    /// message on an error.
    pub fn parse_profiled() -> Settings {
        use clap::CommandFactory;
        Self::from_matches(Self::command().get_matches()).unwrap_or_else(|e| e.exit())
    }

    /// [`Settings::parse_profiled`] of `args`.
    pub fn try_parse_profiled_from<I, T>(args: I) -> Result<Settings, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::CommandFactory;
        Self::from_matches(Self::command().try_get_matches_from(args)?)
    }

    /// The settings of `matches`, the profile's values where no flag or variable gave one.
    fn from_matches(matches: clap::ArgMatches) -> Result<Settings, clap::Error> {
        use clap::FromArgMatches;
        use clap::parser::ValueSource;
        let mut s = Settings::from_arg_matches(&matches)?;
        let given = |id: &str| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        let profile = s.failover_profile.values();
        if !given("heartbeat_interval") {
            s.heartbeat_interval = profile.heartbeat_interval;
        }
        if !given("suspect_after") {
            s.suspect_after = profile.suspect_after;
        }
        if !given("claim_stagger") {
            s.claim_stagger = profile.claim_stagger;
        }
        Ok(s)
    }

    /// The keepalive interval: a third of the TTL.
    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.lease_ttl).unwrap_or(3) * 1000 / 3)
    }

    /// Whether heartbeats are on.
    pub fn heartbeats(&self) -> bool {
        !self.heartbeat_interval.is_zero()
    }

    /// How long a holder may stay unheard: `--suspect-after`, or three heartbeat intervals.
    pub fn suspect_after(&self) -> Duration {
        self.suspect_after
            .unwrap_or(self.heartbeat_interval.saturating_mul(3))
    }

    /// How long the answering fence stays open after a sign of life of the event loop: a
    /// heartbeat sent (`--suspect-after`), or without heartbeats a pulse (a third of the TTL).
    pub fn fence_window(&self) -> Duration {
        if self.heartbeats() {
            self.suspect_after()
        } else {
            self.keepalive_interval()
        }
    }

    /// The heartbeat key, read from `--heartbeat-key-file` (surrounding whitespace trimmed).
    pub fn heartbeat_key(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(path) = &self.heartbeat_key_file else {
            return Ok(None);
        };
        let text = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("reading --heartbeat-key-file {}: {e}", path.display()))?;
        let key = text.trim_ascii().to_vec();
        if key.is_empty() {
            anyhow::bail!("--heartbeat-key-file {} is empty", path.display());
        }
        Ok(Some(key))
    }

    /// Checks what clap cannot: a holder silent for `--suspect-after` stops answering on its own
    /// (the fence), so the window must leave room for more than one heartbeat.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.heartbeats() && self.suspect_after() <= self.heartbeat_interval {
            anyhow::bail!(
                "--suspect-after ({:?}) must be longer than --heartbeat-interval ({:?})",
                self.suspect_after(),
                self.heartbeat_interval
            );
        }
        if self.heartbeats() && self.heartbeat_key_file.is_none() {
            tracing::warn!(
                "no --heartbeat-key-file: heartbeats are unsigned; a host on the LAN cannot make a live node look dead, but it can delay the detection of a dead one until its lease expires"
            );
        }
        Ok(())
    }

    /// The lease TTL as a duration.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.lease_ttl).unwrap_or(3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_command_line() {
        let s = Settings::try_parse_from([
            "ferrolb-speaker",
            "--node-name",
            "n1",
            "--etcd-endpoints",
            "http://127.0.0.1:2379,http://127.0.0.2:2379",
        ])
        .expect("valid");
        assert_eq!(s.etcd.etcd_endpoints.len(), 2);
        assert_eq!(s.etcd.etcd_prefix, "/ferrolb");
        assert_eq!(s.lease_ttl, 3);
        assert_eq!(s.claim_stagger, Duration::from_millis(100));
        assert_eq!(s.on_etcd_loss, OnEtcdLoss::Hold);
        assert_eq!(s.listen.port(), 7472);
        assert_eq!(s.keepalive_interval(), Duration::from_secs(1));
        assert!(s.garp_refresh.is_none());
        assert_eq!(s.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(s.suspect_after(), Duration::from_millis(300));
        assert_eq!(s.suspect_quorum, 2);
        assert!(s.heartbeats() && s.heartbeat_key().expect("no file").is_none());
        assert_eq!(s.log.log_level, "info");
        assert_eq!(s.log.log_format, ferrolb_daemon::logging::LogFormat::Text);
    }

    #[test]
    fn labels_and_durations_are_checked() {
        let parse = |extra: &[&str]| {
            let mut args = vec![
                "ferrolb-speaker",
                "--node-name",
                "n",
                "--etcd-endpoints",
                "http://e",
            ];
            args.extend_from_slice(extra);
            Settings::try_parse_from(args)
        };
        let s = parse(&["--labels", "zone=a, rack=r1", "--garp-refresh", "30s"]).expect("valid");
        assert_eq!(s.labels.0.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(s.garp_refresh, Some(Duration::from_secs(30)));
        assert!(parse(&["--labels", "nonsense"]).is_err());
        let s = parse(&[
            "--log-level",
            "info,ferrolb_speaker=debug",
            "--log-format",
            "json",
        ])
        .expect("valid");
        assert_eq!(s.log.log_format, ferrolb_daemon::logging::LogFormat::Json);
        assert!(parse(&["--log-level", "loud=!!"]).is_err());
        assert!(parse(&["--log-format", "yaml"]).is_err());
        assert!(parse(&["--claim-stagger", "soon"]).is_err());
        assert!(parse(&["--lease-ttl", "1"]).is_err());
        assert!(
            parse(&["--garp-refresh", "0s"]).is_err(),
            "a zero refresh would never stop sending"
        );
        assert!(
            parse(&["--etcd-cert", "c.pem"]).is_err(),
            "a certificate needs its key"
        );
        let s =
            parse(&["--heartbeat-interval", "100ms", "--suspect-after", "100ms"]).expect("parses");
        assert!(
            s.check().is_err(),
            "a window of one interval would close the fence between heartbeats"
        );
        let s = parse(&["--heartbeat-interval", "0s", "--suspect-after", "0s"]).expect("parses");
        assert!(s.check().is_ok(), "no heartbeats: nothing to check");
    }

    #[test]
    fn a_failover_profile_sets_what_no_flag_gives_and_flags_override_it() {
        let parse = |extra: &[&str]| {
            let mut args = vec![
                "ferrolb-speaker",
                "--node-name",
                "n",
                "--etcd-endpoints",
                "http://e",
            ];
            args.extend_from_slice(extra);
            Settings::try_parse_profiled_from(args).expect("valid")
        };
        let ms = Duration::from_millis;
        let default = parse(&[]);
        assert_eq!(default.failover_profile, FailoverProfile::Default);
        assert_eq!(
            (
                default.heartbeat_interval,
                default.suspect_after(),
                default.claim_stagger
            ),
            (ms(100), ms(300), ms(100))
        );
        let fast = parse(&["--failover-profile", "fast"]);
        assert_eq!(
            (
                fast.heartbeat_interval,
                fast.suspect_after(),
                fast.claim_stagger
            ),
            (ms(10), ms(30), ms(20))
        );
        assert!(fast.check().is_ok());
        let leases = parse(&["--failover-profile", "leases-only"]);
        assert!(!leases.heartbeats());
        // A flag wins over the profile, the rest stays the profile's.
        let mixed = parse(&["--failover-profile", "fast", "--suspect-after", "80ms"]);
        assert_eq!(
            (
                mixed.heartbeat_interval,
                mixed.suspect_after(),
                mixed.claim_stagger
            ),
            (ms(10), ms(80), ms(20))
        );
        let mixed = parse(&[
            "--failover-profile",
            "leases-only",
            "--heartbeat-interval",
            "50ms",
        ]);
        assert_eq!(
            (mixed.heartbeat_interval, mixed.suspect_after()),
            (ms(50), ms(150))
        );
        assert!(
            Settings::try_parse_profiled_from([
                "ferrolb-speaker",
                "--node-name",
                "n",
                "--etcd-endpoints",
                "http://e",
                "--failover-profile",
                "fastest"
            ])
            .is_err()
        );
    }
}
