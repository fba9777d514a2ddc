//! The retransmission timer every machine runs its resends by.

use super::common::Counters;
use std::time::{Duration, Instant};

/// The retransmission timer: an adaptive timeout (RFC 6298's estimator,
/// Karn's rule for samples) between a floor and a ceiling, with a retry
/// budget. The deadline is armed when a datagram is sent and only then:
/// receiving a duplicate never moves it.
///
/// - The **ceiling** is what the peer was told: the negotiated `timeout`
///   option, or the configured timeout. A sender's timer never waits
///   longer. A receiver's does, once a transfer is under way: its resends
///   back off past the ceiling to 8 s (see `receiver_ceiling`), because
///   its re-ACKs can keep a sender's own timer from firing.
/// - The **floor** (`min_rto`) keeps a brief stall of the peer from causing
///   a resend: duplicate DATA is not free (the rpi4's start4.elf hangs now
///   and then on one). A floor at or above the ceiling makes the timer fixed,
///   which is how firmware that the lab emulates behaves.
/// - Before the first round-trip sample the timeout is the ceiling, capped
///   at [`Timer::INITIAL`] (RFC 6298 2.1).
/// - Each timeout doubles the timeout up to the ceiling (exponential
///   backoff); the doubling ends when a fresh sample arrives.
/// - The retry budget counts only timeouts that waited the full ceiling, so
///   a sender gives up after as long a silence as a fixed timer allowed:
///   the faster early resends come on top, at most [`Timer::backoff_steps`].
///   A receiver past its first retries waits longer per retry (up to 8 s).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    ceiling: Duration,
    floor: Duration,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Consecutive timeouts since the last fresh sample.
    backoff: u32,
    /// A block's own round trip has been measured (not only the
    /// handshake's): the floor no longer starts at `CAUTIOUS_FLOOR`.
    data_sampled: bool,
    /// How many estimated timeouts the timer waits (1, or 2 for a
    /// receiver: see [`Timer::patient`]).
    patience: u32,
    /// The timeout the armed deadline was computed with.
    armed_with: Duration,
    /// When the first (not resent) request or OACK went out, to take a
    /// round-trip sample from the answer.
    handshake_sent: Option<Instant>,
    /// A request or OACK is out and unanswered.
    handshaking: bool,
    max_retries: u32,
    retries: u32,
    deadline: Option<Instant>,
}

/// What [`Timer::expire`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// The deadline has not passed (or none is armed): nothing to do.
    Waiting,
    /// The timer fired and the budget allows a resend.
    Resend,
    /// The timer fired with the retry budget spent: give up.
    GiveUp,
}

impl Timer {
    /// The timeout before any round trip was measured (RFC 6298 2.1).
    pub const INITIAL: Duration = Duration::from_secs(1);
    /// The longest wait a receiver's backoff reaches past a shorter
    /// ceiling: more than the longest sender timer seen (tftp-hpa's 5 s).
    pub const RECEIVER_SILENCE: Duration = Duration::from_secs(8);
    /// The floor until a block's own round trip has been measured, and the
    /// highest [`Timer::spurious`] raises a floor to: the default floor,
    /// so both matter only for a floor configured lower. A client's first DATA
    /// can take far longer than its answer to the OACK: U-Boot 2023.01 in
    /// QEMU answered the OACK in 0.5 ms, then took 8.3 ms over DATA #1 and
    /// 4.7 ms over DATA #2 before settling at 0.2 ms a block, and a 2 ms
    /// floor from the handshake's sample resent both (`hw-tests`
    /// conformance run).
    pub const CAUTIOUS_FLOOR: Duration = Duration::from_millis(20);
    /// Clock granularity term of RFC 6298's timeout formula.
    const GRANULARITY: Duration = Duration::from_millis(1);

    pub fn new(ceiling: Duration, floor: Duration, max_retries: u32) -> Self {
        Timer {
            ceiling,
            floor,
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
            data_sampled: false,
            patience: 1,
            armed_with: ceiling,
            handshake_sent: None,
            handshaking: false,
            max_retries,
            retries: 0,
            deadline: None,
        }
    }

    /// A receiver's timer: twice the estimate, so the sender's fires first.
    /// Both sides of a TFTP transfer resend on timeout, and when an ACK is
    /// lost and the receiver's timer fires first, its re-ACK answers the
    /// sender's DATA late: the sender times its round trip with the
    /// receiver's timeout in it, its timeout grows, the receiver's fires
    /// first ever more often (at 5 % loss the sender's timeout climbed to
    /// half a second). The receiver's resend is the fallback for a sender
    /// that stays silent.
    pub fn patient(mut self) -> Self {
        self.patience = 2;
        self
    }

    /// A resend after a timeout turned out not to be needed: the peer
    /// answered both the original and the resend, so it was slower than
    /// the timer, not lost. `stall` is how long the original took to be
    /// answered, when known. The floor rises to a quarter above the stall
    /// (twice itself when the stall is unknown), up to
    /// [`Timer::CAUTIOUS_FLOOR`]; it never falls, and a floor configured
    /// higher stays as it is. A peer that pauses longer than the floor now
    /// and then is sent a few duplicates, however long the transfer, while
    /// a lost DATA or ACK to a peer that answers at once costs a few
    /// milliseconds. A network that duplicates datagrams looks the same (an
    /// ACK twice after a resend): the cap keeps that from raising the floor
    /// past what a stall is worth.
    pub fn spurious(&mut self, stall: Option<Duration>) {
        let cap = Self::CAUTIOUS_FLOOR.max(self.floor).min(self.ceiling);
        let wanted = match stall {
            Some(stall) => stall.saturating_add(stall / 4),
            None => self.floor.saturating_mul(2),
        };
        self.floor = wanted.min(cap).max(self.floor);
    }

    /// The floor the timer runs with now (raised by [`Timer::spurious`]).
    #[cfg(test)]
    pub fn floor(&self) -> Duration {
        self.floor
    }

    /// Sets the ceiling (the negotiated or configured timeout).
    pub fn set_ceiling(&mut self, ceiling: Duration) {
        self.ceiling = ceiling;
    }

    /// The timeout the next [`Timer::arm`] uses.
    pub fn rto(&self) -> Duration {
        self.backed_off().min(self.receiver_ceiling())
    }

    /// The estimate, floored, times the backoff and the patience: the
    /// timeout before any ceiling applies.
    fn backed_off(&self) -> Duration {
        let base = match self.srtt {
            None => self.ceiling.min(Self::INITIAL),
            Some(srtt) => srtt + (4 * self.rttvar).max(Self::GRANULARITY),
        };
        let factor = 1u32
            .checked_shl(self.backoff)
            .unwrap_or(u32::MAX)
            .saturating_mul(self.patience);
        let floor = if self.data_sampled {
            self.floor
        } else {
            self.floor.max(Self::CAUTIOUS_FLOOR)
        };
        base.max(floor).saturating_mul(factor)
    }

    /// The longest wait the backoff can reach: the ceiling, or for a
    /// receiver under way the longer silence of `receiver_ceiling`.
    fn longest_wait(&self) -> Duration {
        if self.patience > 1 && !self.handshaking {
            self.ceiling.max(Self::RECEIVER_SILENCE)
        } else {
            self.ceiling
        }
    }

    /// A receiver's resends back off past the ceiling: each one that waited
    /// the full ceiling doubles the next wait, up to
    /// [`Timer::RECEIVER_SILENCE`] (a ceiling above that stays as it is).
    /// A lost DATA is the sender's to resend; the receiver's resend only
    /// recovers a lost ACK, and the first one does that. tftp-hpa's client
    /// restarts its 5 s timer on every datagram it receives
    /// (`alarm(rexmtval)` before each `recvfrom` in `tftp_sendfile`) and
    /// ignores a repeated ACK, so it never resent a lost DATA while re-ACKs
    /// came every second, and the upload died when the receiver gave up
    /// (`tests/interop.rs`, with the real client). Doubling opens a silence
    /// longer than such a sender's timer.
    ///
    /// Not for a request still unanswered: a client whose RRQ meets
    /// silence resends it at the ceiling and gives up as soon as before.
    fn receiver_ceiling(&self) -> Duration {
        if self.patience > 1 && !self.handshaking {
            self.ceiling
                .saturating_mul(1 << self.retries.min(4))
                .min(self.ceiling.max(Self::RECEIVER_SILENCE))
        } else {
            self.ceiling
        }
    }

    /// How long until the peer's answers reflect what was just sent: the
    /// smoothed round trip plus its variation, without the floor or the
    /// backoff (before any sample: the timeout itself).
    pub fn round_trip_bound(&self) -> Duration {
        match self.srtt {
            Some(srtt) => srtt + (4 * self.rttvar).max(Self::GRANULARITY),
            None => self.rto(),
        }
    }

    /// A round trip of a DATA block (or of the ACK a receiver sent), sent
    /// once (Karn). From the first one on, the floor is the configured (or
    /// learnt) one, no longer [`Timer::CAUTIOUS_FLOOR`].
    pub fn sample(&mut self, rtt: Duration) {
        self.update_estimate(rtt);
        self.data_sampled = true;
    }

    /// RFC 6298's estimator, fed one round trip.
    fn update_estimate(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (3 * self.rttvar + delta) / 4;
                self.srtt = Some((7 * srtt + rtt) / 8);
            }
        }
        self.backoff = 0;
    }

    /// The request or OACK went out (`first` when it was not a resend):
    /// the timer runs from now.
    pub fn handshake_sent(&mut self, now: Instant, first: bool) {
        self.handshake_sent = first.then_some(now);
        self.handshaking = true;
        self.arm(now);
    }

    /// The handshake was answered: a sample if it went out only once.
    pub fn handshake_answered(&mut self, now: Instant) {
        self.handshaking = false;
        if let Some(sent) = self.handshake_sent.take() {
            self.update_estimate(now.saturating_duration_since(sent));
        }
    }

    /// A datagram was just sent: the timer runs from now.
    pub fn arm(&mut self, now: Instant) {
        self.armed_with = self.rto();
        self.deadline = Some(now + self.armed_with);
    }

    /// Nothing more to time: the last datagram needs no answer.
    pub fn disarm(&mut self) {
        self.deadline = None;
    }

    /// When the armed timer fires.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How many retries at the ceiling the budget allows.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    pub fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// Time passed: if the deadline has, counts the timeout and spends a
    /// retry ([`Timer::retry`]).
    pub fn expire(&mut self, now: Instant, counters: &mut Counters) -> Expiry {
        if !self.expired(now) {
            return Expiry::Waiting;
        }
        counters.timeouts += 1;
        if self.retry() {
            Expiry::Resend
        } else {
            Expiry::GiveUp
        }
    }

    /// [`Timer::expire`] while a handshake (the OACK, or a client's
    /// request) is unanswered: a resend counts as a control retransmission.
    pub fn expire_handshake(&mut self, now: Instant, counters: &mut Counters) -> Expiry {
        let expiry = self.expire(now, counters);
        if expiry == Expiry::Resend {
            counters.control_retransmitted += 1;
        }
        expiry
    }

    /// The peer made progress: the retry budget starts over, and the
    /// backoff steps down by one. Karn's rule alone keeps a backed-off
    /// timeout until a block sent only once is acknowledged, and under
    /// steady loss resends rarely leave one unresent: the timeout doubled
    /// from one loss to the next (20 ms to over 300 ms at 5 % loss). One
    /// step per advance brings it back down, while a path whose round trip
    /// really grew keeps the timeout near it: a timeout steps up again as
    /// often as progress steps down.
    pub fn progress(&mut self) {
        self.retries = 0;
        self.backoff = self.backoff.saturating_sub(1);
    }

    /// The timer fired: backs off, and consumes one retry if it had waited
    /// the full ceiling. `false` when the budget is spent.
    ///
    /// The backoff stops counting once the timeout reaches the longest
    /// wait it may (the ceiling, for a sender): a long silence used to
    /// leave it ten and more doublings up, so the
    /// steps down on progress afterwards changed nothing, and the next
    /// lost DATA waited the full ceiling again. Against U-Boot (5 s, the
    /// same as its own timer, which it counts over the whole transfer)
    /// that spent one of its timeouts per loss after every stall.
    pub fn retry(&mut self) -> bool {
        self.deadline = None;
        self.handshake_sent = None;
        if self.backed_off() < self.longest_wait() {
            self.backoff = self.backoff.saturating_add(1);
        }
        if self.armed_with < self.ceiling {
            return true;
        }
        if self.retries >= self.max_retries {
            return false;
        }
        self.retries += 1;
        true
    }

    /// How many timeouts a machine with this configuration takes, once its
    /// peer falls silent, before it gives up: the retries at the ceiling
    /// (the configured timeout, or a negotiated one of up to 255 s) plus the
    /// backoff steps below it. The fuzz targets and proptests bound by it.
    pub fn timeouts_before_giving_up(retries: u32, floor: Duration, timeout: Duration) -> u32 {
        let ceiling = timeout.max(Duration::from_secs(255));
        retries + Self::backoff_steps(floor, ceiling)
    }

    /// The most timeouts below the ceiling between two full-ceiling ones:
    /// how many extra resends backoff can add to the retry budget.
    pub fn backoff_steps(floor: Duration, ceiling: Duration) -> u32 {
        let mut steps = 0;
        let mut t = floor.max(Duration::from_nanos(1));
        while t < ceiling {
            t = t.saturating_mul(2);
            steps += 1;
        }
        steps
    }
}

/// How many timeouts a machine configured with `retries`, a timer floor of
/// `min_rto` and a timeout of `timeout` takes, once its peer falls silent,
/// before it gives up: the bound a harness checks a run against.
pub fn timeouts_before_giving_up(retries: u32, min_rto: Duration, timeout: Duration) -> u32 {
    Timer::timeouts_before_giving_up(retries, min_rto, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_budget_and_progress() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        // A fixed timer: the floor is the ceiling.
        let mut t = Timer::new(second, second, 2);
        assert!(!t.expired(now));
        t.arm(now);
        assert!(!t.expired(now + Duration::from_millis(999)));
        assert!(t.expired(now + second));
        assert!(t.retry());
        assert!(t.retry());
        assert!(!t.retry());
        t.progress();
        assert!(t.retry());
        t.sample(Duration::from_millis(1));
        assert_eq!(t.rto(), second, "a fixed timer ignores samples");
    }

    #[test]
    fn timer_adapts_between_floor_and_ceiling() {
        let ms = Duration::from_millis;
        let mut t = Timer::new(ms(5000), ms(20), 3);
        assert_eq!(t.rto(), ms(1000), "no sample yet: RFC 6298's initial 1 s");
        t.sample(ms(2));
        // srtt 2, rttvar 1: 2 + 4 = 6, raised to the floor.
        assert_eq!(t.rto(), ms(20));
        for _ in 0..20 {
            t.sample(ms(40));
        }
        assert!(t.rto() > ms(40) && t.rto() < ms(60), "{:?}", t.rto());
        // Backoff doubles up to the ceiling; the early timeouts are free.
        let now = Instant::now();
        let mut waited = Vec::new();
        loop {
            t.arm(now);
            waited.push(t.rto());
            if !t.retry() {
                break;
            }
        }
        let full = waited.iter().filter(|&&w| w == ms(5000)).count();
        assert_eq!(
            full, 4,
            "three retries at the ceiling, then the give-up: {waited:?}"
        );
        assert!(waited.windows(2).all(|w| w[1] >= w[0]));
        assert!(waited.len() as u32 <= 4 + Timer::backoff_steps(ms(20), ms(5000)));
        // A fresh sample ends the backoff.
        t.progress();
        t.sample(ms(40));
        assert!(t.rto() < ms(100));
    }

    #[test]
    fn progress_steps_the_backoff_down_and_a_receiver_waits_twice_as_long() {
        let ms = Duration::from_millis;
        let now = Instant::now();
        let mut t = Timer::new(ms(5000), ms(20), 3);
        t.sample(ms(2));
        for _ in 0..3 {
            t.arm(now);
            assert!(t.retry());
        }
        assert_eq!(t.rto(), ms(160));
        t.progress();
        assert_eq!(
            t.rto(),
            ms(80),
            "one step down per advance, no sample needed"
        );
        for _ in 0..5 {
            t.progress();
        }
        assert_eq!(t.rto(), ms(20));
        let mut r = Timer::new(ms(5000), ms(20), 3).patient();
        r.sample(ms(2));
        assert_eq!(r.rto(), ms(40));
        r.sample(ms(4000));
        assert_eq!(r.rto(), ms(5000), "never past the ceiling");
        let fixed = Timer::new(ms(1000), ms(1000), 3).patient();
        assert_eq!(fixed.rto(), ms(1000), "a fixed timer stays fixed");
    }

    #[test]
    fn after_a_long_silence_one_advance_brings_a_sender_below_its_ceiling() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Timer::new(ms(5000), ms(20), 40);
        t.sample(ms(2));
        // 20 ms doubled: 40, ..., 5120 capped at 5 s after 8 timeouts;
        // twenty more at the ceiling add nothing to climb down from.
        for _ in 0..28 {
            t.arm(now);
            assert!(t.retry());
        }
        assert_eq!(t.rto(), ms(5000));
        t.progress();
        assert_eq!(t.rto(), ms(2560), "one step down, not one of twenty");
        // A receiver backs off to its longer silence, and no further.
        let mut r = Timer::new(ms(1000), ms(20), 40).patient();
        r.sample(ms(2));
        for _ in 0..28 {
            r.arm(now);
            assert!(r.retry());
        }
        assert_eq!(r.rto(), Timer::RECEIVER_SILENCE);
        r.progress();
        assert_eq!(r.rto(), ms(1000), "back under the ceiling in one step");
    }

    #[test]
    fn a_spurious_resend_raises_the_floor_past_the_stall_up_to_20_ms() {
        let ms = Duration::from_millis;
        let mut t = Timer::new(ms(1000), ms(2), 5);
        let floors: Vec<_> = [
            Some(ms(4)),
            Some(ms(3)),
            None,
            Some(ms(12)),
            None,
            Some(ms(90)),
        ]
        .into_iter()
        .map(|stall| {
            t.spurious(stall);
            t.floor()
        })
        .collect();
        // A quarter above the stall, never lower, twice itself without one.
        assert_eq!(floors, [ms(5), ms(5), ms(10), ms(15), ms(20), ms(20)]);
        // A floor configured above the cap, or a fixed timer, stays.
        let mut high = Timer::new(ms(1000), ms(50), 5);
        high.spurious(Some(ms(100)));
        assert_eq!(high.floor(), ms(50));
        let mut fixed = Timer::new(ms(5000), ms(5000), 5);
        fixed.spurious(None);
        assert_eq!(fixed.floor(), ms(5000));
        // Nor past a ceiling below the cap.
        let mut short = Timer::new(ms(10), ms(8), 5);
        short.spurious(None);
        assert_eq!(short.floor(), ms(10));
    }

    #[test]
    fn the_first_block_waits_the_cautious_floor_whatever_the_handshake_measured() {
        let (ms, us) = (Duration::from_millis, Duration::from_micros);
        let t0 = Instant::now();
        let mut t = Timer::new(ms(1000), ms(2), 5);
        t.handshake_sent(t0, true);
        t.handshake_answered(t0 + us(500));
        // The OACK's 0.5 ms says little about DATA #1 (U-Boot in QEMU:
        // 8.3 ms): 20 ms until a block's own round trip is measured.
        assert_eq!(t.rto(), ms(20));
        t.sample(ms(8));
        // srtt 0.5 -> 1.4375 ms, rttvar 0.25 -> 2.0625 ms: 9.6875 ms.
        assert_eq!(t.rto(), Duration::from_nanos(9_687_500));
        for _ in 0..40 {
            t.sample(us(200));
        }
        assert_eq!(t.rto(), ms(2), "then the configured floor");
    }
}
