"""Freed C heap memory is given back to the system (recorder/server/heap.py): a heap left full of
holes, as sessions leave it, shrinks in resident memory once trimmed, and the trimmer says how
much it gave back, measured by the process's resident memory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recorder.server.heap import MALLOC_TRIM

# In a process of its own, so that its heap is only this: a 4 MiB buffer freed first (glibc then
# serves allocations up to that size from its arenas, not from mappings of their own), then 200 MB
# in 200 kB buffers, every other one freed: holes that malloc keeps.
HOLES = """
import json
from recorder.server.heap import HeapTrimmer, resident_bytes
big = bytearray(4 << 20)
del big
kept = [bytearray(200_000) for _ in range(1000)]
del kept[::2]
before = resident_bytes()
trimmer = HeapTrimmer()
trimmer.trim_once()
print(json.dumps({"before": before, "after": resident_bytes(), **trimmer.status()}))
"""


@pytest.mark.skipif(MALLOC_TRIM is None, reason="the C library has no malloc_trim (not glibc)")
def test_a_heap_full_of_holes_is_given_back_once_trimmed():
    out = subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True, check=True).stdout
    figures = json.loads(out)
    freed = 500 * 200_000
    assert figures["trims"] == 1 and figures["trim_available"]
    assert figures["before"] - figures["after"] >= 0.8 * freed, figures
    # Measured around the call alone: the same give or take the few pages the test allocates.
    assert abs(figures["released_bytes"] - (figures["before"] - figures["after"])) < 1 << 20, figures
