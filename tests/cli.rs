//! The `tftplab` binary as a user runs it: serve a directory, fetch and send
//! files, manage the store, and get one readable line for every mistake.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tftplab"))
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `tftplab serve` process, stopped with SIGTERM on drop.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(root: &Path, extra: &[&str]) -> Served {
        let root = root.to_str().unwrap();
        Served::start_with(&[&["--root", root], extra].concat())
    }

    /// `serve` with these arguments (the root among them, or in a config
    /// file) on a free loopback port.
    fn start_with(args: &[&str]) -> Served {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = bin()
            .arg("serve")
            .args(["--bind", &addr, "--timeout", "0.2"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let served = Served { child, addr };
        served.wait_ready();
        served
    }

    /// Polls with an RRQ for a name that cannot exist until ERROR comes back.
    fn wait_ready(&self) {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            probe
                .send_to(b"\x00\x01\x2e\x2e/ready\x00octet\x00", &self.addr)
                .unwrap();
            let mut buf = [0u8; 512];
            if probe.recv_from(&mut buf).is_ok() {
                return;
            }
        }
        panic!("server on {} did not come up", self.addr);
    }

    fn stop(self) -> Output {
        terminate(&self.child);
        self.stop_output()
    }

    /// Waits for the server to exit on its own and returns what it printed.
    fn stop_output(mut self) -> Output {
        let child = std::mem::replace(&mut self.child, bin().arg("--version").spawn().unwrap());
        child.wait_with_output().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + i / 700) as u8).collect()
}

#[test]
fn serve_get_put_and_graceful_stop() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("9ffefdef")).unwrap();
    let content = data(1_048_577);
    std::fs::write(root.path().join("9ffefdef/start4.elf"), &content).unwrap();
    let served = Served::start(root.path(), &["--write", "create"]);

    let local = work.path().join("start4.elf");
    let (code, _, err) = run(bin()
        .args(["get", &served.addr, "9ffefdef/start4.elf"])
        .arg(&local)
        .args(["--blksize", "1468", "--windowsize", "16", "--tsize"]));
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&local).unwrap() == content);
    assert!(
        err.contains("received 9ffefdef/start4.elf: 1048577 bytes"),
        "{err}"
    );

    // Again with --sync, over the file just fetched: replaced whole, and
    // no temporary file left beside it.
    std::fs::write(&local, b"old").unwrap();
    let (code, _, err) = run(bin()
        .args(["get", "--sync", "-q", &served.addr, "9ffefdef/start4.elf"])
        .arg(&local));
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&local).unwrap() == content);
    let names: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("start4.elf")]);

    let (code, _, err) = run(bin()
        .args(["put", &served.addr])
        .arg(&local)
        .arg("copy.elf"));
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(root.path().join("copy.elf")).unwrap() == content);

    let (code, _, err) = run(bin()
        .args(["put", &served.addr])
        .arg(&local)
        .arg("copy.elf"));
    assert_eq!(code, 3, "the server refused: the file exists");
    assert_eq!(
        err.trim(),
        format!(
            "tftplab: {} refused `copy.elf`: ERROR 6: File already exists",
            served.addr
        )
    );

    let out = bin()
        .args(["get", "-q", &served.addr, "copy.elf", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout == content, "stdout differs from the file");

    let out = served.stop();
    assert!(out.status.success(), "serve exited with {:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("transfer complete"), "{log}");
    assert!(log.contains("bytes=1048577"), "{log}");
    // One start-up line, not the CLI's and the library's both.
    let starts = log.lines().filter(|l| l.contains("serving")).count();
    assert_eq!(starts, 1, "{log}");
    // Every transfer had ended: an upload that lingers to re-answer a lost
    // last DATA is not called running.
    assert!(!log.contains("running transfer(s)"), "{log}");
}

/// `get` into a pipe or device writes the bytes there: it must not rename
/// a temporary file over the node (which once replaced /dev/null with a
/// regular file holding the download).
/// SIGINT: the server says what it waits for and how to stop at once; a
/// second SIGINT stops at once (exit 130) instead of waiting out the grace
/// period for a client that went silent.
#[test]
fn a_second_interrupt_stops_at_once() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("big.bin"), data(1_000_000)).unwrap();
    let served = Served::start(root.path(), &["--grace", "60", "--retries", "100"]);
    // A client that asks and never acknowledges keeps one transfer running
    // (100 retries of at least 0.2 s: long after the second interrupt).
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .send_to(b"\x00\x01big.bin\x00octet\x00", &served.addr)
        .unwrap();
    let mut buf = [0u8; 600];
    silent.recv_from(&mut buf).unwrap();
    let interrupt = || {
        let status = Command::new("kill")
            .args(["-INT", &served.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    interrupt();
    std::thread::sleep(Duration::from_millis(300));
    interrupt();
    let started = Instant::now();
    let out = served.stop_output();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited out the grace period"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("tftplab: stopping: letting 1 running transfer(s) finish for up to 60 s; Ctrl-C again stops at once"),
        "{log}"
    );
    assert!(
        log.contains("tftplab: stopped at once; running transfers were cut off"),
        "{log}"
    );
}

#[test]
fn get_names_the_local_path_when_that_is_the_problem_and_saves_into_a_directory() {
    // A missing directory is refused before anything is fetched: no server
    // is needed to see it, and the remote name is not blamed.
    let (code, _, err) =
        run(bin().args(["get", "127.0.0.1:9", "config.txt", "/nonexistent/dir/x"]));
    assert_eq!(code, 5, "a local problem");
    assert_eq!(
        err,
        "tftplab: cannot save to `/nonexistent/dir/x`: `/nonexistent/dir` is not a directory; \
         create it or choose another LOCAL\n"
    );
    // LOCAL a directory: the file lands inside it, as with `cp`.
    let root = tempfile::tempdir().unwrap();
    let content = data(5000);
    std::fs::create_dir(root.path().join("boot")).unwrap();
    std::fs::write(root.path().join("boot/config.txt"), &content).unwrap();
    let served = Served::start(root.path(), &[]);
    let into = tempfile::tempdir().unwrap();
    let (code, _, err) = run(bin()
        .args(["get", "--quiet", &served.addr, "boot/config.txt"])
        .arg(into.path()));
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(into.path().join("config.txt")).unwrap() == content);
}

#[test]
fn get_into_a_fifo_or_dev_null_streams_and_leaves_the_node() {
    let root = tempfile::tempdir().unwrap();
    let content = data(300_000);
    std::fs::write(root.path().join("f.bin"), &content).unwrap();
    let served = Served::start(root.path(), &[]);
    let (code, _, err) = run(bin().args(["get", "--quiet", &served.addr, "f.bin", "/dev/null"]));
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::FileTypeExt;
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(
        null.file_type().is_char_device(),
        "/dev/null is no longer a device"
    );

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let (code, _, err) = run(bin()
        .args(["get", "--quiet", "--blksize", "1468", &served.addr, "f.bin"])
        .arg(&fifo));
    assert_eq!(code, 0, "{err}");
    assert!(
        reader.join().unwrap() == content,
        "the pipe got other bytes"
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn failures_exit_with_their_status_and_one_line() {
    let root = tempfile::tempdir().unwrap();
    let served = Served::start(root.path(), &[]);
    // Bound and silent: requests to it are neither answered nor refused.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let closed = format!("127.0.0.1:{}", free_port());
    let cases: [(&[&str], i32, String); 5] = [
        (
            &["get", &served.addr, "missing.bin", "/dev/null"],
            3,
            format!(
                "{} refused `missing.bin`: ERROR 1: File not found",
                served.addr
            ),
        ),
        (
            &["get", &served.addr, "../etc/passwd", "/dev/null"],
            3,
            "ERROR 2: Access violation".into(),
        ),
        (
            &["put", &served.addr, "Cargo.toml", "x"],
            3,
            "ERROR 2: Access violation: uploads are disabled".into(),
        ),
        // Nothing listening: the ICMP answer ends it at once, no retries.
        (
            &["get", &closed, "x", "/dev/null"],
            4,
            format!("nothing is listening on {closed} (port unreachable)"),
        ),
        (
            &[
                "get",
                "--retries",
                "1",
                "--timeout",
                "1",
                &silent_addr,
                "x",
                "/dev/null",
            ],
            4,
            format!("no answer from {silent_addr} after 1 retries"),
        ),
    ];
    for (args, status, expected) in cases {
        let (code, _, err) = run(bin().args(args).current_dir(env!("CARGO_MANIFEST_DIR")));
        assert_eq!(code, status, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(&expected), "{args:?}: {err}");
    }
}

/// A socket for a test to play a server on, and its address.
fn fake_server() -> (UdpSocket, String) {
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    (fake, addr)
}

/// A server that sends one full block of 512 bytes, then, on its ACK,
/// ERROR 0: a transfer aborted midway, not a refused request.
#[test]
fn an_error_after_data_is_an_abort_not_a_refusal() {
    let (fake, addr) = fake_server();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 600];
        let (_, client) = fake.recv_from(&mut buf).unwrap();
        let mut data = vec![0, 3, 0, 1];
        data.extend([7u8; 512]);
        fake.send_to(&data, client).unwrap();
        let (n, _) = fake.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x00\x04\x00\x01", "ACK 1");
        fake.send_to(b"\x00\x05\x00\x00server shutting down\x00", client)
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(bin()
        .args(["get", "--quiet", &addr, "kernel.img"])
        .current_dir(dir.path()));
    server.join().unwrap();
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err,
        format!(
            "tftplab: {addr} aborted `kernel.img` after 512 bytes: ERROR 0: server shutting down\n"
        )
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn an_interrupted_get_exits_130_and_leaves_no_file() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let child = bin()
        .args(["get", "--quiet", &addr, "kernel.img"])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The request came: the client is waiting for its answer.
    let mut buf = [0u8; 600];
    silent.recv_from(&mut buf).unwrap();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "tftplab: interrupted; `kernel.img` was not written\n"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn bad_arguments_exit_2_and_say_what_is_wrong() {
    let (code, _, err) = run(bin().args(["get", "127.0.0.1", "f", "--blksize", "7"]));
    assert_eq!(code, 2);
    assert!(err.contains("--blksize"), "{err}");
    let (code, _, err) = run(bin().args([
        "serve",
        "--root",
        "/nonexistent/dir",
        "--bind",
        "127.0.0.1:0",
    ]));
    assert_eq!(code, 5, "a local problem");
    assert!(
        err.starts_with("tftplab: cannot serve /nonexistent/dir"),
        "{err}"
    );
    let (code, _, err) = run(bin().args(["get", "no-such-host.invalid", "f"]));
    assert_eq!(code, 4, "no answer");
    assert!(
        err.contains("cannot resolve `no-such-host.invalid`"),
        "{err}"
    );
}

#[test]
fn store_commands_manage_the_root() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("test.bin");
    std::fs::write(&local, b"abc").unwrap();
    let store = |args: &[&str]| run(bin().args(["store", "--root"]).arg(root.path()).args(args));
    let (code, out, _) = store(&["put", local.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("created test.bin (3 bytes, sha256 ba7816bf"),
        "{out}"
    );
    let (_, out, _) = store(&["put", local.to_str().unwrap()]);
    assert!(out.starts_with("unchanged test.bin"), "{out}");
    let (_, out, _) = store(&["ls"]);
    assert_eq!(out, "           3  test.bin\n");
    let (_, out, _) = store(&["sum", "test.bin"]);
    assert_eq!(
        out,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  test.bin\n"
    );
    let (code, _, _) = store(&["rm", "test.bin"]);
    assert_eq!(code, 0);
    let (_, out, _) = store(&["ls"]);
    assert_eq!(out, "");
    let (code, _, err) = store(&["rm", "test.bin"]);
    assert_eq!(code, 3, "not there");
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn store_takes_its_root_after_the_action_too_and_says_when_it_is_missing() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("config.txt"), b"enable_uart=1\n").unwrap();
    let (code, out, _) = run(bin().args(["store", "ls", "--root"]).arg(root.path()));
    assert_eq!((code, out.as_str()), (0, "          14  config.txt\n"));
    let (code, _, err) = run(bin().args(["store", "ls"]));
    assert_eq!(code, 2);
    assert!(
        err.starts_with(
            "error: store needs the server's root: --root DIR (before or after the action)\n"
        ),
        "{err}"
    );
}

/// Replaces the fields that change from run to run (a peer's port, a
/// duration) with fixed text, so the rest of a JSON event line can be
/// compared byte for byte.
fn normalize_event(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(r#""peer":"127.0.0.1:"#) {
        let start = at + r#""peer":"127.0.0.1:"#.len();
        out.push_str(&rest[..start]);
        out.push_str("PORT");
        rest = rest[start..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    match out.find(r#""seconds":"#) {
        Some(at) if !out[at..].starts_with(r#""seconds":null"#) => {
            let start = at + r#""seconds":"#.len();
            let end = start + out[start..].find(',').unwrap();
            format!("{}S{}", &out[..start], &out[end..])
        }
        _ => out,
    }
}

/// `serve --events json`: a `ready` line with the bound address (port 0
/// resolved), then one line per finished or refused transfer, then
/// `stopped`, each exactly as documented in the README.
#[test]
fn serve_events_json_reports_ready_transfers_and_stop() {
    use std::io::{BufRead, BufReader};
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("boot")).unwrap();
    std::fs::write(root.path().join("boot/kernel.img"), data(3000)).unwrap();
    let mut child = bin()
        .args(["serve", "--root"])
        .arg(root.path())
        .args(["--bind", "127.0.0.1:0", "--events", "json", "--grace", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    let prefix = r#"{"event":"ready","addr":"127.0.0.1:"#;
    assert!(ready.starts_with(prefix), "{ready}");
    let port: u16 = ready[prefix.len()..]
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(port, 0);
    let root_json = root.path().to_str().unwrap();
    assert_eq!(
        ready,
        format!(
            r#"{{"event":"ready","addr":"127.0.0.1:{port}","addrs":["127.0.0.1:{port}"],"root":"{root_json}","write":"off"}}"#
        )
    );
    let addr = format!("127.0.0.1:{port}");

    let (code, _, err) = run(bin().args([
        "get",
        "-q",
        &addr,
        "boot/kernel.img",
        "/dev/null",
        "--blksize",
        "1024",
        "--windowsize",
        "1",
        "--tsize",
    ]));
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = run(bin().args(["get", "-q", &addr, "../x\"y", "/dev/null"]));
    assert_eq!(code, 3);
    let (code, _, _) = run(bin()
        .args(["put", "-q", &addr, "Cargo.toml", "new.txt"])
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    assert_eq!(code, 3);

    let transfer = normalize_event(&lines.next().unwrap().unwrap());
    assert_eq!(
        transfer,
        r#"{"event":"transfer","id":1,"direction":"read","file":"boot/kernel.img","peer":"127.0.0.1:PORT","outcome":"ok","bytes":3000,"blocks":3,"retransmissions":0,"seconds":S,"options":{"blksize":1024,"windowsize":1,"timeout":null,"tsize":3000},"error":null}"#
    );
    let refused = normalize_event(&lines.next().unwrap().unwrap());
    assert_eq!(
        refused,
        r#"{"event":"refused","file":"../x\"y","peer":"127.0.0.1:PORT","code":2,"message":"Access violation"}"#
    );
    let refused = normalize_event(&lines.next().unwrap().unwrap());
    assert_eq!(
        refused,
        r#"{"event":"refused","file":"new.txt","peer":"127.0.0.1:PORT","code":2,"message":"Access violation: uploads are disabled"}"#
    );

    terminate(&child);
    assert_eq!(
        lines.next().unwrap().unwrap(),
        r#"{"event":"stopped","aborted":0}"#
    );
    assert!(lines.next().is_none());
    assert!(child.wait().unwrap().success());
}

/// Without `--events`, `serve` prints nothing on stdout.
#[test]
fn serve_prints_nothing_on_stdout_by_default() {
    let root = tempfile::tempdir().unwrap();
    let served = Served::start(root.path(), &[]);
    let out = served.stop();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"");
}

#[test]
fn serve_warns_when_uploads_are_on_and_the_root_is_read_only() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root writes anywhere: run the server as nobody to see the warning.
    let mut cmd = if running_as_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_tftplab"));
        c
    } else {
        bin()
    };
    let mut child = cmd
        .args(["serve", "--root"])
        .arg(root.path())
        .args(["--bind", "127.0.0.1:0", "--write", "create"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.starts_with("tftplab: warning: --write create, but ")
            && first.ends_with("every upload will be refused until it is"),
        "{first}"
    );
    assert!(second.starts_with("tftplab: serving "), "{second}");
}

/// `/proc/self` belongs to the process's effective uid.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn get_asks_fast_options_by_default_and_plain_asks_none() {
    let root = tempfile::tempdir().unwrap();
    let content = data(100_000);
    std::fs::write(root.path().join("f.bin"), &content).unwrap();
    let served = Served::start(root.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let (code, _, err) = run(bin()
        .args(["get", &served.addr, "f.bin"])
        .current_dir(work.path()));
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(work.path().join("f.bin")).unwrap() == content);
    assert!(err.contains("blksize 1468, window 16, "), "{err}");
    let (code, _, err) = run(bin()
        .args(["get", "--plain", &served.addr, "f.bin"])
        .current_dir(work.path()));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("blksize 512, window 1, "), "{err}");
    // --plain and an option contradict each other.
    let (code, _, _) = run(bin().args(["get", "--plain", "--blksize", "1024", &served.addr, "f"]));
    assert_eq!(code, 2);
}

/// A server that refuses any request with options (ERROR 8) and serves a
/// plain one: the client asks again without options, says so, and gets
/// the file.
#[test]
fn options_refused_with_error_8_are_dropped_and_the_request_made_again() {
    let (fake, addr) = fake_server();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 600];
        let mut requests = Vec::new();
        loop {
            let (n, client) = fake.recv_from(&mut buf).unwrap();
            let request = buf[..n].to_vec();
            // RRQ, name, mode, and nothing after: no options.
            let plain = request.iter().filter(|&&b| b == 0).count() == 3;
            requests.push(request);
            if !plain {
                fake.send_to(b"\x00\x05\x00\x08no options here\x00", client)
                    .unwrap();
                continue;
            }
            // One short block is the whole file; then its ACK.
            fake.send_to(b"\x00\x03\x00\x01hello", client).unwrap();
            let (n, _) = fake.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"\x00\x04\x00\x01");
            return requests;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(bin()
        .args(["get", &addr, "cmdline.txt"])
        .current_dir(dir.path()));
    let requests = server.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("cmdline.txt")).unwrap(),
        b"hello"
    );
    assert_eq!(requests.len(), 2, "one with options, one without");
    assert!(
        err.starts_with(&format!(
            "tftplab: {addr} refused the options (ERROR 8: no options here); asking again without them\n"
        )),
        "{err}"
    );
}

#[test]
fn serve_reads_a_config_file_and_flags_override_it() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.bin"), data(40_000)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lab.toml");
    // The file says blksize 1024 at most and refuses windowsize; the
    // command line's --max-blksize wins over the file's.
    std::fs::write(
        &config,
        format!(
            "root = {:?}\nmax_blksize = 1024\nrefuse = [\"windowsize\"]\n",
            root.path().display().to_string()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let served = Served::start_with(&["--config", config_arg, "--max-blksize", "1200"]);
    let (code, _, err) = run(bin().args(["get", &served.addr, "f.bin", "/dev/null"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("blksize 1200, window 1, "), "{err}");
    let out = served.stop();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(
            "tftplab: options: blksize <= 1200, windowsize refused, timeout <= 30 s, tsize granted"
        ),
        "{log}"
    );

    // A key serve does not have: the file and line, exit 2, before binding.
    std::fs::write(&config, "root = \"/srv\"\n\nmax_blocksize = 1468\n").unwrap();
    let (code, _, err) = run(bin().args(["serve", "--config", config_arg]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err,
        format!(
            "tftplab: {config_arg}:3: `max_blocksize` is not a serve setting; the settings are \
             serve's flags with _ for - (tftplab serve --help)\n"
        )
    );
    let (code, _, err) = run(bin().args(["serve", "--config", "/nonexistent/lab.toml"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("tftplab: --config /nonexistent/lab.toml: "),
        "{err}"
    );
}

#[test]
fn mtu_caps_blksize_and_a_bad_option_name_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.bin"), data(40_000)).unwrap();
    let served = Served::start(root.path(), &["--mtu", "1000"]);
    let (code, _, err) = run(bin().args(["get", &served.addr, "f.bin", "/dev/null"]));
    assert_eq!(code, 0, "{err}");
    // 1000 - 20 (IPv4) - 8 (UDP) - 4 (DATA header).
    assert!(err.contains("blksize 968, window 16, "), "{err}");
    let (code, _, err) = run(bin().args(["serve", "--root", ".", "--refuse", "blocksize"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("`blocksize` is not an option tftplab negotiates"),
        "{err}"
    );
}

#[test]
fn serve_logs_json_lines_when_asked() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.bin"), data(3000)).unwrap();
    let served = Served::start(root.path(), &["--log-format", "json"]);
    let (code, _, err) = run(bin().args([
        "get",
        "--blksize",
        "1024",
        &served.addr,
        "f.bin",
        "/dev/null",
    ]));
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = run(bin().args(["get", &served.addr, "../x", "/dev/null"]));
    assert_eq!(code, 3);
    let out = served.stop();
    let log = String::from_utf8_lossy(&out.stderr);
    for line in log.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not JSON: {line}\n{log}"
        );
    }
    let has = |message: &str, parts: &[&str]| {
        log.lines().any(|l| {
            l.contains(&format!("\"message\":\"{message}\"")) && parts.iter().all(|p| l.contains(p))
        })
    };
    assert!(
        has(
            "serving",
            &["\"write\":\"off\"", "\"options\":\"blksize <= 65464"]
        ),
        "{log}"
    );
    assert!(
        has(
            "transfer started",
            &[
                "\"file\":\"f.bin\"",
                "\"asked\":\"blksize=1024,tsize=0,windowsize=16\"",
                "\"blksize\":1024"
            ]
        ),
        "{log}"
    );
    assert!(
        has(
            "transfer complete",
            &["\"bytes\":3000", "\"windowsize\":16"]
        ),
        "{log}"
    );
    assert!(
        has("refused", &["\"code\":2", "path leaves the root"]),
        "{log}"
    );
}

#[test]
fn serve_exports_prometheus_metrics() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.bin"), data(3000)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let served = Served::start(root.path(), &["--metrics", &metrics]);
    let (code, _, err) = run(bin().args(["get", &served.addr, "f.bin", "/dev/null"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = run(bin().args(["get", &served.addr, "missing", "/dev/null"]));
    assert_eq!(code, 3);
    let mut http = std::net::TcpStream::connect(&metrics).unwrap();
    write!(
        http,
        "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut page = String::new();
    http.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    for line in [
        "tftplab_transfers_started_total{direction=\"read\"} 1",
        "tftplab_transfers_finished_total{direction=\"read\",outcome=\"ok\"} 1",
        "tftplab_bytes_total{direction=\"read\"} 3000",
        // The readiness probe (`../ready`) and the missing file.
        "tftplab_refused_total{code=\"2\"} 1",
        "tftplab_refused_total{code=\"1\"} 1",
        "tftplab_running_transfers 0",
    ] {
        assert!(page.lines().any(|l| l == line), "no `{line}` in:\n{page}");
    }
    // A port that cannot be had: one line, exit 5, before serving.
    let (code, _, err) = run(bin().args([
        "serve",
        "--root",
        ".",
        "--bind",
        "127.0.0.1:0",
        "--metrics",
        &metrics,
    ]));
    assert_eq!(code, 5, "{err}");
    assert!(
        err.starts_with(&format!("tftplab: cannot serve metrics on {metrics}")),
        "{err}"
    );
}

/// Two listening addresses, one server: each board is answered from the
/// address it asked (127.0.0.2 and 127.0.0.3 are both loopback on Linux).
#[test]
fn serve_listens_on_every_bind_and_answers_from_the_address_asked() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.bin"), data(700)).unwrap();
    let port = free_port();
    let (a, b) = (format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}"));
    let served = Served::start(root.path(), &["--bind", &a, "--bind", &b]);
    for addr in [&a, &b] {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.send_to(b"\x00\x01f.bin\x00octet\x00", addr).unwrap();
        let mut buf = [0u8; 600];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..4], b"\x00\x03\x00\x01", "DATA #1 from {addr}");
        assert_eq!(n, 516);
        assert_eq!(from.ip().to_string(), addr.split(':').next().unwrap());
        // Let it end cleanly: the rest of the file, acknowledged.
        client.send_to(b"\x00\x04\x00\x01", from).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!((n, &buf[..4]), (4 + 188, &b"\x00\x03\x00\x02"[..]));
        client.send_to(b"\x00\x04\x00\x02", from).unwrap();
    }
    let out = served.stop();
    let log = String::from_utf8_lossy(&out.stderr);
    // The helper's own --bind first, then these two.
    assert!(log.contains(&format!(", {a}, {b} (write: off)")), "{log}");
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Skips loudly when `program` is missing, or fails under
/// TFTPLAB_REQUIRE_PEERS=1 (CI installs it).
fn have(program: &str, test: &str) -> bool {
    if which(program) {
        return true;
    }
    assert!(
        std::env::var_os("TFTPLAB_REQUIRE_PEERS").is_none_or(|v| v != "1"),
        "TFTPLAB_REQUIRE_PEERS=1 and {program} is missing (.ci/install-peers.sh installs it)"
    );
    eprintln!("SKIPPED {test}: {program} is not installed");
    false
}

/// systemd binds the port and hands it over (`systemd-socket-activate
/// --datagram`, from Debian's systemd package): serve takes it, says it is
/// ready on it, and serves the datagram that woke it.
#[test]
fn serve_takes_its_socket_from_systemd_socket_activation() {
    if !have(
        "systemd-socket-activate",
        "serve_takes_its_socket_from_systemd_socket_activation",
    ) {
        return;
    }
    use std::io::BufRead;
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.bin"), data(1500)).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new("systemd-socket-activate")
        .args([
            "--datagram",
            "-l",
            &addr,
            env!("CARGO_BIN_EXE_tftplab"),
            "serve",
            "--root",
        ])
        .arg(root.path())
        .args(["--events", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // systemd-socket-activate starts serve on the first datagram: a request.
    std::thread::sleep(Duration::from_millis(300));
    let work = tempfile::tempdir().unwrap();
    let got = work.path().join("f.bin");
    let (code, _, err) = run(bin().args(["get", "-q", &addr, "f.bin"]).arg(&got));
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    terminate(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code, 0, "{err}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&got).unwrap(), data(1500));
    assert!(
        ready.starts_with(&format!("{{\"event\":\"ready\",\"addr\":\"{addr}\"")),
        "{ready}"
    );
}

/// Where a service manager asked (`NOTIFY_SOCKET`), serve says READY=1
/// once it listens.
#[test]
fn serve_notifies_the_service_manager_when_ready() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let manager = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args(["serve", "--root"])
        .arg(root.path())
        .args(["--bind", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = manager.recv(&mut buf);
    let _ = child.kill();
    let _ = child.wait();
    let message = String::from_utf8_lossy(&buf[..n.unwrap()]).into_owned();
    assert!(message.starts_with("READY=1\nSTATUS=serving "), "{message}");
}

/// Started as root to bind, serving as `nobody`: a root nobody may write
/// to gets the warning, and uploads are refused by the OS's own check.
#[test]
fn serve_runs_as_another_user_once_bound() {
    if !running_as_root() {
        eprintln!("SKIPPED serve_runs_as_another_user_once_bound: needs root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.bin"), data(100)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let served = Served::start(root.path(), &["--user", "nobody", "--write", "create"]);
    let (code, _, err) = run(bin().args(["get", "-q", &served.addr, "f.bin", "/dev/null"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(bin()
        .args(["put", "-q", &served.addr, "Cargo.toml", "new.txt"])
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("ERROR 2: Access violation: permission denied"),
        "{err}"
    );
    let out = served.stop();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("tftplab: warning: --write create, but "),
        "{log}"
    );
    let (code, _, err) = run(bin().args([
        "serve",
        "--root",
        ".",
        "--bind",
        "127.0.0.1:0",
        "--user",
        "no-such-user-here",
    ]));
    assert_eq!(code, 5, "{err}");
    assert_eq!(err, "tftplab: --user no-such-user-here: no such user\n");
}

/// The shipped units are ones systemd accepts (`systemd-analyze verify`
/// prints nothing), with ExecStart pointed at this build.
#[test]
fn the_systemd_units_verify() {
    if !have("systemd-analyze", "the_systemd_units_verify") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd");
    for unit in ["tftplab.socket", "tftplab.service"] {
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        let text = text.replace("/usr/local/bin/tftplab", env!("CARGO_BIN_EXE_tftplab"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("tftplab.socket"))
        .arg(dir.path().join("tftplab.service"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// Per-board roots with real clients: curl bound to 127.0.0.2 and to
/// 127.0.0.3 asks the same name; the first has a directory of its own.
#[test]
fn per_client_roots_serve_each_board_its_own_files() {
    if !have("curl", "per_client_roots_serve_each_board_its_own_files") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("127.0.0.2")).unwrap();
    std::fs::write(root.path().join("127.0.0.2/cmdline.txt"), b"board two\n").unwrap();
    std::fs::write(root.path().join("cmdline.txt"), b"everyone else\n").unwrap();
    let served = Served::start(root.path(), &["--per-client-root", "ip"]);
    let fetch = |from: &str| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--interface",
                from,
                &format!("tftp://{}/cmdline.txt", served.addr),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(fetch("127.0.0.2"), "board two\n");
    assert_eq!(fetch("127.0.0.3"), "everyone else\n");
    let out = served.stop();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("tftplab: per-client root: ROOT/<client IP>/, else ROOT"),
        "{log}"
    );
}

/// tftpd-hpa's kind of rule file, with tftp-hpa's client: drive letters
/// and backslashes go, private files are refused, and the rules are
/// listed at start in their order.
#[test]
fn remap_rules_rewrite_and_refuse_like_tftpd_hpa() {
    if !have("tftp", "remap_rules_rewrite_and_refuse_like_tftpd_hpa") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("boot")).unwrap();
    std::fs::write(root.path().join("boot/pxelinux.0"), data(2000)).unwrap();
    std::fs::write(root.path().join("boot/keys.pvt"), b"no").unwrap();
    let rules = tempfile::Builder::new()
        .suffix(".rules")
        .tempfile()
        .unwrap();
    std::fs::write(
        rules.path(),
        "# Windows-style clients\n\
         ri ^[a-z]:        # drive letters\n\
         rg \\\\ /          # backslashes\n\
         a \\.pvt$ No\\ private\\ files\n",
    )
    .unwrap();
    let rules_arg = rules.path().to_str().unwrap();
    let served = Served::start(root.path(), &["--remap", rules_arg]);
    let (host, port) = served.addr.split_once(':').unwrap();
    let work = tempfile::tempdir().unwrap();
    let tftp = |remote: &str| {
        Command::new("tftp")
            .args(["-m", "octet", host, port, "-c", "get", remote, "out"])
            .current_dir(work.path())
            .output()
            .unwrap()
    };
    // (tftp-hpa would read `C:...` as a host name: the drive-letter rule
    // is left to the unit tests.)
    tftp("\\boot\\pxelinux.0");
    assert!(std::fs::read(work.path().join("out")).unwrap() == data(2000));
    let refused = tftp("boot/keys.pvt");
    let said = String::from_utf8_lossy(&refused.stdout).into_owned()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("Error code 2: No private files"), "{said}");
    let out = served.stop();
    let log = String::from_utf8_lossy(&out.stderr);
    for rule in [
        "remap rule 1 (line 2): ri",
        "remap rule 2 (line 3): rg",
        "remap rule 3 (line 4): a",
    ] {
        assert!(log.contains(rule), "{rule}: {log}");
    }
    assert!(log.contains("refused by the remap rule on line 4"), "{log}");
    // A bad rule: the file and line, exit 2, nothing served.
    std::fs::write(rules.path(), "r ^a b\nrq ^c d\n").unwrap();
    let (code, _, err) = run(bin().args([
        "serve",
        "--root",
        ".",
        "--bind",
        "127.0.0.1:0",
        "--remap",
        rules_arg,
    ]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err,
        format!("tftplab: {rules_arg}:2: `q` is not a rule flag (r g e s a i ~ G P 4 6)\n")
    );
}

/// --single-port: every transfer answers from the listening port, and
/// four real clients at once (two of them windowed) each get their file
/// intact.
#[test]
fn single_port_serves_every_transfer_from_the_listening_port() {
    let root = tempfile::tempdir().unwrap();
    for (name, len) in [
        ("a.bin", 700_000),
        ("b.bin", 400_000),
        ("c.bin", 300_000),
        ("d.bin", 200_000),
    ] {
        std::fs::write(root.path().join(name), data(len)).unwrap();
    }
    let served = Served::start(root.path(), &["--single-port"]);
    // A raw client sees DATA #1 come from the listening port.
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.send_to(b"\x00\x01d.bin\x00octet\x00", &served.addr)
        .unwrap();
    let mut buf = [0u8; 600];
    let (_, from) = raw.recv_from(&mut buf).unwrap();
    assert_eq!(
        from.to_string(),
        served.addr,
        "DATA #1 from the listening port"
    );
    assert_eq!(&buf[..4], b"\x00\x03\x00\x01");
    // Four at once: our client windowed and lock-step, and the peers
    // that are installed (tftp-hpa, curl).
    let work = tempfile::tempdir().unwrap();
    let out = |n: &str| work.path().join(n);
    let (host, port) = served.addr.split_once(':').unwrap();
    let mut clients: Vec<(std::process::Child, &str)> = vec![
        (
            bin()
                .args(["get", "-q", "--windowsize", "16", &served.addr, "a.bin"])
                .arg(out("a.bin"))
                .spawn()
                .unwrap(),
            "a.bin",
        ),
        (
            bin()
                .args(["get", "-q", "--windowsize", "1", &served.addr, "b.bin"])
                .arg(out("b.bin"))
                .spawn()
                .unwrap(),
            "b.bin",
        ),
    ];
    if have(
        "tftp",
        "single_port_serves_every_transfer_from_the_listening_port",
    ) {
        let child = Command::new("tftp")
            .args(["-m", "octet", host, port, "-c", "get", "c.bin"])
            .arg(out("c.bin"))
            .spawn()
            .unwrap();
        clients.push((child, "c.bin"));
    }
    if have(
        "curl",
        "single_port_serves_every_transfer_from_the_listening_port",
    ) {
        let child = Command::new("curl")
            .args([
                "-sS",
                "--tftp-blksize",
                "1468",
                &format!("tftp://{}/d.bin", served.addr),
                "-o",
            ])
            .arg(out("d.bin"))
            .spawn()
            .unwrap();
        clients.push((child, "d.bin"));
    }
    for (mut child, name) in clients {
        assert!(child.wait().unwrap().success(), "{name}");
        assert!(
            std::fs::read(out(name)).unwrap() == std::fs::read(root.path().join(name)).unwrap(),
            "{name} differs"
        );
    }
    let (code, _, err) = run(bin().args([
        "serve",
        "--root",
        ".",
        "--single-port",
        "--port-range",
        "50000-50010",
    ]));
    assert_eq!(code, 2, "{err}");
}
