//! Self-tests of `tests/peers/`: every real client against every real
//! server, and the failures tests will assert on. They pin down the facts in
//! the module's docs, so a peer upgrade that changes one shows up here.
//! Each test skips (or fails with TFTPLAB_REQUIRE_PEERS=1) when a peer it
//! needs is missing; `.ci/install-peers.sh` installs them all.

mod peers;

use std::path::Path;
use std::time::Duration;

use peers::{
    available, client_command, client_get, client_put, encode_request, make_file, raw_request,
    run_with_timeout, server_command, settled_sha256, sha256_file, skip_or_fail, skipped, temp_dir,
    Direction, ErrorServer, Netns, Peer, PeerResult, PeerServer, Reply, ServerProcess, OP_RRQ,
    OP_WRQ,
};

/// Sizes with distinct endings: no data at all, exactly one full 512-byte
/// block (so an empty last block follows), and many blocks plus one byte.
const SIZES: [u64; 3] = [0, 512, 1024 * 1024 + 1];

fn start(kind: PeerServer, root: &Path, allow_write: bool) -> ServerProcess {
    ServerProcess::start(kind, root, allow_write)
        .unwrap_or_else(|e| panic!("start {}: {e}", kind.name()))
}

/// `peer` downloads (and, where the server allows, uploads) every size
/// from `kind`, first with its default options, then with blksize 1468
/// and windowsize 16 where it can send them, comparing SHA-256.
fn round_trips(kind: PeerServer, peer: Peer) {
    skip_or_fail!(available(kind), available(peer));
    let root = temp_dir();
    let local = temp_dir();
    let server = start(kind, root.path(), kind.supports_write());
    let mut option_sets = vec![(None, None)];
    if peer.supports_blksize() {
        option_sets.push((Some(1468), peer.supports_windowsize().then_some(16)));
    }
    for (seed, size) in SIZES.into_iter().enumerate() {
        let name = format!("file-{size}");
        let sha = make_file(&root.path().join(&name), size, seed as u64);
        for (run, &(blksize, windowsize)) in option_sets.iter().enumerate() {
            let what = format!(
                "{} vs {}, {size} bytes, blksize {blksize:?}, windowsize {windowsize:?}",
                peer.name(),
                kind.name()
            );
            // curl 7.88 refuses the OACK's `tsize 0`; see
            // curl_cannot_download_an_empty_file.
            if !(peer == Peer::Curl && size == 0) {
                let got = local.path().join(format!("got-{size}-{run}"));
                let r = client_get(
                    peer,
                    server.addr(),
                    server.netns(),
                    &name,
                    &got,
                    blksize,
                    windowsize,
                );
                assert!(r.ok(), "get, {what}:\n{r}\nserver log:\n{}", server.log());
                assert_eq!(sha256_file(&got), sha, "get, {what}");
            }
            if kind.supports_write() {
                let remote = format!("up-{size}-{run}");
                let r = client_put(
                    peer,
                    server.addr(),
                    server.netns(),
                    &root.path().join(&name),
                    &remote,
                    blksize,
                    windowsize,
                );
                assert!(r.ok(), "put, {what}:\n{r}\nserver log:\n{}", server.log());
                let uploaded = root.path().join(&remote);
                assert_eq!(settled_sha256(&uploaded, &sha), sha, "put, {what}");
            }
        }
    }
}

#[test]
fn tftp_hpa_with_tftpd_hpa() {
    round_trips(PeerServer::TftpdHpa, Peer::TftpHpa);
}

#[test]
fn curl_with_tftpd_hpa() {
    round_trips(PeerServer::TftpdHpa, Peer::Curl);
}

#[test]
fn atftp_with_tftpd_hpa() {
    round_trips(PeerServer::TftpdHpa, Peer::Atftp);
}

#[test]
fn busybox_with_tftpd_hpa() {
    round_trips(PeerServer::TftpdHpa, Peer::Busybox);
}

#[test]
fn tftp_hpa_with_atftpd() {
    round_trips(PeerServer::Atftpd, Peer::TftpHpa);
}

#[test]
fn curl_with_atftpd() {
    round_trips(PeerServer::Atftpd, Peer::Curl);
}

#[test]
fn atftp_with_atftpd() {
    round_trips(PeerServer::Atftpd, Peer::Atftp);
}

#[test]
fn busybox_with_atftpd() {
    round_trips(PeerServer::Atftpd, Peer::Busybox);
}

#[test]
fn tftp_hpa_with_dnsmasq() {
    round_trips(PeerServer::Dnsmasq, Peer::TftpHpa);
}

#[test]
fn curl_with_dnsmasq() {
    round_trips(PeerServer::Dnsmasq, Peer::Curl);
}

#[test]
fn atftp_with_dnsmasq() {
    round_trips(PeerServer::Dnsmasq, Peer::Atftp);
}

#[test]
fn busybox_with_dnsmasq() {
    round_trips(PeerServer::Dnsmasq, Peer::Busybox);
}

/// Asserts that `r` failed with TFTP error `code` and that the client said
/// `message` where it prints one.
#[track_caller]
fn assert_tftp_error(r: &PeerResult, code: u16, message: &str) {
    assert!(!r.ok(), "expected ERROR {code}, but it succeeded:\n{r}");
    match r.peer.expect("a client result") {
        // atftp prints the server's message but not its code.
        Peer::Atftp => {
            assert_eq!(r.code, Some(255), "{r}");
            assert!(r.stderr.contains(message), "no {message:?} in:\n{r}");
        }
        // curl's exit code says 4 for both 0 and 4.
        Peer::Curl if code == 0 => assert_eq!(r.code, Some(71), "{r}"),
        _ => assert_eq!(r.error_code(), Some(code), "{r}"),
    }
}

#[test]
fn missing_file_is_error_1_for_every_client_and_server() {
    for kind in PeerServer::ALL {
        if skipped(available(kind)) {
            continue;
        }
        let root = temp_dir();
        let local = temp_dir();
        let server = start(kind, root.path(), false);
        for peer in Peer::ALL {
            if skipped(available(peer)) {
                continue;
            }
            let got = local.path().join(peer.name());
            let r = client_get(
                peer,
                server.addr(),
                server.netns(),
                "no-such-file",
                &got,
                None,
                None,
            );
            assert_tftp_error(&r, 1, "not found");
        }
    }
}

#[test]
fn access_violation_is_error_2() {
    // What each server refuses with ERROR 2 when serving read-only.
    let cases = [
        // atftpd refuses any `..`.
        (PeerServer::Atftpd, "../etc/passwd", "Access violation"),
        // tftpd-hpa without --permissive wants world-readable files.
        (PeerServer::TftpdHpa, "private", "global read permissions"),
        (PeerServer::Dnsmasq, "private", "Permission denied"),
    ];
    for (kind, remote, message) in cases {
        if skipped(available(kind)) {
            continue;
        }
        let root = temp_dir();
        let local = temp_dir();
        let private = root.path().join("private");
        make_file(&private, 100, 7);
        std::fs::set_permissions(
            &private,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let server = start(kind, root.path(), false);
        for peer in Peer::ALL {
            if skipped(available(peer)) {
                continue;
            }
            let got = local.path().join(peer.name());
            let r = client_get(
                peer,
                server.addr(),
                server.netns(),
                remote,
                &got,
                None,
                None,
            );
            assert_tftp_error(&r, 2, message);
        }
    }
}

#[test]
fn read_only_servers_refuse_uploads() {
    // (server, remote name, expected code, atftp's message): tftpd-hpa
    // refuses to overwrite a file that is not world-writable (2) and, with
    // no --create, to create one (1); atftpd as nobody ACKs the WRQ and
    // refuses at the first DATA; dnsmasq refuses every WRQ as unsupported.
    let cases = [
        (
            PeerServer::TftpdHpa,
            "existing",
            2,
            "global write permissions",
        ),
        (PeerServer::TftpdHpa, "new", 1, "File not found"),
        (PeerServer::Atftpd, "existing", 2, "Access violation"),
        (PeerServer::Atftpd, "new", 2, "Access violation"),
        (PeerServer::Dnsmasq, "new", 4, "unsupported request"),
    ];
    for (kind, remote, code, message) in cases {
        if skipped(available(kind)) {
            continue;
        }
        let root = temp_dir();
        let local = temp_dir();
        let original = make_file(&root.path().join("existing"), 100, 1);
        let upload = local.path().join("upload");
        make_file(&upload, 2000, 2);
        let server = start(kind, root.path(), false);
        for peer in Peer::ALL {
            if skipped(available(peer)) {
                continue;
            }
            let r = client_put(
                peer,
                server.addr(),
                server.netns(),
                &upload,
                remote,
                None,
                None,
            );
            assert_tftp_error(&r, code, message);
            assert_eq!(sha256_file(&root.path().join("existing")), original);
            assert!(
                !root.path().join("new").exists(),
                "{} created it",
                kind.name()
            );
        }
    }
}

/// Client exit codes and messages for each error a server may send,
/// including 6 (file exists), which none of the real servers sends.
#[test]
fn each_client_reports_each_server_error() {
    let local = temp_dir();
    let upload = local.path().join("upload");
    make_file(&upload, 100, 3);
    for code in 0..=8 {
        let message = format!("scripted error {code}");
        let server = ErrorServer::start(code, &message).expect("start error server");
        for peer in Peer::ALL {
            if skipped(available(peer)) {
                continue;
            }
            let got = local.path().join("got");
            let r = client_get(peer, server.addr(), None, "f", &got, None, None);
            assert_tftp_error(&r, code, &message);
            let r = client_put(peer, server.addr(), None, &upload, "f", None, None);
            assert_tftp_error(&r, code, &message);
            // tftp-hpa is the odd one out: exit 0, the message on stdout.
            if peer == Peer::TftpHpa {
                assert_eq!(r.code, Some(0));
                assert!(r.stdout.contains(&format!("Error code {code}: {message}")));
            }
        }
    }
}

/// What one client sends when asked for `blksize` (or not).
struct SentOptions {
    peer: Peer,
    blksize: Option<u16>,
    /// Option names and values in the RRQ, then in the WRQ of 100 bytes.
    rrq: &'static [(&'static str, &'static str)],
    wrq: &'static [(&'static str, &'static str)],
}

/// The options each client puts in its RRQ and WRQ.
#[test]
fn options_each_client_sends() {
    let local = temp_dir();
    let upload = local.path().join("upload");
    make_file(&upload, 100, 4);
    let cases = [
        SentOptions {
            peer: Peer::TftpHpa,
            blksize: None,
            rrq: &[],
            wrq: &[],
        },
        SentOptions {
            peer: Peer::Curl,
            blksize: None,
            // blksize 512 though none was asked for.
            rrq: &[("tsize", "0"), ("blksize", "512"), ("timeout", "6")],
            wrq: &[("tsize", "100"), ("blksize", "512"), ("timeout", "6")],
        },
        SentOptions {
            peer: Peer::Curl,
            blksize: Some(1468),
            rrq: &[("tsize", "0"), ("blksize", "1468"), ("timeout", "6")],
            wrq: &[("tsize", "100"), ("blksize", "1468"), ("timeout", "6")],
        },
        SentOptions {
            peer: Peer::Atftp,
            blksize: None,
            rrq: &[],
            wrq: &[],
        },
        SentOptions {
            peer: Peer::Atftp,
            blksize: Some(1468),
            rrq: &[("blksize", "1468")],
            wrq: &[("blksize", "1468")],
        },
        SentOptions {
            peer: Peer::Busybox,
            blksize: None,
            rrq: &[("tsize", "0")],
            wrq: &[("tsize", "100")],
        },
        SentOptions {
            peer: Peer::Busybox,
            blksize: Some(1468),
            rrq: &[("blksize", "1468"), ("tsize", "0")],
            wrq: &[("blksize", "1468"), ("tsize", "100")],
        },
    ];
    let owned = |options: &[(&str, &str)]| -> Vec<(String, String)> {
        options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    for case in cases {
        let (peer, blksize) = (case.peer, case.blksize);
        if skipped(available(peer)) {
            continue;
        }
        let server = ErrorServer::start(1, "File not found").expect("start error server");
        let got = local.path().join("got");
        client_get(peer, server.addr(), None, "f", &got, blksize, None);
        client_put(peer, server.addr(), None, &upload, "f", blksize, None);
        let requests = server.requests();
        let [rrq, wrq] = &requests[..] else {
            panic!(
                "{}: expected one RRQ and one WRQ, got {requests:?}",
                peer.name()
            )
        };
        let what = format!("{} with blksize {blksize:?}", peer.name());
        assert_eq!((rrq.opcode, wrq.opcode), (OP_RRQ, OP_WRQ), "{what}");
        assert_eq!(
            (rrq.mode.as_str(), wrq.mode.as_str()),
            ("octet", "octet"),
            "{what}"
        );
        assert_eq!(rrq.options, owned(case.rrq), "{what}: RRQ");
        assert_eq!(wrq.options, owned(case.wrq), "{what}: WRQ");
    }
    // atftp is the only one with windowsize.
    skip_or_fail!(available(Peer::Atftp));
    let server = ErrorServer::start(1, "File not found").expect("start error server");
    let got = local.path().join("got");
    client_get(
        Peer::Atftp,
        server.addr(),
        None,
        "f",
        &got,
        Some(1468),
        Some(16),
    );
    let rrq = &server.requests()[0];
    assert_eq!(
        rrq.options,
        owned(&[("blksize", "1468"), ("windowsize", "16")])
    );
}

/// No client can send an unsupported mode, so ask the servers directly.
#[test]
fn servers_answer_mode_mail() {
    for kind in PeerServer::ALL {
        if skipped(available(kind)) {
            continue;
        }
        let root = temp_dir();
        make_file(&root.path().join("f"), 600, 5);
        let server = start(kind, root.path(), false);
        let rrq = encode_request(OP_RRQ, "f", "mail", &[]);
        let reply = raw_request(server.addr(), server.netns(), &rrq, Duration::from_secs(2))
            .expect("send RRQ");
        match kind {
            PeerServer::TftpdHpa | PeerServer::Dnsmasq => {
                assert!(
                    matches!(reply, Reply::Error { code: 4, .. }),
                    "{}: {reply:?}",
                    kind.name()
                );
            }
            // atftpd ignores the mode and serves the file.
            PeerServer::Atftpd => {
                assert_eq!(reply, Reply::Data { block: 1, len: 512 }, "atftpd");
            }
        }
    }
}

/// curl 7.88.1 rejects `tsize 0` in an OACK, so it cannot download an
/// empty file from a server that answers tsize; with `--tftp-no-options`
/// it can.
#[test]
fn curl_cannot_download_an_empty_file() {
    skip_or_fail!(available(PeerServer::TftpdHpa), available(Peer::Curl));
    let root = temp_dir();
    let local = temp_dir();
    make_file(&root.path().join("empty"), 0, 0);
    let server = start(PeerServer::TftpdHpa, root.path(), false);
    let got = local.path().join("got");
    let r = client_get(Peer::Curl, server.addr(), None, "empty", &got, None, None);
    assert_eq!(r.code, Some(71), "{r}");

    let mut cmd = client_command(
        Peer::Curl,
        Direction::Get,
        server.addr(),
        "empty",
        &got,
        None,
        None,
    );
    cmd.arg("--tftp-no-options");
    let r = run_with_timeout(Some(Peer::Curl), cmd, Duration::from_secs(30));
    r.assert_ok();
    assert_eq!(std::fs::metadata(&got).unwrap().len(), 0);
}

/// in.tftpd exits with 66 in a namespace whose only IPv4 address is
/// 127.0.0.1 (AI_ADDRCONFIG ignores loopback); [`Netns`] adds 127.0.0.2,
/// with which it runs.
#[test]
fn tftpd_hpa_needs_a_second_loopback_address_in_a_netns() {
    skip_or_fail!(
        available(PeerServer::TftpdHpa),
        available(PeerServer::Dnsmasq)
    );
    let root = temp_dir();
    let ns = Netns::create().expect("create namespace");
    ns.ip(&["addr", "del", "127.0.0.2/8", "dev", "lo"])
        .expect("remove 127.0.0.2");
    let tftpd = server_command(PeerServer::TftpdHpa, root.path(), false, 69);
    let r = run_with_timeout(
        None,
        peers::in_netns(Some(ns.name()), tftpd),
        Duration::from_secs(5),
    );
    assert_eq!(r.code, Some(66), "{r}");

    make_file(&root.path().join("f"), 512, 6);
    let server = ServerProcess::start_in_netns(PeerServer::TftpdHpa, root.path(), false)
        .expect("start in.tftpd in a namespace");
    let rrq = encode_request(OP_RRQ, "f", "octet", &[]);
    let reply = raw_request(server.addr(), server.netns(), &rrq, Duration::from_secs(2)).unwrap();
    assert_eq!(reply, Reply::Data { block: 1, len: 512 });
}

#[test]
fn helpers_behave() {
    let dir = temp_dir();
    let a = dir.path().join("a");
    let sha = make_file(&a, 1000, 42);
    assert_eq!(std::fs::metadata(&a).unwrap().len(), 1000);
    assert_eq!(sha256_file(&a), sha);
    // Deterministic per seed, different across seeds.
    assert_eq!(make_file(&dir.path().join("b"), 1000, 42), sha);
    assert_ne!(make_file(&dir.path().join("c"), 1000, 43), sha);
    // The well-known digest of nothing.
    assert_eq!(
        make_file(&dir.path().join("empty"), 0, 1),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let rrq = encode_request(OP_WRQ, "a/b", "octet", &[("blksize", "1468")]);
    let parsed = peers::parse_request(&rrq).unwrap();
    assert_eq!(parsed.filename, "a/b");
    assert_eq!(parsed.option("BLKSIZE"), Some("1468"));
}
