"""One request body into a session: version-1 bodies through the decoder, others kept raw.

Decoding and writing into the files happen on the event loop's own thread; only the flush, which
waits for the disk (fdatasync), goes to a worker thread, one call at a time per session. Why not
all of it in a thread, as before: the decoding thread and the loop's thread then took turns at
the GIL hundreds of times a second, and the hand-overs (futex wake-ups, cache misses) cost more
than they saved. One worker, 4 TLS clients unpaced, RAW frames stored: 10.6-11.5 ms of server
CPU per MB with the thread, 7.6-8.9 without; with RAW frames compressed 12.7-12.8 against
10.8-11.6. A session whose writer stopped on a storage error is repaired (recovered from its
files) in a thread too, since that reads and syncs the disk.

The socket is not read while the body's bytes are decoded and written, so a slow disk slows the
sender through TCP instead of growing a queue. A flush, though, runs beside the receiving (in
`flushes`, a nursery the connection's task holds): the next bytes gather meanwhile, and their
write waits for it. So the storage sees the same order as ever (write, flush, write, flush) and
memory stays bounded by coalesce_bytes, but a device is not left unread while its files sync.
That wait was most of a flush: 20 profile9 devices over TLS into 2 workers flushed every 0.5 s
for 150-180 ms each (median; 107 ms of it in fdatasync, 10 ms of CPU), so each device went
unread for a third of the time, and fell behind on a server with CPU to spare.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import trio

from ..storage import layout
from ..wire import Counters, Decoder
from . import console

MAGIC = b"SRF1"
SESSION_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DEVICE_SERIAL = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The first bytes of a body that is not version 1, as the console shows them.
UNDECODED_HEAD_BYTES = 16


def header_problem(headers: dict[str, str]) -> str | None:
    """Why a request's headers cannot be accepted, in words a person can act on; None if they can."""
    session_id = headers.get("session-id")
    serial = headers.get("device-serial")
    if session_id is None:
        return "missing session-id header (the streaming session's UUID)"
    if not SESSION_ID.fullmatch(session_id):
        return f"session-id {session_id[:80]!r} is not a UUID like 597b9aec-079a-4ca3-bc6c-98bf10f6aa33"
    if serial is None:
        return "missing device-serial header"
    if not DEVICE_SERIAL.fullmatch(serial):
        return f"device-serial {serial[:80]!r} must be 1 to 64 of A-Z a-z 0-9 . _ -"
    if serial in (".", ".."):
        return f"device-serial {serial!r} cannot name a folder; use a serial with a letter or digit"
    if serial == layout.RTMP_ROOT:
        return f"device-serial {serial!r} is reserved: that folder holds the RTMP streams"
    return None


class BodyIngest:
    def __init__(self, session, *, coalesce_bytes: int, flush_interval_s: float,
                 on_held: Callable[[int], None] | None = None):
        self.session = session
        # Told every change in the bytes held: received and not yet handed to storage (the
        # server's memory in flight). release() lets go of what was never written.
        self.on_held = on_held
        self.held = 0
        self.coalesce_bytes = coalesce_bytes
        self.flush_interval_s = flush_interval_s
        self.decoder: Decoder | None = None
        self.raw = False
        self.bytes = 0
        self.pieces: list[bytes | bytearray] = []  # version-1 bytes not yet decoded
        self.pending = 0
        self.pending_since = 0.0
        self.raw_chunk: list[bytes] = []  # the raw chunk being received
        self.raw_chunk_at = 0
        self.raw_chunks: list[tuple[bytes, int]] = []  # whole raw chunks not yet written
        self._reported = Counters()
        # While the body is received: the nursery its flushes run in, beside the receiving.
        self.flushes: trio.Nursery | None = None
        self._flush_done: trio.Event | None = None  # of the flush under way
        self._flush_error: Exception | None = None

    @property
    def counters(self) -> Counters:
        return self.decoder.counters if self.decoder else Counters(bytes=self.bytes)

    def _choose_mode(self) -> None:
        head = b"".join(self.pieces)[:4]
        if len(head) < 4 and MAGIC.startswith(head):
            return  # cannot tell yet
        if head == MAGIC:
            self.decoder = Decoder(highest_sequence=self.session.writer.highest_sequence)
        else:
            self._undecoded()

    def _undecoded(self) -> None:
        # Stored all the same, but nothing in it is counted: without a word, a device in another
        # format (a vendor's own) would look like one streaming nothing but sending fine.
        self.raw = True
        if not self.session.undecoded_body:
            self.session.undecoded_body = True
            console.undecoded_body(self.session, b"".join(self.pieces)[:UNDECODED_HEAD_BYTES])

    async def add(self, data: bytes, chunk_start: bool, chunk_end: bool) -> None:
        """One h11 Data event's bytes; writes when enough has gathered."""
        if not data:
            return
        if not self.pending and not self.raw_chunks:
            self.pending_since = time.monotonic()
        self.bytes += len(data)
        self._hold(len(data))
        # h11 hands over a bytearray of its own making that nothing else holds: kept as it is
        # (a copy costs some 0.2 ms per MB).
        self.pieces.append(data if isinstance(data, (bytes, bytearray)) else bytes(data))
        self.pending += len(data)
        if self.decoder is None and not self.raw:
            self._choose_mode()
        if self.raw:
            self._gather_raw(chunk_start, chunk_end)
        if self.pending >= self.coalesce_bytes:
            await self.write()

    def _gather_raw(self, chunk_start: bool, chunk_end: bool) -> None:
        # Raw bodies keep their chunk boundaries: one write_raw per chunk as the device sent it
        # (a chunk larger than coalesce_bytes is written in parts, to bound memory).
        if chunk_start or not self.raw_chunk:
            self.raw_chunk_at = time.time_ns()
        self.raw_chunk += self.pieces
        self.pieces = []
        size = sum(map(len, self.raw_chunk))
        if chunk_end or size >= self.coalesce_bytes:
            self.raw_chunks.append((b"".join(self.raw_chunk), self.raw_chunk_at))
            self.raw_chunk = []
        self.pending = sum(len(c) for c, _ in self.raw_chunks)

    @property
    def waiting(self) -> bool:
        """Bytes have arrived that are not written yet."""
        return bool(self.pending or self.raw_chunks)

    def due(self) -> bool:
        """Bytes have waited long enough that they must be written and flushed now."""
        return self.waiting and time.monotonic() - self.pending_since >= self.flush_interval_s

    async def write(self, final: bool = False) -> None:
        """What has gathered, decoded and written into the session's files, then flushed if a
        flush is due (or `final`): beside the receiving when there is a nursery for it."""
        await self.flushed()
        session = self.session
        if final and self.decoder is None and not self.raw and self.pieces:
            self._undecoded()  # a body shorter than the magic is not version 1
            self._gather_raw(True, True)
        if final and self.raw_chunk:
            self.raw_chunks.append((b"".join(self.raw_chunk), self.raw_chunk_at))
            self.raw_chunk = []
        pieces, self.pieces = self.pieces, []
        raw_chunks, self.raw_chunks = self.raw_chunks, []
        self.pending = 0
        taken = sum(map(len, pieces)) + sum(len(data) for data, _ in raw_chunks)
        decoder = self.decoder
        flush = final or time.monotonic() - session.last_flush >= self.flush_interval_s
        beside = flush and not final and self.flushes is not None

        def decode_and_write():
            writer = session.writer
            if decoder is not None:
                if pieces:
                    writer.write(decoder.feed_pieces(pieces))
                if final:
                    writer.write(decoder.close())
            for data, arrived_ns in raw_chunks:
                writer.write_raw(data, arrived_ns)

        try:
            async with session.lock:
                if session.writer.stopped:
                    await trio.to_thread.run_sync(decode_and_write)  # repairs the folder first
                else:
                    decode_and_write()
                if flush and not beside:
                    await self._flush()
        finally:
            self._hold(-taken)  # written, or (on an error) gone
        if beside:
            self._flush_done = trio.Event()
            self.flushes.start_soon(self._flush_beside)
        if decoder is not None:
            now = decoder.counters.as_dict()
            delta = Counters(**{k: v - getattr(self._reported, k) for k, v in now.items()})
            self._reported = Counters(**now)
            session.counters.add(delta)
        session.raw_bytes += sum(len(d) for d, _ in raw_chunks)

    async def _flush(self) -> None:
        """With the session's lock held."""
        await trio.to_thread.run_sync(self.session.writer.flush)
        self.session.last_flush = time.monotonic()

    async def _flush_beside(self) -> None:
        try:
            async with self.session.lock:
                await self._flush()
        except Exception as exc:  # the receiving side raises it, at its next write
            self._flush_error = exc
        finally:
            self._flush_done.set()

    async def flushed(self) -> None:
        """Once the flush under way (if any) is done; raises what it failed with."""
        if self._flush_done is not None:
            await self._flush_done.wait()
            self._flush_done = None
        if self._flush_error is not None:
            error, self._flush_error = self._flush_error, None
            raise error

    def _hold(self, delta: int) -> None:
        self.held += delta
        if self.on_held is not None and delta:
            self.on_held(delta)

    def release(self) -> None:
        """The request is over: what is still held (never written, say after a storage error) is let go."""
        self._hold(-self.held)
