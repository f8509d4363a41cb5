"""What the recorder's HTTP ingest costs beside peers that receive the same bodies and do less
with them, in one run.

    python -m recorder.bench.peers [--seconds 6] [--repeats 3] [--clients 1 4]
    python -m recorder.bench peers                (the same, as a section of make bench)

Method. One simulated profile9 device's body (profile9_windows: one sample per message) is sent
unpaced, as devices send it (one chunked POST per device, one chunk per window, each device on
its own connection, from the bench process), by 1 and by 4 devices at once, to each server:

    recorder                   `recorder serve`, as the ingest section starts it: decoded, stored
    uvicorn+httptools+uvloop   a tiny ASGI app that reads each body and discards it
    trio+h11                   a bare trio + h11 server (trio.SSLStream for TLS, as the recorder
                               does, with the recorder's receive size) that reads and discards
    http.server                the sample server of the project's seed: ThreadingHTTPServer with a
                               handler that reads chunked bodies and writes each to a file

each over TLS and over plain HTTP. Every TLS server uses the same certificate files (made by
recorder.certs, as recorder_serve makes them) and the devices' TLS context. Every server is a
subprocess of its own (the peers are this module run with --serve), started fresh for each
repeat and stopped after it, so that its CPU is read exactly as the recorder's: the process's
whole CPU (user and system, every thread, as its /proc entry counts it, but to the nanosecond
from its CPU clock, since /proc counts 10 ms ticks) from just before the devices start until the
last one was answered.
A run counts only if every device was answered 200 (as replay() checks): a server that failed is
reported as such, with no figure. The recorder's stored records are checked against its /status
(records lost are shown). Figures are MB/s of body received (the bodies' bytes
over the wall time from the first connection to the last answer) and server CPU seconds per GB
received, medians of REPEATS; each repeat runs every server in turn, so that a drift of the
machine weighs on all of them. The loopback TCP ceiling and the disk's write speed (fsync'd)
are measured in the same run.

Ratios: the recorder over TLS with 4 devices against uvicorn over TLS discarding (aims: at least
half its MB/s, at most 5 times its CPU per GB), and the devices the disk's write speed allows.
The sending side shares the machine's cores with the server under test, so MB/s is what one
machine does with both; CPU per GB is the server's alone.

The bound (bench/stages.py): the recorder's decoding and storing, each alone on one core on the
same body, plus this run's receiving (trio+h11 over TLS) and sending (this process's CPU per GB
while it sent to the recorder over TLS), give the MB/s the machine's cores carry if nothing but
those stages cost CPU, and the CPU per GB the cores can give all of them at the MB/s aim.

Figures (2-core VM shared with other work; --seconds 2, 3 repeats): MB/s with 1 and 4 devices,
CPU s per GB at 4: recorder TLS 31 and 39, 35; recorder plain 44 and 60, 27; uvicorn TLS 223
and 297, 1.8; uvicorn plain 947 and 908, 1.1; trio+h11 TLS 269 and 279, 3.5; http.server TLS
202 and 298, 1.7. The recorder over TLS takes 0.13 of uvicorn's MB/s for 20 times its CPU per
GB: neither aim is met. The disk (940 MB/s fsync'd) would allow 79 profile9 devices.
Since TLS is read in large pieces (server/tlsreads.py) and RAW images are stored filtered at
level 1, one run (same options): recorder TLS 41 and 76 MB/s, 20.9 s/GB; --workers 2 TLS 67
and 82, 18.4; uvicorn TLS 332 and 457, 2.1: 0.17 of uvicorn's MB/s (0.18 with two workers) for
9.9 (8.8) times its CPU per GB. Neither aim is met.
With connections shared out by least connections between the workers (server/balance.py) and
4 MiB coalesced per write, one run (--seconds 6, 3 repeats; `recorder serve` takes two workers
here, as the "--workers 2" row): recorder TLS 62 and 129 MB/s, 13.3 s/GB; --raw-images store
TLS 108 and 194, 7.7; uvicorn TLS 291 and 530, 1.86: 0.24 of uvicorn's MB/s for 7.2 times its
CPU per GB, and with --raw-images store 0.37 for 4.2 (that CPU aim met, the MB/s aim not).
With the decoding and writing on each worker's event loop thread (the flush in a thread), fewer
copies, zlib-ng's CRC and camera frames stepped over by the decoder, one run on a slower VM
(uvicorn TLS 332 MB/s at 4 clients where it took 530 before): recorder TLS 55 and 95 MB/s, 16.4
s/GB; --raw-images store TLS 77 and 115, 11.1; uvicorn TLS 183 and 332, 2.94: 0.29 of uvicorn's
MB/s for 5.6 times its CPU per GB, and with --raw-images store 0.35 for 3.8.
With --raw-images auto the default (RAW frames stored as they come while a worker's event loop
is saturated, server/loopload.py) and the CRC by zlib-ng for sample payloads too, one run on a
faster VM (uvicorn TLS 741 MB/s at 4 clients): recorder TLS 102 and 193 MB/s, 7.33 s/GB;
--raw-images store TLS 168 and 241, 5.51: 0.26 of uvicorn's MB/s for 5.5 times its CPU per GB,
and with store 0.32 for 4.1. A 4-client run lasts about 1.5 s here, of which auto needs half a
second of saturation before it stores frames as they come: it stays near compress's figures.
Two runs on one day, 40 minutes apart (6 s, 3 repeats; uvicorn TLS 576 and 651 MB/s at 4 clients):
recorder TLS 92 and 177 MB/s, 8.8 s/GB, then 108 and 211, 7.5; --raw-images store 159 and 163,
9.1, then 159 and 207, 7.0: 0.31 and 0.32 of uvicorn's MB/s for 5.2 and 5.4 times its CPU per
GB (store: 0.28 and 0.32 for 5.4 and 5.1). Fresh servers given only the 4 devices, the same
hour, moved from 216 to 312 MB/s (4.0 to 6.5 s/GB) with --raw-images store from one run to the
next, the connections split 2 and 2 every time: the machine's noise is larger than the gap the
aims leave. What the receiving costs at its barest, 4 clients sending 300 MB each over TLS 1.3
to a trio server that discards it: trio's SSLStream read as the recorder reads it (LargeReads,
decrypted_too) 1.27-1.42 s/GB; a non-blocking ssl.SSLSocket that OpenSSL reads straight from
the socket 1.13-1.31; with h11 parsing the chunked body on top, 1.71-1.87, and 1.63-1.79 with
every record decrypted into one buffer first. Most of the recorder's CPU per GB is after the
receiving: decoding, writing into the page cache (the kernel's copy alone was 16 % of the workers'
samples with RAW frames stored) and syncing.
With the bound (same VM, one run; uvicorn TLS 693 MB/s at 4 clients): recorder TLS 106 and 223
MB/s, 6.91 s/GB; --raw-images store 173 and 237, 6.11: 0.32 of uvicorn's MB/s for 4.9 times its
CPU per GB (store: 0.34 for 4.3). The stages alone: sending 1.19 s/GB, receiving 1.59, decoding
0.82, storing 1.41, together 5.01: 399 MB/s on the 2 cores, 0.58 of uvicorn's, where the aim
leaves 5.77 s/GB. So the stages alone leave room for the aim, and what the recorder pays beyond
them (3.1 s/GB in that run by default, 2.3 with RAW frames stored) is what keeps it
under. That extra moves with the machine: fresh servers given 4 devices with --raw-images store
took 4.3-4.4 s/GB at 296-309 MB/s (0.5-0.6 s/GB beyond that run's stages) in one quarter of
an hour, and 5.0-6.8 s/GB at 214-272 MB/s in the one before. The section again an hour later,
the VM slower (uvicorn TLS 496 MB/s): recorder TLS 76 and 170 MB/s, 8.91 s/GB: 0.34 of uvicorn's
MB/s for 4.5 times its CPU per GB (store: 0.38 for 4.2); the stages 6.59 s/GB together, 303
MB/s, 0.61 of uvicorn's.
Where the server's CPU goes, 4 devices, 6-s bodies over TLS, each worker's loop thread timed
around Decoder.feed_pieces and SessionWriter.write, and its threads around flush(), from the
first decode to the last (three runs, --raw-images store): decoding 1.13-1.14 s/GB, writing
1.23-1.28, flushing 0.42-0.51, the rest of the loop (receiving: trio, TLS, h11) 1.33-1.48, and
some 0.6-0.8 around that span (sessions starting and ending). By default, RAW frames compressed
until the loops count as saturated, writing took 2.39-2.75. So the receiving costs what the bare
trio+h11 server pays, decoding 1.4-2 times what it costs alone, storing 1.2-1.5 times. In
those runs the sending took 1.5-1.6 s/GB and the server 4.8-5.1 in all (RAW frames stored):
6.3-6.7 s/GB, of which the 2 cores carry at most 300-320 MB/s (they carried 265-279), where the
aim asks for 250-350 as uvicorn's speed moved that day (496-700 MB/s).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import functools
import importlib.util
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import certs
from ..devicelink import describe as describe_error
from ..sim import sender
from ..supervisor import default_count
from . import stages
from .ingest import (
    PERIOD,
    Replayed,
    disk_write_speed,
    free_port,
    loopback_ceiling,
    own_cpu_seconds,
    process_tree,
    profile9_windows,
    recorder_serve,
    stored_records,
    stream_devices,
    wait_for,
)

SECONDS = 6.0
REPEATS = 3
CLIENTS = (1, 4)
CEILING_MB = 1024  # bytes through loopback and to disk for the ceilings
MIN_MB_PER_S_RATIO = 0.5  # the recorder over TLS should take at least half of what uvicorn takes
MAX_CPU_PER_GB_RATIO = 5.0  # ... for at most five times its CPU per GB
ANSWER = b'{"status": "ok"}'
_libc = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None

# `recorder serve --workers` as measured: one worker per core.
WORKERS = default_count()
# (server, TLS): the cells of the table, in the order printed.
SERVERS = [("recorder", True), ("recorder", False), ("recorder --workers", True), ("recorder --workers", False),
           ("recorder --raw-images store", True), ("uvicorn", True), ("uvicorn", False),
           ("trio+h11", True), ("trio+h11", False), ("http.server", True), ("http.server", False)]
LABELS = {"recorder": "recorder (stores)", "recorder --workers": f"recorder --workers {WORKERS} (stores)",
          "recorder --raw-images store": "recorder --raw-images store (stores)", "uvicorn": "uvicorn+httptools+uvloop (discards)",
          "trio+h11": "trio+h11 (discards)", "http.server": "http.server (writes to a file)"}
NEEDS = {"uvicorn": ("uvicorn", "httptools", "uvloop")}


def key(server: str, tls: bool) -> str:
    return f"{server} {'TLS' if tls else 'plain'}"


# -- the peers (each run as `python -m recorder.bench.peers --serve NAME`) ------------------------


def server_context(cert: str, key_file: str) -> ssl.SSLContext:
    """The server side of TLS as `recorder serve` makes it (recorder.process.server_ssl_context)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key_file)
    return context


async def discard_asgi(scope, receive, send) -> None:
    """Read the request's body to its end, keep none of it, answer 200."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]})
    await send({"type": "http.response.body", "body": ANSWER})


def serve_uvicorn(port: int, tls: tuple[str, str] | None) -> None:
    import uvicorn

    options = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
    uvicorn.run(discard_asgi, host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="off",
                access_log=False, log_level="warning", **options)


def serve_trio_h11(port: int, tls: tuple[str, str] | None) -> None:
    import h11
    import trio

    from ..server.config import ServerConfig

    # The recorder's own limits: its calibration header is tens of kilobytes, and it reads
    # this much at a time.
    config = ServerConfig()
    context = server_context(*tls) if tls else None

    async def discard(stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_header_bytes)
        try:
            if context is not None:
                stream = trio.SSLStream(stream, context, server_side=True)
                await stream.do_handshake()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(config.receive_bytes))
                elif isinstance(event, h11.EndOfMessage):
                    head = h11.Response(status_code=200, headers=[("content-type", "application/json"),
                                                                  ("content-length", str(len(ANSWER)))])
                    await stream.send_all(conn.send(head) + conn.send(h11.Data(data=ANSWER))
                                          + conn.send(h11.EndOfMessage()))
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass  # a client gone (or the bench's readiness probe) ends its connection, not the server
        finally:
            await trio.aclose_forcefully(stream)

    trio.run(functools.partial(trio.serve_tcp, discard, port, host="127.0.0.1"))


def serve_http_server(port: int, tls: tuple[str, str] | None, folder: Path) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class ChunkedToFile(BaseHTTPRequestHandler):
        """The seed's sample handler, fixed to read chunked bodies (as devices send them)."""

        protocol_version = "HTTP/1.1"
        piece = 1 << 20

        def copy(self, out, size: int) -> None:
            while size:
                data = self.rfile.read(min(size, self.piece))
                if not data:
                    raise ConnectionError("the body ended early")
                out.write(data)
                size -= len(data)

        def do_POST(self) -> None:
            with tempfile.NamedTemporaryFile(dir=folder, suffix=".body", delete=False) as out:
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    while size := int(self.rfile.readline(1 << 16).split(b";")[0], 16):
                        self.copy(out, size)
                        self.rfile.readline(1 << 16)  # the CRLF after the chunk
                    while self.rfile.readline(1 << 16).strip():
                        pass  # trailers, up to the empty line
                else:
                    self.copy(out, int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(ANSWER)))
            self.end_headers()
            self.wfile.write(ANSWER)

        def log_message(self, format, *args) -> None:
            pass  # a line per request would be the server's main work

    server = ThreadingHTTPServer(("127.0.0.1", port), ChunkedToFile)
    if tls:
        server.socket = server_context(*tls).wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def serve(name: str, port: int, tls: tuple[str, str] | None, folder: Path) -> None:
    if name == "uvicorn":
        serve_uvicorn(port, tls)
    elif name == "trio+h11":
        serve_trio_h11(port, tls)
    elif name == "http.server":
        serve_http_server(port, tls, folder)
    else:
        raise SystemExit(f"unknown server {name!r}")


# -- the bench's side ----------------------------------------------------------------------------


def missing(server: str) -> str | None:
    """Why a server cannot run here, or None."""
    absent = [m for m in NEEDS.get(server, ()) if importlib.util.find_spec(m) is None]
    return f"{', '.join(absent)} not installed (pip install -e '.[bench]')" if absent else None


def probe(port: int) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@contextlib.contextmanager
def peer_serve(name: str, folder: Path, *, tls: bool, cert_dir: Path):
    """A peer server as a subprocess on a free loopback port; yields (process, base URL, the
    client's SSL context or None) once it accepts connections; stopped on the way out."""
    port = free_port()
    folder.mkdir()
    args = [sys.executable, "-m", "recorder.bench.peers", "--serve", name, "--port", str(port), "--dir", str(folder)]
    ssl_context = None
    if tls:
        args += ["--tls", str(cert_dir / certs.SERVER), str(cert_dir / certs.SERVER_KEY)]
        ssl_context = sender.client_ssl_context(str(cert_dir / certs.CA))
    with open(folder.parent / f"{folder.name}.stderr", "wb") as errors:
        server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors)
    try:
        try:
            wait_for(f"the {name} server", lambda: probe(port), 30, server=server)
        except (RuntimeError, TimeoutError) as exc:
            said = (folder.parent / f"{folder.name}.stderr").read_text(errors="replace").strip().splitlines()
            raise RuntimeError(f"{exc}: {said[-1] if said else 'nothing on stderr'}") from None
        yield server, f"{'https' if tls else 'http'}://127.0.0.1:{port}", ssl_context
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextlib.contextmanager
def start(server: str, folder: Path, *, tls: bool, cert_dir: Path):
    if server.startswith("recorder"):
        # recorder_serve makes certificates under the folder only where there are none: these
        # are the files every other TLS server uses.
        folder.mkdir()
        if tls:
            shutil.copytree(cert_dir, folder / "certs")
        options = {"recorder --workers": ("--workers", str(WORKERS)),
                   "recorder --raw-images store": ("--raw-images", "store")}.get(server, ())
        with recorder_serve(folder, tls=tls, options=options) as started:
            yield started
    else:
        with peer_serve(server, folder, tls=tls, cert_dir=cert_dir) as started:
            yield started


def process_cpu_seconds(pid: int) -> float:
    """The same total as own_cpu_seconds (user and system, every thread, ended ones included), to
    the nanosecond: /proc/<pid>/stat counts in clock ticks (10 ms), and a fast peer takes a few MB
    in less than that. From the process's CPU clock; own_cpu_seconds where there is none."""
    clock = ctypes.c_int()
    if _libc is None or _libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
        return own_cpu_seconds(pid)
    return time.clock_gettime(clock.value)


def server_cpu_seconds(pid: int) -> float:
    """The server's CPU: its process's and its child processes' (recorder serve --workers)."""
    return sum(process_cpu_seconds(p) for p in process_tree(pid))


def send(process: subprocess.Popen, base: str, ssl_context, devices: list[Replayed]) -> dict:
    """Every device at once, unpaced; MB/s of body received, the server's CPU meanwhile and the
    sending side's (this process's)."""
    body_bytes = sum(sum(map(len, d.windows)) for d in devices)
    cpu_before, sending_before = server_cpu_seconds(process.pid), time.process_time()
    started = time.perf_counter()
    stream_devices(devices, f"{base}/", False, ssl_context)  # raises unless every answer was 200
    elapsed = time.perf_counter() - started
    cpu = server_cpu_seconds(process.pid) - cpu_before
    sending = time.process_time() - sending_before
    return {"clients": len(devices), "seconds": elapsed, "mb": body_bytes / 1e6, "mb_per_s": body_bytes / elapsed / 1e6,
            "server_cpu_s": cpu, "cpu_per_gb": cpu / (body_bytes / 1e9), "sending_cpu_per_gb": sending / (body_bytes / 1e9)}


def one_repeat(server: str, tls: bool, folder: Path, cert_dir: Path, clients, windows, records, headers) -> dict:
    """A fresh server taking each number of clients in turn (every device its own serial and
    session, so the recorder stores each afresh); {clients: figures}."""
    results = {}
    with start(server, folder, tls=tls, cert_dir=cert_dir) as (process, base, ssl_context):
        first = 0
        for n in clients:
            devices = [Replayed(windows, records, headers, first + i) for i in range(n)]
            first += n
            results[n] = send(process, base, ssl_context, devices)
            if server.startswith("recorder"):
                stored = stored_records(base, ssl_context)
                results[n]["lost_records"] = sum(max(0, records - stored.get(d.serial, 0)) for d in devices)
    return results


def measure(seconds: float = SECONDS, repeats: int = REPEATS, clients=CLIENTS, *, ceiling_mb: int = CEILING_MB,
            folder: Path = Path("."), on_run=None) -> dict:
    """Every server of SERVERS with each number of clients, `repeats` times; medians."""
    windows, records, headers = profile9_windows(seconds)
    data_seconds = len(windows) * PERIOD
    per_device = sum(map(len, windows)) / data_seconds / 1e6
    figures: dict = {"seconds": data_seconds, "repeats": repeats, "clients": list(clients),
                     "per_device_mb_per_s": per_device, "records_per_device": records, "servers": {}}
    runs: dict[str, list[dict]] = {key(s, tls): [] for s, tls in SERVERS}
    failed: dict[str, str] = {}
    for s, tls in SERVERS:
        if (why := missing(s)) is not None:
            failed[key(s, tls)] = f"not measured: {why}"
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        root = Path(tmp)
        certs.init(root / "certs")
        figures["loopback_mb_per_s"] = loopback_ceiling(ceiling_mb << 20)
        figures["disk_mb_per_s"] = disk_write_speed(root, ceiling_mb << 20)
        for k in range(repeats):
            for s, tls in SERVERS:
                name = key(s, tls)
                if name in failed:
                    continue
                try:
                    result = one_repeat(s, tls, root / f"{s.replace(' --', '-')}-{'tls' if tls else 'plain'}-{k}", root / "certs",
                                        clients, windows, records, headers)
                except Exception as exc:  # a peer that fails is reported, and the others go on
                    failed[name] = f"FAILED: {describe_failure(exc)}"
                    continue
                runs[name].append(result)
                if on_run:
                    on_run(name, result)
    for s, tls in SERVERS:
        name = key(s, tls)
        if name in failed:
            figures["servers"][name] = {"error": failed[name]}
            continue
        cells = {}
        for n in clients:
            cells[n] = {
                "mb_per_s": statistics.median(r[n]["mb_per_s"] for r in runs[name]),
                "cpu_per_gb": statistics.median(r[n]["cpu_per_gb"] for r in runs[name]),
                "sending_cpu_per_gb": statistics.median(r[n]["sending_cpu_per_gb"] for r in runs[name]),
                "runs": [r[n] for r in runs[name]],
            }
            if s.startswith("recorder"):
                cells[n]["lost_records"] = sum(r[n]["lost_records"] for r in runs[name])
        figures["servers"][name] = {"server": s, "tls": tls, "clients": cells}
    figures["ratios"] = ratios(figures, max(clients))
    figures["ratios_workers"] = ratios(figures, max(clients), recorder="recorder --workers TLS")
    figures["ratios_raw_images_stored"] = ratios(figures, max(clients), recorder="recorder --raw-images store TLS")
    figures["devices_the_disk_allows"] = figures["disk_mb_per_s"] / per_device
    figures["stages"] = stages.measure(seconds, folder=folder)
    figures["bound"] = stages_bound(figures, max(clients))
    return figures


def stages_bound(figures: dict, clients: int) -> dict | None:
    """stages.bound with this run's receiving (trio+h11 over TLS, discarding) and sending (to the
    recorder over TLS) at `clients` clients, as a share of uvicorn's MB/s over TLS; None where a
    cell it needs was not measured."""
    def cell(name: str) -> dict | None:
        return figures["servers"].get(name, {}).get("clients", {}).get(clients)

    receiving, sending, uvicorn = cell("trio+h11 TLS"), cell("recorder TLS"), cell("uvicorn TLS")
    if not receiving or not sending:
        return None
    found = stages.bound(figures["stages"], receiving_s_per_gb=receiving["cpu_per_gb"],
                         sending_s_per_gb=sending["sending_cpu_per_gb"])
    found["clients"] = clients
    found["of_uvicorn_tls"] = found["mb_per_s"] / uvicorn["mb_per_s"] if uvicorn else None
    # What the cores can give to all the stages together at the aim's MB/s.
    found["aim_s_per_gb"] = found["cores"] / (MIN_MB_PER_S_RATIO * uvicorn["mb_per_s"] / 1e3) if uvicorn else None
    return found


def describe_failure(exc: BaseException) -> str:
    """The first real error inside trio's exception groups, in the devices' words."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {describe_error(exc)}"


def ratios(figures: dict, clients: int, recorder: str = "recorder TLS") -> dict:
    """The recorder over TLS against uvicorn over TLS discarding, at `clients` clients (None
    where either was not measured)."""
    recorder = figures["servers"].get(recorder, {}).get("clients", {}).get(clients)
    peer = figures["servers"].get("uvicorn TLS", {}).get("clients", {}).get(clients)
    if not recorder or not peer:
        return {"clients": clients, "mb_per_s": None, "cpu_per_gb": None}
    return {"clients": clients, "mb_per_s": recorder["mb_per_s"] / peer["mb_per_s"],
            "cpu_per_gb": recorder["cpu_per_gb"] / peer["cpu_per_gb"],
            "aim_mb_per_s": MIN_MB_PER_S_RATIO, "aim_cpu_per_gb": MAX_CPU_PER_GB_RATIO}


def print_table(figures: dict) -> None:
    clients = figures["clients"]
    most = max(clients)
    heads = [f"{n} client{'s' if n > 1 else ''} MB/s" for n in clients] + [f"CPU s/GB at {most}"]
    print(f"  {'server':48s}" + "".join(f"{h:>17s}" for h in heads))
    for s, tls in SERVERS:
        name = key(s, tls)
        cell = figures["servers"][name]
        label = f"{LABELS[s]}, {'TLS' if tls else 'plain'}"
        if "error" in cell:
            print(f"  {label:48s}  {cell['error']}")
            continue
        row = "".join(f"{cell['clients'][n]['mb_per_s']:17.0f}" for n in clients)
        row += f"{cell['clients'][most]['cpu_per_gb']:17.2f}"
        if s.startswith("recorder"):
            lost = sum(c["lost_records"] for c in cell["clients"].values())
            row += "   stored every record" if lost == 0 else f"   LOST {lost} records"
        print(f"  {label:48s}{row}")


def run(seconds: float = SECONDS, repeats: int = REPEATS, clients=CLIENTS, *, ceiling_mb: int = CEILING_MB,
        folder: Path = Path(".")) -> dict:
    print(f"one profile9 device's body ({seconds:g} s, one sample per message) sent unpaced by "
          f"{' and by '.join(map(str, clients))} device(s) at once; a fresh server per repeat, median of {repeats}")
    figures = measure(seconds, repeats, clients, ceiling_mb=ceiling_mb, folder=folder,
                      on_run=lambda name, result: print(
                          f"  {name:18s} " + ", ".join(f"{n}: {r['mb_per_s']:.0f} MB/s {r['cpu_per_gb']:.1f} s/GB"
                                                       for n, r in result.items()), flush=True))
    per_device = figures["per_device_mb_per_s"]
    print(f"one device: {per_device:.1f} MB/s; ceilings: loopback TCP {figures['loopback_mb_per_s']:.0f} MB/s, "
          f"disk writes (fsync'd) {figures['disk_mb_per_s']:.0f} MB/s")
    print_table(figures)
    for r, name in ((figures["ratios"], "recorder TLS"), (figures["ratios_workers"], f"recorder --workers {WORKERS} TLS"),
                    (figures["ratios_raw_images_stored"], "recorder --raw-images store TLS")):
        if r["mb_per_s"] is None:
            print(f"{name} / uvicorn TLS at {r['clients']} clients: not measured (one of the two did not run)")
            continue
        print(f"{name} / uvicorn TLS discarding, {r['clients']} clients: MB/s {r['mb_per_s']:.2f} "
              f"(aim: at least {MIN_MB_PER_S_RATIO:g}) -> {'met' if r['mb_per_s'] >= MIN_MB_PER_S_RATIO else 'NOT met'}; "
              f"CPU per GB {r['cpu_per_gb']:.1f} (aim: at most {MAX_CPU_PER_GB_RATIO:g}) -> "
              f"{'met' if r['cpu_per_gb'] <= MAX_CPU_PER_GB_RATIO else 'NOT met'}")
    print(f"profile9 devices the disk's write speed allows: {figures['devices_the_disk_allows']:.0f} "
          f"({figures['disk_mb_per_s']:.0f} MB/s over {per_device:.1f} MB/s each)")
    print_bound(figures)
    return figures


def print_bound(figures: dict) -> None:
    found = figures["bound"]
    if found is None:
        print("the stages' bound: not measured (the recorder or trio+h11 over TLS did not run)")
        return
    per_gb = found["s_per_gb"]
    print(f"CPU per GB of each stage alone: sending {per_gb['sending']:.2f} s (this process, to the recorder "
          f"over TLS), receiving {per_gb['receiving']:.2f} (trio+h11 over TLS, discarding), decoding "
          f"{per_gb['decoding']:.2f}, storing {per_gb['storing']:.2f} (one core, RAW frames as they come, "
          f"fsync'd); together {found['total_s_per_gb']:.2f}")
    print(f"the {found['cores']} cores carry at most {found['mb_per_s']:.0f} MB/s of it at {found['clients']} "
          f"client(s)" + ("" if found["of_uvicorn_tls"] is None else
                          f" = {found['of_uvicorn_tls']:.2f} of uvicorn TLS's MB/s, where the aim is "
                          f"{MIN_MB_PER_S_RATIO:g} ({found['aim_s_per_gb']:.2f} s per GB for all the stages)"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder.bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=SECONDS, help="of one device's data in the body")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS))
    parser.add_argument("--ceiling-mb", type=int, default=CEILING_MB, help="sent through loopback and written to disk")
    parser.add_argument("--serve", choices=["uvicorn", "trio+h11", "http.server"],
                        help="be that peer server (the bench starts these itself)")
    parser.add_argument("--port", type=int, help="with --serve")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="with --serve: serve TLS with these files")
    parser.add_argument("--dir", type=Path, default=Path("."), help="with --serve http.server: where bodies go")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, tuple(args.tls) if args.tls else None, args.dir)
        return 0
    run(args.seconds, args.repeats, tuple(args.clients), ceiling_mb=args.ceiling_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
