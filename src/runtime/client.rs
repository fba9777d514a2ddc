//! The TFTP client: downloads and uploads over any [`Network`].

use super::driver::{drive, now, Cancel, Control, Until};
use super::socket::{DatagramSocket, Network};
use crate::data::{MemSource, SharedSink, Sink, Source};
use crate::proto::{ClientConfig, ClientGet, ClientPut, Event, Summary, Transfer, TransferError};
use crate::store::UploadSink;
use crate::wire::ErrorCode;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use tokio::sync::watch;

/// Why a client transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The transfer ran and ended with a TFTP error or a timeout.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// A local problem before or after the transfer (socket, file).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server's port is unreachable: the host answered a datagram with
    /// an ICMP error (nothing listens on that port, or a firewall rejects
    /// it), so the transfer ended without waiting out its retries.
    #[error("port unreachable: {0}")]
    Unreachable(io::Error),
}

impl ClientError {
    /// The TFTP ERROR code involved, if any (the server's, or the one this
    /// side sent).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Transfer(e) => e.code(),
            ClientError::Io(_) | ClientError::Unreachable(_) => None,
        }
    }
}

/// Progress of a running transfer: bytes so far and the total, when the
/// server announced one (`tsize`) or the source knows its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub bytes: u64,
    pub total: Option<u64>,
}

/// A TFTP client over a network.
#[derive(Clone)]
pub struct Client<N: Network> {
    net: N,
    config: ClientConfig,
    sync_files: bool,
}

impl<N: Network> Client<N> {
    pub fn new(net: N, config: ClientConfig) -> Self {
        Client {
            net,
            config,
            sync_files: false,
        }
    }

    /// Whether [`Client::get_file`] fsyncs a download before it replaces
    /// the old file (off by default).
    pub fn sync_files(mut self, yes: bool) -> Self {
        self.sync_files = yes;
        self
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Downloads `remote` into `sink`.
    pub async fn get<K: Sink + Send + 'static>(
        &self,
        server: SocketAddr,
        remote: &str,
        sink: K,
        progress: impl FnMut(Progress),
    ) -> Result<Summary, ClientError> {
        let socket = self.bind_for(server).await?;
        let machine = ClientGet::new(now(), server, remote, sink, &self.config)?;
        run(machine, socket, None, progress).await
    }

    /// Downloads `remote` into memory.
    pub async fn get_bytes(
        &self,
        server: SocketAddr,
        remote: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let sink = SharedSink::new();
        self.get(server, remote, sink.clone(), |_| {}).await?;
        Ok(sink.take())
    }

    /// Downloads `remote` to the local path `local`. The file appears only
    /// when the download is complete; a failure leaves any old file as it was.
    /// A device or pipe (`/dev/null`) is written in place, as a stream.
    pub async fn get_file(
        &self,
        server: SocketAddr,
        remote: &str,
        local: &Path,
        progress: impl FnMut(Progress),
    ) -> Result<Summary, ClientError> {
        // A device, pipe or socket (`/dev/null`, `/dev/stdout`) is written
        // as a stream: renaming a temporary file over it would replace the
        // device node itself.
        let special = std::fs::metadata(local).is_ok_and(|m| !m.is_file() && !m.is_dir());
        if special {
            let out = std::fs::OpenOptions::new().write(true).open(local)?;
            let sink = crate::data::StreamSink::new(out);
            return self.get(server, remote, sink, progress).await;
        }
        let file = UploadSink::replacing(local.to_path_buf())?.synced(self.sync_files);
        let sink = crate::data::WriteBehind::new(file);
        self.get(server, remote, sink, progress).await
    }

    /// Uploads `source` as `remote`.
    pub async fn put<S: Source + Send + 'static>(
        &self,
        server: SocketAddr,
        remote: &str,
        source: S,
        progress: impl FnMut(Progress),
    ) -> Result<Summary, ClientError> {
        let total = source.size();
        let socket = self.bind_for(server).await?;
        let machine = ClientPut::new(now(), server, remote, source, &self.config)?;
        run(machine, socket, total, progress).await
    }

    pub async fn put_bytes(
        &self,
        server: SocketAddr,
        remote: &str,
        data: Vec<u8>,
    ) -> Result<Summary, ClientError> {
        self.put(server, remote, MemSource::new(data), |_| {}).await
    }

    pub async fn put_file(
        &self,
        server: SocketAddr,
        remote: &str,
        local: &Path,
        progress: impl FnMut(Progress),
    ) -> Result<Summary, ClientError> {
        let source = crate::data::FileSource::new(std::fs::File::open(local)?)?;
        self.put(server, remote, source, progress).await
    }

    async fn bind_for(&self, server: SocketAddr) -> io::Result<N::Socket> {
        bind_any(&self.net, server).await
    }
}

/// Binds a socket for talking to `server`: its address family, an
/// OS-chosen port (a client's TID), with [`Network::bind_client`].
pub async fn bind_any<N: Network>(net: &N, server: SocketAddr) -> io::Result<N::Socket> {
    let any = match server.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    net.bind_client(SocketAddr::new(any, 0)).await
}

/// How a client's drive ended.
enum Ended {
    Outcome(Result<Summary, TransferError>),
    /// The server's port is unreachable (see [`Network::bind_client`]).
    Unreachable(io::Error),
    /// The machine closed without reporting an outcome.
    Silent,
}

/// Drives a client machine on `socket` until it reports its outcome, then
/// leaves it dallying in a spawned task so a lost final ACK can still be
/// answered. The hooks see every event and the byte count after every
/// datagram, and may end the transfer from this side ([`Control::Abort`]),
/// as probing firmware does. `None` if the machine closed without an
/// outcome, or if the server's port turned out unreachable. This is the
/// loop [`Client`] runs; it is public for drivers that build their own
/// client machines (the lab's firmware profiles).
pub async fn drive_to_outcome<T, S>(
    machine: T,
    socket: S,
    on_event: impl FnMut(&Event) -> Control,
    on_progress: impl FnMut(u64) -> Control,
) -> Option<Result<Summary, TransferError>>
where
    T: Transfer + Send + 'static,
    S: DatagramSocket,
{
    match drive_client(machine, socket, on_event, on_progress).await {
        Ended::Outcome(r) => Some(r),
        Ended::Unreachable(_) | Ended::Silent => None,
    }
}

async fn drive_client<T, S>(
    mut machine: T,
    socket: S,
    mut on_event: impl FnMut(&Event) -> Control,
    on_progress: impl FnMut(u64) -> Control,
) -> Ended
where
    T: Transfer + Send + 'static,
    S: DatagramSocket,
{
    let (_keep, mut cancel) = watch::channel(Cancel::Run);
    let mut result = None;
    let events = |event: Event| {
        let control = on_event(&event);
        if let Event::Finished(r) = event {
            result = Some(r);
        }
        control
    };
    let until = Until::Finished;
    let failed = drive(
        &mut machine,
        &socket,
        &mut cancel,
        until,
        None,
        events,
        on_progress,
    )
    .await;
    if let Some(e) = failed {
        return Ended::Unreachable(e);
    }
    if !machine.is_closed() {
        tokio::spawn(async move {
            let (_keep, mut cancel) = watch::channel(Cancel::Run);
            let idle = |_| Control::Continue;
            drive(
                &mut machine,
                &socket,
                &mut cancel,
                Until::Closed,
                None,
                |_| Control::Continue,
                idle,
            )
            .await;
        });
    }
    result.map_or(Ended::Silent, Ended::Outcome)
}

/// Runs a transfer for the public API: progress reports carry the total
/// once known (from the source, or the server's tsize).
async fn run<T, S>(
    machine: T,
    socket: S,
    total: Option<u64>,
    mut progress: impl FnMut(Progress),
) -> Result<Summary, ClientError>
where
    T: Transfer + Send + 'static,
    S: DatagramSocket,
{
    // A Mutex (not a Cell) keeps the future Send, so callers can spawn it.
    let total = std::sync::Mutex::new(total);
    let total_now = || total.lock().map_or(None, |t| *t);
    let on_event = |event: &Event| {
        if let (Event::Negotiated(n), Ok(mut t)) = (event, total.lock()) {
            *t = t.or(n.tsize);
        }
        Control::Continue
    };
    let mut last = 0;
    let on_progress = |bytes| {
        if bytes != last {
            last = bytes;
            progress(Progress {
                bytes,
                total: total_now(),
            });
        }
        Control::Continue
    };
    match drive_client(machine, socket, on_event, on_progress).await {
        Ended::Outcome(Ok(summary)) => Ok(summary),
        Ended::Outcome(Err(e)) => Err(e.into()),
        Ended::Unreachable(e) => Err(ClientError::Unreachable(e)),
        Ended::Silent => Err(io::Error::other("transfer ended without an outcome").into()),
    }
}
