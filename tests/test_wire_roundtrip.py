"""Round trips: what the encoder writes, the decoder gives back, however the body is cut.

Every message type of the spec (all sample messages, all blob messages), OPAQUE records and
records with an unknown message id are written with random contents, concatenated into a body,
cut into pieces at random places (and, for small bodies, at every single place), and decoded.
What comes out must equal what went in, record for record (floats are compared by their bytes, so
NaN payloads count), with every sequence number kept and every error counter at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recorder.schema import load
from recorder.wire import Decoder, Encoder, record

SCHEMA = load()
SAMPLE_SPECS = sorted((m for m in SCHEMA.messages.values() if m.is_samples), key=lambda m: m.id)
SMALL_SAMPLE_SPECS = [m for m in SAMPLE_SPECS if m.sample_size <= 52]
BLOB_SPECS = sorted((m for m in SCHEMA.messages.values() if not m.is_samples), key=lambda m: m.id)
KNOWN_IDS = set(SCHEMA.messages)

# The protocol (schemas/messages.md): camera ids and their labels; an id outside the table is labelled camera-<id>
# (the schema's documented choice, `unknown = "camera-{value}"`).
CAMERA_LABELS = {1: "slam-front-left", 2: "slam-front-right", 4: "slam-side-left", 8: "slam-side-right",
                 16: "camera-et-left", 32: "camera-et-right", 64: "camera-rgb"}
RAW, JPEG, H264, H265 = 0, 1, 2, 3
GRAY8, RGB24, YUV420P = 0, 1, 2
PCM_S16LE, PCM_S32LE, OPUS = 0, 1, 2

BOUNDED = settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])


# --- what goes in ----------------------------------------------------------------------------


@dataclass
class Sent:
    """One record as written, and what the decoder must give back for it."""

    kind: str  # "samples", "blob", "opaque", "unknown_id"
    message_id: int
    timestamp_ns: int = 0
    source: int = 0
    samples: np.ndarray | None = None
    prefix: dict | None = None
    label: str | None = None
    data: bytes = b""
    sequence: int = -1
    record: bytes = b""


@st.composite
def sample_arrays(draw, spec, max_count: int = 6) -> np.ndarray:
    """`count` samples of `spec`, 0 <= count <= max_count: either any bit pattern at all, or
    field by field with numpy's full value range (NaN, infinities, -0.0, extremes)."""
    count = draw(st.integers(0, max_count))
    if draw(st.booleans()):
        raw = draw(st.binary(min_size=count * spec.sample_size, max_size=count * spec.sample_size))
        return np.frombuffer(raw, spec.dtype).copy()
    out = np.zeros(count, spec.dtype)
    for f in spec.fields:
        out[f.name] = draw(hnp.arrays(np.dtype(f.numpy_type), (count, *f.shape)))
    return out


@st.composite
def sample_records(draw, spec=None, max_count: int = 6, specs=SAMPLE_SPECS) -> Sent:
    spec = spec or draw(st.sampled_from(specs))
    samples = draw(sample_arrays(spec, max_count))
    source = draw(st.one_of(st.sampled_from(sorted(spec.sources) or [0]), st.integers(0, 0xFFFF)))
    timestamp = int(samples[spec.time_field][0]) if len(samples) else 0
    return Sent("samples", spec.id, timestamp, source=source, samples=samples)


F32 = st.floats(width=32)  # NaN and infinities included
U8, U16, U32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF_FFFF)
I64 = st.integers(-(2**63), 2**63 - 1)
IMAGE_BYTES = st.one_of(st.binary(max_size=64), st.just(b"SRF1" * 4))


@st.composite
def camera_frames(draw, spec=None) -> Sent:
    """A frame with a valid prefix: RAW images add up to stride x height (x 3/2 for YUV420P)."""
    spec = spec or draw(st.sampled_from([m for m in BLOB_SPECS if m.prefix.name == "camera_frame"]))
    camera_id = draw(st.one_of(st.sampled_from(sorted(CAMERA_LABELS)), U8))
    codec = draw(st.sampled_from([RAW, JPEG, H264, H265]))
    if codec == RAW:
        pixel_format = draw(st.sampled_from([GRAY8, RGB24, YUV420P]))
        stride = draw(st.integers(0, 16))
        height = draw(st.integers(0, 4)) * (2 if pixel_format == YUV420P else 1)
        size = stride * height * 3 // 2 if pixel_format == YUV420P else stride * height
        data = draw(st.binary(min_size=size, max_size=size))
        width = draw(U16)
    else:
        pixel_format, stride = draw(U8), 0
        height, width = draw(U16), draw(U16)
        data = draw(IMAGE_BYTES)
    prefix = {"camera_id": camera_id, "codec": codec, "pixel_format": pixel_format, "reserved0": 0,
              "frame_number": draw(U32), "width": width, "height": height, "stride_bytes": stride,
              "exposure_duration_s": draw(F32), "gain": draw(F32), "temperature_c": draw(F32), "reserved1": 0}
    label = CAMERA_LABELS.get(camera_id, f"camera-{camera_id}")
    return Sent("blob", spec.id, draw(I64), prefix=prefix, label=label, data=data)


@st.composite
def audio_blocks(draw) -> Sent:
    """A block with a valid prefix: PCM data is channels x samples x bytes-per-sample long."""
    channels = draw(st.integers(1, 16))
    codec = draw(st.sampled_from([PCM_S16LE, PCM_S32LE, OPUS]))
    if codec == OPUS:
        samples_per_channel = draw(U32)
        data = draw(IMAGE_BYTES)
    else:
        samples_per_channel = draw(st.integers(0, 5))
        size = channels * samples_per_channel * (2 if codec == PCM_S16LE else 4)
        data = draw(st.binary(min_size=size, max_size=size))
    prefix = {"channels": channels, "codec": codec, "reserved0": 0, "sample_rate_hz": draw(U32),
              "samples_per_channel": samples_per_channel, "reserved1": 0}
    return Sent("blob", SCHEMA.message("AUDIO_REC_DATA").id, draw(I64), prefix=prefix, label="mic", data=data)


@st.composite
def opaque_records(draw) -> Sent:
    """OPAQUE set: any id (known ones too), any payload."""
    return Sent("opaque", draw(U16), draw(I64), data=draw(st.binary(max_size=64)))


@st.composite
def unknown_id_records(draw) -> Sent:
    message_id = draw(U16.filter(lambda i: i not in KNOWN_IDS))
    return Sent("unknown_id", message_id, draw(I64), data=draw(st.binary(max_size=64)))


ANY_RECORD = st.one_of(sample_records(max_count=3), camera_frames(), audio_blocks(), opaque_records(),
                       unknown_id_records())


def encode(records: list[Sent], first_sequence: int = 0) -> bytes:
    """Write records as a device does, numbering sequences from first_sequence."""
    encoder = Encoder(first_sequence=first_sequence)
    out = []
    for r in records:
        r.sequence = encoder.next_sequence
        if r.kind == "samples":
            r.record = encoder.samples(r.message_id, r.source, r.samples)
        elif r.kind == "blob":
            r.record = encoder.blob(r.message_id, r.prefix, r.data, r.timestamp_ns)
        elif r.kind == "opaque":
            r.record = encoder.opaque(r.message_id, r.data, r.timestamp_ns)
        else:
            r.record = record(r.message_id, r.data, sequence=r.sequence, timestamp_ns=r.timestamp_ns)
            encoder.next_sequence += 1
        out.append(r.record)
    return b"".join(out)


# --- what comes out --------------------------------------------------------------------------


def pieces(body: bytes, cuts) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(body)]
    return [body[a:b] for a, b in pairwise(bounds)]


def decode(parts, highest_sequence=None, group: int = 0):
    """Feed the parts (with feed_pieces, `group` at a time, if group), close; returns {sequence:
    what came out for it} and the decoder."""
    decoder = Decoder(highest_sequence=highest_sequence)
    if group:
        batches = [decoder.feed_pieces(parts[i:i + group]) for i in range(0, len(parts), group)]
    else:
        batches = [decoder.feed(p) for p in parts]
    batches.append(decoder.close())
    out: dict[int, tuple] = {}

    def put(sequence, item):
        assert sequence not in out, f"sequence {sequence} given out twice"
        out[sequence] = item

    for batch in batches:
        assert not batch.corrupt
        for block in batch.samples:
            assert len(block.sequence) == len(block.source) == len(block.samples)
            assert np.all(np.diff(block.sequence.astype(np.float64)) >= 0), "samples out of arrival order"
            for sequence in np.unique(block.sequence).tolist():
                mine = block.sequence == sequence
                sources = np.unique(block.source[mine]).tolist()
                assert len(sources) == 1
                put(sequence, ("samples", block.message.id, sources[0], block.samples[mine].tobytes(),
                               block.samples[mine]))
        for blob in batch.blobs:
            put(blob.sequence, ("blob", blob.message.id, blob.timestamp_ns, blob.label, blob.prefix,
                                bytes(blob.data)))
        for v in batch.verbatim:
            put(v.sequence, (v.reason, v.message_id, v.flags, v.timestamp_ns, bytes(v.data)))
    return out, decoder


def same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def assert_round_trip(records: list[Sent], out: dict, decoder: Decoder, body: bytes, by_field: bool = True) -> None:
    """What came out is what was sent. Samples are compared bit for bit and (by_field) column by
    column with NaN-aware equality, as a user would read them."""
    for r in records:
        if r.kind == "samples" and not len(r.samples):
            # A record of zero samples is decoded (counted) but carries nothing to give out.
            assert r.sequence not in out
            continue
        got = out.pop(r.sequence)
        if r.kind == "samples":
            kind, message_id, source, raw, samples = got
            assert (kind, message_id, source) == ("samples", r.message_id, r.source)
            assert raw == r.samples.tobytes()  # bit for bit, NaN payloads included
            for name in r.samples.dtype.names if by_field else ():
                np.testing.assert_array_equal(samples[name], r.samples[name])  # NaN-aware
        elif r.kind == "blob":
            kind, message_id, timestamp, label, prefix, data = got
            assert (kind, message_id, timestamp, label, data) == ("blob", r.message_id, r.timestamp_ns, r.label, r.data)
            assert prefix.keys() == r.prefix.keys()
            for name, value in r.prefix.items():
                assert same_value(prefix[name], value), (name, prefix[name], value)
        else:
            reason, message_id, flags, timestamp, data = got
            assert reason == r.kind
            assert (message_id, flags, timestamp, data) == (r.message_id, 1 if r.kind == "opaque" else 0,
                                                            r.timestamp_ns, r.record)
    assert not out, f"decoded records that were not sent: {sorted(out)}"

    decoded = [r for r in records if r.kind in ("samples", "blob")]
    assert decoder.counters.as_dict() == {
        "records": len(decoded),
        "samples": sum(len(r.samples) for r in records if r.kind == "samples"),
        "blobs": sum(r.kind == "blob" for r in records),
        "bytes": len(body),
        "corrupt_bytes": 0, "bad_crc": 0, "oversized": 0, "reserved_flags": 0, "malformed": 0, "truncated": 0,
        "opaque": sum(r.kind in ("opaque", "unknown_id") for r in records),
        "gaps": 0, "resends": 0,
    }
    if records:
        assert decoder.highest_sequence == records[-1].sequence
    assert decoder.pending_bytes == 0


@st.composite
def cut_points(draw, length: int) -> list[int]:
    """Where to cut a body: nowhere, everywhere (1-byte pieces), or at random places."""
    how = draw(st.sampled_from(["whole", "bytes", "random", "random"]))
    if how == "whole" or length == 0:
        return []
    if how == "bytes":
        return list(range(1, length))
    return draw(st.lists(st.integers(0, length), max_size=12))


# --- every message type ----------------------------------------------------------------------


@pytest.mark.parametrize("spec", SAMPLE_SPECS, ids=lambda m: m.name)
@BOUNDED
@given(data=st.data())
def test_sample_messages_round_trip(spec, data):
    records = data.draw(st.lists(sample_records(spec, max_count=5), min_size=1, max_size=4))
    body = encode(records)
    cuts = data.draw(cut_points(len(body)))
    out, decoder = decode(pieces(body, cuts))
    assert_round_trip(records, out, decoder, body)


@pytest.mark.parametrize("spec", [m for m in BLOB_SPECS if m.prefix.name == "camera_frame"], ids=lambda m: m.name)
@BOUNDED
@given(data=st.data())
def test_camera_frames_round_trip(spec, data):
    records = data.draw(st.lists(camera_frames(spec), min_size=1, max_size=4))
    body = encode(records)
    out, decoder = decode(pieces(body, data.draw(cut_points(len(body)))))
    assert_round_trip(records, out, decoder, body)


@BOUNDED
@given(data=st.data())
def test_audio_blocks_round_trip(data):
    records = data.draw(st.lists(audio_blocks(), min_size=1, max_size=4))
    body = encode(records)
    out, decoder = decode(pieces(body, data.draw(cut_points(len(body)))))
    assert_round_trip(records, out, decoder, body)


@BOUNDED
@given(data=st.data())
def test_opaque_and_unknown_id_records_round_trip_verbatim(data):
    records = data.draw(st.lists(st.one_of(opaque_records(), unknown_id_records()), min_size=1, max_size=5))
    body = encode(records)
    out, decoder = decode(pieces(body, data.draw(cut_points(len(body)))))
    assert_round_trip(records, out, decoder, body)


# --- mixed bodies ----------------------------------------------------------------------------


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mixed_body_round_trips_in_any_pieces(data):
    records = data.draw(st.lists(ANY_RECORD, min_size=0, max_size=8))
    body = encode(records)
    out, decoder = decode(pieces(body, data.draw(cut_points(len(body)))))
    assert_round_trip(records, out, decoder, body)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mixed_body_round_trips_fed_several_pieces_at_a_time(data):
    """feed_pieces(), as the server feeds what it gathered: empty pieces and records cut across
    groups and across pieces of one group come out whole."""
    records = data.draw(st.lists(ANY_RECORD, min_size=0, max_size=8))
    body = encode(records)
    parts = pieces(body, data.draw(cut_points(len(body))))
    out, decoder = decode(parts, group=data.draw(st.integers(1, 5)))
    assert_round_trip(records, out, decoder, body)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mixed_body_continuing_a_session_round_trips(data):
    """A later request of a session: sequences continue from a stored highest (up to u64's end)."""
    records = data.draw(st.lists(ANY_RECORD, min_size=1, max_size=5))
    first = data.draw(st.one_of(st.integers(1, 1000), st.integers(1, 2**64 - 1 - len(records))))
    body = encode(records, first_sequence=first)
    out, decoder = decode(pieces(body, data.draw(cut_points(len(body)))), highest_sequence=first - 1)
    assert_round_trip(records, out, decoder, body)


@settings(deadline=None, max_examples=10, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(records=st.lists(st.one_of(sample_records(max_count=2, specs=SMALL_SAMPLE_SPECS), opaque_records(),
                                  unknown_id_records(), audio_blocks(), camera_frames()),
                        min_size=1, max_size=3))
def test_small_body_round_trips_at_every_split_point(records):
    body = encode(records)
    for k in range(len(body) + 1):
        out, decoder = decode([body[:k], body[k:]])
        assert_round_trip(records, out, decoder, body, by_field=k == 0)


def one_of_each_record() -> list[Sent]:
    """One record of every message type (samples with NaNs), an opaque and an unknown-id record."""
    rng = np.random.default_rng(1)
    records = []
    for spec in SAMPLE_SPECS:
        samples = np.frombuffer(rng.bytes(spec.sample_size), spec.dtype).copy()
        for f in spec.fields:
            if f.type.startswith("f"):
                samples[f.name] = np.nan
                break
        records.append(Sent("samples", spec.id, int(samples[spec.time_field][0]), source=1, samples=samples))
    for spec in BLOB_SPECS:
        if spec.prefix.name == "camera_frame":
            prefix = {"camera_id": 2, "codec": RAW, "pixel_format": RGB24, "width": 2, "height": 2,
                      "stride_bytes": 6, "frame_number": 7, "exposure_duration_s": 0.5, "gain": float("nan"),
                      "temperature_c": 30.0}
            prefix = {**{f.name: 0 for f in spec.prefix.fields}, **prefix}
            records.append(Sent("blob", spec.id, 123, prefix=prefix, label="slam-front-right", data=b"SRF1" + bytes(8)))
        else:
            prefix = {"channels": 3, "codec": PCM_S32LE, "reserved0": 0, "sample_rate_hz": 16000,
                      "samples_per_channel": 2, "reserved1": 0}
            records.append(Sent("blob", spec.id, -5, prefix=prefix, label="mic", data=bytes(range(24))))
    records.append(Sent("opaque", 0x8020, 99, data=b"not an IMU layout"))
    records.append(Sent("unknown_id", 0x1234, 100, data=b"SRF1"))
    return records


def test_one_of_each_message_round_trips_at_every_split_point():
    records = one_of_each_record()
    body = encode(records)
    assert {r.message_id for r in records} >= KNOWN_IDS
    for k in range(len(body) + 1):
        out, decoder = decode([body[:k], body[k:]])
        assert_round_trip(records, out, decoder, body, by_field=k == 0)


def test_one_of_each_message_round_trips_byte_by_byte_and_as_views():
    records = one_of_each_record()
    body = encode(records)
    for parts in ([body[i:i + 1] for i in range(len(body))],
                  [memoryview(body)[i:i + 100] for i in range(0, len(body), 100)],
                  [bytearray(body[i:i + 33]) for i in range(0, len(body), 33)]):
        out, decoder = decode(parts)
        assert_round_trip(records, out, decoder, body)


def test_many_samples_per_record_round_trip():
    """A device that batches: thousands of samples in one record, u16 count at its maximum."""
    spec = SCHEMA.message("TEMP")
    rng = np.random.default_rng(2)
    samples = np.frombuffer(rng.bytes(0xFFFF * spec.sample_size), spec.dtype).copy()
    records = [Sent("samples", spec.id, int(samples["timestamp_ns"][0]), source=3, samples=samples)]
    body = encode(records)
    out, decoder = decode(pieces(body, [5, 40, 1000, len(body) - 1]))
    assert_round_trip(records, out, decoder, body)


# --- regressions found by the tests above ----------------------------------------------------


def test_records_of_zero_samples_between_batched_records():
    """Records of 0, 2 and 1 samples of one type in one piece: every sample comes out once, from
    its own record (a 0-sample record once made the decoder read the next record's header)."""
    spec = SCHEMA.message("BARO")
    samples = np.zeros(3, spec.dtype)
    samples["timestamp_ns"] = [10, 20, 30]
    samples["pressure_pa"] = [101325.0, 101300.0, np.nan]
    samples["temperature_c"] = [20.0, 20.5, 21.0]
    # 3 samples in 3 records, but not one per record.
    records = [Sent("samples", spec.id, 0, samples=samples[:0]),
               Sent("samples", spec.id, 10, samples=samples[:2]),
               Sent("samples", spec.id, 30, samples=samples[2:])]
    body = encode(records)
    out, decoder = decode([body])
    assert_round_trip(records, out, decoder, body)
    assert decoder.counters.records == 3 and decoder.counters.samples == 3


def test_camera_prefix_floats_may_be_nan_or_infinite():
    """exposure, gain and temperature are f32: NaN and infinities are values, not errors."""
    spec = SCHEMA.message("POV_CAMERA_FRAME")
    prefix = {"camera_id": 64, "codec": JPEG, "exposure_duration_s": float("nan"), "gain": float("inf"),
              "temperature_c": float("-inf")}
    prefix = {**{f.name: 0 for f in spec.prefix.fields}, **prefix}
    records = [Sent("blob", spec.id, 5, prefix=prefix, label="camera-rgb", data=b"\xff\xd8jpeg\xff\xd9")]
    body = encode(records)
    out, decoder = decode([body])
    assert_round_trip(records, out, decoder, body)
