//! Builds a turmoil world from a scenario and a seed and runs it: one host
//! for the server, one per client, all running the real tftplab server and
//! client over turmoil's UDP, with tftplab's own fault layer on every socket.

use crate::lab::check::{judge_timed, Moment, RunRecord, Verdict};
use crate::lab::content::{stage, Staging};
use crate::lab::faults::{Direction, Injector, Outage, Script};
use crate::lab::net::{FaultyNet, LabClock, SendLater};
use crate::lab::profile::{run_client, ActionResult, Got};
use crate::lab::scenario::{resolve, ActionKind, FileContent, Scenario, TimedEventKind};
use crate::lab::setup::{mix, server_setup};
use crate::lab::trace::{
    render_mermaid, render_mermaid_failure, render_text, Trace, TraceEvent, TraceFate,
};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tftplab::proto::TransferError;
use tftplab::runtime::{now, serve, DatagramSocket, Network, ServerEvent, ServerHandle};
use tftplab::store::Store;

/// turmoil's UDP as a tftplab [`Network`]. Inside [`run_staged`] every socket it
/// binds publishes its wake-ups in the run's [`Wakes`].
#[derive(Clone, Default)]
pub struct TurmoilNet {
    wakes: Option<Arc<Wakes>>,
}

pub struct TurmoilSocket {
    inner: turmoil::net::UdpSocket,
    /// This socket's entry in the run's registry, forgotten on drop.
    wake: Option<WakeSlot>,
}

impl DatagramSocket for TurmoilSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        if let Some(slot) = &self.wake {
            slot.wakes.sending(self.inner.local_addr().ok());
        }
        self.inner.send_to(buf, target)
    }

    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        self.inner.recv_from(buf)
    }

    fn next_wake(&self, at: Option<Instant>) {
        if let Some(slot) = &self.wake {
            slot.set_instant(at);
        }
    }
}

/// turmoil holds a delayed copy on its link: it arrives on the first tick
/// at or after its time, not a timer's millisecond and then a tick later.
impl SendLater for TurmoilSocket {
    fn send_later(
        &self,
        buf: &[u8],
        target: SocketAddr,
        delay: Duration,
    ) -> Option<io::Result<usize>> {
        if let Some(slot) = &self.wake {
            slot.wakes.sending(self.inner.local_addr().ok());
        }
        Some(self.inner.send_to_after(buf, target, delay))
    }
}

impl Network for TurmoilNet {
    type Socket = TurmoilSocket;

    async fn bind(&self, addr: SocketAddr) -> io::Result<TurmoilSocket> {
        let inner = turmoil::net::UdpSocket::bind(addr).await?;
        Ok(TurmoilSocket {
            inner,
            wake: self.wakes.as_ref().map(|w| w.slot()),
        })
    }

    /// Inline: a simulated host's file system is part of its deterministic
    /// world and takes no simulated time, while a thread would make the
    /// run's order depend on the OS scheduler.
    async fn run_blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> io::Result<R> {
        Ok(work())
    }
}

/// Every timer that can wake a simulated host, as its owner publishes it,
/// so `drive` can skip the time in between: most of a lossy scenario's
/// simulated time is hosts waiting on retransmission timers, and turmoil
/// would otherwise step through it one tick at a time.
///
/// Nothing happens on a host unless a datagram arrives or a timer fires.
/// turmoil says when the next datagram on a link falls due (latency and
/// held-back copies wait there, [`SendLater`]); the next timer is the
/// earliest published here: the runtime's driver publishes each transfer
/// machine's deadline and lifetime on its socket
/// ([`DatagramSocket::next_wake`]), and this module the client profiles'
/// sleeps and the time client hosts stay up. An entry belongs to one
/// socket (or one client's sleeps) and is forgotten when that is dropped.
/// The run jumps to whichever comes first (see `idle_jump`).
///
/// That is the truth, not a model, so nothing is rerun: a host sending
/// inside a jump means some timer was not published, a simulator bug, and
/// becomes the run's `sim_error`. Datagrams go out at the times stepping
/// tick by tick would send them. What a jump can change is the order in
/// which one host handles two things due in the same millisecond (tokio's
/// timer wheel fires simultaneous timers in an order that depends on how
/// its clock advanced), and with it the order of their datagrams in the
/// trace and of the fault draws. Both orders are valid; each mode is
/// deterministic on its own.
#[derive(Default)]
pub struct Wakes {
    state: Mutex<WakesState>,
}

#[derive(Default)]
struct WakesState {
    /// Published wakes by entry, in simulated time since the run started.
    at: BTreeMap<u64, Duration>,
    next_entry: u64,
    /// The jump in progress: from, to.
    jumping: Option<(Duration, Duration)>,
    /// What went wrong inside a jump, if anything did.
    broken: Option<String>,
    /// Simulated time jumped over.
    skipped: Duration,
}

/// One entry in [`Wakes`]: a socket's, or a client's own sleeps.
pub struct WakeSlot {
    wakes: Arc<Wakes>,
    entry: u64,
}

impl WakeSlot {
    /// Publishes when this entry's owner next wakes, in simulated time.
    fn set(&self, at: Option<Duration>) {
        self.wakes.with(|s| match at {
            Some(at) => s.at.insert(self.entry, at),
            None => s.at.remove(&self.entry),
        });
    }

    /// The same for a moment on the host's clock (tokio's, which turmoil
    /// runs): the host's simulated time now plus how far ahead it is.
    fn set_instant(&self, at: Option<Instant>) {
        self.set(at.map(|at| {
            let (now, elapsed) = (now(), sim_now());
            match at.checked_duration_since(now) {
                Some(ahead) => elapsed + ahead,
                None => elapsed.saturating_sub(now - at),
            }
        }));
    }
}

impl Drop for WakeSlot {
    fn drop(&mut self) {
        self.set(None);
    }
}

impl Wakes {
    fn with<T>(&self, f: impl FnOnce(&mut WakesState) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// A new entry, with no wake yet.
    fn slot(self: &Arc<Self>) -> WakeSlot {
        let entry = self
            .with(|s| {
                s.next_entry += 1;
                s.next_entry
            })
            .unwrap_or_default();
        WakeSlot {
            wakes: self.clone(),
            entry,
        }
    }

    /// A socket sends: inside a jump, that is a wake nobody published.
    fn sending(&self, from: Option<SocketAddr>) {
        self.with(|s| {
            if let (Some((start, end)), None) = (s.jumping, &s.broken) {
                let from = from.map_or_else(|| "a socket".into(), |a| a.to_string());
                s.broken = Some(format!(
                    "simulator bug: {from} sent at {:.3}s, inside a jump from {:.3}s to \
                     {:.3}s; some timer was not published (world.rs, Wakes)",
                    sim_now().as_secs_f64(),
                    start.as_secs_f64(),
                    end.as_secs_f64()
                ));
            }
        });
    }

    /// The earliest published wake after `after`.
    fn earliest_after(&self, after: Duration) -> Option<Duration> {
        self.with(|s| s.at.values().copied().filter(|&at| at > after).min())
            .flatten()
    }

    fn jumping(&self, jump: Option<(Duration, Duration)>) {
        self.with(|s| {
            if let Some((from, to)) = jump {
                s.skipped += to - from;
            }
            s.jumping = jump;
        });
    }

    fn broken(&self) -> Option<String> {
        self.with(|s| s.broken.clone()).flatten()
    }

    fn skipped(&self) -> Duration {
        self.with(|s| s.skipped).unwrap_or_default()
    }
}

/// Simulated time on the host running now.
fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Simulated time, host names and partitions for traces.
struct SimClock {
    names: Mutex<BTreeMap<IpAddr, String>>,
    /// Clients cut off from the server by a partition event.
    cut: Mutex<BTreeSet<String>>,
    /// The run's tick: a datagram sent within a step is on the link from
    /// the step's end.
    tick: Duration,
    /// Copies on their way, by the client end of their link: when each is
    /// due, and what to call if a partition drops it first.
    carried: Mutex<Vec<Carried>>,
}

type Carried = (String, Duration, Box<dyn FnOnce() + Send>);

/// The client's end of a link: every link joins the server and a client.
fn client_end<'a>(from: &'a str, to: &'a str) -> &'a str {
    if from == "server" {
        to
    } else {
        from
    }
}

impl SimClock {
    /// A partition cut `client` off: turmoil drops what is on that link,
    /// so every copy not yet due there is lost.
    fn cut_off(&self, client: &str, now: Duration) {
        let Ok(mut carried) = self.carried.lock() else {
            return;
        };
        // What has arrived is no longer on a link; the rest to `client` is lost.
        let (lost, kept): (Vec<Carried>, Vec<Carried>) = std::mem::take(&mut *carried)
            .into_iter()
            .filter(|(_, due, _)| *due > now)
            .partition(|(c, _, _)| c == client);
        *carried = kept;
        drop(carried);
        for (_, _, f) in lost {
            f();
        }
    }
}

impl LabClock for SimClock {
    fn elapsed(&self) -> Duration {
        turmoil::sim_elapsed().unwrap_or_default()
    }

    fn name(&self, ip: IpAddr) -> String {
        if let Some(n) = self.names.lock().ok().and_then(|m| m.get(&ip).cloned()) {
            return n;
        }
        let name = turmoil::reverse_lookup(ip).unwrap_or_else(|| ip.to_string());
        if let Ok(mut m) = self.names.lock() {
            m.insert(ip, name.clone());
        }
        name
    }

    fn link_cut(&self, from: &str, to: &str) -> bool {
        let client = client_end(from, to);
        self.cut.lock().is_ok_and(|c| c.contains(client))
    }

    fn carrying(&self, from: &str, to: &str, delay: Duration, lost: Box<dyn FnOnce() + Send>) {
        let client = client_end(from, to);
        let now = self.elapsed();
        if let Ok(mut carried) = self.carried.lock() {
            // What has arrived is no longer on a link.
            carried.retain(|(_, due, _)| *due > now);
            carried.push((client.to_string(), now + self.tick + delay, lost));
        }
    }
}

/// How a simulation is run.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// turmoil's step: simulated time advanced per step.
    pub tick: Duration,
    /// Jump over time in which nothing is in flight and no host can wake
    /// (see [`Wakes`]). Datagrams go out at the same times either way;
    /// same-millisecond events on one host may come in another order.
    pub skip_idle: bool,
    /// Keep every datagram's bytes ([`SimRun::datagrams`]), for a pcap.
    /// Off by default: a sweep keeps each run's trace until it ends, and
    /// the bytes would be many times that for runs nobody looks at.
    pub keep_datagrams: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tick: Duration::from_millis(1),
            skip_idle: true,
            keep_datagrams: false,
        }
    }
}

/// The outcome of one scenario run with one seed.
pub struct SimRun {
    pub seed: u64,
    pub verdict: Verdict,
    pub record: RunRecord,
    pub trace: Vec<TraceEvent>,
    /// Each trace event's datagram, in the trace's order, if
    /// [`SimOptions::keep_datagrams`] asked for them.
    pub datagrams: Option<Vec<Vec<u8>>>,
    /// The simulation itself failed (a host errored, a datagram storm, or
    /// a host acted inside a jump: a simulator bug); the message says how.
    pub sim_error: Option<String>,
    /// Simulated time jumped over instead of stepped through.
    pub skipped: Duration,
    /// What [`SimRun::lighten`] kept of the trace it dropped.
    pub light: Option<Light>,
}

/// What a run keeps of its trace once [`SimRun::lighten`] dropped it: the
/// figures a sweep's summary and report need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Light {
    pub retransmissions: u64,
    /// FNV-1a of the rendered trace, if it was asked for.
    pub trace_fnv64: Option<u64>,
    pub failures: Vec<Placed>,
}

impl SimRun {
    /// Drops the trace, the datagrams and every received or uploaded
    /// file's bytes, keeping the verdict, the record's figures and a
    /// [`Light`] summary (with the trace's digest if `digest`). A sweep of
    /// 100 000 runs holds each run this way; rpi4-netboot's trace and
    /// downloads alone are about 13 MB a run.
    pub fn lighten(&mut self, digest: bool) {
        if self.light.is_some() {
            return;
        }
        self.light = Some(Light {
            retransmissions: self.retransmissions(),
            trace_fnv64: digest.then(|| crate::shard::fnv64(render_text(&self.trace).as_bytes())),
            failures: self.failures(),
        });
        self.trace = Vec::new();
        self.datagrams = None;
        for r in &mut self.record.results {
            if let Got::Done { bytes } = &mut r.got {
                *bytes = Vec::new();
            }
        }
        for bytes in self.record.uploaded.values_mut() {
            *bytes = None;
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict.passed() && self.sim_error.is_none()
    }

    /// Every failure of the run, the simulation's own first, each with
    /// when it happened and the trace event nearest that, where known. A
    /// simulation error happened when the run stopped.
    pub fn failures(&self) -> Vec<Placed> {
        if let Some(light) = &self.light {
            return light.failures.clone();
        }
        let stopped = self.sim_error.iter().map(|e| {
            (
                format!("simulation error: {e}"),
                Some(Moment::At(self.record.elapsed)),
            )
        });
        let judged = self
            .verdict
            .failures_at()
            .map(|(f, at)| (f.to_string(), at));
        stopped
            .chain(judged)
            .map(|(text, moment)| Placed {
                text,
                at: moment.and_then(|m| m.time(&self.trace)),
                event: moment.and_then(|m| m.nearest(&self.trace)),
            })
            .collect()
    }

    /// The run as a Mermaid sequence diagram of at most `max_events`
    /// datagrams: a failed run's around its earliest failure that the
    /// trace can place, any other's first and last halves.
    pub fn mermaid(&self, max_events: usize) -> String {
        let failures = self.failures();
        let earliest = failures
            .iter()
            .filter_map(|f| Some((f.at?, f.event?, f)))
            .min_by_key(|(at, _, _)| *at);
        match earliest {
            Some((at, event, f)) => {
                render_mermaid_failure(&self.trace, max_events, event, at, &f.text)
            }
            None => render_mermaid(&self.trace, max_events),
        }
    }

    /// Datagrams sent again within their transfer: the same packet on the
    /// same flow (sender and receiver host and port) as an earlier one:
    /// resent DATA, re-ACKs, repeated requests. Another transfer's
    /// identical packet (every download has an ACK #1) is not one.
    pub fn retransmissions(&self) -> u64 {
        if let Some(light) = &self.light {
            return light.retransmissions;
        }
        let mut seen = BTreeSet::new();
        let mut repeats = 0;
        for e in &self.trace {
            if !seen.insert((&e.from, &e.to, e.ports, &e.packet)) {
                repeats += 1;
            }
        }
        repeats
    }
}

/// One failure of a run, placed in its trace ([`SimRun::failures`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub text: String,
    /// When it happened, if the judge can tell.
    pub at: Option<Duration>,
    /// The index of the trace event nearest then (line `event + 1` of the
    /// text trace).
    pub event: Option<usize>,
}

/// Runs `scenario` with `seed` and judges it by its expectations (the crate's
/// [`crate::run`] adds the random plans' judge), with the scenario's files
/// linked from `staging`'s copies if given (a sweep's runs share them)
/// instead of written for this run alone.
pub fn run_staged(
    scenario: &Scenario,
    seed: u64,
    opts: SimOptions,
    staging: Option<&Staging>,
) -> SimRun {
    let root = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return failed_setup(seed, format!("temp dir: {e}")),
    };
    if let Err(e) = stage(scenario, root.path(), staging) {
        return failed_setup(seed, e);
    }
    let trace = if opts.keep_datagrams {
        Trace::keeping_datagrams()
    } else {
        Trace::new()
    };
    let wakes = Arc::new(Wakes::default());
    let sim_net = TurmoilNet {
        wakes: Some(wakes.clone()),
    };
    let clock: Arc<SimClock> = Arc::new(SimClock {
        names: Mutex::new(BTreeMap::new()),
        cut: Mutex::new(BTreeSet::new()),
        tick: opts.tick,
        carried: Mutex::new(Vec::new()),
    });
    let settle = settle_time(scenario);
    let limit = scenario.expect.within + settle;
    let mut sim = turmoil::Builder::new()
        .simulation_duration(limit + Duration::from_secs(1))
        .tick_duration(opts.tick)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::ZERO)
        .udp_capacity(1 << 16)
        .rng_seed(seed)
        .build();

    // A script rule's outage cuts every link, both ways.
    let outage = Outage::default();
    let handle_slot: Arc<Mutex<Option<ServerHandle>>> = Arc::new(Mutex::new(None));
    let incarnation = Arc::new(AtomicU64::new(0));
    let server_timeouts = Arc::new(ServerTimeouts::default());
    {
        let (store_cfg, options) =
            server_setup(scenario, root.path(), SocketAddr::from(([0, 0, 0, 0], 69)));
        let plan = scenario.faults.server_to_client;
        let script = Script::new(&scenario.faults, Direction::ServerToClient).with_outage(&outage);
        let server_timeouts = server_timeouts.clone();
        let sim_net = sim_net.clone();
        let (trace, clock, slot, incarnation) = (
            trace.clone(),
            clock.clone(),
            handle_slot.clone(),
            incarnation.clone(),
        );
        sim.host("server", move || {
            let n = incarnation.fetch_add(1, Ordering::Relaxed);
            let injector = Injector::new(plan, mix(seed, &format!("server#{n}")));
            let net = FaultyNet::new(
                sim_net.clone(),
                "server",
                injector,
                script.clone(),
                trace.clone(),
                clock.clone() as Arc<dyn LabClock>,
            );
            let (store_cfg, options, slot) = (store_cfg.clone(), options.clone(), slot.clone());
            let timeouts = server_timeouts.clone();
            async move {
                let store = Arc::new(Store::new(store_cfg)?);
                let handle = serve(net, store, options).await?;
                let mut events = handle.subscribe();
                if let Ok(mut s) = slot.lock() {
                    *s = Some(handle);
                }
                let timeouts = timeouts.clone();
                tokio::spawn(async move {
                    while let Ok(event) = events.recv().await {
                        let ServerEvent::Finished { result: Err(e), .. } = event else {
                            continue;
                        };
                        let counter = match e {
                            TransferError::TimedOut { .. } => {
                                if let Ok(mut first) = timeouts.first_midway.lock() {
                                    first.get_or_insert(sim_now());
                                }
                                &timeouts.midway
                            }
                            TransferError::Unconfirmed { .. } => &timeouts.unconfirmed,
                            _ => continue,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }

    let results: Arc<Mutex<BTreeMap<String, Vec<ActionResult>>>> = Arc::default();
    for spec in &scenario.clients {
        let spec = spec.clone();
        let injector = Injector::new(scenario.faults.client_to_server, mix(seed, &spec.name));
        let net = FaultyNet::new(
            sim_net.clone(),
            &spec.name,
            injector,
            Script::new(&scenario.faults, Direction::ClientToServer).with_outage(&outage),
            trace.clone(),
            clock.clone() as Arc<dyn LabClock>,
        );
        let results = results.clone();
        let wakes = wakes.clone();
        sim.client(spec.name.clone(), async move {
            let server = SocketAddr::new(turmoil::lookup("server"), 69);
            // The client's own sleeps: one at a time, so one entry.
            let slot = wakes.slot();
            let sleeping = |d: Duration| slot.set(Some(sim_now() + d));
            let got = run_client(&net, server, &spec, &sim_now, &sleeping).await;
            if let Ok(mut r) = results.lock() {
                r.insert(spec.name.clone(), got);
            }
            // Stay on the network a while, as a real board does: the last
            // download is still dallying and delayed datagrams (the final
            // ACK among them) are still on their way.
            let stay = spec.retry_every * 2 + Duration::from_secs(1);
            sleeping(stay);
            tokio::time::sleep(stay).await;
            Ok(())
        });
    }

    let watched = Watched {
        results: &results,
        server: &handle_slot,
        trace: &trace,
        wakes: &wakes,
    };
    let sim_error = drive(&mut sim, scenario, &watched, &clock, opts);
    let elapsed = sim.elapsed();
    let events = trace.events();
    // Taken, not cloned: a download's bytes are the biggest thing a run holds.
    let results = results
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    let mut record = RunRecord {
        unfinished: scenario
            .clients
            .iter()
            .filter(|c| !results.contains_key(&c.name))
            .map(|c| c.name.clone())
            .collect(),
        results: results.into_values().flatten().collect(),
        server_active: server_active(&handle_slot),
        server_timeouts: server_timeouts.midway.load(Ordering::Relaxed),
        server_unconfirmed: server_timeouts.unconfirmed.load(Ordering::Relaxed),
        datagrams: events.len() as u64,
        dropped: events
            .iter()
            .filter(|e| matches!(e.fate, TraceFate::Dropped { .. }))
            .count() as u64,
        elapsed,
        uploaded: BTreeMap::new(),
    };
    record
        .results
        .sort_by(|a, b| (&a.client, a.index).cmp(&(&b.client, b.index)));
    for c in &scenario.clients {
        for a in &c.actions {
            if let ActionKind::Put { name, .. } = &a.kind {
                let path = root.path().join(name.trim_start_matches('/'));
                record
                    .uploaded
                    .insert(name.clone(), std::fs::read(path).ok());
            }
        }
    }
    // Dropping the handles inside the sim's runtime context is not needed:
    // they only hold channels.
    if let Ok(mut s) = handle_slot.lock() {
        s.take();
    }
    let first_timeout = server_timeouts.first_midway.lock().ok().and_then(|t| *t);
    let verdict = judge_timed(scenario, &record, first_timeout);
    SimRun {
        seed,
        verdict,
        record,
        datagrams: trace.take_datagrams(),
        trace: events,
        sim_error,
        skipped: wakes.skipped(),
        light: None,
    }
}

fn failed_setup(seed: u64, message: String) -> SimRun {
    SimRun {
        seed,
        verdict: Verdict::default(),
        record: RunRecord::default(),
        trace: Vec::new(),
        datagrams: None,
        sim_error: Some(message),
        skipped: Duration::ZERO,
        light: None,
    }
}

/// A run that sends more datagrams than this is a storm, stopped at once
/// rather than run to its time limit (a Sorcerer's Apprentice sender
/// sends millions in simulated seconds, and the trace holds them all):
/// twenty times a generous minimum (every file in lock-step blocks of at
/// most 512 bytes), plus 10 000.
fn storm_cap(scenario: &Scenario) -> u64 {
    let size = |content: &FileContent| match content {
        FileContent::Inline(b) => b.len() as u64,
        FileContent::Generated { size, .. } => *size,
        FileContent::Path(p) => {
            let base = scenario.path.parent().unwrap_or(Path::new("."));
            std::fs::metadata(base.join(p)).map_or(0, |m| m.len())
        }
        FileContent::Symlink(_) => 0,
    };
    let mut minimum = 0;
    for c in &scenario.clients {
        for a in &c.actions {
            let bytes = match &a.kind {
                ActionKind::Get { name, .. } => {
                    resolve(&scenario.files, name).map_or(0, |f| size(&f.content))
                }
                ActionKind::Put { content, .. } => size(content),
                ActionKind::Sleep(_) => continue,
            };
            let blksize = u64::from(c.options.blksize.unwrap_or(512).clamp(8, 512));
            minimum += 2 * (bytes / blksize + 1) + 8;
        }
    }
    minimum.saturating_mul(20).saturating_add(10_000)
}

/// How long the server may need after the last client finished: a
/// transfer that lost its peer retries `retries` times, and a receiver
/// dallies twice its timeout.
fn settle_time(scenario: &Scenario) -> Duration {
    // A receiving transfer's waits grow to 8 s (Timer::RECEIVER_SILENCE).
    let t = scenario.server.timeout.max(Duration::from_secs(8));
    t * (scenario.server.retries + 4)
}

fn server_active(slot: &Arc<Mutex<Option<ServerHandle>>>) -> u64 {
    slot.lock()
        .ok()
        .and_then(|s| s.as_ref().map(|h| h.stats().active))
        .unwrap_or(0)
}

/// What [`drive`] watches as it steps the world.
struct Watched<'a> {
    /// Each finished client's results.
    results: &'a Arc<Mutex<BTreeMap<String, Vec<ActionResult>>>>,
    /// The running server's handle.
    server: &'a Arc<Mutex<Option<ServerHandle>>>,
    trace: &'a Trace,
    wakes: &'a Wakes,
}

/// Steps the world, applying timed events, until every client is done and
/// the server is idle (or the time limit).
fn drive(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    watched: &Watched<'_>,
    clock: &SimClock,
    opts: SimOptions,
) -> Option<String> {
    let Watched {
        results,
        server: slot,
        trace,
        wakes,
    } = watched;
    let settle = settle_time(scenario);
    let limit = scenario.expect.within + settle;
    let storm = storm_cap(scenario);
    let mut events = scenario.events.iter().peekable();
    let mut clients_done_at: Option<Duration> = None;
    let all: Vec<String> = scenario.clients.iter().map(|c| c.name.clone()).collect();
    loop {
        while let Some(e) = events.next_if(|e| e.at <= sim.elapsed()) {
            if e.kind == TimedEventKind::Crash {
                // The crashed server's handle would report its dead transfers.
                if let Ok(mut s) = slot.lock() {
                    s.take();
                }
            }
            apply(sim, &e.kind, &all, clock);
        }
        let done = results
            .lock()
            .map(|r| r.len() == all.len())
            .unwrap_or(false);
        if done && clients_done_at.is_none() {
            clients_done_at = Some(sim.elapsed());
        }
        if let Some(t) = clients_done_at {
            // Done when the server has nothing running and nothing is on
            // its way that could start something (a late duplicate).
            let quiet = server_active(slot) == 0 && sim.next_delivery().is_none();
            if quiet || sim.elapsed() >= t + settle {
                return None;
            }
        }
        if sim.elapsed() >= limit {
            return None;
        }
        let sent = trace.len() as u64;
        if sent > storm {
            return Some(format!(
                "datagram storm: {sent} datagrams by {:.3}s, over 20 times what the \
                 scenario's transfers need; stopped (a sender resending on duplicate \
                 ACKs, or a retry loop, grows without bound)",
                sim.elapsed().as_secs_f64()
            ));
        }
        if opts.skip_idle {
            if let Some(jump) = idle_jump(sim, wakes, opts.tick, {
                let mut until = limit;
                if let Some(e) = events.peek() {
                    until = until.min(e.at);
                }
                if let Some(t) = clients_done_at {
                    until = until.min(t + settle);
                }
                until
            }) {
                let from = sim.elapsed();
                wakes.jumping(Some((from, from + jump)));
                let stepped = sim.step_by(jump);
                wakes.jumping(None);
                if let Some(bug) = wakes.broken() {
                    return Some(bug);
                }
                match stepped {
                    Ok(_) => continue,
                    Err(e) => return Some(e.to_string()),
                }
            }
        }
        match sim.step() {
            Ok(_) => {}
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// How far the run can jump from now: to the earliest published wake, the
/// earliest datagram due on a link, or `until`, in whole ticks so the run
/// stays on its tick grid; `None` if something is deliverable now,
/// something may have woken at the end of the last step, or the jump would
/// be under two ticks.
///
/// A step ticks the network before the hosts: a datagram due within a step
/// is handed over at the step's start. So a jump ends a whole tick before
/// the datagram is due, and the ordinary step after it delivers it when
/// stepping tick by tick would have.
fn idle_jump(
    sim: &turmoil::Sim<'_>,
    wakes: &Wakes,
    tick: Duration,
    until: Duration,
) -> Option<Duration> {
    let now = sim.elapsed();
    let tick_ns = tick.as_nanos().max(1);
    // Whole ticks from now until a datagram is due, less the one it is
    // delivered in.
    let deliver_in = match sim.next_delivery() {
        None => None,
        Some(due) if due.is_zero() => return None,
        Some(due) => Some(due.as_nanos().div_ceil(tick_ns) - 1),
    };
    // Hosts start in the first millisecond (tokio's timer resolution).
    if now < tick.max(Duration::from_millis(1)) {
        return None;
    }
    // A timer that fired as the last step ended wakes its task at the
    // start of the next one: step normally then. (tokio fires a timer on
    // the first whole millisecond at or after its deadline: with a tick of
    // under a millisecond, that may be a step later.)
    let fired = now.saturating_sub(tick.max(Duration::from_millis(1)));
    let next = wakes.earliest_after(fired).unwrap_or(until).min(until);
    if next <= now {
        return None;
    }
    let ticks = ((next - now).as_nanos() / tick_ns).min(deliver_in.unwrap_or(u128::MAX));
    (ticks >= 2).then(|| tick * ticks as u32)
}

fn apply(sim: &mut turmoil::Sim<'_>, kind: &TimedEventKind, all: &[String], clock: &SimClock) {
    let names = |list: &Vec<String>| {
        if list.is_empty() {
            all.to_vec()
        } else {
            list.clone()
        }
    };
    match kind {
        TimedEventKind::Partition(list) => {
            for c in names(list) {
                sim.partition("server", c.as_str());
                clock.cut_off(&c, sim.elapsed());
                if let Ok(mut cut) = clock.cut.lock() {
                    cut.insert(c);
                }
            }
        }
        TimedEventKind::Heal(list) => {
            for c in names(list) {
                sim.repair("server", c.as_str());
                if let Ok(mut cut) = clock.cut.lock() {
                    cut.remove(&c);
                }
            }
        }
        TimedEventKind::Crash => sim.crash("server"),
        TimedEventKind::Restart => sim.bounce("server"),
    }
}

/// The server's transfers that ran out of retries, by where they were.
#[derive(Default)]
struct ServerTimeouts {
    midway: AtomicU64,
    /// Every block sent; only the final ACK never came.
    unconfirmed: AtomicU64,
    /// When the first of `midway` timed out.
    first_midway: Mutex<Option<Duration>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One host that sleeps 500 ms and then sends, with its sleep published
    /// or not: the jump stops at the published wake; without it, the host
    /// sends inside the jump and that is reported, not ignored.
    fn jump_over_a_sleep(publish: bool) -> (Duration, Option<String>) {
        let wakes = Arc::new(Wakes::default());
        let net = TurmoilNet {
            wakes: Some(wakes.clone()),
        };
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(10))
            .tick_duration(Duration::from_millis(1))
            .build();
        let registry = wakes.clone();
        sim.client("a", async move {
            let socket = net.bind(SocketAddr::from(([0, 0, 0, 0], 1000))).await?;
            let sleep = Duration::from_millis(500);
            let slot = registry.slot();
            if publish {
                slot.set(Some(sim_now() + sleep));
            }
            tokio::time::sleep(sleep).await;
            let to = SocketAddr::new(turmoil::lookup("a"), 9);
            socket.send_to(b"x", to).await?;
            Ok(())
        });
        sim.step().unwrap();
        let tick = Duration::from_millis(1);
        let jump = idle_jump(&sim, &wakes, tick, Duration::from_secs(2)).expect("idle");
        let from = sim.elapsed();
        wakes.jumping(Some((from, from + jump)));
        let _ = sim.step_by(jump);
        wakes.jumping(None);
        (from + jump, wakes.broken())
    }

    #[test]
    fn a_jump_stops_at_the_earliest_published_wake() {
        let (landed, broken) = jump_over_a_sleep(true);
        assert_eq!(landed, Duration::from_millis(500));
        assert_eq!(broken, None);
    }

    #[test]
    fn a_host_sending_inside_a_jump_is_a_simulator_bug() {
        let (landed, broken) = jump_over_a_sleep(false);
        assert_eq!(landed, Duration::from_secs(2));
        let message = broken.expect("the send inside the jump is reported");
        assert!(message.contains("simulator bug"), "{message}");
        assert!(message.contains("sent at 0.500s"), "{message}");
    }

    /// A lightened run says what the whole one said: the same failures
    /// (placed in the trace it no longer holds), retransmissions and
    /// digest; and it holds neither the trace nor the downloaded bytes.
    #[test]
    fn a_lightened_run_keeps_its_failures_and_figures_and_drops_the_rest() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/uboot-kernel-window8.toml");
        let mut scenario = Scenario::load(&path).expect("loads");
        scenario.expect.max_packet_ratio = 1.0;
        let mut r = run_staged(&scenario, 1, SimOptions::default(), None);
        assert!(!r.passed());
        let (failures, resent) = (r.failures(), r.retransmissions());
        let digest = crate::shard::fnv64(render_text(&r.trace).as_bytes());
        assert!(failures.iter().any(|f| f.event.is_some()), "{failures:?}");
        r.lighten(true);
        assert_eq!(r.failures(), failures);
        assert_eq!(r.retransmissions(), resent);
        assert_eq!(r.light.as_ref().and_then(|l| l.trace_fnv64), Some(digest));
        assert!(r.trace.is_empty() && !r.passed());
        assert!(r.record.results.iter().all(|a| match &a.got {
            Got::Done { bytes } => bytes.is_empty(),
            _ => true,
        }));
    }
}
