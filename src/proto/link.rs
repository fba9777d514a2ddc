//! What every machine keeps about its peer, one concern per type:
//! - [`Peer`]: whose datagrams the transfer takes (the TID, locked in by a
//!   client on the server's first answer), and the ERROR 5 owed to anyone
//!   else, at most one a [`STRANGER_INTERVAL`];
//! - [`Outbox`]: the ERROR this side ends the transfer with, sent once;
//! - [`Events`]: what the application has yet to be told;
//! - [`Counters`]: everything counted.
//!
//! [`Link`] holds one of each and the little that ties them together:
//! counting what comes and goes, and which pending ERROR goes first.

use super::common::{Counters, Event, LocalError, Transmit};
use crate::wire::{emit_error, ErrorCode, Opcode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The shortest time between two ERROR 5 answers of one transfer (to
/// datagrams from a stranger: another host or port than the peer's).
pub const STRANGER_INTERVAL: Duration = Duration::from_secs(1);

/// The peer's transfer ID, and the ERROR 5 owed to a stranger.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The peer's address; `None` for a client that has not heard back yet.
    addr: Option<SocketAddr>,
    /// Where the request goes before the peer's TID is known.
    server: SocketAddr,
    /// An ERROR 5 owed to a stranger. One slot: a flood of strangers must
    /// not grow memory or make us a reflector.
    stranger: Option<SocketAddr>,
    /// No stranger is answered before this: at most one ERROR 5 per
    /// [`STRANGER_INTERVAL`], whoever sends.
    strangers_quiet_until: Option<Instant>,
}

impl Peer {
    /// A peer at `addr` (a server's transfer), or, with `None`, one whose
    /// TID the first answer from `server`'s IP settles (a client's).
    pub fn new(addr: Option<SocketAddr>, server: SocketAddr) -> Self {
        Peer {
            addr,
            server,
            stranger: None,
            strangers_quiet_until: None,
        }
    }

    /// The peer's address, once known.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Where to send: the peer, or the server's well-known address while
    /// the peer's TID is not known.
    pub fn dest(&self) -> SocketAddr {
        self.addr.unwrap_or(self.server)
    }

    /// The server answered from `from`: that is the peer's TID from now on.
    pub fn lock_in(&mut self, from: SocketAddr) {
        self.addr = Some(from);
    }

    /// Takes `from` as the peer unless one is known (an ERROR that ends the
    /// transfer before the server's TID was locked in).
    pub fn lock_in_if_unknown(&mut self, from: SocketAddr) {
        self.addr.get_or_insert(from);
    }

    /// Whether a datagram from `from` is the peer's (or, for a client, from
    /// the server's IP while the TID is not yet known). A stranger is owed
    /// ERROR 5, unless what it sent is itself an ERROR (RFC 1350: an ERROR
    /// is never answered; two transfers answering each other's ERROR 5
    /// would do so forever) or another stranger was answered less than
    /// [`STRANGER_INTERVAL`] ago (so a flood of forged sources cannot turn
    /// a transfer into a reflector).
    pub fn admits(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        let ok = match self.addr {
            Some(peer) => peer == from,
            None => from.ip() == self.server.ip(),
        };
        if ok {
            return true;
        }
        let is_error = datagram.starts_with(&[0, Opcode::Error as u8]);
        let quiet = self.strangers_quiet_until.is_some_and(|t| now < t);
        if self.stranger.is_none() && !is_error && !quiet {
            self.stranger = Some(from);
            self.strangers_quiet_until = Some(now + STRANGER_INTERVAL);
        }
        false
    }

    /// Whether an ERROR 5 waits to go out.
    pub fn owes_stranger(&self) -> bool {
        self.stranger.is_some()
    }

    /// Emits the ERROR 5 owed to a stranger, if any: its address and length.
    pub fn poll_stranger(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let dest = self.stranger.take()?;
        let len = emit_error(buf, ErrorCode::UNKNOWN_TID, "unknown transfer ID").ok()?;
        Some((dest, len))
    }
}

/// The ERROR this side ends the transfer with. A transfer ends once: the
/// first ERROR owed is the one sent, and it is sent once, unless the peer's
/// retransmissions show it was lost ([`Outbox::repeat`]).
#[derive(Debug, Default)]
pub(crate) enum Outbox {
    #[default]
    Empty,
    Owed(LocalError),
    Sent,
}

impl Outbox {
    /// Owes `error` to the peer, unless an ERROR was owed before.
    pub fn owe(&mut self, error: LocalError) {
        if let Outbox::Empty = self {
            *self = Outbox::Owed(error);
        }
    }

    /// Owes the ERROR already sent once more (see
    /// `RecvPhase::Failed`'s echo): the peer's retransmission says it was
    /// lost.
    pub fn repeat(&mut self, error: LocalError) {
        if let Outbox::Sent = self {
            *self = Outbox::Owed(error);
        }
    }

    /// Nothing waits to go out.
    pub fn is_idle(&self) -> bool {
        !matches!(self, Outbox::Owed(_))
    }

    /// Emits the owed ERROR for `dest`. With no peer to tell (a client that
    /// never heard back) it is dropped all the same.
    pub fn poll(
        &mut self,
        buf: &mut [u8],
        dest: Option<SocketAddr>,
    ) -> Option<(SocketAddr, usize)> {
        if self.is_idle() {
            return None;
        }
        let Outbox::Owed(error) = std::mem::replace(self, Outbox::Sent) else {
            return None;
        };
        let dest = dest?;
        let len = emit_error(buf, error.code, &error.message).ok()?;
        Some((dest, len))
    }
}

/// The events the application has yet to take, oldest first. A machine
/// reports at most two ([`Event::Negotiated`], then [`Event::Finished`]), so
/// two slots hold them without allocating; a third would be dropped.
#[derive(Debug, Default)]
pub(crate) struct Events([Option<Event>; 2]);

impl Events {
    pub fn push(&mut self, event: Event) {
        if let Some(slot) = self.0.iter_mut().find(|e| e.is_none()) {
            *slot = Some(event);
        }
    }

    pub fn poll(&mut self) -> Option<Event> {
        let first = self.0[0].take();
        self.0.swap(0, 1);
        first
    }
}

/// A machine's [`Peer`], [`Outbox`], [`Events`] and [`Counters`], and when
/// it started. Every machine owns one.
#[derive(Debug)]
pub(crate) struct Link {
    pub peer: Peer,
    pub outbox: Outbox,
    pub events: Events,
    pub counters: Counters,
    pub started: Instant,
}

/// What [`Link::accept`] decided about an incoming datagram.
pub(crate) enum Accept {
    /// From the peer (or, for a client, from the server's address while the
    /// TID is not yet known): process it.
    Peer,
    /// From anyone else: already answered with ERROR 5, ignore it.
    Stranger,
}

impl Link {
    pub fn new(now: Instant, peer: Option<SocketAddr>, server: SocketAddr) -> Self {
        Link {
            peer: Peer::new(peer, server),
            outbox: Outbox::default(),
            events: Events::default(),
            counters: Counters::default(),
            started: now,
        }
    }

    /// Sorts out a datagram by its source ([`Peer::admits`]), counting it.
    pub fn accept(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Accept {
        self.counters.datagrams_received += 1;
        if self.peer.admits(now, from, datagram) {
            return Accept::Peer;
        }
        self.counters.unknown_tid += 1;
        Accept::Stranger
    }

    /// Nothing left to send: no ERROR owed to the peer or a stranger.
    pub fn idle(&self) -> bool {
        !self.peer.owes_stranger() && self.outbox.is_idle()
    }

    /// Emits a pending ERROR (ERROR 5 for a stranger first, then ours).
    pub fn poll_control(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let (dest, len) = match self.peer.poll_stranger(buf) {
            Some(stranger) => stranger,
            None => self.outbox.poll(buf, self.peer.addr())?,
        };
        Some(self.sent(dest, len))
    }

    /// Counts a datagram that goes out.
    pub fn sent(&mut self, dest: SocketAddr, len: usize) -> Transmit {
        self.counters.datagrams_sent += 1;
        Transmit { dest, len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_sends_the_first_error_once() {
        let peer: SocketAddr = "10.0.0.2:1000".parse().unwrap();
        let mut buf = [0u8; 64];
        let mut outbox = Outbox::default();
        assert!(outbox.is_idle());
        assert!(outbox.poll(&mut buf, Some(peer)).is_none());
        outbox.owe(LocalError::new(ErrorCode::DISK_FULL, "full"));
        outbox.owe(LocalError::new(ErrorCode::UNDEFINED, "later"));
        assert!(!outbox.is_idle());
        let (dest, len) = outbox.poll(&mut buf, Some(peer)).unwrap();
        assert_eq!(dest, peer);
        assert_eq!(&buf[..len], b"\x00\x05\x00\x03full\x00");
        assert!(outbox.is_idle());
        assert!(outbox.poll(&mut buf, Some(peer)).is_none());
        outbox.owe(LocalError::new(ErrorCode::UNDEFINED, "after"));
        assert!(outbox.is_idle(), "a transfer ends once");
    }

    #[test]
    fn outbox_drops_an_error_with_no_peer_to_tell() {
        let mut buf = [0u8; 64];
        let mut outbox = Outbox::default();
        outbox.owe(LocalError::new(ErrorCode::UNDEFINED, "timed out"));
        assert!(outbox.poll(&mut buf, None).is_none());
        assert!(outbox.is_idle());
    }

    #[test]
    fn events_come_out_in_order() {
        let mut events = Events::default();
        assert_eq!(events.poll(), None);
        let negotiated = Event::Negotiated(Default::default());
        let finished = Event::Finished(Err(crate::proto::TransferError::TimedOut { retries: 1 }));
        events.push(negotiated.clone());
        events.push(finished.clone());
        assert_eq!(events.poll(), Some(negotiated));
        assert_eq!(events.poll(), Some(finished));
        assert_eq!(events.poll(), None);
    }

    #[test]
    fn a_client_peer_locks_in_on_the_first_answer() {
        let now = Instant::now();
        let server: SocketAddr = "10.0.0.2:69".parse().unwrap();
        let answer: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let mut peer = Peer::new(None, server);
        assert_eq!(peer.dest(), server);
        let data = b"\x00\x03\x00\x01";
        assert!(
            peer.admits(now, answer, data),
            "any port of the server's IP"
        );
        assert!(!peer.admits(now, "10.0.0.3:69".parse().unwrap(), data));
        peer.lock_in(answer);
        assert_eq!(peer.dest(), answer);
        assert!(!peer.admits(now, server, data), "now the TID is settled");
        peer.lock_in_if_unknown(server);
        assert_eq!(peer.addr(), Some(answer));
    }

    #[test]
    fn link_answers_one_stranger_at_a_time() {
        let now = Instant::now();
        let peer: SocketAddr = "10.0.0.2:1000".parse().unwrap();
        let mut link = Link::new(now, Some(peer), peer);
        let ack = b"\x00\x04\x00\x01";
        assert!(matches!(link.accept(now, peer, ack), Accept::Peer));
        for port in 2000..2010 {
            let from = SocketAddr::new(peer.ip(), port);
            assert!(matches!(link.accept(now, from, ack), Accept::Stranger));
        }
        let mut buf = [0u8; 64];
        let t = link.poll_control(&mut buf).unwrap();
        assert_eq!(t.dest.port(), 2000);
        assert_eq!(&buf[..4], b"\x00\x05\x00\x05");
        assert!(link.poll_control(&mut buf).is_none());
        assert_eq!(link.counters.unknown_tid, 10);
        // Within the interval, whoever it is: no answer.
        let later = now + STRANGER_INTERVAL / 2;
        assert!(matches!(
            link.accept(later, SocketAddr::new(peer.ip(), 3000), ack),
            Accept::Stranger
        ));
        assert!(link.poll_control(&mut buf).is_none());
        let after = now + STRANGER_INTERVAL;
        link.accept(after, SocketAddr::new(peer.ip(), 3001), ack);
        assert_eq!(link.poll_control(&mut buf).unwrap().dest.port(), 3001);
    }

    #[test]
    fn link_never_answers_an_error() {
        // Two transfers of one server, each a stranger to the other: if an
        // ERROR drew an ERROR 5, one forged ERROR would start an exchange
        // that lasts as long as both transfers.
        let now = Instant::now();
        let peer: SocketAddr = "10.0.0.2:1000".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let mut link = Link::new(now, Some(peer), peer);
        let mut buf = [0u8; 64];
        let len = emit_error(&mut buf, ErrorCode::UNKNOWN_TID, "unknown transfer ID").unwrap();
        let error = buf[..len].to_vec();
        for i in 0..5u32 {
            let t = now + STRANGER_INTERVAL * (i + 1);
            assert!(matches!(link.accept(t, other, &error), Accept::Stranger));
            assert!(
                link.poll_control(&mut buf).is_none(),
                "ERROR {i} was answered"
            );
        }
        assert_eq!(link.counters.unknown_tid, 5);
    }
}
