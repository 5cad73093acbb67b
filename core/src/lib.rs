//! `ferrolb-core`: the pure logic of ferrolb, shared by the CLI, the reconciler and the speaker.
//!
//! ```text
//!  files ──load──▶ bytes ──config::parse_file──▶ raw objects ──config::validate──▶ Config
//!                                                                                  │
//!  Service manifests / Kubernetes ──(edge converts)──▶ allocation requests ──▶ allocator
//! ```
//!
//! - [`yaml`]: a YAML tree that keeps the line of every node, with limits against hostile input.
//! - [`net`]: addresses as `(Family, u128)` and ranges as sorted interval sets; nothing here ever
//!   expands a range into a list, so a /64 costs what a /24 costs.
//! - [`selector`]: Kubernetes label selectors.
//! - [`config`]: MetalLB's `IPAddressPool` and `L2Advertisement`, read and validated as a whole set,
//!   every error reported with file, line, object and value ([`diag`]).
//! - [`alloc`]: the allocator, MetalLB's rules over interval free-space, O(log n) per Service.
//! - [`announce`]: from allocations to `P/announcements/<ip>` values (nodes, interfaces), purely.
//! - [`service`]: `v1` Service (and Namespace) manifests read into allocation requests.
//! - [`layout`]: the etcd keys and JSON values shared by the reconciler, speakers and `status`.
//! - [`election`]: who answers for an address (sha256 ranking, stagger, sticky claims), decided purely.
//! - [`respond`]: whether to answer an ARP/NDP request, with a reason, and the per-requester rate limit.
//! - [`load`]: the one place that reads files (std only, read-only, size-bounded).
//! - [`wire`]: the frames of layer-2 announcement (Ethernet, ARP, IPv6 neighbor discovery), read
//!   through checked views that never panic and built whole for the speaker to send.
//!
//! Invariants: this crate has no async runtime, no network, no Kubernetes or etcd client (a test
//! checks its dependency tree), and nothing in it panics on input from outside.

#![forbid(unsafe_code)]

pub mod alloc;
pub mod announce;
pub mod config;
pub mod diag;
pub mod election;
pub mod layout;
pub mod liveness;
pub mod load;
pub mod net;
pub mod respond;
pub mod selector;
pub mod service;
pub mod status;
pub mod view;
pub mod wire;
pub mod yaml;
