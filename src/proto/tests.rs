//! The protocol rules, one at a time, on a single machine fed datagrams
//! and time by hand. Whole transfers between two machines, under faults,
//! run through the lab's in-memory network in `sim/tests/protocol.rs`.

use super::*;
use crate::data::MemSource;
use crate::options::OptionRequest;
use crate::wire::{ErrorCode, Mode, Packet, RawOption, Request};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CLIENT: &str = "10.0.0.2:40000";
const LISTEN: &str = "10.0.0.1:69";
const SERVER_TID: &str = "10.0.0.1:50000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal socket address")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn t0() -> Instant {
    Instant::now()
}

fn sent(m: &mut dyn Transfer, now: Instant) -> Vec<(std::net::SocketAddr, Vec<u8>)> {
    let mut buf = vec![0u8; crate::wire::MAX_DATAGRAM];
    let mut out = Vec::new();
    while let Some(t) = m.poll_transmit(now, &mut buf) {
        out.push((t.dest, buf[..t.len].to_vec()));
    }
    out
}

fn request(options: &[(&'static str, &'static str)]) -> Request<'static> {
    Request {
        filename: "f",
        mode: Mode::Octet,
        options: options.iter().map(|&(n, v)| RawOption::new(n, v)).collect(),
    }
}

fn ack(block: u16) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    crate::wire::emit_ack(&mut b, block).unwrap();
    b
}

fn data(block: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 4 + payload.len()];
    Packet::Data {
        block,
        data: payload,
    }
    .emit(&mut b)
    .unwrap();
    b
}

fn finished(m: &mut dyn Transfer) -> Option<Result<Summary, TransferError>> {
    std::iter::from_fn(|| m.poll_event()).find_map(|e| match e {
        Event::Finished(r) => Some(r),
        _ => None,
    })
}

#[test]
fn duplicate_ack_neither_resends_nor_restarts_the_timer() {
    let now = t0();
    let client = addr(CLIENT);
    let src = MemSource::new(pattern(2000));
    let mut m = ServerRead::new(now, client, &request(&[]), src, &ServerConfig::default()).unwrap();
    assert_eq!(sent(&mut m, now).len(), 1); // DATA 1
    m.handle_datagram(now, client, &ack(1));
    assert_eq!(sent(&mut m, now).len(), 1); // DATA 2
    let deadline = m.poll_timeout().unwrap();
    let later = now + Duration::from_millis(500);
    m.handle_datagram(later, client, &ack(1)); // duplicate
    assert!(sent(&mut m, later).is_empty(), "resent on a duplicate ACK");
    assert_eq!(
        m.poll_timeout(),
        Some(deadline),
        "timer restarted by a duplicate ACK"
    );
    assert_eq!(m.counters().duplicate_acks, 1);
    // The timer still fires from the last transmission and resends DATA 2.
    m.handle_timeout(deadline);
    let resent = sent(&mut m, deadline);
    assert_eq!(resent.len(), 1);
    assert_eq!(&resent[0].1[..4], b"\x00\x03\x00\x02");
    assert_eq!(m.counters().data_retransmitted, 1);
}

#[test]
fn unknown_tid_gets_error_5_and_the_transfer_goes_on() {
    let now = t0();
    let client = addr(CLIENT);
    let stranger = addr("10.0.0.9:7777");
    let src = MemSource::new(pattern(700));
    let mut m = ServerRead::new(now, client, &request(&[]), src, &ServerConfig::default()).unwrap();
    sent(&mut m, now);
    m.handle_datagram(now, stranger, &ack(1));
    let out = sent(&mut m, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, stranger);
    assert_eq!(&out[0].1[..4], b"\x00\x05\x00\x05");
    // The stranger's ACK moved nothing: the real ACK 1 still brings DATA 2.
    m.handle_datagram(now, client, &ack(1));
    let out = sent(&mut m, now);
    assert_eq!(
        (out[0].0, &out[0].1[..4]),
        (client, &b"\x00\x03\x00\x02"[..])
    );
}

#[test]
fn client_error_ends_the_transfer_at_once_without_reply() {
    let now = t0();
    let client = addr(CLIENT);
    let src = MemSource::new(pattern(5000));
    let req = request(&[("tsize", "0"), ("blksize", "1024")]);
    let mut m = ServerRead::new(now, client, &req, src, &ServerConfig::default()).unwrap();
    let oack = sent(&mut m, now);
    assert_eq!(oack[0].1, b"\x00\x06tsize\x005000\x00blksize\x001024\x00");
    m.handle_datagram(now, client, b"\x00\x05\x00\x00Early terminate\x00");
    assert!(sent(&mut m, now).is_empty());
    assert!(m.is_closed());
    assert_eq!(m.poll_timeout(), None);
    match finished(&mut m) {
        Some(Err(TransferError::Peer { code, message })) => {
            assert_eq!((code, message.as_str()), (ErrorCode(0), "Early terminate"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn running_out_of_retries_sends_an_error_then_gives_up() {
    let now = t0();
    let client = addr(CLIENT);
    let config = ServerConfig {
        retries: 2,
        ..ServerConfig::default()
    };
    let mut m = ServerRead::new(
        now,
        client,
        &request(&[]),
        // Two blocks: the client never ACKs the first, so the transfer
        // dies midway.
        MemSource::new(pattern(1000)),
        &config,
    )
    .unwrap();
    let mut t = now;
    let mut datas = 0;
    let mut last = Vec::new();
    while !m.is_closed() {
        let out = sent(&mut m, t);
        datas += out.iter().filter(|(_, b)| b[1] == 3).count();
        last = out.last().map(|o| o.1.clone()).unwrap_or(last);
        match m.poll_timeout() {
            Some(d) => {
                t = d;
                m.handle_timeout(t);
            }
            None => break,
        }
    }
    assert_eq!(datas, 3, "one send and two retries");
    assert_eq!(&last[..4], b"\x00\x05\x00\x00");
    assert!(matches!(
        finished(&mut m),
        Some(Err(TransferError::TimedOut { retries: 2 }))
    ));
    assert!(m.is_closed());
}

#[test]
fn a_final_ack_that_never_comes_is_told_apart_from_a_transfer_that_died() {
    // The client ACKs block 1 of 2; the last block goes out, and its ACK
    // never comes back. The client may have the whole file: the server
    // still sends an ERROR when it gives up, but reports Unconfirmed, not
    // TimedOut.
    let now = t0();
    let client = addr(CLIENT);
    let config = ServerConfig {
        retries: 2,
        ..ServerConfig::default()
    };
    let src = MemSource::new(pattern(1000));
    let mut m = ServerRead::new(now, client, &request(&[]), src, &config).unwrap();
    sent(&mut m, now);
    m.handle_datagram(now, client, &ack(1));
    let mut t = now;
    let mut last_blocks = 0;
    let mut last = Vec::new();
    while !m.is_closed() {
        let out = sent(&mut m, t);
        last_blocks += out
            .iter()
            .filter(|(_, b)| b[..4] == *b"\x00\x03\x00\x02")
            .count();
        last = out.last().map(|o| o.1.clone()).unwrap_or(last);
        let Some(d) = m.poll_timeout() else { break };
        t = d;
        m.handle_timeout(t);
    }
    // Sent, then resent at least at each of the two retries (the adaptive
    // timer's early backoff steps are free).
    assert!(
        last_blocks >= 3,
        "the last block went out {last_blocks} times"
    );
    assert_eq!(&last[..4], b"\x00\x05\x00\x00", "an ERROR before giving up");
    assert!(matches!(
        finished(&mut m),
        Some(Err(TransferError::Unconfirmed { retries: 2 }))
    ));
}

/// An upload's DATA #2 is lost, and the sender is one that restarts its
/// timer on every datagram it receives and ignores a repeated ACK
/// (tftp-hpa's `tftp_sendfile`, rexmt 5 s). The server's re-ACKs must
/// leave it a silence longer than its timer: past the configured timeout
/// each re-ACK doubles the wait, up to 8 s (1, 2, 4, 8, 8 s), so a 5 s
/// timer fires in an 8 s gap, where a fixed 1 s cap kept restarting it
/// until the server gave up after 5 s.
#[test]
fn an_uploads_re_acks_back_off_past_the_timeout_so_a_patient_sender_can_resend() {
    let now = t0();
    let client = addr(CLIENT);
    let config = ServerConfig::default(); // timeout 1 s, 5 retries
    let sink = crate::data::SharedSink::new();
    let mut m = ServerWrite::new(now, client, &request(&[]), sink.clone(), &config).unwrap();
    assert_eq!(sent(&mut m, now), vec![(client, ack(0))]);
    m.handle_datagram(now, client, &data(1, &[1u8; 512]));
    assert_eq!(sent(&mut m, now), vec![(client, ack(1))]);
    // DATA #2 is lost. Follow the server's re-ACKs while the client is
    // silent, and the gaps between them.
    let mut t = now;
    let mut re_acks = Vec::new();
    while let Some(d) = m.poll_timeout() {
        m.handle_timeout(d);
        let out = sent(&mut m, d);
        if out.iter().any(|(_, b)| *b == ack(1)) {
            re_acks.push(d - t);
            t = d;
        }
        if m.is_closed() {
            break;
        }
    }
    let full: Vec<Duration> = re_acks
        .iter()
        .copied()
        .filter(|&g| g >= config.timeout)
        .collect();
    assert_eq!(
        full,
        [1, 2, 4, 8, 8].map(Duration::from_secs).to_vec(),
        "gaps {re_acks:?}"
    );
    // With the client silent for good, the server gives up after its 5
    // retries, as before, only later.
    assert!(matches!(
        finished(&mut m),
        Some(Err(TransferError::TimedOut { retries: 5 }))
    ));
}

/// The final ACK of an upload is lost. A client that named no timer
/// (tftp-hpa's, U-Boot's: 5 s) resends its last DATA 5 s later, and again
/// 5 s after that: the server is still dallying both times and re-ACKs, so
/// the client learns the upload landed. With a dally of twice the server's
/// own 1 s timeout it had closed, and the client reported a timeout for an
/// upload that was whole (the 100 000-run sweep's upload failures).
#[test]
fn an_upload_dallies_long_enough_for_a_classic_5_s_client_to_resend_twice() {
    let now = t0();
    let client = addr(CLIENT);
    let sink = crate::data::SharedSink::new();
    let config = ServerConfig::default(); // timeout 1 s
    let mut m = ServerWrite::new(now, client, &request(&[]), sink.clone(), &config).unwrap();
    assert_eq!(sent(&mut m, now), vec![(client, ack(0))]);
    m.handle_datagram(now, client, &data(1, b"last"));
    assert_eq!(sent(&mut m, now), vec![(client, ack(1))]); // lost
    for resend in [5, 10].map(|s| now + Duration::from_secs(s)) {
        while let Some(d) = m.poll_timeout().filter(|&d| d <= resend) {
            m.handle_timeout(d);
            assert!(sent(&mut m, d).is_empty(), "nothing is owed while dallying");
        }
        assert!(
            !m.is_closed(),
            "closed before the client's resend at {resend:?}"
        );
        m.handle_datagram(resend, client, &data(1, b"last"));
        assert_eq!(sent(&mut m, resend), vec![(client, ack(1))]);
    }
    assert!(sink.snapshot().committed);
    assert_eq!(sink.snapshot().data, b"last");
    // The dally ends after that: 2 x 5 s + the server's timeout.
    while let Some(d) = m.poll_timeout() {
        m.handle_timeout(d);
        if m.is_closed() {
            break;
        }
    }
    assert!(m.is_closed());
}

/// The backoff past the timeout is for a transfer under way: a download's
/// request that meets silence is resent at the timeout's pace, so a
/// client asking a server that is not there gives up as soon as before.
#[test]
fn an_unanswered_request_is_resent_at_the_timeout_not_backed_off_past_it() {
    let now = t0();
    let config = ClientConfig::default();
    let sink = crate::data::SharedSink::new();
    let mut m = ClientGet::new(now, addr(LISTEN), "f", sink, &config).unwrap();
    let mut gaps = Vec::new();
    let mut t = now;
    assert_eq!(sent(&mut m, now).len(), 1, "the RRQ");
    while let Some(d) = m.poll_timeout() {
        m.handle_timeout(d);
        if !sent(&mut m, d).is_empty() {
            gaps.push(d - t);
            t = d;
        }
        if m.is_closed() {
            break;
        }
    }
    assert!(
        gaps.iter().all(|&g| g <= Duration::from_secs(1)),
        "{gaps:?}"
    );
    assert!(
        t - now < Duration::from_secs(8),
        "gave up after {:?}",
        t - now
    );
}

#[test]
fn duplicate_data_is_reacked_and_written_once() {
    let now = t0();
    let server = addr(SERVER_TID);
    let sink = crate::data::SharedSink::new();
    let mut m = ClientGet::new(
        now,
        addr(LISTEN),
        "f",
        sink.clone(),
        &ClientConfig::default(),
    )
    .unwrap();
    sent(&mut m, now); // RRQ
    let block1 = data(1, &[7u8; 512]);
    m.handle_datagram(now, server, &block1);
    assert_eq!(sent(&mut m, now), vec![(server, ack(1))]);
    m.handle_datagram(now, server, &block1);
    assert_eq!(sent(&mut m, now), vec![(server, ack(1))]);
    assert_eq!(sink.snapshot().data.len(), 512);
    assert_eq!(m.counters().duplicate_data, 1);
    m.handle_datagram(now, server, &data(2, b"end"));
    assert_eq!(sent(&mut m, now), vec![(server, ack(2))]);
    assert_eq!(sink.snapshot().data.len(), 515);
}

#[test]
fn receiver_dallies_and_reacks_a_repeated_last_block() {
    let now = t0();
    let server = addr(SERVER_TID);
    let sink = crate::data::SharedSink::new();
    let mut m = ClientGet::new(
        now,
        addr(LISTEN),
        "f",
        sink.clone(),
        &ClientConfig::default(),
    )
    .unwrap();
    sent(&mut m, now);
    m.handle_datagram(now, server, &data(1, b"tiny"));
    assert_eq!(sent(&mut m, now), vec![(server, ack(1))]);
    // The final ACK goes out first; the download commits, and reports its
    // end, at a deadline of now.
    assert!(finished(&mut m).is_none() && !sink.snapshot().committed);
    assert_eq!(m.poll_timeout(), Some(now));
    m.handle_timeout(now);
    assert!(sink.snapshot().committed);
    assert!(matches!(finished(&mut m), Some(Ok(_))));
    assert!(!m.is_closed(), "closed without dallying");
    let later = now + Duration::from_secs(1);
    m.handle_datagram(later, server, &data(1, b"tiny"));
    assert_eq!(sent(&mut m, later), vec![(server, ack(1))]);
    let end = m.poll_timeout().unwrap();
    m.handle_timeout(end);
    assert!(m.is_closed());
    assert_eq!(sink.snapshot().data, b"tiny");
}

#[test]
fn client_takes_the_tid_from_the_first_answer_and_refuses_a_second_server_port() {
    let now = t0();
    let sink = crate::data::SharedSink::new();
    let mut m = ClientGet::new(now, addr(LISTEN), "f", sink, &ClientConfig::default()).unwrap();
    sent(&mut m, now);
    let first = addr("10.0.0.1:50000");
    let second = addr("10.0.0.1:50001"); // a second transfer from a duplicated RRQ
    m.handle_datagram(now, first, &data(1, &[1u8; 512]));
    m.handle_datagram(now, second, &data(1, &[2u8; 512]));
    let out = sent(&mut m, now);
    assert!(out.contains(&(second, b"\x00\x05\x00\x05unknown transfer ID\x00".to_vec())));
    assert!(out.contains(&(first, ack(1))));
}

#[test]
fn client_rejects_an_oack_with_a_larger_blksize_with_error_8() {
    let now = t0();
    let config = ClientConfig {
        options: OptionRequest {
            blksize: Some(1468),
            timeout: Some(5),
            ..OptionRequest::default()
        },
        ..ClientConfig::default()
    };
    let sink = crate::data::SharedSink::new();
    let mut m = ClientGet::new(now, addr(LISTEN), "f", sink.clone(), &config).unwrap();
    let rrq = sent(&mut m, now);
    assert_eq!(
        rrq[0].1,
        b"\x00\x01f\x00octet\x00blksize\x001468\x00timeout\x005\x00"
    );
    let server = addr(SERVER_TID);
    m.handle_datagram(now, server, b"\x00\x06blksize\x002048\x00timeout\x005\x00");
    let out = sent(&mut m, now);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].0, &out[0].1[..4]),
        (server, &b"\x00\x05\x00\x08"[..])
    );
    assert!(matches!(
        finished(&mut m),
        Some(Err(TransferError::Local {
            code: ErrorCode::OPTION_NEGOTIATION,
            ..
        }))
    ));
    assert!(sink.snapshot().aborted);
}

#[test]
fn uefi_style_probe_aborts_after_the_oack() {
    let now = t0();
    let config = ClientConfig {
        options: OptionRequest {
            tsize: Some(0),
            ..OptionRequest::default()
        },
        ..ClientConfig::default()
    };
    let sink = crate::data::SharedSink::new();
    let mut m = ClientGet::new(now, addr(LISTEN), "f", sink, &config).unwrap();
    sent(&mut m, now);
    let server = addr(SERVER_TID);
    m.handle_datagram(now, server, b"\x00\x06tsize\x0012345\x00");
    let size = std::iter::from_fn(|| m.poll_event()).find_map(|e| match e {
        Event::Negotiated(n) => n.tsize,
        _ => None,
    });
    assert_eq!(size, Some(12345));
    m.abort(ErrorCode::OPTION_NEGOTIATION, "tsize probe");
    let out = sent(&mut m, now);
    assert_eq!(
        out,
        vec![(server, b"\x00\x05\x00\x08tsize probe\x00".to_vec())]
    );
    assert!(m.is_closed());
}

/// The server resends its OACK only when our ACK 0 was lost: the client
/// answers each repeat at once (before DATA #1), as it answers a repeated
/// block, instead of on its own timer, which backs off to 8 s once the
/// transfer is under way. A 3000-case property run found a client whose
/// ACK 0s, 8 s apart, were all lost while the server's 40 OACKs went
/// unanswered.
#[test]
fn a_repeated_oack_is_answered_with_ack_0_at_once() {
    let now = t0();
    let config = ClientConfig {
        options: OptionRequest {
            windowsize: Some(1),
            ..OptionRequest::default()
        },
        ..ClientConfig::default()
    };
    let sink = crate::data::SharedSink::new();
    let mut m = ClientGet::new(now, addr(LISTEN), "f", sink, &config).unwrap();
    sent(&mut m, now);
    let server = addr(SERVER_TID);
    let oack = b"\x00\x06windowsize\x001\x00";
    m.handle_datagram(now, server, oack);
    assert_eq!(sent(&mut m, now), vec![(server, ack(0))]);
    let later = now + Duration::from_secs(1);
    m.handle_datagram(later, server, oack);
    assert_eq!(sent(&mut m, later), vec![(server, ack(0))]);
    // After DATA #1 an OACK is a stray: nothing.
    m.handle_datagram(later, server, &data(1, &[7u8; 512]));
    assert_eq!(sent(&mut m, later), vec![(server, ack(1))]);
    m.handle_datagram(later, server, oack);
    assert_eq!(sent(&mut m, later), vec![]);
}

/// A sink whose commit fails, as a create-mode upload's does when the
/// name appeared while it ran.
struct NameTaken;

impl crate::data::Sink for NameTaken {
    fn write_at(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn commit(&mut self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::AlreadyExists.into())
    }
    fn abort(&mut self) {}
}

/// An upload whose commit fails owes the sender an ERROR instead of the
/// final ACK. Sent once and lost, the sender resends its last block and
/// times out not knowing why (upload-race, 2 of 100 seeds): each resend is
/// answered with the ERROR again, for as long as a dally lasts.
#[test]
fn a_failed_commit_repeats_its_error_to_a_resent_last_block() {
    let now = t0();
    let client = addr(CLIENT);
    let config = ServerConfig::default(); // timeout 1 s
    let mut m = ServerWrite::new(now, client, &request(&[]), NameTaken, &config).unwrap();
    assert_eq!(sent(&mut m, now), vec![(client, ack(0))]);
    m.handle_datagram(now, client, &data(1, b"short"));
    while let Some(d) = m.poll_timeout().filter(|&d| d <= now) {
        m.handle_timeout(d);
    }
    let out = sent(&mut m, now);
    assert_eq!(out.len(), 1);
    let error = out[0].1.clone();
    assert_eq!(&error[..4], b"\x00\x05\x00\x06", "ERROR 6: {error:?}");
    assert!(matches!(
        finished(&mut m),
        Some(Err(TransferError::Local { .. }))
    ));
    // The ERROR was lost: the client's resend gets it again.
    let resend = now + Duration::from_secs(1);
    m.handle_datagram(resend, client, &data(1, b"short"));
    assert_eq!(sent(&mut m, resend), vec![(client, error)]);
    assert!(!m.is_closed());
    // Twice the timeout after the failure, the transfer is gone.
    let end = m.poll_timeout().expect("the echo's end");
    assert_eq!(end, now + Duration::from_secs(2));
    m.handle_timeout(end);
    assert!(m.is_closed());
    m.handle_datagram(end, client, &data(1, b"short"));
    assert_eq!(sent(&mut m, end), vec![]);
}

#[test]
fn server_write_answers_with_oack_and_rejects_mail_mode() {
    let now = t0();
    let client = addr(CLIENT);
    let sink = crate::data::SharedSink::new();
    let req = request(&[("blksize", "1024"), ("tsize", "3")]);
    let mut m =
        ServerWrite::new(now, client, &req, sink.clone(), &ServerConfig::default()).unwrap();
    assert_eq!(
        sent(&mut m, now),
        vec![(
            client,
            b"\x00\x06blksize\x001024\x00tsize\x003\x00".to_vec()
        )]
    );
    m.handle_datagram(now, client, &data(1, b"abc"));
    assert_eq!(sent(&mut m, now), vec![(client, ack(1))]);
    assert!(sink.snapshot().committed);

    let refused = parse_request(b"\x00\x02f\x00MAIL\x00").unwrap_err();
    assert_eq!(refused.code, ErrorCode::ILLEGAL_OPERATION);
    assert_eq!(parse_request(b"\x00\x04\x00\x01").unwrap(), None);
    // An ERROR is never answered, even a malformed one; an unknown opcode
    // gets a small ERROR 4, however large the datagram.
    assert_eq!(parse_request(b"\x00\x05\x00\x05oops\x00").unwrap(), None);
    assert_eq!(parse_request(b"\x00\x05").unwrap(), None);
    assert_eq!(parse_request(b"\x00").unwrap(), None);
    for opcode in [&b"\x00\x00"[..], b"\x00\x07", b"\xff\xff"] {
        let datagram = [opcode, &[b'x'; 1000][..]].concat();
        let refusal = parse_request(&datagram).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::ILLEGAL_OPERATION);
        let mut buf = [0u8; 512];
        assert_eq!(refusal.emit(&mut buf), Ok(UNKNOWN_OPCODE_REPLY_LEN));
    }
    assert_eq!(
        parse_request(b"\x00\x01\x00octet\x00").unwrap_err().code,
        ErrorCode::ILLEGAL_OPERATION
    );
}

/// U-Boot ACKs its last in-order block for every out-of-order block it
/// sees. The first gap ACK rewinds the window; more gap ACKs within a round
/// trip of that only move it on (the blocks past them are in flight), so
/// the sender does not answer each with a whole window.
#[test]
fn gap_acks_in_a_row_rewind_once_per_round_trip() {
    let now = t0();
    let client = addr(CLIENT);
    let src = MemSource::new(pattern(512 * 40));
    let req = request(&[("blksize", "512"), ("windowsize", "8")]);
    let mut m = ServerRead::new(now, client, &req, src, &ServerConfig::default()).unwrap();
    let blocks = |out: Vec<(std::net::SocketAddr, Vec<u8>)>| -> Vec<u16> {
        out.iter()
            .map(|(_, d)| u16::from_be_bytes([d[2], d[3]]))
            .collect()
    };
    assert_eq!(sent(&mut m, now).len(), 1); // the OACK
    m.handle_datagram(now, client, &ack(0));
    assert_eq!(blocks(sent(&mut m, now)), (1..=8).collect::<Vec<_>>());
    // Block 3 lost: the receiver ACKs 2 on seeing 4. Rewind to 3. (The
    // round trip measured so far is 0-2 ms.)
    let t = now + Duration::from_millis(2);
    m.handle_datagram(t, client, &ack(2));
    assert_eq!(blocks(sent(&mut m, t)), (3..=10).collect::<Vec<_>>());
    // It ACKs 2 again for 5..8: duplicates, nothing.
    m.handle_datagram(t, client, &ack(2));
    assert!(sent(&mut m, t).is_empty());
    // The resent 3 and 4 arrive, then an old 6: it ACKs 4. 5..10 are in
    // flight: only the window's new room goes out, 11 and 12.
    let t = t + Duration::from_micros(100);
    m.handle_datagram(t, client, &ack(4));
    assert_eq!(blocks(sent(&mut m, t)), vec![11, 12]);
    // Well over a round trip after the rewind, a gap ACK rewinds again.
    let t = t + Duration::from_secs(1);
    m.handle_datagram(t, client, &ack(6));
    assert_eq!(blocks(sent(&mut m, t)), (7..=14).collect::<Vec<_>>());
    assert_eq!(m.counters().timeouts, 0);
}

// ---- properties -------------------------------------------------------------
