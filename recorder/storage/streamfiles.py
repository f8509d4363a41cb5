"""Reading one stream folder whole: its finished Parquet parts and its live IPC files.

A writer may finish a part while this reads (rename part-N into place, then delete .live-N), so
a live file whose part already exists is skipped, and a live file that vanishes mid-read means
the listing is stale: read again.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import layout
from .livefile import read_complete

EMPTY = pa.schema([])


def read_stream(folder: Path, columns: list[str] | None = None) -> pa.Table | None:
    """Every row of a stream folder (in file order), or None if it holds no table yet.
    `columns`: only these (those of them the stream has)."""
    for _attempt in range(5):
        try:
            return _read_once(folder, columns)
        except FileNotFoundError:
            continue  # a live file became a part under us
    return _read_once(folder, columns)


def _read_once(folder: Path, columns: list[str] | None) -> pa.Table | None:
    # Live files are listed before parts: the writer renames a part into place before it
    # deletes its live file, so a part missing from this listing of lives is in the next.
    lives = layout.lives(folder)
    parts = layout.parts(folder)
    lives = {n: p for n, p in lives.items() if n not in parts}
    pieces: list[tuple[int, pa.Table]] = []
    for n, path in parts.items():
        wanted = None if columns is None else [c for c in columns if c in pq.read_schema(path).names]
        pieces.append((n, pq.read_table(path, columns=wanted)))
    for n, path in lives.items():
        table = read_complete(path, EMPTY)  # a headless file (crash at its start) has no rows
        if table.num_rows:
            pieces.append((n, table if columns is None else table.select([c for c in columns if c in table.schema.names])))
    if not pieces:
        return None
    pieces.sort(key=lambda p: p[0])
    tables = [t for _, t in pieces]
    metadata = tables[0].schema.metadata
    return pa.concat_tables([t.replace_schema_metadata(metadata) for t in tables])

