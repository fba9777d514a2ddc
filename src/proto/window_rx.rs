//! The windowed DATA receiver shared by [`super::ServerWrite`] and
//! [`super::ClientGet`].
//!
//! Rules, each with a test in `sim/tests/protocol.rs`:
//! - Blocks are written strictly in order, each exactly once.
//! - An ACK goes out when a window is complete, for the last block, on the
//!   first out-of-order block after progress (so the sender restarts the
//!   window there, RFC 7440), and on timeout.
//! - A duplicate of a block already acknowledged means our ACK was lost: it
//!   is answered with the current ACK. A duplicate of a block received since
//!   the last ACK is dropped silently, so duplication alone never makes the
//!   sender resend.
//! - After the last block the receiver dallies, re-acknowledging a repeated
//!   last block, so a lost final ACK does not fail the sender.
//! - The timeout adapts to the round trip from a fresh ACK to the block it
//!   asks for ([`Timer`]); a timeout cancels the measurement (Karn's rule).

use super::common::{block_distance, wire_block, Counters, LocalError};
use super::timer::{Expiry, Timer};
use crate::data::Sink;
use crate::netascii::NetasciiSink;
use crate::wire::{ErrorCode, Mode};
use std::io;
use std::time::{Duration, Instant};

/// The data sink as fed from the wire: raw, or netascii-decoded.
pub(crate) enum WireSink<K: Sink> {
    Octet(K),
    Netascii(NetasciiSink<K>),
}

impl<K: Sink> WireSink<K> {
    pub fn new(sink: K, mode: Mode) -> Self {
        match mode {
            Mode::Netascii => WireSink::Netascii(NetasciiSink::new(sink)),
            Mode::Octet | Mode::Mail => WireSink::Octet(sink),
        }
    }
}

impl<K: Sink> Sink for WireSink<K> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        match self {
            WireSink::Octet(s) => s.write_at(offset, data),
            WireSink::Netascii(s) => s.write_at(offset, data),
        }
    }
    fn commit(&mut self) -> io::Result<()> {
        match self {
            WireSink::Octet(s) => s.commit(),
            WireSink::Netascii(s) => s.commit(),
        }
    }
    fn abort(&mut self) {
        match self {
            WireSink::Octet(s) => s.abort(),
            WireSink::Netascii(s) => s.abort(),
        }
    }
}

/// What a DATA packet did to the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// Nothing changed (other than perhaps an ACK owed).
    Continue,
    /// That was the last block; the sink is committed, or, with
    /// [`WindowRx::commit_after_ack`], waits for [`WindowRx::commit`].
    Complete,
}

pub(crate) struct WindowRx<K: Sink> {
    sink: WireSink<K>,
    sink_closed: bool,
    blksize: usize,
    window: u64,
    /// Next block index wanted (indices start at 1).
    expected: u64,
    /// Highest block index acknowledged so far (0: the request / OACK).
    last_acked: u64,
    /// Whether any ACK (or OACK standing for ACK 0) has gone out.
    acked_once: bool,
    /// In-order blocks received since the last ACK.
    since_ack: u64,
    /// An ACK for the current gap has been sent.
    gap_acked: bool,
    /// An ACK of `expected - 1` is owed.
    ack_owed: bool,
    /// The block a fresh ACK asked for, and when that ACK went out.
    timing: Option<(u64, Instant)>,
    /// Wire bytes written so far.
    offset: u64,
    max_size: Option<u64>,
    complete: bool,
    /// Commit only once the final ACK is out ([`WindowRx::commit`]): a
    /// client's download. A server commits an upload before its final
    /// ACK, so the client learns of a failed commit; a client's commit
    /// (an fsync of the whole file, 0.1 s for 64 MiB) only made the server
    /// wait, and resend its last window, for nothing.
    commit_after_ack: bool,
    commit_owed: bool,
    /// The machine's retransmission timer, the handshake's included: only
    /// the window arms and disarms it.
    timer: Timer,
}

impl<K: Sink> WindowRx<K> {
    pub fn new(sink: WireSink<K>, max_size: Option<u64>, timer: Timer) -> Self {
        WindowRx {
            sink,
            sink_closed: false,
            blksize: 512,
            window: 1,
            expected: 1,
            last_acked: 0,
            acked_once: false,
            since_ack: 0,
            gap_acked: false,
            ack_owed: false,
            timing: None,
            offset: 0,
            max_size,
            complete: false,
            commit_after_ack: false,
            commit_owed: false,
            timer: timer.patient(),
        }
    }

    /// A receiver that commits after its final ACK (a client's download).
    pub fn committing_after_ack(mut self) -> Self {
        self.commit_after_ack = true;
        self
    }

    /// Applies the negotiated settings; called before the first DATA.
    pub fn configure(&mut self, blksize: u16, window: u16, rto: Duration) {
        self.blksize = usize::from(blksize);
        self.window = u64::from(window.max(1));
        self.timer.set_ceiling(rto);
    }

    pub fn bytes(&self) -> u64 {
        self.offset
    }

    pub fn blocks(&self) -> u64 {
        self.expected - 1
    }

    /// Whether wire block `block` is at or behind the last ACK sent: a
    /// stale copy, not a resend of what the sender still waits to hear
    /// about.
    pub fn acknowledged(&self, block: u16) -> bool {
        let ahead = block.wrapping_sub(Self::wire_ack(self.last_acked));
        ahead == 0 || ahead >= 0x8000
    }

    /// Owes an ACK of the last in-order block (ACK 0 before any DATA).
    pub fn owe_ack(&mut self) {
        self.ack_owed = true;
    }

    /// Whether the sink waits for [`WindowRx::commit`].
    pub fn commit_owed(&self) -> bool {
        self.commit_owed
    }

    /// Commits the sink after the last block.
    pub fn commit(&mut self) -> Result<(), LocalError> {
        self.commit_owed = false;
        self.sink_closed = true;
        self.sink
            .commit()
            .map_err(|e| LocalError::io("commit failed", &e))
    }

    /// Discards the sink's data after a failure. Idempotent.
    pub fn abort_sink(&mut self) {
        if !self.sink_closed {
            self.sink_closed = true;
            self.sink.abort();
        }
    }

    pub fn handle_data(
        &mut self,
        now: Instant,
        block: u16,
        data: &[u8],
        counters: &mut Counters,
    ) -> Result<DataOutcome, LocalError> {
        if data.len() > self.blksize {
            counters.ignored += 1;
            return Ok(DataOutcome::Continue);
        }
        let d = block_distance(self.expected, block);
        if self.complete || d < 0 {
            return Ok(self.old_block(d, counters));
        }
        if d > 0 {
            counters.ignored += 1;
            if !self.gap_acked {
                self.gap_acked = true;
                self.ack_owed = true;
            }
            return Ok(DataOutcome::Continue);
        }
        if let Some((_, sent)) = self.timing.filter(|&(w, _)| w == self.expected) {
            self.timer.sample(now.saturating_duration_since(sent));
            self.timing = None;
        }
        self.write_block(data)?;
        self.timer.progress();
        self.timer.arm(now);
        if data.len() < self.blksize {
            self.complete = true;
            self.ack_owed = true;
            if self.commit_after_ack {
                self.commit_owed = true;
            } else {
                self.commit()?;
            }
            return Ok(DataOutcome::Complete);
        }
        if self.since_ack >= self.window {
            self.ack_owed = true;
        }
        Ok(DataOutcome::Continue)
    }

    fn write_block(&mut self, data: &[u8]) -> Result<(), LocalError> {
        let end = self.offset + data.len() as u64;
        if let Some(limit) = self.max_size.filter(|&l| end > l) {
            return Err(LocalError::new(
                ErrorCode::DISK_FULL,
                format!("file exceeds the size limit of {limit} bytes"),
            ));
        }
        if !data.is_empty() {
            self.sink
                .write_at(self.offset, data)
                .map_err(|e| LocalError::io("write failed", &e))?;
        }
        self.offset = end;
        self.expected += 1;
        self.since_ack += 1;
        self.gap_acked = false;
        Ok(())
    }

    /// A block from before `expected` (distance `d` < 0), or anything after
    /// completion: re-acknowledge if the sender evidently missed our ACK.
    fn old_block(&mut self, d: i64, counters: &mut Counters) -> DataOutcome {
        counters.duplicate_data += 1;
        let index = self.expected as i64 + d;
        if index >= 1 && index as u64 <= self.last_acked {
            self.ack_owed = true;
        }
        DataOutcome::Continue
    }

    /// The block index an owed ACK acknowledges, consuming the debt. The
    /// caller emits it (as ACK, or as the OACK when it is 0 on a server).
    pub fn take_ack(&mut self, now: Instant, counters: &mut Counters) -> Option<u64> {
        if !std::mem::take(&mut self.ack_owed) {
            return None;
        }
        let index = self.expected - 1;
        if self.acked_once && index <= self.last_acked {
            counters.acks_retransmitted += 1;
        } else if !self.complete {
            self.timing = Some((index + 1, now));
        }
        self.acked_once = true;
        self.last_acked = index;
        self.since_ack = 0;
        self.timer.arm(now);
        Some(index)
    }

    pub fn wire_ack(index: u64) -> u16 {
        wire_block(index)
    }

    /// Our timer fired with the transfer incomplete: re-acknowledge the last
    /// in-order block. Returns `false` when the retry budget is spent.
    pub fn handle_timeout(&mut self, now: Instant, counters: &mut Counters) -> bool {
        match self.timer.expire(now, counters) {
            Expiry::Waiting => true,
            Expiry::Resend => {
                self.timing = None;
                self.ack_owed = true;
                self.gap_acked = false;
                true
            }
            Expiry::GiveUp => {
                self.timing = None;
                false
            }
        }
    }

    /// The request went out (`first`: not a resend); the timer runs from
    /// now, and times the answer if it was sent once.
    pub fn handshake_sent(&mut self, now: Instant, first: bool) {
        self.timer.handshake_sent(now, first);
    }

    /// The server answered the request with an OACK: a round-trip sample if
    /// the request went out once, and progress.
    pub fn answered_by_oack(&mut self, now: Instant) {
        self.timer.handshake_answered(now);
        self.timer.progress();
    }

    /// The server ignored the options and answered with DATA: a round-trip
    /// sample if the request went out once. Whether the block is progress
    /// is [`WindowRx::handle_data`]'s to say (only an in-order one is).
    pub fn answered_by_data(&mut self, now: Instant) {
        self.timer.handshake_answered(now);
    }

    /// Time passed with the request unanswered: [`Expiry::Resend`] when it
    /// is to go out again.
    pub fn handshake_timeout(&mut self, now: Instant, counters: &mut Counters) -> Expiry {
        self.timer.expire_handshake(now, counters)
    }

    /// When the timer fires, if armed.
    pub fn deadline(&self) -> Option<Instant> {
        self.timer.deadline()
    }

    /// The retry budget at the ceiling, for [`super::TransferError`].
    pub fn max_retries(&self) -> u32 {
        self.timer.max_retries()
    }
}
