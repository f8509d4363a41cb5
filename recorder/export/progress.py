"""A progress bar for an export on a terminal (rows done of the rows in the window); nothing
when the output is not a terminal."""

from __future__ import annotations

import sys

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from .job import ExportJob


class ExportProgress:
    def __init__(self):
        self.enabled = sys.stdout.isatty()
        self._progress = Progress(TextColumn("export"), BarColumn(), TaskProgressColumn(),
                                  TextColumn("{task.completed:,} of {task.total:,} rows"), TimeRemainingColumn(),
                                  disable=not self.enabled)
        self._task = None

    def __enter__(self) -> ExportProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def begin(self, job: ExportJob) -> None:
        total = 0
        for session in job.sessions:
            listed = session.manifest.get("streams") or {}
            total += sum(int((listed.get(name) or {}).get("rows") or 0) for name in job.streams(session))
        self._task = self._progress.add_task("export", total=total or None)

    def advance(self, rows: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, rows)
