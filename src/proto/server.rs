//! The server's side: turning a request datagram into a transfer machine.
//!
//! The driver listens on the well-known port, hands each datagram to
//! [`parse_request`], opens the file through the store, and builds a
//! [`ServerRead`] or [`ServerWrite`] bound to a fresh socket (a new TID).
//! Anything refused on the way comes back as a [`Refusal`] to send.

use super::common::Transfer;
use super::handshake::Handshake;
use super::link::Link;
use super::recv_machine::{Ack0, RecvMachine, RecvPhase};
use super::send_machine::{initial_timer, SendMachine, SendPhase};
use super::window_rx::{WindowRx, WireSink};
use super::window_tx::{WindowTx, WireSource};
use crate::data::{Sink, Source};
use crate::options::{negotiate, Direction, Limits, Negotiated};
use crate::wire::{emit_error, BufferTooSmall, ErrorCode, Mode, Opcode, Packet, Request};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The default floor of the adaptive retransmission timeout, server and
/// client: far above a LAN's round trip (0.1-1 ms), so a board that pauses
/// for a moment is not sent duplicates, and far below the 1-5 s timers that
/// make lock-step transfers crawl under loss. 2 ms was tried as the default:
/// a boot storm of 20 rpi4 bootloaders at 1 % loss got its last board up in
/// 4-6 s instead of 7-10 (`benches/boot-storm.sh`), but real firmware in
/// QEMU (U-Boot, OVMF, iPXE) pauses past 2 ms now and then, mid-transfer
/// too, and got duplicates a clean link never causes. A lower floor
/// (`--min-rto`) learns upwards per transfer (`Timer::spurious`), and a
/// transfer's first block waits at least 20 ms (`Timer::CAUTIOUS_FLOOR`).
pub const DEFAULT_MIN_RTO: Duration = Duration::from_millis(20);

/// How the server runs its transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Retransmission timeout when the client negotiates none: the longest
    /// the server waits before resending DATA (see `min_rto`); an upload's
    /// re-ACKs back off past it, up to 8 s.
    pub timeout: Duration,
    /// Floor of the adaptive retransmission timeout. The timer follows the
    /// measured round trip between this and the timeout (the negotiated one
    /// or `timeout`); at or above the timeout a sender's timer is fixed.
    pub min_rto: Duration,
    /// Retransmissions of one datagram before giving up.
    pub retries: u32,
    pub limits: Limits,
}

/// The retransmission timer of clients that negotiate none (RFC 2349):
/// 5 s in BSD tftp and tftp-hpa (`rexmtval`, tftp/main.c) and in U-Boot
/// (`TIMEOUT`, net/tftp.c). A server taking an upload from such a client
/// dallies twice this plus its own timeout after the final ACK, so that
/// when the final ACK is lost the client's resent last block still finds
/// the transfer and is ACKed again, twice over (RFC 1350 section 6):
/// otherwise the upload lands whole while the client reports a timeout,
/// and a retry in `create` mode gets ERROR 6. A 100 000-run sweep found
/// that in 1 % of runs of a legacy client's upload at 1 % loss, when the
/// dally was twice the server's own 1 s timeout. The transfer's slot is
/// held while it dallies (11 s by default).
pub const CLASSIC_CLIENT_TIMER: Duration = Duration::from_secs(5);

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            timeout: Duration::from_secs(1),
            min_rto: DEFAULT_MIN_RTO,
            retries: 5,
            limits: Limits::default(),
        }
    }
}

/// A request the server will not serve, and the ERROR that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERROR {code}: {message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// Writes the ERROR packet; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        emit_error(buf, self.code, &self.message)
    }
}

/// Classifies a datagram that arrived on the listening port. `Ok(None)`:
/// a packet of another kind (a stray ACK, DATA, OACK or ERROR), to be
/// ignored without a reply: an ERROR is never answered (RFC 1350), and
/// answering the rest would make the server a reflector. A malformed
/// request and an unknown opcode get ERROR 4 (RFC 1350); the refusal for an
/// unknown opcode is at most [`UNKNOWN_OPCODE_REPLY_LEN`] bytes, whatever
/// arrived, so the listener never amplifies.
pub fn parse_request(datagram: &[u8]) -> Result<Option<(Direction, Request<'_>)>, Refusal> {
    let packet = Packet::parse(datagram).map_err(|e| Refusal::new(e.error_code(), e.to_string()));
    let (direction, request) = match packet {
        Ok(Packet::Rrq(r)) => (Direction::Read, r),
        Ok(Packet::Wrq(r)) => (Direction::Write, r),
        Ok(_) => return Ok(None),
        Err(refusal) if is_request(datagram) => return Err(refusal),
        Err(_) if has_unknown_opcode(datagram) => {
            return Err(Refusal::new(
                ErrorCode::ILLEGAL_OPERATION,
                UNKNOWN_OPCODE_MESSAGE,
            ))
        }
        Err(_) => return Ok(None),
    };
    if request.mode == Mode::Mail {
        return Err(Refusal::new(
            ErrorCode::ILLEGAL_OPERATION,
            "mail mode is not supported",
        ));
    }
    Ok(Some((direction, request)))
}

/// RRQ or WRQ by opcode alone.
pub(crate) fn is_request(datagram: &[u8]) -> bool {
    matches!(datagram, [0, 1 | 2, ..])
}

const UNKNOWN_OPCODE_MESSAGE: &str = "unknown opcode";

/// The size of the ERROR 4 that answers an unknown opcode.
pub const UNKNOWN_OPCODE_REPLY_LEN: usize = 4 + UNKNOWN_OPCODE_MESSAGE.len() + 1;

/// Two bytes or more, and an opcode outside 1..=6 (RFC 1350, 2347).
fn has_unknown_opcode(datagram: &[u8]) -> bool {
    match datagram {
        [hi, lo, ..] => Opcode::from_u16(u16::from_be_bytes([*hi, *lo])).is_none(),
        _ => false,
    }
}

fn negotiate_or_refuse(
    request: &Request<'_>,
    direction: Direction,
    size: Option<u64>,
    config: &ServerConfig,
) -> Result<Negotiated, Refusal> {
    if request.mode == Mode::Mail {
        return Err(Refusal::new(
            ErrorCode::ILLEGAL_OPERATION,
            "mail mode is not supported",
        ));
    }
    negotiate(request, direction, size, &config.limits)
        .map_err(|e| Refusal::new(e.error_code(), e.to_string()))
}

macro_rules! delegate_transfer {
    ($outer:ident < $p:ident : $bound:path >) => {
        impl<$p: $bound> Transfer for $outer<$p> {
            fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
                self.0.handle_datagram(now, from, datagram)
            }
            fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<super::Transmit> {
                self.0.poll_transmit(now, buf)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                self.0.poll_timeout()
            }
            fn handle_timeout(&mut self, now: Instant) {
                self.0.handle_timeout(now)
            }
            fn poll_event(&mut self) -> Option<super::Event> {
                self.0.poll_event()
            }
            fn is_closed(&self) -> bool {
                self.0.is_closed()
            }
            fn counters(&self) -> super::Counters {
                self.0.counters()
            }
            fn bytes_transferred(&self) -> u64 {
                self.0.bytes_transferred()
            }
            fn max_datagram(&self) -> usize {
                self.0.max_datagram()
            }
            fn abort(&mut self, code: ErrorCode, message: &str) {
                self.0.abort(code, message)
            }
        }
    };
}
pub(crate) use delegate_transfer;

/// Serves an RRQ: sends the file (after an OACK when options were accepted).
pub struct ServerRead<S: Source>(SendMachine<S>);

impl<S: Source> ServerRead<S> {
    /// Builds the machine for `request` from `peer`, reading `source`.
    /// The first datagram (OACK or DATA 1) is ready at once.
    pub fn new(
        now: Instant,
        peer: SocketAddr,
        request: &Request<'_>,
        source: S,
        config: &ServerConfig,
    ) -> Result<Self, Refusal> {
        let source = WireSource::new(source, request.mode);
        let negotiated = negotiate_or_refuse(request, Direction::Read, source.size(), config)?;
        let timer = initial_timer(config.timeout, config.min_rto, config.retries);
        let mut machine = SendMachine {
            link: Link::new(now, Some(peer), peer),
            phase: if negotiated.has_oack() {
                SendPhase::Handshake(Handshake::Oack { owed: true })
            } else {
                SendPhase::Transferring
            },
            negotiated,
            window: WindowTx::new(source, timer),
            default_rto: config.timeout,
        };
        machine.settle(negotiated);
        Ok(ServerRead(machine))
    }

    /// The settings the download runs with (what the OACK grants).
    pub fn negotiated(&self) -> Negotiated {
        self.0.negotiated
    }
}

delegate_transfer!(ServerRead<S: Source>);

/// Serves a WRQ: receives the file into a sink (committed after the last
/// block, aborted on any failure).
pub struct ServerWrite<K: Sink>(RecvMachine<K>);

impl<K: Sink> ServerWrite<K> {
    /// Builds the machine for `request` from `peer`, writing into `sink`.
    /// On refusal the sink is aborted. The OACK or ACK 0 is ready at once.
    pub fn new(
        now: Instant,
        peer: SocketAddr,
        request: &Request<'_>,
        mut sink: K,
        config: &ServerConfig,
    ) -> Result<Self, Refusal> {
        let negotiated = match negotiate_or_refuse(request, Direction::Write, None, config) {
            Ok(n) => n,
            Err(refusal) => {
                sink.abort();
                return Err(refusal);
            }
        };
        let timer = initial_timer(config.timeout, config.min_rto, config.retries);
        let sink = WireSink::new(sink, request.mode);
        let mut machine = RecvMachine {
            link: Link::new(now, Some(peer), peer),
            phase: RecvPhase::Transferring,
            negotiated,
            window: WindowRx::new(sink, config.limits.max_upload, timer),
            ack0: if negotiated.has_oack() {
                Ack0::Oack
            } else {
                Ack0::Ack
            },
            default_rto: config.timeout,
            // Twice the sender's timer, as for one that named its own (2 x
            // the RTO): the classic one when it named none.
            dally_floor: match negotiated.timeout {
                Some(_) => Duration::ZERO,
                None => 2 * CLASSIC_CLIENT_TIMER + config.timeout,
            },
        };
        machine.settle(negotiated);
        machine.window.owe_ack();
        Ok(ServerWrite(machine))
    }
}

impl<K: Sink> ServerWrite<K> {
    /// The settings the upload runs with (what the OACK granted).
    pub fn negotiated(&self) -> Negotiated {
        self.0.negotiated
    }
}

delegate_transfer!(ServerWrite<K: Sink>);
