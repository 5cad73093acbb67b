//! `parse_frame` on arbitrary bytes; what parses as ARP or a Neighbor Solicitation is answered with
//! the speaker's builders, and the answer must parse back to what was built.
//!
//! Each input is tried twice: as it is, and with its ICMPv6 checksum made right, so that mutations
//! reach the neighbor discovery paths behind the checksum check.

#![no_main]

use std::net::Ipv6Addr;

use ferrolb_core::wire::{
    self, ArpOperation, EtherType, EthernetFrame, Frame, Icmpv6Packet, Ipv6Packet, MacAddr,
    NeighborFlags, parse_frame, solicited_node_multicast,
};
use libfuzzer_sys::fuzz_target;

const OUR_MAC: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(fixed) = with_right_checksum(data) {
        check(&fixed);
    }
});

/// `data` with the ICMPv6 checksum recomputed, if it is an IPv6 frame carrying at least an
/// ICMPv6 header.
fn with_right_checksum(data: &[u8]) -> Option<Vec<u8>> {
    let mut buf = data.to_vec();
    let mut eth = EthernetFrame::new_checked(&mut buf[..]).ok()?;
    if eth.ethertype() != EtherType::Ipv6 {
        return None;
    }
    let mut ip = Ipv6Packet::new_checked(eth.payload_mut()).ok()?;
    let (src, dst, len) = (ip.src(), ip.dst(), usize::from(ip.payload_len()));
    let mut message = Icmpv6Packet::new_checked(ip.payload_mut().get_mut(..len)?).ok()?;
    message.fill_checksum(&src, &dst);
    Some(buf)
}

fn check(data: &[u8]) {
    match parse_frame(data) {
        Ok(Frame::Arp { eth, arp }) => {
            let reply = wire::arp_reply(OUR_MAC, arp.target_ip, arp.sender_mac, arp.sender_ip);
            let Ok(Frame::Arp {
                eth: reth,
                arp: rarp,
            }) = parse_frame(&reply)
            else {
                panic!("arp_reply does not parse as ARP: {reply:02x?}");
            };
            assert_eq!(reth.dst, arp.sender_mac);
            assert_eq!(reth.src, OUR_MAC);
            assert_eq!(rarp.operation, ArpOperation::Reply);
            assert_eq!(rarp.sender_ip, arp.target_ip);
            assert_eq!(rarp.target_mac, arp.sender_mac);
            assert_eq!(rarp.target_ip, arp.sender_ip);

            for (frame, operation) in [
                (
                    wire::gratuitous_arp_request(eth.src, arp.sender_ip),
                    ArpOperation::Request,
                ),
                (
                    wire::gratuitous_arp_reply(eth.src, arp.sender_ip),
                    ArpOperation::Reply,
                ),
            ] {
                let Ok(Frame::Arp { arp: garp, .. }) = parse_frame(&frame) else {
                    panic!("gratuitous ARP does not parse: {frame:02x?}");
                };
                assert_eq!(garp.operation, operation);
                assert_eq!(garp.sender_ip, garp.target_ip);
            }
        }
        Ok(Frame::NeighborSolicit {
            eth,
            ip,
            target,
            source_lladdr,
        }) => {
            // RFC 4861 §7.2.4: a solicitation from `::` is answered to all-nodes, unsolicited.
            let (dst_mac, dst_ip, solicited) = if ip.src.is_unspecified() {
                (wire::multicast_mac(wire::ALL_NODES), wire::ALL_NODES, false)
            } else {
                (source_lladdr.unwrap_or(eth.src), ip.src, true)
            };
            let advert =
                wire::neighbor_advert(OUR_MAC, target, dst_mac, dst_ip, target, solicited, true);
            let Ok(Frame::NeighborAdvert {
                eth: aeth,
                ip: aip,
                target: atarget,
                flags,
                target_lladdr,
            }) = parse_frame(&advert)
            else {
                panic!("neighbor_advert does not parse: {advert:02x?}");
            };
            assert_eq!(aeth.dst, dst_mac);
            assert_eq!((aip.src, aip.dst, aip.hop_limit), (target, dst_ip, 255));
            assert_eq!(atarget, target);
            assert_eq!(
                flags,
                NeighborFlags {
                    router: false,
                    solicited,
                    overrides: true
                }
            );
            assert_eq!(target_lladdr, Some(OUR_MAC));

            let unsolicited = wire::unsolicited_neighbor_advert(OUR_MAC, target);
            assert!(matches!(
                parse_frame(&unsolicited),
                Ok(Frame::NeighborAdvert { target: t, .. }) if t == target
            ));
            check_multicast_helpers(target);
        }
        Ok(Frame::NeighborAdvert { .. } | Frame::Other) | Err(_) => {}
    }
}

fn check_multicast_helpers(ip: Ipv6Addr) {
    let group = solicited_node_multicast(ip);
    assert!(wire::is_solicited_node_multicast(&group));
    assert_eq!(group.octets()[13..], ip.octets()[13..]);
    assert!(wire::multicast_mac(group).is_multicast());
}
