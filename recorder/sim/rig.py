"""Where the sensors sit on the glasses (device frame: x forward, y left, z up; origin at the
left IMU). The calibration's extrinsics and the rendered SLAM views both come from here."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Mount:
    position_m: tuple[float, float, float]
    yaw: float  # rad, where the sensor looks: left of the device's x axis
    elevation: float  # rad, up from the device's x-y plane


CAMERAS = {
    "slam-front-left": Mount((0.012, -0.005, 0.008), 0.35, -0.15),
    "slam-front-right": Mount((0.012, -0.135, 0.008), -0.35, -0.15),
    "slam-side-left": Mount((-0.02, 0.008, 0.004), 1.2, -0.3),
    "slam-side-right": Mount((-0.02, -0.148, 0.004), -1.2, -0.3),
    "camera-rgb": Mount((0.014, 0.0, 0.012), 0.0, -0.2),
    # The eye-tracking cameras sit low on the frame and look back and up at the eyes.
    "camera-et-left": Mount((0.005, -0.045, -0.022), math.pi, 0.5),
    "camera-et-right": Mount((0.005, -0.09, -0.022), math.pi, 0.5),
}

IMUS = {"imu-left": (0.0, 0.0, 0.0), "imu-right": (0.0, -0.14, 0.0)}
MAGNETOMETER = (-0.03, -0.01, 0.004)
BAROMETER = (-0.035, -0.13, 0.006)
# Seven microphones around the frame and one contact microphone at the nose pad.
MICROPHONES = (
    (0.01, 0.005, 0.015), (0.01, -0.145, 0.015), (-0.06, 0.01, 0.0), (-0.06, -0.15, 0.0),
    (0.015, -0.07, 0.02), (-0.1, 0.012, -0.005), (-0.1, -0.152, -0.005), (0.0, -0.07, -0.025),
)
