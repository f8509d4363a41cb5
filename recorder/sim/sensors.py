"""The sample messages of one device, as numpy structured arrays in the schema's layouts.

Every sensor reads the same trajectory (motion.Walk), so the IMU, magnetometer, barometer and
VIO agree with each other. Noise is addressed by sample number (see noise.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schema import Schema, load
from ..wire.encoder import as_samples
from . import noise, rotations
from .batching import capture_ns
from .clock import DeviceClock
from .gaze import Gaze
from .hands import Hand
from .motion import GRAVITY, Walk
from .profiles import SampleStream

SEA_LEVEL_PA = 101325.0
TDM_JITTER_NS = 50_000  # the broadcaster's time reaches a receiver within +-50 us


def pressure_at(altitude_m: np.ndarray) -> np.ndarray:
    """International standard atmosphere."""
    return SEA_LEVEL_PA * (1 - 2.25577e-5 * altitude_m) ** 5.25588


@dataclass(frozen=True)
class Instants:
    """When the samples of one stream were captured."""

    index: np.ndarray  # sample numbers since the run's start
    run_ns: np.ndarray  # run time
    device_ns: np.ndarray  # the device's clock: every timestamp on the wire

    @property
    def seconds(self) -> np.ndarray:
        return self.run_ns * 1e-9


@dataclass(frozen=True)
class Site:
    """Where the whole fleet is: shared air pressure and magnetic field."""

    altitude_m: float
    weather_pa: float  # today's pressure above or below the standard atmosphere
    field_t: float  # Earth's magnetic flux density
    inclination: float  # rad below the horizon

    @classmethod
    def for_seed(cls, seed: int) -> Site:
        rng = noise.rng(seed, "site")
        return cls(rng.uniform(0, 400), rng.uniform(-1500, 1500), rng.uniform(45e-6, 55e-6), rng.uniform(0.95, 1.2))


class Signals:
    """One device's sample messages: `samples(stream, index)` for any sample numbers."""

    def __init__(self, seed: int, index: int, clock: DeviceClock, *, broadcaster: DeviceClock | None,
                 broadcaster_id: int, schema: Schema | None = None):
        self.schema = schema or load()
        self.clock = clock
        self.broadcaster = broadcaster
        self.broadcaster_id = broadcaster_id
        self.walk = Walk.for_device(seed, index)
        self.gaze = Gaze(seed, index)
        self.hands = (Hand(seed, index, "left"), Hand(seed, index, "right"))
        self.site = Site.for_seed(seed)
        rng = noise.rng(seed, index, "sensors")
        self.accel_bias = rng.normal(0, 0.03, (2, 3))  # m/s^2, per IMU
        self.gyro_bias = rng.normal(0, 0.0015, (2, 3))  # rad/s, per IMU
        # The odometry frame's x axis points wherever the device faced at start: north is anywhere.
        north = rng.uniform(0, 2 * np.pi)
        self.magnetic_field = self.site.field_t * np.array([np.cos(self.site.inclination) * np.cos(north),
                                                            np.cos(self.site.inclination) * np.sin(north),
                                                            -np.sin(self.site.inclination)])
        self.hard_iron = rng.normal(0, 3e-6, 3)
        self.heart_hz = rng.uniform(1.05, 1.3)  # 63 to 78 bpm
        self.battery_start = rng.uniform(40, 100)
        self.battery_drain_per_s = rng.uniform(10, 15) / 3600
        self.phases = rng.uniform(0, 2 * np.pi, 8)
        self._seed, self._index = seed, index
        self._generators = {
            "IMU_EVENT": self._imu, "MAG": self._mag, "BARO": self._baro, "TEMP": self._temperature,
            "PPG": self._ppg, "BATTERY_STATUS": self._battery, "TIME_DOMAIN_MAPPING_EVENT": self._tdm,
            "MP_ET_RESULT": self._eye_gaze, "MP_HT_RESULT": self._hands, "MP_VIO_RESULT": self._vio,
            "MP_VIO_HIGH_FREQUENCY_POSE": self._vio_high_frequency,
        }

    def instants(self, index: np.ndarray, rate_hz: int) -> Instants:
        run_ns = capture_ns(index, rate_hz)
        return Instants(index, run_ns, self.clock.at_ns(run_ns))

    def samples(self, stream: SampleStream, index: np.ndarray) -> np.ndarray:
        """Samples number `index` of `stream`, in the message's packed dtype."""
        spec = self.schema.message(stream.message)
        columns = self._generators[stream.message](stream, self.instants(index, stream.rate_hz))
        return as_samples(spec, columns)

    def _noise(self, stream: SampleStream, at: Instants, what: str, width: int) -> np.ndarray:
        return noise.gaussian(noise.key(self._seed, self._index, stream.message, stream.source, what), at.index, width)

    def _slow(self, t: np.ndarray, phase: int, period_s: float = 600.0) -> np.ndarray:
        """A slow wander in [-1, 1], for temperatures and qualities."""
        return np.sin(2 * np.pi * t / period_s + self.phases[phase])

    # -- inertial and environment sensors --------------------------------------------------------

    def _imu(self, stream: SampleStream, at: Instants) -> dict:
        motion = self.walk.at(at.seconds)
        imu = stream.source
        return {
            "timestamp_ns": at.device_ns,
            "accel_msec2": motion.specific_force + self.accel_bias[imu] + 0.02 * self._noise(stream, at, "accel", 3),
            "gyro_radsec": motion.angular_velocity + self.gyro_bias[imu] + 0.002 * self._noise(stream, at, "gyro", 3),
            "temperature_c": 38.0 + 1.5 * self._slow(at.seconds, imu) + 0.02 * self._noise(stream, at, "temp", 1)[:, 0],
        }

    def _mag(self, stream: SampleStream, at: Instants) -> dict:
        motion = self.walk.at(at.seconds)
        field = rotations.rotate_inverse(motion.rotation, np.broadcast_to(self.magnetic_field, motion.position.shape))
        return {
            "timestamp_ns": at.device_ns,
            "mag_tesla": field + self.hard_iron + 0.2e-6 * self._noise(stream, at, "field", 3),
            "temperature_c": 36.0 + 1.0 * self._slow(at.seconds, 2),
        }

    def _baro(self, stream: SampleStream, at: Instants) -> dict:
        head_height_m = 1.6
        altitude = self.site.altitude_m + head_height_m + self.walk.at(at.seconds).position[:, 2]
        return {
            "timestamp_ns": at.device_ns,
            "pressure_pa": pressure_at(altitude) + self.site.weather_pa + 1.5 * self._noise(stream, at, "pressure", 1)[:, 0],
            "temperature_c": 34.5 + 1.0 * self._slow(at.seconds, 3),
        }

    def _temperature(self, stream: SampleStream, at: Instants) -> dict:
        typical_c = (41.0, 33.0, 35.0)[stream.source % 3]  # SoC, battery, front frame
        return {
            "timestamp_ns": at.device_ns,
            "temperature_c": typical_c + 1.5 * self._slow(at.seconds, 4 + stream.source % 3)
            + 0.05 * self._noise(stream, at, "temp", 1)[:, 0],
        }

    def _ppg(self, stream: SampleStream, at: Instants) -> dict:
        t = at.seconds
        # Heart rate varies a little with breathing (0.25 Hz): the phase is its closed-form integral.
        breath_hz, variation_hz = 0.25, 0.05
        beats = self.heart_hz * t - variation_hz / (2 * np.pi * breath_hz) * np.cos(2 * np.pi * breath_hz * t)
        phase = beats % 1.0
        # A systolic peak and a smaller dicrotic wave after it.
        pulse = np.exp(-((phase - 0.15) / 0.07) ** 2) + 0.35 * np.exp(-((phase - 0.45) / 0.1) ** 2)
        breathing = np.sin(2 * np.pi * breath_hz * t)
        return {
            "timestamp_ns": at.device_ns,
            "value": 100_000 + 2500 * pulse - 800 * breathing + 40 * self._noise(stream, at, "value", 1)[:, 0],
            "led_current_ma": np.full(len(t), 12.5),
            "integration_time_us": np.full(len(t), 117.0),
        }

    def _battery(self, stream: SampleStream, at: Instants) -> dict:
        level = np.clip(self.battery_start - self.battery_drain_per_s * at.seconds, 1, 100)
        return {
            "timestamp_ns": at.device_ns,
            "voltage_v": 3.45 + 0.0075 * level + 0.003 * self._noise(stream, at, "voltage", 1)[:, 0],
            "level_percent": np.rint(level).astype(np.uint8),
            "charging": np.zeros(len(level), np.uint8),
        }

    def _tdm(self, stream: SampleStream, at: Instants) -> dict:
        if self.broadcaster is None:
            raise ValueError("the broadcaster reports no time domain mapping")
        key = noise.key(self._seed, self._index, stream.message, "jitter")
        jitter = np.rint((noise.uniform(key, at.index)[:, 0] * 2 - 1) * TDM_JITTER_NS).astype(np.int64)
        return {
            "capture_timestamp_ns": at.device_ns,
            "broadcaster_timestamp_ns": self.broadcaster.at_ns(at.run_ns) + jitter,
            "broadcaster_id": np.full(len(jitter), self.broadcaster_id, np.uint32),
        }

    # -- machine perception ------------------------------------------------------------------------

    def _eye_gaze(self, stream: SampleStream, at: Instants) -> dict:
        gaze = self.gaze.at(at.seconds)
        sigma_yaw, sigma_pitch = gaze["sigma_rad"], 1.3 * gaze["sigma_rad"]
        return {
            "timestamp_ns": at.device_ns,
            "yaw_rad": gaze["yaw"], "pitch_rad": gaze["pitch"], "depth_m": gaze["depth_m"],
            "yaw_low_rad": gaze["yaw"] - sigma_yaw, "yaw_high_rad": gaze["yaw"] + sigma_yaw,
            "pitch_low_rad": gaze["pitch"] - sigma_pitch, "pitch_high_rad": gaze["pitch"] + sigma_pitch,
            "vergence_rad": gaze["vergence_rad"],
            "valid": np.full(len(at.index), 0b11, np.uint32),  # gaze and depth
        }

    def _hands(self, stream: SampleStream, at: Instants) -> dict:
        columns = {"timestamp_ns": at.device_ns}
        for hand in self.hands:
            for name, value in hand.at(at.seconds).items():
                columns[f"{hand.side}_{name}"] = value
        return columns

    def _pose(self, at: Instants) -> dict:
        motion = self.walk.at(at.seconds)
        return {
            "timestamp_ns": at.device_ns,
            "translation_m": motion.position,
            "rotation": motion.rotation,
            "linear_velocity_mps": motion.velocity,
            "angular_velocity_radps": motion.angular_velocity,
            "gravity_msec2": np.broadcast_to(GRAVITY, motion.position.shape),
        }

    def _vio(self, stream: SampleStream, at: Instants) -> dict:
        columns = self._pose(at)
        columns["visual_tracking_quality"] = 0.85 + 0.1 * self._slow(at.seconds, 7, period_s=30.0)
        return columns  # status VALID and pose_quality GOOD are 0

    def _vio_high_frequency(self, stream: SampleStream, at: Instants) -> dict:
        columns = self._pose(at)
        columns["quality_score"] = 0.9 + 0.05 * self._slow(at.seconds, 7, period_s=30.0)
        return columns
