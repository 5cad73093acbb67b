//! The client of the fault suite: runs inside the client namespace, asks for every service
//! address by ARP in rounds and keeps an HTTP request loop going to each, and prints what it sees
//! as JSON lines (see [`Event`]) until it is killed or `--seconds` pass.
//!
//! Every round uses a requester MAC of its own (`02:bc` and the round number), so each reply
//! names the round it answers: two MACs answering one request show up as two replies for one
//! round and one address. ARP frames from a service address that answer no round (gratuitous
//! ARP) are reported as such.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolb_core::wire::{self, ArpOperation, Frame};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Arguments of `ferrolb-lab-bench monitor`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The service addresses, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub targets: Vec<Ipv4Addr>,
    /// The client's own address (the requests' sender address).
    #[arg(long)]
    pub source: Ipv4Addr,
    /// The interface.
    #[arg(long, default_value = "eth0")]
    pub interface: String,
    /// Time between ARP rounds (one request per address each).
    #[arg(long, default_value_t = 50)]
    pub interval_ms: u64,
    /// The HTTP port on every address (0: no HTTP loop).
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Time between HTTP requests to one address.
    #[arg(long, default_value_t = 250)]
    pub http_interval_ms: u64,
    /// Stop after this long at the latest.
    #[arg(long, default_value_t = 3600)]
    pub seconds: u64,
}

/// One line of the monitor's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Event {
    /// Round `r` was sent at `t` (Unix seconds).
    Round { r: u32, t: f64 },
    /// `mac` answered round `r` for `ip`.
    Reply {
        r: u32,
        ip: Ipv4Addr,
        mac: String,
        t: f64,
    },
    /// `mac` announced `ip` unasked (gratuitous ARP).
    Garp { ip: Ipv4Addr, mac: String, t: f64 },
    /// An HTTP request to `ip` that started at `t` succeeded or not.
    Http { ip: Ipv4Addr, ok: bool, t: f64 },
}

/// The requester MAC of round `r`.
fn requester(r: u32) -> wire::MacAddr {
    let b = r.to_be_bytes();
    wire::MacAddr([0x02, 0xbc, b[0], b[1], b[2], b[3]])
}

/// The round a requester MAC belongs to.
fn round_of(mac: wire::MacAddr) -> Option<u32> {
    let o = mac.0;
    (o[0] == 0x02 && o[1] == 0xbc).then(|| u32::from_be_bytes([o[2], o[3], o[4], o[5]]))
}

/// Classifies an ARP frame from one of `targets`.
fn classify(frame: &[u8], targets: &[Ipv4Addr], t: f64) -> Option<Event> {
    let Frame::Arp { arp, .. } = wire::parse_frame(frame).ok()? else {
        return None;
    };
    if !targets.contains(&arp.sender_ip) {
        return None;
    }
    let mac = arp.sender_mac.to_string();
    match (arp.operation, round_of(arp.target_mac)) {
        (ArpOperation::Reply, Some(r)) => Some(Event::Reply {
            r,
            ip: arp.sender_ip,
            mac,
            t,
        }),
        _ => Some(Event::Garp {
            ip: arp.sender_ip,
            mac,
            t,
        }),
    }
}

type Out = Arc<Mutex<std::io::Stdout>>;

fn emit(out: &Out, event: &Event) {
    use std::io::Write;
    if let Ok(line) = serde_json::to_string(event)
        && let Ok(mut o) = out.lock()
    {
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    }
}

async fn http_once(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
        let mut body = Vec::new();
        conn.read_to_end(&mut body).await?;
        Ok::<bool, std::io::Error>(body.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}

async fn http_loop(ip: Ipv4Addr, port: u16, every: Duration, out: Out) {
    let addr = SocketAddr::new(IpAddr::V4(ip), port);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let t = crate::unix_now();
        let ok = http_once(addr).await;
        emit(&out, &Event::Http { ip, ok, t });
    }
}

/// Runs the monitor.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: &Args) -> anyhow::Result<()> {
    let socket = crate::probe::arp_socket(&args.interface)?;
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    let mut loops = tokio::task::JoinSet::new();
    if args.http_port != 0 {
        let every = Duration::from_millis(args.http_interval_ms.max(10));
        for (k, ip) in args.targets.iter().enumerate() {
            let out = out.clone();
            let (ip, port) = (*ip, args.http_port);
            // Spread the loops over the interval rather than all at once.
            let offset = every.mul_f64(k as f64 / args.targets.len() as f64);
            loops.spawn(async move {
                tokio::time::sleep(offset).await;
                http_loop(ip, port, every, out).await;
            });
        }
    }
    let deadline = tokio::time::sleep(Duration::from_secs(args.seconds));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 2048];
    let mut round = 0u32;
    loop {
        tokio::select! {
            () = &mut deadline => break,
            _ = tick.tick() => {
                round = round.wrapping_add(1);
                emit(&out, &Event::Round { r: round, t: crate::unix_now() });
                let from = requester(round);
                for target in &args.targets {
                    socket.send(&wire::arp_request(from, args.source, *target)).await?;
                }
            }
            got = socket.recv(&mut buf) => {
                let (n, outgoing) = got?;
                if !outgoing
                    && let Some(e) = classify(&buf[..n.min(buf.len())], &args.targets, crate::unix_now())
                {
                    emit(&out, &e);
                }
            }
        }
    }
    loops.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(sender: Ipv4Addr, mac: [u8; 6], to: [u8; 6], op: u8) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&to);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, op]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&sender.octets());
        f.extend_from_slice(&to);
        f.extend_from_slice(&[10, 250, 0, 1]);
        f
    }

    #[test]
    fn replies_name_their_round_and_unasked_announcements_are_gratuitous() {
        let ip = Ipv4Addr::new(10, 250, 0, 100);
        let mac = [0x02, 0, 0, 0, 0, 1];
        let got = classify(&reply(ip, mac, requester(70_000).0, 2), &[ip], 1.5);
        assert_eq!(
            got,
            Some(Event::Reply {
                r: 70_000,
                ip,
                mac: "02:00:00:00:00:01".into(),
                t: 1.5
            })
        );
        let garp = classify(&reply(ip, mac, [0xff; 6], 1), &[ip], 2.0);
        assert!(matches!(garp, Some(Event::Garp { .. })), "{garp:?}");
        let other = Ipv4Addr::new(10, 250, 0, 101);
        assert_eq!(
            classify(&reply(other, mac, requester(1).0, 2), &[ip], 1.0),
            None
        );
        assert_eq!(classify(&[0u8; 10], &[ip], 1.0), None);
    }

    #[test]
    fn events_read_back_as_written() {
        let e = Event::Http {
            ip: Ipv4Addr::new(10, 250, 0, 100),
            ok: true,
            t: 3.25,
        };
        let line = serde_json::to_string(&e).expect("json");
        assert_eq!(serde_json::from_str::<Event>(&line).expect("parse"), e);
    }
}
