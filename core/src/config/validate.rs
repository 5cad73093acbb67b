//! Validation of a whole set of raw objects at once: every error, not just the first.

use std::collections::{HashMap, HashSet};

use super::raw::{
    Field, Located, RawFile, RawL2Advertisement, RawMeta, RawObject, RawPool, RawPreference,
    RawSelector,
};
use super::{Config, L2Advertisement, Pool, PreferredNodeSelector, Report, ServiceAllocation};
use crate::diag::{Code, Diagnostic, Origin, Severity, Sink};
use crate::net::{self, Family, Interval, IntervalSet};
use crate::selector::{self, LabelSelector, Labels, Operator, Requirement};
use crate::yaml::truncate;

const POOL: &str = "IPAddressPool";
const L2: &str = "L2Advertisement";

/// One address range with where it came from, for the overlap sweep.
struct RangeEntry<'a> {
    family: Family,
    interval: Interval,
    text: &'a str,
    pool: &'a str,
    file: &'a str,
    line: u32,
}

/// How a configuration is read: what `--config-namespace` sets, for `ferrolb validate`,
/// `ferrolb plan` and the reconciler alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Read only the objects of this namespace (and those that name none); objects of other
    /// namespaces are ignored with a warning naming them, as MetalLB reads only its own
    /// namespace. `None` reads every object, and warns when the objects name different
    /// namespaces.
    pub namespace: Option<String>,
}

/// Checks every object and the set as a whole, reading every namespace.
pub fn validate(files: &[RawFile]) -> Report {
    validate_with(files, &Options::default())
}

/// The first object seen of one namespace, for the warning about mixed namespaces.
struct NamespaceSeen<'a> {
    namespace: &'a str,
    file: &'a str,
    line: u32,
    kind: &'static str,
    name: Option<String>,
}

/// Whether the object is read under `options`; an object of another namespace than
/// `--config-namespace` is not, with a warning. Notes the first object of each namespace.
fn in_namespace<'a>(
    file: &'a str,
    kind: &'static str,
    meta: &'a RawMeta,
    options: &Options,
    seen: &mut Vec<NamespaceSeen<'a>>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let Some(ns) = &meta.namespace else {
        return true;
    };
    let name = object_name(&meta.name).map(|n| truncate(n, 253));
    match &options.namespace {
        Some(wanted) if *wanted != ns.value => {
            Sink {
                out: diags,
                file,
                kind: Some(kind),
                name: name.as_deref(),
            }
            .warn(
                Code::OtherNamespace,
                ns.line,
                format!(
                    "ignored: metadata.namespace {:?} is not the configuration namespace {wanted:?} (--config-namespace)",
                    truncate(&ns.value, 253)
                ),
            );
            false
        }
        Some(_) => true,
        None => {
            if !seen.iter().any(|s| s.namespace == ns.value) {
                seen.push(NamespaceSeen {
                    namespace: &ns.value,
                    file,
                    line: ns.line,
                    kind,
                    name,
                });
            }
            true
        }
    }
}

/// Warns once for each namespace after the first that the objects name: MetalLB would read the
/// objects of one namespace only.
fn warn_mixed_namespaces(seen: &[NamespaceSeen<'_>], diags: &mut Vec<Diagnostic>) {
    let Some((first, others)) = seen.split_first() else {
        return;
    };
    for other in others {
        Sink {
            out: diags,
            file: other.file,
            kind: Some(other.kind),
            name: other.name.as_deref(),
        }
        .warn(
            Code::MixedNamespaces,
            other.line,
            format!(
                "metadata.namespace {:?} differs from {:?} ({}): MetalLB reads IPAddressPools and L2Advertisements only from its own namespace and would ignore the others; choose one with --config-namespace",
                truncate(other.namespace, 253),
                truncate(first.namespace, 253),
                Origin {
                    file: first.file.to_string(),
                    line: first.line
                }
            ),
        );
    }
}

/// Checks every object and the set as a whole, under `options`.
pub fn validate_with(files: &[RawFile], options: &Options) -> Report {
    let mut diags: Vec<Diagnostic> = files
        .iter()
        .flat_map(|f| f.diagnostics.iter().cloned())
        .collect();
    let mut pools: Vec<Pool> = Vec::new();
    let mut ads: Vec<(L2Advertisement, Vec<Located<String>>)> = Vec::new();
    let mut ranges: Vec<RangeEntry> = Vec::new();
    let mut pool_names: HashMap<String, Origin> = HashMap::new();
    let mut ad_names: HashMap<String, Origin> = HashMap::new();
    let mut namespaces: Vec<NamespaceSeen> = Vec::new();

    for file in files {
        for obj in &file.objects {
            let (kind, meta) = match obj {
                RawObject::Pool(raw) => (POOL, &raw.meta),
                RawObject::L2(raw) => (L2, &raw.meta),
            };
            if !in_namespace(&file.name, kind, meta, options, &mut namespaces, &mut diags) {
                continue;
            }
            match obj {
                RawObject::Pool(raw) => {
                    let pool = check_pool(&file.name, raw, &mut diags, &mut ranges);
                    if let Some(pool) = pool {
                        if note_unique(&pool.name, &pool.origin, POOL, &mut pool_names, &mut diags)
                        {
                            pools.push(pool);
                        }
                    }
                }
                RawObject::L2(raw) => {
                    if let Some(ad) = check_l2(&file.name, raw, &mut diags) {
                        if note_unique(&ad.name, &ad.origin, L2, &mut ad_names, &mut diags) {
                            ads.push((ad, raw.pools.clone()));
                        }
                    }
                }
            }
        }
    }

    check_overlaps(ranges, &mut diags);
    warn_mixed_namespaces(&namespaces, &mut diags);

    for (ad, refs) in &ads {
        for r in refs {
            if !pool_names.contains_key(&r.value) {
                Sink {
                    out: &mut diags,
                    file: &ad.origin.file,
                    kind: Some(L2),
                    name: Some(&ad.name),
                }
                .warn(
                    Code::UnknownPool,
                    r.line,
                    format!(
                        "ipAddressPools names {:?}, which is no IPAddressPool",
                        r.value
                    ),
                );
            }
        }
    }
    let advertisements: Vec<L2Advertisement> = ads.into_iter().map(|(ad, _)| ad).collect();
    let coverage = Coverage::new(&advertisements);
    for pool in &pools {
        if !coverage.covers(pool) {
            Sink {
                out: &mut diags,
                file: &pool.origin.file,
                kind: Some(POOL),
                name: Some(&pool.name),
            }
            .warn(
                Code::UncoveredPool,
                pool.origin.line,
                "no L2Advertisement covers this pool: its addresses would be allocated but announced nowhere",
            );
        }
    }

    let order: HashMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    diags.sort_by_key(|d| (order.get(d.file.as_str()).copied(), d.line));

    let config = if diags.iter().any(|d| d.severity == Severity::Error) {
        None
    } else {
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        let mut advertisements = advertisements;
        advertisements.sort_by(|a, b| a.name.cmp(&b.name));
        Some(Config {
            pools,
            advertisements,
        })
    };
    Report {
        config,
        diagnostics: diags,
    }
}

/// Which pools some advertisement covers, answered without trying every advertisement on every
/// pool: pool names are looked up in a set, and each distinct selector is filed under one label
/// that a pool must carry to match it (a `matchLabels` pair, or one value of an `In`
/// expression, or the key of an `Exists` one), so a pool tries only the selectors filed under
/// its own labels. Only selectors with nothing to file them under (`NotIn` and `DoesNotExist`
/// alone) are tried on every pool.
struct Coverage<'a> {
    /// An advertisement without pools or pool selectors covers every pool.
    all: bool,
    named: HashSet<&'a str>,
    by_label: HashMap<(&'a str, Option<&'a str>), Vec<&'a LabelSelector>>,
    unfiled: Vec<&'a LabelSelector>,
}

impl<'a> Coverage<'a> {
    fn new(ads: &'a [L2Advertisement]) -> Self {
        let mut coverage = Coverage {
            all: ads
                .iter()
                .any(|a| a.pools.is_empty() && a.pool_selectors.is_empty()),
            named: ads
                .iter()
                .flat_map(|a| a.pools.iter().map(String::as_str))
                .collect(),
            by_label: HashMap::new(),
            unfiled: Vec::new(),
        };
        let distinct: HashSet<&LabelSelector> =
            ads.iter().flat_map(|a| a.pool_selectors.iter()).collect();
        for sel in distinct {
            let filed = if let Some((k, v)) = sel.match_labels.iter().next() {
                vec![(k.as_str(), Some(v.as_str()))]
            } else if let Some(r) = sel
                .match_expressions
                .iter()
                .find(|r| matches!(r.operator, Operator::In | Operator::Exists))
            {
                match r.operator {
                    Operator::In => r
                        .values
                        .iter()
                        .map(|v| (r.key.as_str(), Some(v.as_str())))
                        .collect(),
                    _ => vec![(r.key.as_str(), None)],
                }
            } else {
                Vec::new()
            };
            if filed.is_empty() {
                coverage.unfiled.push(sel);
            }
            for label in filed {
                coverage.by_label.entry(label).or_default().push(sel);
            }
        }
        coverage
    }

    /// Whether some advertisement covers `pool`; the same answer as trying
    /// [`L2Advertisement::covers`] on each.
    fn covers(&self, pool: &Pool) -> bool {
        self.all
            || self.named.contains(pool.name.as_str())
            || pool.labels.iter().any(|(k, v)| {
                [Some(v.as_str()), None]
                    .into_iter()
                    .filter_map(|v| self.by_label.get(&(k.as_str(), v)))
                    .flatten()
                    .any(|s| s.matches(&pool.labels))
            })
            || self.unfiled.iter().any(|s| s.matches(&pool.labels))
    }
}

/// Records `name` and reports a duplicate; true when the name is new.
fn note_unique(
    name: &str,
    origin: &Origin,
    kind: &'static str,
    seen: &mut HashMap<String, Origin>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if let Some(first) = seen.get(name) {
        Sink {
            out: diags,
            file: &origin.file,
            kind: Some(kind),
            name: Some(name),
        }
        .error(
            Code::DuplicateName,
            origin.line,
            format!("duplicate name: another {kind} {name:?} is defined at {first}"),
        );
        false
    } else {
        seen.insert(name.to_string(), origin.clone());
        true
    }
}

fn object_name(raw_name: &Option<Located<String>>) -> Option<&str> {
    raw_name
        .as_ref()
        .map(|n| n.value.as_str())
        .filter(|n| !n.is_empty())
}

/// The name an object is known by: `valid` when it is a Kubernetes object name, and `shown` for
/// messages (shortened when it is not; messages print it with control characters escaped).
struct Name<'a> {
    valid: Option<&'a str>,
    shown: Option<String>,
}

/// Checks `metadata.name`: required, and a Kubernetes object name (RFC 1123 subdomain), as the
/// API server requires for these kinds.
fn check_name<'a>(
    file: &str,
    kind: &'static str,
    meta: &'a RawMeta,
    diags: &mut Vec<Diagnostic>,
) -> Name<'a> {
    let written = object_name(&meta.name);
    let valid = written.filter(|n| selector::is_dns_subdomain(n));
    let shown = written.map(|n| truncate(n, 253));
    let mut sink = Sink {
        out: diags,
        file,
        kind: Some(kind),
        name: shown.as_deref(),
    };
    match (written, valid) {
        (None, _) => sink.error(Code::MissingName, meta.line, "metadata.name is required"),
        (Some(n), None) => sink.error(
            Code::BadName,
            meta.name.as_ref().map_or(meta.line, |l| l.line),
            format!(
                "metadata.name {:?} is not a valid name: use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
                truncate(n, 60)
            ),
        ),
        (Some(_), Some(_)) => {}
    }
    Name { valid, shown }
}

/// Checks one pool; returns it when its name is known (its other errors are recorded).
fn check_pool<'a>(
    file: &'a str,
    raw: &'a RawPool,
    diags: &mut Vec<Diagnostic>,
    ranges: &mut Vec<RangeEntry<'a>>,
) -> Option<Pool> {
    let checked = check_name(file, POOL, &raw.meta, diags);
    let name = checked.valid;
    let mut sink = Sink {
        out: diags,
        file,
        kind: Some(POOL),
        name: checked.shown.as_deref(),
    };
    let labels = check_labels(&raw.meta.labels, &mut sink);
    let mut written = Vec::new();
    match &raw.addresses {
        Field::Absent => sink.error(
            Code::NoAddresses,
            raw.meta.line,
            "spec.addresses is required",
        ),
        Field::Present(list) if list.value.is_empty() => sink.error(
            Code::NoAddresses,
            list.line,
            "spec.addresses must not be empty",
        ),
        Field::Present(list) => {
            for item in &list.value {
                match net::parse_range(&item.value) {
                    Ok(parsed) => {
                        // MetalLB trims spaces only around the two ends of an `a-b` range;
                        // anything else it reads as a CIDR, which does not parse with spaces.
                        if !item.value.contains('-') && item.value.contains(char::is_whitespace) {
                            let tight: String =
                                item.value.chars().filter(|c| !c.is_whitespace()).collect();
                            sink.warn(
                                Code::CidrSpaces,
                                item.line,
                                format!(
                                    "{:?} is written with spaces: ferrolb ignores them, but MetalLB cannot parse such a CIDR; write {tight}",
                                    item.value
                                ),
                            );
                        }
                        if parsed.host_bits_set {
                            sink.warn(
                                Code::HostBits,
                                item.line,
                                format!(
                                    "{:?} has bits set past its prefix; it means {}",
                                    item.value.trim(),
                                    parsed.range
                                ),
                            );
                        }
                        ranges.push(RangeEntry {
                            family: parsed.range.family,
                            interval: parsed.range.interval,
                            text: item.value.trim(),
                            pool: name.unwrap_or_default(),
                            file,
                            line: item.line,
                        });
                        written.push(parsed.range);
                    }
                    Err(e) => sink.error(Code::BadAddress, item.line, e.to_string()),
                }
            }
        }
        Field::Invalid => {}
    }
    let allocation = raw.allocation.as_ref().map(|a| {
        let priority = match &a.priority {
            Some(p) if p.value < 0 => {
                sink.error(
                    Code::BadSelector,
                    p.line,
                    format!(
                        "serviceAllocation.priority must not be negative, found {}",
                        p.value
                    ),
                );
                0
            }
            Some(p) => p.value,
            None => 0,
        };
        let mut namespaces: Vec<String> = Vec::new();
        let mut seen_namespaces: HashSet<&str> = HashSet::new();
        for ns in &a.namespaces {
            if ns.value.is_empty() {
                sink.error(
                    Code::BadSelector,
                    ns.line,
                    "empty namespace in serviceAllocation.namespaces",
                );
            } else if !seen_namespaces.insert(&ns.value) {
                sink.error(
                    Code::DuplicateNamespace,
                    ns.line,
                    format!(
                        "namespace {:?} is listed twice in serviceAllocation.namespaces",
                        ns.value
                    ),
                );
            } else {
                namespaces.push(ns.value.clone());
            }
        }
        ServiceAllocation {
            priority,
            namespaces,
            namespace_selectors: check_selectors(
                &a.namespace_selectors,
                "serviceAllocation.namespaceSelectors",
                &mut sink,
            ),
            service_selectors: check_selectors(
                &a.service_selectors,
                "serviceAllocation.serviceSelectors",
                &mut sink,
            ),
        }
    });
    let set = |family: Family| {
        IntervalSet::from_intervals(
            written
                .iter()
                .filter(|r| r.family == family)
                .map(|r| r.interval)
                .collect(),
        )
    };
    Some(Pool {
        name: name?.to_string(),
        labels,
        v4: set(Family::V4),
        v6: set(Family::V6),
        ranges: written,
        auto_assign: raw.auto_assign.unwrap_or(true),
        avoid_buggy_ips: raw.avoid_buggy_ips.unwrap_or(false),
        allocation,
        origin: Origin {
            file: file.to_string(),
            line: raw.meta.name.as_ref().map_or(raw.meta.line, |n| n.line),
        },
    })
}

fn check_l2(
    file: &str,
    raw: &RawL2Advertisement,
    diags: &mut Vec<Diagnostic>,
) -> Option<L2Advertisement> {
    let checked = check_name(file, L2, &raw.meta, diags);
    let name = checked.valid;
    let mut sink = Sink {
        out: diags,
        file,
        kind: Some(L2),
        name: checked.shown.as_deref(),
    };
    check_labels(&raw.meta.labels, &mut sink);
    let mut pools: Vec<String> = Vec::new();
    let mut seen_pools: HashSet<&str> = HashSet::new();
    for p in &raw.pools {
        if !seen_pools.insert(&p.value) {
            sink.error(
                Code::DuplicatePoolRef,
                p.line,
                format!("pool {:?} is listed twice in ipAddressPools", p.value),
            );
        } else {
            pools.push(p.value.clone());
        }
    }
    let pool_selectors = check_selectors(&raw.pool_selectors, "ipAddressPoolSelectors", &mut sink);
    let node_selectors = check_selectors(&raw.node_selectors, "nodeSelectors", &mut sink);
    let service_selectors = check_selectors(&raw.service_selectors, "serviceSelectors", &mut sink);
    let preferred_node_selectors = check_preferences(&raw.preferred_node_selectors, &mut sink);
    if let Some(first) = raw.preferred_node_selectors.first() {
        sink.note(
            Code::PreferenceSticky,
            first.line,
            "preferredNodeSelectors choose the node that claims a free address; a preferred node \
             that returns does not take an address back from its live holder (MetalLB moves it)",
        );
    }
    if let Some(first) = raw.service_selectors.first() {
        sink.note(
            Code::SharingWithServiceSelectors,
            first.line,
            "Services these serviceSelectors match cannot share an address (allow-shared-ip): \
             ferrolb leaves them pending (MetalLB allocates the address and does not announce it)",
        );
    }
    let mut interfaces: Vec<String> = Vec::new();
    let mut seen_interfaces: HashSet<&str> = HashSet::new();
    for i in &raw.interfaces {
        let ok = !i.value.is_empty()
            && i.value.len() <= 15
            && !i
                .value
                .contains(|c: char| c == '/' || c.is_whitespace() || c == ':')
            && i.value != "."
            && i.value != "..";
        if !ok {
            sink.error(
                Code::BadInterface,
                i.line,
                format!("{:?} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)", i.value),
            );
        } else if !seen_interfaces.insert(&i.value) {
            sink.error(
                Code::BadInterface,
                i.line,
                format!("interface {:?} is listed twice", i.value),
            );
        } else {
            interfaces.push(i.value.clone());
        }
    }
    Some(L2Advertisement {
        name: name?.to_string(),
        pools,
        pool_selectors,
        node_selectors,
        interfaces,
        service_selectors,
        preferred_node_selectors,
        origin: Origin {
            file: file.to_string(),
            line: raw.meta.name.as_ref().map_or(raw.meta.line, |n| n.line),
        },
    })
}

/// Checks `preferredNodeSelectors` as Kubernetes checks a `PreferredSchedulingTerm` (and MetalLB
/// its CRD): `weight` required, 1 to 100; `preference` required, a valid label selector (checked
/// like every other selector; `{}` matches every node).
fn check_preferences(raw: &[RawPreference], sink: &mut Sink<'_>) -> Vec<PreferredNodeSelector> {
    const FIELD: &str = "preferredNodeSelectors";
    let mut out = Vec::new();
    for r in raw {
        let weight = match &r.weight {
            None => {
                sink.error(
                    Code::BadSelector,
                    r.line,
                    format!("{FIELD}: weight is required (1 to 100)"),
                );
                None
            }
            Some(w) => match u32::try_from(w.value) {
                Ok(v) if (1..=100).contains(&v) => Some(v),
                _ => {
                    sink.error(
                        Code::BadSelector,
                        w.line,
                        format!("{FIELD}: weight must be 1 to 100, found {}", w.value),
                    );
                    None
                }
            },
        };
        let preference = match &r.preference {
            None => {
                sink.error(
                    Code::BadSelector,
                    r.line,
                    format!("{FIELD}: preference is required (a label selector; {{}} matches every node)"),
                );
                None
            }
            Some(p) => check_selector(p, &format!("{FIELD}.preference"), sink),
        };
        if let (Some(weight), Some(preference)) = (weight, preference) {
            out.push(PreferredNodeSelector { weight, preference });
        }
    }
    out
}

fn check_labels(raw: &[(Located<String>, Located<String>)], sink: &mut Sink<'_>) -> Labels {
    let mut labels = Labels::new();
    for (k, v) in raw {
        if let Err(why) = selector::check_key(&k.value) {
            sink.error(Code::BadSelector, k.line, why);
        } else if let Err(why) = selector::check_value(&v.value) {
            sink.error(Code::BadSelector, v.line, why);
        } else {
            labels.insert(k.value.clone(), v.value.clone());
        }
    }
    labels
}

fn check_selectors(raw: &[RawSelector], field: &str, sink: &mut Sink<'_>) -> Vec<LabelSelector> {
    let mut out: Vec<LabelSelector> = Vec::new();
    let mut seen: HashSet<LabelSelector> = HashSet::new();
    for r in raw {
        let Some(sel) = check_selector(r, field, sink) else {
            continue;
        };
        if !seen.insert(sorted_values(&sel)) {
            sink.error(
                Code::DuplicateSelector,
                r.line,
                format!("duplicate selector in {field}: {sel}"),
            );
        } else {
            out.push(sel);
        }
    }
    out
}

/// The selector with the values of each match expression sorted: MetalLB compares selectors
/// and match expressions this way, so `[a, b]` and `[b, a]` are the same.
fn sorted_values(sel: &LabelSelector) -> LabelSelector {
    let mut sorted = sel.clone();
    for r in &mut sorted.match_expressions {
        r.values.sort();
    }
    sorted
}

/// Whether two match expressions are the same when their values are compared in any order.
fn same_requirement(a: &Requirement, b: &Requirement) -> bool {
    if a.key != b.key || a.operator != b.operator || a.values.len() != b.values.len() {
        return false;
    }
    let mut x: Vec<&String> = a.values.iter().collect();
    let mut y: Vec<&String> = b.values.iter().collect();
    x.sort();
    y.sort();
    x == y
}

/// The first value written twice, if any.
fn repeated_value(values: &[String]) -> Option<&str> {
    let mut seen: HashSet<&str> = HashSet::new();
    values.iter().map(String::as_str).find(|v| !seen.insert(v))
}

/// Converts one selector; `None` when any part of it is malformed (the errors are recorded).
fn check_selector(raw: &RawSelector, field: &str, sink: &mut Sink<'_>) -> Option<LabelSelector> {
    let mut ok = true;
    let mut sel = LabelSelector::default();
    for (k, v) in &raw.match_labels {
        let checked = selector::check_key(&k.value)
            .map_err(|e| (k.line, e))
            .and_then(|()| selector::check_value(&v.value).map_err(|e| (v.line, e)));
        match checked {
            Ok(()) => {
                sel.match_labels.insert(k.value.clone(), v.value.clone());
            }
            Err((line, why)) => {
                sink.error(
                    Code::BadSelector,
                    line,
                    format!("in {field}.matchLabels: {why}"),
                );
                ok = false;
            }
        }
    }
    for e in &raw.match_expressions {
        match check_requirement(e.key.as_deref(), e.operator.as_deref(), &e.values) {
            Ok(req) if repeated_value(&req.values).is_some() => {
                sink.error(
                    Code::DuplicateSelector,
                    e.line,
                    format!(
                        "duplicate value {:?} in a match expression of {field}: key {:?}",
                        repeated_value(&req.values).unwrap_or_default(),
                        req.key
                    ),
                );
                ok = false;
            }
            Ok(req)
                if sel
                    .match_expressions
                    .iter()
                    .any(|r| same_requirement(r, &req)) =>
            {
                sink.error(
                    Code::DuplicateSelector,
                    e.line,
                    format!("duplicate match expression in {field}: key {:?}", req.key),
                );
                ok = false;
            }
            Ok(req) => sel.match_expressions.push(req),
            Err(why) => {
                sink.error(
                    Code::BadSelector,
                    e.line,
                    format!("in {field}.matchExpressions: {why}"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(sel)
}

fn check_requirement(
    key: Option<&str>,
    operator: Option<&str>,
    values: &[String],
) -> Result<Requirement, String> {
    let key = key.ok_or("key is required")?;
    selector::check_key(key)?;
    let op_text = operator.ok_or_else(|| format!("operator is required for key {key:?}"))?;
    let operator = Operator::parse(op_text).ok_or_else(|| {
        format!("unknown operator {op_text:?} for key {key:?} (In, NotIn, Exists or DoesNotExist)")
    })?;
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            return Err(format!("operator {op_text} for key {key:?} needs values"));
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            return Err(format!(
                "operator {op_text} for key {key:?} takes no values"
            ));
        }
        _ => {}
    }
    for v in values {
        selector::check_value(v)?;
    }
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values: values.to_vec(),
    })
}

/// Sorts every range and sweeps once: a range overlaps an earlier one exactly when it starts
/// at or before the furthest end seen so far in its family. O(n log n).
fn check_overlaps(mut ranges: Vec<RangeEntry<'_>>, diags: &mut Vec<Diagnostic>) {
    ranges.sort_by(|a, b| {
        (a.family, a.interval, a.file, a.line).cmp(&(b.family, b.interval, b.file, b.line))
    });
    let mut widest: Option<&RangeEntry> = None;
    for r in &ranges {
        if let Some(w) =
            widest.filter(|w| w.family == r.family && r.interval.start <= w.interval.end)
        {
            Sink {
                out: diags,
                file: r.file,
                kind: Some(POOL),
                name: Some(r.pool).filter(|p| !p.is_empty()),
            }
            .error(
                Code::Overlap,
                r.line,
                format!(
                    "address range {} overlaps {} of {POOL} {:?} ({})",
                    r.text,
                    w.text,
                    w.pool,
                    Origin {
                        file: w.file.to_string(),
                        line: w.line
                    }
                ),
            );
        }
        if widest.is_none_or(|w| w.family != r.family || r.interval.end > w.interval.end) {
            widest = Some(r);
        }
    }
}
