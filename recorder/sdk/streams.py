"""Which message a stored stream holds, told from its columns: the callbacks it feeds.

A stream's stored schema names its message in its metadata (recorder.message); batches that
lost the metadata (built by hand, or selected column by column) are recognised by their column
names, which differ between every two message layouts of schemas/messages.toml.
"""

from __future__ import annotations

import pyarrow as pa

from ..schema import load
from ..storage.tables import MESSAGE_KEY

CAMERA = "camera"
AUDIO = "audio"
UNDECODED = "undecoded"  # verbatim records and raw bodies: bytes kept as received, no callback
_SCHEMA = load()
CAMERA_KINDS = {  # message id of a frame -> the callback it feeds
    _SCHEMA.message("SLAM_CAMERA_FRAME").id: "slam",
    _SCHEMA.message("ET_CAMERA_FRAME").id: "et",
    _SCHEMA.message("POV_CAMERA_FRAME").id: "rgb",
}
CAMERA_ID_KINDS = {1: "slam", 2: "slam", 4: "slam", 8: "slam", 16: "et", 32: "et", 64: "rgb"}
_SAMPLE_FIELDS = {spec.name: {f.name for f in spec.fields} for spec in _SCHEMA.messages.values() if spec.is_samples}


def message_of(stream: str, schema: pa.Schema) -> str:
    """CAMERA, AUDIO, UNDECODED, or the name of the sample message (IMU_EVENT, MP_VIO_RESULT, ...)."""
    names = set(schema.names)
    if {"reason", "body_offset"} <= names or {"chunk", "wall_time_ns"} <= names:
        return UNDECODED
    if "camera_id" in names and "frame_number" in names:
        return CAMERA
    if "sample_rate_hz" in names and "channels" in names:
        return AUDIO
    declared = (schema.metadata or {}).get(MESSAGE_KEY, b"").decode()
    if declared in _SAMPLE_FIELDS:
        return declared
    for name, fields in _SAMPLE_FIELDS.items():
        # The time field is stored as timestamp_ns (TDM keeps capture_timestamp_ns beside it).
        if fields - {"timestamp_ns"} <= names and names - {"sequence", "source", "offset_ns"} <= fields | {"timestamp_ns"}:
            return name
    raise ValueError(f"stream {stream!r} holds no message the SDK's callbacks know "
                     f"(columns: {', '.join(schema.names)})")
