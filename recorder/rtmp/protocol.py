"""A sans-IO RTMP server connection for publishers: bytes in, events out, bytes to send.

    conn = ServerConnection()
    for event in conn.receive_data(received):      # b"" when the peer has closed
        if isinstance(event, PublishRequested):
            conn.accept_publish(event.stream_id)    # or conn.reject_publish(...)
        ...
    sock.sendall(conn.data_to_send())

The core answers what needs no decision by itself: the handshake, connect (window size, peer
bandwidth, chunk size, _result), releaseStream, FCPublish, createStream, _checkbw, pings and
acknowledgements. Publishing needs the application's yes or no. This server records: it never
plays a stream, and a `play` is refused.

A protocol violation raises RtmpProtocolError after queuing an error reply where the protocol
has room for one; the transport sends data_to_send() and closes. The connection stays dead:
every later receive_data raises too.
"""

from __future__ import annotations

import enum
import os
import struct

from . import amf0
from . import messages as M
from .chunks import MAX_CHUNK_SIZE, ChunkReader, ChunkWriter, Message
from .errors import RtmpProtocolError
from .events import (
    AudioData,
    Connected,
    ConnectionClosed,
    Event,
    Metadata,
    PublishRequested,
    Unpublished,
    VideoData,
)

__all__ = ["RtmpProtocolError", "ServerConnection", "State"]

RTMP_VERSION = 3
HANDSHAKE_SIZE = 1536

# What nginx-rtmp tells clients; some encoders look for "FMS" in fmsVer.
FMS_VERSION = "FMS/3,0,1,123"
CAPABILITIES = 31.0

# createStream calls a connection may make: an encoder needs one or two.
MAX_MESSAGE_STREAMS = 64

_U32 = struct.Struct(">I")


class State(enum.Enum):
    HANDSHAKE = "handshake"  # waiting for C0 and C1
    HANDSHAKE_ACK = "handshake-ack"  # S0, S1 and S2 queued; waiting for C2
    OPEN = "open"  # exchanging messages
    CLOSED = "closed"  # the peer closed the connection
    FAILED = "failed"  # a protocol violation ended it


class _StreamState(enum.Enum):
    CREATED = "created"  # by createStream; nothing published yet
    REQUESTED = "requested"  # publish received, waiting for accept_publish or reject_publish
    PUBLISHING = "publishing"
    REJECTED = "rejected"
    UNPUBLISHED = "unpublished"


# Media and metadata are given out while the application decides, so that a client that sends
# them right after its publish (without waiting for NetStream.Publish.Start) loses nothing.
_RECEIVING = (_StreamState.REQUESTED, _StreamState.PUBLISHING)


class _Stream:
    """A message stream made by createStream."""

    __slots__ = ("state", "name", "last_timestamp")

    def __init__(self):
        self.state = _StreamState.CREATED
        self.name: str | None = None
        self.last_timestamp: int | None = None  # unwrapped, of the last audio or video message


_PLAYER_COMMANDS = frozenset(("play", "play2", "seek", "pause", "pauseRaw", "receiveAudio", "receiveVideo",
                              "FCSubscribe", "FCUnsubscribe", "getStreamLength"))


class ServerConnection:
    """One publisher's connection, from the handshake to the end.

    max_message_size bounds each message (and so the memory a peer can make the connection
    hold, with max_chunk_streams). window_ack_size is the acknowledgement window the server
    asks the client to use, and the one it uses itself until the client names one.
    out_chunk_size is the chunk size of what the server sends after connect.
    """

    def __init__(self, *, max_message_size: int = 16 * 2**20, window_ack_size: int = 2_500_000,
                 out_chunk_size: int = 4096, max_chunk_streams: int = 64, max_partial_bytes: int | None = None):
        if not 1 <= out_chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"out_chunk_size {out_chunk_size} is outside 1..{MAX_CHUNK_SIZE:#x}")
        if not 1 <= window_ack_size <= 0xFFFFFFFF:
            raise ValueError(f"window_ack_size {window_ack_size} is outside 1..0xFFFFFFFF")
        if max_message_size < 1 or max_chunk_streams < 1:
            raise ValueError("max_message_size and max_chunk_streams must be positive")
        self.window_ack_size = window_ack_size
        self.out_chunk_size = out_chunk_size

        self._state = State.HANDSHAKE
        self._error: str | None = None
        self._handshake_bytes = bytearray()
        self._reader = ChunkReader(max_message_size=max_message_size, max_chunk_streams=max_chunk_streams,
                                   max_partial_bytes=max_partial_bytes)
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._replied = False  # an error reply is queued for the violation being raised

        self._connected = False
        self._app: str | None = None
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1

        # Acknowledgements of what we receive. The window is the client's Window
        # Acknowledgement Size; until it sends one, ours (what nginx-rtmp does too).
        self._peer_window = window_ack_size
        self._bytes_received = 0  # after the handshake, as ffmpeg and nginx-rtmp count
        self._last_ack = 0

        self.dropped_messages = 0  # media or metadata on a stream that is not publishing

    # -- properties -----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        """The peer closed the connection or broke the protocol: nothing more comes in."""
        return self._state is State.CLOSED or self._state is State.FAILED

    @property
    def error(self) -> str | None:
        """What the peer did wrong, once receive_data has raised."""
        return self._error

    @property
    def app(self) -> str | None:
        """The application name from connect (None before it)."""
        return self._app

    @property
    def bytes_received(self) -> int:
        """Bytes received after the handshake."""
        return self._bytes_received

    @property
    def peer_chunk_size(self) -> int:
        return self._reader.chunk_size

    # -- input ----------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Take what the peer sent (b"" when it closed the connection); return the events."""
        if self._state is State.FAILED:
            raise RtmpProtocolError(f"the connection has already failed: {self._error}")
        if self._state is State.CLOSED:
            if data:
                raise RuntimeError("receive_data() after the peer closed the connection")
            return []
        events: list[Event] = []
        if not data:
            self._state = State.CLOSED
            events.append(ConnectionClosed())
            return events
        if type(data) is not bytes:
            data = bytes(data)
        try:
            if self._state is not State.OPEN:
                data = self._handshake(data)
            if data:
                self._bytes_received += len(data)
                reader = self._reader
                reader.feed(data)
                while (message := reader.next_message()) is not None:
                    self._handle(message, events)
                self._acknowledge()
        except RtmpProtocolError as error:
            raise self._failed(error, events) from None
        except (IndexError, KeyError, ValueError, TypeError, struct.error) as error:
            # Nothing a peer sends should get here, but if it does, it ends this connection,
            # not the server. The cause stays attached for whoever reads the log.
            raise self._failed(RtmpProtocolError(f"malformed input ({type(error).__name__}: {error})"),
                               events) from error
        return events

    def _failed(self, error: RtmpProtocolError, events: list[Event]) -> RtmpProtocolError:
        if not self._replied and self._state is State.OPEN:
            self.send_error(error.description)
        self._replied = False
        self._state = State.FAILED
        self._error = error.description
        error.events = events
        return error

    def _handshake(self, data: bytes) -> bytes:
        """Take handshake bytes; return whatever follows C2 (the first chunks, often)."""
        buf = self._handshake_bytes
        buf += data
        if self._state is State.HANDSHAKE:
            version = buf[0]
            if version != RTMP_VERSION:
                raise RtmpProtocolError(_describe_bad_version(bytes(buf[:8])))
            if len(buf) < 1 + HANDSHAKE_SIZE:
                return b""
            c1 = bytes(buf[1:1 + HANDSHAKE_SIZE])
            del buf[:1 + HANDSHAKE_SIZE]
            # The "simple" handshake, which ffmpeg, librtmp and OBS accept: S1 is our time (0,
            # the epoch of the timestamps we send), four zero bytes and random bytes; S2 echoes C1.
            s1 = bytes(8) + os.urandom(HANDSHAKE_SIZE - 8)
            self._out += bytes((RTMP_VERSION,)) + s1 + c1
            self._state = State.HANDSHAKE_ACK
        if len(buf) < HANDSHAKE_SIZE:
            return b""
        rest = bytes(buf[HANDSHAKE_SIZE:])  # C2 itself is not checked: clients fill it variously
        self._handshake_bytes = bytearray()
        self._state = State.OPEN
        return rest

    def _handle(self, message: Message, events: list[Event]) -> None:
        type_id = message.type_id
        if type_id == M.VIDEO or type_id == M.AUDIO:
            self._media(type_id, message.stream_id, message.timestamp, message.payload, events)
        elif type_id == M.COMMAND_AMF0:
            self._command(message.stream_id, message.payload, events)
        elif type_id == M.DATA_AMF0:
            self._data(message.stream_id, message.timestamp, message.payload, events)
        elif type_id == M.COMMAND_AMF3:
            self._command(message.stream_id, _amf0_in_amf3(message), events)
        elif type_id == M.DATA_AMF3:
            self._data(message.stream_id, message.timestamp, _amf0_in_amf3(message), events)
        elif type_id == M.AGGREGATE:
            self._aggregate(message, events)
        elif type_id == M.SET_CHUNK_SIZE:
            size = _u32(message, "Set Chunk Size")
            if not 1 <= size <= MAX_CHUNK_SIZE:
                raise RtmpProtocolError(f"Set Chunk Size {size:#x} is invalid (1..{MAX_CHUNK_SIZE:#x})")
            self._reader.set_chunk_size(size)
        elif type_id == M.ABORT:
            self._reader.abort(_u32(message, "Abort"))
        elif type_id == M.ACKNOWLEDGEMENT:
            _u32(message, "Acknowledgement")  # what the client received: nothing to do
        elif type_id == M.WINDOW_ACK_SIZE:
            # 0 would mean an acknowledgement after every byte; take it as "none wanted".
            self._peer_window = _u32(message, "Window Acknowledgement Size")
        elif type_id == M.SET_PEER_BANDWIDTH:
            if len(message.payload) < 5:
                raise RtmpProtocolError(f"Set Peer Bandwidth of {len(message.payload)} bytes (5 expected)")
        elif type_id == M.USER_CONTROL:
            self._user_control(message.payload)
        else:
            name = M.TYPE_NAMES.get(type_id, "unknown")
            raise RtmpProtocolError(f"unsupported message type {type_id} ({name})")

    # -- media and data -------------------------------------------------------------------------

    def _media(self, type_id: int, stream_id: int, timestamp: int, payload: bytes, events: list[Event]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in _RECEIVING:
            self.dropped_messages += 1
            return
        last = stream.last_timestamp
        if last is not None:
            # The nearest value that is `timestamp` modulo 2**32: unwraps the 32-bit wrap after
            # 49.7 days, and lets a timestamp step back a little (audio behind video).
            timestamp = last + ((timestamp - last + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        stream.last_timestamp = timestamp
        if type_id == M.VIDEO:
            events.append(VideoData(stream_id, timestamp, payload))
        else:
            events.append(AudioData(stream_id, timestamp, payload))

    def _data(self, stream_id: int, timestamp: int, body: bytes, events: list[Event]) -> None:
        try:
            name, offset = amf0.decode(body)
            rest = amf0.decode_all(body[offset:])
        except amf0.Amf0Error as error:
            raise RtmpProtocolError(f"malformed AMF0 in a data message: {error}") from None
        if name == "@setDataFrame":
            raw = body[offset:]
            name = rest[0] if rest else None
            arguments = rest[1:]
        else:
            raw = body
            arguments = rest
        if name != "onMetaData":
            return  # @clearDataFrame, onTextData, onCuePoint, |RtmpSampleAccess...: not recorded
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in _RECEIVING:
            self.dropped_messages += 1
            return
        values = arguments[0] if arguments and isinstance(arguments[0], dict) else {}
        last = stream.last_timestamp
        if last is not None:  # unwrapped like media, but without moving the reference
            timestamp = last + ((timestamp - last + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        events.append(Metadata(stream_id, values, raw, timestamp))

    def _aggregate(self, message: Message, events: list[Event]) -> None:
        """Sub-messages, each an FLV tag: type, length, timestamp (24 + 8 bits), stream id
        (ignored: the aggregate's counts), body, back pointer. Their timestamps are moved so
        that the first one falls on the aggregate's own timestamp, as nginx-rtmp does."""
        body = message.payload
        end = len(body)
        pos = 0
        first = None
        while pos < end:
            if pos + 11 > end:
                raise RtmpProtocolError(f"aggregate message: a sub-message header is cut off at byte {pos}")
            sub_type = body[pos]
            size = int.from_bytes(body[pos + 1:pos + 4], "big")
            sub_timestamp = int.from_bytes(body[pos + 4:pos + 7], "big") | (body[pos + 7] << 24)
            start = pos + 11
            stop = start + size
            if stop > end:
                raise RtmpProtocolError(f"aggregate message: the sub-message at byte {pos} claims {size} "
                                        f"bytes, but only {end - start} are left")
            if first is None:
                first = sub_timestamp
            timestamp = (message.timestamp + sub_timestamp - first) & 0xFFFFFFFF
            if sub_type == M.VIDEO or sub_type == M.AUDIO:
                self._media(sub_type, message.stream_id, timestamp, body[start:stop], events)
            elif sub_type == M.DATA_AMF0:
                self._data(message.stream_id, timestamp, body[start:stop], events)
            else:
                name = M.TYPE_NAMES.get(sub_type, "unknown")
                raise RtmpProtocolError(f"aggregate message holds a message of unsupported type {sub_type} ({name})")
            pos = stop + 4  # the back pointer (a last one cut short is tolerated)

    # -- control --------------------------------------------------------------------------------

    def _user_control(self, payload: bytes) -> None:
        if len(payload) < 2:
            raise RtmpProtocolError(f"User Control message of {len(payload)} bytes")
        event_type = (payload[0] << 8) | payload[1]
        if event_type == M.PING_REQUEST:
            if len(payload) < 6:
                raise RtmpProtocolError(f"ping request of {len(payload)} bytes (6 expected)")
            self._send_control(M.USER_CONTROL, M.user_control(M.PING_RESPONSE, payload[2:6]))
        # Set Buffer Length, ping responses and the rest ask nothing of a publishing server.

    def _acknowledge(self) -> None:
        window = self._peer_window
        if window and self._bytes_received - self._last_ack >= window:
            self._last_ack = self._bytes_received
            self._send_control(M.ACKNOWLEDGEMENT, M.acknowledgement(self._bytes_received))

    # -- commands -------------------------------------------------------------------------------

    def _command(self, stream_id: int, body: bytes, events: list[Event]) -> None:
        try:
            values = amf0.decode_all(body)
        except amf0.Amf0Error as error:
            raise RtmpProtocolError(f"malformed AMF0 in a command message: {error}") from None
        if not values or not isinstance(values[0], str):
            raise RtmpProtocolError("a command message that does not start with the command name")
        name = values[0]
        transaction = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        arguments = values[2:]
        if not self._connected and name != "connect":
            raise self._refuse(stream_id, transaction, f"{name!r} before connect",
                               code="NetConnection.Call.Failed")
        handler = _COMMANDS.get(name)
        if handler is not None:
            handler(self, stream_id, transaction, arguments, events)
        elif name in ("play", "play2"):
            raise self._refuse(stream_id, transaction,
                               f"{name!r}: this server records published streams; it does not play them",
                               status="NetStream.Play.Failed")
        elif name in _PLAYER_COMMANDS:
            raise self._refuse(stream_id, transaction,
                               f"{name!r}: this server records published streams; it does not play them")
        else:
            raise self._refuse(stream_id, transaction, f"unsupported command {name!r}")

    def _on_connect(self, stream_id, transaction, arguments, events) -> None:
        if self._connected:
            raise self._refuse(stream_id, transaction, "a second connect on the same connection")
        properties = arguments[0] if arguments else None
        if not isinstance(properties, dict) or not isinstance(properties.get("app"), str):
            raise self._refuse(stream_id, transaction, "connect without a command object that names the app",
                               code="NetConnection.Connect.Rejected")
        app = properties["app"]
        tc_url = properties.get("tcUrl")
        self._send_control(M.WINDOW_ACK_SIZE, M.window_ack_size(self.window_ack_size))
        self._send_control(M.SET_PEER_BANDWIDTH, M.set_peer_bandwidth(self.window_ack_size, M.LIMIT_DYNAMIC))
        self._send_control(M.SET_CHUNK_SIZE, M.set_chunk_size(self.out_chunk_size))
        self._writer.chunk_size = self.out_chunk_size
        # objectEncoding 0: this server speaks AMF0, whatever the client offered.
        self._send_command(stream_id, "_result", transaction,
                           {"fmsVer": FMS_VERSION, "capabilities": CAPABILITIES},
                           M.status_info("status", "NetConnection.Connect.Success", "Connection succeeded.",
                                         objectEncoding=0.0))
        self._connected = True
        self._app = app
        events.append(Connected(app, tc_url if isinstance(tc_url, str) else None, properties,
                                tuple(arguments[1:])))

    def _on_create_stream(self, stream_id, transaction, arguments, events) -> None:
        if len(self._streams) >= MAX_MESSAGE_STREAMS:
            raise self._refuse(stream_id, transaction, f"more than {MAX_MESSAGE_STREAMS} streams on one connection")
        new_id = self._next_stream_id
        self._next_stream_id += 1
        self._streams[new_id] = _Stream()
        self._send_command(stream_id, "_result", transaction, None, float(new_id))

    def _on_release_stream(self, stream_id, transaction, arguments, events) -> None:
        if transaction:
            self._send_command(stream_id, "_result", transaction, None)

    def _on_fc_publish(self, stream_id, transaction, arguments, events) -> None:
        name = arguments[1] if len(arguments) > 1 and isinstance(arguments[1], str) else ""
        self._send_command(stream_id, "onFCPublish", 0.0, None,
                           M.status_info("status", "NetStream.Publish.Start", "FCPublish succeeded.", details=name))
        if transaction:
            self._send_command(stream_id, "_result", transaction, None)

    def _on_publish(self, stream_id, transaction, arguments, events) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise self._refuse(stream_id, transaction,
                               f"publish on message stream {stream_id}, which createStream did not make",
                               status="NetStream.Publish.Failed")
        if stream.state in _RECEIVING:
            raise self._refuse(stream_id, transaction, f"a second publish on stream {stream_id}",
                               status="NetStream.Publish.Failed")
        name = arguments[1] if len(arguments) > 1 else None
        if not isinstance(name, str):
            raise self._refuse(stream_id, transaction, "publish without a stream name",
                               status="NetStream.Publish.BadName")
        publish_type = arguments[2] if len(arguments) > 2 and isinstance(arguments[2], str) else "live"
        stream.state = _StreamState.REQUESTED
        stream.name = name
        events.append(PublishRequested(stream_id, name, publish_type))

    def _on_fc_unpublish(self, stream_id, transaction, arguments, events) -> None:
        name = arguments[1] if len(arguments) > 1 else None
        for number, stream in self._streams.items():
            if stream.state in _RECEIVING and stream.name == name:
                stream.state = _StreamState.UNPUBLISHED
                events.append(Unpublished(number))
                break
        if transaction:
            self._send_command(stream_id, "_result", transaction, None)

    def _on_close_stream(self, stream_id, transaction, arguments, events) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None and stream.state in _RECEIVING:
            events.append(Unpublished(stream_id))
        if stream is not None:
            stream.state = _StreamState.CREATED  # it may publish again

    def _on_delete_stream(self, stream_id, transaction, arguments, events) -> None:
        target = arguments[1] if len(arguments) > 1 else None
        if isinstance(target, float) and target.is_integer():
            target = int(target)
        else:
            target = stream_id  # sent on the stream itself, without the argument
        stream = self._streams.pop(target, None)
        if stream is not None and stream.state in _RECEIVING:
            events.append(Unpublished(target))

    def _on_check_bandwidth(self, stream_id, transaction, arguments, events) -> None:
        if transaction:
            self._send_command(stream_id, "_result", transaction, None)

    # -- answers from the application -----------------------------------------------------------

    def accept_publish(self, stream_id: int) -> None:
        """Let the publish on `stream_id` go ahead: Stream Begin, then NetStream.Publish.Start."""
        stream = self._pending_publish(stream_id)
        stream.state = _StreamState.PUBLISHING
        self._send_control(M.USER_CONTROL, M.user_control(M.STREAM_BEGIN, M.u32(stream_id)))
        self._send_status(stream_id, "status", "NetStream.Publish.Start", f"{stream.name} is now published.",
                          details=stream.name)

    def reject_publish(self, stream_id: int, code: str, description: str) -> None:
        """Refuse the publish: onStatus with level error and this code (NetStream.Publish.BadName
        for an unknown or busy stream key, NetStream.Publish.Denied, ...) and description."""
        stream = self._pending_publish(stream_id, also_publishing=True)
        stream.state = _StreamState.REJECTED
        self._send_status(stream_id, "error", code, description)

    def end_publish(self, stream_id: int, description: str = "Stopped publishing.") -> None:
        """Tell the client its stream is unpublished (NetStream.Unpublish.Success)."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.state in _RECEIVING:
            stream.state = _StreamState.UNPUBLISHED
        self._send_status(stream_id, "status", "NetStream.Unpublish.Success", description)

    def send_error(self, description: str, code: str = "NetConnection.Connect.Rejected") -> None:
        """Queue an error for the client before the transport closes the connection: onStatus
        with level error on stream 0. ffmpeg prints the description as "Server error: ...",
        and librtmp (OBS) closes on this code. Nothing is queued before the handshake is done."""
        if self._state is not State.OPEN and self._state is not State.FAILED:
            return
        self._send_command(0, "onStatus", 0.0, None, M.status_info("error", code, description))

    def data_to_send(self) -> bytes:
        """Everything queued since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _pending_publish(self, stream_id: int, also_publishing: bool = False) -> _Stream:
        stream = self._streams.get(stream_id)
        allowed = _RECEIVING if also_publishing else (_StreamState.REQUESTED,)
        if stream is None or stream.state not in allowed:
            state = "no such stream" if stream is None else stream.state.value
            raise ValueError(f"no publish request is waiting on stream {stream_id} ({state})")
        return stream

    # -- output ---------------------------------------------------------------------------------

    def _send_control(self, type_id: int, payload: bytes) -> None:
        self._out += self._writer.write(M.CONTROL_CHUNK_STREAM, type_id, 0, 0, payload, fmt=0)

    def _send_command(self, stream_id: int, name: str, transaction: float, *arguments) -> None:
        payload = M.command(name, transaction, *arguments)
        self._out += self._writer.write(M.COMMAND_CHUNK_STREAM, M.COMMAND_AMF0, stream_id, 0, payload, fmt=0)

    def _send_status(self, stream_id: int, level: str, code: str, description: str, **extra) -> None:
        self._send_command(stream_id, "onStatus", 0.0, None, M.status_info(level, code, description, **extra))

    def _refuse(self, stream_id: int, transaction: float, description: str, *,
                code: str = "NetConnection.Call.Failed", status: str | None = None) -> RtmpProtocolError:
        """Queue the error reply to a command and return the exception to raise.

        `status` answers with onStatus on the command's stream (what a client waits for after
        publish or play); otherwise a command that expects an answer (a transaction id) gets
        _error with `code`, one on a stream gets onStatus NetStream.Failed, and the rest the
        connection-level error of send_error.
        """
        if status is not None:
            self._send_status(stream_id, "error", status, description)
        elif transaction:
            self._send_command(stream_id, "_error", transaction, None, M.status_info("error", code, description))
        elif stream_id:
            self._send_status(stream_id, "error", "NetStream.Failed", description)
        else:
            self.send_error(description)
        self._replied = True
        return RtmpProtocolError(description)


_COMMANDS = {
    "connect": ServerConnection._on_connect,
    "createStream": ServerConnection._on_create_stream,
    "releaseStream": ServerConnection._on_release_stream,
    "FCPublish": ServerConnection._on_fc_publish,
    "publish": ServerConnection._on_publish,
    "FCUnpublish": ServerConnection._on_fc_unpublish,
    "closeStream": ServerConnection._on_close_stream,
    "deleteStream": ServerConnection._on_delete_stream,
    "_checkbw": ServerConnection._on_check_bandwidth,
}


def _u32(message: Message, what: str) -> int:
    if len(message.payload) < 4:
        raise RtmpProtocolError(f"{what} message of {len(message.payload)} bytes (4 expected)")
    return _U32.unpack_from(message.payload)[0]


def _amf0_in_amf3(message: Message) -> bytes:
    """The AMF0 body of an AMF3 command or data message: after one 0x00 format byte, AMF0 is
    what encoders that use these types send. Real AMF3 is not supported."""
    payload = message.payload
    if not payload or payload[0] != 0:
        name = M.TYPE_NAMES[message.type_id]
        raise RtmpProtocolError(f"{name} message in AMF3 encoding, which is not supported")
    return payload[1:]


def _describe_bad_version(first_bytes: bytes) -> str:
    version = first_bytes[0]
    if version == 6:
        return "RTMPE (encrypted RTMP, version 6) is not supported"
    if version == 0x16:
        return "the connection starts with a TLS handshake (rtmps:// to a plain RTMP port?)"
    if first_bytes[:4] in (b"GET ", b"POST", b"HEAD", b"PUT ", b"OPTI"):
        return "the connection starts with an HTTP request, not an RTMP handshake"
    return f"unsupported RTMP version {version} in C0 (3 expected)"
