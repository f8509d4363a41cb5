"""How busy this process's event loop is, and what that decides for RAW camera frames.

The loop's load is the share of the time it spends running tasks rather than waiting for I/O:
a trio instrument times every wait. A loop that never waits is saturated: its sockets hold
bytes it has not come to read yet, and the devices behind them fall behind (TCP makes them
wait). With `--raw-images auto` (the default), a loop saturated for SATURATED_WINDOWS windows
in a row stores the RAW camera frames of its sessions as they come, which takes a third less
CPU per profile9 byte than compressing them, until its load falls below RELAXED: room enough
to compress again without being saturated once more (so it does not swing back and forth).
A frame reads back the same either way; what changes is the disk it takes, and /status and
/metrics count the frames stored so.
"""

from __future__ import annotations

import time

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..console import say

WINDOW_S = 0.25
# A window in which the loop waited for I/O less than 10 % of the time is a saturated one ...
SATURATED = 0.9
# ... and it takes this many in a row to store frames uncompressed: one long write is not a load.
SATURATED_WINDOWS = 2
# Storing takes about 0.65 of compressing's CPU per profile9 byte (recorder/bench/ingest.py):
# below 0.6 busy while storing, compressing fits under SATURATED again.
RELAXED = 0.6
# An operator hears of the load this often at most; the figures count every switch.
SAY_EVERY_S = 60.0


class LoopLoad(trio.abc.Instrument):
    """Times the event loop's waits for I/O; window() gives the busy share since the last call."""

    def __init__(self, clock=time.perf_counter):
        self._clock = clock
        self._waiting_since: float | None = None
        self._waited = 0.0
        self._window_started = clock()
        self.busy = 0.0

    def before_io_wait(self, timeout: float) -> None:
        self._waiting_since = self._clock()

    def after_io_wait(self, timeout: float) -> None:
        if self._waiting_since is not None:
            self._waited += self._clock() - self._waiting_since
            self._waiting_since = None

    def window(self) -> float:
        now = self._clock()
        elapsed = now - self._window_started
        if elapsed > 0:
            self.busy = min(1.0, max(0.0, 1.0 - self._waited / elapsed))
        self._waited, self._window_started = 0.0, now
        return self.busy


class Governor:
    """From the busy share of each window to whether the loop is saturated (no I/O)."""

    def __init__(self):
        self.saturated = False
        self._in_a_row = 0

    def observe(self, busy: float) -> bool:
        """Take one window's busy share; True if that changed `saturated`."""
        if self.saturated:
            if busy < RELAXED:
                self.saturated = False
                return True
            return False
        self._in_a_row = self._in_a_row + 1 if busy >= SATURATED else 0
        if self._in_a_row >= SATURATED_WINDOWS:
            self.saturated, self._in_a_row = True, 0
            return True
        return False


class LoadWatch:
    """The loop's load, and the RAW frames' mode it sets (a store's compression.RawImageMode)."""

    def __init__(self, raw_images, clock=time.monotonic):
        self.raw_images = raw_images
        self.load = LoopLoad()
        self.governor = Governor()
        self.switches = 0  # to saturated
        self._clock = clock
        self._said = -SAY_EVERY_S
        self._saying = False  # the operator was told of the saturation going on now

    async def run(self) -> None:
        trio.lowlevel.add_instrument(self.load)
        try:
            while True:
                await trio.sleep(WINDOW_S)
                self.observe(self.load.window())
        finally:
            trio.lowlevel.remove_instrument(self.load)

    def observe(self, busy: float) -> None:
        if not self.governor.observe(busy):
            return
        saturated = self.governor.saturated
        if self.raw_images.choice == "auto":
            self.raw_images.saturated = saturated
        if saturated:
            self.switches += 1
            now = self._clock()
            self._saying = now - self._said >= SAY_EVERY_S
            if self._saying:
                self._said = now
                say(f"the server has no CPU to spare (its event loop was busy {busy:.0%} of the time)"
                    + (": RAW camera frames are stored as they come, uncompressed, until it has"
                       if self.raw_images.choice == "auto" else ""))
        elif self._saying:
            say("the server has CPU to spare again"
                + (f"; {self.raw_images.frames_stored_under_load} RAW camera frames stored uncompressed so far"
                   if self.raw_images.choice == "auto" else ""))

    def status(self) -> dict:
        raw = self.raw_images
        return {"raw_images": raw.choice, "event_loop_busy": round(self.load.busy, 3),
                "saturated": self.governor.saturated, "saturated_times": self.switches,
                "raw_frames_stored_under_load": raw.frames_stored_under_load,
                "raw_bytes_stored_under_load": raw.bytes_stored_under_load}

    def metric_families(self):
        yield GaugeMetricFamily("recorder_event_loop_busy",
                                "Share of the last quarter second the event loop worked rather than waited "
                                "(added over workers: 1 per fully busy one)", value=self.load.busy)
        yield GaugeMetricFamily("recorder_event_loops_saturated", "Event loops with no time to spare",
                                value=int(self.governor.saturated))
        yield CounterMetricFamily("recorder_raw_frames_stored_under_load",
                                  "RAW camera frames stored uncompressed for want of CPU (--raw-images auto)",
                                  value=self.raw_images.frames_stored_under_load)
        yield CounterMetricFamily("recorder_raw_bytes_stored_under_load",
                                  "Bytes of RAW camera frames stored uncompressed for want of CPU",
                                  value=self.raw_images.bytes_stored_under_load)
