//! `tftplab-hw run` against a stand-in board: a network namespace whose
//! "power" command starts real TFTP clients (tftp-hpa, busybox) that fetch
//! what the scenario's actions say, and whose "console" is a log the
//! stand-in writes the SHA-256 of what it fetched to. The same scenario
//! files run in the simulator, and both must agree on every outcome.

mod common;

use common::standin::kind;
use common::{netns_enabled, quote, sha256, toml_str, Lab};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tftplab_hw::boards::Inventory;
use tftplab_hw::pcap::read_frames;
use tftplab_hw::runner::{run_one, RunOptions};
use tftplab_sim::lab::scenario::{ActionKind, Scenario};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scenario(rel: &str) -> PathBuf {
    repo().join(rel)
}

/// The stand-in's power commands and console for `scenario`: `cycle`
/// starts, in the board namespace and its own session, one `client`
/// command per get action (`{name}` and `{out}` filled in), then writes
/// `sha256sum` of what it fetched to the console log; `off` ends that
/// session.
fn stand_in(lab: &Lab, dir: &Path, scenario: &Scenario, client: &str, labels: &str) -> PathBuf {
    let fetched = dir.join("fetched");
    std::fs::create_dir_all(&fetched).expect("mkdir");
    let console = dir.join("console.log");
    std::fs::write(&console, "").expect("console");
    let mut steps = Vec::new();
    for a in scenario.clients.iter().flat_map(|c| &c.actions) {
        if let ActionKind::Get { name, .. } = &a.kind {
            let out = fetched.join(name.replace('/', "_"));
            steps.push(
                client
                    .replace("{name}", name)
                    .replace("{out}", &out.to_string_lossy()),
            );
        }
    }
    steps.push(format!(
        "cd {} && sha256sum * >> {}",
        quote(&fetched.to_string_lossy()),
        quote(&console.to_string_lossy())
    ));
    let script = steps.join("; ");
    let pid = dir.join("board.pid");
    let pid = quote(&pid.to_string_lossy());
    let on = format!(
        "ip netns exec {ns} setsid sh -c {script} </dev/null >/dev/null 2>&1 & echo $! > {pid}",
        ns = lab.board_ns,
        script = quote(&script)
    );
    let off = format!("[ -s {pid} ] && kill -- -$(cat {pid}) 2>/dev/null; rm -f {pid}; true");
    let boards = dir.join("boards.toml");
    std::fs::write(
        &boards,
        format!(
            r#"[[boards]]
name = "standin"
labels = {{ {labels} }}
interface = "{iface}"
netns = "{srv}"
board_ip = "{board_ip}"
server_ip = "{server_ip}"
profile = "{profile}"

[boards.power]
cycle = {on}
on = {on}
off = {off}
timeout = "10s"

[boards.console]
device = {console}
success = "{{sha256:{first}}}"
timeout = "20s"
"#,
            iface = lab.srv_if,
            srv = lab.srv_ns,
            board_ip = lab.board_ip,
            server_ip = lab.server_ip,
            profile = scenario.clients[0].profile.name(),
            on = toml_str(&on),
            off = toml_str(&off),
            console = toml_str(&console.to_string_lossy()),
            first = first_intact_get(scenario),
        ),
    )
    .expect("boards file");
    boards
}

fn first_intact_get(scenario: &Scenario) -> String {
    scenario
        .clients
        .iter()
        .flat_map(|c| &c.actions)
        .find_map(|a| match &a.kind {
            ActionKind::Get { name, .. } if a.expect == tftplab_sim::lab::Outcome::Intact => {
                Some(name.clone())
            }
            _ => None,
        })
        .expect("an intact get")
}

const TFTP_HPA: &str = "tftp -m octet $TFTPLAB_SERVER_IP -c get {name} {out}";

fn hw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tftplab-hw"))
        .args(args)
        .output()
        .expect("run tftplab-hw")
}

#[test]
fn run_passes_legacy_client_on_a_tftp_hpa_board_with_junit_pcap_and_console() {
    if !netns_enabled("run_passes_legacy_client_on_a_tftp_hpa_board_with_junit_pcap_and_console") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario("scenarios/legacy-client.toml");
    let s = Scenario::load(&path).expect("scenario");
    let boards = stand_in(
        &lab,
        dir.path(),
        &s,
        TFTP_HPA,
        "board = \"standin\", client = \"tftp-hpa\"",
    );
    // Kept under target/ so CI keeps the pcap, trace and JUnit file.
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hw-runs/netns");
    let _ = std::fs::remove_dir_all(&kept);
    let out_dir = kept.join("legacy-client");
    let junit = kept.join("legacy-client.xml");
    let out = hw(&[
        "run",
        "--boards",
        &boards.to_string_lossy(),
        "--select",
        "board=standin",
        "--out",
        &out_dir.to_string_lossy(),
        "--junit",
        &junit.to_string_lossy(),
        &path.to_string_lossy(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("standin") && stdout.contains("legacy-client") && stdout.contains(" pass ")
    );
    assert!(stdout.contains("1 runs, 1 passed, 0 failed"));
    // The board fetched the served bytes.
    let fetched = std::fs::read(dir.path().join("fetched/pxelinux.0")).expect("fetched");
    let served = tftplab_sim::lab::check::served_bytes(&s, "pxelinux.0").expect("served");
    assert_eq!(sha256(&fetched), sha256(&served));
    // JUnit: one suite for the board, one passing case for the scenario.
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(
        xml.contains("<testsuite name=\"standin\" tests=\"1\" failures=\"0\">"),
        "{xml}"
    );
    assert!(
        xml.contains("name=\"legacy-client\"") && !xml.contains("<failure"),
        "{xml}"
    );
    // The pcap has the whole exchange: 42 000 bytes in 83 DATA blocks, each
    // ACKed, plus the missing file's RRQ and ERROR.
    let pcap = std::fs::read(out_dir.join("standin-legacy-client.pcap")).expect("pcap");
    let frames = read_frames(&pcap).expect("pcap parses");
    let udp = frames
        .iter()
        .filter(|f| {
            matches!(
                tftplab_hw::frame::parse(f),
                tftplab_hw::frame::Frame::Udp(_)
            )
        })
        .count();
    assert!(udp >= 1 + 83 + 83 + 2, "{udp} UDP frames");
    let trace =
        std::fs::read_to_string(out_dir.join("standin-legacy-client.trace")).expect("trace");
    assert!(
        trace.contains("ERROR 1") || trace.contains("ERROR #1") || trace.contains("ERROR"),
        "{trace}"
    );
}

/// Runs a scenario with faults on a tftp-hpa stand-in board and in the
/// simulator with the same seed; both must pass, the board must have
/// fetched `file` byte-identical, and the two must agree on every action's
/// outcome. Returns the board's run, the simulator's, and the temp dir
/// holding the board's outputs.
fn board_and_simulator(
    scenario_path: &str,
    seed: u64,
    file: &str,
) -> (
    tftplab_hw::runner::HwRun,
    tftplab_sim::SimRun,
    tempfile::TempDir,
) {
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Scenario::load(scenario(scenario_path)).expect("scenario");
    let boards = stand_in(&lab, dir.path(), &s, TFTP_HPA, "board = \"standin\"");
    let inventory = Inventory::load(&boards).expect("inventory");
    let board = inventory.select("board=standin").expect("select")[0].clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let opts = RunOptions {
        seed,
        out_dir: dir.path().join("runs"),
        faults: true,
    };
    let run = rt.block_on(run_one(&board, &s, &opts));
    assert!(run.passed(), "{:?}\n{:?}", run.failures(), run.link);
    let fetched = std::fs::read(dir.path().join("fetched").join(file)).expect("fetched");
    let served = tftplab_sim::lab::check::served_bytes(&s, file).expect("served");
    assert_eq!(sha256(&fetched), sha256(&served));
    let sim = tftplab_sim::run(&s, seed, tftplab_sim::SimOptions::default());
    assert!(sim.passed(), "{:?}", sim.verdict.failures);
    let kinds = |r: &[tftplab_sim::lab::profile::ActionResult]| -> Vec<(usize, String)> {
        r.iter().map(|a| (a.index, kind(&a.got))).collect()
    };
    assert_eq!(kinds(&run.record.results), kinds(&sim.record.results));
    (run, sim, dir)
}

#[test]
fn board_and_simulator_agree_on_a_lossy_scenario() {
    if !netns_enabled("board_and_simulator_agree_on_a_lossy_scenario") {
        return;
    }
    let (run, _sim, _dir) =
        board_and_simulator("hw-tests/scenarios/legacy-lossy.toml", 3, "pxelinux.0");
    // Faults really happened on the wire, both ways, and the board's
    // checksums caught the corrupted frames.
    let trace = std::fs::read_to_string(&run.trace_file).expect("trace");
    assert!(
        trace.contains("standin -> server") && trace.contains("[dropped: loss]"),
        "{trace}"
    );
    assert!(
        run.record.dropped > 0 && run.link.fault_drops_out > 0 && run.link.fault_drops_in > 0,
        "{:?}",
        run.link
    );
    let kinds: Vec<String> = run.record.results.iter().map(|a| kind(&a.got)).collect();
    assert_eq!(kinds, ["intact", "ERROR 1", "intact"]);
}

#[test]
fn a_partition_cuts_the_link_and_the_board_recovers_as_in_the_simulator() {
    if !netns_enabled("a_partition_cuts_the_link_and_the_board_recovers_as_in_the_simulator") {
        return;
    }
    let (run, sim, _dir) =
        board_and_simulator("hw-tests/scenarios/legacy-partition.toml", 1, "vmlinuz");
    // Frames were dropped both ways while the link was cut, the server
    // resent into the cut, and the file still arrived whole after it.
    assert!(run.link.partitioned > 0, "{:?}", run.link);
    let trace = std::fs::read_to_string(&run.trace_file).expect("trace");
    assert!(
        trace.contains("server -> standin DATA") && trace.contains("[dropped: partitioned]"),
        "{trace}"
    );
    let kinds: Vec<String> = run.record.results.iter().map(|a| kind(&a.got)).collect();
    assert_eq!(kinds, ["intact"]);
    // Both ended after the heal at 2 s, not before the cut.
    assert!(
        run.record.results[0].ended_at > std::time::Duration::from_secs(2),
        "{:?}",
        run.record.results[0].ended_at
    );
    assert!(sim.record.results[0].ended_at > std::time::Duration::from_secs(2));
}

#[test]
fn a_board_that_never_fetches_fails_the_run() {
    if !netns_enabled("a_board_that_never_fetches_fails_the_run") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario("scenarios/legacy-client.toml");
    let s = Scenario::load(&path).expect("scenario");
    // The "board" asks for a file the scenario does not list, so the
    // expected transfers never happen and the console never shows the hash.
    let client = "tftp -m octet $TFTPLAB_SERVER_IP -c get nothing-{name} {out}";
    let boards = stand_in(&lab, dir.path(), &s, client, "board = \"standin\"");
    let junit = dir.path().join("hw.xml");
    let out = hw(&[
        "run",
        "--boards",
        &boards.to_string_lossy(),
        "--out",
        &dir.path().join("runs").to_string_lossy(),
        "--junit",
        &junit.to_string_lossy(),
        "-q",
        &path.to_string_lossy(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("did not finish"),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(
        xml.contains("failures=\"1\"") && xml.contains("<failure message="),
        "{xml}"
    );
}

#[test]
fn scenarios_that_do_not_fit_are_skipped_and_setup_errors_stop_before_any_board() {
    // No namespace needed: all of it is decided before any board is touched.
    let dir = tempfile::tempdir().expect("tempdir");
    let boards = dir.path().join("boards.toml");
    let powered = dir.path().join("powered");
    std::fs::write(
        &boards,
        format!(
            r#"[[boards]]
name = "pxe-box"
labels = {{ board = "x86" }}
interface = "eth9"
board_ip = "10.9.0.2"
server_ip = "10.9.0.1"
profile = "legacy"
power = {{ on = "touch {}" }}
"#,
            powered.display()
        ),
    )
    .expect("boards");
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--boards", boards.to_str().expect("utf-8")];
        all.extend(args);
        let out = hw(&all);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };
    let window8 = scenario("scenarios/uboot-kernel-window8.toml");
    let twenty = scenario("scenarios/twenty-boards.toml");
    let legacy = scenario("scenarios/legacy-client.toml");
    // Nothing fits: each pair skipped with its reason, then exit 2.
    let (code, stderr) = run(&[&window8.to_string_lossy(), &twenty.to_string_lossy()]);
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with("skip: scenario uboot-kernel-window8 on board pxe-box")
            && lines[0].contains("u-boot")
            && lines[0].contains("legacy"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("skip: ") && lines[1].contains("20 clients"),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with("tftplab-hw: no scenario fits the selected boards (2 skipped"),
        "{stderr}"
    );
    // One fits, but the board's NIC is not there: exit 2 before power.
    let (code, stderr) = run(&[&window8.to_string_lossy(), &legacy.to_string_lossy()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("skip: scenario uboot-kernel-window8"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tftplab-hw: board pxe-box: no interface eth9; fix `interface`"),
        "{stderr}"
    );
    assert!(!stderr.contains("power-cycling"), "{stderr}");
    assert!(!powered.exists(), "the board was powered");
    // A selection that matches nothing.
    let (code, stderr) = run(&["--select", "board=rpi4", &window8.to_string_lossy()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("no board matches"), "{stderr}");
}

#[test]
fn jumpstarter_example_uploads_lists_serves_deletes() {
    if !netns_enabled("jumpstarter_example_uploads_lists_serves_deletes") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let boards = dir.path().join("boards.toml");
    std::fs::write(
        &boards,
        format!(
            r#"[[boards]]
name = "rpi4-standin"
labels = {{ board = "rpi4" }}
interface = "{}"
netns = "{}"
board_ip = "{}"
server_ip = "{}"
profile = "rpi4-bootloader"
power = {{ on = "true" }}
"#,
            lab.srv_if, lab.srv_ns, lab.board_ip, lab.server_ip
        ),
    )
    .expect("boards");
    let inventory = Inventory::load(&boards).expect("inventory");
    let board = inventory.select("board=rpi4").expect("select")[0].clone();
    let data = tftplab_sim::lab::scenario::generate(200_000, 9);
    let want = sha256(&data);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fetched = dir.path().join("test.bin");
    let report = rt
        .block_on(tftplab_hw::jumpstarter::store_check(
            &board,
            &data,
            None,
            |served| {
                let addr = served.addr;
                // While listed, the board fetches it with tsize and blksize
                // 1024 as an rpi4 asks (busybox), and gets the same bytes.
                let out = lab.board_run(
                    "busybox",
                    &[
                        "tftp",
                        "-g",
                        "-b",
                        "1024",
                        "-r",
                        "test.bin",
                        "-l",
                        &fetched.to_string_lossy(),
                        &addr.ip().to_string(),
                        "69",
                    ],
                    Duration::from_secs(30),
                );
                let got = std::fs::read(&fetched).unwrap_or_default();
                let result = if out.status.success() && sha256(&got) == want {
                    Ok("busybox fetched it".to_string())
                } else {
                    Err(format!(
                        "board fetch: {:?} {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    ))
                };
                async move { result }
            },
        ))
        .expect("store check");
    assert!(
        report.contains("uploaded, listed, served")
            && report.contains("busybox fetched it, deleted, gone"),
        "{report}"
    );
    // The command line makes the board fetch test.bin over its console;
    // a board with neither a console nor a fetch command cannot, and says
    // so in one line before anything is touched (the QEMU U-Boot board
    // in tests/uboot_store_check.rs does it for real).
    let out = hw(&[
        "store-check",
        "--boards",
        &boards.to_string_lossy(),
        "--select",
        "board=rpi4",
        "--size",
        "4096",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "tftplab-hw: board rpi4-standin: store-check cannot make a rpi4-bootloader board fetch test.bin \
         (it fetches only its own boot files); give it [boards.store_check] with a `prompt` and a `fetch` \
         command, or check a U-Boot board"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_board_whose_requests_do_not_fit_its_profile_fails() {
    if !netns_enabled("a_board_whose_requests_do_not_fit_its_profile_fails") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario("scenarios/legacy-client.toml");
    let s = Scenario::load(&path).expect("scenario");
    // Declared legacy (no options), but busybox asks for `tsize 0`: the
    // files arrive, yet this is not the board the scenario describes.
    let client = "busybox tftp -g -r {name} -l {out} $TFTPLAB_SERVER_IP 69";
    let boards = stand_in(&lab, dir.path(), &s, client, "board = \"standin\"");
    let out = hw(&[
        "run",
        "--boards",
        &boards.to_string_lossy(),
        "--out",
        &dir.path().join("runs").to_string_lossy(),
        "-q",
        &path.to_string_lossy(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the board's RRQ for \"pxelinux.0\" does not fit the legacy profile: expected no options at all"),
        "{stdout}"
    );
    assert!(
        stdout.contains(" 2/2 "),
        "both actions still ended: {stdout}"
    );
}
