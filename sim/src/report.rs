//! The runner's output: a summary table, JUnit XML, a progress bar.

use crate::lab::pcap::{self, HostAddresses};
use crate::lab::scenario::Scenario;
use crate::lab::trace::{render_json, render_text};
use crate::{Placed, SimRun};
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

/// All runs of one scenario.
pub struct ScenarioRuns {
    pub scenario: Scenario,
    pub runs: Vec<SimRun>,
    /// Seeds whose two runs gave different traces.
    pub nondeterministic: Vec<u64>,
}

impl ScenarioRuns {
    pub fn passed(&self) -> usize {
        self.runs.iter().filter(|r| r.passed()).count()
    }
}

pub fn progress_bar(enabled: bool, len: u64) -> Option<ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs {elapsed} (eta {eta})")
    {
        bar.set_style(style);
    }
    Some(bar)
}

/// One row per scenario: seeds, passed, failed, simulated time (mean and
/// max), datagrams and retransmissions (mean), and how many server sends
/// ended waiting for a final ACK that never came (all seeds; no failure:
/// the client may have its file, and its own result is judged).
pub fn summary_table(runs: &[ScenarioRuns], wall: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:>5} {:>6} {:>6} {:>10} {:>10} {:>9} {:>10} {:>15}",
        "scenario",
        "seeds",
        "passed",
        "failed",
        "sim mean",
        "sim max",
        "pkts/run",
        "resent/run",
        "no last ACK (all)"
    );
    let (mut total_runs, mut total_failed, mut sim_total) = (0, 0, Duration::ZERO);
    for sr in runs {
        let n = sr.runs.len().max(1);
        let sim: Vec<Duration> = sr.runs.iter().map(|r| r.record.elapsed).collect();
        let mean = sim.iter().sum::<Duration>() / n as u32;
        let max = sim.iter().max().copied().unwrap_or_default();
        let packets = sr.runs.iter().map(|r| r.record.datagrams).sum::<u64>() / n as u64;
        let resent = sr.runs.iter().map(|r| r.retransmissions()).sum::<u64>() / n as u64;
        let unconfirmed: u64 = sr.runs.iter().map(|r| r.record.server_unconfirmed).sum();
        let failed = sr.runs.len() - sr.passed() + sr.nondeterministic.len();
        total_runs += sr.runs.len();
        total_failed += failed;
        sim_total += sim.iter().sum::<Duration>();
        let _ = writeln!(
            out,
            "{:<32} {:>5} {:>6} {:>6} {:>9.2}s {:>9.2}s {:>9} {:>10} {:>15}",
            truncate(&sr.scenario.name, 32),
            sr.runs.len(),
            sr.passed(),
            failed,
            mean.as_secs_f64(),
            max.as_secs_f64(),
            packets,
            resent,
            unconfirmed
        );
    }
    let ratio = sim_total.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "{total_runs} runs, {} passed, {total_failed} failed in {:.1}s wall ({:.0} simulated seconds per wall second)",
        total_runs.saturating_sub(total_failed),
        wall.as_secs_f64(),
        ratio
    );
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test suite per scenario, one test case per seed.
pub fn junit(runs: &[ScenarioRuns]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for sr in runs {
        let failures = sr.runs.len() - sr.passed();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
            xml_escape(&sr.scenario.name),
            sr.runs.len()
        );
        for r in &sr.runs {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"seed {}\" time=\"{:.3}\"",
                xml_escape(&sr.scenario.name),
                r.seed,
                r.record.elapsed.as_secs_f64()
            );
            if r.passed() {
                out.push_str("/>\n");
                continue;
            }
            let mut message: Vec<String> = r.verdict.failures.clone();
            message.extend(r.sim_error.clone());
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                xml_escape(message.first().map_or("failed", |m| m.as_str())),
                xml_escape(&message.join("\n"))
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// The median of some measurements (the upper one of an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Speed of the simulator: each scenario and seed runs `repeat` times, one
/// at a time on this thread, at each tick; one row per scenario and tick
/// with the medians over all those runs of simulated seconds per wall
/// second and transfers (client actions that ran) per wall second.
pub fn bench(
    scenarios: &[Scenario],
    seeds: &[u64],
    ticks: &[Duration],
    repeat: u32,
    skip_idle: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>6} {:>5} {:>10} {:>10} {:>12} {:>12} {:>8} {:>7}",
        "scenario",
        "tick",
        "runs",
        "wall/run",
        "sim/run",
        "sim-s/wall-s",
        "xfers/wall-s",
        "skipped",
        "failed"
    );
    // Files shared across runs, as a sweep shares them.
    let staging = crate::lab::content::Staging::new().ok();
    for scenario in scenarios {
        for &tick in ticks {
            let (mut walls, mut sims, mut ratios, mut rates) = (vec![], vec![], vec![], vec![]);
            let (mut failed, mut skipped, mut simulated) = (0, 0.0, 0.0);
            for &seed in seeds {
                for _ in 0..repeat {
                    let started = std::time::Instant::now();
                    let options = crate::SimOptions {
                        tick,
                        skip_idle,
                        keep_datagrams: false,
                    };
                    let r = crate::run_staged(scenario, seed, options, staging.as_ref());
                    let wall = started.elapsed().as_secs_f64().max(1e-9);
                    let sim = r.record.elapsed.as_secs_f64();
                    failed += usize::from(!r.passed());
                    skipped += r.skipped.as_secs_f64();
                    simulated += sim;
                    walls.push(wall);
                    sims.push(sim);
                    ratios.push(sim / wall);
                    rates.push(r.record.results.len() as f64 / wall);
                }
            }
            let _ = writeln!(
                out,
                "{:<24} {:>4}ms {:>5} {:>9.3}s {:>9.1}s {:>12.0} {:>12.1} {:>7.1}% {:>7}",
                truncate(&scenario.name, 24),
                tick.as_millis(),
                walls.len(),
                median(walls),
                median(sims),
                median(ratios),
                median(rates),
                100.0 * skipped / simulated.max(1e-9),
                failed
            );
        }
    }
    out
}

/// A run's name in file and directory names: `<scenario>-<seed>`, the
/// scenario's name with anything but letters, digits, `-`, `_` and `.`
/// made `_` (a scenario names itself, and a `/` would make a directory).
pub fn run_name(scenario: &Scenario, seed: u64) -> String {
    let name: String = scenario
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}-{seed}")
}

/// Where a failure happened, for its line: ` [at 4.321s, trace.txt:87]`,
/// `trace_file` being the text trace the line number is in; empty if the
/// judge cannot tell.
pub fn placement(failure: &Placed, trace_file: &str) -> String {
    match (failure.at, failure.event) {
        (Some(at), Some(i)) => format!(" [at {:.3}s, {trace_file}:{}]", at.as_secs_f64(), i + 1),
        (Some(at), None) => format!(" [at {:.3}s]", at.as_secs_f64()),
        _ => String::new(),
    }
}

/// The files [`write_artifacts`] writes into a run's directory.
pub const ARTIFACTS: [&str; 5] = [
    "trace.txt",
    "trace.json",
    "trace.mmd",
    "run.pcap",
    "verdict.txt",
];

/// The Mermaid diagram's size: a diagram of more datagrams than this is
/// more than a browser draws comfortably.
pub const MERMAID_DATAGRAMS: usize = 400;

/// Writes a run's files into `dir` (created if need be): the trace as text
/// (`trace.txt`), JSON and Mermaid, a pcap of its datagrams (`run.pcap`,
/// see [`pcap::write_run`]; the run must have kept them,
/// [`crate::SimOptions::keep_datagrams`]) and `verdict.txt`: `pass`, or
/// each failure on a line with where it happened in `trace.txt`.
pub fn write_artifacts(dir: &Path, scenario: &Scenario, run: &SimRun) -> Result<(), String> {
    let cannot = |what: &str, e: &dyn std::fmt::Display| {
        format!("cannot write {}: {e}", dir.join(what).display())
    };
    std::fs::create_dir_all(dir).map_err(|e| cannot("", &e))?;
    let write = |name: &str, text: String| -> Result<(), String> {
        std::fs::write(dir.join(name), text).map_err(|e| cannot(name, &e))
    };
    write("trace.txt", render_text(&run.trace))?;
    write("trace.json", render_json(&run.trace))?;
    write("trace.mmd", run.mermaid(MERMAID_DATAGRAMS))?;
    let mut verdict = String::new();
    for f in run.failures() {
        let _ = writeln!(verdict, "{}{}", f.text, placement(&f, "trace.txt"));
    }
    if verdict.is_empty() {
        verdict.push_str("pass\n");
    }
    write("verdict.txt", verdict)?;
    write_pcap(&dir.join("run.pcap"), scenario, run)
}

/// Writes a run's datagrams as a pcap file at `path` ([`pcap::write_run`];
/// the hosts' addresses follow the scenario, [`HostAddresses`]).
pub fn write_pcap(path: &Path, scenario: &Scenario, run: &SimRun) -> Result<(), String> {
    let cannot = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    let datagrams = run
        .datagrams
        .as_deref()
        .ok_or_else(|| cannot(&"the run kept no datagrams (SimOptions::keep_datagrams is off)"))?;
    let hosts = HostAddresses::new(
        std::iter::once("server").chain(scenario.clients.iter().map(|c| c.name.as_str())),
    )
    .with_trace(&run.trace);
    let file = std::fs::File::create(path).map_err(|e| cannot(&e))?;
    pcap::write_run(Box::new(file), &hosts, &run.trace, datagrams).map_err(|e| cannot(&e))
}

/// Removes what [`write_artifacts`] wrote for a run in `dir` (an earlier
/// sweep's, for a run that now passes), and `dir` if that leaves it empty.
/// Other files are left alone.
pub fn clear_artifacts(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for name in ARTIFACTS {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(dir);
}

/// Today's date in UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil(secs / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The date `days` days after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_the_calendars() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(11_016), (2000, 2, 29));
        assert_eq!(super::civil(20_454), (2026, 1, 1));
    }
}
