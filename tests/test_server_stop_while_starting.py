"""Ctrl+C while `recorder serve` is still starting stops it in good order, as once it serves:
status 0, no "Aborted!", and a crashed session it was recovering left recovered. With several
workers the supervisor may wait for a port still in use; a Ctrl+C then stops it at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from server_support import assert_session_equals, free_port
from storage_support import expected_from

from recorder.sim.fleet import make_fleet
from recorder.storage import Store

RECORDER = str(Path(sys.executable).with_name("recorder"))


def start_serving(data_dir: Path, port: int, log: Path, *args: str) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([RECORDER, "serve", "--plain-http", "--host", "127.0.0.1", "--port", str(port),
                                 "--rtmp-port", "0", "--data-dir", str(data_dir), *args],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def interrupt_when_said(server: subprocess.Popen, log: Path, text: str, timeout_s: float = 60) -> str:
    """SIGINT the moment the server has printed `text`; all it printed, once it has exited."""
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert server.poll() is None, f"the server exited without saying {text!r}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"the server never said {text!r}:\n{log.read_text()}"
        time.sleep(0.001)
    server.send_signal(signal.SIGINT)
    server.wait(timeout=60)
    return log.read_text()


CRASH_WHILE_RECORDING = """
import os, sys, time
from recorder.sim.fleet import make_fleet
from recorder.storage import Store
from recorder.wire import Decoder

device = make_fleet(1, seed=5, profile="mp_streaming_demo")[0]
writer = Store(sys.argv[1], sync=False).open_writer(device.serial, device.session_id)
writer.begin_request(device.headers(), "127.0.0.1:1", time.time_ns())
decoder = Decoder()
writer.write(decoder.feed(open(sys.argv[2], "rb").read()))
writer.write(decoder.close())
writer.flush()
os._exit(0)  # never finished: as a crash leaves it
"""


def test_ctrl_c_while_the_supervisor_waits_for_its_port_stops_it_cleanly(tmp_path):
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # taken, and not shareable (no SO_REUSEPORT)
        server = start_serving(tmp_path / "data", port, tmp_path / "serve.log", "--workers", "2")
        output = interrupt_when_said(server, tmp_path / "serve.log", f"port {port} is in use")
    assert server.returncode == 0, output
    assert "Aborted!" not in output and "Traceback" not in output
    assert "stopped before serving" in output


def test_ctrl_c_while_recovering_stops_the_server_cleanly_once_it_is_up(tmp_path):
    device = make_fleet(1, seed=5, profile="mp_streaming_demo")[0]
    body = device.window(0, 1.0)
    (tmp_path / "body").write_bytes(body)
    subprocess.run([sys.executable, "-c", CRASH_WHILE_RECORDING, str(tmp_path / "data"), str(tmp_path / "body")],
                   check=True, timeout=120)

    server = start_serving(tmp_path / "data", free_port(), tmp_path / "serve.log", "--workers", "1")
    output = interrupt_when_said(server, tmp_path / "serve.log", "recovered unfinished session")
    assert server.returncode == 0, output
    assert "Aborted!" not in output and "Traceback" not in output
    path = Store(tmp_path / "data").session_path(device.serial, device.session_id)
    manifest = assert_session_equals(path, expected_from([body]))
    assert manifest["state"] == "recovered"
