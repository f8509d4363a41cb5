"""A stored session's records as its device sent them, one by one, re-encoded from storage.

    import recorder
    from recorder.restream import records

    with recorder.open_session(path) as session:
        for record in records(session):
            record.message_id, record.sequence, record.timestamp_ns, bytes(record)

Records come in the order the device sent them, request by request: decoded records (samples,
camera frames, audio) rebuilt bit for bit from their stored fields, reserved ones included;
verbatim records (opaque, unknown id, malformed, bad CRC, reserved flags, oversized, truncated)
with their stored bytes; runs of corrupt bytes (`kind` "corrupt") where they were in their
body. Bodies that were not version 1 are not records: see Session.raw_bodies(). What a rebuilt
record cannot restore (a sample record's header time, count-0 records) is said in rebuild.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..reading.session import Session
from .bodies import KIND_NAMES, SessionBodies

PIECE_BYTES = 1 << 20  # records are written out this many bytes at a time


@dataclass(frozen=True)
class Record:
    """One record (or one run of corrupt bytes) of a session, whole: header and payload."""

    kind: str  # samples, blob, verbatim or corrupt
    message_id: int | None  # None where the bytes did not reach the header field (and for corrupt)
    flags: int | None
    sequence: int | None
    timestamp_ns: int | None  # the header's time (a sample record: its first sample's)
    request: int  # the request of the session it came in
    data: bytes

    def __bytes__(self) -> bytes:
        return self.data

    def __len__(self) -> int:
        return len(self.data)


def records(session: Session | SessionBodies) -> Iterator[Record]:
    """Every record of the session in the order its device sent them."""
    bodies = session if isinstance(session, SessionBodies) else SessionBodies(session)
    items = bodies.items
    for start, stop in pieces(items.length, PIECE_BYTES):
        data = memoryview(bodies.body(start, stop))
        offsets = np.r_[0, np.cumsum(items.length[start:stop])].tolist()
        for k, i in enumerate(range(start, stop)):
            known = bool(items.known[i])
            yield Record(
                kind=KIND_NAMES[int(items.kind[i])],
                message_id=None if items.message_id[i] < 0 else int(items.message_id[i]),
                flags=None if items.flags[i] < 0 else int(items.flags[i]),
                sequence=int(items.sequence[i]) if known else None,
                timestamp_ns=int(items.timestamp_ns[i]) if known else None,
                request=int(items.request[i]),
                data=bytes(data[offsets[k]:offsets[k + 1]]))


def pieces(lengths: np.ndarray, piece_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges of about piece_bytes each (at least one record each)."""
    ends = np.cumsum(lengths)
    start = 0
    while start < len(lengths):
        before = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, before + piece_bytes, side="right")))
        yield start, stop
        start = stop
