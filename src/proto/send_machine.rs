//! The role machine that sends the file: a handshake (the server's OACK, or
//! the client's WRQ) followed by the windowed [`WindowTx`].
//! [`super::ServerRead`] and [`super::ClientPut`] are this machine with
//! different handshakes.
//!
//! Its [`SendPhase`] says where it is; the window's timer, which only the
//! window arms, runs in the first two phases, and a finished machine waits
//! for nothing.

use super::common::{Event, LocalError, Summary, Transfer, TransferError, Transmit};
use super::handshake::Handshake;
use super::link::{Accept, Link};
use super::timer::{Expiry, Timer};
use super::window_tx::{AckOutcome, WindowTx};
use crate::data::Source;
use crate::options::Negotiated;
use crate::wire::{ErrorCode, Opcode, Packet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where a [`SendMachine`] is. Its phases run in this order, each one
/// skippable but the last.
pub(crate) enum SendPhase {
    /// The OACK or the request is (re)sent until the peer answers.
    Handshake(Handshake),
    /// DATA goes out through the window. Once the window has sent the last
    /// block ([`WindowTx::sent_last`]) only the final ACK is missing.
    Transferring,
    /// [`Event::Finished`] was reported: nothing more is accepted or sent
    /// but an ERROR still in the outbox (or an ERROR 5 owed a stranger).
    /// `unanswered_request`: it ended while a client's request waited for
    /// the server's answer, so any datagram size may still arrive.
    Finished { unanswered_request: bool },
}

pub(crate) struct SendMachine<S: Source> {
    pub link: Link,
    pub phase: SendPhase,
    pub negotiated: Negotiated,
    pub window: WindowTx<S>,
    /// The configured timeout, used when no `timeout` option is negotiated.
    pub default_rto: Duration,
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

    fn is_finished(&self) -> bool {
        matches!(self.phase, SendPhase::Finished { .. })
    }

    /// Whether a client's request waits for the server's answer.
    fn awaits_answer(&self) -> bool {
        matches!(
            self.phase,
            SendPhase::Handshake(Handshake::Request(_))
                | SendPhase::Finished {
                    unanswered_request: true
                }
        )
    }

    /// Enters [`SendPhase::Finished`]; the caller reports why.
    fn finish(&mut self) {
        let unanswered_request = self.awaits_answer();
        self.phase = SendPhase::Finished { unanswered_request };
    }

    fn fail(&mut self, error: LocalError) {
        if self.is_finished() {
            return;
        }
        self.finish();
        self.link.outbox.owe(error.clone());
        self.link.events.push(Event::Finished(Err(error.into())));
    }

    fn time_out(&mut self) {
        let retries = self.window.max_retries();
        self.link
            .outbox
            .owe(LocalError::new(ErrorCode::UNDEFINED, "timed out"));
        let error = if matches!(self.phase, SendPhase::Transferring) && self.window.sent_last() {
            TransferError::Unconfirmed { retries }
        } else {
            TransferError::TimedOut { retries }
        };
        self.finish();
        self.link.events.push(Event::Finished(Err(error)));
    }

    fn complete(&mut self, now: Instant) {
        self.finish();
        let summary = Summary {
            bytes: self.window.bytes_acked(),
            blocks: self.window.blocks_acked(),
            retransmissions: self.link.counters.data_retransmitted,
            duration: now.saturating_duration_since(self.link.started),
            negotiated: self.negotiated,
        };
        self.link.events.push(Event::Finished(Ok(summary)));
    }

    /// A packet from the peer while the transfer is on.
    fn handle_packet(&mut self, now: Instant, from: SocketAddr, packet: Packet<'_>) {
        match (packet, &self.phase) {
            (Packet::Error { code, message }, _) => {
                self.link.peer.lock_in_if_unknown(from);
                self.finish();
                let message = message.to_string();
                self.link
                    .events
                    .push(Event::Finished(Err(TransferError::Peer { code, message })));
            }
            (Packet::Ack { block: 0 }, SendPhase::Handshake(Handshake::Oack { .. })) => {
                self.phase = SendPhase::Transferring;
                self.window.handshake_answered(now);
            }
            (Packet::Ack { block: 0 }, SendPhase::Handshake(Handshake::Request(_))) => {
                self.link.peer.lock_in(from);
                self.phase = SendPhase::Transferring;
                self.window.handshake_answered(now);
                self.settle(Negotiated::default());
            }
            (Packet::Oack { options }, SendPhase::Handshake(Handshake::Request(request))) => {
                self.link.peer.lock_in(from);
                let validated = request.options.validate_oack(&options);
                self.phase = SendPhase::Transferring;
                self.window.handshake_answered(now);
                match validated {
                    Ok(n) => self.settle(n),
                    Err(e) => self.fail(LocalError::new(
                        ErrorCode::OPTION_NEGOTIATION,
                        e.to_string(),
                    )),
                }
            }
            (Packet::Ack { block }, SendPhase::Transferring) => {
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
            Ok(packet) if !self.is_finished() => self.handle_packet(now, from, packet),
            _ => self.link.counters.ignored += 1,
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(t) = self.link.poll_control(buf) {
            return Some(t);
        }
        match &mut self.phase {
            SendPhase::Finished { .. } => None,
            SendPhase::Handshake(handshake) => {
                let len = handshake.poll(buf, &self.negotiated, Opcode::Wrq)?;
                let first = self.link.counters.control_retransmitted == 0;
                self.window.handshake_sent(now, first);
                Some(self.link.sent(self.link.peer.dest(), len))
            }
            SendPhase::Transferring => {
                match self.window.poll_data(now, buf, &mut self.link.counters) {
                    Ok(Some(len)) => Some(self.link.sent(self.link.peer.dest(), len)),
                    Ok(None) => None,
                    Err(error) => {
                        self.fail(error);
                        self.link.poll_control(buf)
                    }
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            // The window's deadline is its timer's until an ACK arrives.
            SendPhase::Handshake(_) | SendPhase::Transferring => self.window.deadline(),
            SendPhase::Finished { .. } => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let counters = &mut self.link.counters;
        match &mut self.phase {
            SendPhase::Handshake(handshake) => match self.window.handshake_timeout(now, counters) {
                Expiry::Waiting => {}
                Expiry::Resend => handshake.set_owed(),
                Expiry::GiveUp => self.time_out(),
            },
            SendPhase::Transferring => {
                if !self.window.handle_timeout(now, counters) {
                    self.time_out();
                }
            }
            SendPhase::Finished { .. } => {}
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.link.events.poll()
    }

    fn is_closed(&self) -> bool {
        self.is_finished() && self.link.idle()
    }

    fn counters(&self) -> super::Counters {
        self.link.counters
    }

    fn max_datagram(&self) -> usize {
        super::common::max_datagram(self.awaits_answer(), &self.negotiated)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::MemSource;
    use crate::proto::{ClientConfig, ClientPut};
    use crate::wire::MAX_DATAGRAM;

    type Put = SendMachine<MemSource<Vec<u8>>>;

    fn put(now: Instant) -> Put {
        let config = ClientConfig::default();
        let server = "10.0.0.1:69".parse().unwrap();
        let put = ClientPut::new(now, server, "f", MemSource::new(vec![1, 2]), &config);
        put.unwrap().0
    }

    #[test]
    fn an_upload_walks_handshake_transfer_finished() {
        let now = Instant::now();
        let peer = "10.0.0.1:40000".parse().unwrap();
        let mut m = put(now);
        let mut buf = [0u8; MAX_DATAGRAM];
        assert!(matches!(
            m.phase,
            SendPhase::Handshake(Handshake::Request(_))
        ));
        assert!(m.poll_transmit(now, &mut buf).is_some(), "the WRQ");
        m.handle_datagram(now, peer, b"\x00\x04\x00\x00");
        assert!(matches!(m.phase, SendPhase::Transferring));
        assert!(m.poll_transmit(now, &mut buf).is_some(), "DATA 1");
        m.handle_datagram(now, peer, b"\x00\x04\x00\x01");
        assert!(matches!(
            m.phase,
            SendPhase::Finished {
                unanswered_request: false
            }
        ));
        assert!(m.is_closed());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn a_client_that_times_out_unanswered_still_takes_any_datagram() {
        let mut now = Instant::now();
        let mut m = put(now);
        let mut buf = [0u8; MAX_DATAGRAM];
        while m.poll_transmit(now, &mut buf).is_some() {}
        while let Some(deadline) = m.poll_timeout() {
            now = now.max(deadline);
            m.handle_timeout(now);
            while m.poll_transmit(now, &mut buf).is_some() {}
        }
        assert!(matches!(
            m.phase,
            SendPhase::Finished {
                unanswered_request: true
            }
        ));
        assert!(matches!(
            m.poll_event(),
            Some(Event::Finished(Err(TransferError::TimedOut { .. })))
        ));
        assert_eq!(m.max_datagram(), MAX_DATAGRAM);
    }
}
