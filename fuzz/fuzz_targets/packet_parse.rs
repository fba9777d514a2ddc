#![no_main]
//! Any bytes: parsing never panics, and whatever parses emits and parses
//! back to the same packet.
//! The body and its invariants: `tftplab_sim::harness::fuzz::packet_parse`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tftplab_sim::harness::fuzz::packet_parse(data));
