"""`recorder replay --to URL`: the paths' device sessions to an http(s):// recorder, or their
RTMP recordings to an rtmp(s):// server, all at once, with progress and a summary."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import trio
from rich.console import Console

from ..devicelink import Target, client_ssl_context, describe
from .report import ReplayProgress, Report
from .rtmp import RtmpPublishError, RtmpReport, RtmpTarget, republish
from .send import restream
from .sources import NotReplayable, find

__all__ = ["NotReplayable", "check", "replay", "replay_to", "tls_context"]


def check(paths: list[str | Path], url: str) -> tuple[list[Path], str]:
    """The sessions (or RTMP recordings) to send and which kind of server gets them ("http" or
    "rtmp"); NotReplayable says what is wrong with the paths or the URL."""
    sources = find(paths)
    scheme = urlsplit(url).scheme
    try:
        if scheme in ("http", "https"):
            Target.parse(url)
            if sources.recordings and not sources.sessions:
                raise NotReplayable(f"{sources.recordings[0]} is an RTMP recording: replay it to an rtmp:// URL")
            return sources.sessions, "http"
        if scheme in ("rtmp", "rtmps"):
            target = RtmpTarget.parse(url)
            if not sources.recordings:
                raise NotReplayable(f"{sources.sessions[0]} is a device session: replay it to an http(s):// URL")
            if target.key and len(sources.recordings) > 1:
                raise NotReplayable(f"{len(sources.recordings)} RTMP recordings cannot all publish to the key "
                                    f"{target.key!r}: end the URL at the app (rtmp://host/{target.app}/) and each "
                                    f"publishes to its own stream key")
            return sources.recordings, "rtmp"
    except ValueError as exc:
        raise NotReplayable(str(exc)) from None
    raise NotReplayable(f"--to must be an http://, https://, rtmp:// or rtmps:// URL, not {url!r}")


def tls_context(url: str, ca_file: str | None = None, verify: bool = True) -> ssl.SSLContext | None:
    """TLS for https:// and rtmps:// (None for plain URLs), as a device's: trust `ca_file` or
    the system's CAs, or (verify False) any certificate."""
    if urlsplit(url).scheme not in ("https", "rtmps"):
        return None
    try:
        return client_ssl_context(ca_file, verify)
    except (OSError, ssl.SSLError) as exc:
        raise NotReplayable(f"--ca-file {ca_file}: not a readable CA certificate ({describe(exc)})") from None


def replay(paths: list[str | Path], url: str, *, speed: float = 1.0, ca_file: str | None = None,
           verify: bool = True, timeout_s: float | None = 30.0, token: str | None = None,
           console: Console | None = None) -> tuple[list[Report], bool]:
    """What `recorder replay --to` does: check the paths, send them all at once with a progress
    bar on a terminal, and return the reports and whether Ctrl+C cut it short. Raises
    NotReplayable (before sending anything) for a path or URL that will not do."""
    found, kind = check(paths, url)
    context = tls_context(url, ca_file, verify)
    reports: list[Report] = []
    interrupted = False
    with ReplayProgress(console) as progress:
        try:
            trio.run(lambda: replay_to(found, kind, url, context, speed=speed, timeout_s=timeout_s, token=token,
                                       on_start=progress.started, on_progress=progress.advance,
                                       on_done=progress.finished, reports=reports))
        except* KeyboardInterrupt:  # trio may deliver Ctrl+C wrapped in an exception group
            interrupted = True
    for report in reports:
        if not report.done and not report.error:
            report.error = "interrupted"
    return reports, interrupted


async def replay_to(paths: list[Path], kind: str, url: str, ssl_context: ssl.SSLContext | None = None, *,
                    speed: float = 1.0, timeout_s: float | None = 30.0, on_start=None, on_progress=None,
                    on_done=None, reports: list[Report] | None = None, token: str | None = None) -> list[Report]:
    """Send every path (as check() gave them) at once; `reports` (an empty list) is filled in
    as they go. `token`: a device token for a recorder run with --tokens (HTTP only)."""
    if reports is None:
        reports = []
    if kind == "http":
        return await restream(paths, url, ssl_context, speed=speed, timeout_s=timeout_s, on_start=on_start,
                              on_progress=on_progress, on_done=on_done, reports=reports, token=token)
    target = RtmpTarget.parse(url)
    reports[:] = [RtmpReport(str(path)) for path in paths]
    if on_start:
        on_start(reports)

    async def one(path: Path, report: RtmpReport) -> None:
        started = time.monotonic()
        try:
            await republish(path, target, ssl_context, speed=speed, timeout_s=timeout_s,
                            on_progress=on_progress, report=report)
        except (OSError, ValueError, trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError,
                RtmpPublishError) as exc:
            report.error = describe(exc)
            report.seconds = time.monotonic() - started
        report.done = True
        if on_done:
            on_done(report)

    async with trio.open_nursery() as nursery:
        for path, report in zip(paths, reports, strict=True):
            nursery.start_soon(one, path, report)
    return reports
