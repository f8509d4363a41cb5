"""One recorded device session, read from Python: tables, camera frames, audio, clocks.

    import recorder
    with recorder.open_session("data/1M0YDB6H7Y0110/597b9aec-...") as s:
        s.streams()                                   # ['barometer', 'camera-rgb', 'imu-left', ...]
        imu = s.table("imu-left", columns=["timestamp_ns", "accel_msec2"])
        info, image = s.frame("camera-rgb", 0)        # decoded, whatever the codec
        t = s.to_broadcaster_time(imu["timestamp_ns"].to_numpy())

Clocks: `timestamp_ns` columns are the device's own capture clock (int64 nanoseconds, the
wire format's timestamps); `to_broadcaster_time` maps them onto the clock of the device that
broadcasts the time domain mapping, shared by every device of a multi-device recording;
`*_wall_time_ns` values are the recorder's wall clock (nanoseconds since 1970) when data
arrived. Units of every stored field are in its Arrow field metadata (`recorder.unit`) and in
schemas/messages.md.

Works on finished sessions and on sessions being written: the part being written is read up to
its last flushed batch. Each call reads the files afresh, except the index of a camera or audio
stream, which frame() and blob() keep after their first call.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..storage import layout, requestlog
from ..storage.blobfile import read_back_to_back, read_frame, read_frames
from ..storage.calibration import parse as parse_calibration
from ..storage.manifest import TDM_STREAM
from ..storage.parts import sort_rows
from ..storage.timemap import to_broadcaster_time
from ..wire.rules import PCM_BYTES_PER_SAMPLE
from . import columns as column_choice
from . import images
from .streams import RangeReader, read_batches, stream_schema
from .timedomain import Broadcaster, find_broadcaster

LOCATION = ("file", "offset", "length", "size")
PCM_DTYPES = {code: np.dtype("<i2" if bytes_per_sample == 2 else "<i4")  # audio codec -> sample type
              for code, bytes_per_sample in PCM_BYTES_PER_SAMPLE.items()}

__all__ = ["RawBody", "Session", "open_session"]


@dataclass
class RawBody:
    """A request body that was not version 1: replay `chunks` in order with `headers`."""

    request: int
    headers: dict[str, str | bytes]  # as received; oatmeal-calibration as the bytes received
    remote: str
    chunks: list[bytes]
    arrival_ns: list[int]  # the recorder's wall clock when each chunk arrived

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class Session:
    """A device session folder (`<data-dir>/<serial>/<session-id>/`) opened for reading."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no session folder at {self.path}")
        if not layout.is_session_folder(self.path):
            raise ValueError(f"{self.path} is not a session folder: expected <data-dir>/<serial>/<session-id>/ "
                             f"holding {layout.MANIFEST} and stream folders, as `recorder serve` writes them")
        try:
            self.manifest: dict = json.loads((self.path / layout.MANIFEST).read_bytes())
        except (FileNotFoundError, ValueError):
            self.manifest = {}  # a crash before the first manifest: the streams are still readable
        self._indexes: dict[str, pa.Table] = {}
        self._files: dict[Path, object] = {}

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __repr__(self) -> str:
        return f"<recorder session {self.serial}/{self.session_id} ({self.manifest.get('state', 'no manifest')})>"

    @property
    def serial(self) -> str:
        """The device's serial (from the device-serial header)."""
        return self.manifest.get("serial") or self.path.parent.name

    @property
    def session_id(self) -> str:
        return self.manifest.get("session_id") or self.path.name

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
        """The names of the streams that hold rows, sorted. A live file a crash (or a reader
        racing the writer) caught before its schema was written holds none yet."""
        return [name for name, folder in layout.stream_folders(self.path).items()
                if layout.parts(folder) or (layout.lives(folder) and stream_schema(folder) is not None)]

    def schema(self, stream: str) -> pa.Schema:
        """The stored schema of a stream: every column, with unit, description and enum labels
        as field metadata."""
        schema = stream_schema(self._folder(stream))
        if schema is None:
            raise KeyError(f"stream {stream!r} holds no rows yet")
        return schema

    def columns(self, stream: str) -> list[str]:
        """The columns table() gives by default: all but reserved fields, with a `<name>_label`
        column after each enumerated code."""
        return column_choice.default_columns(self.schema(stream))

    def table(self, stream: str, columns: list[str] | None = None, start_ns: int | None = None,
              end_ns: int | None = None) -> pa.Table:
        """Rows of a stream sorted by timestamp_ns then sequence, with start_ns <= timestamp_ns
        < end_ns (device clock; raw bodies: arrival wall clock). Only `columns` are read
        (default: columns()); reserved fields are read when named."""
        schema = self.schema(stream)
        wanted = column_choice.default_columns(schema) if columns is None else list(columns)
        stored = column_choice.stored_columns(schema, wanted)
        sort_keys = [k for k in ("timestamp_ns", "sequence", "request", "chunk") if k in schema.names]
        read = stored + [k for k in sort_keys if k not in stored]
        batches = list(read_batches(self._folder(stream), schema, read, start_ns, end_ns))
        table = pa.Table.from_batches(batches, schema=batches[0].schema) if batches else \
            pa.schema([schema.field(n) for n in read], metadata=schema.metadata).empty_table()
        return column_choice.finish(sort_rows(table), wanted)

    def batches(self, stream: str, columns: list[str] | None = None, start_ns: int | None = None,
                end_ns: int | None = None, batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
        """The same rows as table(), as record batches read one stored part at a time, for
        streams larger than memory. Each part's rows are in capture order; parts follow one
        another in the order they were written (a resend after a reconnect can make a later
        part start before an earlier one ends)."""
        schema = self.schema(stream)
        wanted = column_choice.default_columns(schema) if columns is None else list(columns)
        stored = column_choice.stored_columns(schema, wanted)
        for batch in read_batches(self._folder(stream), schema, stored, start_ns, end_ns, batch_rows):
            yield from column_choice.finish(pa.Table.from_batches([batch]), wanted).to_batches()

    def range_reader(self, stream: str, columns: list[str] | None = None) -> RangeReader:
        """A reader of consecutive time ranges of a stream (`read(start_ns, end_ns)`, stored
        columns only) that decodes each stored row group once while the ranges move forward:
        what a replay reads with. The stream's files are listed when it is made."""
        schema = self.schema(stream)
        return RangeReader(self._folder(stream), schema, schema.names if columns is None else list(columns))

    def _folder(self, stream: str) -> Path:
        folder = self.path / stream
        if stream.startswith((".", "_")) or not folder.is_dir():
            raise KeyError(f"no stream {stream!r} in {self.path} (streams: {', '.join(self.streams())})")
        return folder

    # -- clocks -------------------------------------------------------------------------------

    def tdm(self) -> pa.Table:
        """The time domain mapping samples (with offset_ns); empty if the device reported none."""
        if TDM_STREAM not in self.streams():
            return pa.table({"capture_timestamp_ns": pa.array([], pa.int64()), "offset_ns": pa.array([], pa.int64())})
        return self.table(TDM_STREAM)

    def to_broadcaster_time(self, t_ns) -> np.ndarray:
        """Device times (int64 ns) on the broadcaster's clock: interpolated through this device's
        time domain mapping samples, or returned unchanged when the device reported none (it is
        the broadcaster, or unsynchronised: `broadcaster` tells which, when it can)."""
        tdm = self.tdm()
        if not tdm.num_rows:
            return np.asarray(t_ns, np.int64).copy()
        return to_broadcaster_time(t_ns, tdm.column("capture_timestamp_ns").to_numpy(),
                                   tdm.column("offset_ns").to_numpy())

    @property
    def broadcaster(self) -> Broadcaster:
        """Whose clock the time domain mapping is on: this session's role (receiver, broadcaster,
        or broadcaster_or_unsynchronised when nothing can tell), the broadcaster_id its samples
        name, and the broadcaster's serial when a session in the same data folder shows it."""
        return find_broadcaster(self.path, self.manifest)

    # -- blobs --------------------------------------------------------------------------------

    def _index(self, stream: str) -> pa.Table:
        if stream not in self._indexes:
            self._indexes[stream] = self.table(stream, columns=self.schema(stream).names)
        return self._indexes[stream]

    def _open(self, path: Path):
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = open(path, "rb")
        return f

    def blob(self, stream: str, i: int) -> bytes:
        """The stored bytes of row i of a camera, audio, verbatim or raw-body stream (rows
        sorted as table() sorts them)."""
        index = self._index(stream)
        if not 0 <= i < index.num_rows:
            raise IndexError(f"{stream} has {index.num_rows} rows, no row {i}")
        row = index.slice(i, 1).select(list(LOCATION)).to_pylist()[0]
        return read_frame(self._open(self.path / stream / row["file"]), row["offset"], row["length"])

    def blobs(self, stream: str, first: int, stop: int) -> list[bytes]:
        """The stored bytes of rows first to stop - 1, as blob() gives them one by one: rows
        next to each other in a file are read with one read."""
        index = self._index(stream)
        if not 0 <= first <= stop <= index.num_rows:
            raise IndexError(f"{stream} has {index.num_rows} rows, not rows {first} to {stop - 1}")
        rows = index.slice(first, stop - first)
        files = rows.column("file").to_pylist()
        offsets, lengths = rows.column("offset").to_numpy(), rows.column("length").to_numpy()
        out: list[bytes] = [b""] * len(files)
        for name in dict.fromkeys(files):
            where = np.flatnonzero(np.array(files, dtype=object) == name)
            for k, data in zip(where, read_frames(self._open(self.path / stream / name), offsets[where],
                                                  lengths[where]), strict=True):
                out[k] = data
        return out

    def blob_array(self, stream: str, first: int, stop: int) -> pa.BinaryArray:
        """blobs() as one Arrow binary array. Rows whose frames lie back to back in one file
        (rows in the order they were written, the usual case) are decompressed in one call into
        one buffer, without a Python object per frame."""
        index = self._index(stream)
        rows = index.slice(first, stop - first)
        files = rows.column("file").unique()
        offsets, lengths = rows.column("offset").to_numpy(), rows.column("length").to_numpy()
        sizes = rows.column("size").to_numpy()
        back_to_back = len(files) == 1 and bool(np.all(offsets[1:] == offsets[:-1] + lengths[:-1]))
        if not back_to_back or not len(offsets):
            return pa.array(self.blobs(stream, first, stop), pa.binary())
        data = read_back_to_back(self._open(self.path / stream / files[0].as_py()), offsets, lengths, sizes)
        if len(data) != int(sizes.sum()):
            return pa.array(self.blobs(stream, first, stop), pa.binary())
        ends = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
        return pa.BinaryArray.from_buffers(pa.binary(), len(sizes), [None, pa.py_buffer(ends), pa.py_buffer(data)])

    def frame(self, stream: str, i: int) -> tuple[dict, np.ndarray]:
        """Camera frame i: its prefix fields (and time, sequence, label) and its image, decoded
        (see recorder.reading.images): GRAY8 height x width uint8, any other height x width x 3
        RGB uint8. An H.264/H.265 frame is decoded from the keyframe before it."""
        info = self._frame_info(stream, i)
        if info["codec"] == images.RAW:
            return info, images.raw_image(info, self.blob(stream, i))
        first = self._keyframe_at_or_before(stream, i, info["codec"])
        decoder = images.VideoDecoder(info["codec"])
        decoded: list[np.ndarray] = []
        for j in range(first, i + 1):
            decoded += decoder.decode(self.blob(stream, j))
        if len(decoded) <= i - first:
            decoded += decoder.flush()
        if len(decoded) <= i - first:
            raise images.FrameError(f"{stream} frame {i} did not decode (from keyframe {first}: "
                                    f"{len(decoded)} images for {i - first + 1} frames)")
        return info, decoded[i - first]

    def frames(self, stream: str, start_ns: int | None = None,
               end_ns: int | None = None) -> Iterator[tuple[dict, np.ndarray]]:
        """Every camera frame with start_ns <= timestamp_ns < end_ns, decoded as frame() does,
        one decoder pass for the whole range."""
        times = self._index(stream).column("timestamp_ns").to_numpy()
        wanted = 0 if start_ns is None else int(np.searchsorted(times, start_ns, "left"))
        stop = len(times) if end_ns is None else int(np.searchsorted(times, end_ns, "left"))
        first = wanted
        if wanted < stop:
            codec = self._frame_info(stream, wanted)["codec"]
            if codec != images.RAW:
                first = self._keyframe_at_or_before(stream, wanted, codec)
        decoder: images.VideoDecoder | None = None
        waiting: list[tuple[int, dict]] = []  # frames fed whose images the decoder still holds
        for i in range(first, stop):
            info = self._frame_info(stream, i)
            data = self.blob(stream, i)
            if info["codec"] == images.RAW:
                yield info, images.raw_image(info, data)
                continue
            if decoder is None or decoder.codec != info["codec"]:
                decoder = images.VideoDecoder(info["codec"])
            waiting.append((i, info))
            for image in decoder.decode(data):
                row, shown = waiting.pop(0)
                if row >= wanted:
                    yield shown, image
        for image in decoder.flush() if decoder is not None else []:
            row, shown = waiting.pop(0)
            if row >= wanted:
                yield shown, image

    def _frame_info(self, stream: str, i: int) -> dict:
        index = self._index(stream)
        if "codec" not in index.column_names or "width" not in index.column_names:
            raise KeyError(f"{stream} is not a camera stream")
        if not 0 <= i < index.num_rows:
            raise IndexError(f"{stream} has {index.num_rows} frames, no frame {i}")
        return {k: v for k, v in index.slice(i, 1).to_pylist()[0].items() if k not in LOCATION}

    def _keyframe_at_or_before(self, stream: str, i: int, codec: int) -> int:
        for j in range(i, -1, -1):
            if images.is_keyframe(codec, self.blob(stream, j)):
                return j
        raise images.FrameError(f"{stream} has no keyframe at or before frame {i}: it cannot be decoded")

    # -- audio --------------------------------------------------------------------------------

    def audio(self, stream: str = "mic") -> tuple[np.ndarray, int, int]:
        """All PCM blocks back to back: (samples x channels int array, sample rate in Hz,
        timestamp_ns of the first sample on the device clock). Blocks missing from the session
        are not filled in: the table's timestamp_ns says when each block began."""
        table = self._index(stream)
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
        pcm = np.frombuffer(self._all_blobs(stream, table), PCM_DTYPES[codec]).reshape(-1, channels)
        return pcm, rate, table.column("timestamp_ns")[0].as_py()

    def _all_blobs(self, stream: str, table: pa.Table) -> bytes:
        """Every row's bytes in table order: the rows of each file in one call when their frames
        lie back to back in table order (the usual case), else frame by frame."""
        files = table.column("file").to_pylist()
        offsets, lengths, sizes = (table.column(c).to_numpy() for c in ("offset", "length", "size"))
        pieces, start = [], 0
        for name, count in _runs(files):
            rows = slice(start, start + count)
            start += count
            file = self._open(self.path / stream / name)
            o, n, z = offsets[rows], lengths[rows], sizes[rows]
            if np.all(o[1:] == o[:-1] + n[:-1]):
                data = read_back_to_back(file, o, n, z)
                if len(data) == int(z.sum()):
                    pieces.append(data)
                    continue
            pieces += read_frames(file, o, n)
        return b"".join(pieces)

    # -- requests and raw bodies --------------------------------------------------------------

    def requests(self) -> list[dict]:
        """requests.jsonl: per request its begin line with `end` holding its end line."""
        return [r for _, r in sorted(requestlog.requests(self.path).items())]

    def raw_bodies(self) -> list[RawBody]:
        """Bodies that were not version 1, ready to replay byte for byte with their chunking."""
        if layout.RAW_BODY_STREAM not in self.streams():
            return []
        table = self._index(layout.RAW_BODY_STREAM)
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


def _runs(values: list) -> list[tuple[object, int]]:
    """Consecutive equal values as (value, how many)."""
    return [(value, len(list(group))) for value, group in itertools.groupby(values)]


def open_session(path: str | Path) -> Session:
    """Open a recorded device session folder for reading (a context manager that closes the
    files it opened)."""
    return Session(Path(path))

