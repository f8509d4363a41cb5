"""Measurements behind recorder/storage/compression.py, and the writer's throughput.

    python -m recorder.bench.storage [--seconds 20]    (or `python -m recorder.bench storage`)

Method. Simulated profile9 data (make_fleet(2, seed=7): device 1 is a TDM receiver, so every
sample stream is present) is decoded with the real Decoder and turned into the stored tables
with the real conversion (tables.sample_batch). Each stream's table is written to memory with
pyarrow.parquet at each setting; the figure is the total over all sample streams (bytes) and
the best of 3 wall-clock times to write and to read back. Blob levels: every camera frame and
audio block of the same run compressed one zstd frame each (as the writer stores them).
Throughput: SessionWriter.write() + flush() of the decoded batches of 2 s bodies fed in 1 MiB
pieces (decoding not counted), one thread, fsync on, on the machine's disk.

Figures (30 s of profile9, `--seconds 30`; 2-core VM, pyarrow 26.0.1, zstandard 0.25; sizes
summed over the 11 sample streams, 82 860 rows, 6.9 MB in Arrow; times are noisy to +-15 ms):

    setting                                    level  size kB  write ms  read ms
    dictionary everywhere (pyarrow default)        1     5578       112       25
                                                   3     5411       109       26
                                                   9     5424       125       27
    no dictionary, PLAIN                           1     3891        29       24
                                                   3     3778        50       27
                                                   9     3761        60       27
    no dictionary, BYTE_STREAM_SPLIT floats        1     3255        44       23
                                                   3     3128        41       23
                                                   9     3096        62       19
    BYTE_STREAM_SPLIT + DELTA ints (chosen)        1     2937        33       21
                                                   3     2913        45       22
                                                   9     2899        63       22

Blob zstd levels, one frame per blob (MB/s of input on one core, compression ratio):

    level   slam RAW GRAY8     rgb H.264        audio PCM
     -1      208 MB/s x1.37    5210 MB/s x1.00  5008 MB/s x1.00
      1      231 MB/s x1.43     835 MB/s x1.00   736 MB/s x1.16
      2      143 MB/s x1.60     830 MB/s x1.00   749 MB/s x1.16
      3      115 MB/s x1.92     607 MB/s x1.00   640 MB/s x1.16
      6       48 MB/s x1.91     472 MB/s x1.00   184 MB/s x1.16

Decision. Parquet: dictionary for strings only (dictionary pages on float sensor data cost 43 %
more space and 2-3x the write time), BYTE_STREAM_SPLIT for floats (-17 %), DELTA_BINARY_PACKED
for monotonic integers (-7 %): 2.9 MB against pyarrow's default 5.4 MB. zstd level 3: level 9
saves 0.5 % for 40 % more time, level 1 costs 1 % more space for no measurable gain. Blobs: zstd
level 3. The SLAM cameras (10.5 MB/s of the 11.8 MB/s a profile9 device sends) shrink by 48 %
instead of 30 % at level 1, for about 0.1 core per device (115 MB/s): well inside "10 MB/s per
device on one core share". Coded video and PCM audio barely compress at any level; frames a
codec compressed (JPEG, H.264, H.265, Opus) are stored at level -1, 8 times level 3's speed on
H.264 for the same size (compression.blob_level), PCM stays at the store's level (x1.16). Store(blob_level=1) halves the blob CPU where cores are short.

Since then, RAW images are stored with PNG's Up filter (each row less the row above, byte by
byte; the "slam rows filtered" column) at level 1: measured side by side in process CPU on the
same 105 MB of SLAM frames (10 s, on a machine loaded by other work, so slower than the table
above), level 3 as they come took 1.49-1.58 s for x1.91, the rows filter and level 1 0.88-0.95 s
for x2.97 (the filter itself 0.03-0.10 s): 40 % less CPU, a third less disk. Level 3 after the
filter gains 1 % more for 1.7 times the time; level -1 after it gives x2.80. The throughput figures
below are from before the filter.

Throughput: write() + flush() of 10 s of one device, one sample per message, 119 MB of body,
29 070 records, blobs at level 3: 1.75-1.87 s wall (1.63-1.74 s CPU) = 64-68 MB/s and
15 500-16 600 records/s, so one profile9 device costs about 18 % of a core (with
Store(blob_level=1): 1.17 s, 102 MB/s, 24 900 records/s, 12 %). The sample records alone (blobs
left out): 27 620 in 0.40 s = 69 000 records/s. close() (every stream's part into Parquet) 0.08 s.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from ..sim.fleet import make_fleet
from ..storage import Store, tables
from ..storage.blobfile import filter_rows
from ..storage.compression import ParquetSettings, image_row_bytes
from ..wire import Decoder

PARQUET_VARIANTS = {
    "dictionary everywhere (pyarrow default)": dict(dictionary_everywhere=True, byte_stream_split=False, delta=False),
    "no dictionary, PLAIN": dict(byte_stream_split=False, delta=False),
    "no dictionary, BYTE_STREAM_SPLIT floats": dict(byte_stream_split=True, delta=False),
    "BYTE_STREAM_SPLIT + DELTA ints (chosen)": dict(byte_stream_split=True, delta=True),
}
PARQUET_LEVELS = (1, 3, 9)
BLOB_LEVELS = (-1, 1, 2, 3, 6)
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
            if kind == "slam":  # the same frames as stored: the rows filter first (see compression.py)
                rows = image_row_bytes(blob.message.prefix.name, blob.prefix, len(blob.data))
                blobs.setdefault("slam rows filtered", []).append((bytes(blob.data), rows))
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
                write_s += _best(lambda: pq.write_table(table, io.BytesIO(), **options))  # noqa: B023
                sink = io.BytesIO()
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
            if kind.endswith("filtered"):
                raw = sum(len(b) for b, _ in items)
                packed = []
                seconds = _best(lambda: packed.append(sum(  # noqa: B023
                    len(compressor.compress(filter_rows(b, rows))) for b, rows in items)))  # noqa: B023
            else:
                raw = sum(map(len, items))
                packed = []
                seconds = _best(lambda: packed.append(sum(len(compressor.compress(b)) for b in items)))  # noqa: B023
            row[kind] = {"mb_per_s": raw / seconds / 1e6, "ratio": raw / packed[0]}
        results.append(row)
    return results


def measure_throughput(seconds: float, root, *, samples_only: bool = False) -> dict:
    """write() + flush() of decoded profile9 batches (one sample per message), one core.
    samples_only: leave the blobs out, to see the per-record cost of the sample streams."""
    device = make_fleet(2, seed=7, one_sample_per_message=True)[1]
    decoder = Decoder()
    bodies = [device.window(t, t + 2.0) for t in np.arange(0.0, seconds, 2.0)]
    batches = []
    for body in bodies:
        view = memoryview(body)
        batches += [decoder.feed(view[i:i + (1 << 20)]) for i in range(0, len(body), 1 << 20)]
    records = decoder.counters.records
    body_bytes = sum(map(len, bodies))
    if samples_only:
        for batch in batches:
            body_bytes -= sum(len(b.data) + b.message.prefix.size + 32 for b in batch.blobs)
            records -= len(batch.blobs)
            batch.blobs = []
    store = Store(root)
    writer = store.open_writer(device.serial, device.session_id)
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
    return {"body_mb": body_bytes / 1e6, "records": records, "wall_s": wall, "cpu_s": cpu,
            "mb_per_s": body_bytes / 1e6 / wall, "records_per_s": records / wall, "close_s": close}


def run(seconds: float = 20.0, folder: Path | None = None) -> dict:
    """Print and return every measurement; the throughput run writes in a temporary folder
    under `folder` (the system's temporary folder by default)."""
    streams, blobs = _stream_tables(simulated_batches(seconds))
    packed = sum(t.nbytes for t in streams.values())
    print(f"sample streams: {len(streams)}, {sum(t.num_rows for t in streams.values())} rows, "
          f"{packed / 1e3:.0f} kB in Arrow")
    print(f"{'setting':42} level  size kB  write ms  read ms")
    parquet = measure_parquet(streams)
    for r in parquet:
        print(f"{r['setting']:42} {r['level']:5} {r['bytes'] / 1e3:8.0f} {r['write_s'] * 1e3:9.0f} {r['read_s'] * 1e3:8.0f}")
    print("\nblob zstd, one frame per blob")
    blob_levels = measure_blobs(blobs)
    for r in blob_levels:
        print(f"level {r['level']:3}  " + "  ".join(f"{k}: {v['mb_per_s']:7.0f} MB/s x{v['ratio']:.2f}"
                                                   for k, v in r.items() if k != "level"))
    print()
    throughput = {}
    for samples_only in (False, True):
        with tempfile.TemporaryDirectory(dir=folder) as root:
            t = measure_throughput(min(seconds, 10.0), Path(root), samples_only=samples_only)
        throughput["sample records only" if samples_only else "all records"] = t
        print(f"write() {'sample records only' if samples_only else 'all records'}: {t['body_mb']:.1f} MB of body, "
              f"{t['records']} records in {t['wall_s']:.2f} s (cpu {t['cpu_s']:.2f} s): {t['mb_per_s']:.0f} MB/s, "
              f"{t['records_per_s']:.0f} records/s; close {t['close_s']:.2f} s")
    return {"parquet": parquet, "blobs": blob_levels, "throughput": throughput}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--dir", type=Path, default=None, help="where the throughput run writes (a temporary folder)")
    args = parser.parse_args(argv)
    run(args.seconds, args.dir)


if __name__ == "__main__":
    main()
