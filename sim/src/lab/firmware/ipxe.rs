//! iPXE's TFTP client: `src/net/udp/tftp.c` with the retry timer of
//! `src/net/retry.c`, tag `v1.21.1` (Debian's ipxe-qemu is
//! 1.21.1+git20220113, whose tftp.c differs from the tag only by profiling
//! hooks, 8ef22d819). Line numbers are those of `git show v1.21.1:<path>`.
//!
//! [`IpxeGet`] is a `tftp://` download (`tftp_open`, L1117-1120:
//! `TFTP_FL_RRQ_SIZES`). The rules, each cited on the code that follows it:
//!
//! - RRQ `<path> octet blksize 1432 tsize 0` to port 69; no windowsize, no
//!   timeout option (`tftp_send_rrq`, L329-374);
//! - the peer (address and port) is latched from the first datagram
//!   received, whoever sent it; later datagrams from anywhere else are
//!   dropped without ERROR 5 (`tftp_rx`, L922-934);
//! - an OACK's blksize is taken as-is (no bound, no comparison with the
//!   request), unknown options (windowsize) are ignored, a value with
//!   trailing junk aborts the transfer **silently**; a tsize presizes the
//!   block bitmap (`tftp_rx_oack`, L703-768);
//! - DATA is stored out of order at its absolute offset and its bit set in
//!   a bitmap; after **every** DATA the client ACKs the first gap (the last
//!   contiguous block), so duplicates and gaps each draw an ACK; the
//!   transfer is done when the bitmap is full (`tftp_rx_data`, L779-846);
//! - the timer is retry.c's: 0.25 s minimum, doubling on each expiry,
//!   failing once it would exceed 10 s, re-armed on every send with a
//!   smoothed RTT (`start_timer`, `stop_timer`, `timer_expired`);
//! - any ERROR of 4 bytes or more ends the transfer with no reply
//!   (`tftp_rx_error`, L871-892).
//!
//! Failures iPXE ends without sending anything (a bad OACK value, an
//! underlength or overlength DATA, block 0 before the first rollover) are
//! reported as [`TransferError::Local`] with code 0 and a message that
//! says no ERROR was sent: `tftp_done` shuts the socket, it sends nothing.
//!
//! Version differences: 1.20.1 → 1.21.1 only refactors (no variable-length
//! stack arrays). After 1.21.1: profiling hooks (2021), an error-table entry
//! for "file not found" and server-URI selection (2026), and de4302490
//! (2026), which makes `bitmap_set` fail outside the bitmap: from then on an
//! empty file (DATA 1 with no bytes and no tsize) aborts silently instead of
//! being ACKed with ACK 0 and completed as here. `MTFTP` (`mtftp://`,
//! multicast, the PXE API's fallback) is not modelled.

use super::{ack_packet, error_packet, OP_ACK, OP_DATA, OP_ERROR, OP_OACK, OP_RRQ};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tftplab::data::Sink;
use tftplab::options::Negotiated;
use tftplab::proto::{Counters, Event, Summary, Transfer, TransferError, Transmit};
use tftplab::wire::{ErrorCode, MAX_BLKSIZE, MAX_DATAGRAM};

/// `TICKS_PER_SEC` (include/ipxe/timer.h L15): `currticks()` counts
/// 1/1024 s.
const TICKS_PER_SEC: u64 = 1024;
/// retry.c L49: "the theoretical minimum that the algorithm in
/// stop_timer() can adjust the timeout back down to".
const MIN_TIMEOUT_TICKS: u64 = 7;

/// The ERROR iPXE sends when its consumer closes the download
/// (`tftp_close`, L1029-1036): code 0, this text.
pub const ABORT_MESSAGE: &str = "TFTP Aborted";

/// iPXE's TFTP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// blksize asked for: `xfer_window()` of the consumer, capped at
    /// `TFTP_MAX_BLKSIZE` 1432 (tftp.h L16, tftp.c L349-351). An image
    /// download's window is unlimited, so 1432; the PXE API
    /// (`PXENV_TFTP_OPEN`) asks whatever the NBP asked.
    pub blksize: u16,
    /// `TFTP_FL_RRQ_SIZES`: ask blksize and tsize (`tftp://`); false sends
    /// a bare RRQ as `mtftp://` does.
    pub ask_sizes: bool,
    /// `DEFAULT_MIN_TIMEOUT`, TICKS_PER_SEC / 4 = 0.25 s (retry.h L15),
    /// floored at 7 ticks (retry.c L98-101). TFTP sets no limits of its own.
    pub min_timeout: Duration,
    /// `DEFAULT_MAX_TIMEOUT`, 10 s (retry.h L18): an expiry that doubles
    /// the timeout past it fails the transfer.
    pub max_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            blksize: 1432,
            ask_sizes: true,
            min_timeout: Duration::from_millis(250),
            max_timeout: Duration::from_secs(10),
        }
    }
}

fn to_ticks(d: Duration) -> u64 {
    (d.as_nanos() * u128::from(TICKS_PER_SEC) / 1_000_000_000) as u64
}

/// `struct retry_timer` and retry.c, in ticks.
#[derive(Debug, Clone)]
struct RetryTimer {
    running: bool,
    start: u64,
    timeout: u64,
    min: u64,
    max: u64,
    /// Expiries not yet paid back by a successful stop.
    count: u32,
}

impl RetryTimer {
    /// `start_timer_fixed` (retry.c L64-81).
    fn start_fixed(&mut self, now: u64, timeout: u64) {
        self.running = true;
        self.start = now;
        self.timeout = timeout;
    }

    /// `start_timer` (L93-108): the current timeout, at least the minimum.
    fn start(&mut self, now: u64) {
        let min = self.min.max(MIN_TIMEOUT_TICKS);
        self.start_fixed(now, self.timeout.max(min));
    }

    /// `stop_timer` (L117-159): a stop first pays back earlier expiries
    /// (`count`); only then does it fold the run time into the timeout,
    /// t := 7t/8 + r/2.
    fn stop(&mut self, now: u64) {
        if !self.running {
            return;
        }
        self.running = false;
        let runtime = now - self.start;
        if self.count > 0 {
            self.count -= 1;
        } else {
            self.timeout -= self.timeout >> 3;
            self.timeout += runtime >> 1;
        }
    }

    /// `timer_expired` (L166-191): count it, double the timeout; `true`
    /// (fail) when that passes the maximum.
    fn expire(&mut self) -> bool {
        self.running = false;
        self.count += 1;
        self.timeout <<= 1;
        let fail = self.timeout > self.max;
        if fail {
            self.timeout = self.max;
        }
        fail
    }

    /// `retry_poll` (L197-214) fires once `currticks() - start >= timeout`.
    fn due(&self) -> Option<u64> {
        self.running.then_some(self.start + self.timeout)
    }
}

/// `struct bitmap` (core/bitmap.c, include/ipxe/bitmap.h) as tftp.c uses
/// it: `length` bits, `first_gap` the first clear one.
#[derive(Debug, Default, Clone)]
struct Bitmap {
    length: u64,
    first_gap: u64,
    /// Set bits at or after `first_gap`.
    set: BTreeSet<u64>,
}

impl Bitmap {
    /// `bitmap_resize` (bitmap.c L41-70): the length becomes `bits`.
    fn resize(&mut self, bits: u64) {
        self.length = bits;
    }

    /// `bitmap_set` (L92-106) then the first-gap update, which stops at
    /// `length` because `bitmap_test` reads bits outside as clear. In
    /// v1.21.1 a bit outside the bitmap is written past its storage
    /// unchecked; its only effect on the protocol is that the first gap
    /// does not move, which is what this does.
    fn set(&mut self, bit: u64) {
        if bit >= self.length {
            return;
        }
        if bit >= self.first_gap {
            self.set.insert(bit);
        }
        while self.first_gap < self.length && self.set.remove(&self.first_gap) {
            self.first_gap += 1;
        }
    }

    /// `bitmap_full` (bitmap.h L81-83).
    fn full(&self) -> bool {
        self.first_gap == self.length
    }
}

/// iPXE's `strtoul(value, &end, 10)` (core/string.c L417-481): leading
/// white space, a sign, decimal digits (wrapping); the flag says whether
/// `*end` is the NUL, which is the only check tftp.c makes.
fn strtoul(value: &[u8]) -> (u64, bool) {
    let mut s = value;
    while let [c, rest @ ..] = s {
        if matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
            s = rest;
        } else {
            break;
        }
    }
    let mut negate = false;
    if let [c @ (b'-' | b'+'), rest @ ..] = s {
        negate = *c == b'-';
        s = rest;
    }
    let mut n = 0u64;
    while let [c, rest @ ..] = s {
        if !c.is_ascii_digit() {
            break;
        }
        n = n.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        s = rest;
    }
    if negate {
        n = n.wrapping_neg();
    }
    (n, s.is_empty())
}

/// The C string at the start of `b` (up to a NUL or the end).
fn c_str(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or_default()
}

/// iPXE's `tftp://` download of one file.
#[derive(Debug)]
pub struct IpxeGet<K: Sink> {
    /// The RRQ's destination (server:69, `tftp_reopen`).
    server: SocketAddr,
    /// `tftp->peer`: unset until the first datagram.
    peer: Option<SocketAddr>,
    /// `TFTP_FL_SEND_ACK`, set on every unicast delivery
    /// (`tftp_socket_deliver`, L965-987).
    send_ack: bool,
    rrq: Vec<u8>,
    /// `tftp->blksize` (unsigned int): 512 until an OACK says otherwise
    /// (`tftp_core_open`, L1080).
    blksize: u32,
    /// `tftp->tsize`.
    tsize: u64,
    /// `tftp->filesize`: the largest size known so far.
    filesize: u64,
    bitmap: Bitmap,
    /// Data iPXE has delivered at offsets past what the sink holds: a
    /// [`Sink`] takes bytes in order, iPXE's buffer takes them anywhere.
    pending: BTreeMap<u64, Vec<u8>>,
    written: u64,
    sink: K,
    timer: RetryTimer,
    origin: Instant,
    out: VecDeque<(Vec<u8>, SocketAddr)>,
    events: VecDeque<Event>,
    negotiated: Negotiated,
    negotiated_reported: bool,
    finished: bool,
    counters: Counters,
    retransmissions: u64,
    /// Expiries since the last datagram was handled, for the report.
    resends_in_a_row: u32,
    started: Instant,
    last_seen: Instant,
}

impl<K: Sink> IpxeGet<K> {
    /// Opens the download (`tftp_core_open`, L1055-1108). Its
    /// `start_timer_nodelay` expires on the first poll and sends the RRQ
    /// (`tftp_timer_expired` → `tftp_send_packet`); that expiry is taken
    /// here, so the RRQ is ready at once and the timer has `count` 1 and
    /// runs for the minimum. `filename` is the URI path without its
    /// leading '/'.
    pub fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        sink: K,
        settings: &Settings,
    ) -> Self {
        // L356-363: "%s%coctet" then "blksize%c%zd%ctsize%c0", each with
        // its NUL.
        let mut rrq = OP_RRQ.to_be_bytes().to_vec();
        rrq.extend_from_slice(filename.as_bytes());
        rrq.extend_from_slice(b"\0octet\0");
        if settings.ask_sizes {
            rrq.extend_from_slice(format!("blksize\0{}\0tsize\00\0", settings.blksize).as_bytes());
        }
        let mut m = IpxeGet {
            server,
            peer: None,
            send_ack: false,
            rrq,
            blksize: 512,
            tsize: 0,
            filesize: 0,
            bitmap: Bitmap::default(),
            pending: BTreeMap::new(),
            written: 0,
            sink,
            timer: RetryTimer {
                running: false,
                start: 0,
                timeout: 0,
                min: to_ticks(settings.min_timeout),
                max: to_ticks(settings.max_timeout),
                count: 0,
            },
            origin: now,
            out: VecDeque::new(),
            events: VecDeque::new(),
            negotiated: Negotiated::default(),
            negotiated_reported: false,
            finished: false,
            counters: Counters::default(),
            retransmissions: 0,
            resends_in_a_row: 0,
            started: now,
            last_seen: now,
        };
        m.timer.start_fixed(0, 0);
        let fail = m.timer.expire();
        debug_assert!(!fail);
        m.send_packet(now);
        m
    }

    fn ticks(&self, now: Instant) -> u64 {
        to_ticks(now.saturating_duration_since(self.origin))
    }

    fn instant_of(&self, ticks: u64) -> Instant {
        let nanos = (u128::from(ticks) * 1_000_000_000).div_ceil(u128::from(TICKS_PER_SEC));
        self.origin + Duration::from_nanos(nanos as u64)
    }

    /// `tftp_send_packet` (L450-473): restart the timer (stop, which
    /// updates the RTT estimate, then start), then send the RRQ while no
    /// peer is known, else ACK the first gap (`tftp_send_ack`, L382-406).
    /// Both are built afresh each time, not replayed.
    fn send_packet(&mut self, now: Instant) -> Option<u16> {
        let t = self.ticks(now);
        self.timer.stop(t);
        self.timer.start(t);
        match self.peer {
            None => {
                self.out.push_back((self.rrq.clone(), self.server));
                Some(OP_RRQ)
            }
            Some(peer) if self.send_ack => {
                let block = self.bitmap.first_gap as u16;
                self.out.push_back((ack_packet(block), peer));
                self.counters.acks_sent += 1;
                Some(OP_ACK)
            }
            Some(_) => None,
        }
    }

    fn report_negotiated(&mut self) {
        if !self.negotiated_reported {
            self.negotiated_reported = true;
            self.negotiated.blksize = self.blksize.clamp(1, u32::from(MAX_BLKSIZE)) as u16;
            self.negotiated.windowsize = 1;
            self.negotiated.tsize = (self.tsize != 0).then_some(self.tsize);
            self.events.push_back(Event::Negotiated(self.negotiated));
        }
    }

    /// `tftp_done` (L181-193): stop the timer and shut the socket; nothing
    /// is sent.
    fn done(&mut self, now: Instant, result: Result<(), TransferError>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.timer.running = false;
        let result = match result {
            Ok(()) => self.sink.commit().map_err(|e| TransferError::Local {
                code: ErrorCode::UNDEFINED,
                message: format!("commit: {e}"),
            }),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.sink.abort();
        }
        let result = result.map(|()| Summary {
            bytes: self.written,
            blocks: self.bitmap.first_gap,
            retransmissions: self.retransmissions,
            duration: now.saturating_duration_since(self.started),
            negotiated: self.negotiated,
        });
        self.events.push_back(Event::Finished(result));
    }

    /// A `tftp_done(rc)` with rc != 0 other than an ERROR or a timeout.
    fn silent_abort(&mut self, now: Instant, why: &str) {
        self.done(
            now,
            Err(TransferError::Local {
                code: ErrorCode::UNDEFINED,
                message: format!("{why} (aborted without sending ERROR)"),
            }),
        );
    }

    /// `tftp_rx_oack` (L703-768).
    fn rx_oack(&mut self, now: Instant, d: &[u8]) {
        let end = d.len();
        let mut name = 2;
        // L720-753: name/value pairs; a malformed tail ends the loop but is
        // not an error ("IBM Tivoli PXE Server 5.1.0.3 ... trailing garbage").
        while name < end {
            let name_str = c_str(&d[name..]);
            let value = name + name_str.len() + 1;
            if value >= end {
                break;
            }
            let value_str = c_str(&d[value..]);
            let next = value + value_str.len() + 1;
            if next > end {
                break;
            }
            // `tftp_process_option` (L679-693): strcasecmp against the
            // known names; unknown ones (windowsize, timeout) are ignored.
            if name_str.eq_ignore_ascii_case(b"blksize") {
                // `tftp_process_blksize` (L548-560): any number, no bound,
                // no comparison with what was asked; junk after it is
                // fatal.
                let (n, clean) = strtoul(value_str);
                self.blksize = n as u32;
                if !clean {
                    self.silent_abort(now, "invalid blksize in OACK");
                    return;
                }
            } else if name_str.eq_ignore_ascii_case(b"tsize") {
                // `tftp_process_tsize` (L569-581).
                let (n, clean) = strtoul(value_str);
                self.tsize = n;
                if !clean {
                    self.silent_abort(now, "invalid tsize in OACK");
                    return;
                }
            }
            name = next;
        }
        // L755-759: a tsize presizes the bitmap.
        if self.tsize != 0 {
            let tsize = self.tsize;
            if !self.presize(now, tsize) {
                return;
            }
        }
        self.report_negotiated();
        // L761-762: ACK the first gap (ACK 0 on a fresh transfer), again
        // for every duplicate OACK.
        self.send_packet(now);
    }

    /// `tftp_presize` (L263-292): the bitmap grows to `filesize / blksize +
    /// 1` blocks, so a file that is an exact multiple of blksize needs its
    /// trailing empty block. `false` when the transfer ended.
    fn presize(&mut self, now: Instant, filesize: u64) -> bool {
        if filesize <= self.filesize {
            return true;
        }
        self.filesize = filesize;
        if self.blksize == 0 {
            self.silent_abort(now, "blksize 0");
            return false;
        }
        self.bitmap.resize(filesize / u64::from(self.blksize) + 1);
        true
    }

    /// `tftp_rx_data` (L779-846).
    fn rx_data(&mut self, now: Instant, d: &[u8]) {
        // L789-794: shorter than the DATA header: fatal.
        if d.len() < 4 {
            self.silent_abort(now, "underlength DATA");
            return;
        }
        let wire = u16::from_be_bytes([d[2], d[3]]);
        // L796-803: the block index is placed in the 64K epoch of the
        // first gap; wire block 0 in the first epoch is fatal. The block
        // after 65535 must be 0.
        let base = (self.bitmap.first_gap + 1) & !0xffff;
        if wire == 0 && base == 0 {
            self.silent_abort(now, "DATA block 0");
            return;
        }
        let index = (base + u64::from(wire)).wrapping_sub(1);
        let offset = index * u64::from(self.blksize);
        let data = &d[4..];
        // L806-814: more than blksize bytes: fatal.
        if data.len() as u64 > u64::from(self.blksize) {
            self.silent_abort(now, "overlength DATA");
            return;
        }
        if index < self.bitmap.first_gap || self.bitmap.set.contains(&index) {
            self.counters.duplicate_data += 1;
        }
        self.report_negotiated();
        // L816-825: delivered at its absolute offset, in whatever order.
        if let Err(e) = self.deliver(offset, data) {
            self.silent_abort(now, &format!("could not deliver data: {e}"));
            return;
        }
        // L827-832.
        if !self.presize(now, offset + data.len() as u64) {
            return;
        }
        let gap_before = self.bitmap.first_gap;
        self.bitmap.set(index);
        // L834-835: ACK the first gap after every DATA, whatever it was.
        if self.send_packet(now) == Some(OP_ACK) && self.bitmap.first_gap == gap_before {
            // The ACK repeats an earlier one (a duplicate, or a block past
            // a gap).
            self.counters.acks_retransmitted += 1;
            self.retransmissions += 1;
        }
        // L837-839: done when every block of the bitmap is in; the ACK just
        // sent is the only one for the last block. No dally.
        if self.bitmap.full() {
            self.done(now, Ok(()));
        }
    }

    /// Hands the sink every byte that is now contiguous.
    fn deliver(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if offset >= self.written {
            self.pending.insert(offset, data.to_vec());
        }
        while let Some(bytes) = self.pending.remove(&self.written) {
            self.sink.write_at(self.written, &bytes)?;
            self.written += bytes.len() as u64;
        }
        Ok(())
    }

    /// `tftp_rx_error` (L871-892).
    fn rx_error(&mut self, now: Instant, d: &[u8]) {
        if d.len() < 4 {
            // L876-880: underlength: ignored, the transfer goes on.
            self.counters.ignored += 1;
            return;
        }
        let code = ErrorCode(u16::from_be_bytes([d[2], d[3]]));
        let message = String::from_utf8_lossy(c_str(&d[4..])).into_owned();
        self.done(now, Err(TransferError::Peer { code, message }));
    }
}

impl<K: Sink> Transfer for IpxeGet<K> {
    /// `tftp_socket_deliver` (L965-987) then `tftp_rx` (L902-955).
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, d: &[u8]) {
        if self.finished {
            return;
        }
        self.last_seen = self.last_seen.max(now);
        self.counters.datagrams_received += 1;
        self.send_ack = true;
        // L911-915: shorter than an opcode.
        if d.len() < 2 {
            self.counters.ignored += 1;
            return;
        }
        // L922-934: the first datagram, from anyone, sets the peer; later
        // ones from any other address or port are dropped, no ERROR 5.
        match self.peer {
            None => self.peer = Some(from),
            Some(peer) if peer != from => {
                self.counters.unknown_tid += 1;
                return;
            }
            Some(_) => {}
        }
        self.resends_in_a_row = 0;
        match u16::from_be_bytes([d[0], d[1]]) {
            OP_OACK => self.rx_oack(now, d),
            OP_DATA => self.rx_data(now, d),
            OP_ERROR => self.rx_error(now, d),
            // L946-949: "strange packet type": ignored (the peer stays
            // latched, so the next timeout sends an ACK, not the RRQ).
            _ => self.counters.ignored += 1,
        }
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let (packet, dest) = self.out.pop_front()?;
        let len = packet.len().min(buf.len());
        buf[..len].copy_from_slice(&packet[..len]);
        self.counters.datagrams_sent += 1;
        Some(Transmit { dest, len })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        self.timer.due().map(|t| self.instant_of(t))
    }

    /// `timer_expired` (retry.c L166-191) → `tftp_timer_expired`
    /// (tftp.c L481-539): back off; fail with ETIMEDOUT once past the
    /// maximum (nothing is sent), otherwise send the RRQ or the ACK again.
    fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.poll_timeout() else {
            return;
        };
        if now < due {
            return;
        }
        self.last_seen = self.last_seen.max(now);
        self.counters.timeouts += 1;
        if self.timer.expire() {
            let retries = self.resends_in_a_row;
            self.done(now, Err(TransferError::TimedOut { retries }));
            return;
        }
        self.resends_in_a_row += 1;
        match self.send_packet(now) {
            Some(OP_RRQ) => self.counters.control_retransmitted += 1,
            Some(_) => {
                self.counters.acks_retransmitted += 1;
                self.retransmissions += 1;
            }
            None => {}
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn is_closed(&self) -> bool {
        self.finished && self.out.is_empty()
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn bytes_transferred(&self) -> u64 {
        self.written
    }

    fn max_datagram(&self) -> usize {
        if self.peer.is_none() {
            return MAX_DATAGRAM;
        }
        let blksize = self.blksize.clamp(512, u32::from(MAX_BLKSIZE));
        4 + blksize as usize
    }

    /// The consumer closing the download (`tftp_close`, L1029-1036):
    /// iPXE can only say ERROR 0 "TFTP Aborted", whatever `code` and
    /// `message` ask, and sends it to the latched peer (nowhere useful
    /// before one is known, so nothing then).
    fn abort(&mut self, _code: ErrorCode, _message: &str) {
        if self.finished {
            return;
        }
        if let Some(peer) = self.peer {
            let e = error_packet(ErrorCode::UNDEFINED, ABORT_MESSAGE);
            self.out.push_back((e, peer));
        }
        let now = self.last_seen;
        self.done(
            now,
            Err(TransferError::Local {
                code: ErrorCode::UNDEFINED,
                message: ABORT_MESSAGE.to_string(),
            }),
        );
    }
}

impl<K: Sink> IpxeGet<K> {
    /// The sink, for a caller that owns it.
    pub fn into_sink(self) -> K {
        self.sink
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::firmware::testkit::{
        ack, addr, committed, data_of, expiries, oack, only, outcome, peer, request_resends, run,
        sent, sent_to, serve, SERVER, TID,
    };
    use tftplab::data::{MemSink, SharedSink};
    use tftplab::runtime::now;

    fn get(t0: Instant, name: &str) -> IpxeGet<MemSink> {
        IpxeGet::new(t0, addr(SERVER), name, MemSink::new(), &Settings::default())
    }

    /// A download of "f" whose RRQ is out.
    fn start(t0: Instant) -> IpxeGet<MemSink> {
        let mut m = get(t0, "f");
        sent(&mut m, t0);
        m
    }

    /// DATA `block` with `len` bytes of this module's own pattern.
    fn data(block: u16, len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(3) ^ (block as u8))
            .collect();
        data_of(block, &payload)
    }

    /// After OACK blksize 8 (tiny blocks keep tests short) and ACK 0.
    fn negotiated(t0: Instant, tsize: Option<&str>) -> IpxeGet<MemSink> {
        let mut m = start(t0);
        let mut o = vec![("blksize", "8")];
        if let Some(t) = tsize {
            o.push(("tsize", t));
        }
        m.handle_datagram(t0, addr(TID), &oack(&o));
        assert_eq!(only(&mut m, t0), ack(0));
        m
    }

    #[test]
    fn rrq_asks_blksize_1432_then_tsize_0() {
        let t0 = Instant::now();
        let mut m = get(t0, "boot.ipxe");
        assert_eq!(
            sent_to(&mut m, t0, addr(SERVER)),
            vec![b"\x00\x01boot.ipxe\x00octet\x00blksize\x001432\x00tsize\x000\x00".to_vec()]
        );
    }

    #[test]
    fn oack_blksize_is_taken_as_is_and_windowsize_ignored() {
        let t0 = Instant::now();
        let mut m = start(t0);
        let o = oack(&[("blksize", "1468"), ("windowsize", "4"), ("tsize", "3000")]);
        m.handle_datagram(t0, addr(TID), &o);
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(0))]);
        let Some(Event::Negotiated(n)) = m.poll_event() else {
            panic!("negotiated")
        };
        assert_eq!((n.blksize, n.windowsize, n.tsize), (1468, 1, Some(3000)));
        // A duplicate OACK is processed again and re-ACKed.
        m.handle_datagram(t0, addr(TID), &o);
        assert_eq!(only(&mut m, t0), ack(0));
        assert_eq!(m.poll_event(), None);
    }

    #[test]
    fn oack_value_with_junk_aborts_silently_but_a_garbage_tail_is_tolerated() {
        let t0 = Instant::now();
        let mut m = start(t0);
        m.handle_datagram(t0, addr(TID), &oack(&[("blksize", "1432x")]));
        assert!(sent(&mut m, t0).is_empty());
        assert!(outcome(&mut m).unwrap().is_err());
        assert!(m.is_closed());

        let mut m = start(t0);
        m.handle_datagram(t0, addr(TID), b"\x00\x06blksize\x001432\x00garbage");
        assert_eq!(only(&mut m, t0), ack(0));
    }

    #[test]
    fn every_data_is_acked_with_the_first_gap() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, None);
        let mut wire = Vec::new();
        // 2 is lost, 3 and 4 arrive and are kept; then 2 fills the gap.
        for b in [1u16, 3, 4, 2, 5] {
            m.handle_datagram(t0, addr(TID), &data(b, 8));
            wire.push((b, only(&mut m, t0)));
        }
        assert_eq!(
            wire,
            vec![
                (1, ack(1)),
                (3, ack(1)),
                (4, ack(1)),
                (2, ack(4)),
                (5, ack(5))
            ]
        );
        // Duplicates: one ACK each, never suppressed.
        m.handle_datagram(t0, addr(TID), &data(5, 8));
        m.handle_datagram(t0, addr(TID), &data(3, 8));
        let out: Vec<_> = sent(&mut m, t0).into_iter().map(|(_, p)| p).collect();
        assert_eq!(out, vec![ack(5), ack(5)]);
        assert_eq!(m.counters().duplicate_data, 2);
        m.handle_datagram(t0, addr(TID), &data(6, 1));
        assert_eq!(only(&mut m, t0), ack(6));
        let summary = outcome(&mut m).unwrap().unwrap();
        assert_eq!(summary.bytes, 41);
        let sink = m.into_sink();
        let expect: Vec<u8> = (1..=6u16)
            .flat_map(|b| data(b, if b == 6 { 1 } else { 8 })[4..].to_vec())
            .collect();
        assert!(sink.committed);
        assert_eq!(sink.data, expect);
    }

    #[test]
    fn a_block_past_the_end_of_a_short_transfer_keeps_it_open() {
        // Blocks ahead of a gap can arrive before the gap's; the transfer
        // completes only when the bitmap is full.
        let t0 = Instant::now();
        let mut m = negotiated(t0, None);
        m.handle_datagram(t0, addr(TID), &data(2, 3));
        assert_eq!(only(&mut m, t0), ack(0));
        assert!(outcome(&mut m).is_none());
        m.handle_datagram(t0, addr(TID), &data(1, 8));
        assert_eq!(only(&mut m, t0), ack(2));
        assert_eq!(outcome(&mut m).unwrap().unwrap().bytes, 11);
    }

    #[test]
    fn an_exact_multiple_of_blksize_needs_the_empty_block() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, Some("16"));
        m.handle_datagram(t0, addr(TID), &data(1, 8));
        m.handle_datagram(t0, addr(TID), &data(2, 8));
        assert_eq!(sent(&mut m, t0).len(), 2);
        assert!(outcome(&mut m).is_none());
        m.handle_datagram(t0, addr(TID), &data(3, 0));
        assert_eq!(only(&mut m, t0), ack(3));
        assert_eq!(outcome(&mut m).unwrap().unwrap().bytes, 16);
        assert!(m.is_closed());
        // No dally.
        m.handle_datagram(t0, addr(TID), &data(3, 0));
        assert!(sent(&mut m, t0).is_empty());
    }

    #[test]
    fn a_tsize_larger_than_the_file_stalls_until_the_timer_gives_up() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, Some("100"));
        m.handle_datagram(t0, addr(TID), &data(1, 8));
        m.handle_datagram(t0, addr(TID), &data(2, 3));
        assert_eq!(sent(&mut m, t0).len(), 2);
        assert!(outcome(&mut m).is_none(), "the bitmap wants 13 blocks");
        let acks = expiries(&mut m);
        for (_, _, p) in &acks {
            assert_eq!(*p, ack(2));
        }
        assert!(acks.len() >= 5);
        assert!(outcome(&mut m).unwrap().unwrap_err().is_timeout());
        assert!(m.sink_aborted());
    }

    #[test]
    fn the_rrq_is_resent_with_binary_backoff_then_the_transfer_fails_silently() {
        let t0 = Instant::now();
        let mut m = get(t0, "f");
        let resends = request_resends(&mut m, t0);
        let at_ticks: Vec<u64> = resends.into_iter().map(to_ticks).collect();
        // 0.25, 0.75, 1.75, 3.75, 7.75 s; the 6th expiry (15.75 s) fails.
        assert_eq!(at_ticks, vec![256, 768, 1792, 3840, 7936]);
        assert_eq!(
            outcome(&mut m).unwrap().unwrap_err(),
            TransferError::TimedOut { retries: 5 }
        );
        assert!(m.is_closed());
    }

    #[test]
    fn every_received_datagram_restarts_the_timer_and_the_timeout_adapts() {
        let t0 = Instant::now();
        let mut m = start(t0);
        // The RRQ is lost once: expiry at 256 ticks doubles t to 512.
        let at = m.poll_timeout().unwrap();
        m.handle_timeout(at);
        sent(&mut m, at);
        // The OACK at 300 ticks: the stop pays back an expiry (count 2 ->
        // 1), no RTT update, so the ACK runs for 512 ticks.
        let t1 = t0 + Duration::from_millis(300);
        m.handle_datagram(t1, addr(TID), &oack(&[("blksize", "8")]));
        assert_eq!(only(&mut m, t1), ack(0));
        let tick1 = to_ticks(t1 - t0);
        assert_eq!(m.poll_timeout(), Some(m.instant_of(tick1 + 512)));
        // DATA 1 at once: count 1 -> 0, still 512.
        m.handle_datagram(t1, addr(TID), &data(1, 8));
        assert_eq!(only(&mut m, t1), ack(1));
        assert_eq!(m.poll_timeout(), Some(m.instant_of(tick1 + 512)));
        // DATA 2 at once: now t := 7t/8 + 0 = 448.
        m.handle_datagram(t1, addr(TID), &data(2, 8));
        assert_eq!(only(&mut m, t1), ack(2));
        assert_eq!(m.poll_timeout(), Some(m.instant_of(tick1 + 448)));
        // And on down to the 256-tick floor.
        for b in 3..20 {
            m.handle_datagram(t1, addr(TID), &data(b, 8));
            sent(&mut m, t1);
        }
        assert_eq!(m.poll_timeout(), Some(m.instant_of(tick1 + 256)));
        // A timeout after DATA resends the ACK of the first gap.
        let at = m.poll_timeout().unwrap();
        m.handle_timeout(at);
        assert_eq!(sent(&mut m, at), vec![(addr(TID), ack(19))]);
    }

    #[test]
    fn the_peer_is_whoever_answers_first() {
        let t0 = Instant::now();
        let mut m = start(t0);
        // An answer from another host latches it.
        m.handle_datagram(t0, addr("10.0.0.7:40000"), &oack(&[("blksize", "8")]));
        assert_eq!(sent(&mut m, t0), vec![(addr("10.0.0.7:40000"), ack(0))]);
        // The real server's DATA, and the right host on another port: dropped.
        m.handle_datagram(t0, addr(TID), &data(1, 8));
        m.handle_datagram(t0, addr("10.0.0.7:40001"), &data(1, 8));
        assert!(sent(&mut m, t0).is_empty());
        assert_eq!(m.counters().unknown_tid, 2);
    }

    #[test]
    fn a_strange_first_packet_latches_the_peer_and_timeouts_then_send_ack_0() {
        let t0 = Instant::now();
        let mut m = start(t0);
        m.handle_datagram(t0, addr(TID), &ack(9));
        assert!(sent(&mut m, t0).is_empty());
        let at = m.poll_timeout().unwrap();
        m.handle_timeout(at);
        assert_eq!(sent(&mut m, at), vec![(addr(TID), ack(0))]);
    }

    #[test]
    fn an_error_ends_the_transfer_with_no_reply() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, None);
        // Underlength ERROR: ignored.
        m.handle_datagram(t0, addr(TID), b"\x00\x05\x00");
        assert!(outcome(&mut m).is_none());
        m.handle_datagram(t0, addr(TID), b"\x00\x05\x00\x02denied\x00");
        assert!(sent(&mut m, t0).is_empty());
        assert_eq!(
            outcome(&mut m).unwrap().unwrap_err(),
            peer(ErrorCode::ACCESS_VIOLATION, "denied")
        );
        assert!(m.is_closed());
    }

    #[test]
    fn bad_data_aborts_silently() {
        let t0 = Instant::now();
        let cases: Vec<Vec<u8>> = vec![
            data(1, 9),    // longer than blksize 8
            vec![0, 3, 0], // shorter than the header
            data(0, 8),    // block 0 before any rollover
        ];
        for case in cases {
            let mut m = negotiated(t0, None);
            m.handle_datagram(t0, addr(TID), &case);
            assert!(sent(&mut m, t0).is_empty(), "{case:?}");
            assert!(outcome(&mut m).unwrap().is_err());
            assert!(m.is_closed());
        }
    }

    #[test]
    fn block_numbers_roll_over_to_0() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, None);
        for b in 1..=65535u16 {
            m.handle_datagram(t0, addr(TID), &data(b, 8));
            assert_eq!(only(&mut m, t0), ack(b));
        }
        m.handle_datagram(t0, addr(TID), &data(0, 8));
        assert_eq!(only(&mut m, t0), ack(0));
        m.handle_datagram(t0, addr(TID), &data(1, 2));
        assert_eq!(only(&mut m, t0), ack(1));
        assert_eq!(outcome(&mut m).unwrap().unwrap().bytes, 65536 * 8 + 2);
    }

    #[test]
    fn an_empty_file_is_acked_with_ack_0() {
        // v1.21.1: the bitmap never grew (size 0), so DATA 1 sets no bit;
        // the first gap stays 0 and the bitmap is "full".
        let t0 = Instant::now();
        let mut m = start(t0);
        m.handle_datagram(t0, addr(TID), &oack(&[("blksize", "1432"), ("tsize", "0")]));
        assert_eq!(only(&mut m, t0), ack(0));
        m.handle_datagram(t0, addr(TID), &data(1, 0));
        assert_eq!(only(&mut m, t0), ack(0));
        assert_eq!(outcome(&mut m).unwrap().unwrap().bytes, 0);
    }

    #[test]
    fn abort_sends_error_0_tftp_aborted() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, None);
        m.abort(ErrorCode::OPTION_NEGOTIATION, "ignored");
        assert_eq!(
            sent(&mut m, t0),
            vec![(addr(TID), b"\x00\x05\x00\x00TFTP Aborted\x00".to_vec())]
        );
        assert!(outcome(&mut m).unwrap().is_err());
        assert!(m.is_closed());
    }

    impl IpxeGet<MemSink> {
        fn sink_aborted(&self) -> bool {
            self.sink.aborted
        }
    }

    #[tokio::test]
    async fn download_from_a_tftplab_server() -> Result<(), Box<dyn std::error::Error>> {
        let file: Vec<u8> = (0..20_000u32).map(|i| (i * 13 + i / 97) as u8).collect();
        let (_root, server) = serve(&[("undionly.kpxe", &file)]).await?;
        let addr = server.local_addr();

        let sink = SharedSink::new();
        let machine = IpxeGet::new(
            now(),
            addr,
            "undionly.kpxe",
            sink.clone(),
            &Settings::default(),
        );
        let summary = run(machine, addr).await.expect("an outcome")?;
        assert_eq!(
            (summary.negotiated.blksize, summary.negotiated.tsize),
            (1432, Some(file.len() as u64))
        );
        assert_eq!(committed(&sink), file);
        Ok(())
    }
}
