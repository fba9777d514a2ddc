//! The sending side of a transfer: a handshake (the server's OACK, or the
//! client's WRQ) followed by the windowed [`Sender`]. [`super::ServerRead`]
//! and [`super::ClientPut`] are this machine with different handshakes.

use super::common::{Accept, Event, Link, Summary, Timer, Transfer, TransferError, Transmit};
use super::sender::{AckOutcome, Failure, Sender};
use crate::data::Source;
use crate::options::{Negotiated, OptionRequest};
use crate::wire::{ErrorCode, Mode, Opcode, Packet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(crate) enum Handshake {
    /// Straight to DATA (a server answering a request without options).
    Done,
    /// Server: the OACK is (re)sent until ACK 0 arrives.
    Oack { owed: bool },
    /// Client: the request is (re)sent until the server answers.
    Request {
        owed: bool,
        filename: String,
        mode: Mode,
        options: OptionRequest,
    },
}

impl Handshake {
    pub fn set_owed(&mut self) {
        if let Handshake::Oack { owed } | Handshake::Request { owed, .. } = self {
            *owed = true;
        }
    }

    /// Emits the OACK or request if one is owed.
    pub fn poll(
        &mut self,
        buf: &mut [u8],
        negotiated: &Negotiated,
        opcode: Opcode,
    ) -> Option<usize> {
        match self {
            Handshake::Oack { owed: owed @ true } => {
                *owed = false;
                negotiated.emit_oack(buf).ok()
            }
            Handshake::Request {
                owed: owed @ true,
                filename,
                mode,
                options,
            } => {
                *owed = false;
                options.emit_request(buf, opcode, filename, *mode).ok()
            }
            _ => None,
        }
    }
}

pub(crate) struct SendMachine<S: Source> {
    pub link: Link,
    pub handshake: Handshake,
    pub negotiated: Negotiated,
    pub sender: Sender<S>,
    /// The configured timeout, used when no `timeout` option is negotiated.
    pub default_rto: Duration,
    pub finished: bool,
}

impl<S: Source> SendMachine<S> {
    /// Settles the options: sizes the window and timer, tells the app.
    pub fn settle(&mut self, negotiated: Negotiated) {
        self.negotiated = negotiated;
        let rto = negotiated
            .timeout
            .map_or(self.default_rto, |s| Duration::from_secs(s.into()));
        self.sender
            .configure(negotiated.blksize, negotiated.windowsize, rto);
        self.link.push_event(Event::Negotiated(negotiated));
    }

    fn fail(&mut self, (code, message): Failure) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.link.fail(code, message.clone());
        self.link
            .push_event(Event::Finished(Err(TransferError::Local { code, message })));
    }

    fn time_out(&mut self) {
        self.finished = true;
        let retries = self.sender.timer.max_retries;
        self.link.fail(ErrorCode::UNDEFINED, "timed out");
        let error = if matches!(self.handshake, Handshake::Done) && self.sender.sent_last() {
            TransferError::Unconfirmed { retries }
        } else {
            TransferError::TimedOut { retries }
        };
        self.link.push_event(Event::Finished(Err(error)));
    }

    fn complete(&mut self, now: Instant) {
        self.finished = true;
        let summary = Summary {
            bytes: self.sender.bytes_acked(),
            blocks: self.sender.blocks_acked(),
            retransmissions: self.link.counters.data_retransmitted,
            duration: now.saturating_duration_since(self.link.started),
            negotiated: self.negotiated,
        };
        self.link.push_event(Event::Finished(Ok(summary)));
    }

    fn handle_packet(&mut self, now: Instant, from: SocketAddr, packet: Packet<'_>) {
        match (packet, &self.handshake) {
            (Packet::Error { code, message }, _) => {
                self.finished = true;
                self.link.peer.get_or_insert(from);
                let message = message.to_string();
                self.link
                    .push_event(Event::Finished(Err(TransferError::Peer { code, message })));
            }
            (Packet::Ack { block: 0 }, Handshake::Oack { .. }) => {
                self.handshake = Handshake::Done;
                self.sender.timer.handshake_answered(now);
                self.sender.timer.progress();
            }
            (Packet::Ack { block: 0 }, Handshake::Request { .. }) => {
                self.link.peer = Some(from);
                self.handshake = Handshake::Done;
                self.sender.timer.handshake_answered(now);
                self.sender.timer.progress();
                self.settle(Negotiated::default());
            }
            (Packet::Oack { options }, Handshake::Request { options: asked, .. }) => {
                self.link.peer = Some(from);
                let validated = asked.validate_oack(&options);
                self.handshake = Handshake::Done;
                self.sender.timer.handshake_answered(now);
                self.sender.timer.progress();
                match validated {
                    Ok(n) => self.settle(n),
                    Err(e) => self.fail((ErrorCode::OPTION_NEGOTIATION, e.to_string())),
                }
            }
            (Packet::Ack { block }, Handshake::Done) => {
                let outcome = self.sender.handle_ack(now, block, &mut self.link.counters);
                if outcome == AckOutcome::Complete {
                    self.complete(now);
                }
            }
            _ => self.link.counters.ignored += 1,
        }
    }
}

impl<S: Source> Transfer for SendMachine<S> {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        // Closed means nothing more is sent: not even ERROR 5 to a stranger.
        if self.is_closed() {
            return;
        }
        if let Accept::Stranger = self.link.accept(now, from, datagram) {
            return;
        }
        match Packet::parse(datagram) {
            Ok(packet) if !self.finished => self.handle_packet(now, from, packet),
            _ => self.link.counters.ignored += 1,
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(t) = self.link.poll_control(buf) {
            return Some(t);
        }
        if self.finished {
            return None;
        }
        if let Some(len) = self.handshake.poll(buf, &self.negotiated, Opcode::Wrq) {
            let first = self.link.counters.control_retransmitted == 0;
            self.sender.timer.handshake_sent(now, first);
            self.sender.timer.arm(now);
            let dest = self.link.peer.unwrap_or(self.link.server);
            return Some(self.link.sent(dest, len));
        }
        if !matches!(self.handshake, Handshake::Done) {
            return None;
        }
        match self.sender.poll_data(now, buf, &mut self.link.counters) {
            Ok(Some(len)) => {
                let dest = self.link.peer.unwrap_or(self.link.server);
                Some(self.link.sent(dest, len))
            }
            Ok(None) => None,
            Err(failure) => {
                self.fail(failure);
                self.link.poll_control(buf)
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        match self.handshake {
            Handshake::Done => self.sender.deadline(),
            _ => self.sender.timer.deadline,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        let counters = &mut self.link.counters;
        if let Handshake::Done = self.handshake {
            if !self.sender.handle_timeout(now, counters) {
                self.time_out();
            }
            return;
        }
        if !self.sender.timer.expired(now) {
            return;
        }
        counters.timeouts += 1;
        if self.sender.timer.retry() {
            counters.control_retransmitted += 1;
            self.handshake.set_owed();
        } else {
            self.time_out();
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.link.poll_event()
    }

    fn is_closed(&self) -> bool {
        self.finished && self.link.idle()
    }

    fn counters(&self) -> super::Counters {
        self.link.counters
    }

    fn max_datagram(&self) -> usize {
        let awaiting = matches!(self.handshake, Handshake::Request { .. });
        super::common::max_datagram(awaiting, &self.negotiated)
    }

    fn bytes_transferred(&self) -> u64 {
        self.sender.bytes_acked()
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        self.fail((code, message.to_string()));
    }
}

/// A timer for a machine that has not negotiated yet: `rto` is the
/// ceiling until options settle, `min_rto` the adaptive floor.
pub(crate) fn initial_timer(rto: Duration, min_rto: Duration, retries: u32) -> Timer {
    Timer::new(rto, min_rto, retries)
}
