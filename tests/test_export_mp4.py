"""recorder export --format mp4: camera streams as MP4, audio as WAV, read back with ffprobe and
PyAV only, compared with what the sessions hold (recorder.open_session)."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from storage_support import store_body

import recorder
from recorder.export import export
from recorder.sim import video
from recorder.sim.fleet import make_fleet
from recorder.storage import Store

RECORDER = str(Path(sys.executable).with_name("recorder"))
TICK_NS = 1000  # the MP4s' time base, 1/1,000,000 s


def store(data: Path, fleet, windows) -> None:
    """Each device's run cut into windows, stored as one body per device."""
    store_ = Store(data, sync=False)
    for device in fleet:
        store_body(store_, device.headers(), b"".join(device.window(t0, t1) for t0, t1 in windows))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Two devices of mp_streaming_demo, 1.5 s: GRAY8 eye-tracking cameras, H.264 RGB camera."""
    data = tmp_path_factory.mktemp("demo") / "data"
    store(data, make_fleet(2, seed=7, profile="mp_streaming_demo"), [(0.0, 1.5)])
    return data


@pytest.fixture(scope="module")
def profile9(tmp_path_factory):
    """One profile9 device, 1 s: GRAY8 SLAM cameras, H.264 RGB camera, 8-channel PCM microphones."""
    data = tmp_path_factory.mktemp("profile9") / "data"
    store(data, make_fleet(1, seed=3, profile="profile9"), [(0.0, 1.0)])
    return data


def _encoded_loop(codec: str, pix_fmt: str, width: int, height: int, options: dict, frames: int) -> list[bytes]:
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base, context.framerate = Fraction(1, 5), 5
    context.options = options
    rng = np.random.default_rng(1)
    packets = []
    for k in range(frames):
        image = np.roll(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), 4 * k, axis=1)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
        frame.pts = k
        packets += context.encode(frame)
    packets += context.encode(None)
    assert len(packets) == frames
    return [bytes(p) for p in packets]


def _yuv420p_frames(width: int, height: int, frames: int) -> list[bytes]:
    rng = np.random.default_rng(2)
    size = width * height * 3 // 2
    return [rng.integers(0, 255, size, dtype=np.uint8).tobytes() for _ in range(frames)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One mp_streaming_demo device whose RGB camera (5 Hz) changes coding midway: 1 s of JPEG
    320x240, 1 s of RAW RGB24 161x121 (odd sizes), 2 s of H.265 320x240 (a keyframe every 5
    frames), 1 s of RAW YUV420P 160x120."""
    loops = [
        video.FrameLoop("JPEG", None, 320, 240, 0, tuple(_encoded_loop("mjpeg", "yuvj420p", 320, 240, {}, 5))),
        video.FrameLoop("RAW", "RGB24", 161, 121, 161 * 3,
                        tuple(np.random.default_rng(3).integers(0, 255, 161 * 121 * 3, dtype=np.uint8).tobytes()
                              for _ in range(5))),
        video.FrameLoop("H265", None, 320, 240, 0, tuple(_encoded_loop(
            "libx265", "yuv420p", 320, 240,
            {"preset": "ultrafast", "x265-params": "keyint=5:min-keyint=5:scenecut=0:bframes=0:repeat-headers=1:"
                                                   "log-level=error"}, 5))),
        video.FrameLoop("RAW", "YUV420P", 160, 120, 160, tuple(_yuv420p_frames(160, 120, 5))),
    ]
    data = tmp_path_factory.mktemp("mixed") / "data"
    (device,) = make_fleet(1, seed=5, profile="mp_streaming_demo")
    body = b""
    with pytest.MonkeyPatch.context() as patch:
        for loop, (t0, t1) in zip(loops, [(0.0, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 5.0)], strict=True):
            patch.setattr(video, "frame_loop", lambda camera, seed, loop=loop: loop)
            body += device.window(t0, t1)
    store_body(Store(data, sync=False), device.headers(), body)
    return data, loops


def _without_parameter_sets(access_unit: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in nal_units_annex_b(access_unit) if unit[0] & 0x1F not in (7, 8))


def _parameter_sets(access_unit: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in nal_units_annex_b(access_unit) if unit[0] & 0x1F in (7, 8))


@pytest.fixture(scope="module")
def sparse_headers(tmp_path_factory):
    """H.264 RGB frames at 5 Hz, a keyframe every 5 frames, 2.6 s, stored twice: with SPS/PPS in
    frame 0 of the 10-frame loop only (frame 5, a keyframe, lacks them), and with them moved
    from frame 0 into frame 4 (a P frame, just before keyframe 5)."""
    loop = _encoded_loop("libx264", "yuv420p", 320, 240, {
        "preset": "ultrafast", "x264-params": "keyint=5:min-keyint=5:scenecut=0:bframes=0:repeat-headers=1"}, 10)
    first_only = [*loop[:5], _without_parameter_sets(loop[5]), *loop[6:]]
    moved = [*loop[:4], loop[4] + _parameter_sets(loop[0]), _without_parameter_sets(loop[5]), *loop[6:]]
    captures = {}
    for name, frames in (("first_only", first_only), ("moved", moved)):
        data = tmp_path_factory.mktemp(name) / "data"
        (device,) = make_fleet(1, seed=5, profile="mp_streaming_demo")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(video, "frame_loop", lambda camera, seed, frames=frames: video.FrameLoop(
                "H264", None, 320, 240, 0, tuple(frames)))
            store(data, [device], [(0.0, 2.6)])
        captures[name] = data
    return captures


# -- reading back, with ffprobe and PyAV only ----------------------------------------------------

def ffprobe(path: Path, *entries: str) -> dict:
    done = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries", ",".join(entries),
                           "-of", "json", str(path)], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout)


def video_stream(path: Path) -> dict:
    (stream,) = ffprobe(path, "stream=codec_name,width,height,pix_fmt,nb_read_frames,time_base,duration")["streams"]
    return stream


def packet_times(path: Path) -> list[int]:
    packets = ffprobe(path, "packet=pts,dts")["packets"]
    assert all(p["pts"] == p["dts"] for p in packets)
    return [p["pts"] for p in packets]


def packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as container:
        return [(bytes(p), p.is_keyframe) for p in container.demux(video=0) if p.size]


def nal_units_annex_b(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit (start codes 00 00 01 / 00 00 00 01)."""
    starts, at = [], data.find(b"\x00\x00\x01")
    while at >= 0:
        starts.append(at + 3)
        at = data.find(b"\x00\x00\x01", at + 3)
    units = [data[s:e - 3] for s, e in zip(starts, [*starts[1:], len(data) + 3], strict=True)]
    return [u.rstrip(b"\x00") for u in units]  # a 4-byte start code's leading zero ends the unit before


def nal_units_length_prefixed(data: bytes) -> list[bytes]:
    """The NAL units of an MP4 sample (4-byte big-endian lengths, as FFmpeg writes avcC/hvcC)."""
    units, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        units.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return units


def gray_images(path: Path) -> list[np.ndarray]:
    """The luma plane of every decoded frame, as stored (no range conversion)."""
    images = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            plane = frame.planes[0]
            rows = np.frombuffer(bytes(plane), np.uint8).reshape(-1, plane.line_size)
            images.append(rows[:frame.height, :frame.width])
    return images


def sessions(data: Path):
    return [recorder.open_session(p) for p in sorted(data.glob("*/*"))]


def sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


# -- tests ---------------------------------------------------------------------------------------

def test_h264_frames_are_copied_byte_for_byte_with_their_times(demo, tmp_path):
    """Compared as NAL units: MP4 holds length-prefixed units where the sessions hold Annex B."""
    summary = export([demo], "mp4", tmp_path / "out", clock="broadcaster")
    for session in sessions(demo):
        path = summary.out / session.serial / "camera-rgb.mp4"
        stored = session.table("camera-rgb")
        assert video_stream(path)["codec_name"] == "h264"
        assert int(video_stream(path)["nb_read_frames"]) == stored.num_rows
        got = packets(path)
        assert len(got) == stored.num_rows
        for i, (data, keyframe) in enumerate(got):
            original = session.blob("camera-rgb", i)
            assert nal_units_length_prefixed(data) == nal_units_annex_b(original)
            assert keyframe == (i % video.GOP_FRAMES == 0)
        times = session.to_broadcaster_time(stored.column("timestamp_ns").to_numpy())
        described = sidecar(path)
        assert described["frames"] == stored.num_rows and described["pts_zero_time_ns"] == int(times[0])
        pts = np.array(packet_times(path))
        assert np.all(np.abs(described["pts_zero_time_ns"] + pts * TICK_NS - times) <= TICK_NS // 2)


def test_device_clock_puts_pts_zero_at_the_stored_timestamp(demo, tmp_path):
    summary = export([demo], "mp4", tmp_path / "out", clock="device", streams=["camera-et-left"])
    for session in sessions(demo):
        path = summary.out / session.serial / "camera-et-left.mp4"
        stamps = session.table("camera-et-left").column("timestamp_ns").to_numpy()
        assert sidecar(path)["pts_zero_time_ns"] == int(stamps[0])
        assert np.all(np.abs(stamps[0] + np.array(packet_times(path)) * TICK_NS - stamps) <= TICK_NS // 2)
    assert sorted(p.name for p in summary.out.glob("*/*")) == ["camera-et-left.mp4"] * 2 + ["camera-et-left.mp4.json"] * 2


@pytest.mark.parametrize("stream", ["camera-et-left", "slam-front-left"])
def test_gray8_frames_round_trip_exactly_when_lossless_and_closely_otherwise(demo, profile9, tmp_path, stream):
    data = demo if stream.startswith("camera-et") else profile9
    exact = export([data], "mp4", tmp_path / "exact", streams=[stream], lossless=True).out
    small = export([data], "mp4", tmp_path / "small", streams=[stream]).out
    for session in sessions(data):
        stored = [image for _, image in session.frames(stream)]
        lossless_path = exact / session.serial / f"{stream}.mp4"
        assert int(video_stream(lossless_path)["nb_read_frames"]) == len(stored)
        decoded = gray_images(lossless_path)
        assert len(decoded) == len(stored)
        for mine, theirs in zip(decoded, stored, strict=True):
            np.testing.assert_array_equal(mine, theirs)
        lossy_path = small / session.serial / f"{stream}.mp4"
        described = video_stream(lossy_path)
        assert described["pix_fmt"] == "yuv420p" and int(described["nb_read_frames"]) == len(stored)
        with av.open(str(lossy_path)) as container:
            shown = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
        assert len(shown) == len(stored)
        assert max(np.abs(a.astype(int) - b).mean() for a, b in zip(shown, stored, strict=True)) < 2
        assert lossy_path.stat().st_size < lossless_path.stat().st_size


def test_the_wav_holds_the_sessions_samples(profile9, tmp_path):
    summary = export([profile9], "mp4", tmp_path / "out", streams=["mic"])
    (session,) = sessions(profile9)
    pcm, rate, _ = session.audio("mic")
    path = summary.out / session.serial / "mic.wav"
    (stream,) = ffprobe(path, "stream=codec_name,channels,sample_rate,duration_ts")["streams"]
    assert stream["codec_name"] == "pcm_s16le" and stream["channels"] == pcm.shape[1] == 8
    assert int(stream["sample_rate"]) == rate and int(stream["duration_ts"]) == len(pcm)
    with av.open(str(path)) as container:
        decoded = np.concatenate([f.to_ndarray().reshape(-1, f.layout.nb_channels)
                                  for f in container.decode(audio=0)])
    np.testing.assert_array_equal(decoded, pcm)
    described = sidecar(path)
    times = session.to_broadcaster_time(session.table("mic").column("timestamp_ns").to_numpy())
    assert described["samples"] == len(pcm) and described["first_sample_time_ns"] == int(times[0])
    assert described["gaps"] == 0


def test_audio_longer_than_a_wav_holds_goes_on_in_the_next_file(profile9, tmp_path, monkeypatch):
    from recorder.export.formats import mp4

    (session,) = sessions(profile9)
    pcm, _, _ = session.audio("mic")
    blocks = session.table("mic")
    block_bytes = blocks.column("size")[0].as_py()
    monkeypatch.setattr(mp4, "WAV_MAX_BYTES", 2 * block_bytes)
    out = export([profile9], "mp4", tmp_path / "out", streams=["mic"]).out
    assert blocks.num_rows >= 3
    parts = [out / session.serial / ("mic.wav" if n == 1 else f"mic-{n}.wav")
             for n in range(1, (blocks.num_rows + 1) // 2 + 1)]
    assert sorted((out / session.serial).glob("*.wav")) == sorted(parts)
    decoded = []
    for part in parts:
        with av.open(str(part)) as container:
            decoded += [f.to_ndarray().reshape(-1, f.layout.nb_channels) for f in container.decode(audio=0)]
    np.testing.assert_array_equal(np.concatenate(decoded), pcm)
    times = session.to_broadcaster_time(blocks.column("timestamp_ns").to_numpy())
    assert [sidecar(p)["first_sample_time_ns"] for p in parts] == [int(t) for t in times[::2]]


def test_window_and_streams_deliver_exactly_the_frames_they_name(demo, tmp_path):
    first = sessions(demo)[0]
    origin = int(first.to_broadcaster_time(first.table("camera-et-left").column("timestamp_ns").to_numpy()[:1])[0])
    start, end = origin + 300_000_000, origin + 1_100_000_000
    summary = export([demo], "mp4", tmp_path / "out", start=f"{start}ns", end=f"{end}ns",
                     streams=["camera-et-left", "camera-rgb"])
    for session in sessions(demo):
        times = session.to_broadcaster_time(session.table("camera-et-left").column("timestamp_ns").to_numpy())
        inside = np.flatnonzero((times >= start) & (times < end))
        path = summary.out / session.serial / "camera-et-left.mp4"
        assert int(video_stream(path)["nb_read_frames"]) == len(inside) > 0
        assert sidecar(path)["pts_zero_time_ns"] == int(times[inside[0]])
        stored = [image for _, image in session.frames("camera-et-left")]
        with av.open(str(path)) as container:
            shown = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
        assert max(np.abs(a.astype(int) - stored[i]).mean() for a, i in zip(shown, inside, strict=True)) < 2
        # The RGB frames in the window all follow the one keyframe at 0 s: none decodes, none is written.
        assert not (summary.out / session.serial / "camera-rgb.mp4").exists()
        assert any(session.serial in note and "camera-rgb" in note and "no keyframe" in note for note in summary.notes)
    assert {p.name for p in summary.out.glob("*/*.mp4")} == {"camera-et-left.mp4"}


def test_a_change_of_coding_midway_starts_a_new_file_and_each_is_faithful(mixed, tmp_path):
    data, loops = mixed
    (session,) = sessions(data)
    stored = session.table("camera-rgb")
    configs = list(zip(*(stored.column(c).to_pylist() for c in ("codec", "pixel_format", "width")), strict=True))
    runs = np.split(np.arange(stored.num_rows), [i for i in range(1, len(configs)) if configs[i] != configs[i - 1]])
    assert [len(r) for r in runs] == [5, 5, 10, 5]
    out = export([data], "mp4", tmp_path / "out", clock="device", streams=["camera-rgb"], lossless=True).out
    folder = out / session.serial
    names = ["camera-rgb.mp4", "camera-rgb-2.mp4", "camera-rgb-3.mp4", "camera-rgb-4.mp4"]
    assert sorted(p.name for p in folder.glob("*.mp4")) == sorted(names)
    stamps = stored.column("timestamp_ns").to_numpy()
    for name, rows, expected_codec in zip(names, runs, ["mjpeg", "h264", "hevc", "h264"], strict=True):
        path = folder / name
        described = video_stream(path)
        assert described["codec_name"] == expected_codec
        assert int(described["nb_read_frames"]) == len(rows) == sidecar(path)["frames"]
        pts = np.array(packet_times(path))
        assert np.all(np.abs(sidecar(path)["pts_zero_time_ns"] + pts * TICK_NS - stamps[rows]) <= TICK_NS // 2)
    # JPEG: the very bytes; H.265: the same NAL units.
    assert [d for d, _ in packets(folder / names[0])] == [session.blob("camera-rgb", int(i)) for i in runs[0]]
    for (mine, keyframe), i in zip(packets(folder / names[2]), runs[2], strict=True):
        assert nal_units_length_prefixed(mine) == nal_units_annex_b(session.blob("camera-rgb", int(i)))
        assert keyframe == (int(session.table("camera-rgb").column("frame_number")[int(i)].as_py()) % 5 == 0)
    # RAW RGB24 of odd size, lossless through libx264rgb: the very pixels.
    with av.open(str(folder / names[1])) as container:
        rgb = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert [im.shape for im in rgb] == [(121, 161, 3)] * len(runs[1])
    for image, i in zip(rgb, runs[1], strict=True):
        np.testing.assert_array_equal(image.ravel(), np.frombuffer(session.blob("camera-rgb", int(i)), np.uint8))
    # RAW YUV420P, lossless: the very planes.
    with av.open(str(folder / names[3])) as container:
        planes = [b"".join(np.frombuffer(bytes(p), np.uint8).reshape(-1, p.line_size)[:, :p.width].tobytes()
                           for p in f.planes) for f in container.decode(video=0)]
    assert planes == [session.blob("camera-rgb", int(i)) for i in runs[3]]


def test_odd_sizes_are_padded_for_yuv420p_and_the_sidecar_says_so(mixed, tmp_path):
    data, _ = mixed
    out = export([data], "mp4", tmp_path / "out", streams=["camera-rgb"]).out
    (session,) = sessions(data)
    path = out / session.serial / "camera-rgb-2.mp4"
    described = video_stream(path)
    assert (described["width"], described["height"], described["pix_fmt"]) == (162, 122, "yuv420p")
    assert sidecar(path)["padded_to"] == [162, 122] and sidecar(path)["width"] == 161


def test_a_window_starting_inside_a_gop_starts_the_file_at_the_next_keyframe(mixed, tmp_path):
    data, _ = mixed
    (session,) = sessions(data)
    stored = session.table("camera-rgb")
    hevc = np.flatnonzero(np.array(stored.column("codec").to_pylist()) == 3)
    start = int(stored.column("timestamp_ns")[int(hevc[2])].as_py())
    out = export([data], "mp4", tmp_path / "out", clock="device", start=f"{start}ns", streams=["camera-rgb"]).out
    path = out / session.serial / "camera-rgb.mp4"
    assert video_stream(path)["codec_name"] == "hevc"
    described = sidecar(path)
    assert described["dropped_before_keyframe"] == 3  # frames 2, 3, 4 of the GOP of 5
    assert described["pts_zero_time_ns"] == int(stored.column("timestamp_ns")[int(hevc[5])].as_py())
    assert int(video_stream(path)["nb_read_frames"]) == len(hevc) - 5


def test_a_file_starts_where_a_keyframe_has_its_parameter_sets(sparse_headers, tmp_path):
    for name, data in sparse_headers.items():
        (session,) = sessions(data)
        stamps = session.table("camera-rgb").column("timestamp_ns").to_numpy()
        assert len(stamps) == 13
        whole = export([data], "mp4", tmp_path / f"{name}-whole", clock="device", streams=["camera-rgb"]).out
        path = whole / session.serial / "camera-rgb.mp4"
        assert int(video_stream(path)["nb_read_frames"]) == 13
        with av.open(str(path)) as container:
            assert len(list(container.decode(video=0))) == 13
        part = export([data], "mp4", tmp_path / f"{name}-part", clock="device", start=f"{stamps[3]}ns",
                      streams=["camera-rgb"])
        path = part.out / session.serial / "camera-rgb.mp4"
        described = sidecar(path)
        with av.open(str(path)) as container:
            decoded = len(list(container.decode(video=0)))
        got = packets(path)
        if name == "first_only":  # keyframe 5 cannot start a file: keyframe 10, which has them, does
            assert described["dropped_before_keyframe"] == 7 and described["pts_zero_time_ns"] == int(stamps[10])
            assert decoded == len(got) == 3 and "parameter_sets_prepended" not in described
            assert any("7 frame(s) left out" in note for note in part.notes)
        else:  # frame 4's parameter sets go in front of keyframe 5
            assert described["dropped_before_keyframe"] == 2 and described["pts_zero_time_ns"] == int(stamps[5])
            assert decoded == len(got) == 8 and described["parameter_sets_prepended"]
            stored = session.blob("camera-rgb", 5)
            assert nal_units_length_prefixed(got[0][0]) == nal_units_annex_b(_parameter_sets(session.blob(
                "camera-rgb", 4)) + stored)


def test_a_devices_later_session_gets_the_next_file_name(tmp_path):
    """Two sessions of one device, the second after a reboot (its clock starts again), whose id
    sorts first."""
    data = tmp_path / "data"
    ids = ["ffffffff-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"]
    for session_id in ids:
        store(data, make_fleet(1, seed=7, profile="mp_streaming_demo", session_ids=[session_id]), [(0.0, 0.6)])
    out = export([data], "mp4", tmp_path / "out", clock="device", streams=["camera-et-left"]).out
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    assert [sidecar(folder / name)["session_id"] for name in ("camera-et-left.mp4", "camera-et-left-2.mp4")] == ids
    assert all(int(video_stream(folder / name)["nb_read_frames"]) == 3
               for name in ("camera-et-left.mp4", "camera-et-left-2.mp4"))


def test_the_command_takes_lossless_for_mp4_only(demo, tmp_path):
    done = subprocess.run([RECORDER, "export", str(demo), "--format", "mp4", "--out", str(tmp_path / "v"),
                           "--streams", "camera-et-right", "--lossless"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "mp4:" in done.stdout and "camera-et-right:" in done.stdout
    assert all(sidecar(p)["lossless"] for p in (tmp_path / "v").glob("*/camera-et-right.mp4"))
    bad = subprocess.run([RECORDER, "export", str(demo), "--format", "parquet", "--out", str(tmp_path / "p"),
                          "--lossless"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--lossless" in bad.stderr and "Traceback" not in bad.stderr
