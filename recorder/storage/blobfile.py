"""Append-only files of zstd frames: one frame per blob, so one blob reads without the rest.

Concatenated zstd frames are themselves a valid zstd stream, so `zstd -d` on a whole file gives
every blob back to back. Each frame records its content size, so a reader knows how much it
gets. The writer hands back where each frame went; the caller writes that into its index only
after flush() has pushed the frame out (bytes before the rows that point at them).
"""

from __future__ import annotations

import os
from pathlib import Path

import zstandard

from .compression import BLOB_ZSTD_LEVEL


class BlobFile:
    def __init__(self, path: Path, *, level: int = BLOB_ZSTD_LEVEL):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Unbuffered: frames are tens of kB and up, and every write must reach the OS by flush().
        self._file = open(path, "ab", buffering=0)
        self.size = self._file.seek(0, os.SEEK_END)
        self._dirty = False
        self.level = level
        self._compressors: dict[int, zstandard.ZstdCompressor] = {}

    def append(self, data, level: int | None = None) -> tuple[int, bytes]:
        """Compress `data` as one frame at the end of the file (at the file's level, or at
        `level`); returns its offset and the frame as written (the live feed sends it on as it is)."""
        level = self.level if level is None else level
        compressor = self._compressors.get(level)
        if compressor is None:
            compressor = self._compressors[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
        frame = compressor.compress(data)
        offset = self.size
        view = memoryview(frame)
        while view:
            view = view[self._file.write(view):]
        self.size += len(frame)
        self._dirty = True
        return offset, frame

    def flush(self, *, sync: bool) -> None:
        if self._dirty and sync:
            os.fdatasync(self._file.fileno())
        self._dirty = False

    def close(self, *, sync: bool) -> None:
        if not self._file.closed:
            self.flush(sync=sync)
            self._file.close()

    def abandon(self) -> None:
        """Close without another write or sync (after a storage error)."""
        self._file.close()


def read_frame(file, offset: int, length: int) -> bytes:
    """One blob from an open file (binary, seekable)."""
    file.seek(offset)
    frame = file.read(length)
    if len(frame) != length:
        raise EOFError(f"blob frame at {offset} wants {length} bytes, the file has {len(frame)}")
    return zstandard.ZstdDecompressor().decompress(frame)


def read_frames(file, offsets, lengths) -> list[bytes]:
    """Several blobs of one open file, in the order given: the span that holds them is read
    once and each frame decompressed from it, so that consecutive frames cost one read."""
    if not len(offsets):
        return []
    start = min(int(o) for o in offsets)
    end = max(int(o) + int(n) for o, n in zip(offsets, lengths, strict=True))
    file.seek(start)
    span = memoryview(file.read(end - start))
    if len(span) != end - start:
        raise EOFError(f"blob frames up to {end} want {end - start} bytes from {start}, the file has {len(span)}")
    decompressor = zstandard.ZstdDecompressor()
    return [decompressor.decompress(span[int(o) - start:int(o) - start + int(n)])
            for o, n in zip(offsets, lengths, strict=True)]


def read_span(file, offset: int, length: int) -> bytes:
    """Consecutive frames starting at offset, `length` bytes of them, decompressed back to back
    in one call (the caller knows each blob's size)."""
    file.seek(offset)
    span = file.read(length)
    if len(span) != length:
        raise EOFError(f"blob frames at {offset} want {length} bytes, the file has {len(span)}")
    with zstandard.ZstdDecompressor().stream_reader(span, read_across_frames=True) as reader:
        return reader.read()


def read_all(path: Path) -> bytes:
    """Every frame of a file, back to back (one pass, no per-frame seeks)."""
    with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as reader:
        return reader.read()
