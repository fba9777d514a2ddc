//! Loss recovery in simulated time: our client against our server through
//! the in-memory network ([`tftplab_sim::memnet`]), which loses datagrams at
//! random in both directions under a fake clock. Deterministic: the same
//! seeds print the same figures on any machine, however loaded.
//!
//! ```sh
//! cargo bench --bench sim-loss                 # 1 and 64 MiB, 1 % and 5 %, seeds 0-2
//! cargo bench --bench sim-loss -- --mib 1      # one size
//! ```
//!
//! Per size, loss rate and window: the median simulated time of three
//! seeds (first request to the client's report), for the adaptive timer
//! (the default, 20 ms floor) and for a fixed 1 s timer on both sides, the
//! classic servers' behaviour. The link is a LAN: 100 us one way. blksize
//! 1468. Every download is checked byte for byte.

use std::time::Duration;
use tftplab::options::OptionRequest;
use tftplab_sim::lab::faults::{DelayRange, FaultPlan, LinkFaults};
use tftplab_sim::memnet::{run, Setup};

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761) as u8 ^ (i >> 13) as u8)
        .collect()
}

fn download(data: &[u8], loss: f64, window: u16, fixed: bool, seed: u64) -> Duration {
    let mut setup = Setup::get(data.to_vec());
    setup.client.options = OptionRequest {
        blksize: Some(1468),
        windowsize: Some(window),
        ..OptionRequest::default()
    };
    setup.client.retries = 100;
    setup.server.retries = 100;
    if fixed {
        setup.client.min_rto = setup.client.timeout;
        setup.server.min_rto = setup.server.timeout;
    }
    setup.faults = FaultPlan::symmetric(LinkFaults {
        loss,
        latency: Some(DelayRange::fixed(Duration::from_micros(100))),
        ..LinkFaults::default()
    });
    setup.seed = seed;
    setup.time_limit = Duration::from_secs(100_000);
    setup.max_datagrams = 50_000_000;
    let report = run(setup);
    let summary = match report.client {
        Some(Ok(s)) => s,
        other => panic!("loss {loss} window {window} seed {seed}: {other:?}"),
    };
    assert!(report.received == data, "download corrupt");
    summary.duration
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = match args.iter().position(|a| a == "--mib") {
        Some(i) => vec![args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .expect("--mib N")],
        None => vec![1, 64],
    };
    println!("simulated seconds, median of seeds 0-2; blksize 1468, 100 us one way");
    println!(
        "{:>5} {:>5} {:>7} {:>12} {:>12} {:>8}",
        "MiB", "loss", "window", "adaptive s", "fixed 1 s", "speed-up"
    );
    for mib in sizes {
        let data = pattern(mib << 20);
        for loss in [0.01, 0.05] {
            for window in [1u16, 16] {
                let time = |fixed| {
                    median(
                        (0..3)
                            .map(|s| download(&data, loss, window, fixed, s))
                            .collect(),
                    )
                };
                let (adaptive, fixed) = (time(false), time(true));
                println!(
                    "{:>5} {:>4}% {:>7} {:>12.3} {:>12.3} {:>7.1}x",
                    mib,
                    loss * 100.0,
                    window,
                    adaptive.as_secs_f64(),
                    fixed.as_secs_f64(),
                    fixed.as_secs_f64() / adaptive.as_secs_f64()
                );
            }
        }
    }
}
