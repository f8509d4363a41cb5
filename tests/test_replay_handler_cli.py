"""`recorder replay SESSION... --handler MODULE:FACTORY` run as a user runs it: a subprocess, a
handler module of the user's on PYTHONPATH, the sample capture stored by the real storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from storage_support import store_body

import recorder
from recorder.storage import Store

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HANDLERS = textwrap.dedent('''
    import json
    import os
    from recorder.sdk import StreamDataInterface

    seen = {}

    def make_handler():
        handler = StreamDataInterface()

        def on_imu(motion, label, device_id=None):
            seen.setdefault(device_id, []).append(motion.capture_timestamp_ns)

        def on_gaze(gaze, device_id):
            if gaze.capture_timestamp_ns % 3 == 0:
                raise RuntimeError("gaze refused")

        handler.register_imu_callback(on_imu)
        handler.register_eye_gaze_callback(on_gaze)
        return handler

    def not_a_handler():
        return 42
''')


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("cli") / "data"
    store = Store(data, sync=False)
    for device in sorted((ROOT / "sample_data").glob("1M0Y*")):
        store_body(store, json.loads((device / "headers.json").read_text()), (device / "body.srf").read_bytes())
    return data


@pytest.fixture(scope="module")
def handlers(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("handlers")
    (folder / "my_handlers.py").write_text(HANDLERS)
    return folder


def recorder_replay(*args, handlers: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(handlers))
    return subprocess.run([str(BIN / "recorder"), "replay", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_replay_into_a_handler_prints_the_summary_per_device_and_stream(data_dir, handlers):
    done = recorder_replay(data_dir, "--handler", "my_handlers:make_handler", "--speed", "0", handlers=handlers)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("replayed 3 devices, 2.00 s of timeline in ")
    for session in sorted(data_dir.glob("*/*")):
        with recorder.open_session(session) as s:
            gaze = s.table("eye-gaze", columns=["timestamp_ns"])["timestamp_ns"].to_pylist()
            imu = s.table("imu-left").num_rows + s.table("imu-right").num_rows
        errors = sum(1 for t in gaze if t % 3 == 0)
        assert errors > 0
        assert f"{s.serial}: {imu + len(gaze):,} callbacks, {errors} errors (eye-gaze {len(gaze)}, " \
               f"imu-left {imu // 2:,}, imu-right {imu // 2:,})" in lines
        reported = [line for line in done.stderr.splitlines() if f"device {s.serial}, stream eye-gaze" in line]
        assert len(reported) == errors and reported[0].endswith("RuntimeError: gaze refused")
    assert "Traceback" not in done.stderr


def test_streams_and_a_window_from_the_command_line(data_dir, handlers):
    done = recorder_replay(data_dir / "1M0YDA9HNM2419", "--handler", "my_handlers:make_handler", "--speed", "0",
                           "--streams", "imu-left", "--start", "0.5", "--end", "1.5", handlers=handlers)
    assert done.returncode == 0, done.stderr
    (session,) = (data_dir / "1M0YDA9HNM2419").iterdir()
    with recorder.open_session(session) as s:
        mapped = s.to_broadcaster_time(s.table("imu-left")["timestamp_ns"].to_numpy())
    # seconds from the start of the timeline the replay spans: with --streams, that stream's first row
    inside = ((mapped >= mapped[0] + 500_000_000) & (mapped < mapped[0] + 1_500_000_000)).sum()
    assert done.stdout.splitlines()[1] == f"1M0YDA9HNM2419: {inside:,} callbacks, 0 errors (imu-left {inside:,})"


def test_paced_replay_takes_the_timeline_duration(data_dir, handlers):
    done = recorder_replay(data_dir / "1M0YDA9HNM2419", "--handler", "my_handlers:make_handler",
                           "--streams", "eye-gaze", handlers=handlers)
    assert done.returncode == 0, done.stderr
    took = float(done.stdout.splitlines()[0].split(" in ")[1].rstrip(" s"))
    assert 1.8 <= took <= 2.3


@pytest.mark.parametrize(("args", "message"), [
    (["--handler", "my_handlers:nothing"], "Error: --handler 'my_handlers:nothing': my_handlers has no nothing"),
    (["--handler", "no_such_module:make"], "Error: --handler 'no_such_module:make': cannot import no_such_module"),
    (["--handler", "my_handlers"], "Error: --handler 'my_handlers': expected MODULE:FACTORY"),
    (["--handler", "my_handlers:not_a_handler"], "Error: the stream_data factory gave int"),
    (["--handler", "my_handlers:make_handler", "--to", "http://localhost:1"], "--handler and --to are two modes"),
    (["--handler", "my_handlers:make_handler", "--streams", "nope"], "Error: no session of the replay has stream nope"),
    (["--handler", "my_handlers:make_handler", "--start", "99"], "holds none of the timeline"),
    (["--loop"], "--start, --end, --streams and --loop go with --handler"),
])
def test_bad_arguments_are_clear_errors(data_dir, handlers, args, message):
    done = recorder_replay(data_dir, *args, handlers=handlers)
    assert done.returncode in (1, 2) and message in done.stderr and "Traceback" not in done.stderr


def test_a_path_that_holds_no_session_is_a_clear_error(tmp_path, handlers):
    done = recorder_replay(tmp_path, "--handler", "my_handlers:make_handler", handlers=handlers)
    assert done.returncode == 1 and f"Error: {tmp_path} is not a session" in done.stderr
    done = recorder_replay(tmp_path / "gone", "--handler", "my_handlers:make_handler", handlers=handlers)
    assert done.returncode == 1 and f"Error: {tmp_path / 'gone'}: no such session folder" in done.stderr


def test_on_a_terminal_a_progress_bar_shows_position_rate_and_percent(data_dir, handlers, monkeypatch):
    import io

    from rich.console import Console

    from recorder.sdk.command import replay_to_handler

    monkeypatch.syspath_prepend(str(handlers))
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    code = replay_to_handler([data_dir / "1M0YDA9HNM2419"], "my_handlers:make_handler", streams=["eye-gaze"],
                             end=1.0, console=console)
    shown = screen.getvalue()
    assert code == 0
    assert "replay" in shown and "%" in shown and "/1.0 s" in shown and "callbacks/s" in shown
    assert "1M0YDA9HNM2419: 30 callbacks" in shown
