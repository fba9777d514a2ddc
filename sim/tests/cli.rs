//! The `tftplab-sim` command line: a bad combination of flags is one line
//! on stderr and exit 2, before anything runs.

use std::path::Path;
use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    Command::new(env!("CARGO_BIN_EXE_tftplab-sim"))
        .current_dir(scenarios.parent().expect("repository"))
        .args(["run", "--quiet"])
        .args(args)
        .output()
        .expect("run tftplab-sim")
}

#[test]
fn a_seed_and_a_seed_count_together_are_refused() {
    let out = sim(&["--seed", "2", "--seeds", "5", "scenarios/lost-oack.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'--seed <SEED>' cannot be used with '--seeds <SEEDS>'"),
        "{err}"
    );
}

#[test]
fn a_trace_needs_exactly_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("t.trace");
    let trace = trace.to_str().expect("utf-8 path");
    let out = sim(&["--trace", trace, "scenarios/lost-oack.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "tftplab-sim: --trace, --json and --mermaid write one run, and this is 8: name one scenario file and one --seed (a failure line prints that command)"
    );
    assert!(!Path::new(trace).exists(), "nothing is written");
    let out = sim(&["--trace", trace, "--seed", "3", "scenarios/lost-oack.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(trace).expect("trace");
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains("RRQ \"start4.elf\"")),
        "{text}"
    );
}
