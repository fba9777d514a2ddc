"""What the peer benchmarks share (benches/compare-peers.py and
benches/boot-storm.py): finding the peers, starting a server in a cgroup of
its own so its CPU time counts every process it forks, and a network
namespace of our own where nftables drops a share of UDP at random.

Standard library only. Imported by path: each script puts benches/ first
on sys.path.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port(tcp_too=False):
    """A port free on 127.0.0.1 for UDP (and TCP, for iperf3's control
    connection). Inside a fresh namespace every port is free anyway."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if not tcp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


class CpuGroup:
    """A cgroup of its own for one server, so its CPU time counts every
    process it forks (tftpd-hpa forks one child per transfer and lets the
    kernel reap it, so the parent's cutime never sees them). cgroup v1
    cpuacct or v2; None where neither can be made (not root). Named
    <prefix>-<our pid>-<name>."""

    def __init__(self, name, prefix="tftplab-compare"):
        self.path = self.usage_file = None
        for base, usage in [("/sys/fs/cgroup/cpuacct", "cpuacct.usage"),
                            ("/sys/fs/cgroup", "cpu.stat")]:
            if not Path(base, usage).exists() and not Path(base, "cgroup.procs").exists():
                continue
            path = Path(base) / f"{prefix}-{os.getpid()}-{name}"
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

    def pids(self):
        """The processes in the group now."""
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError, TypeError):
            return []

    def seconds(self):
        text = self.usage_file.read_text()
        if self.usage_file.name == "cpuacct.usage":
            return int(text) / 1e9
        for line in text.splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) / 1e6
        return 0.0

    def remove(self):
        """rmdir, once the group is empty: a transfer child killed with its
        server can linger a moment as a zombie until init reaps it."""
        if not self.path:
            return
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        print(f"could not remove cgroup {self.path}", file=sys.stderr)


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


def atftpd_path():
    """$TFTPLAB_ATFTPD, else the copy .ci/install-peers.sh unpacks into
    target/peers/atftpd/ (it conflicts with tftpd-hpa as a package), else
    one on PATH."""
    return os.environ.get("TFTPLAB_ATFTPD") or which(
        "atftpd", [REPO / "target/peers/atftpd/usr/sbin"])


def tftpd_hpa_argv(in_tftpd, port, root, extra=()):
    """in.tftpd in the foreground on 127.0.0.1:port, chrooted into root
    (--secure) as root (nobody cannot read a 0700 temp dir). It forks one
    child per transfer, in its process group."""
    return [in_tftpd, "--foreground", "--address", f"127.0.0.1:{port}", "--secure",
            "--user", "root", *extra, str(root)]


def atftpd_argv(atftpd, port, root, extra=()):
    """atftpd standalone and in the foreground on 127.0.0.1:port, no log.
    One thread per transfer."""
    return [atftpd, "--daemon", "--no-fork", "--port", str(port), "--bind-address",
            "127.0.0.1", "--logfile", "/dev/null", "--user", "root", "--group", "root",
            *extra, str(root)]


class LossNamespace:
    """A network namespace of our own with only lo, where nftables drops a
    share of the UDP datagrams at random (see compare-peers.py's --loss).
    With pct 0 nothing is dropped; the UDP datagrams are still counted.
    Named <prefix>-<our pid>."""

    TABLE = "tftplab_cmp"

    def __init__(self, pct, ip, nft, ethtool, prefix="tftplab-cmp", offload_off=True):
        self.name = f"{prefix}-{os.getpid()}"
        self.ip, self.nft, self.ethtool = ip, nft, ethtool
        self.pct = pct
        # See compare-peers.py --loss: off, so the drop rule sees every
        # datagram of a segmented send. Without a drop rule it can stay on.
        self.offload_off = offload_off
        self.created = False
        self.rule = None

    def run(self, argv):
        p = subprocess.run(argv, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip() or p.returncode}")
        return p.stdout

    def wrap(self):
        return [self.ip, "netns", "exec", self.name]

    def create(self):
        self.run([self.ip, "netns", "add", self.name])
        self.created = True
        self.run([self.ip, "-n", self.name, "link", "set", "lo", "up"])
        # glibc's getaddrinfo (AI_ADDRCONFIG) counts every IPv4 address but
        # 127.0.0.1 as "IPv4 configured"; with none, in.tftpd cannot resolve
        # its own --address 127.0.0.1 and exits 66. A second loopback address
        # is enough, and nothing reaches beyond lo.
        self.run([self.ip, "-n", self.name, "addr", "add", "127.0.0.2/8", "dev", "lo"])
        ns = self.wrap()
        if self.offload_off:
            self.run(ns + [self.ethtool, "-K", "lo", "tx-udp-segmentation", "off"])
            feats = self.run(ns + [self.ethtool, "-k", "lo"])
            for line in feats.splitlines():
                if line.strip().startswith("tx-udp-segmentation:") and "off" not in line:
                    raise RuntimeError(
                        f"UDP segmentation offload stays on on lo: {line.strip()}")
        if float(self.pct).is_integer():
            cond = f"numgen random mod 100 < {int(self.pct)}"
        else:
            cond = f"numgen random mod 10000 < {round(self.pct * 100)}"
        drop = f'    meta l4proto udp {cond} counter name "udp_dropped" drop\n' \
            if self.pct else ""
        ruleset = f"""table inet {self.TABLE} {{
  counter udp_seen {{}}
  counter udp_dropped {{}}
  chain input {{
    type filter hook input priority 0; policy accept;
    meta l4proto udp counter name "udp_seen"
{drop}  }}
}}
"""
        p = subprocess.run(ns + [self.nft, "-f", "-"], input=ruleset, capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise RuntimeError(f"nft -f: {p.stderr.strip()}")
        listed = self.run(ns + [self.nft, "list", "chain", "inet", self.TABLE, "input"])
        self.rule = "\n".join(line.strip() for line in listed.splitlines()
                              if "udp_dropped" in line) or None

    def counters(self):
        """(UDP datagrams seen, dropped) since the table was made."""
        out = self.run(self.wrap() + [self.nft, "-j", "list", "counters", "table", "inet",
                                      self.TABLE])
        got = {}
        for item in json.loads(out)["nftables"]:
            c = item.get("counter")
            if c:
                got[c["name"]] = c["packets"]
        return got["udp_seen"], got["udp_dropped"]

    def delete(self):
        if self.created:
            p = subprocess.run([self.ip, "netns", "delete", self.name],
                               capture_output=True, text=True)
            if p.returncode != 0:
                print(f"could not delete netns {self.name}: {p.stderr.strip()}",
                      file=sys.stderr)
            else:
                self.created = False


def dnsmasq_argv(dnsmasq, root, extra=()):
    """dnsmasq as a TFTP server only, in the foreground on 127.0.0.1:69 as
    root: port 0 (no DNS), no DHCP range (no DHCP), logging to stderr. Its
    TFTP port is always 69, so it runs in a network namespace of ours."""
    return [dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--port=0", "--enable-tftp",
            f"--tftp-root={root}", "--listen-address=127.0.0.1", "--bind-interfaces",
            "--user=root", "--group=root", "--pid-file", "--log-facility=-", *extra]


class Server:
    """A server process in its own session (so stop() also ends the children
    it forked) and its own CpuGroup."""

    def __init__(self, name, argv, port, wrap=(), group_prefix="tftplab-compare"):
        self.name, self.argv, self.port = name, list(wrap) + argv, port
        self.proc = None
        self.group = CpuGroup(name, group_prefix)

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

    def pids(self):
        """The server's processes: its cgroup's, or without one the main
        process and its children."""
        if self.group.path:
            return self.group.pids()
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid] + [int(c) for c in children]

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
