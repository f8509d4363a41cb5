"""What a session's writer publishes on the live feed: the very rows it stored, as stored, each
camera frame's and audio block's stored bytes beside its own index row, also when the feed
could hold only some of them and when a reader came in the middle of the session."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest
from storage_support import PIECE

from recorder import open_session
from recorder.server import feed
from recorder.server.feed import ROWS, STORED_COLUMN, FeedHub, FeedQueue, Subscriber, decompressed
from recorder.sim.fleet import make_fleet
from recorder.storage import Store
from recorder.wire import Decoder


@pytest.fixture(scope="module")
def device():
    return make_fleet(1, seed=4)[0]


def record(tmp_path, device, seconds: float, subscriber_after: float | None = None, flush_every: int = 1):
    """The device's first `seconds` stored as the server stores them, in windows of 0.1 s, a
    flush after every `flush_every` windows; a subscriber to every stream is there from the start,
    or comes in the middle of the window `subscriber_after` seconds in (after some of its rows
    were written, before they are flushed). Its published row items."""
    hub = FeedHub()
    subscriber = Subscriber("test", queue=FeedQueue(max_batches=1 << 20, max_bytes=1 << 40))
    writer = Store(tmp_path).open_writer(device.serial, device.session_id)
    writer.feed = hub.session_feed(device.serial, device.session_id)
    writer.begin_request(device.headers(), "10.0.0.2:5555", time.time_ns())
    decoder = Decoder()
    if subscriber_after is None:
        hub.subscribe(subscriber)
    for k in range(round(seconds / 0.1)):
        body = memoryview(device.window(k * 0.1, (k + 1) * 0.1))
        pieces = [body[i:i + PIECE // 4] for i in range(0, len(body), PIECE // 4)]
        for n, piece in enumerate(pieces):
            if subscriber_after is not None and k == round(subscriber_after / 0.1) and n == len(pieces) // 2:
                hub.subscribe(subscriber)
            writer.write(decoder.feed(piece))
        if k % flush_every == flush_every - 1:
            writer.flush()
    writer.write(decoder.close())
    writer.end_request(decoder.counters, time.time_ns())
    writer.close()
    items = []
    while (item := subscriber.queue.take()) is not None:
        if item.kind == ROWS:
            items.append(item)
    return open_session(writer.path), items


def published_tables(items) -> dict[str, pa.Table]:
    by_stream: dict[str, list] = {}
    for item in items:
        by_stream.setdefault(item.stream, []).append(decompressed(item.batch))
    return {stream: pa.Table.from_batches(batches) for stream, batches in by_stream.items()}


def same(a: pa.Table, b: pa.Table) -> bool:
    """Equal bit for bit (Table.equals holds NaN unequal to itself, and the feed carries NaNs)."""
    def bits(table):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, a.schema) as writer:
            writer.write_table(table.cast(a.schema).combine_chunks())
        return sink.getvalue()
    return a.num_rows == b.num_rows and bits(a).equals(bits(b))


def stored_rows(reader, stream: str, names: list[str]) -> pa.Table:
    table = reader.table(stream, columns=[n for n in names if n != "data"])
    if "data" in names:
        table = table.append_column("data", pa.array(reader.blobs(stream, 0, table.num_rows), pa.binary()))
    return table.select(names)


def test_every_stored_row_is_published_as_stored_with_its_own_bytes(tmp_path, device):
    reader, items = record(tmp_path, device, 1.0)
    published = published_tables(items)
    assert set(published) == set(reader.streams()) - {"verbatim"}
    assert any("data" in t.column_names for t in published.values())
    for stream, table in published.items():
        assert same(table, stored_rows(reader, stream, table.column_names).sort_by([("sequence", "ascending")])), stream


def test_frames_the_feed_could_not_hold_leave_the_other_rows_paired_with_their_own_bytes(tmp_path, device, monkeypatch):
    # Flushes every half second, room for about a dozen camera frames between two: the first
    # frames of each flush are held, the later ones dropped (counted), and a small one now and then.
    monkeypatch.setattr(feed, "HELD_BYTES", 1_000_000)
    reader, items = record(tmp_path, device, 2.0, subscriber_after=0.3, flush_every=5)
    published = published_tables(items)
    kept = dropped = 0
    for stream in reader.streams():
        if "file" not in reader.schema(stream).names:  # not a blob stream
            continue
        stored = stored_rows(reader, stream, ["timestamp_ns", "sequence", "length", "data"])
        table = published[stream].select(stored.column_names) if stream in published else stored.slice(0, 0)
        by_sequence = dict(zip(stored.column("sequence").to_pylist(), stored.to_pylist(), strict=True))
        for row in table.to_pylist():
            assert row == by_sequence[row["sequence"]]
        kept += table.num_rows
        dropped += stored.num_rows - table.num_rows
    assert kept and dropped


def test_a_reader_that_comes_mid_session_gets_what_is_stored_from_then_on(tmp_path, device):
    reader, items = record(tmp_path, device, 1.0, subscriber_after=0.5)
    published = published_tables(items)
    for stream, table in published.items():
        stored = stored_rows(reader, stream, table.column_names)
        assert 0 < table.num_rows < stored.num_rows, stream
        first = stored.column("sequence").to_pylist().index(table.column("sequence")[0].as_py())
        assert same(table, stored.slice(first)), stream
    assert STORED_COLUMN not in next(iter(published.values())).column_names
