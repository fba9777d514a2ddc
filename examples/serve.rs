//! Serve a directory over TFTP, read-only, until Ctrl-C.
//!
//! ```sh
//! cargo run --example serve -- ./tftproot 127.0.0.1:6969
//! tftp 127.0.0.1 6969 -c get start4.elf      # from another shell
//! ```

use std::time::Duration;
use tftplab::runtime::Server;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = args.next().unwrap_or_else(|| ".".into());
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:6969".into());
    let bind = bind
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let server = Server::builder(&root).bind(bind).serve().await?;
    println!("serving {root} on {} (Ctrl-C stops)", server.local_addr());
    let mut events = server.subscribe();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.recv() => match event {
                Ok(event) => println!("{event:?}"),
                Err(_) => continue,
            },
        }
    }
    let report = server.stop(Duration::from_secs(5)).await;
    println!("stopped; {} transfer(s) aborted", report.aborted);
    Ok(())
}
