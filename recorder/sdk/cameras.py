"""Camera frames turned into ImageData, one camera stream at a time, in stream order.

RAW frames are reshaped (recorder.reading.images.raw_image). Coded frames (JPEG, H.264, H.265)
are decoded when image decoding is on, with one decoder per stream fed in stream order from a
keyframe; with it off they are handed over as their bytes. A coded frame that cannot be decoded
is skipped and counted, never delivered with an empty image: before the stream's first keyframe
(a live feed joined mid-stream, or a window that starts after a keyframe the replay did not
prime from), or frames the decoder rejects. A decoder may hold a frame back until it has what
it needs; such a frame is delivered as soon as its image comes out (or at flush()).
"""

from __future__ import annotations

import numpy as np

from ..reading import images
from .data import ImageData


class CameraImages:
    def __init__(self, decode: bool):
        self.decode = decode
        self.skipped = 0
        self._decoder: images.VideoDecoder | None = None
        self._waiting: list = []  # keys of frames fed whose images the decoder still holds

    def reset(self) -> None:
        """Forget the decoder's state (after a seek): the next frame must be a keyframe."""
        self.skipped += len(self._waiting)
        self._decoder, self._waiting = None, []

    def feed(self, key, info: dict, data: bytes) -> list[tuple[object, ImageData]]:
        """The frames this one completes, as (key, image), in stream order. info: the frame's
        stored prefix fields (codec, pixel_format, width, height, stride_bytes)."""
        codec, width, height = info["codec"], info["width"], info["height"]
        try:
            if codec == images.RAW:
                return [(key, ImageData(images.raw_image(info, data), width, height))]
            if not self.decode:
                return [(key, ImageData(np.frombuffer(data, np.uint8), width, height, encoded=True))]
            if not self._start(codec, data):
                self.skipped += 1
                return []
            self._waiting.append(key)
            return self._pair(self._decoder.decode(data))
        except images.FrameError:
            lost = [k for k in self._waiting if k is not None]
            self.skipped += len(lost) + (key not in lost)
            self._decoder, self._waiting = None, []
            return []

    def prime(self, info: dict, data: bytes) -> None:
        """Feed a frame before a window or seek so that the frames after it decode; its image
        is dropped."""
        if info["codec"] == images.RAW or not self.decode:
            return
        try:
            if self._start(info["codec"], data):
                self._waiting.append(None)
                self._pair(self._decoder.decode(data))
        except images.FrameError:
            self._decoder, self._waiting = None, []

    def flush(self) -> list[tuple[object, ImageData]]:
        if self._decoder is None:
            return []
        try:
            return self._pair(self._decoder.flush())
        except images.FrameError:
            self.reset()
            return []
        finally:
            self._decoder = None

    def _start(self, codec: int, data: bytes) -> bool:
        if self._decoder is not None and self._decoder.codec == codec:
            return True
        if not images.is_keyframe(codec, data):
            return False
        self.reset()
        self._decoder = images.VideoDecoder(codec)
        return True

    def _pair(self, decoded: list[np.ndarray]) -> list[tuple[object, ImageData]]:
        out = []
        for image in decoded:
            if not self._waiting:
                break
            key = self._waiting.pop(0)
            if key is not None:
                out.append((key, ImageData(image, image.shape[1], image.shape[0])))
        return out
