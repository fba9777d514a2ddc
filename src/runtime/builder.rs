//! Builders for the server and the client, in the shape of tokio's and
//! turmoil's: one method per setting, each limit set in one place.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use tftplab::runtime::{Client, Server};
//! use tftplab::store::WritePolicy;
//!
//! let server = Server::builder("/srv/tftp")
//!     .bind("0.0.0.0:6969".parse().unwrap())
//!     .write(WritePolicy::Create)
//!     .max_upload(64 << 20)
//!     .serve()
//!     .await?;
//! let client = Client::builder().blksize(1468).windowsize(16).build();
//! let kernel = client.get_bytes(server.local_addr(), "boot/kernel.img").await;
//! # let _ = kernel;
//! # Ok(())
//! # }
//! ```

use super::client::Client;
use super::server::{serve, ServerHandle, ServerOptions};
use super::socket::{Network, TokioNet};
use crate::proto::ClientConfig;
use crate::store::{Store, StoreConfig, WritePolicy};
use crate::wire::Mode;
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A running server: see [`ServerHandle`].
pub type Server = ServerHandle;

impl ServerHandle {
    /// Starts configuring a server for the files under `root`: read-only,
    /// on `0.0.0.0:69`, with the defaults of [`ServerOptions`] and
    /// [`StoreConfig`].
    pub fn builder(root: impl Into<PathBuf>) -> ServerBuilder {
        ServerBuilder {
            store: StoreConfig::new(root),
            options: ServerOptions::default(),
        }
    }
}

/// Configures and starts a [`Server`]. Every limit is set here once, even
/// where two layers enforce it (`max_upload` is the store's, and
/// [`serve`] applies it to a WRQ's announced `tsize` as well as to the bytes
/// that arrive).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `serve`"]
pub struct ServerBuilder {
    store: StoreConfig,
    options: ServerOptions,
}

impl ServerBuilder {
    /// The address to listen on (`[::]:69` serves IPv6 and, where the OS
    /// maps it, IPv4).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.options.bind = addr;
        self
    }

    /// What write requests may do (read-only by default).
    pub fn write(mut self, policy: WritePolicy) -> Self {
        self.store.write = policy;
        self
    }

    /// Largest upload in bytes; larger ones get ERROR 3 (up front when the
    /// client announces `tsize`).
    pub fn max_upload(mut self, bytes: u64) -> Self {
        self.store.max_upload = Some(bytes);
        self
    }

    /// Let uploads create missing directories under the root.
    pub fn create_dirs(mut self, on: bool) -> Self {
        self.store.create_dirs = on;
        self
    }

    /// Treat `\` in names as `/` (Windows-style clients).
    pub fn backslash_to_slash(mut self, on: bool) -> Self {
        self.store.backslash_to_slash = on;
        self
    }

    /// Make [`ServerHandle::stop`] remove the files the store's puts created.
    pub fn remove_created_on_close(mut self, on: bool) -> Self {
        self.store.remove_created_on_close = on;
        self
    }

    /// Live transfers at once; more requests get ERROR 0 "server busy".
    pub fn max_transfers(mut self, n: usize) -> Self {
        self.options.max_transfers = n;
        self
    }

    /// Ports for transfer sockets (the OS chooses by default).
    pub fn port_range(mut self, ports: RangeInclusive<u16>) -> Self {
        self.options.port_range = Some(ports);
        self
    }

    /// Retransmission timeout when the client negotiates none, and the
    /// ceiling of the adaptive timer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.transfer.timeout = timeout;
        self
    }

    /// Floor of the adaptive retransmission timer; equal to the timeout for
    /// a fixed timer when sending (a receiver's resends still back off past
    /// the timeout once a transfer is under way, up to 8 s).
    pub fn min_rto(mut self, min_rto: Duration) -> Self {
        self.options.transfer.min_rto = min_rto;
        self
    }

    /// Retransmissions of one datagram at the full timeout before a
    /// transfer is abandoned.
    pub fn retries(mut self, retries: u32) -> Self {
        self.options.transfer.retries = retries;
        self
    }

    /// Largest block size granted (8..=65464).
    pub fn max_blksize(mut self, blksize: u16) -> Self {
        self.options.transfer.limits.max_blksize = blksize;
        self
    }

    /// Largest window granted (RFC 7440).
    pub fn max_windowsize(mut self, window: u16) -> Self {
        self.options.transfer.limits.max_windowsize = window;
        self
    }

    /// Largest `timeout` option granted, in seconds; larger ones are left
    /// out of the OACK.
    pub fn max_timeout(mut self, seconds: u8) -> Self {
        self.options.transfer.limits.max_timeout = seconds;
        self
    }

    /// Longest a transfer may run before it is aborted with ERROR 0.
    pub fn max_transfer_time(mut self, limit: Duration) -> Self {
        self.options.max_transfer_time = limit;
        self
    }

    /// The settings as they stand, for a look or for [`serve`] itself.
    pub fn config(&self) -> (&StoreConfig, &ServerOptions) {
        (&self.store, &self.options)
    }

    /// Opens the root and starts serving on the host's UDP stack.
    pub async fn serve(self) -> io::Result<Server> {
        self.serve_on(TokioNet).await
    }

    /// Opens the root and starts serving on `net` (a simulated network,
    /// a raw link).
    pub async fn serve_on<N: Network>(self, net: N) -> io::Result<Server> {
        let store = Arc::new(Store::new(self.store)?);
        serve(net, store, self.options).await
    }
}

impl Client<TokioNet> {
    /// Starts configuring a client: RFC 1350's 512-byte lock-step blocks
    /// unless told otherwise.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            config: ClientConfig::default(),
            sync_files: false,
        }
    }
}

/// Configures a [`Client`]. Options are only asked for when set.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build`"]
pub struct ClientBuilder {
    config: ClientConfig,
    sync_files: bool,
}

impl ClientBuilder {
    /// Ask for this block size (RFC 2348, 8..=65464).
    pub fn blksize(mut self, blksize: u16) -> Self {
        self.config.options.blksize = Some(blksize);
        self
    }

    /// Ask for this window (RFC 7440).
    pub fn windowsize(mut self, window: u16) -> Self {
        self.config.options.windowsize = Some(window);
        self
    }

    /// Ask for the transfer size (RFC 2349): a download learns it up front.
    pub fn tsize(mut self, on: bool) -> Self {
        self.config.options.tsize = on.then_some(0);
        self
    }

    /// `octet` (the default) or `netascii`.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Retransmission timeout: the ceiling of the adaptive timer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Floor of the adaptive timer; equal to the timeout for a fixed one.
    pub fn min_rto(mut self, min_rto: Duration) -> Self {
        self.config.min_rto = min_rto;
        self
    }

    pub fn retries(mut self, retries: u32) -> Self {
        self.config.retries = retries;
        self
    }

    /// Largest download accepted (ERROR 3 beyond).
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.config.max_size = Some(bytes);
        self
    }

    /// fsync a downloaded file before it replaces the old one.
    pub fn sync_files(mut self, on: bool) -> Self {
        self.sync_files = on;
        self
    }

    /// A client on the host's UDP stack.
    pub fn build(self) -> Client<TokioNet> {
        self.build_on(TokioNet)
    }

    /// A client on `net`.
    pub fn build_on<N: Network>(self, net: N) -> Client<N> {
        Client::new(net, self.config).sync_files(self.sync_files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::OptionRequest;
    use crate::proto::ServerConfig;

    #[test]
    fn one_call_sets_a_limit_everywhere_it_is_enforced() {
        let b = Server::builder("/srv/tftp").max_upload(1000);
        let (store, options) = b.config();
        assert_eq!(store.max_upload, Some(1000));
        assert_eq!(
            options.transfer.limits.max_upload, None,
            "set once, on the store"
        );
    }

    #[test]
    fn the_server_builder_starts_from_the_defaults() {
        let b = Server::builder("/srv/tftp");
        let (store, options) = b.config();
        assert_eq!(*store, StoreConfig::new("/srv/tftp"));
        assert_eq!(options.transfer, ServerConfig::default());
        assert_eq!(options.bind, ServerOptions::default().bind);
    }

    #[test]
    fn the_client_builder_asks_only_for_what_is_set() {
        let c = Client::builder().blksize(1468).windowsize(16).build();
        let want = OptionRequest {
            blksize: Some(1468),
            windowsize: Some(16),
            ..OptionRequest::default()
        };
        assert_eq!(c.config().options, want);
        assert_eq!(
            Client::builder().build().config().options,
            OptionRequest::default()
        );
    }

    #[tokio::test]
    async fn a_built_server_serves_what_a_built_client_uploads() {
        let dir = tempfile::TempDir::new().unwrap();
        let server = Server::builder(dir.path())
            .bind("127.0.0.1:0".parse().unwrap())
            .write(WritePolicy::Create)
            .max_upload(1 << 20)
            .serve()
            .await
            .unwrap();
        let client = Client::builder().blksize(1468).windowsize(4).build();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        client
            .put_bytes(server.local_addr(), "up.bin", data.clone())
            .await
            .unwrap();
        let back = client
            .get_bytes(server.local_addr(), "up.bin")
            .await
            .unwrap();
        assert_eq!(back, data);
        let too_big = vec![0u8; (1 << 20) + 1];
        let refused = client
            .put_bytes(server.local_addr(), "big.bin", too_big)
            .await;
        assert_eq!(refused.unwrap_err().code().map(|c| c.0), Some(3));
        server.stop(Duration::from_millis(100)).await;
    }
}
