//! Scenario files: what a lab run serves, who asks for what, what the
//! network does, and what must come out. One file means the same thing in
//! the simulator and on hardware.
//!
//! A scenario that cannot be used is rejected with the file, the line and
//! what is wrong: `scenarios/x.toml:12: unknown profile "uboot" (expected
//! one of rpi4-bootloader, u-boot, uefi-pxe, legacy, custom)`.

use super::faults::FaultPlan;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// The seeds it runs with when a run names none (`seeds = [17, 42]`):
    /// a regression file pins the seed that found its failure. `None`:
    /// whatever seeds the runner picks.
    pub seeds: Option<Vec<u64>>,
    /// The text it was parsed from, kept so [`Scenario::set_board_ids`]
    /// can expand `{serial}` and `{mac}` again for a real board; `None`
    /// for a scenario built in code.
    pub source: Option<Arc<str>>,
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
    /// This board's file names: `{serial}` and `{mac}` in the scenario are
    /// already expanded with [`ClientSpec::serial`] and [`ClientSpec::mac`].
    pub actions: Vec<Action>,
    /// The board's serial number, what `{serial}` expands to (eight
    /// lowercase hex digits, see [`serial_text`]): an rpi4 asks for
    /// `<serial>/start4.elf` first.
    pub serial: u32,
    /// The board's MAC address, what `{mac}` expands to (`dc-a6-32-01-02-03`,
    /// see [`mac_text`]): PXE clients ask for `pxelinux.cfg/01-<mac>`.
    pub mac: [u8; 6],
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
    /// Datagrams on the wire may be at most this many, whatever the
    /// transfers need (a bound computed for the plan, as a generated plan
    /// has one).
    #[serde(default)]
    pub max_packets: Option<u64>,
    /// How the run is judged.
    #[serde(default)]
    pub judge: Judge,
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations {
            within: defaults::within(),
            max_packet_ratio: defaults::max_packet_ratio(),
            server_idle: true,
            server_timeouts: 0,
            max_packets: None,
            judge: Judge::Scenario,
        }
    }
}

/// Which judge a scenario's runs get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Judge {
    /// The scenario's expectations as written ([`crate::lab::check::judge`]).
    #[default]
    Scenario,
    /// The random fault plans' property ([`crate::plans::verdict`]): the
    /// failures the plan itself forced on a firmware are excused, the
    /// datagram bound is `max_packets` plus what the run's own losses
    /// cost, and a server transfer may give up only on a client whose
    /// datagrams were lost. What `tftplab-sim plans` and the property test
    /// write into their regression files.
    RandomPlan,
}

impl Judge {
    pub fn name(self) -> &'static str {
        match self {
            Judge::Scenario => "scenario",
            Judge::RandomPlan => "random-plan",
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
    use serde::de::{self, Deserializer, Visitor};
    use std::fmt;
    use std::time::Duration;

    /// A duration written as a string with a unit. A bare number is the
    /// likeliest slip (`within = 600`), so its message shows the fix with
    /// the same number, rather than serde's "invalid type: integer".
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    fn number<E: de::Error>(n: impl fmt::Display) -> E {
        E::custom(format!(
            "{n} is a number: expected a duration string such as \"{n}s\" or \"{n}ms\""
        ))
    }

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string such as \"500ms\" or \"2s\"")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            super::parse_duration(s)
                .ok_or_else(|| E::custom(format!("{s:?} is not a duration like 500ms or 2s")))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            Err(number(n))
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            Err(number(n))
        }

        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
            Err(number(n))
        }
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
    seeds: Option<Spanned<Vec<Spanned<toml::Value>>>>,
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
    serial: Option<Spanned<toml::Value>>,
    mac: Option<Spanned<toml::Value>>,
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

/// A board's serial number and MAC address, by client name: what
/// [`Scenario::set_board_ids`] puts in place of the file's own.
type BoardIds = BTreeMap<String, (u32, [u8; 6])>;

/// One board of a `[[clients]]` entry (`count` makes several): its name
/// and the values `{serial}` and `{mac}` expand to in its file names.
struct Board {
    /// Index of its `[[clients]]` entry.
    entry: usize,
    name: String,
    serial: u32,
    mac: [u8; 6],
}

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
        Scenario::parse_with_ids(text, path, &BoardIds::new())
    }

    /// Gives the board `client` (a name as it runs, `rack-3` for the third
    /// of a `count`) a real serial number and MAC address, and expands
    /// `{serial}` and `{mac}` again in its actions and in the files served
    /// for it. `None` keeps the value it has. A driver with real boards
    /// calls this once per board before staging the files.
    ///
    /// A scenario built in code (no [`Scenario::source`]) only gets the new
    /// values: its names are whatever the code made them.
    pub fn set_board_ids(
        &mut self,
        client: &str,
        serial: Option<u32>,
        mac: Option<[u8; 6]>,
    ) -> Result<(), ScenarioError> {
        let Some(spec) = self.clients.iter().find(|c| c.name == client) else {
            return Err(ScenarioError {
                path: self.path.clone(),
                line: None,
                message: format!("set_board_ids: no client named {client:?}"),
            });
        };
        let mine = (serial.unwrap_or(spec.serial), mac.unwrap_or(spec.mac));
        if let Some(text) = self.source.clone() {
            let mut ids: BoardIds = self
                .clients
                .iter()
                .map(|c| (c.name.clone(), (c.serial, c.mac)))
                .collect();
            ids.insert(client.to_owned(), mine);
            let fresh = Scenario::parse_with_ids(&text, &self.path, &ids)?;
            self.files = fresh.files;
            for c in &mut self.clients {
                if let Some(f) = fresh.clients.iter().find(|f| f.name == c.name) {
                    c.actions.clone_from(&f.actions);
                }
            }
        }
        if let Some(spec) = self.clients.iter_mut().find(|c| c.name == client) {
            (spec.serial, spec.mac) = mine;
        }
        Ok(())
    }

    /// [`Scenario::parse`], with the boards named in `ids` given those
    /// serial numbers and MAC addresses instead of the file's.
    fn parse_with_ids(text: &str, path: &Path, ids: &BoardIds) -> Result<Scenario, ScenarioError> {
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
        // An entry whose name has a variable is served once per board,
        // below, once the boards are known.
        let mut files = Vec::new();
        let mut per_board = Vec::new();
        for f in &raw.files {
            let at = Some(f.span().start);
            let spec = file_spec(f.get_ref()).map_err(|m| err(at, m))?;
            expand(&spec.name, 0, [0; 6]).map_err(|m| err(at, format!("file {m}")))?;
            if spec.name.contains('{') {
                per_board.push(spec);
            } else {
                files.push(spec);
            }
        }
        let mut boards: Vec<Board> = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (entry, c) in raw.clients.iter().enumerate() {
            let at = Some(c.span().start);
            let these = boards_of(entry, c).map_err(|(o, m)| err(Some(o), m))?;
            if boards.len() + these.len() > MAX_CLIENTS {
                return Err(err(
                    at,
                    format!("more than {MAX_CLIENTS} clients in all (count included)"),
                ));
            }
            for mut board in these {
                if !names.insert(board.name.clone()) {
                    return Err(err(at, format!("two clients are named {:?}", board.name)));
                }
                if let Some(&(serial, mac)) = ids.get(&board.name) {
                    (board.serial, board.mac) = (serial, mac);
                }
                boards.push(board);
            }
        }
        if boards.is_empty() {
            // Nothing to point at: the whole file lacks a section.
            return Err(err(
                None,
                "no [[clients]]: a scenario needs at least one".into(),
            ));
        }
        // Boards that share a serial (or MAC) share the file.
        for spec in &per_board {
            for b in &boards {
                let name = expand(&spec.name, b.serial, b.mac).unwrap_or_default();
                if !files.iter().any(|f| f.name == name) {
                    files.push(FileSpec {
                        name,
                        content: spec.content.clone(),
                    });
                }
            }
        }
        let mut clients: Vec<ClientSpec> = Vec::new();
        for b in boards {
            let c = &raw.clients[b.entry];
            clients.push(client_spec(c, b, &files, text).map_err(|(o, m)| err(Some(o), m))?);
        }
        check_served(&files, &clients).map_err(|(line, message)| ScenarioError {
            path: path.to_path_buf(),
            line: Some(line),
            message,
        })?;
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
        let seeds = raw
            .seeds
            .as_ref()
            .map(|s| pinned_seeds(s).map_err(|(o, m)| err(Some(o), m)))
            .transpose()?;
        if raw.expect.judge == Judge::RandomPlan && raw.expect.max_packets.is_none() {
            return Err(ScenarioError {
                path: path.to_path_buf(),
                line: header_line(text, "[expect]"),
                message: "judge = \"random-plan\" needs max_packets, the plan's own datagram bound"
                    .into(),
            });
        }
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
            seeds,
            source: Some(Arc::from(text)),
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

/// The line of a table's header (`[expect]`), if the text has one.
fn header_line(text: &str, header: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(header))
        .map(|i| i + 1)
}

/// The largest seed TOML can write as an integer; larger ones are strings.
pub const MAX_INTEGER_SEED: u64 = i64::MAX as u64;

/// `seeds = [17, 42]`: at least one, none twice. TOML's integers stop at
/// 2^63 - 1, so a larger seed (any u64 is one) is written as a string.
fn pinned_seeds(raw: &Spanned<Vec<Spanned<toml::Value>>>) -> Result<Vec<u64>, (usize, String)> {
    if raw.get_ref().is_empty() {
        return Err((
            raw.span().start,
            "seeds = []: pin at least one seed, or leave `seeds` out (the runner's --seeds then decide)"
                .into(),
        ));
    }
    let mut seeds = Vec::new();
    for v in raw.get_ref() {
        let seed = match v.get_ref() {
            toml::Value::Integer(n) => u64::try_from(*n).ok(),
            toml::Value::String(s) => s.parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            (
                v.span().start,
                format!(
                    "seeds: {} is not a seed: a whole number from 0 to {} (above {MAX_INTEGER_SEED}, \
                     TOML's largest integer, in quotes: \"{}\")",
                    v.get_ref(),
                    u64::MAX,
                    u64::MAX
                ),
            )
        })?;
        if seeds.contains(&seed) {
            return Err((v.span().start, format!("seeds: {seed} is pinned twice")));
        }
        seeds.push(seed);
    }
    Ok(seeds)
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

/// The boards of one `[[clients]]` entry: `count` of them, named
/// `NAME-1`, `NAME-2`, ... when there is more than one, each with its own
/// serial number and MAC address. A given `serial` or `mac` is the first
/// board's and counts up from there; without one, the serial is a hash of
/// the entry's name and the board's index, and the MAC the locally
/// administered `02-00-` followed by the serial, so each board's are its
/// own and the same in every run.
fn boards_of(entry: usize, c: &Spanned<RawClient>) -> Result<Vec<Board>, (usize, String)> {
    let raw = c.get_ref();
    let at = c.span().start;
    Profile::parse(raw.profile.get_ref()).ok_or_else(|| {
        (
            raw.profile.span().start,
            format!(
                "unknown profile {:?} (expected one of {})",
                raw.profile.get_ref(),
                Profile::NAMES
            ),
        )
    })?;
    if raw.count == 0 || raw.count > MAX_CLIENTS {
        return Err((at, format!("client {:?}: count must be 1..=1000", raw.name)));
    }
    let value = |v: &Option<Spanned<toml::Value>>,
                 parse: fn(&toml::Value) -> Result<u64, String>| {
        v.as_ref()
            .map(|v| {
                parse(v.get_ref())
                    .map_err(|m| (v.span().start, format!("client {:?}: {m}", raw.name)))
            })
            .transpose()
    };
    let serial = value(&raw.serial, |v| parse_serial(v).map(u64::from))?;
    let mac = value(&raw.mac, |v| parse_mac(v).map(mac_number))?;
    Ok((0..raw.count)
        .map(|i| {
            let serial = match serial {
                Some(s) => (s as u32).wrapping_add(i as u32),
                None => {
                    let h = super::setup::mix(i as u64, &raw.name);
                    (h ^ (h >> 32)) as u32
                }
            };
            let mac = match mac {
                Some(m) => mac_bytes(m.wrapping_add(i as u64)),
                None => {
                    let [a, b, c, d] = serial.to_be_bytes();
                    [0x02, 0x00, a, b, c, d]
                }
            };
            Board {
                entry,
                name: match raw.count {
                    1 => raw.name.clone(),
                    _ => format!("{}-{}", raw.name, i + 1),
                },
                serial,
                mac,
            }
        })
        .collect())
}

/// `serial = "9ffefdef"`: eight hex digits, as an rpi4 prints and asks for.
fn parse_serial(v: &toml::Value) -> Result<u32, String> {
    let hint = "serial is 8 hex digits in quotes, such as serial = \"9ffefdef\"";
    match v {
        toml::Value::String(s) if s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(s, 16).map_err(|_| hint.to_owned())
        }
        toml::Value::String(s) => Err(format!("serial {s:?}: {hint}")),
        other => Err(format!("serial {other}: {hint}")),
    }
}

/// `mac = "dc:a6:32:01:02:03"` (or with dashes).
fn parse_mac(v: &toml::Value) -> Result<[u8; 6], String> {
    let hint = "mac is six hex pairs in quotes, such as mac = \"dc:a6:32:01:02:03\"";
    let toml::Value::String(s) = v else {
        return Err(format!("mac {v}: {hint}"));
    };
    let sep = if s.contains('-') { '-' } else { ':' };
    let mut out = [0u8; 6];
    let mut parts = s.split(sep);
    for byte in &mut out {
        let part = parts.next().unwrap_or_default();
        if part.len() != 2 {
            return Err(format!("mac {s:?}: {hint}"));
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| format!("mac {s:?}: {hint}"))?;
    }
    match parts.next() {
        None => Ok(out),
        Some(_) => Err(format!("mac {s:?}: {hint}")),
    }
}

fn mac_number(m: [u8; 6]) -> u64 {
    m.iter().fold(0, |n, &b| n << 8 | u64::from(b))
}

/// The low 48 bits of `n` as a MAC address.
fn mac_bytes(n: u64) -> [u8; 6] {
    let b = n.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// What `{serial}` expands to: eight lowercase hex digits (`9ffefdef`).
pub fn serial_text(serial: u32) -> String {
    format!("{serial:08x}")
}

/// What `{mac}` expands to: lowercase hex pairs joined by dashes
/// (`dc-a6-32-01-02-03`), as pxelinux, U-Boot and iPXE's `hexhyp` write it.
pub fn mac_text(mac: [u8; 6]) -> String {
    let pairs: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    pairs.join("-")
}

/// The variables a file name may use.
pub const VARIABLES: &str = "{serial} or {mac}";

/// `name` with `{serial}` and `{mac}` filled in. Any other `{...}`, or a
/// `{` left open, is an error: a file name with a typo in a variable
/// would otherwise be asked for literally and fail only at run time.
fn expand(name: &str, serial: u32, mac: [u8; 6]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = name;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!(
                "{name:?}: a `{{` with no `}}` (file names may use {VARIABLES})"
            ));
        };
        match &after[..close] {
            "serial" => out.push_str(&serial_text(serial)),
            "mac" => out.push_str(&mac_text(mac)),
            other => {
                return Err(format!(
                    "{name:?}: unknown variable {{{other}}} (file names may use {VARIABLES})"
                ))
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn client_spec(
    c: &Spanned<RawClient>,
    board: Board,
    files: &[FileSpec],
    text: &str,
) -> Result<ClientSpec, (usize, String)> {
    let raw = c.get_ref();
    // Checked in boards_of.
    let profile = Profile::parse(raw.profile.get_ref()).unwrap_or(Profile::Custom);
    let mut actions = Vec::new();
    for a in &raw.actions {
        let line = line_of(text, a.span().start);
        actions.push(action(a.get_ref(), files, line, &board).map_err(|m| (a.span().start, m))?);
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
    Ok(ClientSpec {
        name: board.name,
        profile,
        options: raw.options,
        retry_every: raw.retry_every.unwrap_or(retry_default),
        retries: raw.retries.unwrap_or(retries_default),
        start: raw.start.unwrap_or_default(),
        actions,
        serial: board.serial,
        mac: board.mac,
    })
}

fn action(a: &RawAction, files: &[FileSpec], line: usize, board: &Board) -> Result<Action, String> {
    let expect = match &a.expect {
        None => Outcome::Intact,
        Some(v) => outcome(v)?,
    };
    let name = |n: &String| expand(n, board.serial, board.mac);
    let kind = match (&a.get, &a.put, a.sleep) {
        (Some(n), None, None) => ActionKind::Get {
            name: name(n).map_err(|m| format!("get {m}"))?,
            probe: a.probe,
        },
        (None, Some(n), None) => ActionKind::Put {
            name: name(n).map_err(|m| format!("put {m}"))?,
            content: put_content(a, files, board)?,
        },
        (None, None, Some(d)) => ActionKind::Sleep(d),
        _ => return Err("an action needs exactly one of get, put, sleep".into()),
    };
    Ok(Action { kind, expect, line })
}

fn put_content(a: &RawAction, files: &[FileSpec], board: &Board) -> Result<FileContent, String> {
    match (&a.from, &a.content, a.size) {
        (Some(from), None, None) => {
            let name = expand(from, board.serial, board.mac).map_err(|m| format!("from {m}"))?;
            files
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.content.clone())
                .ok_or_else(|| format!("put from {name:?}: no such entry in [[files]]"))
        }
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

/// A download that must arrive intact needs something to arrive: a
/// `[[files]]` entry it resolves to, or an upload of that name. Anything
/// else is a typo that would fail only at run time, with ERROR 1; a
/// download that is meant to fail says so in its `expect`. Returns the
/// line of the first such download and what to do about it.
fn check_served(files: &[FileSpec], clients: &[ClientSpec]) -> Result<(), (usize, String)> {
    let uploads: std::collections::BTreeSet<String> = clients
        .iter()
        .flat_map(|c| &c.actions)
        .filter_map(|a| match &a.kind {
            ActionKind::Put { name, .. } => normalize(name).map(|c| c.join("/")),
            _ => None,
        })
        .collect();
    for c in clients {
        for (i, a) in c.actions.iter().enumerate() {
            let ActionKind::Get { name, .. } = &a.kind else {
                continue;
            };
            if matches!(a.expect, Outcome::Error(_) | Outcome::Fails)
                || resolve(files, name).is_some()
                || normalize(name).is_some_and(|c| uploads.contains(&c.join("/")))
            {
                continue;
            }
            return Err((
                a.line,
                format!(
                    "client {} action {}: get {name:?}: the scenario serves no such file \
                     (no [[files]] entry, symlink or upload reaches it); add a [[files]] \
                     entry, or say how it fails: expect = 1 (file not found) or expect = \"fails\"",
                    c.name,
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

/// The components of a requested name as the server's store settles them
/// before looking at the disk: empty and `.` components dropped (so a
/// leading `/` is the root), a `..` removing the one before it. `None`
/// when a `..` would climb above the root (the store's ERROR 2).
pub fn normalize(name: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            _ => out.push(c),
        }
    }
    Some(out)
}

/// The `[[files]]` entry a request for `name` reaches on the server, found
/// as the store finds it: the name [`normalize`]d, then each component
/// looked up in turn, a symlink entry with a relative target followed from
/// its directory (its `..` may not leave the root). An absolute target
/// (the root's real path is the driver's), a link loop, a name that runs
/// through a file, or one that reaches nothing gives `None`; so does a
/// name that is only a directory.
pub fn resolve<'a>(files: &'a [FileSpec], name: &str) -> Option<&'a FileSpec> {
    // The first entry of a name wins, as in staging order.
    let mut by_name: BTreeMap<String, &FileSpec> = BTreeMap::new();
    for f in files {
        if let Some(c) = normalize(&f.name) {
            by_name.entry(c.join("/")).or_insert(f);
        }
    }
    let mut todo: std::collections::VecDeque<String> =
        normalize(name)?.into_iter().map(str::to_owned).collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop()?;
                continue;
            }
            _ => done.push(c),
        }
        let Some(f) = by_name.get(&done.join("/")) else {
            continue;
        };
        match &f.content {
            FileContent::Symlink(target) => {
                links += 1;
                if links > tftplab::store::MAX_LINKS || target.starts_with('/') {
                    return None;
                }
                done.pop();
                for t in target.split('/').rev() {
                    todo.push_front(t.to_owned());
                }
            }
            _ if todo.is_empty() => return Some(f),
            _ => return None,
        }
    }
    None
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

mod write;

#[cfg(test)]
mod tests;
