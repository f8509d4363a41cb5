"""Stored rows turned into the vendor's callback arguments, one batch at a time.

Each converter turns a batch's columns into numpy arrays or Python lists once (vectorised),
then builds the objects of one row when that row is delivered: `events(i)` gives the callbacks
row i fires, as (callback kind, arguments, timestamp_ns). The stored fields map to the objects
as docs/sdk.md tabulates.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..reading.session import PCM_DTYPES
from . import data as d
from .cameras import CameraImages
from .raw import RawMessages
from .streams import AUDIO, CAMERA, CAMERA_ID_KINDS, CAMERA_KINDS, UNDECODED
from .transforms import SE3

Event = tuple[str, tuple, int]  # callback kind, its arguments, the row's timestamp_ns
PCM_TYPES = PCM_DTYPES  # audio codec -> sample type, as the reading API reads PCM
BLOB_COLUMN = "data"


def numbers(batch: pa.RecordBatch, name: str) -> list:
    return batch.column(name).to_numpy(zero_copy_only=False).tolist()


def vectors(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """A fixed-size-list column as an (n, k) array of its stored type (a view: no copy)."""
    column = batch.column(name)
    width = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), width)


class Rows:
    """A batch's rows; on its own (no callback wants its objects), only raw messages."""

    def __init__(self, batch: pa.RecordBatch):
        self.batch = batch
        self.timestamps = batch.column("timestamp_ns").to_numpy(zero_copy_only=False)
        self.t = self.timestamps.tolist()
        self.raw: RawMessages | None = None

    def __len__(self) -> int:
        return self.batch.num_rows

    def events(self, i: int) -> list[Event]:
        return []

    def deliver(self, i: int) -> list[Event]:
        """Row i's events, after the raw_message of the record that starts at it (Delivery
        adds the offset)."""
        events = self.events(i)
        message = self.raw.at(i) if self.raw is not None else None
        if message is not None:
            events.insert(0, ("raw_message", (message,), self.t[i]))
        return events


class ImuRows(Rows):
    """imu per sample; imu_batch once per stored record (a run of rows with one sequence), at
    its first sample, with all the record's samples. `following`: the rows after the batch of
    the record the batch ends in (replay reads in time slices, which can cut a record);
    `batched`: the sequence whose imu_batch was already fired (the record a batch starts in
    may have begun in the previous one)."""

    def __init__(self, batch, following: pa.RecordBatch | None = None, batched: int | None = None):
        super().__init__(batch)
        self.accel, self.gyro = vectors(batch, "accel_msec2"), vectors(batch, "gyro_radsec")
        self.temperature, self.label = numbers(batch, "temperature_c"), batch.column("source").to_pylist()
        sequence = batch.column("sequence").to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, sequence[1:] != sequence[:-1]])
        self.run_ends = dict(zip(starts.tolist(), np.r_[starts[1:], len(sequence)].tolist(), strict=True))
        self.skip_first = batched is not None and int(sequence[0]) == batched
        self.following = ImuRows(following) if following is not None and following.num_rows else None
        self.run: list[d.MotionData] = []
        self.run_start = 0

    def sample(self, i: int) -> d.MotionData:
        return d.MotionData(capture_timestamp_ns=self.t[i], temperature=self.temperature[i], accel_msec2=self.accel[i],
                            gyro_radsec=self.gyro[i], accel_valid=True, gyro_valid=True)

    def events(self, i):
        out = []
        if i in self.run_ends:
            self.run_start = i
            self.run = [self.sample(j) for j in range(i, self.run_ends[i])]
            if not (i == 0 and self.skip_first):
                whole = self.run
                if self.run_ends[i] == len(self) and self.following is not None:
                    whole = whole + [self.following.sample(j) for j in range(self.following.run_ends.get(0, 0))]
                out.append(("imu_batch", (whole, self.label[i]), self.t[i]))
        out.append(("imu", (self.run[i - self.run_start], self.label[i]), self.t[i]))
        return out


class MagnetometerRows(Rows):
    def __init__(self, batch):
        super().__init__(batch)
        self.mag, self.temperature = vectors(batch, "mag_tesla"), numbers(batch, "temperature_c")
        self.label = batch.column("source").to_pylist()

    def events(self, i):
        motion = d.MotionData(capture_timestamp_ns=self.t[i], temperature=self.temperature[i],
                              mag_tesla=self.mag[i], mag_valid=True)
        return [("magnetometer", (motion, self.label[i]), self.t[i])]


class ColumnRows(Rows):
    """Rows whose object is built from scalar columns alone: `fields` maps an attribute to its
    stored column."""

    kind: str
    make: type
    fields: dict[str, str]
    labelled: str | None = None  # the attribute that takes the source label

    def __init__(self, batch):
        super().__init__(batch)
        self.columns = {attribute: numbers(batch, column) for attribute, column in self.fields.items()}
        self.labels = batch.column("source").to_pylist() if self.labelled else None

    def events(self, i):
        values = {attribute: column[i] for attribute, column in self.columns.items()}
        if self.labelled:
            values[self.labelled] = self.labels[i]
        return [(self.kind, (self.make(capture_timestamp_ns=self.t[i], **values),), self.t[i])]


class BarometerRows(ColumnRows):
    kind, make = "barometer", d.BarometerData
    fields = {"pressure": "pressure_pa", "temperature": "temperature_c"}


class TemperatureRows(ColumnRows):
    kind, make, labelled = "temperature", d.TemperatureData, "sensor"
    fields = {"temperature": "temperature_c"}


class PpgRows(ColumnRows):
    kind, make = "ppg", d.PpgData
    fields = {"value": "value", "led_current_ma": "led_current_ma", "integration_time_us": "integration_time_us"}


class GpsRows(ColumnRows):
    kind, make, labelled = "gps", d.GpsData, "provider"
    fields = {"utc_time_ms": "utc_time_ms", "latitude": "latitude_deg", "longitude": "longitude_deg",
              "altitude": "altitude_m", "accuracy": "accuracy_m", "speed": "speed_mps"}


class BatteryRows(ColumnRows):
    kind, make = "battery", d.BatteryData
    fields = {"voltage": "voltage_v", "level_percent": "level_percent", "charging": "charging"}

    def __init__(self, batch):
        super().__init__(batch)
        self.columns["charging"] = [bool(c) for c in self.columns["charging"]]


class TimeDomainMappingRows(Rows):
    def __init__(self, batch):
        super().__init__(batch)
        self.capture = numbers(batch, "capture_timestamp_ns")
        self.broadcaster = numbers(batch, "broadcaster_timestamp_ns")
        self.broadcaster_id = numbers(batch, "broadcaster_id")

    def events(self, i):
        return [("time_domain_mapping", (self.capture[i], self.broadcaster[i], self.broadcaster_id[i]), self.t[i])]


class EyeGazeRows(ColumnRows):
    kind, make = "eye_gaze", d.EyeGaze
    fields = {"yaw": "yaw_rad", "pitch": "pitch_rad", "depth": "depth_m", "yaw_low": "yaw_low_rad",
              "yaw_high": "yaw_high_rad", "pitch_low": "pitch_low_rad", "pitch_high": "pitch_high_rad",
              "vergence": "vergence_rad"}

    def __init__(self, batch):
        super().__init__(batch)
        self.valid = numbers(batch, "valid")

    def events(self, i):
        values = {attribute: column[i] for attribute, column in self.columns.items()}
        gaze = d.EyeGaze(capture_timestamp_ns=self.t[i], tracking_timestamp=d.tracking_timestamp(self.t[i]),
                         gaze_valid=bool(self.valid[i] & 1), depth_valid=bool(self.valid[i] & 2), **values)
        return [("eye_gaze", (gaze,), self.t[i])]


class HandRows(Rows):
    def __init__(self, batch):
        super().__init__(batch)
        self.sides = {}
        for side in ("left", "right"):
            self.sides[side] = (numbers(batch, f"{side}_confidence"), vectors(batch, f"{side}_wrist_translation_m"),
                                vectors(batch, f"{side}_wrist_rotation"), vectors(batch, f"{side}_wrist_normal"),
                                vectors(batch, f"{side}_palm_normal"),
                                vectors(batch, f"{side}_landmarks_m").reshape(len(self), 21, 3))

    def side(self, side: str, i: int) -> d.HandSide | None:
        confidence, translation, rotation, wrist_normal, palm_normal, landmarks = self.sides[side]
        if not confidence[i] >= 0:  # negative (or NaN): not tracked
            return None
        return d.HandSide(confidence[i], SE3(translation[i], rotation[i]),
                          d.WristAndPalmNormals(wrist_normal[i], palm_normal[i]), landmarks[i])

    def events(self, i):
        result = d.HandTrackingResult(self.t[i], d.tracking_timestamp(self.t[i]), self.side("left", i),
                                      self.side("right", i))
        return [("hand_pose", (result,), self.t[i])]


class VioRows(Rows):
    def __init__(self, batch):
        super().__init__(batch)
        self.status, self.quality = numbers(batch, "status"), numbers(batch, "pose_quality")
        self.visual = numbers(batch, "visual_tracking_quality")
        self.translation, self.rotation = vectors(batch, "translation_m"), vectors(batch, "rotation")
        self.velocity, self.angular = vectors(batch, "linear_velocity_mps"), vectors(batch, "angular_velocity_radps")
        self.gravity = vectors(batch, "gravity_msec2")

    def events(self, i):
        output = d.FrontendOutput(
            capture_timestamp_ns=self.t[i], status=d.enum_or_code(d.VioStatus, self.status[i]),
            pose_quality=d.enum_or_code(d.TrackingQuality, self.quality[i]), visual_tracking_quality=self.visual[i],
            transform_odometry_bodyimu=SE3(self.translation[i], self.rotation[i]),
            linear_velocity_in_odometry=self.velocity[i], angular_velocity_in_bodyimu=self.angular[i],
            gravity_in_odometry=self.gravity[i])
        return [("vio", (output,), self.t[i])]


class VioHighFrequencyRows(Rows):
    def __init__(self, batch):
        super().__init__(batch)
        self.translation, self.rotation = vectors(batch, "translation_m"), vectors(batch, "rotation")
        self.velocity, self.angular = vectors(batch, "linear_velocity_mps"), vectors(batch, "angular_velocity_radps")
        self.gravity, self.score = vectors(batch, "gravity_msec2"), numbers(batch, "quality_score")

    def events(self, i):
        pose = d.OpenLoopTrajectoryPose(
            capture_timestamp_ns=self.t[i], tracking_timestamp=d.tracking_timestamp(self.t[i]),
            transform_odometry_device=SE3(self.translation[i], self.rotation[i]),
            device_linear_velocity_odometry=self.velocity[i], angular_velocity_device=self.angular[i],
            gravity_odometry=self.gravity[i], quality_score=self.score[i])
        return [("vio_high_frequency", (pose,), self.t[i])]


class AudioRows(Rows):
    def __init__(self, batch):
        super().__init__(batch)
        self.channels, self.codec = numbers(batch, "channels"), numbers(batch, "codec")
        self.rate = numbers(batch, "sample_rate_hz")
        self.blobs = batch.column(BLOB_COLUMN)

    def events(self, i):
        data, channels, rate = self.blobs[i].as_py(), self.channels[i], self.rate[i]
        if self.codec[i] in PCM_TYPES:
            pcm = np.frombuffer(data, PCM_TYPES[self.codec[i]]).reshape(-1, channels).T
            block = d.AudioData(pcm, float(np.abs(pcm.astype(np.int64)).max()) if pcm.size else 0.0)
        else:
            block = d.AudioData(np.zeros((channels, 0), np.int32), 0.0, encoded=data)
        samples = block.data.shape[1]
        times = self.t[i] + np.arange(samples, dtype=np.int64) * 10**9 // max(rate, 1)
        return [("audio", (block, d.AudioDataRecord(times, rate), channels), self.t[i])]


class CameraRows(Rows):
    """Frames go through the stream's CameraImages; a frame the decoder holds back comes out
    with a later row's events (or with flush())."""

    def __init__(self, batch, images: CameraImages, wanted: set[str]):
        super().__init__(batch)
        self.images, self.wanted = images, wanted
        names = ("camera_id", "codec", "pixel_format", "frame_number", "width", "height", "stride_bytes",
                 "exposure_duration_s", "gain", "temperature_c", "message_id")
        self.columns = {name: numbers(batch, name) for name in names}
        self.arrival = numbers(batch, "arrival_timestamp_ns") if "arrival_timestamp_ns" in batch.schema.names else None
        self.blobs = batch.column(BLOB_COLUMN)

    def kind(self, i: int) -> str | None:
        c = self.columns
        return CAMERA_KINDS.get(c["message_id"][i]) or CAMERA_ID_KINDS.get(c["camera_id"][i])

    def info(self, i: int) -> dict:
        return {name: column[i] for name, column in self.columns.items()}

    def record(self, i: int) -> d.ImageDataRecord:
        c = self.columns
        return d.ImageDataRecord(
            camera_id=c["camera_id"][i], capture_timestamp_ns=self.t[i], frame_number=c["frame_number"][i],
            exposure_duration=c["exposure_duration_s"][i], gain=c["gain"][i], temperature=c["temperature_c"][i],
            arrival_timestamp_ns=self.arrival[i] if self.arrival else d.UNKNOWN_ARRIVAL_NS,
            codec=c["codec"][i], pixel_format=c["pixel_format"][i])

    def events(self, i):
        kind = self.kind(i)
        if kind not in self.wanted:  # no callback for it: not worth decoding
            return []
        done = self.images.feed((kind, self.record(i)), self.info(i), self.blobs[i].as_py())
        return [(k, (image, record), record.capture_timestamp_ns) for (k, record), image in done]

    def prime(self, i: int) -> None:
        self.images.prime(self.info(i), self.blobs[i].as_py())


SAMPLE_ROWS = {
    "IMU_EVENT": ImuRows, "MAG": MagnetometerRows, "BARO": BarometerRows, "TEMP": TemperatureRows,
    "PPG": PpgRows, "GNSS": GpsRows, "TIME_DOMAIN_MAPPING_EVENT": TimeDomainMappingRows,
    "BATTERY_STATUS": BatteryRows, "MP_ET_RESULT": EyeGazeRows, "MP_HT_RESULT": HandRows,
    "MP_VIO_RESULT": VioRows, "MP_VIO_HIGH_FREQUENCY_POSE": VioHighFrequencyRows,
}
# The callbacks each stored message can fire: a stream none of whose callbacks is registered
# is not converted at all.
KINDS_OF = {
    "IMU_EVENT": ("imu", "imu_batch"), "MAG": ("magnetometer",), "BARO": ("barometer",),
    "TEMP": ("temperature",), "PPG": ("ppg",), "GNSS": ("gps",), "TIME_DOMAIN_MAPPING_EVENT": ("time_domain_mapping",),
    "BATTERY_STATUS": ("battery",), "MP_ET_RESULT": ("eye_gaze",), "MP_HT_RESULT": ("hand_pose",),
    "MP_VIO_RESULT": ("vio",), "MP_VIO_HIGH_FREQUENCY_POSE": ("vio_high_frequency",),
    AUDIO: ("audio",), CAMERA: ("rgb", "slam", "et"), UNDECODED: (),
}
