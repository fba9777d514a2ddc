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
    let burst = if window > 1 {
        // Three DATA in a row: #3, #4 and #5 of the first window.
        ["DATA #3 ", "DATA #4 ", "DATA #5 "]
            .map(|p| rule(Down, p, 1, ScriptFate::Drop))
            .to_vec()
    } else {
        // In lock-step the next DATA is #3 again: three sends of it.
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

/// The datagrams clients sent to the server, in order, as the trace
/// renders them without their fate: `RRQ "Image" octet blksize=1468`,
/// `ACK #8`, `ERROR 8 "User aborted the transfer"`. Works on a trace
/// file's text (the runner's) and on [`render_text`]'s (the simulator's).
pub fn client_datagrams(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter_map(|line| line.split_once(" -> server "))
        .map(|(_, packet)| match packet.rsplit_once(" [") {
            Some((bare, fate)) if fate.ends_with(']') => bare.to_owned(),
            _ => packet.to_owned(),
        })
        .collect()
}

/// [`client_datagrams`] of a simulated run's trace.
pub fn simulated_client_datagrams(trace: &[TraceEvent]) -> Vec<String> {
    client_datagrams(&render_text(trace))
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
        }
    }
}

pub fn compare(board: &[String], sim: &[String]) -> Cell {
    let n = board.len().max(sim.len());
    (0..n)
        .find(|&i| board.get(i) != sim.get(i))
        .map_or(Cell::Same, |i| Cell::Differs {
            at: i + 1,
            board: board.get(i).cloned(),
            sim: sim.get(i).cloned(),
        })
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

    #[test]
    fn compare_names_the_first_datagram_where_the_sides_part() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
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
        let lockstep = patterns(1);
        let burst = lockstep
            .iter()
            .find(|p| p.name.contains("in a row"))
            .unwrap();
        assert!(burst.script.iter().all(|r| r.packet == "DATA #3 "));
    }
}
