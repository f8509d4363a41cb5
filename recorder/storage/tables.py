"""Arrow schemas of the stored streams, derived from recorder.schema, and the rows that fill them.

A sample stream has `timestamp_ns` (the message's time field), the wire fields in wire order
(arrays as fixed-size lists), any derived columns, then `sequence` and `source` (the label).
A blob stream's table is an index: the prefix fields, where the bytes are (`file`, `offset`,
`length` of the zstd frame, `size` of the bytes), `message_id`, `timestamp_ns`, `sequence`,
`source`. The verbatim and raw-body streams are indexes of the same kind with columns of their
own. Every schema carries its kind in its metadata, so a part read on its own says what it is.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import FieldSpec, MessageSpec, PrefixSpec, load

ARROW_TYPES = {
    "u8": pa.uint8(), "u16": pa.uint16(), "u32": pa.uint32(), "u64": pa.uint64(),
    "i8": pa.int8(), "i16": pa.int16(), "i32": pa.int32(), "i64": pa.int64(),
    "f32": pa.float32(), "f64": pa.float64(),
}

KIND_KEY = b"recorder.kind"
MESSAGE_KEY = b"recorder.message"
# Field metadata, so that a stored column explains itself without the wire format at hand:
# its unit, its description, the labels of its enumerated codes (JSON {"code": "label"}), and
# whether it is a reserved field (stored bit for bit so a record can be sent back as it came,
# but of no use to a reader).
UNIT_KEY = b"recorder.unit"
DESCRIPTION_KEY = b"recorder.description"
ENUM_KEY = b"recorder.enum"
RESERVED_KEY = b"recorder.reserved"

# Columns computed from the wire fields. TDM's offset is what every reader of the table wants
# (schemas/protocol.md, "Time domain mapping"); the sample fields stay exactly as sent beside it.
DERIVED_COLUMNS = {
    "TIME_DOMAIN_MAPPING_EVENT": [
        ("offset_ns", pa.int64(),
         lambda s: s["broadcaster_timestamp_ns"].astype(np.int64) - s["capture_timestamp_ns"].astype(np.int64)),
    ],
}

BLOB_LOCATION = [
    pa.field("file", pa.string()),  # relative to the stream's folder
    pa.field("offset", pa.uint64()),  # where the zstd frame starts in `file`
    pa.field("length", pa.uint64()),  # the zstd frame's length
    pa.field("size", pa.uint64()),  # the stored bytes' length once decompressed
]


def arrow_type(f: FieldSpec) -> pa.DataType:
    scalar = ARROW_TYPES[f.type]
    return pa.list_(scalar, f.count) if f.shape else scalar


def wire_field(f: FieldSpec) -> pa.Field:
    """The stored column of a wire field, with what the schema says of it as field metadata."""
    meta = {DESCRIPTION_KEY: f.description.encode()}
    if f.unit:
        meta[UNIT_KEY] = f.unit.encode()
    if f.enum:
        labels = load().enums[f.enum].values
        meta[ENUM_KEY] = json.dumps({str(code): label for code, label in labels.items()}).encode()
    if f.name.startswith("reserved"):
        meta[RESERVED_KEY] = b"true"
    return pa.field(f.name, arrow_type(f), metadata=meta)


def enum_labels(field: pa.Field) -> dict[int, str] | None:
    """The labels of a stored enum column's codes, or None if it is not an enum."""
    raw = (field.metadata or {}).get(ENUM_KEY)
    return None if raw is None else {int(code): label for code, label in json.loads(raw).items()}


def is_reserved(field: pa.Field) -> bool:
    return (field.metadata or {}).get(RESERVED_KEY) == b"true"


def _with_kind(fields: list[pa.Field], kind: str, message: str) -> pa.Schema:
    return pa.schema(fields, metadata={KIND_KEY: kind.encode(), MESSAGE_KEY: message.encode()})


def schema_kind(schema: pa.Schema) -> str | None:
    meta = schema.metadata or {}
    value = meta.get(KIND_KEY)
    return value.decode() if value else None


_SCHEMAS: dict[tuple[str, str], pa.Schema] = {}  # specs hold dicts (unhashable): cached by name


def sample_schema(spec: MessageSpec) -> pa.Schema:
    key = ("samples", spec.name)
    if key not in _SCHEMAS:
        _SCHEMAS[key] = _sample_schema(spec)
    return _SCHEMAS[key]


def _sample_schema(spec: MessageSpec) -> pa.Schema:
    fields = [pa.field("timestamp_ns", pa.int64())]
    fields += [wire_field(f) for f in spec.fields if f.name != "timestamp_ns"]
    fields += [pa.field(name, type_) for name, type_, _ in DERIVED_COLUMNS.get(spec.name, ())]
    fields += [pa.field("sequence", pa.uint64()), pa.field("source", pa.string())]
    return _with_kind(fields, "samples", spec.name)


def blob_schema(prefix: PrefixSpec) -> pa.Schema:
    key = ("blob", prefix.name)
    if key not in _SCHEMAS:
        _SCHEMAS[key] = _blob_schema(prefix)
    return _SCHEMAS[key]


def _blob_schema(prefix: PrefixSpec) -> pa.Schema:
    fields = [pa.field("timestamp_ns", pa.int64()), pa.field("sequence", pa.uint64()),
              pa.field("source", pa.string()), pa.field("message_id", pa.uint16())]
    fields += [wire_field(f) for f in prefix.fields]
    return _with_kind(fields + BLOB_LOCATION, "blob", prefix.name)


# Records kept byte for byte, and bytes skipped while resynchronising (reason "corrupt"). Header
# fields are null where the bytes did not reach them; body_offset is set for corrupt bytes only.
VERBATIM_SCHEMA = _with_kind([
    pa.field("timestamp_ns", pa.int64()),
    pa.field("sequence", pa.uint64()),
    pa.field("reason", pa.string()),
    pa.field("detail", pa.string()),
    pa.field("message_id", pa.uint16()),
    pa.field("flags", pa.uint16()),
    pa.field("request", pa.uint32()),
    pa.field("body_offset", pa.uint64()),
    *BLOB_LOCATION,
], "verbatim", "verbatim")

# Bodies that are not version 1: one row per chunk as it arrived, in order, so the body can be
# replayed with the same chunking. No device time exists for them: wall_time_ns is the arrival.
RAW_BODY_SCHEMA = _with_kind([
    pa.field("request", pa.uint32()),
    pa.field("chunk", pa.uint32()),
    pa.field("body_offset", pa.uint64()),
    pa.field("wall_time_ns", pa.int64()),
    *BLOB_LOCATION,
], "raw", "raw-body")


def _column(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """A numpy column (possibly a strided view into a structured array) as an Arrow array."""
    values = np.ascontiguousarray(values)
    if pa.types.is_fixed_size_list(type_):
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), type_.list_size)
    return pa.array(values, type=type_)


def labels_array(codes: np.ndarray, names: list[str]) -> pa.Array:
    """Strings names[codes[i]], built in C: one Python string per distinct label, not per row.
    (Most blocks come from one source: repeating its label is several times quicker than taking
    from the names, which is quicker than casting a dictionary array.)"""
    if len(names) == 1:
        return pa.repeat(pa.scalar(names[0], pa.string()), len(codes))
    return pc.take(pa.array(names, pa.string()), pa.array(codes.astype(np.int32, copy=False)))


def sample_batch(spec: MessageSpec, samples: np.ndarray, sequence: np.ndarray, source: pa.Array) -> pa.RecordBatch:
    """Rows of a sample stream from the decoder's structured samples, without a per-sample loop."""
    schema = sample_schema(spec)
    derived = {name: compute for name, _, compute in DERIVED_COLUMNS.get(spec.name, ())}
    columns = []
    for field in schema:
        if field.name == "timestamp_ns":
            columns.append(_column(samples[spec.time_field].astype(np.int64, copy=False), field.type))
        elif field.name == "sequence":
            columns.append(_column(sequence.astype(np.uint64, copy=False), field.type))
        elif field.name == "source":
            columns.append(source)
        elif field.name in derived:
            columns.append(_column(derived[field.name](samples), field.type))
        else:
            columns.append(_column(samples[field.name], field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)
