"""Shared fixtures: the tftplab binary, the driver served in-process, and
loud skips for missing tools (failures under TFTPLAB_REQUIRE_*)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def missing(what: str, require_var: str, how: str):
    """Skip (loudly) for a missing tool, or fail when `require_var` is set."""
    message = f"MISSING {what}: {how}"
    if os.environ.get(require_var) == "1":
        pytest.fail(f"{message} ({require_var}=1)")
    sys.stderr.write(f"\n*** SKIPPING: {message} (set {require_var}=1 to make this a failure) ***\n")
    pytest.skip(message)


def find_tftplab() -> str | None:
    for candidate in (
        os.environ.get("TFTPLAB_BIN"),
        str(REPO / "target" / "debug" / "tftplab"),
        str(REPO / "target" / "release" / "tftplab"),
        shutil.which("tftplab"),
    ):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def tftplab_bin() -> str:
    found = find_tftplab()
    if found is None:
        missing(
            "tftplab binary",
            "TFTPLAB_REQUIRE_JUMPSTARTER",
            "cargo build -p tftplab --bin tftplab (or set TFTPLAB_BIN)",
        )
    os.environ["TFTPLAB_BIN"] = found
    return found


@pytest.fixture
def peer():
    """A real TFTP client on PATH, or a loud skip (failure under TFTPLAB_REQUIRE_PEERS)."""

    def need(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            missing(f"TFTP peer `{name}`", "TFTPLAB_REQUIRE_PEERS", "sudo bash .ci/install-peers.sh")
        return path

    return need


@pytest.fixture
def make_tftp(tftplab_bin, tmp_path):
    """Builds a tftplab driver on loopback, port 0, served in-process
    through jumpstarter's serve(); yields the client and closes it."""
    from jumpstarter.common.utils import serve

    from jumpstarter_driver_tftplab.driver import Tftp

    stack = []

    def make(**config):
        config = {"root_dir": str(tmp_path / "root"), "host": "127.0.0.1", "port": 0, "grace": 1, **config}
        driver = Tftp(**config)
        cm = serve(driver)
        client = cm.__enter__()
        stack.append((cm, client))
        return client, driver

    yield make
    for cm, client in reversed(stack):
        try:
            client.close()
        finally:
            cm.__exit__(None, None, None)


def udp_exchange(port: int, packet: bytes, *, wait: float = 1.0, count: int = 1) -> list[bytes]:
    """Sends one datagram to 127.0.0.1:port and collects up to `count`
    answers (from any port) for at most `wait` seconds."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(wait)
    s.sendto(packet, ("127.0.0.1", port))
    got = []
    try:
        while len(got) < count:
            data, _ = s.recvfrom(70000)
            got.append(data)
    except socket.timeout:
        pass
    finally:
        s.close()
    return got


def rrq(name: bytes, *options: bytes, opcode: int = 1) -> bytes:
    return opcode.to_bytes(2, "big") + name + b"\x00octet\x00" + b"".join(o + b"\x00" for o in options)


def error_code(packet: bytes) -> int | None:
    """The code of an ERROR packet, None for anything else."""
    return int.from_bytes(packet[2:4], "big") if packet[:2] == b"\x00\x05" else None
