"""RTMP message type ids, user control events, and the bodies of the messages a server sends."""

from __future__ import annotations

import struct

from . import amf0

# Message type ids.
SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
DATA_AMF3 = 15
SHARED_OBJECT_AMF3 = 16
COMMAND_AMF3 = 17
DATA_AMF0 = 18
SHARED_OBJECT_AMF0 = 19
COMMAND_AMF0 = 20
AGGREGATE = 22

TYPE_NAMES = {
    SET_CHUNK_SIZE: "Set Chunk Size", ABORT: "Abort", ACKNOWLEDGEMENT: "Acknowledgement",
    USER_CONTROL: "User Control", WINDOW_ACK_SIZE: "Window Acknowledgement Size",
    SET_PEER_BANDWIDTH: "Set Peer Bandwidth", AUDIO: "audio", VIDEO: "video", DATA_AMF3: "data (AMF3)",
    SHARED_OBJECT_AMF3: "shared object (AMF3)", COMMAND_AMF3: "command (AMF3)", DATA_AMF0: "data (AMF0)",
    SHARED_OBJECT_AMF0: "shared object (AMF0)", COMMAND_AMF0: "command (AMF0)", AGGREGATE: "aggregate",
}

# User control event types.
STREAM_BEGIN = 0
STREAM_EOF = 1
STREAM_DRY = 2
SET_BUFFER_LENGTH = 3
STREAM_IS_RECORDED = 4
PING_REQUEST = 6
PING_RESPONSE = 7

# Set Peer Bandwidth limit types.
LIMIT_HARD = 0
LIMIT_SOFT = 1
LIMIT_DYNAMIC = 2

# Chunk streams the server sends on: protocol control messages must use 2; commands and status
# go on 3, as nginx-rtmp and ffmpeg do.
CONTROL_CHUNK_STREAM = 2
COMMAND_CHUNK_STREAM = 3

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


def u32(value: int) -> bytes:
    return _U32.pack(value & 0xFFFFFFFF)


def set_chunk_size(size: int) -> bytes:
    return _U32.pack(size)


def acknowledgement(sequence_number: int) -> bytes:
    return u32(sequence_number)


def window_ack_size(size: int) -> bytes:
    return _U32.pack(size)


def set_peer_bandwidth(size: int, limit_type: int = LIMIT_DYNAMIC) -> bytes:
    return _U32.pack(size) + bytes((limit_type,))


def user_control(event_type: int, data: bytes) -> bytes:
    return _U16.pack(event_type) + data


def command(name: str, transaction_id: float, *arguments) -> bytes:
    """An AMF0 command message: name, transaction id, command object (or null), arguments."""
    return amf0.encode(name, transaction_id, *arguments)


def status_info(level: str, code: str, description: str, **extra) -> dict:
    """The info object of onStatus, _result and _error: level, code, description."""
    return {"level": level, "code": code, "description": description, **extra}
