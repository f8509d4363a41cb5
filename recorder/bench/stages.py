"""What the recorder's own stages cost per GB of a body, each alone, and the MB/s the machine's
cores carry at that cost: what bounds the peers section's MB/s aim (that section prints it).

Stages, on one simulated profile9 device's body (profile9_windows, as the peers section sends):

    decoding   Decoder.feed_pieces in pieces of the server's coalesce_bytes, as a worker decodes
    storing    SessionWriter.write of those batches, RAW frames stored as they come (what a
               saturated worker does), and a flush (fdatasync) every flush_interval_s, as the
               server flushes

each in this process on one core, its process CPU (user and system) per GB of body, the best of
REPEATS: each stage at its cheapest. The peers section adds what it measures in the same run:
receiving (the trio+h11 TLS server that discards: the recorder's receiving stack with nothing
after it) and sending (the bench process's own CPU while it sends to the recorder over TLS: the
devices share the machine's cores with the server).

The bound: cores / (sending + receiving + decoding + storing) seconds per GB. The recorder pays
each stage and the hand-overs between them besides (worker threads, flushes beside the
receiving, two workers on shared cores, caches cold between stages), so it reaches the bound
only where those cost nothing, and goes past it only by the machine's noise from one run to the
next (10 to 30 % here).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from ..server.config import ServerConfig
from ..storage import Store
from ..supervisor import default_count
from ..wire import Decoder
from .ingest import profile9_windows

REPEATS = 3


def _decode(body: bytes, piece: int) -> tuple[float, list]:
    view = memoryview(body)
    cpu = time.process_time()
    decoder = Decoder()
    batches = [decoder.feed_pieces([view[i:i + piece]]) for i in range(0, len(body), piece)]
    batches.append(decoder.close())
    return time.process_time() - cpu, batches


def _store(batches: list, headers: dict[str, str], folder: Path, flush_interval_s: float) -> tuple[float, int]:
    """CPU seconds to write and flush every batch; the records the session then holds."""
    store = Store(folder, raw_images="store")
    writer = store.open_writer(headers["device-serial"], str(uuid.uuid4()))
    writer.begin_request(headers, "bench", time.time_ns())
    cpu = time.process_time()
    last_flush = time.monotonic()
    for batch in batches:
        writer.write(batch)
        if time.monotonic() - last_flush >= flush_interval_s:
            writer.flush()
            last_flush = time.monotonic()
    writer.flush()
    cpu = time.process_time() - cpu
    records = writer.stats()["records"]
    writer.close()
    return cpu, records


def measure(seconds: float = 6.0, *, folder: Path | None = None, repeats: int = REPEATS) -> dict:
    """Decoding and storing seconds of CPU per GB of one profile9 device's body, each the best of
    `repeats`; the storing writes under `folder` (the system's temporary folder by default)."""
    windows, records, headers = profile9_windows(seconds)
    body = b"".join(windows)
    config = ServerConfig()
    decoding, storing = [], []
    for _ in range(repeats):
        cpu, batches = _decode(body, config.coalesce_bytes)
        decoding.append(cpu)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            cpu, stored = _store(batches, headers, Path(tmp), config.flush_interval_s)
        if stored != records:
            raise AssertionError(f"the storing stage stored {stored} of {records} records")
        storing.append(cpu)
    gb = len(body) / 1e9
    return {"body_mb": len(body) / 1e6, "records": records, "decoding_s_per_gb": min(decoding) / gb,
            "storing_s_per_gb": min(storing) / gb, "cores": default_count()}


def bound(stages: dict, *, receiving_s_per_gb: float, sending_s_per_gb: float) -> dict:
    """The MB/s the cores carry when sending, receiving, decoding and storing cost what each
    costs alone, and nothing else."""
    per_gb = {"sending": sending_s_per_gb, "receiving": receiving_s_per_gb,
              "decoding": stages["decoding_s_per_gb"], "storing": stages["storing_s_per_gb"]}
    total = sum(per_gb.values())
    return {"s_per_gb": per_gb, "total_s_per_gb": total, "cores": stages["cores"],
            "mb_per_s": stages["cores"] / total * 1e3}
