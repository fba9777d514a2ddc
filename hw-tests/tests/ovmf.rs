//! An emulated UEFI board that boots from the network: Debian's OVMF
//! (EDK2 edk2-stable202211) in `qemu-system-x86_64 -M q35`, its virtio NIC
//! on a tap inside a network namespace (tests/common/qemu.rs), a DHCP-only
//! dnsmasq there naming `ipxe.efi` and the runner's address, and the
//! runner's raw link on the same tap serving the scenario with its faults.
//! OVMF's own PXE base code fetches the file, starts it, and iPXE's banner
//! on the serial console shows the EFI application runs.
//!
//! The scenario is hw-tests/scenarios/ovmf-pxe-boot.toml: clean through the
//! command line, where the datagrams must be EDK2's (a `tsize` probe ended
//! with ERROR 8, then the read from a new port, one ACK per four blocks);
//! then with its faults (loss, duplication, reordering and jitter both
//! ways) for several seeds, each of which must pass with the simulator's
//! outcome for the same seed.

mod common;

use common::boards::ovmf_inventory;
use common::netns_enabled;
use common::qemu::{require, Firmware, QemuLab, BOARD_IP};
use common::standin::{clean_run, faulty_run, load, outcomes, output, pcap_datagrams};
use std::time::Instant;

const SCENARIO: &str = "hw-tests/scenarios/ovmf-pxe-boot.toml";
const BOARD: &str = "qemu-ovmf";
const SEEDS: [u64; 3] = [1, 2, 3];

#[test]
fn ovmf_pxe_boots_ipxe_efi_clean_and_with_faults() {
    if !netns_enabled("ovmf_pxe_boots_ipxe_efi_clean_and_with_faults") {
        return;
    }
    require(Firmware::Ovmf);
    let out = common::run_outputs("ovmf");
    let mut lab = QemuLab::with(Firmware::Ovmf);
    lab.dhcp("ipxe.efi", false, &out.join("dnsmasq.log"));
    let boards = ovmf_inventory(&lab, BOARD);
    let s = load(SCENARIO);
    let size = tftplab_sim::lab::check::served_bytes(&s, "ipxe.efi")
        .expect("ipxe.efi")
        .len();

    // Clean, through the command line, with JUnit.
    let started = Instant::now();
    clean_run(
        &boards,
        &format!("board={BOARD}"),
        BOARD,
        SCENARIO,
        &out,
        "clean",
    );
    let clean_secs = started.elapsed().as_secs_f64();
    let datagrams = pcap_datagrams(&output(&out.join("clean"), BOARD, &s, "pcap"), BOARD_IP);
    for d in &datagrams {
        println!(
            "{} {}:{} {}",
            if d.from_board { "board " } else { "server" },
            d.src_port,
            d.dst_port,
            d.text
        );
    }
    // EDK2's probe: tsize, blksize 1468 (1500 - 20 - 12) and windowsize 4
    // (PcdPxeTftpWindowSize), ended with ERROR 8 once the OACK is in.
    let board: Vec<_> = datagrams.iter().filter(|d| d.from_board).collect();
    let probe = board[0];
    assert_eq!(
        probe.text,
        "RRQ \"ipxe.efi\" octet tsize=0 blksize=1468 windowsize=4"
    );
    assert_eq!(probe.dst_port, 69);
    assert_eq!(board[1].text, "ERROR 8 \"User aborted the transfer\"");
    assert_eq!(board[1].src_port, probe.src_port);
    // The read: from a new port, no tsize; then an ACK per four blocks
    // and one for the last, nothing else.
    let read = board[2];
    assert_eq!(
        read.text,
        "RRQ \"ipxe.efi\" octet blksize=1468 windowsize=4"
    );
    assert_ne!(
        read.src_port, probe.src_port,
        "the read comes from a new port"
    );
    let blocks = size / 1468 + 1;
    let mut acks: Vec<usize> = (0..blocks).step_by(4).collect();
    if acks.last() != Some(&blocks) {
        acks.push(blocks);
    }
    let expected: Vec<String> = acks.iter().map(|b| format!("ACK #{b}")).collect();
    let got: Vec<String> = board[3..].iter().map(|d| d.text.clone()).collect();
    assert_eq!(got, expected);
    assert!(board[3..].iter().all(|d| d.src_port == read.src_port));
    let oacks: Vec<&str> = datagrams
        .iter()
        .filter(|d| !d.from_board && d.text.starts_with("OACK"))
        .map(|d| d.text.as_str())
        .collect();
    assert_eq!(
        oacks,
        [
            format!("OACK tsize={size} blksize=1468 windowsize=4"),
            "OACK blksize=1468 windowsize=4".to_string()
        ]
    );

    // With the scenario's faults, several seeds, each next to the
    // simulator with the same seed.
    let inventory = tftplab_hw::boards::Inventory::load(&boards).expect("inventory");
    let b = inventory.select(&format!("board={BOARD}")).expect("select")[0].clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut times = vec![format!("clean {clean_secs:.1}s")];
    for seed in SEEDS {
        let tag = format!("faults-seed{seed}");
        let run_dir = out.join(&tag);
        let started = Instant::now();
        let (run, sim) = faulty_run(&rt, &b, &s, seed, &run_dir);
        times.push(format!(
            "seed {seed} {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        assert!(run.passed(), "{tag}: {:?}", run.failures());
        assert_eq!(outcomes(&run.record.results), ["intact"], "{tag}");
        assert_eq!(
            outcomes(&run.record.results),
            outcomes(&sim.record.results),
            "{tag}"
        );
        // The faults happened on the wire, both ways.
        assert!(
            run.link.fault_drops_in > 0 && run.link.fault_drops_out > 0,
            "{tag}: {:?}",
            run.link
        );
    }
    println!("wall times: {}", times.join(", "));
}
