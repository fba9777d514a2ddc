#!/usr/bin/env python3
"""Side-by-side download throughput: tftplab against tftpd-hpa and atftpd.

Run through benches/compare-peers.sh (it installs the peers and builds
tftplab first). In one invocation this starts the three servers on loopback
high ports over the same root, downloads the same file with the same client
and options from each server in turn (the server order rotates run by run,
so drift in machine load is shared), checks the SHA-256 of every download,
and prints per (client, options, server): median MB/s (10^6 B/s), min-max,
median server CPU seconds per run and per MiB, and the ratio of tftplab to
the best peer server. Only ratios from one run mean anything on a noisy
machine.

A server that does not take part in a configuration (tftpd-hpa has no
windowsize; it would silently fall back to lock-step) is left out of it.
A missing peer is reported and skipped, never faked.
"""

import argparse
import hashlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CpuGroup:
    """A cgroup of its own for one server, so its CPU time counts every
    process it forks (tftpd-hpa forks one child per transfer and lets the
    kernel reap it, so the parent's cutime never sees them). cgroup v1
    cpuacct or v2; None where neither can be made (not root)."""

    def __init__(self, name):
        self.path = self.usage_file = None
        for base, usage in [("/sys/fs/cgroup/cpuacct", "cpuacct.usage"),
                            ("/sys/fs/cgroup", "cpu.stat")]:
            if not Path(base, usage).exists() and not Path(base, "cgroup.procs").exists():
                continue
            path = Path(base) / f"tftplab-compare-{os.getpid()}-{name}"
            try:
                path.mkdir()
            except OSError:
                continue
            if (path / usage).exists():
                self.path, self.usage_file = path, path / usage
                return
            path.rmdir()

    def join(self):
        """In the child before exec: move into the group."""
        if self.path:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self):
        text = self.usage_file.read_text()
        if self.usage_file.name == "cpuacct.usage":
            return int(text) / 1e9
        for line in text.splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) / 1e6
        return 0.0

    def remove(self):
        if self.path:
            try:
                self.path.rmdir()
            except OSError:
                pass


def cpu_seconds(pid):
    """utime + stime of a process and its reaped children: the fallback
    where no cgroup can be made."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def which(name, extra=()):
    for d in extra:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class Server:
    def __init__(self, name, argv, port):
        self.name, self.argv, self.port = name, argv, port
        self.proc = None
        self.group = CpuGroup(name)

    def start(self):
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=self.group.join)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited at once: {' '.join(self.argv)}")

    def cpu(self):
        if self.group.path:
            return self.group.seconds()
        return cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        time.sleep(0.2)
        self.group.remove()


def client_argv(client, tftplab, port, out, blksize, window):
    host = "127.0.0.1"
    if client == "curl":
        return ["curl", "-sS", "--tftp-blksize", str(blksize), "-o", out,
                f"tftp://{host}:{port}/file.bin"]
    if client == "atftp":
        argv = ["atftp", "--option", f"blksize {blksize}"]
        if window > 1:
            argv += ["--option", f"windowsize {window}"]
        return argv + ["-g", "-r", "file.bin", "-l", out, host, str(port)]
    if client == "busybox":
        return ["busybox", "tftp", "-g", "-r", "file.bin", "-l", out,
                "-b", str(blksize), host, str(port)]
    if client == "tftplab":
        argv = [tftplab, "get", "--quiet", "--blksize", str(blksize)]
        if window > 1:
            argv += ["--windowsize", str(window)]
        return argv + [f"{host}:{port}", "file.bin", out]
    raise ValueError(client)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds before one download counts as stalled")
    ap.add_argument("--tftplab", default=str(REPO / "target/release/tftplab"))
    args = ap.parse_args()

    atftpd = os.environ.get("TFTPLAB_ATFTPD") or which(
        "atftpd", [REPO / "target/peers/atftpd/usr/sbin"])
    in_tftpd = which("in.tftpd")
    missing = [n for n, p in [("in.tftpd (tftpd-hpa)", in_tftpd), ("atftpd", atftpd)]
               if not p]
    clients = {c: which(c) for c in ["curl", "atftp", "busybox"]}
    missing += [c for c, p in clients.items() if not p]
    for m in missing:
        print(f"MISSING: {m} (run .ci/install-peers.sh as root); its rows are skipped")

    work = Path(tempfile.mkdtemp(prefix="tftplab-compare-"))
    root = work / "root"
    root.mkdir()
    os.chmod(work, 0o755)
    os.chmod(root, 0o755)
    data = os.urandom(args.size_mib << 20)
    (root / "file.bin").write_bytes(data)
    os.chmod(root / "file.bin", 0o644)
    want = hashlib.sha256(data).hexdigest()
    del data

    servers = {}
    p = free_port()
    servers["tftplab"] = Server("tftplab", [args.tftplab, "serve", "--root", str(root),
                                            "--bind", f"127.0.0.1:{p}"], p)
    if in_tftpd:
        p = free_port()
        servers["tftpd-hpa"] = Server("tftpd-hpa", [
            in_tftpd, "--foreground", "--address", f"127.0.0.1:{p}", "--secure",
            "--user", "root", str(root)], p)
    if atftpd:
        p = free_port()
        servers["atftpd"] = Server("atftpd", [
            atftpd, "--daemon", "--no-fork", "--port", str(p), "--bind-address",
            "127.0.0.1", "--logfile", "/dev/null", "--user", "root", "--group", "root",
            str(root)], p)

    # (client, blksize, windowsize, servers taking part)
    peers = [s for s in ("tftpd-hpa", "atftpd") if s in servers]
    configs = [
        ("curl", 1468, 1, ["tftplab"] + peers),
        ("curl", 65464, 1, ["tftplab"] + peers),
        ("atftp", 1468, 1, ["tftplab"] + peers),
        ("atftp", 1468, 64, ["tftplab"] + [s for s in peers if s == "atftpd"]),
        ("busybox", 1468, 1, ["tftplab"] + peers),
        ("tftplab", 512, 1, ["tftplab"] + peers),
        ("tftplab", 1468, 1, ["tftplab"] + peers),
        ("tftplab", 65464, 1, ["tftplab"] + peers),
        ("tftplab", 1468, 64, ["tftplab"] + [s for s in peers if s == "atftpd"]),
    ]
    configs = [c for c in configs if c[0] == "tftplab" or clients.get(c[0])]

    if not all(s.group.path for s in servers.values()):
        print("no cgroup for CPU accounting: server CPU reads /proc (misses "
              "tftpd-hpa's per-transfer children)")
    results = {}
    failures = 0
    try:
        for s in servers.values():
            s.start()
        size_mb = (args.size_mib << 20) / 1e6
        for client, blk, win, names in configs:
            label = f"{client} blksize {blk}" + (f" windowsize {win}" if win > 1 else "")
            print(f"== {label}: {', '.join(names)} x {args.runs}", flush=True)
            for run in range(args.runs):
                order = names[run % len(names):] + names[:run % len(names)]
                for name in order:
                    srv = servers[name]
                    out = work / f"out-{name}.bin"
                    out.unlink(missing_ok=True)
                    argv = client_argv(client, args.tftplab, srv.port, str(out), blk, win)
                    cpu0 = srv.cpu()
                    t0 = time.perf_counter()
                    try:
                        rc = subprocess.run(argv, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE,
                                            timeout=args.timeout).returncode
                    except subprocess.TimeoutExpired:
                        rc = "stalled"
                    secs = time.perf_counter() - t0
                    time.sleep(0.05)  # let tftpd-hpa reap its child
                    cpu = srv.cpu() - cpu0
                    ok = rc == 0 and out.exists() and \
                        hashlib.sha256(out.read_bytes()).hexdigest() == want
                    key = (label, name)
                    r = results.setdefault(key, {"mbps": [], "cpu": [], "bad": 0})
                    if ok:
                        r["mbps"].append(size_mb / secs)
                        r["cpu"].append(cpu)
                    else:
                        r["bad"] += 1
                        failures += 1
                        print(f"   {name}: run {run + 1} FAILED ({rc}; sha256 "
                              f"{'mismatch' if out.exists() else 'no file'})")
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{args.size_mib} MiB over loopback, {args.runs} runs each, servers rotated; "
          "MB/s = 10^6 B/s")
    hdr = f"{'client, options':<34} {'server':<10} {'median':>8} {'min-max':>15} " \
          f"{'cpu s':>6} {'cpu ms/MiB':>10} {'vs best peer':>12}"
    print(hdr)
    print("-" * len(hdr))
    for client, blk, win, names in configs:
        label = f"{client} blksize {blk}" + (f" windowsize {win}" if win > 1 else "")
        med = {}
        for name in names:
            r = results.get((label, name))
            if r and r["mbps"]:
                med[name] = statistics.median(r["mbps"])
        best_peer = max((v for n, v in med.items() if n != "tftplab"), default=None)
        for name in names:
            r = results.get((label, name), {"mbps": [], "cpu": [], "bad": 0})
            if not r["mbps"]:
                print(f"{label:<34} {name:<10} {'failed':>8}")
                continue
            cpu = statistics.median(r["cpu"])
            ratio = ""
            if name == "tftplab" and best_peer:
                ratio = f"{med['tftplab'] / best_peer:.2f}x"
            bad = f"  ({r['bad']} failed)" if r["bad"] else ""
            print(f"{label:<34} {name:<10} {med[name]:>8.1f} "
                  f"{min(r['mbps']):>7.1f}-{max(r['mbps']):<7.1f} {cpu:>6.2f} "
                  f"{1000 * cpu / args.size_mib:>10.2f} {ratio:>12}{bad}")
    if failures:
        print(f"{failures} download(s) failed or were corrupt", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
