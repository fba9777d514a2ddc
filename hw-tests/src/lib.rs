//! tftplab-hw: runs tftplab scenarios against real boards over a raw link.
//!
//! - [`frame`]: Ethernet, ARP, IPv4 and UDP, parsed and emitted by hand.
//! - [`pcap`]: every frame in and out, for Wireshark.
//! - [`link`]: the raw link, a tftplab `Network` over a pnet datalink channel,
//!   with frame-level faults from the lab's seeded fault plan.
//! - [`boards`]: the inventory file and `--select` by labels.
//! - [`console`]: a board's serial console, read and scripted.
//! - [`runner`]: one scenario on one board, judged like the simulator's.
//! - [`report`]: summary table and JUnit XML.
//! - [`jumpstarter`]: Jumpstarter's TFTP store example on a board.
//! - [`conform`]: scripted fault patterns on a board and on its profile in
//!   the simulator, the client's datagrams compared.

pub mod boards;
pub mod conform;
pub mod console;
pub mod frame;
pub mod jumpstarter;
pub mod link;
pub mod pcap;
pub mod report;
pub mod runner;
