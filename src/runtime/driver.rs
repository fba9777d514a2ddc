//! Runs one transfer machine over one socket: the loop from
//! [`crate::proto`]'s docs, with tokio's clock (which turmoil simulates).
//! No protocol decisions are made here.

use super::socket::DatagramSocket;
use crate::proto::{Event, Transfer};
use crate::wire::{ErrorCode, MAX_DATAGRAM};
use std::time::Instant;
use tokio::sync::watch;

/// The clock every driver reads: tokio's, so a simulator can control it.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Why [`drive`] should stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancel {
    Run,
    /// Abort the transfer with ERROR 0 (server shutting down, client gave up).
    Abort,
}

/// What an event or progress hook wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    Continue,
    /// End the transfer from this side with this ERROR (a client profile
    /// that probes and aborts, as UEFI and the rpi4 bootloader do).
    Abort(ErrorCode, &'static str),
}

/// How far to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Until the machine is closed (a server transfer, or a dallying client).
    Closed,
    /// Until it reports [`Event::Finished`].
    Finished,
}

/// Drives `machine` on `socket` until `until`, handing every event to
/// `on_event`. Sends failures are retried by the machine's own timer, so
/// they are only logged.
pub(crate) async fn drive<T: Transfer, S: DatagramSocket>(
    machine: &mut T,
    socket: &S,
    cancel: &mut watch::Receiver<Cancel>,
    until: Until,
    mut on_event: impl FnMut(Event) -> Control,
    mut on_progress: impl FnMut(u64) -> Control,
) {
    let mut tx = vec![0u8; MAX_DATAGRAM];
    let mut rx = vec![0u8; MAX_DATAGRAM + 1];
    let mut finished = false;
    let mut cancel_live = true;
    let mut aborting = false;
    let mut recv_errors = 0u32;
    // One timer for the whole transfer, moved only when the machine's
    // deadline moves: registering a fresh one per datagram is measurable
    // in lock-step, where every microsecond per block is lost throughput.
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    let mut armed: Option<tokio::time::Instant> = None;
    loop {
        // Events before transmits: a hook that aborts on an event (UEFI's
        // tsize probe answers the OACK with ERROR 8) must do so before the
        // machine's own answer (ACK 0) goes out.
        let mut hook_aborted = false;
        let mut deliver_events = |machine: &mut T, finished: &mut bool| {
            while let Some(event) = machine.poll_event() {
                *finished |= matches!(event, Event::Finished(_));
                if let Control::Abort(code, message) = on_event(event) {
                    machine.abort(code, message);
                    hook_aborted = true;
                }
            }
        };
        deliver_events(machine, &mut finished);
        let t = now();
        while let Some(out) = machine.poll_transmit(t, &mut tx) {
            if let Err(e) = socket.send_to(&tx[..out.len], out.dest).await {
                tracing::debug!(dest = %out.dest, error = %e, "send failed");
            }
        }
        // Sending can end a transfer too (a read error becomes an ERROR).
        deliver_events(machine, &mut finished);
        if hook_aborted {
            continue; // collect the outcome of the abort first
        }
        if aborting || machine.is_closed() || (finished && until == Until::Finished) {
            return;
        }
        let deadline = machine.poll_timeout().map(tokio::time::Instant::from_std);
        if let Some(d) = deadline.filter(|&d| armed != Some(d)) {
            sleep.as_mut().reset(d);
            armed = Some(d);
        }
        tokio::select! {
            biased;
            received = socket.recv_from(&mut rx) => match received {
                Ok((len, from)) => {
                    recv_errors = 0;
                    machine.handle_datagram(now(), from, &rx[..len]);
                    if let Control::Abort(code, message) = on_progress(machine.bytes_transferred()) {
                        machine.abort(code, message);
                    }
                }
                Err(e) => {
                    // A broken socket must not spin: give up after a run of errors.
                    recv_errors += 1;
                    tracing::debug!(error = %e, "receive failed");
                    if recv_errors > 100 {
                        machine.abort(ErrorCode::UNDEFINED, "socket failed");
                        aborting = true;
                    }
                }
            },
            _ = &mut sleep, if deadline.is_some() => {
                armed = None;
                machine.handle_timeout(now());
            }
            changed = cancel.changed(), if cancel_live => {
                cancel_live = changed.is_ok();
                if *cancel.borrow() == Cancel::Abort {
                    machine.abort(ErrorCode::UNDEFINED, "server shutting down");
                    aborting = true;
                }
            }
        }
    }
}
