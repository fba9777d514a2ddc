//! The `tftplab-sim` command line: a bad combination of flags is one line
//! on stderr and exit 2, before anything runs; `--out` leaves a failing
//! run's files where its failure line says, and `--pcap` a capture that
//! other tools read.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tftplab_sim::lab::pcap::read_records;

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
        "tftplab-sim: --trace, --json, --mermaid and --pcap write one run, and this is 8: name one scenario file and one --seed (a failure line prints that command), or use --out DIR"
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

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A legacy client fetches a 42 000-byte file (83 blocks of 512) and then
/// asks for a missing one; `second` is the second action's line in the
/// scenario, and `ratio` the packet bound.
fn scenario(dir: &Path, name: &str, second: &str, ratio: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"name = "{name}"
description = "a test's"

[[files]]
name = "pxelinux.0"
size = 42_000
seed = 1

[[clients]]
name = "legacy"
profile = "legacy"
actions = [
  {{ get = "pxelinux.0" }},
  {second},
]

[faults.client_to_server]
latency = ["1ms", "1ms"]
[faults.server_to_client]
latency = ["1ms", "1ms"]

[expect]
within = "10s"
max_packet_ratio = {ratio}
"#
    );
    std::fs::write(&path, text).expect("scenario written");
    path
}

/// Expects ERROR 1 for a file it is served: action 2 fails as it ends.
fn failing(dir: &Path) -> PathBuf {
    scenario(
        dir,
        "served-not-missing",
        r#"{ get = "pxelinux.0", expect = 1 }"#,
        "1.2",
    )
}

fn passing(dir: &Path) -> PathBuf {
    scenario(
        dir,
        "passes",
        r#"{ get = "missing.cfg", expect = 1 }"#,
        "1.2",
    )
}

/// `[at 0.334s, FILE:337]` at the end of a failure line: the file and
/// the line number.
fn placed(line: &str) -> (String, usize) {
    let (_, place) = line.rsplit_once(", ").expect("placed");
    let (file, n) = place
        .trim_end_matches(']')
        .rsplit_once(':')
        .expect("file:line");
    (file.to_string(), n.parse().expect("a line number"))
}

#[test]
fn out_writes_a_failing_runs_files_and_its_failure_line_points_into_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = failing(dir.path());
    let good = passing(dir.path());
    let out = dir.path().join("out");
    // An earlier sweep's files for a run that passes now are removed.
    let stale = out.join("passes-1");
    std::fs::create_dir_all(&stale).expect("stale dir");
    std::fs::write(stale.join("verdict.txt"), "old\n").expect("stale verdict");
    let run = sim(&[
        bad.to_str().expect("utf-8"),
        good.to_str().expect("utf-8"),
        "--seeds",
        "2",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let text = stdout(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(!stale.exists(), "a passing run leaves no directory");
    assert!(!out.join("passes-2").exists());
    for seed in [1, 2] {
        let run_dir = out.join(format!("served-not-missing-{seed}"));
        for f in [
            "trace.txt",
            "trace.json",
            "trace.mmd",
            "run.pcap",
            "verdict.txt",
        ] {
            assert!(run_dir.join(f).is_file(), "{f} in {}", run_dir.display());
        }
        let header = format!(
            "FAILED served-not-missing seed {seed}: {}/",
            run_dir.display()
        );
        assert!(text.contains(&header), "{text}");
    }
    let run_dir = out.join("served-not-missing-1");
    let trace = std::fs::read_to_string(run_dir.join("trace.txt")).expect("trace");
    let verdict = std::fs::read_to_string(run_dir.join("verdict.txt")).expect("verdict");
    // verdict.txt: the failure, at the time it ended, pointing at the
    // trace line beside it: the client's last ACK, as the action ended.
    let failure = verdict.lines().next().expect("a failure");
    assert_eq!(verdict.lines().count(), 1, "{verdict}");
    assert!(
        failure.contains("client legacy action 2: expected ERROR 1, got completion (42000 bytes)"),
        "{failure}"
    );
    let (file, n) = placed(failure);
    assert_eq!(file, "trace.txt");
    let line = trace.lines().nth(n - 1).expect("the line exists");
    assert!(line.contains("legacy -> server ACK #83"), "{line}");
    let ended = failure
        .split("(ended at ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .expect("ended at");
    assert!(
        failure.contains(&format!("[at {ended}, trace.txt:{n}]")),
        "{failure}"
    );
    // The failure line on stdout says the same, with the whole path.
    let printed = format!("[at {ended}, {}:{n}]", run_dir.join("trace.txt").display());
    assert!(text.contains(&printed), "{text}");
    // The diagram marks the failure beside that datagram.
    let mmd = std::fs::read_to_string(run_dir.join("trace.mmd")).expect("mmd");
    assert!(mmd.starts_with("sequenceDiagram\n"), "{mmd}");
    assert!(
        mmd.contains(&format!("FAILED at {ended} (trace line {n}) ")),
        "{mmd}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("trace.json")).expect("json"))
            .expect("valid JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(trace.lines().count()));
}

#[test]
fn keep_all_writes_passing_runs_too_and_needs_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = passing(dir.path());
    let out = dir.path().join("out");
    let good = good.to_str().expect("utf-8");
    let refused = sim(&[good, "--keep", "all"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--out <DIR>"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out_arg = out.to_str().expect("utf-8");
    let run = sim(&[good, "--seed", "3", "--out", out_arg, "--keep", "all"]);
    assert!(run.status.success(), "{}", stdout(&run));
    let verdict = std::fs::read_to_string(out.join("passes-3/verdict.txt")).expect("verdict");
    assert_eq!(verdict, "pass\n");
    let mmd = std::fs::read_to_string(out.join("passes-3/trace.mmd")).expect("mmd");
    assert!(
        mmd.starts_with("sequenceDiagram\n") && !mmd.contains("FAILED"),
        "{mmd}"
    );
    assert!(out.join("passes-3/run.pcap").is_file());
    // And by default a passing run writes nothing.
    let fresh = dir.path().join("fresh");
    let run = sim(&[good, "--seed", "3", "--out", fresh.to_str().expect("utf-8")]);
    assert!(run.status.success());
    assert_eq!(std::fs::read_dir(&fresh).expect("created").count(), 0);
}

#[test]
fn an_unwritable_out_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = passing(dir.path());
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").expect("file");
    let run = sim(&[
        good.to_str().expect("utf-8"),
        "--out",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.starts_with("tftplab-sim: cannot create "), "{err}");
    assert!(stdout(&run).is_empty(), "nothing ran: {}", stdout(&run));
}

#[test]
fn without_out_a_failure_points_into_the_replays_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The bound 0 (plus the judge's 10) fails at the eleventh datagram.
    let over = scenario(
        dir.path(),
        "over-bound",
        r#"{ get = "missing.cfg", expect = 1 }"#,
        "0",
    );
    let run = sim(&[over.to_str().expect("utf-8"), "--seed", "1"]);
    let text = stdout(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("datagrams sent; the bound is 10 "))
        .expect("the bound's failure");
    let (file, n) = placed(line);
    assert_eq!(file, "over-bound-1.trace");
    assert_eq!(n, 11, "the first datagram over the bound: {line}");
    assert!(
        text.contains("--seed 1 --trace over-bound-1.trace"),
        "{text}"
    );
    // The replay's trace has that datagram on that line, at that time.
    let trace = dir.path().join("over-bound-1.trace");
    let replay = sim(&[
        over.to_str().expect("utf-8"),
        "--seed",
        "1",
        "--trace",
        trace.to_str().expect("utf-8"),
    ]);
    assert_eq!(replay.status.code(), Some(1));
    let trace = std::fs::read_to_string(trace).expect("trace");
    let eleventh = trace.lines().nth(10).expect("line 11");
    let ms: f64 = eleventh
        .split("ms")
        .next()
        .and_then(|t| t.trim().parse().ok())
        .expect("a time");
    assert!(
        line.contains(&format!("[at {:.3}s, ", ms / 1000.0)),
        "{line} / {eleventh}"
    );
}

/// Runs the passing scenario once (seed 1) with `--pcap` and `flag`,
/// writing into `dir`; the pcap's path and the other file's.
fn pcap_and(dir: &Path, flag: &str, file: &str) -> (PathBuf, PathBuf) {
    let good = passing(dir);
    let (pcap, other) = (dir.join("run.pcap"), dir.join(file));
    let run = sim(&[
        good.to_str().expect("utf-8"),
        "--seed",
        "1",
        "--pcap",
        pcap.to_str().expect("utf-8"),
        flag,
        other.to_str().expect("utf-8"),
    ]);
    assert!(run.status.success(), "{}", stdout(&run));
    (pcap, other)
}

/// A short run's pcap: one record per line of its trace, at the line's
/// simulated time, between the hosts' made-up addresses on the
/// simulation's ports, carrying the datagram's own bytes.
#[test]
fn a_runs_pcap_holds_its_datagrams_as_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pcap, json) = pcap_and(dir.path(), "--json", "run.json");
    let bytes = std::fs::read(&pcap).expect("pcap");
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "classic pcap, microseconds"
    );
    assert_eq!(&bytes[20..24], &[1, 0, 0, 0], "Ethernet");
    let records = read_records(&bytes).expect("parses");
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(json).expect("json")).expect("JSON");
    // One record per datagram sent: at least the request, 83 blocks and
    // their ACKs.
    assert_eq!(records.len(), events.len());
    assert!(records.len() > 1 + 83 * 2, "{}", records.len());
    for (r, e) in records.iter().zip(&events) {
        let at_us = e["at_us"].as_u64().expect("at_us");
        assert_eq!(u64::from(r.secs) * 1_000_000 + u64::from(r.micros), at_us);
        let f = &r.frame;
        let udp_len = usize::from(u16::from_be_bytes([f[38], f[39]]));
        assert_eq!(udp_len - 8, e["len"].as_u64().expect("len") as usize);
        let ports = &e["ports"];
        assert_eq!(u64::from(u16::from_be_bytes([f[34], f[35]])), ports[0]);
        assert_eq!(u64::from(u16::from_be_bytes([f[36], f[37]])), ports[1]);
        let ip = |name: &serde_json::Value| match name.as_str() {
            Some("server") => [198, 18, 0, 1],
            Some("legacy") => [198, 18, 0, 2],
            other => panic!("unknown host {other:?}"),
        };
        assert_eq!(f[26..30], ip(&e["from"]));
        assert_eq!(f[30..34], ip(&e["to"]));
    }
    // The request and the first block, byte for byte.
    assert_eq!(events[0]["packet"], "RRQ \"pxelinux.0\" octet");
    assert_eq!(&records[0].frame[42..], b"\x00\x01pxelinux.0\x00octet\x00");
    assert_eq!(events[1]["packet"], "DATA #1 (512 B)");
    let file = tftplab_sim::lab::scenario::generate(42_000, 1);
    let payload = &records[1].frame[42..];
    assert_eq!(&payload[..4], &[0, 3, 0, 1]);
    assert_eq!(&payload[4..], &file[..512]);
}

/// tcpdump or tshark, whichever is installed, reads the pcap whole.
#[test]
fn a_runs_pcap_reads_in_tcpdump_or_tshark() {
    let which = |tool: &str| {
        Command::new("which")
            .arg(tool)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let Some(tool) = ["tcpdump", "tshark"].into_iter().find(|t| which(t)) else {
        let why = "neither tcpdump nor tshark is installed (apt-get install tcpdump)";
        assert!(
            std::env::var_os("TFTPLAB_REQUIRE_PEERS").is_none_or(|v| v != "1"),
            "TFTPLAB_REQUIRE_PEERS=1 and {why}"
        );
        eprintln!("SKIPPED a_runs_pcap_reads_in_tcpdump_or_tshark: {why}");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (pcap, trace) = pcap_and(dir.path(), "--trace", "run.trace");
    let datagrams = std::fs::read_to_string(trace)
        .expect("trace")
        .lines()
        .count();
    let pcap = pcap.to_str().expect("utf-8");
    let args: &[&str] = match tool {
        "tcpdump" => &["-nn", "-vv", "-r", pcap],
        _ => &["-n", "-V", "-o", "udp.check_checksum:TRUE", "-r", pcap],
    };
    let read = Command::new(tool).args(args).output().expect("runs");
    let text = stdout(&read);
    assert!(
        read.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let packets = match tool {
        "tcpdump" => text.lines().filter(|l| l.contains(" IP (")).count(),
        _ => text.lines().filter(|l| l.starts_with("Frame ")).count(),
    };
    assert_eq!(packets, datagrams, "{tool} read:\n{text}");
    let bad = text.to_lowercase();
    assert!(
        !bad.contains("bad udp cksum") && !bad.contains("checksum status: bad"),
        "{text}"
    );
}

fn sim_merge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tftplab-sim"))
        .arg("merge")
        .args(args)
        .output()
        .expect("run tftplab-sim merge")
}

fn rows(report: &Path) -> Vec<tftplab_sim::shard::RunRow> {
    let text = std::fs::read_to_string(report).expect("report");
    let report: tftplab_sim::shard::Report = serde_json::from_str(&text).expect("JSON");
    report.runs
}

/// Three shards of a sweep hold every run of the unsharded sweep once,
/// each with the same verdict and the same trace, and merge into one
/// passing report; a missing or doubled shard is refused.
#[test]
fn the_union_of_the_shards_is_the_unsharded_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |n: &str| dir.path().join(n);
    let a = passing(dir.path());
    let b = scenario(
        dir.path(),
        "other",
        r#"{ get = "missing.cfg", expect = 1 }"#,
        "1.2",
    );
    let (a, b) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    let all = d("all.json");
    let out = sim(&[
        a,
        b,
        "--seeds",
        "6",
        "--report",
        all.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    let mut shards = Vec::new();
    for i in 1..=3 {
        let report = d(&format!("shard-{i}.json"));
        let shard = format!("{i}/3");
        let out = sim(&[
            a,
            b,
            "--seeds",
            "6",
            "--shard",
            &shard,
            "--report",
            report.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", stdout(&out));
        shards.push(report);
    }
    let mut union: Vec<_> = shards.iter().flat_map(|s| rows(s)).collect();
    union.sort_by(|x, y| (&x.scenario, x.seed).cmp(&(&y.scenario, y.seed)));
    let mut whole = rows(&all);
    whole.sort_by(|x, y| (&x.scenario, x.seed).cmp(&(&y.scenario, y.seed)));
    assert_eq!(whole.len(), 12);
    assert_eq!(
        union, whole,
        "run for run: verdicts, failures and trace digests"
    );
    assert!(
        shards.iter().all(|s| rows(s).len() < 12),
        "every shard took a part"
    );

    let files: Vec<&str> = shards.iter().map(|s| s.to_str().expect("utf-8")).collect();
    let junit = d("sweep.xml");
    let mut args = files.clone();
    args.extend(["--junit", junit.to_str().expect("utf-8")]);
    let out = sim_merge(&args);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("12 runs, 12 passed, 0 failed"),
        "{}",
        stdout(&out)
    );
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(
        xml.contains("<testsuite name=\"other\" tests=\"6\" failures=\"0\">"),
        "{xml}"
    );

    let out = sim_merge(&files[..2]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing shard(s): 3/3"));
    let out = sim_merge(&[files[0], files[0], files[1], files[2]]);
    assert_eq!(out.status.code(), Some(2));
}

/// `tftplab-sim ARGS...` from the repository root.
fn sim_raw(args: &[&str]) -> Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new(env!("CARGO_BIN_EXE_tftplab-sim"))
        .current_dir(repo)
        .args(args)
        .output()
        .expect("run tftplab-sim")
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A copy of scenarios/legacy-client.toml that fails every run (a packet
/// bound of 0), with a comment of its own and a file read from a path
/// beside it, in `dir/scen/`.
fn failing_copy(dir: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(repo.join("scenarios/legacy-client.toml")).expect("copy");
    let text = text.replace(
        "max_packet_ratio = 1.2",
        "max_packet_ratio = 0.0   # impossible: every run fails",
    );
    let text = format!(
        "# A comment the pinned file keeps.\n{text}\n[[files]]\nname = \"boot.bin\"\npath = \"img/boot.bin\"\n"
    );
    let scen = dir.join("scen");
    std::fs::create_dir_all(scen.join("img")).expect("dirs");
    std::fs::write(scen.join("img/boot.bin"), b"a file read from a path").expect("file");
    let path = scen.join("legacy-client.toml");
    std::fs::write(&path, text).expect("written");
    path
}

/// The failure lines under a FAILED header of `run` or `pin` output.
fn failure_lines(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("FAILED "))
        .skip(1)
        .take_while(|l| l.starts_with("  ") && !l.trim_start().starts_with("replay:"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn pin_keeps_a_failing_run_as_a_regression_file_that_replays_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = failing_copy(dir.path());
    let to = dir.path().join("regressions");
    let pin = sim_raw(&["pin", utf8(&original), "--seed", "3", "--to", utf8(&to)]);
    let text = stdout(&pin);
    assert_eq!(
        pin.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&pin.stderr)
    );
    let file = to.join("legacy-client-seed3.toml");
    assert!(
        text.contains(&format!("pinned: {}", file.display())),
        "{text}"
    );
    assert!(text.starts_with("FAILED legacy-client seed 3:"), "{text}");
    let pinned = std::fs::read_to_string(&file).expect("the regression file");
    // The comment on top: what, when, how, the failure, the replay.
    assert!(
        pinned.starts_with(&format!(
            "# Regression file: scenario \"legacy-client\" ({}) with seed 3 pinned,\n# made on ",
            original.display()
        )),
        "{pinned}"
    );
    assert!(
        pinned.contains(&format!(
            "#   tftplab-sim pin {} --seed 3 --to {}\n",
            original.display(),
            to.display()
        )),
        "{pinned}"
    );
    assert!(
        pinned.contains("# When pinned, the run failed:\n#   "),
        "{pinned}"
    );
    let failure = pinned
        .lines()
        .find(|l| l.contains("datagrams sent; the bound is 10 "))
        .expect("the failure in the comment");
    assert!(
        failure.contains("(at ") && failure.contains(", trace line 11)"),
        "{failure}"
    );
    assert!(
        pinned.contains(&format!(
            "# Replay: cargo run -p tftplab-sim --release -- run {} --seed 3 --trace legacy-client-seed3-3.trace\n",
            file.display()
        )),
        "{pinned}"
    );
    // The original's text, comments kept, with the name and seed set and
    // the path made to work from the new directory.
    assert!(
        pinned.contains("# A comment the pinned file keeps.\n"),
        "{pinned}"
    );
    assert!(
        pinned.contains("max_packet_ratio = 0.0   # impossible: every run fails\n"),
        "{pinned}"
    );
    assert!(
        pinned.contains("name = \"legacy-client-seed3\"\nseeds = [3]\ndescription = "),
        "{pinned}"
    );
    assert!(
        pinned.contains("path = \"../scen/img/boot.bin\"\n"),
        "{pinned}"
    );
    let loaded = tftplab_sim::lab::Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.seeds, Some(vec![3]));
    assert_eq!(loaded.name, "legacy-client-seed3");

    // `run` on it runs its pinned seed only, and fails the same way.
    let replay = sim_raw(&["run", "--quiet", utf8(&file), "--seeds", "5"]);
    let replayed = stdout(&replay);
    assert_eq!(replay.status.code(), Some(1), "{replayed}");
    assert!(
        replayed.contains("1 runs, 0 passed, 1 failed"),
        "{replayed}"
    );
    assert!(
        replayed.contains("FAILED legacy-client-seed3 seed 3:"),
        "{replayed}"
    );
    let strip = |lines: Vec<String>| -> Vec<String> {
        // The trace file each names differs; the failures do not.
        lines
            .into_iter()
            .map(|l| l.split(" [at ").next().unwrap_or_default().to_string())
            .collect()
    };
    let first = strip(failure_lines(&text));
    assert!(!first.is_empty(), "{text}");
    assert_eq!(strip(failure_lines(&replayed)), first);
    // Its failure line says how to pin it (as every failure line does).
    assert!(
        replayed.contains(&format!(
            "  pin:    cargo run -p tftplab-sim --release -- pin {} --seed 3\n",
            file.display()
        )),
        "{replayed}"
    );

    // An existing file is kept, unless --force.
    let again = sim_raw(&["pin", utf8(&original), "--seed", "3", "--to", utf8(&to)]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&again.stderr).trim(),
        format!(
            "tftplab-sim: {} exists: pass --force to replace it",
            file.display()
        )
    );
    assert!(stdout(&again).is_empty(), "refused before running");
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), pinned);
    let forced = sim_raw(&[
        "pin",
        utf8(&original),
        "--seed",
        "3",
        "--to",
        utf8(&to),
        "--force",
    ]);
    assert_eq!(forced.status.code(), Some(0), "{}", stdout(&forced));
}

#[test]
fn pin_writes_a_passing_run_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pin = sim_raw(&[
        "pin",
        "scenarios/lost-oack.toml",
        "--seed",
        "2",
        "--to",
        utf8(dir.path()),
    ]);
    assert_eq!(pin.status.code(), Some(0), "{}", stdout(&pin));
    assert!(
        stdout(&pin).starts_with("lost-oack seed 2: passed\n"),
        "{}",
        stdout(&pin)
    );
    let file = dir.path().join("lost-oack-seed2.toml");
    let text = std::fs::read_to_string(&file).expect("written");
    assert!(
        text.contains("# When pinned, the run passed: this file keeps it passing.\n"),
        "{text}"
    );
    // Pinned again, it keeps its name.
    let again = sim_raw(&[
        "pin",
        utf8(&file),
        "--seed",
        "2",
        "--to",
        utf8(dir.path()),
        "--force",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
    let s = tftplab_sim::lab::Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.name, "lost-oack-seed2");
    // A bad scenario is one line and exit 2.
    let bad = dir.path().join("bad.toml");
    let legacy = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/legacy-client.toml"),
    )
    .expect("scenario");
    std::fs::write(&bad, format!("seeds = []\n{legacy}")).expect("bad");
    let out = sim_raw(&["pin", utf8(&bad), "--seed", "1", "--to", utf8(dir.path())]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("tftplab-sim: {}:1: seeds = []", bad.display())),
        "{err}"
    );
}

/// A scenario that pins its seeds runs those instead of --seeds; --seed S
/// runs S; --shard splits the pinned pairs like any other.
#[test]
fn pinned_seeds_replace_the_seed_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pinned.toml");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/legacy-client.toml"),
    )
    .expect("scenario")
    .replace(
        "name = \"legacy-client\"",
        "name = \"pinned\"\nseeds = [4, 9, 11]",
    );
    std::fs::write(&path, text).expect("written");
    let report = dir.path().join("r.json");
    let out = sim(&[utf8(&path), "--seeds", "2", "--report", utf8(&report)]);
    assert!(out.status.success(), "{}", stdout(&out));
    let seeds: Vec<u64> = rows(&report).iter().map(|r| r.seed).collect();
    assert_eq!(seeds, [4, 9, 11]);
    let out = sim(&[utf8(&path), "--seed", "2", "--report", utf8(&report)]);
    assert!(out.status.success(), "{}", stdout(&out));
    let seeds: Vec<u64> = rows(&report).iter().map(|r| r.seed).collect();
    assert_eq!(seeds, [2]);
    let mut union = Vec::new();
    for i in 1..=2 {
        let shard = format!("{i}/2");
        let out = sim(&[utf8(&path), "--shard", &shard, "--report", utf8(&report)]);
        assert!(out.status.success(), "{}", stdout(&out));
        union.extend(rows(&report).iter().map(|r| r.seed));
    }
    union.sort_unstable();
    assert_eq!(union, [4, 9, 11]);
}

/// `plans` makes plan I of base seed B the same way every time: the same
/// verdicts and traces twice, the same plan alone (--first I --cases 1) as
/// in a sweep, and shards that merge into the sweep.
#[test]
fn plans_are_deterministic_and_shard_like_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |n: &str| dir.path().join(n);
    let plans = |extra: &[&str], report: &Path| {
        let mut args = vec![
            "plans",
            "--quiet",
            "--seed-base",
            "11",
            "--report",
            utf8(report),
        ];
        args.extend_from_slice(extra);
        let out = sim_raw(&args);
        assert!(
            out.status.code().is_some_and(|c| c < 2),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        (out, rows(report))
    };
    let (out, first) = plans(&["--cases", "6"], &d("a.json"));
    let text = stdout(&out);
    assert!(text.contains("\n6 plans, "), "{text}");
    assert!(text.contains(" simulated seconds, "), "{text}");
    let (_, second) = plans(&["--cases", "6"], &d("b.json"));
    assert_eq!(first, second, "the same verdicts and trace digests");
    assert_eq!(
        first.iter().map(|r| r.seed).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    assert!(first.iter().all(|r| r.scenario == "plans-11"));
    let (_, alone) = plans(&["--first", "4", "--cases", "1"], &d("c.json"));
    assert_eq!(alone, first[4..5]);
    let mut shards = Vec::new();
    for i in 1..=2 {
        let report = d(&format!("s{i}.json"));
        let shard = format!("{i}/2");
        plans(&["--cases", "6", "--shard", &shard], &report);
        shards.push(report);
    }
    let merged = sim_merge(&[utf8(&shards[0]), utf8(&shards[1])]);
    assert!(stdout(&merged).contains("6 runs, "), "{}", stdout(&merged));
}

/// `merge` prints under each failure the commands `run` does: the replay
/// with a trace and the pin.
#[test]
fn merge_prints_the_pin_command_of_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = failing(dir.path());
    let report = dir.path().join("r.json");
    let run = sim(&[utf8(&bad), "--seed", "2", "--report", utf8(&report)]);
    assert_eq!(run.status.code(), Some(1));
    let merged = sim_merge(&[utf8(&report)]);
    let text = stdout(&merged);
    assert_eq!(merged.status.code(), Some(1), "{text}");
    for line in [
        format!(
            "  replay: cargo run -p tftplab-sim --release -- run {} --seed 2 --trace served-not-missing-2.trace\n",
            bad.display()
        ),
        format!(
            "  pin:    cargo run -p tftplab-sim --release -- pin {} --seed 2\n",
            bad.display()
        ),
    ] {
        assert!(text.contains(&line), "{line}\n{text}");
        assert!(stdout(&run).contains(&line), "{line}\n{}", stdout(&run));
    }
}
