"""Real publishers for the RTMP tests: ffmpeg, fed a source file made once by ffmpeg, and the
packets a file holds as PyAV demuxes them, to compare what was recorded with what was sent."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import trio

FPS = 15
SECONDS = 3
SIZE = (320, 240)
SAMPLE_RATE = 44100


def make_source(path: Path, *, seconds: float = SECONDS, fps: int = FPS, size=SIZE) -> Path:
    """H.264 (a keyframe every 2 s, as the glasses send) and AAC-LC in an FLV, made by ffmpeg."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size={size[0]}x{size[1]}:rate={fps}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={SAMPLE_RATE}",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", str(2 * fps), "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(path)],
        check=True, timeout=120)
    return path


@dataclass
class Published:
    returncode: int
    stderr: str


async def publish(source: Path, url: str, *, realtime: bool = False, timeout: float = 60.0) -> Published:
    """ffmpeg sends `source` as it is (-c copy) to `url`; -re paces it as a camera would."""
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", *(["-re"] if realtime else []), "-i", str(source),
            "-c", "copy", "-f", "flv", url]
    with trio.fail_after(timeout):
        result = await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
    return Published(result.returncode, result.stderr.decode(errors="replace"))


@dataclass(frozen=True)
class Packet:
    kind: str  # "video" or "audio"
    dts: int  # ms
    pts: int
    keyframe: bool
    data: bytes


def packets(path: Path) -> list[Packet]:
    """Every audio and video packet of a file, in file order, timestamps in ms."""
    found = []
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        for packet in container.demux(streams):
            if packet.dts is None or packet.size == 0:
                continue
            tb = packet.time_base
            found.append(Packet(packet.stream.type, round(packet.dts * tb * 1000), round(packet.pts * tb * 1000),
                                packet.is_keyframe, bytes(packet)))
    return found


def by_kind(found: list[Packet], kind: str) -> list[Packet]:
    return [p for p in found if p.kind == kind]


def shifted(found: list[Packet], offset_ms: int) -> list[Packet]:
    return [Packet(p.kind, p.dts + offset_ms, p.pts + offset_ms, p.keyframe, p.data) for p in found]


def ffprobe(path: Path) -> dict:
    """ffprobe's view with every frame counted: streams (codec, size, nb_read_frames) and format."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json",
                          str(path)], check=True, capture_output=True, timeout=120)
    return json.loads(out.stdout)


def stream_of(probe: dict, kind: str) -> dict:
    (stream,) = [s for s in probe["streams"] if s["codec_type"] == kind]
    return stream


def rtmp_folders(data_dir: Path) -> list[Path]:
    """Every <data>/rtmp/<app>/<key>/<session> folder."""
    return sorted(p for p in (Path(data_dir) / "rtmp").glob("*/*/*") if p.is_dir())
