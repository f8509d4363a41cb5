"""Publishes an RTMP recording to an RTMP server again, as its publisher did: connect,
createStream, publish, then the FLV's tags (onMetaData, video, audio) as RTMP messages with
their timestamps, paced by those timestamps at `speed` (0: as fast as the link goes).

The RTMP messages come from the sans-IO ClientConnection; this module only reads the FLV and
owns the socket. The server's messages are read all along (acknowledgements, pings), as a
publisher must, or the server would let it go as one that never reads.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import trio

from ..rtmp import amf0
from ..rtmp import flv as F
from ..rtmp import messages as M
from ..rtmp.client import DATA_CHUNK_STREAM, ClientConnection
from ..rtmp.recording_layout import FLV, is_recording

CHUNK_SIZE = 4096  # what ffmpeg uses; fewer chunk headers than RTMP's default 128
READ_SIZE = 65536


class RtmpPublishError(Exception):
    """The server refused the publish or broke off; the message says why."""


@dataclass(frozen=True)
class RtmpTarget:
    host: str
    port: int
    tls: bool
    app: str
    key: str  # the stream key ("" when the URL names none)
    query: str = ""  # ?secret=... as given

    @property
    def tc_url(self) -> str:
        return f"{'rtmps' if self.tls else 'rtmp'}://{self.host}:{self.port}/{self.app}"

    @classmethod
    def parse(cls, url: str) -> RtmpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("rtmp", "rtmps"):
            raise ValueError(f"RTMP URL must start with rtmp:// or rtmps://, not {url!r}")
        segments = [s for s in parts.path.split("/") if s]
        if not segments:
            raise ValueError(f"RTMP URL must name an app: rtmp://host/<app>/[<key>], not {url!r}")
        tls = parts.scheme == "rtmps"
        return cls(parts.hostname or "localhost", parts.port or (443 if tls else 1935), tls, segments[0],
                   "/".join(segments[1:]), parts.query)

    @property
    def publish_name(self) -> str:
        return self.key + (f"?{self.query}" if self.query else "")

    def with_key(self, key: str) -> RtmpTarget:
        """The same server and app, another stream key (each recording's own)."""
        return RtmpTarget(self.host, self.port, self.tls, self.app, key, self.query)


@dataclass
class RtmpReport:
    """What was published of one recording."""

    path: str
    tags: int = 0
    bytes: int = 0
    total_tags: int = 0
    total_bytes: int = 0
    seconds: float = 0.0
    answers: list[str] = field(default_factory=list)  # the server's status codes
    error: str | None = None
    done: bool = False


def _deadline(timeout_s: float | None):
    return trio.fail_after(timeout_s) if timeout_s else nullcontext()


def recording_tags(folder: Path) -> tuple[F.FlvScan, Iterator[tuple[int, int, bytes]]]:
    """The recording's tags in FLV order, (type, timestamp ms, data), read one at a time."""
    if not is_recording(folder):
        raise FileNotFoundError(f"{folder} is not an RTMP recording: no {FLV} in it")
    scan = F.scan_flv(folder / FLV)
    if not scan.header_ok:
        raise ValueError(f"{folder / FLV} is not a readable FLV: {scan.problem}")

    def tags():
        with open(folder / FLV, "rb") as f:
            for tag in scan.tags:
                f.seek(tag.data_offset)
                yield tag.type, tag.timestamp, f.read(tag.size)

    return scan, tags()


class _Publisher:
    """A ClientConnection on a socket: sends what it queues, reads what the server says."""

    def __init__(self, stream: trio.abc.Stream, timeout_s: float | None):
        self.stream = stream
        self.client = ClientConnection(chunk_size=CHUNK_SIZE)
        self.timeout_s = timeout_s
        self._sending = trio.Lock()
        self.statuses: list[dict] = []
        self._changed = trio.Event()
        self.closed = False

    async def flush(self) -> None:
        async with self._sending:
            data = self.client.data_to_send()
            if data:
                with _deadline(self.timeout_s):
                    await self.stream.send_all(data)

    async def read_forever(self) -> None:
        """Take in the server's messages (the handshake's C2 goes out from here too)."""
        while True:
            data = await self.stream.receive_some(READ_SIZE)
            if not data:
                self.closed = True
                self._changed.set()
                return
            for message in self.client.receive_data(data):
                if message.name in ("_result", "_error", "onStatus") and message.info is not None:
                    self.statuses.append({"command": message.name, **message.info})
                elif message.name in ("_result", "_error"):
                    self.statuses.append({"command": message.name, "values": message.values})
            await self.flush()
            self._changed.set()
            self._changed = trio.Event()

    async def until(self, what: str, wanted: Callable[[dict], bool], *, after: int = 0) -> dict:
        """The first status from index `after` on that `wanted` accepts; an error status, a
        closed connection or no answer for timeout_s raise RtmpPublishError."""
        seen = after
        with trio.move_on_after(self.timeout_s or float("inf")) as waited:
            while True:
                for status in self.statuses[seen:]:
                    if wanted(status):
                        return status
                    if status.get("command") == "_error" or str(status.get("level")) == "error":
                        raise RtmpPublishError(f"{what}: {status.get('code')}: {status.get('description')}")
                seen = len(self.statuses)
                if self.closed:
                    raise RtmpPublishError(f"{what}: the server closed the connection")
                await self._changed.wait()
        if waited.cancelled_caught:
            raise RtmpPublishError(f"{what}: no answer in {self.timeout_s:g} s")
        raise AssertionError("unreachable")


async def republish(folder: str | Path, url: str | RtmpTarget, ssl_context: ssl.SSLContext | None = None, *,
                    speed: float = 1.0, timeout_s: float | None = 30.0,
                    on_progress: Callable[[RtmpReport, int, int], None] | None = None,
                    report: RtmpReport | None = None) -> RtmpReport:
    """Publish one RTMP recording to `url` (rtmp://host[:port]/<app>/<key>[?secret=...]; with
    no key, the recording's own); raises RtmpPublishError if the server refuses it or gives no
    answer for timeout_s."""
    folder = Path(folder)
    target = url if isinstance(url, RtmpTarget) else RtmpTarget.parse(url)
    if not target.key:
        target = target.with_key(folder.parent.name)  # <data>/rtmp/<app>/<key>/<session>
    scan, tags = recording_tags(folder)
    report = report or RtmpReport(str(folder))
    report.total_tags = len(scan.tags)
    report.total_bytes = sum(t.size for t in scan.tags)
    started = time.monotonic()
    with _deadline(timeout_s):
        stream: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port)
        if target.tls:
            stream = trio.SSLStream(stream, ssl_context or ssl.create_default_context(),
                                    server_hostname=target.host)
            await stream.do_handshake()
    publisher = _Publisher(stream, timeout_s)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher.read_forever)
            client = publisher.client
            client.connect(target.app, target.tc_url)
            await publisher.flush()
            await publisher.until("connect", lambda s: s.get("command") == "_result")
            seen = len(publisher.statuses)
            client.create_stream()
            await publisher.flush()
            created = await publisher.until("createStream", lambda s: s.get("command") == "_result", after=seen)
            stream_id = int(next((v for v in reversed(created.get("values") or []) if isinstance(v, float)), 1))
            client.publish(stream_id, target.publish_name)
            await publisher.flush()
            began = await publisher.until("publish", lambda s: s.get("code") == "NetStream.Publish.Start")
            report.answers.append(began["code"])
            await _send_tags(publisher, stream_id, tags, speed, report, on_progress)
            client.command("deleteStream", None, float(stream_id))
            await publisher.flush()
            nursery.cancel_scope.cancel()
    finally:
        with trio.move_on_after(1):
            await stream.aclose()
        await trio.aclose_forcefully(stream)
    report.seconds = time.monotonic() - started
    return report


async def _send_tags(publisher: _Publisher, stream_id: int, tags, speed: float, report: RtmpReport,
                     on_progress) -> None:
    client = publisher.client
    begun = trio.current_time()
    first: int | None = None
    for tag_type, timestamp, data in tags:
        if publisher.closed:
            raise RtmpPublishError("the server closed the connection while the recording was published")
        if tag_type != F.SCRIPT:
            first = timestamp if first is None else first
            if speed:
                await trio.sleep_until(begun + (timestamp - first) / 1000 / speed)
        if tag_type == F.VIDEO:
            client.send_video(stream_id, timestamp, data)
        elif tag_type == F.AUDIO:
            client.send_audio(stream_id, timestamp, data)
        else:  # onMetaData, as publishers send it: through @setDataFrame
            client.send_message(DATA_CHUNK_STREAM, M.DATA_AMF0, stream_id, timestamp,
                                amf0.encode("@setDataFrame") + data, fmt=0)
        await publisher.flush()
        report.tags += 1
        report.bytes += len(data)
        if on_progress:
            on_progress(report, 1, len(data))
