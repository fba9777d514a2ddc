//! The runtime: drives the [`crate::proto`] machines over real (or
//! simulated) datagram sockets. Nothing here decides anything about the
//! protocol; it moves datagrams and time.
//!
//! - [`DatagramSocket`] / [`Network`]: what a runtime needs of a network,
//!   with the tokio implementation ([`TokioNet`]).
//! - [`Server::builder`] configures and starts a server; the [`Server`]
//!   handle tells its address, events and stats, and stops it gracefully.
//! - [`Client::builder`] configures a client that gets and puts files, bytes
//!   or any source/sink.
//! - [`drive_to_outcome`] runs one client machine of your own over a socket
//!   (the lab's firmware profiles do).

mod builder;
mod client;
mod driver;
mod server;
mod socket;

pub use builder::{ClientBuilder, Server, ServerBuilder};
pub use client::{bind_any, drive_to_outcome, Client, ClientError, Progress};
pub use driver::{now, Control};
pub use server::{
    serve, serve_on, Resolve, Resolved, ServerEvent, ServerHandle, ServerOptions, StatsSnapshot,
    StopReport, OPEN_WORKERS,
};
#[cfg(target_os = "linux")]
pub use socket::Parked;
pub use socket::{DatagramSocket, HostSocket, Network, TokioNet};

#[cfg(test)]
mod tests;
