//! The reconciler's Prometheus metrics: ferrolb's names, and MetalLB's allocator metrics so that
//! existing dashboards keep working. Served by [`http`](crate::http).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ferrolb_core::alloc::{PendingKind, PoolUsage};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A pool and a family.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolFamily {
    /// The pool.
    pub pool: String,
    /// `IPv4` or `IPv6`.
    pub family: &'static str,
}

/// A pool (MetalLB's label set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// The pool.
    pub pool: String,
}

/// Why Services wait ([`PendingKind::as_str`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PendingLabel {
    /// `request`, `taken`, `full`, `not_served` or `changed`.
    pub reason: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the reconciler exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Addresses per pool and family.
    pub pool_addresses: Family<PoolFamily, FloatGauge>,
    /// Addresses in use per pool and family.
    pub pool_in_use: Family<PoolFamily, FloatGauge>,
    /// MetalLB's `metallb_allocator_addresses_total`.
    pub metallb_total: Family<PoolLabel, FloatGauge>,
    /// MetalLB's `metallb_allocator_addresses_in_use_total`.
    pub metallb_in_use: Family<PoolLabel, FloatGauge>,
    /// LoadBalancer Services waiting for an address, by reason.
    pub services_pending: Family<PendingLabel, Gauge>,
    /// 1 when a valid configuration is in force.
    pub config_loaded: Gauge,
    /// 1 when the newest configuration could not be used (the last good one stays in force).
    pub config_stale: Gauge,
    /// 1 on the leader.
    pub leader: Gauge,
    /// etcd keys written.
    pub etcd_writes: Counter,
    /// Failed etcd writes.
    pub etcd_errors: Counter,
    /// Kubernetes writes (status patches, events).
    pub kubernetes_writes: Counter,
    /// Failed Kubernetes writes.
    pub kubernetes_errors: Counter,
    /// etcd endpoints reached over plain HTTP on another host (0 is the safe value).
    pub etcd_plaintext_endpoints: Gauge,
    /// MetalLB's `metallb_k8s_client_config_loaded_bool`: [`Metrics::config_loaded`].
    pub metallb_config_loaded: Gauge,
    /// MetalLB's `metallb_k8s_client_config_stale_bool`: [`Metrics::config_stale`].
    pub metallb_config_stale: Gauge,
}

impl Metrics {
    /// A registry holding every metric.
    ///
    /// Longer than the rest on purpose: one registration per metric, each with its help text,
    /// in the order `/metrics` lists them. Cut into pieces, the list would only be harder to
    /// check against the documentation's.
    pub fn register(self: &Arc<Self>) -> Registry {
        let mut r = Registry::default();
        let f = r.sub_registry_with_prefix("ferrolb");
        f.register(
            "pool_addresses",
            "Addresses per pool and family",
            self.pool_addresses.clone(),
        );
        f.register(
            "pool_addresses_in_use",
            "Addresses in use per pool and family",
            self.pool_in_use.clone(),
        );
        f.register(
            "services_pending",
            "LoadBalancer Services waiting for an address, by reason",
            self.services_pending.clone(),
        );
        f.register(
            "config_loaded",
            "1 when a valid configuration is in force",
            self.config_loaded.clone(),
        );
        f.register(
            "config_stale",
            "1 when the newest configuration could not be used",
            self.config_stale.clone(),
        );
        f.register("reconciler_leader", "1 on the leader", self.leader.clone());
        f.register(
            "reconciler_etcd_writes",
            "etcd keys written",
            self.etcd_writes.clone(),
        );
        f.register(
            "reconciler_etcd_errors",
            "Failed etcd writes",
            self.etcd_errors.clone(),
        );
        f.register(
            "reconciler_kubernetes_writes",
            "Kubernetes writes",
            self.kubernetes_writes.clone(),
        );
        f.register(
            "reconciler_kubernetes_errors",
            "Failed Kubernetes writes",
            self.kubernetes_errors.clone(),
        );
        f.register(
            "reconciler_etcd_plaintext_endpoints",
            "etcd endpoints reached over plain HTTP on another host",
            self.etcd_plaintext_endpoints.clone(),
        );
        let m = r.sub_registry_with_prefix("metallb_allocator");
        m.register(
            "addresses_total",
            "Addresses per pool (MetalLB's metric)",
            self.metallb_total.clone(),
        );
        m.register(
            "addresses_in_use_total",
            "Addresses in use per pool (MetalLB's metric)",
            self.metallb_in_use.clone(),
        );
        let k = r.sub_registry_with_prefix("metallb_k8s_client");
        k.register(
            "config_loaded_bool",
            "1 when a valid configuration is in force (MetalLB's metric)",
            self.metallb_config_loaded.clone(),
        );
        k.register(
            "config_stale_bool",
            "1 when the newest configuration could not be used (MetalLB's metric)",
            self.metallb_config_stale.clone(),
        );
        r
    }

    /// Records whether a configuration is in force and whether the newest one is unusable,
    /// under ferrolb's names and MetalLB's.
    pub fn record_config(&self, loaded: bool, stale: bool) {
        for (gauge, value) in [
            (&self.config_loaded, loaded),
            (&self.metallb_config_loaded, loaded),
            (&self.config_stale, stale),
            (&self.metallb_config_stale, stale),
        ] {
            gauge.set(i64::from(value));
        }
    }

    /// Records how many Services wait for an address, by reason.
    /// Every kind is set, so that one no Service has any more reads 0.
    pub fn record_pending(&self, decisions: &[ferrolb_core::alloc::Decision]) {
        let mut counts: std::collections::BTreeMap<PendingKind, i64> =
            PendingKind::ALL.iter().map(|k| (*k, 0)).collect();
        for d in decisions {
            if let ferrolb_core::alloc::Outcome::Pending { reason } = &d.outcome {
                *counts.entry(reason.kind()).or_default() += 1;
            }
        }
        for (kind, n) in counts {
            self.services_pending
                .get_or_create(&PendingLabel {
                    reason: kind.as_str(),
                })
                .set(n);
        }
    }

    /// Records pool use.
    pub fn record_usage(&self, usage: &[PoolUsage]) {
        let mut totals: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
        for u in usage {
            let labels = PoolFamily {
                pool: u.pool.clone(),
                family: u.family.as_str(),
            };
            self.pool_addresses
                .get_or_create(&labels)
                .set(u.total.as_f64());
            self.pool_in_use.get_or_create(&labels).set(u.in_use as f64);
            let t = totals.entry(u.pool.as_str()).or_default();
            t.0 += u.total.as_f64();
            t.1 += u.in_use as f64;
        }
        for (pool, (total, in_use)) in totals {
            let labels = PoolLabel {
                pool: pool.to_string(),
            };
            self.metallb_total.get_or_create(&labels).set(total);
            self.metallb_in_use.get_or_create(&labels).set(in_use);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_state_is_exported_under_metallbs_names_too() {
        let metrics = Arc::new(Metrics::default());
        metrics.record_config(true, true);
        let registry = metrics.register();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "metallb_k8s_client_config_loaded_bool 1",
            "metallb_k8s_client_config_stale_bool 1",
            "ferrolb_config_loaded 1",
            "ferrolb_config_stale 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        metrics.record_config(true, false);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.lines()
                .any(|l| l == "metallb_k8s_client_config_stale_bool 0")
        );
    }

    #[test]
    fn pending_services_are_counted_by_reason_and_a_reason_gone_reads_zero() {
        use ferrolb_core::alloc::{Decision, Outcome, Pending, ServiceKey};
        let pending = |name: &str, reason: Pending| Decision {
            key: ServiceKey::new("default", name),
            outcome: Outcome::Pending { reason },
            previous: Vec::new(),
        };
        let taken = Pending::AddressTaken {
            ip: "10.0.0.1".parse().expect("ip"),
            why: "held by default/web without a shared key".into(),
        };
        let m = Arc::new(Metrics::default());
        let value = |reason| {
            m.services_pending
                .get_or_create(&PendingLabel { reason })
                .get()
        };
        m.record_pending(&[
            pending("a", taken.clone()),
            pending("b", taken),
            pending("c", Pending::NoPool),
        ]);
        assert_eq!(
            (value("taken"), value("not_served"), value("full")),
            (2, 1, 0)
        );
        m.record_pending(&[pending("c", Pending::NoPool)]);
        assert_eq!((value("taken"), value("not_served")), (0, 1));
    }
}
