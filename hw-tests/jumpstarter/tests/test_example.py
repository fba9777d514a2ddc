"""The seed's example test, verbatim: examples/tftp_test.py from the
jumpstarter-driver-tftp 0.9.0 source distribution on PyPI, extracted at test
time (never copied into this repository), run by `jmp shell
--exporter-config` against an exporter whose `tftp` entry is this driver,
and against upstream's driver, where it fails as it does upstream."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import missing

SDIST = "jumpstarter_driver_tftp-0.9.0.tar.gz"
MEMBER = "jumpstarter_driver_tftp-0.9.0/examples/tftp_test.py"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def example(tmp_path_factory) -> bytes:
    """The example's bytes, from $TFTPLAB_JMP_SDIST (the sdist, when the
    caller downloaded it already) or from PyPI now."""
    sdist = os.environ.get("TFTPLAB_JMP_SDIST")
    if not sdist:
        where = tmp_path_factory.mktemp("sdist")
        r = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
             "jumpstarter-driver-tftp==0.9.0", "-d", str(where)],
            capture_output=True, text=True, timeout=300,
        )
        if r.returncode != 0:
            missing("jumpstarter-driver-tftp 0.9.0 sdist", "TFTPLAB_REQUIRE_JUMPSTARTER",
                    f"pip download failed: {r.stderr.strip().splitlines()[-1:]}")
        sdist = str(where / SDIST)
    with tarfile.open(sdist) as tar:
        return tar.extractfile(MEMBER).read()


def run_example(example: bytes, tmp_path: Path, driver_type: str) -> subprocess.CompletedProcess:
    jmp = BIN / "jmp"
    if not jmp.exists():
        missing("jmp (jumpstarter-cli)", "TFTPLAB_REQUIRE_JUMPSTARTER", "pip install jumpstarter-cli==0.9.0")
    (tmp_path / "tftp_test.py").write_bytes(example)
    (tmp_path / "exporter.yaml").write_text(
        f"""apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata:
  namespace: default
  name: example
export:
  tftp:
    type: {driver_type}
    config:
      root_dir: {tmp_path / "tftproot"}
      host: 127.0.0.1
      port: 0
"""
    )
    # jmp shell 0.9.0 exits 0 whatever its command returns, so the command
    # prints pytest's own exit status.
    pytest_cmd = f"{sys.executable} -m pytest -p no:cacheprovider -v -rA tftp_test.py; echo PYTEST_EXIT=$?"
    r = subprocess.run(
        [str(jmp), "shell", "--exporter-config", "exporter.yaml", "--", "sh", "-c", pytest_cmd],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    print(f"--- jmp shell with {driver_type}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def test_example_passes_verbatim_with_tftplab(example, tftplab_bin, tmp_path):
    assert b"client.tftp.put_local_file(test_file)" in example  # the seed's test, as shipped
    r = run_example(example, tmp_path, "jumpstarter_driver_tftplab.driver.Tftp")
    assert r.returncode == 0
    assert "PYTEST_EXIT=0" in r.stdout
    assert "PASSED tftp_test.py::TestResource::test_tftp_operations" in r.stdout
    assert "1 passed" in r.stdout


def test_example_fails_with_upstreams_driver(example, tmp_path):
    r = run_example(example, tmp_path, "jumpstarter_driver_tftp.driver.Tftp")
    assert "PYTEST_EXIT=1" in r.stdout
    assert "AttributeError: put_local_file" in r.stdout
    assert "1 failed" in r.stdout
