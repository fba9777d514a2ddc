//! The fault plan: what the network does to each datagram, per direction,
//! decided by a seeded generator so a run replays exactly from its seed.
//!
//! turmoil cannot duplicate datagrams, reorders only through latency jitter
//! and its `fail_rate` drops whole links, so tftplab decides every
//! datagram's fate itself. The simulator applies the decision on its
//! sockets; the hardware runner applies the same decision to frames.
//!
//! Damage (bit flips, truncation) is modelled as it happens on a wire: the
//! receiving UDP stack's checksum catches it and drops the datagram. In the
//! simulator that is a recorded drop; on hardware the damaged frame really
//! goes out and the receiver's checksum check does the dropping.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Faults for both directions of every client-server link.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    #[serde(default)]
    pub client_to_server: LinkFaults,
    #[serde(default)]
    pub server_to_client: LinkFaults,
    /// Fates for specific datagrams ("drop the first OACK"), applied before
    /// the random faults.
    #[serde(default)]
    pub script: Vec<ScriptRule>,
}

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// What a script rule does to the datagram it matches: `fate = "drop"`,
/// `"duplicate"`, `{ delay = "5ms" }`, `{ duplicate_after = "30ms" }` or
/// `{ outage = "2s" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptFate {
    Drop,
    /// Delivered twice, the copy right behind it.
    Duplicate,
    /// Held back this long beyond its latency, so datagrams sent after it
    /// can arrive first ("DATA #k after #k+1").
    Delay(#[serde(deserialize_with = "super::scenario::duration::deserialize")] Duration),
    /// Delivered, and a copy of it this much later (a late duplicate).
    DuplicateAfter(#[serde(deserialize_with = "super::scenario::duration::deserialize")] Duration),
    /// Lost, and so is every datagram either way for this long after it:
    /// a partition that starts at a point of the transfer ("2 s from the
    /// first DATA #20") rather than at a time. Copies already held back
    /// still arrive.
    Outage(#[serde(deserialize_with = "super::scenario::duration::deserialize")] Duration),
}

/// "The `nth` datagram in `direction` whose one-line rendering starts with
/// `packet` gets `fate`", e.g. the first `OACK`, or `ACK #3` (the final ACK
/// of a 1 KiB file at blksize 512). Matches are counted per sending host:
/// each client counts its own, the server counts across its transfers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptRule {
    pub direction: Direction,
    pub packet: String,
    #[serde(default = "first")]
    pub nth: u32,
    pub fate: ScriptFate,
}

fn first() -> u32 {
    1
}

impl ScriptRule {
    /// Drops the `nth` datagram in `direction` rendered as `packet...`.
    pub fn drop(direction: Direction, packet: &str, nth: u32) -> Self {
        ScriptRule {
            direction,
            packet: packet.to_owned(),
            nth,
            fate: ScriptFate::Drop,
        }
    }

    /// Duplicates the `nth` datagram in `direction` rendered as `packet...`.
    pub fn duplicate(direction: Direction, packet: &str, nth: u32) -> Self {
        ScriptRule {
            fate: ScriptFate::Duplicate,
            ..ScriptRule::drop(direction, packet, nth)
        }
    }
}

/// The end of the outage a script rule started, shared by the scripts of
/// both directions of a run (see [`Script::with_outage`]).
#[derive(Debug, Clone, Default)]
pub struct Outage(Arc<AtomicU64>);

impl Outage {
    /// Cuts every link until `until` (time since the run began).
    fn start(&self, until: Duration) {
        let us = u64::try_from(until.as_micros()).unwrap_or(u64::MAX);
        self.0.fetch_max(us, Ordering::Relaxed);
    }

    /// Whether a datagram sent at `now` falls into the outage.
    fn cuts(&self, now: Duration) -> bool {
        now.as_micros() < u128::from(self.0.load(Ordering::Relaxed))
    }
}

/// Applies script rules in one direction, counting matches.
#[derive(Debug, Clone)]
pub struct Script {
    rules: Vec<(ScriptRule, u32)>,
    outage: Outage,
}

impl Script {
    pub fn new(plan: &FaultPlan, direction: Direction) -> Self {
        let rules = plan
            .script
            .iter()
            .filter(|r| r.direction == direction)
            .map(|r| (r.clone(), 0))
            .collect();
        Script {
            rules,
            outage: Outage::default(),
        }
    }

    /// Shares `outage` with the other direction's script, so an `outage`
    /// rule cuts both ways (alone, it cuts only its own direction).
    pub fn with_outage(mut self, outage: &Outage) -> Self {
        self.outage = outage.clone();
        self
    }

    /// The scripted fate of a datagram rendered as `packet`, if any rule
    /// fires on it.
    pub fn fate(&mut self, packet: &str) -> Option<ScriptFate> {
        let mut fired = None;
        for (rule, seen) in &mut self.rules {
            if packet.starts_with(rule.packet.as_str()) {
                *seen += 1;
                if *seen == rule.nth && fired.is_none() {
                    fired = Some(rule.fate);
                }
            }
        }
        fired
    }
}

/// Bursty loss: a bad state entered with probability `enter` per datagram,
/// in which each datagram is lost with probability `loss`. It ends one of
/// two ways, and a burst names exactly one:
/// - `exit`: left with that probability per datagram, the Gilbert-Elliott
///   chain netem's `loss gemodel` implements. A burst then lasts a count of
///   the sender's datagrams, however far apart they are: a client that sends
///   one ACK per 5 s retry stays in it for half a minute.
/// - `lasts = ["MIN", "MAX"]`: it lasts a time drawn from that range, like
///   interference or a congested queue. A sparse sender meets it once; a
///   window sent back to back can lose all of it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub enter: f64,
    #[serde(default)]
    pub exit: Option<f64>,
    #[serde(default)]
    pub lasts: Option<DelayRange>,
    #[serde(default = "one")]
    pub loss: f64,
}

impl Burst {
    /// Gilbert-Elliott: entered and left with these probabilities per
    /// datagram; every datagram in a burst is lost.
    pub fn per_datagram(enter: f64, exit: f64) -> Self {
        Burst {
            enter,
            exit: Some(exit),
            lasts: None,
            loss: 1.0,
        }
    }

    /// Entered with this probability per datagram, lasting a time drawn
    /// from `lasts`; every datagram in a burst is lost.
    pub fn lasting(enter: f64, lasts: DelayRange) -> Self {
        Burst {
            enter,
            exit: None,
            lasts: Some(lasts),
            loss: 1.0,
        }
    }
}

fn one() -> f64 {
    1.0
}

/// A fraction of datagrams held back by an extra delay in a range, so later
/// ones overtake them.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reorder {
    pub fraction: f64,
    pub delay: DelayRange,
}

/// A delay range written `["1ms", "20ms"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DelayRange {
    pub min: Duration,
    pub max: Duration,
}

impl DelayRange {
    /// Always exactly `d`.
    pub fn fixed(d: Duration) -> Self {
        DelayRange { min: d, max: d }
    }

    /// Anything from zero to `max`.
    pub fn up_to(max: Duration) -> Self {
        DelayRange {
            min: Duration::ZERO,
            max,
        }
    }
}

impl<'de> Deserialize<'de> for DelayRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// One end of the range, with the scenario's duration messages.
        struct End(Duration);
        impl<'de> Deserialize<'de> for End {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::scenario::duration::deserialize(d).map(End)
            }
        }
        // A single string where the pair belongs is the likeliest slip
        // (`latency = "1ms"`): say how to write a fixed delay.
        let shape = || {
            serde::de::Error::custom(
                "a delay range is [\"MIN\", \"MAX\"] (a fixed delay: [\"5ms\", \"5ms\"])",
            )
        };
        match toml::Value::deserialize(d)? {
            toml::Value::Array(items) => match <[toml::Value; 2]>::try_from(items) {
                Ok([a, b]) => {
                    let end =
                        |v: toml::Value| End::deserialize(v).map_err(serde::de::Error::custom);
                    Ok(DelayRange {
                        min: end(a)?.0,
                        max: end(b)?.0,
                    })
                }
                Err(_) => Err(shape()),
            },
            _ => Err(shape()),
        }
    }
}

/// Faults for one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFaults {
    /// Independent loss probability per datagram.
    #[serde(default)]
    pub loss: f64,
    pub burst: Option<Burst>,
    /// Probability that a datagram is duplicated.
    #[serde(default)]
    pub duplicate: f64,
    /// Extra copies sent when duplicating (default 1).
    #[serde(default)]
    pub copies: Option<u32>,
    pub reorder: Option<Reorder>,
    /// Probability of bit flips (caught by the UDP checksum).
    #[serde(default)]
    pub corrupt: f64,
    /// Probability of truncation (caught by the UDP length check).
    #[serde(default)]
    pub truncate: f64,
    /// One-way latency, drawn uniformly per datagram. The link is a queue,
    /// first in, first out: a datagram never arrives before one sent
    /// earlier the same way, so jitter alone reorders nothing (a real
    /// link's queue does not either); `reorder` is what reorders.
    #[serde(default)]
    pub latency: Option<DelayRange>,
}

impl FaultPlan {
    /// The same random faults in both directions, and no script.
    pub fn symmetric(link: LinkFaults) -> Self {
        FaultPlan {
            client_to_server: link,
            server_to_client: link,
            script: Vec::new(),
        }
    }

    /// The random faults of one direction.
    pub fn link(&self, direction: Direction) -> LinkFaults {
        match direction {
            Direction::ClientToServer => self.client_to_server,
            Direction::ServerToClient => self.server_to_client,
        }
    }

    pub fn check(&self) -> Result<(), String> {
        self.client_to_server
            .check()
            .map_err(|m| format!("client_to_server: {m}"))?;
        self.server_to_client
            .check()
            .map_err(|m| format!("server_to_client: {m}"))?;
        for r in &self.script {
            if r.nth == 0 || r.packet.is_empty() {
                return Err("script: packet must be non-empty and nth at least 1".into());
            }
        }
        Ok(())
    }

    /// No faults at all in either direction.
    pub fn is_clean(&self) -> bool {
        self.client_to_server.is_clean()
            && self.server_to_client.is_clean()
            && self.script.is_empty()
    }
}

impl LinkFaults {
    fn check(&self) -> Result<(), String> {
        let p = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v} is not a probability in 0..=1"))
            }
        };
        p("loss", self.loss)?;
        p("duplicate", self.duplicate)?;
        p("corrupt", self.corrupt)?;
        p("truncate", self.truncate)?;
        if let Some(b) = self.burst {
            p("burst.enter", b.enter)?;
            p("burst.loss", b.loss)?;
            match (b.exit, b.lasts) {
                (Some(exit), None) => p("burst.exit", exit)?,
                (None, Some(lasts)) => range("burst.lasts", lasts)?,
                _ => {
                    return Err("a burst ends by `exit` (a probability per datagram) or by \
                                `lasts` ([\"MIN\", \"MAX\"]), exactly one of them"
                        .into())
                }
            }
        }
        if let Some(r) = self.reorder {
            p("reorder.fraction", r.fraction)?;
            range("reorder.delay", r.delay)?;
        }
        if let Some(l) = self.latency {
            range("latency", l)?;
        }
        if self.copies.is_some_and(|c| c == 0 || c > 16) {
            return Err("copies must be 1..=16".into());
        }
        Ok(())
    }

    pub fn is_clean(&self) -> bool {
        *self
            == LinkFaults {
                latency: self.latency,
                ..LinkFaults::default()
            }
    }
}

fn range(name: &str, r: DelayRange) -> Result<(), String> {
    if r.min > r.max || r.max > Duration::from_secs(60) {
        return Err(format!("{name}: need MIN <= MAX <= 60s"));
    }
    Ok(())
}

/// Why a datagram did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Loss,
    Burst,
    /// Bits flipped on the way; the receiver's checksum dropped it.
    Corrupted,
    /// Cut short on the way; the receiver's length check dropped it.
    Truncated,
    /// A script rule said so.
    Scripted,
    /// Inside an outage a script rule started.
    Outage,
}

/// The fate of one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Delivered once per entry, after that entry's delay (more than one
    /// entry: duplicated; a delay above the latency: held back).
    Deliver {
        delays: Vec<Duration>,
        held_back: bool,
    },
    Dropped(Cause),
}

/// Decides fates for one direction from its own seeded generator.
#[derive(Debug, Clone)]
pub struct Injector {
    faults: LinkFaults,
    rng: ChaCha8Rng,
    in_burst: bool,
    /// When a burst with `lasts` ends, as time since the run began.
    burst_until: Duration,
    /// When the last datagram not held back arrives, as time since the run
    /// began: the queue's tail, which no later datagram overtakes.
    queue_tail: Duration,
}

impl Injector {
    pub fn new(faults: LinkFaults, seed: u64) -> Self {
        Injector {
            faults,
            rng: ChaCha8Rng::seed_from_u64(seed),
            in_burst: false,
            burst_until: Duration::ZERO,
            queue_tail: Duration::ZERO,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn delay_in(&mut self, r: DelayRange) -> Duration {
        let span = (r.max - r.min).as_micros() as u64;
        r.min + Duration::from_micros(self.rng.random_range(0..=span))
    }

    /// Decides the fate of a datagram sent at `now` (time since the run
    /// began; only a burst that `lasts` a time reads it). The draws happen
    /// in a fixed order, so the same seed and times give the same fates.
    pub fn decide(&mut self, now: Duration) -> Fate {
        let f = self.faults;
        if let Some(b) = f.burst {
            self.in_burst = match (self.in_burst, b.lasts) {
                (true, Some(_)) => now < self.burst_until,
                (true, None) => !self.chance(b.exit.unwrap_or(1.0)),
                // Entering starts a burst with this datagram.
                (false, lasts) => {
                    let enter = self.chance(b.enter);
                    if let (true, Some(lasts)) = (enter, lasts) {
                        self.burst_until = now + self.delay_in(lasts);
                    }
                    enter
                }
            };
            if self.in_burst && self.chance(b.loss) {
                return Fate::Dropped(Cause::Burst);
            }
        }
        if self.chance(f.loss) {
            return Fate::Dropped(Cause::Loss);
        }
        if self.chance(f.corrupt) {
            return Fate::Dropped(Cause::Corrupted);
        }
        if self.chance(f.truncate) {
            return Fate::Dropped(Cause::Truncated);
        }
        let copies = if self.chance(f.duplicate) {
            1 + f.copies.unwrap_or(1)
        } else {
            1
        };
        let mut delays = Vec::with_capacity(copies as usize);
        let mut held_back = false;
        for _ in 0..copies {
            let mut d = f.latency.map_or(Duration::ZERO, |l| self.delay_in(l));
            // First in, first out: behind whatever is still on its way.
            d = d.max(self.queue_tail.saturating_sub(now));
            self.queue_tail = now + d;
            if let Some(r) = f.reorder {
                if self.chance(r.fraction) {
                    held_back = true;
                    d += self.delay_in(r.delay);
                }
            }
            delays.push(d);
        }
        Fate::Deliver { delays, held_back }
    }

    /// Flips `bits` random bits of `frame` (for frame-level injection).
    pub fn damage(&mut self, frame: &mut [u8], bits: usize) {
        if frame.is_empty() {
            return;
        }
        for _ in 0..bits {
            let bit = self.rng.random_range(0..frame.len() * 8);
            frame[bit / 8] ^= 1 << (bit % 8);
        }
    }
}

/// The seed of one direction's [`Injector`] on a single client-server
/// link (the in-memory network): the two directions draw from different
/// generators, so faults one way do not shift the fates the other way.
pub fn link_seed(seed: u64, direction: Direction) -> u64 {
    match direction {
        Direction::ClientToServer => seed,
        Direction::ServerToClient => seed ^ 0x9E37_79B9_7F4A_7C15,
    }
}

/// A datagram's fate: the script's word first, then the random faults.
/// The injector is consulted for every datagram either way, so adding a
/// script rule does not shift the random fates of the others. Shared by
/// the simulator's sockets and the hardware runner's frames.
pub fn decide_scripted(
    injector: &mut Injector,
    script: &mut Script,
    rendered: &str,
    now: Duration,
) -> Fate {
    let random = injector.decide(now);
    let scripted = script.fate(rendered);
    if let Some(ScriptFate::Outage(d)) = scripted {
        script.outage.start(now + d);
        return Fate::Dropped(Cause::Outage);
    }
    if script.outage.cuts(now) {
        return Fate::Dropped(Cause::Outage);
    }
    let Some(fate) = scripted else {
        return random;
    };
    // The script's word stands even where the random draw lost the
    // datagram; what it adds travels like the original (same latency draw).
    let (mut delays, held_back) = match random {
        Fate::Deliver { delays, held_back } => (delays, held_back),
        Fate::Dropped(_) => (vec![Duration::ZERO], false),
    };
    match fate {
        ScriptFate::Drop => return Fate::Dropped(Cause::Scripted),
        ScriptFate::Duplicate => delays.push(delays[0]),
        ScriptFate::Delay(d) => {
            for delay in &mut delays {
                *delay += d;
            }
        }
        ScriptFate::DuplicateAfter(d) => delays.push(delays[0] + d),
        ScriptFate::Outage(_) => return Fate::Dropped(Cause::Outage),
    }
    let held_back =
        held_back || matches!(fate, ScriptFate::Delay(_) | ScriptFate::DuplicateAfter(_));
    Fate::Deliver { delays, held_back }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fates(faults: LinkFaults, seed: u64, n: usize) -> Vec<Fate> {
        let mut inj = Injector::new(faults, seed);
        (0..n).map(|_| inj.decide(Duration::ZERO)).collect()
    }

    #[test]
    fn same_seed_same_fates_and_rates_near_the_plan() {
        let f = LinkFaults {
            loss: 0.1,
            duplicate: 0.2,
            reorder: Some(Reorder {
                fraction: 0.3,
                delay: DelayRange {
                    min: Duration::from_millis(1),
                    max: Duration::from_millis(9),
                },
            }),
            ..LinkFaults::default()
        };
        let a = fates(f, 7, 20_000);
        assert_eq!(a, fates(f, 7, 20_000));
        assert_ne!(a, fates(f, 8, 20_000));
        let lost = a
            .iter()
            .filter(|x| matches!(x, Fate::Dropped(Cause::Loss)))
            .count();
        let dup = a
            .iter()
            .filter(|x| matches!(x, Fate::Deliver { delays, .. } if delays.len() == 2))
            .count();
        assert!((1800..2200).contains(&lost), "{lost}");
        assert!((3300..3900).contains(&dup), "{dup}"); // 0.9 * 0.2 * 20000 = 3600
    }

    #[test]
    fn bursts_cluster_losses() {
        let f = LinkFaults {
            burst: Some(Burst::per_datagram(0.01, 0.25)),
            ..LinkFaults::default()
        };
        let a = fates(f, 1, 50_000);
        let lost: Vec<bool> = a.iter().map(|x| matches!(x, Fate::Dropped(_))).collect();
        let total = lost.iter().filter(|&&l| l).count();
        let runs = lost.windows(2).filter(|w| w[1] && !w[0]).count();
        // Mean burst length 1/exit = 4: far fewer runs than losses.
        assert!(
            total > 1000 && runs * 2 < total,
            "total {total} runs {runs}"
        );
    }

    #[test]
    fn a_burst_that_lasts_a_time_ends_for_a_sparse_sender_and_not_for_a_dense_one() {
        let f = LinkFaults {
            burst: Some(Burst::lasting(
                0.05,
                DelayRange::fixed(Duration::from_millis(10)),
            )),
            ..LinkFaults::default()
        };
        // One datagram every 5 s (a lock-step client's retries): every burst
        // is over by the next one, so no two losses are ever consecutive.
        let mut inj = Injector::new(f, 4);
        let sparse: Vec<bool> = (0..4000u64)
            .map(|i| matches!(inj.decide(Duration::from_secs(5 * i)), Fate::Dropped(_)))
            .collect();
        let lost = sparse.iter().filter(|&&l| l).count();
        assert!((120..280).contains(&lost), "{lost}"); // 0.05 * 4000 = 200
        assert!(!sparse.windows(2).any(|w| w[0] && w[1]));
        // One datagram every 100 us: each burst takes the next 10 ms, 100.
        let mut inj = Injector::new(f, 4);
        let dense: Vec<bool> = (0..20_000u64)
            .map(|i| matches!(inj.decide(Duration::from_micros(100 * i)), Fate::Dropped(_)))
            .collect();
        let starts: Vec<usize> = (1..dense.len())
            .filter(|&i| dense[i] && !dense[i - 1])
            .collect();
        assert!(starts.len() > 50, "{}", starts.len());
        for &i in &starts[..starts.len() - 1] {
            let run = dense[i..].iter().take_while(|&&l| l).count();
            assert_eq!(run, 100, "burst at datagram {i}");
        }
    }

    #[test]
    fn a_burst_names_exactly_one_way_to_end() {
        let burst = |exit, lasts| LinkFaults {
            burst: Some(Burst {
                enter: 0.01,
                exit,
                lasts,
                loss: 1.0,
            }),
            ..LinkFaults::default()
        };
        let lasts = Some(DelayRange::fixed(Duration::from_millis(3)));
        assert!(burst(Some(0.3), None).check().is_ok());
        assert!(burst(None, lasts).check().is_ok());
        for bad in [burst(None, None), burst(Some(0.3), lasts)] {
            let e = bad.check().unwrap_err();
            assert!(e.contains("exactly one"), "{e}");
        }
    }

    #[test]
    fn latency_jitter_keeps_the_order_and_only_reorder_breaks_it() {
        let jitter = LinkFaults {
            duplicate: 0.2,
            latency: Some(DelayRange {
                min: Duration::from_micros(200),
                max: Duration::from_millis(5),
            }),
            ..LinkFaults::default()
        };
        // Datagrams 100 us apart, each with a fresh draw of 0.2-5 ms.
        let arrivals = |f: LinkFaults| {
            let mut inj = Injector::new(f, 3);
            let mut out = Vec::new();
            for i in 0..2000u64 {
                let now = Duration::from_micros(100 * i);
                if let Fate::Deliver { delays, .. } = inj.decide(now) {
                    out.extend(delays.iter().map(|d| now + *d));
                }
            }
            out
        };
        let a = arrivals(jitter);
        assert!(a.windows(2).all(|w| w[0] <= w[1]), "jitter overtook");
        // Still jitter, not a fixed delay: the queue stretches and drains.
        let mut gaps: Vec<Duration> = a.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort();
        assert!(gaps[gaps.len() - 1] > Duration::from_micros(500));
        let reordered = LinkFaults {
            reorder: Some(Reorder {
                fraction: 0.05,
                delay: DelayRange {
                    min: Duration::from_millis(1),
                    max: Duration::from_millis(3),
                },
            }),
            ..jitter
        };
        let b = arrivals(reordered);
        assert!(
            b.windows(2).any(|w| w[0] > w[1]),
            "reorder reordered nothing"
        );
    }

    #[test]
    fn clean_plan_delivers_everything_once_without_delay() {
        for f in fates(LinkFaults::default(), 3, 1000) {
            assert_eq!(
                f,
                Fate::Deliver {
                    delays: vec![Duration::ZERO],
                    held_back: false
                }
            );
        }
    }

    #[test]
    fn bad_plans_are_rejected() {
        let bad = LinkFaults {
            loss: 1.5,
            ..LinkFaults::default()
        };
        assert!(bad.check().is_err());
        let bad = LinkFaults {
            latency: Some(DelayRange {
                min: Duration::from_millis(5),
                max: Duration::from_millis(1),
            }),
            ..LinkFaults::default()
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn script_rules_fire_on_the_nth_match_only() {
        let plan = FaultPlan {
            script: vec![
                ScriptRule {
                    direction: Direction::ServerToClient,
                    packet: "OACK".into(),
                    nth: 2,
                    fate: ScriptFate::Drop,
                },
                ScriptRule {
                    direction: Direction::ClientToServer,
                    packet: "RRQ".into(),
                    nth: 1,
                    fate: ScriptFate::Duplicate,
                },
            ],
            ..FaultPlan::default()
        };
        let mut s2c = Script::new(&plan, Direction::ServerToClient);
        assert_eq!(s2c.fate("OACK blksize=1024"), None);
        assert_eq!(s2c.fate("DATA #1 (1024 B)"), None);
        assert_eq!(s2c.fate("OACK blksize=1024"), Some(ScriptFate::Drop));
        assert_eq!(s2c.fate("OACK blksize=1024"), None);
        let mut c2s = Script::new(&plan, Direction::ClientToServer);
        assert_eq!(c2s.fate("RRQ \"f\" octet"), Some(ScriptFate::Duplicate));
    }

    #[test]
    fn script_delays_a_datagram_or_sends_a_late_copy_on_top_of_its_latency() {
        let plan: FaultPlan = toml::from_str(
            r#"
            client_to_server = { latency = ["2ms", "2ms"] }
            script = [
              { direction = "client_to_server", packet = "ACK #3", fate = { delay = "5ms" } },
              { direction = "client_to_server", packet = "RRQ", fate = { duplicate_after = "30ms" } },
            ]
            "#,
        )
        .expect("plan");
        let mut inj = Injector::new(plan.client_to_server, 1);
        let mut script = Script::new(&plan, Direction::ClientToServer);
        let ms = Duration::from_millis;
        let mut fate = |p: &str| decide_scripted(&mut inj, &mut script, p, Duration::ZERO);
        assert_eq!(
            fate("RRQ \"f\" octet"),
            Fate::Deliver {
                delays: vec![ms(2), ms(32)],
                held_back: true
            }
        );
        assert_eq!(
            fate("ACK #2"),
            Fate::Deliver {
                delays: vec![ms(2)],
                held_back: false
            }
        );
        assert_eq!(
            fate("ACK #3"),
            Fate::Deliver {
                delays: vec![ms(7)],
                held_back: true
            }
        );
    }

    #[test]
    fn an_outage_rule_cuts_both_directions_from_its_datagram_for_its_time() {
        let plan: FaultPlan = toml::from_str(
            r#"
            script = [
              { direction = "server_to_client", packet = "DATA #3 ", fate = { outage = "2s" } },
            ]
            "#,
        )
        .expect("plan");
        let outage = Outage::default();
        let mut s2c_inj = Injector::new(plan.server_to_client, 1);
        let mut c2s_inj = Injector::new(plan.client_to_server, 2);
        let mut s2c = Script::new(&plan, Direction::ServerToClient).with_outage(&outage);
        let mut c2s = Script::new(&plan, Direction::ClientToServer).with_outage(&outage);
        let ms = Duration::from_millis;
        let cut = Fate::Dropped(Cause::Outage);
        let mut down = |p: &str, at: u64| decide_scripted(&mut s2c_inj, &mut s2c, p, ms(at));
        assert_eq!(down("DATA #2 (512 B)", 10), deliver_now_for_test());
        assert_eq!(down("DATA #3 (512 B)", 20), cut);
        assert_eq!(down("DATA #3 (512 B)", 1000), cut);
        let mut up = |p: &str, at: u64| decide_scripted(&mut c2s_inj, &mut c2s, p, ms(at));
        assert_eq!(up("ACK #2", 2019), cut);
        assert_eq!(up("ACK #2", 2020), deliver_now_for_test());
        let mut down = |p: &str, at: u64| decide_scripted(&mut s2c_inj, &mut s2c, p, ms(at));
        assert_eq!(down("DATA #3 (512 B)", 2021), deliver_now_for_test());
    }

    fn deliver_now_for_test() -> Fate {
        Fate::Deliver {
            delays: vec![Duration::ZERO],
            held_back: false,
        }
    }

    #[test]
    fn damage_flips_bits() {
        let mut inj = Injector::new(LinkFaults::default(), 9);
        let mut frame = [0u8; 64];
        inj.damage(&mut frame, 3);
        let flipped: u32 = frame.iter().map(|b| b.count_ones()).sum();
        assert!((1..=3).contains(&flipped));
    }
}
