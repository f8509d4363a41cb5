"""How stored bytes are compressed: the Parquet writer's options and the blob zstd level.

Chosen by measurement (`python -m recorder.bench.storage`); the figures are in
recorder/bench/storage.py's docstring. In short: dictionary encoding is only worth it for
string columns (labels, file names, reasons); float sensor data compresses best as
BYTE_STREAM_SPLIT (byte planes of similar exponents) under zstd; monotonic integers
(timestamps, sequences, offsets) as DELTA_BINARY_PACKED.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa

from ..schema import load

PARQUET_ZSTD_LEVEL = 3
BLOB_ZSTD_LEVEL = 3
# Frames a codec already compressed (JPEG, H.264, H.265, Opus) shrink by nothing at any zstd
# level: they get zstd's fastest useful level (about 8 times level 3's speed on H.264), so
# they cost almost no CPU, and stay zstd frames like every other blob.
CODED_BLOB_LEVEL = -1
CODED = {"camera_frame": frozenset({"JPEG", "H264", "H265"}), "audio_block": frozenset({"OPUS"})}
# RAW images are stored with PNG's Up filter (each row as its byte-wise difference from the row
# above, modulo 256: blobfile.ROWS_HEADER) at zstd level 1 (or the store's level, if lower):
# on profile9's simulated SLAM frames 1.9 times level 3's speed, and a third smaller.
RAW_IMAGE_LEVEL = 1
# ... unless the store is told to store them (`recorder serve --raw-images store`, or "auto"
# while the process has no CPU to spare): then they go as they came, unfiltered, at zstd's
# lowest level, which looks for no match and writes raw blocks at memory speed (5 GB/s here,
# against level 1's 150-200 MB/s). The blob file stays zstd frames; RAW frames take three times
# the disk, and profile9's bytes about a third less CPU (recorder/bench/ingest.py's docstring
# has the figures).
RAW_STORED_LEVEL = -(1 << 17)
RAW_IMAGES = ("auto", "compress", "store")
ROW_GROUP_BYTES = 64 << 20  # uncompressed, in memory: what a reader holds per row group
# Integer columns that only grow within a stream: their deltas are small and regular.
DELTA_COLUMNS = frozenset({"timestamp_ns", "sequence", "offset", "body_offset", "wall_time_ns", "capture_timestamp_ns",
                           "broadcaster_timestamp_ns", "frame_number", "chunk", "utc_time_ms"})


class RawImageMode:
    """How RAW camera frames are stored now: `choice` "compress" or "store" always; "auto"
    compresses them unless `saturated` is set (by the server, when its event loop has had no
    time to spare: server/loopload.py), and stores them as they come meanwhile. Taking every
    byte in comes first; compressing is the work that can be left out, and a frame stored
    either way reads back the same.
    One per process, shared by its sessions' writers, which count the frames it stored
    uncompressed that `choice` alone would have compressed."""

    def __init__(self, choice: str = "auto"):
        if choice not in RAW_IMAGES:
            raise ValueError(f"raw_images is {choice!r}: one of {', '.join(RAW_IMAGES)}")
        self.choice = choice
        self.saturated = False
        self.frames_stored_under_load = 0
        self.bytes_stored_under_load = 0

    def now(self) -> str:
        """ "compress" or "store": what a RAW frame that arrives now gets."""
        if self.choice == "auto":
            return "store" if self.saturated else "compress"
        return self.choice

    def stored(self, size: int) -> None:
        """A RAW frame of `size` bytes was stored as it came because of the load."""
        self.frames_stored_under_load += 1
        self.bytes_stored_under_load += size


@dataclass(frozen=True)
class ParquetSettings:
    level: int = PARQUET_ZSTD_LEVEL
    dictionary_everywhere: bool = False  # pyarrow's default; wrong for float sensor data
    byte_stream_split: bool = True  # for float columns
    delta: bool = True  # DELTA_BINARY_PACKED for DELTA_COLUMNS

    def writer_options(self, schema: pa.Schema) -> dict:
        """Keyword arguments for pyarrow.parquet.ParquetWriter / write_table."""
        options = {"compression": "zstd", "compression_level": self.level, "write_statistics": True}
        strings = [f.name for f in schema if pa.types.is_string(f.type)]
        if self.dictionary_everywhere:
            options["use_dictionary"] = True
            return options
        options["use_dictionary"] = strings
        encodings = {}
        for f in schema:
            leaf, path = f.type, f.name
            if pa.types.is_fixed_size_list(leaf):
                # Parquet's column path of a list's values (pyarrow writes compliant nested types)
                leaf, path = leaf.value_type, f"{f.name}.list.element"
            if self.byte_stream_split and pa.types.is_floating(leaf):
                encodings[path] = "BYTE_STREAM_SPLIT"
            elif self.delta and f.name in DELTA_COLUMNS and pa.types.is_integer(leaf):
                encodings[path] = "DELTA_BINARY_PACKED"
        if encodings:
            options["column_encoding"] = encodings
        return options


DEFAULT_PARQUET = ParquetSettings()


@functools.cache
def _coded_codes() -> dict[str, frozenset[int]]:
    schema = load()
    codes = {}
    for prefix_name, labels in CODED.items():
        codec = next(f for f in schema.prefixes[prefix_name].fields if f.name == "codec")
        codes[prefix_name] = frozenset(schema.enums[codec.enum].code(label) for label in labels)
    return codes


def is_raw_image(prefix_name: str, codec: int | None) -> bool:
    return prefix_name == IMAGE_PREFIX and codec == _raw_code()


def blob_level(prefix_name: str, codec: int | None, level: int, raw_images: str = "compress") -> int:
    """The zstd level for one blob: `level` (the store's), unless a codec compressed it already,
    or it is a RAW image (compressed with the rows filter, see image_row_bytes; or stored)."""
    if codec is not None and codec in _coded_codes().get(prefix_name, ()):
        return CODED_BLOB_LEVEL
    if is_raw_image(prefix_name, codec):
        return RAW_STORED_LEVEL if raw_images == "store" else min(level, RAW_IMAGE_LEVEL)
    return level


IMAGE_PREFIX = "camera_frame"


@functools.cache
def _raw_code() -> int:
    codec = next(f for f in load().prefixes[IMAGE_PREFIX].fields if f.name == "codec")
    return load().enums[codec.enum].code("RAW")


def image_row_bytes(prefix_name: str, prefix: dict, size: int, raw_images: str = "compress") -> int | None:
    """For a RAW camera frame of `size` bytes, the row length its rows filter works by (its
    stride); None for any other blob, a RAW frame stored as it came (`raw_images` "store"), or a
    frame whose size is not whole rows of at least two.
    Rows of YUV420P's chroma planes are half as long: filtered by the stride all the same, which
    is as lossless, if less of a gain."""
    if not is_raw_image(prefix_name, prefix.get("codec")) or raw_images == "store":
        return None
    stride = int(prefix.get("stride_bytes") or 0)
    if stride <= 0 or size % stride or size // stride < 2:
        return None
    return stride
