"""Shared by the tests/test_storage_*.py files: write simulated sessions through the storage
layer as the server does, and compare what reads back with a fresh decode of the same bytes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from recorder.storage import layout
from recorder.wire import Decoder

PIECE = 256 * 1024  # the server hands the decoder what it has read, in pieces


@dataclass
class Expected:
    """What a fresh Decoder makes of the bodies a session was sent, grouped by stored stream."""

    samples: dict[str, list] = field(default_factory=dict)  # stream -> [(spec, samples, sequence, source)]
    blobs: dict[str, list] = field(default_factory=dict)  # label -> [(Blob, bytes)]
    verbatim: list = field(default_factory=list)  # (VerbatimRecord, bytes)
    corrupt: list = field(default_factory=list)  # (offset, bytes)
    highest_sequence: int | None = None

    def add(self, batch) -> None:
        for block in batch.samples:
            spec = block.message
            for source in np.unique(block.source).tolist():
                mask = block.source == source
                stream = layout.sample_stream(spec, spec.source_label(source))
                self.samples.setdefault(stream, []).append(
                    (spec, block.samples[mask].copy(), block.sequence[mask].copy(), block.source[mask].copy()))
        for blob in batch.blobs:
            self.blobs.setdefault(blob.label, []).append((blob, bytes(blob.data)))
        self.verbatim += [(v, bytes(v.data)) for v in batch.verbatim]
        self.corrupt += [(c.offset, bytes(c.data)) for c in batch.corrupt]

    def streams(self) -> set[str]:
        return set(self.samples) | set(self.blobs)


def stored_table(reader, stream: str) -> pa.Table:
    """Every stored column of a stream, reserved fields included: all of it must be as sent."""
    return reader.table(stream, columns=reader.schema(stream).names)


def expected_from(bodies: list[bytes]) -> Expected:
    """One decoder over every body in order, as one session: resends across them are dropped."""
    expected = Expected()
    decoder = Decoder()
    for body in bodies:
        expected.add(decoder.feed(body))
    expected.add(decoder.close())
    expected.highest_sequence = decoder.highest_sequence
    return expected


def send(writer, body: bytes, headers: dict, *, remote: str = "10.0.0.2:5555", flush_every: int = 4) -> Decoder:
    """One request, as the server runs it: a decoder that knows the session's highest sequence,
    the body in pieces, a flush now and then, end_request with the request's counters."""
    writer.begin_request(headers, remote, time.time_ns())
    decoder = Decoder(highest_sequence=writer.highest_sequence)
    view = memoryview(body)
    for k, i in enumerate(range(0, len(body), PIECE)):
        writer.write(decoder.feed(view[i:i + PIECE]))
        if k % flush_every == flush_every - 1:
            writer.flush()
    writer.write(decoder.close())
    writer.end_request(decoder.counters, time.time_ns())
    writer.flush()
    return decoder


def record_starts(body: bytes) -> list[int]:
    """Where each record of a clean body starts (walking the headers' payload lengths)."""
    starts, pos = [], 0
    while pos < len(body):
        starts.append(pos)
        pos += 32 + int.from_bytes(body[pos + 8: pos + 12], "little")
    return starts


def column_values(table: pa.Table, name: str, shape: tuple = ()) -> np.ndarray:
    column = table.column(name).combine_chunks()
    if shape:
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), *shape)
    return column.to_numpy(zero_copy_only=False)


def _order(samples: np.ndarray, time_field: str, sequence: np.ndarray) -> np.ndarray:
    return np.lexsort((sequence, samples[time_field]))  # stable: a record's samples stay in order


def assert_sample_stream(table: pa.Table, parts: list) -> None:
    """Every field of every sample, by bytes (NaNs included), its sequence and source label."""
    spec = parts[0][0]
    samples = np.concatenate([p[1] for p in parts])
    sequence = np.concatenate([p[2] for p in parts])
    source = np.concatenate([p[3] for p in parts])
    order = _order(samples, spec.time_field, sequence)
    samples, sequence, source = samples[order], sequence[order], source[order]
    assert table.num_rows == len(samples)
    np.testing.assert_array_equal(column_values(table, "timestamp_ns"), samples[spec.time_field].astype(np.int64))
    for f in spec.fields:
        stored = column_values(table, f.name, f.shape)
        assert stored.dtype == np.dtype(f.numpy_type).newbyteorder("=")
        assert stored.tobytes() == np.ascontiguousarray(samples[f.name]).tobytes(), f"{spec.name}.{f.name}"
    np.testing.assert_array_equal(column_values(table, "sequence"), sequence)
    labels = [spec.source_label(int(s)) for s in source]
    assert table.column("source").to_pylist() == labels
    if spec.name == "TIME_DOMAIN_MAPPING_EVENT":
        np.testing.assert_array_equal(
            column_values(table, "offset_ns"),
            samples["broadcaster_timestamp_ns"].astype(np.int64) - samples["capture_timestamp_ns"].astype(np.int64))


def sorted_blobs(items: list) -> list:
    return sorted(items, key=lambda b: (b[0].timestamp_ns, b[0].sequence))


def assert_blob_stream(reader, stream: str, items: list) -> None:
    """Every blob's prefix, time, sequence, label and bytes; camera images decoded."""
    table = stored_table(reader, stream)
    items = sorted_blobs(items)
    assert table.num_rows == len(items)
    rows = table.to_pylist()
    for i, ((blob, data), row) in enumerate(zip(items, rows, strict=True)):
        assert (row["timestamp_ns"], row["sequence"], row["source"], row["message_id"]) == (
            blob.timestamp_ns, blob.sequence, blob.label, blob.message.id)
        for name, value in blob.prefix.items():
            assert _same(row[name], value), (stream, i, name)
        assert row["size"] == len(data)
        assert reader.blob(stream, i) == data
        if blob.message.prefix.name == "camera_frame":
            info, image = reader.frame(stream, i)
            assert info["frame_number"] == blob.prefix["frame_number"]
            if blob.prefix["codec"] == 0 and blob.prefix["pixel_format"] == 0:
                h, w, stride = blob.prefix["height"], blob.prefix["width"], blob.prefix["stride_bytes"]
                assert image.shape == (h, w)
                np.testing.assert_array_equal(image, np.frombuffer(data, np.uint8).reshape(h, stride)[:, :w])
            elif blob.prefix["codec"] != 0:  # decoded: the stored bytes are checked above
                h, w = blob.prefix["height"], blob.prefix["width"]
                assert image.dtype == np.uint8 and image.shape == (h, w, 3)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return np.float32(a).tobytes() == np.float32(b).tobytes()
    return a == b


def assert_audio(reader, items: list) -> None:
    items = sorted_blobs(items)
    pcm, rate, first = reader.audio("mic")
    channels = items[0][0].prefix["channels"]
    expected = np.frombuffer(b"".join(d for _, d in items), "<i2").reshape(-1, channels)
    np.testing.assert_array_equal(pcm, expected)
    assert rate == items[0][0].prefix["sample_rate_hz"]
    assert first == items[0][0].timestamp_ns


def assert_session_matches(reader, expected: Expected) -> None:
    """Every sample stream, every blob stream and the audio equal what the bodies carried."""
    assert set(reader.streams()) >= expected.streams()
    for stream, parts in expected.samples.items():
        assert_sample_stream(stored_table(reader, stream), parts)
    for stream, items in expected.blobs.items():
        assert_blob_stream(reader, stream, items)
    if "mic" in expected.blobs:
        assert_audio(reader, expected.blobs["mic"])


def restrict(expected: Expected, keep) -> Expected:
    """The part of `expected` whose sequences satisfy keep(sequence array) -> bool array."""
    out = Expected(highest_sequence=expected.highest_sequence)
    for stream, parts in expected.samples.items():
        kept = []
        for spec, samples, sequence, source in parts:
            mask = keep(sequence)
            if mask.any():
                kept.append((spec, samples[mask], sequence[mask], source[mask]))
        if kept:
            out.samples[stream] = kept
    for label, items in expected.blobs.items():
        kept = [item for item in items if keep(np.array([item[0].sequence], np.uint64))[0]]
        if kept:
            out.blobs[label] = kept
    return out


def sequences(expected: Expected) -> np.ndarray:
    seqs = [p[2] for parts in expected.samples.values() for p in parts]
    seqs += [np.array([b.sequence for b, _ in items], np.uint64) for items in expected.blobs.values()]
    return np.unique(np.concatenate(seqs))


def store_body(store, headers: dict, body: bytes):
    """One whole body as one request of a session, stored as the server stores it; its folder."""
    writer = store.open_writer(headers["device-serial"], headers["session-id"])
    writer.begin_request(headers, "127.0.0.1:1", time.time_ns())
    decoder = Decoder()
    writer.write(decoder.feed(body))
    writer.write(decoder.close())
    writer.end_request(decoder.counters, time.time_ns())
    writer.close()
    return store.session_path(headers["device-serial"], headers["session-id"])
