"""MP4 needs strictly increasing decoding times (DTS) per track; what comes in need not have them
(FLV's millisecond timestamps clamped where a sender went backwards, two camera frames mapped
onto the same microsecond). Shared by the RTMP remux and the MP4 export."""

from __future__ import annotations

from collections.abc import Hashable


class IncreasingDts:
    """A DTS that does not increase becomes the track's previous DTS + 1 tick, and its PTS at
    least that; `adjusted` counts the packets moved."""

    def __init__(self):
        self._last: dict[Hashable, int] = {}
        self.adjusted = 0

    def __call__(self, track: Hashable, dts: int, pts: int) -> tuple[int, int]:
        last = self._last.get(track)
        if last is not None and dts <= last:
            dts = last + 1
            self.adjusted += 1
        self._last[track] = dts
        return dts, max(pts, dts)
