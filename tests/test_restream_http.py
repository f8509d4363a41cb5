"""Re-streaming recorded sessions to a second recorder as their devices sent them: what the
second recorder stores is what the first stored, column for column, byte for byte."""

from __future__ import annotations

import json
import os
import random
import struct
import time
import uuid
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import trio

from recorder import certs, open_session
from recorder.devicelink import Connection, Target, client_ssl_context
from recorder.restream import records
from recorder.restream.send import restream
from recorder.wire import Encoder, record

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
LOCATION = {"file", "offset", "length"}
IMU = 0x8020
SERIAL = "REPLAYMESSY01"
SESSION = str(uuid.UUID(int=0x5EED))


def nan_with_payload(bits: int) -> np.float32:
    return np.array([bits], np.uint32).view(np.float32)[0]


def imu(n: int, t0: int, step: int = 1_250_000) -> dict:
    return {"timestamp_ns": t0 + np.arange(n) * step, "accel_msec2": np.arange(n * 3).reshape(n, 3),
            "gyro_radsec": np.full((n, 3), nan_with_payload(0x7FC0BEEF)), "temperature_c": np.full(n, 31.5)}


def messy_body(enc: Encoder) -> bytes:
    """Good records with every kind of bad one between them, garbage, and a cut-off end."""
    parts = [enc.samples("IMU_EVENT", 0, imu(4, 1_000_000))]
    parts.append(enc.opaque(0x8099, b"vendor payload", 2_000_000))
    parts.append(record(0x7777, b"what is this", sequence=enc._take_sequence(), timestamp_ns=3_000_000))
    parts.append(record(IMU, b"\x00" * 40, sequence=enc._take_sequence(), timestamp_ns=4_000_000,
                        crc=zlib.crc32(b"\x00" * 40) ^ 1))                      # bad CRC
    parts.append(b"garbage!" * 3)                                               # corrupt
    parts.append(record(IMU, struct.pack("<HH", 0, 2) + b"\x00" * 36, sequence=enc._take_sequence(),
                        timestamp_ns=5_000_000))                                # malformed
    parts.append(record(IMU, b"", sequence=enc._take_sequence(), timestamp_ns=6_000_000, flags=4))  # reserved flags
    parts.append(enc.samples("IMU_EVENT", 2, imu(3, 7_000_000)))               # a source outside the table
    parts.append(record(IMU, b"", sequence=enc._take_sequence(), timestamp_ns=8_000_000,
                        payload_length=1 << 30))                                # oversized
    parts.append(b"more garbage after the oversized header")
    parts.append(enc.samples("IMU_EVENT", 0, imu(3, 9_000_000))[:50])          # truncated
    return b"".join(parts)


def fields_body(enc: Encoder) -> bytes:
    """Records whose reserved fields and NaN payloads must come back bit for bit."""
    battery = {"timestamp_ns": [20_000_000, 20_500_000], "voltage_v": [3.9, 3.8], "level_percent": [80, 79],
               "charging": [1, 0], "reserved": [0xBEEF, 7]}
    gaze = {"timestamp_ns": [21_000_000], "yaw_rad": [nan_with_payload(0x7FA00001)], "pitch_rad": [0.1],
            "reserved": [[nan_with_payload(0xFFC00002), 1.5]], "valid": [3]}
    image = bytes(range(256))[:8 * 6]
    pcm = np.arange(2 * 160, dtype="<i2").tobytes()
    return b"".join([
        enc.samples("BATTERY_STATUS", 0, battery),
        enc.samples("MP_ET_RESULT", 0, gaze),
        enc.blob("SLAM_CAMERA_FRAME", {"camera_id": 1, "codec": 0, "pixel_format": 0, "reserved0": 9,
                                       "frame_number": 77, "width": 8, "height": 6, "stride_bytes": 8,
                                       "exposure_duration_s": 0.004, "reserved1": 0xDEADBEEF}, image, 22_000_000),
        enc.blob("AUDIO_REC_DATA", {"channels": 2, "codec": 0, "reserved0": 3, "sample_rate_hz": 48000,
                                    "samples_per_channel": 160, "reserved1": 12}, pcm, 23_000_000),
        enc.samples("IMU_EVENT", 1, imu(5, 24_000_000)),
    ])


def vendor_body(seed: int, size: int) -> tuple[bytes, list[int]]:
    """Bytes that are not SRF1 (as Aria glasses send their own format), in uneven chunks."""
    rng = random.Random(seed)
    body = b"VRS\x00" + os.urandom(size)
    sizes, left = [], len(body)
    while left:
        n = min(left, rng.choice([1, 7, 4096, 65536, 100_000]))
        sizes.append(n)
        left -= n
    return body, sizes


async def post(conn: Connection, headers, chunks: list[bytes]) -> dict:
    await conn.start("/", headers)
    for chunk in chunks:
        await conn.send(chunk)
    status, answer = await conn.finish()
    assert status == 200, answer
    return answer


def pieces(body: bytes, size: int = 65536) -> list[bytes]:
    return [body[i:i + size] for i in range(0, len(body), size)]


async def record_capture(url: str, context) -> list[tuple[str, str]]:
    """The three devices of sample_data/, and a hand-made device whose session has a messy
    version-1 body, a body that is not version 1 and a version-1 body with a new calibration."""
    target = Target.parse(url)
    sessions = []

    async def sample_device(folder: Path):
        headers = json.loads((folder / "headers.json").read_text())
        conn = await Connection.open(target, context, timeout_s=30)
        try:
            await post(conn, headers, pieces((folder / "body.srf").read_bytes()))
        finally:
            await conn.aclose()
        sessions.append((headers["device-serial"], headers["session-id"]))

    async with trio.open_nursery() as nursery:
        for folder in sorted(p for p in SAMPLE_DATA.iterdir() if p.is_dir()):
            nursery.start_soon(sample_device, folder)

    enc = Encoder()
    first_calibration = b'{"CalibrationSource":"Factory","note":"first"}'
    headers = [("session-id", SESSION), ("device-serial", SERIAL), ("device-build", "51048810021100500"),
               ("oatmeal-calibration", first_calibration)]
    conn = await Connection.open(target, context, timeout_s=30)
    try:
        messy = messy_body(enc)
        answer = await post(conn, headers, [messy[:100], messy[100:101], messy[101:]])
        assert answer["malformed"] == 1 and answer["corrupt_bytes"] > 0
        vendor, sizes = vendor_body(3, 300_000)
        chunks, at = [], 0
        for n in sizes:
            chunks.append(vendor[at:at + n])
            at += n
        assert (await post(conn, headers, chunks))["undecoded"] is True
        second = [h if h[0] != "oatmeal-calibration" else (h[0], b'{"note":"second \\u00e9"}') for h in headers]
        await post(conn, second, pieces(fields_body(enc), 100))
    finally:
        await conn.aclose()
    sessions.append((SERIAL, SESSION))
    return sorted(sessions)


def column_bits(column: pa.ChunkedArray) -> list:
    """A column's values, floats as their bits (NaN payloads included), nulls as None."""
    array = column.combine_chunks()
    while pa.types.is_fixed_size_list(array.type) or pa.types.is_list(array.type):
        array = array.flatten()
    if pa.types.is_floating(array.type):
        width = {16: np.uint16, 32: np.uint32, 64: np.uint64}[array.type.bit_width]
        valid = array.is_valid().to_numpy(zero_copy_only=False)
        values = array.fill_null(0).to_numpy(zero_copy_only=False).view(width)
        return [int(v) if ok else None for v, ok in zip(values, valid, strict=True)]
    return array.to_pylist()


def assert_same_session(first: Path, second: Path) -> None:
    with open_session(first) as a, open_session(second) as b:
        assert a.streams() == b.streams()
        for stream in a.streams():
            schema = a.schema(stream)
            assert b.schema(stream).names == schema.names, stream
            # raw chunks' wall_time_ns is when they arrived: the replay's, not the original's
            names = [n for n in schema.names if n not in LOCATION and not (stream == "raw-body" and n == "wall_time_ns")]
            ta, tb = a.table(stream, columns=names), b.table(stream, columns=names)
            assert ta.num_rows == tb.num_rows, stream
            for name in names:
                assert column_bits(ta.column(name)) == column_bits(tb.column(name)), (stream, name)
            if "size" in names:  # camera, audio, verbatim and raw-body rows: their stored bytes
                for i in range(ta.num_rows):
                    assert a.blob(stream, i) == b.blob(stream, i), (stream, i)
        assert a.calibration_bytes == b.calibration_bytes is not None
        assert [data for _, data in a.calibrations()] == [data for _, data in b.calibrations()]
        if "mic" in a.streams():
            pcm_a, rate_a, t0_a = a.audio("mic")
            pcm_b, rate_b, t0_b = b.audio("mic")
            assert (rate_a, t0_a) == (rate_b, t0_b) and np.array_equal(pcm_a, pcm_b)
        assert [r.body for r in a.raw_bodies()] == [r.body for r in b.raw_bodies()]
        assert [[len(c) for c in r.chunks] for r in a.raw_bodies()] == [[len(c) for c in r.chunks] for r in b.raw_bodies()]
        assert [r.headers for r in a.raw_bodies()] == [r.headers for r in b.raw_bodies()]
        assert [r["headers"] for r in a.requests()] == [r["headers"] for r in b.requests()]
        # each request carried the same records: what the recorder counted per request
        assert [r["end"]["counters"] for r in a.requests()] == [r["end"]["counters"] for r in b.requests()]
        assert a.manifest["counters"] == b.manifest["counters"]
        assert a.manifest["highest_sequence"] == b.manifest["highest_sequence"]


async def test_a_replayed_capture_is_stored_as_the_original_over_tls(start_server, certs_dir):
    context = client_ssl_context(str(certs_dir / certs.CA))
    original = await start_server()
    sessions = await record_capture(original.url, context)
    await original.stop()
    paths = [original.session_path(serial, sid) for serial, sid in sessions]

    copy = await start_server()
    reports = await restream(paths, copy.url, context, speed=0)
    await copy.stop()

    for report in reports:
        assert report.error is None, report.error
        assert report.records == report.total_records and report.bytes == report.total_bytes
        assert all(a["http"] == 200 and a["status"] == "ok" for a in report.answers)
    messy = next(r for r in reports if r.serial == SERIAL)
    assert messy.requests == 3 and messy.answers[1].get("undecoded") is True
    for serial, sid in sessions:
        assert_same_session(original.session_path(serial, sid), copy.session_path(serial, sid))


async def test_records_come_back_as_the_device_sent_them(start_server, certs_dir):
    """The sample capture's body, re-encoded from storage, is the body that was sent."""
    context = client_ssl_context(str(certs_dir / certs.CA))
    server = await start_server()
    folder = SAMPLE_DATA / "1M0YDA9HNM2419"
    headers = json.loads((folder / "headers.json").read_text())
    conn = await Connection.open(Target.parse(server.url), context)
    try:
        await post(conn, headers, pieces((folder / "body.srf").read_bytes()))
    finally:
        await conn.aclose()
    await server.stop()
    with open_session(server.session_path(headers["device-serial"], headers["session-id"])) as session:
        rebuilt = list(records(session))
    assert b"".join(bytes(r) for r in rebuilt) == (folder / "body.srf").read_bytes()
    assert [r.sequence for r in rebuilt] == list(range(len(rebuilt)))
    assert {r.kind for r in rebuilt} == {"samples", "blob"}


def two_second_session() -> list[bytes]:
    """21 IMU records 100 ms apart: 2 s of device time."""
    enc = Encoder()
    return [enc.samples("IMU_EVENT", 0, imu(1, 5_000_000_000 + k * 100_000_000)) for k in range(21)]


async def test_speed_one_paces_by_device_time_and_speed_zero_does_not(start_server):
    original = await start_server(tls=False)
    conn = await Connection.open(Target.parse(original.url), None)
    headers = {"session-id": SESSION, "device-serial": "PACED01"}
    try:
        await post(conn, headers, two_second_session())
    finally:
        await conn.aclose()
    await original.stop()
    path = original.session_path("PACED01", SESSION)

    copy = await start_server(tls=False)
    began = time.monotonic()
    [report] = await restream([path], copy.url, speed=1)
    paced = time.monotonic() - began
    assert report.error is None and report.records == 21
    assert paced >= 1.5, paced

    again = await start_server(tls=False)
    began = time.monotonic()
    [report] = await restream([path], again.url, speed=0)
    assert report.error is None and report.records == 21
    assert time.monotonic() - began < 1.0


async def test_a_body_that_is_not_version_1_is_paced_by_its_arrival_times(start_server):
    original = await start_server(tls=False)
    conn = await Connection.open(Target.parse(original.url), None)
    headers = {"session-id": SESSION, "device-serial": "RAWPACED01"}
    try:
        await conn.start("/", headers)
        for k in range(5):  # a chunk every 300 ms: 1.2 s from first to last
            if k:
                await trio.sleep(0.3)
            await conn.send(b"VRS\x00" + bytes([k]) * 1000)
        status, _ = await conn.finish()
        assert status == 200
    finally:
        await conn.aclose()
    await original.stop()
    path = original.session_path("RAWPACED01", SESSION)

    copy = await start_server(tls=False)
    began = time.monotonic()
    [report] = await restream([path], copy.url, speed=1)
    assert report.error is None and report.answers[0]["undecoded"] is True
    assert time.monotonic() - began >= 1.0
    await copy.stop()
    with open_session(path) as a, open_session(copy.session_path("RAWPACED01", SESSION)) as b:
        [sent], [got] = a.raw_bodies(), b.raw_bodies()
        assert got.chunks == sent.chunks
        gaps = np.diff(np.array(got.arrival_ns)) / 1e9
        assert (gaps > 0.2).all(), gaps
