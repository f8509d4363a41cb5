"""A device's own clock: nanoseconds since it booted, running slightly fast or slow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import noise

MIN_UPTIME_S = 5 * 60
MAX_UPTIME_S = 6 * 3600
MAX_DRIFT_PPM = 30.0


@dataclass(frozen=True)
class DeviceClock:
    boot_offset_ns: int  # the device's clock when the run started: it has been up for a while
    drift_ppm: float

    @classmethod
    def for_device(cls, seed: int, index: int) -> DeviceClock:
        rng = noise.rng(seed, index, "clock")
        return cls(int(rng.uniform(MIN_UPTIME_S, MAX_UPTIME_S) * 1e9), float(rng.uniform(-MAX_DRIFT_PPM, MAX_DRIFT_PPM)))

    def at_ns(self, run_ns):
        """The clock at run time(s) `run_ns` (integer nanoseconds since the run's start), as int64."""
        run_ns = np.asarray(run_ns, np.int64)
        return self.boot_offset_ns + run_ns + np.rint(run_ns * (self.drift_ppm * 1e-6)).astype(np.int64)

    def clock_ns(self, t_s: float) -> int:
        return int(self.at_ns(round(t_s * 1e9)))
