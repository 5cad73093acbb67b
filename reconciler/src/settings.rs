//! The reconciler's command line (exact: the tests and the deployment drive it). Every flag also
//! reads an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use ferrolb_etcd::EtcdArgs;

/// Where the pool configuration (`--config`) or the Services (`--services`) come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The Kubernetes API: `IPAddressPool` and `L2Advertisement` objects, or Services.
    Kubernetes,
    /// Files under a directory (read recursively, watched), or one file.
    Files(PathBuf),
}

/// Where Services come from.
pub type ServicesFrom = Source;
/// Where the pool configuration comes from.
pub type ConfigSource = Source;

fn parse_source(text: &str) -> Result<Source, String> {
    match text {
        "" => Err("empty; use kubernetes or a path".into()),
        "kubernetes" => Ok(Source::Kubernetes),
        path => Ok(Source::Files(PathBuf::from(path))),
    }
}

fn parse_namespace(text: &str) -> Result<String, String> {
    if ferrolb_core::selector::is_dns_label(text) {
        Ok(text.to_string())
    } else {
        Err("not a namespace name: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit".into())
    }
}

impl Settings {
    /// Where ConfigurationState and ServiceL2Status objects go, if anywhere.
    pub fn state_namespace(&self) -> Option<&str> {
        self.state_namespace
            .as_deref()
            .or(self.config_namespace.as_deref())
    }

    /// How the pool configuration is read (`--config-namespace`).
    pub fn config_options(&self) -> ferrolb_core::config::Options {
        ferrolb_core::config::Options {
            namespace: self.config_namespace.clone(),
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30s, 1m)"))
}

/// ferrolb-reconciler: keeps the pool configuration, allocates addresses for LoadBalancer
/// Services and publishes one announcement per address into etcd for the speakers.
#[derive(Clone, Debug, Parser)]
#[command(name = "ferrolb-reconciler", version, about)]
#[command(group(ArgGroup::new("source").required(true).args(["config", "config_git"])))]
pub struct Settings {
    /// Pool configuration: `kubernetes` (IPAddressPool and L2Advertisement objects in the
    /// cluster, watched), or a directory (read recursively, watched) or a file (a directory
    /// named `kubernetes` is written `./kubernetes`).
    #[arg(long, env = "FERROLB_CONFIG", value_parser = parse_source)]
    pub config: Option<ConfigSource>,
    /// Pool configuration from a Git repository (URL).
    #[arg(long, env = "FERROLB_CONFIG_GIT")]
    pub config_git: Option<String>,
    /// Branch, tag or commit to follow.
    #[arg(long, env = "FERROLB_GIT_REF", default_value = "main")]
    pub git_ref: String,
    /// Directory inside the repository holding the configuration.
    #[arg(long, env = "FERROLB_GIT_PATH", default_value = ".")]
    pub git_path: PathBuf,
    /// How often to fetch.
    #[arg(long, env = "FERROLB_GIT_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub git_interval: Duration,
    /// Where to keep the clone.
    #[arg(long, env = "FERROLB_GIT_CACHE")]
    pub git_cache: Option<PathBuf>,
    /// File holding an HTTPS token.
    #[arg(long, env = "FERROLB_GIT_TOKEN_FILE")]
    pub git_token_file: Option<PathBuf>,
    /// SSH private key.
    #[arg(long, env = "FERROLB_GIT_SSH_KEY")]
    pub git_ssh_key: Option<PathBuf>,
    /// known_hosts file that the server's SSH host key must be in.
    #[arg(long, env = "FERROLB_GIT_KNOWN_HOSTS")]
    pub git_known_hosts: Option<PathBuf>,
    /// Namespace MetalLB runs in: pool objects of other namespaces are ignored with a warning
    /// (default: read every namespace, and warn when the objects name several).
    #[arg(long, env = "FERROLB_CONFIG_NAMESPACE", value_parser = parse_namespace)]
    pub config_namespace: Option<String>,
    /// Longest time reading and validating one revision of the configuration or of the
    /// Service manifests may take; a slower one is refused and the one in force stays.
    #[arg(long, env = "FERROLB_VALIDATION_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub validation_timeout: Duration,
    /// File mode: how long a new read of the configuration or Service files must stay the
    /// same before it is applied (a file written slowly is not applied half-written); 0s
    /// applies at once.
    #[arg(long, env = "FERROLB_CONFIG_QUIET", default_value = "2s", value_parser = parse_duration)]
    pub config_quiet: Duration,
    /// Where Services come from: `kubernetes`, or a directory of Service manifests.
    #[arg(long, env = "FERROLB_SERVICES", default_value = "kubernetes", value_parser = parse_source)]
    pub services: ServicesFrom,
    /// kubeconfig file (default: in-cluster, then KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Serve only Services of this loadBalancerClass (default: only Services without a class).
    #[arg(long, env = "FERROLB_LB_CLASS")]
    pub lb_class: Option<String>,
    /// etcd connection.
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Logging.
    #[command(flatten)]
    pub log: ferrolb_daemon::logging::LogArgs,
    /// TTL of the leader-election lease, in seconds.
    #[arg(long, env = "FERROLB_LEASE_TTL", default_value_t = 3, value_parser = clap::value_parser!(i64).range(2..=3600))]
    pub lease_ttl: i64,
    /// Namespace of the objects that show ferrolb's state through kubectl (ConfigurationState,
    /// ServiceL2Status; Services from Kubernetes only); default: `--config-namespace`, and
    /// none are written when neither is given.
    #[arg(long, env = "FERROLB_STATE_NAMESPACE", value_parser = parse_namespace)]
    pub state_namespace: Option<String>,
    /// Address of the validating admission webhook's HTTPS listener (`POST /validate`), with
    /// `--config kubernetes`; off when not given.
    #[arg(long, env = "FERROLB_ADMISSION_LISTEN", requires_all = ["admission_cert", "admission_key"])]
    pub admission_listen: Option<SocketAddr>,
    /// PEM certificate chain the admission webhook serves.
    #[arg(long, env = "FERROLB_ADMISSION_CERT")]
    pub admission_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "FERROLB_ADMISSION_KEY")]
    pub admission_key: Option<PathBuf>,
    /// Address of the HTTP listener: /metrics, /healthz, /readyz, /status, /hooks/git.
    #[arg(long, env = "FERROLB_LISTEN", default_value = "0.0.0.0:7473")]
    pub listen: SocketAddr,
    /// File holding the webhook's HMAC secret (GitHub/Gitea `X-Hub-Signature-256`).
    #[arg(long, env = "FERROLB_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
}

impl Settings {
    /// A third of the lease TTL: keepalive interval and request timeout.
    pub fn step(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.lease_ttl).unwrap_or(3) * 1000 / 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        let mut v = vec![
            "ferrolb-reconciler",
            "--etcd-endpoints",
            "http://127.0.0.1:2379",
        ];
        v.extend_from_slice(args);
        Settings::try_parse_from(v)
    }

    #[test]
    fn one_configuration_source_is_required() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--config", "p", "--config-git", "u"]).is_err());
        let s = parse(&["--config", "pools", "--services", "svc"]).expect("valid");
        assert_eq!(s.services, ServicesFrom::Files("svc".into()));
        assert_eq!(s.listen.port(), 7473);
        assert_eq!(s.lease_ttl, 3);
        let s = parse(&["--config-git", "https://example.invalid/pools.git"]).expect("valid");
        assert_eq!(s.services, ServicesFrom::Kubernetes);
        assert_eq!(s.git_ref, "main");
        assert_eq!(s.git_interval, Duration::from_secs(30));
        assert_eq!(s.validation_timeout, Duration::from_secs(10));
        assert_eq!(s.config_quiet, Duration::from_secs(2));
        assert_eq!(s.config_namespace, None);
        assert_eq!(s.config_options(), ferrolb_core::config::Options::default());
        assert_eq!(s.state_namespace(), None);
        let s = parse(&["--config", "kubernetes"]).expect("valid");
        assert_eq!(s.config, Some(ConfigSource::Kubernetes));
        let s = parse(&["--config", "./kubernetes"]).expect("valid");
        assert_eq!(s.config, Some(ConfigSource::Files("./kubernetes".into())));
    }

    #[test]
    fn the_admission_webhook_needs_its_certificate_and_key() {
        let listen = [
            "--config",
            "kubernetes",
            "--admission-listen",
            "127.0.0.1:9443",
        ];
        assert!(parse(&listen).is_err());
        let mut full = listen.to_vec();
        full.extend(["--admission-cert", "c.pem", "--admission-key", "k.pem"]);
        let s = parse(&full).expect("valid");
        assert_eq!(s.admission_listen.map(|a| a.port()), Some(9443));
    }

    #[test]
    fn state_objects_go_to_the_state_or_else_the_config_namespace() {
        let s = parse(&[
            "--config",
            "kubernetes",
            "--config-namespace",
            "metallb-system",
        ])
        .expect("valid");
        assert_eq!(s.state_namespace(), Some("metallb-system"));
        let s = parse(&[
            "--config",
            "kubernetes",
            "--config-namespace",
            "metallb-system",
            "--state-namespace",
            "ferrolb-system",
        ])
        .expect("valid");
        assert_eq!(s.state_namespace(), Some("ferrolb-system"));
    }

    #[test]
    fn config_namespace_takes_a_namespace_name() {
        let s = parse(&["--config", "p", "--config-namespace", "metallb-system"]).expect("valid");
        assert_eq!(
            s.config_options().namespace.as_deref(),
            Some("metallb-system")
        );
        assert!(parse(&["--config", "p", "--config-namespace", "Metallb System"]).is_err());
        assert!(parse(&["--config", "p", "--config-namespace", ""]).is_err());
    }
}
