//! Client profiles: real clients' habits, reproduced with the real client
//! machines over any [`Network`]. In the simulator a profile stands in for
//! the board; on hardware the board itself does this part.

use super::firmware::ipxe::{IpxeGet, Settings as IpxeSettings};
use super::scenario::{Action, ActionKind, ClientSpec, FileContent, Profile};
use std::net::SocketAddr;
use std::time::Duration;
use tftplab::data::{MemSource, SharedSink};
use tftplab::options::OptionRequest;
use tftplab::proto::{ClientConfig, ClientGet, ClientPut, Event, Transfer, TransferError};
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

/// What a profile asks for on a real download.
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
    /// UEFI: answer the OACK with ERROR 8.
    AfterOack,
    /// rpi4: ERROR 0 "Early terminate" once block 1 is in.
    AfterBlock1,
}

async fn get<N: Network>(
    net: &N,
    server: SocketAddr,
    spec: &ClientSpec,
    name: &str,
    probe: bool,
) -> Got {
    if spec.profile == Profile::Ipxe {
        return ipxe(net, server, spec, name).await;
    }
    let options = get_options(spec);
    if spec.profile == Profile::UefiPxe {
        let probe_options = OptionRequest {
            tsize: Some(0),
            ..options
        };
        match download(net, server, spec, name, probe_options, Cut::AfterOack).await {
            Got::Probed => {}
            other => return other,
        }
    }
    let cut = if probe { Cut::AfterBlock1 } else { Cut::Never };
    download(net, server, spec, name, options, cut).await
}

/// iPXE runs its own machine ([`super::firmware::ipxe`]). The other
/// firmware machines in [`super::firmware`] are not wired in yet: with them
/// the shipped scenarios find what the server must still learn (U-Boot
/// NACKing blocks a rewind resent) and what the lab must settle (bursts
/// counted per datagram starve U-Boot's lone ACK; the rpi4's 30 s per file
/// at a 1 ms tick; EDK2's probe of an empty file, whose OACK has no tsize),
/// so those profiles still run tftplab's client with the firmware's options
/// and timers.
async fn ipxe<N: Network>(net: &N, server: SocketAddr, spec: &ClientSpec, name: &str) -> Got {
    let socket = match bind_any(net, server).await {
        Ok(s) => s,
        Err(e) => return Got::Local(0, format!("bind: {e}")),
    };
    let settings = IpxeSettings {
        blksize: spec
            .options
            .blksize
            .unwrap_or(IpxeSettings::default().blksize),
        ..IpxeSettings::default()
    };
    let sink = SharedSink::new();
    let machine = IpxeGet::new(now(), server, name, sink.clone(), &settings);
    let result = drive_to_outcome(
        machine,
        socket,
        |_| Control::Continue,
        |_| Control::Continue,
    )
    .await
    .unwrap_or(Err(TransferError::TimedOut { retries: 0 }));
    outcome(result.map(drop), sink.take())
}

async fn download<N: Network>(
    net: &N,
    server: SocketAddr,
    spec: &ClientSpec,
    name: &str,
    options: OptionRequest,
    cut: Cut,
) -> Got {
    let socket = match bind_any(net, server).await {
        Ok(s) => s,
        Err(e) => return Got::Local(0, format!("bind: {e}")),
    };
    let sink = SharedSink::new();
    let machine = match ClientGet::new(now(), server, name, sink.clone(), &config(spec, options)) {
        Ok(m) => m,
        Err(e) => return outcome(Err(e), Vec::new()),
    };
    let mut probed = false;
    let on_event = |event: &Event| -> Control {
        match (event, cut) {
            (Event::Negotiated(_), Cut::AfterOack) => {
                probed = true;
                Control::Abort(ErrorCode::OPTION_NEGOTIATION, "tsize probe")
            }
            _ => Control::Continue,
        }
    };
    let result = run(machine, socket, on_event, cut == Cut::AfterBlock1).await;
    let bytes = sink.take();
    match result {
        RunEnd::Probed => Got::Probed,
        RunEnd::Finished(_) if probed => Got::Probed,
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
