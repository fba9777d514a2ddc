//! `serve --events json`: one JSON object per line on stdout, for programs
//! that run `tftplab serve` (the Jumpstarter driver in hw-tests/jumpstarter).
//!
//! ```text
//! {"event":"ready","addr":"127.0.0.1:6969","addrs":["127.0.0.1:6969"],"root":"/srv/tftp","write":"off"}
//! {"event":"transfer","id":1,"direction":"read","file":"boot/kernel.img","peer":"127.0.0.1:40000","outcome":"ok","bytes":5,"blocks":1,"retransmissions":0,"seconds":0.001,"options":{"blksize":512,"windowsize":1,"timeout":null,"tsize":null},"error":null}
//! {"event":"refused","file":"../x","peer":"127.0.0.1:40001","code":2,"message":"access violation"}
//! {"event":"stopped","aborted":0}
//! ```
//!
//! `ready` comes first and only once the socket is bound (the real port when
//! `--bind` asked for port 0). A failed transfer has `outcome` one of
//! `peer_error`, `local_error`, `timed_out`, `unconfirmed`, `bytes`,
//! `blocks`, `seconds` and `options` null, and `error` set to
//! `{"code":N|null,"message":"..."}`. Written by hand: the CLI has no JSON
//! dependency and the shapes are fixed.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use tftplab::options::Direction;
use tftplab::proto::TransferError;
use tftplab::runtime::ServerEvent;
use tokio::sync::broadcast;

/// How a failed transfer ended, as events and metrics name it.
pub fn failure_name(e: &TransferError) -> &'static str {
    match e {
        TransferError::Peer { .. } => "peer_error",
        TransferError::Local { .. } => "local_error",
        TransferError::TimedOut { .. } => "timed_out",
        TransferError::Unconfirmed { .. } => "unconfirmed",
    }
}

/// A JSON string literal.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

/// Writes one line and flushes it, so a reader sees each event at once.
/// A closed stdout (the reader went away) is not the server's failure.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// `addr` is the first listening address, `addrs` all of them.
pub fn ready(addrs: &[SocketAddr], root: &Path, write: &str) {
    let all: Vec<String> = addrs.iter().map(|a| string(&a.to_string())).collect();
    emit(&format!(
        r#"{{"event":"ready","addr":{},"addrs":[{}],"root":{},"write":{}}}"#,
        all.first().map_or("null", String::as_str),
        all.join(","),
        string(&root.to_string_lossy()),
        string(write)
    ));
}

pub fn stopped(aborted: usize) {
    emit(&format!(r#"{{"event":"stopped","aborted":{aborted}}}"#));
}

/// The line for one server event, or `None` for events not printed
/// (`Started`: only finished transfers are reported).
pub fn line(event: &ServerEvent) -> Option<String> {
    match event {
        ServerEvent::Started { .. } => None,
        ServerEvent::Refused {
            peer,
            filename,
            code,
            message,
        } => Some(format!(
            r#"{{"event":"refused","file":{},"peer":{},"code":{},"message":{}}}"#,
            filename.as_deref().map_or_else(|| "null".into(), string),
            string(&peer.to_string()),
            code.0,
            string(message)
        )),
        ServerEvent::Finished {
            id,
            peer,
            filename,
            direction,
            result,
            counters: _,
        } => {
            let direction = match direction {
                Direction::Read => "read",
                Direction::Write => "write",
            };
            let tail = match result {
                Ok(s) => {
                    let n = &s.negotiated;
                    format!(
                        r#""outcome":"ok","bytes":{},"blocks":{},"retransmissions":{},"seconds":{:.6},"options":{{"blksize":{},"windowsize":{},"timeout":{},"tsize":{}}},"error":null"#,
                        s.bytes,
                        s.blocks,
                        s.retransmissions,
                        s.duration.as_secs_f64(),
                        n.blksize,
                        n.windowsize,
                        opt(n.timeout),
                        opt(n.tsize)
                    )
                }
                Err(e) => {
                    let outcome = failure_name(e);
                    let message = match e {
                        TransferError::Peer { message, .. }
                        | TransferError::Local { message, .. } => message.clone(),
                        other => other.to_string(),
                    };
                    format!(
                        r#""outcome":"{outcome}","bytes":null,"blocks":null,"retransmissions":null,"seconds":null,"options":null,"error":{{"code":{},"message":{}}}"#,
                        opt(e.code().map(|c| c.0)),
                        string(&message)
                    )
                }
            };
            Some(format!(
                r#"{{"event":"transfer","id":{id},"direction":"{direction}","file":{},"peer":{},{tail}}}"#,
                string(filename),
                string(&peer.to_string())
            ))
        }
    }
}

/// Prints every event until the server is gone. Events the channel dropped
/// because this task fell behind are reported, not silently lost.
pub async fn print(mut rx: broadcast::Receiver<ServerEvent>) {
    loop {
        match rx.recv().await {
            Ok(event) => {
                if let Some(l) = line(&event) {
                    emit(&l);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                emit(&format!(r#"{{"event":"lagged","missed":{n}}}"#));
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\nd\u{1}é"), r#""a\"b\\c\nd\u0001é""#);
    }
}
