"""A small sans-IO RTMP publisher, for publishing from Python to a server (ours in the tests
and benchmarks): handshake, connect, createStream, publish, then audio, video and metadata
with a chosen chunk size, chunk streams and chunk header types.

    client = ClientConnection(chunk_size=4096)
    client.connect("live", "rtmp://host/live")
    sock.sendall(client.data_to_send())
    for message in client.receive_data(sock.recv(65536)):   # the server's messages
        ...

It checks little of what the server says: it is a test and benchmark tool, not a player.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from . import amf0
from . import messages as M
from .chunks import DEFAULT_CHUNK_SIZE, ChunkReader, ChunkWriter

HANDSHAKE_SIZE = 1536

# Chunk streams as ffmpeg uses them.
COMMAND_CHUNK_STREAM = 3
AUDIO_CHUNK_STREAM = 4
DATA_CHUNK_STREAM = 5
VIDEO_CHUNK_STREAM = 6


class Received(NamedTuple):
    """A message from the server. `values` is the decoded AMF0 of a command or data message."""

    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes
    values: list | None

    @property
    def name(self) -> str | None:
        """The command name (`_result`, `onStatus`, ...) of a command message."""
        return self.values[0] if self.values and isinstance(self.values[0], str) else None

    @property
    def info(self) -> dict | None:
        """The info object (level, code, description) of onStatus, _result or _error."""
        if self.values:
            for value in reversed(self.values):
                if isinstance(value, dict):
                    return value
        return None


class ClientConnection:
    """One publishing connection.

    `eager_handshake` sends C0, C1 and C2 at once without waiting for S1 (C2 then cannot echo
    S1; servers that do the simple handshake do not look). Messages queued before the handshake
    is done are held back until C2 has gone. `repeat_extended_timestamp=False` behaves like the
    encoders that leave extended timestamps off type-3 chunks.
    """

    def __init__(self, *, chunk_size: int = DEFAULT_CHUNK_SIZE, eager_handshake: bool = False,
                 repeat_extended_timestamp: bool = True, max_message_size: int = 16 * 2**20):
        self._writer = ChunkWriter(repeat_extended_timestamp=repeat_extended_timestamp)
        self._reader = ChunkReader(max_message_size=max_message_size, max_chunk_streams=1024)
        self._out = bytearray()
        self._held: list[bytes] = []  # messages queued before C2
        self._handshake_bytes = bytearray()
        self._transactions = 0
        c1 = bytes(8) + os.urandom(HANDSHAKE_SIZE - 8)
        self._out += bytes((3,)) + c1
        self.handshake_done = eager_handshake
        if eager_handshake:
            self._out += bytes(HANDSHAKE_SIZE)
        if chunk_size != DEFAULT_CHUNK_SIZE:
            self.set_chunk_size(chunk_size)

    # -- input ----------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Received]:
        """The server's messages in `data`; Set Chunk Size and Abort are applied as they come."""
        data = bytes(data)
        if self._handshake_bytes is not None:
            data = self._handshake(data)
        received = []
        self._reader.feed(data)
        while (message := self._reader.next_message()) is not None:
            if message.type_id == M.SET_CHUNK_SIZE:
                self._reader.set_chunk_size(int.from_bytes(message.payload[:4], "big"))
            elif message.type_id == M.ABORT:
                self._reader.abort(int.from_bytes(message.payload[:4], "big"))
            values = None
            if message.type_id in (M.COMMAND_AMF0, M.DATA_AMF0):
                values = amf0.decode_all(message.payload)
            received.append(Received(message.type_id, message.stream_id, message.timestamp,
                                     message.payload, values))
        return received

    def _handshake(self, data: bytes) -> bytes:
        buf = self._handshake_bytes
        buf += data
        if len(buf) < 1 + 2 * HANDSHAKE_SIZE:
            return b""
        if buf[0] != 3:
            raise ValueError(f"the server answered with RTMP version {buf[0]}")
        s1 = bytes(buf[1:1 + HANDSHAKE_SIZE])
        rest = bytes(buf[1 + 2 * HANDSHAKE_SIZE:])
        self._handshake_bytes = None
        if not self.handshake_done:
            self._out += s1  # C2 echoes S1
            self.handshake_done = True
        for message in self._held:
            self._out += message
        self._held = []
        return rest

    # -- output ---------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def send_raw(self, data: bytes) -> None:
        """Queue bytes as they are (for malformed input)."""
        if self.handshake_done:
            self._out += data
        else:
            self._held.append(bytes(data))

    def send_message(self, csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes,
                     fmt: int | None = None) -> None:
        """Queue one message, cut into chunks (fmt: the first chunk's header type, or None for
        the smallest that says enough)."""
        self.send_raw(self._writer.write(csid, type_id, stream_id, timestamp, payload, fmt))

    def chunks(self, csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes,
               fmt: int | None = None) -> list[bytes]:
        """One message's chunks, not queued: interleave them with others' and send_raw() them.
        (They count as sent: the next message's header is relative to this one.)"""
        return self._writer.chunks(csid, type_id, stream_id, timestamp, payload, fmt)

    def set_chunk_size(self, size: int) -> None:
        """Tell the server, then send chunks of up to `size` bytes."""
        self.send_message(2, M.SET_CHUNK_SIZE, 0, 0, M.set_chunk_size(size), fmt=0)
        self._writer.chunk_size = size

    def control(self, type_id: int, payload: bytes) -> None:
        self.send_message(2, type_id, 0, 0, payload, fmt=0)

    def command(self, name: str, *arguments, stream_id: int = 0, transaction: float | None = None,
                csid: int = COMMAND_CHUNK_STREAM) -> float:
        """Queue a command; return its transaction id (a new one unless given)."""
        if transaction is None:
            self._transactions += 1
            transaction = float(self._transactions)
        self.send_message(csid, M.COMMAND_AMF0, stream_id, 0, M.command(name, transaction, *arguments), fmt=0)
        return transaction

    def connect(self, app: str, tc_url: str | None = None, **properties) -> float:
        command_object = {"app": app, "type": "nonprivate", "flashVer": "FMLE/3.0 (compatible; recorder)"}
        if tc_url is not None:
            command_object["tcUrl"] = tc_url
        command_object.update(properties)
        return self.command("connect", command_object)

    def create_stream(self) -> float:
        return self.command("createStream", None)

    def publish(self, stream_id: int, name: str, publish_type: str = "live") -> None:
        self.command("publish", None, name, publish_type, stream_id=stream_id, transaction=0.0)

    def send_video(self, stream_id: int, timestamp: int, payload: bytes, *, csid: int = VIDEO_CHUNK_STREAM,
                   fmt: int | None = None) -> None:
        self.send_message(csid, M.VIDEO, stream_id, timestamp, payload, fmt)

    def send_audio(self, stream_id: int, timestamp: int, payload: bytes, *, csid: int = AUDIO_CHUNK_STREAM,
                   fmt: int | None = None) -> None:
        self.send_message(csid, M.AUDIO, stream_id, timestamp, payload, fmt)

    def send_metadata(self, stream_id: int, values: dict, *, timestamp: int = 0, set_data_frame: bool = True,
                      csid: int = DATA_CHUNK_STREAM) -> bytes:
        """Queue onMetaData (through @setDataFrame, as ffmpeg and OBS do, unless told not to);
        return the AMF0 from "onMetaData" on (what the server should give as Metadata.raw)."""
        raw = amf0.encode("onMetaData", amf0.EcmaArray(values))
        payload = (amf0.encode("@setDataFrame") if set_data_frame else b"") + raw
        self.send_message(csid, M.DATA_AMF0, stream_id, timestamp, payload, fmt=0)
        return raw
