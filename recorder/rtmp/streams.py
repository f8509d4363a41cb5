"""The RTMP streams this server has seen: one per (application, stream key), whatever the number
of publishes it arrives in, with the lifecycle glasses apps show their users.

    initializing  a publish was accepted; no media yet
    active        media is being recorded
    stopping      the publisher left; a re-publish within the grace period continues the session
    stopped       finished: index tables and MP4 written
    error         the last publish ended in an error (protocol or storage); the session still
                  finishes after the grace period, and `error` says what happened
"""

from __future__ import annotations

import time

import trio


class RtmpSession:
    def __init__(self, app: str, stream_key: str, *, recovered: bool = False):
        self.app = app
        self.stream_key = stream_key
        self.recording = None  # recording.Recording, once its folder exists
        self.recovered = recovered  # found unfinished when the server started
        self.state = "initializing"
        self.since = time.time()
        self.state_since = self.since
        self.remote = ""
        self.error: str | None = None
        self.publisher: object | None = None  # the connection publishing now
        self.publishes = 0  # accepted by this server run
        self.stopped_at = time.monotonic()
        self.finishing = False  # set before finish() starts: a later publish opens a new session
        self.stats: dict = {}
        self.last_flush = time.monotonic()
        # Recording calls run in worker threads, one at a time.
        self.lock = trio.Lock()

    @property
    def key(self) -> tuple[str, str]:
        return self.app, self.stream_key

    @property
    def name(self) -> str:
        return f"{self.app}/{self.stream_key}"

    @property
    def session_id(self) -> str | None:
        return self.recording.folder.name if self.recording is not None else None

    @property
    def open(self) -> bool:
        """A publish may continue this session."""
        return not self.finishing and self.state != "stopped"

    async def record(self, action, *args) -> None:
        """action(recording, *args) in a worker thread, one at a time, and the figures /status
        shows refreshed in the same trip (they are kept per tag: cheap)."""
        async with self.lock:  # held while a publish creates the recording: read it after
            recording = self.recording

            def act_and_measure():
                action(recording, *args)
                return recording.stats()

            self.stats = await trio.to_thread.run_sync(act_and_measure)

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state, self.state_since = state, time.time()
