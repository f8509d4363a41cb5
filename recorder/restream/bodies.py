"""A stored session laid out again as the requests its device sent: each request's headers and
its body, record by record in the original order, ready to be written out in pieces.

Storage keeps which request each verbatim record, corrupt run and raw chunk came in, but not
which request a decoded record (samples, blob) came in. Decoded records that were stored have
sequences that grow in arrival order (a record at or below the highest one stored is a resend
and is not stored), so sorted by sequence they are in arrival order, and each request's end
line in requests.jsonl says how many it carried: the first so many belong to the first request,
and so on. Within a request, verbatim records go where their sequence puts them (a record cut
off by the end of the body goes last), and corrupt runs go back at their body offset.

A request whose end line was lost (a crash) has no count: decoded records left over go to the
last version-1 request. A sample record with count 0 is counted but leaves no row (rebuild.py):
its request's count is then one more than the rows it left, so the next request's first
decoded record is sent in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..reading.session import RawBody, Session
from ..schema import load
from ..storage import layout
from ..storage.calibration import HEADER as CALIBRATION_HEADER
from ..storage.tables import MESSAGE_KEY, schema_kind
from .rebuild import BlobRecords, SampleRecords, blob_records, sample_records

SAMPLES, BLOB, VERBATIM, CORRUPT = 0, 1, 2, 3
KIND_NAMES = ("samples", "blob", "verbatim", "corrupt")
# Headers that belong to one HTTP connection or framing, not to the device's session: the
# sending client writes its own.
HOP_BY_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
                        "trailer", "upgrade", "expect", "proxy-connection", "proxy-authorization"})
# Device time between two records longer than this is shortened to it when pacing, so that one
# record with a wild timestamp does not hold the replay for ever.
LONGEST_PAUSE_NS = 10 * 10**9


@dataclass
class Request:
    """One request of the session: its headers, and either a range of the session's records
    (`start`..`stop` in send order) or a body that was not version 1 (`raw`)."""

    number: int
    headers: list[tuple[str, bytes]]
    start: int = 0
    stop: int = 0
    raw: RawBody | None = None
    decoded_records: int | None = None  # as the request log's end line counts them

    @property
    def records(self) -> int:
        return self.stop - self.start


@dataclass
class Items:
    """Per record (or corrupt run) of the session, in send order."""

    kind: np.ndarray  # int8: SAMPLES, BLOB, VERBATIM, CORRUPT
    source: np.ndarray  # int32: which rebuilt stream (or for verbatim, unused)
    row: np.ndarray  # int64: row in its source (sample records: in its count group)
    group: np.ndarray  # int32: sample records' global count group; -1 otherwise
    request: np.ndarray  # int64
    sequence: np.ndarray  # uint64 (0 where unknown)
    timestamp_ns: np.ndarray  # int64 (0 where unknown)
    known: np.ndarray  # bool: sequence and timestamp_ns came with the record
    message_id: np.ndarray  # int32 (-1 where unknown)
    flags: np.ndarray  # int32 (-1 where unknown)
    length: np.ndarray  # int64: bytes in the body
    pace_ns: np.ndarray  # int64: device time since the session's first record, for pacing

    def take(self, order: np.ndarray) -> Items:
        return Items(**{name: getattr(self, name)[order] for name in self.__dataclass_fields__})

    def __len__(self) -> int:
        return len(self.kind)


def _concat(parts: list[dict]) -> Items:
    names = Items.__dataclass_fields__
    return Items(**{n: np.concatenate([p[n] for p in parts]) if parts else np.empty(0) for n in names})


def _part(kind: int, n: int, **columns) -> dict:
    part = {"kind": np.full(n, kind, np.int8), "source": np.full(n, -1, np.int32), "row": np.arange(n, dtype=np.int64),
            "group": np.full(n, -1, np.int32), "request": np.zeros(n, np.int64),
            "sequence": np.zeros(n, np.uint64), "timestamp_ns": np.zeros(n, np.int64), "known": np.ones(n, bool),
            "message_id": np.full(n, -1, np.int32), "flags": np.full(n, -1, np.int32),
            "length": np.zeros(n, np.int64), "pace_ns": np.zeros(n, np.int64)}
    for name, values in columns.items():
        part[name] = np.broadcast_to(np.asarray(values), (n,)).astype(part[name].dtype)  # a scalar: every row
    return part


class SessionBodies:
    """Everything a session's device sent, ready to send again: `requests` in order, and
    `body(start, stop)`, the bytes of records start..stop (send order)."""

    def __init__(self, session: Session):
        self.session = session
        self.samples: list[SampleRecords] = []
        self.blobs: list[BlobRecords] = []
        self.groups: list[np.ndarray] = []  # every sample count group of every sample stream
        self.verbatim: pa.Table | None = None
        decoded, verbatim = self._read_streams()
        self.items, self.requests = self._lay_out(decoded, verbatim)

    # -- reading ------------------------------------------------------------------------------

    def _read_streams(self) -> tuple[list[dict], dict | None]:
        session, schema = self.session, load()
        decoded, verbatim = [], None
        for stream in session.streams():
            stored = session.schema(stream)
            kind = schema_kind(stored)
            if kind == "samples":
                spec = schema.message((stored.metadata or {})[MESSAGE_KEY].decode())
                rebuilt = sample_records(spec, session.table(stream, columns=stored.names))
                decoded.append(_part(SAMPLES, len(rebuilt), source=len(self.samples), row=rebuilt.row,
                                     group=len(self.groups) + rebuilt.group, sequence=rebuilt.sequence,
                                     timestamp_ns=rebuilt.timestamp_ns, message_id=np.full(len(rebuilt), spec.id),
                                     flags=np.zeros(len(rebuilt)), length=rebuilt.length))
                self.samples.append(rebuilt)
                self.groups += rebuilt.groups
            elif kind == "blob":
                rebuilt = blob_records(stream, session.table(stream, columns=stored.names))
                decoded.append(_part(BLOB, len(rebuilt), source=len(self.blobs), sequence=rebuilt.sequence,
                                     timestamp_ns=rebuilt.timestamp_ns, message_id=rebuilt.message_id,
                                     flags=np.zeros(len(rebuilt)), length=rebuilt.length))
                self.blobs.append(rebuilt)
            elif kind == "verbatim":
                self.verbatim = session.table(stream, columns=stored.names)
                verbatim = self._verbatim_part(self.verbatim)
        return decoded, verbatim

    @staticmethod
    def _verbatim_part(table: pa.Table) -> dict:
        def values(name, fill, as_type=None):
            column = table.column(name) if as_type is None else table.column(name).cast(as_type)
            return column.fill_null(fill).to_numpy()

        corrupt = values("reason", "") == "corrupt"
        known = table.column("sequence").is_valid().to_numpy(zero_copy_only=False) & \
            table.column("timestamp_ns").is_valid().to_numpy(zero_copy_only=False)
        part = _part(VERBATIM, table.num_rows, request=values("request", 0), sequence=values("sequence", 0),
                     timestamp_ns=values("timestamp_ns", 0), known=known, message_id=values("message_id", -1, pa.int32()),
                     flags=values("flags", -1, pa.int32()), length=values("size", 0))
        part["kind"][corrupt] = CORRUPT
        part["reason"] = values("reason", "")
        part["body_offset"] = values("body_offset", 0).astype(np.int64)
        return part

    # -- laying out ---------------------------------------------------------------------------

    def _lay_out(self, decoded: list[dict], verbatim: dict | None) -> tuple[Items, list[Request]]:
        requests = self._requests()
        if decoded:
            items = _concat(decoded)
            items = items.take(np.argsort(items.sequence, kind="stable"))  # arrival order
            items.request[:] = self._request_of_decoded(requests, len(items))
        else:
            items = _concat([_part(SAMPLES, 0)])
        last = np.zeros(len(items), bool)
        corrupt = None
        if verbatim is not None:
            reason, offsets = verbatim.pop("reason"), verbatim.pop("body_offset")
            kept = verbatim["kind"] != CORRUPT
            records = Items(**{k: v[kept] for k, v in verbatim.items()})
            corrupt = (Items(**{k: v[~kept] for k, v in verbatim.items()}), offsets[~kept])
            items = _concat([items.__dict__, records.__dict__])
            # A record cut off by the end of its body ended that body: it goes last.
            last = np.r_[last, (reason[kept] == "truncated") | ~records.known]
        # per request, by sequence; decoded before verbatim at the same sequence (a damaged copy)
        order = np.lexsort((items.kind, items.sequence, last, items.request))
        items = items.take(order)
        if corrupt is not None and len(corrupt[0]):
            items = self._insert_corrupt(items, *corrupt)
        items.pace_ns[:] = pace(items)
        bounds = np.searchsorted(items.request, [r.number for r in requests] + [np.iinfo(np.int64).max])
        for r, start, stop in zip(requests, bounds[:-1], bounds[1:], strict=True):
            r.start, r.stop = int(start), int(stop)
        return items, requests

    @staticmethod
    def _insert_corrupt(items: Items, corrupt: Items, offsets: np.ndarray) -> Items:
        """Corrupt runs back where they were in their body: before the first record that
        started at or after their body offset (records are laid out again byte for byte, so
        their offsets are the original ones)."""
        n = len(items)
        runs: dict[int, list[int]] = {}
        for c in np.argsort(offsets, kind="stable").tolist():
            runs.setdefault(int(corrupt.request[c]), []).append(c)
        numbers = sorted(set(items.request.tolist()) | set(runs))
        starts = np.searchsorted(items.request, numbers, "left")
        stops = np.searchsorted(items.request, numbers, "right")
        order: list[int] = []
        for number, start, stop in zip(numbers, starts.tolist(), stops.tolist(), strict=True):
            mine = runs.get(number, [])
            if not mine:
                order.extend(range(start, stop))
                continue
            position, k = 0, 0
            for i in range(start, stop):
                while k < len(mine) and offsets[mine[k]] <= position:
                    order.append(n + mine[k])
                    position += int(corrupt.length[mine[k]])
                    k += 1
                order.append(i)
                position += int(items.length[i])
            order.extend(n + c for c in mine[k:])
        return _concat([items.__dict__, corrupt.__dict__]).take(np.asarray(order, np.int64))

    def _requests(self) -> list[Request]:
        session = self.session
        raw = {body.request: body for body in session.raw_bodies()}
        logged = session.requests()
        if not logged:  # no request log: one request with the manifest's headers
            headers = dict(session.manifest.get("headers") or {})
            headers.setdefault("session-id", session.session_id)
            headers.setdefault("device-serial", session.serial)
            return [Request(0, _header_list(headers, session.calibration_bytes))]
        out = []
        for entry in logged:
            number = entry["request"]
            calibration = entry.get("calibration")
            calibration_bytes = (session.path / calibration).read_bytes() if calibration else None
            end = entry.get("end") or {}
            out.append(Request(number, _header_list(entry.get("headers") or {}, calibration_bytes),
                               raw=raw.get(number), decoded_records=(end.get("counters") or {}).get("records")))
        return out

    @staticmethod
    def _request_of_decoded(requests: list[Request], n: int) -> np.ndarray:
        """Which request each decoded record (in sequence order) came in: the first so many,
        as the request log counts them, in the first request, and so on."""
        carrying = [r for r in requests if r.raw is None] or requests[:1]
        numbers = np.array([r.number for r in carrying], np.int64)
        counts = np.array([r.decoded_records or 0 for r in carrying], np.int64)
        which = np.searchsorted(np.cumsum(counts), np.arange(n), side="right")
        return numbers[np.minimum(which, len(numbers) - 1)]

    # -- writing out --------------------------------------------------------------------------

    def body(self, start: int, stop: int) -> bytes:
        """The bytes of records start..stop (send order), back to back: sample records copied
        from their rebuilt groups in one fancy-indexed copy per group."""
        items = self.items
        lengths = items.length[start:stop]
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        out = np.empty(int(offsets[-1]), np.uint8)
        kinds = items.kind[start:stop]
        groups = items.group[start:stop]
        rows = items.row[start:stop]
        for g in np.unique(groups[kinds == SAMPLES]).tolist():
            members = np.flatnonzero((kinds == SAMPLES) & (groups == g))
            records = self.groups[g][rows[members]]
            width = records.shape[1]
            out[(offsets[members][:, None] + np.arange(width)).ravel()] = records.ravel()
        for k in np.flatnonzero(kinds != SAMPLES).tolist():
            data = self._whole(start + k)
            out[offsets[k]:offsets[k + 1]] = np.frombuffer(data, np.uint8)
        return out.tobytes()

    def _whole(self, i: int) -> bytes:
        items = self.items
        kind = int(items.kind[i])
        if kind == BLOB:
            blobs = self.blobs[int(items.source[i])]
            return blobs.record(int(items.row[i]), self.session.blob(blobs.stream, int(items.row[i])))
        return self.session.blob(layout.VERBATIM_STREAM, int(items.row[i]))


def _header_list(headers: dict, calibration: bytes | None) -> list[tuple[str, bytes]]:
    out = [(k, v.encode("latin-1") if isinstance(v, str) else bytes(v)) for k, v in headers.items()
           if k.lower() not in HOP_BY_HOP and k.lower() != CALIBRATION_HEADER]
    if calibration is not None:
        out.append((CALIBRATION_HEADER, calibration))
    return out


def pace(items: Items) -> np.ndarray:
    """Device time since the session's first record, per record: decoded records' own times,
    never going back, pauses shortened to LONGEST_PAUSE_NS; verbatim records and corrupt runs
    (whose times may be damaged) go with the record before them."""
    trusted = (items.kind == SAMPLES) | (items.kind == BLOB)
    if not trusted.any():
        return np.zeros(len(items), np.int64)
    # The latest time so far: records of several sensors interleave a little out of time order,
    # and stepping back and forth between them must not add up to more than the session lasted.
    latest = np.maximum.accumulate(items.timestamp_ns[trusted].astype(np.int64))
    steps = np.minimum(np.diff(latest), LONGEST_PAUSE_NS)
    paced = np.r_[0, np.cumsum(steps)]
    out = np.zeros(len(items), np.int64)
    out[trusted] = paced
    return np.maximum.accumulate(out)
