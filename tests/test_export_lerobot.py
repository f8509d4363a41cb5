"""recorder export --format lerobot: a LeRobot v3.0 dataset, checked against LeRobot's v3.0 schema
as its source defines it (lerobot/datasets/utils.py, dataset_metadata.py, dataset_writer.py,
video_utils.py) with pyarrow, PyAV and ffprobe: LeRobot's own loader needs torch, torchcodec and
datasets, too heavy for these tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from test_export_mp4 import mixed, store  # noqa: F401  (mixed: a fixture these tests use too)

import recorder
from recorder.export import ExportError, ExportJob, export
from recorder.sim.fleet import make_fleet

RECORDER = str(Path(sys.executable).with_name("recorder"))
FPS = 10
STATE_NAMES = [f"{stream}.{column}.{axis}" for stream, column, axes in [
    ("imu-left", "accel_msec2", "xyz"), ("imu-left", "gyro_radsec", "xyz"),
    ("imu-right", "accel_msec2", "xyz"), ("imu-right", "gyro_radsec", "xyz"),
    ("vio", "translation_m", "xyz"), ("vio", "rotation", "wxyz")] for axis in axes]
CAMERAS = ["camera-et-left", "camera-et-right", "camera-rgb"]
# LeRobot's DatasetInfo fields (utils.py) and the columns its reader and writer use.
INFO_KEYS = {"codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks", "chunks_size",
             "data_files_size_in_mb", "video_files_size_in_mb", "data_path", "video_path", "robot_type", "splits"}
DEFAULT_FEATURES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
                    "task_index": "int64"}
EPISODE_COLUMNS = {"episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                   "dataset_to_index", "meta/episodes/chunk_index", "meta/episodes/file_index"}
VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
STATS = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Two devices of mp_streaming_demo, 1.5 s: GRAY8 eye-tracking cameras, H.264 RGB camera."""
    data = tmp_path_factory.mktemp("demo") / "data"
    store(data, make_fleet(2, seed=7, profile="mp_streaming_demo"), [(0.0, 1.5)])
    return data


@pytest.fixture(scope="module")
def dataset(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("lerobot") / "dataset"
    summary = export([demo], "lerobot", out, fps=FPS)
    return out, summary


def info_of(out: Path) -> dict:
    return json.loads((out / "meta" / "info.json").read_text())


def episodes_of(out: Path) -> list[dict]:
    return pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()


def ffprobe_frames(path: Path) -> list[float]:
    """Every video frame's presentation time in seconds, as ffprobe reads them."""
    shown = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
                            "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    return [float(line.strip(",")) for line in shown.split()]


def test_the_layout_and_info_json_follow_lerobot_v3(dataset):
    out, summary = dataset
    info = info_of(out)
    assert INFO_KEYS <= set(info) and info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert info["total_episodes"] == 2 and info["total_tasks"] == 1 and info["splits"] == {"train": "0:2"}
    features = info["features"]
    assert {name: features[name]["dtype"] for name in DEFAULT_FEATURES} == DEFAULT_FEATURES
    assert all(features[name]["shape"] == [1] for name in DEFAULT_FEATURES)
    assert features["observation.state"] == {"dtype": "float32", "shape": [len(STATE_NAMES)], "names": STATE_NAMES}
    for camera in CAMERAS:
        feature = features[f"observation.images.{camera}"]
        assert feature["dtype"] == "video" and feature["names"] == ["height", "width", "channels"]
        height, width, channels = feature["shape"]
        assert channels == 3 and feature["info"]["video.codec"] == "h264"
        assert (feature["info"]["video.width"], feature["info"]["video.height"]) == (width, height)
        assert feature["info"]["video.pix_fmt"] == "yuv420p" and feature["info"]["video.fps"] == FPS
        assert (out / info["video_path"].format(video_key=f"observation.images.{camera}", chunk_index=0,
                                                file_index=0)).is_file()
    assert (out / info["data_path"].format(chunk_index=0, file_index=0)).is_file()
    assert all("/" not in name for name in features)  # LeRobot refuses such feature names
    assert summary.written["rows"] == {"frames": info["total_frames"], "episodes": 2}


def test_frames_hold_lerobots_columns_and_types_with_timestamps_at_the_fps(dataset):
    out, _ = dataset
    info = info_of(out)
    table = pq.read_table(out / "data/chunk-000/file-000.parquet")
    types = {field.name: str(field.type) for field in table.schema}
    assert types == {"observation.state": f"fixed_size_list<element: float>[{len(STATE_NAMES)}]",
                     "timestamp": "float", "frame_index": "int64", "episode_index": "int64", "index": "int64",
                     "task_index": "int64", "time_ns": "int64"}
    columns = {name: table.column(name).to_numpy() for name in types if name != "observation.state"}
    assert table.num_rows == info["total_frames"]
    assert np.array_equal(columns["index"], np.arange(table.num_rows))
    assert set(columns["task_index"]) == {0}
    for episode in episodes_of(out):
        rows = slice(episode["dataset_from_index"], episode["dataset_to_index"])
        assert set(columns["episode_index"][rows]) == {episode["episode_index"]}
        frame_index = columns["frame_index"][rows]
        assert np.array_equal(frame_index, np.arange(episode["length"]))
        assert np.array_equal(columns["timestamp"][rows], (frame_index / FPS).astype(np.float32))
        ticks = columns["time_ns"][rows]
        assert ticks[0] == episode["start_time_ns"]
        assert np.abs(np.diff(ticks) - 1e9 / FPS).max() <= 1  # ticks rounded to the ns


def test_episodes_metadata_locates_every_episodes_frames_and_video(dataset, demo):
    out, _ = dataset
    episodes = episodes_of(out)
    assert EPISODE_COLUMNS <= set(episodes[0])
    assert [e["episode_index"] for e in episodes] == [0, 1]
    assert episodes[0]["dataset_from_index"] == 0
    assert all(a["dataset_to_index"] == b["dataset_from_index"] for a, b in zip(episodes, episodes[1:], strict=False))
    assert episodes[-1]["dataset_to_index"] == info_of(out)["total_frames"] == sum(e["length"] for e in episodes)
    assert all(e["tasks"] == ["recorded with recorder"] for e in episodes)
    job = ExportJob.make([demo])
    assert {(e["serial"], e["session_id"]) for e in episodes} == {(s.serial, s.session_id) for s in job.sessions}
    for camera in CAMERAS:
        prefix = f"videos/observation.images.{camera}/"
        assert {f"{prefix}{column}" for column in VIDEO_COLUMNS} <= set(episodes[0])
        assert episodes[0][prefix + "from_timestamp"] == 0
        for episode, following in zip(episodes, episodes[1:], strict=False):
            assert following[prefix + "from_timestamp"] == episode[prefix + "to_timestamp"]
        for episode in episodes:
            assert episode[prefix + "to_timestamp"] - episode[prefix + "from_timestamp"] == \
                pytest.approx(episode["length"] / FPS)


def test_each_video_has_one_frame_per_dataset_frame_at_k_over_fps(dataset):
    out, _ = dataset
    total = info_of(out)["total_frames"]
    for camera in CAMERAS:
        times = ffprobe_frames(out / f"videos/observation.images.{camera}/chunk-000/file-000.mp4")
        assert len(times) == total
        assert np.allclose(times, np.arange(total) / FPS, atol=1e-6)


def test_every_query_lerobot_makes_finds_its_frame_within_its_tolerance(dataset):
    """LeRobot decodes at from_timestamp + timestamp and accepts the nearest frame within 1e-4 s."""
    out, _ = dataset
    table = pq.read_table(out / "data/chunk-000/file-000.parquet", columns=["episode_index", "timestamp"])
    episodes = {e["episode_index"]: e for e in episodes_of(out)}
    key = "observation.images.camera-rgb"
    times = np.array(ffprobe_frames(out / f"videos/{key}/chunk-000/file-000.mp4"))
    for episode, timestamp in zip(*(table.column(c).to_pylist() for c in ("episode_index", "timestamp")), strict=True):
        query = episodes[episode][f"videos/{key}/from_timestamp"] + timestamp
        assert np.abs(times - query).min() < 1e-4


def test_lerobots_pyav_decoding_finds_each_queried_frame(dataset):
    """As lerobot.datasets.video_utils.decode_video_frames_pyav does: seek to the keyframe at or
    before the query, decode forward, take the nearest frame; it is the frame of that index."""
    out, _ = dataset
    key = "observation.images.camera-rgb"
    path = out / f"videos/{key}/chunk-000/file-000.mp4"
    with av.open(str(path)) as container:
        every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    for episode in episodes_of(out):
        for frame_index in (0, episode["length"] // 2, episode["length"] - 1):
            query = episode[f"videos/{key}/from_timestamp"] + np.float32(frame_index / FPS)
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                container.seek(round(query / stream.time_base) - 1, backward=True, any_frame=False, stream=stream)
                for frame in container.decode(stream):
                    if float(frame.pts * stream.time_base) >= query - 1e-4:
                        break
            assert abs(float(frame.pts * stream.time_base) - query) < 1e-4
            assert np.array_equal(frame.to_ndarray(format="rgb24"),
                                  every[episode["dataset_from_index"] + frame_index])


def test_the_state_is_each_streams_sample_nearest_the_tick(dataset, demo):
    out, _ = dataset
    table = pq.read_table(out / "data/chunk-000/file-000.parquet")
    state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False))
    ticks = table.column("time_ns").to_numpy()
    episodes = episodes_of(out)
    job = ExportJob.make([demo])
    for session in job.sessions:
        (episode,) = [e for e in episodes if e["session_id"] == session.session_id and e["serial"] == session.serial]
        rows = slice(episode["dataset_from_index"], episode["dataset_to_index"])
        column = 0
        for stream, field, width in [("imu-left", "accel_msec2", 3), ("imu-left", "gyro_radsec", 3),
                                     ("imu-right", "accel_msec2", 3), ("imu-right", "gyro_radsec", 3),
                                     ("vio", "translation_m", 3), ("vio", "rotation", 4)]:
            read = [t for t in job.rows(session, stream, columns=[field])]
            times = np.concatenate([t.column("time_ns").to_numpy() for t in read])
            values = np.concatenate([np.stack(t.column(field).to_numpy(zero_copy_only=False)) for t in read])
            nearest = np.abs(times[None, :] - ticks[rows, None]).argmin(axis=1)  # ties: the earlier sample
            assert np.array_equal(state[rows, column:column + width], values[nearest].astype(np.float32))
            column += width


def test_video_frames_show_the_camera_frame_nearest_each_tick(dataset, demo):
    out, _ = dataset
    table = pq.read_table(out / "data/chunk-000/file-000.parquet", columns=["time_ns", "episode_index"])
    ticks = table.column("time_ns").to_numpy()
    episode_of = table.column("episode_index").to_numpy()
    serial_of = {e["episode_index"]: e["serial"] for e in episodes_of(out)}
    job = ExportJob.make([demo])  # no window: a row of the export is the session's frame of that index
    sessions = {s.serial: s for s in job.sessions}
    key = "observation.images.camera-et-left"
    with av.open(str(out / f"videos/{key}/chunk-000/file-000.mp4")) as container:
        shown = [f.to_ndarray(format="gray").astype(int) for f in container.decode(video=0)]
    assert len(shown) == len(ticks)
    for k, image in enumerate(shown):
        session = sessions[serial_of[episode_of[k]]]
        times = np.concatenate([t.column("time_ns").to_numpy()
                                for t in job.rows(session, "camera-et-left", columns=["timestamp_ns"])])
        nearest = int(np.abs(times - ticks[k]).argmin())
        _, expected = session.frame("camera-et-left", nearest)
        differences = [np.abs(image - session.frame("camera-et-left", i)[1].astype(int)).mean()
                       for i in range(len(times))]
        assert np.abs(image - expected.astype(int)).mean() < 3
        assert differences[nearest] == min(differences)  # (yuv420p's rounding kept it closest)


def test_stats_cover_every_feature_and_match_the_frames(dataset):
    out, _ = dataset
    stats = json.loads((out / "meta" / "stats.json").read_text())
    info = info_of(out)
    assert set(stats) == set(info["features"])
    table = pq.read_table(out / "data/chunk-000/file-000.parquet")
    state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False)).astype(np.float64)
    assert set(stats["observation.state"]) == STATS
    assert np.allclose(stats["observation.state"]["mean"], state.mean(axis=0))
    assert np.allclose(stats["observation.state"]["std"], state.std(axis=0))
    assert np.allclose(stats["observation.state"]["min"], state.min(axis=0))
    assert np.allclose(stats["observation.state"]["max"], state.max(axis=0))
    assert stats["observation.state"]["count"] == [table.num_rows]
    assert stats["index"]["max"] == [table.num_rows - 1] and stats["timestamp"]["min"] == [0.0]
    for camera in CAMERAS:
        image = stats[f"observation.images.{camera}"]
        assert set(image) == STATS and image["count"] == [table.num_rows]
        for name in STATS - {"count"}:
            values = np.array(image[name])
            assert values.shape == (3, 1, 1) and ((values >= 0) & (values <= 1)).all()
        assert (np.array(image["min"]) <= np.array(image["mean"])).all()
        assert (np.array(image["mean"]) <= np.array(image["max"])).all()
    # Per-episode stats are columns of the episodes table, as LeRobot writes them.
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet")
    assert {f"stats/observation.state/{name}" for name in STATS} <= set(episodes.column_names)


def test_tasks_parquet_reads_in_pandas_with_the_task_as_index(dataset):
    out, _ = dataset
    table = pq.read_table(out / "meta" / "tasks.parquet")
    assert table.to_pylist() == [{"task_index": 0, "task": "recorded with recorder"}]
    pandas_meta = json.loads(table.schema.metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["task"]


def test_a_window_inside_a_gop_shows_the_next_decodable_frame(mixed, tmp_path):  # noqa: F811
    """The RGB camera changes coding midway (JPEG, RAW RGB24 of odd size, H.265, RAW YUV420P):
    every tick still gets a frame, scaled to the first frame's size, and a window starting inside
    an H.265 GOP takes the next keyframe's image for the ticks before it."""
    data, _ = mixed
    summary = export([data], "lerobot", tmp_path / "all", fps=5, streams=["camera-rgb", "imu-left"])
    out = summary.out
    info = info_of(out)
    assert info["features"]["observation.images.camera-rgb"]["shape"] == [240, 320, 3]
    assert len(ffprobe_frames(out / "videos/observation.images.camera-rgb/chunk-000/file-000.mp4")) == \
        info["total_frames"]
    assert any("scaled to 320x240" in note for note in summary.notes)
    late = export([data], "lerobot", tmp_path / "late", fps=5, streams=["camera-rgb"], start="2.5", end="3.5")
    assert any("next decodable frame" in note for note in late.notes)
    assert len(ffprobe_frames(late.out / "videos/observation.images.camera-rgb/chunk-000/file-000.mp4")) == \
        info_of(late.out)["total_frames"]
    assert info_of(late.out)["features"].get("observation.state") is None


def test_a_window_streams_and_a_clock_hold_exactly_the_rows_they_name(demo, tmp_path):
    """--start/--end/--streams/--clock device: every tick lies in the window, the state holds
    only the named streams, and each value is the nearest of the rows inside the window (read
    with the reading API on the device's own clock), never one outside it."""
    options = {"clock": "device", "start": "0.4", "end": "1.1", "streams": ["imu-right", "vio"]}
    summary = export([demo], "lerobot", tmp_path / "window", fps=FPS, **options)
    window = ExportJob.make([demo], **options)
    start, end = window.start_ns, window.end_ns
    info = info_of(summary.out)
    assert set(info["features"]) == {"observation.state", *DEFAULT_FEATURES, "time_ns"}
    assert info["features"]["observation.state"]["names"] == [
        n for n in STATE_NAMES if n.startswith(("imu-right.", "vio."))]
    table = pq.read_table(summary.out / "data/chunk-000/file-000.parquet")
    state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False))
    ticks = table.column("time_ns").to_numpy()
    assert len(ticks) and ticks.min() >= start and ticks.max() < end
    for episode in episodes_of(summary.out):
        rows = slice(episode["dataset_from_index"], episode["dataset_to_index"])
        session = recorder.open_session(demo / episode["serial"] / episode["session_id"])
        column = 0
        for stream, field, width in [("imu-right", "accel_msec2", 3), ("imu-right", "gyro_radsec", 3),
                                     ("vio", "translation_m", 3), ("vio", "rotation", 4)]:
            stored = session.table(stream, columns=["timestamp_ns", field])
            times = stored.column("timestamp_ns").to_numpy()
            values = np.stack(stored.column(field).to_numpy(zero_copy_only=False))
            inside = (times >= start) & (times < end)
            times, values = times[inside], values[inside]
            assert times.min() <= ticks[rows].min() and ticks[rows].max() <= times.max()
            nearest = np.abs(times[None, :] - ticks[rows, None]).argmin(axis=1)
            assert np.array_equal(state[rows, column:column + width], values[nearest].astype(np.float32)), stream
            column += width


def test_the_command_takes_fps_for_lerobot_only(demo, tmp_path):
    done = subprocess.run([RECORDER, "export", str(demo), "--format", "lerobot", "--fps", "5",
                           "--streams", "imu-left,vio,camera-rgb", "--out", str(tmp_path / "ds")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    info = info_of(tmp_path / "ds")
    assert info["fps"] == 5 and set(info["features"]) == {"observation.state", "observation.images.camera-rgb",
                                                           *DEFAULT_FEATURES, "time_ns"}
    assert len(info["features"]["observation.state"]["names"]) == 13
    refused = subprocess.run([RECORDER, "export", str(demo), "--format", "parquet", "--fps", "5",
                              "--out", str(tmp_path / "p")], capture_output=True, text=True)
    assert refused.returncode == 2 and "--fps is an option of --format lerobot" in refused.stderr


def test_nothing_to_hold_is_an_error(demo, tmp_path):
    with pytest.raises(ExportError, match="imu-left, imu-right, vio or a camera"):
        export([demo], "lerobot", tmp_path / "none", streams=["battery"])
    assert not (tmp_path / "none").exists() and not (tmp_path / "none.partial").exists()
