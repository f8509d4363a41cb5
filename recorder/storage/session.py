"""SessionWriter: everything one device session sends, into its folder.

The server calls it from worker threads, one call at a time per session: no locking here.
write() routes a decoded Batch to its streams (vectorised per SampleBlock); flush() makes all
of it reach the files (and, with sync, the disk) and rewrites the manifest; close() finishes
every part so the session is plain Parquet and zstd, resumable by a later Store.open_writer().

A storage error (a full disk, above all) stops the writer where it stands: what it held in
memory is dropped, its files are left as a crash would leave them, and the error is noted in the
manifest's storage_errors. The next call repairs the folder from its files as recovery does
after a crash, and recording resumes; while the disk is still full, that call fails in turn. So
what was stored stays readable, the session's highest sequence goes back to what is stored (the
device's resends of what was lost are taken), and nobody has to restart anything. The manifest
on disk learns of the error at once, in room set aside for it beforehand (SPACE_RESERVE), so
that whoever opens the session next (another worker, a later run) knows it too.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..schema import MessageSpec
from ..wire import Counters
from . import layout, manifest, recovery, requestlog, tables
from .ahead import StoredAhead
from .calibration import HEADER as CALIBRATION_HEADER
from .calibration import Calibrations, header_bytes
from .compression import RawImageMode, blob_level, image_row_bytes, is_raw_image
from .manifest import SEQUENCED_VERBATIM, TDM_STREAM, SessionState
from .stream import RollPolicy, StreamStats, StreamWriter
from .timemap import TdmSummary

# Room set aside in a session folder being recorded: some ten times a manifest (4 to 6 kB).
SPACE_RESERVE_BYTES = 64 << 10


class SessionWriter:
    def __init__(self, path: Path, state: SessionState, policy: RollPolicy, *, release=None, on_close=None,
                 raw_images: RawImageMode | None = None):
        self.path = path
        self._state = state
        self._policy = policy
        self._raw_images = raw_images or RawImageMode(policy.raw_images)
        self._streams: dict[str, StreamWriter] = {}
        self._calibrations = Calibrations(path, state.calibrations, sync=policy.sync)
        self._raw_chunk = 0  # chunks of the open request's raw body so far
        self._raw_offset = 0
        self._release = release  # the Store's: counts down openers, says whether this was the last
        self._on_close = on_close
        self.finished_event = threading.Event()
        self._closed = False
        self._changed = False  # since the manifest was last written
        self._wrote_decoded = False  # the open request went through write() (a version-1 body)
        self.openers = 1  # Store.open_writer() of an open session shares this writer
        self._tdm = state.tdm()
        self._ahead = StoredAhead(state.stored_ahead)
        # The storage error that stopped this writer; the next call repairs the folder first.
        self._stopped_by: OSError | None = None
        # Told what is stored, so that it can publish it once flushed (the server's live feed:
        # recorder/server/feed.py SessionFeed); None: nobody is told.
        self.feed = None
        state.state = manifest.RECORDING
        errors = state.storage_errors
        if errors is not None and errors.get("resumed_wall_time_ns") is None:
            # A storage error stopped the session's previous writer (here or in another worker),
            # and recovery has just repaired the folder for this one: recording resumes now.
            errors["resumed_wall_time_ns"] = time.time_ns()
        manifest.save(path, state, sync=policy.sync)  # "recording" on disk before any data is
        self._set_space_aside()

    @property
    def highest_sequence(self) -> int | None:
        return self._state.highest_sequence

    @property
    def state(self) -> str:
        return self._state.state

    @property
    def last_wall_time_ns(self) -> int | None:
        """When the session's latest request began (time.time_ns() of its server)."""
        return self._state.last_wall_time_ns

    @property
    def storage_errors(self) -> dict | None:
        """The manifest's summary of this session's storage errors (None: there were none)."""
        return self._state.storage_errors

    @property
    def stopped(self) -> bool:
        """A storage error stopped the writer; the next call tries to resume it."""
        return self._stopped_by is not None

    # -- storage errors -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _storing(self):
        """Around every call that writes: resume a writer a storage error stopped, and stop it
        on a new one (the error is raised on, for the server to answer the device)."""
        if self._stopped_by is not None:
            self._resume()
        try:
            yield
        except OSError as exc:
            self._stop(exc)
            raise

    def _stop(self, exc: OSError) -> None:
        if exc is self._stopped_by:
            return  # a call inside another that writes: noted once
        if self._stopped_by is None:
            for stream in self._streams.values():
                stream.abandon()
            self._streams.clear()
            if self.feed is not None:
                self.feed.dropped()  # what it held was never stored: the resends bring it again
        self._stopped_by = exc
        manifest.note_storage_error(self._state, exc, time.time_ns(), stopped=True)
        self._tell_the_manifest_on_disk()

    def _set_space_aside(self) -> None:
        try:
            with open(self.path / layout.SPACE_RESERVE, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, SPACE_RESERVE_BYTES)
        except OSError:
            pass  # a disk already full has no room to set aside: the manifest learns of it later

    def _tell_the_manifest_on_disk(self) -> None:
        """The manifest on disk gains the storage errors, and nothing else: what is in memory
        no longer matches the files (its highest sequence may count records never stored), the
        manifest on disk does. It is written into the room set aside, so it reaches a full disk
        too, before any other writer can take that room."""
        try:
            state = manifest.load(self.path)
            if state is None:
                return
            state.storage_errors = self._state.storage_errors
            manifest.save(self.path, state, sync=self._policy.sync, room=self.path / layout.SPACE_RESERVE)
        except OSError:
            pass  # best effort: the writer's next call saves it, when there is room

    def _resume(self) -> None:
        """Repair the folder as after a crash, then go on from what its files hold: rows and blob
        bytes a failed write left half written are cut, and the highest sequence is the one the
        manifest last saved (records stored above it are kept, and not stored twice)."""
        stopped = self._stopped_by
        errors = self._state.storage_errors
        try:
            recovery.recover(self.path, sync=self._policy.sync)
            state = manifest.load(self.path)
            if state is None:
                raise OSError(f"the manifest of {self.path} cannot be read after its repair")
            state.storage_errors = {**errors, "resumed_wall_time_ns": time.time_ns()}
            state.state = manifest.RECORDING
            manifest.save(self.path, state, sync=self._policy.sync)
        except OSError as exc:
            self._stopped_by = exc
            manifest.note_storage_error(self._state, exc, time.time_ns(), stopped=False)
            self._tell_the_manifest_on_disk()
            raise exc from stopped
        self._state = state
        self._calibrations = Calibrations(self.path, state.calibrations, sync=self._policy.sync)
        self._tdm = state.tdm()
        self._ahead = StoredAhead(state.stored_ahead)
        self._raw_chunk = self._raw_offset = 0
        self._wrote_decoded = False
        self._changed = False
        self._stopped_by = None
        self._set_space_aside()

    # -- requests -----------------------------------------------------------------------------

    def begin_request(self, headers: dict[str, str], remote: str, wall_time_ns: int) -> None:
        with self._storing():
            self._begin_request(headers, remote, wall_time_ns)

    def _begin_request(self, headers: dict[str, str], remote: str, wall_time_ns: int) -> None:
        state = self._state
        if state.open_request is not None:  # the previous one never ended: close its books
            self._end_request(state.request_counters, wall_time_ns, interrupted=True)
        n = state.requests
        state.requests += 1
        state.open_request = n
        state.request_counters = Counters()
        self._raw_chunk = self._raw_offset = 0
        self._wrote_decoded = False
        self._changed = True
        state.see_wall_time(wall_time_ns)
        plain = {k.lower(): v for k, v in headers.items() if k.lower() != CALIBRATION_HEADER}
        plain = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in plain.items()}
        calibration_file = None
        for k, v in headers.items():
            if k.lower() == CALIBRATION_HEADER:
                calibration_file = self._calibrations.receive(v, n)
                state.calibrations = self._calibrations.entries
                if self.feed is not None:
                    self.feed.calibration(header_bytes(v))
        state.headers = plain
        build = plain.get("device-build")
        if build is not None:
            state.device_build = build
            if build not in state.builds:
                state.builds.append(build)
        requestlog.append(self.path, {"event": "begin", "request": n, "wall_time_ns": wall_time_ns, "remote": remote,
                                      "headers": plain, "calibration": calibration_file}, sync=self._policy.sync)

    def end_request(self, counters: Counters, wall_time_ns: int, *, interrupted: bool = False) -> None:
        with self._storing():
            self._end_request(counters, wall_time_ns, interrupted=interrupted)

    def _end_request(self, counters: Counters, wall_time_ns: int, *, interrupted: bool = False) -> None:
        state = self._state
        n = state.open_request
        if n is None:
            return
        if self._raw_chunk and not self._wrote_decoded:
            # A body that is not version 1: its bytes are counted under raw_bodies, not again
            # among the decoder's (the server hands in Counters(bytes=...) for it).
            counters = Counters(**{**counters.as_dict(), "bytes": 0})
        state.counters.add(counters)  # the request's own counters replace what write() summed
        state.request_counters = Counters()
        state.open_request = None
        state.see_wall_time(wall_time_ns)
        self._changed = True
        entry = {"event": "end", "request": n, "wall_time_ns": wall_time_ns, "counters": counters.as_dict(),
                 "raw_chunks": self._raw_chunk, "raw_bytes": self._raw_offset}
        if interrupted:
            entry["interrupted"] = True
        requestlog.append(self.path, entry, sync=self._policy.sync)

    def _request(self) -> int:
        """The open request's number; data outside begin/end counts as a request of its own."""
        if self._state.open_request is None:
            self._begin_request({}, "", time.time_ns())
        return self._state.open_request

    # -- data ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"session {self.path} is closed; open it again to append")

    def write(self, batch) -> None:
        self._check_open()
        with self._storing():
            self._write(batch)

    def _write(self, batch) -> None:
        request = self._request()
        self._wrote_decoded = True
        self._changed = True
        for block in batch.samples:
            self._samples(block.message, block.samples, block.sequence, block.source)
        for blob in batch.blobs:
            self._blob(blob)
        for record in batch.verbatim:
            self._verbatim(record, request)
        for corrupt in batch.corrupt:
            self._corrupt(corrupt, request)
        self._state.request_counters.add(batch.counters)
        if self._ahead:
            self._ahead.passed(self._state.highest_sequence)
            self._state.stored_ahead = self._ahead.ranges()

    def _stream(self, name: str, schema: pa.Schema, kind: str, message: str) -> StreamWriter:
        writer = self._streams.get(name)
        if writer is None:
            stats = self._state.streams.get(name)
            if stats is None:
                stats = self._state.streams[name] = StreamStats(kind, message)
            writer = self._streams[name] = StreamWriter(self.path / name, schema, stats, self._policy)
            if kind in ("samples", "blob"):
                writer.on_written = functools.partial(self._written, name, kind)
        return writer

    def _written(self, name: str, kind: str, batch: pa.RecordBatch) -> None:
        if self.feed is not None:
            (self.feed.rows if kind == "samples" else self.feed.index_rows)(name, batch)

    def _samples(self, spec: MessageSpec, samples: np.ndarray, sequence: np.ndarray, source: np.ndarray) -> None:
        if not len(samples):
            return
        self._state.see_sequence(int(sequence.max()))
        if self._ahead:
            # Stored before a crash, after the last flush (ahead.py). Their counters were lost with
            # the crash, so the decoder counting them now is right: they are only not stored again.
            new = self._ahead.new(sequence)
            if not new.all():
                samples, sequence, source = samples[new], sequence[new], source[new]
                if not len(samples):
                    return
        schema = tables.sample_schema(spec)
        codes, inverse = np.unique(source, return_inverse=True)
        labels = [spec.source_label(int(c)) for c in codes]
        if spec.split_by_source and len(codes) > 1:
            for k, label in enumerate(labels):
                mask = inverse == k
                rows = tables.sample_batch(spec, samples[mask], sequence[mask],
                                           tables.labels_array(np.zeros(int(mask.sum()), np.int32), [label]))
                self._add_rows(layout.sample_stream(spec, label), schema, spec.name, rows)
        else:
            rows = tables.sample_batch(spec, samples, sequence, tables.labels_array(inverse, labels))
            self._add_rows(layout.sample_stream(spec, labels[0]), schema, spec.name, rows)
        if spec.stream == TDM_STREAM:
            self._see_tdm(samples)

    def _add_rows(self, name: str, schema: pa.Schema, message: str, rows: pa.RecordBatch) -> None:
        self._stream(name, schema, "samples", message).add(rows)

    def _see_tdm(self, samples: np.ndarray) -> None:
        capture = samples["capture_timestamp_ns"].astype(np.int64)
        offset = samples["broadcaster_timestamp_ns"].astype(np.int64) - capture
        self._tdm.add(capture, offset, samples["broadcaster_id"])
        self._state.streams[TDM_STREAM].extra["tdm"] = self._tdm.as_dict()

    def _blob(self, blob) -> None:
        spec: MessageSpec = blob.message
        self._state.see_sequence(blob.sequence)
        if self._ahead.stored(blob.sequence):
            return
        stream = self._stream(blob.label, tables.blob_schema(spec.prefix), "blob", spec.prefix.name)
        row = {"timestamp_ns": blob.timestamp_ns, "sequence": blob.sequence, "source": blob.label,
               "message_id": spec.id, **blob.prefix}
        codec = blob.prefix.get("codec")
        raw_images = self._raw_images.now()
        level = blob_level(spec.prefix.name, codec, self._policy.blob_level, raw_images)
        rows = image_row_bytes(spec.prefix.name, blob.prefix, len(blob.data), raw_images)
        stored_for_want_of_cpu = raw_images == "store" and self._raw_images.choice == "auto"
        if stored_for_want_of_cpu and is_raw_image(spec.prefix.name, codec):
            self._raw_images.stored(len(blob.data))
        stored = stream.add_blob(blob.data, row, level, rows)  # completes `row` with where the bytes went
        if self.feed is not None:
            self.feed.blob(blob.label, stored)

    def _verbatim_stream(self) -> StreamWriter:
        return self._stream(layout.VERBATIM_STREAM, tables.VERBATIM_SCHEMA, "verbatim", "verbatim")

    def _verbatim(self, record, request: int) -> None:
        if record.reason in SEQUENCED_VERBATIM and record.sequence is not None:
            self._state.see_sequence(record.sequence)
            if self._ahead.stored(record.sequence):
                return
        self._verbatim_stream().add_blob(record.data, {
            "timestamp_ns": record.timestamp_ns, "sequence": record.sequence, "reason": record.reason,
            "detail": record.detail, "message_id": record.message_id, "flags": record.flags,
            "request": request, "body_offset": None})

    def _corrupt(self, corrupt, request: int) -> None:
        self._verbatim_stream().add_blob(corrupt.data, {
            "timestamp_ns": None, "sequence": None, "reason": "corrupt",
            "detail": f"{len(corrupt.data)} bytes skipped looking for the next record",
            "message_id": None, "flags": None, "request": request, "body_offset": corrupt.offset})

    def write_raw(self, data: bytes, wall_time_ns: int) -> None:
        """One chunk of a body that is not version 1, as it arrived."""
        self._check_open()
        with self._storing():
            self._write_raw(data, wall_time_ns)

    def _write_raw(self, data: bytes, wall_time_ns: int) -> None:
        request = self._request()
        self._changed = True
        stream = self._stream(layout.RAW_BODY_STREAM, tables.RAW_BODY_SCHEMA, "raw", "raw-body")
        stream.add_blob(data, {"request": request, "chunk": self._raw_chunk, "body_offset": self._raw_offset,
                               "wall_time_ns": wall_time_ns})
        raw = self._state.raw
        if self._raw_chunk == 0:
            raw["requests"] += 1
        raw["chunks"] += 1
        raw["bytes"] += len(data)
        self._raw_chunk += 1
        self._raw_offset += len(data)
        self._state.see_wall_time(wall_time_ns)

    # -- durability ---------------------------------------------------------------------------

    def flush(self) -> None:
        """After this returns, everything written so far is in the files (and with sync on the
        disk); parts that are old or big enough are finished; the manifest is current."""
        with self._storing():
            self._flush()

    def _flush(self) -> None:
        now = time.monotonic()
        for stream in self._streams.values():
            stream.flush()
            if stream.due(now):
                stream.roll()
                self._changed = True
        if self._changed:
            manifest.save(self.path, self._state, sync=self._policy.sync)
            self._changed = False
        if self.feed is not None:
            self.feed.flushed()

    def close(self) -> None:
        """Finish the session: every part becomes Parquet, the manifest says "finished". With
        several openers, only the last close() finishes it (the others flush)."""
        if self._closed:
            return
        last = self._release(self) if self._release is not None else True
        if not last:
            self.flush()
            return
        try:
            with self._storing():
                state = self._state
                if state.open_request is not None:
                    self._end_request(state.request_counters, time.time_ns(), interrupted=True)
                for stream in self._streams.values():
                    stream.close()
                self._streams.clear()
                state.state = manifest.FINISHED
                manifest.save(self.path, state, sync=self._policy.sync)
                (self.path / layout.SPACE_RESERVE).unlink(missing_ok=True)
            if self.feed is not None:
                self.feed.flushed()
                self.feed.closed()
        finally:
            # Even when finishing failed (a full disk, say), this writer lets go of the folder:
            # the next Store.open_writer() recovers it instead of waiting for this one forever.
            self._closed = True
            if self._on_close is not None:
                self._on_close(self)
            else:
                self.finished_event.set()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- status -------------------------------------------------------------------------------

    def stats(self) -> dict:
        """A cheap snapshot for /status (no file access)."""
        state = self._state
        counters = state.total_counters()
        first, last = state.device_time_range()
        tdm = TdmSummary(self._tdm.as_dict()).manifest()
        streams = sorted(list(state.streams.items()))  # see SessionState: another thread may add one
        return {
            "path": str(self.path),
            "state": state.state,
            "highest_sequence": state.highest_sequence,
            "requests": state.requests,
            "bytes": sum(s.bytes for _, s in streams),
            "received_bytes": counters.bytes + state.raw["bytes"],
            "records": counters.records,
            "samples": counters.samples,
            "blobs": counters.blobs,
            "streams": {name: {"rows": s.rows, "bytes": s.bytes, "first_timestamp_ns": s.first_timestamp_ns,
                               "last_timestamp_ns": s.last_timestamp_ns}
                        for name, s in streams},
            "first_device_time_ns": first,
            "last_device_time_ns": last,
            "gaps": counters.gaps,
            "resends": counters.resends,
            "corrupt_bytes": counters.corrupt_bytes,
            "malformed": counters.malformed,
            "opaque": counters.opaque,
            "bad_crc": counters.bad_crc,
            "truncated": counters.truncated,
            "oversized": counters.oversized,
            "reserved_flags": counters.reserved_flags,
            "raw_bytes": state.raw["bytes"],
            "tdm": tdm,
            "camera_frames": state.camera_frames(),
        }
