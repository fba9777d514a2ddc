//! A [`Network`] wrapper that applies a direction's fault plan to every
//! datagram sent through it and records each in the trace. The server's
//! host wraps its network with the server-to-client faults, each client's
//! host with the client-to-server faults, so every datagram passes exactly
//! one injector.

use super::faults::{decide_scripted, Fate, Injector, Script};
use super::setup::{deliver_now, trace_fate};
use super::trace::{render_packet, Trace, TraceEvent, TraceFate};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tftplab::runtime::{now, DatagramSocket, HostSocket, Network};

/// Names hosts in the trace, tells the time since the run started, and
/// whether a link is cut.
pub trait LabClock: Send + Sync + 'static {
    fn elapsed(&self) -> Duration;
    fn name(&self, ip: IpAddr) -> String;
    /// Whether the link between two hosts is cut (partitioned) right now.
    /// The datagram still goes to the network, which drops it; the trace
    /// says so instead of showing it delivered.
    fn link_cut(&self, _from: &str, _to: &str) -> bool {
        false
    }

    /// A copy was handed to the network ([`SendLater`]) to arrive `delay`
    /// after the network's usual time. A network drops what is on a link
    /// when the link is cut: if that happens before the copy arrives, the
    /// clock calls `lost`, so the trace says so.
    fn carrying(&self, _from: &str, _to: &str, _delay: Duration, _lost: Box<dyn FnOnce() + Send>) {}
}

/// A socket whose network can hold a datagram for a while before it
/// delivers it. The simulator's sockets can: turmoil holds the copy on the
/// link and delivers it at its time on the tick grid, below the
/// millisecond of the hosts' timers: a hop takes its latency rounded to
/// the tick grid, not a timer's millisecond and then a tick more. A
/// socket that cannot returns `None`, and the fault layer holds the copy
/// on a timer of the sending host instead (millisecond resolution).
pub trait SendLater: DatagramSocket {
    fn send_later(
        &self,
        _buf: &[u8],
        _target: SocketAddr,
        _delay: Duration,
    ) -> Option<io::Result<usize>> {
        None
    }
}

/// A real host's socket: its copies wait on a timer.
impl SendLater for HostSocket {}

/// Wraps `N` so every send goes through the injector.
#[derive(Clone)]
pub struct FaultyNet<N: Network>
where
    N::Socket: SendLater,
{
    inner: N,
    /// This host's name in the trace.
    host: Arc<str>,
    injector: Arc<Mutex<(Injector, Script)>>,
    trace: Trace,
    clock: Arc<dyn LabClock>,
}

impl<N: Network> FaultyNet<N>
where
    N::Socket: SendLater,
{
    pub fn new(
        inner: N,
        host: &str,
        injector: Injector,
        script: Script,
        trace: Trace,
        clock: Arc<dyn LabClock>,
    ) -> Self {
        FaultyNet {
            inner,
            host: host.into(),
            injector: Arc::new(Mutex::new((injector, script))),
            trace,
            clock,
        }
    }
}

pub struct FaultySocket<S: SendLater> {
    inner: Arc<S>,
    host: Arc<str>,
    local: SocketAddr,
    injector: Arc<Mutex<(Injector, Script)>>,
    trace: Trace,
    clock: Arc<dyn LabClock>,
    wakes: Arc<Mutex<Wakes>>,
}

/// The timers behind one [`FaultySocket`]: its driver's (as published to
/// it) and one per copy held back. The inner socket hears of the earliest
/// ([`DatagramSocket::next_wake`]), so a simulator that skips idle time
/// wakes for a held-back copy as it does for a retransmission. A copy
/// still held when the socket closes keeps the inner socket, and this, alive
/// until it leaves.
#[derive(Default)]
struct Wakes {
    driver: Option<Instant>,
    held: Vec<Instant>,
    published: Option<Instant>,
}

impl Wakes {
    /// Tells `inner` of the earliest wake if that changed.
    fn publish(&mut self, inner: &impl DatagramSocket) {
        let earliest = self.held.iter().copied().chain(self.driver).min();
        if earliest != self.published {
            self.published = earliest;
            inner.next_wake(earliest);
        }
    }
}

impl<N: Network> Network for FaultyNet<N>
where
    N::Socket: SendLater,
{
    type Socket = FaultySocket<N::Socket>;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        let bound = self.inner.bind(addr);
        let (injector, trace, clock) = (
            self.injector.clone(),
            self.trace.clone(),
            self.clock.clone(),
        );
        let host = self.host.clone();
        async move {
            let inner = bound.await?;
            let local = inner.local_addr()?;
            Ok(FaultySocket {
                inner: Arc::new(inner),
                host,
                local,
                injector,
                trace,
                clock,
                wakes: Arc::default(),
            })
        }
    }

    fn run_blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> impl Future<Output = io::Result<R>> + Send {
        self.inner.run_blocking(work)
    }
}

impl<S: SendLater> FaultySocket<S> {
    /// The script's word first, then the random faults. The injector is
    /// consulted for every datagram either way, so adding a script rule
    /// does not shift the random fates of the others.
    fn decide(&self, rendered: &str) -> Fate {
        let Ok(mut guard) = self.injector.lock() else {
            return deliver_now();
        };
        let (injector, script) = &mut *guard;
        decide_scripted(injector, script, rendered, self.clock.elapsed())
    }

    fn record(
        &self,
        target: SocketAddr,
        to: String,
        fate: TraceFate,
        datagram: &[u8],
        packet: String,
    ) -> usize {
        self.trace.push_datagram(
            TraceEvent {
                at_us: self.clock.elapsed().as_micros() as u64,
                from: self.host.to_string(),
                to,
                fate,
                len: datagram.len(),
                packet,
                ports: Some((self.local.port(), target.port())),
            },
            datagram,
        )
    }
}

/// The copies of one datagram still on their way: when every copy meets a
/// cut link, the trace says the datagram was lost to the partition.
struct Copies {
    trace: Trace,
    index: usize,
    total: usize,
    lost: AtomicUsize,
}

impl Copies {
    /// Called as a copy leaves, with whether its link is cut.
    fn leaving(&self, cut: bool) {
        if cut && self.lost.fetch_add(1, Ordering::Relaxed) + 1 == self.total {
            self.trace.set_fate(
                self.index,
                TraceFate::Dropped {
                    cause: "partitioned".into(),
                },
            );
        }
    }
}

impl<S: SendLater> Drop for FaultySocket<S> {
    fn drop(&mut self) {
        // Copies still held back keep their wakes.
        if let Ok(mut w) = self.wakes.lock() {
            w.driver = None;
            w.publish(&*self.inner);
        }
    }
}

impl<S: SendLater> DatagramSocket for FaultySocket<S> {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        // Rendered once: the script matches it and the trace keeps it.
        let rendered = render_packet(buf);
        let fate = self.decide(&rendered);
        let shown = trace_fate(&fate);
        let delays = match fate {
            Fate::Dropped(_) => Vec::new(),
            Fate::Deliver { delays, .. } => delays,
        };
        // A copy sent into a cut link is lost there; the network drops it
        // (it is still handed over, so the network stays the authority).
        // The link's state as each copy leaves decides, so a copy held back
        // across the start or end of a partition is judged when it leaves.
        let to = self.clock.name(target.ip());
        let len = buf.len();
        let index = self.record(target, to.clone(), shown, buf, rendered);
        let copies = Arc::new(Copies {
            trace: self.trace.clone(),
            index,
            total: delays.len(),
            lost: AtomicUsize::new(0),
        });
        let mut now_copies = 0;
        let mut failed = None;
        for d in &delays {
            if d.is_zero() {
                copies.leaving(self.clock.link_cut(&self.host, &to));
                now_copies += 1;
            } else if let Some(sent) = self.inner.send_later(buf, target, *d) {
                // The network holds it: lost if the link is cut now, or
                // is cut while it is on its way.
                let cut = self.clock.link_cut(&self.host, &to);
                copies.leaving(cut);
                if !cut {
                    let copies = copies.clone();
                    self.clock.carrying(
                        &self.host,
                        &to,
                        *d,
                        Box::new(move || copies.leaving(true)),
                    );
                }
                if let Err(e) = sent {
                    failed.get_or_insert(e);
                }
            } else {
                let (inner, data, d) = (self.inner.clone(), buf.to_vec(), *d);
                let leaves = now() + d;
                let wakes = self.wakes.clone();
                if let Ok(mut w) = wakes.lock() {
                    w.held.push(leaves);
                    w.publish(&*inner);
                }
                let (copies, clock, host, to) = (
                    copies.clone(),
                    self.clock.clone(),
                    self.host.clone(),
                    to.clone(),
                );
                tokio::spawn(async move {
                    tokio::time::sleep_until(leaves.into()).await;
                    copies.leaving(clock.link_cut(&host, &to));
                    let _ = inner.send_to(&data, target).await;
                    if let Ok(mut w) = wakes.lock() {
                        if let Some(i) = w.held.iter().position(|&t| t == leaves) {
                            w.held.swap_remove(i);
                        }
                        w.publish(&*inner);
                    }
                });
            }
        }
        let inner = self.inner.clone();
        let data = buf.to_vec();
        async move {
            if let Some(e) = failed {
                return Err(e);
            }
            for _ in 0..now_copies {
                inner.send_to(&data, target).await?;
            }
            Ok(len)
        }
    }

    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        self.inner.recv_from(buf)
    }

    fn next_wake(&self, at: Option<Instant>) {
        if let Ok(mut w) = self.wakes.lock() {
            w.driver = at;
            w.publish(&*self.inner);
        }
    }
}
