"""The runbook's lab exporter (exporter.lab.yaml): tftplab's driver next to
Jumpstarter's power (jumpstarter-driver-http-power, on the
jumpstarter-driver-power interface) and serial (jumpstarter-driver-pyserial)
drivers. The file's classes are the real ones, and the same file, with the
lab's addresses swapped for local stand-ins (an HTTP server for the relay, a
pty for the UART, loopback for TFTP), runs under `jmp shell
--exporter-config`: `j power cycle` and `j power off` (the commands the
runbook's boards.toml uses for tftplab-hw) reach the relay, and a client
drives all three drivers."""

from __future__ import annotations

import http.server
import importlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from conftest import missing

HERE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

CLIENT = """
from jumpstarter.utils.env import env

with env() as client:
    client.tftp.start()
    client.tftp.put_file("test.bin", b"x" * 1000)
    assert "test.bin" in client.tftp.list_files()
    client.tftp.delete_file("test.bin")
    client.tftp.stop()
    with client.serial.pexpect() as console:
        console.send("typed through jumpstarter\\n")
        console.expect("the board answers", timeout=20)
    print("CLIENT-OK")
"""


def lab() -> dict:
    return yaml.safe_load((HERE / "exporter.lab.yaml").read_text())


def test_the_lab_exporter_names_real_driver_classes():
    from jumpstarter.driver import Driver
    from jumpstarter_driver_power.driver import PowerInterface

    export = lab()["export"]
    assert sorted(export) == ["power", "serial", "tftp"]
    classes = {}
    for name, entry in export.items():
        module, _, cls = entry["type"].rpartition(".")
        classes[name] = getattr(importlib.import_module(module), cls)
        assert issubclass(classes[name], Driver), entry["type"]
        # The config keys are the class's own: it builds from them.
        fields = classes[name].__dataclass_fields__
        assert set(entry["config"]) <= set(fields), (name, set(entry["config"]) - set(fields))
    assert issubclass(classes["power"], PowerInterface)
    assert export["tftp"]["type"] == "jumpstarter_driver_tftplab.driver.Tftp"


class Relay(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        Relay.seen.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_the_lab_exporter_runs_with_power_serial_and_tftp(tftplab_bin, tmp_path):
    jmp = BIN / "jmp"
    if not jmp.exists():
        missing("jmp (jumpstarter-cli)", "TFTPLAB_REQUIRE_JUMPSTARTER", "pip install jumpstarter-cli==0.9.0")
    relay = http.server.HTTPServer(("127.0.0.1", 0), Relay)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    master, slave = os.openpty()
    typed = bytearray()

    def board():
        # The UART's far end: answers once the client's line arrives.
        while b"typed through jumpstarter" not in typed:
            try:
                typed.extend(os.read(master, 4096))
            except OSError:
                return
        os.write(master, b"the board answers\r\n")

    threading.Thread(target=board, daemon=True).start()
    try:
        config = lab()
        export = config["export"]
        export["tftp"]["config"].update(root_dir=str(tmp_path / "root"), host="127.0.0.1", port=0)
        for key in ("power_on", "power_off"):
            url = export["power"]["config"][key]["url"]
            export["power"]["config"][key]["url"] = url.replace("192.168.1.50", f"127.0.0.1:{relay.server_port}")
        export["serial"]["config"]["url"] = os.ttyname(slave)
        (tmp_path / "exporter.yaml").write_text(yaml.safe_dump(config))
        (tmp_path / "client.py").write_text(CLIENT)
        # jmp shell 0.9.0 exits 0 whatever its command returns.
        command = f"j power cycle --wait 1 && j power off && {sys.executable} client.py; echo EXIT=$?"
        r = subprocess.run(
            [str(jmp), "shell", "--exporter-config", "exporter.yaml", "--", "sh", "-c", command],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
        )
        print(f"--- jmp shell: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        assert "EXIT=0" in r.stdout and "CLIENT-OK" in r.stdout
        assert Relay.seen == ["/relay/0?turn=off", "/relay/0?turn=on", "/relay/0?turn=off"]
        assert b"typed through jumpstarter\n" in typed
    finally:
        relay.shutdown()
        os.close(master)
        os.close(slave)
