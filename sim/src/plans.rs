//! Random fault plans: a generator of whole scenarios (per-direction loss,
//! bursts, duplication, reordering, corruption, truncation and latency;
//! scripted drops and duplicates; a partition that heals; random file
//! sizes, profiles and options), and the property every such scenario must
//! keep: every transfer ends intact within a simulated-time bound, nothing
//! is left alive on the server, and the datagram count stays within a
//! bound derived from the plan. Failures the plan itself forces on a
//! firmware (its own give-up rules) are excused; see [`verdict`].
//!
//! A plan is a [`Case`]; [`scenario`] turns it into a [`Scenario`] whose
//! `[expect]` says `judge = "random-plan"` and `max_packets = N`, so the
//! scenario is self-contained: written out ([`Scenario::to_toml`]) it is an
//! ordinary scenario file that `tftplab-sim run` judges the same way.
//!
//! Two drivers: `sim/tests/properties.rs` (proptest, shrinking a failure
//! to a minimal plan and writing it into `sim/tests/property-regressions/`)
//! and `tftplab-sim plans` (a sweep of many plans, each generated from a
//! base seed and its index by [`generate`], sharded like `run`).

use crate::lab::check::{blksize_of, judge, RunRecord, Verdict};
use crate::lab::faults::{
    Burst, DelayRange, Direction, FaultPlan, LinkFaults, Reorder, ScriptFate, ScriptRule,
};
use crate::lab::profile::Got;
use crate::lab::scenario::{
    Action, ActionKind, ClientOptions, ClientSpec, Expectations, FileContent, FileSpec, Judge,
    Outcome, Profile, Scenario, ServerSpec, TimedEvent, TimedEventKind, WriteSpec,
};
use crate::lab::trace::{render_text, TraceEvent, TraceFate};
use crate::shard::fnv64;
use crate::SimRun;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::PathBuf;
use std::time::Duration;

/// Retries on both sides: high enough that the generated loss rates
/// (at most about 20% per direction, bursts left with probability at least
/// 0.5) cannot plausibly exhaust them, so every transfer must complete.
/// Bursts are counted in a sender's own datagrams, and an rpi4 client
/// answers a resent OACK only on its own 2 s timer: at 20 retries a 6000-
/// case run found a burst swallowing the client's 8 consecutive ACK #0s
/// after a 3 s partition, so the server (1 s timer) gave up first. That is
/// the fault model (see scenarios/bursty-loss.toml), not a defect; 40
/// retries give the client twice the tries.
pub const RETRIES: u32 = 40;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn delay_range(max_ms: u64) -> impl Strategy<Value = DelayRange> {
    (0..=max_ms, 0..=max_ms).prop_map(|(a, b)| DelayRange {
        min: ms(a.min(b)),
        max: ms(a.max(b)),
    })
}

fn link_faults() -> impl Strategy<Value = LinkFaults> {
    (
        0.0..0.1f64,
        proptest::option::of((0.0..0.05f64, 0.5..1.0f64)),
        0.0..0.1f64,
        proptest::option::of(1..=3u32),
        proptest::option::of((0.0..0.2f64, delay_range(30))),
        0.0..0.05f64,
        0.0..0.05f64,
        proptest::option::of(delay_range(5)),
    )
        .prop_map(
            |(loss, burst, duplicate, copies, reorder, corrupt, truncate, latency)| LinkFaults {
                loss,
                burst: burst.map(|(enter, exit)| Burst::per_datagram(enter, exit)),
                duplicate,
                copies,
                reorder: reorder.map(|(fraction, delay)| Reorder { fraction, delay }),
                corrupt,
                truncate,
                latency,
            },
        )
}

fn script_rule() -> impl Strategy<Value = ScriptRule> {
    let packet = prop_oneof![
        Just("RRQ".to_string()),
        Just("WRQ".to_string()),
        Just("OACK".to_string()),
        (1..=8u16).prop_map(|b| format!("DATA #{b} ")),
        (0..=8u16).prop_map(|b| format!("ACK #{b}")),
        Just("ERROR".to_string()),
    ];
    (
        prop_oneof![
            Just(Direction::ClientToServer),
            Just(Direction::ServerToClient)
        ],
        packet,
        1..=3u32,
        prop_oneof![Just(ScriptFate::Drop), Just(ScriptFate::Duplicate)],
    )
        .prop_map(|(direction, packet, nth, fate)| ScriptRule {
            direction,
            packet,
            nth,
            fate,
        })
}

/// A partition of every client from the server at `at`, healed `lasting`
/// later: shorter than either side's retries can outlast.
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    pub at: Duration,
    pub lasting: Duration,
}

fn outage() -> impl Strategy<Value = Outage> {
    (0..3000u64, 50..6000u64).prop_map(|(at, lasting)| Outage {
        at: ms(at),
        lasting: ms(lasting),
    })
}

/// One client with one transfer.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub profile: Profile,
    pub options: ClientOptions,
    /// Upload instead of download (custom and legacy profiles).
    pub put: bool,
    /// rpi4 only: a tsize probe cut after block 1 before the real fetch.
    pub probe_first: bool,
    pub size: u64,
    pub start: Duration,
}

impl Transfer {
    /// A download by `profile` (blksize `blksize` if given) of `size`
    /// bytes, starting at `start`.
    pub fn download(profile: Profile, blksize: Option<u16>, size: u64, start: Duration) -> Self {
        Transfer {
            profile,
            options: ClientOptions {
                blksize,
                ..ClientOptions::default()
            },
            put: false,
            probe_first: false,
            size,
            start,
        }
    }
}

fn file_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..=40_000u64,
        // Sizes on and beside block boundaries.
        (
            0..=8u64,
            prop_oneof![Just(512u64), Just(1024), Just(1468)],
            -1..=1i64
        )
            .prop_map(|(n, b, d)| (n * b).saturating_add_signed(d)),
    ]
}

fn transfer() -> impl Strategy<Value = Transfer> {
    let profile = prop_oneof![
        Just(Profile::Rpi4Bootloader),
        Just(Profile::UBoot),
        Just(Profile::UefiPxe),
        Just(Profile::Ipxe),
        Just(Profile::Legacy),
        Just(Profile::Custom),
    ];
    (
        profile,
        proptest::option::of(8..=4096u16),
        proptest::option::of(1..=16u16),
        any::<bool>(),
        any::<bool>(),
        file_size(),
        0..500u64,
    )
        .prop_map(|(profile, blksize, windowsize, flag, tsize, size, start)| {
            let options = ClientOptions {
                blksize: match profile {
                    Profile::Custom | Profile::UBoot | Profile::UefiPxe => blksize,
                    _ => None,
                },
                windowsize: match profile {
                    Profile::Custom | Profile::UBoot => windowsize,
                    _ => None,
                },
                timeout: None,
                tsize: tsize && profile == Profile::Custom,
                netascii: false,
            };
            Transfer {
                profile,
                options,
                put: flag && matches!(profile, Profile::Custom | Profile::Legacy),
                probe_first: flag && profile == Profile::Rpi4Bootloader,
                // No firmware boots an empty file, and two cannot fetch
                // one: EDK2 sizes its buffer from the probe's tsize
                // (PxeBcMtftp4GetFileSize) and gives up without one (the
                // server leaves tsize out for an empty file: curl rejects
                // `tsize 0`); iPXE before de4302490 answers the empty DATA
                // #1 with ACK #0 (its bitmap's first gap) and is done, so
                // the server never hears ACK #1, and after it aborts.
                size: if matches!(profile, Profile::UefiPxe | Profile::Ipxe) {
                    size.max(1)
                } else {
                    size
                },
                start: ms(start),
            }
        })
}

/// One random plan: the faults each way, scripted fates, an outage, one
/// to two clients with a transfer each, and the seed of the run.
#[derive(Debug, Clone)]
pub struct Case {
    pub client_to_server: LinkFaults,
    pub server_to_client: LinkFaults,
    pub script: Vec<ScriptRule>,
    pub outage: Option<Outage>,
    pub transfers: Vec<Transfer>,
    pub seed: u64,
}

/// The generator of plans (proptest shrinks what it makes: fewer rules,
/// lower rates, smaller files).
pub fn case() -> impl Strategy<Value = Case> {
    (
        link_faults(),
        link_faults(),
        proptest::collection::vec(script_rule(), 0..3),
        proptest::option::weighted(0.3, outage()),
        proptest::collection::vec(transfer(), 1..=2),
        any::<u64>(),
    )
        .prop_map(
            |(client_to_server, server_to_client, script, outage, transfers, seed)| Case {
                client_to_server,
                server_to_client,
                script,
                outage,
                transfers,
                seed,
            },
        )
}

/// Plan `index` of the sweep with base seed `base`: the same plan for the
/// same pair on every machine and in every run (proptest's ChaCha
/// generator keyed with the two numbers), whatever else the sweep holds.
pub fn generate(base: u64, index: u64) -> Result<Case, String> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&base.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    from_rng(TestRng::from_seed(RngAlgorithm::ChaCha, &key))
}

/// The plan a proptest seed generates (before any shrinking): what a
/// `cc <hex>` line of a `.proptest-regressions` file stands for.
pub fn from_proptest_seed(hex: &str) -> Result<Case, String> {
    let bad = || format!("{hex:?} is not 64 hex digits");
    if hex.len() != 64 {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("x"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    from_rng(TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

fn from_rng(rng: TestRng) -> Result<Case, String> {
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    case()
        .new_tree(&mut runner)
        .map(|tree| tree.current())
        .map_err(|e| format!("generating a plan: {e}"))
}

/// Probability that a datagram in this direction does not arrive (or, for
/// reordering, arrives out of order), in the long run.
fn trouble(f: &LinkFaults) -> f64 {
    // The generator draws per-datagram bursts only.
    let burst = f
        .burst
        .map_or(0.0, |b| b.enter / (b.enter + b.exit.unwrap_or(1.0)));
    let reorder = f.reorder.map_or(0.0, |r| r.fraction);
    (burst + f.loss + f.corrupt + f.truncate + reorder + f.duplicate).min(1.0)
}

fn retry_every(profile: Profile) -> Duration {
    match profile {
        Profile::Rpi4Bootloader => Duration::from_secs(2),
        // tftp-hpa's rexmt, which it restarts on every datagram.
        Profile::UBoot | Profile::Legacy => Duration::from_secs(5),
        Profile::UefiPxe => Duration::from_secs(4),
        _ => Duration::from_secs(1),
    }
}

fn transfer_blksize(t: &Transfer) -> u64 {
    match t.profile {
        Profile::Rpi4Bootloader => 1024,
        Profile::Legacy => 512,
        Profile::UBoot | Profile::UefiPxe => u64::from(t.options.blksize.unwrap_or(1468)),
        Profile::Ipxe => u64::from(t.options.blksize.unwrap_or(1432)),
        Profile::Custom => u64::from(t.options.blksize.unwrap_or(512)),
    }
}

/// A plan's name: `plan-` and a hash of the plan, so the same plan keeps
/// its name (and its regression file) wherever it is found again.
pub fn name(case: &Case) -> String {
    format!("plan-{:016x}", fnv64(format!("{case:?}").as_bytes()))
}

/// The scenario a plan describes, with its bounds: every transfer intact
/// within `within`, at most `max_packets` datagrams (plus what the run's
/// own losses cost, see [`verdict`]), the plan's seed pinned.
pub fn scenario(case: &Case) -> Scenario {
    let mut files = Vec::new();
    let mut clients = Vec::new();
    let mut within = Duration::from_secs(10);
    let mut max_packets = 20u64;
    let p = trouble(&case.client_to_server) + trouble(&case.server_to_client);
    let longest_timeout = case
        .transfers
        .iter()
        .map(|t| retry_every(t.profile))
        .max()
        .unwrap_or_default()
        .max(Duration::from_secs(5)); // U-Boot asks the server for timeout 5
    for (i, t) in case.transfers.iter().enumerate() {
        let name = format!("f{i}.bin");
        let content = FileContent::Generated {
            size: t.size,
            seed: 1000 + i as u64,
        };
        let mut actions = Vec::new();
        if t.put {
            actions.push(Action {
                kind: ActionKind::Put {
                    name: name.clone(),
                    content,
                },
                expect: Outcome::Intact,
                line: 0,
            });
        } else {
            files.push(FileSpec {
                name: name.clone(),
                content,
            });
            if t.probe_first {
                actions.push(Action {
                    kind: ActionKind::Get {
                        name: name.clone(),
                        probe: true,
                    },
                    expect: Outcome::Intact,
                    line: 0,
                });
            }
            actions.push(Action {
                kind: ActionKind::Get { name, probe: false },
                expect: Outcome::Intact,
                line: 0,
            });
        }
        // Each datagram the plan spoils costs at most a window of resent
        // blocks and an ACK, and a timeout of waiting; twice the expected
        // count, plus room for chance, bounds it.
        let blocks = t.size / transfer_blksize(t) + 1;
        let window = u64::from(t.options.windowsize.unwrap_or(1).max(1));
        let exchanges = (blocks + 8) * 2 * actions.len() as u64;
        let spoiled = (2.0 * p * exchanges as f64) as u64 + 6;
        max_packets += exchanges + spoiled * (window + 2);
        within += t.start + longest_timeout * (spoiled as u32 + 2) + ms(10) * blocks as u32;
        // A client whose last datagram's answer was lost for good (an
        // upload's final ACK, after the server stopped dallying) resends
        // until its own retries run out: tftp-hpa every 5 s.
        within += retry_every(t.profile) * RETRIES;
        clients.push(ClientSpec {
            name: format!("c{i}"),
            profile: t.profile,
            options: t.options,
            retry_every: retry_every(t.profile),
            retries: RETRIES,
            start: t.start,
            actions,
            serial: i as u32,
            mac: [0x02, 0, 0, 0, 0, i as u8],
        });
    }
    let mut events = Vec::new();
    if let Some(o) = case.outage {
        events.push(TimedEvent {
            at: o.at,
            kind: TimedEventKind::Partition(Vec::new()),
        });
        events.push(TimedEvent {
            at: o.at + o.lasting,
            kind: TimedEventKind::Heal(Vec::new()),
        });
        // Every sender resends into the outage once per timeout.
        let per_side = (o.lasting.as_millis() / 1000) as u64 + 2;
        max_packets += per_side * 2 * case.transfers.len() as u64 * 3;
        within += o.lasting + longest_timeout * 2;
    }
    let profiles: Vec<&str> = case.transfers.iter().map(|t| t.profile.name()).collect();
    Scenario {
        name: name(case),
        description: format!(
            "A random fault plan ({}), judged by the random-plan property: \
             see tftplab_sim::plans.",
            profiles.join(", ")
        ),
        path: PathBuf::from(format!("{}.toml", name(case))),
        server: ServerSpec {
            write: WriteSpec::Create,
            retries: RETRIES,
            ..ServerSpec::default()
        },
        files,
        clients,
        faults: FaultPlan {
            client_to_server: case.client_to_server,
            server_to_client: case.server_to_client,
            script: case.script.clone(),
        },
        events,
        expect: Expectations {
            within,
            max_packets: Some(max_packets),
            judge: Judge::RandomPlan,
            ..Expectations::default()
        },
        seeds: Some(vec![case.seed]),
        source: None,
    }
}

/// The judgement of a run under `judge = "random-plan"`:
///
/// - the scenario's own checks (every action as expected, in `within`,
///   uploads whole, the server idle), with the failures the plan forced
///   excused: a firmware that gave up by its own rules where no server
///   could have helped ([`firmware_verdict`]), an upload whose every final
///   ACK was lost ([`excuse_lost_final_acks`]);
/// - every action reports an outcome;
/// - at most `max_packets` datagrams, plus the cost of what the run lost:
///   a late copy of a request starts a transfer nobody listens to, which
///   resends until it gives up (`server.retries + 2` each), and a lost
///   final ACK or lost ERROR ending a probe leaves the server resending its
///   last window until it gives up;
/// - a server transfer may only give up (midway or unconfirmed) on a
///   client whose datagrams were lost, on one started by an extra request,
///   or on firmware that abandoned it without a word.
///
/// `max_packet_ratio` and `server_timeouts` are not used: the bounds above
/// take their place.
pub fn verdict(scenario: &Scenario, r: &SimRun) -> Verdict {
    let mut lenient = scenario.clone();
    lenient.expect = Expectations {
        max_packet_ratio: 1e9,
        server_timeouts: u64::MAX,
        max_packets: None,
        judge: Judge::Scenario,
        ..scenario.expect
    };
    let mut v = judge(&lenient, &excuse_lost_final_acks(scenario, r));
    let actions: usize = scenario.clients.iter().map(|c| c.actions.len()).sum();
    if r.record.results.len() != actions && r.record.unfinished.is_empty() {
        v.fail(
            format!(
                "{} of {actions} actions reported an outcome",
                r.record.results.len()
            ),
            None,
        );
    }
    // A second copy of a request (duplicated by the plan, or the client's
    // own retransmission after a lost reply) can arrive after the transfer
    // it started has ended (a UEFI probe is aborted within a millisecond);
    // the server cannot tell it from a new request and starts a transfer
    // the client no longer listens to, which retries until it gives up.
    let extra_requests: u64 = scenario
        .clients
        .iter()
        .map(|c| {
            let needed: u64 = c
                .actions
                .iter()
                .map(|a| match a.kind {
                    ActionKind::Get { .. } if c.profile == Profile::UefiPxe => 2,
                    ActionKind::Sleep(_) => 0,
                    _ => 1,
                })
                .sum();
            let arrived: u64 = r
                .trace
                .iter()
                .filter(|e| {
                    e.from == c.name && (e.packet.starts_with("RRQ") || e.packet.starts_with("WRQ"))
                })
                .map(|e| match e.fate {
                    TraceFate::Duplicated { copies } => copies as u64,
                    TraceFate::Dropped { .. } => 0,
                    _ => 1,
                })
                .sum();
            arrived.saturating_sub(needed)
        })
        .sum();
    // Firmware sends its final ACK once and never dallies (U-Boot, EDK2,
    // iPXE, tftp-hpa): when the plan loses it, the server resends its last
    // window until it gives up, and reports the transfer unconfirmed.
    let last_window = scenario
        .clients
        .iter()
        .map(|c| match c.profile {
            Profile::UefiPxe => 4,
            _ => u64::from(c.options.windowsize.unwrap_or(1).max(1)),
        })
        .max()
        .unwrap_or(1);
    let server = &scenario.server;
    let resends_until_giving_up = u64::from(tftplab::proto::timeouts_before_giving_up(
        server.retries,
        server.min_rto,
        server.timeout,
    )) + 2;
    // A client's ERROR ending a transfer (EDK2's abort of its tsize probe,
    // rpi4's "Early terminate") that the plan loses leaves the server
    // resending until it gives up: it cannot know the client has gone.
    let lost_aborts = r
        .trace
        .iter()
        .filter(|e| {
            e.from != "server"
                && e.packet.starts_with("ERROR")
                && matches!(e.fate, TraceFate::Dropped { .. })
        })
        .count() as u64;
    let max_packets = scenario
        .expect
        .max_packets
        .unwrap_or(0)
        .saturating_add(extra_requests * (u64::from(server.retries) + 2))
        .saturating_add(
            (r.record.server_unconfirmed + lost_aborts) * last_window * resends_until_giving_up,
        );
    if r.record.datagrams > max_packets {
        v.fail(
            format!(
                "{} datagrams sent; the plan's bound is {max_packets} (max_packets = {} \
                 plus {extra_requests} extra request(s), {} unconfirmed transfer(s) and \
                 {lost_aborts} lost abort(s); minimum {})",
                r.record.datagrams,
                scenario.expect.max_packets.unwrap_or(0),
                r.record.server_unconfirmed,
                v.minimum_datagrams,
            ),
            Some(crate::lab::check::Moment::Datagram(max_packets)),
        );
    }
    // A server transfer may only give up on a client whose datagrams were
    // lost (a final ACK, or the ERROR ending a probe), by the plan or in a
    // partition, on one started by a duplicated request, or on firmware
    // that abandoned it without a word (U-Boot's late-OACK abort).
    let abandoned = r
        .record
        .results
        .iter()
        .filter(|a| firmware_verdict(scenario, r, &a.client, &a.got))
        .count() as u64;
    let lost_from_clients = r
        .trace
        .iter()
        .filter(|e| e.from != "server" && matches!(e.fate, TraceFate::Dropped { .. }))
        .count() as u64;
    let gave_up = r.record.server_timeouts + r.record.server_unconfirmed;
    if gave_up > lost_from_clients + extra_requests + abandoned {
        v.fail(
            format!(
                "{gave_up} server transfers timed out or unconfirmed; {lost_from_clients} client \
                 datagrams were lost, {extra_requests} extra requests arrived, {abandoned} \
                 abandoned by firmware"
            ),
            None,
        );
    }
    v
}

/// [`verdict`]'s failures as one message for a test or a sweep: each
/// failure, the seed, and the run's last 30 datagrams. `Ok` if it passed.
pub fn check(scenario: &Scenario, r: &SimRun) -> Result<(), String> {
    if r.passed() {
        return Ok(());
    }
    let trace = render_text(&r.trace);
    let tail: Vec<&str> = trace.lines().rev().take(30).collect();
    let failures: Vec<String> = r.failures().into_iter().map(|f| f.text).collect();
    Err(format!(
        "{} seed {}:\n{}\nlast datagrams:\n{}",
        scenario.name,
        r.seed,
        failures.join("\n"),
        tail.iter().rev().copied().collect::<Vec<_>>().join("\n")
    ))
}

/// Runs a plan's scenario with its seed and checks it.
pub fn check_case(case: &Case) -> Result<(), String> {
    let s = scenario(case);
    check(&s, &crate::run(&s, case.seed, crate::SimOptions::default()))
}

/// The record with its expectations adjusted to what the run did: an
/// upload whose client timed out is excused if it landed whole on the
/// server and every final ACK the server sent that client was lost (for
/// longer than the server dallies): then only the server can know the last
/// block arrived (RFC 1350 section 6). So is an action the plan decided
/// ([`firmware_verdict`]). Anything else must end as expected.
pub fn excuse_lost_final_acks(scenario: &Scenario, r: &SimRun) -> RunRecord {
    let mut record = r.record.clone();
    for result in &mut record.results {
        if firmware_verdict(scenario, r, &result.client, &result.got) {
            result.action.expect = Outcome::Fails;
            continue;
        }
        let (ActionKind::Put { name, content }, Got::TimedOut) = (&result.action.kind, &result.got)
        else {
            continue;
        };
        let Some(spec) = scenario.clients.iter().find(|c| c.name == result.client) else {
            continue;
        };
        let Some(bytes) = content.bytes() else {
            continue;
        };
        let last = (bytes.len() as u64 / blksize_of(spec) + 1) % 65536;
        let final_ack = format!("ACK #{last}");
        let acks: Vec<&TraceEvent> = r
            .trace
            .iter()
            .filter(|e| e.from == "server" && e.to == result.client && e.packet == final_ack)
            .collect();
        let all_lost = !acks.is_empty()
            && acks
                .iter()
                .all(|e| matches!(e.fate, TraceFate::Dropped { .. }));
        let landed = r.record.uploaded.get(name) == Some(&Some(bytes));
        if all_lost && landed {
            result.action.expect = Outcome::Fails;
        }
    }
    record
}

/// Whether the plan, not the server, decided that this client failed: the
/// firmware's own rules end it, and no server could have helped.
/// - Every request it sent was lost (a partition, then losses): its retries
///   ran out before one reached the server (iPXE, for one, gives up after
///   about 8 s of unanswered requests, retry.c).
/// - U-Boot ran out of timeouts, each one forced by the plan: v2023.01
///   counts `timeout_count` over the whole transfer (net/tftp.c
///   `update_block_number`, reset only on a block-number wrap) and answers
///   at most one stray block per position (`tftp_last_nack`), so once its
///   ACK and that one NACK are both lost, nothing the server sends can draw
///   another ACK before U-Boot's own timer; nor can the server beat that
///   timer when its own resends are lost (see [`uboot_timeouts_forced`]).
/// - U-Boot took a late copy of the OACK after DATA #1 and aborted with
///   "First block is not block 1" (net/tftp.c 2023.01, `tftp_handler`:
///   an OACK puts it back into STATE_OACK). Only a duplicated or
///   held-back OACK arrives late.
pub fn firmware_verdict(scenario: &Scenario, r: &SimRun, client: &str, got: &Got) -> bool {
    let sent = |prefix: &'static str| {
        r.trace
            .iter()
            .filter(move |e| e.from == client && e.packet.starts_with(prefix))
    };
    let to_client = |prefix: &'static str| {
        r.trace
            .iter()
            .filter(move |e| e.to == client && e.packet.starts_with(prefix))
    };
    match got {
        Got::TimedOut => {
            let mut requests = sent("RRQ").chain(sent("WRQ")).peekable();
            let all_requests_lost = requests.peek().is_some()
                && requests.all(|e| matches!(e.fate, TraceFate::Dropped { .. }));
            let uboot = scenario
                .clients
                .iter()
                .any(|c| c.name == client && c.profile == Profile::UBoot);
            all_requests_lost || (uboot && uboot_timeouts_forced(r, client))
        }
        Got::Local(_, message) if message.contains("First block is not block 1") => {
            to_client("OACK").any(|e| {
                matches!(
                    e.fate,
                    TraceFate::Duplicated { .. } | TraceFate::Delayed { .. }
                )
            })
        }
        _ => false,
    }
}

/// Whether every timeout a U-Boot client took was forced by the plan: its
/// last datagram before the timeout (its ACK, its one NACK, or the previous
/// timeout's resend) was lost, or a datagram the server sent it in that
/// silence was. Its timer runs `tftptimeout` (5 s) from its last in-order
/// block or timeout; in lock-step it answers every new block, so a silence
/// that long from the client is a timeout, and the silence after its last
/// datagram is the one that ended it. A timeout with nothing lost (a
/// server that did not resend in time) is the server's, and not excused.
pub fn uboot_timeouts_forced(r: &SimRun, client: &str) -> bool {
    let lost = |e: &TraceEvent| matches!(e.fate, TraceFate::Dropped { .. });
    let sent: Vec<&TraceEvent> = r.trace.iter().filter(|e| e.from == client).collect();
    let lost_to_client_within = |from: u64, to: u64| {
        r.trace
            .iter()
            .any(|e| e.to == client && e.at_us > from && e.at_us < to && lost(e))
    };
    let forced = |before: &TraceEvent, until: u64| {
        lost(before) || lost_to_client_within(before.at_us, until)
    };
    let timeout_us = crate::lab::firmware::uboot::TIMEOUT_MS * 1000;
    let Some(last) = sent.last() else {
        return false;
    };
    forced(last, u64::MAX)
        && sent
            .windows(2)
            .filter(|w| w[1].at_us - w[0].at_us >= timeout_us)
            .all(|w| forced(w[0], w[1].at_us))
}

/// A scenario file for a plan that failed: `# ` comment lines saying how it
/// was found (`found_by`), the failure, and the command that replays it
/// from `path` (where the file will be), then the scenario itself.
pub fn regression_file(
    scenario: &Scenario,
    path: &std::path::Path,
    found_by: &str,
    failure: &str,
) -> Result<String, String> {
    let body = scenario.to_toml()?;
    let seed = scenario.seeds.as_ref().and_then(|s| s.first()).copied();
    let mut out = String::new();
    out.push_str("# A random fault plan that failed the random-plan property\n");
    out.push_str(&format!("# Found by: {found_by}\n"));
    if let Some(seed) = seed {
        out.push_str(&format!(
            "# Replay: cargo run -p tftplab-sim --release -- run {} --seed {seed} --trace {}-{seed}.trace\n",
            path.display(),
            scenario.name
        ));
    }
    out.push_str("# Failure, when found:\n");
    out.push_str(&comment(failure));
    out.push('\n');
    out.push_str(&body);
    Ok(out)
}

/// `text` as `#   ` comment lines.
pub fn comment(text: &str) -> String {
    text.lines()
        .map(|l| format!("#   {l}\n").replace("#   \n", "#\n"))
        .collect()
}
