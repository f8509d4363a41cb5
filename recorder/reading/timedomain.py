"""Which device's clock a session's time domain mapping is on, from the sessions beside it.

A receiver's samples name the broadcaster by `broadcaster_id`, a number that says nothing of
the broadcaster's serial, and the broadcaster itself reports no samples. The sessions of one
data folder can still tell: the broadcaster is a session without samples whose own device
times cover the broadcaster times the receiver reported (its capture times plus its offsets),
recorded around the same wall-clock time. When exactly one session fits, that is the
broadcaster; when none or several do, the serial stays unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..storage import layout
from ..storage.timemap import NO_MAPPING, RECEIVER

BROADCASTER = "broadcaster"
# Sessions of one recording arrive together; this much wall-clock slack allows for a device
# that started streaming late or reconnected, without matching another day's recording.
WALL_SLACK_NS = 600 * 10**9
# The receiver's broadcaster times, taken from its mean offset, are allowed this much error.
DEVICE_SLACK_NS = 10 * 10**9


@dataclass(frozen=True)
class Broadcaster:
    """role: "receiver", "broadcaster", or "broadcaster_or_unsynchronised" (no samples and no
    receiver beside it that points here). serial: the broadcaster's device serial when known
    (this session's own serial for the broadcaster). ids: the broadcaster_id values the
    session's samples carry."""

    role: str
    serial: str | None
    ids: tuple[int, ...]


def find_broadcaster(session: Path, manifest: dict) -> Broadcaster:
    tdm = manifest.get("tdm") or {}
    ids = tuple(tdm.get("broadcaster_ids") or ())
    if tdm.get("samples"):
        matches = [other for other in _neighbours(session) if _is_broadcaster_of(other, manifest)]
        serial = matches[0]["serial"] if len(matches) == 1 else None
        return Broadcaster(RECEIVER, serial, ids)
    if not manifest:
        return Broadcaster(NO_MAPPING, None, ids)
    for receiver in _neighbours(session):
        if (receiver.get("tdm") or {}).get("samples") and _is_broadcaster_of(manifest, receiver):
            candidates = [m for m in _neighbours(Path(receiver["_path"])) if _is_broadcaster_of(m, receiver)]
            if len(candidates) == 1:
                return Broadcaster(BROADCASTER, manifest.get("serial"), ids)
    return Broadcaster(NO_MAPPING, None, ids)


def _neighbours(session: Path) -> list[dict]:
    """The manifests of the other sessions in the same data folder."""
    data_dir = session.resolve().parent.parent
    found = []
    for folder in layout.session_folders(data_dir):
        if folder.resolve() == session.resolve():
            continue
        try:
            manifest = json.loads((folder / layout.MANIFEST).read_bytes())
        except (FileNotFoundError, ValueError):
            continue
        manifest["_path"] = str(folder)
        found.append(manifest)
    return found


def _is_broadcaster_of(candidate: dict, receiver: dict) -> bool:
    """Whether `candidate`, a session without samples, can be the broadcaster of `receiver`."""
    if (candidate.get("tdm") or {}).get("samples"):
        return False
    if not _overlap(_span(candidate, "wall_time_ns"), _span(receiver, "wall_time_ns"), WALL_SLACK_NS):
        return False
    offset = (receiver.get("tdm") or {}).get("mean_offset_ns")
    first, last = _span(receiver, "device_time_ns")
    if offset is None or first is None:
        return False
    broadcaster_times = (first + offset, last + offset)
    return _overlap(_span(candidate, "device_time_ns"), broadcaster_times, DEVICE_SLACK_NS)


def _span(manifest: dict, what: str) -> tuple[int | None, int | None]:
    return manifest.get(f"first_{what}"), manifest.get(f"last_{what}")


def _overlap(a: tuple, b: tuple, slack: int) -> bool:
    if None in a or None in b:
        return False
    return a[0] - slack <= b[1] and b[0] - slack <= a[1]
