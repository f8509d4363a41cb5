"""recover() on each thing a crash can leave, one at a time, and on a recovery that is itself
killed; and parts that roll by age and size."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from storage_support import assert_session_matches, expected_from, send

from recorder import open_session
from recorder.sim.fleet import make_fleet
from recorder.storage import Store, layout, recover
from recorder.wire import Decoder

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def device_body():
    device = make_fleet(1, seed=61)[0]
    return device, device.window(0.0, 1.2)


def crashed_session(root: Path, device, body: bytes) -> Path:
    """A session written and flushed but never closed: what kill -9 right after a flush leaves."""
    writer = Store(root).open_writer(device.serial, device.session_id)
    send(writer, body, device.headers())
    writer.folder_lock.release()  # as the kernel does when it ends a killed process
    return writer.path  # the writer is dropped without close()


def test_live_files_become_parts_and_a_torn_batch_is_dropped(tmp_path, device_body):
    device, body = device_body
    path = crashed_session(tmp_path, device, body)
    live = next(iter(layout.lives(path / "imu-left").values()))
    whole = open_session(path).table("imu-left").num_rows
    with open(live, "r+b") as f:  # the crash cut the last batch short
        f.truncate(live.stat().st_size - 100)
    report = recover(path)
    assert report.changed and report.parts_written
    reader = open_session(path)
    assert 0 < reader.table("imu-left").num_rows < whole
    assert reader.manifest["streams"]["imu-left"]["rows"] == reader.table("imu-left").num_rows
    assert not any(layout.lives(path / s) for s in reader.streams())


def test_leftovers_of_an_interrupted_roll_are_cleaned_up(tmp_path, device_body):
    device, body = device_body
    path = crashed_session(tmp_path, device, body)
    folder = path / "barometer"
    [(n, live)] = layout.lives(folder).items()
    # crash after the part was renamed into place, before the live file was deleted
    saved = live.read_bytes()
    recover(path)
    live.write_bytes(saved)
    (folder / layout.part_temp_name(n + 1)).write_bytes(b"PAR1 half a file")
    report = recover(path)
    assert str(live) in report.files_removed
    assert not live.exists() and not (folder / layout.part_temp_name(n + 1)).exists()
    assert pq.ParquetFile(folder / layout.part_name(n)).metadata.num_rows == open_session(path).table(
        "barometer").num_rows


def test_blob_bytes_without_index_rows_are_truncated(tmp_path, device_body):
    device, body = device_body
    path = crashed_session(tmp_path, device, body)
    [blob] = layout.blob_files(path / "slam-front-left").values()
    size = blob.stat().st_size
    with open(blob, "ab") as f:
        f.write(b"\x28\xb5\x2f\xfd half a frame whose row was never flushed")
    grown = blob.stat().st_size - size
    report = recover(path)
    assert report.blob_bytes_truncated == grown
    assert blob.stat().st_size == size
    reader = open_session(path)
    for i in range(reader.table("slam-front-left").num_rows):
        reader.frame("slam-front-left", i)


def test_index_rows_past_the_end_of_their_blob_file_are_dropped(tmp_path, device_body):
    """Only a power loss with sync off can leave rows whose bytes never reached the disk."""
    device, body = device_body
    path = crashed_session(tmp_path, device, body)
    [blob] = layout.blob_files(path / "mic").values()
    rows = open_session(path).table("mic").num_rows
    last = open_session(path).table("mic").to_pylist()[-1]
    with open(blob, "r+b") as f:
        f.truncate(last["offset"] + 1)
    report = recover(path)
    assert report.index_rows_dropped == 1
    reader = open_session(path)
    assert reader.table("mic").num_rows == rows - 1
    assert blob.stat().st_size == last["offset"]
    reader.audio()


def test_a_missing_manifest_is_rebuilt_from_the_files(tmp_path, device_body):
    device, body = device_body
    path = crashed_session(tmp_path, device, body)
    (path / layout.MANIFEST).unlink()
    report = recover(path)
    assert report.found_state == "missing"
    m = open_session(path).manifest
    assert (m["serial"], m["session_id"], m["state"]) == (device.serial, device.session_id, "recovered")
    assert m["highest_sequence"] == expected_from([body]).highest_sequence
    assert m["requests"] == 1  # from requests.jsonl
    assert m["calibration"]["file"] == "calibration.json" and m["calibration"]["parsed"] is True
    assert_session_matches(open_session(path), expected_from([body]))


def test_headless_and_empty_live_files_are_removed(tmp_path, device_body):
    device, body = device_body
    path = crashed_session(tmp_path, device, body)
    folder = path / "ppg"
    n = layout.next_number(folder)
    (folder / layout.live_name(n)).write_bytes(b"\xff\xff\xff\xff\x10")  # died inside the schema
    (folder / layout.live_name(n + 1)).write_bytes(b"")
    recover(path)
    assert not layout.lives(folder)
    assert ds.dataset(folder, format="parquet").count_rows() == open_session(path).table("ppg").num_rows


RECOVER_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from recorder.storage import recover
    print("ready", flush=True)
    sys.stdin.readline()
    recover(Path(sys.argv[1]))
""")


@pytest.mark.parametrize("delay_s", [0.0, 0.02, 0.06])
def test_a_recovery_killed_midway_is_finished_by_the_next(tmp_path, device_body, delay_s):
    device, body = device_body
    path = crashed_session(tmp_path / "a", device, body)
    reference = tmp_path / "reference"
    shutil.copytree(path, reference)
    recover(reference)

    child = subprocess.Popen([sys.executable, "-c", RECOVER_CHILD, str(path)], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"ready"
    child.stdin.write(b"go\n")
    child.stdin.flush()
    time.sleep(delay_s)
    child.send_signal(signal.SIGKILL)
    child.wait()
    recover(path)
    a, b = open_session(path), open_session(reference)
    assert a.streams() == b.streams()
    for stream in a.streams():
        assert a.table(stream).equals(b.table(stream)), stream
    assert a.manifest["state"] == "recovered"
    assert a.manifest["highest_sequence"] == b.manifest["highest_sequence"]


def test_parts_roll_by_size_and_age_and_read_as_one(tmp_path):
    device = make_fleet(2, seed=62)[1]
    bodies = [device.window(k * 0.4, (k + 1) * 0.4) for k in range(4)]
    store = Store(tmp_path, roll_bytes=400_000, roll_seconds=0.3)
    writer = store.open_writer(device.serial, device.session_id)
    for body in bodies:
        send(writer, body, device.headers())
        time.sleep(0.35)  # older than roll_seconds by the next flush
    writer.close()
    reader = open_session(writer.path)
    assert_session_matches(reader, expected_from(bodies))
    slam = writer.path / "slam-front-left"
    parts, blobs = layout.parts(slam), layout.blob_files(slam)
    assert len(parts) >= 3 and set(parts) == set(blobs)  # by size; part N's frames are in blob file N
    # a battery sample at run time 0 s and 1 s: tiny, but the first part is finished by its age
    assert len(layout.parts(writer.path / "battery")) == 2
    for stream in reader.streams():
        assert ds.dataset(writer.path / stream, format="parquet").count_rows() == reader.table(stream).num_rows
        m = reader.manifest["streams"][stream]
        assert m["parts"] == len(layout.parts(writer.path / stream))
        on_disk = sum(p.stat().st_size for p in (writer.path / stream).rglob("*") if p.is_file())
        assert m["bytes"] == on_disk
    ts = reader.table("imu-left").column("timestamp_ns").to_numpy()
    assert np.all(np.diff(ts) > 0)


def test_recover_leaves_a_finished_session_alone(tmp_path, device_body):
    device, body = device_body
    writer = Store(tmp_path).open_writer(device.serial, device.session_id)
    send(writer, body, device.headers())
    writer.close()
    before = {p: p.read_bytes() for p in writer.path.rglob("*") if p.is_file()}
    report = recover(writer.path)
    assert report.found_state == "finished" and not report.changed
    assert {p: p.read_bytes() for p in writer.path.rglob("*") if p.is_file()} == before
    assert Store(tmp_path).unfinished() == []


def test_a_kill_inside_the_first_flush_leaves_no_false_watermark(tmp_path, device_body):
    """Killed while the very first flush was writing stream after stream: one stream's records
    are on disk, others' (sent earlier) are not, and no manifest ever held a highest sequence.
    Recovery must not take the highest stored sequence for a watermark (the resend would then
    count the missing records as resends and drop them): it knows of no whole range, notes what
    is stored, and the device's resend fills every hole, each record once."""
    device, body = device_body
    store = Store(tmp_path)
    writer = store.open_writer(device.serial, device.session_id)
    writer.begin_request(device.headers(), "10.0.0.2:5555", time.time_ns())
    writer.write(Decoder().feed(body))
    assert any(name.startswith("camera-") for name in writer._streams)
    # The kill lands when every stream but one camera's had reached its live file, before the
    # manifest: the camera's frames, sent among the others' records, are missing.
    skipped = next(name for name in writer._streams if name.startswith("camera-"))
    for name, stream in writer._streams.items():
        if name != skipped:
            stream.flush()
    path = writer.path  # dropped without close(): kill -9
    writer.folder_lock.release()  # as the kernel does when it ends a killed process

    recover(path)
    with open_session(path) as reader:
        camera = reader.table(skipped) if skipped in reader.streams() else None
        assert camera is None or not camera.num_rows
        # The watermark ends before the first missing camera frame; what is stored above it is noted.
        watermark = reader.manifest["highest_sequence"]
        assert watermark is not None and reader.manifest["stored_above_highest_sequence"]
        assert watermark < device.records_sent - 1
    again = Store(tmp_path).open_writer(device.serial, device.session_id)
    send(again, body, device.headers())
    again.close()
    with open_session(path) as reader:
        assert_session_matches(reader, expected_from([body]))
        sequences = np.concatenate([np.unique(reader.table(s).column("sequence").to_numpy()) for s in reader.streams()
                                    if s not in (layout.VERBATIM_STREAM, layout.RAW_BODY_STREAM)])
        assert len(np.unique(sequences)) == len(sequences) == device.records_sent  # each record once


def test_a_cut_inside_the_first_flush_before_sequence_0_was_stored_loses_nothing_resent(tmp_path, device_body):
    """Found by the power-loss test (seed 15): a power cut inside the session's first flush kept
    the streams written last and lost the one holding sequence 0 (and more of the first records).
    A run of stored sequences from the lowest stored one is no watermark then: the records below
    it were sent, and the resend would count them as resends and drop them. A session starts at
    sequence 0, so without a saved watermark the stored records make one only from 0 on."""
    device, body = device_body
    writer = Store(tmp_path).open_writer(device.serial, device.session_id)
    writer.begin_request(device.headers(), "10.0.0.2:5555", time.time_ns())
    writer.write(Decoder().feed(body))

    def holds_sequence_0(stream) -> bool:
        batches = [b.column("sequence").to_numpy() for b in stream._pending if "sequence" in b.schema.names]
        rows = [np.array([r["sequence"] for r in stream._pending_rows if r.get("sequence") is not None])]
        return any(len(s) and s.min() == 0 for s in batches + rows)

    first = [name for name, stream in writer._streams.items() if holds_sequence_0(stream)]
    assert len(first) == 1
    for name, stream in writer._streams.items():
        if name not in first:
            stream.flush()  # the cut lands when every stream but sequence 0's is durable
    path = writer.path  # dropped without close(): the power is gone
    writer.folder_lock.release()

    recover(path)
    with open_session(path) as reader:
        assert reader.manifest["highest_sequence"] is None  # nothing from 0 on is known whole
        assert reader.manifest["stored_above_highest_sequence"]
    again = Store(tmp_path).open_writer(device.serial, device.session_id)
    decoder = send(again, body, device.headers())
    again.close()
    assert decoder.counters.gaps == 0
    with open_session(path) as reader:
        assert_session_matches(reader, expected_from([body]))
        sequences = np.concatenate([np.unique(reader.table(s).column("sequence").to_numpy()) for s in reader.streams()
                                    if s not in (layout.VERBATIM_STREAM, layout.RAW_BODY_STREAM)])
        assert len(np.unique(sequences)) == len(sequences) == device.records_sent  # each record once
