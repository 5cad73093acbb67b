//! Kubernetes label selectors: `matchLabels` plus `matchExpressions` (In, NotIn, Exists,
//! DoesNotExist), with the validation rules of Kubernetes' label syntax.

use std::collections::BTreeMap;
use std::fmt;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// A selector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// The label's value is one of the values.
    In,
    /// The label is absent or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl Operator {
    /// Reads the Kubernetes spelling.
    pub fn parse(text: &str) -> Option<Operator> {
        match text {
            "In" => Some(Operator::In),
            "NotIn" => Some(Operator::NotIn),
            "Exists" => Some(Operator::Exists),
            "DoesNotExist" => Some(Operator::DoesNotExist),
            _ => None,
        }
    }
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub operator: Operator,
    /// The values (empty for Exists and DoesNotExist).
    pub values: Vec<String>,
}

/// A label selector. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelSelector {
    /// `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`.
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// Whether `labels` satisfy every part of the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    Operator::In => value.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }
}

impl fmt::Display for LabelSelector {
    /// The `kubectl -l` spelling, e.g. `team=a,tier in (web,api),!legacy`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            parts.push(match r.operator {
                Operator::In => format!("{} in ({})", r.key, r.values.join(",")),
                Operator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            });
        }
        if parts.is_empty() {
            f.write_str("(everything)")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// Whether `name` is a Kubernetes object name of the kinds ferrolb reads (`metadata.name` of an
/// IPAddressPool or L2Advertisement): an RFC 1123 subdomain, at most 253 characters of
/// lowercase letters, digits, `-` and `.`, each dot-separated part starting and ending with a
/// letter or digit.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|part| {
            let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            let bytes = part.as_bytes();
            bytes.first().is_some_and(|c| alnum(*c))
                && bytes.last().is_some_and(|c| alnum(*c))
                && bytes.iter().all(|c| alnum(*c) || *c == b'-')
        })
}

/// Whether `name` is a Kubernetes namespace name: an RFC 1123 label, at most 63 lowercase
/// letters, digits and `-`, starting and ending with a letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    name.len() <= 63 && !name.contains('.') && is_dns_subdomain(name)
}

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_` and `.`, beginning and ending alphanumeric.
pub fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "invalid label key {key:?}: the prefix must be a DNS subdomain"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!("invalid label key {key:?}: the name part is empty"));
    }
    check_name_part(name).map_err(|why| format!("invalid label key {key:?}: {why}"))
}

/// Checks a label value: empty, or like a key's name part.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name_part(value).map_err(|why| format!("invalid label value {value:?}: {why}"))
}

fn check_name_part(s: &str) -> Result<(), &'static str> {
    if s.len() > 63 {
        return Err("longer than 63 characters");
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if !s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.')) {
        return Err("only letters, digits, '-', '_' and '.' are allowed");
    }
    if !s.starts_with(alnum) || !s.ends_with(alnum) {
        return Err("must begin and end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&Labels::new()));
    }

    #[test]
    fn each_operator_matches_as_kubernetes_does() {
        let l = labels(&[("tier", "web"), ("team", "a")]);
        let sel = |r| LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![r],
        };
        assert!(sel(req("tier", Operator::In, &["web", "api"])).matches(&l));
        assert!(!sel(req("tier", Operator::In, &["api"])).matches(&l));
        assert!(!sel(req("zone", Operator::In, &["x"])).matches(&l));
        assert!(sel(req("tier", Operator::NotIn, &["api"])).matches(&l));
        assert!(sel(req("zone", Operator::NotIn, &["x"])).matches(&l));
        assert!(!sel(req("tier", Operator::NotIn, &["web"])).matches(&l));
        assert!(sel(req("team", Operator::Exists, &[])).matches(&l));
        assert!(!sel(req("zone", Operator::Exists, &[])).matches(&l));
        assert!(sel(req("zone", Operator::DoesNotExist, &[])).matches(&l));
        assert!(!sel(req("team", Operator::DoesNotExist, &[])).matches(&l));
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let sel = LabelSelector {
            match_labels: labels(&[("team", "a")]),
            match_expressions: vec![req("tier", Operator::Exists, &[])],
        };
        assert!(sel.matches(&labels(&[("team", "a"), ("tier", "x")])));
        assert!(!sel.matches(&labels(&[("team", "a")])));
        assert!(!sel.matches(&labels(&[("team", "b"), ("tier", "x")])));
        assert_eq!(sel.to_string(), "team=a,tier");
    }

    #[test]
    fn namespace_names_are_rfc_1123_labels() {
        for ok in ["metallb-system", "a", "0", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok:?}");
        }
        for bad in ["", "Metallb", "a.b", "-a", "a-", "a b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn object_names_are_rfc_1123_subdomains() {
        for ok in [
            "a",
            "homelab",
            "pool-1",
            "lab.example.com",
            "0",
            &"a".repeat(253),
        ] {
            assert!(is_dns_subdomain(ok), "{ok:?}");
        }
        for bad in [
            "",
            "Homelab",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "a b",
            "a\nb",
            "a\u{1b}[31m",
            "é",
            &"a".repeat(254),
        ] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
        }
    }

    #[test]
    fn keys_and_values_follow_kubernetes_syntax() {
        assert!(check_key("team").is_ok());
        assert!(check_key("example.com/team").is_ok());
        assert!(check_key("node.kubernetes.io/exclude-from-external-load-balancers").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("-team").is_err());
        assert!(check_key("Example.com/team").is_err());
        assert!(check_key("a/b/c").is_err());
        assert!(check_key(&"x".repeat(64)).is_err());
        assert!(check_value("").is_ok());
        assert!(check_value("v1.2_a-b").is_ok());
        assert!(check_value("has space").is_err());
    }
}
