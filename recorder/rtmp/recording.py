"""One RTMP recording session: what every publish of a stream key sends, appended to one FLV in
one folder (recording_layout.py says what the folder holds).

stream.flv plays while it is written: its header is written once at creation (audio and video
flags both set, as the streams are not known yet) and each tag with one write() of header, data
and PreviousTagSize, so a crash leaves at most one cut tag at the end, which recovery and
reopen() cut off. No tag is fsynced by itself: flush(), called about once a second, fsyncs the
FLV; it rewrites the manifest's figures every MANIFEST_INTERVAL_S (recovery recounts them from
the FLV), and at once when something else moved: a count the FLV cannot show (timestamps
clamped, tags skipped), or a publish's first tag.

The timeline: a publish's RTMP timestamps start again near 0, so each publish is shifted to
start after everything already in the file, by the wall-clock time between the previous
publish's end and this one's beginning (at least one frame interval): the FLV's timestamps
never go back, and a gap in them is time nothing was streamed. Within a publish, a tag whose
timestamp goes back against the previous tag of its type is clamped to it (and counted in
`timestamp_regressions`). A new publish's sequence headers (AVC and AAC configurations) are
written again, as sent.

onMetaData goes into the FLV only at timestamp 0 (FFmpeg turns a script tag anywhere else into a
data stream), with `duration` and `filesize` set to 0 (a player would believe them over the
timestamps); metadata.json has every one, as received.

A publish name and tcUrl are stored without their query string (it may carry a secret); the
query never reaches the disk, and a reason that contains it is stored with it redacted.

At finish the index tables (tag_index.py) and the MP4s (recording_mp4.py) are written from the
FLV.

The server calls a Recording from one worker thread at a time; stats() may come from any
thread, so the state is under a lock (held for the cost of a write(), never for the remux).
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

from ..storage.files import fsync_dir, truncate_durably
from ..storage.manifest import read_json
from . import flv as F
from .recording_layout import FLV, MANIFEST, METADATA, mp4_names, new_session_folder
from .recording_manifest import (
    FINISHED,
    FINISHED_OPEN,
    RECORDING,
    SUPERSEDED,
    RecordingError,
    iso,
    new_manifest,
    parse_iso,
    write_json,
)
from .recording_mp4 import write_mp4s
from .recording_recovery import recover_recording
from .stats import RecordingStats
from .tag_figures import TagFigures, replay_figures
from .tag_index import write_indexes

REDACTED = "<redacted>"
# The live manifest's figures (what `recorder ls` shows of a session being recorded) are this old
# at most. Rewriting it at every flush cost a stream more CPU than writing its media.
MANIFEST_INTERVAL_S = 10.0
HEADER_PARSERS = {F.VIDEO: F.parse_video_header, F.AUDIO: F.parse_audio_header}


def strip_query(text: str | None) -> tuple[str | None, str | None]:
    """`name?query` -> (name, query); the query may be a secret (a token, a password)."""
    if text is None:
        return None, None
    name, sep, query = text.partition("?")
    return name, (query if sep else None)


class Recording:
    """One RTMP session folder (see the module docstring)."""

    def __init__(self, folder: Path, manifest: dict, stats: RecordingStats, fd: int, *, sync: bool):
        self.folder = folder
        self._manifest = manifest
        self._stats = stats
        self._figures = TagFigures(stats)
        self._fd: int | None = fd
        self._sync = sync
        self._lock = threading.Lock()
        self._metadata: list[dict] = read_json(folder, METADATA) or []
        self._publish: dict | None = None  # the open publish's manifest entry
        self._pub_target = 0  # where the open publish's first tag lands on the timeline
        self._pub_offset: int | None = None  # timeline = RTMP timestamp + this
        self._pub_last: dict[int, int | None] = {F.VIDEO: None, F.AUDIO: None}
        self._last_end_wall: float | None = None
        self._secrets: set[str] = set()
        self._changed = False
        self._manifest_saved = -math.inf  # time.monotonic() of the last save
        self._saved_landmarks: tuple | None = None  # see _landmarks()
        self._closing = False
        self._broken = False
        for p in manifest["publishes"]:
            ended = parse_iso(p.get("ended"))
            if ended is not None:
                self._last_end_wall = ended

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, data_dir: Path, app: str, stream_key: str, *, now: float | None = None,
               sync: bool = True) -> Recording:
        now = time.time() if now is None else now
        folder = new_session_folder(data_dir, app, stream_key, now, sync=sync)
        fd = os.open(folder / FLV, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            F.write_all(fd, F.file_header(audio=True, video=True))
            if sync:
                os.fsync(fd)
            manifest = new_manifest(app, stream_key, folder.name, state=RECORDING, started=iso(now), publishes=[])
            stats = RecordingStats()
            stats.bytes = F.FILE_HEADER_SIZE
            rec = cls(folder, manifest, stats, fd, sync=sync)
            rec._save_manifest()
        except BaseException:
            os.close(fd)
            raise
        return rec

    @classmethod
    def reopen(cls, folder: Path, *, sync: bool = True) -> Recording:
        """Continue a session (unfinished, or finished and published to again): cut the FLV
        after its last complete tag, rebuild the figures from it, and append from there. The
        MP4s of an earlier finish are deleted (finish() writes them again)."""
        folder = Path(folder)
        manifest = read_json(folder)
        if manifest is None or manifest.get("state") == RECORDING or not (folder / FLV).exists():
            recover_recording(folder, sync=sync)  # a crash nobody recovered from yet
            manifest = read_json(folder)
        scan = F.scan_flv(folder / FLV)
        if scan.truncated_bytes:
            truncate_durably(folder / FLV, scan.end, sync=sync)
        metadata = read_json(folder, METADATA) or []
        stats = replay_figures(folder / FLV, scan, manifest["publishes"], metadata, manifest.get("stats"))
        for p in mp4_names(folder):
            p.unlink()
        manifest["mp4"] = []
        manifest.pop("mp4_error", None)
        manifest["state"] = RECORDING
        manifest["ended"] = None
        fd = os.open(folder / FLV, os.O_WRONLY | os.O_APPEND)
        rec = cls(folder, manifest, stats, fd, sync=sync)
        rec._save_manifest()
        if sync:
            fsync_dir(folder)
        return rec

    # -- publishes -------------------------------------------------------------------------------

    def begin_publish(self, *, client: str, tc_url: str | None, publish_name: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._check_open()
            if self._publish is not None:
                self._end_publish(SUPERSEDED, now)
            name, q1 = strip_query(publish_name)
            tc_url, q2 = strip_query(tc_url)
            self._secrets.update(q for q in (q1, q2) if q)
            last = self._stats.last_ts
            gap_ms = None
            if last is None:
                target = 0
            else:
                gap_ms = round((now - self._last_end_wall) * 1000) if self._last_end_wall is not None else 0
                target = last + max(gap_ms, math.ceil(self._stats.frame_interval_ms()))
            entry = {
                "number": len(self._manifest["publishes"]) + 1,
                "client": client, "tc_url": tc_url, "name": name, "query_removed": bool(q1 or q2),
                "started": iso(now), "ended": None, "reason": None,
                "flv_offset": self._stats.bytes, "gap_before_ms": gap_ms, "timestamp_offset_ms": None,
                "first_timestamp_ms": None, "last_timestamp_ms": None, "video_frames": 0, "audio_frames": 0,
            }
            self._manifest["publishes"].append(entry)
            self._publish = entry
            self._pub_target, self._pub_offset = target, None
            self._pub_last = {F.VIDEO: None, F.AUDIO: None}
            self._stats.new_publish()
            self._save_manifest()  # the publish (and where its tags start) is on disk before they are

    def end_publish(self, *, reason: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            if self._publish is None:
                return
            self._end_publish(reason, now)
            if self._sync and self._fd is not None:
                os.fsync(self._fd)
            self._save_manifest()

    def _end_publish(self, reason: str, now: float) -> None:
        self._publish["ended"] = iso(now)
        self._publish["reason"] = self._redact(reason)
        self._last_end_wall = now
        self._publish = None
        self._changed = True

    # -- tags ------------------------------------------------------------------------------------

    def write_metadata(self, values: dict, raw: bytes) -> None:
        """onMetaData as received (`raw`: AMF0 from the "onMetaData" string on)."""
        with self._lock:
            pub = self._open_publish()
            try:
                name = F.read_script_data(raw)[0]
            except F.FlvError:
                name = None
            # Where this publish stands in the FLV: its last tag, or where its first will go.
            position = pub["last_timestamp_ms"] if pub["last_timestamp_ms"] is not None else self._pub_target
            in_flv = name == "onMetaData" and position == 0
            if in_flv:
                self._append(F.encode_tag(F.SCRIPT, 0, F.live_metadata(bytes(raw))))
            self._metadata.append({"publish": pub["number"], "received": iso(time.time()), "timestamp_ms": position,
                                   "in_flv": in_flv, "name": name, "values": F.json_safe(values)})
            self._stats.metadata(values)
            write_json(self.folder / METADATA, self._metadata, sync=self._sync)

    def _header_or_skip(self, parse, payload: bytes):
        """The tag data's header, or None (counted as skipped) for data no FLV tag can hold."""
        try:
            header = parse(payload)
            if len(payload) > F.MAX_DATA_SIZE:
                raise F.FlvError("tag data over FLV's 16 MiB")
        except F.FlvError:
            self._stats.skipped_tags += 1
            self._changed = True
            return None
        return header

    def write_video(self, timestamp: int, payload: bytes) -> None:
        """An RTMP video message: `timestamp` in ms as received, `payload` the FLV video tag data."""
        self.write_media([(F.VIDEO, timestamp, payload)])

    def write_audio(self, timestamp: int, payload: bytes) -> None:
        self.write_media([(F.AUDIO, timestamp, payload)])

    def write_media(self, messages) -> None:
        """RTMP video and audio messages in the order received, (F.VIDEO or F.AUDIO, timestamp
        in ms as received, tag data) each, appended to the FLV in one write: a write per tag
        was a system call each, some seventy a second per stream. If the write fails, none of
        them is in the FLV (nor counted)."""
        with self._lock:
            pub = self._open_publish()
            tags = []
            for kind, timestamp, payload in messages:
                header = self._header_or_skip(HEADER_PARSERS[kind], payload)
                if header is not None:
                    tags.append((kind, self._timeline(kind, timestamp), payload, header))
            if not tags:
                return
            self._append(b"".join(F.encode_tag(kind, ts, payload) for kind, ts, payload, _ in tags))
            for kind, ts, payload, header in tags:
                self._figures.tag(kind, ts, len(payload), header, pub, payload)

    def _timeline(self, kind: int, timestamp: int) -> int:
        if self._pub_offset is None:
            self._pub_offset = self._pub_target - timestamp
            self._publish["timestamp_offset_ms"] = self._pub_offset
        ts = timestamp + self._pub_offset
        floor = self._pub_last[kind]
        if floor is None:
            floor = self._pub_target
        if ts < floor:
            ts = floor
            self._stats.timestamp_regressions += 1
        self._pub_last[kind] = ts
        return ts

    def _append(self, data: bytes) -> None:
        try:
            F.write_all(self._fd, data)
        except OSError:
            try:  # a full disk may have taken part of the tag: the next one must not follow a cut tag
                os.ftruncate(self._fd, self._stats.bytes)
            except OSError:
                self._broken = True  # a cut tag stays at the end: nothing may follow it
            raise
        self._stats.bytes += len(data)
        self._changed = True

    def _open_publish(self) -> dict:
        self._check_open()
        if self._publish is None:
            raise RecordingError("no publish is open: call begin_publish() first")
        return self._publish

    def _check_open(self) -> None:
        if self._closing or self._fd is None:
            raise RecordingError(f"{self.folder.name} is finished")
        if self._broken:
            raise RecordingError(f"{self.folder.name}: a failed write left a cut tag; finish() or recover_recording() cuts it off")

    # -- durability and the end ------------------------------------------------------------------

    def flush(self) -> None:
        """Make everything written so far durable (with sync) and the manifest current."""
        with self._lock:
            if self._fd is None or self._closing:
                return
            if self._sync:
                os.fsync(self._fd)
            if self._changed and (time.monotonic() - self._manifest_saved >= MANIFEST_INTERVAL_S
                                  or self._landmarks() != self._saved_landmarks):
                self._save_manifest()

    def finish(self) -> None:
        """The session is over: index tables, the MP4(s), the final manifest. The FLV stays."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._publish is not None:
                self._end_publish(FINISHED_OPEN, time.time())
            if self._sync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._save_manifest()  # the publish's end, before a remux that may take a while
        # The slow part, without the lock: stats() keeps answering.
        path = self.folder / FLV
        scan = F.scan_flv(path)
        if scan.truncated_bytes:  # only after a failed write that could not be undone
            truncate_durably(path, scan.end, sync=self._sync)
        write_indexes(self.folder, scan, self._manifest["publishes"], sync=self._sync)
        mp4s, error = write_mp4s(self.folder, scan, self._manifest["publishes"], sync=self._sync)
        with self._lock:
            m = self._manifest
            m["mp4"] = mp4s
            if error:
                m["mp4_error"] = error
            else:
                m.pop("mp4_error", None)
            m["state"] = FINISHED
            m["ended"] = m["publishes"][-1]["ended"] if m["publishes"] else iso(time.time())
            self._save_manifest()

    @property
    def state(self) -> str:
        return self._manifest["state"]

    def stats(self) -> dict:
        with self._lock:
            figures = self._stats.as_dict()
            figures["state"] = self._manifest["state"]
            figures["publishing"] = self._publish is not None
            figures["mp4"] = [e["file"] for e in self._manifest["mp4"]] if self.state == FINISHED else None
            figures["mp4_error"] = self._manifest.get("mp4_error")
            return figures

    def _save_manifest(self) -> None:
        self._manifest["stats"] = self._stats.as_dict()
        self._manifest["updated"] = iso(time.time())
        write_json(self.folder / MANIFEST, self._manifest, sync=self._sync)
        self._changed = False
        self._manifest_saved = time.monotonic()
        self._saved_landmarks = self._landmarks()

    def _landmarks(self) -> tuple:
        """What a flush saves at once: the counts recovery cannot take again from the FLV (what
        never reached it), and whether the open publish has its first tag."""
        first = self._publish.get("first_timestamp_ms") if self._publish is not None else None
        return self._stats.timestamp_regressions, self._stats.skipped_tags, len(self._manifest["publishes"]), first

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text
