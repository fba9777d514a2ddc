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

use tftplab::wire::{ErrorCode, Opcode, Packet};

// The opcodes as the firmware's own parsers compare the raw field: each
// machine reads datagrams the way its firmware does (leniently, quirks and
// all), not through tftplab's strict parser, so it needs the numbers.
const OP_RRQ: u16 = Opcode::Rrq as u16;
const OP_DATA: u16 = Opcode::Data as u16;
const OP_ACK: u16 = Opcode::Ack as u16;
const OP_ERROR: u16 = Opcode::Error as u16;
const OP_OACK: u16 = Opcode::Oack as u16;

/// An ACK: every firmware sends the same four bytes.
fn ack_packet(block: u16) -> Vec<u8> {
    emit(&Packet::Ack { block })
}

/// An ERROR: opcode, code, the message and its NUL, as every firmware here
/// builds it.
fn error_packet(code: ErrorCode, message: &str) -> Vec<u8> {
    emit(&Packet::Error { code, message })
}

fn emit(packet: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0; packet.emitted_len()];
    match packet.emit(&mut buf) {
        Ok(len) => buf.truncate(len),
        // Cannot happen: the buffer is the packet's own length.
        Err(_) => buf.clear(),
    }
    buf
}

pub mod ipxe;
pub mod rpi4;
#[cfg(test)]
mod testkit;
pub mod tftp_hpa;
pub mod uboot;
pub mod uefi;
