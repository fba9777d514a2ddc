//! Runs one transfer machine over one socket: the loop from
//! [`crate::proto`]'s docs, with tokio's clock (which turmoil simulates).
//! No protocol decisions are made here.

use super::socket::{DatagramSocket, SEGMENTS_MAX_BYTES, SEGMENTS_MAX_COUNT};
use crate::proto::{Event, Transfer};
use crate::wire::ErrorCode;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::watch;

/// The clock every driver reads: tokio's, so a simulator (turmoil, or
/// tokio's paused time) controls it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Why [`drive`] should stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancel {
    Run,
    /// Abort the transfer with ERROR 0 (server shutting down, client gave up).
    Abort,
}

/// What an event or progress hook of [`drive_to_outcome`](super::drive_to_outcome)
/// wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// End the transfer from this side with this ERROR (a client profile
    /// that probes and aborts, as UEFI and the rpi4 bootloader do).
    Abort(ErrorCode, &'static str),
}

/// How far to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Until the machine is closed (a server transfer, or a dallying client).
    Closed,
    /// Until it reports [`Event::Finished`].
    Finished,
}

/// Datagrams a machine emits in one go, gathered so a window of DATA to one
/// peer leaves in one [`DatagramSocket::send_segments`] call: equal sizes,
/// the last possibly shorter, one destination, within the kernel's limits.
/// The machine writes each datagram straight into the buffer's free room.
struct Batch {
    buf: Vec<u8>,
    /// Bytes of gathered datagrams at the front of `buf`.
    used: usize,
    count: usize,
    dest: Option<SocketAddr>,
    segment: usize,
    /// A datagram that did not fit the batch, parked just after it.
    spill: Option<(SocketAddr, usize)>,
}

/// What to send: `len` bytes at the front of the buffer as datagrams of
/// `segment` bytes.
struct Outgoing<'a> {
    bytes: &'a [u8],
    segment: usize,
    dest: SocketAddr,
}

impl Batch {
    /// An empty batch; its buffer grows to what the transfer needs (a
    /// window of its blocks, within the kernel's limits) on first use, so
    /// a lock-step transfer of 512-byte blocks holds about 1 KiB, not the
    /// 130 KB a batch of the largest datagrams takes.
    fn new() -> Self {
        Batch {
            buf: Vec::new(),
            used: 0,
            count: 0,
            dest: None,
            segment: 0,
            spill: None,
        }
    }

    /// Where the machine writes its next datagram, of at most `max` bytes.
    fn room(&mut self, max: usize) -> &mut [u8] {
        let end = self.used + max;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        &mut self.buf[self.used..end]
    }

    /// Takes the datagram the machine just wrote into [`Batch::room`].
    /// Returns the gathered batch when this one cannot join it (then it is
    /// parked and starts the next batch once the caller has sent this one
    /// and called [`Batch::flushed`]).
    fn push(&mut self, dest: SocketAddr, len: usize) -> Option<Outgoing<'_>> {
        let joins = self.count == 0
            || (self.dest == Some(dest)
                && len <= self.segment
                && self.used.is_multiple_of(self.segment)
                && self.count < SEGMENTS_MAX_COUNT
                && self.used + len <= SEGMENTS_MAX_BYTES);
        if joins {
            if self.count == 0 {
                self.dest = Some(dest);
                self.segment = len.max(1);
            }
            self.used += len;
            self.count += 1;
            // A datagram too big to share a send goes out on its own, and
            // the room for the next one must stay inside the buffer.
            if self.used > SEGMENTS_MAX_BYTES {
                return self.take();
            }
            return None;
        }
        self.spill = Some((dest, len));
        self.take()
    }

    /// The gathered batch, if any.
    fn take(&mut self) -> Option<Outgoing<'_>> {
        let dest = self.dest.filter(|_| self.count > 0)?;
        Some(Outgoing {
            bytes: &self.buf[..self.used],
            segment: self.segment,
            dest,
        })
    }

    /// The batch went out: start over, with the parked datagram if any.
    fn flushed(&mut self) {
        let spilled_at = self.used;
        self.used = 0;
        self.count = 0;
        self.dest = None;
        if let Some((dest, len)) = self.spill.take() {
            self.buf.copy_within(spilled_at..spilled_at + len, 0);
            self.dest = Some(dest);
            self.segment = len.max(1);
            self.used = len;
            self.count = 1;
        }
    }
}

/// Sends a batch. Failures are retried by the machine's own timer, so they
/// are only logged.
async fn send<S: DatagramSocket>(socket: &S, out: Outgoing<'_>) {
    let result = if out.bytes.len() <= out.segment {
        socket.send_to(out.bytes, out.dest).await.map(drop)
    } else {
        socket.send_segments(out.bytes, out.segment, out.dest).await
    };
    if let Err(e) = result {
        tracing::debug!(dest = %out.dest, error = %e, "send failed");
    }
}

/// Drives `machine` on `socket` until `until`, handing every event to
/// `on_event`. Sends failures are retried by the machine's own timer, so
/// they are only logged.
///
/// `lifetime`, if given, is when the transfer is aborted with ERROR 0
/// however it is going (the server's cap on how long one transfer may hold
/// a slot).
///
/// Every timer it arms is published on the socket
/// ([`DatagramSocket::next_wake`]): the earlier of the machine's deadline
/// and the lifetime, whenever that changes, and `None` when it returns.
///
/// Returns the receive error that ended it early, if one did: the peer's
/// port is unreachable (an ICMP error, on sockets that report them, see
/// [`super::Network::bind_client`]). The machine is left as it was: there
/// is nobody to send an ERROR to.
pub(crate) async fn drive<T: Transfer, S: DatagramSocket>(
    machine: &mut T,
    socket: &S,
    cancel: &mut watch::Receiver<Cancel>,
    until: Until,
    lifetime: Option<Instant>,
    on_event: impl FnMut(Event) -> Control,
    on_progress: impl FnMut(u64) -> Control,
) -> Option<std::io::Error> {
    let ended = drive_loop(
        machine,
        socket,
        cancel,
        until,
        lifetime,
        on_event,
        on_progress,
    )
    .await;
    socket.next_wake(None);
    ended
}

/// [`drive`] for a transfer that is a task of its own (a server's): if
/// `may_park` and the socket is a host socket, the runtime has worker threads and few
/// transfers hold a thread already ([`ParkTurn`]), it waits on the socket
/// from this thread ([`tokio::task::block_in_place`], [`drive_parked`])
/// instead of through the runtime's poller. Same machine, same rules: only
/// the waiting differs.
#[allow(clippy::too_many_arguments)] // drive's, and whether it may park
pub(crate) async fn drive_own_task<T: Transfer, S: DatagramSocket>(
    may_park: bool,
    machine: &mut T,
    socket: &S,
    cancel: &mut watch::Receiver<Cancel>,
    until: Until,
    lifetime: Option<Instant>,
    on_event: impl FnMut(Event) -> Control,
    on_progress: impl FnMut(u64) -> Control,
) -> Option<std::io::Error> {
    #[cfg(target_os = "linux")]
    if let Some(parked) = socket.parked().filter(|_| may_park) {
        if let Some(_turn) = ParkTurn::take() {
            return tokio::task::block_in_place(|| {
                drive_parked(
                    machine,
                    &parked,
                    cancel,
                    until,
                    lifetime,
                    on_event,
                    on_progress,
                )
            });
        }
    }
    drive(
        machine,
        socket,
        cancel,
        until,
        lifetime,
        on_event,
        on_progress,
    )
    .await
}

/// A turn at holding a thread for one transfer's waits. In lock-step a
/// block costs a wait, a receive and a send; through the async runtime
/// it also costs its poller's wake-up, a failed receive and the task's
/// scheduling. At most half the cores' worth of transfers (at least one)
/// hold a thread at once: each takes one from the runtime's blocking pool
/// for as long as it lasts, and a busy server is better off letting its
/// poller batch the wake-ups of many.
#[cfg(target_os = "linux")]
struct ParkTurn;

#[cfg(target_os = "linux")]
static PARKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(target_os = "linux")]
impl ParkTurn {
    fn take() -> Option<ParkTurn> {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        use tokio::runtime::{Handle, RuntimeFlavor};
        // block_in_place needs worker threads to hand the others' tasks to.
        let threaded =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        if !threaded {
            return None;
        }
        // Asked once: on Linux it reads the cgroup's CPU quota from files.
        static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let limit = *LIMIT.get_or_init(|| {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        });
        PARKED
            .fetch_update(AcqRel, Acquire, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| ParkTurn)
    }
}

#[cfg(target_os = "linux")]
impl Drop for ParkTurn {
    fn drop(&mut self) {
        PARKED.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// [`drive_loop`] on a thread that waits on the socket itself: the same
/// steps, with `ppoll` in place of the runtime's select. It looks at
/// `cancel` at least every [`PARKED_LOOK`].
#[cfg(target_os = "linux")]
fn drive_parked<T: Transfer>(
    machine: &mut T,
    socket: &super::socket::Parked<'_>,
    cancel: &mut watch::Receiver<Cancel>,
    until: Until,
    lifetime_at: Option<Instant>,
    mut on_event: impl FnMut(Event) -> Control,
    mut on_progress: impl FnMut(u64) -> Control,
) -> Option<std::io::Error> {
    let mut batch = Batch::new();
    let mut rx = Vec::new();
    let mut lifetime_live = lifetime_at.is_some();
    let mut finished = false;
    let mut cancel_live = true;
    let mut aborting = false;
    let mut recv_errors = 0u32;
    loop {
        let mut hook_aborted = deliver_events(machine, &mut on_event, &mut finished);
        let t = now();
        let max = machine.max_datagram();
        while let Some(out) = machine.poll_transmit(t, batch.room(max)) {
            if let Some(full) = batch.push(out.dest, out.len) {
                send_parked(socket, full);
                batch.flushed();
            }
        }
        if let Some(rest) = batch.take() {
            send_parked(socket, rest);
            batch.flushed();
        }
        hook_aborted |= deliver_events(machine, &mut on_event, &mut finished);
        if hook_aborted {
            continue;
        }
        if aborting || machine.is_closed() || (finished && until == Until::Finished) {
            return None;
        }
        if cancel_live {
            match cancel.has_changed() {
                Ok(true) => {
                    if *cancel.borrow_and_update() == Cancel::Abort {
                        machine.abort(ErrorCode::UNDEFINED, "server shutting down");
                        aborting = true;
                        continue;
                    }
                }
                Ok(false) => {}
                // The server is gone without a stop (its handle dropped):
                // its other transfers' tasks are dropped with it, and this
                // one, which cannot be, tells its client.
                Err(_) => {
                    cancel_live = false;
                    machine.abort(ErrorCode::UNDEFINED, "server shutting down");
                    aborting = true;
                    continue;
                }
            }
        }
        let t = now();
        if lifetime_live && lifetime_at.is_some_and(|l| l <= t) {
            lifetime_live = false;
            machine.abort(ErrorCode::UNDEFINED, "transfer took too long");
            aborting = true;
            continue;
        }
        let deadline = machine.poll_timeout();
        let mut wake = t + PARKED_LOOK;
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        if let Some(l) = lifetime_at.filter(|_| lifetime_live) {
            wake = wake.min(l);
        }
        rx.resize(receive_room(machine.max_datagram(), socket.coalesces()), 0);
        match socket.recv_until(&mut rx, wake) {
            Ok(Some((len, from, segment))) => {
                recv_errors = 0;
                take_received(machine, &rx[..len], segment, from, &mut on_progress);
            }
            Ok(None) => {
                let t = now();
                if deadline.is_some_and(|d| d <= t) {
                    machine.handle_timeout(t);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && !finished => {
                return Some(e);
            }
            Err(e) => {
                recv_errors += 1;
                tracing::debug!(error = %e, "receive failed");
                if recv_errors > 100 {
                    machine.abort(ErrorCode::UNDEFINED, "socket failed");
                    aborting = true;
                }
            }
        }
    }
}

/// The longest a parked driver waits without looking at its `cancel`.
#[cfg(target_os = "linux")]
const PARKED_LOOK: std::time::Duration = std::time::Duration::from_millis(50);

/// [`send`] from a parked driver.
#[cfg(target_os = "linux")]
fn send_parked(socket: &super::socket::Parked<'_>, out: Outgoing<'_>) {
    if let Err(e) = socket.send_segments(out.bytes, out.segment, out.dest) {
        tracing::debug!(dest = %out.dest, error = %e, "send failed");
    }
}

async fn drive_loop<T: Transfer, S: DatagramSocket>(
    machine: &mut T,
    socket: &S,
    cancel: &mut watch::Receiver<Cancel>,
    until: Until,
    lifetime_at: Option<Instant>,
    mut on_event: impl FnMut(Event) -> Control,
    mut on_progress: impl FnMut(u64) -> Control,
) -> Option<std::io::Error> {
    let mut batch = Batch::new();
    // Sized from the machine as it goes (see `receive_room`).
    let mut rx = Vec::new();
    let mut lifetime_live = lifetime_at.is_some();
    let lifetime = tokio::time::sleep_until(
        lifetime_at.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
    );
    tokio::pin!(lifetime);
    let mut finished = false;
    let mut cancel_live = true;
    let mut aborting = false;
    let mut recv_errors = 0u32;
    // One timer for the whole transfer, moved only when the machine's
    // deadline moves: registering a fresh one per datagram is measurable
    // in lock-step, where every microsecond per block is lost throughput.
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    let mut armed: Option<tokio::time::Instant> = None;
    // What the socket was last told about this loop's timers.
    let mut published: Option<Option<Instant>> = None;
    loop {
        // Events before transmits: a hook that aborts on an event (UEFI's
        // tsize probe answers the OACK with ERROR 8) must do so before the
        // machine's own answer (ACK 0) goes out.
        let mut hook_aborted = deliver_events(machine, &mut on_event, &mut finished);
        let t = now();
        let max = machine.max_datagram();
        while let Some(out) = machine.poll_transmit(t, batch.room(max)) {
            if let Some(full) = batch.push(out.dest, out.len) {
                send(socket, full).await;
                batch.flushed();
            }
        }
        if let Some(rest) = batch.take() {
            send(socket, rest).await;
            batch.flushed();
        }
        // Sending can end a transfer too (a read error becomes an ERROR).
        hook_aborted |= deliver_events(machine, &mut on_event, &mut finished);
        if hook_aborted {
            continue; // collect the outcome of the abort first
        }
        if aborting || machine.is_closed() || (finished && until == Until::Finished) {
            return None;
        }
        let deadline = machine.poll_timeout().map(tokio::time::Instant::from_std);
        if let Some(d) = deadline.filter(|&d| armed != Some(d)) {
            sleep.as_mut().reset(d);
            armed = Some(d);
        }
        let wake = match (deadline.map(|d| d.into_std()), lifetime_at) {
            (Some(d), Some(l)) if lifetime_live => Some(d.min(l)),
            (None, Some(l)) if lifetime_live => Some(l),
            (d, _) => d,
        };
        if published != Some(wake) {
            socket.next_wake(wake);
            published = Some(wake);
        }
        rx.resize(receive_room(machine.max_datagram(), socket.coalesces()), 0);
        tokio::select! {
            biased;
            received = socket.recv_segments(&mut rx) => match received {
                Ok((len, from, segment)) => {
                    recv_errors = 0;
                    take_received(machine, &rx[..len], segment, from, &mut on_progress);
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && !finished => {
                    return Some(e);
                }
                Err(e) => {
                    // A broken socket must not spin: give up after a run of errors.
                    recv_errors += 1;
                    tracing::debug!(error = %e, "receive failed");
                    if recv_errors > 100 {
                        machine.abort(ErrorCode::UNDEFINED, "socket failed");
                        aborting = true;
                    }
                }
            },
            _ = &mut sleep, if deadline.is_some() => {
                armed = None;
                machine.handle_timeout(now());
            }
            _ = &mut lifetime, if lifetime_live => {
                lifetime_live = false;
                machine.abort(ErrorCode::UNDEFINED, "transfer took too long");
                aborting = true;
            }
            changed = cancel.changed(), if cancel_live => {
                cancel_live = changed.is_ok();
                if *cancel.borrow() == Cancel::Abort {
                    machine.abort(ErrorCode::UNDEFINED, "server shutting down");
                    aborting = true;
                }
            }
        }
    }
}

/// Hands the machine's events to `on_event` (noting in `finished` when it
/// ended); true when the hook aborted the transfer.
fn deliver_events<T: Transfer>(
    machine: &mut T,
    on_event: &mut impl FnMut(Event) -> Control,
    finished: &mut bool,
) -> bool {
    let mut aborted = false;
    while let Some(event) = machine.poll_event() {
        *finished |= matches!(event, Event::Finished(_));
        if let Control::Abort(code, message) = on_event(event) {
            machine.abort(code, message);
            aborted = true;
        }
    }
    aborted
}

/// What one receive brought (`segment`-sized datagrams from `from`), to
/// the machine, then the progress hook.
fn take_received<T: Transfer>(
    machine: &mut T,
    received: &[u8],
    segment: usize,
    from: SocketAddr,
    on_progress: &mut impl FnMut(u64) -> Control,
) {
    let t = now();
    for datagram in received.chunks(segment.max(1)) {
        machine.handle_datagram(t, from, datagram);
    }
    if let Control::Abort(code, message) = on_progress(machine.bytes_transferred()) {
        machine.abort(code, message);
    }
}

/// The receive buffer for a machine whose datagrams are at most
/// `max_datagram` bytes: one byte more, so an oversized datagram shows as
/// one; or 64 KiB where the socket coalesces a window's datagrams into one
/// read (receive offload).
fn receive_room(max_datagram: usize, coalesces: bool) -> usize {
    let one = max_datagram + 1;
    if coalesces {
        one.max(1 << 16)
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MAX_DATAGRAM;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A socket nobody answers on, which keeps what it is told of wakes.
    struct Unanswered(Arc<Mutex<Vec<Option<Instant>>>>);

    impl DatagramSocket for Unanswered {
        fn local_addr(&self) -> std::io::Result<SocketAddr> {
            Ok(SocketAddr::from(([127, 0, 0, 1], 4000)))
        }

        async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> std::io::Result<usize> {
            Ok(buf.len())
        }

        async fn recv_from(&self, _buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
            std::future::pending().await
        }

        fn next_wake(&self, at: Option<Instant>) {
            self.0.lock().unwrap().push(at);
        }
    }

    /// Drives a download from a silent server until it gives up, and
    /// returns when it started and every wake the driver published.
    async fn silent_download(lifetime: Option<Duration>) -> (Instant, Vec<Option<Instant>>) {
        let config = crate::proto::ClientConfig {
            timeout: Duration::from_millis(20),
            min_rto: Duration::from_millis(20),
            retries: 2,
            ..crate::proto::ClientConfig::default()
        };
        let server = SocketAddr::from(([127, 0, 0, 1], 69));
        let start = now();
        let sink = crate::data::SharedSink::new();
        let mut machine = crate::proto::ClientGet::new(start, server, "f", sink, &config).unwrap();
        let wakes = Arc::new(Mutex::new(Vec::new()));
        let socket = Unanswered(wakes.clone());
        let (_keep, mut cancel) = watch::channel(Cancel::Run);
        drive(
            &mut machine,
            &socket,
            &mut cancel,
            Until::Finished,
            lifetime.map(|l| start + l),
            |_| Control::Continue,
            |_| Control::Continue,
        )
        .await;
        let published = wakes.lock().unwrap().clone();
        (start, published)
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_publishes_each_deadline_it_arms_then_none() {
        let (start, published) = silent_download(None).await;
        // The RRQ's timer, one per resend, then nothing once it gave up.
        let (last, armed) = published.split_last().unwrap();
        assert_eq!(*last, None, "{published:?}");
        assert!(armed.len() >= 3, "{published:?}");
        let armed: Vec<Instant> = armed.iter().map(|w| w.expect("a deadline")).collect();
        // Armed when the RRQ went out, at once (the clock is paused).
        assert_eq!(armed[0] - start, Duration::from_millis(20), "{published:?}");
        assert!(armed.windows(2).all(|w| w[0] < w[1]), "{published:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lifetime_before_the_deadline_is_the_wake() {
        let lifetime = Duration::from_millis(5);
        let (start, published) = silent_download(Some(lifetime)).await;
        assert_eq!(published.first(), Some(&Some(start + lifetime)));
        assert_eq!(published.last(), Some(&None));
    }

    /// Feeds datagrams (destination port, length) through a batch, the way
    /// `drive` does, and returns what goes out: (port, total bytes, segment).
    fn gather(datagrams: &[(u16, usize)]) -> Vec<(u16, usize, usize)> {
        let mut batch = Batch::new();
        let mut out = Vec::new();
        let mut record = |o: Outgoing<'_>| out.push((o.dest.port(), o.bytes.len(), o.segment));
        for (i, &(port, len)) in datagrams.iter().enumerate() {
            let room = batch.room(MAX_DATAGRAM);
            room[..len].fill(i as u8);
            let dest = SocketAddr::from(([10, 0, 0, 1], port));
            if let Some(full) = batch.push(dest, len) {
                record(full);
                batch.flushed();
            }
        }
        if let Some(rest) = batch.take() {
            record(rest);
            batch.flushed();
        }
        out
    }

    #[test]
    fn a_window_goes_out_as_one_batch() {
        // Eight full blocks and a short last one, to one peer.
        let mut window = vec![(7, 1472); 8];
        window.push((7, 100));
        assert_eq!(gather(&window), vec![(7, 8 * 1472 + 100, 1472)]);
    }

    #[test]
    fn batches_split_where_datagrams_cannot_share_a_send() {
        // Another destination, a larger datagram, and anything after a
        // short one each start a new batch.
        assert_eq!(
            gather(&[(7, 516), (8, 516), (8, 100), (8, 516), (8, 600)]),
            vec![(7, 516, 516), (8, 616, 516), (8, 516, 516), (8, 600, 600)]
        );
        // At most SEGMENTS_MAX_COUNT datagrams and SEGMENTS_MAX_BYTES bytes.
        let many = vec![(7, 516); 70];
        assert_eq!(gather(&many), vec![(7, 64 * 516, 516), (7, 6 * 516, 516)]);
        // Blocks of 65464 bytes never share a send.
        assert_eq!(
            gather(&[(7, 65468), (7, 65468), (7, 4)]),
            vec![(7, 65468, 65468), (7, 65468, 65468), (7, 4, 4)]
        );
        let big = vec![(7, 8196); 9];
        assert_eq!(gather(&big), vec![(7, 7 * 8196, 8196), (7, 2 * 8196, 8196)]);
    }

    #[test]
    fn a_spilled_datagram_keeps_its_bytes() {
        let mut batch = Batch::new();
        let a = SocketAddr::from(([10, 0, 0, 1], 7));
        let b = SocketAddr::from(([10, 0, 0, 1], 8));
        batch.room(MAX_DATAGRAM)[..3].copy_from_slice(b"one");
        assert!(batch.push(a, 3).is_none());
        batch.room(MAX_DATAGRAM)[..5].copy_from_slice(b"other");
        let first = batch.push(b, 5).expect("a different peer flushes");
        assert_eq!(first.bytes, b"one");
        batch.flushed();
        let second = batch.take().expect("the parked datagram");
        assert_eq!((second.bytes, second.dest), (&b"other"[..], b));
    }
}
