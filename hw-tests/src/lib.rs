//! tftplab-hw: runs tftplab scenarios against real boards over a raw link.
//!
//! This crate is filled by the hardware-runner work; for now it only
//! re-exports the core so the workspace layout is in place.

pub use tftplab;
