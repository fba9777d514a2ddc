//! tftplab-sim: runs tftplab scenarios in a deterministic turmoil world.
//!
//! This crate is filled by the simulation-lab work; for now it only
//! re-exports the core so the workspace layout is in place.

pub use tftplab;
