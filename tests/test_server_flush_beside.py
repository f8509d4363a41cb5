"""A body's flush runs beside its receiving: the bytes that come meanwhile are taken (a device is
not left unread while its files sync), their write waits for the flush, and every record reads
back as sent. Driven here without a socket, on a real store, so that "meanwhile" is exact."""

from __future__ import annotations

import errno
import time

import pytest
import trio
from disk_support import mounted_tmpfs, take_free_space
from server_support import assert_session_equals, make_windows
from storage_support import expected_from

from recorder.server.ingest import BodyIngest
from recorder.server.live import LiveSession
from recorder.sim.fleet import make_fleet
from recorder.storage.store import Store


def receiving(data_dir, seed: int, windows: int):
    """A device's first `windows` bodies, and a body being received into its session on a real
    store, every write due (coalesce_bytes 1) and flushed (flush_interval_s 0)."""
    device = make_fleet(1, seed=seed, profile="mp_streaming_demo")[0]
    writer = Store(data_dir).open_writer(device.serial, device.session_id)
    writer.begin_request(device.headers(), "10.0.0.2:5555", time.time_ns())
    session = LiveSession(device.serial, device.session_id, writer, resumed=False)
    return device, make_windows(device, windows), BodyIngest(session, coalesce_bytes=1, flush_interval_s=0.0)


async def end_and_read_back(data_dir, device, windows, body) -> None:
    """The request ended, the session closed; every record of `windows` reads back as sent."""
    writer = body.session.writer
    with trio.fail_after(30):
        await trio.to_thread.run_sync(writer.end_request, body.counters, time.time_ns())
        await trio.to_thread.run_sync(writer.close)
    assert_session_equals(data_dir / device.serial / device.session_id, expected_from(windows))


async def test_bytes_after_a_flush_are_taken_while_it_runs_and_written_after_it(tmp_path):
    device, windows, body = receiving(tmp_path, seed=5, windows=6)
    session = body.session
    flushed_at = session.last_flush
    async with trio.open_nursery() as flushes:
        body.flushes = flushes
        await body.add(windows[0], True, True)  # written, and its flush started
        assert session.last_flush == flushed_at  # ... and not waited for
        body.coalesce_bytes = 1 << 30  # the next bytes gather
        for window in windows[1:3]:
            await body.add(window, True, True)
        assert session.last_flush == flushed_at and body.pending == sum(map(len, windows[1:3]))
        await body.write()  # waits for the flush under way, then writes, and flushes beside again
        assert session.last_flush > flushed_at and body.pending == 0
        for window in windows[3:]:
            await body.add(window, True, True)
        await body.write(final=True)
        body.flushes = None
    await end_and_read_back(tmp_path, device, windows, body)


async def test_without_a_nursery_for_it_a_flush_is_waited_for(tmp_path):
    """As after a body has ended (its final write): nothing is left running."""
    device, windows, body = receiving(tmp_path, seed=6, windows=2)
    flushed_at = body.session.last_flush
    await body.add(windows[0], True, True)
    assert body.session.last_flush > flushed_at
    await body.add(windows[1], True, True)
    await body.write(final=True)
    await end_and_read_back(tmp_path, device, windows, body)


async def test_a_flush_the_full_disk_fails_is_raised_at_the_next_write(tmp_path):
    """The receiving goes on while the flush runs; its failure is not lost but comes out of the
    body's next write, where the server answers a storage error as before."""
    with mounted_tmpfs(tmp_path / "disk", "16m") as disk:
        _, windows, body = receiving(disk, seed=7, windows=2)
        async with trio.open_nursery() as flushes:
            body.flushes = flushes
            await body.add(windows[0], True, True)  # written; its flush not yet run ...
            take_free_space(disk / "filler")  # ... when the disk fills up
            body.coalesce_bytes = 1 << 30
            await body.add(windows[1], True, True)  # taken meanwhile: its write waits
            with pytest.raises(OSError) as failed:
                await body.write()
            body.flushes = None
        assert body.pending == len(windows[1])  # not written after the failed flush
        assert failed.value.errno == errno.ENOSPC
        await trio.to_thread.run_sync(body.session.writer.close)
