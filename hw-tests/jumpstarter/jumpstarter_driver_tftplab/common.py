"""What driver and client share: the errors and a finished transfer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

try:  # Code written for upstream's driver catches its TftpError: so do ours.
    from jumpstarter_driver_tftp.driver import TftpError as _Base
except ImportError:  # pragma: no cover - upstream's driver is optional
    _Base = Exception


class TftpError(_Base):
    """Base of every error this driver raises (a subclass of
    jumpstarter_driver_tftp.driver.TftpError when that package is installed)."""


class ServerNotRunning(TftpError):
    """The call needs a running server."""


class ConfigError(TftpError):
    """The driver's configuration cannot work (binary, port, root, options)."""


class TransferNotSeen(TftpError):
    """wait_for_transfer ran out of time."""


class StorageError(TftpError):
    """A file operation on the server's root failed."""


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


@dataclass(frozen=True)
class Transfer:
    """One finished transfer, as `tftplab serve --events json` reports it."""

    id: int
    direction: str  # "read" (the board fetched) or "write" (the board uploaded)
    file: str
    peer: str
    outcome: str  # ok, peer_error, local_error, timed_out, unconfirmed
    bytes: int | None
    blocks: int | None
    retransmissions: int | None
    seconds: float | None
    options: dict[str, int | None] | None = field(default=None)
    error: dict[str, Any] | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @classmethod
    def from_event(cls, e: dict[str, Any]) -> "Transfer":
        # Values cross gRPC as protobuf Values: integers arrive as floats.
        opts = e.get("options")
        err = e.get("error")
        return cls(
            id=int(e["id"]),
            direction=e["direction"],
            file=e["file"],
            peer=e["peer"],
            outcome=e["outcome"],
            bytes=_int(e.get("bytes")),
            blocks=_int(e.get("blocks")),
            retransmissions=_int(e.get("retransmissions")),
            seconds=e.get("seconds"),
            options=None if opts is None else {k: _int(v) for k, v in opts.items()},
            error=None if err is None else {"code": _int(err.get("code")), "message": err.get("message")},
        )
