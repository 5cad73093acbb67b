//! The speaker's contact with the operating system: raw link-layer sockets, the interface list
//! and (for tests) network namespaces.
//!
//! ```text
//!   raw_socket.rs  RawSocket: AF_PACKET socket bound to (ifindex, ethertype)   <- all unsafe code
//!                  AsyncRawSocket: RawSocket registered with tokio (AsyncFd)
//!                  enter_netns: setns(2) for the calling thread
//!   interfaces.rs  Interface, list() from /sys/class/net, eligible(): pure parsers, no unsafe
//! ```
//!
//! Invariants:
//! - `raw_socket.rs` is the only file in the speaker with `unsafe` code; every block there has a
//!   `// SAFETY:` comment, and it exposes only safe types and functions.
//! - A [`RawSocket`] always sits on one interface and one ethertype: it is bound before it is
//!   handed out, so it never sees frames of other interfaces, and it is non-blocking and
//!   close-on-exec from its creation.
//! - Deciding is kept apart from reading: the parsers of `/sys/class/net` files and
//!   [`interfaces::eligible`] are pure functions, tested with string fixtures.

pub mod interfaces;
mod raw_socket;

pub use raw_socket::{AsyncRawSocket, ETH_P_ALL, ETH_P_ARP, ETH_P_IPV6, RawSocket, enter_netns};
