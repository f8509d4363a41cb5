"""Live data to a handler factory, as the vendor's AriaGen2HttpServer gives it: from a recorder
in this process (recorder.sdk.server.RecorderServer) or from a running recorder's feed
(LiveSource, here).

    def factory():
        stream_data = StreamDataInterface(enable_image_decoding=False)
        stream_data.register_imu_callback(lambda sample, label, device_id: ...)
        return stream_data

    source = LiveSource("https://recorder:6768", factory, ca_file="root_ca.pem")
    source.start()
    ...
    source.stop()

The factory is called once per device session (a device serial and session id), when the
session is first seen; that StreamDataInterface gets the session's data across the device's
reconnects (and if a finalised session is resumed). A new session of the same device gets a
new one. Its callbacks run in a thread of the session's own, never in the thread that reads
the feed or records: each session has a bounded queue, and a handler too slow for its data has
batches dropped from its queue, counted (`devices`), while the recording goes on whole.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import sys
import threading
import traceback
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from ..server.feed import (
    CALIBRATION,
    DROPPED,
    END,
    ENDED,
    FEED_PATH,
    QUEUE_BATCHES,
    QUEUE_BYTES,
    ROWS,
    DeviceCounts,
    FeedItem,
    FeedQueue,
    decompressed,
    read_frame,
)
from .delivery import Delivery, ErrorHandler
from .interface import StreamDataInterface

Factory = Callable[[], StreamDataInterface]
# A session's thread waits this long for more data after its session ended before it exits
# (a resumed session starts another).
IDLE_AFTER_END_S = 1.0
# No frame (the recorder sends a heartbeat every few seconds) for this long: the connection is dead.
READ_TIMEOUT_S = 30.0


class SessionHandler:
    """One device session's StreamDataInterface, fed from its bounded queue by its own thread."""

    def __init__(self, factory: Factory, serial: str, session_id: str, *, on_error: ErrorHandler | None,
                 max_batches: int, max_bytes: int):
        self.factory = factory
        self.serial = serial
        self.session_id = session_id
        self.on_error = on_error
        self.queue = FeedQueue(max_batches=max_batches, max_bytes=max_bytes)
        self.delivery: Delivery | None = None
        self.failed: str | None = None  # why the factory gave no handler
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def offer(self, item: FeedItem) -> None:
        """From the feed's side: never blocks (a full queue drops the batch, counted)."""
        if not self.queue.offer(item):
            return
        with self._lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name=f"handler {self.serial}", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        ended = False
        while True:
            item = self.queue.get(timeout=IDLE_AFTER_END_S if ended else None)
            if item is None:
                with self._lock:
                    if self.queue.finished() or (ended and not self.queue.queued()[0]):
                        self.thread = None
                        break
                continue
            ended = item.kind == ENDED
            self._deliver(item)
        self._finish()

    def _deliver(self, item: FeedItem) -> None:
        delivery = self._delivery()
        if delivery is None:
            self.queue.undeliverable(item)
            return
        errors = delivery.errors
        if item.kind == ROWS:
            delivery.rows(item.stream, decompressed(item.batch))
        elif item.kind == CALIBRATION:
            delivery.calibration(item.data)
        elif item.kind == ENDED:
            delivery.finish()
        self.queue.delivered(item, errors=delivery.errors - errors)

    def _delivery(self) -> Delivery | None:
        if self.delivery is None and self.failed is None:
            try:
                self.delivery = Delivery(self.factory(), self.serial, on_error=self.on_error)
            except Exception as exc:  # user code: this session's data goes undelivered, counted as errors
                self.failed = f"{type(exc).__name__}: {exc}"
                print(f"the handler factory failed for device {self.serial}, session {self.session_id}, so its "
                      f"data is not delivered:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        return self.delivery

    def _finish(self) -> None:
        if self.delivery is not None and self.queue.closed:
            before = self.delivery.errors
            self.delivery.finish()
            self.queue.counts(self.serial).errors += self.delivery.errors - before

    def close(self) -> None:
        self.queue.close()

    def join(self, timeout: float | None) -> bool:
        thread = self.thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True


class Handlers:
    """A factory's handlers, one SessionHandler per device session, created as sessions appear."""

    def __init__(self, factory: Factory, *, on_error: ErrorHandler | None = None,
                 max_batches: int = QUEUE_BATCHES, max_bytes: int = QUEUE_BYTES):
        if not callable(factory):
            raise TypeError(f"the handler factory must be callable (returning a StreamDataInterface), "
                            f"not {type(factory).__name__}")
        self.factory = factory
        self.on_error = on_error
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self.sessions: dict[tuple[str, str], SessionHandler] = {}
        self._lock = threading.Lock()
        self._closed = False

    def offer(self, item: FeedItem) -> None:
        key = (item.serial, item.session_id)
        handler = self.sessions.get(key)
        if handler is None:
            with self._lock:
                handler = self.sessions.get(key)
                if handler is None:
                    handler = self.sessions[key] = SessionHandler(
                        self.factory, *key, on_error=self.on_error, max_batches=self.max_batches,
                        max_bytes=self.max_bytes)
                    if self._closed:
                        handler.close()
        handler.offer(item)

    def close(self) -> None:
        """No more data: every handler takes what is queued, then its thread ends."""
        with self._lock:
            self._closed = True
            handlers = list(self.sessions.values())
        for handler in handlers:
            handler.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every handler to take what was queued; False if one is still at it after timeout."""
        done = True
        for handler in list(self.sessions.values()):
            done = handler.join(timeout) and done
        return done

    def queues(self) -> list[FeedQueue]:
        return [handler.queue for handler in list(self.sessions.values())]

    def devices(self) -> dict[str, dict]:
        """Per device serial, summed over its sessions: batches and rows delivered and dropped;
        errors: callbacks that raised, and batches lost to a factory that failed."""
        totals: dict[str, DeviceCounts] = {}
        for handler in list(self.sessions.values()):
            for serial, counts in list(handler.queue.devices.items()):
                total = totals.setdefault(serial, DeviceCounts())
                for key, value in counts.__dict__.items():
                    setattr(total, key, getattr(total, key) + value)
        return {serial: counts.as_dict() for serial, counts in sorted(totals.items())}


class LiveSource:
    """The live feed of a running recorder (`GET /feed`) delivered to a handler factory.

    url: the recorder's address (https://host:6768; /feed is added), or a /feed URL.
    serials: only these devices (default every device); streams: only these streams (default
    every stream: a handler that only registers imu callbacks can ask for imu-left and imu-right,
    and the recorder then holds and sends no frames for it). ca_file / verify: how the recorder's
    certificate is checked; cert_file / key_file: this reader's certificate, for a recorder that
    runs with --verify-clients; token: a read token (`recorder tokens add --read`), sent as
    `Authorization: Bearer`, for a recorder that runs with --tokens. The recorder drops batches when this reader cannot keep up (its
    /status counts them, and `dropped_by_recorder` here); a slow handler has its own batches
    dropped here (`devices`)."""

    def __init__(self, url: str, factory: Factory, *, serials: list[str] | None = None,
                 streams: list[str] | None = None, ca_file: str | None = None,
                 verify: bool = True, cert_file: str | None = None, key_file: str | None = None,
                 token: str | None = None, on_error: ErrorHandler | None = None, queue_batches: int = QUEUE_BATCHES,
                 queue_bytes: int = QUEUE_BYTES, timeout_s: float = READ_TIMEOUT_S):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// address of a recorder")
        self.url = url
        self._parts = parts
        query = [("serial", s) for s in serials or []] + [("stream", s) for s in streams or []]
        self._path = (parts.path if parts.path.rstrip("/") else FEED_PATH) + ("?" + urlencode(query) if query else "")
        self._context = None
        self._presents_certificate = bool(cert_file)
        if parts.scheme == "https":
            self._context = ssl.create_default_context(cafile=ca_file)
            if not verify:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
            if cert_file:
                self._context.load_cert_chain(cert_file, key_file)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s
        self.handlers = Handlers(factory, on_error=on_error, max_batches=queue_batches, max_bytes=queue_bytes)
        self.dropped_by_recorder: dict[str, dict] = {}  # per device: batches and rows the recorder dropped for us
        self.error: str | None = None  # why the feed ended, if not because the recorder stopped
        self.connected = threading.Event()
        self._connection: http.client.HTTPConnection | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> LiveSource:
        if self._thread is not None:
            raise RuntimeError("this LiveSource has already started")
        self._thread = threading.Thread(target=self._read, name="recorder feed", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float | None = None) -> bool:
        """True once the recorder has answered (and this reader is subscribed)."""
        self.connected.wait(timeout)
        return self.connected.is_set()

    def _open(self) -> http.client.HTTPConnection:
        host, port = self._parts.hostname, self._parts.port
        if self._context is not None:
            return http.client.HTTPSConnection(host, port or 443, timeout=self.timeout_s, context=self._context)
        return http.client.HTTPConnection(host, port or 80, timeout=self.timeout_s)

    def _read(self) -> None:
        try:
            connection = self._connection = self._open()
            if self._stopping:
                return
            connection.request("GET", self._path, headers=self._headers)
            response = connection.getresponse()
            if response.status != 200:
                raise ConnectionError(f"the recorder answered {response.status} {response.reason}: "
                                      f"{response.read(2000).decode(errors='replace')}")
            self.connected.set()

            def read_exactly(n: int) -> bytes:
                pieces, left = [], n
                while left:
                    piece = response.read(left)
                    if not piece:
                        break
                    pieces.append(piece)
                    left -= len(piece)
                return b"".join(pieces)

            while (frame := read_frame(read_exactly)) is not None:
                head, body = frame
                kind = head["type"]
                if kind == END:
                    return
                if kind == DROPPED:
                    counts = self.dropped_by_recorder.setdefault(head["device"], {"batches": 0, "rows": 0})
                    counts["batches"] += head["batches"]
                    counts["rows"] += head["rows"]
                elif "device" in head and "session_id" in head:
                    self.handlers.offer(FeedItem.from_frame(head, body))
            if not self._stopping:
                self.error = "the recorder closed the feed without its end frame"
        except (OSError, http.client.HTTPException, ValueError, EOFError) as exc:
            if not self._stopping:
                self.error = f"{type(exc).__name__}: {exc}"
                refused = isinstance(exc, (http.client.RemoteDisconnected, ssl.SSLError, ConnectionResetError))
                if refused and self._context is not None and not self._presents_certificate \
                        and not self.connected.is_set():
                    # TLS 1.3 tells a client without the certificate a server requires only by
                    # closing the connection once the request is sent.
                    self.error += " (a recorder that verifies clients needs cert_file and key_file)"
        finally:
            self.connected.set()
            self.handlers.close()
            if self._connection is not None:
                self._connection.close()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Leave the feed; handlers finish what is queued (up to `timeout` s). True if they did."""
        self._stopping = True
        connection = self._connection
        if connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        return self.handlers.join(timeout)

    def is_finished(self) -> bool:
        """The feed has ended (the recorder stopped, the connection failed, or stop()) and every
        handler has taken what was queued for it."""
        return (self._thread is not None and not self._thread.is_alive()
                and all(h.thread is None or not h.thread.is_alive() for h in list(self.handlers.sessions.values())))

    def join(self, timeout: float | None = None) -> bool:
        """Wait until is_finished() (the recorder stopping ends the feed); False after timeout."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.handlers.join(timeout) and self.is_finished()

    @property
    def devices(self) -> dict[str, dict]:
        return self.handlers.devices()

    def __enter__(self) -> LiveSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
