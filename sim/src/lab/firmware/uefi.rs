//! UEFI PXE boot: EDK2's MTFTP4 driver (`NetworkPkg/Mtftp4Dxe`) as driven by
//! the PXE base code (`NetworkPkg/UefiPxeBcDxe`), tag `edk2-stable202211`,
//! the build in Debian bookworm's OVMF (2022.11).
//!
//! A PXE boot makes two MTFTP4 calls, each on its own UDP child (a new local
//! port, normally the previous one + 1, `Udp4Driver.c`), each a machine
//! here:
//!
//! 1. [`UefiPxeProbe`]: `PxeBcMtftp4GetFileSize` (`PxeBcMtftp.c`) asks
//!    `tsize 0 blksize 1468 windowsize 4` through `EfiMtftp4GetInfo`, whose
//!    `CheckPacket` (`Mtftp4GetInfoCheckPacket`, `Mtftp4Impl.c`) aborts on the
//!    first OACK: the server gets ERROR 8 "User aborted the transfer" and
//!    the probe reports the OACK's tsize. It is skipped when DHCP option 13
//!    gives the size (`PxeBcBoot.c`, `PxeBcLoadBootFile`).
//! 2. [`UefiPxeGet`]: `PxeBcMtftp4ReadFile` asks `blksize 1468 windowsize 4`
//!    (no tsize) into a buffer of exactly the probed size
//!    ([`UefiPxeGet::with_buffer_size`]).
//!
//! Both share one receive engine, `Mtftp4RrqInput` / `Mtftp4RrqHandleData`
//! / `Mtftp4RrqHandleOack` (`Mtftp4Rrq.c`) with the timer of
//! `Mtftp4Support.c`. Line numbers below are those of
//! `git show edk2-stable202211:<path>`. The rules, each cited on the code
//! that follows it:
//!
//! - in-order only; every out-of-order, duplicate or old DATA draws an ACK
//!   of the last in-order block at once, with no suppression, and that ACK
//!   re-bases the window count (`AckedBlock = TotalBlock`);
//! - an in-order block is ACKed when `TotalBlock - AckedBlock == WindowSize`,
//!   and the last block (shorter than blksize) always;
//! - a bad OACK is answered with ERROR 4 "Malformatted OACK packet" (not 8);
//!   an OACK after DATA has started is ignored;
//! - the timer restarts on every send only (not on received DATA); it is a
//!   1 s tick counting down `Timeout` (4 s for PXE), so it fires 3-4 s after
//!   a send; it retransmits the last packet verbatim, no backoff, and gives
//!   up silently on the 6th expiry (`TryCount` 6);
//! - any ERROR ends the transfer with no reply; the server's port is latched
//!   from the first datagram and other ports are dropped without ERROR 5.
//!
//! Version differences: Mtftp4Dxe is functionally unchanged from 202211 to
//! current master (one cosmetic change in `Mtftp4Rrq.c`); the `timeout`
//! option bug (`Mtftp4ParseOption` never sets `MTFTP4_TIMEOUT_EXIST`) is
//! still there. `PcdPxeTftpWindowSize` (default 4) exists since
//! edk2-stable201811: older OVMF builds ask no windowsize (W = 1). PxeBc's
//! recording of a received ERROR's code was fixed in 2024 (c1548908c9), with
//! no effect on the wire. Debian's bookworm security patches (PixieFail) touch
//! the DHCP6/IP6/PxeBc option parsers, not Mtftp4 (not verified patch by
//! patch).

use super::{ack_packet, error_packet, OP_DATA, OP_ERROR, OP_OACK, OP_RRQ};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tftplab::data::Sink;
use tftplab::options::Negotiated;
use tftplab::proto::{Counters, Event, Summary, Transfer, TransferError, Transmit};
use tftplab::wire::{ErrorCode, MAX_DATAGRAM};

/// ERROR the probe answers its OACK with: `EFI_MTFTP4_ERRORCODE_REQUEST_DENIED`
/// (8) and this text (`Mtftp4RrqInput`, Mtftp4Rrq.c L740-744).
pub const PROBE_ABORT_MESSAGE: &str = "User aborted the transfer";
/// ERROR 4 for a DATA reaching a probe's `CheckPacket`
/// (`Mtftp4RrqSaveBlock`, Mtftp4Rrq.c L182-186).
pub const PROBE_DATA_MESSAGE: &str = "User aborted download";
/// ERROR 4 for a rejected OACK (`Mtftp4RrqHandleOack`, Mtftp4Rrq.c L523-527).
pub const BAD_OACK_MESSAGE: &str = "Malformatted OACK packet";
/// ERROR 3 when the file outgrows the caller's buffer (`Mtftp4RrqSaveBlock`,
/// Mtftp4Rrq.c L212-216).
pub const BUFFER_TOO_SMALL_MESSAGE: &str = "User provided memory block is too small";

/// The PXE base code's MTFTP4 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// blksize asked for: `Private->BlockSize = Ip4MaxPacketSize - 8 - 4`,
    /// 1500 - 20 - 12 = 1468 on Ethernet (PxeBcDriver.c L729) unless
    /// `PcdTftpBlockSize` is set (default 0, NetworkPkg.dec L121). `None`
    /// asks no blksize.
    pub blksize: Option<u16>,
    /// `PcdPxeTftpWindowSize`, default 4 (NetworkPkg.dec L114); asked only
    /// when > 1 (`EfiPxeBcMtftp`, PxeBcImpl.c L876, L934).
    pub windowsize: u16,
    /// Seconds counted down per send: `PXEBC_MTFTP_TIMEOUT` 4 (PxeBcImpl.h
    /// L67). 0 means the driver's own default, `MTFTP4_DEFAULT_TIMEOUT` 3
    /// (`Mtftp4Start`, Mtftp4Impl.c L477-479). No `timeout` option is sent.
    pub timeout_secs: u8,
    /// `PXEBC_MTFTP_RETRIES` 6 (PxeBcImpl.h L68): the transfer ends on the
    /// expiry that makes `++CurRetry` reach it, so 5 retransmissions. 0
    /// means `MTFTP4_DEFAULT_RETRY` 5 (Mtftp4Impl.c L473-475).
    pub try_count: u32,
    /// When the driver's periodic 1 s timer (Mtftp4Driver.c L296, L302)
    /// first ticks after the machine starts, in (0, 1 s]. A send arms
    /// `PacketToLive = Timeout` and each tick decrements it, so a packet
    /// times out on the `Timeout`-th tick after it was sent: 3-4 s later
    /// for PXE depending on this phase.
    pub tick_phase: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            blksize: Some(1468),
            windowsize: 4,
            timeout_secs: 4,
            try_count: 6,
            tick_phase: Duration::from_secs(1),
        }
    }
}

/// Which MTFTP4 call runs: the token's `CheckPacket` differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// `PxeBcMtftp4ReadFile`: `PxeBcMtftp4CheckPacket`, which without a PXE
    /// callback protocol always continues (PxeBcMtftp.c L518-573).
    ReadFile,
    /// `EfiMtftp4GetInfo`: `Mtftp4GetInfoCheckPacket` aborts on the first
    /// packet it sees (Mtftp4Impl.c L108-161).
    GetInfo,
}

/// A sink for the probe, which never stores data.
#[derive(Debug, Default)]
pub struct NoData;

impl Sink for NoData {
    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn commit(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn abort(&mut self) {}
}

/// Options as `Mtftp4ParseOption` sees them (Mtftp4Option.c L400-495).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Mtftp4Option {
    blksize: Option<u16>,
    windowsize: Option<u16>,
    /// Parsed and applied, but never flagged as present: see
    /// [`parse_oack`].
    timeout: Option<u8>,
    tsize: Option<u32>,
    multicast: bool,
}

/// `NetStringToU32` (Mtftp4Option.c L71-87): the leading digits, wrapping
/// like the C `UINT32` does; anything after them is ignored.
fn net_string_to_u32(s: &[u8]) -> u32 {
    s.iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u32, |n, c| {
            n.wrapping_mul(10).wrapping_add(u32::from(c - b'0'))
        })
}

/// `Mtftp4ExtractOptions` + `Mtftp4FillOptions` (Mtftp4Option.c L159-289):
/// the last byte must be NUL and every name needs a value; `None` for a
/// malformed packet. `d` is the whole OACK, opcode included.
fn extract_options(d: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut options = Vec::new();
    if d.len() == 2 {
        return Some(options);
    }
    if d.last() != Some(&0) {
        return None;
    }
    let last = d.len() - 1;
    let mut cur = 2;
    while cur < last {
        let name = cur;
        while d[cur] != 0 {
            cur += 1;
        }
        if cur == last {
            return None;
        }
        let name = &d[name..cur];
        cur += 1;
        let value = cur;
        while d[cur] != 0 {
            cur += 1;
        }
        options.push((name, &d[value..cur]));
        cur += 1;
    }
    Some(options)
}

/// `Mtftp4ParseOptionOack` (Mtftp4Option.c L512-537) with
/// `Mtftp4ParseOption(Request = FALSE)` (L400-495): blksize must be
/// 8..=65464, timeout 1..=255, windowsize >= 1 (then cut to 16 bits);
/// unknown names are ignored. The `timeout` branch (L434-444) never sets
/// `MTFTP4_TIMEOUT_EXIST`, so `Mtftp4RrqOackValid` cannot reject it, and its
/// value still replaces the client's timeout (Mtftp4Rrq.c L624-626).
/// `None` when the packet or a value is malformed.
fn parse_oack(d: &[u8]) -> Option<Mtftp4Option> {
    let mut reply = Mtftp4Option::default();
    for (name, value) in extract_options(d)? {
        let n = net_string_to_u32(value);
        if name.eq_ignore_ascii_case(b"blksize") {
            if !(8..=65464).contains(&n) {
                return None;
            }
            reply.blksize = Some(n as u16);
        } else if name.eq_ignore_ascii_case(b"timeout") {
            if !(1..=255).contains(&n) {
                return None;
            }
            reply.timeout = Some(n as u8);
        } else if name.eq_ignore_ascii_case(b"tsize") {
            reply.tsize = Some(n);
        } else if name.eq_ignore_ascii_case(b"multicast") {
            // Unicast PXE never asks for it, so `Mtftp4RrqOackValid`
            // rejects it whatever its syntax (`Mtftp4ExtractMcast` would
            // reject a malformed one first; same answer).
            reply.multicast = true;
        } else if name.eq_ignore_ascii_case(b"windowsize") {
            if n < 1 {
                return None;
            }
            reply.windowsize = Some(n as u16);
        }
    }
    Some(reply)
}

/// The tsize a probe reports (`PxeBcMtftp4GetFileSize`, PxeBcMtftp.c
/// L681-704): `EfiMtftp4ParseOptions` must find at least one option
/// (Mtftp4Impl.c L731-757), then the options are scanned from last to first
/// with a case-sensitive 5-byte prefix compare against "tsize", so the first
/// matching option in the packet wins; its value goes through
/// `AsciiStrDecimalToUint64` (leading blanks skipped, digits up to the first
/// other byte). `None` is `EFI_NOT_FOUND`: the boot fails.
fn probe_tsize(d: &[u8]) -> Option<u64> {
    let options = extract_options(d)?;
    let mut size = None;
    for (name, value) in options.iter().rev() {
        if name.len() >= 5 && &name[..5] == b"tsize" {
            let digits = value
                .iter()
                .skip_while(|c| **c == b' ' || **c == b'\t')
                .take_while(|c| c.is_ascii_digit());
            size = Some(digits.fold(0u64, |n, c| {
                n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
            }));
        }
    }
    size
}

/// Where a packet goes: `Mtftp4SendPacket` / `Mtftp4Retransmit` send
/// requests to `ListeningPort` and everything else to `ConnectedPort`
/// (Mtftp4Support.c L468-475, L526-532).
fn is_request(packet: &[u8]) -> bool {
    packet.len() >= 2 && u16::from_be_bytes([packet[0], packet[1]]) == OP_RRQ
}

// `Mtftp4SendError` (Mtftp4Support.c L352-377) sends opcode, code, the
// message and its NUL (`EFI_MTFTP4_ERROR_HEADER` is packed, 5 bytes with
// one message byte): [`error_packet`]'s bytes.

/// The engine both PXE calls run: one `MTFTP4_PROTOCOL` instance from
/// `Mtftp4Start` to `Mtftp4CleanOperation`.
#[derive(Debug)]
struct Mtftp4<K: Sink> {
    operation: Operation,
    /// `ServerIp` and `ListeningPort` (69).
    server: SocketAddr,
    /// `ConnectedPort`, 0 until the first reply (Mtftp4Rrq.c L692-698).
    connected_port: u16,
    /// What the RRQ asked, for `Mtftp4RrqOackValid`.
    requested: Mtftp4Option,
    blksize: u16,
    windowsize: u16,
    timeout_secs: u8,
    max_retry: u32,
    cur_retry: u32,
    /// The continuous number of the expected block (1 first); its low 16
    /// bits are `Mtftp4GetNextBlockNum`, the head of the one range a
    /// unicast download ever has ([1, 0xffff], restarting at 0 with a new
    /// round after 65535, `Mtftp4RemoveBlockNum`, Mtftp4Support.c L159-246).
    next: u64,
    total_block: u64,
    acked_block: u64,
    /// `Instance->LastBlock`: the wire number of the short block, 0 until
    /// then.
    last_block: u16,
    /// `Token->BufferSize` for a read into a fixed buffer.
    buffer_size: Option<u64>,
    sink: K,
    written: u64,
    /// `LastPacket`: what a timeout retransmits.
    last_packet: Vec<u8>,
    out: VecDeque<(Vec<u8>, SocketAddr)>,
    deadline: Option<Instant>,
    tick_origin: Instant,
    events: VecDeque<Event>,
    negotiated: Negotiated,
    negotiated_reported: bool,
    finished: bool,
    counters: Counters,
    retransmissions: u64,
    started: Instant,
    /// The latest time handed in, for `abort`, which has no clock.
    last_seen: Instant,
}

impl<K: Sink> Mtftp4<K> {
    fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        sink: K,
        settings: &Settings,
        operation: Operation,
    ) -> Self {
        let windowsize = (settings.windowsize > 1).then_some(settings.windowsize);
        let requested = Mtftp4Option {
            blksize: settings.blksize,
            windowsize,
            timeout: None,
            tsize: (operation == Operation::GetInfo).then_some(0),
            multicast: false,
        };
        // The option order is the caller's: tsize, blksize, windowsize for
        // the probe (PxeBcMtftp.c L629-647), blksize, windowsize for the
        // read (L765-777); `Mtftp4SendRequest` copies them in that order
        // after the filename and "octet" (Mtftp4Support.c L259-337).
        let mut rrq = OP_RRQ.to_be_bytes().to_vec();
        let mut field = |s: &str| {
            rrq.extend_from_slice(s.as_bytes());
            rrq.push(0);
        };
        field(filename);
        field("octet");
        if operation == Operation::GetInfo {
            field("tsize");
            field("0");
        }
        if let Some(b) = settings.blksize {
            field("blksize");
            field(&b.to_string());
        }
        if let Some(w) = windowsize {
            field("windowsize");
            field(&w.to_string());
        }
        let mut m = Mtftp4 {
            operation,
            server,
            connected_port: 0,
            requested,
            // `Mtftp4Start` (Mtftp4Impl.c L441-442): the RFC 1350 values
            // until an OACK says otherwise.
            blksize: 512,
            windowsize: 1,
            timeout_secs: if settings.timeout_secs == 0 {
                3
            } else {
                settings.timeout_secs
            },
            max_retry: if settings.try_count == 0 {
                5
            } else {
                settings.try_count
            },
            cur_retry: 0,
            next: 1,
            total_block: 0,
            acked_block: 0,
            last_block: 0,
            buffer_size: None,
            sink,
            written: 0,
            last_packet: Vec::new(),
            out: VecDeque::new(),
            deadline: None,
            tick_origin: now + settings.tick_phase.max(Duration::from_nanos(1)),
            events: VecDeque::new(),
            negotiated: Negotiated::default(),
            negotiated_reported: false,
            finished: false,
            counters: Counters::default(),
            retransmissions: 0,
            started: now,
            last_seen: now,
        };
        // `Mtftp4RrqStart` (Mtftp4Rrq.c L45-71): the RRQ goes out at once.
        m.send_packet(now, rrq);
        m
    }

    /// The instant of the `Timeout`-th 1 s tick strictly after `now`
    /// (`Mtftp4SetTimeout` L409-418 and `Mtftp4OnTimerTickNotifyLevel`
    /// L561-585: `PacketToLive` is decremented on each tick and expires
    /// when it reaches 0). A tick at `now` itself has already run: the
    /// retransmission happens inside the tick handler, after the decrement.
    fn expiry_after(&self, now: Instant) -> Instant {
        let first = self.tick_origin;
        let ticks_passed = if now < first {
            0
        } else {
            (now - first).as_secs() + 1
        };
        first + Duration::from_secs(ticks_passed + u64::from(self.timeout_secs) - 1)
    }

    fn dest_of(&self, packet: &[u8]) -> SocketAddr {
        if is_request(packet) {
            self.server
        } else {
            SocketAddr::new(self.server.ip(), self.connected_port)
        }
    }

    /// `Mtftp4SendPacket` (Mtftp4Support.c L435-493): the packet becomes
    /// `LastPacket`, **`CurRetry = 0`** and the timer restarts, on every
    /// send: RRQ, every ACK (gap and duplicate ACKs included) and ERROR.
    fn send_packet(&mut self, now: Instant, packet: Vec<u8>) {
        self.cur_retry = 0;
        self.deadline = Some(self.expiry_after(now));
        let dest = self.dest_of(&packet);
        self.out.push_back((packet.clone(), dest));
        self.last_packet = packet;
    }

    /// `Mtftp4RrqSendAck` (Mtftp4Rrq.c L85-117): every ACK re-bases the
    /// window count, `AckedBlock = TotalBlock` (L111-114).
    fn send_ack(&mut self, now: Instant, block: u16) {
        self.counters.acks_sent += 1;
        self.send_packet(now, ack_packet(block));
        self.acked_block = self.total_block;
    }

    fn send_error(&mut self, now: Instant, code: ErrorCode, message: &str) {
        self.send_packet(now, error_packet(code, message));
    }

    fn report_negotiated(&mut self) {
        if !self.negotiated_reported {
            self.negotiated_reported = true;
            self.negotiated.blksize = self.blksize;
            self.negotiated.windowsize = self.windowsize;
            self.events.push_back(Event::Negotiated(self.negotiated));
        }
    }

    /// `Mtftp4CleanOperation` (Mtftp4Impl.c L20-90): the UDP child goes
    /// away; nothing else is sent and nothing more is received.
    fn finish(&mut self, now: Instant, result: Result<(), TransferError>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.deadline = None;
        let result = match result {
            Ok(()) => match self.sink.commit() {
                Ok(()) => Ok(()),
                Err(e) => Err(TransferError::Local {
                    code: ErrorCode::UNDEFINED,
                    message: format!("commit: {e}"),
                }),
            },
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.sink.abort();
        }
        let result = result.map(|()| Summary {
            bytes: self.written,
            blocks: self.total_block,
            retransmissions: self.retransmissions,
            duration: now.saturating_duration_since(self.started),
            negotiated: self.negotiated,
        });
        self.events.push_back(Event::Finished(result));
    }

    fn fail_local(&mut self, now: Instant, code: ErrorCode, message: &str) {
        self.send_error(now, code, message);
        self.finish(
            now,
            Err(TransferError::Local {
                code,
                message: message.to_string(),
            }),
        );
    }

    /// `Mtftp4RrqInput` (Mtftp4Rrq.c L647-804).
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, d: &[u8]) {
        if self.finished {
            return;
        }
        self.last_seen = self.last_seen.max(now);
        self.counters.datagrams_received += 1;
        // The UDP child is configured with `RemoteAddress = ServerIp`
        // (`Mtftp4ConfigUnicastPort`, Mtftp4Impl.c L279-333): datagrams
        // from any other address never reach MTFTP.
        if from.ip() != self.server.ip() {
            self.counters.ignored += 1;
            return;
        }
        // L682-684: shorter than an opcode.
        if d.len() < 2 {
            self.counters.ignored += 1;
            return;
        }
        // L692-698: the first reply's source port is latched, whatever the
        // packet is; later datagrams from other ports are dropped without
        // ERROR 5.
        if self.connected_port == 0 {
            self.connected_port = from.port();
        } else if from.port() != self.connected_port {
            self.counters.unknown_tid += 1;
            return;
        }
        let opcode = u16::from_be_bytes([d[0], d[1]]);
        // L725-750: `CheckPacket` sees every OACK and ERROR before
        // anything else looks at them. The probe's always aborts; an OACK
        // is answered with ERROR 8 "User aborted the transfer" (an ERROR
        // is not answered).
        if self.operation == Operation::GetInfo && opcode == OP_OACK {
            self.send_error(now, ErrorCode::OPTION_NEGOTIATION, PROBE_ABORT_MESSAGE);
            match probe_tsize(d) {
                Some(size) => {
                    self.negotiated.tsize = Some(size);
                    if let Some(reply) = parse_oack(d) {
                        self.blksize = reply.blksize.unwrap_or(self.blksize);
                        self.windowsize = reply.windowsize.unwrap_or(self.windowsize);
                        self.negotiated.timeout = reply.timeout;
                    }
                    self.report_negotiated();
                    self.finish(now, Ok(()));
                }
                None => self.finish(
                    now,
                    Err(TransferError::Local {
                        code: ErrorCode::OPTION_NEGOTIATION,
                        message: format!(
                            "{PROBE_ABORT_MESSAGE} (the OACK carried no tsize: EFI_NOT_FOUND)"
                        ),
                    }),
                ),
            }
            return;
        }
        match opcode {
            OP_DATA => {
                // L754-758: longer than 4 + BlkSize or shorter than the
                // header: dropped (the port is latched all the same).
                if d.len() > 4 + usize::from(self.blksize) || d.len() < 4 {
                    self.counters.ignored += 1;
                    return;
                }
                let block = u16::from_be_bytes([d[2], d[3]]);
                self.handle_data(now, block, &d[4..]);
            }
            OP_OACK => {
                // L764-766: an OACK with no options is ignored.
                if d.len() <= 2 {
                    self.counters.ignored += 1;
                    return;
                }
                self.handle_oack(now, d);
            }
            // L771-773: any ERROR, whatever its code, ends the operation
            // (EFI_TFTP_ERROR); nothing is sent back.
            OP_ERROR => {
                let code = if d.len() >= 4 {
                    ErrorCode(u16::from_be_bytes([d[2], d[3]]))
                } else {
                    ErrorCode(0)
                };
                let text = d.get(4..).unwrap_or_default();
                let text = text.split(|&c| c == 0).next().unwrap_or_default();
                let message = String::from_utf8_lossy(text).into_owned();
                self.finish(now, Err(TransferError::Peer { code, message }));
            }
            // L775-776: anything else is ignored.
            _ => self.counters.ignored += 1,
        }
    }

    /// `Mtftp4RrqHandleOack` (Mtftp4Rrq.c L483-634).
    fn handle_oack(&mut self, now: Instant, d: &[u8]) {
        // L502-507: once a block is in (the range head is no longer 1), an
        // OACK is ignored without reply. Before that every OACK, a
        // duplicate included, is validated and ACKed again.
        let expected = self.next as u16;
        if expected != 1 {
            self.counters.ignored += 1;
            return;
        }
        // L514-531 with `Mtftp4RrqOackValid` (L340-381): an option that was
        // not asked for (`Reply.Exist & ~Request.Exist`), a larger blksize
        // or windowsize, or a malformed packet or value: ERROR 4.
        let reply = parse_oack(d).filter(|r| {
            let unrequested = (r.blksize.is_some() && self.requested.blksize.is_none())
                || (r.windowsize.is_some() && self.requested.windowsize.is_none())
                || (r.tsize.is_some() && self.requested.tsize.is_none())
                || r.multicast;
            let larger =
                r.blksize > self.requested.blksize || r.windowsize > self.requested.windowsize;
            !unrequested && !larger
        });
        let Some(reply) = reply else {
            self.fail_local(now, ErrorCode::ILLEGAL_OPERATION, BAD_OACK_MESSAGE);
            return;
        };
        // L613-627: whatever the OACK carries replaces the defaults.
        if let Some(b) = reply.blksize {
            self.blksize = b;
        }
        if let Some(w) = reply.windowsize {
            self.windowsize = w;
        }
        if let Some(t) = reply.timeout {
            self.timeout_secs = t;
            self.negotiated.timeout = Some(t);
        }
        self.negotiated.tsize = reply.tsize.map(u64::from);
        self.report_negotiated();
        // L633: ACK (Expected - 1), which is ACK 0.
        self.send_ack(now, expected.wrapping_sub(1));
    }

    /// `Mtftp4RrqHandleData` (Mtftp4Rrq.c L241-320) and
    /// `Mtftp4RrqSaveBlock` (L134-223).
    fn handle_data(&mut self, now: Instant, block: u16, data: &[u8]) {
        let expected = self.next as u16;
        // L266-271: a unicast client is always Master: any block but the
        // expected one (duplicate, old or ahead) draws ACK (Expected - 1)
        // at once and is not stored. No suppression: every such datagram
        // is answered, and each answer re-bases the window count.
        if block != expected {
            if i16::from_be_bytes(block.wrapping_sub(expected).to_be_bytes()) < 0 {
                self.counters.duplicate_data += 1;
            } else {
                self.counters.ignored += 1;
            }
            self.counters.acks_retransmitted += 1;
            self.retransmissions += 1;
            self.send_ack(now, expected.wrapping_sub(1));
            return;
        }
        // No OACK came: the server ignored the options, so 512 and W = 1.
        self.report_negotiated();
        // L157-161: a block shorter than BlkSize is the last one.
        let completed = data.len() < usize::from(self.blksize);
        if completed {
            self.last_block = block;
        }
        // L178-190: the probe's `CheckPacket` aborts on the first DATA with
        // ERROR 4 "User aborted download" (GetInfo returns
        // EFI_PROTOCOL_ERROR and the boot fails).
        if self.operation == Operation::GetInfo {
            self.fail_local(now, ErrorCode::ILLEGAL_OPERATION, PROBE_DATA_MESSAGE);
            return;
        }
        // L192-220: stored at (continuous counter - 1) * BlkSize if it fits
        // the buffer; a block that does not fit is dropped but still
        // counted and ACKed, until the last one, which fails with ERROR 3.
        let start = (self.next - 1) * u64::from(self.blksize);
        let fits = self
            .buffer_size
            .is_none_or(|size| start + data.len() as u64 <= size);
        if fits {
            if let Err(e) = self.sink.write_at(start, data) {
                // Not a firmware path (it copies into memory): reported
                // as a local failure with nothing sent.
                self.finish(
                    now,
                    Err(TransferError::Local {
                        code: ErrorCode::UNDEFINED,
                        message: format!("sink: {e}"),
                    }),
                );
                return;
            }
            self.written = start + data.len() as u64;
        } else if self.last_block != 0 {
            self.fail_local(now, ErrorCode::DISK_FULL, BUFFER_TOO_SMALL_MESSAGE);
            return;
        }
        self.next += 1;
        // L282: `TotalBlock++`.
        self.total_block += 1;
        if completed {
            // L300-316: the range list is empty: ACK LastBlock whatever the
            // window position, then `Mtftp4CleanOperation` (L801-804). No
            // dally: a retransmitted last block finds the port closed.
            let last = self.last_block;
            self.send_ack(now, last);
            self.finish(now, Ok(()));
            return;
        }
        // L314: ACK (Expected - 1), this block, once `WindowSize` in-order
        // blocks have come since the last ACK of any kind.
        if u64::from(self.windowsize) == self.total_block - self.acked_block {
            self.send_ack(now, block);
        }
    }

    /// `Mtftp4OnTimerTick` (Mtftp4Support.c L596-650).
    fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if self.finished || now < deadline {
            return;
        }
        self.last_seen = self.last_seen.max(now);
        self.counters.timeouts += 1;
        // L642-648: retransmit `LastPacket` verbatim while `++CurRetry <
        // MaxRetry`, re-arming with the same Timeout (no backoff);
        // otherwise end with EFI_TIMEOUT, sending nothing.
        self.cur_retry += 1;
        if self.cur_retry < self.max_retry {
            let packet = self.last_packet.clone();
            let dest = self.dest_of(&packet);
            if is_request(&packet) {
                self.counters.control_retransmitted += 1;
            } else {
                self.counters.acks_retransmitted += 1;
                self.retransmissions += 1;
            }
            self.out.push_back((packet, dest));
            self.deadline = Some(self.expiry_after(now));
        } else {
            let retries = self.cur_retry - 1;
            self.finish(now, Err(TransferError::TimedOut { retries }));
        }
    }

    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let (packet, dest) = self.out.pop_front()?;
        let len = packet.len().min(buf.len());
        buf[..len].copy_from_slice(&packet[..len]);
        self.counters.datagrams_sent += 1;
        Some(Transmit { dest, len })
    }

    fn abort(&mut self, now: Instant, code: ErrorCode, message: &str) {
        if self.finished {
            return;
        }
        if self.connected_port != 0 {
            self.send_error(now, code, message);
        }
        self.finish(
            now,
            Err(TransferError::Local {
                code,
                message: message.to_string(),
            }),
        );
    }

    fn max_datagram(&self) -> usize {
        if self.negotiated_reported {
            4 + usize::from(self.blksize.max(512))
        } else {
            MAX_DATAGRAM
        }
    }
}

macro_rules! transfer_via_engine {
    ($ty:ty, $($bound:tt)*) => {
        impl<$($bound)*> Transfer for $ty {
            fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
                self.engine.handle_datagram(now, from, datagram)
            }
            fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
                self.engine.poll_transmit(buf)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                self.engine.deadline
            }
            fn handle_timeout(&mut self, now: Instant) {
                self.engine.handle_timeout(now)
            }
            fn poll_event(&mut self) -> Option<Event> {
                self.engine.events.pop_front()
            }
            fn is_closed(&self) -> bool {
                self.engine.finished && self.engine.out.is_empty()
            }
            fn counters(&self) -> Counters {
                self.engine.counters
            }
            fn bytes_transferred(&self) -> u64 {
                self.engine.written
            }
            fn max_datagram(&self) -> usize {
                self.engine.max_datagram()
            }
            fn abort(&mut self, code: ErrorCode, message: &str) {
                // `abort` has no clock: the latest time the machine saw.
                let now = self.engine.last_seen;
                self.engine.abort(now, code, message)
            }
        }
    };
}

/// UEFI PXE's boot-file read (`PxeBcMtftp4ReadFile`): RRQ
/// `<file> octet blksize 1468 windowsize 4`, no tsize.
#[derive(Debug)]
pub struct UefiPxeGet<K: Sink> {
    engine: Mtftp4<K>,
}

impl<K: Sink> UefiPxeGet<K> {
    /// Starts the read: the RRQ is ready to send at once. `server` is the
    /// server's address and listening port (69).
    pub fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        sink: K,
        settings: &Settings,
    ) -> Self {
        UefiPxeGet {
            engine: Mtftp4::new(now, server, filename, sink, settings, Operation::ReadFile),
        }
    }

    /// Reads into a buffer of `size` bytes, as PXE does with the size the
    /// probe (or DHCP option 13) gave (`PxeBcLoadBootFile`, PxeBcBoot.c
    /// L1108-1119): data past it is ACKed but not stored, and the last
    /// block then fails the read with ERROR 3 "User provided memory block is
    /// too small" (`Mtftp4RrqSaveBlock`, Mtftp4Rrq.c L204-219).
    pub fn with_buffer_size(mut self, size: u64) -> Self {
        self.engine.buffer_size = Some(size);
        self
    }

    /// The sink, for a caller that owns it.
    pub fn into_sink(self) -> K {
        self.engine.sink
    }
}

transfer_via_engine!(UefiPxeGet<K>, K: Sink);

/// UEFI PXE's tsize probe (`PxeBcMtftp4GetFileSize` through
/// `EfiMtftp4GetInfo`): RRQ `<file> octet tsize 0 blksize 1468 windowsize
/// 4`; the OACK is answered with ERROR 8 "User aborted the transfer" and the
/// probe finishes with the OACK's tsize in [`Summary::negotiated`]. A
/// server that answers with DATA 1 instead gets ERROR 4 "User aborted
/// download" and the probe fails.
#[derive(Debug)]
pub struct UefiPxeProbe {
    engine: Mtftp4<NoData>,
}

impl UefiPxeProbe {
    pub fn new(now: Instant, server: SocketAddr, filename: &str, settings: &Settings) -> Self {
        UefiPxeProbe {
            engine: Mtftp4::new(now, server, filename, NoData, settings, Operation::GetInfo),
        }
    }
}

transfer_via_engine!(UefiPxeProbe,);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::firmware::testkit::{
        ack, addr, committed, data, events, expiries, finished, oack, only, peer, request_resends,
        run, sent, sent_to, serve, SERVER, TID,
    };
    use tftplab::data::{MemSink, SharedSink};
    use tftplab::runtime::now;

    /// What a default read asks for (and a server grants).
    const ASKED: &[(&str, &str)] = &[("blksize", "1468"), ("windowsize", "4")];

    fn get(t0: Instant, name: &str) -> UefiPxeGet<MemSink> {
        UefiPxeGet::new(t0, addr(SERVER), name, MemSink::new(), &Settings::default())
    }

    /// A default read of "f" whose RRQ is out.
    fn read(t0: Instant) -> UefiPxeGet<MemSink> {
        let mut m = get(t0, "f");
        sent(&mut m, t0);
        m
    }

    /// A read that got its OACK (blksize 1468, windowsize 4) and sent ACK 0.
    fn negotiated_read(t0: Instant) -> UefiPxeGet<MemSink> {
        let mut m = read(t0);
        m.handle_datagram(t0, addr(TID), &oack(ASKED));
        assert_eq!(only(&mut m, t0), ack(0));
        events(&mut m);
        m
    }

    #[test]
    fn read_rrq_asks_blksize_1468_windowsize_4_and_no_tsize() {
        let t0 = Instant::now();
        let mut m = get(t0, "boot/grubx64.efi");
        assert_eq!(
            sent_to(&mut m, t0, addr(SERVER)),
            vec![
                b"\x00\x01boot/grubx64.efi\x00octet\x00blksize\x001468\x00windowsize\x004\x00"
                    .to_vec()
            ]
        );
    }

    #[test]
    fn probe_rrq_asks_tsize_first_then_blksize_and_windowsize() {
        let t0 = Instant::now();
        let mut m = UefiPxeProbe::new(t0, addr(SERVER), "grubx64.efi", &Settings::default());
        assert_eq!(
            only(&mut m, t0),
            b"\x00\x01grubx64.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00"
        );
    }

    #[test]
    fn windowsize_1_is_not_asked() {
        let settings = Settings {
            windowsize: 1,
            ..Settings::default()
        };
        let t0 = Instant::now();
        let mut m = UefiPxeGet::new(t0, addr(SERVER), "f", MemSink::new(), &settings);
        assert_eq!(
            only(&mut m, t0),
            b"\x00\x01f\x00octet\x00blksize\x001468\x00"
        );
    }

    #[test]
    fn probe_answers_the_oack_with_error_8_and_reports_the_tsize() {
        let t0 = Instant::now();
        let mut m = UefiPxeProbe::new(t0, addr(SERVER), "f", &Settings::default());
        sent(&mut m, t0);
        let o = oack(&[
            ("tsize", "123456"),
            ("blksize", "1468"),
            ("windowsize", "4"),
        ]);
        m.handle_datagram(t0, addr(TID), &o);
        assert_eq!(
            sent(&mut m, t0),
            vec![(
                addr(TID),
                b"\x00\x05\x00\x08User aborted the transfer\x00".to_vec()
            )]
        );
        let summary = finished(&mut m).expect("probe ok");
        assert_eq!(summary.negotiated.tsize, Some(123456));
        assert!(m.is_closed());
    }

    #[test]
    fn probe_aborts_even_an_oack_it_would_reject_and_one_without_tsize_fails() {
        let t0 = Instant::now();
        let mut m = UefiPxeProbe::new(t0, addr(SERVER), "f", &Settings::default());
        sent(&mut m, t0);
        // blksize larger than asked: the read would say ERROR 4; the probe's
        // CheckPacket runs first.
        m.handle_datagram(t0, addr(TID), &oack(&[("blksize", "9000")]));
        assert_eq!(
            only(&mut m, t0),
            b"\x00\x05\x00\x08User aborted the transfer\x00"
        );
        let err = finished(&mut m).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::OPTION_NEGOTIATION));
    }

    #[test]
    fn probe_answers_data_1_with_error_4_and_fails() {
        let t0 = Instant::now();
        let mut m = UefiPxeProbe::new(t0, addr(SERVER), "f", &Settings::default());
        sent(&mut m, t0);
        m.handle_datagram(t0, addr(TID), &data(1, 512));
        assert_eq!(
            only(&mut m, t0),
            b"\x00\x05\x00\x04User aborted download\x00"
        );
        assert_eq!(
            finished(&mut m).unwrap_err().code(),
            Some(ErrorCode::ILLEGAL_OPERATION)
        );
    }

    #[test]
    fn oack_is_answered_with_ack_0_and_settles_the_options() {
        let t0 = Instant::now();
        let mut m = read(t0);
        m.handle_datagram(
            t0,
            addr(TID),
            &oack(&[("blksize", "1024"), ("windowsize", "2")]),
        );
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(0))]);
        let Some(Event::Negotiated(n)) = m.poll_event() else {
            panic!("negotiated")
        };
        assert_eq!((n.blksize, n.windowsize), (1024, 2));
        // A duplicate OACK before any DATA is validated and ACKed again.
        m.handle_datagram(
            t0,
            addr(TID),
            &oack(&[("blksize", "1024"), ("windowsize", "2")]),
        );
        assert_eq!(only(&mut m, t0), ack(0));
        assert_eq!(m.poll_event(), None, "Negotiated is reported once");
    }

    #[test]
    fn bad_oack_is_answered_with_error_4_not_8() {
        let cases: &[&[(&str, &str)]] = &[
            &[("blksize", "1468"), ("tsize", "100")], // not requested by the read
            &[("blksize", "1469")],                   // larger than asked
            &[("windowsize", "8")],                   // larger than asked
            &[("blksize", "4")],                      // out of 8..=65464
            &[("windowsize", "0")],
        ];
        for case in cases {
            let t0 = Instant::now();
            let mut m = read(t0);
            m.handle_datagram(t0, addr(TID), &oack(case));
            assert_eq!(
                only(&mut m, t0),
                b"\x00\x05\x00\x04Malformatted OACK packet\x00",
                "{case:?}"
            );
            assert_eq!(
                finished(&mut m).unwrap_err().code(),
                Some(ErrorCode::ILLEGAL_OPERATION)
            );
            assert!(m.is_closed());
        }
        // Not NUL-terminated: malformed too.
        let t0 = Instant::now();
        let mut m = read(t0);
        m.handle_datagram(t0, addr(TID), b"\x00\x06blksize\x001024");
        assert_eq!(
            only(&mut m, t0),
            b"\x00\x05\x00\x04Malformatted OACK packet\x00"
        );
    }

    #[test]
    fn unrequested_timeout_in_the_oack_is_accepted_and_replaces_the_timer() {
        let t0 = Instant::now();
        let mut m = read(t0);
        let o = oack(&[("blksize", "1468"), ("timeout", "10"), ("windowsize", "4")]);
        m.handle_datagram(t0, addr(TID), &o);
        assert_eq!(only(&mut m, t0), ack(0));
        // Sent at t0 with the 1 s tick at t0 + 1 s: the 10th tick.
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn acks_fall_every_windowsize_in_order_blocks() {
        let t0 = Instant::now();
        let mut m = negotiated_read(t0);
        let mut acks = Vec::new();
        for b in 1..=8u16 {
            m.handle_datagram(t0, addr(TID), &data(b, 1468));
            for (_, p) in sent(&mut m, t0) {
                acks.push((b, p));
            }
        }
        assert_eq!(acks, vec![(4, ack(4)), (8, ack(8))]);
        assert_eq!(m.bytes_transferred(), 8 * 1468);
    }

    #[test]
    fn every_stray_block_draws_an_ack_and_rebases_the_window() {
        let t0 = Instant::now();
        let mut m = negotiated_read(t0);
        let mut wire = Vec::new();
        // Block 2 is lost; 3 and 4 arrive: each draws ACK 1, no suppression.
        for b in [1u16, 3, 4, 2, 3, 4, 5, 6] {
            m.handle_datagram(t0, addr(TID), &data(b, 1468));
            for (_, p) in sent(&mut m, t0) {
                wire.push((b, p));
            }
        }
        // After the gap ACK (AckedBlock = TotalBlock = 1), the next ACK is
        // 4 in-order blocks later: at 5, not at 4.
        assert_eq!(wire, vec![(3, ack(1)), (4, ack(1)), (5, ack(5))]);
        // Duplicates of an old block: ACK (Expected - 1) each time.
        m.handle_datagram(t0, addr(TID), &data(2, 1468));
        m.handle_datagram(t0, addr(TID), &data(2, 1468));
        let out: Vec<_> = sent(&mut m, t0).into_iter().map(|(_, p)| p).collect();
        assert_eq!(out, vec![ack(6), ack(6)]);
        assert_eq!(m.counters().duplicate_data, 2);
    }

    #[test]
    fn without_an_oack_the_read_runs_at_512_lock_step() {
        let t0 = Instant::now();
        let mut m = read(t0);
        m.handle_datagram(t0, addr(TID), &data(1, 512));
        assert_eq!(only(&mut m, t0), ack(1));
        let Some(Event::Negotiated(n)) = m.poll_event() else {
            panic!("negotiated")
        };
        assert_eq!((n.blksize, n.windowsize), (512, 1));
        // A datagram longer than 4 + 512 is dropped silently.
        m.handle_datagram(t0, addr(TID), &data(2, 513));
        assert!(sent(&mut m, t0).is_empty());
        m.handle_datagram(t0, addr(TID), &data(2, 100));
        assert_eq!(only(&mut m, t0), ack(2));
        let summary = finished(&mut m).unwrap();
        assert_eq!((summary.bytes, summary.blocks), (612, 2));
    }

    #[test]
    fn the_last_block_is_acked_whatever_the_window_and_ends_the_read() {
        let t0 = Instant::now();
        let mut m = negotiated_read(t0);
        m.handle_datagram(t0, addr(TID), &data(1, 1468));
        m.handle_datagram(t0, addr(TID), &data(2, 10));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(2))]);
        let summary = finished(&mut m).unwrap();
        assert_eq!(summary.bytes, 1478);
        assert!(m.is_closed());
        assert_eq!(m.poll_timeout(), None);
        // No dally: a retransmitted last block is not answered.
        m.handle_datagram(t0, addr(TID), &data(2, 10));
        assert!(sent(&mut m, t0).is_empty());
    }

    #[test]
    fn the_sink_gets_the_bytes_in_order() {
        let t0 = Instant::now();
        let mut m = negotiated_read(t0);
        let blocks: Vec<Vec<u8>> = vec![data(1, 1468), data(2, 1468), data(3, 5)];
        for b in &blocks {
            m.handle_datagram(t0, addr(TID), b);
        }
        let expect: Vec<u8> = blocks.iter().flat_map(|b| b[4..].to_vec()).collect();
        let sink = m.into_sink();
        assert!(sink.committed);
        assert_eq!(sink.data, expect);
    }

    #[test]
    fn timeouts_resend_the_last_packet_every_4_s_then_give_up_silently() {
        let t0 = Instant::now();
        let mut m = get(t0, "f");
        let resends = request_resends(&mut m, t0);
        let secs: Vec<u64> = resends.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![4, 8, 12, 16, 20]);
        assert_eq!(
            finished(&mut m).unwrap_err(),
            TransferError::TimedOut { retries: 5 }
        );
        assert!(m.is_closed());
    }

    #[test]
    fn an_ack_sent_between_ticks_times_out_3_to_4_s_later_and_data_does_not_restart_it() {
        let t0 = Instant::now();
        let mut m = read(t0);
        let t1 = t0 + Duration::from_millis(300);
        m.handle_datagram(t1, addr(TID), &oack(ASKED));
        assert_eq!(only(&mut m, t1), ack(0));
        // Ticks at t0 + 1, 2, 3, 4 s: the 4th after t1 is t0 + 4 s.
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(4)));
        // In-order DATA that sends nothing leaves the timer alone.
        m.handle_datagram(t0 + Duration::from_secs(2), addr(TID), &data(1, 1468));
        assert!(sent(&mut m, t0).is_empty());
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(4)));
        let at = t0 + Duration::from_secs(4);
        m.handle_timeout(at);
        assert_eq!(sent(&mut m, at), vec![(addr(TID), ack(0))]);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(8)));
    }

    #[test]
    fn every_send_resets_the_retry_count() {
        let t0 = Instant::now();
        let mut m = negotiated_read(t0);
        let mut now = t0;
        // 4 timeouts, then a stray DATA draws an ACK: the count starts over,
        // so 5 more retransmissions come before giving up.
        for _ in 0..4 {
            now = m.poll_timeout().unwrap();
            m.handle_timeout(now);
            assert_eq!(only(&mut m, now), ack(0));
        }
        m.handle_datagram(now, addr(TID), &data(7, 1468));
        assert_eq!(only(&mut m, now), ack(0));
        assert_eq!(expiries(&mut m).len(), 5);
    }

    #[test]
    fn an_error_ends_the_transfer_with_no_reply() {
        let t0 = Instant::now();
        let mut m = negotiated_read(t0);
        m.handle_datagram(t0, addr(TID), b"\x00\x05\x00\x01File not found\x00");
        assert!(sent(&mut m, t0).is_empty());
        assert_eq!(
            finished(&mut m).unwrap_err(),
            peer(ErrorCode::FILE_NOT_FOUND, "File not found")
        );
        assert!(m.is_closed());
    }

    #[test]
    fn strangers_are_dropped_without_error_5() {
        let t0 = Instant::now();
        let mut m = negotiated_read(t0);
        // Another port of the server, then another host: dropped.
        m.handle_datagram(t0, addr("10.0.0.1:50001"), &data(1, 1468));
        m.handle_datagram(t0, addr("10.0.0.9:50000"), &data(1, 1468));
        m.handle_datagram(t0, addr("10.0.0.1:50001"), b"\x00\x05\x00\x00x\x00");
        assert!(sent(&mut m, t0).is_empty());
        assert_eq!(m.counters().unknown_tid, 2);
        assert!(!m.is_closed());
    }

    #[test]
    fn the_first_reply_latches_the_port_whatever_it_is() {
        let t0 = Instant::now();
        let mut m = read(t0);
        // An ACK from port 1234 is ignored but latches it.
        m.handle_datagram(t0, addr("10.0.0.1:1234"), &ack(0));
        m.handle_datagram(t0, addr(TID), &oack(&[("blksize", "1468")]));
        assert!(sent(&mut m, t0).is_empty());
        // The RRQ retransmission still goes to port 69.
        let at = m.poll_timeout().unwrap();
        m.handle_timeout(at);
        assert_eq!(sent(&mut m, at)[0].0, addr(SERVER));
    }

    #[test]
    fn an_oack_after_data_is_ignored() {
        let t0 = Instant::now();
        let mut m = negotiated_read(t0);
        m.handle_datagram(t0, addr(TID), &data(1, 1468));
        m.handle_datagram(t0, addr(TID), &oack(ASKED));
        assert!(sent(&mut m, t0).is_empty());
    }

    #[test]
    fn a_file_larger_than_the_buffer_fails_on_its_last_block_with_error_3() {
        let t0 = Instant::now();
        let mut m = get(t0, "f").with_buffer_size(1468);
        sent(&mut m, t0);
        m.handle_datagram(t0, addr(TID), &oack(ASKED));
        sent(&mut m, t0);
        m.handle_datagram(t0, addr(TID), &data(1, 1468));
        m.handle_datagram(t0, addr(TID), &data(2, 1468));
        assert!(sent(&mut m, t0).is_empty(), "stored or not, no ACK yet");
        m.handle_datagram(t0, addr(TID), &data(3, 3));
        assert_eq!(
            only(&mut m, t0),
            b"\x00\x05\x00\x03User provided memory block is too small\x00"
        );
        assert_eq!(
            finished(&mut m).unwrap_err().code(),
            Some(ErrorCode::DISK_FULL)
        );
    }

    #[test]
    fn block_numbers_roll_over_to_0() {
        let t0 = Instant::now();
        let settings = Settings {
            blksize: Some(8),
            windowsize: 1,
            ..Settings::default()
        };
        let mut m = UefiPxeGet::new(t0, addr(SERVER), "f", MemSink::new(), &settings);
        sent(&mut m, t0);
        m.handle_datagram(t0, addr(TID), &oack(&[("blksize", "8")]));
        assert_eq!(only(&mut m, t0), ack(0));
        for b in 1..=65535u16 {
            m.handle_datagram(t0, addr(TID), &data(b, 8));
            assert_eq!(only(&mut m, t0), ack(b));
        }
        // A server wrapping to 1 gets ACK 65535.
        m.handle_datagram(t0, addr(TID), &data(1, 8));
        assert_eq!(only(&mut m, t0), ack(65535));
        m.handle_datagram(t0, addr(TID), &data(0, 8));
        assert_eq!(only(&mut m, t0), ack(0));
        m.handle_datagram(t0, addr(TID), &data(1, 2));
        assert_eq!(only(&mut m, t0), ack(1));
        assert_eq!(finished(&mut m).unwrap().bytes, 65536 * 8 + 2);
    }

    /// Probe then read against a real tftplab server over loopback, the way
    /// a PXE boot does it: two sockets, the read sized by the probe.
    #[tokio::test]
    async fn probe_then_read_from_a_tftplab_server() -> Result<(), Box<dyn std::error::Error>> {
        let file: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let (_root, server) = serve(&[("grubx64.efi", &file)]).await?;
        let addr = server.local_addr();
        let settings = Settings::default();

        let probe = UefiPxeProbe::new(now(), addr, "grubx64.efi", &settings);
        let got = run(probe, addr).await.expect("an outcome")?;
        assert_eq!(got.negotiated.tsize, Some(file.len() as u64));

        let sink = SharedSink::new();
        let read = UefiPxeGet::new(now(), addr, "grubx64.efi", sink.clone(), &settings)
            .with_buffer_size(file.len() as u64);
        let summary = run(read, addr).await.expect("an outcome")?;
        assert_eq!(
            (summary.negotiated.blksize, summary.negotiated.windowsize),
            (1468, 4)
        );
        assert_eq!(summary.bytes, file.len() as u64);
        assert_eq!(committed(&sink), file);
        Ok(())
    }
}
