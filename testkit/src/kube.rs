//! A real Kubernetes API server per test: `kube-apiserver` (built from `k8s.io/kubernetes` by
//! `scripts/kube-binaries.sh`) on its own etcd 3.6, on free loopback ports.
//!
//! What it sets up, in a temporary directory removed on drop: a CA and a serving certificate for
//! `127.0.0.1` (openssl), a service-account signing key, static bearer tokens for an admin
//! (`system:masters`) and for the reconciler's identity ([`RECONCILER_USER`], no permissions
//! until a test grants some), an audit log of every request (how tests count writes), RBAC
//! authorization and a service CIDR. No kubelet, scheduler or controller-manager: tests create
//! Nodes, Namespaces, Services and EndpointSlices themselves. Readiness is `/readyz` answering
//! `ok` to the admin.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::error::{Result, TestkitError};
use crate::etcd::{Etcd, EtcdBinaries, free_ports};
use crate::process::{
    append_log, describe, kill_and_reap, run, run_checked, run_with_input, tail, terminate,
};
use crate::stale::own_prefix;

/// The user name the reconciler's token authenticates as: its service account's, so RBAC
/// bindings to the chart's `ServiceAccount` apply to it.
pub const RECONCILER_USER: &str = "system:serviceaccount:ferrolb-system:ferrolb-reconciler";
/// How long a start may take until `/readyz` answers `ok`.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a start is retried after losing the race for a free port.
const BIND_ATTEMPTS: usize = 3;
/// How long `stop` waits after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How many log lines errors quote.
const LOG_TAIL_LINES: usize = 40;
/// The service CIDR: addresses are only allocated from it, nothing is sent to them.
const SERVICE_CIDR: &str = "10.96.0.0/16";

/// A running `kube-apiserver` with its etcd; both are killed and their files removed on drop.
#[derive(Debug)]
pub struct KubeApiServer {
    etcd: Etcd,
    port: u16,
    child: Option<Child>,
    admin_token: String,
    reconciler_token: String,
    kube_apiserver: PathBuf,
    kubectl: PathBuf,
    /// The audit log's events read so far.
    audit: Mutex<AuditLog>,
    /// Certificates, tokens, kubeconfigs, the audit log and the server's log.
    dir: TempDir,
}

/// The audit log, read on from where the last read ended: a benchmark that polls a log of tens
/// of thousands of requests must not spend a core reading it again and again.
#[derive(Debug, Default)]
struct AuditLog {
    /// Bytes of the file consumed (whole lines only).
    offset: u64,
    /// The completed requests (stage `ResponseComplete` or `Panic`), in order.
    events: Vec<Value>,
}

impl AuditLog {
    /// Reads the lines appended to `path` since the last call.
    fn refresh(&mut self, path: &Path) {
        let Ok(mut file) = std::fs::File::open(path) else {
            return;
        };
        let mut new = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut new).is_err() {
            return;
        }
        // A line still being written is read next time.
        let Some(end) = new.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        self.offset += end as u64 + 1;
        self.events.extend(
            new[..end]
                .split(|&b| b == b'\n')
                .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
                .filter(|e| e["stage"] != "ResponseStarted"),
        );
    }
}

impl KubeApiServer {
    /// Starts etcd 3.6 and `kube-apiserver` and waits until the server is ready.
    pub fn start() -> Result<KubeApiServer> {
        let kube_apiserver = crate::go_bin("kube-apiserver")?;
        let kubectl = crate::go_bin("kubectl")?;
        let etcd = Etcd::start_with(&EtcdBinaries::v3_6()?)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}kube-", own_prefix()))
            .tempdir()
            .map_err(|e| TestkitError::io("creating the API server's temporary directory", e))?;
        let token = |who: &str| format!("{who}-{:016x}", rand_u64());
        let mut server = KubeApiServer {
            etcd,
            port: 0,
            child: None,
            admin_token: token("admin"),
            reconciler_token: token("reconciler"),
            kube_apiserver,
            kubectl,
            audit: Mutex::default(),
            dir,
        };
        server.write_files()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = free_ports(1)?[0];
            server.write_kubeconfigs()?;
            server.spawn()?;
            match server.wait_ready(READY_TIMEOUT) {
                Ok(()) => return Ok(server),
                Err(e) if attempt < BIND_ATTEMPTS && server.lost_port_race() => {
                    eprintln!("ferrolb-testkit: kube-apiserver lost a port race, retrying: {e}");
                    if let Some(mut child) = server.child.take() {
                        kill_and_reap(&mut child);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Certificates, keys, tokens and the audit policy.
    fn write_files(&self) -> Result<()> {
        let d = self.dir.path();
        std::fs::write(
            d.join("san.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| TestkitError::io("writing san.cnf", e))?;
        for script in [
            "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ferrolb-test-kube-ca \
             -keyout ca.key -out ca.crt",
            "openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout serving.key \
             -out serving.csr",
            "openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
             -extfile san.cnf -out serving.crt",
            "openssl genrsa -out sa.key 2048",
            "openssl rsa -in sa.key -pubout -out sa.pub",
        ] {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(script).current_dir(d);
            run_checked(&mut cmd)?;
        }
        let tokens = format!(
            "{},admin,admin-uid,\"system:masters\"\n{},{RECONCILER_USER},reconciler-uid,\"system:serviceaccounts,system:serviceaccounts:ferrolb-system\"\n",
            self.admin_token, self.reconciler_token
        );
        std::fs::write(d.join("tokens.csv"), tokens)
            .map_err(|e| TestkitError::io("writing tokens.csv", e))?;
        std::fs::write(
            d.join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n\
             rules:\n- level: Metadata\n",
        )
        .map_err(|e| TestkitError::io("writing audit-policy.yaml", e))
    }

    fn write_kubeconfigs(&self) -> Result<()> {
        for (file, user, token) in [
            ("admin.kubeconfig", "admin", &self.admin_token),
            (
                "reconciler.kubeconfig",
                "reconciler",
                &self.reconciler_token,
            ),
        ] {
            let text = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
                 users:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: {user}\n    namespace: default\n\
                 current-context: test\n",
                self.url(),
                self.path("ca.crt").display()
            );
            std::fs::write(self.path(file), text)
                .map_err(|e| TestkitError::io(format!("writing {file}"), e))?;
        }
        Ok(())
    }

    fn spawn(&mut self) -> Result<()> {
        let log_path = self.log_path();
        let (log, log_err) = append_log(&log_path)?;
        let p = |name: &str| self.path(name).display().to_string();
        let mut cmd = Command::new(&self.kube_apiserver);
        cmd.arg(format!("--etcd-servers={}", self.etcd.endpoints()))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            // The `kubernetes` Service's endpoints would have to name a non-loopback address.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--secure-port={}", self.port))
            .arg(format!("--tls-cert-file={}", p("serving.crt")))
            .arg(format!("--tls-private-key-file={}", p("serving.key")))
            .arg(format!("--cert-dir={}", p("certs")))
            .arg(format!("--token-auth-file={}", p("tokens.csv")))
            .arg("--authorization-mode=RBAC")
            .arg("--anonymous-auth=false")
            .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", p("sa.pub")))
            .arg(format!(
                "--service-account-signing-key-file={}",
                p("sa.key")
            ))
            .arg(format!("--audit-policy-file={}", p("audit-policy.yaml")))
            .arg(format!("--audit-log-path={}", p("audit.log")))
            .arg("--audit-log-mode=blocking")
            .arg("--profiling=false")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd.spawn().map_err(|source| TestkitError::Spawn {
            program: describe(&cmd),
            source,
        })?;
        self.child = Some(child);
        Ok(())
    }

    fn lost_port_race(&self) -> bool {
        self.log().contains("address already in use")
    }

    /// Waits up to `timeout` until `/readyz` answers `ok`, failing early when the server exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(TestkitError::NotRunning {
                    what: "kube-apiserver".into(),
                });
            };
            if let Some(status) = child
                .try_wait()
                .map_err(|e| TestkitError::io("waiting for kube-apiserver", e))?
            {
                return Err(TestkitError::Command {
                    command: "kube-apiserver".into(),
                    status,
                    stderr: tail(&self.log_path(), LOG_TAIL_LINES),
                });
            }
            if self.is_ready() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(TestkitError::Timeout {
                    what: format!(
                        "kube-apiserver /readyz at {}; log tail:\n{}",
                        self.url(),
                        tail(&self.log_path(), LOG_TAIL_LINES)
                    ),
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether `/readyz` answers `ok` to the admin right now.
    pub fn is_ready(&self) -> bool {
        let mut cmd = Command::new("curl");
        cmd.args(["--silent", "--max-time", "2", "--cacert"])
            .arg(self.path("ca.crt"))
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.admin_token))
            .arg(format!("{}/readyz", self.url()));
        run(&mut cmd).is_ok_and(|o| o.status.success() && o.stdout == b"ok")
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The CA that signed the serving certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A kubeconfig for the admin (`system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.path("admin.kubeconfig")
    }

    /// A kubeconfig for [`RECONCILER_USER`], which can do only what RBAC grants it.
    pub fn reconciler_kubeconfig(&self) -> PathBuf {
        self.path("reconciler.kubeconfig")
    }

    /// The etcd it stores into (3.6), for compaction and the like.
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// The `kubectl` built with it.
    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    /// Runs `kubectl ARGS` as the admin and returns its stdout; fails with its stderr.
    pub fn kubectl<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.kubectl_command();
        cmd.args(args);
        let out = run_checked(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl apply -f -` of `manifest` (YAML or JSON) as the admin, with `extra` arguments.
    pub fn apply(&self, manifest: &str, extra: &[&str]) -> Result<String> {
        let mut cmd = self.kubectl_command();
        cmd.args(["apply", "-f", "-"]).args(extra);
        let out = run_with_input(&mut cmd, manifest.as_bytes())?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl create -f -` of one object as the admin; the object as created.
    pub fn create(&self, object: &Value) -> Result<Value> {
        let mut cmd = self.kubectl_command();
        cmd.args(["create", "-o", "json", "-f", "-"]);
        let out = run_with_input(&mut cmd, object.to_string().as_bytes())?;
        parse_json(&describe(&cmd), &out.stdout)
    }

    /// `kubectl replace -f -` of one object (with its `resourceVersion`) as the admin.
    pub fn replace(&self, object: &Value) -> Result<Value> {
        let mut cmd = self.kubectl_command();
        cmd.args(["replace", "-o", "json", "-f", "-"]);
        let out = run_with_input(&mut cmd, object.to_string().as_bytes())?;
        parse_json(&describe(&cmd), &out.stdout)
    }

    /// The object `kind/name` (in `namespace`), or `None` when it does not exist.
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let mut cmd = self.kubectl_command();
        cmd.args(["get", resource, name, "-o", "json", "--ignore-not-found"]);
        if let Some(ns) = namespace {
            cmd.args(["-n", ns]);
        }
        let out = run_checked(&mut cmd).ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Every object of `resource` in all namespaces.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        let mut cmd = self.kubectl_command();
        cmd.args(["get", resource, "-A", "-o", "json"]);
        run_checked(&mut cmd)
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }

    fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg(format!(
            "--kubeconfig={}",
            self.admin_kubeconfig().display()
        ));
        cmd
    }

    /// Runs `f` on the audit log's events so far (one per request, `Metadata` level, stage
    /// `ResponseComplete` or `Panic`).
    fn with_audit<R>(&self, f: impl FnOnce(&[Value]) -> R) -> R {
        let mut log = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        log.refresh(&self.path("audit.log"));
        f(&log.events)
    }

    /// How many successful writes (create, update, patch, delete) `user` made that `keep`
    /// accepts, from the audit log.
    fn count_writes_of(&self, user: &str, keep: impl Fn(&Value) -> bool) -> usize {
        self.with_audit(|events| {
            events
                .iter()
                .filter(|e| e["user"]["username"] == user)
                .filter(|e| {
                    matches!(
                        e["verb"].as_str(),
                        Some("create" | "update" | "patch" | "delete")
                    )
                })
                .filter(|e| {
                    e["responseStatus"]["code"]
                        .as_u64()
                        .is_some_and(|c| (200..300).contains(&c))
                })
                .filter(|e| keep(e))
                .count()
        })
    }

    /// How many successful writes `user` made to `resource` (`subresource`, e.g.
    /// `Some("status")`, or `None` for the object itself), by the audit log.
    pub fn writes_by(&self, user: &str, resource: &str, subresource: Option<&str>) -> usize {
        self.count_writes_of(user, |e| {
            e["objectRef"]["resource"] == resource
                && e["objectRef"]["subresource"].as_str() == subresource
        })
    }

    /// How many successful writes `user` made to anything, by the audit log.
    pub fn all_writes_by(&self, user: &str) -> usize {
        self.count_writes_of(user, |_| true)
    }

    /// Every request `user` made, as `verb resource[/subresource] → code`, for messages.
    pub fn requests_by(&self, user: &str) -> Vec<String> {
        self.with_audit(|events| {
            events
                .iter()
                .filter(|e| e["user"]["username"] == user)
                .map(|e| {
                    let sub = e["objectRef"]["subresource"]
                        .as_str()
                        .map(|s| format!("/{s}"))
                        .unwrap_or_default();
                    format!(
                        "{} {}{sub} {} -> {}",
                        e["verb"].as_str().unwrap_or("?"),
                        e["objectRef"]["resource"].as_str().unwrap_or("?"),
                        e["objectRef"]["name"].as_str().unwrap_or(""),
                        e["responseStatus"]["code"]
                    )
                })
                .collect()
        })
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace period); etcd keeps running.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_GRACE)?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and data, and waits until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()?;
        self.wait_ready(READY_TIMEOUT)
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.path("kube-apiserver.log")
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
    }
}

fn parse_json(command: &str, bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|_| TestkitError::Parse {
        command: command.to_string(),
        output: String::from_utf8_lossy(bytes).into_owned(),
    })
}

/// 64 bits from the kernel's random source, for tokens.
fn rand_u64() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_le_bytes(b),
        // Tokens only need to differ between servers of one test run.
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() ^ u64::from(d.subsec_nanos()) << 32),
    }
}
