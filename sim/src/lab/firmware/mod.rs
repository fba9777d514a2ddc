//! Firmware client machines: the network-boot clients labs boot from, each
//! reproduced from the firmware's own code (or, for closed firmware, its
//! documented behaviour), sans-IO like tftplab's own machines. Each one
//! implements [`tftplab::proto::Transfer`], so it runs in memnet, in the
//! simulator, under the fuzz harness and over a real socket
//! ([`tftplab::runtime::drive_to_outcome`]). Every rule cites where it comes
//! from: file and function of the firmware source, or the bug tracker entry.
//!
//! - [`uboot`]: U-Boot's `net/tftp.c` (v2023.01, Debian's u-boot-qemu);
//! - [`uefi`]: EDK2's MTFTP4 driver and PXE base code (edk2-stable202211,
//!   Debian's OVMF);
//! - [`ipxe`]: iPXE's `src/net/udp/tftp.c` (Debian's ipxe-qemu);
//! - [`rpi4`]: the Raspberry Pi 4 bootloader (closed; from its trackers);
//! - [`tftp_hpa`]: tftp-hpa's `tftp` client (5.2), the legacy profile.

pub mod ipxe;
pub mod rpi4;
#[cfg(test)]
mod testkit;
pub mod tftp_hpa;
pub mod uboot;
pub mod uefi;
