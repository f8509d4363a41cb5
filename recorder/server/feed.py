"""The live feed: every batch the storage has written, offered to whoever subscribed, without
ever holding up the recording.

Where batches come from. A session's writer tells its SessionFeed each batch of rows it stores
(sample rows as stored; a blob stream's index rows with each row's bytes beside them); once the
writer's flush() has put them in the files, the SessionFeed publishes them to the process's
FeedHub, one batch per stream, with the stored columns (plus, for camera and audio, a binary
`data_zstd` column: each frame's or block's bytes as the storage compressed them, one zstd frame
with its content size, which decompressed() turns into a `data` column; a RAW image's frame is
preceded by a zstd skippable frame giving the row length its rows were filtered by, as in the
blob files: recorder/storage/blobfile.py, decode_frame). The feed therefore never shows a row that is not stored, and nothing is held for it
when nobody subscribed.

Who reads. Each subscriber (a GET /feed connection, or the in-process handlers of
recorder.sdk.RecorderServer) has a bounded queue (batches and bytes). Publishing only ever does
a non-blocking put: a full queue drops that batch for that subscriber alone, counted per
subscriber and device (/status "feed", /metrics recorder_feed_*). The writer's thread never
waits for a reader, and no reader's code runs on it.

On the wire. GET /feed (every device) or /feed?serial=A&serial=B, with &stream=imu-right,vio for some streams
only (rows of other streams are then not even held for it), answers 200 with a chunked
body that lasts while the recorder runs: frames of `RFD1`, the head's length (u32 LE), the
body's length (u64 LE), a JSON head, the body. Heads have a "type": "hello" first; "session" (a
device session begins or resumes, or was open when the reader came; "device", "session_id" name
the session in this and the next three); "calibration" (its body the session's calibration
header as stored); "rows" ("stream", "rows"; its body an Arrow IPC stream of one batch);
"ended" (the session was finalised); "dropped" ("device", "batches", "rows" this reader's queue
could not take since the last such frame); "heartbeat" every few seconds of quiet; "end" last,
when the recorder stops.

Several processes. The hub is per process, and what it carries is self-contained: a FeedItem
encodes to one frame (a JSON head naming the device, session and stream, then the rows as an
Arrow IPC stream) and decodes back, so a frame can cross a process boundary as bytes. When
ingest runs in several worker processes (`recorder serve --workers N`), each owning whole
sessions, a GET /feed reader on one worker also gets the frames of the others' feeds, passed
on as they came (feedrelay.py).
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import h11
import numpy as np
import pyarrow as pa
import trio
import zstandard
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..storage.blobfile import decode_frame

FEED_PATH = "/feed"
CONTENT_TYPE = "application/vnd.recorder.feed"
# A frame: magic, head length (u32), body length (u64), the JSON head, the body.
MAGIC = b"RFD1"
PREFIX = struct.Struct("<4sIQ")
# Kinds of items: stored rows; a session's calibration header (as stored, byte for byte); a
# session that begins or resumes (or is open when a subscriber comes); a session finalised. Only rows are ever
# dropped: the others are rare and tiny, and a reader needs them to know where data belongs.
ROWS, CALIBRATION, SESSION, ENDED = "rows", "calibration", "session", "ended"
# Frames a GET /feed connection gets besides items: the first one, periodic ones while nothing
# happens (so a reader can tell a quiet recorder from a dead connection), drops since the last
# frame, and the last one when the recorder stops.
HELLO, HEARTBEAT, DROPPED, END = "hello", "heartbeat", "dropped", "end"
HEARTBEAT_S = 5.0
QUEUE_BATCHES = 256
QUEUE_BYTES = 64 << 20
# Rows a session holds for the feed between two flushes of its writer; beyond this (a device
# far faster than a flush interval can take) they are dropped for every subscriber, counted.
HELD_BYTES = 64 << 20
# What one send to a GET /feed reader carries at most (more, if a single item is bigger).
BURST_BYTES = 4 << 20
# How long a stopping server lets GET /feed readers take the last batches.
DRAIN_S = 2.0
# A blob stream's bytes on the feed (zstd frames, as stored), and once a reader decompressed them.
STORED_COLUMN, DATA_COLUMN = "data_zstd", "data"
# What another worker asks to upgrade its GET /feed to: the frames raw, not chunked
# (UpgradedBody); and how many pieces one sendmsg() gathers (Linux takes up to 1024).
FEED_UPGRADE = b"recorder-feed"
MAX_GATHERED = 512
# What ends an Arrow IPC stream: a continuation marker and a zero length.
IPC_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"
# Batches smaller than this are serialised whole for the feed (ipc_stream_pieces).
SERIALISED_BELOW_BYTES = 64 << 10
# The kernel's buffer for a raw feed between workers, each way: a flush's frames pass in a few
# wake-ups of the relaying worker instead of one per 200 kB (the kernel caps it at its
# net.core.wmem_max and rmem_max).
RAW_FEED_BUFFER_BYTES = 4 << 20


@dataclass
class FeedItem:
    kind: str
    serial: str
    session_id: str
    stream: str | None = None
    batch: pa.RecordBatch | None = None
    data: bytes | None = None  # a calibration's bytes
    _frame: list | None = field(default=None, repr=False)
    _nbytes: int | None = field(default=None, repr=False)
    _rows: int | None = field(default=None, repr=False)  # a relayed item's, from its head

    @property
    def rows(self) -> int:
        if self._rows is not None:
            return self._rows
        return self.batch.num_rows if self.batch is not None else 0

    @property
    def nbytes(self) -> int:
        """What the item holds in memory, as queues count it: the size of the buffers it
        references, whole (a slice counts its whole buffers: cheap to get, and what it keeps
        alive), computed once however many queues it passes through."""
        if self._nbytes is None:
            self._nbytes = (self.batch.get_total_buffer_size() if self.batch is not None else 0) \
                + len(self.data or b"")
        return self._nbytes

    def head(self) -> dict:
        head = {"type": self.kind, "device": self.serial, "session_id": self.session_id}
        if self.kind == ROWS:
            head.update(stream=self.stream, rows=self.rows)
        return head

    def frame(self) -> list:
        """The item as one frame of the feed, in pieces (its prefix and head, then its body) that
        a send joins with others; encoded once, however many readers send it."""
        if self._frame is None:
            if self.batch is not None:
                self._frame = frame_pieces(self.head(), ipc_stream_pieces(self.batch))
            else:
                self._frame = frame_pieces(self.head(), self.data or b"")
        return self._frame

    @classmethod
    def relayed(cls, head: dict, pieces: list) -> FeedItem:
        """A frame from another worker's feed, to be sent on as it came: its rows are counted
        from its head and its size from its bytes, and its batch is never decoded (a GET /feed
        reader gets the frame's bytes, not the batch)."""
        item = cls(head["type"], head["device"], head["session_id"], head.get("stream"))
        item._frame = pieces
        item._nbytes = sum(map(len, pieces))
        item._rows = int(head.get("rows") or 0) if head["type"] == ROWS else 0
        return item

    @classmethod
    def from_frame(cls, head: dict, body) -> FeedItem:
        batch = None
        if head["type"] == ROWS:
            batch = pa.ipc.open_stream(body).read_next_batch()
        return cls(head["type"], head["device"], head["session_id"], head.get("stream"), batch,
                   bytes(body) if head["type"] == CALIBRATION else None)


class _Pieces:
    """A file that keeps what is written to it as it came (pa.PythonFile's sink)."""

    closed = False

    def __init__(self):
        self.pieces: list = []

    def write(self, data) -> int:
        self.pieces.append(data)
        return memoryview(data).nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def ipc_stream_pieces(batch: pa.RecordBatch) -> list:
    """The Arrow IPC stream of one batch, as pa.ipc.new_stream writes it, in pieces. A large
    batch comes in the pieces the writer writes: it hands each of the batch's buffers to the
    file as it is, so a camera frame's bytes are not copied into a serialised batch on their way
    to the sockets. A small one is serialised whole: copying it costs less than the writer's
    Python call per buffer (about 10 against 30 to 80 us a batch)."""
    if batch.get_total_buffer_size() < SERIALISED_BELOW_BYTES:
        return [batch.schema.serialize(), batch.serialize(), IPC_END_OF_STREAM]
    sink = _Pieces()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), batch.schema) as writer:
        writer.write_batch(batch)
    return sink.pieces


def binary_array(values: list[bytes]) -> pa.Array:
    """A binary array of these values (together under 2 GiB, as HELD_BYTES keeps them), copied
    once, into one buffer: pa.array() of a list of bytes appends them one by one to a buffer it
    grows."""
    offsets = np.zeros(len(values) + 1, np.int32)
    np.cumsum(np.fromiter(map(len, values), np.int32, len(values)), out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))])


def decompressed(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A fed batch with its `data_zstd` column (if any) decompressed into `data`, as the
    reading API gives a stream's bytes."""
    index = batch.schema.get_field_index(STORED_COLUMN)
    if index < 0:
        return batch
    decompressor = zstandard.ZstdDecompressor()
    data = [decode_frame(frame, decompressor) for frame in batch.column(index).to_pylist()]
    return batch.remove_column(index).append_column(pa.field(DATA_COLUMN, pa.binary()), pa.array(data, pa.binary()))


def frame_pieces(head: dict, body=b"") -> list:
    """The frame's prefix and head, then its body (bytes, or a list of pieces sent one after
    the other)."""
    encoded = json.dumps(head, separators=(",", ":")).encode()
    views = [memoryview(p) for p in (body if isinstance(body, list) else [body])]
    return [PREFIX.pack(MAGIC, len(encoded), sum(v.nbytes for v in views)) + encoded, *views]


def encode_frame(head: dict, body=b"") -> bytes:
    return b"".join(frame_pieces(head, body))


def read_frame(read_exactly) -> tuple[dict, bytes] | None:
    """The next frame from a reader's `read_exactly(n)` (which returns fewer bytes only at the
    end); None at a clean end between frames."""
    prefix = read_exactly(PREFIX.size)
    if not prefix:
        return None
    if len(prefix) < PREFIX.size:
        raise EOFError("the feed ended inside a frame")
    magic, head_len, body_len = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ValueError(f"not a recorder feed frame (it begins {magic!r})")
    head = read_exactly(head_len)
    body = read_exactly(body_len)
    if len(head) < head_len or len(body) < body_len:
        raise EOFError("the feed ended inside a frame")
    return json.loads(head), body


# -- subscribers ------------------------------------------------------------------------------


@dataclass
class DeviceCounts:
    delivered_batches: int = 0
    delivered_rows: int = 0
    dropped_batches: int = 0
    dropped_rows: int = 0
    errors: int = 0  # a handler's callbacks that raised

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class FeedQueue:
    """One reader's bounded queue. offer() never blocks: a batch that does not fit is dropped
    and counted. get() blocks (for a reader's thread), take() does not (for a trio task woken
    by `wake`, which offer() calls from the writer's thread and which must not block)."""

    def __init__(self, *, max_batches: int = QUEUE_BATCHES, max_bytes: int = QUEUE_BYTES, wake=None):
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self.wake = wake
        self.devices: dict[str, DeviceCounts] = {}
        self._items: deque[FeedItem] = deque()
        self._bytes = 0
        self._closed = False
        self._ready = threading.Condition()
        self._unreported: dict[str, DeviceCounts] = {}  # drops not yet told to the reader

    def counts(self, serial: str) -> DeviceCounts:
        counts = self.devices.get(serial)
        if counts is None:
            counts = self.devices[serial] = DeviceCounts()
        return counts

    def offer(self, item: FeedItem, *, wake: bool = True) -> bool:
        """Queue an item, or drop and count it if it does not fit. wake=False leaves waking the
        reader's task to the caller (wake_reader()), which offers more at once."""
        with self._ready:
            if self._closed:
                return False
            if item.kind == ROWS:
                full = len(self._items) >= self.max_batches or (
                    self._items and self._bytes + item.nbytes > self.max_bytes)
                if full:
                    for counts in (self.counts(item.serial), self._unreported.setdefault(item.serial, DeviceCounts())):
                        counts.dropped_batches += 1
                        counts.dropped_rows += item.rows
                    return False
            self._items.append(item)
            self._bytes += item.nbytes
            self._ready.notify()
        if wake:
            self.wake_reader()
        return True

    def wake_reader(self) -> None:
        if self.wake is not None:
            self.wake()

    def dropped_elsewhere(self, serial: str, batches: int, rows: int) -> None:
        """Drops counted on the way to this queue (by another worker's side of a relayed feed)."""
        with self._ready:
            for counts in (self.counts(serial), self._unreported.setdefault(serial, DeviceCounts())):
                counts.dropped_batches += batches
                counts.dropped_rows += rows

    def close(self) -> None:
        """No more items: the reader takes what is queued, then gets None."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self.wake_reader()

    @property
    def closed(self) -> bool:
        return self._closed

    def take(self) -> FeedItem | None:
        with self._ready:
            return self._pop()

    def get(self, timeout: float | None = None) -> FeedItem | None:
        """The next item, waiting for it; None once closed and empty, or after `timeout`."""
        with self._ready:
            self._ready.wait_for(lambda: self._items or self._closed, timeout)
            return self._pop()

    def _pop(self) -> FeedItem | None:
        if not self._items:
            return None
        item = self._items.popleft()
        self._bytes -= item.nbytes
        return item

    def finished(self) -> bool:
        with self._ready:
            return self._closed and not self._items

    def delivered(self, item: FeedItem, errors: int = 0) -> None:
        with self._ready:
            counts = self.counts(item.serial)
            if item.kind == ROWS:
                counts.delivered_batches += 1
                counts.delivered_rows += item.rows
            counts.errors += errors

    def undeliverable(self, item: FeedItem) -> None:
        """A batch the reader took but had no handler for (its factory failed): an error."""
        with self._ready:
            if item.kind == ROWS:
                self.counts(item.serial).errors += 1

    def unreported_drops(self) -> dict[str, DeviceCounts]:
        with self._ready:
            drops, self._unreported = self._unreported, {}
            return drops

    def queued(self) -> tuple[int, int]:
        with self._ready:
            return len(self._items), self._bytes


class Subscriber:
    """What the hub sees of a reader: which devices it wants, where their items go, and its
    figures for /status. The base sends everything to one queue; a subclass may keep a queue
    per device (recorder.sdk.RecorderServer's handlers do)."""

    _ids = itertools.count(1)

    def __init__(self, kind: str, *, remote: str = "", serials: frozenset[str] | None = None,
                 streams: frozenset[str] | None = None, queue: FeedQueue | None = None):
        self.id = next(self._ids)
        self.kind = kind
        self.remote = remote
        self.serials = serials  # None: every device
        self.streams = streams  # None: every stream
        self.since = time.time()
        self.queue = queue if queue is not None else FeedQueue()

    def wants(self, serial: str, stream: str | None = None) -> bool:
        """Whether it wants a device's items (stream None), or that device's rows of `stream`."""
        return (self.serials is None or serial in self.serials) and (
            stream is None or self.streams is None or stream in self.streams)

    def offer(self, item: FeedItem) -> None:
        self.queue.offer(item)

    def close(self) -> None:
        self.queue.close()

    def queues(self) -> list[FeedQueue]:
        return [self.queue]

    def status(self) -> dict:
        devices: dict[str, DeviceCounts] = {}
        batches = nbytes = 0
        for queue in self.queues():
            queued, held = queue.queued()
            batches, nbytes = batches + queued, nbytes + held
            for serial, counts in list(queue.devices.items()):
                total = devices.setdefault(serial, DeviceCounts())
                for key, value in counts.__dict__.items():
                    setattr(total, key, getattr(total, key) + value)
        return {"id": self.id, "kind": self.kind, "remote": self.remote,
                "serials": sorted(self.serials) if self.serials is not None else None,
                "streams": sorted(self.streams) if self.streams is not None else None, "since": self.since,
                "queued_batches": batches, "queued_bytes": nbytes,
                "devices": {serial: counts.as_dict() for serial, counts in sorted(devices.items())}}


# -- the hub ----------------------------------------------------------------------------------


class FeedHub:
    """The process's feed: sessions publish into it, subscribers take from it. Thread-safe:
    writers publish from worker threads, readers come and go on the trio thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()
        self._sessions: dict[tuple[str, str], SessionFeed] = {}
        self.published: dict[str, DeviceCounts] = {}  # per device: batches and rows published
        self.overflow: dict[str, DeviceCounts] = {}  # dropped before publishing (HELD_BYTES)
        self.closed = False

    def subscribe(self, subscriber: Subscriber) -> Subscriber:
        """Add a reader; it learns of every open session it wants (and its calibration) first."""
        with self._lock:
            if self.closed:
                subscriber.close()
                return subscriber
            self._subscribers = (*self._subscribers, subscriber)
            sessions = list(self._sessions.values())
        for session in sessions:
            if subscriber.wants(session.serial):
                for item in session.introduction():
                    subscriber.offer(item)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)
        subscriber.close()

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        return self._subscribers

    def wants(self, serial: str, stream: str | None = None) -> bool:
        return any(s.wants(serial, stream) for s in self._subscribers)

    def session_feed(self, serial: str, session_id: str) -> SessionFeed:
        """The feed of a session being (or again being) written; its subscribers hear of it now."""
        with self._lock:
            feed = self._sessions.get((serial, session_id))
            if feed is None:
                feed = self._sessions[(serial, session_id)] = SessionFeed(self, serial, session_id)
        self.publish(FeedItem(SESSION, serial, session_id))
        return feed

    def publish(self, item: FeedItem) -> None:
        """Offer an item to every subscriber that wants its device; never blocks."""
        if item.kind == ROWS:
            counts = self.published.setdefault(item.serial, DeviceCounts())
            counts.delivered_batches += 1
            counts.delivered_rows += item.rows
        elif item.kind == ENDED:
            with self._lock:
                self._sessions.pop((item.serial, item.session_id), None)
        for subscriber in self._subscribers:
            if subscriber.wants(item.serial, item.stream):
                subscriber.offer(item)

    def close(self) -> None:
        """The recorder stops: every reader takes what is queued, then ends."""
        with self._lock:
            self.closed = True
            subscribers, self._subscribers = self._subscribers, ()
        for subscriber in subscribers:
            subscriber.close()

    # -- figures --------------------------------------------------------------------------------

    def status(self) -> dict:
        return {
            "published": {serial: {"batches": c.delivered_batches, "rows": c.delivered_rows}
                          for serial, c in sorted(self.published.items())},
            "dropped_before_publishing": {serial: {"batches": c.dropped_batches, "rows": c.dropped_rows}
                                          for serial, c in sorted(self.overflow.items())},
            "subscribers": [s.status() for s in self._subscribers],
        }

    def metric_families(self):
        labels = ["subscriber", "kind", "device"]
        families = {
            "delivered_batches": CounterMetricFamily(
                "recorder_feed_delivered_batches", "Feed batches a subscriber took", labels=labels),
            "dropped_batches": CounterMetricFamily(
                "recorder_feed_dropped_batches", "Feed batches dropped because the subscriber's queue was full",
                labels=labels),
            "dropped_rows": CounterMetricFamily(
                "recorder_feed_dropped_rows", "Rows of those dropped batches", labels=labels),
            "errors": CounterMetricFamily(
                "recorder_feed_handler_errors", "Handler callbacks that raised", labels=labels),
        }
        for subscriber in self._subscribers:
            for serial, counts in subscriber.status()["devices"].items():
                for key, family in families.items():
                    family.add_metric([str(subscriber.id), subscriber.kind, serial], counts[key])
        published = CounterMetricFamily("recorder_feed_published_batches", "Stored batches published to the feed",
                                        labels=["device"])
        for serial, counts in list(self.published.items()):
            published.add_metric([serial], counts.delivered_batches)
        yield from families.values()
        yield published
        yield GaugeMetricFamily("recorder_feed_subscribers", "Readers of the live feed", value=len(self._subscribers))


class SessionFeed:
    """One session's side of the feed, told by its writer (in the writer's thread, one call at
    a time) what it stores, and publishing it once the writer has flushed it."""

    def __init__(self, hub: FeedHub, serial: str, session_id: str):
        self.hub = hub
        self.serial = serial
        self.session_id = session_id
        self.calibration_bytes: bytes | None = None
        self._rows: dict[str, list[pa.RecordBatch]] = {}  # stream -> batches of rows as written
        self._blobs: dict[str, list] = {}  # blob stream -> its stored frames since (None: not held)
        self._held_bytes = 0

    def introduction(self) -> list[FeedItem]:
        """What a subscriber arriving mid-session is told first."""
        items = [FeedItem(SESSION, self.serial, self.session_id)]
        if self.calibration_bytes is not None:
            items.append(FeedItem(CALIBRATION, self.serial, self.session_id, data=self.calibration_bytes))
        return items

    def _room(self, nbytes: int, rows: int) -> bool:
        if self._held_bytes + nbytes > HELD_BYTES:
            counts = self.hub.overflow.setdefault(self.serial, DeviceCounts())
            counts.dropped_batches += 1
            counts.dropped_rows += rows
            return False
        self._held_bytes += nbytes
        return True

    def rows(self, stream: str, batch: pa.RecordBatch) -> None:
        """A batch of a sample stream's rows, as the writer wrote it to the files."""
        if self.hub.wants(self.serial, stream) and self._room(batch.get_total_buffer_size(), batch.num_rows):
            self._rows.setdefault(stream, []).append(batch)

    def blob(self, stream: str, stored: bytes) -> None:
        """One blob's bytes as stored (`stored`: the zstd frame written to the blob file); its
        index row comes with the stream's next written batch (index_rows). The feed carries the
        frame as it is: compressing it cost the recording nothing more, and a reader that
        decompresses it keeps that work off the recorder. (Rows nobody wants are not even held.)"""
        if self.hub.wants(self.serial, stream):
            self._blobs.setdefault(stream, []).append(stored if self._room(len(stored), 1) else None)

    def index_rows(self, stream: str, batch: pa.RecordBatch) -> None:
        """A batch of a blob stream's index rows, as the writer wrote it to the files."""
        if stream in self._blobs:
            self._held_bytes += batch.get_total_buffer_size()
            self._rows.setdefault(stream, []).append(batch)

    def calibration(self, data: bytes) -> None:
        self.calibration_bytes = data
        self.hub.publish(FeedItem(CALIBRATION, self.serial, self.session_id, data=data))

    def flushed(self) -> None:
        """The writer's flush has put everything held in the files: publish it."""
        if not self._rows:
            return
        held, blobs = self._rows, self._blobs
        self._rows, self._blobs, self._held_bytes = {}, {}, 0
        for stream, batches in held.items():
            batch = pa.concat_batches(batches) if len(batches) > 1 else batches[0]
            frames = blobs.get(stream)
            if frames is not None:
                batch = with_stored_frames(batch, frames)
            if batch.num_rows:
                self.hub.publish(FeedItem(ROWS, self.serial, self.session_id, stream, batch))

    def dropped(self) -> None:
        """What is held was not stored after all (a storage error stopped the writer): none of
        it is published."""
        self._rows, self._blobs, self._held_bytes = {}, {}, 0

    def closed(self) -> None:
        """The session is finalised (a later reconnect opens it again, with a new SessionFeed
        call from the server)."""
        self._rows, self._blobs, self._held_bytes = {}, {}, 0
        self.hub.publish(FeedItem(ENDED, self.serial, self.session_id))


def with_stored_frames(index: pa.RecordBatch, frames: list) -> pa.RecordBatch:
    """A blob stream's written index rows with their stored frames beside them (STORED_COLUMN),
    `frames` being those told since the feed was last published, in order, None for one not held.
    They are the last rows written: rows stored before anybody wanted the stream come first."""
    paired = min(len(frames), index.num_rows)  # every frame's row is written before a publish
    index, frames = index.slice(index.num_rows - paired), frames[len(frames) - paired:]
    if None in frames:
        index = index.filter(pa.array([frame is not None for frame in frames]))
        frames = [frame for frame in frames if frame is not None]
    return index.append_column(pa.field(STORED_COLUMN, pa.binary()), binary_array(frames))


# -- GET /feed --------------------------------------------------------------------------------


def take_burst(queue: FeedQueue) -> list[FeedItem]:
    """The items queued now, up to BURST_BYTES of them (at least one): a writer's flush
    publishes a batch per stream at once, and one send of them all costs one pass through h11
    and TLS instead of one per batch."""
    items, size = [], 0
    while size < BURST_BYTES and (item := queue.take()) is not None:
        items.append(item)
        size += item.nbytes
    return items


class Wakeup:
    """A reader's task waits on it; a queue's offer() sets it, from whatever thread. One event
    is set once: a flush publishes a batch per stream, and the offers after the first find the
    wake-up already asked for and skip the call into trio (a write to its wake-up socket each)."""

    def __init__(self):
        self._token = trio.lowlevel.current_trio_token()
        self._trio_thread = threading.get_ident()
        self._event = trio.Event()
        self._asked: trio.Event | None = None  # the event a wake-up was last asked for

    def renew(self) -> None:
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()

    def from_any_thread(self) -> None:  # must not block: it runs in a writer's thread
        event = self._event
        if self._asked is event:
            # Already asked for: it will be set. (An item offered after the reader renewed
            # its event reads the new one here, so no item waits for a wake-up skipped.)
            return
        self._asked = event
        if threading.get_ident() == self._trio_thread:  # relayed items: set it here, no round trip
            event.set()
            return
        try:
            self._token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            pass


class FeedEndpoint:
    """GET /feed (every device) or /feed?serial=A&serial=B (or serial=A,B), and of those only
    some streams with stream=imu-right,vio: a chunked response that never ends while the
    recorder runs, a frame per item (see encode_frame)."""

    def __init__(self, hub: FeedHub, *, heartbeat_s: float = HEARTBEAT_S, drain_s: float = DRAIN_S):
        self.hub = hub
        self.heartbeat_s = heartbeat_s
        self.drain_s = drain_s
        self.readers = 0
        self.no_readers = trio.Event()
        self.no_readers.set()

    async def serve(self, conn, request: h11.Request, *, relay=None, kind: str = "http") -> None:
        """`relay` (a feedrelay.FeedRelay), if given, makes the reader's subscriber and runs
        beside it for as long as it reads: the other workers' feeds into its queue."""
        query_string = request.target.decode("latin-1").partition("?")[2]
        query = parse_qs(query_string)
        serials = {s for value in query.get("serial", []) for s in value.split(",") if s}
        streams = {s for value in query.get("stream", []) for s in value.split(",") if s}
        # Only another worker, on its own socket, may have the frames raw.
        body = UpgradedBody(conn) if kind == "worker" and upgrade_asked(request) else ChunkedBody(conn)
        wakeup = Wakeup()
        subscriber = (relay.subscriber if relay is not None else Subscriber)(kind, remote=conn.remote, serials=frozenset(serials) or None,
                                streams=frozenset(streams) or None, queue=FeedQueue(wake=wakeup.from_any_thread))
        if self.readers == 0:
            self.no_readers = trio.Event()
        self.readers += 1
        self.hub.subscribe(subscriber)
        try:
            failed = None
            async with trio.open_nursery() as relays:
                if relay is not None:
                    relays.start_soon(relay.run, subscriber, query_string)
                try:
                    await self._send_items(body, subscriber, serials, streams, wakeup)
                except BaseException as exc:  # raised on as it is: a nursery would wrap it in a group
                    failed = exc
                relays.cancel_scope.cancel()
            if failed is not None:
                raise failed
        finally:
            self.hub.unsubscribe(subscriber)
            self.readers -= 1
            if self.readers == 0:
                self.no_readers.set()

    async def _send_items(self, body, subscriber: Subscriber, serials, streams, wakeup: Wakeup) -> None:
        await body.begin()
        await body.send(frame_pieces({"type": HELLO, "version": 1, "serials": sorted(serials) or None,
                                      "streams": sorted(streams) or None}))
        queue = subscriber.queue
        while True:
            for serial, drops in queue.unreported_drops().items():
                await body.send(frame_pieces({"type": DROPPED, "device": serial, "batches": drops.dropped_batches,
                                              "rows": drops.dropped_rows}))
            wakeup.renew()
            items = take_burst(queue)
            if not items:
                if queue.finished():  # closed, and nothing came in before it was
                    break
                with trio.move_on_after(self.heartbeat_s) as idle:
                    await wakeup.wait()
                if idle.cancelled_caught:
                    await body.send(frame_pieces({"type": HEARTBEAT, "time": time.time()}))
                continue
            await body.send([piece for item in items for piece in item.frame()])
            for item in items:
                queue.delivered(item)
        await body.send(frame_pieces({"type": END}))
        await body.end()

    async def close(self, drain_s: float | None = None) -> None:
        """End every reader's response once it has taken what is queued (waiting up to drain_s:
        a reader that does not read is then cut off with the connections)."""
        self.hub.close()
        with trio.move_on_after(self.drain_s if drain_s is None else drain_s):
            await self.no_readers.wait()


def upgrade_asked(request: h11.Request) -> bool:
    """Whether the request asks for the frames raw (another worker relaying this one's feed)."""
    return any(name == b"upgrade" and value.strip().lower() == FEED_UPGRADE for name, value in request.headers)


class ChunkedBody:
    """The frames as a chunked response, the body a GET /feed reader gets."""

    def __init__(self, conn):
        self.conn = conn

    async def begin(self) -> None:
        await self.conn.send(h11.Response(status_code=200, headers=[
            ("content-type", CONTENT_TYPE), ("cache-control", "no-store"), ("connection", "close")]))

    async def send(self, pieces: list) -> None:
        await self.conn.send_data(pieces)

    async def end(self) -> None:
        await self.conn.send(h11.EndOfMessage())


class UpgradedBody:
    """The frames raw on the connection's socket once it switched protocols (101): what another
    worker reads to relay this one's feed. Frames delimit themselves, so chunking them would only
    make the relaying worker parse every chunk and copy the data out of its HTTP parser; raw,
    a frame's body is received straight into the buffer it is sent on from."""

    def __init__(self, conn):
        self.conn = conn

    async def begin(self) -> None:
        await self.conn.send(h11.InformationalResponse(status_code=101, headers=[
            ("upgrade", FEED_UPGRADE), ("connection", "upgrade")]))
        self.conn.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RAW_FEED_BUFFER_BYTES)

    async def send(self, pieces: list) -> None:
        await send_pieces(self.conn.stream.socket, pieces)

    async def end(self) -> None:
        pass  # the connection closes: the end frame was the last


async def send_pieces(sock, pieces: list) -> None:
    """All the pieces, in order, gathered by the kernel (sendmsg) rather than joined first."""
    views = [v for v in (memoryview(p).cast("B") for p in pieces) if v.nbytes]
    first = 0
    while first < len(views):
        sent = await sock.sendmsg(views[first:first + MAX_GATHERED])
        while sent:
            size = views[first].nbytes
            if sent < size:
                views[first] = views[first][sent:]
                break
            sent -= size
            first += 1
