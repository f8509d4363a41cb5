"""`recorder recover SESSION` on one device session folder, even one a crash left without a
manifest (killed before its first flush wrote one)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from server_support import assert_session_equals
from storage_support import expected_from

from recorder.sim.fleet import make_fleet
from recorder.storage import Store, layout
from recorder.wire import Decoder

RECORDER = str(Path(sys.executable).with_name("recorder"))


def test_recover_one_session_folder_without_its_manifest(tmp_path):
    device = make_fleet(1, seed=21, profile="mp_streaming_demo")[0]
    body = device.window(0, 1.0)
    store = Store(tmp_path / "data", sync=False)
    writer = store.open_writer(device.serial, device.session_id)
    writer.begin_request(device.headers(), "127.0.0.1:1", time.time_ns())
    decoder = Decoder()
    writer.write(decoder.feed(body))
    writer.write(decoder.close())
    writer.flush()
    path = store.session_path(device.serial, device.session_id)
    (path / layout.MANIFEST).unlink()  # as if killed before any manifest was written

    assert layout.is_session_folder(path) and not layout.is_session_folder(tmp_path / "data")
    result = subprocess.run([RECORDER, "recover", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout and "nothing to recover" not in result.stdout
    manifest = assert_session_equals(path, expected_from([body]))  # every value of every stream, once
    assert manifest["state"] == "recovered"


def test_recover_writes_nothing_into_folders_that_are_not_sessions(tmp_path):
    notes = tmp_path / "notes" / "archive" / "2026"
    notes.mkdir(parents=True)
    (notes / "todo.txt").write_text("buy batteries\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = subprocess.run([RECORDER, "recover", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "nothing to recover" in result.stdout
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
