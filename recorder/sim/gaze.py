"""Eye gaze: fixations joined by saccades, with slow pursuit drift; a function of time alone, so
the eye-tracking camera images and the gaze results agree."""

from __future__ import annotations

import numpy as np

from . import noise

SACCADE_S = 0.04
MIN_DEPTH_M, MAX_DEPTH_M = 0.4, 3.0


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class Gaze:
    def __init__(self, seed: int, index: int):
        rng = noise.rng(seed, index, "gaze")
        self.fixation_s = rng.uniform(0.3, 0.6)
        self.ipd_m = rng.uniform(0.058, 0.070)
        self.drift_hz = rng.uniform(0.2, 0.5)
        self.drift_phase = rng.uniform(0, 2 * np.pi, 2)
        self._key = noise.key(seed, index, "gaze", "fixations")

    def _fixation(self, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Where fixation `slot` looks: yaw, pitch, depth and how sure the tracker is."""
        u = noise.uniform(self._key, slot, 4)
        yaw = (u[:, 0] - 0.5) * 0.7
        pitch = -0.3 + u[:, 1] * 0.45
        depth = MIN_DEPTH_M * (MAX_DEPTH_M / MIN_DEPTH_M) ** u[:, 2]
        return yaw, pitch, depth, 0.015 + 0.015 * u[:, 3]

    def at(self, t_s: np.ndarray) -> dict[str, np.ndarray]:
        """yaw, pitch (rad, device frame: yaw left, pitch up), depth_m, vergence_rad, sigma_rad."""
        t = np.asarray(t_s, np.float64)
        slot = np.floor(t / self.fixation_s).astype(np.int64)
        before = self._fixation(slot - 1)
        after = self._fixation(slot)
        step = _smoothstep((t - slot * self.fixation_s) / SACCADE_S)
        yaw, pitch, depth, sigma = (b + (a - b) * step for b, a in zip(before, after, strict=True))
        drift = 0.015 * np.sin(2 * np.pi * self.drift_hz * t[:, None] + self.drift_phase)
        return {
            "yaw": yaw + drift[:, 0],
            "pitch": pitch + drift[:, 1],
            "depth_m": depth,
            "vergence_rad": 2 * np.arctan(self.ipd_m / 2 / depth),
            "sigma_rad": sigma,
        }
