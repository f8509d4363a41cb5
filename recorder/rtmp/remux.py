"""FLV -> MP4 without re-encoding (PyAV): packets are copied with their timestamps, the codec
parameters come from the FLV's streams.

A recording's picture size or codec settings may change between publishes (the glasses switch
from 854x480 to 1080p, say): a new AVC or AAC sequence header with different bytes. FFmpeg can
put both into one MP4 (two sample descriptions in one track), but players disagree on switching
between them, so plan_segments() cuts the FLV where a configuration changes and each part
becomes its own MP4 (stream.mp4, stream-2.mp4, ...), starting at 0; its place on the
recording's timeline is its segment's `first_ts`. Publishes with the same configuration share
one MP4, the time between them (nothing was streamed) a gap in its timeline.

MP4 needs strictly increasing DTS per track: a packet whose DTS does not increase (the FLV's
millisecond timestamps, clamped where the sender went backwards) gets the previous DTS + 1 tick,
and its PTS at least that (recorder.increasing_dts); `RemuxResult.adjusted` counts them.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import av

from ..increasing_dts import IncreasingDts
from ..storage.files import replace_durably
from . import flv as F


@dataclass
class Segment:
    """A run of FLV tags with one video and one audio configuration."""

    start: int  # offset of the first tag
    end: int  # offset after the last tag
    prefix: list[bytes] = field(default_factory=list)  # sequence headers carried over (tag data), video/audio
    prefix_types: list[int] = field(default_factory=list)
    first_ts: int | None = None  # FLV timeline, ms, of the first media tag
    last_ts: int | None = None
    video_frames: int = 0
    audio_frames: int = 0

    @property
    def empty(self) -> bool:
        return self.video_frames == 0 and self.audio_frames == 0


@dataclass
class RemuxResult:
    path: Path
    video_packets: int = 0
    audio_packets: int = 0
    skipped: int = 0  # packets without a DTS
    adjusted: int = 0  # DTS moved up to keep it strictly increasing


def plan_segments(path, scan: F.FlvScan | None = None) -> list[Segment]:
    """Cut the FLV where a sequence header differs from the one in force for its stream."""
    path = Path(path)
    scan = scan or F.scan_flv(path)
    segments: list[Segment] = []
    current = {F.VIDEO: None, F.AUDIO: None}  # sequence header data in force
    seg = Segment(scan.tags[0].offset if scan.tags else scan.end, scan.end)
    with open(path, "rb") as f:
        for tag in scan.tags:
            header = tag.video or tag.audio
            if header is None:
                continue
            if header.sequence_header:
                f.seek(tag.data_offset)
                data = f.read(tag.size)
                old = current[tag.type]
                if old is not None and old != data:
                    seg.end = tag.offset
                    segments.append(seg)
                    seg = Segment(tag.offset, scan.end)
                    for kind in (F.VIDEO, F.AUDIO):
                        if kind != tag.type and current[kind] is not None:
                            seg.prefix.append(current[kind])
                            seg.prefix_types.append(kind)
                current[tag.type] = data
            if seg.first_ts is None:
                seg.first_ts = tag.timestamp
            seg.last_ts = tag.timestamp if seg.last_ts is None else max(seg.last_ts, tag.timestamp)
            if header.is_frame:
                if tag.type == F.VIDEO:
                    seg.video_frames += 1
                else:
                    seg.audio_frames += 1
    segments.append(seg)
    return segments


def remux_to_mp4(flv: Path, mp4: Path, *, segment: Segment | None = None, sync: bool = True,
                 faststart: bool = True) -> RemuxResult:
    """Copy the FLV's (or one segment's) audio and video into an MP4, written under a temporary
    name and renamed over `mp4`. Timestamps start where the segment's first tag is (0 for a
    recording's first publish)."""
    flv, mp4 = Path(flv), Path(mp4)
    temp = mp4.with_name(f".{mp4.name}.tmp")
    shift = 0
    if segment is None:
        source = str(flv)
    else:
        source = _SegmentReader(flv, segment)
        shift = segment.first_ts or 0
    result = RemuxResult(mp4)
    try:
        with av.open(source, "r", format="flv") as inp:
            streams = sorted((s for s in inp.streams if s.type in ("video", "audio")), key=lambda s: s.type != "video")
            options = {"movflags": "+faststart"} if faststart else {}
            with av.open(str(temp), "w", format="mp4", options=options) as out:
                mapping = {s.index: out.add_stream_from_template(s) for s in streams}
                increasing = IncreasingDts()
                for packet in inp.demux(streams):
                    index = packet.stream.index
                    if packet.dts is None:
                        if packet.size:
                            result.skipped += 1
                        continue
                    dts = packet.dts - _in_stream_units(shift, packet.time_base)
                    pts = dts if packet.pts is None else packet.pts - _in_stream_units(shift, packet.time_base)
                    packet.dts, packet.pts = increasing(index, dts, pts)
                    packet.stream = mapping[index]
                    out.mux(packet)
                    if packet.stream.type == "video":
                        result.video_packets += 1
                    else:
                        result.audio_packets += 1
                result.adjusted = increasing.adjusted
        replace_durably(temp, mp4, sync=sync)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        if isinstance(source, _SegmentReader):
            source.close()
    return result


def _in_stream_units(ms: int, time_base) -> int:
    """`ms` milliseconds in a stream's time base (FLV's is 1/1000)."""
    if not ms:
        return 0
    return round(ms / 1000 / float(time_base)) if time_base else ms


class _SegmentReader(io.RawIOBase):
    """A FLV made of a header, the segment's carried-over sequence headers and a byte range of
    the recording's FLV, read without copying the range."""

    def __init__(self, path: Path, segment: Segment):
        super().__init__()
        ts = segment.first_ts or 0
        head = F.file_header() + b"".join(F.encode_tag(t, ts, d) for t, d in zip(segment.prefix_types, segment.prefix,
                                                                                   strict=True))
        self._head = head
        self._start, self._length = segment.start, segment.end - segment.start
        self._fd = os.open(path, os.O_RDONLY)
        self._size = len(head) + self._length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = 0
        while n < len(view) and self._pos < self._size:
            if self._pos < len(self._head):
                chunk = self._head[self._pos:self._pos + len(view) - n]
            else:
                at = self._pos - len(self._head)
                chunk = os.pread(self._fd, min(len(view) - n, self._length - at), self._start + at)
                if not chunk:
                    break
            view[n:n + len(chunk)] = chunk
            n += len(chunk)
            self._pos += len(chunk)
        return n

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
