"""Least connections: which worker of `recorder serve --workers N` takes the next connection.

The workers accept from one listening socket. Left alone, whichever worker the kernel wakes
first takes the connection, busy or not; one socket per worker (SO_REUSEPORT) spreads them by a
hash of their addresses, which is no better: with 10 devices on 2 workers the hash gave one
worker 7 of them here, and that worker fell behind on a full core while the other used half
of one. So each worker posts how many connections it has on a board that every worker reads
(a small file in the run folder, mapped into each), and accepts only while it has no more than
the fewest: the next device goes to a least loaded worker, as with nginx's least_conn.

Every worker waits at the listener until a connection waits there, and only then reads the
board: whose turn it is is decided when a connection comes, not some time before, and an idle
worker does not wake to look. A worker whose turn it is may be slow to take a connection (its
event loop busy for a moment): one waiting that long (HANDOFF_S) is taken by another worker all
the same. A worker counts only while it is seen to serve: each one also posts, at least every
HEARTBEAT_S, that it is still at its listener. One that stopped, died, or hangs (stopped by a
debugger) is passed over after STALE_S. When the server starts, though, every worker is waited
for (up to STARTING_S) as if it served with no connection yet: devices that connect as soon as
the port is open would otherwise all go to the worker that happened to start first. (A worker
started again after dying is not waited for: the others take its devices' reconnections, and it
gets the next ones.)
"""

from __future__ import annotations

import mmap
import select
import time
from pathlib import Path

import trio

BOARD_NAME = "connections.board"
# Per worker: its count of connections, and when it last posted (time.monotonic_ns(), which
# every process on the machine reads alike; 0: not serving).
SLOT_FIELDS = 2
# A worker that has not posted for this long is not waited for ...
STALE_S = 0.5
# ... and one waiting at its listener posts this often, so that a post a little late (its event
# loop busy for a moment) does not get it passed over. Each post wakes the worker: at idle,
# these wakeups are most of what it costs.
HEARTBEAT_S = STALE_S / 4
# A connection that the worker whose turn it is leaves waiting this long is taken by another;
# meanwhile the others look at the board every POLL_S, lest it become their turn unseen.
HANDOFF_S = 0.05
POLL_S = 0.005
# How long a server's workers are waited for at its start (a worker takes about a second to
# start on a laptop; a small board, or a loaded machine, may take several).
STARTING_S = 10.0


def board_path(run_dir: Path) -> Path:
    return Path(run_dir) / BOARD_NAME


def create_board(run_dir: Path, count: int) -> None:
    """The board of `count` workers about to start: each one waited for, with no connection,
    until it posts or STARTING_S has passed."""
    due = time.monotonic_ns() + int((STARTING_S - STALE_S) * 1e9)
    path = board_path(run_dir)
    path.write_bytes(bytes(8 * SLOT_FIELDS * count))
    board = Board(run_dir)
    for index in range(count):
        board.post(index, 0, due)
    board.close()


class Board:
    """The board as one process maps it: what every worker last posted."""

    def __init__(self, run_dir: Path):
        with open(board_path(run_dir), "r+b") as f:
            self._map = mmap.mmap(f.fileno(), 0)
        # An aligned 8-byte field is written by one store: readers see the old value or the new.
        self._fields = memoryview(self._map).cast("q")

    def post(self, index: int, connections: int, now_ns: int) -> None:
        self._fields[SLOT_FIELDS * index + 1] = now_ns
        self._fields[SLOT_FIELDS * index] = connections

    def fewest(self, now_ns: int) -> tuple[int | None, int | None]:
        """The fewest connections of a worker seen serving within STALE_S, and of one of them
        that has started (not only waited for at the server's start); None: there is none."""
        fields = self._fields.tolist()
        since = now_ns - int(STALE_S * 1e9)
        serving = [(fields[i], fields[i + 1] <= now_ns) for i in range(0, len(fields), SLOT_FIELDS)
                   if fields[i + 1] > since]
        return (min((c for c, _ in serving), default=None),
                min((c for c, started in serving if started), default=None))

    def close(self) -> None:
        self._fields.release()
        self._map.close()


class LeastConnections:
    """Worker `index`'s side of the board: it takes a connection only while it has no more
    than any other worker serving, and counts its connections until each ends."""

    def __init__(self, board: Board, index: int):
        self.board = board
        self.index = index
        self.connections = 0
        self.posting = True

    def stopped(self) -> None:
        """This worker takes no more connections (those it has go on): the others take them all."""
        self.posting = False
        self.board.post(self.index, self.connections, 0)
        self.board.close()

    def my_turn(self) -> bool:
        least, _ = self.board.fewest(self._post())
        return least is None or self.connections <= least

    def started_worker_has_fewer(self) -> bool:
        _, least_started = self.board.fewest(self._post())
        return least_started is not None and least_started < self.connections

    async def accept(self, listener: trio.SocketListener) -> trio.SocketStream:
        """The next connection on `listener`, taken in this worker's turn (or left waiting by
        the worker whose turn it is), and counted."""
        sock = listener.socket
        while True:
            with trio.move_on_after(HEARTBEAT_S):
                await trio.lowlevel.wait_readable(sock)
            if not _waiting(sock):  # none came, or another worker took it
                self._post()
                continue
            if self.my_turn() or await self._left_to_this_worker(sock):
                # Another worker may take it first (each is woken by it): look again after a while.
                with trio.move_on_after(HANDOFF_S):
                    stream = await listener.accept()
                    self._add(1)
                    return stream

    async def _left_to_this_worker(self, sock) -> bool:
        """Not this worker's turn, and a connection waits: True when it becomes this worker's
        turn, or when the worker whose turn it is (one that has started) has left it waiting
        HANDOFF_S; False if it is taken meanwhile, or waits for a worker still starting."""
        deadline = trio.current_time() + HANDOFF_S
        while _waiting(sock):
            if self.my_turn():
                return True
            if trio.current_time() >= deadline:
                return self.started_worker_has_fewer()
            await trio.sleep(POLL_S)
        return False

    def counted(self, handle):
        """`handle(stream, remote)`, which takes a connection accept() counted, uncounting it when done."""

        async def run(stream, remote: str) -> None:
            try:
                await handle(stream, remote)
            finally:
                self._add(-1)

        return run

    def _add(self, delta: int) -> None:
        self.connections += delta
        self._post()

    def _post(self) -> int:
        now = time.monotonic_ns()
        if self.posting:
            self.board.post(self.index, self.connections, now)
        return now


def _waiting(sock) -> bool:
    """A connection waits on the listening socket (to be accepted by some worker). (poll, not
    select: select cannot take a descriptor past 1023, which a busy process may have.)"""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))
