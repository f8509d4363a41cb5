"""What `recorder replay --to` shows: a progress bar per session while it sends (on a terminal
only), and a summary at the end with each session's records, bytes, requests and the server's
answers."""

from __future__ import annotations

import threading
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from .rtmp import RtmpReport
from .send import SessionReport

Report = SessionReport | RtmpReport


def name_of(report: Report) -> str:
    if isinstance(report, SessionReport):
        return f"{report.serial} (session {report.session_id})"
    return f"RTMP {report.path}"


class ReplayProgress:
    """Use as a context manager; pass started(), advance() and finished() as the callbacks."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self._lock = threading.Lock()
        self._tasks: dict[int, int] = {}
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), DownloadColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=self.console, disable=not self.console.is_terminal, transient=True)

    def started(self, reports: list[Report]) -> None:
        with self._lock:
            for report in reports:
                label = report.serial if isinstance(report, SessionReport) else report.path
                self._tasks[id(report)] = self._progress.add_task(label, total=max(report.total_bytes, 1),
                                                                  detail="")

    def advance(self, report: Report, records: int, nbytes: int) -> None:
        with self._lock:
            task = self._tasks.get(id(report))
            if task is None:
                self.started([report])
                task = self._tasks[id(report)]
            sent = report.records if isinstance(report, SessionReport) else report.tags
            self._progress.update(task, advance=nbytes, detail=f"{sent} records")

    def finished(self, report: Report) -> None:
        with self._lock:
            task = self._tasks.get(id(report))
            if task is not None:
                self._progress.update(task, detail="FAILED" if report.error else "done")

    def __enter__(self) -> ReplayProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()


def answers(report: Report) -> str:
    """The server's answers in a few words: `3 x 200 ok, 1 undecoded body`."""
    if isinstance(report, RtmpReport):
        return ", ".join(report.answers) or "none"
    counted = Counter(f"{a.get('http')} {a.get('status', '')}".strip() for a in report.answers)
    words = [f"{n} x {answer}" for answer, n in counted.items()]
    undecoded = sum(1 for a in report.answers if a.get("undecoded"))
    if undecoded:
        words.append(f"{undecoded} undecoded (not version 1) bod{'y' if undecoded == 1 else 'ies'}")
    return ", ".join(words) or "none"


def summary(reports: list[Report]) -> str:
    lines = []
    for r in reports:
        rate = r.bytes / r.seconds / 1e6 if r.seconds else 0.0
        if isinstance(r, SessionReport):
            line = (f"{name_of(r)}: {r.records}/{r.total_records} records, {r.bytes / 1e6:.2f} MB in "
                    f"{r.requests} request(s), {r.seconds:.1f} s, {rate:.2f} MB/s; answers: {answers(r)}")
            if r.resends:
                line += f"  NOT STORED: the server already had {r.resends} of these records"
        else:
            line = (f"{name_of(r)}: {r.tags}/{r.total_tags} tags, {r.bytes / 1e6:.2f} MB, {r.seconds:.1f} s; "
                    f"answers: {answers(r)}")
        if r.error:
            line += f"  FAILED: {r.error}"
        lines.append(line)
    failed = sum(1 for r in reports if r.error)
    total = (f"total: {len(reports)} session(s), {sum(r.bytes for r in reports) / 1e6:.2f} MB, "
             f"{max((r.seconds for r in reports), default=0.0):.1f} s")
    if failed:
        total += f"; {failed} FAILED"
    lines.append(total)
    return "\n".join(lines)


def succeeded(reports: list[Report]) -> bool:
    """Every session sent whole, and stored by the server as new."""
    return all(r.done and not r.error and not getattr(r, "resends", 0) for r in reports)
