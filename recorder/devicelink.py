"""A device's side of the HTTP link to a recorder: HTTP/1.1 (h11 over trio, TLS optional)
POST requests with chunked bodies, and the JSON answers.

Used by everything that sends to a recorder as a device does: the simulator and the replay of
recorded sessions. A recorder that takes no data or gives no answer for `timeout_s` raises a
SendError that says so.
"""

from __future__ import annotations

import json
import ssl
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

RECEIVE_SIZE = 65536
SEND_PIECE = 256 * 1024


class SendError(Exception):
    """The recorder refused or broke off a request; the message says why."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    tls: bool

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"URL must start with http:// or https://, not {url!r}")
        tls = parts.scheme == "https"
        return cls(parts.hostname or "localhost", parts.port or (6768 if tls else 80),
                   parts.path or "/", tls)


def client_ssl_context(ca_file: str | None = None, verify: bool = True,
                       cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    """TLS for a device: trust `ca_file` (or the system's), optionally present a device certificate."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


class Connection:
    """One HTTP/1.1 client connection: send requests with chunked bodies, read JSON responses.

    With timeout_s, a recorder that takes no bytes, or sends none while an answer is awaited,
    for that long raises SendError naming it (a server that accepts and then hangs would
    otherwise hold the device for ever)."""

    def __init__(self, stream: trio.abc.Stream, target: Target, timeout_s: float | None = None):
        self.stream = stream
        self.target = target
        self.host = target.host
        self.timeout_s = timeout_s
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, target: Target, ssl_context: ssl.SSLContext | None, *,
                   timeout_s: float | None = None) -> Connection:
        with _deadline(timeout_s, f"{target.address} did not answer the connection"):
            if target.tls:
                stream = await trio.open_ssl_over_tcp_stream(target.host, target.port, ssl_context=ssl_context)
                await stream.do_handshake()
            else:
                stream = await trio.open_tcp_stream(target.host, target.port)
        return cls(stream, target, timeout_s)

    async def _send(self, event) -> None:
        data = memoryview(self.h11.send(event) or b"")
        # In pieces, each with its own deadline: a slow link that keeps taking data is progress,
        # only one that takes nothing for timeout_s is given up on.
        for start in range(0, len(data), SEND_PIECE):
            with _deadline(self.timeout_s, f"{self.target.address} took no data"):
                await self.stream.send_all(data[start:start + SEND_PIECE])

    async def start(self, path: str, headers: dict[str, str] | list[tuple[str, str | bytes]],
                    content_length: int | None = None) -> None:
        """Begin a POST; `headers` a dict, or (name, value) pairs in order (values as bytes
        are sent as they are)."""
        fields = [("host", self.host)]
        fields.append(("content-length", str(content_length)) if content_length is not None
                      else ("transfer-encoding", "chunked"))
        fields += list(headers.items()) if isinstance(headers, dict) else list(headers)
        await self._send(h11.Request(method="POST", target=path, headers=fields))

    async def send(self, body: bytes) -> None:
        if body:
            await self._send(h11.Data(data=body))

    async def finish(self) -> tuple[int, dict]:
        await self._send(h11.EndOfMessage())
        return await self.response()

    async def response(self) -> tuple[int, dict]:
        status, body = None, bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                with _deadline(self.timeout_s, f"no answer from {self.target.address}"):
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise SendError("the recorder closed the connection without a response")
                self.h11.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise SendError("the recorder closed the connection")
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {"status": "error", "error": body.decode("utf-8", "replace")}
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return status, payload

    async def aclose(self) -> None:
        with trio.move_on_after(1):  # closing TLS says goodbye; a hung recorder does not hear it
            await self.stream.aclose()
        await trio.aclose_forcefully(self.stream)


@contextmanager
def _deadline(timeout_s: float | None, what: str):
    """Raise SendError("<what> in <timeout_s> s; gave up") if the block takes longer (None: no limit)."""
    if timeout_s is None:
        yield
        return
    try:
        with trio.fail_after(timeout_s):
            yield
    except trio.TooSlowError:
        raise SendError(f"{what} in {timeout_s:g} s; gave up") from None


def describe(exc: BaseException) -> str:
    """The most telling words for a failure: trio wraps TLS errors (an untrusted certificate,
    say) in BrokenResourceError, whose own text is empty."""
    while not str(exc) and exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc) or type(exc).__name__
