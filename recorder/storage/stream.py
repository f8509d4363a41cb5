"""One stream of one session being written: rows into a live file, blobs into a blob file, and
both rolled into a finished Parquet part now and then.

Rows wait in memory until flush() (the server flushes at least every second), then go to the
live IPC file as one batch. A blob's bytes go to the blob file at once; its index row waits
with the other rows, so by the time a row is in the live file its bytes are already there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from . import layout
from .blobfile import BlobFile
from .compression import BLOB_ZSTD_LEVEL
from .files import fsync_dir
from .livefile import LiveFile
from .parts import finish_live

MAX_PENDING_BYTES = 16 << 20  # rows held between flushes; more than this is written early


@dataclass
class StreamStats:
    """What a stream holds so far: rows, device time range and bytes on disk."""

    kind: str  # samples, blob, verbatim, raw
    message: str  # the message (or prefix) name the rows follow
    rows: int = 0
    first_timestamp_ns: int | None = None
    last_timestamp_ns: int | None = None
    bytes: int = 0  # finished parts, the live file and blob files
    parts: int = 0  # finished Parquet parts
    blob_bytes: int = 0  # of which zstd blob files
    extra: dict = field(default_factory=dict)  # per-kind summaries (TDM offsets, frame counts)

    def see_times(self, column) -> None:
        """Widen the time range by an Arrow column of times (nulls ignored)."""
        if column is None or not len(column) or column.null_count == len(column):
            return
        if column.null_count:
            lo, hi = (v.as_py() for v in pc.min_max(column).values())
        else:
            values = column.to_numpy()
            lo, hi = int(values.min()), int(values.max())
        self.see_range(lo, hi)

    def see_range(self, lo: int, hi: int) -> None:
        self.first_timestamp_ns = lo if self.first_timestamp_ns is None else min(self.first_timestamp_ns, lo)
        self.last_timestamp_ns = hi if self.last_timestamp_ns is None else max(self.last_timestamp_ns, hi)

    def as_dict(self) -> dict:
        out = {"kind": self.kind, "message": self.message, "rows": self.rows,
               "first_timestamp_ns": self.first_timestamp_ns, "last_timestamp_ns": self.last_timestamp_ns,
               "bytes": self.bytes, "parts": self.parts, "blob_bytes": self.blob_bytes}
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> StreamStats:
        known = {"kind", "message", "rows", "first_timestamp_ns", "last_timestamp_ns", "bytes", "parts", "blob_bytes"}
        return cls(**{k: d[k] for k in known if k in d}, extra={k: v for k, v in d.items() if k not in known})


@dataclass(frozen=True)
class RollPolicy:
    seconds: float = 600.0
    bytes: int = 256 << 20
    sync: bool = True  # fsync on flush and before renames (power loss); kill -9 needs only write()
    blob_level: int = BLOB_ZSTD_LEVEL
    raw_images: str = "auto"  # or "compress", "store": see compression.RawImageMode


class StreamWriter:
    def __init__(self, folder: Path, schema: pa.Schema, stats: StreamStats, policy: RollPolicy):
        self.folder = folder
        self.schema = schema
        self.stats = stats
        self.policy = policy
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows: list[dict] = []  # index rows of blobs, made a batch at flush
        self._pending_bytes = 0
        self._number: int | None = None  # the part being written, chosen when it starts
        self._live: LiveFile | None = None
        self._blobs: BlobFile | None = None
        # Names made since the last flush whose folder entries are not yet durable (POSIX asks
        # for an fsync of the folder as well as of the new file): the stream folder's own name
        # in the session folder, a new live or blob file's in the stream folder.
        self._new_folder = False
        self._new_files = False
        self._started = 0.0
        self._closed_bytes = stats.bytes  # parts and blob files finished before this part
        # Told each batch of rows once flush() has put it in the files (the server's live feed
        # publishes the very batch stored, instead of building it again).
        self.on_written = None

    # -- writing ------------------------------------------------------------------------------

    def _start_part(self) -> int:
        if self._number is None:
            if not self.folder.is_dir():
                self.folder.mkdir(parents=True, exist_ok=True)
                self._new_folder = True
            self._number = layout.next_number(self.folder)
            self._started = time.monotonic()
        return self._number

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self._start_part()
        self._pending.append(batch)
        self._pending_bytes += batch.get_total_buffer_size()  # nbytes walks every buffer's ranges: slow
        self.stats.rows += batch.num_rows
        if "timestamp_ns" in batch.schema.names:
            self.stats.see_times(batch.column("timestamp_ns"))
        if self._pending_bytes > MAX_PENDING_BYTES:
            self.flush()

    def add_blob(self, data, row: dict, level: int | None = None, row_bytes: int | None = None) -> bytes:
        """Store one blob's bytes now (at zstd `level`, or the policy's; `row_bytes`: an image's
        row length, its rows filtered first), and its index row (`row` plus where the bytes went)
        with the next flush; returns the frame the bytes were stored as."""
        number = self._start_part()
        if self._blobs is None:
            self._blobs = BlobFile(self.folder / layout.blob_name(number), level=self.policy.blob_level)
            self._new_files = True
        offset, frame = self._blobs.append(data, level, row_bytes)
        length = len(frame)
        self.stats.blob_bytes += length
        row.update(file=layout.blob_name(number), offset=offset, length=length, size=len(data))
        self._pending_rows.append(row)
        self._pending_bytes += 256 + len(row.get("detail") or "")
        self.stats.rows += 1
        t = row.get("timestamp_ns")
        if t is not None:
            self.stats.see_range(t, t)
        if self._pending_bytes > MAX_PENDING_BYTES:
            self.flush()
        return frame

    def flush(self) -> None:
        """Blob bytes out first, then the rows that point at them."""
        if self._blobs is not None:
            self._blobs.flush(sync=self.policy.sync)
        if self._pending_rows:
            self._pending.append(pa.RecordBatch.from_pylist(self._pending_rows, schema=self.schema))
            self._pending_rows = []
        written = None
        if self._pending:
            if self._live is None:
                self._live = LiveFile(self.folder / layout.live_name(self._start_part()), self.schema)
                self._new_files = True
            written = pa.concat_batches(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._live.write(written, sync=self.policy.sync)
            self._pending, self._pending_bytes = [], 0
        if self.policy.sync and (self._new_files or self._new_folder):
            fsync_dir(self.folder)
            if self._new_folder:
                fsync_dir(self.folder.parent)
        self._new_files = self._new_folder = False
        if written is not None and self.on_written is not None:
            self.on_written(written)
        self._update_bytes()

    def _update_bytes(self) -> None:
        live = self._live.size if self._live is not None else 0
        blobs = self._blobs.size if self._blobs is not None else 0
        self.stats.bytes = self._closed_bytes + live + blobs

    # -- rolling ------------------------------------------------------------------------------

    @property
    def part_bytes(self) -> int:
        live = self._live.size if self._live is not None else 0
        blobs = self._blobs.size if self._blobs is not None else 0
        return live + blobs + self._pending_bytes

    def due(self, now: float | None = None) -> bool:
        if self._number is None:
            return False
        now = time.monotonic() if now is None else now
        return now - self._started >= self.policy.seconds or self.part_bytes >= self.policy.bytes

    def roll(self) -> None:
        """Finish the current part: flush, close its files and turn the live file into Parquet."""
        if self._number is None:
            return
        self.flush()
        number, self._number = self._number, None
        closed = 0
        if self._blobs is not None:
            self._blobs.close(sync=self.policy.sync)
            closed += self._blobs.size
            self._blobs = None
        if self._live is not None:
            self._live.close(sync=self.policy.sync)
            self._live = None
        part, _ = finish_live(self.folder, number, self.schema, sync=self.policy.sync)
        if part is not None:
            closed += part.stat().st_size
            self.stats.parts += 1
        self._closed_bytes += closed
        self._update_bytes()

    def close(self) -> None:
        self.roll()

    def abandon(self) -> None:
        """Let go of the files as they are and of the rows held, writing nothing more (after a
        storage error: recovery then keeps of the files what reads whole)."""
        if self._blobs is not None:
            self._blobs.abandon()
            self._blobs = None
        if self._live is not None:
            self._live.abandon()
            self._live = None
        self._pending, self._pending_rows, self._pending_bytes = [], [], 0
        self._number = None
