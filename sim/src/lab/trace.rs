//! The trace of a lab run: every datagram with its time, direction, fate
//! and decoded packet, rendered as text (one line per datagram), JSON, or a
//! Mermaid sequence diagram.

use serde::Serialize;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tftplab::wire::Packet;

/// What happened to a datagram on its way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFate {
    Delivered,
    /// Delivered more than once.
    Duplicated {
        copies: usize,
    },
    /// Held back so later datagrams could overtake it.
    Delayed {
        by_us: u64,
    },
    Dropped {
        cause: String,
    },
}

/// One datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    /// Simulated (or wall, on hardware) time since the run started.
    pub at_us: u64,
    pub from: String,
    pub to: String,
    pub fate: TraceFate,
    pub len: usize,
    /// The packet as one line, e.g. `DATA #7 (1024 B)`.
    pub packet: String,
    /// The sender's and the receiver's UDP port, when the recorder knows
    /// them: one transfer's datagrams share them, so a resend can be told
    /// from another transfer's identical packet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<(u16, u16)>,
}

/// A shared, append-only trace. Appends happen in the simulator's
/// deterministic order, so the same seed gives the same trace.
#[derive(Debug, Clone, Default)]
pub struct Trace(Arc<Mutex<Vec<TraceEvent>>>);

impl Trace {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, at: Duration, from: String, to: String, fate: TraceFate, datagram: &[u8]) {
        let packet = render_packet(datagram);
        self.record_rendered(at, from, to, fate, datagram.len(), packet);
    }

    /// Records a datagram already rendered with [`render_packet`] (the
    /// fault layer renders once for both its script and the trace), and
    /// returns its index for [`Trace::set_fate`].
    pub fn record_rendered(
        &self,
        at: Duration,
        from: String,
        to: String,
        fate: TraceFate,
        len: usize,
        packet: String,
    ) -> usize {
        self.push(TraceEvent {
            at_us: at.as_micros() as u64,
            from,
            to,
            fate,
            len,
            packet,
            ports: None,
        })
    }

    /// Records an event and returns its index for [`Trace::set_fate`].
    pub fn push(&self, event: TraceEvent) -> usize {
        match self.0.lock() {
            Ok(mut v) => {
                v.push(event);
                v.len() - 1
            }
            Err(_) => 0,
        }
    }

    /// Corrects a recorded datagram's fate once it is known (a copy held
    /// back until a partition began was lost after all).
    pub fn set_fate(&self, index: usize, fate: TraceFate) {
        if let Ok(mut v) = self.0.lock() {
            if let Some(e) = v.get_mut(index) {
                e.fate = fate;
            }
        }
    }

    pub fn events(&self) -> Vec<TraceEvent> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A datagram as one trace line's packet text: `DATA #7 (1024 B)`.
pub fn render_packet(datagram: &[u8]) -> String {
    match Packet::parse(datagram) {
        Ok(p) => p.to_string(),
        Err(e) => format!("<malformed: {e}>"),
    }
}

fn fate_suffix(f: &TraceFate) -> String {
    match f {
        TraceFate::Delivered => String::new(),
        TraceFate::Duplicated { copies } => format!(" [duplicated x{copies}]"),
        TraceFate::Delayed { by_us } => format!(" [delayed {:.1}ms]", *by_us as f64 / 1000.0),
        TraceFate::Dropped { cause } => format!(" [dropped: {cause}]"),
    }
}

/// One line per datagram: `   12.345ms server -> rpi4 DATA #1 (1024 B)`.
pub fn render_text(events: &[TraceEvent]) -> String {
    let mut out = String::new();
    for e in events {
        let _ = writeln!(
            out,
            "{:>12.3}ms {} -> {} {}{}",
            e.at_us as f64 / 1000.0,
            e.from,
            e.to,
            e.packet,
            fate_suffix(&e.fate)
        );
    }
    out
}

/// The events as a JSON array.
pub fn render_json(events: &[TraceEvent]) -> String {
    serde_json::to_string_pretty(events).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The trace as a Mermaid sequence diagram (a raw `.mmd` file: no Markdown
/// fences), participants under their own names. A trace longer than
/// `max_events` shows its first and last halves with a note of how many
/// datagrams are left out between them: a failing run's end, where its
/// failure shows, is never cut.
pub fn render_mermaid(events: &[TraceEvent], max_events: usize) -> String {
    let mut out = String::from("sequenceDiagram\n");
    let mut participants: Vec<&str> = Vec::new();
    for e in events {
        for p in [e.from.as_str(), e.to.as_str()] {
            if !participants.contains(&p) {
                participants.push(p);
            }
        }
    }
    for p in &participants {
        let id = mermaid_id(p);
        if id == *p {
            let _ = writeln!(out, "    participant {id}");
        } else {
            let _ = writeln!(out, "    participant {id} as {p}");
        }
    }
    let arrow_line = |out: &mut String, e: &TraceEvent| {
        let arrow = if matches!(e.fate, TraceFate::Dropped { .. }) {
            "-x"
        } else {
            "->>"
        };
        let label = format!(
            "{:.1}ms {}{}",
            e.at_us as f64 / 1000.0,
            e.packet,
            fate_suffix(&e.fate)
        );
        let _ = writeln!(
            out,
            "    {}{arrow}{}: {}",
            mermaid_id(&e.from),
            mermaid_id(&e.to),
            label.replace([';', '#', ':'], " ")
        );
    };
    if events.len() <= max_events {
        for e in events {
            arrow_line(&mut out, e);
        }
        return out;
    }
    let head = max_events / 2;
    let tail = max_events - head;
    for e in &events[..head] {
        arrow_line(&mut out, e);
    }
    let first = participants.first().map_or("a", |p| p);
    let _ = writeln!(
        out,
        "    Note over {}: {} more datagrams not shown",
        mermaid_id(first),
        events.len() - max_events
    );
    for e in &events[events.len() - tail..] {
        arrow_line(&mut out, e);
    }
    out
}

fn mermaid_id(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<TraceEvent> {
        let t = Trace::new();
        t.record(
            Duration::from_micros(0),
            "rpi4".into(),
            "server".into(),
            TraceFate::Delivered,
            b"\x00\x01start4.elf\x00octet\x00tsize\x000\x00",
        );
        t.record(
            Duration::from_micros(1500),
            "server".into(),
            "rpi4".into(),
            TraceFate::Dropped {
                cause: "loss".into(),
            },
            b"\x00\x06tsize\x0010\x00",
        );
        t.record(
            Duration::from_micros(2_001_500),
            "server".into(),
            "rpi4".into(),
            TraceFate::Duplicated { copies: 2 },
            b"\x00\x03\x00\x01abc",
        );
        t.events()
    }

    #[test]
    fn text_is_one_line_per_datagram() {
        let text = render_text(&sample());
        assert_eq!(
            text,
            "       0.000ms rpi4 -> server RRQ \"start4.elf\" octet tsize=0\n\
             \x20      1.500ms server -> rpi4 OACK tsize=10 [dropped: loss]\n\
             \x20   2001.500ms server -> rpi4 DATA #1 (3 B) [duplicated x2]\n"
        );
    }

    #[test]
    fn json_round_trips_the_fields() {
        let json = render_json(&sample());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[1]["fate"]["dropped"]["cause"], "loss");
        assert_eq!(v[2]["packet"], "DATA #1 (3 B)");
        assert_eq!(v[0]["at_us"], 0);
    }

    #[test]
    fn mermaid_draws_drops_as_crosses_and_keeps_both_ends_of_long_traces() {
        let m = render_mermaid(&sample(), 2);
        assert!(m.starts_with("sequenceDiagram\n    participant rpi4\n    participant server\n"));
        assert_eq!(
            m.lines().skip(3).collect::<Vec<_>>(),
            [
                "    rpi4->>server: 0.0ms RRQ \"start4.elf\" octet tsize=0",
                "    Note over rpi4: 1 more datagrams not shown",
                "    server->>rpi4: 2001.5ms DATA  1 (3 B) [duplicated x2]",
            ]
        );
        let all = render_mermaid(&sample(), 3);
        assert!(all.contains("server-xrpi4: 1.5ms OACK tsize=10 [dropped  loss]"));
        assert!(!all.contains("Note"));
    }

    #[test]
    fn mermaid_keeps_participant_names() {
        let mut t = sample();
        t[0].from = "rack1-1".into();
        let m = render_mermaid(&t, 10);
        assert!(m.contains("    participant rack1_1 as rack1-1\n"), "{m}");
        assert!(m.contains("    rack1_1->>server: "), "{m}");
    }
}
