//! A classic pcap writer (the format Wireshark and tcpdump read): one
//! record per Ethernet frame, with microsecond timestamps. The hardware
//! runner writes every frame on its raw link with it (shared by the link's
//! receive thread and its senders; each record is written whole), and the
//! simulator a run's datagrams ([`write_run`]), in frames it makes up
//! because a simulated host has no Ethernet or IP of its own to capture.

use super::trace::TraceEvent;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: u32 = 0xa1b2_c3d4;
const LINKTYPE_ETHERNET: u32 = 1;
/// Frames are never longer than this (no jumbo frames on the link).
pub const SNAPLEN: u32 = 65_535;

/// A pcap file being written. Cloning shares the file.
#[derive(Clone)]
pub struct PcapWriter(Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>);

impl PcapWriter {
    /// Creates `path` and writes the file header.
    pub fn create(path: &Path) -> io::Result<PcapWriter> {
        let file = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        PcapWriter::new(Box::new(file))
    }

    /// Writes the file header to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> io::Result<PcapWriter> {
        let mut w = BufWriter::new(out);
        w.write_all(&MAGIC.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?; // version 2.4
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&0i32.to_le_bytes())?; // GMT offset
        w.write_all(&0u32.to_le_bytes())?; // timestamp accuracy
        w.write_all(&SNAPLEN.to_le_bytes())?;
        w.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
        Ok(PcapWriter(Arc::new(Mutex::new(w))))
    }

    /// Appends one frame stamped with the current time.
    pub fn frame(&self, frame: &[u8]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.frame_at(now.as_secs() as u32, now.subsec_micros(), frame);
    }

    /// Appends one frame with the given timestamp. Write errors are
    /// remembered by the buffer and reported by [`PcapWriter::flush`].
    pub fn frame_at(&self, secs: u32, micros: u32, frame: &[u8]) {
        let len = frame.len().min(SNAPLEN as usize);
        let mut record = Vec::with_capacity(16 + len);
        record.extend_from_slice(&secs.to_le_bytes());
        record.extend_from_slice(&micros.to_le_bytes());
        record.extend_from_slice(&(len as u32).to_le_bytes());
        record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        record.extend_from_slice(&frame[..len]);
        if let Ok(mut w) = self.0.lock() {
            let _ = w.write_all(&record);
        }
    }

    pub fn flush(&self) -> io::Result<()> {
        match self.0.lock() {
            Ok(mut w) => w.flush(),
            Err(_) => Err(io::Error::other("pcap writer poisoned")),
        }
    }
}

/// Reads the frames back from a pcap file's bytes (for tests and for the
/// runner's own checks): `None` if the file is not one this module wrote.
pub fn read_frames(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    Some(read_records(bytes)?.into_iter().map(|r| r.frame).collect())
}

/// One record of a pcap file as [`read_records`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub secs: u32,
    pub micros: u32,
    /// The frame's length on the wire (the record holds all of it unless
    /// it is longer than [`SNAPLEN`]).
    pub original_len: u32,
    pub frame: Vec<u8>,
}

/// Reads the records back from a pcap file's bytes, timestamps included:
/// `None` if the file is not one this module wrote, or is cut short.
pub fn read_records(bytes: &[u8]) -> Option<Vec<Record>> {
    let le32 = |at: usize| -> Option<u32> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if le32(0)? != MAGIC || le32(20)? != LINKTYPE_ETHERNET {
        return None;
    }
    let mut at = 24;
    let mut out = Vec::new();
    while at < bytes.len() {
        let caplen = le32(at + 8)? as usize;
        let start = at + 16;
        out.push(Record {
            secs: le32(at)?,
            micros: le32(at + 4)?,
            original_len: le32(at + 12)?,
            frame: bytes.get(start..start.checked_add(caplen)?)?.to_vec(),
        });
        at = start + caplen;
    }
    Some(out)
}

/// The made-up Ethernet and IPv4 addresses of a simulated run's hosts.
/// The server is 198.18.0.1 and the clients follow from 198.18.0.2 in the
/// order the scenario lists them (198.18.0.0/15 is set aside for
/// benchmarking networks, RFC 2544, so no real host is confused with
/// them); a name the scenario does not list (there should be none) comes
/// after them in the order the trace first shows it. A host's MAC is
/// 02:00 (locally administered, unicast) followed by its IPv4 address.
/// So one scenario's hosts keep their addresses over every seed.
#[derive(Debug, Clone, Default)]
pub struct HostAddresses {
    names: Vec<String>,
}

/// The first host's address: 198.18.0.1.
const FIRST_HOST: u32 = 0xc612_0001;
/// 198.18.0.0/15 has room for this many hosts between its network and
/// broadcast addresses.
const HOSTS: u32 = (1 << 17) - 2;

impl HostAddresses {
    /// The hosts of a run, in address order: the server first, then the
    /// clients as the scenario lists them.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut hosts = HostAddresses::default();
        for n in names {
            hosts.add(n.into());
        }
        hosts
    }

    /// Adds every host the trace names that is not known yet.
    pub fn with_trace(mut self, events: &[TraceEvent]) -> Self {
        for e in events {
            self.add(e.from.clone());
            self.add(e.to.clone());
        }
        self
    }

    fn add(&mut self, name: String) {
        if !self.names.contains(&name) {
            self.names.push(name);
        }
    }

    fn index(&self, name: &str) -> u32 {
        // A name added by neither `new` nor `with_trace` shares the
        // address after the last known one.
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .unwrap_or(self.names.len());
        (i as u32) % HOSTS
    }

    pub fn ipv4(&self, name: &str) -> Ipv4Addr {
        Ipv4Addr::from(FIRST_HOST + self.index(name))
    }

    pub fn mac(&self, name: &str) -> [u8; 6] {
        let [a, b, c, d] = self.ipv4(name).octets();
        [0x02, 0x00, a, b, c, d]
    }
}

/// One UDP datagram between two hosts.
#[derive(Debug, Clone, Copy)]
pub struct UdpEnds {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// The largest UDP payload an IPv4 datagram can carry.
const MAX_UDP_PAYLOAD: usize = 65_535 - 20 - 8;

/// An Ethernet frame carrying `payload` as one UDP datagram over IPv4,
/// with valid IP and UDP checksums; `id` is the IP header's
/// identification. A payload too long for one IPv4 datagram is cut to fit.
pub fn udp_frame(ends: &UdpEnds, id: u16, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(MAX_UDP_PAYLOAD)];
    let udp_len = (8 + payload.len()) as u16;
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + usize::from(ip_len));
    f.extend_from_slice(&ends.dst_mac);
    f.extend_from_slice(&ends.src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    f.extend_from_slice(&[64, 17, 0, 0]); // TTL, UDP, checksum to come
    f.extend_from_slice(&ends.src.octets());
    f.extend_from_slice(&ends.dst.octets());
    let ip_sum = checksum(&[&f[ip_start..]]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let udp_start = f.len();
    f.extend_from_slice(&ends.src_port.to_be_bytes());
    f.extend_from_slice(&ends.dst_port.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&ends.src.octets());
    pseudo[4..8].copy_from_slice(&ends.dst.octets());
    pseudo[9] = 17;
    pseudo[10..].copy_from_slice(&udp_len.to_be_bytes());
    // A computed zero is sent as all ones: zero means "no checksum".
    let udp_sum = match checksum(&[&pseudo, &f[udp_start..]]) {
        0 => 0xffff,
        s => s,
    };
    f[udp_start + 6..udp_start + 8].copy_from_slice(&udp_sum.to_be_bytes());
    f
}

/// The Internet checksum (RFC 1071) of the parts, read as one run of
/// 16-bit words (every part but the last has an even length).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut words = part.chunks_exact(2);
        for w in &mut words {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u32::from(*last) << 8;
        }
        // Fold as we go so a 64 KiB payload cannot overflow.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes a simulated run as a pcap file: one record per datagram sent,
/// in the trace's order, so record N is line N of the text trace. A
/// datagram is recorded once, at the time it was sent, as its sender put
/// it on the link: whether the fault layer then dropped, duplicated or
/// delayed it is the trace's to say. The timestamps are simulated time
/// (the run starts at the epoch), the IP identification is the record's
/// number (modulo 65 536), and `datagrams[i]` holds event `i`'s bytes.
pub fn write_run(
    out: Box<dyn Write + Send>,
    hosts: &HostAddresses,
    events: &[TraceEvent],
    datagrams: &[Vec<u8>],
) -> io::Result<()> {
    if events.len() != datagrams.len() {
        return Err(io::Error::other(format!(
            "the trace has {} datagrams but {} were recorded",
            events.len(),
            datagrams.len()
        )));
    }
    let w = PcapWriter::new(out)?;
    for (i, (e, bytes)) in events.iter().zip(datagrams).enumerate() {
        // The simulator always knows the ports; port 0 marks a datagram
        // recorded without them.
        let (src_port, dst_port) = e.ports.unwrap_or((0, 0));
        let ends = UdpEnds {
            src_mac: hosts.mac(&e.from),
            dst_mac: hosts.mac(&e.to),
            src: hosts.ipv4(&e.from),
            dst: hosts.ipv4(&e.to),
            src_port,
            dst_port,
        };
        let frame = udp_frame(&ends, (i + 1) as u16, bytes);
        let secs = (e.at_us / 1_000_000).min(u64::from(u32::MAX)) as u32;
        w.frame_at(secs, (e.at_us % 1_000_000) as u32, &frame);
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::trace::TraceFate;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn bytes(&self) -> Vec<u8> {
            self.0.lock().expect("lock").clone()
        }
    }

    #[test]
    fn header_and_records_are_what_wireshark_expects() {
        let buf = Shared::default();
        let w = PcapWriter::new(Box::new(buf.clone())).expect("header");
        w.frame_at(1_700_000_000, 250, &[0xaa; 60]);
        w.frame_at(1_700_000_001, 0, &[0xbb; 42]);
        w.flush().expect("flush");
        let bytes = buf.bytes();
        assert_eq!(
            &bytes[..24],
            &[
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
        assert_eq!(
            &bytes[24..40],
            &[0x00, 0xf1, 0x53, 0x65, 250, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0]
        );
        assert_eq!(bytes.len(), 24 + 16 + 60 + 16 + 42);
        let frames = read_frames(&bytes).expect("parses");
        assert_eq!(frames, vec![vec![0xaa; 60], vec![0xbb; 42]]);
        assert_eq!(read_frames(&bytes[..bytes.len() - 1]), None, "cut short");
    }

    /// The sum over a header or pseudo-header and segment, checksum
    /// included, folds to all ones when the checksum is right.
    fn verifies(parts: &[&[u8]]) -> bool {
        checksum(parts) == 0
    }

    #[test]
    fn the_checksum_is_rfc_1071s() {
        // RFC 1071's example words sum to ddf2 (one's complement: 220d).
        assert_eq!(
            checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            !0xddf2
        );
        // An odd length pads with a zero byte.
        assert_eq!(checksum(&[&[0x12]]), !0x1200);
    }

    #[test]
    fn a_udp_frame_has_valid_ip_and_udp_checksums() {
        let ends = UdpEnds {
            src_mac: [2, 0, 198, 18, 0, 1],
            dst_mac: [2, 0, 198, 18, 0, 2],
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 18, 0, 2),
            src_port: 49152,
            dst_port: 69,
        };
        for payload in [&b"\x00\x04\x00\x01"[..], b"\x00\x03\x00\x07odd"] {
            let f = udp_frame(&ends, 7, payload);
            assert_eq!(f.len(), 14 + 20 + 8 + payload.len());
            assert_eq!(&f[..6], &ends.dst_mac);
            assert_eq!(&f[6..12], &ends.src_mac);
            assert_eq!(&f[12..14], &[8, 0]);
            let ip = &f[14..34];
            assert_eq!(
                u16::from_be_bytes([ip[2], ip[3]]) as usize,
                28 + payload.len()
            );
            assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 7);
            assert!(verifies(&[ip]), "IP header checksum");
            let udp = &f[34..];
            assert_eq!(&udp[..4], &[0xc0, 0x00, 0, 69]);
            let mut pseudo = [0u8; 12];
            pseudo[..8].copy_from_slice(&f[26..34]);
            pseudo[9] = 17;
            pseudo[10..].copy_from_slice(&(udp.len() as u16).to_be_bytes());
            assert_ne!(&udp[6..8], &[0, 0], "a checksum is given");
            assert!(verifies(&[&pseudo, udp]), "UDP checksum");
            assert_eq!(&udp[8..], payload);
        }
    }

    #[test]
    fn hosts_keep_their_addresses_in_the_scenarios_order() {
        let event = |from: &str, to: &str| TraceEvent {
            at_us: 0,
            from: from.into(),
            to: to.into(),
            fate: TraceFate::Delivered,
            len: 0,
            packet: String::new(),
            ports: None,
        };
        let hosts = HostAddresses::new(["server", "a", "b"])
            .with_trace(&[event("b", "server"), event("stray", "a")]);
        assert_eq!(hosts.ipv4("server"), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(hosts.ipv4("a"), Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(hosts.ipv4("b"), Ipv4Addr::new(198, 18, 0, 3));
        assert_eq!(hosts.ipv4("stray"), Ipv4Addr::new(198, 18, 0, 4));
        assert_eq!(hosts.mac("b"), [0x02, 0x00, 198, 18, 0, 3]);
    }

    #[test]
    fn a_run_is_one_record_per_datagram_at_its_simulated_time() {
        let events = vec![
            TraceEvent {
                at_us: 1_500,
                from: "c".into(),
                to: "server".into(),
                fate: TraceFate::Delivered,
                len: 4,
                packet: "ACK #0".into(),
                ports: Some((49152, 69)),
            },
            TraceEvent {
                at_us: 2_000_250,
                from: "server".into(),
                to: "c".into(),
                fate: TraceFate::Dropped {
                    cause: "loss".into(),
                },
                len: 7,
                packet: "DATA #1 (3 B)".into(),
                ports: Some((50000, 49152)),
            },
        ];
        let datagrams = vec![
            b"\x00\x04\x00\x00".to_vec(),
            b"\x00\x03\x00\x01abc".to_vec(),
        ];
        let hosts = HostAddresses::new(["server", "c"]);
        let buf = Shared::default();
        write_run(Box::new(buf.clone()), &hosts, &events, &datagrams).expect("written");
        let records = read_records(&buf.bytes()).expect("parses");
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].secs, records[0].micros), (0, 1_500));
        assert_eq!((records[1].secs, records[1].micros), (2, 250));
        let dropped = &records[1].frame;
        assert_eq!(&dropped[26..30], &[198, 18, 0, 1], "from the server");
        assert_eq!(&dropped[34..38], &[0xc3, 0x50, 0xc0, 0x00], "ports");
        assert_eq!(&dropped[42..], b"\x00\x03\x00\x01abc");
        let mismatched = write_run(Box::new(Shared::default()), &hosts, &events, &[]);
        assert!(mismatched.is_err());
    }
}
