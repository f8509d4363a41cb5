"""One stream of many sessions as one pyarrow dataset: a whole field campaign in one query.

    import duckdb, recorder
    imu = recorder.open_dataset("data", "imu-left")
    duckdb.sql("SELECT serial, count(*) FROM imu GROUP BY serial")

Each row gets `serial` and `session_id` columns from its folder. The dataset holds the finished
Parquet parts of every session under the path (a data folder, a device folder or one session);
the part a live session is writing joins it once finished (the last seconds of a recording in
progress: open_session reads those too).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..storage import layout

PARTITIONING = ds.partitioning(pa.schema([("serial", pa.string()), ("session_id", pa.string())]))


def sessions_under(path: Path) -> tuple[Path, list[Path]]:
    """The data folder above `path` and the session folders under it."""
    if layout.is_session_folder(path):
        return path.parent.parent, [path]
    inside = layout.session_folders(path)
    if inside:
        return path, inside
    device = [p for p in layout.stream_folders(path).values() if layout.is_session_folder(p)]
    if device:
        return path.parent, device
    raise FileNotFoundError(f"no sessions under {path}: expected a data folder written by `recorder serve` "
                            f"(<serial>/<session-id>/ folders), a device folder, or one session folder")


def open_dataset(path: str | Path, stream: str) -> ds.Dataset:
    """Every session's rows of `stream` under `path`, with `serial` and `session_id` columns."""
    base, sessions = sessions_under(Path(path))
    files = [str(part) for session in sessions for part in layout.parts(session / stream).values()]
    if not files:
        found = sorted({name for s in sessions for name in layout.stream_folders(s)})
        raise KeyError(f"no finished part of stream {stream!r} under {path} (streams: {', '.join(found)})")
    schema = pq.read_schema(files[0])
    for name in ("serial", "session_id"):
        schema = schema.append(pa.field(name, pa.string()))
    return ds.dataset(files, schema=schema, format="parquet", partitioning=PARTITIONING,
                      partition_base_dir=str(base))
