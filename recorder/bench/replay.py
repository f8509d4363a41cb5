"""Replay at speed 0 through every callback, beside reading the same files with pyarrow alone.

    python -m recorder.bench replay

Method. Simulated profile9 devices (make_fleet(2, seed=7): device 1 is a TDM receiver, so every
sample stream is there), SECONDS of each stored by the real storage, one sample per message as
the worst case for the number of rows. Replay: recorder.sdk's create_replay_source at
speed_multiplier 0 with a handler that registers every callback and counts what it gets; image
decoding off (decoding 2560x1920 H.264 is the decoder's cost, not replay's), then on. Ceiling,
in the same run: every Parquet part of every stream read with pyarrow.parquet.read_table and
every blob file decompressed with zstandard, which is what the replay must read at least.
Samples are stored rows (one callback each, camera frames and audio blocks included); MB are
the stored bytes read (Parquet files plus decompressed blobs). Best of REPEATS.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from .. import open_session
from ..sdk import ReplaySourceConfig, StreamDataInterface, create_replay_source
from ..sim.fleet import make_fleet
from ..storage import Store, layout
from ..storage.blobfile import read_all
from ..wire import Decoder

SECONDS = 10.0
REPEATS = 3
CALLBACKS = ("rgb", "slam", "et", "imu", "magnetometer", "barometer", "audio", "gps", "ppg", "eye_gaze",
             "hand_pose", "vio", "vio_high_frequency", "time_domain_mapping", "battery", "temperature")


def store_sessions(data_dir: Path, seconds: float) -> list[Path]:
    store = Store(data_dir, sync=False)
    paths = []
    for device in make_fleet(2, seed=7, one_sample_per_message=True):
        writer = store.open_writer(device.serial, device.session_id)
        writer.begin_request(device.headers(), "127.0.0.1:1", time.time_ns())
        decoder = Decoder()
        writer.write(decoder.feed(device.window(0, seconds)))
        writer.write(decoder.close())
        writer.end_request(decoder.counters, time.time_ns())
        writer.close()
        paths.append(store.session_path(device.serial, device.session_id))
    return paths


def stored_rows(paths: list[Path]) -> int:
    rows = 0
    for path in paths:
        with open_session(path) as session:
            rows += sum(session.table(s, columns=["timestamp_ns"]).num_rows for s in session.streams()
                        if s not in (layout.VERBATIM_STREAM, layout.RAW_BODY_STREAM))
    return rows


def read_with_pyarrow(paths: list[Path]) -> tuple[float, int]:
    """Seconds to read every part and decompress every blob file; bytes read."""
    started, read = time.perf_counter(), 0
    for path in paths:
        for folder in layout.stream_folders(path).values():
            for part in layout.parts(folder).values():
                read += pq.read_table(part).nbytes
            for blobs in layout.blob_files(folder).values():
                read += len(read_all(blobs))
    return time.perf_counter() - started, read


def counting_handler(counts: dict[str, int], decode: bool):
    def make() -> StreamDataInterface:
        handler = StreamDataInterface(enable_image_decoding=decode)
        for name in CALLBACKS:
            def count(*args, _name=name, **kwargs):
                counts[_name] = counts.get(_name, 0) + 1
            getattr(handler, f"register_{name}_callback")(count)
        return handler
    return make


def replay(paths: list[Path], decode: bool) -> tuple[float, int]:
    counts: dict[str, int] = {}
    started = time.perf_counter()
    source = create_replay_source(ReplaySourceConfig([str(p) for p in paths], speed_multiplier=0),
                                  counting_handler(counts, decode))
    source.wait()
    if source.error:
        raise RuntimeError(f"replay failed: {source.error}")
    elapsed = time.perf_counter() - started
    return elapsed, sum(counts.values())


def run(seconds: float = SECONDS) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        paths = store_sessions(Path(folder) / "data", seconds)
        rows = stored_rows(paths)
        ceiling_s, read = min(read_with_pyarrow(paths) for _ in range(REPEATS))
        plain_s, delivered = min(replay(paths, decode=False) for _ in range(REPEATS))
        decoded_s, _ = min(replay(paths, decode=True) for _ in range(REPEATS))
    mb = read / 1e6
    results = {
        "devices": len(paths), "seconds_of_data": seconds, "stored_rows": rows, "callbacks": delivered,
        "stored_mb": mb,
        "pyarrow_read_s": ceiling_s, "pyarrow_rows_per_s": rows / ceiling_s, "pyarrow_mb_per_s": mb / ceiling_s,
        "replay_s": plain_s, "replay_samples_per_s": delivered / plain_s, "replay_mb_per_s": mb / plain_s,
        "replay_decoding_s": decoded_s, "replay_decoding_samples_per_s": delivered / decoded_s,
        "replay_share_of_ceiling": ceiling_s / plain_s,
    }
    print(f"{len(paths)} profile9 devices x {seconds:g} s, one sample per message: {rows:,} stored rows, {mb:.1f} MB")
    print(f"  pyarrow alone (parts + blobs)   {ceiling_s:7.3f} s  {rows / ceiling_s:12,.0f} rows/s  {mb / ceiling_s:7.1f} MB/s")
    print(f"  replay, speed 0, no decoding    {plain_s:7.3f} s  {delivered / plain_s:12,.0f} samples/s  "
          f"{mb / plain_s:7.1f} MB/s  = {ceiling_s / plain_s:.0%} of the ceiling (aim: 50 %)")
    print(f"  replay, speed 0, H.264 decoded  {decoded_s:7.3f} s  {delivered / decoded_s:12,.0f} samples/s")
    if delivered != rows:
        print(f"  NOTE: {delivered:,} callbacks for {rows:,} stored rows")
    return results


if __name__ == "__main__":
    run()
