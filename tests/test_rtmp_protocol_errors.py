"""Protocol violations: each raises RtmpProtocolError from receive_data, leaves an error reply
the client can decode where the protocol has room for one, and ends the connection. Garbage,
mutations and truncations of a real session raise nothing else."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rtmp_protocol import STREAM, connected, exchange, header0, publishing

from recorder.rtmp import amf0
from recorder.rtmp import messages as M
from recorder.rtmp.client import ClientConnection
from recorder.rtmp.errors import RtmpProtocolError
from recorder.rtmp.events import Connected, PublishRequested, VideoData
from recorder.rtmp.protocol import ServerConnection, State


def violation(client: ClientConnection, server: ServerConnection, match: str) -> RtmpProtocolError:
    """Send what the client queued; it must raise RtmpProtocolError matching `match`."""
    with pytest.raises(RtmpProtocolError, match=match) as caught:
        server.receive_data(client.data_to_send())
    error = caught.value
    assert error.__cause__ is None  # a deliberate check, not a parser tripping over the input
    assert server.state is State.FAILED and server.closed and server.error == error.description
    with pytest.raises(RtmpProtocolError, match="already failed"):
        server.receive_data(b"\x00")
    return error


def reply(client: ClientConnection, server: ServerConnection):
    """The last message the server queued, decoded by the client: the error reply."""
    replies = client.receive_data(server.data_to_send())
    assert replies, "no error reply was queued"
    last = replies[-1]
    assert last.info["level"] == "error"
    return last


def connection_error(client, server, match):
    error = violation(client, server, match)
    last = reply(client, server)
    assert (last.name, last.stream_id, last.info["code"]) == ("onStatus", 0, "NetConnection.Connect.Rejected")
    assert last.info["description"] == error.description
    return error


# -- handshake ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "match"), [
    (b"\x04" + bytes(1536), "unsupported RTMP version 4"),
    (b"\x06", "RTMPE"),
    (b"\x16\x03\x01\x02\x00", "TLS handshake"),
    (b"GET / HTTP/1.1\r\n\r\n", "HTTP request"),
    (b"\x00", "version 0"),
])
def test_bad_version(first, match):
    server = ServerConnection()
    with pytest.raises(RtmpProtocolError, match=match):
        server.receive_data(first)
    assert server.data_to_send() == b""  # no RTMP to answer in before the handshake
    with pytest.raises(RtmpProtocolError):
        server.receive_data(b"\x03")


# -- chunk layer --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_first_chunk_on_a_chunk_stream_must_be_type_0(fmt):
    client, server = connected()
    client.send_raw(bytes(((fmt << 6) | 9,)) + bytes(11))
    connection_error(client, server, f"chunk stream 9 starts with a type-{fmt} chunk header")


@pytest.mark.parametrize("fmt", [0, 1, 2])
def test_a_full_header_in_the_middle_of_a_message(fmt):
    client, server = publishing()
    client.send_raw(client.chunks(6, M.VIDEO, STREAM, 0, bytes(300))[0])
    client.send_raw(bytes(((fmt << 6) | 6,)) + bytes(11))
    connection_error(client, server, "in the middle of a message")


@pytest.mark.parametrize("fmt", [0, 1])
def test_message_over_the_size_limit(fmt):
    client, server = publishing(max_message_size=1000)
    client.send_video(STREAM, 0, bytes(1000))  # at the limit: fine
    if fmt == 1:
        client.send_raw(b"\x46" + (40).to_bytes(3, "big") + (1001).to_bytes(3, "big") + bytes((M.VIDEO,)))
    else:
        client.send_raw(header0(6, 0, 1001, M.VIDEO, STREAM))  # refused at the header
    error = connection_error(client, server, "1001 bytes is over the limit of 1000")
    assert [type(e) for e in error.events] == [VideoData]


def test_too_many_chunk_streams():
    client, server = publishing(max_chunk_streams=3)  # the commands went on chunk stream 3
    client.send_video(STREAM, 0, b"a", csid=10)
    client.send_video(STREAM, 0, b"b", csid=11)
    client.send_video(STREAM, 0, b"c", csid=12)
    error = connection_error(client, server, "too many chunk streams: chunk stream 12")
    assert [e.payload for e in error.events] == [b"a", b"b"]  # what came before is kept


def test_messages_in_progress_are_bounded_together():
    """Many chunk streams each holding most of a message would add up to many times the
    message limit: the total is capped too."""
    client, server = publishing(max_message_size=1000, max_partial_bytes=2500)
    for csid in (10, 11, 12, 13):
        client.send_raw(header0(csid, 0, 1000, M.VIDEO, STREAM) + bytes(128))  # first chunks only
    client.set_chunk_size(600)
    for csid in (10, 11, 12):
        client.send_raw(bytes((0xC0 | csid,)) + bytes(600))  # continuations: 728 of 1000 bytes each
    events, _ = exchange(client, server)
    assert events == []  # 2312 bytes in progress: within the limit
    client.send_raw(bytes((0xC0 | 13,)) + bytes(600))
    connection_error(client, server, "hold 2912 bytes, over the limit of 2500")


@pytest.mark.parametrize(("payload", "match"), [(b"", "0x0 is invalid"), (b"\x80\x00\x00\x80", "0x80000080"),
                                                (b"\x00\x01", "Set Chunk Size message of 2 bytes")])
def test_bad_set_chunk_size(payload, match):
    client, server = connected()
    client.control(M.SET_CHUNK_SIZE, payload.ljust(4, b"\x00") if match.startswith("0x0") else payload)
    connection_error(client, server, match)


@pytest.mark.parametrize(("type_id", "payload", "match"), [
    (M.ABORT, b"\x00", "Abort message of 1 bytes"),
    (M.WINDOW_ACK_SIZE, b"\x00\x00", "Window Acknowledgement Size message of 2 bytes"),
    (M.ACKNOWLEDGEMENT, b"", "Acknowledgement message of 0 bytes"),
    (M.SET_PEER_BANDWIDTH, b"\x00", "Set Peer Bandwidth of 1 bytes"),
    (M.SET_PEER_BANDWIDTH, b"\x00\x00\x10\x00", "Set Peer Bandwidth of 4 bytes"),  # the limit type is missing
    (M.USER_CONTROL, b"\x00", "User Control message of 1 bytes"),
    (M.USER_CONTROL, b"\x00\x06\x00", "ping request of 3 bytes"),
])
def test_short_control_messages(type_id, payload, match):
    client, server = connected()
    client.control(type_id, payload)
    connection_error(client, server, match)


@pytest.mark.parametrize(("type_id", "name"), [(19, "shared object"), (16, "shared object"), (7, "unknown"),
                                               (0, "unknown"), (0x30, "unknown")])
def test_unsupported_message_types(type_id, name):
    client, server = connected()
    client.send_message(5, type_id, 0, 0, b"\x00\x01")
    connection_error(client, server, f"unsupported message type {type_id} \\({name}")


# -- AMF and commands ---------------------------------------------------------------------------


@pytest.mark.parametrize(("type_id", "payload", "match"), [
    (M.COMMAND_AMF0, b"\x02\x00\x05ab", "malformed AMF0 in a command message"),
    (M.COMMAND_AMF0, amf0.encode(1.0, 2.0), "does not start with the command name"),
    (M.COMMAND_AMF0, b"", "does not start with the command name"),
    (M.DATA_AMF0, b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x01\x00\x01", "malformed AMF0 in a data message"),
    (M.COMMAND_AMF3, b"\x11\x06\x05", "AMF3 encoding, which is not supported"),
    (M.DATA_AMF3, b"", "AMF3 encoding"),
])
def test_malformed_commands_and_data(type_id, payload, match):
    client, server = publishing()
    client.send_message(5, type_id, STREAM, 0, payload)
    connection_error(client, server, match)


def test_unsupported_command_with_a_transaction_id():
    client, server = connected()
    transaction = client.command("getVideoFrame", None, "x")
    violation(client, server, "unsupported command 'getVideoFrame'")
    last = reply(client, server)
    assert last.values[:3] == ["_error", transaction, None]
    assert last.info["code"] == "NetConnection.Call.Failed"
    assert "getVideoFrame" in last.info["description"]


def test_unsupported_command_on_a_stream_without_transaction_id():
    client, server = publishing()
    client.command("startRecording", None, stream_id=STREAM, transaction=0.0)
    violation(client, server, "unsupported command 'startRecording'")
    last = reply(client, server)
    assert (last.name, last.stream_id, last.info["code"]) == ("onStatus", STREAM, "NetStream.Failed")


def test_unsupported_command_without_transaction_id_or_stream():
    client, server = connected()
    client.command("sendSomething", transaction=0.0)
    connection_error(client, server, "unsupported command 'sendSomething'")


@pytest.mark.parametrize("command", ["play", "play2"])
def test_play_is_refused(command):
    client, server = connected()
    client.create_stream()
    client.command(command, None, "key", stream_id=STREAM, transaction=0.0)
    violation(client, server, "does not play")
    last = reply(client, server)
    assert (last.name, last.stream_id, last.info["code"]) == ("onStatus", STREAM, "NetStream.Play.Failed")
    assert "does not play" in last.info["description"]


@pytest.mark.parametrize("command", ["FCSubscribe", "getStreamLength", "seek", "receiveVideo"])
def test_other_player_commands_are_refused(command):
    client, server = connected()
    transaction = client.command(command, None, "key")
    violation(client, server, "does not play")
    last = reply(client, server)
    assert (last.name, last.values[1], last.info["code"]) == ("_error", transaction, "NetConnection.Call.Failed")


def test_commands_before_connect():
    client = ClientConnection(eager_handshake=True)
    server = ServerConnection()
    transaction = client.create_stream()
    violation(client, server, "'createStream' before connect")
    assert reply(client, server).values[:2] == ["_error", transaction]


@pytest.mark.parametrize("command_object", [None, {"tcUrl": "rtmp://x/live"}, {"app": 1.0}])
def test_connect_without_an_app(command_object):
    client = ClientConnection(eager_handshake=True)
    server = ServerConnection()
    client.command("connect", command_object)
    violation(client, server, "connect without a command object that names the app")
    last = reply(client, server)
    assert (last.name, last.info["code"]) == ("_error", "NetConnection.Connect.Rejected")


def test_a_second_connect():
    client, server = connected()
    client.connect("other")
    error = violation(client, server, "a second connect")
    assert error.events == []
    assert reply(client, server).name == "_error"


@pytest.mark.parametrize(("setup", "arguments", "match", "code"), [
    ("none", (None, "key", "live"), "which createStream did not make", "NetStream.Publish.Failed"),
    ("created", (None,), "publish without a stream name", "NetStream.Publish.BadName"),
    ("created", (None, 5.0), "publish without a stream name", "NetStream.Publish.BadName"),
    ("publishing", (None, "again", "live"), "a second publish on stream 1", "NetStream.Publish.Failed"),
])
def test_bad_publish(setup, arguments, match, code):
    if setup == "publishing":
        client, server = publishing()
    else:
        client, server = connected()
        if setup == "created":
            client.create_stream()
            exchange(client, server)
    client.command("publish", *arguments, stream_id=STREAM, transaction=0.0)
    violation(client, server, match)
    last = reply(client, server)
    assert (last.name, last.stream_id, last.info["code"]) == ("onStatus", STREAM, code)


def test_too_many_streams():
    client, server = connected()
    for _ in range(64):
        client.create_stream()
    exchange(client, server)
    client.create_stream()
    violation(client, server, "more than 64 streams")


@pytest.mark.parametrize(("body", "match"), [
    (b"\x09\x00\x00", "sub-message header is cut off at byte 0"),
    (b"\x09\x00\x00\x10" + bytes(7) + b"short", "claims 16 bytes, but only 5 are left"),
    (b"\x14\x00\x00\x01" + bytes(7) + b"x" + bytes(4), "unsupported type 20"),
])
def test_bad_aggregates(body, match):
    client, server = publishing()
    client.send_message(6, M.AGGREGATE, STREAM, 0, body)
    connection_error(client, server, match)


def test_send_error_from_the_application():
    client, server = publishing()
    server.send_error("the disk is full")
    last = reply(client, server)
    assert (last.name, last.info["code"], last.info["description"]) == (
        "onStatus", "NetConnection.Connect.Rejected", "the disk is full")
    quiet = ServerConnection()
    quiet.send_error("before the handshake")  # nothing to say it in yet
    assert quiet.data_to_send() == b""


def test_events_before_the_violation_come_with_the_error():
    client = ClientConnection(eager_handshake=True)
    server = ServerConnection()
    client.connect("live")
    client.create_stream()
    client.publish(STREAM, "key")
    client.send_video(STREAM, 0, b"\x17\x00")
    client.command("play", None, "key", stream_id=STREAM, transaction=0.0)
    client.send_video(STREAM, 40, b"\x27\x01")  # after the violation: not parsed
    error = violation(client, server, "does not play")
    assert [type(e) for e in error.events] == [Connected, PublishRequested, VideoData]


# -- garbage, mutations and truncations ---------------------------------------------------------


def _session_bytes() -> bytes:
    client = ClientConnection(eager_handshake=True, chunk_size=100)
    client.connect("live", "rtmp://h/live")
    client.command("releaseStream", None, "key")
    client.create_stream()
    client.publish(STREAM, "key?x=1")
    client.send_metadata(STREAM, {"width": 320.0, "height": 240.0})
    client.control(M.WINDOW_ACK_SIZE, struct.pack(">I", 500))
    client.control(M.USER_CONTROL, struct.pack(">HI", M.PING_REQUEST, 5))
    for i in range(6):
        client.send_video(STREAM, 0xFFFFF0 + i * 40, bytes((0x27, 1)) + bytes(range(i, 250 + i)))
        client.send_audio(STREAM, 0xFFFFF0 + i * 40 + 3, b"\xaf\x01" + bytes(20 + i))
    client.set_chunk_size(33)
    client.send_message(6, M.AGGREGATE, STREAM, 500, b"\x09\x00\x00\x02" + bytes(7) + b"\x27\x01" + bytes(4))
    client.command("FCUnpublish", None, "key?x=1")
    client.command("deleteStream", None, 1.0)
    return client.data_to_send()


SESSION = _session_bytes()
HANDSHAKE = 1 + 2 * 1536


def _feed_and_check(data: bytes, pieces: list[int]) -> None:
    """Feed `data` in pieces; only RtmpProtocolError may come out, and whatever the server
    queued must decode, ending with an error reply if there was a violation after the handshake."""
    server = ServerConnection(window_ack_size=500)
    offset = 0
    error = None
    try:
        for size in pieces + [len(data)]:
            if offset >= len(data):
                break
            server.receive_data(data[offset:offset + max(size, 1)])
            offset += max(size, 1)
    except RtmpProtocolError as caught:
        error = caught
        assert caught.__cause__ is None, f"the parser tripped: {caught.__cause__!r}"
    out = server.data_to_send()
    if out:
        replies = ClientConnection(eager_handshake=True).receive_data(out)
        if error is not None and server.state is State.FAILED and len(data) > HANDSHAKE:
            assert replies and replies[-1].info["level"] == "error"


def test_the_session_itself_is_fine():
    server = ServerConnection(window_ack_size=500)
    events = server.receive_data(SESSION)
    assert [type(e).__name__ for e in events].count("Unpublished") == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(1, 500), max_size=8))
def test_garbage_after_the_handshake(garbage, pieces):
    _feed_and_check(SESSION[:HANDSHAKE] + garbage, pieces)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_sessions(data):
    mutated = bytearray(SESSION)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(HANDSHAKE, len(mutated) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            mutated[at] = data.draw(st.integers(0, 255))
        elif action == "insert":
            mutated[at:at] = data.draw(st.binary(min_size=1, max_size=20))
        else:
            del mutated[at:at + data.draw(st.integers(1, 20))]
    _feed_and_check(bytes(mutated), data.draw(st.lists(st.integers(1, 700), max_size=6)))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, len(SESSION)), st.lists(st.integers(1, 300), max_size=6))
def test_truncated_sessions(cut, pieces):
    server = ServerConnection()
    data = SESSION[:cut]
    offset = 0
    for size in pieces + [len(data)]:
        if offset >= len(data):
            break
        server.receive_data(data[offset:offset + size])  # never raises: it is only cut short
        offset += size
    assert server.receive_data(b"")[-1].__class__.__name__ == "ConnectionClosed"
