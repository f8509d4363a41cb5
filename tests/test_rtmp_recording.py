"""The RTMP session folder: real FFmpeg-made streams fed through Recording as the server would,
checked with ffprobe, against the index tables and the FLV's bytes; re-publishes, crashes
(a cut FLV, a real kill -9), recovery and continuing, secrets, dropped frames, figures."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_rtmp_flv import feed, make_flv, probe_streams, read_tags

from recorder.rtmp import flv as F
from recorder.rtmp import recording as recording_module
from recorder.rtmp.recording import Recording
from recorder.rtmp.recording_manifest import FINISHED, INTERRUPTED, RECORDING, UNFINISHED, RecordingError, iso
from recorder.rtmp.recording_recovery import recover_recording, unfinished_recordings

T0 = 1_795_256_102.25  # 2026-11-21 10:15:02.25 UTC
FRAME_S = 1 / 15


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, list]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "a": read_tags(make_flv(folder / "a.flv")),
        "long": read_tags(make_flv(folder / "long.flv", seconds=8)),
        "video_only": read_tags(make_flv(folder / "v.flv", audio=False)),
    }


def record(tmp_path: Path, *publishes, app="live", key="glasses1", sync=False, finish=True) -> tuple[Recording, list]:
    """One Recording, a publish per list of tags (5 s of wall clock between them)."""
    rec = Recording.create(tmp_path / "data", app, key, now=T0, sync=sync)
    sent = []
    t = T0
    for n, tags in enumerate(publishes, 1):
        rec.begin_publish(client=f"10.0.0.{n}:5000", tc_url="rtmp://rec.local/live", publish_name=key, now=t)
        sent.append(feed(rec, tags))
        t += tags[-1][1] / 1000
        rec.end_publish(reason="unpublished", now=t)
        t += 5
    if finish:
        rec.finish()
    return rec, sent


def manifest(folder: Path) -> dict:
    return json.loads((folder / "session.json").read_bytes())


def check_index(folder: Path) -> dict[int, list[dict]]:
    """Every index row against the FLV's own bytes; returns the rows by tag type."""
    raw = (folder / "stream.flv").read_bytes()
    scan = F.scan_flv(folder / "stream.flv")
    assert scan.complete
    rows_by_type = {}
    for kind, name in ((F.VIDEO, "video_index.parquet"), (F.AUDIO, "audio_index.parquet")):
        rows = pq.read_table(folder / name).to_pylist()
        assert len(rows) == len(scan.of_type(kind))
        for row in rows:
            at, size = row["flv_offset"], row["size"]
            assert raw[at] == kind
            assert int.from_bytes(raw[at + 1:at + 4], "big") == size
            assert raw[at + 4] << 16 | raw[at + 5] << 8 | raw[at + 6] | raw[at + 7] << 24 == row["timestamp_ms"]
            assert int.from_bytes(raw[at + 11 + size:at + 15 + size], "big") == size + 11
            data = raw[at + 11:at + 11 + size]
            if kind == F.VIDEO:
                h = F.parse_video_header(data)
                assert row["keyframe"] == (h.keyframe and h.is_frame)
                assert row["composition_offset_ms"] == h.composition_offset
            else:
                h = F.parse_audio_header(data)
                assert row["keyframe"] == h.is_frame and row["composition_offset_ms"] == 0
            assert row["sequence_header"] == h.sequence_header and row["frame"] == h.is_frame
            assert row["pts_ms"] == row["timestamp_ms"] + row["composition_offset_ms"]
        rows_by_type[kind] = rows
    return rows_by_type


def check_durations(folder: Path, mp4: str = "stream.mp4") -> float:
    """ffprobe's durations against the FLV's timestamps: the FLV's is its last tag's timestamp
    (how FFmpeg reads a live FLV; the publisher's onMetaData duration must not override it), each
    MP4 track's is its span plus its last frame, within a frame. Returns the MP4's duration."""
    scan = F.scan_flv(folder / "stream.flv")
    flv = probe_streams(folder / "stream.flv")
    assert float(flv["format"]["duration"]) == pytest.approx(scan.tags[-1].timestamp / 1000, abs=0.002)
    mp4 = probe_streams(folder / mp4)
    ends = []
    for kind, name, last_frame in ((F.VIDEO, "video", FRAME_S), (F.AUDIO, "audio", 1024 / 44100)):
        frames = [t for t in scan.of_type(kind) if (t.video or t.audio).is_frame]
        if not frames:
            continue
        pts = [t.timestamp + (t.video.composition_offset if t.video else 0) for t in frames]
        span = (max(pts) - min(pts)) / 1000 + last_frame
        assert float(mp4[name]["duration"]) == pytest.approx(span, abs=FRAME_S / 2), name
        ends.append(max(pts) / 1000 + last_frame)
    assert float(mp4["format"]["duration"]) == pytest.approx(max(ends), abs=FRAME_S)
    return float(mp4["format"]["duration"])


def media_timestamps(folder: Path, kind: int) -> list[int]:
    return [t.timestamp for t in F.scan_flv(folder / "stream.flv").of_type(kind)]


# -- one publish ---------------------------------------------------------------------------------


def test_one_publish(tmp_path, clips):
    rec, (sent,) = record(tmp_path, clips["a"], sync=True)
    folder = rec.folder
    assert folder == tmp_path / "data" / "rtmp" / "live" / "glasses1" / "20261121T101502Z"
    assert sorted(p.name for p in folder.iterdir()) == [
        "audio_index.parquet", "metadata.json", "session.json", "stream.flv", "stream.mp4", "video_index.parquet"]

    for name in ("stream.flv", "stream.mp4"):
        p = probe_streams(folder / name)
        assert p["video"]["codec_name"] == "h264" and p["audio"]["codec_name"] == "aac", name
        assert (p["video"]["width"], p["video"]["height"]) == (320, 240)
        assert int(p["video"]["nb_read_frames"]) == sent["video_frames"] == 45
        assert int(p["audio"]["nb_read_frames"]) == sent["audio_frames"]
    check_durations(folder)

    rows = check_index(folder)
    assert len(rows[F.VIDEO]) == sent["video_tags"] and len(rows[F.AUDIO]) == sent["audio_tags"]
    assert sum(r["keyframe"] for r in rows[F.VIDEO]) == sent["keyframes"] == 2
    assert [r["sequence_header"] for r in rows[F.VIDEO]].count(True) == 1
    assert {r["publish"] for r in rows[F.VIDEO] + rows[F.AUDIO]} == {1}
    # the timeline is the stream's: one publish starting at 0 keeps its timestamps
    assert [(k, ts) for k, ts, _ in clips["a"] if k != F.SCRIPT] == \
        [(t.type, t.timestamp) for t in F.scan_flv(folder / "stream.flv").tags if t.type != F.SCRIPT]

    m = manifest(folder)
    assert (m["app"], m["stream_key"], m["session_id"], m["state"]) == ("live", "glasses1", "20261121T101502Z", FINISHED)
    assert m["started"] == "2026-11-21T10:15:02.250Z" and m["ended"] == m["publishes"][0]["ended"]
    (pub,) = m["publishes"]
    assert pub["client"] == "10.0.0.1:5000" and pub["name"] == "glasses1" and pub["reason"] == "unpublished"
    assert pub["video_frames"] == 45 and pub["audio_frames"] == sent["audio_frames"] and pub["flv_offset"] == 13
    assert m["mp4"] == [{"file": "stream.mp4", "first_timestamp_ms": 0, "last_timestamp_ms": max(ts for _, ts, _ in clips["a"]),
                         "publishes": [1], "video_frames": 45, "audio_frames": sent["audio_frames"],
                         "timestamps_adjusted": 0}]
    s = m["stats"]
    assert (s["video_frames"], s["keyframes"], s["audio_frames"]) == (45, 2, sent["audio_frames"])
    assert (s["width"], s["height"], s["video_codec"], s["audio_codec"]) == (320, 240, "h264", "aac")
    assert s["video"]["profile"] == "High" and s["audio"] == {"profile": "AAC-LC", "sample_rate": 44100, "channels": 1}
    assert s["dropped_frames"] == 0 and s["timestamp_regressions"] == 0 and s["publishes"] == 1
    assert s["bytes"] == (folder / "stream.flv").stat().st_size
    assert rec.stats()["state"] == FINISHED and rec.stats()["video_frames"] == 45

    meta = json.loads((folder / "metadata.json").read_bytes())
    assert len(meta) == 1 and meta[0]["publish"] == 1 and meta[0]["in_flv"] and meta[0]["values"]["framerate"] == 15
    kind, ts, data = read_tags(folder / "stream.flv")[0]
    assert (kind, ts) == (F.SCRIPT, 0)
    assert F.read_script_data(data)[1]["duration"] == 0  # the publisher's file duration is not ours


def test_session_ids_do_not_collide(tmp_path):
    recs = [Recording.create(tmp_path, "live", "k", now=T0 + 0.1 * i, sync=False) for i in range(3)]
    assert [r.folder.name for r in recs] == ["20261121T101502Z", "20261121T101502Z-2", "20261121T101502Z-3"]
    for r in recs:
        r.finish()
    assert [manifest(r.folder)["state"] for r in recs] == [FINISHED] * 3
    assert not list(recs[0].folder.glob("*.mp4"))  # nothing was streamed: no MP4
    for bad in ("", "..", "a/b", "key?x=1"):
        with pytest.raises(ValueError):
            Recording.create(tmp_path, "live", bad, now=T0)


def test_stats_while_recording(tmp_path, clips):
    rec = Recording.create(tmp_path, "live", "k", now=T0, sync=False)
    rec.begin_publish(client="c", tc_url=None, publish_name="k", now=T0)
    tags = clips["long"]
    feed(rec, tags)
    s = rec.stats()
    assert s["state"] == RECORDING and s["publishing"] and s["publishes"] == 1
    assert s["video_frames"] == 120 and s["keyframes"] == 4
    assert abs(s["fps"] - 15) < 0.2 and abs(s["average_fps"] - 15) < 0.2
    last = tags[-1][1]
    recent = [(ts, len(d)) for k, ts, d in tags if k != F.SCRIPT and ts >= last - 5000]
    expected = (sum(n for _, n in recent) - recent[0][1]) * 8000 / (recent[-1][0] - recent[0][0])
    assert s["bitrate_bps"] == pytest.approx(expected, rel=0.01)
    assert s["duration_s"] == max(ts for _, ts, _ in tags) / 1000
    assert s["bytes"] == (rec.folder / "stream.flv").stat().st_size
    assert manifest(rec.folder)["stats"]["video_frames"] == 0  # the manifest waits for flush()
    rec.flush()
    assert manifest(rec.folder)["stats"]["video_frames"] == 120
    rec.end_publish(reason="disconnected", now=T0 + 9)
    rec.finish()


def test_a_flush_rewrites_the_figures_in_the_manifest_at_most_every_interval(tmp_path, clips, monkeypatch):
    """What recovery can count again from the FLV waits for the interval; a count it cannot (a
    timestamp going back, clamped) is saved by the next flush."""
    rec = Recording.create(tmp_path, "live", "k", now=T0, sync=False)
    rec.begin_publish(client="c", tc_url=None, publish_name="k", now=T0)
    media = [t for t in clips["long"] if t[0] != F.SCRIPT]
    first = feed(rec, media[:40])["video_frames"]
    rec.flush()  # the publish's first tag: saved at once
    assert manifest(rec.folder)["stats"]["video_frames"] == first
    second = feed(rec, media[40:80])["video_frames"]
    rec.flush()
    assert manifest(rec.folder)["stats"]["video_frames"] == first  # within the interval: not yet
    video = next(data for kind, _, data in media[80:] if kind == F.VIDEO)
    rec.write_video(0, video)  # back to the start: clamped, and counted only in the manifest
    rec.flush()
    saved = manifest(rec.folder)["stats"]
    assert saved["timestamp_regressions"] == 1 and saved["video_frames"] == rec.stats()["video_frames"] > first + second - 1
    feed(rec, media[80:])
    monkeypatch.setattr(recording_module, "MANIFEST_INTERVAL_S", 0.0)  # the interval has passed
    rec.flush()
    assert manifest(rec.folder)["stats"] == {k: v for k, v in rec.stats().items() if k in saved}
    rec.end_publish(reason="disconnected", now=T0 + 9)
    rec.finish()


# -- re-publishes --------------------------------------------------------------------------------


def test_two_publishes_continue_the_timeline(tmp_path, clips):
    tags = clips["a"]
    rec, sent = record(tmp_path, tags, tags)
    folder = rec.folder
    m = manifest(folder)
    p1, p2 = m["publishes"]
    last1 = p1["last_timestamp_ms"]
    assert p2["gap_before_ms"] == 5000 and p2["first_timestamp_ms"] == last1 + 5000
    assert p2["flv_offset"] > p1["flv_offset"]
    for kind in (F.VIDEO, F.AUDIO):
        ts = media_timestamps(folder, kind)
        assert ts == sorted(ts)
    rows = check_index(folder)
    for kind in (F.VIDEO, F.AUDIO):
        assert [r["publish"] for r in rows[kind] if r["sequence_header"]] == [1, 2]  # sent again, written again
        second = [r for r in rows[kind] if r["publish"] == 2]
        assert second[0]["timestamp_ms"] == last1 + 5000
        assert second[0]["flv_offset"] >= p2["flv_offset"]
    total = sum(s["video_frames"] for s in sent)
    for name in ("stream.flv", "stream.mp4"):
        p = probe_streams(folder / name)
        assert int(p["video"]["nb_read_frames"]) == total == 90, name
        assert int(p["audio"]["nb_read_frames"]) == sum(s["audio_frames"] for s in sent)
    assert check_durations(folder) > 2 * tags[-1][1] / 1000 + 5
    assert [e["publishes"] for e in m["mp4"]] == [[1, 2]]  # same configuration: one MP4, with the gap
    meta = json.loads((folder / "metadata.json").read_bytes())
    assert [(e["publish"], e["in_flv"]) for e in meta] == [(1, True), (2, False)]
    # Each onMetaData is placed where its publish starts in the FLV, not where the last one ended.
    assert [e["timestamp_ms"] for e in meta] == [0, p2["first_timestamp_ms"]]
    assert sum(t.type == F.SCRIPT for t in F.scan_flv(folder / "stream.flv").tags) == 1
    assert m["stats"]["dropped_frames"] == 0 and m["stats"]["publishes"] == 2
    assert m["stats"]["streamed_s"] == pytest.approx(2 * max(ts for _, ts, _ in tags) / 1000)


def test_republish_without_a_gap_still_moves_one_frame_on(tmp_path, clips):
    rec = Recording.create(tmp_path, "live", "k", now=T0, sync=False)
    rec.begin_publish(client="c", tc_url=None, publish_name="k", now=T0)
    feed(rec, clips["a"])
    last = rec.stats()["last_timestamp_ms"]
    rec.begin_publish(client="c", tc_url=None, publish_name="k", now=T0 + 1)  # no end_publish: superseded
    feed(rec, clips["a"][:10])
    rec.flush()
    p1, p2 = manifest(rec.folder)["publishes"]
    assert p1["reason"].startswith("superseded") and p2["gap_before_ms"] == 0
    assert p2["first_timestamp_ms"] == last + 67  # one frame at the metadata's 15 fps
    rec.end_publish(reason="unpublished", now=T0 + 2)
    rec.finish()
    check_index(rec.folder)


def test_timestamps_going_back_are_clamped(tmp_path, clips):
    tags = list(clips["a"])
    video = [i for i, (k, _, d) in enumerate(tags) if k == F.VIDEO and F.parse_video_header(d).is_frame]
    i = video[20]
    kind, ts, data = tags[i]
    tags[i] = (kind, ts - 300, data)  # a frame 300 ms in the past
    rec, _ = record(tmp_path, tags)
    ts = media_timestamps(rec.folder, F.VIDEO)
    assert ts == sorted(ts)
    assert manifest(rec.folder)["stats"]["timestamp_regressions"] == 1
    p = probe_streams(rec.folder / "stream.mp4")
    assert int(p["video"]["nb_read_frames"]) == 45
    assert manifest(rec.folder)["mp4"][0]["timestamps_adjusted"] == 1  # equal DTS: one tick on in the MP4


# -- secrets -------------------------------------------------------------------------------------


def test_the_query_never_reaches_the_disk(tmp_path, clips):
    rec = Recording.create(tmp_path, "live", "glasses1", now=T0, sync=False)
    rec.begin_publish(client="10.1.1.1:4000", tc_url="rtmp://rec.local:1935/live?token=tc-s3cret",
                      publish_name="glasses1?key=hunter2&x=1", now=T0)
    feed(rec, clips["a"][:30])
    rec.flush()
    rec.end_publish(reason="error: bad message in glasses1?key=hunter2&x=1", now=T0 + 2)
    rec.finish()
    pub = manifest(rec.folder)["publishes"][0]
    assert (pub["name"], pub["tc_url"], pub["query_removed"]) == ("glasses1", "rtmp://rec.local:1935/live", True)
    assert "hunter2" not in pub["reason"] and pub["reason"].startswith("error: bad message in glasses1?")
    for path in rec.folder.iterdir():
        data = path.read_bytes()
        for secret in (b"hunter2", b"tc-s3cret", b"key=", b"token="):
            assert secret not in data, (path.name, secret)


# -- crashes -------------------------------------------------------------------------------------


def test_plays_while_being_written(tmp_path, clips):
    rec = Recording.create(tmp_path, "live", "k", now=T0, sync=True)
    rec.begin_publish(client="c", tc_url=None, publish_name="k", now=T0)
    tags = clips["long"]
    half = len(tags) // 2
    sent = feed(rec, tags[:half])
    rec.flush()
    copy = tmp_path / "copy.flv"
    shutil.copyfile(rec.folder / "stream.flv", copy)
    p = probe_streams(copy)
    assert p["video"]["codec_name"] == "h264" and p["audio"]["codec_name"] == "aac"
    assert int(p["video"]["nb_read_frames"]) == sent["video_frames"]
    # a reader may also catch a tag half written
    with open(copy, "ab") as f:
        f.write(F.encode_tag(F.VIDEO, tags[half][1], tags[half][2])[:-20] if tags[half][0] != F.SCRIPT else b"")
    assert int(probe_streams(copy)["video"]["nb_read_frames"]) >= sent["video_frames"]
    assert manifest(rec.folder)["state"] == RECORDING
    feed(rec, tags[half:])
    rec.end_publish(reason="unpublished", now=T0 + 9)
    rec.finish()


def test_recover_a_cut_flv_and_continue(tmp_path, clips):
    rec = Recording.create(tmp_path / "data", "live", "k", now=T0, sync=False)
    rec.begin_publish(client="c", tc_url=None, publish_name="k", now=T0)
    feed(rec, clips["a"])
    rec.flush()
    scan = F.scan_flv(rec.folder / "stream.flv")
    whole = (rec.folder / "stream.flv").read_bytes()
    rng = random.Random(11)
    last = scan.tags[-6:]
    cuts = sorted({rng.randrange(last[0].offset + 1, len(whole)) for _ in range(6)} | {len(whole)})
    for n, cut in enumerate(cuts):
        crashed = tmp_path / f"crash-{n}" / rec.folder.name
        shutil.copytree(rec.folder, crashed)
        with open(crashed / "stream.flv", "r+b") as f:
            f.truncate(cut)
        complete = [t for t in scan.tags if t.end <= cut]
        report = recover_recording(crashed, now=T0 + 60, sync=False)
        assert report.found_state == RECORDING and report.state == UNFINISHED
        assert report.truncated_bytes == cut - complete[-1].end
        assert (crashed / "stream.flv").stat().st_size == complete[-1].end
        frames = sum(t.type == F.VIDEO and t.video.is_frame for t in complete)
        assert int(probe_streams(crashed / "stream.flv")["video"]["nb_read_frames"]) == frames
        rows = check_index(crashed)
        assert sum(r["frame"] for r in rows[F.VIDEO]) == frames
        m = manifest(crashed)
        assert m["state"] == UNFINISHED and m["stats"]["video_frames"] == frames
        (pub,) = m["publishes"]
        assert pub["reason"] == INTERRUPTED and pub["video_frames"] == frames
        assert pub["ended"] == iso(T0 + (pub["last_timestamp_ms"] - pub["first_timestamp_ms"]) / 1000)  # start + span
        assert recover_recording(crashed, sync=False).changed is False  # idempotent

        again = Recording.reopen(crashed, sync=False)
        assert again.stats()["video_frames"] == frames and again.stats()["publishes"] == 1
        again.begin_publish(client="c", tc_url=None, publish_name="k", now=T0 + 20)
        feed(again, clips["a"])
        again.end_publish(reason="unpublished", now=T0 + 23)
        again.finish()
        m = manifest(crashed)
        assert m["state"] == FINISHED and len(m["publishes"]) == 2
        p2 = m["publishes"][1]
        gap = round((T0 + 20 - (T0 + pub["last_timestamp_ms"] / 1000)) * 1000)
        assert p2["first_timestamp_ms"] == pub["last_timestamp_ms"] + gap
        check_index(crashed)
        p = probe_streams(crashed / "stream.mp4")
        assert int(p["video"]["nb_read_frames"]) == frames + 45
    rec.end_publish(reason="unpublished", now=T0 + 3)
    rec.finish()


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from recorder.rtmp import flv as F
    from recorder.rtmp.recording import Recording
    source, data_dir = Path(sys.argv[1]), Path(sys.argv[2])
    scan = F.scan_flv(source)
    raw = source.read_bytes()
    tags = [(t.type, t.timestamp, raw[t.data_offset:t.data_offset + t.size]) for t in scan.tags if t.type != F.SCRIPT]
    rec = Recording.create(data_dir, "live", "k", sync=True)
    rec.begin_publish(client="c", tc_url=None, publish_name="k")
    print(rec.folder, flush=True)
    shift = n = 0
    while True:
        for kind, ts, data in tags:
            (rec.write_video if kind == F.VIDEO else rec.write_audio)(ts + shift, data)
            n += 1
            if n % 16 == 0:
                rec.flush()
        shift += tags[-1][1] + 67
        rec.begin_publish(client="c", tc_url=None, publish_name="k")
""")


def test_kill_9_while_writing(tmp_path, clips):
    source = make_flv(tmp_path / "src.flv", seconds=2)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(source), str(tmp_path / "data")],
                            stdout=subprocess.PIPE, text=True)
    try:
        folder = Path(proc.stdout.readline().strip())
        deadline = time.monotonic() + 30
        while (folder / "stream.flv").stat().st_size < 300_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(random.random() * 0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert (folder / "stream.flv").stat().st_size >= 300_000
    report = recover_recording(folder, sync=False)
    assert report.found_state == RECORDING and report.tags > 100
    rows = check_index(folder)
    m = manifest(folder)
    frames = sum(r["frame"] for r in rows[F.VIDEO])
    assert m["stats"]["video_frames"] == frames and len(m["publishes"]) >= 2
    assert all(p["ended"] for p in m["publishes"]) and m["publishes"][-1]["reason"] == INTERRUPTED
    assert int(probe_streams(folder / "stream.flv")["video"]["nb_read_frames"]) == frames
    Recording.reopen(folder, sync=False).finish()
    assert manifest(folder)["state"] == FINISHED
    assert int(probe_streams(folder / "stream.mp4")["video"]["nb_read_frames"]) == frames


def test_recover_without_manifest_or_with_a_cut_header(tmp_path, clips):
    rec, _ = record(tmp_path, clips["a"], finish=False)
    folder = rec.folder
    rec.flush()
    (folder / "session.json").unlink()
    (folder / "metadata.json").unlink()
    (folder / ".stream.mp4.tmp").write_bytes(b"half an mp4")
    report = recover_recording(folder, now=T0 + 100, sync=False)
    assert report.found_state == "missing" and ".stream.mp4.tmp" in report.files_removed
    m = manifest(folder)
    assert (m["app"], m["stream_key"], m["session_id"], m["state"]) == ("live", "glasses1", folder.name, UNFINISHED)
    assert m["publishes"][0]["video_frames"] == 45 and m["stats"]["width"] == 320
    meta = json.loads((folder / "metadata.json").read_bytes())  # rebuilt from the FLV's script tag
    assert meta[0]["values"]["framerate"] == 15 and meta[0]["publish"] == 1
    check_index(folder)
    rec.finish()

    empty = tmp_path / "empty" / "live" / "k" / "20261121T101502Z"
    empty.mkdir(parents=True)
    (empty / "stream.flv").write_bytes(b"FLV\x01\x05")
    recover_recording(empty, sync=False)
    assert (empty / "stream.flv").read_bytes() == F.file_header()
    Recording.reopen(empty, sync=False).finish()
    assert manifest(empty)["state"] == FINISHED

    other = tmp_path / "other"
    other.mkdir()
    (other / "stream.flv").write_bytes(b"not a video at all")
    with pytest.raises(RecordingError):
        recover_recording(other, sync=False)
    assert (other / "stream.flv").read_bytes() == b"not a video at all"


def test_a_finished_session_is_left_alone_and_can_continue(tmp_path, clips):
    rec, _ = record(tmp_path, clips["a"])
    folder = rec.folder
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    report = recover_recording(folder, sync=False)
    assert report.state == FINISHED and not report.changed
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    again = Recording.reopen(folder, sync=False)
    assert not (folder / "stream.mp4").exists() and manifest(folder)["state"] == RECORDING
    again.begin_publish(client="c", tc_url=None, publish_name="glasses1", now=T0 + 30)
    feed(again, clips["a"])
    again.end_publish(reason="unpublished", now=T0 + 33)
    again.finish()
    m = manifest(folder)
    assert m["state"] == FINISHED and [p["number"] for p in m["publishes"]] == [1, 2]
    assert m["publishes"][1]["gap_before_ms"] == round((30 - clips["a"][-1][1] / 1000) * 1000)
    assert int(probe_streams(folder / "stream.mp4")["video"]["nb_read_frames"]) == 90


# -- dropped frames and misuse -------------------------------------------------------------------


def _without_frames(tags, drop: set[int]) -> list:
    """The tags without the video frames of the given numbers (0 = first frame)."""
    out, n = [], -1
    for kind, ts, data in tags:
        if kind == F.VIDEO and F.parse_video_header(data).is_frame:
            n += 1
            if n in drop:
                continue
        out.append((kind, ts, data))
    return out


@pytest.mark.parametrize("with_metadata", [True, False])
def test_dropped_frames(tmp_path, clips, with_metadata):
    tags = clips["long"] if with_metadata else [t for t in clips["long"] if t[0] != F.SCRIPT]
    drop = {10, 20, 21, 40, 41, 42, 90}
    rec, _ = record(tmp_path, _without_frames(tags, drop), _without_frames(tags, {5}), finish=False)
    s = rec.stats()
    assert s["dropped_frames"] == len(drop) + 1  # the gap between the publishes is not a drop
    assert s["video_frames"] == 240 - len(drop) - 1
    rec.flush()
    folder = rec.folder
    crashed = tmp_path / "copy" / folder.name
    shutil.copytree(folder, crashed)
    recover_recording(crashed, sync=False)
    assert manifest(crashed)["stats"]["dropped_frames"] == len(drop) + 1  # replayed from the FLV
    rec.finish()
    assert manifest(folder)["stats"]["dropped_frames"] == len(drop) + 1


def test_misuse(tmp_path, clips):
    rec = Recording.create(tmp_path, "live", "k", now=T0, sync=False)
    s = rec.stats()
    assert (s["video_frames"], s["fps"], s["bitrate_bps"], s["duration_s"], s["publishes"]) == (0, 0.0, 0, 0.0, 0)
    assert (s["width"], s["video_codec"], s["mp4"], s["state"], s["publishing"]) == (None, None, None, RECORDING, False)
    with pytest.raises(RecordingError):
        rec.write_video(0, clips["a"][1][2])
    rec.begin_publish(client="c", tc_url=None, publish_name="k", now=T0)
    rec.write_video(0, b"")  # not FLV video data: counted, not written
    rec.write_audio(0, b"\xaf")
    size = (rec.folder / "stream.flv").stat().st_size
    assert rec.stats()["skipped_tags"] == 2 and size == F.FILE_HEADER_SIZE
    feed(rec, clips["a"][:20])
    rec.finish()  # without end_publish
    pub = manifest(rec.folder)["publishes"][0]
    assert pub["reason"] == "session finished while publishing" and pub["ended"]
    with pytest.raises(RecordingError):
        rec.write_video(10_000, clips["a"][1][2])
    with pytest.raises(RecordingError):
        rec.begin_publish(client="c", tc_url=None, publish_name="k")
    rec.finish()  # twice: nothing more
    rec.flush()
    rec.end_publish(reason="late")


def test_video_only_stream(tmp_path, clips):
    rec, (sent,) = record(tmp_path, clips["video_only"])
    for name in ("stream.flv", "stream.mp4"):  # the FLV header says audio too: players cope
        p = probe_streams(rec.folder / name)
        assert "audio" not in p and int(p["video"]["nb_read_frames"]) == sent["video_frames"]
    assert rec.stats()["mp4"] == ["stream.mp4"]
    rows = check_index(rec.folder)
    assert rows[F.AUDIO] == []
    assert manifest(rec.folder)["stats"]["audio_codec"] is None


def test_a_failed_write_takes_back_its_part_of_a_tag(tmp_path, clips, monkeypatch):
    rec = Recording.create(tmp_path, "live", "k", now=T0, sync=False)
    rec.begin_publish(client="c", tc_url=None, publish_name="k", now=T0)
    feed(rec, clips["a"][:20])
    real = F.write_all

    def disk_full(fd, data):
        os.write(fd, data[:len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(F, "write_all", disk_full)
    kind, ts, data = clips["a"][20]
    with pytest.raises(OSError):
        (rec.write_video if kind == F.VIDEO else rec.write_audio)(ts, data)
    assert F.scan_flv(rec.folder / "stream.flv").complete  # the half tag is gone
    monkeypatch.setattr(F, "write_all", real)
    feed(rec, clips["a"][20:])
    rec.end_publish(reason="unpublished", now=T0 + 3)
    rec.finish()
    check_index(rec.folder)
    assert int(probe_streams(rec.folder / "stream.mp4")["video"]["nb_read_frames"]) == 45


def test_tags_written_together_are_the_tags_written_one_by_one(tmp_path, clips):
    """write_media (what the server does with a connection's coalesced messages) gives the FLV,
    figures and index tables that writing each tag alone gives."""
    tags = clips["a"]
    script = [t for t in tags if t[0] == F.SCRIPT]
    media = [t for t in tags if t[0] != F.SCRIPT]
    one_by_one, _ = record(tmp_path / "one", script + media, finish=False)
    together = Recording.create(tmp_path / "together" / "data", "live", "glasses1", now=T0, sync=False)
    together.begin_publish(client="10.0.0.1:5000", tc_url="rtmp://rec.local/live", publish_name="glasses1", now=T0)
    feed(together, script)
    for start in range(0, len(media), 7):  # as the server coalesces them: several at a time
        together.write_media(media[start:start + 7])
    together.end_publish(reason="unpublished", now=T0 + media[-1][1] / 1000)
    for rec in (one_by_one, together):
        rec.finish()
    assert (together.folder / "stream.flv").read_bytes() == (one_by_one.folder / "stream.flv").read_bytes()
    assert together.stats() == one_by_one.stats()
    check_index(together.folder)


def test_a_failed_write_of_several_tags_leaves_none_of_them(tmp_path, clips, monkeypatch):
    rec = Recording.create(tmp_path, "live", "k", now=T0, sync=False)
    rec.begin_publish(client="c", tc_url=None, publish_name="k", now=T0)
    feed(rec, clips["a"][:20])
    before, figures = (rec.folder / "stream.flv").read_bytes(), rec.stats()

    def disk_full(fd, data):
        os.write(fd, data[:len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(F, "write_all", disk_full)
    with pytest.raises(OSError):
        rec.write_media([t for t in clips["a"][20:30] if t[0] != F.SCRIPT])
    assert (rec.folder / "stream.flv").read_bytes() == before
    assert rec.stats() == figures


def test_unfinished_recordings(tmp_path, clips):
    done, _ = record(tmp_path, clips["a"][:10])
    crashed, _ = record(tmp_path, clips["a"][:10], key="other", finish=False)
    crashed.flush()
    assert unfinished_recordings(tmp_path / "data") == [crashed.folder]
    recover_recording(crashed.folder, sync=False)
    assert unfinished_recordings(tmp_path / "data") == [crashed.folder]  # recovered, still to finish
    Recording.reopen(crashed.folder, sync=False).finish()
    assert unfinished_recordings(tmp_path / "data") == []
    assert unfinished_recordings(tmp_path / "nowhere") == []
    assert done.folder.exists()
