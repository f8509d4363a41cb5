"""What `recorder ls` and `recorder info` print about devices' sessions, in the spirit of `ros2 bag info`.

Everything comes from the manifests (cheap: no Parquet is opened), except for a folder without
a readable manifest, whose streams are scanned from the files.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from . import layout, manifest
from .recovery import scan_stream
from .timemap import NO_MAPPING, RECEIVER

PROBLEM_COUNTERS = ("gaps", "resends", "corrupt_bytes", "bad_crc", "malformed", "truncated", "opaque",
                    "oversized", "reserved_flags")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _seconds(ns: int | float | None) -> str:
    if ns is None:
        return "-"
    s = ns / 1e9
    if abs(s) >= 3600:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m{s % 60:06.3f}s"
    if abs(s) >= 60:
        return f"{int(s // 60)}m{s % 60:06.3f}s"
    return f"{s:.3f} s"


def _wall(ns: int | None) -> str:
    if ns is None:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _span(first, last) -> int | None:
    return None if first is None or last is None else last - first


def _rate(rows: int, first, last) -> float | None:
    span = _span(first, last)
    return (rows - 1) / (span / 1e9) if rows > 1 and span else None


def session_info(path) -> dict:
    """A session's summary as plain data (what `recorder info --json` prints)."""
    path = Path(path)
    d = manifest.read_json(path)
    if d is None:  # no manifest (a crash before the first was written): scan the files
        state = manifest.SessionState(serial=path.parent.name, session_id=path.name)
        for name, folder in layout.stream_folders(path).items():
            scan = scan_stream(folder)
            if scan.stats is not None:
                state.streams[name] = scan.stats
                if scan.highest is not None:
                    state.see_sequence(scan.highest)
        d = state.as_json()
        d["state"] = "no manifest"
    streams = {}
    for name, s in d.get("streams", {}).items():
        first, last = s.get("first_timestamp_ns"), s.get("last_timestamp_ns")
        streams[name] = {"kind": s.get("kind"), "message": s.get("message"), "rows": s.get("rows", 0),
                         "rate_hz": _rate(s.get("rows", 0), first, last), "duration_ns": _span(first, last),
                         "first_timestamp_ns": first, "last_timestamp_ns": last, "bytes": s.get("bytes", 0),
                         "parts": s.get("parts", 0)}
    first, last = d.get("first_device_time_ns"), d.get("last_device_time_ns")
    return {
        "path": str(path),
        "serial": d.get("serial"),
        "session_id": d.get("session_id"),
        "state": d.get("state"),
        "device_build": d.get("device_build"),
        "first_wall_time_ns": d.get("first_wall_time_ns"),
        "last_wall_time_ns": d.get("last_wall_time_ns"),
        "first_device_time_ns": first,
        "last_device_time_ns": last,
        "duration_ns": _span(first, last),
        "stored_bytes": d.get("stored_bytes", sum(s["bytes"] for s in streams.values())),
        "received_bytes": d.get("received_bytes"),
        "requests": d.get("requests", 0),
        "highest_sequence": d.get("highest_sequence"),
        "counters": d.get("counters", {}),
        "raw_bodies": d.get("raw_bodies", {}),
        "calibration": d.get("calibration", {}),
        "tdm": d.get("tdm", {}),
        "camera_frames": d.get("camera_frames", {}),
        "recoveries": len(d.get("recoveries", [])),
        "streams": streams,
    }


def _tdm_line(tdm: dict) -> str:
    if tdm.get("role") == RECEIVER:
        mean, latest = tdm.get("mean_offset_ns"), tdm.get("latest_offset_ns")
        ids = ", ".join(f"{b:#010x}" for b in tdm.get("broadcaster_ids", []))
        return (f"receiver of {ids or '?'}: {tdm.get('samples')} samples, mean offset {_seconds(mean)}, "
                f"latest {_seconds(latest)}")
    if tdm.get("role") == NO_MAPPING:
        return "no mapping samples (broadcaster, or unsynchronised)"
    return "-"


def format_info(info: dict) -> str:
    c = info.get("counters", {})
    cal = info.get("calibration") or {}
    if cal.get("file"):
        calibration = f"{cal['file']} ({'parsed' if cal.get('parsed') else 'NOT JSON: ' + str(cal.get('error'))})"
        if cal.get("changed_during_session"):
            calibration += f", changed during the session: {len(cal.get('all', []))} versions kept"
    else:
        calibration = "none received"
    problems = ", ".join(f"{k} {c.get(k, 0)}" for k in PROBLEM_COUNTERS)
    raw = info.get("raw_bodies") or {}
    lines = [
        f"Session:      {info['serial']} / {info['session_id']}",
        f"Path:         {info['path']}",
        f"State:        {info['state']}" + (f" (recovered {info['recoveries']}x)" if info.get("recoveries") else ""),
        f"Device build: {info.get('device_build') or '-'}",
        f"Wall clock:   {_wall(info['first_wall_time_ns'])} .. {_wall(info['last_wall_time_ns'])}",
        f"Device time:  {_seconds(info['first_device_time_ns'])} .. {_seconds(info['last_device_time_ns'])}"
        f" (duration {_seconds(info['duration_ns'])})",
        f"Size:         {_size(info['stored_bytes'])} stored, {_size(info.get('received_bytes'))} received",
        f"Requests:     {info['requests']}",
        f"Records:      {c.get('records', 0)} ({c.get('samples', 0)} samples, {c.get('blobs', 0)} blobs), "
        f"highest sequence {info.get('highest_sequence')}",
        f"Problems:     {problems}",
        f"Calibration:  {calibration}",
        f"TDM:          {_tdm_line(info.get('tdm') or {})}",
    ]
    if raw.get("requests"):
        lines.append(f"Raw bodies:   {raw['requests']} (not version 1), {raw['chunks']} chunks, {_size(raw['bytes'])}")
    streams = info.get("streams", {})
    lines.append(f"Streams:      {len(streams)}")
    if streams:
        width = max(len(n) for n in streams)
        lines.append(f"  {'stream':{width}}  {'kind':8} {'rows':>9} {'rate':>10} {'duration':>12} {'size':>9}")
        for name, s in streams.items():
            rate = f"{s['rate_hz']:.1f} Hz" if s["rate_hz"] else "-"
            lines.append(f"  {name:{width}}  {s['kind'] or '-':8} {s['rows']:>9} {rate:>10} "
                         f"{_seconds(s['duration_ns']):>12} {_size(s['bytes']):>9}")
    return "\n".join(lines)


EXPECTED_DATA_FOLDER = ("expected a data folder written by `recorder serve`, holding "
                        "<serial>/<session-id>/session.json")


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def device_sessions(folder, skip=None) -> list[Path]:
    """The sessions directly in `folder` (a device folder's), leaving out those `skip` names."""
    return [p for p in _subfolders(Path(folder)) if layout.is_session_folder(p) and not (skip and skip(p))]


def data_sessions(data_dir) -> list[Path]:
    """The <serial>/<session-id> sessions of a data folder."""
    return layout.session_folders(Path(data_dir))


def listed_sessions(folder, skip=None) -> list[Path]:
    """What `recorder ls FOLDER` lists: the sessions of a data folder or of a device folder, or
    FOLDER itself when it is one session. `skip` names folders that look like sessions but are
    not a device's (RTMP recordings keep a session.json too)."""
    folder = Path(folder)
    if layout.is_session_folder(folder) and not (skip and skip(folder)):
        return [folder]
    return device_sessions(folder, skip) or data_sessions(folder)


def not_a_session(path, skip=None) -> str:
    """Why `recorder info PATH` has nothing to show, and what it expects instead."""
    path = Path(path)
    expected = "give `recorder info` one session folder, <data-dir>/<serial>/<session-id>"
    sessions = device_sessions(path, skip)
    if sessions:
        shown = "\n".join(f"  {p}" for p in sessions[:10])
        more = f"\n  ... and {len(sessions) - 10} more (`recorder ls {path}`)" if len(sessions) > 10 else ""
        return (f"{path} is a device folder holding {plural(len(sessions), 'session')}, not a session: "
                f"{expected}, one of:\n{shown}{more}")
    sessions = data_sessions(path)
    if sessions or (path / layout.RTMP_ROOT).is_dir():
        return (f"{path} is a data folder holding {plural(len(sessions), 'device session')}, not a session: "
                f"`recorder ls {path}` lists them; {expected}")
    return (f"{path} is not a session: expected a session folder written by `recorder serve` "
            "(<data-dir>/<serial>/<session-id>/, holding session.json) or an RTMP recording "
            "(<data-dir>/rtmp/<app>/<stream-key>/<session-id>/, holding stream.flv)")


def format_ls(data_dir, sessions: list[Path] | None = None) -> str:
    """One line per session (<serial>/<session id>/) of data_dir, or of `sessions` when given."""
    root = Path(data_dir)
    if not root.is_dir():
        return f"no data folder at {root}"
    rows = []
    for path in listed_sessions(root) if sessions is None else sessions:
        info = session_info(path)
        c = info["counters"]
        tdm = (info.get("tdm") or {}).get("role")
        rows.append((info["serial"] or path.parent.name, info["session_id"] or path.name, info["state"] or "-",
                     _wall(info["first_wall_time_ns"])[:19], _seconds(info["duration_ns"]),
                     _size(info["stored_bytes"]), str(len(info["streams"])), str(c.get("gaps", 0)),
                     "receiver" if tdm == RECEIVER else ("none" if tdm else "-")))
    if not rows:
        if not _subfolders(root):
            return f"no sessions in {root} yet (the folder is empty)"
        return f"no sessions under {root}: {EXPECTED_DATA_FOLDER}"
    return format_table(("SERIAL", "SESSION", "STATE", "STARTED (UTC)", "DURATION", "SIZE", "STREAMS", "GAPS", "TDM"),
                        rows)


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Columns as wide as their widest value, two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])
