"""A response body sent in pieces (HttpConnection.send_data) reaches a client byte for byte in
its chunked framing, over real TLS, whatever the pieces' sizes; the pieces go to the stream in
groups of at most SEND_PIECE_BYTES, a large piece sliced without a copy."""

from __future__ import annotations

import os
import ssl

import h11
import pytest
import trio
from test_tls_reads import server_context

from recorder import certs
from recorder.server.http import SEND_PIECE_BYTES, HttpConnection, in_groups
from recorder.server.tlsreads import server_tls_stream


@pytest.mark.parametrize("sizes", [
    [], [0], [5], [10, 0, 3], [SEND_PIECE_BYTES], [SEND_PIECE_BYTES + 1],
    [7, 3 * SEND_PIECE_BYTES + 11, 2, 9], [SEND_PIECE_BYTES - 1, 2, SEND_PIECE_BYTES, 1],
])
def test_groups_hold_every_byte_in_order_and_none_is_larger_than_asked(sizes):
    pieces = [os.urandom(n) for n in sizes]
    groups = list(in_groups([memoryview(p) for p in pieces], SEND_PIECE_BYTES))
    assert b"".join(bytes(g) for g in groups) == b"".join(pieces)
    assert all(0 < len(g) <= SEND_PIECE_BYTES for g in groups)
    assert all(len(g) == SEND_PIECE_BYTES for g in groups[:-1])


def test_a_slice_of_a_large_piece_is_sent_as_it_is_not_copied():
    large = os.urandom(2 * SEND_PIECE_BYTES)
    groups = list(in_groups([memoryview(large)], SEND_PIECE_BYTES))
    assert [type(g) for g in groups] == [memoryview, memoryview]
    assert all(g.obj is large for g in groups)


async def test_a_body_sent_in_pieces_arrives_whole_in_its_chunks_over_tls(tmp_path):
    certs.init(tmp_path)
    client_ssl = ssl.create_default_context(cafile=str(tmp_path / certs.CA))
    # Head and body pieces as a feed frame has them, small and large, bytes and bytearrays.
    sends = [[b"head", os.urandom(3 * SEND_PIECE_BYTES + 5), bytearray(os.urandom(17)), b""],
             [bytearray(os.urandom(SEND_PIECE_BYTES))], [b"", b""], [os.urandom(100)]]
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    received, chunks = bytearray(), 0
    async with trio.open_nursery() as nursery:
        async def serve(stream):
            conn = HttpConnection(server_tls_stream(stream, server_context(tmp_path)), max_header_bytes=16384,
                                  receive_bytes=65536, remote="test")
            assert isinstance(await conn.next_request(5, 5), h11.Request)
            assert isinstance(await conn.next_event(5), h11.EndOfMessage)
            await conn.send(h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]))
            for pieces in sends:
                await conn.send_data(pieces)
            await conn.send(h11.EndOfMessage())
            await conn.aclose()

        nursery.start_soon(trio.serve_listeners, serve, listeners)
        client = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), client_ssl, server_hostname="localhost")
        parser = h11.Connection(h11.CLIENT)
        await client.send_all(parser.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
                              + parser.send(h11.EndOfMessage()))
        while not isinstance(event := parser.next_event(), h11.EndOfMessage):
            if event is h11.NEED_DATA:
                parser.receive_data(await client.receive_some())
            elif isinstance(event, h11.Data):
                received += event.data
                chunks += event.chunk_end
        nursery.cancel_scope.cancel()
    assert received == b"".join(bytes(p) for pieces in sends for p in pieces)
    assert chunks == 3  # one chunk a send; a send of nothing sends no chunk (it would end the body)
