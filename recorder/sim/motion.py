"""One smooth, walking-like trajectory per device, and everything derived from it.

Frames: the odometry frame has z up (gravity is (0, 0, -9.81)) and its origin where the device
was at the start of the run. The device frame is x forward, y left, z up; at yaw = pitch =
roll = 0 it is aligned with the odometry frame. T_odometry_device = Rz(yaw) Ry(pitch) Rx(roll):
yaw turns left, and a positive pitch tips the nose down (x towards -z).

The path is an ellipse walked at about 1 m/s, bent by slow sinusoids, with a vertical bob at
the step frequency and slow changes of altitude (slopes, ramps). The head yaws along the walking
direction and looks around; pitch and roll sway. Everything is closed-form, so position,
velocity, acceleration, orientation and angular velocity agree exactly at any instant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import noise, rotations

GRAVITY = np.array([0.0, 0.0, -9.81])  # odometry frame


@dataclass(frozen=True)
class Sinusoids:
    """sum_i amplitude_i sin(2 pi frequency_i t + phase_i) and its first two derivatives."""

    amplitude: np.ndarray
    frequency_hz: np.ndarray
    phase: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, terms: list[tuple[tuple[float, float], tuple[float, float]]]):
        """One term per ((amplitude low, high), (frequency low, high)), random phases."""
        return cls(np.array([rng.uniform(*a) for a, _ in terms]),
                   np.array([rng.uniform(*f) for _, f in terms]),
                   rng.uniform(0, 2 * np.pi, len(terms)))

    def derivatives(self, t: np.ndarray):
        w = 2 * np.pi * self.frequency_hz
        angle = np.multiply.outer(t, w) + self.phase
        s, c = np.sin(angle), np.cos(angle)
        return s @ self.amplitude, c @ (self.amplitude * w), -(s @ (self.amplitude * w * w))


@dataclass(frozen=True)
class Motion:
    """The trajectory at some instants: odometry-frame kinematics and the device's attitude."""

    position: np.ndarray  # (n, 3) m
    velocity: np.ndarray  # (n, 3) m/s
    acceleration: np.ndarray  # (n, 3) m/s^2
    rotation: np.ndarray  # (n, 4) T_odometry_device, w x y z
    angular_velocity: np.ndarray  # (n, 3) rad/s, device frame
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray

    @property
    def specific_force(self) -> np.ndarray:
        """What an accelerometer at the device origin measures, device frame: R^T (a - g)."""
        return rotations.rotate_inverse(self.rotation, self.acceleration - GRAVITY)


def body_rates(yaw, pitch, roll, yaw_rate, pitch_rate, roll_rate) -> np.ndarray:
    """Angular velocity in the device frame from ZYX Euler angle rates."""
    sp, cp = np.sin(pitch), np.cos(pitch)
    sr, cr = np.sin(roll), np.cos(roll)
    return np.stack([roll_rate - yaw_rate * sp,
                     pitch_rate * cr + yaw_rate * cp * sr,
                     -pitch_rate * sr + yaw_rate * cp * cr], axis=-1)


class Walk:
    def __init__(self, rng: np.random.Generator):
        self.semi_major = rng.uniform(6.0, 10.0)
        self.semi_minor = self.semi_major * rng.uniform(0.55, 0.8)
        a, b = self.semi_major, self.semi_minor
        circumference = np.pi * (3 * (a + b) - np.sqrt((3 * a + b) * (a + 3 * b)))
        self.loop_rate = 2 * np.pi * rng.uniform(0.9, 1.3) / circumference  # rad/s around the ellipse
        self.loop_phase = rng.uniform(0, 2 * np.pi)
        self.tilt = rng.uniform(0, 2 * np.pi)  # the ellipse's orientation in the odometry frame
        # Bends of the path: slow enough that the walking speed never comes near zero, which
        # keeps the walking direction well defined.
        self.bend_x = Sinusoids.draw(rng, [((0.2, 0.6), (0.01, 0.03))] * 2)
        self.bend_y = Sinusoids.draw(rng, [((0.2, 0.6), (0.01, 0.03))] * 2)
        step_hz = rng.uniform(1.7, 2.0)
        self.height = Sinusoids.draw(rng, [((0.3, 0.8), (0.004, 0.01)), ((0.015, 0.025), (step_hz, step_hz))])
        self.look_yaw = Sinusoids.draw(rng, [((0.25, 0.45), (0.05, 0.12)), ((0.08, 0.15), (0.2, 0.35))])
        self.look_pitch = Sinusoids.draw(rng, [((0.08, 0.15), (0.06, 0.15)), ((0.01, 0.02), (step_hz, step_hz))])
        self.sway_roll = Sinusoids.draw(rng, [((0.02, 0.05), (0.07, 0.2)), ((0.01, 0.02), (step_hz / 2, step_hz / 2))])
        self.mean_pitch = rng.uniform(0.05, 0.2)  # people look slightly down while walking
        # VIO starts its odometry frame where the device starts; a start yaw within +-pi keeps
        # the quaternions' w positive at first (they stay continuous after).
        self._origin, self._yaw_turns = np.zeros(3), 0.0
        start = self.at(np.zeros(1))
        self._origin, self._yaw_turns = start.position[0], 2 * np.pi * np.round(start.yaw[0] / (2 * np.pi))

    @classmethod
    def for_device(cls, seed: int, index: int) -> Walk:
        return cls(noise.rng(seed, index, "walk"))

    def at(self, t_s: np.ndarray) -> Motion:
        t = np.asarray(t_s, np.float64)
        a, b, w = self.semi_major, self.semi_minor, self.loop_rate
        theta = w * t + self.loop_phase
        st, ct = np.sin(theta), np.cos(theta)
        c, s = np.cos(self.tilt), np.sin(self.tilt)
        ex, ey = a * ct, b * st  # ellipse, in its own axes
        evx, evy = -a * w * st, b * w * ct
        bx, bvx, bax = self.bend_x.derivatives(t)
        by, bvy, bay = self.bend_y.derivatives(t)
        z, vz, az = self.height.derivatives(t)
        x = c * ex - s * ey + bx
        y = s * ex + c * ey + by
        vx = c * evx - s * evy + bvx
        vy = s * evx + c * evy + bvy
        ax = -w * w * (c * ex - s * ey) + bax
        ay = -w * w * (s * ex + c * ey) + bay

        # Walking direction, unwrapped: the velocity never turns more than 90 degrees away from
        # the ellipse's own tangent direction u, so its angle from u is an atan2 without jumps.
        u_angle = self.tilt + theta + np.pi / 2
        ux, uy = np.cos(u_angle), np.sin(u_angle)
        heading = u_angle + np.arctan2(ux * vy - uy * vx, ux * vx + uy * vy)
        heading_rate = (vx * ay - vy * ax) / (vx * vx + vy * vy)

        look, look_rate, _ = self.look_yaw.derivatives(t)
        pitch, pitch_rate, _ = self.look_pitch.derivatives(t)
        roll, roll_rate, _ = self.sway_roll.derivatives(t)
        yaw, yaw_rate = heading + look - self._yaw_turns, heading_rate + look_rate
        pitch = pitch + self.mean_pitch
        return Motion(
            position=np.stack([x, y, z], axis=-1) - self._origin,
            velocity=np.stack([vx, vy, vz], axis=-1),
            acceleration=np.stack([ax, ay, az], axis=-1),
            rotation=rotations.from_euler_zyx(yaw, pitch, roll),
            angular_velocity=body_rates(yaw, pitch, roll, yaw_rate, pitch_rate, roll_rate),
            yaw=yaw, pitch=pitch, roll=roll,
        )
