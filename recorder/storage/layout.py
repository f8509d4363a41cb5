"""Where everything of a session lives on disk, and what each stream is called.

    <data-dir>/<device-serial>/<session-id>/
        session.json                 manifest, replaced atomically
        calibration.json             the oatmeal-calibration header as received, byte for byte
        calibration-2.json ...       a later request's different calibration, if any
        requests.jsonl               one line when each request begins and when it ends
        <stream>/part-000000.parquet finished parts: pyarrow.dataset reads the folder as one table
        <stream>/.live-000001.arrows the part being written (Arrow IPC stream; hidden from datasets)
        <stream>/_blobs/000000.zst   bytes of blob streams, one zstd frame per blob (hidden too)

A part's blobs are in the blob file of the same number. pyarrow.dataset (like Spark and most
Parquet readers) skips names starting with `.` or `_`, so a stream folder reads cleanly while it
is being written.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..schema import MessageSpec

MANIFEST = "session.json"
CALIBRATION = "calibration.json"
REQUEST_LOG = "requests.jsonl"
# Room a session being recorded sets aside, so that a full disk still lets its manifest say so
# (storage/session.py); gone once the session is finished or recovered.
SPACE_RESERVE = ".space-reserve"
BLOB_DIR = "_blobs"
VERBATIM_STREAM = "verbatim"
RAW_BODY_STREAM = "raw-body"
# <data-dir>/rtmp/<app>/<stream-key>/<session-id>/ holds RTMP recordings, not a device's sessions.
RTMP_ROOT = "rtmp"

_PART = re.compile(r"part-(\d{6,})\.parquet")
_LIVE = re.compile(r"\.live-(\d{6,})\.arrows")
_BLOB = re.compile(r"(\d{6,})\.zst")
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def sample_stream(spec: MessageSpec, label: str) -> str:
    """split_by_source messages: a folder per source label; others: the message's stream."""
    return label if spec.split_by_source else spec.stream


def calibration_name(n: int) -> str:
    return CALIBRATION if n == 1 else f"calibration-{n}.json"


def part_name(n: int) -> str:
    return f"part-{n:06d}.parquet"


def part_temp_name(n: int) -> str:
    return f".part-{n:06d}.parquet.tmp"


def live_name(n: int) -> str:
    return f".live-{n:06d}.arrows"


def blob_name(n: int) -> str:
    """Relative to the stream folder (the index's `file` column holds this)."""
    return f"{BLOB_DIR}/{n:06d}.zst"


def part_number(path: Path) -> int | None:
    m = _PART.fullmatch(path.name)
    return int(m.group(1)) if m else None


def live_number(path: Path) -> int | None:
    m = _LIVE.fullmatch(path.name)
    return int(m.group(1)) if m else None


def blob_number(path: Path) -> int | None:
    m = _BLOB.fullmatch(path.name)
    return int(m.group(1)) if m else None


def parts(folder: Path) -> dict[int, Path]:
    return _numbered(folder, part_number)


def lives(folder: Path) -> dict[int, Path]:
    return _numbered(folder, live_number)


def blob_files(folder: Path) -> dict[int, Path]:
    return _numbered(folder / BLOB_DIR, blob_number)


def _numbered(folder: Path, number) -> dict[int, Path]:
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return {}
    found = {}
    for p in entries:
        n = number(p)
        if n is not None:
            found[n] = p
    return dict(sorted(found.items()))


def next_number(folder: Path) -> int:
    """The number after every part, live file and blob file already in the stream's folder."""
    used = [*parts(folder), *lives(folder), *blob_files(folder)]
    return max(used) + 1 if used else 0


def stream_folders(session: Path) -> dict[str, Path]:
    """Every stream folder of a session (any folder not hidden), by stream name."""
    try:
        entries = sorted(session.iterdir())
    except FileNotFoundError:
        return {}
    return {p.name: p for p in entries if p.is_dir() and not p.name.startswith((".", "_"))}


def is_session_folder(folder: Path) -> bool:
    """A session's folder: a manifest, or a stream folder holding parts (a crash can come
    before the first manifest). A data folder's device folders hold sessions, never parts."""
    return (folder / MANIFEST).exists() or any(parts(f) or lives(f) for f in stream_folders(folder).values())


def session_folders(data_dir: Path) -> list[Path]:
    """Every <serial>/<session id> folder under data_dir holding a manifest or stream data.
    Other folders are not sessions, whatever their depth: recovery must never write into them."""
    found = []
    for device in subfolders(data_dir):
        if device.name == RTMP_ROOT:
            continue
        found += [session for session in subfolders(device) if is_session_folder(session)]
    return found


def subfolders(folder: Path) -> list[Path]:
    """The folders in `folder` not hidden, sorted; none when it is missing or not a folder."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def check_name(kind: str, value: str) -> str:
    """A serial or session id that is safe as one folder name (no separators, not . or ..)."""
    if not _SAFE_NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{kind} {value[:80]!r} cannot name a folder: use 1 to 128 of A-Z a-z 0-9 . _ -")
    return value
