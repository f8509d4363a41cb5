"""Offline replay of stored sessions through the vendor's callbacks, as its replay source does,
and what the vendor's lacks.

    config = ReplaySourceConfig("data/<serial>/<session-id>", speed_multiplier=0)
    source = create_replay_source(config, stream_data)
    while not source.is_finished():
        time.sleep(0.1)

`filename` is a session folder, or a list of them (several devices in one replay); then
`stream_data` may be a factory called once per device, like the live server's. Rows are
delivered from a background thread (the vendor fires from its own threads too) in the order of
one timeline: the broadcaster's clock, through each device's time domain mapping. A device
without a mapping stays on its own clock; with several devices the replay says so (a line on
stderr, and `warnings`).

Beyond the vendor: a window in seconds from the timeline's start (start_time_sec,
end_time_sec) or in absolute timeline nanoseconds (start_ns, end_ns); a stream filter; loop;
pause(), resume() and seek(); camera decoding primed from the keyframe before a window's start
or a seek; a raising callback reported with its device, stream and time while the replay goes
on (the vendor's callbacks all stop); and a missing or malformed session raising ReplayError
when the source is created (the vendor's returns None for a missing file and aborts on a
malformed one). Sessions are read a slice of timeline at a time (slices.py): memory does not
grow with a session's length.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..reading import Session, open_session
from .delivery import ErrorHandler
from .interface import StreamDataInterface
from .slices import ReplayDevice, read_slice
from .streams import UNDECODED, message_of

SLICE_NS = 10**9  # timeline read and merged at a time
FIRST_SLICE_NS = SLICE_NS // 8  # shorter at a (re)start, so that the first rows come sooner
TICK_S = 0.05  # the longest a paced sleep lasts before stop, pause and seek are looked at


class ReplayError(ValueError):
    """A replay that cannot start: the message says which session or option, and why."""


@dataclass
class ReplaySourceConfig:
    filename: str | Path | list[str | Path] = ""
    speed_multiplier: float = 1.0  # 0: as fast as possible
    start_time_sec: float | None = None  # from the timeline's start
    end_time_sec: float | None = None
    start_ns: int | None = None  # absolute timeline (broadcaster clock) time; not with start_time_sec
    end_ns: int | None = None
    streams: list[str] | None = None  # None: every stream with callbacks
    loop: bool = False
    on_error: ErrorHandler | None = None  # default: a line on stderr per raising callback


def _open(path) -> Session:
    try:
        return open_session(path)
    except (FileNotFoundError, ValueError) as exc:
        raise ReplayError(f"cannot replay {path}: {exc}") from None


def _deliverable(session: Session) -> list[str]:
    """The streams whose rows feed a callback (not verbatim records or raw bodies)."""
    found = []
    for name in session.streams():
        try:
            schema = session.schema(name)
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise ReplayError(f"cannot replay {session.path}: a stored stream cannot be read ({name}: {exc})") from None
        try:
            if message_of(name, schema) == UNDECODED:
                continue
        except ValueError:
            continue
        found.append(name)
    return found


class ReplaySource:
    """A replay running in a background thread. Timeline times are in ns on the broadcaster's
    clock; `start_ns`/`end_ns` bound the window, `position_ns` is the row being delivered (or
    the last one). Callbacks registered after the source is created are not called."""

    def __init__(self, config: ReplaySourceConfig, stream_data: StreamDataInterface | Callable[[], StreamDataInterface]):
        if config.speed_multiplier is None or config.speed_multiplier < 0:
            raise ReplayError(f"speed_multiplier must be 0 (as fast as possible) or more, not {config.speed_multiplier}")
        if config.start_time_sec is not None and config.start_ns is not None:
            raise ReplayError("give the window's start as start_time_sec or start_ns, not both")
        if config.end_time_sec is not None and config.end_ns is not None:
            raise ReplayError("give the window's end as end_time_sec or end_ns, not both")
        paths = config.filename if isinstance(config.filename, (list, tuple)) else [config.filename]
        if not paths or any(p in ("", None) for p in paths):
            raise ReplayError("ReplaySourceConfig.filename names no session folder")
        self.config = config
        self.speed = float(config.speed_multiplier)
        self.warnings: list[str] = []
        self._available: set[str] = set()
        self.devices: list[ReplayDevice] = []
        try:
            for path in paths:
                session = _open(path)
                try:
                    self.devices.append(self._device(session, stream_data))
                except BaseException:
                    session.close()
                    raise
            self.start_ns, self.end_ns = self._window()
        except BaseException:
            for device in self.devices:
                device.session.close()
            raise
        self.position_ns = self.start_ns
        self.loops = 0
        self.error: BaseException | None = None
        for line in self.warnings:
            print(f"replay: {line}", file=sys.stderr, flush=True)
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared while paused
        self._running.set()
        self._seek: int | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="recorder-replay", daemon=True)
        self._thread.start()

    # -- set up -------------------------------------------------------------------------------

    def _device(self, session: Session, stream_data) -> ReplayDevice:
        available = _deliverable(session)
        self._available.update(available)
        if self.config.streams is not None:
            available = [s for s in available if s in self.config.streams]
        interface = stream_data if isinstance(stream_data, StreamDataInterface) else self._make(stream_data, session)
        try:
            device = ReplayDevice(session, available, interface, self.config.on_error)
            span = device.span()
        except (pa.ArrowException, OSError, KeyError, ValueError) as exc:
            raise ReplayError(f"cannot replay {session.path}: a stored stream cannot be read ({exc})") from None
        device.timeline_span = span
        if not device.clock.mapped and session.broadcaster.role != "broadcaster" and self._several():
            self.warnings.append(f"{session.serial} has no time domain mapping: its rows are on its own clock, "
                                 "not the broadcaster's")
        return device

    def _several(self) -> bool:
        return isinstance(self.config.filename, (list, tuple)) and len(self.config.filename) > 1

    @staticmethod
    def _make(factory, session: Session) -> StreamDataInterface:
        if not callable(factory):
            raise ReplayError(f"stream_data must be a StreamDataInterface or a factory of them, "
                              f"not {type(factory).__name__}")
        try:
            made = factory()
        except Exception as exc:
            raise ReplayError(f"the stream_data factory raised for {session.serial}: "
                              f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(made, StreamDataInterface):
            raise ReplayError(f"the stream_data factory gave {type(made).__name__} for {session.serial}, "
                              "not a StreamDataInterface")
        return made

    def _window(self) -> tuple[int, int]:
        c = self.config
        if c.streams is not None:
            missing = [s for s in c.streams if s not in self._available]
            if missing:
                raise ReplayError(f"no session of the replay has stream {', '.join(missing)} "
                                  f"(streams with callbacks: {', '.join(sorted(self._available))})")
        spans = [d.timeline_span for d in self.devices if d.timeline_span is not None]
        if not spans:
            raise ReplayError("the sessions hold no rows to replay")
        first, last = min(s[0] for s in spans), max(s[1] for s in spans)
        start = first if c.start_time_sec is None and c.start_ns is None else (
            c.start_ns if c.start_ns is not None else first + round(c.start_time_sec * 1e9))
        end = last + 1 if c.end_time_sec is None and c.end_ns is None else (
            c.end_ns if c.end_ns is not None else first + round(c.end_time_sec * 1e9))
        if not (start < end and start <= last and end > first):
            raise ReplayError(f"the window [{start}, {end}) ns holds none of the timeline [{first}, {last}] ns "
                              f"({(last - first) / 1e9:.3f} s)")
        return max(start, first), min(end, last + 1)

    # -- control ------------------------------------------------------------------------------

    def is_finished(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the end of the replay; True if it has ended."""
        self._thread.join(timeout)
        return self.is_finished()

    def stop(self) -> None:
        """End the replay (at the next row) and wait for its thread."""
        self._stop.set()
        self._running.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def seek(self, t_sec: float) -> None:
        """Go on from t_sec seconds after the timeline's start (the reference of
        start_time_sec); frames decode from the keyframe before it."""
        first = min(d.timeline_span[0] for d in self.devices if d.timeline_span is not None)
        target = first + round(t_sec * 1e9)
        if not self.start_ns <= target < self.end_ns:
            raise ValueError(f"seek to {t_sec} s: outside the window [{(self.start_ns - first) / 1e9:.3f}, "
                             f"{(self.end_ns - first) / 1e9:.3f}) s")
        with self._lock:
            self._seek = target

    def timeline_ns(self, serial: str, t_ns):
        """A device's times (its own clock, as callbacks give them) on the replay's timeline."""
        for device in self.devices:
            if device.serial == serial:
                return device.clock.to_timeline(t_ns)
        raise KeyError(f"no device {serial} in this replay")

    @property
    def progress(self) -> float:
        """How far the replay is through its window, 0 to 1."""
        return min(1.0, max(0.0, (self.position_ns - self.start_ns) / max(1, self.end_ns - self.start_ns)))

    @property
    def deliveries(self) -> dict[str, object]:
        """Each device's Delivery (counts of callbacks, errors, skipped frames), by serial."""
        return {d.serial: d.delivery for d in self.devices}

    def __enter__(self) -> ReplaySource:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the replay thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            for device in self.devices:
                if device.session.calibration_bytes is not None:
                    device.delivery.calibration(device.session.calibration_bytes)
            position = self.start_ns
            while not self._stop.is_set():
                position = self._play(position)
                if position is None:  # reached the window's end
                    if not self.config.loop or self._stop.is_set():
                        break
                    self.loops += 1
                    position = self.start_ns
                for device in self.devices:
                    device.delivery.reset()
        except Exception as exc:  # a session that became unreadable mid-replay
            self.error = exc
            print(f"replay stopped: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            for device in self.devices:
                device.session.close()

    def _play(self, position: int) -> int | None:
        """Deliver from `position` to the window's end; the new position after a seek, None at
        the end (or on stop)."""
        for device in self.devices:
            device.prime(position)
        anchor = (time.monotonic(), position)
        slice_start = position
        while slice_start < self.end_ns:
            length = FIRST_SLICE_NS if slice_start == position else SLICE_NS
            slice_end = min(slice_start + length, self.end_ns)
            rows = read_slice(self.devices, slice_start, slice_end, self.end_ns)
            if not len(rows.times):
                # A gap: time when no device has data (sessions of different recordings) is
                # skipped, by reading and by pacing alike.
                following = self._next_active(slice_end)
                if following > slice_end:
                    anchor = (anchor[0], anchor[1] + following - slice_end)
                slice_start = following
                continue
            # Plain lists: indexing numpy arrays row by row costs more than the callbacks' setup.
            parts = [rows.parts[p] for p in rows.part.tolist()]
            for t, (device, stream, prepared), i in zip(rows.times.tolist(), parts, rows.row.tolist(), strict=True):
                while True:  # until row k is due, or the replay is told otherwise
                    if self._seek is not None or self._stop.is_set() or not self._running.is_set():
                        moved = self._control()
                        if moved is not None:
                            return moved
                        if self._stop.is_set():
                            return None
                        anchor = (time.monotonic(), self.position_ns)  # resumed: pace from here
                    if self.speed == 0 or self._due(anchor, t):
                        break
                self.position_ns = t
                device.delivery.fire(stream, prepared.deliver(i))
            slice_start = slice_end
        for device in self.devices:
            device.delivery.finish()
        self.position_ns = self.end_ns
        return None

    def _next_active(self, t: int) -> int:
        """t if a device's session spans it, else the next start of one (or the window's end)."""
        spans = [d.timeline_span for d in self.devices if d.timeline_span is not None]
        if any(first <= t <= last for first, last in spans):
            return t
        return min([first for first, _ in spans if first > t] + [self.end_ns])

    def _control(self) -> int | None:
        """Wait while paused; a seek's target, if one was asked for."""
        while not self._running.is_set() and not self._stop.is_set():
            self._running.wait(TICK_S)
            if self._seek is not None:
                break
        with self._lock:
            target, self._seek = self._seek, None
        if target is not None:
            self.position_ns = target
        return target

    def _due(self, anchor: tuple[float, int], t: int) -> bool:
        """Sleep until timeline time t is due (True), or for one tick at most (False)."""
        wall, origin = anchor
        wait = wall + (t - origin) / 1e9 / self.speed - time.monotonic()
        if wait <= 0.0005:
            return True
        time.sleep(min(wait, TICK_S))
        return wait <= TICK_S


def create_replay_source(config: ReplaySourceConfig, stream_data) -> ReplaySource:
    """Start replaying config.filename (one session folder or a list) into stream_data (a
    StreamDataInterface, or with several sessions a factory called once per device). Raises
    ReplayError at once for a missing or malformed session or a bad option."""
    return ReplaySource(config, stream_data)
