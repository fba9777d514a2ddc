//! The raw link: the lab server's own IPv4 address on a named interface,
//! with Ethernet, ARP, IPv4 and UDP done here over a pnet datalink channel
//! (an `AF_PACKET` socket), so the unchanged tftplab server runs on it
//! through [`Network`] with as many transfer ports as it likes.
//!
//! The server gets its own locally administered MAC address and the
//! channel is promiscuous: the host kernel sees the board's frames to that
//! MAC as "for another host" and ignores them, and it does not own the
//! server's IP, so it neither answers ARP for it nor sends port
//! unreachables. Nothing on the host needs configuring but the link being
//! up.
//!
//! Faults are applied per frame with the lab's seeded injector, one per
//! direction: board-to-server on receive, server-to-board on send. A
//! corrupted or truncated frame is really damaged: going out, the board's
//! stack drops it; coming in, this link's own checksum and length checks
//! do. Every frame in and out goes to the pcap file, and every datagram
//! with its fate to the lab trace.

use crate::frame::{self, Arp, Checksum, Frame, Mac, Udp, HEADERS};
use crate::pcap::PcapWriter;
use pnet_datalink::{Channel, Config, DataLinkReceiver, DataLinkSender};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tftplab::runtime::{DatagramSocket, Network};
use tftplab_sim::lab::faults::{decide_scripted, Cause, Direction, Fate, Injector, Outage, Script};
use tftplab_sim::lab::setup::{deliver_now, mix, trace_fate};
use tftplab_sim::lab::trace::{render_packet, Trace, TraceFate};
use tftplab_sim::lab::FaultPlan;
use tokio::sync::mpsc;

/// The server's MAC unless the inventory names one: locally administered
/// (bit 1 of the first byte), "tftp" in ASCII.
pub const DEFAULT_SERVER_MAC: Mac = Mac([0x02, 0x00, 0x74, 0x66, 0x74, 0x70]);

/// How long the receive thread waits for a frame before it looks at the
/// stop flag again.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Transfer ports handed out for port 0.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// What to do with a UDP checksum that holds only the pseudo-header sum.
///
/// A real wire never carries one: NICs finish the checksum. A frame from a
/// local veth or tap peer whose kernel left the checksum to TX offload
/// does, and the payload is then not covered at all. `Reject` (the default,
/// right for a board on a cable) drops such datagrams and counts them;
/// `Accept` takes them and counts them, for stand-ins on virtual
/// interfaces where offload cannot be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartialChecksums {
    #[default]
    Reject,
    Accept,
}

/// Where and how to open the link.
#[derive(Clone)]
pub struct LinkConfig {
    pub interface: String,
    /// Open the interface inside this network namespace (`/run/netns/NAME`).
    pub netns: Option<String>,
    pub server_ip: Ipv4Addr,
    pub server_mac: Mac,
    /// The board's address, if known in advance (it is also learned from
    /// its ARP and IP traffic).
    pub board: Option<(Ipv4Addr, Mac)>,
    /// The board's name in the trace.
    pub board_name: String,
    pub partial_checksums: PartialChecksums,
    /// Largest IPv4 packet on the link.
    pub mtu: usize,
    pub faults: FaultPlan,
    pub seed: u64,
    pub pcap: Option<PcapWriter>,
    pub trace: Trace,
}

/// Counters over the link's life.
#[derive(Debug, Default)]
struct Counters {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    fault_drops_in: AtomicU64,
    fault_drops_out: AtomicU64,
    bad_checksums: AtomicU64,
    partial_checksums: AtomicU64,
    malformed: AtomicU64,
    fragments: AtomicU64,
    no_listener: AtomicU64,
    partitioned: AtomicU64,
}

/// A snapshot of the link's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub frames_in: u64,
    pub frames_out: u64,
    /// UDP datagrams for the server that reached a socket.
    pub datagrams_in: u64,
    /// UDP datagrams the server sent (a duplicated one counts once).
    pub datagrams_out: u64,
    /// Dropped (or damaged, then dropped) by the fault plan, per direction.
    pub fault_drops_in: u64,
    pub fault_drops_out: u64,
    /// Received datagrams whose UDP checksum was wrong.
    pub bad_checksums: u64,
    /// Received datagrams with an offload-partial checksum.
    pub partial_checksums: u64,
    /// Received frames for the server that did not parse (lengths,
    /// IPv4 header checksum).
    pub malformed: u64,
    pub fragments: u64,
    /// Datagrams for a port nobody listens on.
    pub no_listener: u64,
    /// Frames dropped because a scenario event partitioned the link.
    pub partitioned: u64,
}

type Inbox = mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>;

/// A delivery waiting in a [`DelayLine`].
type Job = Box<dyn FnOnce() + Send>;

/// The frames of one direction that the fault plan delays, delivered by one
/// thread in the order the plan means: by due time, and in the order they
/// were sent where due times tie. (A tokio sleep per frame does not keep
/// that order: sleeps that end in the same millisecond wake in any order,
/// which reordered nearly every window of a burst when a `latency` range
/// was in the plan; and tokio's timer rounds a 200 us delay up to a
/// millisecond, where this thread waits to the microsecond or so.) A frame
/// with no delay skips the line only when nothing is waiting in it, so it
/// never overtakes one that is.
struct DelayLine {
    shared: Arc<(Mutex<Line>, std::sync::Condvar)>,
}

#[derive(Default)]
struct Line {
    queue: BTreeMap<(Instant, u64), Job>,
    seq: u64,
    /// Jobs pushed and not yet run to the end.
    pending: usize,
    closed: bool,
}

impl DelayLine {
    /// A line and its thread, which runs until the line is dropped and the
    /// jobs in it have run.
    fn start(name: &str) -> io::Result<DelayLine> {
        let shared = Arc::new((Mutex::new(Line::default()), std::sync::Condvar::new()));
        let worker = shared.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run_delay_line(&worker))?;
        Ok(DelayLine { shared })
    }

    /// Whether a delivery due at `due` may happen right away: it is due
    /// and nothing is waiting in the line.
    fn clear(&self, due: Instant) -> bool {
        due <= Instant::now() && self.shared.0.lock().is_ok_and(|l| l.pending == 0)
    }

    /// Runs `job` at `due`: now if the line is [clear](Self::clear), else
    /// in its turn.
    fn deliver(&self, due: Instant, job: Job) {
        if self.clear(due) {
            job();
            return;
        }
        let (lock, wake) = &*self.shared;
        let Ok(mut line) = lock.lock() else {
            return;
        };
        let seq = line.seq;
        line.seq += 1;
        line.pending += 1;
        line.queue.insert((due, seq), job);
        wake.notify_one();
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut line) = lock.lock() {
            line.closed = true;
        }
        wake.notify_one();
    }
}

fn run_delay_line(shared: &(Mutex<Line>, std::sync::Condvar)) {
    let (lock, wake) = shared;
    let Ok(mut line) = lock.lock() else {
        return;
    };
    loop {
        let now = Instant::now();
        let next = line.queue.keys().next().map(|&(due, _)| due);
        match next {
            Some(due) if due <= now => {
                let Some((_, job)) = line.queue.pop_first() else {
                    continue;
                };
                drop(line);
                job();
                line = match lock.lock() {
                    Ok(l) => l,
                    Err(_) => return,
                };
                line.pending -= 1;
            }
            Some(due) => {
                line = match wake.wait_timeout(line, due - now) {
                    Ok((l, _)) => l,
                    Err(_) => return,
                };
            }
            None if line.closed => return,
            None => {
                line = match wake.wait(line) {
                    Ok(l) => l,
                    Err(_) => return,
                };
            }
        }
    }
}

struct Inner {
    config: LinkConfig,
    tx: Mutex<Box<dyn DataLinkSender>>,
    sockets: Mutex<BTreeMap<u16, Inbox>>,
    arp: Mutex<BTreeMap<Ipv4Addr, Mac>>,
    arp_learned: tokio::sync::Notify,
    inbound: Mutex<(Injector, Script)>,
    outbound: Mutex<(Injector, Script)>,
    counters: Counters,
    partitioned: AtomicBool,
    /// Every datagram the board sent to port 69, as received, with its
    /// sender.
    requests: Mutex<Vec<(SocketAddr, Vec<u8>)>>,
    stop: AtomicBool,
    ident: AtomicU16,
    next_port: AtomicU16,
    started: Instant,
    /// Delayed frames to the board, and delayed datagrams from it.
    delay_out: DelayLine,
    delay_in: DelayLine,
}

/// The link as a tftplab [`Network`]. Clones share the link.
#[derive(Clone)]
pub struct RawLink(Arc<Inner>);

/// Owns the receive thread; dropping it (or [`LinkHandle::close`]) stops
/// the thread within its read timeout (`READ_TIMEOUT`). Sockets still open then receive
/// nothing more.
pub struct LinkHandle {
    link: RawLink,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Runs `f` on a fresh thread that has entered network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = std::path::Path::new("/run/netns").join(ns);
    let thread = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("network namespace {ns:?}: {e}", ns = path.display()),
            )
        })?;
        // SAFETY: setns on a valid namespace fd affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f()
    });
    thread
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread failed")))
}

type Halves = (
    Box<dyn DataLinkSender>,
    Box<dyn DataLinkReceiver>,
    Option<Mac>,
);

fn open_channel(interface: String) -> io::Result<Halves> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no network interface named {interface:?}"),
            )
        })?;
    let config = Config {
        read_timeout: Some(READ_TIMEOUT),
        write_timeout: Some(Duration::from_secs(1)),
        read_buffer_size: 65_536,
        write_buffer_size: 65_536,
        promiscuous: true,
        ..Config::default()
    };
    let mac = iface.mac.map(|m| Mac(m.octets()));
    match pnet_datalink::channel(&iface, config) {
        Ok(Channel::Ethernet(tx, rx)) => Ok((tx, rx, mac)),
        Ok(_) => Err(io::Error::other("not an Ethernet channel")),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(io::Error::new(
            e.kind(),
            format!("opening {interface}: {e} (the runner needs CAP_NET_RAW: run as root or setcap cap_net_raw+ep)"),
        )),
        Err(e) => Err(io::Error::new(e.kind(), format!("opening {interface}: {e}"))),
    }
}

impl RawLink {
    /// Opens the interface and starts the receive thread and one delay
    /// line per direction.
    pub fn open(config: LinkConfig) -> io::Result<(RawLink, LinkHandle)> {
        let interface = config.interface.clone();
        let (tx, rx, iface_mac) = match &config.netns {
            Some(ns) => in_netns(ns, move || open_channel(interface))?,
            None => open_channel(interface)?,
        };
        if iface_mac == Some(config.server_mac) {
            // Harmless, but then the host kernel sees the board's frames as
            // its own; say so in the log.
            eprintln!(
                "tftplab-hw: note: server MAC {} is {}'s own address",
                config.server_mac, config.interface
            );
        }
        let mut arp = BTreeMap::new();
        if let Some((ip, mac)) = config.board {
            arp.insert(ip, mac);
        }
        let outage = Outage::default();
        let inbound = (
            Injector::new(config.faults.client_to_server, mix(config.seed, "board")),
            Script::new(&config.faults, Direction::ClientToServer).with_outage(&outage),
        );
        let outbound = (
            Injector::new(config.faults.server_to_client, mix(config.seed, "server")),
            Script::new(&config.faults, Direction::ServerToClient).with_outage(&outage),
        );
        let inner = Arc::new(Inner {
            config,
            tx: Mutex::new(tx),
            sockets: Mutex::new(BTreeMap::new()),
            arp: Mutex::new(arp),
            arp_learned: tokio::sync::Notify::new(),
            inbound: Mutex::new(inbound),
            outbound: Mutex::new(outbound),
            counters: Counters::default(),
            partitioned: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            ident: AtomicU16::new(1),
            next_port: AtomicU16::new(0),
            started: Instant::now(),
            delay_out: DelayLine::start("tftplab-hw-delay-out")?,
            delay_in: DelayLine::start("tftplab-hw-delay-in")?,
        });
        let link = RawLink(inner);
        let rx_link = link.clone();
        let thread = std::thread::Builder::new()
            .name("tftplab-hw-rx".into())
            .spawn(move || rx_link.receive_loop(rx))?;
        Ok((
            link.clone(),
            LinkHandle {
                link,
                thread: Some(thread),
            },
        ))
    }

    pub fn stats(&self) -> LinkStats {
        let c = &self.0.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LinkStats {
            frames_in: g(&c.frames_in),
            frames_out: g(&c.frames_out),
            datagrams_in: g(&c.datagrams_in),
            datagrams_out: g(&c.datagrams_out),
            fault_drops_in: g(&c.fault_drops_in),
            fault_drops_out: g(&c.fault_drops_out),
            bad_checksums: g(&c.bad_checksums),
            partial_checksums: g(&c.partial_checksums),
            malformed: g(&c.malformed),
            fragments: g(&c.fragments),
            no_listener: g(&c.no_listener),
            partitioned: g(&c.partitioned),
        }
    }

    /// Cuts (or restores) the link in both directions, for a scenario's
    /// partition and heal events.
    pub fn set_partitioned(&self, on: bool) {
        self.0.partitioned.store(on, Ordering::Relaxed);
    }

    /// Every datagram received for port 69 (the board's requests), in
    /// order, whatever the fault plan then did with it.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.requests_with_source()
            .into_iter()
            .map(|(_, datagram)| datagram)
            .collect()
    }

    /// [`requests`](Self::requests) with the address and port each came
    /// from: the server's record of a transfer names only that peer, so
    /// this says which request (and options) started it.
    pub fn requests_with_source(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.0
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The board's MAC as learned (or configured).
    pub fn board_mac(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.0.arp.lock().ok().and_then(|a| a.get(&ip).copied())
    }

    fn elapsed(&self) -> Duration {
        self.0.started.elapsed()
    }

    fn transmit(&self, frame: &[u8]) -> io::Result<()> {
        let inner = &self.0;
        if let Some(p) = &inner.config.pcap {
            p.frame(frame);
        }
        inner.counters.frames_out.fetch_add(1, Ordering::Relaxed);
        let mut tx = inner
            .tx
            .lock()
            .map_err(|_| io::Error::other("link sender poisoned"))?;
        tx.send_to(frame, None)
            .unwrap_or_else(|| Err(io::Error::other("frame not sent")))
    }

    fn receive_loop(self, mut rx: Box<dyn DataLinkReceiver>) {
        while !self.0.stop.load(Ordering::Relaxed) {
            match rx.next() {
                Ok(frame) => self.on_frame(frame),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("tftplab-hw: receive on {}: {e}", self.0.config.interface);
                    std::thread::sleep(READ_TIMEOUT);
                }
            }
        }
    }

    fn learn(&self, ip: Ipv4Addr, mac: Mac) {
        if ip.is_unspecified() || mac == Mac::BROADCAST || mac == Mac::ZERO {
            return;
        }
        if let Ok(mut a) = self.0.arp.lock() {
            if a.insert(ip, mac) != Some(mac) {
                self.0.arp_learned.notify_waiters();
            }
        }
    }

    fn on_frame(&self, raw: &[u8]) {
        let cfg = &self.0.config;
        // AF_PACKET hands us our own outgoing frames too.
        if raw.len() >= 12 && raw[6..12] == cfg.server_mac.0 {
            return;
        }
        let for_us =
            raw.len() >= 6 && (raw[..6] == cfg.server_mac.0 || raw[..6] == Mac::BROADCAST.0);
        if !for_us {
            return;
        }
        let c = &self.0.counters;
        match frame::parse(raw) {
            Frame::Arp(_, arp) => self.on_arp(raw, &arp),
            Frame::Udp(udp) if udp.dst_ip == cfg.server_ip => {
                self.capture(raw);
                self.learn(udp.src_ip, udp.src_mac);
                self.on_udp(raw, &udp);
            }
            Frame::Fragment { dst_ip, .. } if dst_ip == cfg.server_ip => {
                self.capture(raw);
                c.fragments.fetch_add(1, Ordering::Relaxed);
            }
            Frame::Malformed(_) if raw[..6] == cfg.server_mac.0 => {
                self.capture(raw);
                c.malformed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn capture(&self, raw: &[u8]) {
        self.0.counters.frames_in.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = &self.0.config.pcap {
            p.frame(raw);
        }
    }

    fn on_arp(&self, raw: &[u8], arp: &Arp) {
        let cfg = &self.0.config;
        // Requests for the server's address, and replies to its own.
        if arp.target_ip != cfg.server_ip && arp.target_mac != cfg.server_mac {
            return;
        }
        self.capture(raw);
        self.learn(arp.sender_ip, arp.sender_mac);
        if !arp.reply
            && arp.target_ip == cfg.server_ip
            && !self.0.partitioned.load(Ordering::Relaxed)
        {
            let reply = Arp {
                reply: true,
                sender_mac: cfg.server_mac,
                sender_ip: cfg.server_ip,
                target_mac: arp.sender_mac,
                target_ip: arp.sender_ip,
            };
            let mut out = Vec::with_capacity(60);
            frame::emit_arp(&mut out, arp.sender_mac, cfg.server_mac, &reply);
            if let Err(e) = self.transmit(&out) {
                eprintln!("tftplab-hw: ARP reply: {e}");
            }
        }
    }

    fn on_udp(&self, raw: &[u8], udp: &Udp<'_>) {
        let c = &self.0.counters;
        let from = SocketAddr::new(IpAddr::V4(udp.src_ip), udp.src_port);
        if udp.dst_port == 69 && udp.checksum != Checksum::Bad {
            if let Ok(mut r) = self.0.requests.lock() {
                r.push((from, udp.payload.to_vec()));
            }
        }
        let rendered = render_packet(udp.payload);
        let record = |fate: TraceFate| {
            self.0.config.trace.record_rendered(
                self.elapsed(),
                self.0.config.board_name.clone(),
                "server".into(),
                fate,
                udp.payload.len(),
                rendered.clone(),
            );
        };
        if self.0.partitioned.load(Ordering::Relaxed) {
            c.partitioned.fetch_add(1, Ordering::Relaxed);
            record(TraceFate::Dropped {
                cause: "partitioned".into(),
            });
            return;
        }
        match udp.checksum {
            Checksum::Good | Checksum::Absent => {}
            Checksum::Partial => {
                c.partial_checksums.fetch_add(1, Ordering::Relaxed);
                if self.0.config.partial_checksums == PartialChecksums::Reject {
                    record(TraceFate::Dropped {
                        cause: "offload-partial UDP checksum (partial_checksums = \"reject\")"
                            .into(),
                    });
                    return;
                }
            }
            Checksum::Bad => {
                c.bad_checksums.fetch_add(1, Ordering::Relaxed);
                record(TraceFate::Dropped {
                    cause: "bad UDP checksum on the wire".into(),
                });
                return;
            }
        }
        let sent_at = self.0.started.elapsed();
        let (fate, damaged) = {
            let Ok(mut g) = self.0.inbound.lock() else {
                return;
            };
            let (injector, script) = &mut *g;
            match decide_scripted(injector, script, &rendered, sent_at) {
                // Damage a copy for real and let the checks drop it.
                Fate::Dropped(cause @ (Cause::Corrupted | Cause::Truncated)) => {
                    match damaged_survivor(injector, raw, udp.payload.len(), cause) {
                        Some(payload) => (deliver_now(), Some(payload)),
                        None => (Fate::Dropped(cause), None),
                    }
                }
                fate => (fate, None),
            }
        };
        let payload = damaged.as_deref().unwrap_or(udp.payload);
        record(trace_fate(&fate));
        let delays = match fate {
            Fate::Dropped(_) => {
                c.fault_drops_in.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Fate::Deliver { delays, .. } => delays,
        };
        let inbox = self
            .0
            .sockets
            .lock()
            .ok()
            .and_then(|s| s.get(&udp.dst_port).cloned());
        let Some(inbox) = inbox else {
            c.no_listener.fetch_add(1, Ordering::Relaxed);
            return;
        };
        c.datagrams_in.fetch_add(1, Ordering::Relaxed);
        for d in delays {
            let datagram = (payload.to_vec(), from);
            let inbox = inbox.clone();
            self.0.delay_in.deliver(
                self.0.started + sent_at + d,
                Box::new(move || {
                    let _ = inbox.send(datagram);
                }),
            );
        }
    }

    /// The board's MAC for `ip`: from the cache, else by asking with ARP
    /// (three tries, 300 ms apart).
    async fn resolve(&self, ip: Ipv4Addr) -> io::Result<Mac> {
        let cfg = &self.0.config;
        for _ in 0..3 {
            let notified = self.0.arp_learned.notified();
            if let Some(mac) = self.board_mac(ip) {
                return Ok(mac);
            }
            let request = Arp {
                reply: false,
                sender_mac: cfg.server_mac,
                sender_ip: cfg.server_ip,
                target_mac: Mac::ZERO,
                target_ip: ip,
            };
            let mut out = Vec::with_capacity(60);
            frame::emit_arp(&mut out, Mac::BROADCAST, cfg.server_mac, &request);
            self.transmit(&out)?;
            let _ = tokio::time::timeout(Duration::from_millis(300), notified).await;
        }
        self.board_mac(ip).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::HostUnreachable,
                format!("no ARP reply from {ip} on {}", cfg.interface),
            )
        })
    }

    async fn send_datagram(
        &self,
        local_port: u16,
        buf: &[u8],
        target: SocketAddr,
    ) -> io::Result<usize> {
        let SocketAddr::V4(target) = target else {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "the raw link speaks IPv4 only",
            ));
        };
        let cfg = &self.0.config;
        if HEADERS - frame::ETH_HEADER + buf.len() > cfg.mtu {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a {} byte datagram does not fit the {} byte MTU",
                    buf.len(),
                    cfg.mtu
                ),
            ));
        }
        let rendered = render_packet(buf);
        let record = |fate: TraceFate| {
            cfg.trace.record_rendered(
                self.elapsed(),
                "server".into(),
                cfg.board_name.clone(),
                fate,
                buf.len(),
                rendered.clone(),
            );
        };
        let c = &self.0.counters;
        c.datagrams_out.fetch_add(1, Ordering::Relaxed);
        if self.0.partitioned.load(Ordering::Relaxed) {
            c.partitioned.fetch_add(1, Ordering::Relaxed);
            record(TraceFate::Dropped {
                cause: "partitioned".into(),
            });
            return Ok(buf.len());
        }
        let dst_mac = self.resolve(*target.ip()).await?;
        let mut out = Vec::with_capacity(HEADERS + buf.len());
        let udp = Udp {
            src_mac: cfg.server_mac,
            dst_mac,
            src_ip: cfg.server_ip,
            dst_ip: *target.ip(),
            src_port: local_port,
            dst_port: target.port(),
            payload: buf,
            checksum: Checksum::Good,
        };
        let ident = self.0.ident.fetch_add(1, Ordering::Relaxed);
        frame::emit_udp(&mut out, &udp, ident)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "datagram too large"))?;
        let sent_at = self.0.started.elapsed();
        let fate = {
            let mut g = self
                .0
                .outbound
                .lock()
                .map_err(|_| io::Error::other("injector poisoned"))?;
            let (injector, script) = &mut *g;
            let fate = decide_scripted(injector, script, &rendered, sent_at);
            // Damaged frames really go out; the board's stack drops them.
            match fate {
                Fate::Dropped(Cause::Corrupted) => {
                    let start = (frame::ETH_HEADER + frame::IPV4_HEADER).min(out.len());
                    injector.damage(&mut out[start..], 3);
                }
                Fate::Dropped(Cause::Truncated) => {
                    out.truncate(HEADERS + buf.len() / 2);
                }
                _ => {}
            }
            fate
        };
        record(trace_fate(&fate));
        let delays = match fate {
            Fate::Dropped(cause) => {
                c.fault_drops_out.fetch_add(1, Ordering::Relaxed);
                if matches!(cause, Cause::Corrupted | Cause::Truncated) {
                    self.transmit(&out)?;
                }
                return Ok(buf.len());
            }
            Fate::Deliver { delays, .. } => delays,
        };
        for d in delays {
            let due = self.0.started + sent_at + d;
            if self.0.delay_out.clear(due) {
                self.transmit(&out)?;
                continue;
            }
            let (link, out) = (self.clone(), out.clone());
            self.0.delay_out.deliver(
                due,
                Box::new(move || {
                    let _ = link.transmit(&out);
                }),
            );
        }
        Ok(buf.len())
    }
}

/// Damages a copy of a received frame as `cause` says and puts it through
/// the same checks as any frame: the damaged payload if it would still
/// pass (a checksum-preserving change, about 1 in 65536, as on a real
/// wire), else `None`. A partial or absent checksum does not cover the
/// payload, so there the damage always counts as caught.
fn damaged_survivor(
    injector: &mut Injector,
    raw: &[u8],
    payload_len: usize,
    cause: Cause,
) -> Option<Vec<u8>> {
    let mut damaged = raw.to_vec();
    if cause == Cause::Corrupted {
        let start = (frame::ETH_HEADER + frame::IPV4_HEADER).min(damaged.len());
        injector.damage(&mut damaged[start..], 3);
    } else {
        damaged.truncate(HEADERS + payload_len / 2);
    }
    match frame::parse(&damaged) {
        Frame::Udp(u) if u.checksum == Checksum::Good => Some(u.payload.to_vec()),
        _ => None,
    }
}

impl LinkHandle {
    pub fn link(&self) -> &RawLink {
        &self.link
    }

    /// Stops the receive thread and waits for it.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.link.0.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.link.0.config.pcap {
            let _ = p.flush();
        }
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A UDP port on the link.
pub struct RawSocket {
    link: RawLink,
    port: u16,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>>,
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        if let Ok(mut s) = self.link.0.sockets.lock() {
            s.remove(&self.port);
        }
    }
}

impl DatagramSocket for RawSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(
            IpAddr::V4(self.link.0.config.server_ip),
            self.port,
        ))
    }

    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        self.link.send_datagram(self.port, buf, target)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        // Both awaits are cancel-safe: a datagram is taken out of the
        // channel only when recv completes.
        let mut inbox = self.inbox.lock().await;
        let (datagram, from) = inbox
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "link closed"))?;
        let n = datagram.len().min(buf.len());
        buf[..n].copy_from_slice(&datagram[..n]);
        Ok((n, from))
    }
}

impl Network for RawLink {
    type Socket = RawSocket;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<RawSocket>> + Send {
        std::future::ready(self.bind_now(addr))
    }
}

impl RawLink {
    fn bind_now(&self, addr: SocketAddr) -> io::Result<RawSocket> {
        let server_ip = self.0.config.server_ip;
        if !(addr.ip().is_unspecified() || addr.ip() == IpAddr::V4(server_ip)) {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("the raw link owns {server_ip} only, not {}", addr.ip()),
            ));
        }
        let mut sockets = self
            .0
            .sockets
            .lock()
            .map_err(|_| io::Error::other("socket table poisoned"))?;
        let port = if addr.port() != 0 {
            addr.port()
        } else {
            let span = u32::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
            (0..span)
                .map(|_| {
                    let i = self.0.next_port.fetch_add(1, Ordering::Relaxed);
                    EPHEMERAL.start() + (u32::from(i) % span) as u16
                })
                .find(|p| !sockets.contains_key(p))
                .ok_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free port"))?
        };
        if sockets.contains_key(&port) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("port {port} is in use on the raw link"),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        sockets.insert(port, tx);
        Ok(RawSocket {
            link: self.clone(),
            port,
            inbox: tokio::sync::Mutex::new(rx),
        })
    }
}
