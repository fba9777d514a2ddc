//! Scenario files: what a lab run serves, who asks for what, what the
//! network does, and what must come out. One file means the same thing in
//! the simulator and on hardware.
//!
//! A scenario that cannot be used is rejected with the file, the line and
//! what is wrong: `scenarios/x.toml:12: unknown profile "uboot" (expected
//! one of rpi4-bootloader, u-boot, uefi-pxe, legacy, custom)`.

use super::faults::FaultPlan;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A parsed, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Where it was loaded from (for messages and relative file paths).
    pub path: PathBuf,
    pub server: ServerSpec,
    pub files: Vec<FileSpec>,
    pub clients: Vec<ClientSpec>,
    pub faults: FaultPlan,
    pub events: Vec<TimedEvent>,
    pub expect: Expectations,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WriteSpec {
    #[default]
    Off,
    Create,
    Overwrite,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    #[serde(default)]
    pub write: WriteSpec,
    #[serde(default = "defaults::max_blksize")]
    pub max_blksize: u16,
    #[serde(default = "defaults::max_windowsize")]
    pub max_windowsize: u16,
    #[serde(default = "defaults::server_timeout", with = "duration")]
    pub timeout: Duration,
    /// Floor of the adaptive retransmission timer; `min_rto = timeout` makes
    /// it fixed.
    #[serde(default = "defaults::min_rto", with = "duration")]
    pub min_rto: Duration,
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    #[serde(default = "defaults::max_transfers")]
    pub max_transfers: usize,
    #[serde(default)]
    pub max_upload: Option<u64>,
    #[serde(default)]
    pub create_dirs: bool,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            write: WriteSpec::Off,
            max_blksize: defaults::max_blksize(),
            max_windowsize: defaults::max_windowsize(),
            timeout: defaults::server_timeout(),
            min_rto: defaults::min_rto(),
            retries: defaults::retries(),
            max_transfers: defaults::max_transfers(),
            max_upload: None,
            create_dirs: false,
        }
    }
}

/// A file the server serves: given inline, generated from a size and a
/// seed, read from a path (relative to the scenario), or a symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub name: String,
    pub content: FileContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    Inline(Vec<u8>),
    Generated { size: u64, seed: u64 },
    Path(PathBuf),
    Symlink(String),
}

impl FileContent {
    /// The bytes of inline or generated content (`None` for a path or link).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            FileContent::Inline(b) => Some(b.clone()),
            FileContent::Generated { size, seed } => Some(generate(*size, *seed)),
            FileContent::Path(_) | FileContent::Symlink(_) => None,
        }
    }
}

/// Deterministic pseudo-random content for a size and a seed.
pub fn generate(size: u64, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![0u8; usize::try_from(size).unwrap_or(0)];
    rng.fill_bytes(&mut out);
    out
}

/// How a client behaves: a real client's habits, one variant per firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// RRQ `octet tsize 0 blksize 1024`, resent every 2 s from the same port.
    Rpi4Bootloader,
    /// `timeout 5 blksize 1468`, plus `windowsize` when set above 1.
    UBoot,
    /// A `tsize 0` probe aborted with ERROR 8, then the real RRQ.
    UefiPxe,
    /// iPXE: `blksize 1432 tsize 0`, an adaptive timer, blocks kept out of
    /// order.
    Ipxe,
    /// No options at all (tftp-hpa's client).
    Legacy,
    /// Exactly the options given.
    Custom,
}

impl Profile {
    pub const NAMES: &'static str = "rpi4-bootloader, u-boot, uefi-pxe, ipxe, legacy, custom";

    fn parse(s: &str) -> Option<Profile> {
        Some(match s {
            "rpi4-bootloader" => Profile::Rpi4Bootloader,
            "u-boot" => Profile::UBoot,
            "uefi-pxe" => Profile::UefiPxe,
            "ipxe" => Profile::Ipxe,
            "legacy" => Profile::Legacy,
            "custom" => Profile::Custom,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Rpi4Bootloader => "rpi4-bootloader",
            Profile::UBoot => "u-boot",
            Profile::UefiPxe => "uefi-pxe",
            Profile::Ipxe => "ipxe",
            Profile::Legacy => "legacy",
            Profile::Custom => "custom",
        }
    }
}

/// Options for the `custom` profile, and overrides for the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientOptions {
    pub blksize: Option<u16>,
    pub windowsize: Option<u16>,
    pub timeout: Option<u8>,
    #[serde(default)]
    pub tsize: bool,
    #[serde(default)]
    pub netascii: bool,
}

#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub name: String,
    pub profile: Profile,
    pub options: ClientOptions,
    /// Retransmission timeout of the client itself.
    pub retry_every: Duration,
    pub retries: u32,
    /// When the client starts its first action.
    pub start: Duration,
    pub actions: Vec<Action>,
}

/// What a client does, and what must come of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub expect: Outcome,
    /// The line in the scenario file, for failure messages.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// Download `name`; an rpi4 `probe` stops after block 1 with ERROR 0.
    Get { name: String, probe: bool },
    /// Upload `content` as `name`.
    Put { name: String, content: FileContent },
    /// Wait before the next action.
    Sleep(Duration),
}

/// The expected end of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Completes and the bytes are identical at both ends.
    Intact,
    /// Fails with this TFTP ERROR code (sent by the server).
    Error(u16),
    /// Either completes intact or fails with one of these codes; used where
    /// a race decides (two clients uploading one name in `create` mode).
    IntactOrError(u16),
    /// The client gives up (no answer) or gets any error, but never hangs.
    Fails,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimedEventKind {
    /// Cut the link between the server and these clients (all if empty).
    Partition(Vec<String>),
    /// Restore it.
    Heal(Vec<String>),
    /// Stop the server host (its sockets vanish; files stay).
    Crash,
    /// Start the server host again.
    Restart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedEvent {
    pub at: Duration,
    pub kind: TimedEventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Every action ends (as expected) within this much simulated time.
    #[serde(default = "defaults::within", with = "duration")]
    pub within: Duration,
    /// Datagrams on the wire may be at most this multiple of the minimum the
    /// transfers need (catches Sorcerer's Apprentice and retry storms).
    #[serde(default = "defaults::max_packet_ratio")]
    pub max_packet_ratio: f64,
    /// No transfer is left alive on the server at the end.
    #[serde(default = "defaults::yes")]
    pub server_idle: bool,
    /// Server transfers allowed to end in the server's own timeout (a
    /// client that vanished). Default 0: a client that finished must have
    /// let the server finish too (its final ACK arrived).
    #[serde(default)]
    pub server_timeouts: u64,
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations {
            within: defaults::within(),
            max_packet_ratio: defaults::max_packet_ratio(),
            server_idle: true,
            server_timeouts: 0,
        }
    }
}

mod defaults {
    use std::time::Duration;
    pub fn max_blksize() -> u16 {
        65464
    }
    pub fn max_windowsize() -> u16 {
        64
    }
    pub fn server_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn min_rto() -> Duration {
        tftplab::proto::DEFAULT_MIN_RTO
    }
    pub fn retries() -> u32 {
        5
    }
    pub fn max_transfers() -> usize {
        512
    }
    pub fn within() -> Duration {
        Duration::from_secs(300)
    }
    pub fn max_packet_ratio() -> f64 {
        3.0
    }
    pub fn yes() -> bool {
        true
    }
}

/// Parses durations written as `250ms`, `2s`, `1.5s`, `3m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.trim().parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

pub(crate) mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("{s:?} is not a duration like 500ms or 2s"))
        })
    }
}

/// A scenario that could not be loaded: the file, the line, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

// ---- raw TOML shape ------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    server: ServerSpec,
    #[serde(default)]
    files: Vec<Spanned<RawFile>>,
    #[serde(default)]
    clients: Vec<Spanned<RawClient>>,
    #[serde(default)]
    faults: FaultPlan,
    #[serde(default)]
    events: Vec<Spanned<RawEvent>>,
    #[serde(default)]
    expect: Expectations,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: String,
    content: Option<String>,
    size: Option<u64>,
    #[serde(default)]
    seed: u64,
    path: Option<String>,
    symlink: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: String,
    profile: Spanned<String>,
    #[serde(default = "one")]
    count: usize,
    #[serde(default)]
    options: ClientOptions,
    #[serde(default, with = "opt_duration")]
    retry_every: Option<Duration>,
    retries: Option<u32>,
    #[serde(default, with = "opt_duration")]
    start: Option<Duration>,
    #[serde(default)]
    actions: Vec<Spanned<RawAction>>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    get: Option<String>,
    put: Option<String>,
    #[serde(default, with = "opt_duration")]
    sleep: Option<Duration>,
    /// For put: a file of `[[files]]` to send, or inline content, or size.
    from: Option<String>,
    content: Option<String>,
    size: Option<u64>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    probe: bool,
    /// "intact" (default), an ERROR code, "fails", or "intact-or-N".
    expect: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    #[serde(with = "duration")]
    at: Duration,
    partition: Option<Vec<String>>,
    heal: Option<Vec<String>>,
    crash: Option<String>,
    restart: Option<String>,
}

mod opt_duration {
    use serde::Deserializer;
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

// ---- loading ------------------------------------------------------------

impl Scenario {
    /// Reads and checks a scenario file. Run it with
    /// [`Scenario::simulate`](crate::lab::Scenario::simulate).
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Scenario::parse(&text, path)
    }

    /// Parses scenario text; `path` is used for messages and to resolve
    /// relative file paths. Never panics.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let err = |offset: Option<usize>, message: String| ScenarioError {
            path: path.to_path_buf(),
            line: offset.map(|o| line_of(text, o)),
            message,
        };
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let first = e
                .message()
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("invalid TOML")
                .to_string();
            err(e.span().map(|s| s.start), first)
        })?;
        let default_name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into());
        let mut files = Vec::new();
        for f in &raw.files {
            let at = Some(f.span().start);
            files.push(file_spec(f.get_ref()).map_err(|m| err(at, m))?);
        }
        let mut clients: Vec<ClientSpec> = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for c in &raw.clients {
            let at = Some(c.span().start);
            let specs = client_specs(c, &files, text).map_err(|(o, m)| err(Some(o), m))?;
            if clients.len() + specs.len() > MAX_CLIENTS {
                return Err(err(
                    at,
                    format!("more than {MAX_CLIENTS} clients in all (count included)"),
                ));
            }
            for spec in specs {
                if !names.insert(spec.name.clone()) {
                    return Err(err(at, format!("two clients are named {:?}", spec.name)));
                }
                clients.push(spec);
            }
        }
        if clients.is_empty() {
            // Nothing to point at: the whole file lacks a section.
            return Err(err(
                None,
                "no [[clients]]: a scenario needs at least one".into(),
            ));
        }
        let mut events = Vec::new();
        for e in &raw.events {
            let kind = event_kind(e.get_ref(), &names).map_err(|m| err(Some(e.span().start), m))?;
            events.push(TimedEvent {
                at: e.get_ref().at,
                kind,
            });
        }
        events.sort_by_key(|e| e.at);
        raw.faults.check().map_err(|m| ScenarioError {
            path: path.to_path_buf(),
            line: faults_line(text, &m),
            message: format!("[faults]: {m}"),
        })?;
        Ok(Scenario {
            name: raw.name.unwrap_or(default_name),
            description: raw.description,
            path: path.to_path_buf(),
            server: raw.server,
            files,
            clients,
            faults: raw.faults,
            events,
            expect: raw.expect,
        })
    }
}

/// Clients in one scenario, `count` included: a simulated world bigger than
/// this is a typo, and the loader must not allocate without bound.
pub const MAX_CLIENTS: usize = 1000;

/// The line of the `[faults...]` table a fault-plan message is about: the
/// message starts with the direction (`client_to_server: ...`). The plan is
/// checked after deserialising, where spans are gone, so this looks for the
/// table's header (or a `faults` key) in the text.
fn faults_line(text: &str, message: &str) -> Option<usize> {
    let direction = message.split(':').next().unwrap_or_default().trim();
    let header = format!("[faults.{direction}]");
    let lines = || text.lines().map(str::trim_start).enumerate();
    lines()
        .find(|(_, l)| l.starts_with(&header))
        .or_else(|| lines().find(|(_, l)| l.starts_with("[faults")))
        .or_else(|| lines().find(|(_, l)| l.starts_with("faults")))
        .map(|(i, _)| i + 1)
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn file_spec(f: &RawFile) -> Result<FileSpec, String> {
    let content = match (&f.content, f.size, &f.path, &f.symlink) {
        (Some(c), None, None, None) => FileContent::Inline(c.clone().into_bytes()),
        (None, Some(size), None, None) if size <= 1 << 32 => {
            FileContent::Generated { size, seed: f.seed }
        }
        (None, Some(size), None, None) => {
            return Err(format!("file {:?}: size {size} is over 4 GiB", f.name))
        }
        (None, None, Some(p), None) => FileContent::Path(PathBuf::from(p)),
        (None, None, None, Some(t)) => FileContent::Symlink(t.clone()),
        _ => {
            return Err(format!(
                "file {:?} needs exactly one of content, size, path, symlink",
                f.name
            ))
        }
    };
    Ok(FileSpec {
        name: f.name.clone(),
        content,
    })
}

fn client_specs(
    c: &Spanned<RawClient>,
    files: &[FileSpec],
    text: &str,
) -> Result<Vec<ClientSpec>, (usize, String)> {
    let raw = c.get_ref();
    let at = c.span().start;
    let profile = Profile::parse(raw.profile.get_ref()).ok_or_else(|| {
        (
            raw.profile.span().start,
            format!(
                "unknown profile {:?} (expected one of {})",
                raw.profile.get_ref(),
                Profile::NAMES
            ),
        )
    })?;
    if raw.count == 0 || raw.count > 1000 {
        return Err((at, format!("client {:?}: count must be 1..=1000", raw.name)));
    }
    let mut actions = Vec::new();
    for a in &raw.actions {
        let line = line_of(text, a.span().start);
        actions.push(action(a.get_ref(), files, line).map_err(|m| (a.span().start, m))?);
    }
    // Each firmware's own timer: the rpi4 bootloader resends every 2 s
    // (30 s per file); U-Boot's TIMEOUT 5 s, TIMEOUT_COUNT 10; EDK2 PXE
    // 4 s, 6 tries (PxeBcImpl.h); tftp-hpa's rexmt 5 s, 25 s in all. iPXE
    // adapts its own timer (retry.c) and takes neither.
    let (retry_default, retries_default) = match profile {
        Profile::Rpi4Bootloader => (Duration::from_secs(2), 15),
        Profile::UBoot | Profile::Legacy => (
            Duration::from_secs(5),
            5 + 5 * u32::from(profile == Profile::UBoot),
        ),
        Profile::UefiPxe => (Duration::from_secs(4), 5),
        Profile::Ipxe | Profile::Custom => (Duration::from_secs(1), 5),
    };
    let name_of = |i: usize| match raw.count {
        1 => raw.name.clone(),
        _ => format!("{}-{}", raw.name, i + 1),
    };
    Ok((0..raw.count)
        .map(|i| ClientSpec {
            name: name_of(i),
            profile,
            options: raw.options,
            retry_every: raw.retry_every.unwrap_or(retry_default),
            retries: raw.retries.unwrap_or(retries_default),
            start: raw.start.unwrap_or_default(),
            actions: actions.clone(),
        })
        .collect())
}

fn action(a: &RawAction, files: &[FileSpec], line: usize) -> Result<Action, String> {
    let expect = match &a.expect {
        None => Outcome::Intact,
        Some(v) => outcome(v)?,
    };
    let kind = match (&a.get, &a.put, a.sleep) {
        (Some(name), None, None) => ActionKind::Get {
            name: name.clone(),
            probe: a.probe,
        },
        (None, Some(name), None) => ActionKind::Put {
            name: name.clone(),
            content: put_content(a, files)?,
        },
        (None, None, Some(d)) => ActionKind::Sleep(d),
        _ => return Err("an action needs exactly one of get, put, sleep".into()),
    };
    Ok(Action { kind, expect, line })
}

fn put_content(a: &RawAction, files: &[FileSpec]) -> Result<FileContent, String> {
    match (&a.from, &a.content, a.size) {
        (Some(from), None, None) => files
            .iter()
            .find(|f| &f.name == from)
            .map(|f| f.content.clone())
            .ok_or_else(|| format!("put from {from:?}: no such entry in [[files]]")),
        (None, Some(c), None) => Ok(FileContent::Inline(c.clone().into_bytes())),
        (None, None, Some(size)) if size <= 1 << 32 => {
            Ok(FileContent::Generated { size, seed: a.seed })
        }
        _ => Err("a put needs exactly one of from, content, size (at most 4 GiB)".into()),
    }
}

fn outcome(v: &toml::Value) -> Result<Outcome, String> {
    match v {
        toml::Value::Integer(code @ 0..=65535) => Ok(Outcome::Error(*code as u16)),
        toml::Value::String(s) if s == "intact" => Ok(Outcome::Intact),
        toml::Value::String(s) if s == "fails" => Ok(Outcome::Fails),
        toml::Value::String(s) => s
            .strip_prefix("intact-or-")
            .and_then(|c| c.parse().ok())
            .map(Outcome::IntactOrError)
            .ok_or_else(|| {
                format!(
                    "expect {s:?}: use \"intact\", \"fails\", an ERROR code, or \"intact-or-N\""
                )
            }),
        other => Err(format!(
            "expect {other}: use \"intact\", \"fails\", an ERROR code, or \"intact-or-N\""
        )),
    }
}

fn event_kind(
    e: &RawEvent,
    clients: &std::collections::BTreeSet<String>,
) -> Result<TimedEventKind, String> {
    let check = |names: &Vec<String>| -> Result<Vec<String>, String> {
        for n in names {
            if !clients.contains(n) {
                return Err(format!("event names unknown client {n:?}"));
            }
        }
        Ok(names.clone())
    };
    let server = |s: &String| {
        if s == "server" {
            Ok(())
        } else {
            Err(format!("only \"server\" can crash or restart, not {s:?}"))
        }
    };
    match (&e.partition, &e.heal, &e.crash, &e.restart) {
        (Some(p), None, None, None) => Ok(TimedEventKind::Partition(check(p)?)),
        (None, Some(h), None, None) => Ok(TimedEventKind::Heal(check(h)?)),
        (None, None, Some(s), None) => server(s).map(|()| TimedEventKind::Crash),
        (None, None, None, Some(s)) => server(s).map(|()| TimedEventKind::Restart),
        _ => Err("an event needs exactly one of partition, heal, crash, restart".into()),
    }
}

#[cfg(test)]
mod tests;
