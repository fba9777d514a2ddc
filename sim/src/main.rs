//! `tftplab-sim`: the project's main job.
//!
//! Until the turmoil-based scenario runner lands, this runs the protocol
//! core's demo: the real client and server machines joined by
//! `tftplab::memnet` (an in-memory network with seeded loss, duplication and
//! reordering), over a grid of block and window sizes, and prints one line per
//! transfer. Any run replays exactly from its seed.

use std::process::ExitCode;
use std::time::Duration;
use tftplab::memnet::{run, Faults, Setup};
use tftplab::options::{Direction, OptionRequest};
use tftplab::proto::Summary;

fn usage() -> ExitCode {
    eprintln!("usage: tftplab-sim [--seed N] [--trace]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut seed = 1u64;
    let mut show_trace = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seed" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => seed = s,
                None => return usage(),
            },
            "--trace" => show_trace = true,
            "-h" | "--help" => {
                println!("tftplab-sim: runs transfers between the real tftplab machines over a");
                println!("seeded lossy in-memory network and checks every byte arrives.");
                println!();
                println!("  --seed N   seed for the network's faults (default 1)");
                println!("  --trace    print every datagram of every transfer");
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    demo(seed, show_trace)
}

fn demo(seed: u64, show_trace: bool) -> ExitCode {
    let data: Vec<u8> = (0..2_228_224u32)
        .map(|i| (i * 31 + i / 977) as u8)
        .collect();
    println!(
        "{:<5} {:>7} {:>6} {:>5} {:>5} {:>9} {:>8} {:>8} {:>10}  result",
        "op", "blksize", "window", "loss", "dup", "bytes", "data", "resent", "sim time"
    );
    let mut failures = 0;
    for (direction, blksize, window, loss, dup) in [
        (Direction::Read, 1024, 1, 0.0, 0.0),
        (Direction::Read, 1024, 1, 0.05, 0.05),
        (Direction::Read, 1468, 8, 0.05, 0.05),
        (Direction::Read, 8192, 16, 0.02, 0.10),
        (Direction::Write, 512, 1, 0.05, 0.05),
        (Direction::Write, 1468, 16, 0.05, 0.05),
    ] {
        let mut setup = match direction {
            Direction::Read => Setup::get(data.clone()),
            Direction::Write => Setup::put(data.clone()),
        };
        setup.client.options = OptionRequest {
            blksize: Some(blksize),
            windowsize: Some(window),
            tsize: Some(0),
            ..OptionRequest::default()
        };
        setup.client.retries = 20;
        setup.server.retries = 20;
        setup.faults = Faults {
            loss,
            duplicate: dup,
            reorder: 0.02,
            reorder_delay: Duration::from_millis(5),
            latency: Duration::from_micros(200),
        };
        setup.seed = seed;
        let report = run(setup);
        let sender = report.sender_counters(direction);
        let ok = report.received == data
            && matches!(report.client, Some(Ok(_)))
            && matches!(report.server, Some(Ok(_)));
        failures += usize::from(!ok);
        let took = match &report.client {
            Some(Ok(Summary { duration, .. })) => format!("{:.3}s", duration.as_secs_f64()),
            _ => "-".into(),
        };
        println!(
            "{:<5} {:>7} {:>6} {:>4}% {:>4}% {:>9} {:>8} {:>8} {:>10}  {}",
            if direction == Direction::Read {
                "get"
            } else {
                "put"
            },
            blksize,
            window,
            loss * 100.0,
            dup * 100.0,
            report.received.len(),
            sender.data_sent,
            sender.data_retransmitted,
            took,
            if ok { "intact" } else { "FAILED" }
        );
        if show_trace || !ok {
            for line in &report.trace {
                println!("    {line}");
            }
        }
    }
    if failures > 0 {
        println!("{failures} transfer(s) failed; replay with: cargo run -p tftplab-sim -- --seed {seed} --trace");
        return ExitCode::FAILURE;
    }
    println!("all transfers intact (seed {seed})");
    ExitCode::SUCCESS
}
