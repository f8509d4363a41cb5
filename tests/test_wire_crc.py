"""The decoder's CRC-32 of many payloads equals zlib's, by either of its methods (the numpy table
for many payloads of one length, zlib-ng's crc32 for the others)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from recorder.wire.crc import crc32_many, crc32_rows, table_pays


def test_payloads_of_mixed_lengths_match_zlib():
    rng = np.random.default_rng(7)
    buffer = rng.integers(0, 256, 3 << 20, dtype=np.uint8)
    # many of 12 bytes (the table), a few of odd lengths and whole camera frames (zlib-ng), one empty
    assert table_pays(500, 12) and not table_pays(40, 48)
    lengths = np.array([12] * 500 + [48] * 40 + [1, 3, 5, 4095, 262144, 1 << 20, 0], np.int64)
    starts = rng.integers(0, len(buffer) - lengths.max(), len(lengths))
    got = crc32_many(buffer, starts, lengths)
    want = [zlib.crc32(buffer[s:s + n].tobytes()) for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]
    assert got.tolist() == want


@pytest.mark.parametrize("rows, length, table", [(500, 10, True), (3, 10, False), (5, 262144, False)])
def test_rows_match_zlib_by_either_method(rows, length, table):
    assert table_pays(rows, length) == table
    data = np.random.default_rng(length).integers(0, 256, (rows, length), dtype=np.uint8)
    assert crc32_rows(data).tolist() == [zlib.crc32(row.tobytes()) for row in data]
