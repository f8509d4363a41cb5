"""The simulator's data: deterministic, decodable, at the profile's rates, and physically consistent."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pytest

from recorder.sim import PROFILES, make_fleet, video
from recorder.sim.batching import NS
from recorder.sim.images import PIXELS_PER_RAD
from recorder.sim.profiles import TDM
from recorder.sim.rig import CAMERAS
from recorder.wire import Decoder

SECONDS = 4.0
PERIOD_S = 0.2


@dataclass
class Decoded:
    counters: object
    samples: dict  # (message name, source) -> structured array, in wire order
    records: dict  # (message name, source) -> samples per record
    blobs: list


def decode(body: bytes) -> Decoded:
    decoder = Decoder()
    batches = [decoder.feed(body), decoder.close()]
    samples, records, blobs = {}, {}, []
    for batch in batches:
        for block in batch.samples:
            for source in np.unique(block.source):
                mine = block.source == source
                key = (block.message.name, int(source))
                samples.setdefault(key, []).append(block.samples[mine])
                records.setdefault(key, []).append(np.unique(block.sequence[mine], return_counts=True)[1])
        blobs += batch.blobs
    return Decoded(decoder.counters, {k: np.concatenate(v) for k, v in samples.items()},
                   {k: np.concatenate(v) for k, v in records.items()}, blobs)


def run(device, seconds: float = SECONDS, period_s: float = PERIOD_S) -> bytes:
    steps = round(seconds / period_s)
    return b"".join(device.window(k * period_s, (k + 1) * period_s) for k in range(steps))


def assert_clean(counters) -> None:
    bad = {name: value for name, value in counters.as_dict().items()
           if name in ("corrupt_bytes", "bad_crc", "oversized", "reserved_flags", "malformed", "truncated",
                       "opaque", "gaps", "resends") and value}
    assert not bad


@pytest.fixture(scope="module")
def fleet9():
    return make_fleet(3, seed=11, profile="profile9")


@pytest.fixture(scope="module")
def receiver9(fleet9):
    """Device 1 of a profile9 fleet, SECONDS of it decoded."""
    device = fleet9[1]
    return device, decode(run(device))


def rows(decoded: Decoded, message: str, source: int = 0) -> np.ndarray:
    return decoded.samples[(message, source)]


def blobs_of(decoded: Decoded, label: str) -> list:
    return [b for b in decoded.blobs if b.label == label]


# -- determinism, decoding, sequences ----------------------------------------------------------


def test_same_seed_gives_the_same_bytes_however_the_run_is_cut():
    a = make_fleet(2, seed=5, profile="mp_streaming_demo")[1]
    b = make_fleet(2, seed=5, profile="mp_streaming_demo")[1]
    c = make_fleet(2, seed=6, profile="mp_streaming_demo")[1]
    body = run(a, 2.0)
    cuts = [0.0, 0.013, 0.2, 0.21, 0.77, 1.5, 1.5, 1.9999, 2.0]
    assert b"".join(b.window(t0, t1) for t0, t1 in pairwise(cuts)) == body
    assert run(c, 2.0) != body
    assert a.headers() == b.headers() != c.headers()


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("one_sample", [False, True])
def test_bodies_decode_cleanly_to_the_values_generated(profile, one_sample):
    device = make_fleet(2, seed=3, profile=profile, one_sample_per_message=one_sample)[1]
    body = run(device, 1.0)
    decoded = decode(body)
    assert_clean(decoded.counters)
    assert decoded.counters.records == device.records_sent
    assert device.bytes_sent == len(body)
    for stream in device.sample_streams:
        got = rows(decoded, stream.message, stream.source)
        expected = device.signals.samples(stream, np.arange(len(got)))
        assert got.tobytes() == expected.tobytes(), stream  # bytes: NaNs compare equal too
    for camera in device.profile.cameras:
        frames = blobs_of(decoded, camera.label)
        numbers = np.arange(len(frames))
        expected = device.cameras.frames(camera, numbers, numbers / camera.rate_hz)
        as_sent = [({name: float(np.float32(v)) if isinstance(v, float) else v for name, v in prefix.items()}
                    | {"reserved0": 0, "reserved1": 0}, image) for prefix, image in expected]  # f32 on the wire
        assert [(b.prefix, bytes(b.data)) for b in frames] == as_sent


def test_sequences_start_at_zero_and_continue_across_windows():
    device = make_fleet(1, seed=2, profile="mp_streaming_demo")[0]
    decoder = Decoder()
    first = decoder.feed(device.window(0.0, 0.3))
    assert min(b.sequence.min() for b in first.samples) == 0
    sent = device.records_sent
    decoder.feed(device.window(0.3, 0.5))
    decoder.close()
    assert decoder.highest_sequence == device.records_sent - 1 > sent
    assert decoder.counters.gaps == 0 and decoder.counters.resends == 0


def test_one_sample_per_message_and_batching():
    batched = decode(run(make_fleet(1, seed=1, profile="profile9")[0], 1.0))
    single = decode(run(make_fleet(1, seed=1, profile="profile9", one_sample_per_message=True)[0], 1.0))
    assert set(batched.records[("IMU_EVENT", 0)]) == {160}  # 800 Hz x 200 ms
    assert set(batched.records[("PPG", 0)]) <= {25, 26}  # 128 Hz x 200 ms
    assert all(set(counts) == {1} for counts in single.records.values())
    for decoded, block in ((batched, 3200), (single, 160)):
        audio = blobs_of(decoded, "mic")
        assert {b.prefix["samples_per_channel"] for b in audio} == {block}
    assert [bytes(b.data) for b in blobs_of(batched, "slam-side-left")] == [
        bytes(b.data) for b in blobs_of(single, "slam-side-left")]


def test_rates_per_profile(fleet9, receiver9):
    mp_device = make_fleet(2, seed=11, profile="mp_streaming_demo")[1]
    for device, decoded in ((receiver9[0], receiver9[1]), (mp_device, decode(run(mp_device)))):
        lo, hi = device.clock_ns(1.0), device.clock_ns(3.0)
        for stream in device.sample_streams:
            samples = rows(decoded, stream.message, stream.source)
            t = samples[device.schema.message(stream.message).time_field]
            assert abs(((t >= lo) & (t < hi)).sum() / 2 - stream.rate_hz) <= 1, stream
        for camera in device.profile.cameras:
            t = np.array([b.timestamp_ns for b in blobs_of(decoded, camera.label)])
            assert abs(((t >= lo) & (t < hi)).sum() / 2 - camera.rate_hz) <= 1, camera
        if device.profile.audio:
            audio = [b for b in blobs_of(decoded, "mic") if lo <= b.timestamp_ns < hi]
            assert abs(sum(b.prefix["samples_per_channel"] for b in audio) / 2 - 16000) <= 1
            assert {(b.prefix["channels"], b.prefix["sample_rate_hz"], b.prefix["codec"]) for b in audio} == {(8, 16000, 0)}


# -- identity and clocks -----------------------------------------------------------------------


def test_serials_sessions_and_the_broadcaster():
    fleet = make_fleet(5, seed=9)
    serials = [d.serial for d in fleet]
    assert all(re.fullmatch(r"[A-Z0-9]{14}", s) for s in serials)
    assert serials[0] == min(serials) and len(set(serials)) == 5
    assert [d.is_broadcaster for d in fleet] == [True, False, False, False, False]
    assert [d.serial for d in make_fleet(3, seed=9)] == serials[:3]  # fleet size does not matter
    assert all(uuid.UUID(d.session_id) for d in fleet) and len({d.session_id for d in fleet}) == 5
    headers = fleet[1].headers()
    assert set(headers) == {"session-id", "device-serial", "device-build", "oatmeal-calibration"}
    assert headers["device-serial"] == fleet[1].serial and headers["device-build"] == fleet[1].build


def test_clocks_differ_and_every_timestamp_is_the_device_clock(receiver9):
    fleet = make_fleet(4, seed=11)
    boots = [d.clock_ns(0.0) for d in fleet]
    assert len(set(boots)) == 4 and all(5 * 60 * NS <= b <= 6 * 3600 * NS for b in boots)
    device, decoded = receiver9
    clock = device.clock
    assert device.clock_ns(2.5) == clock.boot_offset_ns + round(2.5e9 * (1 + clock.drift_ppm * 1e-6))
    imu = rows(decoded, "IMU_EVENT")
    assert imu["timestamp_ns"][0] == device.clock_ns(0.0)
    assert imu["timestamp_ns"][800] == device.clock_ns(1.0)
    assert [b.timestamp_ns for b in blobs_of(decoded, "slam-front-left")][:3] == [
        device.clock_ns(k / 10) for k in range(3)]


def test_time_domain_mapping_reveals_the_clock_offset(fleet9, receiver9):
    broadcaster, (device, decoded) = fleet9[0], receiver9
    tdm = rows(decoded, "TIME_DOMAIN_MAPPING_EVENT")
    run_s = np.arange(len(tdm)) / TDM.rate_hz
    true_offset = np.array([broadcaster.clock_ns(t) - device.clock_ns(t) for t in run_s])
    offset = tdm["broadcaster_timestamp_ns"] - tdm["capture_timestamp_ns"]
    assert np.abs(offset - true_offset).max() <= 50_000
    assert len(set(tdm["broadcaster_id"])) == 1
    assert not any(s.message == TDM.message for s in broadcaster.sample_streams)
    assert ("TIME_DOMAIN_MAPPING_EVENT", 0) not in decode(broadcaster.window(0.0, 1.0)).samples


# -- physics -----------------------------------------------------------------------------------


def quat_multiply(a, b):
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw])


def quat_rotate(q, v):
    """R(q) v for quaternions q (n, 4) and vectors v (n, 3)."""
    w, u = q[:, :1], q[:, 1:]
    t = 2 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def angle_between(q1, q2) -> float:
    return 2 * np.arccos(min(1.0, abs(float(np.dot(q1, q2)))))


def test_integrated_gyro_follows_the_vio_rotation(receiver9):
    _, decoded = receiver9
    imu = rows(decoded, "IMU_EVENT")
    pose = rows(decoded, "MP_VIO_HIGH_FREQUENCY_POSE")
    assert (imu["timestamp_ns"] == pose["timestamp_ns"]).all()  # both 800 Hz from the same clock
    dt = np.diff(imu["timestamp_ns"]) * 1e-9
    omega = (imu["gyro_radsec"][1:] + imu["gyro_radsec"][:-1]).astype(np.float64) / 2
    q = pose["rotation"][0]
    for w, step in zip(omega, dt, strict=True):
        angle = np.linalg.norm(w) * step
        axis = w / np.linalg.norm(w)
        q = quat_multiply(q, np.r_[np.cos(angle / 2), np.sin(angle / 2) * axis])
    turned = angle_between(pose["rotation"][0], pose["rotation"][-1])
    assert turned > np.radians(10)  # the check means something
    assert angle_between(q, pose["rotation"][-1]) < np.radians(1.5)


def test_accelerometer_measures_specific_force(receiver9):
    _, decoded = receiver9
    imu = rows(decoded, "IMU_EVENT", 1)
    pose = rows(decoded, "MP_VIO_HIGH_FREQUENCY_POSE")
    accel = imu["accel_msec2"].astype(np.float64)
    assert abs(np.linalg.norm(accel, axis=1).mean() - 9.81) < 0.15
    # In the odometry frame, specific force + gravity is the VIO's acceleration.
    world = quat_rotate(pose["rotation"], accel) + pose["gravity_msec2"]
    velocity = pose["linear_velocity_mps"].astype(np.float64)
    acceleration = np.gradient(velocity, pose["timestamp_ns"] * 1e-9, axis=0)
    assert np.abs(world - acceleration)[5:-5].mean() < 0.1
    assert (pose["gravity_msec2"] == np.float32([0, 0, -9.81])).all()


def test_vio_and_high_frequency_vio_agree(receiver9):
    _, decoded = receiver9
    vio = rows(decoded, "MP_VIO_RESULT")
    fast = rows(decoded, "MP_VIO_HIGH_FREQUENCY_POSE")
    at = np.searchsorted(fast["timestamp_ns"], vio["timestamp_ns"])
    assert (fast["timestamp_ns"][at] == vio["timestamp_ns"]).all()
    assert np.allclose(fast["translation_m"][at], vio["translation_m"], atol=1e-9)
    assert np.allclose(fast["rotation"][at], vio["rotation"], atol=1e-9)
    assert np.allclose(np.linalg.norm(vio["rotation"], axis=1), 1)
    assert (vio["status"] == 0).all() and (vio["pose_quality"] == 0).all()
    walked = np.linalg.norm(np.diff(vio["translation_m"], axis=0), axis=1).sum()
    assert 0.6 * SECONDS < walked < 2.0 * SECONDS  # a walk, about 1 m/s


def test_magnetometer_barometer_temperature_ppg(receiver9):
    device, decoded = receiver9
    field = np.linalg.norm(rows(decoded, "MAG")["mag_tesla"], axis=1)
    assert 35e-6 < field.mean() < 65e-6
    # Pressure follows altitude at about -12 Pa/m: check over two minutes of the walk.
    baro_stream = next(s for s in device.sample_streams if s.message == "BARO")
    baro = device.signals.samples(baro_stream, np.arange(0, 120 * 50))
    altitude = device.signals.walk.at(np.arange(0, 120 * 50) / 50).position[:, 2]
    assert 90_000 < baro["pressure_pa"].mean() < 104_000
    slope = np.polyfit(altitude, baro["pressure_pa"], 1)[0]
    assert -14 < slope < -10
    for source in range(3):
        assert 28 < rows(decoded, "TEMP", source)["temperature_c"].mean() < 45
    assert 30 < rows(decoded, "IMU_EVENT")["temperature_c"].mean() < 45
    ppg_stream = next(s for s in device.sample_streams if s.message == "PPG")
    ppg = device.signals.samples(ppg_stream, np.arange(0, 30 * 128))["value"]
    spectrum = np.abs(np.fft.rfft(ppg - ppg.mean()))
    frequency = np.fft.rfftfreq(len(ppg), 1 / 128)
    assert 55 < 60 * frequency[np.argmax(spectrum * (frequency > 0.5))] < 85  # bpm
    battery = rows(decoded, "BATTERY_STATUS")
    assert (3.4 < battery["voltage_v"]).all() and (battery["voltage_v"] < 4.3).all()


def test_eye_gaze_moves_and_is_valid(receiver9):
    _, decoded = receiver9
    gaze = rows(decoded, "MP_ET_RESULT")
    assert (gaze["valid"] == 0b11).all()
    assert (gaze["yaw_low_rad"] < gaze["yaw_rad"]).all() and (gaze["yaw_rad"] < gaze["yaw_high_rad"]).all()
    assert (gaze["pitch_low_rad"] < gaze["pitch_rad"]).all() and (gaze["pitch_rad"] < gaze["pitch_high_rad"]).all()
    assert gaze["yaw_rad"].std() > 0.05
    assert np.abs(np.diff(gaze["yaw_rad"])).max() > 0.1  # saccades
    assert (gaze["depth_m"] > 0.3).all() and (gaze["vergence_rad"] > 0).all()


def test_hands_move_near_the_wrist_and_are_sometimes_lost():
    device = make_fleet(2, seed=11)[1]
    stream = next(s for s in device.sample_streams if s.message == "MP_HT_RESULT")
    hands = device.signals.samples(stream, np.arange(0, 60 * 30))
    for side in ("left", "right"):
        lost = hands[f"{side}_confidence"] < 0
        assert 0 < lost.mean() < 0.5
        assert np.isnan(hands[f"{side}_landmarks_m"][lost]).all()
        tracked = hands[~lost]
        landmarks = tracked[f"{side}_landmarks_m"].reshape(-1, 21, 3)
        wrist = tracked[f"{side}_wrist_translation_m"]
        assert np.allclose(landmarks[:, 0], wrist, atol=1e-6)  # landmark 0 is the wrist
        assert np.linalg.norm(landmarks - wrist[:, None], axis=2).max() < 0.25
        assert wrist.std(axis=0).min() > 0.01
        assert np.allclose(np.linalg.norm(tracked[f"{side}_wrist_rotation"], axis=1), 1, atol=1e-6)


# -- images and audio --------------------------------------------------------------------------


def overlap_difference(a: np.ndarray, b: np.ndarray, dx: int, dy: int) -> float:
    """Mean |b - a| where b is a moved right by dx and down by dy."""
    h, w = a.shape
    moved = b[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    original = a[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return float(np.abs(moved.astype(int) - original).mean())


def test_slam_images_pan_with_the_head(receiver9):
    _, decoded = receiver9
    frames = blobs_of(decoded, "slam-front-left")
    vio = rows(decoded, "MP_VIO_HIGH_FREQUENCY_POSE")
    assert [f.prefix["frame_number"] for f in frames] == list(range(len(frames)))
    assert {(f.prefix["width"], f.prefix["height"], f.prefix["stride_bytes"], f.prefix["codec"]) for f in frames} == {
        (512, 512, 512, 0)}
    assert all(0.001 < f.prefix["exposure_duration_s"] < 0.01 and 30 < f.prefix["temperature_c"] < 50 for f in frames)
    q = vio["rotation"][np.searchsorted(vio["timestamp_ns"], [f.timestamp_ns for f in frames])]
    w, x, y, z = q.T
    yaw = np.unwrap(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
    pitch = np.arcsin(2 * (w * y - z * x))  # positive: nose down
    for k in range(len(frames) - 1):
        a, b = (np.frombuffer(f.data, np.uint8).reshape(512, 512) for f in frames[k:k + 2])
        # Turning left moves the scene right; looking down moves it up.
        dx = round((yaw[k + 1] - yaw[k]) * PIXELS_PER_RAD)
        dy = round((pitch[k] - pitch[k + 1]) * PIXELS_PER_RAD)
        best = min(overlap_difference(a, b, dx + i, dy + j) for i in (-1, 0, 1) for j in (-1, 0, 1))
        assert best == 0  # the next frame is this one, panned as the head turned
        if abs(dx) + abs(dy) > 2:
            assert overlap_difference(a, b, 0, 0) > 1  # and it did move


def test_eye_images_show_the_pupil_where_the_gaze_points():
    device = make_fleet(2, seed=4, profile="mp_streaming_demo")[1]
    decoded = decode(run(device, 4.0))
    gaze = rows(decoded, "MP_ET_RESULT")
    for label, sign in (("camera-et-left", -0.5), ("camera-et-right", 0.5)):
        frames = blobs_of(decoded, label)
        assert {(f.prefix["width"], f.prefix["height"], f.prefix["stride_bytes"]) for f in frames} == {(200, 200, 200)}
        pupil_x = [np.nonzero(np.frombuffer(f.data, np.uint8).reshape(200, 200) < 30)[1].mean() for f in frames]
        at = np.searchsorted(gaze["timestamp_ns"], [f.timestamp_ns for f in frames])
        eye_yaw = gaze["yaw_rad"][at] + sign * gaze["vergence_rad"][at]
        assert np.corrcoef(pupil_x, eye_yaw)[0, 1] > 0.95


def test_rgb_frames_are_h264_that_decodes_to_the_profile_resolution(receiver9):
    av = pytest.importorskip("av")
    device, decoded = receiver9
    camera = next(c for c in device.profile.cameras if c.label == "camera-rgb")
    frames = blobs_of(decoded, "camera-rgb")
    assert {(f.prefix["codec"], f.prefix["stride_bytes"]) for f in frames} == {(2, 0)}
    first = bytes(frames[0].data)
    nal_types = {b & 0x1F for b in re.findall(rb"\x00\x00\x01(.)", first, re.S) for b in b}
    assert {5, 7, 8} <= nal_types  # IDR with SPS and PPS: decodable from the loop's start
    codec = av.CodecContext.create("h264", "r")
    pictures = []
    for frame in frames:
        pictures += codec.decode(av.Packet(bytes(frame.data)))
    pictures += codec.decode(None)
    assert len(pictures) == len(frames) == SECONDS * camera.rate_hz
    assert {(p.width, p.height) for p in pictures} == {(2560, 1920)}
    loop_bits = sum(len(f) for f in video.frame_loop(camera, 11).frames) * 8
    assert 5e6 < loop_bits / (video.GOP_FRAMES / camera.rate_hz) < 10e6  # about 8 Mbit/s


def test_rgb_falls_back_to_raw_without_libx264(monkeypatch):
    monkeypatch.setattr(video, "h264_available", lambda: False)
    monkeypatch.setattr(video, "_cache", {})
    device = make_fleet(1, seed=12, profile="mp_streaming_demo")[0]
    decoded = decode(run(device, 1.0))
    assert_clean(decoded.counters)
    frames = blobs_of(decoded, "camera-rgb")
    assert len(frames) == 5
    assert {(f.prefix["codec"], f.prefix["pixel_format"], f.prefix["width"], f.prefix["stride_bytes"]) for f in frames} == {
        (0, 1, 1408 // video.RAW_FALLBACK_DOWNSCALE, 3 * 1408 // video.RAW_FALLBACK_DOWNSCALE)}


def test_audio_is_a_tune_on_eight_channels(receiver9):
    device, decoded = receiver9
    blocks = blobs_of(decoded, "mic")
    starts = np.cumsum([0] + [b.prefix["samples_per_channel"] for b in blocks[:-1]])
    assert [b.timestamp_ns for b in blocks] == [device.clock_ns(s / 16000) for s in starts]
    pcm = np.concatenate([np.frombuffer(b.data, "<i2").reshape(-1, 8) for b in blocks])
    assert 3000 < np.abs(pcm).max() < 32767
    first_note = pcm[100:3900, 0].astype(float)  # 0.25 s per note
    spectrum = np.abs(np.fft.rfft(first_note))
    assert abs(np.argmax(spectrum) * 16000 / len(first_note) - device.tune.base_hz) < 5
    assert np.corrcoef(pcm[:4000, 0], pcm[:4000, 7])[0, 1] > 0.8  # the same tune, heard apart
    assert not (pcm[:, 0] == pcm[:, 7]).all()


# -- calibration -------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", list(PROFILES))
def test_calibration_header_is_one_line_of_aria_json(profile):
    fleet = make_fleet(2, seed=8, profile=profile)
    header = fleet[1].headers()["oatmeal-calibration"]
    assert "\n" not in header and 20_000 <= len(header.encode()) <= 60_000
    calibration = json.loads(header)
    cameras = {c["Label"]: c for c in calibration["CameraCalibrations"]}
    assert list(cameras) == [c.label for c in PROFILES[profile].cameras]
    for label, camera in cameras.items():
        assert camera["Projection"]["Name"] == "FisheyeRadTanThinPrism"
        assert len(camera["Projection"]["Params"]) in (15, 16)
        w, xyz = camera["T_Device_Camera"]["UnitQuaternion"]
        assert abs(np.linalg.norm([w, *xyz]) - 1) < 1e-9 and len(camera["T_Device_Camera"]["Translation"]) == 3
        size = next(c for c in PROFILES[profile].cameras if c.label == label)
        assert camera["ImageSize"] == {"Width": size.width, "Height": size.height}
        if label in CAMERAS and label.startswith("slam"):
            optical_axis = quat_rotate(np.array([[w, *xyz]]), np.array([[0.0, 0, 1]]))[0]
            assert np.degrees(np.arctan2(optical_axis[1], optical_axis[0])) == pytest.approx(
                np.degrees(CAMERAS[label].yaw), abs=1)
    imus = calibration["ImuCalibrations"]
    assert [i["Label"] for i in imus] == ["imu-left", "imu-right"]
    assert all(np.shape(i[s]["Model"]["RectificationMatrix"]) == (3, 3) for i in imus for s in ("Accelerometer", "Gyroscope"))
    # The factory's bias is the simulated sensor's, up to calibration error.
    assert np.allclose(imus[0]["Gyroscope"]["Bias"]["Offset"], fleet[1].signals.gyro_bias[0], atol=1e-3)
    assert [m["Label"] for m in calibration["MagCalibrations"]] == ["mag0"]
    assert [b["Label"] for b in calibration["BaroCalibrations"]] == ["baro0"]
    assert [m["Label"] for m in calibration["MicCalibrations"]] == [f"mic{n}" for n in range(8)]
    assert calibration["DeviceClassInfo"] == {"BuildVersion": fleet[1].build, "DeviceClass": "Aria Gen2"}
    assert calibration["SerialNumber"] == fleet[1].serial
    assert calibration["OriginSpecification"]["ChildLabel"] == "imu-left"
    assert json.loads(fleet[0].headers()["oatmeal-calibration"]) != calibration  # each unit differs


# -- speed -------------------------------------------------------------------------------------


def test_one_second_of_profile9_one_sample_per_message_is_cheap(fleet9):
    device = make_fleet(1, seed=11, one_sample_per_message=True)[0]
    device.window(0.0, PERIOD_S)  # the shared H.264 loop is built on first use, not timed
    started = time.process_time()
    for k in range(1, 6):
        device.window(k * PERIOD_S, (k + 1) * PERIOD_S)
    assert time.process_time() - started < 0.5
