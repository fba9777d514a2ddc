//! U-Boot's TFTP client (`tftpboot`), as U-Boot v2023.01 (Debian bookworm's
//! `u-boot-qemu`) runs it: [`UBootGet`], a sans-IO machine that sends and
//! accepts the same datagrams, at the same times, as `net/tftp.c` and the
//! parts of `net/net.c` around it.
//!
//! Every rule below cites `net/tftp.c` (or `net/net.c`) at tag `v2023.01`,
//! by function and line of `git show v2023.01:net/tftp.c`. In short:
//!
//! - the RRQ is `file\0octet\0timeout\0<T>\0[tsize\00\0]blksize\0<B>\0[windowsize\0<W>\0]`
//!   (`tftp_send`, L332-369); the blksize asked is capped at 1468
//!   (`sanitize_tftp_block_size_option`, L725-761);
//! - any datagram is taken while the RRQ is unanswered, from any port; after
//!   that only from the latched server port, and never checked for source IP
//!   (`tftp_handler`, L465-470); strangers are dropped, never answered;
//! - an OACK is taken in every state: blksize above the asked one or a
//!   timeout other than the asked one is ERROR 8; windowsize is taken
//!   unchecked; the answer is ACK of the current block (L520-585);
//! - DATA is taken strictly in order; the first stray block at a position
//!   draws one ACK of the last in-order block (`tftp_last_nack`), later ones
//!   nothing (L591-608); an in-order block is ACKed when it reaches
//!   `tftp_next_ack`, which moves on by the window (L661-664) and is re-based
//!   by that one "NACK" (L604-605); a short block is ACKed once and the
//!   transfer ends at once, with no dally (L651-655);
//! - an OACK after DATA puts the machine back into the OACK state, and the
//!   next in-order block then fails "First block is not block 1" (L618-633);
//! - one fixed timer: `tftptimeout` (5000 ms) from the last in-order block or
//!   the last timeout, no backoff (`net_loop` runs the handler on the first
//!   whole millisecond past it, net/net.c L646-647: 5001 ms here); each expiry resends the RRQ or the last
//!   ACK, and the `tftptimeoutcountmax + 1`-th expiry of the whole transfer
//!   (reset only on a 65535 -> 0 wrap) gives up (L693-703, L270-284);
//! - ERROR 1 and 2 end the transfer; so does every other code, and every
//!   other failure, unless `netretry` allows a restart (L667-688,
//!   `net_start_again` in net/net.c L737-789);
//! - blocks roll over 65535 -> 0 (L610-611, L278-282).
//!
//! # What this model leaves out
//!
//! - ARP: U-Boot resolves the server's MAC before the first RRQ and moves its
//!   timer base while it does (`net_loop`, net/net.c L606-607).
//! - The local port: U-Boot picks `1024 + get_timer(0) % 3072` in each
//!   `tftp_start` (L928), so a `netretry` restart comes from a new port. The
//!   machine keeps the driver's socket, so a restart here reuses the port.
//! - Memory: U-Boot stores block `n` at `(n - 1) * blksize` (+ 65536 blocks
//!   per wrap) without checking the DATA length against blksize (`store_block`,
//!   L156-185), so an oversized block is partly overwritten by the next one.
//!   A [`Sink`] only appends: the machine writes the bytes past what it has
//!   written, so where U-Boot's later block wins, here the earlier one does.
//!   A restart rewrites from offset 0 in U-Boot; here the bytes already
//!   written are kept (identical if the file has not changed).
//! - The receive batch: `eth_rx` hands up to 32 frames to the handler before
//!   `net_loop` looks at the state again (net/eth-uclass.c L400-411), so
//!   datagrams already queued behind the last block or an ERROR still reach
//!   `tftp_handler`. Here the machine closes at once.
//! - The NIC: frames over the MTU, and IP fragments without
//!   `CONFIG_IP_DEFRAG`, never reach U-Boot; the machine takes any length.
//! - `CONFIG_CMD_TFTPSRV`'s WRQ case (a WRQ mid-`tftpboot` would restart it as
//!   a server); the qemu defconfigs do not enable it.
//!
//! # Current upstream (v2026.10-rc) differs
//!
//! - v2023.04, commit 21a265c0d1e "net: tftp: Fix for DATA ACK for block
//!   count out of order": a stray block is NACKed only if
//!   `(ushort)(cur + 1) - (short)block > 0` is false, meant as "only future
//!   blocks"; through the signed cast every block number >= 32768 counts as
//!   old, so past block 32767 no gap is NACKed at all. v2023.01 NACKs old
//!   and future blocks alike (once per position).
//! - v2025.04, commit 395ee74991a: `timeout_count` is reset on every
//!   in-order block, so `tftptimeoutcountmax` counts consecutive timeouts,
//!   not timeouts per transfer (per 65536 blocks).
//! - Commit caa2ad6f8c8 (2025-10): `tftpsrcp`/`tftpdstp` are honoured without
//!   `CONFIG_TFTP_PORT`. Commit 44340456475 (2024): `eth_halt_state_only`
//!   instead of `eth_halt` on ERROR 1/2 and store failures (no wire change).
//!   Commit a28db0f1ccd (2026): `tftp_tsize` unsigned (progress bar only).
//! - Upstream also has an lwIP TFTP client (`CONFIG_NET_LWIP`), not modelled.
//!
//! [`Sink`]: tftplab::data::Sink

use super::{ack_packet, error_packet, OP_DATA, OP_ERROR, OP_OACK, OP_RRQ};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tftplab::data::Sink;
use tftplab::options::Negotiated;
use tftplab::proto::{Counters, Event, Summary, Transfer, TransferError, Transmit};
use tftplab::wire::{ErrorCode, MAX_DATAGRAM};

/// `TIMEOUT`, net/tftp.c L28: the default `tftptimeout`, in milliseconds.
pub const TIMEOUT_MS: u64 = 5000;
/// `CONFIG_NET_RETRY_COUNT * 2` (net/Kconfig: 5), net/tftp.c L43 and L57.
pub const TIMEOUT_COUNT_MAX: u32 = 10;
/// `CONFIG_TFTP_BLOCKSIZE`, net/Kconfig L85-87.
pub const BLOCKSIZE: u16 = 1468;
/// The cap on the blksize asked without `CONFIG_IP_DEFRAG`:
/// `sanitize_tftp_block_size_option`, net/tftp.c L753.
pub const BLOCKSIZE_CAP: u16 = 1468;
/// `TFTP_BLOCK_SIZE`, net/tftp.c L120: the block size until an OACK says
/// otherwise (reset in `tftp_start`, L944).
pub const DEFAULT_BLOCK_SIZE: u16 = 512;
/// The wait before a restart when the only NIC is tried again
/// (`net_restart_wrap`): `net_start_again`, net/net.c L776-780.
pub const RESTART_WRAP_WAIT: Duration = Duration::from_millis(10_000);
/// `MAX_LEN`, net/tftp.c L128-134: `tftp_filename` holds 127 bytes and the
/// NUL (`net_parse_bootfile`, net/net.c L1682-1686).
pub const FILENAME_MAX: usize = 127;
/// The message of U-Boot's ERROR 8, `tftp_send`, net/tftp.c L424.
pub const OPTION_NEGOTIATION_FAILED: &str = "Option Negotiation Failed";

/// The `netretry` environment variable, read by `net_start_again`
/// (net/net.c L744-767). Every failure goes through it: an ERROR from the
/// server (codes 1 and 2 set `NETLOOP_FAIL`, which `net_loop` hands to
/// `net_start_again`, L672-673; the others call it directly), running out of
/// timeouts, U-Boot's own ERROR 8, and "First block is not block 1".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetRetry {
    /// Unset (or `no`): the first failure ends the transfer (default).
    #[default]
    No,
    /// `once` (1) or a number: that many restarts in all.
    Count(u64),
    /// `yes`: restart forever.
    Forever,
}

/// U-Boot's environment and build options that change what `tftpboot` puts
/// on the wire. [`Default`] is Debian's `qemu_arm64` build with no variables
/// set (what `hw-tests/tests/uboot.rs` boots, before its `setenv`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UBootSettings {
    /// `tftptimeout` in milliseconds (default [`TIMEOUT_MS`]); raised to
    /// 1000 if lower (`tftp_start`, L787-795). The RRQ asks for
    /// `timeout_ms / 1000` seconds, and an OACK must answer exactly that.
    pub timeout_ms: u64,
    /// `tftptimeoutcountmax` (default [`TIMEOUT_COUNT_MAX`]): the timeouts
    /// one transfer may have; one more gives up (`tftp_timeout_handler`,
    /// L695). Negative values become 0 in U-Boot (L801-805).
    pub timeout_count_max: u32,
    /// `tftpblocksize` (default [`BLOCKSIZE`]), capped at
    /// [`UBootSettings::blksize_cap`]. U-Boot has no lower bound (0 is sent
    /// as `blksize 0`).
    pub blksize: u16,
    /// The cap on `blksize`: [`BLOCKSIZE_CAP`] without `CONFIG_IP_DEFRAG`,
    /// `CONFIG_NET_MAXDEFRAG - 32` (at most 65464) with it
    /// (`sanitize_tftp_block_size_option`, L725-761).
    pub blksize_cap: u16,
    /// `tftpwindowsize` (default 1, `CONFIG_TFTP_WINDOWSIZE`): asked for only
    /// when above 1 (`tftp_send`, L365-367).
    pub windowsize: u16,
    /// `CONFIG_TFTP_TSIZE`: the RRQ carries `tsize 0` (`tftp_send`,
    /// L353-356). Set in `qemu-x86_defconfig` and `qemu-x86_64_defconfig`,
    /// not in `qemu_arm64_defconfig` (default `false`).
    pub tsize: bool,
    /// `netretry` (default unset: no restart).
    pub netretry: NetRetry,
    /// How long a restart waits before its new RRQ: [`RESTART_WRAP_WAIT`]
    /// when the board has one NIC and `ethrotate` is not `no` (the rotation
    /// wraps straight back to it, `eth_try_another`, net/eth_common.c
    /// L99-107); `None` (at once) with `ethrotate=no` or
    /// `CONFIG_NET_DO_NOT_TRY_ANOTHER`.
    pub restart_wait: Option<Duration>,
}

impl Default for UBootSettings {
    fn default() -> Self {
        UBootSettings {
            timeout_ms: TIMEOUT_MS,
            timeout_count_max: TIMEOUT_COUNT_MAX,
            blksize: BLOCKSIZE,
            blksize_cap: BLOCKSIZE_CAP,
            windowsize: 1,
            tsize: false,
            netretry: NetRetry::No,
            restart_wait: Some(RESTART_WRAP_WAIT),
        }
    }
}

impl UBootSettings {
    /// `tftp_timeout_ms` after the clamp of `tftp_start` (L791-795).
    fn timeout_ms(&self) -> u64 {
        self.timeout_ms.max(1000)
    }

    /// `tftp_block_size_option` after `sanitize_tftp_block_size_option`.
    fn blksize_option(&self) -> u16 {
        self.blksize.min(self.blksize_cap)
    }
}

/// `tftp_state`, net/tftp.c L110-117, for a `tftpboot`, plus the two states
/// `net_loop` adds around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `STATE_SEND_RRQ`: the RRQ is out, no answer yet.
    SendRrq,
    /// `STATE_OACK`: an OACK was taken and ACK 0 (ACK cur) sent.
    Oack,
    /// `STATE_DATA`: blocks are arriving.
    Data,
    /// `net_start_again` with `net_restart_wrap`: the UDP handler is
    /// cleared (net/net.c L781) and a restart is due at the deadline.
    RestartWait,
    /// `net_loop` left: success or failure reported.
    Done,
}

/// U-Boot v2023.01's `tftpboot` as a sans-IO [`Transfer`]: one download of
/// `filename` from `server` into `sink`. See the module docs for the rules.
pub struct UBootGet<K: Sink> {
    settings: UBootSettings,
    /// `tftp_timeout_ms` + the 1 ms of `net_loop`'s strict comparison.
    period: Duration,
    server: SocketAddr,
    filename: Vec<u8>,
    sink: K,
    state: State,
    /// `tftp_remote_port`.
    remote_port: u16,
    /// `tftp_cur_block`, always below 65536 (L611).
    cur_block: u16,
    /// `tftp_prev_block`.
    prev_block: u16,
    /// `tftp_block_wrap`.
    block_wrap: u64,
    /// `tftp_block_size`.
    block_size: u16,
    /// `tftp_windowsize`.
    windowsize: u16,
    /// `tftp_next_ack`: a file-scope static, never reset by `tftp_start`.
    next_ack: u16,
    /// `tftp_last_nack`.
    last_nack: u16,
    /// `timeout_count`.
    timeout_count: u32,
    /// `net_try_count`, net/net.c L427.
    try_count: u64,
    /// When `net_loop` runs the timeout handler (`time_start + time_delta`).
    deadline: Option<Instant>,
    /// `net_boot_file_size` of this attempt: the highest byte stored.
    file_size: u64,
    /// Bytes handed to the sink (across restarts).
    written: u64,
    /// In-order blocks of this attempt.
    blocks: u64,
    started: Instant,
    negotiated: Negotiated,
    negotiated_reported: bool,
    last_ack: Option<u16>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl<K: Sink> UBootGet<K> {
    /// `tftpboot <filename>` against `server` (`serverip`, port 69 unless
    /// `tftpdstp`): sends the RRQ at `now` (`tftp_start`, L763-951).
    /// `filename` is cut to [`FILENAME_MAX`] bytes, as `net_parse_bootfile`
    /// does.
    pub fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        sink: K,
        settings: &UBootSettings,
    ) -> Self {
        let mut name = filename.as_bytes().to_vec();
        name.truncate(FILENAME_MAX);
        // `strcpy` into the packet stops at the first NUL.
        if let Some(nul) = name.iter().position(|&b| b == 0) {
            name.truncate(nul);
        }
        let period = Duration::from_millis(settings.timeout_ms()) + Duration::from_millis(1);
        let mut machine = UBootGet {
            settings: settings.clone(),
            period,
            server,
            filename: name,
            sink,
            state: State::SendRrq,
            remote_port: server.port(),
            cur_block: 0,
            prev_block: 0,
            block_wrap: 0,
            block_size: DEFAULT_BLOCK_SIZE,
            windowsize: 1,
            next_ack: 0,
            last_nack: 0,
            timeout_count: 0,
            try_count: 1,
            deadline: None,
            file_size: 0,
            written: 0,
            blocks: 0,
            started: now,
            negotiated: Negotiated::default(),
            negotiated_reported: false,
            last_ack: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        };
        machine.tftp_start(now);
        machine
    }

    /// `tftp_start`, L763-951 (and `net_loop`'s `net_boot_file_size = 0`,
    /// net/net.c L481): a fresh RRQ to the server's well-known port with the
    /// timer armed, every per-transfer variable reset, except `tftp_next_ack`
    /// (a static it never touches) and `tftp_prev_block` and the wrap count
    /// (reset by `new_transfer` on the first block).
    fn tftp_start(&mut self, now: Instant) {
        self.state = State::SendRrq;
        self.file_size = 0;
        self.blocks = 0;
        self.arm(now); // L920
        self.remote_port = self.server.port(); // L925
        self.timeout_count = 0; // L926
        self.cur_block = 0; // L938
        self.windowsize = 1; // L939
        self.last_nack = 0; // L940
        self.block_size = DEFAULT_BLOCK_SIZE; // L944
        self.last_ack = None;
        self.tftp_send(); // L950
    }

    /// `net_set_timeout_handler(timeout_ms, ...)`, net/net.c L837-850: the
    /// handler runs on the first `net_loop` pass where
    /// `get_timer(0) - time_start > time_delta` (L646-647), whole
    /// milliseconds, so `timeout_ms + 1` ms after arming.
    fn arm(&mut self, now: Instant) {
        self.deadline = Some(now + self.period);
    }

    /// Where U-Boot sends: `tftp_remote_ip` is the server's address from
    /// `tftp_start` (L816) and never changes; only the port is latched.
    fn peer(&self) -> SocketAddr {
        SocketAddr::new(self.server.ip(), self.remote_port)
    }

    fn push(&mut self, datagram: Vec<u8>) {
        let dest = self.peer();
        self.out.push_back((dest, datagram));
    }

    /// `tftp_send`, L314-443: what the current state sends. The RRQ in
    /// `STATE_SEND_RRQ` (L333-369), else ACK `tftp_cur_block` (L371-391).
    fn tftp_send(&mut self) {
        match self.state {
            State::SendRrq => {
                let rrq = self.rrq();
                self.push(rrq);
            }
            State::Oack | State::Data => {
                let block = self.cur_block;
                let ack = ack_packet(block);
                self.counters.acks_sent += 1;
                if self.last_ack == Some(block) {
                    self.counters.acks_retransmitted += 1;
                }
                self.last_ack = Some(block);
                self.push(ack);
            }
            State::RestartWait | State::Done => {}
        }
    }

    /// The RRQ, `tftp_send` L333-369: filename, `octet`, `timeout` (whole
    /// seconds of `timeout_ms`, L350), `tsize 0` with `CONFIG_TFTP_TSIZE`
    /// (`net_boot_file_size` is 0, net/net.c L481), `blksize`, and
    /// `windowsize` only when above 1 (L365).
    fn rrq(&self) -> Vec<u8> {
        let s = &self.settings;
        let mut p = Vec::with_capacity(64 + self.filename.len());
        p.extend_from_slice(&OP_RRQ.to_be_bytes());
        let mut field = |v: &[u8]| {
            p.extend_from_slice(v);
            p.push(0);
        };
        field(&self.filename);
        field(b"octet");
        field(b"timeout");
        field((s.timeout_ms() / 1000).to_string().as_bytes());
        if s.tsize {
            field(b"tsize");
            field(b"0");
        }
        field(b"blksize");
        field(s.blksize_option().to_string().as_bytes());
        if s.windowsize > 1 {
            field(b"windowsize");
            field(s.windowsize.to_string().as_bytes());
        }
        p
    }

    /// Sends ERROR 8 "Option Negotiation Failed" (`STATE_INVALID_OPTION`,
    /// `tftp_send` L418-429), which sets `NETLOOP_FAIL` (L441-442).
    fn send_option_error(&mut self) {
        self.push(error_packet(
            ErrorCode::OPTION_NEGOTIATION,
            OPTION_NEGOTIATION_FAILED,
        ));
    }

    /// `net_start_again`, net/net.c L737-789, for any failure: with
    /// `netretry` unset the transfer ends with `error`. A permitted restart
    /// counts one try, then waits [`UBootSettings::restart_wait`] with the
    /// UDP handler cleared (L778-781) or restarts at once (L786), and
    /// `net_loop` re-runs `tftp_start` (L676-678).
    fn net_start_again(&mut self, now: Instant, error: TransferError) {
        let allowed = match self.settings.netretry {
            NetRetry::Forever => true,
            NetRetry::No => false,
            NetRetry::Count(n) => self.try_count <= n,
        };
        if !allowed {
            self.finish(Err(error));
            return;
        }
        self.try_count += 1;
        match self.settings.restart_wait {
            Some(wait) => {
                self.state = State::RestartWait;
                self.deadline = Some(now + wait + Duration::from_millis(1));
            }
            None => self.tftp_start(now),
        }
    }

    fn finish(&mut self, result: Result<Summary, TransferError>) {
        if result.is_err() {
            self.sink.abort();
        }
        self.state = State::Done;
        self.deadline = None;
        self.events.push_back(Event::Finished(result));
    }

    fn report_negotiated(&mut self) {
        if !self.negotiated_reported {
            self.negotiated_reported = true;
            self.events.push_back(Event::Negotiated(self.negotiated));
        }
    }

    /// `case TFTP_OACK`, L520-585. Taken in any state once the port filter
    /// passes; latches the server port (L529-530). The options are found by
    /// trying `strcasecmp` at every byte offset `i` with `i + 8 < len`
    /// (L536), so a name matches wherever a NUL-terminated string ends in
    /// it, and an option too close to the end is missed. `blksize` above the
    /// asked value (L542-546) or `timeout` other than the asked one
    /// (L553-557) is ERROR 8; `tsize` is only stored (L560-565);
    /// `windowsize` is taken unchecked, 0 and unrequested included
    /// (L567-572). Then `tftp_next_ack = tftp_windowsize` (L575) and ACK of
    /// `tftp_cur_block` (L584): ACK 0 on a fresh transfer, ACK cur after
    /// DATA. The timer is not touched.
    fn on_oack(&mut self, now: Instant, from: SocketAddr, pkt: &[u8]) {
        self.state = State::Oack;
        self.remote_port = from.port();
        let asked_timeout = self.settings.timeout_ms() / 1000;
        let mut invalid = false;
        let mut timeout = None;
        let mut tsize = None;
        let len = pkt.len();
        let mut i = 0;
        while i + 8 < len {
            let name = c_str(pkt, i);
            if name.eq_ignore_ascii_case(b"blksize") {
                self.block_size = dectoul(c_str(pkt, i + 8)) as u16;
                if self.block_size > self.settings.blksize_option() {
                    invalid = true;
                }
            }
            if name.eq_ignore_ascii_case(b"timeout") {
                let t = dectoul(c_str(pkt, i + 8)) as u16;
                timeout = Some(t);
                if u64::from(t) != asked_timeout {
                    invalid = true;
                }
            }
            if self.settings.tsize && name.eq_ignore_ascii_case(b"tsize") {
                // `static int tftp_tsize`.
                tsize = Some(u64::from(dectoul(c_str(pkt, i + 6)) as u32));
            }
            if name.eq_ignore_ascii_case(b"windowsize") {
                self.windowsize = dectoul(c_str(pkt, i + 11)) as u16;
            }
            i += 1;
        }
        self.next_ack = self.windowsize;
        if invalid {
            self.send_option_error();
            let error = TransferError::Local {
                code: ErrorCode::OPTION_NEGOTIATION,
                message: OPTION_NEGOTIATION_FAILED.to_string(),
            };
            self.net_start_again(now, error);
            return;
        }
        if !self.negotiated_reported {
            let mut n = Negotiated::default();
            n.blksize = self.block_size;
            n.windowsize = self.windowsize;
            n.timeout = timeout.map(|t| u8::try_from(t).unwrap_or(u8::MAX));
            n.tsize = tsize;
            self.negotiated = n;
            self.report_negotiated();
        }
        self.tftp_send();
    }

    /// `case TFTP_DATA`, L586-665.
    fn on_data(&mut self, now: Instant, from: SocketAddr, pkt: &[u8]) {
        if pkt.len() < 2 {
            self.counters.ignored += 1; // L587-588
            return;
        }
        let block = u16::from_be_bytes([pkt[0], pkt[1]]);
        let payload = &pkt[2..];
        let expected = self.cur_block.wrapping_add(1);
        if block != expected {
            // L591-608: anything but the next block is dropped; the first
            // one at this position draws ACK cur and re-bases the window.
            if (block.wrapping_sub(expected) as i16) < 0 {
                self.counters.duplicate_data += 1;
            }
            if self.last_nack != self.cur_block {
                self.tftp_send();
                self.last_nack = self.cur_block;
                self.next_ack = self.cur_block.wrapping_add(self.windowsize);
            } else {
                self.counters.ignored += 1;
            }
            return;
        }
        self.cur_block = expected; // L610-611
        if self.state == State::SendRrq {
            // L613-616: the server ignored the options.
            self.next_ack = self.windowsize;
        }
        if matches!(self.state, State::SendRrq | State::Oack) {
            // L618-633: "first block received".
            self.state = State::Data;
            self.remote_port = from.port();
            self.new_transfer();
            if self.cur_block != 1 {
                let error = TransferError::Local {
                    code: ErrorCode::UNDEFINED,
                    message: format!("First block is not block 1 ({})", self.cur_block),
                };
                self.net_start_again(now, error);
                return;
            }
            if !self.negotiated_reported {
                // No OACK: 512-byte blocks, lock-step (L944, L939).
                self.negotiated = Negotiated::default();
                self.report_negotiated();
            }
        }
        if self.cur_block == self.prev_block {
            self.counters.ignored += 1; // L635-638, unreachable in practice
            return;
        }
        self.update_block_number();
        self.prev_block = self.cur_block; // L641
        self.arm(now); // L643
        if let Err(e) = self.store_block(payload) {
            // L645-649: no ERROR is sent.
            let error = TransferError::Local {
                code: ErrorCode::for_io_error(&e),
                message: format!("store failed: {e}"),
            };
            self.net_start_again(now, error);
            return;
        }
        self.blocks += 1;
        if payload.len() < usize::from(self.block_size) {
            // L651-655: the short block is ACKed once, whatever the window,
            // and `tftp_complete` ends the net loop: no dally.
            self.tftp_send();
            self.complete(now);
            return;
        }
        if self.cur_block == self.next_ack {
            // L661-664.
            self.tftp_send();
            self.next_ack = self.next_ack.wrapping_add(self.windowsize);
        }
    }

    /// `new_transfer`, L188-196.
    fn new_transfer(&mut self) {
        self.prev_block = 0;
        self.block_wrap = 0;
    }

    /// `update_block_number`, L270-284: a 65535 -> 0 step counts a wrap and
    /// resets `timeout_count` ("we've done well").
    fn update_block_number(&mut self) {
        if self.cur_block == 0 && self.prev_block != 0 {
            self.block_wrap += 1;
            self.timeout_count = 0;
        }
    }

    /// `store_block`, L156-185: block `cur` goes to
    /// `cur * blksize + wrap_offset - blksize`, the file size is the highest
    /// byte stored. See the module docs for what an appending sink cannot do.
    fn store_block(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let size = u64::from(self.block_size);
        let index = u64::from(self.cur_block) + self.block_wrap * 65536;
        let offset = index.wrapping_sub(1).wrapping_mul(size);
        let end = offset + payload.len() as u64;
        self.file_size = self.file_size.max(end);
        if end > self.written && offset <= self.written {
            let skip = (self.written - offset) as usize;
            self.sink.write_at(self.written, &payload[skip..])?;
            self.written = end;
        }
        Ok(())
    }

    /// `tftp_complete`, L287-312: `NETLOOP_SUCCESS`.
    fn complete(&mut self, now: Instant) {
        if let Err(e) = self.sink.commit() {
            let error = TransferError::Local {
                code: ErrorCode::for_io_error(&e),
                message: format!("commit failed: {e}"),
            };
            self.finish(Err(error));
            return;
        }
        let summary = Summary {
            bytes: self.file_size,
            blocks: self.blocks,
            retransmissions: self.counters.acks_retransmitted,
            duration: now.saturating_duration_since(self.started),
            negotiated: self.negotiated,
        };
        self.finish(Ok(summary));
    }

    /// `case TFTP_ERROR`, L667-688: codes 1 and 2 set `NETLOOP_FAIL`
    /// ("Not retrying"), the rest call `net_start_again` ("Starting again");
    /// both end in `net_start_again` (net/net.c L672-673), so `netretry`
    /// decides for all of them. Nothing is sent back.
    fn on_error(&mut self, now: Instant, pkt: &[u8]) {
        // U-Boot reads the code without checking the length; a short ERROR
        // is read here as code 0.
        let code = match pkt {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        };
        let message = String::from_utf8_lossy(c_str(pkt, 2)).into_owned();
        let error = TransferError::Peer {
            code: ErrorCode(code),
            message,
        };
        self.net_start_again(now, error);
    }

    /// `tftp_timeout_handler`, L693-703: the `tftptimeoutcountmax + 1`-th
    /// timeout restarts ("Retry count exceeded", L259-263); the others re-arm
    /// the same period (no backoff) and resend what the state sends (the
    /// RRQ, or ACK cur). No ERROR is sent when it gives up.
    fn on_timeout(&mut self, now: Instant) {
        self.counters.timeouts += 1;
        self.timeout_count += 1;
        if self.timeout_count > self.settings.timeout_count_max {
            let error = TransferError::TimedOut {
                retries: self.timeout_count - 1,
            };
            self.net_start_again(now, error);
            return;
        }
        self.arm(now);
        if self.state == State::SendRrq {
            self.counters.control_retransmitted += 1;
        }
        self.tftp_send();
    }
}

/// The NUL-terminated string at `at` in `pkt` (`strcasecmp`/`dectoul` read
/// up to the NUL). Past the datagram U-Boot reads stale buffer bytes; here
/// the string stops at the datagram's end.
fn c_str(pkt: &[u8], at: usize) -> &[u8] {
    let rest = pkt.get(at..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    &rest[..end]
}

/// `dectoul` = `simple_strtoul(cp, NULL, 10)`, lib/strto.c v2023.01: a
/// leading `0x`/`0X` switches to hexadecimal, digits are read until the
/// first that does not fit, no sign, no spaces, wrapping on overflow.
fn dectoul(s: &[u8]) -> u64 {
    let (digits, base) = match s {
        [b'0', x, rest @ ..] if x.eq_ignore_ascii_case(&b'x') => (rest, 16),
        _ => (s, 10),
    };
    let mut value: u64 = 0;
    for &c in digits {
        match (c as char).to_digit(base) {
            Some(d) => {
                value = value
                    .wrapping_mul(u64::from(base))
                    .wrapping_add(u64::from(d))
            }
            None => break,
        }
    }
    value
}

impl<K: Sink> Transfer for UBootGet<K> {
    /// `tftp_handler`, L457-690. The port filter (L465-470): while the RRQ
    /// is unanswered anything is taken; after that a datagram from another
    /// port is dropped without an answer (no ERROR 5). The source IP is
    /// never compared (`sip` is unused). RRQ, ACK and unknown opcodes do
    /// nothing (L480-507).
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.counters.datagrams_received += 1;
        if matches!(self.state, State::Done | State::RestartWait) {
            self.counters.ignored += 1;
            return;
        }
        if self.state != State::SendRrq && from.port() != self.remote_port {
            self.counters.unknown_tid += 1;
            return;
        }
        if datagram.len() < 2 {
            self.counters.ignored += 1;
            return;
        }
        let opcode = u16::from_be_bytes([datagram[0], datagram[1]]);
        let pkt = &datagram[2..];
        match opcode {
            OP_OACK => self.on_oack(now, from, pkt),
            OP_DATA => self.on_data(now, from, pkt),
            OP_ERROR => self.on_error(now, pkt),
            _ => self.counters.ignored += 1,
        }
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let (dest, datagram) = self.out.pop_front()?;
        let len = datagram.len().min(buf.len());
        buf[..len].copy_from_slice(&datagram[..len]);
        self.counters.datagrams_sent += 1;
        Some(Transmit { dest, len })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        // `net_loop` clears the handler before running it (net/net.c L667-669).
        self.deadline = None;
        match self.state {
            State::RestartWait => self.tftp_start(now),
            State::SendRrq | State::Oack | State::Data => self.on_timeout(now),
            State::Done => {}
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn is_closed(&self) -> bool {
        self.state == State::Done && self.out.is_empty()
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn bytes_transferred(&self) -> u64 {
        self.file_size
    }

    /// U-Boot's own loads take any frame the NIC passes; no cap here.
    fn max_datagram(&self) -> usize {
        MAX_DATAGRAM
    }

    /// Not a U-Boot path (Ctrl-C leaves `net_loop` without a datagram,
    /// net/net.c L625-640): for the [`Transfer`] contract, the server gets
    /// ERROR `code` if it has answered, and the transfer ends.
    fn abort(&mut self, code: ErrorCode, message: &str) {
        if self.state == State::Done {
            return;
        }
        if matches!(self.state, State::Oack | State::Data) {
            self.push(error_packet(code, message));
        }
        self.finish(Err(TransferError::Local {
            code,
            message: message.to_string(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::firmware::testkit::{
        ack, addr, committed, data, error, events, finished, local, oack, peer, run_with, sent,
        sent_to, serve, SERVER, TID,
    };
    use tftplab::data::MemSink;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn machine(t0: Instant, settings: &UBootSettings) -> UBootGet<MemSink> {
        UBootGet::new(t0, addr(SERVER), "Image", MemSink::new(), settings)
    }

    fn acks(blocks: &[u16]) -> Vec<Vec<u8>> {
        blocks.iter().map(|&b| ack(b)).collect()
    }

    /// A machine with windowsize `w` and `blksize` asked, past the OACK.
    fn negotiated(t0: Instant, w: u16, blksize: u16) -> UBootGet<MemSink> {
        let settings = UBootSettings {
            windowsize: w,
            blksize,
            ..UBootSettings::default()
        };
        let mut m = machine(t0, &settings);
        sent(&mut m, t0);
        let o = oack(&[
            ("blksize", &blksize.to_string()),
            ("timeout", "5"),
            ("windowsize", &w.to_string()),
        ]);
        m.handle_datagram(t0, addr(TID), &o);
        assert_eq!(sent_to(&mut m, t0, addr(TID)), acks(&[0]));
        events(&mut m);
        m
    }

    /// Feeds full blocks `blocks` and returns what was sent.
    fn feed(m: &mut UBootGet<MemSink>, now: Instant, blocks: &[u16], len: usize) -> Vec<Vec<u8>> {
        for &b in blocks {
            m.handle_datagram(now, addr(TID), &data(b, len));
        }
        sent_to(m, now, addr(TID))
    }

    fn range(from: u16, to: u16) -> Vec<u16> {
        (from..=to).collect()
    }

    /// `tftp_send` L333-369: the default (qemu_arm64) RRQ, to port 69.
    #[test]
    fn rrq_bytes_default() {
        let t0 = Instant::now();
        let mut m = machine(t0, &UBootSettings::default());
        assert_eq!(
            sent(&mut m, t0),
            vec![(
                addr(SERVER),
                b"\0\x01Image\0octet\0timeout\x005\0blksize\x001468\0".to_vec()
            )]
        );
        assert_eq!(m.poll_timeout(), Some(t0 + ms(5001)));
    }

    /// The RRQ with tsize (x86 builds), windowsize, a timeout in whole
    /// seconds and the 1468 cap on blksize (L350, L353-356, L365-367,
    /// `sanitize_tftp_block_size_option`).
    #[test]
    fn rrq_bytes_options() {
        let t0 = Instant::now();
        let settings = UBootSettings {
            timeout_ms: 1500,
            blksize: 4000,
            windowsize: 8,
            tsize: true,
            ..UBootSettings::default()
        };
        let mut m = machine(t0, &settings);
        assert_eq!(
            sent_to(&mut m, t0, addr(SERVER)),
            vec![
                b"\0\x01Image\0octet\0timeout\x001\0tsize\x000\0blksize\x001468\0windowsize\x008\0"
                    .to_vec()
            ]
        );
        // tftptimeout below 1000 is raised to 1000 (L791-795).
        let low = UBootSettings {
            timeout_ms: 200,
            ..UBootSettings::default()
        };
        let mut m = machine(t0, &low);
        assert_eq!(
            sent_to(&mut m, t0, addr(SERVER)),
            vec![b"\0\x01Image\0octet\0timeout\x001\0blksize\x001468\0".to_vec()]
        );
        assert_eq!(m.poll_timeout(), Some(t0 + ms(1001)));
    }

    /// L520-585: the OACK latches the port, is answered with ACK 0, sets the
    /// window unchecked (larger than asked here) and does not move the timer.
    #[test]
    fn oack_accepted_acks_zero() {
        let t0 = Instant::now();
        let settings = UBootSettings {
            windowsize: 4,
            tsize: true,
            ..UBootSettings::default()
        };
        let mut m = machine(t0, &settings);
        sent(&mut m, t0);
        let t1 = t0 + ms(300);
        let o = oack(&[
            ("TIMEOUT", "5"),
            ("tsize", "3000"),
            ("blksize", "1024"),
            ("windowsize", "16"),
        ]);
        m.handle_datagram(t1, addr(TID), &o);
        assert_eq!(sent(&mut m, t1), vec![(addr(TID), ack(0))]);
        assert_eq!(m.poll_timeout(), Some(t0 + ms(5001)));
        let mut expect = Negotiated::default();
        expect.blksize = 1024;
        expect.windowsize = 16;
        expect.timeout = Some(5);
        expect.tsize = Some(3000);
        assert_eq!(events(&mut m), vec![Event::Negotiated(expect)]);
        // Windows of 16: block 16 is the first ACK point.
        let t2 = t1 + ms(10);
        assert_eq!(feed(&mut m, t2, &range(1, 15), 1024), acks(&[]));
        assert_eq!(feed(&mut m, t2, &[16], 1024), acks(&[16]));
    }

    /// L536-572: the scan's quirks. `i + 8 < len` misses a `tsize` with a
    /// one-digit value at the end; values go through `dectoul`, which reads
    /// `0x` as hexadecimal; a duplicate OACK before DATA is answered with
    /// ACK 0 again, and the transfer goes on.
    #[test]
    fn oack_scan_quirks() {
        let t0 = Instant::now();
        let settings = UBootSettings {
            tsize: true,
            ..UBootSettings::default()
        };
        let mut m = machine(t0, &settings);
        sent(&mut m, t0);
        let o = oack(&[("blksize", "0x200"), ("tsize", "7")]);
        m.handle_datagram(t0, addr(TID), &o);
        assert_eq!(sent_to(&mut m, t0, addr(TID)), acks(&[0]));
        let mut expect = Negotiated::default();
        expect.blksize = 512;
        assert_eq!(events(&mut m), vec![Event::Negotiated(expect)]);
        m.handle_datagram(t0, addr(TID), &o);
        assert_eq!(sent_to(&mut m, t0, addr(TID)), acks(&[0]));
        assert!(events(&mut m).is_empty());
        assert_eq!(feed(&mut m, t0, &[1], 512), acks(&[1]));
        assert_eq!(feed(&mut m, t0, &[2], 0), acks(&[2]));
        assert_eq!(finished(&mut m).unwrap().bytes, 512);
    }

    /// L542-557: blksize above the asked one, or a timeout other than the
    /// asked one, is ERROR 8 "Option Negotiation Failed" and the end.
    #[test]
    fn bad_oack_is_error_8() {
        let t0 = Instant::now();
        let wire = b"\0\x05\0\x08Option Negotiation Failed\0".to_vec();
        for options in [
            vec![("blksize", "1469"), ("timeout", "5")],
            vec![("timeout", "6"), ("blksize", "1468")],
            // The first bad option is enough; a later good one changes nothing.
            vec![("blksize", "2000"), ("blksize", "512")],
        ] {
            let mut m = machine(t0, &UBootSettings::default());
            sent(&mut m, t0);
            m.handle_datagram(t0, addr(TID), &oack(&options));
            assert_eq!(sent(&mut m, t0), vec![(addr(TID), wire.clone())]);
            assert_eq!(
                finished(&mut m),
                Err(local(
                    ErrorCode::OPTION_NEGOTIATION,
                    OPTION_NEGOTIATION_FAILED
                ))
            );
            assert!(m.is_closed());
            assert_eq!(m.poll_timeout(), None);
        }
        // A smaller blksize and an unrequested windowsize are taken.
        let mut m = machine(t0, &UBootSettings::default());
        sent(&mut m, t0);
        m.handle_datagram(
            t0,
            addr(TID),
            &oack(&[("blksize", "512"), ("windowsize", "2")]),
        );
        assert_eq!(sent_to(&mut m, t0, addr(TID)), acks(&[0]));
        assert_eq!(feed(&mut m, t0, &[1, 2], 512), acks(&[2]));
    }

    /// L661-664: with the window in order, ACK W, 2W, ...; the timer
    /// restarts on every new block (L643).
    #[test]
    fn in_order_window_ack_points() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, 4, 1468);
        let t1 = t0 + ms(100);
        assert_eq!(feed(&mut m, t1, &range(1, 12), 1468), acks(&[4, 8, 12]));
        assert_eq!(m.poll_timeout(), Some(t1 + ms(5001)));
        // W = 1 (no windowsize asked): every block.
        let mut m = negotiated(t0, 1, 1468);
        assert_eq!(feed(&mut m, t1, &range(1, 3), 1468), acks(&[1, 2, 3]));
    }

    /// L591-608: the first stray block draws one ACK of the last in-order
    /// block; the rest of the window, and the same gap again, draw nothing.
    #[test]
    fn gap_draws_one_ack() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, 8, 1468);
        assert_eq!(feed(&mut m, t0, &range(1, 8), 1468), acks(&[8]));
        // Block 11 lost: 12 draws ACK 10, 13..16 nothing.
        let t1 = t0 + ms(50);
        assert_eq!(feed(&mut m, t1, &range(9, 10), 1468), acks(&[]));
        assert_eq!(feed(&mut m, t1, &range(12, 16), 1468), acks(&[10]));
        // The stray blocks do not move the timer.
        assert_eq!(m.poll_timeout(), Some(t1 + ms(5001)));
        // The resent window loses 11 again: no second ACK at position 10.
        assert_eq!(feed(&mut m, t1, &range(12, 18), 1468), acks(&[]));
        // Old blocks at the same position: still nothing.
        assert_eq!(feed(&mut m, t1, &[3, 9, 10], 1468), acks(&[]));
        // Once the position moves, the next stray block draws one ACK again
        // (an old one here: v2023.01 does not tell old from future).
        assert_eq!(feed(&mut m, t1, &[11], 1468), acks(&[]));
        assert_eq!(feed(&mut m, t1, &[9, 10, 9], 1468), acks(&[11]));
        assert_eq!(m.counters().duplicate_data, 6);
    }

    /// L604-605: the one ACK re-bases `tftp_next_ack` to cur + W, so after
    /// a rewind the ACK points no longer fall on multiples of W.
    #[test]
    fn ack_points_shift_after_rewind() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, 8, 1468);
        assert_eq!(feed(&mut m, t0, &range(1, 2), 1468), acks(&[]));
        // 3 lost, 4 draws ACK 2; the server rewinds to 3.
        assert_eq!(feed(&mut m, t0, &range(4, 8), 1468), acks(&[2]));
        assert_eq!(feed(&mut m, t0, &range(3, 10), 1468), acks(&[10]));
        assert_eq!(feed(&mut m, t0, &range(11, 26), 1468), acks(&[18, 26]));
        // With W = 1 a duplicate block draws one ACK again, and only one.
        let mut m = negotiated(t0, 1, 1468);
        assert_eq!(feed(&mut m, t0, &[1, 1, 1], 1468), acks(&[1, 1]));
        assert_eq!(m.counters().acks_retransmitted, 1);
    }

    /// L651-655: the short block is ACKed once, off the window's ACK
    /// points, and the transfer ends at once: no dally, later datagrams
    /// (the server resending it) get nothing.
    #[test]
    fn final_ack_once_and_closed() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, 8, 1468);
        assert_eq!(feed(&mut m, t0, &range(1, 3), 1468), acks(&[]));
        let t1 = t0 + ms(20);
        assert_eq!(feed(&mut m, t1, &[4], 100), acks(&[4]));
        let summary = finished(&mut m).expect("success");
        assert_eq!(summary.bytes, 3 * 1468 + 100);
        assert_eq!(summary.blocks, 4);
        assert_eq!(summary.duration, ms(20));
        assert_eq!(summary.negotiated.windowsize, 8);
        assert!(m.is_closed());
        assert_eq!(m.poll_timeout(), None);
        assert_eq!(feed(&mut m, t1, &[4], 100), acks(&[]));
        assert!(events(&mut m).is_empty());
        let mut data = Vec::new();
        for b in 1..=4u16 {
            let len = if b == 4 { 100 } else { 1468 };
            data.extend_from_slice(&self::data(b, len)[4..]);
        }
        assert_eq!(m.sink.data, data);
        assert!(m.sink.committed);
    }

    /// L693-703: a fixed period (5000 ms + net_loop's 1 ms), no backoff,
    /// the RRQ resent on the same port; the 11th timeout gives up, sending
    /// nothing.
    #[test]
    fn timeout_resends_rrq_without_backoff() {
        let t0 = Instant::now();
        let mut m = machine(t0, &UBootSettings::default());
        let rrq = sent_to(&mut m, t0, addr(SERVER));
        let mut now = t0;
        for _ in 0..10 {
            let at = m.poll_timeout().unwrap();
            assert_eq!(at - now, ms(5001));
            // Early calls do nothing.
            m.handle_timeout(at - ms(1));
            assert!(sent(&mut m, at).is_empty());
            now = at;
            m.handle_timeout(now);
            assert_eq!(sent_to(&mut m, now, addr(SERVER)), rrq);
        }
        m.handle_timeout(m.poll_timeout().unwrap());
        assert!(sent(&mut m, now).is_empty());
        assert_eq!(
            finished(&mut m),
            Err(TransferError::TimedOut { retries: 10 })
        );
        assert!(m.is_closed());
        assert_eq!(m.counters().control_retransmitted, 10);
    }

    /// L695, L281: `timeout_count` counts over the whole transfer (not reset
    /// by progress, only by a 65535 -> 0 wrap); the timer restarts on a new
    /// in-order block only, never on the OACK or stray blocks; in DATA a
    /// timeout resends ACK cur.
    #[test]
    fn timeout_budget_is_per_transfer() {
        let t0 = Instant::now();
        let settings = UBootSettings {
            timeout_count_max: 3,
            ..UBootSettings::default()
        };
        let mut m = machine(t0, &settings);
        sent(&mut m, t0);
        let t1 = m.poll_timeout().unwrap();
        m.handle_timeout(t1); // 1
        sent(&mut m, t1);
        // The OACK does not restart the timer; its timeout resends ACK 0.
        m.handle_datagram(t1 + ms(10), addr(TID), &oack(&[("blksize", "1468")]));
        assert_eq!(sent_to(&mut m, t1, addr(TID)), acks(&[0]));
        let t2 = m.poll_timeout().unwrap();
        assert_eq!(t2, t1 + ms(5001));
        m.handle_timeout(t2); // 2
        assert_eq!(sent_to(&mut m, t2, addr(TID)), acks(&[0]));
        // Progress restarts the timer but not the count.
        let t3 = t2 + ms(100);
        assert_eq!(feed(&mut m, t3, &[1, 2], 1468), acks(&[1, 2]));
        assert_eq!(m.poll_timeout(), Some(t3 + ms(5001)));
        assert_eq!(feed(&mut m, t3 + ms(1), &[2], 1468), acks(&[2]));
        assert_eq!(m.poll_timeout(), Some(t3 + ms(5001)));
        let t4 = m.poll_timeout().unwrap();
        m.handle_timeout(t4); // 3
        assert_eq!(sent_to(&mut m, t4, addr(TID)), acks(&[2]));
        assert_eq!(feed(&mut m, t4, &[3], 1468), acks(&[3]));
        m.handle_timeout(m.poll_timeout().unwrap()); // 4 > 3
        assert!(sent(&mut m, t4).is_empty());
        assert_eq!(
            finished(&mut m),
            Err(TransferError::TimedOut { retries: 3 })
        );
    }

    /// L672-677: ERROR 1 ends the transfer with the server's error, nothing
    /// sent back; with `netretry` unset so does every other code.
    #[test]
    fn error_ends_transfer() {
        let t0 = Instant::now();
        for code in [1u16, 2, 0, 4, 5] {
            let mut m = machine(t0, &UBootSettings::default());
            sent(&mut m, t0);
            m.handle_datagram(t0, addr(TID), &error(code, "nope"));
            assert!(sent(&mut m, t0).is_empty());
            assert_eq!(finished(&mut m), Err(peer(ErrorCode(code), "nope")));
            assert!(m.is_closed());
            assert!(m.sink.aborted);
        }
    }

    /// net/net.c L737-789: with `netretry=once` a failure restarts: the UDP
    /// handler is off for 10 s (one NIC), then a fresh RRQ to port 69; the
    /// second failure ends it.
    #[test]
    fn netretry_once_restarts_after_ten_seconds() {
        let t0 = Instant::now();
        let settings = UBootSettings {
            netretry: NetRetry::Count(1),
            ..UBootSettings::default()
        };
        let mut m = machine(t0, &settings);
        let rrq = sent_to(&mut m, t0, addr(SERVER));
        m.handle_datagram(t0, addr(TID), &error(0, "busy"));
        assert!(sent(&mut m, t0).is_empty());
        assert!(events(&mut m).is_empty());
        let at = m.poll_timeout().unwrap();
        assert_eq!(at, t0 + ms(10_001));
        // Ignored while waiting.
        m.handle_datagram(t0 + ms(5), addr(TID), &data(1, 10));
        assert!(sent(&mut m, t0).is_empty());
        m.handle_timeout(at);
        assert_eq!(sent_to(&mut m, at, addr(SERVER)), rrq);
        assert_eq!(m.poll_timeout(), Some(at + ms(5001)));
        m.handle_datagram(at, addr(TID), &error(1, "gone"));
        assert_eq!(
            finished(&mut m),
            Err(peer(ErrorCode::FILE_NOT_FOUND, "gone"))
        );
    }

    /// L465-470: before the first answer any port is taken; after it a
    /// datagram from another port is dropped, with no ERROR 5. The source
    /// IP is never checked, and replies go to the server's IP.
    #[test]
    fn other_port_ignored_ip_unchecked() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, 1, 1468);
        let stranger = addr("10.0.0.1:50001");
        m.handle_datagram(t0, stranger, &data(1, 1468));
        m.handle_datagram(t0, stranger, &error(0, "x"));
        m.handle_datagram(t0, stranger, &oack(&[("blksize", "512")]));
        assert!(sent(&mut m, t0).is_empty());
        assert!(events(&mut m).is_empty());
        assert_eq!(m.counters().unknown_tid, 3);
        let other_ip = addr("10.9.9.9:50000");
        m.handle_datagram(t0, other_ip, &data(1, 1468));
        assert_eq!(sent(&mut m, t0), vec![(addr(TID), ack(1))]);
        // No OACK: DATA 1 from any port latches that port (L613-633), and the
        // transfer runs with 512-byte blocks.
        let mut m = machine(t0, &UBootSettings::default());
        sent(&mut m, t0);
        let port = addr("10.0.0.1:40000");
        m.handle_datagram(t0, port, &data(1, 512));
        assert_eq!(sent(&mut m, t0), vec![(port, ack(1))]);
        assert_eq!(
            events(&mut m),
            vec![Event::Negotiated(Negotiated::default())]
        );
        m.handle_datagram(t0, port, &data(2, 10));
        assert_eq!(sent(&mut m, t0), vec![(port, ack(2))]);
        assert_eq!(finished(&mut m).unwrap().bytes, 522);
    }

    /// L618-633: an OACK after DATA (a late or duplicated one) is answered
    /// with ACK cur, and the next in-order block fails the transfer
    /// ("First block is not block 1").
    #[test]
    fn late_oack_kills_transfer() {
        let t0 = Instant::now();
        let mut m = negotiated(t0, 1, 1468);
        assert_eq!(feed(&mut m, t0, &[1, 2], 1468), acks(&[1, 2]));
        m.handle_datagram(
            t0,
            addr(TID),
            &oack(&[("blksize", "1468"), ("timeout", "5")]),
        );
        assert_eq!(sent_to(&mut m, t0, addr(TID)), acks(&[2]));
        assert_eq!(feed(&mut m, t0, &[3], 1468), acks(&[]));
        assert_eq!(
            finished(&mut m),
            Err(local(
                ErrorCode::UNDEFINED,
                "First block is not block 1 (3)"
            ))
        );
        assert!(m.is_closed());
    }

    /// L610-611, L278-282: block 0 follows 65535 (and resets the timeout
    /// budget); a server that wraps to 1 gets one ACK 65535, then nothing.
    #[test]
    fn rollover() {
        let t0 = Instant::now();
        let settings = UBootSettings {
            timeout_count_max: 1,
            ..UBootSettings::default()
        };
        let mut m = machine(t0, &settings);
        sent(&mut m, t0);
        m.handle_datagram(t0, addr(TID), &oack(&[("blksize", "8")]));
        sent(&mut m, t0);
        m.handle_timeout(m.poll_timeout().unwrap()); // 1 of 1
        sent(&mut m, t0);
        let mut last = Vec::new();
        for b in 1..=65535u16 {
            m.handle_datagram(t0, addr(TID), &data(b, 8));
            last = sent_to(&mut m, t0, addr(TID));
        }
        assert_eq!(last, acks(&[65535]));
        let mut wrong = negotiated_clone_point(&m);
        assert_eq!(feed(&mut m, t0, &[0], 8), acks(&[0]));
        // The wrap reset the budget: one more timeout is allowed.
        m.handle_timeout(m.poll_timeout().unwrap());
        assert_eq!(sent_to(&mut m, t0, addr(TID)), acks(&[0]));
        assert_eq!(feed(&mut m, t0, &[1], 3), acks(&[1]));
        let summary = finished(&mut m).unwrap();
        assert_eq!(summary.bytes, 65536 * 8 + 3);
        assert_eq!(m.sink.data.len(), 65536 * 8 + 3);
        // A server that wraps to 1.
        assert_eq!(feed(&mut wrong, t0, &[1, 1, 2], 8), acks(&[65535]));
    }

    /// A machine at block 65535 like `m`, for the wrap-to-1 half of
    /// [`rollover`] (cheaper than feeding 65535 blocks twice).
    fn negotiated_clone_point(m: &UBootGet<MemSink>) -> UBootGet<MemSink> {
        let mut c = UBootGet {
            settings: m.settings.clone(),
            sink: MemSink::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            filename: m.filename.clone(),
            ..*m
        };
        c.written = 0;
        c
    }

    /// End to end: the machine over a real loopback socket against a real
    /// tftplab server, lock-step and with `tftpwindowsize 8`, for a file
    /// that ends in a short block and one that ends in an empty block.
    #[tokio::test]
    async fn end_to_end_against_tftplab_server() {
        use tftplab::data::SharedSink;
        use tftplab::runtime::Control;

        let odd: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let even: Vec<u8> = (0..1468 * 40u32).map(|i| (i * 13 + 5) as u8).collect();
        let (_root, server) = serve(&[("odd.bin", &odd), ("even.bin", &even)])
            .await
            .unwrap();
        let addr = server.local_addr();
        for windowsize in [1u16, 8] {
            for (name, want) in [("odd.bin", &odd), ("even.bin", &even)] {
                let settings = UBootSettings {
                    windowsize,
                    ..UBootSettings::default()
                };
                let sink = SharedSink::new();
                let machine =
                    UBootGet::new(tftplab::runtime::now(), addr, name, sink.clone(), &settings);
                let mut negotiated = Vec::new();
                let on_event = |e: &Event| {
                    if let Event::Negotiated(n) = e {
                        negotiated.push(*n);
                    }
                    Control::Continue
                };
                let outcome = run_with(machine, addr, on_event)
                    .await
                    .expect("an outcome")
                    .expect("success");
                assert_eq!(negotiated.len(), 1);
                assert_eq!(negotiated[0].blksize, 1468);
                assert_eq!(negotiated[0].windowsize, windowsize);
                assert_eq!(outcome.bytes, want.len() as u64);
                assert!(
                    committed(&sink) == *want,
                    "{name} with windowsize {windowsize}"
                );
            }
        }
        server.stop(Duration::from_secs(1)).await;
    }
}
