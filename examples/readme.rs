//! The README's Rust blocks, each verbatim inside a function, so that they
//! compile with every `cargo test` (which builds the examples);
//! `tests/readme.rs` fails when a block in the README no longer appears
//! here line for line. Running it runs the simulator block:
//!
//! ```sh
//! cargo run --example readme
//! ```

use std::error::Error;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

/// "From Rust": a server and a client in one tokio program.
#[allow(dead_code)]
#[rustfmt::skip]
async fn server_and_client() -> Result<(), Box<dyn Error>> {
    use tftplab::runtime::{Client, Server};
    use tftplab::store::WritePolicy;

    let server = Server::builder("/srv/tftp")
        .bind("0.0.0.0:6969".parse()?)
        .write(WritePolicy::Create)
        .max_upload(64 << 20)          // one call: checked against tsize and against the bytes
        .serve()
        .await?;
    let client = Client::builder().blksize(1468).windowsize(16).build();
    let kernel = client.get_bytes(server.local_addr(), "boot/kernel.img").await?;
    server.stop(std::time::Duration::from_secs(5)).await;
    drop(kernel);
    Ok(())
}

/// "From Rust": a scenario in the simulator.
#[rustfmt::skip]
fn simulate() -> Result<(), Box<dyn Error>> {
    use tftplab_sim::lab::Scenario;

    let run = Scenario::load("scenarios/rpi4-netboot.toml")?.simulate(7);
    assert!(run.passed(), "{:?}", run.verdict.failures);
    Ok(())
}

/// "The protocol core": driving a sans-IO transfer by hand (the loop's
/// waiting is left to the reader, as in the README).
#[allow(dead_code, unreachable_code, unused_variables, unused_mut)]
#[rustfmt::skip]
fn sans_io(
    datagram: Vec<u8>,
    now: Instant,
    peer: SocketAddr,
    source: tftplab::data::MemSource<Vec<u8>>,
    socket: &UdpSocket,
    mut buf: Vec<u8>,
) -> Result<(), Box<dyn Error>> {
    use tftplab::proto::{ServerRead, ServerConfig, Transfer, parse_request};

    let (_direction, request) = parse_request(&datagram)?.expect("a request");
    let mut transfer = ServerRead::new(now, peer, &request, source, &ServerConfig::default())?;
    loop {
        while let Some(t) = transfer.poll_transmit(now, &mut buf) { socket.send_to(&buf[..t.len], t.dest)?; }
        while let Some(event) = transfer.poll_event() { /* Negotiated, Finished */ }
        if transfer.is_closed() { break; }
        // wait for a datagram (handle_datagram) or transfer.poll_timeout() (handle_timeout)
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    simulate()?;
    println!("scenarios/rpi4-netboot.toml, seed 7: passed");
    Ok(())
}
