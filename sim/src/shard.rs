//! Splitting a sweep across machines: `tftplab-sim run --shard I/N` runs
//! the (scenario, seed) pairs a stable hash gives shard I, and writes what
//! it found as a JSON report (`--report FILE`); `tftplab-sim merge` reads
//! the N reports back into one table, one JUnit file and one exit status.
//!
//! The hash is FNV-1a over the scenario's name and the seed, so a pair
//! stays in its shard whatever other scenarios are added, and a shard is
//! the same on every machine (no per-process hash seed). A run's trace is
//! summed up by its FNV-1a digest, so the union of the shards can be
//! checked against an unsharded run, run for run.

use crate::lab::trace::render_text;
use crate::lab::Scenario;
use crate::report::xml_escape;
use crate::SimRun;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Shard `index` (from 1) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("`{s}` is not a shard: write I/N, with 1 <= I <= N (3/8)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<u64>().map_err(|_| bad())?,
            n.trim().parse::<u64>().map_err(|_| bad())?,
        );
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a, 64 bits: stable across machines, builds and runs.
pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Shard {
    /// Whether the run of `scenario` (by name) with `seed` is this shard's.
    pub fn takes(&self, scenario: &str, seed: u64) -> bool {
        let mut key = scenario.as_bytes().to_vec();
        key.push(0);
        key.extend(seed.to_le_bytes());
        fnv64(&key) % self.count == self.index - 1
    }
}

/// One run as a report keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub scenario: String,
    pub path: String,
    pub seed: u64,
    pub passed: bool,
    pub failures: Vec<String>,
    /// Simulated seconds the run took.
    pub simulated_s: f64,
    pub datagrams: u64,
    /// FNV-1a of the run's rendered trace, in hex.
    pub trace_fnv64: String,
    /// What `merge` prints under a failure, if not the usual replay and
    /// pin commands of `path` and `seed` (a `plans` sweep's rows, whose
    /// seed is the plan's index, say how to make the plan again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
}

/// The commands printed under a failure of `path` with `seed`: the replay
/// with a trace of the run, and the `pin` that keeps it as a regression
/// file.
pub fn failure_commands(path: &str, seed: u64, trace: &str) -> Vec<String> {
    vec![
        format!("replay: cargo run -p tftplab-sim --release -- run {path} --seed {seed} --trace {trace}"),
        format!("pin:    cargo run -p tftplab-sim --release -- pin {path} --seed {seed}"),
    ]
}

impl RunRow {
    /// What `merge` prints under this row's failure.
    pub fn commands(&self) -> Vec<String> {
        if self.commands.is_empty() {
            let trace = format!("{}-{}.trace", self.scenario, self.seed);
            failure_commands(&self.path, self.seed, &trace)
        } else {
            self.commands.clone()
        }
    }

    pub fn of(scenario: &Scenario, run: &SimRun) -> RunRow {
        let mut failures = run.verdict.failures.clone();
        failures.extend(run.sim_error.clone());
        RunRow {
            scenario: scenario.name.clone(),
            path: scenario.path.display().to_string(),
            seed: run.seed,
            passed: run.passed(),
            failures,
            simulated_s: run.record.elapsed.as_secs_f64(),
            datagrams: run.record.datagrams,
            trace_fnv64: format!(
                "{:016x}",
                run.light
                    .as_ref()
                    .and_then(|l| l.trace_fnv64)
                    .unwrap_or_else(|| fnv64(render_text(&run.trace).as_bytes()))
            ),
            commands: Vec::new(),
        }
    }
}

/// What one `run` wrote with `--report`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `I/N`, or `None` for an unsharded run.
    pub shard: Option<String>,
    pub runs: Vec<RunRow>,
}

/// The reports of shards 1..=N, read and checked: one N, every shard once,
/// no run twice. The runs come back sorted by scenario and seed.
pub fn merge(files: &[&Path]) -> Result<Vec<RunRow>, String> {
    let mut count = None;
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    let mut rows: BTreeMap<(String, u64), RunRow> = BTreeMap::new();
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
        let report: Report =
            serde_json::from_str(&text).map_err(|e| format!("{name}: not a report: {e}"))?;
        let shard: Shard = match &report.shard {
            Some(s) => s.parse().map_err(|e| format!("{name}: {e}"))?,
            None => Shard { index: 1, count: 1 },
        };
        if *count.get_or_insert(shard.count) != shard.count {
            return Err(format!(
                "{name} is shard {shard}, but another report is of {} shards",
                count.unwrap_or(0)
            ));
        }
        if let Some(other) = seen.insert(shard.index, name.clone()) {
            return Err(format!("{name} and {other} are both shard {shard}"));
        }
        for row in report.runs {
            let key = (row.scenario.clone(), row.seed);
            if rows.insert(key, row).is_some() {
                return Err(format!("{name}: a run is in two reports"));
            }
        }
    }
    let count = count.ok_or("no reports to merge")?;
    let missing: Vec<String> = (1..=count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing shard(s): {}", missing.join(", ")));
    }
    Ok(rows.into_values().collect())
}

/// Scenario, runs, passed, failed: the merged sweep's table.
pub fn table(rows: &[RunRow]) -> String {
    let mut by: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in rows {
        let e = by.entry(&r.scenario).or_default();
        e.0 += 1;
        e.1 += usize::from(r.passed);
    }
    let mut out = format!(
        "{:<32} {:>6} {:>6} {:>6}\n",
        "scenario", "runs", "passed", "failed"
    );
    for (name, (runs, passed)) in &by {
        let _ = writeln!(out, "{name:<32} {runs:>6} {passed:>6} {:>6}", runs - passed);
    }
    let passed = rows.iter().filter(|r| r.passed).count();
    let _ = writeln!(
        out,
        "{} runs, {passed} passed, {} failed",
        rows.len(),
        rows.len() - passed
    );
    out
}

/// JUnit XML: a suite per scenario, a case per seed.
pub fn junit(rows: &[RunRow]) -> String {
    let mut by: BTreeMap<&str, Vec<&RunRow>> = BTreeMap::new();
    for r in rows {
        by.entry(&r.scenario).or_default().push(r);
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (name, runs) in by {
        let failures = runs.iter().filter(|r| !r.passed).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
            xml_escape(name),
            runs.len()
        );
        for r in runs {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"seed {}\" time=\"{:.3}\"",
                xml_escape(name),
                r.seed,
                r.simulated_s
            );
            if r.passed {
                out.push_str("/>\n");
            } else {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    xml_escape(r.failures.first().map_or("failed", String::as_str)),
                    xml_escape(&r.failures.join("\n"))
                );
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_every_pair_exactly_once_and_stay_put() {
        let shards: Vec<Shard> = (1..=4).map(|i| format!("{i}/4").parse().unwrap()).collect();
        for name in ["rpi4-netboot", "lost-oack", "x"] {
            for seed in 1..200 {
                let owners = shards.iter().filter(|s| s.takes(name, seed)).count();
                assert_eq!(owners, 1, "{name} {seed}");
            }
        }
        // Fixed by the hash: the same answer here as on any machine.
        assert_eq!(fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
        for bad in ["0/4", "5/4", "1/0", "3", "a/b"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
