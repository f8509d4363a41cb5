"""The objects callbacks receive, with the vendor SDK's class and attribute names.

Every value is the stored value (schemas/messages.md): arrays keep their stored dtype (float32
sensor vectors, float64 VIO translations), scalars are the stored numbers as Python numbers, so
`value == Session.table(...)` holds exactly. Where the recorder stores less than the vendor's
object holds, the attribute is there with a documented placeholder (see docs/sdk.md).
"""

from __future__ import annotations

import datetime
import enum
import json
import struct
from dataclasses import dataclass, field

import numpy as np

from .transforms import SE3

UNKNOWN_ARRIVAL_NS = -1  # the recorder does not store when the device's host received a frame


def tracking_timestamp(t_ns: int) -> datetime.timedelta:
    """The vendor's `tracking_timestamp`: a timedelta since the device's boot (microsecond
    resolution, as Python's timedelta; the exact nanoseconds are in capture_timestamp_ns)."""
    return datetime.timedelta(microseconds=t_ns // 1000)


class VioStatus(enum.IntEnum):
    VALID = 0
    FILTER_NOT_INITIALIZED = 1
    INVALID = 2


class TrackingQuality(enum.IntEnum):
    GOOD = 0
    BAD = 1
    UNKNOWN = 2


def enum_or_code(kind: type[enum.IntEnum], code: int):
    """A known code as the enum member, an unknown one as the number stored."""
    try:
        return kind(code)
    except ValueError:
        return code


# -- cameras ----------------------------------------------------------------------------------

@dataclass(slots=True)
class ImageData:
    """A camera frame's pixels: decoded (GRAY8 height x width, else height x width x 3 RGB), or,
    with image decoding off, a coded frame's bytes as a 1-D uint8 array (`encoded` is True)."""

    image: np.ndarray
    width: int
    height: int
    encoded: bool = False

    def to_numpy_array(self) -> np.ndarray:
        return self.image

    def get_width(self) -> int:
        return self.width

    def get_height(self) -> int:
        return self.height

    def is_valid(self) -> bool:
        return self.image.size > 0


@dataclass(slots=True)
class ImageDataRecord:
    camera_id: int  # 1/2/4/8 SLAM, 16/32 eye tracking, 64 RGB
    capture_timestamp_ns: int
    frame_number: int
    exposure_duration: float  # seconds
    gain: float
    temperature: float  # degC
    arrival_timestamp_ns: int = UNKNOWN_ARRIVAL_NS
    codec: int = 0  # camera_codec as stored (0 RAW, 1 JPEG, 2 H264, 3 H265)
    pixel_format: int = 0


# -- motion and environment -------------------------------------------------------------------

_NO_VECTOR = np.zeros(3, np.float32)
_NO_VECTOR.flags.writeable = False


@dataclass(slots=True)
class MotionData:
    """One IMU sample (accel and gyro valid) or one magnetometer sample (mag valid)."""

    capture_timestamp_ns: int
    temperature: float  # degC
    accel_msec2: np.ndarray = field(default_factory=lambda: _NO_VECTOR)  # read-only zeros when not valid
    gyro_radsec: np.ndarray = field(default_factory=lambda: _NO_VECTOR)  # read-only zeros when not valid
    mag_tesla: np.ndarray = field(default_factory=lambda: _NO_VECTOR)  # read-only zeros when not valid
    accel_valid: bool = False
    gyro_valid: bool = False
    mag_valid: bool = False
    arrival_timestamp_ns: int = UNKNOWN_ARRIVAL_NS


@dataclass(slots=True)
class BarometerData:
    capture_timestamp_ns: int
    pressure: float  # Pa
    temperature: float  # degC


@dataclass(slots=True)
class TemperatureData:
    """No vendor callback: the recorder's own, in the same style."""

    capture_timestamp_ns: int
    temperature: float  # degC
    sensor: str  # the source label, e.g. "temperature0"


@dataclass(slots=True)
class BatteryData:
    """No vendor callback: the recorder's own, in the same style."""

    capture_timestamp_ns: int
    voltage: float  # V
    level_percent: int
    charging: bool


@dataclass(slots=True)
class PpgData:
    capture_timestamp_ns: int
    value: float
    led_current_ma: float
    integration_time_us: float


@dataclass(slots=True)
class GpsData:
    capture_timestamp_ns: int
    utc_time_ms: int
    latitude: float  # deg
    longitude: float  # deg
    altitude: float  # m
    accuracy: float  # m, horizontal
    speed: float  # m/s
    provider: str  # the source label, e.g. "gps"
    verticalAccuracy: float = float("nan")  # not in the stored layout  # noqa: N815 (vendor's name)
    raw_data: list = field(default_factory=list)


# -- audio ------------------------------------------------------------------------------------

@dataclass(slots=True)
class AudioData:
    """data: channels x samples (int16 or int32 as stored); max_amplitude: the largest absolute
    sample value of the block. An OPUS block is not decoded: data is empty (channels x 0) and
    `encoded` holds its bytes."""

    data: np.ndarray
    max_amplitude: float
    encoded: bytes = b""


@dataclass(slots=True)
class AudioDataRecord:
    """capture_timestamps_ns: one per sample, timestamp_ns + i * 1e9 / sample_rate_hz rounded down."""

    capture_timestamps_ns: np.ndarray
    sample_rate_hz: int
    audio_muted: bool = False


# -- machine perception -----------------------------------------------------------------------

@dataclass(slots=True)
class EyeGaze:
    capture_timestamp_ns: int
    tracking_timestamp: datetime.timedelta
    yaw: float  # rad
    pitch: float  # rad
    depth: float  # m, 0 = unknown
    yaw_low: float
    yaw_high: float
    pitch_low: float
    pitch_high: float
    vergence: float  # rad
    gaze_valid: bool
    depth_valid: bool


@dataclass(slots=True)
class WristAndPalmNormals:
    wrist_normal_device: np.ndarray
    palm_normal_device: np.ndarray


# Landmarks are stored in MediaPipe order: 0 wrist, then thumb, index, middle, ring, pinky from
# base to tip. The palm's centre is the mean of the wrist and the four finger bases.
PALM_LANDMARKS = [0, 5, 9, 13, 17]


@dataclass(slots=True)
class HandSide:
    """One tracked hand (the vendor's OneSide)."""

    confidence: float
    transform_device_wrist: SE3
    wrist_and_palm_normal_device: WristAndPalmNormals
    landmark_positions_device: np.ndarray  # 21 x 3, m

    def get_wrist_position_device(self) -> np.ndarray:
        return self.transform_device_wrist.translation

    def get_palm_position_device(self) -> np.ndarray:
        return self.landmark_positions_device[PALM_LANDMARKS].mean(axis=0)


@dataclass(slots=True)
class HandTrackingResult:
    capture_timestamp_ns: int
    tracking_timestamp: datetime.timedelta
    left_hand: HandSide | None  # None when the stored confidence is negative (not tracked)
    right_hand: HandSide | None


@dataclass(slots=True)
class FrontendOutput:
    """VIO. The stored pose is T_odometry_device: it is given as transform_odometry_bodyimu
    with transform_bodyimu_device the identity (the stream holds no IMU extrinsics)."""

    capture_timestamp_ns: int
    status: VioStatus | int
    pose_quality: TrackingQuality | int
    visual_tracking_quality: float
    transform_odometry_bodyimu: SE3
    linear_velocity_in_odometry: np.ndarray
    angular_velocity_in_bodyimu: np.ndarray
    gravity_in_odometry: np.ndarray
    transform_bodyimu_device: SE3 = field(default_factory=lambda: SE3(np.zeros(3), np.array([1.0, 0, 0, 0])))


@dataclass(slots=True)
class OpenLoopTrajectoryPose:
    capture_timestamp_ns: int
    tracking_timestamp: datetime.timedelta
    transform_odometry_device: SE3
    device_linear_velocity_odometry: np.ndarray
    angular_velocity_device: np.ndarray
    gravity_odometry: np.ndarray
    quality_score: float


# -- calibration and raw messages -------------------------------------------------------------

@dataclass(slots=True)
class DeviceCalibration:
    """The oatmeal-calibration header the device sent: `data` its bytes exactly, `json` its
    text, `parsed` the JSON object (None when it is not a JSON object)."""

    data: bytes

    @property
    def json(self) -> str:
        return self.data.decode("utf-8", "replace")

    @property
    def parsed(self) -> dict | None:
        try:
            value = json.loads(self.data)
        except (ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def to_json(self) -> str:
        return self.json


_HEADER = struct.Struct("<4sHHIIQq")  # the SRF1 record header (schemas/messages.md)


class MessagePayload:
    """A record's payload bytes (after its 32-byte header)."""

    __slots__ = ("_view",)

    def __init__(self, view: memoryview):
        self._view = view

    def as_memoryview(self) -> memoryview:
        return self._view

    def tobytes(self) -> bytes:
        return self._view.tobytes()

    def __len__(self) -> int:
        return len(self._view)


class SharedMessage:
    """One SRF1 record as the device sent it: `id` its message id, `payload` its payload,
    size() the payload's length, timestamp() the header's time (ns); `data` the whole record,
    header included, and `sequence` its sequence number."""

    __slots__ = ("data", "id", "payload", "sequence", "_timestamp_ns")

    def __init__(self, data: bytes):
        _magic, self.id, _flags, _length, _crc, self.sequence, self._timestamp_ns = _HEADER.unpack_from(data)
        self.data = data
        self.payload = MessagePayload(memoryview(data)[_HEADER.size:])

    def size(self) -> int:
        return len(self.payload)

    def timestamp(self) -> int:
        return self._timestamp_ns

    def __repr__(self) -> str:
        return f"SharedMessage(id=0x{self.id:04X}, sequence={self.sequence}, size={self.size()})"
