"""Decoder throughput on the profile9 mix, one sample per message, beside a plain copy.

One process, one core. The body comes from the simulator; it is fed in pieces of a given size,
as the server would feed what it reads. The ceiling copies the same bytes in the same pieces.
A second figure isolates the sample messages (the record-dense part of the mix): the decoded
samples are re-encoded one per record without the camera and audio blobs.
"""

from __future__ import annotations

import time

from ..sim.fleet import make_fleet
from ..wire import Decoder
from ..wire.encoder import interleave, sample_records

SECONDS_OF_DATA = 4.0
PIECE_SIZES = (65536, 1 << 20)
REPEATS = 3


def _decode(body: bytes, piece: int) -> tuple[float, float, int]:
    view = memoryview(body)
    wall, cpu = time.perf_counter(), time.process_time()
    decoder = Decoder()
    for i in range(0, len(body), piece):
        decoder.feed(view[i: i + piece])
    decoder.close()
    c = decoder.counters
    if c.corrupt_bytes or c.bad_crc or c.malformed or c.truncated or c.gaps:
        raise AssertionError(f"benchmark body did not decode cleanly: {c}")
    return time.perf_counter() - wall, time.process_time() - cpu, c.records


def _copy(body: bytes, piece: int) -> float:
    view = memoryview(body)
    wall = time.perf_counter()
    for i in range(0, len(body), piece):
        bytes(view[i: i + piece])
    return time.perf_counter() - wall


def _sample_only(body: bytes) -> bytes:
    decoder = Decoder()
    batch = decoder.feed(body)
    rows = []
    for block in batch.samples:
        for source in set(block.source.tolist()):
            rows += sample_records(block.message, source, block.samples[block.source == source], 1)
    return interleave(rows, 0)[0]


def _measure(label: str, body: bytes) -> list[dict]:
    results = []
    for piece in PIECE_SIZES:
        best = min((_decode(body, piece) for _ in range(REPEATS)), key=lambda r: r[0])
        wall, cpu, records = best
        copy = min(_copy(body, piece) for _ in range(REPEATS))
        row = {
            "body": label, "piece_bytes": piece, "body_mb": len(body) / 1e6, "records": records,
            "decode_mb_per_s": len(body) / wall / 1e6, "decode_records_per_s": records / wall,
            "decode_records_per_cpu_s": records / cpu if cpu else float("nan"),
            "copy_mb_per_s": len(body) / copy / 1e6,
        }
        row["fraction_of_copy"] = row["decode_mb_per_s"] / row["copy_mb_per_s"]
        print(f"{label:<28} pieces {piece:>8} B: {row['decode_mb_per_s']:8.0f} MB/s "
              f"{row['decode_records_per_s'] / 1e6:6.2f} M records/s   | copy ceiling "
              f"{row['copy_mb_per_s']:8.0f} MB/s (decode = {row['fraction_of_copy']:.1%} of copy)")
        results.append(row)
    return results


def run() -> list[dict]:
    device = make_fleet(1, seed=1, profile="profile9", one_sample_per_message=True)[0]
    body = device.window(0.0, SECONDS_OF_DATA)
    results = _measure("profile9, 1 sample/message", body)
    results += _measure("  its sample messages only", _sample_only(body))
    return results
