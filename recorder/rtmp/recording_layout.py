"""Where RTMP recordings live on disk, what their files are called, and how to find them.

    <data-dir>/rtmp/<app>/<stream-key>/<session-id>/     session id: UTC start, 20261121T101502Z[-2]
        stream.flv            the FLV as received, append-only (the source of truth)
        session.json          manifest, replaced atomically
        metadata.json         every onMetaData received, with its publish; replaced atomically
        video_index.parquet   one row per video tag  } written at finish and by recovery, from
        audio_index.parquet   one row per audio tag  } the FLV itself
        stream.mp4            the FLV remuxed (no re-encoding), after finish; stream-2.mp4 ...
                              when a publish changed the picture size or codec settings
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from pathlib import Path

from ..storage import layout
from ..storage.files import fsync_dir

RTMP_DIR = layout.RTMP_ROOT
FLV = "stream.flv"
MANIFEST = layout.MANIFEST
METADATA = "metadata.json"
VIDEO_INDEX = "video_index.parquet"
AUDIO_INDEX = "audio_index.parquet"
MP4 = "stream.mp4"

_SESSION_ID = "%Y%m%dT%H%M%SZ"
_MP4_NAME = re.compile(r"stream(?:-(\d+))?\.mp4")


def session_id_for(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime(_SESSION_ID)


def session_start(session_id: str) -> float | None:
    """When a session began, from its id (None for a folder not named by session_id_for)."""
    try:
        return datetime.strptime(session_id[:16], _SESSION_ID).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def new_session_folder(data_dir: Path, app: str, stream_key: str, now: float, *, sync: bool) -> Path:
    """Create <data-dir>/rtmp/<app>/<stream-key>/<session-id>, the id made unique with -2, -3 ..."""
    layout.check_name("app", app)
    layout.check_name("stream key", stream_key)
    data_dir = Path(data_dir)
    parent = data_dir / RTMP_DIR / app / stream_key
    parent.mkdir(parents=True, exist_ok=True)
    base = session_id_for(now)
    for n in itertools.count(1):
        folder = parent / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
            break
        except FileExistsError:
            continue
    if sync:
        for p in (parent, parent.parent, parent.parent.parent, data_dir):
            fsync_dir(p)
    return folder


def file_names() -> dict:
    """The manifest's `files`: what each file of the folder is called."""
    return {"flv": FLV, "metadata": METADATA, "video_index": VIDEO_INDEX, "audio_index": AUDIO_INDEX}


def mp4_name(n: int) -> str:
    return MP4 if n == 1 else f"stream-{n}.mp4"


def mp4_names(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _MP4_NAME.fullmatch(p.name))


def is_recording(folder: Path) -> bool:
    return (Path(folder) / FLV).exists()


def recording_folders(data_dir: Path) -> list[Path]:
    """Every <data-dir>/rtmp/<app>/<stream-key>/<session-id> folder holding a FLV or a manifest."""
    found = []
    for app in layout.subfolders(Path(data_dir) / RTMP_DIR):
        for key in layout.subfolders(app):
            found += [s for s in layout.subfolders(key) if (s / FLV).exists() or (s / MANIFEST).exists()]
    return found
