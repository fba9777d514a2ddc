#![no_main]
//! Arbitrary names against a root with symlinks in and out and a sibling
//! `tftp-private`: nothing resolves outside the canonical root.
//! The body and its invariants: `tftplab_sim::harness::fuzz::path_resolve`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tftplab_sim::harness::fuzz::path_resolve(data));
