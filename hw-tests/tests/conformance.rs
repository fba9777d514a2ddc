//! The conformance table: real U-Boot (windowsize 1 and 8), OVMF and iPXE
//! in QEMU, each under the scripted fault patterns of
//! [`tftplab_hw::conform::patterns`], against the same scenario and pattern
//! on the firmware's profile in the simulator. Every cell must be "same"
//! (the client's datagrams, in order), and the verdicts must agree. The table is printed and written to
//! `target/tmp/hw-runs/conformance/table.txt`.
//!
//! `TFTPLAB_REQUIRE_NETNS=1 cargo test -p tftplab-hw --test conformance -- --nocapture`
//! (`TFTPLAB_CONFORMANCE_ONLY=held` runs only the rows whose
//! "firmware / pattern" has that in it: `"ovmf (w4) / drop OACK"` is one
//! row). Each row's board trace and `sim-trace.txt` sit side by side under
//! `target/tmp/hw-runs/conformance/<row>-<attempt>/`. A row whose server
//! parted from the simulated server's first (it acted on time, which QEMU
//! and the simulator's ticks do not share) runs again, up to three times;
//! so does a row that differs when its held datagram was not overtaken on
//! the board (the server's next DATA left after the hold was over: with a
//! window's datagrams 50-220 us apart on this link a 200 us hold often
//! reorders nothing there, while the simulator sends a window in one tick;
//! seen on OVMF w4 and U-Boot w8). Such a row that still differs after
//! three runs is printed as not compared: the fault it is about did not
//! happen on the board.

mod common;

use common::boards::{ipxe_inventory, ovmf_inventory, uboot_inventory};
use common::netns_enabled;
use common::qemu::{require, Firmware, QemuLab};
use common::standin::load;
use std::path::Path;
use tftplab_hw::boards::{Board, Inventory};
use tftplab_hw::conform::{
    compare, datagrams, patterns, render_table, simulated_datagrams, variant, Cell, Row,
};
use tftplab_hw::runner::{run_one, RunOptions};

/// Runs every pattern of `window` for `scenario` on `board` and next to it
/// in the simulator.
fn table_rows(
    rt: &tokio::runtime::Runtime,
    firmware: &str,
    board: &Board,
    scenario: &str,
    window: u16,
    out: &Path,
    unreproduced: &mut Vec<String>,
) -> Vec<Row> {
    let s = load(scenario);
    let mut rows = Vec::new();
    let only = std::env::var("TFTPLAB_CONFORMANCE_ONLY").unwrap_or_default();
    for p in patterns(window) {
        if !format!("{firmware} / {}", p.name).contains(only.as_str()) {
            continue;
        }
        let v = variant(&s, &p);
        let tag =
            format!("{firmware}-{}", p.name).replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let sim = tftplab_sim::run(&v, 1, tftplab_sim::SimOptions::default());
        let sim_datagrams = simulated_datagrams(&sim.trace);
        // A row whose server acted on time differently (a cell of
        // `ServerFirst`) says nothing about the client: the board runs
        // again, up to three times in all.
        let mut attempt = 0;
        let (run, board_datagrams, cell) = loop {
            attempt += 1;
            let opts = RunOptions {
                seed: 1,
                out_dir: out.join(format!("{tag}-{attempt}")),
                faults: true,
            };
            let run = rt.block_on(run_one(board, &v, &opts));
            let trace = std::fs::read_to_string(&run.trace_file).unwrap_or_default();
            // Beside the board's trace, for reading the two side by side.
            let _ = std::fs::write(
                opts.out_dir.join("sim-trace.txt"),
                tftplab_sim::lab::trace::render_text(&sim.trace),
            );
            let board_datagrams = datagrams(&trace);
            let cell = compare(&board_datagrams, &sim_datagrams);
            // A hold that reordered nothing on the board makes a row about
            // something that did not happen there: a cell that differs then
            // says nothing about the client either.
            let not_held = hold_overtaken(&trace) == Some(false) && cell != Cell::Same;
            let timing = matches!(cell, Cell::ServerFirst { .. });
            if !(timing || not_held) || attempt == 3 {
                if not_held {
                    println!(
                        "{firmware} / {}: NOT COMPARED: the held datagram was never overtaken \
                         on the board in {attempt} runs",
                        p.name
                    );
                    unreproduced.push(format!("{firmware} / {}", p.name));
                }
                break (run, board_datagrams, cell);
            }
            if not_held {
                println!(
                    "{firmware} / {}: {cell}, and the hold reordered nothing; running it again",
                    p.name
                );
            } else {
                println!("{firmware} / {}: {cell}; running it again", p.name);
            }
        };
        let clients =
            |d: &[tftplab_hw::conform::Datagram]| d.iter().filter(|d| d.from_client).count();
        let row = Row {
            firmware: firmware.to_owned(),
            pattern: p.name,
            cell,
            board_datagrams: clients(&board_datagrams),
            sim_datagrams: clients(&sim_datagrams),
            board_passed: run.passed(),
            sim_passed: sim.passed(),
        };
        println!(
            "{}",
            render_table(std::slice::from_ref(&row))
                .lines()
                .nth(1)
                .unwrap_or("")
        );
        if !run.passed() {
            println!("  board: {:?}", run.failures());
        }
        if !sim.passed() {
            println!("  sim: {:?}", sim.verdict.failures);
        }
        rows.push(row);
    }
    rows
}

/// In a board's trace, whether the datagram the pattern held (`[delayed
/// X ms]`) was overtaken: the server's next datagram left before the hold
/// was over. `None` when nothing was held.
fn hold_overtaken(trace: &str) -> Option<bool> {
    let at = |line: &str| -> Option<f64> {
        line.split_whitespace()
            .next()?
            .strip_suffix("ms")?
            .parse()
            .ok()
    };
    let lines: Vec<&str> = trace.lines().collect();
    let i = lines.iter().position(|l| l.contains("[delayed "))?;
    let delay: f64 = lines[i]
        .split("[delayed ")
        .nth(1)?
        .split("ms]")
        .next()?
        .parse()
        .ok()?;
    let held_at = at(lines[i])?;
    let next = lines[i + 1..].iter().find(|l| l.contains(" server -> "))?;
    Some(at(next)? < held_at + delay)
}

fn select(boards: &Path, labels: &str) -> Board {
    Inventory::load(boards)
        .expect("inventory")
        .select(labels)
        .expect("select")[0]
        .clone()
}

#[test]
fn firmware_send_what_their_profiles_send_under_every_pattern() {
    if !netns_enabled("firmware_send_what_their_profiles_send_under_every_pattern") {
        return;
    }
    let out = common::run_outputs("conformance");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = Vec::new();
    let mut unreproduced = Vec::new();
    {
        require(Firmware::UBoot);
        let lab = QemuLab::new();
        let boards = uboot_inventory(&lab);
        for (window, scenario) in [
            (1, "scenarios/uboot-kernel-lockstep.toml"),
            (8, "scenarios/uboot-kernel-window8.toml"),
        ] {
            let board = select(&boards, &format!("board=qemu-uboot,window={window}"));
            let firmware = format!("u-boot w{window}");
            rows.extend(table_rows(
                &rt,
                &firmware,
                &board,
                scenario,
                window,
                &out,
                &mut unreproduced,
            ));
        }
    }
    {
        require(Firmware::Ovmf);
        let mut lab = QemuLab::with(Firmware::Ovmf);
        lab.dhcp("ipxe.efi", false, &out.join("dnsmasq-ovmf.log"));
        let boards = ovmf_inventory(&lab, "qemu-ovmf");
        let board = select(&boards, "board=qemu-ovmf");
        let scenario = "hw-tests/scenarios/ovmf-pxe-boot.toml";
        rows.extend(table_rows(
            &rt,
            "ovmf (w4)",
            &board,
            scenario,
            4,
            &out,
            &mut unreproduced,
        ));
    }
    {
        require(Firmware::Ipxe);
        let mut lab = QemuLab::with(Firmware::Ipxe);
        lab.dhcp("boot.ipxe", true, &out.join("dnsmasq-ipxe.log"));
        let boards = ipxe_inventory(&lab, "qemu-ipxe");
        let board = select(&boards, "board=qemu-ipxe");
        let scenario = "hw-tests/scenarios/ipxe-boot.toml";
        rows.extend(table_rows(
            &rt,
            "ipxe",
            &board,
            scenario,
            1,
            &out,
            &mut unreproduced,
        ));
    }
    let table = render_table(&rows);
    println!("\n{table}");
    std::fs::write(out.join("table.txt"), &table).expect("table");
    for r in &rows {
        assert_eq!(
            r.board_passed, r.sim_passed,
            "{} / {}: the board and the simulator disagree on the verdict",
            r.firmware, r.pattern
        );
        if unreproduced.contains(&format!("{} / {}", r.firmware, r.pattern)) {
            continue;
        }
        assert_eq!(
            r.cell,
            Cell::Same,
            "{} / {}: the firmware and its profile part ({})",
            r.firmware,
            r.pattern,
            r.cell
        );
    }
}

#[test]
fn a_hold_counts_only_when_the_next_datagram_overtook_it() {
    // OVMF w4 in CI: DATA #4 left 218 us after DATA #3, past its 200 us hold.
    let late = "   12558.616ms server -> qemu-ovmf DATA #2 (1468 B)
   12558.671ms server -> qemu-ovmf DATA #3 (1468 B) [delayed 0.2ms]
   12558.889ms server -> qemu-ovmf DATA #4 (1468 B)
   12559.738ms qemu-ovmf -> server ACK #4";
    assert_eq!(hold_overtaken(late), Some(false));
    let overtaken = late.replace("12558.889ms", "12558.700ms");
    assert_eq!(hold_overtaken(&overtaken), Some(true));
    assert_eq!(
        hold_overtaken("    1.000ms server -> b DATA #1 (512 B)"),
        None
    );
}
