"""An export of several devices on every core: one worker process per device at a time.

Formats whose output is per device (parquet partitions, mp4 files) hand `by_device` a function
that exports one job; each worker opens its device's sessions again and rebuilds the job with
the same clock (the utc offset and the window are passed as they were resolved, not worked out
again from fewer sessions), so its rows are exactly those the whole job would give. One device,
or one core, runs in this process.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from .clocks import ExportClock
from .job import ExportJob, open_sessions


@dataclass(frozen=True)
class DevicePart:
    """One device's share of a job, as plain values a worker process can be given."""

    paths: tuple[str, ...]
    clock: str
    utc_offset_ns: int
    wanted: tuple[str, ...] | None
    start_ns: int | None
    end_ns: int | None
    origin_ns: int

    def job(self) -> ExportJob:
        sessions = open_sessions(list(self.paths))
        clock = ExportClock(self.clock, sessions, utc_offset_ns=self.utc_offset_ns)
        return ExportJob(sessions, clock, wanted=list(self.wanted) if self.wanted else None,
                         start_ns=self.start_ns, end_ns=self.end_ns, origin_ns=self.origin_ns)


def device_parts(job: ExportJob) -> list[DevicePart]:
    by_serial: dict[str, list[str]] = {}
    for session in job.sessions:
        by_serial.setdefault(session.serial, []).append(str(session.path))
    return [DevicePart(tuple(paths), job.clock.name, job.clock.utc_offset_ns,
                       tuple(job.wanted) if job.wanted else None, job.start_ns, job.end_ns, job.origin_ns)
            for _, paths in sorted(by_serial.items())]


def workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def by_device(job: ExportJob, function: Callable, out: Path, progress, **options) -> list[dict]:
    """function(device_job, out, progress, **options) for each device; what each returned, in
    device order. Notes the workers' jobs made are added to `job.notes`."""
    parts = device_parts(job)
    processes = min(job.workers or workers(), len(parts))
    if processes < 2:
        return [function(job, out, progress, **options)]
    results: dict[int, dict] = {}
    # spawn, not fork: the parent may hold threads (a progress bar) that fork would copy mid-step.
    with ProcessPoolExecutor(max_workers=processes,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = {pool.submit(_run, part, function.__module__, function.__name__, str(out), options): k
                   for k, part in enumerate(parts)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    k = pending.pop(future)
                    written, notes, rows = future.result()
                    results[k] = written
                    job.notes += notes
                    progress(rows)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return [results[k] for k in range(len(parts))]


def _run(part: DevicePart, module: str, function: str, out: str, options: dict) -> tuple[dict, list[str], int]:
    export_device = getattr(importlib.import_module(module), function)
    job = part.job()
    rows = 0

    def count(n: int) -> None:
        nonlocal rows
        rows += n

    try:
        written = export_device(job, Path(out), count, **options)
    finally:
        for session in job.sessions:
            session.close()
    return written, job.notes, rows
