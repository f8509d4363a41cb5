"""Accepting connections: out of file descriptors, the server says so and goes on once some
close; any other accept error is raised instead of being retried forever in silence."""

from __future__ import annotations

import errno
import os
import resource
import socket

import trio
from server_support import ServerProcess, get

from recorder.listeners import accept_forever


async def wait_for_output(server: ServerProcess, text: str, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while text not in server.output:
            await trio.sleep(0.05)


async def test_out_of_file_descriptors_is_said_on_the_console_and_passes(tmp_path):
    # One process that accepts, whose descriptor limit the test lowers (with --workers, each
    # worker is such a process).
    server = await ServerProcess(tmp_path / "data", tmp_path / "serve.log", args=("--workers", "1")).start()
    clients: list[socket.socket] = []
    pid = server.process.pid
    try:
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        # Room for two more connections, then accept() fails with EMFILE.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 2, hard))
        for _ in range(6):
            clients.append(socket.create_connection(("127.0.0.1", server.port)))
        await wait_for_output(server, "cannot accept connections on 127.0.0.1")
        assert "Too many open files" in server.output
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        for client in clients:
            client.close()
        with trio.fail_after(10):
            assert (await get(server.url, "/healthz")).status == 200
        assert server.process.poll() is None
    finally:
        for client in clients:
            client.close()
        await server.aclose()


async def test_an_accept_error_that_is_no_shortage_is_raised():
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    # A listening socket shut down makes accept() fail with EINVAL (Linux): a broken listener,
    # which no amount of waiting mends.
    listener.socket.shutdown(socket.SHUT_RDWR)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(5):
            try:
                await accept_forever(listener, nursery, handle=None)
            except OSError as exc:
                assert exc.errno == errno.EINVAL
            else:
                raise AssertionError("accept_forever returned")
    await listener.aclose()
