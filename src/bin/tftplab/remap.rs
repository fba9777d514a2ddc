//! `serve --remap FILE`: file-name rewriting in tftpd-hpa's rule language
//! (its `--map-file`, `tftpd/remap.c`), so a lab's existing rule files work.
//!
//! One rule per line: `FLAGS REGEX [PATTERN]`, fields split by unescaped
//! white space, `#` to the end of the line a comment. Rules run in order on
//! the requested name; a rule's regex may match anywhere in it, and only
//! the matched part is replaced.
//!
//! Flags: `r` replace the match with PATTERN; `g` with `r`, repeat while
//! the regex still matches the new name; `i` ignore case; `e` stop after
//! this rule if it matched; `s` start again from the first rule if it
//! matched; `a` refuse the request if it matched (ERROR 2, with PATTERN as
//! the message if given); `~` the rule matches when the regex does not (not
//! with `r`); `G` only for reads, `P` only for writes; `4` only for IPv4
//! clients, `6` only for IPv6 ones.
//!
//! In PATTERN: `\0` the whole match, `\1`-`\9` its groups, `\i` the
//! client's address, `\x` it in hex (`C0A80A05`, as pxelinux names
//! files), `\U` / `\L` upper / lower case from here, `\E` neither; any
//! other `\c` is `c`.
//!
//! Differences from tftpd-hpa: regexes are the `regex` crate's (leftmost-
//! first alternation, not POSIX leftmost-longest; no backreferences, as in
//! POSIX ERE); `s` starts again at the first rule (tftpd-hpa's loop skips
//! it); `4` and `6` are tftplab's; a rule set that has not finished after
//! 1024 steps (an `rg` rule that always matches, say) refuses the request
//! instead of looping.

use regex::{Regex, RegexBuilder};
use std::net::IpAddr;
use tftplab::options::Direction;

/// One rule, as parsed.
#[derive(Debug)]
pub struct Rule {
    /// Its line in the file, for the log.
    pub line: usize,
    pub flags: String,
    regex: Regex,
    pattern: String,
    rewrite: bool,
    global: bool,
    exit: bool,
    restart: bool,
    abort: bool,
    inverse: bool,
    only: Option<Direction>,
    family: Option<u8>,
}

/// What the rules made of a name.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The name to serve, and the lines of the rules that rewrote it.
    Name(String, Vec<usize>),
    /// Refused by the rule on this line, with this message for the client.
    Refused { line: usize, message: String },
}

const MAX_STEPS: usize = 1024;

/// Splits off the next field: leading white space skipped, up to the
/// first unescaped white space or `#`, escapes kept for the regex.
fn field(rest: &mut &str) -> Option<String> {
    let s = rest.trim_start();
    let mut out = String::new();
    let mut escaped = false;
    let mut end = s.len();
    for (i, c) in s.char_indices() {
        if !escaped && (c.is_whitespace() || c == '#') {
            end = i;
            break;
        }
        escaped = !escaped && c == '\\';
        out.push(c);
    }
    *rest = &s[end..];
    (!out.is_empty()).then_some(out)
}

/// Parses a rule file; an error names the line and what is wrong.
pub fn parse(text: &str, path: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let at = |what: String| format!("{path}:{line}: {what}");
        let mut rest = raw;
        let Some(flags) = field(&mut rest) else {
            continue;
        };
        if flags.starts_with('#') {
            continue;
        }
        let (mut rule_flags, mut icase) = ([false; 7], false);
        let (mut only, mut family) = (None, None);
        for c in flags.chars() {
            match c {
                'r' => rule_flags[0] = true,
                'g' => rule_flags[1] = true,
                'e' => rule_flags[2] = true,
                's' => rule_flags[3] = true,
                'a' => rule_flags[4] = true,
                '~' => rule_flags[5] = true,
                'i' => icase = true,
                'G' => only = Some(Direction::Read),
                'P' => only = Some(Direction::Write),
                '4' => family = Some(4),
                '6' => family = Some(6),
                other => {
                    return Err(at(format!(
                        "`{other}` is not a rule flag (r g e s a i ~ G P 4 6)"
                    )))
                }
            }
        }
        let [rewrite, global, exit, restart, abort, inverse, _] = rule_flags;
        if rewrite && inverse {
            return Err(at("an `r` rule cannot be inverted with `~`".into()));
        }
        let Some(regex) = field(&mut rest) else {
            return Err(at("a rule needs a regex after its flags".into()));
        };
        let regex = RegexBuilder::new(&regex)
            .case_insensitive(icase)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| at(format!("bad regex: {}", e.to_string().replace('\n', " "))))?;
        let pattern = field(&mut rest).unwrap_or_default();
        if field(&mut rest).is_some() {
            return Err(at(
                "more than FLAGS REGEX PATTERN; escape white space in the pattern with \\".into(),
            ));
        }
        rules.push(Rule {
            line,
            flags,
            regex,
            pattern,
            rewrite,
            global: global && rewrite,
            exit,
            restart,
            abort,
            inverse,
            only,
            family,
        });
    }
    Ok(rules)
}

/// `\x`: the address in upper-case hex, 8 digits for IPv4, 32 for IPv6.
fn hex(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.octets().iter().map(|b| format!("{b:02X}")).collect(),
        IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02X}")).collect(),
    }
}

/// `pattern` expanded for this match (`groups` absent for an inverted
/// rule, whose regex did not match).
fn expand(pattern: &str, groups: Option<&regex::Captures<'_>>, client: IpAddr) -> String {
    #[derive(Clone, Copy)]
    enum Case {
        Keep,
        Upper,
        Lower,
    }
    let mut case = Case::Keep;
    let mut out = String::new();
    let push = |out: &mut String, s: &str, case: Case| match case {
        Case::Keep => out.push_str(s),
        Case::Upper => out.push_str(&s.to_uppercase()),
        Case::Lower => out.push_str(&s.to_lowercase()),
    };
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            push(&mut out, c.encode_utf8(&mut [0; 4]), case);
            continue;
        }
        let Some(m) = chars.next() else {
            push(&mut out, "\\", case);
            break;
        };
        match m {
            '0'..='9' => {
                let n = m as usize - '0' as usize;
                if let Some(g) = groups.and_then(|g| g.get(n)) {
                    push(&mut out, g.as_str(), case);
                }
            }
            'U' => case = Case::Upper,
            'L' => case = Case::Lower,
            'E' => case = Case::Keep,
            'i' => push(&mut out, &client.to_string(), case),
            'x' => push(&mut out, &hex(client), case),
            other => push(&mut out, other.encode_utf8(&mut [0; 4]), case),
        }
    }
    out
}

/// Runs `rules` on `name`, requested by `client` for `direction`.
pub fn apply(rules: &[Rule], name: &str, client: IpAddr, direction: Direction) -> Outcome {
    // An IPv4-mapped IPv6 client is an IPv4 one.
    let client = client.to_canonical();
    let family = if client.is_ipv4() { 4 } else { 6 };
    let mut current = name.to_string();
    let mut applied = Vec::new();
    let mut steps = 0;
    let mut i = 0;
    while i < rules.len() {
        let rule = &rules[i];
        i += 1;
        if rule.only.is_some_and(|d| d != direction) || rule.family.is_some_and(|f| f != family) {
            continue;
        }
        let mut matched = false;
        loop {
            steps += 1;
            if steps > MAX_STEPS {
                return Outcome::Refused {
                    line: rule.line,
                    message: "Remap table failure".into(),
                };
            }
            let caps = rule.regex.captures(&current);
            if caps.is_some() == rule.inverse {
                break;
            }
            matched = true;
            let groups = if rule.inverse { None } else { caps.as_ref() };
            if rule.abort {
                let message = if rule.pattern.is_empty() {
                    "Access violation".to_string()
                } else {
                    expand(&rule.pattern, groups, client)
                };
                return Outcome::Refused {
                    line: rule.line,
                    message,
                };
            }
            if rule.rewrite {
                if let Some(whole) = groups.and_then(|g| g.get(0)) {
                    let replaced = expand(&rule.pattern, groups, client);
                    current = format!(
                        "{}{replaced}{}",
                        &current[..whole.start()],
                        &current[whole.end()..]
                    );
                    applied.push(rule.line);
                }
            }
            if !rule.global {
                break;
            }
        }
        if matched {
            if rule.exit {
                break;
            }
            if rule.restart {
                i = 0;
            }
        }
    }
    Outcome::Name(current, applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rules: &str, name: &str) -> Outcome {
        let rules = parse(rules, "map").unwrap();
        apply(
            &rules,
            name,
            "192.168.10.5".parse().unwrap(),
            Direction::Read,
        )
    }

    fn name(rules: &str, name: &str) -> String {
        match run(rules, name) {
            Outcome::Name(n, _) => n,
            other => panic!("{other:?}"),
        }
    }

    /// The examples of tftpd-hpa's manual page and of common lab maps.
    #[test]
    fn tftpd_hpa_style_rules_rewrite_as_documented() {
        // Windows clients: no drive letter, backslashes to slashes.
        assert_eq!(name("ri ^[a-z]:", "C:\\x"), "\\x");
        // Windows clients: backslashes to slashes, everywhere.
        assert_eq!(name("rg \\\\ /", "boot\\pxe\\x.0"), "boot/pxe/x.0");
        // A leading slash is relative to the root: strip it.
        assert_eq!(name("r ^/ ", "/tftpboot/x"), "tftpboot/x");
        // Case folding with \L, and groups.
        assert_eq!(name("r ^(.*)$ \\L\\1", "PXELINUX.0"), "pxelinux.0");
        // The client's address, plain and in hex (pxelinux's file names).
        assert_eq!(name("r ^ \\i/", "start4.elf"), "192.168.10.5/start4.elf");
        assert_eq!(
            name("r ^cfg$ pxelinux.cfg/\\x", "cfg"),
            "pxelinux.cfg/C0A80A05"
        );
        // An rpi4's <serial>/start4.elf from one shared directory.
        assert_eq!(
            name(
                "r ^[0-9a-f]{8}/(start4\\.elf|fixup4\\.dat)$ firmware/\\1",
                "9ffefdef/start4.elf"
            ),
            "firmware/start4.elf"
        );
        // Strip a pxelinux.cfg/ prefix, then stop.
        let rules = "re ^pxelinux\\.cfg/ \nr ^ never/";
        assert_eq!(name(rules, "pxelinux.cfg/default"), "default");
        assert_eq!(name(rules, "x"), "never/x");
    }

    #[test]
    fn abort_inverse_modes_and_restart() {
        // Refuse anything under private/, with a message of its own.
        assert_eq!(
            run("a ^private/ No\\ such\\ luck", "private/key"),
            Outcome::Refused {
                line: 1,
                message: "No such luck".into()
            }
        );
        assert_eq!(
            run("a ^private/", "private/key"),
            Outcome::Refused {
                line: 1,
                message: "Access violation".into()
            }
        );
        // `~`: refuse anything that is not under boot/.
        assert!(matches!(run("a~ ^boot/", "etc/x"), Outcome::Refused { .. }));
        assert_eq!(name("a~ ^boot/", "boot/x"), "boot/x");
        // G applies to reads only.
        let rules = parse("rP ^ uploads/", "map").unwrap();
        let ip = "10.0.0.1".parse().unwrap();
        assert_eq!(
            apply(&rules, "x", ip, Direction::Read),
            Outcome::Name("x".into(), vec![])
        );
        assert_eq!(
            apply(&rules, "x", ip, Direction::Write),
            Outcome::Name("uploads/x".into(), vec![1])
        );
        // 6: IPv6 clients only; an IPv4-mapped client is IPv4.
        let rules = parse("r6 ^ v6/", "map").unwrap();
        let mapped = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            apply(&rules, "x", mapped, Direction::Read),
            Outcome::Name("x".into(), vec![])
        );
        // s: start over once the rule matched.
        assert_eq!(name("r ^b a\nrs ^c b", "c"), "a");
        // A rule set that never ends is refused, not looped on.
        assert!(matches!(run("rg x x", "x"), Outcome::Refused { .. }));
    }

    /// The README's example rules do what the README says.
    #[test]
    fn the_readme_example_rules_work() {
        let readme = include_str!("../../../README.md");
        let after = &readme[readme.find("**Remapping.**").unwrap()..];
        let block = &after[after.find("```text\n").unwrap() + 8..];
        let block = &block[..block.find("```").unwrap()];
        let rules = parse(block, "README.md").unwrap();
        let ip = "10.0.0.1".parse().unwrap();
        let got = |n: &str| apply(&rules, n, ip, Direction::Read);
        assert!(
            matches!(got("9ffefdef/start4.elf"), Outcome::Name(n, _) if n == "firmware/start4.elf")
        );
        assert!(matches!(got("boot\\pxelinux.0"), Outcome::Name(n, _) if n == "boot/pxelinux.0"));
        assert!(
            matches!(got("keys.pvt"), Outcome::Refused { message, .. } if message == "No private files")
        );
    }

    #[test]
    fn bad_rules_name_their_line() {
        assert_eq!(
            parse("# ok\nrq ^a b\n", "map").unwrap_err(),
            "map:2: `q` is not a rule flag (r g e s a i ~ G P 4 6)"
        );
        assert!(parse("r ^(a b", "map")
            .unwrap_err()
            .starts_with("map:1: bad regex: "));
        assert_eq!(
            parse("r~ ^a b", "map").unwrap_err(),
            "map:1: an `r` rule cannot be inverted with `~`"
        );
        assert_eq!(
            parse("r\n", "map").unwrap_err(),
            "map:1: a rule needs a regex after its flags"
        );
        assert!(parse("r a b c", "map")
            .unwrap_err()
            .starts_with("map:1: more than"));
    }
}
