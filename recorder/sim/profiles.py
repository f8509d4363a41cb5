"""Streaming profiles: which sensors a device streams, at what rates and image sizes.

profile9 follows the vendor's published rates. mp_streaming_demo is our own definition: the
vendor names that profile but has not published what it streams (see its description).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SampleStream:
    message: str  # schema message name
    source: int
    rate_hz: int


@dataclass(frozen=True)
class CameraStream:
    label: str  # a camera_id label of the schema
    message: str
    rate_hz: int
    width: int
    height: int
    coding: str  # "gray8" (RAW GRAY8) or "h264"
    bitrate_bps: int = 0  # h264 only


@dataclass(frozen=True)
class AudioStream:
    rate_hz: int
    channels: int


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    samples: tuple[SampleStream, ...]
    cameras: tuple[CameraStream, ...]
    audio: AudioStream | None


TDM = SampleStream("TIME_DOMAIN_MAPPING_EVENT", 0, 10)  # every device but the broadcaster
BATTERY = SampleStream("BATTERY_STATUS", 0, 1)
# Three temperature sensors: SoC, battery, front frame (sources 0, 1, 2).
TEMPERATURES = tuple(SampleStream("TEMP", source, 1) for source in range(3))

_MACHINE_PERCEPTION = (
    SampleStream("IMU_EVENT", 0, 800),
    SampleStream("IMU_EVENT", 1, 800),
    SampleStream("MP_ET_RESULT", 0, 30),
    SampleStream("MP_HT_RESULT", 0, 30),
    SampleStream("MP_VIO_RESULT", 0, 10),
    SampleStream("MP_VIO_HIGH_FREQUENCY_POSE", 0, 800),
)


def _rgb(width: int, height: int, bitrate_bps: int) -> CameraStream:
    return CameraStream("camera-rgb", "POV_CAMERA_FRAME", 5, width, height, "h264", bitrate_bps)


PROFILE9 = Profile(
    name="profile9",
    description="The vendor's published profile9 rates, plus battery and time domain mapping.",
    samples=_MACHINE_PERCEPTION + (
        SampleStream("MAG", 0, 100),
        SampleStream("BARO", 0, 50),
        SampleStream("PPG", 0, 128),
        *TEMPERATURES,
        BATTERY,
        TDM,
    ),
    cameras=tuple(CameraStream(label, "SLAM_CAMERA_FRAME", 10, 512, 512, "gray8")
                  for label in ("slam-front-left", "slam-front-right", "slam-side-left", "slam-side-right"))
    + (_rgb(2560, 1920, 8_000_000),),
    audio=AudioStream(16_000, 8),  # Aria Gen2: 7 + 1 microphones
)

MP_STREAMING_DEMO = Profile(
    name="mp_streaming_demo",
    description=(
        "The machine-perception streaming profile as WE define it: the vendor names this profile "
        "but has not published its contents, so this is our reading of it (machine-perception "
        "outputs, the eye-tracking cameras and a smaller, lower-bitrate RGB stream)."),
    samples=_MACHINE_PERCEPTION + (BATTERY, TDM),
    cameras=tuple(CameraStream(label, "ET_CAMERA_FRAME", 5, 200, 200, "gray8")
                  for label in ("camera-et-left", "camera-et-right"))
    + (_rgb(1408, 1056, 2_000_000),),
    audio=None,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (PROFILE9, MP_STREAMING_DEMO)}
