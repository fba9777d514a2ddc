//! tftplab-hw: runs tftplab scenarios against real boards over a raw link.
//!
//! - [`frame`]: Ethernet, ARP, IPv4 and UDP, parsed and emitted by hand.
//! - [`pcap`]: every frame in and out, for Wireshark.
//! - [`link`]: the raw link, a tftplab `Network` over a pnet datalink channel.

pub mod frame;
pub mod link;
pub mod pcap;
