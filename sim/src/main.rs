//! `tftplab-sim`: runs scenario files in a deterministic simulated network.
//! `tftplab-sim --help` is the manual.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tftplab_sim::report::{bench, junit, summary_table, ScenarioRuns};
use tftplab_sim::{load_scenarios, run_many, RunPlan, SimOptions};

/// Runs tftplab scenarios under a deterministic simulated network with
/// loss, duplication, reordering, partitions and crashes. The real server
/// and client run on every simulated host; one seed decides everything, so
/// any failure replays exactly.
///
/// Examples:
///   tftplab-sim run                              # every scenario in scenarios/
///   tftplab-sim run scenarios/rpi4-netboot.toml --seeds 50
///   tftplab-sim run scenarios/rpi4-netboot.toml --seed 17 --trace rpi4.trace
#[derive(Debug, Parser)]
#[command(name = "tftplab-sim", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios for several seeds and judge each run.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario files or directories (default: scenarios/).
    paths: Vec<PathBuf>,
    /// Seeds per scenario (1, 2, ... N).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// Run only this seed (replays a failure).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run everything twice and fail if any trace differs.
    #[arg(long)]
    check_determinism: bool,
    /// Write the text trace of the run here (one line per datagram; needs
    /// exactly one run: one scenario and --seed).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Write the trace as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a Mermaid sequence diagram of the run here (a raw `.mmd`; a
    /// long run shows its first and last 200 datagrams).
    #[arg(long, value_name = "FILE")]
    mermaid: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Parallel simulations (default: number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Simulated time per step, in milliseconds (with --bench, a list:
    /// --tick-ms 1,5).
    #[arg(long, default_value = "1", value_delimiter = ',')]
    tick_ms: Vec<u64>,
    /// Measure speed instead of judging: run each scenario and seed one at a
    /// time on one thread, --repeat times, and print the medians of
    /// simulated seconds and transfers per wall-clock second. Use a release
    /// build.
    #[arg(long)]
    bench: bool,
    /// Step through idle time tick by tick instead of jumping to the next
    /// timer any host has armed (datagrams go out at the same times either
    /// way; what one host does within one millisecond may come in another
    /// order). For comparing speed, and for checking a jump.
    #[arg(long)]
    no_skip: bool,
    /// With --bench: how many times to run each seed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let Command::Run(args) = Cli::parse().command;
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("tftplab-sim: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: RunArgs) -> Result<bool, String> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("scenarios")]
    } else {
        args.paths.clone()
    };
    let scenarios = load_scenarios(&paths)?;
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (1..=args.seeds).collect(),
    };
    let one_run_outputs = [&args.trace, &args.json, &args.mermaid];
    if !args.bench && one_run_outputs.iter().any(|o| o.is_some()) {
        let runs = scenarios.len() * seeds.len();
        if runs != 1 {
            return Err(format!(
                "--trace, --json and --mermaid write one run, and this is {runs}: name one scenario file and one --seed (a failure line prints that command)"
            ));
        }
    }
    if args.bench {
        let ticks: Vec<std::time::Duration> = args
            .tick_ms
            .iter()
            .map(|&t| std::time::Duration::from_millis(t.max(1)))
            .collect();
        print!(
            "{}",
            bench(&scenarios, &seeds, &ticks, args.repeat, !args.no_skip)
        );
        return Ok(true);
    }
    let plan = RunPlan {
        seeds,
        check_determinism: args.check_determinism,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        options: SimOptions {
            tick: std::time::Duration::from_millis(
                args.tick_ms.first().copied().unwrap_or(1).max(1),
            ),
            skip_idle: !args.no_skip,
        },
        progress: !args.quiet,
    };
    let started = Instant::now();
    let runs: Vec<ScenarioRuns> = run_many(&scenarios, &plan);
    let wall = started.elapsed();
    print!("{}", summary_table(&runs, wall));
    let mut ok = true;
    for sr in &runs {
        for r in sr.runs.iter().filter(|r| !r.passed()) {
            ok = false;
            println!("\nFAILED {} seed {}:", sr.scenario.name, r.seed);
            if let Some(e) = &r.sim_error {
                println!("  simulation error: {e}");
            }
            for f in &r.verdict.failures {
                println!("  {f}");
            }
            println!(
                "  replay: cargo run -p tftplab-sim --release -- run {} --seed {} --trace {}-{}.trace",
                sr.scenario.path.display(),
                r.seed,
                sr.scenario.name,
                r.seed
            );
        }
        for d in &sr.nondeterministic {
            ok = false;
            println!(
                "\nNONDETERMINISTIC {} seed {d}: two runs gave different traces",
                sr.scenario.name
            );
        }
    }
    if let Some(last) = runs.last().and_then(|sr| sr.runs.last()) {
        use tftplab_sim::lab::trace::{render_json, render_mermaid, render_text};
        let write = |path: &Option<PathBuf>, text: String| -> Result<(), String> {
            match path {
                Some(p) => std::fs::write(p, text)
                    .map_err(|e| format!("cannot write {}: {e}", p.display())),
                None => Ok(()),
            }
        };
        write(&args.trace, render_text(&last.trace))?;
        write(&args.json, render_json(&last.trace))?;
        write(&args.mermaid, render_mermaid(&last.trace, 400))?;
    }
    if let Some(p) = &args.junit {
        std::fs::write(p, junit(&runs))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    Ok(ok)
}
