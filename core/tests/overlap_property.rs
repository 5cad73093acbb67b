//! Property: the sort-and-sweep overlap check agrees with a brute-force comparison of every pair.

use std::collections::{BTreeSet, HashMap};

use ferrolb_core::config;
use ferrolb_core::diag::Code;
use proptest::prelude::*;

/// A range in a small space, so that overlaps are common: (is_v6, start, length).
fn range() -> impl Strategy<Value = (bool, u32, u32)> {
    (any::<bool>(), 0u32..64, 1u32..12)
}

fn render(v6: bool, start: u32, len: u32) -> String {
    let end = start + len - 1;
    if v6 {
        format!("fd00::{start:x}-fd00::{end:x}")
    } else {
        format!("10.0.0.{start}-10.0.0.{end}")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn overlap_detection_agrees_with_brute_force(
        pools in prop::collection::vec(prop::collection::vec(range(), 1..4), 1..5)
    ) {
        let mut text = String::new();
        let mut line_of_range = HashMap::new();
        let mut line = 0u32;
        let mut all = Vec::new();
        for (i, ranges) in pools.iter().enumerate() {
            text.push_str(&format!(
                "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: p{i}\nspec:\n  addresses:\n"
            ));
            line += 7;
            for &(v6, start, len) in ranges {
                line += 1;
                text.push_str(&format!("    - {}\n", render(v6, start, len)));
                line_of_range.insert(line, all.len());
                all.push((v6, start, start + len - 1));
            }
        }
        let report = config::load([("p.yaml", text.as_bytes())]);
        let flagged: BTreeSet<usize> = report
            .diagnostics
            .iter()
            .filter(|d| d.code == Code::Overlap)
            .map(|d| line_of_range[&d.line])
            .collect();
        let overlaps = |a: (bool, u32, u32), b: (bool, u32, u32)| a.0 == b.0 && a.1 <= b.2 && b.1 <= a.2;
        let mut pairs = Vec::new();
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                if overlaps(all[i], all[j]) {
                    pairs.push((i, j));
                }
            }
        }
        // Each flagged range really overlaps another one.
        for &f in &flagged {
            prop_assert!(pairs.iter().any(|&(i, j)| i == f || j == f), "range {f} flagged without overlap");
        }
        // Every overlapping pair has at least one of its ranges flagged.
        for &(i, j) in &pairs {
            prop_assert!(flagged.contains(&i) || flagged.contains(&j), "pair {i},{j} missed");
        }
        prop_assert_eq!(report.config.is_some(), pairs.is_empty());
    }
}
