"""The oatmeal-calibration header, kept byte for byte.

The first calibration a session receives is calibration.json; a later request whose header
differs is kept beside it as calibration-2.json, -3 ... (never overwritten), and the manifest
lists them all with the request each first came with. A header that is not JSON is kept all the
same and flagged: a bad calibration is never a reason to refuse data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import layout
from .files import write_atomically

HEADER = "oatmeal-calibration"


def header_bytes(value: str | bytes) -> bytes:
    """The header's bytes as received.

    HTTP header values are bytes; a server that turns them into str with latin-1 (h11's bytes
    map one to one) gets them back exactly here. Text that latin-1 cannot hold was decoded as
    UTF-8 and is encoded back the same way.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def parse(data: bytes) -> tuple[dict | None, str | None]:
    """(parsed JSON object, None) or (None, why it does not parse)."""
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(parsed, dict):
        return None, f"JSON {type(parsed).__name__}, not an object"
    return parsed, None


class Calibrations:
    """The calibrations of one session folder; `entries` is the manifest's list."""

    def __init__(self, folder: Path, entries: list[dict] | None = None, *, sync: bool = True):
        self.folder = folder
        self.entries = list(entries or [])
        self.sync = sync

    @classmethod
    def from_files(cls, folder: Path, first_requests: dict[str, int], *, sync: bool = True) -> Calibrations:
        """Entries rebuilt from calibration*.json (for a folder whose manifest is lost);
        first_requests: file name -> the first request that named it in requests.jsonl."""
        found = cls(folder, sync=sync)
        n = 1
        while (folder / layout.calibration_name(n)).exists():
            name = layout.calibration_name(n)
            data = (folder / name).read_bytes()
            _, error = parse(data)
            found.entries.append({"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                                  "parsed": error is None, "error": error, "first_request": first_requests.get(name)})
            n += 1
        return found

    def receive(self, value: str | bytes, request: int) -> str:
        """Keep a request's calibration unless the session already has the same bytes; returns
        the name of the file that holds it."""
        data = header_bytes(value)
        digest = hashlib.sha256(data).hexdigest()
        for entry in self.entries:
            if entry["sha256"] == digest:
                return entry["file"]
        name = layout.calibration_name(len(self.entries) + 1)
        write_atomically(self.folder / name, data, sync=self.sync)
        _, error = parse(data)
        self.entries.append({"file": name, "sha256": digest, "bytes": len(data), "parsed": error is None,
                             "error": error, "first_request": request})
        return name



def summary(entries: list[dict]) -> dict:
    """The manifest's `calibration` section: the first calibration, flags, and every one kept."""
    first = entries[0] if entries else {}
    return {"file": first.get("file"), "parsed": first.get("parsed"), "error": first.get("error"),
            "changed_during_session": len(entries) > 1, "all": entries}
