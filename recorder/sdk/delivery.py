"""Delivery: one device's stored rows handed to the callbacks of a StreamDataInterface.

    delivery = Delivery(stream_data, "1M0YDA9HNM2419")
    delivery.calibration(calibration_bytes)          # device_calib
    delivery.rows("imu-right", batch)                # one callback call per row, in row order
    delivery.finish()                                # frames a video decoder still held back

`batch` holds the stream's stored columns (Session.schema(stream).names, as storage writes
them); camera and audio batches also hold a binary `data` column with each row's bytes (the
decompressed blob). Replay and the live feed both deliver through this class. A batch is taken
to hold whole records (as the decoder gives them): a sample record split over two batches gives
one imu_batch call and one raw_message, with the samples of the first (replay passes the rest of
a record its read cut as `following`).

A callback that raises is reported through on_error(device_id, stream, timestamp_ns, exception)
(by default one line on stderr) and delivery goes on, with that callback and every other: the
vendor's SDK silently stops calling all of them instead. `delivered` counts callback calls per
stream, `errors` the calls that raised, `skipped` camera frames that could not be decoded (see
recorder.sdk.cameras). Batches of verbatim records and raw bodies feed no callback and are
ignored; a batch of any other columns no message has is a ValueError. Not thread-safe: one
Delivery is fed from one thread.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable

import pyarrow as pa

from .cameras import CameraImages
from .data import DeviceCalibration
from .interface import StreamDataInterface
from .raw import RawMessages
from .rows import KINDS_OF, SAMPLE_ROWS, AudioRows, CameraRows, Event, ImuRows, Rows
from .streams import AUDIO, CAMERA, UNDECODED, message_of

CALIBRATION_STREAM = "calibration"  # the `stream` on_error names for device_calib

ErrorHandler = Callable[[str, str, int | None, BaseException], None]


def print_error(device_id: str, stream: str, timestamp_ns: int | None, exception: BaseException) -> None:
    at = "" if timestamp_ns is None else f" at {timestamp_ns} ns"
    print(f"callback error: device {device_id}, stream {stream}{at}: {type(exception).__name__}: {exception}",
          file=sys.stderr, flush=True)


class Delivery:
    def __init__(self, stream_data: StreamDataInterface, device_id: str, *, on_error: ErrorHandler | None = None):
        if not isinstance(stream_data, StreamDataInterface):
            raise TypeError(f"Delivery needs a StreamDataInterface, not {type(stream_data).__name__}")
        self.stream_data = stream_data
        self.device_id = device_id
        self.on_error = on_error or print_error
        self.errors = 0
        self.delivered: Counter[str] = Counter()
        self._cameras: dict[str, CameraImages] = {}
        self._messages: dict[tuple[str, pa.Schema], str] = {}
        self._batched: dict[str, int] = {}  # sample stream -> the last record its batches began
        self._raw_offset = 0

    @property
    def skipped(self) -> dict[str, int]:
        """Camera frames per stream that could not be decoded, hence not delivered."""
        return {stream: images.skipped for stream, images in self._cameras.items() if images.skipped}

    # -- what the live feed and replay call --------------------------------------------------

    def rows(self, stream: str, batch: pa.RecordBatch) -> None:
        """Fire the stream's callbacks once per row of `batch`, in row order."""
        prepared = self.prepare(stream, batch)
        if prepared is None:
            return
        for i in range(len(prepared)):
            self.fire(stream, prepared.deliver(i))

    def calibration(self, data: bytes | None) -> None:
        """Fire device_calib with the calibration header's bytes (None: the device sent none,
        nothing fires)."""
        if data is None:
            return
        self._call("device_calib", (DeviceCalibration(bytes(data)),), CALIBRATION_STREAM, None)

    def finish(self) -> None:
        """At the end of a device's data: deliver camera frames the decoders still hold."""
        for stream, images in self._cameras.items():
            self.fire(stream, [(kind, (image, record), record.capture_timestamp_ns)
                               for (kind, record), image in images.flush()])

    # -- the steps of rows(), for replay's merge across streams --------------------------------

    def prepare(self, stream: str, batch: pa.RecordBatch, following: pa.RecordBatch | None = None) -> Rows | None:
        """The batch's columns converted once; None when no registered callback wants them.
        following: rows after the batch, for the record it ends in (imu_batch, raw_message)."""
        if not batch.num_rows:
            return None
        message = self._message(stream, batch.schema)
        if message == UNDECODED:  # verbatim records, raw bodies: no callback takes them
            return None
        wanted = {k for k in KINDS_OF[message] if k in self.stream_data.callbacks}
        if not wanted and not self.wants_raw:
            return None
        batched = self._batched.get(stream)
        if message == CAMERA:
            rows = CameraRows(batch, self.camera(stream), wanted)
        elif not wanted:
            rows = Rows(batch)
        elif message == AUDIO:
            rows = AudioRows(batch)
        elif message == "IMU_EVENT":
            rows = ImuRows(batch, following, batched)
        else:
            rows = SAMPLE_ROWS[message](batch)
        if message not in (CAMERA, AUDIO):
            self._batched[stream] = int(batch.column("sequence")[batch.num_rows - 1].as_py())
        if self.wants_raw:
            rows.raw = RawMessages(message, stream, batch, following, batched)
        return rows

    @property
    def wants_raw(self) -> bool:
        return self.stream_data.enable_raw_stream and "raw_message" in self.stream_data.callbacks

    def prime(self, stream: str, batch: pa.RecordBatch) -> None:
        """Feed camera frames to the stream's decoder without delivering them: the frames from
        the keyframe before a window's start or a seek, so that the frames after it decode."""
        prepared = self.prepare(stream, batch) if batch.num_rows else None
        if isinstance(prepared, CameraRows):
            for i in range(len(prepared)):
                prepared.prime(i)

    def reset(self) -> None:
        """Before rows that do not follow the ones delivered so far (a seek, a loop): decoders
        start again from a keyframe, and IMU records are new."""
        for images in self._cameras.values():
            images.reset()
        self._batched.clear()

    def camera(self, stream: str) -> CameraImages:
        if stream not in self._cameras:
            self._cameras[stream] = CameraImages(self.stream_data.enable_image_decoding)
        return self._cameras[stream]

    def fire(self, stream: str, events: list[Event]) -> None:
        for kind, args, timestamp_ns in events:
            if kind == "raw_message":  # offset: where the record starts among those delivered
                args, self._raw_offset = (*args, self._raw_offset), self._raw_offset + len(args[0].data)
            self._call(kind, args, stream, timestamp_ns)

    def _call(self, kind: str, args: tuple, stream: str, timestamp_ns: int | None) -> None:
        callback = self.stream_data.callbacks.get(kind)
        if callback is None:
            return
        self.delivered[stream] += 1
        try:
            if callback.wants_device_id:
                callback.function(*args, device_id=self.device_id)
            else:
                callback.function(*args)
        except Exception as exc:  # user code: reported, never the end of delivery
            self.errors += 1
            try:
                self.on_error(self.device_id, stream, timestamp_ns, exc)
            except Exception as handler_exc:
                print_error(self.device_id, stream, timestamp_ns, handler_exc)

    def _message(self, stream: str, schema: pa.Schema) -> str:
        key = (stream, schema)
        if key not in self._messages:
            self._messages[key] = message_of(stream, schema)
        return self._messages[key]
