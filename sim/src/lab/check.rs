//! Judging a run against its scenario's expectations. Both drivers fill a
//! [`RunRecord`]; [`judge`] turns it into a [`Verdict`].

use super::content::{file_bytes, shared};
use super::profile::{ActionResult, Got};
use super::scenario::{normalize, resolve, ActionKind, ClientSpec, Outcome, Profile, Scenario};
use super::trace::TraceEvent;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Everything a driver observed.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub results: Vec<ActionResult>,
    /// Clients whose actions did not all finish (hung, or the run hit its
    /// time limit).
    pub unfinished: Vec<String>,
    /// Transfers still alive on the server when the run ended.
    pub server_active: u64,
    /// Server transfers whose retries ran out midway (not counting those
    /// in `server_unconfirmed`).
    pub server_timeouts: u64,
    /// Server sends whose retries ran out after every block had gone out,
    /// waiting only for the final ACK: the client may well have its file
    /// (the final ACK is never acknowledged, and U-Boot sends it once), so
    /// these are no failure; the client's own result decides.
    pub server_unconfirmed: u64,
    /// Datagrams sent by anyone (a duplicated datagram counts once).
    pub datagrams: u64,
    /// Datagrams dropped by the fault plan.
    pub dropped: u64,
    /// Simulated (or wall) time the run took.
    pub elapsed: Duration,
    /// Final content of each uploaded name in the server's root.
    pub uploaded: BTreeMap<String, Option<Vec<u8>>>,
}

/// The judgement.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub failures: Vec<String>,
    /// When each of `failures` happened, where the judge can tell: the
    /// trace is read there ([`Verdict::failures_at`]).
    pub moments: Vec<Option<Moment>>,
    /// The least number of datagrams the scenario's transfers need.
    pub minimum_datagrams: u64,
}

/// When a failure happened in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// At this time since the run started (the end of a failed action,
    /// a bound that passed, the end of the run).
    At(Duration),
    /// When the run sent its datagram with this index (from 0): the first
    /// one over the packet bound.
    Datagram(u64),
}

impl Moment {
    /// The trace event nearest this moment, by index: the one sent
    /// closest to its time (the earlier of two as close), or the datagram
    /// itself (the last one if the trace is shorter). `None` for an empty
    /// trace.
    pub fn nearest(self, events: &[TraceEvent]) -> Option<usize> {
        match self {
            Moment::At(t) => {
                let t = t.as_micros();
                (0..events.len()).min_by_key(|&i| t.abs_diff(u128::from(events[i].at_us)))
            }
            Moment::Datagram(n) => {
                let last = events.len().checked_sub(1)?;
                Some(usize::try_from(n).map_or(last, |n| n.min(last)))
            }
        }
    }

    /// When this moment was: a datagram's is when it was sent.
    pub fn time(self, events: &[TraceEvent]) -> Option<Duration> {
        match self {
            Moment::At(t) => Some(t),
            Moment::Datagram(_) => self
                .nearest(events)
                .map(|i| Duration::from_micros(events[i].at_us)),
        }
    }
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Each failure with its moment, if known.
    pub fn failures_at(&self) -> impl Iterator<Item = (&str, Option<Moment>)> {
        self.failures
            .iter()
            .enumerate()
            .map(|(i, f)| (f.as_str(), self.moments.get(i).copied().flatten()))
    }

    /// Adds a failure, with when it happened if known.
    pub fn fail(&mut self, failure: String, at: Option<Moment>) {
        self.failures.push(failure);
        self.moments.push(at);
    }
}

/// The expected bytes of a served file, if the scenario defines them: the
/// entry a request for `name` reaches ([`resolve`], symlinks followed as
/// the server follows them).
pub fn served_bytes(scenario: &Scenario, name: &str) -> Option<Arc<[u8]>> {
    file_bytes(scenario, resolve(&scenario.files, name)?)
}

/// The block size a client's transfers use: its profile's, or its option.
pub fn blksize_of(spec: &ClientSpec) -> u64 {
    let o = spec.options;
    match spec.profile {
        Profile::Rpi4Bootloader => 1024,
        Profile::UBoot | Profile::UefiPxe => u64::from(o.blksize.unwrap_or(1468)),
        Profile::Ipxe => u64::from(o.blksize.unwrap_or(1432)),
        Profile::Legacy => 512,
        Profile::Custom => u64::from(o.blksize.unwrap_or(512)),
    }
}

/// The fewest datagrams an action can take: request, OACK and ACK 0 where
/// options are asked, one DATA per block, one ACK per window.
fn minimum(spec: &ClientSpec, r: &ActionResult, scenario: &Scenario) -> u64 {
    let size = match (&r.action.kind, &r.got) {
        (ActionKind::Get { .. }, Got::Done { bytes }) => bytes.len() as u64,
        (ActionKind::Put { content, .. }, Got::Done { .. }) => {
            shared(content).map_or(0, |b| b.len() as u64)
        }
        (_, Got::Probed) => return 4,
        _ => return 2,
    };
    let _ = scenario;
    let blocks = size / blksize_of(spec) + 1;
    let window = u64::from(spec.options.windowsize.unwrap_or(1).max(1));
    let handshake = if spec.profile == Profile::Legacy {
        1
    } else {
        3
    };
    let probe = if spec.profile == Profile::UefiPxe {
        3
    } else {
        0
    };
    handshake + probe + blocks + blocks.div_ceil(window)
}

/// Checks a run: every action ended as expected and in time, downloads are
/// byte-identical to what was served, uploads left whole files, the
/// server is idle, and the packet count stays within the stated ratio.
pub fn judge(scenario: &Scenario, record: &RunRecord) -> Verdict {
    judge_timed(scenario, record, None)
}

/// [`judge`], told when the server's first transfer timed out midway (the
/// record counts them but does not say when) so that failure has a moment.
pub fn judge_timed(
    scenario: &Scenario,
    record: &RunRecord,
    first_server_timeout: Option<Duration>,
) -> Verdict {
    let mut v = Verdict::default();
    let specs: BTreeMap<&str, &ClientSpec> = scenario
        .clients
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let end = Some(Moment::At(record.elapsed));
    for name in &record.unfinished {
        v.fail(format!("client {name} did not finish its actions"), end);
    }
    for r in &record.results {
        if let Some(spec) = specs.get(r.client.as_str()) {
            v.minimum_datagrams += minimum(spec, r, scenario);
        }
        if let Err(why) = check_action(scenario, r) {
            // The time finds the end of the action in the trace.
            v.fail(
                format!(
                    "{}:{}: client {} action {}: {why} (ended at {:.3}s)",
                    scenario.path.display(),
                    r.action.line,
                    r.client,
                    r.index + 1,
                    r.ended_at.as_secs_f64()
                ),
                Some(Moment::At(r.ended_at)),
            );
        }
        if r.ended_at > scenario.expect.within {
            // It failed when the bound passed with the action still going.
            v.fail(
                format!(
                    "client {} action {} ended at {:.3}s, after the {:.3}s bound",
                    r.client,
                    r.index + 1,
                    r.ended_at.as_secs_f64(),
                    scenario.expect.within.as_secs_f64()
                ),
                Some(Moment::At(scenario.expect.within)),
            );
        }
    }
    check_uploads(scenario, record, &mut v);
    if scenario.expect.server_idle && record.server_active > 0 {
        v.fail(
            format!(
                "{} transfer(s) still alive on the server at the end",
                record.server_active
            ),
            end,
        );
    }
    if record.server_timeouts > scenario.expect.server_timeouts {
        v.fail(
            format!(
                "{} server transfer(s) timed out midway (allowed: {}); a client's ACK or request stopped arriving",
                record.server_timeouts, scenario.expect.server_timeouts
            ),
            first_server_timeout.map(Moment::At),
        );
    }
    let allowed = (scenario.expect.max_packet_ratio * v.minimum_datagrams as f64) as u64 + 10;
    if record.datagrams > allowed {
        v.fail(
            format!(
                "{} datagrams sent; the bound is {allowed} ({}x the minimum of {} + 10); this run sent {:.2}x the minimum",
                record.datagrams,
                scenario.expect.max_packet_ratio,
                v.minimum_datagrams,
                record.datagrams as f64 / v.minimum_datagrams.max(1) as f64
            ),
            Some(Moment::Datagram(allowed)),
        );
    }
    if let Some(most) = scenario.expect.max_packets {
        if record.datagrams > most {
            v.fail(
                format!(
                    "{} datagrams sent; the bound is max_packets = {most}",
                    record.datagrams
                ),
                Some(Moment::Datagram(most)),
            );
        }
    }
    v
}

fn check_action(scenario: &Scenario, r: &ActionResult) -> Result<(), String> {
    let intact = || -> Result<(), String> {
        match (&r.action.kind, &r.got) {
            (ActionKind::Get { probe: true, .. }, Got::Probed) => Ok(()),
            (ActionKind::Get { name, .. }, Got::Done { bytes }) => {
                let expected = served_bytes(scenario, name).or_else(|| put_bytes(scenario, name));
                match expected {
                    Some(e) if e[..] == bytes[..] => Ok(()),
                    Some(e) => Err(format!(
                        "received {} bytes that differ from the {} served",
                        bytes.len(),
                        e.len()
                    )),
                    None => Err(format!(
                        "received {name:?} but the scenario serves no such file"
                    )),
                }
            }
            (ActionKind::Put { .. }, Got::Done { .. }) => Ok(()),
            (_, got) => Err(format!("expected intact, got {}", describe(got))),
        }
    };
    match r.action.expect {
        Outcome::Intact => intact(),
        Outcome::Error(code) => match &r.got {
            Got::ServerError(c, _) if *c == code => Ok(()),
            got => Err(format!("expected ERROR {code}, got {}", describe(got))),
        },
        Outcome::IntactOrError(code) => match &r.got {
            Got::ServerError(c, _) if *c == code => Ok(()),
            _ => intact(),
        },
        Outcome::Fails => match &r.got {
            Got::Done { .. } => Err("expected a failure, but it completed".into()),
            _ => Ok(()),
        },
    }
}

/// The bytes of an upload of `name` (the same name as the server sees it).
fn put_bytes(scenario: &Scenario, name: &str) -> Option<Arc<[u8]>> {
    let name = normalize(name)?;
    scenario
        .clients
        .iter()
        .flat_map(|c| &c.actions)
        .find_map(|a| match &a.kind {
            ActionKind::Put { name: n, content } if normalize(n).as_ref() == Some(&name) => {
                shared(content)
            }
            _ => None,
        })
}

/// An uploaded name holds one client's whole upload, never a mix. An
/// upload whose client timed out may have landed anyway: the server's
/// final ACK can be lost for longer than the server dallies, and then only
/// the server knows the last block arrived (RFC 1350 section 6).
fn check_uploads(scenario: &Scenario, record: &RunRecord, v: &mut Verdict) {
    for (name, final_bytes) in &record.uploaded {
        let uploads = |landed: fn(&Got) -> bool| -> Vec<Arc<[u8]>> {
            record
                .results
                .iter()
                .filter_map(|r| match &r.action.kind {
                    ActionKind::Put { name: n, content } if n == name && landed(&r.got) => {
                        shared(content)
                    }
                    _ => None,
                })
                .collect()
        };
        let completed = uploads(|g| matches!(g, Got::Done { .. }));
        let maybe = uploads(|g| matches!(g, Got::TimedOut));
        let served = served_bytes(scenario, name);
        // Judged once the last upload of the name had ended.
        let last_upload = record
            .results
            .iter()
            .filter(|r| matches!(&r.action.kind, ActionKind::Put { name: n, .. } if n == name))
            .map(|r| r.ended_at)
            .max()
            .unwrap_or(record.elapsed);
        let at = Some(Moment::At(last_upload));
        match final_bytes {
            Some(b) if completed.iter().chain(&maybe).any(|u| u[..] == b[..]) => {}
            Some(b) if completed.is_empty() && served.as_ref().is_some_and(|s| s[..] == b[..]) => {}
            Some(b) => v.fail(
                format!(
                    "{name:?} on the server ({} bytes) is neither the original nor any whole upload",
                    b.len()
                ),
                at,
            ),
            None if completed.is_empty() => {}
            None => v.fail(
                format!("{name:?} was uploaded but is missing on the server"),
                at,
            ),
        }
    }
}

fn describe(got: &Got) -> String {
    match got {
        Got::Done { bytes } => format!("completion ({} bytes)", bytes.len()),
        Got::Probed => "a completed probe".into(),
        Got::ServerError(c, m) => format!("ERROR {c} {m:?}"),
        Got::TimedOut => "a timeout".into(),
        Got::Local(c, m) => format!("a local abort (ERROR {c} {m:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::trace::TraceFate;

    fn at_ms(ms: &[u64]) -> Vec<TraceEvent> {
        ms.iter()
            .map(|&ms| TraceEvent {
                at_us: ms * 1000,
                from: "a".into(),
                to: "b".into(),
                fate: TraceFate::Delivered,
                len: 4,
                packet: "ACK #1".into(),
                ports: None,
            })
            .collect()
    }

    #[test]
    fn a_moment_finds_the_nearest_datagram() {
        let events = at_ms(&[0, 10, 20, 20, 40]);
        let at = |ms| Moment::At(Duration::from_millis(ms));
        assert_eq!(at(0).nearest(&events), Some(0));
        assert_eq!(at(14).nearest(&events), Some(1));
        assert_eq!(at(16).nearest(&events), Some(2), "the first of two at once");
        assert_eq!(
            at(30).nearest(&events),
            Some(2),
            "the earlier of two as near"
        );
        assert_eq!(at(99).nearest(&events), Some(4));
        assert_eq!(at(5).nearest(&[]), None);
        assert_eq!(at(5).time(&[]), Some(Duration::from_millis(5)));
        let third = Moment::Datagram(2);
        assert_eq!(third.nearest(&events), Some(2));
        assert_eq!(third.time(&events), Some(Duration::from_millis(20)));
        assert_eq!(
            Moment::Datagram(9).nearest(&events),
            Some(4),
            "past the end"
        );
        assert_eq!(Moment::Datagram(0).nearest(&[]), None);
    }

    #[test]
    fn failures_and_their_moments_stay_together() {
        let mut v = Verdict::default();
        v.fail("one".into(), None);
        v.fail("two".into(), Some(Moment::Datagram(3)));
        let all: Vec<_> = v.failures_at().collect();
        assert_eq!(all, [("one", None), ("two", Some(Moment::Datagram(3)))]);
        // A verdict filled by hand, without moments, still lists its failures.
        let by_hand = Verdict {
            failures: vec!["three".into()],
            ..Verdict::default()
        };
        assert_eq!(by_hand.failures_at().collect::<Vec<_>>(), [("three", None)]);
    }
}
