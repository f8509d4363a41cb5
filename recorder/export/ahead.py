"""A job's items made in another process, while this one writes them.

A format that writes one file from every device (MCAP) cannot split its output by device, but
it can split its work: reading and encoding run in a worker process that rebuilds the job (as
recorder.export.parallel's workers do) and sends each item through a pipe, while this process
writes. The pipe's small kernel buffer is the only queue: a worker ahead of the writer waits in
send(), so memory stays bounded by about one item on each side.

The producing function is a generator `function(job, **options)` whose items and return value
pickle; its return value comes back as run_ahead()'s, and an exception it raises is raised here.
"""

from __future__ import annotations

import importlib
import multiprocessing
import pickle
from collections.abc import Generator

from .job import ExportError
from .parallel import DevicePart

# After the writer stops (finished, failed or interrupted), how long the worker gets to exit.
EXIT_S = 5.0


def run_ahead(part: DevicePart, module: str, function: str, **options) -> Generator:
    """Yields the items of module.function(part.job(), **options) made in a worker process;
    returns what the function returned."""
    context = multiprocessing.get_context("spawn")  # see parallel.by_device: no fork under threads
    receiving, sending = context.Pipe(duplex=False)
    worker = context.Process(target=_produce, args=(sending, part, module, function, options),
                             name="export encoding", daemon=True)
    worker.start()
    sending.close()  # the worker holds the only sending end: its exit ends our recv()
    try:
        while True:
            try:
                kind, value = receiving.recv()
            except EOFError:
                raise ExportError(f"the export's encoding process ended without finishing "
                                  f"(exit code {worker.join(EXIT_S) or worker.exitcode})") from None
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return value
    finally:
        receiving.close()  # a worker still sending gets a broken pipe and stops
        worker.join(EXIT_S)
        if worker.is_alive():
            worker.terminate()
            worker.join()


def _produce(sending, part: DevicePart, module: str, function: str, options: dict) -> None:
    job = None
    try:
        job = part.job()
        items = getattr(importlib.import_module(module), function)(job, **options)
        while True:
            try:
                item = next(items)
            except StopIteration as stop:
                sending.send(("done", stop.value))
                return
            sending.send(("item", item))
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        return  # the writer stopped listening, or Ctrl+C reached the whole group: it says so
    except BaseException as exc:  # every failure goes to the writer, which says it
        _send_error(sending, exc)
    finally:
        if job is not None:
            for session in job.sessions:
                session.close()
        sending.close()


def _send_error(sending, exc: BaseException) -> None:
    try:
        try:
            sending.send(("error", exc))
        except (TypeError, AttributeError, pickle.PicklingError):  # it does not pickle: its text does
            sending.send(("error", ExportError(f"{type(exc).__name__}: {exc}")))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the writer is gone and has its own error to tell
