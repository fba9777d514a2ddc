//! `tftplab-hw`: runs scenario files against real boards. `tftplab-hw
//! --help` is the manual; hw-tests/README.md is the runbook.

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tftplab_hw::boards::{Board, Inventory};
use tftplab_hw::report::{failure_lines, junit, summary_table};
use tftplab_hw::runner::{check_compatible, run_one, RunOptions};
use tftplab_sim::lab::scenario::Scenario;

/// Runs tftplab scenarios against real boards: the tftplab server serves
/// the scenario's files from its own address over a raw link on the
/// board's interface, with the scenario's faults applied to frames, while
/// the board is power-cycled and netboots from it. The same scenario files
/// run in the simulator (tftplab-sim).
///
/// Needs CAP_NET_RAW (run as root, or `setcap cap_net_raw+ep` the binary).
///
/// A scenario that does not fit a board (several clients, another
/// profile, options the board does not send) is skipped for that board
/// with the reason; setup problems (a bad file, a missing interface or
/// namespace, nothing that fits) stop the run before any board is
/// powered.
///
/// Exit status: 0 every run passed; 1 a run failed; 2 nothing ran (bad
/// command line, inventory or scenario, a board's link missing, or no
/// scenario fits the selected boards).
///
/// Examples:
///   tftplab-hw boards --boards lab.toml --select board=rpi4
///   tftplab-hw run --boards lab.toml --select board=rpi4 scenarios/rpi4-netboot.toml
///   tftplab-hw run --boards lab.toml --select board=rpi4 --junit hw.xml --out runs/ hw-tests/scenarios/
///   tftplab-hw store-check --boards lab.toml --select board=rpi4
#[derive(Debug, Parser)]
#[command(name = "tftplab-hw", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Select {
    /// The inventory file (see hw-tests/boards.example.toml).
    #[arg(long, value_name = "FILE")]
    boards: PathBuf,
    /// Labels the boards must carry, comma-separated: board=rpi4,rev=1.4
    /// (name=NAME picks one board). Default: every board.
    #[arg(long, value_name = "LABELS", default_value = "")]
    select: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios on the selected boards and judge each run.
    Run {
        #[command(flatten)]
        select: Select,
        /// Scenario files, or directories of them.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// Seed for the fault injectors.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run without the scenarios' faults (a clean baseline).
        #[arg(long)]
        no_faults: bool,
        /// Where pcap, trace and console logs go.
        #[arg(long, value_name = "DIR", default_value = "target/hw-runs")]
        out: PathBuf,
        /// Write a JUnit XML report here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// No progress lines.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List the boards a selection picks.
    Boards {
        #[command(flatten)]
        select: Select,
    },
    /// The Jumpstarter TFTP example on each selected board: start the
    /// server on the board's link, upload test.bin to the store, check it
    /// is listed with its SHA-256, power-cycle the board and make it fetch
    /// test.bin over its console (boards file `[boards.store_check]`;
    /// U-Boot's tftpboot and crc32 by default), check the server sent it
    /// whole to the board's address and the console shows the board's
    /// byte count and checksum, delete it, check it is gone.
    StoreCheck {
        #[command(flatten)]
        select: Select,
        /// Size of the generated test.bin in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        size: u64,
        /// Where console logs and pcaps go.
        #[arg(long, value_name = "DIR", default_value = "target/hw-runs")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match real_main(Cli::parse().command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("tftplab-hw: {message}");
            ExitCode::from(2)
        }
    }
}

fn selected(select: &Select) -> Result<(Inventory, Vec<String>), String> {
    let inventory = Inventory::load(&select.boards)?;
    let names = inventory
        .select(&select.select)?
        .into_iter()
        .map(|b| b.name.clone())
        .collect();
    Ok((inventory, names))
}

fn board<'a>(inventory: &'a Inventory, name: &str) -> Result<&'a Board, String> {
    inventory
        .boards
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| format!("board {name} vanished from the inventory"))
}

/// Scenario files named, or found (not recursively) in named
/// directories, in path order.
fn load_scenarios(paths: &[PathBuf]) -> Result<Vec<Scenario>, String> {
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let listing = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut found: Vec<PathBuf> = listing
            .flatten()
            .map(|entry| entry.path())
            .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("toml"))
            .collect();
        if found.is_empty() {
            return Err(format!("{}: no .toml scenario files", path.display()));
        }
        found.sort();
        files.append(&mut found);
    }
    files
        .iter()
        .map(|f| Scenario::load(Path::new(f)).map_err(|e| e.to_string()))
        .collect()
}

/// The board's interface exists (in its namespace, if it names one): a
/// setup error found before anything is powered, instead of a failed run
/// after the board was cycled.
fn link_present(b: &Board) -> Result<(), String> {
    let found = match &b.netns {
        None => Path::new("/sys/class/net").join(&b.interface).exists(),
        Some(ns) => std::process::Command::new("ip")
            .args(["-n", ns, "link", "show", "dev", &b.interface])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
    };
    if found {
        return Ok(());
    }
    let place = b
        .netns
        .as_ref()
        .map_or(String::new(), |ns| format!(" in network namespace {ns}"));
    Err(format!(
        "board {}: no interface {}{place}; fix `interface` (or `netns`) in the boards file, \
         or plug in the NIC",
        b.name, b.interface
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn real_main(command: Command) -> Result<bool, String> {
    match command {
        Command::Boards { select } => {
            let (inventory, names) = selected(&select)?;
            for name in names {
                let b = board(&inventory, &name)?;
                println!(
                    "{:<16} {:<40} {} {} board {} server {} ({})",
                    b.name,
                    b.label_text(),
                    b.interface,
                    b.profile.name(),
                    b.board_ip,
                    b.server_ip,
                    if b.console.is_some() {
                        "console"
                    } else {
                        "no console"
                    }
                );
            }
            Ok(true)
        }
        Command::Run {
            select,
            scenarios,
            seed,
            no_faults,
            out,
            junit: junit_file,
            quiet,
        } => {
            let (inventory, names) = selected(&select)?;
            let scenarios = load_scenarios(&scenarios)?;
            // Decided before any board is touched: which pairs fit, and
            // that every board that runs has its link.
            let mut pairs = Vec::new();
            let mut skipped = Vec::new();
            for name in &names {
                let b = board(&inventory, name)?;
                for s in &scenarios {
                    match check_compatible(b, s) {
                        Ok(_) => pairs.push((b, s)),
                        Err(why) => skipped.push(why),
                    }
                }
            }
            for why in &skipped {
                eprintln!("skip: {why}");
            }
            if pairs.is_empty() {
                return Err(format!(
                    "no scenario fits the selected boards ({} skipped, reasons above); \
                     select other boards (--select) or name scenarios written for them",
                    skipped.len()
                ));
            }
            let mut checked = Vec::new();
            for (b, _) in &pairs {
                if !checked.contains(&b.name) {
                    link_present(b)?;
                    checked.push(b.name.clone());
                }
            }
            let opts = RunOptions {
                seed,
                out_dir: out,
                faults: !no_faults,
            };
            let rt = runtime()?;
            let wall = Instant::now();
            let mut runs = Vec::new();
            for (i, (b, s)) in pairs.iter().enumerate() {
                if !quiet {
                    eprintln!(
                        "[{}/{}] {} / {}: power-cycling, serving {}",
                        i + 1,
                        pairs.len(),
                        b.name,
                        s.name,
                        b.server_ip
                    );
                }
                let run = rt.block_on(run_one(b, s, &opts));
                if !quiet {
                    let extra = if run.extra_transfers.is_empty() {
                        String::new()
                    } else {
                        format!("; also: {}", run.extra_transfers.join(", "))
                    };
                    eprintln!(
                        "[{}/{}] {} / {}: {} in {:.1}s, {} datagrams{extra}",
                        i + 1,
                        pairs.len(),
                        b.name,
                        s.name,
                        if run.passed() { "pass" } else { "FAIL" },
                        run.record.elapsed.as_secs_f64(),
                        run.record.datagrams
                    );
                }
                runs.push(run);
            }
            print!("{}", summary_table(&runs, wall.elapsed()));
            if !skipped.is_empty() {
                println!(
                    "{} pair(s) skipped: the scenario does not fit the board (reasons on stderr)",
                    skipped.len()
                );
            }
            print!("{}", failure_lines(&runs));
            if let Some(path) = junit_file {
                std::fs::write(&path, junit(&runs))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(runs.iter().all(|r| r.passed()))
        }
        Command::StoreCheck { select, size, out } => {
            let (inventory, names) = selected(&select)?;
            // Every board must be drivable before any is touched.
            for name in &names {
                tftplab_hw::jumpstarter::fetch_plan(board(&inventory, name)?)?;
            }
            let rt = runtime()?;
            let mut ok = true;
            for name in names {
                let b = board(&inventory, &name)?;
                eprintln!(
                    "{}: serving {} on {}, power-cycling, fetching over the console",
                    b.name,
                    tftplab_hw::jumpstarter::NAME,
                    b.server_ip
                );
                let data = tftplab_sim::lab::scenario::generate(size, 1);
                match rt.block_on(tftplab_hw::jumpstarter::store_check_on_board(
                    b, &data, &out,
                )) {
                    Ok(report) => println!("{}: {report}", b.name),
                    Err(e) => {
                        println!("{}: FAIL: {e}", b.name);
                        ok = false;
                    }
                }
            }
            Ok(ok)
        }
    }
}
