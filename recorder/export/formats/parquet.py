"""A time-aligned multi-device dataset: one folder per stream, a Hive partition per device.

    <out>/<stream>/serial=<serial>/part-<session-id>-<n>.parquet

Each row keeps its device `timestamp_ns` and gains `time_ns` on the export's clock, so every
device's rows of a stream read as one table on one timeline (pyarrow.dataset with
partitioning="hive", DuckDB's read_parquet(..., hive_partitioning=true), Polars, Spark). Camera
frames and audio blocks keep their bytes in a `data` column.

With `sync_rate_hz`, `<out>/frames/part-0.parquet` has one row per tick of that rate over the
exported time: `tick`, `time_ns`, and for every stream and device `<stream>.<serial>.row` (the
row of that device's partition, read in file order, nearest in time to the tick; null before
the stream's first row) and `<stream>.<serial>.time_ns`; for streams faster than the tick rate
also `<stream>.<serial>.window`, the rows since the previous tick as a list. A training loader
joins on these instead of resampling: every sensor keeps its own rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..job import ExportJob
from ..parallel import by_device

NAME = "parquet"
SUFFIX = ""


def partition(out: Path, stream: str, serial: str) -> Path:
    return out / stream / f"serial={serial}"


def write(job: ExportJob, out: Path, progress, sync_rate_hz: float | None = None) -> dict:
    rows: dict[str, int] = {}
    files = 0
    times: dict[tuple[str, str], np.ndarray] = {}
    for written in by_device(job, write_device, out, progress):
        for stream, count in written["rows"].items():
            rows[stream] = rows.get(stream, 0) + count
        files += written["files"]
        times.update(written["times"])
    out.mkdir(parents=True, exist_ok=True)
    if sync_rate_hz:
        frames = sync_table(times, sync_rate_hz, job.start_ns, job.end_ns)
        (out / "frames").mkdir()
        pq.write_table(frames, out / "frames" / "part-0.parquet", compression="zstd")
        rows["frames"] = frames.num_rows
        files += 1
    return {"rows": rows, "files": files}


def write_device(job: ExportJob, out: Path, progress) -> dict:
    """The partitions of the job's sessions (one device's, when run per device), and each
    (stream, serial)'s times in file order for the sync table."""
    rows: dict[str, int] = {}
    files = 0
    times: dict[tuple[str, str], list[np.ndarray]] = {}  # (stream, serial) -> time_ns, in file order
    for session in sorted(job.sessions, key=lambda s: (s.serial, s.session_id)):
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
                    times.setdefault((stream, session.serial), []).append(table.column("time_ns").to_numpy())
                    progress(table.num_rows)
            finally:
                if writer is not None:
                    writer.close()
    return {"rows": rows, "files": files, "times": {key: np.concatenate(parts) for key, parts in times.items()}}


def sync_table(times: dict[tuple[str, str], np.ndarray], rate_hz: float, start_ns: int | None,
               end_ns: int | None) -> pa.Table:
    """One row per tick from the first exported time (or start_ns) to the last (or end_ns)."""
    if rate_hz <= 0:
        raise ValueError("the sync rate must be above 0 Hz")
    everything = [t for t in times.values() if len(t)]
    first = start_ns if start_ns is not None else min(int(t.min()) for t in everything)
    last = end_ns - 1 if end_ns is not None else max(int(t.max()) for t in everything)
    period = 1e9 / rate_hz
    ticks = first + np.rint(np.arange(int((last - first) // period) + 1) * period).astype(np.int64)
    columns = {"tick": pa.array(np.arange(len(ticks))), "time_ns": pa.array(ticks)}
    for (stream, serial), t in sorted(times.items()):
        if not len(t):
            continue
        order = np.argsort(t, kind="stable")  # rows are in capture order already; stable if not
        sorted_t = t[order]
        after = np.clip(np.searchsorted(sorted_t, ticks, "left"), 0, len(t) - 1)
        before = np.clip(after - 1, 0, len(t) - 1)
        nearest = np.where(np.abs(sorted_t[before] - ticks) <= np.abs(sorted_t[after] - ticks), before, after)
        valid = ticks >= sorted_t[0] - period / 2
        prefix = f"{stream}.{serial}"
        columns[f"{prefix}.row"] = pa.array(order[nearest], mask=~valid)
        columns[f"{prefix}.time_ns"] = pa.array(sorted_t[nearest], mask=~valid)
        if len(t) > 1 and np.median(np.diff(sorted_t)) < period:
            # Rows in (previous tick, this tick]: the samples a loader feeds as one window.
            # The windows follow each other, so together they are one run of rows.
            edges = np.searchsorted(sorted_t, ticks, "right")
            first_row = min(int(np.searchsorted(sorted_t, ticks[0] - period, "right")), int(edges[0]))
            offsets = np.concatenate([[0], edges - first_row]).astype(np.int32)
            values = pa.array(order[first_row:edges[-1]], pa.int64())
            columns[f"{prefix}.window"] = pa.ListArray.from_arrays(pa.array(offsets), values)
    return pa.table(columns)
