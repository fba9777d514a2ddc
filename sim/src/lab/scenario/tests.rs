//! Loading scenario files: good ones parse to what they say, bad ones are
//! rejected with the file, the line and what is wrong.

use super::*;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(text, Path::new("scenarios/t.toml"))
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

/// One client fetching one file; the file is on line 1, so the lines of
/// whatever a test appends stay easy to count.
const MINIMAL: &str = r#"files = [{ name = "f", content = "hi" }]
[[clients]]
name = "c"
profile = "legacy"
actions = [{ get = "f" }]
"#;

#[test]
fn minimal_scenario_gets_defaults() {
    let s = parse(MINIMAL).unwrap();
    assert_eq!(s.name, "t");
    assert_eq!(s.server.write, WriteSpec::Off);
    assert_eq!(s.server.timeout, Duration::from_secs(1));
    assert_eq!(s.clients[0].profile, Profile::Legacy);
    // tftp-hpa's rexmt.
    assert_eq!(s.clients[0].retry_every, Duration::from_secs(5));
    assert_eq!(s.clients[0].actions[0].expect, Outcome::Intact);
    assert_eq!(s.clients[0].actions[0].line, 5);
    assert!(s.faults.is_clean());
    assert_eq!(s.expect.max_packet_ratio, 3.0);
}

#[test]
fn full_scenario_parses() {
    let text = r#"
name = "full"
[server]
write = "create"
timeout = "500ms"
retries = 7
max_upload = 1000
[[files]]
name = "a/b.bin"
size = 100
seed = 3
[[files]]
name = "inline.txt"
content = "hi\n"
[[files]]
name = "escape"
symlink = "/etc/passwd"
[[clients]]
name = "board"
profile = "u-boot"
count = 3
options = { windowsize = 8 }
start = "1s"
actions = [
  { get = "a/b.bin" },
  { sleep = "250ms" },
  { put = "up.bin", size = 10, seed = 2, expect = "intact-or-6" },
  { put = "copy.txt", from = "inline.txt" },
  { get = "escape", expect = 2 },
  { get = "start4.elf", probe = true, expect = "fails" },
]
[faults.server_to_client]
loss = 0.1
burst = { enter = 0.01, exit = 0.5 }
duplicate = 0.2
copies = 2
reorder = { fraction = 0.1, delay = ["1ms", "5ms"] }
corrupt = 0.01
truncate = 0.01
latency = ["100us", "2ms"]
[[events]]
at = "3s"
partition = ["board-2"]
[[events]]
at = "1s"
crash = "server"
[expect]
within = "2m"
max_packet_ratio = 5
"#;
    let s = parse(text).unwrap();
    assert_eq!(s.server.write, WriteSpec::Create);
    assert_eq!(s.server.timeout, Duration::from_millis(500));
    let names: Vec<_> = s.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["board-1", "board-2", "board-3"]);
    assert_eq!(s.clients[0].retry_every, Duration::from_secs(5));
    assert_eq!(s.clients[1].options.windowsize, Some(8));
    let a = &s.clients[0].actions;
    assert_eq!(a[1].kind, ActionKind::Sleep(Duration::from_millis(250)));
    assert_eq!(a[2].expect, Outcome::IntactOrError(6));
    assert_eq!(
        a[3].kind,
        ActionKind::Put {
            name: "copy.txt".into(),
            content: FileContent::Inline(b"hi\n".to_vec())
        }
    );
    assert_eq!(a[4].expect, Outcome::Error(2));
    assert_eq!(a[5].expect, Outcome::Fails);
    assert_eq!(
        s.files[2].content,
        FileContent::Symlink("/etc/passwd".into())
    );
    // Events come out in time order.
    assert_eq!(s.events[0].kind, TimedEventKind::Crash);
    assert_eq!(
        s.events[1].kind,
        TimedEventKind::Partition(vec!["board-2".into()])
    );
    assert_eq!(s.expect.within, Duration::from_secs(120));
    assert_eq!(s.faults.server_to_client.copies, Some(2));
}

#[test]
fn errors_name_the_file_and_line() {
    let unknown_profile = "\n[[clients]]\nname = \"c\"\nprofile = \"uboot\"\n";
    assert_eq!(
        error(unknown_profile),
        "scenarios/t.toml:4: unknown profile \"uboot\" (expected one of rpi4-bootloader, u-boot, uefi-pxe, ipxe, legacy, custom)"
    );
    let bad_toml = "name = \"x\"\n[[clients]\nname = 1\n";
    assert!(
        error(bad_toml).starts_with("scenarios/t.toml:2: "),
        "{}",
        error(bad_toml)
    );
    let unknown_key = format!("{MINIMAL}\n[server]\nwrites = \"off\"\n");
    let e = error(&unknown_key);
    assert!(
        e.starts_with("scenarios/t.toml:8: ") && e.contains("writes"),
        "{e}"
    );
    let bad_action = "[[clients]]\nname = \"c\"\nprofile = \"legacy\"\nactions = [\n  { get = \"a\", put = \"b\" },\n]\n";
    assert_eq!(
        error(bad_action),
        "scenarios/t.toml:5: an action needs exactly one of get, put, sleep"
    );
    let bad_expect = "[[clients]]\nname = \"c\"\nprofile = \"legacy\"\nactions = [{ get = \"a\", expect = \"ok\" }]\n";
    assert!(error(bad_expect).starts_with("scenarios/t.toml:4: expect \"ok\""));
    let bad_duration = format!("{MINIMAL}[expect]\nwithin = \"soon\"\n");
    assert!(
        error(&bad_duration).contains("\"soon\" is not a duration"),
        "{}",
        error(&bad_duration)
    );
    let bad_event = format!("{MINIMAL}[[events]]\nat = \"1s\"\npartition = [\"ghost\"]\n");
    assert_eq!(
        error(&bad_event),
        "scenarios/t.toml:6: event names unknown client \"ghost\""
    );
    let bad_prob = format!("{MINIMAL}[faults.client_to_server]\nloss = 2.0\n");
    assert_eq!(
        error(&bad_prob),
        "scenarios/t.toml:6: [faults]: client_to_server: loss = 2 is not a probability in 0..=1"
    );
}

#[test]
fn a_scenario_needs_clients_with_distinct_names() {
    assert!(error("name = \"x\"\n").contains("no [[clients]]"));
    let client = &MINIMAL[MINIMAL.find("[[clients]]").unwrap()..];
    let twice = format!("{MINIMAL}{client}");
    assert_eq!(
        error(&twice),
        "scenarios/t.toml:6: two clients are named \"c\""
    );
    let counted = "[[clients]]\nname = \"c-1\"\nprofile = \"legacy\"\n\n\
                   [[clients]]\nname = \"c\"\nprofile = \"legacy\"\ncount = 3\n";
    assert_eq!(
        error(counted),
        "scenarios/t.toml:5: two clients are named \"c-1\""
    );
}

#[test]
fn the_loader_caps_the_number_of_clients() {
    let many = "[[clients]]\nname = \"c\"\nprofile = \"legacy\"\ncount = 1000\n\n\
                [[clients]]\nname = \"d\"\nprofile = \"legacy\"\n";
    assert_eq!(
        error(many),
        "scenarios/t.toml:6: more than 1000 clients in all (count included)"
    );
}

#[test]
fn put_from_must_name_a_file() {
    let text = "[[clients]]\nname = \"c\"\nprofile = \"legacy\"\nactions = [{ put = \"x\", from = \"nope\" }]\n";
    assert_eq!(
        error(text),
        "scenarios/t.toml:4: put from \"nope\": no such entry in [[files]]"
    );
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("10us"), Some(Duration::from_micros(10)));
    for bad in ["", "5", "ms", "-1s", "1h", "nans"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn generated_content_is_deterministic() {
    assert_eq!(generate(1000, 7), generate(1000, 7));
    assert_ne!(generate(1000, 7), generate(1000, 8));
    assert_eq!(generate(0, 1).len(), 0);
}

#[test]
fn the_shipped_scenarios_load() {
    // The hardware runner's own scenarios too: the loader is theirs as well.
    for dir in ["../scenarios", "../hw-tests/scenarios"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 2, "{}", dir.display());
    }
}

#[test]
fn a_number_where_a_duration_belongs_says_what_to_write() {
    // Every key that takes a duration, each given the number 600.
    let cases = [
        ("[server]\ntimeout = 600\n", "server timeout"),
        ("[server]\nmin_rto = 600\n", "server min_rto"),
        ("[expect]\nwithin = 600\n", "within"),
        ("[[events]]\nat = 600\npartition = []\n", "event at"),
        ("[faults.client_to_server]\nlatency = [600, \"1ms\"]\n", "latency"),
        (
            "[faults.server_to_client]\nreorder = { fraction = 0.1, delay = [\"1ms\", 600] }\n",
            "reorder delay",
        ),
        (
            "[faults.server_to_client]\nburst = { enter = 0.1, lasts = [600, 600] }\n",
            "burst lasts",
        ),
        (
            "[[faults.script]]\ndirection = \"server_to_client\"\npacket = \"OACK\"\nfate = { delay = 600 }\n",
            "fate delay",
        ),
        (
            "[[faults.script]]\ndirection = \"server_to_client\"\npacket = \"OACK\"\nfate = { duplicate_after = 600 }\n",
            "fate duplicate_after",
        ),
        (
            "[[faults.script]]\ndirection = \"server_to_client\"\npacket = \"OACK\"\nfate = { outage = 600 }\n",
            "fate outage",
        ),
    ];
    for (table, what) in cases {
        let e = error(&format!("{MINIMAL}{table}"));
        let line =
            MINIMAL.lines().count() + 1 + table.lines().position(|l| l.contains("600")).unwrap();
        assert!(
            e.contains("600 is a number: expected a duration string such as \"600s\"")
                && e.starts_with(&format!("scenarios/t.toml:{line}: ")),
            "{what}: {e}"
        );
    }
    for key in [
        "retry_every = 600",
        "start = 600",
        "actions = [{ sleep = 600 }]",
    ] {
        let e = error(&format!(
            "[[clients]]\nname = \"c\"\nprofile = \"legacy\"\n{key}\n"
        ));
        assert!(
            e.starts_with("scenarios/t.toml:4: ")
                && e.contains("expected a duration string such as \"600s\""),
            "{key}: {e}"
        );
    }
    // A fraction is shown as written.
    let e = error(&format!("{MINIMAL}[expect]\nwithin = 1.5\n"));
    assert!(
        e.contains("1.5 is a number: expected a duration string such as \"1.5s\""),
        "{e}"
    );
    // One string where a range belongs.
    let e = error(&format!(
        "{MINIMAL}[faults.client_to_server]\nlatency = \"1ms\"\n"
    ));
    assert!(
        e.starts_with("scenarios/t.toml:7: ") && e.contains("a delay range is [\"MIN\", \"MAX\"]"),
        "{e}"
    );
}

/// A client fetching `get` with `expect`, and the given `[[files]]` lines.
fn fetching(files: &str, get: &str, expect: &str) -> String {
    format!("{files}\n[[clients]]\nname = \"c\"\nprofile = \"legacy\"\nactions = [\n  {{ get = {get:?}{expect} }},\n]\n")
}

#[test]
fn a_download_of_a_file_nobody_serves_is_rejected_at_load() {
    let e = error(&fetching("", "kernel.img", ""));
    assert_eq!(
        e,
        "scenarios/t.toml:6: client c action 1: get \"kernel.img\": the scenario serves no such file \
         (no [[files]] entry, symlink or upload reaches it); add a [[files]] entry, or say how it \
         fails: expect = 1 (file not found) or expect = \"fails\""
    );
    // A race's "intact-or-N" may well complete, so it needs the file too.
    assert!(error(&fetching("", "k", ", expect = \"intact-or-6\"")).contains("serves no such file"));
    // A probe asks for the file like a download does.
    assert!(error(&fetching("", "k", ", probe = true")).contains("serves no such file"));
    // Saying how it fails is enough.
    for expect in [", expect = 1", ", expect = 2", ", expect = \"fails\""] {
        parse(&fetching("", "kernel.img", expect)).unwrap_or_else(|e| panic!("{expect}: {e}"));
    }
}

#[test]
fn a_served_file_is_found_the_way_the_server_finds_it() {
    let files = "[[files]]\nname = \"images/v2/kernel.img\"\nsize = 10\n\n\
                 [[files]]\nname = \"current\"\nsymlink = \"images/v2\"\n\n\
                 [[files]]\nname = \"boot/kernel\"\nsymlink = \"../current/kernel.img\"\n\n\
                 [[files]]\nname = \"abs\"\nsymlink = \"/images/v2/kernel.img\"\n\n\
                 [[files]]\nname = \"loop\"\nsymlink = \"loop\"\n";
    for name in [
        "images/v2/kernel.img",
        "/images/v2/kernel.img",
        "images//./v2/kernel.img",
        "images/x/../v2/kernel.img",
        "current/kernel.img",
        "boot/kernel",
    ] {
        let s = parse(&fetching(files, name, "")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let f = resolve(&s.files, name).unwrap();
        assert_eq!(f.name, "images/v2/kernel.img", "{name}");
    }
    // Above the root, an absolute target (the root's path is the driver's),
    // a loop, a directory, a name through a file: nothing is served.
    for name in [
        "../images/v2/kernel.img",
        "abs",
        "loop",
        "images/v2",
        "images/v2/kernel.img/x",
    ] {
        let e = error(&fetching(files, name, ""));
        assert!(e.contains("serves no such file"), "{name}: {e}");
    }
}

#[test]
fn a_download_of_an_upload_needs_no_file_entry() {
    let text = "[server]\nwrite = \"create\"\n[[clients]]\nname = \"up\"\nprofile = \"custom\"\n\
                actions = [{ put = \"/logs/boot.log\", content = \"x\" }]\n\
                [[clients]]\nname = \"down\"\nprofile = \"legacy\"\nstart = \"1s\"\n\
                actions = [{ get = \"logs/boot.log\" }]\n";
    parse(text).unwrap();
}

#[test]
fn a_get_through_a_symlink_is_judged_against_its_target() {
    let files = "[[files]]\nname = \"images/kernel.img\"\nsize = 3000\nseed = 5\n\n\
                 [[files]]\nname = \"kernel\"\nsymlink = \"images/kernel.img\"\n";
    let s = parse(&fetching(files, "kernel", "")).unwrap();
    let run = s.simulate(1);
    assert!(run.passed(), "{:?}", run.verdict.failures);
}

const BOARDS: &str = r#"
[[files]]
name = "{serial}/cmdline.txt"
content = "console=serial0"

[[files]]
name = "pxelinux.cfg/01-{mac}"
content = "DEFAULT linux"

[[clients]]
name = "rack"
profile = "rpi4-bootloader"
count = 3
serial = "9ffefdef"
actions = [
  { get = "{serial}/start4.elf", expect = 1 },
  { get = "{serial}/cmdline.txt" },
]

[[clients]]
name = "pxe"
profile = "legacy"
mac = "dc:a6:32:00:00:ff"
count = 2
actions = [{ get = "pxelinux.cfg/01-{mac}" }]
"#;

fn gets(c: &ClientSpec) -> Vec<&str> {
    c.actions
        .iter()
        .filter_map(|a| match &a.kind {
            ActionKind::Get { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn serial_and_mac_expand_per_board() {
    let s = parse(BOARDS).unwrap();
    let c = |name: &str| s.clients.iter().find(|c| c.name == name).unwrap();
    // A given serial is the first board's and counts up.
    assert_eq!(
        gets(c("rack-1")),
        ["9ffefdef/start4.elf", "9ffefdef/cmdline.txt"]
    );
    assert_eq!(gets(c("rack-3"))[1], "9ffefdf1/cmdline.txt");
    // Without a MAC, the locally administered 02-00- and the serial.
    assert_eq!(c("rack-2").mac, [0x02, 0x00, 0x9f, 0xfe, 0xfd, 0xf0]);
    // A given MAC counts up too, carrying into the next byte.
    assert_eq!(gets(c("pxe-2")), ["pxelinux.cfg/01-dc-a6-32-00-01-00"]);
    // Without a serial: a hash of the entry's name and the board's index,
    // the same every time and different per board.
    assert_eq!(c("pxe-1").serial, parse(BOARDS).unwrap().clients[3].serial);
    assert_ne!(c("pxe-1").serial, c("pxe-2").serial);
    // A file with a variable is served once per board, of every entry.
    let names: Vec<&str> = s.files.iter().map(|f| f.name.as_str()).collect();
    for name in [
        "9ffefdef/cmdline.txt",
        "9ffefdf0/cmdline.txt",
        "9ffefdf1/cmdline.txt",
        "pxelinux.cfg/01-dc-a6-32-00-00-ff",
        "pxelinux.cfg/01-dc-a6-32-00-01-00",
        "pxelinux.cfg/01-02-00-9f-fe-fd-ef",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert_eq!(names.len(), 2 * 5);
}

#[test]
fn serial_and_mac_mistakes_are_rejected_with_their_line() {
    let with = |key: &str| {
        format!("[[clients]]\nname = \"c\"\nprofile = \"legacy\"\n{key}\nactions = [{{ get = \"x\", expect = 1 }}]\n")
    };
    for (key, says) in [
        (
            "serial = \"9ffefde\"",
            "serial \"9ffefde\": serial is 8 hex digits",
        ),
        ("serial = \"9ffefdeg\"", "serial is 8 hex digits in quotes"),
        (
            "serial = 12345678",
            "serial 12345678: serial is 8 hex digits",
        ),
        (
            "mac = \"dc:a6:32:01:02\"",
            "mac \"dc:a6:32:01:02\": mac is six hex pairs",
        ),
        ("mac = \"dc:a6:32:01:02:03:04\"", "mac is six hex pairs"),
        ("mac = \"dc-a6-32-01-02-0g\"", "mac is six hex pairs"),
        ("mac = \"dc:a6:32:01:02:é\"", "mac is six hex pairs"),
    ] {
        let e = error(&with(key));
        assert!(
            e.starts_with("scenarios/t.toml:4: client \"c\": ") && e.contains(says),
            "{key}: {e}"
        );
    }
    let action = fetching("", "{serail}/start4.elf", ", expect = 1");
    assert_eq!(
        error(&action),
        "scenarios/t.toml:6: get \"{serail}/start4.elf\": unknown variable {serail} (file names may use {serial} or {mac})"
    );
    let file = fetching(
        "[[files]]\nname = \"a/{mac\"\nsize = 1\n",
        "x",
        ", expect = 1",
    );
    assert_eq!(
        error(&file),
        "scenarios/t.toml:1: file \"a/{mac\": a `{` with no `}` (file names may use {serial} or {mac})"
    );
    let from = "[[clients]]\nname = \"c\"\nprofile = \"legacy\"\nactions = [{ put = \"x\", from = \"{id}\" }]\n";
    assert!(
        error(from).starts_with("scenarios/t.toml:4: from \"{id}\": unknown variable {id}"),
        "{}",
        error(from)
    );
    // Contents are the file's bytes, not names: braces stay.
    parse(&fetching(
        "[[files]]\nname = \"boot.ipxe\"\ncontent = \"${net0/mac:hexhyp} {x}\"\n",
        "boot.ipxe",
        "",
    ))
    .unwrap();
}

#[test]
fn a_real_board_gets_its_own_serial_and_mac() {
    let mut s = parse(BOARDS).unwrap();
    s.set_board_ids("rack-2", Some(0x1234_abcd), None).unwrap();
    s.set_board_ids("pxe-1", None, Some([0xb8, 0x27, 0xeb, 1, 2, 3]))
        .unwrap();
    let c = |name: &str| s.clients.iter().find(|c| c.name == name).unwrap();
    assert_eq!(c("rack-2").serial, 0x1234_abcd);
    // The MAC it had is kept.
    assert_eq!(c("rack-2").mac, [0x02, 0x00, 0x9f, 0xfe, 0xfd, 0xf0]);
    assert_eq!(gets(c("rack-2"))[1], "1234abcd/cmdline.txt");
    assert_eq!(gets(c("pxe-1")), ["pxelinux.cfg/01-b8-27-eb-01-02-03"]);
    // The other boards keep theirs.
    assert_eq!(gets(c("rack-3"))[1], "9ffefdf1/cmdline.txt");
    let names: Vec<&str> = s.files.iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains(&"1234abcd/cmdline.txt"), "{names:?}");
    assert!(!names.contains(&"9ffefdf0/cmdline.txt"), "{names:?}");
    assert!(
        names.contains(&"pxelinux.cfg/01-b8-27-eb-01-02-03"),
        "{names:?}"
    );
    let e = s.set_board_ids("ghost", Some(1), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "scenarios/t.toml: set_board_ids: no client named \"ghost\""
    );
}

#[test]
fn pinned_seeds_load_and_mistakes_name_their_line() {
    let s = parse(&format!(
        "seeds = [17, 42, \"13135712601593035124\"]\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(s.seeds, Some(vec![17, 42, 13135712601593035124]));
    assert_eq!(parse(MINIMAL).unwrap().seeds, None);
    let cases = [
        (
            "seeds = []",
            "scenarios/t.toml:1: seeds = []: pin at least one seed",
        ),
        (
            "seeds = [3, 3]",
            "scenarios/t.toml:1: seeds: 3 is pinned twice",
        ),
        (
            "seeds = [-1]",
            "scenarios/t.toml:1: seeds: -1 is not a seed",
        ),
        (
            "seeds = [\"x\"]",
            "scenarios/t.toml:1: seeds: \"x\" is not a seed",
        ),
        (
            "seeds = [1.5]",
            "scenarios/t.toml:1: seeds: 1.5 is not a seed",
        ),
    ];
    for (line, expected) in cases {
        let e = error(&format!("{line}\n{MINIMAL}"));
        assert!(e.starts_with(expected), "{line}: {e}");
    }
    // On its own line, further down.
    let e = error(&format!(
        "name = \"x\"\nseeds = [\n  1,\n  1,\n]\n{MINIMAL}"
    ));
    assert!(
        e.starts_with("scenarios/t.toml:4: seeds: 1 is pinned twice"),
        "{e}"
    );
}

#[test]
fn an_absolute_packet_bound_and_the_random_plan_judge() {
    let s = parse(&format!("{MINIMAL}[expect]\nmax_packets = 40\n")).unwrap();
    assert_eq!(s.expect.max_packets, Some(40));
    assert_eq!(s.expect.judge, Judge::Scenario);
    let s = parse(&format!(
        "{MINIMAL}[expect]\nmax_packets = 40\njudge = \"random-plan\"\n"
    ))
    .unwrap();
    assert_eq!(s.expect.judge, Judge::RandomPlan);
    let e = error(&format!("{MINIMAL}[expect]\njudge = \"random-plan\"\n"));
    assert_eq!(
        e,
        "scenarios/t.toml:6: judge = \"random-plan\" needs max_packets, the plan's own datagram bound"
    );
    let e = error(&format!("{MINIMAL}[expect]\njudge = \"strict\"\n"));
    assert!(
        e.starts_with("scenarios/t.toml:7: unknown variant `strict`"),
        "{e}"
    );
}

#[test]
fn a_scenario_written_out_loads_back_the_same() {
    let text = r#"
name = "written"
description = "every kind of key"
seeds = [1, "18446744073709551615"]
[server]
write = "overwrite"
timeout = "300ms"
min_rto = "1s"
max_upload = 100000
create_dirs = true
[[files]]
name = "a/b.bin"
size = 100
seed = 3
[[files]]
name = "inline.txt"
content = "hi\n\"quoted\"\n"
[[files]]
name = "link"
symlink = "a/b.bin"
[[clients]]
name = "board"
profile = "u-boot"
count = 2
options = { blksize = 1024, windowsize = 4, timeout = 2, tsize = true }
retry_every = "1500us"
start = "2.5ms"
actions = [
  { get = "link" },
  { sleep = "1.000001s" },
  { put = "up-{serial}", size = 9, seed = 2, expect = "intact-or-6" },
  { put = "up2", content = "x", expect = "fails" },
  { get = "nope", expect = 1 },
]
[[clients]]
name = "pi"
profile = "rpi4-bootloader"
actions = [{ get = "inline.txt", probe = true }, { get = "inline.txt" }]
[faults.client_to_server]
loss = 0.1
burst = { enter = 0.01, lasts = ["1ms", "5ms"], loss = 0.5 }
copies = 2
duplicate = 0.3
[faults.server_to_client]
reorder = { fraction = 0.02, delay = ["1ms", "10ms"] }
latency = ["100us", "500us"]
[[faults.script]]
direction = "server_to_client"
packet = "DATA #3 "
nth = 2
fate = { outage = "2s" }
[[faults.script]]
direction = "client_to_server"
packet = "ACK"
fate = { delay = "5ms" }
[[events]]
at = "300ms"
partition = ["pi"]
[[events]]
at = "1s"
crash = "server"
[[events]]
at = "2s"
restart = "server"
[[events]]
at = "3s"
heal = []
[expect]
within = "60s"
max_packet_ratio = 1.5
server_idle = false
server_timeouts = 2
max_packets = 1000
"#;
    let normal = |mut s: Scenario| {
        s.path = PathBuf::new();
        s.source = None;
        for c in &mut s.clients {
            for a in &mut c.actions {
                a.line = 0;
            }
        }
        format!("{s:?}")
    };
    let s = parse(text).unwrap();
    let written = s.to_toml().unwrap();
    let back = parse(&written).unwrap_or_else(|e| panic!("{e}\n{written}"));
    assert_eq!(normal(back), normal(s), "{written}");
}

#[test]
fn durations_are_written_exactly() {
    for d in [
        Duration::ZERO,
        Duration::from_secs(3),
        Duration::from_millis(3103),
        Duration::from_micros(250),
        Duration::from_nanos(1_500),
        Duration::from_nanos(7_000_000_001),
    ] {
        let text = write::duration(d);
        assert_eq!(parse_duration(&text), Some(d), "{text}");
    }
}
