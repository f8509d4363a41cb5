"""Store: the data folder, one session folder per (device serial, session id).

open_writer() is called from worker threads, possibly for several sessions at once, so the
table of open sessions has a lock; each session's own calls are serialised by the server.
Across processes, a session folder is written (or recovered) only by the one holding its
SessionLock: opening a session another process writes raises SessionBusy.
"""

from __future__ import annotations

import threading
from pathlib import Path

from . import layout, manifest
from .compression import RawImageMode
from .files import fsync_dir
from .manifest import SessionState
from .recovery import RecoveryReport, needs_recovery, recover
from .session import SessionWriter
from .sessionlock import SessionBusy, SessionLock
from .stream import RollPolicy


class Store:
    """`roll_seconds` / `roll_bytes`: a stream's live part is finished into Parquet when it is
    this old or this big. `sync`: fsync on every flush (survives power loss, not only kill -9)."""

    def __init__(self, data_dir: Path, *, roll_seconds: float = 600.0, roll_bytes: int = 256 << 20,
                 sync: bool = True, blob_level: int | None = None, raw_images: str = "auto"):
        # Shared by every session this store writes; a server sets it saturated under load.
        self.raw_images = RawImageMode(raw_images)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        kwargs = {"raw_images": raw_images, **({} if blob_level is None else {"blob_level": blob_level})}
        self.policy = RollPolicy(seconds=roll_seconds, bytes=roll_bytes, sync=sync, **kwargs)
        self._lock = threading.Lock()
        self._open: dict[Path, SessionWriter] = {}

    def session_path(self, serial: str, session_id: str) -> Path:
        return self.data_dir / layout.check_name("device serial", serial) / layout.check_name("session id", session_id)

    def open_writer(self, serial: str, session_id: str) -> SessionWriter:
        """The session's writer: a new folder, or the existing one resumed (recovered first if a
        crash left it open). Opening a session that is already open here shares its writer; it
        is finished when the last opener closes it."""
        path = self.session_path(serial, session_id)
        while True:
            with self._lock:
                writer = self._open.get(path)
                if writer is None:
                    return self._open_new(path, serial, session_id)
                if writer.openers > 0:
                    writer.openers += 1
                    return writer
                finished = writer.finished_event
            finished.wait()  # its last opener is finishing it: resume once that is done

    def _open_new(self, path: Path, serial: str, session_id: str) -> SessionWriter:
        """Called with the lock held (a slow recovery here delays other opens: it is rare, since
        the server recovers everything when it starts). SessionBusy if another process writes
        the session."""
        existed = path.exists()
        path.mkdir(parents=True, exist_ok=True)
        if not existed and self.policy.sync:  # the new folders' names, durable before anything in them
            fsync_dir(path.parent)
            fsync_dir(path.parent.parent)
        folder_lock = SessionLock.acquire(path)
        try:
            if existed and needs_recovery(path):
                recover(path, sync=self.policy.sync)
            state = manifest.load(path) or SessionState(serial=serial, session_id=session_id)
            writer = SessionWriter(path, state, self.policy, release=self._release, on_close=self._closed,
                                   raw_images=self.raw_images)
        except BaseException:
            folder_lock.release()
            raise
        writer.folder_lock = folder_lock
        self._open[path] = writer
        return writer

    def _release(self, writer: SessionWriter) -> bool:
        """One opener closes the writer: True if it was the last (the writer then finishes)."""
        with self._lock:
            writer.openers -= 1
            return writer.openers <= 0

    def _closed(self, writer: SessionWriter) -> None:
        with self._lock:
            self._open.pop(writer.path, None)
        writer.folder_lock.release()
        writer.finished_event.set()

    def sessions(self) -> list[Path]:
        return layout.session_folders(self.data_dir)

    def unfinished(self) -> list[Path]:
        """Session folders a crash left open (not those this Store has open now)."""
        with self._lock:
            open_now = set(self._open)
        return [p for p in self.sessions() if p not in open_now and needs_recovery(p)]

    def recover_all(self) -> list[RecoveryReport]:
        """Recover every session a crash left open, but those another process is writing (it
        holds their lock: they are not left open, they are being recorded)."""
        reports = []
        for path in self.unfinished():
            try:
                folder_lock = SessionLock.acquire(path)
            except (SessionBusy, FileNotFoundError):
                continue
            with folder_lock:
                if needs_recovery(path):  # it may have been finished while we looked
                    reports.append(recover(path, sync=self.policy.sync))
        return reports
