//! Replays the fuzz corpus that is kept in git through the fuzz targets'
//! bodies in `tftplab_sim::harness::fuzz`: every crash ever found
//! (`fuzz/regressions/<target>/*`) and the seed corpus
//! (`fuzz/corpus-seed/<target>/*`). No nightly and no cargo-fuzz needed, so
//! a fixed crash stays fixed. Open crashes wait in `fuzz/regressions-open/`,
//! which is not replayed; see `fuzz/README.md`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 7] = [
    ("packet_parse", tftplab_sim::harness::fuzz::packet_parse),
    ("options", tftplab_sim::harness::fuzz::options),
    ("netascii", tftplab_sim::harness::fuzz::netascii),
    ("server_session", tftplab_sim::harness::fuzz::server_session),
    ("client_session", tftplab_sim::harness::fuzz::client_session),
    ("path_resolve", tftplab_sim::harness::fuzz::path_resolve),
    ("scenario_parse", tftplab_sim::harness::fuzz::scenario_parse),
];

/// The repository root (this crate lives in `sim/`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sim/ has a parent")
        .to_path_buf()
}

fn fuzz_dir() -> PathBuf {
    repo().join("fuzz")
}

/// The files directly under `dir`, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input under `<kind>/<target>/` and lists the ones that panic.
fn replay(kind: &str) -> usize {
    let mut count = 0;
    let mut failures = Vec::new();
    for (name, target) in TARGETS {
        for file in inputs(&fuzz_dir().join(kind).join(name)) {
            let data = std::fs::read(&file).expect("read corpus file");
            count += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} input(s) fail (the panic messages are above); reproduce one with\n  \
         cargo fuzz run <target> <file>   (in fuzz/)\n{}",
        failures.len(),
        failures.join("\n")
    );
    count
}

/// Every directory under `kind` must be named after a target, so a typo
/// cannot silently skip a regression.
fn check_dir_names(kind: &str) {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
        return;
    };
    for entry in entries {
        let name = entry.expect("read directory").file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/{kind}/{name} is not a fuzz target"
        );
    }
}

#[test]
fn crash_regressions_stay_fixed() {
    check_dir_names("regressions");
    check_dir_names("regressions-open");
    replay("regressions");
}

#[test]
fn seed_corpus_passes() {
    check_dir_names("corpus-seed");
    let count = replay("corpus-seed");
    assert!(count > 0, "no seed corpus under fuzz/corpus-seed");
}

/// Regenerates `fuzz/corpus-seed/` from `tftplab_sim::harness::fuzz::seeds()`:
/// `cargo test --test fuzz_regressions -- --ignored write_seed_corpus`.
/// Only adds and overwrites files; remove stale seeds by hand.
#[test]
#[ignore = "writes files; run by hand after changing an input format"]
fn write_seed_corpus() {
    for (target, name, bytes) in tftplab_sim::harness::fuzz::seeds() {
        let dir = fuzz_dir().join("corpus-seed").join(target);
        std::fs::create_dir_all(&dir).expect("create seed directory");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
    // The scenario loader's seeds are the shipped scenarios themselves.
    let dir = fuzz_dir().join("corpus-seed").join("scenario_parse");
    std::fs::create_dir_all(&dir).expect("create seed directory");
    for file in inputs(&repo().join("scenarios")) {
        let name = file.file_name().expect("scenario file name");
        std::fs::copy(&file, dir.join(name)).expect("copy scenario seed");
    }
}
