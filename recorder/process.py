"""`recorder serve`: the process that runs the two ingest paths side by side, the HTTP server
devices stream to and the RTMP server glasses publish to. It owns what they share: the data
folder (checked, and unfinished sessions recovered, before anything listens), the listeners and
their TLS, the signals, one /status for both, and a clean shutdown of both."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import trio

from . import certs, tokens
from .rtmp import console as rtmp_console
from .rtmp import status as rtmp_status
from .rtmp.config import RtmpConfig
from .rtmp.service import RtmpService
from .server import console
from .server.app import Recorder
from .server.balance import Board, LeastConnections
from .server.config import ServerConfig
from .server.feed import FeedHub
from .server.peers import Peers, socket_path
from .server.status import StatusSource


class ConfigurationError(Exception):
    """The process cannot start as configured; the message says what to do."""


@dataclass(frozen=True)
class WorkerPlace:
    """This process is worker `index` of `count` (recorder serve --workers, see supervisor.py):
    it accepts on listening sockets it inherited, and answers the other workers on its socket
    in `run_dir`. Worker 0 also runs the RTMP server, on `rtmp_fds` (plain, TLS; -1: off)."""

    index: int
    count: int
    run_dir: Path
    http_fds: tuple[int, ...]
    rtmp_fds: tuple[int, int] = (-1, -1)
    limits: dict | None = None  # the server's overload limits, which this worker has a share of
    server_started_ns: int | None = None  # when the supervisor started (the server run began)

    def die_with_supervisor(self, supervisor_pid: int) -> None:
        """A worker ends with its supervisor, killed as it is: `kill -9` of the server's
        process is a crash of the whole server, whose workers would otherwise go on holding
        its port and its sessions."""
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != supervisor_pid:  # it died before the line above
            os._exit(1)


def inherited_listeners(fds) -> list[trio.SocketListener]:
    return [trio.SocketListener(trio.socket.from_stdlib_socket(socket.socket(fileno=fd))) for fd in fds]


async def worker_listener(place: WorkerPlace) -> trio.SocketListener:
    """The Unix socket the other workers ask this one on (server/peers.py)."""
    path = socket_path(place.run_dir, place.index)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a crashed worker's, before this one took its place
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(64)
    return trio.SocketListener(sock)


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
                handle_signals: bool = True, worker: WorkerPlace | None = None,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run until SIGINT or SIGTERM (or cancellation); task_status gets the HTTP server's port.
    `rtmp` None (or with no port) leaves the RTMP server off. `feed`: the hub the live feed
    goes through, for subscribers in this process (recorder.sdk.RecorderServer).
    `handle_signals` False: run until cancelled (signals can only be received on the main thread).
    `worker`: this process is one of several ingest workers (recorder serve --workers)."""
    if worker is not None and worker.index != 0:
        rtmp = None  # worker 0 runs it
    # Signals are taken from the start: a Ctrl+C while starting (recovering, opening the
    # listeners) stops the server in good order once it is up, not with KeyboardInterrupt.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) if handle_signals else _no_signals() as signals:
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
        peers = Peers(worker.run_dir, worker.index, worker.count, worker.limits) if worker is not None else None
        recorder = Recorder(config, store, status_sources=sources, feed=feed, peers=peers,
                            server_started_ns=worker.server_started_ns if worker is not None else None)
        listeners, worker_listeners, rtmp_endpoints = await _open_listeners(
            config, worker, rtmp if rtmp_service is not None else None)
        rtmp_listeners = [listener for listener, _ in rtmp_endpoints]
        port = listeners[0].socket.getsockname()[1]
        _say_listening(config, context, port, worker)

        # Connections live in a nursery of their own, beside the servers': stopping the servers
        # stops the accepting, while the connections go on until each server has shut down in
        # good order (answered them, written what they sent).
        balance = LeastConnections(Board(worker.run_dir), worker.index) if worker is not None else None
        async with trio.open_nursery() as connections:
            try:
                async with trio.open_nursery() as servers:
                    await servers.start(functools.partial(recorder.serve, listeners, connections, context,
                                                          worker_listeners=worker_listeners, balance=balance))
                    if rtmp_service is not None:
                        await servers.start(rtmp_service.serve, rtmp_endpoints, connections)
                    task_status.started(port)
                    async for _ in signals:
                        break
                    servers.cancel_scope.cancel()
            finally:
                # However we stop (signal or cancellation), what was received is written and
                # every open session is finalised.
                if balance is not None:
                    balance.stopped()
                with trio.CancelScope(shield=True):
                    for listener in [*listeners, *worker_listeners, *rtmp_listeners]:
                        await listener.aclose()
                    if rtmp_service is not None:
                        await rtmp_service.shutdown()
                    await recorder.shutdown()
                recorder.release_connections()
                connections.cancel_scope.cancel()


async def _open_listeners(config: ServerConfig, worker: WorkerPlace | None, rtmp: RtmpConfig | None):
    """The HTTP listeners (a worker's: inherited, and its socket for the other workers) and the
    RTMP endpoints (none if `rtmp` is None); none left open if one cannot be opened."""
    if worker is not None:
        listeners = inherited_listeners(worker.http_fds)
        worker_listeners = [await worker_listener(worker)]
    else:
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        worker_listeners = []
    try:
        rtmp_endpoints = await _open_rtmp_listeners(rtmp, config, worker) if rtmp is not None else []
    except BaseException:
        for listener in [*listeners, *worker_listeners]:
            await listener.aclose()
        raise
    return listeners, worker_listeners, rtmp_endpoints


def _say_listening(config: ServerConfig, context, port: int, worker: WorkerPlace | None) -> None:
    """What the server listens on, said once (by worker 0 of several)."""
    if worker is not None and worker.index != 0:
        return
    scheme = "https" if context else "http"
    protection = (("client certificates required" if config.verify_clients else "TLS") if context
                  else "plain HTTP, no TLS")
    if config.tokens_file is not None:
        protection += f", device and reader tokens from {config.tokens_file}"
    if worker is not None:
        protection += f"; {worker.count} ingest workers"
    console.listening(f"{scheme}://{config.host}:{port}", config.data_dir, protection)


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


async def _open_rtmp_listeners(settings: RtmpConfig, config: ServerConfig, worker: WorkerPlace | None = None) -> list:
    """The RTMP listeners as (listener, wrap): rtmp:// plain, rtmps:// in TLS with the server's
    certificate (never asking glasses for one of theirs). A worker's were opened for it."""
    endpoints: list = []
    wrap_tls = None
    if settings.tls_port:
        tls = server_ssl_context(config, verify_clients=False)
        wrap_tls = functools.partial(trio.SSLStream, ssl_context=tls, server_side=True)
    for position, (port, scheme, wrap) in enumerate(((settings.port, "rtmp", None),
                                                     (settings.tls_port, "rtmps", wrap_tls))):
        if not port:
            continue
        try:
            if worker is not None:
                opened = inherited_listeners([worker.rtmp_fds[position]])
            else:
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
