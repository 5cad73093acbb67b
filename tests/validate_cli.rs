//! `ferrolb validate` as a pool repository's CI runs it: exit codes, text and JSON output.

use std::path::Path;
use std::process::{Command, Output};

fn ferrolb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run ferrolb")
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: home\nspec:\n  addresses: [10.0.0.0/24, fd00::/64]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: all\n";

#[test]
fn examples_are_valid_even_under_strict() {
    let out = ferrolb(&["validate", "--strict", "examples/pools"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Only the notes on the two fields ferrolb applies otherwise than MetalLB.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("examples/pools/frontends.yaml:")
                && l.contains(": note: L2Advertisement \"frontends-edge\"")),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("valid: 8 pools"), "{stdout}");
    assert!(
        stdout.ends_with(", 0 errors, 0 warnings, 2 notes\n"),
        "{stdout}"
    );
}

#[test]
fn every_example_file_is_valid_on_its_own() {
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pools"))
        .expect("examples")
    {
        let path = entry.expect("entry").path();
        let out = ferrolb(&["validate", path.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn invalid_configuration_exits_1_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", POOL);
    write(
        dir.path(),
        "b.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: lab\nspec:\n  addresses:\n    - 10.0.0.128/25\n",
    );
    let out = ferrolb(&["validate", dir.path().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("b.yaml:7: error: IPAddressPool \"lab\": address range 10.0.0.128/25 overlaps 10.0.0.0/24"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("invalid: 1 error"));
}

#[test]
fn warnings_fail_only_under_strict() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.yaml",
        &(POOL.to_string() + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"),
    );
    let path = dir.path().to_str().expect("path");
    assert_eq!(ferrolb(&["validate", path]).status.code(), Some(0));
    assert_eq!(
        ferrolb(&["validate", "--strict", path]).status.code(),
        Some(1)
    );
}

#[test]
fn unreadable_paths_and_usage_errors_exit_2() {
    assert_eq!(
        ferrolb(&["validate", "/nonexistent/pools"]).status.code(),
        Some(2)
    );
    assert_eq!(ferrolb(&["validate"]).status.code(), Some(2));
    assert_eq!(
        ferrolb(&["validate", "--format", "xml", "x"]).status.code(),
        Some(2)
    );
}

#[test]
fn json_output_is_the_only_thing_on_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.yaml",
        &(POOL.to_string() + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"),
    );
    let out = ferrolb(&[
        "validate",
        "--format",
        "json",
        dir.path().to_str().expect("path"),
    ]);
    assert!(out.status.success());
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["errors"].as_array().map(Vec::len), Some(0));
    assert_eq!(doc["warnings"][0]["kind"], "ConfigMap");
    assert_eq!(doc["warnings"][0]["line"], 13);
    assert_eq!(doc["pools"][0]["name"], "home");
    assert_eq!(doc["pools"][0]["ipv4_addresses"], "256");
    assert_eq!(doc["pools"][0]["ipv6_addresses"], "18446744073709551616");
    assert!(!out.stderr.is_empty(), "the warning also goes to stderr");
}

#[test]
fn json_output_of_an_invalid_set_lists_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: x\nspec:\n  addresses: 10.0.0.0/24\n",
    );
    let out = ferrolb(&[
        "validate",
        "--format",
        "json",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"][0]["line"], 6);
    assert_eq!(doc["errors"][0]["name"], "x");
    assert_eq!(doc["errors"][0]["code"], "type");
}

/// The text output's diagnostics and its exit code, for one file written into a fresh directory.
fn validate_one(name: &str, text: &str, strict: bool) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), name, text);
    let path = dir.path().join(name);
    let mut args = vec!["validate"];
    if strict {
        args.push("--strict");
    }
    args.push(path.to_str().expect("path"));
    let out = ferrolb(&args);
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.path().display()), "");
    (out.status.code(), stderr)
}

#[test]
fn a_fifo_is_an_unreadable_path_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pools.yaml");
    let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(made.success());
    let out = ferrolb(&["validate", path.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a regular file (a FIFO)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn one_long_string_aliased_many_times_is_an_error_not_an_abort() {
    // The outside test's shape, smaller: a 1.1 MiB anchored string and 1,000 aliases to it.
    let mut text = format!("big: &s {}\nmany:\n", "x".repeat(1_100_000));
    for _ in 0..1_000 {
        text.push_str("  - *s\n");
    }
    let (code, stderr) = validate_one("bomb.yaml", &text, false);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some(
            "bomb.yaml:5: error: anchors and aliases expand to more than 4 MiB of text (an alias bomb?)"
        ),
        "{stderr}"
    );
}

#[test]
fn an_ipv4_mapped_range_is_an_error_even_without_strict() {
    let text = POOL.replace(
        "addresses: [10.0.0.0/24, fd00::/64]",
        "addresses: [10.0.0.1/32, \"::ffff:10.0.0.1/128\"]",
    );
    let (code, stderr) = validate_one("pools.yaml", &text, false);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            r#"pools.yaml:6: error: IPAddressPool "home": invalid address range "::ffff:10.0.0.1/128": it includes IPv4-mapped addresses (::ffff:0:0/96)"#
        ),
        "{stderr}"
    );
}

#[test]
fn a_pool_name_with_a_newline_is_an_error_printed_escaped() {
    let text = POOL.replace("name: home", "name: \"home\\nerror: forged\"");
    let (code, stderr) = validate_one("pools.yaml", &text, false);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one diagnostic on one line: {stderr}"
    );
    assert!(
        stderr.starts_with(r#"pools.yaml:4: error: IPAddressPool "home\nerror: forged": metadata.name "home\nerror: forged" is not a valid name"#),
        "{stderr}"
    );
}

#[test]
fn config_namespace_ignores_objects_of_other_namespaces_and_without_it_mixed_namespaces_warn() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "pools.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: a\n  namespace: metallb-system\nspec:\n  addresses: [10.0.0.0/24]\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: a\n  namespace: team-b\nspec:\n  addresses: [10.0.0.0/25]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: all\n  namespace: metallb-system\n",
    );
    let path = dir.path().to_str().expect("path");
    // Without the flag both pools are read: the duplicate name and overlap are errors, and the
    // second namespace is named in a warning.
    let out = ferrolb(&["validate", path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(r#"pools.yaml:13: warning: IPAddressPool "a": metadata.namespace "team-b" differs from "metallb-system""#),
        "{stderr}"
    );
    // With it, team-b's pool is ignored with a warning naming it, as MetalLB would ignore it.
    let out = ferrolb(&["validate", "--config-namespace", "metallb-system", path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(r#"pools.yaml:13: warning: IPAddressPool "a": ignored: metadata.namespace "team-b" is not the configuration namespace "metallb-system" (--config-namespace)"#),
        "{stderr}"
    );
    let out = ferrolb(&[
        "validate",
        "--strict",
        "--config-namespace",
        "metallb-system",
        path,
    ]);
    assert_eq!(out.status.code(), Some(1));
    // A value that is no namespace name is a usage error.
    let out = ferrolb(&["validate", "--config-namespace", "Team B", path]);
    assert_eq!(out.status.code(), Some(2));
}

/// The pool set the chart or the plain manifests deploy is checked where it is written: in the
/// chart's values (`pools.configMap.data`) and in the ConfigMap manifest; a broken pool there is
/// reported on the line of that file.
#[test]
fn the_pools_in_the_charts_values_and_the_configmap_manifest_validate() {
    // The chart's defaults hold no pool: valid, nothing skipped.
    let out = ferrolb(&["validate", "--strict", "deploy/helm/ferrolb/values.yaml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("valid: 0 pools"), "{stdout}");
    assert!(stdout.contains("0 errors, 0 warnings"), "{stdout}");
    // The values the plain manifests are rendered with, and the manifests (a ConfigMap among
    // every other object, each of which is a skipped kind: a warning, so not under --strict),
    // hold the homelab pool.
    for (file, strict) in [
        ("deploy/helm/manifests-values.yaml", true),
        ("deploy/manifests/50-ferrolb.yaml", false),
    ] {
        let args = if strict {
            vec!["validate", "--strict", file]
        } else {
            vec!["validate", file]
        };
        let out = ferrolb(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("valid: 1 pool"), "{file}: {stdout}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let values = "pools:\n  configMap:\n    data:\n      lab.yaml: |\n        apiVersion: metallb.io/v1beta1\n        kind: IPAddressPool\n        metadata:\n          name: a\n        spec:\n          addresses: [10.0.0.0/33]\n";
    write(dir.path(), "values.yaml", values);
    let path = dir.path().join("values.yaml");
    let out = ferrolb(&["validate", path.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("values.yaml:10"), "{stderr}");
}
