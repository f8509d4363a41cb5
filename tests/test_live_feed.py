"""GET /feed: another process subscribed to a running `recorder serve` gets, through
recorder.sdk's LiveSource and a handler factory, the rows the recorder stored, values equal.
A reader that stops reading has its own batches dropped (counted in /status) while the
recording stays whole, and does not hold up the recorder's shutdown."""

from __future__ import annotations

import collections
import hashlib
import json
import signal
import struct
import subprocess
import sys

import h11
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import trio
import zstandard
from server_support import PERIOD, ServerProcess, get, open_stream, stored_sequences

from recorder import open_session
from recorder.server.feed import read_frame
from recorder.sim import sender
from recorder.sim.fleet import make_fleet

# A user's script in its own process: every IMU sample, barometer sample, RGB frame and audio
# block of every device, as its callbacks receive them, written as JSON once the feed ends.
SUBSCRIBER = r'''
import hashlib, json, sys
from collections import defaultdict
from recorder.sdk import StreamDataInterface
from recorder.sdk.live import LiveSource

url, out = sys.argv[1], sys.argv[2]
seen = defaultdict(lambda: defaultdict(list))

def factory():
    stream_data = StreamDataInterface(enable_image_decoding=False)
    stream_data.register_imu_callback(
        lambda sample, label, device_id: seen[device_id][label].append([sample.capture_timestamp_ns,
                                                                         *sample.accel_msec2.tolist()]))
    stream_data.register_barometer_callback(
        lambda sample, device_id: seen[device_id]["barometer"].append([sample.capture_timestamp_ns, sample.pressure]))
    stream_data.register_rgb_callback(
        lambda image, record, device_id: seen[device_id]["camera-rgb"].append(
            [record.capture_timestamp_ns, hashlib.sha256(image.to_numpy_array().tobytes()).hexdigest()]))
    stream_data.register_audio_callback(
        lambda block, record, channels, device_id: seen[device_id]["mic"].append(
            [int(record.capture_timestamps_ns[0]), hashlib.sha256(block.data.T.tobytes()).hexdigest()]))
    return stream_data

source = LiveSource(url, factory)
source.start()
finished = source.join(timeout=120)   # the feed ends when the recorder stops
json.dump({"finished": finished, "error": source.error, "devices": source.devices,
           "dropped_by_recorder": source.dropped_by_recorder, "seen": seen}, open(out, "w"))
'''


async def wait_for_subscribers(url: str, kind: str, count: int, timeout: float = 20.0, ssl_context=None) -> dict:
    with trio.fail_after(timeout):
        while True:
            feed = (await get(url, "/status", ssl_context)).json["feed"]
            if sum(s["kind"] == kind for s in feed["subscribers"]) == count:
                return feed
            await trio.sleep(0.05)


async def test_a_subscriber_in_another_process_sees_the_stored_values(tmp_path):
    server = await ServerProcess(tmp_path / "data", tmp_path / "serve.log").start()
    script, out = tmp_path / "subscriber.py", tmp_path / "seen.json"
    script.write_text(SUBSCRIBER)
    subscriber = await trio.lowlevel.open_process([sys.executable, str(script), server.url, str(out)],
                                                  stderr=subprocess.PIPE)
    try:
        await wait_for_subscribers(server.url, "http", 1)
        (device,) = make_fleet(1, seed=41, profile="profile9")
        (report,) = await sender.stream_fleet([device], server.url, None, duration_s=2.0, batch_period_s=PERIOD,
                                              fast=False)
        assert report.error is None, report
        server.send_signal(signal.SIGINT)
        assert await server.wait() == 0, server.output
        with trio.fail_after(60):
            assert await subscriber.wait() == 0, subscriber.stderr
    finally:
        if subscriber.returncode is None:
            subscriber.kill()
        await server.aclose()

    result = json.loads(out.read_text())
    assert result["finished"] and result["error"] is None, result["error"]
    assert result["dropped_by_recorder"] == {}
    assert result["devices"][device.serial]["dropped_batches"] == 0
    with open_session(tmp_path / "data" / device.serial / device.session_id) as session:
        assert len(stored_sequences(session)) == device.records_sent
        assert_seen_is_stored(result["seen"][device.serial], session)


def assert_seen_is_stored(seen: dict, session) -> None:
    """What SUBSCRIBER's handlers saw of a device equals its stored session: IMU, barometer,
    camera frames and audio blocks, every one, in order."""
    for label in ("imu-left", "imu-right"):
        imu = session.table(label)
        stored = [[t, *accel] for t, accel in zip(imu["timestamp_ns"].to_pylist(), imu["accel_msec2"].to_pylist(),
                                                   strict=True)]
        assert len(stored) > 0 and seen[label] == stored
    barometer = session.table("barometer")
    assert seen["barometer"] == [list(row) for row in zip(barometer["timestamp_ns"].to_pylist(),
                                                          barometer["pressure_pa"].to_pylist(), strict=True)]
    for stream in ("camera-rgb", "mic"):
        times = session.table(stream, columns=["timestamp_ns"])["timestamp_ns"].to_pylist()
        stored = [[t, hashlib.sha256(session.blob(stream, i)).hexdigest()] for i, t in enumerate(times)]
        assert len(stored) > 0 and seen[stream] == stored


async def test_a_reader_that_stops_reading_loses_its_own_batches_only(server, client_ssl):
    stream = await open_stream(server.url, client_ssl)
    conn = h11.Connection(h11.CLIENT)
    await stream.send_all(conn.send(h11.Request(method="GET", target="/feed", headers=[("host", "127.0.0.1")])))
    try:
        with trio.fail_after(20):
            while True:  # subscribed once /status shows it (nothing of the feed is read, ever)
                feed = (await get(server.url, "/status", client_ssl)).json["feed"]
                if feed["subscribers"]:
                    break
                await trio.sleep(0.05)
        fleet = make_fleet(3, seed=43, profile="profile9")
        # Far more than the reader's queue (64 MiB, 256 batches) and the kernel's socket buffers
        # can hold: 4 s of these devices filled them barely, and a run now and then dropped none.
        reports = await sender.stream_fleet(fleet, server.url, client_ssl, duration_s=8.0, batch_period_s=PERIOD,
                                            fast=True)
        assert [r.error for r in reports] == [None] * 3
        (reader,) = (await get(server.url, "/status", client_ssl)).json["feed"]["subscribers"]
        assert reader["kind"] == "http"
        assert sum(d["dropped_batches"] for d in reader["devices"].values()) > 0
        with trio.fail_after(15):  # the stuck reader is cut off, not waited for
            await server.stop()
    finally:
        await trio.aclose_forcefully(stream)
    for device in fleet:
        with open_session(server.session_path(device.serial, device.session_id)) as session:
            assert session.manifest["state"] == "finished"
            assert len(stored_sequences(session)) == device.records_sent


async def test_a_reader_that_hangs_up_mid_feed_is_let_go_quietly(server, client_ssl, nursery, capsys):
    """A reader that closes its connection while frames are on their way (a viewer closed, a
    network dropped) is a reader gone, said as such: not a connection that "failed
    unexpectedly" (the feed's send error once came out wrapped in an exception group)."""
    stream = await open_stream(server.url, client_ssl)
    conn = h11.Connection(h11.CLIENT)
    await stream.send_all(conn.send(h11.Request(method="GET", target="/feed", headers=[("host", "127.0.0.1")])))
    await wait_for_subscribers(server.url, "http", 1, ssl_context=client_ssl)
    received = 0

    async def read_then_hang_up():
        nonlocal received
        while received < 2 << 20:  # some frames taken, then the socket closed with more coming
            received += len(await stream.receive_some(1 << 16))
        await trio.aclose_forcefully(stream)

    nursery.start_soon(read_then_hang_up)
    fleet = make_fleet(2, seed=49, profile="profile9")
    reports = await sender.stream_fleet(fleet, server.url, client_ssl, duration_s=3.0, batch_period_s=PERIOD,
                                        fast=True)
    assert [r.error for r in reports] == [None] * 2 and received >= 2 << 20
    with trio.fail_after(10):
        while (await get(server.url, "/status", client_ssl)).json["feed"]["subscribers"]:
            await trio.sleep(0.05)
    await server.stop()
    output = capsys.readouterr().out
    assert "failed unexpectedly" not in output and "Traceback" not in output, output[-3000:]
    for device in fleet:
        with open_session(server.session_path(device.serial, device.session_id)) as session:
            assert len(stored_sequences(session)) == device.records_sent


async def read_raw_feed(server, client_ssl, nursery, target: str, fleet) -> tuple[list[tuple[dict, bytes]], dict]:
    """The frames a plain h11 client reads from GET `target` while `fleet` streams, until the
    recorder stops, and /status once every device was answered."""
    stream = await open_stream(server.url, client_ssl)
    conn = h11.Connection(h11.CLIENT)
    await stream.send_all(conn.send(h11.Request(method="GET", target=target, headers=[("host", "127.0.0.1")])))
    body, ended = bytearray(), trio.Event()
    response: list[h11.Response] = []

    async def read_feed():
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(1 << 20))
            elif isinstance(event, h11.Response):
                response.append(event)
            elif isinstance(event, h11.Data):
                body.extend(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                ended.set()
                return

    nursery.start_soon(read_feed)
    await wait_for_subscribers(server.url, "http", 1, ssl_context=client_ssl)
    reports = await sender.stream_fleet(fleet, server.url, client_ssl, duration_s=1.0, batch_period_s=PERIOD,
                                        fast=True)
    assert [r.error for r in reports] == [None] * len(fleet)
    status = (await get(server.url, "/status", client_ssl)).json
    await server.stop()
    with trio.fail_after(10):
        await ended.wait()
    await trio.aclose_forcefully(stream)
    assert response[0].status_code == 200
    view, frames = memoryview(bytes(body)), []

    def read_exactly(n: int, at=[0]) -> bytes:  # noqa: B006 (the read position)
        piece = view[at[0]:at[0] + n]
        at[0] += len(piece)
        return bytes(piece)

    while (frame := read_frame(read_exactly)) is not None:
        frames.append(frame)
    return frames, status


async def test_the_feed_carries_the_stored_rows_as_arrow_batches(server, client_ssl, nursery):
    """What a reader in any language gets from GET /feed?serial=X: frames of a JSON head and an
    Arrow IPC stream, whose batches concatenated per stream are the stored table, column for
    column, with each camera frame's and audio block's bytes in `data_zstd` as stored (zstd)."""
    fleet = make_fleet(2, seed=47, profile="profile9")
    wanted = fleet[1]
    frames, _ = await read_raw_feed(server, client_ssl, nursery, f"/feed?serial={wanted.serial}", fleet)
    heads = [head for head, _ in frames]
    assert heads[0]["type"] == "hello" and heads[-1] == {"type": "end"}
    assert {h["device"] for h in heads if "device" in h} == {wanted.serial}
    assert [h["type"] for h in heads if h["type"] in ("session", "calibration", "ended")] == [
        "session", "calibration", "ended"]
    batches = collections.defaultdict(list)
    for head, payload in frames:
        if head["type"] == "rows":
            batch = pa.ipc.open_stream(payload).read_next_batch()
            assert batch.num_rows == head["rows"] and head["session_id"] == wanted.session_id
            batches[head["stream"]].append(batch)
    with open_session(server.session_path(wanted.serial, wanted.session_id)) as session:
        assert set(batches) == set(session.streams())
        for name, parts in batches.items():
            fed = pa.Table.from_batches(parts)
            # As storage wrote it (the reading API adds enum labels and leaves reserved fields out).
            stored = ds.dataset(session.path / name, format="parquet").to_table()
            rows = fed.drop_columns(["data_zstd"]) if "data_zstd" in fed.column_names else fed
            assert rows.schema.names == stored.schema.names and rows.equals(stored), name
            assert rows.schema.metadata == stored.schema.metadata  # the stream's kind and message
            if "data_zstd" in fed.column_names:
                # Each frame as the storage compressed it; any zstd reader gets the bytes back, a
                # RAW image's rows after the running sum its skippable frame asks for.
                data = [unfiltered(frame) for frame in fed["data_zstd"].to_pylist()]
                assert data == [session.blob(name, i) for i in range(stored.num_rows)]
                assert name.startswith("slam") == all(frame[:4] == b"\x5e\x2a\x4d\x18"
                                                      for frame in fed["data_zstd"].to_pylist()), name


def unfiltered(frame: bytes) -> bytes:
    """A fed frame's bytes, as the feed's description tells a reader in any language to get them."""
    magic, size, row_bytes = struct.unpack_from("<III", frame)
    if (magic, size) != (0x184D2A5E, 4):
        return zstandard.ZstdDecompressor().decompress(frame)
    rows = np.frombuffer(zstandard.ZstdDecompressor().decompress(frame[12:]), np.uint8).reshape(-1, row_bytes)
    return np.cumsum(rows, axis=0, dtype=np.uint8).tobytes()


async def test_a_reader_that_names_streams_gets_only_those_and_the_recorder_holds_no_others(
        server, client_ssl, nursery):
    fleet = make_fleet(2, seed=48, profile="profile9")
    wanted = fleet[0]
    frames, status = await read_raw_feed(server, client_ssl, nursery,
                                         f"/feed?serial={wanted.serial}&stream=imu-right,slam-front-left", fleet)
    assert frames[0][0]["streams"] == ["imu-right", "slam-front-left"]
    assert [h["type"] for h, _ in frames if h["type"] in ("session", "calibration", "ended")] == [
        "session", "calibration", "ended"]
    rows = collections.defaultdict(list)
    for head, payload in frames:
        if head["type"] == "rows":
            rows[head["stream"]].append(pa.ipc.open_stream(payload).read_next_batch())
    assert set(rows) == {"imu-right", "slam-front-left"}
    with open_session(server.session_path(wanted.serial, wanted.session_id)) as session:
        for name, parts in rows.items():
            stored = ds.dataset(session.path / name, format="parquet").to_table()
            fed = pa.Table.from_batches(parts)
            assert fed.drop_columns([c for c in fed.column_names if c == "data_zstd"]).equals(stored), name
        # Once every device was answered, all its rows were flushed: what was published (held
        # for a reader) is the named streams' rows of the named device, nothing else.
        published = status["feed"]["published"]
        assert set(published) == {wanted.serial}
        assert published[wanted.serial]["rows"] == sum(session.table(n).num_rows for n in rows)
