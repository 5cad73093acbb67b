//! Allocator benchmarks: 10k and 100k Services into a /16 and a /12, 10k into an IPv6 /64, and
//! 10k into a dense /18 where 9k scattered addresses are already held. Figures: docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use ferrolb_core::alloc::{Allocator, Port, ServiceKey, ServiceRequest};
use ferrolb_core::config::{self, Config};
use ferrolb_core::net::Family;

fn pool(cidr: &str) -> Config {
    let y = format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: bench\nspec:\n  addresses: [{cidr}]\n"
    );
    config::load([("bench.yaml", y.as_bytes())])
        .config
        .expect("valid bench config")
}

fn services(n: usize, prefix: &str, family: Family) -> Vec<ServiceRequest> {
    (0..n)
        .map(|i| ServiceRequest {
            key: ServiceKey::new(format!("ns{}", i % 50), format!("{prefix}{i}")),
            service_type: "LoadBalancer".into(),
            ports: vec![Port {
                port: 443,
                protocol: "TCP".into(),
            }],
            // One Service a second, as a cluster that grew over time; ties are tested elsewhere.
            created: Some(format!(
                "2026-01-{:02}T{:02}:{:02}:{:02}Z",
                1 + i / 86_400,
                i / 3600 % 24,
                i / 60 % 60,
                i % 60
            )),
            ip_families: vec![family],
            ..ServiceRequest::default()
        })
        .collect()
}

/// Writes over 64 MiB (twice this machine's L3) so that every timed run starts with cold caches,
/// as the reconciler's one sync at start-up does. Without it the 10k input (~5 MB) stays cached
/// between iterations while the 100k input (~50 MB) cannot, which flatters the small case.
fn evict_caches(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate().step_by(64) {
        *b = b.wrapping_add(i as u8);
    }
    black_box(&buf);
}

fn bench(c: &mut Criterion) {
    let mut scratch = vec![0u8; 64 << 20];
    let mut group = c.benchmark_group("allocate");
    group.sample_size(10);
    for (n, cidr) in [
        (10_000usize, "10.0.0.0/16"),
        (10_000, "10.0.0.0/12"),
        (100_000, "10.0.0.0/12"),
        (100_000, "10.0.0.0/16"),
        (10_000, "fd00::/64"),
        (10_000, "10.0.0.0/18"),
    ] {
        let cfg = pool(cidr);
        let family = if cidr.contains(':') {
            Family::V6
        } else {
            Family::V4
        };
        let svcs = services(n, "svc", family);
        group.bench_with_input(BenchmarkId::new(cidr, n), &svcs, |b, svcs| {
            b.iter_batched(
                || {
                    evict_caches(&mut scratch);
                    cfg.clone()
                },
                |cfg| {
                    // The allocator is returned, so dropping it is not timed.
                    let mut a = Allocator::new(cfg, None);
                    let d = a.allocate_all(svcs);
                    black_box((a, d))
                },
                BatchSize::LargeInput,
            )
        });
    }
    // Dense: 9,000 scattered addresses of a /18 already held; then 10,000 newcomers.
    let cfg = pool("10.0.0.0/18");
    let mut holders = services(9_000, "old", Family::V4);
    for (i, s) in holders.iter_mut().enumerate() {
        let n = (i * 7919) % 16_384; // a permutation of the /18: scattered holes
        s.current = vec![std::net::IpAddr::from([
            10,
            0,
            (n >> 8) as u8,
            (n & 0xff) as u8,
        ])];
    }
    let mut seeded = Allocator::new(cfg, None);
    seeded.allocate_all(&holders);
    let newcomers = services(10_000, "new", Family::V4);
    group.bench_function("10.0.0.0/18 dense 9k held/10000", |b| {
        b.iter_batched(
            || {
                let a = seeded.clone();
                evict_caches(&mut scratch);
                a
            },
            |mut a| {
                let d = a.allocate_all(&newcomers);
                black_box((a, d))
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
