"""recorder export --format rerun: one .rrd, read back only by the rerun-sdk's own reader
(rerun.chunk.RrdReader) and the `rerun rrd verify` command, never by our code."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rerun as rr
from rerun.chunk import RrdReader
from storage_support import store_body

import recorder
from recorder.export import export
from recorder.export.formats.rerun import annex_b, raw_image
from recorder.sim.fleet import make_fleet
from recorder.sim.profiles import PROFILES
from recorder.storage import Store

RECORDER = str(Path(sys.executable).with_name("recorder"))
RERUN = str(Path(sys.executable).with_name("rerun"))


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """Three simulated devices, 2 s each (device 0 broadcasts the time domain mapping)."""
    data = tmp_path_factory.mktemp("capture") / "data"
    store = Store(data, sync=False)
    for device in make_fleet(3, seed=7, profile="mp_streaming_demo"):
        store_body(store, device.headers(), device.window(0.0, 2.0))
    return data


@pytest.fixture(scope="module")
def sessions(capture):
    opened = [recorder.open_session(p) for p in sorted(capture.glob("*/*"))]
    yield opened
    for session in opened:
        session.close()


class Recording:
    """What RrdReader gives back, per entity: the temporal rows as one table, the static components."""

    def __init__(self, path: Path):
        reader = RrdReader(path)
        (self.store,) = reader.recordings()
        temporal: dict[str, list[pa.Table]] = defaultdict(list)
        self.static: dict[str, dict] = defaultdict(dict)
        self.timelines: set[str] = set()
        for chunk in reader.stream():
            batch = chunk.to_record_batch()
            if chunk.is_static:
                for name in batch.schema.names:
                    self.static[chunk.entity_path][name] = batch.column(name).to_pylist()[-1]
                continue
            self.timelines.update(chunk.timeline_names)
            temporal[chunk.entity_path].append(pa.Table.from_batches([batch]))
        self.tables = {path: pa.concat_tables(parts, promote_options="default") for path, parts in temporal.items()}

    def rows(self, path: str, timeline: str) -> pa.Table:
        """An entity's rows in time order (chunks may arrive in any order)."""
        table = self.tables[path]
        return table.sort_by([(timeline, "ascending"), ("rerun.controls.RowId", "ascending")])

    def times_ns(self, path: str, timeline: str) -> np.ndarray:
        return self.rows(path, timeline).column(timeline).cast(pa.int64()).to_numpy()


@pytest.fixture(scope="module")
def whole(capture, tmp_path_factory):
    summary = export([capture], "rerun", tmp_path_factory.mktemp("rerun") / "all", clock="broadcaster")
    return summary, Recording(summary.out)


def component(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


def test_every_sensor_field_is_a_scalar_series_with_the_stored_values_on_the_broadcaster_timeline(whole, sessions):
    summary, recording = whole
    assert summary.out.suffix == ".rrd" and summary.written["timeline"] == "broadcaster_time"
    assert recording.timelines == {"broadcaster_time"}
    checked = 0
    for session in sessions:
        for stream, fields in {"imu-left": ["accel_msec2", "gyro_radsec", "temperature_c"],
                               "eye-gaze": ["yaw_rad", "valid"], "battery": ["voltage_v", "level_percent"],
                               "vio": ["status", "linear_velocity_mps", "translation_m"]}.items():
            stored = session.table(stream).sort_by("timestamp_ns")
            expected_times = session.to_broadcaster_time(stored.column("timestamp_ns").to_numpy())
            for field in fields:
                path = f"/{session.serial}/{stream}/{field}"
                rows = recording.rows(path, "broadcaster_time")
                assert rows.num_rows == stored.num_rows, path
                assert np.array_equal(recording.times_ns(path, "broadcaster_time"), expected_times), path
                got = np.array(component(rows, "Scalars:scalars"), dtype=np.float64)
                column = stored.column(field).combine_chunks()
                if pa.types.is_fixed_size_list(column.type):
                    want = column.flatten().to_numpy().astype(np.float64).reshape(got.shape)
                else:
                    want = column.to_numpy().astype(np.float64).reshape(-1, 1)
                assert np.array_equal(got, want), path  # f32 -> f64 is exact
                checked += 1
    assert checked == 3 * 10
    assert recording.static[f"/{sessions[0].serial}/imu-left/accel_msec2"]["SeriesLines:names"] == [
        "accel_msec2.x", "accel_msec2.y", "accel_msec2.z"]
    assert summary.written["rows"]["imu-left"] == sum(s.table("imu-left").num_rows for s in sessions)


def test_h264_frames_are_video_stream_samples_byte_for_byte(whole, sessions):
    _, recording = whole
    for session in sessions:
        path = f"/{session.serial}/camera-rgb"
        assert recording.static[path]["VideoStream:codec"] == [rr.VideoCodec.H264.value]
        rows = recording.rows(path, "broadcaster_time")
        stored = session.table("camera-rgb")
        assert rows.num_rows == stored.num_rows == 10
        samples = [bytes(s[0]) for s in component(rows, "VideoStream:sample")]
        assert samples == [session.blob("camera-rgb", i) for i in range(stored.num_rows)]
        keyframes = [k[0] for k in component(rows, "VideoStream:is_keyframe")]
        assert keyframes[0] is True and keyframes.count(True) >= 1 and False in keyframes  # one GOP: IDR, then P


def test_raw_frames_are_images_and_vio_poses_are_transforms(whole, sessions):
    _, recording = whole
    for session in sessions:
        path = f"/{session.serial}/camera-et-left"
        rows = recording.rows(path, "broadcaster_time")
        stored = session.table("camera-et-left")
        assert rows.num_rows == stored.num_rows
        assert [bytes(b[0]) for b in component(rows, "Image:buffer")] == [
            session.blob("camera-et-left", i) for i in range(stored.num_rows)]
        (image_format,) = component(rows, "Image:format")[0]
        assert (image_format["width"], image_format["height"]) == (200, 200)
        assert image_format["color_model"] == rr.ColorModel.L.value
        exposure = recording.rows(f"{path}/exposure_duration_s", "broadcaster_time")
        assert exposure.num_rows == stored.num_rows

        pose = recording.rows(f"/{session.serial}/vio", "broadcaster_time")
        vio = session.table("vio").sort_by("timestamp_ns")
        assert pose.num_rows == vio.num_rows
        quaternions = np.array([q[0] for q in component(pose, "Transform3D:quaternion")])
        stored_wxyz = vio.column("rotation").combine_chunks().flatten().to_numpy().reshape(-1, 4)
        np.testing.assert_allclose(quaternions, stored_wxyz[:, [1, 2, 3, 0]], rtol=1e-6, atol=1e-7)
        translations = np.array([t[0] for t in component(pose, "Transform3D:translation")])
        stored_translation = vio.column("translation_m").combine_chunks().flatten().to_numpy().reshape(-1, 3)
        np.testing.assert_allclose(translations, stored_translation, rtol=1e-6, atol=1e-6)  # Rerun keeps f32

        hands = recording.rows(f"/{session.serial}/hand-tracking/left_landmarks_m", "broadcaster_time")
        assert hands.num_rows == session.table("hand-tracking").num_rows
        assert {len(p) for p in component(hands, "Points3D:positions")} == {21}


def test_start_end_and_streams_deliver_exactly_the_rows_they_name(capture, whole, sessions, tmp_path):
    _, everything = whole
    summary = export([capture], "rerun", tmp_path / "part", clock="broadcaster", start="0.5", end="1.25",
                     streams=["imu-left", "camera-rgb"])
    part = Recording(summary.out)
    assert {path.split("/")[2] for path in part.tables} == {"imu-left", "camera-rgb"}
    origin = min(everything.times_ns(path, "broadcaster_time").min() for path in everything.tables)
    low, high = origin + 500_000_000, origin + 1_250_000_000
    for session in sessions:
        for path in (f"/{session.serial}/imu-left/gyro_radsec", f"/{session.serial}/camera-rgb"):
            all_times = everything.times_ns(path, "broadcaster_time")
            inside = all_times[(all_times >= low) & (all_times < high)]
            assert len(inside) > 0 and np.array_equal(part.times_ns(path, "broadcaster_time"), inside), path
        kept = part.rows(f"/{session.serial}/camera-rgb", "broadcaster_time")
        first = int(np.flatnonzero(everything.times_ns(f"/{session.serial}/camera-rgb", "broadcaster_time") >= low)[0])
        assert bytes(component(kept, "VideoStream:sample")[0][0]) == session.blob("camera-rgb", first)


def test_the_device_clock_is_a_duration_timeline_and_utc_a_timestamp_one(capture, sessions, tmp_path):
    receiver = sessions[1]
    device = Recording(export([capture / receiver.serial], "rerun", tmp_path / "device", clock="device",
                              streams=["imu-left"]).out)
    assert device.timelines == {"device_time"}
    rows = device.rows(f"/{receiver.serial}/imu-left/temperature_c", "device_time")
    assert pa.types.is_duration(rows.schema.field("device_time").type)
    assert np.array_equal(device.times_ns(f"/{receiver.serial}/imu-left/temperature_c", "device_time"),
                          np.sort(receiver.table("imu-left").column("timestamp_ns").to_numpy()))
    utc = Recording(export([capture], "rerun", tmp_path / "utc", clock="utc", streams=["battery"]).out)
    assert utc.timelines == {"utc_time"}
    table = utc.rows(f"/{receiver.serial}/battery/voltage_v", "utc_time")
    assert pa.types.is_timestamp(table.schema.field("utc_time").type)
    first_arrival = min(s.manifest["first_wall_time_ns"] for s in sessions)
    assert abs(int(utc.times_ns(f"/{receiver.serial}/battery/voltage_v", "utc_time")[0]) - first_arrival) < 60 * 10**9


def test_the_command_writes_a_file_rerun_itself_verifies(capture, tmp_path):
    done = subprocess.run([RECORDER, "export", str(capture), "--format", "rerun", "--out", str(tmp_path / "cap"),
                           "--streams", "imu-left,camera-rgb,camera-et-left,vio", "--end", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cap.rrd").is_file() and "rerun:" in done.stdout and "camera-rgb:" in done.stdout
    # Rerun's command sends usage statistics unless it runs on CI; a test sends nothing anywhere.
    verified = subprocess.run([RERUN, "rrd", "verify", str(tmp_path / "cap.rrd")], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "CI": "true"})
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_slam_cameras_microphones_and_profile9_sensors(tmp_path):
    """profile9 without its 2560x1920 RGB camera (encoding it would take most of the test's time):
    RAW SLAM frames, 8-channel PCM microphone blocks, magnetometer, barometer, PPG, temperatures."""
    profile9 = PROFILES["profile9"]
    PROFILES["profile9-without-rgb"] = dataclasses.replace(
        profile9, name="profile9-without-rgb", cameras=tuple(c for c in profile9.cameras if c.label != "camera-rgb"))
    try:
        (device,) = make_fleet(1, seed=7, profile="profile9-without-rgb")
    finally:
        del PROFILES["profile9-without-rgb"]
    store = Store(tmp_path / "data", sync=False)
    store_body(store, device.headers(), device.window(0.0, 1.0))
    recording = Recording(export([tmp_path / "data"], "rerun", tmp_path / "p9", clock="device").out)
    with recorder.open_session(next((tmp_path / "data").glob("*/*"))) as session:
        slam = recording.rows(f"/{session.serial}/slam-front-left", "device_time")
        stored = session.table("slam-front-left")
        assert slam.num_rows == stored.num_rows > 0
        assert [bytes(b[0]) for b in component(slam, "Image:buffer")] == [
            session.blob("slam-front-left", i) for i in range(stored.num_rows)]
        mic = session.table("mic")
        pieces = recording.rows(f"/{session.serial}/mic", "device_time")
        assert component(pieces, "AssetAudio:media_type")[0] == ["audio/wav"]
        pcm = b""
        for (blob,) in component(pieces, "AssetAudio:blob"):
            with wave.open(io.BytesIO(bytes(blob))) as wav:
                assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (8, 16_000, 2)
                pcm += wav.readframes(wav.getnframes())
        assert pcm == b"".join(session.blob("mic", i) for i in range(mic.num_rows))
        first_block = int(np.min(mic.column("timestamp_ns").to_numpy()))
        assert int(recording.times_ns(f"/{session.serial}/mic", "device_time")[0]) == first_block
        for stream, field in (("magnetometer", "mag_tesla"), ("barometer", "pressure_pa"), ("ppg", "value")):
            rows = recording.rows(f"/{session.serial}/{stream}/{field}", "device_time")
            assert rows.num_rows == session.table(stream).num_rows > 0, stream


def test_padded_raw_rows_are_cut_to_the_image_and_length_prefixed_units_get_start_codes():
    frame = bytes(range(6)) + b"\xee\xee" + bytes(range(6, 12)) + b"\xee\xee"  # 2 rows of 6 bytes, stride 8
    buffer, image_format = raw_image(frame, 0, 6, 2, 8)
    assert buffer == bytes(range(12)) and (image_format.width, image_format.height) == (6, 2)
    rgb, _ = raw_image(bytes(range(7)) * 2, 1, 2, 2, 7)
    assert rgb == bytes(range(6)) * 2
    yuv = b"YYYYyy" * 2 + b"UUu" + b"VVv"  # 4x2, stride 6: luma rows of 6, chroma rows of 3
    planes, yuv_format = raw_image(yuv, 2, 4, 2, 6)
    assert planes == b"YYYY" * 2 + b"UU" + b"VV"
    assert yuv_format.pixel_format == rr.PixelFormat.Y_U_V12_LimitedRange
    units = b"\x00\x00\x00\x02\x67\x01" + b"\x00\x00\x00\x03\x65\x02\x03"
    assert annex_b(units) == b"\x00\x00\x00\x01\x67\x01\x00\x00\x00\x01\x65\x02\x03"
    assert annex_b(b"\x00\x00\x01\x65\xff") == b"\x00\x00\x01\x65\xff"
