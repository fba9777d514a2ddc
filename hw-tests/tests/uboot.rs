//! An emulated board that netboots: Debian's U-Boot for QEMU's `virt`
//! machine (`u-boot-qemu`) in `qemu-system-aarch64`, its virtio NIC on a
//! tap device inside a network namespace, the runner's raw link on the same
//! tap. The board's power command starts QEMU; its console is QEMU's serial
//! port on a unix socket, where the runner interrupts autoboot, sets the
//! network and window size, runs `tftpboot` for each of the scenario's
//! files and checks U-Boot's `crc32` of what landed in memory against the
//! served file's. This stands in for the rpi4-with-U-Boot path that
//! Jumpstarter's flasher uses.
//!
//! The scenarios are the simulator's own files: uboot-kernel-lockstep
//! (windowsize 1) and uboot-kernel-window8, each clean (`--no-faults`) and
//! with their faults (2% loss, duplication and reordering each way) for
//! seeds 1-3. U-Boot runs with its defaults (`tftptimeout` 5000,
//! `tftptimeoutcountmax` 10), as the scenarios' u-boot profile does, and
//! every faulty run must pass with the simulator's outcome per action.

mod common;

use common::boards::uboot_inventory;
use common::netns_enabled;
use common::qemu::{require_qemu, QemuLab};
use common::standin::{clean_run, faulty_run, load, outcomes, output};
use std::path::Path;
use tftplab_sim::lab::scenario::Scenario;

#[test]
fn uboot_in_qemu_netboots_with_window_1_and_8_clean_and_with_faults() {
    if !netns_enabled("uboot_in_qemu_netboots_with_window_1_and_8_clean_and_with_faults") {
        return;
    }
    require_qemu();
    let lab = QemuLab::new();
    let boards = uboot_inventory(&lab);
    let out = common::run_outputs("uboot");
    let inventory = tftplab_hw::boards::Inventory::load(&boards).expect("inventory");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for (window, scenario) in [
        (1, "scenarios/uboot-kernel-lockstep.toml"),
        (8, "scenarios/uboot-kernel-window8.toml"),
    ] {
        let s = load(scenario);
        let board = format!("qemu-uboot-w{window}");
        let select = format!("board=qemu-uboot,window={window}");

        // Clean, through the command line, with JUnit.
        let tag = format!("w{window}-clean");
        clean_run(&boards, &select, &board, scenario, &out, &tag);
        check_outputs(&tag, &out.join(&tag), &board, &s, window, false);

        // With the scenario's faults, through the library, next to the
        // simulator running the same file with the same seed.
        let b = inventory.select(&select).expect("select")[0].clone();
        for seed in 1..=3 {
            let tag = format!("w{window}-faults-{seed}");
            let run_dir = out.join(&tag);
            let (run, sim) = faulty_run(&rt, &b, &s, seed, &run_dir);
            assert!(run.passed(), "{tag}: {:?}", run.failures());
            assert_eq!(
                outcomes(&run.record.results),
                outcomes(&sim.record.results),
                "{tag}: the board and the simulator differ"
            );
            assert_eq!(
                outcomes(&run.record.results),
                ["ERROR 1", "intact", "intact"].map(String::from).to_vec(),
                "{tag}"
            );
            check_outputs(&tag, &run_dir, &board, &s, window, true);
        }
    }
}

/// What every run leaves behind: a trace with the window size U-Boot
/// asked for (and drops only under faults), and U-Boot's own crc32 of the
/// kernel on the console.
fn check_outputs(tag: &str, run_dir: &Path, board: &str, s: &Scenario, window: u16, faults: bool) {
    let trace = std::fs::read_to_string(output(run_dir, board, s, "trace")).expect("trace");
    assert_eq!(trace.contains("windowsize=8"), window == 8, "{tag}");
    assert_eq!(
        trace.contains("[dropped"),
        faults,
        "{tag}: drops only with faults"
    );
    let pcap = std::fs::read(output(run_dir, board, s, "pcap")).expect("pcap");
    assert!(
        tftplab_hw::pcap::read_frames(&pcap).is_some_and(|f| f.len() > 1000),
        "{tag}: pcap"
    );
    let console =
        std::fs::read_to_string(output(run_dir, board, s, "console.log")).expect("console");
    let image = tftplab_sim::lab::scenario::generate(1_310_720, 21);
    let crc = format!("==> {:08x}", tftplab_hw::runner::crc32(&image));
    assert!(console.contains(&crc), "{tag}: no {crc} in\n{console}");
    assert!(
        console.contains("File not found"),
        "{tag}: boot.scr.uimg must get ERROR 1"
    );
}
