"""Several simulated devices stream to the server at once over TLS: every session's stored
values equal what was sent (every stream, every field, every frame's bytes, the audio)."""

from __future__ import annotations

import pytest
import trio
from server_support import PERIOD, assert_folders_read_as_datasets, assert_session_equals, make_windows
from storage_support import expected_from

from recorder.sim import sender
from recorder.sim.fleet import make_fleet

DEVICES = 3
SECONDS = 1.0
SEED = 21


@pytest.mark.parametrize("one_sample_per_message", [True, False], ids=["one_sample_per_message", "batched"])
async def test_a_fleet_over_tls_is_stored_as_sent(server, client_ssl, one_sample_per_message):
    fleet = make_fleet(DEVICES, seed=SEED, profile="profile9", one_sample_per_message=one_sample_per_message)
    reports = await sender.stream_fleet(fleet, server.url, client_ssl, duration_s=SECONDS, batch_period_s=PERIOD,
                                        fast=True)
    for report in reports:
        assert report.error is None, report
        (response,) = report.responses
        assert response["status"] == "ok"
        assert (response["gaps"], response["resends"], response["corrupt_bytes"], response["malformed"]) == (0, 0, 0, 0)
    await server.stop()

    twins = make_fleet(DEVICES, seed=SEED, profile="profile9", one_sample_per_message=one_sample_per_message)
    assert [t.session_id for t in twins] == [d.session_id for d in fleet]
    for device, twin, report in zip(fleet, twins, reports, strict=True):
        bodies = make_windows(twin, round(SECONDS / PERIOD))
        assert sum(map(len, bodies)) == report.bytes
        expected = expected_from(bodies)
        path = server.session_path(device.serial, device.session_id)
        assert report.responses[0]["records"] == device.records_sent == twin.records_sent
        manifest = assert_session_equals(path, expected, records=device.records_sent)
        assert manifest["state"] == "finished"
        assert manifest["highest_sequence"] == device.records_sent - 1
        assert_folders_read_as_datasets(path)
        calibration = await trio.Path(path / "calibration.json").read_bytes()
        assert calibration == twin.headers()["oatmeal-calibration"].encode()
    assert len(list(server.data_dir.iterdir())) == DEVICES
