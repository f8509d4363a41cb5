"""recover(): bring a session folder left by a crash back to a consistent, finished state.

What a crash can leave, and what becomes of it:
- a live IPC file: its complete batches become a Parquet part (a batch cut off is lost: it was
  not flushed); an empty or headless one is deleted;
- a live file beside the part of the same number (crash between rename and delete): deleted;
- a temporary Parquet file (crash while writing a part): deleted, the live file is converted;
- a blob file longer than its index says (bytes whose rows were never flushed): truncated to the
  end of its last indexed frame; with no index rows at all, deleted;
- index rows pointing past their blob file's end (only after a power loss with sync off):
  dropped, their part rewritten;
- a manifest that lags the files, or none: per-stream figures and the highest sequence are
  rebuilt from the files; counters come from the last manifest written;
- a request that was open: closed in requests.jsonl as interrupted.

Every step is safe to repeat, so recover() is idempotent and may itself be interrupted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import layout, manifest, requestlog, tables
from .ahead import to_ranges
from .calibration import Calibrations
from .files import truncate_durably
from .manifest import SEQUENCED_VERBATIM, TDM_STREAM, SessionState
from .parts import finish_live, write_part
from .stream import StreamStats
from .streamfiles import read_stream
from .timemap import TdmSummary


@dataclass
class RecoveryReport:
    path: Path
    found_state: str  # the manifest's state before recovery ("missing" without one)
    changed: bool = False
    parts_written: list[str] = field(default_factory=list)
    rows_recovered: int = 0  # rows moved from live files into parts
    files_removed: list[str] = field(default_factory=list)
    blob_bytes_truncated: int = 0
    index_rows_dropped: int = 0
    interrupted_request: int | None = None
    highest_sequence: int | None = None
    stored_ahead: list[list[int]] = field(default_factory=list)  # sequences stored above it (ahead.py)
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.changed:
            return f"{self.path}: {self.found_state}, nothing to repair"
        done = [f"{len(self.parts_written)} parts from live files ({self.rows_recovered} rows)"]
        if self.files_removed:
            done.append(f"{len(self.files_removed)} leftover files removed")
        if self.blob_bytes_truncated:
            done.append(f"{self.blob_bytes_truncated} unindexed blob bytes cut")
        if self.index_rows_dropped:
            done.append(f"{self.index_rows_dropped} index rows without bytes dropped")
        if self.interrupted_request is not None:
            done.append(f"request {self.interrupted_request} closed as interrupted")
        done.append(f"highest sequence {self.highest_sequence}")
        done += [f"problem: {p}" for p in self.problems]
        return f"{self.path}: was {self.found_state}, recovered: " + "; ".join(done)

    def as_dict(self) -> dict:
        return {"path": str(self.path), "found_state": self.found_state, "changed": self.changed,
                "parts_written": self.parts_written, "rows_recovered": self.rows_recovered,
                "files_removed": self.files_removed, "blob_bytes_truncated": self.blob_bytes_truncated,
                "index_rows_dropped": self.index_rows_dropped, "interrupted_request": self.interrupted_request,
                "highest_sequence": self.highest_sequence, "stored_ahead": self.stored_ahead,
                "problems": self.problems}


def needs_recovery(path: Path) -> bool:
    """A session folder that a crash left open: its manifest says recording (or is missing or
    unreadable), or it still holds live files."""
    d = manifest.read_json(path)
    if d is None or d.get("state") == manifest.RECORDING:
        return True
    return any(layout.lives(folder) for folder in layout.stream_folders(path).values())


def recover(path: Path, *, sync: bool = True) -> RecoveryReport:
    path = Path(path)
    (path / layout.SPACE_RESERVE).unlink(missing_ok=True)  # the writer's room for its manifest: not data
    state = manifest.load(path)
    report = RecoveryReport(path, state.state if state else "missing")
    if state is None:
        state = SessionState(serial=path.parent.name, session_id=path.name)
        report.changed = True
    elif state.state == manifest.RECORDING:
        report.changed = True

    # The manifest's highest sequence is a watermark: everything at or below it was flushed.
    # Without one (no flush finished before the crash, or no manifest), the highest stored
    # sequence is no watermark: a kill inside the first flush can leave one stream's records
    # stored and another's, sent earlier, not. Every stored sequence is scanned (-1) instead.
    committed = state.highest_sequence if report.found_state != "missing" else None
    above = committed if committed is not None else -1
    streams: dict[str, StreamStats] = {}
    scans = []
    for name, folder in layout.stream_folders(path).items():
        _finish_lives(folder, report, sync)
        _repair_blobs(folder, report, sync)
        scan = scan_stream(folder, state.streams.get(name), above=above)
        if scan.stats is not None:
            streams[name] = scan.stats
        scans.append(scan)
    if _stream_figures(state.streams) != _stream_figures(streams):
        report.changed = True
    state.streams = streams

    tops = [s.highest for s in scans if s.highest is not None]
    data_top = max(tops) if tops else None
    # A kill between two streams' writes may have stored some records above the watermark and
    # not others: keep the watermark (the device's resends fill the holes) and note what is
    # stored above it, so those are not stored twice (ahead.py).
    if committed is None:
        # No watermark was ever saved: the stored records make one as far as they run on without
        # a hole from sequence 0, where a session starts (the decoder counts anything below the
        # first record as missing). A run from a higher lowest record is none: the records below
        # it were sent (a power cut inside the first flush kept the streams written last), and
        # the resend would count them as resends and drop them.
        stored = np.unique(np.concatenate([s.above for s in scans])) if scans else np.empty(0, np.uint64)
        holes = np.flatnonzero(np.diff(stored) != 1)
        if not len(stored) or stored[0] != 0:
            highest = None
        else:
            highest = int(stored[holes[0]] if len(holes) else stored[-1])
    else:
        highest = None if data_top is None else min(committed, data_top)
    ahead = to_ranges(np.concatenate([s.above for s in scans])) if scans else []
    ahead = [r for r in ahead if r[1] > (highest if highest is not None else -1)]
    if (highest, ahead) != (state.highest_sequence, state.stored_ahead):
        state.highest_sequence, state.stored_ahead = highest, ahead
        report.changed = True
    report.highest_sequence = state.highest_sequence
    report.stored_ahead = ahead

    _close_open_request(path, state, report, sync)
    if not state.calibrations and (path / layout.CALIBRATION).exists():
        first_requests: dict[str, int] = {}
        for n, r in sorted(requestlog.requests(path).items()):
            if r.get("calibration"):
                first_requests.setdefault(r["calibration"], n)
        state.calibrations = Calibrations.from_files(path, first_requests, sync=sync).entries
        report.changed = True
    if report.changed:
        state.state = manifest.RECOVERED
        state.recoveries.append({"wall_time_ns": time.time_ns(), **{
            k: v for k, v in report.as_dict().items() if k not in ("path", "changed")}})
        manifest.save(path, state, sync=sync)
    return report


def _stream_figures(streams: dict[str, StreamStats]) -> dict:
    return {name: (s.rows, s.bytes, s.parts, s.first_timestamp_ns, s.last_timestamp_ns) for name, s in streams.items()}


def _finish_lives(folder: Path, report: RecoveryReport, sync: bool) -> None:
    for temp in folder.glob(".part-*.parquet.tmp"):
        temp.unlink(missing_ok=True)
        report.files_removed.append(str(temp))
        report.changed = True
    for number, live in layout.lives(folder).items():
        report.changed = True
        if (folder / layout.part_name(number)).exists():  # crash between the rename and the delete
            live.unlink()
            report.files_removed.append(str(live))
            continue
        try:
            part, rows = finish_live(folder, number, sync=sync)
        except (pa.ArrowInvalid, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # the disk failed (full, say), not the file: it stays for the next recovery
            report.problems.append(f"{live}: {exc}; removed")
            live.unlink(missing_ok=True)
            part, rows = None, 0
        if part is None:
            report.files_removed.append(str(live))
        else:
            report.parts_written.append(str(part))
            report.rows_recovered += rows


def _repair_blobs(folder: Path, report: RecoveryReport, sync: bool) -> None:
    blob_files = layout.blob_files(folder)
    if not blob_files:
        return
    sizes = {layout.blob_name(n): p.stat().st_size for n, p in blob_files.items()}
    ends: dict[str, int] = {}
    for number, part in layout.parts(folder).items():
        index = pq.read_table(part, columns=["file", "offset", "length"])
        fits = _fits(index, sizes)
        if not pc.all(fits).as_py():
            table = pq.read_table(part)
            kept = table.filter(fits)
            report.index_rows_dropped += table.num_rows - kept.num_rows
            report.changed = True
            if kept.num_rows:
                write_part(folder, number, kept, sync=sync)
            else:
                part.unlink()
                report.files_removed.append(str(part))
            index = index.filter(fits)
        for file, end in _frame_ends(index).items():
            ends[file] = max(end, ends.get(file, 0))
    for number, blob_path in blob_files.items():
        name = layout.blob_name(number)
        end = ends.get(name)
        if end is None:
            blob_path.unlink()
            report.files_removed.append(str(blob_path))
            report.changed = True
        elif end < sizes[name]:
            truncate_durably(blob_path, end, sync=sync)
            report.blob_bytes_truncated += sizes[name] - end
            report.changed = True


def _fits(index: pa.Table, sizes: dict[str, int]) -> pa.Array:
    """Per index row: its frame lies wholly inside its blob file."""
    file_sizes = _lookup_sizes(index.column("file"), sizes)
    end = pc.add(pc.cast(index.column("offset"), pa.int64()), pc.cast(index.column("length"), pa.int64()))
    return pc.less_equal(end, file_sizes)


def _lookup_sizes(files: pa.ChunkedArray, sizes: dict[str, int]) -> pa.Array:
    names = list(sizes)
    where = pc.index_in(files, value_set=pa.array(names, pa.string()))
    table = pa.array([sizes[n] for n in names] + [-1], pa.int64())
    return pc.take(table, pc.fill_null(where, len(names)))


def _frame_ends(index: pa.Table) -> dict[str, int]:
    if not index.num_rows:
        return {}
    ends = pc.add(pc.cast(index.column("offset"), pa.int64()), pc.cast(index.column("length"), pa.int64()))
    grouped = pa.table({"file": index.column("file"), "end": ends}).group_by("file").aggregate([("end", "max")])
    return dict(zip(grouped.column("file").to_pylist(), grouped.column("end_max").to_pylist(), strict=True))


# What a scan needs: times, sequences, verbatim reasons, the TDM fields (not the sensor data).
SCAN_COLUMNS = ["timestamp_ns", "sequence", "reason", "capture_timestamp_ns", "offset_ns", "broadcaster_id"]


@dataclass
class StreamScan:
    stats: StreamStats | None  # None if the folder holds no rows
    highest: int | None  # the highest sequence it holds that the decoder trusted
    above: np.ndarray  # those trusted sequences above `above` (scan_stream's argument)


def scan_stream(folder: Path, previous: StreamStats | None = None, *, above: int | None = None) -> StreamScan:
    """A stream's figures rebuilt from its files, and its sequences above `above` (every one for
    -1, none for None)."""
    none = np.empty(0, np.uint64)
    table = read_stream(folder, columns=SCAN_COLUMNS)
    if table is None or not table.num_rows:
        return StreamScan(None, None, none)
    kind = tables.schema_kind(table.schema) or (previous.kind if previous else "samples")
    message = (table.schema.metadata or {}).get(tables.MESSAGE_KEY, b"").decode() or (previous.message if previous else "")
    stats = StreamStats(kind, message, rows=table.num_rows)
    if "timestamp_ns" in table.column_names:
        stats.see_times(table.column("timestamp_ns"))
    parts = layout.parts(folder)
    blobs = layout.blob_files(folder)
    stats.parts = len(parts)
    stats.blob_bytes = sum(p.stat().st_size for p in blobs.values())
    stats.bytes = sum(p.stat().st_size for p in parts.values()) + stats.blob_bytes
    if folder.name == TDM_STREAM and kind == "samples":
        summary = TdmSummary()
        summary.add(table.column("capture_timestamp_ns").to_numpy(), table.column("offset_ns").to_numpy(),
                    table.column("broadcaster_id").to_numpy())
        stats.extra["tdm"] = summary.as_dict()
    if "sequence" not in table.column_names:
        return StreamScan(stats, None, none)
    if kind == "verbatim":
        table = table.filter(pc.is_in(table.column("reason"), pa.array(SEQUENCED_VERBATIM)))
    sequences = table.column("sequence").drop_null()
    if not len(sequences):
        return StreamScan(stats, None, none)
    values = sequences.to_numpy()
    if above is None:
        higher = none
    else:
        higher = np.unique(values) if above < 0 else np.unique(values[values > above])
    return StreamScan(stats, int(values.max()), higher.astype(np.uint64))


def _close_open_request(path: Path, state: SessionState, report: RecoveryReport, sync: bool) -> None:
    """A request left open by the crash gets its end line; the count of requests follows the log."""
    logged = requestlog.requests(path)
    if logged and max(logged) + 1 > state.requests:
        state.requests = max(logged) + 1
        report.changed = True
    open_ = [n for n, r in logged.items() if r["end"] is None]
    if state.open_request is not None and state.open_request not in logged:
        open_.append(state.open_request)
    for n in sorted(open_):
        requestlog.append(path, {"event": "end", "request": n, "wall_time_ns": time.time_ns(), "counters": None,
                                 "interrupted": True, "recovered": True}, sync=sync)
        report.interrupted_request = n
        report.changed = True
    state.open_request = None
    state.request_counters = type(state.request_counters)()
