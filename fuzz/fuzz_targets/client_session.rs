#![no_main]
//! ClientGet and ClientPut with arbitrary settings, fed server answers,
//! strangers and clock ticks: the same invariants as server_session.
//! The body and its invariants: `tftplab_sim::harness::fuzz::client_session`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tftplab_sim::harness::fuzz::client_session(data));
