//! The fuzz front-end of the harness: the bodies of the fuzz targets in
//! `fuzz/`, kept in the library so that `sim/tests/fuzz_regressions.rs`
//! replays every saved crash input and seed with a plain `cargo test` (no
//! nightly, no cargo-fuzz). `server_session` and `client_session` decode a
//! machine and a sequence of steps and run them through the the harness (`super`).
//!
//! Each `pub fn <target>(data: &[u8])` decodes its input, drives the code
//! under test and panics when an invariant breaks. Structured inputs (option
//! lists, sessions of datagrams and clock ticks) are decoded by hand with a
//! small byte reader rather than with `arbitrary`: the main crate gains no
//! dependency, and a crash file means the same thing to libFuzzer and to the
//! replay test. [`seeds`] writes the seed corpus in the same format.
//!
//! Input formats (every read past the end yields zeros, so any input is
//! valid; `chunk` is a length byte and that many bytes):
//! - `packet_parse`: the datagram itself.
//! - `options`: a selector byte, then for 0 (server side) direction, file
//!   size, limits and an option list; 1 (round trip) a typed client request,
//!   direction, file size, limits; 2 (client side) a typed request and an
//!   OACK option list.
//! - `netascii`: encoder output size (u16), blksize (u16), chunk sizes
//!   (chunk), source re-read ops (chunk), repeat count, then the data.
//! - `server_session`: a head byte (bit 0 WRQ, bits 1-3 mode, bit 7 NUL
//!   padding), filename (chunk), options, server config, payload fill
//!   (chunk), the file to serve, then steps: `op % 10` is 0 "what a correct
//!   peer sends next", 1/2 a generated/raw datagram from the peer, 3/4 the
//!   same from a stranger, 5 run to the deadline, 6 advance the clock, 7
//!   abort, 8 deliver the last datagram again, 9 reflect an emitted one.
//! - `client_session`: a head byte (bit 0 upload, bits 1-2 mode), filename
//!   (chunk), option flags and values, client config, fill, file, steps.
//! - `path_resolve`: an odd first byte and a raw name, or an even one and
//!   name pieces (`..`, link names, separators, raw bytes).
//!
//! Not API: hidden from the docs, changes whenever the targets do.

use super::{
    Act, Harness, Lenient, Role, SinkLog, Spec, TestSink, TestSource, Wire, CLIENT, LISTEN,
    SERVER_TID,
};
use std::io;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tftplab::data::{MemSource, Sink, Source};
use tftplab::netascii::{decode_all, encode_all, Decoder, Encoder, NetasciiSink, NetasciiSource};
use tftplab::options::{
    negotiate, parse_number, Direction, Limits, Negotiated, Opt, OptionRequest,
};
use tftplab::proto::{
    parse_request, ClientConfig, ClientGet, ClientPut, ServerConfig, ServerRead, ServerWrite,
    Summary, Transfer, TransferError, UNKNOWN_OPCODE_REPLY_LEN,
};
use tftplab::store::{Intent, Store, StoreConfig};
use tftplab::wire::{
    emit_error, ErrorCode, Mode, Opcode, Packet, ParseError, RawOption, Request, MAX_BLKSIZE,
    MIN_BLKSIZE,
};
// ---- input decoding ------------------------------------------------------

/// Reads a fuzz input front to back. Past the end every read yields zeros
/// (or empty slices), so any input decodes to something.
struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, rest)) => {
                self.rest = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(std::array::from_fn(|_| self.u8()))
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        head
    }

    /// A slice prefixed by its one-byte length.
    fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

/// The inverse of [`Input`], for writing seeds.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn chunk(&mut self, b: &[u8]) -> &mut Self {
        let n = u8::try_from(b.len()).expect("seed chunk longer than 255 bytes");
        self.u8(n);
        self.0.extend_from_slice(b);
        self
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
}

/// Option names the generators pick from; the last two are real options
/// tftplab does not know (atftp's multicast, RFC-less utimeout).
const OPTION_NAMES: [&str; 8] = [
    "blksize",
    "timeout",
    "tsize",
    "windowsize",
    "BlkSize",
    "WINDOWSIZE",
    "multicast",
    "utimeout",
];

/// An option value: a decimal number of some width, or raw bytes.
fn gen_value(input: &mut Input<'_>) -> Vec<u8> {
    match input.u8() % 7 {
        0 => input.u8().to_string().into_bytes(),
        1 => input.u16().to_string().into_bytes(),
        2 => input.u64().to_string().into_bytes(),
        3 => format!("{:0>8}", input.u16()).into_bytes(),
        4 => b"0".to_vec(),
        5 => format!("{}9", u64::MAX).into_bytes(),
        _ => input.chunk().to_vec(),
    }
}

fn gen_option(input: &mut Input<'_>) -> (Vec<u8>, Vec<u8>) {
    let sel = usize::from(input.u8());
    let name = match OPTION_NAMES.get(sel % 9) {
        Some(n) => n.as_bytes().to_vec(),
        None => input.chunk().to_vec(),
    };
    (name, gen_value(input))
}

fn gen_options(input: &mut Input<'_>, max: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
    let n = input.u8() % (max + 1);
    (0..n).map(|_| gen_option(input)).collect()
}

fn raw_options(owned: &[(Vec<u8>, Vec<u8>)]) -> Vec<RawOption<'_>> {
    owned
        .iter()
        .map(|(name, value)| RawOption { name, value })
        .collect()
}

fn push_options(out: &mut Vec<u8>, options: &[(Vec<u8>, Vec<u8>)]) {
    for (name, value) in options {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
}

// ---- packet_parse --------------------------------------------------------

/// Any bytes: parsing never panics; whatever parses emits to exactly
/// `emitted_len` bytes and parses back to the same packet; the listener's
/// classification agrees with the codec.
pub fn packet_parse(data: &[u8]) {
    let parsed = Packet::parse(data);
    if let Ok(packet) = &parsed {
        let _ = packet.to_string();
        let len = packet.emitted_len();
        let mut buf = vec![0u8; len];
        assert_eq!(packet.emit(&mut buf), Ok(len), "emit length");
        let again = Packet::parse(&buf).expect("emitted packet does not parse");
        assert_eq!(&again, packet, "parse(emit(p)) != p");
        if len > 0 {
            assert!(packet.emit(&mut buf[..len - 1]).is_err(), "emit overran");
        }
        if let Packet::Error { code, message } = packet {
            check_emit_error(*code, message, data.len() % 64);
        }
    }
    match parse_request(data) {
        Ok(Some((direction, request))) => {
            let expected = match direction {
                Direction::Read => Packet::Rrq(request.clone()),
                Direction::Write => Packet::Wrq(request.clone()),
            };
            assert_eq!(
                parsed.as_ref(),
                Ok(&expected),
                "listener and codec disagree"
            );
            assert_ne!(request.mode, Mode::Mail, "mail mode accepted");
        }
        Ok(None) => assert!(
            !matches!(parsed, Ok(Packet::Rrq(_) | Packet::Wrq(_))),
            "a request was ignored"
        ),
        Err(refusal) => {
            let unknown_opcode = matches!(parsed, Err(ParseError::UnknownOpcode(_)));
            assert!(
                matches!(data, [0, 1 | 2, ..]) || unknown_opcode,
                "refused a known non-request"
            );
            if unknown_opcode {
                let mut reply = [0u8; 512];
                let len = refusal.emit(&mut reply).expect("refusal fits");
                assert!(len <= UNKNOWN_OPCODE_REPLY_LEN, "the listener amplifies");
            }
            assert!(
                [ErrorCode::ILLEGAL_OPERATION, ErrorCode::OPTION_NEGOTIATION]
                    .contains(&refusal.code),
                "refusal with {}",
                refusal.code
            );
            check_refusal_emits(refusal.code, &refusal.message);
        }
    }
}

/// `emit_error` cuts the message to fit any buffer of 5 bytes or more.
fn check_emit_error(code: ErrorCode, message: &str, extra: usize) {
    let mut buf = vec![0u8; 5 + extra];
    let len = emit_error(&mut buf, code, message).expect("emit_error into 5+ bytes");
    match Packet::parse(&buf[..len]) {
        Ok(Packet::Error {
            code: c,
            message: m,
        }) => {
            assert_eq!(c, code);
            assert!(message.starts_with(m), "message not a prefix");
        }
        other => panic!("emit_error wrote {other:?}"),
    }
}

fn check_refusal_emits(code: ErrorCode, message: &str) {
    let mut buf = [0u8; 516];
    let len = emit_error(&mut buf, code, message).expect("refusal fits 516 bytes");
    assert!(
        matches!(Packet::parse(&buf[..len]), Ok(Packet::Error { code: c, .. }) if c == code),
        "refusal does not parse back"
    );
}

// ---- options --------------------------------------------------------------

/// Option negotiation, three ways (first byte): an arbitrary option list
/// against arbitrary server limits; a typed client request sent through the
/// codec to the server and its OACK back to the client; an arbitrary OACK
/// against an arbitrary client request.
pub fn options(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 3 {
        0 => options_server(&mut input),
        1 => options_round_trip(&mut input),
        _ => options_client(&mut input),
    }
}

fn gen_limits(input: &mut Input<'_>) -> Limits {
    Limits {
        max_blksize: input.u16(),
        max_windowsize: input.u16(),
        max_upload: input.bool().then(|| input.u64() >> (input.u8() % 64)),
        max_timeout: input.u8(),
        // Not drawn from the input, so saved inputs keep their meaning.
        refused: [false; 4],
    }
}

fn gen_direction(input: &mut Input<'_>) -> Direction {
    if input.bool() {
        Direction::Write
    } else {
        Direction::Read
    }
}

fn gen_file_size(input: &mut Input<'_>) -> Option<u64> {
    input.bool().then(|| input.u64() >> (input.u8() % 64))
}

/// The value of the one option called `opt` in a list negotiate accepted
/// (so without duplicates), parsed.
fn requested(options: &[RawOption<'_>], opt: Opt) -> Option<Option<u64>> {
    options
        .iter()
        .find(|o| o.is(opt.name()))
        .map(|o| parse_number(o.value))
}

fn options_server(input: &mut Input<'_>) {
    let direction = gen_direction(input);
    let file_size = gen_file_size(input);
    let limits = gen_limits(input);
    let owned = gen_options(input, 40);
    let request = Request {
        filename: "f",
        mode: Mode::Octet,
        options: raw_options(&owned),
    };
    let result = negotiate(&request, direction, file_size, &limits);
    let opts = &request.options;
    let count = |opt: Opt| opts.iter().filter(|o| o.is(opt.name())).count();
    let n = match result {
        Err(tftplab::options::NegotiationError::Duplicate(name)) => {
            let opt = Opt::ALL.into_iter().find(|o| o.name() == name).unwrap();
            assert!(count(opt) >= 2, "{name} refused as duplicate");
            return;
        }
        Err(tftplab::options::NegotiationError::TooLarge { announced, limit }) => {
            assert_eq!(direction, Direction::Write);
            assert_eq!(limits.max_upload, Some(limit));
            assert!(announced > limit);
            assert!(opts
                .iter()
                .any(|o| o.is("tsize") && parse_number(o.value) == Some(announced)));
            return;
        }
        Ok(n) => n,
    };
    for opt in Opt::ALL {
        assert!(count(opt) <= 1, "{} twice but accepted", opt.name());
    }
    check_server_negotiated(&n, opts, direction, file_size, &limits);

    // Unknown options change nothing, and neither does the case of names.
    let known: Vec<RawOption<'_>> = opts
        .iter()
        .copied()
        .filter(|o| Opt::ALL.iter().any(|k| o.is(k.name())))
        .collect();
    let lower: Vec<(Vec<u8>, Vec<u8>)> = known
        .iter()
        .map(|o| (o.name.to_ascii_lowercase(), o.value.to_vec()))
        .collect();
    let plain = Request {
        filename: "f",
        mode: Mode::Octet,
        options: raw_options(&lower),
    };
    assert_eq!(
        negotiate(&plain, direction, file_size, &limits),
        Ok(n),
        "unknown options or name case changed the outcome"
    );
    check_oack(&n, opts);
}

/// Values inside the RFC ranges and the server's caps, never above what was
/// asked, timeout echoed exactly, tsize as the RFC says for the direction.
fn check_server_negotiated(
    n: &Negotiated,
    opts: &[RawOption<'_>],
    direction: Direction,
    file_size: Option<u64>,
    limits: &Limits,
) {
    let accepted: Vec<Opt> = n.accepted().collect();
    assert!((MIN_BLKSIZE..=MAX_BLKSIZE).contains(&n.blksize));
    assert!(n.windowsize >= 1);
    match requested(opts, Opt::Blksize) {
        Some(Some(asked)) if asked >= u64::from(MIN_BLKSIZE) => {
            let cap = limits.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
            assert!(u64::from(n.blksize) <= asked && n.blksize <= cap);
            assert!(accepted.contains(&Opt::Blksize));
        }
        _ => {
            assert_eq!(n.blksize, 512);
            assert!(!accepted.contains(&Opt::Blksize));
        }
    }
    match requested(opts, Opt::Windowsize) {
        Some(Some(asked @ 1..=65535)) => {
            assert!(u64::from(n.windowsize) <= asked);
            assert!(n.windowsize <= limits.max_windowsize.max(1));
            assert!(accepted.contains(&Opt::Windowsize));
        }
        _ => {
            assert_eq!(n.windowsize, 1);
            assert!(!accepted.contains(&Opt::Windowsize));
        }
    }
    match requested(opts, Opt::Timeout) {
        Some(Some(asked @ 1..=255)) if asked <= u64::from(limits.max_timeout) => {
            assert_eq!(n.timeout.map(u64::from), Some(asked), "timeout not echoed");
            assert!(accepted.contains(&Opt::Timeout));
        }
        _ => {
            assert_eq!(n.timeout, None);
            assert!(!accepted.contains(&Opt::Timeout));
        }
    }
    match (requested(opts, Opt::Tsize), direction) {
        // Left out for an empty file (curl refuses `tsize 0`).
        (Some(Some(_)), Direction::Read) => {
            let reported = file_size.filter(|&size| size > 0);
            assert_eq!(n.tsize, reported);
            assert_eq!(accepted.contains(&Opt::Tsize), reported.is_some());
        }
        (Some(Some(v)), Direction::Write) => {
            assert_eq!(n.tsize, Some(v));
            assert!(limits.max_upload.is_none_or(|l| v <= l));
            assert!(accepted.contains(&Opt::Tsize));
        }
        _ => assert!(!accepted.contains(&Opt::Tsize)),
    }
    // Accepted options keep the client's order.
    let order: Vec<Opt> = opts
        .iter()
        .filter_map(|o| accepted.iter().copied().find(|k| o.is(k.name())))
        .collect();
    assert_eq!(order, accepted, "OACK order differs from the request's");
}

/// The OACK carries exactly the accepted options, lower case, with the
/// negotiated values; a buffer too small fails cleanly.
fn check_oack(n: &Negotiated, opts: &[RawOption<'_>]) {
    let mut buf = [0u8; 256];
    let len = n.emit_oack(&mut buf).expect("OACK fits 256 bytes");
    if !n.has_oack() {
        assert_eq!(len, 2);
        return;
    }
    let Ok(Packet::Oack { options }) = Packet::parse(&buf[..len]) else {
        panic!("emitted OACK does not parse");
    };
    let names: Vec<&[u8]> = options.iter().map(|o| o.name).collect();
    let expected: Vec<&[u8]> = n.accepted().map(|o| o.name().as_bytes()).collect();
    assert_eq!(names, expected);
    for o in &options {
        assert!(opts.iter().any(|r| r.is(&String::from_utf8_lossy(o.name))));
        let v = parse_number(o.value).expect("OACK value not a number");
        let want = match Opt::ALL.into_iter().find(|k| o.is(k.name())) {
            Some(Opt::Blksize) => u64::from(n.blksize),
            Some(Opt::Windowsize) => u64::from(n.windowsize),
            Some(Opt::Timeout) => u64::from(n.timeout.expect("timeout in OACK")),
            Some(Opt::Tsize) => n.tsize.expect("tsize in OACK"),
            None => panic!("unknown option in OACK"),
        };
        assert_eq!(v, want);
    }
    for short in [0, 1, 2, len - 1] {
        assert!(n.emit_oack(&mut buf[..short]).is_err(), "OACK overran");
    }
}

fn gen_option_request(input: &mut Input<'_>) -> OptionRequest {
    let flags = input.u8();
    OptionRequest {
        blksize: (flags & 1 != 0).then(|| input.u16()),
        timeout: (flags & 2 != 0).then(|| input.u8()),
        tsize: (flags & 4 != 0).then(|| input.u64() >> (input.u8() % 64)),
        windowsize: (flags & 8 != 0).then(|| input.u16()),
    }
}

/// Our client's request, through the codec, to our server and back: the
/// client accepts the server's OACK and both settle on the same values.
fn options_round_trip(input: &mut Input<'_>) {
    let asked = gen_option_request(input);
    let direction = gen_direction(input);
    let file_size = gen_file_size(input);
    let limits = gen_limits(input);
    let opcode = match direction {
        Direction::Read => Opcode::Rrq,
        Direction::Write => Opcode::Wrq,
    };
    let mut buf = [0u8; 256];
    let len = asked
        .emit_request(&mut buf, opcode, "start4.elf", Mode::Octet)
        .expect("request fits 256 bytes");
    let (dir, request) = match parse_request(&buf[..len]) {
        Ok(Some(r)) => r,
        other => panic!("our own request does not parse: {other:?}"),
    };
    assert_eq!(dir, direction);
    let server = match negotiate(&request, direction, file_size, &limits) {
        Ok(n) => n,
        Err(e) => {
            assert!(matches!(
                e,
                tftplab::options::NegotiationError::TooLarge { .. }
            ));
            return;
        }
    };
    check_server_negotiated(&server, &request.options, direction, file_size, &limits);
    let mut oack = [0u8; 256];
    let len = server.emit_oack(&mut oack).expect("OACK fits");
    let options = match Packet::parse(&oack[..len]) {
        Ok(Packet::Oack { options }) => options,
        other => panic!("OACK does not parse: {other:?}"),
    };
    let client = asked
        .validate_oack(&options)
        .unwrap_or_else(|e| panic!("our client rejects our server's OACK: {e}"));
    assert_eq!(client, server, "client and server settled differently");
}

/// Any OACK against any request: never panics; what is accepted was asked
/// for, is not above it, echoes the timeout, and is inside the RFC ranges
/// whenever the request was.
fn options_client(input: &mut Input<'_>) {
    let asked = gen_option_request(input);
    let owned = gen_options(input, 40);
    let options = raw_options(&owned);
    let Ok(n) = asked.validate_oack(&options) else {
        return;
    };
    let mut seen = Vec::new();
    for o in &options {
        let opt = Opt::ALL
            .into_iter()
            .find(|k| o.is(k.name()))
            .expect("accepted an unknown option");
        assert!(!seen.contains(&opt), "accepted {} twice", opt.name());
        seen.push(opt);
    }
    let answered = |opt: Opt| seen.contains(&opt);
    assert_eq!(n.accepted().collect::<Vec<_>>(), seen);
    match asked.blksize {
        Some(b) if answered(Opt::Blksize) => {
            assert!(n.blksize >= MIN_BLKSIZE && n.blksize <= b);
        }
        _ => assert_eq!(n.blksize, 512),
    }
    match asked.windowsize {
        Some(w) if answered(Opt::Windowsize) => assert!(n.windowsize >= 1 && n.windowsize <= w),
        _ => assert_eq!(n.windowsize, 1),
    }
    if answered(Opt::Timeout) {
        assert_eq!(n.timeout, asked.timeout);
    } else {
        assert_eq!(n.timeout, None);
    }
    assert_eq!(n.tsize.is_some(), answered(Opt::Tsize));
    if asked.blksize.is_none_or(|b| b <= MAX_BLKSIZE) {
        assert!(n.blksize <= MAX_BLKSIZE);
    }
    if asked.timeout != Some(0) {
        assert_ne!(n.timeout, Some(0));
    }
    for o in &options {
        assert!(asked_option(&asked, o), "answered an option never asked");
    }
}

fn asked_option(asked: &OptionRequest, o: &RawOption<'_>) -> bool {
    (o.is("blksize") && asked.blksize.is_some())
        || (o.is("timeout") && asked.timeout.is_some())
        || (o.is("tsize") && asked.tsize.is_some())
        || (o.is("windowsize") && asked.windowsize.is_some())
}

// ---- netascii -------------------------------------------------------------

/// Arbitrary bytes split at arbitrary block edges: encoding then decoding is
/// the identity whatever the chunking; decoding anything never panics and
/// does not depend on the chunking; the positional source and sink agree
/// with the one-shot functions, also when the source re-reads windows.
pub fn netascii(data: &[u8]) {
    let mut input = Input::new(data);
    let enc_out = 1 + usize::from(input.u16() % 1024);
    let blksize = 8 + usize::from(input.u16() % 1500);
    let cuts: Vec<usize> = input.chunk().iter().map(|&c| 1 + usize::from(c)).collect();
    let ops = input.chunk();
    let repeat = 1 + usize::from(input.u8() % 16);
    let x: Vec<u8> = input.rest().repeat(repeat);

    let wire = encode_all(&x);
    assert_eq!(encode_chunked(&x, &cuts, enc_out), wire, "chunked encode");
    assert_eq!(decode_all(&wire), x, "decode(encode(x)) != x");
    assert_eq!(decode_chunked(&wire, &cuts), x, "chunked decode of encode");
    assert_eq!(sink_decode(&wire, blksize), x, "sink decode of encode");

    // x as wire data: lenient decoding, any chunking, never longer.
    let y = decode_all(&x);
    assert!(y.len() <= x.len());
    assert_eq!(decode_chunked(&x, &cuts), y, "decoding depends on chunking");
    assert_eq!(sink_decode(&x, blksize), y, "sink decode of anything");
    assert_eq!(decode_all(&encode_all(&y)), y);

    source_reads(&x, &wire, blksize, ops);
}

/// The size of the `i`th chunk when cutting at `cuts` (cycled).
fn cut(cuts: &[usize], i: usize) -> usize {
    if cuts.is_empty() {
        usize::MAX
    } else {
        cuts[i % cuts.len()]
    }
}

fn encode_chunked(x: &[u8], cuts: &[usize], out_len: usize) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut out = vec![0u8; out_len];
    let (mut wire, mut pos, mut i) = (Vec::new(), 0usize, 0);
    loop {
        let end = pos.saturating_add(cut(cuts, i)).min(x.len());
        i += 1;
        let (c, w) = enc.encode(&x[pos..end], &mut out);
        assert!(c <= end - pos && w <= out_len);
        wire.extend_from_slice(&out[..w]);
        pos += c;
        if pos == x.len() && !enc.has_pending() {
            return wire;
        }
        assert!(c > 0 || w > 0, "encoder made no progress");
    }
}

fn decode_chunked(wire: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut dec = Decoder::new();
    let (mut out, mut pos, mut i) = (Vec::new(), 0usize, 0);
    while pos < wire.len() {
        let end = pos.saturating_add(cut(cuts, i)).min(wire.len());
        i += 1;
        dec.decode(&wire[pos..end], &mut out);
        pos = end;
    }
    dec.finish(&mut out);
    out
}

fn sink_decode(wire: &[u8], blksize: usize) -> Vec<u8> {
    let checked = TestSink::new(SinkLog::default());
    let log = checked.0.clone();
    let mut sink = NetasciiSink::new(checked);
    let mut offset = 0u64;
    for block in wire.chunks(blksize) {
        sink.write_at(offset, block).expect("netascii sink write");
        offset += block.len() as u64;
    }
    sink.commit().expect("netascii sink commit");
    let s = log.borrow();
    assert!(s.misuse().is_empty(), "sink misuse: {:?}", s.misuse());
    assert!(s.commits == 1 && s.aborts == 0);
    s.data.clone()
}

/// Reads the encoding of `x` as a sender would: in order, releasing what is
/// acknowledged and jumping back to the unacknowledged window (`ops`).
fn source_reads(x: &[u8], wire: &[u8], blksize: usize, ops: &[u8]) {
    let mut src = NetasciiSource::new(MemSource::new(x));
    assert_eq!(src.size(), None);
    let mut buf = vec![0u8; blksize];
    let mut got = Vec::new();
    loop {
        let n = src.read_at(got.len() as u64, &mut buf).expect("read_at");
        src.release_before(got.len() as u64);
        got.extend_from_slice(&buf[..n]);
        if n < blksize {
            break;
        }
    }
    assert_eq!(got, wire, "sequential source reads");

    let mut src = NetasciiSource::new(MemSource::new(x));
    let (mut next, mut released) = (0usize, 0usize);
    for &op in ops {
        let pick = released + usize::from(op / 4) % (next - released + 1);
        match op % 4 {
            0 => {
                released = pick;
                src.release_before((released * blksize) as u64);
            }
            1 => next = pick,
            _ => {
                let n = src
                    .read_at((next * blksize) as u64, &mut buf)
                    .expect("read_at");
                let start = (next * blksize).min(wire.len());
                let end = (start + blksize).min(wire.len());
                assert_eq!(&buf[..n], &wire[start..end], "re-read of block {next}");
                next += 1;
            }
        }
    }
}

// ---- scenario_parse ---------------------------------------------------------

/// Arbitrary text through the scenario loader: it never panics, never
/// allocates without bound, and every error is one line that names the file
/// and, unless the whole file lacks its `[[clients]]`, a line inside it.
/// What loads is consistent: 1..=MAX_CLIENTS clients with distinct names,
/// every action's line inside the text, a fault plan that passes its check.
pub fn scenario_parse(data: &[u8]) {
    use crate::lab::scenario::{Scenario, MAX_CLIENTS};
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz/scenario.toml");
    let lines = text.lines().count().max(1) + 1;
    match Scenario::parse(&text, path) {
        Ok(scenario) => {
            let clients = &scenario.clients;
            assert!(!clients.is_empty() && clients.len() <= MAX_CLIENTS);
            let mut names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), clients.len(), "two clients share a name");
            for action in clients.iter().flat_map(|c| &c.actions) {
                assert!(
                    (1..=lines).contains(&action.line),
                    "action line {}",
                    action.line
                );
            }
            assert_eq!(scenario.faults.check(), Ok(()));
            assert!(scenario.events.windows(2).all(|w| w[0].at <= w[1].at));
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "error over several lines: {shown:?}");
            assert!(shown.starts_with("fuzz/scenario.toml"), "{shown:?}");
            assert!(!e.message.trim().is_empty(), "empty error message");
            match e.line {
                Some(line) => assert!((1..=lines).contains(&line), "line {line}: {shown}"),
                None => assert!(
                    e.message.starts_with("no [[clients]]"),
                    "error without a line: {shown}"
                ),
            }
        }
    }
}

// ---- path_resolve ---------------------------------------------------------

/// Arbitrary names against a root holding symlinks that point inside and
/// outside, next to a sibling `tftp-private`: whatever resolves is inside
/// the canonical root, and refusals carry no host path and never code 0.
pub fn path_resolve(data: &[u8]) {
    let fixture = fixture();
    let name = gen_name(&mut Input::new(data));
    for store in &fixture.stores {
        for intent in [Intent::Read, Intent::Write] {
            match store.resolve(&name, intent) {
                Ok(path) => check_inside(&fixture.root, &path, intent, &name),
                Err(e) => {
                    let message = e.message();
                    let base = fixture.base.to_string_lossy();
                    assert!(!message.contains(&*base), "host path in {message:?}");
                    assert_ne!(
                        e.error_code(),
                        ErrorCode::UNDEFINED,
                        "ERROR 0 for {name:?} ({intent:?}): {e}"
                    );
                }
            }
        }
    }
}

/// Path pieces the structured names are built from.
const NAME_PARTS: [&str; 24] = [
    "..",
    ".",
    "",
    "boot",
    "start4.elf",
    "file.bin",
    "9ffefdef",
    "overlays",
    "link-in",
    "link-in-abs",
    "link-file",
    "link-out",
    "link-out-abs",
    "link-sibling",
    "link-sibling-file",
    "link-parent",
    "link-dangling",
    "link-loop",
    "link-chain-out",
    "link-escape",
    "link-root",
    "tftp-private",
    "tftp",
    "secret",
];

/// Odd first byte: the rest as a (lossy UTF-8) name. Even: a name built
/// from [`NAME_PARTS`] and raw pieces, joined by `/` or `\`.
fn gen_name(input: &mut Input<'_>) -> String {
    if input.u8() % 2 == 1 {
        return String::from_utf8_lossy(input.rest()).into_owned();
    }
    let mut name = String::new();
    while !input.is_empty() {
        let sel = usize::from(input.u8());
        match sel % 4 {
            0 => name.push('/'),
            1 if sel % 8 == 1 => name.push('\\'),
            _ => match NAME_PARTS.get(sel / 4 % 32) {
                Some(part) => name.push_str(part),
                None => name.push_str(&String::from_utf8_lossy(input.chunk())),
            },
        }
    }
    name
}

fn check_inside(root: &Path, path: &Path, intent: Intent, name: &str) {
    let rel = path
        .strip_prefix(root)
        .unwrap_or_else(|_| panic!("{name:?} resolved outside the root: {}", path.display()));
    assert!(
        rel.components().all(|c| matches!(c, Component::Normal(_))),
        "{name:?} resolved to {} (not normal components)",
        path.display()
    );
    // Whatever exists on the way must really be inside, links followed.
    let mut existing = path;
    while std::fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().expect("the root exists");
    }
    let real = std::fs::canonicalize(existing).expect("canonicalize an existing path");
    assert!(
        real.starts_with(root),
        "{name:?} resolved to {} which is really {}",
        path.display(),
        real.display()
    );
    if intent == Intent::Read {
        assert!(real.is_file(), "{name:?} read resolves to a non-file");
    }
}

struct Fixture {
    base: PathBuf,
    /// Canonical.
    root: PathBuf,
    stores: Vec<Store>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| build_fixture().expect("path_resolve fixture"))
}

const FIXTURE_PREFIX: &str = "tftplab-fuzz-";

/// `<tmp>/tftplab-fuzz-<pid>/{tftp, tftp-private, outside}`, with links:
/// the layout of a netboot root plus every way out seen in the wild.
fn build_fixture() -> io::Result<Fixture> {
    remove_stale_fixtures();
    let base = std::env::temp_dir().join(format!("{FIXTURE_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("tftp");
    for dir in [
        "tftp/boot/overlays",
        "tftp/9ffefdef",
        "tftp-private",
        "outside/dir",
    ] {
        std::fs::create_dir_all(base.join(dir))?;
    }
    for file in [
        "tftp/boot/start4.elf",
        "tftp/boot/overlays/x.dtbo",
        "tftp/9ffefdef/start4.elf",
        "tftp/file.bin",
        "tftp-private/secret",
        "outside/secret",
        "outside/dir/file.bin",
    ] {
        std::fs::write(base.join(file), file)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        let abs = |p: &str| base.join(p);
        let links: [(&str, PathBuf); 18] = [
            ("link-in", "boot".into()),
            ("link-in-abs", abs("tftp/boot")),
            ("link-file", "file.bin".into()),
            ("boot/link-up", "../file.bin".into()),
            ("boot/link-root", "..".into()),
            ("link-out", "../outside".into()),
            ("link-out-abs", abs("outside/secret")),
            ("link-sibling", "../tftp-private".into()),
            ("link-sibling-file", "../tftp-private/secret".into()),
            ("boot/link-escape", "../../outside".into()),
            ("boot/link-sibling-abs", abs("tftp-private")),
            ("link-parent", "..".into()),
            ("link-dangling", "missing".into()),
            ("link-loop", "link-loop".into()),
            ("link-chain", "link-in".into()),
            ("link-chain-out", "link-out".into()),
            ("link-slash", "/".into()),
            ("overlays", "boot/overlays".into()),
        ];
        for (link, target) in links {
            symlink(target, root.join(link))?;
        }
        symlink("tftp", base.join("tftp-link"))?;
    }
    let canonical = std::fs::canonicalize(&root)?;
    let mut configs = vec![
        StoreConfig::new(&root),
        StoreConfig::new(&root).backslash_to_slash(true),
        StoreConfig::new(&root).create_dirs(true),
    ];
    if cfg!(unix) {
        // The root named through a link: resolution must use the canonical root.
        let via_link = StoreConfig::new(base.join("tftp-link"));
        configs.push(via_link.backslash_to_slash(true).create_dirs(true));
    }
    let stores = configs
        .into_iter()
        .map(Store::new)
        .collect::<io::Result<Vec<_>>>()?;
    Ok(Fixture {
        base,
        root: canonical,
        stores,
    })
}

/// Removes fixtures left by processes that are gone (Linux: /proc tells).
fn remove_stale_fixtures() {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(FIXTURE_PREFIX)) else {
            continue;
        };
        if pid.bytes().all(|b| b.is_ascii_digit()) && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

// ---- server_session and client_session: the harness, fed from bytes -------

/// Steps one session may take, so every input runs in bounded time.
const MAX_STEPS: usize = 1024;
/// DATA payload bytes a harness sends a receiver, so memory stays small.
const PAYLOAD_BUDGET: usize = 1 << 20;

/// The fuzz front-end of the the harness (`super`): decodes steps and plays the peer.
struct Session {
    h: Harness,
    /// Where the well-formed traffic comes from (fixed: a client's peer may
    /// become a stranger if another server port answered first).
    peer: SocketAddr,
    /// The client's request options as a server sees them (clients only).
    asked: OptionRequest,
    payload_left: usize,
    fill: Vec<u8>,
}

fn fill_bytes(fill: &[u8], seed: u64, len: usize) -> Vec<u8> {
    let start = (seed as usize).wrapping_mul(7) % fill.len();
    fill.iter().cycle().skip(start).take(len).copied().collect()
}

fn packet_bytes(p: &Packet<'_>) -> Vec<u8> {
    let mut b = vec![0u8; p.emitted_len()];
    p.emit(&mut b).expect("sized buffer");
    b
}

/// A file for a sender: raw input bytes, a binary pattern, text with every
/// kind of line ending, or nothing.
fn gen_file(input: &mut Input<'_>) -> Vec<u8> {
    match input.u8() % 4 {
        0 => input.chunk().to_vec(),
        1 => {
            let len = usize::from(input.u16());
            (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
        }
        2 => {
            let len = usize::from(input.u16());
            b"line\r\nbare cr\r and lf\n\r\0x"
                .iter()
                .copied()
                .cycle()
                .take(len)
                .collect()
        }
        _ => Vec::new(),
    }
}

/// A well-formed (or deliberately bent) packet near the block `hint`.
fn gen_packet(input: &mut Input<'_>, hint: u16, blksize: usize, fill: &[u8]) -> Vec<u8> {
    let kind = input.u8();
    let block = match input.u8() % 4 {
        0 => hint,
        1 => hint.wrapping_add(input.u8() as i8 as u16),
        2 => input.u16(),
        _ => 0,
    };
    let mut p = match kind % 8 {
        0 | 1 => {
            let len = match input.u8() % 4 {
                0 => blksize,
                1 => blksize + 1,
                2 => 0,
                _ => usize::from(input.u16()) % (blksize + 1),
            };
            let data = fill_bytes(fill, u64::from(block), len);
            packet_bytes(&Packet::Data { block, data: &data })
        }
        2 | 3 => packet_bytes(&Packet::Ack { block }),
        4 => {
            let mut p = vec![0, 5];
            p.extend_from_slice(&(input.u16() % 10).to_be_bytes());
            p.extend_from_slice(input.chunk());
            p.push(0);
            p
        }
        5 => {
            let mut p = vec![0, 6];
            push_options(&mut p, &gen_options(input, 5));
            p
        }
        6 => {
            let mut p = vec![0, 1 + input.u8() % 2];
            p.extend_from_slice(b"start4.elf\0octet\0");
            push_options(&mut p, &gen_options(input, 3));
            p
        }
        _ => {
            let mut p = vec![0, 3 + input.u8() % 4];
            p.extend_from_slice(input.chunk());
            p
        }
    };
    if kind >= 0xF0 {
        let keep = usize::from(input.u8()) % (p.len() + 1);
        p.truncate(keep);
    }
    p
}

impl Session {
    fn new(h: Harness, fill: Vec<u8>) -> Self {
        let peer = if h.role().is_client() {
            SERVER_TID
        } else {
            CLIENT
        };
        Session {
            h,
            peer,
            asked: OptionRequest::default(),
            payload_left: PAYLOAD_BUDGET,
            fill: if fill.is_empty() {
                b"tftplab\r\n\r\0\n".to_vec()
            } else {
                fill
            },
        }
    }

    /// Runs the decoded steps, then lets the clock run until the machine
    /// closes, which it must do within its timeout budget.
    fn run(mut self, input: &mut Input<'_>) -> Option<Result<Summary, TransferError>> {
        let mut steps = 0;
        while !input.is_empty() && steps < MAX_STEPS && !self.h.m.is_closed() {
            steps += 1;
            self.step(input);
        }
        self.h.run_to_close();
        self.h.finished
    }

    fn deliver(&mut self, from: SocketAddr, datagram: Vec<u8>) {
        self.h.step(Act::Dgram(from, datagram));
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let hint = if self.h.role().sends_data() {
            self.h.data_hi as u16
        } else {
            self.h.model_next as u16
        };
        let blksize = self.h.blksize();
        let strangers = self.h.strangers();
        match input.u8() % 10 {
            0 => {
                let p = self.progress(input);
                self.deliver(self.peer, p);
            }
            1 => {
                let p = gen_packet(input, hint, blksize, &self.fill);
                self.deliver(self.peer, p);
            }
            2 => {
                let p = input.chunk().to_vec();
                self.deliver(self.peer, p);
            }
            3 => {
                let from = strangers[usize::from(input.u8() % 2)];
                let p = gen_packet(input, hint, blksize, &self.fill);
                self.deliver(from, p);
            }
            4 => {
                let from = strangers[usize::from(input.u8() % 2)];
                let p = input.chunk().to_vec();
                self.deliver(from, p);
            }
            // Run to the deadline, if there is one.
            5 => {
                if self.h.m.poll_timeout().is_some() {
                    self.h.fire();
                }
            }
            // Advance the clock, and handle the timeout if it is due.
            6 => {
                let d = Duration::from_millis(input.u16().into());
                self.h.step(Act::Advance(d));
                if self.h.m.poll_timeout().is_some_and(|t| t <= self.h.now) {
                    self.h.step(Act::Timeout);
                }
            }
            7 => {
                let codes = [0, 1, 2, 3, 4, 6, 8];
                let code = ErrorCode(codes[usize::from(input.u8()) % codes.len()]);
                let message = String::from_utf8_lossy(input.chunk()).into_owned();
                self.h.step(Act::Abort(code, message));
            }
            8 => {
                if let Some((from, p)) = self.h.last_in.clone() {
                    self.deliver(from, p);
                }
            }
            _ => {
                let i = usize::from(input.u8());
                let recent = &self.h.recent_out;
                if let Some(p) = recent.get(i % recent.len().max(1)).cloned() {
                    self.deliver(self.peer, p);
                }
            }
        }
    }

    /// The packet that moves the transfer on, as a correct peer would send.
    fn progress(&mut self, input: &mut Input<'_>) -> Vec<u8> {
        let sel = input.u8();
        if self.h.role().is_client() && self.h.negotiated.is_none() {
            return self.server_answer(sel);
        }
        if self.h.role().sends_data() {
            return packet_bytes(&Packet::Ack {
                block: self.h.data_hi as u16,
            });
        }
        let blksize = self.h.blksize();
        let len = if sel < 0xC0 && self.payload_left >= blksize {
            blksize
        } else {
            usize::from(sel & 0x3F) * blksize / 64
        };
        self.payload_left = self.payload_left.saturating_sub(len);
        let block = self.h.model_next as u16;
        let data = fill_bytes(&self.fill, self.h.model_next, len);
        packet_bytes(&Packet::Data { block, data: &data })
    }

    /// A server's first answer to our client: an OACK granting what was
    /// asked (odd `sel`, when something was), else DATA 1 or ACK 0.
    fn server_answer(&mut self, sel: u8) -> Vec<u8> {
        let a = self.asked;
        let put = self.h.role() == Role::ClientPut;
        if sel % 2 == 1 && !a.is_empty() {
            let shrink = |v: u64| {
                if sel & 2 != 0 {
                    v.div_ceil(2).max(1)
                } else {
                    v
                }
            };
            let mut options = Vec::new();
            if let Some(b) = a.blksize {
                options.push(("blksize", shrink(b.into()).max(8).to_string()));
            }
            if let Some(t) = a.timeout {
                options.push(("timeout", t.to_string()));
            }
            if let Some(t) = a.tsize {
                let size = if put { t } else { u64::from(sel) * 97 };
                options.push(("tsize", size.to_string()));
            }
            if let Some(w) = a.windowsize {
                options.push(("windowsize", shrink(w.into()).to_string()));
            }
            let raw: Vec<RawOption<'_>> =
                options.iter().map(|(n, v)| RawOption::new(n, v)).collect();
            return packet_bytes(&Packet::Oack { options: raw });
        }
        if put {
            return packet_bytes(&Packet::Ack { block: 0 });
        }
        let len = if sel < 0xC0 {
            512
        } else {
            usize::from(sel & 0x3F) * 8
        };
        let data = fill_bytes(&self.fill, 1, len);
        packet_bytes(&Packet::Data {
            block: 1,
            data: &data,
        })
    }
}

fn gen_mode(input: &mut Input<'_>, sel: u8) -> Vec<u8> {
    match sel % 8 {
        2 => b"netascii".to_vec(),
        3 => b"OCTET".to_vec(),
        4 => b"NetAscii".to_vec(),
        5 => b"mail".to_vec(),
        6 => input.chunk().to_vec(),
        _ => b"octet".to_vec(),
    }
}

/// What a sender must put on the wire for `file` in `mode`.
fn wire_of(file: &[u8], mode: Mode) -> Wire {
    Wire::Bytes(if mode == Mode::Netascii {
        encode_all(file)
    } else {
        file.to_vec()
    })
}

/// A server machine built from an arbitrary request (through the listener's
/// `parse_request`), then fed datagrams from the client and from strangers,
/// and clock ticks. See the harness (`super`) for the invariants.
pub fn server_session(data: &[u8]) {
    run_server_session(data);
}

/// The body of [`server_session`]; returns how the transfer ended, if it started.
fn run_server_session(data: &[u8]) -> Option<Result<Summary, TransferError>> {
    run_server_session_with(data, |m| m)
}

/// A hook to put a machine behind a wrapper, so the harness's own tests can
/// check it catches a misbehaving one.
type Wrap = fn(Box<dyn Transfer>) -> Box<dyn Transfer>;

fn run_server_session_with(data: &[u8], wrap: Wrap) -> Option<Result<Summary, TransferError>> {
    let mut input = Input::new(data);
    let head = input.u8();
    let mut datagram = vec![0, 1 + (head & 1)];
    let mode = gen_mode(&mut input, head >> 1);
    let filename = match input.chunk() {
        [] => &b"start4.elf"[..],
        f => f,
    };
    datagram.extend_from_slice(filename);
    datagram.push(0);
    datagram.extend_from_slice(&mode);
    datagram.push(0);
    push_options(&mut datagram, &gen_options(&mut input, 6));
    if head & 0x80 != 0 {
        datagram.extend_from_slice(b"\0\0\0");
    }
    let timeout = Duration::from_millis(1 + u64::from(input.u16() % 5000));
    let retries_byte = input.u8();
    let config = ServerConfig {
        timeout,
        min_rto: min_rto(retries_byte, timeout),
        retries: u32::from(retries_byte % 8),
        limits: Limits {
            max_blksize: input.u16(),
            max_windowsize: input.u16() % 1024,
            max_upload: input
                .bool()
                .then(|| u64::from(input.u16()) << (input.u8() % 5)),
            ..Limits::default()
        },
    };
    let fill = input.chunk().to_vec();
    let file = gen_file(&mut input);

    let (direction, request) = match parse_request(&datagram) {
        Ok(Some(r)) => r,
        Ok(None) => panic!("a request was ignored"),
        Err(refusal) => {
            assert!([4, 8].contains(&refusal.code.0), "refusal {refusal}");
            check_refusal_emits(refusal.code, &refusal.message);
            return None;
        }
    };
    let now = Instant::now();
    let spec = |role, wire| Spec {
        role,
        mode: request.mode,
        filename: request.filename.to_owned(),
        req_opts: request
            .options
            .iter()
            .map(|o| (o.name.to_vec(), o.value.to_vec()))
            .collect(),
        client_opts: OptionRequest::default(),
        limits: config.limits,
        limit: config.limits.max_upload,
        timeout: config.timeout,
        min_rto: config.min_rto,
        retries: config.retries,
        wire,
        fail_commit: false,
        lenient: Lenient::default(),
        origin: format!("server_session: {request:?}, {config:?}"),
    };
    let harness = match direction {
        Direction::Read => {
            let source = TestSource::bytes(file.clone());
            let size = (request.mode != Mode::Netascii).then_some(file.len() as u64);
            let expected = negotiate(&request, direction, size, &config.limits);
            match ServerRead::new(now, CLIENT, &request, source, &config) {
                Ok(m) => {
                    assert!(expected.is_ok());
                    let wire = wire_of(&file, request.mode);
                    Harness::new(spec(Role::ServerRead, wire), wrap(Box::new(m)), None, now)
                }
                Err(refusal) => {
                    assert!(expected.is_err(), "refused what negotiate accepts");
                    assert!([3, 8].contains(&refusal.code.0), "refusal {refusal}");
                    return None;
                }
            }
        }
        Direction::Write => {
            let sink = TestSink::new(SinkLog::default());
            let log = sink.0.clone();
            match ServerWrite::new(now, CLIENT, &request, sink, &config) {
                Ok(m) => {
                    let s = spec(Role::ServerWrite, Wire::Unknown);
                    Harness::new(s, wrap(Box::new(m)), Some(log), now)
                }
                Err(refusal) => {
                    assert!([3, 8].contains(&refusal.code.0), "refusal {refusal}");
                    assert!(
                        log.borrow().aborts == 1 && log.borrow().misuse().is_empty(),
                        "refused but the sink was not aborted"
                    );
                    return None;
                }
            }
        }
    };
    Session::new(harness, fill).run(&mut input)
}

/// A client machine (download or upload) with arbitrary settings, fed
/// answers from the server's transfer port, from a second server port, from
/// other hosts, and clock ticks. See the harness (`super`) for the invariants.
pub fn client_session(data: &[u8]) {
    run_client_session(data);
}

/// The body of [`client_session`]; returns how the transfer ended, if it started.
fn run_client_session(data: &[u8]) -> Option<Result<Summary, TransferError>> {
    run_client_session_with(data, |m| m)
}

fn run_client_session_with(data: &[u8], wrap: Wrap) -> Option<Result<Summary, TransferError>> {
    let mut input = Input::new(data);
    let head = input.u8();
    let put = head & 1 == 1;
    let mode = match (head >> 1) % 4 {
        2 => Mode::Netascii,
        3 => Mode::Mail,
        _ => Mode::Octet,
    };
    let filename = match input.chunk() {
        [] => "start4.elf".to_owned(),
        f => String::from_utf8_lossy(f).into_owned(),
    };
    let flags = input.u8();
    let options = OptionRequest {
        blksize: (flags & 1 != 0)
            .then(|| MIN_BLKSIZE + input.u16() % (MAX_BLKSIZE - MIN_BLKSIZE + 1)),
        timeout: (flags & 2 != 0).then(|| 1 + input.u8() % 255),
        tsize: (flags & 4 != 0).then_some(0),
        windowsize: (flags & 8 != 0).then(|| 1 + input.u16() % 1024),
    };
    let timeout = Duration::from_millis(1 + u64::from(input.u16() % 5000));
    let retries_byte = input.u8();
    let config = ClientConfig {
        mode,
        options,
        timeout,
        min_rto: min_rto(retries_byte, timeout),
        retries: u32::from(retries_byte % 8),
        max_size: input
            .bool()
            .then(|| u64::from(input.u16()) << (input.u8() % 5)),
    };
    let fill = input.chunk().to_vec();
    let file = gen_file(&mut input);
    let invalid = filename.is_empty()
        || filename.contains('\0')
        || filename.len() > 4096
        || mode == Mode::Mail;
    let now = Instant::now();
    let spec = |role, wire| Spec {
        role,
        mode,
        filename: filename.clone(),
        req_opts: Vec::new(),
        client_opts: options,
        limits: Limits::default(),
        limit: config.max_size.filter(|_| role == Role::ClientGet),
        timeout: config.timeout,
        min_rto: config.min_rto,
        retries: config.retries,
        wire,
        fail_commit: false,
        lenient: Lenient::default(),
        origin: format!("client_session: {filename:?}, {config:?}"),
    };
    let session = if put {
        let source = TestSource::bytes(file.clone());
        match ClientPut::new(now, LISTEN, &filename, source, &config) {
            Ok(m) => {
                let s = spec(Role::ClientPut, wire_of(&file, mode));
                let mut session = Session::new(Harness::new(s, wrap(Box::new(m)), None, now), fill);
                session.asked = options;
                if options.tsize.is_some() {
                    session.asked.tsize = (mode != Mode::Netascii).then_some(file.len() as u64);
                }
                session
            }
            Err(e) => {
                assert!(invalid, "refused a valid upload: {e}");
                return None;
            }
        }
    } else {
        let sink = TestSink::new(SinkLog::default());
        let log = sink.0.clone();
        match ClientGet::new(now, LISTEN, &filename, sink, &config) {
            Ok(m) => {
                let s = spec(Role::ClientGet, Wire::Unknown);
                let h = Harness::new(s, wrap(Box::new(m)), Some(log), now);
                let mut session = Session::new(h, fill);
                session.asked = options;
                session
            }
            Err(e) => {
                assert!(invalid, "refused a valid download: {e}");
                return None;
            }
        }
    };
    assert!(!invalid, "accepted an invalid request");
    session.run(&mut input)
}

// ---- seed corpus ------------------------------------------------------------

/// The seed corpus, written to `fuzz/corpus-seed/<target>/<name>` by
/// `cargo test --test fuzz_regressions -- --ignored write_seed_corpus`.
/// Real packets from rpi4, U-Boot, UEFI, curl, atftp, tftp-hpa and busybox
/// clients, and full transfers encoded in the session formats.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut all = Vec::new();
    for (name, bytes) in packet_seeds() {
        all.push(("packet_parse", name.to_owned(), bytes));
    }
    for (name, bytes) in option_seeds() {
        all.push(("options", name.to_owned(), bytes));
    }
    for (name, bytes) in netascii_seeds() {
        all.push(("netascii", name.to_owned(), bytes));
    }
    for (name, bytes) in server_seeds() {
        all.push(("server_session", name.to_owned(), bytes));
    }
    for (name, bytes) in client_seeds() {
        all.push(("client_session", name.to_owned(), bytes));
    }
    for (name, bytes) in path_seeds() {
        all.push(("path_resolve", name.to_owned(), bytes));
    }
    all
}

/// Requests as real clients send them (captured from atftp, curl,
/// tftp-hpa and busybox; rpi4, U-Boot and UEFI from their documented
/// requests), and the other packet types.
const REAL_PACKETS: [(&str, &[u8]); 22] = [
    (
        "rpi4-rrq",
        b"\x00\x01start4.elf\x00octet\x00tsize\x000\x00blksize\x001024\x00",
    ),
    (
        "rpi4-rrq-serial",
        b"\x00\x019ffefdef/start4.elf\x00octet\x00tsize\x000\x00blksize\x001024\x00",
    ),
    (
        "uboot-rrq",
        b"\x00\x01zImage\x00octet\x00timeout\x005\x00blksize\x001468\x00windowsize\x008\x00",
    ),
    (
        "uefi-tsize-probe",
        b"\x00\x01bootx64.efi\x00octet\x00tsize\x000\x00",
    ),
    (
        "uefi-rrq",
        b"\x00\x01bootx64.efi\x00octet\x00blksize\x001468\x00",
    ),
    (
        "curl-rrq",
        b"\x00\x01pxelinux.0\x00octet\x00tsize\x000\x00blksize\x00512\x00timeout\x006\x00",
    ),
    (
        "curl-wrq",
        b"\x00\x02up.txt\x00octet\x00tsize\x003\x00blksize\x00512\x00timeout\x006\x00",
    ),
    ("atftp-rrq", b"\x00\x01start4.elf\x00octet\x00"),
    (
        "atftp-rrq-options",
        b"\x00\x01boot/kernel.img\x00octet\x00tsize\x000\x00timeout\x003\x00blksize\x001428\x00",
    ),
    (
        "atftp-rrq-windowsize",
        b"\x00\x01boot/kernel.img\x00octet\x00blksize\x001024\x00windowsize\x008\x00",
    ),
    (
        "atftp-rrq-multicast",
        b"\x00\x01pxelinux.cfg/default\x00octet\x00tsize\x000\x00multicast\x00\x00",
    ),
    ("atftp-wrq", b"\x00\x02up.bin\x00octet\x00"),
    (
        "busybox-rrq",
        b"\x00\x01start4.elf\x00octet\x00blksize\x001468\x00tsize\x000\x00",
    ),
    ("tftp-hpa-netascii", b"\x00\x01cmdline.txt\x00netascii\x00"),
    (
        "padded-rrq",
        b"\x00\x01config.txt\x00OCTET\x00tsize\x000\x00\x00\x00\x00\x00",
    ),
    ("mail-wrq", b"\x00\x02root\x00mail\x00"),
    ("oack", b"\x00\x06tsize\x002228224\x00blksize\x001024\x00"),
    ("data", b"\x00\x03\x00\x01\x7fELF\x02\x01\x01\x00"),
    ("ack", b"\x00\x04\xff\xff"),
    (
        "error-early-terminate",
        b"\x00\x05\x00\x00Early terminate\x00",
    ),
    ("error-8", b"\x00\x05\x00\x08tsize probe\x00"),
    ("error-no-nul", b"\x00\x05\x00\x01File not found"),
];

fn packet_seeds() -> Vec<(&'static str, Vec<u8>)> {
    REAL_PACKETS.iter().map(|(n, b)| (*n, b.to_vec())).collect()
}

// Option names by their index in OPTION_NAMES.
const BLKSIZE: u8 = 0;
const TIMEOUT: u8 = 1;
const TSIZE: u8 = 2;
const WINDOWSIZE: u8 = 3;
const MULTICAST: u8 = 6;

/// One option as `gen_option` reads it, with a numeric value.
fn put_option(out: &mut Out, name: u8, value: u64) {
    out.u8(name);
    match value {
        0 => out.u8(4),
        1..=255 => out.u8(0).u8(value as u8),
        256..=65535 => out.u8(1).u16(value as u16),
        _ => out.u8(2).u64(value),
    };
}

fn put_options(out: &mut Out, options: &[(u8, u64)]) {
    out.u8(options.len() as u8);
    for &(name, value) in options {
        put_option(out, name, value);
    }
}

fn option_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let server = |write: bool, size: Option<u64>, options: &[(u8, u64)]| {
        let mut o = Out::default();
        o.u8(0).u8(write.into());
        match size {
            Some(s) => o.u8(1).u64(s).u8(0),
            None => o.u8(0),
        };
        // Limits: max_blksize 1468, max_windowsize 64, max_upload 1 MiB.
        o.u16(1468).u16(64).u8(1).u64(1 << 20).u8(0);
        put_options(&mut o, options);
        o.0
    };
    let mut seeds = vec![
        (
            "rpi4",
            server(false, Some(2_228_224), &[(TSIZE, 0), (BLKSIZE, 1024)]),
        ),
        (
            "uboot",
            server(
                false,
                Some(9_000_000),
                &[(TIMEOUT, 5), (BLKSIZE, 1468), (WINDOWSIZE, 8)],
            ),
        ),
        ("uefi-probe", server(false, Some(1_000_000), &[(TSIZE, 0)])),
        (
            "curl-wrq",
            server(true, None, &[(TSIZE, 3), (BLKSIZE, 512), (TIMEOUT, 6)]),
        ),
        (
            "duplicate",
            server(false, None, &[(BLKSIZE, 1024), (4, 512)]),
        ),
        ("too-large", server(true, None, &[(TSIZE, 5 << 20)])),
    ];
    let mut multicast = Out::default();
    multicast.raw(&server(false, Some(10), &[(TSIZE, 0)]));
    let count = multicast.0.len() - 3;
    multicast.0[count] = 2; // two options: tsize, then multicast ""
    multicast.u8(MULTICAST).u8(6).u8(0);
    seeds.push(("atftp-multicast", multicast.0));
    // Round trip: U-Boot's request, read, 64 KiB file, default limits.
    let mut rt = Out::default();
    rt.u8(1).u8(0b1111).u16(1468).u8(5).u64(0).u8(0).u16(8);
    rt.u8(0).u8(1).u64(65536).u8(0).u16(65464).u16(64).u8(0);
    seeds.push(("round-trip-uboot", rt.0));
    // Client: U-Boot's request against an OACK that raises blksize.
    let mut client = Out::default();
    client.u8(2).u8(0b0011).u16(1468).u8(5);
    put_options(&mut client, &[(BLKSIZE, 2048), (TIMEOUT, 5)]);
    seeds.push(("client-larger-blksize", client.0));
    seeds
}

fn netascii_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let seed = |enc_out: u16, blksize: u16, cuts: &[u8], ops: &[u8], repeat: u8, text: &[u8]| {
        let mut o = Out::default();
        o.u16(enc_out)
            .u16(blksize)
            .chunk(cuts)
            .chunk(ops)
            .u8(repeat)
            .raw(text);
        o.0
    };
    let config =
        b"# config.txt\nkernel=kernel8.img\r\narm_64bit=1\n\n[pi4]\rdtoverlay=vc4-kms-v3d\n";
    vec![
        (
            "config-txt",
            seed(511, 504, &[3, 1, 7], &[2, 2, 5, 2, 0x20, 2, 2], 4, config),
        ),
        (
            "cr-at-block-edge",
            seed(
                1,
                0,
                &[0],
                &[2, 2, 2, 1, 2],
                0,
                b"1234567\r\n89abcde\r\0fghijkl\r",
            ),
        ),
        (
            "binary",
            seed(
                9,
                1,
                &[254, 0],
                &[2; 8],
                2,
                &[13, 0, 13, 13, 10, 10, 0, 255, 13],
            ),
        ),
    ]
}

/// The floor of the adaptive timer, from the retries byte's top bit (so the
/// seed corpus keeps its meaning): set, a fixed timer; clear, adaptive with
/// a 1 ms floor.
fn min_rto(retries_byte: u8, timeout: Duration) -> Duration {
    if retries_byte & 0x80 != 0 {
        timeout
    } else {
        Duration::from_millis(1)
    }
}

/// A session's common tail: timeout (ms), retries, and the events.
fn put_session_tail(o: &mut Out, timeout_ms: u16, retries: u8) {
    o.u16(timeout_ms - 1).u8(retries);
}

/// Event bytes.
const PROGRESS: u8 = 0;
const FROM_PEER: u8 = 1;
const FROM_STRANGER: u8 = 3;
const TO_DEADLINE: u8 = 5;
const REDELIVER: u8 = 8;

fn progress(o: &mut Out, n: usize) {
    for _ in 0..n {
        o.u8(PROGRESS).u8(0);
    }
}

struct ServerSeed<'a> {
    write: bool,
    mode: u8,
    filename: &'a [u8],
    options: &'a [(u8, u64)],
    max_upload: Option<u16>,
    /// (kind, length) as `gen_file` reads it: 1 binary, 2 text, 3 empty.
    file: (u8, u16),
}

impl ServerSeed<'_> {
    fn head(&self) -> Out {
        let mut o = Out::default();
        o.u8(u8::from(self.write) | self.mode << 1)
            .chunk(self.filename);
        put_options(&mut o, self.options);
        put_session_tail(&mut o, 1000, 3);
        o.u16(65464).u16(64);
        match self.max_upload {
            Some(l) => o.u8(1).u16(l).u8(0),
            None => o.u8(0),
        };
        o.chunk(b"");
        o.u8(self.file.0);
        if self.file.0 != 3 {
            o.u16(self.file.1);
        }
        o
    }
}

fn server_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let rrq = |options, file| ServerSeed {
        write: false,
        mode: 0,
        filename: b"start4.elf",
        options,
        max_upload: None,
        file,
    };
    let mut seeds = Vec::new();

    let mut o = rrq(&[(TSIZE, 0), (BLKSIZE, 1024)], (1, 3000)).head();
    progress(&mut o, 5); // ACK 0 (for the OACK), ACK 1..=3
    seeds.push(("rpi4-full-read", o.0));

    let mut o = rrq(
        &[(TIMEOUT, 5), (BLKSIZE, 1468), (WINDOWSIZE, 8)],
        (1, 20000),
    )
    .head();
    progress(&mut o, 4);
    seeds.push(("uboot-windowed-read", o.0));

    let mut o = rrq(&[(TSIZE, 0)], (1, 700)).head();
    o.u8(FROM_PEER).u8(4).u8(3).u16(8).chunk(b"tsize probe");
    seeds.push(("uefi-probe-then-error-8", o.0));

    let mut o = rrq(&[(TSIZE, 0), (BLKSIZE, 1024)], (1, 5000)).head();
    progress(&mut o, 2);
    o.u8(FROM_PEER).u8(4).u8(3).u16(0).chunk(b"Early terminate");
    seeds.push(("rpi4-early-terminate", o.0));

    let mut o = rrq(&[], (1, 1024)).head();
    o.u8(TO_DEADLINE)
        .u8(PROGRESS)
        .u8(0)
        .u8(REDELIVER)
        .u8(TO_DEADLINE);
    o.u8(FROM_STRANGER).u8(1).u8(2).u8(0); // a stranger's ACK
    progress(&mut o, 2);
    seeds.push(("legacy-read-dup-ack-stranger", o.0));

    let mut o = ServerSeed {
        mode: 2,
        filename: b"cmdline.txt",
        ..rrq(&[], (2, 1500))
    }
    .head();
    progress(&mut o, 6);
    seeds.push(("netascii-read", o.0));

    let mut o = rrq(&[(BLKSIZE, 8)], (1, 16)).head();
    progress(&mut o, 1);
    for _ in 0..5 {
        o.u8(TO_DEADLINE);
    }
    seeds.push(("read-gives-up", o.0));

    let wrq = |options, max_upload| ServerSeed {
        write: true,
        mode: 0,
        filename: b"up.txt",
        options,
        max_upload,
        file: (3, 0),
    };
    let mut o = wrq(&[(TSIZE, 1100), (BLKSIZE, 512), (TIMEOUT, 6)], None).head();
    o.u8(PROGRESS)
        .u8(0)
        .u8(PROGRESS)
        .u8(0)
        .u8(PROGRESS)
        .u8(0xC0 + 10);
    seeds.push(("curl-full-write", o.0));

    let mut o = wrq(&[], Some(600)).head();
    progress(&mut o, 3);
    seeds.push(("write-over-limit", o.0));

    let mut o = ServerSeed {
        mode: 2,
        ..wrq(&[(WINDOWSIZE, 4), (BLKSIZE, 64)], None)
    }
    .head();
    progress(&mut o, 9);
    o.u8(PROGRESS).u8(0xC0 + 20).u8(REDELIVER);
    seeds.push(("netascii-windowed-write", o.0));
    seeds
}

struct ClientSeed {
    put: bool,
    mode: u8,
    /// blksize, timeout, tsize, windowsize.
    options: (Option<u16>, Option<u8>, bool, Option<u16>),
    max_size: Option<u16>,
    file: (u8, u16),
}

impl ClientSeed {
    fn head(&self) -> Out {
        let mut o = Out::default();
        o.u8(u8::from(self.put) | self.mode << 1)
            .chunk(b"start4.elf");
        let (b, t, ts, w) = self.options;
        let flags = u8::from(b.is_some())
            | u8::from(t.is_some()) << 1
            | u8::from(ts) << 2
            | u8::from(w.is_some()) << 3;
        o.u8(flags);
        if let Some(b) = b {
            o.u16(b - MIN_BLKSIZE);
        }
        if let Some(t) = t {
            o.u8(t - 1);
        }
        if let Some(w) = w {
            o.u16(w - 1);
        }
        put_session_tail(&mut o, 1000, 3);
        match self.max_size {
            Some(l) => o.u8(1).u16(l).u8(0),
            None => o.u8(0),
        };
        o.chunk(b"");
        o.u8(self.file.0);
        if self.file.0 != 3 {
            o.u16(self.file.1);
        }
        o
    }
}

fn client_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let get = |options, max_size| ClientSeed {
        put: false,
        mode: 0,
        options,
        max_size,
        file: (3, 0),
    };
    let mut seeds = Vec::new();

    let mut o = get((Some(1024), None, true, None), None).head();
    o.u8(PROGRESS).u8(1); // the OACK
    progress(&mut o, 3);
    o.u8(PROGRESS).u8(0xC0 + 7);
    seeds.push(("rpi4-style-get", o.0));

    let mut o = get((None, None, false, None), None).head();
    o.u8(TO_DEADLINE); // RRQ resent
    progress(&mut o, 2);
    o.u8(FROM_STRANGER).u8(0).u8(0).u8(0).u8(0); // a second server port
    o.u8(PROGRESS).u8(0xC0 + 1).u8(REDELIVER).u8(TO_DEADLINE);
    seeds.push(("legacy-get-second-port", o.0));

    let mut o = get((Some(1468), Some(5), false, Some(8)), Some(5000)).head();
    o.u8(PROGRESS).u8(3); // OACK with blksize and window halved
    progress(&mut o, 12);
    seeds.push(("uboot-get-over-limit", o.0));

    let mut o = get((None, None, true, None), None).head();
    for _ in 0..5 {
        o.u8(TO_DEADLINE);
    }
    seeds.push(("get-no-answer", o.0));

    let put = |options, file| ClientSeed {
        put: true,
        mode: 0,
        options,
        max_size: None,
        file,
    };
    let mut o = put((Some(1468), Some(5), true, Some(8)), (1, 20000)).head();
    o.u8(PROGRESS).u8(1);
    progress(&mut o, 3);
    seeds.push(("uboot-style-put", o.0));

    let mut o = ClientSeed {
        mode: 2,
        ..put((None, None, false, None), (2, 1200))
    }
    .head();
    progress(&mut o, 5);
    seeds.push(("netascii-put", o.0));
    seeds
}

fn path_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let raw = |name: &str| [&[1u8][..], name.as_bytes()].concat();
    vec![
        ("nested", raw("9ffefdef/start4.elf")),
        ("leading-slash", raw("/boot/start4.elf")),
        ("dot-dot", raw("../etc/passwd")),
        ("dot-dot-inside", raw("boot/../file.bin")),
        ("climb-out", raw("boot/../../outside/secret")),
        ("backslashes", raw("..\\..\\outside\\secret")),
        ("link-out", raw("link-out/secret")),
        ("link-sibling", raw("link-sibling/secret")),
        ("sibling-by-name", raw("../tftp-private/secret")),
        ("link-in", raw("link-in/start4.elf")),
        ("link-escape", raw("boot/link-escape/secret")),
        (
            "link-root-loop",
            raw("boot/link-root/boot/link-root/file.bin"),
        ),
        ("link-parent", raw("link-parent/tftp-private/secret")),
        ("overlays", raw("overlays/x.dtbo")),
        ("new-dirs", raw("new/dir/file.bin")),
        ("structured", vec![0, 12, 0, 36, 0, 56]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tftplab::proto::{Event, Transmit};

    #[test]
    fn every_seed_passes_its_target() {
        for (target, name, bytes) in seeds() {
            let run = match target {
                "packet_parse" => packet_parse,
                "options" => options,
                "netascii" => netascii,
                "server_session" => server_session,
                "client_session" => client_session,
                "path_resolve" => path_resolve,
                other => panic!("unknown target {other}"),
            };
            let result = std::panic::catch_unwind(|| run(&bytes));
            assert!(result.is_ok(), "seed {target}/{name} fails");
        }
    }

    fn ended_ok(ended: Option<Result<Summary, TransferError>>) -> bool {
        matches!(ended, Some(Ok(_)))
    }

    #[test]
    fn full_transfer_seeds_complete_and_the_others_fail_as_meant() {
        for (target, name, bytes) in seeds() {
            let ended = match target {
                "server_session" => run_server_session(&bytes),
                "client_session" => run_client_session(&bytes),
                _ => continue,
            };
            let should_succeed = !["error", "terminate", "gives-up", "over-limit", "no-answer"]
                .iter()
                .any(|word| name.contains(word));
            assert_eq!(
                ended_ok(ended.clone()),
                should_succeed,
                "{target}/{name} ended with {ended:?}"
            );
        }
    }

    // ---- the harness catches a misbehaving machine ------------------------

    /// Wraps a real machine and lets a test bend what it sends.
    struct Bent {
        inner: Box<dyn Transfer>,
        /// Sorcerer's Apprentice: resend the last DATA on a repeated ACK.
        apprentice: bool,
        /// Send every DATA twice.
        doubler: bool,
        /// Never ask for a timeout.
        sleepy: bool,
        last_ack: Option<Vec<u8>>,
        last_data: Option<(SocketAddr, Vec<u8>)>,
        owed: Option<(SocketAddr, Vec<u8>)>,
    }

    impl Transfer for Bent {
        fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
            if datagram.starts_with(&[0, 4]) {
                if self.apprentice && self.last_ack.as_deref() == Some(datagram) {
                    self.owed = self.last_data.clone();
                }
                self.last_ack = Some(datagram.to_vec());
            }
            self.inner.handle_datagram(now, from, datagram)
        }
        fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
            if let Some((dest, b)) = self.owed.take() {
                buf[..b.len()].copy_from_slice(&b);
                return Some(Transmit { dest, len: b.len() });
            }
            let t = self.inner.poll_transmit(now, buf)?;
            if buf[..t.len].starts_with(&[0, 3]) {
                let sent = (t.dest, buf[..t.len].to_vec());
                if self.doubler {
                    self.owed = Some(sent.clone());
                }
                self.last_data = Some(sent);
            }
            Some(t)
        }
        fn poll_timeout(&self) -> Option<Instant> {
            if self.sleepy {
                return None;
            }
            self.inner.poll_timeout()
        }
        fn handle_timeout(&mut self, now: Instant) {
            self.inner.handle_timeout(now)
        }
        fn poll_event(&mut self) -> Option<Event> {
            self.inner.poll_event()
        }
        fn is_closed(&self) -> bool {
            self.inner.is_closed()
        }
        fn counters(&self) -> tftplab::proto::Counters {
            self.inner.counters()
        }
        fn bytes_transferred(&self) -> u64 {
            self.inner.bytes_transferred()
        }
        fn abort(&mut self, code: ErrorCode, message: &str) {
            self.inner.abort(code, message)
        }
    }

    fn bent(inner: Box<dyn Transfer>) -> Bent {
        Bent {
            inner,
            apprentice: false,
            doubler: false,
            sleepy: false,
            last_ack: None,
            last_data: None,
            owed: None,
        }
    }

    fn seed(target: &str, name: &str) -> Vec<u8> {
        seeds()
            .into_iter()
            .find(|(t, n, _)| *t == target && n == name)
            .map(|(_, _, b)| b)
            .expect("seed exists")
    }

    /// The panic message of running `seed` with the machine wrapped.
    fn complaint(target: &str, name: &str, wrap: Wrap) -> String {
        let data = seed(target, name);
        let run = if target == "server_session" {
            run_server_session_with
        } else {
            run_client_session_with
        };
        let err = std::panic::catch_unwind(|| run(&data, wrap)).expect_err("bent machine passed");
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    #[test]
    fn harness_catches_the_sorcerers_apprentice() {
        let msg = complaint("server_session", "legacy-read-dup-ack-stranger", |m| {
            Box::new(Bent {
                apprentice: true,
                ..bent(m)
            })
        });
        assert!(msg.contains("duplicate ACK"), "{msg}");
    }

    #[test]
    fn harness_catches_amplification() {
        let msg = complaint("client_session", "uboot-style-put", |m| {
            Box::new(Bent {
                doubler: true,
                ..bent(m)
            })
        });
        assert!(msg.contains("DATA, 0 control"), "{msg}");
    }

    #[test]
    fn harness_catches_a_machine_that_would_never_close() {
        let msg = complaint("server_session", "read-gives-up", |m| {
            Box::new(Bent {
                sleepy: true,
                ..bent(m)
            })
        });
        assert!(msg.contains("waiting for nothing"), "{msg}");
    }
}
