"""The shipped sample capture (sample_data/: three devices, H.264 RGB, GRAY8 eye-tracking
cameras, time domain mapping) exported to every format and read back by each format's own
tools: DuckDB, ffprobe, the mcap reader, rerun's reader and verifier, pyarrow and ffprobe for
the LeRobot layout. Counts equal what is stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from mcap.reader import make_reader
from storage_support import store_body

import recorder
from recorder.export import export
from recorder.storage import Store

ROOT = Path(__file__).resolve().parent.parent
RERUN = str(Path(sys.executable).with_name("rerun"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict[str, dict[str, int]]]:
    """The sample capture stored, and its stored rows per device and stream."""
    data = tmp_path_factory.mktemp("sample") / "data"
    store = Store(data, sync=False)
    rows: dict[str, dict[str, int]] = {}
    for device in sorted((ROOT / "sample_data").glob("1M0Y*")):
        headers = json.loads((device / "headers.json").read_text())
        path = store_body(store, headers, (device / "body.srf").read_bytes())
        with recorder.open_session(path) as s:
            rows[s.serial] = {name: s.table(name, columns=["timestamp_ns"]).num_rows for name in s.streams()}
    return data, rows


def test_parquet(sample, tmp_path):
    data, rows = sample
    out = export([data], "parquet", tmp_path / "ds").out
    counted = dict(duckdb.sql(f"SELECT serial, count(*) FROM read_parquet('{out}/imu-left/*/*.parquet', "
                              "hive_partitioning=true) GROUP BY serial").fetchall())
    assert counted == {serial: streams["imu-left"] for serial, streams in rows.items()}


def test_mp4(sample, tmp_path):
    data, rows = sample
    out = export([data], "mp4", tmp_path / "videos").out
    for serial, streams in rows.items():
        probed = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                                 "stream=codec_name,nb_read_frames", "-of", "json", str(out / serial / "camera-et-left.mp4")],
                                capture_output=True, text=True, check=True)
        (stream,) = json.loads(probed.stdout)["streams"]
        assert int(stream["nb_read_frames"]) == streams["camera-et-left"]


def test_mcap(sample, tmp_path):
    data, rows = sample
    out = export([data], "mcap", tmp_path / "foxglove").out
    counts: dict[str, int] = {}
    with open(out, "rb") as f:
        for _, channel, _ in make_reader(f).iter_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
    for serial, streams in rows.items():
        assert counts[f"/{serial}/imu-right"] == streams["imu-right"]
        assert counts[f"/{serial}/camera-rgb"] == streams["camera-rgb"]


def test_rerun(sample, tmp_path):
    data, _ = sample
    out = export([data], "rerun", tmp_path / "capture").out
    verified = subprocess.run([RERUN, "rrd", "verify", str(out)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "CI": "true"})  # CI: the rerun command sends no usage data
    assert verified.returncode == 0, verified.stderr


def test_lerobot(sample, tmp_path):
    data, rows = sample
    out = export([data], "lerobot", tmp_path / "robot", fps=10).out
    info = json.loads((out / "meta" / "info.json").read_text())
    frames = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == len(rows)
    assert info["total_frames"] == frames.num_rows > 0
