"""Camera frames of one device: the blob prefix fields and the image bytes of frame k."""

from __future__ import annotations

import numpy as np

from ..schema import Schema
from . import images, rig, video
from .gaze import Gaze
from .motion import Walk
from .profiles import CameraStream


class Cameras:
    def __init__(self, seed: int, schema: Schema, walk: Walk, gaze: Gaze, phase: float):
        self.seed = seed
        self.walk = walk
        self.gaze = gaze
        self.phase = phase  # shifts the slow exposure and temperature changes per device
        self._camera_ids = schema.enums["camera_id"]
        self._codecs = schema.enums["camera_codec"]
        self._pixel_formats = schema.enums["pixel_format"]

    def frames(self, camera: CameraStream, frame_numbers: np.ndarray, t_s: np.ndarray) -> list[tuple[dict, bytes]]:
        """(prefix fields, image) of each frame, captured at run times t_s."""
        if camera.coding == "gray8":
            render = self._slam if camera.label.startswith("slam") else self._eye
            pictures = render(camera, t_s)
            coding = {"codec": self._codecs.code("RAW"), "pixel_format": self._pixel_formats.code("GRAY8"),
                      "width": camera.width, "height": camera.height, "stride_bytes": camera.width}
        else:
            loop = video.frame_loop(camera, self.seed)
            pictures = [loop.frame(int(k)) for k in frame_numbers]
            # pixel_format means something for RAW frames only; other codecs send 0.
            pixel_format = self._pixel_formats.code(loop.pixel_format) if loop.pixel_format else 0
            coding = {"codec": self._codecs.code(loop.codec), "pixel_format": pixel_format, "width": loop.width,
                      "height": loop.height, "stride_bytes": loop.stride_bytes}
        exposure, gain, temperature = self._exposure(camera, t_s)
        camera_id = self._camera_ids.code(camera.label)
        return [({"camera_id": camera_id, **coding, "frame_number": int(k), "exposure_duration_s": float(e),
                  "gain": float(g), "temperature_c": float(c)}, picture)
                for k, e, g, c, picture in zip(frame_numbers, exposure, gain, temperature, pictures, strict=True)]

    def _slam(self, camera: CameraStream, t_s: np.ndarray) -> list[bytes]:
        world = images.panorama(self.seed)
        mount = rig.CAMERAS[camera.label]
        motion = self.walk.at(t_s)
        # Euler pitch tips the nose down; elevation is up.
        return [images.slam_image(world, yaw + mount.yaw, mount.elevation - pitch, camera.width, camera.height)
                for yaw, pitch in zip(motion.yaw, motion.pitch, strict=True)]

    def _eye(self, camera: CameraStream, t_s: np.ndarray) -> list[bytes]:
        gaze = self.gaze.at(t_s)
        side = "left" if camera.label.endswith("left") else "right"
        # Converging on a near point turns each eye towards the nose.
        yaw = gaze["yaw"] + (-0.5 if side == "left" else 0.5) * gaze["vergence_rad"]
        return [images.eye_image(y, p, side, camera.width, camera.height) for y, p in zip(yaw, gaze["pitch"], strict=True)]

    def _exposure(self, camera: CameraStream, t_s: np.ndarray):
        slow = np.sin(2 * np.pi * t_s / 20.0 + self.phase)  # light changes as the wearer walks about
        warm = np.sin(2 * np.pi * t_s / 600.0 + self.phase)
        if camera.label.startswith("slam"):
            return 0.0035 + 0.0015 * slow, 1.5 + 0.5 * slow, 42.0 + 1.5 * warm
        if camera.label.startswith("camera-et"):
            return np.full(len(t_s), 0.001), np.full(len(t_s), 2.0), 38.0 + 1.0 * warm
        return 0.008 + 0.003 * slow, 1.5 + 0.3 * slow, 44.0 + 1.5 * warm
