//! Ethernet II frames.
//!
//! ```text
//!  0                   6                  12        14
//!  +-------------------+-------------------+---------+------------ ... --+
//!  |  destination MAC  |    source MAC     |EtherType|      payload      |
//!  +-------------------+-------------------+---------+------------ ... --+
//! ```
//!
//! The frame check sequence is not part of the buffer (the kernel strips it). An 802.1Q tag shows
//! as EtherType `Unknown(0x8100)`: VLAN-tagged frames are not looked into.

use super::WireError;
use super::bytes::{array_at, set_bytes, set_u16, tail, tail_mut, u16_at};
use super::mac::MacAddr;

mod field {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// The length of an Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// The shortest frame on the wire without its check sequence; senders pad up to it.
pub const MIN_FRAME_LEN: usize = 60;

/// The protocol carried in an Ethernet frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// IPv4, `0x0800`.
    Ipv4,
    /// ARP, `0x0806`.
    Arp,
    /// IPv6, `0x86dd`.
    Ipv6,
    /// Any other value (including `0x8100`, an 802.1Q tag).
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(other) => other,
        }
    }
}

/// A checked view of an Ethernet II frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` if it holds at least an Ethernet header; [`WireError::Truncated`] if not.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The destination address.
    pub fn dst(&self) -> MacAddr {
        MacAddr(array_at(self.buffer.as_ref(), field::DST))
    }

    /// The source address.
    pub fn src(&self) -> MacAddr {
        MacAddr(array_at(self.buffer.as_ref(), field::SRC))
    }

    /// The EtherType.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(u16_at(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the header (padding included: the inner header says how much counts).
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), field::PAYLOAD)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst(&mut self, mac: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::DST, &mac.0);
    }

    /// Sets the source address.
    pub fn set_src(&mut self, mac: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::SRC, &mac.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.into());
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        tail_mut(self.buffer.as_mut(), field::PAYLOAD)
    }
}

/// The parsed header of an Ethernet II frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// The source address.
    pub src: MacAddr,
    /// The destination address.
    pub dst: MacAddr,
    /// The protocol of the payload.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self, WireError> {
        Ok(EthernetRepr {
            src: frame.src(),
            dst: frame.dst(),
            ethertype: frame.ethertype(),
        })
    }

    /// The length of the header this writes (the payload is the inner protocol's).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst(self.dst);
        frame.set_src(self.src);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of an ARP request as Linux sends it: broadcast from 52:54:00:12:34:56.
    const ARP_HEADER: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source
        0x08, 0x06, // EtherType ARP
        0x00, 0x01, // payload: hardware type
    ];

    #[test]
    fn reads_the_header_of_a_real_frame() {
        let frame = EthernetFrame::new_checked(&ARP_HEADER[..]).expect("long enough");
        assert_eq!(frame.dst(), MacAddr::BROADCAST);
        assert_eq!(frame.src(), MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(frame.ethertype(), EtherType::Arp);
        assert_eq!(frame.payload(), &[0x00, 0x01]);
    }

    #[test]
    fn emit_then_parse_gives_the_same_header() {
        let repr = EthernetRepr {
            src: MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]),
            dst: MacAddr([0x33, 0x33, 0x00, 0x00, 0x00, 0x01]),
            ethertype: EtherType::Ipv6,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut frame = EthernetFrame::new_checked(&mut buf).expect("sized by buffer_len");
        repr.emit(&mut frame);
        let frame = EthernetFrame::new_checked(&buf).expect("sized by buffer_len");
        assert_eq!(EthernetRepr::parse(&frame), Ok(repr));
        assert!(frame.payload().is_empty());
    }

    #[test]
    fn a_vlan_tag_is_an_unknown_ethertype() {
        let mut tagged = ARP_HEADER;
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        let frame = EthernetFrame::new_checked(&tagged[..]).expect("long enough");
        assert_eq!(frame.ethertype(), EtherType::Unknown(0x8100));
    }

    #[test]
    fn ethertypes_convert_both_ways() {
        for value in [0x0800, 0x0806, 0x86dd, 0x8100, 0, 0xffff] {
            assert_eq!(u16::from(EtherType::from(value)), value);
        }
        assert_eq!(EtherType::from(0x86dd), EtherType::Ipv6);
    }

    #[test]
    fn frames_shorter_than_a_header_are_truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&ARP_HEADER[..len]).map(|_| ()),
                Err(WireError::Truncated)
            );
        }
        assert!(EthernetFrame::new_checked(&ARP_HEADER[..HEADER_LEN]).is_ok());
    }
}
