//! Judging a run against its scenario's expectations. Both drivers fill a
//! [`RunRecord`]; [`judge`] turns it into a [`Verdict`].

use super::profile::{ActionResult, Got};
use super::scenario::{
    normalize, resolve, ActionKind, ClientSpec, FileContent, FileSpec, Outcome, Profile, Scenario,
};
use std::collections::BTreeMap;
use std::path::Path;
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
    /// The least number of datagrams the scenario's transfers need.
    pub minimum_datagrams: u64,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The expected bytes of a served file, if the scenario defines them: the
/// entry a request for `name` reaches ([`resolve`], symlinks followed as
/// the server follows them).
pub fn served_bytes(scenario: &Scenario, name: &str) -> Option<Vec<u8>> {
    file_bytes(scenario, resolve(&scenario.files, name)?)
}

/// The bytes of one `[[files]]` entry (`None` for a symlink, or a path
/// that cannot be read).
pub fn file_bytes(scenario: &Scenario, f: &FileSpec) -> Option<Vec<u8>> {
    match &f.content {
        FileContent::Path(p) => {
            let base = scenario.path.parent().unwrap_or(Path::new("."));
            std::fs::read(base.join(p)).ok()
        }
        other => other.bytes(),
    }
}

fn blksize_of(spec: &ClientSpec) -> u64 {
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
            content.bytes().map_or(0, |b| b.len() as u64)
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
    let mut v = Verdict::default();
    let specs: BTreeMap<&str, &ClientSpec> = scenario
        .clients
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    for name in &record.unfinished {
        v.failures
            .push(format!("client {name} did not finish its actions"));
    }
    for r in &record.results {
        if let Some(spec) = specs.get(r.client.as_str()) {
            v.minimum_datagrams += minimum(spec, r, scenario);
        }
        if let Err(why) = check_action(scenario, r) {
            // The time finds the end of the action in the trace.
            v.failures.push(format!(
                "{}:{}: client {} action {}: {why} (ended at {:.3}s)",
                scenario.path.display(),
                r.action.line,
                r.client,
                r.index + 1,
                r.ended_at.as_secs_f64()
            ));
        }
        if r.ended_at > scenario.expect.within {
            v.failures.push(format!(
                "client {} action {} ended at {:.3}s, after the {:.3}s bound",
                r.client,
                r.index + 1,
                r.ended_at.as_secs_f64(),
                scenario.expect.within.as_secs_f64()
            ));
        }
    }
    check_uploads(scenario, record, &mut v);
    if scenario.expect.server_idle && record.server_active > 0 {
        v.failures.push(format!(
            "{} transfer(s) still alive on the server at the end",
            record.server_active
        ));
    }
    if record.server_timeouts > scenario.expect.server_timeouts {
        v.failures.push(format!(
            "{} server transfer(s) timed out midway (allowed: {}); a client's ACK or request stopped arriving",
            record.server_timeouts, scenario.expect.server_timeouts
        ));
    }
    let allowed = (scenario.expect.max_packet_ratio * v.minimum_datagrams as f64) as u64 + 10;
    if record.datagrams > allowed {
        v.failures.push(format!(
            "{} datagrams sent; the bound is {allowed} ({}x the minimum of {} + 10); this run sent {:.2}x the minimum",
            record.datagrams,
            scenario.expect.max_packet_ratio,
            v.minimum_datagrams,
            record.datagrams as f64 / v.minimum_datagrams.max(1) as f64
        ));
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
                    Some(e) if &e == bytes => Ok(()),
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
fn put_bytes(scenario: &Scenario, name: &str) -> Option<Vec<u8>> {
    let name = normalize(name)?;
    scenario
        .clients
        .iter()
        .flat_map(|c| &c.actions)
        .find_map(|a| match &a.kind {
            ActionKind::Put { name: n, content } if normalize(n).as_ref() == Some(&name) => {
                content.bytes()
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
        let uploads = |landed: fn(&Got) -> bool| -> Vec<Vec<u8>> {
            record
                .results
                .iter()
                .filter_map(|r| match &r.action.kind {
                    ActionKind::Put { name: n, content } if n == name && landed(&r.got) => {
                        content.bytes()
                    }
                    _ => None,
                })
                .collect()
        };
        let completed = uploads(|g| matches!(g, Got::Done { .. }));
        let maybe = uploads(|g| matches!(g, Got::TimedOut));
        let served = served_bytes(scenario, name);
        match final_bytes {
            Some(b) if completed.contains(b) || maybe.contains(b) => {}
            Some(b) if completed.is_empty() && served.as_ref() == Some(b) => {}
            Some(b) => v.failures.push(format!(
                "{name:?} on the server ({} bytes) is neither the original nor any whole upload",
                b.len()
            )),
            None if completed.is_empty() => {}
            None => v.failures.push(format!(
                "{name:?} was uploaded but is missing on the server"
            )),
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
