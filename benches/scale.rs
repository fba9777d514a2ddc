//! Many downloads at once against one server on loopback: aggregate
//! throughput, the server's peak RSS and RSS per transfer, every file
//! checked.
//!
//! ```sh
//! cargo build --release --bin tftplab && cargo bench --bench scale
//! cargo bench --bench scale -- --clients 200 --mib 2 --blksize 1024 --windowsize 64
//! ```
//!
//! The server is the real `tftplab serve` binary (target/release/tftplab)
//! in its own process, so its memory is its own; the clients are tasks of
//! this process, each with its own socket, lock-step at blksize 1468 unless
//! `--blksize` and `--windowsize` say otherwise.
//!
//! Memory, from the server's `/proc/PID/status`: `idle RSS` before the
//! downloads, `server peak` (VmHWM) during them, `KiB/xfer` the peak above
//! idle per transfer (every transfer is live at once at the peak), and
//! `rest RSS` two seconds after the last download (the blocking threads
//! that open files linger for one).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tftplab::data::Sink;
use tftplab::options::OptionRequest;
use tftplab::proto::ClientConfig;
use tftplab::runtime::{Client, TokioNet};

fn byte_at(offset: u64) -> u8 {
    (offset.wrapping_mul(131) % 251) as u8
}

/// Checks every byte against the pattern as it arrives: 1000 downloads
/// verified without holding them.
struct CheckingSink {
    len: u64,
    bad: bool,
}

impl Sink for CheckingSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.bad |= offset != self.len
            || data
                .iter()
                .enumerate()
                .any(|(i, &b)| b != byte_at(offset + i as u64));
        self.len += data.len() as u64;
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        if self.bad {
            return Err(io::Error::other("content differs from the file"));
        }
        Ok(())
    }
    fn abort(&mut self) {}
}

/// A process's resident memory and its peak, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    let mut counts = vec![200usize, 1000];
    let mut mib = 2u64;
    let mut windowsize = 1u16;
    let mut blksize = 1468u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok());
        match a.as_str() {
            "--clients" => counts = vec![value().unwrap_or(200)],
            "--mib" => mib = value().unwrap_or(2) as u64,
            "--windowsize" => windowsize = value().unwrap_or(1) as u16,
            "--blksize" => blksize = value().unwrap_or(1468) as u16,
            _ => {} // cargo bench passes --bench
        }
    }
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/tftplab");
    if !binary.exists() {
        eprintln!(
            "scale: {} is missing: cargo build --release --bin tftplab",
            binary.display()
        );
        std::process::exit(2);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let size = mib << 20;
    let data: Vec<u8> = (0..size).map(byte_at).collect();
    std::fs::write(dir.path().join("f.bin"), data).expect("write");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("blksize {blksize}, windowsize {windowsize}");
    println!(
        "{:>7} {:>8} {:>8} {:>10} {:>8} {:>12} {:>11} {:>9} {:>11}",
        "clients",
        "MiB each",
        "wall s",
        "agg. MB/s",
        "intact",
        "server peak",
        "idle RSS",
        "KiB/xfer",
        "rest RSS"
    );
    for &n in &counts {
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe port");
            s.local_addr().unwrap().port()
        };
        // Each transfer needs a socket: lift the descriptor limit.
        let mut server = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n 65536 2>/dev/null || ulimit -n 4096; exec {} serve --root {} \
                 --bind 127.0.0.1:{port} --max-transfers {}",
                binary.display(),
                dir.path().display(),
                n + 10
            ))
            .stderr(Stdio::null())
            .spawn()
            .expect("start tftplab serve");
        std::thread::sleep(Duration::from_millis(500));
        let pid = server.id();
        let (idle, _) = rss_kib(pid);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let start = Instant::now();
        let intact = rt.block_on(async {
            let client = Arc::new(Client::new(
                TokioNet,
                ClientConfig {
                    options: OptionRequest {
                        blksize: Some(blksize),
                        windowsize: Some(windowsize),
                        ..OptionRequest::default()
                    },
                    retries: 20,
                    ..ClientConfig::default()
                },
            ));
            let mut tasks = Vec::new();
            for _ in 0..n {
                let client = client.clone();
                tasks.push(tokio::spawn(async move {
                    let sink = CheckingSink { len: 0, bad: false };
                    client
                        .get(addr, "f.bin", sink, |_| {})
                        .await
                        .is_ok_and(|s| s.bytes == size)
                }));
            }
            let mut ok = 0;
            for t in tasks {
                ok += usize::from(t.await.unwrap_or(false));
            }
            ok
        });
        let wall = start.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(2));
        let (rest, peak) = rss_kib(pid);
        let _ = server.kill();
        let _ = server.wait();
        let per = peak.saturating_sub(idle) as f64 / n as f64;
        println!(
            "{:>7} {:>8} {:>8.2} {:>10.1} {:>4}/{:<4} {:>8} KiB {:>7} KiB {:>9.1} {:>7} KiB",
            n,
            mib,
            wall,
            (n as u64 * size) as f64 / 1e6 / wall,
            intact,
            n,
            peak,
            idle,
            per,
            rest
        );
        if intact != n {
            eprintln!(
                "scale: {} of {n} downloads failed or were corrupt",
                n - intact
            );
        }
    }
}
