//! Drive a sans-IO transfer by hand over a plain `std::net::UdpSocket`:
//! the loop every runtime of tftplab runs, with nothing but the standard
//! library. A server runs in the background on a scratch directory.
//!
//! ```sh
//! cargo run --example sans_io
//! ```

use std::net::UdpSocket;
use std::time::{Duration, Instant};
use tftplab::data::MemSink;
use tftplab::options::OptionRequest;
use tftplab::proto::{ClientConfig, ClientGet, Event, Transfer};
use tftplab::runtime::Server;
use tftplab::wire::MAX_DATAGRAM;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The server, on a runtime of its own.
    let root = tempfile::tempdir()?;
    std::fs::write(
        root.path().join("hello.txt"),
        "hello from tftplab\n".repeat(100),
    )?;
    let runtime = tokio::runtime::Runtime::new()?;
    let server = runtime.block_on(
        Server::builder(root.path())
            .bind("127.0.0.1:0".parse()?)
            .serve(),
    )?;

    // The client: a machine, a socket, and the loop from `tftplab::proto`.
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let config = ClientConfig {
        options: OptionRequest {
            blksize: Some(1024),
            tsize: Some(0),
            ..OptionRequest::default()
        },
        ..ClientConfig::default()
    };
    let mut get = ClientGet::new(
        Instant::now(),
        server.local_addr(),
        "hello.txt",
        MemSink::new(),
        &config,
    )?;
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut outcome = None;
    loop {
        let now = Instant::now();
        while let Some(t) = get.poll_transmit(now, &mut buf) {
            socket.send_to(&buf[..t.len], t.dest)?;
        }
        while let Some(event) = get.poll_event() {
            match event {
                Event::Negotiated(n) => println!("negotiated blksize {}", n.blksize),
                Event::Finished(result) => outcome = Some(result),
            }
        }
        if outcome.is_some() || get.is_closed() {
            break;
        }
        // Wait for a datagram, or until the machine's deadline.
        let wait = get
            .poll_timeout()
            .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
        socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => get.handle_datagram(Instant::now(), from, &buf[..len]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                get.handle_timeout(Instant::now())
            }
            Err(e) => return Err(e.into()),
        }
    }
    let summary = outcome.ok_or("the transfer ended without an outcome")??;
    println!(
        "received {} bytes in {} blocks",
        summary.bytes, summary.blocks
    );
    runtime.block_on(server.stop(Duration::from_secs(1)));
    Ok(())
}
