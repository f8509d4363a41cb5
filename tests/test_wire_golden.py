"""Golden byte vectors, written by hand from the protocol (schemas/protocol.md).

Every record below is a hex dump typed from the spec's tables (little-endian, packed), field by
field; only the CRC is computed, with zlib.crc32 of the hand-written payload, as the spec says.
Each vector is checked in both directions: the decoder reads the expected values out of it, and
the encoder given those values writes exactly these bytes.

Float bit patterns used (IEEE-754, little-endian byte order as on the wire):
  f32  0.0 00000000   0.0078125 0000003c   0.125 0000003e   -0.125 000000be   0.25 0000803e
       -0.25 000080be  0.5 0000003f   -0.5 000000bf   0.75 0000403f   1.0 0000803f   -1.0 000080bf
       1.5 0000c03f   2.0 00000040   -2.0 000000c0   3.0 00004040   9.75 00001c41   -9.75 00001cc1
       36.5 00001242   37.0 00001442   100.0 0000c842   NaN (quiet) 0000c07f
  f64  1.0 000000000000f03f   -2.5 00000000000004c0   0.1 9a9999999999b93f
       0.5 000000000000e03f   -0.5 000000000000e0bf
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from recorder.wire import Decoder, Encoder, record

NAN = float("nan")


def hexbytes(*parts: str) -> bytes:
    """Bytes from hex parts (spaces allowed)."""
    return bytes.fromhex(" ".join(parts))


def frame(message_id: str, payload_length: str, payload: bytes, sequence: str, timestamp_ns: str,
          flags: str = "00 00") -> bytes:
    """A record header typed from the Framing table, then the payload.

    The fields are little-endian hex as on the wire; the CRC is zlib.crc32 of the payload.
    """
    assert int.from_bytes(hexbytes(payload_length), "little") == len(payload)
    header = hexbytes(
        "53 52 46 31",  # magic "SRF1"
        message_id,  # u16 message_id
        flags,  # u16 flags
        payload_length,  # u32 payload_length
    ) + zlib.crc32(payload).to_bytes(4, "little") + hexbytes(  # u32 crc32
        sequence,  # u64 sequence
        timestamp_ns,  # i64 timestamp_ns
    )
    assert len(header) == 32
    return header + payload


def decode_whole(body: bytes, pieces: int | None = None):
    """Decode a body fed in one piece (or in pieces of `pieces` bytes); returns the batches and the decoder."""
    decoder = Decoder()
    batches = []
    step = pieces or len(body)
    for i in range(0, len(body), step):
        batches.append(decoder.feed(body[i:i + step]))
    batches.append(decoder.close())
    return batches, decoder


def only_samples(body: bytes):
    batches, decoder = decode_whole(body)
    blocks = [block for batch in batches for block in batch.samples]
    assert len(blocks) == 1
    assert not any(batch.blobs or batch.verbatim or batch.corrupt for batch in batches)
    return blocks[0], decoder.counters


def only_blob(body: bytes):
    batches, decoder = decode_whole(body)
    blobs = [blob for batch in batches for blob in batch.blobs]
    assert len(blobs) == 1
    assert not any(batch.samples or batch.verbatim or batch.corrupt for batch in batches)
    return blobs[0], decoder.counters


def assert_clean(counters, *, records: int, samples: int = 0, blobs: int = 0, gaps: int = 0, body: bytes):
    """Counters of a body decoded without trouble. A lone record with sequence k opening a new
    session counts k gaps (a session's first record is sequence 0)."""
    assert counters.as_dict() == {
        "records": records, "samples": samples, "blobs": blobs, "bytes": len(body), "corrupt_bytes": 0,
        "bad_crc": 0, "oversized": 0, "reserved_flags": 0, "malformed": 0, "truncated": 0, "opaque": 0,
        "gaps": gaps, "resends": 0,
    }


# --- IMU_EVENT: source 1 (imu-right), 2 samples, sequence 0 ------------------------------------

IMU_PAYLOAD = hexbytes(
    "01 00",  # u16 source = 1 (imu-right)
    "02 00",  # u16 count = 2
    # sample 0
    "00 ca 9a 3b 00 00 00 00",  # i64 timestamp_ns = 1_000_000_000
    "0000003f 000080bf 00001c41",  # f32[3] accel_msec2 = 0.5, -1.0, 9.75
    "00000000 0000803e 000000c0",  # f32[3] gyro_radsec = 0.0, 0.25, -2.0
    "00001242",  # f32 temperature_c = 36.5
    # sample 1
    "40 0c aa 3b 00 00 00 00",  # i64 timestamp_ns = 1_001_000_000
    "0000c07f 0000c03f 000000be",  # f32[3] accel_msec2 = NaN, 1.5, -0.125
    "0000c842 000000bf 00004040",  # f32[3] gyro_radsec = 100.0, -0.5, 3.0
    "00001442",  # f32 temperature_c = 37.0
)
IMU_RECORD = frame("20 80", "4c 00 00 00", IMU_PAYLOAD, sequence="00 00 00 00 00 00 00 00", timestamp_ns="00 ca 9a 3b 00 00 00 00")
IMU_VALUES = {
    "timestamp_ns": [1_000_000_000, 1_001_000_000],
    "accel_msec2": [[0.5, -1.0, 9.75], [NAN, 1.5, -0.125]],
    "gyro_radsec": [[0.0, 0.25, -2.0], [100.0, -0.5, 3.0]],
    "temperature_c": [36.5, 37.0],
}


def test_imu_golden_sizes():
    assert len(IMU_PAYLOAD) == 4 + 2 * 36
    assert len(IMU_RECORD) == 32 + 76
    assert IMU_RECORD[8:12] == bytes.fromhex("4c000000")


def test_imu_golden_decodes_to_the_hand_written_values():
    block, counters = only_samples(IMU_RECORD)
    assert block.message.name == "IMU_EVENT"
    assert len(block) == 2
    assert list(block.labels()) == ["imu-right", "imu-right"]
    assert block.source.tolist() == [1, 1]
    assert block.sequence.tolist() == [0, 0]
    s = block.samples
    assert s["timestamp_ns"].tolist() == IMU_VALUES["timestamp_ns"]
    assert block.timestamps_ns.tolist() == IMU_VALUES["timestamp_ns"]
    np.testing.assert_array_equal(s["accel_msec2"], np.array(IMU_VALUES["accel_msec2"], np.float32))
    assert np.isnan(s["accel_msec2"][1, 0])
    np.testing.assert_array_equal(s["gyro_radsec"], np.array(IMU_VALUES["gyro_radsec"], np.float32))
    assert s["temperature_c"].tolist() == IMU_VALUES["temperature_c"]
    assert_clean(counters, records=1, samples=2, body=IMU_RECORD)


def test_imu_golden_is_what_the_encoder_writes():
    assert Encoder(first_sequence=0).samples("IMU_EVENT", 1, IMU_VALUES) == IMU_RECORD
    assert record(0x8020, IMU_PAYLOAD, sequence=0, timestamp_ns=1_000_000_000) == IMU_RECORD


# --- SLAM_CAMERA_FRAME: RAW GRAY8 4x2 -----------------------------------------------------------

CAMERA_IMAGE = hexbytes("00 10 20 30", "ff ef df cf")  # 2 rows of 4 pixels, stride 4
CAMERA_PAYLOAD = hexbytes(
    "04",  # u8 camera_id = 4 (slam-side-left)
    "00",  # u8 codec = 0 RAW
    "00",  # u8 pixel_format = 0 GRAY8
    "00",  # u8 reserved
    "02 01 00 00",  # u32 frame_number = 258
    "04 00",  # u16 width = 4
    "02 00",  # u16 height = 2
    "04 00 00 00",  # u32 stride_bytes = 4
    "0000003c",  # f32 exposure_duration_s = 0.0078125
    "00000040",  # f32 gain = 2.0
    "00001242",  # f32 temperature_c = 36.5
    "00 00 00 00",  # u32 reserved
) + CAMERA_IMAGE
CAMERA_RECORD = frame("10 80", "28 00 00 00", CAMERA_PAYLOAD, sequence="01 00 00 00 00 00 00 00",
                      timestamp_ns="00 94 35 77 00 00 00 00")  # 2_000_000_000
CAMERA_PREFIX = {"camera_id": 4, "codec": 0, "pixel_format": 0, "reserved0": 0, "frame_number": 258, "width": 4,
                 "height": 2, "stride_bytes": 4, "exposure_duration_s": 0.0078125, "gain": 2.0,
                 "temperature_c": 36.5, "reserved1": 0}


def test_camera_golden_decodes_to_the_hand_written_values():
    assert len(CAMERA_PAYLOAD) == 32 + 8
    blob, counters = only_blob(CAMERA_RECORD)
    assert blob.message.name == "SLAM_CAMERA_FRAME"
    assert blob.sequence == 1
    assert blob.timestamp_ns == 2_000_000_000
    assert blob.label == "slam-side-left"
    assert blob.prefix == CAMERA_PREFIX
    assert bytes(blob.data) == CAMERA_IMAGE
    image = np.frombuffer(blob.data, np.uint8).reshape(blob.prefix["height"], blob.prefix["stride_bytes"])
    assert image[1].tolist() == [0xFF, 0xEF, 0xDF, 0xCF]
    assert_clean(counters, records=1, blobs=1, gaps=1, body=CAMERA_RECORD)


def test_camera_golden_is_what_the_encoder_writes():
    written = Encoder(first_sequence=1).blob("SLAM_CAMERA_FRAME", CAMERA_PREFIX, CAMERA_IMAGE, 2_000_000_000)
    assert written == CAMERA_RECORD


# --- AUDIO_REC_DATA: PCM S16LE, 2 channels, 3 samples per channel -------------------------------

AUDIO_DATA = hexbytes(
    "01 00", "ff ff",  # sample 0: left 1, right -1
    "00 01", "00 ff",  # sample 1: left 256, right -256
    "ff 7f", "00 80",  # sample 2: left 32767, right -32768
)
AUDIO_PAYLOAD = hexbytes(
    "02",  # u8 channels = 2
    "00",  # u8 codec = 0 PCM S16LE interleaved
    "00 00",  # u16 reserved
    "80 bb 00 00",  # u32 sample_rate_hz = 48000
    "03 00 00 00",  # u32 samples_per_channel = 3
    "00 00 00 00",  # u32 reserved
) + AUDIO_DATA
AUDIO_RECORD = frame("01 80", "1c 00 00 00", AUDIO_PAYLOAD, sequence="02 00 00 00 00 00 00 00",
                     timestamp_ns="00 ca 9a 3b 00 00 00 00")  # 1_000_000_000
AUDIO_PREFIX = {"channels": 2, "codec": 0, "reserved0": 0, "sample_rate_hz": 48000, "samples_per_channel": 3,
                "reserved1": 0}


def test_audio_golden_decodes_to_the_hand_written_values():
    assert len(AUDIO_PAYLOAD) == 16 + 2 * 3 * 2
    blob, counters = only_blob(AUDIO_RECORD)
    assert blob.message.name == "AUDIO_REC_DATA"
    assert blob.sequence == 2
    assert blob.timestamp_ns == 1_000_000_000
    assert blob.label == "mic"
    assert blob.prefix == AUDIO_PREFIX
    assert bytes(blob.data) == AUDIO_DATA
    pcm = np.frombuffer(blob.data, "<i2").reshape(3, 2)  # samples x channels, interleaved
    assert pcm.tolist() == [[1, -1], [256, -256], [32767, -32768]]
    assert_clean(counters, records=1, blobs=1, gaps=2, body=AUDIO_RECORD)


def test_audio_golden_is_what_the_encoder_writes():
    written = Encoder(first_sequence=2).blob("AUDIO_REC_DATA", AUDIO_PREFIX, AUDIO_DATA, 1_000_000_000)
    assert written == AUDIO_RECORD


# --- TIME_DOMAIN_MAPPING_EVENT: one sample ------------------------------------------------------

TDM_PAYLOAD = hexbytes(
    "00 00",  # u16 source = 0
    "01 00",  # u16 count = 1
    "00 f2 05 2a 01 00 00 00",  # i64 capture_timestamp_ns = 5_000_000_000
    "00 c3 9d d0 00 00 00 00",  # i64 broadcaster_timestamp_ns = 3_500_000_000
    "ef be ad de",  # u32 broadcaster_id = 0xDEADBEEF
)
TDM_RECORD = frame("26 80", "18 00 00 00", TDM_PAYLOAD, sequence="03 00 00 00 00 00 00 00",
                   timestamp_ns="00 f2 05 2a 01 00 00 00")
TDM_VALUES = {"capture_timestamp_ns": [5_000_000_000], "broadcaster_timestamp_ns": [3_500_000_000],
              "broadcaster_id": [0xDEADBEEF]}


def test_time_domain_mapping_golden_decodes_to_the_hand_written_values():
    assert len(TDM_PAYLOAD) == 4 + 20
    block, counters = only_samples(TDM_RECORD)
    assert block.message.name == "TIME_DOMAIN_MAPPING_EVENT"
    assert block.sequence.tolist() == [3]
    assert block.source.tolist() == [0]
    s = block.samples
    assert s["capture_timestamp_ns"].tolist() == [5_000_000_000]
    assert block.timestamps_ns.tolist() == [5_000_000_000]  # the device's own clock
    assert s["broadcaster_timestamp_ns"].tolist() == [3_500_000_000]
    assert s["broadcaster_id"].tolist() == [0xDEADBEEF]
    offset = s["broadcaster_timestamp_ns"].astype(np.int64) - s["capture_timestamp_ns"].astype(np.int64)
    assert offset.tolist() == [-1_500_000_000]
    assert_clean(counters, records=1, samples=1, gaps=3, body=TDM_RECORD)


def test_time_domain_mapping_golden_is_what_the_encoder_writes():
    assert Encoder(first_sequence=3).samples("TIME_DOMAIN_MAPPING_EVENT", 0, TDM_VALUES) == TDM_RECORD


# --- MP_VIO_RESULT: one sample with f64 fields --------------------------------------------------

VIO_PAYLOAD = hexbytes(
    "00 00",  # u16 source = 0
    "01 00",  # u16 count = 1
    "00 e4 0b 54 02 00 00 00",  # i64 timestamp_ns = 10_000_000_000
    "00",  # u8 status = 0 VALID
    "02",  # u8 pose_quality = 2 UNKNOWN
    "00 00",  # u16 reserved
    "0000403f",  # f32 visual_tracking_quality = 0.75
    "000000000000f03f 00000000000004c0 9a9999999999b93f",  # f64[3] translation_m = 1.0, -2.5, 0.1
    "000000000000e03f 000000000000e03f 000000000000e0bf 000000000000e03f",  # f64[4] rotation = .5 .5 -.5 .5
    "0000803e 00000000 000080be",  # f32[3] linear_velocity_mps = 0.25, 0.0, -0.25
    "0000c07f 0000003e 00000040",  # f32[3] angular_velocity_radps = NaN, 0.125, 2.0
    "00000000 00000000 00001cc1",  # f32[3] gravity_msec2 = 0, 0, -9.75
)
VIO_RECORD = frame("32 80", "70 00 00 00", VIO_PAYLOAD, sequence="04 00 00 00 00 00 00 00",
                   timestamp_ns="00 e4 0b 54 02 00 00 00")
VIO_VALUES = {
    "timestamp_ns": [10_000_000_000], "status": [0], "pose_quality": [2], "reserved": [0],
    "visual_tracking_quality": [0.75], "translation_m": [[1.0, -2.5, 0.1]], "rotation": [[0.5, 0.5, -0.5, 0.5]],
    "linear_velocity_mps": [[0.25, 0.0, -0.25]], "angular_velocity_radps": [[NAN, 0.125, 2.0]],
    "gravity_msec2": [[0.0, 0.0, -9.75]],
}


def test_vio_golden_decodes_to_the_hand_written_values():
    assert len(VIO_PAYLOAD) == 4 + 108
    block, counters = only_samples(VIO_RECORD)
    assert block.message.name == "MP_VIO_RESULT"
    assert block.sequence.tolist() == [4]
    s = block.samples
    assert s["timestamp_ns"].tolist() == [10_000_000_000]
    assert s["status"].tolist() == [0]
    assert s["pose_quality"].tolist() == [2]
    assert s["visual_tracking_quality"].tolist() == [0.75]
    # f64 values come out exactly, not rounded through f32 (0.1 is not an f32).
    assert s["translation_m"].dtype.base == np.float64
    assert s["translation_m"].tolist() == [[1.0, -2.5, 0.1]]
    assert s["rotation"].tolist() == [[0.5, 0.5, -0.5, 0.5]]
    assert s["linear_velocity_mps"].tolist() == [[0.25, 0.0, -0.25]]
    np.testing.assert_array_equal(s["angular_velocity_radps"], np.array([[NAN, 0.125, 2.0]], np.float32))
    assert s["gravity_msec2"].tolist() == [[0.0, 0.0, -9.75]]
    assert_clean(counters, records=1, samples=1, gaps=4, body=VIO_RECORD)


def test_vio_golden_is_what_the_encoder_writes():
    assert Encoder(first_sequence=4).samples("MP_VIO_RESULT", 0, VIO_VALUES) == VIO_RECORD


# --- MP_HT_RESULT: one 624-byte sample ----------------------------------------------------------

F32_INTEGERS = [  # 0.0 .. 20.0
    "00000000", "0000803f", "00000040", "00004040", "00008040", "0000a040", "0000c040", "0000e040",
    "00000041", "00001041", "00002041", "00003041", "00004041", "00005041", "00006041", "00007041",
    "00008041", "00008841", "00009041", "00009841", "0000a041",
]
HANDS_PAYLOAD = hexbytes(
    "00 00",  # u16 source = 0
    "01 00",  # u16 count = 1
    "00 94 35 77 00 00 00 00",  # i64 timestamp_ns = 2_000_000_000
    # left hand
    "0000403f",  # confidence = 0.75
    "0000003e 000080be 0000003f",  # f32[3] wrist_translation_m = 0.125, -0.25, 0.5
    "0000803f 00000000 00000000 00000000",  # f32[4] wrist_rotation = 1, 0, 0, 0
    "00000000 0000803f 00000000",  # f32[3] wrist_normal = 0, 1, 0
    "00000000 00000000 000080bf",  # f32[3] palm_normal = 0, 0, -1
    *(f"{x} 0000003f 000000be" for x in F32_INTEGERS),  # f32[63] landmarks_m: landmark j = (j, 0.5, -0.125)
    # right hand: not tracked
    "000080bf",  # confidence = -1.0
    *["0000c07f"] * 76,  # every other value NaN
)
HANDS_RECORD = frame("31 80", "74 02 00 00", HANDS_PAYLOAD, sequence="05 00 00 00 00 00 00 00",
                     timestamp_ns="00 94 35 77 00 00 00 00")
LANDMARKS = [[float(j), 0.5, -0.125] for j in range(21)]
HANDS_VALUES = {
    "timestamp_ns": [2_000_000_000],
    "left_confidence": [0.75], "left_wrist_translation_m": [[0.125, -0.25, 0.5]],
    "left_wrist_rotation": [[1.0, 0.0, 0.0, 0.0]], "left_wrist_normal": [[0.0, 1.0, 0.0]],
    "left_palm_normal": [[0.0, 0.0, -1.0]], "left_landmarks_m": [np.ravel(LANDMARKS)],
    "right_confidence": [-1.0], "right_wrist_translation_m": [[NAN] * 3], "right_wrist_rotation": [[NAN] * 4],
    "right_wrist_normal": [[NAN] * 3], "right_palm_normal": [[NAN] * 3], "right_landmarks_m": [[NAN] * 63],
}


def test_hands_golden_decodes_to_the_hand_written_values():
    assert len(HANDS_PAYLOAD) == 4 + 624
    block, counters = only_samples(HANDS_RECORD)
    assert block.message.name == "MP_HT_RESULT"
    assert block.sequence.tolist() == [5]
    s = block.samples
    assert s["timestamp_ns"].tolist() == [2_000_000_000]
    assert s["left_confidence"].tolist() == [0.75]
    assert s["left_wrist_translation_m"].tolist() == [[0.125, -0.25, 0.5]]
    assert s["left_wrist_rotation"].tolist() == [[1.0, 0.0, 0.0, 0.0]]
    assert s["left_wrist_normal"].tolist() == [[0.0, 1.0, 0.0]]
    assert s["left_palm_normal"].tolist() == [[0.0, 0.0, -1.0]]
    assert s["left_landmarks_m"][0].reshape(21, 3).tolist() == LANDMARKS
    assert s["right_confidence"].tolist() == [-1.0]
    for name in ("right_wrist_translation_m", "right_wrist_rotation", "right_wrist_normal", "right_palm_normal",
                 "right_landmarks_m"):
        assert np.isnan(s[name]).all(), name
    assert_clean(counters, records=1, samples=1, gaps=5, body=HANDS_RECORD)


def test_hands_golden_is_what_the_encoder_writes():
    assert Encoder(first_sequence=5).samples("MP_HT_RESULT", 0, HANDS_VALUES) == HANDS_RECORD


# --- an OPAQUE record and a whole body ----------------------------------------------------------

OPAQUE_PAYLOAD = hexbytes("de ad be ef 00 01 02")
OPAQUE_RECORD = frame("99 80", "07 00 00 00", OPAQUE_PAYLOAD, sequence="06 00 00 00 00 00 00 00",
                      timestamp_ns="00 ca 9a 3b 00 00 00 00", flags="01 00")  # flags: bit 0 OPAQUE


def test_opaque_golden_is_kept_verbatim_with_its_header_fields():
    batches, decoder = decode_whole(OPAQUE_RECORD)
    verbatim = [v for batch in batches for v in batch.verbatim]
    assert len(verbatim) == 1
    v = verbatim[0]
    assert v.reason == "opaque"
    assert bytes(v.data) == OPAQUE_RECORD
    assert (v.message_id, v.flags, v.sequence, v.timestamp_ns) == (0x8099, 1, 6, 1_000_000_000)
    assert decoder.counters.opaque == 1
    assert decoder.counters.records == 0


def test_opaque_golden_is_what_the_encoder_writes():
    assert Encoder(first_sequence=6).opaque(0x8099, OPAQUE_PAYLOAD, 1_000_000_000) == OPAQUE_RECORD


GOLDEN_BODY = IMU_RECORD + CAMERA_RECORD + AUDIO_RECORD + TDM_RECORD + VIO_RECORD + HANDS_RECORD + OPAQUE_RECORD


@pytest.mark.parametrize("piece_size", [None, 1, 7, 32, 33, 100])
def test_golden_body_decodes_the_same_in_any_pieces(piece_size):
    batches, decoder = decode_whole(GOLDEN_BODY, piece_size)
    blocks = {}
    for batch in batches:
        for block in batch.samples:
            blocks.setdefault(block.message.name, []).append(block.samples)
    samples = {name: np.concatenate(parts) for name, parts in blocks.items()}
    assert samples["IMU_EVENT"].tobytes() == IMU_PAYLOAD[4:]
    assert samples["TIME_DOMAIN_MAPPING_EVENT"].tobytes() == TDM_PAYLOAD[4:]
    assert samples["MP_VIO_RESULT"].tobytes() == VIO_PAYLOAD[4:]
    assert samples["MP_HT_RESULT"].tobytes() == HANDS_PAYLOAD[4:]
    blobs = {blob.message.name: blob for batch in batches for blob in batch.blobs}
    assert bytes(blobs["SLAM_CAMERA_FRAME"].data) == CAMERA_IMAGE
    assert blobs["SLAM_CAMERA_FRAME"].prefix == CAMERA_PREFIX
    assert bytes(blobs["AUDIO_REC_DATA"].data) == AUDIO_DATA
    verbatim = [v for batch in batches for v in batch.verbatim]
    assert [bytes(v.data) for v in verbatim] == [OPAQUE_RECORD]
    c = decoder.counters
    assert (c.records, c.samples, c.blobs, c.opaque, c.bytes) == (6, 5, 2, 1, len(GOLDEN_BODY))
    assert (c.corrupt_bytes, c.bad_crc, c.malformed, c.truncated, c.gaps, c.resends) == (0, 0, 0, 0, 0, 0)
    assert decoder.highest_sequence == 6
