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
from dataclasses import dataclass, field
from pathlib import Path

import h11
import trio

from ..devicelink import Connection, SendError, Target, client_ssl_context, describe

__all__ = ["Connection", "DeviceReport", "SendError", "Target", "client_ssl_context", "describe", "stream_fleet"]


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


def periods(duration_s: float, period_s: float):
    """(start, end) of each batch period, computed from its index so that boundaries do not drift."""
    k = 0
    while k * period_s < duration_s - 1e-9:
        yield k * period_s, min((k + 1) * period_s, duration_s)
        k += 1


async def stream_device(device, target: Target, ssl_context, *, duration_s: float, batch_period_s: float,
                        fast: bool, request_seconds: float = 0.0, timeout_s: float | None = None,
                        on_progress: ProgressCallback | None = None,
                        report: DeviceReport | None = None, token: str | None = None) -> DeviceReport:
    """Stream one device's session for duration_s; raises SendError if the recorder refuses it
    or makes no progress for timeout_s. `report` is filled in as the device goes, so that a
    caller still has what was sent when it fails. `token`: a device token, sent with every
    request as `Authorization: Bearer` (for a recorder run with --tokens)."""
    report = report or DeviceReport(device.serial, device.session_id)
    started = time.monotonic()
    paced_from = trio.current_time()  # trio's clock has its own origin; pace against it
    conn = await Connection.open(target, ssl_context, timeout_s=timeout_s)
    try:
        request_started = 0.0
        await conn.start(target.path, _with_token(device.headers(), token))
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
                await conn.start(target.path, _with_token(device.headers(), token))
                report.requests += 1
                request_started = t_next
        report.responses.append(await _finish(conn))
    finally:
        await conn.aclose()
    report.records = device.records_sent
    report.seconds = time.monotonic() - started
    return report


def _with_token(headers: dict[str, str], token: str | None) -> dict[str, str]:
    return {**headers, "authorization": f"Bearer {token}"} if token else headers


async def _finish(conn: Connection) -> dict:
    status, payload = await conn.finish()
    if status != 200:
        raise SendError(f"HTTP {status}: {payload.get('error', payload)}")
    return payload


async def stream_fleet(devices, url: str, ssl_context, *, duration_s: float, batch_period_s: float,
                       fast: bool, request_seconds: float = 0.0, timeout_s: float | None = None,
                       on_progress: ProgressCallback | None = None,
                       on_done: Callable[[DeviceReport], None] | None = None,
                       reports: list[DeviceReport] | None = None, token: str | None = None) -> list[DeviceReport]:
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
                                on_progress=on_progress, report=reports[i], token=token)
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
