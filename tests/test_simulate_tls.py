"""`recorder simulate` as a real command against the recorder over TLS: the CA-file and
no-verify options decide whether the device trusts the server, as the glasses' CLI does."""

from __future__ import annotations

import sys

import trio

from recorder import open_session
from recorder.sim.fleet import make_fleet

SIMULATE = [sys.executable, "-m", "recorder.cli", "simulate", "--devices", "2", "--duration", "0.4", "--fast",
            "--seed", "21", "--profile", "mp_streaming_demo"]


async def simulate(*args: str):
    return await trio.run_process([*SIMULATE, *args], capture_stdout=True, capture_stderr=True, check=False)


async def test_simulate_trusts_the_recorder_through_its_ca_file(server, certs_dir):
    session_id = "0c6f3d2a-6b1e-4f0a-9d4c-2e8b7a5f1c3d"
    done = await simulate("--url", server.url, "--ca-file", str(certs_dir / "root_ca.pem"), "--session-id", session_id)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert "total: 2 device(s)" in done.stdout.decode()
    for device in make_fleet(2, seed=21, profile="mp_streaming_demo"):
        device.window(0.0, 0.4)  # the twin sends what the command sent
        with open_session(server.data_dir / device.serial / session_id) as stored:
            assert stored.manifest["highest_sequence"] == device.records_sent - 1


async def test_simulate_refuses_an_untrusted_recorder_unless_told_not_to_verify(server):
    refused = await simulate("--url", server.url)
    assert refused.returncode == 1
    assert "FAILED" in refused.stdout.decode() and "CERTIFICATE_VERIFY_FAILED" in refused.stdout.decode()
    trusted = await simulate("--url", server.url, "--no-verify-server-certs")
    assert trusted.returncode == 0, trusted.stdout.decode() + trusted.stderr.decode()
