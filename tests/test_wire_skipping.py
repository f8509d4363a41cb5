"""The decoder steps over the payloads of large records instead of searching them for the magic.

What it gives out must be exactly what searching every byte gives: the same records, verbatim
records, corrupt bytes and counters, whatever the body holds (magics and believable headers
inside camera frames, garbage, bad CRCs, oversized lengths, a cut-off end) and however it is cut
into pieces. The reference is the same decoder with every magic taken as a possible start.
"""

from __future__ import annotations

import numpy as np
import pytest

from recorder.schema import load
from recorder.wire import Decoder, record
from recorder.wire.decoder import SKIP_PAYLOAD_BYTES, WINDOW_BYTES
from recorder.wire.encoder import blob_payload, sample_payload

SCHEMA = load()
IMU = SCHEMA.message("IMU_EVENT")
SLAM = SCHEMA.message("SLAM_CAMERA_FRAME")
MAGIC = b"SRF1"


class SearchingEveryByte(Decoder):
    def _record_starts(self, b, view):
        return self._find_magic(b)


def imu(sequence: int, rng) -> bytes:
    samples = np.frombuffer(rng.bytes(IMU.sample_size * int(rng.integers(1, 4))), IMU.dtype)
    return record(IMU.id, sample_payload(IMU, 1, samples), sequence=sequence, timestamp_ns=sequence)


def frame(sequence: int, rng, size: int) -> bytes:
    image = bytearray(rng.bytes(size))
    for _ in range(int(rng.integers(0, 4))):  # magics, some with a whole believable record after them
        at = int(rng.integers(0, max(1, size - 100)))
        planted = imu(10**6 + at, rng) if rng.random() < 0.5 else MAGIC
        image[at:at + len(planted)] = planted[:size - at]
    # JPEG: any number of bytes is a well-formed frame
    prefix = {"camera_id": 1, "codec": 1, "pixel_format": 0, "frame_number": sequence, "width": 640,
              "height": 480, "stride_bytes": 640}
    return record(SLAM.id, blob_payload(SLAM, prefix, bytes(image)), sequence=sequence, timestamp_ns=sequence)


def body(rng) -> bytes:
    out = bytearray()
    for sequence in range(int(rng.integers(1, 60))):
        kind = rng.random()
        if kind < 0.55:
            out += imu(sequence, rng)
        elif kind < 0.85:
            size = int(rng.choice([100, SKIP_PAYLOAD_BYTES - 40, SKIP_PAYLOAD_BYTES, 40_000, WINDOW_BYTES + 7, 300_000]))
            data = bytearray(frame(sequence, rng, size))
            if rng.random() < 0.15:  # a bad CRC: taken whole all the same
                data[-1] ^= 0xFF
            out += data
        elif kind < 0.93:
            out += rng.bytes(int(rng.integers(1, 5000)))  # garbage, sometimes with a magic in it
            if rng.random() < 0.5:
                out += MAGIC
        else:  # oversized: only its header is taken, what follows is searched
            out += record(IMU.id, b"", sequence=sequence, timestamp_ns=0, payload_length=(64 << 20) + 1)
    if rng.random() < 0.3:
        del out[int(rng.integers(0, len(out))):]  # cut off anywhere
    return bytes(out)


def decoded(decoder: Decoder, parts: list[bytes]):
    batches = [decoder.feed(p) for p in parts] + [decoder.close()]
    samples = [(b.message.id, b.sequence.tolist(), b.samples.tobytes()) for batch in batches for b in batch.samples]
    blobs = [(b.sequence, b.label, b.prefix, bytes(b.data)) for batch in batches for b in batch.blobs]
    verbatim = [(v.reason, bytes(v.data), v.sequence) for batch in batches for v in batch.verbatim]
    corrupt = b"".join(bytes(c.data) for batch in batches for c in batch.corrupt)
    offsets = [c.offset for batch in batches for c in batch.corrupt]
    return samples, blobs, verbatim, corrupt, offsets, decoder.counters.as_dict()


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("skip, window", [(SKIP_PAYLOAD_BYTES, WINDOW_BYTES), (40, 1), (40, 97), (1000, 333)],
                         ids=["as-shipped", "skip-small-window-1", "skip-small-window-97", "window-333"])
def test_stepping_over_large_payloads_gives_what_searching_every_byte_gives(seed, skip, window):
    """Small windows and thresholds put window edges and steps everywhere in the body: inside
    garbage, on a magic, inside a header, between records."""
    rng = np.random.default_rng(seed)
    data = body(rng)
    cuts = sorted(int(c) for c in rng.integers(0, len(data) + 1, int(rng.integers(0, 8))))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    decoder = Decoder()
    decoder.skip_payload_bytes, decoder.window_bytes = skip, window
    got = decoded(decoder, parts)
    assert got == decoded(SearchingEveryByte(), parts)
    assert got[5]["bytes"] == len(data)


def test_a_magic_inside_a_large_frame_is_not_taken_for_a_record():
    rng = np.random.default_rng(1)
    data = frame(0, rng, 100_000) + imu(1, rng)
    decoder = Decoder()
    decoder.feed(data)
    decoder.close()
    assert decoder.counters.blobs == 1 and decoder.counters.records == 2
    assert decoder.counters.corrupt_bytes == 0 and decoder.counters.bad_crc == 0
