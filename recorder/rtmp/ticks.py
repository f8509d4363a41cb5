"""One timer for many waiters: the publishers' connections pause between reads until the next
tick, all of them on the same one, instead of each setting a timer of its own (a timer per
read, ten a second per stream, was a tenth of the RTMP server's CPU at twenty streams).

Ticks come only while someone waits for one, so an idle server sets no timer at all.
"""

from __future__ import annotations

import trio


class Ticks:
    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._tick = trio.Event()
        self._wanted = trio.Event()
        self.count = 0  # ticks so far

    async def wait(self) -> None:
        """Until the next tick: at most interval_s."""
        self._wanted.set()
        await self._tick.wait()

    async def run(self) -> None:
        try:
            while True:
                await self._wanted.wait()
                await trio.sleep(self.interval_s)
                self._wanted = trio.Event()
                tick, self._tick = self._tick, trio.Event()
                self.count += 1
                tick.set()
        finally:
            self._tick.set()  # no more ticks: nobody may wait for one
