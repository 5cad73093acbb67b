//! `ferrolb-testkit`: real etcd, real layer-2 networks and a fake Kubernetes API for ferrolb's
//! integration tests.
//!
//! Harnesses, each an owned value that cleans up in `Drop`,
//! also when the test panics:
//!
//! - [`Etcd`] and [`EtcdCluster`]: Debian's `etcd` 3.4 on free loopback ports (or inside a lab
//!   namespace), with a temporary data directory and log, fast raft timing (50 ms heartbeat,
//!   500 ms election timeout), and `stop`/`kill`/`restart`/`pause`/`resume` to play failures.
//!   [`Etcd::ctl`] runs `etcdctl` against it.
//! - [`KubeApiServer`]: a real `kube-apiserver` (built from `k8s.io/kubernetes` by
//!   `scripts/kube-binaries.sh`) on its own etcd 3.6, on free loopback ports, with RBAC, static
//!   tokens for an admin and for the reconciler's service account, and an audit log
//!   ([`KubeApiServer::writes_by`]). [`EtcdBinaries::v3_6`] and [`ETCD_DIR_VAR`] run the etcd
//!   harness on the 3.6 build.
//! - [`kubeapi::FakeApiServer`]: an in-memory Kubernetes API server on a free loopback port
//!   (its own thread and tokio runtime), enough for kube's client, watcher and `Recorder` and for
//!   `kubectl get`, with test controls: seeding objects, counting writes, compaction (`410`),
//!   injected failures and delays.
//! - [`Lab`]: private network namespaces on one Linux bridge, built with iproute2, with
//!   helpers to run and spawn programs in them, cut links, blackhole routes, load nftables
//!   rules, and ask who answers ARP ([`Lab::arping`]) and NDP ([`Lab::ndisc`]).
//!
//! # The lab's topology
//!
//! ```text
//!                        switch namespace flb{pid}-{n}-sw (no addresses, no IPv6)
//!   ┌──────────────────────────────────── br0 ───────────────────────────────────────┐
//!   │   vclient          vnode1          vnode2     …     vnodeN           vinfra    │
//!   └──────┼───────────────┼───────────────┼────────────────┼────────────────┼───────┘
//!        veth            veth            veth             veth             veth
//!   ┌──────┴─────┐  ┌──────┴─────┐  ┌──────┴─────┐   ┌──────┴─────┐  ┌──────┴─────┐
//!   │ client eth0│  │ node1 eth0 │  │ node2 eth0 │   │ nodeN eth0 │  │ infra eth0 │
//!   │ .1    ::1  │  │ .11  ::11  │  │ .12  ::12  │   │ .10+N      │  │ .250 ::250 │
//!   └────────────┘  └────────────┘  └────────────┘   └────────────┘  └────────────┘
//!      namespace flb{pid}-{n}-{host}, each with `lo` up
//! ```
//!
//! Address plan of a lab with subnet number `S` ([`Lab::subnet`], 1 to 250, from the pid and a
//! per-process counter so parallel labs differ; labs are isolated from each other anyway):
//!
//! | host | IPv4 (`10.250.S.0/24`) | IPv6 (`fd00:250:S::/64`, `nodad`) | MAC |
//! | --- | --- | --- | --- |
//! | client | `10.250.S.1` | `fd00:250:S::1` | `02:fb:SS:00:00:01` |
//! | node `i` (1 to 89) | `10.250.S.{10+i}` | `fd00:250:S::{10+i}` | `02:fb:SS:00:00:{10+i in hex}` |
//! | infra | `10.250.S.250` | `fd00:250:S::250` | `02:fb:SS:00:00:fa` |
//! | service addresses ([`Lab::vip4`]) | `10.250.S.100`–`.199` | `fd00:250:S::100`–`::199` | whoever answers |
//!
//! The IPv6 groups repeat the IPv4 digits (`S` and the host number are written in decimal
//! digits), and `SS` is `S` in hexadecimal.
//!
//! # Rules the harnesses keep
//!
//! - Nothing is created in the root namespace: veth ends are created directly in the switch and
//!   host namespaces, and traffic stays on loopback or inside the lab.
//! - Every name carries the owner's pid (`flb{pid}-…`): namespaces, etcd member names, temporary
//!   directories. Whatever a killed test process left behind is removed by the next one
//!   ([`cleanup_stale`]).
//! - Tests that need root call [`require_root!`]: without root they fail, unless
//!   `FERROLB_SKIP_ROOT_TESTS=1` says to skip them.
//!
//! External programs (Debian packages, see `scripts/install-deps.sh`): `etcd` (etcd-server),
//! `etcdctl` (etcd-client), `ip` (iproute2), `arping` (arping), `ndisc6` (ndisc6), `nft`
//! (nftables), `ping` (iputils-ping), `curl` (curl), `kill` and `sysctl` (procps).
//!
//! # Example
//!
//! A speaker test reads like this (the speaker's flags are illustrative):
//!
//! ```no_run
//! use std::time::Duration;
//! use ferrolb_testkit::{Host, Lab, require_root};
//!
//! fn the_elected_node_answers_arp_for_a_service_address() {
//!     require_root!();
//!     let lab = Lab::new(2).expect("lab");
//!     let etcd = lab.start_etcd().expect("etcd in the infra host");
//!     let speaker = lab
//!         .spawn(Host::Node(1), ["ferrolb-speaker", "--etcd", &etcd.endpoints()], "node1.log")
//!         .expect("speaker");
//!     let macs = lab
//!         .arping(Host::Client, lab.vip4(0), Duration::from_millis(500))
//!         .expect("arping");
//!     assert_eq!(macs, vec![lab.mac(Host::Node(1))], "speaker log:\n{}", speaker.log());
//! }
//! ```

#![warn(missing_docs)]

mod error;
mod etcd;
mod forward;
mod helm;
mod kube;
pub mod kubeapi;
mod lab;
mod process;
mod root;
mod stale;

pub use error::{Result, TestkitError};
pub use etcd::{ETCD_DIR_VAR, Etcd, EtcdBinaries, EtcdCluster};
pub use forward::Forward;
pub use helm::{KUBE_VERSION, helm};
pub use kube::{KubeApiServer, RECONCILER_USER};
pub use lab::{Host, IFACE, Lab, LabProcess, MAX_NODES, PREFIX4, PREFIX6, VIPS};
pub use process::Signal;
pub use root::{SKIP_ROOT_TESTS_VAR, is_root, require_root};
pub use stale::cleanup_stale;

/// The environment variable naming the directory of the binaries built from Go modules.
pub const GO_BIN_VAR: &str = "FERROLB_GO_BIN";

/// The directory holding MetalLB's own CRDs for IPAddressPool, L2Advertisement,
/// ConfigurationState and ServiceL2Status (`metallb.io_<plural>.yaml`, from the Go module
/// `go.universe.tf/metallb` that `testkit/metallb-crds` pins), which `scripts/kube-binaries.sh`
/// copies beside the binaries: for tests of ferrolb where MetalLB's CRDs are installed.
pub fn metallb_crds() -> Result<std::path::PathBuf> {
    crd_dir("metallb-crds/metallb.io_ipaddresspools.yaml")
}

/// The directory holding the Prometheus Operator's CRDs for PodMonitor, ServiceMonitor and
/// PrometheusRule (`monitoring.coreos.com_<plural>.yaml`, from the module that
/// `testkit/prometheus-operator-crds` pins), copied like [`metallb_crds`].
pub fn prometheus_operator_crds() -> Result<std::path::PathBuf> {
    crd_dir("prometheus-operator-crds/monitoring.coreos.com_podmonitors.yaml")
}

/// The real directory of a file under the Go binaries' directory: kubectl does not read a
/// directory through a symbolic link.
fn crd_dir(file: &str) -> Result<std::path::PathBuf> {
    let link = go_bin(file)?;
    let file = link
        .canonicalize()
        .map_err(|e| TestkitError::io(format!("resolve {}", link.display()), e))?;
    Ok(file
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or(file))
}

/// A binary that `scripts/kube-binaries.sh` (`make go-tools`) builds from Go modules: `etcd` and
/// `etcdctl` 3.6, `kube-apiserver`, `kubectl`, `helm`. Looked up in [`GO_BIN_VAR`], else in
/// `$CARGO_TARGET_DIR/go-bin/bin`, else in the workspace's `target/go-bin/bin`.
pub fn go_bin(name: &str) -> Result<std::path::PathBuf> {
    let dir = match (
        std::env::var_os(GO_BIN_VAR),
        std::env::var_os("CARGO_TARGET_DIR"),
    ) {
        (Some(d), _) if !d.is_empty() => std::path::PathBuf::from(d),
        (_, Some(t)) if !t.is_empty() => std::path::PathBuf::from(t).join("go-bin/bin"),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/go-bin/bin"),
    };
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(TestkitError::Missing {
            what: format!(
                "{}: run scripts/kube-binaries.sh (`make go-tools` does) to build it",
                path.display()
            ),
        })
    }
}
