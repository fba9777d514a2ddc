//! The sans-IO transfer state machines.
//!
//! A [`Listener`] sorts the datagrams that reach a server's well-known port
//! and says which start a transfer. Four transfer machines, one per role:
//! [`ServerRead`] (answers an RRQ),
//! [`ServerWrite`] (answers a WRQ), [`ClientGet`] and [`ClientPut`]. They never
//! touch a socket or a clock: the driver feeds them datagrams and the current
//! time and asks what to send and when to wake them. Every machine implements
//! [`Transfer`], whose methods a driver calls in this loop:
//!
//! 1. [`Transfer::handle_datagram`] for each datagram received on the
//!    transfer's socket (any source address: the machine checks the TID);
//! 2. [`Transfer::handle_timeout`] once the deadline from
//!    [`Transfer::poll_timeout`] has passed;
//! 3. after either, [`Transfer::poll_transmit`] until it returns `None`,
//!    sending each datagram it writes, then [`Transfer::poll_event`] until
//!    `None`;
//! 4. drop the machine once [`Transfer::is_closed`].
//!
//! The files, by what they hold:
//! - `common.rs`: the driver-facing [`Transfer`] trait and what it reports;
//! - `link.rs`: what a machine keeps about its peer: the TID and strangers,
//!   the ERROR it ends with, its events and counters;
//! - `timer.rs`: the adaptive retransmission timer;
//! - `send_machine.rs`: the role machine that sends the file ([`ServerRead`],
//!   [`ClientPut`]): handshake, then the windowed sender;
//! - `recv_machine.rs`: the role machine that receives the file
//!   ([`ServerWrite`], [`ClientGet`]): handshake, then the windowed receiver;
//! - `handshake.rs`: the OACK or request a role machine resends until answered;
//! - `window_tx.rs`: the windowed DATA sender (RFC 1350 lock-step, RFC 7440);
//! - `window_rx.rs`: the windowed DATA receiver;
//! - `server.rs`, `client.rs`: the constructors that pick a role machine and
//!   its handshake; `listener.rs`: the server's well-known port.
//!
//! The rules they follow (the README's "The protocol core") and where each
//! is enforced:
//! retransmission happens on timeout only, never on a duplicate ACK, and a
//! duplicate ACK does not restart the timer (`window_tx.rs`); a duplicate DATA is
//! re-acknowledged and never written twice (`window_rx.rs`); block numbers roll
//! over 65535 -> 0 (both); a peer's ERROR ends the transfer at once with no
//! reply; running out of retries sends an ERROR before giving up; a datagram
//! from an unknown TID is answered with ERROR 5 (unless it is itself an
//! ERROR, and at most once a second) and changes nothing.

mod client;
mod common;
mod handshake;
mod link;
mod listener;
mod recv_machine;
mod send_machine;
mod server;
mod timer;
mod window_rx;
mod window_tx;

pub use client::{ClientConfig, ClientGet, ClientPut};
pub use common::{Counters, Event, Summary, Transfer, TransferError, Transmit};
pub use link::STRANGER_INTERVAL;
pub use listener::{Admission, Ignored, Listener, ListenerConfig, Refused};
// The runtime's single-port listener sorts requests from transfer traffic.
#[cfg(feature = "runtime")]
pub(crate) use server::is_request;
pub use server::{
    parse_request, Refusal, ServerConfig, ServerRead, ServerWrite, DEFAULT_MIN_RTO,
    UNKNOWN_OPCODE_REPLY_LEN,
};
pub use timer::timeouts_before_giving_up;

#[cfg(test)]
mod tests;
