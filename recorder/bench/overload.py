"""Overload: devices recording in real time while a flood of new devices keeps connecting past
the server's connection limit; how many the recorder refuses (503 with Retry-After), and what
the devices already recording see meanwhile.

    python -m recorder.bench.overload [--devices 8] [--seconds 10] [--flood 32] [--limit 16]
    python -m recorder.bench overload              (a section of make bench)

Method. One `recorder serve` over TLS as a user starts it (one ingest worker per core), with
--max-connections LIMIT (shared out among the workers, each taking its share rounded up, so
that the recording devices fit whichever worker the kernel gives them to). DEVICES devices
send mp_streaming_demo's 200 ms batches in real time, each on its own connection, for SECONDS;
twice, each time under fresh serials: first alone (the baseline), then while FLOOD clients on
the same host each open a TLS connection for a device never seen, send its first batch and
wait for the answer, again and again, without waiting for Retry-After as a flood would. A
flood connection the recorder takes (a place was free) is held open, sending nothing, until
the phase ends, so the flood keeps the server at its limit. Per phase: each batch's lag (how
long after its due time it was sent: a recorder that cannot keep up pushes back through TCP),
records lost (sent but not in /status), the recording devices' answers, the server's CPU
(summed over its processes) and, for the flood, every outcome: answered 503 by the limit,
closed unanswered (past the bound of refusals answered at once), taken, or failed otherwise.

Figures (2-core VM, shared with the sending side and the flood's TLS handshakes; 8 devices,
10 s, flood of 32 clients, --max-connections 20, two workers): the flood made 1256 attempts
(143/s, bound by its own TLS handshakes on the shared cores), 1244 were refused 503 with
Retry-After, 12 were taken (the places left free: 20 less the 8 devices) and answered 200, none
was closed unanswered or failed otherwise. The recording devices: every one answered 200, 0
records lost, alone and flooded; each batch's lag (median, p99, max) 4.8, 38.1, 45.8 ms alone
and 24.6, 94.6, 99.9 ms flooded, the recorder at 0.38 and 0.89 cores. A run while the machine
was loaded by other work: 640 of 652 refused, lag p99 70 and 186 ms, nothing lost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import trio

from ..devicelink import Connection, SendError, Target
from ..sim.fleet import make_fleet
from .ingest import PERIOD, Replayed, recorder_serve, stored_records
from .peers import server_cpu_seconds

DEVICES = 8
SECONDS = 10.0
FLOOD = 32  # more than the places the limit leaves free: most keep knocking on a full server
# Shared out among the workers (ceil(LIMIT / workers) each) and the kernel spreads connections
# by their addresses' hash, not evenly: a worker's share must fit every recording device
# (and a status request) however they fall, for the flood, not chance, to meet the limit.
LIMIT = 2 * (DEVICES + 2)
# A request sent just before the phase ends is given this long to be refused all the same.
ANSWER_WAIT_S = 1.0
PROFILE = "mp_streaming_demo"


def device_windows(seconds: float) -> tuple[list[bytes], int, dict[str, str]]:
    """One simulated device's batches for `seconds`, replayed by every device under its own name."""
    device = make_fleet(1, seed=5, profile=PROFILE)[0]
    windows = [device.window(k * PERIOD, (k + 1) * PERIOD) for k in range(round(seconds / PERIOD))]
    return windows, device.records_sent, device.headers()


async def record(device: Replayed, target: Target, ssl_context, lags: list[float], answers: dict) -> None:
    """Stream the device's batches in real time, noting each batch's lag; its answer at the end."""
    conn = await Connection.open(target, ssl_context, timeout_s=30)
    try:
        await conn.start("/", device.headers())
        start = trio.current_time()
        try:
            for k, body in enumerate(device.windows):
                due = start + k * PERIOD
                await trio.sleep_until(due)
                await conn.send(body)
                lags.append(trio.current_time() - due)
        except (SendError, trio.BrokenResourceError):
            answers[device.serial] = await conn.response()  # answered early (refused): why
            return
        answers[device.serial] = await conn.finish()
    finally:
        await conn.aclose()


class FloodTally:
    def __init__(self):
        self.attempts = 0
        self.refused = 0  # 503, saying which limit and when to come back
        self.unanswered = 0  # closed without an answer
        self.taken = 0
        self.taken_answers: list[int] = []
        self.other: dict[str, int] = {}

    def note_other(self, what: str) -> None:
        self.other[what] = self.other.get(what, 0) + 1

    def as_dict(self, seconds: float) -> dict:
        return {"attempts": self.attempts, "refused_503": self.refused, "closed_unanswered": self.unanswered,
                "taken": self.taken, "taken_answers": sorted(self.taken_answers), "other": self.other,
                "refused_per_s": self.refused / seconds, "attempts_per_s": self.attempts / seconds}


async def flood_client(index: int, target: Target, ssl_context, window: bytes, headers: dict[str, str],
                       until: float, tally: FloodTally) -> None:
    """New devices, one after another, until `until`; a taken one is held open until then."""
    attempt = 0
    while trio.current_time() < until:
        attempt += 1
        tally.attempts += 1
        name = {"device-serial": f"FLOOD{index:03d}{attempt:05d}", "session-id": str(uuid.uuid4())}
        try:
            conn = await Connection.open(target, ssl_context, timeout_s=10)
        except (SendError, OSError, trio.BrokenResourceError) as exc:
            tally.note_other(f"connect: {type(exc).__name__}")
            continue
        try:
            await conn.start("/", dict(headers, **name))
            await conn.send(window)
            # A request the recorder took is answered only once its body ends, so one still
            # unanswered when the phase ends is ended then, and its answer tells: a refusal that
            # a loaded machine answered late is still a refusal, not a place taken.
            with trio.move_on_at(max(until, trio.current_time() + ANSWER_WAIT_S)) as waiting:
                status, payload = await conn.response()
            if waiting.cancelled_caught:
                status, payload = await conn.finish()
                if status == 200:
                    tally.taken += 1
                    tally.taken_answers.append(status)
                    return
            if status == 503 and payload.get("limit") == "max_connections" and payload.get("retry_after_s"):
                tally.refused += 1
            else:
                tally.note_other(f"HTTP {status}")
        except (SendError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            tally.unanswered += 1
        finally:
            await conn.aclose()


def lag_figures(lags: list[float]) -> dict:
    ordered = sorted(lags)
    return {"batches": len(ordered), "median_s": statistics.median(ordered),
            "p99_s": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], "max_s": ordered[-1]}


def phase(process, base: str, ssl_context, windows, records, headers, first: int, devices: int,
          flood: int) -> dict:
    """DEVICES devices for the windows' length, with `flood` flood clients beside them."""
    target = Target.parse(f"{base}/")
    recording = [Replayed(windows, records, headers, first + i) for i in range(devices)]
    lags: list[float] = []
    answers: dict = {}
    tally = FloodTally()
    seconds = len(windows) * PERIOD

    async def everything():
        async with trio.open_nursery() as nursery:
            for device in recording:
                nursery.start_soon(record, device, target, ssl_context, lags, answers)
            await trio.sleep(2 * PERIOD)  # every recording device connected before the flood
            until = trio.current_time() + seconds - 4 * PERIOD
            for i in range(flood):
                nursery.start_soon(flood_client, first + i, target, ssl_context, windows[0], headers, until, tally)

    cpu_before, started = server_cpu_seconds(process.pid), time.perf_counter()
    trio.run(everything)
    elapsed = time.perf_counter() - started
    cpu = server_cpu_seconds(process.pid) - cpu_before
    stored = stored_records(base, ssl_context)
    statuses = sorted(status for status, _ in answers.values())
    return {"devices": devices, "flood_clients": flood, "seconds": elapsed, "server_cpu_cores": cpu / elapsed,
            "answers": statuses, "lost_records": sum(max(0, records - stored.get(d.serial, 0)) for d in recording),
            "lag": lag_figures(lags), "flood": tally.as_dict(seconds - 6 * PERIOD) if flood else None}


def measure(devices: int = DEVICES, seconds: float = SECONDS, flood: int = FLOOD, limit: int = LIMIT, *,
            folder: Path = Path(".")) -> dict:
    windows, records, headers = device_windows(seconds)
    with tempfile.TemporaryDirectory(dir=folder) as tmp, \
            recorder_serve(Path(tmp), tls=True, options=("--max-connections", str(limit))) as (process, base, ctx):
        quiet = phase(process, base, ctx, windows, records, headers, 0, devices, 0)
        flooded = phase(process, base, ctx, windows, records, headers, 1000, devices, flood)
    return {"limit": limit, "devices": devices, "records_per_device": records, "quiet": quiet, "flooded": flooded}


def report(figures: dict) -> str:
    quiet, flooded = figures["quiet"], figures["flooded"]
    f = flooded["flood"]
    lines = [f"{figures['devices']} devices recording in real time, --max-connections {figures['limit']}, "
             f"a flood of {flooded['flood_clients']} clients connecting new devices over TLS"]
    lines.append(f"flood: {f['attempts']} attempts ({f['attempts_per_s']:.0f}/s): {f['refused_503']} refused 503 "
                 f"({f['refused_per_s']:.0f}/s), {f['closed_unanswered']} closed unanswered, {f['taken']} taken "
                 f"(answered {f['taken_answers']}), other {f['other'] or 'none'}")
    for name, p in (("alone", quiet), ("flooded", flooded)):
        lag = p["lag"]
        lines.append(f"recording devices {name:8s}: answers {p['answers']}, records lost {p['lost_records']}, lag "
                     f"median {lag['median_s'] * 1e3:.1f} ms, p99 {lag['p99_s'] * 1e3:.1f} ms, max "
                     f"{lag['max_s'] * 1e3:.1f} ms over {lag['batches']} batches; server {p['server_cpu_cores']:.2f} cores")
    return "\n".join(lines)


def run(devices: int = DEVICES, seconds: float = SECONDS, flood: int = FLOOD, limit: int = LIMIT) -> dict:
    figures = measure(devices, seconds, flood, limit)
    print(report(figures))
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder.bench.overload", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=DEVICES, help="devices recording in real time")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="seconds each phase records")
    parser.add_argument("--flood", type=int, default=FLOOD, help="flood clients connecting new devices")
    parser.add_argument("--limit", type=int, default=LIMIT, help="the server's --max-connections")
    args = parser.parse_args(argv)
    run(args.devices, args.seconds, args.flood, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
