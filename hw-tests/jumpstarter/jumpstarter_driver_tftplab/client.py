"""The test side: upstream's calls (start, stop, get_host, get_port, the
storage child) plus the seed's file calls and tftplab's transfer events."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from jumpstarter_driver_composite.client import CompositeClient

from jumpstarter.client.core import DriverError

from .common import ServerNotRunning, StorageError, TftpError, Transfer, TransferNotSeen

__all__ = ["TftpClient", "TftpError", "ServerNotRunning", "StorageError", "TransferNotSeen", "Transfer"]


def _driver_error(e: DriverError) -> TftpError:
    """The driver's exception arrives as a DriverError carrying its message;
    give it back a TftpError class by what it says."""
    message = str(e)
    if "not running" in message:
        return ServerNotRunning(message)
    if "no successful" in message:
        return TransferNotSeen(message)
    return TftpError(message)


@dataclass(kw_only=True)
class TftpClient(CompositeClient):
    """Client for the tftplab TFTP driver. `client.tftp.storage` is the
    OpenDAL storage on the served root, as with upstream's driver."""

    def _call(self, method, *args):
        try:
            return self.call(method, *args)
        except DriverError as e:
            raise _driver_error(e) from None

    def start(self):
        """Start the server; returns once it is listening."""
        self._call("start")

    def stop(self):
        """Stop the server (SIGTERM, the grace period, then SIGKILL)."""
        self._call("stop")

    def get_host(self) -> str:
        return self._call("get_host")

    def get_port(self) -> int:
        """The bound port while running (also when configured as 0)."""
        return int(self._call("get_port"))

    def is_running(self) -> bool:
        return self._call("is_running")

    def transfers(self) -> list[Transfer]:
        """Every transfer finished since start, oldest first."""
        return [Transfer.from_event(e) for e in self._call("transfers")]

    def refusals(self) -> list[dict]:
        """Requests refused since start: file, peer, code, message."""
        return [{**e, "code": int(e["code"])} for e in self._call("refusals")]

    def wait_for_transfer(self, name: str, timeout: float = 60.0, direction: str = "read") -> Transfer:
        """Wait until `name` was transferred successfully (by default: fetched
        by a client); each transfer is returned once. Raises TransferNotSeen
        with the failed attempts when none succeeds in time."""
        return Transfer.from_event(self._call("wait_for_transfer", name, float(timeout), direction))

    # -- the seed's file calls, on the storage child -----------------------

    def _storage(self, what: str, fn, *args):
        try:
            return fn(*args)
        except DriverError as e:
            raise StorageError(f"{what}: {e}") from None

    def put_file(self, name: str, data: bytes) -> None:
        """Store `data` as `name` (nested names create their directories)."""
        self._storage(f"put {name}", self.storage.write_bytes, name, data)

    def put_local_file(self, path: str | os.PathLike, name: str | None = None) -> str:
        """Upload a local file, by default under its own file name; returns
        the name it is served as. A missing local file raises
        FileNotFoundError, as open() does."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "No such file", path)
        name = name or os.path.basename(path)
        self._storage(f"put {name}", self.storage.write_from_path, name, os.path.abspath(path))
        return name

    def list_files(self) -> list[str]:
        """Every file served, with nested paths (`9ffefdef/start4.elf`),
        sorted; directories are not listed."""
        names = self._storage("list", lambda: list(self.storage.scan("/")))
        return sorted(n.lstrip("/") for n in names if n and not n.endswith("/"))

    def delete_file(self, name: str) -> None:
        """Delete a served file; a missing one raises StorageError."""
        if not self._storage(f"delete {name}", self.storage.exists, name):
            raise StorageError(f"delete {name}: no such file")
        self._storage(f"delete {name}", self.storage.delete, name)

    def check_file_checksum(self, name: str, expected_sha256: str) -> bool:
        """True when the served file's SHA-256 is `expected_sha256` (hex)."""
        actual = self._storage(f"checksum {name}", self.storage.hash, name, "sha256")
        return actual.lower() == expected_sha256.lower()

    @staticmethod
    def sha256_of(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()
