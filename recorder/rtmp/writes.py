"""Received media of every publishing connection, written together: one worker-thread trip per
tick for all the streams that have media waiting, not one per connection.

A trip costs far more than the writes of a few frames (trio's thread hand-over, a wake-up of
the event loop on its way back), and each of twenty streams sent one ten times a second: those
trips were about 40 % of the RTMP server's CPU. Now a tick (every `interval_s`, as long as
anything waits) writes what every stream received since the last one. The flushes (an fsync
each, which a slow disk makes long) stay out of it, in the service's housekeeping, so that they
never hold up the writes.

What a kill -9 can lose stays what it was: media waits in memory at most one tick. A
connection adds its media and goes on reading; once a stream has the config's coalesce_bytes
waiting, its connection waits for the tick that writes them (service.py), so a slow disk still pushes back on the
publisher and the memory per connection stays bounded. A failed write fails only its own
stream's connection (told through its `failed_write(message)`); the other streams are written.
"""

from __future__ import annotations

import trio

from . import flv
from .events import AudioData, Metadata, VideoData


class MediaWrites:
    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.waiting: dict = {}  # session -> [owner, events, bytes]
        self.writing: set = set()  # sessions whose media is in the trip under way
        self.written = trio.Event()  # set when a trip is over (then replaced)
        self.work = trio.Event()  # set while anything waits
        self.hurry = trio.Event()  # set when someone waits for the next trip
        self.closed = False
        self.trips = 0

    def add(self, session, owner, events: list, size: int) -> None:
        """Media events of `session` in the order received; `owner` (the publishing connection)
        hears of a failed write through its `failed_write(message)`."""
        entry = self.waiting.get(session)
        if entry is None:
            self.waiting[session] = [owner, list(events), size]
        else:
            entry[1].extend(events)
            entry[2] += size
        self.work.set()

    def waiting_bytes(self, session) -> int:
        entry = self.waiting.get(session)
        return entry[2] if entry is not None else 0

    async def settle(self, session) -> None:
        """Until every event added for `session` is written (or its write failed)."""
        while session in self.waiting or session in self.writing:
            written = self.written
            self.hurry.set()
            await written.wait()

    def close(self) -> None:
        """No more media comes: run() writes what waits, then ends."""
        self.closed = True
        self.work.set()
        self.hurry.set()

    async def run(self) -> None:
        """Until close(): shielded, as the connections waiting for their writes are."""
        with trio.CancelScope(shield=True):
            await self._run()

    async def _run(self) -> None:
        while True:
            await self.work.wait()
            if not self.hurry.is_set() and not self.closed:
                with trio.move_on_after(self.interval_s):
                    await self.hurry.wait()
            self.hurry = trio.Event()
            if self.waiting:
                await self._trip()
            elif self.closed:
                return
            else:
                self.work = trio.Event()

    async def _trip(self) -> None:
        jobs = []
        for session, (owner, events, _) in list(self.waiting.items()):
            try:
                session.lock.acquire_nowait()  # a publish, an end or a finish has it: next tick
            except trio.WouldBlock:
                continue
            del self.waiting[session]
            jobs.append((session, owner, events))
        if not jobs:
            return  # each one's lock is taken: the next tick
        self.writing = {session for session, *_ in jobs}
        try:
            results = await trio.to_thread.run_sync(write_all, [(s.recording, e) for s, _, e in jobs])
        finally:
            for session, *_ in jobs:
                session.lock.release()
            self.writing = set()
            self.trips += 1
            written, self.written = self.written, trio.Event()
            written.set()
        for (session, owner, events), (stats, failure) in zip(jobs, results, strict=True):
            if stats is not None:
                session.stats = stats
            if failure is not None:
                owner.failed_write(failure)
            elif session.state == "initializing" and any(not isinstance(e, Metadata) for e in events):
                session.set_state("active")


def write_all(jobs) -> list[tuple[dict | None, str | None]]:
    """In a worker thread: each (recording, events) job's events written; each job's figures,
    and why its write failed if it did."""
    results = []
    for recording, events in jobs:
        failure = None
        try:
            write_events(recording, events)
        except OSError as exc:
            failure = f"recording failed: {exc.strerror or exc}"
        except Exception as exc:  # one stream's failure must not cost the others their writes
            failure = f"recording failed: {type(exc).__name__}: {exc}"
        try:
            stats = recording.stats()
        except Exception:
            stats = None
        results.append((stats, failure))
    return results


def write_events(recording, events) -> None:
    """The events in order: each run of audio and video messages in one write."""
    media = []
    for event in events:
        if isinstance(event, (VideoData, AudioData)):
            media.append((flv.VIDEO if isinstance(event, VideoData) else flv.AUDIO, event.timestamp, event.payload))
            continue
        if media:
            recording.write_media(media)
            media = []
        recording.write_metadata(event.values, event.raw)
    if media:
        recording.write_media(media)
