//! The client side of the lab benchmark: runs inside the client namespace (the orchestrator
//! starts it with `ip netns exec`), sends ARP requests on a raw socket and prints what comes back
//! as JSON lines.

use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context;
use ferrolb_core::wire::{self, ArpOperation, Frame};
use ferrolb_speaker::sys::{AsyncRawSocket, ETH_P_ARP, interfaces};
use serde::Serialize;

/// What a probe does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Ask every `--interval-ms` (rotating requesters) and print every reply with its time.
    Watch,
    /// Ask, wait for the answer (or 100 ms), ask again: print each round trip.
    Rtt,
    /// Ask `--rate` times a second for `--seconds`, from `--requesters` MACs; print a summary.
    Flood,
}

/// Arguments of `ferrolb-lab-bench probe`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// The address asked about.
    #[arg(long)]
    pub target: Ipv4Addr,
    /// The client's own address (the requests' sender address).
    #[arg(long)]
    pub source: Ipv4Addr,
    /// The interface.
    #[arg(long, default_value = "eth0")]
    pub interface: String,
    /// Watch: interval between requests.
    #[arg(long, default_value_t = 5)]
    pub interval_ms: u64,
    /// Rtt: how many round trips.
    #[arg(long, default_value_t = 500)]
    pub count: u32,
    /// Flood: requests per second.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u32,
    /// Flood and watch: how long.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Distinct requester MACs to rotate through (each is rate-limited on its own).
    #[arg(long, default_value_t = 4)]
    pub requesters: u16,
    /// Watch: send each request from a MAC of its own (its number in it), and print with each
    /// reply the number of the request it answers, so that a request answered by two MACs can
    /// be counted.
    #[arg(long)]
    pub numbered: bool,
}

#[derive(Serialize)]
struct ReplyLine {
    t: f64,
    mac: String,
    /// The number of the request it answers (`--numbered`; none for gratuitous ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u32>,
}

/// The sender MAC of request `seq` (`--numbered`).
fn numbered_requester(seq: u32) -> wire::MacAddr {
    let b = seq.to_be_bytes();
    wire::MacAddr([0x02, 0xbc, b[0], b[1], b[2], b[3]])
}

/// The request number in a reply's target MAC, when it is one of [`numbered_requester`]'s.
fn request_number(mac: wire::MacAddr) -> Option<u32> {
    let m = mac.0;
    (m[0] == 0x02 && m[1] == 0xbc).then(|| u32::from_be_bytes([m[2], m[3], m[4], m[5]]))
}

#[derive(Serialize)]
struct RttLine {
    rtt_us: Option<u64>,
}

#[derive(Serialize)]
struct FloodLine {
    sent: u64,
    replies: u64,
    seconds: f64,
}

fn requester(k: u16) -> wire::MacAddr {
    let b = k.to_be_bytes();
    wire::MacAddr([0x02, 0xbb, 0, 0, b[0], b[1]])
}

/// The answerer's MAC when `frame` is an ARP reply for `target`.
fn reply_from(frame: &[u8], target: Ipv4Addr) -> Option<wire::MacAddr> {
    reply_to(frame, target).map(|(mac, _)| mac)
}

/// The answerer's MAC and the MAC it answers when `frame` is an ARP reply for `target`.
fn reply_to(frame: &[u8], target: Ipv4Addr) -> Option<(wire::MacAddr, wire::MacAddr)> {
    match wire::parse_frame(frame).ok()? {
        Frame::Arp { arp, .. }
            if arp.operation == ArpOperation::Reply && arp.sender_ip == target =>
        {
            Some((arp.sender_mac, arp.target_mac))
        }
        _ => None,
    }
}

/// Runs the probe; output goes to stdout, one JSON object a line.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

/// A raw ARP socket on the interface named `name` (the probe's and the monitor's).
pub fn arp_socket(name: &str) -> anyhow::Result<AsyncRawSocket> {
    let iface = interfaces::list()?
        .into_iter()
        .find(|i| i.name == name)
        .with_context(|| format!("no interface {name}"))?;
    Ok(AsyncRawSocket::open(iface.index, ETH_P_ARP)?)
}

async fn run_async(args: &Args) -> anyhow::Result<()> {
    let socket = arp_socket(&args.interface)?;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 2048];
    match args.mode {
        Mode::Watch => {
            let end = Instant::now() + Duration::from_secs(args.seconds);
            let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
            let mut k = 0u16;
            let mut seq = 0u32;
            while Instant::now() < end {
                tokio::select! {
                    _ = tick.tick() => {
                        let from = if args.numbered {
                            seq = seq.wrapping_add(1);
                            numbered_requester(seq)
                        } else {
                            k = (k + 1) % args.requesters.max(1);
                            requester(k)
                        };
                        socket.send(&wire::arp_request(from, args.source, args.target)).await?;
                    }
                    got = socket.recv(&mut buf) => {
                        let (n, outgoing) = got?;
                        if let (false, Some((mac, to))) = (outgoing, reply_to(&buf[..n.min(buf.len())], args.target)) {
                            let seq = if args.numbered { request_number(to) } else { None };
                            serde_json::to_writer(&mut out, &ReplyLine { t: crate::unix_now(), mac: mac.to_string(), seq })?;
                            writeln!(out)?;
                            out.flush()?;
                        }
                    }
                }
            }
        }
        Mode::Rtt => {
            for i in 0..args.count {
                let from = requester(u16::try_from(i % 50).unwrap_or(0));
                let sent = Instant::now();
                socket
                    .send(&wire::arp_request(from, args.source, args.target))
                    .await?;
                let rtt = tokio::time::timeout(Duration::from_millis(100), async {
                    loop {
                        let (n, outgoing) = socket.recv(&mut buf).await?;
                        if !outgoing && reply_from(&buf[..n.min(buf.len())], args.target).is_some()
                        {
                            return Ok::<_, std::io::Error>(sent.elapsed());
                        }
                    }
                })
                .await;
                let rtt_us = match rtt {
                    Ok(Ok(d)) => Some(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                    _ => None,
                };
                serde_json::to_writer(&mut out, &RttLine { rtt_us })?;
                writeln!(out)?;
                // 50 requesters at 20 ms apart: each well under its 100/s share.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Mode::Flood => {
            let start = Instant::now();
            let end = start + Duration::from_secs(args.seconds);
            let per_ms = (args.rate / 1000).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let (mut sent, mut replies) = (0u64, 0u64);
            let mut k = 0u16;
            let frames: HashMap<u16, Vec<u8>> = (0..args.requesters.max(1))
                .map(|r| (r, wire::arp_request(requester(r), args.source, args.target)))
                .collect();
            while Instant::now() < end {
                tokio::select! {
                    _ = tick.tick() => {
                        for _ in 0..per_ms {
                            k = (k + 1) % args.requesters.max(1);
                            if let Some(f) = frames.get(&k) {
                                if socket.send(f).await.is_ok() {
                                    sent += 1;
                                }
                            }
                        }
                    }
                    got = socket.recv(&mut buf) => {
                        let (n, outgoing) = got?;
                        if !outgoing && reply_from(&buf[..n.min(buf.len())], args.target).is_some() {
                            replies += 1;
                        }
                    }
                }
            }
            serde_json::to_writer(
                &mut out,
                &FloodLine {
                    sent,
                    replies,
                    seconds: start.elapsed().as_secs_f64(),
                },
            )?;
            writeln!(out)?;
        }
    }
    Ok(())
}
