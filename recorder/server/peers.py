"""The other ingest workers of `recorder serve --workers N`, as one worker sees them.

Every worker answers HTTP on a Unix socket of its own in the run folder the supervisor gives
them all (worker-<index>.sock), besides the public port they share. On that socket it answers
with what it alone holds: /status, /metrics and /feed of its own sessions, and POST /release,
which hands one of its sessions over. A worker that a device reaches asks the others through
it: for their figures (so that /status and /metrics of any worker show every session), for
their feeds (so that a feed reader on any worker gets every device), and for a session that a
reconnecting device left on another worker.

The run folder is private to the recorder's user (0700), which is what guards these sockets.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

import h11
import trio

from .feed import FEED_UPGRADE, RAW_FEED_BUFFER_BYTES

SOCKET_GLOB = "worker-*.sock"
RELEASE_PATH = "/release"
RECEIVE_BYTES = 256 << 10
# A worker that does not answer within this is left out of a merged /status or /metrics
# (it may be starting, stopping, or busy finishing a session): the others are still shown.
FIGURES_TIMEOUT_S = 5.0


def socket_path(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / f"worker-{index}.sock"


def summary_path(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / f"worker-{index}.summary.json"


class PeerError(Exception):
    """A worker could not be asked (gone, restarting) or answered with an error."""


class Peers:
    """The workers other than this one, found by their sockets in the run folder; and what
    they share: how many they are, and the server's limits (each worker enforces its share)."""

    def __init__(self, run_dir: Path, index: int, count: int = 1, limits: dict | None = None):
        self.run_dir = Path(run_dir)
        self.index = index
        self.count = count
        self.limits = limits
        self.own_socket = socket_path(self.run_dir, index)

    def summary_path(self) -> Path:
        """Where this worker leaves its part of the final summary for the supervisor to print."""
        return summary_path(self.run_dir, self.index)

    def sockets(self) -> list[Path]:
        return sorted(p for p in self.run_dir.glob(SOCKET_GLOB) if p != self.own_socket)

    async def gather(self, target: str) -> list[bytes]:
        """GET `target` from every other worker at once: the bodies of their answers (those
        that cannot answer are left out)."""
        return await self._ask_all("GET", target, FIGURES_TIMEOUT_S)

    async def release(self, serial: str, session_id: str, timeout_s: float) -> None:
        """Ask every other worker to let go of a session (whichever has it finishes its part and
        closes its writer)."""
        await self._ask_all("POST", f"{RELEASE_PATH}?{urlencode({'serial': serial, 'session': session_id})}",
                            timeout_s)

    async def _ask_all(self, method: str, target: str, timeout_s: float) -> list[bytes]:
        answers: list[bytes] = []

        async def ask(sock: Path) -> None:
            try:
                answers.append(await _request(sock, method, target, timeout_s))
            except PeerError:
                pass

        async with trio.open_nursery() as nursery:
            for sock in self.sockets():
                nursery.start_soon(ask, sock)
        return answers

    @asynccontextmanager
    async def open_feed(self, sock: Path, query: str) -> AsyncIterator[tuple[trio.socket.SocketType, bytes]]:
        """One worker's GET /feed, upgraded to its frames raw (feed.UpgradedBody): its socket,
        and what already came after the answer, from where the frames are read."""
        try:
            stream = await trio.open_unix_socket(str(sock))
        except OSError as exc:
            raise PeerError(f"worker socket {sock.name}: {exc}") from None
        try:
            conn = h11.Connection(h11.CLIENT)
            try:
                await stream.send_all(conn.send(h11.Request(method="GET", target=f"/feed?{query}", headers=[
                    ("host", "worker"), ("connection", "upgrade"), ("upgrade", FEED_UPGRADE)])))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                while conn.their_state is not h11.SWITCHED_PROTOCOL:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(RECEIVE_BYTES)
                        if not data:
                            raise PeerError(f"worker feed {sock.name}: closed before it answered")
                        conn.receive_data(data)
                    elif isinstance(event, h11.Response):
                        raise PeerError(f"worker feed {sock.name} answered {event.status_code}")
            except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
                raise PeerError(f"worker feed {sock.name}: {exc}") from None
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RAW_FEED_BUFFER_BYTES)
            yield stream.socket, conn.trailing_data[0]
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()


async def _request(sock: Path, method: str, target: str, timeout_s: float) -> bytes:
    conn = h11.Connection(h11.CLIENT)
    body = bytearray()
    status = None
    try:
        with trio.fail_after(timeout_s):
            stream = await trio.open_unix_socket(str(sock))
            try:
                await stream.send_all(conn.send(h11.Request(method=method, target=target, headers=[
                    ("host", "worker"), ("content-length", "0")])))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(RECEIVE_BYTES))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                        break
            finally:
                await stream.aclose()
    except (OSError, trio.BrokenResourceError, trio.TooSlowError, h11.ProtocolError) as exc:
        raise PeerError(f"worker {sock.name}: {exc or type(exc).__name__}") from None
    if status != 200:
        raise PeerError(f"worker {sock.name} answered {status}: {bytes(body[:200])!r}")
    return bytes(body)
