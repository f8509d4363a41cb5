"""calibration.json is the header as received, byte for byte; a bad one is kept and flagged; a
changed one is kept beside the first."""

from __future__ import annotations

import json

import pytest
from storage_support import send

from recorder import open_session
from recorder.sim.fleet import make_fleet
from recorder.storage import Store


@pytest.fixture(scope="module")
def device():
    return make_fleet(1, seed=3)[0]


def test_the_header_is_kept_byte_for_byte_and_parsed(tmp_path, device):
    headers = device.headers()
    writer = Store(tmp_path).open_writer(device.serial, device.session_id)
    send(writer, device.window(0, 0.2), headers)
    writer.close()
    reader = open_session(writer.path)
    assert reader.calibration_bytes == headers["oatmeal-calibration"].encode("latin-1")
    assert reader.calibration == json.loads(headers["oatmeal-calibration"])
    assert reader.manifest["calibration"]["parsed"] is True
    assert reader.manifest["calibration"]["changed_during_session"] is False


def test_non_ascii_bytes_survive_as_received(tmp_path, device):
    raw = '{"SerialNumber": "caf\u00e9 \u2603"}'.encode()  # UTF-8 bytes on the wire
    headers = {**device.headers(), "oatmeal-calibration": raw.decode("latin-1")}  # as h11 bytes -> str
    writer = Store(tmp_path).open_writer(device.serial, device.session_id)
    send(writer, device.window(0, 0.2), headers)
    writer.close()
    reader = open_session(writer.path)
    assert reader.calibration_bytes == raw
    assert reader.calibration == {"SerialNumber": "caf\u00e9 \u2603"}


def test_a_broken_calibration_is_kept_flagged_and_data_still_stored(tmp_path, device):
    broken = '{"CameraCalibrations": [ {"Label": "camera-slam-left", '  # cut short
    writer = Store(tmp_path).open_writer(device.serial, device.session_id)
    send(writer, device.window(0, 0.4), {**device.headers(), "oatmeal-calibration": broken})
    writer.close()
    reader = open_session(writer.path)
    assert reader.calibration_bytes == broken.encode()
    assert reader.calibration is None
    flag = reader.manifest["calibration"]
    assert flag["parsed"] is False and "not JSON" in flag["error"]
    assert reader.table("imu-left").num_rows > 0


def test_a_changed_calibration_is_kept_beside_the_first(tmp_path, device):
    headers = device.headers()
    changed = json.dumps({**json.loads(headers["oatmeal-calibration"]), "Recalibrated": True})
    store = Store(tmp_path)
    writer = store.open_writer(device.serial, device.session_id)
    send(writer, device.window(0, 0.2), headers)
    send(writer, device.window(0.2, 0.4), headers)  # the same again: nothing new
    send(writer, device.window(0.4, 0.6), {**headers, "oatmeal-calibration": changed})
    send(writer, device.window(0.6, 0.8), {k: v for k, v in headers.items() if k != "oatmeal-calibration"})
    writer.close()
    reader = open_session(writer.path)
    assert reader.calibration_bytes == headers["oatmeal-calibration"].encode()
    kept = reader.calibrations()
    assert [(e["file"], e["first_request"]) for e, _ in kept] == [("calibration.json", 0), ("calibration-2.json", 2)]
    assert kept[1][1] == changed.encode()
    assert reader.manifest["calibration"]["changed_during_session"] is True
    assert [r["calibration"] for r in reader.requests()] == ["calibration.json", "calibration.json",
                                                               "calibration-2.json", None]
