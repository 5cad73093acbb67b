//! What the reconciler's integration tests share: a `ferrolb-reconciler` process with its HTTP
//! listener on a free port, its log in a file, killed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running reconciler.
pub struct Reconciler {
    pub child: Child,
    pub port: u16,
    log: PathBuf,
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Reconciler {
    /// Starts the reconciler with `args` plus `--listen` on a free port; stderr goes to
    /// `dir/<name>.log`.
    pub fn spawn(args: &[String], dir: &Path, name: &str) -> Reconciler {
        Self::spawn_with_env(args, dir, name, &[])
    }

    /// [`spawn`](Self::spawn) with extra environment variables.
    pub fn spawn_with_env(
        args: &[String],
        dir: &Path,
        name: &str,
        env: &[(&str, &Path)],
    ) -> Reconciler {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_ferrolb-reconciler"))
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn reconciler");
        Reconciler { child, port, log }
    }

    /// GETs `path` from the listener; `None` unless it answers 2xx.
    pub fn get(&self, path: &str) -> Option<String> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "2", &url])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `/status` as JSON (null while it does not answer).
    pub fn status(&self) -> serde_json::Value {
        self.get("/status")
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits up to 5 s for it to exit.
    pub fn term(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "reconciler did not stop\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for `f(status)`.
    pub fn wait(&self, what: &str, timeout: Duration, f: impl Fn(&serde_json::Value) -> bool) {
        let end = Instant::now() + timeout;
        loop {
            if f(&self.status()) {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out: {what}\nstatus: {}\n{}",
                self.status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--flag value` pairs as owned strings.
pub fn args(pairs: &[&str]) -> Vec<String> {
    pairs.iter().map(|s| s.to_string()).collect()
}

/// The reconciler's ServiceAccount, ClusterRole and binding as the real Helm renders them from
/// the chart with its default values, for `namespace`.
pub fn chart_rbac(namespace: &str) -> String {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/ferrolb");
    ferrolb_testkit::helm(&[
        "template",
        "ferrolb",
        chart.to_str().expect("path"),
        "--namespace",
        namespace,
        "--kube-version",
        ferrolb_testkit::KUBE_VERSION,
        "--show-only",
        "templates/reconciler-rbac.yaml",
    ])
    .unwrap_or_else(|e| panic!("{e}"))
}
