"""Reading one stream folder with column projection and a time filter pushed down to Parquet.

Finished parts are Parquet: the projection and the time range reach the Parquet reader, which
skips the row groups outside the range. The part being written (an Arrow IPC file) is read
whole and filtered in memory; it holds at most the last seconds of a live session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
