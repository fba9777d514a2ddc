//! The TFTP server: a listener on the well-known address that starts one
//! task per transfer, each on its own socket (its own TID).

use super::driver::{drive, drive_own_task, now, Cancel, Control, Until};
use super::socket::{DatagramSocket, Network};
use crate::data::FileSource;
use crate::options::Direction;
use crate::proto::{
    is_request, parse_request, Admission, Counters, Event, Ignored, Listener, ListenerConfig,
    Refusal, Refused, ServerConfig, ServerRead, ServerWrite, Summary, Transfer, TransferError,
};
use crate::store::{Store, StoreError, UploadSink};
use crate::wire::{ErrorCode, MAX_DATAGRAM};
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::task::JoinSet;

/// How the server listens and how many transfers it runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The listening address (`0.0.0.0:69` by default; `[::]:69` serves
    /// IPv6 and, where the OS allows, IPv4 too).
    pub bind: SocketAddr,
    /// More listening addresses (an IPv6 one beside an IPv4 one, or one per
    /// interface), served the same way with one store and one table of
    /// transfers. A transfer's socket is bound on the address its request
    /// came to, so a board on each network sees answers from the address
    /// it asked.
    pub also_bind: Vec<SocketAddr>,
    /// Timeouts, retries and option caps for each transfer.
    pub transfer: ServerConfig,
    /// Concurrent transfers; requests beyond get ERROR 0 "server busy".
    pub max_transfers: usize,
    /// Ports for transfer sockets; `None` lets the OS choose.
    pub port_range: Option<RangeInclusive<u16>>,
    /// Longest a transfer may run, however it progresses: then it is
    /// aborted with ERROR 0. Bounds how long one slow client holds a slot.
    pub max_transfer_time: Duration,
    /// How long a request may wait for its name to be resolved and its file
    /// opened (on a blocking worker, at most [`OPEN_WORKERS`] at once)
    /// before it is refused with ERROR 0 "server busy". A file system that
    /// hangs costs requests this much, never the listener.
    pub open_deadline: Duration,
    /// Chooses, per request, the store that serves it and the name it is
    /// looked up by: per-board roots, remapping. `None`: the server's store,
    /// the name as asked.
    pub resolver: Option<Arc<dyn Resolve>>,
    /// Serve every transfer from the listening socket itself, telling
    /// transfers apart by the client's address and port (dnsmasq's
    /// `tftp-single-port`): one firewall rule or NAT mapping covers all of
    /// TFTP. `port_range` is then unused. For real networks: a simulated
    /// host does not learn a single-port transfer's timers.
    pub single_port: bool,
}

/// Decides which store serves a request, under which name, or refuses it.
/// Runs on a blocking worker before the name is resolved (it may look at
/// the file system), never on the listener.
pub trait Resolve: Send + Sync {
    /// `store` is the server's own. `Err` carries the refusal for the
    /// client and the reason for the log.
    fn resolve(
        &self,
        store: &Arc<Store>,
        peer: SocketAddr,
        direction: Direction,
        name: &str,
    ) -> Result<Resolved, (Refusal, String)>;
}

/// Where a request is served from: a store (the server's, or one of the
/// client's own) and the name inside it. `note` is logged at debug level
/// when set (`"remapped by rule 2"`, `"root 10.0.0.5/"`).
pub struct Resolved {
    pub store: Arc<Store>,
    pub name: String,
    pub note: Option<String>,
}

impl std::fmt::Debug for dyn Resolve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolve")
    }
}

/// Blocking workers that may resolve and open files at once. A hung file
/// system holds at most this many threads.
pub const OPEN_WORKERS: usize = 16;

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bind: SocketAddr::from(([0, 0, 0, 0], 69)),
            also_bind: Vec::new(),
            transfer: ServerConfig::default(),
            max_transfers: 512,
            port_range: None,
            max_transfer_time: Duration::from_secs(3600),
            open_deadline: Duration::from_secs(2),
            resolver: None,
            single_port: false,
        }
    }
}

/// What the server reports to the program embedding it.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    Started {
        id: u64,
        peer: SocketAddr,
        filename: String,
        direction: Direction,
    },
    Finished {
        id: u64,
        peer: SocketAddr,
        filename: String,
        direction: Direction,
        result: Result<Summary, TransferError>,
        counters: Counters,
    },
    /// A request answered with an ERROR instead of a transfer.
    Refused {
        peer: SocketAddr,
        filename: Option<String>,
        code: ErrorCode,
        message: String,
    },
}

/// Counters over the server's life.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub refused: AtomicU64,
    /// Requests refused with "server busy" because of `max_transfers`.
    pub busy: AtomicU64,
    /// Retransmitted requests from a client whose transfer is running, or
    /// late copies of the request of a transfer that just succeeded.
    pub duplicate_requests: AtomicU64,
}

/// The server's counters at one moment ([`Server::stats`](super::ServerHandle::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub refused: u64,
    pub busy: u64,
    pub duplicate_requests: u64,
    pub active: u64,
}

struct Shared {
    store: Arc<Store>,
    options: ServerOptions,
    events: broadcast::Sender<ServerEvent>,
    stats: ServerStats,
    /// Which requests start transfers (duplicates, late copies, the cap):
    /// the sans-IO listener, which this module only drives.
    listener: Mutex<Listener>,
    next_id: AtomicU64,
    next_port: AtomicU64,
    /// Permits for [`OPEN_WORKERS`] blocking opens.
    opens: Arc<Semaphore>,
    /// The most live transfers since the table was last empty.
    active_high: AtomicUsize,
}

/// A running server. Dropping it without [`ServerHandle::stop`] aborts the
/// listener and every transfer at once.
pub struct ServerHandle {
    /// One per listening socket, `bind` first.
    local_addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<Option<Duration>>,
    listeners: Vec<tokio::task::JoinHandle<usize>>,
}

/// What [`ServerHandle::stop`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Transfers still running when the grace period ran out (aborted with
    /// ERROR 0).
    pub aborted: usize,
    /// Files removed because `remove_created_on_close` was set.
    pub removed: Vec<String>,
}

/// Starts a server on `net`, serving `store`. The store's `max_upload`
/// also bounds what a WRQ may announce (`tsize`), so it is set in one place;
/// a `limits.max_upload` in `options` can only tighten it.
pub async fn serve<N: Network>(
    net: N,
    store: Arc<Store>,
    options: ServerOptions,
) -> io::Result<ServerHandle> {
    let mut sockets = Vec::new();
    for &addr in std::iter::once(&options.bind).chain(&options.also_bind) {
        let socket = net
            .bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
        sockets.push(socket);
    }
    serve_on(net, store, options, sockets).await
}

/// [`serve`] on listening sockets bound already: handed over by systemd
/// (socket activation), or bound while the process could still take port
/// 69, before it gave up its privileges. `options.bind` and `also_bind` are
/// not bound again; each listener's transfers bind on its own address.
pub async fn serve_on<N: Network>(
    net: N,
    store: Arc<Store>,
    mut options: ServerOptions,
    sockets: Vec<N::Socket>,
) -> io::Result<ServerHandle> {
    if sockets.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no socket to listen on",
        ));
    }
    let limits = &mut options.transfer.limits;
    limits.max_upload = match (limits.max_upload, store.config().max_upload) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let local_addrs = sockets
        .iter()
        .map(DatagramSocket::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let (events, _) = broadcast::channel(1024);
    let listener = ListenerConfig {
        max_transfers: options.max_transfers,
        remember_done: options.transfer.timeout,
    };
    let shared = Arc::new(Shared {
        store,
        options,
        events,
        stats: ServerStats::default(),
        listener: Mutex::new(Listener::new(listener)),
        next_id: AtomicU64::new(1),
        next_port: AtomicU64::new(0),
        opens: Arc::new(Semaphore::new(OPEN_WORKERS)),
        active_high: AtomicUsize::new(0),
    });
    let (stop, stop_rx) = watch::channel(None);
    let listeners = sockets
        .into_iter()
        .map(|socket| tokio::spawn(listen(net.clone(), socket, shared.clone(), stop_rx.clone())))
        .collect();
    // Debug: a program that wants this line says it its own way (the CLI
    // prints one), so `tftplab serve` does not print it twice.
    tracing::debug!(?local_addrs, root = %shared.store.root().display(), "serving");
    Ok(ServerHandle {
        local_addrs,
        shared,
        stop,
        listeners,
    })
}

impl ServerHandle {
    /// The address the server listens on (with the OS-chosen port if the
    /// configured one was 0): `bind`'s.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every address the server listens on, `bind`'s first, then
    /// `also_bind`'s in order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    pub fn host(&self) -> std::net::IpAddr {
        self.local_addr().ip()
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// A stream of events from now on. A subscriber that falls more than
    /// 1024 events behind loses the oldest ones (and is told so).
    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.shared.events.subscribe()
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            started: get(&s.started),
            succeeded: get(&s.succeeded),
            failed: get(&s.failed),
            refused: get(&s.refused),
            busy: get(&s.busy),
            duplicate_requests: get(&s.duplicate_requests),
            active: self.shared.listener.lock().map_or(0, |l| l.active() as u64),
        }
    }

    /// Stops accepting requests, lets live transfers finish for up to
    /// `grace`, aborts the rest with ERROR 0, releases every socket, and
    /// (when the store has `remove_created_on_close`) removes the files put
    /// during this session.
    pub async fn stop(mut self, grace: Duration) -> StopReport {
        let _ = self.stop.send(Some(grace));
        let mut report = StopReport::default();
        for listener in std::mem::take(&mut self.listeners) {
            report.aborted += listener.await.unwrap_or(0);
        }
        match self.shared.store.close() {
            Ok(removed) => report.removed = removed,
            Err(e) => tracing::warn!(error = %e, "removing created files failed"),
        }
        tracing::info!(aborted = report.aborted, "stopped");
        report
    }
}

/// The listener task. Returns how many transfers it had to abort.
///
/// It only sorts datagrams: parsing, the duplicate and busy checks, and
/// refusals that need no file. Everything that can block (resolving the
/// name, opening the file) happens in the request's own task, on a
/// blocking worker, so one slow or hostile request never delays another.
async fn listen<N: Network>(
    net: N,
    socket: N::Socket,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
) -> usize {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut tasks = JoinSet::new();
    let (cancel, cancel_rx) = watch::channel(Cancel::Run);
    let routes = Routes::default();
    let grace = loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                // A dropped handle means stop now.
                break if changed.is_ok() { (*stop.borrow()).unwrap_or_default() } else { Duration::ZERO };
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, peer)) => {
                    // Single-port: a transfer's own datagrams go to it; a
                    // request (a retransmitted one too) to the listener.
                    if shared.options.single_port
                        && !is_request(&buf[..len])
                        && routes.deliver(peer, &buf[..len])
                    {
                        continue;
                    }
                    let request = Incoming { shared: &shared, listener: &*socket, peer };
                    if let Some(admitted) = request.handle(&buf[..len]).await {
                        let routes = routes.clone();
                        tasks.spawn(admitted.run(net.clone(), socket.clone(), routes, cancel_rx.clone()));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "listener receive failed"),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    drop(socket);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_ok() {
        return 0;
    }
    let aborted = tasks.len();
    let _ = cancel.send(Cancel::Abort);
    while tasks.join_next().await.is_some() {}
    aborted
}

/// One datagram that arrived at the listener.
struct Incoming<'a, S: DatagramSocket> {
    shared: &'a Arc<Shared>,
    listener: &'a S,
    peer: SocketAddr,
}

impl<S: DatagramSocket> Incoming<'_, S> {
    /// Answers the datagram, or admits it as a request whose file is to
    /// be opened. Never blocks on the file system.
    async fn handle(self, datagram: &[u8]) -> Option<Admitted> {
        let shared = self.shared;
        let (admission, active) = {
            let mut listener = shared.listener.lock().ok()?;
            let admission = listener.handle_datagram(now(), self.peer, datagram);
            (admission, listener.active())
        };
        let (direction, filename) = match admission {
            Admission::Start { direction, request } => (direction, request.filename.to_string()),
            Admission::Ignore(Ignored::NotARequest) => return None,
            Admission::Ignore(Ignored::Duplicate) => {
                shared
                    .stats
                    .duplicate_requests
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Admission::Refuse(refusal, Refused::Malformed) => {
                refuse(self.listener, shared, self.peer, None, refusal, None).await;
                return None;
            }
            Admission::Refuse(refusal, Refused::Busy) => {
                shared.stats.busy.fetch_add(1, Ordering::Relaxed);
                let name = parse_request(datagram)
                    .ok()
                    .flatten()
                    .map(|(_, r)| r.filename.to_string());
                let why = Some(format!("{active} transfers running"));
                refuse(self.listener, shared, self.peer, name, refusal, why).await;
                return None;
            }
        };
        shared.active_high.fetch_max(active, Ordering::Relaxed);
        Some(Admitted {
            id: shared.next_id.fetch_add(1, Ordering::Relaxed),
            peer: self.peer,
            request: datagram.into(),
            filename,
            direction,
            slot: Slot {
                shared: shared.clone(),
                peer: self.peer,
                succeeded_request: None,
            },
        })
    }
}

/// Sends `refusal` from the listener's address and reports it. `why` is
/// for the log only: the client learns the code and the short message.
async fn refuse<S: DatagramSocket>(
    listener: &S,
    shared: &Shared,
    peer: SocketAddr,
    filename: Option<String>,
    refusal: Refusal,
    why: Option<String>,
) {
    let mut buf = [0u8; 512];
    if let Ok(len) = refusal.emit(&mut buf) {
        let _ = listener.send_to(&buf[..len], peer).await;
    }
    shared.stats.refused.fetch_add(1, Ordering::Relaxed);
    let file = filename.as_deref().unwrap_or("-");
    let why = why.as_deref().unwrap_or(&refusal.message);
    // `sent`, not `message`: that is the event's own field in JSON logs.
    tracing::info!(%peer, file, code = refusal.code.0, sent = %refusal.message, why, "refused");
    let _ = shared.events.send(ServerEvent::Refused {
        peer,
        filename,
        code: refusal.code,
        message: refusal.message,
    });
}

/// A client's place in the listener's table of live transfers, taken when
/// its request was admitted: given back when the task that serves it ends,
/// however it ends (refused after all, finished, aborted at shutdown), so
/// no path can leak a slot.
struct Slot {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// The request's datagram, once its transfer succeeded: the listener
    /// ignores a late copy of it for a moment.
    succeeded_request: Option<Box<[u8]>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Ok(mut listener) = self.shared.listener.lock() else {
            return;
        };
        listener.transfer_ended(now(), self.peer, self.succeeded_request.take());
        let idle = listener.active() == 0;
        drop(listener);
        if idle && self.shared.active_high.swap(0, Ordering::Relaxed) >= TRIM_AFTER {
            release_freed_memory();
        }
    }
}

/// Live transfers at once after which the server, once idle again, hands
/// freed memory back to the OS.
const TRIM_AFTER: usize = 64;

/// glibc keeps what a flood of transfers freed (a few KiB each) in its
/// heaps, where other allocations pin it: after two floods of 2000 silent
/// requests the RSS at rest stayed at 4x its baseline. `malloc_trim`
/// returns the free pages inside the heaps too. It runs on a thread of its
/// own: with a large heap it takes a few milliseconds.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("tftplab-trim".into())
            .spawn(|| {
                // SAFETY: no arguments but a padding size; glibc locks its
                // arenas itself.
                unsafe { libc::malloc_trim(0) };
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "cannot start the memory trim");
        }
    }
}

/// Single-port mode's table: for each client address and port with a
/// transfer on the listening socket, where its datagrams go.
#[derive(Clone, Default)]
struct Routes(Arc<Mutex<std::collections::HashMap<SocketAddr, RouteTx>>>);

type RouteTx = tokio::sync::mpsc::Sender<(Box<[u8]>, SocketAddr)>;

/// A transfer's queue of datagrams: what a socket's receive buffer would
/// hold. A datagram that finds it full is dropped, as a full buffer would.
const ROUTE_QUEUE: usize = 256;

impl Routes {
    /// Hands `datagram` from `peer` to its transfer, if it has one.
    fn deliver(&self, peer: SocketAddr, datagram: &[u8]) -> bool {
        let Ok(routes) = self.0.lock() else {
            return false;
        };
        let Some(tx) = routes.get(&peer) else {
            return false;
        };
        // Full or closed: dropped, as by a socket; either way it was the
        // transfer's, not a request.
        let _ = tx.try_send((datagram.into(), peer));
        true
    }

    /// A socket for `peer`'s transfer on the listener's own socket; its
    /// route goes when it is dropped.
    fn open<S: DatagramSocket>(&self, listener: Arc<S>, peer: SocketAddr) -> RoutedSocket<S> {
        let (tx, rx) = tokio::sync::mpsc::channel(ROUTE_QUEUE);
        if let Ok(mut routes) = self.0.lock() {
            routes.insert(peer, tx);
        }
        RoutedSocket {
            listener,
            rx: tokio::sync::Mutex::new(rx),
            peer,
            routes: self.clone(),
        }
    }
}

/// A transfer's view of the listening socket in single-port mode: it sends
/// from the listener's address and port, and receives what the listener
/// routes to it.
struct RoutedSocket<S> {
    listener: Arc<S>,
    rx: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(Box<[u8]>, SocketAddr)>>,
    peer: SocketAddr,
    routes: Routes,
}

impl<S> Drop for RoutedSocket<S> {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.routes.0.lock() {
            routes.remove(&self.peer);
        }
    }
}

impl<S: DatagramSocket> DatagramSocket for RoutedSocket<S> {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl std::future::Future<Output = io::Result<usize>> + Send {
        self.listener.send_to(buf, target)
    }

    fn send_segments(
        &self,
        buf: &[u8],
        segment: usize,
        target: SocketAddr,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send {
        self.listener.send_segments(buf, segment, target)
    }

    /// Cancel-safe: the lock and the channel's receive both are.
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut rx = self.rx.lock().await;
        match rx.recv().await {
            Some((datagram, from)) => {
                let n = datagram.len().min(buf.len());
                buf[..n].copy_from_slice(&datagram[..n]);
                Ok((n, from))
            }
            // The listener is gone: nothing more will come.
            None => std::future::pending().await,
        }
    }
}

/// What a request opened: the file to send, or the upload to receive.
enum Opened {
    Read(FileSource),
    Write(UploadSink),
}

/// A request admitted by the listener: its file is yet to be opened.
struct Admitted {
    id: u64,
    peer: SocketAddr,
    /// The request datagram: parsed again once the file is open, and
    /// remembered for a moment if the transfer succeeds.
    request: Box<[u8]>,
    filename: String,
    direction: Direction,
    slot: Slot,
}

impl Admitted {
    /// Opens the file, builds the machine, binds the transfer's socket and
    /// runs the transfer; or refuses the request from the listener's
    /// address.
    async fn run<N: Network>(
        self,
        net: N,
        listener: Arc<N::Socket>,
        routes: Routes,
        cancel: watch::Receiver<Cancel>,
    ) {
        let shared = self.slot.shared.clone();
        let ip = listener
            .local_addr()
            .map_or(shared.options.bind.ip(), |a| a.ip());
        let (machine, coalesce, lock_step) = match self.start(&net).await {
            Ok(started) => started,
            Err((refusal, why)) => {
                let name = Some(self.filename);
                refuse(&*listener, &shared, self.peer, name, refusal, why).await;
                return;
            }
        };
        if shared.options.single_port {
            let socket = routes.open(listener, self.peer);
            self.serve(machine, socket, cancel, lock_step).await;
            return;
        }
        let socket = match bind_transfer_socket(&net, &shared, ip, coalesce).await {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(error = %e, "cannot bind a transfer socket");
                let refusal = Refusal::new(ErrorCode::UNDEFINED, "server out of sockets");
                let name = Some(self.filename);
                refuse(
                    &*listener,
                    &shared,
                    self.peer,
                    name,
                    refusal,
                    Some(e.to_string()),
                )
                .await;
                return;
            }
        };
        self.serve(machine, socket, cancel, lock_step).await;
    }

    /// Runs the transfer on `socket`, its own or the listener's.
    async fn serve<S: DatagramSocket>(
        self,
        machine: Box<dyn Transfer + Send>,
        socket: S,
        cancel: watch::Receiver<Cancel>,
        lock_step: bool,
    ) {
        let shared = self.slot.shared.clone();
        shared.stats.started.fetch_add(1, Ordering::Relaxed);
        let _ = shared.events.send(ServerEvent::Started {
            id: self.id,
            peer: self.peer,
            filename: self.filename.clone(),
            direction: self.direction,
        });
        let task = TransferTask {
            id: self.id,
            peer: self.peer,
            request: self.request,
            filename: self.filename,
            direction: self.direction,
            machine,
            socket,
            lock_step,
            slot: self.slot,
        };
        task.run(cancel).await;
    }

    /// Opens the file and builds the machine; then whether its socket
    /// should take a window of DATA per read (receive offload), and whether
    /// it runs lock-step (windowsize 1).
    async fn start<N: Network>(
        &self,
        net: &N,
    ) -> Result<(Box<dyn Transfer + Send>, bool, bool), (Refusal, Option<String>)> {
        let shared = &self.slot.shared;
        let opened = open_file(net, shared, self.peer, self.direction, &self.filename).await?;
        let Ok(Some((_, request))) = parse_request(&self.request) else {
            let refusal = Refusal::new(ErrorCode::UNDEFINED, "internal error");
            return Err((refusal, Some("request no longer parses".into())));
        };
        let config = &shared.options.transfer;
        let t = now();
        // Receive offload only where the machine granted windows of DATA to
        // arrive: a socket that coalesces needs a 64 KiB buffer for every read.
        let (machine, coalesce, lock_step): (Box<dyn Transfer + Send>, bool, bool) = match opened {
            Opened::Read(src) => {
                let m = ServerRead::new(t, self.peer, &request, src, config)?;
                let lock_step = m.negotiated().windowsize == 1;
                (Box::new(m), false, lock_step)
            }
            Opened::Write(sink) => {
                let m = ServerWrite::new(t, self.peer, &request, sink, config)?;
                let windowed = m.negotiated().windowsize > 1;
                (Box::new(m), windowed, !windowed)
            }
        };
        Ok((machine, coalesce, lock_step))
    }
}

impl From<Refusal> for (Refusal, Option<String>) {
    fn from(refusal: Refusal) -> Self {
        (refusal, None)
    }
}

/// Resolves and opens `filename` on a blocking worker, within the
/// server's open deadline.
async fn open_file<N: Network>(
    net: &N,
    shared: &Arc<Shared>,
    peer: SocketAddr,
    direction: Direction,
    filename: &str,
) -> Result<Opened, (Refusal, Option<String>)> {
    let busy = |why: &str| {
        let refusal = Refusal::new(ErrorCode::UNDEFINED, "server busy, try again later");
        (refusal, Some(why.to_string()))
    };
    let (store, name) = (shared.store.clone(), filename.to_string());
    let resolver = shared.options.resolver.clone();
    let work = async {
        let permit = shared.opens.clone().acquire_owned().await;
        let permit = permit.map_err(|_| busy("shutting down"))?;
        let opened = net
            .run_blocking(move || {
                // Held until the open returns, however long that takes.
                let _permit = permit;
                let (store, name) = match &resolver {
                    None => (store, name),
                    Some(r) => match r.resolve(&store, peer, direction, &name) {
                        Ok(to) => {
                            if let Some(note) = &to.note {
                                tracing::debug!(%peer, asked = %name, served = %to.name, note, "resolved");
                            }
                            (to.store, to.name)
                        }
                        Err((refusal, why)) => return Err((refusal, Some(why))),
                    },
                };
                let opened = match direction {
                    Direction::Read => store.open_read(&name).map(Opened::Read),
                    Direction::Write => store.open_write(&name).map(Opened::Write),
                };
                opened.map_err(|e| (store_refusal(&e), Some(e.to_string())))
            })
            .await
            .map_err(|e| busy(&format!("open failed: {e}")))?;
        opened
    };
    // The one timer here that is not a transfer's, so no socket publishes
    // it (see `DatagramSocket::next_wake`): it fires only if the open is
    // still pending when it runs out, which never happens on a network
    // whose `run_blocking` runs the work inline (the simulator's).
    let deadline = shared.options.open_deadline;
    match tokio::time::timeout(deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(busy(&format!(
            "opening the file took longer than {deadline:?}"
        ))),
    }
}

/// A fresh socket on `ip` (the listener's address the request came to):
/// an OS-chosen port, or the next free one in the configured range.
/// `coalesce` asks for receive offload.
async fn bind_transfer_socket<N: Network>(
    net: &N,
    shared: &Shared,
    ip: std::net::IpAddr,
    coalesce: bool,
) -> io::Result<N::Socket> {
    let bind = |port| {
        let addr = SocketAddr::new(ip, port);
        async move {
            if coalesce {
                net.bind_transfer(addr).await
            } else {
                net.bind(addr).await
            }
        }
    };
    let Some(range) = shared.options.port_range.clone() else {
        return bind(0).await;
    };
    let (first, count) = (u64::from(*range.start()), range.len() as u64);
    let mut last_err = io::Error::new(io::ErrorKind::AddrInUse, "port range exhausted");
    for _ in 0..count {
        let i = shared.next_port.fetch_add(1, Ordering::Relaxed) % count;
        match bind((first + i) as u16).await {
            Ok(socket) => return Ok(socket),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// The options a request asked for, as `blksize=1468,tsize=0` (`none`
/// without any), for the log: printable ASCII only (a name could carry a
/// newline to forge a log line) and at most 200 characters.
fn requested_options(request: &[u8]) -> String {
    let Ok(Some((_, r))) = crate::proto::parse_request(request) else {
        return "none".into();
    };
    let printable = |b: &[u8]| -> String {
        b.iter()
            .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
            .collect()
    };
    let mut shown = r
        .options
        .iter()
        .map(|o| format!("{}={}", printable(o.name), printable(o.value)))
        .collect::<Vec<_>>()
        .join(",");
    if shown.is_empty() {
        return "none".into();
    }
    if shown.len() > 200 {
        shown.truncate(197);
        shown.push_str("...");
    }
    shown
}

fn store_refusal(e: &StoreError) -> Refusal {
    Refusal::new(e.error_code(), e.message())
}

/// A transfer that has been accepted and is ready to run.
struct TransferTask<S: DatagramSocket> {
    id: u64,
    peer: SocketAddr,
    /// The request datagram, remembered for a moment if the transfer succeeds.
    request: Box<[u8]>,
    filename: String,
    direction: Direction,
    machine: Box<dyn Transfer + Send>,
    socket: S,
    /// Windowsize 1: it may wait from a thread of its own.
    lock_step: bool,
    slot: Slot,
}

impl<S: DatagramSocket> TransferTask<S> {
    /// Runs the transfer, reports its outcome as soon as it is known, then
    /// keeps the machine (and its place in the duplicate-request table)
    /// until it closes, so a receiver can dally.
    async fn run(mut self, mut cancel: watch::Receiver<Cancel>) {
        let lifetime = now() + self.slot.shared.options.max_transfer_time;
        let mut result = None;
        let (id, peer, file, direction) = (self.id, self.peer, &self.filename, self.direction);
        let asked = requested_options(&self.request);
        // One line per transfer when its options are settled (before any
        // data): what the client asked and what it got. Nothing per block.
        let on_event = |event| {
            match event {
                Event::Finished(r) => result = Some(r),
                Event::Negotiated(n) => tracing::info!(
                    id, %peer, file, ?direction, asked = %asked, blksize = n.blksize,
                    windowsize = n.windowsize, timeout = n.timeout, tsize = n.tsize,
                    "transfer started"
                ),
            }
            Control::Continue
        };
        let (machine, socket) = (&mut self.machine, &self.socket);
        // Its own task: in lock-step it may hold a thread while it
        // transfers (a window already costs one wake-up for many blocks).
        // Not while it dallies (an upload's lasts 11 s with nothing to do).
        drive_own_task(
            self.lock_step,
            machine,
            socket,
            &mut cancel,
            Until::Finished,
            Some(lifetime),
            on_event,
            |_| Control::Continue,
        )
        .await;
        let counters = self.machine.counters();
        let result = result.unwrap_or(Err(TransferError::Local {
            code: ErrorCode::UNDEFINED,
            message: "transfer ended without an outcome".into(),
        }));
        let succeeded = result.is_ok();
        self.report(result, counters);
        let (machine, socket) = (&mut self.machine, &self.socket);
        let idle = |_| Control::Continue;
        drive(
            machine,
            socket,
            &mut cancel,
            Until::Closed,
            Some(lifetime),
            |_| Control::Continue,
            idle,
        )
        .await;
        // The listener remembers it when the slot is given back.
        if succeeded {
            self.slot.succeeded_request = Some(std::mem::take(&mut self.request));
        }
    }

    fn report(&self, result: Result<Summary, TransferError>, counters: Counters) {
        let shared = &self.slot.shared;
        let stats = &shared.stats;
        match &result {
            Ok(s) => {
                stats.succeeded.fetch_add(1, Ordering::Relaxed);
                let secs = s.duration.as_secs_f64();
                let mbps = if secs > 0.0 {
                    s.bytes as f64 / secs / 1e6
                } else {
                    0.0
                };
                let n = &s.negotiated;
                tracing::info!(
                    peer = %self.peer, file = %self.filename, direction = ?self.direction,
                    bytes = s.bytes, secs = format_args!("{secs:.3}"), mb_per_s = format_args!("{mbps:.1}"),
                    blksize = n.blksize, windowsize = n.windowsize, tsize = n.tsize,
                    retransmissions = s.retransmissions, timeouts = counters.timeouts,
                    spurious = counters.spurious_resends, "transfer complete"
                );
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    peer = %self.peer, file = %self.filename, direction = ?self.direction,
                    error = %e, datagrams_sent = counters.datagrams_sent,
                    datagrams_received = counters.datagrams_received, timeouts = counters.timeouts,
                    "transfer failed"
                );
            }
        }
        let _ = shared.events.send(ServerEvent::Finished {
            id: self.id,
            peer: self.peer,
            filename: self.filename.clone(),
            direction: self.direction,
            result,
            counters,
        });
    }
}
