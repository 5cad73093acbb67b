//! Addresses as numbers, and address ranges as sorted sets of intervals.
//!
//! Every address is a `(Family, u128)` pair, so IPv4 and IPv6 share one arithmetic and a /64 costs
//! the same as a /24: no code here ever expands a range into a list of addresses. Counts are
//! `u128` and saturate at `u128::MAX` (only `::/0`, which has 2^128 addresses, reaches it).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// An IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Family {
    /// IPv4.
    #[serde(rename = "IPv4")]
    V4,
    /// IPv6.
    #[serde(rename = "IPv6")]
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of an address.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Number of bits in an address of this family.
    pub fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The Kubernetes spelling, as in `spec.ipFamilies`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The number of an address within its family.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address with number `n` in `family`. IPv4 numbers are truncated to 32 bits.
pub fn from_u128(family: Family, n: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// True for IPv4 addresses ending in .0 or .255, which some old clients mishandle
/// (`avoidBuggyIPs`). Never true for IPv6.
pub fn is_buggy(family: Family, n: u128) -> bool {
    family == Family::V4 && matches!(n & 0xff, 0 | 0xff)
}

/// An inclusive interval of address numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// First address number.
    pub start: u128,
    /// Last address number (inclusive).
    pub end: u128,
}

impl Interval {
    /// Number of addresses, saturating at `u128::MAX`.
    pub fn count(&self) -> u128 {
        (self.end - self.start).saturating_add(1)
    }

    /// Number of addresses ending in .0 or .255 (meaningful for IPv4 only).
    pub fn buggy_count(&self) -> u128 {
        // Addresses with last byte b in [start, end]: count of n ≡ b (mod 256).
        let count = |b: u128| -> u128 {
            let upto = |x: u128| -> u128 {
                // how many n in [0, x] with n % 256 == b
                if x < b { 0 } else { (x - b) / 256 + 1 }
            };
            upto(self.end)
                - if self.start == 0 {
                    0
                } else {
                    upto(self.start - 1)
                }
        };
        count(0) + count(255)
    }

    /// Whether the two intervals share an address.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// A sorted set of disjoint, non-adjacent intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntervalSet {
    ranges: Vec<Interval>,
}

impl IntervalSet {
    /// Builds a set from intervals in any order, merging overlapping and adjacent ones.
    pub fn from_intervals(mut intervals: Vec<Interval>) -> Self {
        intervals.sort_unstable();
        let mut ranges: Vec<Interval> = Vec::with_capacity(intervals.len());
        for iv in intervals {
            match ranges.last_mut() {
                Some(last) if iv.start <= last.end.saturating_add(1) => {
                    last.end = last.end.max(iv.end);
                }
                _ => ranges.push(iv),
            }
        }
        IntervalSet { ranges }
    }

    /// The intervals, lowest first.
    pub fn intervals(&self) -> &[Interval] {
        &self.ranges
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `n` is in the set (binary search).
    pub fn contains(&self, n: u128) -> bool {
        let i = self.ranges.partition_point(|iv| iv.end < n);
        self.ranges.get(i).is_some_and(|iv| iv.start <= n)
    }

    /// Number of addresses, saturating; with `avoid_buggy`, .0 and .255 are not counted.
    pub fn count(&self, family: Family, avoid_buggy: bool) -> u128 {
        self.ranges.iter().fold(0u128, |acc, iv| {
            let n = if avoid_buggy && family == Family::V4 {
                iv.count() - iv.buggy_count()
            } else {
                iv.count()
            };
            acc.saturating_add(n)
        })
    }
}

/// One entry of a pool's `spec.addresses`: a CIDR or an `a-b` range, in one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrRange {
    /// The family of both ends.
    pub family: Family,
    /// The addresses covered.
    pub interval: Interval,
}

/// Why an address range could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The text is neither `a/len` nor `a-b`.
    #[error(
        "invalid address range {0:?}: expected a CIDR such as 192.168.10.0/24 or a range such as 192.168.10.10-192.168.10.20"
    )]
    Syntax(String),
    /// An address in the text does not parse.
    #[error("invalid address {0:?}")]
    Address(String),
    /// The prefix length is not a number or exceeds the family's bits.
    #[error("invalid prefix length in {text:?}: must be 0 to {max}")]
    Prefix {
        /// The whole CIDR.
        text: String,
        /// Largest allowed prefix length.
        max: u32,
    },
    /// A bare address without a prefix length.
    #[error("{0:?} is a single address: write it as {0}/{1}")]
    Bare(String, u32),
    /// The range's start is after its end.
    #[error("invalid address range {0:?}: start is after end")]
    Reversed(String),
    /// The range's ends are of different families.
    #[error("invalid address range {0:?}: mixes IPv4 and IPv6")]
    MixedFamilies(String),
}

/// What was read, and whether the CIDR had host bits set (`10.0.0.5/24` means `10.0.0.0/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedRange {
    /// The range.
    pub range: AddrRange,
    /// True when a CIDR's address had bits set past its prefix, which are ignored.
    pub host_bits_set: bool,
}

/// Parses `10.0.0.0/24`, `10.0.0.1-10.0.0.9`, `10.0.0.1 - 10.0.0.9` or the IPv6 equivalents.
pub fn parse_range(text: &str) -> Result<ParsedRange, RangeError> {
    let t = text.trim();
    if let Some((addr, len)) = t.split_once('/') {
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| RangeError::Address(addr.trim().to_string()))?;
        let family = Family::of(ip);
        let max = family.bits();
        let len: u32 = match len.trim().parse() {
            Ok(n) if n <= max => n,
            _ => {
                return Err(RangeError::Prefix {
                    text: t.to_string(),
                    max,
                });
            }
        };
        let n = to_u128(ip);
        let host_bits = max - len;
        let mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let start = n & !mask;
        Ok(ParsedRange {
            range: AddrRange {
                family,
                interval: Interval {
                    start,
                    end: start | mask,
                },
            },
            host_bits_set: n != start,
        })
    } else if let Some((a, b)) = t.split_once('-') {
        let parse = |s: &str| -> Result<IpAddr, RangeError> {
            s.trim()
                .parse()
                .map_err(|_| RangeError::Address(s.trim().to_string()))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if Family::of(a) != Family::of(b) {
            return Err(RangeError::MixedFamilies(t.to_string()));
        }
        let (start, end) = (to_u128(a), to_u128(b));
        if start > end {
            return Err(RangeError::Reversed(t.to_string()));
        }
        Ok(ParsedRange {
            range: AddrRange {
                family: Family::of(a),
                interval: Interval { start, end },
            },
            host_bits_set: false,
        })
    } else if let Ok(ip) = t.parse::<IpAddr>() {
        Err(RangeError::Bare(t.to_string(), Family::of(ip).bits()))
    } else {
        Err(RangeError::Syntax(t.to_string()))
    }
}

impl fmt::Display for AddrRange {
    /// A CIDR when the range is exactly one, `a-b` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Interval { start, end } = self.interval;
        let span = end - start;
        let first = from_u128(self.family, start);
        if span.checked_add(1).is_none_or(|n| n.is_power_of_two()) && start & span == 0 {
            let host_bits = if span == u128::MAX {
                128
            } else {
                (span + 1).trailing_zeros()
            };
            write!(f, "{first}/{}", self.family.bits() - host_bits)
        } else {
            write!(f, "{first}-{}", from_u128(self.family, end))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> AddrRange {
        parse_range(text).expect("valid range").range
    }

    #[test]
    fn parses_cidrs_ranges_and_spaces() {
        let r = range("192.168.1.0/24");
        assert_eq!(r.family, Family::V4);
        assert_eq!(r.interval.count(), 256);
        assert_eq!(range("10.0.0.1 - 10.0.0.10").interval.count(), 10);
        assert_eq!(range("10.0.0.7/32").interval.count(), 1);
        assert_eq!(range("fd00::/64").interval.count(), 1u128 << 64);
        assert_eq!(range("fd00::1-fd00::ff").interval.count(), 255);
        assert_eq!(range("::/0").interval.count(), u128::MAX);
        assert_eq!(range("0.0.0.0/0").interval.count(), 1u128 << 32);
    }

    #[test]
    fn rejects_malformed_ranges() {
        assert!(matches!(
            parse_range("10.0.0.0/33"),
            Err(RangeError::Prefix { max: 32, .. })
        ));
        assert!(matches!(
            parse_range("fd00::/129"),
            Err(RangeError::Prefix { max: 128, .. })
        ));
        assert!(matches!(
            parse_range("10.0.0.300/24"),
            Err(RangeError::Address(_))
        ));
        assert!(matches!(
            parse_range("10.0.0.9-10.0.0.1"),
            Err(RangeError::Reversed(_))
        ));
        assert!(matches!(
            parse_range("10.0.0.1-fd00::1"),
            Err(RangeError::MixedFamilies(_))
        ));
        assert!(matches!(
            parse_range("10.0.0.1"),
            Err(RangeError::Bare(_, 32))
        ));
        assert!(matches!(parse_range("lots"), Err(RangeError::Syntax(_))));
        assert!(matches!(
            parse_range("10.0.0.0/x"),
            Err(RangeError::Prefix { .. })
        ));
    }

    #[test]
    fn notices_host_bits() {
        let p = parse_range("10.0.0.5/24").expect("valid");
        assert!(p.host_bits_set);
        assert_eq!(p.range.to_string(), "10.0.0.0/24");
    }

    #[test]
    fn displays_cidr_when_exact_and_range_otherwise() {
        assert_eq!(range("10.0.0.0/25").to_string(), "10.0.0.0/25");
        assert_eq!(range("10.0.0.0-10.0.0.127").to_string(), "10.0.0.0/25");
        assert_eq!(range("10.0.0.1-10.0.0.9").to_string(), "10.0.0.1-10.0.0.9");
        assert_eq!(range("::/0").to_string(), "::/0");
        assert_eq!(range("fd00::5/128").to_string(), "fd00::5/128");
    }

    #[test]
    fn interval_set_merges_and_counts() {
        let set = IntervalSet::from_intervals(vec![
            Interval { start: 10, end: 20 },
            Interval { start: 0, end: 5 },
            Interval { start: 6, end: 8 },
            Interval { start: 15, end: 30 },
        ]);
        assert_eq!(
            set.intervals(),
            &[
                Interval { start: 0, end: 8 },
                Interval { start: 10, end: 30 }
            ]
        );
        assert!(set.contains(0) && set.contains(8) && set.contains(25));
        assert!(!set.contains(9) && !set.contains(31));
        assert_eq!(set.count(Family::V6, false), 30);
    }

    #[test]
    fn buggy_addresses_are_counted_without_expanding() {
        let r = range("10.0.0.0/24");
        assert_eq!(r.interval.buggy_count(), 2);
        assert_eq!(range("10.0.0.0/16").interval.buggy_count(), 512);
        assert_eq!(range("10.0.0.1-10.0.0.254").interval.buggy_count(), 0);
        assert_eq!(range("10.0.0.255-10.0.1.0").interval.buggy_count(), 2);
        let set = IntervalSet::from_intervals(vec![r.interval]);
        assert_eq!(set.count(Family::V4, true), 254);
        assert!(is_buggy(Family::V4, r.interval.start));
        assert!(!is_buggy(Family::V6, r.interval.start));
    }
}
