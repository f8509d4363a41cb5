"""A LeRobot v3.0 dataset (huggingface/lerobot `LeRobotDataset`, codebase_version "v3.0"):
one episode per device session, one frame per tick of `fps` on the export clock.

    <out>/meta/info.json                                   schema, fps, counts, path templates
    <out>/meta/stats.json                                  mean/std/min/max/q01..q99 per feature
    <out>/meta/tasks.parquet                               one task (the `task` option)
    <out>/meta/episodes/chunk-000/file-000.parquet         one row per episode
    <out>/data/chunk-000/file-000.parquet                  one row per frame, every episode
    <out>/videos/observation.images.<camera>/chunk-000/file-000.mp4

Frames: an episode runs over the span where all its exported streams have rows (from the last
stream's first row to the first stream's last row), ticks `1/fps` apart from its start;
`timestamp` is frame_index / fps in seconds, `time_ns` the tick on the export clock (to join
with other exports). `observation.state` (float32) holds the accel and gyro of imu-left and
imu-right and the VIO translation and rotation (w, x, y, z), each the row nearest in time to
the tick (parquet.sync_table): 19 values when all three streams are exported. Each camera is a
video feature `observation.images.<stream>`: the frame nearest the tick (a frame that cannot be
decoded, before the window's first keyframe, gives way to the next that can), encoded at `fps`
with libx264 (yuv420p, a keyframe every 2 frames as LeRobot's own encoder sets for random
access, no B-frames), pts k/fps for frame k, so that LeRobot's decoders (torchcodec or PyAV,
both read H.264) find every frame at from_timestamp + timestamp within its 1e-4 s tolerance.
Odd image sizes are padded to even ones (yuv420p); a camera whose size changes is scaled to the
dataset's size, which info.json states.

As LeRobot writes them, the episodes of one camera follow each other in one video (the
episode's `videos/<key>/from_timestamp` and `to_timestamp` say where), and data and videos go
on in the next file once one passes 100 MB or 200 MB; the sessions' serial, session id and first
tick time are extra episode columns. The dataset holds what every session has: a state stream or
camera missing from one session is left out of all of them (with a note), and a session with no
rows of a kept stream in the window is left out as an episode.

LeRobot's own loader is not used to check this output: lerobot 0.4 needs torch, torchvision,
torchcodec and datasets, too heavy to install for tests; tests/test_export_lerobot.py checks the
layout, the info.json schema, the parquet columns and types, and the videos' frame counts and
times against LeRobot v3.0's source (lerobot/datasets/utils.py, dataset_metadata.py,
dataset_writer.py, video_utils.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...reading import images
from ..job import ExportError, ExportJob
from . import mp4
from .parquet import sync_table

NAME = "lerobot"
SUFFIX = ""

CODEBASE_VERSION = "v3.0"
DEFAULT_TASK = "recorded with recorder"
ROBOT_TYPE = "smart_glasses"
CHUNKS_SIZE = 1000  # files per chunk folder, as LeRobot's DEFAULT_CHUNK_SIZE
DATA_FILE_MB = 100  # LeRobot's DEFAULT_DATA_FILE_SIZE_IN_MB: a new data file past this
VIDEO_FILE_MB = 200  # LeRobot's DEFAULT_VIDEO_FILE_SIZE_IN_MB
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
KEYFRAME_INTERVAL = "2"  # LeRobot's encoder default (g=2): any frame is at most one frame from a keyframe
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
STATS_IMAGE_SIZE = 150  # LeRobot's stats downsample images larger than twice this to about this size

# observation.state: (stream, column, component names), in this order.
STATE_PARTS = [
    ("imu-left", "accel_msec2", "xyz"),
    ("imu-left", "gyro_radsec", "xyz"),
    ("imu-right", "accel_msec2", "xyz"),
    ("imu-right", "gyro_radsec", "xyz"),
    ("vio", "translation_m", "xyz"),
    ("vio", "rotation", "wxyz"),
]
STATE_STREAMS = list(dict.fromkeys(stream for stream, _, _ in STATE_PARTS))


def _scalar(dtype: str) -> dict:
    return {"dtype": dtype, "shape": [1], "names": None}


def write(job: ExportJob, out: Path, progress, fps: int = 10, task: str = DEFAULT_TASK) -> dict:
    if int(fps) != fps or fps < 1:
        raise ExportError(f"--fps {fps}: LeRobot datasets have a whole number of frames per second (1 or more)")
    fps = int(fps)
    state_streams, cameras = _kept_streams(job, progress)
    if not state_streams and not cameras:
        raise ExportError("lerobot needs imu-left, imu-right, vio or a camera stream in every session; "
                          "none is exported")
    state_parts = [part for part in STATE_PARTS if part[0] in state_streams]
    out.mkdir(parents=True, exist_ok=True)
    dataset = Dataset(out, fps, state_parts, cameras)
    try:
        for session in sorted(job.sessions, key=lambda s: (s.serial, s.manifest.get("first_wall_time_ns") or 0)):
            dataset.add_episode(job, session, progress)
    finally:
        dataset.close()
    if not dataset.episodes:
        raise ExportError("no session has rows of every exported stream in the window: no episode to write")
    dataset.write_meta(task)
    return {"rows": {"frames": dataset.total_frames, "episodes": len(dataset.episodes)}, "files": dataset.files()}


def _kept_streams(job: ExportJob, progress) -> tuple[list[str], list[str]]:
    """The state streams and cameras every session exports; the rest are noted (and their rows
    counted as done on the progress bar)."""
    per_session = [set(job.streams(s)) for s in job.sessions]
    common = set.intersection(*per_session) if per_session else set()
    state = [s for s in STATE_STREAMS if s in common]
    cameras = sorted(s for s in common if all(mp4.is_camera(session, s) for session in job.sessions))
    kept = set(state) | set(cameras)
    left_out = set()
    for session in job.sessions:
        for stream in job.streams(session):
            if stream not in kept:
                left_out.add(stream)
                progress(int(((session.manifest.get("streams") or {}).get(stream) or {}).get("rows") or 0))
    if left_out:
        job.notes.append(f"lerobot holds IMU accel/gyro, VIO pose and cameras present in every session; "
                         f"not exported: {', '.join(sorted(left_out))}")
    return state, cameras


# -- the dataset ---------------------------------------------------------------------------------

@dataclass
class Dataset:
    out: Path
    fps: int
    state_parts: list[tuple[str, str, str]]
    cameras: list[str]
    episodes: list[dict] = field(default_factory=list)
    total_frames: int = 0
    data: DataFiles | None = None
    videos: dict[str, VideoFiles] = field(default_factory=dict)
    numeric: dict[str, list[np.ndarray]] = field(default_factory=dict)  # feature -> per-episode values
    pixels: dict[str, PixelStats] = field(default_factory=dict)  # video key -> whole-dataset histograms
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # video key -> (width, height), even

    def __post_init__(self):
        self.data = DataFiles(self.out)
        self.videos = {video_key(c): VideoFiles(self.out, video_key(c), self.fps) for c in self.cameras}

    def add_episode(self, job: ExportJob, session, progress) -> None:
        times = {}
        for stream in [*dict.fromkeys(p[0] for p in self.state_parts), *self.cameras]:
            parts = [t.column("time_ns").to_numpy() for t in job.rows(session, stream, columns=["timestamp_ns"])]
            times[stream] = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        empty = [s for s, t in times.items() if not len(t)]
        # The span where every stream has rows: from the latest first row to the earliest last one.
        first = max((int(t.min()) for t in times.values() if len(t)), default=0)
        last = min((int(t.max()) for t in times.values() if len(t)), default=-1)
        if empty or last < first:
            what = f"no rows of {', '.join(empty)}" if empty else "its streams' rows do not overlap"
            job.notes.append(f"{session.serial} {session.session_id}: left out ({what} in the window)")
            for stream in times:
                progress(len(times[stream]))
            return
        ticks = sync_table({(s, session.serial): t for s, t in times.items()}, self.fps, first, last + 1)
        nearest = {s: ticks.column(f"{s}.{session.serial}.row").to_numpy() for s in times}
        tick_ns = ticks.column("time_ns").to_numpy()
        length = len(tick_ns)
        index = len(self.episodes)
        frame_index = np.arange(length, dtype=np.int64)
        columns: dict[str, np.ndarray] = {}
        if self.state_parts:
            columns["observation.state"] = self._state(job, session, nearest, progress)
        columns.update({
            "timestamp": (frame_index / self.fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(length, index, np.int64),
            "index": self.total_frames + frame_index,
            "task_index": np.zeros(length, np.int64),
            "time_ns": tick_ns.astype(np.int64),
        })
        episode = {"episode_index": index, "length": length, "serial": session.serial,
                   "session_id": session.session_id, "start_time_ns": int(tick_ns[0]),
                   **self.data.add(columns), "dataset_from_index": self.total_frames,
                   "dataset_to_index": self.total_frames + length}
        stats = {name: numeric_stats(values) for name, values in columns.items()}
        for camera in self.cameras:
            key = video_key(camera)
            pixels = PixelStats()
            episode.update(self._video(job, session, camera, nearest[camera], length, pixels, progress))
            self.pixels.setdefault(key, PixelStats()).merge(pixels)
            stats[key] = pixels.stats()
        episode["stats"] = stats
        for name, values in columns.items():
            self.numeric.setdefault(name, []).append(values)
        self.episodes.append(episode)
        self.total_frames += length

    def _state(self, job, session, nearest, progress) -> np.ndarray:
        parts = []
        for stream in dict.fromkeys(p[0] for p in self.state_parts):
            wanted = [col for s, col, _ in self.state_parts if s == stream]
            read: dict[str, list[np.ndarray]] = {col: [] for col in wanted}
            for table in job.rows(session, stream, columns=wanted):
                for col in wanted:
                    values = table.column(col).combine_chunks()
                    read[col].append(values.flatten().to_numpy(zero_copy_only=False).reshape(len(values), -1))
                progress(table.num_rows)
            for col in wanted:
                parts.append(np.concatenate(read[col])[nearest[stream]].astype(np.float32))
        return np.ascontiguousarray(np.concatenate(parts, axis=1))

    def _video(self, job, session, camera, nearest, length, pixels, progress) -> dict:
        key = video_key(camera)
        self._set_size(job, session, camera)
        frames = TickFrames(nearest, pixels)
        video = self.videos[key]
        video.begin_episode(*self.sizes[key])
        scaled = 0
        frame_row = 0
        decoder: images.VideoDecoder | None = None
        start = mp4.CodedStart(None)
        started = False  # whether the decoder has had its first decodable frame
        waiting: list[int] = []  # rows fed to the decoder whose images it still holds
        try:
            for table in job.rows(session, camera, columns=mp4.CAMERA_COLUMNS, with_data=True):
                infos = table.select(mp4.CAMERA_COLUMNS).to_pylist()
                data = table.column("data")
                for i, info in enumerate(infos):
                    row, frame_row = frame_row, frame_row + 1
                    blob = data[i].as_buffer().to_pybytes()
                    if info["codec"] == images.RAW:
                        if decoder is not None:  # a change of codec: the coded frames' images first
                            scaled += self._drain(video, frames, decoder.flush(), waiting)
                            decoder = None
                        try:
                            image = images.raw_image(info, blob)
                        except images.FrameError as exc:
                            raise ExportError(f"{session.serial} {camera} frame {info['frame_number']}: {exc}") from None
                        scaled += video.encode_ticks(frames.take(row, image))
                        continue
                    if decoder is None or decoder.codec != info["codec"]:
                        if decoder is not None:
                            scaled += self._drain(video, frames, decoder.flush(), waiting)
                        decoder, start, started, waiting = images.VideoDecoder(info["codec"]), \
                            mp4.CodedStart(info["codec"]), False, []
                    if not started:
                        prefix = start.first_frame_prefix(blob)
                        if prefix is None:
                            continue  # not decodable: its ticks take the next frame that is
                        started, blob = True, prefix + blob
                    waiting.append(row)
                    try:
                        decoded = decoder.decode(blob)
                    except images.FrameError as exc:
                        raise ExportError(f"{session.serial} {camera} frame {info['frame_number']}: {exc}") from None
                    scaled += self._drain(video, frames, decoded, waiting)
                progress(table.num_rows)
            if decoder is not None:
                scaled += self._drain(video, frames, decoder.flush(), waiting)
            scaled += video.encode_ticks(frames.finish())
        except BaseException:
            video.abandon()
            raise
        if frames.emitted == 0:
            raise ExportError(f"{session.serial} {camera}: no frame in the window can be decoded; leave the camera "
                              f"out (--streams) or widen the window")
        if frames.emitted != length:
            raise ExportError(f"{session.serial} {camera}: {frames.emitted} video frames for {length} ticks")
        if frames.later:
            job.notes.append(f"{session.serial} {camera}: {frames.later} tick(s) show the next decodable frame "
                             f"(the nearest could not be decoded: no keyframe before it in the window)")
        if scaled:
            width, height = self.sizes[key]
            job.notes.append(f"{session.serial} {camera}: {scaled} frame(s) of another size scaled to {width}x{height}")
        return video.end_episode(length)

    def _drain(self, video, frames, decoded, waiting) -> int:
        scaled = 0
        for image in decoded:
            scaled += video.encode_ticks(frames.take(waiting.pop(0), image))
        return scaled

    def _set_size(self, job, session, camera) -> None:
        """The dataset's video size: the first episode's first frame's, made even for yuv420p."""
        if video_key(camera) in self.sizes:
            return
        first = next(iter(job.rows(session, camera, columns=["width", "height"])))
        width, height = int(first.column("width")[0].as_py()), int(first.column("height")[0].as_py())
        self.sizes[video_key(camera)] = (width + width % 2, height + height % 2)

    # -- metadata ----------------------------------------------------------------------------

    def files(self) -> int:
        return len(self.data.paths) + sum(len(v.paths) for v in self.videos.values()) + 4

    def close(self) -> None:
        self.data.close()
        for video in self.videos.values():
            video.close()

    def features(self) -> dict:
        features: dict[str, dict] = {}
        if self.state_parts:
            names = [f"{stream}.{col}.{axis}" for stream, col, axes in self.state_parts for axis in axes]
            features["observation.state"] = {"dtype": "float32", "shape": [len(names)], "names": names}
        for camera in self.cameras:
            key = video_key(camera)
            width, height = self.sizes[key]
            features[key] = {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
                             "info": self.videos[key].probe()}
        features.update({"timestamp": _scalar("float32"), "frame_index": _scalar("int64"),
                         "episode_index": _scalar("int64"), "index": _scalar("int64"),
                         "task_index": _scalar("int64"), "time_ns": _scalar("int64")})
        return features

    def write_meta(self, task: str) -> None:
        meta = self.out / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": ROBOT_TYPE,
            "total_episodes": len(self.episodes), "total_frames": self.total_frames, "total_tasks": 1,
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB,
            "fps": self.fps, "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": DATA_PATH, "video_path": VIDEO_PATH if self.cameras else None,
            "features": self.features(),
        }
        (meta / "info.json").write_text(json.dumps(info, indent=4) + "\n")
        stats = {name: numeric_stats(np.concatenate(parts)) for name, parts in self.numeric.items()}
        stats.update({key: pixels.stats() for key, pixels in self.pixels.items()})
        (meta / "stats.json").write_text(json.dumps(stats, indent=4) + "\n")
        write_tasks(meta / "tasks.parquet", [task])
        self._write_episodes(task)

    def _write_episodes(self, task: str) -> None:
        rows = []
        for episode in self.episodes:
            row = {k: v for k, v in episode.items() if k != "stats"}
            row["tasks"] = [task]
            row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
            for feature, values in episode["stats"].items():
                for stat, value in values.items():
                    row[f"stats/{feature}/{stat}"] = value
            rows.append(row)
        names = list(dict.fromkeys(name for row in rows for name in row))
        types = {"serial": pa.string(), "session_id": pa.string(), "tasks": pa.list_(pa.string())}
        for name in names:
            if name.endswith(("from_timestamp", "to_timestamp")):
                types[name] = pa.float64()
            elif name.startswith("stats/") and not name.endswith("/count"):
                types[name] = _nested_list(np.asarray(rows[0][name]).ndim, pa.float64())
            elif name.startswith("stats/"):
                types[name] = pa.list_(pa.int64())
            types.setdefault(name, pa.int64())
        table = pa.table({name: pa.array([row[name] for row in rows], types[name]) for name in names})
        path = self.out / EPISODES_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def video_key(camera: str) -> str:
    return f"observation.images.{camera}"


def _nested_list(depth: int, inner: pa.DataType) -> pa.DataType:
    for _ in range(depth):
        inner = pa.list_(inner)
    return inner


def write_tasks(path: Path, tasks: list[str]) -> None:
    """LeRobot reads tasks.parquet with pandas and looks a task up by the frame's task_index as
    its row, the task text as the row's index: the pandas metadata says "task" is that index."""
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}), path)


# -- stats ---------------------------------------------------------------------------------------

def numeric_stats(values: np.ndarray) -> dict:
    """LeRobot's per-feature stats over frames (axis 0): lists of the feature's shape ([1] for
    a scalar), count as [frames]."""
    array = values.reshape(len(values), -1).astype(np.float64)
    stats = {"min": array.min(axis=0), "max": array.max(axis=0), "mean": array.mean(axis=0), "std": array.std(axis=0)}
    for q, value in zip(QUANTILES, np.quantile(array, QUANTILES, axis=0), strict=True):
        stats[f"q{round(q * 100):02d}"] = value
    return {**{k: v.tolist() for k, v in stats.items()}, "count": [len(values)]}


@dataclass
class PixelStats:
    """Per-channel histograms of the RGB values the video's frames show (downsampled as LeRobot
    samples images for its stats): exact mean, std, min, max and quantiles, in [0, 1]."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros((3, 256), np.int64))
    frames: int = 0

    def add(self, image: np.ndarray) -> None:
        step = max(1, max(image.shape[:2]) // STATS_IMAGE_SIZE) if max(image.shape[:2]) >= 2 * STATS_IMAGE_SIZE else 1
        sample = image[::step, ::step]
        if sample.ndim == 2:
            self.counts += np.bincount(sample.ravel(), minlength=256)[None, :]
        else:
            offsets = np.arange(3, dtype=np.int64) * 256
            self.counts += np.bincount((sample.astype(np.int64) + offsets).ravel(), minlength=768).reshape(3, 256)
        self.frames += 1

    def merge(self, other: PixelStats) -> None:
        self.counts += other.counts
        self.frames += other.frames

    def stats(self) -> dict:
        levels = np.arange(256) / 255.0
        total = self.counts.sum(axis=1)
        mean = (self.counts * levels).sum(axis=1) / total
        std = np.sqrt(np.maximum((self.counts * levels**2).sum(axis=1) / total - mean**2, 0))
        seen = self.counts > 0
        low = levels[np.argmax(seen, axis=1)]
        high = levels[255 - np.argmax(seen[:, ::-1], axis=1)]
        cumulative = np.cumsum(self.counts, axis=1)
        per_channel = {"min": low, "max": high, "mean": mean, "std": std}
        for q in QUANTILES:
            per_channel[f"q{round(q * 100):02d}"] = levels[np.argmax(cumulative >= q * total[:, None], axis=1)]
        # LeRobot's image stats keep a (channels, 1, 1) shape, to broadcast over (C, H, W) frames.
        return {**{k: v.reshape(3, 1, 1).tolist() for k, v in per_channel.items()}, "count": [self.frames]}


# -- frames at the ticks -------------------------------------------------------------------------

@dataclass
class TickFrames:
    """Hands out each tick's image as the camera's frames arrive in capture order: tick k shows
    frame nearest[k]; a tick whose frame could not be decoded shows the next one that could."""

    nearest: np.ndarray  # per tick, the row of the camera frame nearest to it
    pixels: PixelStats
    next_tick: int = 0
    emitted: int = 0
    later: int = 0
    last: np.ndarray | None = None

    def take(self, row: int, image: np.ndarray) -> list[tuple[int, np.ndarray]]:
        self.last = image
        due = []
        while self.next_tick < len(self.nearest) and self.nearest[self.next_tick] <= row:
            self.later += int(self.nearest[self.next_tick] < row)
            due.append((self.next_tick, image))
            self.next_tick += 1
        return self._counted(due)

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """Ticks whose frames came after the last decoded one (the decoder held none back)."""
        due = [] if self.last is None else [(k, self.last) for k in range(self.next_tick, len(self.nearest))]
        self.next_tick = len(self.nearest)
        return self._counted(due)

    def _counted(self, due):
        for _, image in due:
            self.pixels.add(image)
        self.emitted += len(due)
        return due


@dataclass
class VideoFiles:
    """One camera's videos: every episode's frames in one file, pts = frames before it, until a
    file passes VIDEO_FILE_MB; then the next episode starts the next file."""

    out: Path
    key: str
    fps: int
    paths: list[Path] = field(default_factory=list)
    container: av.container.OutputContainer | None = None
    stream: av.video.stream.VideoStream | None = None
    frames_in_file: int = 0
    episode_first: int = 0
    size: tuple[int, int] = (0, 0)

    def begin_episode(self, width: int, height: int) -> None:
        if self.container is not None and self.paths[-1].stat().st_size >= VIDEO_FILE_MB * 1e6:
            self.close()
        if self.container is None:
            n = len(self.paths)
            path = self.out / VIDEO_PATH.format(video_key=self.key, chunk_index=n // CHUNKS_SIZE,
                                                file_index=n % CHUNKS_SIZE)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(path), "w", format="mp4")
            self.stream = self.container.add_stream("libx264", rate=self.fps)
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
            self.stream.time_base = self.stream.codec_context.time_base = Fraction(1, self.fps)
            self.stream.options = {"crf": mp4.CRF, "preset": mp4.PRESET, "bf": "0", "g": KEYFRAME_INTERVAL}
            # Gray and RGB pixels become yuv420p through swscale's BT.601 limited range: say so.
            self.stream.codec_context.colorspace = mp4.COLORSPACE_BT601
            self.stream.codec_context.color_range = mp4.RANGE_LIMITED
            self.paths.append(path)
            self.frames_in_file = 0
            self.size = (width, height)
        self.episode_first = self.frames_in_file

    def encode_ticks(self, due: list[tuple[int, np.ndarray]]) -> int:
        """Encodes the ticks' images; returns how many had to be scaled to the video's size."""
        scaled = 0
        width, height = self.size
        for _, image in due:
            h, w = image.shape[:2]
            if (w, h) != (width, height) and (w + w % 2, h + h % 2) == (width, height):
                spread = ((0, height - h), (0, width - w)) + (((0, 0),) if image.ndim == 3 else ())
                image = np.pad(image, spread, mode="edge")  # yuv420p needs even sizes
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="gray" if image.ndim == 2 else "rgb24")
            if (w + w % 2, h + h % 2) != (width, height):
                frame = frame.reformat(width=width, height=height)
                scaled += 1
            frame.pts = self.frames_in_file
            frame.time_base = Fraction(1, self.fps)  # the stream's own changes to the muxer's once it writes
            self.container.mux(self.stream.encode(frame))
            self.frames_in_file += 1
        return scaled

    def end_episode(self, length: int) -> dict:
        n = len(self.paths) - 1
        return {f"videos/{self.key}/chunk_index": n // CHUNKS_SIZE, f"videos/{self.key}/file_index": n % CHUNKS_SIZE,
                f"videos/{self.key}/from_timestamp": self.episode_first / self.fps,
                f"videos/{self.key}/to_timestamp": (self.episode_first + length) / self.fps}

    def close(self) -> None:
        if self.container is not None:
            self.container.mux(self.stream.encode(None))
            self.container.close()
            self.container = None

    def abandon(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except (av.error.FFmpegError, ValueError):
                pass  # the export fails anyway and its partial output is removed
            self.container = None

    def probe(self) -> dict:
        """What LeRobot's get_video_info records, read from the first file."""
        with av.open(str(self.paths[0])) as container:
            stream = container.streams.video[0]
            return {"video.height": stream.height, "video.width": stream.width,
                    "video.codec": stream.codec_context.codec.canonical_name, "video.pix_fmt": stream.pix_fmt,
                    "video.is_depth_map": False, "video.fps": int(stream.base_rate), "video.channels": 3,
                    "has_audio": False, "is_depth_map": False}


@dataclass
class DataFiles:
    """Every episode's frames in one data file, until it passes DATA_FILE_MB."""

    out: Path
    paths: list[Path] = field(default_factory=list)
    writer: pq.ParquetWriter | None = None

    def add(self, columns: dict[str, np.ndarray]) -> dict:
        table = pa.table({name: _column(values) for name, values in columns.items()})
        if self.writer is not None and self.paths[-1].stat().st_size >= DATA_FILE_MB * 1e6:
            self.close()
        if self.writer is None:
            n = len(self.paths)
            path = self.out / DATA_PATH.format(chunk_index=n // CHUNKS_SIZE, file_index=n % CHUNKS_SIZE)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, table.schema, compression="snappy")
            self.paths.append(path)
        self.writer.write_table(table)  # a row group per episode, as LeRobot writes
        n = len(self.paths) - 1
        return {"data/chunk_index": n // CHUNKS_SIZE, "data/file_index": n % CHUNKS_SIZE}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _column(values: np.ndarray) -> pa.Array:
    if values.ndim == 1:
        return pa.array(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
