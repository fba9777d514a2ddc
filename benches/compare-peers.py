#!/usr/bin/env python3
"""Side-by-side download throughput: tftplab against tftpd-hpa, atftpd and dnsmasq.

Run through benches/compare-peers.sh (it installs the peers and iperf3 and
builds tftplab first). In one invocation this starts the servers on
loopback over the same root (dnsmasq serves TFTP only on port 69, so as
root everything runs in a network namespace of ours, below), downloads the same file with the
same client and options from each server in turn (the server order rotates
run by run, so drift in machine load is shared), checks the SHA-256 of every
download, and prints per (client, options, server): median MB/s (10^6 B/s),
min-max, median server CPU seconds per run and per MiB, and the ratio of
tftplab to the best peer server (the speed-up over it). Only ratios from one
run mean anything on a noisy machine.

A server that does not take part in a configuration (tftpd-hpa and dnsmasq
have no windowsize; they would silently fall back to lock-step) is left out
of it. A missing peer is reported and skipped, never faked.

dnsmasq runs as a TFTP server only (dnsmasq --port=0 --enable-tftp
--listen-address=127.0.0.1 --bind-interfaces; see peers.py), on port 69,
which only a namespace of our own makes free: as root, the whole comparison
(servers, clients, ceiling) then runs in a fresh network namespace
tftplab-cmp-<pid> with only its lo (127.0.0.1, 127.0.0.2), no drop rule and
lo's offloads as they come. Not root, or --no-dnsmasq, and it runs on the
host's loopback without dnsmasq.

  --baseline PATH   also measure this tftplab binary, as server "baseline"
                    in the same rotation (say, a build of main against your
                    change): a before/after in one run, on one machine
                    load. It is not a peer; its row gets its own ratio to
                    the best peer.

  --only SUBSTRING  keep only the configurations whose label (as printed,
                    e.g. "curl blksize 1468", "tftplab blksize 8192
                    windowsize 64") contains SUBSTRING; repeatable (a label
                    matching any of them is kept). The atftp client at
                    blksize 8192 and 65464 (windowed) runs only when an
                    --only names it: it overruns loopback socket buffers at
                    those sizes and waits out its own 5 s timeouts (0.03 to
                    40+ s per 8 MiB in a probe, some stalls), which is not
                    cheap.

  --ceiling / --no-ceiling (default on)
                    the loopback UDP ceiling of this machine, measured in the
                    same run: iperf3 (a one-off server on 127.0.0.1 at a free
                    port, and an unpaced client: -u -b 0, one flow,
                    --ceiling-secs long, --json) once before and once after
                    the downloads, so drift is shared, at the datagram sizes
                    of the configurations being run (TFTP DATA = blksize + 4;
                    the default set has blksizes 512, 1468, 8192 and 65464,
                    so iperf3 -l 516, 1472, 8196, 65468). The figure
                    is the receiver side (end.sum_received: what arrived,
                    datagrams the unpaced sender lost to the receiver's full
                    socket buffer excluded). Printed as MB/s of UDP payload
                    and, scaled by blksize / (blksize + 4), as the file bytes
                    per second that rate would carry; each windowed download
                    of our client from our server (tftplab get --windowsize
                    > 1, tftplab serve) is then given as a fraction of the
                    latter ("x.xx of ceiling"). iperf3 receives one datagram
                    per system call while tftplab may use UDP GRO, so a
                    fraction above 1 is possible and not an error.

  --loss PCT        the whole comparison (servers, clients, ceiling) runs in
                    a fresh network namespace tftplab-cmp-<pid> (only its lo,
                    brought up, with 127.0.0.2 added because in.tftpd's
                    getaddrinfo fails where 127.0.0.1 is the only IPv4
                    address), where an nftables rule drops PCT % of UDP
                    datagrams at random, each independently, in both
                    directions (DATA and ACK). The rule sits in the input
                    hook, and UDP segmentation offload is turned off on the
                    namespace's lo (ethtool -K lo tx-udp-segmentation off):
                    tftplab sends a window with one UDP_SEGMENT (GSO) call,
                    and loopback passes such a batch whole through the output
                    hook and, with the offload on, through the input hook
                    too, so a rule there would drop or keep up to a whole
                    window at once and count it as one packet. With the
                    offload off the batch is split before it re-enters the
                    stack, so the input hook sees every datagram once. The
                    rule (as nft lists it back) and, per row, the datagrams
                    it dropped out of the UDP datagrams it saw are printed.
                    The namespace is deleted at the end, also on Ctrl-C or
                    SIGTERM. Defaults change with it: 1 MiB files, a 300 s
                    per-download timeout, and the configurations curl,
                    atftp, busybox and tftplab at blksize 1468 lock-step
                    (every server) plus atftp and tftplab at blksize 1468
                    windowsize 16 (tftplab and atftpd servers). Server CPU is
                    still counted by cgroup (membership does not depend on
                    the network namespace). Needs root, ip, nft and ethtool.

  --size-mib N / --size-kib N   file size (64 MiB by default, 1 MiB with
                    --loss).
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import (REPO, LossNamespace, Server, atftpd_argv, atftpd_path,  # noqa: E402
                   dnsmasq_argv, free_port, tftpd_hpa_argv, which)


def udp_ceiling(iperf3, wrap, payload, secs):
    """One unpaced iperf3 UDP flow over 127.0.0.1 with datagrams of
    `payload` bytes. Returns (received B/s, sent B/s, lost %), receiver
    side; raises RuntimeError with iperf3's own message."""
    port = free_port(tcp_too=True)
    srv = subprocess.Popen(
        list(wrap) + [iperf3, "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        argv = list(wrap) + [iperf3, "-c", "127.0.0.1", "-p", str(port), "-u", "-b", "0",
                             "-l", str(payload), "-t", str(secs), "--json"]
        for _ in range(25):  # until the server listens
            time.sleep(0.2)
            p = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
            try:
                res = json.loads(p.stdout)
            except ValueError:
                raise RuntimeError(f"iperf3 rc {p.returncode}: "
                                   f"{(p.stderr or p.stdout).strip()[:200]}")
            err = res.get("error")
            if not err:
                break
            if "connect" not in err or srv.poll() is not None:
                raise RuntimeError(f"iperf3: {err}")
        else:
            raise RuntimeError(f"iperf3: {err}")
        end = res["end"]
        sent = end["sum_sent"] if "sum_sent" in end else end["sum"]
        rx = end.get("sum_received")
        if rx:
            got = rx["bits_per_second"] / 8
        else:  # older iperf3: one UDP sum, with the receiver's loss count
            s = end["sum"]
            got = s["bytes"] * (1 - s["lost_percent"] / 100) / s["seconds"]
        lost = (rx or end["sum"]).get("lost_percent", 0.0)
        return got, sent["bits_per_second"] / 8, lost
    finally:
        if srv.poll() is None:
            os.killpg(srv.pid, signal.SIGTERM)
            try:
                srv.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(srv.pid, signal.SIGKILL)
                srv.wait()


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
        # Exactly the row's options: the binary's defaults (window 16,
        # tsize) would make a lock-step row windowed.
        argv = [tftplab, "get", "--quiet", "--blksize", str(blksize),
                "--windowsize", str(window), "--no-tsize"]
        return argv + [f"{host}:{port}", "file.bin", out]
    raise ValueError(client)


def mbps_text(v):
    """MB/s with about three significant digits: lossy downloads of peers
    run at hundredths of a MB/s."""
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def label_of(client, blk, win):
    return f"{client} blksize {blk}" + (f" windowsize {win}" if win > 1 else "")


def size_text(nbytes):
    if nbytes % (1 << 20) == 0:
        return f"{nbytes >> 20} MiB"
    return f"{nbytes >> 10} KiB"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--size-mib", type=int,
                      help="file size in MiB (default 64, or 1 with --loss)")
    size.add_argument("--size-kib", type=int, help="file size in KiB")
    ap.add_argument("--runs", type=int, default=5,
                    help="downloads per server and configuration (default 5; the median is shown)")
    ap.add_argument("--timeout", type=float,
                    help="seconds before one download counts as stalled "
                         "(default 120, or 300 with --loss)")
    ap.add_argument("--tftplab", default=str(REPO / "target/release/tftplab"),
                    help="the tftplab binary to measure (default: the release build)")
    ap.add_argument("--only", action="append", default=[], metavar="SUBSTRING",
                    help="keep configurations whose label contains this (repeatable)")
    ap.add_argument("--ceiling", action=argparse.BooleanOptionalAction, default=True,
                    help="measure the loopback UDP ceiling with iperf3 (default on)")
    ap.add_argument("--ceiling-secs", type=int, default=3,
                    help="length of one iperf3 measurement (default 3)")
    ap.add_argument("--loss", type=float, metavar="PCT",
                    help="run everything in a fresh netns dropping PCT %% of UDP datagrams")
    ap.add_argument("--baseline", metavar="PATH",
                    help="also measure this tftplab binary, as server 'baseline'")
    ap.add_argument("--dnsmasq", action=argparse.BooleanOptionalAction, default=True,
                    help="compare dnsmasq too (as root; default on)")
    args = ap.parse_args()
    loss = args.loss is not None
    if loss and not 0 < args.loss < 100:
        ap.error("--loss takes a percentage above 0 and below 100")
    if args.size_kib:
        size_bytes = args.size_kib << 10
    else:
        size_bytes = (args.size_mib or (1 if loss else 64)) << 20
    timeout = args.timeout or (300.0 if loss else 120.0)

    atftpd = atftpd_path()
    in_tftpd = which("in.tftpd")
    dnsmasq = which("dnsmasq") if args.dnsmasq else None
    missing = [n for n, p in [("in.tftpd (tftpd-hpa)", in_tftpd), ("atftpd", atftpd)]
               if not p]
    if args.dnsmasq and not dnsmasq:
        missing.append("dnsmasq")
    if dnsmasq and os.geteuid() != 0:
        print("MISSING: root, for dnsmasq (it serves only port 69, so it runs in a "
              "network namespace); its rows are skipped")
        dnsmasq = None
    clients = {c: which(c) for c in ["curl", "atftp", "busybox"]}
    missing += [c for c, p in clients.items() if not p]
    for m in missing:
        print(f"MISSING: {m} (run .ci/install-peers.sh as root); its rows are skipped")
    iperf3 = which("iperf3") if args.ceiling else None
    if args.ceiling and not iperf3:
        print("MISSING: iperf3 (benches/compare-peers.sh installs it as root); "
              "the loopback UDP ceiling is skipped")

    ns = None
    if loss or dnsmasq:
        tools = {t: which(t) for t in ["ip", "nft", "ethtool"]}
        absent = [t for t, p in tools.items() if not p]
        if loss and (absent or os.geteuid() != 0):
            for t in absent:
                print(f"MISSING: {t} (run .ci/install-peers.sh as root); --loss needs it")
            if os.geteuid() != 0:
                print("MISSING: root; --loss makes a network namespace and nftables rules")
            return 2
        if absent:
            print(f"MISSING: {', '.join(absent)} (run .ci/install-peers.sh as root); "
                  "dnsmasq's rows are skipped")
            dnsmasq = None
        else:
            ns = LossNamespace(args.loss or 0, tools["ip"], tools["nft"], tools["ethtool"],
                               offload_off=loss)
    wrap = ns.wrap() if ns else []

    # (client, blksize, windowsize, servers taking part, runs without --only)
    peers = [n for n, path in [("tftpd-hpa", in_tftpd), ("atftpd", atftpd),
                               ("dnsmasq", dnsmasq)] if path]
    ours = ["tftplab"] + (["baseline"] if args.baseline else [])
    every = ours + peers
    windowed = ours + [s for s in peers if s == "atftpd"]
    if loss:
        configs = [
            ("curl", 1468, 1, every, True),
            ("atftp", 1468, 1, every, True),
            ("busybox", 1468, 1, every, True),
            ("tftplab", 1468, 1, every, True),
            ("atftp", 1468, 16, windowed, True),
            ("tftplab", 1468, 16, windowed, True),
        ]
    else:
        configs = [
            ("curl", 1468, 1, every, True),
            ("curl", 65464, 1, every, True),
            ("atftp", 1468, 1, every, True),
            ("atftp", 1468, 64, windowed, True),
            ("busybox", 1468, 1, every, True),
            ("tftplab", 512, 1, every, True),
            ("tftplab", 1468, 1, every, True),
            ("tftplab", 65464, 1, every, True),
            ("tftplab", 1468, 64, windowed, True),
        ]
        for blk in (8192, 65464):
            for win in (16, 64):
                configs.append(("tftplab", blk, win, ours, True))
        for blk in (8192, 65464):
            for win in (16, 64):
                configs.append(("atftp", blk, win, windowed, False))
    configs = [c for c in configs if c[0] == "tftplab" or clients.get(c[0])]
    if args.only:
        configs = [c for c in configs
                   if any(o in label_of(*c[:3]) for o in args.only)]
        if not configs:
            print(f"no configuration matches --only {args.only}", file=sys.stderr)
            return 2
    else:
        configs = [c for c in configs if c[4]]
    configs = [c[:4] for c in configs]
    ceiling_blks = sorted({blk for _, blk, _, _ in configs}) if iperf3 else []

    # SIGTERM unwinds like Ctrl-C, so the finally below still cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    work = Path(tempfile.mkdtemp(prefix="tftplab-compare-"))
    results = {}
    ceiling = {}  # blksize -> list of (received B/s, sent B/s, lost %) or error text
    failures = 0
    servers = {}
    try:
        if ns and loss:
            ns.create()
            print(f"netns {ns.name}: lo up (127.0.0.1, 127.0.0.2), UDP segmentation "
                  f"offload off, dropping {args.loss:g} % of UDP datagrams:")
            print(f"   nft (inet {ns.TABLE}, input hook): {ns.rule}")
        elif ns:
            ns.create()
            print(f"netns {ns.name}: lo up (127.0.0.1, 127.0.0.2), nothing dropped "
                  "(dnsmasq needs port 69)")
        root = work / "root"
        root.mkdir()
        os.chmod(work, 0o755)
        os.chmod(root, 0o755)
        data = os.urandom(size_bytes)
        (root / "file.bin").write_bytes(data)
        os.chmod(root / "file.bin", 0o644)
        want = hashlib.sha256(data).hexdigest()
        del data

        p = free_port()
        servers["tftplab"] = Server("tftplab", [args.tftplab, "serve", "--root", str(root),
                                                "--bind", f"127.0.0.1:{p}"], p, wrap)
        if args.baseline:
            p = free_port()
            servers["baseline"] = Server("baseline", [args.baseline, "serve", "--root",
                                                      str(root), "--bind", f"127.0.0.1:{p}"],
                                         p, wrap)
        if in_tftpd:
            p = free_port()
            servers["tftpd-hpa"] = Server("tftpd-hpa", tftpd_hpa_argv(in_tftpd, p, root),
                                          p, wrap)
        if atftpd:
            p = free_port()
            servers["atftpd"] = Server("atftpd", atftpd_argv(atftpd, p, root), p, wrap)
        if dnsmasq:
            servers["dnsmasq"] = Server("dnsmasq", dnsmasq_argv(dnsmasq, root, ["--quiet-tftp"]),
                                        69, wrap)
        if not all(s.group.path for s in servers.values()):
            print("no cgroup for CPU accounting: server CPU reads /proc (misses "
                  "tftpd-hpa's per-transfer children)")
        for s in servers.values():
            s.start()

        def measure_ceiling(when):
            if not ceiling_blks:
                return
            print(f"== loopback UDP ceiling ({when}): iperf3 -u -b 0 -l "
                  f"{', '.join(str(b + 4) for b in ceiling_blks)}, {args.ceiling_secs} s each",
                  flush=True)
            for blk in ceiling_blks:
                try:
                    r = udp_ceiling(iperf3, wrap, blk + 4, args.ceiling_secs)
                except (RuntimeError, subprocess.TimeoutExpired, KeyError) as e:
                    r = f"{type(e).__name__}: {e}"
                    print(f"   {blk + 4} B: FAILED ({r})")
                ceiling.setdefault(blk, []).append(r)

        measure_ceiling("before")
        size_mb = size_bytes / 1e6
        for client, blk, win, names in configs:
            label = label_of(client, blk, win)
            print(f"== {label}: {', '.join(names)} x {args.runs}", flush=True)
            for run in range(args.runs):
                order = names[run % len(names):] + names[:run % len(names)]
                for name in order:
                    srv = servers[name]
                    out = work / f"out-{name}.bin"
                    out.unlink(missing_ok=True)
                    argv = wrap + client_argv(client, args.tftplab, srv.port, str(out),
                                              blk, win)
                    seen0, drop0 = ns.counters() if loss else (0, 0)
                    cpu0 = srv.cpu()
                    t0 = time.perf_counter()
                    try:
                        rc = subprocess.run(argv, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE,
                                            timeout=timeout).returncode
                    except subprocess.TimeoutExpired:
                        rc = "stalled"
                    secs = time.perf_counter() - t0
                    time.sleep(0.05)  # let tftpd-hpa reap its child
                    cpu = srv.cpu() - cpu0
                    ok = rc == 0 and out.exists() and \
                        hashlib.sha256(out.read_bytes()).hexdigest() == want
                    key = (label, name)
                    r = results.setdefault(key, {"mbps": [], "cpu": [], "bad": 0,
                                                 "secs": [], "seen": 0, "dropped": 0})
                    if loss:
                        seen1, drop1 = ns.counters()
                        r["seen"] += seen1 - seen0
                        r["dropped"] += drop1 - drop0
                    if ok:
                        r["mbps"].append(size_mb / secs)
                        r["cpu"].append(cpu)
                        r["secs"].append(secs)
                        if loss:
                            print(f"   {name}: {secs:.2f} s, nft dropped {drop1 - drop0} of "
                                  f"{seen1 - seen0} UDP datagrams", flush=True)
                    else:
                        r["bad"] += 1
                        failures += 1
                        drops = f", nft dropped {drop1 - drop0} of {seen1 - seen0}" \
                            if loss else ""
                        what = "no file" if not out.exists() else \
                            "sha256 mismatch" if rc == 0 else "partial file"
                        print(f"   {name}: run {run + 1} FAILED ({rc}; {what}; "
                              f"{secs:.1f} s{drops})", flush=True)
        measure_ceiling("after")
    finally:
        for s in servers.values():
            s.stop()
        if ns:
            ns.delete()
        shutil.rmtree(work, ignore_errors=True)

    print()
    where = "over loopback" if not ns else f"over lo in netns {ns.name}"
    if loss:
        where = (f"over lo in netns {ns.name}, {args.loss:g} % of UDP datagrams dropped "
                 f"at random (nft, input hook)")
    print(f"{size_text(size_bytes)} {where}, {args.runs} runs each, servers rotated; "
          "MB/s = 10^6 B/s")
    if loss:
        print(f"drop rule: {ns.rule}")
    mib = size_bytes / (1 << 20)
    lw = max([34] + [len(label_of(*c[:3])) for c in configs])
    # Units in the headers: MB/s for throughput, seconds for the download
    # time of a lossy run (its own column, not under "median").
    hdr = f"{'client, options':<{lw}} {'server':<10} {'MB/s med':>8} {'MB/s min-max':>15} " \
          f"{'cpu s':>6} {'cpu ms/MiB':>10} {'vs best peer':>12}"
    if loss:
        hdr += f" {'time s':>8} {'nft dropped/seen':>22}"
    print(hdr)
    print("-" * len(hdr))
    for client, blk, win, names in configs:
        label = label_of(client, blk, win)
        med = {}
        for name in names:
            r = results.get((label, name))
            if r and r["mbps"]:
                med[name] = statistics.median(r["mbps"])
        best_peer = max((v for n, v in med.items() if n not in ours), default=None)
        for name in names:
            r = results.get((label, name))
            if not r:
                continue  # interrupted before this row
            drops = ""
            if loss and r["seen"]:
                pct = 100 * r["dropped"] / r["seen"]
                drops = f" {r['dropped']:>7}/{r['seen']:<7} {pct:>5.2f}%"
            if not r["mbps"]:
                line = f"{label:<{lw}} {name:<10} {'failed':>8}"
                if loss:  # blank up to the dropped/seen column
                    line += " " * (len(hdr) - len(line) - 23) + drops
                print(line + f"  ({r['bad']} failed)")
                continue
            cpu = statistics.median(r["cpu"])
            ratio = ""
            if name in ours and best_peer:
                ratio = f"{med[name] / best_peer:.2f}x"
            bad = f"  ({r['bad']} failed)" if r["bad"] else ""
            secs = f" {statistics.median(r['secs']):>8.2f}" if loss else ""
            lo, hi = mbps_text(min(r["mbps"])), mbps_text(max(r["mbps"]))
            print(f"{label:<{lw}} {name:<10} {mbps_text(med[name]):>8} {lo:>7}-{hi:<7} "
                  f"{cpu:>6.2f} {1000 * cpu / mib:>10.2f} {ratio:>12}{secs}{drops}{bad}")

    if ceiling:
        print()
        print("Loopback UDP ceiling (iperf3, unpaced, one flow)")
        over = "lo in the namespace, with the drop rule" if loss else "127.0.0.1"
        print(f"receiver side over {over}; "
              f"{args.ceiling_secs} s before and after the downloads; MB/s = 10^6 B/s of UDP "
              "payload;\nfile MB/s = mean x blksize / (blksize + 4), the file data that "
              "rate carries as TFTP DATA; lost = sender datagrams the receiver missed")
        hdr = f"{'datagram':>8} {'blksize':>7} {'before':>8} {'after':>8} {'mean':>8} " \
              f"{'file MB/s':>9} {'kdgram/s':>8} {'sent MB/s':>9} {'lost':>6}"
        print(hdr)
        print("-" * len(hdr))
        file_ceiling = {}
        for blk in sorted(ceiling):
            runs = ceiling[blk]
            good = [r for r in runs if not isinstance(r, str)]
            cells = [f"{r[0] / 1e6:>8.1f}" if not isinstance(r, str) else f"{'failed':>8}"
                     for r in runs]
            cells += [f"{'-':>8}"] * (2 - len(cells))
            if not good:
                print(f"{blk + 4:>8} {blk:>7} {cells[0]} {cells[1]}")
                continue
            mean = statistics.mean(r[0] for r in good)
            file_ceiling[blk] = mean * blk / (blk + 4)
            print(f"{blk + 4:>8} {blk:>7} {cells[0]} {cells[1]} {mean / 1e6:>8.1f} "
                  f"{file_ceiling[blk] / 1e6:>9.1f} {mean / (blk + 4) / 1e3:>8.1f} "
                  f"{statistics.mean(r[1] for r in good) / 1e6:>9.1f} "
                  f"{statistics.mean(r[2] for r in good):>5.1f}%")
        rows = []
        for client, blk, win, names in configs:
            if client != "tftplab" or win <= 1 or "tftplab" not in names:
                continue
            r = results.get((label_of(client, blk, win), "tftplab"))
            if not r or not r["mbps"] or blk not in file_ceiling:
                continue
            m = statistics.median(r["mbps"])
            rows.append(f"{label_of(client, blk, win):<{lw}} tftplab    {mbps_text(m):>8} MB/s  "
                        f"{m * 1e6 / file_ceiling[blk]:.2f} of ceiling "
                        f"({file_ceiling[blk] / 1e6:.1f} file MB/s at {blk + 4} B)")
        if rows:
            print()
            print("tftplab get (windowed) from tftplab serve, median against the ceiling at "
                  "the same datagram size:")
            for row in rows:
                print(row)

    if failures:
        print(f"{failures} download(s) failed or were corrupt", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
