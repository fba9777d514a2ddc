//! The Raspberry Pi 4 bootloader's TFTP client (BCM2711 EEPROM, and the
//! start4.elf that it loads), reproduced as a sans-IO machine.
//!
//! The firmware is closed source. Every rule below names its evidence: the
//! rpi-eeprom release notes
//! (`raspberrypi/rpi-eeprom:firmware-2711/release-notes.md`), the bootloader
//! documentation (`raspberrypi/documentation:…/bcm2711-bootloader.adoc`), or
//! a bug-tracker thread with a wire capture. Rules marked **(inferred)** have
//! no such evidence: they are the simplest behaviour consistent with the
//! captures, and a capture from a real board would settle them (see the
//! open questions in `/work/notes/firmware-rules.md`, section 4).
//!
//! | rule | evidence |
//! |---|---|
//! | RRQ `<file>\0octet\0tsize\00\0blksize\01024\0`, options in that order | tcpdump in [rpi-eeprom#74]; blksize since the 2019-10-08 beta ("TFTP now uses RFC2348 blksize option to get 1024 byte blocks", release notes; [rpi-eeprom#25]) |
//! | no blksize at all on older firmware (`tsize 0` only) | [firmware#1700] trace (bootcode/start.elf, 2022) |
//! | the RRQ is resent unchanged every 2 s from the same port | [rpi-eeprom#74] capture: identical RRQs from port 6970 at 2.0 s intervals |
//! | each new request (a new file, or the real download after the probe) comes from a new port (+1) | [rpi-eeprom#74] capture (ports 40187, 40188, …); [firmware#1700] (49153 then 49154) |
//! | OACK → ACK 0 | [firmware#1700] trace; [firmware#1041] pcap |
//! | the tsize probe: after DATA 1, ERROR 0 "Early terminate", and the transfer ends | [rpi-eeprom#74] (title and captures), dnsmasq log in [firmware#1605], [firmware#1700] |
//! | the real request may go out before the probe's DATA 1 (right after its ACK 0) | [firmware#1700] trace: the RRQ from port +1 follows ACK 0 |
//! | `TFTP_FILE_TIMEOUT`: one deadline for the whole file, default 30 s (min 5 s) | bcm2711-bootloader.adoc; release notes 2019-09-25 |
//! | a DATA block already acknowledged is acknowledged again | release notes 2021-02-16 beta ("Change TFTP to ACK data blocks which it has already ACK'd instead of ignoring them"), default from 2021-04-19; before that such DATA was ignored ([`Rpi4Settings::reack_duplicates`] = false) |
//! | start4.elf (1.20210928): a repeated DATA N advances the counter; the board then ACKs N+1, never received, and hangs | [firmware#1631] (Wireshark by the reporter; opt-in, [`Rpi4Settings::start4_duplicate_hang`]) |
//! | no block-number rollover on the Pi 4: a file over 65535 blocks fails | [rpi-eeprom#720]; fixed only for the 2712 (Pi 5) in pieeprom-2025-09-23 ([rpi-eeprom#755]) |
//! | after block 65535 nothing is accepted or acknowledged: the board stalls until the file timeout | **(inferred)** from the [rpi-eeprom#720] boot log, which shows no TFTP traffic after the stall |
//! | the ACK retransmit interval is the RRQ's (2 s), the deadline is not moved by ignored datagrams | **(inferred)**: no capture shows a lost ACK |
//! | datagrams from a host other than the server's, or (once answered) from a port other than the server's TID, are dropped silently | **(inferred)**: no capture shows an ERROR 5 from a Pi |
//! | a DATA block beyond the expected one, or longer than the blksize, is dropped | **(inferred)** |
//! | an OACK blksize outside 8..=requested gets ERROR 8 | **(inferred)** from RFC 2347, no capture |
//! | a server that ignores the options (DATA 1 answers the RRQ) gives 512-byte blocks | **(inferred)** from RFC 2347; the server side of [firmware#1700] shows `blksize=512` when none was asked |
//! | a repeated OACK is answered with ACK 0 again when duplicates are re-acknowledged, otherwise ignored | [firmware#1041] pcap (Pi 2, 2018): two OACKs, one ACK 0; the re-ACK is **(inferred)** from the 2021 note |
//! | on the file timeout nothing is sent: the transfer just ends | **(inferred)**; [rpi-eeprom#687] shows a board going silent |
//! | a server ERROR ends the transfer; nothing is sent back | **(inferred)** |
//! | after the final ACK the port is not read again (no dally) | **(inferred)**: the next file uses a new port |
//!
//! [rpi-eeprom#25]: https://github.com/raspberrypi/rpi-eeprom/issues/25
//! [rpi-eeprom#74]: https://github.com/raspberrypi/rpi-eeprom/issues/74
//! [rpi-eeprom#687]: https://github.com/raspberrypi/rpi-eeprom/issues/687
//! [rpi-eeprom#720]: https://github.com/raspberrypi/rpi-eeprom/issues/720
//! [rpi-eeprom#755]: https://github.com/raspberrypi/rpi-eeprom/pull/755
//! [firmware#1041]: https://github.com/raspberrypi/firmware/issues/1041
//! [firmware#1605]: https://github.com/raspberrypi/firmware/issues/1605
//! [firmware#1631]: https://github.com/raspberrypi/firmware/issues/1631
//! [firmware#1700]: https://github.com/raspberrypi/firmware/issues/1700
//!
//! The profile sequences the machines: the probe ([`Rpi4Probe`]) on one
//! port, then the download ([`Rpi4Get`]) on a new port, possibly started as
//! soon as the probe reports [`Event::Negotiated`] (as in [firmware#1700]),
//! so the two can overlap on the server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tftplab::data::Sink;
use tftplab::options::{parse_number, Negotiated};
use tftplab::proto::{Counters, Event, Summary, Transfer, TransferError, Transmit};
use tftplab::wire::{
    emit_ack, emit_error, ErrorCode, Mode, Packet, RawOption, Request, DATA_HEADER_LEN,
    DEFAULT_BLKSIZE, MAX_DATAGRAM, MIN_BLKSIZE,
};

/// The message of the probe's ERROR 0 ([rpi-eeprom#74], [firmware#1605]).
///
/// [rpi-eeprom#74]: https://github.com/raspberrypi/rpi-eeprom/issues/74
/// [firmware#1605]: https://github.com/raspberrypi/firmware/issues/1605
pub const EARLY_TERMINATE: &str = "Early terminate";

/// The bootloader's knobs. [`Default`] is a Pi 4 EEPROM from 2021-04 on,
/// before the 2022-12 blksize change (see [`Rpi4Settings::blksize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rpi4Settings {
    /// `TFTP_FILE_TIMEOUT`: how long one file may take, from its first RRQ
    /// (bcm2711-bootloader.adoc: default 30000 ms, minimum 5000).
    pub file_timeout: Duration,
    /// The RRQ resend interval: 2.0 s in the rpi-eeprom#74 capture. Also
    /// used, **(inferred)**, to resend the last ACK.
    pub resend_every: Duration,
    /// The `blksize` asked for: 1024 since the 2019-10-08 beta. The
    /// 2022-10-03 beta raised `TFTP_MAX_BLOCKSIZE` to 1468 (default from
    /// 2022-12-01), so current EEPROMs may ask 1468 (not seen on the wire).
    /// `None`: no blksize option, as older bootcode/start.elf
    /// (firmware#1700 trace).
    pub blksize: Option<u16>,
    /// Acknowledge a DATA block received before (release notes 2021-02-16);
    /// `false` reproduces older EEPROMs, which ignored it.
    pub reack_duplicates: bool,
    /// Opt-in: the start4.elf 1.20210928 bug of firmware#1631. A repeat of
    /// the last block received advances the block counter as if the next
    /// block had come (its data is not written) and every later stray DATA
    /// is answered with an ACK of that counter, so the server never gets
    /// the ACK it waits for and the download hangs until the file timeout.
    pub start4_duplicate_hang: bool,
    /// Block numbers wrap 65535 → 0. `false` on the Pi 4 (rpi-eeprom#720;
    /// only the Pi 5 got the fix, rpi-eeprom#755).
    pub rollover: bool,
}

impl Default for Rpi4Settings {
    fn default() -> Self {
        Rpi4Settings {
            file_timeout: Duration::from_secs(30),
            resend_every: Duration::from_secs(2),
            blksize: Some(1024),
            reack_duplicates: true,
            start4_duplicate_hang: false,
            rollover: false,
        }
    }
}

impl Rpi4Settings {
    /// The RRQ this firmware sends for `filename`.
    pub fn request(&self, filename: &str) -> Vec<u8> {
        let blksize = self.blksize.map(|b| b.to_string());
        let mut options = vec![RawOption::new("tsize", "0")];
        if let Some(b) = &blksize {
            options.push(RawOption::new("blksize", b));
        }
        let rrq = Packet::Rrq(Request {
            filename,
            mode: Mode::Octet,
            options,
        });
        let mut buf = vec![0; rrq.emitted_len()];
        let len = rrq.emit(&mut buf).unwrap_or(0);
        buf.truncate(len);
        buf
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The RRQ is out, resent every `resend_every`, and unanswered.
    Requesting,
    /// The server answered; blocks come in.
    Receiving,
    /// The outcome was reported.
    Done,
}

/// How a DATA block number relates to the next block expected.
enum Position {
    Next,
    /// Already received: the index of that block.
    Old(u64),
    /// Ahead, or out of reach (past 65535 without rollover).
    Other,
}

/// A Raspberry Pi 4 bootloader download: RRQ with `tsize 0 blksize 1024`,
/// then lock-step ACKs. See the module docs for the rules and their
/// evidence.
pub struct Rpi4Get<K: Sink> {
    server: SocketAddr,
    settings: Rpi4Settings,
    /// Cut the transfer with ERROR 0 "Early terminate" once block 1 is in.
    probe: bool,
    request: Vec<u8>,
    phase: Phase,
    /// The server's transfer ID, from its first answer.
    peer: Option<SocketAddr>,
    sink: K,
    negotiated: Negotiated,
    /// Blocks counted in (block numbers as a 64-bit index; the start4.elf
    /// bug counts one it never got).
    counter: u64,
    bytes: u64,
    /// What a timeout resends: `None` for the RRQ, else the ACK's block.
    last_ack: Option<u16>,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    next_resend: Instant,
    file_deadline: Instant,
    started: Instant,
    events: VecDeque<Event>,
    counters: Counters,
    resends: u32,
}

impl<K: Sink> Rpi4Get<K> {
    /// A download of `filename` from `server` (port 69 in real life) into
    /// `sink`. The RRQ is the first datagram out.
    pub fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        sink: K,
        settings: &Rpi4Settings,
    ) -> Self {
        Self::with_probe(now, server, filename, sink, settings, false)
    }

    fn with_probe(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        sink: K,
        settings: &Rpi4Settings,
        probe: bool,
    ) -> Self {
        let request = settings.request(filename);
        let mut outbox = VecDeque::new();
        outbox.push_back((server, request.clone()));
        Rpi4Get {
            server,
            settings: *settings,
            probe,
            request,
            phase: Phase::Requesting,
            peer: None,
            sink,
            negotiated: Negotiated::default(),
            counter: 0,
            bytes: 0,
            last_ack: None,
            outbox,
            next_resend: now + settings.resend_every,
            file_deadline: now + settings.file_timeout,
            started: now,
            events: VecDeque::new(),
            counters: Counters::default(),
            resends: 0,
        }
    }

    /// The options as they stand (the server's tsize once the OACK is in).
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    fn queue(&mut self, dest: SocketAddr, datagram: Vec<u8>) {
        self.outbox.push_back((dest, datagram));
    }

    fn queue_ack(&mut self, dest: SocketAddr, block: u16) {
        let mut buf = vec![0; 4];
        let _ = emit_ack(&mut buf, block);
        self.queue(dest, buf);
        self.counters.acks_sent += 1;
    }

    fn queue_error(&mut self, dest: SocketAddr, code: ErrorCode, message: &str) {
        let mut buf = vec![0; 5 + message.len()];
        let len = emit_error(&mut buf, code, message).unwrap_or(0);
        buf.truncate(len);
        self.queue(dest, buf);
    }

    fn finish(&mut self, now: Instant, result: Result<(), TransferError>) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        let result = match result {
            Ok(()) => match self.sink.commit() {
                Ok(()) => Ok(Summary {
                    bytes: self.bytes,
                    blocks: self.counter,
                    retransmissions: self.counters.acks_retransmitted,
                    duration: now.saturating_duration_since(self.started),
                    negotiated: self.negotiated,
                }),
                Err(e) => Err(TransferError::Local {
                    code: ErrorCode::UNDEFINED,
                    message: format!("commit: {e}"),
                }),
            },
            Err(e) => {
                self.sink.abort();
                Err(e)
            }
        };
        self.events.push_back(Event::Finished(result));
    }

    fn fail_local(&mut self, now: Instant, dest: SocketAddr, code: ErrorCode, message: &str) {
        self.queue_error(dest, code, message);
        let error = TransferError::Local {
            code,
            message: message.to_string(),
        };
        self.finish(now, Err(error));
    }

    /// The options are settled: report them once.
    fn settle(&mut self, from: SocketAddr) {
        self.peer = Some(from);
        self.phase = Phase::Receiving;
        self.events.push_back(Event::Negotiated(self.negotiated));
    }

    fn blksize(&self) -> usize {
        usize::from(self.negotiated.blksize)
    }

    fn position(&self, block: u16) -> Position {
        let next = self.counter + 1;
        if self.settings.rollover {
            let distance = i64::from(block.wrapping_sub(next as u16) as i16);
            return match distance {
                0 => Position::Next,
                d if d < 0 && next as i64 + d >= 1 => Position::Old((next as i64 + d) as u64),
                _ => Position::Other,
            };
        }
        // (inferred) A counter that does not wrap: past 65535 no block
        // number matches (rpi-eeprom#720).
        let block = u64::from(block);
        if next > u64::from(u16::MAX) {
            Position::Other
        } else if block == next {
            Position::Next
        } else if block < next && block >= 1 {
            Position::Old(block)
        } else {
            Position::Other
        }
    }

    fn on_oack(&mut self, now: Instant, from: SocketAddr, options: &[RawOption]) {
        if self.phase == Phase::Receiving {
            // A repeated OACK (the server resent it: our ACK 0 was lost).
            if self.counter == 0 && self.settings.reack_duplicates {
                self.counters.acks_retransmitted += 1;
                self.queue_ack(from, 0);
            } else {
                self.counters.ignored += 1;
            }
            return;
        }
        let mut negotiated = Negotiated::default();
        for o in options {
            if o.is("tsize") {
                negotiated.tsize = parse_number(o.value);
            } else if o.is("blksize") {
                let asked = self.settings.blksize.unwrap_or(DEFAULT_BLKSIZE);
                match parse_number(o.value).and_then(|b| u16::try_from(b).ok()) {
                    Some(b)
                        if self.settings.blksize.is_some()
                            && (MIN_BLKSIZE..=asked).contains(&b) =>
                    {
                        negotiated.blksize = b
                    }
                    _ => {
                        return self.fail_local(
                            now,
                            from,
                            ErrorCode::OPTION_NEGOTIATION,
                            "bad blksize",
                        )
                    }
                }
            }
        }
        self.negotiated = negotiated;
        self.settle(from);
        self.last_ack = Some(0);
        self.queue_ack(from, 0);
        self.next_resend = now + self.settings.resend_every;
    }

    fn on_data(&mut self, now: Instant, from: SocketAddr, block: u16, data: &[u8]) {
        if self.phase == Phase::Requesting {
            // (inferred) The server ignored the options: RFC 1350 blocks.
            self.negotiated = Negotiated::default();
            self.settle(from);
        }
        if data.len() > self.blksize() {
            self.counters.ignored += 1;
            return;
        }
        match self.position(block) {
            Position::Next => self.on_next_block(now, from, block, data),
            Position::Old(index) => {
                self.counters.duplicate_data += 1;
                if self.settings.start4_duplicate_hang {
                    // firmware#1631: a repeat of the latest block moves the
                    // counter on; every repeat is answered with the counter.
                    if index == self.counter {
                        self.counter += 1;
                    }
                    self.last_ack = Some(self.counter as u16);
                    self.counters.acks_retransmitted += 1;
                    self.queue_ack(from, self.counter as u16);
                    self.next_resend = now + self.settings.resend_every;
                } else if self.settings.reack_duplicates {
                    // Release notes 2021-02-16: ACK it again.
                    self.counters.acks_retransmitted += 1;
                    self.queue_ack(from, block);
                }
            }
            Position::Other => self.counters.ignored += 1,
        }
    }

    fn on_next_block(&mut self, now: Instant, from: SocketAddr, block: u16, data: &[u8]) {
        if let Err(e) = self.sink.write_at(self.bytes, data) {
            // (inferred) The board cannot store it: give up with ERROR 0.
            let message = format!("write: {}", e.kind());
            return self.fail_local(now, from, ErrorCode::UNDEFINED, &message);
        }
        self.counter += 1;
        self.bytes += data.len() as u64;
        if self.probe {
            // The tsize probe: block 1 is enough.
            return self.fail_local(now, from, ErrorCode::UNDEFINED, EARLY_TERMINATE);
        }
        self.last_ack = Some(block);
        self.queue_ack(from, block);
        self.next_resend = now + self.settings.resend_every;
        if data.len() < self.blksize() {
            self.finish(now, Ok(()));
        }
    }
}

impl<K: Sink> Transfer for Rpi4Get<K> {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.counters.datagrams_received += 1;
        if self.phase == Phase::Done {
            self.counters.ignored += 1;
            return;
        }
        // (inferred) Only the server's host, and once it answered, only its
        // transfer ID; strangers get no ERROR 5.
        if from.ip() != self.server.ip() || self.peer.is_some_and(|p| p != from) {
            self.counters.unknown_tid += 1;
            return;
        }
        let Ok(packet) = Packet::parse(datagram) else {
            self.counters.ignored += 1;
            return;
        };
        match packet {
            Packet::Oack { options } => self.on_oack(now, from, &options),
            Packet::Data { block, data } => self.on_data(now, from, block, data),
            Packet::Error { code, message } => {
                let error = TransferError::Peer {
                    code,
                    message: message.to_string(),
                };
                self.finish(now, Err(error));
            }
            _ => self.counters.ignored += 1,
        }
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let (dest, datagram) = self.outbox.pop_front()?;
        let len = datagram.len().min(buf.len());
        buf[..len].copy_from_slice(&datagram[..len]);
        self.counters.datagrams_sent += 1;
        Some(Transmit { dest, len })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Done => None,
            _ => Some(self.next_resend.min(self.file_deadline)),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        if now >= self.file_deadline {
            self.counters.timeouts += 1;
            let retries = self.resends;
            return self.finish(now, Err(TransferError::TimedOut { retries }));
        }
        if now < self.next_resend {
            return;
        }
        self.counters.timeouts += 1;
        self.resends += 1;
        self.next_resend = now + self.settings.resend_every;
        match (self.last_ack, self.peer) {
            (Some(block), Some(peer)) => {
                self.counters.acks_retransmitted += 1;
                self.queue_ack(peer, block);
            }
            _ => {
                self.counters.control_retransmitted += 1;
                let request = self.request.clone();
                self.queue(self.server, request);
            }
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn is_closed(&self) -> bool {
        self.phase == Phase::Done && self.outbox.is_empty()
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn bytes_transferred(&self) -> u64 {
        self.bytes
    }

    fn max_datagram(&self) -> usize {
        match self.phase {
            Phase::Requesting => MAX_DATAGRAM,
            _ => DATA_HEADER_LEN + self.blksize().max(usize::from(DEFAULT_BLKSIZE)),
        }
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        if self.phase == Phase::Done {
            return;
        }
        let error = TransferError::Local {
            code,
            message: message.to_string(),
        };
        if let Some(peer) = self.peer {
            self.queue_error(peer, code, message);
        }
        // Nothing more goes out but that ERROR.
        self.outbox.retain(|(_, d)| d.get(1) == Some(&5));
        self.finish(self.started, Err(error));
    }
}

/// A sink for the probe's single block: the probe keeps nothing.
#[derive(Debug, Default)]
pub struct Discard;

impl Sink for Discard {
    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn commit(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn abort(&mut self) {}
}

/// The bootloader's tsize probe: the same RRQ as [`Rpi4Get`]; once DATA 1
/// is in it sends ERROR 0 "Early terminate" (not an ACK) and ends with
/// [`TransferError::Local`] carrying that code and message. The size is in
/// [`Rpi4Probe::tsize`] (and in the [`Event::Negotiated`] it reported).
/// The real download is a new [`Rpi4Get`] on a new port.
pub struct Rpi4Probe(Rpi4Get<Discard>);

impl Rpi4Probe {
    pub fn new(now: Instant, server: SocketAddr, filename: &str, settings: &Rpi4Settings) -> Self {
        Rpi4Probe(Rpi4Get::with_probe(
            now, server, filename, Discard, settings, true,
        ))
    }

    /// The size the server announced, once its OACK is in.
    pub fn tsize(&self) -> Option<u64> {
        self.0.negotiated.tsize
    }
}

impl Transfer for Rpi4Probe {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.0.handle_datagram(now, from, datagram)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.0.poll_transmit(now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now)
    }
    fn poll_event(&mut self) -> Option<Event> {
        self.0.poll_event()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
    fn counters(&self) -> Counters {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::firmware::testkit::{
        ack, addr, committed, data, events, local, peer, run, run_with, sent, sent_to, serve,
        SERVER, TID,
    };
    use tftplab::data::{MemSink, SharedSink};

    fn oack(tsize: u64, blksize: u16) -> Vec<u8> {
        let (tsize, blksize) = (tsize.to_string(), blksize.to_string());
        crate::lab::firmware::testkit::oack(&[("tsize", &tsize), ("blksize", &blksize)])
    }

    /// A download of start4.elf, nothing sent yet.
    fn fresh(settings: &Rpi4Settings) -> (Rpi4Get<MemSink>, Instant) {
        let t0 = Instant::now();
        let name = "d9780558/start4.elf";
        (
            Rpi4Get::new(t0, addr(SERVER), name, MemSink::new(), settings),
            t0,
        )
    }

    /// Its RRQ is out.
    fn get(settings: &Rpi4Settings) -> (Rpi4Get<MemSink>, Instant) {
        let (mut m, t0) = fresh(settings);
        let _ = sent(&mut m, t0);
        (m, t0)
    }

    /// Past the OACK: ACK 0 is out.
    fn get_receiving(settings: &Rpi4Settings) -> (Rpi4Get<MemSink>, Instant) {
        let (mut m, t0) = get(settings);
        m.handle_datagram(t0, addr(TID), &oack(5000, 1024));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(0))]);
        (m, t0)
    }

    #[test]
    fn rrq_bytes_are_the_captured_ones() {
        // rpi-eeprom#74: RRQ "d9780558/start4.elf" octet tsize 0 blksize 1024.
        let (mut m, t0) = fresh(&Rpi4Settings::default());
        assert_eq!(
            sent_to(&mut m, t0, addr(SERVER)),
            vec![b"\0\x01d9780558/start4.elf\0octet\0tsize\x000\0blksize\x001024\0".to_vec()]
        );
        // Older firmware (firmware#1700): tsize only.
        let old = Rpi4Settings {
            blksize: None,
            ..Rpi4Settings::default()
        };
        assert_eq!(
            old.request("start.elf"),
            b"\0\x01start.elf\0octet\0tsize\x000\0".to_vec()
        );
    }

    #[test]
    fn rrq_is_resent_every_2s_from_the_same_port_until_the_file_timeout() {
        let (mut m, t0) = get(&Rpi4Settings::default());
        let mut resent = Vec::new();
        let mut now = t0;
        while let Some(at) = m.poll_timeout() {
            now = at;
            m.handle_timeout(now);
            for (dest, d) in sent(&mut m, now) {
                assert_eq!(
                    (dest, d),
                    (
                        addr(SERVER),
                        Rpi4Settings::default().request("d9780558/start4.elf")
                    )
                );
                resent.push(now - t0);
            }
        }
        let expected: Vec<_> = (1..15).map(|s| Duration::from_secs(2 * s)).collect();
        assert_eq!(resent, expected);
        assert_eq!(now - t0, Duration::from_secs(30));
        let ev = events(&mut m);
        assert_eq!(
            ev,
            vec![Event::Finished(Err(TransferError::TimedOut {
                retries: 14
            }))]
        );
        assert!(m.is_closed());
    }

    #[test]
    fn oack_gets_ack_0_and_reports_negotiated_once() {
        let (mut m, t0) = get_receiving(&Rpi4Settings::default());
        let mut n = Negotiated::default();
        n.blksize = 1024;
        n.tsize = Some(5000);
        assert_eq!(events(&mut m), vec![Event::Negotiated(n)]);
        assert_eq!(m.max_datagram(), 1028);
        // A repeated OACK is answered with ACK 0 again (the 2021 re-ACK).
        m.handle_datagram(t0, addr(TID), &oack(5000, 1024));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(0))]);
        assert!(events(&mut m).is_empty());
    }

    #[test]
    fn oack_blksize_above_the_request_is_refused() {
        let (mut m, t0) = get(&Rpi4Settings::default());
        m.handle_datagram(t0, addr(TID), &oack(5000, 1468));
        assert_eq!(
            sent(&mut m, t0),
            vec![(addr(TID), b"\0\x05\0\x08bad blksize\0".to_vec())]
        );
        assert!(matches!(
            &events(&mut m)[..],
            [Event::Finished(Err(TransferError::Local { .. }))]
        ));
    }

    #[test]
    fn download_acks_each_block_and_the_last_once() {
        let (mut m, t0) = get_receiving(&Rpi4Settings::default());
        let _ = events(&mut m);
        m.handle_datagram(t0, addr(TID), &data(1, 1024));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(1))]);
        m.handle_datagram(t0, addr(TID), &data(2, 100));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(2))]);
        let ev = events(&mut m);
        let [Event::Finished(Ok(s))] = &ev[..] else {
            panic!("{ev:?}")
        };
        assert_eq!((s.bytes, s.blocks), (1124, 2));
        assert!(m.is_closed());
        // No dally: a repeat of the last block draws nothing.
        m.handle_datagram(t0, addr(TID), &data(2, 100));
        assert!(sent(&mut m, t0).is_empty());
    }

    #[test]
    fn server_ignoring_options_gives_512_byte_blocks() {
        let (mut m, t0) = get(&Rpi4Settings::default());
        m.handle_datagram(t0, addr(TID), &data(1, 512));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(1))]);
        assert_eq!(
            events(&mut m),
            vec![Event::Negotiated(Negotiated::default())]
        );
        m.handle_datagram(t0, addr(TID), &data(2, 0));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(2))]);
        assert!(matches!(&events(&mut m)[..], [Event::Finished(Ok(_))]));
    }

    #[test]
    fn probe_sends_early_terminate_after_block_1() {
        let t0 = Instant::now();
        let mut p = Rpi4Probe::new(t0, addr(SERVER), "start4.elf", &Rpi4Settings::default());
        assert_eq!(
            sent(&mut p, t0)[0].1,
            b"\0\x01start4.elf\0octet\0tsize\x000\0blksize\x001024\0".to_vec()
        );
        p.handle_datagram(t0, addr(TID), &oack(2_965_216, 1024));
        assert_eq!(sent(&mut p, t0), vec![(addr(TID), ack(0))]);
        assert_eq!(p.tsize(), Some(2_965_216));
        p.handle_datagram(t0, addr(TID), &data(1, 1024));
        assert_eq!(
            sent(&mut p, t0),
            vec![(addr(TID), b"\0\x05\0\0Early terminate\0".to_vec())]
        );
        let ev = events(&mut p);
        assert!(matches!(&ev[0], Event::Negotiated(n) if n.tsize == Some(2_965_216)));
        assert_eq!(
            ev[1],
            Event::Finished(Err(local(ErrorCode::UNDEFINED, EARLY_TERMINATE)))
        );
        assert!(p.is_closed());
    }

    #[test]
    fn duplicate_block_is_reacked_since_2021_and_ignored_before() {
        let (mut m, t0) = get_receiving(&Rpi4Settings::default());
        m.handle_datagram(t0, addr(TID), &data(1, 1024));
        m.handle_datagram(t0, addr(TID), &data(2, 1024));
        let _ = sent(&mut m, t0);
        m.handle_datagram(t0, addr(TID), &data(2, 1024));
        m.handle_datagram(t0, addr(TID), &data(1, 1024));
        assert_eq!(
            sent(&mut m, t0),
            vec![(addr(TID), ack(2)), (addr(TID), ack(1))]
        );
        assert_eq!(m.counters().duplicate_data, 2);

        let old = Rpi4Settings {
            reack_duplicates: false,
            ..Rpi4Settings::default()
        };
        let (mut m, t0) = get_receiving(&old);
        m.handle_datagram(t0, addr(TID), &data(1, 1024));
        let _ = sent(&mut m, t0);
        m.handle_datagram(t0, addr(TID), &data(1, 1024));
        assert!(sent(&mut m, t0).is_empty());
    }

    #[test]
    fn future_block_and_oversized_block_are_dropped() {
        let (mut m, t0) = get_receiving(&Rpi4Settings::default());
        m.handle_datagram(t0, addr(TID), &data(3, 1024));
        m.handle_datagram(t0, addr(TID), &data(1, 1025));
        assert!(sent(&mut m, t0).is_empty());
        assert_eq!(m.bytes_transferred(), 0);
    }

    #[test]
    fn start4_duplicate_hang_acks_a_block_never_received() {
        // firmware#1631: DATA N twice → ACK N+1, and ACK N+1 for every
        // later repeat of N; the server (waiting for ACK N) never moves.
        let bug = Rpi4Settings {
            start4_duplicate_hang: true,
            ..Rpi4Settings::default()
        };
        let (mut m, t0) = get_receiving(&bug);
        m.handle_datagram(t0, addr(TID), &data(1, 1024));
        m.handle_datagram(t0, addr(TID), &data(2, 1024));
        let _ = sent(&mut m, t0);
        for _ in 0..3 {
            m.handle_datagram(t0, addr(TID), &data(2, 1024));
        }
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(3)); 3]);
        // Its timer resends ACK 3 too, and the file timeout ends it.
        let t = m.poll_timeout().unwrap();
        m.handle_timeout(t);
        assert_eq!(sent(&mut m, t), vec![(addr(TID), ack(3))]);
        m.handle_timeout(t0 + Duration::from_secs(30));
        assert!(matches!(
            &events(&mut m)[..],
            [.., Event::Finished(Err(TransferError::TimedOut { .. }))]
        ));
        assert_eq!(m.bytes_transferred(), 2048);
    }

    #[test]
    fn lost_ack_is_resent_every_2s() {
        let (mut m, t0) = get_receiving(&Rpi4Settings::default());
        m.handle_datagram(t0, addr(TID), &data(1, 1024));
        let _ = sent(&mut m, t0);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        m.handle_timeout(t0 + Duration::from_secs(2));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(1))]);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(4)));
    }

    #[test]
    fn strangers_are_dropped_silently() {
        let (mut m, t0) = get_receiving(&Rpi4Settings::default());
        m.handle_datagram(t0, addr("10.0.0.1:50001"), &data(1, 1024));
        m.handle_datagram(t0, addr("10.0.0.9:50000"), &data(1, 1024));
        assert!(sent(&mut m, t0).is_empty());
        assert_eq!(m.counters().unknown_tid, 2);
        assert_eq!(m.bytes_transferred(), 0);
    }

    #[test]
    fn server_error_ends_it_with_nothing_sent() {
        let (mut m, t0) = get(&Rpi4Settings::default());
        m.handle_datagram(t0, addr(TID), b"\0\x05\0\x01File not found\0");
        assert!(sent(&mut m, t0).is_empty());
        assert_eq!(
            events(&mut m),
            vec![Event::Finished(Err(peer(
                ErrorCode::FILE_NOT_FOUND,
                "File not found"
            )))]
        );
    }

    /// Feeds blocks 1..=65535 of 8 bytes (the smallest blksize).
    fn past_65535(settings: &Rpi4Settings) -> (Rpi4Get<MemSink>, Instant) {
        let settings = Rpi4Settings {
            blksize: Some(8),
            ..*settings
        };
        let (mut m, t0) = get(&settings);
        m.handle_datagram(t0, addr(TID), &oack(1 << 20, 8));
        for block in 1..=u16::MAX {
            m.handle_datagram(t0, addr(TID), &data(block, 8));
        }
        assert_eq!(m.bytes_transferred(), 65535 * 8);
        let _ = sent(&mut m, t0);
        (m, t0)
    }

    #[test]
    fn no_rollover_on_pi4_stalls_after_block_65535() {
        let (mut m, t0) = past_65535(&Rpi4Settings::default());
        m.handle_datagram(t0, addr(TID), &data(0, 8));
        assert!(sent(&mut m, t0).is_empty());
        assert_eq!(m.bytes_transferred(), 65535 * 8);

        let pi5 = Rpi4Settings {
            rollover: true,
            ..Rpi4Settings::default()
        };
        let (mut m, t0) = past_65535(&pi5);
        m.handle_datagram(t0, addr(TID), &data(0, 8));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(0))]);
        m.handle_datagram(t0, addr(TID), &data(1, 3));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(1))]);
        assert!(matches!(&events(&mut m)[..], [.., Event::Finished(Ok(s))] if s.blocks == 65537));
    }

    #[test]
    fn abort_sends_error_to_the_peer() {
        let (mut m, t0) = get_receiving(&Rpi4Settings::default());
        m.abort(ErrorCode::UNDEFINED, "stop");
        assert_eq!(
            sent(&mut m, t0),
            vec![(addr(TID), b"\0\x05\0\0stop\0".to_vec())]
        );
        assert!(m.is_closed());
    }

    /// The probe then the real download from a new port, over loopback,
    /// against tftplab's server.
    #[tokio::test]
    async fn probe_then_download_over_loopback() -> Result<(), Box<dyn std::error::Error>> {
        use tftplab::runtime::{now, Control};
        let file: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (_dir, server) = serve(&[("start4.elf", &file)]).await?;
        let at = server.local_addr();
        let settings = Rpi4Settings::default();

        let probe = Rpi4Probe::new(now(), at, "start4.elf", &settings);
        let mut tsize = None;
        let on_event = |e: &Event| {
            if let Event::Negotiated(n) = e {
                tsize = n.tsize;
            }
            Control::Continue
        };
        let probed = run_with(probe, at, on_event).await;
        assert_eq!(
            probed,
            Some(Err(local(ErrorCode::UNDEFINED, EARLY_TERMINATE)))
        );
        assert_eq!(tsize, Some(5000));

        let sink = SharedSink::new();
        let get = Rpi4Get::new(now(), at, "start4.elf", sink.clone(), &settings);
        let summary = run(get, at).await.expect("an outcome")?;
        assert_eq!(
            (summary.bytes, summary.blocks, summary.negotiated.blksize),
            (5000, 5, 1024)
        );
        assert_eq!(committed(&sink), file);
        server.stop(Duration::from_secs(1)).await;
        Ok(())
    }

    /// As in firmware#1700: the real RRQ leaves from a new port as soon as
    /// the probe's OACK is in, so the two transfers of one file overlap on
    /// the server.
    #[tokio::test]
    async fn download_overlapping_the_probe_over_loopback() -> Result<(), Box<dyn std::error::Error>>
    {
        use tftplab::runtime::{now, Control};
        let file: Vec<u8> = (0..20_000u32).map(|i| (i * 11 % 253) as u8).collect();
        let (_dir, server) = serve(&[("start4.elf", &file)]).await?;
        let at = server.local_addr();
        let settings = Rpi4Settings::default();

        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let probe = Rpi4Probe::new(now(), at, "start4.elf", &settings);
        let on_event = move |e: &Event| {
            if let (Event::Negotiated(_), Some(tx)) = (e, tx.take()) {
                let _ = tx.send(());
            }
            Control::Continue
        };
        let probing = tokio::spawn(run_with(probe, at, on_event));
        rx.await?;
        let sink = SharedSink::new();
        let get = Rpi4Get::new(now(), at, "start4.elf", sink.clone(), &settings);
        let got = run(get, at).await;
        assert_eq!(got.expect("an outcome")?.bytes, 20_000);
        assert_eq!(sink.snapshot().data, file);
        let probed = probing.await?;
        assert!(matches!(
            probed,
            Some(Err(TransferError::Local {
                code: ErrorCode::UNDEFINED,
                ..
            }))
        ));
        server.stop(Duration::from_secs(1)).await;
        Ok(())
    }
}
