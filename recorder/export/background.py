"""An iterator's items made in a thread of their own while the caller uses the ones before.

For exports whose reading and encoding can run beside their writing: most of either side's time
is spent in C code that releases the interpreter lock (zstd decompressing stored frames and
compressing chunks, Parquet decoding, Arrow compute), so two threads keep two cores busy; a
worker process was measured slower (its start and the messages through a pipe cost more than
the overlap saved). At most `depth` items wait, so memory stays bounded by what they hold.

    with Background(steps()) as items:
        for item in items:
            ...

An exception in the thread is raised in the caller, at the item where it happened; leaving the
`with` (done, an error or Ctrl+C) stops the thread and waits for it, so nothing it holds (open
files, sessions) is used after the caller goes on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_END = object()


class Background:
    def __init__(self, items: Iterable, depth: int = 2, name: str = "background"):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iter(items),), name=name, daemon=True)
        self._thread.start()

    def _run(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    break
            else:
                self._put((_END, None))
        except BaseException as exc:  # handed to the caller, raised there
            self._put((_END, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's cleanup runs here, in the thread that ran it

    def _put(self, entry: tuple) -> bool:
        """Waits for room unless the caller has stopped listening; False then."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
