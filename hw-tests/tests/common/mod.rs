//! The stand-in lab for the hardware tests: two network namespaces joined
//! by a veth pair. The runner holds one end ("srv" namespace, no IP
//! address: the raw link owns 10.77.N.1 in user space), the "board"
//! namespace holds the other with 10.77.N.2 and runs real TFTP clients.
//! Both namespaces go away when the [`Lab`] is dropped, also on a failed
//! assertion.
//!
//! These tests need root (namespaces, raw sockets). They run when
//! `TFTPLAB_REQUIRE_NETNS=1` (CI sets it) and are skipped with a message
//! otherwise.

#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::Read;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod boards;
pub mod qemu;
pub mod standin;

/// True when the netns tests must run; says loudly why they are skipped if
/// not. The notice is written to stderr directly, past the test harness's
/// capture, so a skipped test does not pass silently.
pub fn netns_enabled(test: &str) -> bool {
    if std::env::var_os("TFTPLAB_REQUIRE_NETNS").is_some_and(|v| v == "1") {
        return true;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let how = if root {
        "set TFTPLAB_REQUIRE_NETNS=1 to run it"
    } else {
        "it needs root and network namespaces: run as root with TFTPLAB_REQUIRE_NETNS=1"
    };
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED (not run): {test}: {how}");
    false
}

/// Runs a command, failing with its output if it fails.
pub fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two namespaces and a veth pair between them.
pub struct Lab {
    pub srv_ns: String,
    pub board_ns: String,
    pub srv_if: String,
    pub board_if: String,
    pub server_ip: Ipv4Addr,
    pub board_ip: Ipv4Addr,
}

impl Lab {
    /// Builds the lab. Offloads on the board's veth end are turned off
    /// (`ethtool -K rx off tx off`): with TX offload the board's kernel
    /// leaves partial UDP checksums, and with RX checksumming on, veth
    /// marks our frames "checksum verified" so the board would never catch
    /// a corrupted one.
    pub fn new() -> Lab {
        Lab::with_offload(false)
    }

    pub fn with_offload(offload: bool) -> Lab {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let lab = Lab {
            srv_ns: format!("thw{id}s"),
            board_ns: format!("thw{id}b"),
            srv_if: format!("hs{id}"),
            board_if: format!("hb{id}"),
            server_ip: Ipv4Addr::new(10, 77, (n % 250) as u8, 1),
            board_ip: Ipv4Addr::new(10, 77, (n % 250) as u8, 2),
        };
        for ns in [&lab.srv_ns, &lab.board_ns] {
            // A namespace left by a killed run whose pid we now have.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            sh("ip", &["netns", "add", ns]);
        }
        sh(
            "ip",
            &[
                "link",
                "add",
                &lab.srv_if,
                "netns",
                &lab.srv_ns,
                "type",
                "veth",
                "peer",
                "name",
                &lab.board_if,
                "netns",
                &lab.board_ns,
            ],
        );
        for (ns, dev) in [(&lab.srv_ns, &lab.srv_if), (&lab.board_ns, &lab.board_if)] {
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                ],
            );
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
            sh("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        let cidr = format!("{}/24", lab.board_ip);
        sh(
            "ip",
            &[
                "-n",
                &lab.board_ns,
                "addr",
                "add",
                &cidr,
                "dev",
                &lab.board_if,
            ],
        );
        if !offload {
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &lab.board_ns,
                    "ethtool",
                    "-K",
                    &lab.board_if,
                    "rx",
                    "off",
                    "tx",
                    "off",
                ],
            );
        }
        lab
    }

    /// `program args...` inside the board namespace, killed after `limit`.
    pub fn board_run(&self, program: &str, args: &[&str], limit: Duration) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.board_ns, program])
            .args(args);
        run_with_limit(cmd, limit)
    }

    /// Installs an nftables ruleset in the board namespace.
    pub fn board_nft(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.board_ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ruleset.as_bytes())
            .expect("write ruleset");
        assert!(
            child.wait().expect("nft").success(),
            "nft -f failed:\n{ruleset}"
        );
    }

    /// A counter's packets from `nft list ruleset` in the board namespace:
    /// the number after `packets` on the line with `comment "NAME"`.
    pub fn board_nft_counter(&self, name: &str) -> u64 {
        let out = self.board_run("nft", &["list", "ruleset"], Duration::from_secs(10));
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains(&format!("comment \"{name}\"")))
            .unwrap_or_else(|| panic!("no nft rule {name} in\n{text}"));
        let mut words = line.split_whitespace();
        words.find(|w| *w == "packets");
        words
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in {line}"))
    }

    /// A field of the board namespace's `Udp:` line in /proc/net/snmp.
    pub fn board_udp_stat(&self, field: &str) -> u64 {
        let out = self.board_run("cat", &["/proc/net/snmp"], Duration::from_secs(10));
        let text = String::from_utf8_lossy(&out.stdout);
        let udp: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
        let names: Vec<&str> = udp[0].split_whitespace().collect();
        let values: Vec<&str> = udp[1].split_whitespace().collect();
        let i = names.iter().position(|n| *n == field).expect("field");
        values[i].parse().expect("number")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace destroys its end of the veth pair, and the
        // pair with it.
        for ns in [&self.board_ns, &self.srv_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `cmd` with its output captured; kills it after `limit`.
pub fn run_with_limit(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().expect("wait");
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut stderr);
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A shell word in single quotes.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A TOML string literal.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The real clients the board namespace runs, and how each asks for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    TftpHpa,
    Curl,
    Atftp,
    Busybox,
}

impl Peer {
    pub const ALL: [Peer; 4] = [Peer::TftpHpa, Peer::Curl, Peer::Atftp, Peer::Busybox];

    /// The command line fetching `remote` from `server` into `local`,
    /// with `blksize` where the client has the option (curl without one
    /// sends no options at all).
    pub fn get_command(
        self,
        server: Ipv4Addr,
        remote: &str,
        local: &str,
        blksize: Option<u16>,
    ) -> Vec<String> {
        let s = server.to_string();
        let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            Peer::TftpHpa => v(&["tftp", "-m", "octet", &s, "-c", "get", remote, local]),
            Peer::Curl => {
                let mut c = v(&["curl", "-sS", "--globoff", "-o", local]);
                match blksize {
                    Some(b) => c.extend(v(&["--tftp-blksize", &b.to_string()])),
                    None => c.push("--tftp-no-options".into()),
                }
                c.push(format!("tftp://{s}/{remote}"));
                c
            }
            Peer::Atftp => {
                let mut c = v(&["atftp", "-g", "-r", remote, "-l", local]);
                if let Some(b) = blksize {
                    c.extend(v(&["--option", &format!("blksize {b}")]));
                }
                c.extend(v(&[&s, "69"]));
                c
            }
            Peer::Busybox => {
                let mut c = v(&["busybox", "tftp", "-g", "-r", remote, "-l", local]);
                if let Some(b) = blksize {
                    c.extend(v(&["-b", &b.to_string()]));
                }
                c.extend(v(&[&s, "69"]));
                c
            }
        }
    }
}

/// A fresh directory for one test's run outputs, kept under target/ so CI
/// keeps the pcaps, traces, console logs and JUnit files.
pub fn run_outputs(name: &str) -> std::path::PathBuf {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hw-runs")
        .join(name);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("run output directory");
    out
}
