//! tftp-hpa's `tftp` client, 5.2 (Debian ships 5.2+20150808; `tftp/` has no
//! functional change between the two), reproduced as sans-IO machines: the
//! lab's legacy profile.
//!
//! Source: `kernelorg-mirror/network_tftp_tftp-hpa`, tag `tftp-hpa-5.2`,
//! `tftp/tftp.c` (`tftp_recvfile`, `tftp_sendfile`, `makerequest`, `timer`,
//! `nak`), `tftp/main.c` (defaults), `common/tftpsubs.c` (`synchnet`,
//! `writeit`). Checked on the wire against Debian's `tftp` binary
//! (5.2+20150808-1.4) on loopback: RRQ bytes, the 5 s resend schedule and
//! the 25 s give-up, re-ACK of a repeated block, silence for a future block,
//! the port hijack, and the ACK after an ERROR.
//!
//! | rule | source |
//! |---|---|
//! | request = `<file>\0<mode>\0`, no options ever | `makerequest` |
//! | mode: the binary's default is **netascii** (`MODE_DEFAULT MODE_NETASCII`, main.c); `-m octet`/`binary` gives `octet`. [`TftpHpaSettings::default`] is octet, the lab's use | main.c |
//! | 512-byte blocks; the receive buffer is `PKTSIZE` = 516, so a longer datagram is cut to 516 and counts as a full block | `#define PKTSIZE SEGSIZE+4`, `recvfrom(f, dp, PKTSIZE, …)` |
//! | one socket for the session: the RRQ, its resends and every ACK leave from the same port | main.c `pick_port_bind` at start-up |
//! | **no TID check**: every datagram received, whatever its host, port or content, overwrites the peer's *port* (the IP stays the server's); later packets go there | `sa_set_port(&peeraddr, SOCKPORT(&from))` before any parsing ("should verify client address") |
//! | DATA with the expected block is taken; ACK it (and expect the next) | `if (dp_block == block) break;` |
//! | DATA with `block - 1` resends the last packet sent (the previous ACK, or the RRQ while waiting for block 1, since `block - 1` = 0); anything else is ignored. So each repeat of the previous block draws one ACK: the Sorcerer's Apprentice fix, receiver side | `if (dp_block == (block - 1)) goto send_ack;` |
//! | the `block - 1` test is done in `int`: while block 0 is expected (after 65535) a repeat of 65535 is **not** re-acknowledged | `u_short` promotion in `dp_block == (block - 1)` |
//! | block numbers wrap 65535 → 0 | `volatile u_short block; … block++` |
//! | `synchnet` drains nothing in 5.2 (`select(f, …)` instead of `f + 1`) | tftpsubs.c `synchnet` |
//! | resend the last packet every `rexmt` (5 s); the interval restarts on **every** datagram received, even an ignored one (`alarm(rexmtval)` before each `recvfrom`) | `tftp_recvfile` loop, `timer` |
//! | each expiry adds `rexmt` to `timeout`; at `maxtimeout` (25 s) give up silently ("Transfer timed out.") — 4 resends. `timeout` restarts at 0 for each new packet, not for a re-ACK of a duplicate (`goto send_ack` skips `timeout = 0`) | `timer`, main.c `TIMEOUT` 5, `maxtimeout = 5 * TIMEOUT` |
//! | a short block ends the loop; one final ACK, no dally (nothing reads the socket until the next command) | `while (size == SEGSIZE)`, `abort:` label |
//! | an ERROR ends the transfer, and **an ACK of the expected block is still sent**, to the ERROR's source port ("ok to ack, since user has seen err msg") | `abort:` label |
//! | an OACK (or any non-DATA) is ignored and the wait goes on | `if (dp_opcode == DATA)` |
//! | local write errors never reach the wire (`writeit` "is a lie", `write_behind`'s result is dropped); here the wire is the same but the outcome is an error and the sink is discarded | tftpsubs.c `writeit` |
//! | put: WRQ, then DATA n on ACK n-1; any other ACK is ignored, never answered with DATA (RFC 1350 / Sorcerer's Apprentice); an ERROR ends it with nothing sent; read errors send `nak(errno + 100)` = ERROR 0 with the error text | `tftp_sendfile`, `nak` |
//!
//! Not reproduced: a datagram under 4 bytes is ignored here (the C reads
//! the missing header bytes from the previous datagram left in its
//! buffer); datagrams that stay queued in the session socket after a
//! transfer and are read by the next one (the driver owns the socket).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tftplab::data::{Sink, Source};
use tftplab::netascii::{NetasciiSink, NetasciiSource};
use tftplab::options::Negotiated;
use tftplab::proto::{Counters, Event, Summary, Transfer, TransferError, Transmit};
use tftplab::wire::{emit_ack, emit_error, ErrorCode, Mode};

/// `SEGSIZE`: the only block size.
const SEGSIZE: usize = 512;
/// `PKTSIZE`: the receive buffer.
const PKTSIZE: usize = SEGSIZE + 4;

const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;

/// The client's knobs, as its commands set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TftpHpaSettings {
    /// `mode` / `-m`. The binary defaults to netascii; the lab runs it
    /// with `-m octet`, so this defaults to octet.
    pub mode: Mode,
    /// `rexmt`: 5 s (main.c `TIMEOUT`).
    pub rexmt: Duration,
    /// `timeout`: 25 s (main.c `maxtimeout = 5 * TIMEOUT`).
    pub max_timeout: Duration,
}

impl Default for TftpHpaSettings {
    fn default() -> Self {
        TftpHpaSettings {
            mode: Mode::Octet,
            rexmt: Duration::from_secs(5),
            max_timeout: Duration::from_secs(25),
        }
    }
}

/// `makerequest`: opcode, name, NUL, mode, NUL. A name with a NUL is cut
/// there, as `strcpy` does.
fn make_request(opcode: u16, filename: &str, mode: Mode) -> Vec<u8> {
    let name = filename.split('\0').next().unwrap_or_default();
    let mut b = opcode.to_be_bytes().to_vec();
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b.extend_from_slice(mode.as_str().as_bytes());
    b.push(0);
    b
}

fn ack(block: u16) -> Vec<u8> {
    let mut b = vec![0; 4];
    let _ = emit_ack(&mut b, block);
    b
}

fn error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut b = vec![0; 5 + message.len()];
    let len = emit_error(&mut b, code, message).unwrap_or(0);
    b.truncate(len);
    b
}

/// The ERROR's message: the bytes after the header up to a NUL.
fn error_message(d: &[u8]) -> String {
    let m = &d[4..];
    let m = m.split(|&c| c == 0).next().unwrap_or_default();
    String::from_utf8_lossy(m).into_owned()
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// What both directions share: the session socket's peer, the packet a
/// timeout resends, the `alarm`/`timer` pair, and the reporting.
struct Session {
    /// `peeraddr`: the server's IP, with the port of the last datagram
    /// received.
    peer: SocketAddr,
    settings: TftpHpaSettings,
    /// The last packet sent (`ackbuf` / `dp`): what a timeout resends.
    last: Vec<u8>,
    /// `timeout`: the seconds of expiries since the last new packet.
    waited: Duration,
    /// Resends of `last` since it was new.
    tries: u32,
    /// The `alarm`.
    deadline: Option<Instant>,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    done: bool,
    negotiated_sent: bool,
    started: Instant,
    counters: Counters,
    bytes: u64,
    blocks: u64,
}

impl Session {
    fn new(now: Instant, server: SocketAddr, settings: &TftpHpaSettings, request: Vec<u8>) -> Self {
        let mut s = Session {
            peer: server,
            settings: *settings,
            last: Vec::new(),
            waited: Duration::ZERO,
            tries: 0,
            deadline: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            done: false,
            negotiated_sent: false,
            started: now,
            counters: Counters::default(),
            bytes: 0,
            blocks: 0,
        };
        s.send_new(now, request);
        s
    }

    /// A new packet: `timeout = 0`, send, `alarm(rexmtval)`.
    fn send_new(&mut self, now: Instant, packet: Vec<u8>) {
        self.waited = Duration::ZERO;
        self.tries = 0;
        self.last = packet;
        self.resend(now);
    }

    /// `send_ack:` / the `timeoutbuf` return: send the last packet again,
    /// and re-arm the alarm.
    fn resend(&mut self, now: Instant) {
        self.outbox.push_back((self.peer, self.last.clone()));
        self.deadline = Some(now + self.settings.rexmt);
    }

    /// Every `recvfrom` that returns: the port is taken, the alarm re-armed
    /// for the next wait (a datagram that ends the wait disarms it later).
    /// Returns the datagram as the 516-byte buffer holds it, or `None` if
    /// it is too short to read a header from.
    fn receive<'d>(&mut self, now: Instant, from: SocketAddr, d: &'d [u8]) -> Option<&'d [u8]> {
        self.counters.datagrams_received += 1;
        self.peer.set_port(from.port());
        self.deadline = Some(now + self.settings.rexmt);
        let d = &d[..d.len().min(PKTSIZE)];
        if d.len() < 4 {
            self.counters.ignored += 1;
            return None;
        }
        Some(d)
    }

    fn negotiated(&mut self) {
        if !self.negotiated_sent {
            self.negotiated_sent = true;
            self.events
                .push_back(Event::Negotiated(Negotiated::default()));
        }
    }

    fn finish(&mut self, now: Instant, result: Result<(), TransferError>) {
        if self.done {
            return;
        }
        self.done = true;
        self.deadline = None;
        let result = result.map(|()| Summary {
            bytes: self.bytes,
            blocks: self.blocks,
            retransmissions: self.counters.acks_retransmitted + self.counters.data_retransmitted,
            duration: now.saturating_duration_since(self.started),
            negotiated: Negotiated::default(),
        });
        self.events.push_back(Event::Finished(result));
    }

    /// `timer`: `timeout += rexmtval`; give up at `maxtimeout`, else resend.
    /// Returns whether it gave up.
    fn expire(&mut self, now: Instant) -> bool {
        if self.done || self.deadline.is_none_or(|d| now < d) {
            return false;
        }
        self.counters.timeouts += 1;
        self.waited += self.settings.rexmt;
        if self.waited >= self.settings.max_timeout {
            return true;
        }
        self.tries += 1;
        self.resend(now);
        false
    }

    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let (dest, d) = self.outbox.pop_front()?;
        let len = d.len().min(buf.len());
        buf[..len].copy_from_slice(&d[..len]);
        self.counters.datagrams_sent += 1;
        match d.get(1).map(|&op| u16::from(op)) {
            Some(ACK) => self.counters.acks_sent += 1,
            Some(DATA) => self.counters.data_sent += 1,
            _ => {}
        }
        Some(Transmit { dest, len })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.done)
    }

    fn is_closed(&self) -> bool {
        self.done && self.outbox.is_empty()
    }

    fn max_datagram(&self) -> usize {
        PKTSIZE.max(self.last.len())
    }

    /// `nak`: an ERROR to the peer, and the end.
    fn abort(&mut self, code: ErrorCode, message: &str) {
        if self.done {
            return;
        }
        self.outbox.push_back((self.peer, error(code, message)));
        let e = TransferError::Local {
            code,
            message: message.to_string(),
        };
        self.finish(self.started, Err(e));
    }
}

enum HpaSink<K: Sink> {
    Octet(K),
    /// tftplab's decoder: CR LF → LF, CR NUL → CR, as `write_behind` does
    /// (bare CR handling not compared).
    Netascii(NetasciiSink<K>),
}

impl<K: Sink> Sink for HpaSink<K> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        match self {
            HpaSink::Octet(k) => k.write_at(offset, data),
            HpaSink::Netascii(k) => k.write_at(offset, data),
        }
    }
    fn commit(&mut self) -> std::io::Result<()> {
        match self {
            HpaSink::Octet(k) => k.commit(),
            HpaSink::Netascii(k) => k.commit(),
        }
    }
    fn abort(&mut self) {
        match self {
            HpaSink::Octet(k) => k.abort(),
            HpaSink::Netascii(k) => k.abort(),
        }
    }
}

/// `tftp_recvfile`: a download. See the module docs for the rules.
pub struct TftpHpaGet<K: Sink> {
    s: Session,
    sink: HpaSink<K>,
    /// `block`: the block expected next.
    block: u16,
    /// The first local write error: the wire goes on as in the C, the
    /// outcome reports it.
    write_error: Option<String>,
}

impl<K: Sink> TftpHpaGet<K> {
    /// `get filename` against `server` (port 69 in real life). The RRQ is
    /// the first datagram out.
    pub fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        sink: K,
        settings: &TftpHpaSettings,
    ) -> Self {
        let sink = match settings.mode {
            Mode::Netascii => HpaSink::Netascii(NetasciiSink::new(sink)),
            _ => HpaSink::Octet(sink),
        };
        let request = make_request(RRQ, filename, settings.mode);
        TftpHpaGet {
            s: Session::new(now, server, settings, request),
            sink,
            block: 1,
            write_error: None,
        }
    }

    /// Where the next packet goes: the server's IP and the port of the
    /// last datagram received.
    pub fn peer(&self) -> SocketAddr {
        self.s.peer
    }

    /// The `abort:` label: one ACK of `block`, whatever ended the loop.
    fn ack_and_end(&mut self, now: Instant, result: Result<(), TransferError>) {
        self.s.outbox.push_back((self.s.peer, ack(self.block)));
        let result = match (result, self.write_error.take()) {
            (Ok(()), None) => self.sink.commit().map_err(|e| TransferError::Local {
                code: ErrorCode::UNDEFINED,
                message: format!("commit: {e}"),
            }),
            (Ok(()), Some(message)) => Err(TransferError::Local {
                code: ErrorCode::UNDEFINED,
                message,
            }),
            (Err(e), _) => Err(e),
        };
        if result.is_err() {
            self.sink.abort();
        }
        self.s.finish(now, result);
    }
}

impl<K: Sink> Transfer for TftpHpaGet<K> {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.s.done {
            self.s.counters.datagrams_received += 1;
            self.s.counters.ignored += 1;
            return;
        }
        let Some(d) = self.s.receive(now, from, datagram) else {
            return;
        };
        let (opcode, block) = (be16(d), be16(&d[2..]));
        match opcode {
            ERROR => {
                let e = TransferError::Peer {
                    code: ErrorCode(block),
                    message: error_message(d),
                };
                self.ack_and_end(now, Err(e));
            }
            DATA if block == self.block => {
                self.s.negotiated();
                let data = &d[4..];
                if self.write_error.is_none() {
                    if let Err(e) = self.sink.write_at(self.s.bytes, data) {
                        self.write_error = Some(format!("write: {}", e.kind()));
                    }
                }
                self.s.bytes += data.len() as u64;
                self.s.blocks += 1;
                if data.len() < SEGSIZE {
                    return self.ack_and_end(now, Ok(()));
                }
                let packet = ack(self.block);
                self.block = self.block.wrapping_add(1);
                self.s.send_new(now, packet);
            }
            // `dp_block == (block - 1)` in int: never true while 0 is due.
            DATA if self.block != 0 && block == self.block - 1 => {
                self.s.counters.duplicate_data += 1;
                if self.block == 1 {
                    self.s.counters.control_retransmitted += 1;
                } else {
                    self.s.counters.acks_retransmitted += 1;
                }
                self.s.resend(now);
            }
            _ => self.s.counters.ignored += 1,
        }
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.s.poll_transmit(buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.s.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        let resends = self.s.outbox.len();
        if self.s.expire(now) {
            // "Transfer timed out.": nothing is sent.
            let retries = self.s.tries;
            self.sink.abort();
            return self.s.finish(now, Err(TransferError::TimedOut { retries }));
        }
        if self.s.outbox.len() > resends {
            if self.block == 1 {
                self.s.counters.control_retransmitted += 1;
            } else {
                self.s.counters.acks_retransmitted += 1;
            }
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.s.events.pop_front()
    }

    fn is_closed(&self) -> bool {
        self.s.is_closed()
    }

    fn counters(&self) -> Counters {
        self.s.counters
    }

    fn bytes_transferred(&self) -> u64 {
        self.s.bytes
    }

    fn max_datagram(&self) -> usize {
        self.s.max_datagram()
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        if !self.s.done {
            self.sink.abort();
        }
        self.s.abort(code, message);
    }
}

/// `tftp_sendfile`: an upload. See the module docs for the rules.
pub struct TftpHpaPut<S: Source> {
    s: Session,
    source: HpaSource<S>,
    /// `block`: the block whose ACK is awaited (0 for the WRQ).
    block: u16,
    /// The packet in flight is the last DATA (shorter than 512).
    last_sent: bool,
}

enum HpaSource<S: Source> {
    Octet(S),
    Netascii(NetasciiSource<S>),
}

impl<S: Source> HpaSource<S> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            HpaSource::Octet(s) => s.read_at(offset, buf),
            HpaSource::Netascii(s) => s.read_at(offset, buf),
        }
    }
}

impl<S: Source> TftpHpaPut<S> {
    /// `put` of `source` as `filename` to `server`. The WRQ is the first
    /// datagram out.
    pub fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        source: S,
        settings: &TftpHpaSettings,
    ) -> Self {
        let source = match settings.mode {
            Mode::Netascii => HpaSource::Netascii(NetasciiSource::new(source)),
            _ => HpaSource::Octet(source),
        };
        let request = make_request(WRQ, filename, settings.mode);
        TftpHpaPut {
            s: Session::new(now, server, settings, request),
            source,
            block: 0,
            last_sent: false,
        }
    }

    /// The ACK for `block` is in: send the next DATA, or end.
    fn next(&mut self, now: Instant) {
        if self.last_sent {
            return self.s.finish(now, Ok(()));
        }
        self.block = self.block.wrapping_add(1);
        let mut packet = vec![0; PKTSIZE];
        packet[..2].copy_from_slice(&DATA.to_be_bytes());
        packet[2..4].copy_from_slice(&self.block.to_be_bytes());
        let n = match self.source.read_at(self.s.bytes, &mut packet[4..]) {
            Ok(n) => n,
            Err(e) => {
                // `nak(errno + 100)`: ERROR 0 with the error's text.
                return self.s.abort(ErrorCode::UNDEFINED, &e.kind().to_string());
            }
        };
        packet.truncate(4 + n);
        self.s.bytes += n as u64;
        self.s.blocks += 1;
        self.last_sent = n < SEGSIZE;
        self.s.send_new(now, packet);
    }
}

impl<S: Source> Transfer for TftpHpaPut<S> {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.s.done {
            self.s.counters.datagrams_received += 1;
            self.s.counters.ignored += 1;
            return;
        }
        let Some(d) = self.s.receive(now, from, datagram) else {
            return;
        };
        let (opcode, block) = (be16(d), be16(&d[2..]));
        match opcode {
            ERROR => {
                // `goto abort`: nothing is sent.
                let e = TransferError::Peer {
                    code: ErrorCode(block),
                    message: error_message(d),
                };
                self.s.finish(now, Err(e));
            }
            ACK if block == self.block => {
                self.s.negotiated();
                self.next(now);
            }
            ACK => self.s.counters.duplicate_acks += 1,
            _ => self.s.counters.ignored += 1,
        }
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.s.poll_transmit(buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.s.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        let queued = self.s.outbox.len();
        if self.s.expire(now) {
            let retries = self.s.tries;
            let e = if self.last_sent {
                TransferError::Unconfirmed { retries }
            } else {
                TransferError::TimedOut { retries }
            };
            return self.s.finish(now, Err(e));
        }
        if self.s.outbox.len() > queued {
            if self.block == 0 {
                self.s.counters.control_retransmitted += 1;
            } else {
                self.s.counters.data_retransmitted += 1;
            }
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.s.events.pop_front()
    }

    fn is_closed(&self) -> bool {
        self.s.is_closed()
    }

    fn counters(&self) -> Counters {
        self.s.counters
    }

    fn bytes_transferred(&self) -> u64 {
        self.s.bytes
    }

    fn max_datagram(&self) -> usize {
        self.s.max_datagram()
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        self.s.abort(code, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::firmware::testkit::{
        addr, data, events, peer, run, sent, sent_to, serve, serve_with, SERVER, TID,
    };
    use tftplab::data::{MemSink, MemSource, SharedSink};

    fn get() -> (TftpHpaGet<MemSink>, Instant) {
        let t0 = Instant::now();
        let mut m = TftpHpaGet::new(
            t0,
            addr(SERVER),
            "f",
            MemSink::new(),
            &TftpHpaSettings::default(),
        );
        assert_eq!(
            sent_to(&mut m, t0, addr(SERVER)),
            vec![b"\0\x01f\0octet\0".to_vec()]
        );
        (m, t0)
    }

    #[test]
    fn rrq_has_no_options_and_the_mode_asked() {
        let t0 = Instant::now();
        let netascii = TftpHpaSettings {
            mode: Mode::Netascii,
            ..TftpHpaSettings::default()
        };
        let mut m = TftpHpaGet::new(t0, addr(SERVER), "pxelinux.0", MemSink::new(), &netascii);
        assert_eq!(
            sent_to(&mut m, t0, addr(SERVER)),
            vec![b"\0\x01pxelinux.0\0netascii\0".to_vec()]
        );
        let _ = get();
    }

    #[test]
    fn rrq_resent_every_5s_and_given_up_at_25s_silently() {
        // Matches the binary on loopback: RRQ at 0, 5, 10, 15, 20 s, then
        // "Transfer timed out." at 25 s with nothing sent.
        let (mut m, t0) = get();
        let mut at = Vec::new();
        while let Some(t) = m.poll_timeout() {
            m.handle_timeout(t);
            for (dest, d) in sent(&mut m, t) {
                assert_eq!((dest, d), (addr(SERVER), b"\0\x01f\0octet\0".to_vec()));
                at.push((t - t0).as_secs());
            }
            if m.is_closed() {
                assert_eq!(t - t0, Duration::from_secs(25));
            }
        }
        assert_eq!(at, vec![5, 10, 15, 20]);
        assert_eq!(
            events(&mut m),
            vec![Event::Finished(Err(TransferError::TimedOut { retries: 4 }))]
        );
    }

    #[test]
    fn any_datagram_restarts_the_interval_but_not_the_budget() {
        let (mut m, t0) = get();
        m.handle_timeout(t0 + Duration::from_secs(5)); // waited 5
        let _ = sent(&mut m, t0);
        // A stray datagram 4 s later re-arms the alarm for 5 s from then.
        let stray = t0 + Duration::from_secs(9);
        m.handle_datagram(stray, addr(TID), b"\0\x04\0\x07");
        assert_eq!(m.poll_timeout(), Some(stray + Duration::from_secs(5)));
        // A repeat of block 0 (block - 1 while 1 is due) resends the RRQ
        // without resetting the budget: three more expiries end it.
        m.handle_datagram(stray, addr(TID), &data(0, 512));
        assert_eq!(
            sent(&mut m, t0),
            vec![(addr(TID), b"\0\x01f\0octet\0".to_vec())]
        );
        let mut t = stray;
        for _ in 0..4 {
            t += Duration::from_secs(5);
            m.handle_timeout(t);
        }
        assert_eq!(sent(&mut m, t0).len(), 3);
        assert!(m.is_closed());
    }

    #[test]
    fn blocks_are_acked_in_order_and_the_last_once() {
        let (mut m, t0) = get();
        m.handle_datagram(t0, addr(TID), &data(1, 512));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), vec![0, 4, 0, 1])]);
        assert_eq!(
            events(&mut m),
            vec![Event::Negotiated(Negotiated::default())]
        );
        m.handle_datagram(t0, addr(TID), &data(2, 10));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), vec![0, 4, 0, 2])]);
        let ev = events(&mut m);
        assert!(matches!(&ev[..], [Event::Finished(Ok(s))] if s.bytes == 522 && s.blocks == 2));
        assert!(m.is_closed());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn only_the_previous_block_is_reacked_once_per_repeat() {
        let (mut m, t0) = get();
        for b in 1..=3 {
            m.handle_datagram(t0, addr(TID), &data(b, 512));
        }
        let _ = sent(&mut m, t0);
        m.handle_datagram(t0, addr(TID), &data(3, 512)); // previous: re-ACK
        m.handle_datagram(t0, addr(TID), &data(3, 512)); // again: again
        m.handle_datagram(t0, addr(TID), &data(2, 512)); // older: nothing
        m.handle_datagram(t0, addr(TID), &data(9, 512)); // future: nothing
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), vec![0, 4, 0, 3]); 2]);
        assert_eq!(m.bytes_transferred(), 3 * 512);
    }

    #[test]
    fn every_datagram_takes_over_the_peer_port() {
        // The binary on loopback did the same: DATA 2 from another port
        // drew its final ACK to that port.
        let (mut m, t0) = get();
        m.handle_datagram(t0, addr(TID), &data(1, 512));
        let _ = sent(&mut m, t0);
        // A stranger (even another host, even garbage) moves the port.
        m.handle_datagram(t0, addr("10.9.9.9:6666"), b"\0\x09junk");
        assert_eq!(m.peer(), addr("10.0.0.1:6666"));
        m.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(
            sent(&mut m, t0),
            vec![(addr("10.0.0.1:6666"), vec![0, 4, 0, 1])]
        );
        // DATA 2 from another host is taken too; the ACK goes to the
        // server's IP with that datagram's port.
        m.handle_datagram(t0, addr("10.9.9.9:7777"), &data(2, 1));
        assert_eq!(
            sent(&mut m, t0),
            vec![(addr("10.0.0.1:7777"), vec![0, 4, 0, 2])]
        );
        assert!(matches!(&events(&mut m)[..], [.., Event::Finished(Ok(_))]));
    }

    #[test]
    fn error_still_draws_an_ack_of_the_expected_block() {
        let (mut m, t0) = get();
        m.handle_datagram(t0, addr("10.0.0.1:4444"), b"\0\x05\0\x01nope\0");
        assert_eq!(
            sent(&mut m, t0),
            vec![(addr("10.0.0.1:4444"), vec![0, 4, 0, 1])]
        );
        assert_eq!(
            events(&mut m),
            vec![Event::Finished(Err(peer(
                ErrorCode::FILE_NOT_FOUND,
                "nope"
            )))]
        );
        assert!(m.is_closed());
    }

    #[test]
    fn oversized_datagram_is_cut_to_516_and_oack_is_ignored() {
        let (mut m, t0) = get();
        m.handle_datagram(t0, addr(TID), b"\0\x06blksize\x001024\0");
        assert!(sent(&mut m, t0).is_empty());
        m.handle_datagram(t0, addr(TID), &data(1, 1024));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), vec![0, 4, 0, 1])]);
        assert_eq!(m.bytes_transferred(), 512);
        assert!(!m.is_closed());
    }

    #[test]
    fn rollover_expects_0_after_65535_and_does_not_reack_65535_then() {
        let (mut m, t0) = get();
        for b in 1..=u16::MAX {
            m.handle_datagram(t0, addr(TID), &data(b, 512));
        }
        let _ = sent(&mut m, t0);
        m.handle_datagram(t0, addr(TID), &data(u16::MAX, 512));
        assert!(sent(&mut m, t0).is_empty(), "block - 1 is -1 in int");
        m.handle_datagram(t0, addr(TID), &data(0, 512));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), vec![0, 4, 0, 0])]);
        m.handle_datagram(t0, addr(TID), &data(0, 512));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), vec![0, 4, 0, 0])]);
    }

    #[test]
    fn put_sends_data_on_its_ack_only() {
        let t0 = Instant::now();
        let file = vec![7u8; 600];
        let mut m = TftpHpaPut::new(
            t0,
            addr(SERVER),
            "up",
            MemSource::new(file),
            &TftpHpaSettings::default(),
        );
        assert_eq!(
            sent_to(&mut m, t0, addr(SERVER)),
            vec![b"\0\x02up\0octet\0".to_vec()]
        );
        m.handle_datagram(t0, addr(TID), &[0, 4, 0, 0]);
        let out = sent(&mut m, t0);
        assert_eq!(
            (out[0].0, &out[0].1[..4], out[0].1.len()),
            (addr(TID), &[0, 3, 0, 1][..], 516)
        );
        // A repeated ACK 0 is not answered (Sorcerer's Apprentice).
        m.handle_datagram(t0, addr(TID), &[0, 4, 0, 0]);
        assert!(sent(&mut m, t0).is_empty());
        m.handle_datagram(t0, addr(TID), &[0, 4, 0, 1]);
        let out = sent(&mut m, t0);
        assert_eq!((&out[0].1[..4], out[0].1.len()), (&[0, 3, 0, 2][..], 92));
        // The timer resends DATA 2; after 25 s it gives up, unconfirmed.
        for s in [5, 10, 15, 20, 25] {
            m.handle_timeout(t0 + Duration::from_secs(s));
        }
        assert_eq!(sent(&mut m, t0).len(), 4);
        assert!(matches!(
            &events(&mut m)[..],
            [
                ..,
                Event::Finished(Err(TransferError::Unconfirmed { retries: 4 }))
            ]
        ));
    }

    #[test]
    fn put_error_ends_it_with_nothing_sent() {
        let t0 = Instant::now();
        let mut m = TftpHpaPut::new(
            t0,
            addr(SERVER),
            "up",
            MemSource::new(vec![1; 10]),
            &TftpHpaSettings::default(),
        );
        let _ = sent(&mut m, t0);
        m.handle_datagram(t0, addr(TID), b"\0\x05\0\x02denied\0");
        assert!(sent(&mut m, t0).is_empty());
        assert!(m.is_closed());
    }

    /// A UDP relay on loopback between one client and a server: the
    /// client talks to the relay's port throughout; the relay follows the
    /// server's TID. Returns the relay's address and a handle giving the
    /// datagrams the client sent, once the line has been quiet for 1 s.
    fn relay(
        server: SocketAddr,
    ) -> std::io::Result<(SocketAddr, std::thread::JoinHandle<Vec<Vec<u8>>>)> {
        use std::net::UdpSocket;
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let back = UdpSocket::bind("127.0.0.1:0")?;
        let tick = Some(Duration::from_millis(5));
        front.set_read_timeout(tick)?;
        back.set_read_timeout(tick)?;
        let at = front.local_addr()?;
        let handle = std::thread::spawn(move || {
            let (mut client, mut tid, mut log) = (None, server, Vec::new());
            let mut buf = vec![0; 70_000];
            let mut quiet_since = Instant::now();
            while quiet_since.elapsed() < Duration::from_secs(1) || log.is_empty() {
                if let Ok((n, from)) = front.recv_from(&mut buf) {
                    client = Some(from);
                    log.push(buf[..n].to_vec());
                    let _ = back.send_to(&buf[..n], tid);
                    quiet_since = Instant::now();
                }
                if let Ok((n, from)) = back.recv_from(&mut buf) {
                    tid = from;
                    if let Some(c) = client {
                        let _ = front.send_to(&buf[..n], c);
                    }
                    quiet_since = Instant::now();
                }
            }
            log
        });
        Ok((at, handle))
    }

    fn file() -> Vec<u8> {
        (0..3 * 512 + 100u32)
            .map(|i| (i * 13 % 256) as u8)
            .collect()
    }

    #[tokio::test]
    async fn get_and_put_over_loopback() -> Result<(), Box<dyn std::error::Error>> {
        use tftplab::runtime::now;
        let file = file();
        let (_dir, server) = serve(&[("f", &file)]).await?;
        let at = server.local_addr();
        let sink = SharedSink::new();
        let m = TftpHpaGet::new(now(), at, "f", sink.clone(), &TftpHpaSettings::default());
        let got = run(m, at).await;
        assert_eq!(got.expect("an outcome")?.blocks, 4);
        assert!(sink.snapshot().committed);
        assert_eq!(sink.snapshot().data, file);
        server.stop(Duration::from_secs(1)).await;

        let (dir, server) =
            serve_with(&[], |b| b.write(tftplab::store::WritePolicy::Create)).await?;
        let at = server.local_addr();
        let m = TftpHpaPut::new(
            now(),
            at,
            "up",
            MemSource::new(file.clone()),
            &TftpHpaSettings::default(),
        );
        let put = run(m, at).await;
        assert_eq!(put.expect("an outcome")?.bytes, file.len() as u64);
        server.stop(Duration::from_secs(1)).await;
        assert_eq!(std::fs::read(dir.path().join("up"))?, file);
        Ok(())
    }

    /// The machine's datagrams equal the real `tftp` binary's for the same
    /// download from tftplab's server (recorded through a relay). Skipped
    /// when the binary is not installed.
    #[tokio::test]
    async fn datagrams_match_the_real_binary() -> Result<(), Box<dyn std::error::Error>> {
        use tftplab::runtime::now;
        if std::process::Command::new("tftp")
            .arg("-V")
            .output()
            .is_err()
        {
            eprintln!("tftp (tftp-hpa) not installed: skipped");
            return Ok(());
        }
        let file = file();
        let (_dir, server) = serve(&[("f", &file)]).await?;
        let at = server.local_addr();

        let (front, recorder) = relay(at)?;
        let out = tempfile::tempdir()?;
        let local = out.path().join("f");
        let status = tokio::task::spawn_blocking({
            let local = local.clone();
            move || {
                std::process::Command::new("tftp")
                    .args([
                        "127.0.0.1",
                        &front.port().to_string(),
                        "-m",
                        "binary",
                        "-c",
                        "get",
                        "f",
                    ])
                    .arg(&local)
                    .output()
            }
        })
        .await??;
        assert!(status.status.success(), "{status:?}");
        assert_eq!(std::fs::read(&local)?, file);
        let real = tokio::task::spawn_blocking(move || recorder.join())
            .await?
            .map_err(|_| "relay")?;

        let (front, recorder) = relay(at)?;
        let sink = SharedSink::new();
        let m = TftpHpaGet::new(now(), front, "f", sink.clone(), &TftpHpaSettings::default());
        let got = run(m, front).await;
        assert!(matches!(got, Some(Ok(_))));
        let ours = tokio::task::spawn_blocking(move || recorder.join())
            .await?
            .map_err(|_| "relay")?;

        let expected: Vec<Vec<u8>> = std::iter::once(b"\0\x01f\0octet\0".to_vec())
            .chain((1..=4u16).map(|b| vec![0, 4, 0, b as u8]))
            .collect();
        assert_eq!(real, expected);
        assert_eq!(ours, real);
        server.stop(Duration::from_secs(1)).await;
        Ok(())
    }
}
