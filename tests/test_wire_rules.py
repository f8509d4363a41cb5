"""The receiver rules of the protocol (schemas/protocol.md), one at a time.

Each rule is checked on a body fed whole, byte by byte, and cut at other places: a chunk
boundary may fall anywhere, and the outcome must not depend on where.

Where the spec is silent, the decoder's documented choices are tested (and named as such):
- an oversized record keeps its 32-byte header verbatim (its length cannot be trusted); the
  bytes after it up to the next magic are corrupt bytes;
- a bad-CRC record does not take part in sequence accounting (its header may be damaged), so
  its sequence number counts as a gap;
- the `opaque` counter counts records with the OPAQUE flag and records of unknown ids;
- the end of a body that is a proper prefix of the magic (`S`, `SR`, `SRF`) right after a record
  is a truncated record; after corrupt bytes it is part of them;
- a session's first record is sequence 0: a new session (no highest_sequence) starting at k
  counts k gaps; a record of 0 samples is decoded and counted but gives out nothing.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.schema import load
from recorder.wire import Decoder, Encoder, record
from recorder.wire.encoder import blob_payload, interleave, sample_payload, sample_records, single_record

SCHEMA = load()
IMU = SCHEMA.message("IMU_EVENT")
TEMP = SCHEMA.message("TEMP")
SLAM = SCHEMA.message("SLAM_CAMERA_FRAME")
AUDIO = SCHEMA.message("AUDIO_REC_DATA")
MAX_PAYLOAD = 64 * 1024 * 1024
RAW, JPEG = 0, 1
GRAY8, RGB24, YUV420P = 0, 1, 2
PCM_S16LE, PCM_S32LE, OPUS = 0, 1, 2


# --- records ---------------------------------------------------------------------------------


def imu_samples(n: int, t0: int = 1_000_000) -> np.ndarray:
    s = np.zeros(n, IMU.dtype)
    s["timestamp_ns"] = t0 + np.arange(n) * 1_000_000
    s["accel_msec2"] = [0.0, 0.0, 9.81]
    s["gyro_radsec"] = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    s["temperature_c"] = 30.0
    return s


def t0_of(sequence: int) -> int:
    return sequence % 1000 * 10_000_000


def imu_record(sequence: int, n: int = 1, **overrides) -> bytes:
    """A good IMU record (overrides: crc=, payload_length=, magic=, flags= make it bad)."""
    samples = imu_samples(n, t0=t0_of(sequence))
    return record(IMU.id, sample_payload(IMU, 1, samples), sequence=sequence,
                  timestamp_ns=t0_of(sequence), **overrides)


def camera_prefix(**fields) -> dict:
    return {"camera_id": 1, "codec": RAW, "pixel_format": GRAY8, "frame_number": 1, "width": 4, "height": 2,
            "stride_bytes": 4, **fields}


def camera_record(sequence: int, image: bytes, **prefix) -> bytes:
    return record(SLAM.id, blob_payload(SLAM, camera_prefix(**prefix), image), sequence=sequence, timestamp_ns=77)


def audio_record(sequence: int, data: bytes, **prefix) -> bytes:
    fields = {"channels": 2, "codec": PCM_S16LE, "sample_rate_hz": 48000, "samples_per_channel": 3, **prefix}
    return record(AUDIO.id, blob_payload(AUDIO, fields, data), sequence=sequence, timestamp_ns=88)


# --- decoding --------------------------------------------------------------------------------


@dataclass
class Decoded:
    """Everything a body gave out, gathered over all batches."""

    samples: dict = field(default_factory=dict)  # sequence -> raw bytes of its samples
    blobs: dict = field(default_factory=dict)  # sequence -> (label, prefix, data)
    verbatim: list = field(default_factory=list)  # (reason, data, message_id, flags, sequence, timestamp_ns)
    corrupt: list = field(default_factory=list)  # (offset, data), adjacent events merged
    counters: dict = field(default_factory=dict)
    highest_sequence: int | None = None

    def comparable(self):
        return (self.samples, self.blobs, sorted(self.verbatim, key=repr), self.corrupt, self.counters,
                self.highest_sequence)


def decode(parts, highest_sequence=None) -> Decoded:
    decoder = Decoder(highest_sequence=highest_sequence)
    batches = [decoder.feed(p) for p in parts]
    batches.append(decoder.close())
    out = Decoded()
    total = {name: 0 for name in decoder.counters.as_dict()}
    for batch in batches:
        for name, value in batch.counters.as_dict().items():
            total[name] += value
        for block in batch.samples:
            for sequence in np.unique(block.sequence).tolist():
                assert sequence not in out.samples
                out.samples[sequence] = block.samples[block.sequence == sequence].tobytes()
        for blob in batch.blobs:
            assert blob.sequence not in out.blobs
            out.blobs[blob.sequence] = (blob.label, blob.prefix, bytes(blob.data))
        for v in batch.verbatim:
            out.verbatim.append((v.reason, bytes(v.data), v.message_id, v.flags, v.sequence, v.timestamp_ns))
        for c in batch.corrupt:
            data = bytes(c.data)
            assert data
            if out.corrupt and out.corrupt[-1][0] + len(out.corrupt[-1][1]) == c.offset:
                out.corrupt[-1] = (out.corrupt[-1][0], out.corrupt[-1][1] + data)
            else:
                out.corrupt.append((c.offset, data))
    out.counters = decoder.counters.as_dict()
    assert total == out.counters, "the batches' counters do not add up to the decoder's"
    out.highest_sequence = decoder.highest_sequence
    return out


def cuts_of(body: bytes) -> list[list[bytes]]:
    """The body whole, byte by byte, in pieces of 3, 31 and 32 bytes, and in halves."""
    ways = [[body], [body[i:i + 1] for i in range(len(body))]]
    for step in (3, 31, 32, 1000):
        ways.append([body[i:i + step] for i in range(0, len(body), step)])
    ways.append([body[:len(body) // 2], body[len(body) // 2:]])
    return ways


def decode_any_way(body: bytes, highest_sequence=None) -> Decoded:
    """Decode the body cut in several ways; all must give the same result, which is returned."""
    results = [decode(parts, highest_sequence) for parts in cuts_of(body)]
    for other in results[1:]:
        assert other.comparable() == results[0].comparable()
    return results[0]


def errors(decoded: Decoded) -> dict:
    """The counters that are not zero, apart from the ordinary ones."""
    ordinary = {"records", "samples", "blobs", "bytes"}
    return {k: v for k, v in decoded.counters.items() if v and k not in ordinary}


def expected_imu(sequence: int, n: int = 1) -> bytes:
    return imu_samples(n, t0=t0_of(sequence)).tobytes()


# --- bad magic: resynchronise ----------------------------------------------------------------


def test_garbage_before_the_first_record_is_skipped_and_counted():
    garbage = b"GET / HTTP/1.1\r\n\x00\xff garbage"
    body = garbage + imu_record(0) + imu_record(1)
    d = decode_any_way(body)
    assert d.samples == {0: expected_imu(0), 1: expected_imu(1)}
    assert d.corrupt == [(0, garbage)]
    assert errors(d) == {"corrupt_bytes": len(garbage)}


def test_garbage_between_records_is_skipped_with_its_body_offset():
    first, second = imu_record(0, 2), camera_record(1, bytes(8))
    garbage = bytes(range(200, 256)) * 3
    body = first + garbage + second + imu_record(2)
    d = decode_any_way(body)
    assert d.samples == {0: expected_imu(0, 2), 2: expected_imu(2)}
    assert d.blobs[1][2] == bytes(8)
    assert d.corrupt == [(len(first), garbage)]
    assert errors(d) == {"corrupt_bytes": len(garbage)}


@pytest.mark.parametrize("garbage", [b"S", b"SR", b"SRF", b"SRF0", b"SRF\x00SR", b"SSRRFF1", b"SRFSRF", b"1FRS",
                                     b"SRF" * 20 + b"x"])
def test_garbage_with_a_partial_magic_is_skipped(garbage):
    first = imu_record(0)
    body = first + garbage + imu_record(1) + garbage + imu_record(2)
    d = decode_any_way(body)
    assert d.samples == {0: expected_imu(0), 1: expected_imu(1), 2: expected_imu(2)}
    second_garbage_at = len(first) + len(garbage) + len(imu_record(1))
    assert d.corrupt == [(len(first), garbage), (second_garbage_at, garbage)]
    assert errors(d) == {"corrupt_bytes": 2 * len(garbage)}


def test_a_record_with_a_damaged_magic_is_skipped_as_corrupt_bytes():
    damaged = imu_record(1, magic=b"SRF2")
    body = imu_record(0) + damaged + imu_record(2)
    d = decode_any_way(body)
    assert d.samples == {0: expected_imu(0), 2: expected_imu(2)}
    assert d.corrupt == [(len(imu_record(0)), damaged)]
    # The damaged record's sequence never arrived: a gap.
    assert errors(d) == {"corrupt_bytes": len(damaged), "gaps": 1}


def test_a_body_of_garbage_only():
    garbage = bytes(range(256)) * 10  # contains no SRF1
    d = decode_any_way(garbage)
    assert d.samples == {} and d.verbatim == []
    assert d.corrupt == [(0, garbage)]
    assert errors(d) == {"corrupt_bytes": len(garbage)}


def test_garbage_at_the_end_of_the_body():
    body = imu_record(0) + b"trailing junk"
    d = decode_any_way(body)
    assert d.samples == {0: expected_imu(0)}
    assert d.corrupt == [(len(imu_record(0)), b"trailing junk")]
    assert errors(d) == {"corrupt_bytes": 13}


@st.composite
def garbage_bytes(draw):
    return draw(st.binary(min_size=1, max_size=80).filter(lambda g: b"SRF1" not in g and g not in (b"S", b"SR", b"SRF")))


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_garbage_anywhere_is_skipped_exactly_whatever_the_pieces(data):
    n = data.draw(st.integers(0, 5))
    body, expected_corrupt, expected = b"", [], {}
    for sequence in range(n + 1):
        garbage = data.draw(st.one_of(st.just(b""), garbage_bytes()))
        if garbage:
            expected_corrupt.append((len(body), garbage))
            body += garbage
        if sequence < n:
            body += imu_record(sequence, 1 + sequence % 3)
            expected[sequence] = expected_imu(sequence, 1 + sequence % 3)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=10)))
    parts = [body[a:b] for a, b in pairwise([0, *cuts, len(body)])]
    d = decode(parts)
    assert d.samples == expected
    assert d.corrupt == expected_corrupt
    assert errors(d) == ({"corrupt_bytes": sum(len(g) for _, g in expected_corrupt)} if expected_corrupt else {})


# --- CRC mismatch ----------------------------------------------------------------------------


def test_crc_mismatch_keeps_the_record_verbatim_and_goes_on():
    good = imu_record(1)
    bad = good[:12] + (zlib.crc32(good[32:]) ^ 1).to_bytes(4, "little") + good[16:]
    body = imu_record(0) + bad + imu_record(2)
    d = decode_any_way(body)
    assert d.samples == {0: expected_imu(0), 2: expected_imu(2)}
    assert d.verbatim == [("bad_crc", bad, IMU.id, 0, 1, 10_000_000)]
    # Documented choice: a bad-CRC record's sequence is not trusted, so it counts as a gap.
    assert errors(d) == {"bad_crc": 1, "gaps": 1}
    assert d.counters["records"] == 2


def test_a_flipped_payload_bit_is_a_crc_mismatch():
    good = camera_record(0, bytes(8))
    bad = bytearray(good)
    bad[-1] ^= 0x80
    d = decode_any_way(bytes(bad) + camera_record(1, b"\x01" * 8))
    assert [v[0] for v in d.verbatim] == ["bad_crc"]
    assert d.verbatim[0][1] == bytes(bad)
    assert d.blobs[1][2] == b"\x01" * 8


# --- payload_length over the limit -----------------------------------------------------------


def test_payload_length_over_64_mib_is_oversized():
    oversized = record(IMU.id, b"", sequence=1, timestamp_ns=5, payload_length=MAX_PAYLOAD + 1)
    junk = b"the payload that followed"
    body = imu_record(0) + oversized + junk + imu_record(2)
    d = decode_any_way(body)
    assert d.samples == {0: expected_imu(0), 2: expected_imu(2)}
    # Documented choice: the length cannot be trusted, so the header alone is kept, and what
    # follows it up to the next magic is corrupt bytes.
    assert d.verbatim == [("oversized", oversized, IMU.id, 0, 1, 5)]
    assert d.corrupt == [(len(imu_record(0)) + 32, junk)]
    assert errors(d) == {"oversized": 1, "corrupt_bytes": len(junk), "gaps": 1}


@pytest.mark.parametrize("length", [MAX_PAYLOAD + 1, 0x8000_0000, 0xFFFF_FFFF])
def test_oversized_header_does_not_wait_for_its_payload(length):
    oversized = record(0x9999, b"", sequence=0, timestamp_ns=0, payload_length=length)
    decoder = Decoder()
    batch = decoder.feed(oversized + imu_record(1))
    assert [v.reason for v in batch.verbatim] == ["oversized"]
    assert [len(block) for block in batch.samples] == [1]
    assert decoder.pending_bytes == 0


def test_payload_of_exactly_64_mib_is_allowed():
    payload = bytes(MAX_PAYLOAD)
    body = Encoder().opaque(0x8010, payload, 1) + imu_record(1)
    decoder = Decoder()
    batches = [decoder.feed(body[i:i + 8 * 1024 * 1024]) for i in range(0, len(body), 8 * 1024 * 1024)]
    batches.append(decoder.close())
    verbatim = [v for b in batches for v in b.verbatim]
    assert [(v.reason, len(v.data)) for v in verbatim] == [("opaque", 32 + MAX_PAYLOAD)]
    assert sum(len(block) for b in batches for block in b.samples) == 1
    assert decoder.counters.oversized == 0 and decoder.counters.corrupt_bytes == 0


# --- reserved flag bits and OPAQUE -----------------------------------------------------------


@pytest.mark.parametrize("flags", [0x0002, 0x0004, 0x8000, 0xFFFE, 0x0003, 0xFFFF])
def test_reserved_flag_bits_keep_the_record_verbatim(flags):
    flagged = imu_record(1, flags=flags)
    d = decode_any_way(imu_record(0) + flagged + imu_record(2))
    assert d.samples == {0: expected_imu(0), 2: expected_imu(2)}
    assert d.verbatim == [("reserved_flags", flagged, IMU.id, flags, 1, 10_000_000)]
    assert errors(d) == {"reserved_flags": 1}


@pytest.mark.parametrize("message_id", [IMU.id, SLAM.id, AUDIO.id, 0x0000, 0xFFFF])
def test_opaque_flag_keeps_the_record_verbatim_with_id_sequence_and_timestamp(message_id):
    # A payload that would decode as a valid IMU record is not decoded when OPAQUE is set.
    payload = imu_record(0)[32:]
    opaque = record(message_id, payload, sequence=1, timestamp_ns=-42, flags=1)
    d = decode_any_way(imu_record(0) + opaque + imu_record(2))
    assert d.samples == {0: expected_imu(0), 2: expected_imu(2)}
    assert d.verbatim == [("opaque", opaque, message_id, 1, 1, -42)]
    assert errors(d) == {"opaque": 1}
    assert d.counters["records"] == 2


@pytest.mark.parametrize("message_id", [0x0000, 0x8000, 0x8002, 0x8013, 0x8027, 0x8034, 0xFFFF])
def test_unknown_message_id_is_kept_verbatim(message_id):
    unknown = record(message_id, b"vendor payload", sequence=1, timestamp_ns=123)
    d = decode_any_way(imu_record(0) + unknown + imu_record(2))
    assert d.samples == {0: expected_imu(0), 2: expected_imu(2)}
    assert d.verbatim == [("unknown_id", unknown, message_id, 0, 1, 123)]
    assert errors(d) == {"opaque": 1}  # documented: the opaque counter counts unknown ids too


# --- malformed layouts -----------------------------------------------------------------------


def malformed(payload: bytes, message_id: int = IMU.id) -> bytes:
    return record(message_id, payload, sequence=1, timestamp_ns=9)


def assert_malformed_and_skipped(bad: bytes) -> None:
    d = decode_any_way(imu_record(0) + bad + imu_record(2))
    assert d.samples == {0: expected_imu(0), 2: expected_imu(2)}
    assert d.blobs == {}
    assert len(d.verbatim) == 1
    reason, data, message_id, flags, sequence, timestamp = d.verbatim[0]
    assert (reason, data, message_id, flags, sequence, timestamp) == ("malformed", bad, bad[4] | bad[5] << 8, 0, 1, 9)
    assert errors(d) == {"malformed": 1}
    assert d.counters["records"] == 2


GOOD_IMU_PAYLOAD = sample_payload(IMU, 0, imu_samples(2))


@pytest.mark.parametrize("payload", [
    GOOD_IMU_PAYLOAD[:-1],  # one byte short
    GOOD_IMU_PAYLOAD + b"\x00",  # one byte too many
    GOOD_IMU_PAYLOAD[:4 + 36],  # count says 2, one sample follows
    b"\x00\x00\x01\x00",  # count 1, no sample
    b"\x00\x00\x00\x00" + bytes(36),  # count 0, a sample follows
    b"\x00\x00\xff\xff" + bytes(36),  # count 65535
], ids=["short-1", "long+1", "count-too-high", "no-sample", "count-zero-with-data", "count-max"])
def test_sample_payload_not_4_plus_count_times_size_is_malformed(payload):
    assert_malformed_and_skipped(malformed(payload))


@pytest.mark.parametrize("length", [0, 1, 2, 3])
@pytest.mark.parametrize("message", ["IMU_EVENT", "TEMP", "MP_HT_RESULT"])
def test_sample_payload_shorter_than_its_prefix_is_malformed(message, length):
    assert_malformed_and_skipped(malformed(b"\x01\x00\x01"[:length] + b"\x00" * max(0, length - 3),
                                           SCHEMA.message(message).id))


@pytest.mark.parametrize("message,prefix_size", [("SLAM_CAMERA_FRAME", 32), ("ET_CAMERA_FRAME", 32),
                                                 ("POV_CAMERA_FRAME", 32), ("AUDIO_REC_DATA", 16)])
@pytest.mark.parametrize("length", [0, 1, "prefix-1"])
def test_blob_shorter_than_its_prefix_is_malformed(message, prefix_size, length):
    n = prefix_size - 1 if length == "prefix-1" else length
    assert_malformed_and_skipped(malformed(b"\x01" * n, SCHEMA.message(message).id))


@pytest.mark.parametrize("pixel_format,stride,height,good_size", [
    (GRAY8, 4, 2, 8), (RGB24, 12, 2, 24), (YUV420P, 4, 2, 12), (YUV420P, 6, 4, 36), (RGB24, 15, 3, 45),
])
def test_raw_frame_of_the_wrong_size_is_malformed(pixel_format, stride, height, good_size):
    prefix = {"pixel_format": pixel_format, "stride_bytes": stride, "height": height}
    # The right size decodes ...
    d = decode([camera_record(0, bytes(good_size), **prefix)])
    assert d.blobs[0][2] == bytes(good_size) and errors(d) == {}
    # ... one byte more or less, or none at all, does not.
    for size in (good_size - 1, good_size + 1, 0):
        bad = record(SLAM.id, blob_payload(SLAM, camera_prefix(**prefix), bytes(size)), sequence=1, timestamp_ns=9)
        assert_malformed_and_skipped(bad)


def test_raw_frame_of_unknown_pixel_format_is_malformed():
    # Documented choice (rules.py): the size of a RAW frame of another pixel format cannot be checked.
    bad = record(SLAM.id, blob_payload(SLAM, camera_prefix(pixel_format=3), bytes(8)), sequence=1, timestamp_ns=9)
    assert_malformed_and_skipped(bad)


def test_coded_frames_have_any_size_and_ignore_pixel_format():
    for codec in (1, 2, 3):
        frame = record(SLAM.id, blob_payload(SLAM, camera_prefix(codec=codec, pixel_format=7, stride_bytes=0), b"x" * 5),
                       sequence=0, timestamp_ns=1)
        d = decode([frame])
        assert d.blobs[0][2] == b"x" * 5 and errors(d) == {}


@pytest.mark.parametrize("codec", [4, 5, 255])
def test_unknown_camera_codec_is_malformed(codec):
    bad = record(SLAM.id, blob_payload(SLAM, camera_prefix(codec=codec), bytes(8)), sequence=1, timestamp_ns=9)
    assert_malformed_and_skipped(bad)


@pytest.mark.parametrize("codec,width", [(PCM_S16LE, 2), (PCM_S32LE, 4)])
def test_pcm_block_of_the_wrong_size_is_malformed(codec, width):
    good = 2 * 3 * width  # 2 channels x 3 samples
    d = decode([audio_record(0, bytes(good), codec=codec)])
    assert d.blobs[0][2] == bytes(good) and errors(d) == {}
    for size in (good - 1, good + 1, good - width, 0):
        bad = record(AUDIO.id, blob_payload(AUDIO, {"channels": 2, "codec": codec, "sample_rate_hz": 48000,
                                                     "samples_per_channel": 3}, bytes(size)),
                     sequence=1, timestamp_ns=9)
        assert_malformed_and_skipped(bad)


def test_opus_packets_have_any_size():
    d = decode([audio_record(0, b"opus", codec=OPUS, samples_per_channel=960)])
    assert d.blobs[0][2] == b"opus" and errors(d) == {}


@pytest.mark.parametrize("channels", [0, 17, 255])
def test_audio_channels_outside_1_to_16_are_malformed(channels):
    bad = record(AUDIO.id, blob_payload(AUDIO, {"channels": channels, "codec": PCM_S16LE, "samples_per_channel": 1},
                                        bytes(2 * channels)), sequence=1, timestamp_ns=9)
    assert_malformed_and_skipped(bad)


@pytest.mark.parametrize("channels", [1, 16])
def test_audio_channels_1_and_16_are_allowed(channels):
    d = decode([audio_record(0, bytes(channels * 3 * 2), channels=channels)])
    assert len(d.blobs) == 1 and errors(d) == {}


@pytest.mark.parametrize("codec", [3, 4, 255])
def test_unknown_audio_codec_is_malformed(codec):
    bad = record(AUDIO.id, blob_payload(AUDIO, {"channels": 2, "codec": codec, "samples_per_channel": 3}, bytes(12)),
                 sequence=1, timestamp_ns=9)
    assert_malformed_and_skipped(bad)


# --- truncation ------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 3, 4, 5, 20, 31])
def test_body_ending_mid_header_is_one_truncated_record(keep):
    last = imu_record(1)
    body = imu_record(0) + last[:keep]
    d = decode_any_way(body)
    assert d.samples == {0: expected_imu(0)}
    assert d.verbatim == [("truncated", last[:keep], None, None, None, None)]
    assert d.corrupt == []
    assert errors(d) == {"truncated": 1}


@pytest.mark.parametrize("keep", [32, 33, 40])
def test_body_ending_mid_payload_is_one_truncated_record_with_its_header_fields(keep):
    last = imu_record(1, 2)
    d = decode_any_way(imu_record(0) + last[:keep])
    assert d.samples == {0: expected_imu(0)}
    assert d.verbatim == [("truncated", last[:keep], IMU.id, 0, 1, 10_000_000)]
    assert errors(d) == {"truncated": 1}


@pytest.mark.parametrize("tail", [b"S", b"SR", b"SRF"])
def test_body_ending_in_a_partial_magic_is_a_truncated_record(tail):
    d = decode_any_way(imu_record(0) + tail)
    assert d.samples == {0: expected_imu(0)}
    assert d.verbatim == [("truncated", tail, None, None, None, None)]
    assert errors(d) == {"truncated": 1}


def test_partial_magic_after_garbage_at_the_end_is_corrupt():
    # Documented choice: after corrupt bytes the end of the body is more corrupt bytes.
    d = decode_any_way(imu_record(0) + b"junk" + b"SR")
    assert d.verbatim == []
    assert d.corrupt == [(len(imu_record(0)), b"junkSR")]
    assert errors(d) == {"corrupt_bytes": 6}


def test_truncated_record_is_held_back_until_close():
    last = camera_record(1, bytes(8))
    decoder = Decoder()
    batch = decoder.feed(imu_record(0) + last[:50])
    assert [len(block) for block in batch.samples] == [1]
    assert not batch.verbatim and not batch.corrupt
    assert decoder.pending_bytes == 50
    batch = decoder.close()
    assert [(v.reason, bytes(v.data)) for v in batch.verbatim] == [("truncated", last[:50])]
    assert batch.counters.truncated == 1


def test_every_cut_of_the_last_record_gives_one_exact_truncated_record():
    first, last = imu_record(0), camera_record(1, b"\x07" * 8)
    for keep in range(1, len(last)):
        for parts in ([first + last[:keep]], [first[:7], first[7:] + last[:keep]]):
            d = decode(parts)
            assert d.samples == {0: expected_imu(0)}, keep
            assert [v[:2] for v in d.verbatim] == [("truncated", last[:keep])], keep
            assert errors(d) == {"truncated": 1}, keep


def test_empty_body():
    d = decode_any_way(b"")
    assert d == Decoded(counters=d.counters)
    assert errors(d) == {} and d.counters["bytes"] == 0


# --- sequence: gaps and resends --------------------------------------------------------------


def test_sequence_jump_counts_the_missing_records():
    body = b"".join(imu_record(s) for s in (0, 1, 5, 6, 10))
    d = decode_any_way(body)
    assert sorted(d.samples) == [0, 1, 5, 6, 10]
    assert errors(d) == {"gaps": 3 + 3}
    assert d.highest_sequence == 10


def test_gap_across_pieces_is_counted_once():
    decoder = Decoder()
    decoder.feed(imu_record(0) + imu_record(1))
    decoder.feed(imu_record(4))
    decoder.close()
    assert decoder.counters.gaps == 2


def test_new_session_not_starting_at_0_has_a_gap():
    # Documented choice: a session's first record is sequence 0.
    d = decode_any_way(imu_record(3) + imu_record(4))
    assert errors(d) == {"gaps": 3}


def test_later_request_continues_from_the_stored_highest_sequence():
    d = decode_any_way(imu_record(11) + imu_record(13), highest_sequence=10)
    assert sorted(d.samples) == [11, 13]
    assert errors(d) == {"gaps": 1}


def test_resends_after_a_reconnect_are_given_out_only_once():
    encoder = Encoder()
    records = [encoder.samples("IMU_EVENT", 0, imu_samples(1, t0=i)) if i % 3
               else encoder.blob("AUDIO_REC_DATA", {"channels": 1, "codec": OPUS}, bytes([i]), i)
               for i in range(10)]
    opaque = encoder.opaque(0x8888, b"vendor", 10)  # sequence 10
    first = decode([b"".join(records[:6])])
    assert first.highest_sequence == 5
    # The device reconnects and sends again from sequence 3, then new records 6..10.
    second = decode_any_way(b"".join(records[3:]) + opaque, highest_sequence=first.highest_sequence)
    assert sorted([*second.samples, *second.blobs]) == [6, 7, 8, 9]
    assert [v[4] for v in second.verbatim] == [10]
    assert errors(second) == {"resends": 3, "opaque": 1}
    assert second.counters["records"] == 4
    assert second.highest_sequence == 10
    # Together the two requests gave out every record exactly once.
    assert sorted([*first.samples, *first.blobs, *second.samples, *second.blobs]) == list(range(10))


def test_resent_verbatim_records_are_not_kept_twice():
    opaque = record(0x8888, b"vendor", sequence=4, timestamp_ns=1, flags=1)
    unknown = record(0x7777, b"other", sequence=5, timestamp_ns=1)
    d = decode_any_way(opaque + unknown + imu_record(6), highest_sequence=5)
    assert d.verbatim == [] and sorted(d.samples) == [6]
    assert errors(d) == {"resends": 2}


def test_resend_within_one_body():
    body = b"".join(imu_record(s) for s in (0, 1, 2, 1, 2, 3))
    d = decode_any_way(body)
    assert sorted(d.samples) == [0, 1, 2, 3]
    assert d.samples[1] == expected_imu(1)
    assert errors(d) == {"resends": 2}


def test_a_resend_of_everything_gives_out_nothing():
    body = b"".join(imu_record(s) for s in range(5))
    d = decode_any_way(body, highest_sequence=4)
    assert d.samples == {} and d.counters["records"] == 0
    assert errors(d) == {"resends": 5}
    assert d.highest_sequence == 4


def test_largest_sequence_numbers():
    top = 2**64 - 1
    d = decode_any_way(imu_record(top - 1) + imu_record(top), highest_sequence=top - 2)
    assert sorted(d.samples) == [top - 1, top]
    assert errors(d) == {}
    assert d.highest_sequence == top


@pytest.mark.parametrize("highest,sequences,gaps", [
    (None, [2**63], 2**63),
    (None, [2**64 - 1], 2**64 - 1),
    (None, [0, 2**64 - 1], 2**64 - 2),
    (0, [2**64 - 1], 2**64 - 2),
    (None, [5, 2**63 + 10], 5 + 2**63 + 4),
])
def test_sequence_jumps_past_2_63_are_counted_exactly(highest, sequences, gaps):
    """Sequences are u64 and the header is not covered by the CRC: any value may arrive. (These
    once raised OverflowError, or counted a negative number of gaps.)"""
    d = decode_any_way(b"".join(imu_record(s) for s in sequences), highest_sequence=highest)
    assert sorted(d.samples) == sequences
    assert d.counters["gaps"] == gaps
    assert d.highest_sequence == sequences[-1]


# --- a magic inside a payload ----------------------------------------------------------------


def test_magic_inside_camera_image_bytes_does_not_break_decoding():
    # The image holds a whole valid record, and one whose header claims more than the body holds.
    inner = imu_record(99)
    claims_more = record(IMU.id, b"", sequence=98, timestamp_ns=0, payload_length=1000)
    image = (inner + claims_more + b"SRF1" * 4)[:120]
    image += bytes(128 - len(image))
    frame = camera_record(1, image, width=16, stride_bytes=16, height=8)
    body = imu_record(0) + frame + imu_record(2)
    d = decode_any_way(body)
    assert d.samples == {0: expected_imu(0), 2: expected_imu(2)}
    assert d.blobs[1][2] == image
    assert errors(d) == {}
    # ... at every single cut too.
    for k in range(len(body) + 1):
        assert decode([body[:k], body[k:]]).comparable() == d.comparable(), k


def test_magic_inside_sample_and_opaque_payloads():
    samples = imu_samples(3)
    samples["accel_msec2"][1] = np.frombuffer(b"SRF1" + b"\x00\x00\x80\x3fSRF1", "<f4")
    sample_record = record(IMU.id, sample_payload(IMU, 0, samples), sequence=0, timestamp_ns=1)
    opaque = record(0x1, b"SRF1" * 10 + imu_record(5), sequence=1, timestamp_ns=2, flags=1)
    d = decode_any_way(sample_record + opaque + b"noise" + imu_record(2))
    assert d.samples[0] == samples.tobytes()
    assert [v[:2] for v in d.verbatim] == [("opaque", opaque)]
    assert d.corrupt == [(len(sample_record) + len(opaque), b"noise")]
    assert sorted(d.samples) == [0, 2]


# --- large bodies ----------------------------------------------------------------------------


def test_many_records_in_one_multi_megabyte_feed():
    rng = np.random.default_rng(3)
    imu = imu_samples(40_000)
    temp = np.zeros(5_000, TEMP.dtype)
    temp["timestamp_ns"] = np.arange(5_000) * 8_000_000
    temp["temperature_c"] = rng.normal(30, 1, 5_000)
    frames = [(i * 33_000_000, rng.integers(0, 256, 640 * 480, dtype=np.uint8).tobytes()) for i in range(12)]
    streams = sample_records(IMU, 0, imu) + sample_records(TEMP, 2, temp, per_record=50)
    streams += [single_record(Encoder().blob("SLAM_CAMERA_FRAME", camera_prefix(width=640, height=480,
                                                                                stride_bytes=640, frame_number=i),
                                             image, t), t)
                for i, (t, image) in enumerate(frames)]
    body, n = interleave(streams, first_sequence=0)
    assert len(body) > 4_000_000 and n == 40_000 + 100 + 12

    for parts in ([body], [body[i:i + 65536] for i in range(0, len(body), 65536)]):
        decoder = Decoder()
        batches = [decoder.feed(p) for p in parts] + [decoder.close()]
        got = {}
        for batch in batches:
            for block in batch.samples:
                got.setdefault(block.message.name, []).append(block.samples)
        assert np.concatenate(got["IMU_EVENT"]).tobytes() == imu.tobytes()
        assert np.concatenate(got["TEMP"]).tobytes() == temp.tobytes()
        blobs = sorted((b for batch in batches for b in batch.blobs), key=lambda b: b.timestamp_ns)
        assert [bytes(b.data) for b in blobs] == [image for _, image in frames]
        assert [b.prefix["frame_number"] for b in blobs] == list(range(12))
        c = decoder.counters
        assert (c.records, c.samples, c.blobs, c.bytes) == (n, 45_000, 12, len(body))
        assert errors(Decoded(counters=c.as_dict())) == {}
        assert decoder.highest_sequence == n - 1


# --- every rule at once, cut anywhere ---------------------------------------------------------


@st.composite
def troubled_bodies(draw):
    """Good records mixed with garbage, bad CRCs, reserved flags, malformed and opaque records,
    resends and gaps, perhaps cut off at the end."""
    parts = []
    sequence = 0
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["good", "good", "garbage", "bad_crc", "flags", "malformed", "opaque",
                                     "resend", "gap"]))
        if kind == "garbage":
            parts.append(draw(garbage_bytes()))
            continue
        if kind == "resend" and sequence:
            parts.append(imu_record(draw(st.integers(0, sequence - 1))))
            continue
        if kind == "gap":
            sequence += draw(st.integers(1, 3))
        if kind == "bad_crc":
            parts.append(imu_record(sequence, crc=draw(st.integers(0, 2**32 - 1))))
        elif kind == "flags":
            parts.append(imu_record(sequence, flags=draw(st.integers(2, 0xFFFF))))
        elif kind == "malformed":
            parts.append(camera_record(sequence, b"\x00" * draw(st.integers(0, 7))))
        elif kind == "opaque":
            parts.append(record(draw(st.integers(0, 0xFFFF)), draw(st.binary(max_size=40)), sequence=sequence,
                                timestamp_ns=0, flags=1))
        else:
            parts.append(imu_record(sequence, draw(st.integers(0, 3))))
        sequence += 1
    body = b"".join(parts)
    if draw(st.booleans()):
        body += imu_record(sequence)[:draw(st.integers(1, 40))]
    return body


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(body=troubled_bodies(), data=st.data())
def test_outcome_does_not_depend_on_where_the_body_is_cut(body, data):
    whole = decode([body])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=12)))
    cut = decode([body[a:b] for a, b in pairwise([0, *cuts, len(body)])])
    assert cut.comparable() == whole.comparable()
    # Every byte is accounted for: in a decoded or verbatim record, or skipped as corrupt.
    c = whole.counters
    assert c["bytes"] == len(body)
    assert c["corrupt_bytes"] == sum(len(g) for _, g in whole.corrupt)


# --- the decoder's own interface -------------------------------------------------------------


def test_feed_after_close_is_an_error_and_close_is_idempotent():
    decoder = Decoder()
    decoder.feed(imu_record(0) + b"SR")
    assert decoder.close().counters.truncated == 1
    assert not decoder.close()
    with pytest.raises(RuntimeError):
        decoder.feed(imu_record(1))
