//! Types shared by the four machines: the driver-facing trait, what it
//! reports (events, outcomes, counters), and block-number arithmetic.

use crate::options::Negotiated;
use crate::wire::{ErrorCode, DATA_HEADER_LEN, DEFAULT_BLKSIZE, MAX_DATAGRAM};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A datagram written by [`Transfer::poll_transmit`]: send `buf[..len]` to
/// `dest` from the transfer's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub len: usize,
}

/// What a machine reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The options are settled (after an OACK, or on the first DATA/ACK when
    /// the peer ignored them). Reported once, before any data moves.
    Negotiated(Negotiated),
    /// The transfer ended. Reported once. A receiver that succeeded may stay
    /// open a little longer to re-acknowledge a repeated last block.
    Finished(Result<Summary, TransferError>),
}

/// A successful transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub blocks: u64,
    /// DATA blocks sent again (sender) or ACKs sent again (receiver).
    pub retransmissions: u64,
    pub duration: Duration,
    pub negotiated: Negotiated,
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The peer sent an ERROR packet; nothing was sent back.
    #[error("peer sent ERROR {code}: {message}")]
    Peer { code: ErrorCode, message: String },
    /// Retries ran out; an ERROR was sent to the peer.
    #[error("timed out after {retries} retries")]
    TimedOut { retries: u32 },
    /// A sender's retries ran out after it had sent every block, the last
    /// one included: only the final ACK never came. The receiver may well
    /// have the whole file (the final ACK is itself never acknowledged, and
    /// U-Boot sends it once), so this is not a transfer that died midway.
    /// An ERROR was sent to the peer, as for [`TransferError::TimedOut`].
    #[error("sent every block, but the final ACK never came after {retries} retries (the peer may have the whole file)")]
    Unconfirmed { retries: u32 },
    /// This side ended the transfer (I/O error, size limit, rejected OACK,
    /// explicit abort) and sent the peer ERROR `code`.
    #[error("aborted with ERROR {code}: {message}")]
    Local { code: ErrorCode, message: String },
}

impl TransferError {
    /// True when retries ran out, midway or waiting for the final ACK.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            TransferError::TimedOut { .. } | TransferError::Unconfirmed { .. }
        )
    }

    /// The TFTP error code involved, if any side sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            TransferError::Peer { code, .. } | TransferError::Local { code, .. } => Some(*code),
            TransferError::TimedOut { .. } | TransferError::Unconfirmed { .. } => None,
        }
    }
}

/// A failure on this side that ends the transfer: the ERROR the peer is
/// sent, and what [`TransferError::Local`] reports. (Not to be confused
/// with the CLI's `Failure`, which is about the whole program.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalError {
    pub code: ErrorCode,
    pub message: String,
}

impl LocalError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        LocalError {
            code,
            message: message.into(),
        }
    }

    /// The ERROR for an I/O failure. The message goes on the wire, so it
    /// names the failure's kind only: OS error text can carry host details.
    pub fn io(what: &str, e: &std::io::Error) -> Self {
        let code = ErrorCode::for_io_error(e);
        let kind = match code {
            ErrorCode::DISK_FULL => "disk full or allocation exceeded",
            ErrorCode::FILE_EXISTS => "file already exists",
            ErrorCode::ACCESS_VIOLATION => "access violation",
            ErrorCode::FILE_NOT_FOUND => "file not found",
            _ => "I/O error",
        };
        LocalError::new(code, format!("{what}: {kind}"))
    }
}

impl From<LocalError> for TransferError {
    fn from(LocalError { code, message }: LocalError) -> Self {
        TransferError::Local { code, message }
    }
}

/// Everything a machine counts. Cheap to copy; drivers and the simulator
/// read it for traces and packet-count bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    /// DATA packets sent, first transmissions and retransmissions alike.
    pub data_sent: u64,
    /// DATA packets sent for a block that had been sent before.
    pub data_retransmitted: u64,
    pub acks_sent: u64,
    /// ACKs sent again after a timeout or for a duplicate DATA.
    pub acks_retransmitted: u64,
    /// Requests or OACKs sent again after a timeout.
    pub control_retransmitted: u64,
    /// ACKs that acknowledged nothing new (ignored by design).
    pub duplicate_acks: u64,
    /// DATA blocks received that had already been received.
    pub duplicate_data: u64,
    /// Datagrams from a source other than the peer (answered with ERROR 5).
    pub unknown_tid: u64,
    /// Datagrams that did not parse, or did not fit the transfer's state.
    pub ignored: u64,
    pub timeouts: u64,
    /// Timeout resends the peer showed were not needed: it acknowledged
    /// the block twice, the original and the resend (lock-step only). Each
    /// one raises the transfer's timer floor (see `Timer::spurious`).
    pub spurious_resends: u64,
}

/// The driver-facing API shared by every machine. See the module docs for
/// the calling order.
pub trait Transfer {
    /// Feeds one datagram received on this transfer's socket from `from`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);

    /// Writes the next datagram to send into `buf` (at least
    /// [`crate::wire::MAX_DATAGRAM`] bytes, or 4 + the negotiated blksize).
    /// Call until `None` after every `handle_*` call.
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit>;

    /// When [`Transfer::handle_timeout`] must next be called; `None` when the
    /// machine waits for nothing (it is closed, or has datagrams to send).
    fn poll_timeout(&self) -> Option<Instant>;

    /// Tells the machine that `now` is at or past its deadline.
    fn handle_timeout(&mut self, now: Instant);

    /// Takes the next application event.
    fn poll_event(&mut self) -> Option<Event>;

    /// True once nothing more will be sent or accepted: drop the machine.
    fn is_closed(&self) -> bool;

    /// Snapshot of the counters.
    fn counters(&self) -> Counters;

    /// Data bytes moved so far: acknowledged by the peer (sender) or
    /// received in order (receiver). For progress displays.
    fn bytes_transferred(&self) -> u64;

    /// The largest datagram the machine may send or accept with its options
    /// as they stand (4 + the negotiated blksize, and never under 516 so an
    /// ERROR with its message fits). Drivers size their buffers from it and
    /// ask again as the transfer goes: a client's shrinks once the server
    /// answers. By default the largest TFTP datagram.
    fn max_datagram(&self) -> usize {
        MAX_DATAGRAM
    }

    /// Ends the transfer from this side: the peer gets ERROR `code` with
    /// `message` (if its address is known) and [`Event::Finished`] reports
    /// [`TransferError::Local`]. Does nothing once the transfer has ended.
    /// Used by clients that probe and abort (UEFI's tsize probe answers the
    /// OACK with ERROR 8) and by a server that is shutting down.
    fn abort(&mut self, code: ErrorCode, message: &str);
}

impl<T: Transfer + ?Sized> Transfer for Box<T> {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        (**self).handle_datagram(now, from, datagram)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        (**self).poll_transmit(now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now)
    }
    fn poll_event(&mut self) -> Option<Event> {
        (**self).poll_event()
    }
    fn is_closed(&self) -> bool {
        (**self).is_closed()
    }
    fn counters(&self) -> Counters {
        (**self).counters()
    }
    fn bytes_transferred(&self) -> u64 {
        (**self).bytes_transferred()
    }
    fn max_datagram(&self) -> usize {
        (**self).max_datagram()
    }
    fn abort(&mut self, code: ErrorCode, message: &str) {
        (**self).abort(code, message)
    }
}

/// Maps a 16-bit block number onto the 64-bit block index space, given the
/// index the number is expected to be close to (rollover 65535 -> 0).
/// Returns the signed distance from `reference`.
pub(crate) fn block_distance(reference: u64, block: u16) -> i64 {
    i64::from(block.wrapping_sub(reference as u16) as i16)
}

/// The wire block number of a block index.
pub(crate) fn wire_block(index: u64) -> u16 {
    index as u16
}

/// What [`Transfer::max_datagram`] is for a machine in `handshake` with
/// `negotiated`: anything up to the largest datagram while a client waits
/// for the server's answer (the OACK may grant any blksize up to what was
/// asked, and the request itself carries the name).
pub(crate) fn max_datagram(awaiting_answer: bool, negotiated: &Negotiated) -> usize {
    if awaiting_answer {
        return MAX_DATAGRAM;
    }
    DATA_HEADER_LEN + usize::from(negotiated.blksize.max(DEFAULT_BLKSIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_distance_handles_rollover() {
        assert_eq!(block_distance(1, 1), 0);
        assert_eq!(block_distance(65535, 0), 1);
        assert_eq!(block_distance(65536, 65535), -1);
        assert_eq!(block_distance(65536 + 3, 2), -1);
        assert_eq!(block_distance(10, 9), -1);
        assert_eq!(block_distance(10, 10 + 100), 100);
        assert_eq!(wire_block(65536), 0);
        assert_eq!(wire_block(65537), 1);
    }
}
