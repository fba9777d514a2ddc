//! The role machine that receives the file: the windowed [`WindowRx`] behind an
//! optional client handshake (the RRQ). [`super::ServerWrite`] and
//! [`super::ClientGet`] are this machine; the server's OACK stands in for
//! ACK 0.

use super::common::{Event, LocalError, Summary, Transfer, TransferError, Transmit};
use super::handshake::Handshake;
use super::link::{Accept, Link};
use super::window_rx::{DataOutcome, WindowRx};
use crate::data::Sink;
use crate::options::Negotiated;
use crate::wire::{emit_ack, ErrorCode, Opcode, Packet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(crate) struct RecvMachine<K: Sink> {
    pub link: Link,
    /// `Request` for a client until the server answers; otherwise `Done`.
    pub handshake: Handshake,
    pub negotiated: Negotiated,
    pub window: WindowRx<K>,
    /// A server that accepted options answers "ACK 0" with its OACK.
    pub oack_is_ack0: bool,
    pub default_rto: Duration,
    pub finished: bool,
    /// After success: stay until then to re-acknowledge a repeated last block.
    pub dally_until: Option<Instant>,
    /// The last block is in and its ACK owed; the sink commits at this
    /// moment, once the ACK is out (see [`WindowRx::commit_after_ack`]).
    /// Void once `finished`: a failure ends the transfer without it.
    pub commit_at: Option<Instant>,
    pub closed: bool,
}

impl<K: Sink> RecvMachine<K> {
    pub fn settle(&mut self, negotiated: Negotiated) {
        self.negotiated = negotiated;
        self.window
            .configure(negotiated.blksize, negotiated.windowsize);
        self.window.timer.set_ceiling(self.rto());
        self.link.events.push(Event::Negotiated(negotiated));
    }

    fn rto(&self) -> Duration {
        self.negotiated
            .timeout
            .map_or(self.default_rto, |s| Duration::from_secs(s.into()))
    }

    fn fail(&mut self, error: LocalError) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.window.abort_sink();
        self.link.outbox.owe(error.clone());
        self.link.events.push(Event::Finished(Err(error.into())));
    }

    fn time_out(&mut self) {
        self.finished = true;
        self.window.abort_sink();
        let retries = self.window.timer.max_retries;
        self.link
            .outbox
            .owe(LocalError::new(ErrorCode::UNDEFINED, "timed out"));
        self.link
            .events
            .push(Event::Finished(Err(TransferError::TimedOut { retries })));
    }

    fn complete(&mut self, now: Instant) {
        if self.window.commit_owed() {
            // Not finished yet: an abort or a peer's ERROR still discards.
            self.commit_at = Some(now);
            return;
        }
        self.report_success(now);
    }

    fn report_success(&mut self, now: Instant) {
        self.finished = true;
        // Long enough for the sender to time out and resend the last block
        // at least once after losing our final ACK.
        self.dally_until = Some(now + 2 * self.rto());
        let summary = Summary {
            bytes: self.window.bytes(),
            blocks: self.window.blocks(),
            retransmissions: self.link.counters.acks_retransmitted,
            duration: now.saturating_duration_since(self.link.started),
            negotiated: self.negotiated,
        };
        self.link.events.push(Event::Finished(Ok(summary)));
    }

    fn handle_packet(&mut self, now: Instant, from: SocketAddr, packet: Packet<'_>) {
        // A client that already gave up (timed out or aborted) takes nothing
        // from a late answer: no Negotiated after Finished, no new peer.
        let waiting = !self.finished && matches!(self.handshake, Handshake::Request { .. });
        match packet {
            Packet::Error { code, message } if !self.finished => {
                self.finished = true;
                self.link.peer.lock_in_if_unknown(from);
                self.window.abort_sink();
                let message = message.to_string();
                self.link
                    .events
                    .push(Event::Finished(Err(TransferError::Peer { code, message })));
            }
            Packet::Oack { options } if waiting => {
                self.link.peer.lock_in(from);
                let validated = match &self.handshake {
                    Handshake::Request { options: asked, .. } => asked.validate_oack(&options),
                    _ => return,
                };
                self.handshake = Handshake::Done;
                self.window.timer.handshake_answered(now);
                self.window.timer.progress();
                match validated {
                    Ok(n) => {
                        self.settle(n);
                        self.window.owe_ack();
                    }
                    Err(e) => self.fail(LocalError::new(
                        ErrorCode::OPTION_NEGOTIATION,
                        e.to_string(),
                    )),
                }
            }
            Packet::Data { block, data } => {
                if waiting {
                    // The server ignored our options: RFC 1350 defaults.
                    self.link.peer.lock_in(from);
                    self.handshake = Handshake::Done;
                    self.window.timer.handshake_answered(now);
                    self.settle(Negotiated::default());
                }
                if self.finished && self.dally_until.is_none() {
                    self.link.counters.ignored += 1;
                    return;
                }
                let counters = &mut self.link.counters;
                match self.window.handle_data(now, block, data, counters) {
                    Ok(DataOutcome::Complete) => self.complete(now),
                    Ok(DataOutcome::Continue) => {}
                    Err(failure) => self.fail(failure),
                }
            }
            _ => self.link.counters.ignored += 1,
        }
    }

    fn poll_ack(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let index = self.window.take_ack(now, &mut self.link.counters)?;
        let len = if index == 0 && self.oack_is_ack0 {
            self.negotiated.emit_oack(buf).ok()?
        } else {
            self.link.counters.acks_sent += 1;
            emit_ack(buf, WindowRx::<K>::wire_ack(index)).ok()?
        };
        let dest = self.link.peer.dest();
        Some(self.link.sent(dest, len))
    }
}

impl<K: Sink> Transfer for RecvMachine<K> {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        // Closed means nothing more is sent: not even ERROR 5 to a stranger.
        if self.closed || self.is_closed() {
            return;
        }
        if let Accept::Stranger = self.link.accept(now, from, datagram) {
            return;
        }
        match Packet::parse(datagram) {
            Ok(packet) => self.handle_packet(now, from, packet),
            Err(_) => self.link.counters.ignored += 1,
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(t) = self.link.poll_control(buf) {
            return Some(t);
        }
        if self.closed || (self.finished && self.dally_until.is_none()) {
            return None;
        }
        if let Some(len) = self.handshake.poll(buf, &self.negotiated, Opcode::Rrq) {
            let first = self.link.counters.control_retransmitted == 0;
            self.window.timer.handshake_sent(now, first);
            self.window.timer.arm(now);
            return Some(self.link.sent(self.link.peer.dest(), len));
        }
        self.poll_ack(now, buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        if !self.finished && self.commit_at.is_some() {
            return self.commit_at;
        }
        match self.dally_until {
            Some(t) => Some(t),
            None if self.finished => None,
            None => self.window.timer.deadline,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if !self.finished && self.commit_at.is_some_and(|t| now >= t) {
            self.commit_at = None;
            // A failure still gets its ERROR, though the sender may have
            // closed on our final ACK.
            match self.window.commit() {
                Ok(()) => self.report_success(now),
                Err(failure) => self.fail(failure),
            }
            return;
        }
        if let Some(until) = self.dally_until {
            self.closed |= now >= until;
            return;
        }
        if self.finished || !self.window.timer.expired(now) {
            return;
        }
        if let Handshake::Done = self.handshake {
            if !self.window.handle_timeout(now, &mut self.link.counters) {
                self.time_out();
            }
            return;
        }
        self.link.counters.timeouts += 1;
        if self.window.timer.retry() {
            self.link.counters.control_retransmitted += 1;
            self.handshake.set_owed();
        } else {
            self.time_out();
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.link.events.poll()
    }

    fn is_closed(&self) -> bool {
        let done = self.closed || (self.finished && self.dally_until.is_none());
        done && self.link.idle()
    }

    fn counters(&self) -> super::Counters {
        self.link.counters
    }

    fn max_datagram(&self) -> usize {
        let awaiting = matches!(self.handshake, Handshake::Request { .. });
        super::common::max_datagram(awaiting, &self.negotiated)
    }

    fn bytes_transferred(&self) -> u64 {
        self.window.bytes()
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        self.fail(LocalError::new(code, message));
    }
}
