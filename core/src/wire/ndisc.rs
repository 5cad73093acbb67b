//! Neighbor Solicitation and Advertisement (RFC 4861 §4.3, §4.4), the IPv6 counterpart of ARP.
//!
//! ```text
//!  0        1        2                 4                                   8
//!  +--------+--------+-----------------+-----------------------------------+
//!  |135/136 | code 0 |    checksum     | NS: reserved / NA: R S O reserved |
//!  +--------+--------+-----------------+-----------------------------------+
//!  |                     target address (16 bytes)                         |
//!  +-----------------------------------------------------------------------+  24
//!  | options: type (1 byte), length in units of 8 bytes (1 byte), data ... |
//!  +-----------------------------------------------------------------------+
//! ```
//!
//! Options are read defensively: a zero length or an option running past the end of the message
//! is [`WireError::Malformed`]; options other than the link-layer addresses are skipped.

use std::net::Ipv6Addr;

use super::WireError;
use super::bytes::{array_at, set_bytes, set_u8, u8_at};
use super::icmpv6::{Icmpv6Packet, Icmpv6Type};
use super::ipv6::Ipv6Repr;
use super::mac::MacAddr;

mod field {
    /// Offsets from the start of the ICMPv6 message.
    pub const FLAGS: usize = 4;
    pub const TARGET: usize = 8;
    pub const OPTIONS: usize = 24;
}

/// The length of a Neighbor Solicitation or Advertisement without options.
pub const MESSAGE_LEN: usize = field::OPTIONS;

/// The hop limit every neighbor discovery message is sent and must be received with.
pub const HOP_LIMIT: u8 = 255;

/// The length of a link-layer address option for Ethernet.
const LLADDR_OPTION_LEN: usize = 8;

const OPTION_SOURCE_LLADDR: u8 = 1;
const OPTION_TARGET_LLADDR: u8 = 2;

const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// The all-nodes multicast address, `ff02::1`.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The flags of a Neighbor Advertisement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NeighborFlags {
    /// R: the sender is a router.
    pub router: bool,
    /// S: sent in response to a Neighbor Solicitation.
    pub solicited: bool,
    /// O: the advertisement should override an existing cache entry.
    pub overrides: bool,
}

impl NeighborFlags {
    /// The flags from the first byte after the checksum (reserved bits ignored).
    pub const fn from_byte(byte: u8) -> Self {
        NeighborFlags {
            router: byte & FLAG_ROUTER != 0,
            solicited: byte & FLAG_SOLICITED != 0,
            overrides: byte & FLAG_OVERRIDE != 0,
        }
    }

    /// The flags as the first byte after the checksum (reserved bits zero).
    pub const fn to_byte(self) -> u8 {
        (if self.router { FLAG_ROUTER } else { 0 })
            | (if self.solicited { FLAG_SOLICITED } else { 0 })
            | (if self.overrides { FLAG_OVERRIDE } else { 0 })
    }
}

/// One neighbor discovery option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NdiscOption<'a> {
    /// Source link-layer address (type 1).
    SourceLinkLayerAddr(MacAddr),
    /// Target link-layer address (type 2).
    TargetLinkLayerAddr(MacAddr),
    /// Any other option, kept as its type and its bytes after the type and length.
    Unknown {
        /// The option type.
        kind: u8,
        /// The option data (its length is a multiple of 8, less 2).
        data: &'a [u8],
    },
}

impl NdiscOption<'_> {
    /// The bytes this option takes when written (only the link-layer options are written).
    pub const fn buffer_len(&self) -> usize {
        match self {
            NdiscOption::SourceLinkLayerAddr(_) | NdiscOption::TargetLinkLayerAddr(_) => {
                LLADDR_OPTION_LEN
            }
            NdiscOption::Unknown { data, .. } => data.len() + 2,
        }
    }

    /// Writes the option at the start of `buf`, which must hold [`Self::buffer_len`] bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let (kind, data): (u8, &[u8]) = match self {
            NdiscOption::SourceLinkLayerAddr(mac) => (OPTION_SOURCE_LLADDR, &mac.0),
            NdiscOption::TargetLinkLayerAddr(mac) => (OPTION_TARGET_LLADDR, &mac.0),
            NdiscOption::Unknown { kind, data } => (*kind, data),
        };
        set_u8(buf, 0, kind);
        set_u8(buf, 1, u8::try_from(self.buffer_len() / 8).unwrap_or(0));
        set_bytes(buf, 2, data);
    }
}

/// The options of a message, in order. Yields an error (and then stops) at a zero-length option or
/// one that runs past the end.
#[derive(Clone, Debug)]
pub struct NdiscOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdiscOptions<'a> {
    /// The options in `bytes` (everything after the 24-byte message).
    pub const fn new(bytes: &'a [u8]) -> Self {
        NdiscOptions { rest: bytes }
    }
}

impl<'a> Iterator for NdiscOptions<'a> {
    type Item = Result<NdiscOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let (kind, units) = match rest {
            [kind, units, ..] => (*kind, *units),
            _ => return Some(Err(WireError::Malformed)),
        };
        let len = usize::from(units) * 8;
        if len == 0 {
            return Some(Err(WireError::Malformed));
        }
        let Some((option, after)) = rest.split_at_checked(len) else {
            return Some(Err(WireError::Malformed));
        };
        self.rest = after;
        let data = option.get(2..).unwrap_or(&[]);
        let option = match kind {
            OPTION_SOURCE_LLADDR => NdiscOption::SourceLinkLayerAddr(MacAddr(array_at(data, 0))),
            OPTION_TARGET_LLADDR => NdiscOption::TargetLinkLayerAddr(MacAddr(array_at(data, 0))),
            kind => NdiscOption::Unknown { kind, data },
        };
        Some(Ok(option))
    }
}

/// A parsed Neighbor Solicitation or Advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NdiscRepr {
    /// "Who has `target`?" (type 135).
    NeighborSolicit {
        /// The address asked about.
        target: Ipv6Addr,
        /// The asker's link-layer address (absent in duplicate address detection).
        source_lladdr: Option<MacAddr>,
    },
    /// "`target` is at `target_lladdr`" (type 136).
    NeighborAdvert {
        /// The R, S and O flags.
        flags: NeighborFlags,
        /// The address advertised.
        target: Ipv6Addr,
        /// The advertiser's link-layer address.
        target_lladdr: Option<MacAddr>,
    },
}

impl NdiscRepr {
    /// Reads a Neighbor Solicitation or Advertisement from a checked ICMPv6 message. The
    /// checksum is not looked at (see [`Icmpv6Packet::verify_checksum`]).
    ///
    /// Errors: [`WireError::Unsupported`] for another ICMPv6 type; [`WireError::Malformed`] for a
    /// code other than 0 or a bad option; [`WireError::Truncated`] for a message shorter than 24
    /// bytes. Link-layer options of the other kind are skipped; of several of the right kind the
    /// first counts.
    pub fn parse<T: AsRef<[u8]>>(packet: &Icmpv6Packet<T>) -> Result<Self, WireError> {
        let msg_type = packet.msg_type();
        if !matches!(
            msg_type,
            Icmpv6Type::NeighborSolicit | Icmpv6Type::NeighborAdvert
        ) {
            return Err(WireError::Unsupported);
        }
        if packet.code() != 0 {
            return Err(WireError::Malformed);
        }
        let bytes = packet.as_bytes();
        let Some(options) = bytes.get(field::OPTIONS..) else {
            return Err(WireError::Truncated);
        };
        let target = Ipv6Addr::from(array_at::<16>(bytes, field::TARGET));
        let mut source_lladdr = None;
        let mut target_lladdr = None;
        for option in NdiscOptions::new(options) {
            match option? {
                NdiscOption::SourceLinkLayerAddr(mac) => {
                    source_lladdr = source_lladdr.or(Some(mac));
                }
                NdiscOption::TargetLinkLayerAddr(mac) => {
                    target_lladdr = target_lladdr.or(Some(mac));
                }
                NdiscOption::Unknown { .. } => {}
            }
        }
        Ok(if msg_type == Icmpv6Type::NeighborSolicit {
            NdiscRepr::NeighborSolicit {
                target,
                source_lladdr,
            }
        } else {
            NdiscRepr::NeighborAdvert {
                flags: NeighborFlags::from_byte(u8_at(bytes, field::FLAGS)),
                target,
                target_lladdr,
            }
        })
    }

    /// The target address.
    pub const fn target(&self) -> Ipv6Addr {
        match self {
            NdiscRepr::NeighborSolicit { target, .. }
            | NdiscRepr::NeighborAdvert { target, .. } => *target,
        }
    }

    /// The one option this writes, if any.
    fn option(&self) -> Option<NdiscOption<'static>> {
        match *self {
            NdiscRepr::NeighborSolicit { source_lladdr, .. } => {
                source_lladdr.map(NdiscOption::SourceLinkLayerAddr)
            }
            NdiscRepr::NeighborAdvert { target_lladdr, .. } => {
                target_lladdr.map(NdiscOption::TargetLinkLayerAddr)
            }
        }
    }

    /// The length of the ICMPv6 message this writes.
    pub fn buffer_len(&self) -> usize {
        MESSAGE_LEN + self.option().map_or(0, |o| o.buffer_len())
    }

    /// Writes the whole ICMPv6 message with a zero checksum; call
    /// [`Icmpv6Packet::fill_checksum`] afterwards. The packet must hold [`Self::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv6Packet<T>) {
        let (msg_type, flags) = match self {
            NdiscRepr::NeighborSolicit { .. } => (Icmpv6Type::NeighborSolicit, 0),
            NdiscRepr::NeighborAdvert { flags, .. } => {
                (Icmpv6Type::NeighborAdvert, flags.to_byte())
            }
        };
        packet.set_msg_type(msg_type);
        packet.set_code(0);
        packet.set_checksum(0);
        // The body starts after the 4-byte ICMPv6 header.
        let body = packet.body_mut();
        set_bytes(body, 0, &[flags, 0, 0, 0]);
        set_bytes(body, field::TARGET - 4, &self.target().octets());
        if let Some(option) = self.option() {
            option.emit(body.get_mut(field::OPTIONS - 4..).unwrap_or(&mut []));
        }
    }

    /// The validity checks of RFC 4861 §7.1 that need the IPv6 header: hop limit 255, a source that
    /// is not multicast (RFC 4291 §2.7), a unicast target, a solicitation from the unspecified address only to a solicited-node address and
    /// without a source link-layer address, and no solicited advertisement to a multicast address.
    /// (Code 0 and length are checked by [`Self::parse`], the checksum by the caller.)
    pub fn check_received(&self, ip: &Ipv6Repr) -> Result<(), WireError> {
        let valid = ip.hop_limit == HOP_LIMIT
            && !ip.src.is_multicast()
            && !self.target().is_multicast()
            && match self {
                // From `::` (duplicate address detection): to a solicited-node address, with no
                // source link-layer address.
                NdiscRepr::NeighborSolicit { source_lladdr, .. } => {
                    !ip.src.is_unspecified()
                        || (is_solicited_node_multicast(&ip.dst) && source_lladdr.is_none())
                }
                // To a multicast address: never marked solicited.
                NdiscRepr::NeighborAdvert { flags, .. } => {
                    !(ip.dst.is_multicast() && flags.solicited)
                }
            };
        if !valid {
            return Err(WireError::Malformed);
        }
        Ok(())
    }
}

/// The solicited-node multicast address of `ip`: `ff02::1:ff` and its last 24 bits (RFC 4291
/// §2.7.1). Neighbor Solicitations for `ip` are sent there.
pub fn solicited_node_multicast(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// Whether `ip` is a solicited-node multicast address (`ff02::1:ff00:0/104`).
pub fn is_solicited_node_multicast(ip: &Ipv6Addr) -> bool {
    ip.octets()
        .starts_with(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff])
}

/// The Ethernet address for IPv6 multicast address `ip`: `33:33` and its last 32 bits (RFC 2464
/// §7).
pub fn multicast_mac(ip: Ipv6Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().expect("literal")
    }

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    /// A Neighbor Solicitation for 2001:db8::f0 from 2001:db8::10 (checksum 0x9580 for
    /// ff02::1:ff00:f0), with a source link-layer option.
    const NS: [u8; 32] = [
        0x87, 0x00, 0x95, 0x80, // type 135, code 0, checksum
        0x00, 0x00, 0x00, 0x00, // reserved
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0xf0, // target
        0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source link-layer address
    ];

    fn parse(bytes: &[u8]) -> Result<NdiscRepr, WireError> {
        NdiscRepr::parse(&Icmpv6Packet::new_checked(bytes)?)
    }

    fn emit(repr: &NdiscRepr) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv6Packet::new_checked(&mut buf).expect("sized by buffer_len"));
        buf
    }

    fn ns_with_options(options: &[u8]) -> Vec<u8> {
        let mut bytes = NS[..MESSAGE_LEN].to_vec();
        bytes.extend_from_slice(options);
        bytes
    }

    #[test]
    fn parses_a_solicitation_with_a_source_address() {
        assert_eq!(
            parse(&NS),
            Ok(NdiscRepr::NeighborSolicit {
                target: addr("2001:db8::f0"),
                source_lladdr: Some(MAC),
            })
        );
    }

    #[test]
    fn emits_the_same_bytes_but_the_checksum() {
        let mut expected = NS;
        expected[2..4].copy_from_slice(&[0, 0]);
        let repr = parse(&NS).expect("valid");
        assert_eq!(emit(&repr), expected);
        let mut buf = emit(&repr);
        let mut packet = Icmpv6Packet::new_checked(&mut buf).expect("complete");
        packet.fill_checksum(&addr("2001:db8::10"), &addr("ff02::1:ff00:f0"));
        assert_eq!(buf, NS);
    }

    #[test]
    fn a_zero_length_option_is_malformed() {
        let bytes = ns_with_options(&[0x01, 0x00, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(parse(&bytes), Err(WireError::Malformed));
    }

    #[test]
    fn a_zero_length_option_after_a_good_one_is_malformed() {
        let bytes = ns_with_options(&[1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 14, 0, 0, 0]);
        assert_eq!(parse(&bytes), Err(WireError::Malformed));
    }

    #[test]
    fn an_option_running_past_the_end_is_malformed() {
        let bytes = ns_with_options(&[0x01, 0x02, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(parse(&bytes), Err(WireError::Malformed));
        // A lone byte where an option should start.
        assert_eq!(parse(&ns_with_options(&[0x01])), Err(WireError::Malformed));
    }

    #[test]
    fn unknown_options_are_skipped() {
        // A nonce (type 14) as Linux sends in duplicate address detection, then the address.
        let bytes = ns_with_options(&[
            14, 1, 0x3c, 0x9a, 0x51, 0x07, 0xe2, 0x84, 1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56,
        ]);
        assert_eq!(
            parse(&bytes),
            Ok(NdiscRepr::NeighborSolicit {
                target: addr("2001:db8::f0"),
                source_lladdr: Some(MAC),
            })
        );
    }

    #[test]
    fn the_first_of_two_link_layer_options_counts_and_the_other_kind_is_skipped() {
        let bytes = ns_with_options(&[
            2, 1, 9, 9, 9, 9, 9, 9, // target link-layer address: ignored in an NS
            1, 1, 1, 2, 3, 4, 5, 6, // first source address
            1, 1, 7, 7, 7, 7, 7, 7, // second source address
        ]);
        assert_eq!(
            parse(&bytes),
            Ok(NdiscRepr::NeighborSolicit {
                target: addr("2001:db8::f0"),
                source_lladdr: Some(MacAddr([1, 2, 3, 4, 5, 6])),
            })
        );
    }

    #[test]
    fn a_longer_link_layer_option_gives_its_first_six_bytes() {
        let bytes = ns_with_options(&[1, 2, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            parse(&bytes),
            Ok(NdiscRepr::NeighborSolicit {
                source_lladdr: Some(MacAddr([1, 2, 3, 4, 5, 6])),
                ..
            })
        ));
    }

    #[test]
    fn a_nonzero_code_is_malformed() {
        let mut bytes = NS;
        bytes[1] = 1;
        assert_eq!(parse(&bytes), Err(WireError::Malformed));
    }

    #[test]
    fn messages_shorter_than_24_bytes_are_truncated() {
        for len in 4..MESSAGE_LEN {
            assert_eq!(parse(&NS[..len]), Err(WireError::Truncated), "length {len}");
        }
    }

    #[test]
    fn other_icmpv6_types_are_unsupported() {
        let mut bytes = NS;
        bytes[0] = 133; // router solicitation
        assert_eq!(parse(&bytes), Err(WireError::Unsupported));
    }

    #[test]
    fn advertisement_flags_ignore_reserved_bits() {
        let flags = NeighborFlags::from_byte(0xff);
        assert_eq!(
            flags,
            NeighborFlags {
                router: true,
                solicited: true,
                overrides: true
            }
        );
        assert_eq!(flags.to_byte(), 0xe0);
        assert_eq!(NeighborFlags::from_byte(0x1f), NeighborFlags::default());
    }

    fn received(src: &str, dst: &str, hop_limit: u8) -> Ipv6Repr {
        Ipv6Repr {
            src: addr(src),
            dst: addr(dst),
            next_header: super::super::ipv6::IpProtocol::Icmpv6,
            payload_len: 32,
            hop_limit,
        }
    }

    #[test]
    fn received_messages_need_hop_limit_255() {
        let ns = parse(&NS).expect("valid");
        assert_eq!(
            ns.check_received(&received("2001:db8::10", "ff02::1:ff00:f0", 255)),
            Ok(())
        );
        for hop_limit in [0, 1, 64, 254] {
            assert_eq!(
                ns.check_received(&received("2001:db8::10", "ff02::1:ff00:f0", hop_limit)),
                Err(WireError::Malformed)
            );
        }
    }

    #[test]
    fn a_multicast_source_is_malformed() {
        let ns = parse(&NS).expect("valid");
        assert_eq!(
            ns.check_received(&received("ff02::1", "ff02::1:ff00:f0", 255)),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn a_multicast_target_is_malformed() {
        let ip = received("2001:db8::10", "ff02::1:ff00:f0", 255);
        let ns = NdiscRepr::NeighborSolicit {
            target: addr("ff02::1"),
            source_lladdr: None,
        };
        assert_eq!(ns.check_received(&ip), Err(WireError::Malformed));
        let na = NdiscRepr::NeighborAdvert {
            flags: NeighborFlags::default(),
            target: addr("ff02::1"),
            target_lladdr: None,
        };
        assert_eq!(na.check_received(&ip), Err(WireError::Malformed));
    }

    #[test]
    fn duplicate_address_detection_goes_to_solicited_node_without_source_address() {
        let dad = NdiscRepr::NeighborSolicit {
            target: addr("2001:db8::f0"),
            source_lladdr: None,
        };
        assert_eq!(
            dad.check_received(&received("::", "ff02::1:ff00:f0", 255)),
            Ok(())
        );
        assert_eq!(
            dad.check_received(&received("::", "2001:db8::f0", 255)),
            Err(WireError::Malformed)
        );
        let with_source = parse(&NS).expect("valid");
        assert_eq!(
            with_source.check_received(&received("::", "ff02::1:ff00:f0", 255)),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn a_solicited_advertisement_to_multicast_is_malformed() {
        let mut na = NdiscRepr::NeighborAdvert {
            flags: NeighborFlags {
                solicited: true,
                ..NeighborFlags::default()
            },
            target: addr("2001:db8::f0"),
            target_lladdr: Some(MAC),
        };
        assert_eq!(
            na.check_received(&received("2001:db8::f0", "ff02::1", 255)),
            Err(WireError::Malformed)
        );
        assert_eq!(
            na.check_received(&received("2001:db8::f0", "2001:db8::10", 255)),
            Ok(())
        );
        if let NdiscRepr::NeighborAdvert { flags, .. } = &mut na {
            flags.solicited = false;
        }
        assert_eq!(
            na.check_received(&received("2001:db8::f0", "ff02::1", 255)),
            Ok(())
        );
    }

    #[test]
    fn multicast_addresses_follow_rfc_4291_and_2464() {
        let ip = addr("2001:db8::aabb:ccdd");
        assert_eq!(solicited_node_multicast(ip), addr("ff02::1:ffbb:ccdd"));
        assert!(is_solicited_node_multicast(&solicited_node_multicast(ip)));
        assert!(!is_solicited_node_multicast(&ALL_NODES));
        assert_eq!(
            multicast_mac(addr("ff02::1:ffbb:ccdd")),
            MacAddr([0x33, 0x33, 0xff, 0xbb, 0xcc, 0xdd])
        );
        assert_eq!(multicast_mac(ALL_NODES), MacAddr([0x33, 0x33, 0, 0, 0, 1]));
    }

    fn any_mac() -> impl Strategy<Value = Option<MacAddr>> {
        proptest::option::of(any::<[u8; 6]>().prop_map(MacAddr))
    }

    fn any_ndisc_repr() -> impl Strategy<Value = NdiscRepr> {
        prop_oneof![
            (any::<[u8; 16]>(), any_mac()).prop_map(|(target, source_lladdr)| {
                NdiscRepr::NeighborSolicit {
                    target: target.into(),
                    source_lladdr,
                }
            }),
            (any::<u8>(), any::<[u8; 16]>(), any_mac()).prop_map(
                |(flags, target, target_lladdr)| NdiscRepr::NeighborAdvert {
                    flags: NeighborFlags::from_byte(flags),
                    target: target.into(),
                    target_lladdr,
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn any_ndisc_repr_round_trips(repr in any_ndisc_repr()) {
            prop_assert_eq!(parse(&emit(&repr)), Ok(repr));
        }

        #[test]
        fn any_options_parse_without_panicking(options in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&ns_with_options(&options));
        }
    }
}
