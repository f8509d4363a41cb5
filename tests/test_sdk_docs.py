"""docs/sdk.md's example runs as written, from a folder whose data/ holds sessions of two
recordings (two simulated profile9 devices and a device of the sample capture)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from test_reading import store_body

import recorder
from recorder.sim import sender
from recorder.sim.fleet import make_fleet
from recorder.storage import Store

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "sdk.md").read_text()


def test_the_replay_example_runs_as_written(tmp_path, capsys):
    store = Store(tmp_path / "data", sync=False)
    fleet = make_fleet(2, seed=5, profile="profile9")
    sender.write_fleet(fleet, tmp_path / "bodies", duration_s=1.0, batch_period_s=0.2)
    for device in [tmp_path / "bodies" / d.serial for d in fleet] + [ROOT / "sample_data" / "1M0YDA9HNM2419"]:
        store_body(store, json.loads((device / "headers.json").read_text()), (device / "body.srf").read_bytes())
    (block,) = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        namespace: dict = {}
        exec(compile(block, "docs/sdk.md", "exec"), namespace)
    finally:
        os.chdir(before)
    assert namespace["source"].is_finished() and namespace["source"].error is None
    assert namespace["counts"] == {fleet[0].serial: 5, fleet[1].serial: 5, "1M0YDA9HNM2419": 10}
    stored = {label: sum(recorder.open_session(tmp_path / p).table(label).num_rows for p in namespace["sessions"])
              for label in ("imu-left", "imu-right")}
    assert namespace["samples"] == stored and stored["imu-left"] > 0
    assert str(namespace["counts"]) in capsys.readouterr().out
