"""Records a crash left stored beyond the session's committed highest sequence.

flush() writes stream after stream, then the manifest, whose highest_sequence is therefore a
watermark: every record at or below it is on disk. A kill between two streams' writes can leave
some records above it stored and others, sent earlier, not. Recovery keeps the watermark as the
session's highest sequence (so the device's resends of the missing records are accepted) and
notes the sequences already stored above it here; the writer then drops those when they arrive
again, so each is stored once. The list is short (at most one flush interval of records) and
empties as soon as the session's highest sequence passes its last entry.
"""

from __future__ import annotations

import numpy as np


def to_ranges(sequences: np.ndarray) -> list[list[int]]:
    """Sorted unique sequences as [first, last] runs (compact in the manifest)."""
    s = np.unique(np.asarray(sequences, np.uint64))
    if not len(s):
        return []
    breaks = np.flatnonzero(np.diff(s) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(s) - 1]])
    return [[int(s[a]), int(s[b])] for a, b in zip(starts, ends, strict=True)]


def from_ranges(ranges: list[list[int]]) -> np.ndarray:
    if not ranges:
        return np.empty(0, np.uint64)
    return np.concatenate([np.arange(a, b + 1, dtype=np.uint64) for a, b in ranges])


class StoredAhead:
    def __init__(self, ranges: list[list[int]] | None = None):
        self._sequences = from_ranges(ranges or [])

    def __bool__(self) -> bool:
        return bool(len(self._sequences))

    def new(self, sequences: np.ndarray) -> np.ndarray:
        """Per sequence: not stored yet (vectorised)."""
        if not len(self._sequences):
            return np.ones(len(sequences), bool)
        return ~np.isin(np.asarray(sequences, np.uint64), self._sequences)

    def stored(self, sequence: int | None) -> bool:
        return sequence is not None and bool(len(self._sequences)) and bool(
            np.isin(np.uint64(sequence), self._sequences))

    def passed(self, highest: int | None) -> None:
        """The session's highest sequence reached `highest`: nothing at or below it comes again."""
        if len(self._sequences) and highest is not None and highest >= int(self._sequences[-1]):
            self._sequences = np.empty(0, np.uint64)

    def ranges(self) -> list[list[int]]:
        return to_ranges(self._sequences)
