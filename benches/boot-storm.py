#!/usr/bin/env python3
"""Boot storm: N Raspberry Pi 4 bootloaders netboot at once from one TFTP server.

Run through benches/boot-storm.sh (it installs the peers and builds
tftplab and the boards first). For every server (tftplab, tftpd-hpa,
atftpd, dnsmasq), every board count (--boards) and every loss rate
(--loss) this makes a fresh network namespace with only lo, starts the
server in it on 127.0.0.1:69, and runs the boards there:
benches/boot-storm-boards.rs, N rpi4-bootloader profiles from the lab (the
firmware's rules, each with its evidence, are in
sim/src/lab/firmware/rpi4.rs) in one process, each board on UDP sockets of
its own. Each board probes its serial-number path (ERROR 1), probes
start4.elf's size and cuts it short, then fetches start4.elf (2.2 MB),
fixup4.dat (after another serial-path probe), config.txt, its
<serial>/cmdline.txt, a device tree, an overlay and kernel8.img (8 MiB),
with `tsize 0 blksize 1024`, lock-step, resending every 2 s and giving a
file 30 s (TFTP_FILE_TIMEOUT), as benches/boot-storm.toml says. A board is
done when every request ended as expected and every file is byte-identical
to the served one; it fails at the first request that does not (its
reason is printed). One table per (boards, loss):

  done          boards done out of N
  last s        seconds from the storm's start until the last board was
                done (with failed boards: the last of those done, marked !)
  p50 s, p99 s  one board's boot time, start to done (done boards only;
                nearest rank)
  resent        datagrams the boards sent again (RRQ or ACK identical to
                one the socket sent before: after 2 s of silence, or to
                re-acknowledge a DATA that came twice)
  req resent    of those, RRQs: a board heard nothing for 2 s after asking
                (its request or the server's first answer was lost); no
                server can shorten that wait
  last ok s     the last board done among those that resent no request:
                the tail the server decides
  dup rx        DATA (or OACK) that reached a board a second time: the
                server's retransmissions as the boards saw them. A peer's
                own count is not visible from outside, so this is what is
                compared.
  nft drop/seen UDP datagrams nftables dropped, of those it saw (all
                traffic in the namespace, both directions)
  cpu s         the server's CPU time (user + system) over the storm, from
                a cgroup of its own (so tftpd-hpa's per-transfer children
                count), else /proc/PID/stat
  peak MiB      the server's peak resident memory: VmHWM for a server of
                one process; with several (tftpd-hpa forks one per
                transfer) the largest sum of VmRSS over its processes,
                sampled every 0.2 s (pages they share count once per
                process)
  boards cpu s  the boards' process's CPU time (they share the machine
                with the server)
  vs best peer  the time to the last board of the fastest peer that
                finished every board, divided by tftplab's: 2.00x means
                tftplab got every board booted in half the time

A missing peer is reported MISSING and skipped, never faked;
TFTPLAB_REQUIRE_PEERS=1 makes that an error.

Servers, each as it does best in a storm (--peer-settings stock runs
the peers as they come):
  tftplab     tftplab serve --root ROOT --bind 127.0.0.1:69 (its defaults:
              adaptive retransmission timer, 20 ms floor; pass
              --server-args "tftplab=--min-rto 0.002" for a 2 ms one
              that learns upwards, see README)
  tftpd-hpa   in.tftpd --foreground --address 127.0.0.1:69 --secure
              --user root --retransmit 10000 ROOT: its shortest first
              retransmission (10 ms; default 1 s, doubled per retry)
  atftpd      atftpd --daemon --no-fork --port 69 --bind-address 127.0.0.1
              --user root --group root --maxthread 1000 --retry-timeout 1
              --prevent-sas ROOT: a thread per transfer (default at most
              100), its shortest timer (whole seconds; default 5), and
              no resend on a repeated ACK (the Pi acknowledges a repeated
              DATA again)
  dnsmasq     dnsmasq --no-daemon --conf-file=/dev/null --port=0
              --enable-tftp --tftp-root=ROOT --listen-address=127.0.0.1
              --bind-interfaces --user=root --group=root --pid-file
              --log-facility=- --tftp-max=<4 N + 50> --quiet-tftp: TFTP
              only (port 0: no DNS; no DHCP range: no DHCP), more
              transfers than its default 50, no log line per transfer.
              Its timer is fixed (2 s, then backing off, whole seconds)

  --loss PCT[,PCT]  percent of UDP datagrams dropped at random, each
                independently, in both directions (nftables in the
                namespace's input hook, UDP segmentation offload off on
                its lo; see benches/compare-peers.py --loss). 0 makes the
                same namespace without the drop rule. Default 0,1.
  --boards N[,N]    board counts (default 20,100)
  --runs R          storms per server and condition (default 1), the
                server order rotating from storm to storm so drift in the
                machine's load is shared; the table shows each server's
                median storm (by boards done, then time to the last
                board; the faster middle one for an even R) and every
                storm's time to the last board
  --spread-ms MS    boards start evenly over MS milliseconds (default 0:
                all at once)
  --deadline S      a board still booting S seconds after it started has
                failed (default 600; the firmware's own 30 s per file
                ends a stuck board sooner)

Needs root (network namespaces, nftables, the peers' chroot and users),
ip, nft and ethtool.
"""

import argparse
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import (REPO, LossNamespace, Server, atftpd_argv, atftpd_path,  # noqa: E402
                   dnsmasq_argv, tftpd_hpa_argv, which)

SERVERS = ["tftplab", "tftpd-hpa", "atftpd", "dnsmasq"]
PORT = 69

# Sent until the server answers (any answer: ERROR 1, normally).
PROBE = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.1)
rrq = b"\0\1tftplab-readiness-probe.does-not-exist\0octet\0"
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        s.sendto(rrq, ("127.0.0.1", int(sys.argv[1])))
        data, peer = s.recvfrom(1024)
    except OSError:
        continue
    if data[:2] == b"\0\5":
        sys.exit(0)
    s.sendto(b"\0\5\0\0probe\0", peer)  # an OACK or DATA: end that transfer
    sys.exit(0)
sys.exit(1)
"""


def require_peers():
    return os.environ.get("TFTPLAB_REQUIRE_PEERS") == "1"


def boards_binary():
    """Builds the boards (a bench target of tftplab-sim) if needed and
    returns the path cargo reports for it."""
    argv = ["cargo", "build", "--release", "-p", "tftplab-sim", "--bench",
            "boot-storm-boards", "--message-format=json-render-diagnostics"]
    p = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode})")
    for line in p.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and \
                msg["target"]["name"] == "boot-storm-boards" and msg.get("executable"):
            return msg["executable"]
    raise RuntimeError("cargo built no boot-storm-boards executable")


def server_argv(name, paths, root, boards, best, more=()):
    """The server's command line; `more` (from --server-args) goes after
    the settings above, before a peer's root (for a repeated flag the last
    one counts)."""
    more = list(more)
    if name == "tftplab":
        return [paths[name], "serve", "--root", str(root), "--bind", f"127.0.0.1:{PORT}",
                *more]
    if name == "tftpd-hpa":
        extra = ["--retransmit", "10000"] if best else []
        return tftpd_hpa_argv(paths[name], PORT, root, extra + more)
    if name == "atftpd":
        extra = ["--maxthread", "1000", "--retry-timeout", "1", "--prevent-sas"] \
            if best else []
        return atftpd_argv(paths[name], PORT, root, extra + more)
    if name == "dnsmasq":
        extra = [f"--tftp-max={4 * boards + 50}", "--quiet-tftp"] if best else []
        return dnsmasq_argv(paths[name], root, extra + more)
    raise ValueError(name)


def status_kib(pid, field):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class MemorySampler:
    """Samples a server's processes every 0.2 s: the largest sum of VmRSS,
    and the largest VmHWM of any one process."""

    def __init__(self, server):
        self.server = server
        self.sum_kib = self.hwm_kib = 0
        self.processes = set()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self):
        pids = self.server.pids()
        self.processes.update(pids)
        self.sum_kib = max(self.sum_kib, sum(status_kib(p, "VmRSS:") for p in pids))
        self.hwm_kib = max([self.hwm_kib] + [status_kib(p, "VmHWM:") for p in pids])

    def run(self):
        while not self.stop_flag.wait(0.2):
            self.sample()

    def start(self):
        self.sample()
        self.thread.start()

    def stop(self):
        self.sample()
        self.stop_flag.set()
        self.thread.join()

    def peak_kib(self):
        """VmHWM for one process; the sampled sum when it forks."""
        if len(self.processes) <= 1:
            return self.hwm_kib
        return max(self.sum_kib, self.hwm_kib)


def percentile(values, pct):
    """Nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def storm(name, argv, root, tools, pct, boards_bin, n, args):
    """One storm: a fresh namespace, the server in it, the boards. Returns
    the row's figures."""
    ns = LossNamespace(pct, tools["ip"], tools["nft"], tools["ethtool"], prefix="tftplab-storm")
    server = Server(name, argv, PORT, ns.wrap(), group_prefix="tftplab-storm")
    sampler = None
    try:
        ns.create()
        server.start()
        probe = subprocess.run(ns.wrap() + [sys.executable, "-c", PROBE, str(PORT), "5"])
        if probe.returncode != 0 or server.proc.poll() is not None:
            raise RuntimeError(f"{name} does not answer on 127.0.0.1:{PORT}: "
                               f"{shlex.join(server.argv)}")
        sampler = MemorySampler(server)
        sampler.start()
        seen0, drop0 = ns.counters()
        cpu0 = server.cpu()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cmd = ns.wrap() + [boards_bin, "run", "--server", f"127.0.0.1:{PORT}",
                           "--boards", str(n), "--spread-ms", str(args.spread_ms),
                           "--deadline-s", str(args.deadline),
                           "--threads", str(args.board_threads)]
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True,
                           timeout=args.deadline + args.spread_ms / 1000 + 120)
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = server.cpu() - cpu0
        seen1, drop1 = ns.counters()
        sampler.stop()
        if p.returncode != 0:
            raise RuntimeError(f"the boards exited {p.returncode}: {shlex.join(cmd)}")
        report = json.loads(p.stdout)
        report["root"] = str(root)
        alive = server.proc.poll() is None
    finally:
        if sampler and sampler.thread.is_alive():
            sampler.stop()
        server.stop()
        ns.delete()
    boards = report["board"]
    done = [b for b in boards if b["done"]]
    secs = [b["secs"] for b in done]
    return {
        "server": name, "boards": n, "loss": pct, "argv": argv,
        "done": len(done), "last": max((b["ended_s"] for b in done), default=None),
        "p50": percentile(secs, 50), "p99": percentile(secs, 99),
        "resent": sum(b["resent"] for b in boards),
        "requests_resent": sum(b.get("requests_resent", 0) for b in boards),
        "last_asked_once": max((b["ended_s"] for b in done
                                if b.get("requests_resent", 0) == 0), default=None),
        "sent": sum(b["sent"] for b in boards),
        "dup": sum(b["dup_received"] for b in boards),
        "received": sum(b["received"] for b in boards),
        "seen": seen1 - seen0, "dropped": drop1 - drop0,
        "cpu": cpu, "peak_kib": sampler.peak_kib(),
        "boards_cpu": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "wall": wall, "server_alive": alive,
        "failures": [b["reason"] for b in boards if not b["done"]],
        "report": report,
    }


def fmt(v, spec, width):
    return f"{'-':>{width}}" if v is None else f"{v:>{width}{spec}}"


def median_run(storms, n):
    """The middle storm when ordered by boards done (more first), then time
    to the last board."""
    ordered = sorted(storms, key=lambda r: (-r["done"], r["last"] or 0.0))
    return ordered[(len(ordered) - 1) // 2]


def print_table(n, pct, runs, missing, header, repeats):
    where = f"{pct:g} % of UDP datagrams dropped at random" if pct else "no loss"
    print()
    print(f"== {n} boards at once, {where}" +
          (f"; the median of {repeats} storms per server" if repeats > 1 else ""))
    print(header)
    hdr = (f"{'server':<10} {'done':>8} {'last s':>8} {'p50 s':>7} {'p99 s':>7} "
           f"{'resent':>7} {'req resent':>10} {'last ok s':>9} {'dup rx':>7} {'nft drop/seen':>17} {'cpu s':>7} "
           f"{'peak MiB':>8} {'boards cpu s':>12} {'vs best peer':>12}")
    if repeats > 1:
        hdr += "  last s of each storm"
    print(hdr)
    print("-" * len(hdr))
    rows = {}
    for name, results in runs.items():
        storms = [r for r in results if isinstance(r, dict)]
        if storms:
            rows[name] = median_run(storms, n)
    peers = [r for name, r in rows.items() if name != "tftplab" and r["done"] == n]
    best = min(peers, key=lambda r: r["last"], default=None)
    for name, results in runs.items():
        if name in missing:
            print(f"{name:<10} {missing[name]}")
            continue
        r = rows.get(name)
        if not r:
            print(f"{name:<10} {results[-1] if results else 'not run'}")
            continue
        ratio = ""
        if name == "tftplab":
            if r["done"] != n:
                ratio = "incomplete"
            elif best:
                ratio = f"{best['last'] / r['last']:.2f}x"
            else:
                ratio = "no peer did"
        last = "-" if r["last"] is None else \
            f"{r['last']:.2f}" + ("!" if r["done"] != n else "")
        drops = f"{r['dropped']}/{r['seen']}"
        line = (f"{name:<10} {r['done']:>4}/{n:<3} {last:>8} {fmt(r['p50'], '.2f', 7)} "
                f"{fmt(r['p99'], '.2f', 7)} {r['resent']:>7} {r['requests_resent']:>10} "
                f"{fmt(r['last_asked_once'], '.2f', 9)} {r['dup']:>7} {drops:>17} "
                f"{r['cpu']:>7.2f} {r['peak_kib'] / 1024:>8.1f} {r['boards_cpu']:>12.2f} "
                f"{ratio:>12}")
        if repeats > 1:
            each = [("failed" if not isinstance(x, dict) else
                     f"{x['done']}/{n}" if x["done"] != n else f"{x['last']:.2f}")
                    for x in results]
            line += "  " + " ".join(each)
        print(line)
    for name, results in runs.items():
        notes = []
        for k, r in enumerate(results):
            storm_no = f"storm {k + 1}: " if repeats > 1 else ""
            if not isinstance(r, dict):
                notes.append(storm_no + r)
                continue
            counts = {}
            for why in r["failures"]:
                for b in r["report"]["board"]:
                    why = why.replace(b["serial"], "<serial>")
                counts[why] = counts.get(why, 0) + 1
            for why, c in sorted(counts.items(), key=lambda kv: -kv[1]):
                notes.append(f"{storm_no}{c} board(s): {why}")
            if not r["server_alive"]:
                notes.append(f"{storm_no}the server had exited by the end of the storm")
        for note in dict.fromkeys(notes):  # once each, in order
            print(f"   {name}: {note}")
    for name, r in rows.items():
        argv = [Path(a).name if i == 0 else a for i, a in enumerate(r["argv"])]
        line = shlex.join(argv).replace(r["report"]["root"], "ROOT")
        print(f"   {name} ran: {line}")


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--boards", default="20,100",
                    help="board counts, comma-separated (default 20,100)")
    ap.add_argument("--loss", default="0,1",
                    help="percent of UDP dropped per direction, comma-separated (default 0,1)")
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help=f"servers to run, comma-separated (default {','.join(SERVERS)})")
    ap.add_argument("--runs", type=int, default=1,
                    help="storms per server and condition, the server order rotating "
                         "(default 1; the median storm is shown)")
    ap.add_argument("--spread-ms", type=int, default=0,
                    help="boards start evenly over this many ms (default 0: all at once)")
    ap.add_argument("--deadline", type=int, default=600,
                    help="seconds a board may take before it counts as failed (default 600)")
    ap.add_argument("--board-threads", type=int, default=2,
                    help="threads the boards run on (default 2)")
    ap.add_argument("--peer-settings", choices=["best", "stock"], default="best",
                    help="peers as they do best in a storm (default), or as they come")
    ap.add_argument("--server-args", action="append", default=[], metavar="NAME=ARGS",
                    help="more arguments for one server, split like a shell's "
                         "(e.g. \"tftpd-hpa=--retransmit 50000\"); repeatable")
    ap.add_argument("--tftplab", default=str(REPO / "target/release/tftplab"),
                    help="the tftplab binary (default: the release build)")
    ap.add_argument("--boards-bin", help="the boards' binary (default: cargo builds it)")
    ap.add_argument("--json", metavar="FILE", help="also write every row, board by board, here")
    args = ap.parse_args()
    try:
        counts = [int(x) for x in args.boards.split(",")]
        losses = [float(x) for x in args.loss.split(",")]
    except ValueError:
        ap.error("--boards and --loss take comma-separated numbers")
    if args.runs < 1:
        ap.error("--runs: at least 1")
    if any(not 1 <= c <= 1000 for c in counts):
        ap.error("--boards: 1 to 1000 boards")
    if any(not 0 <= x < 100 for x in losses):
        ap.error("--loss: a percentage from 0 to below 100")
    names = [s for s in args.servers.split(",") if s]
    if any(s not in SERVERS for s in names):
        ap.error(f"--servers: choose from {', '.join(SERVERS)}")
    best = args.peer_settings == "best"
    more = {}
    for item in args.server_args:
        name, sep, rest = item.partition("=")
        if not sep or name not in SERVERS:
            ap.error(f"--server-args {item!r}: NAME=ARGS, NAME one of {', '.join(SERVERS)}")
        more.setdefault(name, []).extend(shlex.split(rest))

    tools = {t: which(t) for t in ["ip", "nft", "ethtool"]}
    absent = [t for t, p in tools.items() if not p]
    if absent or os.geteuid() != 0:
        for t in absent:
            print(f"MISSING: {t} (run .ci/install-peers.sh as root)", file=sys.stderr)
        if os.geteuid() != 0:
            print("MISSING: root; every storm runs in a network namespace of its own",
                  file=sys.stderr)
        return 2
    paths = {"tftplab": args.tftplab if Path(args.tftplab).is_file() else None,
             "tftpd-hpa": which("in.tftpd"), "atftpd": atftpd_path(),
             "dnsmasq": which("dnsmasq")}
    if not paths["tftplab"]:
        print(f"{args.tftplab} is missing: cargo build --release --bin tftplab",
              file=sys.stderr)
        return 2
    missing = {}
    for s in names:
        if not paths[s]:
            missing[s] = "MISSING (run .ci/install-peers.sh as root)"
            print(f"MISSING: {s} (run .ci/install-peers.sh as root); its rows are skipped")
    if missing and require_peers():
        print("TFTPLAB_REQUIRE_PEERS=1 but a peer is missing", file=sys.stderr)
        return 1
    boards_bin = args.boards_bin or boards_binary()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    command = shlex.join([sys.argv[0]] + sys.argv[1:])
    header = (f"{command}\nstarted {started} on {os.cpu_count()} CPUs "
              f"(load average {os.getloadavg()[0]:.2f}), peer settings: {args.peer_settings}; "
              f"server on 127.0.0.1:{PORT} in a fresh netns per storm")
    print(header.split("\n", 1)[1], flush=True)
    work = Path(tempfile.mkdtemp(prefix="tftplab-storm-"))
    os.chmod(work, 0o755)
    tables = []
    failures = 0
    try:
        for n in counts:
            root = work / f"root-{n}"
            root.mkdir()
            subprocess.run([boards_bin, "stage", "--root", str(root), "--boards", str(n)],
                           check=True)
            for pct in losses:
                # name -> its storms (dicts) and failures (strings)
                runs = {name: [] for name in names}
                tables.append((n, pct, runs))
                present = [name for name in names if name not in missing]
                for run in range(args.runs):
                    k = run % max(1, len(present))
                    for name in present[k:] + present[:k]:
                        argv = server_argv(name, paths, root, n, best, more.get(name, ()))
                        print(f"== {name}, {n} boards, {pct:g} % loss, run {run + 1}",
                              flush=True)
                        try:
                            r = storm(name, argv, root, tools, pct, boards_bin, n, args)
                        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                            failures += 1
                            print(f"   FAILED: {e}", flush=True)
                            runs[name].append(f"FAILED: {e}")
                            continue
                        last = "-" if r["last"] is None else f"{r['last']:.2f} s"
                        print(f"   {r['done']}/{n} done, last {last}, server cpu "
                              f"{r['cpu']:.2f} s", flush=True)
                        runs[name].append(r)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for n, pct, runs in tables:
            print_table(n, pct, runs, missing, header, args.runs)
        if args.json:
            out = [r for _, _, runs in tables for rs in runs.values()
                   for r in rs if isinstance(r, dict)]
            Path(args.json).write_text(json.dumps(out, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
