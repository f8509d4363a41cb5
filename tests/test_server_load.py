"""--raw-images auto: a server whose event loop has no time to spare stores RAW camera frames as
they come, and compresses them again once it has; every frame reads back as it was sent either
way. The load is made for real: a task in the server's own event loop that keeps it busy."""

from __future__ import annotations

import time

import pytest
import trio
from server_support import assert_session_equals, get, make_windows, post_windows
from storage_support import expected_from

from recorder import open_session
from recorder.server.loopload import RELAXED, SATURATED, SATURATED_WINDOWS, Governor, LoopLoad
from recorder.sim.fleet import make_fleet
from recorder.storage.blobfile import rows_filter_of

SLAM = ("slam-front-left", "slam-front-right", "slam-side-left", "slam-side-right")


def stored_frames(session, stream: str) -> list[tuple[bytes, bytes]]:
    """(the frame as the blob file holds it, the image it reads back as) for every row."""
    with open_session(session) as reader:
        rows = reader.table(stream).to_pylist()
        images = [reader.blob(stream, i) for i in range(len(rows))]
    return [((session / stream / row["file"]).read_bytes()[row["offset"]:row["offset"] + row["length"]], image)
            for row, image in zip(rows, images, strict=True)]


class Busy:
    """Keeps the event loop it runs in from ever waiting for I/O (as a flood of devices would),
    while every other task still gets its turns."""

    def __init__(self):
        self.scope = trio.CancelScope()

    async def run(self, longest_s: float = 60.0) -> None:
        with self.scope:
            self.scope.deadline = trio.current_time() + longest_s  # a test that failed stops it too
            while True:
                time.sleep(0.005)  # noqa: ASYNC251 -- holding the loop is the point: as decoding does
                await trio.lowlevel.checkpoint()


async def load_status(server, client_ssl) -> dict:
    reply = await get(server.url, "/status", client_ssl)
    assert reply.status == 200
    return reply.json["load"]


async def wait_for_load(server, client_ssl, saturated: bool) -> dict:
    with trio.fail_after(20):
        while (load := await load_status(server, client_ssl))["saturated"] != saturated:
            await trio.sleep(0.1)
    return load


async def record(server, client_ssl, device, windows) -> None:
    status, reply = await post_windows(server.url, client_ssl, device.headers(), windows)
    assert status == 200, reply


async def test_a_busy_server_stores_raw_frames_as_they_come_then_compresses_them_again(
        start_server, nursery, client_ssl, capfd):
    server = await start_server()
    assert (await load_status(server, client_ssl))["raw_images"] == "auto"
    device = make_fleet(1, seed=41, profile="profile9")[0]
    windows = make_windows(device, 4)
    busy = Busy()
    nursery.start_soon(busy.run)
    load = await wait_for_load(server, client_ssl, saturated=True)
    assert load["event_loop_busy"] >= SATURATED and load["saturated_times"] == 1
    await record(server, client_ssl, device, windows[:2])
    busy.scope.cancel()
    await wait_for_load(server, client_ssl, saturated=False)
    await record(server, client_ssl, device, windows[2:])  # the same session, its second request
    metrics = (await get(server.url, "/metrics", client_ssl)).body.decode()
    load = await load_status(server, client_ssl)
    await server.stop()

    (session,) = [p for p in server.data_dir.glob("*/*") if p.is_dir()]
    assert_session_equals(session, expected_from(windows))
    counted = 0
    for stream in SLAM:
        frames = stored_frames(session, stream)
        filtered = [rows_filter_of(stored) is not None for stored, _ in frames]
        # Those of the first request came as they are, those of the second with the rows filter.
        assert filtered == sorted(filtered) and 0 < sum(filtered) < len(filtered), (stream, filtered)
        assert all(len(image) < len(stored) < len(image) + 64 for (stored, image), f in zip(frames, filtered, strict=True)
                   if not f)
        counted += len(filtered) - sum(filtered)
    assert load["raw_frames_stored_under_load"] == counted
    assert load["raw_bytes_stored_under_load"] == counted * 512 * 512
    assert f"recorder_raw_frames_stored_under_load_total {float(counted)}" in metrics
    assert "recorder_event_loop_busy " in metrics
    console = capfd.readouterr().out
    assert "no CPU to spare" in console and "CPU to spare again" in console
    assert f"{counted} RAW camera frames ({counted * 512 * 512 / 1e6:.1f} MB) were stored uncompressed" in console


async def test_raw_images_compress_compresses_on_a_busy_server_too(start_server, nursery, client_ssl):
    server = await start_server(raw_images="compress")
    device = make_fleet(1, seed=42, profile="profile9")[0]
    windows = make_windows(device, 2)
    busy = Busy()
    nursery.start_soon(busy.run)
    await wait_for_load(server, client_ssl, saturated=True)
    await record(server, client_ssl, device, windows)
    load = await load_status(server, client_ssl)
    busy.scope.cancel()
    await server.stop()
    (session,) = [p for p in server.data_dir.glob("*/*") if p.is_dir()]
    assert_session_equals(session, expected_from(windows))
    assert all(rows_filter_of(stored) is not None for stream in SLAM for stored, _ in stored_frames(session, stream))
    assert load["raw_images"] == "compress" and load["raw_frames_stored_under_load"] == 0


def test_the_governor_waits_for_saturation_in_a_row_and_for_room_to_compress_before_going_back():
    governor = Governor()
    changes = [governor.observe(b) for b in (0.99, 0.5, 0.99, 0.2)]  # never twice in a row
    assert changes == [False] * 4 and not governor.saturated
    changes = [governor.observe(SATURATED) for _ in range(SATURATED_WINDOWS)]
    assert changes == [False] * (SATURATED_WINDOWS - 1) + [True] and governor.saturated
    # Storing is cheaper, so the load falls; it must fall below RELAXED for compressing to fit again.
    assert not governor.observe(0.8) and not governor.observe(RELAXED) and governor.saturated
    assert governor.observe(RELAXED - 0.01) and not governor.saturated
    assert not governor.observe(0.99) and not governor.saturated  # starts counting again


@pytest.mark.parametrize("waits, busy", [((), 1.0), (((1.0, 4.0),), 0.25), (((0.0, 1.0), (2.0, 3.5)), 0.375)])
def test_the_loop_load_is_the_share_of_the_window_not_spent_waiting(waits, busy):
    now = [0.0]
    load = LoopLoad(clock=lambda: now[0])
    for start, end in waits:
        now[0] = start
        load.before_io_wait(1.0)
        now[0] = end
        load.after_io_wait(1.0)
    now[0] = 4.0
    assert load.window() == pytest.approx(busy, abs=1e-12)
    now[0] = 8.0  # a window with no waits at all: the next is measured from the last
    assert load.window() == 1.0
