//! The lab: scenarios, fault plans, client profiles, traces and the checks
//! that judge a run. Written once and executed by two drivers: the
//! simulator (`tftplab-sim`, turmoil) and the hardware runner (`tftplab-hw`).

pub mod check;
pub mod content;
pub mod faults;
pub mod firmware;
pub mod net;
pub mod pcap;
pub mod profile;
pub mod scenario;
pub mod setup;
pub mod trace;

pub use faults::{FaultPlan, Injector, LinkFaults};
pub use scenario::{Outcome, Profile, Scenario, ScenarioError};
pub use trace::{Trace, TraceEvent};
