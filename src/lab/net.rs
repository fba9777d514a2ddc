//! A [`Network`] wrapper that applies a direction's fault plan to every
//! datagram sent through it and records each in the trace. The server's
//! host wraps its network with the server-to-client faults, each client's
//! host with the client-to-server faults, so every datagram passes exactly
//! one injector.

use super::faults::{decide_scripted, Cause, Fate, Injector, Script};
use super::trace::{render_packet, Trace, TraceFate};
use crate::runtime::{DatagramSocket, Network};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Names hosts in the trace and tells the time since the run started.
pub trait LabClock: Send + Sync + 'static {
    fn elapsed(&self) -> Duration;
    fn name(&self, ip: IpAddr) -> String;
}

/// Wraps `N` so every send goes through the injector.
#[derive(Clone)]
pub struct FaultyNet<N: Network> {
    inner: N,
    /// This host's name in the trace.
    host: Arc<str>,
    injector: Arc<Mutex<(Injector, Script)>>,
    trace: Trace,
    clock: Arc<dyn LabClock>,
}

impl<N: Network> FaultyNet<N> {
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

pub struct FaultySocket<S: DatagramSocket> {
    inner: Arc<S>,
    host: Arc<str>,
    local: SocketAddr,
    injector: Arc<Mutex<(Injector, Script)>>,
    trace: Trace,
    clock: Arc<dyn LabClock>,
}

impl<N: Network> Network for FaultyNet<N> {
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
            })
        }
    }
}

impl<S: DatagramSocket> FaultySocket<S> {
    /// The script's word first, then the random faults. The injector is
    /// consulted for every datagram either way, so adding a script rule
    /// does not shift the random fates of the others.
    fn decide(&self, rendered: &str) -> Fate {
        let Ok(mut guard) = self.injector.lock() else {
            return Fate::Deliver {
                delays: vec![Duration::ZERO],
                held_back: false,
            };
        };
        let (injector, script) = &mut *guard;
        decide_scripted(injector, script, rendered)
    }

    fn record(&self, target: SocketAddr, fate: TraceFate, len: usize, rendered: String) {
        let from = self.host.to_string();
        let to = self.clock.name(target.ip());
        let at = self.clock.elapsed();
        self.trace
            .record_rendered(at, from, to, fate, len, rendered);
    }
}

/// How a trace names a drop's cause.
pub fn cause_name(c: Cause) -> &'static str {
    match c {
        Cause::Loss => "loss",
        Cause::Burst => "burst loss",
        Cause::Corrupted => "corrupted, bad checksum",
        Cause::Truncated => "truncated, bad length",
        Cause::Scripted => "scripted",
    }
}

impl<S: DatagramSocket> DatagramSocket for FaultySocket<S> {
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
        let (delays, trace_fate) = match fate {
            Fate::Dropped(cause) => (
                Vec::new(),
                TraceFate::Dropped {
                    cause: cause_name(cause).into(),
                },
            ),
            Fate::Deliver { delays, held_back } => {
                let fate = if delays.len() > 1 {
                    TraceFate::Duplicated {
                        copies: delays.len(),
                    }
                } else if held_back {
                    TraceFate::Delayed {
                        by_us: delays[0].as_micros() as u64,
                    }
                } else {
                    TraceFate::Delivered
                };
                (delays, fate)
            }
        };
        self.record(target, trace_fate, buf.len(), rendered);
        let len = buf.len();
        let mut now_copies = 0;
        for d in &delays {
            if d.is_zero() {
                now_copies += 1;
            } else {
                let (inner, data, d) = (self.inner.clone(), buf.to_vec(), *d);
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = inner.send_to(&data, target).await;
                });
            }
        }
        let inner = self.inner.clone();
        let data = buf.to_vec();
        async move {
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
}
