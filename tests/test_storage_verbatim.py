"""Records the decoder keeps verbatim (opaque, unknown id, bad CRC, malformed, truncated,
oversized, reserved flags) and corrupt bytes are stored losslessly and can be read back."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from storage_support import send

from recorder import open_session
from recorder.storage import Store
from recorder.wire import Decoder, Encoder, record

SERIAL, SESSION = "VERBATIM01", "0b8f8a0e-8f7e-4d3c-9a51-2f1e3d4c5b6a"
IMU = 0x8020


def imu_samples(n: int, t0: int) -> dict:
    return {"timestamp_ns": t0 + np.arange(n) * 1_250_000, "accel_msec2": np.ones((n, 3)),
            "gyro_radsec": np.zeros((n, 3)), "temperature_c": np.full(n, 30.0)}


def messy_body() -> bytes:
    """Good records with every kind of bad one between them, and garbage, and a cut-off end."""
    enc = Encoder()
    parts = [enc.samples("IMU_EVENT", 0, imu_samples(4, 1000))]
    parts.append(enc.opaque(0x8099, b"vendor payload", 2000))                                   # opaque
    parts.append(record(0x7777, b"what is this", sequence=enc._take_sequence(), timestamp_ns=3000))  # unknown_id
    parts.append(record(IMU, b"\x00" * 40, sequence=enc._take_sequence(), timestamp_ns=4000,
                        crc=zlib.crc32(b"\x00" * 40) ^ 1))                                       # bad_crc
    parts.append(b"garbage!" * 3)                                                                # corrupt
    parts.append(record(IMU, struct.pack("<HH", 0, 2) + b"\x00" * 36, sequence=enc._take_sequence(),
                        timestamp_ns=5000))                                                      # malformed
    parts.append(record(IMU, b"", sequence=enc._take_sequence(), timestamp_ns=6000, flags=4))     # reserved_flags
    parts.append(enc.samples("IMU_EVENT", 1, imu_samples(2, 7000)))
    parts.append(record(IMU, b"", sequence=enc._take_sequence(), timestamp_ns=8000, payload_length=1 << 30))  # oversized
    parts.append(enc.samples("IMU_EVENT", 0, imu_samples(3, 9000))[:50])                         # truncated
    return b"".join(parts)


def test_verbatim_records_and_corrupt_bytes_are_retrievable(tmp_path):
    body = messy_body()
    fresh = Decoder()
    batches = [fresh.feed(body), fresh.close()]
    verbatim = [v for b in batches for v in b.verbatim]
    corrupt = [c for b in batches for c in b.corrupt]
    assert {v.reason for v in verbatim} == {"opaque", "unknown_id", "bad_crc", "malformed", "reserved_flags",
                                            "oversized", "truncated"}
    assert corrupt

    writer = Store(tmp_path).open_writer(SERIAL, SESSION)
    send(writer, body, {"session-id": SESSION, "device-serial": SERIAL})
    writer.close()

    reader = open_session(writer.path)
    table = reader.table("verbatim")
    rows = table.to_pylist()
    by_reason = {}
    for i, row in enumerate(rows):
        by_reason.setdefault(row["reason"], []).append((i, row))
    for v in verbatim:
        [(i, row)] = [(i, r) for i, r in by_reason[v.reason] if r["sequence"] == v.sequence]
        assert (row["message_id"], row["flags"], row["timestamp_ns"], row["detail"]) == (
            v.message_id, v.flags, v.timestamp_ns, v.detail)
        assert reader.blob("verbatim", i) == bytes(v.data)  # header and payload, byte for byte
        assert row["request"] == 0
    stored_corrupt = [(row["body_offset"], reader.blob("verbatim", i)) for i, row in by_reason["corrupt"]]
    assert sorted(stored_corrupt) == sorted((c.offset, bytes(c.data)) for c in corrupt)
    assert all(row["timestamp_ns"] is None for _, row in by_reason["corrupt"])

    m = reader.manifest
    c = fresh.counters
    assert {k: m["counters"][k] for k in ("opaque", "bad_crc", "malformed", "truncated", "oversized",
                                          "reserved_flags", "corrupt_bytes")} == {
        "opaque": c.opaque, "bad_crc": c.bad_crc, "malformed": c.malformed, "truncated": c.truncated,
        "oversized": c.oversized, "reserved_flags": c.reserved_flags, "corrupt_bytes": c.corrupt_bytes}
    # sequences the decoder trusted (not those of bad CRC, oversized or truncated records)
    assert m["highest_sequence"] == fresh.highest_sequence
    assert reader.table("imu-left").num_rows == 4 and reader.table("imu-right").num_rows == 2
