"""The lines an operator watches: connects, reconnects, finishes, a compact periodic line per
device, and a summary per device at shutdown."""

from __future__ import annotations

import errno
import time

from ..console import say, say_more


def _tdm(stats: dict) -> str:
    tdm = stats.get("tdm") or {}
    if not tdm.get("samples"):
        return "no TDM (broadcaster or unsynchronised)"
    latest = tdm.get("latest_offset_ns", tdm.get("mean_offset_ns", 0.0))
    return f"TDM offset {latest / 1e6:.3f}ms (avg {tdm.get('mean_offset_ns', 0.0) / 1e6:.3f}ms)"


def _clock(wall_time_ns: int | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall_time_ns / 1e9)) if wall_time_ns else "?"


def _storage_trouble(errors: dict) -> str:
    """What stopped a session's recording, in words: "the disk was full" for ENOSPC."""
    if errors.get("errno") in (errno.errorcode[errno.ENOSPC], errno.errorcode[errno.EDQUOT]):
        return "the disk was full"
    return f"a storage error ({errors.get('error')})"


def listening(url: str, data_dir, tls_note: str) -> None:
    say(f"Recording to {data_dir}; streaming server listening on {url} ({tls_note}). Ctrl+C to stop.")


def recovered(report) -> None:
    say(f"recovered unfinished session {report}")


def connected(s, first_connection: bool) -> None:
    if first_connection and not s.resumed:
        say(f"[{s.serial}] connected from {s.remote}: new session {s.session_id}")
    else:
        at = s.writer.highest_sequence
        errors = s.writer.storage_errors if getattr(s.writer, "stopped", False) else None
        say(f"[{s.serial}] reconnected from {s.remote}: session {s.session_id} continues"
             + (f" after sequence {at}" if at is not None and errors is None else "")
             + (f"; its recording stopped at {_clock(errors['last_wall_time_ns'])} ({_storage_trouble(errors)}): "
                f"it resumes from what is stored if there is room again" if errors else ""))


def refused(remote: str, status: int, message: str) -> None:
    say(f"refused a request from {remote}: {status} {message}")


def overloaded(count: int, addresses: str, limit: str, retry_after_s: int, unanswered: int) -> None:
    say(f"refused {count} connection{'s' if count != 1 else ''} from {addresses}: over {limit} "
        f"(503, retry after {retry_after_s} s)"
        + (f"; {unanswered} of them closed unanswered (too many past the limits at once)" if unanswered else ""))


def tls_refused(remote: str, reason: str) -> None:
    say(f"refused a TLS connection from {remote}: {reason}")


def undecoded_body(s, head: bytes) -> None:
    printable = "".join(chr(b) if 0x20 <= b < 0x7F and b not in b"\\'" else f"\\x{b:02x}" for b in head)
    say(f"[{s.serial}] WARNING: session {s.session_id} sends a body that is not SRF1 version 1 "
        f"(it begins '{printable}', not 'SRF1'): it is stored verbatim and NOT decoded; no records, "
        f"streams or gaps will be counted for it")


def dropped(s, reason: str) -> None:
    say(f"[{s.serial}] connection ended: {reason}; waiting for a reconnect")


def storage_error(s, status: int, message: str) -> None:
    """A write of the session failed (a full disk, above all) and the device was answered
    `status`. Said for the session's 1st, 2nd, 4th, 8th ... refused write: a disk that stays full
    while devices retry does not flood the console."""
    errors = getattr(s.writer, "storage_errors", None) or {}
    count = errors.get("count", 1)
    if count & (count - 1):
        return
    say(f"[{s.serial}] session {s.session_id} stopped recording: {message} (answered {status}"
        + (f"; {count} refused writes since {_clock(errors.get('first_wall_time_ns'))}" if count > 1 else "")
        + "); it resumes when the device sends again "
        + ("after space is freed" if status == 507 else "once the storage works again"))


def session_not_opened(serial: str, session_id: str, remote: str, status: int, message: str, count: int) -> None:
    """A request of the session was refused before its session could be opened (creating or
    repairing its folder failed). Said for its 1st, 2nd, 4th, 8th ... refusal in a row."""
    if count & (count - 1):
        return
    say(f"[{serial}] session {session_id} could not be opened for {remote}: {message} (answered {status}"
        + (f"; {count} requests refused in a row" if count > 1 else "") + "); it opens when the device sends again "
        + ("after space is freed" if status == 507 else "once the storage works again"))


def _storage_summary(errors: dict | None) -> str:
    if not errors:
        return ""
    resumed = errors.get("resumed_wall_time_ns")
    return (f"; recording stopped {errors['stops']} time{'s' if errors['stops'] != 1 else ''} "
            f"({_storage_trouble(errors)}, {errors['count']} refused writes, {_clock(errors['first_wall_time_ns'])}"
            f" to {_clock(errors['last_wall_time_ns'])})"
            + (f", last resumed at {_clock(resumed)}" if resumed else ", not resumed"))


def handed_over(s) -> None:
    say(f"[{s.serial}] session {s.session_id} handed over to another worker (its device reconnected there): "
        f"{s.counters.records} records here")


def finished(s) -> None:
    c = s.counters
    say(f"[{s.serial}] finished session {s.session_id}: {c.records} records, "
         f"{(c.bytes + s.raw_bytes) / 1e6:.1f} MB, {c.gaps} missing, {c.corrupt_bytes} corrupt bytes"
         + (f", {s.raw_bytes} bytes stored undecoded (not SRF1 version 1)" if s.undecoded_body else "")
         + _storage_summary(getattr(s.writer, "storage_errors", None))
         + f" -> {s.writer.path}")


def periodic(s) -> None:
    rates = s.meter.rates
    cams = ", ".join(f"{name} {rates.get(f'stream:{name}', 0.0):.1f}fps" for name in (s.stats or {}).get("camera_frames", {}))
    say(f"[{s.serial}] {rates.get('records', 0.0):.0f} rec/s {rates.get('bytes', 0.0) * 8 / 1e6:.1f} Mbit/s"
         + (f" | {cams}" if cams else "") + f" | {_tdm(s.stats or {})}"
         + (f" | {s.counters.gaps} missing" if s.counters.gaps else "")
         + (f" | {s.counters.corrupt_bytes} corrupt bytes" if s.counters.corrupt_bytes else "")
         + (f" | {s.raw_bytes / 1e6:.1f} MB undecoded (not SRF1 version 1)" if s.undecoded_body else ""))


def internal_error(s, what: str, exc: Exception) -> None:
    say(f"[{s.serial}] internal error in {what} (recording goes on): {type(exc).__name__}: {exc}")


def connection_error(remote: str, exc: Exception) -> None:
    say(f"connection from {remote} failed unexpectedly and was closed: {type(exc).__name__}: {exc}")


def summary(sessions, forgotten: dict | None = None, under_load: dict | None = None) -> None:
    print_summary(summary_rows(sessions), forgotten, under_load)


def summary_rows(sessions) -> list[str]:
    """A line per session for the final summary (a worker's go to its supervisor, which prints
    one summary for all)."""
    rows = []
    for s in sessions:
        tdm = (s.stats or {}).get("tdm") or {}
        tdm_text = (f"{tdm['samples']} TDM samples, avg offset {tdm['mean_offset_ns'] / 1e6:.3f}ms"
                    if tdm.get("samples") else "0 TDM samples")
        rows.append(f"{s.serial} ({s.session_id}): {s.counters.records} records, "
                    f"{(s.counters.bytes + s.raw_bytes) / 1e6:.1f} MB, {tdm_text}")
    return rows


def under_load(raw_images) -> dict:
    """What a store's compression.RawImageMode stored uncompressed for want of CPU, for the summary."""
    return {"frames": raw_images.frames_stored_under_load, "bytes": raw_images.bytes_stored_under_load}


def print_summary(rows: list[str], forgotten: dict | None = None, under_load: dict | None = None) -> None:
    forgotten = forgotten or {"sessions": 0}
    if not rows and not forgotten["sessions"]:
        say("No device streamed over HTTP.")
        return
    say("Final summary:")
    if forgotten["sessions"]:
        say_more(f"{forgotten['sessions']} sessions finished earlier ({forgotten['records']} records, "
                 f"{forgotten['bytes'] / 1e6:.1f} MB; recorder ls lists them)")
    for row in rows:
        say_more(row)
    if under_load and under_load["frames"]:
        say_more(f"{under_load['frames']} RAW camera frames ({under_load['bytes'] / 1e6:.1f} MB) were stored "
                 "uncompressed while the server had no CPU to spare (--raw-images auto)")
