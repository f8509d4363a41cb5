"""What `recorder ls` and `recorder info` print for RTMP recordings (from their manifests)."""

from __future__ import annotations

from pathlib import Path

from ..storage import manifest as manifests
from ..storage.summary import format_table
from .recording_layout import recording_folders


def recording_info(folder) -> dict:
    folder = Path(folder)
    manifest = manifests.read_json(folder) or {"state": "no manifest (run `recorder recover` on it)"}
    stats = manifest.get("stats") or {}
    return {
        "path": str(folder),
        "app": manifest.get("app", folder.parent.parent.name),
        "stream_key": manifest.get("stream_key", folder.parent.name),
        "session_id": manifest.get("session_id", folder.name),
        "state": manifest.get("state"),
        "started": manifest.get("started"),
        "ended": manifest.get("ended"),
        "publishes": manifest.get("publishes", []),
        "mp4": manifest.get("mp4", []),
        "mp4_error": manifest.get("mp4_error"),
        "recoveries": len(manifest.get("recoveries", [])),
        "stats": stats,
    }


def _size(n) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def format_recording_info(info: dict) -> str:
    s = info["stats"]
    video = f"{s.get('video_codec') or '-'}"
    if s.get("width"):
        video += f" {s['width']}x{s['height']}"
    lines = [
        f"RTMP stream:  {info['app']}/{info['stream_key']} / {info['session_id']}",
        f"Path:         {info['path']}",
        f"State:        {info['state']}" + (f" (recovered {info['recoveries']}x)" if info["recoveries"] else ""),
        f"Wall clock:   {info.get('started') or '-'} .. {info.get('ended') or '-'}",
        f"Duration:     {s.get('duration_s', 0.0):.3f} s ({s.get('streamed_s', 0.0):.3f} s streamed)",
        f"Size:         {_size(s.get('bytes'))} FLV, average {s.get('average_bitrate_bps', 0) / 1e6:.2f} Mbit/s",
        f"Video:        {video}, {s.get('video_frames', 0)} frames ({s.get('keyframes', 0)} keyframes), "
        f"{s.get('average_fps', 0.0):.2f} fps, {s.get('dropped_frames', 0)} dropped",
        f"Audio:        {s.get('audio_codec') or '-'}, {s.get('audio_frames', 0)} frames",
        f"Publishes:    {len(info['publishes'])}",
    ]
    for p in info["publishes"]:
        lines.append(f"  {p.get('number')}. {p.get('started')} .. {p.get('ended') or '(open)'} from "
                     f"{p.get('client')}: {p.get('video_frames', 0)} video / {p.get('audio_frames', 0)} audio "
                     f"frames, ended: {p.get('reason') or '-'}")
    mp4 = ", ".join(m["file"] for m in info["mp4"]) or (f"none ({info['mp4_error']})" if info["mp4_error"] else "none yet")
    lines.append(f"MP4:          {mp4}")
    return "\n".join(lines)


def format_rtmp_ls(data_dir) -> str | None:
    """One line per RTMP recording under data_dir, or None when there are none."""
    rows = []
    for folder in recording_folders(Path(data_dir)):
        info = recording_info(folder)
        s = info["stats"]
        rows.append((f"{info['app']}/{info['stream_key']}", info["session_id"], str(info["state"]),
                     (info.get("started") or "-")[:19].replace("T", " "), f"{s.get('duration_s', 0.0):.1f} s",
                     _size(s.get("bytes")), f"{s.get('video_frames', 0)}", str(len(info["publishes"]))))
    if not rows:
        return None
    return format_table(("RTMP STREAM", "SESSION", "STATE", "STARTED (UTC)", "DURATION", "SIZE", "FRAMES", "PUBLISHES"),
                        rows)
