"""Camera frames as images: RAW frames reshaped, coded frames (JPEG, H.264, H.265) decoded.

RAW GRAY8 gives height x width uint8; RGB24, YUV420P and every coded frame give height x width
x 3 uint8 RGB. H.264 and H.265 frames depend on the frames before them back to the last
keyframe: `VideoDecoder` is fed them in stream order (the order the device sent them, which for
the low-latency streams of glasses, without B-frames, is also capture order).
"""

from __future__ import annotations

import av
import numpy as np

from ..schema import load

_ENUMS = load().enums
RAW = _ENUMS["camera_codec"].code("RAW")
JPEG = _ENUMS["camera_codec"].code("JPEG")
H264 = _ENUMS["camera_codec"].code("H264")
H265 = _ENUMS["camera_codec"].code("H265")
GRAY8 = _ENUMS["pixel_format"].code("GRAY8")
RGB24 = _ENUMS["pixel_format"].code("RGB24")
YUV420P = _ENUMS["pixel_format"].code("YUV420P")

DECODERS = {JPEG: "mjpeg", H264: "h264", H265: "hevc"}


class FrameError(ValueError):
    """A stored frame that cannot be turned into an image; the message says which and why."""


def raw_image(info: dict, data: bytes) -> np.ndarray:
    """A RAW frame's pixels, the row padding (stride) cut off."""
    pixels = np.frombuffer(data, np.uint8)
    width, height, stride, fmt = info["width"], info["height"], info["stride_bytes"], info["pixel_format"]
    if fmt == GRAY8 and stride >= width and pixels.size >= stride * height:
        return pixels[:stride * height].reshape(height, stride)[:, :width]
    if fmt == RGB24 and stride >= 3 * width and pixels.size >= stride * height:
        return pixels[:stride * height].reshape(height, stride)[:, :3 * width].reshape(height, width, 3)
    if fmt == YUV420P and stride >= width and width % 2 == 0 and height % 2 == 0:
        return _yuv420p_to_rgb(pixels, width, height, stride)
    raise FrameError(f"RAW frame of {pixels.size} bytes does not hold a {width}x{height} image "
                     f"of pixel format {fmt} with stride {stride}")


def _yuv420p_to_rgb(pixels: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    return yuv420p_frame(pixels, width, height, stride).to_ndarray(format="rgb24")


def yuv420p_frame(pixels: np.ndarray, width: int, height: int, stride: int) -> av.VideoFrame:
    """A RAW YUV420P frame's planes as a PyAV frame, the row padding (stride) cut off."""
    luma_size, chroma_stride = stride * height, stride // 2
    chroma_size = chroma_stride * (height // 2)
    if pixels.size < luma_size + 2 * chroma_size:
        raise FrameError(f"YUV420P frame of {pixels.size} bytes is too short for {width}x{height}")
    y = pixels[:luma_size].reshape(height, stride)[:, :width]
    u = pixels[luma_size:luma_size + chroma_size].reshape(height // 2, chroma_stride)[:, :width // 2]
    v = pixels[luma_size + chroma_size:luma_size + 2 * chroma_size].reshape(height // 2, chroma_stride)[:, :width // 2]
    planar = np.concatenate([y, u.reshape(height // 4, width), v.reshape(height // 4, width)]) \
        if height % 4 == 0 else None
    if planar is None:  # PyAV's ndarray layout for yuv420p needs height / 4 rows per chroma plane
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane, values in zip(frame.planes, (y, u, v), strict=True):
            rows = np.zeros((values.shape[0], plane.line_size), np.uint8)
            rows[:, :values.shape[1]] = values
            plane.update(rows.tobytes())
    else:
        frame = av.VideoFrame.from_ndarray(planar, format="yuv420p")
    return frame


def is_keyframe(codec: int, data: bytes) -> bool:
    """Whether decoding can start at this frame: any JPEG or RAW frame; an H.264 access unit
    holding an IDR slice (NAL type 5); an H.265 one holding an IRAP picture (types 16 to 23)."""
    if codec not in (H264, H265):
        return True
    for nal_type in _nal_types(codec, data):
        if (codec == H264 and nal_type == 5) or (codec == H265 and 16 <= nal_type <= 23):
            return True
    return False


def _nal_types(codec: int, data: bytes):
    start = data.find(b"\x00\x00\x01")
    while start >= 0 and start + 3 < len(data):
        header = data[start + 3]
        yield header & 0x1F if codec == H264 else (header >> 1) & 0x3F
        start = data.find(b"\x00\x00\x01", start + 3)


class VideoDecoder:
    """Decodes one coded camera stream, frame after frame, from a keyframe on."""

    def __init__(self, codec: int):
        if codec not in DECODERS:
            raise FrameError(f"no decoder for camera codec {codec}")
        self.codec = codec
        self._context = av.CodecContext.create(DECODERS[codec], "r")
        self._pending: list[np.ndarray] = []

    def decode(self, data: bytes) -> list[np.ndarray]:
        """The RGB images that this frame's bytes complete (none while the decoder still waits
        for what it needs, e.g. a keyframe)."""
        try:
            return [f.to_ndarray(format="rgb24") for f in self._context.decode(av.Packet(data))]
        except av.error.FFmpegError as exc:
            raise FrameError(f"cannot decode a {DECODERS[self.codec]} frame: {exc}") from None

    def flush(self) -> list[np.ndarray]:
        """The images the decoder still holds back, at the end of the frames fed."""
        try:
            return [f.to_ndarray(format="rgb24") for f in self._context.decode(None)]
        except av.error.FFmpegError as exc:
            raise FrameError(f"cannot decode a {DECODERS[self.codec]} frame: {exc}") from None
