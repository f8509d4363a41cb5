"""Reading one stream folder with column projection and a time filter pushed down to Parquet.

Finished parts are Parquet: the projection and the time range reach the Parquet reader, which
skips the row groups outside the range. The part being written (an Arrow IPC file) is read
whole and filtered in memory; it holds at most the last seconds of a live session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..storage import layout
from ..storage.livefile import read_complete
from ..storage.parts import sort_rows

EMPTY = pa.schema([])


def time_column(schema: pa.Schema) -> str:
    """The column a time range applies to: the device time, or the arrival time of raw bodies."""
    return "timestamp_ns" if "timestamp_ns" in schema.names else "wall_time_ns"


def stream_schema(folder: Path) -> pa.Schema | None:
    """The stored schema of a stream (from its first part or live file), None if it has none."""
    for path in layout.parts(folder).values():
        return pq.read_schema(path)
    for path in layout.lives(folder).values():
        table = read_complete(path, EMPTY)
        if table.num_columns:
            return table.schema
    return None


def _time_filter(schema: pa.Schema, start_ns: int | None, end_ns: int | None) -> pc.Expression | None:
    column = pc.field(time_column(schema))
    condition = None
    if start_ns is not None:
        condition = column >= start_ns
    if end_ns is not None:
        upper = column < end_ns
        condition = upper if condition is None else condition & upper
    return condition


def read_batches(folder: Path, schema: pa.Schema, columns: list[str], start_ns: int | None = None,
                 end_ns: int | None = None, batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
    """The stream's rows part by part (each part in capture order), `columns` only, with
    start_ns <= time < end_ns. A part finished while this reads is read once, as a part."""
    condition = _time_filter(schema, start_ns, end_ns)
    lives = layout.lives(folder)
    parts = layout.parts(folder)
    files = sorted([(n, p, True) for n, p in parts.items()]
                   + [(n, p, False) for n, p in lives.items() if n not in parts])
    for _number, path, finished in files:
        try:
            if finished and condition is None:
                # The whole part: Parquet's own reader, which opens a file about 1 ms sooner
                # than a dataset does (measured on profile9 parts; paid once per part read).
                yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns,
                                                             use_threads=False)
                continue
            if finished:
                part = ds.dataset(path, format="parquet")
                yield from part.to_batches(columns=columns, filter=condition, batch_size=batch_rows,
                                           use_threads=False)
                continue
            table = sort_rows(read_complete(path, EMPTY))  # a live file is in arrival order
        except FileNotFoundError:
            # The live file became a part under us: read that part instead.
            finished_part = folder / layout.part_name(_number)
            if not finished_part.exists():
                continue
            table = pq.read_table(finished_part)
        if not table.num_rows:
            continue
        if condition is not None:
            table = table.filter(condition)
        yield from table.select(columns).to_batches(max_chunksize=batch_rows)


class RangeReader:
    """Time ranges of one stream, read one after another as a replay moves forward.

    table() with a time range decodes every row group the range touches, and a row group holds
    minutes of a stream: reading a long session second by second would decode each row group
    hundreds of times. This reader finds the row groups a range needs from their timestamp
    statistics and keeps the last few it decoded, so that ranges moving forward decode each
    row group once. Rows of every part that overlaps a range are returned, so a resend stored
    in a later part is not missed. The files are listed when the reader is made.
    """

    def __init__(self, folder: Path, schema: pa.Schema, columns: list[str], keep: int = 4):
        self.columns = columns
        self.empty = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata).empty_table()
        self.time = time_column(schema)
        self._read_columns = columns if self.time in columns else [*columns, self.time]
        self.keep = keep
        self._decoded: dict[tuple[Path, int], pa.Table] = {}
        self._units: list[tuple[Path, int, int | None, int | None]] = []  # file, row group (-1: live), span
        parts = layout.parts(folder)
        for path in parts.values():
            metadata = pq.ParquetFile(path).metadata
            column = metadata.schema.to_arrow_schema().get_field_index(self.time)
            for group in range(metadata.num_row_groups):
                stats = metadata.row_group(group).column(column).statistics if column >= 0 else None
                span = (stats.min, stats.max) if stats is not None and stats.has_min_max else (None, None)
                self._units.append((path, group, *span))
        for number, path in layout.lives(folder).items():
            if number not in parts:
                self._units.append((path, -1, None, None))

    def read(self, start_ns: int | None, end_ns: int | None) -> pa.Table:
        """Rows with start_ns <= time < end_ns, in capture order."""
        pieces = []
        for path, group, first, last in self._units:
            if first is not None and ((end_ns is not None and first >= end_ns)
                                      or (start_ns is not None and last < start_ns)):
                continue
            table, times = self._table(path, group)
            # Each decoded table is in capture order (parts are written sorted, live files are
            # sorted when decoded): a range is a zero-copy slice found by binary search.
            a = 0 if start_ns is None else int(np.searchsorted(times, start_ns, "left"))
            b = len(times) if end_ns is None else int(np.searchsorted(times, end_ns, "left"))
            if b > a:
                pieces.append(table.slice(a, b - a))
        if not pieces:
            return self.empty
        rows = pieces[0] if len(pieces) == 1 else sort_rows(pa.concat_tables(pieces))
        return rows if rows.column_names == self.columns else rows.select(self.columns)

    def _table(self, path: Path, group: int) -> tuple[pa.Table, np.ndarray]:
        key = (path, group)
        if key not in self._decoded:
            if group < 0:
                table = sort_rows(read_complete(path, EMPTY))
                table = table.select([c for c in self._read_columns if c in table.column_names])
            else:
                table = pq.ParquetFile(path).read_row_group(group, columns=self._read_columns)
            if len(self._decoded) >= self.keep:
                self._decoded.pop(next(iter(self._decoded)))
            self._decoded[key] = (table, table.column(self.time).to_numpy())
        return self._decoded[key]
