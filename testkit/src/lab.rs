//! A layer-2 network lab: private namespaces on one Linux bridge, built with iproute2.
//!
//! See the crate documentation for the topology and the address plan.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::error::{Result, TestkitError};
use crate::etcd::Etcd;
use crate::process::{
    Signal, append_log, command_in, describe, kill_and_reap, run, run_checked, run_with_input,
    send_signal, terminate, wait_child,
};
use crate::stale::{self, cleanup_stale_once, delete_namespace, own_prefix};

/// The one interface of every host, attached to the lab's bridge.
pub const IFACE: &str = "eth0";
/// The IPv4 prefix length of a lab's subnet (`10.250.S.0/24`).
pub const PREFIX4: u8 = 24;
/// The IPv6 prefix length of a lab's subnet (`fd00:250:S::/64`).
pub const PREFIX6: u8 = 64;
/// The most nodes a lab can have (node addresses run from `.11` to `.99`).
pub const MAX_NODES: usize = 89;
/// How many service addresses [`Lab::vip4`] and [`Lab::vip6`] hand out (`.100` to `.199`).
pub const VIPS: u8 = 100;

/// The bridge in the switch namespace.
const BRIDGE: &str = "br0";

/// Numbers labs within this process.
static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// A host of a lab: each is a network namespace with one interface, [`IFACE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    /// The client that sends ARP/NDP requests and traffic to service addresses.
    Client,
    /// Node `i`, from 1, where a speaker runs.
    Node(usize),
    /// The infrastructure host, for etcd or a reconciler.
    Infra,
}

impl Host {
    /// The last octet of the host's IPv4 address (and the last group of its IPv6 address, read
    /// as hexadecimal): client 1, node `i` 10+`i`, infra 250.
    fn octet(self) -> u8 {
        match self {
            Host::Client => 1,
            // Lab::new caps nodes at MAX_NODES, and every accessor checks the host exists.
            Host::Node(i) => u8::try_from(10 + i.min(MAX_NODES)).unwrap_or(u8::MAX),
            Host::Infra => 250,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Client => f.write_str("client"),
            Host::Node(i) => write!(f, "node{i}"),
            Host::Infra => f.write_str("infra"),
        }
    }
}

/// What the lab knows about one host.
#[derive(Debug)]
struct HostState {
    host: Host,
    ns: String,
    mac: String,
}

/// A network lab: a client, `N` nodes and an infra host, each in its own network namespace,
/// all on one bridge that lives in a fifth, "switch" namespace. Nothing is created in the root
/// namespace.
///
/// Dropping the lab (or [`close`](Self::close)) kills every process left in its namespaces and
/// deletes them, which deletes their interfaces. All methods need root.
#[derive(Debug)]
pub struct Lab {
    /// `flb{pid}-{n}`: the start of every namespace name.
    id: String,
    /// `S` in `10.250.S.0/24`.
    subnet: u8,
    nodes: usize,
    switch_ns: String,
    hosts: Vec<HostState>,
    /// Namespaces created so far, in creation order, for teardown.
    namespaces: Vec<String>,
    /// Logs of spawned processes.
    dir: TempDir,
    closed: bool,
}

impl Lab {
    /// Builds a lab with `nodes` nodes (and a client and an infra host); needs root.
    ///
    /// First removes what dead test processes left behind (once per process, see
    /// [`cleanup_stale`](Self::cleanup_stale)). If building fails half-way, what was built is
    /// removed before the error is returned.
    ///
    /// # Panics
    ///
    /// If `nodes` is above [`MAX_NODES`].
    pub fn new(nodes: usize) -> Result<Lab> {
        Self::build_with(nodes, None)
    }

    /// A lab on a chosen subnet `10.250.S.0/24` (1 to 250), for a demo whose other addresses
    /// must not collide with the lab's hosts. Labs are isolated, so two labs may share one.
    pub fn with_subnet(nodes: usize, subnet: u8) -> Result<Lab> {
        assert!(
            (1..=250).contains(&subnet),
            "subnet {subnet} is outside 1 to 250"
        );
        Self::build_with(nodes, Some(subnet))
    }

    fn build_with(nodes: usize, subnet: Option<u8>) -> Result<Lab> {
        assert!(
            nodes <= MAX_NODES,
            "a lab has at most {MAX_NODES} nodes, not {nodes}"
        );
        cleanup_stale_once();
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let subnet = subnet
            .unwrap_or_else(|| u8::try_from((process::id() as usize + n) % 250 + 1).unwrap_or(1));
        let id = format!("{}{n}", own_prefix());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}lab{n}-", own_prefix()))
            .tempdir()
            .map_err(|e| TestkitError::io("creating the lab's log directory", e))?;
        let mut lab = Lab {
            switch_ns: format!("{id}-sw"),
            id,
            subnet,
            nodes,
            hosts: Vec::with_capacity(nodes + 2),
            namespaces: Vec::with_capacity(nodes + 3),
            dir,
            closed: false,
        };
        // On error, dropping `lab` removes whatever was created.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<()> {
        let sw = self.switch_ns.clone();
        self.add_namespace(&sw)?;
        // The switch forwards frames and says nothing itself: no IPv6 on the bridge or its ports
        // (interfaces created later inherit `default`).
        self.sysctl(
            &sw,
            &[
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )?;
        // Without snooping, the bridge floods multicast (NDP solicitations to solicited-node
        // groups) to every port, whatever MLD reports it has or has not seen.
        ip(
            Some(&sw),
            &[
                "link",
                "add",
                BRIDGE,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        )?;
        ip(Some(&sw), &["link", "set", BRIDGE, "up"])?;

        let mut hosts = vec![Host::Client];
        hosts.extend((1..=self.nodes).map(Host::Node));
        hosts.push(Host::Infra);
        for host in hosts {
            self.add_host(host)?;
        }
        Ok(())
    }

    fn add_host(&mut self, host: Host) -> Result<()> {
        let ns = format!("{}-{host}", self.id);
        self.add_namespace(&ns)?;
        let mac = format!("02:fb:{:02x}:00:00:{:02x}", self.subnet, host.octet());
        let port = format!("v{host}");
        // Both ends are created directly in their namespaces: the bridge port in the switch,
        // eth0 in the host.
        ip(
            Some(&self.switch_ns),
            &[
                "link", "add", &port, "type", "veth", "peer", "name", IFACE, "address", &mac,
                "netns", &ns,
            ],
        )?;
        ip(
            Some(&self.switch_ns),
            &["link", "set", &port, "master", BRIDGE, "up"],
        )?;
        self.hosts.push(HostState {
            host,
            ns: ns.clone(),
            mac,
        });
        // IPv6 addresses survive `set_link(host, false)`, and link-local ones are usable at once.
        self.sysctl(
            &ns,
            &[
                &format!("net.ipv6.conf.{IFACE}.keep_addr_on_down=1"),
                &format!("net.ipv6.conf.{IFACE}.accept_dad=0"),
            ],
        )?;
        ip(Some(&ns), &["link", "set", "lo", "up"])?;
        let v4 = format!("{}/{PREFIX4}", self.ip(host));
        ip(Some(&ns), &["addr", "add", &v4, "dev", IFACE])?;
        let v6 = format!("{}/{PREFIX6}", self.ip6(host));
        ip(Some(&ns), &["addr", "add", &v6, "dev", IFACE, "nodad"])?;
        ip(Some(&ns), &["link", "set", IFACE, "up"])?;
        Ok(())
    }

    fn add_namespace(&mut self, ns: &str) -> Result<()> {
        ip(None, &["netns", "add", ns])?;
        self.namespaces.push(ns.to_owned());
        Ok(())
    }

    fn sysctl(&self, ns: &str, settings: &[&str]) -> Result<()> {
        let mut cmd = command_in(Some(ns), "sysctl");
        cmd.args(["-q", "-w"]).args(settings);
        run_checked(&mut cmd).map(drop)
    }

    /// Removes namespaces, etcd processes and temporary directories left by test processes
    /// that died without cleaning up (their pid is gone); returns a line per removed thing.
    ///
    /// [`Lab::new`], [`Etcd::start`] and the other starts run this once per process by
    /// themselves.
    pub fn cleanup_stale() -> Result<Vec<String>> {
        stale::cleanup_stale()
    }

    /// `flb{pid}-{n}`, the prefix of every namespace of this lab.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `S` of the lab's subnets `10.250.S.0/24` and `fd00:250:S::/64`.
    pub fn subnet(&self) -> u8 {
        self.subnet
    }

    /// `10.250.S.0/24`.
    pub fn cidr4(&self) -> String {
        format!("10.250.{}.0/{PREFIX4}", self.subnet)
    }

    /// `fd00:250:S::/64`.
    pub fn cidr6(&self) -> String {
        format!("{}/{PREFIX6}", v6(self.subnet, 0))
    }

    /// The number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Every host: client, node 1 to N, infra.
    pub fn hosts(&self) -> Vec<Host> {
        self.hosts.iter().map(|h| h.host).collect()
    }

    /// The namespace of the switch, which holds the bridge `br0` and one port per host.
    pub fn switch_ns(&self) -> &str {
        &self.switch_ns
    }

    /// Where [`spawn`](Self::spawn) writes process logs.
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    fn state(&self, host: Host) -> &HostState {
        match self.hosts.iter().find(|h| h.host == host) {
            Some(state) => state,
            None => panic!(
                "lab {} has no host {host} (it has client, node1..node{}, infra)",
                self.id, self.nodes
            ),
        }
    }

    /// The network namespace of `host`, as `ip netns` names it.
    ///
    /// # Panics
    ///
    /// If the lab has no such host (a node number above [`nodes`](Self::nodes), or 0); so do all
    /// methods that take a host.
    pub fn ns(&self, host: Host) -> &str {
        &self.state(host).ns
    }

    /// The IPv4 address of `host`: `10.250.S.1` (client), `10.250.S.{10+i}` (node `i`),
    /// `10.250.S.250` (infra).
    pub fn ip(&self, host: Host) -> Ipv4Addr {
        let octet = self.state(host).host.octet();
        Ipv4Addr::new(10, 250, self.subnet, octet)
    }

    /// The IPv6 address of `host`: `fd00:250:S::1`, `fd00:250:S::{10+i}`, `fd00:250:S::250`,
    /// written with the same digits as the IPv4 address.
    pub fn ip6(&self, host: Host) -> Ipv6Addr {
        let octet = self.state(host).host.octet();
        v6(self.subnet, octet)
    }

    /// The MAC address of `host`'s `eth0`, lowercase: `02:fb:SS:00:00:HH` with `SS` the subnet
    /// and `HH` the last octet of its IPv4 address, in hexadecimal. Set when the lab is built;
    /// [`read_mac`](Self::read_mac) reads the live value.
    pub fn mac(&self, host: Host) -> String {
        self.state(host).mac.clone()
    }

    /// Reads the MAC address of `host`'s `eth0` from `/sys/class/net` inside its namespace.
    pub fn read_mac(&self, host: Host) -> Result<String> {
        let path = format!("/sys/class/net/{IFACE}/address");
        let out = self.exec_ok(host, ["cat", path.as_str()])?;
        Ok(out.trim().to_ascii_lowercase())
    }

    /// Service address `k` (below [`VIPS`]) of this lab: `10.250.S.{100+k}`. No host has it;
    /// it is for pools and speakers.
    ///
    /// # Panics
    ///
    /// If `k` is not below [`VIPS`].
    pub fn vip4(&self, k: u8) -> Ipv4Addr {
        assert!(k < VIPS, "service address {k} is outside .100-.199");
        Ipv4Addr::new(10, 250, self.subnet, 100 + k)
    }

    /// Service address `k` (below [`VIPS`]) in IPv6: `fd00:250:S::{100+k}`.
    ///
    /// # Panics
    ///
    /// If `k` is not below [`VIPS`].
    pub fn vip6(&self, k: u8) -> Ipv6Addr {
        assert!(k < VIPS, "service address {k} is outside ::100-::199");
        v6(self.subnet, 100 + k)
    }

    /// The IPv4 service range, `10.250.S.100-10.250.S.199`, as a pool's `addresses` take it.
    pub fn vip_range4(&self) -> String {
        format!("{}-{}", self.vip4(0), self.vip4(VIPS - 1))
    }

    /// The IPv6 service range, `fd00:250:S::100-fd00:250:S::199`.
    pub fn vip_range6(&self) -> String {
        format!("{}-{}", self.vip6(0), self.vip6(VIPS - 1))
    }

    /// A `Command` that runs `program` inside `host`'s namespace (`ip netns exec`), to add
    /// arguments, environment or a working directory before running or
    /// [`spawn_command`](Self::spawn_command)ing it.
    pub fn command(&self, host: Host, program: impl AsRef<OsStr>) -> Command {
        command_in(Some(self.ns(host)), program)
    }

    fn command_from<I, S>(&self, host: Host, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args = args.into_iter();
        let program = args
            .next()
            .unwrap_or_else(|| panic!("a command for {host} needs at least a program"));
        let mut cmd = self.command(host, program);
        cmd.args(args);
        cmd
    }

    /// Runs `args` (program first) inside `host`'s namespace and returns its output, whatever
    /// its exit status.
    ///
    /// # Panics
    ///
    /// If `args` is empty.
    pub fn exec<I, S>(&self, host: Host, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut self.command_from(host, args))
    }

    /// Runs `args` inside `host`'s namespace and returns its stdout; fails with its stderr
    /// unless it exits successfully.
    ///
    /// # Panics
    ///
    /// If `args` is empty.
    pub fn exec_ok<I, S>(&self, host: Host, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = run_checked(&mut self.command_from(host, args))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts `args` (program first) inside `host`'s namespace in the background, with stdout
    /// and stderr appended to `log_name` in [`log_dir`](Self::log_dir). The process is killed
    /// when the returned handle is dropped, and at the latest when the lab is.
    ///
    /// # Panics
    ///
    /// If `args` is empty.
    pub fn spawn<I, S>(&self, host: Host, args: I, log_name: &str) -> Result<LabProcess>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn_command(&mut self.command_from(host, args), log_name)
    }

    /// Starts a prepared command (see [`command`](Self::command)) like [`spawn`](Self::spawn).
    pub fn spawn_command(&self, cmd: &mut Command, log_name: &str) -> Result<LabProcess> {
        let log_path = self.dir.path().join(log_name);
        let (log, log_err) = append_log(&log_path)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| TestkitError::Spawn {
                program: describe(cmd),
                source,
            })?;
        Ok(LabProcess {
            label: format!("`{}`", describe(cmd)),
            child,
            status: None,
            log_path,
        })
    }

    /// Sets `host`'s `eth0` down or up, as a pulled or replugged cable. Addresses (IPv6 too)
    /// stay configured; routes through it return when it is up again.
    pub fn set_link(&self, host: Host, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        ip(Some(self.ns(host)), &["link", "set", IFACE, state])
    }

    /// Adds a blackhole route for `addr` (`/32` or `/128`) in `host`'s namespace: packets from
    /// `host` to it are dropped (sends fail), as during a partition. Undo with
    /// [`unblackhole`](Self::unblackhole).
    pub fn blackhole(&self, host: Host, addr: impl Into<IpAddr>) -> Result<()> {
        let prefix = host_prefix(addr.into());
        ip(
            Some(self.ns(host)),
            &["route", "add", "blackhole", prefix.as_str()],
        )
    }

    /// Removes a route added by [`blackhole`](Self::blackhole).
    pub fn unblackhole(&self, host: Host, addr: impl Into<IpAddr>) -> Result<()> {
        let prefix = host_prefix(addr.into());
        ip(
            Some(self.ns(host)),
            &["route", "del", "blackhole", prefix.as_str()],
        )
    }

    /// Sends one ICMP echo request from `from` to `addr` and waits up to a second; whether an
    /// answer came. Use it to show that traffic is cut; to show that it flows, use
    /// [`reaches`](Self::reaches), which allows for a link that is still coming up.
    pub fn ping(&self, from: Host, addr: impl Into<IpAddr>) -> Result<bool> {
        let addr = addr.into().to_string();
        let output = self.exec(from, ["ping", "-n", "-c", "1", "-W", "1", addr.as_str()])?;
        Ok(output.status.success())
    }

    /// Whether `from` gets an answer from `addr` within five seconds: echo requests every 200 ms
    /// until the first reply. A link just set up, or a neighbour entry that failed while the link
    /// was down, can lose the first requests on a loaded machine.
    pub fn reaches(&self, from: Host, addr: impl Into<IpAddr>) -> Result<bool> {
        let addr = addr.into().to_string();
        let output = self.exec(
            from,
            [
                "ping",
                "-n",
                "-c",
                "1",
                "-i",
                "0.2",
                "-w",
                "5",
                addr.as_str(),
            ],
        )?;
        Ok(output.status.success())
    }

    /// Sends one ARP request for `addr` from `from`'s `eth0` and returns the MAC address of every
    /// host that answered within `timeout` (lowercase, each once, in order of arrival); empty
    /// when none did. It always takes the whole `timeout`, so duplicate answers are seen.
    ///
    /// Runs Debian's `arping` (Thomas Habets', 2.x): `arping -i eth0 -c 1 -w SECONDS ADDR`.
    pub fn arping(&self, from: Host, addr: Ipv4Addr, timeout: Duration) -> Result<Vec<String>> {
        let wait = format!("{:.3}", timeout.as_secs_f64());
        let addr = addr.to_string();
        let mut cmd =
            self.command_from(from, ["arping", "-i", IFACE, "-c", "1", "-w", &wait, &addr]);
        let output = run(&mut cmd)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        // arping exits 1 both when nothing answered and on errors; only a finished run prints
        // its statistics.
        if output.status.success() || stdout.contains("packets transmitted") {
            Ok(parse_arping(&stdout))
        } else {
            Err(TestkitError::Command {
                command: describe(&cmd),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// Sends IPv6 neighbor solicitations for `addr` from `from`'s `eth0` (up to three, spread over
    /// `timeout`) and returns the MAC address (lowercase) of the first answer, `None` if nothing
    /// answered. Runs `ndisc6` (package ndisc6).
    pub fn ndisc(&self, from: Host, addr: Ipv6Addr, timeout: Duration) -> Result<Option<String>> {
        let per_try = (timeout / 3).max(Duration::from_millis(100));
        let macs = self.run_ndisc(from, addr, &["-1", "-r", "3"], per_try)?;
        Ok(macs.into_iter().next())
    }

    /// Sends one IPv6 neighbor solicitation for `addr` and returns the MAC addresses of every
    /// answer within `timeout` (each once), to catch two hosts answering for one address.
    pub fn ndisc_all(&self, from: Host, addr: Ipv6Addr, timeout: Duration) -> Result<Vec<String>> {
        self.run_ndisc(from, addr, &["-m", "-r", "1"], timeout)
    }

    fn run_ndisc(
        &self,
        from: Host,
        addr: Ipv6Addr,
        mode: &[&str],
        per_try: Duration,
    ) -> Result<Vec<String>> {
        let wait = per_try.as_millis().max(1).to_string();
        let addr = addr.to_string();
        let mut cmd = self.command(from, "ndisc6");
        cmd.arg("-n").args(mode).args(["-w", &wait, &addr, IFACE]);
        let output = run(&mut cmd)?;
        match output.status.code() {
            Some(0) => Ok(parse_ndisc(&String::from_utf8_lossy(&output.stdout))),
            // ndisc6 exits 2 when nothing answered.
            Some(2) => Ok(Vec::new()),
            _ => Err(TestkitError::Command {
                command: describe(&cmd),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            }),
        }
    }

    /// The MAC address `host`'s neighbor table (ARP or NDP cache) holds for `addr`, if any
    /// (entries that failed have none).
    pub fn neighbor(&self, host: Host, addr: impl Into<IpAddr>) -> Result<Option<String>> {
        let addr = addr.into().to_string();
        let out = self.exec_ok(
            host,
            ["ip", "neigh", "show", "to", addr.as_str(), "dev", IFACE],
        )?;
        Ok(out.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|&w| w == "lladdr")?;
            normalize_mac(words.next()?)
        }))
    }

    /// Empties `host`'s neighbor tables (ARP and NDP caches) on `eth0`.
    pub fn flush_neighbors(&self, host: Host) -> Result<()> {
        ip(Some(self.ns(host)), &["neigh", "flush", "dev", IFACE])
    }

    /// Loads an nftables ruleset (`nft -f -` syntax) inside `host`'s namespace, for example
    /// `"table inet t { chain c { type filter hook input priority 0; icmp type echo-request drop; }; }"`
    /// (blocks need `;` or a newline between them).
    /// `"flush ruleset"` removes everything again.
    pub fn nft(&self, host: Host, ruleset: &str) -> Result<()> {
        let mut cmd = self.command(host, "nft");
        cmd.args(["-f", "-"]);
        run_with_input(&mut cmd, ruleset.as_bytes()).map(drop)
    }

    /// A port on 127.0.0.1 inside `host` that forwards every connection to `target` on this
    /// process's own loopback (a server the test runs outside the lab, such as the real
    /// `kube-apiserver`), until the [`Forward`](crate::Forward) is dropped.
    pub fn forward(&self, host: Host, target: std::net::SocketAddr) -> Result<crate::Forward> {
        crate::Forward::start(self.ns(host), target)
    }

    /// Starts a single etcd in the infra host, listening on its address (so the nodes reach it
    /// at [`Etcd::endpoints`]) and on 127.0.0.1 there.
    pub fn start_etcd(&self) -> Result<Etcd> {
        Etcd::start_in_netns(self.ns(Host::Infra), self.ip(Host::Infra))
    }

    /// Tears the lab down now, reporting failures, which `Drop` can only print: kills every
    /// process in its namespaces and deletes them.
    pub fn close(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let mut first_error = None;
        // Hosts first (their eth0 take the bridge ports with them), the switch last.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = delete_namespace(ns) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("ferrolb-testkit: tearing down lab {}: {e}", self.id);
        }
    }
}

/// A process started in a lab host by [`Lab::spawn`]; killed (SIGKILL) when dropped.
///
/// Only the process itself is signalled; anything it forks is killed with the lab.
#[derive(Debug)]
pub struct LabProcess {
    label: String,
    child: Child,
    /// Set once the process has been reaped.
    status: Option<ExitStatus>,
    log_path: PathBuf,
}

impl LabProcess {
    /// The process id (`ip netns exec` replaces itself with the program, so this is the
    /// program's pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        if self.status.is_some() {
            return Err(TestkitError::NotRunning {
                what: self.label.clone(),
            });
        }
        send_signal(&[self.pid()], signal)
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| TestkitError::io(format!("waiting for {}", self.label), e))?;
        }
        Ok(self.status)
    }

    /// Whether it is still running (a stopped process counts as running).
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for it to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = wait_child(&mut self.child, timeout)?;
        }
        Ok(self.status)
    }

    /// Stops it gracefully: SIGTERM (and SIGCONT, should it be stopped), SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = terminate(&mut self.child, grace)?;
        self.status = Some(status);
        Ok(status)
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.child
            .kill()
            .map_err(|e| TestkitError::io(format!("killing {}", self.label), e))?;
        let status = self
            .child
            .wait()
            .map_err(|e| TestkitError::io(format!("reaping {}", self.label), e))?;
        self.status = Some(status);
        Ok(status)
    }

    /// Everything it wrote to stdout and stderr so far (empty if the log cannot be read), for
    /// failing tests to print.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            kill_and_reap(&mut self.child);
        }
    }
}

/// Runs `ip [-n NS] ARGS`, failing with its stderr.
fn ip(netns: Option<&str>, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args);
    run_checked(&mut cmd).map(drop)
}

/// `fd00:250:S::X` where `S` and `X` are written with their decimal digits (so the address reads
/// like the IPv4 one).
fn v6(subnet: u8, last: u8) -> Ipv6Addr {
    let digits = |n: u8| u16::from_str_radix(&n.to_string(), 16).unwrap_or(0);
    Ipv6Addr::new(0xfd00, 0x250, digits(subnet), 0, 0, 0, 0, digits(last))
}

/// `addr/32` or `addr/128`.
fn host_prefix(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// A MAC address in lowercase with two digits per byte, if `s` is one (`a:b:c:d:e:f` forms,
/// any case, as arping and ndisc6 print them).
fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    let valid = parts.len() == 6
        && parts
            .iter()
            .all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return None;
    }
    let bytes: Vec<String> = parts
        .iter()
        .map(|p| format!("{:0>2}", p.to_ascii_lowercase()))
        .collect();
    Some(bytes.join(":"))
}

/// The MACs in arping's reply lines, `42 bytes from aa:bb:cc:dd:ee:ff (10.0.0.1): index=0 …`.
fn parse_arping(stdout: &str) -> Vec<String> {
    let mut macs: Vec<String> = Vec::new();
    for line in stdout.lines() {
        let Some((_, rest)) = line.split_once(" bytes from ") else {
            continue;
        };
        if let Some(mac) = rest.split_whitespace().next().and_then(normalize_mac) {
            if !macs.contains(&mac) {
                macs.push(mac);
            }
        }
    }
    macs
}

/// The MACs in ndisc6's `Target link-layer address: AA:BB:CC:DD:EE:FF` lines.
fn parse_ndisc(stdout: &str) -> Vec<String> {
    let mut macs: Vec<String> = Vec::new();
    for line in stdout.lines() {
        let Some((_, rest)) = line.split_once("link-layer address:") else {
            continue;
        };
        if let Some(mac) = rest.split_whitespace().next().and_then(normalize_mac) {
            if !macs.contains(&mac) {
                macs.push(mac);
            }
        }
    }
    macs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arping_replies_yield_each_mac_once() {
        let out = "ARPING 10.250.199.2\n\
            42 bytes from e2:d4:ce:2e:56:3a (10.250.199.2): index=0 time=8.743 usec\n\
            42 bytes from EA:CD:95:83:2F:55 (10.250.199.2): index=1 time=45.107 usec\n\
            42 bytes from e2:d4:ce:2e:56:3a (10.250.199.2): index=2 time=9.1 usec\n\
            \n\
            --- 10.250.199.2 statistics ---\n\
            1 packets transmitted, 3 packets received,   0% unanswered (2 extra)\n";
        assert_eq!(
            parse_arping(out),
            vec!["e2:d4:ce:2e:56:3a", "ea:cd:95:83:2f:55"]
        );
    }

    #[test]
    fn arping_without_replies_yields_nothing() {
        let out = "ARPING 10.250.199.9\nTimeout\n\n--- 10.250.199.9 statistics ---\n\
            1 packets transmitted, 0 packets received, 100% unanswered (0 extra)\n";
        assert!(parse_arping(out).is_empty());
    }

    #[test]
    fn ndisc_answers_are_lowercased() {
        let out = "Soliciting fd00:250:199::2 (fd00:250:199::2) on eth0...\n\
            Target link-layer address: E2:D4:CE:2E:56:3A\n from fd00:250:199::2\n\
            Target link-layer address: EA:CD:95:83:2F:55\n from fd00:250:199::2\n";
        assert_eq!(
            parse_ndisc(out),
            vec!["e2:d4:ce:2e:56:3a", "ea:cd:95:83:2f:55"]
        );
    }

    #[test]
    fn macs_are_validated_and_padded() {
        assert_eq!(
            normalize_mac("2:FB:a:0:0:b").as_deref(),
            Some("02:fb:0a:00:00:0b")
        );
        assert_eq!(normalize_mac("02:fb:0a:00:00"), None);
        assert_eq!(normalize_mac("02:fb:0a:00:00:zz"), None);
        assert_eq!(normalize_mac("(10.0.0.1):"), None);
    }

    #[test]
    fn ipv6_addresses_mirror_the_ipv4_digits() {
        assert_eq!(v6(37, 11).to_string(), "fd00:250:37::11");
        assert_eq!(v6(250, 250).to_string(), "fd00:250:250::250");
        assert_eq!(v6(5, 0).to_string(), "fd00:250:5::");
    }

    #[test]
    fn hosts_are_named_for_namespaces_and_ports() {
        assert_eq!(Host::Client.to_string(), "client");
        assert_eq!(Host::Node(12).to_string(), "node12");
        assert_eq!(Host::Infra.to_string(), "infra");
        // The bridge port name `v{host}` must fit IFNAMSIZ (15 characters).
        assert!(format!("v{}", Host::Node(MAX_NODES)).len() <= 15);
        assert_eq!(Host::Node(1).octet(), 11);
        assert_eq!(Host::Node(MAX_NODES).octet(), 99);
    }
}
