//! Command-line arguments. The doc comments here are the `--help` text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use tftplab::proto::DEFAULT_MIN_RTO;

/// A TFTP server and client for netbooting lab boards (RFC 1350, 2347, 2348,
/// 2349, 7440).
///
/// Examples:
///   tftplab serve --root /srv/tftp --bind 0.0.0.0:69
///   tftplab get 192.168.1.10 9ffefdef/start4.elf --blksize 1468
///   tftplab put --windowsize 16 192.168.1.10:6969 ./kernel.img boot/kernel.img
///   tftplab store --root /srv/tftp ls
/// The exit statuses, as `main.rs`'s `Exit` gives them.
const EXIT_STATUS: &str = "\
Exit status:
  0    done
  1    any other failure
  2    bad command line
  3    the server refused or aborted (a TFTP ERROR: not found, access violation, ...);
       `store`: the name is not there, exists, or is not allowed
  4    no answer: nothing listening (port unreachable), timed out, unknown host
  5    a local problem: a file or directory here, the served root, a socket
  130  interrupted (Ctrl-C or SIGTERM); a download leaves no file behind";

#[derive(Debug, Parser)]
#[command(name = "tftplab", version, about, verbatim_doc_comment, after_help = EXIT_STATUS)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a directory over TFTP until SIGINT or SIGTERM.
    ///
    /// Every request is confined to --root: nested paths work
    /// (`9ffefdef/start4.elf`), `..` that would leave the root, NUL bytes and
    /// symlinks pointing outside get ERROR 2. Uploads are off unless --write
    /// says otherwise, and land atomically: a failed upload leaves the old
    /// file as it was and no partial file behind. One log line per finished
    /// transfer (bytes, time, throughput, the options it ran at,
    /// retransmissions and timeouts) and one per refused request with the
    /// rule that refused it go to stderr; RUST_LOG=debug adds each transfer's
    /// start and negotiated options.
    #[command(args_override_self = true)]
    Serve(ServeArgs),
    /// Download a file: tftplab get HOST[:PORT] REMOTE [LOCAL].
    Get(GetArgs),
    /// Upload a file: tftplab put HOST[:PORT] LOCAL [REMOTE].
    Put(PutArgs),
    /// Manage the files a server serves (no server needed).
    Store(StoreArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read these settings from a TOML file: each key is a flag's name with
    /// _ for - (`max_blksize = 1468`); a flag given here overrides the
    /// file. Unknown keys and bad values are refused with the file's line.
    /// examples/tftplab.toml shows them all.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory to serve.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Address and port to listen on; a bare PORT means every IPv4 address
    /// (0.0.0.0:PORT); use [::]:69 for IPv6 (and IPv4 where the OS maps it).
    /// Repeat to listen on several (one per interface, or IPv4 and IPv6):
    /// a transfer answers from the address its request came to.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:69", value_parser = parse_bind,
          action = clap::ArgAction::Append)]
    pub bind: Vec<std::net::SocketAddr>,
    /// What write requests may do: off (refuse, ERROR 2), create (new files
    /// only, ERROR 6 for existing ones), overwrite.
    #[arg(long, value_name = "POLICY", default_value = "off")]
    pub write: WriteArg,
    /// Largest upload accepted in bytes (ERROR 3 beyond).
    #[arg(long, value_name = "BYTES")]
    pub max_upload: Option<u64>,
    /// Let uploads create missing directories under the root.
    #[arg(long)]
    pub create_dirs: bool,
    /// Treat `\` in requested names as `/` (Windows-style clients).
    #[arg(long)]
    pub backslash: bool,
    /// Largest block size granted (8..=65464).
    #[arg(long, value_name = "N", default_value_t = 65464,
          value_parser = clap::value_parser!(u16).range(8..=65464))]
    pub max_blksize: u16,
    /// Largest window granted (1..=65535).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_windowsize: u16,
    /// Largest `timeout` option granted, in seconds (1..=255). A client
    /// asking for more gets no timeout in the OACK and the server keeps its
    /// own timer (lowering it would make U-Boot refuse the OACK).
    #[arg(long, value_name = "S", default_value_t = tftplab::options::DEFAULT_MAX_TIMEOUT,
          value_parser = clap::value_parser!(u8).range(1..))]
    pub max_timeout: u8,
    /// Never grant this option (blksize, timeout, tsize, windowsize):
    /// it is left out of the OACK and the client runs with RFC 1350's
    /// value, as tftpd-hpa's -r. Repeat for several.
    #[arg(long, value_name = "OPTION", value_parser = parse_option)]
    pub refuse: Vec<tftplab::options::Opt>,
    /// The path MTU to the boards: blksize is capped so that a DATA
    /// datagram fits it (MTU - 32 over IPv4, - 52 over IPv6), as dnsmasq's
    /// tftp-mtu.
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u16).range(68..))]
    pub mtu: Option<u16>,
    /// Longest a transfer may run, in seconds, however it progresses; then
    /// it is aborted with ERROR 0. Bounds how long a slow client can hold
    /// one of the --max-transfers slots.
    #[arg(long, value_name = "S", default_value_t = 3600.0, value_parser = parse_seconds)]
    pub max_transfer_time: f64,
    /// Retransmission timeout in seconds when the client negotiates none.
    #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = parse_seconds)]
    pub timeout: f64,
    /// Shortest retransmission timeout in seconds: below the timeout the
    /// timer follows the measured round trip, never below this. Below 0.02
    /// (down to 0.002 for a storm of fast boards on a lossy LAN) a transfer
    /// whose client ACKs a resent block twice (it was slow, not lost)
    /// raises its own floor past that stall, up to 0.02, and its first
    /// block waits 0.02 whatever the floor. Set it to the timeout for a
    /// fixed timer when sending (a receiving transfer's resends still back
    /// off past the timeout, up to 8 s).
    #[arg(long, value_name = "S", default_value_t = DEFAULT_MIN_RTO.as_secs_f64(), value_parser = parse_seconds)]
    pub min_rto: f64,
    /// Retransmissions of one packet at the full timeout before a transfer
    /// is abandoned.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,
    /// Concurrent transfers; more requests get ERROR 0 "server busy".
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_transfers: u64,
    /// Serve every transfer from the listening port itself, told apart by
    /// the client's address and port (as dnsmasq's tftp-single-port): one
    /// firewall rule or NAT mapping is enough. --port-range is then unused.
    #[arg(long, conflicts_with = "port_range")]
    pub single_port: bool,
    /// Ports for transfer sockets, e.g. 50000-50100 (default: OS-chosen).
    #[arg(long, value_name = "LOW-HIGH", value_parser = parse_range)]
    pub port_range: Option<(u16, u16)>,
    /// Seconds live transfers get to finish after SIGINT/SIGTERM.
    #[arg(long, value_name = "S", default_value_t = 5.0, value_parser = parse_seconds)]
    pub grace: f64,
    /// Machine-readable events on stdout, one JSON object per line: `ready`
    /// (with the bound address, also for port 0) once listening, then
    /// `transfer` for every finished transfer (file, peer, outcome, bytes,
    /// negotiated options), `refused` for every refused request, and
    /// `stopped` at exit. `none` prints nothing on stdout.
    #[arg(long, value_name = "FORMAT", default_value = "none")]
    pub events: EventsArg,
    /// The log on stderr: `text`, one line per event for people, or
    /// `json`, one object per line with stable fields (`timestamp`,
    /// `level`, `message`, then the event's own: `peer`, `file`, `bytes`,
    /// `blksize`, `why`, ...), start-up lines included.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics: transfers started
    /// and finished by outcome, bytes, retransmissions, timeouts, refusals
    /// by ERROR code, transfers running.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_bind)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Run as this user once the sockets are bound (start as root to
    /// listen on port 69, serve as `tftp`); its group unless --group.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Run with this group once the sockets are bound.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Rewrite requested names with tftpd-hpa's rule language (its
    /// --map-file): `FLAGS REGEX [PATTERN]` per line, applied before the
    /// name is resolved in the root. See `tftplab serve --help` and the
    /// README.
    #[arg(long, value_name = "FILE")]
    pub remap: Option<PathBuf>,
    /// Serve each board from its own directory under the root when it
    /// exists: ROOT/<client IP>/ (ip) or ROOT/<client MAC>/ (mac, as
    /// dc-a6-32-01-02-03, from the neighbour table), confined there.
    #[arg(long, value_name = "KEY")]
    pub per_client_root: Option<crate::resolve::ClientKey>,
    /// A board without its own directory: served from the root (root), or
    /// refused with ERROR 1 (refuse).
    #[arg(
        long,
        value_name = "WHAT",
        default_value = "root",
        requires = "per_client_root"
    )]
    pub per_client_fallback: crate::resolve::Fallback,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum EventsArg {
    None,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WriteArg {
    Off,
    Create,
    Overwrite,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ModeArg {
    Octet,
    Netascii,
}

/// Options both transfer directions share.
///
/// By default a transfer asks for what makes it fast and works with every
/// server: blksize 1468 (1448 over IPv6: one Ethernet frame), windowsize
/// 16 and tsize. A server that does not know an option leaves it out of
/// its answer or ignores them all, and the transfer runs at what it
/// granted (RFC 2347); one that refuses options with ERROR 8 is asked
/// again without any.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Ask for this block size (8..=65464; RFC 2348) [default: 1468, or
    /// 1448 over IPv6]. 512 is RFC 1350's own and is not asked for.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(8..=65464))]
    pub blksize: Option<u16>,
    /// Ask for this window size (1..=65535; RFC 7440) [default: 16]. 1 is
    /// lock-step, RFC 1350's own, and is not asked for.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub windowsize: Option<u16>,
    /// Ask for this retransmission timeout in seconds (1..=255; RFC 2349);
    /// also this side's own timeout.
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u8).range(1..))]
    pub timeout: Option<u8>,
    /// Ask for (get) or announce (put) the file size (RFC 2349); the
    /// default, kept for scripts that say it.
    #[arg(long, overrides_with = "no_tsize")]
    pub tsize: bool,
    /// Do not ask for or announce the file size.
    #[arg(long)]
    pub no_tsize: bool,
    /// Ask for no options at all: a plain RFC 1350 request (blksize 512,
    /// lock-step), for servers that mishandle options.
    #[arg(long, conflicts_with_all = ["blksize", "windowsize", "timeout", "tsize"])]
    pub plain: bool,
    /// Transfer mode.
    #[arg(long, value_name = "MODE", default_value = "octet")]
    pub mode: ModeArg,
    /// Shortest retransmission timeout in seconds (the timer adapts to the
    /// round trip above it, up to the timeout).
    #[arg(long, value_name = "S", default_value_t = DEFAULT_MIN_RTO.as_secs_f64(), value_parser = parse_seconds)]
    pub min_rto: f64,
    /// Retransmissions of one packet at the full timeout before giving up.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,
    /// No progress bar, even on a terminal.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Server, as HOST or HOST:PORT (port 69 by default; [v6addr]:PORT).
    #[arg(value_name = "HOST[:PORT]")]
    pub server: String,
    /// Name of the file on the server.
    pub remote: String,
    /// Where to write it (default: the remote name's last component in the
    /// current directory; `-` for stdout).
    pub local: Option<PathBuf>,
    /// fsync the file before it replaces the old one, so it survives a
    /// power cut (other TFTP clients do not; the file appears whole either
    /// way).
    #[arg(long)]
    pub sync: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// Server, as HOST or HOST:PORT (port 69 by default; [v6addr]:PORT).
    #[arg(value_name = "HOST[:PORT]")]
    pub server: String,
    /// The local file to send.
    pub local: PathBuf,
    /// Name on the server (default: the local file's name).
    pub remote: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The server's root directory (before or after the action:
    /// `store --root DIR ls` and `store ls --root DIR` both work).
    #[arg(long, value_name = "DIR", global = true)]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub action: StoreAction,
}

#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// List every file under the root with its size.
    Ls,
    /// Copy a local file in (skipped when the SHA-256 already matches).
    Put {
        /// The local file to copy in.
        local: PathBuf,
        /// Name in the store (default: the local file's name); nested names
        /// like `9ffefdef/start4.elf` create their directories.
        name: Option<String>,
    },
    /// Delete a file.
    Rm {
        /// Name in the store, as `ls` prints it.
        name: String,
    },
    /// Print a file's SHA-256.
    Sum {
        /// Name in the store, as `ls` prints it.
        name: String,
    },
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && (0.001..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is outside 0.001..=3600 seconds"))
    }
}

/// ADDR:PORT, [V6]:PORT, or a bare PORT (every IPv4 address).
fn parse_option(s: &str) -> Result<tftplab::options::Opt, String> {
    tftplab::options::Opt::from_name(s.as_bytes()).ok_or_else(|| {
        format!("`{s}` is not an option tftplab negotiates: blksize, timeout, tsize or windowsize")
    })
}

fn parse_bind(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([0, 0, 0, 0], port)));
    }
    s.parse().map_err(|_| {
        format!(
            "`{s}` is not an address to listen on: use ADDR:PORT (0.0.0.0:69, [::]:69) or a port"
        )
    })
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{s}` is not a port range like 50000-50100");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ranges_and_seconds() {
        assert_eq!(parse_range("50000-50100"), Ok((50000, 50100)));
        assert!(parse_range("5-1").is_err());
        assert!(parse_range("0-1").is_err());
        assert!(parse_range("x").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(0.5));
        assert!(parse_seconds("nan").is_err());
        assert!(parse_seconds("-1").is_err());
    }

    #[test]
    fn bind_takes_an_address_or_a_bare_port() {
        assert_eq!(parse_bind("6969"), Ok("0.0.0.0:6969".parse().unwrap()));
        assert_eq!(
            parse_bind("127.0.0.1:69"),
            Ok("127.0.0.1:69".parse().unwrap())
        );
        assert_eq!(parse_bind("[::1]:6969"), Ok("[::1]:6969".parse().unwrap()));
        for bad in ["", "70000", "localhost:69", "::1"] {
            let err = parse_bind(bad).unwrap_err();
            assert!(err.contains("use ADDR:PORT"), "{err}");
        }
    }

    #[test]
    fn store_root_goes_before_or_after_the_action() {
        for args in [
            &["tftplab", "store", "--root", "/srv", "ls"][..],
            &["tftplab", "store", "ls", "--root", "/srv"][..],
        ] {
            let Command::Store(s) = Cli::try_parse_from(args).unwrap().command else {
                panic!("not a store command");
            };
            assert_eq!(s.root, Some(PathBuf::from("/srv")));
            assert!(matches!(s.action, StoreAction::Ls));
        }
    }
}
