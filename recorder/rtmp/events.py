"""What ServerConnection.receive_data gives out: one event per thing the publisher did.

Timestamps are milliseconds on the publisher's clock, as ints, with the 32-bit RTMP timestamps
unwrapped so that they keep increasing through a long stream. Payloads are whole messages, so a
VideoData or AudioData payload is exactly the body of an FLV video or audio tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Event:
    """Base class of the events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The client's `connect` (already answered: window, bandwidth, chunk size, _result).

    `properties` is the command object as sent (app, tcUrl, flashVer, ...); `arguments` holds
    any values the client put after it (some encoders send credentials there).
    """

    app: str
    tc_url: str | None
    properties: dict
    arguments: tuple = ()


@dataclass(frozen=True, slots=True)
class PublishRequested(Event):
    """The client wants to publish on `stream_id`: answer with accept_publish or reject_publish.

    `name` is the stream name exactly as sent, query string and all (`key?secret=x`).
    `publish_type` is "live", "record" or "append" (what the client asked; "live" if absent).
    """

    stream_id: int
    name: str
    publish_type: str


@dataclass(frozen=True, slots=True)
class Metadata(Event):
    """onMetaData, sent through @setDataFrame (ffmpeg, OBS) or as a bare data message.

    `raw` is the AMF0 of the message from the "onMetaData" string on, without @setDataFrame:
    the body of an FLV script tag.
    """

    stream_id: int
    values: dict
    raw: bytes = field(repr=False)
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class VideoData(Event):
    """A video message: payload[0] is frame type and codec id, then (for AVC) the packet type
    and the composition time offset, then the NAL units or the decoder configuration."""

    stream_id: int
    timestamp: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AudioData(Event):
    """An audio message: payload[0] is format, rate, size and channels, then (for AAC) the
    packet type, then the raw frame or the AudioSpecificConfig."""

    stream_id: int
    timestamp: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Unpublished(Event):
    """The publisher stopped publishing on `stream_id` (FCUnpublish, closeStream or deleteStream)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed the connection (receive_data(b""))."""
