"""The rows of every device and stream of a replay inside one slice of the timeline, merged
into timeline order.

Each (device, stream) is read for the slice alone (its device window, then kept by exact
timeline time), converted once per slice by its Delivery, and the slices' timeline times are
sorted together in one vectorised lexsort (ties: device, then stream, then row order), so memory
holds one slice, never a session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..reading import Session
from .clocks import DeviceClock
from .delivery import Delivery, ErrorHandler
from .interface import StreamDataInterface
from .rows import KINDS_OF, Rows
from .stored import StoredStream
from .streams import AUDIO, CAMERA, message_of

# Sample records are never longer than this: read past a slice's end to complete the record it
# ends in, for imu_batch and raw_message (a device sends a record at least every few hundred ms).
RECORD_LOOKAHEAD_NS = 2 * 10**9


class ReplayDevice:
    """One session of a replay: its clock, the streams it delivers, its Delivery."""

    def __init__(self, session: Session, streams: list[str], stream_data: StreamDataInterface,
                 on_error: ErrorHandler | None):
        self.session, self.serial = session, session.serial
        self.clock = DeviceClock(session)
        self.selected = list(streams)  # the timeline spans these, whichever callbacks are registered
        stored = {name: StoredStream(session, name) for name in streams}
        messages = {name: message_of(name, s.schema) for name, s in stored.items()}
        raw = stream_data.enable_raw_stream and "raw_message" in stream_data.callbacks
        # Streams none of whose callbacks is registered are not read at all.
        self.streams = {name: s for name, s in stored.items()
                        if raw or any(kind in stream_data.callbacks for kind in KINDS_OF[messages[name]])}
        # Sample streams whose records must come whole (imu_batch, raw_message): read past a
        # slice's end for the rest of the record it ends in.
        self.whole_records = {name for name in self.streams
                              if messages[name] == "IMU_EVENT" or (raw and messages[name] not in (CAMERA, AUDIO))}
        self.delivery = Delivery(stream_data, self.serial, on_error=on_error)
        self.timeline_span: tuple[int, int] | None = None  # set by the replay from span()

    def span(self) -> tuple[int, int] | None:
        """First and last timeline times of the delivered streams (None if they hold no rows)."""
        listed = self.session.manifest.get("streams") or {}
        firsts, lasts = [], []
        for name in self.selected:
            entry = listed.get(name) or {}
            first, last = entry.get("first_timestamp_ns"), entry.get("last_timestamp_ns")
            if first is None or last is None:  # no manifest (a crash): read the times, part by part
                for batch in self.session.batches(name, columns=["timestamp_ns"]):
                    times = batch.column(0).to_numpy()
                    if len(times):
                        firsts.append(int(times.min()))
                        lasts.append(int(times.max()))
                continue
            firsts.append(first)
            lasts.append(last)
        if not firsts:
            return None
        return int(self.clock.to_timeline([min(firsts)])[0]), int(self.clock.to_timeline([max(lasts)])[0])

    def prime(self, position_ns: int) -> None:
        """Feed each coded camera stream from the keyframe before position_ns up to it."""
        for name, stored in self.streams.items():
            if not stored.is_blob or "codec" not in stored.names:
                continue
            times = self.clock.to_timeline(stored.index.column("timestamp_ns").to_numpy())
            first = int(np.searchsorted(times, position_ns, "left"))
            keyframe = stored.keyframe_before(first)
            if keyframe < first:
                self.delivery.prime(name, first_batch(stored.with_data(keyframe, first)))

    def read(self, name: str, start_ns: int, end_ns: int, window_end_ns: int) -> tuple[np.ndarray, Rows] | None:
        """The stream's rows with start_ns <= timeline time < end_ns, converted, with their
        timeline times; None when there are none or no callback wants them."""
        stored = self.streams[name]
        lo, hi = self.clock.device_window(start_ns, end_ns)
        if stored.is_blob:
            first, stop = stored.rows_between(lo, hi)
            times = self.clock.to_timeline(stored.index.column("timestamp_ns").to_numpy()[first:stop])
            inside = np.flatnonzero((times >= start_ns) & (times < end_ns))
            if not len(inside):
                return None
            table = stored.with_data(first + int(inside[0]), first + int(inside[-1]) + 1)
            rows = self.delivery.prepare(name, first_batch(table))
            return (times[inside[0]:inside[-1] + 1], rows) if rows is not None else None
        table = stored.read(lo, hi + (RECORD_LOOKAHEAD_NS if name in self.whole_records else 0))
        times = self.clock.to_timeline(table.column("timestamp_ns").to_numpy())
        inside = np.flatnonzero((times >= start_ns) & (times < end_ns))
        if not len(inside):
            return None
        a, b = int(inside[0]), int(inside[-1]) + 1
        following = None
        if name in self.whole_records and b < table.num_rows:
            sequence = table.column("sequence").to_numpy()
            same = (sequence[b:] == sequence[b - 1]) & (times[b:] < window_end_ns)
            stop = b + (len(same) if same.all() else int(np.argmin(same)))
            following = first_batch(table.slice(b, stop - b)) if stop > b else None
        rows = self.delivery.prepare(name, first_batch(table.slice(a, b - a)), following)
        return (times[a:b], rows) if rows is not None else None


def first_batch(table: pa.Table) -> pa.RecordBatch:
    """The whole table as one record batch."""
    table = table.combine_chunks()
    batches = table.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


@dataclass
class Slice:
    """Rows of a timeline slice in the order to deliver them: row k is row `row[k]` of
    parts[part[k]], at timeline time `times[k]`."""

    parts: list[tuple[ReplayDevice, str, Rows]]
    times: np.ndarray
    part: np.ndarray
    row: np.ndarray


def read_slice(devices: list[ReplayDevice], start_ns: int, end_ns: int, window_end_ns: int) -> Slice:
    parts, times, part, row = [], [], [], []
    for device in devices:
        for name in device.streams:
            found = device.read(name, start_ns, end_ns, window_end_ns)
            if found is None:
                continue
            t, rows = found
            times.append(t)
            part.append(np.full(len(t), len(parts)))
            row.append(np.arange(len(t)))
            parts.append((device, name, rows))
    if not parts:
        empty = np.array([], np.int64)
        return Slice(parts, empty, empty, empty)
    times_, part_, row_ = np.concatenate(times), np.concatenate(part), np.concatenate(row)
    order = np.lexsort((row_, part_, times_))  # parts are in device, then stream order
    return Slice(parts, times_[order], part_[order], row_[order])
