"""Reading a session folder from Python: tables, camera frames, audio, time mapping, raw bodies.

    import recorder
    with recorder.open_session("data/1M0YDB6H7Y0110/597b9aec-...") as s:
        s.streams()                       # ['barometer', 'camera-rgb', 'imu-left', ...]
        imu = s.table("imu-left")         # pyarrow.Table, sorted by timestamp_ns then sequence
        info, image = s.frame("slam-front-left", 0)
        pcm, rate, t0 = s.audio()
        s.to_broadcaster_time(imu["timestamp_ns"].to_numpy())

Works on finished sessions and on sessions being written (live parts are read up to their last
flushed batch). A reader caches each stream's table the first time it is asked for, so it is a
snapshot; open a new reader to see newer data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import layout, requestlog
from .blobfile import read_all, read_frame
from .calibration import parse as parse_calibration
from .manifest import TDM_STREAM
from .parts import sort_rows
from .streamfiles import read_stream
from .timemap import to_broadcaster_time

LOCATION = ("file", "offset", "length", "size")
RAW, GRAY8, RGB24 = 0, 0, 1
PCM_DTYPES = {0: np.dtype("<i2"), 1: np.dtype("<i4")}  # audio codec -> sample type


@dataclass
class RawBody:
    """A request body that was not version 1: replay `chunks` in order with `headers`."""

    request: int
    headers: dict[str, str | bytes]  # as received; oatmeal-calibration as the bytes received
    remote: str
    chunks: list[bytes]
    arrival_ns: list[int]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class SessionReader:
    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no session folder at {self.path}")
        try:
            self.manifest: dict = json.loads((self.path / layout.MANIFEST).read_bytes())
        except (FileNotFoundError, ValueError):
            self.manifest = {}
        self._tables: dict[str, pa.Table] = {}
        self._files: dict[Path, object] = {}

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    # -- calibration --------------------------------------------------------------------------

    @property
    def calibration_bytes(self) -> bytes | None:
        """calibration.json exactly as the first request's header carried it (None if none)."""
        try:
            return (self.path / layout.CALIBRATION).read_bytes()
        except FileNotFoundError:
            return None

    @property
    def calibration(self) -> dict | None:
        """The first calibration parsed, or None (no header, or one that is not JSON)."""
        data = self.calibration_bytes
        return None if data is None else parse_calibration(data)[0]

    def calibrations(self) -> list[tuple[dict, bytes]]:
        """Every distinct calibration the session received, with its manifest entry, in order."""
        entries = (self.manifest.get("calibration") or {}).get("all", [])
        return [(e, (self.path / e["file"]).read_bytes()) for e in entries]

    # -- tables -------------------------------------------------------------------------------

    def streams(self) -> list[str]:
        return [name for name, folder in layout.stream_folders(self.path).items()
                if layout.parts(folder) or layout.lives(folder)]

    def table(self, stream: str) -> pa.Table:
        """Every row of a stream, finished and live parts, sorted by timestamp_ns then sequence."""
        if stream not in self._tables:
            folder = self.path / stream
            if not folder.is_dir():
                raise KeyError(f"no stream {stream!r} in {self.path} (streams: {', '.join(self.streams())})")
            table = read_stream(folder)
            if table is None:
                raise KeyError(f"stream {stream!r} holds no rows yet")
            self._tables[stream] = sort_rows(table)
        return self._tables[stream]

    def tdm(self) -> pa.Table:
        """The time domain mapping samples (with offset_ns); empty if the device reported none."""
        if TDM_STREAM not in self.streams():
            return pa.table({"capture_timestamp_ns": pa.array([], pa.int64()), "offset_ns": pa.array([], pa.int64())})
        return self.table(TDM_STREAM)

    def to_broadcaster_time(self, t_ns) -> np.ndarray:
        """This device's times on the broadcaster's clock (wire-format.md, "Time domain mapping")."""
        tdm = self.tdm()
        return to_broadcaster_time(t_ns, tdm.column("capture_timestamp_ns").to_numpy(),
                                   tdm.column("offset_ns").to_numpy())

    # -- blobs --------------------------------------------------------------------------------

    def _open(self, path: Path):
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = open(path, "rb")
        return f

    def blob(self, stream: str, i: int) -> bytes:
        """The stored bytes of row i of a blob, verbatim or raw-body stream (sorted as table())."""
        row = self.table(stream).slice(i, 1).select(list(LOCATION)).to_pylist()
        if not row:
            raise IndexError(f"{stream} has {self.table(stream).num_rows} rows, no row {i}")
        row = row[0]
        return read_frame(self._open(self.path / stream / row["file"]), row["offset"], row["length"])

    def frame(self, stream: str, i: int) -> tuple[dict, np.ndarray]:
        """Camera frame i: its prefix fields (and time, sequence, label) and its image. RAW GRAY8
        is height x width uint8, RGB24 height x width x 3; anything else (JPEG, H.264/5, YUV420P)
        the bytes as they came, 1-D uint8. Reads one zstd frame, not the file."""
        table = self.table(stream)
        if not 0 <= i < table.num_rows:
            raise IndexError(f"{stream} has {table.num_rows} frames, no frame {i}")
        info = {k: v for k, v in table.slice(i, 1).to_pylist()[0].items() if k not in LOCATION}
        return info, decode_image(info, self.blob(stream, i))

    def frames(self, stream: str) -> Iterator[tuple[dict, np.ndarray]]:
        for i in range(self.table(stream).num_rows):
            yield self.frame(stream, i)

    def audio(self, stream: str = "mic") -> tuple[np.ndarray, int, int]:
        """All PCM blocks back to back: (samples x channels int array, sample rate, timestamp_ns of
        the first sample). Blocks missing from the session are not filled in: the table's
        timestamp_ns says when each block began."""
        table = self.table(stream)
        if not table.num_rows:
            raise ValueError(f"{stream} holds no audio")
        for column in ("codec", "channels", "sample_rate_hz"):
            if len(set(table.column(column).to_pylist())) != 1:
                raise ValueError(f"{stream}: {column} changes during the session; read blocks with blob()")
        codec = table.column("codec")[0].as_py()
        if codec not in PCM_DTYPES:
            raise ValueError(f"{stream} is not PCM (codec {codec}); read its packets with blob()")
        channels = table.column("channels")[0].as_py()
        rate = table.column("sample_rate_hz")[0].as_py()
        data = self._all_blobs(stream, table)
        pcm = np.frombuffer(data, PCM_DTYPES[codec]).reshape(-1, channels)
        return pcm, rate, table.column("timestamp_ns")[0].as_py()

    def _all_blobs(self, stream: str, table: pa.Table) -> bytes:
        """Every row's bytes in table order: whole files at once when the rows are in the order
        they were written (the usual case), else frame by frame."""
        files = table.column("file").to_pylist()
        offsets = table.column("offset").to_numpy()
        sizes = table.column("size").to_numpy()
        written_order = all(a <= b for a, b in zip(files, files[1:], strict=False)) and bool(
            np.all((np.diff(offsets) > 0) | (np.array(files[1:]) != np.array(files[:-1]))))
        if written_order:
            data = b"".join(read_all(self.path / stream / f) for f in dict.fromkeys(files))
            if len(data) == int(sizes.sum()):
                return data
        return b"".join(self.blob(stream, i) for i in range(table.num_rows))

    # -- requests and raw bodies --------------------------------------------------------------

    def requests(self) -> list[dict]:
        """requests.jsonl: per request its begin line with `end` holding its end line."""
        return [r for _, r in sorted(requestlog.requests(self.path).items())]

    def raw_bodies(self) -> list[RawBody]:
        """Bodies that were not version 1, ready to replay byte for byte with their chunking."""
        if layout.RAW_BODY_STREAM not in self.streams():
            return []
        table = self.table(layout.RAW_BODY_STREAM)
        logged = requestlog.requests(self.path)
        bodies = []
        requests = table.column("request").to_numpy()
        for request in np.unique(requests).tolist():
            rows = np.flatnonzero(requests == request)
            begin = logged.get(request, {})
            headers: dict[str, str | bytes] = dict(begin.get("headers") or {})
            if begin.get("calibration"):
                headers["oatmeal-calibration"] = (self.path / begin["calibration"]).read_bytes()
            bodies.append(RawBody(
                request=request, headers=headers, remote=begin.get("remote", ""),
                chunks=[self.blob(layout.RAW_BODY_STREAM, int(i)) for i in rows],
                arrival_ns=table.column("wall_time_ns").take(pa.array(rows)).to_pylist()))
        return bodies


def decode_image(info: dict, data: bytes) -> np.ndarray:
    pixels = np.frombuffer(data, np.uint8)
    if info.get("codec") != RAW:
        return pixels
    width, height, stride = info["width"], info["height"], info["stride_bytes"]
    if info["pixel_format"] == GRAY8 and stride >= width:
        return pixels.reshape(height, stride)[:, :width]
    if info["pixel_format"] == RGB24 and stride >= 3 * width:
        return pixels.reshape(height, stride)[:, :3 * width].reshape(height, width, 3)
    return pixels


def open_session(path) -> SessionReader:
    return SessionReader(Path(path))
