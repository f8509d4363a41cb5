"""A full disk while five devices stream over TLS to `recorder serve`, whose data folder is on a
small tmpfs: each device is answered 507 with a message that says the disk is full, nothing
stored before is lost or damaged, the console names every session the full disk stopped, and
each session's manifest records the storage errors and when its recording resumed. The devices
retry as glasses do (reconnect, resend from a little before what the recorder said it holds,
then the rest), refused while the disk stays full; once another program's file is deleted they
go on, with no restart and nothing else done, and every session ends holding each record exactly
once. The server runs with its default workers (one per core): a retry that reaches another
worker has the session handed over, on the full disk too. A sixth
device keeps its request open through it all, sending nothing while the disk is full (so it has
nothing waiting to be written, and no 507), and then goes on in the same request."""

from __future__ import annotations

import errno
import json
import os
import signal
import time

import numpy as np
import pyarrow as pa
import pytest
import trio
from crash_support import assert_every_file_opens, window_starts
from disk_support import mounted_tmpfs, take_free_space
from server_support import (
    PERIOD,
    ServerProcess,
    assert_json_error,
    assert_session_equals,
    make_windows,
    session_folders,
    stored_sequences,
    stream_until_answered,
)
from storage_support import expected_from

from recorder import open_session
from recorder.sim import sender
from recorder.sim.fleet import make_fleet
from recorder.storage.files import append_line
from recorder.storage.livefile import LiveFile, read_complete

MIB = 1 << 20
DEVICES = 5
PROFILE = "mp_streaming_demo"  # some 0.4 MB/s stored per device
WINDOWS = 20  # 4 s per device, paced in real time: the disk fills after about 2 s of it
DISK = "20m"
OTHER_PROGRAM_MIB = 16  # another program's file: what is left fills in seconds, deleting it frees room
RETRY_S = 0.3  # a refused device tries again this long after
QUIET_WINDOWS = 2  # what the sixth device sends before it pauses with its request open


def window_after(highest_sequence: int | None, starts: list[int]) -> int:
    """The window holding the record after `highest_sequence` (0 for None)."""
    if highest_sequence is None:
        return 0
    return int(np.searchsorted(starts, highest_sequence + 1, side="right")) - 1


def committed_sequence(path) -> int | None:
    """The highest sequence the session's manifest says is stored, all below it too (what a
    200 answers; a device that had none resends from its start)."""
    with open_session(path) as reader:
        return reader.manifest["highest_sequence"]


def stored_records(path) -> int:
    """Records the session folder holds now (0 before it has a manifest)."""
    if not (path / "session.json").exists():
        return 0
    with open_session(path) as reader:
        return len(stored_sequences(reader))


async def keep_request_open(url, ssl_context, device, windows, space_freed: trio.Event, replies: dict,
                            *, task_status=trio.TASK_STATUS_IGNORED):
    """Send the first windows, then nothing, the request and its connection open, until space is
    freed; then the rest, in the same request."""
    conn = await sender.Connection.open(sender.Target.parse(url), ssl_context)
    try:
        await conn.start("/", device.headers())
        for body in windows[:QUIET_WINDOWS]:
            await conn.send(body)
        task_status.started()
        await space_freed.wait()
        for body in windows[QUIET_WINDOWS:]:
            await conn.send(body)
        replies[device.serial] = await conn.finish()
    finally:
        await conn.aclose()


async def stream_until_refused(url, ssl_context, device, windows, replies: dict) -> None:
    replies[device.serial] = await stream_until_answered(url, ssl_context, device.headers(), windows, pace=PERIOD)


async def retry_until_taken(url, ssl_context, device, windows, starts, committed, refused: dict,
                            replies: dict) -> None:
    """As glasses do: reconnect, resend from a little before what the recorder has not said it
    holds, then the rest; after a 507, again a moment later."""
    resume = max(0, window_after(committed, starts) - 1)
    while True:
        reply, _ = await stream_until_answered(url, ssl_context, device.headers(), windows[resume:])
        if reply.status != 507:
            replies[device.serial] = (reply, resume)
            return
        assert_json_error(reply, 507, "disk is full")
        refused[device.serial] += 1
        await trio.sleep(RETRY_S)


def assert_reply_took_the_rest(payload: dict, device, starts, resume: int) -> None:
    """The 200 of a request that sent windows[resume:]: every record new or a resend, no gap."""
    what = (device.serial, resume, payload)
    assert payload["status"] == "ok", what
    assert payload["gaps"] == 0, what
    assert payload["highest_sequence"] == device.records_sent - 1, what
    assert payload["records"] + payload["resends"] == device.records_sent - starts[resume], what


async def test_five_devices_on_a_full_disk_get_507_and_resume_when_space_returns(tmp_path, certs_dir):
    fleet = make_fleet(DEVICES + 1, seed=41, profile=PROFILE)
    quiet = fleet.pop()
    everyone = [*fleet, quiet]
    windows = {device.serial: make_windows(device, WINDOWS) for device in everyone}
    starts = {serial: window_starts(w) for serial, w in windows.items()}
    disk = tmp_path / "disk"
    data_dir = disk / "data"
    paths = {device.serial: data_dir / device.serial / device.session_id for device in everyone}
    with mounted_tmpfs(disk, DISK):
        other_program = disk / "other-program.bin"
        other_program.write_bytes(b"\1" * (OTHER_PROGRAM_MIB * MIB))
        server = ServerProcess(data_dir, tmp_path / "serve.log", certs_dir=certs_dir)
        await server.start()
        url, ssl_context = server.url, server.ssl_context
        space_freed, quiet_replies = trio.Event(), {}
        try:
            async with trio.open_nursery() as quiet_one:
                await quiet_one.start(keep_request_open, url, ssl_context, quiet, windows[quiet.serial],
                                      space_freed, quiet_replies)
                with trio.fail_after(10):  # its windows stored (what waited 0.5 s) before the disk fills
                    while stored_records(paths[quiet.serial]) < starts[quiet.serial][QUIET_WINDOWS]:
                        await trio.sleep(0.1)

                # The five stream in real time until the recorder answers: 507, the disk is full.
                first_replies = {}
                with trio.fail_after(20):
                    async with trio.open_nursery() as nursery:
                        for device in fleet:
                            nursery.start_soon(stream_until_refused, url, ssl_context, device,
                                               windows[device.serial], first_replies)
                for device in fleet:
                    reply, sent = first_replies[device.serial]
                    assert_json_error(reply, 507, "disk is full")
                    assert sent < WINDOWS, (device.serial, sent)
                take_free_space(disk / "filler")  # what the failed writes left, another program takes

                # What is stored on the full disk reads whole, and is kept through all that follows.
                held = assert_every_file_opens(data_dir, "on the full disk", recovered=False)
                assert set(held) == set(paths.values()), sorted(held)
                assert all(len(held[paths[device.serial]]) for device in fleet), "each had some stored"
                committed = {device.serial: committed_sequence(paths[device.serial]) for device in fleet}

                # The five retry, refused while the disk is full; once space is freed (nothing
                # else done) they go on, and so does the sixth in its open request.
                refused_again = {device.serial: 0 for device in fleet}
                last_replies = {}
                with trio.fail_after(30):
                    async with trio.open_nursery() as nursery:
                        for device in fleet:
                            nursery.start_soon(retry_until_taken, url, ssl_context, device, windows[device.serial],
                                               starts[device.serial], committed[device.serial],
                                               refused_again, last_replies)
                        while min(refused_again.values()) < 2:
                            await trio.sleep(0.05)
                        freed_at_ns = time.time_ns()
                        other_program.unlink()
                        (disk / "filler").unlink()
                        space_freed.set()
            assert server.process.poll() is None, server.output

            for device in fleet:
                reply, resume = last_replies[device.serial]
                assert reply.status == 200, (device.serial, reply.body[:300])
                assert_reply_took_the_rest(reply.json, device, starts[device.serial], resume)
            status, reply = quiet_replies[quiet.serial]
            assert status == 200, reply
            assert_reply_took_the_rest(reply, quiet, starts[quiet.serial], 0)
            server.send_signal(signal.SIGTERM)
            assert await server.wait() == 0, server.output[-3000:]
        finally:
            await server.aclose()

        # Every session holds every record its device sent, exactly once and as sent, in files
        # that read whole; what the full disk held is still there.
        assert set(session_folders(data_dir)) == set(paths.values())
        final = assert_every_file_opens(data_dir, "after the resends", recovered=True)
        manifests = {}
        for device in everyone:
            path = paths[device.serial]
            assert not len(np.setdiff1d(held[path], final[path])), (device.serial, "lost what the full disk held")
            manifest = manifests[device.serial] = assert_session_equals(
                path, expected_from(windows[device.serial]), records=device.records_sent)
            assert manifest["state"] == "finished", device.serial
            assert manifest["counters"]["gaps"] == 0, device.serial
            for line in (path / "requests.jsonl").read_bytes().splitlines():
                json.loads(line)  # no line cut short by the full disk, nor another glued to it

    # The manifest says what happened: storage errors, the disk full, when recording resumed.
    for device in fleet:
        errors = manifests[device.serial]["storage_errors"]
        assert errors is not None, device.serial
        assert errors["errno"] == errno.errorcode[errno.ENOSPC], errors
        # At least the first 507; a retry refused by a worker that could not yet open the session
        # (recovering it failed on the full disk) is no writer's error, and not counted.
        assert 1 <= errors["stops"] <= errors["count"] <= 1 + refused_again[device.serial], errors
        assert errors["first_wall_time_ns"] <= errors["last_wall_time_ns"], errors
        assert errors["resumed_wall_time_ns"] is not None, ("recording resumed, and the manifest says when", errors)
        assert errors["last_wall_time_ns"] <= errors["resumed_wall_time_ns"], errors
        assert freed_at_ns <= errors["resumed_wall_time_ns"], (errors, freed_at_ns)
        assert len(str(errors)) < 400, "a small summary, not a list of every error"
    assert manifests[quiet.serial]["storage_errors"] is None, "the sixth device never had a write refused"

    # The console says the disk was full, for which sessions, and that each went on.
    lines = server.output.splitlines()
    for device in fleet:
        about = [line for line in lines if device.serial in line and device.session_id in line]
        assert any("disk is full" in line for line in about), (device.serial, server.output[-3000:])
        assert any("finished session" in line and "disk was full" in line and "resumed at" in line
                   for line in about), (device.serial, server.output[-3000:])
    assert "Traceback" not in server.output, server.output


def test_a_live_file_write_the_full_disk_cuts_short_raises(tmp_path):
    """A raw file may write part of what it is given (a disk filling up takes what fits), and
    pyarrow does not look at the count: a batch cut short would pass for stored, and every
    batch after it would be unreadable. The live file writes it whole or raises."""
    schema = pa.schema([("data", pa.binary())])
    batch = pa.record_batch([pa.array([os.urandom(50_000)])], schema=schema)
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        live = LiveFile(disk / "live.arrows", schema)
        live.write(batch, sync=False)
        take_free_space(disk / "filler")
        with pytest.raises(OSError) as raised:
            live.write(batch, sync=False)
        assert raised.value.errno == errno.ENOSPC
        live.abandon()
        assert read_complete(disk / "live.arrows").num_rows == 1  # what was written reads whole


def test_a_line_the_full_disk_cuts_short_is_taken_back(tmp_path):
    """requests.jsonl is appended to: a line the disk took part of would have the next glued to
    it, and both would be lost to a reader."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        log = disk / "requests.jsonl"
        append_line(log, b'{"event": "begin"}\n', sync=False)
        take_free_space(disk / "filler")
        with pytest.raises(OSError) as raised:
            append_line(log, json.dumps({"event": "end", "padding": "x" * 10_000}).encode() + b"\n", sync=False)
        assert raised.value.errno == errno.ENOSPC
        assert log.read_bytes() == b'{"event": "begin"}\n'
