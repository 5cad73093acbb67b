//! The IPv6 fixed header (RFC 8200). Extension headers are not followed: a packet whose next
//! header is not ICMPv6 is of no interest to neighbor discovery, which never uses them.
//!
//! ```text
//!  0       4               12                      24                      32
//!  +-------+---------------+-----------------------------------------------+
//!  |version| traffic class |                  flow label                   |
//!  +-------+---------------+-----------------------+-----------+-----------+
//!  |        payload length (bytes after the header)|next header| hop limit |
//!  +-----------------------------------------------+-----------+-----------+
//!  |                      source address (16 bytes)                        |
//!  |                   destination address (16 bytes)                      |
//!  +-----------------------------------------------------------------------+
//! ```

use std::net::Ipv6Addr;

use super::WireError;
use super::bytes::{array_at, set_bytes, set_u8, set_u16, tail, tail_mut, u8_at, u16_at};

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
    pub const PAYLOAD: usize = 40;
}

/// The length of the IPv6 fixed header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// The protocol in an IPv6 next-header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// ICMPv6, `58`.
    Icmpv6,
    /// Anything else, extension headers included.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> Self {
        match value {
            58 => IpProtocol::Icmpv6,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> Self {
        match value {
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Unknown(other) => other,
        }
    }
}

/// A checked view of an IPv6 packet: a full fixed header and as many bytes after it as the
/// payload length says (trailing Ethernet padding is allowed and ignored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` if it holds a fixed header and the payload length it gives;
    /// [`WireError::Truncated`] if not. The version is checked by [`Ipv6Repr::parse`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Ipv6Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN || len - HEADER_LEN < usize::from(packet.payload_len()) {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (6 for IPv6).
    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4
    }

    /// The traffic class.
    pub fn traffic_class(&self) -> u8 {
        let word = u16_at(self.buffer.as_ref(), field::VER_TC_FLOW);
        ((word >> 4) & 0xff) as u8
    }

    /// The flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        u32::from_be_bytes(array_at(self.buffer.as_ref(), field::VER_TC_FLOW)) & 0x000f_ffff
    }

    /// The payload length.
    pub fn payload_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The next header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(u8_at(self.buffer.as_ref(), field::NEXT_HEADER))
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    /// The source address.
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(array_at::<16>(self.buffer.as_ref(), field::SRC))
    }

    /// The destination address.
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(array_at::<16>(self.buffer.as_ref(), field::DST))
    }

    /// The payload: exactly `payload_len` bytes (fewer only if a setter made the length lie).
    pub fn payload(&self) -> &[u8] {
        let payload = tail(self.buffer.as_ref(), field::PAYLOAD);
        let len = usize::from(self.payload_len()).min(payload.len());
        payload.get(..len).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, traffic class 0 and flow label 0.
    pub fn clear_first_word(&mut self) {
        set_bytes(self.buffer.as_mut(), field::VER_TC_FLOW, &[0x60, 0, 0, 0]);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, value);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        set_u8(self.buffer.as_mut(), field::NEXT_HEADER, value.into());
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::HOP_LIMIT, value);
    }

    /// Sets the source address.
    pub fn set_src(&mut self, ip: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), field::SRC, &ip.octets());
    }

    /// Sets the destination address.
    pub fn set_dst(&mut self, ip: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), field::DST, &ip.octets());
    }

    /// Everything after the fixed header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        tail_mut(self.buffer.as_mut(), field::PAYLOAD)
    }
}

/// A parsed IPv6 fixed header (traffic class and flow label are not kept; emit writes zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// The source address.
    pub src: Ipv6Addr,
    /// The destination address.
    pub dst: Ipv6Addr,
    /// The next header.
    pub next_header: IpProtocol,
    /// The payload length.
    pub payload_len: u16,
    /// The hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Reads a checked packet's header; [`WireError::Malformed`] if the version is not 6.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Self, WireError> {
        if packet.version() != 6 {
            return Err(WireError::Malformed);
        }
        Ok(Ipv6Repr {
            src: packet.src(),
            dst: packet.dst(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
        })
    }

    /// The length of the header this writes (40; the payload is the inner protocol's).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.clear_first_word();
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src(self.src);
        packet.set_dst(self.dst);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The header of an ICMPv6 packet from 2001:db8::10 to ff02::1:ff00:f0, with traffic class
    /// 0xe0 and flow label 0x12345 to check the bit fields, and 4 payload bytes.
    const PACKET: [u8; 44] = [
        0x6e, 0x01, 0x23, 0x45, // version 6, traffic class 0xe0, flow label 0x12345
        0x00, 0x04, 0x3a, 0xff, // payload length 4, ICMPv6, hop limit 255
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10, // 2001:db8::10
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x00,
        0xf0, // ff02::1:ff00:f0
        0x87, 0x00, 0x00, 0x00, // payload
    ];

    #[test]
    fn reads_every_field() {
        let packet = Ipv6Packet::new_checked(&PACKET[..]).expect("complete");
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0xe0);
        assert_eq!(packet.flow_label(), 0x12345);
        assert_eq!(packet.payload(), &[0x87, 0, 0, 0]);
        let repr = Ipv6Repr::parse(&packet).expect("version 6");
        assert_eq!(
            repr,
            Ipv6Repr {
                src: "2001:db8::10".parse().expect("literal"),
                dst: "ff02::1:ff00:f0".parse().expect("literal"),
                next_header: IpProtocol::Icmpv6,
                payload_len: 4,
                hop_limit: 255,
            }
        );
    }

    #[test]
    fn padding_after_the_payload_is_not_payload() {
        let mut padded = PACKET.to_vec();
        padded.extend_from_slice(&[0xaa; 6]);
        let packet = Ipv6Packet::new_checked(&padded).expect("complete");
        assert_eq!(packet.payload(), &[0x87, 0, 0, 0]);
    }

    #[test]
    fn a_payload_shorter_than_its_length_is_truncated() {
        for len in 0..PACKET.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&PACKET[..len]).map(|_| ()),
                Err(WireError::Truncated),
                "length {len}"
            );
        }
    }

    #[test]
    fn a_version_other_than_6_is_malformed() {
        let mut v4 = PACKET;
        v4[0] = 0x45;
        let packet = Ipv6Packet::new_checked(&v4[..]).expect("long enough");
        assert_eq!(Ipv6Repr::parse(&packet), Err(WireError::Malformed));
    }

    proptest! {
        #[test]
        fn any_header_round_trips(
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            next_header in any::<u8>(),
            payload_len in 0u16..64,
            hop_limit in any::<u8>(),
        ) {
            let repr = Ipv6Repr {
                src: src.into(),
                dst: dst.into(),
                next_header: next_header.into(),
                payload_len,
                hop_limit,
            };
            let mut buf = vec![0u8; repr.buffer_len() + usize::from(payload_len)];
            repr.emit(&mut Ipv6Packet::new_checked(&mut buf).expect("zero payload length"));
            let packet = Ipv6Packet::new_checked(&buf).expect("sized for the payload");
            prop_assert_eq!(Ipv6Repr::parse(&packet), Ok(repr));
        }
    }
}
