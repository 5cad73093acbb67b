//! ARP (RFC 826) for Ethernet and IPv4, the only kind a layer-2 load balancer answers.
//!
//! ```text
//!  0        2        4    5    6        8            14       18           24       28
//!  +--------+--------+----+----+--------+------------+--------+------------+--------+
//!  | htype  | ptype  |hlen|plen|   op   | sender MAC | sender | target MAC | target |
//!  |   1    | 0x0800 | 6  | 4  |        |            |  IPv4  |            |  IPv4  |
//!  +--------+--------+----+----+--------+------------+--------+------------+--------+
//! ```

use std::net::Ipv4Addr;

use super::WireError;
use super::bytes::{array_at, set_bytes, set_u8, set_u16, u8_at, u16_at};
use super::mac::MacAddr;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
    pub const END: usize = 28;
}

/// The length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::END;

const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;

/// What an ARP packet asks or tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// "Who has the target address?", `1`.
    Request,
    /// "The sender address is at the sender MAC", `2`.
    Reply,
    /// Any other value (RARP, InARP, ...).
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(value: ArpOperation) -> Self {
        match value {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// A checked view of an Ethernet/IPv4 ARP packet: 28 bytes, trailing padding ignored.
///
/// The address accessors assume 6-byte hardware and 4-byte protocol addresses; [`ArpRepr::parse`]
/// checks that the header says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` if it holds the 28 bytes of an Ethernet/IPv4 ARP packet;
    /// [`WireError::Truncated`] if not.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        Ok(ArpPacket { buffer })
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::HTYPE)
    }

    /// The protocol type (0x0800 for IPv4).
    pub fn protocol_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::PTYPE)
    }

    /// The hardware address length.
    pub fn hardware_len(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::HLEN)
    }

    /// The protocol address length.
    pub fn protocol_len(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::PLEN)
    }

    /// The operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(u16_at(self.buffer.as_ref(), field::OPER))
    }

    /// The sender hardware address.
    pub fn sender_mac(&self) -> MacAddr {
        MacAddr(array_at(self.buffer.as_ref(), field::SHA))
    }

    /// The sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buffer.as_ref(), field::SPA))
    }

    /// The target hardware address.
    pub fn target_mac(&self) -> MacAddr {
        MacAddr(array_at(self.buffer.as_ref(), field::THA))
    }

    /// The target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buffer.as_ref(), field::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::HTYPE, value);
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::PTYPE, value);
    }

    /// Sets the hardware address length.
    pub fn set_hardware_len(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::HLEN, value);
    }

    /// Sets the protocol address length.
    pub fn set_protocol_len(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::PLEN, value);
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, value: ArpOperation) {
        set_u16(self.buffer.as_mut(), field::OPER, value.into());
    }

    /// Sets the sender hardware address.
    pub fn set_sender_mac(&mut self, mac: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::SHA, &mac.0);
    }

    /// Sets the sender protocol address.
    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::SPA, &ip.octets());
    }

    /// Sets the target hardware address.
    pub fn set_target_mac(&mut self, mac: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::THA, &mac.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::TPA, &ip.octets());
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// The operation.
    pub operation: ArpOperation,
    /// The sender hardware address.
    pub sender_mac: MacAddr,
    /// The sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// The target hardware address (zero or ignored in a request).
    pub target_mac: MacAddr,
    /// The target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads a checked packet; [`WireError::Unsupported`] unless it is Ethernet (hardware type 1,
    /// length 6) and IPv4 (protocol type 0x0800, length 4).
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<Self, WireError> {
        if packet.hardware_type() != HTYPE_ETHERNET
            || packet.protocol_type() != PTYPE_IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            sender_mac: packet.sender_mac(),
            sender_ip: packet.sender_ip(),
            target_mac: packet.target_mac(),
            target_ip: packet.target_ip(),
        })
    }

    /// The length of the packet this writes (28).
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(PTYPE_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_sender_mac(self.sender_mac);
        packet.set_sender_ip(self.sender_ip);
        packet.set_target_mac(self.target_mac);
        packet.set_target_ip(self.target_ip);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The ARP part of a who-has from a Linux host (52:54:00:12:34:56, 192.0.2.10) asking for
    /// 192.0.2.240; Linux leaves the target MAC zero.
    const WHO_HAS: [u8; 28] = [
        0x00, 0x01, // hardware type: Ethernet
        0x08, 0x00, // protocol type: IPv4
        0x06, 0x04, // lengths
        0x00, 0x01, // request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sender MAC
        0xc0, 0x00, 0x02, 0x0a, // sender IP 192.0.2.10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC
        0xc0, 0x00, 0x02, 0xf0, // target IP 192.0.2.240
    ];

    fn who_has() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            sender_ip: Ipv4Addr::new(192, 0, 2, 10),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(192, 0, 2, 240),
        }
    }

    fn emit(repr: &ArpRepr) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_checked(&mut buf).expect("sized by buffer_len"));
        buf
    }

    #[test]
    fn parses_a_linux_who_has() {
        let packet = ArpPacket::new_checked(&WHO_HAS[..]).expect("28 bytes");
        assert_eq!(ArpRepr::parse(&packet), Ok(who_has()));
    }

    #[test]
    fn emits_the_bytes_linux_sends() {
        assert_eq!(emit(&who_has()), WHO_HAS);
    }

    #[test]
    fn trailing_padding_is_ignored() {
        let mut padded = WHO_HAS.to_vec();
        padded.extend_from_slice(&[0; 18]);
        let packet = ArpPacket::new_checked(&padded).expect("long enough");
        assert_eq!(ArpRepr::parse(&packet), Ok(who_has()));
    }

    #[test]
    fn short_packets_are_truncated() {
        for len in 0..PACKET_LEN {
            assert_eq!(
                ArpPacket::new_checked(&WHO_HAS[..len]).map(|_| ()),
                Err(WireError::Truncated),
                "length {len}"
            );
        }
    }

    #[test]
    fn other_hardware_or_protocol_types_are_unsupported() {
        // (offset, value): hardware type 6 (IEEE 802), protocol IPv6, hlen 8, plen 16.
        for (at, value) in [(1, 6), (2, 0x86), (4, 8), (5, 16)] {
            let mut packet = WHO_HAS;
            packet[at] = value;
            let view = ArpPacket::new_checked(&packet[..]).expect("28 bytes");
            assert_eq!(
                ArpRepr::parse(&view),
                Err(WireError::Unsupported),
                "byte {at}"
            );
        }
    }

    #[test]
    fn unknown_operations_are_kept() {
        let mut packet = WHO_HAS;
        packet[7] = 9; // InARP reply
        let view = ArpPacket::new_checked(&packet[..]).expect("28 bytes");
        let repr = ArpRepr::parse(&view).expect("Ethernet/IPv4");
        assert_eq!(repr.operation, ArpOperation::Unknown(9));
        assert_eq!(emit(&repr), packet);
    }

    prop_compose! {
        pub(crate) fn any_arp_repr()(
            operation in any::<u16>(),
            sender_mac in any::<[u8; 6]>(),
            sender_ip in any::<[u8; 4]>(),
            target_mac in any::<[u8; 6]>(),
            target_ip in any::<[u8; 4]>(),
        ) -> ArpRepr {
            ArpRepr {
                operation: operation.into(),
                sender_mac: MacAddr(sender_mac),
                sender_ip: sender_ip.into(),
                target_mac: MacAddr(target_mac),
                target_ip: target_ip.into(),
            }
        }
    }

    proptest! {
        #[test]
        fn any_arp_repr_round_trips(repr in any_arp_repr()) {
            let buf = emit(&repr);
            let packet = ArpPacket::new_checked(&buf).expect("28 bytes");
            prop_assert_eq!(ArpRepr::parse(&packet), Ok(repr));
        }
    }
}
