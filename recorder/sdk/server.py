"""RecorderServer: `recorder serve` inside a script, calling a handler factory for each device
session, like the vendor's AriaGen2HttpServer(config, factory).

    from recorder.sdk import StreamDataInterface
    from recorder.sdk.server import RecorderServer

    def factory():
        stream_data = StreamDataInterface(enable_image_decoding=True)
        stream_data.register_rgb_callback(lambda image, record, device_id: print(device_id, record.frame_number))
        return stream_data

    with RecorderServer(factory, port=6768, data_dir="data") as server:
        server.wait()                      # until Ctrl+C

It records exactly as `recorder serve` does (the same session folders, /status, /metrics and
GET /feed), running the server in a background thread. Handlers see what was stored, once it is
stored: the factory is called once per device session (when the device first connects), and its
StreamDataInterface gets that session's data across reconnects; callbacks run in a thread per
device session, never in the recording's. A handler slower than its data has batches dropped
from its own bounded queue, counted in `devices` and in /status (feed, subscriber kind
"handler"): the recording loses nothing.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import trio

from .. import certs
from ..process import serve
from ..rtmp.config import RtmpConfig
from ..server.config import ServerConfig
from ..server.feed import QUEUE_BATCHES, QUEUE_BYTES, FeedHub, FeedItem, FeedQueue, Subscriber
from ..storage import Store
from .delivery import ErrorHandler
from .live import Factory, Handlers

STARTUP_TIMEOUT_S = 60.0  # recovering a data folder a crash left unfinished can take a while


class HandlerSubscriber(Subscriber):
    """The feed's view of a factory's handlers: a bounded queue per device session."""

    def __init__(self, handlers: Handlers):
        super().__init__("handler", queue=FeedQueue())
        self.handlers = handlers

    def offer(self, item: FeedItem) -> None:
        self.handlers.offer(item)

    def close(self) -> None:
        self.handlers.close()

    def queues(self) -> list[FeedQueue]:
        return self.handlers.queues()


class RecorderServer:
    """Settings as `recorder serve`'s options: host, port (0: any free port; `port` then says
    which), data_dir, certs_dir (default ~/.aria/streaming-certs/persistent), plain_http,
    verify_clients, rtmp_port (default 0: off; `serve` runs RTMP on 1935), blob_level, raw_images; any other
    ServerConfig field as a keyword (session_grace_s=..., idle_timeout_s=...). queue_batches /
    queue_bytes bound each device session's queue of undelivered batches; on_error(device_id,
    stream, timestamp_ns, exception) hears of callbacks that raise (default: a line on stderr)."""

    def __init__(self, factory: Factory, *, host: str = "0.0.0.0", port: int = 6768, data_dir="data",
                 certs_dir=None, plain_http: bool = False, verify_clients: bool = False, rtmp_port: int = 0,
                 blob_level: int | None = None, raw_images: str = "auto", on_error: ErrorHandler | None = None,
                 queue_batches: int = QUEUE_BATCHES, queue_bytes: int = QUEUE_BYTES, **settings):
        if plain_http and verify_clients:
            raise ValueError("verify_clients needs TLS; drop plain_http")
        self.config = ServerConfig(host=host, port=port, data_dir=Path(data_dir),
                                   certs_dir=Path(certs_dir) if certs_dir else certs.DEFAULT_FOLDER,
                                   tls=not plain_http, verify_clients=verify_clients, **settings)
        self.rtmp = RtmpConfig(port=rtmp_port, host=host) if rtmp_port else None
        self.blob_level = blob_level
        self.raw_images = raw_images
        self.handlers = Handlers(factory, on_error=on_error, max_batches=queue_batches, max_bytes=queue_bytes)
        self.hub = FeedHub()
        self.hub.subscribe(HandlerSubscriber(self.handlers))
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "::", "") else self.config.host
        return f"{'https' if self.config.tls else 'http'}://{host}:{self.port}"

    def start(self) -> RecorderServer:
        """Check the data folder, recover what a crash left, listen; returns once devices can
        connect (raises what stopped it from starting)."""
        if self._thread is not None:
            raise RuntimeError("this RecorderServer has already started")
        self._thread = threading.Thread(target=self._run, name="recorder server", daemon=True)
        self._thread.start()
        if not self._started.wait(STARTUP_TIMEOUT_S):
            raise TimeoutError(f"the recorder did not start within {STARTUP_TIMEOUT_S:g} s")
        if self._error is not None:
            self._thread.join()
            error, self._error = self._error, None
            raise error
        return self

    def _run(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # told to start() or to stop()
            while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]  # the nursery's wrapping says nothing to the user
            self._error = exc
        finally:
            self._started.set()
            self._stopped.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        store = Store(self.config.data_dir, blob_level=self.blob_level, raw_images=self.raw_images)
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            self.port = await nursery.start(functools.partial(
                serve, self.config, store, rtmp=self.rtmp, feed=self.hub, handle_signals=False))
            self._started.set()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop taking data, write and finalise every session (as Ctrl+C does to `serve`), then let
        the handlers take what was queued for them, up to `timeout` s; True if they all did."""
        if self._thread is None:
            return True
        token, scope = self._token, self._scope
        if token is not None and scope is not None:
            try:
                token.run_sync_soon(scope.cancel)
            except trio.RunFinishedError:
                pass
        self._thread.join()
        done = self.handlers.join(timeout)
        if self._error is not None:  # the server failed while it ran
            error, self._error = self._error, None
            raise error
        return done

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (a KeyboardInterrupt here leaves it to stop())."""
        return self._stopped.wait(timeout)

    @property
    def devices(self) -> dict[str, dict]:
        """Per device serial: batches and rows delivered to its handlers and dropped, callback errors."""
        return self.handlers.devices()

    def __enter__(self) -> RecorderServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
