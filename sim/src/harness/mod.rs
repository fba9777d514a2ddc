//! The invariant harness: one model of what a transfer machine
//! ([`ServerRead`], [`ServerWrite`], [`ClientGet`], [`ClientPut`]) may and
//! may not do, checked after every call into it, with two front-ends that
//! decide what to feed it:
//!
//! - [`fuzz`]: the bodies of the fuzz targets in `fuzz/`, decoding fuzz bytes
//!   (`server_session` and `client_session` drive this harness; the other
//!   targets check the codec, options, netascii, the store and the scenario
//!   loader). `sim/tests/fuzz_regressions.rs` replays the saved inputs.
//! - `props` (tests only): proptest strategies and the adversarial
//!   property tests, plus regressions for defects they found.
//!
//! A front-end builds the machine, describes it in a `Spec` and hands both
//! to `Harness::new`; then it calls `Harness::step` (or the helpers
//! built on it) and finally `Harness::run_to_close`. After every step the
//! harness drains `poll_transmit` (into a poisoned buffer of
//! [`MAX_DATAGRAM`] bytes) and `poll_event`, and checks:
//!
//! 1. no panic (debug build: arithmetic overflow panics too);
//! 2. every datagram parses, its kind is legal for the role, it goes to the
//!    right address (one TID; requests to the listening port, identical on
//!    resend and never after the server answered), and DATA, OACK and
//!    requests carry the right content: DATA the exact slice of the wire
//!    stream, the OACK only options asked for within the limits (timeout
//!    exactly) and never changed, a client's first datagram its request;
//! 3. amplification: one datagram from the peer makes a sender emit at most
//!    `windowsize` DATA plus one ERROR (never a handshake datagram), and a
//!    receiver at most one ACK (or the OACK standing for ACK 0) plus one
//!    ERROR; never DATA and a control datagram in one step; one datagram
//!    from a stranger gets at most one ERROR 5 (none within
//!    `STRANGER_INTERVAL` of the last) and nothing else, and changes
//!    nothing (timer, counters, bytes moved, open or closed); one timeout
//!    makes a sender emit at most `windowsize` DATA or one handshake
//!    datagram, plus one ERROR, and a receiver one ACK/OACK/request plus one
//!    ERROR; an abort emits at most one ERROR, with the abort's code; a
//!    clock advance emits nothing and moves no timer;
//! 4. termination, no busy loop: an open machine always has a deadline, a
//!    due timeout either closes the machine or resends and moves the
//!    deadline past `now`, an early one changes nothing, and with only
//!    timeouts the machine closes within `timeout_budget` of them;
//! 5. exactly one `Finished` over the machine's life, for a reason the step
//!    explains (a peer's ERROR, a timeout, an abort, the last ACK or DATA);
//!    `Negotiated` at most once, before `Finished` and before any data
//!    moves, within the RFC ranges, the client's request and the server's
//!    limits;
//! 6. the sink never receives more than `max_size` / `limits.max_upload`
//!    bytes, is used as its contract says (in-order writes, one commit or
//!    one abort, never both), a success commits exactly the in-order stream
//!    of DATA the peer sent (netascii decoded), a failure discards it, and
//!    a sender reads nothing below the point it released;
//! 7. once `is_closed()`, the machine emits nothing more whatever it is fed;
//! 8. the counters agree with what was sent and received.
//!
//! Plus the protocol rules (README, "The protocol core") visible from
//! outside: no resend and no timer restart on a duplicate ACK (Sorcerer's
//! Apprentice), a peer's ERROR ends the transfer with no reply, running out
//! of retries sends an ERROR, the ERROR that ends a transfer is sent once,
//! and after a successful receive only the final ACK is ever repeated.
//!
//! Not API: hidden from the docs, changes whenever the targets do.

pub mod fuzz;
#[cfg(test)]
mod props;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tftplab::data::{MemSource, Sink, Source};
use tftplab::netascii::decode_all;
use tftplab::options::{Limits, Negotiated, OptionRequest};
use tftplab::proto::*;
use tftplab::wire::{ErrorCode, Mode, Packet, RawOption, MAX_BLKSIZE, MAX_DATAGRAM, MIN_BLKSIZE};

// ---- addresses --------------------------------------------------------------

/// The client's host and port.
pub const CLIENT: SocketAddr = v4([10, 0, 0, 2], 40000);
/// The server's listening port.
pub const LISTEN: SocketAddr = v4([10, 0, 0, 1], 69);
/// The server's transfer port.
pub const SERVER_TID: SocketAddr = v4([10, 0, 0, 1], 50000);
/// Seen from a server: the client's host on another port, another host,
/// and the client's host on the listening port.
const SERVER_SIDE_STRANGERS: [SocketAddr; 3] = [
    v4([10, 0, 0, 2], 40001),
    v4([10, 0, 0, 9], 40000),
    v4([10, 0, 0, 2], 69),
];
/// Seen from a client: the server's host on another port (a second transfer
/// from a duplicated request: a stranger once the TID is known, the peer if
/// it answers first), another host (always a stranger), and the listening
/// port.
const CLIENT_SIDE_STRANGERS: [SocketAddr; 3] =
    [v4([10, 0, 0, 1], 50001), v4([10, 0, 0, 9], 50000), LISTEN];

const fn v4(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])), port)
}

/// How many timeouts a machine may take once input stops before it must
/// close: the retries at the ceiling (the timeout, or a negotiated one of
/// up to 255 s), the backoff steps of the adaptive timer below it, and two
/// deadlines that are no timeout (a sender's deferred gap ACK, a client's
/// commit after its final ACK).
pub(crate) fn timeout_budget(retries: u32, min_rto: Duration, timeout: Duration) -> u32 {
    2 + timeouts_before_giving_up(retries, min_rto, timeout)
}

// ---- content: sources and sinks that check their contracts ---------------

/// Period of the byte pattern the property tests' sources hold: a prime, so
/// it never lines up with a block size and a block read from the wrong
/// offset is caught.
const PERIOD: usize = 65_521;

/// The pattern, long enough that a run of up to 64 KiB starting anywhere in
/// the first period is one slice.
fn pattern_table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut x: u32 = 0x9E37_79B9;
        let period: Vec<u8> = (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        period
            .iter()
            .cycle()
            .take(PERIOD + 65_536)
            .copied()
            .collect()
    })
}

/// The pattern bytes at `offset..offset + len` (`len` at most 65536).
fn pattern_at(offset: u64, len: usize) -> &'static [u8] {
    let start = (offset % PERIOD as u64) as usize;
    &pattern_table()[start..start + len]
}

#[cfg_attr(not(test), allow(dead_code))]
fn pattern_vec(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let n = (len - v.len()).min(65_536);
        v.extend_from_slice(pattern_at(v.len() as u64, n));
    }
    v
}

/// What a sender must put on the wire, block after block.
#[derive(Debug, Clone)]
pub(crate) enum Wire {
    /// These bytes (a netascii transfer: the file's encoding).
    Bytes(Vec<u8>),
    /// The pattern, this long (too long to hold, perhaps).
    #[cfg_attr(not(test), allow(dead_code))]
    Pattern(u64),
    /// Not known (netascii of a file too long to encode up front).
    Unknown,
}

impl Wire {
    fn len(&self) -> Option<u64> {
        match self {
            Wire::Bytes(b) => Some(b.len() as u64),
            Wire::Pattern(n) => Some(*n),
            Wire::Unknown => None,
        }
    }

    /// The bytes at `offset..offset + len`, when known.
    fn at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        match self {
            Wire::Bytes(b) => {
                let start = usize::try_from(offset).ok()?;
                b.get(start..start.checked_add(len)?)
            }
            Wire::Pattern(_) if len <= 65_536 => Some(pattern_at(offset, len)),
            _ => None,
        }
    }
}

/// A sender's file: bytes in memory (the crate's [`MemSource`]), or the
/// pattern, held when small and computed on the fly when huge. Reads can be
/// made to fail from a given byte on. Panics when the machine reads below
/// the point it promised never to read below again.
pub(crate) struct TestSource {
    len: u64,
    mem: Option<MemSource<Vec<u8>>>,
    fail_from: Option<u64>,
    fail_kind: io::ErrorKind,
    released: u64,
}

impl TestSource {
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn pattern(len: u64, fail_from: Option<u64>, fail_kind: io::ErrorKind) -> Self {
        let mem = (len <= 1 << 20).then(|| MemSource::new(pattern_vec(len as usize)));
        TestSource {
            len,
            mem,
            fail_from,
            fail_kind,
            released: 0,
        }
    }

    pub(crate) fn bytes(bytes: Vec<u8>) -> Self {
        TestSource {
            len: bytes.len() as u64,
            mem: Some(MemSource::new(bytes)),
            fail_from: None,
            fail_kind: io::ErrorKind::Other,
            released: 0,
        }
    }
}

impl Source for TestSource {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        assert!(
            offset >= self.released,
            "read at {offset} below the release point {}",
            self.released
        );
        if let Some(from) = self.fail_from {
            if offset.saturating_add(buf.len() as u64) > from {
                return Err(io::Error::new(self.fail_kind, "injected read failure"));
            }
        }
        if let Some(mem) = &mut self.mem {
            return mem.read_at(offset, buf);
        }
        let n = self.len.saturating_sub(offset).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < n {
            let chunk = (n - done).min(65_536);
            buf[done..done + chunk].copy_from_slice(pattern_at(offset + done as u64, chunk));
            done += chunk;
        }
        Ok(n)
    }

    fn size(&self) -> Option<u64> {
        Some(self.len)
    }

    fn release_before(&mut self, offset: u64) {
        assert!(offset >= self.released, "release point moved back");
        self.released = offset;
    }
}

/// What a [`TestSink`] saw. The machine owns the sink; the harness keeps
/// the other handle.
#[derive(Debug, Default)]
pub(crate) struct SinkLog {
    /// What the sink holds (emptied by an abort).
    pub(crate) data: Vec<u8>,
    /// Bytes ever written: the most it ever held.
    pub(crate) len: u64,
    commit_attempts: u32,
    pub(crate) commits: u32,
    pub(crate) aborts: u32,
    misuse: Vec<String>,
    /// Some write carried bytes other than the pattern at its offset.
    foreign_bytes: bool,
    largest_write: usize,
    pub(crate) fail_write_from: Option<u64>,
    pub(crate) fail_commit: bool,
}

/// A memory sink that records every breach of the [`Sink`] contract
/// (writes strictly in order, nothing after commit or abort, each at most
/// once); the harness fails on any after the step.
#[derive(Clone)]
pub(crate) struct TestSink(pub(crate) Rc<RefCell<SinkLog>>);

impl TestSink {
    pub(crate) fn new(log: SinkLog) -> Self {
        TestSink(Rc::new(RefCell::new(log)))
    }
}

impl Sink for TestSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        if s.commit_attempts > 0 || s.aborts > 0 {
            s.misuse.push("write after commit or abort".into());
        }
        if offset != s.len {
            let msg = format!("write out of order: at {offset} after {} bytes", s.len);
            s.misuse.push(msg);
        }
        let end = s.len + data.len() as u64;
        if s.fail_write_from.is_some_and(|f| end > f) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected write failure",
            ));
        }
        if data.len() > 65_536 || data != pattern_at(offset, data.len()) {
            s.foreign_bytes = true;
        }
        s.len = end;
        s.data.extend_from_slice(data);
        s.largest_write = s.largest_write.max(data.len());
        Ok(())
    }

    fn commit(&mut self) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        s.commit_attempts += 1;
        if s.commit_attempts > 1 || s.aborts > 0 {
            s.misuse.push("commit twice or after abort".into());
        }
        if s.fail_commit {
            return Err(io::Error::other("injected commit failure"));
        }
        s.commits += 1;
        Ok(())
    }

    fn abort(&mut self) {
        let mut s = self.0.borrow_mut();
        s.aborts += 1;
        if s.aborts > 1 || s.commits > 0 {
            s.misuse
                .push("abort twice or after a successful commit".into());
        }
        s.data.clear();
    }
}

impl SinkLog {
    /// The contract was kept so far.
    pub(crate) fn misuse(&self) -> &[String] {
        &self.misuse
    }
}

// ---- the machine under test ---------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    ServerRead,
    ServerWrite,
    ClientGet,
    ClientPut,
}

impl Role {
    pub(crate) fn sends_data(self) -> bool {
        matches!(self, Role::ServerRead | Role::ClientPut)
    }
    pub(crate) fn is_client(self) -> bool {
        matches!(self, Role::ClientGet | Role::ClientPut)
    }
}

/// Which known defects a run tolerates (everything else is checked).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lenient {
    /// An ERROR 5 to a stranger after the machine said it was closed.
    pub(crate) stranger_after_close: bool,
    /// `Negotiated` after `Finished` (a client that gave up, then heard from
    /// the server).
    pub(crate) negotiated_after_finish: bool,
}

/// What the harness knows about the machine a front-end built.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) role: Role,
    /// The mode the machine runs in (octet or netascii).
    pub(crate) mode: Mode,
    /// Clients: the file they ask for.
    pub(crate) filename: String,
    /// Servers: the options of the request that started the transfer.
    pub(crate) req_opts: Vec<(Vec<u8>, Vec<u8>)>,
    /// Clients: what they ask for.
    pub(crate) client_opts: OptionRequest,
    /// Servers: their limits.
    pub(crate) limits: Limits,
    /// `limits.max_upload` (servers) or `max_size` (ClientGet).
    pub(crate) limit: Option<u64>,
    pub(crate) timeout: Duration,
    pub(crate) min_rto: Duration,
    pub(crate) retries: u32,
    /// Senders: what must go on the wire.
    pub(crate) wire: Wire,
    /// Receivers: the sink's commit fails (so a failed transfer may have
    /// tried it instead of aborting).
    pub(crate) fail_commit: bool,
    pub(crate) lenient: Lenient,
    /// The front-end's own description of the case, for failure messages.
    pub(crate) origin: String,
}

impl Spec {
    fn netascii(&self) -> bool {
        self.mode == Mode::Netascii
    }

    fn timeout_budget(&self) -> u32 {
        timeout_budget(self.retries, self.min_rto, self.timeout)
    }
}

/// Sign-extends a 16-bit block number around `reference` (rollover).
pub(crate) fn unwrap_block(reference: u64, block: u16) -> u64 {
    let d = i64::from(block.wrapping_sub(reference as u16) as i16);
    (reference as i64).saturating_add(d).max(0) as u64
}

// ---- the harness ----------------------------------------------------------

/// One call into the machine.
#[derive(Debug, Clone)]
pub(crate) enum Act {
    /// The drain right after construction.
    Start,
    Dgram(SocketAddr, Vec<u8>),
    Advance(Duration),
    Timeout,
    Abort(ErrorCode, String),
}

struct Before {
    deadline: Option<Instant>,
    counters: Counters,
    closed: bool,
    finished: bool,
    bytes: u64,
    window: usize,
}

/// What one step emitted, by kind.
#[derive(Debug, Default)]
struct Tally {
    data: usize,
    /// ACKs, and a ServerWrite's OACK (it stands for ACK 0).
    ack: usize,
    /// Requests, and a ServerRead's OACK.
    handshake: usize,
    /// This side's own ERRORs.
    error: usize,
    /// ERROR 5 to the stranger whose datagram this step delivered.
    error5: usize,
}

impl Tally {
    fn own(&self) -> usize {
        self.data + self.ack + self.handshake + self.error
    }
}

/// One transfer machine under test plus everything the harness knows about
/// what it may and may not do.
pub(crate) struct Harness {
    s: Spec,
    pub(crate) m: Box<dyn Transfer>,
    t0: Instant,
    pub(crate) now: Instant,
    buf: Vec<u8>,
    /// Receivers: the sink's log (senders: an unused one).
    sink: Rc<RefCell<SinkLog>>,
    /// Clients: the server's transfer ID, once the client has sent to it.
    pub(crate) tid: Option<SocketAddr>,
    sent_any: bool,
    emitted: u64,
    /// The client's request, or the server's OACK, as first emitted.
    pub(crate) handshake: Option<Vec<u8>>,
    /// The last datagram this machine emitted to its peer.
    pub(crate) last_out: Option<Vec<u8>>,
    /// The last datagrams it emitted (at most 8), oldest first.
    pub(crate) recent_out: VecDeque<Vec<u8>>,
    /// Senders: highest DATA block index emitted (0: none).
    pub(crate) data_hi: u64,
    /// Receivers: the block index the cooperative peer sends next.
    pub(crate) coop_next: u64,
    /// Receivers: the highest block index acknowledged so far.
    acked_hi: u64,
    pub(crate) negotiated: Option<Negotiated>,
    pub(crate) finished: Option<Result<Summary, TransferError>>,
    own_errors: u32,
    /// The first ERROR of its own, as sent: a receiver failed on a block
    /// repeats exactly that to the peer's resends.
    own_error: Option<Vec<u8>>,
    closed_seen: bool,
    /// When a stranger last got ERROR 5: at most one per interval.
    last_error5: Cell<Option<Instant>>,
    /// `acked_hi` before the current step's emissions.
    acked_before: u64,
    /// `data_hi` before the current step's emissions.
    data_hi_before: u64,
    /// The last datagram delivered.
    pub(crate) last_in: Option<(SocketAddr, Vec<u8>)>,
    /// A DATA whose payload is not the pattern at its offset was delivered,
    /// so the sink may legitimately hold other bytes.
    foreign_sent: bool,
    /// Senders: an ACK the sender has acted on; receiving it again must do
    /// nothing.
    dup_ack: Option<u16>,
    /// Receivers: the in-order stream of DATA the peer sent, which the sink
    /// must hold on success; the next block in it; whether a short block
    /// ended it.
    model: Vec<u8>,
    pub(crate) model_next: u64,
    model_done: bool,
    /// Receivers: the last ACK sent, and the one that closed a successful
    /// receive (the only thing resent after the end).
    last_ack: Option<u16>,
    final_ack: Option<u16>,
    trace: VecDeque<String>,
}

impl Harness {
    /// Takes over a machine just built (nothing polled yet) and checks what
    /// it emits first.
    pub(crate) fn new(
        s: Spec,
        m: Box<dyn Transfer>,
        sink: Option<Rc<RefCell<SinkLog>>>,
        t0: Instant,
    ) -> Harness {
        let mut h = Harness {
            s,
            m,
            t0,
            now: t0,
            buf: vec![0; MAX_DATAGRAM],
            sink: sink.unwrap_or_default(),
            tid: None,
            sent_any: false,
            emitted: 0,
            handshake: None,
            last_out: None,
            recent_out: VecDeque::new(),
            data_hi: 0,
            coop_next: 1,
            acked_hi: 0,
            negotiated: None,
            finished: None,
            own_errors: 0,
            own_error: None,
            closed_seen: false,
            last_error5: Cell::default(),
            acked_before: 0,
            data_hi_before: 0,
            last_in: None,
            foreign_sent: false,
            dup_ack: None,
            model: Vec::new(),
            model_next: 1,
            model_done: false,
            last_ack: None,
            final_ack: None,
            trace: VecDeque::new(),
        };
        h.step(Act::Start);
        h
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn spec(&self) -> &Spec {
        &self.s
    }

    /// The address the harness speaks from when it plays the peer.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn peer_addr(&self) -> SocketAddr {
        if self.role().is_client() {
            self.tid.unwrap_or(SERVER_TID)
        } else {
            CLIENT
        }
    }

    /// Addresses that are never the peer (see the constants).
    pub(crate) fn strangers(&self) -> [SocketAddr; 3] {
        if self.role().is_client() {
            CLIENT_SIDE_STRANGERS
        } else {
            SERVER_SIDE_STRANGERS
        }
    }

    pub(crate) fn role(&self) -> Role {
        self.s.role
    }

    #[track_caller]
    pub(crate) fn fail(&self, msg: impl AsRef<str>) -> ! {
        let trace: Vec<&str> = self.trace.iter().map(String::as_str).collect();
        panic!(
            "{}\ncase: {}\nlast steps (newest last):\n  {}",
            msg.as_ref(),
            self.s.origin,
            trace.join("\n  ")
        );
    }

    #[track_caller]
    pub(crate) fn ensure(&self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.fail(msg());
        }
    }

    pub(crate) fn blksize(&self) -> usize {
        self.negotiated.map_or(512, |n| usize::from(n.blksize))
    }

    pub(crate) fn window(&self) -> usize {
        self.negotiated
            .map_or(1, |n| usize::from(n.windowsize.max(1)))
    }

    /// Where a DATA block the harness sends starts in the file.
    pub(crate) fn offset_of(&self, block: u16) -> u64 {
        let idx = unwrap_block(self.coop_next, block).max(1);
        (idx - 1).saturating_mul(self.blksize() as u64)
    }

    /// Remembers when a DATA that is not the file's content goes out.
    fn note_data(&mut self, bytes: &[u8]) {
        if let Ok(Packet::Data { block, data }) = Packet::parse(bytes) {
            if data.len() > 65_536 || data != pattern_at(self.offset_of(block), data.len()) {
                self.foreign_sent = true;
            }
        }
    }

    /// Jumps to the deadline (if any) and handles the timeout there.
    pub(crate) fn fire(&mut self) {
        if let Some(d) = self.m.poll_timeout() {
            self.now = self.now.max(d);
        }
        self.step(Act::Timeout);
    }

    /// Only timeouts from here on: the machine must close within
    /// [`timeout_budget`] of them, having reported `Finished`
    /// exactly once.
    pub(crate) fn run_to_close(&mut self) {
        let budget = self.s.timeout_budget();
        let mut fired = 0;
        while !self.m.is_closed() {
            if fired == budget {
                self.fail(format!("still open after {budget} timeouts"));
            }
            self.fire();
            fired += 1;
        }
        self.ensure(self.finished.is_some(), || {
            "closed without reporting Finished".into()
        });
        if !self.role().sends_data() {
            let log = self.sink.borrow();
            let ok = matches!(self.finished, Some(Ok(_)));
            self.ensure(
                (log.commits == 1) == ok && log.commits + log.aborts <= 1,
                || format!("closed with {:?} and the sink {log:?}", self.finished),
            );
        }
    }

    pub(crate) fn step(&mut self, act: Act) {
        let before = Before {
            deadline: self.m.poll_timeout(),
            counters: self.m.counters(),
            closed: self.m.is_closed(),
            finished: self.finished.is_some(),
            bytes: self.m.bytes_transferred(),
            window: self.window(),
        };
        match &act {
            Act::Start => {}
            Act::Dgram(from, bytes) => {
                self.note_data(bytes);
                self.last_in = Some((*from, bytes.clone()));
                self.m.handle_datagram(self.now, *from, bytes);
            }
            Act::Advance(d) => self.now += *d,
            Act::Timeout => self.m.handle_timeout(self.now),
            Act::Abort(code, msg) => self.m.abort(*code, msg),
        }
        let mut out = Vec::new();
        loop {
            // Poison the buffer: bytes the machine did not write show up.
            self.buf.fill(0xA5);
            let Some(t) = self.m.poll_transmit(self.now, &mut self.buf) else {
                break;
            };
            if t.len == 0 || t.len > self.buf.len() {
                self.fail(format!("poll_transmit returned length {}", t.len));
            }
            out.push((t.dest, self.buf[..t.len].to_vec()));
            if out.len() > 70_000 {
                self.fail("poll_transmit never returns None");
            }
        }
        let mut events = Vec::new();
        while let Some(e) = self.m.poll_event() {
            events.push(e);
            if events.len() > 4 {
                self.fail(format!("poll_event never returns None: {events:?}"));
            }
        }
        self.record(&act, &out, &events);
        self.check(&act, &before, &out, events);
    }

    fn record(&mut self, act: &Act, out: &[(SocketAddr, Vec<u8>)], events: &[Event]) {
        let show = |b: &[u8]| match Packet::parse(b) {
            Ok(p) => p.to_string(),
            Err(e) => format!("<{e}: {:02x?}>", &b[..b.len().min(24)]),
        };
        let what = match act {
            Act::Start => "start".to_string(),
            Act::Dgram(from, b) => format!("from {from}: {}", show(b)),
            Act::Advance(d) => format!("advance {d:?}"),
            Act::Timeout => "handle_timeout".to_string(),
            Act::Abort(code, msg) => format!("abort({}, {} bytes)", code.0, msg.len()),
        };
        let sent: Vec<String> = out
            .iter()
            .take(4)
            .map(|(d, b)| format!("{} to {d}", show(b)))
            .collect();
        let more = if out.len() > 4 {
            format!(" +{} more", out.len() - 4)
        } else {
            String::new()
        };
        let line = format!(
            "t+{:?} {what} -> [{}{more}] events {events:?} deadline {:?} closed {}",
            self.now - self.t0,
            sent.join(", "),
            self.m.poll_timeout().map(|d| d - self.t0),
            self.m.is_closed()
        );
        self.trace.push_back(line);
        if self.trace.len() > 40 {
            self.trace.pop_front();
        }
    }

    /// Every invariant, after one step.
    fn check(&mut self, act: &Act, b: &Before, out: &[(SocketAddr, Vec<u8>)], events: Vec<Event>) {
        let c = self.m.counters();
        let from = match act {
            Act::Dgram(f, _) => Some(*f),
            _ => None,
        };
        let received = c.datagrams_received > b.counters.datagrams_received;
        let stranger = from.is_some() && c.unknown_tid > b.counters.unknown_tid;
        self.check_tid(from, received, stranger, b, &c);
        let finished_now = self.check_events(act, events);
        self.acked_before = self.acked_hi;
        self.data_hi_before = self.data_hi;
        let tally = self.check_emitted(act, b, out, from, stranger, finished_now.as_ref());
        self.check_amplification(act, b, &tally);
        if let (Act::Dgram(from, bytes), false) = (act, stranger) {
            let _ = from;
            self.check_peer_datagram(bytes, b, &tally);
        }
        self.ensure(c.datagrams_sent == self.emitted, || {
            format!(
                "datagrams_sent is {} but {} were emitted",
                c.datagrams_sent, self.emitted
            )
        });
        if from.is_some() && !b.closed {
            let counted = c.datagrams_received == b.counters.datagrams_received + 1;
            self.ensure(counted, || "datagrams_received did not count it".into());
        }
        let data_moved = tally.data > 0 || self.sink.borrow().len > 0;
        let _ = received;
        self.ensure(!data_moved || self.negotiated.is_some(), || {
            "data moved before Negotiated".into()
        });
        self.check_bounds(act, b, &tally, stranger, received, finished_now.as_ref());
        if let Some(r) = &finished_now {
            self.check_finished(act, r, &tally, received && !stranger);
        }
        self.check_sink();
        self.check_closed(&tally);
    }

    /// Who counts as a stranger, and that a stranger changes nothing.
    fn check_tid(
        &self,
        from: Option<SocketAddr>,
        received: bool,
        stranger: bool,
        b: &Before,
        c: &Counters,
    ) {
        let client = self.role().is_client();
        if let (Some(f), true) = (from, received) {
            let must_be_stranger = if client {
                f.ip() != LISTEN.ip() || self.tid.is_some_and(|t| t != f)
            } else {
                f != CLIENT
            };
            let must_be_peer = if client {
                self.tid == Some(f)
            } else {
                f == CLIENT
            };
            self.ensure(!must_be_stranger || stranger, || {
                format!("datagram from {f} not treated as an unknown TID")
            });
            self.ensure(!must_be_peer || !stranger, || {
                format!("datagram from the peer {f} treated as an unknown TID")
            });
        }
        if let Some(f) = from.filter(|_| !b.closed) {
            let surely = if client {
                f.ip() != SERVER_TID.ip()
            } else {
                f != CLIENT
            };
            self.ensure(!surely || stranger, || {
                format!("datagram from {f} taken as the peer's")
            });
        }
        if stranger {
            let same_state =
                self.m.is_closed() == b.closed && self.m.bytes_transferred() == b.bytes;
            self.ensure(same_state, || {
                "a stranger's datagram changed the transfer".into()
            });
            let mut same = *c;
            same.datagrams_received = b.counters.datagrams_received;
            same.unknown_tid = b.counters.unknown_tid;
            same.datagrams_sent = b.counters.datagrams_sent;
            self.ensure(same == b.counters, || {
                format!("a stranger changed counters: {:?} -> {c:?}", b.counters)
            });
        }
    }

    /// Invariant 5: one Finished, at most one Negotiated and before it.
    fn check_events(
        &mut self,
        act: &Act,
        events: Vec<Event>,
    ) -> Option<Result<Summary, TransferError>> {
        let mut finished_now = None;
        for e in events {
            match e {
                Event::Negotiated(n) => {
                    self.ensure(self.negotiated.is_none(), || "Negotiated twice".into());
                    let late = self.finished.is_some();
                    self.ensure(!late || self.s.lenient.negotiated_after_finish, || {
                        "Negotiated after Finished".into()
                    });
                    self.check_negotiated(&n);
                    self.negotiated = Some(n);
                }
                Event::Finished(r) => {
                    self.ensure(self.finished.is_none(), || {
                        format!("Finished twice: {:?} then {r:?}", self.finished)
                    });
                    // ERROR 5 is for strangers: the machine never ends a
                    // transfer with it unless told to.
                    let local5 = matches!(&r, Err(TransferError::Local { code, .. })
                        if *code == ErrorCode::UNKNOWN_TID);
                    let told =
                        matches!(act, Act::Abort(code, _) if *code == ErrorCode::UNKNOWN_TID);
                    self.ensure(!local5 || told, || "ended with ERROR 5".into());
                    // A client that commits at its deadline after its final
                    // ACK only ever repeats that ACK.
                    if r.is_ok() && matches!(act, Act::Timeout) {
                        self.final_ack = self.last_ack;
                    }
                    finished_now = Some(r.clone());
                    self.finished = Some(r);
                }
            }
        }
        finished_now
    }

    fn check_negotiated(&self, n: &Negotiated) {
        self.ensure((MIN_BLKSIZE..=MAX_BLKSIZE).contains(&n.blksize), || {
            format!("negotiated blksize {}", n.blksize)
        });
        self.ensure(n.windowsize >= 1, || "negotiated windowsize 0".into());
        self.ensure(n.timeout != Some(0), || "negotiated timeout 0".into());
        if self.role().is_client() {
            // Never more than asked; the timeout exactly as asked.
            let a = self.s.client_opts;
            let ok = (n.blksize == 512 || a.blksize.is_some_and(|b| n.blksize <= b))
                && (n.windowsize == 1 || a.windowsize.is_some_and(|w| n.windowsize <= w))
                && (n.timeout.is_none() || n.timeout == a.timeout);
            self.ensure(ok, || format!("negotiated {n:?} for asked {a:?}"));
        }
        if !self.role().is_client() {
            let l = self.s.limits;
            let cap = l.max_blksize.clamp(8, MAX_BLKSIZE);
            self.ensure(n.blksize == 512 || n.blksize <= cap, || {
                format!("blksize {} above the server's limit", n.blksize)
            });
            self.ensure(n.windowsize <= l.max_windowsize.max(1), || {
                format!("windowsize {} above the server's limit", n.windowsize)
            });
        }
    }

    /// Invariant 2: each datagram parses, is legal for the role, goes to the
    /// right place and carries the right content.
    fn check_emitted(
        &mut self,
        act: &Act,
        b: &Before,
        out: &[(SocketAddr, Vec<u8>)],
        from: Option<SocketAddr>,
        stranger: bool,
        finished_now: Option<&Result<Summary, TransferError>>,
    ) -> Tally {
        let role = self.role();
        let mut t = Tally::default();
        for (dest, bytes) in out {
            let p = match Packet::parse(bytes) {
                Ok(p) => p,
                Err(e) => self.fail(format!(
                    "emitted an unparsable datagram ({e}): {bytes:02x?}"
                )),
            };
            self.emitted += 1;
            if let Packet::Error { code, .. } = &p {
                if *code == ErrorCode::UNKNOWN_TID && stranger && Some(*dest) == from {
                    t.error5 += 1;
                    continue;
                }
            }
            self.check_dest(*dest, &p);
            if b.finished {
                // After Finished only a dallying receiver speaks: it
                // re-acknowledges a repeated last block, or, when a block
                // failed it, answers the peer's resend with the same ERROR.
                let dally_ack = !role.sends_data()
                    && matches!(self.finished, Some(Ok(_)))
                    && matches!(act, Act::Dgram(..))
                    && matches!(p, Packet::Ack { block } if Some(block) == self.final_ack);
                let echo = !role.sends_data()
                    && matches!(act, Act::Dgram(..))
                    && matches!(
                        (&self.finished, &p),
                        (
                            Some(Err(TransferError::Local { code, message })),
                            Packet::Error { code: c, message: m },
                        ) if c == code && *m == message.as_str()
                    );
                self.ensure(dally_ack || echo, || {
                    format!(
                        "emitted {p} after Finished (final ACK {:?})",
                        self.final_ack
                    )
                });
            }
            if !self.sent_any {
                self.check_first(&p);
                self.sent_any = true;
            }
            match (&p, role) {
                (Packet::Data { block, data }, Role::ServerRead | Role::ClientPut) => {
                    t.data += 1;
                    self.check_data(*block, data);
                }
                (Packet::Ack { block }, Role::ServerWrite | Role::ClientGet) => {
                    t.ack += 1;
                    self.last_ack = Some(*block);
                    if matches!(self.finished, Some(Ok(_))) {
                        let last = *self.final_ack.get_or_insert(*block);
                        self.ensure(*block == last, || {
                            format!("re-ACK #{block} after the end is not the last block")
                        });
                    }
                    let idx = unwrap_block(self.coop_next.saturating_sub(1), *block);
                    self.check_ack(*block, idx);
                    self.acked_hi = self.acked_hi.max(idx);
                    self.coop_next = idx + 1;
                }
                (Packet::Oack { options }, Role::ServerRead | Role::ServerWrite) => {
                    let after_data = self.data_hi > 0;
                    self.ensure(!after_data, || "OACK after DATA".into());
                    if role == Role::ServerWrite {
                        t.ack += 1;
                        self.coop_next = 1;
                    } else {
                        t.handshake += 1;
                    }
                    self.check_oack(bytes, options);
                }
                (Packet::Rrq(_), Role::ClientGet) | (Packet::Wrq(_), Role::ClientPut) => {
                    t.handshake += 1;
                    self.check_request(bytes, &p);
                }
                (Packet::Error { .. }, _)
                    if self.own_error.as_ref() == Some(bytes)
                        && !role.sends_data()
                        && matches!(act, Act::Dgram(..)) =>
                {
                    // The echo of a failure on a block, to the peer's resend.
                    t.error += 1;
                }
                (Packet::Error { code, message }, _) => {
                    t.error += 1;
                    self.own_errors += 1;
                    self.ensure(self.own_errors == 1, || {
                        "sent a second ERROR of its own".into()
                    });
                    self.own_error = Some(bytes.clone());
                    self.check_own_error(act, *code, message, finished_now);
                }
                _ => self.fail(format!("{role:?} must never emit {p}")),
            }
            self.last_out = Some(bytes.clone());
        }
        for (_, bytes) in out {
            if self.recent_out.len() == 8 {
                self.recent_out.pop_front();
            }
            self.recent_out.push_back(bytes.clone());
        }
        t
    }

    fn check_dest(&mut self, dest: SocketAddr, p: &Packet<'_>) {
        if !self.role().is_client() {
            self.ensure(dest == CLIENT, || {
                format!("{p} sent to {dest}, not the client")
            });
            return;
        }
        if matches!(p, Packet::Rrq(_) | Packet::Wrq(_)) {
            self.ensure(dest == LISTEN && self.tid.is_none(), || {
                format!("request sent to {dest} (TID {:?})", self.tid)
            });
            return;
        }
        match self.tid {
            None => {
                self.ensure(dest.ip() == LISTEN.ip(), || {
                    format!("{p} sent to {dest}, not the server")
                });
                self.tid = Some(dest);
            }
            Some(t) => self.ensure(dest == t, || format!("{p} sent to {dest}, TID is {t}")),
        }
    }

    /// An ACK #n (octet) means exactly n full blocks are in the sink, or,
    /// for the final ACK, n - 1 full blocks and a short one (a client
    /// reports the end only after that ACK, once its sink is committed).
    fn check_ack(&self, block: u16, idx: u64) {
        if self.s.netascii() {
            return;
        }
        let len = self.sink.borrow().len;
        let blk = self.blksize() as u64;
        let last = idx >= 1 && (idx - 1) * blk <= len && len < idx * blk;
        let ok = match self.finished {
            Some(Ok(_)) => last,
            _ => len == idx * blk || last,
        };
        self.ensure(ok, || {
            format!("ACK #{block} (index {idx}) with {len} bytes in the sink, blksize {blk}")
        });
    }

    fn check_first(&self, p: &Packet<'_>) {
        let ok = match self.role() {
            Role::ClientGet => matches!(p, Packet::Rrq(_)),
            Role::ClientPut => matches!(p, Packet::Wrq(_)),
            Role::ServerRead => match self.negotiated {
                Some(n) if n.has_oack() => matches!(p, Packet::Oack { .. }),
                _ => matches!(p, Packet::Data { block: 1, .. } | Packet::Error { .. }),
            },
            Role::ServerWrite => match self.negotiated {
                Some(n) if n.has_oack() => matches!(p, Packet::Oack { .. }),
                _ => matches!(p, Packet::Ack { block: 0 }),
            },
        };
        self.ensure(ok, || format!("first datagram is {p}"));
    }

    fn check_data(&mut self, block: u16, data: &[u8]) {
        let blksize = self.blksize();
        self.ensure(data.len() <= blksize, || {
            format!(
                "DATA #{block} carries {} bytes, blksize {blksize}",
                data.len()
            )
        });
        let idx = unwrap_block(self.data_hi, block);
        self.ensure(idx >= 1 && idx <= self.data_hi + 1, || {
            format!(
                "DATA #{block} (index {idx}) skips ahead of {}",
                self.data_hi
            )
        });
        if let Some(wire_len) = self.s.wire.len() {
            let offset = (idx - 1).saturating_mul(blksize as u64);
            let expected = wire_len.saturating_sub(offset).min(blksize as u64) as usize;
            self.ensure(offset <= wire_len && data.len() == expected, || {
                format!(
                    "DATA #{block} (index {idx}) has {} bytes, expected {expected}",
                    data.len()
                )
            });
            let right = self.s.wire.at(offset, data.len()).is_none_or(|w| w == data);
            self.ensure(right, || {
                format!("DATA #{block} (index {idx}) carries the wrong bytes")
            });
        }
        self.data_hi = self.data_hi.max(idx);
    }

    /// The OACK echoes only options asked for, within the limits; timeout
    /// exactly; and it never changes.
    fn check_oack(&mut self, bytes: &[u8], options: &[RawOption<'_>]) {
        match &self.handshake {
            Some(first) => self.ensure(first == bytes, || "the OACK changed".into()),
            None => self.handshake = Some(bytes.to_vec()),
        }
        self.ensure(!options.is_empty(), || "empty OACK".into());
        let limits = self.s.limits;
        let mut seen = Vec::new();
        for o in options {
            let name = String::from_utf8_lossy(o.name).to_ascii_lowercase();
            self.ensure(!seen.contains(&name), || format!("OACK repeats {name}"));
            seen.push(name.clone());
            let asked = self
                .s
                .req_opts
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                .map(|(_, v)| v.clone());
            let Some(asked) = asked else {
                self.fail(format!("OACK carries {name}, which was not asked"));
            };
            let asked = tftplab::options::parse_number(&asked);
            let v = tftplab::options::parse_number(o.value);
            let ok = match (name.as_str(), asked, v) {
                ("blksize", Some(a), Some(v)) => {
                    v >= 8 && v <= a && v <= u64::from(limits.max_blksize.clamp(8, MAX_BLKSIZE))
                }
                ("timeout", Some(a), Some(v)) => v == a && (1..=255).contains(&v),
                ("windowsize", Some(a), Some(v)) => {
                    v >= 1 && v <= a && v <= u64::from(limits.max_windowsize.max(1))
                }
                ("tsize", Some(a), Some(v)) => match self.role() {
                    Role::ServerRead => !self.s.netascii() && Some(v) == self.s.wire.len(),
                    _ => v == a && self.s.limit.is_none_or(|l| v <= l),
                },
                _ => false,
            };
            self.ensure(ok, || {
                let v = String::from_utf8_lossy(o.value);
                format!("OACK {name}={v} for asked {asked:?}")
            });
        }
    }

    fn check_request(&mut self, bytes: &[u8], p: &Packet<'_>) {
        match &self.handshake {
            Some(first) => self.ensure(first == bytes, || "the request changed".into()),
            None => self.handshake = Some(bytes.to_vec()),
        }
        if let Packet::Rrq(r) | Packet::Wrq(r) = p {
            self.ensure(
                r.filename == self.s.filename && r.mode == self.s.mode,
                || format!("request for {:?} in {}", r.filename, r.mode),
            );
        }
    }

    /// This side's own ERROR belongs to the outcome reported with it.
    fn check_own_error(
        &self,
        act: &Act,
        code: ErrorCode,
        message: &str,
        finished_now: Option<&Result<Summary, TransferError>>,
    ) {
        match finished_now {
            Some(Err(TransferError::Local {
                code: c,
                message: m,
            })) => {
                self.ensure(code == *c && m.starts_with(message), || {
                    format!(
                        "sent ERROR {} {message:?} for Local({}, {m:?})",
                        code.0, c.0
                    )
                });
            }
            Some(Err(e)) if e.is_timeout() => {
                self.ensure(matches!(act, Act::Timeout), || {
                    "TimedOut outside a timeout".into()
                });
            }
            other => self.fail(format!(
                "sent its own ERROR {} with outcome {other:?}",
                code.0
            )),
        }
    }

    /// Invariant 3 (amplification) and the per-event rules.
    fn check_bounds(
        &self,
        act: &Act,
        b: &Before,
        t: &Tally,
        stranger: bool,
        received: bool,
        finished_now: Option<&Result<Summary, TransferError>>,
    ) {
        let role = self.role();
        let own = t.own();
        let window = self.window();
        let deadline = self.m.poll_timeout();
        let since = |d: Option<Instant>| d.map(|d| d - self.t0);
        match act {
            Act::Start => {
                self.ensure(own == 1 && t.error5 == 0, || {
                    format!("start emitted {own} datagrams, expected exactly 1")
                });
            }
            Act::Dgram(_, bytes) if stranger => {
                // One ERROR 5 to the stranger, unless it sent an ERROR (never
                // answered) or another stranger was answered less than an
                // interval ago; nothing else changes.
                let quiet = self
                    .last_error5
                    .get()
                    .is_some_and(|t| self.now < t + STRANGER_INTERVAL);
                let owed = usize::from(!bytes.starts_with(&[0, 5]) && !quiet);
                self.ensure(own == 0 && t.error5 == owed, || {
                    format!(
                        "a stranger got {own} datagrams and {} ERROR 5 (owed {owed})",
                        t.error5
                    )
                });
                if t.error5 == 1 {
                    self.last_error5.set(Some(self.now));
                }
                self.ensure(finished_now.is_none(), || {
                    "a stranger ended the transfer".into()
                });
                self.ensure(deadline == b.deadline, || {
                    "a stranger moved the timer".into()
                });
                let closed_before = b.closed || self.closed_seen;
                self.ensure(
                    !closed_before || self.s.lenient.stranger_after_close,
                    || "a closed machine answered a stranger with ERROR 5".into(),
                );
            }
            Act::Dgram(..) if !received => {
                self.ensure(own + t.error5 == 0 && finished_now.is_none(), || {
                    "a datagram dropped unread had effects".into()
                });
            }
            Act::Dgram(_, dgram) => {
                let parsed = Packet::parse(dgram).ok();
                self.ensure(t.error5 == 0 && t.handshake == 0, || {
                    "the peer's datagram was answered with a handshake or ERROR 5".into()
                });
                if role.sends_data() {
                    self.ensure(t.data <= window && t.error <= 1 && t.ack == 0, || {
                        format!(
                            "amplification: {} DATA (window {window}) + {} ERROR",
                            t.data, t.error
                        )
                    });
                    // DATA only in answer to an ACK (or the server's OACK).
                    let may_move = matches!(parsed, Some(Packet::Ack { .. }))
                        || role == Role::ClientPut && matches!(parsed, Some(Packet::Oack { .. }));
                    self.ensure(t.data == 0 || may_move, || {
                        "DATA in answer to a non-ACK".into()
                    });
                    // An ACK that moves the window to past the highest block
                    // sent sends the next one at once. (A gap ACK, short of
                    // it, may not: within a retransmission timeout of the
                    // last rewind the blocks past it stay in flight.)
                    let c = self.m.counters();
                    let to_the_end = match parsed {
                        Some(Packet::Ack { block }) => {
                            unwrap_block(self.data_hi_before, block) >= self.data_hi_before
                        }
                        _ => false,
                    };
                    let progress = to_the_end
                        && !b.finished
                        && finished_now.is_none()
                        && c.ignored == b.counters.ignored
                        && c.duplicate_acks == b.counters.duplicate_acks;
                    self.ensure(!progress || t.data > 0, || {
                        "an ACK was accepted but nothing was sent".into()
                    });
                    // Sorcerer's Apprentice: a duplicate (or stale, or any
                    // ignored) ACK changes nothing: no resend, no timer move.
                    let dropped = c.duplicate_acks > b.counters.duplicate_acks
                        || c.ignored > b.counters.ignored;
                    if dropped {
                        self.ensure(own == 0 && finished_now.is_none(), || {
                            "a duplicate or ignored ACK triggered a resend".into()
                        });
                        self.ensure(deadline == b.deadline, || {
                            "a duplicate or ignored ACK moved the timer".into()
                        });
                    }
                    // A gap ACK that comes within a round trip of a rewind
                    // is deferred to the end of that round trip: the next
                    // deadline may come sooner (never in the past), but
                    // only for an accepted ACK short of the highest block.
                    let deferred = !dropped
                        && !to_the_end
                        && matches!(parsed, Some(Packet::Ack { .. }))
                        && matches!((deadline, b.deadline), (Some(d), Some(bd)) if d < bd && d >= self.now);
                    if own == 0 && finished_now.is_none() && !deferred {
                        self.ensure(deadline == b.deadline, || {
                            format!(
                                "timer moved without a transmission: {:?} -> {:?}",
                                since(b.deadline),
                                since(deadline)
                            )
                        });
                    }
                } else {
                    self.ensure(t.ack <= 1 && t.error <= 1 && t.data == 0, || {
                        format!("amplification: {} ACK + {} ERROR", t.ack, t.error)
                    });
                    // A duplicate of an acknowledged block is re-acknowledged
                    // (our ACK was lost); one received since the last ACK is
                    // dropped, so duplication alone never makes a resend.
                    let dup = self.m.counters().duplicate_data > b.counters.duplicate_data;
                    // Half the block space away, a 16-bit number is as far
                    // behind as ahead; receiver and oracle unwrap it from
                    // neighbouring references, so leave that band alone.
                    let ambiguous = |block: u16| {
                        let d = block.wrapping_sub(self.acked_before as u16) as i16;
                        d.unsigned_abs() >= 32_000
                    };
                    if let (true, Some(Packet::Data { block, .. })) = (dup, &parsed) {
                        let idx = unwrap_block(self.acked_before, *block);
                        let acked = idx >= 1 && idx <= self.acked_before;
                        self.ensure(ambiguous(*block) || t.ack == usize::from(acked), || {
                            format!(
                                "duplicate DATA #{block} (acked up to {}) got {} ACK",
                                self.acked_before, t.ack
                            )
                        });
                    }
                }
                // A peer's ERROR ends the transfer at once, without reply.
                if let Some(Packet::Error { code, message }) = &parsed {
                    if !b.finished {
                        self.ensure(own == 0, || "answered a peer's ERROR".into());
                        let expected = Err(TransferError::Peer {
                            code: *code,
                            message: message.to_string(),
                        });
                        self.ensure(finished_now == Some(&expected), || {
                            format!("peer ERROR gave {finished_now:?}, expected {expected:?}")
                        });
                    }
                }
            }
            Act::Advance(_) => {
                self.ensure(own + t.error5 == 0, || "emitted on a clock advance".into());
                self.ensure(deadline == b.deadline, || {
                    "a clock advance moved the timer".into()
                });
            }
            Act::Timeout => {
                let due = b.deadline.is_some_and(|d| self.now >= d);
                if !due {
                    let nothing = own == 0 && finished_now.is_none() && deadline == b.deadline;
                    self.ensure(nothing, || {
                        "handle_timeout before the deadline had effects".into()
                    });
                    return;
                }
                if role.sends_data() {
                    let ok = t.data <= window
                        && t.handshake <= 1
                        && t.data * t.handshake == 0
                        && t.error <= 1;
                    self.ensure(ok, || format!("a timeout sent {t:?} (window {window})"));
                } else {
                    let ok = t.ack + t.handshake <= 1 && t.error <= 1;
                    self.ensure(ok, || format!("a timeout sent {t:?}"));
                }
                // No busy loop: close, or resend (or, for a client's
                // commit after its final ACK, report the end) and move
                // past `now`.
                let closed = self.m.is_closed();
                let moved = deadline.is_some_and(|d| d > self.now);
                let acted = own > 0 || finished_now.is_some();
                self.ensure(closed || (acted && moved), || {
                    format!(
                        "a due timeout neither closed the machine nor resent and rearmed \
                         (sent {own}, deadline {:?})",
                        since(deadline)
                    )
                });
            }
            Act::Abort(code, _) => {
                self.ensure(own == t.error && t.error <= 1 && t.error5 == 0, || {
                    format!("abort emitted {t:?}")
                });
                if b.finished {
                    self.ensure(own == 0 && finished_now.is_none(), || {
                        "abort after Finished had effects".into()
                    });
                } else {
                    let ok = matches!(finished_now,
                        Some(Err(TransferError::Local { code: c, .. })) if c == code);
                    self.ensure(ok, || format!("abort gave {finished_now:?}"));
                    let peer_known = !role.is_client() || self.tid.is_some();
                    self.ensure(!peer_known || t.error == 1, || {
                        "abort did not tell the peer".into()
                    });
                }
            }
        }
    }

    /// How the transfer ended, against what happened in this step.
    fn check_finished(
        &self,
        act: &Act,
        r: &Result<Summary, TransferError>,
        t: &Tally,
        from_peer: bool,
    ) {
        let role = self.role();
        let parsed = match act {
            Act::Dgram(_, d) => Packet::parse(d).ok(),
            _ => None,
        };
        let peer_known = !role.is_client() || self.tid.is_some();
        self.ensure(!matches!(act, Act::Advance(_)), || {
            "Finished on a clock advance".into()
        });
        match r {
            Ok(summary) if role.sends_data() => {
                self.ensure(
                    from_peer && matches!(parsed, Some(Packet::Ack { .. })),
                    || "sender finished without an ACK".into(),
                );
                if let Some(len) = self.s.wire.len() {
                    // Ends on the ACK of the last block, having sent it all.
                    let blocks = len / self.blksize() as u64 + 1;
                    let ok = summary.bytes == len && summary.blocks == blocks;
                    self.ensure(ok, || format!("{summary:?} for {len} bytes"));
                    let last =
                        matches!(parsed, Some(Packet::Ack { block }) if block == blocks as u16);
                    self.ensure(last, || "finished without the last ACK".into());
                }
            }
            Ok(summary) => {
                // A server ends on the last DATA, acknowledging it; a client
                // acknowledges it first and ends at the next deadline, when
                // it commits (sending nothing then).
                let on_data = from_peer && matches!(parsed, Some(Packet::Data { .. }));
                let on_commit = role == Role::ClientGet && matches!(act, Act::Timeout);
                self.ensure(on_data || on_commit, || {
                    "receiver finished without DATA".into()
                });
                let acks = if on_commit { 0 } else { 1 };
                self.ensure(t.ack == acks, || {
                    "finished without acknowledging the last block".into()
                });
                let log = self.sink.borrow();
                self.ensure(log.commits == 1, || "finished without committing".into());
                let exact = self.s.netascii() || summary.bytes == log.len;
                self.ensure(summary.bytes >= log.len && exact, || {
                    format!("summary says {} bytes, sink has {}", summary.bytes, log.len)
                });
            }
            Err(e) => {
                if !role.sends_data() {
                    let log = self.sink.borrow();
                    let discarded =
                        log.aborts == 1 || (self.s.fail_commit && log.commit_attempts == 1);
                    self.ensure(log.commits == 0 && discarded, || {
                        format!("a failed transfer left the sink {log:?}")
                    });
                }
                match e {
                    TransferError::Peer { .. } => {
                        let ok = from_peer && matches!(parsed, Some(Packet::Error { .. }));
                        self.ensure(ok, || "Peer error without a peer ERROR".into());
                    }
                    TransferError::TimedOut { retries }
                    | TransferError::Unconfirmed { retries } => {
                        let ok = matches!(act, Act::Timeout) && *retries == self.s.retries;
                        self.ensure(ok, || format!("TimedOut {{ retries: {retries} }}"));
                        // When retries run out, send an ERROR before giving up.
                        self.ensure(!peer_known || t.error == 1, || {
                            "gave up without an ERROR".into()
                        });
                    }
                    TransferError::Local { .. } => {
                        self.ensure(!peer_known || t.error == 1, || {
                            "a local failure was not told to the peer".into()
                        });
                    }
                }
            }
        }
    }

    /// Invariant 6 and the sink's contract.
    fn check_sink(&self) {
        let log = self.sink.borrow();
        self.ensure(log.misuse.is_empty(), || {
            format!("sink misuse: {:?}", log.misuse)
        });
        let content_known = !self.s.netascii() && !self.foreign_sent;
        self.ensure(!content_known || !log.foreign_bytes, || {
            "the sink holds bytes that were not sent at that offset".into()
        });
        // (netascii may add a CR held back from the previous block)
        let most = self.blksize() + usize::from(self.s.netascii());
        self.ensure(log.largest_write <= most, || {
            format!(
                "wrote {} bytes at once, blksize {}",
                log.largest_write,
                self.blksize()
            )
        });
        if let Some(limit) = self.s.limit.filter(|_| !self.role().sends_data()) {
            self.ensure(log.len <= limit, || {
                format!("wrote {} bytes past the limit of {limit}", log.len)
            });
        }
    }

    /// Invariants 4 and 7: an open machine waits for something; a closed one
    /// stays closed and silent.
    fn check_closed(&mut self, t: &Tally) {
        let closed = self.m.is_closed();
        let deadline = self.m.poll_timeout();
        if closed {
            self.ensure(deadline.is_none(), || {
                "closed but still has a deadline".into()
            });
        } else {
            self.ensure(deadline.is_some(), || {
                "open but waiting for nothing: no deadline, it would never close".into()
            });
        }
        if self.closed_seen {
            self.ensure(closed, || "reopened after is_closed()".into());
            self.ensure(t.own() == 0, || "emitted after is_closed()".into());
            self.ensure(t.error5 == 0 || self.s.lenient.stranger_after_close, || {
                "emitted ERROR 5 after is_closed()".into()
            });
        }
        self.closed_seen |= closed;
    }

    /// What one step may emit, whatever caused it: at most a window of
    /// DATA (senders), one control datagram, one ERROR; never DATA and a
    /// control datagram together.
    fn check_amplification(&self, act: &Act, b: &Before, t: &Tally) {
        let window = b.window.max(self.window());
        let control = t.ack + t.handshake;
        let max_data = if self.role().sends_data() { window } else { 0 };
        let ok = t.data <= max_data && control <= 1 && t.error + t.error5 <= 1;
        self.ensure(ok, || {
            let cause = match act {
                Act::Start => "the start",
                Act::Dgram(..) => "a datagram",
                Act::Advance(_) => "a clock advance",
                Act::Timeout => "a timeout",
                Act::Abort(..) => "an abort",
            };
            format!(
                "{cause} caused {} DATA, {control} control, {} ERROR (window {window})",
                t.data,
                t.error + t.error5
            )
        });
        self.ensure(t.data == 0 || control == 0, || {
            "DATA and control in one step".into()
        });
    }

    /// The harness's own account of a datagram the peer sent: a sender
    /// must ignore an ACK it has already acted on; a receiver's stream is
    /// the in-order DATA it was sent.
    fn check_peer_datagram(&mut self, bytes: &[u8], b: &Before, t: &Tally) {
        if self.role().sends_data() {
            let parsed_ack = match Packet::parse(bytes) {
                Ok(Packet::Ack { block }) => Some(block),
                _ => None,
            };
            let Some(block) = parsed_ack else { return };
            if !b.finished && self.dup_ack == Some(block) {
                self.ensure(t.data == 0, || {
                    format!("DATA sent in answer to a duplicate ACK #{block}")
                });
                self.ensure(self.m.poll_timeout() == b.deadline, || {
                    "a duplicate ACK moved the retransmission timer".into()
                });
            }
            if self.m.bytes_transferred() > b.bytes || (block == 0 && t.data > 0) {
                self.dup_ack = Some(block);
            }
        } else if !b.finished {
            self.model_step(bytes);
        }
    }

    /// The receiver's model: an in-order DATA of at most blksize bytes is
    /// the next piece of the stream, and a short one ends it. A success
    /// commits exactly that stream.
    fn model_step(&mut self, datagram: &[u8]) {
        let Ok(Packet::Data { block, data }) = Packet::parse(datagram) else {
            return;
        };
        self.ensure(self.negotiated.is_some(), || {
            "DATA accepted before options were settled".into()
        });
        let blksize = self.blksize();
        if data.len() <= blksize && block == self.model_next as u16 {
            self.model.extend_from_slice(data);
            self.model_next += 1;
            self.model_done = data.len() < blksize;
        }
        match &self.finished {
            Some(Ok(summary)) => {
                self.ensure(self.model_done, || "finished before the last block".into());
                let log = self.sink.borrow();
                self.ensure(log.commits == 1 && log.aborts == 0, || {
                    "success without commit".into()
                });
                let expected = if self.s.netascii() {
                    decode_all(&self.model)
                } else {
                    self.model.clone()
                };
                self.ensure(log.data == expected, || {
                    "received data differs from what was sent".into()
                });
                let ok = summary.bytes == self.model.len() as u64
                    && summary.blocks == self.model_next - 1;
                self.ensure(ok, || {
                    format!(
                        "{summary:?} for {} bytes in {} blocks",
                        self.model.len(),
                        self.model_next - 1
                    )
                });
            }
            Some(Err(_)) => {}
            // A client commits once its final ACK is out: the end is due
            // at once, as a deadline.
            None => {
                let commit_due = self.role() == Role::ClientGet
                    && self.m.poll_timeout().is_some_and(|d| d <= self.now);
                self.ensure(!self.model_done || commit_due, || {
                    "last block not recognised".into()
                });
            }
        }
    }
}
