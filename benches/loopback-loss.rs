//! How long downloads take over loopback UDP when datagrams are lost: our
//! client against our server, both on the host's real sockets, with the
//! lab's seeded fault layer dropping datagrams in both directions.
//!
//! ```sh
//! cargo bench --bench loopback-loss                      # 1 and 64 MiB, 1 % and 5 %
//! cargo bench --bench loopback-loss -- --mib 1 --runs 5  # a quick look
//! ```
//!
//! Prints, per file size, loss rate and window, the median wall time of
//! `--runs` downloads (each with its own seed), min-max, and the median
//! count of DATA the server resent. Every download is checked byte for byte.
//! Wall-clock figures, so only compare rows of one run.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tftplab::options::OptionRequest;
use tftplab::proto::ClientConfig;
use tftplab::runtime::{serve, Client, ServerEvent, ServerOptions, TokioNet};
use tftplab::store::{Store, StoreConfig};
use tftplab_sim::lab::faults::{Direction, FaultPlan, Injector, LinkFaults, Script};
use tftplab_sim::lab::net::{FaultyNet, LabClock};
use tftplab_sim::lab::trace::Trace;

struct WallClock(Instant);

impl LabClock for WallClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
    fn name(&self, ip: IpAddr) -> String {
        ip.to_string()
    }
}

fn faulty(host: &str, loss: f64, direction: Direction, seed: u64) -> FaultyNet<TokioNet> {
    let link = LinkFaults {
        loss,
        ..LinkFaults::default()
    };
    let plan = FaultPlan::default();
    FaultyNet::new(
        TokioNet,
        host,
        Injector::new(link, seed),
        Script::new(&plan, direction),
        Trace::new(),
        Arc::new(WallClock(Instant::now())),
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut sizes = vec![1u64, 64];
    let mut runs = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mib" => sizes = vec![args.next().and_then(|v| v.parse().ok()).unwrap_or(1)],
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(5),
            _ => {} // cargo bench passes --bench
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:>5} {:>5} {:>7} {:>10} {:>19} {:>8}",
        "MiB", "loss", "window", "median s", "min-max s", "resent"
    );
    for &mib in &sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let data: Vec<u8> = (0..(mib << 20) as usize)
            .map(|i| (i * 131 % 251) as u8)
            .collect();
        std::fs::write(dir.path().join("f.bin"), &data).expect("write");
        for loss in [0.01, 0.05] {
            for window in [1u16, 16] {
                let mut secs = Vec::new();
                let mut resent = Vec::new();
                for run in 0..runs {
                    let seed = 1000 * u64::from(window) + run as u64;
                    let (took, retrans) = rt.block_on(async {
                        let store =
                            Arc::new(Store::new(StoreConfig::new(dir.path())).expect("store"));
                        let options = ServerOptions {
                            bind: "127.0.0.1:0".parse().unwrap(),
                            ..ServerOptions::default()
                        };
                        let net = faulty("server", loss, Direction::ServerToClient, seed);
                        let server = serve(net, store, options).await.expect("serve");
                        let mut events = server.subscribe();
                        let addr: SocketAddr = server.local_addr();
                        let client = Client::new(
                            faulty("client", loss, Direction::ClientToServer, seed + 1),
                            ClientConfig {
                                options: OptionRequest {
                                    blksize: Some(1468),
                                    windowsize: Some(window),
                                    ..OptionRequest::default()
                                },
                                retries: 50,
                                ..ClientConfig::default()
                            },
                        );
                        let start = Instant::now();
                        let got = client.get_bytes(addr, "f.bin").await.expect("download");
                        let took = start.elapsed().as_secs_f64();
                        assert!(got == data, "download corrupt");
                        // The server's transfer ends after the client's final
                        // ACK (or its own give-up): wait for its report.
                        let mut retrans = 0;
                        while let Ok(event) = events.recv().await {
                            if let ServerEvent::Finished { counters, .. } = event {
                                retrans = counters.data_retransmitted;
                                break;
                            }
                        }
                        server.stop(Duration::from_secs(3)).await;
                        (took, retrans as f64)
                    });
                    secs.push(took);
                    resent.push(retrans);
                }
                let (lo, hi) = (
                    secs.iter().copied().fold(f64::MAX, f64::min),
                    secs.iter().copied().fold(0.0, f64::max),
                );
                println!(
                    "{:>5} {:>4}% {:>7} {:>10.3} {:>9.3}-{:<9.3} {:>8.0}",
                    mib,
                    loss * 100.0,
                    window,
                    median(&mut secs),
                    lo,
                    hi,
                    median(&mut resent)
                );
            }
        }
    }
}
