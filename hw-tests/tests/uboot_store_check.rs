//! `tftplab-hw store-check` on the emulated U-Boot board (tests/common/
//! qemu.rs): the Jumpstarter example with the board really fetching
//! `test.bin` over its console, U-Boot's default `[boards.store_check]`
//! fetch (`tftpboot ${loadaddr} test.bin && crc32 ${fileaddr}
//! ${filesize}`) and success texts; and two boards whose fetch does not
//! count, which must fail: one fetches another name (the server never
//! sends test.bin), one damages what it loaded before its crc32 (the
//! server sent it whole, but the board's checksum is wrong).

mod common;

use common::qemu::{require_qemu, QemuLab, BOARD_IP, SERVER_IP};
use common::{netns_enabled, toml_str};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

const SIZE: usize = 131_072;

fn board(lab: &QemuLab, name: &str, fetch: Option<&str>) -> String {
    let fetch = fetch.map_or(String::new(), |f| format!("fetch = {}\n", toml_str(f)));
    lab.board(name, "board = \"qemu-uboot-store\"", "u-boot", "")
        + &format!(
            r#"timeout = "60s"
failure = "Retry count exceeded"

[boards.store_check]
# No DHCP server on the tap: a static address instead of the default `dhcp`.
setup = [
  {{ expect = "Hit any key to stop autoboot", send = "\n" }},
  {{ expect = "\n=> ", send = "setenv ipaddr {{board_ip}}; setenv serverip {{server_ip}}; setenv netmask 255.255.255.0\n" }},
]
{fetch}
"#
        )
}

fn store_check(boards: &Path, out: &Path, name: &str) -> (Output, String, f64) {
    let started = Instant::now();
    let result = Command::new(env!("CARGO_BIN_EXE_tftplab-hw"))
        .args([
            "store-check",
            "--boards",
            &boards.to_string_lossy(),
            "--select",
            &format!("name={name}"),
            "--size",
            &SIZE.to_string(),
            "--out",
            &out.to_string_lossy(),
        ])
        .output()
        .expect("run tftplab-hw");
    let secs = started.elapsed().as_secs_f64();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    println!("== {name} ({secs:.1}s)\n{text}");
    (result, text, secs)
}

#[test]
fn uboot_in_qemu_fetches_test_bin_for_store_check_and_bad_fetches_fail() {
    if !netns_enabled("uboot_in_qemu_fetches_test_bin_for_store_check_and_bad_fetches_fail") {
        return;
    }
    require_qemu();
    let lab = QemuLab::new();
    let text = [
        board(&lab, "qemu-store", None),
        board(
            &lab,
            "qemu-store-wrong-name",
            Some("tftpboot ${loadaddr} not-{file} && crc32 ${fileaddr} ${filesize}"),
        ),
        board(
            &lab,
            "qemu-store-damaged",
            Some("tftpboot ${loadaddr} {file} && mw.l ${fileaddr} 0xdeadbeef 1 && crc32 ${fileaddr} ${filesize}"),
        ),
    ]
    .join("\n");
    let boards = lab.write_inventory(&text);
    let out = common::run_outputs("uboot-store-check");
    let data = tftplab_sim::lab::scenario::generate(SIZE as u64, 1);
    let crc = format!("{:08x}", tftplab_hw::runner::crc32(&data));

    // The board fetches test.bin; the server's record and U-Boot's own
    // count and crc32 agree with what was uploaded.
    let (result, text, ok_secs) = store_check(&boards, &out, "qemu-store");
    assert!(result.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "qemu-store: test.bin ({SIZE} bytes, sha256 {}) uploaded, listed, served at {SERVER_IP}:69, \
             fetched by the board ({SIZE} bytes to {BOARD_IP}, the console showed \
             [\"Bytes transferred = {SIZE} (\", \"==> {crc}\"])",
            &tftplab_hw::runner::sha256_hex(&data)[..16]
        )),
        "{text}"
    );
    assert!(text.contains(", deleted, gone"), "{text}");
    let console =
        std::fs::read_to_string(out.join("qemu-store-store-check.console.log")).expect("console");
    assert!(
        console.contains("tftpboot ${loadaddr} test.bin && crc32 ${fileaddr} ${filesize}"),
        "the default fetch was typed:\n{console}"
    );
    assert!(console.contains(&format!("==> {crc}")), "{console}");
    let pcap = std::fs::read(out.join("qemu-store-store-check.pcap")).expect("pcap");
    let frames = tftplab_hw::pcap::read_frames(&pcap)
        .expect("pcap frames")
        .len();
    assert!(frames > SIZE / 1468, "{frames} frames for {SIZE} bytes");

    // The board asks for another name: nothing reached it, and the line
    // says what the server saw instead.
    let (result, text, _) = store_check(&boards, &out, "qemu-store-wrong-name");
    assert_eq!(result.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "qemu-store-wrong-name: FAIL: the fetch command returned to the prompt and the server never sent \
             test.bin to the board ({BOARD_IP}); it saw: not-test.bin from {BOARD_IP} refused with ERROR 1"
        )),
        "{text}"
    );

    // The board loads test.bin whole, then its copy is damaged before
    // crc32: the server's record alone would pass; the console does not.
    let (result, text, _) = store_check(&boards, &out, "qemu-store-damaged");
    assert_eq!(result.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "qemu-store-damaged: FAIL: the fetch command returned to the prompt and the server sent test.bin \
             whole ({SIZE} bytes) but the console did not show [\"==> {crc}\"]: the board did not load it intact"
        )),
        "{text}"
    );
    println!("store-check on the QEMU U-Boot board: {ok_secs:.1}s for the passing run");
}
