//! The runner's output: a summary table, JUnit XML, a progress bar.

use crate::SimRun;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write;
use std::io::IsTerminal;
use std::time::Duration;
use tftplab::lab::scenario::Scenario;

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
/// max), datagrams and retransmissions (mean).
pub fn summary_table(runs: &[ScenarioRuns], wall: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:>5} {:>6} {:>6} {:>10} {:>10} {:>9} {:>8}",
        "scenario", "seeds", "passed", "failed", "sim mean", "sim max", "packets", "resent"
    );
    let (mut total_runs, mut total_failed, mut sim_total) = (0, 0, Duration::ZERO);
    for sr in runs {
        let n = sr.runs.len().max(1);
        let sim: Vec<Duration> = sr.runs.iter().map(|r| r.record.elapsed).collect();
        let mean = sim.iter().sum::<Duration>() / n as u32;
        let max = sim.iter().max().copied().unwrap_or_default();
        let packets = sr.runs.iter().map(|r| r.record.datagrams).sum::<u64>() / n as u64;
        let resent = sr.runs.iter().map(|r| r.retransmissions()).sum::<u64>() / n as u64;
        let failed = sr.runs.len() - sr.passed() + sr.nondeterministic.len();
        total_runs += sr.runs.len();
        total_failed += failed;
        sim_total += sim.iter().sum::<Duration>();
        let _ = writeln!(
            out,
            "{:<32} {:>5} {:>6} {:>6} {:>9.2}s {:>9.2}s {:>9} {:>8}",
            truncate(&sr.scenario.name, 32),
            sr.runs.len(),
            sr.passed(),
            failed,
            mean.as_secs_f64(),
            max.as_secs_f64(),
            packets,
            resent
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

fn xml_escape(s: &str) -> String {
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
