//! The server and client over real UDP sockets on loopback.

use super::*;
use crate::options::OptionRequest;
use crate::proto::{ClientConfig, ServerConfig, TransferError};
use crate::store::{Store, StoreConfig, WritePolicy};
use crate::wire::{ErrorCode, Packet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::UdpSocket;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 9) as u8)
        .collect()
}

struct Lab {
    _dir: TempDir,
    server: ServerHandle,
}

async fn lab(configure: impl FnOnce(StoreConfig) -> StoreConfig, options: ServerOptions) -> Lab {
    let dir = TempDir::new().unwrap();
    let store = Store::new(configure(StoreConfig::new(dir.path()))).unwrap();
    let options = ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..options
    };
    let server = serve(TokioNet, Arc::new(store), options).await.unwrap();
    Lab { _dir: dir, server }
}

fn client(options: OptionRequest) -> Client<TokioNet> {
    Client::new(
        TokioNet,
        ClientConfig {
            options,
            timeout: Duration::from_millis(200),
            ..ClientConfig::default()
        },
    )
}

fn fast_server() -> ServerOptions {
    ServerOptions {
        transfer: ServerConfig {
            timeout: Duration::from_millis(200),
            retries: 3,
            ..ServerConfig::default()
        },
        ..ServerOptions::default()
    }
}

/// The Jumpstarter driver's example, as this project's own test: start,
/// upload through the store, see it listed, fetch it over UDP, delete it,
/// see it gone and get ERROR 1.
#[tokio::test]
async fn jumpstarter_style_upload_list_fetch_delete() {
    let lab = lab(|c| c, fast_server()).await;
    let addr = lab.server.local_addr();
    assert_ne!(lab.server.port(), 0);
    let store = lab.server.store().clone();
    let data = pattern(100_000, 7);
    let put = store.put_bytes("test.bin", &data).unwrap();
    assert!(put.created);
    let listed = store.list().unwrap();
    assert!(listed
        .iter()
        .any(|e| e.name == "test.bin" && e.size == 100_000));
    let fetched = client(OptionRequest::default())
        .get_bytes(addr, "test.bin")
        .await
        .unwrap();
    assert!(fetched == data);
    store.delete("test.bin").unwrap();
    assert!(!store.exists("test.bin"));
    let err = client(OptionRequest::default())
        .get_bytes(addr, "test.bin")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::FILE_NOT_FOUND));
    lab.server.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn nested_paths_and_options_rpi4_style() {
    let lab = lab(|c| c, fast_server()).await;
    let data = pattern(2_228_224 / 8, 1);
    lab.server
        .store()
        .put_bytes("9ffefdef/start4.elf", &data)
        .unwrap();
    let c = client(OptionRequest {
        tsize: Some(0),
        blksize: Some(1024),
        ..OptionRequest::default()
    });
    let mut seen_total = None;
    let dir = TempDir::new().unwrap();
    let local = dir.path().join("start4.elf");
    let summary = c
        .get_file(
            lab.server.local_addr(),
            "9ffefdef/start4.elf",
            &local,
            |p| seen_total = p.total,
        )
        .await
        .unwrap();
    assert_eq!(summary.negotiated.blksize, 1024);
    assert_eq!(seen_total, Some(data.len() as u64));
    assert!(std::fs::read(&local).unwrap() == data);
    lab.server.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn uploads_follow_the_write_policy() {
    let off = lab(|c| c, fast_server()).await;
    let err = client(OptionRequest::default())
        .put_bytes(off.server.local_addr(), "x.bin", vec![1, 2, 3])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ACCESS_VIOLATION));

    let create = lab(|c| c.write(WritePolicy::Create), fast_server()).await;
    let addr = create.server.local_addr();
    let c = client(OptionRequest {
        blksize: Some(1468),
        windowsize: Some(8),
        tsize: Some(0),
        ..OptionRequest::default()
    });
    let data = pattern(300_000, 3);
    c.put_bytes(addr, "up/new.bin", data.clone())
        .await
        .unwrap_err();
    std::fs::create_dir(create.server.store().root().join("up")).unwrap();
    c.put_bytes(addr, "up/new.bin", data.clone()).await.unwrap();
    assert!(std::fs::read(create.server.store().root().join("up/new.bin")).unwrap() == data);
    let again = c.put_bytes(addr, "up/new.bin", vec![9]).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::FILE_EXISTS));
    assert!(std::fs::read(create.server.store().root().join("up/new.bin")).unwrap() == data);
}

#[tokio::test]
async fn traversal_and_mail_mode_are_refused() {
    let lab = lab(|c| c, fast_server()).await;
    let addr = lab.server.local_addr();
    let c = client(OptionRequest::default());
    let err = c.get_bytes(addr, "../etc/passwd").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ACCESS_VIOLATION));
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw.send_to(b"\x00\x01file\x00mail\x00", addr)
        .await
        .unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = raw.recv_from(&mut buf).await.unwrap();
    assert!(matches!(
        Packet::parse(&buf[..n]),
        Ok(Packet::Error {
            code: ErrorCode::ILLEGAL_OPERATION,
            ..
        })
    ));
}

async fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

#[tokio::test]
async fn duplicate_request_starts_one_transfer_and_strangers_get_error_5() {
    let lab = lab(|c| c, fast_server()).await;
    lab.server
        .store()
        .put_bytes("f", &pattern(2000, 0))
        .unwrap();
    let addr = lab.server.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"\x00\x01f\x00octet\x00", addr).await.unwrap();
    let (first, tid) = recv(&sock).await;
    assert_eq!(&first[..4], b"\x00\x03\x00\x01");
    sock.send_to(b"\x00\x01f\x00octet\x00", addr).await.unwrap();
    // A stranger on the transfer's port gets ERROR 5; the transfer goes on.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stranger.send_to(b"\x00\x04\x00\x01", tid).await.unwrap();
    let (err, _) = recv(&stranger).await;
    assert_eq!(&err[..4], b"\x00\x05\x00\x05");
    sock.send_to(b"\x00\x04\x00\x01", tid).await.unwrap();
    let (second, from) = recv(&sock).await;
    assert_eq!((&second[..4], from), (&b"\x00\x03\x00\x02"[..], tid));
    assert_eq!(lab.server.stats().started, 1);
    assert_eq!(lab.server.stats().duplicate_requests, 1);
}

/// Waits until the server has no transfer left.
async fn until_idle(server: &ServerHandle) {
    for _ in 0..500 {
        if server.stats().active == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the server never went idle");
}

/// Fetches the 600-byte "f" in lock-step: DATA 1 (512 bytes), DATA 2 (88).
async fn fetch_f(sock: &UdpSocket, server: SocketAddr) {
    sock.send_to(b"\x00\x01f\x00octet\x00", server)
        .await
        .unwrap();
    let (one, tid) = recv(sock).await;
    assert_eq!((&one[..4], one.len()), (&b"\x00\x03\x00\x01"[..], 516));
    sock.send_to(b"\x00\x04\x00\x01", tid).await.unwrap();
    let (two, _) = recv(sock).await;
    assert_eq!((&two[..4], two.len()), (&b"\x00\x03\x00\x02"[..], 92));
    sock.send_to(b"\x00\x04\x00\x02", tid).await.unwrap();
}

/// Whether anything arrives within `wait`.
async fn silent_for(sock: &UdpSocket, wait: Duration) -> bool {
    let mut buf = [0u8; 600];
    tokio::time::timeout(wait, sock.recv_from(&mut buf))
        .await
        .is_err()
}

#[tokio::test]
async fn a_late_copy_of_a_finished_request_starts_nothing() {
    // fast_server: a 200 ms retransmission timeout, which is also how long
    // a succeeded request is remembered.
    let lab = lab(|c| c, fast_server()).await;
    lab.server.store().put_bytes("f", &pattern(600, 0)).unwrap();
    let addr = lab.server.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    fetch_f(&sock, addr).await;
    until_idle(&lab.server).await;
    // The network delivers a late copy of the RRQ: nothing starts, so no
    // DATA goes to a port the client may have closed.
    sock.send_to(b"\x00\x01f\x00octet\x00", addr).await.unwrap();
    assert!(silent_for(&sock, Duration::from_millis(100)).await);
    let stats = lab.server.stats();
    assert_eq!((stats.started, stats.duplicate_requests), (1, 1));
    // Past the timeout the same request is a new one, and is served.
    tokio::time::sleep(Duration::from_millis(150)).await;
    fetch_f(&sock, addr).await;
    assert_eq!(lab.server.stats().started, 2);
}

#[tokio::test]
async fn a_request_repeated_after_an_aborted_transfer_is_served_at_once() {
    // The rpi4 bootloader's tsize probe: it ends the transfer with an
    // ERROR after DATA 1, then asks again for the same file from the
    // same port with the same options.
    let lab = lab(|c| c, fast_server()).await;
    lab.server.store().put_bytes("f", &pattern(600, 0)).unwrap();
    let addr = lab.server.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"\x00\x01f\x00octet\x00", addr).await.unwrap();
    let (_, tid) = recv(&sock).await;
    sock.send_to(b"\x00\x05\x00\x00Early terminate\x00", tid)
        .await
        .unwrap();
    until_idle(&lab.server).await;
    fetch_f(&sock, addr).await;
    let stats = lab.server.stats();
    assert_eq!((stats.started, stats.duplicate_requests), (2, 0));
}

#[tokio::test]
async fn requests_beyond_the_cap_get_server_busy() {
    let options = ServerOptions {
        max_transfers: 1,
        ..fast_server()
    };
    let lab = lab(|c| c, options).await;
    lab.server
        .store()
        .put_bytes("f", &pattern(5000, 0))
        .unwrap();
    let addr = lab.server.local_addr();
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    a.send_to(b"\x00\x01f\x00octet\x00", addr).await.unwrap();
    recv(&a).await; // DATA 1, transfer running
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    b.send_to(b"\x00\x01f\x00octet\x00", addr).await.unwrap();
    let (busy, _) = recv(&b).await;
    match Packet::parse(&busy) {
        Ok(Packet::Error { code, message }) => {
            assert_eq!(code, ErrorCode::UNDEFINED);
            assert!(message.contains("busy"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lab.server.stats().busy, 1);
}

#[tokio::test]
async fn stop_aborts_stalled_transfers_after_the_grace_period() {
    stop_aborts_a_stalled_transfer().await;
}

/// The same on a runtime with worker threads, where a lock-step transfer
/// waits from a thread of its own (the driver's parked mode) and must
/// still hear the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_aborts_a_stalled_transfer_waiting_on_its_own_thread() {
    stop_aborts_a_stalled_transfer().await;
}

async fn stop_aborts_a_stalled_transfer() {
    let lab = lab(|c| c.remove_created_on_close(true), fast_server()).await;
    let store = lab.server.store().clone();
    store.put_bytes("staged.bin", &pattern(9000, 0)).unwrap();
    let mut events = lab.server.subscribe();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"\x00\x01staged.bin\x00octet\x00", lab.server.local_addr())
        .await
        .unwrap();
    recv(&sock).await; // DATA 1; the client never ACKs.
    let root = store.root().to_path_buf();
    let report = lab.server.stop(Duration::from_millis(50)).await;
    assert_eq!(report.aborted, 1);
    assert_eq!(report.removed, vec!["staged.bin".to_string()]);
    assert!(!root.join("staged.bin").exists());
    // The client is told: possibly a retransmitted DATA 1 first, then ERROR 0.
    loop {
        let (pkt, _) = recv(&sock).await;
        if pkt[1] == 5 {
            assert_eq!(&pkt[..4], b"\x00\x05\x00\x00");
            break;
        }
    }
    let mut finished = None;
    while let Ok(ev) = events.try_recv() {
        if let ServerEvent::Finished { result, .. } = ev {
            finished = Some(result);
        }
    }
    assert!(matches!(finished, Some(Err(TransferError::Local { .. }))));
}

/// Nothing listens on the port: the host's ICMP answer ends the request
/// as unreachable, where a silent server costs the retries (the timeout
/// here is a minute, so a client that missed the ICMP error hangs the test
/// instead of passing it).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_closed_port_is_unreachable_not_a_timeout() {
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let c = Client::new(
        TokioNet,
        ClientConfig {
            timeout: Duration::from_secs(60),
            ..ClientConfig::default()
        },
    );
    let err = c.get_bytes(closed, "f").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable(_)), "{err}");
    assert_eq!(err.code(), None);
}

#[tokio::test]
async fn client_times_out_against_a_silent_server() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let c = Client::new(
        TokioNet,
        ClientConfig {
            timeout: Duration::from_millis(20),
            retries: 2,
            ..ClientConfig::default()
        },
    );
    let err = c
        .get_bytes(silent.local_addr().unwrap(), "f")
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ClientError::Transfer(TransferError::TimedOut { retries: 2 })
    ));
    // The RRQ was sent three times.
    for _ in 0..3 {
        let (pkt, _) = recv(&silent).await;
        assert_eq!(&pkt[..2], b"\x00\x01");
    }
}

#[tokio::test]
async fn ipv6_loopback_works() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::new(StoreConfig::new(dir.path())).unwrap());
    let options = ServerOptions {
        bind: "[::1]:0".parse().unwrap(),
        ..fast_server()
    };
    let Ok(server) = serve(TokioNet, store, options).await else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (not run): no IPv6 loopback on this machine"
        );
        return;
    };
    server.store().put_bytes("v6.bin", b"over ipv6").unwrap();
    let got = client(OptionRequest::default())
        .get_bytes(server.local_addr(), "v6.bin")
        .await
        .unwrap();
    assert_eq!(got, b"over ipv6");
}

/// An embedding program can spawn client transfers on a multi-thread
/// runtime: the futures are Send.
/// Lock-step downloads and uploads with a server on worker threads, where
/// its transfers may wait from threads of their own, several at once so
/// some do and some go through the runtime: every byte arrives, and a
/// lost ACK is recovered by the parked side's timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_step_transfers_on_worker_threads_arrive_whole() {
    let lab = lab(|c| c.write(WritePolicy::Create), fast_server()).await;
    let store = lab.server.store().clone();
    let addr = lab.server.local_addr();
    let mut tasks = Vec::new();
    for i in 0..4u8 {
        let content = pattern(300_000 + usize::from(i), i);
        store.put_bytes(&format!("d{i}.bin"), &content).unwrap();
        tasks.push(tokio::spawn(async move {
            let options = OptionRequest {
                blksize: Some(1024),
                ..OptionRequest::default()
            };
            let dir = TempDir::new().unwrap();
            let local = dir.path().join("d.bin");
            let c = client(options);
            c.get_file(addr, &format!("d{i}.bin"), &local, |_| {})
                .await
                .unwrap();
            assert_eq!(std::fs::read(&local).unwrap(), content);
            let up = pattern(200_000, i ^ 0x55);
            c.put_bytes(addr, &format!("u{i}.bin"), up.clone())
                .await
                .unwrap();
            up
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let up = task.await.unwrap();
        let landed = std::fs::read(store.root().join(format!("u{i}.bin"))).unwrap();
        assert!(landed == up, "u{i}.bin differs");
    }
    // A lost ACK: the parked (or not) server resends DATA 1 on its timer.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"\x00\x01d0.bin\x00octet\x00", addr)
        .await
        .unwrap();
    let (first, tid) = recv(&sock).await;
    let (again, _) = recv(&sock).await; // no ACK sent: the timer's resend
    assert_eq!(first, again);
    sock.send_to(b"\x00\x05\x00\x00done", tid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_futures_can_be_spawned() {
    let lab = lab(|c| c, fast_server()).await;
    lab.server
        .store()
        .put_bytes("s.bin", &pattern(10_000, 9))
        .unwrap();
    let addr = lab.server.local_addr();
    let dir = TempDir::new().unwrap();
    let local = dir.path().join("s.bin");
    let task = tokio::spawn(async move {
        let c = client(OptionRequest::default());
        c.get_file(addr, "s.bin", &local, |_| {})
            .await
            .map(|s| s.bytes)
    });
    assert_eq!(task.await.unwrap().unwrap(), 10_000);
}

/// A client that keeps a transfer going, one slow ACK at a time, holds its
/// slot only for `max_transfer_time`: then the server ends it with ERROR 0.
#[tokio::test]
async fn a_transfer_that_outlives_its_time_limit_is_aborted() {
    outliving_its_time_limit_aborts().await;
}

/// The same from a thread of its own (see above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_waiting_on_its_own_thread_is_aborted_at_its_time_limit() {
    outliving_its_time_limit_aborts().await;
}

async fn outliving_its_time_limit_aborts() {
    let options = ServerOptions {
        max_transfer_time: Duration::from_millis(300),
        ..fast_server()
    };
    let lab = lab(|c| c, options).await;
    lab.server
        .store()
        .put_bytes("slow.bin", &pattern(100 * 512, 3))
        .unwrap();
    let mut events = lab.server.subscribe();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let started = std::time::Instant::now();
    sock.send_to(b"\x00\x01slow.bin\x00octet\x00", lab.server.local_addr())
        .await
        .unwrap();
    let error = loop {
        let (pkt, tid) = recv(&sock).await;
        if pkt[1] == 5 {
            break pkt;
        }
        // ACK each block 50 ms late: 100 blocks would take 5 s.
        tokio::time::sleep(Duration::from_millis(50)).await;
        sock.send_to(&[0, 4, pkt[2], pkt[3]], tid).await.unwrap();
    };
    assert_eq!(&error[..4], b"\x00\x05\x00\x00");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    loop {
        if let ServerEvent::Finished { result, .. } = events.recv().await.unwrap() {
            let Err(TransferError::Local { code, message }) = result else {
                panic!("{result:?}");
            };
            assert_eq!(
                (code, message.as_str()),
                (ErrorCode::UNDEFINED, "transfer took too long")
            );
            break;
        }
    }
    until_idle(&lab.server).await;
}

/// Opens run off the listener, bounded by a deadline: with a file system
/// that takes seconds to open anything, a request is refused with ERROR 0
/// "server busy" once the deadline passes, and the listener meanwhile still
/// answers what needs no file (here a malformed request, at once).
#[tokio::test]
async fn a_hung_open_costs_its_request_the_deadline_not_the_listener() {
    #[derive(Clone)]
    struct SlowDisk;
    impl Network for SlowDisk {
        type Socket = <TokioNet as Network>::Socket;
        fn bind(
            &self,
            addr: SocketAddr,
        ) -> impl std::future::Future<Output = std::io::Result<Self::Socket>> + Send {
            TokioNet.bind(addr)
        }
        fn run_blocking<R: Send + 'static>(
            &self,
            work: impl FnOnce() -> R + Send + 'static,
        ) -> impl std::future::Future<Output = std::io::Result<R>> + Send {
            TokioNet.run_blocking(move || {
                std::thread::sleep(Duration::from_secs(2));
                work()
            })
        }
    }
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::new(StoreConfig::new(dir.path())).unwrap());
    store.put_bytes("f", b"hello").unwrap();
    let options = ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        open_deadline: Duration::from_millis(200),
        ..fast_server()
    };
    let server = serve(SlowDisk, store, options).await.unwrap();
    let addr = server.local_addr();
    let slow = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let started = std::time::Instant::now();
    slow.send_to(b"\x00\x01f\x00octet\x00", addr).await.unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    other.send_to(b"\x00\x01\x00octet\x00", addr).await.unwrap();
    let (malformed, _) = recv(&other).await;
    assert_eq!(&malformed[..4], b"\x00\x05\x00\x04");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let (busy, _) = recv(&slow).await;
    match Packet::parse(&busy) {
        Ok(Packet::Error { code, message }) => {
            assert_eq!(code, ErrorCode::UNDEFINED);
            assert!(message.contains("busy"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    until_idle(&server).await;
}

/// `max_upload` is set once, on the store, and still refuses a WRQ whose
/// announced `tsize` is over it before any data moves: the answer to the
/// request is ERROR 3, not an OACK.
#[tokio::test]
async fn the_stores_upload_limit_refuses_an_announced_tsize_up_front() {
    let lab = lab(
        |c| c.write(WritePolicy::Create).max_upload(Some(1000)),
        fast_server(),
    )
    .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(
            b"\x00\x02big.bin\x00octet\x00tsize\x002000\x00",
            lab.server.local_addr(),
        )
        .await
        .unwrap();
    let mut buf = [0u8; 600];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    match Packet::parse(&buf[..len]).unwrap() {
        Packet::Error { code, .. } => assert_eq!(code, ErrorCode::DISK_FULL),
        other => panic!("expected ERROR 3, got {other:?}"),
    }
    assert!(!lab.server.store().exists("big.bin"));
    lab.server.stop(Duration::from_secs(1)).await;
}
