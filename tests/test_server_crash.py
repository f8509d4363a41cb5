"""kill -9 of `recorder serve` while a device streams in real time: once the server is started
again (it recovers unfinished sessions first) the session holds everything sent more than a
second before the kill, exactly as sent, in files any Parquet reader opens; the device then
reconnects and continues the same session with no gap."""

from __future__ import annotations

import signal

import trio
from server_support import (
    PERIOD,
    ServerProcess,
    assert_folders_read_as_datasets,
    assert_session_equals,
    assert_stored_part,
    make_windows,
    post_windows,
    records_in,
    session_folders,
)
from storage_support import expected_from

from recorder import open_session
from recorder.sim.fleet import make_fleet

STREAMED = 20  # windows the device has before the kill: 4 s of data, paced in real time
KILL_AFTER_S = 3.0
MORE = 10  # windows the device sends after it reconnects
GUARANTEE_S = 1.0  # at most the last second may be lost


async def test_kill_9_during_ingest_then_recovery_loses_at_most_the_last_second(tmp_path):
    data_dir = tmp_path / "data"
    first = ServerProcess(data_dir, tmp_path / "serve-1.log")
    await first.start()
    device = make_fleet(2, seed=4, profile="mp_streaming_demo")[1]
    windows = make_windows(device, STREAMED)
    sent_at: list[float] = []

    async def stream():
        try:
            await post_windows(first.url, None, device.headers(), windows, pace=PERIOD, sent_at=sent_at)
        except (OSError, trio.BrokenResourceError, ConnectionError) as exc:
            stream.error = exc

    stream.error = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream)
            await trio.sleep(KILL_AFTER_S)
            first.send_signal(signal.SIGKILL)
            killed_at = trio.current_time()
            assert await first.wait() == -signal.SIGKILL
    finally:
        await first.aclose()
    assert stream.error is not None, "the request should have been cut off by the kill"
    sent = len([t for t in sent_at if t <= killed_at])
    safe = len([t for t in sent_at if t < killed_at - GUARANTEE_S])
    assert 5 <= safe < sent < STREAMED, (safe, sent)

    (path,) = session_folders(data_dir)
    assert path == data_dir / device.serial / device.session_id
    with open_session(path) as reader:
        assert reader.manifest["state"] == "recording"  # the crash left it open

    second = ServerProcess(data_dir, tmp_path / "serve-2.log", port=first.port)
    await second.start()
    try:
        assert "recovered unfinished session" in second.output and str(path) in second.output, second.output
        with open_session(path) as reader:
            assert reader.manifest["state"] == "recovered"
        # Every record of a window sent more than a second before the kill is stored, as sent;
        # whatever else is stored is also exactly as sent, and nothing twice.
        kept = assert_stored_part(path, expected_from(windows[:sent]), at_least_through=records_in(windows[:safe]) - 1)
        assert_folders_read_as_datasets(path)

        # The device reconnects: resends what it cannot know arrived (the last second), goes on.
        more = [device.window(k * PERIOD, (k + 1) * PERIOD) for k in range(STREAMED, STREAMED + MORE)]
        status, reply = await post_windows(second.url, None, device.headers(), windows[safe:] + more)
        assert status == 200, reply
        assert reply["gaps"] == 0
        assert reply["resends"] == len(kept) - records_in(windows[:safe])
        assert reply["highest_sequence"] == device.records_sent - 1
        second.send_signal(signal.SIGTERM)
        assert await second.wait() == 0
    finally:
        await second.aclose()

    assert session_folders(data_dir) == [path]
    manifest = assert_session_equals(path, expected_from(windows + more), records=device.records_sent)
    assert manifest["state"] == "finished"
    assert manifest["counters"]["gaps"] == 0
    assert_folders_read_as_datasets(path)
