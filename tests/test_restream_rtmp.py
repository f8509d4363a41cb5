"""Re-publishing an RTMP recording to an RTMP server: recorded again, it holds the same tags."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import trio
from rtmp_support import make_source, publish, rtmp_folders
from server_support import RECORDER, free_port

from recorder.restream.rtmp import republish
from recorder.rtmp.config import RtmpConfig
from recorder.rtmp.flv import scan_flv
from recorder.rtmp.recording_layout import AUDIO_INDEX, FLV, VIDEO_INDEX


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("restream-rtmp") / "source.flv", seconds=2)


async def rtmp_server(start_server):
    config = RtmpConfig(port=free_port(), host="127.0.0.1", grace_s=30.0, idle_timeout_s=10.0,
                        handshake_timeout_s=5.0, console_interval_s=1.0)
    server = await start_server(tls=False, rtmp=config)
    server.rtmp_url = f"rtmp://127.0.0.1:{config.port}"
    return server


def tags(folder):
    """Every tag of the recording's FLV: type, timestamp and data bytes."""
    scan = scan_flv(folder / FLV)
    data = (folder / FLV).read_bytes()
    return [(t.type, t.timestamp, data[t.data_offset:t.data_offset + t.size]) for t in scan.tags]


async def test_an_rtmp_recording_republished_is_recorded_with_the_same_packets(start_server, source):
    original = await rtmp_server(start_server)
    result = await publish(source, f"{original.rtmp_url}/live/glasses-1")
    assert result.returncode == 0, result.stderr
    await original.stop()
    (recording,) = rtmp_folders(original.data_dir)

    copy = await rtmp_server(start_server)
    report = await republish(recording, f"{copy.rtmp_url}/live/glasses-again", speed=0)
    assert report.error is None and report.tags == report.total_tags > 0
    assert report.answers == ["NetStream.Publish.Start"]
    await copy.stop()
    (again,) = rtmp_folders(copy.data_dir)
    assert again.parent.name == "glasses-again"

    assert tags(again) == tags(recording)
    for index in (VIDEO_INDEX, AUDIO_INDEX):
        assert pq.read_table(again / index).equals(pq.read_table(recording / index)), index


async def test_replay_to_an_rtmp_app_publishes_each_recording_to_its_own_key(start_server, source):
    original = await rtmp_server(start_server)
    for key in ("glasses-1", "glasses-2"):
        result = await publish(source, f"{original.rtmp_url}/live/{key}")
        assert result.returncode == 0, result.stderr
    await original.stop()

    copy = await rtmp_server(start_server)
    with trio.fail_after(120):
        result = await trio.run_process([RECORDER, "replay", str(original.data_dir), "--to", f"{copy.rtmp_url}/live/",
                                         "--speed", "0"], capture_stdout=True, capture_stderr=True, check=False)
    out = result.stdout.decode()
    assert result.returncode == 0, (out, result.stderr.decode())
    assert out.count("NetStream.Publish.Start") == 2, out
    await copy.stop()
    recorded = {folder.parent.name: folder for folder in rtmp_folders(copy.data_dir)}
    assert sorted(recorded) == ["glasses-1", "glasses-2"]
    for folder in rtmp_folders(original.data_dir):
        assert tags(recorded[folder.parent.name]) == tags(folder)


async def test_several_recordings_to_one_key_is_a_clear_error(start_server, source):
    original = await rtmp_server(start_server)
    for key in ("glasses-1", "glasses-2"):
        assert (await publish(source, f"{original.rtmp_url}/live/{key}")).returncode == 0
    await original.stop()
    result = await trio.run_process([RECORDER, "replay", str(original.data_dir), "--to", "rtmp://127.0.0.1:9/live/one"],
                                    capture_stdout=True, capture_stderr=True, check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and "cannot all publish to the key 'one'" in err and "Traceback" not in err
