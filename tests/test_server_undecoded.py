"""A body that is not SRF1 version 1 (say, glasses streaming in their vendor's own format) is
stored verbatim, and the recorder says loudly that it did not decode it: on the console, in the
answer, in /status and in /metrics. A version-1 body next to it is not flagged."""

from __future__ import annotations

import re
import uuid

from server_support import ServerProcess, get, make_windows, request

from recorder.sim.fleet import make_fleet

# Not SRF1: another format's magic, a NUL, a quote and a backslash, then data.
VENDOR_BODY = b"VRS\x00'\\aria-frame" + bytes(range(256)) * 40


def undecoded_metric(text: str, serial: str) -> float:
    (value,) = [float(m.group(1)) for m in re.finditer(
        rf'^recorder_session_undecoded_bytes_total\{{device="{serial}",[^}}]*\}} (\S+)$', text, re.M)]
    return value


async def test_a_body_that_is_not_srf1_is_stored_and_flagged_everywhere(tmp_path):
    server = await ServerProcess(tmp_path / "data", tmp_path / "serve.log").start()
    try:
        vendor = {"session-id": str(uuid.uuid4()), "device-serial": "ARIA-VENDOR-1"}
        reply = await request(server.url, headers=vendor, body=VENDOR_BODY, chunked=True)
        assert reply.status == 200, reply.body
        assert reply.json["undecoded"] is True and "not SRF1 version 1" in reply.json["warning"]
        assert reply.json["records"] == 0

        (device,) = make_fleet(1, seed=3)
        windows = make_windows(device, 3)
        srf1 = await request(server.url, headers=device.headers(), body=b"".join(windows), chunked=True)
        assert srf1.status == 200 and "undecoded" not in srf1.json and srf1.json["records"] > 0

        sessions = {s["device"]: s for s in (await get(server.url, "/status")).json["sessions"]}
        assert sessions["ARIA-VENDOR-1"]["undecoded_body"] is True
        assert sessions["ARIA-VENDOR-1"]["undecoded_bytes"] == len(VENDOR_BODY)
        assert sessions[device.serial]["undecoded_body"] is False
        assert sessions[device.serial]["undecoded_bytes"] == 0

        metrics = (await get(server.url, "/metrics")).body.decode()
        assert undecoded_metric(metrics, "ARIA-VENDOR-1") == len(VENDOR_BODY)
        assert undecoded_metric(metrics, device.serial) == 0

        (line,) = [line for line in server.output.splitlines() if "not SRF1 version 1" in line]
        assert "[ARIA-VENDOR-1]" in line and vendor["session-id"] in line
        assert "'VRS\\x00\\x27\\x5caria-frame'" in line  # the first bytes, printable
        assert "stored verbatim" in line and "NOT decoded" in line
        assert line.isprintable()
    finally:
        await server.aclose()
