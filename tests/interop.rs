//! Interop with real TFTP implementations, on loopback (and, for dnsmasq,
//! in a network namespace of our own):
//!
//! 1. our server, in-process, serving the real clients (tftp-hpa, curl,
//!    atftp, busybox): downloads and uploads of 0 bytes, exactly 512 bytes,
//!    1 MiB + 1, and a file whose block numbers roll over (1 MiB at
//!    blksize 8; busybox, which cannot ask for 8, 4 MiB at 64);
//! 2. our client against the real servers (tftpd-hpa, atftpd, dnsmasq),
//!    the same sizes with and without options, including windowsize
//!    against servers that ignore it, and a rollover file each;
//! 3. the errors a client sees, with their exact TFTP codes, both ways;
//! 4. one lost DATA, dropped by nftables in a network namespace of our own:
//!    tftp-hpa uploading to the `tftplab` binary, our binary downloading
//!    from tftpd-hpa.
//!
//! Every file is compared by SHA-256. The peers come from `tests/peers/`,
//! whose docs record how each one behaves; a missing peer skips its test
//! (or fails it under `TFTPLAB_REQUIRE_PEERS=1`, as in CI).

mod peers;

use std::fmt;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use peers::{
    available, client_get, client_put, encode_request, in_netns, make_file, nft_usable,
    raw_request, run_in_netns, run_with_timeout, settled_sha256, sha256_file, skip_or_fail,
    skipped, skipped_without_netns, temp_dir, DropFirstData, Netns, Peer, PeerResult, PeerServer,
    Reply, ServerProcess, CLIENT_TIMEOUT, OP_RRQ, OP_WRQ,
};
use tempfile::TempDir;
use tftplab::options::{Direction, OptionRequest};
use tftplab::proto::{ClientConfig, Summary, TransferError};
use tftplab::runtime::{
    serve, Client, ClientError, ServerEvent, ServerHandle, ServerOptions, TokioNet,
};
use tftplab::store::{Store, StoreConfig, WritePolicy};
use tftplab::wire::ErrorCode;

/// No data at all (the first DATA is empty), exactly one full 512-byte
/// block (an empty block must follow), and many blocks plus one byte.
const SIZES: [u64; 3] = [0, 512, 1024 * 1024 + 1];

/// 1 MiB at blksize 8 is 131072 blocks: the block number wraps 65535 -> 0
/// twice, and the file is an exact multiple of the block size (so an empty
/// block ends it).
const ROLLOVER_SIZE: u64 = 1024 * 1024;
const ROLLOVER_BLKSIZE: u16 = 8;

/// busybox cannot ask for blksize 8: below 24 it says "bad blocksize", and
/// up to about 50 "remote filename is too long" (its request must fit in a
/// buffer of blksize + 4 bytes). At 64, 4 MiB is 65536 blocks, so the last
/// full block is numbered 0 and the empty block after it 1.
const BUSYBOX_ROLLOVER_SIZE: u64 = 4 * 1024 * 1024;
const BUSYBOX_ROLLOVER_BLKSIZE: u16 = 64;

/// How long a raw request waits for an answer.
const RAW_WAIT: Duration = Duration::from_secs(2);

// ------------------------------------------------------------ our server

/// Our server, in-process, on a tokio runtime the test owns, serving a
/// fresh temporary root on 127.0.0.1 with an OS-chosen port. It records
/// every finished transfer so a test can check what was negotiated.
struct OurServer {
    runtime: tokio::runtime::Runtime,
    handle: Option<ServerHandle>,
    finished: Arc<Mutex<Vec<Finished>>>,
    root: TempDir,
}

/// A transfer our server reported as finished.
struct Finished {
    filename: String,
    direction: Direction,
    result: Result<Summary, TransferError>,
}

impl OurServer {
    fn start(policy: WritePolicy) -> OurServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("build a tokio runtime");
        let root = temp_dir();
        let store = Store::new(StoreConfig::new(root.path()).write(policy)).expect("open store");
        let options = ServerOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ServerOptions::default()
        };
        let handle = runtime
            .block_on(serve(TokioNet, Arc::new(store), options))
            .expect("start our server");
        let finished = Arc::new(Mutex::new(Vec::new()));
        let mut events = handle.subscribe();
        let record = Arc::clone(&finished);
        runtime.spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(ServerEvent::Finished {
                        filename,
                        direction,
                        result,
                        ..
                    }) => record.lock().unwrap().push(Finished {
                        filename,
                        direction,
                        result,
                    }),
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        });
        OurServer {
            runtime,
            handle: Some(handle),
            finished,
            root,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.handle.as_ref().expect("running").local_addr()
    }

    /// Where `name` lives in the served root.
    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The outcome of the next finished transfer of `name` in `direction`,
    /// taken off the record. A client may exit a moment before our server
    /// reports (it sends the final ACK, we see it), so this waits up to 5 s.
    #[track_caller]
    fn take_outcome(&self, name: &str, direction: Direction) -> Result<Summary, TransferError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            {
                let mut finished = self.finished.lock().unwrap();
                let at = finished
                    .iter()
                    .position(|f| f.filename == name && f.direction == direction);
                if let Some(at) = at {
                    return finished.remove(at).result;
                }
            }
            assert!(
                Instant::now() < deadline,
                "our server reported no finished {direction:?} of {name:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.runtime
                .block_on(handle.stop(Duration::from_millis(100)));
        }
    }
}

// ------------------------------------------------------------ real clients

/// The options a real client is asked to send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Opts {
    blksize: Option<u16>,
    windowsize: Option<u16>,
}

impl Opts {
    const NONE: Opts = Opts {
        blksize: None,
        windowsize: None,
    };

    fn blksize(n: u16) -> Opts {
        Opts {
            blksize: Some(n),
            windowsize: None,
        }
    }

    fn windowsize(self, n: u16) -> Opts {
        Opts {
            windowsize: Some(n),
            ..self
        }
    }

    /// What a transfer with these options runs at: the blksize and window
    /// asked for (our server grants both in full up to 65464 and 64), or
    /// RFC 1350's 512 and 1. (curl sends `blksize 512` when none is given,
    /// which comes to the same.)
    fn expected(self) -> (u16, u16) {
        (self.blksize.unwrap_or(512), self.windowsize.unwrap_or(1))
    }
}

impl fmt::Display for Opts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "blksize {}, windowsize {}",
            self.blksize.map_or("-".into(), |n| n.to_string()),
            self.windowsize.map_or("-".into(), |n| n.to_string())
        )
    }
}

/// `peer` downloads `name` from our server into `local`. Every peer, curl
/// included, uses its options for an empty file too: our OACK leaves tsize
/// out there (see `our_oack_for_an_empty_file_leaves_tsize_out_so_curl_can_fetch_it`).
fn real_client_gets(
    peer: Peer,
    server: &OurServer,
    name: &str,
    _size: u64,
    local: &Path,
    opts: Opts,
) -> (PeerResult, Opts) {
    let r = client_get(
        peer,
        server.addr(),
        None,
        name,
        local,
        opts.blksize,
        opts.windowsize,
    );
    (r, opts)
}

/// `peer` downloads and uploads files of each of `sizes` with each of
/// `option_sets`, through our server (write policy `create`, so every
/// upload goes to a new name). Checks the SHA-256 of what arrived, on the
/// client's disk or in our root, and that our server ran the transfer at
/// the blksize and window asked for.
fn real_client_round_trips(peer: Peer, sizes: &[u64], option_sets: &[Opts]) {
    skip_or_fail!(available(peer));
    let server = OurServer::start(WritePolicy::Create);
    let local = temp_dir();
    for (seed, &size) in sizes.iter().enumerate() {
        let name = format!("file-{size}");
        let sha = make_file(&server.path(&name), size, seed as u64);
        for (run, &opts) in option_sets.iter().enumerate() {
            let what = format!("{}, {size} bytes, {opts}", peer.name());

            let got = local.path().join(format!("got-{size}-{run}"));
            let (r, ran_with) = real_client_gets(peer, &server, &name, size, &got, opts);
            assert!(r.ok(), "get, {what}:\n{r}");
            assert_eq!(sha256_file(&got), sha, "get, {what}: content differs");
            assert_ran_with(&server, &name, Direction::Read, ran_with, size, &what);

            let remote = format!("up-{size}-{run}");
            let r = client_put(
                peer,
                server.addr(),
                None,
                &server.path(&name),
                &remote,
                opts.blksize,
                opts.windowsize,
            );
            assert!(r.ok(), "put, {what}:\n{r}");
            let uploaded = settled_sha256(&server.path(&remote), &sha);
            assert_eq!(uploaded, sha, "put, {what}: content differs");
            assert_ran_with(&server, &remote, Direction::Write, opts, size, &what);
        }
    }
}

/// Asserts that our server finished the transfer of `name` successfully,
/// moving `size` bytes at the blksize and window `opts` ask for.
#[track_caller]
fn assert_ran_with(
    server: &OurServer,
    name: &str,
    direction: Direction,
    opts: Opts,
    size: u64,
    what: &str,
) {
    let summary = server
        .take_outcome(name, direction)
        .unwrap_or_else(|e| panic!("{direction:?}, {what}: our server says it failed: {e}"));
    let n = summary.negotiated;
    assert_eq!(
        (n.blksize, n.windowsize),
        opts.expected(),
        "{direction:?}, {what}: negotiated blksize and windowsize"
    );
    assert_eq!(summary.bytes, size, "{direction:?}, {what}: bytes moved");
}

#[test]
fn tftp_hpa_gets_and_puts_every_size_from_our_server_without_options() {
    real_client_round_trips(Peer::TftpHpa, &SIZES, &[Opts::NONE]);
}

#[test]
fn curl_gets_and_puts_every_size_from_our_server_with_blksize_1468_and_65464() {
    real_client_round_trips(
        Peer::Curl,
        &SIZES,
        &[Opts::blksize(1468), Opts::blksize(65464)],
    );
}

#[test]
fn atftp_gets_and_puts_every_size_from_our_server_with_blksize_and_windowsize_16() {
    real_client_round_trips(
        Peer::Atftp,
        &SIZES,
        &[Opts::blksize(1468), Opts::blksize(1468).windowsize(16)],
    );
}

#[test]
fn busybox_gets_and_puts_every_size_from_our_server_with_blksize_1468() {
    real_client_round_trips(Peer::Busybox, &SIZES, &[Opts::NONE, Opts::blksize(1468)]);
}

#[test]
fn curl_rolls_block_numbers_over_at_blksize_8() {
    real_client_round_trips(
        Peer::Curl,
        &[ROLLOVER_SIZE],
        &[Opts::blksize(ROLLOVER_BLKSIZE)],
    );
}

#[test]
fn atftp_rolls_block_numbers_over_at_blksize_8_with_windowsize_16() {
    real_client_round_trips(
        Peer::Atftp,
        &[ROLLOVER_SIZE],
        &[Opts::blksize(ROLLOVER_BLKSIZE).windowsize(16)],
    );
}

#[test]
fn busybox_rolls_block_numbers_over_at_blksize_64() {
    real_client_round_trips(
        Peer::Busybox,
        &[BUSYBOX_ROLLOVER_SIZE],
        &[Opts::blksize(BUSYBOX_ROLLOVER_BLKSIZE)],
    );
}

/// With write policy `overwrite`, each real client in turn replaces the
/// same file, and what it sent is what the root then holds.
#[test]
fn real_clients_replace_a_file_on_our_server_when_writes_overwrite() {
    let server = OurServer::start(WritePolicy::Overwrite);
    make_file(&server.path("boot.scr"), 3000, 1);
    let local = temp_dir();
    for (seed, peer) in (10..).zip(Peer::ALL) {
        if skipped(available(peer)) {
            continue;
        }
        let upload = local.path().join(peer.name());
        let sha = make_file(&upload, 5000 + seed, seed);
        let r = client_put(peer, server.addr(), None, &upload, "boot.scr", None, None);
        assert!(r.ok(), "put over an existing file:\n{r}");
        let stored = settled_sha256(&server.path("boot.scr"), &sha);
        assert_eq!(stored, sha, "{}: the file was not replaced", peer.name());
    }
}

/// A lab boots several boards at once: every real client downloads the
/// same file from our server at the same time, and each copy is intact.
#[test]
fn real_clients_download_from_our_server_at_the_same_time() {
    let peers: Vec<Peer> = Peer::ALL
        .into_iter()
        .filter(|&peer| !skipped(available(peer)))
        .collect();
    let server = OurServer::start(WritePolicy::Off);
    let sha = make_file(&server.path("kernel.img"), 4 * 1024 * 1024 + 3, 11);
    let local = temp_dir();
    let addr = server.addr();
    std::thread::scope(|scope| {
        let runs: Vec<_> = peers
            .iter()
            .map(|&peer| {
                let got = local.path().join(peer.name());
                let blksize = peer.supports_blksize().then_some(1468);
                scope.spawn(move || {
                    let r = client_get(peer, addr, None, "kernel.img", &got, blksize, None);
                    (r, got)
                })
            })
            .collect();
        for run in runs {
            let (r, got) = run.join().expect("client thread");
            assert!(r.ok(), "concurrent get:\n{r}");
            assert_eq!(
                sha256_file(&got),
                sha,
                "concurrent get: content differs\n{r}"
            );
        }
    });
    for peer in &peers {
        let outcome = server.take_outcome("kernel.img", Direction::Read);
        assert!(outcome.is_ok(), "{}: {outcome:?}", peer.name());
    }
}

/// curl 7.88.1 rejects a zero tsize in an OACK ("invalid tsize -:0:- value
/// in OACK packet", exit 71; `tests/peers/` shows it does so against
/// tftpd-hpa). A server may leave any option out of its OACK (RFC 2347), so
/// ours leaves tsize out for an empty file, answering exactly the request
/// curl sends, and curl fetches the file with its options.
#[test]
fn our_oack_for_an_empty_file_leaves_tsize_out_so_curl_can_fetch_it() {
    let server = OurServer::start(WritePolicy::Off);
    make_file(&server.path("empty"), 0, 0);
    let curl_rrq = [("tsize", "0"), ("blksize", "1468"), ("timeout", "6")];
    let rrq = encode_request(OP_RRQ, "empty", "octet", &curl_rrq);
    let reply = raw_request(server.addr(), None, &rrq, RAW_WAIT).expect("send RRQ");
    let granted = [("blksize", "1468"), ("timeout", "6")];
    let owned = granted.map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(reply, Reply::Oack(owned.to_vec()));
    skip_or_fail!(available(Peer::Curl));
    let local = server.path("curl-empty");
    let (r, _) = real_client_gets(Peer::Curl, &server, "empty", 0, &local, Opts::NONE);
    assert!(r.ok(), "curl could not fetch an empty file:\n{r}");
    assert_eq!(std::fs::metadata(&local).map(|m| m.len()).ok(), Some(0));
}

// ------------------------------------------------------------ our client

/// Our client on a tokio runtime the test owns. A current-thread runtime:
/// on a multi-thread one, `block_on` polls the transfer on this thread while
/// a worker polls the socket, and the hand-over on every datagram makes a
/// lock-step transfer about twice as slow. (Spawning the transfer onto a
/// worker is not possible: `Client`'s futures are not `Send`.) A finished
/// download dallies only during later `block_on` calls, which on loopback,
/// where no final ACK is lost, changes nothing.
struct OurClient {
    runtime: tokio::runtime::Runtime,
}

impl OurClient {
    fn new() -> OurClient {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio runtime");
        OurClient { runtime }
    }

    fn client(options: OptionRequest) -> Client<TokioNet> {
        Client::new(
            TokioNet,
            ClientConfig {
                options,
                ..ClientConfig::default()
            },
        )
    }

    fn get(
        &self,
        server: SocketAddr,
        remote: &str,
        local: &Path,
        options: OptionRequest,
    ) -> Result<Summary, ClientError> {
        self.block_on(Self::client(options).get_file(server, remote, local, |_| {}))
    }

    fn put(
        &self,
        server: SocketAddr,
        local: &Path,
        remote: &str,
        options: OptionRequest,
    ) -> Result<Summary, ClientError> {
        self.block_on(Self::client(options).put_file(server, remote, local, |_| {}))
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// The option sets our client tries against each real server: none at
/// all, blksize 1468 with tsize, and blksize 1468 with windowsize 16.
fn our_option_sets() -> [OptionRequest; 3] {
    let blksize = OptionRequest {
        blksize: Some(1468),
        ..OptionRequest::default()
    };
    [
        OptionRequest::default(),
        OptionRequest {
            tsize: Some(0),
            ..blksize
        },
        OptionRequest {
            windowsize: Some(16),
            ..blksize
        },
    ]
}

/// What a transfer with `options` runs at against `kind`: every server
/// grants blksize 1468; only atftpd grants windowsize, and tftpd-hpa and
/// dnsmasq leave it out of the OACK, so our client must fall back to
/// lock-step (window 1).
fn expected_against(kind: PeerServer, options: OptionRequest) -> (u16, u16) {
    let window = match options.windowsize {
        Some(n) if kind == PeerServer::Atftpd => n,
        _ => 1,
    };
    (options.blksize.unwrap_or(512), window)
}

fn describe_options(options: OptionRequest) -> String {
    let mut parts = Vec::new();
    if let Some(n) = options.blksize {
        parts.push(format!("blksize {n}"));
    }
    if options.tsize.is_some() {
        parts.push("tsize".to_string());
    }
    if let Some(n) = options.windowsize {
        parts.push(format!("windowsize {n}"));
    }
    if parts.is_empty() {
        "no options".to_string()
    } else {
        parts.join(", ")
    }
}

fn start_real_server(kind: PeerServer, root: &Path, allow_write: bool) -> ServerProcess {
    ServerProcess::start(kind, root, allow_write)
        .unwrap_or_else(|e| panic!("start {}: {e}", kind.name()))
}

/// The option set for a rollover file: a small blksize, and windowsize 16,
/// which only atftpd grants (the others run it lock-step).
fn rollover_options(blksize: u16) -> OptionRequest {
    OptionRequest {
        blksize: Some(blksize),
        windowsize: Some(16),
        ..OptionRequest::default()
    }
}

/// Against tftpd-hpa and dnsmasq, which run lock-step, every block costs
/// our client a round trip, so the rollover file is the smallest that
/// wraps: 512 KiB at blksize 8 is 65536 blocks, the last full one numbered
/// 0 and the empty one after it 1.
const LOCK_STEP_ROLLOVER_SIZE: u64 = 512 * 1024;

/// atftpd refuses an RRQ whose OACK would not fit in one block (ERROR 8;
/// its log: "options <blksize: 8, windowsize: 2> require roughly a blksize
/// of 23 for the OACK"), so blksize 8 and windowsize cannot go together.
/// At 32, 2 MiB is 65536 blocks: the block number wraps once.
const ATFTPD_ROLLOVER_SIZE: u64 = 2 * 1024 * 1024;
const ATFTPD_ROLLOVER_BLKSIZE: u16 = 32;

/// Our client downloads, and uploads to a new name, files of each of
/// `sizes` from a real server that runs on loopback (tftpd-hpa with
/// `--create`, atftpd as root), with each of `option_sets`; checks the
/// SHA-256 on both sides and the blksize and window the transfer ran at.
fn our_client_round_trips(kind: PeerServer, sizes: &[u64], option_sets: &[OptionRequest]) {
    skip_or_fail!(available(kind));
    let root = temp_dir();
    let local = temp_dir();
    let server = start_real_server(kind, root.path(), true);
    let client = OurClient::new();
    for (seed, &size) in sizes.iter().enumerate() {
        let name = format!("file-{size}");
        let sha = make_file(&root.path().join(&name), size, seed as u64);
        for (run, &options) in option_sets.iter().enumerate() {
            let what = format!(
                "{}, {size} bytes, {}",
                kind.name(),
                describe_options(options)
            );
            let log = || server.log();
            let expected = expected_against(kind, options);

            let got = local.path().join(format!("got-{size}-{run}"));
            let summary = client
                .get(server.addr(), &name, &got, options)
                .unwrap_or_else(|e| panic!("get, {what}: {e}\nserver log:\n{}", log()));
            assert_eq!(sha256_file(&got), sha, "get, {what}: content differs");
            let n = summary.negotiated;
            assert_eq!((n.blksize, n.windowsize), expected, "get, {what}");
            if options.tsize.is_some() {
                assert_eq!(n.tsize, Some(size), "get, {what}: tsize");
            }

            let remote = format!("up-{size}-{run}");
            let summary = client
                .put(server.addr(), &got, &remote, options)
                .unwrap_or_else(|e| panic!("put, {what}: {e}\nserver log:\n{}", log()));
            let uploaded = settled_sha256(&root.path().join(&remote), &sha);
            assert_eq!(uploaded, sha, "put, {what}: content differs");
            let n = summary.negotiated;
            assert_eq!((n.blksize, n.windowsize), expected, "put, {what}");
        }
    }
}

#[test]
fn our_client_gets_and_puts_every_size_with_tftpd_hpa() {
    our_client_round_trips(PeerServer::TftpdHpa, &SIZES, &our_option_sets());
}

#[test]
fn our_client_gets_and_puts_every_size_with_atftpd() {
    our_client_round_trips(PeerServer::Atftpd, &SIZES, &our_option_sets());
}

#[test]
fn our_client_rolls_block_numbers_over_with_tftpd_hpa_lock_step() {
    our_client_round_trips(
        PeerServer::TftpdHpa,
        &[LOCK_STEP_ROLLOVER_SIZE],
        &[rollover_options(ROLLOVER_BLKSIZE)],
    );
}

#[test]
fn our_client_rolls_block_numbers_over_with_atftpd_windowed() {
    our_client_round_trips(
        PeerServer::Atftpd,
        &[ATFTPD_ROLLOVER_SIZE],
        &[rollover_options(ATFTPD_ROLLOVER_BLKSIZE)],
    );
}

/// The `tftplab` binary, run inside namespace `ns` (where dnsmasq listens
/// on 127.0.0.1:69).
fn tftplab_in_netns(ns: &str, args: &[&str]) -> PeerResult {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tftplab"));
    cmd.args(args);
    run_in_netns(ns, cmd)
}

/// The number right after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// dnsmasq's port is fixed at 69, so it runs in a namespace of its own and
/// our client runs there too, as the `tftplab` binary, whose report line
/// (`received NAME: N bytes in ..., blksize B, window W, ...`) says what
/// the transfer ran at. dnsmasq is read-only: downloads only.
fn our_binary_gets_from_dnsmasq(sizes: &[u64], option_sets: &[OptionRequest]) {
    let kind = PeerServer::Dnsmasq;
    skip_or_fail!(available(kind));
    let root = temp_dir();
    let local = temp_dir();
    let server = start_real_server(kind, root.path(), false);
    let ns = server.netns().expect("dnsmasq runs in a namespace");
    let host = server.addr().to_string();
    for (seed, &size) in sizes.iter().enumerate() {
        let name = format!("file-{size}");
        let sha = make_file(&root.path().join(&name), size, seed as u64);
        for (run, &options) in option_sets.iter().enumerate() {
            let what = format!("dnsmasq, {size} bytes, {}", describe_options(options));
            let got = local.path().join(format!("got-{size}-{run}"));
            let got_arg = got.to_str().expect("UTF-8 temp path");
            // Exactly these options: the binary asks blksize, windowsize
            // and tsize by default, and 512 and 1 are not asked for.
            let mut args = vec!["get", &host, &name, got_arg];
            let blksize = options.blksize.unwrap_or(512).to_string();
            let windowsize = options.windowsize.unwrap_or(1).to_string();
            if options.is_empty() {
                args.push("--plain");
            } else {
                args.extend(["--blksize", &blksize, "--windowsize", &windowsize]);
                if options.tsize.is_none() {
                    args.push("--no-tsize");
                }
            }
            let r = tftplab_in_netns(ns, &args);
            assert_eq!(r.code, Some(0), "get, {what}:\n{r}\nlog:\n{}", server.log());
            assert_eq!(sha256_file(&got), sha, "get, {what}: content differs");
            let report = (
                number_after(&r.stderr, &format!("received {name}: ")),
                number_after(&r.stderr, "blksize "),
                number_after(&r.stderr, "window "),
            );
            let (blksize, window) = expected_against(kind, options);
            assert_eq!(
                report,
                (Some(size), Some(blksize.into()), Some(window.into())),
                "get, {what}: bytes, blksize and window in the report:\n{r}"
            );
        }
    }
}

#[test]
fn our_client_gets_every_size_from_dnsmasq_in_a_netns() {
    our_binary_gets_from_dnsmasq(&SIZES, &our_option_sets());
}

#[test]
fn our_client_rolls_block_numbers_over_with_dnsmasq_lock_step() {
    our_binary_gets_from_dnsmasq(
        &[LOCK_STEP_ROLLOVER_SIZE],
        &[rollover_options(ROLLOVER_BLKSIZE)],
    );
}

/// `tftplab get` and `put` as a user types them, with no option flags:
/// the binary asks blksize 1468, windowsize 16 and tsize, and every real
/// server must serve it at what that server grants (atftpd the window,
/// the others lock-step), with the file intact both ways.
fn our_binary_defaults_work_with(kind: PeerServer) {
    skip_or_fail!(available(kind));
    let root = temp_dir();
    let local = temp_dir();
    let writable = kind != PeerServer::Dnsmasq;
    let server = start_real_server(kind, root.path(), writable);
    let host = server.addr().to_string();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tftplab"));
        cmd.args(args);
        run_with_timeout(None, in_netns(server.netns(), cmd), CLIENT_TIMEOUT)
    };
    let size = 3 * 1024 * 1024 + 17;
    let sha = make_file(&root.path().join("kernel.img"), size, 7);
    let got = local.path().join("kernel.img");
    let got_arg = got.to_str().expect("UTF-8 temp path");
    let r = run(&["get", &host, "kernel.img", got_arg]);
    assert_eq!(
        r.code,
        Some(0),
        "{}, get:\n{r}\nlog:\n{}",
        kind.name(),
        server.log()
    );
    assert_eq!(
        sha256_file(&got),
        sha,
        "{}: get: content differs",
        kind.name()
    );
    let (_, window) = expected_against(
        kind,
        OptionRequest {
            windowsize: Some(16),
            ..OptionRequest::default()
        },
    );
    assert!(
        r.stderr
            .contains(&format!("received kernel.img: {size} bytes in "))
            && r.stderr
                .contains(&format!("blksize 1468, window {window},")),
        "{}: get report:\n{r}",
        kind.name()
    );
    if writable {
        let r = run(&["put", &host, got_arg, "uploaded.img"]);
        assert_eq!(
            r.code,
            Some(0),
            "{}, put:\n{r}\nlog:\n{}",
            kind.name(),
            server.log()
        );
        let uploaded = settled_sha256(&root.path().join("uploaded.img"), &sha);
        assert_eq!(uploaded, sha, "{}: put: content differs", kind.name());
        assert!(
            r.stderr
                .contains(&format!("blksize 1468, window {window},")),
            "{}: put report:\n{r}",
            kind.name()
        );
    }
}

#[test]
fn our_binary_with_its_defaults_works_with_tftpd_hpa() {
    our_binary_defaults_work_with(PeerServer::TftpdHpa);
}

#[test]
fn our_binary_with_its_defaults_works_with_atftpd() {
    our_binary_defaults_work_with(PeerServer::Atftpd);
}

#[test]
fn our_binary_with_its_defaults_works_with_dnsmasq() {
    our_binary_defaults_work_with(PeerServer::Dnsmasq);
}

// ------------------------------------------------------------ errors

/// Asserts that the real client `r` reports TFTP ERROR `code` with
/// `message`, as far as each client can tell: tftp-hpa prints both on
/// stdout (and exits 0), busybox both on stderr, curl only encodes the
/// code in its exit status, atftp only prints the message (exit 255).
#[track_caller]
fn assert_client_saw_error(r: &PeerResult, code: u16, message: &str) {
    assert!(!r.ok(), "expected ERROR {code}, but it succeeded:\n{r}");
    let peer = r.peer.expect("a client's result");
    match peer {
        Peer::TftpHpa => assert!(
            r.stdout.contains(&format!("Error code {code}: {message}")),
            "{r}"
        ),
        Peer::Busybox => assert!(
            r.stderr
                .contains(&format!("server error: ({code}) {message}")),
            "{r}"
        ),
        Peer::Curl => assert_eq!(r.error_code(), Some(code), "{r}"),
        Peer::Atftp => {
            assert_eq!(r.code, Some(255), "{r}");
            assert!(r.stderr.contains(message), "{r}");
        }
    }
    if peer != Peer::Atftp {
        assert_eq!(r.error_code(), Some(code), "{r}");
    }
}

/// Asserts that a raw request got ERROR `code` with `message`.
#[track_caller]
fn assert_raw_error(reply: Reply, code: u16, message: &str) {
    assert_eq!(
        reply,
        Reply::Error {
            code,
            message: message.to_string()
        }
    );
}

/// Every real client asks our server for `name` and must be told ERROR
/// `code` with `message`; so must a raw RRQ. Nothing may arrive: a client
/// may leave an empty file behind (tftp-hpa does), never data.
fn every_client_gets_error(server: &OurServer, name: &str, code: u16, message: &str) {
    let rrq = encode_request(OP_RRQ, name, "octet", &[]);
    let reply = raw_request(server.addr(), None, &rrq, RAW_WAIT).expect("send RRQ");
    assert_raw_error(reply, code, message);
    let local = temp_dir();
    for peer in Peer::ALL {
        if skipped(available(peer)) {
            continue;
        }
        let got = local.path().join(peer.name());
        let r = client_get(peer, server.addr(), None, name, &got, None, None);
        assert_client_saw_error(&r, code, message);
        let leaked = std::fs::metadata(&got).map_or(0, |m| m.len());
        assert_eq!(leaked, 0, "{}: got data for {name:?}", peer.name());
    }
}

/// Every real client tries to upload `local` to our server as `name` and
/// must be told ERROR `code` with `message`; so must a raw WRQ.
fn every_client_put_gets_error(
    server: &OurServer,
    local: &Path,
    name: &str,
    code: u16,
    message: &str,
) {
    let wrq = encode_request(OP_WRQ, name, "octet", &[]);
    let reply = raw_request(server.addr(), None, &wrq, RAW_WAIT).expect("send WRQ");
    assert_raw_error(reply, code, message);
    for peer in Peer::ALL {
        if skipped(available(peer)) {
            continue;
        }
        let r = client_put(peer, server.addr(), None, local, name, None, None);
        assert_client_saw_error(&r, code, message);
    }
}

#[test]
fn our_server_answers_a_missing_file_with_error_1() {
    let server = OurServer::start(WritePolicy::Off);
    every_client_gets_error(&server, "no-such-file", 1, "File not found");
}

#[test]
fn our_server_answers_dot_dot_out_of_the_root_with_error_2() {
    let server = OurServer::start(WritePolicy::Off);
    every_client_gets_error(&server, "../etc/passwd", 2, "Access violation");
}

/// A symlink inside the root to a file outside it, and one to a directory
/// outside it, are both refused: the files behind them are world-readable
/// and would otherwise be served.
#[test]
fn our_server_answers_symlinks_out_of_the_root_with_error_2() {
    let server = OurServer::start(WritePolicy::Off);
    let outside = temp_dir();
    make_file(&outside.path().join("secret"), 600, 9);
    symlink(outside.path().join("secret"), server.path("link-to-file")).unwrap();
    symlink(outside.path(), server.path("link-to-dir")).unwrap();
    every_client_gets_error(&server, "link-to-file", 2, "Access violation");
    every_client_gets_error(&server, "link-to-dir/secret", 2, "Access violation");
}

#[test]
fn our_server_refuses_uploads_with_error_2_when_writes_are_off() {
    let server = OurServer::start(WritePolicy::Off);
    let local = temp_dir();
    let upload = local.path().join("upload");
    make_file(&upload, 2000, 2);
    every_client_put_gets_error(
        &server,
        &upload,
        "new.bin",
        2,
        "Access violation: uploads are disabled",
    );
    assert!(!server.path("new.bin").exists(), "an upload was stored");
}

#[test]
fn our_server_refuses_overwriting_with_error_6_when_writes_create() {
    let server = OurServer::start(WritePolicy::Create);
    let original = make_file(&server.path("existing.bin"), 100, 1);
    let local = temp_dir();
    let upload = local.path().join("upload");
    make_file(&upload, 2000, 2);
    every_client_put_gets_error(&server, &upload, "existing.bin", 6, "File already exists");
    assert_eq!(sha256_file(&server.path("existing.bin")), original);
}

/// No real client can send mode `mail` (see `tests/peers/`), so a raw RRQ
/// and WRQ ask for it; uploads are allowed, so only the mode is wrong.
#[test]
fn our_server_answers_mode_mail_with_error_4() {
    let server = OurServer::start(WritePolicy::Create);
    make_file(&server.path("f"), 600, 5);
    for (opcode, name) in [(OP_RRQ, "f"), (OP_WRQ, "new.bin")] {
        let request = encode_request(opcode, name, "mail", &[]);
        let reply = raw_request(server.addr(), None, &request, RAW_WAIT).expect("send request");
        assert!(
            matches!(reply, Reply::Error { code: 4, .. }),
            "opcode {opcode}: {reply:?}"
        );
    }
    assert!(!server.path("new.bin").exists());
}

/// Asserts that our client's transfer failed because the server sent
/// ERROR `code`.
#[track_caller]
fn assert_server_sent(result: Result<Summary, ClientError>, code: u16, what: &str) {
    let err = result.err().unwrap_or_else(|| panic!("{what}: succeeded"));
    assert_eq!(err.code(), Some(ErrorCode(code)), "{what}: {err}");
    assert!(
        matches!(err, ClientError::Transfer(TransferError::Peer { .. })),
        "{what}: the ERROR came from our side: {err}"
    );
}

/// Asserts that the `tftplab` binary failed with the server's ERROR `code`.
#[track_caller]
fn assert_binary_reports(r: &PeerResult, code: u16, what: &str) {
    assert_eq!(r.code, Some(3), "{what}: exit 3, the server refused:\n{r}");
    assert!(
        r.stderr
            .contains(&format!("refused `{what}`: ERROR {code}:")),
        "{what}:\n{r}"
    );
}

#[test]
fn our_client_reports_error_1_for_a_missing_file_on_real_servers() {
    let client = OurClient::new();
    let local = temp_dir();
    let got = local.path().join("got");
    for kind in [PeerServer::TftpdHpa, PeerServer::Atftpd] {
        if skipped(available(kind)) {
            continue;
        }
        let root = temp_dir();
        let server = start_real_server(kind, root.path(), false);
        let result = client.get(
            server.addr(),
            "no-such-file",
            &got,
            OptionRequest::default(),
        );
        assert_server_sent(result, 1, kind.name());
        assert!(!got.exists(), "{}: a failed get left a file", kind.name());
    }
    skip_or_fail!(available(PeerServer::Dnsmasq));
    let root = temp_dir();
    let server = start_real_server(PeerServer::Dnsmasq, root.path(), false);
    let ns = server.netns().expect("dnsmasq runs in a namespace");
    let got_arg = got.to_str().expect("UTF-8 temp path");
    let host = server.addr().to_string();
    let r = tftplab_in_netns(ns, &["get", &host, "no-such-file", got_arg]);
    assert_binary_reports(&r, 1, "no-such-file");
    assert!(!got.exists(), "dnsmasq: a failed get left a file");
}

/// Read-only real servers refuse our uploads: tftpd-hpa (no --create, no
/// --permissive) with ERROR 2 for a file that is not world-writable and
/// ERROR 1 for a new one; atftpd as `nobody` with ERROR 2 after ACKing the
/// WRQ; dnsmasq with ERROR 4 for every WRQ. Nothing changes in the root.
#[test]
fn our_client_reports_refused_uploads_to_real_servers() {
    let client = OurClient::new();
    let local = temp_dir();
    let upload = local.path().join("upload");
    make_file(&upload, 2000, 2);
    let cases = [
        (PeerServer::TftpdHpa, "existing", 2),
        (PeerServer::TftpdHpa, "new", 1),
        (PeerServer::Atftpd, "existing", 2),
        (PeerServer::Atftpd, "new", 2),
    ];
    for (kind, remote, code) in cases {
        if skipped(available(kind)) {
            continue;
        }
        let root = temp_dir();
        let original = make_file(&root.path().join("existing"), 100, 1);
        let server = start_real_server(kind, root.path(), false);
        let what = format!("put {remote} to {}", kind.name());
        let result = client.put(server.addr(), &upload, remote, OptionRequest::default());
        assert_server_sent(result, code, &what);
        assert_eq!(
            sha256_file(&root.path().join("existing")),
            original,
            "{what}"
        );
        assert!(!root.path().join("new").exists(), "{what}: created it");
    }
    skip_or_fail!(available(PeerServer::Dnsmasq));
    let root = temp_dir();
    let server = start_real_server(PeerServer::Dnsmasq, root.path(), false);
    let ns = server.netns().expect("dnsmasq runs in a namespace");
    let upload_arg = upload.to_str().expect("UTF-8 temp path");
    let host = server.addr().to_string();
    let r = tftplab_in_netns(ns, &["put", &host, upload_arg, "new"]);
    assert_binary_reports(&r, 4, "new");
    assert!(!root.path().join("new").exists(), "dnsmasq: created it");
}

// ------------------------------------------------------------ one lost DATA

/// The file each lost-DATA test moves: 20 blocks of 512, the last 272 bytes.
const ONE_LOSS_SIZE: u64 = 10_000;

/// The block whose first DATA nftables drops: mid-file, after a few round
/// trips have set both sides' timers.
const LOST_BLOCK: u16 = 4;

/// tftp-hpa's `tftp` resends a DATA only when its retransmit alarm fires,
/// 5 s (its default `rexmt`) after the last datagram it received.
const TFTP_HPA_REXMT: Duration = Duration::from_secs(5);

/// The `tftplab` binary serving a fresh root on 127.0.0.1:69 in a network
/// namespace of its own, as a user runs it (default timeout and retries),
/// with `--events json` on stdout. Killed, and its namespace deleted, on
/// drop.
struct OurBinaryServer {
    child: Child,
    events: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    root: TempDir,
    // Dropped after `Drop::drop` has killed the server in it.
    netns: Netns,
}

impl OurBinaryServer {
    /// Starts `tftplab serve --write WRITE` and waits for its `ready` event.
    fn start(write: &str) -> OurBinaryServer {
        let netns = Netns::create().expect("create a network namespace");
        let root = temp_dir();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tftplab"));
        cmd.args(["serve", "--root"])
            .arg(root.path())
            .args(["--bind", "127.0.0.1:69", "--write", write])
            .args(["--events", "json"]);
        let mut child = in_netns(Some(netns.name()), cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tftplab serve");
        let (send, events) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let log = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let server = OurBinaryServer {
            child,
            events,
            stderr,
            root,
            netns,
        };
        let ready = server.next_event(Duration::from_secs(10));
        assert!(
            ready
                .as_deref()
                .is_some_and(|e| e.starts_with(r#"{"event":"ready""#)),
            "tftplab serve did not become ready: {ready:?}\nstderr:\n{}",
            server.stderr()
        );
        server
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 69))
    }

    fn ns(&self) -> &str {
        self.netns.name()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The next line of `--events json`, if one comes within `wait`.
    fn next_event(&self, wait: Duration) -> Option<String> {
        self.events.recv_timeout(wait).ok()
    }

    /// What it has logged to stderr so far.
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for OurBinaryServer {
    fn drop(&mut self) {
        // `ip netns exec` execs tftplab, so this is tftplab's own pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tftp-hpa's client restarts its 5 s retransmit alarm on every datagram
/// it receives and ignores a repeated ACK (RFC 1350: no resend on a
/// duplicate ACK, against the Sorcerer's Apprentice). So when its DATA is
/// lost, it resends only after 5 s in which the server said nothing. Our
/// server, waiting for that DATA, re-ACKs the previous block with a wait
/// that doubles past its 1 s timeout (1, 2, 4, 8 s): the 8 s gap lets
/// tftp-hpa's alarm fire, it resends, and the upload completes. (A server
/// that re-ACKed every second kept tftp-hpa's alarm from ever firing and
/// gave up after its 5 retries.)
#[test]
fn tftp_hpa_resends_a_lost_upload_data_in_the_silence_of_our_servers_backed_off_re_acks() {
    skip_or_fail!(available(Peer::TftpHpa));
    if skipped_without_netns(nft_usable()) {
        return;
    }
    let server = OurBinaryServer::start("create");
    let drop = DropFirstData::install(server.ns(), LOST_BLOCK).expect("install nftables rules");
    let local = temp_dir();
    let upload = local.path().join("upload.bin");
    let sha = make_file(&upload, ONE_LOSS_SIZE, 21);

    let r = client_put(
        Peer::TftpHpa,
        server.addr(),
        Some(server.ns()),
        &upload,
        "upload.bin",
        None,
        None,
    );
    let event = server.next_event(Duration::from_secs(5));
    let what = || {
        format!(
            "{r}\nour server's event: {event:?}\nits stderr:\n{}\nnftables:\n{}",
            server.stderr(),
            drop.ruleset()
        )
    };
    assert!(r.ok(), "tftp-hpa's upload failed:\n{}", what());
    let stored = settled_sha256(&server.path("upload.bin"), &sha);
    assert_eq!(stored, sha, "the stored file differs:\n{}", what());
    assert_eq!(
        (drop.dropped(), drop.arrived()),
        (1, 2),
        "(DATA {LOST_BLOCK} dropped, DATA {LOST_BLOCK} arrived): one lost, one resend:\n{}",
        what()
    );
    assert!(
        r.elapsed >= TFTP_HPA_REXMT,
        "tftp-hpa resends only when its {TFTP_HPA_REXMT:?} alarm fires:\n{}",
        what()
    );
}

/// The other way round: our binary downloads from tftpd-hpa, which loses
/// one DATA. tftpd-hpa's sender waits for the ACK against a deadline set
/// when it sent the DATA (its `recv_time` deducts the time a duplicate ACK
/// took), so our re-ACKs of the previous block do not hold its timer off:
/// it resends after its 1 s timeout and the file arrives whole.
#[test]
fn our_binary_gets_a_file_whole_from_tftpd_hpa_when_one_data_is_lost() {
    let kind = PeerServer::TftpdHpa;
    skip_or_fail!(available(kind));
    if skipped_without_netns(nft_usable()) {
        return;
    }
    let root = temp_dir();
    let sha = make_file(&root.path().join("kernel.img"), ONE_LOSS_SIZE, 22);
    let server = ServerProcess::start_in_netns(kind, root.path(), false)
        .unwrap_or_else(|e| panic!("start {} in a namespace: {e}", kind.name()));
    let ns = server.netns().expect("started in a namespace");
    let drop = DropFirstData::install(ns, LOST_BLOCK).expect("install nftables rules");
    let local = temp_dir();
    let got = local.path().join("kernel.img");
    let got_arg = got.to_str().expect("UTF-8 temp path");
    let host = server.addr().to_string();

    let r = tftplab_in_netns(ns, &["get", &host, "kernel.img", got_arg]);
    let what = || format!("{r}\nnftables:\n{}", drop.ruleset());
    assert_eq!(r.code, Some(0), "the download failed:\n{}", what());
    assert_eq!(sha256_file(&got), sha, "the file differs:\n{}", what());
    assert_eq!(
        (drop.dropped(), drop.arrived()),
        (1, 2),
        "(DATA {LOST_BLOCK} dropped, DATA {LOST_BLOCK} arrived): one lost, one resend:\n{}",
        what()
    );
}
