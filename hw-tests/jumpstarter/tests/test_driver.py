"""The driver end to end: files put through the client are fetched over
UDP on loopback by real clients (curl, tftp-hpa) from the tftplab server the
driver started, its events reach the test, and bad configuration fails with
one line and no process left behind."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time

import pytest
from conftest import error_code, rrq, udp_exchange

from jumpstarter_driver_tftplab.common import ServerNotRunning, StorageError, TftpError, TransferNotSeen
from jumpstarter_driver_tftplab.driver import ConfigError, Tftp

BLOB = bytes((i * 7 + i // 300) % 256 for i in range(200_003))


def test_curl_fetches_a_nested_file_and_wait_for_transfer_reports_it(make_tftp, peer, tmp_path):
    curl = peer("curl")
    tftp, _ = make_tftp()
    tftp.start()
    tftp.put_file("9ffefdef/start4.elf", BLOB)
    assert tftp.list_files() == ["9ffefdef/start4.elf"]
    out = tmp_path / "got.elf"
    url = f"tftp://127.0.0.1:{tftp.get_port()}/9ffefdef/start4.elf"
    subprocess.run([curl, "-sS", "--tftp-blksize", "1468", "-o", str(out), url], check=True, timeout=30)
    assert out.read_bytes() == BLOB
    t = tftp.wait_for_transfer("9ffefdef/start4.elf", timeout=5)
    assert (t.outcome, t.direction, t.bytes) == ("ok", "read", len(BLOB))
    assert t.options["blksize"] == 1468 and t.options["tsize"] == len(BLOB)
    assert t.peer.startswith("127.0.0.1:")
    assert tftp.check_file_checksum("9ffefdef/start4.elf", hashlib.sha256(BLOB).hexdigest())
    assert not tftp.check_file_checksum("9ffefdef/start4.elf", "00" * 32)
    # Each transfer is returned once: a second wait needs a second fetch.
    with pytest.raises(TransferNotSeen):
        tftp.wait_for_transfer("9ffefdef/start4.elf", timeout=0.3)


def test_tftp_hpa_fetches_what_put_local_file_stored(make_tftp, peer, tmp_path):
    tftp_hpa = peer("tftp")
    tftp, _ = make_tftp()
    tftp.start()
    local = tmp_path / "kernel8.img"
    local.write_bytes(BLOB)
    assert tftp.put_local_file(local) == "kernel8.img"
    got = tmp_path / "fetched"
    subprocess.run(
        [tftp_hpa, "-m", "binary", "127.0.0.1", str(tftp.get_port()), "-c", "get", "kernel8.img", str(got)],
        check=True,
        timeout=30,
    )
    assert got.read_bytes() == BLOB
    assert tftp.wait_for_transfer("kernel8.img", timeout=5).bytes == len(BLOB)
    assert [t.file for t in tftp.transfers()] == ["kernel8.img"]


def refusals_once_reported(tftp, count, timeout=5.0):
    """The server's refusals once it has reported `count` of them. The client
    sees the ERROR before the driver reads the server's event for it."""
    deadline = time.monotonic() + timeout
    while True:
        refusals = tftp.refusals()
        if len(refusals) >= count or time.monotonic() > deadline:
            return refusals
        time.sleep(0.02)


def test_dot_dot_gets_error_2_and_is_reported(make_tftp):
    tftp, _ = make_tftp()
    tftp.start()
    (answer,) = udp_exchange(tftp.get_port(), rrq(b"../etc/passwd"))
    assert error_code(answer) == 2
    (refusal,) = refusals_once_reported(tftp, 1)
    assert (refusal["file"], refusal["code"]) == ("../etc/passwd", 2)
    with pytest.raises(TransferNotSeen, match="refused ERROR 2"):
        tftp.wait_for_transfer("../etc/passwd", timeout=0.2)


@pytest.mark.parametrize(
    "policy, first, second", [("off", 2, 2), ("create", None, 6), ("overwrite", None, None)]
)
def test_uploads_follow_the_write_policy(make_tftp, peer, tmp_path, policy, first, second):
    curl = peer("curl")
    tftp, driver = make_tftp(write=policy)
    tftp.start()
    src = tmp_path / "up.bin"
    url = f"tftp://127.0.0.1:{tftp.get_port()}/up.bin"
    refused = 0
    for expected in (first, second):
        src.write_bytes(os.urandom(3000))
        r = subprocess.run([curl, "-sS", "-T", str(src), url], capture_output=True, text=True, timeout=30)
        if expected is None:
            assert r.returncode == 0, r.stderr
            assert tftp.wait_for_transfer("up.bin", timeout=5, direction="write").bytes == 3000
            assert open(os.path.join(driver.root_dir, "up.bin"), "rb").read() == src.read_bytes()
        else:
            assert r.returncode != 0
            refused += 1
            refusals = refusals_once_reported(tftp, refused)
            assert len(refusals) == refused and refusals[-1]["code"] == expected


def test_second_start_is_a_no_op_and_stop_after_stop_is_harmless(make_tftp, caplog):
    tftp, driver = make_tftp()
    tftp.start()
    pid = driver._proc.pid
    port = tftp.get_port()
    tftp.start()
    assert driver._proc.pid == pid and tftp.get_port() == port
    tftp.stop()
    assert not os.path.exists(f"/proc/{pid}") or _is_zombie_free(pid)
    tftp.stop()  # warns, does nothing


def _is_zombie_free(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return True


def test_close_stops_the_server_and_removes_created_files(tftplab_bin, tmp_path):
    from jumpstarter.common.utils import serve

    root = tmp_path / "root"
    root.mkdir()
    (root / "kept.txt").write_bytes(b"already there")
    driver = Tftp(root_dir=str(root), host="127.0.0.1", port=0, grace=1)
    with serve(driver) as tftp:
        tftp.start()
        pid = driver._proc.pid
        tftp.put_file("boot/created.bin", b"x")
        tftp.close()
    assert not os.path.exists(f"/proc/{pid}")
    assert (root / "kept.txt").exists()
    assert not (root / "boot" / "created.bin").exists()


def test_wait_for_transfer_without_a_server_says_so(make_tftp):
    tftp, _ = make_tftp()
    with pytest.raises(ServerNotRunning):
        tftp.wait_for_transfer("x", timeout=1)


def test_storage_errors_are_tftp_errors(make_tftp):
    import jumpstarter_driver_tftp.driver as upstream

    tftp, _ = make_tftp()
    with pytest.raises(StorageError) as e:
        tftp.delete_file("nope.bin")
    assert isinstance(e.value, upstream.TftpError)  # code written for upstream catches it
    with pytest.raises(TftpError):
        tftp.check_file_checksum("nope.bin", "00")
    with pytest.raises(FileNotFoundError):
        tftp.put_local_file("/nonexistent/file.bin")


# -- bad configuration: one clear line, no process left behind ----------------


def _tftplab_pids() -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\x00")
            except OSError:
                continue
            if argv and argv[0].endswith(b"tftplab") and b"serve" in argv and os.getppid() != int(entry):
                if _is_zombie_free(int(entry)):
                    pids.add(int(entry))
    return pids


def _start_fails(make_tftp, match: str, **config):
    before = _tftplab_pids()
    tftp, driver = make_tftp(**config)
    with pytest.raises(TftpError, match=match) as e:
        tftp.start()
    assert "\n" not in str(e.value)
    assert driver._proc is None
    assert _tftplab_pids() <= before, "a tftplab process was left behind"
    return str(e.value)


def test_binary_missing(make_tftp):
    _start_fails(make_tftp, "is not an executable file", binary="/nonexistent/tftplab")


def test_binary_not_found_anywhere(make_tftp, monkeypatch):
    monkeypatch.delenv("TFTPLAB_BIN")
    monkeypatch.setenv("PATH", "/nonexistent")
    _start_fails(make_tftp, "tftplab binary not found")


def test_port_in_use(make_tftp):
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        msg = _start_fails(make_tftp, "cannot listen on 127.0.0.1", port=taken.getsockname()[1])
        assert "in use" in msg, msg
    finally:
        taken.close()


def test_root_not_writable(make_tftp, tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    if os.geteuid() == 0:
        # root writes anywhere mode bits say no: use a directory nobody can
        # create files in.
        root = "/proc/self/fdinfo"
    else:
        root.chmod(0o555)
    _start_fails(make_tftp, "is not writable", root_dir=str(root))


def test_root_is_a_file(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(ConfigError, match="cannot create root_dir"):
        Tftp(root_dir=str(tmp_path / "f"), host="127.0.0.1")


@pytest.mark.parametrize(
    "config, match",
    [
        ({"max_blksize": 70000}, "error: invalid value '70000' for '--max-blksize"),
        ({"extra_args": ["--no-such-flag"]}, "error: unexpected argument '--no-such-flag'"),
        ({"timeout": 0}, "error: invalid value '0' for '--timeout"),
    ],
)
def test_invalid_option(make_tftp, config, match):
    _start_fails(make_tftp, match, **config)


def test_invalid_write_policy(tmp_path):
    with pytest.raises(ConfigError, match="write must be one of off, create, overwrite"):
        Tftp(root_dir=str(tmp_path), host="127.0.0.1", write="sometimes")
