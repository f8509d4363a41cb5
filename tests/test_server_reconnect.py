"""A device reconnects and resends what it is not sure arrived: every record is stored once, and
the session equals the whole body it sent."""

from __future__ import annotations

import json

import numpy as np
import trio
from server_support import assert_session_equals, get, make_windows, post_windows, records_in, stored_sequences
from storage_support import assert_session_matches, expected_from

from recorder import open_session
from recorder.sim import sender
from recorder.sim.fleet import make_fleet

WINDOWS = 10
FIRST = slice(0, 6)
SECOND = slice(4, 10)  # windows 4 and 5 are resent


def device_and_windows():
    device = make_fleet(2, seed=8, profile="profile9")[1]
    return device, make_windows(device, WINDOWS)


async def session_status(server, client_ssl, device) -> dict | None:
    reply = await get(server.url, "/status", client_ssl)
    assert reply.status == 200
    return next((s for s in reply.json["sessions"] if s["device"] == device.serial), None)


async def wait_for_records(server, client_ssl, device, records: int, timeout: float = 5.0) -> dict:
    """The server's /status for the session once it has written `records` (fails after timeout)."""
    status = None
    with trio.move_on_after(timeout):
        while True:
            status = await session_status(server, client_ssl, device)
            if status and status["records"] >= records and status["state"] == "waiting":
                return status
            await trio.sleep(0.05)
    raise AssertionError(f"after {timeout} s the server holds {status and status['records']} of the {records} "
                         f"records the first connection carried (session state {status and status['state']})")


async def second_connection(server, client_ssl, device, windows) -> None:
    status, reply = await post_windows(server.url, client_ssl, device.headers(), windows[SECOND])
    assert status == 200, reply
    assert reply["status"] == "ok"
    # Windows 4 and 5 reached the server on the first connection: all their records are resends.
    assert reply["resends"] == records_in(windows[4:6]) > 0
    assert reply["records"] == records_in(windows[6:10])
    assert reply["gaps"] == 0
    assert reply["highest_sequence"] == device.records_sent - 1
    await server.stop()

    path = server.session_path(device.serial, device.session_id)
    manifest = assert_session_equals(path, expected_from(windows), records=device.records_sent)
    assert manifest["state"] == "finished"
    assert manifest["highest_sequence"] == device.records_sent - 1
    assert manifest["counters"]["gaps"] == 0
    assert manifest["counters"]["resends"] == records_in(windows[4:6])
    assert manifest["requests"] == 2
    assert [p.name for p in (server.data_dir / device.serial).iterdir()] == [device.session_id]


async def test_a_reconnect_after_a_finished_request_stores_resends_once(server, client_ssl):
    device, windows = device_and_windows()
    status, reply = await post_windows(server.url, client_ssl, device.headers(), windows[FIRST])
    assert status == 200 and (reply["resends"], reply["gaps"]) == (0, 0)
    assert reply["records"] == records_in(windows[FIRST])
    await second_connection(server, client_ssl, device, windows)


async def test_a_reconnect_after_the_connection_dropped_mid_request_stores_resends_once(server, client_ssl):
    """The first connection ends in the middle of its request (the device lost it after sending
    windows 0-5 whole); the device reconnects and resends from window 4. Everything the first
    connection carried is kept, and the session waits for the reconnect."""
    device, windows = device_and_windows()
    conn = await sender.Connection.open(sender.Target.parse(server.url), client_ssl)
    await conn.start("/", device.headers())
    for body in windows[FIRST]:
        await conn.send(body)
    await conn.aclose()  # no final chunk: the request is cut off
    await wait_for_records(server, client_ssl, device, records_in(windows[FIRST]), timeout=3.0)
    await second_connection(server, client_ssl, device, windows)


async def test_a_reconnect_replacing_a_stale_connection_stores_resends_once(start_server, client_ssl):
    """The first connection stays open but silent (half-open after a network change) while the
    device reconnects on a new one and resends from window 4. What the server had received on
    the old connection is kept. (The server here gathers up to 5 s or 64 MiB before writing, so
    that the takeover finds received data not yet written.)"""
    server = await start_server(flush_interval_s=5.0, coalesce_bytes=64 << 20)
    device, windows = device_and_windows()
    conn = await sender.Connection.open(sender.Target.parse(server.url), client_ssl)
    try:
        await conn.start("/", device.headers())
        for body in windows[FIRST]:
            await conn.send(body)
        await trio.sleep(1.0)  # received by the server, not yet written
        await second_connection(server, client_ssl, device, windows)
    finally:
        await trio.aclose_forcefully(conn.stream)


async def test_a_device_reconnecting_after_its_session_was_finalised_continues_it(start_server, client_ssl):
    """The device comes back after the session's grace ran out and the server finalised it: the
    same session goes on in the same folder (storage resumes a finished session), no gap."""
    server = await start_server(session_grace_s=0.5)
    device, windows = device_and_windows()
    status, reply = await post_windows(server.url, client_ssl, device.headers(), windows[:5])
    assert status == 200 and reply["records"] == records_in(windows[:5])
    with trio.fail_after(5):
        while (await session_status(server, client_ssl, device))["state"] != "finished":
            await trio.sleep(0.1)
    path = server.session_path(device.serial, device.session_id)
    assert json.loads((path / "session.json").read_text())["state"] == "finished"

    status, reply = await post_windows(server.url, client_ssl, device.headers(), windows[5:])
    assert status == 200, reply
    assert (reply["records"], reply["gaps"], reply["resends"]) == (records_in(windows[5:]), 0, 0)
    await server.stop()
    manifest = assert_session_equals(path, expected_from(windows), records=device.records_sent)
    assert manifest["state"] == "finished" and manifest["requests"] == 2 and manifest["counters"]["gaps"] == 0
    assert [p.name for p in (server.data_dir / device.serial).iterdir()] == [device.session_id]


async def test_a_silent_connection_is_closed_after_the_idle_timeout_and_the_device_resumes(start_server, client_ssl):
    """The device stops sending mid-request without closing: after idle_timeout the server ends
    the connection, keeps everything it carried, and the device's reconnect resends from 4."""
    server = await start_server(idle_timeout_s=1.0)
    device, windows = device_and_windows()
    conn = await sender.Connection.open(sender.Target.parse(server.url), client_ssl)
    try:
        await conn.start("/", device.headers())
        for body in windows[FIRST]:
            await conn.send(body)
        await wait_for_records(server, client_ssl, device, records_in(windows[FIRST]))
        await second_connection(server, client_ssl, device, windows)
    finally:
        await trio.aclose_forcefully(conn.stream)


async def test_many_first_requests_of_one_session_at_once_make_one_session_stored_once(start_server, client_ssl):
    """A bridge retrying in a hurry, or a device with several connections, sends the first
    request of a new session many times at once: requests attach one at a time, each later one
    takes the session over from the one before (which keeps what it received), none gets an
    error, and the session holds every record once."""
    server = await start_server()
    device, windows = device_and_windows()
    outcomes: list = []

    async def send_all_windows():
        try:
            outcomes.append(await post_windows(server.url, client_ssl, device.headers(), windows))
        except (OSError, trio.BrokenResourceError, ConnectionError, sender.SendError) as exc:
            outcomes.append(exc)  # taken over: closed without an answer, as a reconnect does to it

    async with trio.open_nursery() as nursery:
        for _ in range(16):
            nursery.start_soon(send_all_windows)
    answered = [o for o in outcomes if isinstance(o, tuple)]
    assert answered and all(status == 200 for status, _ in answered), answered
    await server.stop()
    path = server.session_path(device.serial, device.session_id)
    with open_session(path) as reader:
        # A connection taken over mid-record keeps that record's first bytes, as any body cut
        # short does: verbatim, marked truncated, beside the whole record its successor stored.
        verbatim = reader.table("verbatim", columns=["reason", "sequence"]) if "verbatim" in reader.streams() \
            else None
        assert_session_matches(reader, expected_from(windows))
        stored = stored_sequences(reader)
        assert len(stored) == len(np.unique(stored)) == device.records_sent, "every record once"
        assert reader.manifest["state"] == "finished"
        if verbatim is not None:
            assert set(verbatim.column("reason").to_pylist()) == {"truncated"}
            assert set(verbatim.column("sequence").to_numpy()) <= set(stored)
    assert [p.name for p in (server.data_dir / device.serial).iterdir()] == [device.session_id]
