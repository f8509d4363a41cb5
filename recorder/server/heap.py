"""Freed heap memory given back to the system now and then (glibc's malloc_trim).

A recorder runs for days while sessions come and go, and each one allocates and frees buffers
of every size (bodies, joined writes, compressed frames, Parquet pages). glibc keeps what was
freed in its arenas for reuse, and after a large buffer is freed it raises its threshold for
serving big allocations from those arenas instead of their own mappings; the arenas then
fragment, and a worker's resident memory kept growing for the first quarter of an hour of a soak
(+6.5 to +10 % over ten minutes at 50 devices) though no object outlived its session.
malloc_trim returns the free pages inside the arenas (not only the top of the heap) to the
system. It runs in a thread, not on the event loop, and only every TRIM_INTERVAL_S: the cost is
a walk over the free lists. Elsewhere than glibc there is no such call, and nothing is done.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

TRIM_INTERVAL_S = 10.0
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


MALLOC_TRIM = _malloc_trim()


def resident_bytes() -> int | None:
    """This process's resident memory (Linux's /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class HeapTrimmer:
    """What the trims did: how many, resident memory given back by them (measured around each
    call), and the time they took."""

    trims: int = 0
    released_bytes: int = 0
    seconds: float = 0.0

    def trim_once(self) -> None:
        if MALLOC_TRIM is None:
            return
        before, started = resident_bytes(), time.perf_counter()
        MALLOC_TRIM(0)
        self.seconds += time.perf_counter() - started
        after = resident_bytes()
        self.trims += 1
        if before is not None and after is not None:
            self.released_bytes += max(0, before - after)

    async def run(self, interval_s: float = TRIM_INTERVAL_S) -> None:
        while True:
            await trio.sleep(interval_s)
            await trio.to_thread.run_sync(self.trim_once)

    def status(self) -> dict:
        return {"resident_bytes": resident_bytes(), "trims": self.trims, "released_bytes": self.released_bytes,
                "trim_seconds": round(self.seconds, 3), "trim_available": MALLOC_TRIM is not None}

    def metric_families(self):
        resident = resident_bytes()
        if resident is not None:
            yield GaugeMetricFamily("recorder_resident_bytes", "Resident memory of the ingest processes",
                                    value=resident)
        yield CounterMetricFamily("recorder_heap_released_bytes",
                                  "Resident memory that trimming the C heap gave back to the system",
                                  value=self.released_bytes)
