//! Why a Service waits for an address, or is not served at all: typed, so that feedback and
//! metrics can tell a full pool from a taken address, and with the words people read as their
//! `Display`.

use std::fmt;
use std::net::IpAddr;

use crate::net::{Count, Family};

/// Why a Service waits for an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    /// Its request (`metallb.io/loadBalancerIPs` or `spec.loadBalancerIP`) cannot be read.
    BadRequest(String),
    /// It asks for an address of a family the Service does not use.
    WrongFamily {
        /// The address asked for.
        ip: IpAddr,
        /// Its family.
        family: Family,
        /// The Service's only family.
        service: Family,
    },
    /// `RequireDualStack` with only one address named.
    DualStackNeedsTwo,
    /// An address it asks for (or holds) is in no pool.
    NotInPool(IpAddr),
    /// An address ending in .0 or .255 in a pool with `avoidBuggyIPs`.
    BuggyAddress {
        /// The address.
        ip: IpAddr,
        /// The pool.
        pool: String,
    },
    /// Its addresses lie in two pools.
    DifferentPools {
        /// The first address.
        first: IpAddr,
        /// The one in another pool.
        ip: IpAddr,
        /// The first address's pool.
        first_pool: String,
        /// The other's.
        pool: String,
    },
    /// No address at all (an empty request).
    NoAddress,
    /// The address is held by a Service it may not share it with.
    AddressTaken {
        /// The address.
        ip: IpAddr,
        /// Who holds it and why they cannot share.
        why: String,
    },
    /// The addresses it asks for are not in the pool its `address-pool` annotation names.
    PoolMismatch {
        /// The addresses asked for.
        asked: Vec<IpAddr>,
        /// The pool the annotation names.
        wanted: String,
        /// The pool the addresses are in.
        pool: String,
    },
    /// The pool its `address-pool` annotation names does not exist.
    NoSuchPool(String),
    /// The pool's `serviceAllocation` does not list or select its namespace.
    NamespaceNotServed {
        /// The pool.
        pool: String,
        /// The Service's namespace.
        namespace: String,
    },
    /// The pool's `serviceAllocation.serviceSelectors` do not match it.
    NotSelected {
        /// The pool.
        pool: String,
    },
    /// It has an `allow-shared-ip` key and an advertisement of the pool selects it by
    /// `serviceSelectors` (MetalLB's rule).
    SharingWithServiceSelectors {
        /// The advertisement.
        advertisement: String,
        /// The pool.
        pool: String,
    },
    /// No pool may serve it.
    NoPool,
    /// The pool has no addresses of a family it needs.
    NoFamily {
        /// The pool.
        pool: String,
        /// The families it would take, in order.
        families: Vec<Family>,
    },
    /// The pool has no free address of a family it needs.
    Exhausted {
        /// The pool.
        pool: String,
        /// The family.
        family: Family,
        /// Addresses in use.
        in_use: u128,
        /// Addresses in the pool.
        total: Count,
    },
    /// Several of the above for one pool (one per family).
    InPool(Vec<Pending>),
    /// Every pool it may use refused it, each for its reason.
    EveryPoolFull(Vec<Pending>),
    /// (Addresses it holds and may not keep.) It now asks for other addresses.
    AsksForOtherAddresses,
    /// (Addresses it holds and may not keep.) Its address families changed.
    FamiliesChanged,
    /// (Addresses it holds and may not keep.) It now asks for another pool.
    AsksForPool(String),
}

/// What kind of reason a [`Pending`] is: what metrics and alerts tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PendingKind {
    /// It asks for something impossible (a malformed or contradictory request).
    Request,
    /// An address it needs is held by a Service it may not share with.
    Taken,
    /// No free address in the pools it may use.
    Full,
    /// No pool serves it.
    NotServed,
    /// What it held no longer fits.
    Changed,
}

impl PendingKind {
    /// Every kind, in order.
    pub const ALL: [PendingKind; 5] = [
        PendingKind::Request,
        PendingKind::Taken,
        PendingKind::Full,
        PendingKind::NotServed,
        PendingKind::Changed,
    ];

    /// A short label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingKind::Request => "request",
            PendingKind::Taken => "taken",
            PendingKind::Full => "full",
            PendingKind::NotServed => "not_served",
            PendingKind::Changed => "changed",
        }
    }
}

impl Pending {
    /// What kind of reason this is. Several reasons (one per pool or family) are `Full` when
    /// all of them are, else `NotServed`.
    pub fn kind(&self) -> PendingKind {
        match self {
            Pending::BadRequest(_)
            | Pending::WrongFamily { .. }
            | Pending::DualStackNeedsTwo
            | Pending::NotInPool(_)
            | Pending::BuggyAddress { .. }
            | Pending::DifferentPools { .. }
            | Pending::NoAddress
            | Pending::PoolMismatch { .. }
            | Pending::NoSuchPool(_) => PendingKind::Request,
            Pending::AddressTaken { .. } => PendingKind::Taken,
            Pending::Exhausted { .. } => PendingKind::Full,
            Pending::NamespaceNotServed { .. }
            | Pending::NotSelected { .. }
            | Pending::SharingWithServiceSelectors { .. }
            | Pending::NoPool
            | Pending::NoFamily { .. } => PendingKind::NotServed,
            Pending::InPool(all) | Pending::EveryPoolFull(all) => {
                if all.iter().all(|p| p.kind() == PendingKind::Full) {
                    PendingKind::Full
                } else {
                    PendingKind::NotServed
                }
            }
            Pending::AsksForOtherAddresses | Pending::FamiliesChanged | Pending::AsksForPool(_) => {
                PendingKind::Changed
            }
        }
    }

    /// One reason from several (one stays itself).
    pub(crate) fn in_pool(mut all: Vec<Pending>) -> Pending {
        if all.len() == 1 {
            all.remove(0)
        } else {
            Pending::InPool(all)
        }
    }
}

fn joined(all: &[Pending], separator: &str) -> String {
    all.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pending::BadRequest(why) => f.write_str(why),
            Pending::WrongFamily {
                ip,
                family,
                service,
            } => write!(
                f,
                "it asks for {ip}, an {family} address, but the Service is {service} only"
            ),
            Pending::DualStackNeedsTwo => f.write_str(
                "RequireDualStack needs one address of each family, but loadBalancerIPs names one",
            ),
            Pending::NotInPool(ip) => write!(f, "{ip} is in no pool"),
            Pending::BuggyAddress { ip, pool } => write!(
                f,
                "{ip} ends in .0 or .255 and pool {pool:?} avoids such addresses (avoidBuggyIPs)"
            ),
            Pending::DifferentPools {
                first,
                ip,
                first_pool,
                pool,
            } => write!(
                f,
                "{first} and {ip} are in different pools ({first_pool:?} and {pool:?}); they must come from one pool"
            ),
            Pending::NoAddress => f.write_str("no address"),
            Pending::AddressTaken { ip, why } => write!(f, "{ip} is {why}"),
            Pending::PoolMismatch {
                asked,
                wanted,
                pool,
            } => {
                let list: Vec<String> = asked.iter().map(ToString::to_string).collect();
                let are = if asked.len() == 1 {
                    "that address is"
                } else {
                    "those addresses are"
                };
                write!(
                    f,
                    "incompatible request: it asks for {} from pool {wanted:?} (address-pool annotation), but {are} in pool {pool:?}",
                    list.join(",")
                )
            }
            Pending::NoSuchPool(name) => {
                write!(f, "pool {name:?} (address-pool annotation) does not exist")
            }
            Pending::NamespaceNotServed { pool, namespace } => write!(
                f,
                "pool {pool:?} does not serve namespace {namespace:?} (serviceAllocation)"
            ),
            Pending::NotSelected { pool } => write!(
                f,
                "pool {pool:?} serves only Services matching its serviceSelectors"
            ),
            Pending::SharingWithServiceSelectors {
                advertisement,
                pool,
            } => write!(
                f,
                "it has an allow-shared-ip key, and L2Advertisement {advertisement:?} of pool {pool:?} selects it by serviceSelectors; a Service matched by serviceSelectors cannot share its address"
            ),
            Pending::NoPool => f.write_str(
                "no pool serves this Service: no autoAssign pool without serviceAllocation, and no serviceAllocation matches it",
            ),
            Pending::NoFamily { pool, families } => {
                let list: Vec<&str> = families.iter().map(|f| f.as_str()).collect();
                write!(f, "pool {pool:?} has no {} addresses", list.join(" or "))
            }
            Pending::Exhausted {
                pool,
                family,
                in_use,
                total,
            } => write!(
                f,
                "pool {pool:?} is exhausted ({in_use} of {total} {family} addresses in use)"
            ),
            Pending::InPool(all) => f.write_str(&joined(all, "; ")),
            Pending::EveryPoolFull(all) => {
                write!(f, "every pool it may use is full: {}", joined(all, "; "))
            }
            Pending::AsksForOtherAddresses => f.write_str("it asks for other addresses"),
            Pending::FamiliesChanged => f.write_str("its address families changed"),
            Pending::AsksForPool(name) => write!(f, "it asks for pool {name:?}"),
        }
    }
}

/// Why a Service is not ferrolb's to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Not `type: LoadBalancer`.
    NotLoadBalancer {
        /// Its type (`ClusterIP` when unset).
        service_type: String,
    },
    /// Its `loadBalancerClass` names another load balancer, and this one serves Services
    /// without a class.
    OtherClass {
        /// Its class.
        class: String,
    },
    /// It has no class, and this one serves only its own class.
    NoClass {
        /// This ferrolb's class.
        mine: String,
    },
    /// Its class is not this ferrolb's.
    ClassMismatch {
        /// Its class.
        class: String,
        /// This ferrolb's class.
        mine: String,
    },
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::NotLoadBalancer { service_type } => {
                write!(f, "not a LoadBalancer Service (type {service_type})")
            }
            Ignored::OtherClass { class } => {
                write!(
                    f,
                    "loadBalancerClass {class:?} belongs to another load balancer"
                )
            }
            Ignored::NoClass { mine } => write!(
                f,
                "has no loadBalancerClass; this ferrolb serves class {mine:?} only"
            ),
            Ignored::ClassMismatch { class, mine } => write!(
                f,
                "loadBalancerClass {class:?} belongs to another load balancer (this one is {mine:?})"
            ),
        }
    }
}
