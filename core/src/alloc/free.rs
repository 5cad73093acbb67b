//! Free addresses of one pool and family, as a map of disjoint intervals `start → end`.
//!
//! "Lowest free address", "take this address" and "give this address back" each cost O(log n)
//! in the number of free intervals, never in the number of addresses: a /64 behaves like a /24.

use std::collections::BTreeMap;

use crate::net::{Family, IntervalSet};

/// Free space of one pool in one family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeSpace {
    family: Option<Family>,
    avoid_buggy: bool,
    free: BTreeMap<u128, u128>,
}

impl FreeSpace {
    /// All of `set` free.
    pub fn new(family: Family, set: &IntervalSet, avoid_buggy: bool) -> Self {
        FreeSpace {
            family: Some(family),
            avoid_buggy: avoid_buggy && family == Family::V4,
            free: set
                .intervals()
                .iter()
                .map(|iv| (iv.start, iv.end))
                .collect(),
        }
    }

    /// The first address of `[start, end]` that may be handed out, if any.
    fn first_usable(&self, start: u128, end: u128) -> Option<u128> {
        if !self.avoid_buggy {
            return Some(start);
        }
        // At most two steps: x.255 → x+1.0 → x+1.1.
        (start..=end.min(start.saturating_add(2))).find(|n| !crate::net::is_buggy(Family::V4, *n))
    }

    /// The lowest free address, taken. Intervals that hold only addresses ending in .0 or .255
    /// (under `avoidBuggyIPs`) are dropped on the way, so they are never scanned twice.
    pub fn take_lowest(&mut self) -> Option<u128> {
        loop {
            let (&start, &end) = self.free.first_key_value()?;
            match self.first_usable(start, end) {
                Some(n) => {
                    self.remove(n);
                    return Some(n);
                }
                None => {
                    self.free.remove(&start);
                }
            }
        }
    }

    /// The lowest free address without taking it (same skipping as `take_lowest`, but it does
    /// not drop anything, so it may look at more than one interval).
    pub fn peek_lowest(&self) -> Option<u128> {
        self.free
            .iter()
            .find_map(|(&start, &end)| self.first_usable(start, end))
    }

    /// Whether `n` is free.
    pub fn is_free(&self, n: u128) -> bool {
        self.free
            .range(..=n)
            .next_back()
            .is_some_and(|(_, &end)| end >= n)
    }

    /// Takes `n`; false when it was not free.
    pub fn remove(&mut self, n: u128) -> bool {
        let Some((&start, &end)) = self.free.range(..=n).next_back() else {
            return false;
        };
        if end < n {
            return false;
        }
        self.free.remove(&start);
        if start < n {
            self.free.insert(start, n - 1);
        }
        if n < end {
            self.free.insert(n + 1, end);
        }
        true
    }

    /// Gives `n` back, merging it with its neighbours. The caller only returns addresses that
    /// belong to the pool and were taken.
    pub fn insert(&mut self, n: u128) {
        if self.is_free(n) {
            return;
        }
        let mut start = n;
        let mut end = n;
        if let Some((&s, &e)) = self.free.range(..n).next_back() {
            if e.checked_add(1) == Some(n) {
                start = s;
            }
        }
        if let Some(next) = n.checked_add(1) {
            if let Some(e) = self.free.remove(&next) {
                end = e;
            }
        }
        self.free.insert(start, end);
    }

    /// Number of free intervals (for tests and benchmarks).
    pub fn fragments(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::parse_range;

    fn space(text: &str, avoid_buggy: bool) -> FreeSpace {
        let r = parse_range(text).expect("range").range;
        FreeSpace::new(
            r.family,
            &IntervalSet::from_intervals(vec![r.interval]),
            avoid_buggy,
        )
    }

    #[test]
    fn takes_lowest_first_and_gives_back_merged() {
        let mut f = space("0.0.0.0-0.0.0.9", false);
        assert_eq!(f.take_lowest(), Some(0));
        assert_eq!(f.take_lowest(), Some(1));
        assert!(f.remove(5));
        assert!(!f.remove(5));
        assert_eq!(f.fragments(), 2);
        f.insert(5);
        f.insert(0);
        assert_eq!(f.fragments(), 2, "0 and 2..=9 stay apart while 1 is taken");
        f.insert(1);
        assert_eq!(f.fragments(), 1);
        assert_eq!(f.peek_lowest(), Some(0));
    }

    #[test]
    fn avoid_buggy_skips_dot_zero_and_dot_255() {
        let mut f = space("10.0.0.255-10.0.1.1", true);
        let ten_0_1_1 = u128::from(u32::from(std::net::Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(f.take_lowest(), Some(ten_0_1_1));
        assert_eq!(f.take_lowest(), None);
        let mut g = space("10.0.0.255/32", true);
        assert_eq!(g.take_lowest(), None);
        assert_eq!(
            g.fragments(),
            0,
            "an all-buggy interval is dropped once seen"
        );
    }

    #[test]
    fn a_slash_64_costs_what_a_slash_24_costs() {
        let mut f = space("fd00::/64", false);
        for i in 0..1000u128 {
            assert_eq!(f.take_lowest().map(|n| n & 0xffff), Some(i));
        }
        assert_eq!(f.fragments(), 1);
    }
}
