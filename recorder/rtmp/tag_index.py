"""video_index.parquet and audio_index.parquet: one row per tag of the recording's FLV, built
from the FLV itself (at finish, and by recovery).

Rows: timestamp_ms (DTS on the FLV timeline), pts_ms (DTS + composition offset),
composition_offset_ms, keyframe (a coded key picture; every audio frame is one), sequence_header,
frame (a coded picture or audio frame: not a sequence header, end of sequence or command), size
(tag data bytes), flv_offset (where the tag's 11-byte header starts), publish (1, 2, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..storage.files import replace_durably
from . import flv as F
from .recording_layout import AUDIO_INDEX, VIDEO_INDEX

INDEX_SCHEMA = pa.schema([
    ("timestamp_ms", pa.int64()),
    ("pts_ms", pa.int64()),
    ("composition_offset_ms", pa.int32()),
    ("keyframe", pa.bool_()),
    ("sequence_header", pa.bool_()),
    ("frame", pa.bool_()),
    ("size", pa.int32()),
    ("flv_offset", pa.int64()),
    ("publish", pa.int32()),
])


def publish_numbers(offsets, publishes: list[dict]) -> np.ndarray:
    """The publish each FLV offset belongs to: the last one that began at or before it."""
    starts = np.array([p["flv_offset"] for p in publishes], dtype=np.int64)
    numbers = np.array([0] + [p["number"] for p in publishes], dtype=np.int32)
    return numbers[np.searchsorted(starts, np.asarray(offsets, dtype=np.int64), side="right")]


def index_table(scan: F.FlvScan, kind: int, publishes: list[dict]) -> pa.Table:
    tags = [t for t in scan.tags if t.type == kind]
    n = len(tags)
    ts = np.fromiter((t.timestamp for t in tags), np.int64, n)
    headers = [t.video if kind == F.VIDEO else t.audio for t in tags]
    if kind == F.VIDEO:
        cts = np.fromiter((h.composition_offset if h else 0 for h in headers), np.int32, n)
        key = np.fromiter((bool(h and h.is_frame and h.keyframe) for h in headers), np.bool_, n)
    else:
        cts = np.zeros(n, np.int32)
        key = np.fromiter((bool(h and h.is_frame) for h in headers), np.bool_, n)
    seq = np.fromiter((bool(h and h.sequence_header) for h in headers), np.bool_, n)
    frame = np.fromiter((bool(h and h.is_frame) for h in headers), np.bool_, n)
    offsets = np.fromiter((t.offset for t in tags), np.int64, n)
    return pa.table({
        "timestamp_ms": ts,
        "pts_ms": ts + cts,
        "composition_offset_ms": cts,
        "keyframe": key,
        "sequence_header": seq,
        "frame": frame,
        "size": np.fromiter((t.size for t in tags), np.int32, n),
        "flv_offset": offsets,
        "publish": publish_numbers(offsets, publishes),
    }, schema=INDEX_SCHEMA)


def write_indexes(folder: Path, scan: F.FlvScan, publishes: list[dict], *, sync: bool = True) -> None:
    for kind, name in ((F.VIDEO, VIDEO_INDEX), (F.AUDIO, AUDIO_INDEX)):
        temp = folder / f".{name}.tmp"
        pq.write_table(index_table(scan, kind, publishes), temp)
        replace_durably(temp, folder / name, sync=sync)
