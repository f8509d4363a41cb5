"""The console lines of the RTMP path, beside the HTTP devices' lines."""

from __future__ import annotations

from ..console import say


def _figures(stats: dict) -> str:
    size = f"{stats['width']}x{stats['height']} " if stats.get("width") else ""
    codecs = "/".join(c for c in (stats.get("video_codec"), stats.get("audio_codec")) if c)
    return (f"{size}{codecs + ' ' if codecs else ''}{stats.get('fps', 0.0):.1f} fps "
            f"{stats.get('bitrate_bps', 0.0) / 1e6:.2f} Mbit/s, {stats.get('duration_s', 0.0):.0f} s"
            + (f", {stats['dropped_frames']} dropped frames" if stats.get("dropped_frames") else ""))


def listening(url: str, open_to_all: bool) -> None:
    say(f"RTMP server listening on {url}"
        + (" (open to any publisher: set --rtmp-secret or --rtmp-key on a reachable network)" if open_to_all else ""))


def publishing(s, continued: bool) -> None:
    if continued:
        say(f"[rtmp {s.name}] re-published from {s.remote}: session {s.session_id} continues")
    else:
        say(f"[rtmp {s.name}] publishing from {s.remote}: new session {s.session_id}")


def refused(remote: str, reason: str) -> None:
    say(f"refused an RTMP publish from {remote}: {reason}")


def connection_failed(remote: str, reason: str) -> None:
    say(f"RTMP connection from {remote} closed: {reason}")


def ended(s, reason: str, grace_s: float) -> None:
    say(f"[rtmp {s.name}] publish ended ({reason}); a re-publish within {grace_s:g} s continues the session")


def finished(s) -> None:
    mp4 = ", ".join(s.stats.get("mp4") or []) or f"no MP4: {s.stats.get('mp4_error') or 'no video or audio'}"
    say(f"[rtmp {s.name}] finished session {s.session_id}: {s.stats.get('video_frames', 0)} video and "
        f"{s.stats.get('audio_frames', 0)} audio frames, {s.stats.get('bytes', 0) / 1e6:.1f} MB -> "
        f"{s.recording.folder if s.recording else '?'} ({mp4})")


def failed(s, what: str, exc: BaseException) -> None:
    say(f"[rtmp {s.name}] {what} failed: {type(exc).__name__}: {exc}")


def periodic(s) -> None:
    say(f"[rtmp {s.name}] {s.state}: {_figures(s.stats)}")


def recovery_failed(folder, exc: BaseException) -> None:
    say(f"cannot recover the RTMP session {folder} (left as it is): {type(exc).__name__}: {exc}")


def recovered(folder) -> None:
    say(f"recovered unfinished RTMP session {folder}")


def summary(sessions) -> None:
    if not sessions:
        return
    say("RTMP summary:")
    for s in sessions:
        print(f"  {s.name} ({s.session_id}): {s.state}, {_figures(s.stats)}, "
              f"{s.stats.get('bytes', 0) / 1e6:.1f} MB" + (f", error: {s.error}" if s.error else ""), flush=True)
