"""A time-aligned multi-device dataset: one folder per stream, a Hive partition per device.

    <out>/<stream>/serial=<serial>/part-<session-id>-<n>.parquet

Each row keeps its device `timestamp_ns` and gains `time_ns` on the export's clock, so every
device's rows of a stream read as one table on one timeline (pyarrow.dataset with
partitioning="hive", DuckDB's read_parquet(..., hive_partitioning=true), Polars, Spark). Camera
frames and audio blocks keep their bytes in a `data` column.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from ..job import ExportJob

NAME = "parquet"
SUFFIX = ""


def partition(out: Path, stream: str, serial: str) -> Path:
    return out / stream / f"serial={serial}"


def write(job: ExportJob, out: Path, progress) -> dict:
    rows: dict[str, int] = {}
    files = 0
    for session in job.sessions:
        for stream in job.streams(session):
            folder = partition(out, stream, session.serial)
            writer = None
            path = folder / f"part-{session.session_id}-0.parquet"
            try:
                for table in job.rows(session, stream, with_data=True):
                    if writer is None:
                        folder.mkdir(parents=True, exist_ok=True)
                        writer = pq.ParquetWriter(path, table.schema, compression="zstd")
                        files += 1
                    writer.write_table(table)
                    rows[stream] = rows.get(stream, 0) + table.num_rows
                    progress(table.num_rows)
            finally:
                if writer is not None:
                    writer.close()
    out.mkdir(parents=True, exist_ok=True)
    return {"rows": rows, "files": files}
