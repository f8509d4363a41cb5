"""recorder.sdk's Delivery over sessions stored by the real storage code (the simulator's
profile9 and the sample capture, and bodies made here with the Encoder): every callback fires
once per stored sample, frame or block, with the values stored."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_reading import store_body

import recorder
from recorder.reading.images import H264, is_keyframe
from recorder.sdk import Delivery, StreamDataInterface, TrackingQuality, VioStatus
from recorder.sdk.stored import StoredStream
from recorder.sim import sender
from recorder.sim.fleet import make_fleet
from recorder.storage import Store
from recorder.wire.encoder import Encoder

ROOT = Path(__file__).resolve().parent.parent
ALL_CALLBACKS = ("rgb", "slam", "et", "imu", "imu_batch", "magnetometer", "barometer", "audio", "gps", "ppg",
                 "eye_gaze", "hand_pose", "vio", "vio_high_frequency", "time_domain_mapping", "device_calib",
                 "battery", "temperature")


class Recorded:
    """A StreamDataInterface whose every callback keeps what it was given, by callback kind."""

    def __init__(self, **options):
        self.interface = StreamDataInterface(**options)
        self.calls: dict[str, list[tuple]] = defaultdict(list)
        for kind in ALL_CALLBACKS:
            getattr(self.interface, f"register_{kind}_callback")(self._keeper(kind))

    def _keeper(self, kind):
        def keep(*args):
            self.calls[kind].append(args)
        return keep


def deliver(path: Path, interface: StreamDataInterface, streams=None, on_error=None) -> Delivery:
    with recorder.open_session(path) as session:
        delivery = Delivery(interface, session.serial, on_error=on_error)
        if session.calibration_bytes is not None:
            delivery.calibration(session.calibration_bytes)
        for stream in streams or session.streams():
            for batch in StoredStream(session, stream).read().combine_chunks().to_batches():
                delivery.rows(stream, batch)
        delivery.finish()
    return delivery


@pytest.fixture(scope="module")
def profile9(tmp_path_factory) -> Path:
    """One profile9 device (SLAM GRAY8, H.264 RGB, 8-channel audio, magnetometer, barometer,
    PPG, temperatures, battery, machine perception), one second."""
    folder = tmp_path_factory.mktemp("profile9")
    (device,) = make_fleet(1, seed=1, profile="profile9")  # seed 1: the right hand is lost
    sender.write_fleet([device], folder / "bodies", duration_s=1.0, batch_period_s=0.2)
    headers = json.loads((folder / "bodies" / device.serial / "headers.json").read_text())
    return store_body(Store(folder / "data", sync=False), headers,
                      (folder / "bodies" / device.serial / "body.srf").read_bytes())


@pytest.fixture(scope="module")
def profile9_calls(profile9) -> tuple[Recorded, Delivery]:
    recorded = Recorded()
    return recorded, deliver(profile9, recorded.interface)


@pytest.fixture(scope="module")
def sample_receiver(tmp_path_factory) -> Path:
    store = Store(tmp_path_factory.mktemp("sample"), sync=False)
    device = ROOT / "sample_data" / "1M0YDA9HNM2419"
    return store_body(store, json.loads((device / "headers.json").read_text()), (device / "body.srf").read_bytes())


def stored(path: Path, stream: str) -> pa.Table:
    with recorder.open_session(path) as s:
        return s.table(stream, columns=s.schema(stream).names)


def column(table: pa.Table, name: str) -> np.ndarray:
    values = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(values.type):
        return values.flatten().to_numpy().reshape(len(values), values.type.list_size)
    return values.to_numpy()


def test_imu_callbacks_give_every_stored_sample_and_one_batch_per_record(profile9, profile9_calls):
    recorded, delivery = profile9_calls
    for label in ("imu-left", "imu-right"):
        table = stored(profile9, label)
        calls = [(m, lab) for m, lab in recorded.calls["imu"] if lab == label]
        assert len(calls) == table.num_rows > 0
        motions = [m for m, _ in calls]
        np.testing.assert_array_equal(np.stack([m.accel_msec2 for m in motions]), column(table, "accel_msec2"))
        np.testing.assert_array_equal(np.stack([m.gyro_radsec for m in motions]), column(table, "gyro_radsec"))
        np.testing.assert_array_equal([m.temperature for m in motions], column(table, "temperature_c"))
        np.testing.assert_array_equal([m.capture_timestamp_ns for m in motions], column(table, "timestamp_ns"))
        assert all(m.accel_valid and m.gyro_valid and not m.mag_valid for m in motions)
        batches = [b for b, lab in recorded.calls["imu_batch"] if lab == label]
        assert len(batches) == len(np.unique(column(table, "sequence")))
        assert [m.capture_timestamp_ns for b in batches for m in b] == table.column("timestamp_ns").to_pylist()
        assert delivery.delivered[label] == table.num_rows + len(batches)


@pytest.mark.parametrize(("stream", "kind", "fields"), [
    ("magnetometer", "magnetometer", {"mag_tesla": lambda a: a[0].mag_tesla, "temperature_c": lambda a: a[0].temperature}),
    ("barometer", "barometer", {"pressure_pa": lambda a: a[0].pressure, "temperature_c": lambda a: a[0].temperature}),
    ("ppg", "ppg", {"value": lambda a: a[0].value, "led_current_ma": lambda a: a[0].led_current_ma,
                    "integration_time_us": lambda a: a[0].integration_time_us}),
    ("battery", "battery", {"voltage_v": lambda a: a[0].voltage, "level_percent": lambda a: a[0].level_percent,
                            "charging": lambda a: int(a[0].charging)}),
    ("eye-gaze", "eye_gaze", {"yaw_rad": lambda a: a[0].yaw, "pitch_rad": lambda a: a[0].pitch,
                              "depth_m": lambda a: a[0].depth, "yaw_low_rad": lambda a: a[0].yaw_low,
                              "yaw_high_rad": lambda a: a[0].yaw_high, "pitch_low_rad": lambda a: a[0].pitch_low,
                              "pitch_high_rad": lambda a: a[0].pitch_high, "vergence_rad": lambda a: a[0].vergence,
                              "valid": lambda a: int(a[0].gaze_valid) | 2 * int(a[0].depth_valid)}),
    ("vio", "vio", {"translation_m": lambda a: a[0].transform_odometry_bodyimu.translation,
                    "rotation": lambda a: a[0].transform_odometry_bodyimu.quaternion,
                    "linear_velocity_mps": lambda a: a[0].linear_velocity_in_odometry,
                    "angular_velocity_radps": lambda a: a[0].angular_velocity_in_bodyimu,
                    "gravity_msec2": lambda a: a[0].gravity_in_odometry,
                    "status": lambda a: int(a[0].status), "pose_quality": lambda a: int(a[0].pose_quality),
                    "visual_tracking_quality": lambda a: a[0].visual_tracking_quality}),
    ("vio-high-frequency", "vio_high_frequency", {
        "translation_m": lambda a: a[0].transform_odometry_device.translation,
        "rotation": lambda a: a[0].transform_odometry_device.quaternion,
        "linear_velocity_mps": lambda a: a[0].device_linear_velocity_odometry,
        "angular_velocity_radps": lambda a: a[0].angular_velocity_device,
        "gravity_msec2": lambda a: a[0].gravity_odometry, "quality_score": lambda a: a[0].quality_score}),
])
def test_sample_callbacks_give_the_stored_values(profile9, profile9_calls, stream, kind, fields):
    recorded, _ = profile9_calls
    table = stored(profile9, stream)
    calls = recorded.calls[kind]
    assert len(calls) == table.num_rows > 0
    assert [a[0].capture_timestamp_ns for a in calls] == table.column("timestamp_ns").to_pylist()
    for name, value in fields.items():
        np.testing.assert_array_equal(np.array([value(a) for a in calls]), column(table, name), err_msg=name)


def test_magnetometer_and_temperature_callbacks_are_labelled_by_source(profile9, profile9_calls):
    recorded, _ = profile9_calls
    assert {label for _, label in recorded.calls["magnetometer"]} == {"mag0"}
    assert all(m.mag_valid and not m.accel_valid for m, _ in recorded.calls["magnetometer"])
    with recorder.open_session(profile9) as s:
        temperature_streams = [name for name in s.streams() if name.startswith("temperature")]
        tables = [s.table(name, columns=s.schema(name).names) for name in temperature_streams]
    rows = pa.concat_tables(tables).sort_by([("timestamp_ns", "ascending"), ("source", "ascending")])
    calls = sorted((a[0].capture_timestamp_ns, a[0].sensor, a[0].temperature) for a in recorded.calls["temperature"])
    assert calls == sorted(zip(rows.column("timestamp_ns").to_pylist(), rows.column("source").to_pylist(),
                               rows.column("temperature_c").to_pylist(), strict=True))


def test_time_domain_mapping_gives_capture_and_broadcaster_times_and_id(sample_receiver):
    recorded = Recorded()
    deliver(sample_receiver, recorded.interface, streams=["time-domain-mapping"])
    table = stored(sample_receiver, "time-domain-mapping")
    assert table.num_rows == 20
    assert recorded.calls["time_domain_mapping"] == list(zip(
        table.column("capture_timestamp_ns").to_pylist(), table.column("broadcaster_timestamp_ns").to_pylist(),
        table.column("broadcaster_id").to_pylist(), strict=True))


def test_hand_pose_gives_tracked_hands_and_none_for_untracked(profile9, profile9_calls):
    recorded, _ = profile9_calls
    table = stored(profile9, "hand-tracking")
    results = [a[0] for a in recorded.calls["hand_pose"]]
    assert len(results) == table.num_rows
    lost = {}
    for side in ("left", "right"):
        confidence = column(table, f"{side}_confidence")
        hands = [getattr(r, f"{side}_hand") for r in results]
        assert [h is None for h in hands] == list(confidence < 0)
        lost[side] = bool((confidence < 0).any())
        tracked = np.flatnonzero(confidence >= 0)
        np.testing.assert_array_equal([hands[i].confidence for i in tracked], confidence[tracked])
        if not len(tracked):
            continue
        np.testing.assert_array_equal([hands[i].get_wrist_position_device() for i in tracked],
                                      column(table, f"{side}_wrist_translation_m")[tracked])
        np.testing.assert_array_equal([hands[i].transform_device_wrist.quaternion for i in tracked],
                                      column(table, f"{side}_wrist_rotation")[tracked])
        np.testing.assert_array_equal([hands[i].wrist_and_palm_normal_device.palm_normal_device for i in tracked],
                                      column(table, f"{side}_palm_normal")[tracked])
        landmarks = column(table, f"{side}_landmarks_m")[tracked].reshape(-1, 21, 3)
        np.testing.assert_array_equal([hands[i].landmark_positions_device for i in tracked], landmarks)
        np.testing.assert_allclose([hands[i].get_palm_position_device() for i in tracked],
                                   landmarks[:, [0, 5, 9, 13, 17]].mean(axis=1), rtol=1e-6)
    assert lost == {"left": False, "right": True}
    assert results[0].tracking_timestamp.total_seconds() == pytest.approx(table.column("timestamp_ns")[0].as_py() / 1e9)


def test_slam_frames_are_the_stored_gray8_images_with_their_records(profile9, profile9_calls):
    recorded, delivery = profile9_calls
    with recorder.open_session(profile9) as s:
        expected = {(info["camera_id"], info["frame_number"]): (info, image)
                    for name in s.streams() if name.startswith("slam-") for info, image in s.frames(name)}
    calls = recorded.calls["slam"]
    assert len(calls) == len(expected) > 0
    for image, record in calls:
        info, pixels = expected[(record.camera_id, record.frame_number)]
        assert record.camera_id in (1, 2, 4, 8)
        np.testing.assert_array_equal(image.to_numpy_array(), pixels)
        assert (image.get_width(), image.get_height()) == (info["width"], info["height"])
        assert record.capture_timestamp_ns == info["timestamp_ns"]
        assert (record.exposure_duration, record.gain, record.temperature) == (
            info["exposure_duration_s"], info["gain"], info["temperature_c"])
    assert not delivery.skipped


def test_rgb_h264_frames_are_decoded_as_the_reading_api_decodes_them(sample_receiver):
    recorded = Recorded()
    deliver(sample_receiver, recorded.interface, streams=["camera-rgb", "camera-et-left"])
    with recorder.open_session(sample_receiver) as s:
        expected = list(s.frames("camera-rgb"))
        et = list(s.frames("camera-et-left"))
    assert len(recorded.calls["rgb"]) == len(expected) > 1
    for (image, record), (info, pixels) in zip(recorded.calls["rgb"], expected, strict=True):
        assert record.camera_id == 64 and record.frame_number == info["frame_number"]
        np.testing.assert_array_equal(image.to_numpy_array(), pixels)
    assert [r.frame_number for _, r in recorded.calls["et"]] == [i["frame_number"] for i, _ in et]
    assert all(r.camera_id == 16 for _, r in recorded.calls["et"])


def test_without_image_decoding_coded_frames_come_as_their_bytes(sample_receiver):
    recorded = Recorded(enable_image_decoding=False)
    deliver(sample_receiver, recorded.interface, streams=["camera-rgb"])
    with recorder.open_session(sample_receiver) as s:
        blobs = [s.blob("camera-rgb", i) for i in range(s.table("camera-rgb").num_rows)]
    assert [image.to_numpy_array().tobytes() for image, _ in recorded.calls["rgb"]] == blobs
    assert all(image.encoded and image.get_width() == 1408 for image, _ in recorded.calls["rgb"])


def test_h264_frames_before_the_first_keyframe_are_skipped_and_counted(sample_receiver):
    recorded = Recorded()
    with recorder.open_session(sample_receiver) as s:
        rows = StoredStream(s, "camera-rgb").read()
        expected = list(s.frames("camera-rgb"))
    delivery = Delivery(recorded.interface, "X")
    delivery.rows("camera-rgb", rows.slice(1).to_batches()[0])  # joined after the keyframe
    delivery.finish()
    keyframes = [i for i in range(rows.num_rows) if is_keyframe(H264, rows.column("data")[i].as_py())]
    assert keyframes == [0]  # one keyframe, at the start: nothing after it can decode
    assert recorded.calls["rgb"] == [] and delivery.skipped == {"camera-rgb": rows.num_rows - 1}
    delivery.rows("camera-rgb", rows.to_batches()[0])  # from the keyframe: every frame again
    delivery.finish()
    assert len(recorded.calls["rgb"]) == rows.num_rows == len(expected)


def test_audio_blocks_are_channels_by_samples_with_a_time_per_sample(profile9, profile9_calls):
    recorded, _ = profile9_calls
    with recorder.open_session(profile9) as s:
        pcm, rate, _t0 = s.audio("mic")
        table = s.table("mic")
    calls = recorded.calls["audio"]
    assert len(calls) == table.num_rows > 0
    np.testing.assert_array_equal(np.concatenate([data.data for data, _, _ in calls], axis=1), pcm.T)
    for (data, record, channels), t0, n in zip(calls, table.column("timestamp_ns").to_pylist(),
                                              table.column("samples_per_channel").to_pylist(), strict=True):
        assert channels == 8 == data.data.shape[0] and data.data.shape[1] == n
        np.testing.assert_array_equal(record.capture_timestamps_ns, t0 + np.arange(n) * 10**9 // rate)
        assert data.max_amplitude == np.abs(data.data.astype(np.int64)).max()
        assert record.audio_muted is False


def test_device_calib_gives_the_calibration_bytes_and_json(profile9, profile9_calls):
    recorded, _ = profile9_calls
    ((calibration,),) = recorded.calls["device_calib"]
    with recorder.open_session(profile9) as s:
        assert calibration.data == s.calibration_bytes
        assert calibration.parsed == s.calibration and json.loads(calibration.json) == s.calibration


def encoded_session(tmp_path: Path) -> Path:
    """A body made here with what the simulator never sends: GNSS, a RAW RGB24 frame, a JPEG
    frame, an OPUS block, VIO codes outside their enums."""
    encoder = Encoder()
    gnss = {"timestamp_ns": np.array([1_000, 2_000]), "utc_time_ms": np.array([1_700_000_000_000, 1_700_000_001_000]),
            "latitude_deg": np.array([48.8566, -33.8688]), "longitude_deg": np.array([2.3522, 151.2093]),
            "altitude_m": np.array([35.5, 3.25]), "accuracy_m": np.array([4.5, 7.0]), "speed_mps": np.array([0.0, 1.5])}
    rgb24 = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    raw = np.zeros((4, 12), np.uint8)
    raw[:, :9] = rgb24.reshape(4, 9)  # stride 12: three bytes of padding per row
    import av
    jpeg_frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 200, np.uint8), format="rgb24")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = 16, 16, "yuvj420p"
    jpeg = b"".join(bytes(p) for p in codec.encode(jpeg_frame.reformat(format="yuvj420p")) + codec.encode(None))
    vio = np.zeros(1, encoder.schema.message("MP_VIO_RESULT").dtype)
    vio["timestamp_ns"], vio["status"], vio["pose_quality"], vio["rotation"] = 3_000, 7, 1, [1, 0, 0, 0]
    body = b"".join([
        encoder.samples("GNSS", 0, gnss),
        encoder.blob("POV_CAMERA_FRAME", {"camera_id": 64, "codec": 0, "pixel_format": 1, "frame_number": 1,
                                          "width": 3, "height": 4, "stride_bytes": 12, "gain": 2.0}, raw.tobytes(), 1_500),
        encoder.blob("SLAM_CAMERA_FRAME", {"camera_id": 2, "codec": 1, "frame_number": 9, "width": 16,
                                           "height": 16}, jpeg, 2_500),
        encoder.blob("AUDIO_REC_DATA", {"channels": 2, "codec": 2, "sample_rate_hz": 48_000,
                                        "samples_per_channel": 960}, b"opus packet", 2_600),
        encoder.samples("MP_VIO_RESULT", 0, vio),
    ])
    headers = {"device-serial": "1M0YTESTGNSS01", "session-id": "b7d1f3a2-0c1e-4f5a-9b8d-2e6f7a8b9c0d"}
    return store_body(Store(tmp_path / "data", sync=False), headers, body)


def test_hand_made_records_gnss_raw_and_jpeg_frames_opus_and_unknown_codes(tmp_path):
    path = encoded_session(tmp_path)
    recorded = Recorded()
    deliver(path, recorded.interface)
    gps = [a[0] for a in recorded.calls["gps"]]
    assert [(g.capture_timestamp_ns, g.utc_time_ms, g.latitude, g.longitude, g.altitude, g.provider) for g in gps] == [
        (1_000, 1_700_000_000_000, 48.8566, 2.3522, 35.5, "gps"), (2_000, 1_700_000_001_000, -33.8688, 151.2093, 3.25, "gps")]
    assert [(g.accuracy, g.speed) for g in gps] == [(4.5, 0.0), (7.0, 1.5)]
    ((image, record),) = recorded.calls["rgb"]
    np.testing.assert_array_equal(image.to_numpy_array(), np.arange(36, dtype=np.uint8).reshape(4, 3, 3))
    assert (record.gain, record.frame_number, record.arrival_timestamp_ns) == (2.0, 1, -1)
    ((jpeg, jpeg_record),) = recorded.calls["slam"]
    assert jpeg.to_numpy_array().shape == (16, 16, 3) and abs(int(jpeg.to_numpy_array().mean()) - 200) <= 2
    assert jpeg_record.camera_id == 2
    ((audio, audio_record, channels),) = recorded.calls["audio"]
    assert audio.encoded == b"opus packet" and audio.data.shape == (2, 0) and channels == 2
    ((vio,),) = recorded.calls["vio"]
    assert vio.status == 7 and vio.pose_quality is TrackingQuality.BAD and not isinstance(vio.status, VioStatus)


def test_device_id_is_passed_exactly_to_callbacks_that_declare_it(sample_receiver):
    seen = defaultdict(list)
    interface = StreamDataInterface()

    def with_id(capture, broadcaster, broadcaster_id, device_id: str | None = None):
        seen["with_id"].append(device_id)

    def keyword_only(gaze, *, device_id):
        seen["keyword_only"].append(device_id)

    def without(vio):
        seen["without"].append(vio)

    def kwargs_only(pose, **kwargs):
        seen["kwargs"].append(kwargs)

    interface.register_time_domain_mapping_callback(with_id)
    interface.register_eye_gaze_callback(keyword_only)
    interface.register_vio_callback(without)
    interface.register_vio_high_frequency_callback(kwargs_only)
    deliver(sample_receiver, interface)
    assert seen["with_id"] and set(seen["with_id"]) == {"1M0YDA9HNM2419"}
    assert seen["keyword_only"] and set(seen["keyword_only"]) == {"1M0YDA9HNM2419"}
    assert seen["without"] and seen["kwargs"] and all(k == {} for k in seen["kwargs"])


def test_a_raising_callback_is_reported_and_every_callback_keeps_firing(sample_receiver):
    recorded = Recorded()
    failures = []
    calls = []

    def flaky(gaze):
        calls.append(gaze)
        if len(calls) % 2:
            raise ValueError(f"bad gaze {len(calls)}")

    recorded.interface.register_eye_gaze_callback(flaky)
    delivery = deliver(sample_receiver, recorded.interface, on_error=lambda *a: failures.append(a))
    table = stored(sample_receiver, "eye-gaze")
    assert len(calls) == table.num_rows == 60
    assert delivery.errors == len(failures) == 30
    device, stream, t, exc = failures[0]
    assert (device, stream, t) == ("1M0YDA9HNM2419", "eye-gaze", table.column("timestamp_ns")[0].as_py())
    assert isinstance(exc, ValueError) and str(exc) == "bad gaze 1"
    assert len(recorded.calls["imu"]) == 3200 and len(recorded.calls["hand_pose"]) == 60  # the others went on


def test_the_default_error_report_is_one_line_on_stderr(sample_receiver, capsys):
    interface = StreamDataInterface()
    interface.register_battery_callback(lambda battery: 1 / 0)
    delivery = deliver(sample_receiver, interface, streams=["battery"])
    lines = capsys.readouterr().err.splitlines()
    assert delivery.errors == 2 and len(lines) == 2
    first = stored(sample_receiver, "battery").column("timestamp_ns")[0].as_py()
    assert lines[0] == f"callback error: device 1M0YDA9HNM2419, stream battery at {first} ns: ZeroDivisionError: division by zero"


def test_a_batch_of_unknown_columns_is_a_clear_error():
    delivery = Delivery(Recorded().interface, "X")
    with pytest.raises(ValueError, match="stream 'weird' holds no message the SDK's callbacks know"):
        delivery.rows("weird", pa.record_batch({"timestamp_ns": [1], "colour": ["red"]}))
    with pytest.raises(TypeError, match="needs a callable"):
        StreamDataInterface().register_rgb_callback("not a function")


def original_records(body: bytes) -> dict[int, bytes]:
    """The records of a body as the device sent them, by sequence (every record here is good)."""
    records, at = {}, 0
    while at < len(body):
        length = 32 + int.from_bytes(body[at + 8:at + 12], "little")
        records[int.from_bytes(body[at + 16:at + 24], "little")] = body[at:at + length]
        at += length
    return records


def test_raw_message_gives_every_record_as_the_device_sent_it(sample_receiver):
    messages = []
    interface = StreamDataInterface(enable_raw_stream=True)
    interface.register_raw_message_callback(lambda message, offset: messages.append((message, offset)))
    deliver(sample_receiver, interface)
    sent = original_records((ROOT / "sample_data" / "1M0YDA9HNM2419" / "body.srf").read_bytes())
    assert sorted(m.sequence for m, _ in messages) == sorted(sent)
    for message, _ in messages:
        original = sent[message.sequence]
        assert message.data == original
        assert message.payload.as_memoryview().tobytes() == original[32:] and message.size() == len(original) - 32
        assert message.id == int.from_bytes(original[4:6], "little")
        assert message.timestamp() == int.from_bytes(original[24:32], "little", signed=True)
    offsets = [offset for _, offset in messages]
    assert offsets == np.cumsum([0] + [len(m.data) for m, _ in messages[:-1]]).tolist()


def test_raw_message_needs_enable_raw_stream(sample_receiver):
    messages = []
    interface = StreamDataInterface()  # enable_raw_stream=False, as the vendor's default
    interface.register_raw_message_callback(lambda message, offset: messages.append(message))
    deliver(sample_receiver, interface)
    assert messages == []


def test_verbatim_records_and_raw_bodies_feed_no_callback(tmp_path):
    encoder = Encoder()
    body = encoder.opaque(0x9999, b"vendor-private bytes", 5_000) + encoder.samples(
        "BARO", 0, {"timestamp_ns": np.array([6_000]), "pressure_pa": np.array([101_325.0]),
                    "temperature_c": np.array([21.5])})
    headers = {"device-serial": "1M0YTESTOPAQUE", "session-id": "0f0e0d0c-0b0a-4998-8776-655443322110"}
    path = store_body(Store(tmp_path / "data", sync=False), headers, body)
    recorded = Recorded(enable_raw_stream=True)
    raw = []
    recorded.interface.register_raw_message_callback(lambda message, offset: raw.append(message))
    with recorder.open_session(path) as s:
        assert "verbatim" in s.streams()
    delivery = deliver(path, recorded.interface)
    assert [(b.pressure, b.temperature) for (b,) in recorded.calls["barometer"]] == [(101_325.0, 21.5)]
    assert [m.data for m in raw] == [body[len(body) - len(raw[0].data):]]  # the BARO record only
    assert "verbatim" not in delivery.delivered
