//! The board's serial console: read on a thread into a shared buffer (and
//! a log file), with a writer for the `{ expect, send }` script. A tty is
//! set to the baud rate with `stty`; `unix:` and `tcp:` devices are
//! connected to (and retried until the deadline: QEMU creates its socket
//! only once the power command started it); a plain file is followed as
//! it grows.

use crate::boards::Console;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A console being read.
pub struct ConsoleTap {
    text: Arc<Mutex<String>>,
    writer: Arc<Mutex<Option<Box<dyn Write + Send>>>>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Script progress: the next step and where to search from.
    step: usize,
    searched_to: usize,
}

type Halves = (Box<dyn Read + Send>, Option<Box<dyn Write + Send>>, bool);

fn connect(device: &str, baud: u32) -> io::Result<Halves> {
    if let Some(path) = device.strip_prefix("unix:") {
        let s = std::os::unix::net::UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let w = s.try_clone()?;
        return Ok((Box::new(s), Some(Box::new(w)), false));
    }
    if let Some(addr) = device.strip_prefix("tcp:") {
        let s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let w = s.try_clone()?;
        return Ok((Box::new(s), Some(Box::new(w)), false));
    }
    let meta = std::fs::metadata(device)?;
    if meta.file_type().is_char_device() {
        let status = std::process::Command::new("stty")
            .args([
                "-F",
                device,
                &baud.to_string(),
                "raw",
                "-echo",
                "min",
                "0",
                "time",
                "1",
            ])
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!("stty -F {device} {baud} failed")));
        }
        let r = File::options().read(true).write(true).open(device)?;
        let w = r.try_clone()?;
        // `min 0 time 1`: a read returns empty after 100 ms of silence.
        return Ok((Box::new(r), Some(Box::new(w)), true));
    }
    // A plain file or a FIFO: followed, not written.
    let r = File::open(device)?;
    Ok((Box::new(r), None, meta.is_file()))
}

impl ConsoleTap {
    /// Starts reading `console.device`, retrying the connection until
    /// `deadline`. Everything read is appended to `log`.
    pub fn open(console: &Console, log: &Path, deadline: Instant) -> io::Result<ConsoleTap> {
        let mut log = File::create(log)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", log.display())))?;
        let text = Arc::new(Mutex::new(String::new()));
        let writer: Arc<Mutex<Option<Box<dyn Write + Send>>>> = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let (device, baud) = (console.device.clone(), console.baud);
        let (t, w, s, e) = (text.clone(), writer.clone(), stop.clone(), error.clone());
        let thread = std::thread::Builder::new()
            .name("tftplab-hw-console".into())
            .spawn(move || {
                let (mut reader, out, follow) = loop {
                    match connect(&device, baud) {
                        Ok(h) => break h,
                        Err(err) if Instant::now() >= deadline || s.load(Ordering::Relaxed) => {
                            if let Ok(mut e) = e.lock() {
                                *e = Some(format!("console {device}: {err}"));
                            }
                            return;
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                };
                if let Ok(mut w) = w.lock() {
                    *w = out;
                }
                let mut buf = [0u8; 4096];
                while !s.load(Ordering::Relaxed) {
                    match reader.read(&mut buf) {
                        Ok(0) if follow => std::thread::sleep(Duration::from_millis(50)),
                        Ok(0) => break,
                        Ok(n) => {
                            let _ = log.write_all(&buf[..n]);
                            if let Ok(mut t) = t.lock() {
                                t.push_str(&String::from_utf8_lossy(&buf[..n]));
                            }
                        }
                        Err(err)
                            if matches!(
                                err.kind(),
                                io::ErrorKind::WouldBlock
                                    | io::ErrorKind::TimedOut
                                    | io::ErrorKind::Interrupted
                            ) => {}
                        Err(err) => {
                            if let Ok(mut e) = e.lock() {
                                *e = Some(format!("console {device}: {err}"));
                            }
                            break;
                        }
                    }
                }
                let _ = log.flush();
            })?;
        Ok(ConsoleTap {
            text,
            writer,
            stop,
            error,
            thread: Some(thread),
            step: 0,
            searched_to: 0,
        })
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.text.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Why reading stopped early, if it did.
    pub fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    /// Runs the next script steps whose `expect` text has appeared since
    /// the previous step's.
    pub fn advance(&mut self, script: &[(String, String)]) -> io::Result<()> {
        let text = self.text();
        while let Some((expect, send)) = script.get(self.step) {
            let Some(at) = text
                .get(self.searched_to..)
                .and_then(|t| t.find(expect.as_str()))
            else {
                return Ok(());
            };
            self.searched_to += at + expect.len();
            self.step += 1;
            let mut w = self
                .writer
                .lock()
                .map_err(|_| io::Error::other("console writer poisoned"))?;
            let Some(w) = w.as_mut() else {
                return Err(io::Error::other("this console cannot be written to"));
            };
            // Typed a character at a time, as a person would: a UART FIFO
            // without flow control drops a burst.
            for b in send.as_bytes() {
                w.write_all(&[*b])?;
                w.flush()?;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    }

    /// True once every script step was sent.
    pub fn script_done(&self, script_len: usize) -> bool {
        self.step >= script_len
    }

    pub fn close(mut self) -> String {
        self.shutdown();
        self.text()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ConsoleTap {
    fn drop(&mut self) {
        self.shutdown();
    }
}
