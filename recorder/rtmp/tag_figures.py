"""What each media tag adds to a recording's figures (RecordingStats) and to its publish's
counts in the manifest: one code for the live recording and for its replay from the FLV, so
that a recording continued after a crash or a restart counts as if it had never stopped."""

from __future__ import annotations

from pathlib import Path

from . import flv as F
from .stats import RecordingStats


class TagFigures:
    def __init__(self, stats: RecordingStats):
        self.stats = stats
        self._configs: dict[int, bytes | None] = {F.VIDEO: None, F.AUDIO: None}  # sequence headers in force

    def tag(self, kind: int, timestamp: int, size: int, header: F.VideoHeader | F.AudioHeader,
            publish: dict | None, data: bytes | None) -> None:
        """A video or audio tag at `timestamp` on the FLV timeline; `data` (the tag data) is
        read for sequence headers only."""
        if header.sequence_header and data != self._configs[kind]:
            self._configs[kind] = bytes(data)
            _read_config(self.stats, kind, data, header)
        if kind == F.VIDEO:
            self.stats.video(timestamp, size, header)
        else:
            self.stats.audio(timestamp, size, header)
        if publish is not None:
            if publish["first_timestamp_ms"] is None:
                publish["first_timestamp_ms"] = timestamp
            if publish["last_timestamp_ms"] is None or timestamp > publish["last_timestamp_ms"]:
                publish["last_timestamp_ms"] = timestamp
            if header.is_frame:
                publish["video_frames" if kind == F.VIDEO else "audio_frames"] += 1


def _read_config(stats: RecordingStats, kind: int, data: bytes, header) -> None:
    """The codec configuration a sequence header carries, into the figures (when it parses)."""
    try:
        if kind == F.AUDIO:
            stats.aac_config(F.parse_aac_config(bytes(data[header.data_offset:])))
        elif header.codec == "h264":
            stats.avc_config(F.parse_avc_config(bytes(data[header.data_offset:])))
    except F.FlvError:
        pass


def replay_figures(path: Path, scan: F.FlvScan, publishes: list[dict], metadata: list[dict],
                   last_stats: dict | None = None) -> RecordingStats:
    """The figures a live recording of this FLV would have (and each publish's counts, set in
    `publishes`). The counts of what never reached the FLV come from the last manifest's figures."""
    stats = RecordingStats()
    stats.bytes = scan.end
    stats.timestamp_regressions = (last_stats or {}).get("timestamp_regressions", 0)
    stats.skipped_tags = (last_stats or {}).get("skipped_tags", 0)
    figures = TagFigures(stats)
    by_publish: dict[int, list[dict]] = {}
    for m in metadata:
        by_publish.setdefault(m.get("publish"), []).append(m.get("values") or {})
    for p in publishes:
        p.update(first_timestamp_ms=None, last_timestamp_ms=None, video_frames=0, audio_frames=0)
    nxt = 0  # index of the next publish to begin
    current: dict | None = None

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
            data = None
            if header.sequence_header:
                f.seek(tag.data_offset)
                data = f.read(tag.size)
            figures.tag(tag.type, tag.timestamp, tag.size, header, current, data)
    advance(None)
    return stats
