#![no_main]
//! Option negotiation: arbitrary option lists against arbitrary server limits,
//! our client's request through our server and back, arbitrary OACKs.
//! The body and its invariants: `tftplab_sim::harness::fuzz::options`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tftplab_sim::harness::fuzz::options(data));
