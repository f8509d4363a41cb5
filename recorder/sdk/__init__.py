"""The vendor SDK's callback surface over what the recorder stored (and receives live).

    from recorder.sdk import StreamDataInterface, ReplaySourceConfig, create_replay_source

    stream_data = StreamDataInterface(enable_image_decoding=True, enable_raw_stream=False)
    stream_data.register_rgb_callback(lambda image, record: ...)
    source = create_replay_source(ReplaySourceConfig("data/<serial>/<session-id>"), stream_data)

    RecorderServer(factory, port=6768)    # records as `recorder serve` does, calls factory per device
    LiveSource("https://localhost:6768", factory)   # a running recorder's live feed, in another process

Callbacks, argument orders and attribute names are the vendor's (its SDK 2.5.1); docs/sdk.md
maps every stored field to them and lists where this SDK differs (a raising callback is
reported and the others go on; a missing or malformed session raises a clear error).
`Delivery` is the one place rows become callback calls: replay and the live feed use it.
"""

import importlib
from typing import TYPE_CHECKING

from .data import (
    AudioData,
    AudioDataRecord,
    BarometerData,
    BatteryData,
    DeviceCalibration,
    EyeGaze,
    FrontendOutput,
    GpsData,
    HandSide,
    HandTrackingResult,
    ImageData,
    ImageDataRecord,
    MotionData,
    OpenLoopTrajectoryPose,
    PpgData,
    TemperatureData,
    TrackingQuality,
    VioStatus,
    WristAndPalmNormals,
)
from .delivery import Delivery
from .interface import StreamDataInterface
from .replay import ReplayError, ReplaySource, ReplaySourceConfig, create_replay_source
from .transforms import SE3

if TYPE_CHECKING:  # loaded on first use: they bring the server (trio, TLS) into `import recorder.sdk`
    from .live import LiveSource
    from .server import RecorderServer

_LIVE = {"LiveSource": "live", "RecorderServer": "server"}


def __getattr__(name: str):
    if name in _LIVE:
        return getattr(importlib.import_module(f".{_LIVE[name]}", __name__), name)
    raise AttributeError(f"module 'recorder.sdk' has no attribute {name!r}")


__all__ = [
    "SE3", "AudioData", "AudioDataRecord", "BarometerData", "BatteryData", "Delivery", "DeviceCalibration",
    "EyeGaze", "FrontendOutput", "GpsData", "HandSide", "HandTrackingResult", "ImageData", "ImageDataRecord",
    "LiveSource", "MotionData", "OpenLoopTrajectoryPose", "PpgData", "ReplayError", "ReplaySource",
    "RecorderServer", "ReplaySourceConfig", "StreamDataInterface", "TemperatureData",
    "TrackingQuality", "VioStatus", "WristAndPalmNormals", "create_replay_source",
]
