"""`recorder serve --workers N`: ingest in N processes, one event loop each, on every core.

The supervisor opens the listening socket, then starts N workers (each `recorder serve` with the
same settings and --worker k/N) that all accept on it, each in its turn: a new connection goes to
a worker with the fewest connections (server/balance.py): at the start, once every worker is
up; while a worker is being started again, the others take every connection. A worker owns the
sessions its connections bring (their folders' locks, see storage/sessionlock.py); a device
that reconnects to another worker has its session handed over (server/peers.py). Any worker
answers /status, /metrics and /feed for all of them. The RTMP server runs in worker 0.

A worker that dies is started again at once: what it had received is on disk, its sessions are
recovered (by the new worker, or by whichever worker their devices reconnect to first), and the
other workers' devices go on recording meanwhile. SIGINT or SIGTERM stops every worker in good
order (each writes what it received and finalises its sessions) and then the supervisor.

The supervisor runs no event loop and no threads of its own: it only starts, watches and stops
processes, so nothing that a device sends can make it fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .console import say
from .server import console as server_console
from .server.balance import create_board
from .server.peers import summary_path

# How often the supervisor looks at its workers.
WATCH_INTERVAL_S = 0.2
# A worker that dies sooner than this after its start is started again only after this long:
# a worker that cannot start (a broken setting, a full disk) must not become a busy loop.
QUICK_DEATH_S = 2.0
# After a server was killed, its workers may hold the port for a moment while the kernel ends
# them: binding is retried this long.
BIND_RETRY_S = 5.0
LISTEN_BACKLOG = 1024
# The run folder of a supervisor (its workers' sockets, their board) is named after its pid.
RUN_DIR_PREFIX = "recorder-workers-"
WORKER_ENTRY = "from recorder.cli import main; main()"
# A worker learns its supervisor's pid from this, to die with it (process.WorkerPlace).
SUPERVISOR_PID_ENV = "RECORDER_SUPERVISOR_PID"
# ... and when the server started (time.time_ns()), as every worker of the run counts from it.
SERVER_STARTED_ENV = "RECORDER_SERVER_STARTED_NS"


def serve_with_workers(config, rtmp, store, workers: int, options: list[str], rtmp_secret: str | None) -> int:
    """recorder serve --workers N, `options` its command line's: what a crash left open is
    recovered, the listening sockets opened, then N workers started on them; the exit status.
    SIGINT and SIGTERM stop it in good order from the start: a Ctrl+C that comes while it is
    still starting (recovering, or waiting for its port) stops it before it serves."""
    from .process import check_tokens_file, server_ssl_context

    # The RTMP secret goes to the workers in their environment, not on a command line others can read.
    env = {**os.environ, SUPERVISOR_PID_ENV: str(os.getpid()), SERVER_STARTED_ENV: str(time.time_ns()),
           **({"RECORDER_RTMP_SECRET": rtmp_secret} if rtmp_secret else {})}
    supervisor = Supervisor(workers, env=env)
    with supervisor.stopped_by_signals():
        if config.tls:
            server_ssl_context(config)  # a setting every worker would die of stops the server now
        if config.tokens_file is not None:
            check_tokens_file(config.tokens_file)
        for report in store.recover_all():  # before anything listens, as with one process
            server_console.recovered(report)
        stopped = supervisor.is_stopping
        http = open_listener(config.host, config.port, stopped)  # the workers' in common
        rtmp_socks = [open_listener(rtmp.host, p, stopped) if p else None
                      for p in (rtmp.port, rtmp.tls_port)]  # worker 0's
        if stopped():
            say("stopped before serving: nothing was received")
            return 0

        def fds(index: int) -> list[int]:
            return [http.fileno(), *(s.fileno() for s in rtmp_socks if s is not None and index == 0)]

        def worker_argv(index: int, run_dir: str) -> list[str]:
            return ["serve", *options, "--worker", f"{index}/{workers}", "--worker-run-dir", run_dir,
                    "--worker-fds", str(http.fileno()),
                    "--worker-rtmp-fds", ",".join(str(s.fileno()) if s and index == 0 else "-1" for s in rtmp_socks)]

        return supervisor.run(worker_argv, fds)


def shared_out(config, count: int):
    """A worker's share of the server's limits (each worker counts its own connections)."""

    def share(limit: int) -> int:
        return -(-limit // count) if limit else 0

    return dataclasses.replace(config, max_connections=share(config.max_connections),
                               max_connections_per_address=share(config.max_connections_per_address),
                               max_memory_in_flight=share(config.max_memory_in_flight))


def open_listener(host: str, port: int, stopped=lambda: False) -> socket.socket | None:
    """A listening socket on `port`; None if `stopped()` turns true while the port is still taken."""
    deadline = time.monotonic() + BIND_RETRY_S
    told = False
    while True:
        try:
            return _listener(host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
            if not told:
                say(f"port {port} is in use; trying again for {BIND_RETRY_S:g} s")
                told = True
        if stopped():
            return None
        time.sleep(0.1)


def _listener(host: str, port: int) -> socket.socket:
    sock = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Starts `count` workers, watches them, and stops them on SIGINT or SIGTERM."""

    def __init__(self, count: int, env: dict[str, str] | None = None):
        self.count = count
        self.env = env
        self.worker_argv = self.fds = None
        self.run_dir = ""
        self.workers: dict[int, Worker] = {}
        self.stopping = False
        self.restarts = 0

    def start(self, index: int) -> None:
        process = subprocess.Popen([sys.executable, "-c", WORKER_ENTRY, *self.worker_argv(index, self.run_dir)],
                                   pass_fds=self.fds(index), env=self.env)
        self.workers[index] = Worker(index, process)
        if self.stopping:  # the signal came while it was being started: stop() did not see it
            process.send_signal(signal.SIGTERM)

    def stop(self, signum=None, frame=None) -> None:
        if self.stopping:
            return
        self.stopping = True
        if not self.workers:
            say("stopping (no worker started yet)")
            return
        say(f"stopping {len(self.workers)} workers (each writes what it received and finishes its sessions)")
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)

    def is_stopping(self) -> bool:
        return self.stopping

    @contextlib.contextmanager
    def stopped_by_signals(self):
        """SIGINT and SIGTERM stop the workers in good order (not KeyboardInterrupt) while inside."""
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def run(self, worker_argv, fds) -> int:
        """`worker_argv(index, run_dir)`: the command line of worker `index`; `fds(index)`: the
        descriptors it inherits (its listening sockets). Until every worker has stopped (inside
        stopped_by_signals: until SIGINT or SIGTERM); the exit status."""
        self.worker_argv, self.fds = worker_argv, fds
        remove_abandoned_run_dirs()
        self.run_dir = tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-")  # 0700: the workers' sockets
        create_board(Path(self.run_dir), self.count)
        try:
            for index in range(self.count):
                if self.stopping:  # stopped before every worker was started
                    break
                self.start(index)
            failed = self._watch()
            self.print_summary()
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        say(f"all {self.count} workers stopped" + (f"; {self.restarts} restarted after dying" if self.restarts else ""))
        return 1 if failed else 0

    def print_summary(self) -> None:
        """One final summary of every worker's sessions (each left its part in the run folder)."""
        rows: list[str] = []
        forgotten = {"sessions": 0, "records": 0, "bytes": 0}
        under_load = {"frames": 0, "bytes": 0}
        for index in range(self.count):
            try:
                part = json.loads(summary_path(Path(self.run_dir), index).read_text())
            except (OSError, ValueError):
                continue  # a worker that did not stop in good order: its sessions are recovered
            rows += part["rows"]
            for key in forgotten:
                forgotten[key] += part["forgotten"].get(key, 0)
            for key in under_load:
                under_load[key] += part.get("under_load", {}).get(key, 0)
        server_console.print_summary(rows, forgotten, under_load)

    def _watch(self) -> bool:
        failed = False
        waiting: dict[int, float] = {}  # worker index -> when to start it again
        while self.workers or (waiting and not self.stopping):
            time.sleep(WATCH_INTERVAL_S)
            now = time.monotonic()
            for index, worker in list(self.workers.items()):
                code = worker.process.poll()
                if code is None:
                    continue
                del self.workers[index]
                if self.stopping:
                    # A worker stopped by the signal itself had not yet begun to serve: it held nothing.
                    failed |= code not in (0, -signal.SIGTERM, -signal.SIGINT)
                    continue
                quick = now - worker.started < QUICK_DEATH_S
                say(f"worker {index} (pid {worker.process.pid}) {describe_exit(code)}; "
                    + ("starting it again in a moment" if quick else "starting it again")
                    + ": its sessions are recovered and go on when their devices reconnect")
                self.restarts += 1
                waiting[index] = now + (QUICK_DEATH_S if quick else 0.0)
            for index, when in list(waiting.items()):
                if self.stopping:
                    waiting.clear()
                elif now >= when:
                    del waiting[index]
                    self.start(index)
        return failed


def remove_abandoned_run_dirs() -> list[Path]:
    """Remove the run folders that supervisors killed with kill -9 (or by a power cut) left in
    the temporary folder, each named after its supervisor's pid: those whose process is gone."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*-*"):
        pid = path.name[len(RUN_DIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or path.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except PermissionError:
            pass  # another user's process has that pid now: not ours to judge
    return removed


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def default_count() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
