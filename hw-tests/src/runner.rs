//! Runs one scenario on one board: stage the scenario's files, serve them
//! over the raw link with the scenario's faults, power-cycle the board,
//! watch the server's transfers and the console, and judge the run with
//! the same [`judge`] the simulator uses.
//!
//! # What a scenario's client means on hardware
//!
//! In the simulator a client profile *emulates* the board; here the board
//! *is* the client. So a scenario runs on a board only if it has exactly
//! one client, whose profile is the board's `profile` and whose options
//! (where the scenario names them) are the board's `options`; the client's
//! actions are the transfers the board must make, in that order, and each
//! action's `expect` is checked against the server's record of that
//! transfer. Anything else (two clients, another profile, a crash or
//! restart event) is an error before the board is touched, never a skip.
//! Sleep actions and the client's retry timing are the firmware's own and
//! are not checked; partition and heal events cut the link in both
//! directions at their time after power-on.
//!
//! A `uefi-pxe` board's `get` is two transfers, as in the simulator:
//! EDK2's PXE base code first asks the file's size (RRQ with `tsize 0`,
//! ended by the board with ERROR 8 once the OACK arrives), then reads the
//! file with a second RRQ from a new port. The runner tells the probe by
//! its request ([`size_probes`]): it is part of the action, and the read
//! after it is the action's outcome. A probe whose ERROR 8 was lost ends
//! in the server's timeout, which `[expect] server_timeouts` must allow,
//! as in the simulator.
//!
//! "Intact" on hardware means the server sent every block and the board
//! acknowledged the last one, or only that final ACK never came (RFC
//! 1350's lost final ACK: the simulator passes the same loss). That the bytes landed right in the board's
//! memory is the board's to show: a console `success` marker with
//! `{crc32:NAME}` or `{sha256:NAME}` checks it.

use crate::boards::{Board, Console};
use crate::console::ConsoleTap;
use crate::link::{LinkStats, RawLink};
use crate::pcap::PcapWriter;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tftplab::options::Direction;
use tftplab::proto::TransferError;
use tftplab::runtime::{serve, ServerEvent, ServerOptions};
use tftplab::store::{Store, StoreConfig};
use tftplab_sim::lab::check::{judge, served_bytes, RunRecord, Verdict};
use tftplab_sim::lab::content::stage;
use tftplab_sim::lab::profile::{ActionResult, Got};
use tftplab_sim::lab::scenario::{
    Action, ActionKind, ClientSpec, Profile, Scenario, TimedEventKind,
};
use tftplab_sim::lab::setup;
use tftplab_sim::lab::trace::{render_text, Trace};

/// How the runner runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Seeds the fault injectors (the same seed gives the same sequence of
    /// fates; on hardware, timing still varies).
    pub seed: u64,
    /// Where pcap, trace and console files go.
    pub out_dir: PathBuf,
    /// Apply the scenario's faults (off: a clean run of the same file,
    /// to see the board boot before making it hard).
    pub faults: bool,
}

/// One board, one scenario: what happened and the verdict.
#[derive(Debug, Clone)]
pub struct HwRun {
    pub board: String,
    pub scenario: String,
    pub verdict: Verdict,
    pub record: RunRecord,
    /// Failures outside the scenario's expectations: power, console, setup.
    pub problems: Vec<String>,
    pub link: LinkStats,
    pub pcap: PathBuf,
    pub trace_file: PathBuf,
    pub console_log: Option<PathBuf>,
    /// Transfers the board made that no action asked for, one line each.
    pub extra_transfers: Vec<String>,
    /// The scenario's actions that are transfers (sleeps not counted).
    pub actions: usize,
}

impl HwRun {
    pub fn passed(&self) -> bool {
        self.verdict.passed() && self.problems.is_empty()
    }

    /// Every failure, scenario ones first.
    pub fn failures(&self) -> Vec<String> {
        let mut all = self.verdict.failures.clone();
        all.extend(self.problems.iter().cloned());
        all
    }
}

/// The scenario's one client, if the scenario can run on `board`; else
/// why not, in one line.
pub fn check_compatible<'a>(
    board: &Board,
    scenario: &'a Scenario,
) -> Result<&'a ClientSpec, String> {
    let whose = format!("scenario {} on board {}", scenario.name, board.name);
    let [spec] = scenario.clients.as_slice() else {
        return Err(format!(
            "{whose}: the scenario has {} clients; on hardware the board is the one client",
            scenario.clients.len()
        ));
    };
    if spec.profile != board.profile {
        return Err(format!(
            "{whose}: the scenario's client is {} but the board runs {} (boards file `profile`)",
            spec.profile.name(),
            board.profile.name()
        ));
    }
    let (want, have) = (spec.options, board.options);
    let mismatch = |what: &str, w: Option<u16>, h: Option<u16>| match w {
        Some(w) if Some(w) != h => Err(format!(
            "{whose}: the scenario's client asks {what} {w} but the board's options say {}",
            h.map_or("nothing".to_string(), |h| h.to_string())
        )),
        _ => Ok(()),
    };
    mismatch("blksize", want.blksize, have.blksize)?;
    mismatch("windowsize", want.windowsize, have.windowsize)?;
    mismatch(
        "timeout",
        want.timeout.map(u16::from),
        have.timeout.map(u16::from),
    )?;
    if (want.tsize && !have.tsize) || (want.netascii && !have.netascii) {
        return Err(format!(
            "{whose}: the scenario's client options (tsize, netascii) are not the board's"
        ));
    }
    if let Some(e) = scenario
        .events
        .iter()
        .find(|e| matches!(e.kind, TimedEventKind::Crash | TimedEventKind::Restart))
    {
        return Err(format!(
            "{whose}: a server crash or restart event (at {:?}) runs in the simulator only",
            e.at
        ));
    }
    Ok(spec)
}

/// Problems with the board's requests as seen on the wire: a board whose
/// RRQs do not carry what its profile asks is not the board the scenario
/// was written for (`tftplab_sim::lab::scenario::Profile` has each profile's habits).
pub fn check_requests(spec: &ClientSpec, requests: &[Vec<u8>]) -> Vec<String> {
    use tftplab::wire::Packet;
    let mut problems = Vec::new();
    for datagram in requests {
        let Ok(Packet::Rrq(r)) = Packet::parse(datagram) else {
            continue;
        };
        let get = |name: &str| {
            r.options
                .iter()
                .find(|o| o.name.eq_ignore_ascii_case(name.as_bytes()))
                .map(|o| String::from_utf8_lossy(o.value).into_owned())
        };
        let want = |name: &str, value: Option<u16>| -> Result<(), String> {
            let have = get(name);
            match value {
                Some(v) if have.as_deref() != Some(v.to_string().as_str()) => Err(format!(
                    "{name} {v}, not {}",
                    have.as_deref().unwrap_or("none")
                )),
                None if have.is_some() => Err(format!(
                    "no {name}, not {name} {}",
                    have.unwrap_or_default()
                )),
                _ => Ok(()),
            }
        };
        let o = spec.options;
        let checked = match spec.profile {
            Profile::Legacy if !r.options.is_empty() => Err("no options at all".to_string()),
            Profile::Legacy => Ok(()),
            Profile::Rpi4Bootloader => want("blksize", Some(1024))
                .and_then(|()| get("tsize").map(|_| ()).ok_or_else(|| "tsize".to_string())),
            Profile::UBoot => want("windowsize", o.windowsize.filter(|&w| w > 1)).and_then(|()| {
                get("blksize")
                    .map(|_| ())
                    .ok_or_else(|| "blksize".to_string())
            }),
            Profile::UefiPxe => get("blksize")
                .map(|_| ())
                .ok_or_else(|| "blksize".to_string()),
            // tftp_send_rrq: blksize (1432 unless configured), tsize 0.
            Profile::Ipxe => get("blksize")
                .map(|_| ())
                .ok_or_else(|| "blksize".to_string())
                .and_then(|()| get("tsize").map(|_| ()).ok_or_else(|| "tsize".to_string())),
            Profile::Custom => want("blksize", o.blksize)
                .and_then(|()| want("windowsize", o.windowsize))
                .and_then(|()| want("timeout", o.timeout.map(u16::from))),
        };
        if let Err(expected) = checked {
            let problem = format!(
                "the board's RRQ for {:?} does not fit the {} profile: expected {expected}",
                r.filename,
                spec.profile.name()
            );
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
    }
    problems
}

/// A `uefi-pxe` board's size probes: (sender, file name) of every RRQ that
/// asked `tsize`. EDK2 asks `tsize` only in the probe
/// (`PxeBcMtftp4GetFileSize`), never in the read that follows it
/// (`PxeBcMtftp4ReadFile`), so the server's transfer with that peer and
/// name is the probe. Empty for other profiles, whose every transfer
/// counts.
pub fn size_probes(
    spec: &ClientSpec,
    requests: &[(SocketAddr, Vec<u8>)],
) -> BTreeSet<(SocketAddr, String)> {
    use tftplab::wire::Packet;
    if spec.profile != Profile::UefiPxe {
        return BTreeSet::new();
    }
    requests
        .iter()
        .filter_map(|(from, datagram)| match Packet::parse(datagram) {
            Ok(Packet::Rrq(r))
                if r.options
                    .iter()
                    .any(|o| o.name.eq_ignore_ascii_case(b"tsize")) =>
            {
                Some((*from, norm(r.filename).to_string()))
            }
            _ => None,
        })
        .collect()
}

/// The scenario's server on the board's link: the lab's setup, with
/// blocks no larger than one frame (no IP fragmentation on the raw link;
/// the server negotiates blksize down).
fn server_setup(scenario: &Scenario, board: &Board, root: &Path) -> (StoreConfig, ServerOptions) {
    let bind = SocketAddr::from((board.server_ip, 69));
    let (store, mut options) = setup::server_setup(scenario, root, bind);
    let limits = &mut options.transfer.limits;
    limits.max_blksize = limits.max_blksize.min(board.max_blksize());
    (store, options)
}

/// The client's actions that are transfers (sleeps are the firmware's own).
fn transfers(spec: &ClientSpec) -> usize {
    spec.actions
        .iter()
        .filter(|a| !matches!(a.kind, ActionKind::Sleep(_)))
        .count()
}

/// A file name as the board may ask for it: without leading slashes.
fn norm(name: &str) -> &str {
    name.trim_start_matches('/')
}

/// The first line of a command's complaint, for a one-line error.
fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Runs one power command with the board's variables set; it must exit 0
/// within the board's power timeout.
pub async fn power(
    board: &Board,
    what: &str,
    command: &str,
    scenario: &Path,
    run_dir: &Path,
) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("TFTPLAB_BOARD", &board.name)
        .env("TFTPLAB_BOARD_IP", board.board_ip.to_string())
        .env("TFTPLAB_SERVER_IP", board.server_ip.to_string())
        .env("TFTPLAB_SCENARIO", scenario)
        .env("TFTPLAB_RUN_DIR", run_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("board {}: power {what}: cannot run sh: {e}", board.name))?;
    let pid = child.id();
    match tokio::time::timeout(board.power.timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!(
            "board {}: power {what} `{command}` failed ({}): {}",
            board.name,
            out.status,
            first_line(&out.stderr)
        )),
        Ok(Err(e)) => Err(format!("board {}: power {what}: {e}", board.name)),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) on the process group this call started.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            Err(format!(
                "board {}: power {what} `{command}` did not finish within {:?} (a command that starts something long-running must put it in the background)",
                board.name, board.power.timeout
            ))
        }
    }
}

/// Power-cycles `board`: its `cycle` command, or `off`, 2 s, `on`.
pub async fn power_cycle(board: &Board, scenario: &Path, run_dir: &Path) -> Result<(), String> {
    let p = &board.power;
    if let Some(cycle) = &p.cycle {
        return power(board, "cycle", cycle, scenario, run_dir).await;
    }
    if let Some(off) = &p.off {
        power(board, "off", off, scenario, run_dir).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    power(board, "on", &p.on, scenario, run_dir).await
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// CRC-32 (IEEE 802.3, as U-Boot's `crc32` and zlib compute it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    !bytes.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// Fills `{crc32:NAME}`, `{sha256:NAME}` and `{size:NAME}` from the
/// scenario's files, and `{server_ip}` / `{board_ip}` from the board.
pub fn expand(text: &str, scenario: &Scenario, board: &Board) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let key = &rest[start + 1..start + len];
        let value = match key.split_once(':') {
            None if key == "server_ip" => Some(board.server_ip.to_string()),
            None if key == "board_ip" => Some(board.board_ip.to_string()),
            Some((kind @ ("crc32" | "sha256" | "size"), name)) => {
                let bytes = served_bytes(scenario, name)
                    .ok_or_else(|| format!("`{{{key}}}`: the scenario serves no file {name:?}"))?;
                Some(match kind {
                    "crc32" => format!("{:08x}", crc32(&bytes)),
                    "sha256" => sha256_hex(&bytes),
                    _ => bytes.len().to_string(),
                })
            }
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[start..start + len + 1]),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A server event with its time since power-on.
type Seen = (Duration, ServerEvent);

/// Server transfers that finished with an error `matches` accepts.
fn count_finished(seen: &[Seen], matches: impl Fn(&TransferError) -> bool) -> u64 {
    seen.iter()
        .filter(
            |(_, e)| matches!(e, ServerEvent::Finished { result: Err(err), .. } if matches(err)),
        )
        .count() as u64
}

/// Pairs each action with the server's record of it, in order. Transfers
/// in `probes` ([`size_probes`]) are part of their action, never its
/// outcome.
fn match_actions(
    spec: &ClientSpec,
    events: &[Seen],
    root: &Path,
    probes: &BTreeSet<(SocketAddr, String)>,
) -> (Vec<ActionResult>, Vec<bool>) {
    let is_probe = |e: &ServerEvent| match e {
        ServerEvent::Finished {
            peer,
            filename,
            direction: Direction::Read,
            ..
        } => probes.contains(&(*peer, norm(filename).to_string())),
        _ => false,
    };
    let named = |e: &ServerEvent| match e {
        ServerEvent::Finished { filename, .. } => spec.actions.iter().any(
            |a| matches!(&a.kind, ActionKind::Get { name, .. } if norm(name) == norm(filename)),
        ),
        _ => false,
    };
    // A probe of a file an action asks for is that action's; one of a
    // file nobody asked for is listed with the other extra transfers.
    let mut used: Vec<bool> = events
        .iter()
        .map(|(_, e)| is_probe(e) && named(e))
        .collect();
    let mut results = Vec::new();
    let mut cursor = 0;
    for (index, action) in spec.actions.iter().enumerate() {
        let (name, reading, probe) = match &action.kind {
            ActionKind::Get { name, probe } => (name, true, *probe),
            ActionKind::Put { name, .. } => (name, false, false),
            ActionKind::Sleep(_) => continue,
        };
        let found = events
            .iter()
            .enumerate()
            .skip(cursor)
            .filter(|(_, (_, e))| !is_probe(e))
            .find_map(|(j, (at, e))| {
                let got = outcome(e, norm(name), reading, probe, root)?;
                Some((j, *at, got))
            });
        let Some((j, at, got)) = found else {
            break;
        };
        used[j] = true;
        cursor = j + 1;
        results.push(result(spec, index, action, got, at));
    }
    (results, used)
}

fn result(
    spec: &ClientSpec,
    index: usize,
    action: &Action,
    got: Got,
    at: Duration,
) -> ActionResult {
    ActionResult {
        client: spec.name.clone(),
        index,
        action: action.clone(),
        got,
        ended_at: at,
    }
}

/// What the board got from a transfer, if `event` ends one for `name` in
/// the right direction.
fn outcome(
    event: &ServerEvent,
    name: &str,
    reading: bool,
    probe: bool,
    root: &Path,
) -> Option<Got> {
    match event {
        ServerEvent::Refused {
            filename: Some(f),
            code,
            message,
            ..
        } if norm(f) == name => Some(Got::ServerError(code.0, message.clone())),
        ServerEvent::Finished {
            filename,
            direction,
            result,
            ..
        } if norm(filename) == name && (*direction == Direction::Read) == reading => {
            Some(match result {
                Ok(_) if reading => Got::Done {
                    bytes: std::fs::read(root.join(name)).unwrap_or_default(),
                },
                Ok(_) => Got::Done { bytes: Vec::new() },
                Err(TransferError::Peer { .. }) if probe => Got::Probed,
                Err(TransferError::Peer { code, message }) => Got::Local(code.0, message.clone()),
                // Every block went out and only the final ACK never came:
                // firmware that sends it once (EDK2, U-Boot, iPXE) has the
                // file when the network loses it, as in the simulator,
                // where the same loss is a pass. The console's markers
                // prove the bytes.
                Err(TransferError::Unconfirmed { .. }) if reading => Got::Done {
                    bytes: std::fs::read(root.join(name)).unwrap_or_default(),
                },
                Err(TransferError::TimedOut { .. } | TransferError::Unconfirmed { .. }) => {
                    Got::TimedOut
                }
                Err(TransferError::Local { code, message }) => {
                    Got::ServerError(code.0, message.clone())
                }
            })
        }
        _ => None,
    }
}

fn describe_event(e: &ServerEvent) -> Option<String> {
    match e {
        ServerEvent::Refused { filename, code, .. } => Some(format!(
            "{} refused with ERROR {}",
            filename.as_deref().unwrap_or("a request"),
            code.0
        )),
        ServerEvent::Finished {
            filename, result, ..
        } => Some(match result {
            Ok(s) => format!("{filename} ({} bytes)", s.bytes),
            Err(err) => format!("{filename} ({err})"),
        }),
        ServerEvent::Started { .. } => None,
    }
}

fn file_stem(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The console's expectations with placeholders filled.
struct Watch {
    script: Vec<(String, String)>,
    success: Vec<String>,
    failure: Option<String>,
}

fn watch_for(console: &Console, scenario: &Scenario, board: &Board) -> Result<Watch, String> {
    let script = console
        .script
        .iter()
        .map(|s| {
            Ok((
                expand(&s.expect, scenario, board)?,
                expand(&s.send, scenario, board)?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let success = console
        .success
        .iter()
        .map(|s| expand(s, scenario, board))
        .collect::<Result<Vec<_>, String>>()?;
    let failure = console
        .failure
        .as_deref()
        .map(|s| expand(s, scenario, board))
        .transpose()?;
    Ok(Watch {
        script,
        success,
        failure,
    })
}

/// `scenario` as it runs on `board`: its client takes the board's serial
/// and MAC, so `{serial}` and `{mac}` in its file names are the board's.
pub fn for_board(board: &Board, scenario: &Scenario) -> Result<Scenario, String> {
    let mut s = scenario.clone();
    if let [spec] = s.clients.as_slice() {
        let name = spec.name.clone();
        s.set_board_ids(&name, board.serial, board.board_mac.map(|m| m.0))
            .map_err(|e| format!("board {}: {e}", board.name))?;
    }
    Ok(s)
}

/// Runs `scenario` on `board` (which [`check_compatible`] accepted).
pub async fn run_one(board: &Board, scenario: &Scenario, opts: &RunOptions) -> HwRun {
    let stem = file_stem(&format!("{}-{}", board.name, scenario.name));
    let mut run = HwRun {
        board: board.name.clone(),
        scenario: scenario.name.clone(),
        verdict: Verdict::default(),
        record: RunRecord::default(),
        problems: Vec::new(),
        link: LinkStats::default(),
        pcap: opts.out_dir.join(format!("{stem}.pcap")),
        trace_file: opts.out_dir.join(format!("{stem}.trace")),
        console_log: board
            .console
            .as_ref()
            .map(|_| opts.out_dir.join(format!("{stem}.console.log"))),
        extra_transfers: Vec::new(),
        actions: scenario.clients.iter().map(transfers).sum(),
    };
    let outcome = match for_board(board, scenario) {
        Ok(scenario) => run_inner(board, &scenario, opts, &mut run).await,
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        run.problems.push(e);
    }
    run
}

async fn run_inner(
    board: &Board,
    scenario: &Scenario,
    opts: &RunOptions,
    run: &mut HwRun,
) -> Result<(), String> {
    let spec = check_compatible(board, scenario)?;
    let watch = board
        .console
        .as_ref()
        .map(|c| watch_for(c, scenario, board))
        .transpose()
        .map_err(|e| format!("board {} console: {e}", board.name))?;
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| format!("{}: {e}", opts.out_dir.display()))?;
    let root = tempfile::tempdir().map_err(|e| format!("temporary root: {e}"))?;
    stage(scenario, root.path(), None)?;
    let pcap = PcapWriter::create(&run.pcap).map_err(|e| format!("pcap: {e}"))?;
    let trace = Trace::new();
    let faults = if opts.faults {
        scenario.faults.clone()
    } else {
        tftplab_sim::lab::FaultPlan::default()
    };
    let (link, link_handle) =
        RawLink::open(board.link_config(faults, opts.seed, Some(pcap), trace.clone()))
            .map_err(|e| format!("board {}: {e}", board.name))?;
    let (store_cfg, options) = server_setup(scenario, board, root.path());
    let store = Arc::new(Store::new(store_cfg).map_err(|e| format!("store: {e}"))?);
    let server = serve(link.clone(), store, options)
        .await
        .map_err(|e| format!("serving on {}: {e}", board.server_ip))?;
    let mut events = server.subscribe();

    let started = Instant::now();
    let console_limit = board.console.as_ref().map_or(Duration::ZERO, |c| c.timeout);
    let limit = scenario.expect.within.max(console_limit);
    let mut console = match (&board.console, &run.console_log) {
        (Some(c), Some(log)) => {
            Some(ConsoleTap::open(c, log, started + limit).map_err(|e| format!("console: {e}"))?)
        }
        _ => None,
    };
    let scenario_path = scenario.path.clone();
    let powered = power_cycle(board, &scenario_path, &opts.out_dir).await;
    let mut seen: Vec<Seen> = Vec::new();
    let mut timed = scenario.events.iter().peekable();
    let mut console_verdict: Option<Result<(), String>> = None;
    if let Err(e) = powered {
        run.problems.push(e);
    } else {
        loop {
            let now = started.elapsed();
            while let Some(e) = timed.next_if(|e| e.at <= now) {
                match e.kind {
                    TimedEventKind::Partition(_) => link.set_partitioned(true),
                    TimedEventKind::Heal(_) => link.set_partitioned(false),
                    TimedEventKind::Crash | TimedEventKind::Restart => {}
                }
            }
            if let (Some(tap), Some(w)) = (console.as_mut(), watch.as_ref()) {
                if let Err(e) = tap.advance(&w.script) {
                    console_verdict = Some(Err(format!("console script: {e}")));
                    break;
                }
                let text = tap.text();
                if let Some(f) = w.failure.as_deref().filter(|f| text.contains(f)) {
                    console_verdict = Some(Err(format!("console showed the failure marker {f:?}")));
                    break;
                }
                if !w.success.is_empty() && w.success.iter().all(|s| text.contains(s.as_str())) {
                    console_verdict = Some(Ok(()));
                }
            }
            let probes = size_probes(spec, &link.requests_with_source());
            let (matched, _) = match_actions(spec, &seen, root.path(), &probes);
            let all_actions = matched.len() == transfers(spec);
            let console_done = watch
                .as_ref()
                .is_none_or(|w| w.success.is_empty() || console_verdict.is_some());
            if all_actions && console_done {
                break;
            }
            if now >= limit {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(50), events.recv()).await {
                Ok(Ok(e)) => seen.push((started.elapsed(), e)),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    run.problems.push(format!(
                        "{n} server events were lost (the runner fell behind)"
                    ));
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
                Err(_) => {}
            }
        }
    }
    // Let transfers that lost their last ACK finish or give up, as the
    // simulator does, then collect what came in meanwhile.
    let settle = scenario.server.timeout * (scenario.server.retries + 2);
    let settle_until = Instant::now() + settle;
    while server.stats().active > 0 && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while let Ok(e) = events.try_recv() {
        seen.push((started.elapsed(), e));
    }
    let elapsed = started.elapsed();
    let stats = server.stats();
    server.stop(Duration::from_secs(1)).await;
    if let Some(off) = &board.power.off {
        if let Err(e) = power(board, "off", off, &scenario_path, &opts.out_dir).await {
            run.problems.push(e);
        }
    }
    let mut console_text = None;
    if let Some(tap) = console.take() {
        if let Some(e) = tap.error() {
            run.problems.push(e);
        }
        console_text = Some(tap.close());
    }
    run.link = link.stats();
    let requests = link.requests_with_source();
    let probes = size_probes(spec, &requests);
    let requests: Vec<Vec<u8>> = requests.into_iter().map(|(_, d)| d).collect();
    run.problems.extend(check_requests(spec, &requests));
    link_handle.close();
    match (&watch, console_verdict) {
        (_, Some(Err(e))) => run.problems.push(e),
        (Some(w), None) if !w.success.is_empty() => {
            let text = console_text.as_deref().unwrap_or("");
            let missing: Vec<&String> = w
                .success
                .iter()
                .filter(|s| !text.contains(s.as_str()))
                .collect();
            run.problems.push(format!(
                "console: {missing:?} did not appear within {:.0}s",
                limit.as_secs_f64()
            ));
        }
        _ => {}
    }

    let (results, used) = match_actions(spec, &seen, root.path(), &probes);
    run.extra_transfers = seen
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .filter_map(|((_, e), _)| describe_event(e))
        .collect();
    let events = trace.events();
    let complete = results.len() == transfers(spec);
    let mut uploaded = BTreeMap::new();
    for a in &spec.actions {
        if let ActionKind::Put { name, .. } = &a.kind {
            uploaded.insert(
                name.clone(),
                std::fs::read(root.path().join(norm(name))).ok(),
            );
        }
    }
    run.record = RunRecord {
        unfinished: if complete {
            Vec::new()
        } else {
            vec![spec.name.clone()]
        },
        server_active: stats.active,
        server_timeouts: count_finished(&seen, |e| matches!(e, TransferError::TimedOut { .. })),
        server_unconfirmed: count_finished(&seen, |e| {
            matches!(e, TransferError::Unconfirmed { .. })
        }),
        datagrams: events.len() as u64,
        dropped: events
            .iter()
            .filter(|e| matches!(e.fate, tftplab_sim::lab::trace::TraceFate::Dropped { .. }))
            .count() as u64,
        elapsed,
        uploaded,
        results,
    };
    if !complete {
        let missing = spec
            .actions
            .iter()
            .filter(|a| !matches!(a.kind, ActionKind::Sleep(_)))
            .nth(run.record.results.len());
        if let Some(a) = missing {
            run.problems.push(format!(
                "{}:{}: the board never finished this action (no matching transfer in the server's events)",
                scenario.path.display(),
                a.line
            ));
        }
    }
    run.verdict = judge(scenario, &run.record);
    std::fs::write(&run.trace_file, render_text(&events))
        .map_err(|e| format!("{}: {e}", run.trace_file.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use tftplab::proto::{Counters, Summary};
    use tftplab::wire::ErrorCode;

    fn board(port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 78, 0, 2), port))
    }

    fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
        let mut d = vec![0, 1];
        for part in [name, "octet"]
            .into_iter()
            .chain(options.iter().flat_map(|(n, v)| [*n, *v]))
        {
            d.extend_from_slice(part.as_bytes());
            d.push(0);
        }
        d
    }

    fn finished(port: u16, name: &str, result: Result<Summary, TransferError>) -> Seen {
        let e = ServerEvent::Finished {
            id: u64::from(port),
            peer: board(port),
            filename: name.into(),
            direction: Direction::Read,
            result,
            counters: Counters::default(),
        };
        (Duration::from_millis(u64::from(port)), e)
    }

    fn ok() -> Result<Summary, TransferError> {
        Ok(Summary {
            bytes: 5,
            blocks: 1,
            retransmissions: 0,
            duration: Duration::ZERO,
            negotiated: Default::default(),
        })
    }

    fn abort8() -> Result<Summary, TransferError> {
        Err(TransferError::Peer {
            code: ErrorCode(8),
            message: "User aborted the transfer".into(),
        })
    }

    fn client(profile: &str) -> (Scenario, tempfile::TempDir) {
        let text = format!(
            "[[files]]\nname = \"a.efi\"\ncontent = \"hello\"\n\n[[clients]]\nname = \"b\"\nprofile = \"{profile}\"\nactions = [{{ get = \"a.efi\" }}, {{ get = \"b.cfg\", expect = 1 }}]\n"
        );
        let s = Scenario::parse(&text, Path::new("t.toml")).expect("scenario");
        let root = tempfile::tempdir().expect("root");
        stage(&s, root.path(), None).expect("stage");
        (s, root)
    }

    /// `{serial}` and `{mac}` in a scenario are the board's own on
    /// hardware: its files are staged and its actions judged under them.
    #[test]
    fn a_scenario_takes_the_boards_serial_and_mac() {
        let inv = crate::boards::Inventory::parse(include_str!("../boards.example.toml"))
            .expect("example inventory");
        let board = inv.select("name=rpi4-a").expect("rpi4-a")[0].clone();
        assert_eq!(board.serial, Some(0x9ffe_fdef));
        let text = "[[files]]\nname = \"{serial}/start4.elf\"\ncontent = \"elf\"\n\n\
                    [[files]]\nname = \"{mac}.cfg\"\ncontent = \"cfg\"\n\n\
                    [[clients]]\nname = \"rpi4\"\nprofile = \"rpi4-bootloader\"\n\
                    actions = [{ get = \"{serial}/start4.elf\" }, { get = \"{mac}.cfg\" }]\n";
        let s = Scenario::parse(text, Path::new("t.toml")).expect("scenario");
        let s = for_board(&board, &s).expect("for the board");
        let root = tempfile::tempdir().expect("root");
        stage(&s, root.path(), None).expect("stage");
        assert_eq!(
            std::fs::read(root.path().join("9ffefdef/start4.elf")).expect("staged"),
            b"elf"
        );
        assert!(root.path().join("dc-a6-32-01-02-03.cfg").exists());
        let asked: Vec<String> = s.clients[0]
            .actions
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        assert!(asked[0].contains("9ffefdef/start4.elf"), "{asked:?}");
    }

    /// A read whose final ACK never came has the file on the board (the
    /// console proves the bytes), as the simulator judges the same loss; a
    /// read that died midway is a timeout.
    #[test]
    fn a_read_unconfirmed_only_for_its_final_ack_is_intact() {
        let root = tempfile::tempdir().expect("root");
        std::fs::write(root.path().join("a.efi"), b"hello").expect("file");
        let event = |result| finished(1, "a.efi", result).1;
        let unconfirmed = event(Err(TransferError::Unconfirmed { retries: 5 }));
        assert!(matches!(
            outcome(&unconfirmed, "a.efi", true, false, root.path()),
            Some(Got::Done { bytes }) if bytes == b"hello"
        ));
        let died = event(Err(TransferError::TimedOut { retries: 5 }));
        assert!(matches!(
            outcome(&died, "a.efi", true, false, root.path()),
            Some(Got::TimedOut)
        ));
    }

    /// EDK2's requests: a probe asks tsize from one port, the read from the
    /// next does not; the missing file's probe is refused.
    fn edk2_requests() -> Vec<(SocketAddr, Vec<u8>)> {
        let probe = [("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")];
        let read = [("blksize", "1468"), ("windowsize", "4")];
        vec![
            (board(1042), rrq("a.efi", &probe)),
            (board(1043), rrq("a.efi", &read)),
            (board(1044), rrq("b.cfg", &probe)),
        ]
    }

    fn refused_b() -> Seen {
        let e = ServerEvent::Refused {
            peer: board(1044),
            filename: Some("b.cfg".into()),
            code: ErrorCode(1),
            message: "File not found".into(),
        };
        (Duration::from_secs(2), e)
    }

    fn kinds(results: &[ActionResult]) -> Vec<String> {
        results
            .iter()
            .map(|r| match &r.got {
                Got::Done { bytes } => format!("done {}", String::from_utf8_lossy(bytes)),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_uefi_pxe_get_is_its_size_probe_then_the_read() {
        let (s, root) = client("uefi-pxe");
        let spec = &s.clients[0];
        let probes = size_probes(spec, &edk2_requests());
        assert_eq!(
            probes,
            BTreeSet::from([(board(1042), "a.efi".into()), (board(1044), "b.cfg".into())])
        );
        // The board's ERROR 8 reached the server: the probe ends first.
        let events = [
            finished(1042, "a.efi", abort8()),
            finished(1043, "a.efi", ok()),
            refused_b(),
        ];
        let (results, used) = match_actions(spec, &events, root.path(), &probes);
        assert_eq!(
            kinds(&results),
            ["done hello", "ServerError(1, \"File not found\")"]
        );
        assert_eq!(used, [true, true, true], "the probe is part of the action");
        // The ERROR 8 was lost: the server's probe times out, before or
        // after the read; the read is still the action's outcome.
        let timeout = || Err(TransferError::TimedOut { retries: 5 });
        for events in [
            [
                finished(1042, "a.efi", timeout()),
                finished(1043, "a.efi", ok()),
                refused_b(),
            ],
            [
                finished(1043, "a.efi", ok()),
                finished(1042, "a.efi", timeout()),
                refused_b(),
            ],
        ] {
            let (results, used) = match_actions(spec, &events, root.path(), &probes);
            assert_eq!(kinds(&results)[0], "done hello");
            assert_eq!(used, [true, true, true]);
        }
    }

    #[test]
    fn other_profiles_have_no_size_probes() {
        // The rpi4 asks tsize in its real reads: every transfer counts, so a
        // board that aborts its read fails the action.
        let (s, root) = client("rpi4-bootloader");
        let spec = &s.clients[0];
        assert!(size_probes(spec, &edk2_requests()).is_empty());
        let events = [
            finished(1042, "a.efi", abort8()),
            finished(1043, "a.efi", ok()),
        ];
        let (results, _) = match_actions(spec, &events, root.path(), &BTreeSet::new());
        assert_eq!(kinds(&results), ["Local(8, \"User aborted the transfer\")"]);
    }
}
