"""A full disk while five devices stream over TLS to `recorder serve`, whose data folder is on a
small tmpfs: each device is answered 507 with a message that says the disk is full, nothing
stored before is lost or damaged, the console names every session the full disk stopped, and
each session's manifest records the storage errors and when its recording resumed. The devices
retry as glasses do (reconnect, resend from before what the recorder lacks, then the rest),
refused while the disk stays full; once another program's file is deleted they go on, with no
restart and nothing else done, and every session ends holding each record exactly once."""

from __future__ import annotations

import errno
import signal
import time

import numpy as np
import trio
from crash_support import assert_every_file_opens, window_starts
from disk_support import mounted_tmpfs, take_free_space
from server_support import (
    PERIOD,
    ServerProcess,
    assert_folders_read_as_datasets,
    assert_json_error,
    assert_session_equals,
    make_windows,
    session_folders,
    stream_until_answered,
)
from storage_support import expected_from

from recorder.sim.fleet import make_fleet

MIB = 1 << 20
DEVICES = 5
PROFILE = "mp_streaming_demo"  # some 0.4 MB/s stored per device
WINDOWS = 15  # 3 s per device, paced in real time: the disk fills after about 1 s of it
DISK = "16m"
OTHER_PROGRAM_MIB = 14  # another program's file: what is left fills in seconds, deleting it frees room
RETRY_S = 0.3  # a refused device tries again this long after


def first_missing_window(held: np.ndarray, starts: list[int]) -> int:
    """The window holding the first record the session lacks (len(starts) - 1 if none)."""
    missing = np.setdiff1d(np.arange(starts[-1], dtype=np.uint64), held)
    if not len(missing):
        return len(starts) - 1
    return int(np.searchsorted(starts, int(missing[0]), side="right")) - 1


async def test_five_devices_on_a_full_disk_get_507_and_resume_when_space_returns(tmp_path, certs_dir):
    fleet = make_fleet(DEVICES, seed=41, profile=PROFILE)
    windows = {device.serial: make_windows(device, WINDOWS) for device in fleet}
    starts = {serial: window_starts(w) for serial, w in windows.items()}
    with mounted_tmpfs(tmp_path / "disk", DISK) as disk:
        other_program = disk / "other-program.bin"
        other_program.write_bytes(b"\1" * (OTHER_PROGRAM_MIB * MIB))
        data_dir = disk / "data"
        server = ServerProcess(data_dir, tmp_path / "serve.log", certs_dir=certs_dir)
        await server.start()
        ssl_context = server.ssl_context
        try:
            # The five stream in real time until the recorder answers: 507, the disk is full.
            first_replies = {}

            async def stream(device):
                first_replies[device.serial] = await stream_until_answered(
                    server.url, ssl_context, device.headers(), windows[device.serial], pace=PERIOD)

            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    for device in fleet:
                        nursery.start_soon(stream, device)
            for device in fleet:
                reply, sent = first_replies[device.serial]
                assert_json_error(reply, 507, "disk is full")
                assert sent < WINDOWS, (device.serial, sent)
            take_free_space(disk / "filler")  # what the failed writes left, another program takes

            # What is stored on the full disk reads whole, and is kept through all that follows.
            held = assert_every_file_opens(data_dir, "on the full disk", recovered=False)
            paths = {device.serial: data_dir / device.serial / device.session_id for device in fleet}
            assert set(held) == set(paths.values()), sorted(held)
            stored = {serial: held[path] for serial, path in paths.items()}
            assert all(len(s) for s in stored.values()), "every device had something stored before the disk filled"

            # The devices retry as glasses do: reconnect, resend from a little before the first
            # record the recorder lacks, then send the rest. Refused while the disk is full; once
            # space is freed (nothing else done) they go on.
            refused_again = {device.serial: 0 for device in fleet}
            last_replies = {}
            freed_at_ns = None

            async def retry(device):
                serial = device.serial
                while True:
                    resume = max(0, first_missing_window(stored[serial], starts[serial]) - 2)
                    reply, _ = await stream_until_answered(server.url, ssl_context, device.headers(),
                                                           windows[serial][resume:])
                    if reply.status != 507:
                        last_replies[serial] = (reply, resume)
                        return
                    assert_json_error(reply, 507, "disk is full")
                    assert freed_at_ns is None or time.time_ns() - freed_at_ns < 5e9, (serial, "still refused")
                    refused_again[serial] += 1
                    await trio.sleep(RETRY_S)

            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    for device in fleet:
                        nursery.start_soon(retry, device)
                    while min(refused_again.values()) < 2:
                        await trio.sleep(0.05)
                    freed_at_ns = time.time_ns()
                    other_program.unlink()
                    (disk / "filler").unlink()
            assert server.process.poll() is None, server.output

            for device in fleet:
                reply, resume = last_replies[device.serial]
                what = (device.serial, resume, reply.body[:300])
                assert reply.status == 200 and reply.json["status"] == "ok", what
                assert reply.json["gaps"] == 0, what
                assert reply.json["highest_sequence"] == device.records_sent - 1, what
                assert reply.json["records"] + reply.json["resends"] == (
                    device.records_sent - starts[device.serial][resume]), what
            server.send_signal(signal.SIGTERM)
            assert await server.wait() == 0, server.output[-3000:]
        finally:
            await server.aclose()

        # Every session holds every record its device sent, exactly once and as sent, in files
        # that read whole; what the full disk held is still there.
        assert set(session_folders(data_dir)) == set(paths.values())
        final = assert_every_file_opens(data_dir, "after the resends", recovered=True)
        for device in fleet:
            path = paths[device.serial]
            assert not len(np.setdiff1d(stored[device.serial], final[path])), device.serial
            manifest = assert_session_equals(path, expected_from(windows[device.serial]),
                                             records=device.records_sent)
            assert manifest["state"] == "finished", device.serial
            assert manifest["counters"]["gaps"] == 0, device.serial
            assert_folders_read_as_datasets(path)

            # The manifest says what happened: storage errors, the disk full, when it resumed.
            errors = manifest["storage_errors"]
            assert errors is not None, device.serial
            assert errors["errno"] == errno.errorcode[errno.ENOSPC], errors
            assert errors["count"] >= 1 + refused_again[device.serial], (errors, refused_again[device.serial])
            assert 1 <= errors["stops"] <= errors["count"], errors
            assert errors["first_wall_time_ns"] <= errors["last_wall_time_ns"] < freed_at_ns + 5e9, errors
            assert errors["resumed_wall_time_ns"] is not None, ("recording resumed, and the manifest says when", errors)
            assert freed_at_ns <= errors["resumed_wall_time_ns"], (errors, freed_at_ns)
            assert errors["last_wall_time_ns"] <= errors["resumed_wall_time_ns"], errors
            assert len(str(errors)) < 400, "a small summary, not a list of every error"

    # The console says the disk was full, for which sessions, and that each went on.
    lines = server.output.splitlines()
    for device in fleet:
        about = [line for line in lines if device.serial in line and device.session_id in line]
        assert any("disk is full" in line for line in about), (device.serial, server.output[-3000:])
        assert any("finished session" in line and "disk was full" in line and "resumed at" in line
                   for line in about), (device.serial, server.output[-3000:])
    assert "Traceback" not in server.output, server.output

