//! The role machine that sends the file: a handshake (the server's OACK, or the
//! client's WRQ) followed by the windowed [`WindowTx`]. [`super::ServerRead`]
//! and [`super::ClientPut`] are this machine with different handshakes.

use super::common::{Event, LocalError, Summary, Transfer, TransferError, Transmit};
use super::handshake::Handshake;
use super::link::{Accept, Link};
use super::timer::Timer;
use super::window_tx::{AckOutcome, WindowTx};
use crate::data::Source;
use crate::options::Negotiated;
use crate::wire::{ErrorCode, Opcode, Packet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(crate) struct SendMachine<S: Source> {
    pub link: Link,
    pub handshake: Handshake,
    pub negotiated: Negotiated,
    pub window: WindowTx<S>,
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
        self.window
            .configure(negotiated.blksize, negotiated.windowsize, rto);
        self.link.events.push(Event::Negotiated(negotiated));
    }

    fn fail(&mut self, error: LocalError) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.link.outbox.owe(error.clone());
        self.link.events.push(Event::Finished(Err(error.into())));
    }

    fn time_out(&mut self) {
        self.finished = true;
        let retries = self.window.timer.max_retries;
        self.link
            .outbox
            .owe(LocalError::new(ErrorCode::UNDEFINED, "timed out"));
        let error = if matches!(self.handshake, Handshake::Done) && self.window.sent_last() {
            TransferError::Unconfirmed { retries }
        } else {
            TransferError::TimedOut { retries }
        };
        self.link.events.push(Event::Finished(Err(error)));
    }

    fn complete(&mut self, now: Instant) {
        self.finished = true;
        let summary = Summary {
            bytes: self.window.bytes_acked(),
            blocks: self.window.blocks_acked(),
            retransmissions: self.link.counters.data_retransmitted,
            duration: now.saturating_duration_since(self.link.started),
            negotiated: self.negotiated,
        };
        self.link.events.push(Event::Finished(Ok(summary)));
    }

    fn handle_packet(&mut self, now: Instant, from: SocketAddr, packet: Packet<'_>) {
        match (packet, &self.handshake) {
            (Packet::Error { code, message }, _) => {
                self.finished = true;
                self.link.peer.lock_in_if_unknown(from);
                let message = message.to_string();
                self.link
                    .events
                    .push(Event::Finished(Err(TransferError::Peer { code, message })));
            }
            (Packet::Ack { block: 0 }, Handshake::Oack { .. }) => {
                self.handshake = Handshake::Done;
                self.window.timer.handshake_answered(now);
                self.window.timer.progress();
            }
            (Packet::Ack { block: 0 }, Handshake::Request { .. }) => {
                self.link.peer.lock_in(from);
                self.handshake = Handshake::Done;
                self.window.timer.handshake_answered(now);
                self.window.timer.progress();
                self.settle(Negotiated::default());
            }
            (Packet::Oack { options }, Handshake::Request { options: asked, .. }) => {
                self.link.peer.lock_in(from);
                let validated = asked.validate_oack(&options);
                self.handshake = Handshake::Done;
                self.window.timer.handshake_answered(now);
                self.window.timer.progress();
                match validated {
                    Ok(n) => self.settle(n),
                    Err(e) => self.fail(LocalError::new(
                        ErrorCode::OPTION_NEGOTIATION,
                        e.to_string(),
                    )),
                }
            }
            (Packet::Ack { block }, Handshake::Done) => {
                let outcome = self.window.handle_ack(now, block, &mut self.link.counters);
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
            self.window.timer.handshake_sent(now, first);
            self.window.timer.arm(now);
            let dest = self.link.peer.dest();
            return Some(self.link.sent(dest, len));
        }
        if !matches!(self.handshake, Handshake::Done) {
            return None;
        }
        match self.window.poll_data(now, buf, &mut self.link.counters) {
            Ok(Some(len)) => {
                let dest = self.link.peer.dest();
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
            Handshake::Done => self.window.deadline(),
            _ => self.window.timer.deadline,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        let counters = &mut self.link.counters;
        if let Handshake::Done = self.handshake {
            if !self.window.handle_timeout(now, counters) {
                self.time_out();
            }
            return;
        }
        if !self.window.timer.expired(now) {
            return;
        }
        counters.timeouts += 1;
        if self.window.timer.retry() {
            counters.control_retransmitted += 1;
            self.handshake.set_owed();
        } else {
            self.time_out();
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.link.events.poll()
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
        self.window.bytes_acked()
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        self.fail(LocalError::new(code, message));
    }
}

/// A timer for a machine that has not negotiated yet: `rto` is the
/// ceiling until options settle, `min_rto` the adaptive floor.
pub(crate) fn initial_timer(rto: Duration, min_rto: Duration, retries: u32) -> Timer {
    Timer::new(rto, min_rto, retries)
}
