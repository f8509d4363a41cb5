"""`recorder serve`: the process that runs the two ingest paths side by side, the HTTP server
devices stream to and the RTMP server glasses publish to. It owns what they share: the data
folder (checked, and unfinished sessions recovered, before anything listens), the listeners and
their TLS, the signals, one /status for both, and a clean shutdown of both."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import ssl
from pathlib import Path

import trio

from . import certs, tokens
from .rtmp import console as rtmp_console
from .rtmp import status as rtmp_status
from .rtmp.config import RtmpConfig
from .rtmp.service import RtmpService
from .server import console
from .server.app import Recorder
from .server.config import ServerConfig
from .server.feed import FeedHub
from .server.status import StatusSource


class ConfigurationError(Exception):
    """The process cannot start as configured; the message says what to do."""


def check_data_dir(folder: Path) -> None:
    """Create the data folder if it is missing and prove a file can be written there: a folder
    the recorder cannot write to must stop it now, not fail the first device that connects."""
    probe = Path(folder) / f".write-test-{os.getpid()}"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(f"cannot write to the data folder {folder}: {exc.strerror or exc} "
                                 f"(choose another --data-dir, or make this one writable)") from None


# TLS 1.2 suites offered by the recorder: forward secret key exchange (ECDHE) and AEAD ciphers
# only. Left out are RSA key exchange, CBC suites (with SHA-1 or SHA-256 MACs), 3DES, RC4 and
# anything unauthenticated: what a TLS scanner's defaults flag as weak. TLS 1.3 suites (all AEAD)
# are OpenSSL's own and are not touched by this string.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def check_tokens_file(path: Path) -> None:
    """A token file the server cannot read stops it now: with --tokens, a server that let every
    device in, or none, because of a typo would be worse than one that does not start."""
    if not Path(path).exists():
        raise ConfigurationError(f"the token file {path} does not exist: make tokens with "
                                 f"`recorder tokens add --file {path} --serial <serial>` (or drop --tokens)")
    try:
        tokens.read_file(path)
    except tokens.TokenFileError as exc:
        raise ConfigurationError(str(exc)) from None


def server_ssl_context(config: ServerConfig, *, verify_clients: bool | None = None) -> ssl.SSLContext:
    """The TLS of the HTTPS (and RTMPS) port: the server's certificate, TLS 1.2 or later, the
    strong suites above; with verify_clients, a device certificate signed by root_ca.pem."""
    folder = config.certs_dir
    cert, key, ca = folder / certs.SERVER, folder / certs.SERVER_KEY, folder / certs.CA
    missing = [p.name for p in (cert, key) if not p.exists()]
    if missing:
        raise ConfigurationError(f"{', '.join(missing)} not found in {folder}: run `recorder certs init "
                                 f"--dir {folder}` or copy the streaming certificates there (or use --plain-http)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    if config.verify_clients if verify_clients is None else verify_clients:
        if not ca.exists():
            raise ConfigurationError(f"--verify-clients needs {ca}")
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def serve(config: ServerConfig, store, *, rtmp: RtmpConfig | None = None, feed: FeedHub | None = None,
                handle_signals: bool = True, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run until SIGINT or SIGTERM (or cancellation); task_status gets the HTTP server's port.
    `rtmp` None (or with no port) leaves the RTMP server off. `feed`: the hub the live feed
    goes through, for subscribers in this process (recorder.sdk.RecorderServer).
    `handle_signals` False: run until cancelled (signals can only be received on the main thread)."""
    await trio.to_thread.run_sync(check_data_dir, config.data_dir)
    context = server_ssl_context(config) if config.tls else None
    if config.tokens_file is not None:
        check_tokens_file(config.tokens_file)
    recovered = await trio.to_thread.run_sync(store.recover_all)
    for report in recovered:
        console.recovered(report)
    rtmp_service = await _recovered_rtmp(rtmp, config)
    sources = [] if rtmp_service is None else [StatusSource(
        "rtmp", functools.partial(rtmp_status.status, rtmp_service),
        functools.partial(rtmp_status.metric_families, rtmp_service))]
    recorder = Recorder(config, store, status_sources=sources, feed=feed)
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    try:
        rtmp_endpoints = await _open_rtmp_listeners(rtmp, config) if rtmp_service is not None else []
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    rtmp_listeners = [listener for listener, _ in rtmp_endpoints]
    port = listeners[0].socket.getsockname()[1]
    scheme = "https" if context else "http"
    protection = (("client certificates required" if config.verify_clients else "TLS") if context
                  else "plain HTTP, no TLS")
    if config.tokens_file is not None:
        protection += f", device and reader tokens from {config.tokens_file}"
    console.listening(f"{scheme}://{config.host}:{port}", config.data_dir, protection)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) if handle_signals else _no_signals() as signals:
        # Connections live in a nursery of their own, beside the servers': stopping the servers
        # stops the accepting, while the connections go on until each server has shut down in
        # good order (answered them, written what they sent).
        async with trio.open_nursery() as connections:
            try:
                async with trio.open_nursery() as servers:
                    await servers.start(recorder.serve, listeners, connections, context)
                    if rtmp_service is not None:
                        await servers.start(rtmp_service.serve, rtmp_endpoints, connections)
                    task_status.started(port)
                    async for _ in signals:
                        break
                    servers.cancel_scope.cancel()
            finally:
                # However we stop (signal or cancellation), what was received is written and
                # every open session is finalised.
                with trio.CancelScope(shield=True):
                    for listener in [*listeners, *rtmp_listeners]:
                        await listener.aclose()
                    if rtmp_service is not None:
                        await rtmp_service.shutdown()
                    await recorder.shutdown()
                recorder.release_connections()
                connections.cancel_scope.cancel()


@contextlib.contextmanager
def _no_signals():
    async def never():
        await trio.sleep_forever()
        yield

    yield never()


async def _recovered_rtmp(settings: RtmpConfig | None, config: ServerConfig) -> RtmpService | None:
    """The RTMP service, its unfinished recordings recovered; None if it is off."""
    if settings is None or not (settings.port or settings.tls_port):
        return None
    if settings.tls_port and not config.tls:
        raise ConfigurationError("--rtmps-port needs the server's certificate; drop --plain-http")
    service = RtmpService(settings, config.data_dir)
    await service.recover_all()
    return service


async def _open_rtmp_listeners(settings: RtmpConfig, config: ServerConfig) -> list:
    """The RTMP listeners as (listener, wrap): rtmp:// plain, rtmps:// in TLS with the server's
    certificate (never asking glasses for one of theirs)."""
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
    return endpoints
