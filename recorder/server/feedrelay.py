"""The live feed across ingest workers: a GET /feed reader on one worker gets the other
workers' devices too.

For each reader, its worker reads every other worker's own feed (GET /feed with the reader's
query over the worker's Unix socket, upgraded to the frames raw; see peers.py) and puts those
frames in the reader's queue beside its own sessions' items. A frame is passed on as it came,
never decoded and encoded again; a reader's queue is as bounded as ever, and what it cannot
take is dropped and counted as for local items. Drops a worker counted for its side are added
to the reader's. A worker that goes away (restarted after a crash) is read again once it is
back.

When the server stops, every worker stops at once, and what the others stored last reaches a
reader through them: a reader's response therefore ends once its own worker's feed has closed
and every other worker's feed has ended too (each ends its own at its shutdown), not before.
"""

from __future__ import annotations

import array
import fcntl
import json
import termios
from pathlib import Path

import trio

from .feed import BURST_BYTES, DROPPED, END, HEARTBEAT, HELLO, MAGIC, PREFIX, FeedItem, FeedQueue, Subscriber
from .peers import RECEIVE_BYTES, PeerError, Peers

# How often the run folder is looked at for workers this reader does not read yet.
RESCAN_S = 1.0
# Frames that are about the connection to the other worker, not about devices.
CONNECTION_FRAMES = frozenset({HELLO, HEARTBEAT, END})
# How long a stopping worker lets its feed readers take what the other workers send last
# (they finalise their sessions first).
RELAY_DRAIN_S = 15.0


class RelayedSubscriber(Subscriber):
    """A reader of one worker's feed that also gets the other workers' (FeedRelay.run). Its
    worker's hub closing it (the worker stops) ends its queue only once no other worker's feed
    is being read into it any more."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.relaying: set[Path] = set()
        self.local_closed = False

    def close(self) -> None:
        self.local_closed = True
        self._end_if_done()

    def relay_ended(self, sock: Path) -> None:
        self.relaying.discard(sock)
        self._end_if_done()

    def _end_if_done(self) -> None:
        if self.local_closed and not self.relaying:
            self.queue.close()


class FeedRelay:
    """What a worker's FeedEndpoint needs to give its readers every worker's feed."""

    def __init__(self, peers: Peers):
        self.peers = peers

    def subscriber(self, *args, **kwargs) -> RelayedSubscriber:
        return RelayedSubscriber(*args, **kwargs)

    async def run(self, subscriber: RelayedSubscriber, query: str) -> None:
        """Until cancelled: every other worker's feed into `subscriber`'s queue; workers that
        appear (started again) are read as they come, until this worker stops."""

        async def relay(sock: Path) -> None:
            try:
                await relay_one(self.peers, sock, subscriber, query)
            except PeerError:
                pass
            finally:
                subscriber.relay_ended(sock)

        async with trio.open_nursery() as nursery:
            while not subscriber.local_closed:
                for sock in self.peers.sockets():
                    if sock not in subscriber.relaying:
                        subscriber.relaying.add(sock)
                        nursery.start_soon(relay, sock)
                await trio.sleep(RESCAN_S)


async def relay_one(peers: Peers, sock: Path, subscriber: Subscriber, query: str) -> None:
    async with peers.open_feed(sock, query) as (socket, buffered):
        try:
            await relay_frames(FrameReader(socket, buffered), subscriber.queue)
        except OSError as exc:
            raise PeerError(f"worker feed {sock.name}: {exc}") from None


async def relay_frames(frames: FrameReader, queue: FeedQueue) -> None:
    """Another worker's frames into a reader's queue, until that feed ends. The reader's task is
    woken once what the other worker has sent so far is all queued: it then sends it in one
    burst (a flush's frames come together), not a frame at a time as each comes off the socket."""
    try:
        while (frame := await frames.next()) is not None:
            head, pieces = frame
            kind = head.get("type")
            if kind == DROPPED:
                queue.dropped_elsewhere(head["device"], head["batches"], head["rows"])
            elif kind not in CONNECTION_FRAMES:
                queue.offer(FeedItem.relayed(head, pieces), wake=False)
            if not frames.more_ready() or queue.queued()[1] >= BURST_BYTES:
                queue.wake_reader()
    finally:
        queue.wake_reader()


class FrameReader:
    """Feed frames off a socket, (head, [prefix and head, body]) each. Small frames are cut from
    reads of RECEIVE_BYTES; the rest of a large frame's body is received straight into the buffer
    it is then sent on from, so its bytes are copied once on the way through, by the kernel."""

    def __init__(self, sock, buffered: bytes = b""):
        self._sock = sock
        self._buffer = bytearray(buffered)  # received, not yet taken (taking from its front is cheap)

    async def next(self) -> tuple[dict, list] | None:
        """The next frame; None at a clean end between frames."""
        if not await self._fill(PREFIX.size):
            if self._buffer:
                raise PeerError("a worker's feed ended inside a frame")
            return None
        magic, head_len, body_len = PREFIX.unpack_from(self._buffer)
        if magic != MAGIC:
            raise PeerError(f"not a recorder feed frame (it begins {bytes(magic)!r})")
        head_end = PREFIX.size + head_len
        if not await self._fill(head_end):
            raise PeerError("a worker's feed ended inside a frame")
        first = bytes(self._buffer[:head_end])
        del self._buffer[:head_end]
        body = bytearray(body_len)
        view = memoryview(body)
        filled = min(body_len, len(self._buffer))
        view[:filled] = self._buffer[:filled]
        del self._buffer[:filled]
        while filled < body_len:
            received = await self._sock.recv_into(view[filled:])
            if not received:
                raise PeerError("a worker's feed ended inside a frame")
            filled += received
        return json.loads(first[PREFIX.size:]), [first, body]

    def more_ready(self) -> bool:
        """Whether bytes of another frame are here already, received or waiting in the socket."""
        if self._buffer:
            return True
        waiting = array.array("i", [0])
        fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, waiting)
        return waiting[0] > 0

    async def _fill(self, size: int) -> bool:
        """At least `size` bytes in the buffer; False if the feed ended first."""
        while len(self._buffer) < size:
            data = await self._sock.recv(RECEIVE_BYTES)
            if not data:
                return False
            self._buffer += data
        return True
