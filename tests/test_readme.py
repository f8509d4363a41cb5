"""The README's Python examples run as written, against a session stored from sample_data/."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import recorder
from recorder.storage import Store
from recorder.wire import Decoder

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def stored_sample_session(data_dir: Path) -> Path:
    """A receiving device of the sample capture (the smallest serial is the broadcaster), written
    by the server's storage."""
    device = sorted((ROOT / "sample_data").iterdir())[1]
    headers = json.loads((device / "headers.json").read_text())
    store = Store(data_dir, sync=False)
    writer = store.open_writer(headers["device-serial"], headers["session-id"])
    writer.begin_request(headers, "127.0.0.1:1", time.time_ns())
    decoder = Decoder()
    writer.write(decoder.feed((device / "body.srf").read_bytes()))
    writer.write(decoder.close())
    writer.end_request(decoder.counters, time.time_ns())
    writer.close()
    return store.session_path(headers["device-serial"], headers["session-id"])


def test_the_reading_api_is_at_the_top_level():
    from recorder import reading

    assert recorder.open_session is reading.open_session and recorder.open_dataset is reading.open_dataset
    assert set(recorder.__all__) >= {"open_session", "open_dataset", "Session"}


def test_the_session_reading_example_runs(tmp_path):
    (block,) = [b for b in python_blocks() if "open_session" in b]
    path = stored_sample_session(tmp_path / "data")
    code = re.sub(r'open_session\("[^"]*"\)', f"open_session({str(path)!r})", block)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["imu"].num_rows > 0
    assert namespace["image"].ndim == 2 and namespace["image"].size > 0
    assert len(namespace["t"]) == namespace["imu"].num_rows


def test_the_rtmp_reading_example_runs(tmp_path):
    from test_rtmp_flv import feed, make_flv, read_tags

    from recorder.rtmp.recording import Recording

    (block,) = [b for b in python_blocks() if "video_index.parquet" in b]
    rec = Recording.create(tmp_path / "data", "live", "glasses-1", sync=False)
    rec.begin_publish(client="10.0.0.7:5000", tc_url="rtmp://rec.local/live", publish_name="glasses-1")
    feed(rec, read_tags(make_flv(tmp_path / "clip.flv", seconds=1)))
    rec.end_publish(reason="unpublished")
    rec.finish()
    namespace: dict = {"folder": rec.folder}
    exec(compile(block, "README.md", "exec"), namespace)
    index = namespace["index"]
    assert index.filter(index["frame"]).num_rows == 15 and namespace["frame"].width == 320
