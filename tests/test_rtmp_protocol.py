"""The RTMP server core against a Python publisher (recorder.rtmp.client) and hand-typed bytes:
handshake, connect, publish, every chunk header type, extended timestamps, chunk size changes,
interleaving, aggregates, timestamp wrap, acknowledgements and pings."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.rtmp import amf0
from recorder.rtmp import messages as M
from recorder.rtmp.chunks import ChunkReader, basic_header
from recorder.rtmp.client import ClientConnection
from recorder.rtmp.events import (
    AudioData,
    Connected,
    ConnectionClosed,
    Metadata,
    PublishRequested,
    Unpublished,
    VideoData,
)
from recorder.rtmp.protocol import ServerConnection, State

STREAM = 1  # the first stream id createStream hands out


# -- setting up connections ---------------------------------------------------------------------


def exchange(client: ClientConnection, server: ServerConnection, piece: int | None = None):
    """Send what the client queued to the server (in pieces of `piece` bytes), and the server's
    answer back; return (server events, messages the client received)."""
    data = client.data_to_send()
    events = []
    if not data:
        pass  # b"" would mean the end of the connection
    elif piece is None:
        events += server.receive_data(data)
    else:
        for offset in range(0, len(data), piece):
            events += server.receive_data(data[offset:offset + piece])
    return events, client.receive_data(server.data_to_send())


def connected(**server_options):
    client = ClientConnection(eager_handshake=True)
    server = ServerConnection(**server_options)
    client.connect("live", "rtmp://example.org/live")
    events, replies = exchange(client, server)
    assert [type(e) for e in events] == [Connected]
    return client, server


def publishing(name="key", **server_options):
    """A client publishing `name` on stream 1, accepted."""
    client, server = connected(**server_options)
    client.create_stream()
    client.publish(STREAM, name)
    events, _ = exchange(client, server)
    assert events == [PublishRequested(STREAM, name, "live")]
    server.accept_publish(STREAM)
    exchange(client, server)
    return client, server


def media(events):
    return [(type(e).__name__[0], e.timestamp, e.payload) for e in events if isinstance(e, (VideoData, AudioData))]


def statuses(replies):
    return [(m.name, m.stream_id, m.info["level"], m.info["code"]) for m in replies if m.name in ("onStatus", "_error")]


def header0(csid: int, timestamp: int, length: int, type_id: int, stream_id: int) -> bytes:
    field = min(timestamp, 0xFFFFFF)
    out = basic_header(0, csid) + field.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes((type_id,))
    out += stream_id.to_bytes(4, "little")
    return out + (timestamp.to_bytes(4, "big") if field == 0xFFFFFF else b"")


# -- handshake ----------------------------------------------------------------------------------


def test_handshake_in_one_piece():
    server = ServerConnection()
    c1 = bytes(range(256)) * 6
    assert server.receive_data(b"\x03" + c1) == []
    reply = server.data_to_send()
    assert len(reply) == 1 + 2 * 1536
    assert reply[0] == 3
    s1, s2 = reply[1:1537], reply[1537:]
    assert s1[4:8] == bytes(4)  # time, then four zero bytes, then random bytes
    assert len(set(s1[8:])) > 100
    assert s2 == c1
    assert server.state is State.HANDSHAKE_ACK
    assert server.receive_data(b"\x00" * 1536) == []
    assert server.state is State.OPEN
    assert server.data_to_send() == b""


def test_handshake_and_connect_byte_by_byte():
    client = ClientConnection(eager_handshake=True)
    client.connect("live", "rtmp://example.org/live")
    data = client.data_to_send()
    server = ServerConnection()
    events = []
    for i in range(len(data)):
        events += server.receive_data(data[i:i + 1])
        if i == 1535:
            assert server.data_to_send() == b""  # C1 not complete yet
        if i == 1536:
            assert len(server.data_to_send()) == 3073
    assert [type(e) for e in events] == [Connected]
    assert events[0].app == "live"


def test_handshake_with_the_first_chunks_in_one_piece():
    client = ClientConnection(eager_handshake=True)
    client.connect("live", "rtmp://example.org/live")
    client.create_stream()
    client.publish(STREAM, "key")
    events = ServerConnection().receive_data(client.data_to_send())
    assert [type(e) for e in events] == [Connected, PublishRequested]


def test_client_that_waits_for_s1():
    client = ClientConnection()  # sends C2 only once S1 is in
    server = ServerConnection()
    client.connect("live")
    first = client.data_to_send()
    assert len(first) == 1537  # C0 and C1; connect held back
    assert server.receive_data(first) == []
    assert client.receive_data(server.data_to_send()) == []
    events = server.receive_data(client.data_to_send())  # C2 (echoing S1) and connect
    assert [type(e) for e in events] == [Connected]


# -- connect and the commands the core answers itself -------------------------------------------


def test_connect_is_answered_with_window_bandwidth_chunk_size_and_result():
    server = ServerConnection(window_ack_size=1_000_000, out_chunk_size=60_000)
    client = ClientConnection(eager_handshake=True)
    client.command("connect", {"app": "live", "tcUrl": "rtmp://h/live", "flashVer": "x"}, "user", "secret")
    events, replies = exchange(client, server)
    assert events == [Connected("live", "rtmp://h/live", {"app": "live", "tcUrl": "rtmp://h/live", "flashVer": "x"},
                                ("user", "secret"))]
    assert [(m.type_id, m.payload) for m in replies[:3]] == [
        (M.WINDOW_ACK_SIZE, struct.pack(">I", 1_000_000)),
        (M.SET_PEER_BANDWIDTH, struct.pack(">IB", 1_000_000, 2)),
        (M.SET_CHUNK_SIZE, struct.pack(">I", 60_000)),
    ]
    result = replies[3]
    assert result.type_id == M.COMMAND_AMF0 and result.stream_id == 0
    name, transaction, properties, info = result.values
    assert (name, transaction) == ("_result", 1.0)
    assert properties == {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
    assert info == {"level": "status", "code": "NetConnection.Connect.Success",
                    "description": "Connection succeeded.", "objectEncoding": 0.0}
    assert server.app == "live"


def test_connect_without_tc_url():
    client = ClientConnection(eager_handshake=True)
    client.connect("live")
    events = ServerConnection().receive_data(client.data_to_send())
    assert events[0].tc_url is None


def test_commands_answered_by_the_core():
    client, server = connected()
    release = client.command("releaseStream", None, "key")
    fc_publish = client.command("FCPublish", None, "key")
    first = client.create_stream()
    second = client.create_stream()
    check = client.command("_checkbw", None)
    events, replies = exchange(client, server)
    assert events == []
    answered = [(m.name, m.values[1]) for m in replies]
    assert answered == [("_result", release), ("onFCPublish", 0.0), ("_result", fc_publish),
                        ("_result", first), ("_result", second), ("_result", check)]
    assert replies[1].info["code"] == "NetStream.Publish.Start"
    assert replies[3].values[3] == 1.0 and replies[4].values[3] == 2.0  # stream ids from 1


def test_the_server_sends_chunks_of_its_announced_size():
    client, server = connected(out_chunk_size=64)
    client.create_stream()
    client.publish(STREAM, "k" * 300)  # a long name makes the onStatus longer than 64 bytes
    exchange(client, server)
    server.accept_publish(STREAM)
    raw = server.data_to_send()
    reader = ChunkReader()
    reader.set_chunk_size(64)
    reader.feed(raw)
    messages = []
    while (message := reader.next_message()) is not None:
        messages.append(message)
    assert [m.type_id for m in messages] == [M.USER_CONTROL, M.COMMAND_AMF0]
    status = len(messages[1].payload)
    assert status > 300
    # Two type-0 headers of 12 bytes, and a 1-byte header before every further 64 bytes.
    assert len(raw) == 12 + 6 + 12 + status + (status - 1) // 64


# -- publishing ---------------------------------------------------------------------------------


def test_publish_with_a_query_string_and_accept():
    client, server = connected()
    client.create_stream()
    client.publish(STREAM, "key?secret=x&b=2", "record")
    events, _ = exchange(client, server)
    assert events == [PublishRequested(STREAM, "key?secret=x&b=2", "record")]
    server.accept_publish(STREAM)
    replies = client.receive_data(server.data_to_send())
    assert replies[0].type_id == M.USER_CONTROL
    assert replies[0].payload == struct.pack(">HI", M.STREAM_BEGIN, STREAM)
    assert statuses(replies) == [("onStatus", STREAM, "status", "NetStream.Publish.Start")]
    assert replies[1].info["details"] == "key?secret=x&b=2"


def test_publish_without_a_type_is_live():
    client, server = connected()
    client.create_stream()
    client.command("publish", None, "key", stream_id=STREAM, transaction=0.0)
    events, _ = exchange(client, server)
    assert events == [PublishRequested(STREAM, "key", "live")]


def test_reject_publish():
    client, server = connected()
    client.create_stream()
    client.publish(STREAM, "wrong-key")
    exchange(client, server)
    server.reject_publish(STREAM, "NetStream.Publish.BadName", "unknown stream key")
    replies = client.receive_data(server.data_to_send())
    assert statuses(replies) == [("onStatus", STREAM, "error", "NetStream.Publish.BadName")]
    assert replies[0].info["description"] == "unknown stream key"
    client.send_video(STREAM, 0, b"\x17\x00")  # media after a rejection is not given out
    events, _ = exchange(client, server)
    assert events == [] and server.dropped_messages == 1
    with pytest.raises(ValueError):
        server.accept_publish(STREAM)


def test_answers_for_a_stream_that_asked_nothing_are_refused():
    client, server = connected()
    with pytest.raises(ValueError, match="no publish request"):
        server.accept_publish(5)
    client.create_stream()
    exchange(client, server)
    with pytest.raises(ValueError, match="created"):
        server.reject_publish(STREAM, "NetStream.Publish.BadName", "x")


def test_media_sent_before_the_answer_is_kept():
    client, server = connected()
    client.create_stream()
    client.publish(STREAM, "key")
    client.send_metadata(STREAM, {"width": 640.0})
    client.send_video(STREAM, 0, b"\x17\x00\x00\x00\x00config")
    events, _ = exchange(client, server)
    assert [type(e) for e in events] == [PublishRequested, Metadata, VideoData]


def test_media_on_a_stream_that_is_not_publishing_is_dropped():
    client, server = connected()
    client.create_stream()
    client.send_video(STREAM, 0, b"\x17\x00")
    client.send_audio(7, 0, b"\xaf\x00")
    events, _ = exchange(client, server)
    assert events == [] and server.dropped_messages == 2


@pytest.mark.parametrize("ending", ["FCUnpublish", "deleteStream", "closeStream", "FCUnpublish+deleteStream"])
def test_unpublish(ending):
    client, server = publishing("key?secret=1")
    if ending.startswith("FCUnpublish"):
        client.command("FCUnpublish", None, "key?secret=1")
    if ending.endswith("deleteStream"):
        client.command("deleteStream", None, float(STREAM))
    if ending == "closeStream":
        client.command("closeStream", None, stream_id=STREAM, transaction=0.0)
    events, _ = exchange(client, server)
    assert events == [Unpublished(STREAM)]  # once, however many ways the client says it
    server.end_publish(STREAM)
    replies = client.receive_data(server.data_to_send())
    assert statuses(replies) == [("onStatus", STREAM, "status", "NetStream.Unpublish.Success")]
    assert server.receive_data(b"") == [ConnectionClosed()]
    assert server.closed and server.state is State.CLOSED


def test_publish_again_after_close_stream():
    client, server = publishing()
    client.command("closeStream", None, stream_id=STREAM, transaction=0.0)
    client.publish(STREAM, "second")
    events, _ = exchange(client, server)
    assert events == [Unpublished(STREAM), PublishRequested(STREAM, "second", "live")]


def test_end_of_connection():
    client, server = publishing()
    client.send_raw(header0(6, 0, 1000, M.VIDEO, STREAM) + bytes(10))  # a message cut off
    exchange(client, server)
    assert server.receive_data(b"") == [ConnectionClosed()]
    assert server.receive_data(b"") == []
    with pytest.raises(RuntimeError):
        server.receive_data(b"more")


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_through_set_data_frame():
    client, server = publishing()
    values = {"width": 320.0, "height": 240.0, "encoder": "Lavf", "stereo": True}
    raw = client.send_metadata(STREAM, values, timestamp=0)
    events, _ = exchange(client, server)
    assert events == [Metadata(STREAM, values, raw, 0)]
    assert events[0].raw.startswith(b"\x02\x00\x0aonMetaData")
    assert amf0.decode_all(events[0].raw) == ["onMetaData", values]


def test_bare_on_metadata_with_an_object():
    client, server = publishing()
    payload = amf0.encode("onMetaData", {"width": 1280.0})
    client.send_message(5, M.DATA_AMF0, STREAM, 0, payload)
    events, _ = exchange(client, server)
    assert events == [Metadata(STREAM, {"width": 1280.0}, payload, 0)]


def test_other_data_messages_are_not_events():
    client, server = publishing()
    client.send_message(5, M.DATA_AMF0, STREAM, 0, amf0.encode("@setDataFrame", "onTextData", {"text": "hi"}))
    client.send_message(5, M.DATA_AMF0, STREAM, 0, amf0.encode("onCuePoint", {"name": "x"}))
    client.send_message(5, M.DATA_AMF0, STREAM, 0, amf0.encode("@clearDataFrame"))
    events, _ = exchange(client, server)
    assert events == []


def test_amf3_variants_with_a_format_byte():
    client = ClientConnection(eager_handshake=True)
    server = ServerConnection()
    body = amf0.encode("connect", 1.0, {"app": "live"})
    client.send_message(3, M.COMMAND_AMF3, 0, 0, b"\x00" + body)
    client.send_message(3, M.COMMAND_AMF3, 0, 0, b"\x00" + amf0.encode("createStream", 2.0, None))
    client.send_message(3, M.COMMAND_AMF3, STREAM, 0, b"\x00" + amf0.encode("publish", 0.0, None, "k", "live"))
    raw = amf0.encode("onMetaData", amf0.EcmaArray(width=1.0))
    client.send_message(5, M.DATA_AMF3, STREAM, 0, b"\x00" + amf0.encode("@setDataFrame") + raw)
    events, replies = exchange(client, server)
    assert [type(e) for e in events] == [Connected, PublishRequested, Metadata]
    assert events[2].raw == raw and events[2].values == {"width": 1.0}
    assert replies[-1].values == ["_result", 2.0, None, 1.0]


# -- chunk headers ------------------------------------------------------------------------------


def test_spec_example_audio_with_header_types_0_2_3_3():
    # RTMP specification 5.3.2.1: four 32-byte audio messages, timestamps 1000, 1020, 1040, 1060.
    client, server = publishing()
    bodies = [bytes([i]) * 32 for i in range(4)]
    raw = (bytes.fromhex("03 0003e8 000020 08 01000000") + bodies[0]
           + bytes.fromhex("83 000014") + bodies[1]
           + bytes.fromhex("c3") + bodies[2]
           + bytes.fromhex("c3") + bodies[3])
    events = server.receive_data(raw)
    assert media(events) == [("A", 1000, bodies[0]), ("A", 1020, bodies[1]), ("A", 1040, bodies[2]),
                             ("A", 1060, bodies[3])]


def test_spec_example_video_in_three_chunks():
    # RTMP specification 5.3.2.2: a 307-byte video message at 128 bytes a chunk.
    client, server = publishing()
    body = os.urandom(307)
    raw = (bytes.fromhex("04 0003e8 000133 09 01000000") + body[:128]
           + b"\xc4" + body[128:256] + b"\xc4" + body[256:])
    assert media(server.receive_data(raw)) == [("V", 1000, body)]


def test_type_3_after_type_0_adds_the_absolute_timestamp_again():
    # After a type-0 header the "delta" a type-3 chunk reuses is the absolute timestamp: the
    # spec (5.3.1.2.4) and ffmpeg read 1000 + 1000; nginx-rtmp would read 1000.
    client, server = publishing()
    raw = bytes.fromhex("04 0003e8 000002 09 01000000") + b"v1" + b"\xc4" + b"v2" + b"\xc4" + b"v3"
    assert media(server.receive_data(raw)) == [("V", 1000, b"v1"), ("V", 2000, b"v2"), ("V", 3000, b"v3")]


def test_every_header_type_from_the_client():
    client, server = publishing()
    sent = [
        (0, 0, b"\x17\x00config"),      # type 0
        (1, 40, b"\x27\x01frame-1"),    # type 1: new length
        (2, 80, b"\x27\x01frame-2"),    # type 2: same length and type, delta 40
        (3, 120, b"\x27\x01frame-3"),   # type 3: same delta
        (3, 160, b"\x27\x01frame-4"),
        (2, 170, b"\x27\x01frame-5"),   # type 2: another delta
        (3, 180, b"\x27\x01frame-6"),
        (0, 200, b"\x27\x01frame-7"),   # type 0 again
        (1, 180, b"\x17\x01back-in-time"),  # type 1 with a delta of -20 (modulo 2**32)
    ]
    for fmt, timestamp, payload in sent:
        client.send_video(STREAM, timestamp, payload, fmt=fmt)
    events, _ = exchange(client, server)
    assert media(events) == [("V", t, p) for _, t, p in sent]


@pytest.mark.parametrize("chunk_size", [1, 7, 128, 4096])
@pytest.mark.parametrize("piece", [1, 997, None])
def test_audio_and_video_across_chunk_sizes_and_pieces(chunk_size, piece):
    client, server = publishing()
    client.set_chunk_size(chunk_size)
    expected = []
    for i in range(10):
        payload = bytes([i]) * (300 + (i % 3) * 50)  # lengths repeat: types 2 and 3 get used
        client.send_video(STREAM, i * 33, payload)
        client.send_audio(STREAM, i * 33 + 5, payload[:20])
        expected += [("V", i * 33, payload), ("A", i * 33 + 5, payload[:20])]
    events, _ = exchange(client, server, piece=piece)
    assert media(events) == expected


def test_two_and_three_byte_basic_headers():
    client, server = publishing()
    for csid in (63, 64, 319, 320, 1000, 65599):
        client.send_video(STREAM, 10, b"\x27\x01" + csid.to_bytes(3, "big") * 100, csid=csid)
    events, _ = exchange(client, server, piece=5)
    assert [e.payload[2:5] for e in events] == [c.to_bytes(3, "big") for c in (63, 64, 319, 320, 1000, 65599)]


def test_three_byte_form_of_a_small_chunk_stream_id():
    # csid 100 written in the 3-byte form (allowed for any id from 64) is chunk stream 100.
    client, server = publishing()
    raw = (bytes.fromhex("01 24 00") + bytes.fromhex("000010 000002 09 01000000") + b"v1"
           + bytes.fromhex("80 24") + bytes.fromhex("000010") + b"v2")  # type 2, 2-byte form of 100
    assert media(server.receive_data(raw)) == [("V", 16, b"v1"), ("V", 32, b"v2")]


def test_interleaved_chunk_streams():
    client, server = publishing()
    video = os.urandom(1000)
    audio = os.urandom(400)
    video_chunks = client.chunks(6, M.VIDEO, STREAM, 100, video)
    audio_chunks = client.chunks(4, M.AUDIO, STREAM, 90, audio)
    command_chunks = client.chunks(3, M.COMMAND_AMF0, 0, 0, amf0.encode("_checkbw", 9.0, None))
    interleaved = []
    for i in range(max(len(video_chunks), len(audio_chunks))):
        interleaved += video_chunks[i:i + 1] + audio_chunks[i:i + 1]
        if i == 2:
            interleaved += command_chunks
    client.send_raw(b"".join(interleaved))
    events, replies = exchange(client, server, piece=100)
    assert sorted(media(events)) == sorted([("A", 90, audio), ("V", 100, video)])
    assert media(events)[0] == ("A", 90, audio)  # audio completes first: it has fewer chunks
    assert replies[0].values[:2] == ["_result", 9.0]


def test_chunk_size_change_in_the_middle_of_another_message():
    client, server = publishing()
    video = os.urandom(1000)
    first, *rest = client.chunks(6, M.VIDEO, STREAM, 40, video)  # 128-byte chunks
    # Only the first chunk goes at 128 bytes; then the chunk size drops to 50, and the rest of
    # the same message comes in 50-byte chunks.
    client.send_raw(first)
    client.set_chunk_size(50)
    remaining = video[128:]
    for offset in range(0, len(remaining), 50):
        client.send_raw(b"\xc6" + remaining[offset:offset + 50])
    client.send_audio(STREAM, 41, b"\xaf\x01" + bytes(120))
    events, _ = exchange(client, server)
    assert media(events) == [("V", 40, video), ("A", 41, b"\xaf\x01" + bytes(120))]
    assert server.peer_chunk_size == 50


def test_large_chunk_size():
    client, server = publishing()
    client.set_chunk_size(0x7FFFFFFF)
    frame = os.urandom(300_000)
    client.send_video(STREAM, 0, frame)
    events, _ = exchange(client, server, piece=1400)
    assert media(events) == [("V", 0, frame)]


def test_empty_messages():
    client, server = publishing()
    client.send_video(STREAM, 5, b"")
    client.send_audio(STREAM, 6, b"")
    events, _ = exchange(client, server)
    assert media(events) == [("V", 5, b""), ("A", 6, b"")]


def test_abort_drops_the_partial_message():
    client, server = publishing()
    chunks = client.chunks(6, M.VIDEO, STREAM, 10, b"x" * 300)
    client.send_raw(chunks[0])  # 128 of 300 bytes
    client.control(M.ABORT, struct.pack(">I", 6))
    client.send_video(STREAM, 20, b"after the abort", fmt=0)
    events, _ = exchange(client, server)
    assert media(events) == [("V", 20, b"after the abort")]


# -- extended timestamps ------------------------------------------------------------------------


def test_extended_timestamp_on_type_0_and_its_continuations():
    client, server = publishing()
    body = b"\xaa" * 200
    ext = bytes.fromhex("01000000")  # 16777216 ms
    raw = (bytes.fromhex("04 ffffff 0000c8 09 01000000") + ext + body[:128]
           + b"\xc4" + ext + body[128:])
    assert media(server.receive_data(raw)) == [("V", 0x1000000, body)]
    assert server._reader.repeats_extended_timestamp is True
    # A new message with a type-3 header after it: the 4 bytes are there too, and the delta is
    # the absolute timestamp again (see the type-0 test above).
    raw = b"\xc4" + ext + body[:128] + b"\xc4" + ext + body[128:]
    assert media(server.receive_data(raw)) == [("V", 0x2000000, body)]


def publishing_from_a_peer_that_leaves_the_extension_off() -> ServerConnection:
    """A server that has received a message with an extended timestamp whose type-3 chunk
    goes without the extension."""
    client, server = publishing()
    body = b"\xaa" * 200
    raw = (bytes.fromhex("04 ffffff 0000c8 09 01000000") + bytes.fromhex("01000000") + body[:128]
           + b"\xc4" + body[128:])
    assert media(server.receive_data(raw)) == [("V", 0x1000000, body)]
    return server


def test_extended_timestamp_left_off_continuation_chunks():
    # Older ffmpeg releases and some encoders do not repeat it on type-3 chunks: the first such
    # chunk shows it (its 4 bytes are not the timestamp), and the rest of the connection follows.
    server = publishing_from_a_peer_that_leaves_the_extension_off()
    assert server._reader.repeats_extended_timestamp is False


def test_a_short_last_chunk_from_a_peer_that_leaves_the_extension_off_is_not_held_back():
    # Once the peer is known to leave it off, a last chunk of fewer than 4 bytes is the whole
    # message's end: it comes out at once, not when more bytes happen to arrive.
    server = publishing_from_a_peer_that_leaves_the_extension_off()
    short = b"\xbb" * 130  # 128 bytes, then a last chunk of 2
    # Type 1 with an extended delta of 0x1000000, then a type-3 chunk without the extension.
    raw = bytes.fromhex("44 ffffff 000082 09 01000000") + short[:128] + b"\xc4" + short[128:]
    assert media(server.receive_data(raw)) == [("V", 0x2000000, short)]


@pytest.mark.parametrize("repeat", [True, False])
def test_extended_timestamps_from_the_client(repeat):
    client = ClientConnection(eager_handshake=True, repeat_extended_timestamp=repeat)
    server = ServerConnection()
    client.connect("live")
    client.create_stream()
    client.publish(STREAM, "key")
    exchange(client, server)
    server.accept_publish(STREAM)
    exchange(client, server)
    expected = []
    timestamps = [0xFFFFF0, 0xFFFFFE, 0xFFFFFF, 0x1000000, 0x1000021, 0x2000042, 0x2000063, 0x7FFFFFFF,
                  0x80000000 + 0x1000000]
    for i, timestamp in enumerate(timestamps):
        payload = bytes([0x27, 1]) + os.urandom(250 + i)
        client.send_video(STREAM, timestamp, payload)
        expected.append(("V", timestamp, payload))
    # Deltas at and above 0xFFFFFF go in the extended field of type-1 and type-2 headers.
    for fmt, step in ((1, 0xFFFFFF), (2, 0xFFFFFF), (3, 0xFFFFFF), (2, 0x1234567), (1, 0xFFFFFE)):
        timestamp = expected[-1][1] + step
        payload = os.urandom(len(expected[-1][2]) if fmt >= 2 else 301)
        client.send_video(STREAM, timestamp, payload, fmt=fmt)
        expected.append(("V", timestamp, payload))
    events, _ = exchange(client, server, piece=61)
    assert media(events) == expected


# -- aggregates ---------------------------------------------------------------------------------


def _sub_message(type_id: int, timestamp: int, body: bytes) -> bytes:
    header = (bytes((type_id,)) + len(body).to_bytes(3, "big") + (timestamp & 0xFFFFFF).to_bytes(3, "big")
              + bytes((timestamp >> 24,)) + bytes(3))
    return header + body + (11 + len(body)).to_bytes(4, "big")


def test_aggregate_messages():
    client, server = publishing()
    meta = amf0.encode("onMetaData", amf0.EcmaArray(width=1.0))
    aggregate = (_sub_message(M.DATA_AMF0, 0x01000000, meta)
                 + _sub_message(M.VIDEO, 0x01000000, b"\x17\x00config")
                 + _sub_message(M.AUDIO, 0x01000010, b"\xaf\x00aac")
                 + _sub_message(M.VIDEO, 0x01000021, b"\x27\x01frame"))
    client.send_message(6, M.AGGREGATE, STREAM, 5000, aggregate)
    # The last back pointer may be missing.
    client.send_message(6, M.AGGREGATE, STREAM, 6000, _sub_message(M.VIDEO, 77, b"\x27\x01next")[:-4])
    events, _ = exchange(client, server)
    assert events[0] == Metadata(STREAM, {"width": 1.0}, meta, 5000)
    # Moved so that the first sub-message is at the aggregate's timestamp.
    assert media(events) == [("V", 5000, b"\x17\x00config"), ("A", 5016, b"\xaf\x00aac"),
                             ("V", 5033, b"\x27\x01frame"), ("V", 6000, b"\x27\x01next")]


# -- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["type 0", "deltas"])
def test_timestamps_unwrap_past_32_bits(header):
    client, server = publishing()
    start = 2**32 - 200
    expected = []
    for i in range(12):
        timestamp = start + i * 40
        payload = b"\x27\x01" + bytes([i]) * 10
        client.send_video(STREAM, timestamp, payload, fmt=0 if header == "type 0" else None)
        client.send_audio(STREAM, timestamp + 3, b"\xaf\x01" + bytes([i]))
        expected += [("V", timestamp, payload), ("A", timestamp + 3, b"\xaf\x01" + bytes([i]))]
    events, _ = exchange(client, server)
    assert media(events) == expected
    assert media(events)[-1][1] > 2**32


def test_timestamps_may_step_back_a_little():
    client, server = publishing()
    for timestamp in (1000, 990, 1033, 1020):
        client.send_video(STREAM, timestamp, b"\x27\x01")
    events, _ = exchange(client, server)
    assert [e.timestamp for e in events] == [1000, 990, 1033, 1020]


# -- acknowledgements and pings -----------------------------------------------------------------


def _acks(replies):
    return [struct.unpack(">I", m.payload)[0] for m in replies if m.type_id == M.ACKNOWLEDGEMENT]


def test_acknowledgement_after_the_peers_window():
    client, server = publishing()
    client.control(M.WINDOW_ACK_SIZE, struct.pack(">I", 5000))
    exchange(client, server)
    start = server.bytes_received
    acks = []
    for i in range(30):
        client.send_video(STREAM, i * 33, os.urandom(1000))
        _, replies = exchange(client, server)
        acks += _acks(replies)
    total = server.bytes_received
    assert total - start > 30_000
    # Sequence numbers count the bytes after the handshake; one goes out as soon as a window's
    # worth has come in since the last (each exchange here carries about 1010 bytes).
    assert 5000 <= acks[0] < 5000 + 1100
    assert all(5000 <= later - earlier < 5000 + 1100 for earlier, later in zip(acks, acks[1:], strict=False))
    assert 0 <= total - acks[-1] < 5000


def test_acknowledgement_with_our_window_until_the_peer_names_one():
    client, server = publishing(window_ack_size=10_000)
    for i in range(20):
        client.send_video(STREAM, i, os.urandom(2000))
    _, replies = exchange(client, server)
    assert _acks(replies) == [server.bytes_received]


def test_no_acknowledgements_for_a_window_of_0():
    client, server = publishing(window_ack_size=10_000)
    client.control(M.WINDOW_ACK_SIZE, struct.pack(">I", 0))
    for i in range(20):
        client.send_video(STREAM, i, os.urandom(2000))
    _, replies = exchange(client, server)
    assert _acks(replies) == []


def test_ping_is_answered_with_a_pong():
    client, server = connected()
    client.control(M.USER_CONTROL, struct.pack(">HI", M.PING_REQUEST, 123456))
    client.control(M.USER_CONTROL, struct.pack(">HII", M.SET_BUFFER_LENGTH, 1, 3000))  # ignored
    client.control(M.USER_CONTROL, struct.pack(">HI", M.PING_RESPONSE, 1))  # ignored
    client.control(M.SET_PEER_BANDWIDTH, struct.pack(">IB", 5_000_000, 2))  # ignored
    client.control(M.ACKNOWLEDGEMENT, struct.pack(">I", 3073))  # ignored
    events, replies = exchange(client, server)
    assert events == []
    assert [(m.type_id, m.payload) for m in replies] == [(M.USER_CONTROL, struct.pack(">HI", M.PING_RESPONSE, 123456))]


# -- volume -------------------------------------------------------------------------------------


def test_ten_megabytes_of_128_byte_chunks():
    client, server = publishing()
    frame = os.urandom(20_000)
    frames = 500
    for i in range(frames):
        client.send_video(STREAM, i * 33, frame)
    data = client.data_to_send()
    assert len(data) > 10_000_000
    count = 0
    for offset in range(0, len(data), 65536):
        for event in server.receive_data(data[offset:offset + 65536]):
            assert event.payload == frame
            count += 1
    assert count == frames
    assert server._reader.buffered == 0 and server._reader.partial_messages == 0


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_messages_header_types_chunk_sizes_and_pieces(data):
    client, server = publishing()
    client.set_chunk_size(data.draw(st.sampled_from([1, 2, 50, 128, 129, 1000, 65536])))
    csids = data.draw(st.lists(st.sampled_from([4, 6, 8, 63, 64, 300, 320, 65599]), min_size=1, max_size=3,
                               unique=True))
    clocks = {csid: data.draw(st.integers(0, 2**32 + 1000)) for csid in csids}
    expected = []
    queues: dict[int, list[bytes]] = {csid: [] for csid in csids}
    for _ in range(data.draw(st.integers(1, 12))):
        csid = data.draw(st.sampled_from(csids))
        clocks[csid] += data.draw(st.sampled_from([0, 1, 33, 40, 0xFFFFFE, 0xFFFFFF, 0x1000000]))
        kind = data.draw(st.sampled_from([M.VIDEO, M.AUDIO]))
        payload = os.urandom(data.draw(st.sampled_from([0, 1, 5, 127, 128, 129, 400])))
        fmt = data.draw(st.sampled_from([None, 0, 1, 2, 3]))
        try:
            chunks = client.chunks(csid, kind, STREAM, clocks[csid], payload, fmt)
        except ValueError:  # that header type cannot say this message
            chunks = client.chunks(csid, kind, STREAM, clocks[csid], payload)
        queues[csid] += chunks
        expected.append((kind, clocks[csid] % 2**32, payload))
    # One chunk stream carries its messages in order; chunk streams interleave at random.
    queues = {csid: chunks for csid, chunks in queues.items() if chunks}
    while queues:
        csid = data.draw(st.sampled_from(sorted(queues)))
        client.send_raw(queues[csid].pop(0))
        if not queues[csid]:
            del queues[csid]
    raw = client.data_to_send()
    piece = data.draw(st.sampled_from([1, 3, 100, 4096, len(raw)]))
    events = []
    for offset in range(0, len(raw), piece):
        events += server.receive_data(raw[offset:offset + piece])
    kinds = {VideoData: M.VIDEO, AudioData: M.AUDIO}
    # The chunk streams' clocks are unrelated here, so compare timestamps modulo 2**32.
    got = sorted((kinds[type(e)], e.timestamp % 2**32, e.payload) for e in events)
    assert got == sorted(expected)
