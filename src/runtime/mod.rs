//! The runtime: drives the [`crate::proto`] machines over real (or
//! simulated) datagram sockets. Nothing here decides anything about the
//! protocol; it moves datagrams and time.
//!
//! - [`socket`]: the [`DatagramSocket`] / [`Network`] traits and the tokio
//!   implementation ([`TokioNet`]).
//! - [`server`]: [`serve`] starts a server and returns a [`ServerHandle`]
//!   (address, events, stats, graceful stop).
//! - [`client`]: [`Client`] gets and puts files, bytes or any source/sink.
//! - [`Server::builder`] and [`Client::builder`] configure both, one setting
//!   per method.

mod builder;
pub mod client;
pub(crate) mod driver;
pub mod server;
pub mod socket;

pub use builder::{ClientBuilder, Server, ServerBuilder};
pub use client::{Client, ClientError, Progress};
pub use server::{
    serve, ServerEvent, ServerHandle, ServerOptions, StatsSnapshot, StopReport, OPEN_WORKERS,
};
pub use socket::{DatagramSocket, HostSocket, Network, TokioNet};

#[cfg(test)]
mod tests;
