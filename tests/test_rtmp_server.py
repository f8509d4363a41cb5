"""`recorder serve` as the RTMP server glasses push to, with ffmpeg as the real publisher: what
is recorded (FLV while it is written, MP4 once finished) holds exactly the packets sent."""

from __future__ import annotations

import json
import signal
from functools import partial

import pytest
import trio
from rtmp_support import (
    FPS,
    SECONDS,
    SIZE,
    by_kind,
    ffprobe,
    make_source,
    packets,
    publish,
    rtmp_folders,
    stream_of,
)
from server_support import ServerProcess, free_port, get

from recorder.rtmp.access import AccessPolicy
from recorder.rtmp.client import ClientConnection
from recorder.rtmp.config import RtmpConfig
from recorder.rtmp.flv import scan_flv


@pytest.fixture(scope="session")
def source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("rtmp-source") / "source.flv")


@pytest.fixture(scope="session")
def long_source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("rtmp-source") / "long.flv", seconds=6)


@pytest.fixture
def start_rtmp_server(start_server):
    async def start(grace_s: float = 30.0, **overrides):
        settings = dict(port=free_port(), host="127.0.0.1", grace_s=grace_s, idle_timeout_s=10.0,
                        handshake_timeout_s=5.0, console_interval_s=1.0)
        config = RtmpConfig(**{**settings, **overrides})
        server = await start_server(tls=False, rtmp=config)
        server.rtmp_url = f"rtmp://127.0.0.1:{config.port}"
        return server

    return start


def rtmp_port(server) -> int:
    return int(server.rtmp_url.rsplit(":", 1)[1])


async def rtmp_status(server) -> list[dict]:
    reply = await get(server.url, "/status")
    return reply.json["rtmp"]["streams"]


async def wait_for_state(server, state: str, timeout: float = 20.0) -> dict:
    with trio.fail_after(timeout):
        while True:
            streams = await rtmp_status(server)
            if streams and streams[-1]["state"] == state:
                return streams[-1]
            await trio.sleep(0.05)


def assert_same_packets(recorded, sent, *, offset_ms: int = 0):
    """Every video and audio packet sent is recorded, bytes, keyframe flag and timing unchanged."""
    for kind in ("video", "audio"):
        got, want = by_kind(recorded, kind), by_kind(sent, kind)
        assert len(got) == len(want), f"{kind}: {len(got)} packets recorded, {len(want)} sent"
        for g, w in zip(got, want, strict=True):
            assert g.data == w.data, f"{kind} packet at {w.dts} ms differs"
            assert g.keyframe == w.keyframe
            assert (g.dts - offset_ms, g.pts - offset_ms) == (w.dts, w.pts)


async def test_a_publish_is_recorded_exactly_as_flv_and_mp4(start_rtmp_server, source):
    server = await start_rtmp_server()
    result = await publish(source, f"{server.rtmp_url}/live/glasses-1")
    assert result.returncode == 0, result.stderr
    await wait_for_state(server, "stopping")
    await server.stop()  # finishes the session: index tables and MP4

    (folder,) = rtmp_folders(server.data_dir)
    assert folder.parent.name == "glasses-1" and folder.parent.parent.name == "live"
    sent = packets(source)
    assert_same_packets(packets(folder / "stream.flv"), sent)
    assert_same_packets(packets(folder / "stream.mp4"), sent)
    for name in ("stream.flv", "stream.mp4"):
        probe = ffprobe(folder / name)
        video, audio = stream_of(probe, "video"), stream_of(probe, "audio")
        assert (video["codec_name"], audio["codec_name"]) == ("h264", "aac")
        assert (video["width"], video["height"]) == SIZE
        assert int(video["nb_read_frames"]) == SECONDS * FPS
        assert abs(float(probe["format"]["duration"]) - SECONDS) < 0.2, probe["format"]
    manifest = json.loads((folder / "session.json").read_text())
    assert manifest["state"] == "finished"


async def test_audio_and_video_stay_together(start_rtmp_server, long_source):
    """Published in real time, the recorded audio and video keep the publisher's timing to the
    millisecond (the server adds no drift), and advance together through the stream."""
    server = await start_rtmp_server()
    result = await publish(long_source, f"{server.rtmp_url}/live/drift", realtime=True)
    assert result.returncode == 0, result.stderr
    await server.stop()
    (folder,) = rtmp_folders(server.data_dir)
    recorded = packets(folder / "stream.mp4")
    assert_same_packets(recorded, packets(long_source))
    video, audio = by_kind(recorded, "video"), by_kind(recorded, "audio")
    frame_ms, aac_ms = 1000 / FPS, 1024 * 1000 / 44100
    assert abs(video[0].pts - audio[0].pts) <= frame_ms
    # At every second the audio sent so far covers the same time as the video sent so far.
    video_pts = sorted(p.pts for p in video)
    for second in range(1, 6):
        t = second * 1000
        v = sum(1 for p in video_pts if p < t) * frame_ms
        a = sum(1 for p in audio if p.pts < t) * aac_ms
        assert abs(v - a) <= 2 * frame_ms, (second, v, a)


async def test_a_second_publisher_of_the_same_key_is_refused(start_rtmp_server, long_source, source):
    server = await start_rtmp_server()
    url = f"{server.rtmp_url}/live/busy"
    async with trio.open_nursery() as nursery:
        first = {}

        async def first_publisher():
            first["result"] = await publish(long_source, url, realtime=True)

        nursery.start_soon(first_publisher)
        await wait_for_state(server, "active")
        second = await publish(source, url)
        assert second.returncode != 0
        assert "already streaming" in second.stderr, second.stderr
    assert first["result"].returncode == 0, first["result"].stderr
    await server.stop()
    (folder,) = rtmp_folders(server.data_dir)
    assert_same_packets(packets(folder / "stream.flv"), packets(long_source))


async def test_a_re_publish_within_the_grace_period_continues_the_session(start_rtmp_server, source):
    server = await start_rtmp_server(grace_s=30.0)
    url = f"{server.rtmp_url}/live/retry"
    assert (await publish(source, url)).returncode == 0
    await wait_for_state(server, "stopping")
    await trio.sleep(0.5)
    assert (await publish(source, url)).returncode == 0
    stream = await wait_for_state(server, "stopping")
    assert stream["publishes"] == 2
    await server.stop()
    (folder,) = rtmp_folders(server.data_dir)
    recorded = packets(folder / "stream.mp4")
    sent = packets(source)
    for kind in ("video", "audio"):
        got, want = by_kind(recorded, kind), by_kind(sent, kind)
        assert len(got) == 2 * len(want)
        assert [p.data for p in got] == [p.data for p in want] * 2
        dts = [p.dts for p in got]
        assert dts == sorted(dts), f"{kind} timeline goes backwards across the re-publish"
        # The second publish starts after the first ended plus the time nobody was streaming.
        assert got[len(want)].dts - got[len(want) - 1].dts >= 500
    assert int(stream_of(ffprobe(folder / "stream.mp4"), "video")["nb_read_frames"]) == 2 * SECONDS * FPS
    manifest = json.loads((folder / "session.json").read_text())
    assert len(manifest["publishes"]) == 2


async def test_the_lifecycle_shows_in_status_and_metrics(start_rtmp_server, long_source):
    server = await start_rtmp_server(grace_s=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(publish, long_source, f"{server.rtmp_url}/live/watched", realtime=True))
        await trio.sleep(3.0)
        stream = await wait_for_state(server, "active")
        assert stream["app"] == "live" and stream["stream_key"] == "watched"
        assert abs(stream["fps"] - FPS) < 2, stream
        assert stream["bitrate_bps"] > 10_000
        assert (stream["width"], stream["height"]) == SIZE
        assert (stream["video_codec"], stream["audio_codec"]) == ("h264", "aac")
        metrics = (await get(server.url, "/metrics")).body.decode()
        session_id = stream["session_id"]
        assert f'recorder_rtmp_state{{app="live",session_id="{session_id}",state="active",stream_key="watched"}} 1.0' \
            in metrics
        assert "recorder_rtmp_video_frames_total" in metrics
    await wait_for_state(server, "stopping", timeout=5)
    stopped = await wait_for_state(server, "stopped", timeout=20)
    assert stopped["video_frames"] == 6 * FPS and stopped["dropped_frames"] == 0


async def test_the_allowlist_and_the_secret_keep_strangers_out(start_rtmp_server, source):
    server = await start_rtmp_server(policy=AccessPolicy(frozenset({"glasses-1"}), "s3cret"))
    refused = await publish(source, f"{server.rtmp_url}/live/glasses-1")
    assert refused.returncode != 0 and "secret" in refused.stderr, refused.stderr
    stranger = await publish(source, f"{server.rtmp_url}/live/other?secret=s3cret")
    assert stranger.returncode != 0 and "not allowed" in stranger.stderr, stranger.stderr
    ok = await publish(source, f"{server.rtmp_url}/live/glasses-1?secret=s3cret")
    assert ok.returncode == 0, ok.stderr
    await server.stop()
    (folder,) = rtmp_folders(server.data_dir)
    for path in folder.rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), f"the secret reached {path.name}"
    (accepted,) = json.loads((folder / "session.json").read_text())["publishes"]
    assert accepted["name"] == "glasses-1" and accepted["query_removed"] is True


async def test_kill_9_leaves_a_readable_flv_and_the_next_start_finishes_it(tmp_path, long_source):
    rtmp_port = free_port()
    args = ("--rtmp-port", str(rtmp_port), "--rtmp-grace", "1")
    server = ServerProcess(tmp_path / "data", tmp_path / "serve-1.log", args=args)
    await server.start()
    try:
        async with trio.open_nursery() as nursery:
            result = {}

            async def publisher():
                result["r"] = await publish(long_source, f"rtmp://127.0.0.1:{rtmp_port}/live/crash", realtime=True)

            nursery.start_soon(publisher)
            await trio.sleep(3.5)
            server.send_signal(signal.SIGKILL)
            await server.wait()
    finally:
        await server.aclose()
    assert result["r"].returncode != 0  # the server vanished under it
    (folder,) = rtmp_folders(tmp_path / "data")
    recorded = packets(folder / "stream.flv")
    sent = packets(long_source)
    video = by_kind(recorded, "video")
    assert len(video) >= 2 * FPS, "more than the last second was lost"
    # What is there is exactly what was sent, up to where the kill cut it.
    for kind in ("video", "audio"):
        got = by_kind(recorded, kind)
        assert [p.data for p in got] == [p.data for p in by_kind(sent, kind)[:len(got)]]
    assert int(stream_of(ffprobe(folder / "stream.flv"), "video")["nb_read_frames"]) == len(video)

    again = ServerProcess(tmp_path / "data", tmp_path / "serve-2.log", args=args)
    await again.start()
    try:
        with trio.fail_after(30):
            while json.loads((folder / "session.json").read_text())["state"] != "finished":
                await trio.sleep(0.1)
    finally:
        again.send_signal(signal.SIGTERM)
        await again.wait()
        await again.aclose()
    assert "recovered unfinished RTMP session" in again.output
    assert int(stream_of(ffprobe(folder / "stream.mp4"), "video")["nb_read_frames"]) == len(video)


class RawClient:
    """A hand-driven RTMP client on a real socket, for sending what ffmpeg never would."""

    def __init__(self, stream):
        self.stream = stream
        self.client = ClientConnection()

    @classmethod
    async def open(cls, url_port: int) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", url_port))

    async def flush(self) -> None:
        await self.stream.send_all(self.client.data_to_send())

    async def replies_until_closed(self, timeout: float = 10.0) -> list:
        """What the server says before it closes the connection (fails if it never does)."""
        received = []
        with trio.fail_after(timeout):
            while data := await self.stream.receive_some(65536):
                received += self.client.receive_data(data)
        return received

    @classmethod
    async def publishing(cls, server, key: str, stream=None) -> RawClient:
        """A client publishing `key` on stream 1, accepted (over `stream` if given)."""
        raw = cls(stream) if stream is not None else await cls.open(rtmp_port(server))
        await raw.handshake_and_connect()
        raw.client.create_stream()
        raw.client.publish(1, key)
        await raw.flush()
        await raw.until(lambda m: bool(m.info) and m.info.get("code") == "NetStream.Publish.Start")
        return raw

    async def handshake_and_connect(self) -> None:
        self.client.connect("live", "rtmp://127.0.0.1/live")
        await self.flush()
        await self.until(lambda m: m.name == "_result")

    async def until(self, wanted) -> None:
        """Read (answering as the client must: C2 after S1) until a message `wanted` accepts."""
        with trio.fail_after(10):
            while True:
                messages = self.client.receive_data(await self.stream.receive_some(65536))
                await self.flush()
                if any(wanted(m) for m in messages):
                    return


async def test_malformed_rtmp_gets_an_error_and_a_concurrent_publisher_is_unharmed(start_rtmp_server, long_source):
    server = await start_rtmp_server()
    port = rtmp_port(server)
    steady = {}

    async def steady_publisher():
        steady["r"] = await publish(long_source, f"{server.rtmp_url}/live/steady", realtime=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(steady_publisher)
        await wait_for_state(server, "active")

        # Not RTMP at all: an HTTP request, then RTMPE (encrypted RTMP).
        for opening in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x06" + bytes(1536)):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(opening)
            with trio.fail_after(10):
                while await stream.receive_some(65536):
                    pass  # the server closes it
            await stream.aclose()

        # A chunk that continues a message nobody began.
        raw = await RawClient.open(port)
        await raw.handshake_and_connect()
        raw.client.send_raw(b"\x47" + bytes(7))
        await raw.flush()
        (error,) = [m for m in await raw.replies_until_closed() if m.info and m.info.get("level") == "error"]
        assert "type-1 chunk header" in error.info["description"]

        # Playing: this server records, it does not play.
        raw = await RawClient.open(port)
        await raw.handshake_and_connect()
        raw.client.command("play", None, "steady", stream_id=1)
        await raw.flush()
        errors = [m for m in await raw.replies_until_closed() if m.info and m.info.get("level") == "error"]
        assert errors and "play" in errors[-1].info["description"].lower()

        # A publisher that sends a garbage video message, then vanishes mid-message.
        raw = await RawClient.publishing(server, "junk")
        raw.client.send_video(1, 0, b"\xff" * 300)
        video_header = bytes([0x06]) + (40).to_bytes(3, "big") + (5000).to_bytes(3, "big") + bytes([9])
        raw.client.send_raw(video_header + (1).to_bytes(4, "little") + b"partial")
        await raw.flush()
        await raw.stream.aclose()

        assert (await get(server.url, "/healthz")).status == 200
    assert steady["r"].returncode == 0, steady["r"].stderr
    await server.stop()
    folders = {f.parent.name: f for f in rtmp_folders(server.data_dir)}
    assert_same_packets(packets(folders["steady"] / "stream.flv"), packets(long_source))
    assert_same_packets(packets(folders["steady"] / "stream.mp4"), packets(long_source))
    junk = json.loads((folders["junk"] / "session.json").read_text())
    assert junk["state"] == "finished"
    assert len(junk["publishes"]) == 1


async def test_shutdown_takes_in_what_waits_unread_in_the_socket(start_rtmp_server):
    """Media a publisher sent just before the server stops is recorded, not dropped with the
    connection: the server reads its socket dry before it ends the publish."""
    server = await start_rtmp_server(read_pause_s=0.5)  # a long pause between reads: data waits
    raw = await RawClient.publishing(server, "last-words")
    frame = b"\x27\x01\x00\x00\x00" + bytes(200)  # an AVC inter frame
    for ts in range(0, 500, 50):
        raw.client.send_video(1, ts, frame)
    await raw.flush()
    await trio.sleep(0.2)  # read; the server now pauses before its next read
    for ts in range(500, 1000, 50):
        raw.client.send_video(1, ts, frame)
    await raw.flush()
    await server.stop()
    await raw.stream.aclose()
    (folder,) = rtmp_folders(server.data_dir)
    tags = scan_flv(folder / "stream.flv").tags
    assert [t.timestamp for t in tags if t.type == 9] == list(range(0, 1000, 50))


async def test_status_counts_frames_as_they_are_written(start_rtmp_server):
    """/status follows the stream batch by batch, not only at the once-a-second flush."""
    server = await start_rtmp_server(flush_interval_s=3600)
    raw = await RawClient.publishing(server, "counted")
    for ts in range(0, 700, 70):
        raw.client.send_video(1, ts, b"\x27\x01\x00\x00\x00" + bytes(100))
    await raw.flush()
    with trio.fail_after(10):
        while (await rtmp_status(server))[0]["video_frames"] != 10:
            await trio.sleep(0.05)
    assert (await rtmp_status(server))[0]["state"] == "active"
    await raw.stream.aclose()


async def test_rtmps_records_the_same_and_asks_glasses_for_no_certificate(start_server, source):
    """rtmps:// with the server's certificate, even when HTTPS devices must show theirs:
    ffmpeg publishing in TLS is recorded exactly; a plain RTMP client on that port is turned away."""
    rtmps_port = free_port()
    server = await start_server(verify_clients=True, rtmp=RtmpConfig(port=0, tls_port=rtmps_port, host="127.0.0.1"))
    result = await publish(source, f"rtmps://127.0.0.1:{rtmps_port}/live/private")
    assert result.returncode == 0, result.stderr
    plain = await publish(source, f"rtmp://127.0.0.1:{rtmps_port}/live/in-clear", timeout=30)
    assert plain.returncode != 0
    await server.stop()
    (folder,) = rtmp_folders(server.data_dir)
    assert folder.parent.name == "private"
    assert_same_packets(packets(folder / "stream.mp4"), packets(source))


async def deaf_publisher(server) -> RawClient:
    """A publisher that asks for replies (pings) but never reads them, until its sending stalls."""
    import socket as stdlib_socket

    from recorder.rtmp import messages as M

    sock = trio.socket.socket()
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", rtmp_port(server)))
    raw = await RawClient.publishing(server, "deaf", trio.SocketStream(sock))
    for n in range(60_000):
        raw.client.control(M.USER_CONTROL, M.PING_REQUEST.to_bytes(2, "big") + n.to_bytes(4, "big"))
    pings = raw.client.data_to_send()
    with trio.move_on_after(3):  # the client's own sending stalls once the server stops reading
        try:
            await raw.stream.send_all(pings)
        except trio.BrokenResourceError:
            pass
    return raw


async def test_a_client_that_never_reads_is_let_go(start_rtmp_server, source):
    """Such a client would hold its connection and stream key forever; after the idle timeout
    the server lets it go, and the key can be published again."""
    server = await start_rtmp_server(idle_timeout_s=2.0)
    raw = await deaf_publisher(server)
    stream = await wait_for_state(server, "error", timeout=20)
    assert "the client read nothing for 2 s" in stream["error"]
    result = await publish(source, f"{server.rtmp_url}/live/deaf")
    assert result.returncode == 0, result.stderr
    await raw.stream.aclose()


async def test_a_client_that_never_reads_does_not_hold_up_shutdown(start_rtmp_server):
    server = await start_rtmp_server(idle_timeout_s=3600)
    raw = await deaf_publisher(server)
    await server.stop()  # within its 30 s limit, not the hour the send could otherwise wait
    (folder,) = rtmp_folders(server.data_dir)
    assert json.loads((folder / "session.json").read_text())["state"] == "finished"
    await raw.stream.aclose()
