"""The peers section in its shortest form: one device's 0.4 s body, one client, once, into every
server. Figures are checked for presence and sense, never against a time; the uvicorn cells
only where the bench extra is installed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest

from recorder.bench import ingest, peers


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


def test_the_recorder_storing_raw_images_took_the_body(figures):
    cell = measured(figures, "recorder --raw-images store", True)
    assert cell["mb_per_s"] > 0 and cell["cpu_per_gb"] > 0 and cell["lost_records"] == 0


@pytest.mark.parametrize("tls", [True, False], ids=["TLS", "plain"])
def test_uvicorn_took_the_body(figures, tls):
    for module in peers.NEEDS["uvicorn"]:
        pytest.importorskip(module)
    cell = measured(figures, "uvicorn", tls)
    assert cell["mb_per_s"] > 0 and cell["cpu_per_gb"] > 0
    for ratios in (figures["ratios"], figures["ratios_workers"], figures["ratios_raw_images_stored"]):
        assert ratios["clients"] == 1 and ratios["mb_per_s"] > 0 and ratios["cpu_per_gb"] > 0


PARENT_OF_A_BUSY_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time\\nend = time.process_time() + 0.5\\nwhile time.process_time() < end: pass\\nprint('done', flush=True)\\ntime.sleep(60)"], stdout=subprocess.PIPE)
child.stdout.readline()
print("ready", flush=True)
time.sleep(60)
"""


def test_a_servers_cpu_counts_its_worker_processes():
    """recorder serve --workers records in child processes: the server's CPU is its tree's."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT_OF_A_BUSY_CHILD], stdout=subprocess.PIPE)
    try:
        assert parent.stdout.readline() == b"ready\n"
        assert len(ingest.process_tree(parent.pid)) == 2
        assert peers.process_cpu_seconds(parent.pid) < 0.4  # the parent alone only waited
        assert peers.server_cpu_seconds(parent.pid) >= 0.5  # with the child's half second
        assert ingest.cpu_seconds(parent.pid) >= 0.49  # the same, in clock ticks
    finally:
        for process in ingest.process_tree(parent.pid)[::-1]:
            os.kill(process, signal.SIGKILL)
        parent.wait()


def test_the_ceilings_and_the_disk_count(figures):
    json.dumps(figures)  # make bench saves every section's figures as JSON
    assert figures["loopback_mb_per_s"] > 0 and figures["disk_mb_per_s"] > 0
    assert figures["per_device_mb_per_s"] > 0
    assert figures["devices_the_disk_allows"] == figures["disk_mb_per_s"] / figures["per_device_mb_per_s"]


def test_the_stages_alone_and_the_bound_they_set(figures):
    stages = figures["stages"]
    assert stages["records"] > 0 and stages["body_mb"] > 0  # measure() raises unless every record was stored
    assert stages["decoding_s_per_gb"] > 0 and stages["storing_s_per_gb"] > 0
    found = figures["bound"]
    per_gb = found["s_per_gb"]
    assert per_gb["receiving"] == measured(figures, "trio+h11", True)["cpu_per_gb"]
    assert per_gb["sending"] == measured(figures, "recorder", True)["sending_cpu_per_gb"] > 0
    assert found["total_s_per_gb"] == pytest.approx(sum(per_gb.values()))
    assert found["mb_per_s"] == pytest.approx(found["cores"] / found["total_s_per_gb"] * 1e3)
    assert found["cores"] >= 1 and found["clients"] == 1
    uvicorn = figures["servers"][peers.key("uvicorn", True)]
    if "error" in uvicorn:
        assert found["of_uvicorn_tls"] is None
    else:
        assert found["of_uvicorn_tls"] == pytest.approx(found["mb_per_s"] / uvicorn["clients"][1]["mb_per_s"])
