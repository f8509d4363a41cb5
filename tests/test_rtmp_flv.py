"""The FLV format: writing tags, scanning files FFmpeg made (whole and cut), the headers of video,
audio and script tags, and the AVC/AAC configurations. Also the helpers the other RTMP tests
share: FFmpeg-made FLVs, ffprobe, and feeding a file's tags to a Recording as the server would."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recorder.rtmp import flv as F

# -- shared helpers (imported by the other RTMP tests) -------------------------------------------


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is needed by the RTMP tests and is not on PATH"
    return found


def make_flv(path: Path, *, size: str = "320x240", rate: int = 15, seconds: float = 3, gop: int = 30,
             audio: bool = True, extra: tuple[str, ...] = ()) -> Path:
    """A real H.264 (+ AAC) FLV made by FFmpeg."""
    cmd = [tool("ffmpeg"), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-g", str(gop), "-pix_fmt", "yuv420p", *extra]
    cmd += ["-c:a", "aac"] if audio else []
    cmd += ["-f", "flv", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def ffprobe(path: Path) -> dict:
    out = subprocess.run([tool("ffprobe"), "-v", "error", "-count_frames", "-show_streams", "-show_format",
                          "-of", "json", str(path)], check=True, capture_output=True)
    return json.loads(out.stdout)


def probe_streams(path: Path) -> dict[str, dict]:
    """ffprobe's streams by type (exactly one of each type present)."""
    info = ffprobe(path)
    by_type: dict[str, dict] = {}
    for s in info["streams"]:
        assert s["codec_type"] not in by_type, f"two {s['codec_type']} streams in {path.name}: {info['streams']}"
        by_type[s["codec_type"]] = s
    by_type["format"] = info["format"]
    return by_type


def read_tags(path: Path) -> list[tuple[int, int, bytes]]:
    """(type, timestamp, data) of every tag of a FLV."""
    scan = F.scan_flv(path)
    assert scan.complete, scan.problem
    raw = path.read_bytes()
    return [(t.type, t.timestamp, raw[t.data_offset:t.data_offset + t.size]) for t in scan.tags]


def feed(rec, tags, *, shift: int = 0) -> dict:
    """Give a Recording a FLV's tags as the server would (script data as onMetaData)."""
    sent = {"video_frames": 0, "keyframes": 0, "audio_frames": 0, "video_tags": 0, "audio_tags": 0}
    for kind, ts, data in tags:
        if kind == F.SCRIPT:
            name, values = F.read_script_data(data)
            assert name == "onMetaData"
            rec.write_metadata(values, data)
        elif kind == F.VIDEO:
            rec.write_video(ts + shift, data)
            h = F.parse_video_header(data)
            sent["video_tags"] += 1
            sent["video_frames"] += h.is_frame
            sent["keyframes"] += h.is_frame and h.keyframe
        elif kind == F.AUDIO:
            rec.write_audio(ts + shift, data)
            sent["audio_tags"] += 1
            sent["audio_frames"] += F.parse_audio_header(data).is_frame
    return sent


@pytest.fixture(scope="module")
def sample_flv(tmp_path_factory) -> Path:
    return make_flv(tmp_path_factory.mktemp("flv") / "sample.flv")


# -- writing -------------------------------------------------------------------------------------


def test_header_and_tag_bytes():
    assert F.file_header() == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    assert F.file_header(audio=False)[4] == 0x01 and F.file_header(video=False)[4] == 0x04
    tag = F.encode_tag(F.VIDEO, 0x12345678, b"\x17\x01\x00\x00\x00abc")
    assert tag[:11] == bytes([9, 0, 0, 8, 0x34, 0x56, 0x78, 0x12, 0, 0, 0])
    assert tag[11:19] == b"\x17\x01\x00\x00\x00abc"
    assert struct.unpack(">I", tag[-4:])[0] == 11 + 8
    with pytest.raises(F.FlvError):
        F.tag_header(F.VIDEO, 0, 1 << 24)


def test_written_tags_scan_back(tmp_path):
    path = tmp_path / "w.flv"
    tags = [(F.SCRIPT, 0, b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09"),
            (F.VIDEO, 0, b"\x17\x00\x00\x00\x00" + b"\x01\x64\x00\x1f\xff\xe0\x00"),
            (F.AUDIO, 0, b"\xaf\x00\x12\x10"),
            (F.VIDEO, 40, b"\x17\x01\x00\x00\x50" + b"x" * 1000),
            (F.AUDIO, 1 << 24, b"\xaf\x01" + b"y" * 300),  # needs the extended timestamp byte
            (F.VIDEO, (1 << 32) - 1, b"\x27\x01\xff\xff\xf6" + b"z" * 20)]
    path.write_bytes(F.file_header() + b"".join(F.encode_tag(*t) for t in tags))
    scan = F.scan_flv(path)
    assert scan.complete and scan.problem is None and scan.end == path.stat().st_size
    assert [(t.type, t.timestamp, t.size) for t in scan.tags] == [(k, ts, len(d)) for k, ts, d in tags]
    assert read_tags(path) == tags
    v = [t.video for t in scan.tags if t.video]
    assert [h.sequence_header for h in v] == [True, False, False]
    assert [h.keyframe for h in v] == [True, True, False]
    assert [h.composition_offset for h in v] == [0, 80, -10]
    a = [t.audio for t in scan.tags if t.audio]
    assert [h.sequence_header for h in a] == [True, False]


# -- scanning FFmpeg's files ---------------------------------------------------------------------


def test_scan_matches_ffprobe(sample_flv):
    scan = F.scan_flv(sample_flv)
    assert scan.complete and scan.header_ok and scan.flags == 0x05
    packets = json.loads(subprocess.run(
        [tool("ffprobe"), "-v", "error", "-show_packets", "-of", "json", str(sample_flv)],
        check=True, capture_output=True).stdout)["packets"]
    frames = [t for t in scan.tags if (t.video and t.video.is_frame) or (t.audio and t.audio.is_frame)]
    assert len(frames) == len(packets)
    for tag, p in zip(frames, packets, strict=True):
        header = tag.video or tag.audio
        assert p["codec_type"] == ("video" if tag.video else "audio")
        assert int(p["dts"]) == tag.timestamp
        assert int(p["pts"]) == tag.timestamp + (tag.video.composition_offset if tag.video else 0)
        assert int(p["size"]) == tag.size - header.data_offset
        assert int(p["pos"]) == tag.offset
        if tag.video:
            assert ("K" in p["flags"]) == tag.video.keyframe
    video = scan.of_type(F.VIDEO)
    assert video[0].video.sequence_header and video[0].video.codec == "h264"
    assert sum(t.video.keyframe and t.video.is_frame for t in video) == 2  # 45 frames, -g 30
    audio = scan.of_type(F.AUDIO)
    assert audio[0].audio.sequence_header and audio[0].audio.codec == "aac"
    assert all(t.audio.sound_format == F.FORMAT_AAC for t in audio)


def test_scan_of_cut_files(sample_flv, tmp_path):
    whole = sample_flv.read_bytes()
    scan = F.scan_flv(sample_flv)
    rng = random.Random(7)
    last = scan.tags[-4:]
    cuts = {t.offset + d for t in last for d in (0, 1, 10, 11, 12, t.size + 11, t.size + 14)}
    cuts |= {rng.randrange(last[0].offset, len(whole)) for _ in range(40)}
    for cut in sorted(cuts):
        path = tmp_path / "cut.flv"
        path.write_bytes(whole[:cut])
        s = F.scan_flv(path)
        complete = [t for t in scan.tags if t.end <= cut]
        assert s.end == complete[-1].end, cut
        assert len(s.tags) == len(complete)
        assert s.truncated_bytes == cut - s.end
        assert s.complete == (cut == s.end)


def test_scan_stops_at_damage(sample_flv, tmp_path):
    data = bytearray(sample_flv.read_bytes())
    scan = F.scan_flv(sample_flv)
    victim = scan.tags[10]
    data[victim.end - 1] ^= 0xFF  # its PreviousTagSize
    path = tmp_path / "bad.flv"
    path.write_bytes(bytes(data))
    s = F.scan_flv(path)
    assert s.end == victim.offset and len(s.tags) == 10 and "PreviousTagSize" in s.problem
    data = bytearray(sample_flv.read_bytes())
    data[victim.offset] = 0x33  # not a tag type
    path.write_bytes(bytes(data))
    s = F.scan_flv(path)
    assert s.end == victim.offset and "bad tag header" in s.problem


@pytest.mark.parametrize("content,problem,ok", [
    (b"", "cut header", False), (b"FL", "cut header", False), (b"FLV\x01\x05\x00\x00\x00\x09\x00", "cut header", False),
    (b"RIFF....WAVE", "not an FLV file", False), (F.file_header(), None, True)])
def test_scan_of_headers(tmp_path, content, problem, ok):
    path = tmp_path / "h.flv"
    path.write_bytes(content)
    s = F.scan_flv(path)
    assert s.header_ok == ok and s.problem == problem and s.tags == []
    assert s.end == (13 if ok else 0)


# -- tag data headers and configurations -------------------------------------------------------


def test_video_headers():
    h = F.parse_video_header(b"\x17\x01\x00\x00\x21")
    assert (h.frame_type, h.codec_id, h.packet_type, h.composition_offset) == (1, 7, 1, 33)
    assert h.keyframe and h.is_frame and not h.sequence_header and h.codec == "h264"
    h = F.parse_video_header(b"\x27\x01\xff\xff\xdf")
    assert h.composition_offset == -33 and not h.keyframe and h.is_frame
    h = F.parse_video_header(b"\x27\x01\x80\x00\x00")
    assert h.composition_offset == -(1 << 23)
    assert F.parse_video_header(b"\x17\x02\x00\x00\x00").is_frame is False  # end of sequence
    assert F.parse_video_header(b"\x57\x00\x00\x00\x00").is_frame is False  # command frame
    assert F.parse_video_header(b"\x1c\x00\x00\x00\x00").codec == "hevc"
    h = F.parse_video_header(b"\x22" + b"\x00" * 10)  # Sorenson H.263: no packet type
    assert (h.codec, h.packet_type, h.is_frame, h.keyframe) == ("flv1", None, True, False)
    for short in (b"", b"\x17", b"\x17\x01\x00\x00"):
        with pytest.raises(F.FlvError):
            F.parse_video_header(short)


def test_an_unknown_fourcc_is_named_in_printable_text():
    assert F.parse_video_header(b"\x91xyz9" + b"\x00" * 4).codec == "xyz9"
    assert F.parse_video_header(b"\xff" * 8).codec == "fourcc 0xffffffff"


def test_enhanced_rtmp_video_headers():
    h = F.parse_video_header(b"\x90hvc1" + b"\x01\x02")  # keyframe, sequence start
    assert h.enhanced and h.sequence_header and h.keyframe and h.codec == "hevc" and h.data_offset == 5
    h = F.parse_video_header(b"\x91hvc1\xff\xff\xfe" + b"nal")  # coded frames with a composition time
    assert h.is_frame and h.composition_offset == -2 and h.data_offset == 8
    h = F.parse_video_header(b"\xa3av01" + b"obu")  # inter frame, coded frames without one
    assert h.is_frame and not h.keyframe and h.composition_offset == 0 and h.codec == "av1"


def test_audio_headers():
    h = F.parse_audio_header(b"\xaf\x00\x12\x10")
    assert (h.sound_format, h.sound_rate, h.sound_size, h.sound_type, h.aac_packet_type) == (10, 3, 1, 1, 0)
    assert h.sequence_header and h.codec == "aac" and h.rate_hz == 44100 and h.channels == 2 and h.bits == 16
    assert F.parse_audio_header(b"\xaf\x01xx").is_frame
    h = F.parse_audio_header(b"\x2a" + b"mp3")  # MP3 22 kHz 16-bit mono
    assert (h.codec, h.rate_hz, h.channels, h.aac_packet_type, h.is_frame) == ("mp3", 22050, 1, None, True)
    with pytest.raises(F.FlvError):
        F.parse_audio_header(b"\xaf")


@pytest.mark.parametrize("size", ["320x240", "854x480", "1920x1080", "642x362"])
def test_avc_config_picture_size(tmp_path, size):
    path = make_flv(tmp_path / "s.flv", size=size, seconds=0.2, audio=False)
    seq = next(d for k, _, d in read_tags(path) if k == F.VIDEO)
    config = F.parse_avc_config(seq[5:])
    assert f"{config.width}x{config.height}" == size
    assert config.profile_name == "High"


def test_avc_config_baseline_and_scaling_lists(tmp_path):
    path = make_flv(tmp_path / "b.flv", seconds=0.2, audio=False, extra=("-profile:v", "baseline"))
    seq = next(d for k, _, d in read_tags(path) if k == F.VIDEO)
    config = F.parse_avc_config(seq[5:])
    assert (config.width, config.height) == (320, 240) and config.profile_name.endswith("Baseline")
    path = make_flv(tmp_path / "c.flv", size="854x480", seconds=0.2, audio=False,
                    extra=("-x264-params", "cqm=jvt"))  # scaling matrices in the SPS
    seq = next(d for k, _, d in read_tags(path) if k == F.VIDEO)
    assert (F.parse_avc_config(seq[5:]).width, F.parse_avc_config(seq[5:]).height) == (854, 480)
    with pytest.raises(F.FlvError):
        F.parse_avc_config(b"\x00\x01")


def test_aac_config(sample_flv):
    seq = next(d for k, _, d in read_tags(sample_flv) if k == F.AUDIO)
    config = F.parse_aac_config(seq[2:])
    assert (config.profile, config.sample_rate, config.channels) == ("AAC-LC", 44100, 1)
    assert F.parse_aac_config(bytes([0x11, 0x90])).as_dict() == {"profile": "AAC-LC", "sample_rate": 48000, "channels": 2}


# -- script data ---------------------------------------------------------------------------------


def test_metadata_of_ffmpeg(sample_flv):
    kind, ts, data = read_tags(sample_flv)[0]
    assert (kind, ts) == (F.SCRIPT, 0)
    name, values = F.read_script_data(data)
    assert name == "onMetaData"
    assert values["width"] == 320 and values["height"] == 240 and values["framerate"] == 15
    assert values["videocodecid"] == 7 and values["audiocodecid"] == 10 and values["duration"] > 2.9
    assert isinstance(values["encoder"], str) and values["stereo"] is False


def test_live_metadata_zeroes_duration_and_filesize(sample_flv):
    data = read_tags(sample_flv)[0][2]
    live = F.live_metadata(data)
    assert len(live) == len(data)
    name, values = F.read_script_data(live)
    original = F.read_script_data(data)[1]
    assert values["duration"] == 0 and values["filesize"] == 0
    assert {k: v for k, v in values.items() if k not in ("duration", "filesize")} == \
        {k: v for k, v in original.items() if k not in ("duration", "filesize")}
    assert F.live_metadata(b"\x02\x00\x03abc\x05") == b"\x02\x00\x03abc\x05"  # no array: as it was
    at = data.index(b"duration") + len("duration")
    assert F.live_metadata(data[:at + 5]) == data[:at + 5]  # cut inside the number: as it was
    cut = F.live_metadata(data[:at + 12])  # cut after it: zeroed all the same
    assert cut[at + 1:at + 9] == bytes(8) and cut[:at] == data[:at]


def test_amf0_values():
    def s(text):
        return b"\x02" + struct.pack(">H", len(text)) + text.encode()

    body = (s("onMetaData") + b"\x03" + struct.pack(">H", 1) + b"a" + b"\x0a\x00\x00\x00\x02" + b"\x05" + b"\x01\x01"
            + struct.pack(">H", 1) + b"d" + b"\x0b" + struct.pack(">d", 1.5e12) + b"\x00\x00"
            + struct.pack(">H", 1) + b"l" + b"\x0c" + struct.pack(">I", 2) + b"hi"
            + struct.pack(">H", 1) + b"n" + b"\x00" + struct.pack(">d", float("nan"))
            + b"\x00\x00\x09")
    name, values = F.read_script_data(body)
    assert name == "onMetaData" and values["a"] == [None, True] and values["d"] == 1.5e12 and values["l"] == "hi"
    assert F.json_safe(values)["n"] is None
    when = datetime(2026, 11, 21, 10, 15, 2, tzinfo=UTC)
    assert F.json_safe({"t": when, "b": b"\x01\x02", "o": object, "l": (1, float("inf"))}) == \
        {"t": "2026-11-21T10:15:02+00:00", "b": "0102", "o": str(object), "l": [1, None]}
    with pytest.raises(F.FlvError):
        F.read_script_data(s("onMetaData") + b"\x11")
    with pytest.raises(F.FlvError):
        F.read_script_data(s("onMetaData")[:5])
