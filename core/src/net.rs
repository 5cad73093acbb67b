//! Addresses as numbers, and address ranges as sorted sets of intervals.
//!
//! Every address is a `(Family, u128)` pair, so IPv4 and IPv6 share one arithmetic and a /64 costs
//! the same as a /24: no code here ever expands a range into a list of addresses. Counts are a
//! [`Count`], exact from 0 to 2^128 (all of IPv6, one more than `u128` holds).
//!
//! Pools never hold IPv4 addresses written as IPv6: a range that touches the IPv4-mapped block
//! `::ffff:0:0/96` or the deprecated IPv4-compatible block `::/96` (which also holds `::` and
//! `::1`) is refused, so an IPv6 Service can never receive an IPv4 address in disguise.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

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

/// A number of addresses, exact from 0 to 2^128: `::/0` holds 2^128 addresses, one more than
/// `u128` can count. Sums stop at 2^128, which no set of addresses of one family exceeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Count {
    /// Fewer than 2^128 addresses.
    Below(u128),
    /// Exactly 2^128 addresses: every IPv6 address.
    All,
}

/// 2^128 in decimal.
const TWO_TO_128: &str = "340282366920938463463374607431768211456";

impl Count {
    /// No address.
    pub const ZERO: Count = Count::Below(0);

    /// Whether the count is zero.
    pub fn is_zero(self) -> bool {
        self == Count::ZERO
    }

    /// The sum, stopping at 2^128.
    pub fn saturating_add(self, other: Count) -> Count {
        match (self, other) {
            (Count::Below(a), Count::Below(b)) => a.checked_add(b).map_or(Count::All, Count::Below),
            _ => Count::All,
        }
    }

    /// The count less `n`, stopping at zero.
    pub fn saturating_sub(self, n: u128) -> Count {
        match self {
            Count::Below(a) => Count::Below(a.saturating_sub(n)),
            Count::All if n == 0 => Count::All,
            // 2^128 - n = (2^128 - 1) - (n - 1).
            Count::All => Count::Below(u128::MAX - (n - 1)),
        }
    }

    /// The count as a float, for metrics.
    pub fn as_f64(self) -> f64 {
        match self {
            Count::Below(n) => n as f64,
            Count::All => 2f64.powi(128),
        }
    }
}

impl Default for Count {
    fn default() -> Self {
        Count::ZERO
    }
}

impl From<u128> for Count {
    fn from(n: u128) -> Self {
        Count::Below(n)
    }
}

impl fmt::Display for Count {
    /// In decimal, 2^128 included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Below(n) => write!(f, "{n}"),
            Count::All => f.write_str(TWO_TO_128),
        }
    }
}

/// A count that is not a decimal number from 0 to 2^128.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid address count {0:?}: expected a decimal number from 0 to 2^128")]
pub struct CountError(String);

impl FromStr for Count {
    type Err = CountError;

    /// Reads what [`Display`](fmt::Display) writes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == TWO_TO_128 {
            return Ok(Count::All);
        }
        s.parse::<u128>()
            .map(Count::Below)
            .map_err(|_| CountError(s.to_string()))
    }
}

/// The IPv4-mapped block `::ffff:0:0/96` (RFC 4291 §2.5.5.2).
const V4_MAPPED: Interval = Interval {
    start: 0xffff_0000_0000,
    end: 0xffff_ffff_ffff,
};
/// The deprecated IPv4-compatible block `::/96` (RFC 4291 §2.5.5.1), with `::` and `::1`.
const V4_COMPATIBLE: Interval = Interval {
    start: 0,
    end: 0xffff_ffff,
};

/// An inclusive interval of address numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// First address number.
    pub start: u128,
    /// Last address number (inclusive).
    pub end: u128,
}

impl Interval {
    /// Number of addresses, exactly.
    pub fn count(&self) -> Count {
        (self.end - self.start)
            .checked_add(1)
            .map_or(Count::All, Count::Below)
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

    /// Number of addresses; with `avoid_buggy`, IPv4 addresses ending in .0 and .255 are not
    /// counted.
    pub fn count(&self, family: Family, avoid_buggy: bool) -> Count {
        self.ranges.iter().fold(Count::ZERO, |acc, iv| {
            let n = if avoid_buggy && family == Family::V4 {
                iv.count().saturating_sub(iv.buggy_count())
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
    /// An IPv6 range reaching into `::ffff:0:0/96` or `::/96`: IPv4 addresses written as IPv6.
    #[error(
        "invalid address range {text:?}: it includes {block}, IPv4 addresses written as IPv6; write IPv4 addresses as IPv4 and keep IPv6 ranges out of that block"
    )]
    Ipv4InIpv6 {
        /// The whole range.
        text: String,
        /// The block it reaches into, named.
        block: &'static str,
    },
}

/// Refuses an IPv6 range that reaches into a block of IPv4 addresses written as IPv6.
fn check_v6_block(range: AddrRange, text: &str) -> Result<(), RangeError> {
    if range.family != Family::V6 {
        return Ok(());
    }
    let block = if range.interval.overlaps(&V4_MAPPED) {
        "IPv4-mapped addresses (::ffff:0:0/96)"
    } else if range.interval.overlaps(&V4_COMPATIBLE) {
        "IPv4-compatible addresses (::/96, deprecated, with :: and ::1)"
    } else {
        return Ok(());
    };
    Err(RangeError::Ipv4InIpv6 {
        text: text.to_string(),
        block,
    })
}

/// What was read, and whether the CIDR had host bits set (`10.0.0.5/24` means `10.0.0.0/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedRange {
    /// The range.
    pub range: AddrRange,
    /// True when a CIDR's address had bits set past its prefix, which are ignored.
    pub host_bits_set: bool,
}

/// Parses `10.0.0.0/24`, `10.0.0.1-10.0.0.9`, `10.0.0.1 - 10.0.0.9` or the IPv6 equivalents;
/// IPv6 ranges that reach into the IPv4-mapped or IPv4-compatible blocks are refused.
pub fn parse_range(text: &str) -> Result<ParsedRange, RangeError> {
    let parsed = parse_range_syntax(text)?;
    check_v6_block(parsed.range, text.trim())?;
    Ok(parsed)
}

fn parse_range_syntax(text: &str) -> Result<ParsedRange, RangeError> {
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
        assert_eq!(r.interval.count(), Count::Below(256));
        assert_eq!(range("10.0.0.1 - 10.0.0.10").interval.count(), 10.into());
        assert_eq!(range("10.0.0.7/32").interval.count(), 1.into());
        assert_eq!(range("fd00::/64").interval.count(), (1u128 << 64).into());
        assert_eq!(range("fd00::1-fd00::ff").interval.count(), 255.into());
        assert_eq!(range("0.0.0.0/0").interval.count(), (1u128 << 32).into());
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
    fn all_of_ipv6_counts_exactly_2_to_the_128() {
        let all = Interval {
            start: 0,
            end: u128::MAX,
        };
        assert_eq!(all.count(), Count::All);
        assert_eq!(
            all.count().to_string(),
            "340282366920938463463374607431768211456"
        );
        assert_eq!(
            "340282366920938463463374607431768211456".parse::<Count>(),
            Ok(Count::All)
        );
        // One address fewer is the largest u128, and both read back.
        let most = Interval {
            start: 1,
            end: u128::MAX,
        };
        assert_eq!(most.count(), Count::Below(u128::MAX));
        assert_eq!(most.count().to_string().parse::<Count>(), Ok(most.count()));
        assert!(Count::Below(u128::MAX) < Count::All);
        assert_eq!(Count::Below(u128::MAX).saturating_add(1.into()), Count::All);
        assert_eq!(Count::All.saturating_sub(1), Count::Below(u128::MAX));
        assert_eq!(Count::All.saturating_sub(0), Count::All);
        assert!(
            "340282366920938463463374607431768211457"
                .parse::<Count>()
                .is_err()
        );
        assert!("-1".parse::<Count>().is_err());
        assert_eq!(Count::All.as_f64(), 2f64.powi(128));
    }

    #[test]
    fn ipv4_addresses_written_as_ipv6_are_refused() {
        for text in [
            "::ffff:10.0.0.1/128",
            "::ffff:10.0.0.0/120",
            "::ffff:a00:1-::ffff:a00:9",
            "::ffff:0:0/96",
            "::10.0.0.1/128",
            "::1/128",
            "::/0",
            "::/64",
            "::fffe:ffff:ffff-::1:0:0:0",
        ] {
            assert!(
                matches!(parse_range(text), Err(RangeError::Ipv4InIpv6 { .. })),
                "{text}: {:?}",
                parse_range(text)
            );
        }
        assert_eq!(
            parse_range("::ffff:10.0.0.1/128").map_err(|e| e.to_string()),
            Err("invalid address range \"::ffff:10.0.0.1/128\": it includes IPv4-mapped addresses (::ffff:0:0/96), IPv4 addresses written as IPv6; write IPv4 addresses as IPv4 and keep IPv6 ranges out of that block".to_string())
        );
        // Just outside both blocks is fine, and so is ordinary IPv6.
        for text in [
            "::1:0:0/96",
            "::1:0:0:0/128",
            "::fffe:ffff:ffff/128",
            "fd00::/8",
            "2001:db8::/32",
        ] {
            assert!(parse_range(text).is_ok(), "{text}");
        }
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
        let all = AddrRange {
            family: Family::V6,
            interval: Interval {
                start: 0,
                end: u128::MAX,
            },
        };
        assert_eq!(all.to_string(), "::/0");
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
        assert_eq!(set.count(Family::V6, false), 30.into());
    }

    #[test]
    fn buggy_addresses_are_counted_without_expanding() {
        let r = range("10.0.0.0/24");
        assert_eq!(r.interval.buggy_count(), 2);
        assert_eq!(range("10.0.0.0/16").interval.buggy_count(), 512);
        assert_eq!(range("10.0.0.1-10.0.0.254").interval.buggy_count(), 0);
        assert_eq!(range("10.0.0.255-10.0.1.0").interval.buggy_count(), 2);
        let set = IntervalSet::from_intervals(vec![r.interval]);
        assert_eq!(set.count(Family::V4, true), 254.into());
        assert!(is_buggy(Family::V4, r.interval.start));
        assert!(!is_buggy(Family::V6, r.interval.start));
    }
}
