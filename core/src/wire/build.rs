//! The frames the speaker sends, as whole Ethernet frames ready for a raw socket.
//!
//! ARP frames are padded with zeros to the 60-byte Ethernet minimum, as MetalLB's do; neighbor
//! advertisements (86 bytes) need no padding. Every IPv6 message goes out with hop limit 255 and
//! its checksum filled in.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::arp::{ArpOperation, ArpPacket, ArpRepr};
use super::ethernet::{EtherType, EthernetFrame, EthernetRepr, MIN_FRAME_LEN};
use super::icmpv6::Icmpv6Packet;
use super::ipv6::{IpProtocol, Ipv6Packet, Ipv6Repr};
use super::mac::MacAddr;
use super::ndisc::{ALL_NODES, HOP_LIMIT, NdiscRepr, NeighborFlags, multicast_mac};

/// An ARP reply telling `to_mac`/`to_ip` that `our_ip` is at `our_mac`, sent to `to_mac`.
pub fn arp_reply(our_mac: MacAddr, our_ip: Ipv4Addr, to_mac: MacAddr, to_ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        to_mac,
        ArpRepr {
            operation: ArpOperation::Reply,
            sender_mac: our_mac,
            sender_ip: our_ip,
            target_mac: to_mac,
            target_ip: to_ip,
        },
    )
}

/// A broadcast ARP request from `from_mac`/`from_ip` asking who has `target` (target MAC zero).
pub fn arp_request(from_mac: MacAddr, from_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        MacAddr::BROADCAST,
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: from_mac,
            sender_ip: from_ip,
            target_mac: MacAddr([0; 6]),
            target_ip: target,
        },
    )
}

/// A gratuitous ARP request announcing that `ip` is at `mac`: broadcast, sender and target IP both
/// `ip`, target MAC broadcast (as MetalLB sends it).
pub fn gratuitous_arp_request(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    gratuitous_arp(ArpOperation::Request, mac, ip)
}

/// A gratuitous ARP reply announcing that `ip` is at `mac`: broadcast, sender and target IP both
/// `ip`, target MAC broadcast (as MetalLB sends it). Some hosts only update their cache from
/// replies, some only from requests, so announcements send both.
pub fn gratuitous_arp_reply(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    gratuitous_arp(ArpOperation::Reply, mac, ip)
}

fn gratuitous_arp(operation: ArpOperation, mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        MacAddr::BROADCAST,
        ArpRepr {
            operation,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: MacAddr::BROADCAST,
            target_ip: ip,
        },
    )
}

/// An Ethernet frame from the ARP sender to `dst` carrying `arp`, padded to 60 bytes.
fn arp_frame(dst: MacAddr, arp: ArpRepr) -> Vec<u8> {
    let eth = EthernetRepr {
        src: arp.sender_mac,
        dst,
        ethertype: EtherType::Arp,
    };
    let mut buf = vec![0u8; (eth.buffer_len() + arp.buffer_len()).max(MIN_FRAME_LEN)];
    let mut frame = EthernetFrame::new_checked(&mut buf[..]).expect("buffer holds a header");
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_checked(frame.payload_mut()).expect("buffer holds the ARP"));
    buf
}

/// A Neighbor Advertisement that `target` is at `our_mac`, from `src_ip` (the target address
/// itself) to `dst_mac`/`dst_ip`, with the target link-layer address option.
///
/// Answering a solicitation: `solicited` set, to the solicitation's source (or to all-nodes with
/// `solicited` clear when that source is unspecified, RFC 4861 §7.2.4). `overrides` sets the O
/// flag, which makes receivers replace a cache entry they already have.
pub fn neighbor_advert(
    our_mac: MacAddr,
    src_ip: Ipv6Addr,
    dst_mac: MacAddr,
    dst_ip: Ipv6Addr,
    target: Ipv6Addr,
    solicited: bool,
    overrides: bool,
) -> Vec<u8> {
    let ndisc = NdiscRepr::NeighborAdvert {
        flags: NeighborFlags {
            router: false,
            solicited,
            overrides,
        },
        target,
        target_lladdr: Some(our_mac),
    };
    let eth = EthernetRepr {
        src: our_mac,
        dst: dst_mac,
        ethertype: EtherType::Ipv6,
    };
    ndisc_frame(eth, src_ip, dst_ip, ndisc)
}

/// An unsolicited Neighbor Advertisement announcing that `target` is at `mac`: to all-nodes
/// (`ff02::1`, `33:33:00:00:00:01`), override set, solicited clear (RFC 4861 §7.2.6).
pub fn unsolicited_neighbor_advert(mac: MacAddr, target: Ipv6Addr) -> Vec<u8> {
    neighbor_advert(
        mac,
        target,
        multicast_mac(ALL_NODES),
        ALL_NODES,
        target,
        false,
        true,
    )
}

/// An Ethernet frame carrying `ndisc` in IPv6 from `src` to `dst`, checksum filled in.
fn ndisc_frame(eth: EthernetRepr, src: Ipv6Addr, dst: Ipv6Addr, ndisc: NdiscRepr) -> Vec<u8> {
    let message_len = ndisc.buffer_len();
    let ip = Ipv6Repr {
        src,
        dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: u16::try_from(message_len).expect("a neighbor message fits in 64 KiB"),
        hop_limit: HOP_LIMIT,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + message_len];
    let mut frame = EthernetFrame::new_checked(&mut buf[..]).expect("buffer holds a header");
    eth.emit(&mut frame);
    let mut packet = Ipv6Packet::new_checked(frame.payload_mut()).expect("buffer holds the packet");
    ip.emit(&mut packet);
    let mut message =
        Icmpv6Packet::new_checked(packet.payload_mut()).expect("buffer holds the message");
    ndisc.emit(&mut message);
    message.fill_checksum(&src, &dst);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Frame, parse_frame};

    const OUR_MAC: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);

    #[test]
    fn arp_frames_are_padded_to_60_bytes() {
        let ip = Ipv4Addr::new(192, 0, 2, 240);
        for frame in [
            arp_reply(OUR_MAC, ip, MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]), ip),
            arp_request(OUR_MAC, ip, Ipv4Addr::new(192, 0, 2, 1)),
            gratuitous_arp_request(OUR_MAC, ip),
            gratuitous_arp_reply(OUR_MAC, ip),
        ] {
            assert_eq!(frame.len(), 60);
            assert!(frame[42..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn a_request_is_a_broadcast_who_has() {
        let (from, target) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 240));
        let Ok(Frame::Arp { eth, arp }) = parse_frame(&arp_request(OUR_MAC, from, target)) else {
            panic!("not ARP");
        };
        assert_eq!((eth.dst, eth.src), (MacAddr::BROADCAST, OUR_MAC));
        assert_eq!(
            arp,
            ArpRepr {
                operation: ArpOperation::Request,
                sender_mac: OUR_MAC,
                sender_ip: from,
                target_mac: MacAddr([0; 6]),
                target_ip: target,
            }
        );
    }

    #[test]
    fn gratuitous_arp_is_broadcast_with_sender_ip_as_target() {
        let ip = Ipv4Addr::new(192, 0, 2, 240);
        for (frame, operation) in [
            (gratuitous_arp_request(OUR_MAC, ip), ArpOperation::Request),
            (gratuitous_arp_reply(OUR_MAC, ip), ArpOperation::Reply),
        ] {
            let Ok(Frame::Arp { eth, arp }) = parse_frame(&frame) else {
                panic!("not ARP: {frame:02x?}");
            };
            assert_eq!(eth.dst, MacAddr::BROADCAST);
            assert_eq!(eth.src, OUR_MAC);
            assert_eq!(
                arp,
                ArpRepr {
                    operation,
                    sender_mac: OUR_MAC,
                    sender_ip: ip,
                    target_mac: MacAddr::BROADCAST,
                    target_ip: ip,
                }
            );
        }
    }

    #[test]
    fn unsolicited_advert_goes_to_all_nodes_with_override() {
        let target: Ipv6Addr = "2001:db8::f0".parse().expect("literal");
        let frame = unsolicited_neighbor_advert(OUR_MAC, target);
        assert_eq!(frame.len(), 86);
        let Ok(Frame::NeighborAdvert {
            eth,
            ip,
            target: advertised,
            flags,
            target_lladdr,
        }) = parse_frame(&frame)
        else {
            panic!("not an advertisement: {frame:02x?}");
        };
        assert_eq!(eth.dst, MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(eth.src, OUR_MAC);
        assert_eq!(ip.src, target);
        assert_eq!(ip.dst, ALL_NODES);
        assert_eq!(ip.hop_limit, 255);
        assert_eq!(advertised, target);
        assert_eq!(
            flags,
            NeighborFlags {
                router: false,
                solicited: false,
                overrides: true
            }
        );
        assert_eq!(target_lladdr, Some(OUR_MAC));
    }
}
