"""recorder export: the framework (sessions, window, streams, clock, an output that appears whole
or not at all) and the parquet format, read back by DuckDB and pyarrow, never by our code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.dataset as ds
import pytest
from storage_support import store_body
from terminal_support import run_on_a_terminal

import recorder
from recorder.export import ExportError, export
from recorder.export.run import partial_path
from recorder.sim.fleet import make_fleet
from recorder.storage import Store

ROOT = Path(__file__).resolve().parent.parent
RECORDER = str(Path(sys.executable).with_name("recorder"))


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """Three simulated devices (device 0 broadcasts the time domain mapping), stored, with the
    simulator's fleet that knows each device's true clock."""
    data = tmp_path_factory.mktemp("capture") / "data"
    store = Store(data, sync=False)
    fleet = make_fleet(3, seed=7, profile="mp_streaming_demo")
    for device in fleet:
        store_body(store, device.headers(), device.window(0.0, 2.0))
    return data, fleet


def duck(query: str):
    return duckdb.sql(query).fetchall()


def test_parquet_puts_every_device_on_the_broadcasters_clock_within_100_us(capture, tmp_path):
    data, fleet = capture
    summary = export([data], "parquet", tmp_path / "out", clock="broadcaster")
    rows = duck(f"SELECT serial, timestamp_ns, time_ns FROM read_parquet('{summary.out}/imu-left/*/*.parquet', "
                "hive_partitioning=true) ORDER BY serial, timestamp_ns")
    broadcaster = fleet[0].clock
    by_serial = {d.serial: d.clock for d in fleet}
    checked = 0
    for serial, device_ns, time_ns in rows:
        clock = by_serial[serial]
        run_ns = round((device_ns - clock.boot_offset_ns) / (1 + clock.drift_ppm * 1e-6))
        truth = int(broadcaster.at_ns(run_ns))
        assert abs(time_ns - truth) <= 100_000, (serial, device_ns)
        checked += 1
    stored = sum(recorder.open_session(p).table("imu-left").num_rows for p in data.glob("*/*"))
    assert checked == stored == summary.written["rows"]["imu-left"]
    assert json.loads((summary.out / "clock.json").read_text())["clock"] == "broadcaster"


def test_the_dataset_reads_as_one_table_with_a_serial_partition(capture, tmp_path):
    data, fleet = capture
    out = export([data], "parquet", tmp_path / "out").out
    table = ds.dataset(out / "camera-rgb", format="parquet", partitioning="hive").to_table()
    assert sorted(set(table.column("serial").to_pylist())) == sorted(d.serial for d in fleet)
    for path in data.glob("*/*"):
        with recorder.open_session(path) as s:
            mine = table.filter(ds.field("serial") == s.serial).sort_by("timestamp_ns")
            assert mine.column("data").to_pylist() == [s.blob("camera-rgb", i) for i in range(mine.num_rows)]


def test_start_end_and_streams_deliver_exactly_the_rows_they_name(capture, tmp_path):
    data, _ = capture
    whole = export([data], "parquet", tmp_path / "whole", clock="broadcaster").out
    part = export([data], "parquet", tmp_path / "part", clock="broadcaster", start="0.5", end="1.25",
                  streams=["imu-left", "vio"]).out
    assert sorted(p.name for p in part.iterdir() if p.is_dir()) == ["imu-left", "vio"]
    origin = min(duck(f"SELECT min(time_ns) FROM read_parquet('{whole}/{s}/*/*.parquet')")[0][0]
                 for s in [p.name for p in whole.iterdir() if p.is_dir()])
    for stream in ("imu-left", "vio"):
        expected = duck(f"SELECT serial, sequence, timestamp_ns FROM read_parquet('{whole}/{stream}/*/*.parquet', "
                        f"hive_partitioning=true) WHERE time_ns >= {origin + 500_000_000} "
                        f"AND time_ns < {origin + 1_250_000_000} ORDER BY ALL")
        got = duck(f"SELECT serial, sequence, timestamp_ns FROM read_parquet('{part}/{stream}/*/*.parquet', "
                   "hive_partitioning=true) ORDER BY ALL")
        assert got == expected and len(got) > 0


def test_absolute_times_and_the_device_clock(capture, tmp_path):
    data, fleet = capture
    receiver = fleet[1]
    first = int(receiver.clock.at_ns(0))
    out = export([data / receiver.serial], "parquet", tmp_path / "out", clock="device",
                 start=f"{first + 10**9}ns", streams=["imu-left"]).out
    times = duck(f"SELECT min(time_ns), min(timestamp_ns), count(*) FROM read_parquet('{out}/imu-left/*/*.parquet')")
    low, device_low, count = times[0]
    assert low == device_low >= first + 10**9 and count > 0


def test_utc_writes_its_mapping_and_uncertainty_beside_the_export(capture, tmp_path):
    data, _ = capture
    summary = export([data], "parquet", tmp_path / "out", clock="utc", streams=["imu-left"])
    described = json.loads((summary.out / "clock.json").read_text())
    assert described["clock"] == "utc" and described["uncertainty_ns"] >= 0
    (low,) = duck(f"SELECT min(time_ns) FROM read_parquet('{summary.out}/imu-left/*/*.parquet')")[0]
    manifests = [recorder.open_session(p).manifest for p in data.glob("*/*")]
    first_arrival = min(m["first_wall_time_ns"] for m in manifests)
    assert abs(low - first_arrival) < 60 * 10**9  # a real-epoch time near when the data arrived


def test_an_existing_output_is_not_overwritten_and_a_failed_one_leaves_nothing(capture, tmp_path):
    data, _ = capture
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="exists"):
        export([data], "parquet", out)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="no stream"):
        export([data], "parquet", tmp_path / "other", streams=["nothing"])
    assert not (tmp_path / "other").exists() and not partial_path(tmp_path / "other").exists()


def test_the_command_exports_and_says_what_it_did(capture, tmp_path):
    data, _ = capture
    done = subprocess.run([RECORDER, "export", str(data), "--format", "parquet", "--out", str(tmp_path / "ds"),
                           "--streams", "imu-left,camera-rgb", "--end", "1"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "parquet:" in done.stdout and "imu-left:" in done.stdout and "camera-rgb:" in done.stdout
    bad = subprocess.run([RECORDER, "export", str(tmp_path), "--format", "nope", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown format" in bad.stderr and "Traceback" not in bad.stderr


def test_on_a_terminal_the_export_shows_a_progress_bar_and_piped_only_its_summary(capture, tmp_path):
    data, _ = capture
    args = [RECORDER, "export", str(data), "--format", "parquet", "--streams", "imu-left", "--out"]
    code, shown = run_on_a_terminal([*args, str(tmp_path / "terminal")])
    assert code == 0, shown
    rows = ds.dataset(tmp_path / "terminal" / "imu-left").count_rows()
    assert re.search(rf"export .*100%.* {rows:,} of {rows:,} rows", shown), shown
    assert "parquet:" in shown and "imu-left:" in shown
    piped = subprocess.run([*args, str(tmp_path / "piped")], capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "%" not in piped.stdout and not re.search(r"of [\d,]+ rows", piped.stdout) and "parquet:" in piped.stdout


def test_a_sync_table_names_each_ticks_nearest_row_of_every_device_and_stream(capture, tmp_path):
    data, fleet = capture
    out = export([data], "parquet", tmp_path / "out", streams=["imu-left", "vio"], sync_rate_hz=10).out
    frames = ds.dataset(out / "frames").to_table()
    assert frames.num_rows >= 19  # 2 s at 10 Hz
    ticks = frames.column("time_ns").to_numpy()
    for device in fleet:
        for stream in ("imu-left", "vio"):
            rows = ds.dataset(out / stream / f"serial={device.serial}").to_table()
            times = rows.column("time_ns").to_numpy()
            picked = frames.column(f"{stream}.{device.serial}.row").to_pylist()
            for tick, row in zip(ticks, picked, strict=True):
                if row is None:
                    assert tick < times.min()
                    continue
                assert abs(times[row] - tick) == np.abs(times - tick).min()
        windows = frames.column(f"imu-left.{device.serial}.window").to_pylist()
        imu_times = ds.dataset(out / "imu-left" / f"serial={device.serial}").to_table().column("time_ns").to_numpy()
        for k in range(1, len(ticks)):
            inside = np.flatnonzero((imu_times > ticks[k - 1]) & (imu_times <= ticks[k]))
            assert sorted(windows[k]) == inside.tolist()


def test_devices_exported_on_every_core_give_what_one_process_gives(capture, tmp_path):
    data, _ = capture
    one = export([data], "parquet", tmp_path / "one", workers=1, sync_rate_hz=5).out
    many = export([data], "parquet", tmp_path / "many", workers=3, sync_rate_hz=5).out
    for stream in ("imu-right", "camera-rgb", "frames"):
        query = "SELECT * FROM read_parquet('{}/{}/**/*.parquet') ORDER BY ALL"
        assert duck(query.format(one, stream)) == duck(query.format(many, stream))


def test_frames_are_handed_over_in_batches_bounded_by_bytes(capture, tmp_path, monkeypatch):
    """Large frames come a few at a time (a batch of a fixed number of raw 2560x1920 RGB frames
    would take gigabytes); every frame still arrives once, in order."""
    from recorder.export import job as export_job

    data, _ = capture
    monkeypatch.setattr(export_job, "BLOB_BATCH_BYTES", 20_000)  # a few ET frames per batch
    out = export([data], "parquet", tmp_path / "out", streams=["camera-et-left"], workers=1).out
    table = ds.dataset(out / "camera-et-left", format="parquet", partitioning="hive").to_table()
    for path in data.glob("*/*"):
        with recorder.open_session(path) as s:
            mine = table.filter(ds.field("serial") == s.serial)
            assert mine.num_rows == s.table("camera-et-left", columns=["timestamp_ns"]).num_rows
            assert mine.column("data").to_pylist() == [s.blob("camera-et-left", i) for i in range(mine.num_rows)]
