"""A TLS connection's bytes reach the HTTP parser in large pieces (many TLS records per read,
where trio's SSLStream gives one record of 16 KiB), byte for byte; and a connection cut inside
a record still ends as a broken connection, after every whole record before the cut."""

from __future__ import annotations

import os
import ssl

import h11
import trio

from recorder import certs
from recorder.server.http import HttpConnection
from recorder.server.tlsreads import server_tls_stream

RECEIVE_BYTES = 256 << 10
RECORD_BYTES = 16 << 10


def server_context(certs_dir) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs_dir / certs.SERVER, certs_dir / certs.SERVER_KEY)
    return context


async def serve_one_request(certs_dir, client_ssl, send) -> tuple[bytes, int, object]:
    """One request read by the server's HttpConnection over real TLS on 127.0.0.1 while
    `send(tls_stream, socket_stream)` is the client: its body's bytes, the number of reads it
    took, and how it ended (h11.EndOfMessage, or the event or error that cut it short)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    body, reads, end = bytearray(), 0, None
    async with trio.open_nursery() as nursery:
        async def client():
            raw = await trio.open_tcp_stream("127.0.0.1", port)
            tls = trio.SSLStream(raw, client_ssl, server_hostname="localhost")
            await tls.do_handshake()
            await send(tls, raw)

        nursery.start_soon(client)
        conn = HttpConnection(server_tls_stream(await listeners[0].accept(), server_context(certs_dir)),
                              max_header_bytes=1 << 16, receive_bytes=RECEIVE_BYTES, remote="test")
        try:
            while True:
                event = conn.buffered_event()
                if event is h11.NEED_DATA:
                    assert await conn.receive(10.0)
                    reads += 1
                elif isinstance(event, h11.Data):
                    body += event.data
                elif not isinstance(event, h11.Request):
                    end = event
                    break
        except h11.RemoteProtocolError as exc:
            end = exc
        await conn.stream.aclose()
    await listeners[0].aclose()
    return bytes(body), reads, end


def request_head(length: int) -> bytes:
    return b"POST /data HTTP/1.1\r\nhost: recorder\r\ncontent-length: %d\r\n\r\n" % length


async def test_many_records_come_in_one_read_byte_for_byte(certs_dir, client_ssl):
    body = os.urandom(8 << 20)

    async def send(tls, raw):
        await tls.send_all(request_head(len(body)) + body)
        await tls.aclose()

    received, reads, end = await serve_one_request(certs_dir, client_ssl, send)
    assert received == body
    assert isinstance(end, h11.EndOfMessage)
    assert reads < len(body) / (4 * RECORD_BYTES)  # one record a read would take 512


async def test_a_connection_cut_inside_a_record_ends_broken_after_the_whole_records(certs_dir, client_ssl):
    body = os.urandom(200_000)

    async def send(tls, raw):
        await tls.send_all(request_head(len(body)) + body[:100_000])
        await trio.sleep(0.2)
        await raw.send_all(b"\x17\x03\x03\x40\x00" + os.urandom(100))  # a record's head, a part of it
        await raw.aclose()

    received, _, end = await serve_one_request(certs_dir, client_ssl, send)
    assert received == body[:100_000]
    assert isinstance(end, h11.RemoteProtocolError)  # the body ended short: the connection broke
