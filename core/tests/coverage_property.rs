//! Property: the indexed "no L2Advertisement covers this pool" check agrees with trying every
//! advertisement on every pool (`L2Advertisement::covers`).

use std::collections::BTreeSet;

use ferrolb_core::config;
use ferrolb_core::diag::Code;
use proptest::prelude::*;

/// A pool's labels: each of the keys `a`, `b` absent or set to `x` or `y`.
fn labels() -> impl Strategy<Value = Vec<Option<&'static str>>> {
    prop::collection::vec(prop::option::of(prop::sample::select(vec!["x", "y"])), 2)
}

/// One selector, written in YAML flow style.
fn selector() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec!["a", "b"]);
    let value = prop::sample::select(vec!["x", "y"]);
    prop_oneof![
        (key.clone(), value.clone()).prop_map(|(k, v)| format!("{{matchLabels: {{{k}: {v}}}}}")),
        (key.clone(), value.clone(), value.clone()).prop_map(|(k, v, w)| format!(
            "{{matchLabels: {{{k}: {v}}}, matchExpressions: [{{key: b, operator: In, values: [{w}]}}]}}"
        )),
        (key.clone(), value.clone()).prop_map(|(k, v)| format!(
            "{{matchExpressions: [{{key: {k}, operator: In, values: [{v}]}}]}}"
        )),
        (key.clone(), value.clone()).prop_map(|(k, v)| format!(
            "{{matchExpressions: [{{key: {k}, operator: NotIn, values: [{v}]}}]}}"
        )),
        key.clone().prop_map(|k| format!("{{matchExpressions: [{{key: {k}, operator: Exists}}]}}")),
        key.prop_map(|k| format!("{{matchExpressions: [{{key: {k}, operator: DoesNotExist}}]}}")),
        Just("{}".to_string()),
    ]
}

/// An advertisement: pool names (indices) and selectors; both empty covers every pool, which
/// the strategy makes rare so that the other paths are exercised.
fn advertisement() -> impl Strategy<Value = (Vec<usize>, Vec<String>)> {
    prop_oneof![
        1 => Just((Vec::new(), Vec::new())),
        9 => (
            prop::collection::vec(0usize..8, 0..3),
            prop::collection::vec(selector(), 0..3),
        )
            .prop_filter("not the cover-all advertisement", |(p, s)| !p.is_empty() || !s.is_empty()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn uncovered_pools_agree_with_trying_every_advertisement(
        pools in prop::collection::vec(labels(), 1..8),
        ads in prop::collection::vec(advertisement(), 0..5),
    ) {
        let mut text = String::new();
        for (i, labels) in pools.iter().enumerate() {
            text.push_str(&format!(
                "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: p{i}\n  labels: {{"
            ));
            let set: Vec<String> = ["a", "b"]
                .iter()
                .zip(labels)
                .filter_map(|(k, v)| v.map(|v| format!("{k}: {v}")))
                .collect();
            text.push_str(&set.join(", "));
            text.push_str(&format!("}}\nspec:\n  addresses: [10.0.{i}.0/24]\n"));
        }
        for (i, (names, selectors)) in ads.iter().enumerate() {
            let names: BTreeSet<String> = names.iter().map(|n| format!("p{n}")).collect();
            let names: Vec<String> = names.into_iter().collect();
            let selectors: BTreeSet<&String> = selectors.iter().collect();
            let selectors: Vec<&str> = selectors.into_iter().map(String::as_str).collect();
            text.push_str(&format!(
                "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: ad{i}\nspec:\n  ipAddressPools: [{}]\n  ipAddressPoolSelectors: [{}]\n",
                names.join(", "),
                selectors.join(", "),
            ));
        }
        let report = config::load([("p.yaml", text.as_bytes())]);
        let config = report.config.clone().expect("no errors");
        let warned: BTreeSet<String> = report
            .warnings()
            .filter(|d| d.code == Code::UncoveredPool)
            .filter_map(|d| d.name.clone())
            .collect();
        let expected: BTreeSet<String> = config
            .pools
            .iter()
            .filter(|p| !config.advertisements.iter().any(|a| a.covers(p)))
            .map(|p| p.name.clone())
            .collect();
        prop_assert_eq!(warned, expected);
    }
}
