"""Shared by the crash tests (tests/test_chaos.py: kill -9; tests/test_power_loss.py: power
cuts): what a device sent, window by window, and the check that every file a crash left in a
data folder opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import zstandard
from server_support import records_in, session_folders, stored_sequences

from recorder import open_session
from recorder.storage import layout


def window_starts(windows: list[bytes]) -> list[int]:
    """The sequence of each window's first record, then the total (a record never spans windows)."""
    starts = [0]
    for window in windows:
        starts.append(starts[-1] + records_in([window]))
    return starts


ROWS_HEADER_START = bytes.fromhex("5e2a4d18") + (4).to_bytes(4, "little")  # zstd skippable frame, 4 bytes


def zstd_frames(path: Path) -> int:
    """How many zstd frames the file holds, each decompressed; fails on a frame cut short."""
    frames, rest = 0, path.read_bytes()
    while rest:
        if rest[:8] == ROWS_HEADER_START:  # a RAW image's row length, in a skippable frame: part of its blob
            rest = rest[12:]
        frame = zstandard.ZstdDecompressor().decompressobj()
        frame.decompress(rest)
        if not frame.eof:
            raise ValueError(f"the last zstd frame of {path.name} is cut short")
        frames, rest = frames + 1, frame.unused_data
    return frames


def assert_every_file_opens(data_dir: Path, where: str, *, recovered: bool) -> dict[Path, np.ndarray]:
    """Every Parquet file opens with pyarrow and every stream folder reads as a dataset; every
    session opens with the reading API, which reads each stream whole (its live file up to the
    last flushed batch) and every blob its index holds from the zstd blob files. Once recovered
    (blob bytes no row points at are cut), each blob file is also whole zstd frames as `zstd -d`
    reads them, one per row of its stream. Returns the sequences each session holds."""
    for path in sorted(Path(data_dir).rglob("*.parquet")):
        try:
            pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
            raise AssertionError(f"{where}: {path.relative_to(data_dir)} does not open: {exc!r}") from exc
    held = {}
    for session in session_folders(data_dir):
        name = session.relative_to(data_dir)
        try:
            with open_session(session) as reader:
                for stream in reader.streams():
                    folder = session / stream
                    ds.dataset(folder, format="parquet").to_table()
                    rows = reader.table(stream).num_rows
                    if (folder / layout.BLOB_DIR).is_dir() and rows:
                        blobs = reader.blobs(stream, 0, rows)
                        assert len(blobs) == rows, (stream, len(blobs), rows)
                    if recovered and (folder / layout.BLOB_DIR).is_dir():
                        frames = sum(zstd_frames(f) for f in layout.blob_files(folder).values())
                        assert frames == rows, f"{stream}: {frames} zstd frames in its blob files, {rows} rows"
                held[session] = stored_sequences(reader)
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"{where}: session {name} does not read whole: {exc!r}") from exc
    return held
