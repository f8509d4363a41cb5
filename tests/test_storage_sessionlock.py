"""A session folder is written by one process at a time, and a killed writer never leaves it
locked: another process (a worker of `recorder serve --workers N`, or a second server on the
same data folder) gets SessionBusy while the writer lives, and the session, recovered, once it
is gone."""

import signal
import subprocess
import sys
import time

import pytest

from recorder import open_session
from recorder.sim import make_fleet
from recorder.storage import Store
from recorder.storage.sessionlock import SessionBusy
from recorder.wire import Decoder

HOLDER = """
import sys, time
from recorder.storage import Store
from recorder.wire import Decoder
serial, session_id, root = sys.argv[1:4]
body = sys.stdin.buffer.read()
writer = Store(root).open_writer(serial, session_id)
writer.begin_request({"device-serial": serial, "session-id": session_id}, "10.0.0.9:1", time.time_ns())
writer.write(Decoder().feed(body))
writer.flush()
print("open", flush=True)
time.sleep(600)
"""


@pytest.fixture
def device():
    return make_fleet(1, seed=71)[0]


def test_a_session_written_by_another_process_is_busy_until_that_process_dies(tmp_path, device):
    body = device.window(0.0, 1.0)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, device.serial, device.session_id, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        holder.stdin.write(body)
        holder.stdin.close()
        assert holder.stdout.readline() == b"open\n"
        store = Store(tmp_path)
        with pytest.raises(SessionBusy, match="being written by another process"):
            store.open_writer(device.serial, device.session_id)
        # Not left open by a crash: being recorded. Recovery leaves it alone.
        assert store.recover_all() == []
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        # The kernel dropped the lock with the process: the session is recovered and continued.
        reports = store.recover_all()
        assert [r.path for r in reports] == [store.session_path(device.serial, device.session_id)]
        writer = store.open_writer(device.serial, device.session_id)
        writer.begin_request(device.headers(), "10.0.0.9:2", time.time_ns())
        writer.write(Decoder().feed(device.window(1.0, 2.0)))
        writer.close()
    finally:
        holder.kill()
        holder.wait()
    with open_session(store.session_path(device.serial, device.session_id)) as session:
        assert session.manifest["state"] == "finished"
        assert session.manifest["highest_sequence"] == device.records_sent - 1


def test_a_closed_writer_lets_another_process_open_the_session(tmp_path, device):
    writer = Store(tmp_path).open_writer(device.serial, device.session_id)
    writer.close()
    again = Store(tmp_path).open_writer(device.serial, device.session_id)  # a second Store: another process's view
    again.close()
