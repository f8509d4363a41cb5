"""CRC-32 (IEEE, as zlib.crc32) of many payloads at once.

Sample messages are small and numerous; a per-record zlib call costs more in Python overhead
than in CRC work, so many short payloads of one length are checked together, four bytes per
numpy step (slicing-by-4), where that is cheaper (table_pays). Other payloads go to zlib-ng's
crc32 (the same CRC as zlib's, computed with the CPU's carry-less multiply: 13 GB/s against 2.7
for the system zlib on 256 KiB camera frames; the system zlib's took 6 % of a worker's CPU
receiving profile9 devices).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided
from zlib_ng.zlib_ng import crc32 as zlib_crc32

_POLY = 0xEDB88320
# What the two methods cost (numpy 2, zlib-ng; measured on 50 to 5000 rows of 16 to 300 bytes):
# the table method about 3.2 us per payload byte per group (its numpy calls) plus 0.0027 us per
# payload byte per row; a zlib-ng call about 0.28 us per row, nearly all of it the Python call and
# the slicing, whatever the length at these sizes. So the table pays only for short payloads in
# large groups: 16-byte rows from about 250 of them, 48-byte ones from about 1000, never past 100
# bytes; a profile9 device's megabyte (a few dozen rows per length) goes to zlib-ng.
TABLE_GROUP_US_PER_BYTE = 3.2
TABLE_ROW_US_PER_BYTE = 0.0027
ZLIB_CALL_US = 0.28


def table_pays(rows: int, length: int) -> bool:
    """Whether `rows` payloads of `length` bytes are cheaper by the table than by zlib-ng."""
    per_row_saving = ZLIB_CALL_US - TABLE_ROW_US_PER_BYTE * length
    return length > 0 and rows * per_row_saving > TABLE_GROUP_US_PER_BYTE * length


def _tables() -> np.ndarray:
    base = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        base = np.where(base & 1, (base >> 1) ^ np.uint32(_POLY), base >> 1).astype(np.uint32)
    tables = np.empty((4, 256), dtype=np.uint32)
    tables[0] = base
    for k in range(1, 4):
        tables[k] = (tables[k - 1] >> 8) ^ tables[0][tables[k - 1] & 0xFF]
    return tables


_T0, _T1, _T2, _T3 = _tables()


def crc32_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-32 of each row of a 2-D uint8 array, by whichever method is cheaper for its shape."""
    n, length = rows.shape
    if table_pays(n, length):
        return _table_crc32_rows(rows)
    out = np.empty(n, dtype=np.uint32)
    for i in range(n):
        out[i] = zlib_crc32(rows[i])
    return out


def _table_crc32_rows(rows: np.ndarray) -> np.ndarray:
    n, length = rows.shape
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    words = length // 4
    if words:
        packed = np.ascontiguousarray(rows[:, : words * 4]).view("<u4")
        for j in range(words):
            crc ^= packed[:, j]
            crc = _T3[crc & 0xFF] ^ _T2[(crc >> 8) & 0xFF] ^ _T1[(crc >> 16) & 0xFF] ^ _T0[crc >> 24]
    for j in range(words * 4, length):
        crc = _T0[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
    return crc ^ np.uint32(0xFFFFFFFF)


def crc32_many(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC-32 of buffer[starts[i] : starts[i] + lengths[i]] for every i."""
    out = np.empty(len(starts), dtype=np.uint32)
    if not len(starts):
        return out
    by_zlib = np.ones(len(starts), bool)
    unique, counts = np.unique(lengths, return_counts=True)
    for length, count in zip(unique.tolist(), counts.tolist(), strict=True):
        if table_pays(count, length):
            group = np.flatnonzero(lengths == length)
            rows = as_strided(buffer, shape=(len(buffer) - length + 1, length), strides=(1, 1), writeable=False)
            out[group] = _table_crc32_rows(rows[starts[group]])
            by_zlib[group] = False
    view = memoryview(buffer)
    crc = zlib_crc32
    for i, s, n in zip(np.flatnonzero(by_zlib).tolist(), starts[by_zlib].tolist(), lengths[by_zlib].tolist(), strict=True):
        out[i] = crc(view[s : s + n])
    return out
