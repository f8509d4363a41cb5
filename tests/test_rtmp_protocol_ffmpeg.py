"""A real encoder: ffmpeg publishes two seconds of H.264 and AAC over TCP to the protocol core,
driven by a small threaded socket server. ffmpeg must be on PATH (CI installs it)."""

from __future__ import annotations

import socket
import subprocess
import threading

from recorder.rtmp.events import (
    AudioData,
    Connected,
    ConnectionClosed,
    Metadata,
    PublishRequested,
    Unpublished,
    VideoData,
)
from recorder.rtmp.protocol import ServerConnection

TIMEOUT_S = 60


class _OneConnectionServer:
    """Accepts one connection on 127.0.0.1 and feeds it to a ServerConnection until EOF,
    accepting every publish. Events and any exception are kept for the test to look at."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT_S)
        self.port = self.listener.getsockname()[1]
        self.events: list = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            sock, _ = self.listener.accept()
            with sock:
                sock.settimeout(TIMEOUT_S)
                core = ServerConnection()
                while True:
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:
                        # ffmpeg closes without reading the replies to its last commands, so its
                        # end may come as a reset instead of an end of file (the server takes
                        # both as the peer gone, as this does).
                        data = b""
                    events = core.receive_data(data)
                    for event in events:
                        if isinstance(event, PublishRequested):
                            core.accept_publish(event.stream_id)
                    self.events += events
                    out = core.data_to_send()
                    if out and data:  # nothing is sent to a peer that is gone
                        sock.sendall(out)
                    if not data:
                        return
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            self.listener.close()


def test_ffmpeg_publishes_h264_and_aac():
    server = _OneConnectionServer()
    url = f"rtmp://127.0.0.1:{server.port}/live/key?secret=x"
    command = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
               "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15", "-f", "lavfi", "-i", "sine",
               "-t", "2", "-c:v", "libx264", "-g", "30", "-c:a", "aac", "-f", "flv", url]
    finished = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S)
    server.thread.join(TIMEOUT_S)
    assert not server.thread.is_alive()
    assert server.error is None, repr(server.error)
    assert finished.returncode == 0, finished.stderr.decode(errors="replace")

    events = server.events
    connected = [e for e in events if isinstance(e, Connected)]
    assert len(connected) == 1 and connected[0].app == "live"
    assert connected[0].tc_url == f"rtmp://127.0.0.1:{server.port}/live"
    assert [e for e in events if isinstance(e, PublishRequested)] == [PublishRequested(1, "key?secret=x", "live")]

    (metadata,) = [e for e in events if isinstance(e, Metadata)]
    assert metadata.values["width"] == 320 and metadata.values["height"] == 240
    assert metadata.raw.startswith(b"\x02\x00\x0aonMetaData")

    video = [e for e in events if isinstance(e, VideoData)]
    assert video[0].payload[0] == 0x17 and video[0].payload[1] == 0  # AVC sequence header first
    frames = [e for e in video if e.payload[1] == 1]  # AVC NALUs (the rest: header, end of sequence)
    assert len(frames) == 30
    assert frames[0].payload[0] == 0x17  # a keyframe
    timestamps = [e.timestamp for e in frames]
    assert timestamps == sorted(timestamps) and 1850 <= timestamps[-1] <= 2000

    audio = [e for e in events if isinstance(e, AudioData)]
    assert audio[0].payload[:2] == b"\xaf\x00"  # AAC sequence header (AudioSpecificConfig)
    assert len(audio) > 80 and all(e.payload[0] >> 4 == 10 for e in audio)

    assert [e for e in events if isinstance(e, Unpublished)] == [Unpublished(1)]
    assert isinstance(events[-1], ConnectionClosed)
