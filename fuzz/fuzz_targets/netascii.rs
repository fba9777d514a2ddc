#![no_main]
//! netascii: decode(encode(x)) == x at any block edges, decoding anything
//! never panics, the positional source re-reads agree.
//! The body and its invariants: `tftplab_sim::harness::fuzz::netascii`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tftplab_sim::harness::fuzz::netascii(data));
