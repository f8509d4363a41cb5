"""The vendor SDK's callback surface over what the recorder stored (and receives live).

    from recorder.sdk import StreamDataInterface, ReplaySourceConfig, create_replay_source

    stream_data = StreamDataInterface(enable_image_decoding=True, enable_raw_stream=False)
    stream_data.register_rgb_callback(lambda image, record: ...)
    source = create_replay_source(ReplaySourceConfig("data/<serial>/<session-id>"), stream_data)

Callbacks, argument orders and attribute names are the vendor's (its SDK 2.5.1); docs/sdk.md
maps every stored field to them and lists where this SDK differs (a raising callback is
reported and the others go on; a missing or malformed session raises a clear error).
`Delivery` is the one place rows become callback calls: replay and the live feed use it.
"""

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

__all__ = [
    "SE3", "AudioData", "AudioDataRecord", "BarometerData", "BatteryData", "Delivery", "DeviceCalibration",
    "EyeGaze", "FrontendOutput", "GpsData", "HandSide", "HandTrackingResult", "ImageData", "ImageDataRecord",
    "MotionData", "OpenLoopTrajectoryPose", "PpgData", "ReplayError", "ReplaySource",
    "ReplaySourceConfig", "StreamDataInterface", "TemperatureData",
    "TrackingQuality", "VioStatus", "WristAndPalmNormals", "create_replay_source",
]
