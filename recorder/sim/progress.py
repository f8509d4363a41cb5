"""A live progress bar for a simulated fleet: seconds of data sent out of all devices' total,
megabytes, records, and how many devices are done (or failed). Shown on a terminal only; off
when the output goes to a file or a pipe, where the closing summary says it all."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn


class FleetProgress:
    """Use as a context manager; pass advance() and finished() to the sender as its callbacks."""

    def __init__(self, devices: list, duration_s: float, *, verb: str = "streaming", console: Console | None = None):
        self.devices = devices
        self.console = console or Console()
        self._lock = threading.Lock()
        self._bytes = 0
        self._done = 0
        self._failed = 0
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=self.console, disable=not self.console.is_terminal, transient=True)
        self._task = self._progress.add_task(f"{verb} {len(devices)} device(s)", total=len(devices) * duration_s,
                                             detail=self._detail())

    def _detail(self) -> str:
        records = sum(d.records_sent for d in self.devices)
        text = f"{self._bytes / 1e6:.1f} MB, {records} records, {self._done}/{len(self.devices)} done"
        return text + (f", {self._failed} FAILED" if self._failed else "")

    def advance(self, device, seconds: float, nbytes: int) -> None:
        with self._lock:
            self._bytes += nbytes
            self._progress.update(self._task, advance=seconds, detail=self._detail())

    def finished(self, report) -> None:
        with self._lock:
            self._done += 1
            self._failed += bool(report.error)
            self._progress.update(self._task, detail=self._detail())

    def __enter__(self) -> FleetProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()
