"""The sessions this server is receiving, live: one per (device serial, session id), whatever the
number of requests and connections it arrives over."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import trio

from ..wire import Counters


@dataclass
class RateMeter:
    """Rates over the last interval, from running totals sampled now and then."""

    at: float = 0.0
    totals: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)

    def sample(self, now: float, totals: dict[str, float]) -> None:
        if self.at and now > self.at:
            dt = now - self.at
            self.rates = {k: max(0.0, (v - self.totals.get(k, 0.0)) / dt) for k, v in totals.items()}
        self.at, self.totals = now, dict(totals)


class LiveSession:
    def __init__(self, serial: str, session_id: str, writer, resumed: bool):
        self.serial = serial
        self.session_id = session_id
        self.writer = writer
        self.resumed = resumed  # the folder existed before this server run saw the session
        self.state = "receiving"  # receiving, waiting (for a reconnect), finished
        self.since = time.time()
        self.state_since = self.since
        self.remote = ""
        self.connections = 0
        self.requests = 0
        self.counters = Counters()  # what this server run decoded for the session
        self.raw_bytes = 0  # bodies that are not version 1, stored verbatim and not decoded
        self.undecoded_body = False  # one such body has begun (the console has said so)
        self.last_flush = time.monotonic()
        self.waiting_since = time.monotonic()
        self.meter = RateMeter()
        if not resumed:
            # Counted from zero now, so the first status sample already gives a rate (a resumed
            # session's stored rows would count as one huge first interval: it waits a sample).
            self.meter.sample(time.monotonic(), {})
        self.stats: dict = {}
        # Writer calls are serialised: a reconnect waits until the old connection's call ends.
        self.lock = trio.Lock()
        self.connection_scope: trio.CancelScope | None = None
        self.connection = None  # the HTTP connection that carried the latest request
        self.released = trio.Event()  # set when that connection's ingest has let go of the session
        self.released.set()

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state, self.state_since = state, time.time()

    @property
    def key(self) -> tuple[str, str]:
        return self.serial, self.session_id
