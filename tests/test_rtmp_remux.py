"""FLV -> MP4 without re-encoding: timestamps and frames kept, one MP4 per run of one
configuration (a re-publish at another picture size starts stream-2.mp4), failures contained."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from test_rtmp_flv import feed, make_flv, probe_streams, read_tags, tool

from recorder.rtmp import flv as F
from recorder.rtmp import recording_mp4
from recorder.rtmp.recording import Recording
from recorder.rtmp.recording_manifest import FINISHED
from recorder.rtmp.remux import Segment, _SegmentReader, plan_segments, remux_to_mp4

T0 = 1_795_256_102.0


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("remux")
    audio_only = folder / "audio.flv"
    subprocess.run([tool("ffmpeg"), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "2",
                    "-c:a", "aac", "-f", "flv", str(audio_only)], check=True, capture_output=True)
    return {"small": make_flv(folder / "small.flv"), "big": make_flv(folder / "big.flv", size="640x360"),
            "audio": audio_only}


def packets(path: Path) -> dict[str, list[tuple[float, float, bool]]]:
    """(pts, dts, keyframe) in seconds of every packet, by stream type."""
    out = subprocess.run([tool("ffprobe"), "-v", "error", "-show_entries", "packet=codec_type,pts_time,dts_time,flags",
                          "-of", "json", str(path)], check=True, capture_output=True)
    found: dict[str, list] = {"video": [], "audio": []}
    for p in json.loads(out.stdout)["packets"]:
        found[p["codec_type"]].append((float(p["pts_time"]), float(p["dts_time"]), "K" in p["flags"]))
    return found


def test_remux_keeps_every_packet_and_its_timestamps(clips, tmp_path):
    mp4 = tmp_path / "out.mp4"
    result = remux_to_mp4(clips["small"], mp4, sync=False)
    assert (result.video_packets, result.adjusted, result.skipped) == (45, 0, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temporary file left
    p = probe_streams(mp4)
    assert (p["video"]["codec_name"], p["audio"]["codec_name"]) == ("h264", "aac")
    assert (p["video"]["width"], p["video"]["height"], int(p["video"]["nb_read_frames"])) == (320, 240, 45)
    assert p["format"]["format_name"].startswith("mov,mp4")
    src, out = packets(clips["small"]), packets(mp4)
    for kind in ("video", "audio"):
        assert len(out[kind]) == len(src[kind])
        # MP4's edit list shifts by the first composition offset: compare what a player shows
        shift = min(p for p, _, _ in src[kind]) - min(p for p, _, _ in out[kind])
        assert [k for *_, k in out[kind]] == [k for *_, k in src[kind]]
        for (sp, _, _), (op, _, _) in zip(src[kind], out[kind], strict=True):
            assert op + shift == pytest.approx(sp, abs=0.0015)
    # moov first (faststart): the MP4 plays while it downloads
    head = mp4.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_audio_only(clips, tmp_path):
    mp4 = tmp_path / "a.mp4"
    result = remux_to_mp4(clips["audio"], mp4, sync=False)
    p = probe_streams(mp4)
    assert "video" not in p and p["audio"]["codec_name"] == "aac" and result.video_packets == 0
    assert int(p["audio"]["nb_read_frames"]) == result.audio_packets == len(packets(clips["audio"])["audio"])


def test_a_failed_remux_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.flv"
    bad.write_bytes(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00" + b"\x09\xff\xff\xff" + b"\x00" * 64)
    with pytest.raises(Exception):  # noqa: B017 - whatever PyAV raises
        remux_to_mp4(bad, tmp_path / "out.mp4", sync=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.flv"]


def test_one_configuration_is_one_segment(clips):
    (seg,) = plan_segments(clips["small"])
    scan = F.scan_flv(clips["small"])
    assert (seg.start, seg.end, seg.prefix) == (scan.tags[0].offset, scan.end, [])
    assert (seg.video_frames, seg.first_ts, seg.last_ts) == (45, 0, max(t.timestamp for t in scan.tags))


def test_segment_reader(clips):
    scan = F.scan_flv(clips["small"])
    raw = clips["small"].read_bytes()
    seg = Segment(scan.tags[5].offset, scan.tags[20].offset, prefix=[b"\xaf\x00\x12\x08"], prefix_types=[F.AUDIO],
                  first_ts=700)
    expected = F.file_header() + F.encode_tag(F.AUDIO, 700, b"\xaf\x00\x12\x08") + raw[seg.start:seg.end]
    reader = _SegmentReader(clips["small"], seg)
    try:
        assert reader.read() == expected
        reader.seek(-100, io.SEEK_END)
        assert reader.read(60) == expected[-100:-40]
        reader.seek(3)
        assert reader.read(40) == expected[3:43]  # across the header and the range
        reader.seek(10, io.SEEK_CUR)
        assert reader.tell() == 53 and reader.read(5) == expected[53:58]
    finally:
        reader.close()


def _recording(tmp_path: Path, *publishes) -> Path:
    rec = Recording.create(tmp_path / "data", "live", "k", now=T0, sync=False)
    t = T0
    for tags in publishes:
        rec.begin_publish(client="c", tc_url=None, publish_name="k", now=t)
        feed(rec, tags)
        t += 10
        rec.end_publish(reason="unpublished", now=t)
        t += 2
    rec.finish()
    return rec.folder


def test_a_new_picture_size_starts_a_new_mp4(clips, tmp_path):
    small, big = read_tags(clips["small"]), read_tags(clips["big"])
    folder = _recording(tmp_path, small, big, small)
    m = json.loads((folder / "session.json").read_bytes())
    assert m["state"] == FINISHED and "mp4_error" not in m
    assert [(e["file"], e["publishes"], e["video_frames"]) for e in m["mp4"]] == [
        ("stream.mp4", [1], 45), ("stream-2.mp4", [2], 45), ("stream-3.mp4", [3], 45)]
    starts = [p["first_timestamp_ms"] for p in m["publishes"]]
    assert [e["first_timestamp_ms"] for e in m["mp4"]] == starts and starts == sorted(starts)
    for entry, size in zip(m["mp4"], ("320x240", "640x360", "320x240"), strict=True):
        p = probe_streams(folder / entry["file"])
        assert f"{p['video']['width']}x{p['video']['height']}" == size
        assert int(p["video"]["nb_read_frames"]) == 45 and p["audio"]["codec_name"] == "aac"
        assert float(p["format"]["start_time"]) < 0.2  # each MP4 starts at 0, not at its place on the timeline
    assert int(probe_streams(folder / "stream.flv")["video"]["nb_read_frames"]) == 135  # the FLV has all of it

    again = Recording.reopen(folder, sync=False)  # continuing: the old MP4s go, finish writes them again
    assert not list(folder.glob("*.mp4"))
    again.begin_publish(client="c", tc_url=None, publish_name="k", now=T0 + 100)
    feed(again, small)
    again.end_publish(reason="unpublished", now=T0 + 104)
    again.finish()
    m = json.loads((folder / "session.json").read_bytes())
    assert [e["publishes"] for e in m["mp4"]] == [[1], [2], [3, 4]]
    assert int(probe_streams(folder / "stream-3.mp4")["video"]["nb_read_frames"]) == 90


def test_a_change_within_a_publish_carries_the_other_configuration(clips, tmp_path):
    small, big = read_tags(clips["small"]), read_tags(clips["big"])
    last = max(ts for _, ts, _ in small)
    rec = Recording.create(tmp_path / "data", "live", "k", now=T0, sync=False)
    rec.begin_publish(client="c", tc_url=None, publish_name="k", now=T0)
    feed(rec, small)
    # the encoder switches picture size mid-stream: a new AVC configuration, the AAC one not sent again
    later = [t for t in big if t[0] == F.VIDEO or (t[0] == F.AUDIO and F.parse_audio_header(t[2]).is_frame)]
    audio_frames = sum(t[0] == F.AUDIO for t in later)
    feed(rec, later, shift=last + 100)
    rec.end_publish(reason="unpublished", now=T0 + 7)
    rec.finish()
    m = json.loads((rec.folder / "session.json").read_bytes())
    assert [(e["file"], e["publishes"]) for e in m["mp4"]] == [("stream.mp4", [1]), ("stream-2.mp4", [1])]
    p = probe_streams(rec.folder / "stream-2.mp4")
    assert (p["video"]["width"], int(p["video"]["nb_read_frames"])) == (640, 45)
    assert int(p["audio"]["nb_read_frames"]) == audio_frames
    assert p["audio"]["sample_rate"] == "44100"


def test_a_failed_remux_keeps_the_session(clips, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recording_mp4, "remux_to_mp4", broken)
    folder = _recording(tmp_path, read_tags(clips["small"]))
    m = json.loads((folder / "session.json").read_bytes())
    assert m["state"] == FINISHED and m["mp4"] == [] and "No space left" in m["mp4_error"]
    assert (folder / "video_index.parquet").exists() and F.scan_flv(folder / "stream.flv").complete
    monkeypatch.undo()
    Recording.reopen(folder, sync=False).finish()  # a later finish writes it
    m = json.loads((folder / "session.json").read_bytes())
    assert "mp4_error" not in m and [e["file"] for e in m["mp4"]] == ["stream.mp4"]
