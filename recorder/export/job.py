"""What one export reads: its sessions, streams, window and clock, and the rows inside them.

Every format reads through an ExportJob, never through file layouts: `rows()` gives a stream's
rows of one session inside the window, batch after batch in capture order, with `time_ns` (the
export clock) beside the stored `timestamp_ns` (the device clock), and for camera and audio
streams a `data` column with each frame's or block's bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import open_session
from ..reading import Session
from ..reading.dataset import sessions_under
from ..storage import layout
from .clocks import ExportClock

BATCH_ROWS = 65536
BLOB_BATCH_BYTES = 64 << 20  # frames' bytes read and handed to a format at a time
# Streams that are no sensor data: kept in the session, not exported.
NOT_EXPORTED = {layout.VERBATIM_STREAM, layout.RAW_BODY_STREAM}
TIME_COLUMN = "time_ns"
DATA_COLUMN = "data"


class ExportError(ValueError):
    """An export that cannot be made as asked; the message says what to change."""


def open_sessions(paths: list[str | Path]) -> list[Session]:
    """The device sessions under the paths given (session, device or data folders), in order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ExportError(f"{path} does not exist")
        try:
            found += sessions_under(path)[1]
        except FileNotFoundError as exc:
            raise ExportError(str(exc)) from None
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ExportError(f"no sessions under {', '.join(map(str, paths))}")
    return [open_session(p) for p in unique]


def parse_time(value: str | None, what: str) -> tuple[str, int] | None:
    """--start/--end: seconds from the earliest session's start ("12.5"), or an absolute time
    on the export clock in nanoseconds ("1714000000000000000ns")."""
    if value is None:
        return None
    text = value.strip()
    match = re.fullmatch(r"(-?\d+)\s*ns", text)
    if match:
        return "absolute", int(match.group(1))
    try:
        return "relative", round(float(text) * 1e9)
    except ValueError:
        raise ExportError(f"{what} {value!r}: give seconds from the start (e.g. 12.5) or an absolute time on "
                          f"the export clock in ns (e.g. 1714000000000000000ns)") from None


@dataclass
class ExportJob:
    sessions: list[Session]
    clock: ExportClock
    wanted: list[str] | None = None  # stream names; None: every sensor stream
    start_ns: int | None = None  # on the export clock, inclusive
    end_ns: int | None = None  # on the export clock, exclusive
    origin_ns: int = 0  # the earliest session's first time on the export clock
    notes: list[str] = field(default_factory=list)
    workers: int | None = None  # processes for formats that export device by device; None: every core

    @classmethod
    def make(cls, paths: list[str | Path], *, clock: str = "broadcaster", streams: list[str] | None = None,
             start: str | None = None, end: str | None = None) -> ExportJob:
        sessions = open_sessions(paths)
        try:
            chosen = ExportClock.choose(clock, sessions)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        job = cls(sessions, chosen, wanted=list(streams) if streams else None)
        if job.wanted:
            known = {name for s in sessions for name in s.streams()}
            unknown = [name for name in job.wanted if name not in known]
            if unknown:
                raise ExportError(f"no stream {', '.join(unknown)} in these sessions (streams: {', '.join(sorted(known))})")
        job.origin_ns = job._first_time()
        job.start_ns = job._resolve(parse_time(start, "--start"))
        job.end_ns = job._resolve(parse_time(end, "--end"))
        if job.start_ns is not None and job.end_ns is not None and job.end_ns <= job.start_ns:
            raise ExportError("--end must come after --start")
        job.notes += chosen.notes
        return job

    def _first_time(self) -> int:
        firsts = []
        for session in self.sessions:
            for name in self.streams(session):
                entry = (session.manifest.get("streams") or {}).get(name) or {}
                first = entry.get("first_timestamp_ns")
                if first is None:
                    times = session.table(name, columns=["timestamp_ns"]).column("timestamp_ns").to_numpy()
                    first = int(times.min()) if len(times) else None
                if first is not None:
                    firsts.append(int(self.clock.times(session, [first])[0]))
        return min(firsts) if firsts else 0

    def _resolve(self, parsed: tuple[str, int] | None) -> int | None:
        if parsed is None:
            return None
        kind, value = parsed
        return value if kind == "absolute" else self.origin_ns + value

    def streams(self, session: Session) -> list[str]:
        """The session's streams this export holds."""
        names = [s for s in session.streams() if s not in NOT_EXPORTED]
        return [s for s in names if self.wanted is None or s in self.wanted]

    def rows(self, session: Session, stream: str, columns: list[str] | None = None,
             with_data: bool = False, batch_bytes: int = BLOB_BATCH_BYTES,
             first_batch_bytes: int | None = None) -> Iterator[pa.Table]:
        """The stream's rows inside the window, in capture order, `columns` (default: every stored
        column but the blob locations) plus `time_ns`, and `data` when asked for blob streams,
        about `batch_bytes` of frames (at least one) a batch (`first_batch_bytes` the first)."""
        schema = session.schema(stream)
        is_blob = "file" in schema.names
        names = columns or [n for n in schema.names if not (is_blob and n in ("file", "offset", "length", "size"))]
        if is_blob:
            yield from self._blob_rows(session, stream, names, with_data, batch_bytes, first_batch_bytes or batch_bytes)
            return
        read = names if "timestamp_ns" in names else [*names, "timestamp_ns"]
        for batch in session.batches(stream, columns=read, batch_rows=BATCH_ROWS):
            table = pa.Table.from_batches([batch])
            table = self._inside(session, table)
            if table.num_rows:
                yield table.select(names).append_column(TIME_COLUMN, table.column(TIME_COLUMN))

    def _blob_rows(self, session: Session, stream: str, names: list[str], with_data: bool,
                   batch_bytes: int, first_batch_bytes: int) -> Iterator[pa.Table]:
        index = session.table(stream, columns=session.schema(stream).names)
        times = self.clock.times(session, index.column("timestamp_ns").to_numpy())
        inside = np.ones(len(times), bool)
        if self.start_ns is not None:
            inside &= times >= self.start_ns
        if self.end_ns is not None:
            inside &= times < self.end_ns
        rows = np.flatnonzero(inside)
        # Bounded by bytes, not by frames: 256 raw 2560x1920 RGB frames would be 3.7 GB.
        ends = np.cumsum(index.column("size").to_numpy()[rows].astype(np.int64))
        first = 0
        while first < len(rows):
            before = int(ends[first - 1]) if first else 0
            wanted = batch_bytes if first else first_batch_bytes
            stop = max(first + 1, int(np.searchsorted(ends, before + wanted, "right")))
            chunk, first = rows[first:stop], stop
            table = index.take(pa.array(chunk)).select(names).append_column(TIME_COLUMN, pa.array(times[chunk]))
            if with_data:
                runs = np.split(chunk, np.flatnonzero(np.diff(chunk) != 1) + 1)
                arrays = [session.blob_array(stream, int(r[0]), int(r[-1]) + 1) for r in runs]
                data = arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)  # one run: no copy
                table = table.append_column(DATA_COLUMN, data)
            yield table

    def _inside(self, session: Session, table: pa.Table) -> pa.Table:
        times = self.clock.times(session, table.column("timestamp_ns").to_numpy())
        table = table.append_column(TIME_COLUMN, pa.array(times, pa.int64()))
        if self.start_ns is None and self.end_ns is None:
            return table
        inside = np.ones(len(times), bool)
        if self.start_ns is not None:
            inside &= times >= self.start_ns
        if self.end_ns is not None:
            inside &= times < self.end_ns
        return table.filter(pa.array(inside))

    def stored_bytes(self) -> int:
        """The sessions' stored size (what throughput is counted against)."""
        return sum(int(s.manifest.get("stored_bytes") or 0) for s in self.sessions)
