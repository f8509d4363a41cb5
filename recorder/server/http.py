"""One HTTP/1.1 connection over h11: read events with timeouts, answer in JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

import h11
import trio

from .tlsreads import decrypted_too, ssl_object

# After an error answer, what the client still sends is read and dropped for this long (and up
# to this much) before the connection closes: closing with unread data makes the kernel reset
# the connection, and a client still uploading could lose the answer that says why.
LINGER_S = 1.0
LINGER_BYTES = 16 << 20
# Body data goes to the stream in pieces of at most this size: over TLS, each piece is then
# encrypted and sent while it is still in the CPU's cache. A 2.8 MB burst sent whole cost the
# sending thread 2.3 to 3.1 ms per MB (joined, encrypted, copied out of TLS, sent), in pieces
# of 256 KiB 1.7 to 2.3 (TLS 1.3 with AES-256-GCM, to curl on loopback; four runs or more of each,
# alternating, 60 bursts a run).
SEND_PIECE_BYTES = 256 << 10


class ClientTooSlow(Exception):
    """The client did not send what it had to within its time."""


class _Length:
    """Stands for a Data event's data with h11, which needs only its length when the data is
    sent by other means (h11's send_with_data_passthrough)."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size


def in_groups(views: list[memoryview], size: int):
    """The bytes of `views`, in order, in groups of `size` (the last one shorter): small views
    are joined into a group, a slice of a large one is a group of its own without a copy."""
    batch, batched = [], 0
    for view in views:
        while view.nbytes:
            if not batch and view.nbytes >= size:
                yield view[:size]
                view = view[size:]
                continue
            taken = view[:size - batched]
            batch.append(taken)
            batched += taken.nbytes
            view = view[taken.nbytes:]
            if batched == size:
                yield b"".join(batch)
                batch, batched = [], 0
    if batch:
        yield b"".join(batch)


class HttpConnection:
    def __init__(self, stream: trio.abc.Stream, *, max_header_bytes: int, receive_bytes: int, remote: str):
        self.stream = stream
        self._tls = ssl_object(stream)  # to take every record already received at once (tlsreads.py)
        self.remote = remote
        self.receive_bytes = receive_bytes
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self.linger = False
        self.ticket = None  # the connection's standing against the overload limits, set by the server

    async def _receive(self) -> None:
        try:
            data = await self.stream.receive_some(self.receive_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if data and self._tls is not None:
            for piece in decrypted_too(self._tls, data, self.receive_bytes):
                self.h11.receive_data(piece)
        else:
            self.h11.receive_data(data)

    def buffered_event(self):
        """The next event if h11 already has the bytes for it, else h11.NEED_DATA."""
        return self.h11.next_event()

    async def receive(self, timeout_s: float) -> bool:
        """One read into h11, waiting at most timeout_s; False if nothing came in that time.
        A body's hot loop calls this once per read (one cancel scope) instead of next_event()
        inside a scope of its own (two)."""
        with trio.move_on_after(timeout_s):
            await self._receive()
            return True
        return False

    async def next_event(self, timeout_s: float):
        """The next event; raises ClientTooSlow if the client sends nothing for timeout_s."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            with trio.move_on_after(timeout_s) as scope:
                await self._receive()
            if scope.cancelled_caught:
                raise ClientTooSlow(f"nothing received for {timeout_s:g} s")

    async def next_request(self, idle_timeout_s: float, header_timeout_s: float):
        """Wait up to idle_timeout_s for a request to begin, then header_timeout_s for its head."""
        event = self.h11.next_event()
        if event is not h11.NEED_DATA:
            return event
        if not self.h11.trailing_data[0]:
            with trio.move_on_after(idle_timeout_s) as scope:
                await self._receive()
            if scope.cancelled_caught:
                raise ClientTooSlow(f"no request for {idle_timeout_s:g} s")
        with trio.move_on_after(header_timeout_s) as scope:
            while (event := self.h11.next_event()) is h11.NEED_DATA:
                await self._receive()
        if scope.cancelled_caught:
            raise ClientTooSlow(f"request headers did not arrive within {header_timeout_s:g} s")
        return event

    async def send(self, event) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.send_all(data)

    async def send_data(self, pieces) -> None:
        """Body data in pieces (bytes-like objects), as one h11 event: h11's work per event
        costs about 5 us, and a feed frame is some twenty pieces. h11 is given only the data's
        length, which is all it frames a chunk by (as for sendfile); the pieces go to the stream
        in SEND_PIECE_BYTES groups, the large ones in slices, never joined whole."""
        views = [view for view in (memoryview(piece).cast("B") for piece in pieces) if view.nbytes]
        if not views:
            return  # h11 would send nothing: an empty chunk would end the body
        length = _Length(sum(view.nbytes for view in views))
        parts = []
        for part in self.h11.send_with_data_passthrough(h11.Data(data=length)):
            parts.extend(views if part is length else [memoryview(part)])
        for group in in_groups(parts, SEND_PIECE_BYTES):
            await self.stream.send_all(group)

    async def respond(self, status: int, body: bytes, content_type: str, close: bool = False,
                      head: bool = False, extra_headers: Sequence[tuple[str, str]] = ()) -> None:
        """A whole response; for a HEAD request the same headers and no body."""
        headers = [("content-type", content_type), ("content-length", str(len(body))), *extra_headers]
        if close:
            headers.append(("connection", "close"))
        await self.send(h11.Response(status_code=status, headers=headers))
        if not head:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def respond_json(self, status: int, payload: dict, close: bool = False) -> None:
        await self.respond(status, json.dumps(payload).encode() + b"\n", "application/json", close)

    async def error(self, status: int, message: str, *, head: bool = False,
                    extra_headers: Sequence[tuple[str, str]] = (), **details) -> None:
        """A JSON error (for a HEAD request, its headers alone); the connection closes after it,
        since the request may be half read."""
        body = json.dumps({"status": "error", "error": message, **details}).encode() + b"\n"
        await self.respond(status, body, "application/json", close=True, head=head, extra_headers=extra_headers)
        self.linger = True

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def aclose(self) -> None:
        try:
            if self.linger:
                await self._linger()
        finally:
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _linger(self) -> None:
        received = 0
        with trio.move_on_after(LINGER_S):
            try:
                while received < LINGER_BYTES:
                    data = await self.stream.receive_some(self.receive_bytes)
                    if not data:
                        return
                    received += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return
