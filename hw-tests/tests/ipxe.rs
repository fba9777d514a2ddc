//! An emulated BIOS board that boots iPXE from its NIC: QEMU's virtio-net
//! boot ROM (Debian's ipxe-qemu, iPXE 1.0.0+git-20190125.36a4c85) under
//! SeaBIOS in `qemu-system-x86_64 -M pc`, the NIC on a tap inside a
//! network namespace (tests/common/qemu.rs), a DHCP-only dnsmasq there
//! naming `boot.ipxe` and the runner's address, and the runner's raw link
//! on the same tap serving the scenario with its faults. SeaBIOS's serial
//! console carries iPXE's screen to the runner.
//!
//! The scenario is hw-tests/scenarios/ipxe-boot.toml: iPXE runs the boot
//! script, which asks for a per-board config that is not there, fetches a
//! kernel and an initrd and lists them (`imgstat`: name and size). This
//! iPXE build has no checksum command (`sha1sum`, `md5sum`: "command not
//! found"), so the sizes iPXE reports are the console's proof; the wire's
//! is that the server sent every block and iPXE acknowledged the last.
//! Clean through the command line, where the datagrams must be iPXE's
//! (`blksize 1432 tsize 0`, a new port per file, an ACK per block); then
//! with its faults (loss, duplication, reordering both ways) for several
//! seeds, each of which must pass with the simulator's outcomes for the
//! same seed.

mod common;

use common::boards::ipxe_inventory;
use common::netns_enabled;
use common::qemu::{require, Firmware, QemuLab, BOARD_IP};
use common::standin::{clean_run, faulty_run, load, outcomes, output, pcap_datagrams};
use std::time::Instant;
use tftplab_sim::lab::check::served_bytes;

const SCENARIO: &str = "hw-tests/scenarios/ipxe-boot.toml";
const BOARD: &str = "qemu-ipxe";
const SEEDS: [u64; 3] = [1, 2, 3];
/// The config the script asks for: `config/${net0/mac:hexhyp}.ipxe`, with
/// QEMU's default MAC for the first NIC.
const CONFIG: &str = "config/52-54-00-12-34-56.ipxe";

#[test]
fn ipxe_rom_boots_a_script_and_fetches_its_files_clean_and_with_faults() {
    if !netns_enabled("ipxe_rom_boots_a_script_and_fetches_its_files_clean_and_with_faults") {
        return;
    }
    require(Firmware::Ipxe);
    let out = common::run_outputs("ipxe");
    let mut lab = QemuLab::with(Firmware::Ipxe);
    lab.dhcp("boot.ipxe", true, &out.join("dnsmasq.log"));
    let boards = ipxe_inventory(&lab, BOARD);
    let s = load(SCENARIO);

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
    // iPXE's own datagrams, file by file: the RRQ (tftp_send_rrq:
    // blksize 1432, tsize 0) from a port of its own, then an ACK for each
    // block (one ACK 0 for the OACK), nothing else; ERROR 1 for the config.
    let mut expected = Vec::new();
    for name in ["boot.ipxe", CONFIG, "vmlinuz", "initrd.img"] {
        expected.push(format!("RRQ \"{name}\" octet blksize=1432 tsize=0"));
        if let Some(bytes) = served_bytes(&s, name) {
            let blocks = bytes.len() / 1432 + 1;
            expected.extend((0..=blocks).map(|b| format!("ACK #{b}")));
        }
    }
    let board: Vec<_> = datagrams.iter().filter(|d| d.from_board).collect();
    let got: Vec<&str> = board.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(got, expected);
    let requests: Vec<_> = board.iter().filter(|d| d.text.starts_with("RRQ")).collect();
    let mut ports: Vec<u16> = requests.iter().map(|d| d.src_port).collect();
    println!("iPXE's request ports: {ports:?}");
    assert!(requests.iter().all(|d| d.dst_port == 69));
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "a new port per file");
    let refusals: Vec<&str> = datagrams
        .iter()
        .filter(|d| !d.from_board && d.text.starts_with("ERROR"))
        .map(|d| d.text.as_str())
        .collect();
    assert_eq!(refusals, ["ERROR 1 \"File not found\""]);

    // With the scenario's faults, several seeds, each next to the
    // simulator with the same seed.
    let inventory = tftplab_hw::boards::Inventory::load(&boards).expect("inventory");
    let b = inventory.select(&format!("board={BOARD}")).expect("select")[0].clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut times = vec![format!("clean {clean_secs:.1}s")];
    for seed in SEEDS {
        let tag = format!("faults-seed{seed}");
        let started = Instant::now();
        let (run, sim) = faulty_run(&rt, &b, &s, seed, &out.join(&tag));
        times.push(format!(
            "seed {seed} {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        assert!(run.passed(), "{tag}: {:?}", run.failures());
        assert_eq!(
            outcomes(&run.record.results),
            ["intact", "ERROR 1", "intact", "intact"],
            "{tag}"
        );
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
