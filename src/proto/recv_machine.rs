//! The role machine that receives the file: the windowed [`WindowRx`]
//! behind an optional client handshake (the RRQ). [`super::ServerWrite`]
//! and [`super::ClientGet`] are this machine; the server's OACK stands in
//! for ACK 0.
//!
//! Its [`RecvPhase`] says where it is and which deadline it waits for: the
//! window's timer (which only the window arms) while the request is
//! unanswered or blocks come in, the moment to commit, the end of the
//! dally, or none.

use super::common::{Event, LocalError, Summary, Transfer, TransferError, Transmit};
use super::handshake::ClientRequest;
use super::link::{Accept, Link};
use super::timer::Expiry;
use super::window_rx::{DataOutcome, WindowRx};
use crate::data::Sink;
use crate::options::Negotiated;
use crate::wire::{emit_ack, ErrorCode, Opcode, Packet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where a [`RecvMachine`] is. Its phases run in this order, each one
/// skippable; a failure goes from any of the first three to `Failed`.
pub(crate) enum RecvPhase {
    /// Client: the RRQ is (re)sent until the server answers.
    Requesting(ClientRequest),
    /// Blocks come in and ACKs go out.
    Transferring,
    /// The last block is in and its ACK owed; the sink commits at `at`,
    /// once the ACK is out (see [`WindowRx::committing_after_ack`]). An
    /// abort or a peer's ERROR still discards the file.
    Committing { at: Instant },
    /// Success was reported; a repeated last block is re-acknowledged until
    /// `until`, so a lost final ACK does not fail the sender.
    Dallying { until: Instant },
    /// A failure was reported (ours, the peer's ERROR, or a timeout):
    /// nothing more is accepted or sent but an ERROR still in the outbox.
    /// `unanswered_request`: it ended while the client's request waited for
    /// the server's answer, so any datagram size may still arrive.
    /// `echo`: a failure on a block the peer sent (a write, or an upload's
    /// commit) answers the peer's resends with the ERROR again until then:
    /// the peer waits for an ACK, and with the one ERROR lost it would time
    /// out not knowing why.
    Failed {
        unanswered_request: bool,
        echo: Option<(LocalError, Instant)>,
    },
    /// The dally is over.
    Closed,
}

/// How ACK 0 goes out: fixed when the machine is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack0 {
    /// As an ACK (a client, or a server that accepted no options).
    Ack,
    /// As the OACK: a server that accepted options answers the WRQ with it.
    Oack,
}

pub(crate) struct RecvMachine<K: Sink> {
    pub link: Link,
    pub phase: RecvPhase,
    pub negotiated: Negotiated,
    pub window: WindowRx<K>,
    pub ack0: Ack0,
    /// The configured timeout, used when no `timeout` option is negotiated.
    pub default_rto: Duration,
    /// The shortest dally after the final ACK (a server taking an upload
    /// from a client that did not say its timer, see
    /// [`super::server::CLASSIC_CLIENT_TIMER`]); zero for a client.
    pub dally_floor: Duration,
}

impl<K: Sink> RecvMachine<K> {
    /// Settles the options: sizes the window and timer, tells the app.
    pub fn settle(&mut self, negotiated: Negotiated) {
        self.negotiated = negotiated;
        let rto = self.rto();
        self.window
            .configure(negotiated.blksize, negotiated.windowsize, rto);
        self.link.events.push(Event::Negotiated(negotiated));
    }

    fn rto(&self) -> Duration {
        self.negotiated
            .timeout
            .map_or(self.default_rto, |s| Duration::from_secs(s.into()))
    }

    /// Whether the transfer is still on: no outcome reported yet.
    fn is_live(&self) -> bool {
        matches!(
            self.phase,
            RecvPhase::Requesting(_) | RecvPhase::Transferring | RecvPhase::Committing { .. }
        )
    }

    /// Whether the client's request waits for the server's answer.
    fn awaits_answer(&self) -> bool {
        matches!(
            self.phase,
            RecvPhase::Requesting(_)
                | RecvPhase::Failed {
                    unanswered_request: true,
                    ..
                }
        )
    }

    /// Enters [`RecvPhase::Failed`] and discards the sink; the caller
    /// reports why.
    fn end_in_failure(&mut self) {
        let unanswered_request = self.awaits_answer();
        self.phase = RecvPhase::Failed {
            unanswered_request,
            echo: None,
        };
        self.window.abort_sink();
    }

    fn fail(&mut self, error: LocalError) {
        if !self.is_live() {
            return;
        }
        self.end_in_failure();
        self.link.outbox.owe(error.clone());
        self.link.events.push(Event::Finished(Err(error.into())));
    }

    /// Fails on a block the peer sent (a write or an upload's commit that
    /// failed): the peer waits for that block's ACK and resends it if our
    /// ERROR is lost, so each resend gets the ERROR again, for as long as
    /// a dally lasts.
    fn fail_echoing(&mut self, now: Instant, error: LocalError) {
        let until = now + 2 * self.rto();
        self.fail(error.clone());
        if let RecvPhase::Failed { echo, .. } = &mut self.phase {
            *echo = Some((error, until));
        }
    }

    fn time_out(&mut self) {
        self.end_in_failure();
        let retries = self.window.max_retries();
        self.link
            .outbox
            .owe(LocalError::new(ErrorCode::UNDEFINED, "timed out"));
        self.link
            .events
            .push(Event::Finished(Err(TransferError::TimedOut { retries })));
    }

    fn complete(&mut self, now: Instant) {
        if self.window.commit_owed() {
            self.phase = RecvPhase::Committing { at: now };
            return;
        }
        self.report_success(now);
    }

    fn report_success(&mut self, now: Instant) {
        // Long enough for the sender to time out and resend the last block
        // at least once after losing our final ACK.
        let until = now + (2 * self.rto()).max(self.dally_floor);
        self.phase = RecvPhase::Dallying { until };
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
        match packet {
            Packet::Error { code, message } if self.is_live() => {
                self.link.peer.lock_in_if_unknown(from);
                self.end_in_failure();
                let message = message.to_string();
                self.link
                    .events
                    .push(Event::Finished(Err(TransferError::Peer { code, message })));
            }
            Packet::Oack { options } => {
                let RecvPhase::Requesting(request) = &self.phase else {
                    // The OACK again before any DATA: our ACK 0 was lost
                    // (the server resends the OACK only on its timeout).
                    // Answered at once, as a repeated block is; waiting for
                    // our own timer, backed off to 8 s, let a few losses
                    // outlast the server's retries.
                    if matches!(self.phase, RecvPhase::Transferring) && self.window.blocks() == 0 {
                        self.window.owe_ack();
                    } else {
                        self.link.counters.ignored += 1;
                    }
                    return;
                };
                self.link.peer.lock_in(from);
                let validated = request.options.validate_oack(&options);
                self.phase = RecvPhase::Transferring;
                self.window.answered_by_oack(now);
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
                match self.phase {
                    RecvPhase::Requesting(_) => {
                        // The server ignored our options: RFC 1350 defaults.
                        self.link.peer.lock_in(from);
                        self.phase = RecvPhase::Transferring;
                        self.window.answered_by_data(now);
                        self.settle(Negotiated::default());
                    }
                    RecvPhase::Failed {
                        echo: Some((ref error, until)),
                        ..
                    } if now < until && !self.window.acknowledged(block) => {
                        self.link.outbox.repeat(error.clone());
                        return;
                    }
                    RecvPhase::Failed { .. } | RecvPhase::Closed => {
                        self.link.counters.ignored += 1;
                        return;
                    }
                    // A repeated block while committing or dallying is
                    // re-acknowledged, like any other.
                    RecvPhase::Transferring
                    | RecvPhase::Committing { .. }
                    | RecvPhase::Dallying { .. } => {}
                }
                let counters = &mut self.link.counters;
                match self.window.handle_data(now, block, data, counters) {
                    Ok(DataOutcome::Complete) => self.complete(now),
                    Ok(DataOutcome::Continue) => {}
                    Err(error) => self.fail_echoing(now, error),
                }
            }
            _ => self.link.counters.ignored += 1,
        }
    }

    fn poll_ack(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let index = self.window.take_ack(now, &mut self.link.counters)?;
        let len = if index == 0 && self.ack0 == Ack0::Oack {
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
        if matches!(self.phase, RecvPhase::Closed) || self.is_closed() {
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
        match &mut self.phase {
            RecvPhase::Failed { .. } | RecvPhase::Closed => None,
            RecvPhase::Requesting(request) => match request.poll(buf, Opcode::Rrq) {
                Some(len) => {
                    let first = self.link.counters.control_retransmitted == 0;
                    self.window.handshake_sent(now, first);
                    Some(self.link.sent(self.link.peer.dest(), len))
                }
                None => self.poll_ack(now, buf),
            },
            RecvPhase::Transferring | RecvPhase::Committing { .. } | RecvPhase::Dallying { .. } => {
                self.poll_ack(now, buf)
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            RecvPhase::Requesting(_) | RecvPhase::Transferring => self.window.deadline(),
            RecvPhase::Committing { at } => Some(at),
            RecvPhase::Dallying { until } => Some(until),
            RecvPhase::Failed { ref echo, .. } => echo.as_ref().map(|e| e.1),
            RecvPhase::Closed => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let counters = &mut self.link.counters;
        match &mut self.phase {
            RecvPhase::Requesting(request) => match self.window.handshake_timeout(now, counters) {
                Expiry::Waiting => {}
                Expiry::Resend => request.set_owed(),
                Expiry::GiveUp => self.time_out(),
            },
            RecvPhase::Transferring => {
                if !self.window.handle_timeout(now, counters) {
                    self.time_out();
                }
            }
            RecvPhase::Committing { at } if now >= *at => {
                // A failure still gets its ERROR, though the sender may have
                // closed on our final ACK.
                match self.window.commit() {
                    Ok(()) => self.report_success(now),
                    Err(error) => self.fail(error),
                }
            }
            RecvPhase::Dallying { until } if now >= *until => self.phase = RecvPhase::Closed,
            RecvPhase::Failed { echo, .. } if echo.as_ref().is_some_and(|e| now >= e.1) => {
                *echo = None;
            }
            // Not yet. (The window's timer, armed by the last block, runs
            // out after `at`: there is nothing else to do while committing.)
            RecvPhase::Committing { .. }
            | RecvPhase::Dallying { .. }
            | RecvPhase::Failed { .. }
            | RecvPhase::Closed => {}
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.link.events.poll()
    }

    fn is_closed(&self) -> bool {
        let done = matches!(
            self.phase,
            RecvPhase::Failed { echo: None, .. } | RecvPhase::Closed
        );
        done && self.link.idle()
    }

    fn counters(&self) -> super::Counters {
        self.link.counters
    }

    fn max_datagram(&self) -> usize {
        super::common::max_datagram(self.awaits_answer(), &self.negotiated)
    }

    fn bytes_transferred(&self) -> u64 {
        self.window.bytes()
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        self.fail(LocalError::new(code, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::MemSink;
    use crate::proto::{ClientConfig, ClientGet};
    use crate::wire::MAX_DATAGRAM;

    const SERVER: &str = "10.0.0.1:69";
    const PEER: &str = "10.0.0.1:40000";

    fn get(now: Instant) -> RecvMachine<MemSink> {
        let config = ClientConfig::default();
        let get = ClientGet::new(now, SERVER.parse().unwrap(), "f", MemSink::new(), &config);
        get.unwrap().0
    }

    #[test]
    fn a_download_walks_request_transfer_commit_dally_closed() {
        let now = Instant::now();
        let mut m = get(now);
        let mut buf = [0u8; MAX_DATAGRAM];
        assert!(matches!(m.phase, RecvPhase::Requesting(_)));
        assert!(m.poll_transmit(now, &mut buf).is_some(), "the RRQ");
        assert_eq!(m.poll_timeout(), m.window.deadline());
        m.handle_datagram(now, PEER.parse().unwrap(), b"\x00\x03\x00\x01hi");
        assert!(matches!(m.phase, RecvPhase::Committing { at } if at == now));
        assert_eq!(m.poll_timeout(), Some(now));
        assert!(m.poll_transmit(now, &mut buf).is_some(), "the final ACK");
        m.handle_timeout(now);
        let RecvPhase::Dallying { until } = m.phase else {
            panic!("not dallying");
        };
        assert_eq!(m.poll_timeout(), Some(until));
        assert!(matches!(m.poll_event(), Some(Event::Negotiated(_))));
        assert!(matches!(m.poll_event(), Some(Event::Finished(Ok(_)))));
        m.handle_timeout(until);
        assert!(matches!(m.phase, RecvPhase::Closed));
        assert!(m.is_closed());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn an_abort_while_committing_discards_and_fails() {
        let now = Instant::now();
        let mut m = get(now);
        let mut buf = [0u8; MAX_DATAGRAM];
        m.poll_transmit(now, &mut buf);
        m.handle_datagram(now, PEER.parse().unwrap(), b"\x00\x03\x00\x01hi");
        m.abort(ErrorCode::UNDEFINED, "stop");
        assert!(matches!(
            m.phase,
            RecvPhase::Failed {
                unanswered_request: false,
                echo: None
            }
        ));
        assert_eq!(m.poll_timeout(), None, "no commit after a failure");
        assert!(!m.is_closed(), "the ERROR is still owed");
        assert!(m.poll_transmit(now, &mut buf).is_some());
        assert!(m.is_closed());
    }

    #[test]
    fn a_client_that_ends_unanswered_still_takes_any_datagram() {
        let now = Instant::now();
        let mut m = get(now);
        m.abort(ErrorCode::UNDEFINED, "stop");
        assert!(matches!(
            m.phase,
            RecvPhase::Failed {
                unanswered_request: true,
                echo: None
            }
        ));
        assert_eq!(m.max_datagram(), MAX_DATAGRAM);
    }
}
