//! Ethernet (MAC-48) addresses.

use std::fmt;
use std::str::FromStr;

/// An Ethernet address, six bytes in wire order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The six bytes.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether the group bit is set (multicast, broadcast included).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether this is a unicast address (group bit clear).
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(mac: MacAddr) -> Self {
        mac.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A string that is not six two-digit hex bytes separated by colons.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six two-digit hex bytes separated by colons")]
pub struct ParseMacAddrError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacAddrError;

    /// Reads `aa:bb:cc:dd:ee:ff` (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacAddrError(s.to_string());
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(octets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_lowercase_with_colons() {
        let mac = MacAddr([0xAA, 0xbb, 0x0c, 0xdd, 0xee, 0x0f]);
        assert_eq!(mac.to_string(), "aa:bb:0c:dd:ee:0f");
        assert_eq!(MacAddr::BROADCAST.to_string(), "ff:ff:ff:ff:ff:ff");
    }

    #[test]
    fn parses_either_case_and_round_trips() {
        let mac: MacAddr = "52:54:00:AB:cd:EF".parse().expect("valid");
        assert_eq!(mac, MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]));
        assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
    }

    #[test]
    fn rejects_anything_but_six_hex_pairs() {
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "52:54:00:ab:cd:e",
            "52:54:00:ab:cd:eff",
            "52-54-00-ab-cd-ef",
            "52:54:00:ab:cd:eg",
            "+5:54:00:ab:cd:ef",
            "52:54:00:ab:cd:ef:",
            "5254.00ab.cdef",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn multicast_is_the_group_bit() {
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr([0x33, 0x33, 0, 0, 0, 1]).is_multicast());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        let unicast = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert!(!unicast.is_multicast());
        assert!(unicast.is_unicast());
        assert!(!unicast.is_broadcast());
    }
}
