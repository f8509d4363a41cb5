"""Power loss: the power is cut at a seeded moment while three devices stream to `recorder serve`
over TLS, each in short requests on one connection; nothing a 200 acknowledged is lost, and every
file is readable. DURABILITY.md says what a 200 promises; this is the test of it.

The data folder is on a scratch ext4 filesystem (tests/powercut_support.py). At the cut the
filesystem is shut down so that nothing more reaches its device, the server is killed, and the
filesystem is unmounted and mounted again: it then holds what was durable at the cut. Then:
- before any repair, every file opens: Parquet parts, live files up to their last whole batch,
  every blob their index points at, each manifest;
- the server starts again (it recovers the unfinished sessions first): every record of every
  request answered 200, before the cut or after it, is stored, exactly as sent, once; the
  recovered session's highest sequence is at least the highest_sequence any 200 reported;
- each device resends from its first request not answered 200 (a 200 lets it drop what the
  request carried): no gap, and once the server has stopped, each session holds all its device
  sent, each record once, in files that open whole (every blob file whole zstd frames).

The server runs with parts finished every second (tests/power_loss_server.py), so that a cut
also lands while a live file is turned into Parquet. Negative controls run a round with the fsyncs
of one module of the storage code skipped (the live files', the blob files', or those of
recorder/storage/files.py: parts, manifests, the request log) and require the checks to fail:
the proof that a missing fsync, or a 200 sent before the data was durable, does not pass unseen.

POWER_CUTS rounds (default 3, the short form of every test run; `make power-loss` runs 100), one
cut each; round k has the seed POWER_SEED + k (POWER_SEED defaults to 1). A seed fixes the
devices, their request sizes, when each starts and the moment of the cut; a failure names its
seed, and `POWER_SEED=<seed> POWER_CUTS=1` runs that round again. POWER_CONTROLS=<module>,...
chooses the controls (`all`: every fsync skipped).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import trio
from crash_support import assert_every_file_opens, window_starts
from powercut_support import ScratchFilesystem, Unavailable, unavailable
from server_support import (
    PERIOD,
    ServerProcess,
    assert_folders_read_as_datasets,
    assert_stored_part,
    make_windows,
    session_folders,
    stored_sequences,
)
from storage_support import expected_from

from recorder import open_session
from recorder.devicelink import Connection, SendError, Target
from recorder.sim.fleet import make_fleet
from recorder.storage import layout
from recorder.storage.files import fsync_dir

CUTS = int(os.environ.get("POWER_CUTS", "3"))
FIRST_SEED = int(os.environ.get("POWER_SEED", "1"))
DEVICES = 3
PROFILE = "mp_streaming_demo"
WINDOWS = 25  # 5 s of data per device, one window (one chunk) per batch period, in real time
REQUEST_WINDOWS = (1, 3)  # each request carries this many windows, drawn per request
CUT_AFTER_S = (0.5, 4.0)  # the cut lands this long after the devices begin streaming
START_SPREAD_S = 0.3  # each device begins streaming up to this long after the first
ROLL_SECONDS = 1.0  # parts are finished this often (serve's default is 600 s)
SERVER = str(Path(__file__).with_name("power_loss_server.py"))
CUT_OFF = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError, SendError)


class PowerLossFinding(AssertionError):
    """What a power cut must not do, and did."""


class LostAcknowledged(PowerLossFinding):
    """Something a 200 acknowledged is not there after the power cut."""


class Unreadable(PowerLossFinding):
    """A file the power cut left does not open, or holds less than its index says."""


@dataclass
class Ack:
    windows: int  # the device's first `windows` windows are acknowledged
    highest_sequence: int  # as the 200 reported it
    at: float  # trio time the 200 was read


@dataclass
class Device:
    sim: object
    windows: list[bytes]
    starts: list[int]  # starts[k]: the sequence of window k's first record; starts[-1] all records
    sent: int = 0  # windows handed to the connection (the last may have gone out in part)
    acks: list[Ack] = field(default_factory=list)
    ended: str = ""  # how the streaming ended

    def path(self, data_dir: Path) -> Path:
        return Path(data_dir) / self.sim.serial / self.sim.session_id

    @property
    def acknowledged(self) -> int:
        """Windows acknowledged by a 200."""
        return self.acks[-1].windows if self.acks else 0


@dataclass
class Cut:
    seed: int
    after_s: float
    seconds: float = 0.0  # the whole round
    acks: int = 0  # 200s the devices read
    acks_after_cut: int = 0  # of which read after the cut (their data was durable before it)
    acknowledged: int = 0  # records acknowledged, all devices
    stored_beyond: int = 0  # records stored though no 200 acknowledged them (durable, unanswered)


def server(data_dir: Path, log: Path, certs_dir: Path, *, no_fsync_in: str | None = None,
           port: int | None = None) -> ServerProcess:
    """`recorder serve` with parts finished every ROLL_SECONDS; no_fsync_in: a module of the
    storage code (or "all") whose fsyncs are skipped, for the negative controls."""
    program = (sys.executable, SERVER, "--roll-seconds", str(ROLL_SECONDS),
               *(("--no-fsync-in", no_fsync_in) if no_fsync_in else ()))
    extra = {} if port is None else {"port": port}
    return ServerProcess(data_dir, log, certs_dir=certs_dir, program=program, **extra)


async def stream(device: Device, url: str, ssl_context, rng: random.Random, offset: float) -> None:
    """Requests of a few windows each on one connection, every window a chunk in real time,
    until the windows run out or the connection is cut; every 200 is noted."""
    await trio.sleep(offset)
    conn = None
    try:
        conn = await Connection.open(Target.parse(url), ssl_context)
        start = trio.current_time()
        while device.sent < WINDOWS:
            first = device.sent
            last = min(WINDOWS, first + rng.randint(*REQUEST_WINDOWS))
            await conn.start("/", device.sim.headers())
            for k in range(first, last):
                await trio.sleep_until(start + (k + 1) * PERIOD)
                device.sent = k + 1
                await conn.send(device.windows[k])
            status, reply = await conn.finish()
            if status != 200:
                device.ended = f"answered {status}: {reply.get('error')}"
                return
            device.acks.append(Ack(last, reply["highest_sequence"], trio.current_time()))
            # Not durability: the reply itself must be right for the checks to mean anything.
            assert reply["highest_sequence"] == device.starts[last] - 1, (device.sim.serial, last, reply)
        device.ended = "sent everything"
    except CUT_OFF as exc:
        device.ended = f"cut off: {type(exc).__name__}"
    finally:
        if conn is not None:
            await conn.aclose()


def check_files(data_dir: Path, where: str, *, recovered: bool) -> None:
    """assert_every_file_opens, and every manifest parses (it is replaced whole or not at all)."""
    try:
        assert_every_file_opens(data_dir, where, recovered=recovered)
    except AssertionError as exc:
        raise Unreadable(str(exc)) from exc
    for session in session_folders(data_dir):
        manifest = session / layout.MANIFEST
        if manifest.exists():
            try:
                json.loads(manifest.read_bytes())
            except ValueError as exc:
                raise Unreadable(f"{where}: {manifest.relative_to(data_dir)} does not parse: {exc}") from exc


def check_acknowledged(device: Device, data_dir: Path, tag: str) -> np.ndarray:
    """Every record a 200 acknowledged is stored, as sent, once; what else is stored is as sent;
    the highest sequence is at least what a 200 reported. Returns the stored sequences."""
    path, serial = device.path(data_dir), device.sim.serial
    acknowledged = device.starts[device.acknowledged]
    if not path.exists():
        if acknowledged:
            raise LostAcknowledged(f"{tag}: {serial}'s session is gone, {acknowledged} records acknowledged")
        return np.empty(0, np.uint64)
    with open_session(path) as reader:
        state, highest = reader.manifest["state"], reader.manifest["highest_sequence"]
    assert state == "recovered", (tag, serial, state)
    try:
        kept = assert_stored_part(path, expected_from(device.windows[:device.sent]),
                                  at_least_through=acknowledged - 1)
    except AssertionError as exc:
        if "records lost" in str(exc):
            raise LostAcknowledged(f"{tag}: {serial}: {exc} of {acknowledged} acknowledged") from exc
        raise AssertionError(f"{tag}: {serial}: {exc}") from exc
    if device.acks and (highest is None or highest < device.acks[-1].highest_sequence):
        raise LostAcknowledged(f"{tag}: {serial}: highest sequence {highest} after recovery, "
                               f"a 200 reported {device.acks[-1].highest_sequence}")
    assert_folders_read_as_datasets(path)
    return kept


async def resend(device: Device, url: str, ssl_context, tag: str) -> None:
    """The device sends on from its first unacknowledged window, in one request."""
    conn = await Connection.open(Target.parse(url), ssl_context, timeout_s=60)
    try:
        await conn.start("/", device.sim.headers())
        for window in device.windows[device.acknowledged:]:
            await conn.send(window)
        status, reply = await conn.finish()
    finally:
        await conn.aclose()
    what = f"{tag}: {device.sim.serial} sending on from window {device.acknowledged}"
    assert status == 200, (what, reply)
    assert reply["gaps"] == 0, (what, reply)  # the session's highest sequence kept every 200's promise
    assert reply["records"] + reply["resends"] == device.starts[-1] - device.starts[device.acknowledged], (what, reply)
    assert reply["highest_sequence"] == device.starts[-1] - 1, (what, reply)


async def power_cut_round(seed: int, fs: ScratchFilesystem, tmp: Path, certs_dir: Path, *,
                          no_fsync_in: str | None = None, cut_after_s: float | None = None) -> Cut:
    began = time.monotonic()
    rng = random.Random(f"power cut {seed}")  # a string seed is hashed: neighbouring seeds draw unrelated moments
    cut = Cut(seed, after_s=rng.uniform(*CUT_AFTER_S))
    if cut_after_s is not None:
        cut.after_s = cut_after_s
    offsets = [rng.uniform(0, START_SPREAD_S) for _ in range(DEVICES)]
    tag = f"seed {seed} (power cut {cut.after_s:.3f} s into the streaming)"
    devices = []
    for sim in make_fleet(DEVICES, seed=seed, profile=PROFILE):
        windows = make_windows(sim, WINDOWS)
        devices.append(Device(sim, windows, window_starts(windows)))
    request_rngs = [random.Random(f"power cut {seed} device {k}") for k in range(DEVICES)]

    fs.format()
    fs.mount()
    data_dir = fs.mountpoint / "data"
    first = server(data_dir, tmp / "serve-1.log", certs_dir, no_fsync_in=no_fsync_in)
    await first.start()
    ssl_context = first.ssl_context
    try:
        async with trio.open_nursery() as nursery:
            for device, offset, device_rng in zip(devices, offsets, request_rngs, strict=True):
                nursery.start_soon(stream, device, first.url, ssl_context, device_rng, offset)
            await trio.sleep(cut.after_s)
            fs.cut_power()
            cut_at = trio.current_time()
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL, tag
    finally:
        await first.aclose()
    fs.unmount()
    fs.mount()  # the journal is replayed: what was durable at the cut

    for device in devices:
        assert device.ended, f"{tag}: {device.sim.serial} still streaming"
        cut.acks += len(device.acks)
        cut.acks_after_cut += sum(1 for a in device.acks if a.at > cut_at)
        cut.acknowledged += device.starts[device.acknowledged]

    check_files(data_dir, f"{tag}, after the power cut", recovered=False)
    second = server(data_dir, tmp / "serve-2.log", certs_dir, port=first.port)
    try:
        await second.start()
    except AssertionError as exc:
        raise AssertionError(f"{tag}: the server did not start again after the power cut: {exc}") from exc
    try:
        check_files(data_dir, f"{tag}, after the recovery", recovered=True)
        for device in devices:
            kept = check_acknowledged(device, data_dir, tag)
            cut.stored_beyond += int(np.sum(kept >= device.starts[device.acknowledged]))
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for device in devices:
                    nursery.start_soon(resend, device, second.url, ssl_context, tag)
        second.send_signal(signal.SIGTERM)
        assert await second.wait() == 0, (tag, second.output[-2000:])
    finally:
        await second.aclose()

    check_files(data_dir, f"{tag}, after the resend", recovered=True)
    assert set(session_folders(data_dir)) == {device.path(data_dir) for device in devices}, tag
    for device in devices:
        # Every record once (the values of those stored before the resend were compared above;
        # tests/test_chaos.py compares whole sessions after a resend).
        with open_session(device.path(data_dir)) as reader:
            stored = np.sort(stored_sequences(reader))
            manifest = reader.manifest
        assert np.array_equal(stored, np.arange(device.starts[-1], dtype=np.uint64)), (
            f"{tag}: {device.sim.serial} after the resend: {len(stored)} records stored, "
            f"{len(np.unique(stored))} of them once, {device.starts[-1]} sent")
        assert manifest["state"] == "finished", (tag, manifest["state"])
        assert manifest["counters"]["gaps"] == 0, tag
    fs.unmount()
    cut.seconds = time.monotonic() - began
    return cut


def round_line(c: Cut) -> str:
    return (f"seed {c.seed}: cut at {c.after_s:.2f} s, {c.acks} 200s ({c.acks_after_cut} read after the cut), "
            f"{c.acknowledged} records acknowledged, all kept; {c.stored_beyond} more stored unacknowledged; "
            f"round {c.seconds:.1f} s")


def summary(cuts: list[Cut]) -> str:
    lines = [f"power loss: {len(cuts)} seeded power cut(s) survived, seeds {cuts[0].seed}..{cuts[-1].seed}, "
             f"{DEVICES} devices ({PROFILE}) over TLS each round, ext4 shut down at the cut"]
    if len(cuts) <= 3:  # the long form has printed a line per cut as it went
        lines += ["  " + round_line(c) for c in cuts]
    lines.append(f"{sum(c.acks for c in cuts)} 200s ({sum(c.acks_after_cut for c in cuts)} read after their cut), "
                 f"{sum(c.acknowledged for c in cuts)} records acknowledged, none lost; "
                 f"{np.mean([c.seconds for c in cuts]):.1f} s per round")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def scratch_fs():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    # Not under pytest's tmp folders: another pytest run's clean-up of old ones must never walk
    # into a mounted filesystem.
    folder = Path(tempfile.mkdtemp(prefix="recorder-power-loss-"))
    fs = ScratchFilesystem(folder / "ext4.img", folder / "mnt")
    try:
        try:
            fs.attach()
            fs.format()
            fs.mount()
            fs.cut_power()  # a kernel without the shutdown ioctl cannot cut the power
            fs.unmount()
        except Unavailable as exc:
            pytest.skip(f"no scratch ext4 filesystem here: {exc}")
        yield fs
    finally:
        fs.close()  # lazily unmounted if need be: the folder no longer leads into the filesystem
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def fresh_fs(scratch_fs):
    """The scratch filesystem, unmounted again whatever the test left."""
    yield scratch_fs
    if scratch_fs.mounted:
        try:
            scratch_fs.unmount()
        except Unavailable:
            scratch_fs.close()  # lazily, and the loop device with it: later tests skip
            raise


def test_a_power_cut_drops_what_was_not_made_durable(fresh_fs):
    """The mechanism itself: fsync'd data and a rename made durable with its folder survive the
    cut; data written without an fsync, and a rename whose folder was not fsync'd, do not."""
    fs = fresh_fs
    fs.format()
    fs.mount()
    root = fs.mountpoint

    def write(name: str, data: bytes, *, sync: bool) -> None:
        with open(root / name, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())

    def fsync_folder() -> None:
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    write("durable", b"d" * 10000, sync=True)
    write("moved", b"m" * 10000, sync=True)
    fsync_folder()
    write("cached", b"c" * 10000, sync=False)
    os.rename(root / "moved", root / "moved-unsynced")
    fs.cut_power()
    with pytest.raises(OSError):
        write("after", b"a", sync=True)
    fs.unmount()
    fs.mount()
    assert (root / "durable").read_bytes() == b"d" * 10000
    assert (root / "moved").read_bytes() == b"m" * 10000 and not (root / "moved-unsynced").exists()
    assert not (root / "cached").exists() or (root / "cached").read_bytes() == b""
    assert not (root / "after").exists()
    fs.unmount()


def test_a_folder_fsync_that_fails_does_not_pass_for_durable(fresh_fs):
    """After the cut every fsync fails (EIO). A rename's folder fsync that fails must raise like
    any other: were it ignored, the server could answer 200 for a rename that is not on disk."""
    fs = fresh_fs
    fs.format()
    fs.mount()
    folder = fs.mountpoint / "session"
    folder.mkdir()
    fs.cut_power()
    with pytest.raises(OSError) as failed:
        fsync_dir(folder)
    assert failed.value.errno == errno.EIO
    fs.unmount()


async def test_power_cuts_at_seeded_moments_lose_nothing_acknowledged(fresh_fs, tmp_path, certs_dir):
    cuts = []
    for k in range(CUTS):
        round_dir = tmp_path / f"round-{k}"
        round_dir.mkdir()
        cuts.append(await power_cut_round(FIRST_SEED + k, fresh_fs, round_dir, certs_dir))
        if CUTS > 3:  # the long form: a line per cut as it is survived
            print(f"\npower cut {k + 1}/{CUTS}: " + round_line(cuts[-1]), end="", flush=True)
    print("\n" + summary(cuts))


# Each a module of the storage code whose fsyncs a control skips ("all": every fsync).
CONTROLS = os.environ.get("POWER_CONTROLS", "recorder.storage.livefile,recorder.storage.blobfile,"
                                            "recorder.storage.files").split(",")


@pytest.mark.parametrize("no_fsync_in", CONTROLS)
async def test_the_checks_catch_a_server_that_skips_fsyncs(no_fsync_in, fresh_fs, tmp_path, certs_dir):
    """The negative controls: the same round with the fsyncs of one module of the storage code
    skipped (or all of them) loses records the server answered 200 for, or leaves a file that
    does not open, and the checks say so."""
    with pytest.raises(PowerLossFinding) as lost:
        # Late enough that every device has had requests answered.
        await power_cut_round(FIRST_SEED, fresh_fs, tmp_path, certs_dir, no_fsync_in=no_fsync_in, cut_after_s=3.0)
    print(f"\nwithout the fsyncs in {no_fsync_in}: {lost.value}")
