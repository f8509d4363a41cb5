"""`recorder serve --workers N` gives each new connection to a worker with the fewest, so that
devices are spread evenly over the cores, and never waits for a worker that does not serve."""

from __future__ import annotations

import collections
import os
import resource
import signal
import socket
import time

import h11
import pytest
import trio
from server_support import assert_session_equals, device_session, make_windows, open_stream, read_response
from storage_support import expected_from
from test_server_workers import start_workers

from recorder import devicelink as sender
from recorder.server import balance
from recorder.server.balance import STALE_S, Board, LeastConnections, create_board
from recorder.sim.fleet import make_fleet

PROFILE = "mp_streaming_demo"
DEVICES = 10


class StatusReader:
    """GET /status again and again on one connection, which stays on the worker that took it."""

    def __init__(self, stream):
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def status(self) -> dict:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        await self.stream.send_all(self.conn.send(h11.Request(method="GET", target="/status",
                                                              headers=[("host", "127.0.0.1")])))
        await self.stream.send_all(self.conn.send(h11.EndOfMessage()))
        return (await read_response(self.stream, self.conn)).json

    async def connections_per_worker(self, total: int) -> list[int]:
        """Each worker's connections, once they are `total` in all."""
        with trio.fail_after(30):
            while True:
                workers = (await self.status())["workers"]
                counts = [w["connections"] for w in sorted(workers, key=lambda w: w["index"])]
                if len(counts) == 2 and sum(counts) == total:
                    return counts
                await trio.sleep(0.05)


async def test_devices_connecting_one_after_another_are_spread_evenly_over_two_workers(tmp_path, certs_dir):
    """However many devices have connected, the two workers have as many connections each, or
    one more. (One socket per worker, with the kernel spreading connections by a hash of their
    addresses, keeps to that for 10 devices about one time in 32.)"""
    fleet = make_fleet(DEVICES, seed=91, profile=PROFILE)
    windows = {device.serial: make_windows(device, 4) for device in fleet}
    server = await start_workers(tmp_path, certs_dir)
    connections = []
    try:
        reader = StatusReader(await open_stream(server.url, server.ssl_context))
        # Both workers serve, and the connections that checked the server's start are gone.
        readers = await reader.connections_per_worker(1)
        for n, device in enumerate(fleet, start=1):
            conn = await sender.Connection.open(sender.Target.parse(server.url), server.ssl_context)
            connections.append((conn, device))
            await conn.start("/", device.headers())
            await conn.send(windows[device.serial][0])
            counts = await reader.connections_per_worker(n + 1)  # and the reader's own
            assert max(counts) - min(counts) <= 1, (n, counts)
        # A connection counts from its accept; its session is listed once the worker has read
        # its headers and opened the session's files, a moment later.
        with trio.fail_after(30):
            while len(sessions := (await reader.status())["sessions"]) < len(fleet):
                await trio.sleep(0.05)
        assert sorted(s["device"] for s in sessions) == sorted(d.serial for d in fleet)
        per_worker = collections.Counter(s["worker"] for s in sessions)
        assert [per_worker[0], per_worker[1]] == [c - r for c, r in zip(counts, readers, strict=True)]
        for conn, device in connections:
            for window in windows[device.serial][1:]:
                await conn.send(window)
            status, reply = await conn.finish()
            assert status == 200, reply
        await reader.stream.aclose()
    finally:
        server.send_signal(signal.SIGINT)
        assert await server.wait(60) == 0
    for device in fleet:
        assert_session_equals(device_session(server.data_dir, device.serial), expected_from(windows[device.serial]))


def test_a_worker_takes_a_connection_while_it_has_no_more_than_any_worker_seen_serving(tmp_path):
    create_board(tmp_path, 3)
    first, second = (LeastConnections(Board(tmp_path), index) for index in (0, 1))
    board = Board(tmp_path)
    long_ago = time.monotonic_ns() - int(STALE_S * 1e9) - 1
    assert first.my_turn() and second.my_turn()
    first._add(1)
    assert not first.my_turn() and second.my_turn()
    assert first.started_worker_has_fewer()  # a connection the second leaves waiting, the first takes
    second._add(1)
    # The third has not started yet: at the server's start it is waited for, as if it had no
    # connection, until STARTING_S have passed; nobody takes its turn meanwhile.
    assert not first.my_turn() and not second.my_turn()
    assert not first.started_worker_has_fewer() and not second.started_worker_has_fewer()
    board.post(2, 0, long_ago)  # the time is up
    assert first.my_turn() and second.my_turn()
    second._add(1)
    assert first.my_turn() and not second.my_turn()
    # A worker last seen serving longer ago than STALE_S (hung, or dead) is passed over.
    first.posting = False
    board.post(0, 1, long_ago)
    assert second.my_turn()
    first.posting = True
    assert first.my_turn()  # it posts again: seen serving
    assert not second.my_turn()
    # One that stopped serving is passed over at once.
    first.stopped()
    assert second.my_turn()


class CountingBoard(Board):
    """The board, counting how often a worker reads it."""

    reads = 0

    def fewest(self, now_ns):
        self.reads += 1
        return super().fewest(now_ns)


async def test_an_idle_worker_reads_the_board_only_once_a_connection_comes(tmp_path, autojump_clock):
    """A worker waiting at its listener wakes only to post that it still serves: it does not
    read the board, let alone retry accept(), until a connection waits (idle, these wakeups
    were most of what a worker cost). Then it takes the connection in its turn."""
    create_board(tmp_path, 1)
    board = CountingBoard(tmp_path)
    worker = LeastConnections(board, 0)
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    accepted = []

    async def accept():
        accepted.append(await worker.accept(listener))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        posted = []
        for _ in range(5):
            await trio.sleep(balance.STALE_S)  # on the test's clock: no time passes
            posted.append(Board(tmp_path).fewest(time.monotonic_ns()))
        assert board.reads == 0
        assert posted == [(0, 0)] * 5  # seen serving all along, with no connection
        client = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
    assert board.reads >= 1 and worker.connections == 1 and len(accepted) == 1
    for stream in (*accepted, client, listener):
        await stream.aclose()


def test_a_waiting_connection_is_seen_on_a_listening_socket_whatever_its_descriptor():
    """The listening socket a worker inherits has a low descriptor, but a process with many
    files open may have one past 1023, which select() cannot watch."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    listener = socket.create_server(("127.0.0.1", 0))
    high = socket.socket(fileno=os.dup2(listener.fileno(), 2000))
    try:
        assert not balance._waiting(high)
        with socket.create_connection(listener.getsockname()):
            deadline = time.monotonic() + 5
            while not balance._waiting(high) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert balance._waiting(high)
    finally:
        high.close()
        listener.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
