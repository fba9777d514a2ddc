//! A server on a scratch directory that accepts new files, and a client
//! that uploads a file to it and fetches it back, windowed.
//!
//! ```sh
//! cargo run --example fetch_and_upload
//! ```

use std::time::Duration;
use tftplab::runtime::{Client, Server};
use tftplab::store::WritePolicy;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = tempfile::tempdir()?;
    let server = Server::builder(root.path())
        .bind("127.0.0.1:0".parse()?)
        .write(WritePolicy::Create)
        .create_dirs(true)
        .max_upload(16 << 20)
        .serve()
        .await?;
    // What an operator stages for a board, through the store.
    server
        .store()
        .put_bytes("9ffefdef/config.txt", b"arm_64bit=1\n")?;

    let client = Client::builder().blksize(1468).windowsize(16).build();
    let addr = server.local_addr();
    let kernel: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
    let up = client
        .put_bytes(addr, "boot/kernel.img", kernel.clone())
        .await?;
    println!("uploaded {} bytes in {:?}", up.bytes, up.duration);
    let back = client.get_bytes(addr, "boot/kernel.img").await?;
    assert_eq!(back, kernel, "the file came back as it went");
    let config = client.get_bytes(addr, "9ffefdef/config.txt").await?;
    println!(
        "fetched the kernel back and config.txt: {:?}",
        String::from_utf8_lossy(&config)
    );
    for entry in server.store().list()? {
        println!("  {} ({} bytes)", entry.name, entry.size);
    }
    server.stop(Duration::from_secs(1)).await;
    Ok(())
}
