"""What an operator sees: /status, /metrics and /healthz while devices stream, and SIGINT or
SIGTERM finalising every open session with a summary per device."""

from __future__ import annotations

import re
import signal

import pytest
import trio
from server_support import (
    PERIOD,
    ServerProcess,
    assert_json_error,
    assert_stored_part,
    get,
    make_windows,
    records_in,
    request,
    stream_until_answered,
)
from storage_support import expected_from

from recorder import open_session
from recorder.sim.fleet import make_fleet


def metric(text: str, name: str, **labels) -> float:
    """The value of the one sample of `name` whose labels include `labels`."""
    found = []
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m.group(3)))
    assert len(found) == 1, (name, labels, found)
    return found[0]


async def test_status_metrics_and_healthz_while_a_device_streams(server, client_ssl):
    device = make_fleet(2, seed=51, profile="profile9")[1]
    windows = make_windows(device, 25)  # 5 s, made beforehand: the test's trio loop also runs the server
    report = []

    async def stream():
        report.append(await stream_until_answered(server.url, client_ssl, device.headers(), windows, pace=PERIOD))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream)
        # Rates need two housekeeping rounds (once a second) after the session began: 2-3 s.
        with trio.fail_after(4.5):
            while True:
                await trio.sleep(0.25)
                sessions = (await get(server.url, "/status", client_ssl)).json["sessions"]
                if sessions and sessions[0]["records_per_s"] > 0:
                    break
        health, status, metrics = [await get(server.url, path, client_ssl) for path in ("/healthz", "/status", "/metrics")]
        assert not report, "the device should still be streaming"

    assert health.status == 200 and health.json == {"status": "ok"}

    assert status.status == 200 and status.headers["content-type"].startswith("application/json")
    assert status.json["status"] == "ok" and status.json["uptime_s"] > 2
    (session,) = status.json["sessions"]
    assert session["device"] == device.serial and session["session_id"] == device.session_id
    assert session["state"] == "receiving"
    assert session["connections"] == 1 and session["requests"] == 1
    assert 0 < session["records"] < device.records_sent
    assert session["bytes"] > 0 and session["records_per_s"] > 0 and session["bitrate_mbps"] > 0
    assert session["streams"]["imu-left"]["count"] > 0 and session["streams"]["imu-left"]["rate_hz"] > 0
    assert session["camera_fps"]["camera-rgb"] > 0
    assert (session["gaps"], session["corrupt_bytes"], session["malformed"]) == (0, 0, 0)
    assert session["path"] == str(server.session_path(device.serial, device.session_id))

    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.body.decode()
    assert re.search(r"^# TYPE recorder_session_records(_total)? counter$", text, re.M)
    ids = {"device": device.serial, "session_id": device.session_id}
    assert metric(text, "recorder_session_records_total", **ids) > 0
    assert metric(text, "recorder_session_receiving", **ids) == 1
    assert metric(text, "recorder_session_gaps_total", **ids) == 0
    assert metric(text, "recorder_stream_samples_total", **ids, stream="imu-left") > 0
    assert metric(text, "recorder_sessions") == 1

    # Once the device has finished its request: waiting for it, with everything counted.
    ((reply, sent),) = report
    assert reply.status == 200 and sent == len(windows)
    status = (await get(server.url, "/status", client_ssl)).json
    (session,) = status["sessions"]
    assert session["state"] == "waiting" and session["records"] == device.records_sent == reply.json["records"]
    metrics = (await get(server.url, "/metrics", client_ssl)).body.decode()
    assert metric(metrics, "recorder_session_records_total", **ids) == device.records_sent
    assert metric(metrics, "recorder_session_receiving", **ids) == 0
    assert_json_error(await get(server.url, "/", client_ssl), 404, "/status", "/metrics", "POST")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_finalises_every_open_session_and_prints_a_summary(tmp_path, sig):
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, tmp_path / "serve.log")
    await server.start()
    fleet = make_fleet(3, seed=52, profile="mp_streaming_demo")
    windows = {d.serial: make_windows(d, 15) for d in fleet}  # 3 s each; the signal comes at 1.5 s
    sent_at = {d.serial: [] for d in fleet}
    replies = {}

    async def device_streams(device):
        replies[device.serial], _ = await stream_until_answered(server.url, None, device.headers(),
                                                                windows[device.serial], pace=PERIOD,
                                                                sent_at=sent_at[device.serial])

    try:
        async with trio.open_nursery() as nursery:
            for device in fleet:
                nursery.start_soon(device_streams, device)
            await trio.sleep(1.5)
            server.send_signal(sig)
            signalled = trio.current_time()
        assert await server.wait() == 0, server.output
    finally:
        await server.aclose()

    output = server.output
    summary = output.split("Final summary:")[1]
    for device in fleet:
        # Each device: told to reconnect later, its session finished with what it sent.
        assert_json_error(replies[device.serial], 503, "shutting down")
        line = next(line for line in summary.splitlines() if device.serial in line)
        path = data_dir / device.serial / device.session_id
        with open_session(path) as reader:
            assert reader.manifest["state"] == "finished"
            (req,) = reader.requests()
            assert req["end"]["counters"]["gaps"] == 0
            records = reader.manifest["counters"]["records"]
        assert f"{records} records" in line and device.session_id in line
        assert f"finished session {device.session_id}: {records} records" in output
        sent = [w for w, t in zip(windows[device.serial], sent_at[device.serial], strict=False) if t < signalled]
        # Everything sent before the signal was received and is stored (the server writes it at shutdown).
        early = [w for w, t in zip(windows[device.serial], sent_at[device.serial], strict=False) if t < signalled - 0.1]
        kept = assert_stored_part(path, expected_from(windows[device.serial]), at_least_through=records_in(early) - 1)
        assert records == len(kept) >= records_in(early) and len(sent) >= 5


@pytest.mark.parametrize("path", ["/healthz", "/status", "/metrics"])
async def test_head_on_the_status_paths_is_answered_and_the_server_goes_on(server, client_ssl, path):
    """The status paths take HEAD (as health checkers send it): the headers, no body."""
    reply = await request(server.url, "HEAD", path, ssl_context=client_ssl)
    assert reply.status == 200 and reply.body == b""
    health = await get(server.url, "/healthz", client_ssl)
    assert health.status == 200 and health.json == {"status": "ok"}
