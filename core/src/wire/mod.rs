//! Packet formats: the frames the speaker reads and writes on a layer-2 segment.
//!
//! ```text
//!  bytes ──parse_frame──▶ EthernetFrame ─┬─ 0x0806 ▶ ArpPacket ──▶ Frame::Arp
//!                                        ├─ 0x86dd ▶ Ipv6Packet ─▶ Icmpv6Packet ─▶ NdiscRepr
//!                                        │                           ──▶ Frame::NeighborSolicit
//!                                        │                           ──▶ Frame::NeighborAdvert
//!                                        └─ anything else ──────────▶ Frame::Other
//!
//!  arp_reply, arp_request, gratuitous_arp_*, neighbor_advert, unsolicited_neighbor_advert ──▶ Vec<u8>
//! ```
//!
//! Each protocol has two halves, after smoltcp's `wire` module:
//! - a **checked byte view** (`EthernetFrame`, `ArpPacket`, `Ipv6Packet`, `Icmpv6Packet`) over any
//!   `T: AsRef<[u8]>`, made only through `new_checked`, with accessors for every field (and
//!   setters when `T: AsMut<[u8]>`);
//! - a **parsed representation** (`EthernetRepr`, `ArpRepr`, `Ipv6Repr`, `NdiscRepr`) with
//!   `parse(&view)`, `buffer_len()` and `emit(&self, &mut view)`, so that `parse(emit(x)) == x`.
//!
//! Protocol numbers are enums with an `Unknown` variant, so an unexpected value is data, not a
//! panic. [`parse_frame`] is what the speaker calls on every frame from the wire: it never panics
//! and never indexes past a buffer, whatever the bytes; it verifies the ICMPv6 checksum and the
//! RFC 4861 validity rules for Neighbor Solicitations and Advertisements before it hands them
//! on. The builders in [`build`] make whole Ethernet frames for the replies and announcements.
//!
//! Parts:
//! - [`MacAddr`]: an Ethernet address.
//! - [`ethernet`]: Ethernet II frames (802.1Q tags are not looked into).
//! - [`arp`]: ARP for Ethernet and IPv4 only.
//! - [`ipv6`]: the IPv6 fixed header.
//! - [`icmpv6`]: the ICMPv6 header and its checksum over the IPv6 pseudo-header.
//! - [`ndisc`]: Neighbor Solicitation and Advertisement, with their link-layer address options.
//! - [`frame`]: [`parse_frame`] and the received-message checks.
//! - [`build`]: the frames the speaker sends.
//! - [`heartbeat`]: the speakers' liveness frames (EtherType 0x88b5), optionally signed.

pub mod arp;
pub mod build;
mod bytes;
pub mod ethernet;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod frame;
pub mod heartbeat;
pub mod icmpv6;
pub mod ipv6;
mod mac;
pub mod ndisc;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use build::{
    arp_reply, arp_request, gratuitous_arp_reply, gratuitous_arp_request, neighbor_advert,
    unsolicited_neighbor_advert,
};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr};
pub use frame::{Frame, parse_frame};
pub use icmpv6::{Icmpv6Packet, Icmpv6Type};
pub use ipv6::{IpProtocol, Ipv6Packet, Ipv6Repr};
pub use mac::{MacAddr, ParseMacAddrError};
pub use ndisc::{
    ALL_NODES, NdiscOption, NdiscOptions, NdiscRepr, NeighborFlags, is_solicited_node_multicast,
    multicast_mac, solicited_node_multicast,
};

/// Why a buffer could not be read as the packet it was meant to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before a header, a field or a length the packet gives.
    #[error("packet truncated")]
    Truncated,
    /// A field holds a value the format forbids (a zero option length, an option running past the
    /// end, a wrong IP version, a hop limit other than 255 on neighbor discovery, ...).
    #[error("malformed packet")]
    Malformed,
    /// The ICMPv6 checksum does not match the message.
    #[error("bad checksum")]
    Checksum,
    /// A well-formed packet of a kind this module does not read: ARP for another hardware or
    /// protocol type, or an ICMPv6 message other than NS/NA given to [`NdiscRepr::parse`].
    #[error("unsupported packet type")]
    Unsupported,
}
