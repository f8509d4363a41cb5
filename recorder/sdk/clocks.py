"""One device's clock on the replay's timeline: the broadcaster's clock, through the device's
time domain mapping (as Session.to_broadcaster_time maps it), or the device's own clock when it
reported no mapping (the broadcaster itself, or an unsynchronised device).

The mapping samples are read once; each slice of the replay is then mapped without touching
the disk. A timeline window maps back to a device window that is certain to hold every row
whose mapped time is inside it (offsets are interpolated, so they stay between the smallest and
the largest sample); rows are then kept by their exact mapped time.
"""

from __future__ import annotations

import numpy as np

from ..reading import Session
from ..storage.timemap import to_broadcaster_time


class DeviceClock:
    def __init__(self, session: Session):
        tdm = session.tdm()
        self.capture = tdm.column("capture_timestamp_ns").to_numpy() if tdm.num_rows else np.array([], np.int64)
        self.offset = tdm.column("offset_ns").to_numpy() if tdm.num_rows else np.array([], np.int64)
        self.mapped = bool(len(self.capture))

    def to_timeline(self, t_ns) -> np.ndarray:
        t = np.asarray(t_ns, np.int64)
        return to_broadcaster_time(t, self.capture, self.offset) if self.mapped else t.copy()

    def device_window(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """Device times [lo, hi) covering every row whose timeline time is in [start_ns, end_ns)."""
        if not self.mapped:
            return start_ns, end_ns
        return start_ns - int(self.offset.max()) - 1, end_ns - int(self.offset.min()) + 1
