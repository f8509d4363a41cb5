"""A rigid transform (SE(3)): what VIO poses and hand wrists are given as.

The vendor hands out Sophus `SE3d` objects; ours is a small plain type holding exactly the
stored values: `translation` (x, y, z, metres) and `quaternion` (w, x, y, z, as the wire format
orders it), with `matrix` (4 x 4, float64) computed from them. `transform_a_b` maps points in
frame b to frame a: p_a = R p_b + t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class SE3:
    translation: np.ndarray  # (3,) as stored (float64 for VIO, float32 for hand wrists)
    quaternion: np.ndarray  # (4,) w, x, y, z as stored

    @property
    def rotation_matrix(self) -> np.ndarray:
        """3 x 3 rotation of the unit quaternion (normalised first: stored values are f32/f64)."""
        w, x, y, z = np.asarray(self.quaternion, np.float64) / np.linalg.norm(self.quaternion)
        return np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ])

    @property
    def matrix(self) -> np.ndarray:
        """4 x 4 homogeneous matrix [R t; 0 1]."""
        m = np.eye(4)
        m[:3, :3] = self.rotation_matrix
        m[:3, 3] = self.translation
        return m

    def to_matrix(self) -> np.ndarray:
        """The vendor's (Sophus) name for `matrix`."""
        return self.matrix

    def apply(self, points) -> np.ndarray:
        """Points (..., 3) of frame b in frame a."""
        return np.asarray(points, np.float64) @ self.rotation_matrix.T + np.asarray(self.translation, np.float64)

    def __repr__(self) -> str:
        return f"SE3(translation={np.asarray(self.translation).tolist()}, quaternion={np.asarray(self.quaternion).tolist()})"
