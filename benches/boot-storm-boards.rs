//! The boot storm's boards: N Raspberry Pi 4 bootloaders netbooting at once
//! from one TFTP server over real UDP, each the lab's rpi4-bootloader
//! profile (`tftplab_sim::lab::firmware::rpi4`, every rule cited there) on
//! sockets of its own, all in this process. `benches/boot-storm.py` runs it
//! against tftplab, tftpd-hpa, atftpd and dnsmasq; it is a bench target of
//! tftplab-sim only because the root package cannot depend on the lab.
//!
//! ```sh
//! boot-storm-boards stage --root DIR --boards 20       # the file set, for 20 boards
//! boot-storm-boards run --server 127.0.0.1:69 --boards 20 > boards.json
//! ```
//!
//! The file set and each board's requests come from `benches/boot-storm.toml`
//! (`--scenario`), whose one `[[clients]]` entry is given `count = N`: every
//! board has its own serial number, so its own serial-path probes and its
//! own `<serial>/cmdline.txt`. A board runs its actions in order and stops at
//! the first that does not end as the scenario expects (a real bootloader
//! would start over; here the board counts as failed, with the reason).
//! Every download is compared byte for byte with what the scenario serves.
//!
//! `run` prints one JSON object: the run's settings and, per board, whether
//! it finished, why not, when it started and ended (seconds since the storm
//! began), and what its sockets saw. Counted at the board, since a peer
//! server's own retransmissions cannot be seen from outside:
//! - `sent`: datagrams the board sent (RRQs, ACKs, ERRORs);
//! - `resent`: of those, datagrams identical to one the same socket had
//!   sent before: an RRQ resent after 2 s of silence, an ACK resent after
//!   2 s, or re-sent because the same DATA came again (the firmware
//!   acknowledges a block it already has, rpi-eeprom 2021-02-16);
//! - `requests_resent`: of those, the RRQs: the board heard nothing for
//!   2 s after asking (its RRQ or the server's first answer, an OACK or
//!   an ERROR, was lost), a wait no server can shorten;
//! - `received`: datagrams the board's sockets received;
//! - `dup_received`: of those, a DATA whose block that socket had received
//!   already, or a second OACK: the server's retransmissions (or spurious
//!   resends) that reached the board.

use clap::{Parser, Subcommand};
use serde::Serialize;
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tftplab::runtime::{DatagramSocket, HostSocket, Network, TokioNet};
use tftplab_sim::lab::check::served_bytes;
use tftplab_sim::lab::profile::{run_client, Got};
use tftplab_sim::lab::scenario::{ActionKind, ClientSpec, Outcome};
use tftplab_sim::lab::Scenario;

#[derive(Parser)]
#[command(
    name = "boot-storm-boards",
    about = "N rpi4 bootloaders netbooting at once over real UDP (see benches/boot-storm.py)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the file set for N boards into a server's root (files 0644,
    /// directories 0755: tftpd-hpa serves only world-readable files).
    Stage {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        boards: usize,
        #[arg(long, default_value = default_scenario())]
        scenario: PathBuf,
    },
    /// Boot N boards from the server and print the JSON report on stdout.
    Run {
        /// The server's address and port.
        #[arg(long)]
        server: SocketAddr,
        #[arg(long)]
        boards: usize,
        #[arg(long, default_value = default_scenario())]
        scenario: PathBuf,
        /// Boards start evenly over this many milliseconds (0: all at once).
        #[arg(long, default_value_t = 0)]
        spread_ms: u64,
        /// A board still booting this many seconds after its start has
        /// failed ("deadline").
        #[arg(long, default_value_t = 600)]
        deadline_s: u64,
        /// Threads for the boards, each with its own single-threaded
        /// runtime; board i runs on thread i mod T.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

fn default_scenario() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/boot-storm.toml")
}

/// The scenario with its one `[[clients]]` entry given `count = boards`.
fn load(path: &Path, boards: usize) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(toml::Value::Array(clients)) = doc.get_mut("clients") else {
        return Err(format!("{}: no [[clients]]", path.display()));
    };
    let [toml::Value::Table(entry)] = clients.as_mut_slice() else {
        return Err(format!(
            "{}: the boot storm needs exactly one [[clients]] entry (it sets its count)",
            path.display()
        ));
    };
    let count = i64::try_from(boards).map_err(|_| "too many boards".to_owned())?;
    entry.insert("count".into(), toml::Value::Integer(count));
    let text = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Scenario::parse(&text, path).map_err(|e| e.to_string())
}

fn stage(root: &Path, scenario: &Scenario) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    tftplab_sim::lab::content::stage(scenario, root, None)?;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod {}: {e}", p.display()))
        };
        set(&dir, 0o755)?;
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                set(&path, 0o644)?;
            }
        }
    }
    Ok(())
}

/// What one board's sockets saw (see the module docs).
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    resent: AtomicU64,
    requests_resent: AtomicU64,
    received: AtomicU64,
    dup_received: AtomicU64,
}

/// The host's UDP stack, every socket counting what it sends and receives
/// into its board's [`Tally`].
#[derive(Clone)]
struct Counted {
    tally: Arc<Tally>,
}

struct CountedSocket {
    inner: HostSocket,
    tally: Arc<Tally>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    sent: HashSet<Vec<u8>>,
    blocks: HashSet<u16>,
    oacks: u64,
}

impl CountedSocket {
    fn wrap(inner: io::Result<HostSocket>, tally: &Arc<Tally>) -> io::Result<Self> {
        Ok(CountedSocket {
            inner: inner?,
            tally: tally.clone(),
            seen: Mutex::default(),
        })
    }

    fn sending(&self, datagram: &[u8]) {
        self.tally.sent.fetch_add(1, Ordering::Relaxed);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.sent.insert(datagram.to_vec()) {
            self.tally.resent.fetch_add(1, Ordering::Relaxed);
            if datagram.starts_with(&[0, 1]) {
                self.tally.requests_resent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn received(&self, datagram: &[u8]) {
        self.tally.received.fetch_add(1, Ordering::Relaxed);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let dup = match datagram {
            [0, 3, hi, lo, ..] => !seen.blocks.insert(u16::from_be_bytes([*hi, *lo])),
            [0, 6, ..] => {
                seen.oacks += 1;
                seen.oacks > 1
            }
            _ => false,
        };
        if dup {
            self.tally.dup_received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl DatagramSocket for CountedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.sending(buf);
        self.inner.send_to(buf, target).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (len, from) = self.inner.recv_from(buf).await?;
        self.received(&buf[..len]);
        Ok((len, from))
    }

    async fn recv_segments(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
        let (len, from, segment) = self.inner.recv_segments(buf).await?;
        for datagram in buf[..len].chunks(segment.max(1)) {
            self.received(datagram);
        }
        Ok((len, from, segment))
    }

    fn coalesces(&self) -> bool {
        self.inner.coalesces()
    }

    async fn send_segments(
        &self,
        buf: &[u8],
        segment: usize,
        target: SocketAddr,
    ) -> io::Result<()> {
        for datagram in buf.chunks(segment.max(1)) {
            self.sending(datagram);
        }
        self.inner.send_segments(buf, segment, target).await
    }
}

impl Network for Counted {
    type Socket = CountedSocket;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        let tally = self.tally.clone();
        async move { CountedSocket::wrap(TokioNet.bind(addr).await, &tally) }
    }

    fn bind_transfer(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        let tally = self.tally.clone();
        async move { CountedSocket::wrap(TokioNet.bind_transfer(addr).await, &tally) }
    }

    fn bind_client(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Socket>> + Send {
        let tally = self.tally.clone();
        async move { CountedSocket::wrap(TokioNet.bind_client(addr).await, &tally) }
    }
}

/// One board's line in the report.
#[derive(Serialize)]
struct BoardReport {
    name: String,
    serial: String,
    done: bool,
    /// Why the board failed: the action and what came of it.
    reason: Option<String>,
    /// Seconds since the storm began.
    started_s: f64,
    ended_s: f64,
    /// `ended_s - started_s`.
    secs: f64,
    actions_ok: usize,
    actions: usize,
    /// Downloaded bytes found identical to the served file.
    bytes_checked: u64,
    sent: u64,
    resent: u64,
    requests_resent: u64,
    received: u64,
    dup_received: u64,
}

#[derive(Serialize)]
struct Report {
    server: SocketAddr,
    scenario: String,
    boards: usize,
    spread_ms: u64,
    deadline_s: u64,
    threads: usize,
    done: usize,
    /// Seconds from the storm's start until the last board ended.
    wall_s: f64,
    board: Vec<BoardReport>,
}

/// Checks one action's result against the scenario: `Ok(bytes checked)`.
fn check(
    scenario: &Scenario,
    kind: &ActionKind,
    expect: Outcome,
    got: &Got,
) -> Result<u64, String> {
    let what = |got: &Got| match got {
        Got::Done { bytes } => format!("{} bytes", bytes.len()),
        Got::Probed => "a completed probe".into(),
        Got::ServerError(code, message) => format!("ERROR {code} {message:?}"),
        Got::TimedOut => "a time-out".into(),
        Got::Local(code, message) => format!("a local failure ({code} {message})"),
    };
    match (expect, kind, got) {
        (Outcome::Error(code), _, Got::ServerError(c, _)) if *c == code => Ok(0),
        (Outcome::Error(code), _, got) => Err(format!("expected ERROR {code}, got {}", what(got))),
        (Outcome::Intact, ActionKind::Get { probe: true, .. }, Got::Probed) => Ok(0),
        (Outcome::Intact, ActionKind::Get { name, .. }, Got::Done { bytes }) => {
            match served_bytes(scenario, name) {
                Some(served) if served[..] == bytes[..] => Ok(bytes.len() as u64),
                Some(served) => Err(format!(
                    "received {} bytes that differ from the {} served",
                    bytes.len(),
                    served.len()
                )),
                None => Err("the scenario serves no such file".into()),
            }
        }
        (_, _, got) => Err(format!("expected {expect:?}, got {}", what(got))),
    }
}

/// Boots one board: its actions in order, each through the lab's profile,
/// until one goes wrong.
async fn boot(
    server: SocketAddr,
    spec: ClientSpec,
    scenario: Arc<Scenario>,
    t0: Instant,
    deadline: Duration,
) -> BoardReport {
    let tally = Arc::new(Tally::default());
    let net = Counted {
        tally: tally.clone(),
    };
    tokio::time::sleep_until((t0 + spec.start).into()).await;
    let started = t0.elapsed();
    let mut actions_ok = 0;
    let mut bytes_checked = 0;
    let run = async {
        for (i, action) in spec.actions.iter().enumerate() {
            let one = ClientSpec {
                actions: vec![action.clone()],
                start: Duration::ZERO,
                ..spec.clone()
            };
            let clock = || t0.elapsed();
            let results = run_client(&net, server, &one, &clock, &|_| {}).await;
            let Some(result) = results.first() else {
                continue; // a sleep
            };
            match check(&scenario, &action.kind, action.expect, &result.got) {
                Ok(n) => {
                    actions_ok += 1;
                    bytes_checked += n;
                }
                Err(why) => {
                    let name = match &action.kind {
                        ActionKind::Get { name, probe: true } => format!("probe {name}"),
                        ActionKind::Get { name, .. } | ActionKind::Put { name, .. } => name.clone(),
                        ActionKind::Sleep(_) => "sleep".into(),
                    };
                    return Err(format!("action {} ({name}): {why}", i + 1));
                }
            }
        }
        Ok(())
    };
    let outcome = match tokio::time::timeout(deadline, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "deadline: still booting after {} s",
            deadline.as_secs()
        )),
    };
    let ended = t0.elapsed();
    BoardReport {
        name: spec.name.clone(),
        serial: tftplab_sim::lab::scenario::serial_text(spec.serial),
        done: outcome.is_ok(),
        reason: outcome.err(),
        started_s: started.as_secs_f64(),
        ended_s: ended.as_secs_f64(),
        secs: (ended - started).as_secs_f64(),
        actions_ok,
        actions: spec.actions.len(),
        bytes_checked,
        sent: tally.sent.load(Ordering::Relaxed),
        resent: tally.resent.load(Ordering::Relaxed),
        requests_resent: tally.requests_resent.load(Ordering::Relaxed),
        received: tally.received.load(Ordering::Relaxed),
        dup_received: tally.dup_received.load(Ordering::Relaxed),
    }
}

fn run(
    server: SocketAddr,
    scenario: Scenario,
    spread: Duration,
    deadline: Duration,
    threads: usize,
) -> Vec<BoardReport> {
    let n = scenario.clients.len();
    let mut specs: Vec<ClientSpec> = scenario.clients.clone();
    for (i, spec) in specs.iter_mut().enumerate() {
        spec.start += spread.mul_f64(i as f64 / n as f64);
    }
    let scenario = Arc::new(scenario);
    // Each thread runs its boards on a runtime of its own: the profile's
    // futures borrow its clock and are not Send.
    let threads = threads.clamp(1, n.max(1));
    let mut shares: Vec<Vec<(usize, ClientSpec)>> = vec![Vec::new(); threads];
    for (i, spec) in specs.into_iter().enumerate() {
        shares[i % threads].push((i, spec));
    }
    let t0 = Instant::now();
    let handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let scenario = scenario.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async {
                    let tasks: Vec<_> = share
                        .into_iter()
                        .map(|(i, spec)| {
                            let scenario = scenario.clone();
                            let task = tokio::task::spawn_local(boot(
                                server, spec, scenario, t0, deadline,
                            ));
                            (i, task)
                        })
                        .collect();
                    let mut out = Vec::new();
                    for (i, task) in tasks {
                        out.push((i, task.await.expect("a board panicked")));
                    }
                    out
                })
            })
        })
        .collect();
    let mut boards: Vec<(usize, BoardReport)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("a board thread panicked"))
        .collect();
    boards.sort_by_key(|(i, _)| *i);
    boards.into_iter().map(|(_, b)| b).collect()
}

fn main() {
    // `cargo bench` runs every bench target with `--bench`; this one needs
    // a server, so it only says how it is run.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args == ["--bench"] {
        eprintln!(
            "boot-storm-boards: run through benches/boot-storm.sh (see --help); \
             nothing to do on its own"
        );
        return;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Stage {
            root,
            boards,
            scenario,
        } => load(&scenario, boards).and_then(|s| stage(&root, &s)),
        Command::Run {
            server,
            boards,
            scenario: path,
            spread_ms,
            deadline_s,
            threads,
        } => load(&path, boards).and_then(|scenario| {
            let board = run(
                server,
                scenario,
                Duration::from_millis(spread_ms),
                Duration::from_secs(deadline_s),
                threads,
            );
            let report = Report {
                server,
                scenario: std::fs::canonicalize(&path)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
                boards,
                spread_ms,
                deadline_s,
                threads,
                done: board.iter().filter(|b| b.done).count(),
                wall_s: board.iter().map(|b| b.ended_s).fold(0.0, f64::max),
                board,
            };
            serde_json::to_string_pretty(&report)
                .map(|json| println!("{json}"))
                .map_err(|e| e.to_string())
        }),
    };
    if let Err(e) = result {
        eprintln!("boot-storm-boards: {e}");
        std::process::exit(2);
    }
}
