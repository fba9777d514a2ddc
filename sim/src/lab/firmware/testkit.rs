//! Helpers shared by the firmware machines' tests: the addresses they talk
//! to, draining a machine's datagrams and events, building the server's
//! packets, and a real tftplab server on loopback for the end-to-end tests.

use std::error::Error;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tftplab::data::SharedSink;
use tftplab::proto::{Event, Summary, Transfer, TransferError};
use tftplab::runtime::{bind_any, drive_to_outcome, Control, Server, ServerBuilder, TokioNet};
use tftplab::wire::{ErrorCode, MAX_DATAGRAM};

/// Where the machines send their request.
pub(crate) const SERVER: &str = "10.0.0.1:69";
/// The server's transfer port (its TID).
pub(crate) const TID: &str = "10.0.0.1:50000";

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Everything the machine has to send, in order: (destination, datagram).
pub(crate) fn sent(m: &mut impl Transfer, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    std::iter::from_fn(|| {
        m.poll_transmit(now, &mut buf)
            .map(|t| (t.dest, buf[..t.len].to_vec()))
    })
    .collect()
}

/// The datagrams the machine has to send, all to `dest`.
pub(crate) fn sent_to(m: &mut impl Transfer, now: Instant, dest: SocketAddr) -> Vec<Vec<u8>> {
    sent(m, now)
        .into_iter()
        .map(|(d, b)| {
            assert_eq!(d, dest);
            b
        })
        .collect()
}

/// The one datagram the machine has to send.
pub(crate) fn only(m: &mut impl Transfer, now: Instant) -> Vec<u8> {
    let mut out = sent(m, now);
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0).1
}

/// Runs the machine's timer out, handling each expiry when it falls due:
/// what each one sent, with its instant, in order.
pub(crate) fn expiries(m: &mut impl Transfer) -> Vec<(Instant, SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(at) = m.poll_timeout() {
        m.handle_timeout(at);
        out.extend(sent(m, at).into_iter().map(|(dest, p)| (at, dest, p)));
    }
    out
}

/// Takes the machine's request, then runs its timer out, asserting that
/// every expiry sends that request again to [`SERVER`]: how long after
/// `t0` each one did.
pub(crate) fn request_resends(m: &mut impl Transfer, t0: Instant) -> Vec<Duration> {
    let rrq = only(m, t0);
    expiries(m)
        .into_iter()
        .map(|(at, dest, p)| {
            assert_eq!((&p, dest), (&rrq, addr(SERVER)));
            at - t0
        })
        .collect()
}

/// Every event the machine has to report, in order.
pub(crate) fn events(m: &mut impl Transfer) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// Drains the events: the outcome, if reported (at most once).
pub(crate) fn outcome(m: &mut impl Transfer) -> Option<Result<Summary, TransferError>> {
    let mut finished = events(m).into_iter().filter_map(|e| match e {
        Event::Finished(r) => Some(r),
        Event::Negotiated(_) => None,
    });
    let r = finished.next();
    assert!(finished.next().is_none(), "Finished twice");
    r
}

/// Drains the events: the outcome, which must be there.
pub(crate) fn finished(m: &mut impl Transfer) -> Result<Summary, TransferError> {
    outcome(m).expect("a Finished event")
}

pub(crate) fn ack(block: u16) -> Vec<u8> {
    let mut a = vec![0, 4];
    a.extend_from_slice(&block.to_be_bytes());
    a
}

/// DATA `block` carrying `payload`.
pub(crate) fn data_of(block: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0, 3];
    d.extend_from_slice(&block.to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// DATA `block` with `len` bytes that differ from block to block.
pub(crate) fn data(block: u16, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ (block as u8)).collect();
    data_of(block, &payload)
}

/// OACK with `options` in this order.
pub(crate) fn oack(options: &[(&str, &str)]) -> Vec<u8> {
    let mut o = vec![0, 6];
    for (k, v) in options {
        o.extend_from_slice(k.as_bytes());
        o.push(0);
        o.extend_from_slice(v.as_bytes());
        o.push(0);
    }
    o
}

pub(crate) fn error(code: u16, message: &str) -> Vec<u8> {
    let mut e = vec![0, 5];
    e.extend_from_slice(&code.to_be_bytes());
    e.extend_from_slice(message.as_bytes());
    e.push(0);
    e
}

/// The server's ERROR, as the machine reports it.
pub(crate) fn peer(code: ErrorCode, message: &str) -> TransferError {
    TransferError::Peer {
        code,
        message: message.into(),
    }
}

/// The machine's own ERROR (sent or not), as it reports it.
pub(crate) fn local(code: ErrorCode, message: &str) -> TransferError {
    TransferError::Local {
        code,
        message: message.into(),
    }
}

/// A tftplab server on loopback serving `files` from a temporary root
/// (removed when the `TempDir` is dropped).
pub(crate) async fn serve(files: &[(&str, &[u8])]) -> Result<(TempDir, Server), Box<dyn Error>> {
    serve_with(files, |b| b).await
}

/// [`serve`] with the builder configured further.
pub(crate) async fn serve_with(
    files: &[(&str, &[u8])],
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> Result<(TempDir, Server), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let server = configure(Server::builder(dir.path()).bind("127.0.0.1:0".parse()?))
        .serve()
        .await?;
    for (name, bytes) in files {
        server.store().put_bytes(name, bytes)?;
    }
    Ok((dir, server))
}

/// Runs `machine` against `server` from a fresh loopback socket to its
/// outcome, showing `on_event` every event.
pub(crate) async fn run_with<T: Transfer + Send + 'static>(
    machine: T,
    server: SocketAddr,
    on_event: impl FnMut(&Event) -> Control,
) -> Option<Result<Summary, TransferError>> {
    let socket = bind_any(&TokioNet, server).await.expect("a socket");
    drive_to_outcome(machine, socket, on_event, |_| Control::Continue).await
}

/// [`run_with`], events unseen.
pub(crate) async fn run<T: Transfer + Send + 'static>(
    machine: T,
    server: SocketAddr,
) -> Option<Result<Summary, TransferError>> {
    run_with(machine, server, |_| Control::Continue).await
}

/// What `sink` got, asserting it was committed.
pub(crate) fn committed(sink: &SharedSink) -> Vec<u8> {
    let got = sink.snapshot();
    assert!(got.committed);
    got.data
}
