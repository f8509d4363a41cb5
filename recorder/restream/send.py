"""Sends recorded sessions to a recorder as their devices did: each session on its own
connection, its requests one after another with their original headers, version-1 bodies as
chunked POSTs of rebuilt records paced by device time, other bodies chunk for chunk paced by
their recorded arrival times. All sessions at once.

`speed` scales the pacing: 1 is real time, 2 twice as fast, 0 as fast as the link goes. Pacing
is measured from the session's first record; a request that starts late (a slow link, a raw
body sent before it) moves the clock on rather than rushing what follows.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11
import numpy as np
import pyarrow as pa
import trio

from ..devicelink import Connection, SendError, Target, describe
from ..reading.session import Session
from .bodies import Request, SessionBodies

WINDOW_NS = 100_000_000  # device time sent as one chunk when paced
PIECE_BYTES = 1 << 20  # at most this much in one chunk


@dataclass
class SessionReport:
    """What was sent of one session, and what the recorder answered."""

    path: str
    serial: str = ""
    session_id: str = ""
    records: int = 0  # records (and corrupt runs) sent
    bytes: int = 0  # body bytes sent
    requests: int = 0
    total_records: int = 0  # in the session
    total_bytes: int = 0
    seconds: float = 0.0
    answers: list[dict] = field(default_factory=list)  # each request's JSON answer, with its "http" status
    error: str | None = None
    done: bool = False

    @property
    def resends(self) -> int:
        """Records the recorder answered it already had (and did not store again)."""
        return sum(int(a.get("resends", 0)) for a in self.answers)


# Called as data goes out: (report, records sent, bytes sent) since the last call.
ProgressCallback = Callable[[SessionReport, int, int], None]


def load(path: str | Path) -> SessionBodies:
    """A session's bodies, ready to send (reads and rebuilds every stream)."""
    return SessionBodies(Session(path))


def plan_report(path: str | Path, bodies: SessionBodies) -> SessionReport:
    raw_bytes = sum(len(r.raw.body) for r in bodies.requests if r.raw is not None)
    return SessionReport(str(path), bodies.session.serial, bodies.session.session_id,
                         total_records=len(bodies.items),
                         total_bytes=int(bodies.items.length.sum()) + raw_bytes)


class _Link:
    """A device's connection, opened again when the recorder closed it after an answer."""

    def __init__(self, target: Target, ssl_context, timeout_s: float | None, token: str | None = None):
        self.target, self.ssl_context, self.timeout_s = target, ssl_context, timeout_s
        self.token = token
        self.conn: Connection | None = None

    async def start(self, headers) -> Connection:
        if self.conn is not None and self.conn.h11.our_state is not h11.IDLE:
            await self.close()
        if self.conn is None:
            self.conn = await Connection.open(self.target, self.ssl_context, timeout_s=self.timeout_s)
        if self.token:  # the recorder replayed to may want a device token (serve --tokens)
            headers = [*(headers.items() if isinstance(headers, dict) else headers),
                       ("authorization", f"Bearer {self.token}")]
        await self.conn.start(self.target.path, headers)
        return self.conn

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.aclose()
            self.conn = None


async def restream_session(bodies: SessionBodies, target: Target, ssl_context, report: SessionReport, *,
                           speed: float = 1.0, timeout_s: float | None = 30.0,
                           on_progress: ProgressCallback | None = None, token: str | None = None) -> SessionReport:
    """Send one session's requests in order on one connection; raises SendError if the
    recorder refuses a request or makes no progress for timeout_s."""
    started = time.monotonic()
    link = _Link(target, ssl_context, timeout_s, token)
    clock = _Clock(speed)
    try:
        for request in bodies.requests:
            conn = await link.start(request.headers)
            report.requests += 1
            if request.raw is not None:
                await _send_raw(conn, request, clock, report, on_progress)
            else:
                await _send_records(conn, bodies, request, clock, report, on_progress)
            status, answer = await conn.finish()
            report.answers.append({"http": status, **answer})
            report.seconds = time.monotonic() - started
            if status != 200:
                raise SendError(f"request {request.number}: HTTP {status}: {answer.get('error', answer)}")
    finally:
        await link.close()
    report.seconds = time.monotonic() - started
    return report


class _Clock:
    """When a piece of a session is due: device time (ns since the session's first record)
    over `speed`, from an origin that moves on when sending falls behind at a request's start."""

    def __init__(self, speed: float):
        self.speed = speed
        self.origin: float | None = None

    def start_at(self, device_ns: int) -> None:
        if not self.speed:
            return
        earliest = trio.current_time() - device_ns / 1e9 / self.speed
        self.origin = earliest if self.origin is None else max(self.origin, earliest)

    async def wait_for(self, device_ns: int) -> None:
        if self.speed and self.origin is not None:
            await trio.sleep_until(self.origin + device_ns / 1e9 / self.speed)


def windows(pace_ns: np.ndarray, lengths: np.ndarray, start: int, stop: int, paced: bool):
    """(start, stop) ranges of records sent as one chunk: WINDOW_NS of device time when paced,
    never more than PIECE_BYTES (but at least one record)."""
    ends = np.cumsum(lengths[start:stop])
    i = start
    while i < stop:
        before = int(ends[i - start - 1]) if i > start else 0
        j = start + int(np.searchsorted(ends, before + PIECE_BYTES, side="right"))
        if paced:
            j = min(j, int(np.searchsorted(pace_ns[:stop], pace_ns[i] + WINDOW_NS, side="left")))
        j = min(max(j, i + 1), stop)
        yield i, j
        i = j


async def _send_records(conn: Connection, bodies: SessionBodies, request: Request, clock: _Clock,
                        report: SessionReport, on_progress: ProgressCallback | None) -> None:
    items = bodies.items
    if not request.records:
        return
    clock.start_at(int(items.pace_ns[request.start]))
    for start, stop in windows(items.pace_ns, items.length, request.start, request.stop, bool(clock.speed)):
        # Reading and rebuilding (zstd frames of video) would stall every other session's
        # sending if it ran on the event loop.
        body = await trio.to_thread.run_sync(bodies.body, start, stop)
        await clock.wait_for(int(items.pace_ns[stop - 1]))  # a window exists once captured
        await conn.send(body)
        report.records += stop - start
        report.bytes += len(body)
        if on_progress:
            on_progress(report, stop - start, len(body))


async def _send_raw(conn: Connection, request: Request, clock: _Clock, report: SessionReport,
                    on_progress: ProgressCallback | None) -> None:
    """A body that was not version 1: its chunks as they were, at their recorded arrival times."""
    raw = request.raw
    begun = trio.current_time()
    for chunk, arrived in zip(raw.chunks, raw.arrival_ns, strict=True):
        if clock.speed:
            await trio.sleep_until(begun + (arrived - raw.arrival_ns[0]) / 1e9 / clock.speed)
        await conn.send(chunk)
        report.bytes += len(chunk)
        if on_progress:
            on_progress(report, 0, len(chunk))


async def restream(paths: list[str | Path], url: str, ssl_context: ssl.SSLContext | None = None, *,
                   speed: float = 1.0, timeout_s: float | None = 30.0,
                   on_start: Callable[[list[SessionReport]], None] | None = None,
                   on_progress: ProgressCallback | None = None,
                   on_done: Callable[[SessionReport], None] | None = None,
                   reports: list[SessionReport] | None = None, token: str | None = None) -> list[SessionReport]:
    """Send every session at once, each on its own connection; one that fails does not stop
    the others. `reports` (an empty list) is filled in as they go, for a summary after an
    interruption; on_start gets them once every session is read, before anything is sent. A
    session that cannot be read is reported as failed, not raised."""
    target = Target.parse(url)
    if reports is None:
        reports = []
    loaded: list[SessionBodies | None] = []
    for path in paths:
        try:
            loaded.append(await trio.to_thread.run_sync(load, path))
            reports.append(plan_report(path, loaded[-1]))
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:  # a damaged session: said, not raised
            loaded.append(None)
            reports.append(SessionReport(str(path), Path(path).parent.name, Path(path).name,
                                         error=f"cannot read the session: {describe(exc)}", done=True))
    if on_start:
        on_start(reports)

    async def one(bodies: SessionBodies | None, report: SessionReport) -> None:
        if bodies is None:
            if on_done:
                on_done(report)
            return
        started = time.monotonic()
        try:
            await restream_session(bodies, target, ssl_context, report, speed=speed, timeout_s=timeout_s,
                                   on_progress=on_progress, token=token)
        except (OSError, trio.BrokenResourceError, ssl.SSLError, h11.ProtocolError, SendError) as exc:
            report.error = describe(exc)
            report.seconds = time.monotonic() - started
        finally:
            bodies.session.close()
        report.done = True
        if on_done:
            on_done(report)

    async with trio.open_nursery() as nursery:
        for bodies, report in zip(loaded, reports, strict=True):
            nursery.start_soon(one, bodies, report)
    return reports
