//! A real etcd (Debian's `etcd` 3.4) per test: one member or a cluster, on free ports, with a
//! temporary data directory, optionally inside a lab namespace.
//!
//! Ports are picked by binding `127.0.0.1:0` and releasing the listener, so another process can
//! take a port before etcd binds it; a start that loses this race (etcd logs "address already in
//! use") is retried with new ports. Readiness is `GET /health` answering `"health":"true"`
//! (inside a namespace, through `curl`), which needs an elected leader.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::{Result, TestkitError};
use crate::process::{
    Signal, append_log, command_in, describe, kill_and_reap, poll_until, run, run_checked,
    send_signal, tail, terminate,
};
use crate::stale::{cleanup_stale_once, own_prefix};

/// The environment variable naming a directory with the `etcd` and `etcdctl` to use instead of
/// Debian's (for example `target/go-bin/bin`, the 3.6 build): how a suite runs against 3.6.
pub const ETCD_DIR_VAR: &str = "FERROLB_TEST_ETCD_DIR";
/// How long a start or restart may take until every member answers healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a start is retried after losing the race for a free port.
const BIND_ATTEMPTS: usize = 5;
/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Raft timing for tests: leaders are elected (and re-elected) within about a second.
const HEARTBEAT_MS: &str = "50";
const ELECTION_MS: &str = "500";
/// How many log lines errors quote.
const LOG_TAIL_LINES: usize = 30;

/// Numbers etcd names and cluster tokens within this process.
static NEXT_ETCD: AtomicUsize = AtomicUsize::new(0);

/// Which `etcd` and `etcdctl` programs a harness runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdBinaries {
    /// The server.
    pub etcd: PathBuf,
    /// The client.
    pub etcdctl: PathBuf,
}

impl EtcdBinaries {
    /// Those of the directory [`ETCD_DIR_VAR`] names, else Debian's `etcd` 3.4 from `PATH`.
    pub fn from_env() -> EtcdBinaries {
        match std::env::var_os(ETCD_DIR_VAR) {
            Some(dir) if !dir.is_empty() => EtcdBinaries::in_dir(&PathBuf::from(dir)),
            _ => EtcdBinaries {
                etcd: PathBuf::from("etcd"),
                etcdctl: PathBuf::from("etcdctl"),
            },
        }
    }

    /// etcd 3.6 as `scripts/kube-binaries.sh` builds it (see [`crate::go_bin`]).
    pub fn v3_6() -> Result<EtcdBinaries> {
        Ok(EtcdBinaries {
            etcd: crate::go_bin("etcd")?,
            etcdctl: crate::go_bin("etcdctl")?,
        })
    }

    fn in_dir(dir: &std::path::Path) -> EtcdBinaries {
        EtcdBinaries {
            etcd: dir.join("etcd"),
            etcdctl: dir.join("etcdctl"),
        }
    }
}

/// One etcd member process with its own temporary data directory.
///
/// Dropping it kills the process (SIGKILL) and removes the directory with its log. Every method
/// that starts the process waits until it answers healthy.
#[derive(Debug)]
pub struct Etcd {
    /// `--name`, `flb{pid}-e{n}` or `flb{pid}-e{n}m{i}` for cluster members.
    name: String,
    /// The network namespace it runs in, if any.
    netns: Option<String>,
    /// The address it listens on and advertises (127.0.0.1 outside namespaces).
    ip: Ipv4Addr,
    client_port: u16,
    peer_port: u16,
    /// `--initial-cluster`; only read on the first start, when the data directory is empty.
    initial_cluster: String,
    /// `--initial-cluster-token`.
    token: String,
    /// The programs it runs.
    binaries: EtcdBinaries,
    /// The running process; `None` once stopped or killed.
    child: Option<Child>,
    /// Holds `data/` and `etcd.log`.
    dir: TempDir,
}

impl Etcd {
    /// Starts a single-member etcd on free ports of 127.0.0.1 and waits until it is healthy.
    /// The programs are [`EtcdBinaries::from_env`].
    pub fn start() -> Result<Etcd> {
        Self::launch(None, Ipv4Addr::LOCALHOST, &EtcdBinaries::from_env())
    }

    /// Like [`start`](Self::start), with the given programs (for example
    /// [`EtcdBinaries::v3_6`]).
    pub fn start_with(binaries: &EtcdBinaries) -> Result<Etcd> {
        Self::launch(None, Ipv4Addr::LOCALHOST, binaries)
    }

    /// Starts a single-member etcd inside network namespace `netns` (`ip netns exec`), listening
    /// on `ip` (so other namespaces of a lab reach it) and on 127.0.0.1 there; needs root.
    ///
    /// [`endpoints`](Self::endpoints) names `ip`; [`ctl`](Self::ctl) runs inside the namespace.
    pub fn start_in_netns(netns: &str, ip: Ipv4Addr) -> Result<Etcd> {
        Self::launch(Some(netns), ip, &EtcdBinaries::from_env())
    }

    fn launch(netns: Option<&str>, ip: Ipv4Addr, binaries: &EtcdBinaries) -> Result<Etcd> {
        cleanup_stale_once();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ports = free_ports(2)?;
            let name = format!(
                "{}e{}",
                own_prefix(),
                NEXT_ETCD.fetch_add(1, Ordering::Relaxed)
            );
            let initial_cluster = format!("{name}={}", url(ip, ports[1]));
            let mut etcd = Etcd::prepare(
                name.clone(),
                netns,
                ip,
                (ports[0], ports[1]),
                initial_cluster,
                name,
                binaries.clone(),
            )?;
            etcd.spawn()?;
            match wait_all_ready(std::slice::from_mut(&mut etcd), READY_TIMEOUT) {
                Ok(()) => return Ok(etcd),
                Err(e) if attempt < BIND_ATTEMPTS && etcd.lost_port_race() => {
                    eprintln!("ferrolb-testkit: etcd lost a port race, retrying: {e}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates the member's directory; does not start it.
    fn prepare(
        name: String,
        netns: Option<&str>,
        ip: Ipv4Addr,
        (client_port, peer_port): (u16, u16),
        initial_cluster: String,
        token: String,
        binaries: EtcdBinaries,
    ) -> Result<Etcd> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}etcd-", own_prefix()))
            .tempdir()
            .map_err(|e| TestkitError::io("creating etcd's temporary directory", e))?;
        Ok(Etcd {
            name,
            netns: netns.map(str::to_owned),
            ip,
            client_port,
            peer_port,
            initial_cluster,
            token,
            binaries,
            child: None,
            dir,
        })
    }

    /// Starts the process (appending to its log); does not wait for it.
    fn spawn(&mut self) -> Result<()> {
        let log_path = self.log_path();
        let (log, log_err) = append_log(&log_path)?;
        let mut listen_client = url(self.ip, self.client_port);
        if self.ip != Ipv4Addr::LOCALHOST {
            listen_client.push(',');
            listen_client.push_str(&url(Ipv4Addr::LOCALHOST, self.client_port));
        }
        let peer = url(self.ip, self.peer_port);
        let mut cmd = command_in(self.netns.as_deref(), &self.binaries.etcd);
        cmd.arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={listen_client}"))
            .arg(format!(
                "--advertise-client-urls={}",
                url(self.ip, self.client_port)
            ))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg(format!("--heartbeat-interval={HEARTBEAT_MS}"))
            .arg(format!("--election-timeout={ELECTION_MS}"))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
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

    /// The member name (`--name`), unique per process and start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL, for example `http://127.0.0.1:23791` (or `http://{ip}:{port}` for an
    /// etcd in a namespace).
    pub fn endpoints(&self) -> String {
        url(self.ip, self.client_port)
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The peer (raft) port.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The network namespace it runs in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The pid of the running process, `None` after [`stop`](Self::stop) or [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (a paused process counts as running).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The data directory (`--data-dir`), kept across restarts.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file that receives etcd's stdout and stderr, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The whole log so far (empty if it cannot be read), for failing tests to print.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Stops the process gracefully: SIGTERM (and SIGCONT, should it be paused), then SIGKILL
    /// if it has not exited within 10 s. Does nothing if it is not running.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_GRACE)?;
        }
        Ok(())
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it. Does nothing if it is not
    /// running.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            if let Ok(None) = child.try_wait() {
                child
                    .kill()
                    .map_err(|e| TestkitError::io(format!("killing etcd pid {pid}"), e))?;
            }
            child
                .wait()
                .map_err(|e| TestkitError::io(format!("reaping etcd pid {pid}"), e))?;
        }
        Ok(())
    }

    /// Starts the process again with the same name, ports and data directory, as a restarted
    /// etcd would (keys, revisions and leases survive), and waits until it is healthy. Stops it
    /// first (gracefully) if it is running. A cluster member is healthy again once it has a
    /// leader, which needs a majority of members running.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()?;
        wait_all_ready(std::slice::from_mut(self), READY_TIMEOUT)
    }

    /// Freezes the process with SIGSTOP: it keeps its sockets but answers nothing, like a hung
    /// or partitioned server.
    pub fn pause(&self) -> Result<()> {
        self.signal(Signal::Stop)
    }

    /// Lets a paused process run again with SIGCONT.
    pub fn resume(&self) -> Result<()> {
        self.signal(Signal::Cont)
    }

    /// Sends `signal` to the etcd process.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.pid().ok_or_else(|| TestkitError::NotRunning {
            what: format!("etcd {}", self.name),
        })?;
        send_signal(&[pid], signal)
    }

    /// Waits up to `timeout` until the member answers healthy (for example after
    /// [`resume`](Self::resume)).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        wait_all_ready(std::slice::from_mut(self), timeout)
    }

    /// Whether the member answers healthy right now (it is up and sees a leader).
    pub fn is_healthy(&self) -> bool {
        match &self.netns {
            None => http_health(self.client_port),
            // The same request through curl inside the namespace: unlike etcdctl, which keeps
            // dialling for its whole dial timeout, curl fails at once while nothing listens.
            Some(ns) => {
                let mut cmd = command_in(Some(ns), "curl");
                cmd.args(["--silent", "--include", "--max-time", "1"])
                    .arg(format!(
                        "{}/health",
                        url(Ipv4Addr::LOCALHOST, self.client_port)
                    ));
                run(&mut cmd).is_ok_and(|o| {
                    o.status.success() && health_response_ok(&String::from_utf8_lossy(&o.stdout))
                })
            }
        }
    }

    /// Runs `etcdctl --endpoints=<this member> ARGS` with `ETCDCTL_API=3` (inside the namespace
    /// when the member runs in one) and returns its stdout; fails with its stderr when it exits
    /// unsuccessfully. Flags in `args` override the defaults (`--endpoints=...` included).
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        ctl_at(
            self.netns.as_deref(),
            &self.binaries.etcdctl,
            &self.ctl_endpoint(),
            args,
        )
    }

    /// The JSON value stored at `key`; `None` when the key is missing, unreadable or not JSON.
    pub fn get_json(&self, key: &str) -> Option<serde_json::Value> {
        let out = self.ctl(&["get", key, "--print-value-only"]).ok()?;
        serde_json::from_str(out.trim()).ok()
    }

    /// The URL `ctl` uses: loopback, reachable from where `ctl` runs.
    fn ctl_endpoint(&self) -> String {
        url(Ipv4Addr::LOCALHOST, self.client_port)
    }

    /// Whether this member is the raft leader right now, from `etcdctl endpoint status`.
    pub fn is_leader(&self) -> Result<bool> {
        let args = ["--command-timeout=2s", "endpoint", "status", "-w", "json"];
        let command = format!("etcdctl {}", args.join(" "));
        let out = self.ctl(&args)?;
        let parse_error = || TestkitError::Parse {
            command: command.clone(),
            output: out.clone(),
        };
        let value: serde_json::Value = serde_json::from_str(&out).map_err(|_| parse_error())?;
        let status = value.get(0).and_then(|v| v.get("Status"));
        let member = status
            .and_then(|s| s.get("header"))
            .and_then(|h| h.get("member_id"))
            .and_then(serde_json::Value::as_u64);
        let leader = status
            .and_then(|s| s.get("leader"))
            .and_then(serde_json::Value::as_u64);
        match (member, leader) {
            (Some(member), Some(leader)) => Ok(leader != 0 && member == leader),
            _ => Err(parse_error()),
        }
    }

    /// Whether the log says a listener could not bind (a lost race for a free port).
    fn lost_port_race(&self) -> bool {
        self.log().contains("address already in use")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
    }
}

/// A cluster of etcd members that know each other from the start (`--initial-cluster`).
///
/// Dropping it kills every member and removes their directories.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Etcd>,
}

impl EtcdCluster {
    /// Starts `size` members on free ports of 127.0.0.1 and waits until all are healthy.
    pub fn start(size: usize) -> Result<EtcdCluster> {
        let places = vec![(None, Ipv4Addr::LOCALHOST); size];
        Self::launch(&places)
    }

    /// Starts one member per `(namespace, ip)` pair, each inside its namespace listening on its
    /// `ip` (and 127.0.0.1 there), and waits until all are healthy; needs root. The namespaces
    /// must reach each other's addresses, as the hosts of one [`Lab`](crate::Lab) do.
    pub fn start_in_netns(places: &[(&str, Ipv4Addr)]) -> Result<EtcdCluster> {
        let places: Vec<(Option<&str>, Ipv4Addr)> =
            places.iter().map(|&(ns, ip)| (Some(ns), ip)).collect();
        Self::launch(&places)
    }

    fn launch(places: &[(Option<&str>, Ipv4Addr)]) -> Result<EtcdCluster> {
        cleanup_stale_once();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ports = free_ports(2 * places.len())?;
            let base = format!(
                "{}e{}",
                own_prefix(),
                NEXT_ETCD.fetch_add(1, Ordering::Relaxed)
            );
            let names: Vec<String> = (0..places.len()).map(|i| format!("{base}m{i}")).collect();
            let initial_cluster = places
                .iter()
                .enumerate()
                .map(|(i, &(_, ip))| format!("{}={}", names[i], url(ip, ports[2 * i + 1])))
                .collect::<Vec<_>>()
                .join(",");
            let mut members = Vec::with_capacity(places.len());
            for (i, &(netns, ip)) in places.iter().enumerate() {
                let mut member = Etcd::prepare(
                    names[i].clone(),
                    netns,
                    ip,
                    (ports[2 * i], ports[2 * i + 1]),
                    initial_cluster.clone(),
                    base.clone(),
                    EtcdBinaries::from_env(),
                )?;
                member.spawn()?;
                members.push(member);
            }
            match wait_all_ready(&mut members, READY_TIMEOUT) {
                Ok(()) => return Ok(EtcdCluster { members }),
                Err(e) if attempt < BIND_ATTEMPTS && members.iter().any(Etcd::lost_port_race) => {
                    eprintln!("ferrolb-testkit: etcd cluster lost a port race, retrying: {e}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (only `start(0)` makes one).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// All members, in start order.
    pub fn members(&self) -> &[Etcd] {
        &self.members
    }

    /// Member `i` (from 0).
    ///
    /// # Panics
    ///
    /// If `i` is not below [`len`](Self::len).
    pub fn member(&self, i: usize) -> &Etcd {
        &self.members[i]
    }

    /// Member `i` (from 0), to stop, pause or restart it.
    ///
    /// # Panics
    ///
    /// If `i` is not below [`len`](Self::len).
    pub fn member_mut(&mut self, i: usize) -> &mut Etcd {
        &mut self.members[i]
    }

    /// Every member's client URL, comma-separated, as clients take them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Etcd::endpoints)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills member `i` with SIGKILL; see [`Etcd::kill`].
    ///
    /// # Panics
    ///
    /// If `i` is not below [`len`](Self::len).
    pub fn kill_member(&mut self, i: usize) -> Result<()> {
        self.members[i].kill()
    }

    /// Stops member `i` gracefully; see [`Etcd::stop`].
    ///
    /// # Panics
    ///
    /// If `i` is not below [`len`](Self::len).
    pub fn stop_member(&mut self, i: usize) -> Result<()> {
        self.members[i].stop()
    }

    /// Restarts member `i` with its data and waits until it is healthy; see [`Etcd::restart`].
    ///
    /// # Panics
    ///
    /// If `i` is not below [`len`](Self::len).
    pub fn restart_member(&mut self, i: usize) -> Result<()> {
        self.members[i].restart()
    }

    /// Starts every member that is not running, then waits until all are healthy; the way back
    /// from losing a majority, which [`restart_member`](Self::restart_member) alone cannot do.
    pub fn restart_stopped(&mut self) -> Result<()> {
        for member in &mut self.members {
            if !member.is_running() {
                member.child = None;
                member.spawn()?;
            }
        }
        wait_all_ready(&mut self.members, READY_TIMEOUT)
    }

    /// Runs `etcdctl --endpoints=<all members> ARGS` (inside member 0's namespace when the
    /// cluster runs in namespaces); see [`Etcd::ctl`].
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let netns = self.members.first().and_then(Etcd::netns);
        ctl_at(
            netns,
            &EtcdBinaries::from_env().etcdctl,
            &self.endpoints(),
            args,
        )
    }

    /// The index of the member that is the raft leader right now, if a running member says it
    /// is. Paused members are skipped only after etcdctl's 2 s timeout.
    pub fn leader(&mut self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            let member = &mut self.members[i];
            member.is_running() && member.is_leader().unwrap_or(false)
        })
    }

    /// Waits up to `timeout` until some member is the leader and returns its index.
    pub fn wait_for_leader(&mut self, timeout: Duration) -> Result<usize> {
        poll_until(
            "an etcd leader",
            timeout,
            Duration::from_millis(100),
            || self.leader(),
        )
    }
}

/// Runs etcdctl with `--endpoints=endpoints` and `args`, inside `netns` if given.
fn ctl_at(
    netns: Option<&str>,
    etcdctl: &std::path::Path,
    endpoints: &str,
    args: &[&str],
) -> Result<String> {
    let mut cmd: Command = command_in(netns, etcdctl);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args);
    let output = run_checked(&mut cmd)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Waits until every member in `members` answers healthy, failing early when one exits.
fn wait_all_ready(members: &mut [Etcd], timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut ready = vec![false; members.len()];
    loop {
        for (i, member) in members.iter_mut().enumerate() {
            if ready[i] {
                continue;
            }
            let Some(child) = member.child.as_mut() else {
                return Err(TestkitError::NotRunning {
                    what: format!("etcd {}", member.name),
                });
            };
            let exited = child
                .try_wait()
                .map_err(|e| TestkitError::io(format!("waiting for etcd {}", member.name), e))?;
            if let Some(status) = exited {
                member.child = None;
                return Err(TestkitError::EtcdExited {
                    name: member.name.clone(),
                    status,
                    log_tail: tail(&member.log_path(), LOG_TAIL_LINES),
                });
            }
            ready[i] = member.is_healthy();
        }
        if ready.iter().all(|&r| r) {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            let member = members
                .iter()
                .zip(&ready)
                .find_map(|(member, &ready)| (!ready).then_some(member))
                .ok_or_else(|| TestkitError::Timeout {
                    what: "etcd members".to_owned(),
                    waited: start.elapsed(),
                })?;
            return Err(TestkitError::EtcdNotReady {
                name: member.name.clone(),
                endpoint: member.endpoints(),
                waited: start.elapsed(),
                log_tail: tail(&member.log_path(), LOG_TAIL_LINES),
            });
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /health` on 127.0.0.1:`port`, written by hand; true when etcd says `"health":"true"`.
fn http_health(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(1));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    // HTTP/1.0: the server closes the connection after the response. Bound what we read.
    if stream.take(64 * 1024).read_to_end(&mut response).is_err() {
        return false;
    }
    health_response_ok(&String::from_utf8_lossy(&response))
}

/// Whether an HTTP response to `GET /health` says healthy: status 200 and `"health":"true"`.
fn health_response_ok(response: &str) -> bool {
    let status_ok = response
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .is_some_and(|code| code == "200");
    let compact: String = response.chars().filter(|c| !c.is_whitespace()).collect();
    status_ok && compact.contains("\"health\":\"true\"")
}

/// `http://ip:port`.
fn url(ip: Ipv4Addr, port: u16) -> String {
    format!("http://{ip}:{port}")
}

/// `n` distinct ports that were free on 127.0.0.1 a moment ago (all bound at once, then
/// released).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to find free ports", e))?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| TestkitError::io("reading a listener's port", e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_responses_are_read_by_status_and_body() {
        let ok = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"health\":\"true\"}";
        assert!(health_response_ok(ok));
        let spaced = "HTTP/1.1 200 OK\r\n\r\n{\"health\": \"true\", \"reason\": \"\"}";
        assert!(health_response_ok(spaced));
        let no_leader = "HTTP/1.0 503 Service Unavailable\r\n\r\n{\"health\":\"false\"}";
        assert!(!health_response_ok(no_leader));
        assert!(!health_response_ok(""));
        assert!(!health_response_ok("garbage"));
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(6).expect("free ports");
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 6);
    }
}
