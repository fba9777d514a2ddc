//! Types shared by the four machines: the driver-facing trait, outcomes,
//! counters, and the peer link that enforces transfer IDs.

use crate::options::Negotiated;
use crate::wire::{emit_error, ErrorCode, Opcode, DATA_HEADER_LEN, DEFAULT_BLKSIZE, MAX_DATAGRAM};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A datagram written by [`Transfer::poll_transmit`]: send `buf[..len]` to
/// `dest` from the transfer's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub len: usize,
}

/// What a machine reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The options are settled (after an OACK, or on the first DATA/ACK when
    /// the peer ignored them). Reported once, before any data moves.
    Negotiated(Negotiated),
    /// The transfer ended. Reported once. A receiver that succeeded may stay
    /// open a little longer to re-acknowledge a repeated last block.
    Finished(Result<Summary, TransferError>),
}

/// A successful transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub blocks: u64,
    /// DATA blocks sent again (sender) or ACKs sent again (receiver).
    pub retransmissions: u64,
    pub duration: Duration,
    pub negotiated: Negotiated,
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The peer sent an ERROR packet; nothing was sent back.
    #[error("peer sent ERROR {code}: {message}")]
    Peer { code: ErrorCode, message: String },
    /// Retries ran out; an ERROR was sent to the peer.
    #[error("timed out after {retries} retries")]
    TimedOut { retries: u32 },
    /// A sender's retries ran out after it had sent every block, the last
    /// one included: only the final ACK never came. The receiver may well
    /// have the whole file (the final ACK is itself never acknowledged, and
    /// U-Boot sends it once), so this is not a transfer that died midway.
    /// An ERROR was sent to the peer, as for [`TransferError::TimedOut`].
    #[error("sent every block, but the final ACK never came after {retries} retries (the peer may have the whole file)")]
    Unconfirmed { retries: u32 },
    /// This side ended the transfer (I/O error, size limit, rejected OACK,
    /// explicit abort) and sent the peer ERROR `code`.
    #[error("aborted with ERROR {code}: {message}")]
    Local { code: ErrorCode, message: String },
}

impl TransferError {
    /// True when retries ran out, midway or waiting for the final ACK.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            TransferError::TimedOut { .. } | TransferError::Unconfirmed { .. }
        )
    }

    /// The TFTP error code involved, if any side sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            TransferError::Peer { code, .. } | TransferError::Local { code, .. } => Some(*code),
            TransferError::TimedOut { .. } | TransferError::Unconfirmed { .. } => None,
        }
    }
}

/// A failure on this side that ends the transfer: the ERROR the peer is
/// sent, and what [`TransferError::Local`] reports. (Not to be confused
/// with the CLI's `Failure`, which is about the whole program.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalError {
    pub code: ErrorCode,
    pub message: String,
}

impl LocalError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        LocalError {
            code,
            message: message.into(),
        }
    }

    /// The ERROR for an I/O failure. The message goes on the wire, so it
    /// names the failure's kind only: OS error text can carry host details.
    pub fn io(what: &str, e: &std::io::Error) -> Self {
        let code = ErrorCode::for_io_error(e);
        let kind = match code {
            ErrorCode::DISK_FULL => "disk full or allocation exceeded",
            ErrorCode::FILE_EXISTS => "file already exists",
            ErrorCode::ACCESS_VIOLATION => "access violation",
            ErrorCode::FILE_NOT_FOUND => "file not found",
            _ => "I/O error",
        };
        LocalError::new(code, format!("{what}: {kind}"))
    }
}

impl From<LocalError> for TransferError {
    fn from(LocalError { code, message }: LocalError) -> Self {
        TransferError::Local { code, message }
    }
}

/// Everything a machine counts. Cheap to copy; drivers and the simulator
/// read it for traces and packet-count bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    /// DATA packets sent, first transmissions and retransmissions alike.
    pub data_sent: u64,
    /// DATA packets sent for a block that had been sent before.
    pub data_retransmitted: u64,
    pub acks_sent: u64,
    /// ACKs sent again after a timeout or for a duplicate DATA.
    pub acks_retransmitted: u64,
    /// Requests or OACKs sent again after a timeout.
    pub control_retransmitted: u64,
    /// ACKs that acknowledged nothing new (ignored by design).
    pub duplicate_acks: u64,
    /// DATA blocks received that had already been received.
    pub duplicate_data: u64,
    /// Datagrams from a source other than the peer (answered with ERROR 5).
    pub unknown_tid: u64,
    /// Datagrams that did not parse, or did not fit the transfer's state.
    pub ignored: u64,
    pub timeouts: u64,
}

/// The driver-facing API shared by every machine. See the module docs for
/// the calling order.
pub trait Transfer {
    /// Feeds one datagram received on this transfer's socket from `from`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);

    /// Writes the next datagram to send into `buf` (at least
    /// [`crate::wire::MAX_DATAGRAM`] bytes, or 4 + the negotiated blksize).
    /// Call until `None` after every `handle_*` call.
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit>;

    /// When [`Transfer::handle_timeout`] must next be called; `None` when the
    /// machine waits for nothing (it is closed, or has datagrams to send).
    fn poll_timeout(&self) -> Option<Instant>;

    /// Tells the machine that `now` is at or past its deadline.
    fn handle_timeout(&mut self, now: Instant);

    /// Takes the next application event.
    fn poll_event(&mut self) -> Option<Event>;

    /// True once nothing more will be sent or accepted: drop the machine.
    fn is_closed(&self) -> bool;

    /// Snapshot of the counters.
    fn counters(&self) -> Counters;

    /// Data bytes moved so far: acknowledged by the peer (sender) or
    /// received in order (receiver). For progress displays.
    fn bytes_transferred(&self) -> u64;

    /// The largest datagram the machine may send or accept with its options
    /// as they stand (4 + the negotiated blksize, and never under 516 so an
    /// ERROR with its message fits). Drivers size their buffers from it and
    /// ask again as the transfer goes: a client's shrinks once the server
    /// answers. By default the largest TFTP datagram.
    fn max_datagram(&self) -> usize {
        MAX_DATAGRAM
    }

    /// Ends the transfer from this side: the peer gets ERROR `code` with
    /// `message` (if its address is known) and [`Event::Finished`] reports
    /// [`TransferError::Local`]. Does nothing once the transfer has ended.
    /// Used by clients that probe and abort (UEFI's tsize probe answers the
    /// OACK with ERROR 8) and by a server that is shutting down.
    fn abort(&mut self, code: ErrorCode, message: &str);
}

impl<T: Transfer + ?Sized> Transfer for Box<T> {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        (**self).handle_datagram(now, from, datagram)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        (**self).poll_transmit(now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now)
    }
    fn poll_event(&mut self) -> Option<Event> {
        (**self).poll_event()
    }
    fn is_closed(&self) -> bool {
        (**self).is_closed()
    }
    fn counters(&self) -> Counters {
        (**self).counters()
    }
    fn bytes_transferred(&self) -> u64 {
        (**self).bytes_transferred()
    }
    fn max_datagram(&self) -> usize {
        (**self).max_datagram()
    }
    fn abort(&mut self, code: ErrorCode, message: &str) {
        (**self).abort(code, message)
    }
}

/// The retransmission timer: an adaptive timeout (RFC 6298's estimator,
/// Karn's rule for samples) between a floor and a ceiling, with a retry
/// budget. The deadline is armed when a datagram is sent and only then:
/// receiving a duplicate never moves it.
///
/// - The **ceiling** is what the peer was told: the negotiated `timeout`
///   option, or the configured timeout. The timer never waits longer.
/// - The **floor** (`min_rto`) keeps a brief stall of the peer from causing
///   a resend: duplicate DATA is not free (the rpi4's start4.elf hangs now
///   and then on one). A floor at or above the ceiling makes the timer fixed,
///   which is how firmware that the lab emulates behaves.
/// - Before the first round-trip sample the timeout is the ceiling, capped
///   at [`Timer::INITIAL`] (RFC 6298 2.1).
/// - Each timeout doubles the timeout up to the ceiling (exponential
///   backoff); the doubling ends when a fresh sample arrives.
/// - The retry budget counts only timeouts that waited the full ceiling, so
///   a transfer gives up after as long a silence as a fixed timer allowed:
///   the faster early resends come on top, at most [`Timer::backoff_steps`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    ceiling: Duration,
    floor: Duration,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Consecutive timeouts since the last fresh sample.
    backoff: u32,
    /// How many estimated timeouts the timer waits (1, or 2 for a
    /// receiver: see [`Timer::patient`]).
    patience: u32,
    /// The timeout the armed deadline was computed with.
    armed_with: Duration,
    /// When the first (not resent) request or OACK went out, to take a
    /// round-trip sample from the answer.
    handshake_sent: Option<Instant>,
    pub max_retries: u32,
    pub retries: u32,
    pub deadline: Option<Instant>,
}

impl Timer {
    /// The timeout before any round trip was measured (RFC 6298 2.1).
    pub const INITIAL: Duration = Duration::from_secs(1);
    /// Clock granularity term of RFC 6298's timeout formula.
    const GRANULARITY: Duration = Duration::from_millis(1);

    pub fn new(ceiling: Duration, floor: Duration, max_retries: u32) -> Self {
        Timer {
            ceiling,
            floor,
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
            patience: 1,
            armed_with: ceiling,
            handshake_sent: None,
            max_retries,
            retries: 0,
            deadline: None,
        }
    }

    /// A receiver's timer: twice the estimate, so the sender's fires first.
    /// Both sides of a TFTP transfer resend on timeout, and when an ACK is
    /// lost and the receiver's timer fires first, its re-ACK answers the
    /// sender's DATA late: the sender times its round trip with the
    /// receiver's timeout in it, its timeout grows, the receiver's fires
    /// first ever more often (at 5 % loss the sender's timeout climbed to
    /// half a second). The receiver's resend is the fallback for a sender
    /// that stays silent.
    pub fn patient(mut self) -> Self {
        self.patience = 2;
        self
    }

    /// Sets the ceiling (the negotiated or configured timeout).
    pub fn set_ceiling(&mut self, ceiling: Duration) {
        self.ceiling = ceiling;
    }

    /// The timeout the next [`Timer::arm`] uses.
    pub fn rto(&self) -> Duration {
        let base = match self.srtt {
            None => self.ceiling.min(Self::INITIAL),
            Some(srtt) => srtt + (4 * self.rttvar).max(Self::GRANULARITY),
        };
        let factor = 1u32
            .checked_shl(self.backoff)
            .unwrap_or(u32::MAX)
            .saturating_mul(self.patience);
        base.max(self.floor)
            .saturating_mul(factor)
            .min(self.ceiling)
    }

    /// How long until the peer's answers reflect what was just sent: the
    /// smoothed round trip plus its variation, without the floor or the
    /// backoff (before any sample: the timeout itself).
    pub fn round_trip_bound(&self) -> Duration {
        match self.srtt {
            Some(srtt) => srtt + (4 * self.rttvar).max(Self::GRANULARITY),
            None => self.rto(),
        }
    }

    /// A round trip measured on a datagram that was sent once (Karn).
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (3 * self.rttvar + delta) / 4;
                self.srtt = Some((7 * srtt + rtt) / 8);
            }
        }
        self.backoff = 0;
    }

    /// The request or OACK went out: `first` when it was not a resend.
    pub fn handshake_sent(&mut self, now: Instant, first: bool) {
        self.handshake_sent = first.then_some(now);
    }

    /// The handshake was answered: a sample if it went out only once.
    pub fn handshake_answered(&mut self, now: Instant) {
        if let Some(sent) = self.handshake_sent.take() {
            self.sample(now.saturating_duration_since(sent));
        }
    }

    /// A datagram was just sent: the timer runs from now.
    pub fn arm(&mut self, now: Instant) {
        self.armed_with = self.rto();
        self.deadline = Some(now + self.armed_with);
    }

    pub fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// The peer made progress: the retry budget starts over, and the
    /// backoff steps down by one. Karn's rule alone keeps a backed-off
    /// timeout until a block sent only once is acknowledged, and under
    /// steady loss resends rarely leave one unresent: the timeout doubled
    /// from one loss to the next (20 ms to over 300 ms at 5 % loss). One
    /// step per advance brings it back down, while a path whose round trip
    /// really grew keeps the timeout near it: a timeout steps up again as
    /// often as progress steps down.
    pub fn progress(&mut self) {
        self.retries = 0;
        self.backoff = self.backoff.saturating_sub(1);
    }

    /// The timer fired: backs off, and consumes one retry if it had waited
    /// the full ceiling. `false` when the budget is spent.
    pub fn retry(&mut self) -> bool {
        self.deadline = None;
        self.handshake_sent = None;
        self.backoff = self.backoff.saturating_add(1);
        if self.armed_with < self.ceiling {
            return true;
        }
        if self.retries >= self.max_retries {
            return false;
        }
        self.retries += 1;
        true
    }

    /// How many timeouts a machine with this configuration takes, once its
    /// peer falls silent, before it gives up: the retries at the ceiling
    /// (the configured timeout, or a negotiated one of up to 255 s) plus the
    /// backoff steps below it. The fuzz targets and proptests bound by it.
    pub fn timeouts_before_giving_up(retries: u32, floor: Duration, timeout: Duration) -> u32 {
        let ceiling = timeout.max(Duration::from_secs(255));
        retries + Self::backoff_steps(floor, ceiling)
    }

    /// The most timeouts below the ceiling between two full-ceiling ones:
    /// how many extra resends backoff can add to the retry budget.
    pub fn backoff_steps(floor: Duration, ceiling: Duration) -> u32 {
        let mut steps = 0;
        let mut t = floor.max(Duration::from_nanos(1));
        while t < ceiling {
            t = t.saturating_mul(2);
            steps += 1;
        }
        steps
    }
}

/// Maps a 16-bit block number onto the 64-bit block index space, given the
/// index the number is expected to be close to (rollover 65535 -> 0).
/// Returns the signed distance from `reference`.
pub(crate) fn block_distance(reference: u64, block: u16) -> i64 {
    i64::from(block.wrapping_sub(reference as u16) as i16)
}

/// The wire block number of a block index.
pub(crate) fn wire_block(index: u64) -> u16 {
    index as u16
}

/// What [`Transfer::max_datagram`] is for a machine in `handshake` with
/// `negotiated`: anything up to the largest datagram while a client waits
/// for the server's answer (the OACK may grant any blksize up to what was
/// asked, and the request itself carries the name).
pub(crate) fn max_datagram(awaiting_answer: bool, negotiated: &Negotiated) -> usize {
    if awaiting_answer {
        return MAX_DATAGRAM;
    }
    DATA_HEADER_LEN + usize::from(negotiated.blksize.max(DEFAULT_BLKSIZE))
}

/// The shortest time between two ERROR 5 answers of one transfer (to
/// datagrams from a stranger: another host or port than the peer's).
pub const STRANGER_INTERVAL: Duration = Duration::from_secs(1);

/// The peer's address and transfer ID, plus the control datagrams (ERRORs)
/// waiting to go out. Every machine owns one.
#[derive(Debug)]
pub(crate) struct Link {
    /// The peer's address; `None` for a client that has not heard back yet.
    pub peer: Option<SocketAddr>,
    /// Where the request goes before the peer's TID is known.
    pub server: SocketAddr,
    /// An ERROR 5 owed to a stranger. One slot: a flood of strangers must
    /// not grow memory or make us a reflector.
    stranger: Option<SocketAddr>,
    /// No stranger is answered before this: at most one ERROR 5 per
    /// [`STRANGER_INTERVAL`], whoever sends.
    strangers_quiet_until: Option<Instant>,
    /// The ERROR this side ends the transfer with.
    final_error: Option<LocalError>,
    pub final_error_sent: bool,
    pub counters: Counters,
    pub started: Instant,
    events: [Option<Event>; 2],
}

/// What [`Link::accept`] decided about an incoming datagram.
pub(crate) enum Accept {
    /// From the peer (or, for a client, from the server's address while the
    /// TID is not yet known): process it.
    Peer,
    /// From anyone else: already answered with ERROR 5, ignore it.
    Stranger,
}

impl Link {
    pub fn new(now: Instant, peer: Option<SocketAddr>, server: SocketAddr) -> Self {
        Link {
            peer,
            server,
            stranger: None,
            strangers_quiet_until: None,
            final_error: None,
            final_error_sent: false,
            counters: Counters::default(),
            started: now,
            events: [None, None],
        }
    }

    /// Sorts out a datagram by its source. A stranger is owed ERROR 5,
    /// unless what it sent is itself an ERROR (RFC 1350: an ERROR is never
    /// answered; two transfers answering each other's ERROR 5 would do so
    /// forever) or another stranger was answered less than
    /// [`STRANGER_INTERVAL`] ago (so a flood of forged sources cannot turn a
    /// transfer into a reflector).
    pub fn accept(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Accept {
        self.counters.datagrams_received += 1;
        let ok = match self.peer {
            Some(peer) => peer == from,
            None => from.ip() == self.server.ip(),
        };
        if ok {
            return Accept::Peer;
        }
        self.counters.unknown_tid += 1;
        let is_error = datagram.starts_with(&[0, Opcode::Error as u8]);
        let quiet = self.strangers_quiet_until.is_some_and(|t| now < t);
        if self.stranger.is_none() && !is_error && !quiet {
            self.stranger = Some(from);
            self.strangers_quiet_until = Some(now + STRANGER_INTERVAL);
        }
        Accept::Stranger
    }

    /// Queues the ERROR that ends this transfer from our side.
    pub fn fail(&mut self, error: LocalError) {
        if self.final_error.is_none() {
            self.final_error = Some(error);
        }
    }

    /// Nothing left to send: no ERROR owed to the peer or a stranger.
    pub fn idle(&self) -> bool {
        self.stranger.is_none() && (self.final_error.is_none() || self.final_error_sent)
    }

    /// Emits a pending ERROR (ours, or ERROR 5 for a stranger), if any.
    pub fn poll_control(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(dest) = self.stranger.take() {
            let len = emit_error(buf, ErrorCode::UNKNOWN_TID, "unknown transfer ID").ok()?;
            return Some(self.sent(dest, len));
        }
        if self.final_error_sent {
            return None;
        }
        let LocalError { code, message } = self.final_error.as_ref()?;
        self.final_error_sent = true;
        // A client that never heard back has no peer to tell.
        let dest = self.peer?;
        let len = emit_error(buf, *code, message).ok()?;
        Some(self.sent(dest, len))
    }

    pub fn sent(&mut self, dest: SocketAddr, len: usize) -> Transmit {
        self.counters.datagrams_sent += 1;
        Transmit { dest, len }
    }

    pub fn push_event(&mut self, event: Event) {
        if let Some(slot) = self.events.iter_mut().find(|e| e.is_none()) {
            *slot = Some(event);
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        let first = self.events[0].take();
        self.events.swap(0, 1);
        first
    }
}

/// How many timeouts a machine configured with `retries`, a timer floor of
/// `min_rto` and a timeout of `timeout` takes, once its peer falls silent,
/// before it gives up: the bound a harness checks a run against.
pub fn timeouts_before_giving_up(retries: u32, min_rto: Duration, timeout: Duration) -> u32 {
    Timer::timeouts_before_giving_up(retries, min_rto, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_distance_handles_rollover() {
        assert_eq!(block_distance(1, 1), 0);
        assert_eq!(block_distance(65535, 0), 1);
        assert_eq!(block_distance(65536, 65535), -1);
        assert_eq!(block_distance(65536 + 3, 2), -1);
        assert_eq!(block_distance(10, 9), -1);
        assert_eq!(block_distance(10, 10 + 100), 100);
        assert_eq!(wire_block(65536), 0);
        assert_eq!(wire_block(65537), 1);
    }

    #[test]
    fn timer_budget_and_progress() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        // A fixed timer: the floor is the ceiling.
        let mut t = Timer::new(second, second, 2);
        assert!(!t.expired(now));
        t.arm(now);
        assert!(!t.expired(now + Duration::from_millis(999)));
        assert!(t.expired(now + second));
        assert!(t.retry());
        assert!(t.retry());
        assert!(!t.retry());
        t.progress();
        assert!(t.retry());
        t.sample(Duration::from_millis(1));
        assert_eq!(t.rto(), second, "a fixed timer ignores samples");
    }

    #[test]
    fn timer_adapts_between_floor_and_ceiling() {
        let ms = Duration::from_millis;
        let mut t = Timer::new(ms(5000), ms(20), 3);
        assert_eq!(t.rto(), ms(1000), "no sample yet: RFC 6298's initial 1 s");
        t.sample(ms(2));
        // srtt 2, rttvar 1: 2 + 4 = 6, raised to the floor.
        assert_eq!(t.rto(), ms(20));
        for _ in 0..20 {
            t.sample(ms(40));
        }
        assert!(t.rto() > ms(40) && t.rto() < ms(60), "{:?}", t.rto());
        // Backoff doubles up to the ceiling; the early timeouts are free.
        let now = Instant::now();
        let mut waited = Vec::new();
        loop {
            t.arm(now);
            waited.push(t.rto());
            if !t.retry() {
                break;
            }
        }
        let full = waited.iter().filter(|&&w| w == ms(5000)).count();
        assert_eq!(
            full, 4,
            "three retries at the ceiling, then the give-up: {waited:?}"
        );
        assert!(waited.windows(2).all(|w| w[1] >= w[0]));
        assert!(waited.len() as u32 <= 4 + Timer::backoff_steps(ms(20), ms(5000)));
        // A fresh sample ends the backoff.
        t.progress();
        t.sample(ms(40));
        assert!(t.rto() < ms(100));
    }

    #[test]
    fn progress_steps_the_backoff_down_and_a_receiver_waits_twice_as_long() {
        let ms = Duration::from_millis;
        let now = Instant::now();
        let mut t = Timer::new(ms(5000), ms(20), 3);
        t.sample(ms(2));
        for _ in 0..3 {
            t.arm(now);
            assert!(t.retry());
        }
        assert_eq!(t.rto(), ms(160));
        t.progress();
        assert_eq!(
            t.rto(),
            ms(80),
            "one step down per advance, no sample needed"
        );
        for _ in 0..5 {
            t.progress();
        }
        assert_eq!(t.rto(), ms(20));
        let mut r = Timer::new(ms(5000), ms(20), 3).patient();
        r.sample(ms(2));
        assert_eq!(r.rto(), ms(40));
        r.sample(ms(4000));
        assert_eq!(r.rto(), ms(5000), "never past the ceiling");
        let fixed = Timer::new(ms(1000), ms(1000), 3).patient();
        assert_eq!(fixed.rto(), ms(1000), "a fixed timer stays fixed");
    }

    #[test]
    fn link_answers_one_stranger_at_a_time() {
        let now = Instant::now();
        let peer: SocketAddr = "10.0.0.2:1000".parse().unwrap();
        let mut link = Link::new(now, Some(peer), peer);
        let ack = b"\x00\x04\x00\x01";
        assert!(matches!(link.accept(now, peer, ack), Accept::Peer));
        for port in 2000..2010 {
            let from = SocketAddr::new(peer.ip(), port);
            assert!(matches!(link.accept(now, from, ack), Accept::Stranger));
        }
        let mut buf = [0u8; 64];
        let t = link.poll_control(&mut buf).unwrap();
        assert_eq!(t.dest.port(), 2000);
        assert_eq!(&buf[..4], b"\x00\x05\x00\x05");
        assert!(link.poll_control(&mut buf).is_none());
        assert_eq!(link.counters.unknown_tid, 10);
        // Within the interval, whoever it is: no answer.
        let later = now + STRANGER_INTERVAL / 2;
        assert!(matches!(
            link.accept(later, SocketAddr::new(peer.ip(), 3000), ack),
            Accept::Stranger
        ));
        assert!(link.poll_control(&mut buf).is_none());
        let after = now + STRANGER_INTERVAL;
        link.accept(after, SocketAddr::new(peer.ip(), 3001), ack);
        assert_eq!(link.poll_control(&mut buf).unwrap().dest.port(), 3001);
    }

    #[test]
    fn link_never_answers_an_error() {
        // Two transfers of one server, each a stranger to the other: if an
        // ERROR drew an ERROR 5, one forged ERROR would start an exchange
        // that lasts as long as both transfers.
        let now = Instant::now();
        let peer: SocketAddr = "10.0.0.2:1000".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let mut link = Link::new(now, Some(peer), peer);
        let mut buf = [0u8; 64];
        let len = emit_error(&mut buf, ErrorCode::UNKNOWN_TID, "unknown transfer ID").unwrap();
        let error = buf[..len].to_vec();
        for i in 0..5u32 {
            let t = now + STRANGER_INTERVAL * (i + 1);
            assert!(matches!(link.accept(t, other, &error), Accept::Stranger));
            assert!(
                link.poll_control(&mut buf).is_none(),
                "ERROR {i} was answered"
            );
        }
        assert_eq!(link.counters.unknown_tid, 5);
    }
}
