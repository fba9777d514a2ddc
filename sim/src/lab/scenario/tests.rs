//! Loading scenario files: good ones parse to what they say, bad ones are
//! rejected with the file, the line and what is wrong.

use super::*;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(text, Path::new("scenarios/t.toml"))
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const MINIMAL: &str = r#"
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
    let twice = format!("{MINIMAL}{MINIMAL}");
    assert_eq!(
        error(&twice),
        "scenarios/t.toml:7: two clients are named \"c\""
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
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 2);
}
