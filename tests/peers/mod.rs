//! Real TFTP peers for interop tests: start real servers (tftpd-hpa, atftpd,
//! dnsmasq) and run real clients (tftp-hpa, curl, atftp, busybox) on
//! loopback. An integration test includes it with `mod peers;`.
//!
//! `.ci/install-peers.sh` installs every peer. When one is missing a test
//! prints `SKIPPED (not run): <why>` (past the test harness's capture) and
//! passes, unless `TFTPLAB_REQUIRE_PEERS=1`, which turns the skip into a
//! failure (for CI, after running the installer, so that a broken install
//! cannot pass silently). The servers need root (chroot, `--user`, network
//! namespaces), so without root they count as missing.
//!
//! Only loopback is used: servers bind 127.0.0.1 on a free high port, except
//! dnsmasq, whose TFTP port is fixed at 69 and which therefore runs in a
//! network namespace of its own (see [`Netns`]).
//!
//! # Facts established by experiment (Debian 12, 2026-11)
//!
//! Versions: tftp-hpa and tftpd-hpa 5.2+20150808-1.4, atftp/atftpd 0.8.0-3,
//! curl 7.88.1, BusyBox 1.35.0, dnsmasq 2.90.
//!
//! ## Servers
//!
//! in.tftpd (tftpd-hpa), see [`server_command`]:
//! `in.tftpd --foreground --address 127.0.0.1:PORT --secure --user root
//! [--create --permissive --umask 022] ROOT`.
//! - `--foreground` (`-L`) implies `--listen` and stays attached; it forks a
//!   child per transfer, all in its process group. SIGTERM or SIGKILL stops it.
//! - `--secure` chroots into ROOT (needs root), so `../x` resolves to `x`
//!   inside the root rather than being refused; `/etc/passwd` gives ERROR 1.
//! - `--user root`: the default user `nobody` cannot read a 0700 temp dir.
//! - Without `--permissive` tftpd-hpa applies its own checks: an RRQ needs
//!   an o+r file (else ERROR 2 "File must have global read permissions"), a
//!   WRQ an existing o+w file (else ERROR 2 "File must have global write
//!   permissions"); without `--create` a WRQ for a new file gets ERROR 1.
//!   `--umask 022` because `--create` alone makes new files 0666.
//! - Logs only to syslog; with no /dev/log its output is empty.
//! - Options: blksize (70000 is capped to 65464; 4 gets ERROR 8), tsize,
//!   timeout. No windowsize: it is left out of the OACK. Mode `mail` gets
//!   ERROR 4 "Unknown mode"; a directory gets ERROR 0 "Is a directory".
//! - Never sends ERROR 6: a WRQ overwrites, truncating the old file as soon
//!   as the WRQ arrives (an aborted upload leaves it empty).
//! - In a network namespace whose only addresses are 127.0.0.1 and ::1 it
//!   exits at once with code 66 (EX_NOINPUT), for `-a 127.0.0.1:N`,
//!   `-a 0.0.0.0:N` and with `-4`: its getaddrinfo uses AI_ADDRCONFIG, which
//!   disregards loopback. Adding 127.0.0.2/8 to `lo` fixes it; [`Netns`]
//!   does that.
//!
//! atftpd (unpacked, not installed: it conflicts with tftpd-hpa):
//! `target/peers/atftpd/usr/sbin/atftpd --daemon --no-fork --port PORT
//! --bind-address 127.0.0.1 --logfile - --verbose=7 --user root --group root
//! ROOT` (`--logfile -` logs to stdout). SIGTERM stops it (exit 0).
//! - It has no read-only switch: whatever `--user` may write, a WRQ
//!   creates or overwrites. Read-only is therefore `--user nobody --group
//!   nogroup` with ROOT made 0755; then a WRQ is answered with ACK 0 and,
//!   after the first DATA, ERROR 2 "Access violation".
//! - `../etc/passwd` and `sub/../x` get ERROR 2 "Access violation";
//!   `/etc/passwd` gets ERROR 1. Mode `mail` is accepted (served as octet).
//!   A directory is served as an empty file.
//! - Options: blksize (out of range, 4 or 70000: ERROR 8 "Failure to
//!   negotiate RFC2347 options"), tsize, timeout, windowsize, multicast.
//! - Retries every 5 s (`tftp retry timeout: 5`).
//!
//! dnsmasq (package dnsmasq-base: binary only, no service), see
//! [`Netns`]: `ip netns exec NS dnsmasq --no-daemon --conf-file=/dev/null
//! --port=0 --enable-tftp --tftp-root=ROOT --listen-address=127.0.0.1 --bind-interfaces --user=root --group=root
//! --pid-file --log-facility=-`. `--no-daemon` keeps it in the foreground
//! logging to stderr; `--conf-file=/dev/null` ignores /etc/dnsmasq.conf;
//! `--port=0` turns DNS off; `--pid-file` with no value writes none;
//! `--user=root` because the default user `dnsmasq` cannot read a 0700 temp
//! dir. It needs no 127.0.0.2. SIGTERM stops it (exit 0).
//! - Read-only: every WRQ gets ERROR 4 "unsupported request from ...", as
//!   does mode `mail`. A missing file gets ERROR 1 "file ROOT/x not found
//!   for 127.0.0.1"; any `..` or a 0600 file gets ERROR 2 "cannot access ...:
//!   Permission denied"; a directory ERROR 0.
//! - Options: blksize (accepts 4, below RFC 2348's 8; answered 2263 for
//!   70000 on lo), tsize. Ignores timeout and windowsize.
//!
//! ## Clients
//!
//! See [`client_command`] for the command lines. What each sends (captured
//! with [`ErrorServer`]):
//! - tftp-hpa: no options at all, ever (`-m octet` sets the mode).
//! - curl: `tsize 0` (RRQ) or `tsize <size>` (WRQ), `blksize 512` even when
//!   `--tftp-blksize` is not given, `timeout 6`. No windowsize option exists.
//!   `--tftp-no-options` sends none.
//! - atftp: nothing by default; `--option "blksize N"`, `--option
//!   "windowsize N"`, `--option tsize`, `--option "timeout N"` each add one.
//!   It prints `Option blksize = N` lines to stderr.
//! - busybox: `tsize 0` (RRQ) or `tsize <size>` (WRQ), plus `blksize N` with
//!   `-b N`. No windowsize.
//!
//! Outcome when the server sends ERROR n:
//! - tftp-hpa: exit 0 (!), stdout `Error code n: <message>`, and a get
//!   leaves an empty local file behind. Only a timeout is an exit code:
//!   69 after 25 s with `Transfer timed out.` on stdout.
//! - curl: the exit code encodes n: 0 -> 71, 1 -> 68, 2 -> 69, 3 -> 70,
//!   4 -> 71, 5 -> 72, 6 -> 73, 7 -> 74, 8 (and unknown codes) -> 42. Its
//!   stderr is useless (`curl: (68) getpeername() failed with errno 107:
//!   ...` for every error). No answer: it waits up to 300 s unless
//!   `--max-time`/`--connect-timeout`; exit 28.
//! - curl 7.88.1 cannot download a 0-byte file from a server that answers
//!   tsize: it rejects `tsize 0` in the OACK ("invalid tsize -:0:- value in
//!   OACK packet") and exits 71, at once or, now and then, only when the
//!   server retransmits the OACK (6 s later: curl asks for timeout 6). It
//!   sends no ERROR, so the server retransmits until it gives up. Uploading
//!   0 bytes works, and so does `--tftp-no-options`.
//! - atftp: exit 255, stderr `tftp: error received from server <message>`
//!   and `tftp: aborting`; the code n is not printed. No answer: exit 255
//!   after about 30 s.
//! - busybox: exit 1, stderr `tftp: server error: (n) <message>`. No
//!   answer: exit 1 after about 13 s, stderr `tftp: timeout`.
//! - An unsupported mode cannot be sent by any of them: tftp-hpa knows only
//!   netascii and octet (`-m mail`: exit 64 `tftp: invalid mode: mail`), the
//!   others always send octet. The servers' answers to `mail` are above.
//!
//! ## Retransmission, with one DATA lost (nftables in a namespace, see
//! [`DropFirstData`])
//!
//! - tftp-hpa uploading: its alarm (5 s) restarts on every datagram it
//!   receives, and a repeated ACK of the previous block is ignored, not
//!   answered. It resends the lost DATA only after 5 s in which the server
//!   sent nothing; a server that re-ACKs every second holds it off until
//!   the server gives up (then tftp-hpa prints `Error code 0: ...`, exit 0).
//! - tftpd-hpa sending (an RRQ): its wait for an ACK runs against a deadline
//!   set when the DATA went out (`recv_time` deducts the time a duplicate
//!   ACK took), so re-ACKs do not hold it off: it resends 1 s after the
//!   lost DATA whatever the client sends meanwhile.
//!
//! All four clients, against in.tftpd and atftpd, download and upload 0, 512
//! and 1 MiB + 1 byte files intact (with and without blksize 1468, and
//! windowsize 16 for atftp; atftpd grants windowsize), except curl's 0-byte
//! download.
#![allow(dead_code)] // each test crate that includes this module uses only part of it

use std::ffi::{c_int, OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// How long a client may run before it is killed. Generous: the slowest
/// client gives up on a silent server after 30 s (atftp), curl after 300 s.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`ServerProcess::start`] waits for a server to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// The name the readiness probe asks for; no test root contains it.
const PROBE_FILE: &str = "tftplab-readiness-probe.does-not-exist";

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

// ---------------------------------------------------------------- skipping

/// True when `TFTPLAB_REQUIRE_PEERS=1`: a missing peer fails the test
/// instead of skipping it.
pub fn require_peers() -> bool {
    std::env::var_os("TFTPLAB_REQUIRE_PEERS").is_some_and(|v| v == "1")
}

/// Reports a missing peer: panics when peers are required, else prints
/// `SKIPPED (not run): <why>` to stderr. The caller returns afterwards; see
/// [`skip_or_fail!`].
pub fn report_missing(why: &str) {
    assert!(
        !require_peers(),
        "TFTPLAB_REQUIRE_PEERS=1 but a peer is missing: {why} (run .ci/install-peers.sh)"
    );
    // Past the test harness's capture, so a skip is seen even when the
    // test "passes".
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED (not run): {why}");
}

/// For loops over peers: true (after [`report_missing`]) when `check`
/// failed, so the caller can `continue` with the next peer.
pub fn skipped(check: Result<(), String>) -> bool {
    match check {
        Ok(()) => false,
        Err(why) => {
            report_missing(&why);
            true
        }
    }
}

/// True when `TFTPLAB_REQUIRE_NETNS=1`: a test that needs root, network
/// namespaces or nftables fails when it cannot have them, instead of
/// skipping (as the hw-tests and tests/hostile.rs do).
pub fn require_netns() -> bool {
    std::env::var_os("TFTPLAB_REQUIRE_NETNS").is_some_and(|v| v == "1")
}

/// As [`skipped`], for what a test needs besides a peer, such as
/// [`nft_usable`]: fails under `TFTPLAB_REQUIRE_NETNS=1`, and under
/// `TFTPLAB_REQUIRE_PEERS=1` too, since `.ci/install-peers.sh` installs
/// nftables and iproute2 with the peers.
pub fn skipped_without_netns(check: Result<(), String>) -> bool {
    let Err(why) = check else { return false };
    assert!(
        !require_netns(),
        "TFTPLAB_REQUIRE_NETNS=1 but {why} (run as root after .ci/install-peers.sh)"
    );
    report_missing(&why);
    true
}

/// `skip_or_fail!(check, ...)`: each check is a `Result<(), String>` such as
/// `available(Peer::Curl)`. On the first `Err` the test is skipped (returns)
/// or fails, as [`report_missing`] decides.
#[allow(unused_macros)] // as with dead_code above
macro_rules! skip_or_fail {
    ($($check:expr),+ $(,)?) => {
        $(
            if let Err(why) = $check {
                $crate::peers::report_missing(&why);
                return;
            }
        )+
    };
}
#[allow(unused_imports)] // as with dead_code above
pub(crate) use skip_or_fail;

// ---------------------------------------------------------------- peers

/// A real TFTP client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// tftp-hpa's `tftp`: sends no options; reports server errors with exit 0.
    TftpHpa,
    /// curl's TFTP support: always sends tsize, blksize and timeout; cannot
    /// download a 0-byte file from a server that answers tsize (7.88.1).
    Curl,
    /// atftp: sends only the options asked for; supports windowsize.
    Atftp,
    /// busybox's `tftp` applet: sends tsize, and blksize with `-b`.
    Busybox,
}

/// A real TFTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerServer {
    /// tftpd-hpa's `in.tftpd`.
    TftpdHpa,
    /// atftpd, run from `target/peers/atftpd/` where the installer unpacks it.
    Atftpd,
    /// dnsmasq's read-only TFTP server, on port 69 in its own namespace.
    Dnsmasq,
}

impl Peer {
    pub const ALL: [Peer; 4] = [Peer::TftpHpa, Peer::Curl, Peer::Atftp, Peer::Busybox];

    pub fn name(self) -> &'static str {
        match self {
            Peer::TftpHpa => "tftp-hpa",
            Peer::Curl => "curl",
            Peer::Atftp => "atftp",
            Peer::Busybox => "busybox tftp",
        }
    }

    /// Whether [`client_get`] and [`client_put`] accept `blksize` for it.
    pub fn supports_blksize(self) -> bool {
        self != Peer::TftpHpa
    }

    /// Whether [`client_get`] and [`client_put`] accept `windowsize` for it.
    pub fn supports_windowsize(self) -> bool {
        self == Peer::Atftp
    }
}

impl PeerServer {
    pub const ALL: [PeerServer; 3] = [
        PeerServer::TftpdHpa,
        PeerServer::Atftpd,
        PeerServer::Dnsmasq,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PeerServer::TftpdHpa => "tftpd-hpa",
            PeerServer::Atftpd => "atftpd",
            PeerServer::Dnsmasq => "dnsmasq",
        }
    }

    /// dnsmasq never accepts uploads.
    pub fn supports_write(self) -> bool {
        self != PeerServer::Dnsmasq
    }
}

/// A peer whose presence can be checked: [`Peer`] or [`PeerServer`].
pub trait PeerProgram: Copy {
    /// `Ok` when the peer can run here, else why not.
    fn available(self) -> Result<(), String>;
}

/// `Ok` when `peer` (a [`Peer`] or a [`PeerServer`]) can run here, else why
/// not; feed it to [`skip_or_fail!`].
pub fn available(peer: impl PeerProgram) -> Result<(), String> {
    peer.available()
}

impl PeerProgram for Peer {
    fn available(self) -> Result<(), String> {
        let program = self.program();
        let path = find_program(program)
            .ok_or_else(|| format!("{}: `{program}` not found", self.name()))?;
        // Check what the binary is, not only its name: `tftp` could be
        // another client, and curl or busybox may be built without TFTP.
        let (args, needle): (&[&str], &str) = match self {
            Peer::TftpHpa => (&["-V"], "tftp-hpa"),
            Peer::Curl => (&["-V"], " tftp"),
            Peer::Atftp => (&["--version"], "atftp"),
            Peer::Busybox => (&["--list"], "\ntftp\n"),
        };
        let out = Command::new(&path).args(args).output();
        let text = out.map(|o| format!("\n{}{}\n", lossy(&o.stdout), lossy(&o.stderr)));
        match text {
            Ok(text) if text.contains(needle) => Ok(()),
            Ok(_) => Err(format!(
                "{}: {} is not the expected client (no {needle:?} in `{} {}`)",
                self.name(),
                path.display(),
                program,
                args.join(" ")
            )),
            Err(e) => Err(format!(
                "{}: cannot run {}: {e}",
                self.name(),
                path.display()
            )),
        }
    }
}

impl PeerProgram for PeerServer {
    fn available(self) -> Result<(), String> {
        let name = self.name();
        if !is_root() {
            return Err(format!(
                "{name}: needs root (chroot, --user, network namespaces)"
            ));
        }
        match self {
            PeerServer::TftpdHpa => find_program("in.tftpd")
                .map(drop)
                .ok_or_else(|| format!("{name}: in.tftpd not found")),
            PeerServer::Atftpd => atftpd_path().map(drop).ok_or_else(|| {
                format!("{name}: not found in <target>/peers/atftpd/ (or set TFTPLAB_ATFTPD)")
            }),
            PeerServer::Dnsmasq => {
                find_program("dnsmasq").ok_or_else(|| format!("{name}: dnsmasq not found"))?;
                netns_usable().map_err(|why| format!("{name}: {why}"))
            }
        }
    }
}

impl Peer {
    fn program(self) -> &'static str {
        match self {
            Peer::TftpHpa => "tftp",
            Peer::Curl => "curl",
            Peer::Atftp => "atftp",
            Peer::Busybox => "busybox",
        }
    }
}

/// Looks in PATH, then in the sbin directories a non-login root shell may
/// lack from its PATH (in.tftpd, dnsmasq and ip live there).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where atftpd is: `$TFTPLAB_ATFTPD`, else the copy the installer unpacked
/// into `<target>/peers/atftpd/`, else one on PATH. The test binary runs
/// from `<target>/<profile>/deps/`, so searching its ancestors finds the
/// target dir wherever `CARGO_TARGET_DIR` put it.
pub fn atftpd_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TFTPLAB_ATFTPD") {
        return Some(PathBuf::from(p)).filter(|p| is_executable(p));
    }
    let unpacked = Path::new("peers/atftpd/usr/sbin/atftpd");
    let exe = std::env::current_exe().ok();
    let from_exe = exe
        .iter()
        .flat_map(|e| e.ancestors())
        .map(Path::to_path_buf);
    let manifest_target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    from_exe
        .chain(std::iter::once(manifest_target))
        .map(|dir| dir.join(unpacked))
        .find(|p| is_executable(p))
        .or_else(|| find_program("atftpd"))
}

fn is_root() -> bool {
    // Effective UID, the second field of `Uid:`; std has no geteuid.
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- namespaces

/// A network namespace of our own, deleted on drop. Its `lo` is up with
/// 127.0.0.1 and 127.0.0.2: the second address is what lets in.tftpd (and
/// anything else using getaddrinfo with AI_ADDRCONFIG) start at all.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create() -> io::Result<Netns> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale_namespaces();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tftplab-{}-{n}", std::process::id());
        ip(&["netns", "add", &name])?;
        // From here on, Drop deletes the namespace even if setup fails.
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns.name, "addr", "add", "127.0.0.2/8", "dev", "lo"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...`, e.g. `["addr", "del", "127.0.0.2/8",
    /// "dev", "lo"]`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        ip(&[&["-n", self.name()], args].concat())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("peers: cannot delete network namespace {}: {e}", self.name);
        }
    }
}

/// Deletes namespaces named `tftplab-<pid>-<n>` whose test process is gone
/// (it was killed before its Drop ran), so they don't pile up in /run/netns.
fn remove_stale_namespaces() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("tftplab-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// Whether this machine lets us create network namespaces (root is not
/// always enough in a container). Checked once per test process.
fn netns_usable() -> Result<(), String> {
    static USABLE: OnceLock<Result<(), String>> = OnceLock::new();
    USABLE
        .get_or_init(|| {
            find_program("ip").ok_or("`ip` (iproute2) not found")?;
            Netns::create()
                .map(drop)
                .map_err(|e| format!("cannot create a network namespace: {e}"))
        })
        .clone()
}

fn ip(args: &[&str]) -> io::Result<()> {
    let ip = find_program("ip")
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "`ip` not found"))?;
    let out = Command::new(ip).args(args).stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip {}`: {}: {}",
            args.join(" "),
            out.status,
            lossy(&out.stderr).trim()
        )))
    }
}

/// `cmd` wrapped as `ip netns exec NS cmd` (program, arguments, environment
/// and working directory kept), or unchanged for `None`. `ip netns exec`
/// execs the program, so the wrapped child's pid is the program's.
pub fn in_netns(ns: Option<&str>, cmd: Command) -> Command {
    let Some(ns) = ns else { return cmd };
    let ip = find_program("ip").unwrap_or_else(|| PathBuf::from("ip"));
    let mut wrapped = Command::new(ip);
    wrapped
        .args(["netns", "exec", ns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// Runs `cmd` inside namespace `ns` with [`CLIENT_TIMEOUT`].
pub fn run_in_netns(ns: &str, cmd: Command) -> PeerResult {
    run_with_timeout(None, in_netns(Some(ns), cmd), CLIENT_TIMEOUT)
}

/// A UDP socket on 127.0.0.1, port chosen by the kernel, in namespace `ns`
/// (or in ours for `None`), for probing a server from the test itself.
pub fn udp_socket_in(ns: Option<&str>) -> io::Result<UdpSocket> {
    let Some(ns) = ns else {
        return UdpSocket::bind((LOCALHOST, 0));
    };
    let handle = File::open(Path::new("/run/netns").join(ns))?;
    // setns moves only the calling thread, so a throwaway thread enters the
    // namespace; a socket stays in the namespace it was created in and can
    // then be used from any thread.
    thread::spawn(move || {
        // SAFETY: setns only reads the descriptor, which `handle` keeps open
        // for the duration of the call.
        if unsafe { setns(handle.as_raw_fd(), CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        UdpSocket::bind((LOCALHOST, 0))
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("setns thread panicked")))
}

// std wraps neither setns nor kill-a-process-group; both are plain libc
// calls, and the libc crate is not a dependency.
unsafe extern "C" {
    fn setns(fd: c_int, nstype: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
}
const CLONE_NEWNET: c_int = 0x4000_0000;
const SIGKILL: c_int = 9;

// ---------------------------------------------------------------- nftables

/// `Ok` when nftables rules can be loaded into a network namespace of our
/// own (root, `ip`, `nft`, and a kernel with nf_tables), else why not; see
/// [`skipped_without_netns`]. Checked once per test process.
pub fn nft_usable() -> Result<(), String> {
    static USABLE: OnceLock<Result<(), String>> = OnceLock::new();
    USABLE
        .get_or_init(|| {
            if !is_root() {
                return Err("nftables in a network namespace needs root".to_string());
            }
            find_program("nft").ok_or("`nft` (nftables) not found")?;
            netns_usable()?;
            let ns = Netns::create().map_err(|e| format!("cannot create a namespace: {e}"))?;
            nft_load(ns.name(), "table inet tftplab_probe {}\n")
                .map_err(|e| format!("cannot load nftables rules: {e}"))
        })
        .clone()
}

/// Loads `ruleset` (nft's own syntax, as for `nft -f`) into namespace `ns`.
/// Only ever into a namespace a test created: never the machine's own.
pub fn nft_load(ns: &str, ruleset: &str) -> io::Result<()> {
    let nft = find_program("nft").unwrap_or_else(|| PathBuf::from("nft"));
    let mut cmd = Command::new(nft);
    cmd.args(["-f", "-"]);
    let mut child = in_netns(Some(ns), cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(ruleset.as_bytes())?;
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`nft -f` in {ns}: {}: {}\nruleset:\n{ruleset}",
            out.status,
            lossy(&out.stderr).trim()
        )))
    }
}

/// `nft list ruleset` in namespace `ns`, counters included.
pub fn nft_ruleset(ns: &str) -> io::Result<String> {
    let nft = find_program("nft").unwrap_or_else(|| PathBuf::from("nft"));
    let mut cmd = Command::new(nft);
    cmd.args(["list", "ruleset"]);
    let out = in_netns(Some(ns), cmd).stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(lossy(&out.stdout))
    } else {
        Err(io::Error::other(format!(
            "`nft list ruleset` in {ns}: {}: {}",
            out.status,
            lossy(&out.stderr).trim()
        )))
    }
}

/// The packets a named counter (`counter NAME {}` in a table) has counted,
/// from `nft list ruleset` in namespace `ns`.
pub fn nft_counter(ns: &str, name: &str) -> io::Result<u64> {
    let ruleset = nft_ruleset(ns)?;
    let header = format!("counter {name} {{");
    let mut lines = ruleset.lines().map(str::trim);
    lines
        .find(|line| *line == header)
        .and_then(|_| lines.next())
        .and_then(|line| line.strip_prefix("packets "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no counter {name} in\n{ruleset}")))
}

/// Drops the first DATA numbered `block` that arrives in a namespace, and
/// only that one, with nftables: a sender's resend then gets through. It
/// matches the UDP payload's first four bytes (`00 03` and the block
/// number, at `@th,64,32`), so it works whatever ports the transfer uses,
/// and counts in two named counters every such DATA that arrived (the
/// dropped one included) and the drops.
///
/// The rules sit on the input hook: a datagram dropped on output fails the
/// sender's `sendto` with EPERM, which tftp-hpa takes as fatal, while one
/// dropped on input is lost as on a wire. "Only the first" is a limit of 1
/// per hour with a burst of 1 (`limit rate over` matches once the burst is
/// spent): the first match takes the burst's one token and falls through
/// to the drop, every later one is over the rate and accepted.
pub struct DropFirstData {
    ns: String,
}

impl DropFirstData {
    const TABLE: &'static str = "tftplab_drop_first_data";

    /// Installs the rules in namespace `ns` (one of ours, see [`Netns`]).
    pub fn install(ns: &str, block: u16) -> io::Result<DropFirstData> {
        let table = Self::TABLE;
        let data = format!("meta l4proto udp @th,64,32 0x0003{block:04x}");
        nft_load(
            ns,
            &format!(
                "table inet {table} {{
    counter data_arrived {{}}
    counter data_dropped {{}}
    chain input {{
        type filter hook input priority filter; policy accept;
        {data} counter name data_arrived
        {data} limit rate over 1/hour burst 1 packets accept
        {data} counter name data_dropped drop
    }}
}}
"
            ),
        )?;
        Ok(DropFirstData { ns: ns.to_string() })
    }

    /// How many of the DATA arrived, the dropped one included: 2 when one
    /// was dropped and resent once.
    pub fn arrived(&self) -> u64 {
        self.count("data_arrived")
    }

    /// How many were dropped: 1 once the first has arrived.
    pub fn dropped(&self) -> u64 {
        self.count("data_dropped")
    }

    /// The namespace's ruleset with its counters, for messages.
    pub fn ruleset(&self) -> String {
        nft_ruleset(&self.ns).unwrap_or_else(|e| e.to_string())
    }

    fn count(&self, counter: &str) -> u64 {
        nft_counter(&self.ns, counter).unwrap_or_else(|e| panic!("{e}"))
    }
}

// ---------------------------------------------------------------- servers

/// A real TFTP server serving a directory, killed (and its namespace
/// deleted) on drop.
#[derive(Debug)]
pub struct ServerProcess {
    kind: PeerServer,
    child: Child,
    /// Whether `child` has been waited for: from then on its pid, and so
    /// its process group id, may belong to someone else.
    reaped: bool,
    addr: SocketAddr,
    command_line: String,
    log_path: PathBuf,
    _log_dir: TempDir,
    // Fields drop after `Drop::drop`, so the namespace is deleted only once
    // the server in it is dead.
    netns: Option<Netns>,
}

impl ServerProcess {
    /// Starts `kind` serving `root`, uploads allowed or not, on a free high
    /// port of 127.0.0.1, and waits until it answers a request (at most
    /// 3 s). dnsmasq, whose port is fixed, goes into a namespace of its own
    /// as with [`start_in_netns`](Self::start_in_netns).
    ///
    /// Read-only atftpd runs as `nobody`, so this makes `root` mode 0755;
    /// its files must be world-readable (as [`make_file`] leaves them).
    /// dnsmasq with `allow_write` is `ErrorKind::Unsupported`.
    pub fn start(kind: PeerServer, root: &Path, allow_write: bool) -> io::Result<ServerProcess> {
        Self::start_with(kind, root, allow_write, kind == PeerServer::Dnsmasq)
    }

    /// As [`start`](Self::start), but in a fresh network namespace, on
    /// 127.0.0.1:69 there: for clients that assume the standard port, and
    /// for tests that shape the namespace's traffic (tc, nft).
    pub fn start_in_netns(
        kind: PeerServer,
        root: &Path,
        allow_write: bool,
    ) -> io::Result<ServerProcess> {
        Self::start_with(kind, root, allow_write, true)
    }

    fn start_with(
        kind: PeerServer,
        root: &Path,
        allow_write: bool,
        own_netns: bool,
    ) -> io::Result<ServerProcess> {
        kind.available()
            .map_err(|why| io::Error::new(io::ErrorKind::NotFound, why))?;
        if allow_write && !kind.supports_write() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "dnsmasq's TFTP server is read-only",
            ));
        }
        if own_netns {
            netns_usable().map_err(io::Error::other)?;
        }
        let root = root.canonicalize()?;
        if kind == PeerServer::Atftpd && !allow_write {
            fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
        }
        // A free port found by binding port 0 can be taken by someone else
        // before the server binds it; then the server exits and we retry.
        // A server that runs but never answers won't do better next time.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::try_start(kind, &root, allow_write, own_netns) {
                Err(e) if attempts < 3 && e.kind() != io::ErrorKind::TimedOut => continue,
                result => return result,
            }
        }
    }

    fn try_start(
        kind: PeerServer,
        root: &Path,
        allow_write: bool,
        own_netns: bool,
    ) -> io::Result<ServerProcess> {
        let (netns, addr) = if own_netns {
            (Some(Netns::create()?), SocketAddr::from((LOCALHOST, 69)))
        } else {
            (None, SocketAddr::from((LOCALHOST, free_udp_port()?)))
        };
        let cmd = server_command(kind, root, allow_write, addr.port());
        let mut cmd = in_netns(netns.as_ref().map(Netns::name), cmd);
        let command_line = describe(&cmd);
        let log_dir = tempfile::Builder::new()
            .prefix("tftplab-server-log-")
            .tempdir()?;
        let log_path = log_dir.path().join(format!("{}.log", kind.name()));
        let log = File::create(&log_path)?;
        // Its own process group, so Drop also kills in.tftpd's per-transfer
        // children, which would otherwise outlive it.
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn()?;
        let mut server = ServerProcess {
            kind,
            child,
            reaped: false,
            addr,
            command_line,
            log_path,
            _log_dir: log_dir,
            netns,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Sends an RRQ for a file that does not exist until any answer comes
    /// back (an ERROR 1, normally), failing early if the server exits.
    fn wait_ready(&mut self) -> io::Result<()> {
        let socket = udp_socket_in(self.netns())?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let rrq = encode_request(OP_RRQ, PROBE_FILE, "octet", &[]);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut buf = [0u8; 1024];
        let mut answered = false;
        loop {
            // Checked after an answer too: if another test's server took
            // the port first, ours exited on bind and the answer was theirs.
            if let Some(status) = self.child.try_wait()? {
                self.reaped = true;
                return Err(io::Error::other(format!(
                    "{} exited ({}) before answering\ncommand: {}\nlog:\n{}",
                    self.kind.name(),
                    describe_status(status),
                    self.command_line,
                    self.log()
                )));
            }
            if answered {
                return Ok(());
            }
            // Send errors (nothing listening yet) and timeouts just mean
            // "not yet".
            let _ = socket.send_to(&rrq, self.addr);
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                abort_unless_error(&socket, &buf[..n], from);
                answered = true;
                continue;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not answer on {} within {READY_TIMEOUT:?}\ncommand: {}\nlog:\n{}",
                        self.kind.name(),
                        self.addr,
                        self.command_line,
                        self.log()
                    ),
                ));
            }
        }
    }

    pub fn kind(&self) -> PeerServer {
        self.kind
    }

    /// Where the server listens; 127.0.0.1:69 inside [`netns`](Self::netns)
    /// when it has one.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The namespace the server runs in (always for dnsmasq); clients must
    /// run there too.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_ref().map(Netns::name)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line it was started with, for messages.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Its stdout and stderr so far: atftpd and dnsmasq log every transfer;
    /// in.tftpd logs only to syslog, so its log stays empty.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| lossy(&b))
            .unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SIGKILL: none of these servers has state worth a graceful stop.
        // in.tftpd forks a child per transfer, in its process group. Those
        // are killed first and left to in.tftpd to reap: killed together
        // with it they would be orphans, and an init that does not reap
        // (as in some containers) keeps them as zombies for good.
        let leader = self.child.id();
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            let members = group_members(leader);
            if members.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in members {
                signal(pid as c_int, SIGKILL);
            }
            thread::sleep(Duration::from_millis(5));
        }
        if self.reaped {
            return;
        }
        // Then the whole group, for anything forked meanwhile. The group id
        // is still ours: the leader, even if it has exited, is not reaped.
        if !signal(-(leader as c_int), SIGKILL) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid` (a process group if negative); true if sent.
fn signal(pid: c_int, sig: c_int) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { kill(pid, sig) == 0 }
}

/// Processes in process group `pgid` other than its leader, zombies
/// included (they stay members until reaped).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != pgid)
        .filter(|pid| {
            // /proc/PID/stat: `pid (comm) state ppid pgrp ...`; comm may
            // contain spaces and parentheses, so split after the last `)`.
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
                fields.split_whitespace().nth(2) == Some(&pgid.to_string())
            })
        })
        .collect()
}

/// The command that runs `kind` in the foreground on 127.0.0.1:`port`
/// (port 69 for dnsmasq, which cannot change it), serving `root`.
pub fn server_command(kind: PeerServer, root: &Path, allow_write: bool, port: u16) -> Command {
    match kind {
        PeerServer::TftpdHpa => {
            let mut cmd =
                Command::new(find_program("in.tftpd").unwrap_or_else(|| "in.tftpd".into()));
            cmd.args(["--foreground", "--address"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["--secure", "--user", "root"]);
            if allow_write {
                cmd.args(["--create", "--permissive", "--umask", "022"]);
            }
            cmd.arg(root);
            cmd
        }
        PeerServer::Atftpd => {
            let mut cmd = Command::new(atftpd_path().unwrap_or_else(|| "atftpd".into()));
            let user: &[&str] = if allow_write {
                &["--user", "root", "--group", "root"]
            } else {
                &["--user", "nobody", "--group", "nogroup"]
            };
            cmd.args(["--daemon", "--no-fork", "--port"])
                .arg(port.to_string())
                .args([
                    "--bind-address",
                    "127.0.0.1",
                    "--logfile",
                    "-",
                    "--verbose=7",
                ])
                .args(user)
                .arg(root);
            cmd
        }
        PeerServer::Dnsmasq => {
            let mut cmd = Command::new(find_program("dnsmasq").unwrap_or_else(|| "dnsmasq".into()));
            let mut tftp_root = OsString::from("--tftp-root=");
            tftp_root.push(root);
            cmd.args(["--no-daemon", "--conf-file=/dev/null", "--port=0"])
                .arg("--enable-tftp")
                .arg(tftp_root)
                .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
                .args([
                    "--user=root",
                    "--group=root",
                    "--pid-file",
                    "--log-facility=-",
                ]);
            cmd
        }
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_udp_port() -> io::Result<u16> {
    Ok(UdpSocket::bind((LOCALHOST, 0))?.local_addr()?.port())
}

// ---------------------------------------------------------------- clients

/// The outcome of running a client (or any command) to completion.
#[derive(Debug, Clone)]
pub struct PeerResult {
    /// The client, or `None` for a command run by [`run_in_netns`].
    pub peer: Option<Peer>,
    /// The command line, for messages.
    pub command: String,
    /// The exit code; `None` when it was killed by a signal or not started.
    pub code: Option<i32>,
    /// It ran past its timeout and was killed.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl PeerResult {
    /// The transfer succeeded: exit 0 in time, and for tftp-hpa (which
    /// exits 0 after a server ERROR) no `Error code` line on stdout.
    pub fn ok(&self) -> bool {
        let hpa_error = self.peer == Some(Peer::TftpHpa) && self.stdout.contains("Error code");
        self.code == Some(0) && !self.timed_out && !hpa_error
    }

    /// Panics with everything the client said unless [`ok`](Self::ok).
    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(self.ok(), "transfer failed:\n{self}");
    }

    /// The TFTP error code the client reports having received: tftp-hpa
    /// prints `Error code N:` (stdout), busybox `server error: (N)` (stderr),
    /// curl encodes it in its exit code (71 is both 0 and 4, 42 is 8 and any
    /// unknown code; 4 and 8 are returned).
    /// atftp prints only the message, so this is `None` for it.
    pub fn error_code(&self) -> Option<u16> {
        let number_after = |text: &str, prefix: &str| -> Option<u16> {
            let rest = &text[text.find(prefix)? + prefix.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        match self.peer? {
            Peer::TftpHpa => number_after(&self.stdout, "Error code "),
            Peer::Busybox => number_after(&self.stderr, "server error: ("),
            Peer::Curl => match self.code? {
                68 => Some(1),
                69 => Some(2),
                70 => Some(3),
                71 => Some(4),
                72 => Some(5),
                73 => Some(6),
                74 => Some(7),
                42 => Some(8),
                _ => None,
            },
            Peer::Atftp => None,
        }
    }
}

impl fmt::Display for PeerResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        let code = self.code.map_or("none".to_string(), |c| c.to_string());
        writeln!(
            f,
            "exit code: {code}, timed out: {}, after {:?}",
            self.timed_out, self.elapsed
        )?;
        writeln!(f, "stdout: {}", self.stdout.trim_end())?;
        write!(f, "stderr: {}", self.stderr.trim_end())
    }
}

/// Which way a client moves the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Get,
    Put,
}

/// Downloads `remote` from `server` into `local` with the real client,
/// inside `netns` if given (dnsmasq). Options not given are not asked for
/// (curl and busybox still send their defaults, see the module docs).
///
/// Panics if `peer` cannot send an option that is given; check
/// [`Peer::supports_blksize`] and [`Peer::supports_windowsize`].
pub fn client_get(
    peer: Peer,
    server: SocketAddr,
    netns: Option<&str>,
    remote: &str,
    local: &Path,
    blksize: Option<u16>,
    windowsize: Option<u16>,
) -> PeerResult {
    let cmd = client_command(
        peer,
        Direction::Get,
        server,
        remote,
        local,
        blksize,
        windowsize,
    );
    run_with_timeout(Some(peer), in_netns(netns, cmd), CLIENT_TIMEOUT)
}

/// Uploads `local` to `server` as `remote`; otherwise as [`client_get`].
pub fn client_put(
    peer: Peer,
    server: SocketAddr,
    netns: Option<&str>,
    local: &Path,
    remote: &str,
    blksize: Option<u16>,
    windowsize: Option<u16>,
) -> PeerResult {
    let cmd = client_command(
        peer,
        Direction::Put,
        server,
        remote,
        local,
        blksize,
        windowsize,
    );
    run_with_timeout(Some(peer), in_netns(netns, cmd), CLIENT_TIMEOUT)
}

/// The client command line, octet mode:
/// - tftp-hpa: `tftp -m octet HOST PORT -c get REMOTE LOCAL` (`put LOCAL
///   REMOTE`). A remote name with a `:` would be read as `host:file`.
/// - curl: `curl -sS --globoff --path-as-is [--tftp-blksize N] -o LOCAL
///   tftp://HOST:PORT/REMOTE` (`-T LOCAL` to upload). `--path-as-is` keeps
///   `../` in the name instead of resolving it; the name is percent-encoded
///   and curl decodes it.
/// - atftp: `atftp [--option "blksize N"] [--option "windowsize N"] -g -r
///   REMOTE -l LOCAL HOST PORT` (`-p` to upload).
/// - busybox: `busybox tftp -g -r REMOTE -l LOCAL [-b N] HOST PORT` (`-p`).
pub fn client_command(
    peer: Peer,
    direction: Direction,
    server: SocketAddr,
    remote: &str,
    local: &Path,
    blksize: Option<u16>,
    windowsize: Option<u16>,
) -> Command {
    assert!(
        blksize.is_none() || peer.supports_blksize(),
        "{} cannot send blksize",
        peer.name()
    );
    assert!(
        windowsize.is_none() || peer.supports_windowsize(),
        "{} cannot send windowsize",
        peer.name()
    );
    let program = find_program(peer.program()).unwrap_or_else(|| peer.program().into());
    let mut cmd = Command::new(program);
    let host = server.ip().to_string();
    let port = server.port().to_string();
    let get = direction == Direction::Get;
    match peer {
        Peer::TftpHpa => {
            cmd.args(["-m", "octet", &host, &port, "-c"]);
            if get {
                cmd.args(["get", remote]).arg(local);
            } else {
                cmd.arg("put").arg(local).arg(remote);
            }
        }
        Peer::Curl => {
            cmd.args(["-sS", "--globoff", "--path-as-is"]);
            if let Some(n) = blksize {
                cmd.args(["--tftp-blksize", &n.to_string()]);
            }
            cmd.arg(if get { "-o" } else { "-T" }).arg(local);
            cmd.arg(format!("tftp://{server}/{}", percent_encode(remote)));
        }
        Peer::Atftp => {
            if let Some(n) = blksize {
                cmd.args(["--option", &format!("blksize {n}")]);
            }
            if let Some(n) = windowsize {
                cmd.args(["--option", &format!("windowsize {n}")]);
            }
            cmd.args([if get { "-g" } else { "-p" }, "-r", remote, "-l"])
                .arg(local);
            cmd.args([&host, &port]);
        }
        Peer::Busybox => {
            cmd.args(["tftp", if get { "-g" } else { "-p" }, "-r", remote, "-l"])
                .arg(local);
            if let Some(n) = blksize {
                cmd.args(["-b", &n.to_string()]);
            }
            cmd.args([&host, &port]);
        }
    }
    cmd
}

/// Percent-encodes all but unreserved characters and `/`, so curl sends the
/// name byte for byte (it decodes the URL path into the TFTP file name).
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs `cmd` to completion with its output captured, killing it after
/// `timeout`. Never panics: a command that cannot start gives `code: None`
/// and the reason in `stderr`.
pub fn run_with_timeout(peer: Option<Peer>, mut cmd: Command, timeout: Duration) -> PeerResult {
    let command = describe(&cmd);
    let start = Instant::now();
    let mut result = PeerResult {
        peer,
        command,
        code: None,
        timed_out: false,
        stdout: String::new(),
        stderr: String::new(),
        elapsed: Duration::ZERO,
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            result.stderr = format!("cannot start: {e}");
            return result;
        }
    };
    // Drain both pipes while waiting, or a chatty client would block on a
    // full pipe and look hung.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                result.timed_out = true;
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    result.elapsed = start.elapsed();
    result.code = status.and_then(|s| s.code());
    result.stdout = stdout.join().unwrap_or_default();
    result.stderr = stderr.join().unwrap_or_default();
    result
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        lossy(&bytes)
    })
}

/// A command as a shell-like line, for messages.
fn describe(cmd: &Command) -> String {
    let quote = |s: &OsStr| {
        let s = s.to_string_lossy();
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
        {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

// ---------------------------------------------------------------- raw packets

/// An RRQ or WRQ as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub opcode: u16,
    pub filename: String,
    pub mode: String,
    /// Option names and values in the order sent, names as sent.
    pub options: Vec<(String, String)>,
}

impl Request {
    /// The value of option `name` (case-insensitive), if sent.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The option names sent, lowercased, in order.
    pub fn option_names(&self) -> Vec<String> {
        self.options
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect()
    }
}

/// Parses an RRQ or WRQ; `None` for anything else or a malformed one.
pub fn parse_request(datagram: &[u8]) -> Option<Request> {
    let opcode = u16::from_be_bytes([*datagram.first()?, *datagram.get(1)?]);
    if opcode != OP_RRQ && opcode != OP_WRQ {
        return None;
    }
    let body = datagram[2..].strip_suffix(&[0])?;
    let mut fields = body.split(|&b| b == 0).map(lossy);
    let filename = fields.next()?;
    let mode = fields.next()?;
    let rest: Vec<String> = fields.collect();
    let options = rest
        .chunks(2)
        .map(|kv| (kv[0].clone(), kv.get(1).cloned().unwrap_or_default()))
        .collect();
    Some(Request {
        opcode,
        filename,
        mode,
        options,
    })
}

/// An RRQ (`OP_RRQ`) or WRQ (`OP_WRQ`) datagram.
pub fn encode_request(
    opcode: u16,
    filename: &str,
    mode: &str,
    options: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = opcode.to_be_bytes().to_vec();
    for field in [filename, mode]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        out.extend_from_slice(field.as_bytes());
        out.push(0);
    }
    out
}

/// An ERROR datagram.
pub fn encode_error(code: u16, message: &str) -> Vec<u8> {
    let mut out = OP_ERROR.to_be_bytes().to_vec();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out.push(0);
    out
}

/// A server's first answer to one request, decoded for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Error {
        code: u16,
        message: String,
    },
    Oack(Vec<(String, String)>),
    Data {
        block: u16,
        len: usize,
    },
    Ack {
        block: u16,
    },
    Other(Vec<u8>),
    /// Nothing came back in time.
    Silence,
}

/// Sends one request datagram to `server` (from inside `netns` if given)
/// and returns the first answer. A transfer the answer started is aborted
/// with ERROR 0, so the server does not keep retransmitting.
pub fn raw_request(
    server: SocketAddr,
    netns: Option<&str>,
    packet: &[u8],
    wait: Duration,
) -> io::Result<Reply> {
    let socket = udp_socket_in(netns)?;
    socket.set_read_timeout(Some(wait))?;
    socket.send_to(packet, server)?;
    let mut buf = vec![0u8; 65536];
    let (n, from) = match socket.recv_from(&mut buf) {
        Ok(got) => got,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(Reply::Silence)
        }
        Err(e) => return Err(e),
    };
    let d = &buf[..n];
    abort_unless_error(&socket, d, from);
    let word = |i: usize| d.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    Ok(match word(0) {
        Some(OP_ERROR) if n >= 4 => Reply::Error {
            code: word(2).unwrap_or_default(),
            message: lossy(d[4..].strip_suffix(&[0]).unwrap_or(&d[4..])),
        },
        Some(OP_OACK) => {
            let fields: Vec<String> = d[2..]
                .strip_suffix(&[0])
                .unwrap_or(&d[2..])
                .split(|&b| b == 0)
                .map(lossy)
                .collect();
            Reply::Oack(
                fields
                    .chunks(2)
                    .map(|kv| (kv[0].clone(), kv.get(1).cloned().unwrap_or_default()))
                    .collect(),
            )
        }
        Some(OP_DATA) if n >= 4 => Reply::Data {
            block: word(2).unwrap_or_default(),
            len: n - 4,
        },
        Some(OP_ACK) if n >= 4 => Reply::Ack {
            block: word(2).unwrap_or_default(),
        },
        _ => Reply::Other(d.to_vec()),
    })
}

fn abort_unless_error(socket: &UdpSocket, datagram: &[u8], from: SocketAddr) {
    if datagram.get(..2) != Some(&OP_ERROR.to_be_bytes()[..]) {
        let _ = socket.send_to(&encode_error(0, "tftplab probe done"), from);
    }
}

/// A fake server on 127.0.0.1 that answers every RRQ and WRQ with one
/// fixed ERROR (from a fresh port, as a real server's new TID would) and
/// records the requests: how each client reacts to each error code, and
/// which options it sends. Stopped on drop.
pub struct ErrorServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ErrorServer {
    pub fn start(code: u16, message: &str) -> io::Result<ErrorServer> {
        let socket = UdpSocket::bind((LOCALHOST, 0))?;
        // Short, so Drop's stop flag is seen promptly.
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let addr = socket.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let error = encode_error(code, message);
        let thread = {
            let (requests, stop) = (Arc::clone(&requests), Arc::clone(&stop));
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some(request) = parse_request(&buf[..n]) else {
                        continue;
                    };
                    requests.lock().expect("requests lock").push(request);
                    if let Ok(reply) = UdpSocket::bind((LOCALHOST, 0)) {
                        let _ = reply.send_to(&error, from);
                    }
                }
            })
        };
        Ok(ErrorServer {
            addr,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for ErrorServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------- files

/// A fresh temporary directory, removed on drop.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("tftplab-peers-")
        .tempdir()
        .expect("create a temp dir")
}

/// Writes `size` deterministic pseudo-random bytes (seeded by `seed`) to
/// `path` and returns their SHA-256 in hex. The mode is the umask's (0644
/// normally), world-readable as tftpd-hpa and read-only atftpd require.
pub fn make_file(path: &Path, size: u64, seed: u64) -> String {
    let write = || -> io::Result<String> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut hasher = Sha256::new();
        let mut state = seed;
        let mut left = size;
        while left > 0 {
            // splitmix64: fast, and the same bytes forever for a seed.
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let bytes = z.to_le_bytes();
            let take = left.min(8) as usize;
            out.write_all(&bytes[..take])?;
            hasher.update(&bytes[..take]);
            left -= take as u64;
        }
        out.flush()?;
        Ok(format!("{:x}", hasher.finalize()))
    };
    write().unwrap_or_else(|e| panic!("make_file {}: {e}", path.display()))
}

/// SHA-256 of a file's contents in hex.
pub fn sha256_file(path: &Path) -> String {
    let mut file =
        File::open(path).unwrap_or_else(|e| panic!("sha256_file {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)
        .unwrap_or_else(|e| panic!("sha256_file {}: {e}", path.display()));
    format!("{:x}", hasher.finalize())
}

/// SHA-256 of an uploaded file once it matches `expected`, or whatever it
/// is after 2 s. The client's exit does not prove the server has closed
/// the file yet (a server may send the last ACK before it flushes).
pub fn settled_sha256(path: &Path, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let sha = if path.exists() {
            sha256_file(path)
        } else {
            "(missing)".to_string()
        };
        if sha == expected || Instant::now() >= deadline {
            return sha;
        }
        thread::sleep(Duration::from_millis(10));
    }
}
