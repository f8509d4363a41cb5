"""The RTMP benchmark's own parts: reading the source's tags, and a paced, looping publisher
against the sans-IO server core on a loopback socket; then the section in its shortest form, for
real: two publishers of a 2 s source for a 2 s window into `recorder serve` and, where `make
bench` installed it, node-media-server. Figures are checked for presence and sense, never
against a time."""

from __future__ import annotations

import json
import math
from functools import partial

import pytest
import trio
from readme_support import run_readme_example

from recorder.bench import rtmp
from recorder.bench.rtmp import Published, load_source, publish
from recorder.rtmp import amf0, flv
from recorder.rtmp.events import AudioData, Connected, Metadata, PublishRequested, Unpublished, VideoData
from recorder.rtmp.protocol import ServerConnection

AVC_HEADER = bytes((0x17, 0, 0, 0, 0)) + b"avcC"
AAC_HEADER = bytes((0xAF, 0, 0x12, 0x10))


def video(keyframe: bool, body: bytes) -> bytes:
    return bytes((0x17 if keyframe else 0x27, 1, 0, 0, 0)) + body


def audio(body: bytes) -> bytes:
    return bytes((0xAF, 1)) + body


def write_source(path):
    """Video at 0, 10, 20 ms (a loop of 30 ms) and audio at 0, 15 and 30 ms (past the loop)."""
    tags = [
        (flv.SCRIPT, 0, amf0.encode("onMetaData", amf0.EcmaArray({"width": 64.0, "framerate": 100.0}))),
        (flv.VIDEO, 0, AVC_HEADER), (flv.AUDIO, 0, AAC_HEADER),
        (flv.VIDEO, 0, video(True, b"v0")), (flv.AUDIO, 0, audio(b"a0")),
        (flv.VIDEO, 10, video(False, b"v1")), (flv.AUDIO, 15, audio(b"a1")),
        (flv.VIDEO, 20, video(False, b"v2")), (flv.AUDIO, 30, audio(b"a2")),
    ]
    path.write_bytes(flv.file_header() + b"".join(flv.encode_tag(*t) for t in tags))
    return path


def test_load_source(tmp_path):
    source = load_source(write_source(tmp_path / "s.flv"))
    assert flv.read_script_data(source.metadata)[0] == "onMetaData"
    assert source.headers == [(flv.VIDEO, AVC_HEADER), (flv.AUDIO, AAC_HEADER)]
    assert source.loop_ms == 30
    assert source.video_frames == 3
    assert [(kind, ts) for kind, ts, _ in source.frames] == [
        (flv.VIDEO, 0), (flv.AUDIO, 0), (flv.VIDEO, 10), (flv.AUDIO, 15), (flv.VIDEO, 20)]


async def test_publish_loops_with_increasing_timestamps(tmp_path):
    source = load_source(write_source(tmp_path / "s.flv"))
    received, names, ended = [], [], trio.Event()

    async def handler(stream):
        server = ServerConnection()
        while data := await stream.receive_some(1 << 16):
            for event in server.receive_data(data):
                if isinstance(event, PublishRequested):
                    names.append(event.name)
                    server.accept_publish(event.stream_id)
                elif isinstance(event, Unpublished):
                    ended.set()
                elif not isinstance(event, Connected):
                    received.append(event)
            if out := server.data_to_send():
                await stream.send_all(out)

    result, stop = Published("bench-0"), trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(publish, source, "127.0.0.1", port, result, stop)
            await trio.sleep(0.2)
            stop.set()
            await ended.wait()
            nursery.cancel_scope.cancel()

    assert names == ["bench-0"] and result.error is None
    assert isinstance(received[0], Metadata) and received[0].values["width"] == 64.0
    media = [e for e in received if isinstance(e, (VideoData, AudioData))]
    assert [e.payload for e in media[:2]] == [AVC_HEADER, AAC_HEADER]  # sent once
    frames = [e for e in media[2:] if isinstance(e, VideoData)]
    assert len(frames) == result.video_frames >= 6  # two loops at least
    assert [e.timestamp for e in frames[:6]] == [0, 10, 20, 30, 40, 50]
    assert [e.payload[5:] for e in frames[:4]] == [b"v0", b"v1", b"v2", b"v0"]
    assert sum(isinstance(e, AudioData) for e in media[2:]) == result.audio_frames
    assert result.max_lateness_s < 0.5


PUBLISHERS = 2
NMS_MISSING = rtmp.nms_missing()


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rtmp")
    result = rtmp.run(steps=(PUBLISHERS,), window_s=2.0, idle_s=0.3, source_s=2, folder=folder)
    assert list(folder.iterdir()) == []  # the run cleans up after itself
    json.dumps(result)  # make bench saves every section's figures as JSON
    return result


def check_step(step: dict, server: str) -> None:
    assert step["server"] == server and step["streams"] == PUBLISHERS
    assert step["server_core_per_stream"] > 0 and math.isfinite(step["server_core_per_stream"])
    # It recorded, at about the rate sent (a 2 s window of a source whose rate varies in it).
    assert step["recorded_mb_per_s"] > 0 and 0.5 < step["recorded_share_of_sent"] < 1.5
    assert step["active_at_window_end"] == PUBLISHERS and not step["errors"]
    assert step["video_frames_sent"] > 0 and step["lost_frames"] == 0 == step["extra_frames"]
    assert step["video_frames_recorded"] == step["video_frames_sent"]


def test_the_recorder_recorded_every_frame(figures):
    (step,) = figures["steps"]
    check_step(step, "recorder")
    assert step["dropped_frames"] == 0  # the publishers' timestamps have no gap


def test_node_media_server_recorded_beside_it(figures):
    if NMS_MISSING:
        pytest.skip(f"node-media-server not measured: {NMS_MISSING}")
    assert figures["peer"]["left_out"] is None and figures["peer"]["version"]
    (step,) = figures["peer_steps"]
    check_step(step, "node-media-server")
    assert step["dropped_frames"] is None  # it has no such count
    (ratio,) = figures["ratios"]
    assert ratio["streams"] == PUBLISHERS and ratio["core_per_stream"] > 0
    assert figures["aim_peer_ratio_met"] is None  # judged at 20 publishers only


def test_without_node_media_server_the_recorder_alone(figures):
    if not NMS_MISSING:
        pytest.skip("node-media-server is installed")
    assert figures["peer"]["left_out"] == NMS_MISSING
    assert figures["peer_steps"] == [] == figures["ratios"] and figures["aim_peer_ratio_met"] is None


def test_the_readme_command_for_a_short_run_runs_as_written(tmp_path):
    """The README's short run of the rtmp section, run as written (with the repository's own
    interpreter): the recorder takes every frame of its publishers and says so."""
    words, out = run_readme_example("recorder.bench.rtmp", tmp_path)
    publishers = words[words.index("--steps") + 1]
    step = next(line for line in out.splitlines() if line.startswith(f"N={publishers} recorder:"))
    assert " lost 0 of " in step and step.endswith("-> sustained")
    assert "node-media-server: not measured" in out
    assert list(tmp_path.iterdir()) == []
