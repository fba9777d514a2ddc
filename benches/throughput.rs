//! Throughput benchmarks: the codec, the sans-IO machines with no sockets,
//! our client against our server over loopback UDP, and netascii.
//!
//! ```sh
//! cargo bench --bench throughput                 # everything (~10 min)
//! cargo bench --bench throughput -- sansio       # one group
//! cargo bench --bench throughput -- 'loopback/1468'
//! ```
//!
//! Every transfer checks its byte count, so a broken build cannot post a
//! fast figure. Figures are MB/s of file data (criterion's `Throughput::Bytes`
//! prints MiB/s and GiB/s; multiply by 1.048576 for MB/s).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tftplab::data::{MemSource, Sink};
use tftplab::netascii::{decode_all, encode_all};
use tftplab::options::OptionRequest;
use tftplab::proto::{
    parse_request, ClientConfig, ClientGet, ServerConfig, ServerRead, Transfer, TransferError,
};
use tftplab::runtime::{serve, Client, ServerOptions, TokioNet};
use tftplab::store::{Store, StoreConfig};
use tftplab::wire::{emit_data_header, Packet, MAX_DATAGRAM};

const BLKSIZES: [u16; 4] = [512, 1468, 8192, 65464];
const WINDOWS: [u16; 3] = [1, 8, 64];

/// A sink that counts: the benches measure the protocol, not a Vec.
#[derive(Default)]
struct CountingSink {
    bytes: u64,
}

impl Sink for CountingSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        assert_eq!(offset, self.bytes, "out-of-order write");
        self.bytes += data.len() as u64;
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn abort(&mut self) {}
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let rrq = b"\x00\x01start4.elf\x00octet\x00tsize\x000\x00blksize\x001024\x00";
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_rrq_with_options", |b| {
        b.iter(|| Packet::parse(black_box(rrq)).unwrap())
    });
    let mut data = vec![0u8; 4 + 1468];
    emit_data_header(&mut data, 7).unwrap();
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("parse_data_1468", |b| {
        b.iter(|| match Packet::parse(black_box(&data)).unwrap() {
            Packet::Data { block, data } => (block, data.len()),
            _ => unreachable!(),
        })
    });
    let mut buf = vec![0u8; MAX_DATAGRAM];
    g.throughput(Throughput::Elements(1));
    g.bench_function("emit_data_header", |b| {
        b.iter(|| emit_data_header(black_box(&mut buf), black_box(9)).unwrap())
    });
    let request = OptionRequest {
        blksize: Some(1468),
        timeout: Some(5),
        tsize: Some(0),
        windowsize: Some(8),
    };
    g.bench_function("emit_request_with_options", |b| {
        b.iter(|| {
            request
                .emit_request(
                    &mut buf,
                    tftplab::wire::Opcode::Rrq,
                    "zImage",
                    tftplab::wire::Mode::Octet,
                )
                .unwrap()
        })
    });
    g.finish();
}

/// One download through the two machines, datagrams passed by hand: the
/// protocol's own cost per block with no sockets and no clock.
fn sansio_download(file: &Arc<[u8]>, blksize: u16, windowsize: u16) -> u64 {
    let server_addr: SocketAddr = "10.0.0.1:69".parse().unwrap();
    let client_addr: SocketAddr = "10.0.0.2:5000".parse().unwrap();
    let transfer_addr: SocketAddr = "10.0.0.1:5001".parse().unwrap();
    let now = Instant::now();
    let config = ClientConfig {
        options: OptionRequest {
            blksize: Some(blksize),
            windowsize: Some(windowsize),
            ..OptionRequest::default()
        },
        ..ClientConfig::default()
    };
    let mut client =
        ClientGet::new(now, server_addr, "f", CountingSink::default(), &config).expect("client");
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let t = client.poll_transmit(now, &mut buf).expect("request");
    let (_, request) = parse_request(&buf[..t.len]).unwrap().unwrap();
    let source = MemSource::new(file.clone());
    let server_config = ServerConfig::default();
    let mut server =
        ServerRead::new(now, client_addr, &request, source, &server_config).expect("server");
    let mut to_client = Vec::with_capacity(usize::from(windowsize));
    let mut to_server = Vec::with_capacity(4);
    let mut pool: Vec<Vec<u8>> = Vec::new();
    loop {
        while let Some(t) = server.poll_transmit(now, &mut buf) {
            let mut d = pool.pop().unwrap_or_default();
            d.clear();
            d.extend_from_slice(&buf[..t.len]);
            to_client.push(d);
        }
        for d in to_client.drain(..) {
            client.handle_datagram(now, transfer_addr, &d);
            pool.push(d);
        }
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            let mut d = pool.pop().unwrap_or_default();
            d.clear();
            d.extend_from_slice(&buf[..t.len]);
            to_server.push(d);
        }
        if to_server.is_empty() {
            break;
        }
        for d in to_server.drain(..) {
            server.handle_datagram(now, client_addr, &d);
            pool.push(d);
        }
    }
    // The client commits once its final ACK is out, at a deadline of now.
    if client.poll_timeout().is_some_and(|d| d <= now) {
        client.handle_timeout(now);
    }
    let mut done = None;
    while let Some(e) = client.poll_event() {
        if let tftplab::proto::Event::Finished(r) = e {
            done = Some(r);
        }
    }
    let summary: Result<_, TransferError> = done.expect("client finished");
    let bytes = summary.expect("download succeeded").bytes;
    assert_eq!(bytes, file.len() as u64);
    bytes
}

fn sansio(c: &mut Criterion) {
    let file: Arc<[u8]> = pattern(8 << 20).into();
    let mut g = c.benchmark_group("sansio");
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.sample_size(10);
    for blksize in BLKSIZES {
        for window in WINDOWS {
            let id = BenchmarkId::new(blksize.to_string(), format!("w{window}"));
            g.bench_with_input(id, &(blksize, window), |b, &(blk, win)| {
                b.iter(|| sansio_download(&file, blk, win))
            });
        }
    }
    g.finish();
}

fn loopback(c: &mut Criterion) {
    let size = 16usize << 20;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("f.bin"), pattern(size)).expect("write file");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(Store::new(StoreConfig::new(dir.path())).expect("store"));
    let options = ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..ServerOptions::default()
    };
    let server = rt
        .block_on(serve(TokioNet, store, options))
        .expect("server");
    let addr = server.local_addr();
    let mut g = c.benchmark_group("loopback");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    for blksize in BLKSIZES {
        for window in WINDOWS {
            let id = BenchmarkId::new(blksize.to_string(), format!("w{window}"));
            let client = Client::new(
                TokioNet,
                ClientConfig {
                    options: OptionRequest {
                        blksize: Some(blksize),
                        windowsize: Some(window),
                        ..OptionRequest::default()
                    },
                    ..ClientConfig::default()
                },
            );
            g.bench_function(id, |b| {
                b.iter(|| {
                    let got = rt
                        .block_on(client.get(addr, "f.bin", CountingSink::default(), |_| {}))
                        .expect("download");
                    assert_eq!(got.bytes, size as u64);
                })
            });
        }
    }
    g.finish();
    rt.block_on(server.stop(Duration::from_secs(1)));
}

fn netascii(c: &mut Criterion) {
    let text: Vec<u8> = b"console=serial0,115200 root=/dev/nfs\nip=dhcp rw\r\n"
        .iter()
        .copied()
        .cycle()
        .take(1 << 20)
        .collect();
    let encoded = encode_all(&text);
    let mut g = c.benchmark_group("netascii");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("encode_1MiB", |b| b.iter(|| encode_all(black_box(&text))));
    g.bench_function("decode_1MiB", |b| {
        b.iter(|| decode_all(black_box(&encoded)))
    });
    g.finish();
}

criterion_group!(benches, codec, sansio, loopback, netascii);
criterion_main!(benches);
