//! tftplab-sim: the lab. Everything that tests a TFTP server rather than
//! being one lives here, outside the `tftplab` library:
//!
//! - [`lab`]: scenarios, fault plans and the injector, client profiles,
//!   traces and the judge. Written once, driven by the simulator below and
//!   by the hardware runner (`tftplab-hw`).
//! - [`memnet`]: an in-memory, seeded, lossy network that runs a client and
//!   a server machine against each other under a fake clock.
//! - [`harness`]: the invariant harness for the four transfer machines,
//!   with two front-ends: the fuzz targets' bodies ([`harness::fuzz`],
//!   replayed from their saved inputs by a plain `cargo test`) and the
//!   proptest adversarial properties (tests only).
//! - [`world`]: the deterministic simulator. [`run`] builds a turmoil
//!   world for one scenario and seed and judges it; [`run_many`] runs a set
//!   of scenarios over many seeds in parallel (each simulation is
//!   single-threaded and deterministic on its own).

#[doc(hidden)]
pub mod harness;
pub mod lab;
pub mod memnet;
pub mod pin;
pub mod plans;
pub mod report;
pub mod shard;
pub mod world;

pub use world::{Placed, SimOptions, SimRun, TurmoilNet};

use lab::scenario::{Judge, Scenario};
use lab::trace::render_text;
use report::ScenarioRuns;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

impl Scenario {
    /// Runs the scenario once in the simulator, everything decided by
    /// `seed`, and judges the run: the same seed gives the same trace.
    ///
    /// ```no_run
    /// use tftplab_sim::lab::Scenario;
    ///
    /// let run = Scenario::load("scenarios/rpi4-netboot.toml")?.simulate(7);
    /// assert!(run.passed(), "{:?}", run.verdict.failures);
    /// # Ok::<(), tftplab_sim::lab::ScenarioError>(())
    /// ```
    pub fn simulate(&self, seed: u64) -> SimRun {
        run(self, seed, SimOptions::default())
    }
}

/// Runs `scenario` with `seed` in the simulator ([`world::run_staged`]) and
/// judges it as the scenario says: by its expectations, or, for
/// `judge = "random-plan"`, by the random plans' property
/// ([`plans::verdict`]).
pub fn run(scenario: &Scenario, seed: u64, opts: SimOptions) -> SimRun {
    run_staged(scenario, seed, opts, None)
}

/// [`run`], with the scenario's files linked from `staging`'s copies (a
/// sweep's runs share them, see [`lab::content::Staging`]).
pub fn run_staged(
    scenario: &Scenario,
    seed: u64,
    opts: SimOptions,
    staging: Option<&lab::content::Staging>,
) -> SimRun {
    let mut r = world::run_staged(scenario, seed, opts, staging);
    if scenario.expect.judge == Judge::RandomPlan {
        r.verdict = plans::verdict(scenario, &r);
    }
    r
}

/// The subdirectory of a scenario directory whose files are read with it:
/// regression files (`tftplab-sim pin`), each with its seeds pinned.
pub const REGRESSIONS: &str = "regressions";

/// Loads every `.toml` file named or found in the given directories, and
/// in a directory's `regressions/` subdirectory (no other subdirectory,
/// no deeper), sorted by path. The first bad file stops with its message.
pub fn load_scenarios(paths: &[PathBuf]) -> Result<Vec<Scenario>, String> {
    let tomls = |dir: &Path| -> Result<Vec<PathBuf>, String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
            .collect();
        found.sort();
        Ok(found)
    };
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(tomls(p)?);
            let regressions = p.join(REGRESSIONS);
            if regressions.is_dir() {
                files.extend(tomls(&regressions)?);
            }
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        return Err("no scenario files found".into());
    }
    files
        .iter()
        .map(|f| Scenario::load(Path::new(f)).map_err(|e| e.to_string()))
        .collect()
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub seeds: Vec<u64>,
    pub check_determinism: bool,
    pub jobs: usize,
    pub options: SimOptions,
    pub progress: bool,
    /// Only this shard's (scenario, seed) pairs ([`shard::Shard::takes`]).
    pub shard: Option<shard::Shard>,
    /// A scenario that pins its seeds (`seeds = [...]`) runs those instead
    /// of `seeds`.
    pub pinned_seeds: bool,
}

impl RunPlan {
    /// The seeds `scenario` runs with under this plan.
    pub fn seeds_for<'a>(&'a self, scenario: &'a Scenario) -> &'a [u64] {
        match &scenario.seeds {
            Some(pinned) if self.pinned_seeds => pinned,
            _ => &self.seeds,
        }
    }
}

/// Runs every scenario with every seed on `plan.jobs` threads. Results come
/// back in scenario and seed order whatever the scheduling.
pub fn run_many(scenarios: &[Scenario], plan: &RunPlan) -> Vec<ScenarioRuns> {
    run_many_with(scenarios, plan, &|_, _| {})
}

/// [`run_many`], calling `after` with each run as soon as it is judged,
/// on the thread that ran it: a sweep writes a run's files there and drops
/// what it need not keep (a run's datagrams) before the next run starts,
/// rather than holding every run's until the sweep ends.
pub fn run_many_with(
    scenarios: &[Scenario],
    plan: &RunPlan,
    after: &(dyn Fn(&Scenario, &mut SimRun) + Sync),
) -> Vec<ScenarioRuns> {
    let work: Vec<(usize, u64)> = (0..scenarios.len())
        .flat_map(|i| plan.seeds_for(&scenarios[i]).iter().map(move |&s| (i, s)))
        .filter(|&(i, s)| plan.shard.is_none_or(|sh| sh.takes(&scenarios[i].name, s)))
        .collect();
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<(SimRun, bool)>>> = work.iter().map(|_| Mutex::new(None)).collect();
    let bar = report::progress_bar(plan.progress, work.len() as u64);
    // Each file written once for the whole sweep (each run writes its own
    // if that fails).
    let staging = lab::content::Staging::new().ok();
    let staging = staging.as_ref();
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.max(1) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, seed)) = work.get(k) else { break };
                let mut first = run_staged(&scenarios[i], seed, plan.options, staging);
                let deterministic = !plan.check_determinism || {
                    let second = run_staged(&scenarios[i], seed, plan.options, staging);
                    render_text(&first.trace) == render_text(&second.trace)
                };
                after(&scenarios[i], &mut first);
                if let Ok(mut slot) = slots[k].lock() {
                    *slot = Some((first, deterministic));
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
    let mut out: Vec<ScenarioRuns> = scenarios
        .iter()
        .map(|s| ScenarioRuns {
            scenario: s.clone(),
            runs: Vec::new(),
            nondeterministic: Vec::new(),
        })
        .collect();
    for (k, slot) in slots.into_iter().enumerate() {
        let (i, seed) = work[k];
        if let Ok(Some((run, deterministic))) = slot.into_inner() {
            if !deterministic {
                out[i].nondeterministic.push(seed);
            }
            out[i].runs.push(run);
        }
    }
    out
}
