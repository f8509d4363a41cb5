"""session.json: what a session folder holds, replaced atomically whenever it changes.

The manifest is a summary, not the data: after a crash it may lag the files by the last flush,
and recovery rebuilds the per-stream figures and the highest sequence from the files
themselves. Counters (gaps, resends, corrupt bytes ...) exist only here and in requests.jsonl.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..wire import Counters
from . import calibration, layout
from .files import write_atomically, write_atomically_into
from .stream import StreamStats
from .timemap import TdmSummary

FORMAT = "recorder.session/1"
RECORDING, FINISHED, RECOVERED = "recording", "finished", "recovered"
TDM_STREAM = "time-domain-mapping"
CAMERA_PREFIX = "camera_frame"
# Verbatim records whose sequence the decoder trusted (their payload passed its CRC), so they
# count towards the highest sequence stored; bad_crc, oversized and truncated ones do not.
SEQUENCED_VERBATIM = ("opaque", "unknown_id", "reserved_flags", "malformed")


@dataclass
class SessionState:
    serial: str
    session_id: str
    state: str = RECORDING
    device_build: str | None = None
    builds: list[str] = field(default_factory=list)
    headers: dict = field(default_factory=dict)  # the latest request's, calibration left out
    first_wall_time_ns: int | None = None
    last_wall_time_ns: int | None = None
    highest_sequence: int | None = None
    stored_ahead: list[list[int]] = field(default_factory=list)  # see ahead.py
    requests: int = 0
    open_request: int | None = None
    counters: Counters = field(default_factory=Counters)  # finished requests
    request_counters: Counters = field(default_factory=Counters)  # the open request, so far
    raw: dict = field(default_factory=lambda: {"requests": 0, "chunks": 0, "bytes": 0})
    calibrations: list[dict] = field(default_factory=list)  # calibration.Calibrations.entries
    streams: dict[str, StreamStats] = field(default_factory=dict)
    recoveries: list[dict] = field(default_factory=list)
    # A summary of the writes that failed (a full disk, say), None while none has: see
    # note_storage_error. A few figures, whatever the number of errors.
    storage_errors: dict | None = None

    def see_wall_time(self, t_ns: int) -> None:
        if self.first_wall_time_ns is None:
            self.first_wall_time_ns = t_ns
        self.last_wall_time_ns = t_ns if self.last_wall_time_ns is None else max(self.last_wall_time_ns, t_ns)

    def see_sequence(self, sequence: int) -> None:
        if self.highest_sequence is None or sequence > self.highest_sequence:
            self.highest_sequence = sequence

    def total_counters(self) -> Counters:
        total = Counters(**self.counters.as_dict())
        total.add(self.request_counters)
        return total

    def tdm(self) -> TdmSummary:
        s = self.streams.get(TDM_STREAM)
        return TdmSummary(s.extra.get("tdm") if s else None)

    # The server may ask for stats() from another thread while a write() adds a stream: every
    # walk over `streams` starts from list(...), which copies under the GIL in one C call.

    def device_time_range(self) -> tuple[int | None, int | None]:
        """Over decoded streams only: a verbatim record's header time may be damaged."""
        decoded = [s for s in list(self.streams.values()) if s.kind in ("samples", "blob")]
        firsts = [s.first_timestamp_ns for s in decoded if s.first_timestamp_ns is not None]
        lasts = [s.last_timestamp_ns for s in decoded if s.last_timestamp_ns is not None]
        return (min(firsts) if firsts else None), (max(lasts) if lasts else None)

    def camera_frames(self) -> dict[str, int]:
        return {name: s.rows for name, s in sorted(list(self.streams.items()))
                if s.kind == "blob" and s.message == CAMERA_PREFIX}

    def as_json(self) -> dict:
        first, last = self.device_time_range()
        counters = self.total_counters()
        stored = sum(s.bytes for s in list(self.streams.values()))
        return {
            "format": FORMAT,
            "serial": self.serial,
            "session_id": self.session_id,
            "state": self.state,
            "device_build": self.device_build,
            "builds": self.builds,
            "headers": self.headers,
            "first_device_time_ns": first,
            "last_device_time_ns": last,
            "first_wall_time_ns": self.first_wall_time_ns,
            "last_wall_time_ns": self.last_wall_time_ns,
            "highest_sequence": self.highest_sequence,
            "stored_above_highest_sequence": self.stored_ahead,
            "requests": self.requests,
            "open_request": self.open_request,
            "stored_bytes": stored,
            "received_bytes": counters.bytes + self.raw["bytes"],
            "counters": counters.as_dict(),
            "raw_bodies": self.raw,
            "calibration": calibration.summary(self.calibrations),
            "tdm": self.tdm().manifest(),
            "camera_frames": self.camera_frames(),
            "streams": {name: s.as_dict() for name, s in sorted(self.streams.items())},
            "recoveries": self.recoveries,
            "storage_errors": self.storage_errors,
        }

    @classmethod
    def from_json(cls, d: dict) -> SessionState:
        # The counters in the manifest include the request that was open when it was written;
        # whoever loads it starts from there with no request open.
        return cls(
            serial=d["serial"], session_id=d["session_id"], state=d.get("state", RECORDING),
            device_build=d.get("device_build"), builds=list(d.get("builds", [])), headers=d.get("headers", {}),
            first_wall_time_ns=d.get("first_wall_time_ns"), last_wall_time_ns=d.get("last_wall_time_ns"),
            highest_sequence=d.get("highest_sequence"), stored_ahead=list(d.get("stored_above_highest_sequence", [])),
            requests=d.get("requests", 0),
            open_request=d.get("open_request"),
            counters=Counters(**{k: v for k, v in d.get("counters", {}).items() if k in Counters().as_dict()}),
            raw=dict(d.get("raw_bodies") or {"requests": 0, "chunks": 0, "bytes": 0}),
            calibrations=list((d.get("calibration") or {}).get("all", [])),
            streams={name: StreamStats.from_dict(s) for name, s in d.get("streams", {}).items()},
            recoveries=list(d.get("recoveries", [])),
            storage_errors=d.get("storage_errors"),
        )


def note_storage_error(state: SessionState, exc: OSError, wall_time_ns: int, *, stopped: bool) -> None:
    """Count a failed write in the state's storage_errors: how many, the last one's errno and
    message, the first and last time; `stopped`: it stopped the recording (the next write tries
    to resume it, which sets resumed_wall_time_ns)."""
    errors = state.storage_errors
    if errors is None:
        errors = state.storage_errors = {"count": 0, "stops": 0, "errno": None, "error": None,
                                         "first_wall_time_ns": wall_time_ns, "last_wall_time_ns": None,
                                         "resumed_wall_time_ns": None}
    errors["count"] += 1
    errors["errno"] = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    errors["error"] = (exc.strerror or str(exc))[:200]
    errors["last_wall_time_ns"] = wall_time_ns
    if stopped:
        errors["stops"] += 1
        errors["resumed_wall_time_ns"] = None


def save(folder: Path, state: SessionState, *, sync: bool = True, room: Path | None = None) -> None:
    """Write the manifest; `room`: through that file's blocks, allocated beforehand (see
    files.write_atomically_into), for a manifest that must reach a full disk."""
    data = json.dumps(state.as_json(), indent=1).encode() + b"\n"
    if room is None:
        write_atomically(folder / layout.MANIFEST, data, sync=sync)
    else:
        write_atomically_into(room, folder / layout.MANIFEST, data, sync=sync)


def load(folder: Path) -> SessionState | None:
    """The manifest, or None if there is none or it cannot be read."""
    try:
        d = json.loads((folder / layout.MANIFEST).read_bytes())
        return SessionState.from_json(d)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def read_json(folder: Path, name: str = layout.MANIFEST):
    """A JSON file of the folder (the manifest unless `name` says otherwise) as it is, or None
    when it is missing or cannot be read."""
    try:
        return json.loads((folder / name).read_bytes())
    except (FileNotFoundError, ValueError):
        return None
