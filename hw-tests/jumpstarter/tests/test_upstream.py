"""Upstream's tests (jumpstarter-driver-tftp 0.9.0: driver_test.py,
server_test.py, test_path_traversal.py), run against this driver where they
test what a driver owes its users. Upstream's server tests drive its Python
server object and mostly assert `server.transport is not None`; here the same
datagrams go over loopback to the `tftplab serve` the driver started, and the
answer is checked."""

from __future__ import annotations

import os

import pytest
from conftest import error_code, rrq, udp_exchange

from jumpstarter_driver_tftplab.driver import Tftp

# -- driver_test.py --------------------------------------------------------


def test_tftp_file_operations(make_tftp):
    """Upstream's test_tftp_file_operations, through the storage child."""
    tftp, _ = make_tftp()
    filename = "test.txt"
    tftp.storage.write_bytes(filename, b"Hello")
    assert filename in list(tftp.storage.list("/"))
    tftp.storage.delete(filename)
    assert filename not in list(tftp.storage.list("/"))


def test_tftp_host_config(tmp_path):
    server = Tftp(root_dir=str(tmp_path), host="192.168.1.1")
    assert server.get_host() == "192.168.1.1"


def test_tftp_root_directory_creation(tmp_path):
    new_dir = tmp_path / "new_tftp_root"
    server = Tftp(root_dir=str(new_dir))
    assert new_dir.exists()
    server.close()


def test_empty_host_is_the_default_route_address(tmp_path):
    # Upstream: host "" means get_ip_address(); never left empty.
    server = Tftp(root_dir=str(tmp_path), host="")
    assert server.get_host() not in ("", None)
    server.close()


# -- server_test.py ----------------------------------------------------------


@pytest.fixture
def served(make_tftp):
    tftp, driver = make_tftp()
    root = driver.root_dir
    with open(os.path.join(root, "test.txt"), "w") as f:
        f.write("Hello, TFTP!")
    tftp.start()
    return tftp, tftp.get_port()


def test_server_startup_and_shutdown(make_tftp):
    tftp, _ = make_tftp()
    tftp.start()
    assert tftp.is_running()
    port = tftp.get_port()
    assert port != 0
    tftp.stop()
    assert not tftp.is_running()
    assert udp_exchange(port, rrq(b"test.txt"), wait=0.3) == []


def test_read_request_for_existing_file(served):
    _, port = served
    (answer,) = udp_exchange(port, rrq(b"test.txt"))
    assert answer == b"\x00\x03\x00\x01Hello, TFTP!"


def test_read_request_for_nonexistent_file(served):
    _, port = served
    (answer,) = udp_exchange(port, rrq(b"nonexistent.txt"))
    assert error_code(answer) == 1


def test_write_request_rejection(served):
    # Upstream is read-only; here it is the default write policy "off".
    _, port = served
    (answer,) = udp_exchange(port, rrq(b"test.txt", opcode=2))
    assert error_code(answer) == 2


def test_invalid_packet_handling(served):
    # A truncated RRQ: an ERROR 4 back, and the server keeps serving.
    _, port = served
    (answer,) = udp_exchange(port, b"\x00\x01")
    assert error_code(answer) == 4
    (answer,) = udp_exchange(port, rrq(b"test.txt"))
    assert answer[:4] == b"\x00\x03\x00\x01"


def test_path_traversal_prevention(served):
    _, port = served
    (answer,) = udp_exchange(port, rrq(b"../../../etc/passwd"))
    assert error_code(answer) == 2


def test_options_negotiation(served):
    _, port = served
    (answer,) = udp_exchange(port, rrq(b"test.txt", b"blksize", b"1024", b"timeout", b"3"))
    assert answer[:2] == b"\x00\x06"  # OACK
    fields = answer[2:].split(b"\x00")
    assert dict(zip(fields[0::2], fields[1::2])) == {b"blksize": b"1024", b"timeout": b"3"}


def test_retry_mechanism(served):
    # No ACK: block 1 goes out again (timeout only), never another block.
    _, port = served
    answers = udp_exchange(port, rrq(b"test.txt"), wait=2.5, count=3)
    data = [p for p in answers if p[:2] == b"\x00\x03"]
    assert len(data) > 1
    assert {p[2:4] for p in data} == {b"\x00\x01"}


def test_invalid_options_handling(served):
    # A non-numeric blksize and an out-of-range timeout are ignored: the
    # transfer runs with the defaults (DATA block 1 at once, no OACK).
    _, port = served
    (answer,) = udp_exchange(port, rrq(b"test.txt", b"blksize", b"invalid", b"timeout", b"999999"))
    assert answer == b"\x00\x03\x00\x01Hello, TFTP!"


# -- test_path_traversal.py ----------------------------------------------


@pytest.mark.parametrize("name", [b"..", b"../etc/passwd", b"subdir/../../../etc/passwd", b"../secret"])
def test_rejects_traversal_with_access_violation(served, name):
    _, port = served
    (answer,) = udp_exchange(port, rrq(name))
    assert error_code(answer) == 2


def test_dot_dot_at_end_stays_inside_and_is_no_file(served, make_tftp):
    # Upstream rejects "subdir/.."; tftplab resolves it to the root, a
    # directory, which is no file to send: an ERROR, never DATA.
    _, port = served
    (answer,) = udp_exchange(port, rrq(b"subdir/.."))
    assert error_code(answer) in (1, 2)


@pytest.mark.parametrize("name", [b"boot.img", b"file..name.txt"])
def test_allows_valid_filenames(served, make_tftp, name):
    tftp, port = served
    tftp.put_file(name.decode(), b"boot")
    (answer,) = udp_exchange(port, rrq(name))
    assert answer == b"\x00\x03\x00\x01boot"


def test_absolute_path_is_relative_to_the_root(served):
    # Upstream rejects "/etc/passwd"; tftplab (like tftpd-hpa) reads a
    # leading / as the root, so "/test.txt" is served and the host's
    # /etc/passwd never is.
    _, port = served
    (answer,) = udp_exchange(port, rrq(b"/test.txt"))
    assert answer == b"\x00\x03\x00\x01Hello, TFTP!"
    (answer,) = udp_exchange(port, rrq(b"/etc/passwd"))
    assert error_code(answer) == 1
