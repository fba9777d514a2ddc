//! Streaming line-ending conversion for TFTP `netascii` mode.
//!
//! RFC 1350 borrows netascii from Telnet (RFC 764): on the wire a line ends
//! with CR LF and a carriage return that is not part of a line ending is sent
//! as CR NUL. Local files use Unix line endings, so the sender turns LF into
//! CR LF and CR into CR NUL, and the receiver undoes that.
//!
//! Neither direction can be done block by block in isolation: one local byte
//! may become two wire bytes that straddle a block boundary, and a CR at the
//! end of a received block means nothing until the next block arrives. So the
//! converters here are small state machines ([`Encoder`], [`Decoder`]), and the
//! [`NetasciiSource`] / [`NetasciiSink`] adapters put them behind the
//! positional [`Source`] / [`Sink`] traits the protocol machines use.
//!
//! Decoding is lenient: a CR followed by anything other than LF or NUL is not
//! valid netascii, but real clients send it (bare CR from old Mac files, or
//! binary data sent in the wrong mode). Rejecting the transfer halfway would
//! help nobody, so such a CR is kept as a CR and the byte after it is decoded
//! normally.

use std::collections::VecDeque;
use std::io;

use crate::data::{Sink, Source};

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const NUL: u8 = 0;

/// Size of the buffer [`NetasciiSource`] reads its inner source with: large
/// enough that a default 512-byte block costs at most one inner read, small
/// enough to keep per-transfer memory modest.
const SCRATCH_LEN: usize = 4096;

fn needs_escape(b: &u8) -> bool {
    *b == CR || *b == LF
}

/// The byte that follows CR on the wire for a local CR or LF.
fn escape_second(b: u8) -> u8 {
    if b == LF {
        LF
    } else {
        NUL
    }
}

/// Local (LF) to wire (CR LF) converter.
///
/// The only state is the second half of an expansion that did not fit in the
/// previous output buffer; keeping it here, rather than refusing to split,
/// lets any output buffer of at least one byte make progress. The state is
/// `Copy` so a caller can checkpoint it and restart encoding from there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoder {
    pending: Option<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts as much of `input` as fits in `output`, returning
    /// `(consumed, written)`. A byte held over from the previous call is
    /// written first. Call with an empty `input` to flush that byte at the end
    /// of the data.
    pub fn encode(&mut self, input: &[u8], output: &mut [u8]) -> (usize, usize) {
        let mut written = self.flush_pending(output);
        if self.pending.is_some() {
            return (0, written);
        }
        let mut consumed = 0;
        while consumed < input.len() && written < output.len() {
            let (c, w) = self.encode_run(&input[consumed..], &mut output[written..]);
            consumed += c;
            written += w;
        }
        (consumed, written)
    }

    /// True if a byte is waiting to be written: the encoded stream is not
    /// finished even when the input is.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn flush_pending(&mut self, output: &mut [u8]) -> usize {
        match (self.pending, output.first_mut()) {
            (Some(b), Some(slot)) => {
                *slot = b;
                self.pending = None;
                1
            }
            _ => 0,
        }
    }

    /// Copies the run of plain bytes up to the next CR or LF (bulk copy, not
    /// byte by byte) and then expands that one byte. `output` is not empty.
    fn encode_run(&mut self, input: &[u8], output: &mut [u8]) -> (usize, usize) {
        let limit = input.len().min(output.len());
        let Some(plain) = input[..limit].iter().position(needs_escape) else {
            output[..limit].copy_from_slice(&input[..limit]);
            return (limit, limit);
        };
        output[..plain].copy_from_slice(&input[..plain]);
        output[plain] = CR;
        let second = escape_second(input[plain]);
        match output.get_mut(plain + 1) {
            Some(slot) => {
                *slot = second;
                (plain + 1, plain + 2)
            }
            None => {
                self.pending = Some(second);
                (plain + 1, plain + 1)
            }
        }
    }
}

/// Wire (CR LF) to local (LF) converter.
///
/// The state is whether the last byte seen was a CR whose meaning depends on
/// the next byte, which may only arrive with the next block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoder {
    held_cr: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `input`, appending to `out`. A trailing CR is held back until
    /// the next call or [`Decoder::finish`]. Reserves once per call, so a
    /// reused `out` stops allocating once it has grown to a block's size.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + 1);
        let mut rest = input;
        if self.held_cr && !rest.is_empty() {
            self.held_cr = false;
            rest = &rest[resolve_cr(rest[0], out)..];
        }
        while let Some(p) = rest.iter().position(|&b| b == CR) {
            out.extend_from_slice(&rest[..p]);
            let Some(&next) = rest.get(p + 1) else {
                self.held_cr = true;
                return;
            };
            rest = &rest[p + 1 + resolve_cr(next, out)..];
        }
        out.extend_from_slice(rest);
    }

    /// Ends the stream: a CR held back from the last chunk had nothing after
    /// it, so (leniently) it was a CR.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.held_cr) {
            out.push(CR);
        }
    }

    /// True if a CR is held back waiting for the next byte.
    pub fn has_pending(&self) -> bool {
        self.held_cr
    }
}

/// Appends what a CR followed by `next` stands for and returns how many bytes
/// of the input after the CR that used up (0 if `next` must be decoded on its
/// own, the lenient case).
fn resolve_cr(next: u8, out: &mut Vec<u8>) -> usize {
    match next {
        LF => {
            out.push(LF);
            1
        }
        NUL => {
            out.push(CR);
            1
        }
        _ => {
            out.push(CR);
            0
        }
    }
}

/// Encodes a whole buffer; for tests and tools, not for transfers.
pub fn encode_all(input: &[u8]) -> Vec<u8> {
    let extra = input.iter().filter(|b| needs_escape(b)).count();
    let mut out = vec![0; input.len() + extra];
    let (consumed, written) = Encoder::new().encode(input, &mut out);
    debug_assert_eq!((consumed, written), (input.len(), out.len()));
    out
}

/// Decodes a whole buffer, a trailing CR included; for tests and tools.
pub fn decode_all(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut decoder = Decoder::new();
    decoder.decode(input, &mut out);
    decoder.finish(&mut out);
    out
}

/// A point in the encoded stream from which encoding can resume without
/// looking at anything before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Checkpoint {
    encoded: u64,
    inner: u64,
    encoder: Encoder,
}

/// Reads the inner source through one reusable buffer, so the encoder sees
/// chunks of a few KiB and a re-read of a recent window costs no inner read.
#[derive(Debug)]
struct ChunkReader<S> {
    inner: S,
    buf: Box<[u8]>,
    start: u64,
    len: usize,
}

impl<S: Source> ChunkReader<S> {
    /// The inner bytes from `at` on (as many as are buffered); empty at the
    /// end of the inner source.
    fn chunk(&mut self, at: u64) -> io::Result<&[u8]> {
        let buffered = at.checked_sub(self.start).filter(|&d| d < self.len as u64);
        let skip = match buffered {
            Some(d) => d as usize,
            None => {
                self.len = 0;
                self.len = self.inner.read_at(at, &mut self.buf)?.min(self.buf.len());
                self.start = at;
                0
            }
        };
        Ok(&self.buf[skip..self.len])
    }

    /// Encodes from `at` into `out` until it is full or the data ends,
    /// moving `at` along. Returns the number of bytes written.
    fn encode_into(&mut self, at: &mut Checkpoint, out: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < out.len() {
            let chunk = self.chunk(at.inner)?;
            let (c, w) = at.encoder.encode(chunk, &mut out[written..]);
            if c == 0 && w == 0 {
                break;
            }
            at.inner = at.inner.saturating_add(c as u64);
            at.encoded = at.encoded.saturating_add(w as u64);
            written += w;
        }
        Ok(written)
    }

    /// Encodes and discards from `at` up to encoded offset `target`. Returns
    /// false if the data ends first.
    fn skip_to(&mut self, at: &mut Checkpoint, target: u64) -> io::Result<bool> {
        let mut discard = [0u8; 512];
        while at.encoded < target {
            let want = (target - at.encoded).min(discard.len() as u64) as usize;
            if self.encode_into(at, &mut discard[..want])? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Presents the netascii encoding of a local source, addressed by offsets in
/// the encoded stream.
///
/// Encoded offsets do not map to inner offsets by arithmetic, so this keeps
/// checkpoints: the encoder state at the start of every read. A re-read after
/// a timeout starts at a block it has read before and so resumes from an exact
/// checkpoint; a read elsewhere encodes forward from the nearest checkpoint
/// below it, which is slower but still correct. Checkpoints below the
/// sender's release point are dropped, so memory is bounded by the reads
/// since the last [`Source::release_before`]. The start of the stream needs
/// no checkpoint, so even a read below the release point is answered.
#[derive(Debug)]
pub struct NetasciiSource<S: Source> {
    reader: ChunkReader<S>,
    /// Sorted by encoded offset, one per offset.
    checkpoints: VecDeque<Checkpoint>,
    /// Where the last read ended: where a sequential sender reads next.
    cursor: Checkpoint,
}

impl<S: Source> NetasciiSource<S> {
    pub fn new(inner: S) -> Self {
        Self::with_scratch_len(inner, SCRATCH_LEN)
    }

    fn with_scratch_len(inner: S, len: usize) -> Self {
        let reader = ChunkReader {
            inner,
            buf: vec![0; len.max(1)].into_boxed_slice(),
            start: 0,
            len: 0,
        };
        NetasciiSource {
            reader,
            checkpoints: VecDeque::new(),
            cursor: Checkpoint::default(),
        }
    }

    pub fn into_inner(self) -> S {
        self.reader.inner
    }

    /// The latest known state at or below `offset`.
    fn nearest(&self, offset: u64) -> Checkpoint {
        let idx = self.checkpoints.partition_point(|c| c.encoded <= offset);
        let saved = idx
            .checked_sub(1)
            .map_or_else(Checkpoint::default, |i| self.checkpoints[i]);
        if self.cursor.encoded <= offset && self.cursor.encoded > saved.encoded {
            self.cursor
        } else {
            saved
        }
    }

    fn remember(&mut self, cp: Checkpoint) {
        if let Err(idx) = self
            .checkpoints
            .binary_search_by_key(&cp.encoded, |c| c.encoded)
        {
            self.checkpoints.insert(idx, cp);
        }
    }
}

impl<S: Source> Source for NetasciiSource<S> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut at = self.nearest(offset);
        if !self.reader.skip_to(&mut at, offset)? {
            return Ok(0);
        }
        self.remember(at);
        let n = self.reader.encode_into(&mut at, buf)?;
        self.cursor = at;
        Ok(n)
    }

    /// Unknown: the encoded size depends on how many CRs and LFs the data
    /// holds, and counting them means reading it all.
    fn size(&self) -> Option<u64> {
        None
    }

    fn release_before(&mut self, offset: u64) {
        let keep_from = self
            .checkpoints
            .partition_point(|c| c.encoded <= offset)
            .saturating_sub(1);
        self.checkpoints.drain(..keep_from);
    }
}

/// Writes the netascii decoding of the received (encoded) stream to an inner
/// sink, at the inner sink's own (decoded) offsets.
#[derive(Debug)]
pub struct NetasciiSink<S: Sink> {
    inner: S,
    decoder: Decoder,
    encoded_pos: u64,
    decoded_pos: u64,
    /// Reused for every block so steady-state writes do not allocate.
    out: Vec<u8>,
}

impl<S: Sink> NetasciiSink<S> {
    pub fn new(inner: S) -> Self {
        NetasciiSink {
            inner,
            decoder: Decoder::new(),
            encoded_pos: 0,
            decoded_pos: 0,
            out: Vec::new(),
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Writes what is in `self.out` to the inner sink; on error the decoded
    /// position is unchanged, so the caller only has to restore the decoder.
    fn write_out(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.inner.write_at(self.decoded_pos, &self.out)?;
            self.decoded_pos += self.out.len() as u64;
        }
        Ok(())
    }
}

impl<S: Sink> Sink for NetasciiSink<S> {
    /// Only the next encoded offset is accepted: the decoder state depends on
    /// every byte before it, so a gap or a rewrite cannot be decoded.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset != self.encoded_pos {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "netascii write at {offset} but {} encoded bytes written so far",
                    self.encoded_pos
                ),
            ));
        }
        let saved = self.decoder;
        self.out.clear();
        self.decoder.decode(data, &mut self.out);
        if let Err(e) = self.write_out() {
            // Leave the state as it was so the error does not also corrupt
            // whatever the caller does next.
            self.decoder = saved;
            return Err(e);
        }
        self.encoded_pos += data.len() as u64;
        Ok(())
    }

    fn commit(&mut self) -> io::Result<()> {
        let saved = self.decoder;
        self.out.clear();
        self.decoder.finish(&mut self.out);
        if let Err(e) = self.write_out() {
            self.decoder = saved;
            return Err(e);
        }
        self.inner.commit()
    }

    fn abort(&mut self) {
        self.inner.abort()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{MemSink, MemSource};
    use proptest::prelude::*;

    #[test]
    fn encodes_line_endings_and_bare_cr() {
        assert_eq!(encode_all(b"a\nb"), b"a\r\nb");
        assert_eq!(encode_all(b"a\rb"), b"a\r\0b");
        assert_eq!(encode_all(b"\r\n"), b"\r\0\r\n");
        assert_eq!(encode_all(b""), b"");
        assert_eq!(encode_all(b"plain"), b"plain");
    }

    #[test]
    fn decodes_line_endings_and_bare_cr() {
        assert_eq!(decode_all(b"\r\n"), b"\n");
        assert_eq!(decode_all(b"\r\0"), b"\r");
        assert_eq!(decode_all(b"a\r"), b"a\r");
        assert_eq!(decode_all(b"\rx"), b"\rx");
        assert_eq!(decode_all(b"\r\r\n"), b"\r\n");
        assert_eq!(decode_all(b""), b"");
        assert_eq!(decode_all(b"\r\0\r\n"), b"\r\n");
    }

    #[test]
    fn encoder_with_one_byte_output_matches_encode_all() {
        let input = b"a\r\nb\n\n\rc\r";
        let mut enc = Encoder::new();
        let (mut got, mut rest) = (Vec::new(), &input[..]);
        loop {
            let mut one = [0u8; 1];
            let (c, w) = enc.encode(rest, &mut one);
            rest = &rest[c..];
            got.extend_from_slice(&one[..w]);
            if w == 0 {
                break;
            }
        }
        assert!(rest.is_empty() && !enc.has_pending());
        assert_eq!(got, encode_all(input));
    }

    #[test]
    fn encoder_keeps_second_byte_when_output_is_full() {
        let mut enc = Encoder::new();
        let mut out = [0u8; 2];
        assert_eq!(enc.encode(b"a\nb", &mut out), (2, 2));
        assert_eq!(&out, b"a\r");
        assert!(enc.has_pending());
        assert_eq!(enc.encode(b"b", &mut out), (1, 2));
        assert_eq!(&out, b"\nb");
        assert!(!enc.has_pending());
    }

    #[test]
    fn decoder_byte_by_byte_matches_decode_all() {
        let input = b"a\r\nb\r\0c\rd\r\r\n\r";
        let mut dec = Decoder::new();
        let mut got = Vec::new();
        for b in input {
            dec.decode(std::slice::from_ref(b), &mut got);
        }
        dec.finish(&mut got);
        assert_eq!(got, decode_all(input));
    }

    #[test]
    fn decoder_resolves_cr_split_at_chunk_boundary() {
        let mut dec = Decoder::new();
        let mut got = Vec::new();
        dec.decode(b"ab\r", &mut got);
        assert_eq!(got, b"ab");
        assert!(dec.has_pending());
        dec.decode(b"\ncd\r", &mut got);
        dec.decode(b"\0", &mut got);
        dec.decode(b"", &mut got);
        dec.finish(&mut got);
        assert_eq!(got, b"ab\ncd\r");
    }

    #[test]
    fn source_reads_out_of_order_and_past_the_end() {
        let data = b"l1\nl2\r\nl3\n".to_vec();
        let expected = encode_all(&data);
        let mut src = NetasciiSource::with_scratch_len(MemSource::new(data), 3);
        let mut buf = [0u8; 4];
        assert_eq!(src.read_at(8, &mut buf).unwrap(), 4);
        assert_eq!(&buf, &expected[8..12]);
        assert_eq!(src.read_at(3, &mut buf).unwrap(), 4);
        assert_eq!(&buf, &expected[3..7]);
        assert_eq!(src.read_at(12, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], &expected[12..]);
        assert_eq!(src.read_at(14, &mut buf).unwrap(), 0);
        assert_eq!(src.read_at(u64::MAX, &mut buf).unwrap(), 0);
        assert_eq!(src.read_at(0, &mut []).unwrap(), 0);
        assert_eq!(src.size(), None);
    }

    #[test]
    fn source_release_bounds_checkpoints() {
        let data: Vec<u8> = b"x\n".iter().copied().cycle().take(10_000).collect();
        let mut src = NetasciiSource::new(MemSource::new(data));
        let mut buf = [0u8; 512];
        for k in 0..20u64 {
            src.read_at(k * 512, &mut buf).unwrap();
            src.release_before(k * 512);
            assert!(src.checkpoints.len() <= 2);
        }
    }

    /// Records the lowest offset the netascii layer asks for.
    struct Recording {
        mem: MemSource<Vec<u8>>,
        lowest: u64,
    }

    impl Source for Recording {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.lowest = self.lowest.min(offset);
            self.mem.read_at(offset, buf)
        }
        fn size(&self) -> Option<u64> {
            self.mem.size()
        }
    }

    #[test]
    fn source_rereads_from_a_checkpoint_not_from_the_start() {
        let data: Vec<u8> = b"ab\r\n".iter().copied().cycle().take(20_000).collect();
        let inner = Recording {
            mem: MemSource::new(data.clone()),
            lowest: u64::MAX,
        };
        let mut src = NetasciiSource::with_scratch_len(inner, 64);
        let mut buf = [0u8; 512];
        for k in 0..20u64 {
            src.read_at(k * 512, &mut buf).unwrap();
        }
        src.release_before(10 * 512);
        src.reader.inner.lowest = u64::MAX;
        src.read_at(10 * 512, &mut buf).unwrap();
        assert_eq!(&buf[..], &encode_all(&data)[10 * 512..11 * 512]);
        // Block 10 starts around inner offset 10 * 512 * 4 / 6.
        assert!(
            src.reader.inner.lowest >= 3000,
            "{}",
            src.reader.inner.lowest
        );
        assert_eq!(src.into_inner().mem.size(), Some(20_000));
    }

    #[test]
    fn sink_rejects_out_of_order_writes_and_flushes_cr_on_commit() {
        let mut sink = NetasciiSink::new(MemSink::new());
        sink.write_at(0, b"a\r").unwrap();
        let err = sink.write_at(5, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        sink.write_at(2, b"\nb\r").unwrap();
        sink.commit().unwrap();
        let inner = sink.into_inner();
        assert_eq!(inner.data, b"a\nb\r");
        assert!(inner.committed);
    }

    #[test]
    fn sink_abort_reaches_inner() {
        let mut sink = NetasciiSink::new(MemSink::new());
        sink.write_at(0, b"abc\r\n").unwrap();
        sink.abort();
        let inner = sink.into_inner();
        assert!(inner.aborted && inner.data.is_empty());
    }

    /// Fails the first write only, to check the sink can carry on after.
    #[derive(Default)]
    struct FlakySink {
        mem: MemSink,
        failed: bool,
    }

    impl Sink for FlakySink {
        fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
            if !std::mem::replace(&mut self.failed, true) {
                return Err(io::Error::other("disk hiccup"));
            }
            self.mem.write_at(offset, data)
        }
        fn commit(&mut self) -> io::Result<()> {
            self.mem.commit()
        }
        fn abort(&mut self) {
            self.mem.abort()
        }
    }

    #[test]
    fn sink_state_is_unchanged_by_a_failed_inner_write() {
        let mut sink = NetasciiSink::new(FlakySink::default());
        assert!(sink.write_at(0, b"a\r").is_err());
        sink.write_at(0, b"a\r").unwrap();
        sink.write_at(2, b"\n").unwrap();
        sink.commit().unwrap();
        assert_eq!(sink.into_inner().mem.data, b"a\n");
    }

    fn netascii_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![Just(CR), Just(LF), Just(NUL), any::<u8>()],
            0..2000,
        )
    }

    fn encode_in_chunks(x: &[u8], out_len: usize) -> Vec<u8> {
        let mut enc = Encoder::new();
        let (mut got, mut rest) = (Vec::new(), x);
        let mut buf = vec![0u8; out_len];
        loop {
            let (c, w) = enc.encode(rest, &mut buf);
            rest = &rest[c..];
            got.extend_from_slice(&buf[..w]);
            if w == 0 {
                return got;
            }
        }
    }

    fn decode_in_chunks(x: &[u8], chunk: usize) -> Vec<u8> {
        let mut dec = Decoder::new();
        let mut got = Vec::new();
        for part in x.chunks(chunk) {
            dec.decode(part, &mut got);
        }
        dec.finish(&mut got);
        got
    }

    proptest! {
        #[test]
        fn round_trip_in_arbitrary_chunks(
            x in netascii_bytes(), enc_chunk in 1usize..700, dec_chunk in 1usize..700,
        ) {
            let wire = encode_in_chunks(&x, enc_chunk);
            prop_assert_eq!(&wire, &encode_all(&x));
            prop_assert_eq!(decode_in_chunks(&wire, dec_chunk), x);
        }

        #[test]
        fn decoding_anything_is_chunk_invariant(
            x in netascii_bytes(), chunk in 1usize..700,
        ) {
            prop_assert_eq!(decode_in_chunks(&x, chunk), decode_all(&x));
        }

        #[test]
        fn source_read_sequentially_equals_encode_all(
            x in netascii_bytes(), blksize in 8usize..600, scratch in 1usize..5000,
        ) {
            let mut src = NetasciiSource::with_scratch_len(MemSource::new(x.clone()), scratch);
            let (mut got, mut buf) = (Vec::new(), vec![0u8; blksize]);
            loop {
                let n = src.read_at(got.len() as u64, &mut buf).unwrap();
                src.release_before(got.len() as u64);
                got.extend_from_slice(&buf[..n]);
                if n < blksize {
                    break;
                }
            }
            prop_assert_eq!(got, encode_all(&x));
        }

        /// A sender that reads ahead, releases what is acknowledged and jumps
        /// back to the unacknowledged window at random.
        #[test]
        fn source_rereads_windows_consistently(
            x in netascii_bytes(),
            blksize in 8usize..600,
            scratch in 1usize..5000,
            ops in prop::collection::vec(any::<u16>(), 0..200),
        ) {
            let expected = encode_all(&x);
            let mut src = NetasciiSource::with_scratch_len(MemSource::new(x), scratch);
            let mut buf = vec![0u8; blksize];
            let mut first_reads: Vec<Option<Vec<u8>>> = Vec::new();
            let (mut next, mut released) = (0usize, 0usize);
            for op in ops {
                let pick = released + (op as usize / 4) % (next - released + 1);
                match op % 4 {
                    0 => {
                        released = pick;
                        src.release_before((released * blksize) as u64);
                    }
                    1 => next = pick,
                    _ => {
                        let n = src.read_at((next * blksize) as u64, &mut buf).unwrap();
                        let start = (next * blksize).min(expected.len());
                        let end = (start + blksize).min(expected.len());
                        prop_assert_eq!(&buf[..n], &expected[start..end]);
                        if first_reads.len() <= next {
                            first_reads.resize(next + 1, None);
                        }
                        let first = first_reads[next].get_or_insert_with(|| buf[..n].to_vec());
                        prop_assert_eq!(&buf[..n], &first[..]);
                        next += 1;
                    }
                }
            }
        }

        #[test]
        fn sink_decodes_blocks_to_the_original(
            x in netascii_bytes(), blksize in 1usize..600,
        ) {
            let mut sink = NetasciiSink::new(MemSink::new());
            let wire = encode_all(&x);
            let mut offset = 0u64;
            for block in wire.chunks(blksize) {
                sink.write_at(offset, block).unwrap();
                offset += block.len() as u64;
            }
            sink.commit().unwrap();
            let inner = sink.into_inner();
            prop_assert!(inner.committed);
            prop_assert_eq!(inner.data, x);
        }

        #[test]
        fn sink_accepts_any_bytes(
            x in prop::collection::vec(any::<u8>(), 0..2000), blksize in 1usize..600,
        ) {
            let mut sink = NetasciiSink::new(MemSink::new());
            let mut offset = 0u64;
            for block in x.chunks(blksize) {
                sink.write_at(offset, block).unwrap();
                offset += block.len() as u64;
            }
            sink.commit().unwrap();
            prop_assert_eq!(sink.into_inner().data, decode_all(&x));
        }
    }
}
