"""Sends simulated devices' sessions to a recorder over real HTTP/1.1 (h11 over trio).

Each device streams on its own connection: one POST whose body is sent with chunked transfer
encoding, one chunk per batch period, as the glasses do; optionally split into consecutive
requests on the same connection. Paced in real time unless `fast`. A recorder that takes no
data or gives no answer for `timeout_s` fails the device with a SendError that says so.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import h11
import trio

RECEIVE_SIZE = 65536
SEND_PIECE = 256 * 1024


class SendError(Exception):
    """The recorder refused or broke off a request; the message says why."""


@dataclass
class DeviceReport:
    serial: str
    session_id: str = ""
    records: int = 0
    bytes: int = 0
    requests: int = 0
    seconds: float = 0.0
    error: str | None = None
    responses: list[dict] = field(default_factory=list)
    done: bool = False  # sent whole or failed; False while streaming (or if the run was interrupted)

    @property
    def resends(self) -> int:
        """Records the recorder answered it already had (and so did not store again)."""
        return sum(int(r.get("resends", 0)) for r in self.responses)


# Called after each batch period a device has sent or written: (device, seconds of data, bytes).
ProgressCallback = Callable[[object, float, int], None]


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    tls: bool

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"URL must start with http:// or https://, not {url!r}")
        tls = parts.scheme == "https"
        return cls(parts.hostname or "localhost", parts.port or (6768 if tls else 80),
                   parts.path or "/", tls)


def client_ssl_context(ca_file: str | None = None, verify: bool = True,
                       cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    """TLS for a device: trust `ca_file` (or the system's), optionally present a device certificate."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def periods(duration_s: float, period_s: float):
    """(start, end) of each batch period, computed from its index so that boundaries do not drift."""
    k = 0
    while k * period_s < duration_s - 1e-9:
        yield k * period_s, min((k + 1) * period_s, duration_s)
        k += 1


class Connection:
    """One HTTP/1.1 client connection: send requests with chunked bodies, read JSON responses.

    With timeout_s, a recorder that takes no bytes, or sends none while an answer is awaited,
    for that long raises SendError naming it (a server that accepts and then hangs would
    otherwise hold the device for ever)."""

    def __init__(self, stream: trio.abc.Stream, target: Target, timeout_s: float | None = None):
        self.stream = stream
        self.target = target
        self.host = target.host
        self.timeout_s = timeout_s
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, target: Target, ssl_context: ssl.SSLContext | None, *,
                   timeout_s: float | None = None) -> Connection:
        with _deadline(timeout_s, f"{target.address} did not answer the connection"):
            if target.tls:
                stream = await trio.open_ssl_over_tcp_stream(target.host, target.port, ssl_context=ssl_context)
                await stream.do_handshake()
            else:
                stream = await trio.open_tcp_stream(target.host, target.port)
        return cls(stream, target, timeout_s)

    async def _send(self, event) -> None:
        data = memoryview(self.h11.send(event) or b"")
        # In pieces, each with its own deadline: a slow link that keeps taking data is progress,
        # only one that takes nothing for timeout_s is given up on.
        for start in range(0, len(data), SEND_PIECE):
            with _deadline(self.timeout_s, f"{self.target.address} took no data"):
                await self.stream.send_all(data[start:start + SEND_PIECE])

    async def start(self, path: str, headers: dict[str, str], content_length: int | None = None) -> None:
        fields = [("host", self.host)]
        fields.append(("content-length", str(content_length)) if content_length is not None
                      else ("transfer-encoding", "chunked"))
        fields += list(headers.items())
        await self._send(h11.Request(method="POST", target=path, headers=fields))

    async def send(self, body: bytes) -> None:
        if body:
            await self._send(h11.Data(data=body))

    async def finish(self) -> tuple[int, dict]:
        await self._send(h11.EndOfMessage())
        return await self.response()

    async def response(self) -> tuple[int, dict]:
        status, body = None, bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                with _deadline(self.timeout_s, f"no answer from {self.target.address}"):
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise SendError("the recorder closed the connection without a response")
                self.h11.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise SendError("the recorder closed the connection")
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {"status": "error", "error": body.decode("utf-8", "replace")}
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return status, payload

    async def aclose(self) -> None:
        with trio.move_on_after(1):  # closing TLS says goodbye; a hung recorder does not hear it
            await self.stream.aclose()
        await trio.aclose_forcefully(self.stream)


@contextmanager
def _deadline(timeout_s: float | None, what: str):
    """Raise SendError("<what> in <timeout_s> s; gave up") if the block takes longer (None: no limit)."""
    if timeout_s is None:
        yield
        return
    try:
        with trio.fail_after(timeout_s):
            yield
    except trio.TooSlowError:
        raise SendError(f"{what} in {timeout_s:g} s; gave up") from None


async def stream_device(device, target: Target, ssl_context, *, duration_s: float, batch_period_s: float,
                        fast: bool, request_seconds: float = 0.0, timeout_s: float | None = None,
                        on_progress: ProgressCallback | None = None,
                        report: DeviceReport | None = None) -> DeviceReport:
    """Stream one device's session for duration_s; raises SendError if the recorder refuses it
    or makes no progress for timeout_s. `report` is filled in as the device goes, so that a
    caller still has what was sent when it fails."""
    report = report or DeviceReport(device.serial, device.session_id)
    started = time.monotonic()
    paced_from = trio.current_time()  # trio's clock has its own origin; pace against it
    conn = await Connection.open(target, ssl_context, timeout_s=timeout_s)
    try:
        request_started = 0.0
        await conn.start(target.path, device.headers())
        report.requests += 1
        for t, t_next in periods(duration_s, batch_period_s):
            # Generating a window (rendering frames, encoding video) takes long enough to stall
            # every other device's sending if it ran on the event loop.
            body = await trio.to_thread.run_sync(device.window, t, t_next)
            if not fast:
                await trio.sleep_until(paced_from + t_next)  # the period's data exists once captured
            await conn.send(body)
            report.bytes += len(body)
            report.seconds = time.monotonic() - started
            if on_progress:
                on_progress(device, t_next - t, len(body))
            if request_seconds and t_next - request_started >= request_seconds - 1e-9 and t_next < duration_s - 1e-9:
                report.responses.append(await _finish(conn))
                await conn.start(target.path, device.headers())
                report.requests += 1
                request_started = t_next
        report.responses.append(await _finish(conn))
    finally:
        await conn.aclose()
    report.records = device.records_sent
    report.seconds = time.monotonic() - started
    return report


async def _finish(conn: Connection) -> dict:
    status, payload = await conn.finish()
    if status != 200:
        raise SendError(f"HTTP {status}: {payload.get('error', payload)}")
    return payload


def describe(exc: BaseException) -> str:
    """The most telling words for a failure: trio wraps TLS errors (an untrusted certificate,
    say) in BrokenResourceError, whose own text is empty."""
    while not str(exc) and exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc) or type(exc).__name__


async def stream_fleet(devices, url: str, ssl_context, *, duration_s: float, batch_period_s: float,
                       fast: bool, request_seconds: float = 0.0, timeout_s: float | None = None,
                       on_progress: ProgressCallback | None = None,
                       on_done: Callable[[DeviceReport], None] | None = None,
                       reports: list[DeviceReport] | None = None) -> list[DeviceReport]:
    """Stream every device at once, each on its own connection; a failing device does not stop others.
    Pass an empty list as `reports` to hold each device's report as it goes (for a summary after
    an interruption)."""
    target = Target.parse(url)
    if reports is None:
        reports = []
    reports[:] = [DeviceReport(d.serial, d.session_id) for d in devices]

    async def one(i, device):
        started = time.monotonic()
        try:
            await stream_device(device, target, ssl_context, duration_s=duration_s, batch_period_s=batch_period_s,
                                fast=fast, request_seconds=request_seconds, timeout_s=timeout_s,
                                on_progress=on_progress, report=reports[i])
        except (OSError, trio.BrokenResourceError, ssl.SSLError, h11.ProtocolError, SendError) as exc:
            reports[i].error = describe(exc)
            reports[i].records = device.records_sent
            reports[i].seconds = time.monotonic() - started
        reports[i].done = True
        if on_done:
            on_done(reports[i])

    async with trio.open_nursery() as nursery:
        for i, device in enumerate(devices):
            nursery.start_soon(one, i, device)
    return reports


def write_fleet(devices, out_dir: Path, *, duration_s: float, batch_period_s: float,
                on_progress: ProgressCallback | None = None,
                on_done: Callable[[DeviceReport], None] | None = None,
                reports: list[DeviceReport] | None = None) -> list[DeviceReport]:
    """Instead of sending: each device's body and headers as files under out_dir/<serial>/.
    `reports`, if given, is filled in as the devices are written."""
    if reports is None:
        reports = []
    for device in devices:
        folder = out_dir / device.serial
        folder.mkdir(parents=True, exist_ok=True)
        report = DeviceReport(device.serial, device.session_id, requests=1)
        reports.append(report)
        started = time.monotonic()
        with open(folder / "body.srf", "wb") as body:
            for t, t_next in periods(duration_s, batch_period_s):
                data = device.window(t, t_next)
                body.write(data)
                report.bytes += len(data)
                report.seconds = time.monotonic() - started
                if on_progress:
                    on_progress(device, t_next - t, len(data))
        (folder / "headers.json").write_text(json.dumps(device.headers(), indent=1) + "\n")
        report.records = device.records_sent
        report.seconds = time.monotonic() - started
        report.done = True
        if on_done:
            on_done(report)
    return reports


def mark_interrupted(reports: list[DeviceReport], devices) -> None:
    """After an interruption: devices not done are failed, with what they had generated."""
    reports += [DeviceReport(d.serial, d.session_id) for d in devices[len(reports):]]
    for report, device in zip(reports, devices, strict=True):
        if not report.done:
            report.error = "interrupted"
            report.records = device.records_sent


def summary(reports: list[DeviceReport]) -> str:
    lines = []
    for r in reports:
        rate = r.bytes / r.seconds / 1e6 if r.seconds else 0.0
        line = (f"{r.serial} (session {r.session_id}): {r.records} records, {r.bytes / 1e6:.2f} MB in {r.requests} request(s), "
                f"{rate:.2f} MB/s")
        if r.error:
            line += f"  FAILED: {r.error}"
        if r.resends:
            line += (f"  NOT STORED: the recorder already had {r.resends} of these records "
                     f"(session {r.session_id} was sent before)")
        lines.append(line)
    total_bytes = sum(r.bytes for r in reports)
    total_records = sum(r.records for r in reports)
    seconds = max((r.seconds for r in reports), default=0.0)
    line = (f"total: {len(reports)} device(s), {total_records} records, {total_bytes / 1e6:.2f} MB, "
            f"{total_records / seconds if seconds else 0:.0f} records/s, "
            f"{total_bytes / seconds / 1e6 if seconds else 0:.2f} MB/s")
    failed = sum(1 for r in reports if r.error)
    resent = sum(r.resends for r in reports)
    if failed:
        line += f"; {failed} device(s) FAILED"
    if resent:
        line += f"; {resent} records were resends the recorder did not store again"
    lines.append(line)
    return "\n".join(lines)


def succeeded(reports: list[DeviceReport]) -> bool:
    """Every device sent its session whole and the recorder stored it as new."""
    return not any(r.error or r.resends for r in reports)
