"""One Rerun recording (.rrd) of every session, for the Rerun Viewer and Rerun's dataframe readers.

    /<serial>/<stream>            camera-*, slam-*: H.264/H.265 frames as VideoStream samples (not
                                  re-encoded), JPEG as EncodedImage, RAW GRAY8/RGB24/YUV420P as Image
    /<serial>/<stream>            vio, vio-high-frequency: the pose (T_odometry_device) as Transform3D
    /<serial>/<stream>/<field>    every numeric field of a sensor stream as Scalars (a vector field
                                  is one entity with one series per element), f32 widened to f64
    /<serial>/hand-tracking/<hand>_landmarks_m   the 21 landmarks of each row as Points3D
    /<serial>/mic                 PCM audio as WAV assets (AssetAudio), one per minute or run of
                                  unbroken blocks, logged at its first block's time; Opus is left out

Every row is on one timeline named after the export clock ("broadcaster_time", "device_time":
durations since that clock's zero; "utc_time": timestamps), with `time_ns` as its time. Rows
go in with `send_columns`, one call per batch and entity.
"""

from __future__ import annotations

import io
import uuid
import wave
from pathlib import Path

import numpy as np
import pyarrow as pa

# This module is recorder.export.formats.rerun; absolute imports find the rerun-sdk package.
import rerun as rr

from ...reading import images
from ...wire.rules import PCM_BYTES_PER_SAMPLE
from ..job import DATA_COLUMN, TIME_COLUMN, ExportJob

NAME = "rerun"
SUFFIX = ".rrd"
APPLICATION_ID = "recorder"

POSE_STREAMS = ("vio", "vio-high-frequency")
# Columns that say where or how a row was stored, or are times (those go on the timeline).
NOT_SCALARS = {"sequence", "message_id", "camera_id", "codec", "pixel_format", "frame_number", "width", "height",
               "stride_bytes", "channels", "sample_rate_hz", "samples_per_channel", "broadcaster_id"}
# Enum codes from the schema (through the reading package), never written again here.
CODEC_RAW, CODEC_JPEG, CODEC_H264, CODEC_H265 = images.RAW, images.JPEG, images.H264, images.H265
GRAY8, RGB24, YUV420P = images.GRAY8, images.RGB24, images.YUV420P
VIDEO_CODECS = {CODEC_H264: rr.VideoCodec.H264, CODEC_H265: rr.VideoCodec.H265}
PCM_BYTES = PCM_BYTES_PER_SAMPLE  # audio codec -> bytes per sample; OPUS has no WAV form
AUDIO_PIECE_S = 60  # a WAV asset per minute at most: bounded memory, and drift stays far below a block
START_CODE = b"\x00\x00\x01"


def entity(serial: str, stream: str, field: str | None = None) -> str:
    parts = [serial, stream] + ([field] if field else [])
    return "/" + "/".join(rr.escape_entity_path_part(p) for p in parts)


def timeline(job: ExportJob) -> str:
    return f"{job.clock.name}_time"


def scalar_fields(schema: pa.Schema, stream_is_blob: bool) -> list[str]:
    """The columns plotted as scalar series: numbers and fixed-size lists of numbers, not the
    reserved ones, not times, not the columns that describe how a frame is stored."""
    chosen = []
    for f in schema:
        if f.name in NOT_SCALARS or f.name.endswith("timestamp_ns") or f.name == TIME_COLUMN:
            continue
        if (f.metadata or {}).get(b"recorder.reserved") == b"true":
            continue
        kind = f.type.value_type if pa.types.is_fixed_size_list(f.type) else f.type
        if stream_is_blob and not pa.types.is_floating(kind):
            continue  # a frame's integers are its layout; its floats (exposure, gain) are measurements
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            chosen.append(f.name)
    return chosen


def series_names(field: pa.Field) -> list[str]:
    if not pa.types.is_fixed_size_list(field.type):
        return [field.name]
    size = field.type.list_size
    description = (field.metadata or {}).get(b"recorder.description", b"").decode()
    if size == 4 and "quaternion w, x, y, z" in description:
        return [f"{field.name}.{axis}" for axis in "wxyz"]
    if size == 3:
        return [f"{field.name}.{axis}" for axis in "xyz"]
    return [f"{field.name}[{i}]" for i in range(size)]


def as_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as float64 rows (n, k): a fixed-size list gives k values per row, a number one."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(array.type):
        values = array.flatten().to_numpy(zero_copy_only=False)
        return values.astype(np.float64).reshape(len(array), array.type.list_size)
    return array.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 1)


def annex_b(frame: bytes) -> bytes:
    """Rerun decodes H.264/H.265 samples in Annex B (start codes). A frame stored with 4-byte
    length prefixes (as in MP4) is reframed, byte for byte the same NAL units; anything else is
    passed on as it is."""
    if frame.startswith(START_CODE) or frame.startswith(b"\x00" + START_CODE):
        return frame
    units, at = [], 0
    while at + 4 <= len(frame):
        size = int.from_bytes(frame[at:at + 4], "big")
        if size == 0 or at + 4 + size > len(frame):
            return frame
        units.append(b"\x00\x00\x00\x01" + frame[at + 4:at + 4 + size])
        at += 4 + size
    return b"".join(units) if at == len(frame) and units else frame


def raw_image(data: bytes, pixel_format: int, width: int, height: int, stride: int):
    """A RAW frame as Rerun image bytes and format, rows cut to the image width when the stride
    pads them (Rerun images have no stride)."""
    if pixel_format == YUV420P:
        luma = np.frombuffer(data, np.uint8, stride * height).reshape(height, stride)[:, :width]
        cw, ch, cs = (width + 1) // 2, (height + 1) // 2, stride // 2
        planes = [luma.tobytes()]
        at = stride * height
        for _ in range(2):
            plane = np.frombuffer(data, np.uint8, cs * ch, at).reshape(ch, cs)[:, :cw]
            planes.append(plane.tobytes())
            at += cs * ch
        return b"".join(planes), rr.components.ImageFormat(width, height, pixel_format=rr.PixelFormat.Y_U_V12_LimitedRange)
    channels = 3 if pixel_format == RGB24 else 1
    row = width * channels
    if stride != row:
        data = np.frombuffer(data, np.uint8, stride * height).reshape(height, stride)[:, :row].tobytes()
    model = "RGB" if pixel_format == RGB24 else "L"
    return data, rr.components.ImageFormat(width, height, color_model=model, channel_datatype="U8")


class RerunWriter:
    def __init__(self, job: ExportJob, recording: rr.RecordingStream, progress):
        self.job = job
        self.recording = recording
        self.progress = progress
        self.timeline = timeline(job)
        self.rows: dict[str, int] = {}
        self.entities: set[str] = set()
        self.video_codec: dict[str, int] = {}  # entity -> stored codec of its video stream
        self.skipped: dict[str, int] = {}

    def times(self, table: pa.Table) -> rr.TimeColumn:
        return self.time_column(table.column(TIME_COLUMN).to_numpy())

    def time_column(self, ns: np.ndarray) -> rr.TimeColumn:
        if self.job.clock.name == "utc":
            return rr.TimeColumn(self.timeline, timestamp=ns.view("datetime64[ns]"))
        return rr.TimeColumn(self.timeline, duration=ns.view("timedelta64[ns]"))

    def send(self, path: str, index: rr.TimeColumn, columns) -> None:
        self.recording.send_columns(path, indexes=[index], columns=columns, strict=True)
        self.entities.add(path)

    def static(self, path: str, archetype) -> None:
        if path not in self.entities:
            self.recording.log(path, archetype, static=True, strict=True)
            self.entities.add(path)

    def stream(self, session, stream: str) -> None:
        schema = session.schema(stream)
        is_blob = "file" in schema.names
        if is_blob and {"codec", "width"} <= set(schema.names):
            self.camera(session, stream, schema)
        elif is_blob and {"channels", "sample_rate_hz"} <= set(schema.names):
            self.audio(session, stream)
        elif is_blob:
            self.skipped[stream] = self.skipped.get(stream, 0) + sum(t.num_rows for t in self.job.rows(session, stream))
        else:
            self.samples(session, stream, schema)

    def samples(self, session, stream: str, schema: pa.Schema) -> None:
        fields = scalar_fields(schema, False)
        for table in self.job.rows(session, stream, columns=[*fields, "timestamp_ns"]):
            index = self.times(table)
            for name in fields:
                path = entity(session.serial, stream, name)
                if name.endswith("landmarks_m") and pa.types.is_fixed_size_list(schema.field(name).type):
                    points = as_matrix(table.column(name)).reshape(-1, 3)
                    per_row = schema.field(name).type.list_size // 3
                    self.send(path, index, rr.Points3D.columns(positions=points).partition([per_row] * table.num_rows))
                    continue
                self.static(path, rr.SeriesLines(names=series_names(schema.field(name))))
                self.send(path, index, rr.Scalars.columns(scalars=as_matrix(table.column(name))))
            if stream in POSE_STREAMS:
                self.pose(session, stream, table, index)
            self.done(stream, table.num_rows)

    def pose(self, session, stream: str, table: pa.Table, index: rr.TimeColumn) -> None:
        path = entity(session.serial, stream)
        self.static(path, rr.TransformAxes3D(0.1))
        rotation = as_matrix(table.column("rotation"))[:, [1, 2, 3, 0]]  # stored w, x, y, z; Rerun x, y, z, w
        self.send(path, index, rr.Transform3D.columns(translation=as_matrix(table.column("translation_m")),
                                                      quaternion=rotation))

    def camera(self, session, stream: str, schema: pa.Schema) -> None:
        path = entity(session.serial, stream)
        fields = scalar_fields(schema, True)
        layout = ["codec", "pixel_format", "width", "height", "stride_bytes"]
        for table in self.job.rows(session, stream, columns=[*layout, *fields, "timestamp_ns"], with_data=True):
            codec = table.column("codec").to_numpy()
            for kind in np.unique(codec):
                part = table.filter(pa.array(codec == kind)) if len(np.unique(codec)) > 1 else table
                index = self.times(part)
                if kind in VIDEO_CODECS:
                    self.video(path, stream, int(kind), part, index)
                elif kind == CODEC_JPEG:
                    blobs = part.column(DATA_COLUMN).to_pylist()
                    self.send(path, index, rr.EncodedImage.columns(blob=blobs, media_type=["image/jpeg"] * len(blobs)))
                else:
                    self.images(path, part, index)
            for name in fields:
                field_path = entity(session.serial, stream, name)
                self.static(field_path, rr.SeriesLines(names=series_names(schema.field(name))))
                self.send(field_path, self.times(table), rr.Scalars.columns(scalars=as_matrix(table.column(name))))
            self.done(stream, table.num_rows)

    def video(self, path: str, stream: str, codec: int, table: pa.Table, index: rr.TimeColumn) -> None:
        first = self.video_codec.setdefault(path, codec)
        if first != codec:
            # One video stream has one codec; frames of another cannot be decoded in it.
            self.skipped[stream] = self.skipped.get(stream, 0) + table.num_rows
            return
        if path not in self.entities:
            self.recording.log(path, rr.VideoStream(codec=VIDEO_CODECS[codec]), static=True, strict=True)
        samples = [annex_b(frame) for frame in table.column(DATA_COLUMN).to_pylist()]
        keyframes = [images.is_keyframe(codec, sample) for sample in samples]
        self.send(path, index, rr.VideoStream.columns(sample=samples, is_keyframe=keyframes))

    def images(self, path: str, table: pa.Table, index: rr.TimeColumn) -> None:
        buffers, formats = [], []
        columns = [table.column(n).to_pylist() for n in ("pixel_format", "width", "height", "stride_bytes", DATA_COLUMN)]
        for pixel_format, width, height, stride, data in zip(*columns, strict=True):
            buffer, image_format = raw_image(data, pixel_format, width, height, stride)
            buffers.append(buffer)
            formats.append(image_format)
        self.send(path, index, rr.Image.columns(buffer=buffers, format=formats))

    def audio(self, session, stream: str) -> None:
        """PCM blocks as WAV assets (AssetAudio, played from the time each is logged at): a piece
        ends after AUDIO_PIECE_S, where the blocks' format changes, and where a block does not
        start where the one before it ended (lost blocks), so the sound stays on the timeline."""
        path = entity(session.serial, stream)
        piece: list[bytes] = []
        piece_key = None  # (channels, codec, rate), start time ns, samples per channel so far
        start_ns = written = 0

        def emit():
            if piece:
                channels, codec, rate = piece_key
                buffer = io.BytesIO()
                with wave.open(buffer, "wb") as wav:
                    wav.setnchannels(channels)
                    wav.setsampwidth(PCM_BYTES[codec])
                    wav.setframerate(rate)
                    wav.writeframes(b"".join(piece))
                index = self.time_column(np.array([start_ns], np.int64))
                self.send(path, index, rr.AssetAudio.columns(blob=[buffer.getvalue()], media_type=["audio/wav"]))
            piece.clear()

        names = ["channels", "codec", "sample_rate_hz", "samples_per_channel", "timestamp_ns"]
        for table in self.job.rows(session, stream, columns=names, with_data=True):
            columns = [table.column(n).to_pylist() for n in (*names[:4], TIME_COLUMN, DATA_COLUMN)]
            kept = 0
            for channels, codec, rate, samples, time_ns, data in zip(*columns, strict=True):
                if codec not in PCM_BYTES:
                    self.skipped[stream] = self.skipped.get(stream, 0) + 1
                    continue
                key = (channels, codec, rate)
                expected_ns = start_ns + round(written * 1e9 / rate)
                half_block_ns = samples * 1e9 / rate / 2
                if (key != piece_key or abs(time_ns - expected_ns) > half_block_ns
                        or written >= AUDIO_PIECE_S * rate):
                    emit()
                    piece_key, start_ns, written = key, time_ns, 0
                piece.append(data)
                written += samples
                kept += 1
            self.done(stream, kept)
        emit()

    def done(self, stream: str, rows: int) -> None:
        self.rows[stream] = self.rows.get(stream, 0) + rows
        self.progress(rows)


def recording_id(job: ExportJob) -> str:
    """The same sessions, streams, window and clock give the same recording id, so exporting
    them again replaces the recording in a viewer instead of adding a second one."""
    key = [job.clock.name, str(job.start_ns), str(job.end_ns), ",".join(job.wanted or []),
           *sorted(f"{s.serial}/{s.session_id}" for s in job.sessions)]
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "recorder-export:" + "|".join(key)))


def write(job: ExportJob, out: Path, progress) -> dict:
    recording = rr.RecordingStream(APPLICATION_ID, recording_id=recording_id(job))
    recording.save(out)
    try:
        serials = sorted({s.serial for s in job.sessions})
        recording.send_recording_name(f"{', '.join(serials)} ({job.clock.name} clock)")
        writer = RerunWriter(job, recording, progress)
        for session in job.sessions:
            for stream in job.streams(session):
                writer.stream(session, stream)
        recording.flush()
    finally:
        recording.disconnect()
    for stream, count in writer.skipped.items():
        job.notes.append(f"{stream}: {count} rows not in the recording (no Rerun type for them here)")
    return {"rows": writer.rows, "entities": len(writer.entities), "timeline": writer.timeline}
