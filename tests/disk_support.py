"""A small disk for the tests of a full disk: a tmpfs mounted on a folder (we run as root in CI),
and a way to take its last free bytes as another program on the disk would."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str):
    """A tmpfs of `size` (as mount takes it: "8m") on `folder`, unmounted afterwards; skips the
    test where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def take_free_space(path: Path) -> int:
    """Write zeros to `path` until the disk refuses more; returns how many bytes it took."""
    taken = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while written := os.write(fd, b"\0" * 4096):
            taken += written
    except OSError:
        pass
    finally:
        os.close(fd)
    return taken
