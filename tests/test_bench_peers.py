"""The peers section in its shortest form: one device's 0.4 s body, one client, once, into every
server. Figures are checked for presence and sense, never against a time; the uvicorn cells
only where the bench extra is installed."""

from __future__ import annotations

import json
import math

import pytest

from recorder.bench import peers


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peers")
    result = peers.run(seconds=0.4, repeats=1, clients=(1,), ceiling_mb=32, folder=folder)
    assert list(folder.iterdir()) == []  # the run cleans up after itself
    return result


def measured(figures, server: str, tls: bool) -> dict:
    cell = figures["servers"][peers.key(server, tls)]
    assert "error" not in cell, cell.get("error")
    return cell["clients"][1]


@pytest.mark.parametrize("tls", [True, False], ids=["TLS", "plain"])
@pytest.mark.parametrize("server", ["recorder", "recorder --workers", "trio+h11", "http.server"])
def test_every_server_took_the_body(figures, server, tls):
    cell = measured(figures, server, tls)
    assert cell["mb_per_s"] > 0 and math.isfinite(cell["mb_per_s"])
    assert cell["cpu_per_gb"] > 0 and math.isfinite(cell["cpu_per_gb"])
    (only,) = cell["runs"]
    assert only["clients"] == 1 and only["server_cpu_s"] > 0
    if server.startswith("recorder"):
        assert cell["lost_records"] == 0 == only["lost_records"]  # its /status has every record


@pytest.mark.parametrize("tls", [True, False], ids=["TLS", "plain"])
def test_uvicorn_took_the_body(figures, tls):
    for module in peers.NEEDS["uvicorn"]:
        pytest.importorskip(module)
    cell = measured(figures, "uvicorn", tls)
    assert cell["mb_per_s"] > 0 and cell["cpu_per_gb"] > 0
    for ratios in (figures["ratios"], figures["ratios_workers"]):
        assert ratios["clients"] == 1 and ratios["mb_per_s"] > 0 and ratios["cpu_per_gb"] > 0


def test_the_workers_cpu_is_counted(figures):
    """recorder serve --workers records in its worker processes: their CPU is the server's."""
    if peers.WORKERS < 2:
        pytest.skip("one core: --workers runs one worker")
    with_workers = measured(figures, "recorder --workers", True)["runs"][0]["server_cpu_s"]
    one_process = measured(figures, "recorder", True)["runs"][0]["server_cpu_s"]
    # The same work, spread over processes: the supervisor alone, which only watches, would
    # show next to nothing.
    assert with_workers > 0.3 * one_process


def test_the_ceilings_and_the_disk_count(figures):
    json.dumps(figures)  # make bench saves every section's figures as JSON
    assert figures["loopback_mb_per_s"] > 0 and figures["disk_mb_per_s"] > 0
    assert figures["per_device_mb_per_s"] > 0
    assert figures["devices_the_disk_allows"] == figures["disk_mb_per_s"] / figures["per_device_mb_per_s"]
