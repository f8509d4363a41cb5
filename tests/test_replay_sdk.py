"""recorder.sdk's offline replay (ReplaySourceConfig, create_replay_source) over sessions stored
by the real storage code: the sample capture's three devices on the broadcaster's timeline
(checked against the simulator's true clocks), pacing, windows, the stream filter, seek,
pause, loop, raising callbacks and sessions that cannot be replayed."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from storage_support import store_body

import recorder
from recorder.sdk import ReplayError, ReplaySourceConfig, StreamDataInterface, create_replay_source
from recorder.sim.fleet import make_fleet
from recorder.storage import Store

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_data").glob("1M0Y*"))
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def sample_sessions(tmp_path_factory) -> list[Path]:
    """The sample capture's three devices in one data folder; the first is the broadcaster."""
    store = Store(tmp_path_factory.mktemp("data"), sync=False)
    return [store_body(store, json.loads((d / "headers.json").read_text()), (d / "body.srf").read_bytes())
            for d in SAMPLES]


@pytest.fixture(scope="module")
def receiver(sample_sessions) -> Path:
    return sample_sessions[1]


class Log:
    """Callbacks that note (device, callback, capture time) of every call, in call order."""

    def __init__(self):
        self.calls: list[tuple[str | None, str, int]] = []
        self.made = 0
        self.lock = threading.Lock()

    def interface(self, kinds=("imu", "eye_gaze", "hand_pose", "vio", "vio_high_frequency", "rgb", "et",
                               "battery", "time_domain_mapping")) -> StreamDataInterface:
        self.made += 1
        sdi = StreamDataInterface()
        for kind in kinds:
            getattr(sdi, f"register_{kind}_callback")(self._note(kind))
        return sdi

    def _note(self, kind):
        def note(*args, device_id=None):
            first = args[0]
            if kind == "time_domain_mapping":
                t = first
            elif kind in ("rgb", "et"):
                t = args[1].capture_timestamp_ns
            else:
                t = first.capture_timestamp_ns
            with self.lock:
                self.calls.append((device_id, kind, t))
        return note

    def times(self, kind: str, device: str | None = None) -> list[int]:
        return [t for d, k, t in self.calls if k == kind and (device is None or d == device)]


def run(config: ReplaySourceConfig, stream_data):
    source = create_replay_source(config, stream_data)
    assert source.wait(TIMEOUT_S), "the replay did not end"
    assert source.error is None
    return source


def timeline(session: Path, stream: str, column: str = "timestamp_ns") -> tuple[np.ndarray, np.ndarray]:
    """A stream's device times and their broadcaster times, as the reading API maps them."""
    with recorder.open_session(session) as s:
        t = s.table(stream, columns=[column])[column].to_numpy()
        return t, s.to_broadcaster_time(t)


# -- one timeline for several devices -----------------------------------------------------------

def test_three_devices_replay_in_broadcaster_time_order_near_the_true_clock(sample_sessions):
    log = Log()
    source = run(ReplaySourceConfig([str(p) for p in sample_sessions], speed_multiplier=0), log.interface)
    assert log.made == 3 and source.warnings == []
    fleet = make_fleet(3, seed=7, profile="mp_streaming_demo")  # the sample capture's devices (sample_data/README)
    serials = [recorder.open_session(p).serial for p in sample_sessions]
    assert [d.serial for d in fleet] == serials
    broadcaster = fleet[0].clock
    mapped = np.empty(len(log.calls), np.int64)
    for device, serial in zip(fleet, serials, strict=True):
        mine = np.array([i for i, (d, _, _) in enumerate(log.calls) if d == serial])
        device_t = np.array([log.calls[i][2] for i in mine], np.int64)
        mapped[mine] = source.timeline_ns(serial, device_t)
        run_ns = np.rint((device_t - device.clock.boot_offset_ns) / (1 + device.clock.drift_ppm * 1e-6)).astype(np.int64)
        truth = broadcaster.at_ns(run_ns)
        assert np.abs(mapped[mine] - truth).max() <= 100_000  # 100 us
        if serial != serials[0]:  # receivers really are on other clocks
            assert np.abs(device_t - truth).min() > 10**9
    assert np.all(np.diff(mapped) >= 0), "rows were not delivered in broadcaster-time order"
    for path, serial in zip(sample_sessions, serials, strict=True):  # and every row was delivered
        for stream, kind in (("eye-gaze", "eye_gaze"), ("camera-rgb", "rgb"), ("vio", "vio")):
            assert log.times(kind, serial) == timeline(path, stream)[0].tolist()
        both_imus = timeline(path, "imu-left")[0].tolist() + timeline(path, "imu-right")[0].tolist()
        assert sorted(log.times("imu", serial)) == sorted(both_imus)


def test_a_device_without_a_mapping_stays_on_its_clock_and_the_replay_says_so(sample_sessions, tmp_path):
    alone = Store(tmp_path / "elsewhere", sync=False)  # the broadcaster away from its receivers: nothing tells
    broadcaster = SAMPLES[0]
    lone = store_body(alone, json.loads((broadcaster / "headers.json").read_text()),
                      (broadcaster / "body.srf").read_bytes())
    log = Log()
    source = run(ReplaySourceConfig([str(sample_sessions[1]), str(lone)], speed_multiplier=0, streams=["battery"]),
                 log.interface)
    assert len(source.warnings) == 1 and source.warnings[0].startswith("1M0YDA9HN77304 has no time domain mapping")
    device_t, _ = timeline(lone, "battery")
    np.testing.assert_array_equal(source.timeline_ns("1M0YDA9HN77304", device_t), device_t)


def test_a_factory_is_called_once_per_device_and_device_id_names_it(sample_sessions):
    log = Log()
    run(ReplaySourceConfig(sample_sessions, speed_multiplier=0, streams=["battery"]), log.interface)
    assert log.made == 3
    assert Counter(d for d, _, _ in log.calls) == {recorder.open_session(p).serial: 2 for p in sample_sessions}


# -- every row, its values --------------------------------------------------------------------

def test_every_stored_row_is_delivered_once_with_imu_records_whole(receiver):
    calls: dict[str, list] = {"imu": [], "imu_batch": [], "vio": []}
    sdi = StreamDataInterface()
    sdi.register_imu_callback(lambda m, label: calls["imu"].append((m, label)))
    sdi.register_imu_batch_callback(lambda batch, label: calls["imu_batch"].append((batch, label)))
    sdi.register_vio_callback(lambda v: calls["vio"].append(v))
    run(ReplaySourceConfig(receiver, speed_multiplier=0), sdi)  # 2 s: more than one slice of the timeline
    with recorder.open_session(receiver) as s:
        imu = s.table("imu-right", columns=["timestamp_ns", "accel_msec2", "sequence"])
        vio = s.table("vio")
    mine = [m for m, label in calls["imu"] if label == "imu-right"]
    assert [m.capture_timestamp_ns for m in mine] == imu["timestamp_ns"].to_pylist()
    np.testing.assert_array_equal(np.stack([m.accel_msec2 for m in mine]),
                                  np.array(imu["accel_msec2"].to_pylist(), np.float32))
    batches = [b for b, label in calls["imu_batch"] if label == "imu-right"]
    records = np.unique(imu["sequence"].to_numpy(), return_counts=True)[1]
    assert [len(b) for b in batches] == records.tolist()  # one call per stored record, every sample in it
    assert [v.capture_timestamp_ns for v in calls["vio"]] == vio["timestamp_ns"].to_pylist()
    np.testing.assert_array_equal([v.transform_odometry_bodyimu.translation for v in calls["vio"]],
                                  np.array(vio["translation_m"].to_pylist()))


# -- pacing ----------------------------------------------------------------------------------

def test_speed_one_takes_the_timeline_duration_and_speed_zero_is_faster(receiver):
    log = Log()
    began = time.monotonic()
    source = run(ReplaySourceConfig(receiver, speed_multiplier=1.0), log.interface(("imu", "eye_gaze")))
    took = time.monotonic() - began
    duration = (source.end_ns - source.start_ns) / 1e9
    assert 1.9 < duration < 2.1
    assert duration * 0.9 <= took <= duration * 1.1
    began = time.monotonic()
    run(ReplaySourceConfig(receiver, speed_multiplier=0), log.interface(("imu", "eye_gaze")))
    assert time.monotonic() - began < duration / 4
    assert len(log.calls) == 2 * (3200 + 60)


def test_speed_two_takes_half(receiver):
    began = time.monotonic()
    source = run(ReplaySourceConfig(receiver, speed_multiplier=2.0), Log().interface(("battery", "vio")))
    duration = (source.end_ns - source.start_ns) / 1e9
    assert duration / 2 * 0.9 <= time.monotonic() - began <= duration / 2 * 1.1


# -- windows and filters -----------------------------------------------------------------------

def test_a_window_in_seconds_delivers_exactly_the_rows_inside_it(sample_sessions, receiver):
    log = Log()
    source = run(ReplaySourceConfig(sample_sessions, speed_multiplier=0, start_time_sec=0.5, end_time_sec=1.25),
                 log.interface)
    serial = recorder.open_session(receiver).serial
    first = min(timeline(p, "battery")[1].min() for p in sample_sessions)  # battery: the first row of each
    assert source.start_ns == first + 500_000_000 and source.end_ns == first + 1_250_000_000
    def inside(stream: str) -> list[int]:
        device_t, mapped = timeline(receiver, stream)
        kept = device_t[(mapped >= source.start_ns) & (mapped < source.end_ns)]
        assert 0 < len(kept) < len(device_t)
        return kept.tolist()

    for stream, kind in (("eye-gaze", "eye_gaze"), ("camera-rgb", "rgb"), ("vio", "vio")):
        assert log.times(kind, serial) == inside(stream)
    assert sorted(log.times("imu", serial)) == sorted(inside("imu-left") + inside("imu-right"))


def test_a_window_in_absolute_broadcaster_time(receiver):
    device_t, mapped = timeline(receiver, "imu-left")
    start, end = int(mapped[100]), int(mapped[900])
    imu_left = []
    sdi = StreamDataInterface()
    sdi.register_imu_callback(lambda m, label: imu_left.append(m.capture_timestamp_ns) if label == "imu-left" else None)
    run(ReplaySourceConfig(receiver, speed_multiplier=0, start_ns=start, end_ns=end), sdi)
    assert imu_left == device_t[100:900].tolist()


def test_the_stream_filter_delivers_only_those_streams_whole(receiver):
    log = Log()
    run(ReplaySourceConfig(receiver, speed_multiplier=0, streams=["eye-gaze", "camera-rgb"]), log.interface)
    assert {k for _, k, _ in log.calls} == {"eye_gaze", "rgb"}
    assert log.times("eye_gaze") == timeline(receiver, "eye-gaze")[0].tolist()
    assert log.times("rgb") == timeline(receiver, "camera-rgb")[0].tolist()


def test_frames_after_a_window_start_decode_from_the_keyframe_before_it(receiver):
    images = []
    sdi = StreamDataInterface()
    sdi.register_rgb_callback(lambda image, record: images.append((record.frame_number, image.to_numpy_array())))
    source = run(ReplaySourceConfig(receiver, speed_multiplier=0, start_time_sec=1.0), sdi)
    with recorder.open_session(receiver) as s:
        expected = list(s.frames("camera-rgb", start_ns=int(s.table("camera-rgb")["timestamp_ns"].to_numpy()[
            np.searchsorted(s.to_broadcaster_time(s.table("camera-rgb")["timestamp_ns"].to_numpy()), source.start_ns)])))
    assert 0 < len(images) == len(expected) < 10  # the only keyframe is frame 0, before the window
    for (number, image), (info, pixels) in zip(images, expected, strict=True):
        assert number == info["frame_number"]
        np.testing.assert_array_equal(image, pixels)
    assert not source.deliveries[recorder.open_session(receiver).serial].skipped


# -- control: seek, pause, loop, stop ------------------------------------------------------------

def test_seek_goes_on_from_there_with_frames_decoded(receiver):
    holder, ready = {}, threading.Event()
    imu, frames = [], []

    def on_imu(motion, label):
        imu.append(motion.capture_timestamp_ns)
        if len(imu) == 1:
            ready.wait(5)
            holder["source"].seek(1.5)

    sdi = StreamDataInterface()
    sdi.register_imu_callback(on_imu)
    sdi.register_rgb_callback(lambda image, record: frames.append((record.frame_number, image.to_numpy_array())))
    holder["source"] = source = create_replay_source(ReplaySourceConfig(receiver, speed_multiplier=0), sdi)
    ready.set()
    assert source.wait(TIMEOUT_S) and source.error is None
    device_t, mapped = timeline(receiver, "imu-left")
    right_t, right_mapped = timeline(receiver, "imu-right")
    target = source.start_ns + 1_500_000_000
    after = sorted(device_t[mapped >= target].tolist() + right_t[right_mapped >= target].tolist())
    assert imu[0] in (device_t[0], right_t[0]) and sorted(imu[1:]) == after
    with recorder.open_session(receiver) as s:
        t = s.table("camera-rgb")["timestamp_ns"].to_numpy()
        expected = list(s.frames("camera-rgb", start_ns=int(t[np.searchsorted(s.to_broadcaster_time(t), target)])))
    rgb_after = frames[-len(expected):]
    assert [n for n, _ in rgb_after] == [i["frame_number"] for i, _ in expected]
    for (_, image), (_, pixels) in zip(rgb_after, expected, strict=True):
        np.testing.assert_array_equal(image, pixels)
    with pytest.raises(ValueError, match="outside the window"):
        source.seek(5.0)


def test_pause_holds_the_replay_and_resume_goes_on(receiver):
    log = Log()
    source = create_replay_source(ReplaySourceConfig(receiver, speed_multiplier=1.0), log.interface(("imu",)))
    time.sleep(0.4)
    source.pause()
    time.sleep(0.2)
    held = len(log.calls)
    time.sleep(0.6)
    assert len(log.calls) == held and 0 < held < 3200 and not source.is_finished()
    source.resume()
    assert source.wait(TIMEOUT_S)
    assert len(log.calls) == 3200


def test_loop_starts_again_until_stopped(receiver):
    log = Log()
    source = create_replay_source(ReplaySourceConfig(receiver, speed_multiplier=0, loop=True,
                                                     streams=["eye-gaze"]), log.interface)
    deadline = time.monotonic() + TIMEOUT_S
    while source.loops < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    source.stop()
    assert source.is_finished() and source.loops >= 3
    once = timeline(receiver, "eye-gaze")[0].tolist()
    gaze = log.times("eye_gaze")
    assert gaze[:3 * len(once)] == once * 3


def test_stop_ends_a_paced_replay_at_once(receiver):
    source = create_replay_source(ReplaySourceConfig(receiver, speed_multiplier=0.1), Log().interface(("imu",)))
    began = time.monotonic()
    source.stop()
    assert source.is_finished() and time.monotonic() - began < 1.0


# -- user code and bad input -------------------------------------------------------------------

def test_a_raising_callback_is_reported_and_the_replay_goes_on(sample_sessions):
    failures = []
    log = Log()

    def factory():
        sdi = log.interface(("imu", "eye_gaze"))
        sdi.register_vio_callback(lambda vio: 1 / 0)
        return sdi

    run(ReplaySourceConfig(sample_sessions, speed_multiplier=0, on_error=lambda *a: failures.append(a)), factory)
    assert len(failures) == 3 * 20  # every VIO row of every device, each reported
    serial = recorder.open_session(sample_sessions[2]).serial
    device_t, _ = timeline(sample_sessions[2], "vio")
    mine = [(stream, t) for d, stream, t, exc in failures if d == serial]
    assert mine == [("vio", t) for t in device_t.tolist()]
    assert all(isinstance(exc, ZeroDivisionError) for *_, exc in failures)
    assert len(log.times("imu")) == 3 * 3200 and len(log.times("eye_gaze")) == 3 * 60


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ReplayError, match=f"cannot replay {tmp_path / 'nope'}: no session folder at"):
        create_replay_source(ReplaySourceConfig(str(tmp_path / "nope")), StreamDataInterface())
    with pytest.raises(ReplayError, match="is not a session folder"):
        create_replay_source(ReplaySourceConfig(str(tmp_path)), StreamDataInterface())
    with pytest.raises(ReplayError, match="names no session folder"):
        create_replay_source(ReplaySourceConfig(), StreamDataInterface())


def test_a_malformed_session_is_a_clear_error(receiver, tmp_path):
    broken = tmp_path / "data" / receiver.parent.name / receiver.name
    shutil.copytree(receiver, broken)
    part = next((broken / "eye-gaze").glob("part-*.parquet"))
    part.write_bytes(b"this is not parquet" * 10)
    with pytest.raises(ReplayError, match=f"cannot replay {broken}: a stored stream cannot be read"):
        create_replay_source(ReplaySourceConfig(str(broken)), Log().interface())


def test_bad_options_are_clear_errors(receiver):
    sdi = StreamDataInterface()
    with pytest.raises(ReplayError, match="no session of the replay has stream camera-nope"):
        create_replay_source(ReplaySourceConfig(receiver, streams=["camera-nope"]), sdi)
    with pytest.raises(ReplayError, match="holds none of the timeline"):
        create_replay_source(ReplaySourceConfig(receiver, start_time_sec=30), sdi)
    with pytest.raises(ReplayError, match="speed_multiplier"):
        create_replay_source(ReplaySourceConfig(receiver, speed_multiplier=-1), sdi)
    with pytest.raises(ReplayError, match="not a StreamDataInterface"):
        create_replay_source(ReplaySourceConfig(receiver), lambda: "handler")
    with pytest.raises(ReplayError, match="start_time_sec or start_ns"):
        create_replay_source(ReplaySourceConfig(receiver, start_time_sec=1, start_ns=5), sdi)


def test_a_replay_gives_each_record_once_whole_as_sent(receiver):
    sequences, ids = [], set()
    sent, at = {}, 0
    body = (ROOT / "sample_data" / "1M0YDA9HNM2419" / "body.srf").read_bytes()
    while at < len(body):
        length = 32 + int.from_bytes(body[at + 8:at + 12], "little")
        sent[int.from_bytes(body[at + 16:at + 24], "little")] = body[at:at + length]
        at += length
    got = {}

    def on_raw(message, offset):
        sequences.append(message.sequence)
        got[message.sequence] = message.data
        ids.add(message.id)

    sdi = StreamDataInterface(enable_raw_stream=True)
    sdi.register_raw_message_callback(on_raw)
    run(ReplaySourceConfig(receiver, speed_multiplier=0), sdi)  # slices cut records: they still come whole
    assert sorted(sequences) == sorted(sent) and got == sent
    assert len(ids) > 8


def test_sessions_of_different_recordings_replay_without_their_gap(receiver, tmp_path):
    from recorder.sim import sender

    (other,) = make_fleet(1, seed=2, profile="mp_streaming_demo")
    sender.write_fleet([other], tmp_path / "bodies", duration_s=1.0, batch_period_s=0.2)
    lone = store_body(Store(tmp_path / "data", sync=False),
                      json.loads((tmp_path / "bodies" / other.serial / "headers.json").read_text()),
                      (tmp_path / "bodies" / other.serial / "body.srf").read_bytes())
    log = Log()
    began = time.monotonic()
    source = run(ReplaySourceConfig([receiver, lone], speed_multiplier=1.0, streams=["eye-gaze"]), log.interface)
    took = time.monotonic() - began
    gap_s = (source.end_ns - source.start_ns) / 1e9
    assert gap_s > 60  # the two clocks are minutes to hours apart
    assert took < 4.5  # 2 s and 1 s of data, the time between them skipped
    assert sorted(log.times("eye_gaze")) == sorted(timeline(receiver, "eye-gaze")[0].tolist()
                                                   + timeline(lone, "eye-gaze")[0].tolist())
    assert [w.split(" ")[0] for w in source.warnings] == [other.serial]
