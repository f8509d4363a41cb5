"""Time domain mapping: a receiver's device time on the broadcaster's clock (schemas/protocol.md).

offset = broadcaster_timestamp_ns - capture_timestamp_ns. A time t maps to t + offset(t), where
offset is interpolated linearly between the two samples around t and held at the nearest
sample's value outside their range.
"""

from __future__ import annotations

import numpy as np

RECEIVER = "receiver"
NO_MAPPING = "broadcaster_or_unsynchronised"  # one session alone cannot tell which


def to_broadcaster_time(t_ns, capture_ns: np.ndarray, offset_ns: np.ndarray) -> np.ndarray:
    """Device times (int64 ns) mapped to the broadcaster's clock (int64 ns).

    Interpolation runs on times relative to the first sample, so float64 keeps sub-nanosecond
    precision however long the device has been up.
    """
    t = np.asarray(t_ns, np.int64)
    if not len(capture_ns):
        raise ValueError("no time domain mapping samples: this device is the broadcaster or unsynchronised")
    order = np.argsort(capture_ns, kind="stable")
    capture, offset = np.asarray(capture_ns, np.int64)[order], np.asarray(offset_ns, np.int64)[order]
    origin, base = capture[0], offset[0]
    interpolated = np.interp((t - origin).astype(np.float64), (capture - origin).astype(np.float64),
                             (offset - base).astype(np.float64))
    return t + base + np.rint(interpolated).astype(np.int64)


class TdmSummary:
    """Running totals of a TDM stream: cheap to update per block, small to keep in the manifest."""

    def __init__(self, d: dict | None = None):
        d = d or {}
        self.samples = int(d.get("samples", 0))
        self.offset_sum_ns = int(d.get("offset_sum_ns", 0))  # Python int: no overflow
        self.latest_capture_ns = d.get("latest_capture_ns")
        self.latest_offset_ns = d.get("latest_offset_ns")
        self.broadcaster_ids = list(d.get("broadcaster_ids", []))

    def add(self, capture_ns: np.ndarray, offset_ns: np.ndarray, broadcaster_id: np.ndarray) -> None:
        if not len(capture_ns):
            return
        self.samples += len(capture_ns)
        self.offset_sum_ns += int(np.sum(offset_ns.astype(np.int64), dtype=np.int64))
        last = int(np.argmax(capture_ns))
        if self.latest_capture_ns is None or int(capture_ns[last]) >= self.latest_capture_ns:
            self.latest_capture_ns, self.latest_offset_ns = int(capture_ns[last]), int(offset_ns[last])
        for b in np.unique(broadcaster_id).tolist():
            if b not in self.broadcaster_ids:
                self.broadcaster_ids.append(int(b))

    @property
    def mean_offset_ns(self) -> float | None:
        return self.offset_sum_ns / self.samples if self.samples else None

    def as_dict(self) -> dict:
        return {"samples": self.samples, "offset_sum_ns": self.offset_sum_ns,
                "latest_capture_ns": self.latest_capture_ns, "latest_offset_ns": self.latest_offset_ns,
                "broadcaster_ids": self.broadcaster_ids}

    def manifest(self) -> dict:
        """The manifest's `tdm` section."""
        return {"role": RECEIVER if self.samples else NO_MAPPING, "samples": self.samples,
                "mean_offset_ns": self.mean_offset_ns, "latest_offset_ns": self.latest_offset_ns,
                "broadcaster_ids": self.broadcaster_ids}
