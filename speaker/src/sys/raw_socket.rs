//! Raw `AF_PACKET` sockets, their tokio registration and the network-namespace switch: the
//! speaker's only unsafe code.
//!
//! Every `unsafe` block below is a single call: a libc call whose pointer arguments come from
//! Rust references or owned values that outlive the call, and whose result is checked right
//! after; or tokio's `AsyncFd::register_with_interest`, which relies on [`RawSocket`] owning its
//! descriptor. What leaves this file is safe: [`RawSocket`] and [`AsyncRawSocket`] own their
//! descriptor (closed on drop), and [`enter_netns`] takes a path.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Ethertype that makes a socket receive every protocol (`ETH_P_ALL`), including the frames
/// this host sends, which [`RawSocket::recv`] reports as outgoing.
pub const ETH_P_ALL: u16 = 0x0003;
/// Ethertype of ARP frames.
pub const ETH_P_ARP: u16 = 0x0806;
/// Ethertype of IPv6 frames (NDP travels in ICMPv6 inside them).
pub const ETH_P_IPV6: u16 = 0x86dd;

/// Length of an Ethernet MAC address, as `packet_mreq.mr_alen` gives it.
const MAC_LEN: u16 = 6;

/// An `AF_PACKET`/`SOCK_RAW` socket bound to one interface and one ethertype.
///
/// It reads and writes complete Ethernet frames (header included). It is non-blocking:
/// [`recv`](Self::recv) and [`send`](Self::send) fail with [`io::ErrorKind::WouldBlock`] rather
/// than wait; [`AsyncRawSocket`] adds the waiting. The descriptor is
/// close-on-exec and is closed when the socket is dropped, which also drops its multicast
/// memberships.
///
/// Opening one needs `CAP_NET_RAW` in the network namespace the calling thread is in; the socket
/// belongs to that namespace for the rest of its life, whichever thread uses it later.
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: libc::c_int,
    ethertype: u16,
}

impl RawSocket {
    /// Opens a socket that receives and sends frames of `ethertype` (host byte order, e.g.
    /// [`ETH_P_ARP`], [`ETH_P_IPV6`] or [`ETH_P_ALL`]) on the interface with index `ifindex`.
    ///
    /// The socket is created listening to no protocol and only then bound to the interface and
    /// the ethertype, so no frame of another interface is ever queued on it.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `ifindex` is 0 (which the kernel would take as "every
    /// interface") or does not fit a C `int`; the OS error of `socket(2)` (e.g. `EPERM` without
    /// `CAP_NET_RAW`) or `bind(2)` (e.g. `ENODEV` for an index with no interface).
    pub fn open(ifindex: u32, ethertype: u16) -> io::Result<Self> {
        let ifindex = match libc::c_int::try_from(ifindex) {
            Ok(0) | Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid interface index {ifindex}"),
                ));
            }
            Ok(index) => index,
        };

        // SAFETY: socket(2) takes no pointers; a negative result is handled just below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor that socket(2) just returned to us; nothing else owns or
        // closes it, so `OwnedFd` may take it over (and close it on every path from here on).
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as libc::c_ushort,
            sll_protocol: ethertype.to_be(),
            sll_ifindex: ifindex,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: `addr` is a fully initialised `sockaddr_ll` that lives across the call, and the
        // length passed is its exact size; the kernel only reads it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                socklen_of::<libc::sockaddr_ll>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }

        Ok(Self {
            fd,
            ifindex,
            ethertype,
        })
    }

    /// Makes `recv` and `send` block, `recv` for at most `timeout` (then it fails with
    /// [`io::ErrorKind::WouldBlock`]), so a thread that owns the socket can look at a stop flag
    /// between frames. A blocking read wakes the thread straight from the socket, without an
    /// event loop in between: the speaker's answers take this path.
    ///
    /// # Errors
    ///
    /// The OS error of `fcntl(2)` or `setsockopt(2)`.
    pub fn set_blocking(&self, timeout: std::time::Duration) -> io::Result<()> {
        // SAFETY: fcntl(2) with F_GETFL takes no pointers; the descriptor is ours and open.
        let flags = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above, F_SETFL with an integer argument.
        let rc = unsafe {
            libc::fcntl(
                self.fd.as_raw_fd(),
                libc::F_SETFL,
                flags & !libc::O_NONBLOCK,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: `tv` is a fully initialised `timeval` that outlives the call, and the length
        // passed is its exact size; the kernel only reads it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast::<libc::c_void>(),
                socklen_of::<libc::timeval>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The index of the interface the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        // Checked positive in `open`.
        self.ifindex.unsigned_abs()
    }

    /// The ethertype the socket was opened for (host byte order).
    pub fn ethertype(&self) -> u16 {
        self.ethertype
    }

    /// Receives one frame into `buf`: returns its length and whether it was outgoing, i.e. sent
    /// by this host (`sll_pkttype == PACKET_OUTGOING`; only [`ETH_P_ALL`] sockets see those), so
    /// the speaker can ignore its own transmissions.
    ///
    /// A frame longer than `buf` is cut to `buf.len()` bytes.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::WouldBlock`] when no frame is queued; otherwise the OS error of
    /// `recvfrom(2)`, e.g. `ENETDOWN` once the interface has gone.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        let mut from = libc::sockaddr_ll {
            sll_family: 0,
            sll_protocol: 0,
            sll_ifindex: 0,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        let mut from_len = socklen_of::<libc::sockaddr_ll>();
        // SAFETY: `buf` is a live, writable slice and the kernel writes at most `buf.len()` bytes
        // into it; `from` and `from_len` are live locals and `from_len` holds the size of `from`,
        // so the kernel writes no further than that into `from`.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
                0,
                (&raw mut from).cast::<libc::sockaddr>(),
                &raw mut from_len,
            )
        };
        // Negative means failure, and `errno` is still the one recvfrom(2) set.
        let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        Ok((len, from.sll_pkttype == libc::PACKET_OUTGOING))
    }

    /// Sends `frame`, a complete Ethernet frame (destination, source, ethertype, payload), out of
    /// the bound interface as it is.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::WouldBlock`] when the socket's send buffer is full; otherwise the OS
    /// error of `send(2)`, e.g. `EINVAL` for a frame shorter than an Ethernet header, `EMSGSIZE`
    /// for one longer than the MTU, `ENETDOWN` when the interface is down.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is a live slice and the kernel reads at most `frame.len()` bytes of it.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<libc::c_void>(),
                frame.len(),
                // Never block, even on a socket made blocking for reads: a stalled interface
                // must not stall the caller (an answer that cannot be queued is dropped).
                libc::MSG_DONTWAIT,
            )
        };
        let sent = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        if sent == frame.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes of a frame", frame.len()),
            ))
        }
    }

    /// Asks the interface to deliver frames sent to the multicast MAC address `mac` (e.g. the
    /// solicited-node address `33:33:ff:xx:xx:xx` of an IPv6 address held here), through
    /// `PACKET_ADD_MEMBERSHIP` with `PACKET_MR_MULTICAST`.
    ///
    /// Memberships are counted per socket: each join needs its own leave, and all are dropped
    /// when the socket is closed.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `mac` is not a multicast address (low bit of the first
    /// byte clear); otherwise the OS error of `setsockopt(2)`.
    pub fn join_multicast(&self, mac: [u8; 6]) -> io::Result<()> {
        self.membership(libc::PACKET_ADD_MEMBERSHIP, mac)
    }

    /// Undoes one [`join_multicast`](Self::join_multicast) of `mac`
    /// (`PACKET_DROP_MEMBERSHIP`). Leaving an address this socket has not joined does nothing
    /// and succeeds (the kernel does not report it).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `mac` is not a multicast address; otherwise the OS
    /// error of `setsockopt(2)`.
    pub fn leave_multicast(&self, mac: [u8; 6]) -> io::Result<()> {
        self.membership(libc::PACKET_DROP_MEMBERSHIP, mac)
    }

    fn membership(&self, option: libc::c_int, mac: [u8; 6]) -> io::Result<()> {
        if mac[0] & 1 == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a multicast MAC address",
            ));
        }
        let mut address = [0; 8];
        address[..6].copy_from_slice(&mac);
        let mreq = libc::packet_mreq {
            mr_ifindex: self.ifindex,
            mr_type: libc::PACKET_MR_MULTICAST as libc::c_ushort,
            mr_alen: MAC_LEN,
            mr_address: address,
        };
        // SAFETY: `mreq` is a fully initialised `packet_mreq` that lives across the call, and the
        // length passed is its exact size; the kernel only reads it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                option,
                (&raw const mreq).cast::<libc::c_void>(),
                socklen_of::<libc::packet_mreq>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for RawSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for RawSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A [`RawSocket`] whose [`recv`](Self::recv) and [`send`](Self::send) wait for readiness on the
/// tokio reactor instead of failing with [`io::ErrorKind::WouldBlock`].
///
/// Both methods take `&self`, so one task can receive while another sends (for instance through
/// an `Arc<AsyncRawSocket>`).
#[derive(Debug)]
pub struct AsyncRawSocket {
    inner: AsyncFd<RawSocket>,
}

impl AsyncRawSocket {
    /// Registers `socket` with the reactor of the current tokio runtime.
    ///
    /// # Errors
    ///
    /// The error of the registration (`epoll_ctl(2)`).
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime, or in one built without IO enabled (as tokio's
    /// [`AsyncFd::register_with_interest`] does).
    pub fn new(socket: RawSocket) -> io::Result<Self> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        // SAFETY: tokio needs the descriptor to stay open and the same for as long as the
        // `AsyncFd` holds it. `RawSocket` owns its `OwnedFd`, never replaces it and closes it only
        // when dropped, which `AsyncFd` does after deregistering (or never, if handed back by
        // `into_inner`); `as_raw_fd` always returns that one descriptor.
        let inner = unsafe { AsyncFd::register_with_interest(socket, interest) }?;
        Ok(Self { inner })
    }

    /// Opens a [`RawSocket`] on `ifindex` for `ethertype` and registers it; see
    /// [`RawSocket::open`] and [`new`](Self::new).
    ///
    /// # Errors
    ///
    /// Those of [`RawSocket::open`] and [`new`](Self::new).
    pub fn open(ifindex: u32, ethertype: u16) -> io::Result<Self> {
        Self::new(RawSocket::open(ifindex, ethertype)?)
    }

    /// The underlying socket, e.g. for [`RawSocket::ifindex`].
    pub fn get_ref(&self) -> &RawSocket {
        self.inner.get_ref()
    }

    /// Deregisters the socket from the reactor and hands it back.
    pub fn into_inner(self) -> RawSocket {
        self.inner.into_inner()
    }

    /// Waits for a frame and receives it into `buf`: returns its length and whether it was
    /// outgoing (sent by this host); see [`RawSocket::recv`].
    ///
    /// Cancel-safe: if the future is dropped before it completes, no frame has been taken.
    ///
    /// # Errors
    ///
    /// Those of [`RawSocket::recv`] other than [`io::ErrorKind::WouldBlock`], and reactor errors.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        loop {
            let mut ready = self.inner.readable().await?;
            match ready.try_io(|socket| socket.get_ref().recv(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Waits until the socket can take `frame`, a complete Ethernet frame, and sends it out of
    /// the bound interface; see [`RawSocket::send`].
    ///
    /// # Errors
    ///
    /// Those of [`RawSocket::send`] other than [`io::ErrorKind::WouldBlock`], and reactor errors.
    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            let mut ready = self.inner.writable().await?;
            match ready.try_io(|socket| socket.get_ref().send(frame)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// See [`RawSocket::join_multicast`].
    ///
    /// # Errors
    ///
    /// Those of [`RawSocket::join_multicast`].
    pub fn join_multicast(&self, mac: [u8; 6]) -> io::Result<()> {
        self.get_ref().join_multicast(mac)
    }

    /// See [`RawSocket::leave_multicast`].
    ///
    /// # Errors
    ///
    /// Those of [`RawSocket::leave_multicast`].
    pub fn leave_multicast(&self, mac: [u8; 6]) -> io::Result<()> {
        self.get_ref().leave_multicast(mac)
    }
}

impl AsRawFd for AsyncRawSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// Moves the calling thread into the network namespace at `path` (a file like
/// `/run/netns/NAME` or `/proc/PID/ns/net`), with `setns(2)`.
///
/// Only the calling thread moves, for the rest of its life; sockets it opens afterwards (such as
/// a [`RawSocket`]) belong to the new namespace, and stay there when handed to other threads. Call
/// it on a thread of your own, never on a tokio worker. `/sys` is not remounted, so
/// [`interfaces::list`](super::interfaces::list) still shows the interfaces of the namespace
/// whose sysfs is mounted there.
///
/// # Errors
///
/// The error of opening `path`, or the OS error of `setns(2)`: `EINVAL` if `path` is not a network
/// namespace, `EPERM` without `CAP_SYS_ADMIN`.
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    // SAFETY: setns(2) takes no pointers; `file` keeps the descriptor open across the call.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The size of `T` as a `socklen_t`, for the socket structures passed to the kernel (all a few
/// dozen bytes).
fn socklen_of<T>() -> libc::socklen_t {
    const { assert!(mem::size_of::<T>() <= u32::MAX as usize) };
    mem::size_of::<T>() as libc::socklen_t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_rejects_interface_index_zero_because_the_kernel_would_bind_every_interface() {
        let err = RawSocket::open(0, ETH_P_ARP).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidInput));
    }

    #[test]
    fn open_rejects_an_interface_index_that_does_not_fit_a_c_int() {
        let err = RawSocket::open(u32::MAX, ETH_P_ARP).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidInput));
    }

    #[test]
    fn enter_netns_reports_a_missing_namespace_file() {
        let err = enter_netns(Path::new("/nonexistent/ferrolb/netns"))
            .err()
            .map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::NotFound));
    }
}
