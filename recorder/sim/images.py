"""Camera images: the SLAM cameras' view of a textured world, and the eye-tracking cameras' eyes.

The world is one panorama per seed (every device of a fleet is in the same place): procedural
texture with rectangles on it (doors, posters, windows), so that image features exist. A SLAM
camera sees the part of it that it points at (the device's attitude plus the camera's mount), so
the images pan as the head turns. Roll and translation (parallax) are not rendered.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from . import noise

PANORAMA_WIDTH = 2048  # 360 degrees
PANORAMA_HEIGHT = 1536
PIXELS_PER_RAD = PANORAMA_WIDTH / (2 * np.pi)  # a 512-pixel SLAM image spans 90 degrees


def value_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Smooth noise in [0, 1): random values on a grid of `cell` pixels, interpolated bilinearly;
    it wraps around horizontally when width is a multiple of cell."""
    columns = -(-width // cell)
    grid = rng.random((height // cell + 2, columns), dtype=np.float32)
    y = np.arange(height, dtype=np.float32) / cell
    x = np.arange(width, dtype=np.float32) / cell
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    rows = grid[y0] * (1 - fy) + grid[y0 + 1] * fy  # (height, columns)
    return rows[:, x0] * (1 - fx) + rows[:, (x0 + 1) % columns] * fx


def scene_texture(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Grey-level texture (uint8) that wraps horizontally; `scale` multiplies feature sizes."""
    def octaves(*cells_and_weights):
        return sum(value_noise(rng, height, width, max(1, int(cell * scale))) * weight
                   for cell, weight in cells_and_weights)

    image = octaves((256, 0.5), (64, 0.25)) + np.linspace(0.1, -0.2, height, dtype=np.float32)[:, None]
    for _ in range(int(150 * width / PANORAMA_WIDTH / scale)):  # flat things: doors, posters, windows
        h, w = (rng.integers(20, 160, 2) * scale).astype(int)
        top, left = rng.integers(0, height - h), rng.integers(0, width)
        image[top:top + h, np.arange(left, left + w) % width] = rng.uniform(0.0, 0.75)
    image += octaves((16, 0.15), (4, 0.1))  # surface grain, on the flat things too
    return (np.clip(image, 0, 1) * 215 + 20).astype(np.uint8)


_lock = threading.Lock()


@functools.cache
def _panorama(seed: int) -> np.ndarray:
    texture = scene_texture(noise.rng(seed, "world"), PANORAMA_HEIGHT, PANORAMA_WIDTH, 1.0)
    return np.ascontiguousarray(np.concatenate([texture, texture[:, :512]], axis=1))  # slices never wrap


def panorama(seed: int) -> np.ndarray:
    with _lock:  # devices may be driven from threads; build each world once
        return _panorama(seed)


def slam_image(world: np.ndarray, yaw: float, elevation: float, width: int, height: int) -> bytes:
    """GRAY8 image (stride = width) of the world looking towards yaw (left) and elevation (up), rad."""
    center_column = int(round(-yaw * PIXELS_PER_RAD)) % PANORAMA_WIDTH
    left = (center_column - width // 2) % PANORAMA_WIDTH
    top = int(round(PANORAMA_HEIGHT / 2 - elevation * PIXELS_PER_RAD)) - height // 2
    top = min(max(top, 0), PANORAMA_HEIGHT - height)
    return world[top:top + height, left:left + width].tobytes()


@functools.cache
def _eye_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return x, y


def eye_image(yaw: float, pitch: float, side: str, width: int = 200, height: int = 200) -> bytes:
    """GRAY8 infrared close-up of one eye looking at yaw/pitch (rad, the eye's own). The camera
    faces the wearer, so looking left moves the pupil to the image's right."""
    x, y = _eye_grid(width, height)
    cx, cy = width / 2, height * 0.52
    mirror = 1.0 if side == "left" else -1.0
    # The skin, darker towards the nose.
    image = 120 + 25 * mirror * (x - cx) / width - 15 * (y - cy) / height
    opening = ((x - cx) / (width * 0.4)) ** 2 + ((y - cy) / (height * 0.22)) ** 2 < 1
    image = np.where(opening, 205.0, image)  # sclera
    pixels_per_rad = width * 0.4
    px, py = cx + pixels_per_rad * np.sin(yaw), cy - pixels_per_rad * np.sin(pitch)
    r2 = (x - px) ** 2 + (y - py) ** 2
    iris_r, pupil_r = width * 0.16, width * 0.065
    image = np.where(opening & (r2 < iris_r ** 2), 85 + 10 * np.cos(np.sqrt(r2) * 0.8), image)
    image = np.where(opening & (r2 < pupil_r ** 2), 15.0, image)
    for angle in np.arange(4) * np.pi / 2 + np.pi / 4:  # reflections of the four IR LEDs
        gx, gy = px + 0.6 * iris_r * np.cos(angle), py + 0.6 * iris_r * np.sin(angle)
        image = np.where((x - gx) ** 2 + (y - gy) ** 2 < 4.0, 255.0, image)
    return image.astype(np.uint8).tobytes()
