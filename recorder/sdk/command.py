"""`recorder replay SESSION... --handler MODULE:FACTORY`: stored sessions replayed into the
callbacks of a user's StreamDataInterface factory, with a progress bar on a terminal and a
summary of what each device's callbacks were given.

FACTORY is called once per device (like the live server's handler factory) and returns a
StreamDataInterface. SESSION may be a session folder or a folder of them (a data folder, a
device's folder).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from ..storage import layout
from .replay import ReplayError, ReplaySource, ReplaySourceConfig, create_replay_source

POLL_S = 0.1


def load_factory(spec: str) -> Callable:
    """MODULE:FACTORY (FACTORY may be dotted, e.g. handlers:Factory.create), imported."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ReplayError(f"--handler {spec!r}: expected MODULE:FACTORY, e.g. my_handlers:make_handler")
    # The current folder is searched first, as `python -m` and uvicorn do: a handler saved
    # beside the data is found without setting PYTHONPATH.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReplayError(f"--handler {spec!r}: cannot import {module_name} ({exc}); is it in the current folder "
                          f"or its folder on PYTHONPATH?") from None
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ReplayError(f"--handler {spec!r}: {module_name} has no {attribute}")
        value = getattr(value, part)
    if not callable(value):
        raise ReplayError(f"--handler {spec!r}: {attribute} is not callable")
    return value


def session_folders(paths: list[str | Path]) -> list[Path]:
    """The session folders the paths name (themselves, or the sessions under them), each once."""
    found: list[Path] = []
    for given in map(Path, paths):
        if not given.is_dir():
            raise ReplayError(f"{given}: no such session folder")
        inside = [given] if layout.is_session_folder(given) else layout.session_folders(given) + [
            s for s in layout.subfolders(given) if layout.is_session_folder(s)]
        if not inside:
            raise ReplayError(f"{given} is not a session: expected a session folder (<data-dir>/<serial>/<session-id>/, "
                              "as `recorder serve` writes them) or a folder holding them")
        found += [s for s in inside if s not in found]
    return found


def replay_to_handler(paths: list[str | Path], handler: str, *, speed: float = 1.0, start: float | None = None,
                      end: float | None = None, streams: list[str] | None = None, loop: bool = False,
                      console: Console | None = None) -> int:
    """Run the replay to its end (or Ctrl+C) and print the summary; the exit status (0, 1 if
    the replay stopped on an error, 130 on Ctrl+C). Raises ReplayError for bad arguments."""
    console = console or Console(highlight=False)
    factory = load_factory(handler)
    config = ReplaySourceConfig(session_folders(paths), speed_multiplier=speed, start_time_sec=start,
                                end_time_sec=end, streams=streams, loop=loop)
    began = time.monotonic()
    source = create_replay_source(config, factory)
    interrupted = False
    try:
        watch(source, console)
    except KeyboardInterrupt:
        interrupted = True
        source.stop()
    console.print(summary(source, time.monotonic() - began, interrupted), soft_wrap=True, markup=False, highlight=False)
    if interrupted:
        return 130
    return 1 if source.error is not None else 0


def watch(source: ReplaySource, console: Console) -> None:
    """Wait for the end of the replay, with a progress bar when on a terminal."""
    if not console.is_terminal:
        while not source.wait(POLL_S):
            pass
        return
    total_s = (source.end_ns - source.start_ns) / 1e9
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[position]}"), TextColumn("{task.fields[rate]}"))
    began = time.monotonic()
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("replay", total=1.0, position="", rate="")
        while not source.wait(POLL_S):
            position_s = (source.position_ns - source.start_ns) / 1e9
            calls = sum(sum(d.delivered.values()) for d in source.deliveries.values())
            elapsed = max(time.monotonic() - began, 1e-9)
            bar.update(task, completed=source.progress, position=f"{position_s:.1f}/{total_s:.1f} s",
                       rate=f"x{position_s / elapsed:.2f}, {calls / elapsed:,.0f} callbacks/s")


def summary(source: ReplaySource, elapsed_s: float, interrupted: bool) -> str:
    span_s = (source.position_ns - source.start_ns) / 1e9
    lines = [f"{'interrupted (Ctrl+C): ' if interrupted else ''}replayed {len(source.devices)} device"
             f"{'s' if len(source.devices) != 1 else ''}, {span_s:.2f} s of timeline in {elapsed_s:.2f} s"
             + (f" ({source.loops} loops)" if source.loops else "")]
    for serial, delivery in source.deliveries.items():
        streams = ", ".join(f"{name} {count:,}" for name, count in sorted(delivery.delivered.items()))
        line = f"{serial}: {sum(delivery.delivered.values()):,} callbacks, {delivery.errors:,} errors"
        if delivery.skipped:
            line += f", frames not decodable {sum(delivery.skipped.values()):,}"
        lines.append(line + (f" ({streams})" if streams else ""))
    if source.error is not None:
        lines.append(f"replay stopped: {type(source.error).__name__}: {source.error}")
    return "\n".join(lines)
