//! Running a scenario on a QEMU stand-in board ([`super::qemu`]) the two
//! ways its tests do: clean through the command line (`tftplab-hw run
//! --no-faults`, with JUnit), and with the scenario's faults through the
//! library, next to the simulator running the same file with the same seed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tftplab_hw::boards::Board;
use tftplab_hw::runner::{run_one, HwRun, RunOptions};
use tftplab_sim::lab::profile::{ActionResult, Got};
use tftplab_sim::lab::scenario::Scenario;
use tftplab_sim::SimRun;

/// A path in the repository, from its top (`scenarios/x.toml`).
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

pub fn load(rel: &str) -> Scenario {
    Scenario::load(repo(rel)).unwrap_or_else(|e| panic!("{e}"))
}

/// An outcome's kind, comparable across the simulator and the board.
pub fn kind(g: &Got) -> String {
    match g {
        Got::Done { .. } => "intact".into(),
        Got::Probed => "probed".into(),
        Got::ServerError(c, _) => format!("ERROR {c}"),
        Got::TimedOut => "timed out".into(),
        Got::Local(c, _) => format!("client abort {c}"),
    }
}

/// Outcome kinds per action, in order.
pub fn outcomes(results: &[ActionResult]) -> Vec<String> {
    results.iter().map(|r| kind(&r.got)).collect()
}

/// Where a run's pcap, trace and console log go, named as the runner
/// names them (`<board>-<scenario>.pcap`).
pub fn output(run_dir: &Path, board: &str, scenario: &Scenario, ext: &str) -> PathBuf {
    run_dir.join(format!("{board}-{}.{ext}", scenario.name))
}

/// `tftplab-hw run --no-faults` of the scenario at `rel` on the one board
/// `select` picks from `boards`: outputs in `out/<tag>/`, JUnit in
/// `out/<tag>.xml`. Asserts the run passed: exit 0, no failure lines for
/// the board, the summary and the JUnit file say so. Returns what it
/// printed.
pub fn clean_run(
    boards: &Path,
    select: &str,
    board: &str,
    rel: &str,
    out: &Path,
    tag: &str,
) -> String {
    let s = load(rel);
    let run_dir = out.join(tag);
    let junit = out.join(format!("{tag}.xml"));
    let started = Instant::now();
    let result = Command::new(env!("CARGO_BIN_EXE_tftplab-hw"))
        .args(["run", "--boards"])
        .arg(boards)
        .args(["--select", select, "--no-faults", "--out"])
        .arg(&run_dir)
        .arg("--junit")
        .arg(&junit)
        .arg(repo(rel))
        .output()
        .expect("run tftplab-hw");
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&result.stderr);
    println!(
        "== {tag} ({:.1}s)\n{stdout}{stderr}",
        started.elapsed().as_secs_f64()
    );
    let prefix = format!("{board} / {}: ", s.name);
    let failures: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter(|l| !l.starts_with("trace ") && !l.starts_with("console "))
        .collect();
    assert!(result.status.success(), "{tag}:\n{stdout}{stderr}");
    assert!(failures.is_empty(), "{tag}: {failures:?}");
    assert!(stdout.contains("1 runs, 1 passed, 0 failed"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("tests=\"1\" failures=\"0\""), "{xml}");
    stdout
}

/// The scenario with its faults on `board`, seed `seed`, through the
/// library (outputs in `run_dir`), and the simulator with the same seed,
/// which must pass. Prints the board's summary, failures and wall time.
pub fn faulty_run(
    rt: &tokio::runtime::Runtime,
    board: &Board,
    s: &Scenario,
    seed: u64,
    run_dir: &Path,
) -> (HwRun, SimRun) {
    let opts = RunOptions {
        seed,
        out_dir: run_dir.to_path_buf(),
        faults: true,
    };
    let started = Instant::now();
    let run = rt.block_on(run_one(board, s, &opts));
    let table = tftplab_hw::report::summary_table(std::slice::from_ref(&run), run.record.elapsed);
    println!(
        "== {} seed {seed} ({:.1}s)\n{table}{:?}\nextra transfers: {:?}",
        s.name,
        started.elapsed().as_secs_f64(),
        run.failures(),
        run.extra_transfers
    );
    let sim = tftplab_sim::run(s, seed, tftplab_sim::SimOptions::default());
    assert!(
        sim.passed(),
        "simulator, seed {seed}: {:?}",
        sim.verdict.failures
    );
    (run, sim)
}

/// A UDP datagram of a run's pcap: whether the board sent it, its ports,
/// and the TFTP packet as the trace renders it (`RRQ "x" octet tsize=0`).
#[derive(Debug, Clone)]
pub struct Datagram {
    pub from_board: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub text: String,
}

/// The UDP datagrams of a pcap, in order; `board_ip` tells who sent each.
pub fn pcap_datagrams(pcap: &Path, board_ip: &str) -> Vec<Datagram> {
    use tftplab_hw::frame::{parse, Frame};
    let bytes = std::fs::read(pcap).unwrap_or_else(|e| panic!("{}: {e}", pcap.display()));
    let frames = tftplab_hw::pcap::read_frames(&bytes).expect("a pcap file");
    frames
        .iter()
        .filter_map(|f| match parse(f) {
            Frame::Udp(u) => Some(Datagram {
                from_board: u.src_ip.to_string() == board_ip,
                src_port: u.src_port,
                dst_port: u.dst_port,
                text: tftplab_sim::lab::trace::render_packet(u.payload),
            }),
            _ => None,
        })
        .collect()
}
