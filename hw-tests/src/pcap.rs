//! A classic pcap writer (the format Wireshark and tcpdump read): one
//! record per Ethernet frame, with microsecond timestamps. Shared by the
//! link's receive thread and its senders; each record is written whole.
//!
//! The writer lives in the lab (`tftplab_sim::lab::pcap`), where the
//! simulator writes its runs' pcaps with it too, so a simulated run and a
//! board's open in Wireshark alike.

pub use tftplab_sim::lab::pcap::{read_frames, PcapWriter, SNAPLEN};
