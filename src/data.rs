//! Data sources and sinks: where a transfer's bytes come from and go to.
//!
//! The protocol machines in [`crate::proto`] never open files. They read the
//! blocks they send through a [`Source`] and write the blocks they receive
//! through a [`Sink`]. Both are positional, so a file is never loaded whole and
//! a window can be re-read after a timeout without keeping it in memory.
//!
//! Two implementations live here: in-memory buffers ([`MemSource`],
//! [`MemSink`]) and plain files ([`FileSource`], [`FileSink`]). The store
//! supplies its own sink for uploads (temporary file, renamed on commit), and
//! [`crate::netascii`] wraps any source or sink to convert line endings.

use std::fs::File;
use std::io;

/// Where a sender's bytes come from.
pub trait Source {
    /// Reads into `buf` from byte `offset`, filling it completely unless the
    /// end of the data is reached first. Returns the number of bytes read;
    /// fewer than `buf.len()` means the data ends there.
    ///
    /// The sender reads each block once in order, and re-reads from the start
    /// of the unacknowledged window after a timeout; offsets never go below
    /// the last [`Source::release_before`] point.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// The total size in bytes if it is known up front (used for the `tsize`
    /// option). `None` when the size is only known at the end (netascii).
    fn size(&self) -> Option<u64>;

    /// The sender promises never to read below `offset` again. Sources that
    /// keep state to allow re-reading (netascii checkpoints) can drop it.
    fn release_before(&mut self, _offset: u64) {}
}

/// Where a receiver's bytes go.
pub trait Sink {
    /// Writes `data` at byte `offset`. The receiver writes blocks strictly in
    /// order and never writes the same block twice, so `offset` always equals
    /// the number of bytes written so far.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// The last block is in: make the data durable and visible (for an upload,
    /// rename the temporary file into place). Called at most once.
    fn commit(&mut self) -> io::Result<()>;

    /// The transfer failed: discard everything written. Must leave no partial
    /// data behind and must not fail; called at most once, never after
    /// [`Sink::commit`] succeeded.
    fn abort(&mut self);
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read_at(offset, buf)
    }
    fn size(&self) -> Option<u64> {
        (**self).size()
    }
    fn release_before(&mut self, offset: u64) {
        (**self).release_before(offset)
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, data)
    }
    fn commit(&mut self) -> io::Result<()> {
        (**self).commit()
    }
    fn abort(&mut self) {
        (**self).abort()
    }
}

/// A source over bytes held in memory.
#[derive(Debug, Clone)]
pub struct MemSource<B> {
    data: B,
}

impl<B: AsRef<[u8]>> MemSource<B> {
    pub fn new(data: B) -> Self {
        MemSource { data }
    }
}

impl<B: AsRef<[u8]>> Source for MemSource<B> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let data = self.data.as_ref();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
    fn size(&self) -> Option<u64> {
        Some(self.data.as_ref().len() as u64)
    }
}

/// A sink that collects bytes in memory; `committed` tells whether the
/// transfer finished.
#[derive(Debug, Clone, Default)]
pub struct MemSink {
    pub data: Vec<u8>,
    pub committed: bool,
    pub aborted: bool,
}

impl MemSink {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Sink for MemSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let offset = usize::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        if offset != self.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "write at {offset} but {} bytes written so far",
                    self.data.len()
                ),
            ));
        }
        self.data.extend_from_slice(data);
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        self.committed = true;
        Ok(())
    }
    fn abort(&mut self) {
        self.aborted = true;
        self.data.clear();
    }
}

/// A [`MemSink`] behind a shared handle: clone it, hand one clone to a
/// transfer machine, and read the bytes through the other after the machine
/// is gone (or while it runs, from another task).
#[derive(Debug, Clone, Default)]
pub struct SharedSink(std::sync::Arc<std::sync::Mutex<MemSink>>);

impl SharedSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the sink's state now.
    pub fn snapshot(&self) -> MemSink {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The bytes collected so far, leaving none behind.
    pub fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut s| std::mem::take(&mut s.data))
            .unwrap_or_default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut MemSink) -> R) -> io::Result<R> {
        let mut s = self
            .0
            .lock()
            .map_err(|_| io::Error::other("sink poisoned"))?;
        Ok(f(&mut s))
    }
}

impl Sink for SharedSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with(|s| s.write_at(offset, data))?
    }
    fn commit(&mut self) -> io::Result<()> {
        self.with(|s| s.commit())?
    }
    fn abort(&mut self) {
        let _ = self.with(|s| s.abort());
    }
}

/// A source over an open file, read with positional reads (`pread`).
///
/// Small blocks after the first are served from a read-ahead buffer of
/// [`READ_AHEAD`] bytes: one `pread` fills it for the next twenty-odd 1468-byte blocks
/// instead of one system call per block. Blocks of more than a quarter of
/// the buffer are read straight into the caller's buffer. A read outside
/// the buffered range (a resend after a rewind, say) refills it there.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    size: u64,
    /// Bytes of the file from `ahead_at`, allocated on first use.
    ahead: Vec<u8>,
    ahead_at: u64,
}

/// Size of [`FileSource`]'s read-ahead buffer: one per transfer, so 1000
/// concurrent downloads hold 32 MiB of it.
pub const READ_AHEAD: usize = 32 << 10;

impl FileSource {
    pub fn new(file: File) -> io::Result<Self> {
        let size = file.metadata()?.len();
        Ok(FileSource {
            file,
            size,
            ahead: Vec::new(),
            ahead_at: 0,
        })
    }

    /// Reads until `buf` is full or the file ends.
    fn read_full(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match read_at(&self.file, &mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

impl Source for FileSource {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        // The first block is read directly: the buffer is only worth its
        // memory once the client has acknowledged something, and a flood
        // of requests that never do must not hold 32 KiB each.
        if buf.len() > READ_AHEAD / 4 || offset == 0 {
            return self.read_full(offset, buf);
        }
        let end = offset.saturating_add(buf.len() as u64);
        let buffered_end = self.ahead_at + self.ahead.len() as u64;
        // Refill unless the whole block is buffered, or the buffer already
        // reaches the end of the file past `offset`.
        let covered = offset >= self.ahead_at
            && (end <= buffered_end || (buffered_end >= self.size && offset <= buffered_end));
        if !covered {
            let mut ahead = std::mem::take(&mut self.ahead);
            ahead.resize(READ_AHEAD, 0);
            let n = self.read_full(offset, &mut ahead);
            match n {
                Ok(n) => {
                    ahead.truncate(n);
                    self.ahead = ahead;
                    self.ahead_at = offset;
                }
                Err(e) => {
                    ahead.clear();
                    self.ahead = ahead;
                    return Err(e);
                }
            }
        }
        let start = (offset - self.ahead_at) as usize;
        let avail = &self.ahead[start.min(self.ahead.len())..];
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        Ok(n)
    }
    fn size(&self) -> Option<u64> {
        Some(self.size)
    }
}

/// Gathers a receiver's in-order blocks and hands them to `inner` in runs
/// of up to [`WRITE_BEHIND`] bytes: one `pwrite` per 178 blocks of 1468
/// bytes instead of one per block. Commit writes what is left, then commits
/// `inner`; abort drops it and aborts `inner`.
#[derive(Debug)]
pub struct WriteBehind<K: Sink> {
    inner: K,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    at: u64,
}

/// How much [`WriteBehind`] holds before writing.
pub const WRITE_BEHIND: usize = 256 << 10;

impl<K: Sink> WriteBehind<K> {
    pub fn new(inner: K) -> Self {
        WriteBehind {
            inner,
            buf: Vec::new(),
            at: 0,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_at(self.at, &self.buf)?;
            self.at += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<K: Sink> Sink for WriteBehind<K> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset != self.at + self.buf.len() as u64 {
            // Not the next byte: write through, in order.
            self.flush()?;
            self.at = offset + data.len() as u64;
            return self.inner.write_at(offset, data);
        }
        if self.buf.len() + data.len() > WRITE_BEHIND {
            self.flush()?;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(WRITE_BEHIND);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        self.flush()?;
        self.inner.commit()
    }
    fn abort(&mut self) {
        self.buf = Vec::new();
        self.inner.abort();
    }
}

/// A sink that writes in order to a stream: a pipe, a terminal, a device
/// such as `/dev/null`. Nothing can be taken back from a stream, so an abort
/// only stops writing.
#[derive(Debug)]
pub struct StreamSink<W: io::Write> {
    out: W,
    written: u64,
}

impl<W: io::Write> StreamSink<W> {
    pub fn new(out: W) -> Self {
        StreamSink { out, written: 0 }
    }
}

impl<W: io::Write> Sink for StreamSink<W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset != self.written {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a stream can only be written in order",
            ));
        }
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        self.out.flush()
    }
    fn abort(&mut self) {}
}

/// A sink that writes into an already open file with positional writes. It
/// does nothing on commit or abort beyond syncing: atomic replacement is the
/// store's job.
#[derive(Debug)]
pub struct FileSink {
    file: File,
}

impl FileSink {
    pub fn new(file: File) -> Self {
        FileSink { file }
    }
    pub fn into_inner(self) -> File {
        self.file
    }
}

impl Sink for FileSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_all_at(&self.file, data, offset)
    }
    fn commit(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn abort(&mut self) {}
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(unix)]
pub(crate) fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, offset)
}

#[cfg(windows)]
pub(crate) fn write_all_at(file: &File, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    while !data.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, data, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Write-behind changes nothing but the number of writes: the inner
        /// sink ends up with the same bytes, committed once.
        #[test]
        fn write_behind_keeps_every_byte(
            blocks in prop::collection::vec(0usize..70_000, 0..60),
        ) {
            let mut sink = WriteBehind::new(MemSink::new());
            let mut want = Vec::new();
            for (i, len) in blocks.iter().enumerate() {
                let block: Vec<u8> = (0..*len).map(|j| (i * 13 + j) as u8).collect();
                sink.write_at(want.len() as u64, &block).unwrap();
                want.extend_from_slice(&block);
            }
            sink.commit().unwrap();
            prop_assert!(sink.inner.committed);
            prop_assert_eq!(&sink.inner.data, &want);
        }

        /// The read-ahead buffer is invisible: any sequence of reads
        /// (forward, rewinds, past the end, big and small blocks) returns
        /// what a plain positional read of the file does.
        #[test]
        fn file_source_reads_like_the_file(
            len in prop_oneof![0usize..100, 0usize..(3 * READ_AHEAD)],
            reads in prop::collection::vec((0u64..(4 * READ_AHEAD as u64), 0usize..(READ_AHEAD / 2)), 1..40),
        ) {
            let content: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut tmp = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut tmp, &content).unwrap();
            let mut src = FileSource::new(tmp.reopen().unwrap()).unwrap();
            prop_assert_eq!(src.size(), Some(len as u64));
            for (offset, size) in reads {
                let mut buf = vec![0xAAu8; size];
                let n = src.read_at(offset, &mut buf).unwrap();
                let start = (offset as usize).min(len);
                let want = &content[start..(start + size).min(len)];
                prop_assert_eq!(&buf[..n], want, "read of {} at {}", size, offset);
            }
            // And block after block, as a sender reads it.
            let block = 1 + len % 1500;
            let mut got = Vec::new();
            loop {
                let mut buf = vec![0u8; block];
                let n = src.read_at(got.len() as u64, &mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                if n < block {
                    break;
                }
            }
            prop_assert_eq!(got, content);
        }
    }

    #[test]
    fn mem_source_reads_short_at_end_and_empty_past_it() {
        let mut src = MemSource::new(b"hello world".to_vec());
        let mut buf = [0u8; 8];
        assert_eq!(src.read_at(0, &mut buf).unwrap(), 8);
        assert_eq!(&buf, b"hello wo");
        assert_eq!(src.read_at(8, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"rld");
        assert_eq!(src.read_at(11, &mut buf).unwrap(), 0);
        assert_eq!(src.read_at(u64::MAX, &mut buf).unwrap(), 0);
        assert_eq!(src.size(), Some(11));
    }

    #[test]
    fn mem_sink_refuses_out_of_order_writes() {
        let mut sink = MemSink::new();
        sink.write_at(0, b"ab").unwrap();
        assert!(sink.write_at(5, b"cd").is_err());
        sink.write_at(2, b"cd").unwrap();
        assert_eq!(sink.data, b"abcd");
        sink.abort();
        assert!(sink.data.is_empty() && sink.aborted);
    }

    #[test]
    fn file_source_and_sink_round_trip() {
        let dir = std::env::temp_dir().join(format!("tftplab-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        let mut sink = FileSink::new(File::create(&path).unwrap());
        sink.write_at(0, b"0123").unwrap();
        sink.write_at(4, b"4567").unwrap();
        sink.commit().unwrap();
        let mut src = FileSource::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(src.size(), Some(8));
        let mut buf = [0u8; 5];
        assert_eq!(src.read_at(6, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"67");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
