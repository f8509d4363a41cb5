"""The manifest of a session a full disk stopped learns of the storage error even while another
program takes every byte the disk frees: it is written into the room set aside for it."""

from __future__ import annotations

import subprocess
import sys
import time

from disk_support import mounted_tmpfs, take_free_space

from recorder import open_session
from recorder.storage.store import Store

SESSIONS = 64
GREEDY = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
block = bytes(4096)
print("ready", flush=True)
while True:
    try:
        os.write(fd, block)
    except OSError:
        pass
"""


def test_a_storage_error_reaches_the_manifest_while_another_program_takes_freed_space(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "8m") as disk:
        store = Store(disk / "data")
        writers = [store.open_writer("GREEDYDISK1", f"session-{i}") for i in range(SESSIONS)]
        take_free_space(disk / "filler")
        greedy = subprocess.Popen([sys.executable, "-c", GREEDY, str(disk / "greedy")], stdout=subprocess.PIPE)
        try:
            assert greedy.stdout.readline() == b"ready\n"
            time.sleep(0.1)
            refused = 0
            for k, writer in enumerate(writers):
                # What the last session's error gave back (its room, less its manifest) is taken
                # first, unless the other program was quicker: every write meets a full disk.
                take_free_space(disk / f"filler-{k}")
                try:
                    writer.begin_request({"x-device-serial": "GREEDYDISK1"}, "127.0.0.1", time.time_ns())
                    writer.flush()
                except OSError:
                    refused += 1
            assert refused == SESSIONS, "the full disk refused every session's write"
        finally:
            greedy.kill()
            greedy.wait()
        for writer in writers:
            with open_session(writer.path) as reader:
                errors = reader.manifest["storage_errors"]
            assert errors is not None and errors["errno"] == "ENOSPC", (writer.path.name, errors)
