"""A scratch ext4 filesystem whose power can be cut: the test's data folder lives on it.

A sparse image file is attached to a loop device, formatted ext4 and mounted. cut_power() shuts
the filesystem down with EXT4_IOC_SHUTDOWN and its NOLOGFLUSH flag, as xfstests' power-failure
tests do (`godown`, `xfs_io -x -c shutdown`): from that instant nothing more reaches the device,
neither the page cache's dirty data nor the journal's uncommitted transactions, and every later
write or fsync fails with EIO. Unmounting and mounting again replays the journal: the filesystem
then holds what was durable at the cut (fsync'd or fdatasync'd, or written back by the kernel on
its own before it), which is what a power cut would have left. dm-flakey's drop_writes would do
the same a layer lower, but needs device-mapper in the kernel; this needs only a loop device.

The mount options keep the kernel from making anything durable sooner than it is asked to:
commit=600 (ext4 otherwise commits its journal every 5 s, making un-fsynced metadata such as a
rename durable on its own) and noauto_da_alloc (ext4 otherwise writes a file's data out when it
is renamed over another, which would hide a missing fsync before a rename). Dirty data waits
30 s for writeback (vm.dirty_expire_centisecs), longer than a test round.

Needs root, util-linux (losetup, mount) and e2fsprogs (mkfs.ext4): unavailable() says what is
missing, and the tests skip with that reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32); XFS_IOC_GOINGDOWN is the same request
SHUTDOWN_NOLOGFLUSH = 2  # EXT4_GOING_FLAGS_NOLOGFLUSH: uncommitted journal transactions are dropped too
MOUNT_OPTIONS = "commit=600,noauto_da_alloc"
COMMANDS = ("losetup", "mkfs.ext4", "mount", "umount")


class Unavailable(Exception):
    """This machine cannot give the test a filesystem to cut the power of."""


def run(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{command[0]}: {exc}") from exc
    if done.returncode:
        raise Unavailable(f"`{' '.join(command)}` exited with {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why there can be no scratch filesystem here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "power cuts need root (a loop device, mkfs.ext4 and mount)"
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        return f"power cuts need {', '.join(missing)} (util-linux, e2fsprogs)"
    return None


def holders(folder: Path) -> list[str]:
    """The processes with a file, or their working folder, under `folder` (as fuser -m finds)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = [proc / "cwd", *(proc / "fd").iterdir()]
            paths = {os.readlink(link) for link in links if link.is_symlink()}
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # gone meanwhile, or not ours to look at
        held = sorted(p for p in paths if p == str(folder) or p.startswith(f"{folder}/"))
        if held:
            found.append(f"pid {proc.name} ({command[:120]}): {', '.join(held[:3])}")
    return found


class ScratchFilesystem:
    def __init__(self, image: Path, mountpoint: Path, size_mb: int = 512):
        self.image = image
        self.mountpoint = mountpoint
        self.size_mb = size_mb
        self.device: str | None = None
        self.mounted = False

    def attach(self) -> ScratchFilesystem:
        """The image as a loop device (Unavailable if the kernel or container offers none)."""
        with open(self.image, "wb") as f:
            f.truncate(self.size_mb << 20)  # sparse: costs the disk only what is written
        self.device = run("losetup", "--find", "--show", str(self.image)).strip()
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        return self

    def format(self) -> None:
        """A fresh, empty ext4 (the lazy options leave initialising its tables to the kernel)."""
        run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", self.device)

    def mount(self) -> None:
        run("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, self.device, str(self.mountpoint))
        self.mounted = True

    def unmount(self, patience_s: float = 10.0) -> None:
        """Unmount, waiting out a process that still holds a file there for a moment (one
        finishing its exit); after that, say which processes hold it."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                run("umount", str(self.mountpoint))
                break
            except Unavailable as exc:
                if "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise Unavailable(f"{exc}; held by {holders(self.mountpoint) or 'no process found'}") from exc
                time.sleep(0.2)
        self.mounted = False

    def cut_power(self) -> None:
        """From now on nothing reaches the device: what is not durable yet never will be."""
        fd = os.open(self.mountpoint, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", SHUTDOWN_NOLOGFLUSH))
        except OSError as exc:
            raise Unavailable(f"the filesystem shutdown ioctl failed: {exc}") from exc
        finally:
            os.close(fd)

    def close(self) -> None:
        """Unmount (lazily, if something still holds a file there) and let the loop device go."""
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, timeout=60)
            self.mounted = False
        if self.device is not None:
            subprocess.run(["losetup", "-d", self.device], capture_output=True, timeout=60)
            self.device = None
