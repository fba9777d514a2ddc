//! The client's side: [`ClientGet`] downloads, [`ClientPut`] uploads.
//!
//! Both send their request to the server's well-known address and take the
//! transfer ID from the first answer that comes from the server's IP; later
//! datagrams from any other address or port get ERROR 5.

use super::common::{Transfer, TransferError};
use super::handshake::{ClientRequest, Handshake};
use super::link::Link;
use super::recv_machine::{Ack0, RecvMachine, RecvPhase};
use super::send_machine::{initial_timer, SendMachine, SendPhase};
use super::server::delegate_transfer;
use super::window_rx::{WindowRx, WireSink};
use super::window_tx::{WindowTx, WireSource};
use crate::data::{Sink, Source};
use crate::options::{Negotiated, OptionRequest};
use crate::wire::{ErrorCode, Mode, MAX_BLKSIZE, MIN_BLKSIZE};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a client asks and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    pub mode: Mode,
    pub options: OptionRequest,
    /// Retransmission timeout, unless `options.timeout` is set (then that):
    /// the longest the client waits before resending.
    pub timeout: Duration,
    /// Floor of the adaptive retransmission timeout (as in
    /// [`super::ServerConfig::min_rto`]); at or above the timeout the timer
    /// is fixed, as in the firmware the lab's client profiles emulate.
    pub min_rto: Duration,
    pub retries: u32,
    /// Largest download accepted (ERROR 3 beyond it).
    pub max_size: Option<u64>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            mode: Mode::Octet,
            options: OptionRequest::default(),
            timeout: Duration::from_secs(1),
            min_rto: super::server::DEFAULT_MIN_RTO,
            retries: 5,
            max_size: None,
        }
    }
}

impl ClientConfig {
    fn rto(&self) -> Duration {
        self.options
            .timeout
            .map_or(self.timeout, |s| Duration::from_secs(s.into()))
    }
}

fn check_request(filename: &str, config: &ClientConfig) -> Result<(), TransferError> {
    let bad = |message: &str| TransferError::Local {
        code: ErrorCode::ILLEGAL_OPERATION,
        message: message.to_string(),
    };
    if filename.is_empty() {
        return Err(bad("empty filename"));
    }
    if filename.contains('\0') {
        return Err(bad("filename contains a NUL byte"));
    }
    if filename.len() > 4096 {
        return Err(bad("filename longer than 4096 bytes"));
    }
    if config.mode == Mode::Mail {
        return Err(bad("mail mode is not supported"));
    }
    let o = &config.options;
    if o.blksize
        .is_some_and(|b| !(MIN_BLKSIZE..=MAX_BLKSIZE).contains(&b))
    {
        return Err(bad("blksize option outside 8..=65464 (RFC 2348)"));
    }
    if o.timeout == Some(0) || (o.timeout.is_none() && config.timeout.is_zero()) {
        return Err(bad(
            "zero retransmission timeout (RFC 2349: timeout 1..=255)",
        ));
    }
    if o.windowsize == Some(0) {
        return Err(bad("windowsize option outside 1..=65535 (RFC 7440)"));
    }
    Ok(())
}

/// Downloads `filename` from a server into a sink.
pub struct ClientGet<K: Sink>(pub(super) RecvMachine<K>);

impl<K: Sink> ClientGet<K> {
    /// The RRQ is ready to send at once.
    pub fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        sink: K,
        config: &ClientConfig,
    ) -> Result<Self, TransferError> {
        check_request(filename, config)?;
        let timer = initial_timer(config.rto(), config.min_rto, config.retries);
        Ok(ClientGet(RecvMachine {
            link: Link::new(now, None, server),
            phase: RecvPhase::Requesting(ClientRequest::new(filename, config.mode, config.options)),
            negotiated: Negotiated::default(),
            window: WindowRx::new(WireSink::new(sink, config.mode), config.max_size, timer)
                .committing_after_ack(),
            ack0: Ack0::Ack,
            default_rto: config.timeout,
            dally_floor: Duration::ZERO,
        }))
    }
}

delegate_transfer!(ClientGet<K: Sink>);

/// Uploads a source to `filename` on a server.
pub struct ClientPut<S: Source>(pub(super) SendMachine<S>);

impl<S: Source> ClientPut<S> {
    /// The WRQ is ready to send at once. When `config.options.tsize` is set,
    /// the source's real size is announced instead (or none, if unknown).
    pub fn new(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        source: S,
        config: &ClientConfig,
    ) -> Result<Self, TransferError> {
        check_request(filename, config)?;
        let source = WireSource::new(source, config.mode);
        let mut options = config.options;
        if options.tsize.is_some() {
            options.tsize = source.size();
        }
        let timer = initial_timer(config.rto(), config.min_rto, config.retries);
        Ok(ClientPut(SendMachine {
            link: Link::new(now, None, server),
            phase: SendPhase::Handshake(Handshake::Request(ClientRequest::new(
                filename,
                config.mode,
                options,
            ))),
            negotiated: Negotiated::default(),
            window: WindowTx::new(source, timer),
            default_rto: config.timeout,
        }))
    }
}

delegate_transfer!(ClientPut<S: Source>);
