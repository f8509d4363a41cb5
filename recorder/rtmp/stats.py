"""Figures of one RTMP recording, updated per tag in O(1): counts, the timeline, codecs and
picture size, recent frame rate and bit rate, and frames dropped by the sender.

Everything here is computed from what the FLV holds (timeline timestamps, tag sizes, tag
headers, sequence headers) plus each publish's onMetaData, so recovery rebuilds the same figures
by replaying the file; only `timestamp_regressions` (clamped before anything was written) is
known to the live recording alone.

Dropped frames: between consecutive video frames of one publish, a DTS delta above 1.5 times the
expected frame interval counts round(delta / expected) - 1 frames. The expected interval is
1000 / `framerate` of the publish's onMetaData when it gave one, else the median of the last
deltas. The gap between publishes is not a drop.

Recent figures (fps, bitrate_bps) cover the last RECENT_MS of the stream's own timestamps, in
the open (or last) publish.
"""

from __future__ import annotations

import statistics
from collections import deque

from .flv import FORMAT_AAC, AacConfig, AudioHeader, AvcConfig, VideoHeader

RECENT_MS = 5000
MEDIAN_DELTAS = 31
DEFAULT_FRAME_MS = 1000 / 30


class RecordingStats:
    def __init__(self) -> None:
        self.bytes = 0  # the FLV's size
        self.video_frames = 0
        self.keyframes = 0
        self.audio_frames = 0
        self.video_sequence_headers = 0
        self.audio_sequence_headers = 0
        self.skipped_tags = 0  # payloads that cannot be FLV tag data (too short, over 16 MiB): not written
        self.dropped_frames = 0
        self.timestamp_regressions = 0
        self.publishes = 0
        self.first_ts: int | None = None  # media tags, FLV timeline (ms)
        self.last_ts: int | None = None
        self.video_codec: str | None = None
        self.audio_codec: str | None = None
        self.video_config: dict | None = None  # profile, level, width, height
        self.audio_config: dict | None = None  # profile, sample_rate, channels
        self.metadata_size: tuple[int, int] | None = None  # width, height from onMetaData
        self.media_bytes = 0  # audio + video tag data
        self._streamed_ms = 0  # the closed publishes' spans
        self._pub_first: int | None = None
        self._pub_last: int | None = None
        self._framerate: float | None = None
        self._prev_video: int | None = None
        self._deltas: deque[int] = deque(maxlen=MEDIAN_DELTAS)
        self._delta_sum = 0
        self._delta_count = 0
        self._recent_frames: deque[int] = deque()
        self._recent_bytes: deque[tuple[int, int]] = deque()
        self._recent_bytes_sum = 0

    # -- events ----------------------------------------------------------------------------------

    def new_publish(self) -> None:
        self._close_publish_span()
        self.publishes += 1
        self._framerate = None
        self._prev_video = None
        self._recent_frames.clear()
        self._recent_bytes.clear()
        self._recent_bytes_sum = 0

    def metadata(self, values: dict) -> None:
        if not isinstance(values, dict):
            return
        rate = values.get("framerate", values.get("videoframerate"))
        if isinstance(rate, int | float) and not isinstance(rate, bool) and 0 < rate < 1000:
            self._framerate = float(rate)
        w, h = values.get("width"), values.get("height")
        if isinstance(w, int | float) and isinstance(h, int | float) and w > 0 and h > 0:
            self.metadata_size = (int(w), int(h))

    def video(self, ts: int, size: int, header: VideoHeader) -> None:
        self._media(ts, size)
        self.video_codec = header.codec
        if header.sequence_header:
            self.video_sequence_headers += 1
            return
        if not header.is_frame:
            return
        self.video_frames += 1
        if header.keyframe:
            self.keyframes += 1
        prev, self._prev_video = self._prev_video, ts
        self._recent_frames.append(ts)
        while self._recent_frames[0] < ts - RECENT_MS:
            self._recent_frames.popleft()
        if prev is None:
            return
        delta = ts - prev
        expected = self.expected_frame_ms()
        if expected and delta > 1.5 * expected:
            self.dropped_frames += max(0, round(delta / expected) - 1)
        self._deltas.append(delta)
        self._delta_sum += delta
        self._delta_count += 1

    def audio(self, ts: int, size: int, header: AudioHeader) -> None:
        self._media(ts, size)
        self.audio_codec = header.codec
        if header.sequence_header:
            self.audio_sequence_headers += 1
        else:
            self.audio_frames += 1
            if header.sound_format != FORMAT_AAC and self.audio_config is None:  # AAC: from its config
                self.audio_config = {"sample_rate": header.rate_hz, "channels": header.channels, "bits": header.bits}

    def avc_config(self, config: AvcConfig) -> None:
        self.video_config = config.as_dict()

    def aac_config(self, config: AacConfig) -> None:
        self.audio_config = config.as_dict()

    def _media(self, ts: int, size: int) -> None:
        self.media_bytes += size
        if self.first_ts is None:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        if self._pub_first is None:
            self._pub_first = ts
        if self._pub_last is None or ts > self._pub_last:
            self._pub_last = ts
        self._recent_bytes.append((ts, size))
        self._recent_bytes_sum += size
        while self._recent_bytes[0][0] < ts - RECENT_MS:
            self._recent_bytes_sum -= self._recent_bytes.popleft()[1]

    def _close_publish_span(self) -> None:
        if self._pub_first is not None:
            self._streamed_ms += self._pub_last - self._pub_first
        self._pub_first = self._pub_last = None

    # -- figures ---------------------------------------------------------------------------------

    def expected_frame_ms(self) -> float | None:
        """The frame interval the sender means: from onMetaData's framerate, else measured."""
        if self._framerate:
            return 1000 / self._framerate
        if self._deltas:
            median = statistics.median(self._deltas)
            return median if median > 0 else None
        return None

    def frame_interval_ms(self) -> float:
        return self.expected_frame_ms() or DEFAULT_FRAME_MS

    @property
    def width(self) -> int | None:
        if self.video_config and self.video_config.get("width"):
            return self.video_config["width"]
        return self.metadata_size[0] if self.metadata_size else None

    @property
    def height(self) -> int | None:
        if self.video_config and self.video_config.get("height"):
            return self.video_config["height"]
        return self.metadata_size[1] if self.metadata_size else None

    def duration_s(self) -> float:
        """The timeline's span, gaps between publishes included."""
        return 0.0 if self.first_ts is None else (self.last_ts - self.first_ts) / 1000

    def streamed_s(self) -> float:
        """The publishes' spans added up (the time something was streamed)."""
        open_span = 0 if self._pub_first is None else self._pub_last - self._pub_first
        return (self._streamed_ms + open_span) / 1000

    def fps(self) -> float:
        """Video frames per second over the recent window (0.0 until two frames came)."""
        frames = self._recent_frames
        if len(frames) < 2 or frames[-1] <= frames[0]:
            return 0.0
        return round((len(frames) - 1) * 1000 / (frames[-1] - frames[0]), 3)

    def bitrate_bps(self) -> int:
        """Audio and video tag data bits per second over the recent window (0 until known)."""
        window = self._recent_bytes
        if len(window) < 2 or window[-1][0] <= window[0][0]:
            return 0
        return round((self._recent_bytes_sum - window[0][1]) * 8000 / (window[-1][0] - window[0][0]))

    def average_fps(self) -> float | None:
        return round(self._delta_count * 1000 / self._delta_sum, 3) if self._delta_sum > 0 else None

    def average_bitrate_bps(self) -> int | None:
        streamed = self.streamed_s()
        return round(self.media_bytes * 8 / streamed) if streamed > 0 else None

    def as_dict(self) -> dict:
        return {
            "bytes": self.bytes,
            "video_frames": self.video_frames,
            "keyframes": self.keyframes,
            "audio_frames": self.audio_frames,
            "duration_s": self.duration_s(),
            "streamed_s": self.streamed_s(),
            "fps": self.fps(),
            "bitrate_bps": self.bitrate_bps(),
            "average_fps": self.average_fps(),
            "average_bitrate_bps": self.average_bitrate_bps(),
            "dropped_frames": self.dropped_frames,
            "timestamp_regressions": self.timestamp_regressions,
            "skipped_tags": self.skipped_tags,
            "width": self.width,
            "height": self.height,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
            "video": self.video_config,
            "audio": self.audio_config,
            "video_sequence_headers": self.video_sequence_headers,
            "audio_sequence_headers": self.audio_sequence_headers,
            "first_timestamp_ms": self.first_ts,
            "last_timestamp_ms": self.last_ts,
            "publishes": self.publishes,
        }
