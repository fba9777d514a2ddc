//! `scenarios/README.md`, the scenario reference, cannot rot: every key the
//! loader accepts is in its tables and every key in its tables is
//! accepted (the loader itself says which keys it takes), every `toml`
//! block in it loads, and the walk-through's scenario is the file it
//! names and passes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tftplab_sim::lab::scenario::Scenario;
use tftplab_sim::{run, SimOptions};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn reference() -> String {
    std::fs::read_to_string(repo("scenarios/README.md")).expect("scenarios/README.md")
}

/// A scenario that loads; probes change one table of it.
const BASE: &str = "[[files]]\nname = \"f\"\ncontent = \"x\"\n\n\
                    [[clients]]\nname = \"c\"\nprofile = \"legacy\"\nactions = [{ get = \"f\" }]\n";

const PROBE: &str = "zz_not_a_key";

/// The loader's message for `text`, which must not load.
fn load_error(text: &str) -> String {
    match Scenario::parse(text, Path::new("probe.toml")) {
        Ok(_) => panic!("the probe loaded, so it asks the loader nothing:\n{text}"),
        Err(e) => e.message,
    }
}

/// The names serde lists after "expected" in an unknown-field or
/// unknown-variant message: the keys (or values) the loader accepts there.
fn accepted(text: &str) -> BTreeSet<String> {
    let message = load_error(text);
    let rest = match message.split_once(&format!("`{PROBE}`, expected ")) {
        Some((_, rest)) if message.starts_with("unknown ") => rest,
        _ => panic!("not an unknown-key message, so the probe is broken: {message}\n{text}"),
    };
    let names: BTreeSet<String> = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!names.is_empty(), "no names in {message:?}");
    names
}

/// The body of the section under the heading that is exactly `heading`,
/// up to the next heading (headings inside code blocks do not count).
fn section<'a>(doc: &'a str, heading: &str) -> Vec<&'a str> {
    let mut in_code = false;
    let mut lines = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') {
            if inside {
                break;
            }
            inside = line == heading;
            continue;
        }
        if inside {
            lines.push(line);
        }
    }
    assert!(
        !lines.is_empty(),
        "no section {heading:?} in scenarios/README.md"
    );
    lines
}

/// The keys a section documents: the first cell of each table row, in
/// backticks (`` | `key` | ... ``), header and rule rows aside.
fn documented(doc: &str, heading: &str) -> BTreeSet<String> {
    section(doc, heading)
        .iter()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// Each table the loader reads, how to ask it for its keys, and the
/// heading of its section in the reference.
fn tables() -> Vec<(&'static str, String)> {
    let client = |extra: &str| {
        BASE.replace(
            "profile = \"legacy\"",
            &format!("profile = \"legacy\"\n{extra}"),
        )
    };
    let script = "[[faults.script]]\ndirection = \"client_to_server\"\npacket = \"RRQ\"\n";
    vec![
        ("## Top level", format!("{PROBE} = 1\n{BASE}")),
        ("## `[server]`", format!("{BASE}[server]\n{PROBE} = 1\n")),
        (
            "## `[[files]]`",
            BASE.replace("content = \"x\"", &format!("content = \"x\"\n{PROBE} = 1")),
        ),
        ("## `[[clients]]`", client(&format!("{PROBE} = 1"))),
        (
            "### `options`",
            client(&format!("options = {{ {PROBE} = 1 }}")),
        ),
        (
            "### Actions",
            BASE.replace(
                "{ get = \"f\" }",
                &format!("{{ get = \"f\", {PROBE} = 1 }}"),
            ),
        ),
        ("## `[faults]`", format!("{BASE}[faults]\n{PROBE} = 1\n")),
        (
            "### Each direction",
            format!("{BASE}[faults.client_to_server]\n{PROBE} = 1\n"),
        ),
        (
            "#### `burst`",
            format!("{BASE}[faults.server_to_client]\nburst = {{ {PROBE} = 1 }}\n"),
        ),
        (
            "#### `reorder`",
            format!("{BASE}[faults.server_to_client]\nreorder = {{ {PROBE} = 1 }}\n"),
        ),
        (
            "### `[[faults.script]]`",
            format!("{BASE}[[faults.script]]\n{PROBE} = 1\n"),
        ),
        ("#### Fates", format!("{BASE}{script}fate = \"{PROBE}\"\n")),
        (
            "## `[[events]]`",
            format!("{BASE}[[events]]\n{PROBE} = 1\n"),
        ),
        ("## `[expect]`", format!("{BASE}[expect]\n{PROBE} = 1\n")),
    ]
}

#[test]
fn every_key_the_loader_accepts_is_documented_and_no_other() {
    let doc = reference();
    let mut problems = Vec::new();
    for (heading, probe) in tables() {
        let keys = accepted(&probe);
        let documented = documented(&doc, heading);
        for key in keys.difference(&documented) {
            problems.push(format!(
                "`{key}` is accepted but not documented under {heading:?}"
            ));
        }
        for key in documented.difference(&keys) {
            problems.push(format!(
                "`{key}` is documented under {heading:?} but the loader does not accept it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "scenarios/README.md is out of date:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_value_of_a_closed_set_is_documented() {
    let doc = reference();
    let script = "[[faults.script]]\npacket = \"RRQ\"\nfate = \"drop\"\n";
    let sets = [
        (
            "## `[server]`",
            accepted(&format!("{BASE}[server]\nwrite = \"{PROBE}\"\n")),
        ),
        (
            "### `[[faults.script]]`",
            accepted(&format!("{BASE}{script}direction = \"{PROBE}\"\n")),
        ),
        (
            "## `[expect]`",
            accepted(&format!("{BASE}[expect]\njudge = \"{PROBE}\"\n")),
        ),
    ];
    // The profile names are the loader's own message, not serde's.
    let message = load_error(&BASE.replace("\"legacy\"", &format!("\"{PROBE}\"")));
    let profiles: BTreeSet<String> = message
        .split_once("expected one of ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("profile message changed: {message}"))
        .split(", ")
        .map(str::to_owned)
        .collect();
    // So are the expect values.
    let message = load_error(&BASE.replace(
        "{ get = \"f\" }",
        &format!("{{ get = \"f\", expect = \"{PROBE}\" }}"),
    ));
    let outcomes: BTreeSet<String> = message
        .split('"')
        .skip(3)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(
        outcomes.contains("fails"),
        "expect message changed: {message}"
    );
    let mut missing = Vec::new();
    for (heading, values) in sets
        .into_iter()
        .chain([("#### Profiles", profiles), ("#### `expect`", outcomes)])
    {
        let text = section(&doc, heading).join("\n");
        for v in values {
            if !text.contains(&format!("`{v}`")) && !text.contains(&format!("\"{v}\"")) {
                missing.push(format!("{v:?} under {heading:?}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in scenarios/README.md: {missing:?}"
    );
}

/// The `toml` blocks of the reference.
fn toml_blocks(doc: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        let fence = line.trim_start();
        match &mut current {
            None if fence == "```toml" => current = Some(String::new()),
            Some(_) if fence == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_toml_block_in_the_reference_loads() {
    let blocks = toml_blocks(&reference());
    assert!(blocks.len() >= 10, "{} toml blocks", blocks.len());
    let path = repo("scenarios/README.md");
    for block in blocks {
        // A block with clients is a whole scenario; any other is a part of
        // one, and must load in front of a minimal scenario.
        let text = if block.contains("[[clients]]") {
            block.clone()
        } else {
            format!("{block}\n{BASE}")
        };
        if let Err(e) = Scenario::parse(&text, &path) {
            panic!("a toml block in scenarios/README.md does not load: {e}\n{block}");
        }
    }
}

#[test]
fn the_walk_through_is_its_file_and_passes() {
    let path = repo("scenarios/examples/first-boot.toml");
    let file = std::fs::read_to_string(&path).expect("the walk-through's scenario");
    assert!(
        toml_blocks(&reference()).contains(&file),
        "scenarios/README.md's walk-through does not show {} as it is",
        path.display()
    );
    let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    for seed in 1..=3 {
        let r = run(&scenario, seed, SimOptions::default());
        assert!(
            r.passed(),
            "seed {seed}: {:?} {:?}",
            r.sim_error,
            r.verdict.failures
        );
    }
}
