//! Jumpstarter's TFTP example as a hardware check: with the board's link
//! up, start the server, upload `test.bin` through the store, check it is
//! listed (and that uploading the same bytes again is skipped), have the
//! board fetch it while it is served, delete it, and check it is gone.
//!
//! [`store_check_on_board`] is what `tftplab-hw store-check` runs: the
//! board is power-cycled and driven over its console
//! ([`crate::boards::StoreCheck`]: U-Boot's `tftpboot` and `crc32` by
//! default), and the fetch counts only when the server's own record shows
//! `test.bin` sent whole to the board's address *and* the console shows
//! the board's count and checksum of what it loaded.

use crate::boards::{Board, StoreCheck};
use crate::console::ConsoleTap;
use crate::link::RawLink;
use crate::pcap::PcapWriter;
use crate::runner::{crc32, power, power_cycle, sha256_hex};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tftplab::options::Direction;
use tftplab::runtime::{serve, ServerEvent, ServerOptions};
use tftplab::store::{Store, StoreConfig};
use tftplab_sim::lab::trace::Trace;
use tftplab_sim::lab::FaultPlan;
use tokio::sync::broadcast;

/// The uploaded name, as in Jumpstarter's example.
pub const NAME: &str = "test.bin";

/// What the board sees while `test.bin` is served.
pub struct Served {
    /// The server's address.
    pub addr: SocketAddr,
    /// The server's events, subscribed before the board is told anything.
    pub events: broadcast::Receiver<ServerEvent>,
}

/// Runs the example on `board`. `while_served` runs while `test.bin` is
/// listed (a stand-in board fetches it there); what it returns goes into
/// the report. `pcap`, when given, records every frame on the link.
/// Returns a one-line report, or what went wrong.
pub async fn store_check<F, Fut>(
    board: &Board,
    data: &[u8],
    pcap: Option<PcapWriter>,
    while_served: F,
) -> Result<String, String>
where
    F: FnOnce(Served) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let root = tempfile::tempdir().map_err(|e| format!("temporary root: {e}"))?;
    let (link, handle) =
        RawLink::open(board.link_config(FaultPlan::default(), 0, pcap, Trace::new()))
            .map_err(|e| format!("board {}: {e}", board.name))?;
    let store =
        Arc::new(Store::new(StoreConfig::new(root.path())).map_err(|e| format!("store: {e}"))?);
    let options = ServerOptions {
        bind: SocketAddr::from((board.server_ip, 69)),
        ..ServerOptions::default()
    };
    let server = serve(link, store.clone(), options)
        .await
        .map_err(|e| format!("serving on {}: {e}", board.server_ip))?;
    let checked = async {
        let put = store
            .put_bytes(NAME, data)
            .map_err(|e| format!("upload {NAME}: {e}"))?;
        let want = sha256_hex(data);
        if put.sha256_hex() != want || put.size != data.len() as u64 || !put.created {
            return Err(format!("upload {NAME}: the store reports {put:?}"));
        }
        let listed = store.list().map_err(|e| format!("list: {e}"))?;
        if !listed
            .iter()
            .any(|e| e.name == NAME && e.size == data.len() as u64)
        {
            return Err(format!("{NAME} is not listed after the upload"));
        }
        if store.sha256(NAME).map_err(|e| format!("sha256: {e}"))? != want {
            return Err(format!(
                "{NAME}'s SHA-256 in the store differs from the upload's"
            ));
        }
        let again = store
            .put_bytes(NAME, data)
            .map_err(|e| format!("second upload: {e}"))?;
        if !again.skipped_identical {
            return Err(format!("uploading the same {NAME} again was not skipped"));
        }
        let note = while_served(Served {
            addr: server.local_addr(),
            events: server.subscribe(),
        })
        .await?;
        store
            .delete(NAME)
            .map_err(|e| format!("delete {NAME}: {e}"))?;
        let listed = store.list().map_err(|e| format!("list: {e}"))?;
        if listed.iter().any(|e| e.name == NAME) || store.exists(NAME) {
            return Err(format!("{NAME} is still there after the delete"));
        }
        let note = if note.is_empty() {
            String::new()
        } else {
            format!(", {note}")
        };
        Ok(format!(
            "{NAME} ({} bytes, sha256 {}) uploaded, listed, served at {}{note}, deleted, gone",
            data.len(),
            &want[..16],
            server.local_addr()
        ))
    }
    .await;
    server.stop(Duration::from_secs(1)).await;
    handle.close();
    checked
}

/// How `board` is made to fetch `test.bin`, or one line saying why it
/// cannot be (checked before any board is touched).
pub fn fetch_plan(board: &Board) -> Result<&StoreCheck, String> {
    let Some(plan) = board.store_check.as_ref() else {
        return Err(format!(
            "board {}: store-check cannot make a {} board fetch {NAME} (it fetches only its own boot files); \
             give it [boards.store_check] with a `prompt` and a `fetch` command, or check a U-Boot board",
            board.name,
            board.profile.name()
        ));
    };
    if board.console.is_none() {
        return Err(format!(
            "board {}: store-check types the fetch command on the board's console, and the board has no [boards.console]",
            board.name
        ));
    }
    Ok(plan)
}

/// Where [`store_check_on_board`] leaves the console log and the pcap.
pub fn outputs(board: &Board, out_dir: &Path) -> (PathBuf, PathBuf) {
    let stem: String = format!("{}-store-check", board.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        out_dir.join(format!("{stem}.console.log")),
        out_dir.join(format!("{stem}.pcap")),
    )
}

/// `tftplab-hw store-check` on one board: the example, with the board
/// power-cycled and made to fetch `test.bin` over its console while it is
/// served. Console log and pcap go to `out_dir` ([`outputs`]).
pub async fn store_check_on_board(
    board: &Board,
    data: &[u8],
    out_dir: &Path,
) -> Result<String, String> {
    fetch_plan(board)?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let (log, pcap) = outputs(board, out_dir);
    let pcap = PcapWriter::create(&pcap).map_err(|e| format!("pcap: {e}"))?;
    store_check(board, data, Some(pcap), |served| {
        board_fetch(board, data, &log, out_dir, served)
    })
    .await
}

/// Fills `{file}`, `{server_ip}`, `{board_ip}`, `{size}`, `{crc32}` and
/// `{sha256}`; other braces (U-Boot's `${filesize}`) stay as they are.
fn fill(text: &str, board: &Board, data: &[u8]) -> String {
    text.replace("{file}", NAME)
        .replace("{server_ip}", &board.server_ip.to_string())
        .replace("{board_ip}", &board.board_ip.to_string())
        .replace("{size}", &data.len().to_string())
        .replace("{crc32}", &format!("{:08x}", crc32(data)))
        .replace("{sha256}", &sha256_hex(data))
}

/// The server's record of the board fetching `test.bin`: `Ok(bytes)` for
/// a finished read to the board's address, `Err(why)` for a failed one.
fn board_transfer(board: &Board, event: &ServerEvent) -> Option<Result<u64, String>> {
    match event {
        ServerEvent::Finished {
            peer,
            filename,
            direction: Direction::Read,
            result,
            ..
        } if filename.trim_start_matches('/') == NAME && peer.ip() == board.board_ip => {
            Some(match result {
                Ok(s) => Ok(s.bytes),
                Err(e) => Err(e.to_string()),
            })
        }
        _ => None,
    }
}

fn describe(event: &ServerEvent) -> Option<String> {
    match event {
        ServerEvent::Refused {
            peer,
            filename,
            code,
            message,
        } => Some(format!(
            "{} from {} refused with ERROR {} ({message})",
            filename.as_deref().unwrap_or("a request"),
            peer.ip(),
            code.0
        )),
        ServerEvent::Finished {
            peer,
            filename,
            result,
            ..
        } => Some(match result {
            Ok(s) => format!("{filename} to {} ({} bytes)", peer.ip(), s.bytes),
            Err(e) => format!("{filename} to {} ({e})", peer.ip()),
        }),
        ServerEvent::Started { .. } => None,
    }
}

/// The last lines the board printed, without prompts or blanks, for a
/// failure message.
fn last_lines(text: &str, prompt: &str) -> String {
    let prompt = prompt.trim();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != prompt)
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Power-cycles the board, types the setup and the fetch on its console,
/// and waits until the server has sent `test.bin` to the board's address
/// in full and the console shows every success text after the fetch; or
/// until the fetch command returns to the prompt without that, the
/// failure marker appears, or the console times out.
async fn board_fetch(
    board: &Board,
    data: &[u8],
    log: &Path,
    run_dir: &Path,
    mut served: Served,
) -> Result<String, String> {
    let plan = fetch_plan(board)?;
    let console = board.console.as_ref().ok_or("no console")?;
    let mut script: Vec<(String, String)> = plan
        .setup
        .iter()
        .map(|s| (fill(&s.expect, board, data), fill(&s.send, board, data)))
        .collect();
    script.push((
        plan.prompt.clone(),
        format!("{}\n", fill(&plan.fetch, board, data)),
    ));
    let success: Vec<String> = plan.success.iter().map(|s| fill(s, board, data)).collect();
    let started = Instant::now();
    let deadline = started + console.timeout;
    let mut tap = ConsoleTap::open(console, log, deadline).map_err(|e| format!("console: {e}"))?;
    let tag = Path::new("store-check");
    power_cycle(board, tag, run_dir).await?;

    let mut seen: Vec<ServerEvent> = Vec::new();
    // Console offset and time when the fetch was typed; when the prompt
    // came back after it.
    let mut fetch_typed: Option<(usize, Instant)> = None;
    let mut prompt_back: Option<Instant> = None;
    let outcome: Result<String, String> = loop {
        if let Err(e) = tap.advance(&script) {
            break Err(format!("console {}: {e}", console.device));
        }
        if let Some(e) = tap.error() {
            break Err(e);
        }
        let text = tap.text();
        if fetch_typed.is_none() && tap.script_done(script.len()) {
            fetch_typed = Some((text.len(), Instant::now()));
        }
        if let Some(f) = console.failure.as_deref().filter(|f| text.contains(f)) {
            break Err(format!(
                "the console showed the failure marker {f:?}: {}",
                last_lines(&text, &plan.prompt)
            ));
        }
        let transfer = seen.iter().find_map(|e| board_transfer(board, e));
        if let Some((at, typed)) = fetch_typed {
            let after = text.get(at..).unwrap_or("");
            let shown = success.iter().all(|s| after.contains(s.as_str()));
            if shown && matches!(transfer, Some(Ok(n)) if n == data.len() as u64) {
                break Ok(format!(
                    "fetched by the board ({} bytes to {}{}) in {:.1}s",
                    data.len(),
                    board.board_ip,
                    if success.is_empty() {
                        String::new()
                    } else {
                        format!(", the console showed {success:?}")
                    },
                    typed.elapsed().as_secs_f64()
                ));
            }
            // The fetch command has ended; give the server's last event a
            // moment, then judge.
            if prompt_back.is_none() && after.contains(plan.prompt.as_str()) {
                prompt_back = Some(Instant::now());
            }
            if prompt_back.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
                break Err(fetch_failure(
                    board, data, &seen, transfer, &success, after, plan, true,
                ));
            }
        }
        if Instant::now() >= deadline {
            let Some((at, _)) = fetch_typed else {
                let step = script
                    .iter()
                    .map(|(expect, _)| expect)
                    .find(|e| !text.contains(e.as_str()))
                    .map_or_else(String::new, |e| format!(" ({e:?} did not appear)"));
                break Err(format!(
                    "the board never got to the fetch within {:.0}s{step}; it last printed: {}",
                    console.timeout.as_secs_f64(),
                    last_lines(&text, &plan.prompt)
                ));
            };
            let after = text.get(at..).unwrap_or("");
            break Err(fetch_failure(
                board, data, &seen, transfer, &success, after, plan, false,
            ));
        }
        match tokio::time::timeout(Duration::from_millis(50), served.events.recv()).await {
            Ok(Ok(e)) => seen.push(e),
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                break Err(format!(
                    "{n} server events were lost (the runner fell behind)"
                ))
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                break Err("the server stopped during the fetch".into())
            }
            Err(_) => {}
        }
    };
    let off = match &board.power.off {
        Some(off) => power(board, "off", off, tag, run_dir).await.err(),
        None => None,
    };
    tap.close();
    match (outcome, off) {
        (Err(e), _) => Err(format!("{e} (console log: {})", log.display())),
        (Ok(_), Some(e)) => Err(e),
        (Ok(note), None) => Ok(note),
    }
}

/// One line on why the fetch does not count.
#[allow(clippy::too_many_arguments)]
fn fetch_failure(
    board: &Board,
    data: &[u8],
    seen: &[ServerEvent],
    transfer: Option<Result<u64, String>>,
    success: &[String],
    after: &str,
    plan: &StoreCheck,
    returned: bool,
) -> String {
    let when = if returned {
        "the fetch command returned to the prompt"
    } else {
        "the console timed out"
    };
    let console = last_lines(after, &plan.prompt);
    let server = match transfer {
        None => {
            let others: Vec<String> = seen.iter().filter_map(describe).collect();
            format!(
                "the server never sent {NAME} to the board ({}){}",
                board.board_ip,
                if others.is_empty() {
                    "; it saw no request at all".to_string()
                } else {
                    format!("; it saw: {}", others.join(", "))
                }
            )
        }
        Some(Err(e)) => format!("the server's transfer of {NAME} to the board failed: {e}"),
        Some(Ok(n)) if n != data.len() as u64 => format!(
            "the server sent {n} bytes of {NAME} to the board, not {}",
            data.len()
        ),
        Some(Ok(_)) => {
            let missing: Vec<&String> = success
                .iter()
                .filter(|s| !after.contains(s.as_str()))
                .collect();
            format!(
                "the server sent {NAME} whole ({} bytes) but the console did not show {missing:?}: \
                 the board did not load it intact",
                data.len()
            )
        }
    };
    format!("{when} and {server}; the board printed: {console}")
}
