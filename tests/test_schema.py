"""schemas/messages.toml against the tables of the device stream protocol, version 1.

The expected layouts below are transcribed by hand from the protocol's specification, which is an external
contract: when a test here fails, the schema is wrong, not the table.
"""

from __future__ import annotations

import numpy as np
import pytest

from recorder.schema import load

SCHEMA = load()

# ---------------------------------------------------------------------------------------------
# The specification, "Framing": offset, size, type, field.
HEADER = [
    (0, 4, "bytes4", "magic"),
    (4, 2, "u16", "message_id"),
    (6, 2, "u16", "flags"),
    (8, 4, "u32", "payload_length"),
    (12, 4, "u32", "crc32"),  # spec: "CRC-32 of the payload"
    (16, 8, "u64", "sequence"),
    (24, 8, "i64", "timestamp_ns"),
]


def hand(side: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """The 77 f32 of one hand, in the spec's order, with the schema's left_/right_ name prefix."""
    return [
        (f"{side}_confidence", "f32", ()),
        (f"{side}_wrist_translation_m", "f32", (3,)),
        (f"{side}_wrist_rotation", "f32", (4,)),
        (f"{side}_wrist_normal", "f32", (3,)),
        (f"{side}_palm_normal", "f32", (3,)),
        (f"{side}_landmarks_m", "f32", (63,)),
    ]


# The specification, "Payloads": id, name, (sample fields: name, type, shape), sample size in parentheses.
SAMPLE_MESSAGES = {
    "IMU_EVENT": (0x8020, [
        ("timestamp_ns", "i64", ()), ("accel_msec2", "f32", (3,)), ("gyro_radsec", "f32", (3,)),
        ("temperature_c", "f32", ())], 36),
    "MAG": (0x8022, [
        ("timestamp_ns", "i64", ()), ("mag_tesla", "f32", (3,)), ("temperature_c", "f32", ())], 24),
    "BARO": (0x8021, [
        ("timestamp_ns", "i64", ()), ("pressure_pa", "f32", ()), ("temperature_c", "f32", ())], 16),
    "TEMP": (0x8023, [("timestamp_ns", "i64", ()), ("temperature_c", "f32", ())], 12),
    "PPG": (0x8024, [
        ("timestamp_ns", "i64", ()), ("value", "f32", ()), ("led_current_ma", "f32", ()),
        ("integration_time_us", "f32", ())], 20),
    "GNSS": (0x8025, [
        ("timestamp_ns", "i64", ()), ("utc_time_ms", "i64", ()), ("latitude_deg", "f64", ()),
        ("longitude_deg", "f64", ()), ("altitude_m", "f64", ()), ("accuracy_m", "f32", ()),
        ("speed_mps", "f32", ())], 48),
    "TIME_DOMAIN_MAPPING_EVENT": (0x8026, [
        ("capture_timestamp_ns", "i64", ()), ("broadcaster_timestamp_ns", "i64", ()),
        ("broadcaster_id", "u32", ())], 20),
    "BATTERY_STATUS": (0x8008, [
        ("timestamp_ns", "i64", ()), ("voltage_v", "f32", ()), ("level_percent", "u8", ()),
        ("charging", "u8", ()), ("reserved", "u16", ())], 16),
    "MP_ET_RESULT": (0x8030, [
        ("timestamp_ns", "i64", ()), ("yaw_rad", "f32", ()), ("pitch_rad", "f32", ()), ("depth_m", "f32", ()),
        ("yaw_low_rad", "f32", ()), ("yaw_high_rad", "f32", ()), ("pitch_low_rad", "f32", ()),
        ("pitch_high_rad", "f32", ()), ("vergence_rad", "f32", ()), ("reserved", "f32", (2,)),
        ("valid", "u32", ())], 52),
    "MP_HT_RESULT": (0x8031, [("timestamp_ns", "i64", ())] + hand("left") + hand("right"), 624),
    "MP_VIO_RESULT": (0x8032, [
        ("timestamp_ns", "i64", ()), ("status", "u8", ()), ("pose_quality", "u8", ()), ("reserved", "u16", ()),
        ("visual_tracking_quality", "f32", ()), ("translation_m", "f64", (3,)), ("rotation", "f64", (4,)),
        ("linear_velocity_mps", "f32", (3,)), ("angular_velocity_radps", "f32", (3,)),
        ("gravity_msec2", "f32", (3,))], 108),
    "MP_VIO_HIGH_FREQUENCY_POSE": (0x8033, [
        ("timestamp_ns", "i64", ()), ("translation_m", "f64", (3,)), ("rotation", "f64", (4,)),
        ("linear_velocity_mps", "f32", (3,)), ("angular_velocity_radps", "f32", (3,)),
        ("gravity_msec2", "f32", (3,)), ("quality_score", "f32", ())], 104),
}

# The time field: "each starting with its own i64 timestamp_ns"; TDM's first field is the
# capture time on this device's clock.
TIME_FIELDS = {name: fields[0][0] for name, (_, fields, _) in SAMPLE_MESSAGES.items()}

# Named sources of the spec's "source" column.
NAMED_SOURCES = {
    "IMU_EVENT": {0: "imu-left", 1: "imu-right"},
    "MAG": {0: "mag0"},
    "BARO": {0: "baro0"},
}

BLOB_MESSAGES = {
    "SLAM_CAMERA_FRAME": (0x8010, "camera_frame"),
    "ET_CAMERA_FRAME": (0x8011, "camera_frame"),
    "POV_CAMERA_FRAME": (0x8012, "camera_frame"),
    "AUDIO_REC_DATA": (0x8001, "audio_block"),
}

# Camera prefix table: offset, type, field (the two reserved fields are named reserved0/1 in the schema).
CAMERA_PREFIX = [
    (0, "u8", "camera_id"), (1, "u8", "codec"), (2, "u8", "pixel_format"), (3, "u8", "reserved0"),
    (4, "u32", "frame_number"), (8, "u16", "width"), (10, "u16", "height"), (12, "u32", "stride_bytes"),
    (16, "f32", "exposure_duration_s"), (20, "f32", "gain"), (24, "f32", "temperature_c"),
    (28, "u32", "reserved1"),
]
AUDIO_PREFIX = [
    (0, "u8", "channels"), (1, "u8", "codec"), (2, "u16", "reserved0"), (4, "u32", "sample_rate_hz"),
    (8, "u32", "samples_per_channel"), (12, "u32", "reserved1"),
]
CAMERA_IDS = {1: "slam-front-left", 2: "slam-front-right", 4: "slam-side-left", 8: "slam-side-right",
              16: "camera-et-left", 32: "camera-et-right", 64: "camera-rgb"}
CAMERA_CODECS = {0: "RAW", 1: "JPEG", 2: "H264", 3: "H265"}
PIXEL_FORMATS = {0: "GRAY8", 1: "RGB24", 2: "YUV420P"}
AUDIO_CODECS = {0: "PCM_S16LE", 1: "PCM_S32LE", 2: "OPUS"}
VIO_STATUS = {0: "VALID", 1: "FILTER_NOT_INITIALIZED", 2: "INVALID"}
VIO_POSE_QUALITY = {0: "GOOD", 1: "BAD", 2: "UNKNOWN"}

TYPE_SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "i64": 8, "f32": 4, "f64": 8, "bytes4": 4}


def numpy_kind(wire_type: str) -> np.dtype:
    return np.dtype({"u8": "<u1", "u16": "<u2", "u32": "<u4", "u64": "<u8", "i64": "<i8",
                     "f32": "<f4", "f64": "<f8", "bytes4": "S4"}[wire_type])


# --- framing ---------------------------------------------------------------------------------


def test_format_version_is_1():
    assert SCHEMA.format_version == 1


def test_framing_constants():
    framing = SCHEMA.framing
    assert framing.magic == b"SRF1"
    assert framing.header_size == 32
    assert framing.max_payload_length == 64 * 1024 * 1024
    assert framing.opaque_flag == 0x0001  # bit 0
    assert framing.reserved_flags_mask == 0xFFFE  # bits 1-15


def test_header_fields_offsets_and_types():
    dtype = SCHEMA.framing.header_dtype
    assert dtype.itemsize == 32
    assert list(dtype.names) == [name for _, _, _, name in HEADER]
    for offset, size, wire_type, name in HEADER:
        field_dtype, field_offset = dtype.fields[name][:2]
        assert field_offset == offset, name
        assert field_dtype.itemsize == size, name
        assert field_dtype == numpy_kind(wire_type), name
    assert [f.type for f in SCHEMA.framing.header] == [t for _, _, t, _ in HEADER]


def test_sample_prefix_is_u16_source_then_u16_count():
    dtype = SCHEMA.framing.sample_prefix_dtype
    assert dtype.itemsize == 4
    assert list(dtype.names) == ["source", "count"]
    assert dtype.fields["source"][:2] == (np.dtype("<u2"), 0)
    assert dtype.fields["count"][:2] == (np.dtype("<u2"), 2)


def test_every_dtype_is_little_endian_and_packed():
    dtypes = [SCHEMA.framing.header_dtype, SCHEMA.framing.sample_prefix_dtype]
    dtypes += [m.dtype for m in SCHEMA.messages.values() if m.is_samples]
    dtypes += [p.dtype for p in SCHEMA.prefixes.values()]
    for dtype in dtypes:
        assert not dtype.isalignedstruct
        total = 0
        for name in dtype.names:
            field_dtype, offset = dtype.fields[name][:2]
            assert offset == total, (dtype, name)  # no padding
            total += field_dtype.itemsize
            base = field_dtype.base
            assert base.byteorder in ("<", "|", "=") and (base.byteorder != "=" or np.little_endian)
        assert total == dtype.itemsize


# --- messages --------------------------------------------------------------------------------


def test_message_table_is_exactly_the_spec_table():
    expected = {**{name: m[0] for name, m in SAMPLE_MESSAGES.items()},
                **{name: m[0] for name, m in BLOB_MESSAGES.items()}}
    assert {m.name: m.id for m in SCHEMA.messages.values()} == expected
    for message_id, spec in SCHEMA.messages.items():
        assert spec.id == message_id


@pytest.mark.parametrize("name", sorted(SAMPLE_MESSAGES))
def test_sample_size_equals_the_spec_number(name):
    message_id, fields, size = SAMPLE_MESSAGES[name]
    spec = SCHEMA.message(name)
    assert spec.is_samples
    assert SCHEMA.message(message_id) is spec
    assert spec.sample_size == size
    # The spec's fields add up to its number too (a check of the transcription above).
    assert sum(TYPE_SIZES[t] * int(np.prod(shape)) for _, t, shape in fields) == size


@pytest.mark.parametrize("name", sorted(SAMPLE_MESSAGES))
def test_sample_fields_have_the_spec_names_types_and_shapes(name):
    _, fields, _ = SAMPLE_MESSAGES[name]
    spec = SCHEMA.message(name)
    assert [(f.name, f.type, f.shape) for f in spec.fields] == fields
    offset = 0
    for field_name, wire_type, shape in fields:
        field_dtype, field_offset = spec.dtype.fields[field_name][:2]
        assert field_offset == offset, field_name
        assert field_dtype.base == numpy_kind(wire_type), field_name
        assert field_dtype.shape == shape, field_name
        offset += field_dtype.itemsize


@pytest.mark.parametrize("name", sorted(SAMPLE_MESSAGES))
def test_time_field_is_the_first_timestamp(name):
    assert SCHEMA.message(name).time_field == TIME_FIELDS[name]


def test_hand_tracking_sample_is_two_hands_of_77_f32():
    spec = SCHEMA.message("MP_HT_RESULT")
    for side in ("left", "right"):
        n = sum(spec.dtype.fields[f][0].itemsize // 4 for f in spec.dtype.names if f.startswith(side + "_"))
        assert n == 77
    assert spec.dtype.fields["left_confidence"][1] == 8
    assert spec.dtype.fields["right_confidence"][1] == 8 + 77 * 4


@pytest.mark.parametrize("name,labels", sorted(NAMED_SOURCES.items()))
def test_named_source_labels(name, labels):
    spec = SCHEMA.message(name)
    for code, label in labels.items():
        assert spec.source_label(code) == label
        assert spec.source_code(label) == code


def test_imu_streams_are_split_by_source():
    # imu-left and imu-right are two sensors; their samples must not be mixed into one stream.
    assert SCHEMA.message("IMU_EVENT").split_by_source


def test_temperature_source_is_the_sensor_index():
    spec = SCHEMA.message("TEMP")
    assert spec.source_label(0) != spec.source_label(3)
    assert "3" in spec.source_label(3)


# --- blobs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BLOB_MESSAGES))
def test_blob_messages_use_their_prefix(name):
    message_id, prefix = BLOB_MESSAGES[name]
    spec = SCHEMA.message(name)
    assert spec.id == message_id
    assert not spec.is_samples
    assert spec.prefix.name == prefix


@pytest.mark.parametrize("prefix,table,size", [("camera_frame", CAMERA_PREFIX, 32), ("audio_block", AUDIO_PREFIX, 16)])
def test_blob_prefix_fields_offsets_and_types(prefix, table, size):
    spec = SCHEMA.prefixes[prefix]
    assert spec.size == size
    assert spec.dtype.itemsize == size
    assert list(spec.dtype.names) == [name for _, _, name in table]
    for offset, wire_type, name in table:
        field_dtype, field_offset = spec.dtype.fields[name][:2]
        assert field_offset == offset, name
        assert field_dtype == numpy_kind(wire_type), name
    assert [f.type for f in spec.fields] == [t for _, t, _ in table]


def test_camera_label_is_the_camera_id():
    spec = SCHEMA.prefixes["camera_frame"]
    assert spec.label_field == "camera_id"
    enum = SCHEMA.enums[next(f.enum for f in spec.fields if f.name == "camera_id")]
    assert enum.values == CAMERA_IDS


def test_audio_channels_range_is_1_to_16():
    channels = next(f for f in SCHEMA.prefixes["audio_block"].fields if f.name == "channels")
    assert channels.range == (1, 16)


@pytest.mark.parametrize("prefix,field_name,values", [
    ("camera_frame", "codec", CAMERA_CODECS),
    ("camera_frame", "pixel_format", PIXEL_FORMATS),
    ("audio_block", "codec", AUDIO_CODECS),
])
def test_prefix_enums(prefix, field_name, values):
    field_spec = next(f for f in SCHEMA.prefixes[prefix].fields if f.name == field_name)
    assert SCHEMA.enums[field_spec.enum].values == values


def test_codecs_are_strict():
    # A codec outside the spec's list cannot be decoded: such a frame or block is malformed.
    for prefix in ("camera_frame", "audio_block"):
        codec = next(f for f in SCHEMA.prefixes[prefix].fields if f.name == "codec")
        assert codec.strict


@pytest.mark.parametrize("field_name,values", [("status", VIO_STATUS), ("pose_quality", VIO_POSE_QUALITY)])
def test_vio_enums(field_name, values):
    field_spec = next(f for f in SCHEMA.message("MP_VIO_RESULT").fields if f.name == field_name)
    assert SCHEMA.enums[field_spec.enum].values == values
