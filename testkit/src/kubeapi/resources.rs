//! The resource types the fake API server serves, as discovery describes them.

use std::fmt;

/// One served resource type (a group, version and plural name), with what discovery says of it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResourceType {
    /// API group; empty for the core (legacy `/api/v1`) group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Plural resource name, the path segment (`services`).
    pub plural: &'static str,
    /// Singular name (`service`).
    pub singular: &'static str,
    /// The object kind (`Service`); lists are `{kind}List`.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts (`svc`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`), for `kubectl get all`.
    pub categories: &'static [&'static str],
    /// Whether the type has a `status` subresource: then writes to the main resource keep the
    /// stored `.status` and writes to `/status` change only `.status`.
    pub has_status: bool,
    /// Whether a create drops the given `.status` (Services do; Nodes keep theirs).
    pub reset_status_on_create: bool,
}

/// Every verb the main resource supports.
pub(crate) const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// The verbs of a `status` subresource.
pub(crate) const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// The served types, in discovery order. Where two share a plural name (`events`), the first
/// one wins for bare names, as kubectl prefers the core group.
pub(crate) static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        has_status: true,
        reset_status_on_create: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        has_status: true,
        reset_status_on_create: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        has_status: true,
        reset_status_on_create: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        has_status: false,
        reset_status_on_create: false,
    },
    ResourceType {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        has_status: false,
        reset_status_on_create: false,
    },
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        has_status: false,
        reset_status_on_create: false,
    },
];

impl ResourceType {
    /// `v1` or `group/version`, as in an object's `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `services` or `events.events.k8s.io`: the name errors and the request log use.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind of a list of these objects.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The index of this type in [`RESOURCES`], which keys the store.
    pub fn index(&'static self) -> usize {
        RESOURCES
            .iter()
            .position(|r| std::ptr::eq(r, self))
            .unwrap_or_default()
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.qualified())
    }
}

/// The type served at `group`/`version` under `plural`.
pub(crate) fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The type of objects with this `apiVersion` and `kind`.
pub(crate) fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// The type a test names: a plural (`services`), a plural with its group
/// (`events.events.k8s.io`), a singular, a short name or a kind, case-insensitively.
pub(crate) fn by_name(name: &str) -> Option<&'static ResourceType> {
    let name = name.to_ascii_lowercase();
    RESOURCES
        .iter()
        .find(|r| r.qualified() == name)
        .or_else(|| {
            RESOURCES.iter().find(|r| {
                r.plural == name
                    || r.singular == name
                    || r.short_names.contains(&name.as_str())
                    || r.kind.to_ascii_lowercase() == name
            })
        })
}

/// The API groups other than the core group, in discovery order, each with its versions.
pub(crate) fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_prefer_the_core_group_and_qualified_names_pick_the_group() {
        assert_eq!(by_name("events").map(|r| r.group), Some(""));
        assert_eq!(
            by_name("events.events.k8s.io").map(|r| r.group),
            Some("events.k8s.io")
        );
        assert_eq!(by_name("svc").map(|r| r.plural), Some("services"));
        assert_eq!(by_name("Service").map(|r| r.plural), Some("services"));
        assert!(by_name("pods").is_none());
    }

    #[test]
    fn index_finds_each_type() {
        for (i, r) in RESOURCES.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
