//! Allocates N Services into a /12 and prints the time per run: run it under
//! `valgrind --tool=callgrind` to count instructions, which (unlike time on a shared machine)
//! show whether the cost per Service stays flat from 10k to 100k Services.
//!
//! `cargo run --release -p ferrolb-core --example alloc_scaling -- 100000 3`

use std::time::{Duration, Instant};

use ferrolb_core::alloc::{Allocator, Port, ServiceKey, ServiceRequest};
use ferrolb_core::config;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let reps: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let yaml = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: bench\nspec:\n  addresses: [10.0.0.0/12]\n";
    let Some(cfg) = config::load([("bench.yaml", yaml.as_bytes())]).config else {
        eprintln!("invalid bench configuration");
        return;
    };
    let services: Vec<ServiceRequest> = (0..n)
        .map(|i| ServiceRequest {
            key: ServiceKey::new(format!("ns{}", i % 50), format!("svc{i}")),
            service_type: "LoadBalancer".into(),
            ports: vec![Port {
                port: 443,
                protocol: "TCP".into(),
            }],
            created: Some(format!(
                "2026-01-{:02}T{:02}:{:02}:{:02}Z",
                1 + i / 86_400,
                i / 3600 % 24,
                i / 60 % 60,
                i % 60
            )),
            ..ServiceRequest::default()
        })
        .collect();
    let mut total = Duration::ZERO;
    for _ in 0..reps {
        let mut a = Allocator::new(cfg.clone(), None);
        let t = Instant::now();
        let d = a.allocate_all(&services);
        total += t.elapsed();
        std::hint::black_box((&a, &d));
    }
    println!("services={n} time_per_run={:?}", total / reps.max(1));
}
