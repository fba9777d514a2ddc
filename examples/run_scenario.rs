//! Run a scenario file in the simulator from code: every seed decides the
//! faults, so a failing seed replays exactly.
//!
//! ```sh
//! cargo run --example run_scenario -- scenarios/rpi4-netboot.toml 1 2 3
//! ```

use tftplab_sim::lab::trace::render_text;
use tftplab_sim::lab::Scenario;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "scenarios/rpi4-netboot.toml".into());
    let seeds: Vec<u64> = args.map(|s| s.parse()).collect::<Result<_, _>>()?;
    let scenario = Scenario::load(&path)?;
    let mut failed = 0;
    for seed in if seeds.is_empty() { vec![1] } else { seeds } {
        let run = scenario.simulate(seed);
        let verdict = if run.passed() { "pass" } else { "FAIL" };
        println!(
            "{} seed {seed}: {verdict}, {} datagrams ({} dropped) in {:.1} s simulated",
            scenario.name,
            run.record.datagrams,
            run.record.dropped,
            run.record.elapsed.as_secs_f64(),
        );
        if !run.passed() {
            failed += 1;
            for failure in run.verdict.failures.iter().chain(&run.sim_error) {
                println!("  {failure}");
            }
            let trace = render_text(&run.trace);
            let tail: Vec<&str> = trace.lines().rev().take(10).collect();
            println!("  last datagrams:");
            for line in tail.into_iter().rev() {
                println!("    {line}");
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} run(s) failed").into());
    }
    Ok(())
}
