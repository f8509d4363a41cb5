"""RTMP ingest: N concurrent publishers of what Mentra Live glasses send (1280x720 30 fps H.264 at
2.5 Mbit/s with AAC-LC), recorded by a `recorder serve` subprocess; the server's CPU per stream
and the MB/s it records, against an aim of at most 2 % of one core per stream.

The source is made once by ffmpeg (testsrc2 moves, so the encoder spends its bit rate) and its
tags are replayed by every publisher, in one separate process (`python -m recorder.bench.rtmp
publish ...`) so that the server's CPU is measured alone: trio and the sans-IO client
(recorder.rtmp.client), one stream key each, paced in real time by the tags' timestamps, looping
with the timestamps shifted so that they keep increasing. The sequence headers and onMetaData
go once, at the start, as an encoder sends them.

The server's CPU (/proc, all its threads) is measured over a steady window: from the moment
every stream is active in /status until WINDOW_S later, while all still publish (and, for
comparison, for IDLE_S before the publishers start). Bytes recorded are the FLV files' sizes
at both ends of the window (/status has them too, but only as of the last once-a-second
flush). A step is sustained when every video frame sent is in the recording (/status, once the
publishers have left) and no publisher sent a tag LATE_S or more after its due time (a server
that cannot keep up pushes back through TCP, and the lateness shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from ..rtmp import amf0, flv
from ..rtmp import messages as M
from ..rtmp.client import DATA_CHUNK_STREAM, ClientConnection
from .ingest import cpu_seconds, free_port, wait_for

SIZE, FPS, SOURCE_S = (1280, 720), 30, 10
VIDEO_KBPS, AUDIO_KBPS, SAMPLE_RATE = 2500, 128, 44100
STEPS = (1, 5, 10, 20, 40)
WINDOW_S = 10.0
IDLE_S = 2.0  # the server's CPU with nothing connected, measured before each step
LATE_S = 1.0
AIM_CORE_PER_STREAM = 0.02
CHUNK_SIZE = 4096  # a chunk size publishers commonly announce (RTMP's default is 128)
APP = "live"


# -- the source ----------------------------------------------------------------------------------


def make_source(path: Path, *, seconds: int = SOURCE_S, size=SIZE, fps: int = FPS) -> Path:
    """H.264 (libx264 veryfast, VIDEO_KBPS capped, a keyframe every 2 s) and AAC-LC in an FLV."""
    rate = f"{VIDEO_KBPS}k"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size[0]}x{size[1]}:rate={fps}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={SAMPLE_RATE}",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", rate, "-maxrate", rate,
         "-bufsize", f"{2 * VIDEO_KBPS}k", "-g", str(2 * fps), "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ar", str(SAMPLE_RATE), "-f", "flv", str(path)],
        check=True, timeout=300, stdin=subprocess.DEVNULL)
    return path


@dataclass
class Source:
    """A FLV's tags as a publisher sends them: `headers` (onMetaData, then the sequence headers)
    once, then `frames` over and over, each loop `loop_ms` later than the one before."""

    metadata: bytes | None  # the script tag's data (AMF0 "onMetaData" and its array)
    headers: list[tuple[int, bytes]]  # (tag type, data) of the sequence headers
    frames: list[tuple[int, int, bytes]]  # (tag type, timestamp ms, data), in file order
    loop_ms: int
    video_frames: int  # coded pictures per loop

    @property
    def loop_bytes(self) -> int:
        return sum(len(d) for _, _, d in self.frames)


def load_source(path: Path) -> Source:
    """The tags of `path`. A loop lasts as long as its video frames (the last frame's timestamp
    plus one frame interval); audio after that is left out, so that timestamps never go back."""
    scan = flv.scan_flv(path)
    if not scan.complete:
        raise ValueError(f"{path}: {scan.problem or 'incomplete FLV'}")
    with open(path, "rb") as f:
        def data(tag: flv.FlvTag) -> bytes:
            f.seek(tag.data_offset)
            return f.read(tag.size)

        metadata, headers, media = None, [], []
        for tag in scan.tags:
            if tag.type == flv.SCRIPT:
                if metadata is None:
                    metadata = data(tag)
            elif tag.type == flv.VIDEO and tag.video is not None and tag.video.sequence_header:
                headers.append((flv.VIDEO, data(tag)))
            elif tag.type == flv.AUDIO and tag.audio is not None and tag.audio.sequence_header:
                headers.append((flv.AUDIO, data(tag)))
            elif tag.type == flv.VIDEO and tag.video is not None and tag.video.is_frame:
                media.append((flv.VIDEO, tag.timestamp, data(tag)))
            elif tag.type == flv.AUDIO and tag.audio is not None and tag.audio.is_frame:
                media.append((flv.AUDIO, tag.timestamp, data(tag)))
    video_ts = [ts for kind, ts, _ in media if kind == flv.VIDEO]
    if len(video_ts) < 2:
        raise ValueError(f"{path}: fewer than two video frames")
    loop_ms = round(video_ts[-1] + (video_ts[-1] - video_ts[0]) / (len(video_ts) - 1))
    frames = [(kind, ts, d) for kind, ts, d in media if ts < loop_ms]
    return Source(metadata, headers, frames, loop_ms, len(video_ts))


# -- the publishers ------------------------------------------------------------------------------


@dataclass
class Published:
    """What one publisher sent."""

    key: str
    video_frames: int = 0
    audio_frames: int = 0
    bytes: int = 0  # tag data
    max_lateness_s: float = 0.0
    error: str | None = None


async def _until(stream: trio.SocketStream, client: ClientConnection, wanted):
    """Send what the client queued and read the server's messages until wanted(message)."""
    while True:
        if out := client.data_to_send():
            await stream.send_all(out)
        data = await stream.receive_some(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection")
        for message in client.receive_data(data):
            if message.name == "_error" or (message.info or {}).get("level") == "error":
                raise ConnectionError(f"{message.name}: {message.info}")
            if wanted(message):
                if out := client.data_to_send():
                    await stream.send_all(out)
                return message


async def _drain(stream: trio.SocketStream, client: ClientConnection) -> None:
    """Read what the server sends while publishing (acknowledgements, pings)."""
    while data := await stream.receive_some(1 << 16):
        client.receive_data(data)


async def publish(source: Source, host: str, port: int, result: Published, stop: trio.Event) -> None:
    """Publish `source` to rtmp://host:port/APP/<result.key> in real time, looping, until `stop`."""
    stream = await trio.open_tcp_stream(host, port)
    try:
        client = ClientConnection(chunk_size=CHUNK_SIZE)
        connect = client.connect(APP, f"rtmp://{host}:{port}/{APP}")
        await _until(stream, client, lambda m: m.name == "_result" and m.values[1] == connect)
        create = client.create_stream()
        reply = await _until(stream, client, lambda m: m.name == "_result" and m.values[1] == create)
        stream_id = int(reply.values[3])
        client.publish(stream_id, result.key)
        await _until(stream, client, lambda m: m.name == "onStatus"
                     and (m.info or {}).get("code") == "NetStream.Publish.Start")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, stream, client)
            if source.metadata is not None:
                client.send_message(DATA_CHUNK_STREAM, M.DATA_AMF0, stream_id, 0,
                                    amf0.encode("@setDataFrame") + source.metadata, fmt=0)
            for kind, data in source.headers:
                (client.send_video if kind == flv.VIDEO else client.send_audio)(stream_id, 0, data)
            await stream.send_all(client.data_to_send())
            start = trio.current_time()
            loop = 0
            while not stop.is_set():
                shift = loop * source.loop_ms
                for kind, ts, data in source.frames:
                    due = start + (shift + ts) / 1000
                    await trio.sleep_until(due)
                    if stop.is_set():
                        break
                    if kind == flv.VIDEO:
                        client.send_video(stream_id, shift + ts, data)
                        result.video_frames += 1
                    else:
                        client.send_audio(stream_id, shift + ts, data)
                        result.audio_frames += 1
                    await stream.send_all(client.data_to_send())
                    result.bytes += len(data)
                    result.max_lateness_s = max(result.max_lateness_s, trio.current_time() - due)
                loop += 1
            client.command("deleteStream", None, float(stream_id))
            await stream.send_all(client.data_to_send())
            nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()


async def publish_all(source: Source, host: str, port: int, count: int, max_seconds: float) -> list[Published]:
    """`count` publishers (keys bench-0 ...) until a line (or the end) on stdin, or max_seconds."""
    results = [Published(f"bench-{i}") for i in range(count)]
    stop = trio.Event()

    async def one(result: Published) -> None:
        try:
            await publish(source, host, port, result, stop)
        except Exception as exc:  # reported with the counts; the other publishers go on
            while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            result.error = f"{type(exc).__name__}: {exc}"

    async def stop_on_stdin() -> None:
        with trio.move_on_after(max_seconds):
            await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        stop.set()

    async with trio.open_nursery() as nursery:
        for result in results:
            nursery.start_soon(one, result)
        nursery.start_soon(stop_on_stdin)
    return results


def publish_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder.bench.rtmp publish")
    parser.add_argument("source", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    source = load_source(args.source)
    results = trio.run(publish_all, source, args.host, args.port, args.count, args.max_seconds)
    print(json.dumps([asdict(r) for r in results]), flush=True)
    return 0


# -- one step ------------------------------------------------------------------------------------


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def _streams(base: str) -> dict[str, dict]:
    return {s["stream_key"]: s for s in _get_json(f"{base}/status")["rtmp"]["streams"] if s["app"] == APP}


def _flv_bytes(streams: dict[str, dict]) -> int:
    total = 0
    for s in streams.values():
        if s["path"]:
            try:
                total += os.stat(Path(s["path"]) / "stream.flv").st_size
            except OSError:
                pass
    return total


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_step(n: int, source_path: Path, source: Source) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-rtmp-", dir=".") as tmp:
        tmp = Path(tmp).resolve()
        http_port, rtmp_port = free_port(), free_port()
        while rtmp_port == http_port:
            rtmp_port = free_port()
        base = f"http://127.0.0.1:{http_port}"
        server_log, publishers_log = tmp / "server.log", tmp / "publishers.log"
        server = publishers = None
        try:
            with open(server_log, "wb") as log:
                server = subprocess.Popen(
                    [sys.executable, "-m", "recorder.cli", "serve", "--plain-http", "--host", "127.0.0.1",
                     "--port", str(http_port), "--rtmp-port", str(rtmp_port), "--data-dir", str(tmp / "data"),
                     "--rtmp-grace", "3600"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            wait_for("the server", lambda: _get_json(f"{base}/healthz") is not None, 30, server=server)
            idle_cpu, idle_started = cpu_seconds(server.pid), time.perf_counter()
            time.sleep(IDLE_S)
            idle_cores = (cpu_seconds(server.pid) - idle_cpu) / (time.perf_counter() - idle_started)
            with open(publishers_log, "wb") as log:
                publishers = subprocess.Popen(
                    [sys.executable, "-m", "recorder.bench.rtmp", "publish", str(source_path), "--port",
                     str(rtmp_port), "--count", str(n), "--max-seconds", str(WINDOW_S + 120)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
            keys = [f"bench-{i}" for i in range(n)]

            def when(states):
                def check():
                    streams = _streams(base)
                    return streams if all(streams.get(k, {}).get("state") in states for k in keys) else None
                return check

            streams = wait_for(f"{n} active streams", when({"active"}), 30 + n, server=server,
                                publishers=publishers)
            started = time.perf_counter()
            server_cpu, publishers_cpu = cpu_seconds(server.pid), cpu_seconds(publishers.pid)
            flv_before = _flv_bytes(streams)
            status_before = sum(s["bytes"] for s in streams.values())
            time.sleep(WINDOW_S)
            server_cpu = cpu_seconds(server.pid) - server_cpu
            publishers_cpu = cpu_seconds(publishers.pid) - publishers_cpu
            flv_after = _flv_bytes(streams)
            window = time.perf_counter() - started
            streams = _streams(base)
            status_after = sum(s["bytes"] for s in streams.values())
            still_active = sum(streams.get(k, {}).get("state") == "active" for k in keys)
            out, _ = publishers.communicate("stop\n", timeout=60)
            sent = {p["key"]: p for p in json.loads(out)}
            ended = wait_for("the publishes to end", when({"stopping", "error"}), 30, server=server)
        except Exception:
            for name, path in (("server", server_log), ("publishers", publishers_log)):
                if text := _tail(path):
                    print(f"-- {name} log:\n{text}", file=sys.stderr)
            raise
        finally:
            for p in (publishers, server):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait(timeout=30)
    lost = sum(max(0, sent[k]["video_frames"] - ended[k]["video_frames"]) for k in keys)
    extra = sum(max(0, ended[k]["video_frames"] - sent[k]["video_frames"]) for k in keys)
    errors = {k: sent[k]["error"] for k in keys if sent[k]["error"]}
    lateness = max(sent[k]["max_lateness_s"] for k in keys)
    server_cores = server_cpu / window
    recorded = (flv_after - flv_before) / window / 1e6
    return {
        "streams": n, "window_s": window, "server_idle_cores": idle_cores, "server_cpu_cores": server_cores,
        "server_core_per_stream": server_cores / n, "publishers_cpu_cores": publishers_cpu / window,
        "publishers_core_per_stream": publishers_cpu / window / n, "recorded_mb_per_s": recorded,
        "recorded_mb_per_s_per_stream": recorded / n,
        "status_mb_per_s": (status_after - status_before) / window / 1e6,
        "active_at_window_end": still_active, "video_frames_sent": sum(sent[k]["video_frames"] for k in keys),
        "video_frames_recorded": sum(ended[k]["video_frames"] for k in keys), "lost_frames": lost,
        "extra_frames": extra, "dropped_frames": sum(ended[k]["dropped_frames"] for k in keys),
        "max_lateness_s": lateness, "errors": errors,
        "sustained": lost == 0 and extra == 0 and not errors and still_active == n and lateness < LATE_S,
    }


def describe(r: dict) -> str:
    n = r["streams"]
    return (f"N={n}: server {100 * r['server_core_per_stream']:.1f} % of a core per stream "
            f"({r['server_cpu_cores']:.2f} cores; {r['server_idle_cores']:.3f} idle), "
            f"{r['recorded_mb_per_s']:.1f} MB/s recorded "
            f"({r['recorded_mb_per_s_per_stream']:.2f} MB/s per stream), publishers "
            f"{100 * r['publishers_core_per_stream']:.1f} %/stream, max lateness {r['max_lateness_s']:.2f} s, "
            f"lost {r['lost_frames']}" + (f", errors {r['errors']}" if r["errors"] else "")
            + (f", only {r['active_at_window_end']} active at the window's end" if r["active_at_window_end"] != n
               else "")
            + f" -> {'sustained' if r['sustained'] else 'NOT sustained'}")


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-rtmp-source-", dir=".") as tmp:
        path = make_source(Path(tmp).resolve() / "source.flv")
        size = path.stat().st_size
        source = load_source(path)
        mbit = size * 8 / SOURCE_S / 1e6
        print(f"source: {SIZE[0]}x{SIZE[1]} {FPS} fps H.264 ({VIDEO_KBPS} kbit/s asked) + AAC-LC {AUDIO_KBPS} kbit/s, "
              f"{SOURCE_S} s FLV of {size / 1e6:.2f} MB = {mbit:.2f} Mbit/s measured "
              f"({source.loop_bytes * 8 / source.loop_ms / 1e3:.2f} Mbit/s of audio and video data per loop of "
              f"{source.loop_ms} ms, {source.video_frames} video frames)")
        steps, sustained = [], 0
        for n in STEPS:
            result = run_step(n, path, source)
            steps.append(result)
            print(describe(result), flush=True)
            if not result["sustained"]:
                break
            sustained = n
    aim = f"aim: at most {100 * AIM_CORE_PER_STREAM:g} % of a core per stream"
    ran = [r for r in steps if r["sustained"]]
    met = [r for r in ran if r["server_core_per_stream"] <= AIM_CORE_PER_STREAM]
    missed = [r for r in ran if r["server_core_per_stream"] > AIM_CORE_PER_STREAM]

    def listed(rs):
        return ", ".join(f"N={r['streams']} ({100 * r['server_core_per_stream']:.1f} %)" for r in rs)

    if not ran:
        print(f"{aim}: no step was sustained")
    else:
        print(f"{aim}: met at {listed(met) or 'no step'}; missed at {listed(missed) or 'no step'} "
              f"(streams sustained: {sustained})")
    return {"source_mbit_per_s": mbit, "source_bytes": size, "loop_ms": source.loop_ms,
            "aim_core_per_stream": AIM_CORE_PER_STREAM, "window_s": WINDOW_S, "steps": steps,
            "streams_sustained": sustained}


if __name__ == "__main__":
    if sys.argv[1:2] == ["publish"]:
        sys.exit(publish_main(sys.argv[2:]))
    print("usage: python -m recorder.bench.rtmp publish SOURCE --port PORT [--count N]; "
          "python -m recorder.bench rtmp runs the section", file=sys.stderr)
    sys.exit(2)
