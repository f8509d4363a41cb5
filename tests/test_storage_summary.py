"""`recorder ls` and `recorder info` output: sessions, streams, counts, rates, sizes, gaps, TDM."""

from __future__ import annotations

import json

from storage_support import send

from recorder.sim.fleet import make_fleet
from recorder.storage import Store
from recorder.storage.summary import format_info, format_ls, session_info


def test_ls_and_info(tmp_path):
    store = Store(tmp_path)
    fleet = make_fleet(2, seed=51, profile="mp_streaming_demo")
    paths = []
    for device in fleet:
        writer = store.open_writer(device.serial, device.session_id)
        send(writer, device.window(0.0, 1.0), device.headers())
        writer.close()
        paths.append(writer.path)

    listing = format_ls(tmp_path)
    lines = listing.splitlines()
    assert lines[0].split()[:3] == ["SERIAL", "SESSION", "STATE"]
    assert len(lines) == 3
    for device in fleet:
        assert any(device.serial in line and device.session_id in line and "finished" in line for line in lines)
    assert "receiver" in listing

    info = session_info(paths[1])
    json.dumps(info)  # --json prints it as is
    assert info["serial"] == fleet[1].serial and info["state"] == "finished"
    imu = info["streams"]["imu-left"]
    assert imu["rows"] == 800 and abs(imu["rate_hz"] - 800) < 1 and imu["bytes"] > 0
    assert info["tdm"]["role"] == "receiver"
    assert info["camera_frames"]["camera-rgb"] == 5
    text = format_info(info)
    for needle in ("imu-left", "800.0 Hz", "camera-et-left", "receiver", "gaps 0", "calibration.json (parsed)"):
        assert needle in text, needle
    assert "broadcaster, or unsynchronised" in format_info(session_info(paths[0]))
    assert format_ls(tmp_path / "missing").startswith("no data folder")
