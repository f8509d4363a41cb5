"""What the decoder gives out: batches of decoded records and the body's counters."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from ..schema import MessageSpec


@dataclass
class SampleBlock:
    """Every sample of one message type that a piece of body carried, in arrival order.

    `samples` has the message's packed dtype (columns named after the wire fields); `source` and
    `sequence` give, per sample, the record's source and sequence (samples that share a
    sequence came in one record).
    """

    message: MessageSpec
    sequence: np.ndarray  # uint64, per sample
    source: np.ndarray  # uint16, per sample
    samples: np.ndarray  # structured, message.dtype

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def timestamps_ns(self) -> np.ndarray:
        return self.samples[self.message.time_field]

    def labels(self) -> np.ndarray:
        """The source label of every sample."""
        codes, inverse = np.unique(self.source, return_inverse=True)
        names = np.array([self.message.source_label(int(c)) for c in codes], dtype=object)
        return names[inverse]


@dataclass
class Blob:
    """A camera frame, audio block or other blob record: its prefix and its bytes."""

    message: MessageSpec
    sequence: int
    timestamp_ns: int
    label: str
    prefix: dict
    data: memoryview


@dataclass
class VerbatimRecord:
    """A record that is not decoded and is kept byte for byte (header and payload).

    reason is one of: opaque (OPAQUE flag), unknown_id, bad_crc, oversized, reserved_flags,
    malformed, truncated. Header fields are None where the bytes did not reach them.
    """

    reason: str
    detail: str
    data: memoryview
    message_id: int | None = None
    flags: int | None = None
    sequence: int | None = None
    timestamp_ns: int | None = None


@dataclass
class CorruptBytes:
    """Bytes skipped while looking for the next record's magic; offset is into the body."""

    offset: int
    data: memoryview


@dataclass
class Counters:
    records: int = 0  # decoded records (sample and blob), resends not included
    samples: int = 0
    blobs: int = 0
    bytes: int = 0  # body bytes fed
    corrupt_bytes: int = 0
    bad_crc: int = 0
    oversized: int = 0
    reserved_flags: int = 0
    malformed: int = 0
    truncated: int = 0
    opaque: int = 0  # OPAQUE flag set or message id unknown
    gaps: int = 0  # records missing between sequences (dropped)
    resends: int = 0  # records already stored for the session, not stored again

    def add(self, other: Counters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Batch:
    """What one feed() or close() produced. `counters` counts this batch only."""

    samples: list[SampleBlock] = field(default_factory=list)
    blobs: list[Blob] = field(default_factory=list)
    verbatim: list[VerbatimRecord] = field(default_factory=list)
    corrupt: list[CorruptBytes] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)

    def __bool__(self) -> bool:
        return bool(self.samples or self.blobs or self.verbatim or self.corrupt)
