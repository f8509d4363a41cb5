"""Stored rows back into the records they came from, one stream at a time, without a loop per
sample.

A sample stream holds one row per sample; the samples of one record share its `sequence`. The
rows of a record are gathered (stable sort by sequence), its payload rebuilt as the 4-byte
prefix (source, count) and the samples packed with the message's numpy dtype, and its header
written with a fresh CRC. What storage does not keep, and so what a rebuilt record cannot
restore:

- A sample record's header timestamp_ns is not stored: each sample's own time is (schema
  decision "Sample timestamps"). A rebuilt sample record carries its first sample's time, which
  is what a device sends; a device whose header time differed from its first sample's gets a
  record that differs from the original in those 8 header bytes (and nowhere else).
- A sample record with count 0 carries no samples, so it leaves no row: it is not rebuilt, and
  a server sent the rebuilt session counts its sequence as missing.
- Rows are stored in capture order (timestamp_ns, then sequence, stable): the samples of one
  record come back in their original order unless the device sent them with decreasing times.

A blob stream holds one row per record: its prefix fields, header fields and bytes, all of
which are stored, so a blob record is rebuilt byte for byte. Decoded records (samples and blobs)
always had flags 0: any other flag made the record verbatim.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..schema import MessageSpec, load
from ..storage.tables import MESSAGE_KEY
from ..wire.crc import crc32_rows

HEADER_DTYPE = np.dtype([("magic", "S4"), ("message_id", "<u2"), ("flags", "<u2"), ("payload_length", "<u4"),
                         ("crc32", "<u4"), ("sequence", "<u8"), ("timestamp_ns", "<i8")])
HEADER = struct.Struct("<4sHHIIQq")
SAMPLE_PREFIX_SIZE = 4


def column_values(column: pa.ChunkedArray | pa.Array, shape: tuple[int, ...]) -> np.ndarray:
    """A stored column as numpy, fixed-size list columns reshaped to (rows, *shape)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(array.type):
        return array.flatten().to_numpy(zero_copy_only=False).reshape((len(array), *shape))
    return array.to_numpy(zero_copy_only=False)


def fill_structured(dtype: np.dtype, table: pa.Table, rename: dict[str, str] | None = None) -> np.ndarray:
    """A structured array of `dtype` from the table's columns of the same names (a loop over
    fields, not rows)."""
    out = np.zeros(table.num_rows, dtype)
    for name in dtype.names:
        shape = dtype.fields[name][0].shape
        out[name] = column_values(table.column((rename or {}).get(name, name)), shape)
    return out


def source_code(spec: MessageSpec, label: str) -> int:
    """The wire source of a stored source label: the message's table, else its label pattern
    (`imu-{source}` labels source 2 as `imu-2`)."""
    for value, name in spec.sources.items():
        if name == label:
            return value
    pattern = re.escape(spec.source_label_format).replace(re.escape("{source}"), r"(\d+)")
    match = re.fullmatch(pattern, label)
    if not match:
        raise ValueError(f"stored source {label!r} is not a source label of {spec.name}")
    return int(match.group(1))


@dataclass
class SampleRecords:
    """A sample stream's records, rebuilt. Records of the same sample count share one 2-D
    array of whole records (`groups`); record i is groups[group[i]][row[i]]."""

    spec: MessageSpec
    sequence: np.ndarray  # uint64 per record
    timestamp_ns: np.ndarray  # int64 per record: its header time (the first sample's)
    length: np.ndarray  # int64 per record: header and payload
    group: np.ndarray  # int32 per record
    row: np.ndarray  # int64 per record
    groups: list[np.ndarray]  # uint8 (records, length) each

    def __len__(self) -> int:
        return len(self.sequence)


def sample_records(spec: MessageSpec, table: pa.Table) -> SampleRecords:
    """Rebuild the records of a sample stream from its stored rows (every stored column)."""
    n = table.num_rows
    sequence = table.column("sequence").to_numpy()
    order = np.argsort(sequence, kind="stable")  # a record's samples stay in stored order
    sequence = sequence[order]
    # the time field is stored as timestamp_ns (and, when it has another name, under it too)
    samples = fill_structured(spec.dtype, table, {spec.time_field: "timestamp_ns"})[order]
    labels = table.column("source").combine_chunks()
    starts = np.flatnonzero(np.r_[True, sequence[1:] != sequence[:-1]]) if n else np.empty(0, np.int64)
    counts = np.diff(np.r_[starts, n]).astype(np.int64)
    distinct, label_index = np.unique(labels.to_numpy(zero_copy_only=False)[order[starts]], return_inverse=True)
    sources = np.array([source_code(spec, str(label)) for label in distinct], np.uint16)[label_index]

    size = spec.sample_size
    times = samples[spec.time_field].astype(np.int64)
    group = np.zeros(len(starts), np.int32)
    row = np.zeros(len(starts), np.int64)
    groups = []
    for g, count in enumerate(np.unique(counts).tolist()):
        members = np.flatnonzero(counts == count)
        group[members] = g
        row[members] = np.arange(len(members))
        payload_length = SAMPLE_PREFIX_SIZE + count * size
        rows = np.empty((len(members), 32 + payload_length), np.uint8)
        body = rows[:, 32:]
        prefix = np.empty(len(members), np.dtype([("source", "<u2"), ("count", "<u2")]))
        prefix["source"] = sources[members]
        prefix["count"] = count
        body[:, :SAMPLE_PREFIX_SIZE] = prefix.view(np.uint8).reshape(-1, SAMPLE_PREFIX_SIZE)
        which = starts[members][:, None] + np.arange(count)
        body[:, SAMPLE_PREFIX_SIZE:] = samples[which].view(np.uint8).reshape(len(members), count * size)
        head = np.zeros(len(members), HEADER_DTYPE)
        head["magic"] = b"SRF1"
        head["message_id"] = spec.id
        head["payload_length"] = payload_length
        head["crc32"] = crc32_rows(body)
        head["sequence"] = sequence[starts[members]]
        head["timestamp_ns"] = times[starts[members]]
        rows[:, :32] = head.view(np.uint8).reshape(-1, 32)
        groups.append(rows)
    return SampleRecords(spec, sequence[starts], times[starts], 32 + SAMPLE_PREFIX_SIZE + counts * size,
                         group, row, groups)


@dataclass
class BlobRecords:
    """A blob stream's records: header fields and prefix bytes per row; the bytes after the
    prefix are read from storage when a record is written out (`data(i)` gives them)."""

    stream: str
    sequence: np.ndarray  # uint64
    timestamp_ns: np.ndarray  # int64
    message_id: np.ndarray  # uint16
    prefixes: np.ndarray  # uint8 (rows, prefix size)
    size: np.ndarray  # int64: bytes after the prefix

    def __len__(self) -> int:
        return len(self.sequence)

    @property
    def length(self) -> np.ndarray:
        return 32 + self.prefixes.shape[1] + self.size

    def record(self, i: int, data: bytes) -> bytes:
        """Record i whole, given its stored bytes."""
        prefix = self.prefixes[i].tobytes()
        crc = zlib.crc32(data, zlib.crc32(prefix))
        head = HEADER.pack(b"SRF1", int(self.message_id[i]), 0, len(prefix) + len(data), crc,
                           int(self.sequence[i]), int(self.timestamp_ns[i]))
        return head + prefix + data


def blob_records(stream: str, table: pa.Table) -> BlobRecords:
    """The records of a blob stream from its stored index (every stored column, in the order
    Session.blob numbers rows)."""
    prefix_name = (table.schema.metadata or {}).get(MESSAGE_KEY, b"").decode()
    prefix_spec = load().prefixes[prefix_name]
    prefixes = fill_structured(prefix_spec.dtype, table)
    return BlobRecords(stream, table.column("sequence").to_numpy(), table.column("timestamp_ns").to_numpy(),
                       table.column("message_id").to_numpy(),
                       prefixes.view(np.uint8).reshape(table.num_rows, prefix_spec.size),
                       table.column("size").to_numpy().astype(np.int64))
