"""A finished recording's MP4s: one per run of its FLV with one configuration (see remux.py),
named stream.mp4, stream-2.mp4 ..., each with its manifest entry."""

from __future__ import annotations

import os
from pathlib import Path

from . import flv as F
from .recording_layout import FLV, mp4_name, mp4_names
from .remux import plan_segments, remux_to_mp4
from .tag_index import publish_numbers


def write_mp4s(folder: Path, scan: F.FlvScan, publishes: list[dict], *, sync: bool = True) -> tuple[list[dict], str | None]:
    """Remux the FLV into its MP4s; MP4s of an earlier finish that are not written again are
    deleted. Returns their manifest entries and, when the remux failed, why (the FLV is
    untouched either way)."""
    path = folder / FLV
    entries, written, error = [], set(), None
    try:
        segments = [s for s in plan_segments(path, scan) if not s.empty]
        for n, seg in enumerate(segments, 1):
            name = mp4_name(n)
            result = remux_to_mp4(path, folder / name, segment=seg, sync=sync)
            written.add(name)
            first, last = publish_numbers([seg.start, max(seg.start, seg.end - 1)], publishes).tolist()
            entries.append({"file": name, "first_timestamp_ms": seg.first_ts, "last_timestamp_ms": seg.last_ts,
                            "publishes": list(range(max(first, 1), last + 1)) if last else [],
                            "video_frames": result.video_packets, "audio_frames": result.audio_packets,
                            "timestamps_adjusted": result.adjusted})
    except Exception as e:  # noqa: BLE001 - a remux failure must not lose the session's other files
        error = f"{type(e).__name__}: {e}".replace(f"{folder}{os.sep}", "")
    for p in mp4_names(folder):
        if p.name not in written:
            p.unlink()
    return entries, error
