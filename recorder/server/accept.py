"""Accepting connections on a listener, for the HTTP and the RTMP servers alike."""

from __future__ import annotations

import trio


def peer_name(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


async def accept_forever(listener: trio.SocketListener, nursery: trio.Nursery, handle, wrap=None) -> None:
    """Start handle(stream, remote) in `nursery` for every connection (`wrap` the stream first,
    e.g. in TLS)."""
    while True:
        try:
            stream = await listener.accept()
        except OSError:
            await trio.sleep(0.1)  # e.g. out of file descriptors: do not spin
            continue
        remote = peer_name(stream)
        nursery.start_soon(handle, wrap(stream) if wrap is not None else stream, remote)
