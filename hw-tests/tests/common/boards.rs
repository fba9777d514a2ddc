//! The QEMU stand-in boards' inventory entries, shared by their own tests
//! and the conformance table (tests/conformance.rs).

use super::qemu::QemuLab;
use std::path::PathBuf;

/// Two U-Boot boards (`u-boot-qemu`), the same emulated U-Boot with
/// `tftpwindowsize` 1 and 8 (`qemu-uboot-w1`, `qemu-uboot-w8`; labels
/// `board=qemu-uboot,window=N`) and its defaults otherwise. They load
/// uboot-kernel-*'s files and print U-Boot's `crc32` of each.
pub fn uboot_inventory(lab: &QemuLab) -> PathBuf {
    let mut text = String::new();
    for window in [1, 8] {
        let options = if window > 1 {
            format!("options = {{ windowsize = {window} }}\n")
        } else {
            String::new()
        };
        text.push_str(&lab.board(
            &format!("qemu-uboot-w{window}"),
            &format!("board = \"qemu-uboot\", window = \"{window}\""),
            "u-boot",
            &options,
        ));
        text.push_str(&format!(
            r#"timeout = "150s"
success = ["==> {{crc32:dtbs/bcm2711-rpi-4-b.dtb}}", "==> {{crc32:Image}}"]
failure = "Retry count exceeded"
script = [
  {{ expect = "Hit any key to stop autoboot", send = "\n" }},
  {{ expect = "\n=> ", send = "setenv ipaddr {{board_ip}}; setenv serverip {{server_ip}}; setenv netmask 255.255.255.0; setenv tftpwindowsize {window}\n" }},
  {{ expect = "\n=> ", send = "tftpboot 0x40200000 boot.scr.uimg\n" }},
  {{ expect = "\n=> ", send = "tftpboot 0x40200000 dtbs/bcm2711-rpi-4-b.dtb && crc32 0x40200000 ${{filesize}}\n" }},
  {{ expect = "\n=> ", send = "tftpboot 0x40200000 Image && crc32 0x40200000 ${{filesize}}\n" }},
]

"#
        ));
    }
    lab.write_inventory(&text)
}

/// The OVMF board. Its console must show EDK2's own report of the NBP
/// (the size the probe learnt, then the download's success, both
/// `PxeBcBoot.c`) and then iPXE's banner: the file OVMF loaded runs.
pub fn ovmf_inventory(lab: &QemuLab, name: &str) -> PathBuf {
    let text = lab.board(name, &format!("board = \"{name}\""), "uefi-pxe", "")
        + r#"timeout = "60s"
success = [
  "NBP filesize is {size:ipxe.efi} Bytes",
  "NBP file downloaded successfully.",
  "Open Source Network Boot Firmware",
]
failure = "PXE-E"
"#;
    lab.write_inventory(&text)
}

/// The iPXE board. Its console must show the script's own lines and
/// iPXE's listing of every image with the served file's size.
pub fn ipxe_inventory(lab: &QemuLab, name: &str) -> PathBuf {
    let text = lab.board(name, &format!("board = \"{name}\""), "ipxe", "")
        + r#"timeout = "120s"
success = [
  "ipxe-boot: no per-board config",
  "boot.ipxe : {size:boot.ipxe} bytes [script]",
  "vmlinuz : {size:vmlinuz} bytes",
  "initrd.img : {size:initrd.img} bytes",
  "ipxe-boot: all files fetched",
]
failure = "ipxe-boot: FAILED"
"#;
    lab.write_inventory(&text)
}
