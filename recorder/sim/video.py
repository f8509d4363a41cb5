"""The RGB camera's frames: real H.264, encoded once and then cycled.

Encoding 2560x1920 frames costs far more than generating every other stream, so one closed GOP
(an IDR with SPS/PPS, then P frames: 10 frames, 2 s at 5 Hz) is encoded per camera and seed, on
first use, and shared by every device; frame k of a run is access unit k mod 10. The encoder
first runs one GOP to settle its rate control, and the loop is the GOP after it. Without PyAV or
libx264 the camera sends small RAW RGB24 frames instead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import noise
from .images import scene_texture, value_noise
from .profiles import CameraStream

GOP_FRAMES = 10
PAN_PIXELS_PER_FRAME = 12
RAW_FALLBACK_DOWNSCALE = 4


@dataclass(frozen=True)
class FrameLoop:
    """Frames to cycle, and how they are coded: codec and pixel_format are labels of the schema's
    camera_codec and pixel_format enums (the devices turn them into their schema's codes)."""

    codec: str
    pixel_format: str | None  # RAW only
    width: int
    height: int
    stride_bytes: int  # RAW only; 0 otherwise
    frames: tuple[bytes, ...]

    def frame(self, frame_number: int) -> bytes:
        return self.frames[frame_number % len(self.frames)]


def h264_available() -> bool:
    try:
        import av

        av.codec.Codec("libx264", "w")
    except (ImportError, ValueError):  # no PyAV, or an FFmpeg built without libx264
        return False
    return True


def _yuv_frames(camera: CameraStream, seed: int, width: int, height: int) -> list[tuple[np.ndarray, ...]]:
    """GOP_FRAMES frames (Y, U, V planes; chroma at half size) panning across a colour scene."""
    rng = noise.rng(seed, "rgb-scene", camera.label, width, height)
    pan = PAN_PIXELS_PER_FRAME * width // 2560 or 1
    span = width + pan * GOP_FRAMES
    luma = scene_texture(rng, height, span, scale=width / 2048)
    chroma = [(128 + 40 * (value_noise(rng, height // 2, span // 2, 48) - 0.5)).astype(np.uint8) for _ in range(2)]
    frames = []
    for k in range(GOP_FRAMES):
        x = k * pan
        frames.append((luma[:, x:x + width], chroma[0][:, x // 2:x // 2 + width // 2],
                       chroma[1][:, x // 2:x // 2 + width // 2]))
    return frames


def _encode_h264(camera: CameraStream, seed: int) -> FrameLoop:
    import av

    context = av.CodecContext.create("libx264", "w")
    context.width, context.height, context.pix_fmt = camera.width, camera.height, "yuv420p"
    context.time_base = Fraction(1, camera.rate_hz)
    context.framerate = camera.rate_hz
    context.bit_rate = camera.bitrate_bps
    kbps = camera.bitrate_bps // 1000
    context.options = {
        "preset": "ultrafast", "tune": "zerolatency",
        # Fixed GOPs, each IDR with its own SPS/PPS, and a 1 s buffer so frame sizes stay near
        # the target rate as on a live camera.
        "x264-params": f"keyint={GOP_FRAMES}:min-keyint={GOP_FRAMES}:scenecut=0:repeat-headers=1"
                       f":vbv-maxrate={kbps}:vbv-bufsize={kbps}",
    }
    frames = _yuv_frames(camera, seed, camera.width, camera.height)
    packets = []
    for pts in range(2 * GOP_FRAMES):
        y, u, v = frames[pts % GOP_FRAMES]
        frame = av.VideoFrame.from_ndarray(np.concatenate([y, u.reshape(-1, camera.width), v.reshape(-1, camera.width)]),
                                           format="yuv420p")
        frame.pts = pts
        packets += context.encode(frame)
    packets += context.encode(None)
    loop = packets[GOP_FRAMES:]
    if len(loop) != GOP_FRAMES or not loop[0].is_keyframe:
        raise RuntimeError("libx264 did not produce one closed GOP per 10 frames")
    return FrameLoop("H264", None, camera.width, camera.height, 0, tuple(bytes(p) for p in loop))


def _raw_rgb(camera: CameraStream, seed: int) -> FrameLoop:
    width, height = camera.width // RAW_FALLBACK_DOWNSCALE, camera.height // RAW_FALLBACK_DOWNSCALE
    images = []
    for y, u, v in _yuv_frames(camera, seed, width, height):
        y = y.astype(np.float32)
        u = np.repeat(np.repeat(u, 2, 0), 2, 1)[:height, :width].astype(np.float32) - 128
        v = np.repeat(np.repeat(v, 2, 0), 2, 1)[:height, :width].astype(np.float32) - 128
        rgb = np.stack([y + 1.402 * v, y - 0.344 * u - 0.714 * v, y + 1.772 * u], axis=-1)
        images.append(np.clip(rgb, 0, 255).astype(np.uint8).tobytes())
    return FrameLoop("RAW", "RGB24", width, height, width * 3, tuple(images))


_cache: dict[tuple[CameraStream, int], FrameLoop] = {}
_lock = threading.Lock()


def frame_loop(camera: CameraStream, seed: int) -> FrameLoop:
    """The frames of an RGB camera for a seed, built on first use and shared by all devices."""
    with _lock:
        if (camera, seed) not in _cache:
            _cache[camera, seed] = _encode_h264(camera, seed) if h264_available() else _raw_rgb(camera, seed)
        return _cache[camera, seed]
