//! The one datagram-socket abstraction every runtime implements: tokio's
//! UDP here, turmoil's in the simulator, a raw pnet link in the hardware
//! runner. The server and client are generic over [`Network`], so the same
//! code runs on all three.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// A bound datagram socket.
pub trait DatagramSocket: Send + Sync + 'static {
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Sends one datagram to `target`.
    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Receives one datagram into `buf`. Must be cancel-safe: a receive
    /// dropped before completion loses no datagram.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;

    /// Receives into `buf` what may be several datagrams from one sender,
    /// all `segment` bytes but the last: `(len, from, segment)`. By default
    /// one datagram (`segment == len`); the host's transfer sockets use
    /// Linux's UDP receive offload (GRO), which hands over a window's worth
    /// of DATA in one call. `buf` should hold 64 KiB. Cancel-safe, like
    /// [`DatagramSocket::recv_from`].
    fn recv_segments(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr, usize)>> + Send {
        async move {
            let (len, from) = self.recv_from(buf).await?;
            Ok((len, from, len))
        }
    }

    /// True when [`DatagramSocket::recv_segments`] may hand over several
    /// datagrams in one read, so its buffer must hold 64 KiB.
    fn coalesces(&self) -> bool {
        false
    }

    /// Sends `buf` to `target` as datagrams of `segment` bytes each (the
    /// last may be shorter): a window of DATA in one call. By default one
    /// [`DatagramSocket::send_to`] per datagram; the host's UDP sockets use
    /// Linux's UDP segmentation offload (one system call for the lot).
    fn send_segments(
        &self,
        buf: &[u8],
        segment: usize,
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            for datagram in buf.chunks(segment.max(1)) {
                self.send_to(datagram, target).await?;
            }
            Ok(())
        }
    }

    /// When whatever drives this socket next wakes on a timer of its own:
    /// the transfer machine's deadline (from its `poll_timeout`) or the
    /// transfer's lifetime limit, whichever is first; `None` once nothing
    /// waits on a timer (the driver stopped, or the machine has no deadline).
    /// The runtime calls it whenever that moment changes. A simulator that
    /// skips idle time learns here exactly when a host can next act on its
    /// own; a real network ignores it (the default).
    fn next_wake(&self, _at: Option<Instant>) {}

    /// This socket for a driver that waits on it from a thread of its own
    /// ([`Parked`]); `None` (the default) where the socket has no host
    /// descriptor to wait on: the simulator's, a raw link.
    #[cfg(target_os = "linux")]
    fn parked(&self) -> Option<Parked<'_>> {
        None
    }
}

/// The most bytes [`DatagramSocket::send_segments`] is handed at once, and
/// the most datagrams: Linux's limits for one segmented UDP send
/// (UDP_MAX_SEGMENTS, and an IP packet's 64 KiB).
pub const SEGMENTS_MAX_BYTES: usize = 65_000;
pub const SEGMENTS_MAX_COUNT: usize = 64;

/// Something that can bind datagram sockets: the host's network stack, a
/// simulated host, a raw link.
pub trait Network: Clone + Send + Sync + 'static {
    type Socket: DatagramSocket;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Socket>> + Send;

    /// Binds a socket that only a transfer's driver reads (with
    /// [`DatagramSocket::recv_segments`]): the host's stack turns on receive
    /// offload for it. By default the same as [`Network::bind`].
    fn bind_transfer(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        self.bind(addr)
    }

    /// Binds a client's socket (its TID). Where the host can, the socket
    /// reports an ICMP "port unreachable" for what it sent as a receive
    /// error of kind [`io::ErrorKind::ConnectionRefused`], so a client
    /// asking a port where nothing listens learns it at once instead of
    /// after its retries. By default the same as
    /// [`Network::bind_transfer`].
    fn bind_client(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        self.bind_transfer(addr)
    }

    /// Runs `work`, which may block (resolving a name and opening a file),
    /// without blocking the task that awaits it. By default on tokio's pool
    /// of blocking threads; a simulated host runs it inline, since its file
    /// system takes no simulated time and a thread would make the run's
    /// order depend on the OS scheduler. Fails only if `work` panicked.
    fn run_blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> impl Future<Output = io::Result<R>> + Send {
        let handle = tokio::task::spawn_blocking(work);
        async move { handle.await.map_err(io::Error::other) }
    }
}

/// The host's UDP stack, through tokio.
///
/// Sockets get send and receive buffers of 4 MiB (the
/// kernel clamps the request to `net.core.rmem_max` / `wmem_max`): a window
/// of 16 blocks of 8 KiB already overflows Linux's default 208 KiB receive
/// buffer on loopback, and every overflow costs a retransmission timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNet;

/// Requested socket buffer size for [`TokioNet`] sockets.
pub const SOCKET_BUFFER: usize = 4 << 20;

fn bind_std(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Larger buffers are an optimisation; a kernel that refuses them is fine.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The host's UDP sockets as [`TokioNet`] binds them on Linux: registered
/// with tokio for readability only. A UDP send on loopback frees its buffer
/// at once, and with write interest every send would wake the runtime's
/// poller for nothing: in lock-step that doubled the `epoll_wait` calls per
/// block. Sends are tried directly; the rare one that finds the send buffer
/// full (4 MiB) waits a moment and tries again.
///
/// The registration waits for the first async receive: a transfer whose
/// driver waits on the socket from a thread of its own ([`Parked`]) never
/// registers it, so the runtime's poller is not woken by its datagrams.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct HostSocket {
    /// Declared before `socket`, so it is dropped (and deregistered) while
    /// the descriptor it names is still open.
    registered: std::sync::OnceLock<io::Result<tokio::io::unix::AsyncFd<std::os::fd::RawFd>>>,
    socket: std::net::UdpSocket,
    /// Receive offload is on: one read may hold a window of datagrams.
    gro: bool,
    /// What a read waits for: readable, and for a client socket with
    /// `IP_RECVERR` on, an error too (an ICMP error makes the socket
    /// report `EPOLLERR` alone, never readable).
    interest: tokio::io::Interest,
}

#[cfg(target_os = "linux")]
impl HostSocket {
    /// A socket bound already (handed over by systemd, say), made
    /// non-blocking; for [`super::serve_on`].
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Self::new(socket, false)
    }

    fn new(socket: std::net::UdpSocket, gro: bool) -> io::Result<Self> {
        Self::with_interest(socket, gro, tokio::io::Interest::READABLE)
    }

    fn with_interest(
        socket: std::net::UdpSocket,
        gro: bool,
        interest: tokio::io::Interest,
    ) -> io::Result<Self> {
        Ok(HostSocket {
            registered: std::sync::OnceLock::new(),
            socket,
            gro,
            interest,
        })
    }

    /// The socket's registration with tokio, made on first use.
    fn registered(&self) -> io::Result<&tokio::io::unix::AsyncFd<std::os::fd::RawFd>> {
        use std::os::fd::AsRawFd;
        let registered = self.registered.get_or_init(|| {
            let fd = self.socket.as_raw_fd();
            // SAFETY: `socket` keeps the descriptor open, and the same,
            // until after the AsyncFd is dropped (field order above).
            unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, self.interest) }
                .map_err(io::Error::from)
        });
        registered
            .as_ref()
            .map_err(|e| io::Error::new(e.kind(), e.to_string()))
    }

    /// Runs a non-blocking read until it finds a datagram.
    async fn read<T>(
        &self,
        mut op: impl FnMut(&std::net::UdpSocket) -> io::Result<T>,
    ) -> io::Result<T> {
        let fd = self.registered()?;
        loop {
            let mut ready = fd.ready(self.interest).await?;
            match ready.try_io(|_| op(&self.socket)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Runs a non-blocking send; a full send buffer is waited out in short
    /// sleeps (about a second in all) rather than through write readiness.
    async fn write<T>(
        &self,
        mut op: impl FnMut(&std::net::UdpSocket) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut pause = std::time::Duration::from_micros(200);
        loop {
            match op(&self.socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && pause.as_millis() < 512 => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                other => return other,
            }
        }
    }
}

/// A host socket driven from a thread that waits on it itself, with
/// `ppoll(2)`, rather than through the async runtime: what a server
/// transfer's driver uses when it may hold a thread (see the driver's
/// parked mode). In lock-step this is one wait, one receive and one send
/// per block, the thread woken by the kernel directly.
#[cfg(target_os = "linux")]
pub struct Parked<'a>(&'a HostSocket);

#[cfg(target_os = "linux")]
impl Parked<'_> {
    /// One datagram, or a window of them in one segmented send.
    pub fn send_segments(&self, buf: &[u8], segment: usize, target: SocketAddr) -> io::Result<()> {
        if buf.len() > segment && gso::available() {
            match self.write(|s| gso::send(s, buf, segment, target)) {
                Err(e) if gso::unsupported(&e) => gso::disable(),
                other => return other,
            }
        }
        for datagram in buf.chunks(segment.max(1)) {
            self.write(|s| s.send_to(datagram, target))?;
        }
        Ok(())
    }

    /// Receive offload is on (see [`DatagramSocket::coalesces`]).
    pub fn coalesces(&self) -> bool {
        self.0.gro
    }

    /// Like [`HostSocket::write`], sleeping this thread.
    fn write<T>(&self, mut op: impl FnMut(&std::net::UdpSocket) -> io::Result<T>) -> io::Result<T> {
        let mut pause = std::time::Duration::from_micros(200);
        loop {
            match op(&self.0.socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && pause.as_millis() < 512 => {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                other => return other,
            }
        }
    }

    /// Waits until a datagram (or a window, see
    /// [`DatagramSocket::recv_segments`]) arrives or `until` passes:
    /// `Ok(None)` then.
    pub fn recv_until(
        &self,
        buf: &mut [u8],
        until: Instant,
    ) -> io::Result<Option<(usize, SocketAddr, usize)>> {
        use std::os::fd::AsRawFd;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let timeout = libc::timespec {
                tv_sec: left.as_secs().min(i32::MAX as u64) as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            };
            let mut wait = libc::pollfd {
                fd: self.0.socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, a valid timespec, no signal mask.
            let ready = unsafe { libc::ppoll(&mut wait, 1, &timeout, std::ptr::null()) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if ready == 0 {
                return Ok(None);
            }
            // Readable, or an error queued: the receive says which.
            match gro::recv(&self.0.socket, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other.map(Some),
            }
        }
    }
}

#[cfg(target_os = "linux")]
impl DatagramSocket for HostSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn parked(&self) -> Option<Parked<'_>> {
        Some(Parked(self))
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.write(|s| s.send_to(buf, target)).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.read(|s| s.recv_from(buf)).await
    }

    async fn recv_segments(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
        self.read(|s| gro::recv(s, buf)).await
    }

    fn coalesces(&self) -> bool {
        self.gro
    }

    async fn send_segments(
        &self,
        buf: &[u8],
        segment: usize,
        target: SocketAddr,
    ) -> io::Result<()> {
        if buf.len() > segment && gso::available() {
            match self.write(|s| gso::send(s, buf, segment, target)).await {
                Err(e) if gso::unsupported(&e) => gso::disable(),
                other => return other,
            }
        }
        for datagram in buf.chunks(segment.max(1)) {
            self.send_to(datagram, target).await?;
        }
        Ok(())
    }
}

/// Elsewhere, tokio's own UDP socket, one datagram per call.
#[cfg(not(target_os = "linux"))]
pub type HostSocket = tokio::net::UdpSocket;

#[cfg(not(target_os = "linux"))]
impl DatagramSocket for tokio::net::UdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }

    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        tokio::net::UdpSocket::send_to(self, buf, target)
    }

    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        tokio::net::UdpSocket::recv_from(self, buf)
    }
}

/// UDP segmentation offload (Linux 4.18+): one `sendmsg` with a
/// `UDP_SEGMENT` control message carries a window of equal-sized datagrams.
#[cfg(target_os = "linux")]
mod gso {
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    static AVAILABLE: AtomicBool = AtomicBool::new(true);

    pub fn available() -> bool {
        AVAILABLE.load(Ordering::Relaxed)
    }

    /// A kernel or device without UDP GSO: fall back to one send per
    /// datagram from now on.
    pub fn disable() {
        AVAILABLE.store(false, Ordering::Relaxed);
        tracing::debug!("UDP segmentation offload unavailable; sending datagram by datagram");
    }

    pub fn unsupported(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
        )
    }

    pub fn send(
        socket: &impl AsRawFd,
        buf: &[u8],
        segment: usize,
        target: SocketAddr,
    ) -> io::Result<()> {
        let segment =
            u16::try_from(segment).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let addr = socket2::SockAddr::from(target);
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // Room for one cmsg carrying a u16, aligned as the kernel wants.
        let mut control = [0u64; 4];
        // SAFETY: msghdr is plain data; every pointer below outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = addr.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = addr.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        // SAFETY: CMSG_SPACE is a pure size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
        // SAFETY: msg_control points at `control`, large enough for one
        // cmsg with a u16 (CMSG_SPACE(2) <= 32 bytes), so CMSG_FIRSTHDR is
        // non-null and CMSG_DATA stays inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, segment);
        }
        // SAFETY: a valid socket descriptor and a fully initialised msghdr.
        let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != buf.len() {
            return Err(io::Error::other("segmented send was cut short"));
        }
        Ok(())
    }
}

impl Network for TokioNet {
    type Socket = HostSocket;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        std::future::ready(bind_std(addr).and_then(|s| HostSocket::new(s, false)))
    }

    fn bind_transfer(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        let socket = bind_std(addr).and_then(|s| {
            #[cfg(target_os = "linux")]
            let gro = gro::enable(&s);
            #[cfg(not(target_os = "linux"))]
            let gro = false;
            HostSocket::new(s, gro)
        });
        std::future::ready(socket)
    }

    fn bind_client(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        let socket = bind_std(addr).and_then(|s| {
            #[cfg(target_os = "linux")]
            if recverr::enable(&s, addr.is_ipv4()) {
                use tokio::io::Interest;
                return HostSocket::with_interest(s, false, Interest::READABLE | Interest::ERROR);
            }
            HostSocket::new(s, false)
        });
        std::future::ready(socket)
    }
}

/// ICMP errors on an unconnected UDP socket: Linux reports them only with
/// `IP_RECVERR` (`IPV6_RECVERR`) on; then the next receive fails with the
/// error (`ECONNREFUSED` for port unreachable). The queued error messages
/// are freed with the socket, which a client closes after one transfer.
#[cfg(target_os = "linux")]
mod recverr {
    use std::os::fd::AsRawFd;

    /// Best effort: without it a closed port costs the client its retries.
    /// True if the option is on.
    pub(super) fn enable(socket: &std::net::UdpSocket, v4: bool) -> bool {
        let (level, name) = if v4 {
            (libc::IPPROTO_IP, libc::IP_RECVERR)
        } else {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
        };
        let on: libc::c_int = 1;
        // SAFETY: a valid descriptor, and a pointer to an int with its size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                name,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        r == 0
    }
}

/// UDP receive offload (Linux 5.0+): with `UDP_GRO` on, the kernel may hand
/// over several datagrams of one flow in one read, with their segment size
/// in a control message. Only transfer sockets turn it on: whoever reads
/// such a socket must split what it gets.
#[cfg(target_os = "linux")]
mod gro {
    use std::io;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    /// Best effort: a kernel without GRO leaves every read one datagram.
    /// True when it is on.
    pub fn enable(socket: &impl AsRawFd) -> bool {
        let on: libc::c_int = 1;
        // SAFETY: a valid descriptor and a pointer to a c_int of the size given.
        0 == unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    }

    /// One `recvmsg`: `(len, from, segment)`.
    pub fn recv(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
        // SAFETY: plain data, fully written by the kernel before it is read.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; every pointer below outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = &mut addr as *mut libc::sockaddr_storage as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: a valid descriptor and a fully initialised msghdr.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = n as usize;
        let mut segment = len;
        // SAFETY: the kernel filled msg_control up to msg_controllen; the
        // CMSG macros walk only inside it.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                    let size =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
                    if size > 0 {
                        segment = size as usize;
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let from = match i32::from(addr.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says this is a sockaddr_in.
                let a = unsafe { *(&addr as *const _ as *const libc::sockaddr_in) };
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                ))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says this is a sockaddr_in6.
                let a = unsafe { *(&addr as *const _ as *const libc::sockaddr_in6) };
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                ))
            }
            _ => return Err(io::Error::other("datagram from an unknown address family")),
        };
        Ok((len, from, segment.max(1)))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A window sent with segmentation offload arrives whole at a socket
    /// with receive offload, or datagram by datagram where the kernel does
    /// not coalesce: either way every byte, in order, in the right sizes.
    #[test]
    fn segmented_send_and_coalesced_receive_keep_every_datagram() {
        let rx = bind_std("127.0.0.1:0".parse().unwrap()).unwrap();
        rx.set_nonblocking(false).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert!(gro::enable(&rx));
        let tx = bind_std("127.0.0.1:0".parse().unwrap()).unwrap();
        let segment = 1472;
        let window: Vec<u8> = (0..(20 * segment + 300)).map(|i| (i % 251) as u8).collect();
        let to = rx.local_addr().unwrap();
        gso::send(&tx, &window, segment, to).unwrap();
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while got.len() < window.len() {
            let (len, from, seg) = gro::recv(&rx, &mut buf).unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            for d in buf[..len].chunks(seg) {
                sizes.push(d.len());
                got.extend_from_slice(d);
            }
        }
        assert_eq!(got, window);
        let mut want = vec![segment; 20];
        want.push(300);
        assert_eq!(sizes, want);
    }
}
