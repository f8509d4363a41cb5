"""Soak: many devices for a long time, their sessions coming and going, against one `recorder
serve`; whether its memory, open files and /status stay flat however many sessions it has seen.

    python -m recorder.bench.soak [--devices 50] [--duration 600] [--session-seconds 30]
    python -m recorder.bench soak               (ten minutes, a section of make bench)
    make soak                                   (the hour-long form)

Method. A `recorder serve` subprocess over TLS (as the ingest section starts it) with a short
--session-grace and --keep-finished, so that finished sessions leave its live status during the
run. DEVICES simulated devices stream to it from this process, each over its own connections:
a session lasts SESSION_S on average (0.5 to 1.5 times that, seeded), comes over two
connections (the device reconnects halfway, continuing the session), and as it ends the device
starts a new one with a fresh session id: the server sees tens of times more sessions than
devices. Every sample_every seconds the bench reads the server's resident memory (VmRSS of it
and of its children: `recorder serve --workers`' ingest workers; /proc), its open file
descriptors (/proc/<pid>/fd), threads and CPU, all summed over those processes, and the byte
size of GET /status with the sessions it lists. A /status that names a worker as not answering
lacks that worker's sessions: its /status figures are left out of the verdict (and counted).

What one device sends: mp_streaming_demo's 200 ms batches (machine perception, eye-tracking and
RGB cameras; see recorder/sim/profiles.py), one batch every SEND_PERIOD_S, a fifth of real time
(about 160 kB/s, 10 records/s): 50 such devices leave room on two cores for the recorder and
the sending side, and every session still opens every stream's files.

Verdict. After a warm-up (the first fifth of the run, and at least until the first sessions
have come, gone and left the live status), the median of the first and of the last fifth of the
samples: growth of RSS (also per thousand sessions seen between them), of descriptors and of
/status bytes, and the least-squares slope of RSS over the whole steady part. Flat means RSS
grew under RSS_TOLERANCE, descriptors by at most FD_TOLERANCE and /status by under
STATUS_TOLERANCE. Memory per connected device: the steady part's median RSS less the idle
server's, over the devices. Once the devices stop and every session has left the live status,
the descriptors should be back at the idle server's count; `recorder ls` must list every session.
The descriptors swing with the connections, so a slow leak hides in them; the files the server
holds open in sessions' folders (/proc/<pid>/fd) are set beside /status in every sample: a
file held of a session its device ended and /status no longer lists (one finished at least
keep-finished seconds ago) is one the server forgot to close, and there must be none.

Figures (2-core VM shared with other work; ten minutes, 50 devices). `recorder serve` as a user
starts it (two ingest workers, one per core): 1012 sessions, no device error, every one whole on
disk and listed by `recorder ls`; the recorder took about 0.79 cores (that run printed 1.58,
counting each worker twice), the sending side 0.05. From
the first to the last part (after two minutes): RSS 728 to 739 MiB (+1.5 %; idle 335 MiB),
fds 907 to 893 (idle 25), /status 157 to 156 kB (78 and 75 sessions listed): flat, though a
least-squares slope of RSS of +260 MiB an hour is within what ten minutes cannot tell from
noise (make soak). Memory per connected device 8.0 MiB (aim: at most 20). Once the devices
stopped: no session listed, fds back to 25, RSS 593 MiB. At most 10 sessions at once were
past their session grace or keep-finished time, by up to 6 s. The same with one process (before
--workers): 1011 sessions, 7.2 MiB per device, 0.70 cores, but RSS 430 to 507 MiB, fds 1096 to
1502 and /status 182 to 233 kB: that process finalises sessions one at a time in its
once-a-second housekeeping (about 0.25 s each here, beside sampling every open session), fell
behind the 1.7 sessions ending each second (42 sessions waiting past the 3 s grace, up to 32 s
past it, each holding its files and memory) and had not caught up 23 s after the devices left.
The hour (`make soak`, two workers, on 2 cores shared with a fuzz run): 5907 sessions, all
1 806 519 records sent stored, 0 device errors, every session listed by `recorder ls`; from the
first to the last part (after 12 minutes): RSS 883.5 to 888.1 MiB (+0.5 %, a least-squares slope
of +14.3 MiB an hour, +1.2 MiB per thousand sessions), fds 870 to 868 (25 once the devices
left), /status 156 to 155 kB (75 and 74 sessions listed), threads 43 and 43; 7.9 MiB per device,
0.98 cores; at most 8 sessions at once past their grace or keep-finished time, by up to 4 s.
Later code, ten minutes each, alternated on the same machine: without trimming the C heap, RSS
655 to 690 MiB (+5.3 %, not flat; 54 MiB per thousand sessions; 7.0 MiB per device; 630 MiB
once the devices left); with a worker's malloc_trim every 10 s (server/heap.py), 593 to 600 MiB
(+1.0 %, flat; 5.3 MiB per device; 494 MiB once they left), about 7 ms a trim, 18 MB given back
each time. glibc's fixed mmap threshold of 128 kB (MALLOC_MMAP_THRESHOLD_) was as flat
(+2.9 %, 4.4 MiB per device), but cost profile9 ingest half again its CPU per MB (15-16 ms
against 9.9, 12 paced devices over TLS), where the trims cost none that showed (10.0).
The hour again with the trims (`make soak`): 5971 sessions, all 1 825 592 records sent stored,
0 device errors, every session listed by `recorder ls`; from the first to the last part (after
12 minutes): RSS 609.4 to 613.3 MiB (+0.6 %, a least-squares slope of -8.0 MiB an hour, +1.0
MiB per thousand sessions), fds 872 to 859 (26 once the devices left, as idle), /status 157 to
154 kB; 5.46 MiB per device, 485 MiB once the devices left, 1.06 cores; at most 2 sessions at
once past their grace or keep-finished time.
No session is kept: an in-process server taking 548 sessions in three rounds, each run until
every session left, had every table empty after each round, no kind of object more numerous
from one round to the next, and RSS 347, 359, 356 MiB.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h11
import trio

from ..sim import sender
from ..sim.fleet import make_fleet
from ..storage.layout import RTMP_ROOT
from ..storage.summary import session_info
from .ingest import PERIOD, cpu_seconds, process_tree, recorder_serve

DEVICES = 50
DURATION_S = 600.0
SESSION_S = 30.0
SEND_PERIOD_S = 1.0  # one PERIOD (200 ms) batch sent each second: a fifth of real time
SESSION_GRACE_S = 3.0
KEEP_FINISHED_S = 10.0
SAMPLE_EVERY_S = 5.0
PROFILE = "mp_streaming_demo"
# A server's RSS settles over the first minutes, as its allocators' pools grow to the working set
# (in the ten-minute run: up to 728 MiB at two minutes, 739 MiB at the end).
WARMUP_FRACTION = 0.2
PART_FRACTION = 0.2  # the first and last fifth of the steady samples are compared
RSS_TOLERANCE = 0.05
FD_TOLERANCE = 2
STATUS_TOLERANCE = 0.10
MEMORY_PER_DEVICE_AIM_MIB = 20.0
MIB = 1 << 20
TIMEOUT_S = 60.0  # a device gives up on a recorder that takes nothing for this long


# -- what the devices send ------------------------------------------------------------------------


@dataclass
class Batches:
    """One simulated device's batches, generated once and sent by every device under its own
    serial and sessions (so the sending side costs little more than its socket writes)."""

    windows: list[bytes]
    records: list[int]  # records in each window
    headers: dict[str, str]

    @classmethod
    def make(cls, count: int) -> Batches:
        device = make_fleet(2, seed=3, profile=PROFILE)[1]  # not the broadcaster: it sends TDM too
        windows, records = [], []
        for k in range(count):
            before = device.records_sent
            windows.append(device.window(k * PERIOD, (k + 1) * PERIOD))
            records.append(device.records_sent - before)
        return cls(windows, records, device.headers())


@dataclass
class Sent:
    """What the devices sent, as they go (read by the sampler from another thread)."""

    sessions: list[tuple[str, str]] = field(default_factory=list)  # (serial, session id), in start order
    records_by_session: dict[tuple[str, str], int] = field(default_factory=dict)  # those sent whole
    records: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    connected: int = 0  # devices with a connection open now
    # Session ids their devices are done with (the last answer came, or the device gave up): a
    # list, which the sampler's thread copies whole (a set could change size while copied).
    ended: list[str] = field(default_factory=list)


async def send_part(url: str, ssl_context, headers: dict, windows: list[bytes], period_s: float,
                    sent: Sent) -> None:
    """One request on a connection of its own: the batches paced one per period_s."""
    target = sender.Target.parse(url)
    conn = await sender.Connection.open(target, ssl_context, timeout_s=TIMEOUT_S)
    sent.connected += 1
    try:
        await conn.start(target.path, headers)
        for body in windows:
            await trio.sleep(period_s)
            await conn.send(body)
            sent.bytes += len(body)
        status, payload = await conn.finish()
        if status != 200:
            raise sender.SendError(f"HTTP {status}: {payload.get('error', payload)}")
    finally:
        sent.connected -= 1
        await conn.aclose()


async def device_sessions(index: int, batches: Batches, url: str, ssl_context, *, until: float, session_s: float,
                          period_s: float, sent: Sent) -> None:
    """Sessions one after another until `until` (trio time): each over two connections, the
    second continuing the session as a reconnecting device does."""
    rng = random.Random(index)
    serial = f"SOAK{index:05d}"
    await trio.sleep(rng.uniform(0, period_s))  # the devices' batches spread over each period
    while trio.current_time() < until:
        count = max(2, min(len(batches.windows), round(rng.uniform(0.5, 1.5) * session_s / period_s)))
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        headers = dict(batches.headers, **{"device-serial": serial, "session-id": session_id})
        sent.sessions.append((serial, session_id))
        try:
            for part in (slice(0, count // 2), slice(count // 2, count)):
                await send_part(url, ssl_context, headers, batches.windows[part], period_s, sent)
            sent.records_by_session[(serial, session_id)] = sum(batches.records[:count])
            sent.records += sum(batches.records[:count])
        except (OSError, trio.BrokenResourceError, ssl.SSLError, h11.ProtocolError, sender.SendError) as exc:
            sent.errors.append(f"{serial} {session_id}: {sender.describe(exc)}")
            await trio.sleep(period_s)
        finally:
            sent.ended.append(session_id)


def stream_for(devices: int, batches: Batches, url: str, ssl_context, *, duration_s: float, session_s: float,
               period_s: float, sent: Sent) -> None:
    """Every device's sessions; no session begins after duration_s (the last ones end after it)."""
    async def fleet():
        until = trio.current_time() + duration_s
        async with trio.open_nursery() as nursery:
            for i in range(devices):
                nursery.start_soon(lambda i=i: device_sessions(i, batches, url, ssl_context, until=until,
                                                               session_s=session_s, period_s=period_s, sent=sent))

    trio.run(fleet)


# -- what the server holds -----------------------------------------------------------------------


def proc_status_field(pid: int, name: str) -> int:
    """A number of /proc/<pid>/status (VmRSS is in kB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def tree_sum(pid: int, per_process) -> int:
    """per_process(p) summed over the server and its worker processes (one that ended
    meanwhile counts nothing)."""
    total = 0
    for p in process_tree(pid):
        try:
            total += per_process(p)
        except OSError:
            pass
    return total


def rss_bytes(pid: int) -> int:
    return tree_sum(pid, lambda p: proc_status_field(p, "VmRSS") * 1024)


def open_fds(pid: int) -> int:
    return tree_sum(pid, lambda p: len(os.listdir(f"/proc/{p}/fd")))


def threads(pid: int) -> int:
    return tree_sum(pid, lambda p: proc_status_field(p, "Threads"))


def live_status(base: str, ssl_context) -> tuple[int, dict]:
    """GET /status: its size in bytes, and what it says."""
    with urllib.request.urlopen(f"{base}/status", timeout=60, context=ssl_context) as r:
        body = r.read()
    return len(body), json.loads(body)


@dataclass
class Sample:
    t: float  # seconds since the devices began
    rss: int
    fds: int
    threads: int
    cpu_s: float
    status_bytes: int
    listed: int  # sessions /status lists
    receiving: int
    finished_earlier: int  # sessions that left /status
    sessions_started: int  # by the devices, so far
    connected: int
    # Sessions still waiting for their device past the session grace, or still listed as
    # finished past keep-finished (HOUSEKEEPING_S allowed for the server's once-a-second
    # housekeeping): the server is behind in finalising or forgetting them. late_s: the most
    # any is past its time.
    overdue: int = 0
    late_s: float = 0.0
    # Workers /status named as not answering (starting, restarting, or slower than the server's
    # wait): their sessions are missing from that answer, so its /status figures are not counted.
    workers_not_answering: int = 0
    # Files open in sessions' folders, and of those, files of sessions that their devices ended
    # and /status no longer lists: a leak shows there exactly, however much the descriptors
    # swing with the connections.
    files_held: int = 0
    files_held_of_gone_sessions: int = 0


HOUSEKEEPING_S = 2.0


def overdue_sessions(sessions: list[dict], allowed_s: dict[str, float], now: float) -> tuple[int, float]:
    """(how many, the most seconds past) of the sessions held in a state longer than allowed."""
    late = [now - s["state_since"] - allowed_s[s["state"]] - HOUSEKEEPING_S for s in sessions if s["state"] in allowed_s]
    late = [x for x in late if x > 0]
    return len(late), max(late, default=0.0)


@dataclass(frozen=True)
class Watched:
    """The `recorder serve` under test: its process, where it answers, and its data folder."""
    process: subprocess.Popen
    base: str
    ssl_context: ssl.SSLContext | None
    data_dir: Path


def files_held(pid: int, data_dir: Path) -> collections.Counter[str]:
    """The files the server's processes hold open in device sessions' folders, by session id
    (<data-dir>/<serial>/<session-id>/...; a process that ended meanwhile holds none)."""
    root = os.path.realpath(data_dir) + os.sep
    held: collections.Counter[str] = collections.Counter()
    for p in process_tree(pid):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{p}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            parts = target[len(root):].split(os.sep) if target.startswith(root) else []
            if len(parts) >= 3 and parts[0] != RTMP_ROOT:
                held[parts[1]] += 1
    return held


def sample(server: Watched, sent: Sent, t: float, allowed_s: dict[str, float]) -> Sample:
    # The sessions their devices are done with, their open files, then /status, in that order.
    # Such a session is listed while its files are open (it leaves /status keep-finished seconds
    # after its files close), so a file held of one that /status does not list is one the
    # server forgot to close. A session still being sent is left out: its files open before it
    # is listed, and when it moves to another worker, they close on one and open on the other.
    ended = set(sent.ended[:])
    held = files_held(server.process.pid, server.data_dir)
    size, status = live_status(server.base, server.ssl_context)
    listed = {s["session_id"] for s in status["sessions"]}
    overdue, late_s = overdue_sessions(status["sessions"], allowed_s, time.time())
    pid = server.process.pid
    return Sample(t=t, rss=rss_bytes(pid), fds=open_fds(pid),
                  threads=threads(pid), cpu_s=cpu_seconds(pid),
                  status_bytes=size, listed=len(status["sessions"]),
                  receiving=sum(s["state"] == "receiving" for s in status["sessions"]),
                  finished_earlier=status["finished_earlier"]["sessions"], sessions_started=len(sent.sessions),
                  connected=sent.connected, overdue=overdue, late_s=late_s,
                  workers_not_answering=len(status.get("workers_not_answering", [])),
                  files_held=sum(held.values()),
                  files_held_of_gone_sessions=sum(n for sid, n in held.items() if sid in ended and sid not in listed))


class Sampler:
    """Samples the server every `every` seconds from a thread of its own, beside the devices'
    event loop; each row is handed to on_sample as it comes."""

    def __init__(self, server: Watched, sent: Sent, allowed_s: dict[str, float], every: float, on_sample=None):
        self.args = server, sent
        self.allowed_s = allowed_s
        self.every = every
        self.on_sample = on_sample
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                row = sample(*self.args, time.monotonic() - self.started, self.allowed_s)
                self.samples.append(row)
                if self.on_sample:
                    self.on_sample(row)
            except (OSError, ValueError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            if self._stop.wait(self.every):
                return


# -- the verdict ---------------------------------------------------------------------------------


def median_of(rows: list[Sample], name: str) -> float:
    return statistics.median(getattr(r, name) for r in rows)


def slope_per_hour(rows: list[Sample], name: str) -> float:
    """Least-squares slope of a figure over time, per hour."""
    if len(rows) < 2:
        return 0.0
    ts = [r.t for r in rows]
    return statistics.linear_regression(ts, [getattr(r, name) for r in rows]).slope * 3600


def steady_parts(samples: list[Sample], warmup_s: float, duration_s: float) -> tuple[list[Sample], list[Sample],
                                                                                 list[Sample]]:
    """The samples after the warm-up and before the devices began to stop (no session begins
    after duration_s), and their first and last fifth."""
    steady = [s for s in samples if warmup_s <= s.t <= duration_s]
    part = max(1, round(len(steady) * PART_FRACTION))
    return steady, steady[:part], steady[-part:]


# Figures read from /status, not /proc: only a sample that every worker answered counts for them.
STATUS_FIGURES = frozenset({"status_bytes", "listed", "overdue"})


def every_worker_answered(rows: list[Sample]) -> list[Sample]:
    """The samples whose /status every worker answered (all of them if none did: a server
    whose workers never all answer shows as such in partial_status_samples)."""
    return [r for r in rows if not r.workers_not_answering] or rows


def verdict(samples: list[Sample], idle: Sample, after: Sample, devices: int, warmup_s: float,
            duration_s: float) -> dict:
    steady, first, last = steady_parts(samples, warmup_s, duration_s)
    if len(steady) < 2:
        raise RuntimeError(f"only {len(steady)} samples after the {warmup_s:g} s warm-up: run longer")
    figures = {"warmup_s": warmup_s, "steady_samples": len(steady), "part_samples": len(first),
               "partial_status_samples": sum(bool(s.workers_not_answering) for s in steady)}
    for name in ("rss", "fds", "status_bytes", "listed", "threads", "overdue"):
        pick = every_worker_answered if name in STATUS_FIGURES else list
        figures[name] = {"idle": getattr(idle, name), "first": median_of(pick(first), name),
                         "last": median_of(pick(last), name), "after": getattr(after, name),
                         "max": max(getattr(s, name) for s in pick(steady)),
                         "slope_per_hour": slope_per_hour(pick(steady), name)}
        figures[name]["growth"] = figures[name]["last"] - figures[name]["first"]
    sessions_between = median_of(last, "sessions_started") - median_of(first, "sessions_started")
    figures["sessions_between_parts"] = sessions_between
    figures["rss_growth_per_1000_sessions"] = (figures["rss"]["growth"] / sessions_between * 1000
                                               if sessions_between else 0.0)
    figures["most_late_s"] = max(s.late_s for s in steady)
    figures["memory_per_device"] = (median_of(steady, "rss") - idle.rss) / devices
    figures["server_cores"] = (steady[-1].cpu_s - steady[0].cpu_s) / (steady[-1].t - steady[0].t)
    rss, fds, size = figures["rss"], figures["fds"], figures["status_bytes"]
    figures["flat"] = {
        "rss": rss["growth"] <= RSS_TOLERANCE * rss["first"],
        "fds": fds["growth"] <= FD_TOLERANCE,
        "status_bytes": size["growth"] <= STATUS_TOLERANCE * size["first"],
        "fds_back_to_idle": fds["after"] <= fds["idle"] + FD_TOLERANCE,
        "status_empty_after": after.listed == 0 and not after.workers_not_answering,
    }
    # Every sample counts here, the warm-up and the wait for the server to empty too.
    checked = every_worker_answered([*samples, after])
    figures["files_held"] = {"max": max(s.files_held for s in checked),
                             "of_gone_sessions_max": max(s.files_held_of_gone_sessions for s in checked),
                             "samples_with_files_of_gone_sessions": sum(bool(s.files_held_of_gone_sessions)
                                                                         for s in checked)}
    figures["flat"]["no_files_of_gone_sessions"] = figures["files_held"]["of_gone_sessions_max"] == 0
    figures["memory_per_device_aim_met"] = figures["memory_per_device"] <= MEMORY_PER_DEVICE_AIM_MIB * MIB
    return figures


# -- one run -------------------------------------------------------------------------------------


def short_sessions(data_dir: Path, sent: Sent) -> list[str]:
    """The sessions whose folder holds fewer records than their device sent (read from each
    session's manifest, as `recorder info` reads it)."""
    short = []
    for (serial, session_id), records in sent.records_by_session.items():
        stored = session_info(data_dir / serial / session_id)["counters"].get("records", 0)
        if stored != records:
            short.append(f"{serial}/{session_id}: {stored} of {records} records stored")
    return short


# Console lines of `recorder serve` that say something went wrong on the server's side: a worker
# that died, an internal error, a connection that failed on the server's side, a traceback.
TROUBLE = re.compile(r"worker \d+ \(pid|internal error|failed unexpectedly|Traceback")


def server_trouble(log: Path) -> list[str]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if TROUBLE.search(line)]


def listed_by_ls(data_dir: Path) -> str:
    """What `recorder ls` prints for the data folder."""
    recorder = Path(sys.executable).with_name("recorder")
    args = [str(recorder)] if recorder.exists() else [sys.executable, "-m", "recorder.cli"]
    return subprocess.run([*args, "ls", str(data_dir)], capture_output=True, text=True, check=True).stdout


def wait_until_forgotten(server: Watched, sent: Sent, started: float, allowed_s: dict[str, float],
                         timeout_s: float) -> Sample:
    """Once the devices have stopped: a sample as soon as a /status that every worker answered
    lists no session (every one finalised and gone), or the last one tried after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        after = sample(server, sent, time.monotonic() - started, allowed_s)
        if (after.listed == 0 and not after.workers_not_answering) or time.monotonic() > deadline:
            return after
        time.sleep(0.5)


def measure(devices: int = DEVICES, duration_s: float = DURATION_S, *, session_s: float = SESSION_S,
            period_s: float = SEND_PERIOD_S, session_grace_s: float = SESSION_GRACE_S,
            keep_finished_s: float = KEEP_FINISHED_S, sample_every_s: float = SAMPLE_EVERY_S,
            folder: Path = Path("."), serve_options: tuple[str, ...] = (), on_sample=None) -> dict:
    """One soak; its samples, figures and what was checked. serve_options: more options of
    `recorder serve`."""
    batches = Batches.make(max(2, round(1.5 * session_s / period_s) + 1))
    seconds = len(batches.windows) * PERIOD
    sends = {"profile": PROFILE, "batch_s": PERIOD, "send_period_s": period_s,
             "bytes_per_s": sum(map(len, batches.windows)) / seconds * PERIOD / period_s,
             "records_per_s": sum(batches.records) / seconds * PERIOD / period_s}
    # The first sessions have come, gone and left /status once the longest has ended, waited its
    # grace and its keep-finished time (and the once-a-second housekeeping has seen it).
    warmup_s = max(WARMUP_FRACTION * duration_s, 1.5 * session_s + session_grace_s + keep_finished_s + 2)
    sent = Sent()
    allowed_s = {"waiting": session_grace_s, "finished": keep_finished_s}
    options = ("--session-grace", str(session_grace_s), "--keep-finished", str(keep_finished_s),
               "--idle-timeout", str(TIMEOUT_S), *serve_options)
    with tempfile.TemporaryDirectory(dir=folder, prefix="soak-") as tmp:
        log = Path(tmp) / "serve.log"
        with recorder_serve(Path(tmp), tls=True, options=options, log=log) as (process, base, ssl_context):
            server = Watched(process, base, ssl_context, Path(tmp) / "data")
            time.sleep(1.0)  # the idle server settled
            started, sender_before = time.monotonic(), time.process_time()
            idle = sample(server, sent, 0.0, allowed_s)
            with Sampler(server, sent, allowed_s, sample_every_s, on_sample) as sampler:
                sampler.started = started
                stream_for(devices, batches, f"{base}/", ssl_context, duration_s=duration_s, session_s=session_s,
                           period_s=period_s, sent=sent)
            streamed_s, sender_cpu_s = time.monotonic() - started, time.process_time() - sender_before
            # However far behind the server fell, it should catch up with the devices gone.
            after = wait_until_forgotten(server, sent, started, allowed_s,
                                         session_grace_s + keep_finished_s + 60)
            _, final_status = live_status(base, ssl_context)
        listing = listed_by_ls(Path(tmp) / "data")
        short = short_sessions(Path(tmp) / "data", sent)
        trouble = server_trouble(log)
    unlisted = [f"{serial}/{sid}" for serial, sid in sent.sessions if sid not in listing]
    figures = verdict(sampler.samples, idle, after, devices, warmup_s, duration_s)
    figures["sender_cores"] = sender_cpu_s / streamed_s
    return {
        "devices": devices, "duration_s": duration_s, "streamed_s": streamed_s, "session_s": session_s,
        "session_grace_s": session_grace_s, "keep_finished_s": keep_finished_s, "sample_every_s": sample_every_s,
        "one_device_sends": sends, "sessions_started": len(sent.sessions), "records_sent": sent.records,
        "bytes_sent": sent.bytes, "device_errors": sent.errors, "sampler_errors": sampler.errors,
        "finished_earlier": final_status["finished_earlier"], "sessions_not_listed_by_ls": unlisted,
        "sessions_short_on_disk": short, "server_trouble": trouble,
        "idle": asdict(idle), "after": asdict(after), "samples": [asdict(s) for s in sampler.samples],
        "figures": figures,
    }


# -- what is printed -----------------------------------------------------------------------------

HEADER = (f"{'t (s)':>7} {'RSS MiB':>8} {'fds':>5} {'threads':>7} {'/status B':>9} {'listed':>6} "
          f"{'receiving':>9} {'overdue':>7} {'late s':>6} {'left':>6} {'sessions':>8} {'CPU s':>7}")


def row(s: Sample) -> str:
    return (f"{s.t:7.0f} {s.rss / MIB:8.1f} {s.fds:5d} {s.threads:7d} {s.status_bytes:9d} {s.listed:6d} "
            f"{s.receiving:9d} {s.overdue:7d} {s.late_s:6.1f} {s.finished_earlier:6d} {s.sessions_started:8d} "
            f"{s.cpu_s:7.1f}")


class Printer:
    """Prints a row every `every` seconds of samples (the JSON keeps them all)."""

    def __init__(self, every: float):
        self.every = every
        self.next_t = 0.0

    def __call__(self, s: Sample) -> None:
        if s.t >= self.next_t:
            print(row(s), flush=True)
            self.next_t = s.t + self.every


def summary(result: dict) -> str:
    f = result["figures"]
    lines = []
    for name, label, unit in (("rss", "RSS", MIB), ("fds", "open fds", 1), ("status_bytes", "/status bytes", 1),
                              ("listed", "sessions in /status", 1), ("threads", "threads", 1),
                              ("overdue", "overdue sessions", 1)):
        x = f[name]
        fmt = (lambda v: f"{v / MIB:.1f} MiB") if unit == MIB else (lambda v: f"{v:.0f}")
        lines.append(f"{label:>20}: idle {fmt(x['idle'])}, first part {fmt(x['first'])}, last part {fmt(x['last'])} "
                     f"(growth {fmt(x['growth'])}; slope {fmt(x['slope_per_hour'])} per hour), max {fmt(x['max'])}, "
                     f"after the devices left {fmt(x['after'])}")
    flat = f["flat"]
    lines.append(f"steady part: from {f['warmup_s']:.0f} s, {f['steady_samples']} samples; the parts compared are "
                 f"{f['part_samples']} samples each, {f['sessions_between_parts']:.0f} sessions apart: "
                 f"RSS grew {f['rss_growth_per_1000_sessions'] / MIB:+.2f} MiB per 1000 sessions")
    if f["partial_status_samples"]:
        lines.append(f"{f['partial_status_samples']} samples of the steady part had a worker not answering "
                     f"/status: their /status figures are left out")
    lines.append(f"flat: RSS {'yes' if flat['rss'] else 'NO'} (under {RSS_TOLERANCE:.0%}), fds "
                 f"{'yes' if flat['fds'] else 'NO'} (at most +{FD_TOLERANCE}), /status "
                 f"{'yes' if flat['status_bytes'] else 'NO'} (under {STATUS_TOLERANCE:.0%}); after the devices left: "
                 f"fds {'back to' if flat['fds_back_to_idle'] else 'NOT back to'} the idle server's, /status "
                 f"{'lists no session' if flat['status_empty_after'] else 'still lists sessions'}")
    held = f["files_held"]
    if f["flat"]["no_files_of_gone_sessions"]:
        lines.append(f"files held open of ended sessions /status no longer lists: none in any sample (up to "
                     f"{held['max']} files of live sessions held at once)")
    else:
        lines.append(f"files held open of ended sessions /status no longer lists: up to {held['of_gone_sessions_max']}, "
                     f"in {held['samples_with_files_of_gone_sessions']} samples: the server left them open")
    if f["overdue"]["max"]:
        lines.append(f"the server fell behind: up to {f['overdue']['max']:.0f} sessions at once were still waiting "
                     f"past the session grace or listed past keep-finished, one by {f['most_late_s']:.0f} s "
                     f"(each holds its files and memory until finalised and forgotten)")
    lines.append(f"memory per connected device: {f['memory_per_device'] / MIB:.2f} MiB (steady median RSS less the "
                 f"idle server's, over {result['devices']} devices; aim at most {MEMORY_PER_DEVICE_AIM_MIB:g} MiB) -> "
                 f"{'met' if f['memory_per_device_aim_met'] else 'NOT met'}")
    lines.append(f"CPU: the recorder {f['server_cores']:.2f} cores over the steady part, the sending side (this "
                 f"process) {f['sender_cores']:.2f} over the run")
    ended = result["finished_earlier"]
    lines.append(f"sessions: {result['sessions_started']} started, {ended['sessions']} finished and left /status "
                 f"({ended['records']} of {result['records_sent']} records sent), "
                 f"{result['sessions_started'] - len(result['sessions_not_listed_by_ls'])} listed by recorder ls; "
                 f"{len(result['device_errors'])} device errors")
    for error in result["device_errors"][:5]:
        lines.append(f"  device error: {error}")
    if result["sessions_short_on_disk"]:
        lines.append(f"{len(result['sessions_short_on_disk'])} sessions hold fewer records than were sent, e.g. "
                     f"{result['sessions_short_on_disk'][0]}")
    if result["server_trouble"]:
        lines.append(f"the server's console told of trouble in {len(result['server_trouble'])} lines, e.g.:")
        lines += [f"  {line}" for line in result["server_trouble"][:10]]
    return "\n".join(lines)


def run(devices: int = DEVICES, duration_s: float = DURATION_S, *, session_s: float = SESSION_S,
        sample_every_s: float = SAMPLE_EVERY_S) -> dict:
    sends_rate = PERIOD / SEND_PERIOD_S
    print(f"{devices} devices over TLS for {duration_s:g} s, sessions of {session_s / 2:g} to {1.5 * session_s:g} s "
          f"each over two connections, then a new session; recorder serve --session-grace {SESSION_GRACE_S:g} "
          f"--keep-finished {KEEP_FINISHED_S:g}")
    print(f"one device sends {PROFILE}'s {PERIOD * 1000:.0f} ms batches, one every {SEND_PERIOD_S:g} s "
          f"({sends_rate:.0%} of real time)", flush=True)
    print(HEADER)
    result = measure(devices, duration_s, session_s=session_s, sample_every_s=sample_every_s,
                     on_sample=Printer(max(sample_every_s, duration_s / 20)))
    sends = result["one_device_sends"]
    print(f"one device sent {sends['bytes_per_s'] / 1e3:.0f} kB/s, {sends['records_per_s']:.0f} records/s")
    print(summary(result))
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder.bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=DEVICES)
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds of streaming")
    parser.add_argument("--session-seconds", type=float, default=SESSION_S, help="a session's mean length")
    parser.add_argument("--sample-every", type=float, default=SAMPLE_EVERY_S)
    parser.add_argument("--json", type=Path, help="write the samples and figures here")
    args = parser.parse_args(argv)
    result = run(args.devices, args.duration, session_s=args.session_seconds, sample_every_s=args.sample_every)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
