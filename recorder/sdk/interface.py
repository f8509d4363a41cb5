"""StreamDataInterface: where user code registers its callbacks, as with the vendor's SDK.

One callback per kind, as the vendor's (registering again replaces it). A callback that
declares a parameter named `device_id` (positional-or-keyword or keyword-only) receives the
device's serial as that keyword on every call; one that does not, or only has **kwargs, is
called with the vendor's arguments alone. This is decided once, at registration, with
inspect.signature(), as the vendor does.

The vendor's callbacks all stop silently once one of them raises; ours are called by a
`Delivery` that reports the exception and goes on (see recorder.sdk.delivery).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("rgb", "slam", "et", "imu", "imu_batch", "magnetometer", "barometer", "audio", "gps", "ppg",
         "eye_gaze", "hand_pose", "vio", "vio_high_frequency", "time_domain_mapping", "device_calib",
         "raw_message", "battery", "temperature")


@dataclass(frozen=True)
class Callback:
    function: Callable
    wants_device_id: bool


def wants_device_id(function: Callable) -> bool:
    try:
        parameter = inspect.signature(function).parameters.get("device_id")
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return parameter is not None and parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                        inspect.Parameter.KEYWORD_ONLY)


class StreamDataInterface:
    """Callbacks for one device's streams (or several devices', told apart by device_id).

    enable_image_decoding: camera callbacks get decoded images (else a coded frame's bytes);
    enable_raw_stream: raw_message callbacks fire (they get each record's bytes)."""

    def __init__(self, enable_image_decoding: bool = True, enable_raw_stream: bool = False):
        self.enable_image_decoding = bool(enable_image_decoding)
        self.enable_raw_stream = bool(enable_raw_stream)
        self.callbacks: dict[str, Callback] = {}

    def __repr__(self) -> str:
        return f"<StreamDataInterface callbacks: {', '.join(self.callbacks) or 'none'}>"

    def _register(self, kind: str, function: Callable) -> None:
        if not callable(function):
            raise TypeError(f"register_{kind}_callback needs a callable, not {type(function).__name__}")
        self.callbacks[kind] = Callback(function, wants_device_id(function))

    def callback(self, kind: str) -> Callback | None:
        return self.callbacks.get(kind)

    def register_rgb_callback(self, callback: Callable) -> None:
        """callback(ImageData, ImageDataRecord) for each RGB camera frame (camera_id 64)."""
        self._register("rgb", callback)

    def register_slam_callback(self, callback: Callable) -> None:
        """callback(ImageData, ImageDataRecord) for each SLAM camera frame (camera_id 1, 2, 4, 8)."""
        self._register("slam", callback)

    def register_et_callback(self, callback: Callable) -> None:
        """callback(ImageData, ImageDataRecord) for each eye-tracking frame (camera_id 16, 32)."""
        self._register("et", callback)

    def register_imu_callback(self, callback: Callable) -> None:
        """callback(MotionData, label) for each IMU sample; label e.g. "imu-right"."""
        self._register("imu", callback)

    def register_imu_batch_callback(self, callback: Callable) -> None:
        """callback(list[MotionData], label) once per stored IMU record (the samples it carried)."""
        self._register("imu_batch", callback)

    def register_magnetometer_callback(self, callback: Callable) -> None:
        """callback(MotionData, label) for each magnetometer sample (mag_valid)."""
        self._register("magnetometer", callback)

    def register_barometer_callback(self, callback: Callable) -> None:
        """callback(BarometerData)."""
        self._register("barometer", callback)

    def register_audio_callback(self, callback: Callable) -> None:
        """callback(AudioData, AudioDataRecord, num_channels) for each audio block."""
        self._register("audio", callback)

    def register_gps_callback(self, callback: Callable) -> None:
        """callback(GpsData)."""
        self._register("gps", callback)

    def register_ppg_callback(self, callback: Callable) -> None:
        """callback(PpgData)."""
        self._register("ppg", callback)

    def register_eye_gaze_callback(self, callback: Callable) -> None:
        """callback(EyeGaze)."""
        self._register("eye_gaze", callback)

    def register_hand_pose_callback(self, callback: Callable) -> None:
        """callback(HandTrackingResult)."""
        self._register("hand_pose", callback)

    def register_vio_callback(self, callback: Callable) -> None:
        """callback(FrontendOutput)."""
        self._register("vio", callback)

    def register_vio_high_frequency_callback(self, callback: Callable) -> None:
        """callback(OpenLoopTrajectoryPose)."""
        self._register("vio_high_frequency", callback)

    def register_time_domain_mapping_callback(self, callback: Callable) -> None:
        """callback(capture_ts_ns, broadcaster_ts_ns, broadcaster_id) for each TDM sample."""
        self._register("time_domain_mapping", callback)

    def register_device_calib_callback(self, callback: Callable) -> None:
        """callback(DeviceCalibration) when the device's calibration arrives."""
        self._register("device_calib", callback)

    def register_raw_message_callback(self, callback: Callable) -> None:
        """callback(SharedMessage, offset): each record's bytes (needs enable_raw_stream)."""
        self._register("raw_message", callback)

    def register_battery_callback(self, callback: Callable) -> None:
        """callback(BatteryData): no vendor callback, the recorder's own."""
        self._register("battery", callback)

    def register_temperature_callback(self, callback: Callable) -> None:
        """callback(TemperatureData): no vendor callback, the recorder's own."""
        self._register("temperature", callback)
