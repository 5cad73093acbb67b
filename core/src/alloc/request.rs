//! What the allocator needs to know about a Service, converted at the edge from Kubernetes
//! objects or manifest files, and the rules read from it (annotations, families, sharing).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::net::Family;
use crate::selector::Labels;

/// The two annotation prefixes MetalLB has used; the first wins when both are set.
pub const ANNOTATION_PREFIXES: [&str; 2] = ["metallb.io/", "metallb.universe.tf/"];

/// A Service's identity. Cloning it is cheap (two reference counts), because the allocator
/// keeps it in several places per Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

impl Default for ServiceKey {
    fn default() -> Self {
        ServiceKey::new("", "")
    }
}

impl ServiceKey {
    /// A key from its parts.
    pub fn new(namespace: impl AsRef<str>, name: impl AsRef<str>) -> Self {
        ServiceKey {
            namespace: Arc::from(namespace.as_ref()),
            name: Arc::from(name.as_ref()),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FamilyPolicy {
    /// One address, of the Service's first family.
    #[default]
    SingleStack,
    /// Both families when the pool has both, else one.
    PreferDualStack,
    /// One address of each family from the same pool, or nothing.
    RequireDualStack,
}

impl FamilyPolicy {
    /// Reads the Kubernetes spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "SingleStack" => Some(FamilyPolicy::SingleStack),
            "PreferDualStack" => Some(FamilyPolicy::PreferDualStack),
            "RequireDualStack" => Some(FamilyPolicy::RequireDualStack),
            _ => None,
        }
    }
}

/// A port and its protocol, as `spec.ports` lists them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// The port number.
    pub port: i32,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// A Service, as the allocator sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRequest {
    /// Namespace and name.
    pub key: ServiceKey,
    /// `metadata.labels`.
    pub labels: Labels,
    /// The labels of the Service's namespace (for `namespaceSelectors`).
    pub namespace_labels: Labels,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.type` (`LoadBalancer`, `ClusterIP`, ...).
    pub service_type: String,
    /// `spec.loadBalancerIP` (deprecated in Kubernetes, still honoured).
    pub load_balancer_ip: Option<String>,
    /// `spec.loadBalancerClass`.
    pub load_balancer_class: Option<String>,
    /// `spec.ipFamilies`, in order.
    pub ip_families: Vec<Family>,
    /// `spec.ipFamilyPolicy`.
    pub ip_family_policy: FamilyPolicy,
    /// `spec.ports`.
    pub ports: Vec<Port>,
    /// `spec.externalTrafficPolicy` is `Local`.
    pub traffic_policy_local: bool,
    /// `spec.selector`.
    pub selector: BTreeMap<String, String>,
    /// `metadata.creationTimestamp` (RFC 3339, so text order is time order).
    pub created: Option<String>,
    /// The addresses in `status.loadBalancer.ingress`.
    pub current: Vec<IpAddr>,
}

impl ServiceRequest {
    /// The value of a MetalLB annotation under either prefix (`metallb.io/` first).
    pub fn annotation(&self, suffix: &str) -> Option<&str> {
        // A scan of the few annotations, rather than building each full key: no allocation.
        ANNOTATION_PREFIXES.iter().find_map(|p| {
            self.annotations
                .iter()
                .find(|(k, _)| k.strip_prefix(p) == Some(suffix))
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        })
    }

    /// The addresses the Service asks for: `loadBalancerIPs` (comma list) or
    /// `spec.loadBalancerIP`; an error when they cannot be read (the manifest checks refuse
    /// such a Service, the allocator leaves it pending).
    pub fn requested_ips(&self) -> Result<Vec<IpAddr>, String> {
        let annotation = self.annotation("loadBalancerIPs");
        let spec = self
            .load_balancer_ip
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let (source, text) = match (annotation, spec) {
            (Some(_), Some(_)) => {
                return Err(
                    "both spec.loadBalancerIP and the loadBalancerIPs annotation are set; use only the annotation"
                        .to_string(),
                );
            }
            (Some(t), None) => ("loadBalancerIPs", t),
            (None, Some(t)) => ("spec.loadBalancerIP", t),
            (None, None) => return Ok(Vec::new()),
        };
        let mut ips: Vec<IpAddr> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let ip: IpAddr = part
                .parse()
                .map_err(|_| format!("{source}: {part:?} is not an IP address"))?;
            if ips.iter().any(|other| Family::of(*other) == Family::of(ip)) {
                return Err(format!(
                    "{source} lists two {} addresses; at most one per family",
                    Family::of(ip)
                ));
            }
            ips.push(ip);
        }
        Ok(ips)
    }

    /// The sharing key (`allow-shared-ip`), when set.
    pub fn sharing_key(&self) -> Option<&str> {
        self.annotation("allow-shared-ip")
    }

    /// The families to allocate, in order of preference, and whether all of them are required.
    ///
    /// `SingleStack` takes the first of `spec.ipFamilies`; `RequireDualStack` both; and
    /// `PreferDualStack` both when `spec.ipFamilies` lists both, as the API server does on a
    /// dual-stack cluster (on a single-stack one it lists one, and a second address would be of
    /// no use). Without `spec.ipFamilies` (manifest files often omit it) IPv4 comes first, and
    /// `PreferDualStack` asks for both.
    pub fn wanted_families(&self) -> Families {
        let first = self.ip_families.first().copied().unwrap_or(Family::V4);
        let other = match first {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        };
        let listed_both = self.ip_families.iter().any(|f| *f != first);
        let (len, required) = match self.ip_family_policy {
            FamilyPolicy::SingleStack => (1, false),
            FamilyPolicy::RequireDualStack => (2, true),
            FamilyPolicy::PreferDualStack if !self.ip_families.is_empty() && !listed_both => {
                (1, false)
            }
            FamilyPolicy::PreferDualStack => (2, false),
        };
        Families {
            order: [first, other],
            len,
            required,
        }
    }
}

/// The families a Service wants, in order, without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Families {
    order: [Family; 2],
    len: usize,
    /// Whether every family listed is required (`RequireDualStack`).
    pub required: bool,
}

impl Families {
    /// The families, primary first.
    pub fn list(&self) -> &[Family] {
        &self.order[..self.len]
    }
}

/// What decides whether two Services may hold the same address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sharing {
    /// The Service.
    pub key: ServiceKey,
    /// Its `allow-shared-ip` key.
    pub shared_key: Option<String>,
    /// Its ports.
    pub ports: Vec<Port>,
    /// `externalTrafficPolicy: Local`.
    pub local: bool,
    /// Its pod selector.
    pub selector: BTreeMap<String, String>,
}

impl ServiceRequest {
    /// The facts that decide sharing.
    /// Without a sharing key nothing else matters (no sharing is possible), so ports and
    /// selector are kept only for Services that have one.
    pub fn sharing(&self) -> Sharing {
        let shared_key = self.sharing_key().map(str::to_string);
        let keyed = shared_key.is_some();
        Sharing {
            key: self.key.clone(),
            shared_key,
            ports: if keyed {
                self.ports.clone()
            } else {
                Vec::new()
            },
            local: self.traffic_policy_local,
            selector: if keyed {
                self.selector.clone()
            } else {
                BTreeMap::new()
            },
        }
    }
}

impl Sharing {
    /// Why this Service cannot share an address with `holder`, or `None` when it can: both
    /// carry the same non-empty `allow-shared-ip` key, no port/protocol pair is in both, and
    /// with `externalTrafficPolicy: Local` both are Local with identical selectors.
    pub fn conflict_with(&self, holder: &Sharing) -> Option<String> {
        let b = holder;
        match (&self.shared_key, &b.shared_key) {
            (Some(x), Some(y)) if x == y => {}
            (_, None) => return Some(format!("held by {} without a shared key", b.key)),
            (None, Some(_)) => {
                return Some(format!(
                    "held by {}, and this Service has no allow-shared-ip key",
                    b.key
                ));
            }
            (Some(_), Some(_)) => {
                return Some(format!("held by {} with a different shared key", b.key));
            }
        }
        if let Some(p) = self.ports.iter().find(|p| b.ports.contains(p)) {
            return Some(format!(
                "held by {}, whose port {}/{} collides",
                b.key, p.port, p.protocol
            ));
        }
        if (self.local || b.local) && !(self.local && b.local && self.selector == b.selector) {
            return Some(format!(
                "held by {}; with externalTrafficPolicy Local both Services need it and the same selector",
                b.key
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(key: Option<&str>, ports: &[(i32, &str)]) -> ServiceRequest {
        let mut s = ServiceRequest {
            key: ServiceKey::new("default", "s"),
            ..ServiceRequest::default()
        };
        if let Some(k) = key {
            s.annotations
                .insert("metallb.io/allow-shared-ip".into(), k.into());
        }
        s.ports = ports
            .iter()
            .map(|(p, proto)| Port {
                port: *p,
                protocol: proto.to_string(),
            })
            .collect();
        s
    }

    #[test]
    fn newer_annotation_prefix_wins() {
        let mut s = svc(None, &[]);
        s.annotations
            .insert("metallb.universe.tf/address-pool".into(), "old".into());
        assert_eq!(s.annotation("address-pool"), Some("old"));
        s.annotations
            .insert("metallb.io/address-pool".into(), "new".into());
        assert_eq!(s.annotation("address-pool"), Some("new"));
    }

    #[test]
    fn sharing_needs_same_key_and_disjoint_ports() {
        let dns_tcp = svc(Some("dns"), &[(53, "TCP")]);
        let dns_udp = svc(Some("dns"), &[(53, "UDP")]);
        assert_eq!(dns_tcp.sharing().conflict_with(&dns_udp.sharing()), None);
        assert!(
            dns_tcp
                .sharing()
                .conflict_with(&dns_tcp.sharing())
                .is_some()
        );
        let web = svc(Some("web"), &[(80, "TCP")]);
        assert!(dns_tcp.sharing().conflict_with(&web.sharing()).is_some());
        let unkeyed = svc(None, &[(80, "TCP")]);
        assert!(
            dns_tcp
                .sharing()
                .conflict_with(&unkeyed.sharing())
                .is_some()
        );
    }

    #[test]
    fn sharing_with_local_policy_needs_the_same_selector() {
        let mut a = svc(Some("k"), &[(80, "TCP")]);
        let mut b = svc(Some("k"), &[(443, "TCP")]);
        a.traffic_policy_local = true;
        assert!(a.sharing().conflict_with(&b.sharing()).is_some());
        b.traffic_policy_local = true;
        assert_eq!(a.sharing().conflict_with(&b.sharing()), None);
        b.selector.insert("app".into(), "other".into());
        assert!(a.sharing().conflict_with(&b.sharing()).is_some());
    }

    #[test]
    fn families_follow_the_policy() {
        let mut s = svc(None, &[]);
        let wanted = |s: &ServiceRequest| {
            let w = s.wanted_families();
            (w.list().to_vec(), w.required)
        };
        assert_eq!(wanted(&s), (vec![Family::V4], false));
        s.ip_families = vec![Family::V6, Family::V4];
        assert_eq!(wanted(&s), (vec![Family::V6], false));
        s.ip_family_policy = FamilyPolicy::RequireDualStack;
        assert_eq!(wanted(&s), (vec![Family::V6, Family::V4], true));
        s.ip_family_policy = FamilyPolicy::PreferDualStack;
        assert_eq!(wanted(&s), (vec![Family::V6, Family::V4], false));
        s.ip_families = vec![Family::V4];
        assert_eq!(wanted(&s), (vec![Family::V4], false));
        s.ip_families = vec![];
        assert_eq!(wanted(&s), (vec![Family::V4, Family::V6], false));
    }
}
