//! `tftplab serve --config FILE`: a TOML file holding serve's flags.
//!
//! Every key is a serve flag's long name with `_` for `-` (`max_blksize =
//! 1468` is `--max-blksize 1468`), so the file holds every flag there is
//! and nothing else: the keys are read off the command line's own
//! definition, and each value goes through the same parser as the flag.
//! The file becomes arguments placed before the command line's own; a
//! flag given on the command line replaces the file's value, all of it for
//! a list (`bind`, `refuse`), and an on/off flag can only be turned on
//! there. A key serve does not have, or a
//! value its flag refuses, is an error naming the file and the line.

use clap::CommandFactory;
use std::ffi::OsString;
use std::path::Path;

/// The serve flags a config file may set: every long flag but `--config`
/// and `--help`, as (key, takes a value).
fn serve_flags() -> Vec<(String, bool)> {
    let cli = super::args::Cli::command();
    let Some(serve) = cli.find_subcommand("serve") else {
        return Vec::new();
    };
    serve
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            (long != "config" && long != "help")
                .then(|| (long.replace('-', "_"), a.get_action().takes_values()))
        })
        .collect()
}

/// The 1-based line where `key` is set in `text`, if it can be found.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// The arguments `text` (the contents of `path`) stands for.
#[cfg(test)]
fn arguments(text: &str, path: &Path) -> Result<Vec<OsString>, String> {
    Ok(settings(text, path)?
        .into_iter()
        .flat_map(|(_, a)| a)
        .collect())
}

/// Each setting of `text` as its flag and the arguments it stands for.
fn settings(text: &str, path: &Path) -> Result<Vec<(String, Vec<OsString>)>, String> {
    let at = |key: &str| match line_of(text, key) {
        Some(n) => format!("{}:{n}", path.display()),
        None => path.display().to_string(),
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let first = e.message().lines().next().unwrap_or("invalid TOML").trim();
        match line {
            Some(n) => format!("{}:{n}: {first}", path.display()),
            None => format!("{}: {first}", path.display()),
        }
    })?;
    let flags = serve_flags();
    let mut args = Vec::new();
    for (key, value) in &table {
        let Some((_, takes_value)) = flags.iter().find(|(k, _)| k == key) else {
            return Err(format!(
                "{}: `{key}` is not a serve setting; the settings are serve's flags with _ for - \
                 (tftplab serve --help)",
                at(key)
            ));
        };
        let flag = format!("--{}", key.replace('_', "-"));
        let mut one = Vec::new();
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for v in values {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) if !takes_value => {
                    if *b {
                        one.push(OsString::from(&flag));
                    }
                    continue;
                }
                _ => {
                    let want = if *takes_value {
                        "a string or a number"
                    } else {
                        "true or false"
                    };
                    return Err(format!("{}: `{key}` takes {want}", at(key)));
                }
            };
            if !takes_value {
                return Err(format!("{}: `{key}` takes true or false", at(key)));
            }
            one.push(OsString::from(&flag));
            one.push(OsString::from(text));
        }
        // The flag's own parser judges the value, as on the command line.
        let mut probe: Vec<OsString> = ["tftplab", "serve", "--root", "."]
            .into_iter()
            .map(OsString::from)
            .collect();
        probe.extend(one.iter().cloned());
        if let Err(e) = super::args::Cli::command().try_get_matches_from(probe) {
            let why = e.to_string();
            let why = why
                .lines()
                .next()
                .unwrap_or("invalid value")
                .trim_start_matches("error: ");
            return Err(format!("{}: `{key}`: {why}", at(key)));
        }
        args.push((flag, one));
    }
    Ok(args)
}

/// The process's arguments with `serve --config FILE`'s settings put in
/// front of the command line's own, so those override them. Other
/// commands, and serve without `--config`, pass through unchanged.
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    if argv.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return Ok(argv);
    }
    let mut file = None;
    for (i, a) in argv.iter().enumerate().skip(2) {
        let Some(a) = a.to_str() else { continue };
        if a == "--" {
            break;
        }
        if let Some(f) = a.strip_prefix("--config=") {
            file = Some(OsString::from(f));
        } else if a == "--config" {
            file = argv.get(i + 1).cloned();
        }
    }
    let Some(file) = file else {
        return Ok(argv);
    };
    let path = Path::new(&file);
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let given = |flag: &str| {
        argv[2..].iter().filter_map(|a| a.to_str()).any(|a| {
            a == flag
                || a.strip_prefix(flag)
                    .is_some_and(|rest| rest.starts_with('='))
        })
    };
    let mut out = argv[..2].to_vec();
    for (flag, args) in settings(&text, path)? {
        if !given(&flag) {
            out.extend(args);
        }
    }
    out.extend(argv[2..].iter().cloned());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Result<Vec<String>, String> {
        arguments(text, Path::new("lab.toml"))
            .map(|v| v.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn keys_are_the_flags_and_values_go_through_their_parsers() {
        assert_eq!(
            args("root = \"/srv/tftp\"\nmax_blksize = 1468\ncreate_dirs = true\nbackslash = false\ngrace = 2.5\n")
                .unwrap(),
            // In the order of the keys' names: each flag is given once.
            [
                "--create-dirs", "--grace", "2.5", "--max-blksize", "1468", "--root", "/srv/tftp"
            ]
        );
        assert_eq!(
            args("\n\nmax_blksize = 7\n").unwrap_err(),
            "lab.toml:3: `max_blksize`: invalid value '7' for '--max-blksize <N>': 7 is not in 8..=65464"
        );
        assert_eq!(
            args("root = \"/srv\"\nmax_blocksize = 1468\n").unwrap_err(),
            "lab.toml:2: `max_blocksize` is not a serve setting; the settings are serve's flags \
             with _ for - (tftplab serve --help)"
        );
        assert_eq!(
            args("create_dirs = \"yes\"\n").unwrap_err(),
            "lab.toml:1: `create_dirs` takes true or false"
        );
        assert!(args("root = \n").unwrap_err().starts_with("lab.toml:1: "));
    }

    #[test]
    fn the_command_line_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lab.toml");
        std::fs::write(
            &file,
            "root = \"/srv/tftp\"\nwrite = \"create\"\nbind = [\"10.0.0.1:69\", \"10.1.0.1:69\"]\n",
        )
        .unwrap();
        let argv: Vec<OsString> = ["tftplab", "serve", "--config"]
            .into_iter()
            .map(OsString::from)
            .chain([file.clone().into_os_string()])
            .chain(["--write", "overwrite", "--bind=127.0.0.1:6969"].map(OsString::from))
            .collect();
        let expanded = expand(argv).unwrap();
        let cli = <super::super::args::Cli as clap::Parser>::try_parse_from(expanded).unwrap();
        let super::super::args::Command::Serve(serve) = cli.command else {
            panic!("serve");
        };
        assert_eq!(serve.root, Path::new("/srv/tftp"));
        assert!(matches!(
            serve.write,
            super::super::args::WriteArg::Overwrite
        ));
        // A list on the command line replaces the file's whole list.
        assert_eq!(serve.bind, ["127.0.0.1:6969".parse().unwrap()]);
    }

    /// The shipped example sets every serve flag there is, each to a value
    /// its flag takes.
    #[test]
    fn the_example_config_holds_every_setting() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tftplab.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        arguments(&text, &path).unwrap();
        for (key, _) in serve_flags() {
            let listed = text
                .lines()
                .map(|l| l.trim_start().trim_start_matches('#').trim_start())
                .any(|l| {
                    l.strip_prefix(&key)
                        .is_some_and(|r| r.trim_start().starts_with('='))
                });
            assert!(listed, "examples/tftplab.toml does not show `{key}`");
        }
    }
}
