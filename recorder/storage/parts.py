"""Finished parts: a live IPC file becomes a Parquet file that appears whole or not at all.

Order, each step safe to be interrupted: read the live file's complete batches; write Parquet
under a hidden temporary name; fsync; rename to part-N.parquet; delete the live file. A crash
before the rename leaves the live file (converted again by recovery); after it, the part is
complete and a leftover live file of the same number is deleted.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import layout
from .compression import DEFAULT_PARQUET, ROW_GROUP_BYTES, ParquetSettings
from .files import replace_durably
from .livefile import read_complete


def sort_rows(table: pa.Table) -> pa.Table:
    """Rows in capture order: timestamp_ns then sequence (a stable sort keeps a record's samples
    in order); streams without a device time (raw bodies) by request and chunk."""
    names = set(table.column_names)
    keys = ["timestamp_ns", "sequence"] if "timestamp_ns" in names else ["request", "chunk"]
    keys = [k for k in keys if k in names]
    if not keys or table.num_rows < 2:
        return table
    return table.sort_by([(k, "ascending") for k in keys])


def row_group_rows(table: pa.Table) -> int:
    """Row groups of about ROW_GROUP_BYTES in memory: wide rows (hand tracking) get fewer."""
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    return max(1024, ROW_GROUP_BYTES // per_row)


def write_part(folder: Path, number: int, table: pa.Table, *, sync: bool = True,
               settings: ParquetSettings = DEFAULT_PARQUET) -> Path:
    final = folder / layout.part_name(number)
    temp = folder / layout.part_temp_name(number)
    pq.write_table(sort_rows(table), temp, row_group_size=row_group_rows(table),
                   **settings.writer_options(table.schema))
    replace_durably(temp, final, sync=sync)
    return final


def finish_live(folder: Path, number: int, schema: pa.Schema | None = None, *, sync: bool = True) -> tuple[Path | None, int]:
    """Turn .live-N.arrows into part-N.parquet (nothing if it holds no rows); returns the part
    (or None) and its row count. Safe to repeat after a crash at any step."""
    live = folder / layout.live_name(number)
    final = folder / layout.part_name(number)
    (folder / layout.part_temp_name(number)).unlink(missing_ok=True)
    if final.exists():  # renamed before the crash: the part is whole, the live file is left over
        live.unlink(missing_ok=True)
        return final, pq.ParquetFile(final).metadata.num_rows
    if not live.exists():
        return None, 0
    table = read_complete(live, schema)
    part = None
    if table.num_rows:
        if schema is not None and table.schema.metadata != schema.metadata:
            table = table.replace_schema_metadata(schema.metadata)
        part = write_part(folder, number, table, sync=sync)
    live.unlink()
    return part, table.num_rows
