//! tftplab: a TFTP server and client (RFC 1350, 2347, 2348, 2349, 7440) built
//! around a sans-IO protocol core.
//!
//! The layers, bottom up, and the feature that brings each in:
//! - the core, always there and dependent on nothing but `thiserror`:
//!   - [`wire`]: the packet codec (parse borrows from the datagram, emit
//!     writes into the caller's buffer).
//!   - [`options`]: option negotiation (blksize, timeout, tsize, windowsize).
//!   - [`netascii`]: streaming line-ending conversion for `netascii` mode.
//!   - [`data`]: the positional [`data::Source`] and [`data::Sink`] traits,
//!     with memory and file implementations.
//!   - [`proto`]: the listener ([`proto::Listener`]: which datagrams start a
//!     transfer) and the four transfer state machines (server read, server
//!     write, client get, client put). Datagrams and time in; datagrams and
//!     the next deadline out. No sockets, clocks or files.
//! - `store`: the server's root directory: path confinement, write policy,
//!   atomic uploads, and the management API.
//! - `runtime`: the tokio `Server` and `Client` that drive the machines
//!   over any datagram socket (tokio's UDP, a simulated network, a raw link).
//! - `cli` (default): the `tftplab` binary.
//!
//! `tftplab = { version = "0.1", default-features = false }` is the core
//! alone; `features = ["runtime"]` adds the server and client without the
//! command line. The lab (scenarios, fault plans, client profiles, the
//! simulator) is the separate `tftplab-sim` crate.
//!
//! The core needs no network to run: two machines can talk through a loop.
//! Here a client downloads 1000 bytes from a server machine, datagrams
//! passed by hand, at one instant (nothing is lost, so no timer fires):
//!
//! ```
//! use std::time::Instant;
//! use tftplab::data::{MemSink, MemSource};
//! use tftplab::proto::{
//!     ClientConfig, ClientGet, Event, Listener, Admission, ServerConfig, ServerRead, Transfer,
//! };
//!
//! let (client_addr, listen_addr) = ("10.0.0.2:40000".parse()?, "10.0.0.1:69".parse()?);
//! let server_tid = "10.0.0.1:50000".parse()?;
//! let now = Instant::now();
//! let mut client = ClientGet::new(now, listen_addr, "f.bin", MemSink::new(), &ClientConfig::default())?;
//! let mut buf = vec![0u8; tftplab::wire::MAX_DATAGRAM];
//!
//! // The client's RRQ reaches the listener, which says: start a transfer.
//! let rrq = client.poll_transmit(now, &mut buf).expect("an RRQ");
//! let mut listener = Listener::default();
//! let Admission::Start { request, .. } = listener.handle_datagram(now, client_addr, &buf[..rrq.len]) else {
//!     panic!("not admitted");
//! };
//! let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
//! let mut server = ServerRead::new(now, client_addr, &request, MemSource::new(data), &ServerConfig::default())?;
//!
//! // Then the loop every runtime runs: transmit and deliver; when nothing
//! // moves, let time pass to the client's next deadline (it commits the
//! // file, then stops dallying after the last block).
//! let mut done = None;
//! let mut t = now;
//! while !(client.is_closed() && server.is_closed()) {
//!     let mut moved = false;
//!     while let Some(out) = server.poll_transmit(t, &mut buf) {
//!         client.handle_datagram(t, server_tid, &buf[..out.len]);
//!         moved = true;
//!     }
//!     while let Some(out) = client.poll_transmit(t, &mut buf) {
//!         server.handle_datagram(t, client_addr, &buf[..out.len]);
//!         moved = true;
//!     }
//!     while let Some(event) = client.poll_event() {
//!         if let Event::Finished(result) = event {
//!             done = Some(result);
//!         }
//!     }
//!     while server.poll_event().is_some() {}
//!     if let Some(deadline) = client.poll_timeout().filter(|_| !moved) {
//!         t = deadline;
//!         client.handle_timeout(t);
//!     }
//! }
//! assert_eq!(done.expect("finished")?.bytes, 1000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod data;
pub mod netascii;
pub mod options;
pub mod proto;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "store")]
pub mod store;
pub mod wire;

#[cfg(feature = "runtime")]
pub use runtime::{Client, Server};
