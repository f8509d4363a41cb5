"""Overload: past max_connections, max_connections_per_address or max_memory_in_flight a new
device is answered 503 with Retry-After and a JSON reason, while the devices already recording
go on and store everything they send; /status, /healthz and /metrics are answered all along;
once connections close (even abruptly) new devices are accepted again."""

from __future__ import annotations

import json
import time

import h11
import trio
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
)
from storage_support import expected_from
from test_server_status import metric

from recorder.server.config import ServerConfig
from recorder.server.overload import Overload
from recorder.sim import sender
from recorder.sim.fleet import make_fleet


def fleet(count: int, seed: int):
    return make_fleet(count, seed=seed, profile="mp_streaming_demo")


async def overload_status(server, client_ssl) -> dict:
    """/status's overload figures. Asked with `connection: close`, and the server's close awaited:
    the place this request took is given back before the test's next connection comes."""
    stream = await open_stream(server.url, client_ssl)
    conn = h11.Connection(h11.CLIENT)
    try:
        await stream.send_all(conn.send(h11.Request(method="GET", target="/status", headers=[
            ("host", "127.0.0.1"), ("connection", "close")])) + conn.send(h11.EndOfMessage()))
        reply = await read_response(stream, conn)
        with trio.fail_after(5):
            try:
                while await stream.receive_some(65536):
                    pass
            except trio.BrokenResourceError:
                pass
    finally:
        await trio.aclose_forcefully(stream)
    assert reply.status == 200, reply
    return json.loads(reply.body)["overload"]


async def wait_for_overload(server, client_ssl, check, timeout: float = 10.0) -> dict:
    """The /status overload figures once check(figures) holds."""
    with trio.fail_after(timeout):
        while not check(figures := await overload_status(server, client_ssl)):
            await trio.sleep(0.05)
    return figures


async def all_closed(server, client_ssl) -> dict:
    """Nothing open but the request asking (which holds a place), nothing held in memory."""
    return await wait_for_overload(server, client_ssl, lambda o: (o["open_connections"], o["connections_past_limits"],
                                                                  o["memory_in_flight"]) == (1, 0, 0))


async def open_device(server, client_ssl, device) -> sender.Connection:
    """A device's connection, its request begun: once the TLS handshake is done the server has
    counted it."""
    conn = await sender.Connection.open(sender.Target.parse(server.url), client_ssl, timeout_s=20)
    await conn.start("/", device.headers())
    return conn


async def post(server, client_ssl, device, windows) -> Reply:
    return await request(server.url, headers=device.headers(), body=b"".join(windows), ssl_context=client_ssl,
                         chunked=True)


def assert_overloaded(reply: Reply, limit: str, *words: str) -> None:
    payload = assert_json_error(reply, 503, "overloaded", "retry in 5 s", *words)
    assert reply.headers.get("retry-after") == "5", reply.headers
    assert payload["limit"] == limit and payload["retry_after_s"] == 5, payload
    assert reply.headers.get("connection") == "close"


async def test_past_max_connections_new_devices_get_503_and_the_connected_ones_keep_recording(
        start_server, client_ssl, capsys):
    server = await start_server(max_connections=3)
    devices = fleet(4, seed=41)
    streaming, newcomer = devices[:3], devices[3]
    windows = {d.serial: make_windows(d, 10) for d in streaming}  # made beforehand: this loop runs the server too
    newcomer_body = make_windows(newcomer, 1)
    conns = [await open_device(server, client_ssl, d) for d in streaming]
    checked = trio.Event()
    answers = {}

    async def stream(conn, device):
        try:
            start = trio.current_time()
            for k, window in enumerate(windows[device.serial]):
                await trio.sleep_until(start + k * PERIOD)
                await conn.send(window)
            await checked.wait()  # the connection stays open until the checks are done
            answers[device.serial] = await conn.finish()
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        for conn, device in zip(conns, streaming, strict=True):
            nursery.start_soon(stream, conn, device)
        await trio.sleep(2 * PERIOD)

        # A new device: refused, told why and when to come back; nothing of it is stored.
        refused = await post(server, client_ssl, newcomer, newcomer_body)
        assert_overloaded(refused, "max_connections", "3 connections open")
        assert "refused 1 connection from 127.0.0.1: over 3 open connections (503, retry after 5 s)" in (
            capsys.readouterr().out)
        assert not (server.data_dir / newcomer.serial).exists()

        # The operator's pages are answered, at the limit and past it.
        health = await get(server.url, "/healthz", client_ssl)
        assert health.status == 200 and health.json == {"status": "ok"}
        figures = await overload_status(server, client_ssl)
        assert figures["limits"] == {"max_connections": 3, "max_connections_per_address": 64,
                                     "max_memory_in_flight": 512 << 20, "retry_after_s": 5}
        assert figures["open_connections"] == 3 and figures["busiest_addresses"] == {"127.0.0.1": 3}
        assert figures["refused"] == {"max_connections": 1, "max_connections_per_address": 0,
                                      "max_memory_in_flight": 0}
        metrics = await get(server.url, "/metrics", client_ssl)
        assert metrics.status == 200
        text = metrics.body.decode()
        assert metric(text, "recorder_connections_refused_total", reason="max_connections") == 1
        assert metric(text, "recorder_connections_refused_total", reason="max_memory_in_flight") == 0
        assert metric(text, "recorder_connections_open") == 3
        # A reader of the live feed costs the recorder: refused too.
        assert_overloaded(await get(server.url, "/feed", client_ssl), "max_connections")
        assert len(answers) == 0, "the devices should still be connected"
        checked.set()

    # Every device that was connected was answered and stored whole.
    for device in streaming:
        status, payload = answers[device.serial]
        sent = windows[device.serial]
        assert status == 200 and payload["records"] == records_in(sent), payload
        assert (payload["gaps"], payload["corrupt_bytes"], payload["malformed"]) == (0, 0, 0)

    # Once they have gone, a new device is taken.
    await all_closed(server, client_ssl)
    reply = await post(server, client_ssl, newcomer, newcomer_body)
    assert reply.status == 200, reply
    await server.stop()
    for device in streaming:
        sent = windows[device.serial]
        manifest = assert_session_equals(server.session_path(device.serial, device.session_id), expected_from(sent),
                                         records=records_in(sent))
        assert manifest["state"] == "finished"


async def test_the_per_address_limit_refuses_a_flood_from_one_host(start_server, client_ssl):
    server = await start_server(max_connections=10, max_connections_per_address=2)
    devices = fleet(4, seed=42)
    first = [await open_device(server, client_ssl, d) for d in devices[:2]]
    windows = {d.serial: make_windows(d, 2) for d in devices}
    try:
        for conn, device in zip(first, devices[:2], strict=True):
            await conn.send(windows[device.serial][0])
        reply = await post(server, client_ssl, devices[2], windows[devices[2].serial])
        assert_overloaded(reply, "max_connections_per_address", "2 connections open from 127.0.0.1",
                          "per client address")
        assert (await get(server.url, "/healthz", client_ssl)).status == 200
        figures = await overload_status(server, client_ssl)
        assert figures["refused"]["max_connections_per_address"] == 1 and figures["refused"]["max_connections"] == 0
        # The connected devices go on.
        for conn, device in zip(first, devices[:2], strict=True):
            await conn.send(windows[device.serial][1])
            status, payload = await conn.finish()
            assert status == 200 and payload["records"] == records_in(windows[device.serial]), payload
    finally:
        for conn in first:
            await conn.aclose()
    await all_closed(server, client_ssl)
    reply = await post(server, client_ssl, devices[2], windows[devices[2].serial])
    assert reply.status == 200 and reply.json["records"] == records_in(windows[devices[2].serial]), reply
    await server.stop()
    for device in devices[:3]:
        sent = windows[device.serial]
        assert_session_equals(server.session_path(device.serial, device.session_id), expected_from(sent),
                              records=records_in(sent))


async def test_bytes_in_flight_past_the_limit_refuse_new_devices_until_written(start_server, client_ssl):
    # Bytes wait up to flush_interval_s before they are written: 2 s holds them long enough to look.
    server = await start_server(max_memory_in_flight=1000, flush_interval_s=2.0)
    holder, newcomer = fleet(2, seed=43)
    windows = make_windows(holder, 3)
    body = make_windows(newcomer, 1)
    conn = await open_device(server, client_ssl, holder)
    try:
        await conn.send(windows[0])  # less than coalesce_bytes, then a pause: held, not yet written
        await wait_for_overload(server, client_ssl, lambda o: o["memory_in_flight"] == len(windows[0]))
        reply = await post(server, client_ssl, newcomer, body)
        assert_overloaded(reply, "max_memory_in_flight", "not yet written", "storage is behind")
        assert not (server.data_dir / newcomer.serial).exists()

        # Written after flush_interval_s: new devices are taken again.
        await wait_for_overload(server, client_ssl, lambda o: o["memory_in_flight"] == 0)
        reply = await post(server, client_ssl, newcomer, body)
        assert reply.status == 200 and reply.json["records"] == records_in(body), reply

        # The device holding the memory was never slowed or cut off: the rest of its body is stored.
        for window in windows[1:]:
            await conn.send(window)
        status, payload = await conn.finish()
        assert status == 200 and payload["records"] == records_in(windows), payload
    finally:
        await conn.aclose()
    figures = await all_closed(server, client_ssl)
    assert figures["refused"] == {"max_connections": 0, "max_connections_per_address": 0, "max_memory_in_flight": 1}
    await server.stop()
    assert_session_equals(server.session_path(holder.serial, holder.session_id), expected_from(windows),
                          records=records_in(windows))


async def test_connections_that_end_abruptly_give_their_places_back(start_server, client_ssl):
    server = await start_server(max_connections=2)
    devices = fleet(5, seed=44)
    target = sender.Target.parse(server.url)

    # Mid-body, the socket dropped without a goodbye.
    conn = await open_device(server, client_ssl, devices[0])
    await conn.send(make_windows(devices[0], 1)[0])
    await trio.aclose_forcefully(conn.stream)
    # A TLS connection that never sends a request; a TCP connection that never begins TLS.
    idle = await sender.Connection.open(target, client_ssl)
    await trio.aclose_forcefully(idle.stream)
    raw = await trio.open_tcp_stream(target.host, target.port)
    await raw.aclose()
    await all_closed(server, client_ssl)

    # Exactly two places again: two devices are taken, a third is refused.
    windows = {d.serial: make_windows(d, 1) for d in devices[1:4]}
    held = [await open_device(server, client_ssl, d) for d in devices[1:3]]
    try:
        assert_overloaded(await post(server, client_ssl, devices[3], windows[devices[3].serial]), "max_connections")
        for conn, device in zip(held, devices[1:3], strict=True):
            await conn.send(windows[device.serial][0])
            status, payload = await conn.finish()
            assert status == 200 and payload["records"] == records_in(windows[device.serial]), payload
    finally:
        for conn in held:
            await conn.aclose()
    await all_closed(server, client_ssl)
    reply = await post(server, client_ssl, devices[3], windows[devices[3].serial])
    assert reply.status == 200, reply


async def test_a_device_reconnecting_to_the_session_it_streams_is_not_refused(start_server, client_ssl):
    """Its old connection, gone stale, still holds the last place: the reconnect takes it over
    instead of waiting out the idle timeout, and the session has everything."""
    server = await start_server(max_connections=1)
    device, other = fleet(2, seed=45)
    windows = make_windows(device, 2)
    stale = await open_device(server, client_ssl, device)
    try:
        await stale.send(windows[0])
        with trio.fail_after(10):  # the server has all of the first window
            while True:
                status = (await get(server.url, "/status", client_ssl)).json
                held = status["overload"]["memory_in_flight"]
                stored = sum(s["bytes"] for s in status["sessions"])
                if held + stored == len(windows[0]):
                    break
                await trio.sleep(0.05)
        assert_overloaded(await post(server, client_ssl, other, make_windows(other, 1)), "max_connections")
        reply = await post(server, client_ssl, device, windows[1:])
        assert reply.status == 200 and reply.json["records"] == records_in(windows[1:]), reply
    finally:
        await stale.aclose()
    await all_closed(server, client_ssl)
    await server.stop()
    assert_session_equals(server.session_path(device.serial, device.session_id), expected_from(windows),
                          records=records_in(windows))


async def test_serve_options_set_the_limits(tmp_path):
    server = ServerProcess(tmp_path / "data", tmp_path / "serve.log", args=(
        "--max-connections", "1", "--max-connections-per-address", "5", "--max-memory-in-flight", "7"))
    await server.start()
    try:
        status = await get(server.url, "/status")
        assert status.status == 200
        assert status.json["overload"]["limits"] == {"max_connections": 1, "max_connections_per_address": 5,
                                                     "max_memory_in_flight": 7 << 20, "retry_after_s": 5}
    finally:
        await server.aclose()


def test_the_console_says_so_once_per_limit_every_few_seconds(capsys):
    overload = Overload(ServerConfig(max_connections=1, max_connections_per_address=64))
    with overload.connection("10.0.0.5:4000") as inside:
        assert inside.over is None
        for port in range(4):
            with overload.connection(f"10.0.0.{5 + port % 2}:{5000 + port}") as ticket:
                assert ticket.over == "max_connections"
                overload.refuse(ticket, ticket.over)
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1 and lines[0].endswith(
            "refused 1 connection from 10.0.0.5: over 1 open connections (503, retry after 5 s)"), lines
        overload.report(time.monotonic())  # too soon: nothing
        assert capsys.readouterr().out == ""
        overload.report(time.monotonic() + 6)
        (line,) = capsys.readouterr().out.splitlines()
        assert line.endswith("refused 3 connections from 10.0.0.6 (2), 10.0.0.5 (1): over 1 open connections "
                             "(503, retry after 5 s)"), line
        assert overload.refused["max_connections"] == 4
    assert (overload.open, overload.past_limits, overload.by_address) == (0, 0, {})


def test_a_flood_past_the_limits_is_closed_unanswered_beyond_a_bound(monkeypatch, capsys):
    from recorder.server import overload as module

    monkeypatch.setattr(module, "MAX_PAST_LIMITS", 2)
    overload = Overload(ServerConfig(max_connections=0, max_connections_per_address=1))
    with overload.connection("10.0.0.9:1"), overload.connection("10.0.0.9:2") as a, \
            overload.connection("10.0.0.9:3") as b, overload.connection("10.0.0.9:4") as c:
        assert (a.over, b.over, c.over) == ("max_connections_per_address",) * 3
        assert not a.unanswered and not b.unanswered and c.unanswered
        assert "1 of them closed unanswered" in capsys.readouterr().out
        with overload.connection("10.0.0.10:1") as other:  # another host is not held back by the flood
            assert other.over is None and overload.open == 2
        assert overload.refused["max_connections_per_address"] == 1 and overload.closed_unanswered == 1
    assert (overload.open, overload.past_limits, overload.by_address) == (0, 0, {})
