"""requests.jsonl: one JSON line when each request of a session begins and one when it ends.

Appended, never rewritten, so a session's history grows without rewriting anything. A begin
line holds the request's headers (the calibration by file name: it is tens of kB and rarely
changes), its remote address and wall-clock time; an end line its decoder counters. A request
with a begin line and no end line was cut off by a crash.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import layout
from .files import append_line


def append(folder: Path, entry: dict, *, sync: bool = True) -> None:
    append_line(folder / layout.REQUEST_LOG, json.dumps(entry, separators=(",", ":")).encode() + b"\n", sync=sync)


def read(folder: Path) -> list[dict]:
    """Every whole line; a line cut off by a crash is left out."""
    try:
        data = (folder / layout.REQUEST_LOG).read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for line in data.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def requests(folder: Path) -> dict[int, dict]:
    """Per request: its begin line's fields, with `end` holding its end line (or None)."""
    out: dict[int, dict] = {}
    for entry in read(folder):
        n = entry.get("request")
        if entry.get("event") == "begin":
            out[n] = {**entry, "end": None}
        elif entry.get("event") == "end" and n in out:
            out[n]["end"] = entry
    return out
