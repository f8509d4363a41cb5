"""One RTMP recording session: what every publish of a stream key sends, into one folder.

    <data-dir>/rtmp/<app>/<stream-key>/<session-id>/     session id: UTC start, 20261121T101502Z[-2]
        stream.flv            the FLV as received, append-only (the source of truth)
        session.json          manifest, replaced atomically
        metadata.json         every onMetaData received, with its publish; replaced atomically
        video_index.parquet   one row per video tag  } written at finish and by recover(), from
        audio_index.parquet   one row per audio tag  } the FLV itself
        stream.mp4            the FLV remuxed (no re-encoding), after finish; stream-2.mp4 ...
                              when a publish changed the picture size or codec settings

stream.flv plays while it is written: its header is written once at creation (audio and video
flags both set, as the streams are not known yet) and each tag with one write() of header, data
and PreviousTagSize, so a crash leaves at most one cut tag at the end, which recover() and
reopen() cut off. No tag is fsynced by itself: flush(), called about once a second, fsyncs the
FLV and rewrites the manifest.

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

Index rows: timestamp_ms (DTS on the FLV timeline), pts_ms (DTS + composition offset),
composition_offset_ms, keyframe (a coded key picture; every audio frame is one), sequence_header,
frame (a coded picture or audio frame: not a sequence header, end of sequence or command), size
(tag data bytes), flv_offset (where the tag's 11-byte header starts), publish (1, 2, ...).

The server calls a Recording from one worker thread at a time; stats() may come from any
thread, so the state is under a lock (held for the cost of a write(), never for the remux).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..storage import layout
from ..storage.files import fsync_dir, replace_durably, truncate_durably, write_atomically
from ..storage.layout import check_name
from . import flv as F
from .remux import plan_segments, remux_to_mp4
from .stats import RecordingStats

FORMAT = "recorder.rtmp-session/1"
RTMP_DIR = layout.RTMP_ROOT
FLV = "stream.flv"
MANIFEST = layout.MANIFEST
METADATA = "metadata.json"
VIDEO_INDEX = "video_index.parquet"
AUDIO_INDEX = "audio_index.parquet"
MP4 = "stream.mp4"
RECORDING, UNFINISHED, FINISHED = "recording", "unfinished", "finished"
INTERRUPTED = "interrupted: the recorder stopped"
FINISHED_OPEN = "session finished while publishing"
SUPERSEDED = "superseded: published again"
REDACTED = "<redacted>"

_MP4_NAME = re.compile(r"stream(?:-(\d+))?\.mp4")

INDEX_SCHEMA = pa.schema([
    ("timestamp_ms", pa.int64()),
    ("pts_ms", pa.int64()),
    ("composition_offset_ms", pa.int32()),
    ("keyframe", pa.bool_()),
    ("sequence_header", pa.bool_()),
    ("frame", pa.bool_()),
    ("size", pa.int32()),
    ("flv_offset", pa.int64()),
    ("publish", pa.int32()),
])


class RecordingError(RuntimeError):
    pass


def session_id_for(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def strip_query(text: str | None) -> tuple[str | None, str | None]:
    """`name?query` -> (name, query); the query may be a secret (a token, a password)."""
    if text is None:
        return None, None
    name, sep, query = text.partition("?")
    return name, (query if sep else None)


def mp4_names(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _MP4_NAME.fullmatch(p.name))


def mp4_name(n: int) -> str:
    return MP4 if n == 1 else f"stream-{n}.mp4"


class Recording:
    """One RTMP session folder (see the module docstring)."""

    def __init__(self, folder: Path, manifest: dict, stats: RecordingStats, fd: int, *, sync: bool):
        self.folder = folder
        self._manifest = manifest
        self._stats = stats
        self._fd: int | None = fd
        self._sync = sync
        self._lock = threading.Lock()
        self._metadata: list[dict] = _load_json(folder / METADATA, [])
        self._publish: dict | None = None  # the open publish's manifest entry
        self._pub_target = 0  # where the open publish's first tag lands on the timeline
        self._pub_offset: int | None = None  # timeline = RTMP timestamp + this
        self._pub_last: dict[int, int | None] = {F.VIDEO: None, F.AUDIO: None}
        self._last_end_wall: float | None = None
        self._configs: dict[int, bytes | None] = {F.VIDEO: None, F.AUDIO: None}
        self._secrets: set[str] = set()
        self._changed = False
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
        check_name("app", app)
        check_name("stream key", stream_key)
        now = time.time() if now is None else now
        data_dir = Path(data_dir)
        parent = data_dir / RTMP_DIR / app / stream_key
        parent.mkdir(parents=True, exist_ok=True)
        base = session_id_for(now)
        for n in itertools.count(1):
            session_id = base if n == 1 else f"{base}-{n}"
            folder = parent / session_id
            try:
                folder.mkdir()
                break
            except FileExistsError:
                continue
        if sync:
            for p in (parent, parent.parent, parent.parent.parent, data_dir):
                fsync_dir(p)
        fd = os.open(folder / FLV, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            F.write_all(fd, F.file_header(audio=True, video=True))
            if sync:
                os.fsync(fd)
            manifest = {
                "format": FORMAT, "app": app, "stream_key": stream_key, "session_id": session_id,
                "state": RECORDING, "started": iso(now), "ended": None, "publishes": [],
                "files": _file_names(), "mp4": [], "recoveries": [],
            }
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
        manifest = _load_json(folder / MANIFEST, None)
        if manifest is None or manifest.get("state") == RECORDING or not (folder / FLV).exists():
            recover(folder, sync=sync)  # a crash nobody recovered from yet
            manifest = _load_json(folder / MANIFEST, None)
        scan = F.scan_flv(folder / FLV)
        if scan.truncated_bytes:
            truncate_durably(folder / FLV, scan.end, sync=sync)
        metadata = _load_json(folder / METADATA, [])
        stats = _replay(folder / FLV, scan, manifest["publishes"], metadata, manifest.get("stats"))
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
            write_atomically(self.folder / METADATA, _json(self._metadata), sync=self._sync)

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
        with self._lock:
            pub = self._open_publish()
            header = self._header_or_skip(F.parse_video_header, payload)
            if header is None:
                return
            ts = self._timeline(F.VIDEO, timestamp)
            self._append(F.encode_tag(F.VIDEO, ts, payload))
            if header.sequence_header:
                self._video_config(header, payload)
            self._stats.video(ts, len(payload), header)
            self._count(pub, ts, "video_frames" if header.is_frame else None)

    def write_audio(self, timestamp: int, payload: bytes) -> None:
        with self._lock:
            pub = self._open_publish()
            header = self._header_or_skip(F.parse_audio_header, payload)
            if header is None:
                return
            ts = self._timeline(F.AUDIO, timestamp)
            self._append(F.encode_tag(F.AUDIO, ts, payload))
            if header.sequence_header and payload != self._configs[F.AUDIO]:
                self._configs[F.AUDIO] = bytes(payload)
                _aac_config(self._stats, payload, header)
            self._stats.audio(ts, len(payload), header)
            self._count(pub, ts, "audio_frames" if header.is_frame else None)

    def _video_config(self, header: F.VideoHeader, payload: bytes) -> None:
        if payload != self._configs[F.VIDEO]:
            self._configs[F.VIDEO] = bytes(payload)
            _avc_config(self._stats, payload, header)

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

    def _count(self, pub: dict, ts: int, counter: str | None) -> None:
        if pub["first_timestamp_ms"] is None:
            pub["first_timestamp_ms"] = ts
        if pub["last_timestamp_ms"] is None or ts > pub["last_timestamp_ms"]:
            pub["last_timestamp_ms"] = ts
        if counter:
            pub[counter] += 1
        self._changed = True

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
            raise RecordingError(f"{self.folder.name}: a failed write left a cut tag; finish() or recover() cuts it off")

    # -- durability and the end ------------------------------------------------------------------

    def flush(self) -> None:
        """Make everything written so far durable (with sync) and the manifest current."""
        with self._lock:
            if self._fd is None or self._closing:
                return
            if self._sync:
                os.fsync(self._fd)
            if self._changed:
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
        write_atomically(self.folder / MANIFEST, _json(self._manifest), sync=self._sync)
        self._changed = False

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


# -- index tables and MP4 ------------------------------------------------------------------------


def publish_numbers(offsets, publishes: list[dict]) -> np.ndarray:
    """The publish each FLV offset belongs to: the last one that began at or before it."""
    starts = np.array([p["flv_offset"] for p in publishes], dtype=np.int64)
    numbers = np.array([0] + [p["number"] for p in publishes], dtype=np.int32)
    return numbers[np.searchsorted(starts, np.asarray(offsets, dtype=np.int64), side="right")]


def index_table(scan: F.FlvScan, kind: int, publishes: list[dict]) -> pa.Table:
    tags = [t for t in scan.tags if t.type == kind]
    n = len(tags)
    ts = np.fromiter((t.timestamp for t in tags), np.int64, n)
    headers = [t.video if kind == F.VIDEO else t.audio for t in tags]
    if kind == F.VIDEO:
        cts = np.fromiter((h.composition_offset if h else 0 for h in headers), np.int32, n)
        key = np.fromiter((bool(h and h.is_frame and h.keyframe) for h in headers), np.bool_, n)
    else:
        cts = np.zeros(n, np.int32)
        key = np.fromiter((bool(h and h.is_frame) for h in headers), np.bool_, n)
    seq = np.fromiter((bool(h and h.sequence_header) for h in headers), np.bool_, n)
    frame = np.fromiter((bool(h and h.is_frame) for h in headers), np.bool_, n)
    offsets = np.fromiter((t.offset for t in tags), np.int64, n)
    return pa.table({
        "timestamp_ms": ts,
        "pts_ms": ts + cts,
        "composition_offset_ms": cts,
        "keyframe": key,
        "sequence_header": seq,
        "frame": frame,
        "size": np.fromiter((t.size for t in tags), np.int32, n),
        "flv_offset": offsets,
        "publish": publish_numbers(offsets, publishes),
    }, schema=INDEX_SCHEMA)


def write_indexes(folder: Path, scan: F.FlvScan, publishes: list[dict], *, sync: bool = True) -> None:
    for kind, name in ((F.VIDEO, VIDEO_INDEX), (F.AUDIO, AUDIO_INDEX)):
        temp = folder / f".{name}.tmp"
        pq.write_table(index_table(scan, kind, publishes), temp)
        replace_durably(temp, folder / name, sync=sync)


def write_mp4s(folder: Path, scan: F.FlvScan, publishes: list[dict], *, sync: bool = True) -> tuple[list[dict], str | None]:
    """One MP4 per run of the FLV with one configuration (see remux.py); MP4s of an earlier
    finish that are not written again are deleted. Returns their manifest entries and, when
    the remux failed, why (the FLV is untouched either way)."""
    path = folder / FLV
    entries, written, error = [], set(), None
    try:
        segments = [s for s in plan_segments(path, scan) if not s.empty]
        for n, seg in enumerate(segments, 1):
            name = mp4_name(n)
            result = remux_to_mp4(path, folder / name, segment=seg, sync=sync)
            written.add(name)
            first, last = publish_numbers([seg.start, max(seg.start, seg.end - 1)], publishes).tolist()
            entries.append({"file": name, "first_timestamp_ms": seg.first_ts, "last_timestamp_ms": seg.last_ts,
                            "publishes": list(range(max(first, 1), last + 1)) if last else [],
                            "video_frames": result.video_packets, "audio_frames": result.audio_packets,
                            "timestamps_adjusted": result.adjusted})
    except Exception as e:  # noqa: BLE001 - a remux failure must not lose the session's other files
        error = f"{type(e).__name__}: {e}".replace(f"{folder}{os.sep}", "")
    for p in mp4_names(folder):
        if p.name not in written:
            p.unlink()
    return entries, error


# -- recovery ------------------------------------------------------------------------------------


@dataclass
class RecoveryReport:
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


def recover(folder: Path, *, now: float | None = None, sync: bool = True) -> RecoveryReport:
    """Bring a folder left by a crash (kill -9, power loss) to a consistent state "unfinished":
    the FLV cut after its last complete tag, open publishes closed (their end estimated from
    their start and their timestamps), the index tables rebuilt from the FLV, the figures
    replayed from it, the manifest rewritten. A finished folder is left alone. Idempotent.
    The caller then finishes it (Recording.reopen(folder).finish()) or continues it."""
    folder = Path(folder)
    now = time.time() if now is None else now
    manifest = _load_json(folder / MANIFEST, None)
    found = manifest.get("state", "missing") if manifest else "missing"
    report = RecoveryReport(folder, found)
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
    metadata = _load_json(folder / METADATA, None)
    if metadata is None:
        metadata = _metadata_from_flv(path, scan, publishes)
        if metadata:
            write_atomically(folder / METADATA, _json(metadata), sync=sync)
    stats = _replay(path, scan, publishes, metadata, manifest.get("stats"))
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
    manifest["files"] = _file_names()
    manifest.setdefault("mp4", [])
    manifest.setdefault("recoveries", []).append({
        "at": iso(now), "found_state": found, "truncated_bytes": report.truncated_bytes, "problem": report.problem,
        "publishes_closed": report.publishes_closed})
    manifest["updated"] = iso(now)
    write_atomically(folder / MANIFEST, _json(manifest), sync=sync)
    return report


def recording_folders(data_dir: Path) -> list[Path]:
    """Every <data-dir>/rtmp/<app>/<stream-key>/<session-id> folder holding a FLV or a manifest."""
    found = []
    for app in _subfolders(Path(data_dir) / RTMP_DIR):
        for key in _subfolders(app):
            found += [s for s in _subfolders(key) if (s / FLV).exists() or (s / MANIFEST).exists()]
    return found


def unfinished_recordings(data_dir: Path) -> list[Path]:
    """The recording folders not finished (a crash left them "recording", or recover() made them
    "unfinished"), oldest first within each stream key."""
    return [f for f in recording_folders(data_dir) if (_load_json(f / MANIFEST, None) or {}).get("state") != FINISHED]


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _replay(path: Path, scan: F.FlvScan, publishes: list[dict], metadata: list[dict],
            last_stats: dict | None = None) -> RecordingStats:
    """The figures a live recording of this FLV would have (and each publish's counts). The
    counts of what never reached the FLV come from the last manifest's figures."""
    stats = RecordingStats()
    stats.bytes = scan.end
    stats.timestamp_regressions = (last_stats or {}).get("timestamp_regressions", 0)
    stats.skipped_tags = (last_stats or {}).get("skipped_tags", 0)
    by_publish: dict[int, list[dict]] = {}
    for m in metadata:
        by_publish.setdefault(m.get("publish"), []).append(m.get("values") or {})
    for p in publishes:
        p.update(first_timestamp_ms=None, last_timestamp_ms=None, video_frames=0, audio_frames=0)
    nxt = 0  # index of the next publish to begin
    current: dict | None = None
    configs: dict[int, bytes | None] = {F.VIDEO: None, F.AUDIO: None}

    def advance(offset: int | None) -> None:
        nonlocal nxt, current
        while nxt < len(publishes) and (offset is None or offset >= publishes[nxt]["flv_offset"]):
            current = publishes[nxt]
            nxt += 1
            stats.new_publish()
            for values in by_publish.get(current["number"], []):
                stats.metadata(values)

    with open(path, "rb") as f:
        for tag in scan.tags:
            advance(tag.offset)
            header = tag.video if tag.type == F.VIDEO else tag.audio
            if header is None:
                continue
            if header.sequence_header:
                f.seek(tag.data_offset)
                data = f.read(tag.size)
                if data != configs[tag.type]:
                    configs[tag.type] = data
                    (_avc_config if tag.type == F.VIDEO else _aac_config)(stats, data, header)
            if tag.type == F.VIDEO:
                stats.video(tag.timestamp, tag.size, header)
            else:
                stats.audio(tag.timestamp, tag.size, header)
            if current is not None:
                if current["first_timestamp_ms"] is None:
                    current["first_timestamp_ms"] = tag.timestamp
                if current["last_timestamp_ms"] is None or tag.timestamp > current["last_timestamp_ms"]:
                    current["last_timestamp_ms"] = tag.timestamp
                if header.is_frame:
                    current["video_frames" if tag.type == F.VIDEO else "audio_frames"] += 1
    advance(None)
    return stats


def _avc_config(stats: RecordingStats, payload: bytes, header: F.VideoHeader) -> None:
    if header.codec == "h264":
        try:
            stats.avc_config(F.parse_avc_config(bytes(payload[header.data_offset:])))
        except F.FlvError:
            pass


def _aac_config(stats: RecordingStats, payload: bytes, header: F.AudioHeader) -> None:
    try:
        stats.aac_config(F.parse_aac_config(bytes(payload[header.data_offset:])))
    except F.FlvError:
        pass


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
    session_id = folder.name
    started = None
    try:
        started = iso(datetime.strptime(session_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError:
        pass
    publishes = []
    if scan.tags:
        publishes.append({"number": 1, "client": None, "tc_url": None, "name": None, "query_removed": False,
                          "started": started, "ended": None, "reason": None, "flv_offset": scan.tags[0].offset,
                          "gap_before_ms": None, "timestamp_offset_ms": None})
    return {"format": FORMAT, "app": folder.parent.parent.name, "stream_key": folder.parent.name,
            "session_id": session_id, "state": UNFINISHED, "started": started, "ended": None,
            "publishes": publishes, "files": _file_names(), "mp4": [], "recoveries": []}


def _file_names() -> dict:
    return {"flv": FLV, "metadata": METADATA, "video_index": VIDEO_INDEX, "audio_index": AUDIO_INDEX}


def _json(value) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _load_json(path: Path, default):
    try:
        return json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return default
