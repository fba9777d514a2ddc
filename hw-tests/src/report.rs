//! The runner's output: a summary table and JUnit XML (one test suite per
//! board, one test case per scenario).

use crate::runner::HwRun;
use std::fmt::Write;
use std::time::Duration;

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// One row per board and scenario, then a totals line.
pub fn summary_table(runs: &[HwRun], wall: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<28} {:>6} {:>7} {:>8} {:>8} {:>9} {:>8}  pcap",
        "board", "scenario", "result", "actions", "packets", "dropped", "bad csum", "time"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<16} {:<28} {:>6} {:>7} {:>8} {:>8} {:>9} {:>7.2}s  {}",
            cut(&r.board, 16),
            cut(&r.scenario, 28),
            if r.passed() { "pass" } else { "FAIL" },
            format!("{}/{}", r.record.results.len(), r.actions),
            r.record.datagrams,
            r.record.dropped,
            r.link.bad_checksums + r.link.partial_checksums,
            r.record.elapsed.as_secs_f64(),
            r.pcap.display()
        );
    }
    let failed = runs.iter().filter(|r| !r.passed()).count();
    let _ = writeln!(
        out,
        "{} runs, {} passed, {failed} failed in {:.1}s",
        runs.len(),
        runs.len() - failed,
        wall.as_secs_f64()
    );
    out
}

/// The failures of every failed run, one per line, after the table.
pub fn failure_lines(runs: &[HwRun]) -> String {
    let mut out = String::new();
    for r in runs.iter().filter(|r| !r.passed()) {
        for f in r.failures() {
            let _ = writeln!(out, "{} / {}: {f}", r.board, r.scenario);
        }
        // Only what the run wrote: a run that failed before its link was
        // up has no trace to point at.
        let written = [
            ("trace", Some(&r.trace_file)),
            ("pcap", Some(&r.pcap)),
            ("console", r.console_log.as_ref()),
        ];
        for (what, path) in written {
            if let Some(path) = path.filter(|p| p.exists()) {
                let _ = writeln!(
                    out,
                    "{} / {}: {what} {}",
                    r.board,
                    r.scenario,
                    path.display()
                );
            }
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: a test suite per board, a test case per scenario, with the
/// pcap and trace paths in `system-out`.
pub fn junit(runs: &[HwRun]) -> String {
    let mut boards: Vec<&str> = runs.iter().map(|r| r.board.as_str()).collect();
    boards.dedup();
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"tftplab-hw\">\n",
    );
    for board in boards {
        let mine: Vec<&HwRun> = runs.iter().filter(|r| r.board == board).collect();
        let failures = mine.iter().filter(|r| !r.passed()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
            xml_escape(board),
            mine.len()
        );
        for r in mine {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
                xml_escape(board),
                xml_escape(&r.scenario),
                r.record.elapsed.as_secs_f64()
            );
            if !r.passed() {
                let f = r.failures();
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\">{}</failure>",
                    xml_escape(f.first().map_or("failed", String::as_str)),
                    xml_escape(&f.join("\n"))
                );
            }
            let _ = writeln!(
                out,
                "      <system-out>pcap: {}\ntrace: {}</system-out>\n    </testcase>",
                xml_escape(&r.pcap.display().to_string()),
                xml_escape(&r.trace_file.display().to_string())
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
