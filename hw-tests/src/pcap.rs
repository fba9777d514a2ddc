//! A classic pcap writer (the format Wireshark and tcpdump read): one
//! record per Ethernet frame, with microsecond timestamps. Shared by the
//! link's receive thread and its senders; each record is written whole.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: u32 = 0xa1b2_c3d4;
const LINKTYPE_ETHERNET: u32 = 1;
/// Frames are never longer than this (no jumbo frames on the link).
pub const SNAPLEN: u32 = 65_535;

/// A pcap file being written. Cloning shares the file.
#[derive(Clone)]
pub struct PcapWriter(Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>);

impl PcapWriter {
    /// Creates `path` and writes the file header.
    pub fn create(path: &Path) -> io::Result<PcapWriter> {
        let file = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        PcapWriter::new(Box::new(file))
    }

    /// Writes the file header to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> io::Result<PcapWriter> {
        let mut w = BufWriter::new(out);
        w.write_all(&MAGIC.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?; // version 2.4
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&0i32.to_le_bytes())?; // GMT offset
        w.write_all(&0u32.to_le_bytes())?; // timestamp accuracy
        w.write_all(&SNAPLEN.to_le_bytes())?;
        w.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
        Ok(PcapWriter(Arc::new(Mutex::new(w))))
    }

    /// Appends one frame stamped with the current time.
    pub fn frame(&self, frame: &[u8]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.frame_at(now.as_secs() as u32, now.subsec_micros(), frame);
    }

    /// Appends one frame with the given timestamp. Write errors are
    /// remembered by the buffer and reported by [`PcapWriter::flush`].
    pub fn frame_at(&self, secs: u32, micros: u32, frame: &[u8]) {
        let len = frame.len().min(SNAPLEN as usize);
        let mut record = Vec::with_capacity(16 + len);
        record.extend_from_slice(&secs.to_le_bytes());
        record.extend_from_slice(&micros.to_le_bytes());
        record.extend_from_slice(&(len as u32).to_le_bytes());
        record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        record.extend_from_slice(&frame[..len]);
        if let Ok(mut w) = self.0.lock() {
            let _ = w.write_all(&record);
        }
    }

    pub fn flush(&self) -> io::Result<()> {
        match self.0.lock() {
            Ok(mut w) => w.flush(),
            Err(_) => Err(io::Error::other("pcap writer poisoned")),
        }
    }
}

/// Reads the frames back from a pcap file's bytes (for tests and for the
/// runner's own checks): `None` if the file is not one this module wrote.
pub fn read_frames(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let le32 = |at: usize| -> Option<u32> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if le32(0)? != MAGIC || le32(20)? != LINKTYPE_ETHERNET {
        return None;
    }
    let mut at = 24;
    let mut out = Vec::new();
    while at < bytes.len() {
        let caplen = le32(at + 8)? as usize;
        let start = at + 16;
        out.push(bytes.get(start..start + caplen)?.to_vec());
        at = start + caplen;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn header_and_records_are_what_wireshark_expects() {
        let buf = Shared::default();
        let w = PcapWriter::new(Box::new(buf.clone())).expect("header");
        w.frame_at(1_700_000_000, 250, &[0xaa; 60]);
        w.frame_at(1_700_000_001, 0, &[0xbb; 42]);
        w.flush().expect("flush");
        let bytes = buf.0.lock().expect("lock").clone();
        assert_eq!(
            &bytes[..24],
            &[
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
        assert_eq!(
            &bytes[24..40],
            &[0x00, 0xf1, 0x53, 0x65, 250, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0]
        );
        assert_eq!(bytes.len(), 24 + 16 + 60 + 16 + 42);
        let frames = read_frames(&bytes).expect("parses");
        assert_eq!(frames, vec![vec![0xaa; 60], vec![0xbb; 42]]);
    }
}
