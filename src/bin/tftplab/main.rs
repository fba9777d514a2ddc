//! `tftplab`: serve a directory over TFTP, fetch and send files, manage the
//! served files. `tftplab --help` is the manual.

/// `eprintln!`, but the line goes out in one `write`: Rust's stderr is
/// unbuffered and `eprintln!` writes it piece by piece, so a server's log
/// sharing the stream (a script, a test) could land in the middle of it.
/// A stderr that cannot be written is ignored rather than a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }};
}

mod args;
mod config;
mod events;
mod prometheus;
mod remap;
mod resolve;
mod system;

use args::{
    Cli, Command, EventsArg, GetArgs, LogFormat, ModeArg, PutArgs, ServeArgs, StoreAction,
    StoreArgs, TransferArgs, WriteArg,
};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tftplab::data::SharedSink;
use tftplab::options::{Limits, OptionRequest};
use tftplab::proto::{ClientConfig, ServerConfig, Summary, TransferError};
use tftplab::runtime::{
    serve_on, Client, ClientError, HostSocket, Network, Progress, ServerOptions, TokioNet,
};
use tftplab::store::{Store, StoreConfig, WritePolicy};
use tftplab::wire::Mode;

/// How `tftplab` exits: documented in `tftplab --help` (see `args.rs`), so
/// a script can tell a missing file from a dead server from a full disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Anything not below.
    Other = 1,
    /// A bad command line: clap's own code for its errors, and ours.
    Usage = 2,
    /// The server answered with a TFTP ERROR: not found, access violation,
    /// file exists, disk full, or it aborted the transfer midway.
    Refused = 3,
    /// No answer: nothing listening, timed out, unreachable, unknown host.
    NoAnswer = 4,
    /// A local file, directory or socket problem.
    Local = 5,
    /// Ctrl-C (SIGINT) or SIGTERM ended a transfer; nothing was written.
    Interrupted = 130,
}

/// A failure to report: one line, and what to do about it where that
/// helps, with the exit status it means.
#[derive(Debug)]
struct Failure {
    exit: Exit,
    message: String,
}

impl Failure {
    fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }
    fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Usage, message)
    }
    fn local(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Local, message)
    }
    fn other(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Other, message)
    }
}

fn main() -> ExitCode {
    let argv = match config::expand(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(message) => return fail(Failure::usage(message)),
    };
    let cli = Cli::parse_from(argv);
    // Taken (and the environment cleared) before any thread starts.
    let inherited = if matches!(cli.command, Command::Serve(_)) {
        match system::listen_fds() {
            Ok(fds) => fds,
            Err(message) => return fail(Failure::local(message)),
        }
    } else {
        None
    };
    let level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json_log(&cli) {
        logs.json().flatten_event(true).init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    // A client transfer is one lock-step conversation: on a multi-thread
    // runtime every datagram hops between threads, which made `get` 3-4x
    // slower than peers in lock-step. The server wants the threads.
    let mut builder = match cli.command {
        Command::Serve(_) => {
            // Blocking threads only resolve and open files, at most
            // OPEN_WORKERS at once; left to itself tokio grows up to 512 of
            // them, each with its own stack and malloc arena, and keeps them
            // 10 s: after a flood of requests that is most of the RSS.
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.max_blocking_threads(tftplab::runtime::OPEN_WORKERS)
                .thread_keep_alive(Duration::from_secs(1));
            b
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return fail(Failure::other(format!(
                "cannot start the async runtime: {e}"
            )))
        }
    };
    match runtime.block_on(run(cli, inherited)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

/// `serve --log-format json`: every line on stderr is a JSON object, the
/// start-up lines too.
fn json_log(cli: &Cli) -> bool {
    matches!(&cli.command, Command::Serve(a) if a.log_format == LogFormat::Json)
}

fn fail(failure: Failure) -> ExitCode {
    say!("tftplab: {}", failure.message);
    ExitCode::from(failure.exit as u8)
}

/// `inherited`: the sockets systemd handed over, for serve.
async fn run(cli: Cli, inherited: Option<Vec<std::net::UdpSocket>>) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(a) => run_serve(a, inherited).await,
        Command::Get(a) => run_get(a).await,
        Command::Put(a) => run_put(a).await,
        Command::Store(a) => run_store(a),
    }
}

async fn run_serve(
    a: ServeArgs,
    inherited: Option<Vec<std::net::UdpSocket>>,
) -> Result<(), Failure> {
    // Caught from the start, so a signal during start-up stops cleanly.
    let mut signals = Signals::listen();
    let policy = match a.write {
        WriteArg::Off => WritePolicy::Off,
        WriteArg::Create => WritePolicy::Create,
        WriteArg::Overwrite => WritePolicy::Overwrite,
    };
    let config = StoreConfig::new(&a.root)
        .write(policy)
        .max_upload(a.max_upload)
        .create_dirs(a.create_dirs)
        .backslash_to_slash(a.backslash);
    let store = Store::new(config)
        .map_err(|e| Failure::local(format!("cannot serve {}: {e}", a.root.display())))?;
    let limits = serve_limits(&a);
    let rules = match &a.remap {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("--remap {}: {e}", path.display())))?;
            remap::parse(&text, &path.display().to_string()).map_err(Failure::usage)?
        }
        None => Vec::new(),
    };
    let resolver = (!rules.is_empty() || a.per_client_root.is_some()).then(|| {
        Arc::new(resolve::Resolver::new(
            rules,
            a.per_client_root.map(|k| (k, a.per_client_fallback)),
        ))
    });
    // Its port is checked before the TFTP socket is bound.
    if let Some(addr) = a.metrics {
        prometheus::install(addr).map_err(Failure::local)?;
    }
    let options = ServerOptions {
        bind: a.bind[0],
        also_bind: a.bind[1..].to_vec(),
        transfer: ServerConfig {
            timeout: Duration::from_secs_f64(a.timeout),
            min_rto: Duration::from_secs_f64(a.min_rto),
            retries: a.retries,
            limits,
        },
        max_transfers: usize::try_from(a.max_transfers).unwrap_or(usize::MAX),
        port_range: a.port_range.map(|(lo, hi)| lo..=hi),
        single_port: a.single_port,
        max_transfer_time: Duration::from_secs_f64(a.max_transfer_time),
        resolver: resolver
            .clone()
            .map(|r| r as Arc<dyn tftplab::runtime::Resolve>),
        ..ServerOptions::default()
    };
    // Bound before root is given up: systemd's sockets, or our own.
    let sockets = match inherited {
        Some(inherited) => inherited
            .into_iter()
            .map(HostSocket::from_std)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::local(format!("systemd's socket: {e}")))?,
        None => {
            let mut bound = Vec::new();
            for &addr in &a.bind {
                bound.push(TokioNet.bind(addr).await.map_err(|e| {
                    let hint =
                        if addr.port() < 1024 && e.kind() == std::io::ErrorKind::PermissionDenied {
                            "; ports below 1024 need root or CAP_NET_BIND_SERVICE (or use --bind \
                         with a high port)"
                        } else {
                            ""
                        };
                    Failure::local(format!("cannot listen on {addr}: {e}{hint}"))
                })?);
            }
            bound
        }
    };
    system::drop_privileges(a.user.as_deref(), a.group.as_deref()).map_err(Failure::local)?;
    // As the user that will serve: root may write anywhere.
    if policy != WritePolicy::Off {
        if let Err(e) = probe_writable(store.root()) {
            let root = store.root().display();
            if a.log_format == LogFormat::Json {
                tracing::warn!(%root, write = %policy, error = %e, "root not writable");
            } else {
                say!(
                    "tftplab: warning: --write {policy}, but {root} is not writable here ({e}); \
                     every upload will be refused until it is"
                );
            }
        }
    }
    let server = serve_on(TokioNet, Arc::new(store), options, sockets)
        .await
        .map_err(|e| Failure::local(format!("cannot serve: {e}")))?;
    let root = server.store().root().display();
    let addr = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let policy_line = option_policy(&limits, a.mtu);
    if a.log_format == LogFormat::Json {
        tracing::info!(%root, %addr, write = %policy, options = %policy_line, "serving");
    } else {
        say!("tftplab: serving {root} on {addr} (write: {policy}); Ctrl-C to stop");
        say!("tftplab: options: {policy_line}");
    }
    for line in resolver.iter().flat_map(|r| r.describe()) {
        if a.log_format == LogFormat::Json {
            tracing::info!(rule = %line, "resolve");
        } else {
            say!("tftplab: {line}");
        }
    }
    if let Some(addr) = a.metrics {
        tokio::spawn(prometheus::record(server.subscribe()));
        if a.log_format == LogFormat::Json {
            tracing::info!(%addr, "metrics");
        } else {
            say!("tftplab: metrics on http://{addr}/metrics");
        }
    }
    system::notify_ready(&format!("serving {root} on {addr}"));
    // Subscribed before `ready` is printed, so no transfer a reader starts
    // after reading it can be missed.
    let printer = (a.events == EventsArg::Json).then(|| {
        let rx = server.subscribe();
        events::ready(
            server.local_addrs(),
            server.store().root(),
            &policy.to_string(),
        );
        tokio::spawn(events::print(rx))
    });
    signals.recv().await;
    // Running: no outcome yet. The other live transfers have one and only
    // linger (a receiver re-answers a final DATA whose ACK was lost).
    let stats = server.stats();
    let running = stats
        .started
        .saturating_sub(stats.succeeded + stats.failed)
        .min(stats.active);
    let lingering = stats.active - running;
    let json = a.log_format == LogFormat::Json;
    if json {
        tracing::info!(running, lingering, grace_s = a.grace, "stopping");
    } else if running > 0 {
        say!(
            "tftplab: stopping: letting {running} running transfer(s) finish for up to {} s; \
             Ctrl-C again stops at once",
            a.grace
        );
    } else if lingering > 0 {
        say!(
            "tftplab: stopping: {lingering} finished transfer(s) stay a moment to re-answer a \
             lost last packet (at most {} s); Ctrl-C again stops at once",
            a.grace
        );
    } else {
        say!("tftplab: stopping");
    }
    let stopping = server.stop(Duration::from_secs_f64(a.grace));
    tokio::pin!(stopping);
    let report = tokio::select! {
        report = &mut stopping => report,
        _ = signals.recv() => {
            if json {
                tracing::warn!("stopped at once; running transfers were cut off");
            } else {
                say!("tftplab: stopped at once; running transfers were cut off");
            }
            std::process::exit(130);
        }
    };
    if report.aborted > 0 && !json {
        say!("tftplab: stopped; {} transfer(s) aborted", report.aborted);
    }
    if let Some(printer) = printer {
        // The channel closes once the server and its transfers are gone;
        // every event sent before that is printed first.
        if tokio::time::timeout(Duration::from_secs(1), printer)
            .await
            .is_err()
        {
            tracing::warn!("event printer did not finish");
        }
        events::stopped(report.aborted);
    }
    Ok(())
}

/// SIGINT and SIGTERM, caught from the moment of [`Signals::listen`]: a
/// signal that comes before anything awaits them is kept, not lost to the
/// default action (which would end the process with a temporary file left
/// behind).
#[cfg(unix)]
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn recv(&mut self) {
        async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = one(&mut self.int) => {}
            _ = one(&mut self.term) => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> Signals {
        Signals
    }

    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The option limits `serve` runs with: the caps, the refused options, and
/// blksize cut to the MTU (the store's max_upload applies to requests by
/// itself).
fn serve_limits(a: &ServeArgs) -> Limits {
    // IPv4 and UDP headers and TFTP's own 4 bytes: 32; IPv6 has 20 more.
    let overhead = if a.bind.iter().all(|b| b.is_ipv4()) {
        32
    } else {
        52
    };
    let mtu_cap = a
        .mtu
        .map_or(u16::MAX, |m| m.saturating_sub(overhead).max(8));
    let limits = Limits {
        max_blksize: a.max_blksize.min(mtu_cap),
        max_windowsize: a.max_windowsize,
        max_timeout: a.max_timeout,
        ..Limits::default()
    };
    a.refuse.iter().fold(limits, |l, &opt| l.refusing(opt))
}

/// One line for the start-up log: what clients may negotiate.
fn option_policy(l: &Limits, mtu: Option<u16>) -> String {
    use tftplab::options::Opt;
    let shown = |opt: Opt, cap: String| {
        if l.refuses(opt) {
            format!("{} refused", opt.name())
        } else {
            format!("{} {cap}", opt.name())
        }
    };
    let mtu = mtu.map_or(String::new(), |m| format!(" (mtu {m})"));
    format!(
        "{}, {}, {}, {}",
        shown(Opt::Blksize, format!("<= {}{mtu}", l.max_blksize)),
        shown(Opt::Windowsize, format!("<= {}", l.max_windowsize)),
        shown(Opt::Timeout, format!("<= {} s", l.max_timeout)),
        shown(Opt::Tsize, "granted".into()),
    )
}

/// Creates and removes a file in `root`: the only check that sees
/// permissions, ACLs and read-only mounts alike. `create_new` never
/// touches an existing file.
fn probe_writable(root: &Path) -> std::io::Result<()> {
    let probe = root.join(format!(".tftplab-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Parses HOST, HOST:PORT, [V6]:PORT or a bare IPv6 address (port 69 by
/// default) into the addresses to try, IPv4 first: `localhost` is
/// 127.0.0.1 and ::1, and a server may listen on either.
fn resolve(server: &str) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let bare = server.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, 69)]);
    }
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| Failure::usage(format!("`{p}` in `{server}` is not a port number")))?,
        ),
        None => (server, 69),
    };
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| Failure::new(Exit::NoAnswer, format!("cannot resolve `{host}`: {e}")))?
        .collect::<Vec<_>>();
    addrs.sort_by_key(|a| !a.is_ipv4());
    // The resolver lists an address once per socket type.
    let mut seen = Vec::new();
    addrs.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
    if addrs.is_empty() {
        return Err(Failure::new(
            Exit::NoAnswer,
            format!("`{host}` has no address"),
        ));
    }
    Ok(addrs)
}

/// Runs `attempt` on each of `servers` in turn while the last one's port
/// was unreachable (an ICMP answer: nothing listens there); any other
/// outcome, success or failure, is final.
async fn first_reachable<T, F, Fut>(
    servers: &[SocketAddr],
    mut attempt: F,
) -> (SocketAddr, Result<T, ClientError>)
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut last = None;
    for &server in servers {
        match attempt(server).await {
            Err(ClientError::Unreachable(e)) => last = Some((server, e)),
            result => return (server, result),
        }
    }
    match last {
        Some((server, e)) => (server, Err(ClientError::Unreachable(e))),
        // `resolve` never gives an empty list.
        None => (
            SocketAddr::from(([0, 0, 0, 0], 0)),
            Err(ClientError::Io(std::io::Error::other("no address to try"))),
        ),
    }
}

/// The block size asked for by default: one Ethernet frame of 1500 bytes
/// less the IP (20 or 40) and UDP (8) headers and the DATA header (4).
fn default_blksize(server: SocketAddr) -> u16 {
    if server.is_ipv4() {
        1468
    } else {
        1448
    }
}

/// The options a transfer with `server` asks for (see [`TransferArgs`]):
/// RFC 1350's own values (blksize 512, windowsize 1) are not asked for.
fn requested_options(t: &TransferArgs, server: SocketAddr) -> OptionRequest {
    if t.plain {
        return OptionRequest::default();
    }
    OptionRequest {
        blksize: Some(t.blksize.unwrap_or_else(|| default_blksize(server))).filter(|&n| n != 512),
        windowsize: Some(t.windowsize.unwrap_or(16)).filter(|&n| n != 1),
        timeout: t.timeout,
        tsize: (!t.no_tsize).then_some(0),
    }
}

fn client_config(t: &TransferArgs, options: OptionRequest) -> ClientConfig {
    ClientConfig {
        mode: match t.mode {
            ModeArg::Octet => Mode::Octet,
            ModeArg::Netascii => Mode::Netascii,
        },
        options,
        min_rto: Duration::from_secs_f64(t.min_rto),
        retries: t.retries,
        ..ClientConfig::default()
    }
}

/// Runs `attempt` with the options for `server`, and once more without any
/// when the server refused them with ERROR 8 before any data moved (RFC
/// 2347 lets a client retry a refused negotiation that way).
async fn with_option_fallback<T, F, Fut>(
    t: &TransferArgs,
    server: SocketAddr,
    bytes: &std::cell::Cell<u64>,
    mut attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut(ClientConfig) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let options = requested_options(t, server);
    let result = attempt(client_config(t, options)).await;
    match result {
        Err(ClientError::Transfer(TransferError::Peer { code, message }))
            if code == tftplab::wire::ErrorCode::OPTION_NEGOTIATION
                && !options.is_empty()
                && bytes.get() == 0 =>
        {
            if !t.quiet {
                say!(
                    "tftplab: {server} refused the options (ERROR 8: {message}); \
                     asking again without them"
                );
            }
            attempt(client_config(t, OptionRequest::default())).await
        }
        other => other,
    }
}

/// One readable line for a failed transfer of `name`, which had moved
/// `bytes` when it ended (an ERROR after data is an abort, not a refusal).
fn explain(e: ClientError, server: SocketAddr, name: &str, bytes: u64) -> Failure {
    match e {
        ClientError::Transfer(TransferError::Peer { code, message }) if bytes > 0 => Failure::new(
            Exit::Refused,
            format!(
                "{server} aborted `{name}` after {bytes} bytes: ERROR {}: {message}",
                code.0
            ),
        ),
        ClientError::Transfer(TransferError::Peer { code, message }) => Failure::new(
            Exit::Refused,
            format!("{server} refused `{name}`: ERROR {}: {message}", code.0),
        ),
        ClientError::Transfer(TransferError::TimedOut { retries }) if bytes > 0 => Failure::new(
            Exit::NoAnswer,
            format!(
                "{server} went silent after {bytes} bytes of `{name}` ({retries} retries); \
                 the server or the network between went away"
            ),
        ),
        ClientError::Transfer(TransferError::TimedOut { retries }) => Failure::new(
            Exit::NoAnswer,
            format!(
                "no answer from {server} after {retries} retries; is a TFTP server running \
                 there, and does a firewall let UDP through?"
            ),
        ),
        ClientError::Transfer(TransferError::Unconfirmed { retries }) => Failure::new(
            Exit::NoAnswer,
            format!(
                "sent all of `{name}`, but {server} never acknowledged the last block after \
                 {retries} retries; it may have the whole file: check with `tftplab get`"
            ),
        ),
        ClientError::Transfer(TransferError::Local { code, message }) => Failure::local(format!(
            "gave up on `{name}` (sent ERROR {}): {message}",
            code.0
        )),
        ClientError::Unreachable(_) => Failure::new(
            Exit::NoAnswer,
            format!(
                "nothing is listening on {server} (port unreachable); is the server running, \
                 and on that port?"
            ),
        ),
        ClientError::Io(e) => Failure::local(format!("`{name}`: {e}")),
    }
}

struct Bar(Option<ProgressBar>);

/// The progress line while the size is unknown (no `tsize` from the
/// server): what has come and how fast, with no bar or ETA to get wrong.
const WITHOUT_TOTAL: &str = "{spinner} {bytes} {binary_bytes_per_sec}";
/// Once the size is known: a bar, and an ETA that means something.
const WITH_TOTAL: &str = "{spinner} {bytes}/{total_bytes} {wide_bar} {binary_bytes_per_sec} {eta}";

fn style(template: &str) -> Option<ProgressStyle> {
    ProgressStyle::with_template(template).ok()
}

impl Bar {
    fn new(quiet: bool) -> Bar {
        if quiet || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Some(style) = style(WITHOUT_TOTAL) {
            bar.set_style(style);
        }
        Bar(Some(bar))
    }

    fn update(&self, p: Progress) {
        if let Some(bar) = &self.0 {
            if let Some(total) = p.total.filter(|&t| bar.length() != Some(t)) {
                bar.set_length(total);
                if let Some(style) = style(WITH_TOTAL) {
                    bar.set_style(style);
                }
            }
            bar.set_position(p.bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

fn report(verb: &str, name: &str, s: &Summary, quiet: bool) {
    if quiet {
        return;
    }
    let secs = s.duration.as_secs_f64();
    let rate = if secs > 0.0 {
        s.bytes as f64 / secs / 1e6
    } else {
        0.0
    };
    say!(
        "{verb} {name}: {} bytes in {secs:.3} s ({rate:.1} MB/s), blksize {}, window {}, {} retransmission(s)",
        s.bytes, s.negotiated.blksize, s.negotiated.windowsize, s.retransmissions
    );
}

fn last_component(name: &str) -> &str {
    name.rsplit(['/', '\\'])
        .find(|c| !c.is_empty())
        .unwrap_or(name)
}

/// Where `get` writes `remote`: LOCAL, or inside LOCAL when it is a
/// directory (as `cp` does), or the remote name's last component here. The
/// directory it goes in must exist before a byte is fetched.
fn local_target(remote: &str, local: Option<&Path>) -> Result<std::path::PathBuf, Failure> {
    let name = last_component(remote);
    let target = match local {
        Some(dir) if dir.is_dir() => dir.join(name),
        Some(path) => path.to_path_buf(),
        None => name.into(),
    };
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Failure::local(format!(
            "cannot save to `{}`: `{}` is not a directory; create it or choose another LOCAL",
            target.display(),
            parent.display()
        )));
    }
    Ok(target)
}

/// Runs `transfer` until it ends or Ctrl-C (or SIGTERM) comes; then the
/// transfer is dropped, which removes its temporary file, and the exit
/// status is 130.
async fn interruptible<T>(
    what: &str,
    transfer: impl std::future::Future<Output = T>,
) -> Result<T, Failure> {
    let mut signals = Signals::listen();
    tokio::select! {
        biased;
        _ = signals.recv() => Err(Failure::new(
            Exit::Interrupted,
            format!("interrupted; {what}"),
        )),
        done = transfer => Ok(done),
    }
}

async fn run_get(a: GetArgs) -> Result<(), Failure> {
    let servers = resolve(&a.server)?;
    let quiet = a.transfer.quiet;
    let bytes = &std::cell::Cell::new(0);
    let remote = &a.remote;
    if a.local.as_deref() == Some(Path::new("-")) {
        let sink = &SharedSink::new();
        let fetch = first_reachable(&servers, |server| {
            with_option_fallback(&a.transfer, server, bytes, move |config| async move {
                let sink = sink.clone();
                let client = Client::new(TokioNet, config);
                client
                    .get(server, remote, sink, |p| bytes.set(p.bytes))
                    .await
            })
        });
        let (server, result) = interruptible("nothing was written", fetch).await?;
        result.map_err(|e| explain(e, server, remote, bytes.get()))?;
        return std::io::stdout()
            .write_all(&sink.take())
            .map_err(|e| Failure::local(format!("writing to stdout: {e}")));
    }
    let local = &local_target(remote, a.local.as_deref())?;
    let bar = &Bar::new(quiet);
    let sync = a.sync;
    let fetch = first_reachable(&servers, |server| {
        with_option_fallback(&a.transfer, server, bytes, move |config| async move {
            let client = Client::new(TokioNet, config).sync_files(sync);
            client
                .get_file(server, remote, local, |p| {
                    bytes.set(p.bytes);
                    bar.update(p)
                })
                .await
        })
    });
    let not_saved = format!("`{}` was not written", local.display());
    let outcome = interruptible(&not_saved, fetch).await;
    bar.finish();
    let (server, result) = outcome?;
    let summary = result.map_err(|e| match e {
        // The server said nothing about this: it is about the local side.
        ClientError::Io(e) => Failure::local(format!("cannot save to `{}`: {e}", local.display())),
        e => explain(e, server, &a.remote, bytes.get()),
    })?;
    report("received", &a.remote, &summary, quiet);
    Ok(())
}

async fn run_put(a: PutArgs) -> Result<(), Failure> {
    let servers = resolve(&a.server)?;
    let remote = match &a.remote {
        Some(r) => r.clone(),
        None => a
            .local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Failure::usage(format!(
                    "`{}` has no file name; give REMOTE",
                    a.local.display()
                ))
            })?,
    };
    if !a.local.is_file() {
        return Err(Failure::local(format!(
            "`{}` is not a readable file",
            a.local.display()
        )));
    }
    let bar = &Bar::new(a.transfer.quiet);
    let bytes = &std::cell::Cell::new(0);
    let (name, local) = (&remote, &a.local);
    let send = first_reachable(&servers, |server| {
        with_option_fallback(&a.transfer, server, bytes, move |config| async move {
            let client = Client::new(TokioNet, config);
            client
                .put_file(server, name, local, |p| {
                    bytes.set(p.bytes);
                    bar.update(p)
                })
                .await
        })
    });
    let outcome = interruptible("the upload was cut off", send).await;
    bar.finish();
    let (server, result) = outcome?;
    let summary = result.map_err(|e| match e {
        ClientError::Io(e) => Failure::local(format!("cannot read `{}`: {e}", a.local.display())),
        e => explain(e, server, &remote, bytes.get()),
    })?;
    report("sent", &remote, &summary, a.transfer.quiet);
    Ok(())
}

fn run_store(a: StoreArgs) -> Result<(), Failure> {
    let Some(root) = a.root else {
        use clap::CommandFactory;
        let cli = args::Cli::command();
        let store = cli.find_subcommand("store").cloned();
        store
            .map_or(cli, |c| c.bin_name("tftplab store"))
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "store needs the server's root: --root DIR (before or after the action)",
            )
            .exit();
    };
    let store = Store::new(StoreConfig::new(&root))
        .map_err(|e| Failure::local(format!("cannot open store {}: {e}", root.display())))?;
    let mut out = std::io::stdout().lock();
    let print = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|e| Failure::local(format!("writing to stdout: {e}")))
    };
    match a.action {
        StoreAction::Ls => {
            let entries = store
                .list()
                .map_err(|e| Failure::local(format!("cannot list {}: {e}", root.display())))?;
            for e in entries {
                print(&mut out, format!("{:>12}  {}", e.size, e.name))?;
            }
        }
        StoreAction::Put { local, name } => {
            let name = match name {
                Some(n) => n,
                None => local
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| {
                        Failure::usage(format!("`{}` has no file name; give NAME", local.display()))
                    })?,
            };
            let outcome = store.put_file(&name, &local).map_err(store_failure)?;
            let what = match (outcome.skipped_identical, outcome.created) {
                (true, _) => "unchanged",
                (false, true) => "created",
                (false, false) => "replaced",
            };
            print(
                &mut out,
                format!(
                    "{what} {name} ({} bytes, sha256 {})",
                    outcome.size,
                    outcome.sha256_hex()
                ),
            )?;
        }
        StoreAction::Rm { name } => store.delete(&name).map_err(store_failure)?,
        StoreAction::Sum { name } => {
            let sum = store.sha256(&name).map_err(store_failure)?;
            print(&mut out, format!("{sum}  {name}"))?;
        }
    }
    Ok(())
}

/// A store refusal (not found, exists, denied) exits like the server's
/// refusal of the same request would; anything else is local I/O.
fn store_failure(e: tftplab::store::StoreError) -> Failure {
    use tftplab::store::StoreError as E;
    let exit = match e {
        E::NotFound { .. }
        | E::NoDirectory { .. }
        | E::NotAFile { .. }
        | E::NameTooLong { .. }
        | E::Denied { .. }
        | E::Exists { .. } => Exit::Refused,
        E::Io { .. } | E::Local { .. } => Exit::Local,
    };
    Failure::new(exit, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_every_address_form() {
        let one = |s: &str| resolve(s).unwrap();
        let addr = |s: &str| vec![s.parse::<SocketAddr>().unwrap()];
        assert_eq!(one("127.0.0.1"), addr("127.0.0.1:69"));
        assert_eq!(one("127.0.0.1:6969"), addr("127.0.0.1:6969"));
        assert_eq!(one("::1"), addr("[::1]:69"));
        assert_eq!(one("[::1]"), addr("[::1]:69"));
        assert_eq!(one("[::1]:7000"), addr("[::1]:7000"));
        // Every address of a name, IPv4 first: a server may listen on ::1.
        let local = one("localhost:7000");
        assert!(local.iter().all(|a| a.port() == 7000));
        assert!(local[0].is_ipv4());
        assert_eq!(resolve("127.0.0.1:notaport").unwrap_err().exit, Exit::Usage);
    }

    #[test]
    fn the_next_address_is_tried_only_when_a_port_was_unreachable() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let v4: SocketAddr = "127.0.0.1:69".parse().unwrap();
        let v6: SocketAddr = "[::1]:69".parse().unwrap();
        let unreachable = || ClientError::Unreachable(std::io::ErrorKind::ConnectionRefused.into());
        let tried = std::cell::RefCell::new(Vec::new());
        // 127.0.0.1 has nothing on the port; ::1 answers.
        let (at, r) = rt.block_on(first_reachable(&[v4, v6], |s| {
            tried.borrow_mut().push(s);
            let r = if s == v4 { Err(unreachable()) } else { Ok(7) };
            async move { r }
        }));
        assert_eq!((at, r.unwrap(), tried.take()), (v6, 7, vec![v4, v6]));
        // A refusal or a timeout is an answer: no second address.
        let (at, r) = rt.block_on(first_reachable(&[v4, v6], |s| {
            tried.borrow_mut().push(s);
            async {
                Err::<u8, _>(ClientError::Transfer(TransferError::TimedOut {
                    retries: 5,
                }))
            }
        }));
        assert!(r.is_err());
        assert_eq!((at, tried.take()), (v4, vec![v4]));
        // All unreachable: the last one's error.
        let (at, r) = rt.block_on(first_reachable(&[v4, v6], |_| async {
            Err::<u8, _>(unreachable())
        }));
        assert!(matches!(r, Err(ClientError::Unreachable(_))));
        assert_eq!(at, v6);
    }

    #[test]
    fn default_local_name_is_the_last_component() {
        assert_eq!(last_component("9ffefdef/start4.elf"), "start4.elf");
        assert_eq!(last_component("pxelinux.cfg\\default"), "default");
        assert_eq!(last_component("plain"), "plain");
        assert_eq!(last_component("dir/"), "dir");
    }

    #[test]
    fn progress_templates_parse_and_only_a_known_size_gets_a_bar() {
        assert!(style(WITHOUT_TOTAL).is_some() && style(WITH_TOTAL).is_some());
        for part in ["{total_bytes}", "{wide_bar}", "{eta}"] {
            assert!(!WITHOUT_TOTAL.contains(part), "{part}");
            assert!(WITH_TOTAL.contains(part), "{part}");
        }
    }
}
