"""Protobuf messages of one layout for many rows at once, laid out by numpy.

A pose stream is thousands of rows a second, each two small messages (PoseInFrame and
FrameTransform); setting seven fields and serialising costs microseconds a row in Python. Their
layout is fixed once each double is known to be non-zero (proto3 leaves a zero out): a message
is keys and fixed-size values, with varints only in the timestamp. Here a message is a list of
parts, each a column of bytes per row (a constant, fixed-size values, or a field whose length
varies per row: a varint, or nothing when zero); the rows' parts are written into one buffer by
a few numpy operations. Rows with a zero double take protobuf's own serialisation. Tests check
the bytes against protobuf's.
"""

from __future__ import annotations

import numpy as np

WIRE_VARINT, WIRE_FIXED64, WIRE_LENGTH_DELIMITED = 0, 1, 2
VARINT_BYTES = 10  # the most a 64-bit varint takes


def key(number: int, wire_type: int) -> bytes:
    value = number << 3 | wire_type
    return bytes([value]) if value < 0x80 else bytes([value & 0x7F | 0x80, value >> 7])


class Part:
    """One part of every row's message: `data` (rows x width bytes, or 1 x width for all rows)
    and how many of each row's bytes count (`lengths`, per row or one for all)."""

    def __init__(self, data: np.ndarray, lengths: np.ndarray | int):
        self.data = data
        self.lengths = lengths


def constant(value: bytes) -> Part:
    return Part(np.frombuffer(value, np.uint8).reshape(1, -1), len(value))


def fixed64(number: int, values: np.ndarray) -> Part:
    """A double field of every row (the caller knows none is zero: proto3 would leave it out)."""
    rows = len(values)
    data = np.empty((rows, 9), np.uint8)
    data[:, 0] = key(number, WIRE_FIXED64)[0]
    data[:, 1:] = np.ascontiguousarray(values, "<f8").view(np.uint8).reshape(rows, 8)
    return Part(data, 9)


def varint_field(number: int, values: np.ndarray) -> Part:
    """An integer field of every row, left out where it is zero (as proto3 does)."""
    values = np.asarray(values).astype(np.uint64)  # two's complement for negatives, as protobuf
    rows = len(values)
    data = np.zeros((rows, 1 + VARINT_BYTES), np.uint8)
    data[:, 0] = key(number, WIRE_VARINT)[0]
    lengths = np.ones(rows, np.int64)
    rest = values.copy()
    for i in range(VARINT_BYTES):
        more = rest >= 0x80
        data[:, 1 + i] = (rest & np.uint64(0x7F)).astype(np.uint8) | (more.astype(np.uint8) << 7)
        lengths += (rest > 0) | (i == 0)
        rest >>= np.uint64(7)
        if not rest.any():
            break
    lengths[values == 0] = 0
    return Part(data, lengths)


def length_prefix(number: int, lengths: np.ndarray | int) -> Part:
    """The key and length of a sub-message of every row (lengths under 128 bytes)."""
    lengths = np.asarray(lengths, np.int64)
    if lengths.size and int(lengths.max()) >= 0x80:
        raise ValueError("sub-messages of 128 bytes or more are not laid out here")
    data = np.empty((max(lengths.size, 1), 2), np.uint8)
    data[:, 0] = key(number, WIRE_LENGTH_DELIMITED)[0]
    data[:, 1] = lengths.reshape(-1) if lengths.ndim else lengths
    return Part(data, 2)


def timestamp(number: int, times_ns: np.ndarray) -> list[Part]:
    """A google.protobuf.Timestamp field (seconds, nanos) of every row, as the route's messages
    set it: always present, each of its fields left out when zero."""
    seconds, nanos = np.divmod(np.asarray(times_ns, np.int64), 1_000_000_000)
    seconds_part, nanos_part = varint_field(1, seconds), varint_field(2, nanos)
    return [length_prefix(number, seconds_part.lengths + nanos_part.lengths), seconds_part, nanos_part]


def messages(parts: list[Part], rows: int) -> list[bytes]:
    """Every row's message: its parts one after the other. Rows whose parts have the same
    lengths (all but a few, as only varints vary) are laid out together, a block of columns per
    part, in one array whose rows are the messages."""
    lengths = np.stack([np.broadcast_to(np.asarray(p.lengths, np.int64), (rows,)) for p in parts], axis=1)
    # Rows group by the lengths that vary (the varints'), read as one number (each is under 16).
    varying = np.flatnonzero(lengths.min(axis=0) != lengths.max(axis=0))
    if len(varying) < 15:
        signature = lengths[:, varying] @ (16 ** np.arange(len(varying), dtype=np.int64))
        _, first, which = np.unique(signature, return_index=True, return_inverse=True)
    else:
        _, first, which = np.unique(lengths, axis=0, return_index=True, return_inverse=True)
    out: list = [None] * rows
    for k, layout in enumerate(lengths[first]):
        members = np.flatnonzero(which.reshape(-1) == k)
        size = int(layout.sum())
        block = np.empty((len(members), size), np.uint8)
        at = 0
        for part, width in zip(parts, layout.tolist(), strict=True):
            if width:
                block[:, at:at + width] = part.data[:, :width] if len(part.data) == 1 else part.data[members, :width]
                at += width
        laid = block.tobytes()
        for i, row in enumerate(members.tolist()):
            out[row] = laid[i * size:(i + 1) * size]
    return out
