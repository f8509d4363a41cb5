"""A session's stream read for delivery: its stored columns, time slice by time slice, with
each camera frame's or audio block's bytes in a `data` column (what Delivery.rows takes).

Sample streams are read slice by slice from disk (Session.table with a time range), so a long
session never sits in memory. Blob streams keep their index (one small row per frame or block,
as Session.frame() does) to find rows by time and keyframes before a window; their bytes are
read only for the rows of the slice.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..reading import Session
from ..reading.images import is_keyframe
from ..reading.streams import RangeReader
from .rows import BLOB_COLUMN


class StoredStream:
    def __init__(self, session: Session, stream: str):
        self.session, self.stream = session, stream
        self.schema = session.schema(stream)
        self.names = self.schema.names
        self.is_blob = "file" in self.names
        self._index: pa.Table | None = None
        self._times: np.ndarray | None = None
        self._ranges: RangeReader | None = None  # sample streams: read slice after slice

    @property
    def index(self) -> pa.Table:
        if self._index is None:
            self._index = self.session.table(self.stream, columns=self.names)
            self._times = self._index.column("timestamp_ns").to_numpy()
        return self._index

    def read(self, start_ns: int | None = None, end_ns: int | None = None) -> pa.Table:
        """Rows with start_ns <= timestamp_ns < end_ns, in stored order (timestamp, sequence)."""
        if not self.is_blob:
            if self._ranges is None:
                self._ranges = self.session.range_reader(self.stream, self.names)
            return self._ranges.read(start_ns, end_ns)
        first, stop = self.rows_between(start_ns, end_ns)
        return self.with_data(first, stop)

    def rows_between(self, start_ns: int | None, end_ns: int | None) -> tuple[int, int]:
        """Blob streams: the index rows [first, stop) inside the time range."""
        times = self._times if self._index is not None else self.index.column("timestamp_ns").to_numpy()
        first = 0 if start_ns is None else int(np.searchsorted(times, start_ns, "left"))
        stop = len(times) if end_ns is None else int(np.searchsorted(times, end_ns, "left"))
        return first, max(first, stop)

    def with_data(self, first: int, stop: int) -> pa.Table:
        rows = self.index.slice(first, stop - first)
        data = self.session.blob_array(self.stream, first, stop)
        return rows.append_column(BLOB_COLUMN, data)

    def keyframe_before(self, row: int) -> int:
        """Camera streams: the last keyframe at or before `row` (row itself when none is, or
        for RAW and JPEG frames, where every frame is one)."""
        if row >= self.index.num_rows or "codec" not in self.names:
            return row
        codecs = self.index.column("codec")
        for j in range(row, -1, -1):
            if is_keyframe(codecs[j].as_py(), self.session.blob(self.stream, j)):
                return j
        return row
