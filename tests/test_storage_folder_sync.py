"""New names are made durable as POSIX asks: after a session folder, a stream folder, a live file
or a blob file is created, the folder holding its name is fsynced before the flush that first
writes it returns (ext4 and XFS keep such names in order anyway, so a power cut on them does not
show the difference: the fsyncs themselves are observed here)."""

import os
import time

from recorder.sim import make_fleet
from recorder.storage import Store
from recorder.wire import Decoder


def test_every_new_name_has_its_folder_fsynced(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    device = make_fleet(1, seed=91, profile="mp_streaming_demo")[0]
    writer = Store(tmp_path).open_writer(device.serial, device.session_id)
    session = writer.path
    assert str(session.parent) in synced and str(tmp_path) in synced  # the device and session folders' names
    writer.begin_request(device.headers(), "10.0.0.1:1", time.time_ns())
    writer.write(Decoder().feed(device.window(0.0, 1.0)))
    synced.clear()
    writer.flush()
    streams = [p for p in session.iterdir() if p.is_dir()]
    assert streams
    for folder in streams:  # its live (and blob) files' names, and its own name in the session folder
        assert str(folder) in synced, folder.name
    assert str(session) in synced
    synced.clear()
    writer.write(Decoder(highest_sequence=writer.highest_sequence).feed(device.window(1.0, 2.0)))
    writer.flush()
    assert not [p for p in synced if p in map(str, streams)]  # no new names: no folder fsync
    writer.close()
