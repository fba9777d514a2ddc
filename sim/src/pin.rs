//! Regression files: `tftplab-sim pin FILE --seed S` keeps a run (a failure
//! a sweep found, or a seed worth watching) as a scenario file of its own,
//! `scenarios/regressions/<name>-seed<S>.toml`. The file is the original's
//! text as written, comments and layout kept (edited with `toml_edit`, not
//! by string surgery), with `name = "<name>-seed<S>"` and `seeds = [S]`
//! set, file paths made to work from the new directory, and a comment on
//! top: when and how it was made, what the run did then, and how to replay
//! it. The main job and `cargo test` run every file in
//! `scenarios/regressions/` with its pinned seeds.
//!
//! [`pinned`] makes the text; `tftplab-sim pin` runs the scenario and
//! writes it.

use crate::lab::scenario::{Scenario, MAX_INTEGER_SEED};
use crate::SimRun;
use std::path::{Component, Path, PathBuf};
use toml_edit::{DocumentMut, Item, Value};

/// Where `pin` writes by default.
pub const DEFAULT_DIR: &str = "scenarios/regressions";

/// The name a scenario's regression file for `seed` runs under, and its
/// file's stem: `<name>-seed<S>` (a pinned file pinned again keeps it).
pub fn pinned_name(scenario: &Scenario, seed: u64) -> String {
    let suffix = format!("-seed{seed}");
    if scenario.name.ends_with(&suffix) {
        scenario.name.clone()
    } else {
        format!("{}{suffix}", scenario.name)
    }
}

/// A regression file, ready to be written.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub path: PathBuf,
    pub text: String,
    /// The name it runs under (`<name>-seed<S>`).
    pub name: String,
}

/// The regression file of `scenario` with `seed`, to be written into
/// `dir`: `run` is that run (its verdict goes into the comment), `command`
/// the command line that pins it and `date` the day (`YYYY-MM-DD`).
pub fn pinned(
    scenario: &Scenario,
    seed: u64,
    run: &SimRun,
    dir: &Path,
    command: &str,
    date: &str,
) -> Result<Pinned, String> {
    let source = scenario.source.as_deref().ok_or_else(|| {
        format!(
            "{}: a scenario built in code has no text to pin",
            scenario.name
        )
    })?;
    let mut doc: DocumentMut = source
        .parse()
        .map_err(|e| format!("{}: {e}", scenario.path.display()))?;
    let name = pinned_name(scenario, seed);
    set(&mut doc, "name", Value::from(name.as_str()));
    let pinned_seed = if seed <= MAX_INTEGER_SEED {
        Value::from(seed as i64)
    } else {
        Value::from(seed.to_string())
    };
    set(
        &mut doc,
        "seeds",
        Value::Array(std::iter::once(pinned_seed).collect()),
    );
    // `name` and `seeds` first, everything else where it was.
    let rank = |k: &str| match k {
        "name" => 0,
        "seeds" => 1,
        _ => 2,
    };
    doc.as_table_mut()
        .sort_values_by(|a, _, b, _| rank(a.get()).cmp(&rank(b.get())));
    let from = scenario.path.parent().unwrap_or(Path::new(""));
    rewrite_paths(&mut doc, from, dir)?;
    let path = dir.join(format!("{name}.toml"));
    let mut header = format!(
        "# Regression file: scenario {:?} ({}) with seed {seed} pinned,\n\
         # made on {date} by\n#   {command}\n",
        scenario.name,
        scenario.path.display()
    );
    if run.passed() {
        header.push_str("# When pinned, the run passed: this file keeps it passing.\n");
    } else {
        header.push_str("# When pinned, the run failed:\n");
        for f in run.failures() {
            let at = match (f.at, f.event) {
                (Some(at), Some(e)) => {
                    format!(" (at {:.3}s, trace line {})", at.as_secs_f64(), e + 1)
                }
                (Some(at), None) => format!(" (at {:.3}s)", at.as_secs_f64()),
                _ => String::new(),
            };
            for (i, line) in f.text.lines().enumerate() {
                let line = if i == 0 {
                    format!("{line}{at}")
                } else {
                    line.to_string()
                };
                header.push_str(&format!("#   {line}\n"));
            }
        }
    }
    header.push_str(&format!(
        "# Replay: cargo run -p tftplab-sim --release -- run {} --seed {seed} --trace {name}-{seed}.trace\n\n",
        path.display()
    ));
    let text = header + &doc.to_string();
    // The file must load where it goes, as the same scenario.
    let loaded = Scenario::parse(&text, &path)
        .map_err(|e| format!("the pinned file would not load ({e}); nothing written"))?;
    if loaded.seeds.as_deref() != Some(&[seed][..]) || loaded.name != name {
        return Err(
            "the pinned file would not load with its name and seed; nothing written".into(),
        );
    }
    Ok(Pinned { path, text, name })
}

/// Sets a root key, keeping the old value's surroundings (its trailing
/// comment) if there was one.
fn set(doc: &mut DocumentMut, key: &str, mut value: Value) {
    if let Some(Item::Value(old)) = doc.get(key) {
        *value.decor_mut() = old.decor().clone();
    }
    doc[key] = Item::Value(value);
}

/// Every `path` of a `[[files]]` entry is relative to the scenario file's
/// directory: made relative to `to` instead (an absolute one stays).
fn rewrite_paths(doc: &mut DocumentMut, from: &Path, to: &Path) -> Result<(), String> {
    let rewrite = |v: &mut Value| -> Result<(), String> {
        let Value::String(s) = v else { return Ok(()) };
        let p = Path::new(s.value());
        if p.is_absolute() {
            return Ok(());
        }
        let moved = relative_to(&from.join(p), to)?;
        let moved = moved
            .to_str()
            .ok_or_else(|| format!("{}: not UTF-8", moved.display()))?
            .to_string();
        let decor = v.decor().clone();
        *v = Value::from(moved);
        *v.decor_mut() = decor;
        Ok(())
    };
    match doc.get_mut("files") {
        Some(Item::ArrayOfTables(files)) => {
            for t in files.iter_mut() {
                if let Some(Item::Value(v)) = t.get_mut("path") {
                    rewrite(v)?;
                }
            }
        }
        Some(Item::Value(Value::Array(files))) => {
            for f in files.iter_mut() {
                if let Value::InlineTable(t) = f {
                    if let Some(v) = t.get_mut("path") {
                        rewrite(v)?;
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// `target` as a path relative to the directory `dir`: both made
/// absolute, `..` resolved by its words, then each resolved through the
/// file system as far as it exists (so symlinks on either side match).
fn relative_to(target: &Path, dir: &Path) -> Result<PathBuf, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    let real = |p: &Path| {
        let p = lexical(&cwd.join(p));
        for up in p.ancestors() {
            if let (Ok(c), Ok(rest)) = (up.canonicalize(), p.strip_prefix(up)) {
                return c.join(rest);
            }
        }
        p
    };
    let (target, dir) = (real(target), real(dir));
    let t: Vec<Component> = target.components().collect();
    let d: Vec<Component> = dir.components().collect();
    let common = t.iter().zip(&d).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    Ok(out)
}

/// `p` with `.` dropped and each `..` taking the word before it.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_moves_with_the_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let a = root.path().join("scenarios");
        let b = a.join("regressions");
        std::fs::create_dir_all(&b).expect("dirs");
        assert_eq!(
            relative_to(&a.join("img/x.bin"), &b).expect("relative"),
            PathBuf::from("../img/x.bin")
        );
        assert_eq!(
            relative_to(&a.join("../up/x.bin"), &b).expect("relative"),
            PathBuf::from("../../up/x.bin")
        );
    }
}
