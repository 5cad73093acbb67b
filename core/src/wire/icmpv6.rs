//! The ICMPv6 header (RFC 4443) and its checksum over the IPv6 pseudo-header.
//!
//! ```text
//!  0        1        2                 4
//!  +--------+--------+-----------------+----------- ... --+
//!  |  type  |  code  |    checksum     |  message body    |
//!  +--------+--------+-----------------+----------- ... --+
//! ```
//!
//! The checksum is the ones' complement of the ones' complement sum of the pseudo-header (source,
//! destination, upper-layer length as 32 bits, three zero bytes and next header 58) and the whole
//! message with the checksum field taken as zero.

use std::net::Ipv6Addr;

use super::WireError;
use super::bytes::{set_u8, set_u16, tail, tail_mut, u8_at, u16_at};
use super::ipv6::IpProtocol;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const BODY: usize = 4;
}

/// The length of the ICMPv6 header (type, code, checksum).
pub const HEADER_LEN: usize = field::BODY;

/// The ICMPv6 message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Icmpv6Type {
    /// Neighbor Solicitation, `135`.
    NeighborSolicit,
    /// Neighbor Advertisement, `136`.
    NeighborAdvert,
    /// Any other type (echo, router discovery, MLD, errors, ...).
    Unknown(u8),
}

impl From<u8> for Icmpv6Type {
    fn from(value: u8) -> Self {
        match value {
            135 => Icmpv6Type::NeighborSolicit,
            136 => Icmpv6Type::NeighborAdvert,
            other => Icmpv6Type::Unknown(other),
        }
    }
}

impl From<Icmpv6Type> for u8 {
    fn from(value: Icmpv6Type) -> Self {
        match value {
            Icmpv6Type::NeighborSolicit => 135,
            Icmpv6Type::NeighborAdvert => 136,
            Icmpv6Type::Unknown(other) => other,
        }
    }
}

/// A checked view of an ICMPv6 message: the buffer is the whole message (the IPv6 payload), which
/// the checksum covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` if it holds at least the 4-byte header; [`WireError::Truncated`] if not.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Icmpv6Packet { buffer })
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The message type.
    pub fn msg_type(&self) -> Icmpv6Type {
        Icmpv6Type::from(u8_at(self.buffer.as_ref(), field::TYPE))
    }

    /// The message code.
    pub fn code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::CODE)
    }

    /// The checksum as written.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Everything after the header.
    pub fn body(&self) -> &[u8] {
        tail(self.buffer.as_ref(), field::BODY)
    }

    /// Whether the checksum is right for a message from `src` to `dst`.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        // Summing the message with its checksum in place gives all ones when it is right.
        fold(pseudo_header_sum(src, dst, self.buffer.as_ref()) + sum_words(self.buffer.as_ref()))
            == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: Icmpv6Type) {
        set_u8(self.buffer.as_mut(), field::TYPE, value.into());
    }

    /// Sets the message code.
    pub fn set_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::CODE, value);
    }

    /// Sets the checksum field as given.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Everything after the header, writable.
    pub fn body_mut(&mut self) -> &mut [u8] {
        tail_mut(self.buffer.as_mut(), field::BODY)
    }

    /// Computes and writes the checksum for a message from `src` to `dst`. Call it last, once the
    /// whole message is written.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let message = self.buffer.as_ref();
        let sum = fold(pseudo_header_sum(src, dst, message) + sum_words(message));
        self.set_checksum(!sum);
    }
}

/// The sum of the pseudo-header for an ICMPv6 `message` from `src` to `dst`.
fn pseudo_header_sum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u64 {
    // A message cannot be longer than an IPv6 payload length allows outside jumbograms, which
    // neighbor discovery never uses; a longer buffer still sums its length as 64 bits.
    let len = message.len() as u64;
    sum_words(&src.octets())
        + sum_words(&dst.octets())
        + (len >> 48)
        + ((len >> 32) & 0xffff)
        + ((len >> 16) & 0xffff)
        + (len & 0xffff)
        + u64::from(u8::from(IpProtocol::Icmpv6))
}

/// The sum of `data` as big-endian 16-bit words, an odd last byte padded with zero.
fn sum_words(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut sum: u64 = chunks
        .by_ref()
        .map(|pair| match pair {
            [hi, lo] => u64::from(u16::from_be_bytes([*hi, *lo])),
            _ => 0,
        })
        .sum();
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// Folds a sum into 16 bits with end-around carry.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().expect("literal")
    }

    /// An echo request from fe80::1 to fe80::2, id 0x1234, seq 1, payload "ab"; the checksum was
    /// worked out with a separate implementation of RFC 1071's algorithm.
    const ECHO: [u8; 10] = [0x80, 0x00, 0x0f, 0x1f, 0x12, 0x34, 0x00, 0x01, b'a', b'b'];

    #[test]
    fn verifies_a_known_checksum() {
        let packet = Icmpv6Packet::new_checked(&ECHO[..]).expect("long enough");
        assert_eq!(packet.msg_type(), Icmpv6Type::Unknown(128));
        assert!(packet.verify_checksum(&addr("fe80::1"), &addr("fe80::2")));
    }

    #[test]
    fn computes_the_known_checksum() {
        let mut buf = ECHO;
        buf[2] = 0;
        buf[3] = 0;
        let mut packet = Icmpv6Packet::new_checked(&mut buf[..]).expect("long enough");
        packet.fill_checksum(&addr("fe80::1"), &addr("fe80::2"));
        assert_eq!(packet.checksum(), 0x0f1f);
    }

    #[test]
    fn the_checksum_covers_addresses_and_every_byte() {
        let packet = Icmpv6Packet::new_checked(&ECHO[..]).expect("long enough");
        assert!(!packet.verify_checksum(&addr("fe80::3"), &addr("fe80::2")));
        assert!(!packet.verify_checksum(&addr("fe80::1"), &addr("fe80::3")));
        for at in 0..ECHO.len() {
            let mut flipped = ECHO;
            flipped[at] ^= 0x01;
            let packet = Icmpv6Packet::new_checked(&flipped[..]).expect("long enough");
            assert!(
                !packet.verify_checksum(&addr("fe80::1"), &addr("fe80::2")),
                "flipped byte {at}"
            );
        }
    }

    #[test]
    fn an_odd_length_message_is_padded_with_zero() {
        let mut buf = vec![0x80, 0, 0, 0, 0xff];
        let mut packet = Icmpv6Packet::new_checked(&mut buf).expect("long enough");
        packet.fill_checksum(&addr("::"), &addr("::"));
        assert!(packet.verify_checksum(&addr("::"), &addr("::")));
        // 0x8000 + 0xff00 + length 5 + next header 58 = 0x17f3f, folded 0x7f40, inverted 0x80bf.
        assert_eq!(packet.checksum(), 0x80bf);
    }

    #[test]
    fn short_messages_are_truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Icmpv6Packet::new_checked(&ECHO[..len]).map(|_| ()),
                Err(WireError::Truncated)
            );
        }
    }

    #[test]
    fn types_convert_both_ways() {
        for value in 0..=u8::MAX {
            assert_eq!(u8::from(Icmpv6Type::from(value)), value);
        }
        assert_eq!(Icmpv6Type::from(135), Icmpv6Type::NeighborSolicit);
        assert_eq!(Icmpv6Type::from(136), Icmpv6Type::NeighborAdvert);
    }
}
