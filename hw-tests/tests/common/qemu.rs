//! Emulated boards running real firmware in QEMU (no KVM), each with its
//! virtio NIC on a tap device inside a network namespace, where the
//! runner's raw link opens the same tap. The board's power command starts
//! QEMU; its console is QEMU's serial port on a unix socket. QEMU waits for
//! the runner to connect to that socket before it starts the guest, so no
//! console output is lost.
//!
//! - [`Firmware::UBoot`]: Debian's U-Boot for QEMU's `virt` machine
//!   (`u-boot-qemu`) in `qemu-system-aarch64`; tests/uboot.rs and
//!   tests/uboot_store_check.rs. Its address is set on its console, no DHCP.
//! - [`Firmware::Ovmf`]: Debian's OVMF (EDK2's UEFI for QEMU, `ovmf`) in
//!   `qemu-system-x86_64 -M q35`, booting from the network with EDK2's own
//!   virtio-net driver and PXE base code; tests/ovmf.rs.
//! - [`Firmware::Ipxe`]: iPXE, QEMU's virtio-net boot ROM (`ipxe-qemu`),
//!   under SeaBIOS in `qemu-system-x86_64 -M pc`; tests/ipxe.rs.
//!
//! The network-booting ones get their address, the server and the boot
//! file from a DHCP-only dnsmasq in the same namespace ([`QemuLab::dhcp`]):
//! no DNS (`--port=0`) and no TFTP, so only the runner, as [`SERVER_IP`],
//! answers on port 69. Each test binary runs one lab, and cargo runs test
//! binaries one after another, so one QEMU runs at a time.

use super::{quote, sh, toml_str};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const UBOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
/// OVMF's code and its variable store template (a fresh copy per boot).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// iPXE's legacy (PCI BIOS) ROM for virtio-net. Its PCI header names
/// device 1af4:1041, virtio-net without the legacy interface, so the NIC
/// is started with `disable-legacy=on`: SeaBIOS runs a ROM only on the
/// device it names, and a transitional NIC (1af4:1000) would boot nothing.
pub const IPXE_ROM: &str = "/usr/lib/ipxe/qemu/pxe-virtio.rom";
/// iPXE as an EFI application (package `ipxe`): what the OVMF board loads.
pub const IPXE_EFI: &str = "/usr/lib/ipxe/ipxe.efi";

/// Addresses on the tap: the board, the runner's server (which the
/// namespace's kernel must not own: the runner answers ARP for it), and
/// dnsmasq's own, which it needs on the tap to serve DHCP there.
pub const BOARD_IP: &str = "10.78.0.2";
pub const SERVER_IP: &str = "10.78.0.1";
pub const DHCP_IP: &str = "10.78.0.3";

/// The firmware a QEMU board runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    UBoot,
    Ovmf,
    Ipxe,
}

impl Firmware {
    fn qemu(self) -> &'static str {
        match self {
            Firmware::UBoot => "qemu-system-aarch64",
            Firmware::Ovmf | Firmware::Ipxe => "qemu-system-x86_64",
        }
    }

    /// Files the board needs.
    fn files(self) -> &'static [&'static str] {
        match self {
            Firmware::UBoot => &[UBOOT],
            Firmware::Ovmf => &[OVMF_CODE, OVMF_VARS, IPXE_EFI],
            Firmware::Ipxe => &[IPXE_ROM],
        }
    }

    /// QEMU's options for this firmware, before the NIC.
    fn machine(self, dir: &Path) -> String {
        match self {
            Firmware::UBoot => format!("-M virt -cpu cortex-a57 -m 512 -bios {UBOOT}"),
            // Without -nodefaults q35 also gets a VGA card, and OVMF a
            // second console nobody reads.
            Firmware::Ovmf => format!(
                "-M q35 -m 256 -nodefaults \
                 -drive if=pflash,format=raw,readonly=on,file={OVMF_CODE} \
                 -drive if=pflash,format=raw,file={vars}",
                vars = quote(&dir.join("OVMF_VARS.fd").to_string_lossy())
            ),
            // SeaBIOS's serial console (sercon) carries the BIOS screen,
            // and so iPXE's, to the serial port. SeaBIOS reads the port
            // as a little-endian integer file (romfile_loadint), so the
            // fw_cfg entry is a 2-byte file, not the string "0x3f8".
            Firmware::Ipxe => format!(
                "-M pc -m 128 -nodefaults -fw_cfg name=etc/sercon-port,file={port}",
                port = quote(&dir.join("sercon-port").to_string_lossy())
            ),
        }
    }

    /// The NIC: virtio-net on the tap. U-Boot and OVMF run their own
    /// virtio driver (`romfile=` leaves QEMU's iPXE ROM out, which would
    /// otherwise take over OVMF's network boot); the iPXE board boots the
    /// ROM.
    fn nic(self) -> String {
        let netdev = "-netdev tap,id=n0,ifname=tap0,script=no,downscript=no";
        match self {
            Firmware::UBoot => format!("{netdev} -device virtio-net-pci,netdev=n0,romfile="),
            Firmware::Ovmf => {
                format!("{netdev} -device virtio-net-pci,netdev=n0,romfile=,bootindex=1")
            }
            Firmware::Ipxe => format!(
                "{netdev} -device virtio-net-pci,netdev=n0,disable-legacy=on,romfile={IPXE_ROM},bootindex=1"
            ),
        }
    }
}

/// Panics (under `TFTPLAB_REQUIRE_NETNS=1`) when QEMU or U-Boot is missing.
pub fn require_qemu() {
    require(Firmware::UBoot);
}

/// Panics (under `TFTPLAB_REQUIRE_NETNS=1`) when this firmware's QEMU, its
/// files, or (for a board that boots by DHCP) dnsmasq is missing.
pub fn require(firmware: Firmware) {
    let runs = |program: &str| Command::new(program).arg("--version").output().is_ok();
    let mut missing: Vec<&str> = firmware
        .files()
        .iter()
        .copied()
        .filter(|f| !Path::new(f).exists())
        .collect();
    if !runs(firmware.qemu()) {
        missing.push(firmware.qemu());
    }
    if firmware != Firmware::UBoot && !runs("dnsmasq") {
        missing.push("dnsmasq");
    }
    assert!(
        missing.is_empty(),
        "TFTPLAB_REQUIRE_NETNS=1 but {} missing (run .ci/install-peers.sh)",
        missing.join(", ")
    );
}

/// A namespace holding a tap device for QEMU's NIC, and the files one
/// board needs. Dropping it stops QEMU (through the board's `off`
/// command's pid file) and dnsmasq, and removes the namespace and the tap
/// with it.
pub struct QemuLab {
    pub ns: String,
    pub dir: tempfile::TempDir,
    pub firmware: Firmware,
    dnsmasq: Option<Child>,
}

impl QemuLab {
    /// The U-Boot board's lab.
    pub fn new() -> QemuLab {
        QemuLab::with(Firmware::UBoot)
    }

    pub fn with(firmware: Firmware) -> QemuLab {
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
        let lab = QemuLab {
            ns,
            dir: tempfile::tempdir().expect("tempdir"),
            firmware,
            dnsmasq: None,
        };
        if firmware == Firmware::Ipxe {
            std::fs::write(lab.dir.path().join("sercon-port"), 0x3f8u16.to_le_bytes())
                .expect("sercon-port");
        }
        lab
    }

    /// Starts a DHCP-only dnsmasq on the tap, at [`DHCP_IP`]: it gives the
    /// board [`BOARD_IP`], [`SERVER_IP`] as next-server (siaddr), and
    /// `boot_file`. With `ipxe_too` false, iPXE's own DHCP (an NBP that is
    /// iPXE, user class "iPXE" with option 175) gets no file name, so a
    /// chainloaded iPXE stops instead of loading itself again. `log`
    /// receives dnsmasq's DHCP log.
    pub fn dhcp(&mut self, boot_file: &str, ipxe_too: bool, log: &Path) {
        let cidr = format!("{DHCP_IP}/24");
        sh("ip", &["-n", &self.ns, "addr", "add", &cidr, "dev", "tap0"]);
        let boot = if ipxe_too {
            format!("--dhcp-boot={boot_file},,{SERVER_IP}")
        } else {
            format!("--dhcp-boot=tag:!ipxe,{boot_file},,{SERVER_IP}")
        };
        let dir = self.dir.path();
        let _ = std::fs::remove_file(log);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "dnsmasq"])
            .args([
                "--keep-in-foreground",
                "--port=0",
                "--conf-file=/dev/null",
                "--no-hosts",
                "--user=root",
                "--interface=tap0",
                "--bind-interfaces",
                &format!("--dhcp-range={BOARD_IP},{BOARD_IP},255.255.255.0,1h"),
                // No router: the board talks to its own subnet only.
                "--dhcp-option=3",
                "--dhcp-match=set:ipxe,175",
                &boot,
                &format!(
                    "--dhcp-leasefile={}",
                    dir.join("dnsmasq.leases").to_string_lossy()
                ),
                &format!("--pid-file={}", dir.join("dnsmasq.pid").to_string_lossy()),
                "--log-dhcp",
                &format!("--log-facility={}", log.to_string_lossy()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dnsmasq");
        self.dnsmasq = Some(child);
        // Serving once it says so; a bad option makes it exit at once.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("DHCP, sockets bound exclusively to interface tap0") {
                return;
            }
            let child = self.dnsmasq.as_mut().expect("dnsmasq");
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("dnsmasq exited ({status}): {err}{text}");
            }
            assert!(Instant::now() < until, "dnsmasq did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A board on this lab's tap, up to its console device: name, labels
    /// (an inline TOML table's insides), the runner's addresses, the
    /// profile, `extra` lines (options), QEMU as its power, its serial
    /// port as its console. The caller adds the console's own lines.
    pub fn board(&self, name: &str, labels: &str, profile: &str, extra: &str) -> String {
        format!(
            "[[boards]]\nname = \"{name}\"\nlabels = {{ {labels} }}\ninterface = \"tap0\"\n\
             netns = \"{ns}\"\nboard_ip = \"{BOARD_IP}\"\nserver_ip = \"{SERVER_IP}\"\n\
             profile = \"{profile}\"\n{extra}\n[boards.power]\non = {on}\noff = {off}\n\
             timeout = \"10s\"\n\n[boards.console]\ndevice = {device}\n",
            ns = self.ns,
            on = toml_str(&self.power_on()),
            off = toml_str(&self.power_off()),
            device = toml_str(&self.console_device()),
        )
    }

    /// Writes the inventory into the lab's directory.
    pub fn write_inventory(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("boards.toml");
        std::fs::write(&path, text).expect("boards file");
        path
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

    /// The board's `on` command: starts QEMU in the background. An OVMF
    /// board starts from a fresh copy of OVMF's variable store, so every
    /// boot is a first boot with the default boot order.
    pub fn power_on(&self) -> String {
        let f = self.firmware;
        let qemu = format!(
            "{program} {machine} -display none -monitor none \
             -serial unix:{sock},server=on,wait=on {nic}",
            program = f.qemu(),
            machine = f.machine(self.dir.path()),
            sock = self.socket().to_string_lossy(),
            nic = f.nic(),
        );
        let fresh = match f {
            Firmware::Ovmf => format!(
                "cp {OVMF_VARS} {vars}; ",
                vars = quote(&self.dir.path().join("OVMF_VARS.fd").to_string_lossy())
            ),
            Firmware::UBoot | Firmware::Ipxe => String::new(),
        };
        format!(
            "{off}; rm -f {sock}; {fresh}setsid ip netns exec {ns} {qemu} </dev/null >/dev/null 2>&1 & echo $! > {pid}",
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
        if let Some(mut d) = self.dnsmasq.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
