"""File operations whose order matters for crash safety.

A file that must appear whole (a Parquet part, the manifest) is written under a temporary name,
fsynced, renamed over its final name, and its folder fsynced: after a crash either the old or
the new file is there, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

# What a system says when it cannot fsync a folder at all (Windows cannot open one, some
# filesystems refuse fsync on one): a rename there is as durable as the system makes it.
CANNOT_SYNC_FOLDERS = frozenset({errno.EACCES, errno.EPERM, errno.EISDIR, errno.EINVAL, errno.EBADF,
                                 errno.ENOTSUP, errno.EOPNOTSUPP})


def fsync_dir(folder: Path) -> None:
    """Make a rename or creation in `folder` durable (a no-op where folders cannot be synced).
    Any other error, EIO above all, is raised: the rename may not be on disk, and must not pass
    for durable (the server would answer 200 for it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        if exc.errno in CANNOT_SYNC_FOLDERS:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in CANNOT_SYNC_FOLDERS:
            raise
    finally:
        os.close(fd)


def replace_durably(temp: Path, final: Path, *, sync: bool = True) -> None:
    """Rename a written and closed temp file over `final`."""
    if sync:
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(temp, final)
    if sync:
        fsync_dir(final.parent)


def write_atomically(path: Path, data: bytes, *, sync: bool = True) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    _write_and_rename(open(temp, "wb"), temp, path, data, sync)


def write_atomically_into(room: Path, path: Path, data: bytes, *, sync: bool = True) -> None:
    """write_atomically, through `room`: a file whose blocks were allocated beforehand. On a
    full disk, room freed first and written after can be taken in between by any other writer;
    writing into blocks already held, then renaming, cannot lose it. Without `room`, as
    write_atomically."""
    try:
        f = open(room, "r+b")
    except FileNotFoundError:
        write_atomically(path, data, sync=sync)
        return
    _write_and_rename(f, room, path, data, sync)


def _write_and_rename(f, written: Path, path: Path, data: bytes, sync: bool) -> None:
    """`data` as the whole of the open file `f` (the file at `written`), then renamed to `path`."""
    with f:
        f.write(data)
        f.truncate(len(data))  # a room is longer than what it holds
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(written, path)
    if sync:
        fsync_dir(path.parent)


def write_all(fd: int, data: bytes) -> None:
    """os.write() until all of `data` is written (one call unless the kernel writes short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def truncate_durably(path: Path, size: int, *, sync: bool = True) -> None:
    """Cut a file after `size` bytes (a crash's torn end), durably when sync."""
    with open(path, "r+b") as f:
        f.truncate(size)
        if sync:
            os.fsync(f.fileno())


def append_line(path: Path, line: bytes, *, sync: bool = True) -> None:
    """One write() call with O_APPEND: a crash leaves the line whole or cut at the end, never
    interleaved; readers skip a cut last line. A write that fails (a full disk takes part of
    the line, then refuses the rest) takes its part back, or the next line would be glued to it
    and lost with it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            write_all(fd, line)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
