//! The pool configuration: MetalLB's `IPAddressPool` and `L2Advertisement` documents.
//!
//! Three steps, each testable alone:
//! 1. [`parse_file`] reads one file's bytes into raw objects (strings with lines), reporting
//!    YAML and type errors;
//! 2. [`validate`] checks every raw object and the whole set together (names, address syntax,
//!    overlaps, selectors, references) and collects every problem, not just the first;
//! 3. the result is a [`Report`]: the validated [`Config`] when there is no error, and the
//!    diagnostics either way.
//!
//! `ferrolb validate`, `ferrolb plan` and the reconciler all go through [`load_with`] (with the
//! [`Options`] that `--config-namespace` sets), so they accept and refuse exactly the same files.

mod raw;
mod validate;

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use raw::{
    API_VERSION, Field, Located, MAX_FILE_BYTES, MAX_REVISION_BYTES, RawFile, RawObject,
    RawPreference, parse_file, parse_object, read_documents,
};
pub use validate::{Options, validate, validate_with};

use crate::diag::{Diagnostic, Origin, Severity};
use crate::net::{self, AddrRange, Count, Family, IntervalSet};
use crate::selector::{LabelSelector, Labels};

/// A validated IPAddressPool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
    /// `spec.addresses`, as written (after parsing).
    pub ranges: Vec<AddrRange>,
    /// The IPv4 addresses, merged.
    pub v4: IntervalSet,
    /// The IPv6 addresses, merged.
    pub v6: IntervalSet,
    /// `spec.autoAssign` (default true).
    pub auto_assign: bool,
    /// `spec.avoidBuggyIPs` (default false).
    pub avoid_buggy_ips: bool,
    /// `spec.serviceAllocation`.
    pub allocation: Option<ServiceAllocation>,
    /// Where the pool was written.
    pub origin: Origin,
}

impl Pool {
    /// The pool's addresses of one family.
    pub fn set(&self, family: Family) -> &IntervalSet {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Whether the pool holds `ip` (and, with `avoidBuggyIPs`, may hand it out).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let family = Family::of(ip);
        let n = net::to_u128(ip);
        self.set(family).contains(n) && !(self.avoid_buggy_ips && net::is_buggy(family, n))
    }

    /// How many addresses of `family` the pool can hand out.
    pub fn size(&self, family: Family) -> Count {
        self.set(family).count(family, self.avoid_buggy_ips)
    }

    /// The allocation priority: lower wins, and unset or 0 is the lowest of all.
    pub fn priority_rank(&self) -> i64 {
        match self.allocation.as_ref().map_or(0, |a| a.priority) {
            0 => i64::MAX,
            p => p,
        }
    }
}

/// `spec.serviceAllocation` of a pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceAllocation {
    /// `priority` (0 when unset).
    pub priority: i64,
    /// `namespaces`.
    pub namespaces: Vec<String>,
    /// `namespaceSelectors`.
    pub namespace_selectors: Vec<LabelSelector>,
    /// `serviceSelectors`.
    pub service_selectors: Vec<LabelSelector>,
}

/// A validated L2Advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Advertisement {
    /// `metadata.name`.
    pub name: String,
    /// `spec.ipAddressPools`.
    pub pools: Vec<String>,
    /// `spec.ipAddressPoolSelectors`.
    pub pool_selectors: Vec<LabelSelector>,
    /// `spec.nodeSelectors` (empty: every node).
    pub node_selectors: Vec<LabelSelector>,
    /// `spec.interfaces` (empty: every interface).
    pub interfaces: Vec<String>,
    /// `spec.serviceSelectors` (empty: every Service of the covered pools).
    pub service_selectors: Vec<LabelSelector>,
    /// `spec.preferredNodeSelectors`: soft preferences among the nodes `nodeSelectors` allow.
    pub preferred_node_selectors: Vec<PreferredNodeSelector>,
    /// Where it was written.
    pub origin: Origin,
}

/// One `spec.preferredNodeSelectors` entry of an L2Advertisement, shaped like Kubernetes'
/// `PreferredSchedulingTerm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreferredNodeSelector {
    /// `weight`, 1 to 100.
    pub weight: u32,
    /// `preference`: the nodes the weight goes to (the empty selector matches every node).
    pub preference: LabelSelector,
}

impl L2Advertisement {
    /// Whether the advertisement covers `pool`: named, selected, or all pools when neither
    /// `ipAddressPools` nor `ipAddressPoolSelectors` is set.
    pub fn covers(&self, pool: &Pool) -> bool {
        (self.pools.is_empty() && self.pool_selectors.is_empty())
            || self.pools.contains(&pool.name)
            || self.pool_selectors.iter().any(|s| s.matches(&pool.labels))
    }

    /// Whether the advertisement lets a node with `labels` announce (any node selector matches,
    /// or there is none).
    pub fn selects_node(&self, labels: &Labels) -> bool {
        self.node_selectors.is_empty() || self.node_selectors.iter().any(|s| s.matches(labels))
    }

    /// Whether the advertisement applies to a Service with `labels` (any service selector
    /// matches, or there is none).
    pub fn selects_service(&self, labels: &Labels) -> bool {
        self.service_selectors.is_empty()
            || self.service_selectors.iter().any(|s| s.matches(labels))
    }

    /// What this advertisement adds to the score of a node with `labels`: the sum of the
    /// weights of the preferences it matches, and 0 for a node its `nodeSelectors` do not
    /// allow (an advertisement never lifts a node it does not let announce).
    pub fn preference_score(&self, labels: &Labels) -> u32 {
        if !self.selects_node(labels) {
            return 0;
        }
        self.preferred_node_selectors
            .iter()
            .filter(|p| p.preference.matches(labels))
            .map(|p| p.weight)
            .sum()
    }
}

/// A validated configuration: pools sorted by name, advertisements sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The pools.
    pub pools: Vec<Pool>,
    /// The advertisements.
    pub advertisements: Vec<L2Advertisement>,
}

impl Config {
    /// The pool called `name`.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pool_position(name).map(|i| &self.pools[i])
    }

    /// The position of the pool called `name` in `pools`.
    pub fn pool_position(&self, name: &str) -> Option<usize> {
        self.pools
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
    }

    /// The advertisements that cover `pool`.
    pub fn advertisements_for<'a>(
        &'a self,
        pool: &'a Pool,
    ) -> impl Iterator<Item = &'a L2Advertisement> + 'a {
        self.advertisements.iter().filter(move |a| a.covers(pool))
    }

    /// Addresses per family over all pools.
    pub fn totals(&self) -> BTreeMap<Family, Count> {
        Family::ALL
            .iter()
            .map(|f| {
                let total = self
                    .pools
                    .iter()
                    .fold(Count::ZERO, |acc, p| acc.saturating_add(p.size(*f)));
                (*f, total)
            })
            .collect()
    }
}

/// The outcome of reading a configuration: the config when it has no error, and every
/// diagnostic, sorted by file and line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The configuration, present when there is no error.
    pub config: Option<Config>,
    /// Errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// The notes: where ferrolb applies a valid field otherwise than MetalLB.
    pub fn notes(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Note)
    }

    /// Whether the configuration may be used; under `strict` warnings count as errors.
    pub fn is_valid(&self, strict: bool) -> bool {
        self.config.is_some() && !(strict && self.warnings().next().is_some())
    }
}

/// Parses and validates a set of files given as `(name, bytes)`, reading every namespace.
pub fn load<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Report {
    load_with(files, &Options::default())
}

/// Parses and validates a set of objects read from the Kubernetes API, each given as `(namespace,
/// document)`, under `options`: the same rules and messages as for files, with the namespace and
/// the object's name where a file would give its name and line.
pub fn load_objects<'a>(
    objects: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    options: &Options,
) -> Report {
    let raw: Vec<RawFile> = objects
        .into_iter()
        .map(|(namespace, bytes)| parse_object(namespace, bytes))
        .collect();
    validate_with(&raw, options)
}

/// Parses and validates a set of files given as `(name, bytes)` under `options`.
pub fn load_with<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    options: &Options,
) -> Report {
    let raw: Vec<RawFile> = files
        .into_iter()
        .map(|(name, bytes)| parse_file(name, bytes))
        .collect();
    validate_with(&raw, options)
}
