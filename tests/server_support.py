"""Shared by the tests/test_server_*.py files: a small real HTTP/1.1 client (h11 over trio, TLS
optional), `recorder serve` as a subprocess, and comparisons of stored sessions with a fresh
decode of the bytes that were sent."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import h11
import numpy as np
import pyarrow.dataset as ds
import trio
from storage_support import Expected, assert_session_matches, restrict

from recorder import open_session
from recorder.sim import sender
from recorder.storage import layout
from recorder.wire import Decoder

RECORDER = str(Path(sys.executable).with_name("recorder"))
PERIOD = 0.2  # the simulator's batch period: one window (one chunk) per 200 ms


# -- a real client ----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    send_error: str | None = None  # the request could not be sent whole (the server answered early)

    @property
    def json(self) -> dict:
        return json.loads(self.body)


async def open_stream(url: str, ssl_context=None) -> trio.abc.Stream:
    target = sender.Target.parse(url)
    if target.tls:
        stream = await trio.open_ssl_over_tcp_stream(target.host, target.port, ssl_context=ssl_context)
        await stream.do_handshake()
        return stream
    return await trio.open_tcp_stream(target.host, target.port)


async def read_response(stream: trio.abc.Stream, conn: h11.Connection) -> Reply:
    status, headers, body = None, {}, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            if not data and status is None:
                raise ConnectionError("the server closed the connection without a response")
        elif isinstance(event, h11.InformationalResponse):
            continue
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return Reply(status, headers, bytes(body))
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("the server closed the connection mid-response")


async def request(url: str, method: str = "POST", path: str = "/", *, headers: dict | None = None,
                  body: bytes = b"", ssl_context=None, chunked: bool = False) -> Reply:
    """One request on a new connection. The request is sent while the response is read, so an
    answer the server gives before reading everything (431, 507 ...) is still seen."""
    stream = await open_stream(url, ssl_context)
    conn = h11.Connection(h11.CLIENT)
    fields = [("host", "127.0.0.1")]
    if method in ("POST", "PUT"):
        fields.append(("transfer-encoding", "chunked") if chunked else ("content-length", str(len(body))))
    fields += list((headers or {}).items())
    data = conn.send(h11.Request(method=method, target=path, headers=fields))
    if body:
        data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    return await exchange(stream, conn, lambda: stream.send_all(data))


async def exchange(stream, conn: h11.Connection, send) -> Reply:
    """Run `send()` while reading the response (the server may answer before the request has
    ended), then close. The reply's send_error says how sending ended early, if it did."""
    send_error = None

    async def sending():
        nonlocal send_error
        try:
            await send()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, h11.LocalProtocolError) as exc:
            send_error = f"{type(exc).__name__}: {exc}"

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sending)
            reply = await read_response(stream, conn)
            nursery.cancel_scope.cancel()
    finally:
        with trio.move_on_after(1):
            await trio.aclose_forcefully(stream)
    reply.send_error = send_error
    return reply


async def get(url: str, path: str, ssl_context=None) -> Reply:
    return await request(url, "GET", path, ssl_context=ssl_context)


def assert_json_error(reply: Reply, status: int, *words: str) -> dict:
    """The status, a JSON body {"status": "error", "error": "<readable message>"}, the words in it."""
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.headers.get("content-type", "").startswith("application/json")
    payload = reply.json
    assert payload["status"] == "error"
    message = payload["error"]
    assert isinstance(message, str) and len(message) > 10 and message.isprintable(), message
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    return payload


# -- devices ----------------------------------------------------------------------------------


def make_windows(device, count: int, period: float = PERIOD) -> list[bytes]:
    """The device's first `count` body fragments, one per batch period."""
    return [device.window(k * period, (k + 1) * period) for k in range(count)]


async def post_windows(url: str, ssl_context, headers: dict, windows: list[bytes], *,
                       pace: float | None = None, sent_at: list | None = None) -> tuple[int, dict]:
    """One chunked request on a new connection, one chunk per window (every `pace` s if given)."""
    conn = await sender.Connection.open(sender.Target.parse(url), ssl_context)
    return await post_on(conn, headers, windows, pace=pace, sent_at=sent_at)


async def post_on(conn: sender.Connection, headers: dict, windows: list[bytes], *, pace: float | None = None,
                  sent_at: list | None = None) -> tuple[int, dict]:
    """post_windows on a connection already open; closes it."""
    try:
        await conn.start("/", headers)
        start = trio.current_time()
        for k, body in enumerate(windows):
            if pace:
                await trio.sleep_until(start + (k + 1) * pace)
            await conn.send(body)
            if sent_at is not None:
                sent_at.append(trio.current_time())
        return await conn.finish()
    finally:
        await conn.aclose()


async def stream_until_answered(url: str, ssl_context, headers: dict, bodies, *, pace: float | None = None,
                                sent_at: list | None = None) -> tuple[Reply, int]:
    """One chunked request, a chunk per body of the iterable `bodies` (every `pace` s if given),
    while watching for the server's answer: returns the reply (which may come before the body
    ends, as a 503 or 507 does) and how many bodies were sent whole."""
    stream = await open_stream(url, ssl_context)
    conn = h11.Connection(h11.CLIENT)
    fields = [("host", "127.0.0.1"), ("transfer-encoding", "chunked"), *headers.items()]
    await stream.send_all(conn.send(h11.Request(method="POST", target="/", headers=fields)))
    sent = 0

    async def send_bodies():
        nonlocal sent
        start = trio.current_time()
        for k, body in enumerate(bodies):
            if pace:
                await trio.sleep_until(start + (k + 1) * pace)
            await stream.send_all(conn.send(h11.Data(data=body)))
            sent += 1
            if sent_at is not None:
                sent_at.append(trio.current_time())
        await stream.send_all(conn.send(h11.EndOfMessage()))

    reply = await exchange(stream, conn, send_bodies)
    return reply, sent


# -- stored sessions --------------------------------------------------------------------------


def stored_sequences(reader) -> np.ndarray:
    """Every record sequence in the session's decoded streams, with repeats (one per record)."""
    seqs = []
    for stream in reader.streams():
        if stream in (layout.VERBATIM_STREAM, layout.RAW_BODY_STREAM):
            continue
        seqs.append(np.unique(reader.table(stream).column("sequence").to_numpy()))
    return np.concatenate(seqs) if seqs else np.empty(0, np.uint64)


def assert_session_equals(path: Path, expected: Expected, *, records: int | None = None) -> dict:
    """Every stream, field, frame and the audio equal `expected`; every sequence is stored once."""
    with open_session(path) as reader:
        assert set(reader.streams()) == expected.streams()
        assert_session_matches(reader, expected)
        seqs = stored_sequences(reader)
        assert len(seqs) == len(np.unique(seqs)), "a record is stored twice"
        if records is not None:
            assert len(seqs) == records
        return reader.manifest


def assert_stored_part(path: Path, expected: Expected, *, at_least_through: int | None) -> np.ndarray:
    """What the session holds is exactly the records of `expected` with those sequences (values
    equal, each once), and includes every record with a sequence up to `at_least_through`."""
    with open_session(path) as reader:
        seqs = stored_sequences(reader)
        assert len(seqs) == len(np.unique(seqs)), "a record is stored twice"
        kept = np.sort(seqs)
        assert_session_matches(reader, restrict(expected, lambda s: np.isin(s, kept)))
        if at_least_through is not None:
            wanted = np.arange(at_least_through + 1, dtype=np.uint64)
            missing = np.setdiff1d(wanted, kept)
            assert not len(missing), f"{len(missing)} records lost, e.g. sequences {missing[:10].tolist()}"
        return kept


def assert_folders_read_as_datasets(path: Path) -> None:
    """pyarrow.dataset reads every stream folder, row counts as the session reader has them."""
    with open_session(path) as reader:
        for stream in reader.streams():
            table = ds.dataset(path / stream, format="parquet").to_table()
            assert table.num_rows == reader.table(stream).num_rows, stream


def session_folders(data_dir: Path) -> list[Path]:
    return layout.session_folders(Path(data_dir))


def device_session(data_dir: Path, serial: str) -> Path:
    """The one session folder of device `serial`."""
    [path] = [p for p in session_folders(data_dir) if p.parent.name == serial]
    return path


def records_in(bodies: list[bytes]) -> int:
    """Records a fresh decoder finds in these bodies, decoded as one."""
    decoder = Decoder()
    for body in bodies:
        decoder.feed(body)
    decoder.close()
    return decoder.counters.records


# -- `recorder serve` as a process --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """`recorder serve --plain-http` in its own process, its output in a file; with certs_dir,
    HTTPS with the certificates there instead (ssl_context is then a device's, trusting them)."""

    data_dir: Path
    log: Path
    port: int = field(default_factory=free_port)
    args: tuple = ()
    process: trio.Process | None = None
    certs_dir: Path | None = None
    program: tuple = (RECORDER,)  # what runs `serve`: the recorder, or a wrapper around it

    @property
    def url(self) -> str:
        return f"{'https' if self.certs_dir else 'http'}://127.0.0.1:{self.port}"

    @property
    def ssl_context(self):
        return sender.client_ssl_context(str(Path(self.certs_dir) / "root_ca.pem")) if self.certs_dir else None

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def start(self, timeout: float = 20.0) -> ServerProcess:
        async with await trio.open_file(self.log, "ab") as out:
            self.process = await trio.lowlevel.open_process(
                [*self.program, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir",
                 str(self.data_dir), *(("--certs-dir", str(self.certs_dir)) if self.certs_dir else ("--plain-http",)),
                 *self.args,
                 # RTMP off unless the test asks for it: the default port may be taken.
                 *(() if "--rtmp-port" in self.args else ("--rtmp-port", "0"))],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        with trio.fail_after(timeout):
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"recorder serve exited with {self.process.returncode}:\n{self.output}")
                try:
                    if await self._every_worker_answers():
                        return self
                except (OSError, trio.BrokenResourceError):
                    pass
                await trio.sleep(0.05)

    async def _every_worker_answers(self) -> bool:
        """/healthz answers as soon as one worker is up; /status names the workers still
        starting (where it can be read without a token)."""
        if (await get(self.url, "/healthz", self.ssl_context)).status != 200:
            return False
        status = await get(self.url, "/status", self.ssl_context)
        return status.status != 200 or not status.json.get("workers_not_answering")

    async def said(self, text: str, timeout: float = 10.0) -> str:
        """The output once it holds `text`: /healthz answers as soon as one worker is up, and
        another may still be printing what it listens on."""
        with trio.fail_after(timeout):
            while text not in (output := self.output):
                await trio.sleep(0.05)
        return output

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()

    async def aclose(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
