"""Two hands in front of the device: 21 landmarks each (MediaPipe order: wrist, then thumb,
index, middle, ring and pinky from base to tip), moving and opening and closing; now and then a
hand leaves the view and is not tracked."""

from __future__ import annotations

import numpy as np

from . import noise, rotations

TRACKING_SLOT_S = 1.5
UNTRACKED_CHANCE = 0.2

# Right hand, palm down, in the hand frame: x from the wrist towards the fingers, y towards the
# thumb, z out of the back of the hand (m). The left hand is its mirror image in y.
_FINGER_BASES = np.array([[0.020, 0.025, 0.0], [0.090, 0.025, 0.0], [0.095, 0.003, 0.0],
                          [0.088, -0.017, 0.0], [0.078, -0.035, 0.0]])
_FINGER_ANGLES = np.array([0.8, 0.08, 0.0, -0.08, -0.16])  # rad from x, towards y
_SEGMENTS = np.array([[0.040, 0.032, 0.027], [0.045, 0.027, 0.022], [0.049, 0.029, 0.024],
                      [0.045, 0.027, 0.022], [0.036, 0.022, 0.019]])
_JOINT_GAIN = np.array([1.0, 1.2, 0.8])  # how much each joint bends as the hand closes


def _landmarks(curl: np.ndarray, mirror: float) -> np.ndarray:
    """(n, 21, 3) landmarks in the hand frame for closing amounts `curl` (rad per joint)."""
    bend = np.cumsum(np.multiply.outer(curl, _JOINT_GAIN), axis=-1)  # (n, 3)
    direction = np.stack([np.cos(_FINGER_ANGLES), np.sin(_FINGER_ANGLES) * mirror], axis=-1)  # (5, 2)
    # Each segment points along the finger, bent down towards the palm (-z) by its joint angles.
    cos_b, sin_b = np.cos(bend)[:, None, :], np.sin(bend)[:, None, :]  # (n, 1, 3)
    steps = np.stack([cos_b * direction[None, :, None, 0], cos_b * direction[None, :, None, 1],
                      -sin_b * np.ones((1, 5, 1))], axis=-1) * _SEGMENTS[None, :, :, None]  # (n, 5, 3, 3)
    bases = _FINGER_BASES * np.array([1.0, mirror, 1.0])
    joints = bases[None, :, None, :] + np.cumsum(steps, axis=2)  # (n, 5, 3, 3)
    fingers = np.concatenate([np.broadcast_to(bases[None, :, None, :], joints[:, :, :1].shape), joints], axis=2)
    wrist = np.zeros((len(curl), 1, 3))
    return np.concatenate([wrist, fingers.reshape(len(curl), 20, 3)], axis=1)


class Hand:
    def __init__(self, seed: int, index: int, side: str):
        rng = noise.rng(seed, index, "hand", side)
        self.side = side
        self.mirror = 1.0 if side == "right" else -1.0
        self.scale = rng.uniform(0.9, 1.1)
        self.home = np.array([0.35, -0.15 * self.mirror, -0.25])
        self.home_attitude = np.array([0.3 * self.mirror, -0.2, -0.5 * self.mirror])  # yaw, pitch, roll
        self.sway_hz = rng.uniform(0.2, 0.6, 3)
        self.turn_hz = rng.uniform(0.15, 0.4, 3)
        self.curl_hz = rng.uniform(0.2, 0.5)
        self.phases = rng.uniform(0, 2 * np.pi, 7)
        self._key = noise.key(seed, index, "hand", side, "tracking")

    def at(self, t_s: np.ndarray) -> dict[str, np.ndarray]:
        t = np.asarray(t_s, np.float64)[:, None]
        wrist = self.home + 0.06 * np.sin(2 * np.pi * self.sway_hz * t + self.phases[:3])
        attitude = self.home_attitude + 0.2 * np.sin(2 * np.pi * self.turn_hz * t + self.phases[3:6])
        rotation = rotations.from_euler_zyx(attitude[:, 0], attitude[:, 1], attitude[:, 2])
        curl = 0.3 + 0.25 * (1 + np.sin(2 * np.pi * self.curl_hz * t[:, 0] + self.phases[6]))
        local = _landmarks(curl, self.mirror) * self.scale
        landmarks = rotations.rotate(rotation[:, None, :], local) + wrist[:, None, :]
        down = np.array([0.0, 0.0, -1.0])
        palm_tilt = curl / 3  # the palm faces the fingers a little as they close
        palm = np.stack([np.sin(palm_tilt), np.zeros_like(curl), -np.cos(palm_tilt)], axis=-1)
        values = {
            "confidence": 0.85 + 0.1 * np.sin(2 * np.pi * 0.1 * t[:, 0] + self.phases[0]),
            "wrist_translation_m": wrist,
            "wrist_rotation": rotation,
            "wrist_normal": rotations.rotate(rotation, np.broadcast_to(down, wrist.shape)),
            "palm_normal": rotations.rotate(rotation, palm),
            "landmarks_m": landmarks.reshape(len(t), 63),
        }
        slot = np.floor(t[:, 0] / TRACKING_SLOT_S).astype(np.int64)
        lost = noise.uniform(self._key, slot)[:, 0] < UNTRACKED_CHANCE
        for value in values.values():
            value[lost] = np.nan
        values["confidence"][lost] = -1.0
        return values
