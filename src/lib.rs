//! tftplab: a TFTP server and client (RFC 1350, 2347, 2348, 2349, 7440) built
//! around a sans-IO protocol core.
//!
//! The layers, bottom up:
//! - [`wire`]: the packet codec (parse borrows from the datagram, emit writes
//!   into the caller's buffer).
//! - [`options`]: option negotiation (blksize, timeout, tsize, windowsize).
//! - [`netascii`]: streaming line-ending conversion for `netascii` mode.
//! - [`data`]: the positional [`data::Source`] and [`data::Sink`] traits.
//! - [`proto`]: the four transfer state machines (server read, server write,
//!   client get, client put). Datagrams and time in; datagrams and the next
//!   deadline out. No sockets, clocks or files.
//! - [`runtime`]: the server and client that drive the machines over any
//!   datagram socket (tokio's UDP, turmoil's, a raw link).
//! - [`store`]: the server's root directory: path confinement, write
//!   policy, atomic uploads, and the management API.
//! - [`lab`]: scenarios, fault plans, client profiles, traces and checks,
//!   shared by the simulator and the hardware runner.
//! - [`memnet`]: an in-memory, seeded, lossy network that runs a client and
//!   a server machine against each other under a fake clock.

pub mod data;
#[doc(hidden)]
pub mod fuzzing;
pub mod lab;
pub mod memnet;
pub mod netascii;
pub mod options;
pub mod proto;
pub mod runtime;
pub mod store;
pub mod wire;
