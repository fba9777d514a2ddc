//! The one datagram-socket abstraction every runtime implements: tokio's
//! UDP here, turmoil's in the simulator, a raw pnet link in the hardware
//! runner. The server and client are generic over [`Network`], so the same
//! code runs on all three.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

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
}

/// The host's UDP stack, through tokio.
///
/// Sockets get send and receive buffers of [`SOCKET_BUFFER`] bytes (the
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

    async fn send_segments(
        &self,
        buf: &[u8],
        segment: usize,
        target: SocketAddr,
    ) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if buf.len() > segment && gso::available() {
            loop {
                self.writable().await?;
                let sent = self.try_io(tokio::io::Interest::WRITABLE, || {
                    gso::send(self, buf, segment, target)
                });
                match sent {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if gso::unsupported(&e) => {
                        gso::disable();
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        for datagram in buf.chunks(segment.max(1)) {
            tokio::net::UdpSocket::send_to(self, datagram, target).await?;
        }
        Ok(())
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
    type Socket = tokio::net::UdpSocket;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        std::future::ready(bind_std(addr).and_then(tokio::net::UdpSocket::from_std))
    }
}
