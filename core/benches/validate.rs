//! Validating 1,000 pools with 10,000 ranges, and ten times that, to see how the cost scales;
//! one mapping of many keys (the duplicate-key check), and many pools each covered by its own
//! advertisement (the coverage check). Figures: docs/BENCHMARKS.md.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferrolb_core::{config, yaml};

/// `pools` pools of 10 ranges each (alternating /28 CIDRs and a-b ranges, some IPv6), split
/// into files of 100 pools, plus one advertisement covering all.
fn generate(pools: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut text = String::new();
    for p in 0..pools {
        text.push_str(&format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: pool-{p}\n  labels:\n    team: t{}\nspec:\n  addresses:\n",
            p % 10
        ));
        for r in 0..10 {
            let n = (p * 10 + r) as u32;
            if r == 9 {
                text.push_str(&format!("    - fd00:{:x}:{:x}::/64\n", n >> 16, n & 0xffff));
            } else if r % 2 == 0 {
                let base = 0x0a00_0000u32 + n * 16;
                let ip = std::net::Ipv4Addr::from(base);
                text.push_str(&format!("    - {ip}/28\n"));
            } else {
                let base = 0x0a00_0000u32 + n * 16;
                let (a, b) = (
                    std::net::Ipv4Addr::from(base),
                    std::net::Ipv4Addr::from(base + 9),
                );
                text.push_str(&format!("    - {a} - {b}\n"));
            }
        }
        if (p + 1) % 100 == 0 {
            files.push((format!("pools-{p}.yaml"), std::mem::take(&mut text)));
        }
    }
    text.push_str(
        "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: all\n",
    );
    files.push(("ads.yaml".to_string(), text));
    files
}

/// `n` pools in files of 1,000, each named by an advertisement of its own.
fn pools_with_own_advertisements(n: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut text = String::new();
    for p in 0..n {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + p as u32);
        text.push_str(&format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: pool-{p}\nspec:\n  addresses: [{ip}/32]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: ad-{p}\nspec:\n  ipAddressPools: [pool-{p}]\n"
        ));
        if (p + 1) % 1_000 == 0 || p + 1 == n {
            files.push((format!("pools-{p}.yaml"), std::mem::take(&mut text)));
        }
    }
    files
}

fn bench_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("scaling");
    group.sample_size(10);
    for keys in [10_000usize, 50_000] {
        let text: String = (0..keys).map(|i| format!("key{i}: {i}\n")).collect();
        group.throughput(Throughput::Elements(keys as u64));
        group.bench_with_input(BenchmarkId::new("mapping_keys", keys), &text, |b, t| {
            b.iter(|| yaml::parse_documents(t))
        });
    }
    for pools in [10_000usize, 50_000] {
        let files = pools_with_own_advertisements(pools);
        let load = |files: &[(String, String)]| {
            config::load(files.iter().map(|(n, t)| (n.as_str(), t.as_bytes())))
        };
        let report = load(&files);
        assert!(
            report.diagnostics.is_empty(),
            "{:?}",
            report.diagnostics.first()
        );
        group.throughput(Throughput::Elements(pools as u64));
        group.bench_with_input(
            BenchmarkId::new("pools_with_own_advertisements", pools),
            &files,
            |b, files| b.iter(|| load(files)),
        );
    }
    group.finish();
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    group.sample_size(10);
    for pools in [1_000usize, 10_000] {
        let files = generate(pools);
        let report = config::load(files.iter().map(|(n, t)| (n.as_str(), t.as_bytes())));
        assert!(report.config.is_some(), "{:?}", report.diagnostics.first());
        group.throughput(Throughput::Elements((pools * 10) as u64));
        group.bench_with_input(
            BenchmarkId::new("ranges", pools * 10),
            &files,
            |b, files| {
                b.iter(|| config::load(files.iter().map(|(n, t)| (n.as_str(), t.as_bytes()))))
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench, bench_scaling);
criterion_main!(benches);
