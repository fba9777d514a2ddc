//! Client profiles: the boards' firmware, run over any [`Network`]. Each
//! firmware profile drives that firmware's own client machine
//! ([`super::firmware`]); `custom` drives tftplab's client with exactly the
//! options given. In the simulator a profile stands in for the board; on
//! hardware the board itself does this part.

use super::firmware::ipxe::{IpxeGet, Settings as IpxeSettings};
use super::firmware::rpi4::{Rpi4Get, Rpi4Probe, Rpi4Settings};
use super::firmware::tftp_hpa::{TftpHpaGet, TftpHpaPut, TftpHpaSettings};
use super::firmware::uboot::{UBootGet, UBootSettings};
use super::firmware::uefi::{Settings as UefiSettings, UefiPxeGet, UefiPxeProbe};
use super::scenario::{Action, ActionKind, ClientSpec, FileContent, Profile};
use std::net::SocketAddr;
use std::time::Duration;
use tftplab::data::{MemSource, SharedSink};
use tftplab::options::OptionRequest;
use tftplab::proto::{ClientConfig, ClientGet, ClientPut, Event, Summary, Transfer, TransferError};
use tftplab::runtime::{bind_any, drive_to_outcome, now, Control, DatagramSocket, Network};
use tftplab::wire::{ErrorCode, Mode};

/// How an action ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A download completed with these bytes (compared later), or an upload
    /// completed.
    Done { bytes: Vec<u8> },
    /// An rpi4-style probe got its OACK and block 1, then terminated.
    Probed,
    /// The server sent this ERROR.
    ServerError(u16, String),
    /// No answer within the retries.
    TimedOut,
    /// This side gave up for another reason.
    Local(u16, String),
}

/// One action's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    pub client: String,
    pub index: usize,
    pub action: Action,
    pub got: Got,
    /// Time since the run started when the action ended.
    pub ended_at: Duration,
}

/// What tftplab's own client asks for in a profile's place: a `custom`
/// client's downloads, and uploads from firmware this lab has no upload
/// machine for (U-Boot's `tftpput`, which no shipped scenario uses).
fn get_options(spec: &ClientSpec) -> OptionRequest {
    let o = spec.options;
    match spec.profile {
        Profile::Rpi4Bootloader => OptionRequest {
            tsize: Some(0),
            blksize: Some(1024),
            ..OptionRequest::default()
        },
        Profile::UBoot => OptionRequest {
            timeout: Some(5),
            blksize: Some(o.blksize.unwrap_or(1468)),
            windowsize: o.windowsize.filter(|&w| w > 1),
            ..OptionRequest::default()
        },
        Profile::UefiPxe => OptionRequest {
            blksize: Some(o.blksize.unwrap_or(1468)),
            ..OptionRequest::default()
        },
        Profile::Ipxe => OptionRequest {
            blksize: Some(o.blksize.unwrap_or(1432)),
            tsize: Some(0),
            ..OptionRequest::default()
        },
        Profile::Legacy => OptionRequest::default(),
        Profile::Custom => OptionRequest {
            blksize: o.blksize,
            windowsize: o.windowsize,
            timeout: o.timeout,
            tsize: o.tsize.then_some(0),
        },
    }
}

fn config(spec: &ClientSpec, options: OptionRequest) -> ClientConfig {
    ClientConfig {
        mode: if spec.options.netascii {
            Mode::Netascii
        } else {
            Mode::Octet
        },
        options,
        timeout: spec.retry_every,
        // Firmware resends on a fixed period; the lab's own client adapts.
        min_rto: match spec.profile {
            Profile::Custom => tftplab::proto::DEFAULT_MIN_RTO,
            _ => spec.retry_every,
        },
        retries: spec.retries,
        max_size: None,
    }
}

/// Runs every action of one client in order and reports each. `clock`
/// tells the time for the results; `sleeping` hears of every sleep before
/// it starts (a simulator that skips idle time must wake up for it).
pub async fn run_client<N: Network>(
    net: &N,
    server: SocketAddr,
    spec: &ClientSpec,
    clock: &dyn Fn() -> Duration,
    sleeping: &dyn Fn(Duration),
) -> Vec<ActionResult> {
    sleeping(spec.start);
    tokio::time::sleep(spec.start).await;
    let mut results = Vec::new();
    for (index, action) in spec.actions.iter().enumerate() {
        let got = match &action.kind {
            ActionKind::Sleep(d) => {
                sleeping(*d);
                tokio::time::sleep(*d).await;
                continue;
            }
            ActionKind::Get { name, probe } => get(net, server, spec, name, *probe).await,
            ActionKind::Put { name, content } => put(net, server, spec, name, content).await,
        };
        results.push(ActionResult {
            client: spec.name.clone(),
            index,
            action: action.clone(),
            got,
            ended_at: clock(),
        });
    }
    results
}

/// When to cut a download short, as probing firmware does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    Never,
    /// ERROR 0 "Early terminate" once block 1 is in (a `custom` client
    /// asked to probe like an rpi4).
    AfterBlock1,
}

async fn get<N: Network>(
    net: &N,
    server: SocketAddr,
    spec: &ClientSpec,
    name: &str,
    probe: bool,
) -> Got {
    let sink = SharedSink::new();
    match spec.profile {
        Profile::UBoot => {
            let settings = uboot_settings(spec);
            let got = firmware(net, server, |now| {
                UBootGet::new(now, server, name, sink.clone(), &settings)
            });
            finish(got.await, &sink)
        }
        Profile::Ipxe => {
            let settings = ipxe_settings(spec);
            let got = firmware(net, server, |now| {
                IpxeGet::new(now, server, name, sink.clone(), &settings)
            });
            finish(got.await, &sink)
        }
        Profile::Legacy => {
            let settings = tftp_hpa_settings(spec);
            let got = firmware(net, server, |now| {
                TftpHpaGet::new(now, server, name, sink.clone(), &settings)
            });
            finish(got.await, &sink)
        }
        Profile::Rpi4Bootloader => {
            let settings = rpi4_settings(spec);
            if probe {
                let got = firmware(net, server, |now| {
                    Rpi4Probe::new(now, server, name, &settings)
                });
                return match got.await {
                    Err(TransferError::Local { code, message })
                        if code == ErrorCode::UNDEFINED && message == "Early terminate" =>
                    {
                        Got::Probed
                    }
                    other => outcome(other.map(drop), Vec::new()),
                };
            }
            let got = firmware(net, server, |now| {
                Rpi4Get::new(now, server, name, sink.clone(), &settings)
            });
            finish(got.await, &sink)
        }
        Profile::UefiPxe => {
            // PxeBcTftpGetFileSize, then PxeBcTftpReadFile into a buffer of
            // that size, each from its own port.
            let settings = uefi_settings(spec);
            let probed = firmware(net, server, |now| {
                UefiPxeProbe::new(now, server, name, &settings)
            });
            let size = match probed.await {
                Ok(summary) => summary.negotiated.tsize,
                Err(e) => return outcome(Err(e), Vec::new()),
            };
            let got = firmware(net, server, |now| {
                let read = UefiPxeGet::new(now, server, name, sink.clone(), &settings);
                match size {
                    Some(size) => read.with_buffer_size(size),
                    None => read,
                }
            });
            finish(got.await, &sink)
        }
        Profile::Custom => {
            let cut = if probe { Cut::AfterBlock1 } else { Cut::Never };
            download(net, server, spec, name, cut).await
        }
    }
}

/// Runs one firmware machine from a fresh port to its outcome.
async fn firmware<N: Network, M: Transfer + Send + 'static>(
    net: &N,
    server: SocketAddr,
    make: impl FnOnce(std::time::Instant) -> M,
) -> Result<Summary, TransferError> {
    let socket = match bind_any(net, server).await {
        Ok(s) => s,
        Err(e) => {
            return Err(TransferError::Local {
                code: ErrorCode::UNDEFINED,
                message: format!("bind: {e}"),
            })
        }
    };
    let machine = make(now());
    let result = drive_to_outcome(
        machine,
        socket,
        |_| Control::Continue,
        |_| Control::Continue,
    );
    result
        .await
        .unwrap_or(Err(TransferError::TimedOut { retries: 0 }))
}

fn finish(result: Result<Summary, TransferError>, sink: &SharedSink) -> Got {
    outcome(result.map(drop), sink.take())
}

/// U-Boot's environment from the scenario: `tftptimeout` is the client's
/// `retry_every`, `tftptimeoutcountmax` its `retries`, `tftpblocksize` and
/// `tftpwindowsize` its options.
fn uboot_settings(spec: &ClientSpec) -> UBootSettings {
    let o = spec.options;
    UBootSettings {
        timeout_ms: u64::try_from(spec.retry_every.as_millis()).unwrap_or(u64::MAX),
        timeout_count_max: spec.retries,
        blksize: o.blksize.unwrap_or(UBootSettings::default().blksize),
        windowsize: o.windowsize.unwrap_or(1),
        tsize: o.tsize,
        ..UBootSettings::default()
    }
}

/// EDK2's PXE defaults, with the scenario's timer and options.
fn uefi_settings(spec: &ClientSpec) -> UefiSettings {
    let o = spec.options;
    let defaults = UefiSettings::default();
    UefiSettings {
        blksize: o.blksize.or(defaults.blksize),
        windowsize: o.windowsize.unwrap_or(defaults.windowsize),
        timeout_secs: u8::try_from(spec.retry_every.as_secs().max(1)).unwrap_or(u8::MAX),
        try_count: spec.retries + 1,
        ..defaults
    }
}

fn ipxe_settings(spec: &ClientSpec) -> IpxeSettings {
    let defaults = IpxeSettings::default();
    IpxeSettings {
        blksize: spec.options.blksize.unwrap_or(defaults.blksize),
        ..defaults
    }
}

/// The bootloader resends every `retry_every` and gives a file
/// `retry_every * retries` in all (its `TFTP_FILE_TIMEOUT`).
fn rpi4_settings(spec: &ClientSpec) -> Rpi4Settings {
    Rpi4Settings {
        resend_every: spec.retry_every,
        file_timeout: spec.retry_every * spec.retries.max(1),
        blksize: Some(spec.options.blksize.unwrap_or(1024)),
        ..Rpi4Settings::default()
    }
}

/// tftp-hpa's `rexmt` is the scenario's `retry_every`, its total timeout
/// `retry_every * retries`.
fn tftp_hpa_settings(spec: &ClientSpec) -> TftpHpaSettings {
    TftpHpaSettings {
        mode: if spec.options.netascii {
            Mode::Netascii
        } else {
            Mode::Octet
        },
        rexmt: spec.retry_every,
        max_timeout: spec.retry_every * spec.retries.max(1),
    }
}

async fn download<N: Network>(
    net: &N,
    server: SocketAddr,
    spec: &ClientSpec,
    name: &str,
    cut: Cut,
) -> Got {
    let options = get_options(spec);
    let socket = match bind_any(net, server).await {
        Ok(s) => s,
        Err(e) => return Got::Local(0, format!("bind: {e}")),
    };
    let sink = SharedSink::new();
    let machine = match ClientGet::new(now(), server, name, sink.clone(), &config(spec, options)) {
        Ok(m) => m,
        Err(e) => return outcome(Err(e), Vec::new()),
    };
    let result = run(
        machine,
        socket,
        |_: &Event| Control::Continue,
        cut == Cut::AfterBlock1,
    )
    .await;
    let bytes = sink.take();
    match result {
        RunEnd::Probed => Got::Probed,
        RunEnd::Finished(r) => outcome(r, bytes),
    }
}

async fn put<N: Network>(
    net: &N,
    server: SocketAddr,
    spec: &ClientSpec,
    name: &str,
    content: &FileContent,
) -> Got {
    let Some(data) = content.bytes() else {
        return Got::Local(0, "put content must be inline or generated".into());
    };
    if spec.profile == Profile::Legacy {
        let settings = tftp_hpa_settings(spec);
        let source = MemSource::new(data.clone());
        let got = firmware(net, server, |now| {
            TftpHpaPut::new(now, server, name, source, &settings)
        });
        return outcome(got.await.map(drop), data);
    }
    let socket = match bind_any(net, server).await {
        Ok(s) => s,
        Err(e) => return Got::Local(0, format!("bind: {e}")),
    };
    let mut options = get_options(spec);
    options.tsize = spec.options.tsize.then_some(0);
    let machine = match ClientPut::new(
        now(),
        server,
        name,
        MemSource::new(data.clone()),
        &config(spec, options),
    ) {
        Ok(m) => m,
        Err(e) => return outcome(Err(e), Vec::new()),
    };
    match run(machine, socket, |_: &Event| Control::Continue, false).await {
        RunEnd::Finished(r) => outcome(r, data),
        RunEnd::Probed => Got::Probed,
    }
}

fn outcome(r: Result<(), TransferError>, bytes: Vec<u8>) -> Got {
    match r {
        Ok(()) => Got::Done { bytes },
        Err(TransferError::Peer { code, message }) => Got::ServerError(code.0, message),
        // A put whose final ACK never came may have landed: the judge
        // counts it as a maybe, like any other timeout.
        Err(TransferError::TimedOut { .. } | TransferError::Unconfirmed { .. }) => Got::TimedOut,
        Err(TransferError::Local { code, message }) => Got::Local(code.0, message),
    }
}

enum RunEnd {
    Finished(Result<(), TransferError>),
    /// Terminated on purpose after block 1.
    Probed,
}

/// Drives one client machine to its outcome; an rpi4-style probe is cut
/// with ERROR 0 "Early terminate" once block 1 is in.
async fn run<T, S>(
    machine: T,
    socket: S,
    on_event: impl FnMut(&Event) -> Control,
    cut_after_block1: bool,
) -> RunEnd
where
    T: Transfer + Send + 'static,
    S: DatagramSocket,
{
    let mut cut = false;
    let progress = |bytes: u64| {
        if cut_after_block1 && bytes > 0 && !cut {
            cut = true;
            return Control::Abort(ErrorCode::UNDEFINED, "Early terminate");
        }
        Control::Continue
    };
    let result = drive_to_outcome(machine, socket, on_event, progress).await;
    if cut {
        return RunEnd::Probed;
    }
    RunEnd::Finished(
        result.map_or(Err(TransferError::TimedOut { retries: 0 }), |r| {
            r.map(|_| ())
        }),
    )
}
