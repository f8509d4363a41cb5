"""A simulated multi-device profile9 session stored and read back: every stream, every field,
every frame's bytes and the audio equal a fresh decode of the bytes that were sent."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import zstandard
from storage_support import assert_session_matches, expected_from, send, stored_table

from recorder import open_session
from recorder.schema import load
from recorder.sim.fleet import make_fleet
from recorder.storage import Store, layout, tables

SECONDS = 2.0
SCHEMA = load()
PROFILE9_STREAMS = {
    "imu-left", "imu-right", "magnetometer", "barometer", "temperature", "ppg", "battery", "eye-gaze",
    "hand-tracking", "vio", "vio-high-frequency", "slam-front-left", "slam-front-right", "slam-side-left",
    "slam-side-right", "camera-rgb", "mic",
}


@pytest.fixture(scope="module", params=[False, True], ids=["batched", "one_sample_per_message"])
def stored_fleet(request, tmp_path_factory):
    """Two devices (the broadcaster and a receiver) each sending two requests into one Store."""
    root = tmp_path_factory.mktemp("data")
    store = Store(root)
    fleet = make_fleet(2, seed=11, one_sample_per_message=request.param)
    sessions = []
    for device in fleet:
        bodies = [device.window(0.0, SECONDS / 2), device.window(SECONDS / 2, SECONDS)]
        writer = store.open_writer(device.serial, device.session_id)
        for body in bodies:
            send(writer, body, device.headers())
        writer.close()
        sessions.append((device, writer.path, expected_from(bodies)))
    return store, sessions


def test_every_stream_field_frame_and_audio_read_back_as_sent(stored_fleet):
    _, sessions = stored_fleet
    for device, path, expected in sessions:
        assert path == stored_fleet[0].data_dir / device.serial / device.session_id
        with open_session(path) as reader:
            wanted = PROFILE9_STREAMS | ({"time-domain-mapping"} if not device.is_broadcaster else set())
            assert set(reader.streams()) == wanted
            assert_session_matches(reader, expected)
            assert reader.manifest["state"] == "finished"
            assert reader.manifest["highest_sequence"] == expected.highest_sequence
            assert reader.manifest["requests"] == 2


def test_each_stream_folder_reads_as_one_dataset(stored_fleet):
    _, sessions = stored_fleet
    for _, path, _ in sessions:
        reader = open_session(path)
        for stream in reader.streams():
            dataset = ds.dataset(path / stream, format="parquet")
            assert all("/_" not in f and "/." not in f for f in dataset.files)
            table = dataset.to_table()
            stored = stored_table(reader, stream)
            assert table.num_rows == stored.num_rows
            assert table.schema.remove_metadata() == stored.schema.remove_metadata()


def test_columns_follow_the_wire_fields_of_the_schema(stored_fleet):
    _, sessions = stored_fleet
    reader = open_session(sessions[1][1])
    imu = reader.table("imu-left")
    assert imu.column_names == ["timestamp_ns", "accel_msec2", "gyro_radsec", "temperature_c", "sequence", "source"]
    assert imu.schema.field("accel_msec2").type == pa.list_(pa.float32(), 3)
    assert set(imu.column("source").to_pylist()) == {"imu-left"}
    temperature = reader.table("temperature")
    assert set(temperature.column("source").to_pylist()) == {"temperature0", "temperature1", "temperature2"}
    tdm = reader.tdm()
    assert tdm.column_names == ["timestamp_ns", "capture_timestamp_ns", "broadcaster_timestamp_ns", "broadcaster_id",
                                "offset_ns", "sequence", "source"]
    for spec in SCHEMA.messages.values():
        if spec.is_samples:
            names = tables.sample_schema(spec).names
            assert [f.name for f in spec.fields if f.name != "timestamp_ns"] == [
                n for n in names if n not in ("timestamp_ns", "sequence", "source", "offset_ns")]
    frames = reader.schema("slam-front-left")
    prefix = [f.name for f in SCHEMA.prefixes["camera_frame"].fields]
    assert set(prefix + ["timestamp_ns", "sequence", "source", "file", "offset", "length", "size"]) <= set(
        frames.names)
    shown = reader.table("slam-front-left").column_names  # reserved fields stay stored, out of the way
    assert "reserved0" not in shown and shown.index("codec_label") == shown.index("codec") + 1


def test_blob_files_are_zstd_streams_of_one_frame_per_blob(stored_fleet):
    _, sessions = stored_fleet
    reader = open_session(sessions[0][1])
    index = reader.table("slam-side-left")
    files = sorted(set(index.column("file").to_pylist()))
    assert files and all(f.startswith("_blobs/") for f in files)
    for name in files:
        whole = (sessions[0][1] / "slam-side-left" / name).read_bytes()
        rows = [r for r in index.to_pylist() if r["file"] == name]
        rows.sort(key=lambda r: r["offset"])
        # concatenated frames are one valid zstd stream ...
        with zstandard.ZstdDecompressor().stream_reader(whole, read_across_frames=True) as stream:
            everything = stream.read()
        assert len(everything) == sum(r["size"] for r in rows)
        # ... and each frame decompresses alone from its offset and length: a RAW image after a
        # zstd skippable frame (magic 0x184D2A5E, 4 bytes: the row length), its rows stored as
        # differences from the row above, which a running sum down the rows undoes
        for r in rows[:3]:
            frame = whole[r["offset"]: r["offset"] + r["length"]]
            magic, size, row_bytes = struct.unpack_from("<III", frame)
            assert (magic, size, row_bytes) == (0x184D2A5E, 4, r["stride_bytes"])
            rows_filtered = zstandard.ZstdDecompressor().decompress(frame[12:])
            assert len(rows_filtered) == r["size"]
            image = np.cumsum(np.frombuffer(rows_filtered, np.uint8).reshape(-1, row_bytes), axis=0, dtype=np.uint8)
            assert image.tobytes() == reader.blob("slam-side-left", index.column("offset").to_pylist().index(r["offset"]))
        assert rows[-1]["offset"] + rows[-1]["length"] == len(whole)


def test_blob_levels_are_the_measured_choice(stored_fleet):
    """RAW frames with PNG's Up filter (each row less the row above, byte by byte, modulo 256)
    at zstd level 1; frames a codec compressed already (H.264 here) and that no level shrinks at
    the fastest level, which writes the same frame bytes for much less CPU; PCM audio at the
    store's level."""
    _, sessions = stored_fleet
    reader = open_session(sessions[0][1])

    def up_filtered(data: bytes, row_bytes: int) -> bytes:
        image = np.frombuffer(data, np.uint8).reshape(-1, row_bytes).astype(np.int16)
        return (np.diff(image, axis=0, prepend=0) % 256).astype(np.uint8).tobytes()

    for stream, level in (("slam-side-left", 1), ("camera-rgb", -1), ("mic", 3)):
        index = reader.table(stream)
        assert index.num_rows
        for i in range(min(3, index.num_rows)):
            row = index.slice(i, 1).to_pylist()[0]
            stored = (sessions[0][1] / stream / row["file"]).read_bytes()[row["offset"]:row["offset"] + row["length"]]
            data = reader.blob(stream, i)
            compress = zstandard.ZstdCompressor(level=level, write_content_size=True).compress
            if stream.startswith("slam"):
                rows = row["stride_bytes"]
                assert stored == struct.pack("<III", 0x184D2A5E, 4, rows) + compress(up_filtered(data, rows)), stream
            else:
                assert stored == compress(data), stream
    assert set(open_session(sessions[0][1]).table("camera-rgb").column("codec_label").to_pylist()) == {"H264"}


def test_parquet_encodings_are_the_measured_choice(stored_fleet):
    _, sessions = stored_fleet
    part = next((sessions[1][1] / "vio").glob("part-*.parquet"))
    meta = pq.ParquetFile(part).metadata
    encodings = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).encodings
                 for i in range(meta.num_columns)}
    assert "BYTE_STREAM_SPLIT" in encodings["translation_m.list.element"]
    assert "BYTE_STREAM_SPLIT" in encodings["visual_tracking_quality"]
    assert "DELTA_BINARY_PACKED" in encodings["timestamp_ns"]
    assert "RLE_DICTIONARY" in encodings["source"]
    assert not any("DICTIONARY" in e for path, es in encodings.items() if path != "source" for e in es)
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_manifest_and_stats_summarise_the_session(stored_fleet):
    store, sessions = stored_fleet
    broadcaster, receiver = sessions[0], sessions[1]
    for device, path, expected in sessions:
        m = open_session(path).manifest
        assert (m["serial"], m["session_id"], m["device_build"]) == (device.serial, device.session_id, device.build)
        assert m["headers"]["device-serial"] == device.serial and "oatmeal-calibration" not in m["headers"]
        for stream, parts in expected.samples.items():
            assert m["streams"][stream]["rows"] == sum(len(p[1]) for p in parts)
        for label, items in expected.blobs.items():
            assert m["streams"][label]["rows"] == len(items)
        assert m["camera_frames"] == {label: len(items) for label, items in expected.blobs.items() if label != "mic"}
        assert m["counters"]["gaps"] == 0 and m["counters"]["resends"] == 0
        assert m["first_device_time_ns"] <= m["last_device_time_ns"]
        assert m["first_wall_time_ns"] <= m["last_wall_time_ns"]
        assert m["stored_bytes"] == sum(s["bytes"] for s in m["streams"].values())
    assert open_session(broadcaster[1]).manifest["tdm"]["role"] == "broadcaster_or_unsynchronised"
    tdm = open_session(receiver[1]).manifest["tdm"]
    assert tdm["role"] == "receiver" and tdm["samples"] == SECONDS * 10
    offsets = np.concatenate([p[1]["broadcaster_timestamp_ns"].astype(np.int64) - p[1]["capture_timestamp_ns"]
                              for p in receiver[2].samples["time-domain-mapping"]])
    assert tdm["mean_offset_ns"] == pytest.approx(offsets.mean(), abs=1)
    assert store.unfinished() == []


def test_stats_is_a_cheap_snapshot_while_recording(tmp_path):
    device = make_fleet(2, seed=11)[1]
    store = Store(tmp_path)
    writer = store.open_writer(device.serial, device.session_id)
    send(writer, device.window(0.0, 0.6), device.headers())  # three 200 ms batches
    s = writer.stats()
    assert s["state"] == "recording" and s["records"] > 0 and s["bytes"] > 0
    assert s["streams"]["imu-left"]["rows"] == 480
    assert s["camera_frames"]["slam-front-left"] == 6
    assert s["tdm"]["role"] == "receiver" and s["tdm"]["samples"] == 6
    assert s["tdm"]["latest_offset_ns"] is not None
    for key in ("gaps", "corrupt_bytes", "malformed", "opaque", "first_device_time_ns", "last_device_time_ns"):
        assert key in s
    # a reader sees the live parts of a session being written
    assert open_session(writer.path).table("imu-left").num_rows == 480
    assert layout.lives(writer.path / "imu-left")
    writer.close()
    assert not layout.lives(writer.path / "imu-left")
