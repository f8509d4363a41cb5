"""session.json of an RTMP recording: its format, its states, why a publish ends, and the JSON
files of the folder (the manifest and metadata.json) as they are written.

A recording is "recording" while the server writes it, "finished" once its index tables and
MP4s are written, and "unfinished" after recovery brought a crashed one to a consistent state.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from ..storage.files import write_atomically
from .recording_layout import file_names

FORMAT = "recorder.rtmp-session/1"
RECORDING, UNFINISHED, FINISHED = "recording", "unfinished", "finished"
INTERRUPTED = "interrupted: the recorder stopped"
FINISHED_OPEN = "session finished while publishing"
SUPERSEDED = "superseded: published again"


class RecordingError(RuntimeError):
    """A call a recording cannot honour in its state, or a folder that is not a recording's."""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def new_manifest(app: str, stream_key: str, session_id: str, *, state: str, started: str | None,
                 publishes: list[dict]) -> dict:
    return {"format": FORMAT, "app": app, "stream_key": stream_key, "session_id": session_id,
            "state": state, "started": started, "ended": None, "publishes": publishes,
            "files": file_names(), "mp4": [], "recoveries": []}


def write_json(path: Path, value, *, sync: bool) -> None:
    data = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_atomically(path, data.encode(), sync=sync)
