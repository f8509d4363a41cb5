"""End-to-end ingest: simulated profile9 devices (one sample per message) over loopback into a
`recorder serve` subprocess, beside the loopback TCP ceiling and the disk's write speed. The
device counts are found over TLS, as devices send by default; unpaced runs compare plain HTTP,
TLS, and RAW camera frames stored rather than compressed (--raw-images store). The sending side runs on the same two
cores, so its CPU is reported too.

Bodies are generated once (one device's windows) and replayed by every device under its own
serial and session, so the sending side costs little more than the socket writes. A device
count is sustained when every record sent is stored (the server's /status agrees) and no
window was sent more than one second after its due time (a server that cannot keep up pushes
back through TCP, and the lag shows it).

Measured on 2 cores (paced profile9 over TLS, 2 workers, 6 s per step), 2026-12: with RAW frames
compressed, 8 devices lag 0.12-0.33 s at 90-91 MB/s, 9 lag 0.24 s at 99 MB/s, and 10 lag 1.25 to
1.70 s on 1.68 server cores: the bound is the server's CPU, about 18 ms per MB. With
--raw-images store, 12 devices lag 0.34-0.70 s at 124-129 MB/s on 1.51-1.60 server cores (about
12.5 ms per MB), 14 lag 0.86-1.90 s, 16 lag 2.2-3.1 s. The disk allows 39.
With 4 MiB coalesced per write (the section, once): 10 devices sustained (0.68 s of lag, 104
MB/s, 1.66 server cores; 12 lag 2.55 s), and with --raw-images store 16 (0.88 s, 168 MB/s, 1.54
cores; 20 lag 3.14 s); the disk allowed 45 in that run (536 MB/s), so 22 % and 36 % of it.
With the decoding and writing on each worker's event loop thread, fewer copies, zlib-ng's CRC and
camera frames stepped over by the decoder, one run on a slower VM (disk 310 MB/s: 26 devices):
7 devices sustained (0.53 s, 74 MB/s, 1.38 cores; 8 lag 2.25 s), with --raw-images store 10
(0.48 s, 105 MB/s, 1.26 cores; 12 lag 1.54 s): 27 % and 38 % of what the disk allows. Measured
beside the commit before those changes, alternating, same VM: paced --raw-images store at 10
devices 11.5-12.1 ms of server CPU per MB against 12.8-13.4; RAW frames compressed at 8 devices
17.1-17.3 against 17.6-18.1, where compressing the frames (zstd) alone takes about 5.5.
With --raw-images auto the default (RAW frames compressed while a worker has CPU to spare, stored
as they come while its event loop is saturated), one run on a faster VM (disk 444 MB/s: 37
devices): the default sustains 16 (0.63 s of lag, 173 MB/s; 20 lag 1.03 s), --raw-images store
16 (0.57 s; 20 lag 1.03 s), --raw-images compress 14 (0.59 s; 16 lag 1.26 s): 43 % of what the
disk allows. Standalone paced runs of 20 devices the same hour: the default 0.84-1.11 s of lag
in three runs, store 0.95 s; compress at 20 lagged 2.53 s. RAW frames compressed, zstd takes 47 %
of a worker's CPU (perf, 12 devices): on the simulator's noise-free images it runs at 233 MB/s,
on the same images with sensor noise (sigma 2.5) at 885 MB/s.
With each body's flush beside its receiving (before, a device went unread for the 150-180 ms of
every flush, every 0.5 s), alternating with the commit before on that VM, 20 devices: max lag
0.78-2.15 s against 1.17-3.47 s, and per window 20 devices held at 0.5-0.8 s of lag where it had
grown to 1.7 s. The section once more, hours later, with the VM slower (loopback 2220 MB/s, disk
333 MB/s: 28 devices; about 1.7 times the CPU per MB): 12 devices sustained by default, with
store and with compress alike (43 %), 14 lagged 1.03-2.33 s; a second run (disk 385 MB/s: 32):
12, 12 and 10 (38 %). Alternating with the commit before at 12 devices then: 10.6-11.1 ms of
server CPU per MB both, against 6.6-7.9 in the morning's runs of the same code.
With each blob's prefix decoded in one call (12 % fewer decode instructions, callgrind), the
section once (disk 331 MB/s: 28 devices): 16 devices sustained by default (0.75 s of lag, 165
MB/s, 1.39 server cores; 20 lag 3.17 s), 57 % of what the disk allows; --raw-images compress 12.
--raw-images store printed 0 there: its search starts at the default's count, and 16 lagged 1.73 s.
The section once more on a faster VM (disk 343 MB/s: 29 devices): 16 sustained by default (0.64
s; 20 lagged 2.37 s), 20 with --raw-images store (0.74 s; 24 lagged 3.12 s, its lag growing
every window), 14 with compress: 55 % of what the disk allows by default, 69 % with store.
Paced runs of 20 devices by default the same hour: 4 of 7 held (0.56-0.95 s of lag), 3 lagged
1.44-2.37 s. The lag per window shows where it comes from: it jumps to 0.45-1.2 s in the first
second, while every session starts at once and the workers' loops become saturated, then stays
about level at 20 devices (the server keeps pace but does not catch up) and grows at 24 (it does
not keep pace). In that first second each coalesced write took 20-76 ms of a loop's CPU by
default, 20-58 ms with --raw-images store, and hardly any over 20 ms after it. A session's first
write also makes its streams' folders and opens their files (30-43 ms against 20-28 for the
next ones, one session alone, RAW frames compressed). Two changes aimed at that first second did
not lower the jump at 20 devices, 4 alternating pairs each: storing frames after one saturated
window instead of two (higher lag in 3 pairs; lower in all 4 pairs at 16 devices), and each
session's first write in a thread, off the loop (first-second lag 0.99-1.43 s against 0.43-1.37).
The same code, the section once on a later day (disk 364 MB/s: 31 devices): 24 sustained by
default (0.90 s of lag, 248 MB/s, 1.50 server cores; 32 lagged 3.43 s), 24 with store (0.83 s),
16 with compress (0.78 s; 20 lagged 2.53 s): 77 % of what the disk allows by default. Unpaced, 4
devices: plain 278 MB/s, TLS 257, TLS with store 293. Standalone paced runs of 20 devices earlier
that day held with 0.51 and 0.67 s of lag by default, 0.22 and 0.34 with store: the same code
sustains 16 devices one day and 24 another, as the VM's speed moves.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import trio

from .. import certs
from ..sim import sender
from ..sim.fleet import make_fleet

SECONDS = 6.0
PERIOD = 0.2
MAX_LAG_S = 1.0
DEVICE_STEPS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 100)
STORED = ("--raw-images", "store")  # RAW camera frames stored as they come, not compressed
COMPRESSED = ("--raw-images", "compress")  # ... compressed however busy the server is


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_ceiling(total: int = 1 << 30, piece: int = 1 << 20) -> float:
    """MB/s one TCP connection carries over loopback (one sending and one receiving thread)."""
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = [0]

    def sink():
        conn, _ = server.accept()
        with conn:
            while (data := conn.recv(piece)):
                received[0] += len(data)

    thread = threading.Thread(target=sink)
    thread.start()
    block = os.urandom(piece)
    with socket.create_connection(("127.0.0.1", port)) as client:
        started = time.perf_counter()
        for _ in range(total // piece):
            client.sendall(block)
    thread.join()
    server.close()
    return received[0] / (time.perf_counter() - started) / 1e6


def disk_write_speed(folder: Path, total: int = 1 << 30, piece: int = 4 << 20) -> float:
    """MB/s of sequential writes to the data folder's disk, fsync included."""
    path = folder / "disk-speed.tmp"
    block = os.urandom(piece)
    started = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(total // piece):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - started
    path.unlink()
    return total / elapsed / 1e6


class Replayed:
    """One device replaying pre-generated windows under its own identity."""

    def __init__(self, windows: list[bytes], records: int, headers: dict[str, str], index: int):
        self.windows = windows
        self.records_sent = records
        self.serial = f"BENCH{index:05d}"
        self.session_id = str(uuid.UUID(int=index + 1))
        self.headers_ = dict(headers, **{"device-serial": self.serial, "session-id": self.session_id})
        self.lag = 0.0

    def headers(self):
        return self.headers_


async def replay(device: Replayed, url: str, paced: bool, ssl_context=None) -> None:
    conn = await sender.Connection.open(sender.Target.parse(url), ssl_context)
    start = trio.current_time()
    try:
        await conn.start("/", device.headers())
        for k, body in enumerate(device.windows):
            due = start + (k + 1) * PERIOD
            if paced:
                await trio.sleep_until(due)
            await conn.send(body)
            if paced:
                device.lag = max(device.lag, trio.current_time() - due)
        status, payload = await conn.finish()
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload}")
    finally:
        await conn.aclose()


def profile9_windows(seconds: float = SECONDS) -> tuple[list[bytes], int, dict[str, str]]:
    """One simulated profile9 device (one sample per message): its bodies, one per PERIOD, the
    records they carry and its headers, for Replayed devices to send under their own identities."""
    device = make_fleet(1, seed=2, profile="profile9", one_sample_per_message=True)[0]
    windows = [device.window(k * PERIOD, (k + 1) * PERIOD) for k in range(round(seconds / PERIOD))]
    return windows, device.records_sent, device.headers()


def stream_devices(devices: list[Replayed], url: str, paced: bool, ssl_context=None) -> None:
    """Every device at once, each on its own connection; returns when all have been answered."""
    async def all_devices():
        async with trio.open_nursery() as nursery:
            for d in devices:
                nursery.start_soon(replay, d, url, paced, ssl_context)

    trio.run(all_devices)


@contextlib.contextmanager
def recorder_serve(folder: Path, *, tls: bool = False, options: tuple[str, ...] = (),
                   log: Path | None = None):
    """`recorder serve` as a subprocess on a free loopback port, its data (and certificates) under
    folder; `options` are further options of `recorder serve` (they override the ones here),
    `log` a file for what it prints (its console lines are dropped otherwise). Yields (the process, its base URL, the client's SSL context or None) once /healthz answers;
    stopped (SIGTERM: every session is finalised) on the way out."""
    port = free_port()
    args = [sys.executable, "-m", "recorder.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", f"{folder}/data", "--session-grace", "3600", "--rtmp-port", "0",
            # every simulated device connects from 127.0.0.1: the per-address limit would refuse
            # the largest steps for a reason that is not the recorder's speed
            "--max-connections-per-address", "0"]
    ssl_context = None
    if tls:
        certs.init(folder / "certs")
        args += ["--certs-dir", f"{folder}/certs"]
        ssl_context = sender.client_ssl_context(f"{folder}/certs/{certs.CA}")
    else:
        args.append("--plain-http")
    args += options
    with open(log, "ab") if log else contextlib.nullcontext() as out:
        server = subprocess.Popen(args, stdout=out or subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT if out else subprocess.PIPE)
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        wait_for("the server's /healthz", lambda: urllib.request.urlopen(
            f"{base}/healthz", timeout=1, context=ssl_context), 30, server=server)
        yield server, base, ssl_context
    finally:
        server.terminate()
        server.wait(timeout=120)


def whole_status(base: str, ssl_context=None, timeout: float = 60) -> dict:
    """GET /status once every worker is in it: one starting, restarting or busier than the
    server's wait is named in workers_not_answering, and its sessions (and worker 0's RTMP
    streams) are missing from that answer."""
    def answer() -> dict | None:
        with urllib.request.urlopen(f"{base}/status", timeout=30, context=ssl_context) as r:
            status = json.load(r)
        return None if status.get("workers_not_answering") else status
    return wait_for("a /status that every worker is in", answer, timeout)


def stored_records(base: str, ssl_context) -> dict[str, int]:
    return {s["device"]: s["records"] for s in whole_status(base, ssl_context)["sessions"]}


def run_devices(n: int, windows: list[bytes], records: int, headers: dict, paced: bool, *,
                tls: bool = False, options: tuple[str, ...] = ()) -> dict:
    with tempfile.TemporaryDirectory(dir=".") as tmp, \
            recorder_serve(Path(tmp), tls=tls, options=options) as (server, base, ssl_context):
        devices = [Replayed(windows, records, headers, i) for i in range(n)]
        cpu_before = cpu_seconds(server.pid)
        started, sender_before = time.perf_counter(), time.process_time()
        stream_devices(devices, f"{base}/", paced, ssl_context)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server.pid) - cpu_before
        sender_cpu = time.process_time() - sender_before
        stored = stored_records(base, ssl_context)
    sent_bytes = n * sum(map(len, windows))
    lost = sum(max(0, records - stored.get(d.serial, 0)) for d in devices)
    lag = max(d.lag for d in devices)
    return {"devices": n, "paced": paced, "seconds": elapsed, "mb_per_s": sent_bytes / elapsed / 1e6,
            "records_per_s": n * records / elapsed, "lost_records": lost, "max_lag_s": lag,
            "server_cpu_cores": cpu / elapsed, "sender_cpu_cores": sender_cpu / elapsed, "tls": tls,
            "options": list(options), "sustained": lost == 0 and lag < MAX_LAG_S}


def wait_for(what: str, check, timeout: float, **processes: subprocess.Popen):
    """check()'s first true value, polled; an error if it takes too long or a process ends."""
    deadline = time.monotonic() + timeout
    while True:
        for name, p in processes.items():
            if p.poll() is not None:
                raise RuntimeError(f"waiting for {what}: the {name} exited with {p.returncode}")
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system, every thread) a process and the processes it started (the
    workers of `recorder serve`) are using so far, from /proc."""
    return sum(own_cpu_seconds(p) for p in process_tree(pid))


def own_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:  # it ended meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and every live process below it."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return tree


def describe(result: dict) -> str:
    return (f"{result['mb_per_s']:6.0f} MB/s {result['records_per_s']:8.0f} records/s, max lag {result['max_lag_s']:.2f} s, "
            f"lost {result['lost_records']}, server {result['server_cpu_cores']:.2f} cores, "
            f"sender {result['sender_cpu_cores']:.2f} cores")


def sustained_devices(windows, records, headers, label: str, *, start: int = 1, **options) -> tuple[int, list[dict]]:
    """The largest step of DEVICE_STEPS sustained in real time (searched from `start`, see
    largest_sustained), and every step run."""
    steps = []

    def holds(n: int) -> bool:
        result = run_devices(n, windows, records, headers, paced=True, **options)
        steps.append(result)
        print(f"paced, {label}, {n:3d} devices: {describe(result)} -> "
              f"{'sustained' if result['sustained'] else 'NOT sustained'}")
        return result["sustained"]

    return largest_sustained(DEVICE_STEPS, start, holds), steps


def largest_sustained(counts: tuple[int, ...], start: int, holds: Callable[[int], bool]) -> int:
    """The largest of `counts` that holds, tried upward from `start` (a count another search
    found) until one does not; if `start` itself does not, downward from it until one does, so
    that a search begun too high still finds its count rather than 0. 0 if none holds."""
    found = 0
    for n in (k for k in counts if k >= start):
        if not holds(n):
            break
        found = n
    if found:
        return found
    return next((n for n in sorted((k for k in counts if k < start), reverse=True) if holds(n)), 0)


def run() -> dict:
    windows, records, headers = profile9_windows()
    per_device = sum(map(len, windows)) / SECONDS / 1e6
    print(f"one profile9 device, one sample per message: {records / SECONDS:.0f} records/s, {per_device:.1f} MB/s")
    ceiling = loopback_ceiling()
    disk = disk_write_speed(Path("."))
    print(f"ceilings: loopback TCP {ceiling:.0f} MB/s, disk writes {disk:.0f} MB/s "
          f"(= {min(ceiling, disk) / per_device:.0f} devices' worth)")
    unpaced = {}
    for label, options in (("plain HTTP", {}), ("TLS", {"tls": True}),
                           ("TLS, --raw-images store", {"tls": True, "options": STORED})):
        unpaced[label] = run_devices(4, windows, records, headers, paced=False, **options)
        print(f"unpaced, {label}, 4 devices: {describe(unpaced[label])}")
    sustained, steps = sustained_devices(windows, records, headers, "TLS", tls=True)
    stored_sustained, stored_steps = sustained_devices(windows, records, headers, "TLS, --raw-images store",
                                                       start=max(1, sustained), tls=True, options=STORED)
    compressed_sustained, compressed_steps = sustained_devices(
        windows, records, headers, "TLS, --raw-images compress", start=max(1, sustained // 2), tls=True,
        options=COMPRESSED)
    print(f"devices sustained with no loss and under {MAX_LAG_S:g} s of lag over TLS: {sustained} "
          f"(with --raw-images store: {stored_sustained}, compress: {compressed_sustained}); "
          f"the disk allows {disk / per_device:.0f}")
    return {"per_device_mb_per_s": per_device, "loopback_mb_per_s": ceiling, "disk_mb_per_s": disk,
            "unpaced": unpaced, "paced": steps, "devices_sustained": sustained,
            "paced_raw_images_stored": stored_steps, "devices_sustained_raw_images_stored": stored_sustained,
            "paced_raw_images_compressed": compressed_steps,
            "devices_sustained_raw_images_compressed": compressed_sustained}
