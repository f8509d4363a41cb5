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
2.7 s against 1.2 s. The merge holds a batch of each stream (up to 4 MB of frames) and a window
of its messages (a second of capture) in memory, and two steps of messages (half a second of
capture each) ready to write.

Work: reading (frames decompressed, Parquet decoded) runs in a pool of two threads a batch
ahead of the encoding, and the encoding in a thread of its own two merge steps ahead of the
writing; most of each is C code that releases the interpreter lock (zstd, Parquet, Arrow), so
that on two cores the export takes little longer than its writing alone. Messages are built a
window at a time: JSON rows by recorder.export.jsonrows, camera frames spliced into their
messages with one copy each (recorder.export.spliced).
"""

from __future__ import annotations

import json
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
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
from .. import protorows, spliced
from ..background import Background
from ..job import DATA_COLUMN, TIME_COLUMN, ExportError, ExportJob
from ..jsonrows import JsonRows

NAME = "mcap"
SUFFIX = ".mcap"

CHUNK_BYTES = 4 * 1024 * 1024  # a few video frames or a second or two of sensor rows per chunk
# The merge writes at most this much capture time per step, so a step's messages stay small in
# memory even when the job's batches are long.
STEP_NS = 500_000_000
# The first steps are shorter (each twice the one before, up to STEP_NS): the writing waits for
# the first one, and the encoding gets ahead while the first ones are written.
FIRST_STEP_NS = 50_000_000
# Merge steps read and encoded ahead of the writing (a second of capture, once the first short
# steps are done): the writer then waits for nothing but the first step (measured on 2 profile9
# devices x 10 s; four steps ahead waited no less).
STEPS_AHEAD = 2
# Frames are read a batch at a time, and rows encoded a window at a time (see Cursor), the first
# ones small: the first step waits for a window of every stream, and the writing waits for the
# first step; later ones larger, as each batch and window has a cost of its own.
BLOB_BATCH_BYTES, FIRST_BLOB_BATCH_BYTES = 4 << 20, 1 << 20
ENCODE_NS, FIRST_ENCODE_NS = 1_000_000_000, 250_000_000  # capture time a window holds
ENCODE_ROWS = 4096  # and rows, at most
READERS = 2  # threads reading batches ahead (see Cursor)
PROFILE = ""  # no ROS profile: Foxglove protobuf and JSON
LIBRARY = "recorder export"

AUDIO_PCM_S16, AUDIO_PCM_S32, AUDIO_OPUS = (load().enums["audio_codec"].code(name)
                                             for name in ("PCM_S16LE", "PCM_S32LE", "OPUS"))
POSE_MESSAGES = {"MP_VIO_RESULT", "MP_VIO_HIGH_FREQUENCY_POSE"}
GNSS_MESSAGE = "GNSS"


# -- channels ----------------------------------------------------------------------------------


@dataclass
class Channels:
    """Schemas and channels as they are first used. Encoding runs in another thread than the
    writing (see write()), and the writer is not shared between threads: the ids are given here,
    as the mcap writer gives them (1, 2, ... in order of registration), and the registrations
    wait in `pending` until the writing thread makes them, before the messages that use them."""

    schemas: dict[str, int] = field(default_factory=dict)
    channels: dict[str, tuple[int, str]] = field(default_factory=dict)  # topic -> (channel, schema key)
    pending: list[tuple[str, int, tuple]] = field(default_factory=list)  # (kind, id, arguments)

    def protobuf(self, topic: str, message_class) -> int:
        name = message_class.DESCRIPTOR.full_name
        if name not in self.schemas:
            self._schema(name, (name, SchemaEncoding.Protobuf,
                                build_file_descriptor_set(message_class).SerializeToString()))
        return self._channel(topic, name, MessageEncoding.Protobuf)

    def json(self, topic: str, rows: JsonRows, schema_name: str) -> int:
        key = f"{schema_name}\0{rows.schema.decode()}"
        if key not in self.schemas:
            self._schema(key, (schema_name, SchemaEncoding.JSONSchema, rows.schema))
        return self._channel(topic, key, MessageEncoding.JSON)

    def _schema(self, key: str, arguments: tuple) -> None:
        self.schemas[key] = len(self.schemas) + 1
        self.pending.append(("schema", self.schemas[key], arguments))

    def _channel(self, topic: str, schema_key: str, encoding: str) -> int:
        if topic not in self.channels:
            channel = len(self.channels) + 1
            self.pending.append(("channel", channel, (topic, encoding, self.schemas[schema_key])))
            self.channels[topic] = (channel, schema_key)
        channel, registered = self.channels[topic]
        if registered != schema_key:
            # A channel has one schema: rows of another layout on the same topic (sessions of
            # one device recorded with different schema versions) get a topic of their own.
            return self._channel(f"{topic}/{self.schema_label(schema_key)}", schema_key, encoding)
        return channel

    def schema_label(self, schema_key: str) -> str:
        return f"schema-{self.schemas[schema_key]}"

    def take(self) -> list[tuple[str, int, tuple]]:
        """The registrations not yet made (the encoding thread hands them on with its messages)."""
        taken, self.pending = self.pending, []
        return taken


def _register(writer: Writer, registrations: list[tuple[str, int, tuple]]) -> None:
    for kind, expected, arguments in registrations:
        given = writer.register_schema(*arguments) if kind == "schema" else writer.register_channel(*arguments)
        if given != expected:
            raise RuntimeError(f"the mcap writer gave {kind} {arguments[0]!r} id {given}, not {expected}")


# -- streams -----------------------------------------------------------------------------------


def _numbers(column: pa.Array) -> np.ndarray:
    if column.null_count:
        column = column.fill_null(0)
    return column.to_numpy(zero_copy_only=False)


def _stamp(message, t_ns: int) -> None:
    seconds, nanos = divmod(t_ns, 1_000_000_000)
    message.timestamp.seconds = seconds
    message.timestamp.nanos = nanos


@dataclass
class Encoded:
    """One kind of message for the rows of a batch: its channel (one for every row, or one per
    row) and one message per row."""

    channel: int | list[int]
    data: list  # bytes, or views of a buffer that holds a window's messages (camera frames)

    def slice(self, rows: slice) -> Encoded:
        return Encoded(self.channel if isinstance(self.channel, int) else self.channel[rows], self.data[rows])


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
        return job.rows(self.session, self.stream, with_data=self.with_data, batch_bytes=BLOB_BATCH_BYTES,
                        first_batch_bytes=FIRST_BLOB_BATCH_BYTES)

    def fields_channel(self, table: pa.Table, suffix: str = "/fields") -> tuple[int, JsonRows]:
        if self.json is None:
            self.json = JsonRows(table.schema, f"recorder {self.message or self.stream}",
                                 leave_out=(TIME_COLUMN, DATA_COLUMN))
        return self.channels.json(self.topic + suffix, self.json, f"recorder.{self.message or self.stream}"), self.json

    def encode(self, table: pa.Table) -> list[Encoded]:
        channel, rows = self.fields_channel(table, "")
        return [Encoded(channel, rows.encode(table))]


class PoseRoute(Route):
    def encode(self, table: pa.Table) -> list[Encoded]:
        serial = self.session.serial
        poses = self.channels.protobuf(self.topic, PoseInFrame)
        transforms = self.channels.protobuf(self.topic + "/transform", FrameTransform)
        times = table.column(TIME_COLUMN).to_numpy()
        translation = _numbers(table.column("translation_m").combine_chunks().flatten()).reshape(-1, 3)
        rotation = _numbers(table.column("rotation").combine_chunks().flatten()).reshape(-1, 4)  # w, x, y, z
        pose = PoseInFrame(frame_id=f"{serial}/odometry")
        transform = FrameTransform(parent_frame_id=f"{serial}/odometry", child_frame_id=f"{serial}/{self.stream}")
        pose_bytes, transform_bytes = pose_messages(pose, transform, times, translation, rotation)
        channel, rows = self.fields_channel(table)
        return [Encoded(poses, pose_bytes), Encoded(transforms, transform_bytes), Encoded(channel, rows.encode(table))]


def pose_messages(pose: PoseInFrame, transform: FrameTransform, times: np.ndarray, translation: np.ndarray,
                  rotation: np.ndarray) -> tuple[list, list]:
    """A PoseInFrame and a FrameTransform (their frame ids as given) of every row: laid out by
    numpy (recorder.export.protorows) where all seven doubles are non-zero, the usual case;
    serialised by protobuf where one is zero (proto3 leaves it out), such as an identity pose."""
    values = np.concatenate([np.asarray(translation, np.float64), np.asarray(rotation, np.float64)], axis=1)
    laid_out = np.all(values.view(np.uint64) != 0, axis=1)  # -0.0 is not zero to protobuf
    pose_out: list = [None] * len(times)
    transform_out: list = [None] * len(times)
    rows = np.flatnonzero(laid_out)
    if len(rows):
        x, y, z, w, qx, qy, qz = values[rows].T
        position = [protorows.fixed64(1, x), protorows.fixed64(2, y), protorows.fixed64(3, z)]
        orientation = [protorows.fixed64(1, qx), protorows.fixed64(2, qy), protorows.fixed64(3, qz),
                       protorows.fixed64(4, w)]
        stamp = protorows.timestamp(1, np.asarray(times)[rows])
        ids = [PoseInFrame(frame_id=pose.frame_id).SerializeToString(),
               FrameTransform(parent_frame_id=transform.parent_frame_id,
                              child_frame_id=transform.child_frame_id).SerializeToString()]
        position_size, orientation_size = 3 * 9, 4 * 9
        pose_parts = [*stamp, protorows.constant(ids[0]), protorows.length_prefix(3, 4 + position_size + orientation_size),
                      protorows.length_prefix(1, position_size), *position,
                      protorows.length_prefix(2, orientation_size), *orientation]
        transform_parts = [*stamp, protorows.constant(ids[1]), protorows.length_prefix(4, position_size), *position,
                           protorows.length_prefix(5, orientation_size), *orientation]
        for row, a, b in zip(rows.tolist(), protorows.messages(pose_parts, len(rows)),
                             protorows.messages(transform_parts, len(rows)), strict=True):
            pose_out[row], transform_out[row] = a, b
    p, q = pose.pose.position, pose.pose.orientation
    tt, tq = transform.translation, transform.rotation
    for row in np.flatnonzero(~laid_out).tolist():
        x, y, z, w, qx, qy, qz = values[row].tolist()
        t = int(times[row])
        _stamp(pose, t)
        p.x, p.y, p.z = x, y, z
        q.w, q.x, q.y, q.z = w, qx, qy, qz
        pose_out[row] = pose.SerializeToString()
        _stamp(transform, t)
        tt.x, tt.y, tt.z = x, y, z
        tq.w, tq.x, tq.y, tq.z = w, qx, qy, qz
        transform_out[row] = transform.SerializeToString()
    return pose_out, transform_out


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
        data = spliced.frames(table.column(DATA_COLUMN))
        # Each message is serialised without its frame, split where the frame goes (see
        # recorder.export.spliced): the fields before it (head) per frame, after it (tail) per kind.
        video, jpeg, raw = CompressedVideo(frame_id=self.frame_id), CompressedImage(), RawImage()
        tails = {"h264": CompressedVideo(format="h264").SerializeToString(),
                 "h265": CompressedVideo(format="h265").SerializeToString(),
                 "jpeg": CompressedImage(format="jpeg", frame_id=self.frame_id).SerializeToString(),
                 "raw": RawImage(frame_id=self.frame_id).SerializeToString()}
        channels, messages = [], []
        for i, t in enumerate(times):
            c = codec[i]
            if c in (codes.H264, codes.H265):
                kind = "h264" if c == codes.H264 else "h265"
                if self.first_video_frame and not codes.is_keyframe(c, bytes(data[i])):
                    self.notes.append(f"{self.topic}: the export starts inside a group of pictures; players show "
                                      f"its video from the first keyframe on")
                self.first_video_frame = False
                channels.append(self._channel(kind, CompressedVideo))
                head, frame, splice = video, data[i], SPLICED[CompressedVideo]
            elif c == codes.JPEG:
                kind = "jpeg"
                channels.append(self._channel(kind, CompressedImage))
                head, frame, splice = jpeg, data[i], SPLICED[CompressedImage]
            else:
                kind = "raw"
                channels.append(self._channel(kind, RawImage))
                head, splice = raw, SPLICED[RawImage]
                head.width, head.height = width[i], height[i]
                head.encoding, head.step, frame = _raw_layout(pixel_format[i], width[i], height[i], stride[i], data[i])
            _stamp(head, t)
            messages.append(splice.around(head.SerializeToString(), frame, tails[kind]))
        out = spliced.joined(messages)
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


# The frame fields of the camera messages: what recorder.export.spliced builds messages around.
SPLICED = {message_class: spliced.Spliced(message_class, "data")
           for message_class in (CompressedVideo, CompressedImage, RawImage)}


def _raw_layout(pixel_format: int, width: int, height: int, stride: int, data) -> tuple[str, int, bytes]:
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
    """One route's rows, encoded a window at a time (up to ENCODE_ROWS rows and ENCODE_NS of
    capture time): per-call costs (Arrow compute calls, message set-up) are paid once a window,
    not once a merge step, and a window's messages are all that is held beside the batch read.
    The next batch is read ahead by the reading pool (decompressing frames and decoding
    Parquet release the interpreter lock), so encoding seldom waits for it."""

    def __init__(self, job: ExportJob, route: Route, reading: Executor):
        self.route = route
        self.batches = route.batches(job)
        self.reading = reading
        self.ahead: Future | None = None  # the next batch, being read
        self.table: pa.Table | None = None  # the batch read last
        self.next_row = 0  # its first row not yet encoded
        self.times = np.empty(0, np.int64)  # the window's
        self.encoded: list[Encoded] = []
        self.position = 0
        self.windows = 0  # encoded so far
        self.done = False

    def read_ahead(self) -> None:
        if self.ahead is None and not self.done:
            self.ahead = self.reading.submit(next, self.batches, None)

    def _next_batch(self) -> pa.Table | None:
        self.read_ahead()
        table, self.ahead = self.ahead.result(), None
        if table is not None:
            self.read_ahead()
        return table

    def fill(self) -> bool:
        """A window with rows left to write, encoding the next one (and reading the next batch)
        when needed; False when done."""
        while not self.done and self.position >= len(self.times):
            if self.table is None or self.next_row >= self.table.num_rows:
                table = self._next_batch()
                if table is None:
                    self.done, self.table, self.encoded = True, None, []
                    return False
                times = table.column(TIME_COLUMN).to_numpy()
                if len(times) and times.min() < 0:
                    raise ExportError(f"{self.route.topic}: times before 1970 on this clock cannot be MCAP log "
                                      f"times (unsigned); choose another --clock")
                self.table, self.next_row = table, 0
            times = self.table.column(TIME_COLUMN).to_numpy()[self.next_row:]
            window = self.table.slice(self.next_row, _window_rows(times, ENCODE_NS if self.windows else FIRST_ENCODE_NS))
            self.windows += 1
            self.next_row += window.num_rows
            self.times, self.position = window.column(TIME_COLUMN).to_numpy(), 0
            self.encoded = self.route.encode(window) if window.num_rows else []
        return not self.done

    def take_until(self, watermark: int) -> tuple[np.ndarray, list[Encoded]] | None:
        """The times and messages of the rows from the current position up to the first one
        after `watermark`."""
        later = np.flatnonzero(self.times[self.position:] > watermark)
        stop = self.position + (int(later[0]) if len(later) else len(self.times) - self.position)
        if stop == self.position:
            return None
        rows = slice(self.position, stop)
        self.position = stop
        return self.times[rows], [e.slice(rows) for e in self.encoded]


def _window_rows(times: np.ndarray, span_ns: int) -> int:
    """How many of these rows (a batch's from the first not yet encoded) the next window holds."""
    times = times[:ENCODE_ROWS]
    if len(times) < 2 or not bool(np.all(times[1:] >= times[:-1])):
        return len(times)  # rows out of time order (rare): the merge sorts them, any window will do
    return max(1, int(np.searchsorted(times, times[0] + span_ns, "left")))


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

    Reading and encoding run in threads of their own (recorder.export.background and the
    reading pool of _steps), ahead of this one, which writes: stored frames are decompressed,
    Parquet decoded and JSON built by Arrow there while the mcap writer compresses chunks here,
    each mostly without the interpreter lock. The writer is used by this thread only (see
    Channels). A worker process instead was measured no faster (its start and the 258 MB of
    messages through a pipe cost what the overlap saved)."""
    rows: dict[str, int] = {}
    messages = 0
    channels = Channels()
    with open(out, "wb") as stream:
        writer = Writer(stream, chunk_size=CHUNK_BYTES, compression=CompressionType.ZSTD, index_types=IndexType.ALL)
        writer.start(profile=PROFILE, library=LIBRARY)
        _attachments(job, writer)
        steps = _steps(job, _routes(job, channels), channels, rows, time_order)
        with Background(steps, depth=STEPS_AHEAD, name="mcap-encode") as steps:
            for registrations, parts, done_rows in steps:
                _register(writer, registrations)
                messages += _write_step(writer, parts)
                progress(done_rows)
        writer.finish()
    return {"rows": rows, "messages": messages, "topics": len(channels.channels)}


def _steps(job: ExportJob, routes: list[Route], channels: Channels, rows: dict[str, int], time_order: bool):
    """Each merge step's registrations, encoded messages (as _write_step takes them), and how
    many rows they hold."""
    with ThreadPoolExecutor(READERS, thread_name_prefix="mcap-read") as reading:
        cursors = [Cursor(job, route, reading) for route in routes]
        try:
            for cursor in cursors:
                cursor.read_ahead()  # every stream's first batch at once: the first step needs them all
            yield from (_merged if time_order else _stream_after_stream)(cursors, channels, rows)
        finally:
            for cursor in cursors:
                if cursor.ahead is not None:
                    cursor.ahead.cancel()  # the pool's exit waits for reads under way


def _emit(cursor: Cursor, part: tuple[np.ndarray, list[Encoded]], parts: list, rows: dict[str, int]) -> int:
    """Adds the part to the step's; returns how many stored rows it holds."""
    parts.append(part)
    if not cursor.route.stored:
        return 0
    rows[cursor.route.stream] = rows.get(cursor.route.stream, 0) + len(part[0])
    return len(part[0])


def _merged(cursors: list[Cursor], channels: Channels, rows: dict[str, int]):
    active = [c for c in cursors if c.fill()]
    step_ns = FIRST_STEP_NS
    while active:
        # A step is every row up to step_ns (STEP_NS, the first ones shorter) after the earliest
        # one left: each stream gives its rows up to the watermark, going on into its next
        # window (and batch) when one ends before it, so no stream's later rows are earlier
        # (each stream's batches come in capture order). Steps are then a fixed span of
        # capture, not cut at the end of whichever window ends first: ten times fewer for
        # profile9 cameras, each of which costs the encoding and the writing threads a hand-over.
        watermark = min(int(c.times[c.position]) for c in active) + step_ns
        step_ns = min(STEP_NS, 2 * step_ns)
        parts: list = []
        done_rows = 0
        for cursor in active:
            while True:
                part = cursor.take_until(watermark)
                if part is not None:
                    done_rows += _emit(cursor, part, parts, rows)
                if cursor.position < len(cursor.times) or not cursor.fill():
                    break
        yield channels.take(), parts, done_rows
        active = [c for c in active if c.fill()]


def _stream_after_stream(cursors: list[Cursor], channels: Channels, rows: dict[str, int]):
    for cursor in cursors:
        while cursor.fill():
            parts: list = []
            done_rows = _emit(cursor, cursor.take_until(int(cursor.times[cursor.position:].max())), parts, rows)
            yield channels.take(), parts, done_rows
