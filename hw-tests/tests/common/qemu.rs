//! An emulated U-Boot board: Debian's U-Boot for QEMU's `virt` machine
//! (`u-boot-qemu`) in `qemu-system-aarch64` (no KVM), its virtio NIC on a
//! tap device inside a network namespace, where the runner's raw link
//! opens the same tap. The board's power command starts QEMU; its console
//! is QEMU's serial port on a unix socket. Used by tests/uboot.rs and
//! tests/uboot_store_check.rs (separate test binaries, so cargo runs one
//! QEMU at a time).

use super::{quote, sh};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const UBOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

/// Addresses of the board and the runner's server on the tap.
pub const BOARD_IP: &str = "10.78.0.2";
pub const SERVER_IP: &str = "10.78.0.1";

/// Panics (under `TFTPLAB_REQUIRE_NETNS=1`) when QEMU or U-Boot is missing.
pub fn require_qemu() {
    if !Path::new(UBOOT).exists()
        || Command::new("qemu-system-aarch64")
            .arg("--version")
            .output()
            .is_err()
    {
        panic!("TFTPLAB_REQUIRE_NETNS=1 but qemu-system-aarch64 or {UBOOT} is missing (run .ci/install-peers.sh)");
    }
}

/// A namespace holding a tap device for QEMU's NIC. Dropping it stops
/// QEMU (through the board's `off` command's pid file) and removes the
/// namespace and the tap with it.
pub struct QemuLab {
    pub ns: String,
    pub dir: tempfile::TempDir,
}

impl QemuLab {
    pub fn new() -> QemuLab {
        let ns = format!("thwq{}", std::process::id() % 100_000);
        // A namespace left by a killed run whose pid we now have.
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        sh("ip", &["netns", "add", &ns]);
        sh(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ],
        );
        sh(
            "ip",
            &["-n", &ns, "tuntap", "add", "dev", "tap0", "mode", "tap"],
        );
        sh("ip", &["-n", &ns, "link", "set", "tap0", "up"]);
        sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        QemuLab {
            ns,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("qemu.pid")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("console.sock")
    }

    /// The board's console device (QEMU's serial socket).
    pub fn console_device(&self) -> String {
        format!("unix:{}", self.socket().to_string_lossy())
    }

    /// The board's `off` command: stops the QEMU its `on` started.
    pub fn power_off(&self) -> String {
        let pid = quote(&self.pid_file().to_string_lossy());
        format!("[ -s {pid} ] && kill -- -$(cat {pid}) 2>/dev/null; rm -f {pid}; true")
    }

    /// The board's `on` command: starts QEMU in the background. QEMU waits
    /// for the runner to connect to its serial socket before it starts
    /// the guest, so no console output is lost.
    pub fn power_on(&self) -> String {
        let qemu = format!(
            "qemu-system-aarch64 -M virt -cpu cortex-a57 -m 512 -bios {UBOOT} -display none -monitor none \
             -serial unix:{sock},server=on,wait=on \
             -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0,romfile=",
            sock = self.socket().to_string_lossy()
        );
        format!(
            "{off}; rm -f {sock}; setsid ip netns exec {ns} {qemu} </dev/null >/dev/null 2>&1 & echo $! > {pid}",
            off = self.power_off(),
            sock = quote(&self.socket().to_string_lossy()),
            ns = self.ns,
            pid = quote(&self.pid_file().to_string_lossy()),
        )
    }
}

impl Drop for QemuLab {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
            let _ = Command::new("kill")
                .args(["--", &format!("-{}", pid.trim())])
                .status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
