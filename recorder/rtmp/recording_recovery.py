"""Recovery of an RTMP recording left by a crash (kill -9, power loss), and finding the ones
that need it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..storage.files import truncate_durably, write_atomically
from ..storage.manifest import read_json
from . import flv as F
from .recording_layout import FLV, MANIFEST, METADATA, file_names, recording_folders, session_start
from .recording_manifest import (
    FINISHED,
    INTERRUPTED,
    UNFINISHED,
    RecordingError,
    iso,
    new_manifest,
    parse_iso,
    write_json,
)
from .tag_figures import replay_figures
from .tag_index import publish_numbers, write_indexes


@dataclass
class RecordingRecovery:
    """What recover_recording() found and did."""

    path: Path
    found_state: str  # the manifest's state before recovery ("missing" without one)
    state: str = UNFINISHED
    changed: bool = False
    truncated_bytes: int = 0
    problem: str | None = None  # why the FLV's end was cut
    tags: int = 0
    publishes_closed: list[int] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.changed:
            return f"{self.path}: {self.found_state}, nothing to repair"
        done = [f"{self.tags} tags"]
        if self.truncated_bytes:
            done.append(f"{self.truncated_bytes} bytes of a cut tag removed")
        if self.publishes_closed:
            done.append(f"publishes {self.publishes_closed} closed")
        return f"{self.path}: was {self.found_state}, now {self.state}: " + ", ".join(done)


def recover_recording(folder: Path, *, now: float | None = None, sync: bool = True) -> RecordingRecovery:
    """Bring a folder left by a crash to a consistent state "unfinished": the FLV cut after its
    last complete tag, open publishes closed (their end estimated from their start and their
    timestamps), the index tables rebuilt from the FLV, the figures replayed from it, the
    manifest rewritten. A finished folder is left alone. Idempotent. The caller then finishes
    it (Recording.reopen(folder).finish()) or continues it."""
    folder = Path(folder)
    now = time.time() if now is None else now
    manifest = read_json(folder)
    found = manifest.get("state", "missing") if manifest else "missing"
    report = RecordingRecovery(folder, found)
    path = folder / FLV
    temps = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    scan = F.scan_flv(path) if path.exists() else None
    if found in (FINISHED, UNFINISHED) and not temps and scan is not None and scan.complete:
        report.state = found  # consistent already (an unfinished one: recovered before)
        return report
    report.changed = True
    for p in temps:
        p.unlink()
        report.files_removed.append(p.name)
    if scan is None or not scan.header_ok:
        if scan is not None and scan.problem == "not an FLV file":
            raise RecordingError(f"{path} is not an FLV file: left as it is")
        write_atomically(path, F.file_header(), sync=sync)  # missing, or cut inside its header
        scan = F.scan_flv(path)
    if scan.truncated_bytes:
        report.truncated_bytes, report.problem = scan.truncated_bytes, scan.problem
        truncate_durably(path, scan.end, sync=sync)
        scan.file_size = scan.end
    report.tags = len(scan.tags)
    if manifest is None:
        manifest = _fresh_manifest(folder, scan)
    publishes = manifest.setdefault("publishes", [])
    metadata = read_json(folder, METADATA)
    if metadata is None:
        metadata = _metadata_from_flv(path, scan, publishes)
        if metadata:
            write_json(folder / METADATA, metadata, sync=sync)
    stats = replay_figures(path, scan, publishes, metadata, manifest.get("stats"))
    for p in publishes:
        if p.get("ended") is None:
            started = parse_iso(p.get("started")) or now
            span = (p["last_timestamp_ms"] - p["first_timestamp_ms"]) / 1000 if p.get("first_timestamp_ms") is not None else 0
            p["ended"] = iso(started + span)
            p["reason"] = INTERRUPTED
            report.publishes_closed.append(p["number"])
    write_indexes(folder, scan, publishes, sync=sync)
    manifest["state"] = UNFINISHED
    manifest["ended"] = publishes[-1]["ended"] if publishes else None
    manifest["stats"] = stats.as_dict()
    manifest["files"] = file_names()
    manifest.setdefault("mp4", [])
    manifest.setdefault("recoveries", []).append({
        "at": iso(now), "found_state": found, "truncated_bytes": report.truncated_bytes, "problem": report.problem,
        "publishes_closed": report.publishes_closed})
    manifest["updated"] = iso(now)
    write_json(folder / MANIFEST, manifest, sync=sync)
    return report


def unfinished_recordings(data_dir: Path) -> list[Path]:
    """The recording folders not finished (a crash left them "recording", or recovery made them
    "unfinished"), oldest first within each stream key."""
    return [f for f in recording_folders(data_dir) if (read_json(f) or {}).get("state") != FINISHED]


def _metadata_from_flv(path: Path, scan: F.FlvScan, publishes: list[dict]) -> list[dict]:
    scripts = scan.of_type(F.SCRIPT)
    numbers = publish_numbers([t.offset for t in scripts], publishes).tolist()
    entries = []
    for tag, number in zip(scripts, numbers, strict=True):
        try:
            name, values = F.read_script_data(F.read_tag_data(path, tag))
        except F.FlvError:
            continue
        entries.append({"publish": number, "received": None, "timestamp_ms": tag.timestamp, "in_flv": True,
                        "name": name, "values": F.json_safe(values)})
    return entries


def _fresh_manifest(folder: Path, scan: F.FlvScan) -> dict:
    """For a folder whose manifest never made it to disk: names from the path, one publish."""
    start = session_start(folder.name)
    started = iso(start) if start is not None else None
    publishes = []
    if scan.tags:
        publishes.append({"number": 1, "client": None, "tc_url": None, "name": None, "query_removed": False,
                          "started": started, "ended": None, "reason": None, "flv_offset": scan.tags[0].offset,
                          "gap_before_ms": None, "timestamp_offset_ms": None})
    return new_manifest(folder.parent.parent.name, folder.parent.name, folder.name, state=UNFINISHED,
                        started=started, publishes=publishes)
