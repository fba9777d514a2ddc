//! The windowed DATA sender shared by [`super::ServerRead`] and
//! [`super::ClientPut`] (RFC 1350 lock-step is windowsize 1, RFC 7440 above).
//!
//! Rules, each with a test in `sim/tests/protocol.rs`:
//! - An ACK for a block inside the sent window moves the window to the block
//!   after it, and the next window goes out at once. An ACK short of the
//!   highest block sent says the receiver saw a gap (RFC 7440): the window is
//!   resent from the block after it, but at most once per round trip. Receivers such as U-Boot ACK their last in-order block for
//!   every out-of-order block they see; rewinding on each of those ACKs made
//!   overlapping windows and a burst of resends (40 DATA in 2 ms seen).
//!   Within a round trip of a rewind (smoothed, plus its variation) an ACK
//!   only moves the window on: the blocks already sent past it are in
//!   flight. Such a gap ACK is not forgotten, though: if the window has not
//!   moved past its gap a round trip after the last DATA went out (a block
//!   sent after the rewind may be the one that completes the receiver's
//!   window and draws its ACK), the sender rewinds then, without waiting
//!   for the timer (a block lost from a resent window
//!   used to cost a full timeout, 20 ms and more, instead of a round trip).
//! - An ACK that acknowledges nothing new (a duplicate) is ignored: it neither
//!   triggers a resend (Sorcerer's Apprentice, RFC 1123 4.2.3.1) nor restarts
//!   the timer, which runs from the last transmission.
//! - On a window's first timeout only its first and last blocks go out
//!   again, a probe: a lost ACK is the likelier cause, and a receiver that
//!   has the whole window answers a repeat with that ACK (RFC 7440
//!   receivers, U-Boot, EDK2 and tftplab's own client all do), where
//!   resending the window cost up to windowsize blocks it already had. A
//!   receiver that lacks the first block takes it in order and answers the
//!   last, now ahead of it, with a gap ACK; one that lacks a later block
//!   answers the first, already acknowledged, with where it stands; either
//!   way the window is resent from there at once. (The last block alone
//!   drew nothing from a receiver whose gap ACK had been lost, and cost a
//!   second, doubled timeout.) On the window's next timeout the window is
//!   resent from its first unacknowledged block. Lock-step (windowsize 1)
//!   resends that block.
//! - The timeout adapts to the measured round trip ([`Timer`]): one block at
//!   a time is timed from its first transmission to the ACK that covers it
//!   and everything sent after it; a timeout cancels the measurement (Karn's
//!   rule).
//! - A file whose size is a multiple of blksize ends with an empty block.

use super::common::{wire_block, Counters, LocalError};
use super::timer::{Expiry, Timer};
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

/// A block resent on a timeout, to tell from its ACKs whether it had to be.
#[derive(Debug, Clone, Copy)]
struct Resent {
    block: u64,
    /// When it first went out, if it was timed then.
    first_sent: Option<Instant>,
    /// When its first ACK came.
    answered: Option<Instant>,
}

pub(crate) struct WindowTx<S: Source> {
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
    /// When the last DATA went out, resend or not.
    last_sent: Option<Instant>,
    /// A gap ACK that came too soon after a rewind to act on: the first
    /// block index it says is missing.
    deferred_gap: Option<u64>,
    /// The window starting at this block index timed out once and went
    /// out as a probe: its first block, then its last.
    probed: Option<u64>,
    /// The probe's last block, sent right after its first.
    probe_tail: Option<u64>,
    /// The block last resent because the timer fired (lock-step), until a
    /// second ACK of it shows the resend was not needed.
    resent_on_timeout: Option<Resent>,
    /// The machine's retransmission timer, the handshake's included: only
    /// the window arms and disarms it.
    timer: Timer,
}

impl<S: Source> WindowTx<S> {
    /// A sender with RFC 1350 defaults until [`WindowTx::configure`].
    pub fn new(source: WireSource<S>, timer: Timer) -> Self {
        WindowTx {
            source,
            blksize: 512,
            window: 1,
            base: 1,
            next: 1,
            sent_max: 0,
            last: None,
            timing: None,
            rewound_at: None,
            last_sent: None,
            deferred_gap: None,
            probed: None,
            probe_tail: None,
            resent_on_timeout: None,
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

    /// True once the final block has gone out at least once: from then on
    /// only the final ACK is missing for the transfer to be complete.
    pub fn sent_last(&self) -> bool {
        self.last.is_some_and(|(l, _)| self.sent_max >= l)
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
    ) -> Result<Option<usize>, LocalError> {
        if !self.may_send() {
            return Ok(None);
        }
        let end = DATA_HEADER_LEN + self.blksize;
        if buf.len() < end {
            return Err(LocalError::new(
                ErrorCode::UNDEFINED,
                "transmit buffer too small",
            ));
        }
        let offset = (self.next - 1)
            .checked_mul(self.blksize as u64)
            .ok_or_else(|| LocalError::new(ErrorCode::DISK_FULL, "file too large"))?;
        let n = self
            .source
            .read_at(offset, &mut buf[DATA_HEADER_LEN..end])
            .map_err(|e| LocalError::io("read failed", &e))?;
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
        self.last_sent = Some(now);
        if let Some(tail) = self.probe_tail.take() {
            self.next = self.next.max(tail);
        }
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
            self.spurious_if_resent(acked_before, counters);
            return AckOutcome::Ignored;
        }
        if acked_before + d > self.sent_max {
            counters.ignored += 1;
            return AckOutcome::Ignored;
        }
        let acked = acked_before + d;
        // Only an ACK of everything sent times the round trip: one short of
        // it answers a gap, or the receiver's own timer after the window's
        // tail was lost, and timing that counted the receiver's timeout
        // into the round trip (20 ms and more on loopback).
        if let Some((_, sent)) = self.timing.filter(|&(t, _)| t <= acked) {
            if acked == self.sent_max {
                self.timer.sample(now.saturating_duration_since(sent));
            }
            self.timing = None;
        }
        if let Some(r) = self.resent_on_timeout.as_mut().filter(|r| r.block == acked) {
            r.answered.get_or_insert(now);
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
                self.deferred_gap = Some(self.base);
            } else {
                self.rewind(now);
            }
        } else {
            self.next = self.base;
            self.deferred_gap = None;
        }
        self.timer.progress();
        self.source
            .release_before(acked.saturating_mul(self.blksize as u64));
        if self.last.is_some_and(|(l, _)| l == acked) {
            self.timer.disarm();
            return AckOutcome::Complete;
        }
        AckOutcome::Progress
    }

    /// A second ACK of `acked`: when `acked` went out again on a timeout
    /// in lock-step, the receiver got both copies and answered each, so
    /// the original was slow, not lost: the timer's floor rises above the
    /// time the original took ([`Timer::spurious`]).
    fn spurious_if_resent(&mut self, acked: u64, counters: &mut Counters) {
        let Some(resent) = self.resent_on_timeout.take_if(|r| r.block == acked) else {
            return;
        };
        counters.spurious_resends += 1;
        let stall = resent
            .first_sent
            .zip(resent.answered)
            .map(|(sent, answered)| answered.saturating_duration_since(sent));
        self.timer.spurious(stall);
    }

    /// Resends from the window's first unacknowledged block. A block being
    /// timed goes out again, so its ACK could answer either copy (Karn).
    fn rewind(&mut self, now: Instant) {
        self.probe_tail = None;
        if self.timing.is_some_and(|(block, _)| block >= self.base) {
            self.timing = None;
        }
        self.next = self.base;
        self.rewound_at = Some(now);
        self.deferred_gap = None;
    }

    /// When a deferred gap ACK is acted on, if one is waiting and the
    /// window has not moved past its gap: a round trip after the last DATA
    /// went out. The ACK that moves the window may need a block sent after
    /// the rewind (one that fills the receiver's window count), so timing
    /// from the rewind itself resent a window whose ACK was on its way.
    fn deferred_rewind_at(&self) -> Option<Instant> {
        self.deferred_gap.filter(|&g| g == self.base)?;
        let from = self.rewound_at?.max(self.last_sent?);
        Some(from + self.timer.round_trip_bound())
    }

    /// The next moment [`WindowTx::handle_timeout`] has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        let timer = self.timer.deadline()?;
        Some(self.deferred_rewind_at().map_or(timer, |d| d.min(timer)))
    }

    /// Time passed: act on a deferred gap ACK, or, when the retransmission
    /// timer fired, probe with the window's first and last blocks or rewind to its
    /// start. Returns `false` when the retry budget is spent.
    pub fn handle_timeout(&mut self, now: Instant, counters: &mut Counters) -> bool {
        if self.deferred_rewind_at().is_some_and(|d| now >= d) {
            self.rewind(now);
            return true;
        }
        match self.timer.expire(now, counters) {
            Expiry::Waiting => true,
            Expiry::Resend => {
                // Only lock-step: a windowed receiver repeats an ACK to
                // point at a gap, which says nothing about the timer.
                if self.window == 1 {
                    let first_sent = match self.resent_on_timeout {
                        Some(r) if r.block == self.base => r.first_sent,
                        _ => self.timing.filter(|&(b, _)| b == self.base).map(|(_, t)| t),
                    };
                    self.resent_on_timeout = Some(Resent {
                        block: self.base,
                        first_sent,
                        answered: None,
                    });
                }
                self.timing = None;
                if self.sent_max > self.base && self.probed != Some(self.base) {
                    // The probe: no rewind recorded, so the gap ACK it
                    // draws rewinds at once.
                    self.probed = Some(self.base);
                    self.next = self.base;
                    self.probe_tail = Some(self.sent_max);
                    self.deferred_gap = None;
                } else {
                    self.rewind(now);
                }
                true
            }
            Expiry::GiveUp => {
                self.timing = None;
                false
            }
        }
    }

    /// The OACK or request went out (`first`: not a resend); the timer
    /// runs from now, and times the answer if it was sent once.
    pub fn handshake_sent(&mut self, now: Instant, first: bool) {
        self.timer.handshake_sent(now, first);
    }

    /// The peer answered the handshake: a round-trip sample if it went out
    /// once, and progress.
    pub fn handshake_answered(&mut self, now: Instant) {
        self.timer.handshake_answered(now);
        self.timer.progress();
    }

    /// Time passed with the handshake unanswered: [`Expiry::Resend`] when
    /// the OACK or request is to go out again.
    pub fn handshake_timeout(&mut self, now: Instant, counters: &mut Counters) -> Expiry {
        self.timer.expire_handshake(now, counters)
    }

    /// The retry budget at the ceiling, for [`super::TransferError`].
    pub fn max_retries(&self) -> u32 {
        self.timer.max_retries()
    }
}

fn changed() -> LocalError {
    LocalError::new(ErrorCode::UNDEFINED, "file changed during transfer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::MemSource;

    type Mem = MemSource<Vec<u8>>;
    const MS: Duration = Duration::from_millis(1);

    /// A sender of 20 blocks of 512 bytes, window 4, timeout 1 s, floor 20 ms.
    fn sender() -> WindowTx<Mem> {
        let source = WireSource::new(MemSource::new(vec![7u8; 512 * 20]), Mode::Octet);
        let mut s = WindowTx::new(source, Timer::new(1000 * MS, 20 * MS, 5));
        s.configure(512, 4, 1000 * MS);
        s
    }

    /// The block numbers of everything the window lets out now.
    fn send(s: &mut WindowTx<Mem>, now: Instant, c: &mut Counters) -> Vec<u16> {
        let mut buf = [0u8; 600];
        let mut blocks = Vec::new();
        while s.poll_data(now, &mut buf, c).unwrap().is_some() {
            blocks.push(u16::from_be_bytes([buf[2], buf[3]]));
        }
        blocks
    }

    #[test]
    fn only_an_ack_of_everything_sent_times_the_round_trip() {
        let (t, mut c) = (Instant::now(), Counters::default());
        let mut s = sender();
        let untimed = s.timer.round_trip_bound();
        assert_eq!(send(&mut s, t, &mut c), vec![1, 2, 3, 4]);
        // The tail was lost and the receiver's timer answered: ACK 3 after
        // 30 ms says nothing about the path.
        s.handle_ack(t + 30 * MS, 3, &mut c);
        assert_eq!(s.timer.round_trip_bound(), untimed);
        assert_eq!(send(&mut s, t + 30 * MS, &mut c), vec![4, 5, 6, 7]);
        s.handle_ack(t + 31 * MS, 7, &mut c);
        // Block 5 (first sent at 30 ms) answered 1 ms later: srtt 1 ms,
        // rttvar 0.5 ms, bound 1 + 4 * 0.5 = 3 ms.
        assert_eq!(s.timer.round_trip_bound(), 3 * MS);
    }

    #[test]
    fn a_deferred_gap_ack_rewinds_after_a_round_trip_and_keeps_karn() {
        let (t, mut c) = (Instant::now(), Counters::default());
        let mut s = sender();
        assert_eq!(send(&mut s, t, &mut c), vec![1, 2, 3, 4]);
        s.handle_ack(t + MS, 4, &mut c); // srtt 1 ms: bound 3 ms
        assert_eq!(send(&mut s, t + MS, &mut c), vec![5, 6, 7, 8]);
        // 6 lost: gap ACK 5 rewinds to 6; 9 is new (and timed).
        s.handle_ack(t + 2 * MS, 5, &mut c);
        assert_eq!(send(&mut s, t + 2 * MS, &mut c), vec![6, 7, 8, 9]);
        // 7 lost from the resend: its gap ACK comes too soon to act on.
        let early = t + 2 * MS + MS / 10;
        s.handle_ack(early, 6, &mut c);
        assert_eq!(send(&mut s, early, &mut c), vec![10]);
        // A round trip (the 3 ms bound) after the last DATA (10, sent
        // after the rewind), not the 20 ms floor timeout: the sender
        // rewinds to 7 without a timeout.
        let due = s.deadline().unwrap();
        assert_eq!(due, early + 3 * MS);
        assert!(s.handle_timeout(due, &mut c));
        assert_eq!(send(&mut s, due, &mut c), vec![7, 8, 9, 10]);
        assert_eq!(c.timeouts, 0);
        // 9 went out again, so the ACK covering it times nothing (Karn):
        // the bound stays 3 ms instead of growing by the stall.
        s.handle_ack(due + MS / 10, 10, &mut c);
        assert_eq!(s.timer.round_trip_bound(), 3 * MS);
    }

    #[test]
    fn a_deferred_gap_ack_is_dropped_once_the_window_moves_past_it() {
        let (t, mut c) = (Instant::now(), Counters::default());
        let mut s = sender();
        send(&mut s, t, &mut c);
        s.handle_ack(t + MS, 4, &mut c);
        send(&mut s, t + MS, &mut c);
        s.handle_ack(t + 2 * MS, 5, &mut c);
        send(&mut s, t + 2 * MS, &mut c);
        s.handle_ack(t + 2 * MS + MS / 10, 6, &mut c);
        send(&mut s, t + 2 * MS + MS / 10, &mut c);
        // The resent 7 arrived after all: everything is acknowledged.
        s.handle_ack(t + 3 * MS, 10, &mut c);
        assert_eq!(s.deadline(), s.timer.deadline());
        assert_eq!(send(&mut s, t + 3 * MS, &mut c), vec![11, 12, 13, 14]);
        assert!(
            s.deadline().unwrap() >= t + 23 * MS,
            "the 20 ms floor, no early rewind"
        );
    }

    #[test]
    fn a_windows_first_timeout_probes_with_its_first_and_last_blocks_then_resends_it_all() {
        let (t, mut c) = (Instant::now(), Counters::default());
        let mut s = sender();
        assert_eq!(send(&mut s, t, &mut c), vec![1, 2, 3, 4]);
        // ACK 4 lost: the first timeout sends blocks 1 and 4 alone.
        let first = s.deadline().unwrap();
        assert!(s.handle_timeout(first, &mut c));
        assert_eq!(send(&mut s, first, &mut c), vec![1, 4]);
        assert_eq!(c.data_retransmitted, 2);
        // No answer: the second timeout resends the window from its start.
        let second = s.deadline().unwrap();
        assert!(second > first);
        assert!(s.handle_timeout(second, &mut c));
        assert_eq!(send(&mut s, second, &mut c), vec![1, 2, 3, 4]);
        // The receiver had it all: its ACK moves the window on, and the
        // next window's first timeout probes again.
        assert_eq!(s.handle_ack(second + MS, 4, &mut c), AckOutcome::Progress);
        assert_eq!(send(&mut s, second + MS, &mut c), vec![5, 6, 7, 8]);
        let third = s.deadline().unwrap();
        assert!(s.handle_timeout(third, &mut c));
        assert_eq!(send(&mut s, third, &mut c), vec![5, 8]);
    }

    /// Sends the first window, takes ACK 4, sends the second and lets it
    /// time out: the probe (5 and 8) goes out. Returns when.
    fn second_window_probed(s: &mut WindowTx<Mem>, t: Instant, c: &mut Counters) -> Instant {
        send(s, t, c);
        s.handle_ack(t + MS, 4, c);
        assert_eq!(send(s, t + MS, c), vec![5, 6, 7, 8]);
        let due = s.deadline().unwrap();
        assert!(s.handle_timeout(due, c));
        assert_eq!(send(s, due, c), vec![5, 8]);
        due
    }

    #[test]
    fn a_gap_ack_answering_the_probe_rewinds_at_once() {
        let (t, mut c) = (Instant::now(), Counters::default());
        let mut s = sender();
        // 6 lost and the receiver's gap ACK too (or the tail, 7 and 8).
        let due = second_window_probed(&mut s, t, &mut c);
        // The receiver had 5 and said so (ACK 5, lost with the gap it saw
        // at 7); block 5 again draws ACK 5: resend from 6 now, not a round
        // trip later as after a rewind.
        assert_eq!(s.handle_ack(due + MS, 5, &mut c), AckOutcome::Progress);
        assert_eq!(send(&mut s, due + MS, &mut c), vec![6, 7, 8, 9]);
    }

    /// A lock-step sender of 20 blocks with a 2 ms floor.
    fn lock_step() -> WindowTx<Mem> {
        let source = WireSource::new(MemSource::new(vec![7u8; 512 * 20]), Mode::Octet);
        let mut s = WindowTx::new(source, Timer::new(1000 * MS, 2 * MS, 5));
        s.configure(512, 1, 1000 * MS);
        s
    }

    #[test]
    fn a_timeout_resend_the_receiver_answers_twice_raises_the_floor_past_the_stall() {
        let (t, mut c) = (Instant::now(), Counters::default());
        let us = Duration::from_micros;
        let mut s = lock_step();
        assert_eq!(send(&mut s, t, &mut c), vec![1]);
        s.handle_ack(t + us(100), 1, &mut c);
        assert_eq!(send(&mut s, t + us(100), &mut c), vec![2]);
        // The receiver stalls past the 2 ms floor: block 2 goes out again
        // 2 ms after it first did, then ACK 2 answers the original (3 ms
        // after it went out) and a second ACK 2 the resend.
        let due = s.deadline().unwrap();
        assert_eq!(due, t + us(2100));
        assert!(s.handle_timeout(due, &mut c));
        assert_eq!(send(&mut s, due, &mut c), vec![2]);
        assert_eq!(s.handle_ack(due + MS, 2, &mut c), AckOutcome::Progress);
        assert_eq!(send(&mut s, due + MS, &mut c), vec![3]);
        assert_eq!(s.handle_ack(due + MS, 2, &mut c), AckOutcome::Ignored);
        assert_eq!((c.spurious_resends, s.timer.floor()), (1, us(3750)));
        // A third copy of the ACK (the network's) counts no further.
        s.handle_ack(due + MS, 2, &mut c);
        assert_eq!((c.spurious_resends, s.timer.floor()), (1, us(3750)));
        // Block 3 went out before the second ACK 2; block 4 waits the new floor.
        s.handle_ack(due + 2 * MS, 3, &mut c);
        assert_eq!(send(&mut s, due + 2 * MS, &mut c), vec![4]);
        assert_eq!(s.deadline(), Some(due + 2 * MS + us(3750)));
    }

    #[test]
    fn a_resend_that_recovered_a_loss_leaves_the_floor_alone() {
        let (t, mut c) = (Instant::now(), Counters::default());
        let mut s = lock_step();
        assert_eq!(send(&mut s, t, &mut c), vec![1]);
        // Block 1 or its ACK was lost: one ACK answers the resend.
        let due = s.deadline().unwrap();
        assert!(s.handle_timeout(due, &mut c));
        assert_eq!(send(&mut s, due, &mut c), vec![1]);
        s.handle_ack(due + MS / 10, 1, &mut c);
        assert_eq!(send(&mut s, due + MS / 10, &mut c), vec![2]);
        s.handle_ack(due + MS / 5, 2, &mut c);
        // A repeated ACK of a block sent once (a duplicated datagram).
        s.handle_ack(due + MS / 5, 2, &mut c);
        assert_eq!((c.spurious_resends, s.timer.floor()), (0, 2 * MS));
    }

    #[test]
    fn a_windowed_receivers_repeated_ack_after_a_timeout_is_a_gap_not_a_slow_path() {
        let (t, mut c) = (Instant::now(), Counters::default());
        let mut s = sender();
        let due = second_window_probed(&mut s, t, &mut c);
        s.handle_ack(due + MS, 4, &mut c);
        assert_eq!((c.spurious_resends, s.timer.floor()), (0, 20 * MS));
    }
}
