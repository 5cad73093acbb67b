//! What the fault suite's client saw, and the questions the scenarios ask of it: pure functions
//! over the monitor's events (see [`crate::monitor::Event`]), so they are tested without a lab.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::monitor::Event;

/// Everything the monitor reported so far.
#[derive(Debug, Default)]
pub struct Observations {
    /// Send time of each round.
    rounds: BTreeMap<u32, f64>,
    /// Per round and address: every MAC that answered, with the time of its first answer.
    replies: BTreeMap<u32, BTreeMap<Ipv4Addr, BTreeMap<String, f64>>>,
    /// Unasked announcements: (time, address, MAC).
    garps: Vec<(f64, Ipv4Addr, String)>,
    /// HTTP requests per address: (start time, success).
    http: BTreeMap<Ipv4Addr, Vec<(f64, bool)>>,
}

/// How one address fared over a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Availability {
    /// The longest time no request was answered, in milliseconds (0 when every round was).
    pub longest_ms: f64,
    /// All unanswered time added up, in milliseconds.
    pub total_ms: f64,
    /// Send times of the rounds that two or more MACs answered.
    pub doubles: Vec<f64>,
}

/// Replies later than this after their round's request count as unanswered: a client's ARP
/// gives up about then.
const LATE_S: f64 = 1.0;

impl Observations {
    /// Adds one event.
    pub fn push(&mut self, event: Event) {
        match event {
            Event::Round { r, t } => {
                self.rounds.insert(r, t);
            }
            Event::Reply { r, ip, mac, t } => {
                self.replies
                    .entry(r)
                    .or_default()
                    .entry(ip)
                    .or_default()
                    .entry(mac)
                    .or_insert(t);
            }
            Event::Garp { ip, mac, t } => self.garps.push((t, ip, mac)),
            Event::Http { ip, ok, t } => self.http.entry(ip).or_default().push((t, ok)),
        }
    }

    /// The MACs that answered `ip` in round `r`, in time (not later than [`LATE_S`]).
    fn answers(&self, r: u32, sent: f64, ip: Ipv4Addr) -> impl Iterator<Item = &str> {
        self.replies
            .get(&r)
            .and_then(|m| m.get(&ip))
            .into_iter()
            .flatten()
            .filter(move |(_, t)| **t - sent <= LATE_S)
            .map(|(mac, _)| mac.as_str())
    }

    /// Rounds sent within `[from, to]`, in order.
    fn rounds_in(&self, from: f64, to: f64) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.rounds
            .iter()
            .map(|(r, t)| (*r, *t))
            .filter(move |(_, t)| *t >= from && *t <= to)
    }

    /// How `ip` fared over the rounds sent within `[from, to]`, rounds being `interval_s` apart.
    /// A run of unanswered rounds between two answered ones counts from the earlier answered
    /// round to the later one, less one interval; a run at the window's end counts to its last
    /// round.
    pub fn availability(&self, ip: Ipv4Addr, from: f64, to: f64, interval_s: f64) -> Availability {
        let mut a = Availability::default();
        let mut last_ok: Option<f64> = None;
        let mut last_seen = None;
        let mut first_seen = None;
        let mut missed = 0;
        for (r, t) in self.rounds_in(from, to) {
            first_seen.get_or_insert(t);
            last_seen = Some(t);
            let macs: BTreeSet<&str> = self.answers(r, t, ip).collect();
            if macs.len() > 1 {
                a.doubles.push(t);
            }
            if macs.is_empty() {
                missed += 1;
                continue;
            }
            if missed > 0 {
                let since = last_ok.or(first_seen.map(|f| f - interval_s)).unwrap_or(t);
                let gap = ((t - since - interval_s) * 1000.0).max(0.0);
                a.longest_ms = a.longest_ms.max(gap);
                a.total_ms += gap;
            }
            missed = 0;
            last_ok = Some(t);
        }
        if let Some(end) = last_seen
            && missed > 0
        {
            let since = last_ok
                .or(first_seen.map(|f| f - interval_s))
                .unwrap_or(end);
            let gap = ((end - since) * 1000.0).max(0.0);
            a.longest_ms = a.longest_ms.max(gap);
            a.total_ms += gap;
        }
        a
    }

    /// The MACs that answered `ip` in the newest round sent at or before `before` (empty when
    /// nobody did).
    pub fn current_macs(&self, ip: Ipv4Addr, before: f64) -> BTreeSet<String> {
        self.rounds
            .iter()
            .rev()
            .find(|(_, t)| **t <= before)
            .map(|(r, t)| self.answers(*r, *t, ip).map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The time of the first reply to `ip` after `after` from a MAC `pred` accepts.
    pub fn first_reply(
        &self,
        ip: Ipv4Addr,
        after: f64,
        pred: impl Fn(&str) -> bool,
    ) -> Option<f64> {
        self.replies
            .values()
            .filter_map(|m| m.get(&ip))
            .flatten()
            .filter(|(mac, t)| **t > after && pred(mac))
            .map(|(_, t)| *t)
            .min_by(f64::total_cmp)
    }

    /// The time of the last reply to `ip` from `mac`.
    pub fn last_reply(&self, ip: Ipv4Addr, mac: &str) -> Option<f64> {
        self.replies
            .values()
            .filter_map(|m| m.get(&ip))
            .filter_map(|m| m.get(mac))
            .copied()
            .max_by(f64::total_cmp)
    }

    /// The time of the last reply to `ip` from `mac` within `[from, to]`.
    pub fn last_reply_within(&self, ip: Ipv4Addr, mac: &str, from: f64, to: f64) -> Option<f64> {
        self.replies
            .values()
            .filter_map(|m| m.get(&ip))
            .filter_map(|m| m.get(mac))
            .copied()
            .filter(|t| *t >= from && *t <= to)
            .max_by(f64::total_cmp)
    }

    /// The time of the first gratuitous announcement of `ip` by `mac` after `after`.
    pub fn first_garp(&self, ip: Ipv4Addr, mac: &str, after: f64) -> Option<f64> {
        self.garps
            .iter()
            .filter(|(t, i, m)| *i == ip && m == mac && *t > after)
            .map(|(t, _, _)| *t)
            .min_by(f64::total_cmp)
    }

    /// HTTP over `[from, to]` for `ip`: the longest time between the starts of two successful
    /// requests (less one `interval_s`), in milliseconds, and how many requests failed.
    pub fn http(&self, ip: Ipv4Addr, from: f64, to: f64, interval_s: f64) -> (f64, usize) {
        let Some(requests) = self.http.get(&ip) else {
            return (0.0, 0);
        };
        let mut longest: f64 = 0.0;
        let mut failed = 0;
        let mut last_ok: Option<f64> = None;
        let mut last = None;
        for (t, ok) in requests.iter().filter(|(t, _)| *t >= from && *t <= to) {
            last = Some(*t);
            if !ok {
                failed += 1;
                continue;
            }
            if let Some(prev) = last_ok {
                longest = longest.max((t - prev - interval_s) * 1000.0);
            }
            last_ok = Some(*t);
        }
        if let (Some(end), Some(prev)) = (last, last_ok) {
            longest = longest.max((end - prev) * 1000.0);
        }
        (longest.max(0.0), failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 100);
    const A: &str = "02:00:00:00:00:0a";
    const B: &str = "02:00:00:00:00:0b";

    /// Rounds 1..=n, 50 ms apart from t=100; `who(r)` answers round r after 1 ms.
    fn seen(n: u32, who: impl Fn(u32) -> Vec<&'static str>) -> Observations {
        let mut o = Observations::default();
        for r in 1..=n {
            let t = 100.0 + f64::from(r) * 0.05;
            o.push(Event::Round { r, t });
            for mac in who(r) {
                o.push(Event::Reply {
                    r,
                    ip: IP,
                    mac: mac.into(),
                    t: t + 0.001,
                });
            }
        }
        o
    }

    #[test]
    fn every_round_answered_is_no_outage() {
        let o = seen(40, |_| vec![A]);
        let a = o.availability(IP, 0.0, 1e9, 0.05);
        assert!(a.longest_ms < 1e-6 && a.total_ms < 1e-6, "{a:?}");
        assert!(a.doubles.is_empty());
        assert_eq!(o.current_macs(IP, 1e9), BTreeSet::from([A.to_string()]));
    }

    #[test]
    fn a_run_of_unanswered_rounds_is_its_length_and_doubles_are_found() {
        // Rounds 11..=20 unanswered (500 ms), round 30 answered by both.
        let o = seen(40, |r| match r {
            11..=20 => vec![],
            30 => vec![A, B],
            r if r > 20 => vec![B],
            _ => vec![A],
        });
        let a = o.availability(IP, 0.0, 1e9, 0.05);
        assert!((a.longest_ms - 500.0).abs() < 1.0, "{a:?}");
        assert!((a.total_ms - 500.0).abs() < 1.0, "{a:?}");
        assert_eq!(a.doubles, [100.0 + 30.0 * 0.05]);
        assert_eq!(o.current_macs(IP, 1e9), BTreeSet::from([B.to_string()]));
        let first_b = o.first_reply(IP, 0.0, |m| m == B).expect("B");
        assert!((first_b - (100.0 + 21.0 * 0.05 + 0.001)).abs() < 1e-9);
        let last_a = o.last_reply(IP, A).expect("A");
        assert!((last_a - (100.0 + 30.0 * 0.05 + 0.001)).abs() < 1e-9);
        let last_a_early = o.last_reply_within(IP, A, 0.0, 100.8).expect("A");
        assert!((last_a_early - (100.0 + 10.0 * 0.05 + 0.001)).abs() < 1e-9);
        assert_eq!(o.last_reply_within(IP, A, 100.6, 101.4), None);
    }

    #[test]
    fn silence_at_the_start_or_the_end_of_a_window_counts() {
        let o = seen(40, |r| if r <= 30 { vec![A] } else { vec![] });
        let a = o.availability(IP, 0.0, 1e9, 0.05);
        assert!((a.longest_ms - 500.0).abs() < 1.0, "{a:?}");
        let o = seen(40, |r| if r > 10 { vec![A] } else { vec![] });
        let a = o.availability(IP, 0.0, 1e9, 0.05);
        assert!((a.longest_ms - 500.0).abs() < 1.0, "{a:?}");
        // Never answered at all: the whole window.
        let o = seen(40, |_| vec![]);
        let a = o.availability(IP, 0.0, 1e9, 0.05);
        assert!((a.longest_ms - 2000.0).abs() < 1.0, "{a:?}");
    }

    #[test]
    fn late_replies_do_not_count() {
        let mut o = seen(3, |_| vec![]);
        o.push(Event::Reply {
            r: 2,
            ip: IP,
            mac: A.into(),
            t: 100.1 + LATE_S + 0.5,
        });
        assert!(o.current_macs(IP, 1e9).is_empty());
    }

    #[test]
    fn http_gaps_and_failures() {
        let mut o = Observations::default();
        for k in 0..20 {
            let t = f64::from(k) * 0.25;
            o.push(Event::Http {
                ip: IP,
                ok: !(5..9).contains(&k),
                t,
            });
        }
        let (longest, failed) = o.http(IP, 0.0, 100.0, 0.25);
        assert_eq!(failed, 4);
        assert!((longest - 1000.0).abs() < 1.0, "{longest}");
    }

    #[test]
    fn gratuitous_announcements_are_found_by_mac_and_time() {
        let mut o = Observations::default();
        o.push(Event::Garp {
            ip: IP,
            mac: B.into(),
            t: 5.0,
        });
        assert_eq!(o.first_garp(IP, B, 4.0), Some(5.0));
        assert_eq!(o.first_garp(IP, B, 5.0), None);
        assert_eq!(o.first_garp(IP, A, 0.0), None);
    }
}
