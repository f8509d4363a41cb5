"""The pause between a publisher's reads: every waiting connection wakes on one shared tick,
within the interval; with nobody waiting no tick is set at all."""

from __future__ import annotations

import trio

from recorder.rtmp.ticks import Ticks


async def test_waiters_wake_together_within_the_interval_and_idle_ticks_never_come(autojump_clock):
    ticks = Ticks(0.1)
    woke: list[float] = []

    async def waiter():
        await ticks.wait()
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticks.run)
        await trio.sleep(5.0)
        assert ticks.count == 0  # nobody waited
        start = trio.current_time()
        for _ in range(20):
            nursery.start_soon(waiter)
        await trio.sleep(0.5)
        assert len(woke) == 20 and len(set(woke)) == 1 and 0 < woke[0] - start <= 0.1
        assert ticks.count == 1  # and none since: nobody waits any more
        nursery.cancel_scope.cancel()


async def test_once_the_ticks_stop_nobody_waits_for_one():
    ticks = Ticks(3600)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticks.run)
            await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        await ticks.wait()
