//! `sim/sweep.sh`, the one entry point of a sharded sweep for the nightly
//! workflow, the Kubernetes example and developers: it runs, its exit
//! statuses mean what its help says, and the workflow and the manifests
//! call it as its help says it is called.

use std::path::Path;
use std::process::{Command, Output};

fn sim_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn repo() -> &'static Path {
    sim_dir().parent().unwrap()
}

/// `bash sim/sweep.sh ARGS` with this build's simulator.
fn sweep(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(sim_dir().join("sweep.sh"))
        .args(args)
        .env("TFTPLAB_SIM", env!("CARGO_BIN_EXE_tftplab-sim"))
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn help() -> String {
    let out = sweep(&["--help"]);
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

/// The commands the help shows (`sim/sweep.sh shard I N SEEDS OUTDIR
/// [SCENARIO...]`), each with the number of arguments it needs.
fn commands() -> Vec<(String, usize)> {
    help()
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "sim/sweep.sh").then_some(())?;
            let command = words.next()?.to_owned();
            let needed = words.filter(|w| !w.starts_with('[')).count();
            Some((command, needed))
        })
        .collect()
}

/// Runs shards 1..=n of `seeds` seeds of `scenarios` into `out`, each of
/// which must exit 0, then the merge.
fn sharded(n: u64, seeds: u64, out: &Path, scenarios: &[&Path]) -> Output {
    for i in 1..=n {
        let mut args = vec![
            "shard".to_owned(),
            i.to_string(),
            n.to_string(),
            seeds.to_string(),
            out.display().to_string(),
        ];
        args.extend(scenarios.iter().map(|s| s.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let shard = sweep(&args);
        assert!(shard.status.success(), "shard {i}/{n}: {}", text(&shard));
        assert!(out.join(format!("reports/shard-{i}.json")).is_file());
    }
    sweep(&["merge", &out.display().to_string()])
}

#[test]
fn the_help_shows_both_commands_and_a_bad_call_exits_2() {
    let commands = commands();
    assert!(
        commands.contains(&("shard".to_owned(), 4)) && commands.contains(&("merge".to_owned(), 1)),
        "{commands:?}"
    );
    for bad in [&["bogus"][..], &["shard", "3", "2", "1", "out"], &["merge"]] {
        let out = sweep(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
        assert!(text(&out).contains("usage: sim/sweep.sh"), "{bad:?}");
    }
}

#[test]
fn a_two_shard_sweep_merges_and_a_failed_run_comes_with_its_replay_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let lost_oack = repo().join("scenarios/lost-oack.toml");

    // Passing: one seed, so one shard has no run of it at all.
    let out = dir.path().join("pass");
    let merged = sharded(2, 1, &out, &[&lost_oack]);
    let printed = text(&merged);
    assert_eq!(merged.status.code(), Some(0), "{printed}");
    let row: Vec<&str> = printed
        .lines()
        .find(|l| l.starts_with("lost-oack "))
        .unwrap_or_else(|| panic!("no lost-oack row:\n{printed}"))
        .split_whitespace()
        .collect();
    assert_eq!(row, ["lost-oack", "1", "1", "0"], "{printed}");
    assert!(printed.contains("1 runs, 1 passed, 0 failed"), "{printed}");
    assert!(out.join("sweep.xml").is_file() && out.join("merge.txt").is_file());

    // Failing: the same scenario given a bound it cannot meet (it ends at
    // 4.3 s), as a path outside the repository.
    let scenario = std::fs::read_to_string(&lost_oack).unwrap();
    assert!(scenario.contains("within = \"8s\""));
    let tight = dir.path().join("tight.toml");
    std::fs::write(
        &tight,
        scenario
            .replace("within = \"8s\"", "within = \"1s\"")
            .replace("name = \"lost-oack\"", "name = \"lost-oack-tight\""),
    )
    .unwrap();
    let out = dir.path().join("fail");
    let merged = sharded(2, 2, &out, &[&tight]);
    let printed = text(&merged);
    assert_eq!(merged.status.code(), Some(1), "{printed}");
    for seed in [1, 2] {
        assert!(
            printed.contains(&format!("FAILED lost-oack-tight seed {seed}:")),
            "{printed}"
        );
        let replay = format!(
            "  replay: cargo run -p tftplab-sim --release -- run {} --seed {seed} --trace",
            tight.canonicalize().unwrap().display()
        );
        assert!(printed.contains(&replay), "{replay}\n{printed}");
        let files = out.join(format!("runs/lost-oack-tight-{seed}"));
        for f in ["trace.txt", "run.pcap", "verdict.txt"] {
            assert!(files.join(f).is_file(), "{}/{f}", files.display());
        }
    }
    assert_eq!(
        std::fs::read_to_string(out.join("merge.txt")).unwrap(),
        String::from_utf8_lossy(&merged.stdout)
            .split("\nEach failed run's")
            .next()
            .unwrap(),
        "merge.txt is what the merge printed"
    );

    // A missing shard is not a sweep.
    std::fs::remove_file(out.join("reports/shard-2.json")).unwrap();
    let merged = sweep(&["merge", &out.display().to_string()]);
    assert_eq!(merged.status.code(), Some(2), "{}", text(&merged));
    assert!(text(&merged).contains("missing shard(s): 2/2"));

    // A shard that cannot run writes no report and fails.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\nbogus = 1\n").unwrap();
    let out = dir.path().join("bad");
    let shard = sweep(&[
        "shard",
        "1",
        "1",
        "1",
        &out.display().to_string(),
        &bad.display().to_string(),
    ]);
    assert_eq!(shard.status.code(), Some(2), "{}", text(&shard));
    assert!(!out.join("reports/shard-1.json").exists());
}

/// Every `sim/sweep.sh COMMAND ...` outside comments in a file, with the
/// words after it up to the end of the shell command.
fn calls(file: &str) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let mut found = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let Some((_, rest)) = line.split_once("sim/sweep.sh ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let command = words.next().unwrap().to_owned();
        let args = words
            .take_while(|w| !["||", "&&", ";", "|", ">", "#"].contains(w))
            .map(str::to_owned)
            .collect();
        found.push((command, args));
    }
    found
}

#[test]
fn the_workflow_and_the_kubernetes_jobs_call_the_script_as_its_help_says() {
    let commands = commands();
    let files = [
        (".github/workflows/sim-sweep.yml", &["shard", "merge"][..]),
        ("examples/kubernetes/sim-sweep.yaml", &["shard"]),
        ("examples/kubernetes/sim-merge.yaml", &["merge"]),
    ];
    for (file, expected) in files {
        let calls = calls(file);
        let used: Vec<&str> = calls.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(used, expected, "{file}: the script's commands, in order");
        for (command, args) in &calls {
            let needed = commands.iter().find(|(c, _)| c == command).unwrap().1;
            // Scenarios may follow the shard's arguments; merge takes one.
            let fits = match command.as_str() {
                "shard" => args.len() >= needed,
                _ => args.len() == needed,
            };
            assert!(
                fits,
                "{file}: sim/sweep.sh {command} {args:?}: needs {needed}"
            );
        }
    }

    // The workflow uploads what the script writes where its help says.
    let workflow = std::fs::read_to_string(repo().join(files[0].0)).unwrap();
    let out = &calls(files[0].0)[0].1[3];
    for path in ["reports/shard-", "runs/", "merge.txt", "sweep.xml"] {
        let path = format!("{out}/{path}");
        assert!(workflow.contains(&path), "the workflow never names {path}");
        let documented = path.replacen(out.as_str(), "OUTDIR", 1);
        assert!(
            help().contains(&documented),
            "--help never names {documented}"
        );
    }

    // The Indexed Job's completions are the shards the script is told of.
    let job = std::fs::read_to_string(repo().join(files[1].0)).unwrap();
    // The word after the marks, found one after the other.
    let value = |marks: &[&str]| -> String {
        let mut at = 0;
        for mark in marks {
            at += job[at..].find(mark).unwrap_or_else(|| panic!("no {mark}")) + mark.len();
        }
        job[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_matches('"')
            .to_owned()
    };
    assert_eq!(
        value(&["completions:"]),
        value(&["name: SHARDS", "value:"]),
        "sim-sweep.yaml: completions and SHARDS differ"
    );
}
