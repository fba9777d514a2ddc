//! The raw link against real clients in a network namespace: the unchanged
//! tftplab server runs over it, real tftp-hpa, curl, atftp and busybox
//! fetch through the board's kernel, and what they wrote is compared by
//! SHA-256 with what was served.

mod common;

use common::{netns_enabled, sha256, Lab, Peer};
use std::sync::Arc;
use std::time::Duration;
use tftplab::proto::ServerConfig;
use tftplab::runtime::{serve, ServerOptions};
use tftplab::store::{Store, StoreConfig};
use tftplab_hw::frame::{self, Frame};
use tftplab_hw::link::{LinkConfig, PartialChecksums, RawLink, DEFAULT_SERVER_MAC};
use tftplab_hw::pcap::{read_frames, PcapWriter};
use tftplab_sim::lab::faults::{DelayRange, FaultPlan, LinkFaults, Reorder};
use tftplab_sim::lab::scenario::generate;
use tftplab_sim::lab::trace::{Trace, TraceFate};

fn config(lab: &Lab, faults: FaultPlan, pcap: Option<PcapWriter>, trace: Trace) -> LinkConfig {
    LinkConfig {
        interface: lab.srv_if.clone(),
        netns: Some(lab.srv_ns.clone()),
        server_ip: lab.server_ip,
        server_mac: DEFAULT_SERVER_MAC,
        board: None,
        board_name: "board".into(),
        partial_checksums: PartialChecksums::Reject,
        mtu: 1500,
        faults,
        seed: 7,
        pcap,
        trace,
    }
}

/// The server on the lab's address, retransmitting after 300 ms so the
/// faulty runs recover quickly.
fn server_options(lab: &Lab) -> ServerOptions {
    ServerOptions {
        bind: (lab.server_ip, 69).into(),
        transfer: ServerConfig {
            timeout: Duration::from_millis(300),
            retries: 10,
            ..ServerConfig::default()
        },
        ..ServerOptions::default()
    }
}

struct Served {
    _root: tempfile::TempDir,
    store: Arc<Store>,
    files: Vec<(String, Vec<u8>)>,
}

fn served() -> Served {
    served_sized(300_000)
}

fn served_sized(size: u64) -> Served {
    let root = tempfile::tempdir().expect("tempdir");
    let files = vec![
        ("kernel.img".to_string(), generate(size, 1)),
        ("boot/exact.bin".to_string(), generate(1468 * 20, 2)),
        ("empty".to_string(), Vec::new()),
    ];
    for (name, bytes) in &files {
        let p = root.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }
    let store = Arc::new(Store::new(StoreConfig::new(root.path())).expect("store"));
    Served {
        _root: root,
        store,
        files,
    }
}

/// Every peer fetches every file; returns how many fetches were made.
fn fetch_all(lab: &Lab, served: &Served, peers: &[Peer], blksize: Option<u16>) -> usize {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    for &peer in peers {
        for (name, bytes) in &served.files {
            let local = out_dir
                .path()
                .join(format!("{peer:?}-{}", name.replace('/', "_")));
            let local = local.to_string_lossy().to_string();
            // curl 7.88.1 rejects the OACK `tsize 0` of an empty file
            // (tests/interop.rs); without options it fetches it.
            let blksize = if peer == Peer::Curl && bytes.is_empty() {
                None
            } else {
                blksize
            };
            let argv = peer.get_command(lab.server_ip, name, &local, blksize);
            let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
            let out = lab.board_run(&argv[0], &args, Duration::from_secs(60));
            let got = std::fs::read(&local).unwrap_or_default();
            assert!(
                out.status.success() && sha256(&got) == sha256(bytes),
                "{peer:?} get {name}: status {:?}, {} of {} bytes\n{}{}",
                out.status.code(),
                got.len(),
                bytes.len(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    n
}

#[test]
fn real_clients_fetch_intact_files_over_the_raw_link() {
    if !netns_enabled("real_clients_fetch_intact_files_over_the_raw_link") {
        return;
    }
    let lab = Lab::new();
    let served = served();
    let pcap_file = tempfile::NamedTempFile::new().expect("pcap");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let trace = Trace::new();
    let (link, handle, server) = rt.block_on(async {
        let pcap = PcapWriter::create(pcap_file.path()).expect("pcap");
        let (link, handle) = RawLink::open(config(
            &lab,
            FaultPlan::default(),
            Some(pcap),
            trace.clone(),
        ))
        .expect("open link");
        let options = server_options(&lab);
        let server = serve(link.clone(), served.store.clone(), options)
            .await
            .expect("serve");
        (link, handle, server)
    });
    let fetches = fetch_all(&lab, &served, &Peer::ALL, Some(1468));
    let stats = server.stats();
    rt.block_on(server.stop(Duration::from_secs(1)));
    handle.close();
    assert_eq!(stats.succeeded, fetches as u64, "{stats:?}");
    let ls = link.stats();
    assert_eq!(
        ls.bad_checksums + ls.partial_checksums + ls.malformed,
        0,
        "{ls:?}"
    );
    // The pcap holds every frame, each a well-formed UDP or ARP frame with
    // good checksums, and the trace one line per datagram.
    let frames =
        read_frames(&std::fs::read(pcap_file.path()).expect("read pcap")).expect("pcap parses");
    assert_eq!(frames.len() as u64, ls.frames_in + ls.frames_out);
    let udp = frames
        .iter()
        .filter(|f| matches!(frame::parse(f), Frame::Udp(u) if u.checksum == frame::Checksum::Good))
        .count() as u64;
    let arp = frames
        .iter()
        .filter(|f| matches!(frame::parse(f), Frame::Arp(..)))
        .count() as u64;
    assert_eq!(udp + arp, frames.len() as u64);
    assert_eq!(udp, ls.datagrams_in + ls.datagrams_out);
    assert_eq!(trace.len() as u64, udp);
}

#[test]
fn four_clients_at_once_each_get_their_own_transfer_port() {
    if !netns_enabled("four_clients_at_once_each_get_their_own_transfer_port") {
        return;
    }
    let lab = Lab::new();
    let served = served_sized(2_000_000);
    let pcap_file = tempfile::NamedTempFile::new().expect("pcap");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (handle, server) = rt.block_on(async {
        let pcap = PcapWriter::create(pcap_file.path()).expect("pcap");
        let cfg = config(&lab, FaultPlan::default(), Some(pcap), Trace::new());
        let (link, handle) = RawLink::open(cfg).expect("open link");
        let server = serve(link, served.store.clone(), server_options(&lab))
            .await
            .expect("serve");
        (handle, server)
    });
    let out_dir = tempfile::tempdir().expect("tempdir");
    let want = sha256(&served.files[0].1);
    std::thread::scope(|scope| {
        for peer in Peer::ALL {
            let (lab, out_dir, want) = (&lab, out_dir.path(), &want);
            scope.spawn(move || {
                let local = out_dir
                    .join(format!("{peer:?}"))
                    .to_string_lossy()
                    .into_owned();
                let argv = peer.get_command(lab.server_ip, "kernel.img", &local, Some(1024));
                let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
                let out = lab.board_run(&argv[0], &args, Duration::from_secs(60));
                let got = std::fs::read(&local).unwrap_or_default();
                assert!(
                    out.status.success() && &sha256(&got) == want,
                    "{peer:?}: {out:?}"
                );
            });
        }
    });
    let stats = server.stats();
    rt.block_on(server.stop(Duration::from_secs(1)));
    handle.close();
    assert_eq!(stats.succeeded, 4, "{stats:?}");
    // The transfers ran side by side on four server ports: the DATA
    // frames in the pcap switch between ports far more often than four
    // transfers one after another would.
    let frames = read_frames(&std::fs::read(pcap_file.path()).expect("pcap")).expect("parses");
    let data_ports: Vec<u16> = frames
        .iter()
        .filter_map(|f| match frame::parse(f) {
            Frame::Udp(u) if u.src_ip == lab.server_ip && u.payload.starts_with(&[0, 3]) => {
                Some(u.src_port)
            }
            _ => None,
        })
        .collect();
    let mut distinct = data_ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{distinct:?}");
    assert!(
        distinct.iter().all(|p| *p != 69),
        "transfers run on their own ports"
    );
    let switches = data_ports.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches > 20,
        "{switches} switches: the transfers did not overlap"
    );
}

#[test]
fn offload_partial_checksums_are_rejected_unless_accepted() {
    if !netns_enabled("offload_partial_checksums_are_rejected_unless_accepted") {
        return;
    }
    // Offload left on: the board's kernel hands the veth partial checksums.
    let lab = Lab::with_offload(true);
    let served = served();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for policy in [PartialChecksums::Reject, PartialChecksums::Accept] {
        let (link, handle, server) = rt.block_on(async {
            let cfg = LinkConfig {
                partial_checksums: policy,
                ..config(&lab, FaultPlan::default(), None, Trace::new())
            };
            let (link, handle) = RawLink::open(cfg).expect("open link");
            let options = server_options(&lab);
            let server = serve(link.clone(), served.store.clone(), options)
                .await
                .expect("serve");
            (link, handle, server)
        });
        let out = lab.board_run(
            "busybox",
            &[
                "tftp",
                "-g",
                "-r",
                "kernel.img",
                "-l",
                "/dev/null",
                &lab.server_ip.to_string(),
                "69",
            ],
            Duration::from_secs(8),
        );
        rt.block_on(server.stop(Duration::ZERO));
        handle.close();
        let ls = link.stats();
        assert!(ls.partial_checksums > 0, "{policy:?}: {ls:?}");
        match policy {
            PartialChecksums::Reject => {
                assert!(!out.status.success(), "a rejected request cannot complete");
                assert_eq!(ls.datagrams_in, 0, "{ls:?}");
            }
            PartialChecksums::Accept => {
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

#[test]
fn runner_faults_and_nftables_faults_agree_and_files_stay_intact() {
    if !netns_enabled("runner_faults_and_nftables_faults_agree_and_files_stay_intact") {
        return;
    }
    let lab = Lab::new();
    let served = served_sized(100_000);
    let faults = LinkFaults {
        loss: 0.02,
        duplicate: 0.02,
        corrupt: 0.01,
        reorder: Some(Reorder {
            fraction: 0.02,
            delay: DelayRange {
                min: Duration::from_millis(1),
                max: Duration::from_millis(5),
            },
        }),
        ..LinkFaults::default()
    };
    let plan = FaultPlan {
        client_to_server: faults,
        server_to_client: faults,
        script: Vec::new(),
    };
    // The board's own kernel drops 2 % of UDP each way on its interface
    // (netdev hooks: a drop on the output hook would fail the client's
    // sendto with EPERM, which a wire never does), counting what passes,
    // and duplicates every request to port 69 (`dup to`).
    lab.board_nft(&format!(
        "table netdev lab {{
  chain ingress {{ type filter hook ingress device \"{dev}\" priority 0;
    ip saddr {s} ip protocol udp counter comment \"in_seen\"
    ip saddr {s} ip protocol udp numgen random mod 100 < 2 counter drop comment \"in_drop\"
  }}
  chain egress {{ type filter hook egress device \"{dev}\" priority 0;
    ip daddr {s} ip protocol udp counter comment \"out_seen\"
    ip daddr {s} ip protocol udp numgen random mod 100 < 2 counter drop comment \"out_drop\"
  }}
}}
table ip labdup {{
  chain output {{ type filter hook output priority 0;
    ip daddr {s} udp dport 69 dup to {s} device \"{dev}\" comment \"dup_rrq\"
  }}
}}",
        s = lab.server_ip,
        dev = lab.board_if
    ));
    let errors_before = lab.board_udp_stat("InErrors");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let trace = Trace::new();
    let (link, handle, server) = rt.block_on(async {
        let (link, handle) =
            RawLink::open(config(&lab, plan, None, trace.clone())).expect("open link");
        let options = server_options(&lab);
        let server = serve(link.clone(), served.store.clone(), options)
            .await
            .expect("serve");
        (link, handle, server)
    });
    // curl asks for `timeout 6` (its 300 s default budget / 50), so every
    // lost DATA costs it 6 s. atftp 0.8 aborts on a duplicated OACK
    // ("tftp: unexpected OACK"), which this plan produces. Both run in the
    // clean test only.
    let peers = [Peer::TftpHpa, Peer::Busybox];
    let fetches = fetch_all(&lab, &served, &peers, Some(1024)) as u64;
    // A transfer whose final ACK was lost runs until its retries are out.
    let stats = rt.block_on(async {
        for _ in 0..100 {
            if server.stats().active == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.stats()
    });
    rt.block_on(server.stop(Duration::from_secs(1)));
    handle.close();
    let ls = link.stats();
    let events = trace.events();
    let dropped = |from: &str, cause: &str| {
        events
            .iter()
            .filter(|e| {
                e.from == from
                    && matches!(&e.fate, TraceFate::Dropped { cause: c } if c.contains(cause))
            })
            .count() as u64
    };
    // Faults happened in both directions, from both sides.
    assert!(
        dropped("server", "loss") > 0 && dropped("board", "loss") > 0,
        "{ls:?}"
    );
    let corrupted_out = dropped("server", "corrupt");
    assert!(corrupted_out > 0);
    // Every frame the runner damaged on the way out that the board's
    // nftables did not drop first was caught by the board's UDP checks
    // (checksum, or length where a flip hit that field), and nothing else
    // was.
    let board_errors = lab.board_udp_stat("InErrors") - errors_before;
    assert!(
        board_errors <= corrupted_out,
        "{board_errors} > {corrupted_out}"
    );
    assert!(
        board_errors + lab.board_nft_counter("in_drop") >= corrupted_out,
        "{board_errors} errors for {corrupted_out} corrupted frames"
    );
    // What the board's kernel let out is what the runner received.
    let sent_by_board = lab.board_nft_counter("out_seen") - lab.board_nft_counter("out_drop");
    let board_datagrams = events.iter().filter(|e| e.from == "board").count() as u64;
    assert_eq!(sent_by_board, board_datagrams, "{ls:?}");
    assert!(lab.board_nft_counter("in_drop") > 0 && lab.board_nft_counter("out_drop") > 0);
    // Each request arrived twice (unless one copy was lost) and started
    // one transfer only; a second transfer starts only from a copy the
    // runner held back until the first had finished.
    let late_requests = events
        .iter()
        .filter(|e| e.from == "board" && e.packet.starts_with("RRQ"))
        .filter(|e| matches!(e.fate, TraceFate::Delayed { .. }))
        .count() as u64;
    assert!(stats.started <= fetches + late_requests, "{stats:?}");
    assert!(stats.duplicate_requests > 0, "{stats:?}");
    // A server transfer fails only when the board stopped listening after
    // a lost final ACK (or a late request's transfer finds it gone): never
    // more failures than board datagrams lost.
    assert_eq!(stats.active, 0, "{stats:?}");
    assert_eq!(stats.succeeded + stats.failed, stats.started, "{stats:?}");
    let board_lost = dropped("board", "") + lab.board_nft_counter("out_drop");
    assert!(stats.failed <= board_lost + late_requests, "{stats:?}");
    assert!(
        stats.succeeded >= fetches - stats.failed.min(fetches),
        "{stats:?}"
    );
}
