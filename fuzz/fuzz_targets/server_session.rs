#![no_main]
//! ServerRead and ServerWrite from an arbitrary request, fed datagrams from
//! the client and strangers, and clock ticks: no panic, valid output, no
//! amplification, bounded shutdown, size limit kept.
//! The body and its invariants: `tftplab_sim::harness::fuzz::server_session`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tftplab_sim::harness::fuzz::server_session(data));
