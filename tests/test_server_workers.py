"""`recorder serve --workers N`: ingest in several processes sharing one port over TLS. Devices
record whole whichever worker takes them; a session whose device reconnects to another worker
goes on there, one session, each record once; /status, /metrics and /feed of any worker show
every worker's devices; a worker killed with kill -9 is started again, its devices resend and
their sessions end whole, while the other worker's devices never notice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import h11
import pytest
import trio
from server_support import (
    ServerProcess,
    assert_session_equals,
    device_session,
    get,
    make_windows,
    post_on,
    post_windows,
    session_folders,
)
from storage_support import expected_from
from test_live_feed import SUBSCRIBER, assert_seen_is_stored, wait_for_subscribers

from recorder import devicelink as sender
from recorder import open_session
from recorder.bench.soak import proc_status_field
from recorder.devicelink import SendError
from recorder.sim.fleet import make_fleet
from recorder.supervisor import RUN_DIR_PREFIX

PROFILE = "mp_streaming_demo"
CUT_OFF = (OSError, trio.BrokenResourceError, ConnectionError, SendError)


async def start_workers(tmp_path, certs_dir, count: int = 2, *args) -> ServerProcess:
    server = ServerProcess(tmp_path / "data", tmp_path / "serve.log", certs_dir=certs_dir,
                           args=("--workers", str(count), *args))
    await server.start(timeout=60)
    return server


async def open_on_a_running_worker(server: ServerProcess, ssl_context="server") -> sender.Connection:
    """A connection that a running worker has taken. Each worker accepts on a socket of its own
    (SO_REUSEPORT): a connection the kernel gives a stopped worker waits in that worker's queue,
    so it is given up after a moment for another (another source port: maybe another worker)."""
    target = sender.Target.parse(server.url)
    context = server.ssl_context if ssl_context == "server" else ssl_context
    with trio.fail_after(60):
        while True:
            conn = None
            with trio.move_on_after(1.0):
                conn = await sender.Connection.open(target, context)
                await conn.stream.send_all(conn.h11.send(h11.Request(method="GET", target="/healthz",
                                                                     headers=[("host", "127.0.0.1")])))
                await conn.stream.send_all(conn.h11.send(h11.EndOfMessage()))
                status, _ = await conn.response()
                assert status == 200
                return conn
            if conn is not None:
                await conn.aclose()


async def worker_pids(server: ServerProcess) -> dict[int, int]:
    with trio.fail_after(30):
        while True:
            reply = await get(server.url, "/status", server.ssl_context)
            workers = {w["index"]: w["pid"] for w in reply.json.get("workers", [])}
            if len(workers) == 2:
                return workers
            await trio.sleep(0.1)


async def test_devices_on_two_workers_record_whole_and_any_worker_shows_them_all(tmp_path, certs_dir):
    fleet = make_fleet(4, seed=81, profile=PROFILE)
    server = await start_workers(tmp_path, certs_dir)
    try:
        pids = await worker_pids(server)
        assert len(set(pids.values())) == 2 and server.process.pid not in pids.values()
        sent = {}
        async with trio.open_nursery() as nursery:
            for device in fleet:
                sent[device.serial] = make_windows(device, 10)
                nursery.start_soon(post_windows, server.url, server.ssl_context, device.headers(), sent[device.serial])
        # Whichever worker answers, it shows all four sessions, each once, and both workers.
        for _ in range(4):
            status = (await get(server.url, "/status", server.ssl_context)).json
            assert sorted(s["device"] for s in status["sessions"]) == sorted(d.serial for d in fleet)
            assert sorted(w["index"] for w in status["workers"]) == [0, 1]
            assert sum(w["sessions"] for w in status["workers"]) == 4
            metrics = (await get(server.url, "/metrics", server.ssl_context)).body.decode()
            for device in fleet:
                assert metrics.count(f'recorder_session_receiving{{device="{device.serial}"') == 1
            assert "\nrecorder_sessions 4.0\n" in metrics
        # Resident memory as the server counts it: the workers' own, added up (read a moment
        # apart from /proc's, so within a tenth).
        resident = (await get(server.url, "/status", server.ssl_context)).json["memory"]["resident_bytes"]
        assert resident == pytest.approx(sum(proc_status_field(pid, "VmRSS") * 1024 for pid in pids.values()), rel=0.1)
        metrics = (await get(server.url, "/metrics", server.ssl_context)).body.decode()
        assert "\nrecorder_resident_bytes " in metrics and "\nrecorder_heap_released_bytes_total " in metrics
    finally:
        server.send_signal(signal.SIGINT)
        assert await server.wait(60) == 0
    for device in fleet:
        assert_session_equals(device_session(server.data_dir, device.serial), expected_from(sent[device.serial]))
    assert "all 2 workers stopped" in server.output


async def test_status_names_a_worker_that_does_not_answer(tmp_path, certs_dir):
    """Worker 1 stopped: worker 0's /status lists itself and names worker 1 as not answering,
    so that worker 1's sessions missing from it are not taken for none."""
    server = await start_workers(tmp_path, certs_dir)
    try:
        pids = await worker_pids(server)
        assert (await get(server.url, "/status", server.ssl_context)).json["workers_not_answering"] == []
        os.kill(pids[1], signal.SIGSTOP)
        try:
            conn = await open_on_a_running_worker(server)
            await conn.stream.send_all(conn.h11.send(h11.Request(method="GET", target="/status",
                                                                 headers=[("host", "127.0.0.1")])))
            await conn.stream.send_all(conn.h11.send(h11.EndOfMessage()))
            status, reply = await conn.response()
            await conn.aclose()
        finally:
            os.kill(pids[1], signal.SIGCONT)
        assert status == 200
        assert [w["index"] for w in reply["workers"]] == [0]
        assert reply["workers_not_answering"] == [1]
    finally:
        server.send_signal(signal.SIGTERM)
        assert await server.wait(60) == 0


async def test_a_session_continues_on_the_worker_its_device_reconnects_to(tmp_path, certs_dir):
    """SIGSTOP steers each connection (see open_on_a_running_worker): the first request goes to
    worker 0 and the second, on a new connection, to worker 1, which has worker 0 hand the
    session over (worker 0 is let go on once worker 1 has the connection)."""
    device = make_fleet(1, seed=82, profile=PROFILE)[0]
    windows = make_windows(device, 20)
    server = await start_workers(tmp_path, certs_dir)
    try:
        pids = await worker_pids(server)
        os.kill(pids[1], signal.SIGSTOP)
        try:
            conn = await open_on_a_running_worker(server)
        finally:
            os.kill(pids[1], signal.SIGCONT)
        status, reply = await post_on(conn, device.headers(), windows[:10])
        assert status == 200 and reply["records"] > 0
        os.kill(pids[0], signal.SIGSTOP)
        try:
            conn = await open_on_a_running_worker(server)
            async with trio.open_nursery() as nursery:
                answers = []

                async def second_request():
                    answers.append(await post_on(conn, device.headers(), windows[10:]))

                nursery.start_soon(second_request)
                await trio.sleep(1.0)  # worker 1 has the request and asks worker 0, which is stopped
                os.kill(pids[0], signal.SIGCONT)
        finally:
            os.kill(pids[0], signal.SIGCONT)
        [(status, reply)] = answers
        assert status == 200, reply
        assert reply["highest_sequence"] == device.records_sent - 1
        statuses = (await get(server.url, "/status", server.ssl_context)).json
        [session] = statuses["sessions"]  # one session, listed by the worker that has it now
        assert session["state"] == "waiting"
        assert statuses["finished_earlier"]["sessions"] == 0  # handed over, not finished earlier
    finally:
        server.send_signal(signal.SIGTERM)
        assert await server.wait(60) == 0
    [path] = session_folders(server.data_dir)
    manifest = assert_session_equals(path, expected_from(windows), records=device.records_sent)
    assert manifest["state"] == "finished"
    assert "handed over to another worker" in server.output


async def on_the_worker(server: ServerProcess, pids: dict[int, int], index: int) -> sender.Connection:
    """A connection that worker `index` has taken (the other one is stopped meanwhile)."""
    other = pids[1 - index]
    os.kill(other, signal.SIGSTOP)
    try:
        return await open_on_a_running_worker(server)
    finally:
        os.kill(other, signal.SIGCONT)


async def until_none_listed(server: ServerProcess) -> dict:
    with trio.fail_after(30):
        while (status := (await get(server.url, "/status", server.ssl_context)).json)["sessions"]:
            await trio.sleep(0.1)
    return status


async def test_a_session_that_left_one_worker_and_came_back_on_another_is_one_session_finished_earlier(
        tmp_path, certs_dir):
    """Finished and gone from worker 0's status, the session comes back on worker 1 (its folder
    free: no hand-over), finishes and goes again: the server counts one session, with all of it."""
    device = make_fleet(1, seed=83, profile=PROFILE)[0]
    windows = make_windows(device, 12)
    server = await start_workers(tmp_path, certs_dir, 2, "--session-grace", "0.2", "--keep-finished", "0.5")
    try:
        pids = await worker_pids(server)
        for index, part in ((0, windows[:6]), (1, windows[6:])):
            conn = await on_the_worker(server, pids, index)
            status, _ = await post_on(conn, device.headers(), part)
            assert status == 200
            status = await until_none_listed(server)
        assert status["finished_earlier"] == {"sessions": 1, "records": device.records_sent,
                                              "bytes": sum(map(len, windows))}
    finally:
        server.send_signal(signal.SIGTERM)
        assert await server.wait(60) == 0
    [path] = session_folders(server.data_dir)
    assert_session_equals(path, expected_from(windows), records=device.records_sent)


async def test_a_killed_worker_is_started_again_and_the_other_workers_devices_go_on(tmp_path, certs_dir):
    """Two devices, one steered to each worker; worker 1 is killed mid-request. Worker 0's device
    finishes its request untouched; the supervisor starts worker 1 again; the cut-off device
    resends everything (as glasses do when they cannot know what arrived) and its session
    ends whole, each record once."""
    steady, cut = make_fleet(2, seed=83, profile=PROFILE)
    steady_windows, cut_windows = make_windows(steady, 25), make_windows(cut, 25)
    server = await start_workers(tmp_path, certs_dir)
    try:
        pids = await worker_pids(server)
        results = {}

        async def send(conn, device, windows, key):
            try:
                results[key] = await post_on(conn, device.headers(), windows, pace=0.1)
            except CUT_OFF as exc:
                results[key] = exc

        async with trio.open_nursery() as nursery:
            # Each device's connection to its own worker: the other one is stopped while it connects.
            for device, windows, key, other in ((steady, steady_windows, "steady", 1), (cut, cut_windows, "cut", 0)):
                os.kill(pids[other], signal.SIGSTOP)
                try:
                    conn = await open_on_a_running_worker(server)
                finally:
                    os.kill(pids[other], signal.SIGCONT)
                nursery.start_soon(send, conn, device, windows, key)
            await trio.sleep(0.8)
            os.kill(pids[1], signal.SIGKILL)
        assert results["steady"][0] == 200 and results["steady"][1]["records"] > 0
        assert not isinstance(results["cut"], tuple), "the killed worker's device was answered"
        with trio.fail_after(60):
            while True:
                new = await worker_pids(server)
                if new[1] != pids[1]:
                    break
                await trio.sleep(0.2)
        assert new[0] == pids[0]  # the other worker never stopped
        status, reply = await post_windows(server.url, server.ssl_context, cut.headers(), cut_windows)
        assert status == 200, reply
        assert reply["highest_sequence"] == cut.records_sent - 1
    finally:
        server.send_signal(signal.SIGINT)
        assert await server.wait(60) == 0
    for device, windows in ((steady, steady_windows), (cut, cut_windows)):
        assert_session_equals(device_session(server.data_dir, device.serial), expected_from(windows),
                              records=device.records_sent)
    assert "worker 1 (pid" in server.output and "was killed by SIGKILL" in server.output


async def test_the_feed_of_any_worker_carries_every_workers_devices(tmp_path):
    """A subscriber in another process (the SDK's LiveSource, through GET /feed of whichever
    worker takes it) gets the stored values of devices recorded by either worker."""
    fleet = make_fleet(2, seed=84, profile="profile9")
    server = await ServerProcess(tmp_path / "data", tmp_path / "serve.log", args=("--workers", "2")).start(timeout=60)
    script, out = tmp_path / "subscriber.py", tmp_path / "seen.json"
    script.write_text(SUBSCRIBER)
    subscriber = await trio.lowlevel.open_process([sys.executable, str(script), server.url, str(out)],
                                                  stderr=subprocess.PIPE)
    try:
        pids = await worker_pids(server)
        await wait_for_subscribers(server.url, "http", 1)
        for device, other in zip(fleet, (1, 0), strict=True):
            os.kill(pids[other], signal.SIGSTOP)  # the device's connection goes to the other worker
            try:
                conn = await open_on_a_running_worker(server, ssl_context=None)
            finally:
                os.kill(pids[other], signal.SIGCONT)
            status, _ = await post_on(conn, device.headers(), make_windows(device, 10))
            assert status == 200
        with trio.fail_after(30):  # until the subscriber has taken every published batch of both
            while True:
                feed = (await get(server.url, "/status")).json["feed"]
                [reader] = [s for s in feed["subscribers"] if s["kind"] == "http"]
                taken = {serial: c["delivered_rows"] for serial, c in reader["devices"].items()}
                if taken == {serial: c["rows"] for serial, c in feed["published"].items()} and len(taken) == 2:
                    break
                await trio.sleep(0.1)
        server.send_signal(signal.SIGINT)
        assert await server.wait(60) == 0, server.output
        with trio.fail_after(60):
            assert await subscriber.wait() == 0, subscriber.stderr
    finally:
        if subscriber.returncode is None:
            subscriber.kill()
        await server.aclose()
    result = json.loads(out.read_text())
    assert result["error"] is None, result["error"]
    for device in fleet:
        with open_session(tmp_path / "data" / device.serial / device.session_id) as session:
            assert_seen_is_stored(result["seen"][device.serial], session)


async def test_the_run_folder_a_killed_server_left_is_removed_when_the_next_one_starts(tmp_path, certs_dir):
    def run_dirs(pid: int) -> list[Path]:
        return list(Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}{pid}-*"))

    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first = await start_workers(tmp_path / "first", certs_dir)
    await worker_pids(first)
    [left] = run_dirs(first.process.pid)
    first.process.kill()
    await first.wait(60)
    assert left.exists()  # nothing of a process killed with kill -9 cleans up after it
    second = await start_workers(tmp_path / "second", certs_dir)
    try:
        assert not left.exists()
        assert len(run_dirs(second.process.pid)) == 1  # its own is kept
    finally:
        second.send_signal(signal.SIGINT)
        assert await second.wait(60) == 0
    assert run_dirs(second.process.pid) == []
