"""Fuzzing of every parser that takes bytes from the network, with zero unhandled exceptions:

    wire decoder      Decoder().feed()/close(): never raises; corrupt bytes come out as events
    HTTP server       `recorder serve` on 127.0.0.1 over real sockets (plain HTTP, and TLS):
                      answers or closes, keeps serving, and logs no traceback or unexpected failure
    RTMP chunks       ChunkReader: only RtmpProtocolError
    AMF0              decode()/decode_all(): only Amf0Error
    FLV               scan_flv() of a file never raises; the tag data parsers (video, audio, AVC
                      and AAC configurations, script data) raise only FlvError

Inputs are mutations of valid ones (what the encoder, the simulator, ChunkWriter, amf0.encode and
FFmpeg write): each Hypothesis example draws one structured seed and a batch of mutation
programs (see fuzz_support.mutate), and every program's output is one input. The short form runs
in the normal test run; `make fuzz` sets FUZZ_INPUTS for the long form (a million inputs per
target) and prints how many inputs each target ran and how long it took.
"""

from __future__ import annotations

import functools
import re
import ssl
import struct
from datetime import UTC, datetime

import pytest
from fuzz_support import ServeProcess, Tally, cut, exchange_all, fuzz_settings, healthz, mutate, programs
from hypothesis import example, given
from hypothesis import strategies as st
from test_rtmp_amf0 import _values as amf0_values
from test_rtmp_flv import make_flv
from test_wire_roundtrip import ANY_RECORD
from test_wire_roundtrip import encode as encode_records

from recorder import certs
from recorder.rtmp import amf0
from recorder.rtmp import flv as F
from recorder.rtmp import messages as M
from recorder.rtmp.chunks import MAX_CHUNK_SIZE, ChunkReader, ChunkWriter
from recorder.rtmp.errors import RtmpProtocolError
from recorder.server.ingest import DEVICE_SERIAL, SESSION_ID
from recorder.sim import sender
from recorder.sim.fleet import make_fleet
from recorder.wire import Decoder, record
from recorder.wire.events import Batch

WIRE, HTTP, HTTPS, CHUNKS, AMF0, FLV = (Tally("wire decoder"), Tally("HTTP server"), Tally("HTTPS server"),
                                        Tally("RTMP chunk reader"), Tally("AMF0"), Tally("FLV"))
TALLIES = {"test_wire_decoder": WIRE, "test_http_server": HTTP, "test_https_server": HTTPS,
           "test_rtmp_chunk_reader": CHUNKS, "test_amf0": AMF0, "test_flv": FLV}


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    print("\nfuzzing: inputs per target")
    for tally in TALLIES.values():
        if tally.inputs:
            print("  " + tally.line())


@pytest.fixture(autouse=True)
def timed(request):
    tally = TALLIES.get(request.node.originalname)
    if tally is not None:
        tally.begin()
    yield
    if tally is not None:
        tally.end()


# -- wire decoder ------------------------------------------------------------------------------------

WIRE_TOKENS = (b"SRF1", b"SRF", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x01\x00", b"\x00\x80",
               record(0x0001, b"", sequence=0, timestamp_ns=0)[:32])


def split_records(body: bytes) -> list[bytes]:
    """A well-formed body's records, one bytes each."""
    out, at = [], 0
    while at < len(body):
        end = at + 32 + int.from_bytes(body[at + 8:at + 12], "little")
        out.append(body[at:end])
        at = end
    return out


@functools.cache
def sim_records() -> list[bytes]:
    """Records of a simulated device's first 50 ms (every sample stream of its profile, and its
    small blobs), as the glasses send them."""
    device = make_fleet(2, seed=11, profile="mp_streaming_demo", one_sample_per_message=True)[1]
    return [r for r in split_records(device.window(0.0, 0.05)) if len(r) <= 4096]


@st.composite
def wire_bodies(draw, max_records: int = 6) -> bytes:
    """Records from the simulator and from the round-trip tests' generators (every message type,
    OPAQUE and unknown ids), in any order, with their own sequence numbers."""
    simulated = st.deferred(lambda: st.sampled_from(sim_records()))
    generated = st.tuples(ANY_RECORD, st.integers(0, 300)).map(lambda r: encode_records([r[0]], r[1]))
    return b"".join(draw(st.lists(st.one_of(simulated, generated), max_size=max_records)))


def check_batch(batch: Batch, body_length: int) -> None:
    for c in batch.corrupt:
        assert 0 <= c.offset and c.offset + len(c.data) <= body_length
    for block in batch.samples:
        assert len(block.samples) == len(block.source) == len(block.sequence)
    for v in batch.verbatim:
        assert v.reason in ("opaque", "unknown_id", "bad_crc", "oversized", "reserved_flags", "malformed",
                            "truncated"), v.reason


def decode(pieces: list[bytes], highest_sequence: int | None) -> dict[str, int]:
    """Feed the pieces and close; the decoder's counters, with the bytes of truncated records."""
    decoder = Decoder(highest_sequence=highest_sequence)
    length = sum(map(len, pieces))
    truncated_bytes = 0
    for batch in [*(decoder.feed(piece) for piece in pieces), decoder.close()]:
        check_batch(batch, length)
        truncated_bytes += sum(len(v.data) for v in batch.verbatim if v.reason == "truncated")
    assert decoder.pending_bytes == 0
    assert decoder.counters.bytes == length
    return {**decoder.counters.as_dict(), "truncated_bytes": truncated_bytes}


def same_but_for_a_cut_magic(a: dict[str, int], b: dict[str, int]) -> bool:
    """The counters of one body decoded whole and in pieces agree, but for 1 to 3 bytes at its
    end that begin a magic: close() counts them a truncated record when they were held back
    alone, corrupt bytes when they came in the same feed as other bytes that were still pending."""
    a, b = dict(a), dict(b)
    lost_a = a.pop("corrupt_bytes") + a.pop("truncated_bytes")
    lost_b = b.pop("corrupt_bytes") + b.pop("truncated_bytes")
    return lost_a == lost_b and abs(a.pop("truncated") - b.pop("truncated")) <= 1 and a == b


_RECORD_HEADER = struct.Struct("<4sHHIIQq")


def mutate_record(body: bytes, program: bytes) -> bytes:
    """One record of a well-formed body edited, then given the length and CRC of what it holds
    now: what an encoder with a bug writes. The CRC no longer stops the edit, so it reaches the
    checks behind it (sample counts, prefix fields and their ranges, the layout rules)."""
    records = split_records(body)
    if not records:
        return mutate(body, program, WIRE_TOKENS)
    k = (program[1] if len(program) > 1 else 0) % len(records)
    edited = mutate(records[k], program[2:], WIRE_TOKENS)
    if len(edited) >= _RECORD_HEADER.size:
        magic, message_id, flags, _, _, sequence, timestamp = _RECORD_HEADER.unpack_from(edited)
        edited = record(message_id, edited[_RECORD_HEADER.size:], sequence=sequence, timestamp_ns=timestamp,
                        flags=flags, magic=magic)
    return b"".join([*records[:k], edited, *records[k + 1:]])


@fuzz_settings(default_inputs=10000, batch=50)
@given(body=wire_bodies(), highest=st.one_of(st.none(), st.sampled_from([0, 3, 100]), st.integers(0, 2**64 - 1)),
       edits=programs(50))
def test_wire_decoder(body, highest, edits):
    for program in edits:
        if program and program[0] & 1:
            data = mutate_record(body, program)
        else:
            data = mutate(body, program, WIRE_TOKENS)
        how = program[-1] if program else 0
        in_pieces = decode(cut(data, how), highest)
        if how % 4:
            whole = decode([data], highest)
            assert in_pieces == whole or same_but_for_a_cut_magic(in_pieces, whole), (in_pieces, whole)
        WIRE.count()


# -- HTTP, through the real server ---------------------------------------------------------------------

# The sessions fuzzed requests may open: a handful, so that what they store stays small.
SESSION_IDS = (b"0d6f4a2e-3c1b-4b8e-9a55-2f1e8c7d6b01", b"0D6F4A2E-3C1B-4B8E-9A55-2F1E8C7D6B02")
SERIALS = (b"FUZZ-1", b"fuzz.2")
BUILDS = (b"fuzz-build-1",)
CALIBRATIONS = (b'{"calibration": "fuzz"}', b"not JSON {")
STATEFUL = {b"session-id": SESSION_IDS, b"device-serial": SERIALS, b"device-build": BUILDS,
            b"oatmeal-calibration": CALIBRATIONS}
_STATEFUL_HEADER = re.compile(
    rb"(?im)^([ \t]*(session-id|device-serial|device-build|oatmeal-calibration)[ \t]*:)([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)")


def _contain(match: re.Match) -> bytes:
    name = match.group(2).lower()
    value = re.sub(rb"\r?\n[ \t]+", b" ", match.group(3)).strip(b" \t")
    text = value.decode("latin-1")
    allowed = STATEFUL[name]
    if name == b"session-id":
        safe = not SESSION_ID.fullmatch(text) or value.lower() in (s.lower() for s in allowed)
    elif name == b"device-serial":
        safe = not DEVICE_SERIAL.fullmatch(text) or value in allowed or text in (".", "..", "rtmp")
    else:
        safe = value in allowed
    return match.group(0) if safe else match.group(1) + b" " + allowed[0]


def contain(request: bytes) -> bytes:
    """The request with any session header a mutation made new (a session id or serial the
    server would accept, a build or calibration it would store) put back to one of the few
    above: mutations explore parsing, not how many sessions a disk holds."""
    return _STATEFUL_HEADER.sub(_contain, request)


HTTP_TOKENS = (b"\r\n", b"\r\n\r\n", b"\n", b": ", b":", b" ", b"\t", b"HTTP/1.1", b"HTTP/1.0", b"POST / HTTP/1.1\r\n",
               b"GET /healthz HTTP/1.1\r\n\r\n", b"transfer-encoding: chunked\r\n", b"content-length: 0\r\n",
               b"content-length: 99999999999999999999\r\n", b"0\r\n\r\n", b"ffffffffffffffff\r\n", b";ext=1",
               b"expect: 100-continue\r\n", b"connection: close\r\n", b"connection: keep-alive\r\n", b"\x00",
               b"\xff", b"SRF1", b"%00", b"?serial=FUZZ-1")
METHODS = (b"POST", b"POST", b"POST", b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"post", b"G ET", b"")
TARGETS = (b"/", b"/", b"/upload/device", b"/healthz", b"/status", b"/metrics", b"/feed", b"/feed?serial=FUZZ-1",
           b"/status?x=1", b"*", b"http://127.0.0.1/", b"/%00%ff", b"/" + b"a" * 300, b"")
VERSIONS = (b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/1.1x", b"")
BAD_SESSION_IDS = (b"", b"not-a-uuid", b"0d6f4a2e3c1b4b8e9a552f1e8c7d6b01", b"0d6f4a2e-3c1b-4b8e-9a55-2f1e8c7d6b0",
                   b"\xff" * 36)
BAD_SERIALS = (b"", b".", b"..", b"rtmp", b"a b", b"x" * 65, b"caf\xe9", b"../etc")
EXTRA_HEADERS = ((b"user-agent", b"fuzz"), (b"accept", b"*/*"), (b"connection", b"close"),
                 (b"connection", b"keep-alive"), (b"connection", b"upgrade"), (b"upgrade", b"h2c"),
                 (b"expect", b"100-continue"), (b"expect", b"something-else"), (b"content-type", b"application/x-srf"),
                 (b"x-empty", b""), (b"x-long", b"v" * 2000), (b"x-latin1", b"\xe9\xff"))


@st.composite
def chunked(draw, body: bytes) -> bytes:
    """`body` in chunked transfer coding, with the forms a parser must take (extensions, upper
    case and zero-padded sizes, trailers) and some it must refuse."""
    out, at = [], 0
    while at < len(body):
        size = draw(st.integers(1, max(1, len(body) - at)))
        head = draw(st.sampled_from(["{:x}", "{:X}", "{:04x}", "{:x};name=value", "{:x} ", "{:d}"])).format(size)
        out.append(head.encode() + b"\r\n" + body[at:at + size] + b"\r\n")
        at += size
    out.append(draw(st.sampled_from([b"0\r\n\r\n", b"0\r\ntrailer: 1\r\n\r\n", b"0;x\r\n\r\n", b"0\r\n", b""])))
    return b"".join(out)


@st.composite
def http_requests(draw) -> bytes:
    """A request line, headers and a body. Mostly what a device sends (a POST of records to its
    session, chunked or with a length), and reads of the status pages and the feed; also any
    mix of wrong methods, paths, versions, session headers and framings."""
    kind = draw(st.sampled_from(["device", "device", "device", "read", "any"]))
    if kind == "device":
        method, target, version = b"POST", draw(st.sampled_from([b"/", b"/upload/device", b"/?x=1"])), b"HTTP/1.1"
    elif kind == "read":
        method = draw(st.sampled_from([b"GET", b"GET", b"HEAD"]))
        target, version = draw(st.sampled_from(TARGETS)), draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    else:
        method, target = draw(st.sampled_from(METHODS)), draw(st.sampled_from(TARGETS))
        version = draw(st.sampled_from(VERSIONS))
    headers = []
    if kind != "any" or draw(st.integers(0, 9)):
        headers.append((b"host", b"127.0.0.1"))
    if kind == "device":
        session = draw(st.sampled_from(SESSION_IDS))
        serial = draw(st.sampled_from(SERIALS))
    else:
        session = draw(st.one_of(st.sampled_from(SESSION_IDS), st.sampled_from(BAD_SESSION_IDS), st.none()))
        serial = draw(st.one_of(st.sampled_from(SERIALS), st.sampled_from(BAD_SERIALS), st.none()))
    if session is not None:
        headers.append((b"session-id", session))
    if serial is not None:
        headers.append((b"device-serial", serial))
    if draw(st.booleans()):
        headers.append((b"device-build", BUILDS[0]))
    if draw(st.booleans()):
        headers.append((b"oatmeal-calibration", draw(st.sampled_from(CALIBRATIONS))))
    headers += draw(st.lists(st.sampled_from(EXTRA_HEADERS), max_size=3))
    body = b"" if kind == "read" else draw(st.one_of(wire_bodies(max_records=4), wire_bodies(max_records=4),
                                                         st.binary(max_size=300)))
    framings = ["length", "chunked"] if kind != "any" else ["length", "chunked", "none", "short", "long", "both",
                                                             "bad-length", "te-other"]
    framing = draw(st.sampled_from(framings))
    if framing in ("length", "both"):
        headers.append((b"content-length", str(len(body)).encode()))
    elif framing == "short":
        headers.append((b"content-length", str(max(0, len(body) - draw(st.integers(1, 40)))).encode()))
    elif framing == "long":
        headers.append((b"content-length", str(len(body) + draw(st.integers(1, 40))).encode()))
    elif framing == "bad-length":
        headers.append((b"content-length", draw(st.sampled_from([b"-1", b"1e3", b"0x10", b" 12", b"12, 13", b""]))))
    if framing in ("chunked", "both"):
        headers.append((b"transfer-encoding", b"chunked"))
        body = draw(chunked(body))
    elif framing == "te-other":
        headers.append((b"transfer-encoding", draw(st.sampled_from([b"gzip", b"gzip, chunked", b"identity", b"chunked, gzip"]))))
    headers = draw(st.permutations(headers))
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
    head = b" ".join(part for part in (method, target, version) if part) + eol
    head += b"".join(name + b": " + value + eol for name, value in headers) + eol
    request = head + body
    if draw(st.integers(0, 7)) == 0:  # a second request on the same connection
        request += b"GET /healthz HTTP/1.1" + eol + b"host: 127.0.0.1" + eol + eol
    return request


# Statuses the server may answer a fuzzed request with: anything else (a 500, say) is a finding.
EXPECTED_STATUSES = {100, 200, 400, 404, 405, 413, 414, 431, 501, 505}
HTTP_BATCH = 32
# What the server's output must never hold: a traceback, a connection that failed in a way the
# server did not expect, an internal error.
ALARMS = ("Traceback", "failed unexpectedly", "internal error")


def assert_exchanges(exchanges) -> None:
    for e in exchanges:
        assert e.error is None, f"{e.error}; request {e.request[:2000]!r}"
        assert e.response == b"" or e.statuses, f"not an HTTP response: {e.response[:300]!r} to {e.request[:2000]!r}"
        # A 503 with Retry-After is the server's overload protection (its connections per address).
        overload = {503} if b"\r\nretry-after:" in e.response.lower() else set()
        unexpected = set(e.statuses) - EXPECTED_STATUSES - overload
        assert not unexpected, f"answered {e.statuses} to {e.request[:2000]!r}: {e.response[:1000]!r}"


def assert_no_alarm(output: str) -> None:
    for alarm in ALARMS:
        assert alarm not in output, output[max(0, output.index(alarm) - 3000):][:8000]


def assert_serving(server: ServeProcess, ssl_context=None) -> None:
    """The server is still there, answers /healthz, and has logged nothing alarming since the
    last check."""
    assert server.process.poll() is None, f"recorder serve exited:\n{server.output[-5000:]}"
    assert healthz(server.port, ssl_context) == 200
    assert_no_alarm(server.new_output())


def open_sessions(server: ServeProcess, ssl_context=None) -> None:
    """A first request for each session the fuzzed requests may name, one at a time, so that
    every fuzzed request finds its session open. (First requests of a new session arriving at
    once attach one after the other, each taking the session over from the one before, which is
    closed without an answer: test_server_reconnect covers that.)"""
    for serial in SERIALS:
        for session in SESSION_IDS:
            request = (b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\nsession-id: %s\r\ndevice-serial: %s\r\n"
                       b"content-length: 0\r\nconnection: close\r\n\r\n" % (session, serial))
            (exchange,) = exchange_all(server.port, [request], ssl_context, tls_wait=10.0)
            assert exchange.statuses == [200], exchange.response


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-http")
    server = ServeProcess(folder / "data", folder / "serve.log").start()
    open_sessions(server)
    yield server
    server.stop()  # and the whole log, to its last line, after shutdown
    assert_no_alarm(server.output)


@fuzz_settings(default_inputs=3200, batch=HTTP_BATCH)
@given(request=http_requests(), edits=programs(HTTP_BATCH))
# Found: a HEAD of /feed was answered 405 with a body, which h11 refused to send for a HEAD.
@example(request=b"HEAD /feed HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n", edits=[b""])
def test_http_server(http_server, request, edits):
    requests = [contain(mutate(request, program, HTTP_TOKENS)) for program in edits]
    assert_exchanges(exchange_all(http_server.port, requests))
    HTTP.count(len(requests))
    assert_serving(http_server)


# -- HTTPS: the same requests in TLS, and what is not TLS on the TLS port --------------------------------


@functools.cache
def client_hello() -> bytes:
    """The first bytes a TLS client sends (a ClientHello record)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-https")
    certs.init(folder / "certs")
    server = ServeProcess(folder / "data", folder / "serve.log", certs_dir=folder / "certs").start()
    server.client_ssl = sender.client_ssl_context(str(folder / "certs" / certs.CA))
    open_sessions(server, server.client_ssl)
    yield server
    server.stop()  # and the whole log, to its last line, after shutdown
    assert_no_alarm(server.output)


HTTPS_BATCH = 32


# TLS costs a handshake per connection, and a request the server still waits for costs the
# client's wait (TLS has no half-close): a hundredth of the plain HTTP target's inputs.
@fuzz_settings(default_inputs=320, batch=HTTPS_BATCH, share=0.01)
@given(request=http_requests(), raw=st.sampled_from(["tls", "tls", "plain", "hello"]), edits=programs(HTTPS_BATCH))
def test_https_server(https_server, request, raw, edits):
    if raw == "tls":  # generated requests in real TLS
        requests = [contain(mutate(request, program, HTTP_TOKENS)) for program in edits]
        assert_exchanges(exchange_all(https_server.port, requests, https_server.client_ssl))
    else:  # plain HTTP, or a mutated ClientHello, straight onto the TLS port
        seed = request if raw == "plain" else client_hello()
        requests = [contain(mutate(seed, program, HTTP_TOKENS)) for program in edits]
        exchange_all(https_server.port, requests)
    HTTPS.count(len(requests))
    assert_serving(https_server, https_server.client_ssl)


# -- RTMP chunk stream ---------------------------------------------------------------------------------

CHUNK_STREAM_IDS = (2, 3, 4, 6, 63, 64, 319, 320, 65599)
CHUNK_TOKENS = (b"\x02", b"\x03", b"\x43", b"\x83", b"\xc3", b"\x00", b"\x01", b"\x3f", b"\xff\xff\xff", b"\xff\xff\xff\xff",
                b"\x00\x00\x00\x00", b"\x01\x00\x00\x00\x04\x01\x00\x00\x00\x00",  # Set Chunk Size's header
                ChunkWriter().write(2, M.ABORT, 0, 0, struct.pack(">I", 4)),
                ChunkWriter().write(2, M.SET_CHUNK_SIZE, 0, 0, struct.pack(">I", 1)))


@st.composite
def chunk_streams(draw) -> bytes:
    """What a publisher sends after the handshake, cut into chunks by ChunkWriter: media, commands,
    data and control messages (Set Chunk Size and Abort included) on several chunk streams,
    every header type, extended timestamps, messages of chunk streams interleaved."""
    writer = ChunkWriter(repeat_extended_timestamp=draw(st.booleans()))
    csids = draw(st.lists(st.sampled_from(CHUNK_STREAM_IDS), min_size=1, max_size=3, unique=True))
    clocks = {csid: draw(st.sampled_from([0, 1000, 0xFFFFF0, 2**32 - 100])) for csid in csids}
    out: list[bytes] = []
    queues: dict[int, list[bytes]] = {}

    def flush():  # the chunks so far, chunk streams interleaved at random
        while queues:
            csid = draw(st.sampled_from(sorted(queues)))
            out.append(queues[csid].pop(0))
            if not queues[csid]:
                del queues[csid]

    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["video", "audio", "video", "command", "data", "chunk size", "abort", "window",
                                     "ping", "aggregate"]))
        if kind == "chunk size":
            flush()
            size = draw(st.sampled_from([1, 2, 50, 128, 129, 4096, 65536]))
            out.append(writer.write(2, M.SET_CHUNK_SIZE, 0, 0, struct.pack(">I", size)))
            writer.chunk_size = size
            continue
        if kind in ("abort", "window", "ping"):
            type_id, payload = {"abort": (M.ABORT, struct.pack(">I", draw(st.sampled_from(csids)))),
                                "window": (M.WINDOW_ACK_SIZE, struct.pack(">I", 2_500_000)),
                                "ping": (M.USER_CONTROL, struct.pack(">HI", M.PING_REQUEST, 7))}[kind]
            flush()
            out.append(writer.write(2, type_id, 0, 0, payload))
            continue
        csid = draw(st.sampled_from(csids))
        clocks[csid] += draw(st.sampled_from([0, 1, 33, 40, 0xFFFFFF, 0x1000000]))
        if kind in ("video", "audio"):
            type_id = M.VIDEO if kind == "video" else M.AUDIO
            payload = bytes((0x17 if kind == "video" else 0xAF, 1)) + draw(st.binary(max_size=300))
        elif kind == "command":
            type_id = M.COMMAND_AMF0
            payload = M.command(draw(st.sampled_from(["connect", "createStream", "publish", "FCPublish"])), 2.0,
                                {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"}, "key")
        elif kind == "data":
            type_id = M.DATA_AMF0
            payload = amf0.encode("@setDataFrame", "onMetaData", amf0.EcmaArray(width=320.0, height=240.0))
        else:
            type_id = M.AGGREGATE
            payload = F.encode_tag(F.VIDEO, 0, b"\x27\x01\x00\x00\x00" + bytes(8)) + F.encode_tag(F.AUDIO, 23, b"\xaf\x01\x21")
        fmt = draw(st.sampled_from([None, None, 0, 1, 2, 3]))
        try:
            chunks = writer.chunks(csid, type_id, 1, clocks[csid], payload, fmt)
        except ValueError:  # that header type cannot say this message
            chunks = writer.chunks(csid, type_id, 1, clocks[csid], payload)
        queues.setdefault(csid, []).extend(chunks)
    flush()
    return b"".join(out)


# The defaults, and limits small enough for the seeds to reach each of them.
CHUNK_LIMITS = ({}, {"max_message_size": 300, "max_chunk_streams": 3, "max_partial_bytes": 200})


def read_chunks(data: bytes, how: int, limits: dict) -> None:
    """Feed `data` in pieces and take every message, doing what the connection does with Set
    Chunk Size and Abort; only RtmpProtocolError may come out."""
    reader = ChunkReader(**limits)
    try:
        for piece in cut(data, how):
            reader.feed(piece)
            while (message := reader.next_message()) is not None:
                assert len(message.payload) <= reader.max_message_size
                if message.type_id in (M.SET_CHUNK_SIZE, M.ABORT):
                    if len(message.payload) < 4:
                        return  # the connection ends here (a protocol error)
                    (value,) = struct.unpack_from(">I", message.payload)
                    if message.type_id == M.ABORT:
                        reader.abort(value)
                    elif 1 <= value <= MAX_CHUNK_SIZE:
                        reader.set_chunk_size(value)
                    else:
                        return
            assert 0 <= reader.partial_messages <= reader.max_partial_bytes
            assert reader.buffered <= len(data)
    except RtmpProtocolError:
        pass


@fuzz_settings(default_inputs=10000, batch=50)
@given(stream=chunk_streams(), limits=st.sampled_from(CHUNK_LIMITS), edits=programs(50))
def test_rtmp_chunk_reader(stream, limits, edits):
    for program in edits:
        read_chunks(mutate(stream, program, CHUNK_TOKENS), program[-1] if program else 0, limits)
        CHUNKS.count()


# -- AMF0 ----------------------------------------------------------------------------------------------

AMF0_TOKENS = (*(bytes((m,)) for m in range(0x12)), b"\x00\x00\x09", b"\x08\x00\x00\x00\x00", b"\x0a\xff\xff\xff\xff",
               b"\x0c\xff\xff\xff\xff", b"\x02\xff\xff", b"\x10\x00\x01a", b"\x03" * 40, b"\x0a\x00\x00\x00\x01" * 40,
               b"\xc3\xa9", b"\xff\xfe", b"\xed\xa0\x80")
AMF0_SEEDS = (
    M.command("connect", 1.0, {"app": "live", "type": "nonprivate", "flashVer": "FMLE/3.0", "tcUrl": "rtmp://h/live",
                               "fpad": False, "capabilities": 15.0, "audioCodecs": 4071.0, "objectEncoding": 0.0}),
    M.command("publish", 5.0, None, "key?secret=x", "live"),
    M.command("_result", 1.0, {"fmsVer": "FMS/3,0,1,123"}, M.status_info("status", "NetConnection.Connect.Success", "ok")),
    amf0.encode("@setDataFrame", "onMetaData", amf0.EcmaArray(duration=0.0, width=1920.0, encoder="Lavf", stereo=True)),
    amf0.encode(amf0.UNDEFINED, None, datetime(2024, 5, 1, tzinfo=UTC), "é" * 40000, [1.0, [2.0, {"x": []}]]),
    b"\x10\x00\x05Point\x00\x01x\x00" + struct.pack(">d", 1.0) + b"\x00\x00\x09",  # typed object
    b"\x0f\x00\x00\x00\x07<a>b</a>" + b"\x0d" + b"\x0b" + struct.pack(">dh", float("nan"), 0),  # XML, unsupported, date
    b"\x08\x00\x00\x00\x09\x00\x01a\x05",  # ECMA array without its end marker
)


@st.composite
def amf0_data(draw) -> bytes:
    """Values the round-trip tests generate, real commands and metadata, and the markers the
    encoder never writes (typed objects, XML, unsupported), one after another."""
    generated = st.lists(amf0_values, min_size=1, max_size=4).map(lambda values: amf0.encode(*values))
    return b"".join(draw(st.lists(st.one_of(generated, st.sampled_from(AMF0_SEEDS)), min_size=1, max_size=3)))


def decode_amf0(data: bytes, how: int) -> None:
    """Every value of `data`, and the value at an offset `how` picks: only Amf0Error may come out."""
    try:
        amf0.decode_all(data)
    except amf0.Amf0Error:
        pass
    offset = how * 977 % (len(data) + 1)
    try:
        value, end = amf0.decode(data, offset)
        assert offset < end <= len(data)
    except amf0.Amf0Error:
        pass


@fuzz_settings(default_inputs=10000, batch=50)
@given(data=amf0_data(), edits=programs(50))
def test_amf0(data, edits):
    for program in edits:
        decode_amf0(mutate(data, program, AMF0_TOKENS), program[-1] if program else 0)
        AMF0.count()


# -- FLV -----------------------------------------------------------------------------------------------

FLV_TOKENS = (b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00", F.tag_header(F.VIDEO, 0, 5), F.tag_header(F.SCRIPT, 0, 0),
              b"\x17\x00\x00\x00\x00", b"\xaf\x00", b"\x90hvc1", b"\x91avc1", b"\x00\x00\x09", b"\xff\xff\xff",
              b"\x00\x00\x00\x0b", b"\x01\x64\x00\x1f\xff\xe1", b"\x00\x00\x03", b"\x00\x00\x00\x01\x67")


@functools.cache
def flv_tags(folder) -> list[tuple[int, int, bytes]]:
    """Tags of small FFmpeg-made FLVs (onMetaData, AVC High and Baseline with scaling lists,
    AAC), and tags FFmpeg does not write: HEVC, enhanced RTMP, MP3, Sorenson."""
    tags = []
    for name, extra in (("high.flv", ()), ("baseline.flv", ("-profile:v", "baseline")),
                        ("cqm.flv", ("-x264-params", "cqm=jvt"))):
        path = make_flv(folder / name, size="96x64", rate=10, seconds=0.4, gop=3, extra=extra)
        raw = path.read_bytes()
        tags += [(t.type, t.timestamp, raw[t.data_offset:t.data_offset + t.size]) for t in F.scan_flv(path).tags][:12]
    tags += [(F.VIDEO, 40, b"\x1c\x01\x00\x00\x10" + bytes(12)), (F.VIDEO, 0, b"\x90hvc1\x01\x02\x03"),
             (F.VIDEO, 40, b"\x91hvc1\xff\xff\xfe" + b"nal"), (F.VIDEO, 80, b"\xa3av01obu"),
             (F.VIDEO, 0, b"\x22" + bytes(10)), (F.AUDIO, 0, b"\x2a" + b"mp3"),
             (F.SCRIPT, 0, amf0.encode("onMetaData", {"duration": 3.0, "filesize": 1e6, "created": datetime(2024, 1, 1)}))]
    return tags


def read_flv(path, data: bytes) -> None:
    """Scan a FLV and parse what its tags hold as the recording and its recovery do: scan_flv
    never raises, the tag data parsers raise only FlvError."""
    path.write_bytes(data)
    scan = F.scan_flv(path)
    if scan.header_ok:
        assert scan.end <= len(data) and (scan.problem is None) == scan.complete
    for tag in scan.tags:
        body = data[tag.data_offset:tag.data_offset + tag.size]
        parse_tag_data(tag.type, body)


def parse_tag_data(kind: int, body: bytes) -> None:
    try:
        if kind == F.SCRIPT:
            _, values = F.read_script_data(body)
            F.json_safe(values)
            assert len(F.live_metadata(body)) == len(body)
        elif kind == F.VIDEO:
            header = F.parse_video_header(body)
            assert isinstance(header.codec, str) and header.data_offset <= len(body)
            assert header.is_frame in (True, False) and header.keyframe in (True, False)
            if header.sequence_header:
                F.parse_avc_config(body[header.data_offset:]).as_dict()
        elif kind == F.AUDIO:
            header = F.parse_audio_header(body)
            assert isinstance(header.codec, str) and header.data_offset <= len(body)
            assert header.rate_hz > 0 and header.channels in (1, 2) and header.bits in (8, 16)
            if header.sequence_header:
                F.parse_aac_config(body[header.data_offset:]).as_dict()
    except F.FlvError:
        pass


@pytest.fixture(scope="module")
def flv_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-flv")


FLV_HEADERS = (F.file_header(), F.file_header(audio=False),
               b"FLV\x01\x05\x00\x00\x00\x10" + bytes(7) + b"\x00\x00\x00\x00")  # data_offset 16


@fuzz_settings(default_inputs=6000, batch=50)
@given(data=st.data(), header=st.sampled_from(FLV_HEADERS), edits=programs(50))
def test_flv(flv_folder, data, header, edits):
    pool = flv_tags(flv_folder)
    headers_and_scripts = [t for t in pool if t[0] == F.SCRIPT or t[2][:2] in (b"\x17\x00", b"\xaf\x00")]
    tags = data.draw(st.lists(st.sampled_from(pool), max_size=8))
    path = flv_folder / "fuzz.flv"
    for program in edits:
        mode = program[0] % 4 if program else 0
        pick = program[1] if len(program) > 1 else 0
        if mode == 0:  # the file's bytes
            read_flv(path, mutate(header + b"".join(F.encode_tag(*t) for t in tags), program, FLV_TOKENS))
        elif mode == 1 and tags:  # one tag's data, framed again: what a publisher may send, as recorded
            k = pick % len(tags)
            kind, timestamp, body = tags[k]
            body = mutate(body, program[2:], FLV_TOKENS)
            parse_tag_data(kind, body)
            edited = [*tags[:k], (kind, timestamp, body), *tags[k + 1:]]
            read_flv(path, header + b"".join(F.encode_tag(*t) for t in edited))
        else:  # a codec configuration or onMetaData, where the deepest parsing is
            kind, _, body = headers_and_scripts[pick % len(headers_and_scripts)]
            keep = 0 if kind == F.SCRIPT else 5 if kind == F.VIDEO else 2  # the tag header stays
            parse_tag_data(kind, body[:keep] + mutate(body[keep:], program[2:], FLV_TOKENS))
        FLV.count()


def test_found_an_avc_configuration_cut_before_its_sps_length():
    """Found by test_flv: a sequence header whose AVCDecoderConfigurationRecord announces an SPS
    and ends before its length raised struct.error out of parse_avc_config (the recording,
    which reads the size of every h264 sequence header a publisher sends, catches FlvError)."""
    record = b"\x01\x64\x00\x1f\xff\xe1\x00"
    config = F.parse_avc_config(record)
    assert (config.profile_name, config.width, config.height) == ("High", None, None)
    parse_tag_data(F.VIDEO, b"\x17\x00\x00\x00\x00" + record)
