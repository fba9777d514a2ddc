//! The README's code blocks, checked so that they cannot rot:
//!
//! - the "Serving and fetching files" block runs as printed, line for line,
//!   in a temporary directory (in a network namespace of its own when the
//!   test runs as root, so its fixed port 6969 is nobody else's), with this
//!   build's `tftplab` where `cargo build --release` would put it;
//! - every other shell block is a command the test cannot run from inside
//!   `cargo test` (the main job, the test suite itself, QEMU, benchmarks),
//!   so each of its commands must name things that exist: workspace
//!   packages, test targets, benches, examples, scripts and their flags;
//! - every Rust block is compiled, verbatim, by `examples/readme.rs`.
//!
//! A new block the test does not know how to check fails it, naming the
//! README line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const README: &str = include_str!("../README.md");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fenced block: its language tag, the README line of its first line,
/// and its text.
#[derive(Debug)]
struct Block {
    lang: String,
    line: usize,
    text: String,
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in README.lines().enumerate() {
        match (open.take(), line.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_owned(),
                    line: i + 2,
                    text: String::new(),
                })
            }
            (Some(block), Some(_)) => out.push(block),
            (Some(mut block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md: a code block is never closed");
    out
}

fn serving_block() -> Block {
    let mut serving: Vec<Block> = blocks()
        .into_iter()
        .filter(|b| b.lang == "sh" && b.text.contains("tftplab serve"))
        .collect();
    assert_eq!(serving.len(), 1, "one shell block serves files");
    serving.remove(0)
}

#[test]
fn every_rust_block_is_compiled_by_the_readme_example() {
    let example = std::fs::read_to_string(repo().join("examples/readme.rs")).unwrap();
    let example: Vec<&str> = example.lines().map(str::trim).collect();
    let rust: Vec<Block> = blocks().into_iter().filter(|b| b.lang == "rust").collect();
    assert!(!rust.is_empty());
    for block in rust {
        let lines: Vec<&str> = block.text.lines().map(str::trim).collect();
        assert!(
            example.windows(lines.len()).any(|w| w == lines.as_slice()),
            "README.md:{}: this Rust block is not in examples/readme.rs as it is printed; \
             copy it there (inside a function) so it is compiled",
            block.line
        );
    }
}

/// The block needs `tftplab` at `target/release/tftplab`, as its first
/// line (`cargo build --release`) leaves it; the test puts this build's
/// binary there and runs every other line.
#[test]
fn the_serving_block_runs_as_printed() {
    let block = serving_block();
    assert!(
        block.text.starts_with("cargo build --release\n"),
        "README.md:{}: the block builds tftplab first",
        block.line
    );
    let script = block.text.replacen("cargo build --release\n", "", 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_tftplab"),
        dir.path().join("target/release/tftplab"),
    )
    .unwrap();
    std::fs::write(dir.path().join("block.sh"), &script).unwrap();
    let mut cmd = if own_netns_possible() {
        let mut c = Command::new("unshare");
        c.args([
            "--net",
            "sh",
            "-c",
            "ip link set lo up && exec bash -e block.sh",
        ]);
        c
    } else {
        eprintln!(
            "readme: not root, so the block runs in this network namespace: port 6969 must be free"
        );
        let mut c = Command::new("bash");
        c.args(["-e", "block.sh"]);
        c
    };
    let out = cmd.current_dir(dir.path()).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "README.md:{}: the block failed ({}):\n{stdout}\n{stderr}",
        block.line,
        out.status
    );
    let read = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
    assert!(read("start4.elf") == read("tftproot/9ffefdef/start4.elf"));
    assert!(read("tftproot/boot/kernel.img") == read("kernel.img"));
    assert_eq!(read("tftproot/config.txt"), b"enable_uart=1\n");
    assert!(
        stderr.contains("received 9ffefdef/start4.elf: 2228224 bytes")
            && stderr.contains("sent boot/kernel.img: 5000000 bytes"),
        "{stderr}"
    );
    let listed: BTreeSet<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for name in ["9ffefdef/start4.elf", "boot/kernel.img", "config.txt"] {
        assert!(listed.contains(name), "`store ls` lists {name}:\n{stdout}");
    }
}

fn own_netns_possible() -> bool {
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    };
    root && Command::new("unshare")
        .args(["--net", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// The workspace's packages and the directory each lives in.
fn packages() -> Vec<(String, PathBuf)> {
    [".", "sim", "hw-tests"]
        .iter()
        .map(|dir| {
            let toml = std::fs::read_to_string(repo().join(dir).join("Cargo.toml")).unwrap();
            let name = toml
                .lines()
                .skip_while(|l| l.trim() != "[package]")
                .find_map(|l| l.strip_prefix("name = "))
                .unwrap()
                .trim_matches('"')
                .to_owned();
            (name, repo().join(dir))
        })
        .collect()
}

/// Checks one command line of a block the test does not run; `Err` says
/// what is wrong with it.
fn check_command(line: &str, packages: &[(String, PathBuf)]) -> Result<(), String> {
    let command = line.split(" #").next().unwrap_or("").trim();
    let mut words: Vec<&str> = command
        .split_whitespace()
        .skip_while(|w| w.contains('=') || *w == "sudo")
        .collect();
    if words.is_empty() {
        return Ok(());
    }
    // `a && b`: each part on its own.
    if let Some(at) = words.iter().position(|w| *w == "&&") {
        let rest = words.split_off(at + 1).join(" ");
        words.pop();
        check_command(&words.join(" "), packages)?;
        return check_command(&rest, packages);
    }
    let value = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1).copied())
    };
    match words[0] {
        "cargo" => {
            let package = value("-p").unwrap_or("tftplab");
            let dir = &packages
                .iter()
                .find(|(name, _)| name == package)
                .ok_or(format!("no workspace package `{package}`"))?
                .1;
            let exists = |what: &str, path: PathBuf| {
                if path.exists() {
                    Ok(())
                } else {
                    Err(format!("no {what} {}", path.display()))
                }
            };
            if let Some(t) = value("--test") {
                exists("test", dir.join("tests").join(format!("{t}.rs")))?;
            }
            if let Some(b) = value("--bench") {
                exists("bench", dir.join("benches").join(format!("{b}.rs")))?;
            }
            if let Some(e) = value("--example") {
                exists("example", dir.join("examples").join(format!("{e}.rs")))?;
            }
            if let Some(b) = value("--bin") {
                if b != package {
                    exists("binary", dir.join("src/bin").join(b))?;
                }
            }
            Ok(())
        }
        script if script.contains('/') => {
            let path = repo().join(script);
            let meta = std::fs::metadata(&path).map_err(|e| format!("{script}: {e}"))?;
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o111 == 0 {
                return Err(format!("{script} is not executable"));
            }
            let help = Command::new(&path)
                .arg("--help")
                .output()
                .map_err(|e| format!("{script} --help: {e}"))?;
            let help = String::from_utf8_lossy(&help.stdout).into_owned()
                + &String::from_utf8_lossy(&help.stderr);
            for flag in words.iter().filter(|w| w.starts_with("--")) {
                if !help.contains(flag) {
                    return Err(format!("{script} --help does not mention {flag}"));
                }
            }
            Ok(())
        }
        other => Err(format!(
            "`{other}` is neither run nor checked by tests/readme.rs; teach it"
        )),
    }
}

#[test]
fn every_other_shell_block_names_things_that_exist() {
    let packages = packages();
    let serving = serving_block().line;
    let mut checked = 0;
    for block in blocks()
        .into_iter()
        .filter(|b| b.lang == "sh" && b.line != serving)
    {
        for (i, line) in block.text.lines().enumerate() {
            if let Err(why) = check_command(line, &packages) {
                panic!("README.md:{}: {why}", block.line + i);
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} commands found");
}

#[test]
fn the_checker_catches_what_rots() {
    let packages = packages();
    for bad in [
        "cargo test -p tftplab-nope",
        "cargo test -p tftplab-hw --test no_such_test",
        "cargo bench --bench no_such_bench",
        "benches/no-such-script.sh --runs 3",
        "benches/compare-peers.sh --no-such-flag 3",
        "make all",
    ] {
        assert!(check_command(bad, &packages).is_err(), "{bad}");
    }
    for good in [
        "cargo run -p tftplab-sim --release -- run   # the main job",
        "TFTPLAB_REQUIRE_NETNS=1 cargo test -p tftplab-hw --test conformance -- --nocapture",
        "cargo build --release --bin tftplab && cargo bench --bench scale",
        "sudo benches/compare-peers.sh --size-mib 64 --runs 5",
    ] {
        assert_eq!(check_command(good, &packages), Ok(()), "{good}");
    }
}
