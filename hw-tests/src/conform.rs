//! Conformance: does a client profile send what the real firmware sends?
//!
//! The same scripted fault patterns (drop DATA #3, duplicate it, hold it
//! back behind the rest of its window, drop the OACK, drop an ACK, three DATA lost in a row, a
//! 2 s outage) run on a board through the raw link and on the board's
//! profile in the simulator. Each side's trace gives the client's
//! datagrams in order (opcode, block, options, error), and the two lists
//! are compared: the same, or where they first part. The patterns are
//! script rules, so they hit the same datagram on both sides however long
//! the board took to boot.
//!
//! A client is only held to the profile's answers to the same input: when
//! the server's own datagrams parted before the client's did, the server
//! acted on time (a gap ACK inside or outside a round trip of its last
//! rewind, measured in QEMU's fractions of a millisecond on the board and
//! in 1 ms ticks in the simulator), and the cell says so
//! ([`Cell::ServerFirst`]) instead of blaming the profile.

use tftplab_sim::lab::faults::{Direction, FaultPlan, ScriptFate, ScriptRule};
use tftplab_sim::lab::scenario::Scenario;
use tftplab_sim::lab::trace::{render_text, TraceEvent};

/// A scripted fault pattern: its name in the table, and its rules.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub name: &'static str,
    pub script: Vec<ScriptRule>,
}

fn rule(direction: Direction, packet: &str, nth: u32, fate: ScriptFate) -> ScriptRule {
    ScriptRule {
        direction,
        packet: packet.to_owned(),
        nth,
        fate,
    }
}

/// The patterns, for a client that ACKs every `window` blocks (its
/// windowsize; 1 in lock-step). "DATA #3 " is the first DATA #3 the server
/// sends that client (the trailing space keeps #30 out); the dropped ACK
/// is the first one that closes a window (#3 in lock-step).
pub fn patterns(window: u16) -> Vec<Pattern> {
    use Direction::{ClientToServer as Up, ServerToClient as Down};
    let ack = if window > 1 { window } else { 3 };
    let burst = if window >= 3 {
        // Three DATA in a row, all in the first window: #3, #4 and #5, or
        // the window's last three when it is shorter (#2-#4 at windowsize
        // 4). A burst that spilled into the resent window (#5 at
        // windowsize 4) made a second gap ACK reach the server within a
        // round trip of its rewind, where it waits out that round trip:
        // measured on the board (0.3-0.5 ms under QEMU) and in 1 ms ticks
        // in the simulator, so OVMF's datagrams then hung on a race.
        let last = window.min(5);
        (last - 2..=last)
            .map(|b| rule(Down, &format!("DATA #{b} "), 1, ScriptFate::Drop))
            .collect()
    } else {
        // In lock-step (or a window too short for three) the next DATA is
        // #3 again: three sends of it.
        (1..=3)
            .map(|n| rule(Down, "DATA #3 ", n, ScriptFate::Drop))
            .collect()
    };
    vec![
        Pattern {
            name: "clean",
            script: Vec::new(),
        },
        Pattern {
            name: "drop DATA #3",
            script: vec![rule(Down, "DATA #3 ", 1, ScriptFate::Drop)],
        },
        Pattern {
            name: "duplicate DATA #3",
            script: vec![rule(Down, "DATA #3 ", 1, ScriptFate::Duplicate)],
        },
        Pattern {
            // After the rest of its window (sent 20 us apart), and before
            // the firmware's answer to them can bring a resend: 5 ms raced
            // U-Boot's first window on the board, which it takes 5-6 ms to
            // answer in QEMU, and 1 ms raced OVMF's 0.4 ms answer (the
            // simulator answers on its 1 ms tick, where 200 us is a tick).
            name: "DATA #3 held 200 us",
            script: vec![rule(
                Down,
                "DATA #3 ",
                1,
                ScriptFate::Delay(std::time::Duration::from_micros(200)),
            )],
        },
        Pattern {
            name: "drop OACK",
            script: vec![rule(Down, "OACK", 1, ScriptFate::Drop)],
        },
        Pattern {
            name: if window > 1 {
                "drop the first window's ACK"
            } else {
                "drop ACK #3"
            },
            script: vec![rule(Up, &format!("ACK #{ack}"), 1, ScriptFate::Drop)],
        },
        Pattern {
            name: "3 DATA lost in a row",
            script: burst,
        },
        Pattern {
            name: "2 s outage at DATA #3",
            script: vec![rule(
                Down,
                "DATA #3 ",
                1,
                ScriptFate::Outage(std::time::Duration::from_secs(2)),
            )],
        },
    ]
}

/// `s` with only the pattern's faults: no random faults, no events.
pub fn variant(s: &Scenario, p: &Pattern) -> Scenario {
    let mut v = s.clone();
    v.faults = FaultPlan {
        script: p.script.clone(),
        ..FaultPlan::default()
    };
    v.events.clear();
    v
}

/// One datagram between the server and a client, as the trace renders it
/// without its fate: `RRQ "Image" octet blksize=1468`, `ACK #8`,
/// `DATA #3 (1468 B)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Sent by the client (to the server); otherwise by the server.
    pub from_client: bool,
    pub packet: String,
}

/// The datagrams of a trace to and from the server, in order. Works on a
/// trace file's text (the runner's) and on [`render_text`]'s (the
/// simulator's).
pub fn datagrams(trace: &str) -> Vec<Datagram> {
    trace
        .lines()
        .filter_map(|line| {
            let (_time, rest) = line.trim_start().split_once(' ')?;
            let (from, rest) = rest.split_once(" -> ")?;
            let (to, packet) = rest.split_once(' ')?;
            let from_client = to == "server";
            if !from_client && from != "server" {
                return None;
            }
            let packet = match packet.rsplit_once(" [") {
                Some((bare, fate)) if fate.ends_with(']') => bare,
                _ => packet,
            };
            Some(Datagram {
                from_client,
                packet: packet.to_owned(),
            })
        })
        .collect()
}

/// The datagrams clients sent to the server, in order: `RRQ "Image" octet
/// blksize=1468`, `ACK #8`, `ERROR 8 "User aborted the transfer"`.
pub fn client_datagrams(trace: &str) -> Vec<String> {
    datagrams(trace)
        .into_iter()
        .filter(|d| d.from_client)
        .map(|d| d.packet)
        .collect()
}

/// [`datagrams`] of a simulated run's trace.
pub fn simulated_datagrams(trace: &[TraceEvent]) -> Vec<Datagram> {
    datagrams(&render_text(trace))
}

/// How a board's datagrams compare with its profile's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Same,
    /// They part at datagram `at` (from 1): what each side sent there
    /// (`None`: it had sent nothing more).
    Differs {
        at: usize,
        board: Option<String>,
        sim: Option<String>,
    },
    /// The server's datagrams parted first, at its datagram `at`: the
    /// clients were not answering the same input from there on.
    ServerFirst {
        at: usize,
        board: String,
        sim: String,
    },
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Same => write!(f, "same"),
            Cell::Differs { at, board, sim } => {
                let show = |d: &Option<String>| d.clone().unwrap_or_else(|| "(nothing)".into());
                write!(
                    f,
                    "differs at #{at}: board {}, sim {}",
                    show(board),
                    show(sim)
                )
            }
            Cell::ServerFirst { at, board, sim } => write!(
                f,
                "server timing: its datagram #{at} was {board} on the board, {sim} in the sim"
            ),
        }
    }
}

/// Where the clients' datagrams first part, unless the server's parted
/// before that (see [`Cell::ServerFirst`]).
pub fn compare(board: &[Datagram], sim: &[Datagram]) -> Cell {
    let clients = |side: &[Datagram]| -> Vec<String> {
        side.iter()
            .filter(|d| d.from_client)
            .map(|d| d.packet.clone())
            .collect()
    };
    let (bc, sc) = (clients(board), clients(sim));
    let n = bc.len().max(sc.len());
    let Some(i) = (0..n).find(|&i| bc.get(i) != sc.get(i)) else {
        return Cell::Same;
    };
    // The server's datagrams each side sent before its client's i-th.
    let server_before = |side: &[Datagram]| -> Vec<String> {
        let mut clients_seen = 0;
        side.iter()
            .take_while(|d| {
                clients_seen += usize::from(d.from_client);
                clients_seen <= i
            })
            .filter(|d| !d.from_client)
            .map(|d| d.packet.clone())
            .collect()
    };
    let (bs, ss) = (server_before(board), server_before(sim));
    if let Some(j) = (0..bs.len().min(ss.len())).find(|&j| bs[j] != ss[j]) {
        return Cell::ServerFirst {
            at: j + 1,
            board: bs[j].clone(),
            sim: ss[j].clone(),
        };
    }
    Cell::Differs {
        at: i + 1,
        board: bc.get(i).cloned(),
        sim: sc.get(i).cloned(),
    }
}

/// One row of the table: firmware, pattern, the cell, and each side's
/// datagram count and verdict.
#[derive(Debug, Clone)]
pub struct Row {
    pub firmware: String,
    pub pattern: &'static str,
    pub cell: Cell,
    pub board_datagrams: usize,
    pub sim_datagrams: usize,
    pub board_passed: bool,
    pub sim_passed: bool,
}

/// The table as text, one row per firmware and pattern.
pub fn render_table(rows: &[Row]) -> String {
    let verdict = |p: bool| if p { "pass" } else { "FAIL" };
    let mut out = format!(
        "{:<18} {:<28} {:>11} {:>9}  {}\n",
        "firmware", "pattern", "board/sim", "verdicts", "client datagrams"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<18} {:<28} {:>11} {:>9}  {}\n",
            r.firmware,
            r.pattern,
            format!("{}/{}", r.board_datagrams, r.sim_datagrams),
            format!("{}/{}", verdict(r.board_passed), verdict(r.sim_passed)),
            r.cell
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_datagrams_come_from_either_trace_without_their_fates() {
        let text = "       0.000ms rpi -> server RRQ \"f [x]\" octet tsize=0\n\
                    \x20      1.000ms server -> rpi OACK tsize=3\n\
                    \x20      2.000ms rpi -> server ACK #0 [dropped: scripted]\n\
                    \x20      3.000ms rpi -> server ERROR 8 \"User aborted\" [duplicated x2]\n";
        assert_eq!(
            client_datagrams(text),
            [
                "RRQ \"f [x]\" octet tsize=0",
                "ACK #0",
                "ERROR 8 \"User aborted\""
            ]
        );
    }

    /// `>x` is a client's datagram x, `<x` the server's.
    fn seq(v: &[&str]) -> Vec<Datagram> {
        v.iter()
            .map(|x| Datagram {
                from_client: x.starts_with('>'),
                packet: x[1..].to_owned(),
            })
            .collect()
    }

    #[test]
    fn datagrams_tell_the_server_from_its_clients() {
        let text = "       0.000ms rpi -> server RRQ \"f\" octet\n\
                    \x20      1.000ms server -> rpi DATA #1 (3 B) [dropped: scripted]\n\
                    \x20      1.500ms rpi -> other ACK #9\n";
        assert_eq!(
            datagrams(text),
            seq(&[">RRQ \"f\" octet", "<DATA #1 (3 B)"])
        );
    }

    #[test]
    fn compare_names_the_first_datagram_where_the_sides_part() {
        let s = |v: &[&str]| {
            v.iter()
                .map(|x| Datagram {
                    from_client: true,
                    packet: x.to_string(),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(compare(&s(&["a", "b"]), &s(&["a", "b"])), Cell::Same);
        assert_eq!(
            compare(&s(&["a", "b", "c"]), &s(&["a", "x"])).to_string(),
            "differs at #2: board b, sim x"
        );
        assert_eq!(
            compare(&s(&["a"]), &s(&["a", "b"])).to_string(),
            "differs at #2: board (nothing), sim b"
        );
    }

    #[test]
    fn a_server_that_parted_first_is_not_blamed_on_the_client() {
        // The sim's server answered the gap ACK a round trip later than
        // the board's did: its clients then answered different blocks.
        let board = seq(&["<D6", ">A4", "<D5", "<D6", ">A8"]);
        let sim = seq(&["<D6", ">A4", "<D7", ">A4", "<D5", ">A8"]);
        assert_eq!(
            compare(&board, &sim).to_string(),
            "server timing: its datagram #2 was D5 on the board, D7 in the sim"
        );
        // The same input and a different answer is the client's doing,
        // however the sends interleave with it.
        let board = seq(&["<D1", "<D2", ">A2", ">A2"]);
        let sim = seq(&["<D1", ">A2", "<D2", ">A1"]);
        assert_eq!(
            compare(&board, &sim).to_string(),
            "differs at #2: board A2, sim A1"
        );
    }

    #[test]
    fn patterns_hit_the_window_they_are_for() {
        let names = |w| patterns(w).iter().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(names(1).len(), 8);
        let w8 = patterns(8);
        let ack = w8
            .iter()
            .find(|p| p.name == "drop the first window's ACK")
            .unwrap();
        assert_eq!(ack.script[0].packet, "ACK #8");
        let burst = w8.iter().find(|p| p.name.contains("in a row")).unwrap();
        assert_eq!(burst.script.len(), 3);
        assert_eq!(burst.script[2].packet, "DATA #5 ");
        let w4 = patterns(4);
        let burst = w4.iter().find(|p| p.name.contains("in a row")).unwrap();
        let blocks: Vec<_> = burst.script.iter().map(|r| r.packet.as_str()).collect();
        assert_eq!(blocks, ["DATA #2 ", "DATA #3 ", "DATA #4 "]);
        let lockstep = patterns(1);
        let burst = lockstep
            .iter()
            .find(|p| p.name.contains("in a row"))
            .unwrap();
        assert!(burst.script.iter().all(|r| r.packet == "DATA #3 "));
    }
}
