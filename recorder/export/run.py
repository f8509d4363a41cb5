"""One export: choose the sessions, window and clock, let the format write, and put the output
in place only once it is whole, with the clock it is on written beside it.

An interrupted export (an error, Ctrl+C, a kill) leaves `<out>.partial`, never a file or folder
under the name asked for; a later export removes such a leftover. An existing output is never
overwritten unless asked (`overwrite=True`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import formats
from .job import ExportError, ExportJob


@dataclass
class ExportSummary:
    format: str
    out: Path
    clock: dict
    sessions: int
    seconds: float
    stored_bytes: int
    written: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.format}: {self.out} from {self.sessions} session(s), clock {self.clock['clock']}, "
                 f"{self.seconds:.1f} s ({self.stored_bytes / 1e6 / max(self.seconds, 1e-9):.1f} MB/s of stored data)"]
        for what, count in (self.written.get("rows") or {}).items():
            lines.append(f"  {what}: {count} rows")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def clock_file(out: Path) -> Path:
    """Where the clock description goes: inside a folder output, beside a file output."""
    return out / "clock.json" if out.suffix == "" else out.with_name(out.name + ".clock.json")


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def export(paths: list, format_name: str, out: str | Path, *, clock: str = "broadcaster",
           streams: list[str] | None = None, start: str | None = None, end: str | None = None,
           overwrite: bool = False, progress: Callable[[int], None] | None = None,
           on_job: Callable[[ExportJob], None] | None = None, workers: int | None = None,
           **options) -> ExportSummary:
    """Export the sessions under `paths` to `out` in `format_name`; `options` go to the format.
    `workers`: processes for formats that export device by device (default: every core)."""
    try:
        module = formats.load(format_name)
    except KeyError as exc:
        raise ExportError(str(exc.args[0])) from None
    out = Path(out)
    if module.SUFFIX and out.suffix != module.SUFFIX:
        out = out.with_name(out.name + module.SUFFIX)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists: choose another --out, or --overwrite to replace it")
    job = ExportJob.make(paths, clock=clock, streams=streams, start=start, end=end)
    job.workers = workers
    if on_job is not None:
        on_job(job)
    partial = partial_path(out)
    if partial.exists():
        _remove(partial)  # an earlier export's leftover, never a finished output
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        written = module.write(job, partial, progress or (lambda rows: None), **options) or {}
        if module.SUFFIX == "":
            partial.mkdir(exist_ok=True)
        clock_description = job.clock.description()
        if out.exists():
            _remove(out)
        partial.rename(out)
        clock_file(out).write_text(json.dumps(clock_description, indent=1) + "\n")
    except BaseException:
        if partial.exists():
            _remove(partial)
        raise
    finally:
        for session in job.sessions:
            session.close()
    return ExportSummary(format_name, out, clock_description, len(job.sessions), time.perf_counter() - started,
                         job.stored_bytes(), written, list(dict.fromkeys(job.notes)))
