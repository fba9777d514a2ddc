//! The listener: the part of a server that sorts the datagrams arriving at
//! its well-known port, as quinn-proto's endpoint sorts datagrams into
//! connections. Sans-IO like the transfers: a driver hands it each datagram
//! with the time and the sender, and it answers with an [`Admission`]; the
//! driver tells it when a transfer it started has ended.
//!
//! Its rules:
//! - A request (RRQ or WRQ) starts a transfer, at most one per client
//!   address and port at a time: a retransmitted request while its
//!   transfer lives starts nothing (a second transfer would send
//!   the same file twice, in parallel, to one port).
//! - A copy of a request whose transfer succeeded less than
//!   [`ListenerConfig::remember_done`] ago starts nothing either: the
//!   network delayed it past the end of its transfer, and a new transfer
//!   would send to a port the client has closed until its retries ran
//!   out. A client that really asks again from the same port is served on
//!   its next try. Failed transfers are not remembered: the rpi4 asks again
//!   with the same bytes right after aborting its tsize probe.
//! - Beyond [`ListenerConfig::max_transfers`] live transfers a request gets
//!   ERROR 0 "server busy" (a refusal that clients retry).
//! - A malformed request gets ERROR 4 (or 8 for too many options), an
//!   unknown opcode a small ERROR 4 (see [`parse_request`]); any other
//!   packet (ACK, DATA, OACK, ERROR) gets nothing: an ERROR is never
//!   answered, and answering the rest would make the server a reflector.
//!
//! Opening the file, building the transfer machine and refusing what the
//! file system says no to are the driver's, once the listener said
//! [`Admission::Start`].

use super::server::{parse_request, Refusal};
use crate::options::Direction;
use crate::wire::{ErrorCode, Request};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How the listener admits requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Live transfers at once; requests beyond get ERROR 0 "server busy".
    pub max_transfers: usize,
    /// How long a succeeded request is remembered, so a late copy of it
    /// starts nothing. The server's retransmission timeout is a good value:
    /// a copy later than that is the client asking again.
    pub remember_done: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_transfers: 512,
            remember_done: Duration::from_secs(1),
        }
    }
}

/// What to do with a datagram that arrived at the listening port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission<'a> {
    /// Nothing to send.
    Ignore(Ignored),
    /// Send this ERROR to the sender from the listening address.
    Refuse(Refusal, Refused),
    /// Start a transfer for this request: open the file, build a
    /// [`super::ServerRead`] or [`super::ServerWrite`] on a fresh socket.
    /// The sender's address is taken until [`Listener::transfer_ended`].
    Start {
        direction: Direction,
        request: Request<'a>,
    },
}

/// Why a datagram was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not a request: an ACK, DATA, OACK or ERROR, or too short to tell.
    NotARequest,
    /// A copy of a request whose transfer is running or just succeeded.
    Duplicate,
}

/// Why a request was refused at the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A malformed request, an unknown opcode or the `mail` mode.
    Malformed,
    /// [`ListenerConfig::max_transfers`] transfers are running.
    Busy,
}

/// A request whose transfer succeeded, and when it ended.
#[derive(Debug)]
struct Done {
    ended: Instant,
    peer: SocketAddr,
    request: Box<[u8]>,
}

/// The most succeeded requests remembered, whatever their age.
const DONE_MAX: usize = 4096;

/// The listener's state: who has a transfer running, and which requests
/// just succeeded. See the module docs for its rules.
#[derive(Debug, Default)]
pub struct Listener {
    config: ListenerConfig,
    /// Clients with a transfer admitted and not yet ended.
    active: BTreeSet<SocketAddr>,
    /// Oldest first.
    done: VecDeque<Done>,
}

impl Listener {
    pub fn new(config: ListenerConfig) -> Self {
        Listener {
            config,
            active: BTreeSet::new(),
            done: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// Sorts one datagram from `peer` that arrived at `now`.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        datagram: &'a [u8],
    ) -> Admission<'a> {
        let (direction, request) = match parse_request(datagram) {
            Ok(Some(r)) => r,
            Ok(None) => return Admission::Ignore(Ignored::NotARequest),
            Err(refusal) => return Admission::Refuse(refusal, Refused::Malformed),
        };
        self.forget_old(now);
        let repeated = self
            .done
            .iter()
            .any(|d| d.peer == peer && *d.request == *datagram);
        if self.active.contains(&peer) || repeated {
            return Admission::Ignore(Ignored::Duplicate);
        }
        if self.active.len() >= self.config.max_transfers {
            let busy = Refusal::new(ErrorCode::UNDEFINED, "server busy, try again later");
            return Admission::Refuse(busy, Refused::Busy);
        }
        self.active.insert(peer);
        Admission::Start { direction, request }
    }

    /// The transfer started for `peer` has ended, or was refused after all
    /// (its file could not be opened). `succeeded_request` is the request's
    /// datagram when the transfer succeeded: a late copy of it is then
    /// ignored for [`ListenerConfig::remember_done`].
    pub fn transfer_ended(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        succeeded_request: Option<Box<[u8]>>,
    ) {
        // Remembered before the peer leaves the table, so no copy of the
        // request slips between the two.
        if let Some(request) = succeeded_request {
            self.done.push_back(Done {
                ended: now,
                peer,
                request,
            });
            self.forget_old(now);
        }
        self.active.remove(&peer);
    }

    /// Live transfers (admitted and not yet ended).
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Drops what is older than `remember_done`, or beyond [`DONE_MAX`].
    fn forget_old(&mut self, now: Instant) {
        let keep = self.config.remember_done;
        while self.done.front().is_some_and(|d| {
            now.saturating_duration_since(d.ended) > keep || self.done.len() > DONE_MAX
        }) {
            self.done.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::UNKNOWN_OPCODE_REPLY_LEN;

    const RRQ: &[u8] = b"\x00\x01f\x00octet\x00";

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 2], port))
    }

    fn started(a: &Admission<'_>) -> bool {
        matches!(a, Admission::Start { .. })
    }

    fn listener(max_transfers: usize) -> Listener {
        Listener::new(ListenerConfig {
            max_transfers,
            remember_done: Duration::from_secs(1),
        })
    }

    #[test]
    fn a_retransmitted_request_starts_one_transfer() {
        let t = Instant::now();
        let mut l = listener(8);
        assert!(started(&l.handle_datagram(t, addr(1000), RRQ)));
        let again = l.handle_datagram(t + Duration::from_secs(2), addr(1000), RRQ);
        assert_eq!(again, Admission::Ignore(Ignored::Duplicate));
        // Another port of the same host is another client.
        assert!(started(&l.handle_datagram(t, addr(1001), RRQ)));
        assert_eq!(l.active(), 2);
    }

    #[test]
    fn a_late_copy_of_a_succeeded_request_starts_nothing_for_a_while() {
        let t = Instant::now();
        let mut l = listener(8);
        assert!(started(&l.handle_datagram(t, addr(1000), RRQ)));
        l.transfer_ended(t, addr(1000), Some(RRQ.into()));
        assert_eq!(l.active(), 0);
        let late = t + Duration::from_millis(999);
        assert_eq!(
            l.handle_datagram(late, addr(1000), RRQ),
            Admission::Ignore(Ignored::Duplicate)
        );
        // Another request from that port is new.
        let other = b"\x00\x01g\x00octet\x00";
        assert!(started(&l.handle_datagram(late, addr(1000), other)));
        l.transfer_ended(late, addr(1000), None);
        // Past the window, the same bytes are the client asking again.
        let again = t + Duration::from_millis(1001);
        assert!(started(&l.handle_datagram(again, addr(1000), RRQ)));
    }

    #[test]
    fn a_failed_request_is_not_remembered() {
        // The rpi4 aborts its tsize probe and asks again with the same bytes.
        let t = Instant::now();
        let mut l = listener(8);
        assert!(started(&l.handle_datagram(t, addr(1000), RRQ)));
        l.transfer_ended(t, addr(1000), None);
        assert!(started(&l.handle_datagram(t, addr(1000), RRQ)));
    }

    #[test]
    fn requests_beyond_the_cap_are_busy_until_a_transfer_ends() {
        let t = Instant::now();
        let mut l = listener(1);
        assert!(started(&l.handle_datagram(t, addr(1000), RRQ)));
        match l.handle_datagram(t, addr(1001), RRQ) {
            Admission::Refuse(r, Refused::Busy) => {
                assert_eq!(r.code, ErrorCode::UNDEFINED);
                assert!(r.message.contains("busy"));
            }
            other => panic!("{other:?}"),
        }
        l.transfer_ended(t, addr(1000), None);
        assert!(started(&l.handle_datagram(t, addr(1001), RRQ)));
    }

    #[test]
    fn only_requests_and_unknown_opcodes_are_answered() {
        let t = Instant::now();
        let mut l = listener(8);
        for quiet in [
            &b"\x00\x04\x00\x01"[..],
            b"\x00\x03\x00\x01data",
            b"\x00\x05\x00\x05unknown transfer ID\x00",
            b"\x00\x06blksize\x00512\x00",
            b"\x00",
        ] {
            let got = l.handle_datagram(t, addr(1000), quiet);
            assert_eq!(got, Admission::Ignore(Ignored::NotARequest), "{quiet:?}");
        }
        for loud in [
            &b"\x00\x01\x00octet\x00"[..],
            b"\x00\x09",
            b"\x00\x02f\x00mail\x00",
        ] {
            match l.handle_datagram(t, addr(1000), loud) {
                Admission::Refuse(r, Refused::Malformed) => {
                    assert_eq!(r.code, ErrorCode::ILLEGAL_OPERATION, "{loud:?}")
                }
                other => panic!("{loud:?}: {other:?}"),
            }
        }
        let huge = [&b"\x00\x07"[..], &[0xaa; 60_000][..]].concat();
        let Admission::Refuse(r, _) = l.handle_datagram(t, addr(1000), &huge) else {
            panic!("an unknown opcode is answered");
        };
        let mut buf = [0u8; 600];
        assert_eq!(r.emit(&mut buf), Ok(UNKNOWN_OPCODE_REPLY_LEN));
        assert_eq!(l.active(), 0, "nothing was started");
    }

    #[test]
    fn memory_of_succeeded_requests_is_bounded() {
        let t = Instant::now();
        let mut l = listener(DONE_MAX * 2);
        for port in 0..(DONE_MAX as u16 + 100) {
            assert!(started(&l.handle_datagram(t, addr(port), RRQ)));
            l.transfer_ended(t, addr(port), Some(RRQ.into()));
        }
        assert_eq!(l.done.len(), DONE_MAX);
        // The oldest were forgotten first.
        assert!(started(&l.handle_datagram(t, addr(0), RRQ)));
        assert_eq!(
            l.handle_datagram(t, addr(DONE_MAX as u16 + 99), RRQ),
            Admission::Ignore(Ignored::Duplicate)
        );
    }
}
