//! The windowed DATA sender shared by [`super::ServerRead`] and
//! [`super::ClientPut`] (RFC 1350 lock-step is windowsize 1, RFC 7440 above).
//!
//! Rules, each with a test in `proto::tests`:
//! - An ACK for a block inside the sent window moves the window to the block
//!   after it, and the next window goes out at once. An ACK short of the
//!   highest block sent says the receiver saw a gap (RFC 7440): the window is
//!   resent from the block after it, but at most once per round trip. Receivers such as U-Boot ACK their last in-order block for
//!   every out-of-order block they see; rewinding on each of those ACKs made
//!   overlapping windows and a burst of resends (40 DATA in 2 ms seen).
//!   Within a round trip of a rewind (smoothed, plus its variation) an ACK
//!   only moves the window on: the blocks already sent past it are in
//!   flight, and the timer covers their loss.
//! - An ACK that acknowledges nothing new (a duplicate) is ignored: it neither
//!   triggers a resend (Sorcerer's Apprentice, RFC 1123 4.2.3.1) nor restarts
//!   the timer, which runs from the last transmission.
//! - On timeout the window is resent from its first unacknowledged block.
//! - The timeout adapts to the measured round trip ([`Timer`]): one block at
//!   a time is timed from its first transmission to the ACK that covers it,
//!   and a timeout cancels the measurement (Karn's rule).
//! - A file whose size is a multiple of blksize ends with an empty block.

use super::common::{wire_block, Counters, Timer};
use crate::data::Source;
use crate::netascii::NetasciiSource;
use crate::wire::{emit_data_header, ErrorCode, Mode, DATA_HEADER_LEN};
use std::io;
use std::time::{Duration, Instant};

/// The data source as seen on the wire: raw, or netascii-encoded.
pub(crate) enum WireSource<S: Source> {
    Octet(S),
    Netascii(NetasciiSource<S>),
}

impl<S: Source> WireSource<S> {
    pub fn new(source: S, mode: Mode) -> Self {
        match mode {
            Mode::Netascii => WireSource::Netascii(NetasciiSource::new(source)),
            Mode::Octet | Mode::Mail => WireSource::Octet(source),
        }
    }
}

impl<S: Source> Source for WireSource<S> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            WireSource::Octet(s) => s.read_at(offset, buf),
            WireSource::Netascii(s) => s.read_at(offset, buf),
        }
    }
    fn size(&self) -> Option<u64> {
        match self {
            WireSource::Octet(s) => s.size(),
            WireSource::Netascii(s) => s.size(),
        }
    }
    fn release_before(&mut self, offset: u64) {
        match self {
            WireSource::Octet(s) => s.release_before(offset),
            WireSource::Netascii(s) => s.release_before(offset),
        }
    }
}

/// What an ACK did to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// The window moved; new blocks are ready to send.
    Progress,
    /// The last block is acknowledged: the transfer is complete.
    Complete,
    /// A duplicate or stale ACK: nothing changes.
    Ignored,
}

/// A local failure that ends the transfer with an ERROR to the peer.
pub(crate) type Failure = (ErrorCode, String);

/// The ERROR for an I/O failure. The message goes on the wire, so it names
/// the failure's kind only: OS error text can carry host details.
pub(crate) fn io_failure(what: &str, e: &io::Error) -> Failure {
    let code = ErrorCode::for_io_error(e);
    let kind = match code {
        ErrorCode::DISK_FULL => "disk full or allocation exceeded",
        ErrorCode::FILE_EXISTS => "file already exists",
        ErrorCode::ACCESS_VIOLATION => "access violation",
        ErrorCode::FILE_NOT_FOUND => "file not found",
        _ => "I/O error",
    };
    (code, format!("{what}: {kind}"))
}

pub(crate) struct Sender<S: Source> {
    source: WireSource<S>,
    blksize: usize,
    window: u64,
    /// First block index not yet acknowledged (indices start at 1).
    base: u64,
    /// Next block index to transmit.
    next: u64,
    /// Highest block index ever transmitted, to tell resends apart.
    sent_max: u64,
    /// The final block's index and length, once a short read found it.
    last: Option<(u64, usize)>,
    /// The block being timed for a round-trip sample, and when it went out.
    timing: Option<(u64, Instant)>,
    /// When the window was last rewound (by a gap ACK or a timeout).
    rewound_at: Option<Instant>,
    pub timer: Timer,
}

impl<S: Source> Sender<S> {
    /// A sender with RFC 1350 defaults until [`Sender::configure`].
    pub fn new(source: WireSource<S>, timer: Timer) -> Self {
        Sender {
            source,
            blksize: 512,
            window: 1,
            base: 1,
            next: 1,
            sent_max: 0,
            last: None,
            timing: None,
            rewound_at: None,
            timer,
        }
    }

    /// Applies the negotiated settings; called before the first DATA.
    pub fn configure(&mut self, blksize: u16, window: u16, rto: Duration) {
        self.blksize = usize::from(blksize);
        self.window = u64::from(window.max(1));
        self.timer.set_ceiling(rto);
    }

    /// Bytes acknowledged by the receiver.
    pub fn bytes_acked(&self) -> u64 {
        let full = (self.base - 1) * self.blksize as u64;
        match self.last {
            Some((idx, len)) if idx < self.base => full - (self.blksize - len) as u64,
            _ => full,
        }
    }

    pub fn blocks_acked(&self) -> u64 {
        self.base - 1
    }

    fn may_send(&self) -> bool {
        self.next < self.base + self.window && self.last.is_none_or(|(l, _)| self.next <= l)
    }

    /// Writes the next DATA of the window into `buf`, if the window allows.
    pub fn poll_data(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        counters: &mut Counters,
    ) -> Result<Option<usize>, Failure> {
        if !self.may_send() {
            return Ok(None);
        }
        let end = DATA_HEADER_LEN + self.blksize;
        if buf.len() < end {
            return Err((ErrorCode::UNDEFINED, "transmit buffer too small".into()));
        }
        let offset = (self.next - 1)
            .checked_mul(self.blksize as u64)
            .ok_or((ErrorCode::DISK_FULL, "file too large".to_string()))?;
        let n = self
            .source
            .read_at(offset, &mut buf[DATA_HEADER_LEN..end])
            .map_err(|e| io_failure("read failed", &e))?;
        let n = match self.last {
            // A resend of the final block carries exactly what the first did.
            Some((l, len)) if self.next == l => {
                if n < len {
                    return Err(changed());
                }
                len
            }
            Some(_) if n < self.blksize => return Err(changed()),
            None if n < self.blksize => {
                self.last = Some((self.next, n));
                n
            }
            _ => n,
        };
        emit_data_header(buf, wire_block(self.next)).map_err(|_| changed())?;
        counters.data_sent += 1;
        if self.next <= self.sent_max {
            counters.data_retransmitted += 1;
        } else if self.timing.is_none() {
            self.timing = Some((self.next, now));
        }
        self.sent_max = self.sent_max.max(self.next);
        self.next += 1;
        self.timer.arm(now);
        Ok(Some(DATA_HEADER_LEN + n))
    }

    /// Applies an ACK for wire block `block`.
    pub fn handle_ack(&mut self, now: Instant, block: u16, counters: &mut Counters) -> AckOutcome {
        let acked_before = self.base - 1;
        // Forward distance 0..=65535 from the last acknowledged block. The
        // sent window is at most 65535 blocks, so an ACK inside it is never
        // ambiguous; a signed 16-bit distance drops every ACK more than
        // 32767 blocks into a larger window.
        let d = u64::from(block.wrapping_sub(wire_block(acked_before)));
        if d == 0 {
            counters.duplicate_acks += 1;
            return AckOutcome::Ignored;
        }
        if acked_before + d > self.sent_max {
            counters.ignored += 1;
            return AckOutcome::Ignored;
        }
        let acked = acked_before + d;
        if let Some((_, sent)) = self.timing.filter(|&(t, _)| t <= acked) {
            self.timer.sample(now.saturating_duration_since(sent));
            self.timing = None;
        }
        self.base = acked + 1;
        if acked < self.sent_max {
            // A gap ACK: blocks past it were sent. Rewind unless we did
            // so recently enough that this ACK may predate the resend.
            let recent = self
                .rewound_at
                .is_some_and(|t| now.saturating_duration_since(t) < self.timer.round_trip_bound());
            if recent {
                self.next = self.next.max(self.base);
            } else {
                self.next = self.base;
                self.rewound_at = Some(now);
            }
        } else {
            self.next = self.base;
        }
        self.timer.progress();
        self.source
            .release_before(acked.saturating_mul(self.blksize as u64));
        if self.last.is_some_and(|(l, _)| l == acked) {
            self.timer.deadline = None;
            return AckOutcome::Complete;
        }
        AckOutcome::Progress
    }

    /// The retransmission timer fired: rewind to the window's start.
    /// Returns `false` when the retry budget is spent.
    pub fn handle_timeout(&mut self, now: Instant, counters: &mut Counters) -> bool {
        if !self.timer.expired(now) {
            return true;
        }
        counters.timeouts += 1;
        self.timing = None;
        if !self.timer.retry() {
            return false;
        }
        self.next = self.base;
        self.rewound_at = Some(now);
        true
    }
}

fn changed() -> Failure {
    (
        ErrorCode::UNDEFINED,
        "file changed during transfer".to_string(),
    )
}
