"""Crash safety: a writer killed with SIGKILL at any moment loses at most what it had not
flushed; recover() repairs what is left (and is idempotent); the session then continues."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from storage_support import assert_session_matches, expected_from, restrict, send, sequences

from recorder import open_session
from recorder.sim.fleet import make_fleet
from recorder.storage import Store, layout, recover
from recorder.storage.ahead import from_ranges

REPO = Path(__file__).resolve().parent.parent

# The child writes as the server does (a piece, write(), a flush now and then) and, after each
# flush() returns, appends the highest sequence flushed to a progress file. Small roll limits
# make parts finish all the time, so kills land in every phase: writing, flushing, rolling.
CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from recorder.storage import Store
    from recorder.wire import Decoder
    root, body_path, headers_path, progress_path = map(Path, sys.argv[1:5])
    body = body_path.read_bytes()
    headers = json.loads(headers_path.read_text())
    store = Store(root, roll_seconds=0.1, roll_bytes=2 << 20)
    writer = store.open_writer(headers["device-serial"], headers["session-id"])
    writer.begin_request(headers, "child", time.time_ns())
    decoder = Decoder(highest_sequence=writer.highest_sequence)
    progress = os.open(progress_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    piece = 128 * 1024
    for k, i in enumerate(range(0, len(body), piece)):
        writer.write(decoder.feed(body[i:i + piece]))
        if k % 3 == 2:
            writer.flush()
            os.write(progress, f"{writer.highest_sequence}\\n".encode())
        time.sleep(0.002)
    writer.write(decoder.close())
    writer.end_request(decoder.counters, time.time_ns())
    writer.close()
    os.write(progress, b"done\\n")
""")


@pytest.fixture(scope="module")
def session_body(tmp_path_factory):
    folder = tmp_path_factory.mktemp("body")
    device = make_fleet(2, seed=31)[1]
    body = device.window(0.0, 2.5)
    (folder / "body.srf").write_bytes(body)
    (folder / "headers.json").write_text(json.dumps(device.headers()))
    return device, body, folder, expected_from([body])


def run_and_kill(root: Path, folder: Path, delay_s: float) -> int | None:
    """Start the child, kill -9 it `delay_s` after its first flush; the last sequence it had
    flushed (None if it had flushed nothing)."""
    progress = root / "progress.txt"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root / "data"), str(folder / "body.srf"),
                              str(folder / "headers.json"), str(progress)], cwd=REPO)
    deadline = time.monotonic() + 60
    while not (progress.exists() and progress.read_bytes()):
        assert child.poll() is None, "the writer exited before its first flush"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(delay_s)
    child.send_signal(signal.SIGKILL)
    child.wait()
    lines = progress.read_text().split()
    assert "done" not in lines, "the writer finished before it was killed: kill sooner"
    return int(lines[-1]) if lines else None


def snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("delay_s", [0.0, 0.2, 0.5])
def test_sigkill_then_recover_keeps_everything_flushed(tmp_path, session_body, delay_s):
    device, body, folder, expected = session_body
    flushed = run_and_kill(tmp_path, folder, delay_s)
    path = tmp_path / "data" / device.serial / device.session_id

    # Before any repair, the folder reads: finished parts plus live files up to their last batch.
    live_reader = open_session(path)
    assert live_reader.table("imu-left").num_rows > 0

    store = Store(tmp_path / "data")
    assert store.unfinished() == [path]
    [report] = store.recover_all()
    assert report.found_state == "recording" and report.changed
    assert str(report).startswith(f"{path}: was recording, recovered: ")
    assert store.unfinished() == []

    # Idempotent: a second recovery changes nothing at all.
    before = snapshot(path)
    again = recover(path)
    assert not again.changed and snapshot(path) == before

    # Every file left is whole: no live or temporary files, every part and blob frame readable.
    reader = open_session(path)
    assert reader.manifest["state"] == "recovered"
    for stream in reader.streams():
        assert not layout.lives(path / stream)
        assert ds.dataset(path / stream, format="parquet").count_rows() == reader.table(stream).num_rows
    stored = np.unique(np.concatenate([reader.table(s).column("sequence").to_numpy()
                                       for s in reader.streams() if s != "verbatim"]))
    # Everything flushed is there ...
    sent = sequences(expected)
    assert np.isin(sent[sent <= flushed], stored).all()
    # ... and what is stored is exactly what was sent, once, values and bytes equal.
    assert np.isin(stored, sent).all()
    assert_session_matches(reader, restrict(expected, lambda s: np.isin(s, stored)))
    # The session's highest sequence is the last flush's watermark; what a kill between two
    # streams' writes left stored above it is noted, to be dropped when it is sent again.
    highest = reader.manifest["highest_sequence"]
    assert flushed <= highest <= int(stored.max())
    ahead = from_ranges(reader.manifest["stored_above_highest_sequence"])
    np.testing.assert_array_equal(ahead, stored[stored > highest])
    assert reader.requests()[0]["end"]["interrupted"] is True

    # The device reconnects and sends the whole session again: resends are dropped, the rest
    # appended, and the session ends up holding every record exactly once.
    writer = store.open_writer(device.serial, device.session_id)
    assert writer.highest_sequence == highest
    decoder = send(writer, body, device.headers())
    writer.close()
    final = open_session(path)
    assert_session_matches(final, expected)
    assert final.manifest["state"] == "finished"
    assert final.manifest["stored_above_highest_sequence"] == []
    assert final.manifest["counters"]["records"] == decoder.highest_sequence + 1  # each record counted once
