"""recorder.sdk's RecorderServer: a script records as `serve` does while a handler factory gets
the live data, device by device; a slow or failing handler loses its own data, never the
recording's. LiveSource readers of the same server's GET /feed (over TLS) see the same rows."""

from __future__ import annotations

import collections
import re
import socket
import threading
import uuid

import numpy as np
import pytest
import trio
from server_support import PERIOD, get, make_windows, post_windows, stored_sequences

from recorder import certs, open_session
from recorder.process import ConfigurationError
from recorder.sdk import StreamDataInterface
from recorder.sdk.live import LiveSource
from recorder.sdk.server import RecorderServer
from recorder.sim import sender
from recorder.sim.fleet import make_fleet

SEED = 31
SECONDS = 2.0
# The callback kind each stored stream of profile9 feeds (imu is also told apart by its label).
KIND_OF_STREAM = {
    "barometer": "barometer", "battery": "battery", "camera-rgb": "rgb", "eye-gaze": "eye_gaze",
    "hand-tracking": "hand_pose", "magnetometer": "magnetometer", "mic": "audio", "ppg": "ppg",
    "temperature": "temperature", "time-domain-mapping": "time_domain_mapping", "vio": "vio",
    "vio-high-frequency": "vio_high_frequency", "imu-left": "imu", "imu-right": "imu",
    "slam-front-left": "slam", "slam-front-right": "slam", "slam-side-left": "slam", "slam-side-right": "slam",
}
ROW_KINDS = sorted(set(KIND_OF_STREAM.values()))
LARGE = dict(queue_batches=100_000, queue_bytes=4 << 30)  # nothing is dropped for want of room


class Watcher:
    """A user's handler factory: counts every callback per device and kind, keeps the IMU
    samples, and notes which thread each device's callbacks ran in."""

    def __init__(self, *, sleep_s: float = 0.0, failing_kind: str | None = None):
        self.sleep_s = sleep_s
        self.failing_kind = failing_kind
        self.calls = 0  # factory calls
        self.counts: collections.Counter = collections.Counter()
        self.imu: dict[tuple[str, str], list] = collections.defaultdict(list)
        self.threads: dict[str, set[str]] = collections.defaultdict(set)
        self.calibrations: dict[str, bytes] = {}
        self.fast = threading.Event()  # set: callbacks stop sleeping (the test is done with them)
        self._lock = threading.Lock()

    def factory(self) -> StreamDataInterface:
        with self._lock:
            self.calls += 1
        stream_data = StreamDataInterface(enable_image_decoding=False)
        for kind in ROW_KINDS:
            getattr(stream_data, f"register_{kind}_callback")(self._counter(kind))
        stream_data.register_imu_callback(self._imu)
        stream_data.register_device_calib_callback(self._calibration)
        return stream_data

    def _seen(self, device_id: str, kind: str) -> None:
        with self._lock:
            self.counts[(device_id, kind)] += 1
            self.threads[device_id].add(threading.current_thread().name)
        if self.sleep_s and not self.fast.is_set():
            self.fast.wait(self.sleep_s)
        if kind == self.failing_kind:
            raise RuntimeError("a handler bug")

    def _counter(self, kind: str):
        def callback(*args, device_id):
            self._seen(device_id, kind)
        return callback

    def _imu(self, sample, label, device_id):
        self.imu[(device_id, label)].append((sample.capture_timestamp_ns, *sample.accel_msec2))
        self._seen(device_id, "imu")

    def _calibration(self, calibration, device_id):
        self.calibrations[device_id] = calibration.data
        self._seen(device_id, "device_calib")


def metric(text: str, name: str, **labels) -> float:
    """The one sample of a metric with these labels (others may be there too) in /metrics."""
    values = []
    for line in text.splitlines():
        found = re.fullmatch(rf"{name}{{(.*)}} (\S+)", line)
        if found and all(f'{k}="{v}"' in found.group(1).split(",") for k, v in labels.items()):
            values.append(float(found.group(2)))
    assert len(values) == 1, (name, labels, values)
    return values[0]


def server_for(watcher: Watcher, tmp_path, certs_dir, **options) -> RecorderServer:
    return RecorderServer(watcher.factory, host="127.0.0.1", port=0, data_dir=tmp_path / "data", certs_dir=certs_dir,
                          session_grace_s=30.0, flush_interval_s=0.5, **options)


def stored_counts(path) -> tuple[collections.Counter, dict, int]:
    """Rows per callback kind, the IMU samples per label, and the records stored."""
    counts: collections.Counter = collections.Counter()
    imu = {}
    with open_session(path) as session:
        for stream in session.streams():
            table = session.table(stream)
            counts[KIND_OF_STREAM[stream]] += table.num_rows
            if stream.startswith("imu-"):
                accel = np.asarray(table["accel_msec2"].to_pylist(), np.float32)
                imu[stream] = [(t, *a) for t, a in zip(table["timestamp_ns"].to_pylist(), accel.tolist(), strict=True)]
        return counts, imu, len(stored_sequences(session))


async def test_handlers_see_what_three_devices_store_and_feed_readers_see_it_too(tmp_path, certs_dir, client_ssl):
    watcher, everything, one_device = Watcher(), Watcher(), Watcher()
    fleet = make_fleet(3, seed=SEED, profile="profile9")
    server = server_for(watcher, tmp_path, certs_dir, **LARGE)
    await trio.to_thread.run_sync(server.start)
    ca_file = str(certs_dir / certs.CA)
    readers = [LiveSource(server.url, everything.factory, ca_file=ca_file, **LARGE),
               LiveSource(server.url, one_device.factory, ca_file=ca_file, serials=[fleet[1].serial], **LARGE)]
    try:
        for reader in readers:
            reader.start()
            assert await trio.to_thread.run_sync(reader.wait_connected, 10) and reader.error is None, reader.error
        reports = await sender.stream_fleet(fleet, server.url, client_ssl, duration_s=SECONDS, batch_period_s=PERIOD,
                                            fast=True)
        assert [r.error for r in reports] == [None] * 3
        status = (await get(server.url, "/status", client_ssl)).json
    finally:
        assert await trio.to_thread.run_sync(server.stop)
    for reader in readers:
        assert await trio.to_thread.run_sync(reader.join, 30)
        assert reader.error is None, reader.error

    subscribers = {s["kind"]: s for s in status["feed"]["subscribers"]}
    assert set(subscribers) == {"handler", "http"} and len(status["feed"]["subscribers"]) == 3
    assert set(subscribers["handler"]["devices"]) == {d.serial for d in fleet}
    assert watcher.calls == everything.calls == 3 and one_device.calls == 1
    assert set(one_device.threads) == {fleet[1].serial}
    for device in fleet:
        assert server.devices[device.serial]["dropped_batches"] == 0
        assert server.devices[device.serial]["errors"] == 0
        counts, imu, records = stored_counts(tmp_path / "data" / device.serial / device.session_id)
        assert records == device.records_sent  # the whole session is stored
        for seen in (watcher, everything) + ((one_device,) if device is fleet[1] else ()):
            assert {kind: seen.counts[(device.serial, kind)] for kind in counts} == dict(counts)
            assert seen.counts[(device.serial, "device_calib")] == 1
            assert seen.calibrations[device.serial] == device.headers()["oatmeal-calibration"].encode()
            for label, samples in imu.items():
                assert seen.imu[(device.serial, label)] == samples
        # One thread per device, not the recording's own.
        (thread,) = watcher.threads[device.serial]
        assert thread != threading.main_thread().name and device.serial in thread
    assert len({next(iter(t)) for t in watcher.threads.values()}) == 3


async def test_a_slow_failing_handler_drops_its_own_batches_and_the_recording_is_whole(tmp_path, certs_dir,
                                                                                    client_ssl):
    watcher = Watcher(sleep_s=0.01, failing_kind="imu")
    fleet = make_fleet(2, seed=SEED + 1, profile="profile9")
    errors = []
    server = server_for(watcher, tmp_path, certs_dir, queue_batches=2,
                        on_error=lambda device_id, stream, timestamp_ns, exc: errors.append((device_id, stream, exc)))
    await trio.to_thread.run_sync(server.start)
    try:
        reports = await sender.stream_fleet(fleet, server.url, client_ssl, duration_s=SECONDS, batch_period_s=PERIOD,
                                            fast=True)
        for report in reports:
            assert report.error is None, report
            (response,) = report.responses
            assert response["status"] == "ok" and response["gaps"] == 0
        status = (await get(server.url, "/status", client_ssl)).json
        metrics = (await get(server.url, "/metrics", client_ssl)).body.decode()
    finally:
        watcher.fast.set()
        await trio.to_thread.run_sync(server.stop)

    (handler,) = [s for s in status["feed"]["subscribers"] if s["kind"] == "handler"]
    for device in fleet:
        figures = handler["devices"][device.serial]
        assert figures["dropped_batches"] > 0 and figures["dropped_rows"] > 0
        assert figures["delivered_batches"] > 0
        assert metric(metrics, "recorder_feed_dropped_batches_total", device=device.serial, kind="handler") > 0
        # Every record the simulator sent is stored, once.
        path = tmp_path / "data" / device.serial / device.session_id
        _, _, records = stored_counts(path)
        assert records == device.records_sent
        with open_session(path) as session:
            assert session.manifest["state"] == "finished"
            assert session.manifest["highest_sequence"] == device.records_sent - 1
    # The handler's bug was told to on_error and counted, and did not stop its other callbacks.
    assert errors and {(device_id, stream) for device_id, stream, _ in errors} <= {
        (d.serial, label) for d in fleet for label in ("imu-left", "imu-right")}
    assert all(isinstance(exc, RuntimeError) for _, _, exc in errors)
    assert sum(server.devices[d.serial]["errors"] for d in fleet) == len(errors)
    assert all(sum(device_id == d.serial for device_id, _, _ in errors) > 1 for d in fleet)


async def test_one_handler_per_device_session_whatever_its_reconnects(tmp_path, certs_dir, client_ssl):
    handlers: list[collections.Counter] = []

    def factory():
        counts = collections.Counter()
        handlers.append(counts)
        stream_data = StreamDataInterface()
        stream_data.register_imu_callback(lambda sample, label, device_id: counts.update([(device_id, label)]))
        return stream_data

    (first,) = make_fleet(1, seed=SEED + 2)
    (second,) = make_fleet(1, seed=SEED + 2, session_ids=[str(uuid.uuid4())])  # the same glasses, a new session
    assert first.serial == second.serial
    server = RecorderServer(factory, host="127.0.0.1", port=0, data_dir=tmp_path / "data", certs_dir=certs_dir, **LARGE)
    await trio.to_thread.run_sync(server.start)
    try:
        windows = make_windows(first, 10)
        for part in (windows[:5], windows[5:]):  # the second request, on a new connection, is a reconnect
            status, _ = await post_windows(server.url, client_ssl, first.headers(), part)
            assert status == 200
        status, _ = await post_windows(server.url, client_ssl, second.headers(), make_windows(second, 5))
        assert status == 200
    finally:
        assert await trio.to_thread.run_sync(server.stop)

    stored = []
    for device in (first, second):
        with open_session(tmp_path / "data" / device.serial / device.session_id) as session:
            stored.append(collections.Counter({(device.serial, label): session.table(label).num_rows
                                               for label in ("imu-left", "imu-right")}))
            assert session.manifest["requests"] == (2 if device is first else 1)
    assert sorted(map(sorted, (c.items() for c in handlers))) == sorted(map(sorted, (c.items() for c in stored)))


def test_a_server_that_cannot_start_says_why(tmp_path, certs_dir):
    with pytest.raises(ConfigurationError, match="recorder certs init"):
        RecorderServer(Watcher().factory, port=0, data_dir=tmp_path / "data", certs_dir=tmp_path / "no-certs").start()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = RecorderServer(Watcher().factory, host="127.0.0.1", port=taken.getsockname()[1],
                                data_dir=tmp_path / "data", certs_dir=certs_dir)
        with pytest.raises(OSError):
            server.start()
        assert server.stop()  # nothing to stop: it says so without raising again


async def test_feed_readers_of_a_recorder_that_verifies_clients_need_a_certificate(tmp_path, certs_dir):
    server = RecorderServer(Watcher().factory, host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                            certs_dir=certs_dir, verify_clients=True)
    await trio.to_thread.run_sync(server.start)
    ca_file = str(certs_dir / certs.CA)
    try:
        without = LiveSource(server.url, Watcher().factory, ca_file=ca_file).start()
        assert await trio.to_thread.run_sync(without.join, 20)
        assert "cert_file" in without.error and without.is_finished()
        with_certificate = LiveSource(server.url, Watcher().factory, ca_file=ca_file,
                                      cert_file=str(certs_dir / certs.DEVICE),
                                      key_file=str(certs_dir / certs.DEVICE_KEY)).start()
        assert await trio.to_thread.run_sync(with_certificate.wait_connected, 20)
        assert with_certificate.error is None
    finally:
        await trio.to_thread.run_sync(server.stop)
    assert await trio.to_thread.run_sync(with_certificate.join, 20)
    assert with_certificate.error is None  # the recorder's stop ended the feed in good order


async def test_a_factory_that_fails_loses_the_handlers_data_not_the_recording(tmp_path, certs_dir, client_ssl, capfd):
    def factory():
        raise RuntimeError("no handler today")

    fleet = make_fleet(2, seed=SEED + 3, profile="profile9")
    server = RecorderServer(factory, host="127.0.0.1", port=0, data_dir=tmp_path / "data", certs_dir=certs_dir)
    await trio.to_thread.run_sync(server.start)
    try:
        reports = await sender.stream_fleet(fleet, server.url, client_ssl, duration_s=1.0, batch_period_s=PERIOD,
                                            fast=True)
        assert [r.error for r in reports] == [None, None]
    finally:
        assert await trio.to_thread.run_sync(server.stop)
    for device in fleet:
        assert server.devices[device.serial]["errors"] > 0
        assert server.devices[device.serial]["delivered_rows"] == 0
        _, _, records = stored_counts(tmp_path / "data" / device.serial / device.session_id)
        assert records == device.records_sent
    err = capfd.readouterr().err
    assert all(f"the handler factory failed for device {d.serial}" in err for d in fleet)
    assert "no handler today" in err
