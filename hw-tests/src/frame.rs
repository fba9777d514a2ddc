//! The few frames the raw link speaks: Ethernet II carrying ARP (for
//! IPv4 over Ethernet) and IPv4 carrying UDP. Parse reads a received frame
//! into a plain struct; emit writes one into a buffer with every length and
//! checksum filled. Nothing else (no options, no fragments, no VLAN tags)
//! is needed to serve TFTP to a board on the same segment.

use std::net::Ipv4Addr;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETH_HEADER: usize = 14;
pub const IPV4_HEADER: usize = 20;
pub const UDP_HEADER: usize = 8;
/// Ethernet + IPv4 + UDP headers in front of a datagram.
pub const HEADERS: usize = ETH_HEADER + IPV4_HEADER + UDP_HEADER;
const IP_PROTO_UDP: u8 = 17;

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub const ZERO: Mac = Mac([0; 6]);

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
    pub fn parse(s: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut out {
            let p = parts.next()?;
            if p.len() != 2 {
                return None;
            }
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(out))
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An ARP request or reply for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub reply: bool,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_mac: Mac,
    pub target_ip: Ipv4Addr,
}

/// How a received UDP checksum checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// The sender filled it and it matches.
    Good,
    /// Zero: "no checksum", allowed for UDP over IPv4.
    Absent,
    /// It holds only the pseudo-header sum: the frame was handed to us by
    /// a local interface (veth, tap) whose sender left the checksum to TX
    /// offload, which never ran. The payload is not covered.
    Partial,
    /// Wrong: the datagram was damaged.
    Bad,
}

/// A UDP datagram in an IPv4 packet in an Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp<'a> {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
    pub checksum: Checksum,
}

/// What a received frame is, as far as the link cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Arp(Mac, Arp),
    Udp(Udp<'a>),
    /// An IPv4 fragment (not reassembled; the link keeps datagrams within
    /// one frame by capping blksize).
    Fragment {
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
    },
    /// Damaged: a bad IPv4 header checksum, or lengths that do not fit.
    Malformed(&'static str),
    /// Anything else: other protocols, IPv6, LLDP...
    Other,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn mac_at(b: &[u8], at: usize) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    Mac(m)
}

/// The ones'-complement sum of `data` added to `sum`, not yet folded.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum16(0, data))
}

fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> u32 {
    let mut sum = sum16(0, &src.octets());
    sum = sum16(sum, &dst.octets());
    sum + u32::from(IP_PROTO_UDP) + u32::from(udp_len)
}

/// The UDP checksum over the pseudo-header and `udp` (header + payload,
/// with the checksum field as it is). Zero is sent as 0xffff.
fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let c = !fold(sum16(pseudo_header_sum(src, dst, udp.len() as u16), udp));
    if c == 0 {
        0xffff
    } else {
        c
    }
}

fn check_udp(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> Checksum {
    let stored = be16(udp, 6);
    if stored == 0 {
        return Checksum::Absent;
    }
    // Summing a segment whose checksum is right gives 0xffff.
    if fold(sum16(pseudo_header_sum(src, dst, udp.len() as u16), udp)) == 0xffff {
        return Checksum::Good;
    }
    // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, not
    // complemented, for the offload engine to finish.
    if stored == fold(pseudo_header_sum(src, dst, udp.len() as u16)) {
        return Checksum::Partial;
    }
    Checksum::Bad
}

/// Reads a received frame.
pub fn parse(frame: &[u8]) -> Frame<'_> {
    if frame.len() < ETH_HEADER {
        return Frame::Malformed("shorter than an Ethernet header");
    }
    let dst_mac = mac_at(frame, 0);
    let src_mac = mac_at(frame, 6);
    let body = &frame[ETH_HEADER..];
    match be16(frame, 12) {
        ETHERTYPE_ARP => parse_arp(body).map_or(Frame::Other, |a| Frame::Arp(src_mac, a)),
        ETHERTYPE_IPV4 => parse_ipv4(src_mac, dst_mac, body),
        _ => Frame::Other,
    }
}

fn parse_arp(b: &[u8]) -> Option<Arp> {
    // Ethernet (1), IPv4 (0x0800), 6-byte and 4-byte addresses.
    if b.len() < 28 || be16(b, 0) != 1 || be16(b, 2) != ETHERTYPE_IPV4 || b[4] != 6 || b[5] != 4 {
        return None;
    }
    let reply = match be16(b, 6) {
        1 => false,
        2 => true,
        _ => return None,
    };
    Some(Arp {
        reply,
        sender_mac: mac_at(b, 8),
        sender_ip: ip_at(b, 14),
        target_mac: mac_at(b, 18),
        target_ip: ip_at(b, 24),
    })
}

fn parse_ipv4(src_mac: Mac, dst_mac: Mac, b: &[u8]) -> Frame<'_> {
    if b.len() < IPV4_HEADER || b[0] >> 4 != 4 {
        return Frame::Malformed("not an IPv4 header");
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let total = usize::from(be16(b, 2));
    if ihl < IPV4_HEADER || total < ihl || total > b.len() {
        // Ethernet pads short frames, so the frame may be longer than the
        // packet, never shorter.
        return Frame::Malformed("IPv4 lengths do not fit the frame");
    }
    if checksum(&b[..ihl]) != 0 {
        return Frame::Malformed("bad IPv4 header checksum");
    }
    let (src_ip, dst_ip) = (ip_at(b, 12), ip_at(b, 16));
    let flags_frag = be16(b, 6);
    if flags_frag & 0x3fff != 0 {
        // More-fragments set or a non-zero offset.
        return Frame::Fragment { src_ip, dst_ip };
    }
    if b[9] != IP_PROTO_UDP {
        return Frame::Other;
    }
    let udp = &b[ihl..total];
    if udp.len() < UDP_HEADER || usize::from(be16(udp, 4)) != udp.len() {
        return Frame::Malformed("UDP length does not match the IPv4 packet");
    }
    Frame::Udp(Udp {
        src_mac,
        dst_mac,
        src_ip,
        dst_ip,
        src_port: be16(udp, 0),
        dst_port: be16(udp, 2),
        payload: &udp[UDP_HEADER..],
        checksum: check_udp(src_ip, dst_ip, udp),
    })
}

/// Writes an ARP frame into `out` (cleared first).
pub fn emit_arp(out: &mut Vec<u8>, eth_dst: Mac, eth_src: Mac, arp: &Arp) {
    out.clear();
    out.extend_from_slice(&eth_dst.0);
    out.extend_from_slice(&eth_src.0);
    out.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    out.extend_from_slice(&(if arp.reply { 2u16 } else { 1 }).to_be_bytes());
    out.extend_from_slice(&arp.sender_mac.0);
    out.extend_from_slice(&arp.sender_ip.octets());
    out.extend_from_slice(&arp.target_mac.0);
    out.extend_from_slice(&arp.target_ip.octets());
    // Pad to Ethernet's 60-byte minimum (the NIC adds the FCS).
    out.resize(60, 0);
}

/// Writes an Ethernet/IPv4/UDP frame carrying `udp.payload` into `out`
/// (cleared first), with both checksums filled. `ident` is the IPv4
/// identification. Returns `None` if the datagram cannot fit in one IPv4
/// packet.
pub fn emit_udp(out: &mut Vec<u8>, udp: &Udp<'_>, ident: u16) -> Option<()> {
    let udp_len = u16::try_from(UDP_HEADER + udp.payload.len()).ok()?;
    let total = udp_len.checked_add(IPV4_HEADER as u16)?;
    out.clear();
    out.extend_from_slice(&udp.dst_mac.0);
    out.extend_from_slice(&udp.src_mac.0);
    out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_start = out.len();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&ident.to_be_bytes());
    out.extend_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    out.extend_from_slice(&[64, IP_PROTO_UDP, 0, 0]);
    out.extend_from_slice(&udp.src_ip.octets());
    out.extend_from_slice(&udp.dst_ip.octets());
    let ip_sum = checksum(&out[ip_start..]);
    out[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let udp_start = out.len();
    out.extend_from_slice(&udp.src_port.to_be_bytes());
    out.extend_from_slice(&udp.dst_port.to_be_bytes());
    out.extend_from_slice(&udp_len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(udp.payload);
    let c = udp_checksum(udp.src_ip, udp.dst_ip, &out[udp_start..]);
    out[udp_start + 6..udp_start + 8].copy_from_slice(&c.to_be_bytes());
    if out.len() < 60 {
        out.resize(60, 0);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOARD: Mac = Mac([0xdc, 0xa6, 0x32, 0x01, 0x02, 0x03]);
    const SERVER: Mac = Mac([0x02, 0, 0, 0, 0, 1]);

    /// A board's RRQ for "a" octet, as a real stack sends it: Ethernet,
    /// IPv4 (ident 0x1234, DF, TTL 64) and UDP 1234 -> 69, both checksums
    /// computed by hand.
    const RRQ_FRAME: [u8; 60] = [
        0x02, 0, 0, 0, 0, 1, 0xdc, 0xa6, 0x32, 0x01, 0x02, 0x03, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x26, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x14, 0x91, // IPv4
        10, 0, 0, 2, 10, 0, 0, 1, // addresses
        0x04, 0xd2, 0x00, 0x45, 0x00, 0x12, 0x2d, 0xe6, // UDP
        0, 1, b'a', 0, b'o', b'c', b't', b'e', b't', 0, // RRQ "a" octet
        0, 0, 0, 0, 0, 0, 0, 0, // padding to 60
    ];

    fn rrq() -> Udp<'static> {
        Udp {
            src_mac: BOARD,
            dst_mac: SERVER,
            src_ip: Ipv4Addr::new(10, 0, 0, 2),
            dst_ip: Ipv4Addr::new(10, 0, 0, 1),
            src_port: 1234,
            dst_port: 69,
            payload: b"\0\x01a\0octet\0",
            checksum: Checksum::Good,
        }
    }

    #[test]
    fn parse_a_udp_frame() {
        assert_eq!(parse(&RRQ_FRAME), Frame::Udp(rrq()));
    }

    #[test]
    fn emit_a_udp_frame_byte_for_byte() {
        let mut out = Vec::new();
        emit_udp(&mut out, &rrq(), 0x1234).expect("fits");
        assert_eq!(out, RRQ_FRAME);
    }

    #[test]
    fn a_flipped_payload_bit_is_a_bad_checksum() {
        let mut f = RRQ_FRAME;
        f[45] ^= 0x04;
        assert!(matches!(parse(&f), Frame::Udp(u) if u.checksum == Checksum::Bad));
    }

    #[test]
    fn a_flipped_header_bit_is_malformed() {
        let mut f = RRQ_FRAME;
        f[22] ^= 0x01; // TTL
        assert_eq!(parse(&f), Frame::Malformed("bad IPv4 header checksum"));
    }

    #[test]
    fn a_truncated_frame_is_malformed() {
        assert!(matches!(parse(&RRQ_FRAME[..40]), Frame::Malformed(_)));
        assert!(matches!(parse(&RRQ_FRAME[..10]), Frame::Malformed(_)));
    }

    #[test]
    fn offload_partial_checksum_is_recognised_not_accepted_as_good() {
        let mut f = RRQ_FRAME;
        // What a veth peer hands over with TX checksum offload on: the
        // folded pseudo-header sum, not complemented.
        let partial = fold(pseudo_header_sum(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            18,
        ));
        f[40..42].copy_from_slice(&partial.to_be_bytes());
        assert!(matches!(parse(&f), Frame::Udp(u) if u.checksum == Checksum::Partial));
        f[40..42].copy_from_slice(&[0, 0]);
        assert!(matches!(parse(&f), Frame::Udp(u) if u.checksum == Checksum::Absent));
    }

    #[test]
    fn arp_round_trips() {
        let a = Arp {
            reply: false,
            sender_mac: BOARD,
            sender_ip: Ipv4Addr::new(10, 0, 0, 2),
            target_mac: Mac::ZERO,
            target_ip: Ipv4Addr::new(10, 0, 0, 1),
        };
        let mut out = Vec::new();
        emit_arp(&mut out, Mac::BROADCAST, BOARD, &a);
        assert_eq!(out.len(), 60);
        assert_eq!(&out[12..22], &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        assert_eq!(parse(&out), Frame::Arp(BOARD, a));
    }

    #[test]
    fn fragments_are_reported_not_parsed() {
        let mut f = RRQ_FRAME;
        f[20] = 0x20; // more fragments
        f[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        assert!(matches!(parse(&f), Frame::Fragment { .. }));
    }

    #[test]
    fn no_input_panics_and_damage_never_passes_as_good() {
        // Random frames of every short length, and the RRQ frame with
        // random bytes overwritten: parse never panics, and a changed UDP
        // part is never reported as a good checksum carrying different
        // bytes (short of a checksum-preserving change).
        let noise = tftplab_sim::lab::scenario::generate(200_000, 5);
        for len in 0..120 {
            let _ = parse(&noise[len * 7..len * 8]);
        }
        for i in 0..5_000 {
            let mut f = RRQ_FRAME;
            let at = usize::from(noise[i * 3]) % f.len();
            f[at] ^= noise[i * 3 + 1] | 1;
            if let Frame::Udp(u) = parse(&f) {
                if (34..52).contains(&at) {
                    assert_ne!(u.checksum, Checksum::Good, "byte {at} changed");
                }
            }
        }
    }

    #[test]
    fn mac_parse() {
        assert_eq!(Mac::parse("dc:a6:32:01:02:03"), Some(BOARD));
        assert_eq!(Mac::parse("DC-A6-32-01-02-03"), Some(BOARD));
        assert_eq!(Mac::parse("dc:a6:32:01:02"), None);
        assert_eq!(Mac::parse("dc:a6:32:01:02:03:04"), None);
        assert_eq!(Mac::parse("zz:a6:32:01:02:03"), None);
        assert_eq!(BOARD.to_string(), "dc:a6:32:01:02:03");
    }
}
