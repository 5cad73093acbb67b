//! Speaker heartbeats: raw Ethernet frames that say "this node, on this lease, is alive and holds
//! these addresses", sent to a locally administered multicast group under an EtherType from the
//! IEEE local experimental range, so they need no IP configuration.
//!
//! ```text
//!  Ethernet: dst 03:66:6c:62:00:01, src node MAC, type 0x88b5
//!  payload:  0  magic "FLB1"            4 bytes
//!            4  flags (bit 0: signed)   1
//!            5  name length n (1..=63)  1
//!            6  lease ID                8, big-endian
//!           14  sequence number         8, big-endian
//!           22  held-address digest     8
//!           30  node name               n, UTF-8
//!        30+n   HMAC-SHA256 over bytes 0..30+n, when signed   32
//! ```

use std::net::IpAddr;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::WireError;
use super::bytes::{array_at, set_bytes, set_u8};
use super::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use super::mac::MacAddr;

/// The EtherType of heartbeats: IEEE 802 "Local Experimental Ethertype 1".
pub const ETHERTYPE: u16 = 0x88b5;
/// Where heartbeats go: a locally administered multicast address.
pub const GROUP: MacAddr = MacAddr([0x03, 0x66, 0x6c, 0x62, 0x00, 0x01]);
/// The longest node name a heartbeat carries.
pub const MAX_NAME: usize = 63;
/// The length of the signature of a signed heartbeat.
pub const SIGNATURE_LEN: usize = 32;

const MAGIC: [u8; 4] = *b"FLB1";
const FLAG_SIGNED: u8 = 1;

mod field {
    pub const MAGIC: usize = 0;
    pub const FLAGS: usize = 4;
    pub const NAME_LEN: usize = 5;
    pub const LEASE: usize = 6;
    pub const SEQ: usize = 14;
    pub const DIGEST: usize = 22;
    pub const NAME: usize = 30;
}

/// A checked view of a heartbeat payload: the magic is right, and the buffer holds the name and,
/// when the flags say so, the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeartbeatPacket<T> {
    /// Wraps `buffer` if it is a heartbeat payload; [`WireError::Truncated`] when it is too short
    /// for what its header says, [`WireError::Malformed`] for a wrong magic or name length.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < field::NAME {
            return Err(WireError::Truncated);
        }
        if array_at::<4>(b, field::MAGIC) != MAGIC {
            return Err(WireError::Malformed);
        }
        let n = usize::from(b[field::NAME_LEN]);
        if n == 0 || n > MAX_NAME {
            return Err(WireError::Malformed);
        }
        let p = HeartbeatPacket { buffer };
        if p.buffer.as_ref().len() < p.end() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Whether a signature follows the name.
    pub fn signed(&self) -> bool {
        self.bytes()
            .get(field::FLAGS)
            .is_some_and(|f| f & FLAG_SIGNED != 0)
    }

    fn name_len(&self) -> usize {
        usize::from(self.bytes().get(field::NAME_LEN).copied().unwrap_or(0))
    }

    /// Where the signed part ends (and the signature starts).
    fn signed_end(&self) -> usize {
        field::NAME + self.name_len()
    }

    /// Where the heartbeat ends; anything after is padding.
    fn end(&self) -> usize {
        self.signed_end() + if self.signed() { SIGNATURE_LEN } else { 0 }
    }

    /// The lease ID.
    pub fn lease(&self) -> i64 {
        i64::from_be_bytes(array_at(self.bytes(), field::LEASE))
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        u64::from_be_bytes(array_at(self.bytes(), field::SEQ))
    }

    /// The digest of the held addresses.
    pub fn digest(&self) -> [u8; 8] {
        array_at(self.bytes(), field::DIGEST)
    }

    /// The node name's bytes.
    pub fn name(&self) -> &[u8] {
        self.bytes()
            .get(field::NAME..self.signed_end())
            .unwrap_or_default()
    }

    /// Whether the signature is right for `key` (constant time). False when unsigned.
    pub fn verify(&self, key: &[u8]) -> bool {
        let (Some(body), Some(sig)) = (
            self.bytes().get(..self.signed_end()),
            self.bytes().get(self.signed_end()..self.end()),
        ) else {
            return false;
        };
        self.signed() && mac(key).is_some_and(|m| m.chain_update(body).verify_slice(sig).is_ok())
    }
}

fn mac(key: &[u8]) -> Option<hmac::Hmac<Sha256>> {
    hmac::Hmac::<Sha256>::new_from_slice(key).ok()
}

/// A heartbeat's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatRepr {
    /// The sender's node name (1 to 63 bytes).
    pub node: String,
    /// The sender's etcd lease.
    pub lease: i64,
    /// Increases by one with each heartbeat of a lease.
    pub seq: u64,
    /// [`held_digest`] of the addresses the sender answers for.
    pub digest: [u8; 8],
}

impl HeartbeatRepr {
    /// Reads a checked payload; [`WireError::Malformed`] when the name is not UTF-8.
    pub fn parse<T: AsRef<[u8]>>(p: &HeartbeatPacket<T>) -> Result<Self, WireError> {
        let node = std::str::from_utf8(p.name())
            .map_err(|_| WireError::Malformed)?
            .to_string();
        Ok(HeartbeatRepr {
            node,
            lease: p.lease(),
            seq: p.seq(),
            digest: p.digest(),
        })
    }

    /// The payload length, signed or not.
    pub fn buffer_len(&self, signed: bool) -> usize {
        field::NAME + self.node.len() + if signed { SIGNATURE_LEN } else { 0 }
    }

    /// The payload, signed with `key` when given; `None` when the node name is empty or longer
    /// than [`MAX_NAME`] bytes.
    pub fn payload(&self, key: Option<&[u8]>) -> Option<Vec<u8>> {
        let n = self.node.len();
        if n == 0 || n > MAX_NAME {
            return None;
        }
        let mut b = vec![0u8; self.buffer_len(key.is_some())];
        set_bytes(&mut b, field::MAGIC, &MAGIC);
        set_u8(
            &mut b,
            field::FLAGS,
            if key.is_some() { FLAG_SIGNED } else { 0 },
        );
        set_u8(&mut b, field::NAME_LEN, u8::try_from(n).ok()?);
        set_bytes(&mut b, field::LEASE, &self.lease.to_be_bytes());
        set_bytes(&mut b, field::SEQ, &self.seq.to_be_bytes());
        set_bytes(&mut b, field::DIGEST, &self.digest);
        set_bytes(&mut b, field::NAME, self.node.as_bytes());
        if let Some(key) = key {
            let sig = mac(key)?.chain_update(&b[..field::NAME + n]).finalize();
            set_bytes(&mut b, field::NAME + n, &sig.into_bytes());
        }
        Some(b)
    }

    /// The whole Ethernet frame from `src` to [`GROUP`], padded to 60 bytes.
    pub fn frame(&self, src: MacAddr, key: Option<&[u8]>) -> Option<Vec<u8>> {
        let payload = self.payload(key)?;
        let eth = EthernetRepr {
            src,
            dst: GROUP,
            ethertype: EtherType::from(ETHERTYPE),
        };
        let len = (eth.buffer_len() + payload.len()).max(super::ethernet::MIN_FRAME_LEN);
        let mut buf = vec![0u8; len];
        let mut frame = EthernetFrame::new_checked(&mut buf[..]).ok()?;
        eth.emit(&mut frame);
        set_bytes(&mut buf, eth.buffer_len(), &payload);
        Some(buf)
    }
}

/// Reads a heartbeat out of a whole Ethernet frame: the sender's MAC, the checked content, and
/// whether it carried a valid signature for `key` (always false without a key). Frames of other
/// types, or broken heartbeats, give an error.
pub fn parse_heartbeat_frame(
    frame: &[u8],
    key: Option<&[u8]>,
) -> Result<(MacAddr, HeartbeatRepr, bool), WireError> {
    let eth_view = EthernetFrame::new_checked(frame)?;
    let eth = EthernetRepr::parse(&eth_view)?;
    if u16::from(eth.ethertype) != ETHERTYPE {
        return Err(WireError::Unsupported);
    }
    let p = HeartbeatPacket::new_checked(frame.get(eth.buffer_len()..).unwrap_or_default())?;
    let signed_ok = key.is_some_and(|k| p.verify(k));
    Ok((eth.src, HeartbeatRepr::parse(&p)?, signed_ok))
}

/// A short digest of a set of addresses, whatever their order: the first 8 bytes of SHA-256 over
/// the sorted addresses' text, one per line.
pub fn held_digest<'a>(addresses: impl IntoIterator<Item = &'a IpAddr>) -> [u8; 8] {
    let mut sorted: Vec<&IpAddr> = addresses.into_iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    for a in sorted {
        h.update(a.to_string().as_bytes());
        h.update(b"\n");
    }
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);

    fn hb(node: &str) -> HeartbeatRepr {
        HeartbeatRepr {
            node: node.into(),
            lease: 0x7a11_0000_0000_0042,
            seq: 17,
            digest: [1, 2, 3, 4, 5, 6, 7, 8],
        }
    }

    #[test]
    fn a_frame_reads_back_as_written_signed_or_not() {
        for key in [None, Some(&b"k3y"[..])] {
            let frame = hb("node1").frame(SRC, key).expect("frame");
            assert!(frame.len() >= 60);
            assert_eq!(&frame[..6], &GROUP.0);
            let (src, got, signed) = parse_heartbeat_frame(&frame, key).expect("parse");
            assert_eq!((src, got), (SRC, hb("node1")));
            assert_eq!(signed, key.is_some());
        }
    }

    #[test]
    fn a_wrong_key_or_a_changed_byte_fails_the_signature() {
        let frame = hb("node1").frame(SRC, Some(b"k3y")).expect("frame");
        assert!(
            !parse_heartbeat_frame(&frame, Some(b"other"))
                .expect("parse")
                .2
        );
        let mut forged = frame.clone();
        forged[14 + field::SEQ + 7] ^= 1;
        assert!(
            !parse_heartbeat_frame(&forged, Some(b"k3y"))
                .expect("parse")
                .2
        );
        // Unsigned heartbeats never pass as signed.
        let plain = hb("node1").frame(SRC, None).expect("frame");
        assert!(
            !parse_heartbeat_frame(&plain, Some(b"k3y"))
                .expect("parse")
                .2
        );
    }

    #[test]
    fn broken_heartbeats_are_refused() {
        let payload = hb("node1").payload(None).expect("payload");
        assert_eq!(
            HeartbeatPacket::new_checked(&payload[..10]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            HeartbeatPacket::new_checked(&payload[..32]).err(),
            Some(WireError::Truncated)
        );
        let mut bad = payload.clone();
        bad[0] = b'X';
        assert_eq!(
            HeartbeatPacket::new_checked(&bad[..]).err(),
            Some(WireError::Malformed)
        );
        let mut bad = payload.clone();
        bad[field::NAME_LEN] = 0;
        assert_eq!(
            HeartbeatPacket::new_checked(&bad[..]).err(),
            Some(WireError::Malformed)
        );
        let mut bad = payload.clone();
        bad[field::NAME] = 0xff;
        let p = HeartbeatPacket::new_checked(&bad[..]).expect("checked");
        assert_eq!(HeartbeatRepr::parse(&p).err(), Some(WireError::Malformed));
        // A signed flag without the signature's bytes.
        let mut bad = payload;
        bad[field::FLAGS] = FLAG_SIGNED;
        assert_eq!(
            HeartbeatPacket::new_checked(&bad[..]).err(),
            Some(WireError::Truncated)
        );
        assert!(hb("").payload(None).is_none());
        assert!(hb(&"n".repeat(64)).payload(None).is_none());
    }

    #[test]
    fn the_digest_ignores_order_and_sees_every_address() {
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "fd00::1".parse().expect("ip");
        assert_eq!(held_digest([&a, &b]), held_digest([&b, &a]));
        assert_ne!(held_digest([&a]), held_digest([&a, &b]));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_heartbeat_frame(&bytes, Some(b"k"));
            let _ = HeartbeatPacket::new_checked(&bytes[..]).map(|p| (p.verify(b"k"), HeartbeatRepr::parse(&p)));
        }

        #[test]
        fn every_heartbeat_round_trips(node in "[a-z0-9.-]{1,63}", lease: i64, seq: u64, digest: [u8; 8], signed: bool) {
            let h = HeartbeatRepr { node, lease, seq, digest };
            let key = signed.then_some(&b"secret"[..]);
            let frame = h.frame(SRC, key).expect("frame");
            let (_, got, ok) = parse_heartbeat_frame(&frame, key).expect("parse");
            prop_assert_eq!(got, h);
            prop_assert_eq!(ok, signed);
        }
    }
}
