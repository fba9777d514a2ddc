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
}

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
}

impl Network for TokioNet {
    type Socket = tokio::net::UdpSocket;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        std::future::ready(bind_std(addr).and_then(tokio::net::UdpSocket::from_std))
    }
}
