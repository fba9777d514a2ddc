//! The board inventory (`boards.toml`): which boards the lab has, how to
//! reach them, how to power them and how to read their console, and
//! selection by labels (`--select board=rpi4,rev=1.4`), as Jumpstarter's
//! selectors do.

use crate::frame::Mac;
use crate::link::{LinkConfig, PartialChecksums};
use crate::pcap::PcapWriter;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use tftplab_sim::lab::scenario::{parse_duration, ClientOptions, Profile};
use tftplab_sim::lab::trace::Trace;
use tftplab_sim::lab::FaultPlan;

/// A parsed inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub boards: Vec<Board>,
}

/// One board.
#[derive(Debug, Clone)]
pub struct Board {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The runner's interface on the board's segment.
    pub interface: String,
    /// Open the interface inside this network namespace.
    pub netns: Option<String>,
    pub board_ip: Ipv4Addr,
    pub board_mac: Option<Mac>,
    /// The board's serial number (an rpi4's 8 hex digits, which it puts in
    /// front of its file names: `<serial>/start4.elf`): a scenario's
    /// `{serial}` becomes this on this board, as `{mac}` becomes
    /// `board_mac`.
    pub serial: Option<u32>,
    /// The address the runner serves on (one the host does not own).
    pub server_ip: Ipv4Addr,
    pub server_mac: Mac,
    /// What the board's firmware does: a scenario's client must have this
    /// profile (and these options, where it names them).
    pub profile: Profile,
    pub options: ClientOptions,
    pub partial_checksums: PartialChecksums,
    pub mtu: usize,
    pub power: Power,
    pub console: Option<Console>,
    /// How `store-check` makes the board fetch `test.bin` on its console:
    /// `[boards.store_check]`, with defaults for U-Boot boards; `None` for
    /// other firmware that does not name a fetch command.
    pub store_check: Option<StoreCheck>,
}

/// Commands `store-check` types on the board's console. In `setup` and
/// `fetch`, `{file}`, `{server_ip}` and `{board_ip}` are filled in; in
/// `success`, `{size}`, `{crc32}` and `{sha256}` stand for the uploaded
/// file's size (decimal) and checksums (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCheck {
    /// Steps from power-on to a prompt with the network up.
    pub setup: Vec<ConsoleStep>,
    /// The board's shell prompt: the fetch is typed at the first one after
    /// `setup`, and its return means the fetch command ended.
    pub prompt: String,
    /// The command that fetches `{file}` from the server.
    pub fetch: String,
    /// Texts the console must show after the fetch (the board's own count
    /// and checksum of what it loaded).
    pub success: Vec<String>,
}

impl StoreCheck {
    /// U-Boot's: stop autoboot, DHCP without autoload, point `serverip`
    /// at the runner, `tftpboot` to `${loadaddr}` (U-Boot's default load
    /// address when unset), then `crc32` what landed.
    pub const UBOOT_PROMPT: &'static str = "\n=> ";
    pub const UBOOT_FETCH: &'static str =
        "tftpboot ${loadaddr} {file} && crc32 ${fileaddr} ${filesize}";

    fn uboot_setup() -> Vec<ConsoleStep> {
        vec![
            ConsoleStep {
                expect: "Hit any key to stop autoboot".into(),
                send: "\n".into(),
            },
            ConsoleStep {
                expect: Self::UBOOT_PROMPT.into(),
                send: "setenv autoload no; dhcp; setenv serverip {server_ip}\n".into(),
            },
        ]
    }

    fn uboot_success() -> Vec<String> {
        vec!["Bytes transferred = {size} (".into(), "==> {crc32}".into()]
    }
}

/// Shell commands (run with `sh -c`) that switch the board.
#[derive(Debug, Clone)]
pub struct Power {
    pub on: String,
    pub off: Option<String>,
    /// Used for a power cycle when given; otherwise off, 2 s, on.
    pub cycle: Option<String>,
    /// Each command must exit (successfully) within this.
    pub timeout: Duration,
}

/// A serial console and what to watch for on it.
#[derive(Debug, Clone)]
pub struct Console {
    /// A tty (`/dev/ttyUSB0`), `unix:/path` (QEMU's `-serial unix:`),
    /// `tcp:host:port` (ser2net), or a plain file that is followed as it
    /// grows.
    pub device: String,
    pub baud: u32,
    /// The boot succeeded when all these texts have appeared (a string or
    /// a list in the file). `{crc32:NAME}`, `{sha256:NAME}` and
    /// `{size:NAME}` stand for the served file's checksum (lowercase hex)
    /// or size in bytes.
    pub success: Vec<String>,
    /// The boot failed when this text appears.
    pub failure: Option<String>,
    pub timeout: Duration,
    /// Lines to type, each when its `expect` text appears.
    pub script: Vec<ConsoleStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleStep {
    pub expect: String,
    pub send: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    boards: Vec<RawBoard>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    interface: String,
    netns: Option<String>,
    board_ip: Ipv4Addr,
    board_mac: Option<String>,
    serial: Option<String>,
    server_ip: Ipv4Addr,
    server_mac: Option<String>,
    profile: String,
    #[serde(default)]
    options: ClientOptions,
    #[serde(default)]
    partial_checksums: PartialChecksums,
    mtu: Option<usize>,
    power: RawPower,
    console: Option<RawConsole>,
    store_check: Option<RawStoreCheck>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStoreCheck {
    setup: Option<Vec<ConsoleStep>>,
    prompt: Option<String>,
    fetch: Option<String>,
    success: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPower {
    on: String,
    off: Option<String>,
    cycle: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    device: String,
    baud: Option<u32>,
    success: Option<OneOrMany>,
    failure: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    script: Vec<ConsoleStep>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

const PROFILES: [Profile; 6] = [
    Profile::Rpi4Bootloader,
    Profile::UBoot,
    Profile::UefiPxe,
    Profile::Ipxe,
    Profile::Legacy,
    Profile::Custom,
];

fn duration(field: &str, s: Option<&str>, default: Duration) -> Result<Duration, String> {
    match s {
        None => Ok(default),
        Some(s) => {
            parse_duration(s).ok_or_else(|| format!("{field}: `{s}` is not a duration like 30s"))
        }
    }
}

fn mac(field: &str, s: Option<&str>) -> Result<Option<Mac>, String> {
    s.map(|s| {
        Mac::parse(s)
            .ok_or_else(|| format!("{field}: `{s}` is not a MAC address like dc:a6:32:01:02:03"))
    })
    .transpose()
}

impl Inventory {
    /// Reads and checks an inventory file. Errors name the file (and the
    /// line, for syntax errors) and say what is wrong.
    pub fn load(path: &Path) -> Result<Inventory, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Inventory::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Inventory, String> {
        let raw: RawInventory = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
            let msg = e.message().to_string();
            match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            }
        })?;
        let mut boards = Vec::new();
        for b in raw.boards {
            let name = b.name.clone();
            let board = Board::from_raw(b).map_err(|e| format!("board {name:?}: {e}"))?;
            if boards.iter().any(|o: &Board| o.name == board.name) {
                return Err(format!("board {name:?} is listed twice"));
            }
            boards.push(board);
        }
        if boards.is_empty() {
            return Err("no [[boards]] listed".into());
        }
        Ok(Inventory { boards })
    }

    /// The boards whose labels match every `key=value` in `selector`
    /// (comma-separated; `name=` matches the board's name). An empty
    /// selector selects every board; a selector matching none is an error.
    pub fn select(&self, selector: &str) -> Result<Vec<&Board>, String> {
        let wanted = parse_selector(selector)?;
        let chosen: Vec<&Board> = self
            .boards
            .iter()
            .filter(|b| {
                wanted.iter().all(|(k, v)| {
                    if k == "name" {
                        &b.name == v
                    } else {
                        b.labels.get(k) == Some(v)
                    }
                })
            })
            .collect();
        if chosen.is_empty() {
            return Err(format!("no board matches --select {selector:?}"));
        }
        Ok(chosen)
    }
}

/// `board=rpi4,rev=1.4` as pairs.
pub fn parse_selector(selector: &str) -> Result<Vec<(String, String)>, String> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("--select: `{p}` is not key=value")),
        })
        .collect()
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `[boards.store_check]` with U-Boot's defaults filled in; other firmware
/// has none and must name `prompt` and `fetch` to be checked.
fn store_check(profile: Profile, raw: Option<RawStoreCheck>) -> Result<Option<StoreCheck>, String> {
    let uboot = profile == Profile::UBoot;
    let Some(raw) = raw else {
        return Ok(uboot.then(|| StoreCheck {
            setup: StoreCheck::uboot_setup(),
            prompt: StoreCheck::UBOOT_PROMPT.into(),
            fetch: StoreCheck::UBOOT_FETCH.into(),
            success: StoreCheck::uboot_success(),
        }));
    };
    let required = |what: &str| {
        format!(
            "`{what}` is required: a {} board has no default (U-Boot boards do)",
            profile.name()
        )
    };
    let prompt = match raw.prompt {
        Some(p) => p,
        None if uboot => StoreCheck::UBOOT_PROMPT.into(),
        None => return Err(required("prompt")),
    };
    let fetch = match raw.fetch {
        Some(f) => f,
        None if uboot => StoreCheck::UBOOT_FETCH.into(),
        None => return Err(required("fetch")),
    };
    if prompt.is_empty() || fetch.trim().is_empty() {
        return Err("`prompt` and `fetch` must not be empty".into());
    }
    let setup = match raw.setup {
        Some(s) => s,
        None if uboot => StoreCheck::uboot_setup(),
        None => Vec::new(),
    };
    let success = match raw.success {
        Some(s) => s.into_vec(),
        None if uboot => StoreCheck::uboot_success(),
        None => Vec::new(),
    };
    Ok(Some(StoreCheck {
        setup,
        prompt,
        fetch,
        success,
    }))
}

impl Board {
    fn from_raw(b: RawBoard) -> Result<Board, String> {
        let profile = PROFILES
            .into_iter()
            .find(|p| p.name() == b.profile)
            .ok_or_else(|| {
                format!(
                    "unknown profile {:?} (expected one of {})",
                    b.profile,
                    Profile::NAMES
                )
            })?;
        let mtu = b.mtu.unwrap_or(1500);
        if !(576..=9000).contains(&mtu) {
            return Err(format!("mtu {mtu} is not in 576..=9000"));
        }
        if b.interface.is_empty() || b.interface.len() > 15 {
            return Err(format!(
                "interface {:?} is not an interface name",
                b.interface
            ));
        }
        if b.board_ip == b.server_ip {
            return Err("board_ip and server_ip are the same".into());
        }
        let power = Power {
            on: b.power.on,
            off: b.power.off,
            cycle: b.power.cycle,
            timeout: duration(
                "power.timeout",
                b.power.timeout.as_deref(),
                Duration::from_secs(30),
            )?,
        };
        let console = match b.console {
            None => None,
            Some(c) => Some(Console {
                device: c.device,
                baud: c.baud.unwrap_or(115_200),
                success: match c.success {
                    None => Vec::new(),
                    Some(OneOrMany::One(s)) => vec![s],
                    Some(OneOrMany::Many(v)) => v,
                },
                failure: c.failure,
                timeout: duration(
                    "console.timeout",
                    c.timeout.as_deref(),
                    Duration::from_secs(120),
                )?,
                script: c.script,
            }),
        };
        let store_check =
            store_check(profile, b.store_check).map_err(|e| format!("store_check: {e}"))?;
        Ok(Board {
            name: b.name,
            labels: b.labels,
            interface: b.interface,
            netns: b.netns,
            board_ip: b.board_ip,
            board_mac: mac("board_mac", b.board_mac.as_deref())?,
            serial: b
                .serial
                .as_deref()
                .map(|s| {
                    (s.len() == 8)
                        .then(|| u32::from_str_radix(s, 16).ok())
                        .flatten()
                        .ok_or_else(|| {
                            format!(
                                "serial: `{s}` is not 8 hex digits (an rpi4's serial, as its \
                                 requests show it: `9ffefdef/start4.elf`)"
                            )
                        })
                })
                .transpose()?,
            server_ip: b.server_ip,
            server_mac: mac("server_mac", b.server_mac.as_deref())?
                .unwrap_or(crate::link::DEFAULT_SERVER_MAC),
            profile,
            options: b.options,
            partial_checksums: b.partial_checksums,
            mtu,
            power,
            console,
            store_check,
        })
    }

    /// The raw link to this board, with `faults` seeded by `seed`.
    pub fn link_config(
        &self,
        faults: FaultPlan,
        seed: u64,
        pcap: Option<PcapWriter>,
        trace: Trace,
    ) -> LinkConfig {
        LinkConfig {
            interface: self.interface.clone(),
            netns: self.netns.clone(),
            server_ip: self.server_ip,
            server_mac: self.server_mac,
            board: self.board_mac.map(|m| (self.board_ip, m)),
            board_name: self.name.clone(),
            partial_checksums: self.partial_checksums,
            mtu: self.mtu,
            faults,
            seed,
            pcap,
            trace,
        }
    }

    /// The largest blksize whose DATA fits one frame on this link.
    pub fn max_blksize(&self) -> u16 {
        u16::try_from(self.mtu - 20 - 8 - 4).unwrap_or(u16::MAX)
    }

    /// `board=rpi4,rev=1.4` for messages.
    pub fn label_text(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../boards.example.toml");

    #[test]
    fn the_example_inventory_loads_and_selects_by_label() {
        let inv = Inventory::parse(EXAMPLE).expect("example parses");
        let rpi4 = inv.select("board=rpi4").expect("rpi4 boards");
        assert!(rpi4.iter().all(|b| b.labels["board"] == "rpi4"));
        assert!(!rpi4.is_empty());
        let one = inv.select("board=rpi4, rev=1.4").expect("rev 1.4");
        assert!(one.iter().all(|b| b.labels["rev"] == "1.4"));
        assert!(inv.select("board=beaglebone").is_err());
        assert_eq!(inv.select("").expect("all").len(), inv.boards.len());
        let by_name = inv
            .select(&format!("name={}", inv.boards[0].name))
            .expect("by name");
        assert_eq!(by_name.len(), 1);
    }

    #[test]
    fn store_check_defaults_for_u_boot_only() {
        let inv = Inventory::parse(EXAMPLE).expect("example parses");
        let rpi4 = inv.select("name=rpi4-a").expect("rpi4-a")[0];
        assert_eq!(rpi4.store_check, None, "the EEPROM bootloader has no fetch");
        let uboot = inv.select("name=rpi4-uboot").expect("rpi4-uboot")[0];
        let sc = uboot.store_check.as_ref().expect("u-boot default");
        assert_eq!(sc.fetch, StoreCheck::UBOOT_FETCH);
        assert_eq!(sc.prompt, "\n=> ");
        assert_eq!(sc.setup.len(), 2);
        assert!(sc.success.iter().any(|s| s == "==> {crc32}"));
        // One key overrides only itself.
        let text = EXAMPLE.replace(
            "[boards.console]\ndevice = \"tcp:",
            "[boards.store_check]\nfetch = \"tftpboot 0x80000000 {file}\"\n\n[boards.console]\ndevice = \"tcp:",
        );
        assert_ne!(text, EXAMPLE);
        let inv = Inventory::parse(&text).expect("override parses");
        let sc = inv.select("name=rpi4-uboot").expect("rpi4-uboot")[0]
            .store_check
            .clone()
            .expect("store_check");
        assert_eq!(sc.fetch, "tftpboot 0x80000000 {file}");
        assert_eq!(sc.setup, StoreCheck::uboot_setup());
    }

    #[test]
    fn bad_inventories_say_what_is_wrong() {
        let cases = [
            ("", "no [[boards]]"),
            ("[[boards]]\nname = \"a\"\n", "line 1"),
            (
                "[[boards]]\nname=\"a\"\ninterface=\"eth0\"\nboard_ip=\"10.0.0.2\"\nserver_ip=\"10.0.0.1\"\nprofile=\"uboot\"\npower={on=\"true\"}\n",
                "unknown profile \"uboot\"",
            ),
            (
                "[[boards]]\nname=\"a\"\ninterface=\"eth0\"\nboard_ip=\"10.0.0.2\"\nserver_ip=\"10.0.0.1\"\nprofile=\"u-boot\"\nboard_mac=\"xx\"\npower={on=\"true\"}\n",
                "board_mac: `xx` is not a MAC",
            ),
            (
                "[[boards]]\nname=\"a\"\ninterface=\"eth0\"\nboard_ip=\"10.0.0.300\"\nserver_ip=\"10.0.0.1\"\nprofile=\"u-boot\"\npower={on=\"true\"}\n",
                "line 4: invalid IPv4 address",
            ),
        ];
        for (text, want) in cases {
            let err = Inventory::parse(text).expect_err(text);
            assert!(err.contains(want), "{err:?} lacks {want:?}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
        let rpi4 = "[[boards]]\nname=\"a\"\ninterface=\"eth0\"\nboard_ip=\"10.0.0.2\"\nserver_ip=\"10.0.0.1\"\nprofile=\"rpi4-bootloader\"\npower={on=\"true\"}\n";
        let err = Inventory::parse(&format!("{rpi4}[boards.store_check]\nprompt = \"$ \"\n"))
            .expect_err("no fetch");
        assert!(
            err.contains(
                "store_check: `fetch` is required: a rpi4-bootloader board has no default"
            ),
            "{err}"
        );
        assert!(parse_selector("board").is_err());
        assert!(parse_selector("=x").is_err());
    }
}
