"""One MCAP file for Foxglove: every device's streams on one timeline, in Foxglove's own messages.

    recorder export data/ --format mcap --out capture.mcap

Topics are `/<serial>/<stream>`; each message's log and publish time is the row's `time_ns` on
the export clock. What each stream becomes:

- cameras: H.264 / H.265 frames as `foxglove.CompressedVideo`, byte for byte as stored (Annex B,
  one access unit per frame; the devices put SPS/PPS (and VPS) on every keyframe, as Foxglove
  needs, so nothing is re-encoded); JPEG frames as `foxglove.CompressedImage`; RAW frames as
  `foxglove.RawImage` (GRAY8 `mono8`, RGB24 `rgb8`, step = stride_bytes, pixels as stored;
  YUV420P, which Foxglove cannot show, repacked into `nv12`: the same samples, U and V
  interleaved). A stream whose codec changes gets a topic per kind after the first
  (`/<serial>/<stream>/<kind>`), as a channel has one schema.
  `/<serial>/<stream>/calibration`: `foxglove.CameraCalibration` beside every frame, when the
  session's calibration has a camera of that label (see below).
- mic: PCM S16LE blocks as `foxglove.RawAudio` (`pcm-s16`); PCM S32LE as `RawAudio` with format
  `pcm-s32` (kept as stored; Foxglove plays only pcm-s16); Opus as `foxglove.CompressedAudio`.
- vio, vio-high-frequency: `foxglove.PoseInFrame` (T_odometry_device in frame
  `<serial>/odometry`) and `foxglove.FrameTransform` on `/<serial>/<stream>/transform` (parent
  `<serial>/odometry`, child `<serial>/<stream>`: the two pose streams are two frames, so they
  never fight over one).
- gnss: `foxglove.LocationFix`; the horizontal accuracy becomes an approximated covariance
  (accuracy^2 east and north, 0 up).
- every other sensor stream (imu-*, magnetometer, barometer, temperature, ppg, battery,
  eye-gaze, hand-tracking, time-domain-mapping, any stream added later): JSON messages with a
  JSON schema built from the stored schema (units and descriptions included).
- streams above that have a Foxglove message also get `/<serial>/<stream>/fields`: every stored
  field of the row as JSON (VIO quality and velocities, exposure and gain, GNSS speed and UTC
  time...), so nothing stored is lost. Reserved fields are left out; NaN and infinity, which JSON
  cannot hold, are null. Floats are written as the shortest text of their exact value: an f32
  read back as a double equals the stored f32.

Camera mounts: `/<serial>/camera-mounts`, one `foxglove.FrameTransforms` per session (see
MountRoute): each camera's T_Device_Camera, so a 3D panel shows where the cameras sit.

Calibration: the Aria layout (CameraCalibrations, FisheyeRadTanThinPrism projection with params
[f or fx fy, cx, cy, k0..k5, p0, p1, s0..s3]) becomes Foxglove's `fisheye62` model with
D = [k0, k1, k2, k3, p0, p1], the parameters it takes: k4, k5 and the thin-prism terms are left
out, a small error far from the image centre. Other projections (Pinhole, a linear model) give
`plumb_bob` without distortion. The calibration JSON of each session (every version it
received), and each session's manifest, are attachments (`<serial>/<session-id>/<file>`), byte
for byte; one metadata record per session and one for the export (its clock) say what is where.

Order: messages are written in time order across streams and devices (a merge of every
stream's batches), so chunks cover short, non-overlapping spans and a player reads the file
front to back, one chunk at a time, instead of holding a chunk of every stream at once. Chunks
are zstd-compressed with message indexes; the summary has the chunk indexes and statistics.
What the order costs, measured on 2 simulated profile9 devices x 10 s (134 MB stored, 94,240
messages, 2 shared cores): 5.3 s against 2.9 s stream after stream (`time_order=False`), and a
file of 82 MB against 36 MB. Nearly all of it is zstd: a chunk of one camera's frames compresses
far better than one that interleaves every stream (the simulator's frames repeat much more than
a real camera's do); the mcap library alone writing the same messages in the same order takes
2.7 s against 1.2 s. The merge holds a batch of each stream (the job's: up to 256 frames per
camera) in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from foxglove_schemas_protobuf.CameraCalibration_pb2 import CameraCalibration
from foxglove_schemas_protobuf.CompressedAudio_pb2 import CompressedAudio
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.CompressedVideo_pb2 import CompressedVideo
from foxglove_schemas_protobuf.FrameTransform_pb2 import FrameTransform
from foxglove_schemas_protobuf.FrameTransforms_pb2 import FrameTransforms
from foxglove_schemas_protobuf.LocationFix_pb2 import LocationFix
from foxglove_schemas_protobuf.PoseInFrame_pb2 import PoseInFrame
from foxglove_schemas_protobuf.RawAudio_pb2 import RawAudio
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, IndexType, Writer
from mcap_protobuf.schema import build_file_descriptor_set

from ...reading import Session
from ...reading import images as codes
from ...schema import load
from ...storage import layout
from ..job import DATA_COLUMN, TIME_COLUMN, ExportError, ExportJob

NAME = "mcap"
SUFFIX = ".mcap"

CHUNK_BYTES = 4 * 1024 * 1024  # a few video frames or a second or two of sensor rows per chunk
# The merge writes at most this much capture time per step, so a step's messages stay small in
# memory even when the job's batches are long.
STEP_NS = 500_000_000
PROFILE = ""  # no ROS profile: Foxglove protobuf and JSON
LIBRARY = "recorder export"

AUDIO_PCM_S16, AUDIO_PCM_S32, AUDIO_OPUS = (load().enums["audio_codec"].code(name)
                                             for name in ("PCM_S16LE", "PCM_S32LE", "OPUS"))
POSE_MESSAGES = {"MP_VIO_RESULT", "MP_VIO_HIGH_FREQUENCY_POSE"}
GNSS_MESSAGE = "GNSS"


# -- JSON --------------------------------------------------------------------------------------


def _json_type(arrow_type: pa.DataType) -> dict:
    if pa.types.is_integer(arrow_type):
        return {"type": "integer"}
    if pa.types.is_floating(arrow_type):
        # NaN and infinity are written as null; the type stays the single "number" that
        # Foxglove's schema reader (plot paths, message path completion) expects.
        return {"type": "number"}
    if pa.types.is_boolean(arrow_type):
        return {"type": "boolean"}
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return {"type": "string"}
    if pa.types.is_fixed_size_list(arrow_type):
        size = arrow_type.list_size
        return {"type": "array", "items": _json_type(arrow_type.value_type), "minItems": size, "maxItems": size}
    return {}


def _is_json_field(f: pa.Field) -> bool:
    return not f.name.startswith("reserved") and f.name not in (TIME_COLUMN, DATA_COLUMN)


class JsonRows:
    """Rows of one stored schema as JSON text, built by Arrow for a whole batch at once: each
    column becomes its JSON text (numbers by Arrow's shortest exact formatting), and one
    element-wise join per batch lays them out between the keys; no Python object per value."""

    def __init__(self, schema: pa.Schema, title: str):
        self.fields = [f for f in schema if _is_json_field(f)]
        properties = {}
        for f in self.fields:
            described = dict(_json_type(f.type))
            meta = f.metadata or {}
            text = meta.get(b"recorder.description", b"").decode()
            unit = meta.get(b"recorder.unit", b"").decode()
            if text or unit:
                described["description"] = f"{text} [{unit}]" if unit else text
            properties[f.name] = described
        self.schema = json.dumps({"title": title, "type": "object", "properties": properties,
                                  "required": [f.name for f in self.fields]}).encode()

    def encode(self, table: pa.Table) -> list[bytes]:
        pieces: list = []
        literal = "{"
        for i, f in enumerate(self.fields):
            literal += ("," if i else "") + json.dumps(f.name) + ":"
            column = table.column(f.name).combine_chunks()
            if pa.types.is_fixed_size_list(f.type):
                # Every element's text at once, then each row's elements joined with commas.
                texts = _json_text(column.flatten(), f.type.value_type)
                size = f.type.list_size
                rows = pa.ListArray.from_arrays(pa.array(np.arange(0, len(texts) + 1, size, dtype=np.int32)), texts)
                pieces += [_text(literal + "["), pc.binary_join(rows, _text(","))]
                literal = "]"
            else:
                pieces += [_text(literal), _json_text(column, f.type)]
                literal = ""
        pieces.append(_text(literal + "}"))
        joined = pc.binary_join_element_wise(*pieces, _text(""))
        return joined.cast(pa.binary()).to_pylist()


def _text(value: str) -> pa.Scalar:
    # Arrow scalars, not Python strings: a Python argument costs compute functions a failed
    # optional import on every call (about 0.2 ms, more than the work on a small batch).
    return pa.scalar(value, pa.string())


NULL_TEXT = _text("null")


def _json_text(column: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    """A column's values as JSON text."""
    if pa.types.is_floating(arrow_type):
        # Widened to f64 first: the shortest text of the exact value, so an f32 read back as a
        # double is the stored f32. JSON has no NaN or infinity: null.
        wide = pc.cast(column, pa.float64())
        finite = pc.fill_null(pc.is_finite(wide), False)
        return pc.if_else(finite, pc.cast(wide, pa.string()), NULL_TEXT)
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return pc.fill_null(pc.cast(column, pa.string()), NULL_TEXT)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        labels = column.dictionary_encode()  # few distinct labels: each quoted once
        quoted = pa.array([json.dumps(v) for v in labels.dictionary.to_pylist()], pa.string())
        return pc.fill_null(quoted.take(labels.indices), NULL_TEXT)
    return pa.array([json.dumps(v, default=str) for v in column.to_pylist()], pa.string())


def _numbers(column: pa.Array) -> np.ndarray:
    if column.null_count:
        column = column.fill_null(0)
    return column.to_numpy(zero_copy_only=False)


# -- channels ----------------------------------------------------------------------------------


@dataclass
class Channels:
    """Schemas and channels registered as they are first used."""

    writer: Writer
    schemas: dict[str, int] = field(default_factory=dict)
    channels: dict[str, tuple[int, str]] = field(default_factory=dict)  # topic -> (channel, schema key)

    def protobuf(self, topic: str, message_class) -> int:
        name = message_class.DESCRIPTOR.full_name
        if name not in self.schemas:
            self.schemas[name] = self.writer.register_schema(
                name, SchemaEncoding.Protobuf, build_file_descriptor_set(message_class).SerializeToString())
        return self._channel(topic, name, MessageEncoding.Protobuf)

    def json(self, topic: str, rows: JsonRows, schema_name: str) -> int:
        key = f"{schema_name}\0{rows.schema.decode()}"
        if key not in self.schemas:
            self.schemas[key] = self.writer.register_schema(schema_name, SchemaEncoding.JSONSchema, rows.schema)
        return self._channel(topic, key, MessageEncoding.JSON)

    def _channel(self, topic: str, schema_key: str, encoding: str) -> int:
        if topic not in self.channels:
            channel = self.writer.register_channel(topic, encoding, self.schemas[schema_key])
            self.channels[topic] = (channel, schema_key)
        channel, registered = self.channels[topic]
        if registered != schema_key:
            # A channel has one schema: rows of another layout on the same topic (sessions of
            # one device recorded with different schema versions) get a topic of their own.
            return self._channel(f"{topic}/{self.schema_label(schema_key)}", schema_key, encoding)
        return channel

    def schema_label(self, schema_key: str) -> str:
        return f"schema-{self.schemas[schema_key]}"


# -- streams -----------------------------------------------------------------------------------


def _stamp(message, t_ns: int) -> None:
    seconds, nanos = divmod(t_ns, 1_000_000_000)
    message.timestamp.seconds = seconds
    message.timestamp.nanos = nanos


@dataclass
class Encoded:
    """One kind of message for the rows of a batch: its channel (one for every row, or one per
    row) and one message per row."""

    channel: int | list[int]
    data: list[bytes]


class Route:
    """How one stream of one session becomes messages."""

    stored = True  # its rows are a stored stream's (counted as exported rows)

    def __init__(self, session: Session, stream: str, schema: pa.Schema, channels: Channels):
        self.session = session
        self.stream = stream
        self.schema = schema
        self.channels = channels
        self.topic = f"/{session.serial}/{stream}"
        self.message = (schema.metadata or {}).get(b"recorder.message", b"").decode()
        self.with_data = False
        self.json = None

    def batches(self, job: ExportJob):
        """The tables this route encodes, batch after batch."""
        return job.rows(self.session, self.stream, with_data=self.with_data)

    def fields_channel(self, table: pa.Table, suffix: str = "/fields") -> tuple[int, JsonRows]:
        if self.json is None:
            self.json = JsonRows(table.schema, f"recorder {self.message or self.stream}")
        return self.channels.json(self.topic + suffix, self.json, f"recorder.{self.message or self.stream}"), self.json

    def encode(self, table: pa.Table) -> list[Encoded]:
        channel, rows = self.fields_channel(table, "")
        return [Encoded(channel, rows.encode(table))]


class PoseRoute(Route):
    def encode(self, table: pa.Table) -> list[Encoded]:
        serial = self.session.serial
        poses = self.channels.protobuf(self.topic, PoseInFrame)
        transforms = self.channels.protobuf(self.topic + "/transform", FrameTransform)
        times = table.column(TIME_COLUMN).to_numpy().tolist()
        translation = _numbers(table.column("translation_m").combine_chunks().flatten()).reshape(-1, 3).tolist()
        rotation = _numbers(table.column("rotation").combine_chunks().flatten()).reshape(-1, 4).tolist()
        pose = PoseInFrame(frame_id=f"{serial}/odometry")
        transform = FrameTransform(parent_frame_id=f"{serial}/odometry", child_frame_id=f"{serial}/{self.stream}")
        pose_bytes, transform_bytes = [], []
        p, q = pose.pose.position, pose.pose.orientation
        tt, tq = transform.translation, transform.rotation
        for t, (x, y, z), (w, qx, qy, qz) in zip(times, translation, rotation, strict=True):
            _stamp(pose, t)
            p.x, p.y, p.z = x, y, z
            q.w, q.x, q.y, q.z = w, qx, qy, qz
            pose_bytes.append(pose.SerializeToString())
            _stamp(transform, t)
            tt.x, tt.y, tt.z = x, y, z
            tq.w, tq.x, tq.y, tq.z = w, qx, qy, qz
            transform_bytes.append(transform.SerializeToString())
        channel, rows = self.fields_channel(table)
        return [Encoded(poses, pose_bytes), Encoded(transforms, transform_bytes), Encoded(channel, rows.encode(table))]


class GnssRoute(Route):
    def encode(self, table: pa.Table) -> list[Encoded]:
        channel = self.channels.protobuf(self.topic, LocationFix)
        columns = [table.column(name).to_numpy().tolist()
                   for name in (TIME_COLUMN, "latitude_deg", "longitude_deg", "altitude_m", "accuracy_m")]
        fix = LocationFix(frame_id=f"{self.session.serial}/gnss",
                          position_covariance_type=LocationFix.PositionCovarianceType.APPROXIMATED)
        out = []
        for t, latitude, longitude, altitude, accuracy in zip(*columns, strict=True):
            _stamp(fix, t)
            fix.latitude, fix.longitude, fix.altitude = latitude, longitude, altitude
            variance = accuracy * accuracy
            fix.ClearField("position_covariance")
            fix.position_covariance.extend([variance, 0.0, 0.0, 0.0, variance, 0.0, 0.0, 0.0, 0.0])
            out.append(fix.SerializeToString())
        fields, rows = self.fields_channel(table)
        return [Encoded(channel, out), Encoded(fields, rows.encode(table))]


class CameraRoute(Route):
    def __init__(self, *args, calibration: CameraCalibration | None = None, notes: list[str] | None = None):
        super().__init__(*args)
        self.with_data = True
        self.frame_id = f"{self.session.serial}/{self.stream}"
        self.calibration = calibration
        self.kinds: list[str] = []
        self.notes = notes if notes is not None else []
        self.first_video_frame = True

    def _channel(self, kind: str, message_class) -> int:
        if kind not in self.kinds:
            self.kinds.append(kind)
        topic = self.topic if self.kinds[0] == kind else f"{self.topic}/{kind}"
        return self.channels.protobuf(topic, message_class)

    def encode(self, table: pa.Table) -> list[Encoded]:
        names = (TIME_COLUMN, "codec", "pixel_format", "width", "height", "stride_bytes")
        times, codec, pixel_format, width, height, stride = (table.column(n).to_numpy().tolist() for n in names)
        data = table.column(DATA_COLUMN).to_pylist()
        channels, out = [], []
        video, jpeg, raw = CompressedVideo(frame_id=self.frame_id), CompressedImage(frame_id=self.frame_id), \
            RawImage(frame_id=self.frame_id)
        for i, t in enumerate(times):
            c = codec[i]
            if c in (codes.H264, codes.H265):
                kind = "h264" if c == codes.H264 else "h265"
                if self.first_video_frame and not codes.is_keyframe(c, data[i]):
                    self.notes.append(f"{self.topic}: the export starts inside a group of pictures; players show "
                                      f"its video from the first keyframe on")
                self.first_video_frame = False
                channels.append(self._channel(kind, CompressedVideo))
                message = video
                message.format, message.data = kind, data[i]
            elif c == codes.JPEG:
                channels.append(self._channel("jpeg", CompressedImage))
                message = jpeg
                message.format, message.data = "jpeg", data[i]
            else:
                channels.append(self._channel("raw", RawImage))
                message = raw
                message.width, message.height = width[i], height[i]
                message.encoding, message.step, message.data = _raw_layout(pixel_format[i], width[i], height[i],
                                                                           stride[i], data[i])
            _stamp(message, t)
            out.append(message.SerializeToString())
        encoded = [Encoded(channels, out)]
        if self.calibration is not None:
            calibration = self.calibration
            channel = self.channels.protobuf(f"{self.topic}/calibration", CameraCalibration)
            messages = []
            for t in times:
                _stamp(calibration, t)
                messages.append(calibration.SerializeToString())
            encoded.append(Encoded(channel, messages))
        fields, rows = self.fields_channel(table)
        encoded.append(Encoded(fields, rows.encode(table)))
        return encoded


def _raw_layout(pixel_format: int, width: int, height: int, stride: int, data: bytes) -> tuple[str, int, bytes]:
    """RawImage encoding, step and bytes of a RAW frame."""
    if pixel_format == codes.GRAY8:
        return "mono8", stride, data
    if pixel_format == codes.RGB24:
        return "rgb8", stride, data
    # YUV420P (I420: Y, then U and V at half size with half the stride) -> NV12 (Y, then U and V
    # interleaved in rows of `step` bytes): the same samples in a layout Foxglove shows.
    pixels = np.frombuffer(data, np.uint8)
    half = stride // 2
    step = stride if stride % 2 == 0 else width
    luma = pixels[:stride * height].reshape(height, stride)[:, :step]
    chroma_size = half * (height // 2)
    u = pixels[stride * height:stride * height + chroma_size].reshape(height // 2, half)
    v = pixels[stride * height + chroma_size:stride * height + 2 * chroma_size].reshape(height // 2, half)
    uv = np.empty((height // 2, step), np.uint8)
    uv[:, 0::2], uv[:, 1::2] = u[:, :step // 2], v[:, :step // 2]
    return "nv12", step, luma.tobytes() + uv.tobytes()


class AudioRoute(CameraRoute):
    def encode(self, table: pa.Table) -> list[Encoded]:
        times, codec, channels_, rate = (table.column(n).to_numpy().tolist()
                                         for n in (TIME_COLUMN, "codec", "channels", "sample_rate_hz"))
        data = table.column(DATA_COLUMN).to_pylist()
        raw, compressed = RawAudio(), CompressedAudio(format="opus")
        channels, out = [], []
        for i, t in enumerate(times):
            if codec[i] == AUDIO_OPUS:
                channels.append(self._channel("opus", CompressedAudio))
                message = compressed
                message.data = data[i]
            else:
                # One RawAudio channel for both PCM kinds: the format field says which.
                channels.append(self._channel("pcm", RawAudio))
                message = raw
                message.format = "pcm-s16" if codec[i] == AUDIO_PCM_S16 else "pcm-s32"
                message.sample_rate, message.number_of_channels, message.data = rate[i], channels_[i], data[i]
            _stamp(message, t)
            out.append(message.SerializeToString())
        fields, rows = self.fields_channel(table)
        return [Encoded(channels, out), Encoded(fields, rows.encode(table))]


# -- calibration -------------------------------------------------------------------------------


def camera_calibration(entry: dict, frame_id: str) -> CameraCalibration | None:
    """A CameraCalibration from one Aria-layout CameraCalibrations entry (see the module doc)."""
    projection = entry.get("Projection") or {}
    params = [float(p) for p in projection.get("Params") or []]
    size = entry.get("ImageSize") or {}
    width, height = int(size.get("Width") or 0), int(size.get("Height") or 0)
    name = projection.get("Name", "")
    if name in ("FisheyeRadTanThinPrism", "Fisheye624") and len(params) in (15, 16):
        if len(params) == 15:
            fx = fy = params[0]
            rest = params[1:]
        else:
            fx, fy = params[0], params[1]
            rest = params[2:]
        cx, cy, k, p = rest[0], rest[1], rest[2:8], rest[8:10]
        model, distortion = "fisheye62", [k[0], k[1], k[2], k[3], p[0], p[1]]
    elif name in ("Pinhole", "Linear") and len(params) >= 3:
        fx, fy, cx, cy = (params[0], params[0], params[1], params[2]) if len(params) == 3 else params[:4]
        model, distortion = "plumb_bob", [0.0] * 5
    else:
        return None
    return CameraCalibration(frame_id=frame_id, width=width, height=height, distortion_model=model, D=distortion,
                             K=[fx, 0, cx, 0, fy, cy, 0, 0, 1], R=[1, 0, 0, 0, 1, 0, 0, 0, 1],
                             P=[fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0])


class MountRoute(Route):
    """Where the cameras sit on the device: one `foxglove.FrameTransforms` on
    `/<serial>/camera-mounts` at the session's first time (or the window's start), T_Device_Camera
    of each exported camera's calibration as parent `<serial>/device`, child the camera's frame
    (the frame_id of its images and calibration), so that a 3D panel places every camera; with
    vio-high-frequency exported, its frame (T_odometry_device) is the device frame's parent."""

    stored = False

    def __init__(self, session: Session, channels: Channels, mounts: dict[str, dict], with_device_pose: bool):
        super().__init__(session, "camera-mounts", pa.schema([]), channels)
        self.mounts = mounts  # camera stream -> its T_Device_Camera
        self.with_device_pose = with_device_pose

    def batches(self, job: ExportJob):
        first = int(job.clock.times(self.session, [self.session.manifest.get("first_device_time_ns") or 0])[0])
        t = max(first, job.start_ns or 0, 0)
        if job.end_ns is None or t < job.end_ns:
            yield pa.table({TIME_COLUMN: pa.array([t], pa.int64())})

    def encode(self, table: pa.Table) -> list[Encoded]:
        serial = self.session.serial
        message = FrameTransforms()
        t = int(table.column(TIME_COLUMN)[0].as_py())
        if self.with_device_pose:
            link = message.transforms.add(parent_frame_id=f"{serial}/vio-high-frequency", child_frame_id=f"{serial}/device")
            link.rotation.w = 1.0
            _stamp(link, t)
        for stream, pose in self.mounts.items():
            mount = message.transforms.add(parent_frame_id=f"{serial}/device", child_frame_id=f"{serial}/{stream}")
            _stamp(mount, t)
            mount.translation.x, mount.translation.y, mount.translation.z = (float(v) for v in pose["Translation"])
            w, (x, y, z) = pose["UnitQuaternion"]
            mount.rotation.w, mount.rotation.x, mount.rotation.y, mount.rotation.z = float(w), float(x), float(y), float(z)
        return [Encoded(self.channels.protobuf(self.topic, FrameTransforms), [message.SerializeToString()])]


def camera_mounts(cameras: dict[str, dict], streams: list[str]) -> dict[str, dict]:
    """Exported camera stream -> its T_Device_Camera, for the cameras whose calibration has a
    well-formed one."""
    mounts = {}
    for stream in streams:
        pose = (cameras.get(stream) or {}).get("T_Device_Camera")
        try:
            w, xyz = pose["UnitQuaternion"]
            if len([float(v) for v in (*pose["Translation"], w, *xyz)]) == 7:
                mounts[stream] = pose
        except (TypeError, KeyError, ValueError):
            continue  # no mount, or not in the Aria layout: the camera is left unplaced
    return mounts


def camera_calibrations(session: Session) -> dict[str, dict]:
    """Camera label -> its CameraCalibrations entry, from the session's (first) calibration."""
    calibration = session.calibration or {}
    entries = calibration.get("CameraCalibrations") or []
    return {e["Label"]: e for e in entries if isinstance(e, dict) and isinstance(e.get("Label"), str)}


# -- the merge ---------------------------------------------------------------------------------


class Cursor:
    """One route's batches, the current one converted lazily, slice by slice."""

    def __init__(self, job: ExportJob, route: Route):
        self.route = route
        self.batches = route.batches(job)
        self.table: pa.Table | None = None
        self.times = np.empty(0, np.int64)
        self.latest_after = self.times  # [i]: the latest time from row i on
        self.position = 0
        self.done = False

    def fill(self) -> bool:
        """A batch with rows left to write, reading the next one when needed; False when done."""
        while not self.done and self.position >= len(self.times):
            table = next(self.batches, None)
            if table is None:
                self.done, self.table = True, None
                return False
            self.table, self.position = table, 0
            self.times = table.column(TIME_COLUMN).to_numpy()
            self.latest_after = np.maximum.accumulate(self.times[::-1])[::-1]
            if len(self.times) and self.times.min() < 0:
                raise ExportError(f"{self.route.topic}: times before 1970 on this clock cannot be MCAP log times "
                                  f"(unsigned); choose another --clock")
        return not self.done

    def take_until(self, watermark: int) -> pa.Table | None:
        """The rows from the current position up to the first one after `watermark`."""
        later = np.flatnonzero(self.times[self.position:] > watermark)
        stop = self.position + (int(later[0]) if len(later) else len(self.times) - self.position)
        if stop == self.position:
            return None
        rows = self.table.slice(self.position, stop - self.position)
        self.position = stop
        return rows


def _write_step(writer: Writer, parts: list[tuple[np.ndarray, list[Encoded]]]) -> int:
    """Write one merge step's messages in time order (stable: ties keep stream order); returns
    the messages written."""
    times, channels, data = [], [], []
    for row_times, encoded in parts:
        for e in encoded:
            times.append(row_times)
            channels.append(np.full(len(row_times), e.channel, np.int64) if isinstance(e.channel, int)
                            else np.asarray(e.channel, np.int64))
            data += e.data
    if not data:
        return 0
    all_times = np.concatenate(times)
    order = np.argsort(all_times, kind="stable")
    sorted_times = all_times[order].tolist()
    sorted_channels = np.concatenate(channels)[order].tolist()
    add = writer.add_message
    for t, channel, k in zip(sorted_times, sorted_channels, order.tolist(), strict=True):
        add(channel, t, data[k], t)
    return len(data)


def _routes(job: ExportJob, channels: Channels) -> list[Route]:
    routes = []
    for session in job.sessions:
        cameras = camera_calibrations(session)
        for stream in job.streams(session):
            schema = session.schema(stream)
            message = (schema.metadata or {}).get(b"recorder.message", b"").decode()
            args = (session, stream, schema, channels)
            if message == "camera_frame":
                entry = cameras.get(stream)
                calibration = camera_calibration(entry, f"{session.serial}/{stream}") if entry else None
                routes.append(CameraRoute(*args, calibration=calibration, notes=job.notes))
            elif message == "audio_block":
                routes.append(AudioRoute(*args))
            elif message in POSE_MESSAGES:
                routes.append(PoseRoute(*args))
            elif message == GNSS_MESSAGE:
                routes.append(GnssRoute(*args))
            elif "file" in schema.names:
                continue  # a blob stream of a kind this format does not know
            else:
                routes.append(Route(*args))
        streams = job.streams(session)
        mounts = camera_mounts(cameras, streams)
        if mounts:
            routes.append(MountRoute(session, channels, mounts, "vio-high-frequency" in streams))
    return routes


def _attachments(job: ExportJob, writer: Writer) -> None:
    for session in job.sessions:
        prefix = f"{session.serial}/{session.session_id}"
        first = int(job.clock.times(session, [session.manifest.get("first_device_time_ns") or 0])[0])
        log_time = max(first, 0)
        created = int(session.manifest.get("first_wall_time_ns") or 0)
        for entry, data in session.calibrations() or ([({"file": "calibration.json"}, session.calibration_bytes)]
                                                       if session.calibration_bytes is not None else []):
            writer.add_attachment(created, log_time, f"{prefix}/{entry['file']}", "application/json", data)
        manifest = session.path / layout.MANIFEST
        if manifest.exists():
            writer.add_attachment(created, log_time, f"{prefix}/{layout.MANIFEST}", "application/json",
                                  manifest.read_bytes())
        writer.add_metadata(f"session {prefix}", {
            "serial": session.serial, "session_id": session.session_id,
            "device_build": str(session.manifest.get("device_build") or ""),
            "clock_role": session.broadcaster.role,
            "calibration": f"attachment {prefix}/calibration.json" if session.calibration_bytes is not None else "none",
            "manifest": f"attachment {prefix}/{layout.MANIFEST}",
        })
    described = job.clock.description()
    writer.add_metadata("export", {key: value if isinstance(value, str) else json.dumps(value)
                                   for key, value in described.items()})


def write(job: ExportJob, out: Path, progress, time_order: bool = True) -> dict:
    """Write the MCAP file. time_order=False writes each stream after the other (for measuring
    what the merge costs; the file holds the same messages).

    One process: reading and encoding in a worker process while this one writes was measured
    no faster (2 profile9 devices x 10 s, 3 alternating runs: 5.0-6.8 s against 4.4-5.3 s in
    one process; the worker's start and the 258 MB of messages through a pipe cost what the
    overlap saves), and a thread shares one interpreter lock with the writing."""
    rows: dict[str, int] = {}
    messages = 0
    with open(out, "wb") as stream:
        writer = Writer(stream, chunk_size=CHUNK_BYTES, compression=CompressionType.ZSTD, index_types=IndexType.ALL)
        writer.start(profile=PROFILE, library=LIBRARY)
        _attachments(job, writer)
        channels = Channels(writer)
        cursors = [Cursor(job, route) for route in _routes(job, channels)]
        for parts, done_rows in _steps(cursors, rows, time_order):
            messages += _write_step(writer, parts)
            progress(done_rows)
        writer.finish()
    return {"rows": rows, "messages": messages, "topics": len(channels.channels)}


def _steps(cursors: list[Cursor], rows: dict[str, int], time_order: bool):
    """Each merge step's encoded messages (as _write_step takes them), and how many rows they hold."""

    def emit(cursor: Cursor, table: pa.Table, parts: list) -> int:
        """Encodes the rows; returns how many stored rows they were."""
        parts.append((table.column(TIME_COLUMN).to_numpy(), cursor.route.encode(table)))
        if not cursor.route.stored:
            return 0
        rows[cursor.route.stream] = rows.get(cursor.route.stream, 0) + table.num_rows
        return table.num_rows

    if time_order:
        active = [c for c in cursors if c.fill()]
        while active:
            # Rows at or before the watermark can go: no stream's later batches hold an
            # earlier row (each stream's batches come in capture order). The stream whose
            # buffered rows end first is emptied, or the one holding the earliest row moves
            # on by a step: every pass writes something.
            watermark = min(int(c.latest_after[c.position]) for c in active)
            earliest = min(int(c.times[c.position]) for c in active)
            watermark = min(watermark, earliest + STEP_NS)
            parts: list = []
            done_rows = 0
            for cursor in active:
                table = cursor.take_until(watermark)
                if table is not None:
                    done_rows += emit(cursor, table, parts)
            yield parts, done_rows
            active = [c for c in active if c.fill()]
    else:
        for cursor in cursors:
            while cursor.fill():
                table = cursor.take_until(int(cursor.latest_after[cursor.position]))
                parts = []
                yield parts, emit(cursor, table, parts)
