"""Accepting connections on a listener, for every server in the process (HTTP and RTMP alike)."""

from __future__ import annotations

import errno
import math

import trio

from .console import say

# accept() failing with one of these means the process or the machine is out of something a
# connection needs (file descriptors, buffer memory): it passes once connections close, so it
# is waited out. Any other error is a bug or a broken listener, and is raised.
# (trio's own serve_listeners treats the same errors the same way.)
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
CAPACITY_RETRY_S = 0.1
# While accept keeps failing for capacity, the console says so at most this often.
CAPACITY_REPORT_INTERVAL_S = 10.0


def peer_name(stream: trio.SocketStream) -> str:
    try:
        address = stream.socket.getpeername()
    except OSError:
        return "?"
    if not isinstance(address, tuple):  # a Unix socket's peer has no address
        return "local"
    return f"{address[0]}:{address[1]}"


def listener_name(listener: trio.SocketListener) -> str:
    try:
        host, port = listener.socket.getsockname()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


async def accept_forever(listener: trio.SocketListener, nursery: trio.Nursery, handle, wrap=None,
                         accept=None) -> None:
    """Start handle(stream, remote) in `nursery` for every connection (`wrap` the stream first,
    e.g. in TLS), each taken by `accept(listener)` (default: as it comes)."""
    last_report = -math.inf
    while True:
        try:
            stream = await (listener.accept() if accept is None else accept(listener))
        except OSError as exc:
            if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            now = trio.current_time()
            if now - last_report >= CAPACITY_REPORT_INTERVAL_S:
                last_report = now
                say(f"cannot accept connections on {listener_name(listener)}: {exc.strerror or exc} "
                    f"(out of file descriptors or memory); new connections wait until some close")
            await trio.sleep(CAPACITY_RETRY_S)
            continue
        nursery.start_soon(handle, wrap(stream) if wrap is not None else stream, peer_name(stream))
