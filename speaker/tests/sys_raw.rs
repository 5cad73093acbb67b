//! `sys::RawSocket` and `sys::AsyncRawSocket` on a real link: two private network namespaces,
//! A and B, joined by a veth pair (10.250.254.1/24 in A, .2/24 in B). Sockets are opened from a
//! thread that entered the namespace with `sys::enter_netns`; the root namespace's interfaces are
//! never touched, and the namespaces (with the veth pair) are deleted by a guard, also on panic.
//!
//! Needs root (`ip netns`, raw sockets) and the `ip` and `arping` (Debian's, Habets) commands.
//! Not root: the tests fail, unless `FERROLB_SKIP_ROOT_TESTS=1`, when they pass without running.

use ferrolb_speaker::sys;

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sys::{AsyncRawSocket, ETH_P_ALL, ETH_P_ARP, ETH_P_IPV6, RawSocket};

/// An address nobody in the lab holds: the raw socket in A answers for it.
const HELD_IP: [u8; 4] = [10, 250, 254, 99];
/// B's address.
const B_IP: [u8; 4] = [10, 250, 254, 2];
/// The MAC the raw socket in A claims for `HELD_IP` (locally administered, not A's own).
const HELD_MAC: [u8; 6] = [0x02, 0x66, 0x6c, 0x62, 0x00, 0x99];
const BROADCAST: [u8; 6] = [0xff; 6];
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// How long to wait for a frame that should arrive.
const WAIT: Duration = Duration::from_secs(3);

/// Whether root tests may run here: true as root; false (test passes) when not root and
/// `FERROLB_SKIP_ROOT_TESTS=1`; a clear panic otherwise.
fn root_tests_enabled() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid == "0" {
        return true;
    }
    if std::env::var("FERROLB_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: needs root (FERROLB_SKIP_ROOT_TESTS=1)");
        return false;
    }
    panic!(
        "this test needs root (effective uid {euid}): it creates network namespaces and raw \
         sockets; run `cargo test` as root, or set FERROLB_SKIP_ROOT_TESTS=1 to skip it"
    );
}

/// Runs a command to completion and returns its output, panicking with its stderr on failure.
fn run(args: &[&str]) -> String {
    let output = command(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {args:?} (is it installed?): {err}"));
    assert!(
        output.status.success(),
        "{args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn command(args: &[&str]) -> Command {
    let (program, rest) = args.split_first().expect("a command has a program");
    let mut command = Command::new(program);
    command.args(rest);
    command
}

/// A named network namespace (`ip netns add`), deleted on drop with everything in it.
#[derive(Debug)]
struct Netns {
    name: String,
}

impl Netns {
    fn add(name: String) -> Self {
        run(&["ip", "netns", "add", &name]);
        Self { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `args` inside the namespace (`ip netns exec`).
    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Runs `f` on a thread that has entered the namespace, e.g. to open a socket there.
    fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        thread::scope(|scope| {
            scope
                .spawn(move || {
                    sys::enter_netns(&path).expect("enter the lab namespace");
                    f()
                })
                .join()
                .expect("namespace thread does not panic")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the veth pair, and so the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Two namespaces joined by a veth pair, both ends up and addressed.
#[derive(Debug)]
struct Lab {
    a: Netns,
    b: Netns,
    if_a: String,
    if_b: String,
    index_a: u32,
    index_b: u32,
    mac_b: [u8; 6],
}

impl Lab {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("flbraw{}{n}", std::process::id());
        let (if_a, if_b) = (format!("{id}a"), format!("{id}b"));
        assert!(if_a.len() <= 15, "interface name {if_a} too long");
        // Guards first, so that a failure below still deletes what was made.
        let a = Netns::add(format!("{id}-a"));
        let b = Netns::add(format!("{id}-b"));
        run(&[
            "ip", "-n", &a.name, "link", "add", &if_a, "type", "veth", "peer", "name", &if_b,
            "netns", &b.name,
        ]);
        for (ns, iface, cidr) in [
            (&a, &if_a, "10.250.254.1/24"),
            (&b, &if_b, "10.250.254.2/24"),
        ] {
            run(&["ip", "-n", &ns.name, "addr", "add", cidr, "dev", iface]);
            run(&["ip", "-n", &ns.name, "link", "set", iface, "up"]);
            run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        }
        let index = |ns: &Netns, iface: &str| -> u32 {
            let text = ns.exec(&["cat", &format!("/sys/class/net/{iface}/ifindex")]);
            text.trim().parse().expect("ifindex is a number")
        };
        let index_a = index(&a, &if_a);
        let index_b = index(&b, &if_b);
        let mac_b = parse_mac(&b.exec(&["cat", &format!("/sys/class/net/{if_b}/address")]));
        let lab = Self {
            a,
            b,
            if_a,
            if_b,
            index_a,
            index_b,
            mac_b,
        };
        lab.wait_until_up();
        lab
    }

    /// Waits until both ends of the veth report `up`, so that frames flow.
    fn wait_until_up(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let a = self
                .a
                .exec(&["cat", &format!("/sys/class/net/{}/operstate", self.if_a)]);
            let b = self
                .b
                .exec(&["cat", &format!("/sys/class/net/{}/operstate", self.if_b)]);
            if a.trim() == "up" && b.trim() == "up" {
                return;
            }
            assert!(Instant::now() < deadline, "veth not up: A {a:?}, B {b:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn open_in_a(&self, ethertype: u16) -> RawSocket {
        let index = self.index_a;
        self.a
            .within(|| RawSocket::open(index, ethertype))
            .expect("open raw socket in A")
    }

    fn open_in_b(&self, ethertype: u16) -> RawSocket {
        let index = self.index_b;
        self.b
            .within(|| RawSocket::open(index, ethertype))
            .expect("open raw socket in B")
    }

    /// The link-layer multicast addresses of A's veth end, as `ip maddr` lists them.
    fn multicast_of_a(&self) -> String {
        run(&["ip", "-n", &self.a.name, "maddr", "show", "dev", &self.if_a])
    }
}

fn parse_mac(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|part| u8::from_str_radix(part, 16).expect("hex MAC byte"))
        .collect();
    bytes.try_into().expect("a MAC has 6 bytes")
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

/// An Ethernet frame carrying an IPv4-over-Ethernet ARP packet.
fn arp_frame(
    eth_dst: [u8; 6],
    op: u16,
    (sender_mac, sender_ip): ([u8; 6], [u8; 4]),
    (target_mac, target_ip): ([u8; 6], [u8; 4]),
) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&eth_dst);
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    frame.extend_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    frame.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol type: IPv4
    frame.extend_from_slice(&[6, 4]); // hardware and protocol address lengths
    frame.extend_from_slice(&op.to_be_bytes());
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&sender_ip);
    frame.extend_from_slice(&target_mac);
    frame.extend_from_slice(&target_ip);
    frame
}

/// Whether `frame` is an ARP packet with operation `op` whose target IP is `target_ip`.
fn is_arp(frame: &[u8], op: u16, target_ip: [u8; 4]) -> bool {
    frame.get(12..14) == Some(&ETH_P_ARP.to_be_bytes()[..])
        && frame.get(20..22) == Some(&op.to_be_bytes()[..])
        && frame.get(38..42) == Some(&target_ip[..])
}

/// Polls the non-blocking `socket` until it yields a frame for which `wanted` holds; returns the
/// frame and its outgoing flag. Panics after `WAIT`.
fn recv_matching(socket: &RawSocket, wanted: impl Fn(&[u8]) -> bool) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv(&mut buf) {
            Ok((len, outgoing)) => {
                let frame = &buf[..len];
                if wanted(frame) {
                    return (frame.to_vec(), outgoing);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "no matching frame within {WAIT:?}"
                );
                thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("recv failed: {err}"),
        }
    }
}

/// Like [`recv_matching`], awaiting an [`AsyncRawSocket`].
async fn recv_matching_async(socket: &AsyncRawSocket, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let receive = async {
        let mut buf = [0u8; 2048];
        loop {
            let (len, _outgoing) = socket.recv(&mut buf).await.expect("recv");
            let frame = &buf[..len];
            if wanted(frame) {
                return frame.to_vec();
            }
        }
    };
    tokio::time::timeout(WAIT, receive)
        .await
        .expect("a matching frame within the wait")
}

/// A child process killed and reaped on drop, so a failing test leaves nothing behind.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn wait(mut self) -> Output {
        self.0
            .take()
            .expect("child not yet waited for")
            .wait_with_output()
            .expect("wait for child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn raw_socket_receives_an_arp_request_from_arping_and_its_hand_built_reply_reaches_arping() {
    if !root_tests_enabled() {
        return;
    }
    let lab = Lab::new();
    let socket = lab.open_in_a(ETH_P_ARP);
    assert_eq!(socket.ifindex(), lab.index_a);
    assert_eq!(socket.ethertype(), ETH_P_ARP);

    let held = format!(
        "{}.{}.{}.{}",
        HELD_IP[0], HELD_IP[1], HELD_IP[2], HELD_IP[3]
    );
    let arping = command(&[
        "ip",
        "netns",
        "exec",
        &lab.b.name,
        "arping",
        "-c",
        "1",
        "-w",
        "3",
        "-i",
        &lab.if_b,
        &held,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run arping in B");
    let arping = ChildGuard(Some(arping));

    let (request, outgoing) = recv_matching(&socket, |frame| is_arp(frame, ARP_REQUEST, HELD_IP));
    assert!(!outgoing, "a frame from B is incoming");
    assert_eq!(request[12..14], [0x08, 0x06], "ethertype is ARP");
    assert_eq!(request[38..42], HELD_IP, "target IP is the held address");
    assert_eq!(request[22..28], lab.mac_b, "sender is B's veth");
    assert_eq!(request[6..12], lab.mac_b, "Ethernet source is B's veth");

    let reply = arp_frame(lab.mac_b, ARP_REPLY, (HELD_MAC, HELD_IP), (lab.mac_b, B_IP));
    socket.send(&reply).expect("send the ARP reply");

    let output = arping.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "arping got no reply ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.to_lowercase().contains(&mac_text(HELD_MAC)),
        "arping's reply is not from {}: {stdout}",
        mac_text(HELD_MAC)
    );
}

#[tokio::test]
async fn async_raw_sockets_exchange_an_arp_request_and_reply_between_namespaces() {
    if !root_tests_enabled() {
        return;
    }
    let lab = Lab::new();
    let a = AsyncRawSocket::new(lab.open_in_a(ETH_P_ARP)).expect("register A's socket");
    let b = AsyncRawSocket::new(lab.open_in_b(ETH_P_ARP)).expect("register B's socket");

    let request = arp_frame(BROADCAST, ARP_REQUEST, (lab.mac_b, B_IP), ([0; 6], HELD_IP));
    b.send(&request).await.expect("B sends the request");
    let received = recv_matching_async(&a, |frame| is_arp(frame, ARP_REQUEST, HELD_IP)).await;
    assert!(
        received.starts_with(&request),
        "A receives B's request as sent"
    );

    let reply = arp_frame(lab.mac_b, ARP_REPLY, (HELD_MAC, HELD_IP), (lab.mac_b, B_IP));
    a.send(&reply).await.expect("A sends the reply");
    let received = recv_matching_async(&b, |frame| is_arp(frame, ARP_REPLY, B_IP)).await;
    assert!(received.starts_with(&reply), "B receives A's reply as sent");
}

#[test]
fn all_protocols_socket_marks_the_hosts_own_frames_outgoing_and_others_incoming() {
    if !root_tests_enabled() {
        return;
    }
    let lab = Lab::new();
    let all = lab.open_in_a(ETH_P_ALL);
    let arp_a = lab.open_in_a(ETH_P_ARP);
    let arp_b = lab.open_in_b(ETH_P_ARP);

    // Distinct target addresses tell the two frames apart from each other and from noise.
    let own = arp_frame(
        BROADCAST,
        ARP_REQUEST,
        (HELD_MAC, HELD_IP),
        ([0; 6], [10, 250, 254, 201]),
    );
    arp_a.send(&own).expect("A sends");
    let (frame, outgoing) = recv_matching(&all, |frame| frame.starts_with(&own));
    assert!(outgoing, "A's own frame is outgoing: {frame:02x?}");

    let theirs = arp_frame(
        BROADCAST,
        ARP_REQUEST,
        (lab.mac_b, B_IP),
        ([0; 6], [10, 250, 254, 202]),
    );
    arp_b.send(&theirs).expect("B sends");
    let (frame, outgoing) = recv_matching(&all, |frame| frame.starts_with(&theirs));
    assert!(!outgoing, "B's frame is incoming: {frame:02x?}");
}

#[test]
fn multicast_membership_is_on_the_interface_until_left_or_the_socket_is_closed() {
    if !root_tests_enabled() {
        return;
    }
    let lab = Lab::new();
    // Solicited-node multicast MAC of an address ending in ::99.
    let solicited = [0x33, 0x33, 0xff, 0x00, 0x00, 0x99];
    let listed = || lab.multicast_of_a().contains(&mac_text(solicited));

    let socket = lab.open_in_a(ETH_P_IPV6);
    assert!(!listed(), "not a member before joining");
    socket.join_multicast(solicited).expect("join");
    assert!(listed(), "member after joining:\n{}", lab.multicast_of_a());
    socket.leave_multicast(solicited).expect("leave");
    assert!(!listed(), "not a member after leaving");
    socket
        .leave_multicast(solicited)
        .expect("leaving an address not joined is a no-op");

    socket.join_multicast(solicited).expect("join");
    socket.join_multicast(solicited).expect("join twice");
    socket.leave_multicast(solicited).expect("leave once");
    assert!(listed(), "joins are counted: one leave is not enough");
    drop(socket);
    assert!(!listed(), "closing the socket drops its memberships");
}

#[test]
fn join_multicast_rejects_a_unicast_mac() {
    if !root_tests_enabled() {
        return;
    }
    let lab = Lab::new();
    let socket = lab.open_in_a(ETH_P_IPV6);
    let err = socket.join_multicast(HELD_MAC).err().map(|err| err.kind());
    assert_eq!(err, Some(io::ErrorKind::InvalidInput));
}

#[test]
fn open_fails_for_an_interface_index_with_no_interface() {
    if !root_tests_enabled() {
        return;
    }
    let lab = Lab::new();
    let err = lab.a.within(|| RawSocket::open(999_999, ETH_P_ARP)).err();
    assert_eq!(err.and_then(|err| err.raw_os_error()), Some(libc::ENODEV));
}
