"""A server that runs for days keeps only its recent sessions in memory and in /status: a
finished session leaves them after keep_finished_s, stays on disk (recorder ls lists it), and a
device coming back later continues it."""

from __future__ import annotations

import sys
from pathlib import Path

import trio
from server_support import assert_session_equals, get, make_windows, post_windows, records_in
from storage_support import expected_from

from recorder.sim.fleet import make_fleet

RECORDER = str(Path(sys.executable).with_name("recorder"))


async def until_none_listed(server, client_ssl) -> tuple[dict, bool]:
    """/status once it lists no session, and whether it listed one as finished meanwhile."""
    seen_finished = False
    with trio.fail_after(10):  # finalised after 0.2 s, gone 0.5 s later (housekeeping: once a second)
        while True:
            live = (await get(server.url, "/status", client_ssl)).json
            seen_finished |= any(s["state"] == "finished" for s in live["sessions"])
            if not live["sessions"]:
                return live, seen_finished
            await trio.sleep(0.1)


async def test_a_finished_session_leaves_the_live_status_and_a_device_coming_back_continues_it(
        start_server, client_ssl):
    server = await start_server(session_grace_s=0.2, keep_finished_s=0.5)
    device = make_fleet(1, seed=21, profile="mp_streaming_demo")[0]
    windows = make_windows(device, 6)
    status, _ = await post_windows(server.url, client_ssl, device.headers(), windows[:3])
    assert status == 200
    live, seen_finished = await until_none_listed(server, client_ssl)
    assert seen_finished
    assert live["finished_earlier"] == {"sessions": 1, "records": records_in(windows[:3]),
                                        "bytes": sum(map(len, windows[:3]))}
    metrics = (await get(server.url, "/metrics", client_ssl)).body.decode()
    assert device.session_id not in metrics and "recorder_sessions 0.0" in metrics
    listed = await trio.run_process([RECORDER, "ls", str(server.data_dir)], capture_stdout=True)
    assert device.session_id in listed.stdout.decode()

    status, reply = await post_windows(server.url, client_ssl, device.headers(), windows[3:])
    assert status == 200 and reply["records"] == records_in(windows[3:]) and reply["resends"] == 0
    # It left the live status a second time: still one session finished earlier, with everything.
    live, _ = await until_none_listed(server, client_ssl)
    assert live["finished_earlier"] == {"sessions": 1, "records": records_in(windows),
                                        "bytes": sum(map(len, windows))}
    await server.stop()
    manifest = assert_session_equals(server.session_path(device.serial, device.session_id), expected_from(windows),
                                     records=device.records_sent)
    assert manifest["state"] == "finished" and manifest["requests"] == 2
