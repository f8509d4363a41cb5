"""Layout rules of blob messages that a field table cannot express.

A rule takes the decoded prefix (a numpy record) and the length of the bytes after it, and
returns None when the payload is well formed or a sentence saying what is wrong. The schema
names a rule by key (`rule = "..."` under [prefixes]).
"""

from __future__ import annotations

from collections.abc import Callable

from ..schema import load

_ENUMS = load().enums
RAW = _ENUMS["camera_codec"].code("RAW")
GRAY8, RGB24, YUV420P = (_ENUMS["pixel_format"].code(name) for name in ("GRAY8", "RGB24", "YUV420P"))
# OPUS is one packet of any size: only PCM blocks have a size to check.
PCM_BYTES_PER_SAMPLE = {_ENUMS["audio_codec"].code("PCM_S16LE"): 2, _ENUMS["audio_codec"].code("PCM_S32LE"): 4}


def camera_frame_size(prefix, data_length: int) -> str | None:
    if prefix["codec"] != RAW:
        return None
    stride, height, fmt = int(prefix["stride_bytes"]), int(prefix["height"]), int(prefix["pixel_format"])
    if fmt in (GRAY8, RGB24):
        expected = stride * height
    elif fmt == YUV420P:
        expected = stride * height * 3 // 2
    else:
        return f"RAW frame has unknown pixel_format {fmt}"
    if data_length != expected:
        return f"RAW frame image is {data_length} bytes, stride {stride} x height {height} needs {expected}"
    return None


def audio_block_size(prefix, data_length: int) -> str | None:
    width = PCM_BYTES_PER_SAMPLE.get(int(prefix["codec"]))
    if width is None:
        return None
    expected = int(prefix["channels"]) * int(prefix["samples_per_channel"]) * width
    if data_length != expected:
        return (f"PCM block is {data_length} bytes, {prefix['channels']} channels x "
                f"{prefix['samples_per_channel']} samples x {width} bytes needs {expected}")
    return None


RULES: dict[str, Callable[[object, int], str | None]] = {
    "camera_frame_size": camera_frame_size,
    "audio_block_size": audio_block_size,
}
