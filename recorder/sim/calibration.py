"""The `oatmeal-calibration` header: factory calibration in the Aria JSON layout, on one line.

Keys and shapes follow what the vendor's tools read (CameraCalibrations with a
FisheyeRadTanThinPrism projection and T_Device_Camera, ImuCalibrations with rectification
matrices and biases, MagCalibrations, BaroCalibrations, MicCalibrations, DeviceClassInfo,
OriginSpecification, SerialNumber). The temperature and frequency-response tables are our
additions, in the spirit of a factory calibration; parsers ignore keys they do not know, and they
bring the header to the tens of kilobytes that real ones are. Biases agree with the sensors the
simulator models (up to calibration error), extrinsics with rig.py; each device differs slightly.
"""

from __future__ import annotations

import json

import numpy as np

from . import noise, rig, rotations
from .profiles import CameraStream, Profile

# Camera frame (x right, y down, z along the optical axis) in the device frame (x forward, y
# left, z up), for a camera looking straight ahead.
_CAMERA_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
TABLE_TEMPERATURES_C = np.linspace(-10.0, 70.0, 33)
RESPONSE_FREQUENCIES_HZ = np.geomspace(50.0, 8000.0, 48)


def _pose(translation, rotation: np.ndarray) -> dict:
    w, x, y, z = (float(v) for v in (rotation if rotation[0] >= 0 else -rotation))
    return {"Translation": [float(v) for v in translation], "UnitQuaternion": [w, [x, y, z]]}


def _floats(values) -> list:
    return np.asarray(values, np.float64).tolist()


class _Factory:
    """One device's calibration: nominal values plus this unit's small deviations."""

    def __init__(self, seed: int, index: int):
        self.rng = noise.rng(seed, index, "calibration")

    def jitter(self, value, scale: float):
        return np.asarray(value, np.float64) + self.rng.normal(0.0, scale, np.shape(value))

    def module_serial(self) -> str:
        return self.rng.bytes(8).hex()

    def camera(self, camera: CameraStream) -> dict:
        mount = rig.CAMERAS[camera.label]
        look = rotations.from_euler_zyx(mount.yaw, -mount.elevation, 0.0)
        rotation = rotations.multiply(look, rotations.from_matrix(_CAMERA_AXES))
        rotation = rotations.multiply(rotation, rotations.from_euler_zyx(*self.rng.normal(0, 0.003, 3)))
        w, h = camera.width, camera.height
        if camera.label.startswith("camera-et"):
            focal = [w * 1.1, w * 1.1]  # fx, fy: the eye-tracking model has two focal lengths
        elif camera.label.startswith("slam"):
            focal = [w * 0.637]  # the rendered views: 512 px across 90 degrees
        else:
            focal = [w * 0.48]  # about 110 degrees across
        distortion = [0.4, -0.45, -0.1, 1.2, -1.6, 0.6, 1e-4, -2e-4, 5e-4, -1e-4, 2e-4, 1e-4]
        params = np.concatenate([self.jitter(focal, focal[0] * 0.002), self.jitter([w / 2, h / 2], 1.5),
                                 self.jitter(distortion, np.r_[np.full(6, 0.01), np.full(6, 1e-4)])])
        return {
            "Calibrated": True,
            "Label": camera.label,
            "SerialNumber": self.module_serial(),
            "Projection": {"Description": "see FisheyeRadTanThinPrism.h", "Name": "FisheyeRadTanThinPrism",
                           "Params": _floats(params)},
            "T_Device_Camera": _pose(self.jitter(mount.position_m, 2e-4), rotation),
            "TimeOffsetSec_Device_Camera": float(self.rng.normal(0, 2e-5)),
            "ImageSize": {"Width": w, "Height": h},
            "ValidRadius": float(max(w, h) * 0.62),
        }

    def _temperature_table(self, bias) -> dict:
        """Bias against temperature: a gentle slope and curve around the 25 degC calibration."""
        dt = (TABLE_TEMPERATURES_C - 25.0)[:, None]
        scale = np.abs(np.asarray(bias)) + 1e-3
        offsets = bias + dt * self.rng.normal(0, 0.004, 3) * scale + dt ** 2 * self.rng.normal(0, 1e-4, 3) * scale
        return {"Name": "Table", "TemperaturesC": _floats(TABLE_TEMPERATURES_C), "Offsets": _floats(offsets)}

    def _rectified(self, bias, kind: str, extra: dict | None = None) -> dict:
        matrix = self.jitter(np.eye(3), 0.004)
        model = {"Name": "Linear", "RectificationMatrix": _floats(matrix)}
        if extra:
            model.update(extra)
        return {
            "Bias": {"Name": "Constant", "Offset": _floats(bias)},
            "Model": model,
            f"TimeOffsetSec_Device_{kind}": float(self.rng.normal(0, 1e-5)),
            "TemperatureModel": self._temperature_table(bias),
        }

    def imu(self, label: str, accel_bias, gyro_bias) -> dict:
        rotation = np.array([1.0, 0, 0, 0]) if label == "imu-left" else rotations.from_euler_zyx(*self.rng.normal(0, 0.002, 3))
        translation = rig.IMUS[label] if label == "imu-left" else self.jitter(rig.IMUS[label], 2e-4)
        return {
            "Calibrated": True,
            "Label": label,
            "SerialNumber": self.module_serial(),
            # The factory's estimate of the sensor's bias is close to, not exactly, the truth.
            "Accelerometer": self._rectified(self.jitter(accel_bias, 0.002), "Accel"),
            "Gyroscope": self._rectified(self.jitter(gyro_bias, 1e-4), "Gyro",
                                         {"Name": "LinearGSensitivity", "GSensitivityMatrix": _floats(self.jitter(np.zeros((3, 3)), 1e-4))}),
            "T_Device_Imu": _pose(translation, rotation),
        }

    def magnetometer(self, hard_iron_t) -> dict:
        return {
            "Label": "mag0",
            "SerialNumber": self.module_serial(),
            "Model": {"Name": "Linear", "RectificationMatrix": _floats(self.jitter(np.eye(3), 0.01))},
            "Bias": {"Name": "Constant", "Offset": _floats(self.jitter(np.asarray(hard_iron_t) * 1e6, 0.1))},  # uT
            "T_Device_Mag": _pose(rig.MAGNETOMETER, np.array([1.0, 0, 0, 0])),
        }

    def barometer(self) -> dict:
        return {
            "Label": "baro0",
            "SerialNumber": self.module_serial(),
            "PressureModel": {"Name": "Linear", "OffsetPa": float(self.rng.normal(0, 80)),
                              "Slope": float(self.jitter(1.0, 5e-4))},
            "T_Device_Baro": _pose(rig.BAROMETER, np.array([1.0, 0, 0, 0])),
        }

    def microphone(self, number: int) -> dict:
        response = self.rng.normal(0, 0.4, len(RESPONSE_FREQUENCIES_HZ)).cumsum() * 0.3
        return {
            "Label": f"mic{number}",
            "SerialNumber": self.module_serial(),
            "DSensitivity1KDbv": float(self.jitter(-26.0, 0.5)),
            "T_Device_Mic": _pose(rig.MICROPHONES[number], np.array([1.0, 0, 0, 0])),
            "FrequencyResponse": {"FrequenciesHz": _floats(RESPONSE_FREQUENCIES_HZ), "GainDb": _floats(response)},
        }


def calibration(profile: Profile, *, seed: int, index: int, serial: str, build: str,
                accel_bias, gyro_bias, hard_iron_t) -> dict:
    """The calibration of device `index`: its cameras are the profile's, its IMU biases the
    simulated sensors' (accel_bias and gyro_bias have one row per IMU, imu-left first)."""
    factory = _Factory(seed, index)
    return {
        "CalibrationSource": "Factory",
        "CameraCalibrations": [factory.camera(camera) for camera in profile.cameras],
        "ImuCalibrations": [factory.imu(label, accel_bias[i], gyro_bias[i])
                            for i, label in enumerate(("imu-left", "imu-right"))],
        "MagCalibrations": [factory.magnetometer(hard_iron_t)],
        "BaroCalibrations": [factory.barometer()],
        "MicCalibrations": [factory.microphone(n) for n in range(len(rig.MICROPHONES))],
        "DeviceClassInfo": {"BuildVersion": build, "DeviceClass": "Aria Gen2"},
        "OriginSpecification": {"ChildLabel": "imu-left", "Type": "Custom",
                                "Description": "the device frame is the left IMU's: x forward, y left, z up"},
        "SerialNumber": serial,
    }


def header_value(calibration_dict: dict) -> str:
    """One line of JSON, as the header carries it."""
    return json.dumps(calibration_dict, separators=(",", ":"))
