//! Writing a scenario back out as a scenario file: what a generated fault
//! plan becomes when it is kept ([`crate::plans`]). The text loads to the
//! same scenario (a test checks it on random plans): every board written
//! out with its own name, serial number and MAC (no `count`, no
//! variables), every timer explicit, every duration exact.

use super::{
    ActionKind, ClientSpec, Expectations, FileContent, Judge, Outcome, Scenario, ServerSpec,
    TimedEventKind, WriteSpec, MAX_INTEGER_SEED,
};
use crate::lab::faults::{Burst, DelayRange, Direction, LinkFaults, ScriptFate, ScriptRule};
use std::time::Duration;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

impl Scenario {
    /// The scenario as scenario-file text, which [`Scenario::parse`] reads
    /// back to the same scenario (its `path`, `source` and the actions'
    /// line numbers aside). `Err` names what a file cannot say: inline
    /// content that is not UTF-8, an upload of a file read from a path, a
    /// name with `{` in it, a number above TOML's largest integer.
    pub fn to_toml(&self) -> Result<String, String> {
        let mut doc = DocumentMut::new();
        doc["name"] = Item::Value(self.name.as_str().into());
        if !self.description.is_empty() {
            doc["description"] = Item::Value(self.description.as_str().into());
        }
        if let Some(seeds) = &self.seeds {
            doc["seeds"] = Item::Value(Value::Array(seeds.iter().map(|&s| seed(s)).collect()));
        }
        let server = server(&self.server)?;
        if !server.is_empty() {
            doc["server"] = Item::Table(server);
        }
        if !self.files.is_empty() {
            let mut files = ArrayOfTables::new();
            for f in &self.files {
                let mut t = Table::new();
                t["name"] = Item::Value(plain_name(&f.name)?.into());
                match &f.content {
                    FileContent::Inline(bytes) => {
                        t["content"] = Item::Value(utf8(bytes, &f.name)?.into());
                    }
                    FileContent::Generated { size, seed } => {
                        t["size"] = Item::Value(int(*size, "a file's size")?);
                        t["seed"] = Item::Value(int(*seed, "a file's seed")?);
                    }
                    FileContent::Path(p) => {
                        let p = p
                            .to_str()
                            .ok_or_else(|| format!("file {:?}: its path is not UTF-8", f.name))?;
                        t["path"] = Item::Value(p.into());
                    }
                    FileContent::Symlink(target) => {
                        t["symlink"] = Item::Value(target.as_str().into());
                    }
                }
                files.push(t);
            }
            doc["files"] = Item::ArrayOfTables(files);
        }
        let mut clients = ArrayOfTables::new();
        for c in &self.clients {
            clients.push(client(c)?);
        }
        doc["clients"] = Item::ArrayOfTables(clients);
        let mut faults = Table::new();
        faults.set_implicit(true);
        for (key, link) in [
            ("client_to_server", &self.faults.client_to_server),
            ("server_to_client", &self.faults.server_to_client),
        ] {
            if *link != LinkFaults::default() {
                faults[key] = Item::Table(link_faults(link));
            }
        }
        if !self.faults.script.is_empty() {
            let mut script = ArrayOfTables::new();
            for r in &self.faults.script {
                script.push(script_rule(r));
            }
            faults["script"] = Item::ArrayOfTables(script);
        }
        if !faults.is_empty() {
            doc["faults"] = Item::Table(faults);
        }
        if !self.events.is_empty() {
            let mut events = ArrayOfTables::new();
            for e in &self.events {
                let mut t = Table::new();
                t["at"] = Item::Value(duration(e.at).into());
                let names = |n: &Vec<String>| Value::Array(n.iter().map(String::as_str).collect());
                match &e.kind {
                    TimedEventKind::Partition(n) => t["partition"] = Item::Value(names(n)),
                    TimedEventKind::Heal(n) => t["heal"] = Item::Value(names(n)),
                    TimedEventKind::Crash => t["crash"] = Item::Value("server".into()),
                    TimedEventKind::Restart => t["restart"] = Item::Value("server".into()),
                }
                events.push(t);
            }
            doc["events"] = Item::ArrayOfTables(events);
        }
        doc["expect"] = Item::Table(expect(&self.expect)?);
        Ok(doc.to_string())
    }
}

/// A duration as the loader reads it back exactly: in the largest unit
/// that holds it whole (`"3s"`, `"3103ms"`, `"250us"`), nanoseconds as
/// decimals of a microsecond.
pub fn duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", ns / 1_000)
    } else {
        format!("{}.{:03}us", ns / 1_000, ns % 1_000)
    }
}

fn range(r: DelayRange) -> Value {
    Value::Array(Array::from_iter([duration(r.min), duration(r.max)]))
}

/// A seed: an integer where TOML has one, else a string.
fn seed(s: u64) -> Value {
    if s <= MAX_INTEGER_SEED {
        Value::from(s as i64)
    } else {
        Value::from(s.to_string())
    }
}

fn int(n: u64, what: &str) -> Result<Value, String> {
    i64::try_from(n)
        .map(Value::from)
        .map_err(|_| format!("{what} {n} is above TOML's largest integer"))
}

fn utf8<'a>(bytes: &'a [u8], name: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|_| format!("{name:?}: inline content that is not UTF-8"))
}

/// A name as it runs: one with a `{` would be read as a variable.
fn plain_name(name: &str) -> Result<&str, String> {
    if name.contains('{') {
        return Err(format!(
            "{name:?}: a name with `{{` reads back as a variable"
        ));
    }
    Ok(name)
}

/// The server's settings that differ from the defaults.
fn server(s: &ServerSpec) -> Result<Table, String> {
    let d = ServerSpec::default();
    let mut t = Table::new();
    if s.write != d.write {
        t["write"] = Item::Value(
            match s.write {
                WriteSpec::Off => "off",
                WriteSpec::Create => "create",
                WriteSpec::Overwrite => "overwrite",
            }
            .into(),
        );
    }
    if s.max_blksize != d.max_blksize {
        t["max_blksize"] = Item::Value(i64::from(s.max_blksize).into());
    }
    if s.max_windowsize != d.max_windowsize {
        t["max_windowsize"] = Item::Value(i64::from(s.max_windowsize).into());
    }
    if s.timeout != d.timeout {
        t["timeout"] = Item::Value(duration(s.timeout).into());
    }
    if s.min_rto != d.min_rto {
        t["min_rto"] = Item::Value(duration(s.min_rto).into());
    }
    if s.retries != d.retries {
        t["retries"] = Item::Value(i64::from(s.retries).into());
    }
    if s.max_transfers != d.max_transfers {
        t["max_transfers"] = Item::Value(int(s.max_transfers as u64, "max_transfers")?);
    }
    if let Some(m) = s.max_upload {
        t["max_upload"] = Item::Value(int(m, "max_upload")?);
    }
    if s.create_dirs {
        t["create_dirs"] = Item::Value(true.into());
    }
    Ok(t)
}

fn client(c: &ClientSpec) -> Result<Table, String> {
    let mut t = Table::new();
    t["name"] = Item::Value(c.name.as_str().into());
    t["profile"] = Item::Value(c.profile.name().into());
    let o = c.options;
    let mut options = InlineTable::new();
    if let Some(b) = o.blksize {
        options.insert("blksize", i64::from(b).into());
    }
    if let Some(w) = o.windowsize {
        options.insert("windowsize", i64::from(w).into());
    }
    if let Some(s) = o.timeout {
        options.insert("timeout", i64::from(s).into());
    }
    if o.tsize {
        options.insert("tsize", true.into());
    }
    if o.netascii {
        options.insert("netascii", true.into());
    }
    if !options.is_empty() {
        t["options"] = Item::Value(Value::InlineTable(options));
    }
    t["retry_every"] = Item::Value(duration(c.retry_every).into());
    t["retries"] = Item::Value(i64::from(c.retries).into());
    if !c.start.is_zero() {
        t["start"] = Item::Value(duration(c.start).into());
    }
    t["serial"] = Item::Value(super::serial_text(c.serial).into());
    t["mac"] = Item::Value(super::mac_text(c.mac).replace('-', ":").into());
    let mut actions = Array::new();
    for a in &c.actions {
        let mut i = InlineTable::new();
        match &a.kind {
            ActionKind::Get { name, probe } => {
                i.insert("get", plain_name(name)?.into());
                if *probe {
                    i.insert("probe", true.into());
                }
            }
            ActionKind::Put { name, content } => {
                i.insert("put", plain_name(name)?.into());
                match content {
                    FileContent::Inline(bytes) => {
                        i.insert("content", utf8(bytes, name)?.into());
                    }
                    FileContent::Generated { size, seed } => {
                        i.insert("size", int(*size, "an upload's size")?);
                        i.insert("seed", int(*seed, "an upload's seed")?);
                    }
                    FileContent::Path(_) | FileContent::Symlink(_) => {
                        return Err(format!(
                        "client {}: an upload of {name:?} from a path or a link cannot be written",
                        c.name
                    ))
                    }
                }
            }
            ActionKind::Sleep(d) => {
                i.insert("sleep", duration(*d).into());
            }
        }
        match a.expect {
            Outcome::Intact => {}
            Outcome::Error(code) => {
                i.insert("expect", i64::from(code).into());
            }
            Outcome::IntactOrError(code) => {
                i.insert("expect", format!("intact-or-{code}").into());
            }
            Outcome::Fails => {
                i.insert("expect", "fails".into());
            }
        }
        let mut v = Value::InlineTable(i);
        v.decor_mut().set_prefix("\n  ");
        actions.push_formatted(v);
    }
    actions.set_trailing_comma(true);
    actions.set_trailing("\n");
    t["actions"] = Item::Value(Value::Array(actions));
    Ok(t)
}

fn link_faults(l: &LinkFaults) -> Table {
    let mut t = Table::new();
    let mut p = |key: &str, v: f64| {
        if v != 0.0 {
            t[key] = Item::Value(v.into());
        }
    };
    p("loss", l.loss);
    p("duplicate", l.duplicate);
    p("corrupt", l.corrupt);
    p("truncate", l.truncate);
    if let Some(b) = l.burst {
        t["burst"] = Item::Value(Value::InlineTable(burst(&b)));
    }
    if let Some(c) = l.copies {
        t["copies"] = Item::Value(i64::from(c).into());
    }
    if let Some(r) = l.reorder {
        let mut i = InlineTable::new();
        i.insert("fraction", r.fraction.into());
        i.insert("delay", range(r.delay));
        t["reorder"] = Item::Value(Value::InlineTable(i));
    }
    if let Some(r) = l.latency {
        t["latency"] = Item::Value(range(r));
    }
    t
}

fn burst(b: &Burst) -> InlineTable {
    let mut i = InlineTable::new();
    i.insert("enter", b.enter.into());
    if let Some(exit) = b.exit {
        i.insert("exit", exit.into());
    }
    if let Some(lasts) = b.lasts {
        i.insert("lasts", range(lasts));
    }
    if b.loss != 1.0 {
        i.insert("loss", b.loss.into());
    }
    i
}

fn script_rule(r: &ScriptRule) -> Table {
    let mut t = Table::new();
    t["direction"] = Item::Value(
        match r.direction {
            Direction::ClientToServer => "client_to_server",
            Direction::ServerToClient => "server_to_client",
        }
        .into(),
    );
    t["packet"] = Item::Value(r.packet.as_str().into());
    t["nth"] = Item::Value(i64::from(r.nth).into());
    let timed = |key: &str, d: Duration| {
        let mut i = InlineTable::new();
        i.insert(key, duration(d).into());
        Value::InlineTable(i)
    };
    t["fate"] = Item::Value(match r.fate {
        ScriptFate::Drop => "drop".into(),
        ScriptFate::Duplicate => "duplicate".into(),
        ScriptFate::Delay(d) => timed("delay", d),
        ScriptFate::DuplicateAfter(d) => timed("duplicate_after", d),
        ScriptFate::Outage(d) => timed("outage", d),
    });
    t
}

fn expect(e: &Expectations) -> Result<Table, String> {
    let mut t = Table::new();
    // The defaults are left out: a random plan's judge does not use them.
    let d = Expectations::default();
    t["within"] = Item::Value(duration(e.within).into());
    if e.max_packet_ratio.to_bits() != d.max_packet_ratio.to_bits() {
        t["max_packet_ratio"] = Item::Value(e.max_packet_ratio.into());
    }
    if e.server_idle != d.server_idle {
        t["server_idle"] = Item::Value(e.server_idle.into());
    }
    if e.server_timeouts != d.server_timeouts {
        t["server_timeouts"] = Item::Value(int(e.server_timeouts, "server_timeouts")?);
    }
    if let Some(m) = e.max_packets {
        t["max_packets"] = Item::Value(int(m, "max_packets")?);
    }
    if e.judge != Judge::Scenario {
        t["judge"] = Item::Value(e.judge.name().into());
    }
    Ok(t)
}
