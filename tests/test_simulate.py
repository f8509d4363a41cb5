"""The simulator as a device: real chunked HTTP/1.1 on a socket, and bodies written to files."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import trio
from click.testing import CliRunner
from terminal_support import run_on_a_terminal

from recorder.cli import main
from recorder.sim import sender
from recorder.sim.fleet import make_fleet
from recorder.wire import Decoder


def dechunk(raw: bytes) -> tuple[bytes, list[int]]:
    """The body of a chunked message, and its chunk sizes, parsed by hand (not by h11)."""
    body, sizes, pos = bytearray(), [], 0
    while True:
        line_end = raw.index(b"\r\n", pos)
        size = int(raw[pos:line_end].split(b";")[0], 16)
        pos = line_end + 2
        if size == 0:
            return bytes(body), sizes
        body += raw[pos: pos + size]
        sizes.append(size)
        assert raw[pos + size: pos + size + 2] == b"\r\n"
        pos += size + 2


async def capture_one_request(listener, seen: list[bytes]) -> None:
    """Read one chunked request byte for byte, answer 200 with JSON."""
    stream = await listener.accept()
    raw = bytearray()
    while not raw.endswith(b"\r\n0\r\n\r\n"):
        data = await stream.receive_some(65536)
        assert data, "client closed before the end of the body"
        raw += data
    seen.append(bytes(raw))
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n"
                          b'{"status": "ok"}')
    await stream.aclose()


async def test_sender_streams_chunked_http_with_the_device_headers():
    device = make_fleet(2, seed=3, profile="mp_streaming_demo")[1]
    twin = make_fleet(2, seed=3, profile="mp_streaming_demo")[1]
    expected = b"".join(twin.window(k * 0.2, (k + 1) * 0.2) for k in range(5))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(capture_one_request, listeners[0], seen)
        report = await sender.stream_device(device, sender.Target.parse(f"http://127.0.0.1:{port}/"), None,
                                            duration_s=1.0, batch_period_s=0.2, fast=True)
    head, _, rest = seen[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST / HTTP/1.1"
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert headers["transfer-encoding"] == "chunked"
    assert headers["session-id"] == device.session_id
    assert headers["device-serial"] == device.serial
    assert json.loads(headers["oatmeal-calibration"])["CameraCalibrations"]
    body, sizes = dechunk(rest)
    assert body == expected
    assert len(sizes) == 5  # one chunk per 200 ms batch period
    assert report.bytes == len(body) and report.records == device.records_sent
    decoder = Decoder()
    decoder.feed(body)
    decoder.close()
    assert decoder.counters.records == device.records_sent
    assert decoder.counters.corrupt_bytes == decoder.counters.gaps == decoder.counters.malformed == 0


def test_simulate_out_writes_each_device_body_and_headers(tmp_path):
    session_id = "3f9a7c1e-2b4d-4e6f-8a0b-1c2d3e4f5a6b"
    result = CliRunner().invoke(main, ["simulate", "--devices", "2", "--duration", "1", "--seed", "5",
                                       "--profile", "mp_streaming_demo", "--out", str(tmp_path),
                                       "--session-id", session_id])
    assert result.exit_code == 0, result.output
    assert "total: 2 device(s)" in result.output
    fleet = make_fleet(2, seed=5, profile="mp_streaming_demo", session_ids=[session_id] * 2)
    for device in fleet:
        folder = tmp_path / device.serial
        assert json.loads((folder / "headers.json").read_text()) == device.headers()
        body = (folder / "body.srf").read_bytes()
        assert body == b"".join(device.window(k * 0.2, (k + 1) * 0.2) for k in range(5))


def test_each_run_is_a_new_session_of_the_same_devices_and_data(tmp_path):
    """The seed fixes the devices and their data, not the session: a recorder must not take a
    second run for a reconnect of the first and drop its records as resends."""
    runs = []
    for name in ("first", "second"):
        result = CliRunner().invoke(main, ["simulate", "--devices", "2", "--duration", "0.4", "--seed", "5",
                                           "--profile", "mp_streaming_demo", "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        runs.append({folder.name: (json.loads((folder / "headers.json").read_text()),
                                   (folder / "body.srf").read_bytes())
                     for folder in (tmp_path / name).iterdir()})
    first, second = runs
    assert first.keys() == second.keys() and len(first) == 2
    session_ids = set()
    for serial in first:
        (headers_1, body_1), (headers_2, body_2) = first[serial], second[serial]
        assert body_1 == body_2
        assert headers_1["oatmeal-calibration"] == headers_2["oatmeal-calibration"]
        session_ids |= {headers_1["session-id"], headers_2["session-id"]}
    assert len(session_ids) == 4, "every device of every run has a session of its own"


def test_simulate_reports_a_refused_connection_and_fails():
    result = CliRunner().invoke(main, ["simulate", "--duration", "0.2", "--fast", "--url", "http://127.0.0.1:9/"])
    assert result.exit_code == 1
    assert "FAILED" in result.output


def test_simulate_shows_progress_on_a_terminal_and_only_the_summary_elsewhere(tmp_path):
    args = [sys.executable, "-m", "recorder.cli", "simulate", "--devices", "2", "--duration", "1", "--seed", "5",
            "--profile", "mp_streaming_demo", "--out"]
    code, shown = run_on_a_terminal([*args, str(tmp_path / "terminal")])
    assert code == 0, shown
    assert re.search(r"writing 2 device\(s\).*100%.* MB, \d+ records, 2/2 done", shown), shown
    assert "total: 2 device(s)" in shown

    piped = subprocess.run([*args, str(tmp_path / "piped")], capture_output=True, text=True, check=True)
    assert "writing" not in piped.stdout and "%" not in piped.stdout
    assert piped.stdout.splitlines()[-1].startswith("total: 2 device(s)")
