"""Which samples a window holds, and how they are cut into records.

Sample k of a stream at `rate_hz` is captured at run time floor(k * 1e9 / rate_hz) ns. A device
sends one record per stream per batch period (periods start at run time 0), holding the samples
captured in that period; without a period every sample is a record of its own. A record belongs
to the window in which its first sample was captured, so a window is whole records and the
records of consecutive windows follow each other however the run is cut into windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NS = 10**9


def capture_ns(index, rate_hz: int) -> np.ndarray:
    """Run time of sample(s) `index`, integer ns."""
    return np.asarray(index, np.int64) * NS // rate_hz


def first_index_at(t_ns: int, rate_hz: int) -> int:
    """The first sample captured at or after run time t_ns."""
    return -((-t_ns * rate_hz) // NS)


@dataclass(frozen=True)
class Span:
    """Samples first .. first + counts.sum() - 1, in records of counts[i] samples."""

    first: int
    counts: np.ndarray

    @property
    def indices(self) -> np.ndarray:
        return np.arange(self.first, self.first + int(self.counts.sum()), dtype=np.int64)

    def by_count(self):
        """(count, mask over samples) per distinct record size: records of one size are built together."""
        for count in np.unique(self.counts):
            yield int(count), np.repeat(self.counts == count, self.counts)


def span(rate_hz: int, period_ns: int | None, t0_ns: int, t1_ns: int) -> Span:
    lo, hi = first_index_at(t0_ns, rate_hz), first_index_at(t1_ns, rate_hz)
    if period_ns is None:
        return Span(lo, np.ones(max(hi - lo, 0), np.int64))

    def batch_start(k: int) -> int:
        """The first sample of the earliest batch that starts at sample k or later."""
        batch = (k * NS // rate_hz) // period_ns
        start = first_index_at(batch * period_ns, rate_hz)
        return k if start == k else first_index_at((batch + 1) * period_ns, rate_hz)

    lo, hi = batch_start(lo), batch_start(hi)
    if hi <= lo:
        return Span(lo, np.zeros(0, np.int64))
    batches = capture_ns(np.arange(lo, hi), rate_hz) // period_ns
    _, counts = np.unique(batches, return_counts=True)
    return Span(lo, counts.astype(np.int64))
