//! Builds a turmoil world from a scenario and a seed and runs it: one host
//! for the server, one per client, all running the real tftplab server and
//! client over turmoil's UDP, with tftplab's own fault layer on every socket.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tftplab::lab::check::{judge, RunRecord, Verdict};
use tftplab::lab::faults::{Direction, Injector, Script};
use tftplab::lab::net::{FaultyNet, LabClock};
use tftplab::lab::profile::{run_client, ActionResult};
use tftplab::lab::scenario::{ActionKind, FileContent, Scenario, TimedEventKind, WriteSpec};
use tftplab::lab::trace::{Trace, TraceEvent, TraceFate};
use tftplab::options::Limits;
use tftplab::proto::ServerConfig;
use tftplab::proto::TransferError;
use tftplab::runtime::{serve, DatagramSocket, Network, ServerEvent, ServerHandle, ServerOptions};
use tftplab::store::{Store, StoreConfig, WritePolicy};

/// turmoil's UDP as a tftplab [`Network`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNet;

pub struct TurmoilSocket(turmoil::net::UdpSocket);

impl DatagramSocket for TurmoilSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        self.0.send_to(buf, target)
    }

    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        self.0.recv_from(buf)
    }
}

impl Network for TurmoilNet {
    type Socket = TurmoilSocket;

    async fn bind(&self, addr: SocketAddr) -> io::Result<TurmoilSocket> {
        turmoil::net::UdpSocket::bind(addr).await.map(TurmoilSocket)
    }
}

/// Simulated time, host names and partitions for traces.
struct SimClock {
    names: Mutex<BTreeMap<IpAddr, String>>,
    /// Clients cut off from the server by a partition event.
    cut: Mutex<BTreeSet<String>>,
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
        let client = if from == "server" { to } else { from };
        self.cut.lock().is_ok_and(|c| c.contains(client))
    }
}

/// How a simulation is run.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// turmoil's step: simulated time advanced per step.
    pub tick: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tick: Duration::from_millis(1),
        }
    }
}

/// The outcome of one scenario run with one seed.
pub struct SimRun {
    pub seed: u64,
    pub verdict: Verdict,
    pub record: RunRecord,
    pub trace: Vec<TraceEvent>,
    /// The simulation itself failed (a host errored); the message says how.
    pub sim_error: Option<String>,
}

impl SimRun {
    pub fn passed(&self) -> bool {
        self.verdict.passed() && self.sim_error.is_none()
    }

    /// Datagrams sent again: the same packet from the same host to the
    /// same host as an earlier one (resent DATA, re-ACKs, repeated requests).
    pub fn retransmissions(&self) -> u64 {
        let mut seen = std::collections::BTreeSet::new();
        let mut repeats = 0;
        for e in &self.trace {
            if !seen.insert((e.from.clone(), e.to.clone(), e.packet.clone())) {
                repeats += 1;
            }
        }
        repeats
    }
}

fn mix(seed: u64, salt: &str) -> u64 {
    // FNV-1a over the salt, folded into the seed: stable across platforms.
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in salt.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x1000_0000_01b3);
    }
    h
}

/// Writes the scenario's files into a fresh root.
fn stage(scenario: &Scenario, root: &Path) -> io::Result<()> {
    for f in &scenario.files {
        let path = root.join(f.name.trim_start_matches('/'));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match &f.content {
            FileContent::Symlink(target) => {
                #[cfg(unix)]
                std::os::unix::fs::symlink(target, &path)?;
            }
            FileContent::Path(p) => {
                let base = scenario.path.parent().unwrap_or(Path::new("."));
                std::fs::copy(base.join(p), &path)?;
            }
            other => std::fs::write(&path, other.bytes().unwrap_or_default())?,
        }
    }
    Ok(())
}

fn server_options(scenario: &Scenario) -> (StoreConfig, ServerOptions) {
    let s = &scenario.server;
    let write = match s.write {
        WriteSpec::Off => WritePolicy::Off,
        WriteSpec::Create => WritePolicy::Create,
        WriteSpec::Overwrite => WritePolicy::Overwrite,
    };
    let store = StoreConfig::new(".")
        .write(write)
        .max_upload(s.max_upload)
        .create_dirs(s.create_dirs);
    let options = ServerOptions {
        bind: SocketAddr::from(([0, 0, 0, 0], 69)),
        transfer: ServerConfig {
            timeout: s.timeout,
            retries: s.retries,
            limits: Limits {
                max_blksize: s.max_blksize,
                max_windowsize: s.max_windowsize,
                max_upload: s.max_upload,
            },
        },
        max_transfers: s.max_transfers,
        port_range: None,
    };
    (store, options)
}

/// Runs `scenario` with `seed` and judges it.
pub fn run(scenario: &Scenario, seed: u64, opts: SimOptions) -> SimRun {
    let root = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return failed_setup(seed, format!("temp dir: {e}")),
    };
    if let Err(e) = stage(scenario, root.path()) {
        return failed_setup(seed, format!("staging files: {e}"));
    }
    let trace = Trace::new();
    let clock: Arc<SimClock> = Arc::new(SimClock {
        names: Mutex::new(BTreeMap::new()),
        cut: Mutex::new(BTreeSet::new()),
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

    let handle_slot: Arc<Mutex<Option<ServerHandle>>> = Arc::new(Mutex::new(None));
    let incarnation = Arc::new(AtomicU64::new(0));
    let server_timeouts = Arc::new(AtomicU64::new(0));
    {
        let (store_cfg, options) = server_options(scenario);
        let store_cfg = StoreConfig {
            root: root.path().to_path_buf(),
            ..store_cfg
        };
        let plan = scenario.faults.server_to_client;
        let script = Script::new(&scenario.faults, Direction::ServerToClient);
        let server_timeouts = server_timeouts.clone();
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
                TurmoilNet,
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
                        if let ServerEvent::Finished {
                            result: Err(TransferError::TimedOut { .. }),
                            ..
                        } = event
                        {
                            timeouts.fetch_add(1, Ordering::Relaxed);
                        }
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
            TurmoilNet,
            &spec.name,
            injector,
            Script::new(&scenario.faults, Direction::ClientToServer),
            trace.clone(),
            clock.clone() as Arc<dyn LabClock>,
        );
        let results = results.clone();
        sim.client(spec.name.clone(), async move {
            let server = SocketAddr::new(turmoil::lookup("server"), 69);
            let now = || turmoil::sim_elapsed().unwrap_or_default();
            let got = run_client(&net, server, &spec, &now).await;
            if let Ok(mut r) = results.lock() {
                r.insert(spec.name.clone(), got);
            }
            // Stay on the network a while, as a real board does: the last
            // download is still dallying and delayed datagrams (the final
            // ACK among them) are still on their way.
            tokio::time::sleep(spec.retry_every * 2 + Duration::from_secs(1)).await;
            Ok(())
        });
    }

    let sim_error = drive(
        &mut sim,
        scenario,
        limit,
        &results,
        &handle_slot,
        settle,
        &clock,
    );
    let elapsed = sim.elapsed();
    let events = trace.events();
    let results = results.lock().map(|r| r.clone()).unwrap_or_default();
    let mut record = RunRecord {
        unfinished: scenario
            .clients
            .iter()
            .filter(|c| !results.contains_key(&c.name))
            .map(|c| c.name.clone())
            .collect(),
        results: results.into_values().flatten().collect(),
        server_active: server_active(&handle_slot),
        server_timeouts: server_timeouts.load(Ordering::Relaxed),
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
    let verdict = judge(scenario, &record);
    SimRun {
        seed,
        verdict,
        record,
        trace: events,
        sim_error,
    }
}

fn failed_setup(seed: u64, message: String) -> SimRun {
    SimRun {
        seed,
        verdict: Verdict::default(),
        record: RunRecord::default(),
        trace: Vec::new(),
        sim_error: Some(message),
    }
}

/// How long the server may need after the last client finished: a
/// transfer that lost its peer retries `retries` times, and a receiver
/// dallies twice its timeout.
fn settle_time(scenario: &Scenario) -> Duration {
    let t = scenario.server.timeout.max(Duration::from_secs(5));
    t * (scenario.server.retries + 4)
}

fn server_active(slot: &Arc<Mutex<Option<ServerHandle>>>) -> u64 {
    slot.lock()
        .ok()
        .and_then(|s| s.as_ref().map(|h| h.stats().active))
        .unwrap_or(0)
}

/// Steps the world, applying timed events, until every client is done and
/// the server is idle (or the time limit).
fn drive(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    limit: Duration,
    results: &Arc<Mutex<BTreeMap<String, Vec<ActionResult>>>>,
    slot: &Arc<Mutex<Option<ServerHandle>>>,
    settle: Duration,
    clock: &SimClock,
) -> Option<String> {
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
            if server_active(slot) == 0 || sim.elapsed() >= t + settle {
                return None;
            }
        }
        if sim.elapsed() >= limit {
            return None;
        }
        match sim.step() {
            Ok(_) => {}
            Err(e) => return Some(e.to_string()),
        }
    }
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
