"""The exporter side: runs `tftplab serve` as a child process.

`start` spawns `tftplab serve --events json` and returns once the server
printed its `ready` line (with the bound address: configure port 0 and ask
`get_port`). A thread reads the event lines that follow, so `transfers` and
`wait_for_transfer` can tell a lab test what the board fetched. `stop` sends
SIGTERM, waits the grace period (plus a margin), then SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

from jumpstarter_driver_opendal.driver import Opendal

from jumpstarter.common.ipaddr import get_ip_address
from jumpstarter.driver import Driver, export

from .common import ConfigError, ServerNotRunning, StorageError, TftpError, TransferNotSeen

__all__ = ["Tftp", "TftpError", "ServerNotRunning", "ConfigError", "TransferNotSeen", "StorageError"]

WRITE_POLICIES = ("off", "create", "overwrite")


def find_binary(configured: str | None) -> str:
    """The `tftplab` to run: `binary` from the config, else $TFTPLAB_BIN,
    else `tftplab` on PATH."""
    candidate = configured or os.environ.get("TFTPLAB_BIN") or shutil.which("tftplab")
    where = "binary" if configured else "TFTPLAB_BIN" if os.environ.get("TFTPLAB_BIN") else "PATH"
    if not candidate:
        raise ConfigError(
            "tftplab binary not found: set `binary` in the driver config or TFTPLAB_BIN, "
            "or put tftplab on PATH (cargo install --path <tftplab checkout>)"
        )
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise ConfigError(f"tftplab binary {candidate!r} (from {where}) is not an executable file")
    return candidate


@dataclass(kw_only=True)
class Tftp(Driver):
    """TFTP server driver backed by tftplab.

    Config (upstream's first, then tftplab's own):
        root_dir: directory served (created if missing)
        host: address to bind; empty = the default route's address, as upstream
        port: UDP port (69; 0 = any free port, see get_port)
        remove_created_on_close: delete files put through the storage child on close
        write: what TFTP write requests may do: off, create, overwrite
        max_blksize, max_windowsize, timeout, retries, max_upload: passed to serve
        grace: seconds running transfers get after stop before they are aborted
        extra_args: more `tftplab serve` arguments, verbatim
        binary: path to tftplab (default: $TFTPLAB_BIN, then PATH)
        ready_timeout: seconds start waits for the server's ready line
    """

    root_dir: str = "/var/lib/tftpboot"
    host: str = field(default="")
    port: int = 69
    remove_created_on_close: bool = True
    write: str = "off"
    max_blksize: Optional[int] = None
    max_windowsize: Optional[int] = None
    timeout: Optional[float] = None
    retries: Optional[int] = None
    max_upload: Optional[int] = None
    grace: float = 5.0
    extra_args: list[str] = field(default_factory=list)
    binary: Optional[str] = None
    ready_timeout: float = 10.0

    _proc: Optional[subprocess.Popen] = field(init=False, default=None, repr=False)
    _threads: list[threading.Thread] = field(init=False, default_factory=list, repr=False)
    _bound: Optional[tuple[str, int]] = field(init=False, default=None, repr=False)
    _cond: threading.Condition = field(init=False, default_factory=threading.Condition, repr=False)
    _events: list[dict[str, Any]] = field(init=False, default_factory=list, repr=False)
    _consumed: set[int] = field(init=False, default_factory=set, repr=False)
    _stderr: deque = field(init=False, default_factory=lambda: deque(maxlen=50), repr=False)

    def __post_init__(self):
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if self.write not in WRITE_POLICIES:
            raise ConfigError(f"write must be one of {', '.join(WRITE_POLICIES)}, not {self.write!r}")
        try:
            os.makedirs(self.root_dir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create root_dir {self.root_dir!r}: {e.strerror}") from None
        self.children["storage"] = Opendal(
            scheme="fs",
            kwargs={"root": self.root_dir},
            remove_created_on_close=self.remove_created_on_close,
        )
        self.storage = self.children["storage"]
        if self.host == "":
            self.host = get_ip_address(logger=self.logger)

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_tftplab.client.TftpClient"

    # -- process handling -------------------------------------------------

    def _running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self, binary: str) -> list[str]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        cmd = [binary, "serve", "--root", self.root_dir, "--bind", f"{host}:{self.port}"]
        cmd += ["--events", "json", "--write", self.write, "--grace", str(self.grace)]
        for flag, value in (
            ("--max-blksize", self.max_blksize),
            ("--max-windowsize", self.max_windowsize),
            ("--timeout", self.timeout),
            ("--retries", self.retries),
            ("--max-upload", self.max_upload),
        ):
            if value is not None:
                cmd += [flag, str(value)]
        return cmd + [str(a) for a in self.extra_args]

    def _check_root(self):
        if not os.path.isdir(self.root_dir):
            raise ConfigError(f"root_dir {self.root_dir!r} is not a directory")
        try:  # a real write: access() says yes to root on read-only mounts
            with tempfile.TemporaryFile(dir=self.root_dir):
                pass
        except OSError as e:
            raise ConfigError(f"root_dir {self.root_dir!r} is not writable: {e.strerror}") from None

    def _read_stdout(self, stream):
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                self.logger.warning("tftplab: unexpected output: %s", line.rstrip())
                continue
            with self._cond:
                if event.get("event") == "ready":
                    host, _, port = event["addr"].rpartition(":")
                    self._bound = (host.strip("[]"), int(port))
                else:
                    self._events.append(event)
                self._cond.notify_all()
            if event.get("event") == "transfer":
                self.logger.info(
                    "%s %s %s: %s, %s bytes", event["peer"], event["direction"], event["file"],
                    event["outcome"], event.get("bytes"),
                )
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self, stream):
        for line in stream:
            line = line.rstrip()
            self._stderr.append(line)
            self.logger.debug("tftplab: %s", line)

    def _failure_line(self) -> str:
        """The one line that says why serve failed: clap's `error:` or our
        `tftplab:` line."""
        lines = list(self._stderr)
        for line in lines:
            if line.startswith("error:") or line.startswith("tftplab:"):
                return line
        return lines[-1] if lines else "no message"

    @export
    def start(self):
        """Start `tftplab serve`; returns once it is listening.

        Raises:
            TftpError: the binary is missing, the port is taken, the root is
                unusable or an option is invalid (no process is left behind).
        """
        if self._running():
            self.logger.warning("TFTP server is already running")
            return
        binary = find_binary(self.binary)
        self._check_root()
        cmd = self._command(binary)
        with self._cond:
            self._bound = None
            self._events = []
            self._consumed = set()
        self._stderr.clear()
        self.logger.debug("starting %s", " ".join(cmd))
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env={**os.environ, "RUST_LOG": os.environ.get("TFTPLAB_RUST_LOG", "info")},
            )
        except OSError as e:
            raise ConfigError(f"cannot run {binary!r}: {e.strerror}") from None
        self._proc = proc
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(proc.stdout,), daemon=True, name="tftplab-events"),
            threading.Thread(target=self._read_stderr, args=(proc.stderr,), daemon=True, name="tftplab-log"),
        ]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + self.ready_timeout
        with self._cond:
            while self._bound is None and proc.poll() is None and time.monotonic() < deadline:
                self._cond.wait(timeout=0.05)
            bound = self._bound
        if bound is None:
            exited = proc.poll() is not None
            self._kill()
            if exited:
                raise ConfigError(f"tftplab serve failed: {self._failure_line()}")
            raise ConfigError(f"tftplab serve did not report ready within {self.ready_timeout} s")
        self.logger.info("TFTP server (tftplab) started on %s:%d serving %s", bound[0], bound[1], self.root_dir)

    def _kill(self):
        """Stops the process at once and reaps it and its reader threads."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._join_readers()

    def _join_readers(self):
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    @export
    def stop(self):
        """Stop the server: SIGTERM, `grace` seconds for running transfers
        (plus 2 s), then SIGKILL. Events reported before it exited stay
        available through transfers()."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self.logger.warning("stop called - TFTP server is not running")
            self._kill()
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=self.grace + 2)
        except subprocess.TimeoutExpired:
            self.logger.error("tftplab did not exit %.1f s after SIGTERM; killing it", self.grace + 2)
            proc.kill()
            proc.wait()
        self._proc = None
        self._join_readers()
        self.logger.info("TFTP server stopped")

    def close(self):
        if self._proc is not None:
            self.stop()
        super().close()

    # -- queries ----------------------------------------------------------

    @export
    def get_host(self) -> str:
        """The address the server binds (as configured, or the default
        route's address)."""
        return self.host

    @export
    def get_port(self) -> int:
        """The UDP port: the bound one while running (also when the config
        says 0), else the configured one."""
        with self._cond:
            return self._bound[1] if self._bound else self.port

    @export
    def is_running(self) -> bool:
        return self._running()

    @export
    def transfers(self) -> list[dict[str, Any]]:
        """Every transfer finished since start (file, peer, direction,
        outcome, bytes, negotiated options, error), oldest first."""
        with self._cond:
            return [e for e in self._events if e.get("event") == "transfer"]

    @export
    def refusals(self) -> list[dict[str, Any]]:
        """Every request refused since start (file, peer, code, message)."""
        with self._cond:
            return [e for e in self._events if e.get("event") == "refused"]

    @export
    def wait_for_transfer(self, name: str, timeout: float = 60.0, direction: str = "read") -> dict[str, Any]:
        """Waits until a transfer of `name` in `direction` finishes
        successfully and returns it. Each transfer is returned once, so a
        second call waits for the next fetch (the next boot).

        Raises:
            TftpError: none succeeded within `timeout` seconds (the message
                lists the failed attempts and refusals of that name).
        """
        want = name.lstrip("/")
        deadline = time.monotonic() + float(timeout)
        with self._cond:
            while True:
                for e in self._events:
                    if (
                        e.get("event") == "transfer"
                        and e["file"].lstrip("/") == want
                        and e["direction"] == direction
                        and e["outcome"] == "ok"
                        and e["id"] not in self._consumed
                    ):
                        self._consumed.add(e["id"])
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if not self._running() and self._proc is None:
                    raise ServerNotRunning(f"waiting for {name!r}: the TFTP server is not running")
                self._cond.wait(timeout=min(left, 0.2))
            tried = [
                f"{e['peer']}: {e['outcome']}"
                + (f" (ERROR {e['error']['code']}: {e['error']['message']})" if e.get("error") else "")
                for e in self._events
                if e.get("event") == "transfer" and e["file"].lstrip("/") == want and e["outcome"] != "ok"
            ] + [
                f"{e['peer']}: refused ERROR {e['code']}: {e['message']}"
                for e in self._events
                if e.get("event") == "refused" and (e.get("file") or "").lstrip("/") == want
            ]
        detail = "; ".join(tried) if tried else "no request for it arrived"
        raise TransferNotSeen(f"no successful {direction} of {name!r} within {timeout} s: {detail}")
