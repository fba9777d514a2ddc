#![no_main]
//! Arbitrary text through the scenario loader: no panic, bounded
//! allocation, and every error names the file and a line in it.
//! The body and its invariants: `tftplab_sim::harness::fuzz::scenario_parse`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tftplab_sim::harness::fuzz::scenario_parse(data));
