//! An in-memory network for running the protocol machines without sockets:
//! one client machine and the server machine it talks to, joined by a seeded
//! network that loses, duplicates and delays datagrams, under a fake clock.
//!
//! It only moves bytes and time; every protocol decision is the machines'
//! own. What happens to each datagram is the lab's fault model
//! ([`crate::lab::faults`]): a [`FaultPlan`] with random faults per
//! direction and script rules ("drop the first OACK"), decided as the
//! simulator decides them ([`decide_scripted`]). The protocol tests, the benchmarks and the demo use it; the full
//! simulator (`tftplab-sim`) runs the real server and client over turmoil.

use crate::lab::faults::{
    self, decide_scripted, link_seed, DelayRange, Fate, FaultPlan, Injector, LinkFaults, Script,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tftplab::data::{MemSource, SharedSink};
use tftplab::options::Direction;
use tftplab::proto::{
    Admission, ClientConfig, ClientGet, ClientPut, Counters, Event, Listener, ListenerConfig,
    Refusal, ServerConfig, ServerRead, ServerWrite, Summary, Transfer, TransferError,
};
use tftplab::wire::Packet;

pub const CLIENT: &str = "10.0.0.2:40000";
pub const LISTEN: &str = "10.0.0.1:69";
pub const SERVER_TID: &str = "10.0.0.1:50000";

/// Parses one of the fixed addresses above.
pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal socket address")
}

/// One-way latency of memnet's clean link.
pub const LATENCY: Duration = Duration::from_millis(1);

/// A clean link with memnet's fixed [`LATENCY`]: the base to add faults to,
/// e.g. `LinkFaults { loss: 0.05, ..memnet::link() }`.
pub fn link() -> LinkFaults {
    LinkFaults {
        latency: Some(DelayRange::fixed(LATENCY)),
        ..LinkFaults::default()
    }
}

pub struct Setup {
    pub direction: Direction,
    pub data: Vec<u8>,
    pub client: ClientConfig,
    pub server: ServerConfig,
    /// The lab's fault model: random faults per direction (each with its
    /// own generator, seeded from `seed`) and script rules for specific
    /// datagrams. The default is a clean link with [`LATENCY`] each way.
    pub faults: FaultPlan,
    pub seed: u64,
    /// The client gives up on the run after this much simulated time.
    pub time_limit: Duration,
    /// The run stops (unfinished) once this many datagrams were sent, so a
    /// retransmission storm ends in a failed check instead of a hang.
    pub max_datagrams: u64,
}

impl Setup {
    pub fn get(data: Vec<u8>) -> Self {
        Setup {
            direction: Direction::Read,
            data,
            client: ClientConfig::default(),
            server: ServerConfig::default(),
            faults: FaultPlan::symmetric(link()),
            seed: 0,
            time_limit: Duration::from_secs(3600),
            max_datagrams: 2_000_000,
        }
    }

    pub fn put(data: Vec<u8>) -> Self {
        Setup {
            direction: Direction::Write,
            ..Setup::get(data)
        }
    }
}

#[derive(Debug)]
pub struct Report {
    pub client: Option<Result<Summary, TransferError>>,
    pub server: Option<Result<Summary, TransferError>>,
    /// What the receiving side's sink holds, and whether it was committed.
    pub received: Vec<u8>,
    pub committed: bool,
    pub aborted: bool,
    pub client_counters: Counters,
    pub server_counters: Counters,
    /// One line per datagram put on the network, with its fate.
    pub trace: Vec<String>,
    /// Server machines started (a duplicated request must start one).
    pub transfers_started: usize,
    /// Refusals the listener sent.
    pub refusals: Vec<Refusal>,
    /// Simulated time from the first request to the end of the run.
    pub elapsed: Duration,
    pub all_closed: bool,
}

impl Report {
    /// Counters of whichever side sent the DATA.
    pub fn sender_counters(&self, direction: Direction) -> Counters {
        match direction {
            Direction::Read => self.server_counters,
            Direction::Write => self.client_counters,
        }
    }
}

struct InFlight {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// One direction of the network: its random faults and its script rules.
struct Link {
    injector: Injector,
    script: Script,
}

struct Net {
    to_server: Link,
    to_client: Link,
    /// Keyed by (delivery time, sequence): delivery order is deterministic.
    queue: BTreeMap<(Instant, u64), InFlight>,
    seq: u64,
    /// Datagrams handed to the network (before faults).
    sent: u64,
    t0: Instant,
    trace: Vec<String>,
}

impl Net {
    fn new(plan: &FaultPlan, seed: u64, t0: Instant) -> Self {
        let link = |direction: faults::Direction| Link {
            injector: Injector::new(plan.link(direction), link_seed(seed, direction)),
            script: Script::new(plan, direction),
        };
        Net {
            to_server: link(faults::Direction::ClientToServer),
            to_client: link(faults::Direction::ServerToClient),
            queue: BTreeMap::new(),
            seq: 0,
            sent: 0,
            t0,
            trace: Vec::new(),
        }
    }

    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.sent += 1;
        let to_client = to == addr(CLIENT);
        let shown = match Packet::parse(bytes) {
            Ok(p) => p.to_string(),
            Err(e) => format!("<malformed: {e}>"),
        };
        let link = if to_client {
            &mut self.to_client
        } else {
            &mut self.to_server
        };
        let fate = decide_scripted(
            &mut link.injector,
            &mut link.script,
            &shown,
            now.duration_since(self.t0),
        );
        let suffix = match &fate {
            Fate::Dropped(_) => " [dropped]",
            Fate::Deliver { delays, .. } if delays.len() > 1 => " [duplicated]",
            Fate::Deliver {
                held_back: true, ..
            } => " [delayed]",
            Fate::Deliver { .. } => "",
        };
        if let Fate::Deliver { delays, .. } = fate {
            for delay in delays {
                self.seq += 1;
                let bytes = bytes.to_vec();
                self.queue
                    .insert((now + delay, self.seq), InFlight { from, to, bytes });
            }
        }
        let arrow = if to_client { "S->C" } else { "C->S" };
        let ms = now.duration_since(self.t0).as_secs_f64() * 1000.0;
        self.trace
            .push(format!("{ms:>9.3}ms {arrow} {shown}{suffix}"));
    }
}

fn drain(
    machine: &mut dyn Transfer,
    from: SocketAddr,
    now: Instant,
    net: &mut Net,
    outcome: &mut Option<Result<Summary, TransferError>>,
) {
    let mut buf = vec![0u8; tftplab::wire::MAX_DATAGRAM];
    while let Some(t) = machine.poll_transmit(now, &mut buf) {
        net.send(now, from, t.dest, &buf[..t.len]);
    }
    while let Some(event) = machine.poll_event() {
        if let Event::Finished(result) = event {
            assert!(outcome.is_none(), "Finished reported twice");
            *outcome = Some(result);
        }
    }
}

/// Runs one transfer to completion (or the time limit) and reports.
pub fn run(setup: Setup) -> Report {
    let t0 = Instant::now();
    let sink = SharedSink::new();
    let mut net = Net::new(&setup.faults, setup.seed, t0);
    let data = setup.data.clone();
    let mut client: Box<dyn Transfer> = match setup.direction {
        Direction::Read => Box::new(
            ClientGet::new(t0, addr(LISTEN), "file.bin", sink.clone(), &setup.client)
                .expect("a valid request"),
        ),
        Direction::Write => Box::new(
            ClientPut::new(
                t0,
                addr(LISTEN),
                "file.bin",
                MemSource::new(data),
                &setup.client,
            )
            .expect("a valid request"),
        ),
    };
    let mut server: Option<Box<dyn Transfer>> = None;
    // One client, one transfer: the slot of a started transfer is never
    // given back, so every later copy of its request is a duplicate.
    let mut listener = Listener::new(ListenerConfig {
        max_transfers: 1,
        remember_done: setup.server.timeout,
    });
    let (mut client_out, mut server_out) = (None, None);
    let mut transfers_started = 0;
    let mut refusals = Vec::new();
    let mut now = t0;
    loop {
        drain(&mut *client, addr(CLIENT), now, &mut net, &mut client_out);
        if let Some(s) = server.as_mut() {
            drain(&mut **s, addr(SERVER_TID), now, &mut net, &mut server_out);
        }
        let server_closed = server.as_ref().is_none_or(|s| s.is_closed());
        if client.is_closed() && server_closed && net.queue.is_empty() {
            break;
        }
        let next = [
            net.queue.keys().next().map(|k| k.0),
            client.poll_timeout(),
            server.as_ref().and_then(|s| s.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        if next.duration_since(t0) > setup.time_limit || net.sent >= setup.max_datagrams {
            break;
        }
        now = next.max(now);
        while let Some(entry) = net.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let p = entry.remove();
            if p.to == addr(CLIENT) {
                client.handle_datagram(now, p.from, &p.bytes);
            } else if p.to == addr(SERVER_TID) {
                if let Some(s) = server.as_mut() {
                    s.handle_datagram(now, p.from, &p.bytes);
                }
            } else if p.to == addr(LISTEN) {
                listen(
                    &setup,
                    &mut listener,
                    now,
                    &p,
                    &sink,
                    &mut server,
                    &mut transfers_started,
                    &mut refusals,
                    &mut net,
                );
            }
        }
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        if let Some(s) = server.as_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
    }
    let received = sink.snapshot();
    Report {
        client: client_out,
        server: server_out,
        received: received.data.clone(),
        committed: received.committed,
        aborted: received.aborted,
        client_counters: client.counters(),
        server_counters: server.as_ref().map(|s| s.counters()).unwrap_or_default(),
        trace: net.trace,
        transfers_started,
        refusals,
        elapsed: now.duration_since(t0),
        all_closed: client.is_closed() && server.as_ref().is_none_or(|s| s.is_closed()),
    }
}

/// Drives the sans-IO listener for a datagram to the listening port, and
/// builds the server machine when it says so.
#[allow(clippy::too_many_arguments)]
fn listen(
    setup: &Setup,
    listener: &mut Listener,
    now: Instant,
    p: &InFlight,
    sink: &SharedSink,
    server: &mut Option<Box<dyn Transfer>>,
    started: &mut usize,
    refusals: &mut Vec<Refusal>,
    net: &mut Net,
) {
    let mut refuse = |from: SocketAddr, refusal: Refusal, net: &mut Net| {
        let mut buf = [0u8; 600];
        let len = refusal.emit(&mut buf).expect("emit_error fits any message");
        net.send(now, from, p.from, &buf[..len]);
        refusals.push(refusal);
    };
    let (direction, request) = match listener.handle_datagram(now, p.from, &p.bytes) {
        Admission::Start { direction, request } => (direction, request),
        Admission::Ignore(_) => return,
        Admission::Refuse(refusal, _) => return refuse(p.to, refusal, net),
    };
    let made: Result<Box<dyn Transfer>, Refusal> = match direction {
        Direction::Read => ServerRead::new(
            now,
            p.from,
            &request,
            MemSource::new(setup.data.clone()),
            &setup.server,
        )
        .map(|m| Box::new(m) as Box<dyn Transfer>),
        Direction::Write => ServerWrite::new(now, p.from, &request, sink.clone(), &setup.server)
            .map(|m| Box::new(m) as Box<dyn Transfer>),
    };
    match made {
        Ok(m) => {
            *started += 1;
            *server = Some(m);
        }
        Err(refusal) => {
            listener.transfer_ended(now, p.from, None);
            refuse(addr(SERVER_TID), refusal, net);
        }
    }
}
