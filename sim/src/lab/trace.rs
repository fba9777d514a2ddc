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
pub struct Trace(Arc<Mutex<Recorded>>);

#[derive(Debug, Default)]
struct Recorded {
    events: Vec<TraceEvent>,
    /// Each event's datagram, when the trace was made to keep them
    /// ([`Trace::keeping_datagrams`]); empty for an event recorded without
    /// its bytes.
    datagrams: Option<Vec<Vec<u8>>>,
}

impl Trace {
    pub fn new() -> Self {
        Self::default()
    }

    /// A trace that also keeps every datagram's bytes, for a pcap. An
    /// ordinary trace does not: the bytes of a long run's datagrams are
    /// many times its trace, and most runs are never looked at.
    pub fn keeping_datagrams() -> Self {
        Trace(Arc::new(Mutex::new(Recorded {
            events: Vec::new(),
            datagrams: Some(Vec::new()),
        })))
    }

    pub fn record(&self, at: Duration, from: String, to: String, fate: TraceFate, datagram: &[u8]) {
        let packet = render_packet(datagram);
        self.push_datagram(
            TraceEvent {
                at_us: at.as_micros() as u64,
                from,
                to,
                fate,
                len: datagram.len(),
                packet,
                ports: None,
            },
            datagram,
        );
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
        self.push_datagram(event, &[])
    }

    /// Records an event with its datagram's bytes, which are kept only if
    /// the trace keeps datagrams ([`Trace::keeping_datagrams`]; otherwise
    /// this costs what [`Trace::push`] does), and returns its index for
    /// [`Trace::set_fate`].
    pub fn push_datagram(&self, event: TraceEvent, datagram: &[u8]) -> usize {
        match self.0.lock() {
            Ok(mut r) => {
                r.events.push(event);
                if let Some(d) = &mut r.datagrams {
                    d.push(datagram.to_vec());
                }
                r.events.len() - 1
            }
            Err(_) => 0,
        }
    }

    /// Corrects a recorded datagram's fate once it is known (a copy held
    /// back until a partition began was lost after all).
    pub fn set_fate(&self, index: usize, fate: TraceFate) {
        if let Ok(mut r) = self.0.lock() {
            if let Some(e) = r.events.get_mut(index) {
                e.fate = fate;
            }
        }
    }

    pub fn events(&self) -> Vec<TraceEvent> {
        self.0.lock().map(|r| r.events.clone()).unwrap_or_default()
    }

    /// Takes the datagrams kept so far, one per event in order: `None`
    /// unless the trace keeps datagrams.
    pub fn take_datagrams(&self) -> Option<Vec<Vec<u8>>> {
        self.0
            .lock()
            .ok()
            .and_then(|mut r| r.datagrams.as_mut().map(std::mem::take))
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|r| r.events.len()).unwrap_or(0)
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
/// failure often shows, is never cut; [`render_mermaid_failure`] shows
/// where a failure happened instead.
pub fn render_mermaid(events: &[TraceEvent], max_events: usize) -> String {
    let (mut out, first) = mermaid_head(events);
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
    let _ = writeln!(
        out,
        "    Note over {first}: {} more datagrams not shown",
        events.len() - max_events
    );
    for e in &events[events.len() - tail..] {
        arrow_line(&mut out, e);
    }
    out
}

/// A failing run's trace as a Mermaid sequence diagram: at most
/// `max_events` datagrams around event `failed` (the one nearest the
/// failure, about as many before it as after), a note for each stretch
/// left out saying which trace lines and times it covers, and the failure
/// itself, `what` at `at`, in a note beside that event (before it if the
/// failure came first), both highlighted. A long run's failure is often
/// in the middle, where [`render_mermaid`] would cut it out.
pub fn render_mermaid_failure(
    events: &[TraceEvent],
    max_events: usize,
    failed: usize,
    at: Duration,
    what: &str,
) -> String {
    let (mut out, first) = mermaid_head(events);
    let failed = failed.min(events.len().saturating_sub(1));
    let max_events = max_events.max(1);
    let end = (failed.saturating_sub(max_events / 2) + max_events).min(events.len());
    let start = end.saturating_sub(max_events);
    let cut = |out: &mut String, from: usize, to: usize| {
        // Trace lines count from 1; `from..to` are indices.
        if let (Some(a), Some(b)) = (events.get(from), events.get(to.wrapping_sub(1))) {
            let _ = writeln!(
                out,
                "    Note over {first}: {} datagrams not shown (trace lines {} to {}, {:.3}s to {:.3}s)",
                to - from,
                from + 1,
                to,
                a.at_us as f64 / 1e6,
                b.at_us as f64 / 1e6,
            );
        }
    };
    if start > 0 {
        cut(&mut out, 0, start);
    }
    for (i, e) in events.iter().enumerate().take(end).skip(start) {
        if i != failed {
            arrow_line(&mut out, e);
            continue;
        }
        let short: String = what.chars().take(160).collect();
        let ellipsis = if short.len() < what.len() { "..." } else { "" };
        let over = if e.from == e.to {
            mermaid_id(&e.from)
        } else {
            format!("{},{}", mermaid_id(&e.from), mermaid_id(&e.to))
        };
        let note = format!(
            "    Note over {over}: {}\n",
            mermaid_text(&format!(
                "FAILED at {:.3}s (trace line {}) {short}{ellipsis}",
                at.as_secs_f64(),
                i + 1
            ))
        );
        out.push_str("    rect rgb(255, 221, 221)\n");
        let before = at.as_micros() < u128::from(e.at_us);
        if before {
            out.push_str(&note);
        }
        arrow_line(&mut out, e);
        if !before {
            out.push_str(&note);
        }
        out.push_str("    end\n");
    }
    if end < events.len() {
        cut(&mut out, end, events.len());
    }
    out
}

/// The diagram's first line and its participants, and the first
/// participant's id (where the notes go).
fn mermaid_head(events: &[TraceEvent]) -> (String, String) {
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
    let first = mermaid_id(participants.first().map_or("a", |p| p));
    (out, first)
}

/// One datagram as an arrow; a dropped one ends in a cross.
fn arrow_line(out: &mut String, e: &TraceEvent) {
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
        mermaid_text(&label)
    );
}

/// Text Mermaid shows as it is: no statement separators, entity codes or
/// further colons, and no line breaks.
fn mermaid_text(text: &str) -> String {
    text.replace([';', '#', ':', '\n', '\r'], " ")
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

    /// `n` datagrams a millisecond apart, alternately each way.
    fn long(n: u64) -> Vec<TraceEvent> {
        let t = Trace::new();
        for i in 0..n {
            let (from, to) = if i % 2 == 0 {
                ("server", "rpi4")
            } else {
                ("rpi4", "server")
            };
            t.record(
                Duration::from_millis(i),
                from.into(),
                to.into(),
                TraceFate::Delivered,
                &[0, 4, (i >> 8) as u8, i as u8],
            );
        }
        t.events()
    }

    #[test]
    fn a_failure_in_the_middle_is_shown_with_what_was_cut_around_it() {
        let events = long(1000);
        let m = render_mermaid_failure(&events, 10, 500, Duration::from_micros(500_200), "x: y");
        let body: Vec<&str> = m.lines().skip(3).collect();
        assert_eq!(
            body.first().copied(),
            Some("    Note over server: 495 datagrams not shown (trace lines 1 to 495, 0.000s to 0.494s)")
        );
        assert_eq!(
            body.last().copied(),
            Some("    Note over server: 495 datagrams not shown (trace lines 506 to 1000, 0.505s to 0.999s)")
        );
        let arrows: Vec<&&str> = body.iter().filter(|l| l.contains("ms ACK")).collect();
        assert_eq!(arrows.len(), 10);
        assert!(arrows[0].contains(" 495.0ms ACK  495"), "{m}");
        // The failing moment comes after event 500 (line 501), so its note
        // follows that arrow, both inside the highlight.
        let at = body
            .iter()
            .position(|l| l.contains("500.0ms ACK  500"))
            .expect("the failing event is shown");
        assert_eq!(body[at - 1], "    rect rgb(255, 221, 221)");
        assert_eq!(
            body[at + 1],
            "    Note over server,rpi4: FAILED at 0.500s (trace line 501) x  y"
        );
        assert_eq!(body[at + 2], "    end");
    }

    #[test]
    fn a_failure_near_an_end_fills_the_window_from_the_other_side() {
        let events = long(100);
        let m = render_mermaid_failure(&events, 10, 99, Duration::from_millis(98), "late");
        assert!(m.contains("Note over server: 90 datagrams not shown (trace lines 1 to 90,"));
        assert_eq!(m.matches("ms ACK").count(), 10, "{m}");
        // Before the event it is nearest, so the note comes first.
        assert!(m.contains("FAILED at 0.098s (trace line 100) late\n    rpi4->>server: 99.0ms ACK"));
        let first = render_mermaid_failure(&events, 10, 0, Duration::ZERO, "early");
        assert_eq!(first.matches("not shown").count(), 1);
        assert!(first.contains("(trace lines 11 to 100, 0.010s to 0.099s)"));
        // A short trace is drawn whole, the failure marked.
        let short = render_mermaid_failure(&events[..5], 10, 2, Duration::from_millis(2), "z");
        assert!(!short.contains("not shown"));
        assert_eq!(
            short.matches("FAILED at 0.002s (trace line 3) z").count(),
            1
        );
    }

    #[test]
    fn a_trace_keeps_datagrams_only_when_asked() {
        let plain = Trace::new();
        plain.record(
            Duration::ZERO,
            "a".into(),
            "b".into(),
            TraceFate::Delivered,
            b"\x00\x04\x00\x01",
        );
        assert_eq!(plain.take_datagrams(), None);
        let keeping = Trace::keeping_datagrams();
        keeping.record(
            Duration::ZERO,
            "a".into(),
            "b".into(),
            TraceFate::Delivered,
            b"\x00\x04\x00\x01",
        );
        keeping.record_rendered(
            Duration::ZERO,
            "a".into(),
            "b".into(),
            TraceFate::Delivered,
            4,
            "ACK #2".into(),
        );
        assert_eq!(keeping.len(), 2);
        assert_eq!(
            keeping.take_datagrams(),
            Some(vec![b"\x00\x04\x00\x01".to_vec(), Vec::new()]),
            "one per event, empty where the bytes were not given"
        );
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
