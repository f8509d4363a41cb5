"""What the paths given to `recorder replay` hold: device session folders and RTMP recordings,
or folders of them (a data folder, a device's folder). A path that holds neither is an error
that says what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..rtmp.recording_layout import is_recording, recording_folders
from ..storage import layout


class NotReplayable(ValueError):
    """A path that is missing or holds no session or recording."""


@dataclass
class Sources:
    sessions: list[Path]  # device session folders
    recordings: list[Path]  # RTMP recording folders


def find(paths: list[str | Path]) -> Sources:
    """Every session and recording the paths name, in the order given, each once."""
    sessions: list[Path] = []
    recordings: list[Path] = []
    for given in map(Path, paths):
        if not given.exists():
            raise NotReplayable(f"{given}: no such file or folder")
        if not given.is_dir():
            raise NotReplayable(f"{given} is a file, not a session folder (<data-dir>/<serial>/<session-id>/) "
                                f"or an RTMP recording folder")
        if layout.is_session_folder(given):
            found_sessions, found_recordings = [given], []
        elif is_recording(given):
            found_sessions, found_recordings = [], [given]
        else:
            found_sessions = layout.session_folders(given) + [
                s for s in layout.subfolders(given) if layout.is_session_folder(s)]
            found_recordings = recording_folders(given)
        if not found_sessions and not found_recordings:
            raise NotReplayable(f"{given} is not a session: expected a session folder "
                                f"(<data-dir>/<serial>/<session-id>/, as `recorder serve` writes them), an RTMP "
                                f"recording (a folder with stream.flv), or a folder holding them")
        sessions += [s for s in found_sessions if s not in sessions]
        recordings += [r for r in found_recordings if r not in recordings]
    return Sources(sessions, recordings)
