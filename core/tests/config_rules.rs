//! One case per validation rule: a small file, and the diagnostic (rule, severity, line) it must
//! produce. Golden tests pin the exact message texts users see.

use ferrolb_core::config::{self, Report};
use ferrolb_core::diag::{Code, Severity};
use ferrolb_core::net::Family;

const HEAD: &str = "apiVersion: metallb.io/v1beta1\n";

fn load_one(text: &str) -> Report {
    config::load([("pools.yaml", text.as_bytes())])
}

fn pool(name: &str, addresses: &[&str]) -> String {
    let mut s =
        format!("{HEAD}kind: IPAddressPool\nmetadata:\n  name: {name}\nspec:\n  addresses:\n");
    for a in addresses {
        s.push_str(&format!("    - {a}\n"));
    }
    s
}

const L2_ALL: &str =
    "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: all\n";

/// (description, file text, expected rule, severity, line)
fn cases() -> Vec<(&'static str, String, Code, Severity, u32)> {
    use Code::*;
    use Severity::*;
    vec![
        (
            "missing name",
            format!("{HEAD}kind: IPAddressPool\nspec:\n  addresses: [10.0.0.0/24]\n{L2_ALL}"),
            MissingName,
            Error,
            1,
        ),
        (
            "uppercase name",
            pool("Home", &["10.0.0.0/24"]) + L2_ALL,
            BadName,
            Error,
            4,
        ),
        (
            "name with a newline and an escape sequence",
            pool("\"a\\nb\\e[31m\"", &["10.0.0.0/24"]) + L2_ALL,
            BadName,
            Error,
            4,
        ),
        (
            "advertisement name too long",
            pool("a", &["10.0.0.0/24"])
                + &L2_ALL.replace("name: all", &format!("name: {}", "a".repeat(254))),
            BadName,
            Error,
            12,
        ),
        (
            "missing addresses",
            format!("{HEAD}kind: IPAddressPool\nmetadata:\n  name: a\nspec: {{}}\n{L2_ALL}"),
            NoAddresses,
            Error,
            1,
        ),
        (
            "empty addresses",
            format!(
                "{HEAD}kind: IPAddressPool\nmetadata:\n  name: a\nspec:\n  addresses: []\n{L2_ALL}"
            ),
            NoAddresses,
            Error,
            6,
        ),
        (
            "unparsable address",
            pool("a", &["10.0.0.256/24"]) + L2_ALL,
            BadAddress,
            Error,
            7,
        ),
        (
            "prefix too long",
            pool("a", &["10.0.0.0/33"]) + L2_ALL,
            BadAddress,
            Error,
            7,
        ),
        (
            "ipv6 prefix too long",
            pool("a", &["fd00::/129"]) + L2_ALL,
            BadAddress,
            Error,
            7,
        ),
        (
            "range start after end",
            pool("a", &["10.0.0.9-10.0.0.1"]) + L2_ALL,
            BadAddress,
            Error,
            7,
        ),
        (
            "range mixing families",
            pool("a", &["10.0.0.1-fd00::1"]) + L2_ALL,
            BadAddress,
            Error,
            7,
        ),
        (
            "bare address",
            pool("a", &["10.0.0.1"]) + L2_ALL,
            BadAddress,
            Error,
            7,
        ),
        (
            "host bits set",
            pool("a", &["10.0.0.5/24"]) + L2_ALL,
            HostBits,
            Warning,
            7,
        ),
        (
            "duplicate pool names in one file",
            pool("a", &["10.0.0.0/24"]) + "---\n" + &pool("a", &["10.0.1.0/24"]) + L2_ALL,
            DuplicateName,
            Error,
            12,
        ),
        (
            "overlap within one pool",
            pool("a", &["10.0.0.0/24", "10.0.0.128/25"]) + L2_ALL,
            Overlap,
            Error,
            8,
        ),
        (
            "overlap across pools",
            pool("a", &["10.0.0.0/24"]) + "---\n" + &pool("b", &["10.0.0.200-10.0.1.5"]) + L2_ALL,
            Overlap,
            Error,
            15,
        ),
        (
            "ipv6 overlap",
            pool("a", &["fd00::/64"]) + "---\n" + &pool("b", &["fd00::1:0/112"]) + L2_ALL,
            Overlap,
            Error,
            15,
        ),
        (
            "duplicate namespaces",
            pool("a", &["10.0.0.0/24"]) + "  serviceAllocation:\n    namespaces: [x, x]\n" + L2_ALL,
            DuplicateNamespace,
            Error,
            9,
        ),
        (
            "duplicate namespace selectors",
            pool("a", &["10.0.0.0/24"])
                + "  serviceAllocation:\n    namespaceSelectors:\n      - matchLabels: {t: a}\n      - matchLabels: {t: a}\n"
                + L2_ALL,
            DuplicateSelector,
            Error,
            11,
        ),
        (
            "duplicate match expressions",
            pool("a", &["10.0.0.0/24"])
                + "  serviceAllocation:\n    serviceSelectors:\n      - matchExpressions:\n          - {key: k, operator: Exists}\n          - {key: k, operator: Exists}\n"
                + L2_ALL,
            DuplicateSelector,
            Error,
            12,
        ),
        (
            "In without values",
            pool("a", &["10.0.0.0/24"])
                + "  serviceAllocation:\n    serviceSelectors:\n      - matchExpressions:\n          - {key: k, operator: In}\n"
                + L2_ALL,
            BadSelector,
            Error,
            11,
        ),
        (
            "Exists with values",
            pool("a", &["10.0.0.0/24"])
                + "  serviceAllocation:\n    serviceSelectors:\n      - matchExpressions:\n          - {key: k, operator: Exists, values: [v]}\n"
                + L2_ALL,
            BadSelector,
            Error,
            11,
        ),
        (
            "unknown operator",
            pool("a", &["10.0.0.0/24"])
                + "  serviceAllocation:\n    serviceSelectors:\n      - matchExpressions:\n          - {key: k, operator: Near, values: [v]}\n"
                + L2_ALL,
            BadSelector,
            Error,
            11,
        ),
        (
            "malformed label key",
            pool("a", &["10.0.0.0/24"])
                + "  serviceAllocation:\n    serviceSelectors:\n      - matchLabels: {\"-bad\": x}\n"
                + L2_ALL,
            BadSelector,
            Error,
            10,
        ),
        (
            "negative priority",
            pool("a", &["10.0.0.0/24"]) + "  serviceAllocation:\n    priority: -1\n" + L2_ALL,
            BadSelector,
            Error,
            9,
        ),
        (
            "duplicate ipAddressPools entries",
            pool("a", &["10.0.0.0/24"]) + L2_ALL + "spec:\n  ipAddressPools: [a, a]\n",
            DuplicatePoolRef,
            Error,
            14,
        ),
        (
            "addresses written as a string",
            format!(
                "{HEAD}kind: IPAddressPool\nmetadata:\n  name: a\nspec:\n  addresses: 10.0.0.0/24\n{L2_ALL}"
            ),
            Type,
            Error,
            6,
        ),
        (
            "autoAssign that is not a boolean",
            pool("a", &["10.0.0.0/24"]) + "  autoAssign: maybe\n" + L2_ALL,
            Type,
            Error,
            8,
        ),
        (
            "yaml syntax error",
            pool("a", &["[10.0.0.0/24"]),
            Syntax,
            Error,
            8,
        ),
        (
            "advertisement naming a missing pool",
            pool("a", &["10.0.0.0/24"]) + L2_ALL + "spec:\n  ipAddressPools: [a, ghost]\n",
            UnknownPool,
            Warning,
            14,
        ),
        (
            "pool no advertisement covers",
            pool("a", &["10.0.0.0/24"]),
            UncoveredPool,
            Warning,
            4,
        ),
        (
            "configmap is skipped",
            pool("a", &["10.0.0.0/24"])
                + L2_ALL
                + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
            Skipped,
            Warning,
            14,
        ),
        (
            "bgp kinds are skipped",
            pool("a", &["10.0.0.0/24"])
                + L2_ALL
                + "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: x\n",
            Skipped,
            Warning,
            14,
        ),
        (
            "wrong apiVersion",
            "apiVersion: metallb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: a\n"
                .to_string(),
            ApiVersion,
            Error,
            1,
        ),
        (
            "unknown spec field",
            pool("a", &["10.0.0.0/24"]) + "  autoassign: false\n" + L2_ALL,
            UnknownField,
            Warning,
            8,
        ),
        (
            "bad interface name",
            pool("a", &["10.0.0.0/24"]) + L2_ALL + "spec:\n  interfaces: [\"eth 0\"]\n",
            BadInterface,
            Error,
            14,
        ),
        (
            "binary garbage",
            "\u{0}\u{1}\u{2}garbage".to_string(),
            Syntax,
            Error,
            1,
        ),
    ]
}

#[test]
fn every_rule_reports_its_diagnostic_on_the_right_line() {
    for (what, text, code, severity, line) in cases() {
        let report = load_one(&text);
        let found: Vec<_> = report
            .diagnostics
            .iter()
            .map(|d| (d.code, d.severity, d.line))
            .collect();
        assert!(
            found.contains(&(code, severity, line)),
            "{what}: expected {code:?} {severity:?} at line {line}, got {:#?}",
            report.diagnostics
        );
        assert_eq!(
            report.config.is_some(),
            severity == Severity::Warning,
            "{what}: a config comes back exactly when there is no error"
        );
    }
}

#[test]
fn the_same_files_without_the_fault_are_clean() {
    let report = load_one(&(pool("a", &["10.0.0.0/24", "fd00::/64"]) + L2_ALL));
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
    let config = report.config.expect("valid");
    let a = config.pool("a").expect("pool a");
    assert_eq!(a.size(Family::V4), 256.into());
    assert_eq!(a.size(Family::V6), (1u128 << 64).into());
    assert!(a.auto_assign && !a.avoid_buggy_ips);
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = pool("a", &["10.0.0.300/24", "10.0.0.0/33", "nonsense"]) + L2_ALL;
    let report = load_one(&text);
    let lines: Vec<u32> = report.errors().map(|d| d.line).collect();
    assert_eq!(lines, [7, 8, 9]);
}

#[test]
fn duplicate_pool_names_across_files_are_an_error() {
    let a = pool("same", &["10.0.0.0/24"]) + L2_ALL;
    let b = pool("same", &["10.0.1.0/24"]);
    let report = config::load([("a.yaml", a.as_bytes()), ("b.yaml", b.as_bytes())]);
    let d = report.errors().next().expect("an error");
    assert_eq!(
        (d.code, d.file.as_str(), d.line),
        (Code::DuplicateName, "b.yaml", 4)
    );
}

#[test]
fn oversized_files_are_refused() {
    let big = vec![b'#'; config::MAX_FILE_BYTES + 1];
    let report = config::load([("big.yaml", big.as_slice())]);
    assert_eq!(report.errors().next().map(|d| d.code), Some(Code::File));
}

#[test]
fn invalid_utf8_is_refused_with_its_line() {
    let bytes = b"a: 1\nb: \xff\xfe\n";
    let report = config::load([("bin.yaml", bytes.as_slice())]);
    let d = report.errors().next().expect("error");
    assert_eq!((d.code, d.line), (Code::File, 2));
}

#[test]
fn alias_bomb_is_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let report = load_one(&text);
    assert_eq!(report.errors().next().map(|d| d.code), Some(Code::Syntax));
}

#[test]
fn advertisement_selectors_and_defaults_decide_coverage() {
    let text = format!(
        "{}  labels: {{}}\n---\n{}{}",
        pool("plain", &["10.0.0.0/24"]).replace(
            "metadata:\n  name: plain\n",
            "metadata:\n  name: plain\n  labels:\n    tier: web\n"
        ),
        pool("other", &["10.0.1.0/24"]),
        "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: web\nspec:\n  ipAddressPoolSelectors:\n    - matchLabels: {tier: web}\n"
    );
    let report = load_one(&text);
    let uncovered: Vec<_> = report
        .warnings()
        .filter(|d| d.code == Code::UncoveredPool)
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(uncovered, [Some("other".to_string())]);
}

#[test]
fn golden_messages() {
    let home = pool("home", &["10.0.0.0/24"]) + L2_ALL;
    let lab = format!(
        "{HEAD}kind: IPAddressPool\nmetadata:\n  name: lab\nspec:\n  addresses:\n    - 10.0.1.0/24\n    - 10.0.0.128/25\n  autoAssign: maybe\n"
    );
    let report = config::load([
        ("pools/home.yaml", home.as_bytes()),
        ("pools/lab.yaml", lab.as_bytes()),
    ]);
    let text: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            r#"pools/lab.yaml:8: error: IPAddressPool "lab": address range 10.0.0.128/25 overlaps 10.0.0.0/24 of IPAddressPool "home" (pools/home.yaml:7)"#,
            r#"pools/lab.yaml:9: error: IPAddressPool "lab": autoAssign must be true or false, found "maybe""#,
        ]
    );
    let bad = pool("x", &["10.0.0.1", "10.0.0.0/33", "10.0.0.9 - 10.0.0.1"]);
    let report = load_one(&(bad + L2_ALL));
    let text: Vec<String> = report.errors().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            r#"pools.yaml:7: error: IPAddressPool "x": "10.0.0.1" is a single address: write it as 10.0.0.1/32"#,
            r#"pools.yaml:8: error: IPAddressPool "x": invalid prefix length in "10.0.0.0/33": must be 0 to 32"#,
            r#"pools.yaml:9: error: IPAddressPool "x": invalid address range "10.0.0.9 - 10.0.0.1": start is after end"#,
        ]
    );
}

#[test]
fn invalid_names_are_refused_shortened_and_escaped() {
    // YAML's "\e" is the escape character, which starts terminal control sequences.
    let long = format!("\"x\\e]0;{}\"", "a".repeat(100_000));
    let text = pool(&long, &["10.0.0.0/24"]) + L2_ALL;
    let report = load_one(&text);
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].code, Code::BadName);
    let shown = errors[0].to_string();
    assert!(
        shown.len() < 1_000,
        "the message is shortened: {} bytes",
        shown.len()
    );
    assert!(
        !shown.contains('\u{1b}'),
        "the escape character is escaped: {shown}"
    );
    assert!(
        shown.starts_with(r#"pools.yaml:4: error: IPAddressPool "x\u{1b}]0;aaa"#)
            && shown.contains(r#": metadata.name "x\u{1b}]0;aaa"#)
            && shown.ends_with(
                "is not a valid name: use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
            ),
        "{shown}"
    );
    // The pool is not kept under its invalid name: the configuration is refused as a whole.
    assert!(report.config.is_none());
}

#[test]
fn kubectl_list_output_is_read_item_by_item() {
    // What `kubectl get ipaddresspools,l2advertisements -n metallb-system -o yaml` prints.
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: metallb.io/v1beta1\n  kind: IPAddressPool\n  metadata:\n    name: a\n  spec:\n    addresses: [10.0.0.0/24]\n- apiVersion: metallb.io/v1beta1\n  kind: L2Advertisement\n  metadata:\n    name: all\n";
    let report = load_one(text);
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
    let config = report.config.expect("valid");
    assert_eq!(config.pools.len(), 1);
    assert_eq!(config.advertisements.len(), 1);
}

/// A pool `a` whose serviceSelectors hold `selectors` (YAML flow items), with an advertisement
/// whose nodeSelectors and ipAddressPoolSelectors hold `ad_selectors`.
fn with_selectors(selectors: &[&str], ad_selectors: &[&str]) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("\n      - {i}"))
            .collect::<String>()
    };
    let mut text = pool("a", &["10.0.0.0/24"]);
    if !selectors.is_empty() {
        text.push_str(&format!(
            "  serviceAllocation:\n    serviceSelectors:{}\n",
            list(selectors)
        ));
    }
    text.push_str(L2_ALL);
    if !ad_selectors.is_empty() {
        let items = list(ad_selectors).replace("\n      ", "\n    ");
        text.push_str(&format!(
            "spec:\n  nodeSelectors:{items}\n  ipAddressPoolSelectors:{items}\n"
        ));
    }
    text
}

fn duplicate_selector_lines(report: &Report) -> Vec<(u32, String)> {
    report
        .errors()
        .filter(|d| d.code == Code::DuplicateSelector)
        .map(|d| (d.line, d.message.clone()))
        .collect()
}

#[test]
fn metallb_rejects_duplicate_values_inside_one_match_expression() {
    let expr = "{matchExpressions: [{key: app, operator: In, values: [bar, bar]}]}";
    let report = load_one(&with_selectors(&[expr], &[]));
    assert_eq!(
        duplicate_selector_lines(&report),
        [(
            10,
            r#"duplicate value "bar" in a match expression of serviceAllocation.serviceSelectors: key "app""#
                .to_string()
        )]
    );
    assert!(report.config.is_none());
    // In an advertisement's nodeSelectors and ipAddressPoolSelectors too, for NotIn as well.
    let expr = "{matchExpressions: [{key: app, operator: NotIn, values: [x, bar, x]}]}";
    let report = load_one(&with_selectors(&[], &[expr]));
    let fields: Vec<bool> = duplicate_selector_lines(&report)
        .iter()
        .map(|(_, m)| m.contains("nodeSelectors") || m.contains("ipAddressPoolSelectors"))
        .collect();
    assert_eq!(fields, [true, true], "{:#?}", report.diagnostics);
    // Distinct values are fine.
    let expr = "{matchExpressions: [{key: app, operator: In, values: [bar, baz]}]}";
    let report = load_one(&with_selectors(&[expr], &[]));
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
    let report = load_one(&with_selectors(&[], &[expr]));
    assert!(
        report.errors().next().is_none(),
        "{:#?}",
        report.diagnostics
    );
}

#[test]
fn metallb_compares_match_expressions_with_their_values_sorted() {
    // Within one selector: the same expression with its values in another order.
    let expr = "{matchExpressions: [{key: app, operator: In, values: [a, b]}, {key: app, operator: In, values: [b, a]}]}";
    let report = load_one(&with_selectors(&[expr], &[]));
    let found = duplicate_selector_lines(&report);
    assert_eq!(found.len(), 1, "{:#?}", report.diagnostics);
    assert!(
        found[0].1.starts_with(
            r#"duplicate match expression in serviceAllocation.serviceSelectors: key "app""#
        ),
        "{found:?}"
    );
    // Two selectors that differ only in the order of values.
    let report = load_one(&with_selectors(
        &[
            "{matchExpressions: [{key: app, operator: In, values: [a, b]}]}",
            "{matchExpressions: [{key: app, operator: In, values: [b, a]}]}",
        ],
        &[],
    ));
    let found = duplicate_selector_lines(&report);
    assert_eq!(
        found.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [11],
        "{found:?}"
    );
    assert!(
        found[0]
            .1
            .starts_with("duplicate selector in serviceAllocation.serviceSelectors")
    );
    // Another operator or other values make another expression.
    let report = load_one(&with_selectors(
        &[
            "{matchExpressions: [{key: app, operator: In, values: [a, b]}, {key: app, operator: NotIn, values: [b, a]}, {key: app, operator: In, values: [a, c]}]}",
        ],
        &[],
    ));
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
}

#[test]
fn metallb_cannot_parse_a_cidr_with_spaces_so_ferrolb_warns() {
    let report = load_one(
        &(pool(
            "a",
            &[
                "\" 10.0.0.0/24\"",
                "\"10.0.1.0 / 24\"",
                "\" 10.0.2.1 - 10.0.2.9 \"",
            ],
        ) + L2_ALL),
    );
    let warnings: Vec<String> = report
        .warnings()
        .filter(|d| d.code == Code::CidrSpaces)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        [
            r#"pools.yaml:7: warning: IPAddressPool "a": " 10.0.0.0/24" is written with spaces: ferrolb ignores them, but MetalLB cannot parse such a CIDR; write 10.0.0.0/24"#,
            r#"pools.yaml:8: warning: IPAddressPool "a": "10.0.1.0 / 24" is written with spaces: ferrolb ignores them, but MetalLB cannot parse such a CIDR; write 10.0.1.0/24"#,
        ],
        "an a-b range with spaces is fine for MetalLB: {:#?}",
        report.diagnostics
    );
    assert!(!report.is_valid(true), "--strict refuses it");
    // Still accepted, as written without the spaces.
    let config = report.config.expect("valid");
    assert_eq!(
        config.pool("a").expect("a").size(Family::V4),
        (512 + 9).into()
    );
}

fn in_namespace(kind_doc: &str, namespace: &str) -> String {
    kind_doc.replacen(
        "metadata:\n",
        &format!("metadata:\n  namespace: {namespace}\n"),
        1,
    )
}

#[test]
fn metallb_reads_one_namespace_so_mixed_namespaces_warn() {
    let a = in_namespace(&pool("a", &["10.0.0.0/24"]), "metallb-system");
    let b = in_namespace(&pool("b", &["10.0.1.0/24"]), "team-b");
    let l2 = in_namespace(L2_ALL, "metallb-system");
    let files = [
        ("a.yaml", a.as_bytes()),
        ("b.yaml", b.as_bytes()),
        ("l2.yaml", l2.as_bytes()),
    ];
    let report = config::load(files);
    let text: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            r#"b.yaml:4: warning: IPAddressPool "b": metadata.namespace "team-b" differs from "metallb-system" (a.yaml:4): MetalLB reads IPAddressPools and L2Advertisements only from its own namespace and would ignore the others; choose one with --config-namespace"#
        ]
    );
    // Without a flag every object is read.
    assert_eq!(report.config.expect("valid").pools.len(), 2);
    // One namespace, or none named, is quiet.
    let report = config::load([("a.yaml", a.as_bytes()), ("l2.yaml", l2.as_bytes())]);
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
    let plain = pool("c", &["10.0.2.0/24"]);
    let report = config::load([
        ("a.yaml", a.as_bytes()),
        ("c.yaml", plain.as_bytes()),
        ("l2.yaml", l2.as_bytes()),
    ]);
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
}

#[test]
fn with_a_config_namespace_objects_of_other_namespaces_are_ignored_with_a_warning() {
    let a = in_namespace(&pool("a", &["10.0.0.0/24"]), "metallb-system");
    // Same name and an overlapping range: no error, because MetalLB would never read it.
    let other =
        in_namespace(&pool("a", &["10.0.0.0/25"]), "team-b") + &in_namespace(L2_ALL, "team-b");
    let plain = pool("c", &["10.0.2.0/24"]) + L2_ALL.replace("name: all", "name: c").as_str();
    let files = [
        ("a.yaml", a.as_bytes()),
        ("other.yaml", other.as_bytes()),
        ("plain.yaml", plain.as_bytes()),
    ];
    let options = config::Options {
        namespace: Some("metallb-system".to_string()),
    };
    let report = config::load_with(files, &options);
    let found: Vec<(Code, String)> = report
        .diagnostics
        .iter()
        .map(|d| (d.code, d.to_string()))
        .collect();
    assert_eq!(
        found,
        [
            (
                Code::OtherNamespace,
                r#"other.yaml:4: warning: IPAddressPool "a": ignored: metadata.namespace "team-b" is not the configuration namespace "metallb-system" (--config-namespace)"#.to_string()
            ),
            (
                Code::OtherNamespace,
                r#"other.yaml:13: warning: L2Advertisement "all": ignored: metadata.namespace "team-b" is not the configuration namespace "metallb-system" (--config-namespace)"#.to_string()
            ),
        ]
    );
    let config = report.config.expect("valid");
    let pools: Vec<(&str, u32)> = config
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.origin.line))
        .collect();
    // Objects that name no namespace are read: they are applied to whichever namespace.
    assert_eq!(pools, [("a", 5), ("c", 4)]);
    let ads: Vec<&str> = config
        .advertisements
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(ads, ["c"]);
}

fn l2_with(spec: &str) -> String {
    pool("p", &["10.0.0.0/24"])
        + "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: ad\nspec:\n"
        + spec
}

#[test]
fn service_and_preferred_node_selectors_are_read_with_a_note_on_each_difference() {
    let report = load_one(&l2_with(
        "  serviceSelectors:\n    - matchLabels: {app: web}\n  preferredNodeSelectors:\n    - weight: 60\n      preference:\n        matchLabels: {zone: primary}\n    - weight: 40\n      preference: {}\n",
    ));
    // No error or warning: valid under --strict. MetalLB moves an address back to a returning
    // preferred node and allocates shared addresses it will not announce; ferrolb does neither,
    // and says so in a note on the advertisement.
    assert!(report.is_valid(true), "{:#?}", report.diagnostics);
    let notes: Vec<(Code, u32)> = report.notes().map(|d| (d.code, d.line)).collect();
    assert_eq!(
        notes,
        [
            (Code::SharingWithServiceSelectors, 15),
            (Code::PreferenceSticky, 17)
        ],
        "{:#?}",
        report.diagnostics
    );
    assert_eq!(report.diagnostics.len(), 2, "{:#?}", report.diagnostics);
    let config = report.config.expect("valid");
    let ad = &config.advertisements[0];
    assert_eq!(ad.service_selectors[0].to_string(), "app=web");
    let weights: Vec<u32> = ad
        .preferred_node_selectors
        .iter()
        .map(|p| p.weight)
        .collect();
    assert_eq!(weights, [60, 40]);
    let primary = [("zone".to_string(), "primary".to_string())].into();
    assert_eq!(ad.preference_score(&primary), 100);
    assert_eq!(ad.preference_score(&Default::default()), 40);
}

#[test]
fn preferred_node_selectors_are_validated_like_metallb() {
    // (spec, message part, line)
    let cases = [
        (
            "    - weight: 0\n      preference: {}\n",
            "weight must be 1 to 100, found 0",
            15,
        ),
        (
            "    - weight: 101\n      preference: {}\n",
            "weight must be 1 to 100, found 101",
            15,
        ),
        (
            "    - weight: -5\n      preference: {}\n",
            "weight must be 1 to 100, found -5",
            15,
        ),
        ("    - preference: {}\n", "weight is required", 15),
        ("    - weight: 10\n", "preference is required", 15),
        (
            "    - weight: 10\n      preference:\n        matchExpressions:\n          - {key: zone, operator: Near, values: [a]}\n",
            "unknown operator \"Near\"",
            18,
        ),
        (
            "    - weight: 10\n      preference:\n        matchExpressions:\n          - {key: zone, operator: In}\n",
            "needs values",
            18,
        ),
        (
            "    - weight: 10\n      preference:\n        matchLabels: {\"bad key\": x}\n",
            "invalid label key",
            17,
        ),
    ];
    for (spec, part, line) in cases {
        let report = load_one(&l2_with(&format!("  preferredNodeSelectors:\n{spec}")));
        let errors: Vec<_> = report.errors().collect();
        assert_eq!(errors.len(), 1, "{spec}: {errors:#?}");
        assert_eq!(errors[0].code, Code::BadSelector, "{spec}");
        assert!(
            errors[0].message.contains(part),
            "{spec}: {}",
            errors[0].message
        );
        assert_eq!(errors[0].line, line, "{spec}");
        assert!(report.config.is_none());
    }
    let report = load_one(&l2_with(
        "  preferredNodeSelectors:\n    - weight: high\n      preference: {}\n",
    ));
    assert_eq!(report.errors().next().map(|d| d.code), Some(Code::Type));
}

#[test]
fn service_selectors_are_validated_like_the_other_selectors() {
    let report = load_one(&l2_with(
        "  serviceSelectors:\n    - matchExpressions:\n        - {key: app, operator: Near, values: [a]}\n",
    ));
    let e = report.errors().next().expect("an error");
    assert_eq!((e.code, e.line), (Code::BadSelector, 16));
    assert!(e.message.contains("serviceSelectors"), "{}", e.message);
    let report = load_one(&l2_with(
        "  serviceSelectors:\n    - matchLabels: {app: a}\n    - matchLabels: {app: a}\n",
    ));
    assert_eq!(
        report.errors().next().map(|d| d.code),
        Some(Code::DuplicateSelector)
    );
}

#[test]
fn objects_from_the_kubernetes_api_are_named_by_namespace_and_object_without_lines() {
    let a = r#"{"apiVersion":"metallb.io/v1beta1","kind":"IPAddressPool","metadata":{"name":"a","namespace":"metallb-system"},"spec":{"addresses":["10.250.0.0/24"]}}"#;
    let b = r#"{"apiVersion":"metallb.io/v1beta1","kind":"IPAddressPool","metadata":{"name":"b","namespace":"metallb-system"},"spec":{"addresses":["10.250.0.10-10.250.0.20"]}}"#;
    let options = config::Options::default();
    let report = config::load_objects(
        [
            ("metallb-system", a.as_bytes()),
            ("metallb-system", b.as_bytes()),
        ],
        &options,
    );
    let errors: Vec<String> = report.errors().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            r#"metallb-system: error: IPAddressPool "b": address range 10.250.0.10-10.250.0.20 overlaps 10.250.0.0/24 of IPAddressPool "a" (metallb-system)"#
        ]
    );
    // The same objects written in a file name its lines.
    let file = format!("{a}\n---\n{b}\n");
    let report = config::load([("pools.yaml", file.as_bytes())]);
    let errors: Vec<String> = report.errors().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            r#"pools.yaml:3: error: IPAddressPool "b": address range 10.250.0.10-10.250.0.20 overlaps 10.250.0.0/24 of IPAddressPool "a" (pools.yaml:1)"#
        ]
    );
}

fn assert_no_errors(report: &Report) {
    assert!(
        report
            .diagnostics
            .iter()
            .all(|d| d.severity != Severity::Error),
        "{:#?}",
        report.diagnostics
    );
}

#[test]
fn pools_inside_a_configmap_manifest_are_read_with_the_files_lines() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ferrolb-pools\ndata:\n  lab.yaml: |\n    apiVersion: metallb.io/v1beta1\n    kind: IPAddressPool\n    metadata:\n      name: a\n    spec:\n      addresses: [10.0.0.0/24]\n    ---\n    apiVersion: metallb.io/v1beta1\n    kind: IPAddressPool\n    metadata:\n      name: b\n    spec:\n      addresses: [10.0.0.128/25]\n";
    let report = load_one(text);
    let overlap = report
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .expect("the overlap is found");
    // The range of pool b is on line 19 of the file, pool a's on line 12.
    assert_eq!(overlap.line, 19, "{overlap:?}");
    assert!(overlap.message.contains("pools.yaml:12"), "{overlap:?}");
    assert_eq!(overlap.name.as_deref(), Some("b"), "{overlap:?}");
}

#[test]
fn pools_inside_the_charts_values_file_are_read() {
    let text = "namespace: ferrolb-system\npools:\n  configMap:\n    name: ferrolb-pools\n    data:\n      homelab.yaml: |\n        apiVersion: metallb.io/v1beta1\n        kind: IPAddressPool\n        metadata:\n          name: homelab\n        spec:\n          addresses:\n            - 192.168.1.240-192.168.1.250\n        ---\n        apiVersion: metallb.io/v1beta1\n        kind: L2Advertisement\n        metadata:\n          name: homelab\n        spec:\n          ipAddressPools: [homelab]\n      broken.yaml: \"kind: [\"\n";
    let report = load_one(text);
    let errors: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{:#?}", report.diagnostics);
    assert_eq!(errors[0].code, Code::Syntax);
    assert_eq!(errors[0].line, 21, "{:?}", errors[0]);
    // The chart's own default values hold no pool, and are read as values (nothing skipped);
    // the values the plain manifests are rendered with hold the homelab pool.
    let read = |file: &str| {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
            .expect("the chart's values")
    };
    let report = load_one(&read("../deploy/helm/ferrolb/values.yaml"));
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
    let config = report.config.expect("valid");
    assert_eq!((config.pools.len(), config.advertisements.len()), (0, 0));
    let report = load_one(&read("../deploy/helm/manifests-values.yaml"));
    assert_no_errors(&report);
    let config = report.config.expect("valid");
    assert_eq!((config.pools.len(), config.advertisements.len()), (1, 1));
}

#[test]
fn other_configmaps_stay_skipped_whatever_their_data() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  settings: \"kind: [\"\n  motd: hello\n---\n{}",
        pool("a", &["10.0.0.0/24"])
    );
    let report = load_one(&text);
    assert_no_errors(&report);
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.code == Code::Skipped && d.kind.as_deref() == Some("ConfigMap")),
        "{:#?}",
        report.diagnostics
    );
    assert_eq!(report.config.expect("valid").pools.len(), 1);
}
