//! The sans-IO transfer state machines.
//!
//! A [`Listener`] sorts the datagrams that reach a server's well-known port
//! and says which start a transfer. Four transfer machines, one per role:
//! [`ServerRead`] (answers an RRQ),
//! [`ServerWrite`] (answers a WRQ), [`ClientGet`] and [`ClientPut`]. They share
//! a windowed sender ([`sender`]) and receiver ([`receiver`]) and never touch a
//! socket or a clock: the driver feeds them datagrams and the current time and
//! asks what to send and when to wake them. Every machine implements
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
//! The rules they follow (the README's "The protocol core") and where each
//! is enforced:
//! retransmission happens on timeout only, never on a duplicate ACK, and a
//! duplicate ACK does not restart the timer ([`sender`]); a duplicate DATA is
//! re-acknowledged and never written twice ([`receiver`]); block numbers roll
//! over 65535 -> 0 (both); a peer's ERROR ends the transfer at once with no
//! reply; running out of retries sends an ERROR before giving up; a datagram
//! from an unknown TID is answered with ERROR 5 (unless it is itself an
//! ERROR, and at most once a second) and changes nothing.

mod client;
mod common;
mod listener;
mod receiver;
mod receiving;
mod sender;
mod sending;
mod server;

pub use client::{ClientConfig, ClientGet, ClientPut};
pub use common::{
    timeouts_before_giving_up, Counters, Event, Summary, Transfer, TransferError, Transmit,
    STRANGER_INTERVAL,
};
pub use listener::{Admission, Ignored, Listener, ListenerConfig, Refused};
pub use server::{
    parse_request, Refusal, ServerConfig, ServerRead, ServerWrite, DEFAULT_MIN_RTO,
    UNKNOWN_OPCODE_REPLY_LEN,
};
