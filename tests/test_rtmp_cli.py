"""`recorder ls`, `info` and `recover` know RTMP recordings as well as devices' sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_rtmp_flv import feed, make_flv, read_tags

from recorder.rtmp.recording import Recording

RECORDER = str(Path(sys.executable).with_name("recorder"))


def run(*args) -> str:
    result = subprocess.run([RECORDER, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.fixture
def crashed(tmp_path) -> Path:
    """A recording whose server died mid-publish: a tag cut in half at the FLV's end, no MP4."""
    tags = read_tags(make_flv(tmp_path / "clip.flv", seconds=2))
    rec = Recording.create(tmp_path / "data", "live", "glasses-1", sync=False)
    rec.begin_publish(client="10.0.0.7:5000", tc_url="rtmp://rec.local/live", publish_name="glasses-1")
    feed(rec, tags)
    rec.flush()
    with open(rec.folder / "stream.flv", "ab") as f:
        f.write(b"\x09\x00\x10\x00")  # the start of a tag that never ended
    return rec.folder


def test_recover_then_ls_and_info(crashed):
    data_dir = crashed.parents[3]
    before = run("ls", str(data_dir))
    assert "live/glasses-1" in before and "recording" in before
    out = run("recover", str(data_dir))
    assert str(crashed) in out
    manifest = json.loads((crashed / "session.json").read_text())
    assert manifest["state"] == "finished" and (crashed / "stream.mp4").exists()
    listing = run("ls", str(data_dir))
    assert "live/glasses-1" in listing and "finished" in listing and "30" in listing  # 2 s at 15 fps
    info = run("info", str(crashed))
    assert "live/glasses-1" in info and "h264 320x240, 30 frames" in info and "stream.mp4" in info
    details = json.loads(run("info", "--json", str(crashed)))
    assert details["stats"]["video_frames"] == 30 and details["recoveries"] == 1


def test_recover_one_recording(crashed):
    run("recover", str(crashed))
    assert json.loads((crashed / "session.json").read_text())["state"] == "finished"
    assert "nothing to repair" in run("recover", str(crashed))
