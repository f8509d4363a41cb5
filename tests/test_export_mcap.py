"""recorder export --format mcap, read back only by the mcap library's reader and Foxglove's
protobuf decoder (plain json for the JSON channels): a message per stored row on each topic,
values as stored, video packets byte for byte, the summary and indexes there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory
from storage_support import store_body

import recorder
from recorder.export import ExportError, export
from recorder.sim.fleet import make_fleet
from recorder.storage import Store
from recorder.wire.encoder import Encoder

ROOT = Path(__file__).resolve().parent.parent
RECORDER = str(Path(sys.executable).with_name("recorder"))
ODD_SERIAL = "1M0YODDKINDS01"
T0 = 14_380_000_000_000  # near the simulated devices' clocks
CAMERA_IDS = {"slam-front-left": 1, "slam-front-right": 2, "slam-side-left": 4, "camera-rgb": 64}


def odd_kinds_body() -> tuple[dict, bytes]:
    """A device with what the simulated profiles do not send: GNSS, magnetometer, barometer
    (one NaN), temperatures, PPG, RAW RGB24 and YUV420P frames with row padding, JPEG, H.265, and
    a microphone stream of PCM S16, PCM S32 and Opus blocks."""
    rng = np.random.default_rng(3)
    enc = Encoder()
    records = []
    times = T0 + np.arange(20, dtype=np.int64) * 50_000_000
    records.append(enc.samples("GNSS", 0, {
        "timestamp_ns": times, "utc_time_ms": 1_714_000_000_000 + np.arange(20) * 50,
        "latitude_deg": 48.1 + rng.normal(0, 1e-4, 20), "longitude_deg": 11.5 + rng.normal(0, 1e-4, 20),
        "altitude_m": 520 + rng.normal(0, 1, 20), "accuracy_m": rng.uniform(1, 5, 20).astype(np.float32),
        "speed_mps": rng.uniform(0, 2, 20)}))
    records.append(enc.samples("MAG", 0, {"timestamp_ns": times, "mag_tesla": rng.normal(0, 5e-5, (20, 3)),
                                          "temperature_c": rng.normal(30, 1, 20)}))
    pressure = rng.normal(101_000, 10, 20)
    pressure[4] = np.nan
    records.append(enc.samples("BARO", 0, {"timestamp_ns": times, "pressure_pa": pressure,
                                           "temperature_c": rng.normal(30, 1, 20)}))
    for source in (0, 1):
        records.append(enc.samples("TEMP", source, {"timestamp_ns": times[::5] + source, "temperature_c": rng.normal(40, 2, 4)}))
    records.append(enc.samples("PPG", 0, {"timestamp_ns": times, "value": rng.normal(0, 1, 20),
                                          "led_current_ma": np.full(20, 5.0), "integration_time_us": np.full(20, 50.0)}))
    for k in range(4):
        t = int(T0 + k * 100_000_000)
        width, height = 6, 4
        records.append(enc.blob("SLAM_CAMERA_FRAME", {"camera_id": 1, "codec": 0, "pixel_format": 1, "frame_number": k,
                                                      "width": width, "height": height, "stride_bytes": 20},
                                rng.integers(0, 256, 20 * height, dtype=np.uint8).tobytes(), t))
        records.append(enc.blob("SLAM_CAMERA_FRAME", {"camera_id": 2, "codec": 0, "pixel_format": 2, "frame_number": k,
                                                      "width": width, "height": height, "stride_bytes": 8},
                                rng.integers(0, 256, 8 * height * 3 // 2, dtype=np.uint8).tobytes(), t))
        records.append(enc.blob("SLAM_CAMERA_FRAME", {"camera_id": 4, "codec": 1, "frame_number": k, "width": 64,
                                                      "height": 48}, b"\xff\xd8\xff\xe0" + bytes([k]) * 50 + b"\xff\xd9", t))
        records.append(enc.blob("POV_CAMERA_FRAME", {"camera_id": 64, "codec": 3, "frame_number": k, "width": 64,
                                                     "height": 48}, b"\x00\x00\x00\x01\x40\x01" + bytes([k]) * 30, t))
    for k, (codec, width) in enumerate([(0, 2), (0, 2), (1, 4), (2, 0)]):
        samples = 160
        data = rng.integers(0, 256, 2 * samples * width if width else 77, dtype=np.uint8).tobytes()
        records.append(enc.blob("AUDIO_REC_DATA", {"channels": 2, "codec": codec, "sample_rate_hz": 16_000,
                                                   "samples_per_channel": samples}, data, int(T0 + k * 10_000_000)))
    calibration = {"CameraCalibrations": [{
        "Label": "slam-front-left", "Calibrated": True, "ImageSize": {"Width": 6, "Height": 4},
        "Projection": {"Name": "FisheyeRadTanThinPrism",
                       "Params": [3.0, 3.1, 2.9, 0.1, -0.2, 0.03, 0.4, -0.5, 0.6, 1e-3, 2e-3, 1e-4, 2e-4, 3e-4, 4e-4]}}]}
    headers = {"session-id": "0b1d4c9e-7d1e-4f55-9c51-0dd0000c1d5e", "device-serial": ODD_SERIAL,
               "device-build": "1", "oatmeal-calibration": json.dumps(calibration)}
    return headers, b"".join(records)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """Three simulated devices (mp_streaming_demo: GRAY8 eye cameras, H.264 RGB, IMUs, VIO,
    hands, gaze, TDM) and the odd-kinds device, stored."""
    data = tmp_path_factory.mktemp("capture") / "data"
    store = Store(data, sync=False)
    for device in make_fleet(3, seed=7, profile="mp_streaming_demo"):
        store_body(store, device.headers(), device.window(0.0, 2.0))
    store_body(store, *odd_kinds_body())
    return data


@pytest.fixture(scope="module")
def whole(capture, tmp_path_factory):
    return export([capture], "mcap", tmp_path_factory.mktemp("out") / "whole.mcap", clock="broadcaster")


def sessions(data: Path) -> list:
    return [recorder.open_session(p) for p in sorted(data.glob("*/*"))]


def read(path: Path, topics=None):
    """(topic, schema name, log_time, publish_time, decoded) in file order; JSON decoded with json."""
    with open(path, "rb") as f:
        reader = make_reader(f)
        out = []
        decoder = DecoderFactory()
        decoders = {}
        for schema, channel, message in reader.iter_messages(topics=topics, log_time_order=False):
            if channel.message_encoding == "json":
                value = json.loads(message.data)
            else:
                if schema.id not in decoders:
                    decoders[schema.id] = decoder.decoder_for(channel.message_encoding, schema)
                value = decoders[schema.id](message.data)
            out.append((channel.topic, schema.name, message.log_time, message.publish_time, value))
        return out


def by_topic(messages) -> dict[str, list]:
    topics: dict[str, list] = {}
    for topic, schema, log_time, publish_time, value in messages:
        topics.setdefault(topic, []).append((schema, log_time, publish_time, value))
    return topics


@pytest.fixture(scope="module")
def messages(whole):
    return by_topic(read(whole.out))


def test_every_stored_row_is_one_message_on_its_topics(capture, whole, messages):
    expected: Counter = Counter()
    for s in sessions(capture):
        for stream in s.streams():
            n = s.table(stream, columns=["timestamp_ns"]).num_rows
            topic = f"/{s.serial}/{stream}"
            if stream in ("vio", "vio-high-frequency"):
                expected.update({topic: n, f"{topic}/transform": n, f"{topic}/fields": n})
            elif stream == "gnss":
                expected.update({topic: n, f"{topic}/fields": n})
            elif stream == "mic":
                codecs = s.table(stream, columns=["codec"]).column("codec").to_pylist()
                expected.update({topic: sum(c != 2 for c in codecs), f"{topic}/opus": codecs.count(2),
                                 f"{topic}/fields": n})
            elif "width" in s.schema(stream).names:
                expected.update({topic: n, f"{topic}/fields": n})
                labels = [c["Label"] for c in (s.calibration or {}).get("CameraCalibrations", [])]
                if stream in labels:
                    expected[f"{topic}/calibration"] = n
            else:
                expected[topic] = n
        if mounted_cameras(s, s.streams()):
            expected[f"/{s.serial}/camera-mounts"] = 1
    got = Counter({topic: len(items) for topic, items in messages.items()})
    assert got == +expected
    assert sum(whole.written["rows"].values()) == sum(
        s.table(st, columns=["timestamp_ns"]).num_rows for s in sessions(capture) for st in s.streams())


def mounted_cameras(s, streams) -> dict[str, dict]:
    """Exported camera stream -> the T_Device_Camera its calibration gives."""
    return {c["Label"]: c["T_Device_Camera"] for c in (s.calibration or {}).get("CameraCalibrations", [])
            if "T_Device_Camera" in c and c["Label"] in streams}


def test_each_session_places_its_cameras_on_the_device(capture, messages):
    """One FrameTransforms per session: T_Device_Camera of every camera as stored in its
    calibration (JSON doubles, so exactly), children named as the images' frames, and the
    device frame hung under the high-frequency VIO pose."""
    placed = 0
    for s in sessions(capture):
        mounts = mounted_cameras(s, s.streams())
        if not mounts:
            assert f"/{s.serial}/camera-mounts" not in messages
            continue
        ((_, log_time, _, message),) = messages[f"/{s.serial}/camera-mounts"]
        links = {t.child_frame_id: t for t in message.transforms}
        device = links.pop(f"{s.serial}/device", None)
        if "vio-high-frequency" in s.streams():
            assert device.parent_frame_id == f"{s.serial}/vio-high-frequency" and device.rotation.w == 1.0
        assert set(links) == {f"{s.serial}/{stream}" for stream in mounts}
        for stream, pose in mounts.items():
            t = links[f"{s.serial}/{stream}"]
            w, (x, y, z) = pose["UnitQuaternion"]
            assert t.parent_frame_id == f"{s.serial}/device"
            assert [t.translation.x, t.translation.y, t.translation.z] == pose["Translation"]
            assert [t.rotation.w, t.rotation.x, t.rotation.y, t.rotation.z] == [w, x, y, z]
            assert t.timestamp.seconds * 10**9 + t.timestamp.nanos == log_time
        placed += len(mounts)
    assert placed >= 3


def stored(s, stream: str) -> list[dict]:
    return s.table(stream, columns=s.schema(stream).names).to_pylist()


def same_float(a, b) -> bool:
    return (a is None and b != b) or a == b  # NaN is written as null


def test_json_channels_hold_every_stored_field_as_stored(capture, messages):
    checked = 0
    for s in sessions(capture):
        for stream in ("imu-left", "hand-tracking", "eye-gaze", "battery", "magnetometer", "barometer",
                       "temperature", "ppg", "time-domain-mapping"):
            if stream not in s.streams():
                continue
            rows = stored(s, stream)
            got = [value for _, _, _, value in messages[f"/{s.serial}/{stream}"]]
            assert len(got) == len(rows)
            for row, value in zip(rows, got, strict=True):
                for name, want in row.items():
                    if name.startswith("reserved"):
                        assert name not in value
                    elif isinstance(want, list):
                        assert all(same_float(a, b) for a, b in zip(value[name], want, strict=True)), (stream, name)
                    else:
                        assert same_float(value[name], want), (stream, name, value[name], want)
                checked += 1
    assert checked > 5_000
    nan_row = [v for _, _, _, v in messages[f"/{ODD_SERIAL}/barometer"]][4]
    assert nan_row["pressure_pa"] is None


def test_poses_and_fixes_equal_the_stored_values(capture, messages):
    for s in sessions(capture):
        for stream in ("vio", "vio-high-frequency"):
            if stream not in s.streams():
                continue
            rows = stored(s, stream)
            poses = messages[f"/{s.serial}/{stream}"]
            transforms = messages[f"/{s.serial}/{stream}/transform"]
            for row, (schema, log_time, publish_time, pose), (_, t2, _, transform) in zip(rows, poses, transforms,
                                                                                           strict=True):
                assert schema == "foxglove.PoseInFrame" and log_time == publish_time == t2
                assert pose.timestamp.seconds * 10**9 + pose.timestamp.nanos == log_time
                position, orientation = pose.pose.position, pose.pose.orientation
                assert [position.x, position.y, position.z] == row["translation_m"]
                assert [orientation.w, orientation.x, orientation.y, orientation.z] == row["rotation"]
                assert [transform.translation.x, transform.translation.y, transform.translation.z] == row["translation_m"]
                assert [transform.rotation.w, transform.rotation.x, transform.rotation.y, transform.rotation.z] == row["rotation"]
                assert pose.frame_id == transform.parent_frame_id == f"{s.serial}/odometry"
                assert transform.child_frame_id == f"{s.serial}/{stream}"
    odd = next(s for s in sessions(capture) if s.serial == ODD_SERIAL)
    fixes = messages[f"/{ODD_SERIAL}/gnss"]
    for row, (schema, _, _, fix) in zip(stored(odd, "gnss"), fixes, strict=True):
        assert schema == "foxglove.LocationFix"
        assert (fix.latitude, fix.longitude, fix.altitude) == (row["latitude_deg"], row["longitude_deg"], row["altitude_m"])
        assert float(np.sqrt(fix.position_covariance[0])) == row["accuracy_m"]
    assert [v["speed_mps"] for *_, v in messages[f"/{ODD_SERIAL}/gnss/fields"]] == [r["speed_mps"] for r in stored(odd, "gnss")]


def test_frames_and_audio_blocks_are_the_stored_bytes(capture, messages):
    for s in sessions(capture):
        for stream in s.streams():
            schema = s.schema(stream)
            if "file" not in schema.names:
                continue
            rows = s.table(stream, columns=schema.names).to_pylist()
            topic = f"/{s.serial}/{stream}"
            if stream == "mic":
                pcm = iter(messages[topic])
                opus = iter(messages[f"{topic}/opus"])
                for i, row in enumerate(rows):
                    schema_name, _, _, block = next(opus if row["codec"] == 2 else pcm)
                    assert block.data == s.blob(stream, i)
                    if row["codec"] == 2:
                        assert schema_name == "foxglove.CompressedAudio" and block.format == "opus"
                    else:
                        assert schema_name == "foxglove.RawAudio"
                        assert block.format == ("pcm-s16" if row["codec"] == 0 else "pcm-s32")
                        assert (block.sample_rate, block.number_of_channels) == (row["sample_rate_hz"], row["channels"])
                continue
            frames = messages[topic]
            assert len(frames) == len(rows)
            for i, (row, (schema_name, _, _, frame)) in enumerate(zip(rows, frames, strict=True)):
                data = s.blob(stream, i)
                assert frame.frame_id == f"{s.serial}/{stream}"
                if row["codec"] in (2, 3):
                    assert schema_name == "foxglove.CompressedVideo"
                    assert frame.format == ("h264" if row["codec"] == 2 else "h265") and frame.data == data
                elif row["codec"] == 1:
                    assert schema_name == "foxglove.CompressedImage" and frame.format == "jpeg" and frame.data == data
                elif row["pixel_format"] in (0, 1):
                    assert schema_name == "foxglove.RawImage" and frame.data == data
                    assert frame.encoding == ("mono8" if row["pixel_format"] == 0 else "rgb8")
                    assert (frame.width, frame.height, frame.step) == (row["width"], row["height"], row["stride_bytes"])
                else:  # YUV420P, repacked as NV12: the same Y, U and V samples
                    h, stride = row["height"], row["stride_bytes"]
                    assert frame.encoding == "nv12" and frame.step == stride and frame.width == row["width"]
                    pixels = np.frombuffer(data, np.uint8)
                    got = np.frombuffer(frame.data, np.uint8)
                    assert got[:stride * h].tobytes() == pixels[:stride * h].tobytes()
                    uv = got[stride * h:].reshape(h // 2, stride)
                    chroma = pixels[stride * h:].reshape(2, h // 2, stride // 2)
                    assert np.array_equal(uv[:, 0::2], chroma[0]) and np.array_equal(uv[:, 1::2], chroma[1])
    calibrations = messages[f"/{ODD_SERIAL}/slam-front-left/calibration"]
    calibration = calibrations[0][3]
    assert calibration.distortion_model == "fisheye62" and list(calibration.D) == [0.1, -0.2, 0.03, 0.4, 1e-3, 2e-3]
    assert list(calibration.K) == [3.0, 0, 3.1, 0, 3.0, 2.9, 0, 0, 1]
    assert calibration.frame_id == f"{ODD_SERIAL}/slam-front-left"


def test_the_summary_indexes_attachments_and_time_order(capture, whole, messages):
    with open(whole.out, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        assert summary.statistics.message_count == sum(len(v) for v in messages.values())
        assert summary.chunk_indexes and all(c.compression == "zstd" for c in summary.chunk_indexes)
        assert all(c.message_index_offsets for c in summary.chunk_indexes)
        starts = [c.message_start_time for c in summary.chunk_indexes]
        assert starts == sorted(starts)
        attachments = {a.name: a.data for a in reader.iter_attachments()}
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
        times = [m.log_time for _, _, m in reader.iter_messages(log_time_order=False)]
    assert times == sorted(times)  # written in time order across streams and devices
    for s in sessions(capture):
        prefix = f"{s.serial}/{s.session_id}"
        assert attachments[f"{prefix}/calibration.json"] == s.calibration_bytes
        assert json.loads(attachments[f"{prefix}/session.json"]) == s.manifest
        assert metadata[f"session {prefix}"]["serial"] == s.serial
    assert metadata["export"]["clock"] == "broadcaster"


def test_stream_after_stream_holds_the_same_messages(capture, messages, tmp_path):
    summary = export([capture], "mcap", tmp_path / "streams.mcap", time_order=False)
    got = by_topic(read(summary.out))
    assert set(got) == set(messages)
    for topic, items in got.items():
        assert [(t, repr(v)) for _, t, _, v in items] == [(t, repr(v)) for _, t, _, v in messages[topic]], topic


def test_rows_before_1970_are_a_clear_error_and_leave_no_file(tmp_path):
    """Rows before 1970 on the chosen clock cannot be MCAP log times: the user gets the error
    that says so, and no file."""
    times = -10**9 + np.arange(5, dtype=np.int64) * 10**6
    body = Encoder().samples("BARO", 0, {"timestamp_ns": times, "pressure_pa": np.full(5, 101_000.0),
                                         "temperature_c": np.full(5, 30.0)})
    headers = {"session-id": "5e1f0000-0000-4000-8000-000000000001", "device-serial": "1M0YNEGATIVE01",
               "device-build": "1"}
    session = store_body(Store(tmp_path / "data", sync=False), headers, body)
    with pytest.raises(ExportError, match="before 1970"):
        export([session], "mcap", tmp_path / "negative.mcap", clock="device")
    assert not list(tmp_path.glob("negative*"))


def test_ctrl_c_leaves_no_file(tmp_path):
    """Ctrl+C (to the process group, as a terminal sends it) in the middle of writing: the
    command says nothing was written, exits 130 without a traceback, and leaves no file."""
    data = tmp_path / "data"
    store = Store(data, sync=False)
    # Long enough that the export is still writing well after its first megabyte, on a busy
    # machine too (6 s of two devices once finished before the signal came).
    for device in make_fleet(2, seed=5, profile="profile9"):
        store_body(store, device.headers(), device.window(0.0, 15.0))
    out = tmp_path / "long.mcap"
    # Ctrl+C as a terminal's program gets it: a suite started in the background by a shell
    # without job control (`make test &`) passes SIGINT on ignored, and the export would never see it.
    command = subprocess.Popen([RECORDER, "export", str(data), "--format", "mcap", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    partial = tmp_path / "long.mcap.partial"
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > 1 << 20) and command.poll() is None:
        assert time.monotonic() < deadline, "the export wrote nothing within a minute"
        time.sleep(0.05)
    assert command.poll() is None, "the export finished before it could be interrupted"
    os.killpg(command.pid, signal.SIGINT)
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == 130, stderr
    assert "interrupted: nothing was written" in stderr and "Traceback" not in stderr
    assert not out.exists() and not partial.exists()


def test_window_streams_and_the_device_clock(capture, tmp_path):
    receiver = next(s for s in sessions(capture) if "time-domain-mapping" in s.streams())
    times = receiver.table("imu-left", columns=["timestamp_ns"]).column("timestamp_ns").to_numpy()
    start, end = int(times[100]), int(times[900])
    summary = export([receiver.path], "mcap", tmp_path / "part.mcap", clock="device", start=f"{start}ns",
                     end=f"{end}ns", streams=["imu-left", "vio", "camera-rgb"])
    got = by_topic(read(summary.out))
    topic = f"/{receiver.serial}"
    assert set(got) == {f"{topic}/imu-left", f"{topic}/vio", f"{topic}/vio/transform", f"{topic}/vio/fields",
                        f"{topic}/camera-rgb", f"{topic}/camera-rgb/fields", f"{topic}/camera-rgb/calibration",
                        f"{topic}/camera-mounts"}
    for stream in ("imu-left", "vio", "camera-rgb"):
        device = receiver.table(stream, columns=["timestamp_ns"]).column("timestamp_ns").to_numpy()
        inside = device[(device >= start) & (device < end)]
        assert [log_time for _, log_time, _, _ in got[f"{topic}/{stream}"]] == inside.tolist()
        assert len(inside) > 0
    utc = export([capture], "mcap", tmp_path / "utc.mcap", clock="utc", streams=["battery"])
    first_arrival = min(s.manifest["first_wall_time_ns"] for s in sessions(capture))
    low = min(log_time for items in by_topic(read(utc.out)).values() for _, log_time, _, _ in items)
    assert abs(low - first_arrival) < 60 * 10**9


def test_the_sample_capture_exports_and_its_keyframes_carry_their_parameter_sets(tmp_path):
    store = Store(tmp_path / "data", sync=False)
    for device in sorted((ROOT / "sample_data").glob("1M0Y*")):
        store_body(store, json.loads((device / "headers.json").read_text()), (device / "body.srf").read_bytes())
    done = subprocess.run([RECORDER, "export", str(tmp_path / "data"), "--format", "mcap", "--out",
                           str(tmp_path / "sample.mcap")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "mcap:" in done.stdout
    got = by_topic(read(tmp_path / "sample.mcap"))
    keyframes = 0
    for s in sessions(tmp_path / "data"):
        for stream in s.streams():
            n = s.table(stream, columns=["timestamp_ns"]).num_rows
            assert len(got[f"/{s.serial}/{stream}"]) == n, stream
        for _, _, _, frame in got[f"/{s.serial}/camera-rgb"]:
            nal_types = {b & 0x1F for b in _after_start_codes(frame.data)}
            if 5 in nal_types:  # an IDR: Foxglove needs SPS and PPS in the same message
                assert {7, 8} <= nal_types
                keyframes += 1
        assert got[f"/{s.serial}/camera-rgb"][0][3].format == "h264"
    assert keyframes >= 3


def _after_start_codes(data: bytes) -> list[int]:
    out, start = [], data.find(b"\x00\x00\x01")
    while 0 <= start < len(data) - 3:
        out.append(data[start + 3])
        start = data.find(b"\x00\x00\x01", start + 3)
    return out


# -- the parts the export is made of -------------------------------------------------------------


@pytest.mark.parametrize("message_class", ["CompressedVideo", "CompressedImage", "RawImage"])
def test_messages_spliced_around_their_frame_are_what_protobuf_serialises(message_class):
    """A camera message built around its frame (head, the frame field, tail) is byte for byte
    the message protobuf serialises, for empty, small and large frames and zero fields."""
    from recorder.export import spliced
    from recorder.export.formats.mcap import SPLICED

    cls = next(c for c in SPLICED if c.__name__ == message_class)
    splice = SPLICED[cls]
    rng = np.random.default_rng(1)
    cases = []
    for t, size in [(0, 0), (1, 1), (1_714_000_000_123_456_789, 127), (5, 128), (10**18, 300_000)]:
        frame = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        fields = {"frame_id": "1M0Y/slam-front-left", "format": "h264" if cls.__name__ == "CompressedVideo" else "jpeg",
                  "width": size % 7, "height": 480, "encoding": "mono8", "step": 0 if size == 1 else 640}
        fields = {k: v for k, v in fields.items() if k in cls.DESCRIPTOR.fields_by_name}
        whole = cls(**fields, data=frame)
        whole.timestamp.seconds, whole.timestamp.nanos = divmod(t, 10**9)
        head = cls(**{k: v for k, v in fields.items() if k in splice.head_fields})
        head.timestamp.CopyFrom(whole.timestamp)
        tail = cls(**{k: v for k, v in fields.items() if k in splice.tail_fields})
        cases.append((whole.SerializeToString(), splice.around(head.SerializeToString(), memoryview(frame),
                                                               tail.SerializeToString())))
    built = spliced.joined([pieces for _, pieces in cases])
    assert [bytes(m) for m in built] == [expected for expected, _ in cases]


def test_frames_of_a_binary_array_are_views_of_its_values():
    import pyarrow as pa

    from recorder.export import spliced

    array = pa.array([b"ab", b"", None, b"cde", b"f"], pa.binary()).slice(1)
    assert [bytes(v) for v in spliced.frames(array)] == [b"", b"", b"cde", b"f"]
    assert [bytes(v) for v in spliced.frames(pa.chunked_array([array]))] == [b"", b"", b"cde", b"f"]


def test_json_rows_are_the_stored_values_built_a_batch_at_once():
    """Every kind of number of a batch is formatted together; each row still reads back as its
    values: f32 exactly, u64 beyond int64, NaN/infinity/null as null, lists element by element
    (a null element null, a null list's elements null), strings quoted, a sliced batch too."""
    import pyarrow as pa

    from recorder.export.jsonrows import JsonRows

    f32 = np.array([0.1, np.nan, -np.inf, 3e38, -0.0], np.float32)
    table = pa.table({
        "time_ns": pa.array(np.arange(5), pa.int64()),
        "x": pa.array(f32),
        "wide": pa.array([1e-300, 2.5, None, 1 / 3, -7.0], pa.float64()),
        "count": pa.array([2**64 - 1, 0, 1, 2, 3], pa.uint64()),
        "delta": pa.array([-2**63, None, 0, 5, -1], pa.int64()),
        "small": pa.array([1, 2, 3, 4, 255], pa.uint8()),
        "reserved0": pa.array([9] * 5, pa.uint8()),
        "source": pa.array(['a"b', "c", None, "c", "\\"], pa.string()),
        "flag": pa.array([True, False, None, True, False]),
        "v": pa.array([[1.5, 2.5, 3.5], [np.nan, 0.0, 1.0], None, [4.0, None, 6.0], [7.0, 8.0, 9.0]],
                      pa.list_(pa.float32(), 3)),
        "ids": pa.array([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]], pa.list_(pa.uint16(), 2)),
    })
    rows = JsonRows(table.schema, "t", leave_out=("time_ns",))
    assert [f.name for f in rows.fields] == ["x", "wide", "count", "delta", "small", "source", "flag", "v", "ids"]
    assert json.loads(rows.schema)["properties"]["v"] == {"type": "array", "items": {"type": "number"},
                                                          "minItems": 3, "maxItems": 3}

    def expected(row: dict) -> dict:
        def number(v):
            return None if v is None or not np.isfinite(v) else v
        out = {k: v for k, v in row.items() if k in ("count", "delta", "small", "source", "flag", "ids")}
        out["x"] = number(row["x"])
        out["wide"] = number(row["wide"])
        out["v"] = [None] * 3 if row["v"] is None else [number(e) for e in row["v"]]
        return out

    for part in (table, table.slice(1, 3), table.slice(4)):
        got = [json.loads(m) for m in rows.encode(part)]
        assert got == [expected(r) for r in part.to_pylist()]
    x = [json.loads(m)["x"] for m in rows.encode(table)]
    assert [np.float32(v) for v in x if v is not None] == [f32[0], f32[3], f32[4]]  # exact f32 values


def test_background_hands_on_items_and_errors_and_stops_when_left():
    import threading

    from recorder.export.background import Background

    with Background(iter(range(100)), depth=2) as items:
        assert list(items) == list(range(100))

    def failing():
        yield 1
        raise ExportError("no")

    with Background(failing()) as items, pytest.raises(ExportError, match="no"):
        for item in items:
            assert item == 1

    closed = threading.Event()

    def endless():
        try:
            k = 0
            while True:
                yield k
                k += 1
        finally:
            closed.set()

    with Background(endless(), depth=1) as items:
        assert next(iter(items)) == 0
    assert closed.is_set()  # leaving stopped the thread, and the generator was closed in it


def test_camera_batches_start_small_and_hold_every_frame(capture):
    """The first batch of frames is read at the first size asked for, the rest at the other;
    together they are every frame, in order."""
    from recorder.export.job import ExportJob

    s = next(s for s in sessions(capture) if "camera-rgb" in s.streams() and s.serial != ODD_SERIAL)
    job = ExportJob.make([s.path])
    whole = list(job.rows(job.sessions[0], "camera-rgb", with_data=True))
    batches = [t.column("data").to_pylist() for t in job.rows(job.sessions[0], "camera-rgb", with_data=True,
                                                                  batch_bytes=1 << 30, first_batch_bytes=1)]
    assert [len(b) for b in batches] == [1, sum(t.num_rows for t in whole) - 1]
    assert sum(batches, []) == sum((t.column("data").to_pylist() for t in whole), [])


def test_poses_laid_out_a_batch_at_once_are_what_protobuf_serialises():
    """Pose and transform messages laid out by numpy are byte for byte protobuf's, with rows
    that protobuf must write itself (a zero double, left out) among them, any timestamp."""
    from foxglove_schemas_protobuf.FrameTransform_pb2 import FrameTransform
    from foxglove_schemas_protobuf.PoseInFrame_pb2 import PoseInFrame

    from recorder.export.formats.mcap import pose_messages

    rng = np.random.default_rng(5)
    rows = 200
    times = rng.integers(0, 2**62, rows, dtype=np.int64)
    times[:4] = [0, 1, 10**9, 1_714_000_000_000_000_000]
    translation, rotation = rng.normal(0, 10, (rows, 3)), rng.normal(0, 1, (rows, 4))
    translation[5] = 0.0
    rotation[6] = [1.0, 0.0, 0.0, 0.0]  # identity
    translation[7, 1], rotation[8, 2], translation[9, 0] = -0.0, np.nan, np.inf
    pose = PoseInFrame(frame_id="1M0Y/odometry")
    transform = FrameTransform(parent_frame_id="1M0Y/odometry", child_frame_id="1M0Y/vio-high-frequency")
    got_poses, got_transforms = pose_messages(pose, transform, times, translation, rotation)
    for i in range(rows):
        seconds, nanos = divmod(int(times[i]), 10**9)
        (x, y, z), (w, qx, qy, qz) = translation[i].tolist(), rotation[i].tolist()
        want = PoseInFrame(frame_id="1M0Y/odometry")
        want.timestamp.seconds, want.timestamp.nanos = seconds, nanos
        want.pose.position.x, want.pose.position.y, want.pose.position.z = x, y, z
        want.pose.orientation.w, want.pose.orientation.x, want.pose.orientation.y, want.pose.orientation.z = w, qx, qy, qz
        moved = FrameTransform(parent_frame_id="1M0Y/odometry", child_frame_id="1M0Y/vio-high-frequency")
        moved.timestamp.seconds, moved.timestamp.nanos = seconds, nanos
        moved.translation.x, moved.translation.y, moved.translation.z = x, y, z
        moved.rotation.w, moved.rotation.x, moved.rotation.y, moved.rotation.z = w, qx, qy, qz
        assert bytes(got_poses[i]) == want.SerializeToString(), i
        assert bytes(got_transforms[i]) == moved.SerializeToString(), i
