"""Writes version-1 records: used by the simulator, the tests and replay.

`record()` writes one record from a payload. `sample_payload()` and `blob_payload()` lay out
payloads from the schema. `SampleRecords` builds many sample records of one stream at once
(vectorised) and `interleave()` merges several such streams into one body in timestamp order,
numbering the sequence as a device does.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..schema import MessageSpec, PrefixSpec, Schema, load
from .crc import crc32_rows

_HEADER = struct.Struct("<4sHHIIQq")
_SAMPLE_PREFIX = struct.Struct("<HH")


def record(message_id: int, payload: bytes, *, sequence: int, timestamp_ns: int, flags: int = 0,
           crc: int | None = None, payload_length: int | None = None, magic: bytes = b"SRF1") -> bytes:
    """One record. `crc`, `payload_length` and `magic` may be overridden to write bad records."""
    length = len(payload) if payload_length is None else payload_length
    checksum = zlib.crc32(payload) if crc is None else crc
    return _HEADER.pack(magic, message_id, flags, length, checksum, sequence, timestamp_ns) + bytes(payload)


def header(message_id: int, payload_length: int, crc: int, sequence: int, timestamp_ns: int, flags: int = 0) -> bytes:
    return _HEADER.pack(b"SRF1", message_id, flags, payload_length, crc, sequence, timestamp_ns)


def as_samples(spec: MessageSpec, samples) -> np.ndarray:
    """Samples as the message's packed dtype, from a structured array or a dict of columns."""
    if isinstance(samples, np.ndarray) and samples.dtype == spec.dtype:
        return samples
    if isinstance(samples, dict):
        n = len(next(iter(samples.values())))
        out = np.zeros(n, spec.dtype)
        for name, column in samples.items():
            out[name] = column
        return out
    out = np.zeros(len(samples), spec.dtype)
    for name in spec.dtype.names:
        out[name] = samples[name]
    return out


def sample_payload(spec: MessageSpec, source: int, samples) -> bytes:
    samples = as_samples(spec, samples)
    return _SAMPLE_PREFIX.pack(source, len(samples)) + samples.tobytes()


def prefix_bytes(prefix_spec: PrefixSpec, values: dict) -> bytes:
    """A blob prefix from field values; fields not given are 0."""
    unknown = set(values) - set(prefix_spec.dtype.names)
    if unknown:
        raise KeyError(f"{prefix_spec.name} has no field(s) {sorted(unknown)}")
    prefix = np.zeros(1, prefix_spec.dtype)
    for name, value in values.items():
        prefix[name] = value
    return prefix.tobytes()


def blob_payload(spec: MessageSpec, prefix: dict, data: bytes) -> bytes:
    return prefix_bytes(spec.prefix, prefix) + bytes(data)


class Encoder:
    """Writes one device session's records, numbering their sequence from `first_sequence`."""

    def __init__(self, schema: Schema | None = None, first_sequence: int = 0):
        self.schema = schema or load()
        self.next_sequence = first_sequence

    def _take_sequence(self) -> int:
        sequence = self.next_sequence
        self.next_sequence += 1
        return sequence

    def samples(self, message: str | int, source: int, samples) -> bytes:
        spec = self.schema.message(message)
        samples = as_samples(spec, samples)
        timestamp = int(samples[spec.time_field][0]) if len(samples) else 0
        return record(spec.id, sample_payload(spec, source, samples),
                      sequence=self._take_sequence(), timestamp_ns=timestamp)

    def blob(self, message: str | int, prefix: dict, data: bytes, timestamp_ns: int) -> bytes:
        spec = self.schema.message(message)
        return record(spec.id, blob_payload(spec, prefix, data), sequence=self._take_sequence(),
                      timestamp_ns=timestamp_ns)

    def opaque(self, message_id: int, payload: bytes, timestamp_ns: int) -> bytes:
        return record(message_id, payload, sequence=self._take_sequence(), timestamp_ns=timestamp_ns, flags=1)


@dataclass
class RecordRows:
    """Whole records of one length, one per row, with their sequence not yet written."""

    rows: np.ndarray  # uint8, (n, record_length)
    timestamps_ns: np.ndarray  # int64, the order in which they interleave with other streams


def sample_records(spec: MessageSpec, source: int, samples, per_record: int = 1) -> list[RecordRows]:
    """Records of `per_record` samples each (the last may hold fewer), built without a Python loop."""
    samples = as_samples(spec, samples)
    n = len(samples)
    out = []
    full, rest = divmod(n, per_record)
    for count, chunk in ((per_record, samples[: full * per_record]), (rest, samples[full * per_record:])):
        if not count or not len(chunk):
            continue
        k = len(chunk) // count
        payload_length = 4 + count * spec.sample_size
        rows = np.empty((k, 32 + payload_length), np.uint8)
        body = rows[:, 32:]
        body[:, 0:2] = np.frombuffer(struct.pack("<H", source), np.uint8)
        body[:, 2:4] = np.frombuffer(struct.pack("<H", count), np.uint8)
        body[:, 4:] = chunk.view(np.uint8).reshape(k, count * spec.sample_size)
        timestamps = chunk[spec.time_field].reshape(k, count)[:, 0].astype(np.int64)
        head = np.zeros(k, np.dtype([("magic", "S4"), ("message_id", "<u2"), ("flags", "<u2"),
                                     ("payload_length", "<u4"), ("crc32", "<u4"),
                                     ("sequence", "<u8"), ("timestamp_ns", "<i8")]))
        head["magic"] = b"SRF1"
        head["message_id"] = spec.id
        head["payload_length"] = payload_length
        head["crc32"] = crc32_rows(body)
        head["timestamp_ns"] = timestamps
        rows[:, :32] = head.view(np.uint8).reshape(k, 32)
        out.append(RecordRows(rows, timestamps))
    return out


def single_record(record_bytes: bytes, timestamp_ns: int) -> RecordRows:
    """A record already written (a blob, say) as a one-row RecordRows for interleave()."""
    rows = np.frombuffer(record_bytes, np.uint8).reshape(1, -1).copy()  # interleave() writes the sequence
    return RecordRows(rows, np.array([timestamp_ns], np.int64))


def interleave(streams: list[RecordRows], first_sequence: int) -> tuple[bytes, int]:
    """Merge records into one body in timestamp order (stable), numbering sequences from
    first_sequence. Returns the body and the number of records."""
    streams = [s for s in streams if len(s.rows)]
    if not streams:
        return b"", 0
    timestamps = np.concatenate([s.timestamps_ns for s in streams])
    which = np.concatenate([np.full(len(s.rows), i) for i, s in enumerate(streams)])
    row = np.concatenate([np.arange(len(s.rows)) for s in streams])
    order = np.argsort(timestamps, kind="stable")
    lengths = np.array([s.rows.shape[1] for s in streams], np.int64)[which[order]]
    offsets = np.zeros(len(order), np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    out = np.empty(int(lengths.sum()), np.uint8)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    for i, s in enumerate(streams):
        mine = np.flatnonzero(which == i)
        positions = rank[mine]
        seqs = (first_sequence + positions).astype("<u8")
        s.rows[row[mine], 16:24] = seqs.view(np.uint8).reshape(-1, 8)
        width = s.rows.shape[1]
        starts = offsets[positions]
        if len(mine) == 1:
            out[starts[0]: starts[0] + width] = s.rows[row[mine][0]]
        else:
            out[(starts[:, None] + np.arange(width)).ravel()] = s.rows[row[mine]].ravel()
    return out.tobytes(), len(order)
