//! `tftplab-sim`: runs scenario files in a deterministic simulated network.
//! `tftplab-sim --help` is the manual.

use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;
use tftplab_sim::lab::Scenario;
use tftplab_sim::report::{
    bench, clear_artifacts, junit, placement, run_name, summary_table, write_artifacts, write_pcap,
    ScenarioRuns, MERMAID_DATAGRAMS,
};
use tftplab_sim::shard::{self, Report, RunRow, Shard};
use tftplab_sim::{load_scenarios, run_many_with, RunPlan, SimOptions, SimRun};

/// Runs tftplab scenarios under a deterministic simulated network with
/// loss, duplication, reordering, partitions and crashes. The real server
/// and client run on every simulated host; one seed decides everything, so
/// any failure replays exactly.
///
/// Examples:
///   tftplab-sim run                              # every scenario in scenarios/
///   tftplab-sim run scenarios/rpi4-netboot.toml --seeds 50
///   tftplab-sim run scenarios/rpi4-netboot.toml --seed 17 --trace rpi4.trace
///   tftplab-sim run --seeds 100 --out sim-out    # files for each failing run
///   tftplab-sim run --seeds 1000 --shard 3/8 --report shard-3.json
///   tftplab-sim merge shard-*.json --junit sweep.xml
///   tftplab-sim pin scenarios/rpi4-netboot.toml --seed 17   # keep a failure
///   tftplab-sim plans --cases 2000 --out plan-failures       # random fault plans
#[derive(Debug, Parser)]
#[command(name = "tftplab-sim", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios for several seeds and judge each run.
    Run(RunArgs),
    /// Combine the --report files of a sharded sweep (shards 1 to N, each
    /// once) into one table, one JUnit file and one exit status: 0 every
    /// run passed, 1 some failed, 2 the reports do not make a sweep.
    Merge(MergeArgs),
    /// Keep one run as a regression file: run SCENARIO with --seed once
    /// and write DIR/<name>-seed<S>.toml, the scenario's own text (comments
    /// kept) with `name = "<name>-seed<S>"`, `seeds = [S]` and a comment on
    /// top: the date, this command, the run's failures (or that it passed:
    /// the file is written either way) and the replay command. Relative
    /// `path`s of [[files]] are rewritten to work from DIR. An existing
    /// file is kept unless --force. Exit 0 when written, whatever the run
    /// did; 2 if nothing was written.
    Pin(PinArgs),
    /// Generate random fault plans (the property test's generator: faults
    /// each way, scripted fates, an outage, one or two clients of random
    /// profiles, sizes and options) and run each, judged by the random-plan
    /// property. Plan I is the same for the same --seed-base on every
    /// machine. Failing plans are written as scenario files into --out
    /// (ready for sim/tests/property-regressions/). Exit 0 all passed, 1
    /// some failed, 2 an error.
    Plans(PlansArgs),
}

#[derive(Debug, clap::Args)]
struct PinArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// The seed to pin.
    #[arg(long)]
    seed: u64,
    /// Where to write the regression file.
    #[arg(long, value_name = "DIR", default_value = tftplab_sim::pin::DEFAULT_DIR)]
    to: PathBuf,
    /// Replace an existing file of that name.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
struct PlansArgs {
    /// How many plans: indices --first to --first + N - 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    cases: u64,
    /// The sweep's base seed: plan I is made from (B, I) alone.
    #[arg(long, value_name = "B", default_value_t = 0)]
    seed_base: u64,
    /// The first plan's index (--first I --cases 1 makes plan I again).
    #[arg(long, value_name = "I", default_value_t = 0)]
    first: u64,
    /// Run only shard I of N: the plans a stable hash of the base seed and
    /// the index gives it.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Write every plan's verdict as JSON here, for `tftplab-sim merge`
    /// (its rows are named plans-<B>, and their seed is the plan's index).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write each failing plan here as a scenario file, <plan-name>.toml,
    /// with its failure in a comment.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Parallel simulations (default: number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// The shards' report files (`run --report FILE`).
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Write the merged JUnit XML here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario files or directories (default: scenarios/); a directory's
    /// regressions/ subdirectory is read too.
    paths: Vec<PathBuf>,
    /// Seeds per scenario (1, 2, ... N); a scenario that pins its seeds
    /// (`seeds = [...]`, as a regression file does) runs those instead.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// Run only this seed (replays a failure), pinned seeds or not.
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
    /// long run shows 400 datagrams: a failed run's around its first
    /// failure, marked, a passing run's first and last 200).
    #[arg(long, value_name = "FILE")]
    mermaid: Option<PathBuf>,
    /// Write the run's datagrams here as a pcap file (see --out for what
    /// it holds).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Write each failing run's files into DIR/<scenario>-<seed>/:
    /// trace.txt, trace.json, trace.mmd, run.pcap and verdict.txt (its
    /// failures, each with the line of trace.txt where it happened, or
    /// "pass"). A run that passes leaves no directory (one an earlier
    /// sweep left is removed) unless --keep all.
    ///
    /// run.pcap is what Wireshark or tcpdump reads: one Ethernet/IPv4/UDP
    /// frame per datagram sent, in trace order (frame N is line N of
    /// trace.txt), stamped with the simulated time since the run started
    /// (from the epoch), dropped ones included (trace.txt says what became
    /// of each). The addresses are made up: the server is 198.18.0.1 and
    /// the clients follow (198.18.0.2, ...) in the order the scenario
    /// lists them; each host's MAC is 02:00 and then its IPv4 address. UDP
    /// ports are the simulation's; checksums are valid.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Which runs get files under --out: failed, or all (every run: a
    /// large sweep writes a directory per run).
    #[arg(long, value_enum, default_value_t = Keep::Failed, requires = "out")]
    keep: Keep,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Run only shard I of N: the (scenario, seed) pairs a stable hash of
    /// the scenario's name and the seed gives it, the same on every
    /// machine; adding a scenario moves no other pair.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Write every run (scenario, seed, verdict, failures, trace digest) as
    /// JSON here, for `tftplab-sim merge`.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Keep {
    Failed,
    All,
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Merge(args) => merge(args),
        Command::Pin(args) => pin(args),
        Command::Plans(args) => plans(args),
    };
    match outcome {
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
    let plan = RunPlan {
        seeds: seeds.clone(),
        check_determinism: args.check_determinism,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        options: SimOptions {
            tick: std::time::Duration::from_millis(
                args.tick_ms.first().copied().unwrap_or(1).max(1),
            ),
            skip_idle: !args.no_skip,
            // Only a pcap needs the bytes.
            keep_datagrams: args.out.is_some() || args.pcap.is_some(),
        },
        progress: !args.quiet,
        shard: args.shard,
        pinned_seeds: args.seed.is_none(),
    };
    let one_run_outputs = [&args.trace, &args.json, &args.mermaid, &args.pcap];
    if !args.bench && one_run_outputs.iter().any(|o| o.is_some()) {
        let runs: usize = scenarios.iter().map(|s| plan.seeds_for(s).len()).sum();
        if runs != 1 {
            return Err(format!(
                "--trace, --json, --mermaid and --pcap write one run, and this is {runs}: name one scenario file and one --seed (a failure line prints that command), or use --out DIR"
            ));
        }
    }
    if let Some(dir) = &args.out {
        // Two scenarios of one name would write into each other's files.
        let mut named: BTreeMap<String, &Path> = BTreeMap::new();
        for s in &scenarios {
            let run = run_name(s, 0);
            let stem = run.strip_suffix("-0").unwrap_or(&run);
            if let Some(other) = named.insert(stem.to_string(), &s.path) {
                return Err(format!(
                    "{} and {} would both write into {}: give one of them another `name`",
                    other.display(),
                    s.path.display(),
                    dir.join(format!("{stem}-<seed>")).display()
                ));
            }
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
    // Each run's files are written as it ends, on its thread, and its
    // datagrams dropped then unless --pcap wants them after the sweep.
    let written: Mutex<BTreeMap<String, Result<PathBuf, String>>> = Mutex::default();
    let wants_whole_run = one_run_outputs.iter().any(|o| o.is_some());
    let after = |scenario: &Scenario, run: &mut SimRun| {
        if let Some(out) = &args.out {
            let name = run_name(scenario, run.seed);
            let dir = out.join(&name);
            if run.passed() && args.keep == Keep::Failed {
                clear_artifacts(&dir);
            } else {
                let result = write_artifacts(&dir, scenario, run).map(|()| dir);
                if let Ok(mut w) = written.lock() {
                    w.insert(name, result);
                }
            }
        }
        if args.pcap.is_none() {
            run.datagrams = None;
        }
        // Only --trace, --json, --mermaid and --pcap read a whole run after
        // the sweep (and they need exactly one run): the others keep what
        // the summary and the report need, so a sweep's memory stays flat.
        if !wants_whole_run {
            run.lighten(args.report.is_some());
        }
    };
    let started = Instant::now();
    let runs: Vec<ScenarioRuns> = run_many_with(&scenarios, &plan, &after);
    let wall = started.elapsed();
    let written = written.into_inner().unwrap_or_default();
    print!("{}", summary_table(&runs, wall));
    let mut ok = true;
    for sr in &runs {
        for r in sr.runs.iter().filter(|r| !r.passed()) {
            ok = false;
            let name = run_name(&sr.scenario, r.seed);
            let replay_trace = format!("{name}.trace");
            let (files, trace_file) = match written.get(&name) {
                Some(Ok(dir)) => (
                    format!(" {}/", dir.display()),
                    dir.join("trace.txt").display().to_string(),
                ),
                Some(Err(e)) => (format!(" (no files: {e})"), replay_trace.clone()),
                None => (String::new(), replay_trace.clone()),
            };
            println!("\nFAILED {} seed {}:{files}", sr.scenario.name, r.seed);
            for f in r.failures() {
                println!("  {}{}", f.text, placement(&f, &trace_file));
            }
            let path = sr.scenario.path.display().to_string();
            for c in shard::failure_commands(&path, r.seed, &replay_trace) {
                println!("  {c}");
            }
        }
        for d in &sr.nondeterministic {
            ok = false;
            println!(
                "\nNONDETERMINISTIC {} seed {d}: two runs gave different traces",
                sr.scenario.name
            );
        }
    }
    if let Some((sr, last)) = runs.last().and_then(|sr| Some((sr, sr.runs.last()?))) {
        use tftplab_sim::lab::trace::{render_json, render_text};
        let write = |path: &Option<PathBuf>, text: String| -> Result<(), String> {
            match path {
                Some(p) => std::fs::write(p, text)
                    .map_err(|e| format!("cannot write {}: {e}", p.display())),
                None => Ok(()),
            }
        };
        write(&args.trace, render_text(&last.trace))?;
        write(&args.json, render_json(&last.trace))?;
        write(&args.mermaid, last.mermaid(MERMAID_DATAGRAMS))?;
        if let Some(p) = &args.pcap {
            write_pcap(p, &sr.scenario, last)?;
        }
    }
    if let Some(p) = &args.junit {
        std::fs::write(p, junit(&runs))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(p) = &args.report {
        let report = Report {
            shard: args.shard.map(|s| s.to_string()),
            runs: runs
                .iter()
                .flat_map(|sr| sr.runs.iter().map(|r| RunRow::of(&sr.scenario, r)))
                .collect(),
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    // Files a user asked for and did not get are an error, not a failure
    // of the runs: say so after the report.
    if let Some(e) = written.values().find_map(|w| w.as_ref().err()) {
        return Err(e.clone());
    }
    Ok(ok)
}

fn merge(args: MergeArgs) -> Result<bool, String> {
    let files: Vec<&Path> = args.reports.iter().map(PathBuf::as_path).collect();
    let rows = shard::merge(&files)?;
    print!("{}", shard::table(&rows));
    for r in rows.iter().filter(|r| !r.passed) {
        println!("\nFAILED {} seed {}:", r.scenario, r.seed);
        for f in &r.failures {
            println!("  {f}");
        }
        for c in r.commands() {
            println!("  {c}");
        }
    }
    if let Some(p) = &args.junit {
        std::fs::write(p, shard::junit(&rows))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    Ok(rows.iter().all(|r| r.passed))
}

fn pin(args: PinArgs) -> Result<bool, String> {
    use tftplab_sim::pin::{pinned, pinned_name, DEFAULT_DIR};
    use tftplab_sim::report::today;
    let scenario = Scenario::load(&args.scenario).map_err(|e| e.to_string())?;
    let target = args
        .to
        .join(format!("{}.toml", pinned_name(&scenario, args.seed)));
    if target.exists() && !args.force {
        return Err(format!(
            "{} exists: pass --force to replace it",
            target.display()
        ));
    }
    std::fs::create_dir_all(&args.to)
        .map_err(|e| format!("cannot create {}: {e}", args.to.display()))?;
    let mut command = format!(
        "tftplab-sim pin {} --seed {}",
        args.scenario.display(),
        args.seed
    );
    if args.to != Path::new(DEFAULT_DIR) {
        command.push_str(&format!(" --to {}", args.to.display()));
    }
    let run = tftplab_sim::run(&scenario, args.seed, SimOptions::default());
    let file = pinned(&scenario, args.seed, &run, &args.to, &command, &today())?;
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    if args.force {
        open.create(true).truncate(true);
    } else {
        open.create_new(true);
    }
    let write = open.open(&file.path).and_then(|mut f| {
        use std::io::Write;
        f.write_all(file.text.as_bytes())
    });
    write.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            format!("{} exists: pass --force to replace it", file.path.display())
        }
        _ => format!("cannot write {}: {e}", file.path.display()),
    })?;
    if run.passed() {
        println!("{} seed {}: passed", scenario.name, args.seed);
    } else {
        println!("FAILED {} seed {}:", scenario.name, args.seed);
        for f in run.failures() {
            println!("  {}", f.text);
        }
    }
    println!("pinned: {}", file.path.display());
    println!(
        "  replay: cargo run -p tftplab-sim --release -- run {} --seed {} --trace {}-{}.trace",
        file.path.display(),
        args.seed,
        file.name,
        args.seed
    );
    Ok(true)
}

/// One plan of a `plans` sweep, as it ended.
struct PlanOutcome {
    index: u64,
    row: RunRow,
    /// The plan's scenario file, if --out asked for failing ones.
    written: Option<Result<PathBuf, String>>,
}

fn plans(args: PlansArgs) -> Result<bool, String> {
    use tftplab_sim::plans;
    let last = args
        .first
        .checked_add(args.cases)
        .ok_or("--first + --cases is past the last index")?;
    let sweep = format!("plans-{}", args.seed_base);
    let indices: Vec<u64> = (args.first..last)
        .filter(|&i| args.shard.is_none_or(|s| s.takes(&sweep, i)))
        .collect();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let regenerate = |i: u64| {
        format!(
            "tftplab-sim plans --seed-base {} --first {i} --cases 1",
            args.seed_base
        )
    };
    let one = |i: u64| -> Result<PlanOutcome, String> {
        let case = plans::generate(args.seed_base, i)?;
        let scenario = plans::scenario(&case);
        let run = tftplab_sim::run(&scenario, case.seed, SimOptions::default());
        let mut row = RunRow::of(&scenario, &run);
        row.scenario.clone_from(&sweep);
        row.seed = i;
        row.path = String::new();
        let mut written = None;
        if !run.passed() {
            let again = regenerate(i);
            let again = again.strip_prefix("tftplab-sim ").unwrap_or(&again);
            row.commands.push(format!(
                "make it again: cargo run -p tftplab-sim --release -- {again} --out DIR"
            ));
            if let Some(dir) = &args.out {
                let path = dir.join(format!("{}.toml", scenario.name));
                let failure = plans::check(&scenario, &run).err().unwrap_or_default();
                let found_by = format!(
                    "{} (plan {i} of seed base {})",
                    regenerate(i),
                    args.seed_base
                );
                let result = plans::regression_file(&scenario, &path, &found_by, &failure)
                    .and_then(|text| {
                        std::fs::write(&path, text)
                            .map_err(|e| format!("cannot write {}: {e}", path.display()))
                    })
                    .map(|()| path.clone());
                if result.is_ok() {
                    row.path = path.display().to_string();
                    row.commands.push(format!(
                        "replay: cargo run -p tftplab-sim --release -- run {} --seed {} --trace {}.trace",
                        path.display(),
                        case.seed,
                        scenario.name
                    ));
                }
                written = Some(result);
            }
        }
        Ok(PlanOutcome {
            index: i,
            row,
            written,
        })
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Result<PlanOutcome, String>>>> =
        indices.iter().map(|_| Mutex::new(None)).collect();
    let bar = tftplab_sim::report::progress_bar(!args.quiet, indices.len() as u64);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&i) = indices.get(k) else { break };
                let outcome = one(i);
                if let Ok(mut slot) = slots[k].lock() {
                    *slot = Some(outcome);
                }
                if let Some(b) = &bar {
                    b.inc(1);
                }
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let wall = started.elapsed();
    let mut outcomes = Vec::new();
    for slot in slots {
        match slot.into_inner().ok().flatten() {
            Some(Ok(o)) => outcomes.push(o),
            Some(Err(e)) => return Err(e),
            None => return Err("a plan's thread stopped without a result".into()),
        }
    }
    let passed = outcomes.iter().filter(|o| o.row.passed).count();
    let simulated: f64 = outcomes.iter().map(|o| o.row.simulated_s).sum();
    for o in outcomes.iter().filter(|o| !o.row.passed) {
        println!("\nFAILED plan {} of seed base {}:", o.index, args.seed_base);
        for f in &o.row.failures {
            println!("  {f}");
        }
        match &o.written {
            Some(Ok(path)) => println!("  written: {}", path.display()),
            Some(Err(e)) => println!("  not written: {e}"),
            None => {}
        }
        for c in &o.row.commands {
            println!("  {c}");
        }
    }
    let shard = args
        .shard
        .map_or(String::new(), |s| format!(" (shard {s})"));
    println!(
        "\n{} plans{shard}, {passed} passed, {} failed in {:.1}s wall ({simulated:.0} simulated seconds, {:.0} per wall second)",
        outcomes.len(),
        outcomes.len() - passed,
        wall.as_secs_f64(),
        simulated / wall.as_secs_f64().max(1e-9)
    );
    if let Some(p) = &args.report {
        let report = Report {
            shard: args.shard.map(|s| s.to_string()),
            runs: outcomes.iter().map(|o| o.row.clone()).collect(),
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(e) = outcomes
        .iter()
        .find_map(|o| o.written.as_ref().and_then(|w| w.as_ref().err()))
    {
        return Err(e.clone());
    }
    Ok(passed == outcomes.len())
}
