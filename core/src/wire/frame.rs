//! [`parse_frame`]: what the speaker makes of each frame it reads.

use std::net::Ipv6Addr;

use super::WireError;
use super::arp::{ArpPacket, ArpRepr};
use super::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use super::icmpv6::{Icmpv6Packet, Icmpv6Type};
use super::ipv6::{IpProtocol, Ipv6Packet, Ipv6Repr};
use super::mac::MacAddr;
use super::ndisc::{NdiscRepr, NeighborFlags};

/// A frame from the wire, as far as a layer-2 load balancer cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Frame {
    /// An Ethernet/IPv4 ARP packet (any operation).
    Arp {
        /// The Ethernet header.
        eth: EthernetRepr,
        /// The ARP packet.
        arp: ArpRepr,
    },
    /// A valid Neighbor Solicitation (checksum and RFC 4861 §7.1.1 checks passed).
    NeighborSolicit {
        /// The Ethernet header.
        eth: EthernetRepr,
        /// The IPv6 header (source `::` in duplicate address detection).
        ip: Ipv6Repr,
        /// The address asked about.
        target: Ipv6Addr,
        /// The asker's link-layer address option, if any.
        source_lladdr: Option<MacAddr>,
    },
    /// A valid Neighbor Advertisement (checksum and RFC 4861 §7.1.2 checks passed).
    NeighborAdvert {
        /// The Ethernet header.
        eth: EthernetRepr,
        /// The IPv6 header.
        ip: Ipv6Repr,
        /// The address advertised.
        target: Ipv6Addr,
        /// The R, S and O flags.
        flags: NeighborFlags,
        /// The advertiser's link-layer address option, if any.
        target_lladdr: Option<MacAddr>,
    },
    /// Anything else: other EtherTypes (IPv4, VLAN-tagged, ...), IPv6 that is not ICMPv6 right
    /// after the fixed header (extension headers included), other ICMPv6 types.
    Other,
}

/// Reads a frame from the wire (without its check sequence; trailing padding is fine).
///
/// Never panics, whatever `bytes` holds. An error means the frame claimed to be something of
/// interest (ARP, IPv6, NS, NA) and was not a valid one:
/// - [`WireError::Truncated`]: shorter than its headers or lengths say;
/// - [`WireError::Malformed`]: a bad field, a bad option, or a neighbor message failing RFC 4861
///   §7.1 (hop limit not 255, code not 0, multicast target, ...);
/// - [`WireError::Checksum`]: a neighbor message whose ICMPv6 checksum is wrong;
/// - [`WireError::Unsupported`]: ARP for another hardware or protocol type.
pub fn parse_frame(bytes: &[u8]) -> Result<Frame, WireError> {
    let frame = EthernetFrame::new_checked(bytes)?;
    let eth = EthernetRepr::parse(&frame)?;
    match eth.ethertype {
        EtherType::Arp => {
            let arp = ArpRepr::parse(&ArpPacket::new_checked(frame.payload())?)?;
            Ok(Frame::Arp { eth, arp })
        }
        EtherType::Ipv6 => parse_ipv6(eth, frame.payload()),
        EtherType::Ipv4 | EtherType::Unknown(_) => Ok(Frame::Other),
    }
}

fn parse_ipv6(eth: EthernetRepr, bytes: &[u8]) -> Result<Frame, WireError> {
    let packet = Ipv6Packet::new_checked(bytes)?;
    let ip = Ipv6Repr::parse(&packet)?;
    if ip.next_header != IpProtocol::Icmpv6 {
        return Ok(Frame::Other);
    }
    let message = Icmpv6Packet::new_checked(packet.payload())?;
    if !matches!(
        message.msg_type(),
        Icmpv6Type::NeighborSolicit | Icmpv6Type::NeighborAdvert
    ) {
        return Ok(Frame::Other);
    }
    let ndisc = NdiscRepr::parse(&message)?;
    ndisc.check_received(&ip)?;
    if !message.verify_checksum(&ip.src, &ip.dst) {
        return Err(WireError::Checksum);
    }
    Ok(match ndisc {
        NdiscRepr::NeighborSolicit {
            target,
            source_lladdr,
        } => Frame::NeighborSolicit {
            eth,
            ip,
            target,
            source_lladdr,
        },
        NdiscRepr::NeighborAdvert {
            flags,
            target,
            target_lladdr,
        } => Frame::NeighborAdvert {
            eth,
            ip,
            target,
            flags,
            target_lladdr,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::wire::arp::ArpOperation;
    use crate::wire::arp::tests::any_arp_repr;
    use crate::wire::build::{arp_reply, neighbor_advert};

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().expect("literal")
    }

    use crate::wire::fixtures::*;

    /// Offsets into the IPv6 fixtures.
    const HOP_LIMIT_AT: usize = 21;
    const ICMP_AT: usize = 54;

    fn parse(bytes: &[u8]) -> Result<Frame, WireError> {
        parse_frame(bytes)
    }

    /// Rewrites the ICMPv6 checksum of an IPv6 fixture after an edit.
    fn refill_checksum(frame: &mut [u8]) {
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[22..38]).expect("16 bytes"));
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[38..54]).expect("16 bytes"));
        let mut message = Icmpv6Packet::new_checked(&mut frame[ICMP_AT..]).expect("long enough");
        message.fill_checksum(&src, &dst);
    }

    #[test]
    fn reads_a_linux_who_has() {
        let frame = parse(&ARP_WHO_HAS).expect("valid");
        assert_eq!(
            frame,
            Frame::Arp {
                eth: EthernetRepr {
                    src: CLIENT_MAC,
                    dst: MacAddr::BROADCAST,
                    ethertype: EtherType::Arp,
                },
                arp: ArpRepr {
                    operation: ArpOperation::Request,
                    sender_mac: CLIENT_MAC,
                    sender_ip: Ipv4Addr::new(192, 0, 2, 10),
                    target_mac: MacAddr::ZERO,
                    target_ip: Ipv4Addr::new(192, 0, 2, 240),
                },
            }
        );
    }

    #[test]
    fn reads_a_who_has_padded_to_60_bytes() {
        let mut padded = ARP_WHO_HAS.to_vec();
        padded.resize(60, 0);
        assert_eq!(parse(&padded), parse(&ARP_WHO_HAS));
    }

    #[test]
    fn the_reply_builder_makes_the_reply_fixture() {
        let reply = arp_reply(
            SPEAKER_MAC,
            Ipv4Addr::new(192, 0, 2, 240),
            CLIENT_MAC,
            Ipv4Addr::new(192, 0, 2, 10),
        );
        assert_eq!(reply, ARP_REPLY);
        let Ok(Frame::Arp { eth, arp }) = parse(&ARP_REPLY) else {
            panic!("the reply fixture is not ARP");
        };
        assert_eq!(eth.dst, CLIENT_MAC);
        assert_eq!(arp.operation, ArpOperation::Reply);
        assert_eq!(arp.sender_mac, SPEAKER_MAC);
    }

    #[test]
    fn reads_a_linux_neighbor_solicitation() {
        assert_eq!(
            parse(&NS),
            Ok(Frame::NeighborSolicit {
                eth: EthernetRepr {
                    src: CLIENT_MAC,
                    dst: MacAddr([0x33, 0x33, 0xff, 0x00, 0x00, 0xf0]),
                    ethertype: EtherType::Ipv6,
                },
                ip: Ipv6Repr {
                    src: addr("2001:db8::10"),
                    dst: addr("ff02::1:ff00:f0"),
                    next_header: IpProtocol::Icmpv6,
                    payload_len: 32,
                    hop_limit: 255,
                },
                target: addr("2001:db8::f0"),
                source_lladdr: Some(CLIENT_MAC),
            })
        );
    }

    #[test]
    fn reads_duplicate_address_detection_skipping_the_nonce() {
        let Ok(Frame::NeighborSolicit {
            ip,
            target,
            source_lladdr,
            ..
        }) = parse(&DAD_NS)
        else {
            panic!("not a solicitation");
        };
        assert!(ip.src.is_unspecified());
        assert_eq!(target, addr("2001:db8::f0"));
        assert_eq!(source_lladdr, None);
    }

    #[test]
    fn reads_a_neighbor_advertisement() {
        assert_eq!(
            parse(&NA),
            Ok(Frame::NeighborAdvert {
                eth: EthernetRepr {
                    src: SPEAKER_MAC,
                    dst: CLIENT_MAC,
                    ethertype: EtherType::Ipv6,
                },
                ip: Ipv6Repr {
                    src: addr("2001:db8::f0"),
                    dst: addr("2001:db8::10"),
                    next_header: IpProtocol::Icmpv6,
                    payload_len: 32,
                    hop_limit: 255,
                },
                target: addr("2001:db8::f0"),
                flags: NeighborFlags {
                    router: false,
                    solicited: true,
                    overrides: true,
                },
                target_lladdr: Some(SPEAKER_MAC),
            })
        );
    }

    #[test]
    fn the_advert_builder_makes_the_advert_fixture() {
        let target = addr("2001:db8::f0");
        let frame = neighbor_advert(
            SPEAKER_MAC,
            target,
            CLIENT_MAC,
            addr("2001:db8::10"),
            target,
            true,
            true,
        );
        assert_eq!(frame, NA);
    }

    #[test]
    fn a_wrong_checksum_is_rejected() {
        for fixture in [NS, DAD_NS, NA] {
            let mut bad = fixture;
            bad[ICMP_AT + 3] ^= 0x01;
            assert_eq!(parse(&bad), Err(WireError::Checksum));
        }
    }

    #[test]
    fn a_changed_address_breaks_the_checksum() {
        let mut spoofed = NS;
        spoofed[37] = 0x11; // source 2001:db8::11
        assert_eq!(parse(&spoofed), Err(WireError::Checksum));
    }

    #[test]
    fn a_hop_limit_other_than_255_is_rejected() {
        for fixture in [NS, DAD_NS, NA] {
            let mut routed = fixture;
            routed[HOP_LIMIT_AT] = 254;
            assert_eq!(parse(&routed), Err(WireError::Malformed));
        }
    }

    #[test]
    fn a_zero_length_option_is_rejected_even_with_a_good_checksum() {
        let mut bad = NS;
        bad[ICMP_AT + 25] = 0;
        refill_checksum(&mut bad);
        assert_eq!(parse(&bad), Err(WireError::Malformed));
    }

    #[test]
    fn an_option_running_past_the_end_is_rejected() {
        let mut bad = NA;
        bad[ICMP_AT + 25] = 2;
        refill_checksum(&mut bad);
        assert_eq!(parse(&bad), Err(WireError::Malformed));
    }

    #[test]
    fn a_nonzero_code_is_rejected() {
        let mut bad = NS;
        bad[ICMP_AT + 1] = 1;
        refill_checksum(&mut bad);
        assert_eq!(parse(&bad), Err(WireError::Malformed));
    }

    #[test]
    fn a_multicast_target_is_rejected() {
        let mut bad = NS;
        bad[ICMP_AT + 8..ICMP_AT + 24].copy_from_slice(&addr("ff02::1").octets());
        refill_checksum(&mut bad);
        assert_eq!(parse(&bad), Err(WireError::Malformed));
    }

    #[test]
    fn a_message_shorter_than_24_bytes_is_rejected() {
        // Payload length 20: the IPv6 header says so, the message is cut before the target ends.
        let mut short = NS[..ICMP_AT + 20].to_vec();
        short[19] = 20;
        refill_checksum(&mut short);
        assert_eq!(parse(&short), Err(WireError::Truncated));
    }

    #[test]
    fn ipv6_with_a_wrong_version_is_rejected() {
        let mut bad = NS;
        bad[14] = 0x40;
        assert_eq!(parse(&bad), Err(WireError::Malformed));
    }

    #[test]
    fn arp_for_other_hardware_is_unsupported() {
        let mut bad = ARP_WHO_HAS;
        bad[15] = 6; // IEEE 802
        assert_eq!(parse(&bad), Err(WireError::Unsupported));
    }

    #[test]
    fn frames_of_no_interest_are_other() {
        // IPv4.
        let mut ipv4 = ARP_WHO_HAS;
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(&ipv4), Ok(Frame::Other));
        // An 802.1Q-tagged ARP.
        let mut tagged = ARP_WHO_HAS.to_vec();
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(parse(&tagged), Ok(Frame::Other));
        // A bare Ethernet header of another type.
        assert_eq!(parse(&[0u8; 14]), Ok(Frame::Other));
        // An ICMPv6 echo request (type 128) in the NS frame.
        let mut echo = NS;
        echo[ICMP_AT] = 128;
        assert_eq!(parse(&echo), Ok(Frame::Other));
        // A router solicitation (type 133).
        let mut rs = NS;
        rs[ICMP_AT] = 133;
        assert_eq!(parse(&rs), Ok(Frame::Other));
        // IPv6 with a hop-by-hop header first (as MLD reports have).
        let mut hop_by_hop = NS;
        hop_by_hop[20] = 0;
        assert_eq!(parse(&hop_by_hop), Ok(Frame::Other));
        // UDP.
        let mut udp = NS;
        udp[20] = 17;
        assert_eq!(parse(&udp), Ok(Frame::Other));
    }

    #[test]
    fn every_prefix_of_a_valid_frame_is_an_error_or_other() {
        for fixture in [&ARP_WHO_HAS[..], &NS, &DAD_NS, &NA] {
            assert!(parse(fixture).is_ok_and(|f| f != Frame::Other));
            for len in 0..fixture.len() {
                let result = parse(&fixture[..len]);
                assert!(
                    matches!(result, Err(_) | Ok(Frame::Other)),
                    "prefix of {len} bytes gave {result:?}"
                );
            }
        }
    }

    /// Found by `fuzz/fuzz_targets/frame.rs` (crash-90fe299c): a duplicate address detection
    /// solicitation whose source was the multicast ffff:ffff:ffff:fff9:: (not `::`) was accepted,
    /// and the solicited advertisement answering it, sent to that multicast source, did not parse.
    #[test]
    fn regression_solicitation_from_a_multicast_source_is_rejected() {
        let mut crash: [u8; 86] = [
            0x33, 0x33, 0xff, 0x00, 0x00, 0xf0, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x86, 0xdd,
            0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xf9, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0xf0, 0x87, 0x00,
            0xcc, 0xdf, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x0e, 0x01, 0x3c, 0x9a, 0x51, 0x07,
            0xe2, 0x84,
        ];
        refill_checksum(&mut crash);
        assert_eq!(parse(&crash), Err(WireError::Malformed));
        // The same from the unspecified address is duplicate address detection, and valid.
        crash[22..38].fill(0);
        refill_checksum(&mut crash);
        assert!(matches!(parse(&crash), Ok(Frame::NeighborSolicit { .. })));
    }

    #[test]
    fn trailing_bytes_after_the_ipv6_payload_are_ignored() {
        let mut padded = NS.to_vec();
        padded.extend_from_slice(&[0xee; 10]);
        assert_eq!(parse(&padded), parse(&NS));
    }

    /// Fixtures to mutate: random bytes alone rarely reach the option parser.
    fn any_fixture() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(ARP_WHO_HAS.to_vec()),
            Just(ARP_REPLY.to_vec()),
            Just(NS.to_vec()),
            Just(DAD_NS.to_vec()),
            Just(NA.to_vec()),
        ]
    }

    proptest! {
        #[test]
        fn parse_frame_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..160),
        ) {
            let _ = parse_frame(&bytes);
        }

        #[test]
        fn parse_frame_never_panics_on_mutated_frames(
            fixture in any_fixture(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
            fix_checksum in any::<bool>(),
        ) {
            let mut bytes = fixture;
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            if fix_checksum && bytes.len() > ICMP_AT + 4 {
                refill_checksum(&mut bytes);
            }
            let len = cut.index(bytes.len() + 1);
            let _ = parse_frame(&bytes[..len]);
            let _ = parse_frame(&bytes);
        }

        #[test]
        fn any_arp_repr_round_trips_through_a_frame(
            arp in any_arp_repr(),
            dst in any::<[u8; 6]>(),
        ) {
            let eth = EthernetRepr {
                src: arp.sender_mac,
                dst: MacAddr(dst),
                ethertype: EtherType::Arp,
            };
            let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
            let mut frame = EthernetFrame::new_checked(&mut buf[..]).expect("sized");
            eth.emit(&mut frame);
            arp.emit(&mut ArpPacket::new_checked(frame.payload_mut()).expect("sized"));
            prop_assert_eq!(parse_frame(&buf), Ok(Frame::Arp { eth, arp }));
        }
    }
}
