"""The RTMP chunk stream: messages cut into chunks, chunks of several messages interleaved.

ChunkReader turns received bytes back into whole messages; ChunkWriter cuts messages into
chunks. Both are sans-IO and know nothing of what the messages mean: the owner applies a Set
Chunk Size or an Abort by calling set_chunk_size() or abort() as soon as the message arrives.

Every chunk starts with a basic header (format and chunk stream id, 1 to 3 bytes) and a message
header whose format says how much it repeats from the previous chunk on the same chunk stream:

    0: timestamp, length, type id, message stream id  (11 bytes)
    1: timestamp delta, length, type id               (7 bytes)
    2: timestamp delta                                (3 bytes)
    3: nothing: a continuation, or a new message just like the previous one

A timestamp field of 0xFFFFFF means the real value follows in 4 more bytes (the extended
timestamp); type-3 chunks that follow such a header repeat those 4 bytes.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import RtmpProtocolError

DEFAULT_CHUNK_SIZE = 128
MAX_CHUNK_SIZE = 0x7FFFFFFF
LOWEST_CHUNK_STREAM_ID = 2
HIGHEST_CHUNK_STREAM_ID = 65599

_EXTENDED = 0xFFFFFF
_U32 = struct.Struct(">I")
_HEADER_SIZES = (11, 7, 3, 0)


class Message(NamedTuple):
    """One whole RTMP message. `timestamp` is the 32-bit value from the chunk headers."""

    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


class _ChunkStream:
    """What a chunk stream remembers from its previous chunks."""

    __slots__ = ("timestamp", "field", "extended", "length", "type_id", "stream_id", "parts", "received")

    def __init__(self):
        self.timestamp = 0  # the last message's timestamp, 32 bits
        # The last header's timestamp field with its extension applied: an absolute timestamp
        # after a type-0 header, a delta after types 1 and 2. A type-3 chunk that begins a new
        # message adds it again.
        self.field = 0
        self.extended = False  # the last header's field was 0xFFFFFF: type-3 chunks carry 4 bytes
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.parts: list[bytes] = []  # the message in progress, chunk by chunk
        self.received = 0  # its bytes so far; 0 between messages


class ChunkReader:
    """Reassembles messages from the bytes of a chunk stream.

    feed() the bytes as they come, then call next_message() until it returns None. Violations
    raise RtmpProtocolError. Memory is bounded: besides one partial chunk, it holds the
    messages in progress, each at most max_message_size, on at most max_chunk_streams chunk
    streams, and all of them together at most max_partial_bytes (an encoder interleaves small
    audio messages with one large video message; it never needs many large ones at once).
    """

    def __init__(self, *, max_message_size: int = 16 * 2**20, max_chunk_streams: int = 64,
                 max_partial_bytes: int | None = None):
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_message_size = max_message_size
        self.max_chunk_streams = max_chunk_streams
        self.max_partial_bytes = max_message_size + (1 << 20) if max_partial_bytes is None else max_partial_bytes
        self._partial_total = 0
        self._streams: dict[int, _ChunkStream] = {}
        # Unparsed bytes are _buf[_pos:] and then the pieces in _pending, which are only joined
        # once they hold the _need bytes the next step waits for: a large chunk that arrives in
        # many small reads is copied once, not once per read.
        self._buf = b""
        self._pos = 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._need = 1
        # Whether this peer repeats the extended timestamp on type-3 chunks, as the spec and
        # today's ffmpeg, librtmp and OBS do. Older ffmpeg releases and some other encoders
        # leave it out. None until the first such chunk shows which; see _peer_repeats().
        self.repeats_extended_timestamp: bool | None = None

    # -- input ----------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take received bytes (bytes, not a mutable buffer: they are kept without a copy)."""
        if not data:
            return
        if self._pos >= len(self._buf) and not self._pending:
            self._buf = data
            self._pos = 0
        else:
            self._pending.append(data)
            self._pending_size += len(data)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed (at most one partial chunk after next_message())."""
        return len(self._buf) - self._pos + self._pending_size

    @property
    def partial_messages(self) -> int:
        """Bytes of messages in progress, over all chunk streams."""
        return self._partial_total

    def set_chunk_size(self, size: int) -> None:
        """The peer's Set Chunk Size: chunks after it carry up to `size` bytes."""
        self.chunk_size = size

    def abort(self, chunk_stream_id: int) -> None:
        """The peer's Abort: drop the partial message on that chunk stream."""
        stream = self._streams.get(chunk_stream_id)
        if stream is not None:
            self._partial_total -= stream.received
            stream.parts = []
            stream.received = 0

    # -- parsing --------------------------------------------------------------------------------

    def next_message(self) -> Message | None:
        """The next whole message, or None when the bytes so far hold no more."""
        if self._pending:
            if len(self._buf) - self._pos + self._pending_size < self._need:
                return None
            self._pending.insert(0, self._buf[self._pos:])
            self._buf = b"".join(self._pending)
            self._pos = 0
            self._pending = []
            self._pending_size = 0

        buf = self._buf
        end = len(buf)
        pos = self._pos
        streams = self._streams
        while True:
            # Basic header.
            if pos >= end:
                self._need = 1
                break
            first = buf[pos]
            fmt = first >> 6
            csid = first & 0x3F
            p = pos + 1
            if csid < 2:
                if csid == 0:
                    if p + 1 > end:
                        self._need = 2
                        break
                    csid = 64 + buf[p]
                    p += 1
                else:
                    if p + 2 > end:
                        self._need = 3
                        break
                    csid = 64 + buf[p] + (buf[p + 1] << 8)
                    p += 2

            stream = streams.get(csid)
            if stream is None:
                if fmt != 0:
                    raise RtmpProtocolError(
                        f"chunk stream {csid} starts with a type-{fmt} chunk header; the first chunk "
                        "on a chunk stream must have a type-0 header")
                if len(streams) >= self.max_chunk_streams:
                    raise RtmpProtocolError(
                        f"too many chunk streams: chunk stream {csid} would be number "
                        f"{len(streams) + 1}, over the limit of {self.max_chunk_streams}")
            elif fmt != 3 and stream.received:
                raise RtmpProtocolError(
                    f"chunk stream {csid}: a type-{fmt} chunk header arrived in the middle of a "
                    f"message ({stream.received} of {stream.length} bytes received); only type-3 "
                    "chunks may continue a message")

            # Message header.
            size = _HEADER_SIZES[fmt]
            if p + size > end:
                self._need = p + size - pos
                break
            header = p
            if fmt == 3:
                field = stream.field
                extended = stream.extended
                continuing = stream.received != 0
                length = stream.length
            else:
                field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
                extended = field == _EXTENDED
                continuing = False
                if fmt == 2:
                    length = stream.length
                else:
                    length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
                    if length > self.max_message_size:
                        raise RtmpProtocolError(
                            f"chunk stream {csid}: a message of {length} bytes is over the limit of "
                            f"{self.max_message_size}")
                p += size
            # A peer known to leave the extension off type-3 chunks sends no 4 bytes to wait for.
            if extended and (fmt != 3 or self.repeats_extended_timestamp is not False):
                if p + 4 > end:
                    self._need = p + 4 - pos
                    break
                if fmt != 3:
                    (field,) = _U32.unpack_from(buf, p)
                    p += 4
                elif self._peer_repeats(_U32.unpack_from(buf, p)[0], stream.field):
                    p += 4

            # Payload: wait for the whole chunk.
            remaining = length - stream.received if continuing else length
            take = remaining if remaining < self.chunk_size else self.chunk_size
            if p + take > end:
                self._need = p + take - pos
                break

            if not continuing:
                if fmt == 0:
                    if stream is None:
                        stream = streams[csid] = _ChunkStream()
                    stream.type_id = buf[header + 6]
                    stream.stream_id = (buf[header + 7] | (buf[header + 8] << 8) | (buf[header + 9] << 16)
                                        | (buf[header + 10] << 24))
                    stream.timestamp = field
                else:
                    if fmt == 1:
                        stream.type_id = buf[header + 6]
                    # A type-3 chunk that begins a message reuses the previous delta. After a
                    # type-0 header that "delta" is the absolute timestamp, as the spec says
                    # (5.3.1.2.4) and ffmpeg reads and writes it; nginx-rtmp adds 0 instead.
                    stream.timestamp = (stream.timestamp + field) & 0xFFFFFFFF
                stream.length = length
                stream.field = field
                stream.extended = extended

            pos = p + take
            if take == remaining:
                if continuing:
                    stream.parts.append(buf[p:pos])
                    payload = b"".join(stream.parts)
                    stream.parts = []
                    self._partial_total -= stream.received
                    stream.received = 0
                else:
                    payload = buf[p:pos]
                self._pos = pos
                self._need = 1
                return Message(stream.type_id, stream.stream_id, stream.timestamp, payload)
            stream.parts.append(buf[p:pos])
            stream.received += take
            self._partial_total += take
            if self._partial_total > self.max_partial_bytes:
                raise RtmpProtocolError(
                    f"messages in progress on {sum(1 for s in streams.values() if s.received)} chunk streams "
                    f"hold {self._partial_total} bytes, over the limit of {self.max_partial_bytes}")

        self._pos = pos
        if pos >= end:
            self._buf = b""
            self._pos = 0
        return None

    def _peer_repeats(self, value: int, expected: int) -> bool:
        """Whether the 4 bytes after a type-3 basic header are the repeated extended timestamp.

        A peer that repeats it must repeat the same value, so 4 bytes that differ prove that
        this peer leaves it out (they are payload). The first such chunk decides for the whole
        connection: after that no chunk's payload is ever mistaken for a timestamp, and the only
        ambiguity left is a peer that leaves it out and whose very first such chunk happens to
        begin with those 4 bytes.
        """
        repeats = self.repeats_extended_timestamp
        if repeats is None:
            repeats = self.repeats_extended_timestamp = value == expected
        return repeats


# -- writing ------------------------------------------------------------------------------------


def basic_header(fmt: int, csid: int) -> bytes:
    """The 1-, 2- or 3-byte basic header of a chunk on chunk stream `csid`."""
    if not LOWEST_CHUNK_STREAM_ID <= csid <= HIGHEST_CHUNK_STREAM_ID:
        raise ValueError(f"chunk stream id {csid} is outside {LOWEST_CHUNK_STREAM_ID}..{HIGHEST_CHUNK_STREAM_ID}")
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes(((fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


class _Sent:
    __slots__ = ("timestamp", "field", "length", "type_id", "stream_id")

    def __init__(self, timestamp, field, length, type_id, stream_id):
        self.timestamp = timestamp
        self.field = field
        self.length = length
        self.type_id = type_id
        self.stream_id = stream_id


class ChunkWriter:
    """Cuts messages into chunks, with the smallest header that says enough (or a chosen one).

    `repeat_extended_timestamp=False` leaves the extended timestamp off type-3 chunks, as some
    older encoders do (for testing a reader against them).
    """

    def __init__(self, *, chunk_size: int = DEFAULT_CHUNK_SIZE, repeat_extended_timestamp: bool = True):
        self.chunk_size = chunk_size
        self.repeat_extended_timestamp = repeat_extended_timestamp
        self._sent: dict[int, _Sent] = {}

    def write(self, csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes,
              fmt: int | None = None) -> bytes:
        """The bytes of one message's chunks (see chunks())."""
        return b"".join(self.chunks(csid, type_id, stream_id, timestamp, payload, fmt))

    def chunks(self, csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes,
               fmt: int | None = None) -> list[bytes]:
        """The chunks of one message, one bytes each (to interleave them with other messages').
        Timestamps are taken modulo 2**32.

        fmt None picks the header type as ffmpeg does: 0 for a new chunk stream, another
        message stream or a timestamp going back; 3 when length, type and delta repeat; 2 when
        length and type do; 1 otherwise. A chosen fmt must be able to say the message (ValueError).
        """
        timestamp &= 0xFFFFFFFF
        length = len(payload)
        if length > 0xFFFFFF:
            raise ValueError(f"a message of {length} bytes does not fit the 24-bit length field")
        prev = self._sent.get(csid)
        delta = None if prev is None else (timestamp - prev.timestamp) & 0xFFFFFFFF
        if fmt is None:
            if prev is None or prev.stream_id != stream_id or delta >= 0x80000000:
                fmt = 0
            elif prev.length == length and prev.type_id == type_id:
                fmt = 3 if delta == prev.field else 2
            else:
                fmt = 1
        elif fmt != 0:
            if prev is None or prev.stream_id != stream_id:
                raise ValueError(f"a type-{fmt} header needs an earlier message on chunk stream {csid} "
                                 f"with the same message stream id")
            if fmt >= 2 and (prev.length != length or prev.type_id != type_id):
                raise ValueError(f"a type-{fmt} header repeats the previous length and type id")
            if fmt == 3 and delta != prev.field:
                raise ValueError(f"a type-3 header repeats the previous timestamp field ({prev.field}), "
                                 f"not a delta of {delta}")

        field = timestamp if fmt == 0 else delta
        short_field = _EXTENDED if field >= _EXTENDED else field
        header = bytearray(basic_header(fmt, csid))
        if fmt != 3:
            header += short_field.to_bytes(3, "big")
            if fmt != 2:
                header += length.to_bytes(3, "big")
                header.append(type_id)
                if fmt == 0:
                    header += stream_id.to_bytes(4, "little")
        extended = field >= _EXTENDED
        if extended and (fmt != 3 or self.repeat_extended_timestamp):
            header += _U32.pack(field)
        self._sent[csid] = _Sent(timestamp, field, length, type_id, stream_id)

        size = self.chunk_size
        chunks = [bytes(header) + payload[:size]]
        continuation = basic_header(3, csid)
        if extended and self.repeat_extended_timestamp:
            continuation += _U32.pack(field)
        for offset in range(size, length, size):
            chunks.append(continuation + payload[offset:offset + size])
        return chunks
