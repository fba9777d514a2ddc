//! An in-memory network for running the protocol machines without sockets:
//! one client machine and the server machine it talks to, joined by a seeded
//! network that loses, duplicates and delays datagrams, under a fake clock.
//!
//! It only moves bytes and time; every protocol decision is the machines'
//! own. The protocol tests, the benchmarks and the demo use it; the full
//! simulator (`tftplab-sim`) runs the real server and client over turmoil.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

/// What the network does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    Duplicate,
}

/// Random faults, applied independently to every datagram.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    /// Fraction of datagrams held back by up to `reorder_delay` extra.
    pub reorder: f64,
    pub reorder_delay: Duration,
    pub latency: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
            latency: Duration::from_millis(1),
        }
    }
}

pub type Script = Box<dyn FnMut(Dir, &Packet<'_>) -> Fate>;

pub struct Setup {
    pub direction: Direction,
    pub data: Vec<u8>,
    pub client: ClientConfig,
    pub server: ServerConfig,
    pub faults: Faults,
    pub seed: u64,
    /// Decides the fate of specific datagrams before the random faults.
    pub script: Option<Script>,
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
            faults: Faults::default(),
            seed: 0,
            script: None,
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

struct Net {
    rng: ChaCha8Rng,
    faults: Faults,
    script: Option<Script>,
    /// Keyed by (delivery time, sequence): delivery order is deterministic.
    queue: BTreeMap<(Instant, u64), InFlight>,
    seq: u64,
    /// Datagrams handed to the network (before faults).
    sent: u64,
    t0: Instant,
    trace: Vec<String>,
}

impl Net {
    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.sent += 1;
        let dir = if to == addr(CLIENT) {
            Dir::ToClient
        } else {
            Dir::ToServer
        };
        let packet = Packet::parse(bytes);
        let mut fate = match (&mut self.script, &packet) {
            (Some(script), Ok(p)) => script(dir, p),
            _ => Fate::Deliver,
        };
        if fate == Fate::Deliver && self.rng.random_bool(self.faults.loss) {
            fate = Fate::Drop;
        }
        if fate == Fate::Deliver && self.rng.random_bool(self.faults.duplicate) {
            fate = Fate::Duplicate;
        }
        let copies = match fate {
            Fate::Drop => 0,
            Fate::Deliver => 1,
            Fate::Duplicate => 2,
        };
        let mut delayed = false;
        for _ in 0..copies {
            let mut at = now + self.faults.latency;
            if self.rng.random_bool(self.faults.reorder) {
                delayed = true;
                let extra = self.faults.reorder_delay.as_micros() as u64;
                at += Duration::from_micros(self.rng.random_range(0..=extra));
            }
            self.seq += 1;
            let bytes = bytes.to_vec();
            self.queue
                .insert((at, self.seq), InFlight { from, to, bytes });
        }
        let shown = match &packet {
            Ok(p) => p.to_string(),
            Err(e) => format!("<malformed: {e}>"),
        };
        let arrow = if dir == Dir::ToServer { "C->S" } else { "S->C" };
        let fate = match (fate, delayed) {
            (Fate::Drop, _) => " [dropped]",
            (Fate::Duplicate, _) => " [duplicated]",
            (Fate::Deliver, true) => " [delayed]",
            (Fate::Deliver, false) => "",
        };
        let ms = now.duration_since(self.t0).as_secs_f64() * 1000.0;
        self.trace
            .push(format!("{ms:>9.3}ms {arrow} {shown}{fate}"));
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
pub fn run(mut setup: Setup) -> Report {
    let t0 = Instant::now();
    let sink = SharedSink::new();
    let mut net = Net {
        rng: ChaCha8Rng::seed_from_u64(setup.seed),
        faults: setup.faults,
        script: setup.script.take(),
        queue: BTreeMap::new(),
        seq: 0,
        sent: 0,
        t0,
        trace: Vec::new(),
    };
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
