//! What both drivers of the lab (the simulator and the hardware runner) do
//! the same way before and around a run: the server's files and options
//! from a scenario, the seeds of each host's fault injector, and how a
//! fault's fate shows in the trace.

use super::faults::{Cause, Fate};
use super::scenario::{Scenario, WriteSpec};
use super::trace::TraceFate;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tftplab::options::Limits;
use tftplab::proto::ServerConfig;
use tftplab::runtime::ServerOptions;
use tftplab::store::{StoreConfig, WritePolicy};

/// A seed for one host's injector: the run's seed with the host's name
/// folded in (FNV-1a), stable across platforms, so each host draws its own
/// faults and adding a host does not shift another's.
pub fn mix(seed: u64, salt: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in salt.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x1000_0000_01b3);
    }
    h
}

/// The server a scenario asks for: its store over `root` and its options,
/// listening on `bind`. A driver with limits of its own (a raw link's frame
/// size) narrows them afterwards.
pub fn server_setup(
    scenario: &Scenario,
    root: &Path,
    bind: SocketAddr,
) -> (StoreConfig, ServerOptions) {
    let s = &scenario.server;
    let write = match s.write {
        WriteSpec::Off => WritePolicy::Off,
        WriteSpec::Create => WritePolicy::Create,
        WriteSpec::Overwrite => WritePolicy::Overwrite,
    };
    let store = StoreConfig::new(root)
        .write(write)
        .max_upload(s.max_upload)
        .create_dirs(s.create_dirs);
    let options = ServerOptions {
        bind,
        transfer: ServerConfig {
            timeout: s.timeout,
            min_rto: s.min_rto,
            retries: s.retries,
            limits: Limits {
                max_blksize: s.max_blksize,
                max_windowsize: s.max_windowsize,
                // max_upload is the store's; serve() applies it to requests.
                ..Limits::default()
            },
        },
        max_transfers: s.max_transfers,
        port_range: None,
        ..ServerOptions::default()
    };
    (store, options)
}

/// How a trace names a drop's cause.
pub fn cause_name(c: Cause) -> &'static str {
    match c {
        Cause::Loss => "loss",
        Cause::Burst => "burst loss",
        Cause::Corrupted => "corrupted, bad checksum",
        Cause::Truncated => "truncated, bad length",
        Cause::Scripted => "scripted",
        Cause::Outage => "outage",
    }
}

/// How the trace shows a datagram the injector gave `fate`.
pub fn trace_fate(fate: &Fate) -> TraceFate {
    match fate {
        Fate::Dropped(cause) => TraceFate::Dropped {
            cause: cause_name(*cause).into(),
        },
        Fate::Deliver { delays, .. } if delays.len() > 1 => TraceFate::Duplicated {
            copies: delays.len(),
        },
        Fate::Deliver {
            delays,
            held_back: true,
        } => TraceFate::Delayed {
            by_us: delays.first().map_or(0, |d| d.as_micros() as u64),
        },
        Fate::Deliver { .. } => TraceFate::Delivered,
    }
}

/// A fate that delivers one copy at once (the injector's answer when it
/// cannot be asked).
pub fn deliver_now() -> Fate {
    Fate::Deliver {
        delays: vec![Duration::ZERO],
        held_back: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_stable_and_separates_hosts() {
        // The seeds every recorded trace was drawn with: must never change.
        assert_eq!(mix(0, ""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(mix(1, "server"), mix(1, "board"));
        assert_ne!(mix(1, "server"), mix(2, "server"));
    }

    #[test]
    fn fates_show_in_the_trace() {
        let ms = Duration::from_millis;
        assert_eq!(
            trace_fate(&Fate::Dropped(Cause::Burst)),
            TraceFate::Dropped {
                cause: "burst loss".into()
            }
        );
        assert_eq!(trace_fate(&deliver_now()), TraceFate::Delivered);
        let twice = Fate::Deliver {
            delays: vec![ms(0), ms(3)],
            held_back: false,
        };
        assert_eq!(trace_fate(&twice), TraceFate::Duplicated { copies: 2 });
        let late = Fate::Deliver {
            delays: vec![ms(40)],
            held_back: true,
        };
        assert_eq!(trace_fate(&late), TraceFate::Delayed { by_us: 40_000 });
    }
}
