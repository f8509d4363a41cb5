"""Protobuf messages that each carry one large bytes field (a camera frame), built around it.

Setting a frame on a protobuf message and serialising it copies the frame twice, after Arrow's
column was already copied into a Python bytes object per frame: three copies of every frame
(hundreds of MB for a few minutes of RAW cameras) where one will do. Here protobuf serialises
what comes before the field (`head`: the fields numbered below it) and after it (`tail`: those
numbered above), and the frame goes between them with the field's key and length, as protobuf
writes a set bytes field (fields in number order, an empty bytes field left out, as proto3
does): the same bytes SerializeToString gives (tests check it). A batch's messages are joined
into one buffer with one copy of each frame, straight from the Arrow buffer, and handed on as
views into it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

WIRE_LENGTH_DELIMITED = 2


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


class Spliced:
    """Messages of `message_class` around its bytes field `field`."""

    def __init__(self, message_class, field: str):
        descriptor = message_class.DESCRIPTOR.fields_by_name[field]
        self.number = descriptor.number
        self.key = varint(self.number << 3 | WIRE_LENGTH_DELIMITED)
        fields = message_class.DESCRIPTOR.fields
        self.head_fields = {f.name for f in fields if f.number < self.number}
        self.tail_fields = {f.name for f in fields if f.number > self.number}

    def around(self, head: bytes, frame, tail: bytes) -> tuple:
        """The pieces of one message: `head` (the fields numbered below the bytes field,
        serialised), the field holding `frame` (any bytes-like object), `tail` (those above)."""
        size = len(frame)
        return (head, self.key + varint(size), frame, tail) if size else (head, tail)


def joined(messages: list[tuple]) -> list[memoryview]:
    """Every message's pieces joined into one buffer (one copy of each piece): a view of each."""
    ends = np.cumsum([sum(map(len, pieces)) for pieces in messages]).tolist()
    whole = memoryview(b"".join(piece for pieces in messages for piece in pieces))
    return [whole[start:stop] for start, stop in zip([0, *ends[:-1]], ends, strict=True)]


def frames(array: pa.Array) -> list[memoryview]:
    """Each value of a binary array as a view into its Arrow buffer (no copy); a null as empty."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != pa.binary():
        array = array.cast(pa.binary())
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32)[array.offset:array.offset + len(array) + 1].tolist()
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    views = [data[start:stop] for start, stop in zip(offsets[:-1], offsets[1:], strict=True)]
    if array.null_count:
        valid = array.is_valid().to_pylist()
        views = [view if ok else data[0:0] for view, ok in zip(views, valid, strict=True)]
    return views
