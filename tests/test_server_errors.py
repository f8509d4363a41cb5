"""Requests the server cannot accept get a clear JSON error (400, 405, 431, 503, 507), and a
device streaming meanwhile keeps recording, complete and clean."""

from __future__ import annotations

import json
import signal
import uuid

import h11
import pytest
import trio
from disk_support import mounted_tmpfs, take_free_space
from server_support import (
    PERIOD,
    Reply,
    ServerProcess,
    assert_json_error,
    assert_session_equals,
    get,
    make_windows,
    open_stream,
    read_response,
    records_in,
    request,
    session_folders,
    stream_until_answered,
)
from storage_support import expected_from

from recorder import open_session
from recorder.sim.fleet import make_fleet

MIB = 1 << 20


def small_body() -> bytes:
    """A short valid version-1 body (a tenth of a second of one device)."""
    return make_fleet(1, seed=99, profile="mp_streaming_demo")[0].window(0.0, 0.1)


def ids(serial: str = "ERRDEVICE01") -> dict[str, str]:
    return {"session-id": str(uuid.uuid4()), "device-serial": serial}


async def test_bad_requests_get_clear_errors_while_a_device_keeps_recording(server, client_ssl):
    fleet_args = dict(seed=31, profile="profile9")
    device = make_fleet(2, **fleet_args)[1]
    windows = make_windows(device, 20)  # 4 s, made beforehand: the test's trio loop also runs the server
    report = []
    done = trio.Event()

    async def stream_in_real_time():
        try:
            report.append(await stream_until_answered(server.url, client_ssl, device.headers(), windows, pace=PERIOD))
        finally:
            done.set()

    async def post(headers: dict, body: bytes = b"", **kwargs) -> Reply:
        reply = await request(server.url, headers=headers, body=body, ssl_context=client_ssl, chunked=True, **kwargs)
        assert not done.is_set(), "the bad requests should all happen while the device streams"
        return reply

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream_in_real_time)
        await trio.sleep(0.5)
        body = small_body()

        # 400: the session and device headers.
        assert_json_error(await post({"device-serial": "ERRDEVICE01"}, body), 400, "missing session-id")
        assert_json_error(await post({"session-id": "not-a-uuid", "device-serial": "ERRDEVICE01"}, body),
                          400, "session-id", "not a UUID")
        assert_json_error(await post({"session-id": str(uuid.uuid4())}, body), 400, "missing device-serial")
        assert_json_error(await post(ids("bad serial!"), body), 400, "device-serial", "A-Z a-z 0-9 . _ -")
        assert_json_error(await post(ids("S" * 65), body), 400, "device-serial", "1 to 64")
        assert_json_error(await post(ids("../escape"), body), 400, "device-serial")

        # 431: headers larger than the server takes; a 1 MiB calibration header is taken.
        huge = {**ids("ERRDEVICE02"), "oatmeal-calibration": "x" * (5 * MIB)}
        assert_json_error(await post(huge, body), 431, "headers", "larger")
        calibration = json.dumps({"CameraCalibrations": [], "DeviceClassInfo": {"BuildVersion": "test"},
                                  "Padding": "p" * MIB}, separators=(",", ":"))
        big = {**ids("BIGCALIBRATION"), "oatmeal-calibration": calibration}
        reply = await post(big, body)
        assert reply.status == 200 and reply.json["status"] == "ok", reply
        assert reply.json["records"] == records_in([body])
        boundary = ids("S" * 64)  # the longest serial there may be
        reply = await post(boundary, body)
        assert reply.status == 200 and reply.json["records"] == records_in([body]), reply

        # 405: the ingest path takes POST only; a GET of a page that does not exist is a 404.
        for method, path in [("PUT", "/"), ("DELETE", "/")]:
            reply = await request(server.url, method, path, headers=ids(), body=body if method == "PUT" else b"",
                                  ssl_context=client_ssl)
            assert_json_error(reply, 405, "POST", method)
        for path in ("/", "/some/ingest/path"):
            reply = await request(server.url, "GET", path, headers=ids(), ssl_context=client_ssl)
            assert_json_error(reply, 404, "no such page", "/status", "POST")
        assert_json_error(await request(server.url, "POST", "/status", ssl_context=client_ssl), 405, "GET")
        assert not done.is_set()
    await server.stop()

    # The device that streamed meanwhile: complete and clean.
    ((reply, sent),) = report
    assert reply.status == 200 and sent == len(windows), reply
    assert (reply.json["gaps"], reply.json["resends"], reply.json["corrupt_bytes"], reply.json["malformed"]) == (
        0, 0, 0, 0)
    assert reply.json["records"] == device.records_sent
    twin = make_fleet(2, **fleet_args)[1]
    expected = expected_from(make_windows(twin, len(windows)))
    path = server.session_path(device.serial, device.session_id)
    manifest = assert_session_equals(path, expected, records=device.records_sent)
    assert manifest["state"] == "finished"
    assert manifest["requests"] == 1
    counters = {k: v for k, v in manifest["counters"].items() if v}
    assert counters.keys() == {"records", "samples", "blobs", "bytes"}, counters  # no gaps, resends, corruption
    assert counters["records"] == device.records_sent and counters["bytes"] == sum(map(len, windows))

    # Refused requests left nothing behind; the accepted ones are stored with their headers.
    assert sorted(p.name for p in server.data_dir.iterdir()) == sorted([device.serial, "BIGCALIBRATION", "S" * 64])
    with open_session(server.session_path("BIGCALIBRATION", big["session-id"])) as reader:
        assert reader.calibration_bytes == calibration.encode()
        assert reader.calibration["DeviceClassInfo"] == {"BuildVersion": "test"}
    assert (server.data_dir / ("S" * 64) / boundary["session-id"] / "session.json").exists()


def mid_request(windows):
    """The windows, then nothing more: the device is mid-request, its data just received."""
    yield from windows
    while True:
        yield b""


async def stop_mid_request(stop, sent_at: list, windows: list) -> None:
    """Stop the server 0.15 s after the last window went out: received, not yet written (the
    server writes what has waited 0.5 s)."""
    while len(sent_at) < len(windows):
        await trio.sleep(0.01)
    await trio.sleep(0.15)
    await stop()


def assert_finalised_with_everything(path, device, windows) -> None:
    manifest = assert_session_equals(path, expected_from(windows), records=device.records_sent)
    assert manifest["state"] == "finished"
    with open_session(path) as reader:
        (req,) = reader.requests()
        assert req["end"]["counters"]["records"] == device.records_sent


async def test_cancelling_serve_mid_request_answers_503_and_keeps_what_was_received(server, client_ssl):
    """serve() stopped by cancellation (as when it is embedded, or here by the test's nursery)
    does what a signal does: the device gets 503, everything received is written, the session
    is finalised."""
    device = make_fleet(2, seed=32, profile="mp_streaming_demo")[1]
    windows = make_windows(device, 5)
    sent_at: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_mid_request, server.stop, sent_at, windows)
        reply, _ = await stream_until_answered(server.url, client_ssl, device.headers(), mid_request(windows),
                                               pace=0.05, sent_at=sent_at)
        assert_json_error(reply, 503, "shutting down", "reconnect")
    assert_finalised_with_everything(server.session_path(device.serial, device.session_id), device, windows)


async def test_sigterm_mid_request_answers_503_and_finalises_the_session(tmp_path):
    server = ServerProcess(tmp_path / "data", tmp_path / "serve.log")
    await server.start()
    device = make_fleet(2, seed=32, profile="mp_streaming_demo")[1]
    windows = make_windows(device, 5)
    sent_at: list[float] = []

    async def stop():
        server.send_signal(signal.SIGTERM)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_mid_request, stop, sent_at, windows)
            reply, _ = await stream_until_answered(server.url, None, device.headers(), mid_request(windows),
                                                   pace=0.05, sent_at=sent_at)
        assert_json_error(reply, 503, "shutting down", "reconnect")
        assert await server.wait() == 0
    finally:
        await server.aclose()
    assert_finalised_with_everything(tmp_path / "data" / device.serial / device.session_id, device, windows)


# -- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs, unmounted afterwards."""
    with mounted_tmpfs(tmp_path / "small-disk", "8m") as folder:
        yield folder


async def fill_the_disk(server: ServerProcess, disk):
    """Stream a profile9 device as fast as it goes until the server refuses it; then take the
    last free bytes too (what the failed write left), as another program on the disk would.
    Returns the device and the number of windows it sent whole."""
    device = make_fleet(2, seed=33, profile="profile9")[1]
    windows = (device.window(k * PERIOD, (k + 1) * PERIOD) for k in range(200))  # 40 s: far more than 8 MiB
    with trio.fail_after(60):
        reply, sent = await stream_until_answered(server.url, None, device.headers(), windows)
    assert_json_error(reply, 507, "disk is full")
    assert sent < 200
    take_free_space(disk / "filler")
    return device, sent


async def test_a_full_disk_answers_507_and_the_server_keeps_serving(small_disk, tmp_path):
    # A short grace: the refused session is finalised (on the full disk) while the server runs.
    server = ServerProcess(small_disk / "data", tmp_path / "serve.log", args=("--session-grace", "1"))
    await server.start()
    try:
        device, _ = await fill_the_disk(server, small_disk)
        for k in range(2):  # at once, and after the session's grace has run out
            if k:
                # Finalising the refused session on the full disk may free a little (its Parquet
                # is smaller than its live files, its reserve is given back): taken again.
                with trio.fail_after(20):
                    while (await get(server.url, "/status")).json["sessions"][0]["state"] not in (
                            "finished", "unfinished"):
                        await trio.sleep(0.1)
                take_free_space(small_disk / "filler")
            health = await get(server.url, "/healthz")
            assert health.status == 200 and health.json == {"status": "ok"}
            status = await get(server.url, "/status")
            assert status.status == 200
            (session,) = status.json["sessions"]
            assert session["device"] == device.serial and session["state"] != "receiving"
            other = make_fleet(3, seed=33, profile="profile9")[2]  # a new device: a clear 507 too
            reply = await request(server.url, headers=other.headers(), body=other.window(0, PERIOD))
            payload = assert_json_error(reply, 507, "disk is full")
            assert reply.headers.get("retry-after") == "5" and payload["retry_after_s"] == 5, (reply.headers, payload)
            await trio.sleep(2.5)
        assert server.process.poll() is None, server.output
    finally:
        await server.aclose()
    assert "disk is full" in server.output
    # The new device's session never opened, and the console names it all the same, at each
    # worker's first refusal and second (then 4th, 8th ...): twice, whichever worker each reached.
    named = [line for line in server.output.splitlines()
             if f"[{other.serial}] session {other.session_id} could not be opened" in line]
    assert len(named) == 2 and all("disk is full" in line and "answered 507" in line for line in named), named


async def test_a_full_disk_does_not_stop_a_clean_shutdown(small_disk, tmp_path):
    """SIGTERM with a full disk: the server still stops by itself and prints its summary; the
    session it could not finish is left for recovery."""
    server = ServerProcess(small_disk / "data", tmp_path / "serve.log")
    await server.start()
    try:
        device, _ = await fill_the_disk(server, small_disk)
        server.send_signal(signal.SIGTERM)
        assert await server.wait() == 0, server.output
    finally:
        await server.aclose()
    assert "Final summary:" in server.output and device.serial in server.output.split("Final summary:")[1]
    assert "Traceback" not in server.output, server.output


async def test_a_device_returning_after_space_is_freed_goes_on(small_disk, tmp_path):
    """The disk fills, the refused session's grace runs out (finalising it fails on the full
    disk, or succeeds in the room its repair frees: the live files become smaller Parquet), the
    operator frees space, the device comes back: it is recorded again."""
    other_program = small_disk / "other-program.bin"
    other_program.write_bytes(b"\1" * (3 * MIB))
    server = ServerProcess(small_disk / "data", tmp_path / "serve.log", args=("--session-grace", "1"))
    await server.start()
    try:
        device, sent = await fill_the_disk(server, small_disk)
        with trio.fail_after(10):
            while (await get(server.url, "/status")).json["sessions"][0]["state"] not in ("finished", "unfinished"):
                await trio.sleep(0.1)
        other_program.unlink()
        (small_disk / "filler").unlink()
        more = device.window((sent + 1) * PERIOD, (sent + 2) * PERIOD)
        with trio.fail_after(8):
            reply = await request(server.url, headers=device.headers(), body=more)
        assert reply.status == 200, reply
        assert reply.json["records"] == records_in([more])
        assert (await get(server.url, "/healthz")).status == 200
    finally:
        await server.aclose()


@pytest.mark.parametrize("serial", [".", ".."])
async def test_a_serial_that_cannot_name_a_folder_is_handled_and_the_server_goes_on(server, client_ssl, serial):
    """'.' and '..' are 1 to 64 of the allowed characters, yet cannot name a session's folder
    as they are: the device gets a clear 400, or is stored inside the data folder (under a
    name that works); either way nothing lands outside it and the server goes on."""
    headers = ids(serial)
    body = small_body()
    reply = await request(server.url, headers=headers, body=body, ssl_context=client_ssl)
    health = await get(server.url, "/healthz", client_ssl)
    assert health.status == 200
    anywhere = server.data_dir.parent.rglob(headers["session-id"])
    assert all(p.is_relative_to(server.data_dir) for p in anywhere), "a session folder outside the data folder"
    if reply.status == 200:
        await server.stop()
        (path,) = session_folders(server.data_dir)
        assert path.is_relative_to(server.data_dir) and path.name == headers["session-id"]
        assert_session_equals(path, expected_from([body]), records=records_in([body]))
    else:
        assert_json_error(reply, 400, "device-serial")
        assert not any(server.data_dir.iterdir())


async def test_the_serial_rtmp_is_reserved_for_the_rtmp_streams_folder(server, client_ssl):
    reply = await request(server.url, headers=ids("rtmp"), body=small_body(), ssl_context=client_ssl)
    assert_json_error(reply, 400, "device-serial", "reserved", "RTMP")
    assert not (server.data_dir / "rtmp").exists()


async def test_a_client_that_sends_everything_before_reading_still_gets_its_error(server, client_ssl):
    """Many clients send the whole request before they read: an answer given early (431 here,
    for a 5 MiB header) must survive the close, which it does not if the server closes with
    unread data (the kernel then resets the connection and the answer is lost)."""
    conn = h11.Connection(h11.CLIENT)
    body = small_body()
    headers = [("host", "127.0.0.1"), ("content-length", str(len(body))),
               *ids("SENDSALL").items(), ("oatmeal-calibration", "x" * (5 * MIB))]
    stream = await open_stream(server.url, client_ssl)
    try:
        with trio.fail_after(30):
            await stream.send_all(conn.send(h11.Request(method="POST", target="/", headers=headers))
                                  + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            reply = await read_response(stream, conn)
    finally:
        await trio.aclose_forcefully(stream)
    assert_json_error(reply, 431, "headers", "larger")
