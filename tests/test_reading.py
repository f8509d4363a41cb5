"""The reading API (recorder.open_session, recorder.open_dataset) on sessions stored by the
server's storage from the sample capture and from bodies made here: what comes out equals what
went in, checked where possible by another tool's reader (ffmpeg, DuckDB, pyarrow)."""

from __future__ import annotations

import json
import subprocess
import zlib
from fractions import Fraction
from pathlib import Path

import av
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from storage_support import send, store_body

import recorder
from recorder.storage import Store
from recorder.wire.encoder import Encoder

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_data").glob("1M0Y*"))


@pytest.fixture(scope="module")
def sample_sessions(tmp_path_factory) -> dict[str, Path]:
    """Every device of the sample capture (mp_streaming_demo: H.264 RGB, GRAY8 ET cameras,
    TDM between the devices), stored in one data folder."""
    store = Store(tmp_path_factory.mktemp("data"), sync=False)
    paths = {}
    for device in SAMPLES:
        headers = json.loads((device / "headers.json").read_text())
        paths[headers["device-serial"]] = store_body(store, headers, (device / "body.srf").read_bytes())
    return paths


@pytest.fixture(scope="module")
def receiver(sample_sessions) -> Path:
    return next(p for p in sample_sessions.values() if (p / "time-domain-mapping").is_dir())


# -- tables ----------------------------------------------------------------------------------

def test_columns_and_a_time_range_give_the_rows_of_the_whole_table_in_that_range(receiver):
    with recorder.open_session(receiver) as s:
        whole = s.table("imu-left")
        times = whole.column("timestamp_ns").to_numpy()
        start, end = int(times[len(times) // 4]), int(times[3 * len(times) // 4])
        part = s.table("imu-left", columns=["timestamp_ns", "gyro_radsec"], start_ns=start, end_ns=end)
    assert part.column_names == ["timestamp_ns", "gyro_radsec"]
    inside = (times >= start) & (times < end)
    assert part.num_rows == int(inside.sum()) > 0
    assert part.column("gyro_radsec").equals(whole.filter(pa.array(inside)).column("gyro_radsec"))


def test_batches_hold_the_same_rows_as_the_table(receiver):
    with recorder.open_session(receiver) as s:
        whole = s.table("vio-high-frequency")
        batches = list(s.batches("vio-high-frequency", batch_rows=100))
    assert all(b.num_rows <= 100 for b in batches)
    assert pa.Table.from_batches(batches).sort_by([("timestamp_ns", "ascending"), ("sequence", "ascending")]).equals(whole)


def test_reserved_fields_are_stored_but_not_in_the_default_columns(receiver):
    with recorder.open_session(receiver) as s:
        default = s.table("vio")
        asked = s.table("vio", columns=["timestamp_ns", "reserved"])
        stored = s.schema("vio")
    assert "reserved" in stored.names and "reserved" not in default.column_names
    assert asked.column("reserved").type == pa.uint16() and asked.num_rows == default.num_rows


def test_enumerated_codes_have_a_label_column_and_the_stored_schema_names_them(receiver):
    with recorder.open_session(receiver) as s:
        vio = s.table("vio")
        frames = s.table("camera-rgb")
        stored = s.schema("camera-rgb")
    names = vio.column_names
    assert names.index("status_label") == names.index("status") + 1
    assert pa.types.is_dictionary(vio.schema.field("status_label").type)
    labels = {0: "VALID", 1: "FILTER_NOT_INITIALIZED", 2: "INVALID"}
    expected = [labels[c] for c in vio.column("status").to_pylist()]
    assert vio.column("status_label").cast(pa.string()).to_pylist() == expected
    assert set(frames.column("codec_label").cast(pa.string()).to_pylist()) == {"H264"}
    assert json.loads(stored.field("codec").metadata[b"recorder.enum"]) == {"0": "RAW", "1": "JPEG", "2": "H264",
                                                                            "3": "H265"}
    assert stored.field("exposure_duration_s").metadata[b"recorder.unit"] == b"s"


def test_a_folder_that_is_not_a_session_is_named_as_such(sample_sessions):
    data_dir = next(iter(sample_sessions.values())).parent.parent
    with pytest.raises(ValueError, match="is not a session folder"):
        recorder.open_session(data_dir)
    with pytest.raises(KeyError, match="no stream 'nothing'"):
        recorder.open_session(next(iter(sample_sessions.values()))).table("nothing")


# -- camera frames ---------------------------------------------------------------------------

def ffmpeg_decode(stream: bytes, width: int, height: int, codec: str = "h264") -> np.ndarray:
    """Every frame of an Annex B stream as RGB, decoded by the ffmpeg command."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-f", codec, "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         input=stream, capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, height, width, 3)


def test_h264_frames_decode_as_ffmpeg_decodes_them_from_any_frame_on(receiver):
    with recorder.open_session(receiver) as s:
        index = s.table("camera-rgb")
        n = index.num_rows
        stream = b"".join(s.blob("camera-rgb", i) for i in range(n))
        width, height = index.column("width")[0].as_py(), index.column("height")[0].as_py()
        reference = ffmpeg_decode(stream, width, height)
        assert len(reference) == n > 2
        every = list(s.frames("camera-rgb"))
        middle = n // 2 + 1  # not a keyframe: decoding starts at the keyframe before it
        info, image = s.frame("camera-rgb", middle)
        times = index.column("timestamp_ns").to_numpy()
        ranged = list(s.frames("camera-rgb", start_ns=int(times[middle]), end_ns=int(times[n - 1])))
    assert [i["frame_number"] for i, _ in every] == index.column("frame_number").to_pylist()
    assert info["frame_number"] == index.column("frame_number")[middle].as_py()
    assert image.shape == (height, width, 3)
    # The same decoder (libavcodec); the YUV to RGB conversion may round differently.
    for (_, ours), theirs in zip(every, reference, strict=True):
        assert np.abs(ours.astype(int) - theirs).max() <= 3
    assert np.array_equal(image, every[middle][1])
    assert [i["frame_number"] for i, _ in ranged] == index.column("frame_number").to_pylist()[middle:n - 1]
    assert all(np.array_equal(img, every[middle + k][1]) for k, (_, img) in enumerate(ranged))


def test_gray8_frames_are_the_stored_pixels(receiver):
    with recorder.open_session(receiver) as s:
        info, image = s.frame("camera-et-left", 1)
        stored = s.blob("camera-et-left", 1)
    assert image.shape == (info["height"], info["width"]) and image.dtype == np.uint8
    assert image.tobytes() == stored  # stride == width here


def _camera_session(tmp_path: Path, frames: list[tuple[dict, bytes]]) -> Path:
    encoder = Encoder()
    body = b"".join(encoder.blob("POV_CAMERA_FRAME", prefix, data, timestamp_ns=1_000_000 * (k + 1))
                    for k, (prefix, data) in enumerate(frames))
    headers = {"device-serial": "CAMERA1", "session-id": "597b9aec-079a-4ca3-bc6c-98bf10f6aa33"}
    return store_body(Store(tmp_path, sync=False), headers, body)


def _prefix(codec: int, pixel_format: int, width: int, height: int, stride: int, frame_number: int) -> dict:
    return {"camera_id": 64, "codec": codec, "pixel_format": pixel_format, "reserved0": 0,
            "frame_number": frame_number, "width": width, "height": height, "stride_bytes": stride,
            "exposure_duration_s": 0.01, "gain": 1.0, "temperature_c": 30.0, "reserved1": 0}


def test_jpeg_and_yuv420p_frames_decode_to_the_image_they_were_made_from(tmp_path):
    rng = np.random.default_rng(3)
    width, height = 64, 48
    picture = np.repeat(np.repeat(rng.integers(0, 255, (height // 8, width // 8, 3), np.uint8), 8, 0), 8, 1)
    yuv = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p").to_ndarray()
    y, chroma = yuv[:height], yuv[height:].reshape(2, height // 2, width // 2)
    stride = width + 16  # padded rows: the padding is not part of the image
    padded = b"".join(np.pad(p, ((0, 0), (0, (stride - width) // (1 if i == 0 else 2)))).tobytes()
                      for i, p in enumerate([y, chroma[0], chroma[1]]))
    jpeg = av.CodecContext.create("mjpeg", "w")
    jpeg.width, jpeg.height, jpeg.pix_fmt, jpeg.time_base = width, height, "yuvj420p", Fraction(1, 30)
    jpeg_bytes = b"".join(bytes(p) for p in jpeg.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")
                                                        .reformat(format="yuvj420p")))
    path = _camera_session(tmp_path, [(_prefix(0, 2, width, height, stride, 0), padded),
                                      (_prefix(1, 0, width, height, 0, 1), jpeg_bytes)])
    with recorder.open_session(path) as s:
        _, from_yuv = s.frame("camera-rgb", 0)
        _, from_jpeg = s.frame("camera-rgb", 1)
    # Colour conversion and JPEG are lossy: within a few levels of the picture on average.
    assert from_yuv.shape == from_jpeg.shape == (height, width, 3)
    assert np.abs(from_yuv.astype(int) - picture).mean() < 6
    assert np.abs(from_jpeg.astype(int) - picture).mean() < 6


# -- clocks ----------------------------------------------------------------------------------

def test_the_broadcaster_is_named_by_the_sessions_beside_it(sample_sessions):
    # The simulator's broadcaster_id is the CRC-32 of the broadcaster's serial: an independent
    # way to know which device it is.
    by_id = {zlib.crc32(serial.encode()): serial for serial in sample_sessions}
    roles = {}
    for serial, path in sample_sessions.items():
        with recorder.open_session(path) as s:
            roles[serial] = s.broadcaster
    broadcasters = [serial for serial, b in roles.items() if b.role == "broadcaster"]
    assert len(broadcasters) == 1
    for b in roles.values():
        if b.role == "receiver":
            assert b.serial == by_id[b.ids[0]] == broadcasters[0]
    assert roles[broadcasters[0]].serial == broadcasters[0]
    assert set(by_id) >= {b.ids[0] for b in roles.values() if b.role == "receiver"}


def test_the_broadcasters_times_are_its_own(sample_sessions):
    broadcaster = next(p for p in sample_sessions.values() if not (p / "time-domain-mapping").is_dir())
    with recorder.open_session(broadcaster) as s:
        t = s.table("imu-left", columns=["timestamp_ns"]).column("timestamp_ns").to_numpy()
        assert np.array_equal(s.to_broadcaster_time(t), t)


def test_a_lone_session_without_mapping_cannot_tell_its_role(tmp_path, sample_sessions):
    broadcaster = next(p for p in sample_sessions.values() if not (p / "time-domain-mapping").is_dir())
    headers = json.loads((ROOT / "sample_data" / broadcaster.parent.name / "headers.json").read_text())
    alone = store_body(Store(tmp_path, sync=False), headers,
                       (ROOT / "sample_data" / broadcaster.parent.name / "body.srf").read_bytes())
    with recorder.open_session(alone) as s:
        assert s.broadcaster.role == "broadcaster_or_unsynchronised" and s.broadcaster.serial is None


# -- datasets --------------------------------------------------------------------------------

def test_a_dataset_of_the_data_folder_is_every_sessions_rows_with_serial_and_session_id(sample_sessions):
    data_dir = next(iter(sample_sessions.values())).parent.parent
    db = duckdb.connect()
    db.register("imu", recorder.open_dataset(data_dir, "imu-left"))
    counts = dict(db.sql("SELECT serial, count(*) FROM imu GROUP BY serial").fetchall())
    expected = {}
    for serial, path in sample_sessions.items():
        with recorder.open_session(path) as s:
            expected[serial] = s.table("imu-left").num_rows
    assert counts == expected
    ids = db.sql("SELECT DISTINCT serial, session_id FROM imu ORDER BY serial").fetchall()
    assert ids == sorted((serial, path.name) for serial, path in sample_sessions.items())


def test_a_dataset_of_one_session_folder_skips_its_other_files(receiver):
    one = recorder.open_dataset(receiver, "imu-left").to_table()
    with recorder.open_session(receiver) as s:
        whole = s.table("imu-left")
    assert set(pc.unique(one.column("serial")).to_pylist()) == {receiver.parent.name}
    assert one.sort_by([("timestamp_ns", "ascending"), ("sequence", "ascending")]).column("accel_msec2").equals(
        whole.column("accel_msec2"))


def test_a_dataset_of_a_folder_without_sessions_says_what_was_expected(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(FileNotFoundError, match="expected a data folder"):
        recorder.open_dataset(tmp_path, "imu-left")


def test_consecutive_ranges_give_every_row_once_across_parts(tmp_path, receiver):
    """A replay reads a stream range after range: the ranges together are the whole table, also
    when the stream is stored in several parts (one still live)."""
    headers = json.loads((ROOT / "sample_data" / receiver.parent.name / "headers.json").read_text())
    body = (ROOT / "sample_data" / receiver.parent.name / "body.srf").read_bytes()
    writer = Store(tmp_path, roll_bytes=20_000, sync=False).open_writer(headers["device-serial"],
                                                                         headers["session-id"])
    send(writer, body, headers, flush_every=1)  # parts roll by size while it is written; the last stays live
    with recorder.open_session(writer.path) as s:
        assert len(list((writer.path / "imu-left").glob("part-*.parquet"))) > 1
        whole = s.table("imu-left", columns=s.schema("imu-left").names)
        times = whole.column("timestamp_ns").to_numpy()
        reader = s.range_reader("imu-left")
        edges = np.linspace(times[0], times[-1] + 1, 23).astype(np.int64)
        ranges = [reader.read(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        assert pa.concat_tables(ranges).equals(whole)
        assert reader.read(int(times[-1]) + 1, None).num_rows == 0
        accel = s.range_reader("imu-left", ["accel_msec2"]).read(int(edges[3]), int(edges[9]))
        assert accel.column_names == ["accel_msec2"]
        assert accel.column(0).equals(pa.concat_tables(ranges[3:9]).column("accel_msec2"))


def test_blobs_read_together_equal_blobs_read_one_by_one(receiver):
    with recorder.open_session(receiver) as s:
        n = s.table("camera-rgb", columns=["timestamp_ns"]).num_rows
        assert s.blobs("camera-rgb", 1, n) == [s.blob("camera-rgb", i) for i in range(1, n)]
        assert s.blob_array("camera-rgb", 1, n).to_pylist() == s.blobs("camera-rgb", 1, n)
        assert s.blobs("camera-rgb", 2, 2) == [] and len(s.blob_array("camera-rgb", 2, 2)) == 0
        with pytest.raises(IndexError):
            s.blobs("camera-rgb", 0, n + 1)


def test_a_span_of_frames_is_read_whole_and_a_wrong_size_shows(tmp_path):
    """blob_array decompresses a span of frames into a buffer of the size the index gives,
    undoing the rows filter of the images among them; a span whose frames hold more or less
    than that comes back at its own size (so the caller reads frame by frame instead), never
    cut to fit."""
    from recorder.storage.blobfile import BlobFile, read_back_to_back

    rng = np.random.default_rng(5)
    blobs = BlobFile(tmp_path / "blobs.zst")
    frames, where = [], []
    for k in range(20):
        if k % 3:  # an image: rows of 40 bytes, stored filtered
            frames.append(rng.integers(0, 256, 40 * (2 + k), dtype=np.uint8).tobytes())
            where.append(blobs.append(frames[-1], row_bytes=40))
        else:
            frames.append(bytes([k]) * (1000 + 7 * k))
            where.append(blobs.append(frames[-1]))
    blobs.close(sync=False)
    offsets = np.array([offset for offset, _ in where])
    lengths = np.array([len(frame) for _, frame in where])
    sizes = np.array([len(frame) for frame in frames])
    with open(tmp_path / "blobs.zst", "rb") as f:
        assert bytes(read_back_to_back(f, offsets, lengths, sizes)) == b"".join(frames)
        assert bytes(read_back_to_back(f, offsets[4:9], lengths[4:9], sizes[4:9])) == b"".join(frames[4:9])
        said_less = sizes.copy()
        said_less[-1] -= 1
        assert len(read_back_to_back(f, offsets, lengths, said_less)) == sizes.sum()  # more than said
        said_more = sizes.copy()
        said_more[-1] += 1
        assert len(read_back_to_back(f, offsets, lengths, said_more)) == sizes.sum()  # less than said
        cut = lengths.copy()
        cut[-1] += 1
        with pytest.raises(EOFError):
            read_back_to_back(f, offsets, cut, sizes)
