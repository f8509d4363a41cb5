"""The live feed across ingest workers: a GET /feed reader on one worker gets the other
workers' devices too.

For each reader, its worker reads every other worker's own feed (GET /feed with the reader's
query, over the worker's Unix socket; see peers.py) and puts those frames in the reader's
queue beside its own sessions' items. A frame is passed on as it came, never decoded and
encoded again; a reader's queue is as bounded as ever, and what it cannot take is dropped and
counted as for local items. Drops a worker counted for its side are added to the reader's. A
worker that goes away (restarted after a crash) is read again once it is back.

When the server stops, every worker stops at once, and what the others stored last reaches a
reader through them: a reader's response therefore ends once its own worker's feed has closed
and every other worker's feed has ended too (each ends its own at its shutdown), not before.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import trio

from .feed import DROPPED, END, HEARTBEAT, HELLO, MAGIC, PREFIX, FeedItem, Subscriber
from .peers import PeerError, Peers

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
    frames = FrameSplitter()
    async for piece in peers.feed(sock, query):
        for head, pieces in frames.feed(piece):
            kind = head.get("type")
            if kind in CONNECTION_FRAMES:
                continue
            if kind == DROPPED:
                subscriber.queue.dropped_elsewhere(head["device"], head["batches"], head["rows"])
                continue
            subscriber.offer(FeedItem.relayed(head, pieces))


class FrameSplitter:
    """Feed frames out of a byte stream cut anywhere: (head, [prefix and head, body]) each. The
    pieces a frame came in are kept as they came and joined once the frame is whole: its bytes
    are copied once, and nothing is copied while a large frame is still arriving."""

    def __init__(self):
        self._pieces: deque = deque()  # what came after the last whole frame, as it came
        self._held = 0  # their length
        self._frame: tuple[int, int] | None = None  # (head's length, frame's length) once its prefix is in

    def feed(self, data) -> list[tuple[dict, list]]:
        if data:
            self._pieces.append(data)
            self._held += len(data)
        frames = []
        while True:
            if self._frame is None:
                if self._held < PREFIX.size:
                    break
                magic, head_len, body_len = PREFIX.unpack(self._peek(PREFIX.size))
                if magic != MAGIC:
                    raise PeerError(f"not a recorder feed frame (it begins {bytes(magic)!r})")
                self._frame = head_len, PREFIX.size + head_len + body_len
            head_len, size = self._frame
            if self._held < size:
                break
            whole = memoryview(self._take(size))
            head_end = PREFIX.size + head_len
            frames.append((json.loads(bytes(whole[PREFIX.size:head_end])), [whole[:head_end], whole[head_end:]]))
            self._frame = None
        return frames

    def _peek(self, n: int) -> bytes:
        """The first n held bytes (a frame's prefix), leaving them held."""
        first = b""
        for piece in self._pieces:
            first += bytes(piece[:n - len(first)])
            if len(first) == n:
                break
        return first

    def _take(self, n: int) -> bytes:
        """The first n held bytes, joined; a piece that holds more stays held from where they end."""
        taken, size = [], 0
        while size < n:
            piece = self._pieces.popleft()
            if size + len(piece) > n:
                cut = n - size
                self._pieces.appendleft(memoryview(piece)[cut:])
                piece = memoryview(piece)[:cut]
            taken.append(piece)
            size += len(piece)
        self._held -= n
        return b"".join(taken)
