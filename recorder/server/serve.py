"""`recorder serve`: TLS, listeners, signals, recovery of unfinished sessions, clean shutdown."""

from __future__ import annotations

import functools
import signal
import ssl

import trio

from .. import certs
from ..rtmp import console as rtmp_console
from ..rtmp.service import RtmpService
from . import console
from .accept import accept_forever
from .app import Recorder
from .config import ServerConfig


class ConfigurationError(Exception):
    """The server cannot start as configured; the message says what to do."""


def server_ssl_context(config: ServerConfig, *, verify_clients: bool | None = None) -> ssl.SSLContext:
    folder = config.certs_dir
    cert, key, ca = folder / certs.SERVER, folder / certs.SERVER_KEY, folder / certs.CA
    missing = [p.name for p in (cert, key) if not p.exists()]
    if missing:
        raise ConfigurationError(f"{', '.join(missing)} not found in {folder}: run `recorder certs init "
                                 f"--dir {folder}` or copy the streaming certificates there (or use --plain-http)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if config.verify_clients if verify_clients is None else verify_clients:
        if not ca.exists():
            raise ConfigurationError(f"--verify-clients needs {ca}")
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def serve(config: ServerConfig, store, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run until SIGINT or SIGTERM (or cancellation); task_status gets the bound port."""
    context = server_ssl_context(config) if config.tls else None
    recovered = await trio.to_thread.run_sync(store.recover_all)
    for report in recovered:
        console.recovered(report)
    recorder = Recorder(config, store)
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    try:
        rtmp, rtmp_endpoints = await _open_rtmp(config, recorder)
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    rtmp_listeners = [listener for listener, _ in rtmp_endpoints]
    port = listeners[0].socket.getsockname()[1]
    scheme = "https" if context else "http"
    console.listening(f"{scheme}://{config.host}:{port}", config.data_dir,
                      ("client certificates required" if config.verify_clients else "TLS") if context
                      else "plain HTTP, no TLS")

    # A connection must outlive a cancellation of serve() until shutdown() has answered it and
    # written what it received, as it does after a signal: each runs shielded, and is cancelled
    # by hand once shutdown() is done.
    connection_scopes: set[trio.CancelScope] = set()

    async def run_connection(stream, remote):
        with trio.CancelScope(shield=True) as scope:
            connection_scopes.add(scope)
            try:
                await recorder.handle_connection(stream, remote)
            finally:
                connection_scopes.discard(scope)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as connections:
            try:
                async with trio.open_nursery() as service:
                    wrap = (lambda stream: trio.SSLStream(stream, context, server_side=True)) if context else None
                    for listener in listeners:
                        service.start_soon(accept_forever, listener, connections, run_connection, wrap)
                    service.start_soon(recorder.housekeeping)
                    if rtmp is not None:
                        await service.start(rtmp.serve, rtmp_endpoints, connections)
                    task_status.started(port)
                    async for _ in signals:
                        break
                    service.cancel_scope.cancel()
            finally:
                # However we stop (signal or cancellation), what was received is written and
                # every open session is finalised.
                with trio.CancelScope(shield=True):
                    for listener in [*listeners, *rtmp_listeners]:
                        await listener.aclose()
                    if rtmp is not None:
                        await rtmp.shutdown()
                    await recorder.shutdown()
                for scope in list(connection_scopes):
                    scope.cancel()
                connections.cancel_scope.cancel()


async def _open_rtmp(config: ServerConfig, recorder: Recorder) -> tuple[RtmpService | None, list]:
    """The RTMP service, and its listeners as (listener, wrap): rtmp:// plain, rtmps:// in TLS
    with the server's certificate (never asking glasses for one of theirs)."""
    settings = config.rtmp
    if settings is None or not (settings.port or settings.tls_port):
        return None, []
    if settings.tls_port and not config.tls:
        raise ConfigurationError("--rtmps-port needs the server's certificate; drop --plain-http")
    service = recorder.rtmp = RtmpService(settings, config.data_dir)
    await service.recover_all()
    endpoints: list = []
    wrap_tls = None
    if settings.tls_port:
        tls = server_ssl_context(config, verify_clients=False)
        wrap_tls = functools.partial(trio.SSLStream, ssl_context=tls, server_side=True)
    for port, scheme, wrap in ((settings.port, "rtmp", None), (settings.tls_port, "rtmps", wrap_tls)):
        if not port:
            continue
        try:
            opened = await trio.open_tcp_listeners(port, host=settings.host)
        except OSError as exc:
            for listener, _ in endpoints:
                await listener.aclose()
            raise ConfigurationError(f"cannot listen for {scheme.upper()} on {settings.host}:{port}: "
                                     f"{exc.strerror or exc} (choose another --{scheme}-port, or 0 to turn it off)"
                                     ) from None
        endpoints += [(listener, wrap) for listener in opened]
        rtmp_console.listening(f"{scheme}://{settings.host}:{opened[0].socket.getsockname()[1]}", settings.policy.open)
    return service, endpoints
