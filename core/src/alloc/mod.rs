//! The allocator: which address each `type: LoadBalancer` Service gets, by MetalLB's rules.
//!
//! The state is per pool and family a [`FreeSpace`] (free intervals) plus who holds each
//! address. Every operation costs O(log n) in intervals and holders, never a scan of the pool or
//! of all Services, so the reconciler can settle one Service per watch event.
//!
//! Order of choice for a Service:
//! 1. addresses it asks for (`metallb.io/loadBalancerIPs` or `spec.loadBalancerIP`), from any
//!    pool that serves it, whether `autoAssign` or not; when it also names a pool
//!    (`metallb.io/address-pool`), the addresses must be in that pool, or the request is
//!    incompatible and the Service stays pending (MetalLB's rule);
//! 2. else the pool named by `metallb.io/address-pool`, whether `autoAssign` or not;
//! 3. else the `autoAssign` pools whose `serviceAllocation` matches it, by priority then name;
//! 4. else any `autoAssign` pool without `serviceAllocation`, by name.
//!
//! A pool with `serviceAllocation` serves only the Services it matches, in every step. A Service
//! with an `allow-shared-ip` key never takes an address of a pool one of whose L2Advertisements
//! selects it by `serviceSelectors` (MetalLB's rule; it stays pending, with the reason).
//! Addresses a Service already holds are kept while still valid; [`Allocator::allocate_all`]
//! settles holders first, then the others by creation time, namespace and name, so the result
//! never depends on the order of its input.

mod free;
mod reason;
mod request;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

pub use free::FreeSpace;
pub use reason::{Ignored, Pending, PendingKind};
pub use request::{
    ANNOTATION_PREFIXES, Families, FamilyPolicy, Port, ServiceKey, ServiceRequest, Sharing,
};

use crate::config::{Config, Pool};

/// Hash maps keyed by Service names and addresses. foldhash is several times faster than the
/// default SipHash on these short keys and still seeds itself per process.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use crate::net::{self, Count, Family};

/// What became of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It holds these addresses (primary family first), all from `pool`.
    Allocated {
        /// The addresses.
        ips: Vec<IpAddr>,
        /// The pool they come from.
        pool: String,
    },
    /// It waits for an address, for the reason given.
    Pending {
        /// Why (its `Display` is the words for people).
        reason: Pending,
    },
    /// It is not ferrolb's to serve.
    Ignored {
        /// Why.
        reason: Ignored,
    },
}

impl Outcome {
    /// The addresses, when allocated.
    pub fn ips(&self) -> &[IpAddr] {
        match self {
            Outcome::Allocated { ips, .. } => ips,
            _ => &[],
        }
    }

    /// The pool, when allocated.
    pub fn pool(&self) -> Option<&str> {
        match self {
            Outcome::Allocated { pool, .. } => Some(pool),
            _ => None,
        }
    }
}

/// The outcome for one Service and what it held before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The Service.
    pub key: ServiceKey,
    /// What became of it.
    pub outcome: Outcome,
    /// The addresses it held before (from the allocator, or its status).
    pub previous: Vec<IpAddr>,
}

impl Decision {
    /// True when a Service ferrolb serves held addresses and now holds others (or none).
    pub fn moved(&self) -> bool {
        !matches!(self.outcome, Outcome::Ignored { .. })
            && !self.previous.is_empty()
            && self.previous != self.outcome.ips()
    }
}

/// Use of one pool in one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    /// The pool.
    pub pool: String,
    /// The family.
    pub family: Family,
    /// Addresses held by at least one Service.
    pub in_use: u128,
    /// Addresses the pool can hand out.
    pub total: Count,
}

#[derive(Clone, Debug)]
struct PoolState {
    free: [FreeSpace; 2],
    in_use: [u128; 2],
}

#[derive(Clone, Debug)]
struct Held {
    ips: Vec<IpAddr>,
    /// Index into `Config::pools` (and `Allocator::pools`).
    pool: usize,
    sharing: Arc<Sharing>,
}

fn slot(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// Allocation state for one configuration. A new configuration means a new allocator, seeded
/// again from the Services' current addresses.
#[derive(Clone, Debug)]
pub struct Allocator {
    config: Config,
    lb_class: Option<String>,
    /// Free space and use of each pool, in the order of `config.pools`.
    pools: Vec<PoolState>,
    /// Every pool range `(family, start, end, pool index)`, sorted, for "which pool holds ip".
    index: Vec<(Family, u128, u128, usize)>,
    holders: HashMap<IpAddr, Vec<Arc<Sharing>>>,
    held: HashMap<ServiceKey, Held>,
    /// Addresses held under each `allow-shared-ip` key.
    shared: HashMap<String, BTreeSet<IpAddr>>,
}

impl Allocator {
    /// An allocator with every address free. With `lb_class`, only Services of that
    /// `loadBalancerClass` are served; without, only Services without a class.
    pub fn new(config: Config, lb_class: Option<String>) -> Self {
        let pools = config
            .pools
            .iter()
            .map(|p| PoolState {
                free: [
                    FreeSpace::new(Family::V4, &p.v4, p.avoid_buggy_ips),
                    FreeSpace::new(Family::V6, &p.v6, p.avoid_buggy_ips),
                ],
                in_use: [0, 0],
            })
            .collect();
        let mut index: Vec<_> = config
            .pools
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                Family::ALL.into_iter().flat_map(move |f| {
                    p.set(f)
                        .intervals()
                        .iter()
                        .map(move |iv| (f, iv.start, iv.end, i))
                })
            })
            .collect();
        index.sort_unstable();
        Allocator {
            config,
            lb_class,
            pools,
            index,
            holders: HashMap::default(),
            held: HashMap::default(),
            shared: HashMap::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pool holding `ip`, if any (pools never overlap).
    pub fn pool_of(&self, ip: IpAddr) -> Option<&Pool> {
        self.pool_index(ip).map(|i| &self.config.pools[i])
    }

    fn pool_index(&self, ip: IpAddr) -> Option<usize> {
        let family = Family::of(ip);
        let n = net::to_u128(ip);
        let i = self
            .index
            .partition_point(|&(f, _, end, _)| (f, end) < (family, n));
        let &(f, start, _, pool) = self.index.get(i)?;
        (f == family && start <= n).then_some(pool)
    }

    /// The Services holding `ip`.
    pub fn holders(&self, ip: IpAddr) -> impl Iterator<Item = &ServiceKey> {
        self.holders.get(&ip).into_iter().flatten().map(|s| &s.key)
    }

    /// The addresses and pool a Service holds.
    pub fn held(&self, key: &ServiceKey) -> Option<(&[IpAddr], &str)> {
        self.held
            .get(key)
            .map(|h| (h.ips.as_slice(), self.config.pools[h.pool].name.as_str()))
    }

    /// Use of every pool per family, pools by name, IPv4 first; families a pool lacks are left out.
    pub fn usage(&self) -> Vec<PoolUsage> {
        let mut out = Vec::new();
        for (p, state) in self.config.pools.iter().zip(&self.pools) {
            for f in Family::ALL {
                let total = p.size(f);
                if total.is_zero() {
                    continue;
                }
                out.push(PoolUsage {
                    pool: p.name.clone(),
                    family: f,
                    in_use: state.in_use[slot(f)],
                    total,
                });
            }
        }
        out
    }

    /// Settles every Service: holders first, then the rest by creation time, namespace and
    /// name. Decisions come back in input order.
    pub fn allocate_all(&mut self, requests: &[ServiceRequest]) -> Vec<Decision> {
        // Sort keys computed once: holders first, then creation time (as a number, so most
        // comparisons never touch the strings), then namespace and name.
        let mut order: Vec<(bool, u64, &Option<String>, &ServiceKey, usize)> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let waits = r.current.is_empty()
                    && (self.held.is_empty() || !self.held.contains_key(&r.key));
                let created = r.created.as_deref().map_or(0, timestamp_key);
                (waits, created, &r.created, &r.key, i)
            })
            .collect();
        order.sort_unstable();
        let order: Vec<usize> = order.into_iter().map(|(.., i)| i).collect();
        // Sized once, rather than rehashed as they grow.
        self.held.reserve(requests.len());
        self.holders.reserve(requests.len());
        let mut decisions: Vec<Option<Decision>> = vec![None; requests.len()];
        for i in order {
            decisions[i] = Some(self.settle(&requests[i]));
        }
        decisions.into_iter().flatten().collect()
    }

    /// Decides one Service against the current state, keeping what it holds when still valid.
    pub fn settle(&mut self, req: &ServiceRequest) -> Decision {
        let previous = match self.release(&req.key) {
            Some(ips) => ips,
            None => req.current.clone(),
        };
        let sharing = Arc::new(req.sharing());
        let outcome = self.decide(req, &sharing, &previous);
        if let Outcome::Allocated { ips, .. } = &outcome {
            self.reserve(req, sharing, ips);
        }
        Decision {
            key: req.key.clone(),
            outcome,
            previous,
        }
    }

    /// Forgets a Service (deleted, or no longer ferrolb's), freeing what only it held.
    pub fn release(&mut self, key: &ServiceKey) -> Option<Vec<IpAddr>> {
        let held = self.held.remove(key)?;
        for ip in &held.ips {
            let Some(list) = self.holders.get_mut(ip) else {
                continue;
            };
            list.retain(|s| s.key != *key);
            if list.is_empty() {
                self.holders.remove(ip);
                if let Some(state) = self.pools.get_mut(held.pool) {
                    let f = Family::of(*ip);
                    state.free[slot(f)].insert(net::to_u128(*ip));
                    state.in_use[slot(f)] = state.in_use[slot(f)].saturating_sub(1);
                }
                if let Some(k) = &held.sharing.shared_key {
                    if let Some(set) = self.shared.get_mut(k) {
                        set.remove(ip);
                    }
                }
            }
        }
        Some(held.ips)
    }

    /// Takes `ips` (all in one pool, checked by the caller) for the Service.
    fn reserve(&mut self, req: &ServiceRequest, sharing: Arc<Sharing>, ips: &[IpAddr]) {
        let Some(pool) = ips.first().and_then(|ip| self.pool_index(*ip)) else {
            return;
        };
        for ip in ips {
            let list = self.holders.entry(*ip).or_default();
            if list.is_empty() {
                let state = &mut self.pools[pool];
                let f = Family::of(*ip);
                state.free[slot(f)].remove(net::to_u128(*ip));
                state.in_use[slot(f)] += 1;
            }
            list.push(Arc::clone(&sharing));
            if let Some(k) = &sharing.shared_key {
                self.shared.entry(k.clone()).or_default().insert(*ip);
            }
        }
        self.held.insert(
            req.key.clone(),
            Held {
                ips: ips.to_vec(),
                pool,
                sharing,
            },
        );
    }

    /// Whether this allocator serves the Service at all.
    fn ignore_reason(&self, req: &ServiceRequest) -> Option<Ignored> {
        if req.service_type != "LoadBalancer" {
            let t = if req.service_type.is_empty() {
                "ClusterIP"
            } else {
                &req.service_type
            };
            return Some(Ignored::NotLoadBalancer {
                service_type: t.to_string(),
            });
        }
        match (&self.lb_class, &req.load_balancer_class) {
            (None, Some(c)) => Some(Ignored::OtherClass { class: c.clone() }),
            (Some(mine), None) => Some(Ignored::NoClass { mine: mine.clone() }),
            (Some(mine), Some(c)) if mine != c => Some(Ignored::ClassMismatch {
                class: c.clone(),
                mine: mine.clone(),
            }),
            _ => None,
        }
    }

    fn decide(&self, req: &ServiceRequest, sharing: &Sharing, previous: &[IpAddr]) -> Outcome {
        if let Some(reason) = self.ignore_reason(req) {
            return Outcome::Ignored { reason };
        }
        let requested = match req.requested_ips() {
            Ok(r) => r,
            Err(why) => {
                return Outcome::Pending {
                    reason: Pending::BadRequest(why),
                };
            }
        };
        if !previous.is_empty() && self.check_keep(req, sharing, previous, &requested).is_ok() {
            if let Some(pool) = self.pool_of(previous[0]) {
                return Outcome::Allocated {
                    ips: previous.to_vec(),
                    pool: pool.name.clone(),
                };
            }
        }
        let result = if !requested.is_empty() {
            self.check_requested(req, sharing, &requested)
        } else if let Some(name) = req.annotation("address-pool") {
            match self.config.pool_position(name) {
                None => Err(Pending::NoSuchPool(name.to_string())),
                Some(i) => {
                    let pool = &self.config.pools[i];
                    self.admits(pool, req)
                        .and_then(|()| self.sharing_allowed(pool, req))
                        .and_then(|()| self.take_from(i, req, sharing))
                        .map(|ips| (ips, pool.name.clone()))
                }
            }
        } else {
            self.auto_assign(req, sharing)
        };
        match result {
            Ok((ips, pool)) => Outcome::Allocated { ips, pool },
            Err(reason) => Outcome::Pending { reason },
        }
    }

    /// Whether the Service may keep `ips`: the families fit, they match what it asks for, they
    /// lie in one pool that serves it, and sharing is still fine.
    fn check_keep(
        &self,
        req: &ServiceRequest,
        sharing: &Sharing,
        ips: &[IpAddr],
        requested: &[IpAddr],
    ) -> Result<(), Pending> {
        if !requested.is_empty() {
            let a: BTreeSet<_> = requested.iter().collect();
            let b: BTreeSet<_> = ips.iter().collect();
            if a != b {
                return Err(Pending::AsksForOtherAddresses);
            }
        }
        let families = req.wanted_families();
        let (wanted, required) = (families.list(), families.required);
        let families: Vec<Family> = ips.iter().map(|ip| Family::of(*ip)).collect();
        let mut unique = families.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != families.len()
            || families.iter().any(|f| !wanted.contains(f))
            || (required && families.len() != wanted.len())
        {
            return Err(Pending::FamiliesChanged);
        }
        let pool = self.single_pool(ips)?;
        if let Some(name) = req.annotation("address-pool") {
            if name != pool.name {
                return Err(Pending::AsksForPool(name.to_string()));
            }
        }
        self.admits(pool, req)?;
        self.sharing_allowed(pool, req)?;
        for ip in ips {
            self.check_shareable(sharing, *ip)?;
        }
        Ok(())
    }

    /// The one pool holding every address in `ips`.
    fn single_pool(&self, ips: &[IpAddr]) -> Result<&Pool, Pending> {
        let mut found: Option<&Pool> = None;
        for ip in ips {
            let pool = self.pool_of(*ip).ok_or(Pending::NotInPool(*ip))?;
            if !pool.contains(*ip) {
                return Err(Pending::BuggyAddress {
                    ip: *ip,
                    pool: pool.name.clone(),
                });
            }
            match found {
                Some(f) if f.name != pool.name => {
                    return Err(Pending::DifferentPools {
                        first: ips[0],
                        ip: *ip,
                        first_pool: f.name.clone(),
                        pool: pool.name.clone(),
                    });
                }
                _ => found = Some(pool),
            }
        }
        found.ok_or(Pending::NoAddress)
    }

    fn check_shareable(&self, sharing: &Sharing, ip: IpAddr) -> Result<(), Pending> {
        for holder in self.holders.get(&ip).into_iter().flatten() {
            if holder.key == sharing.key {
                continue;
            }
            if let Some(why) = sharing.conflict_with(holder) {
                return Err(Pending::AddressTaken { ip, why });
            }
        }
        Ok(())
    }

    fn check_requested(
        &self,
        req: &ServiceRequest,
        sharing: &Sharing,
        requested: &[IpAddr],
    ) -> Result<(Vec<IpAddr>, String), Pending> {
        let families = req.wanted_families();
        let (wanted, required) = (families.list(), families.required);
        for ip in requested {
            let f = Family::of(*ip);
            if !wanted.contains(&f) {
                return Err(Pending::WrongFamily {
                    ip: *ip,
                    family: f,
                    service: wanted[0],
                });
            }
        }
        if required && requested.len() < wanted.len() {
            return Err(Pending::DualStackNeedsTwo);
        }
        let pool = self.single_pool(requested)?;
        if let Some(name) = req.annotation("address-pool") {
            if name != pool.name {
                return Err(Pending::PoolMismatch {
                    asked: requested.to_vec(),
                    wanted: name.to_string(),
                    pool: pool.name.clone(),
                });
            }
        }
        self.admits(pool, req)?;
        self.sharing_allowed(pool, req)?;
        for ip in requested {
            self.check_shareable(sharing, *ip)?;
        }
        Ok((requested.to_vec(), pool.name.clone()))
    }

    /// Whether `pool`'s `serviceAllocation` lets the Service in: its namespace must be listed or
    /// selected (when the pool names namespaces), and a service selector must match (when the
    /// pool has service selectors).
    fn admits(&self, pool: &Pool, req: &ServiceRequest) -> Result<(), Pending> {
        let Some(a) = &pool.allocation else {
            return Ok(());
        };
        let ns_rule = !a.namespaces.is_empty() || !a.namespace_selectors.is_empty();
        let ns_ok = a.namespaces.iter().any(|n| **n == *req.key.namespace)
            || a.namespace_selectors
                .iter()
                .any(|s| s.matches(&req.namespace_labels));
        if ns_rule && !ns_ok {
            return Err(Pending::NamespaceNotServed {
                pool: pool.name.clone(),
                namespace: req.key.namespace.to_string(),
            });
        }
        if !a.service_selectors.is_empty()
            && !a.service_selectors.iter().any(|s| s.matches(&req.labels))
        {
            return Err(Pending::NotSelected {
                pool: pool.name.clone(),
            });
        }
        Ok(())
    }

    /// MetalLB's rule for `L2Advertisement.spec.serviceSelectors`: a Service with an
    /// `allow-shared-ip` key may not take an address of `pool` when an advertisement of the pool
    /// has service selectors that match it. (Services sharing an address could otherwise be
    /// covered by different advertisements, with different nodes.) MetalLB's speakers refuse
    /// to announce such a Service; ferrolb leaves it pending, with this reason, rather than
    /// hand out an address that nobody answers for.
    fn sharing_allowed(&self, pool: &Pool, req: &ServiceRequest) -> Result<(), Pending> {
        if req.sharing_key().is_none() {
            return Ok(());
        }
        match self
            .config
            .advertisements_for(pool)
            .find(|a| !a.service_selectors.is_empty() && a.selects_service(&req.labels))
        {
            Some(ad) => Err(Pending::SharingWithServiceSelectors {
                advertisement: ad.name.clone(),
                pool: pool.name.clone(),
            }),
            None => Ok(()),
        }
    }

    fn auto_assign(
        &self,
        req: &ServiceRequest,
        sharing: &Sharing,
    ) -> Result<(Vec<IpAddr>, String), Pending> {
        let pools = &self.config.pools;
        let mut matching: Vec<usize> = (0..pools.len())
            .filter(|&i| {
                let p = &pools[i];
                p.auto_assign && p.allocation.is_some() && self.admits(p, req).is_ok()
            })
            .collect();
        matching.sort_by(|&a, &b| {
            (pools[a].priority_rank(), &pools[a].name)
                .cmp(&(pools[b].priority_rank(), &pools[b].name))
        });
        let general =
            (0..pools.len()).filter(|&i| pools[i].auto_assign && pools[i].allocation.is_none());
        let mut reasons = Vec::new();
        for i in matching.into_iter().chain(general) {
            match self
                .sharing_allowed(&pools[i], req)
                .and_then(|()| self.take_from(i, req, sharing))
            {
                Ok(ips) => return Ok((ips, pools[i].name.clone())),
                Err(why) => reasons.push(why),
            }
        }
        match reasons.len() {
            0 => Err(Pending::NoPool),
            1 => Err(reasons.remove(0)),
            _ => Err(Pending::EveryPoolFull(reasons)),
        }
    }

    /// Finds addresses for the Service in `pool` (without taking them).
    fn take_from(
        &self,
        index: usize,
        req: &ServiceRequest,
        sharing: &Sharing,
    ) -> Result<Vec<IpAddr>, Pending> {
        let families = req.wanted_families();
        let (wanted, required) = (families.list(), families.required);
        let pool = &self.config.pools[index];
        let state = &self.pools[index];
        let mut ips = Vec::new();
        let mut missing = Vec::new();
        for (i, f) in wanted.iter().enumerate() {
            let total = pool.size(*f);
            if total.is_zero() {
                if required || (i == 0 && wanted.len() == 1) {
                    missing.push(Pending::NoFamily {
                        pool: pool.name.clone(),
                        families: vec![*f],
                    });
                }
                continue;
            }
            let free = state.free[slot(*f)].peek_lowest();
            let shared = self.lowest_shareable(sharing, pool, *f);
            let pick = match (free, shared) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match pick {
                Some(n) => ips.push(net::from_u128(*f, n)),
                None if required || wanted.len() == 1 || i == 0 => {
                    missing.push(Pending::Exhausted {
                        pool: pool.name.clone(),
                        family: *f,
                        in_use: state.in_use[slot(*f)],
                        total,
                    });
                }
                None => {}
            }
        }
        if !missing.is_empty() {
            return Err(Pending::in_pool(missing));
        }
        if ips.is_empty() {
            return Err(Pending::NoFamily {
                pool: pool.name.clone(),
                families: wanted.to_vec(),
            });
        }
        Ok(ips)
    }

    /// The lowest address of `pool` and `family` that Services with the same sharing key hold
    /// and that this Service may share.
    fn lowest_shareable(&self, sharing: &Sharing, pool: &Pool, family: Family) -> Option<u128> {
        let key = sharing.shared_key.as_ref()?;
        self.shared
            .get(key)?
            .iter()
            // Pools never overlap, so an address the pool contains is in no other pool.
            .filter(|ip| Family::of(**ip) == family && pool.contains(**ip))
            .find(|ip| self.check_shareable(sharing, **ip).is_ok())
            .map(|ip| net::to_u128(*ip))
    }
}

/// An RFC 3339 timestamp's digits as a number (`2026-01-02T03:04:05Z` → 20260102030405), which
/// orders like the time for the second-precision UTC form Kubernetes writes. Anything else maps
/// to `u64::MAX` and is ordered by its text after that.
fn timestamp_key(text: &str) -> u64 {
    let digits = text.bytes().take(19).filter(u8::is_ascii_digit);
    let mut n = 0u64;
    let mut count = 0;
    for d in digits {
        n = n * 10 + u64::from(d - b'0');
        count += 1;
    }
    if count == 14 { n } else { u64::MAX }
}
