"""The README's examples run as written: its first steps in a shell (a real server, the real
simulator, curl), and its Python blocks against sessions the default simulator profile makes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_support import free_port
from storage_support import store_body

import recorder
from recorder.sim import sender
from recorder.sim.fleet import make_fleet
from recorder.storage import Store
from recorder.wire import Decoder

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def shell_commands(section: str) -> list[str]:
    """The commands of the first ```sh block under `## section`, continuation lines joined."""
    text = README[README.index(f"## {section}\n"):]
    block = re.search(r"```sh\n(.*?)```", text, flags=re.S).group(1)
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def store_sessions(data_dir: Path, devices: int = 2, duration_s: float = 1.0) -> list[Path]:
    """Devices of the default simulator profile, as `recorder simulate` makes them, stored by
    the server's storage."""
    fleet = make_fleet(devices, seed=5, profile="profile9")
    bodies = data_dir.parent / "bodies"
    sender.write_fleet(fleet, bodies, duration_s=duration_s, batch_period_s=0.2)
    return [store_body(Store(data_dir, sync=False), json.loads((bodies / device.serial / "headers.json").read_text()),
                          (bodies / device.serial / "body.srf").read_bytes()) for device in fleet]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A folder like the repository's, with data/ holding two profile9 sessions."""
    folder = tmp_path_factory.mktemp("workspace")
    (folder / "sample_data").symlink_to(ROOT / "sample_data")
    return folder, store_sessions(folder / "data")


def run_block(block: str, cwd: Path, namespace: dict | None = None) -> dict:
    namespace = {} if namespace is None else namespace
    before = Path.cwd()
    os.chdir(cwd)
    try:
        exec(compile(block, "README.md", "exec"), namespace)
    finally:
        os.chdir(before)
    return namespace


def test_the_reading_api_is_at_the_top_level():
    from recorder import reading

    assert recorder.open_session is reading.open_session and recorder.open_dataset is reading.open_dataset
    assert set(recorder.__all__) >= {"open_session", "open_dataset", "Session"}


def test_the_session_reading_example_runs(workspace):
    folder, sessions = workspace
    (block,) = [b for b in python_blocks() if "open_session(" in b]
    receiver = next(p for p in sessions if (p / "time-domain-mapping").is_dir())
    code = re.sub(r'open_session\("[^"]*"\)', f"open_session({str(receiver)!r})", block)
    namespace = run_block(code, folder)
    assert namespace["imu"].column_names == ["timestamp_ns", "accel_msec2"] and namespace["imu"].num_rows > 0
    assert 0 < namespace["first_second"].num_rows <= namespace["imu"].num_rows
    assert "status_label" in namespace["vio"].column_names
    assert namespace["image"].ndim == 3 and namespace["image"].shape[2] == 3  # camera-rgb decoded
    assert namespace["pcm"].shape[1] == 8 and namespace["rate"] == 16_000
    assert len(namespace["t"]) == namespace["imu"].num_rows


def test_the_dataset_example_runs(workspace, capsys):
    folder, sessions = workspace
    (block,) = [b for b in python_blocks() if "open_dataset(" in b]
    run_block(block, folder)
    printed = capsys.readouterr().out
    for path in sessions:
        assert path.parent.name in printed and path.name in printed


def test_the_replay_example_runs(workspace):
    folder, sessions = workspace
    (block,) = [b for b in python_blocks() if "create_replay_source(" in b]
    namespace = run_block(block, folder)
    rgb_frames = {path.parent.name: 5 for path in sessions}  # profile9: 5 fps, 1 s per device
    assert namespace["counts"] == rgb_frames
    assert namespace["samples"]["imu-left"] == namespace["samples"]["imu-right"] == 800 * len(sessions)


def test_the_decoding_example_runs(capsys):
    (block,) = [b for b in python_blocks() if "Decoder()" in b]
    namespace = run_block(block, ROOT)
    assert namespace["decoder"].counters.records > 0
    assert "IMU_EVENT" in capsys.readouterr().out


def test_the_rtmp_reading_example_runs(tmp_path):
    from test_rtmp_flv import feed, make_flv, read_tags

    from recorder.rtmp.recording import Recording

    (block,) = [b for b in python_blocks() if "video_index.parquet" in b]
    rec = Recording.create(tmp_path / "data", "live", "glasses-1", sync=False)
    rec.begin_publish(client="10.0.0.7:5000", tc_url="rtmp://rec.local/live", publish_name="glasses-1")
    feed(rec, read_tags(make_flv(tmp_path / "clip.flv", seconds=1)))
    rec.end_publish(reason="unpublished")
    rec.finish()
    namespace = run_block(block, tmp_path, {"folder": rec.folder})
    index = namespace["index"]
    assert index.filter(index["frame"]).num_rows == 15 and namespace["frame"].width == 320


def wait_for_port(port: int, server: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited: {server.communicate()[0]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {timeout_s} s")


def test_the_first_steps_run_as_written(tmp_path):
    """Each command as the README gives it, in a fresh home, with two changes a test needs: the
    HTTPS port is a free one instead of 6768, and RTMP is off (port 1935 may be taken here)."""
    commands = shell_commands("First steps")
    assert commands[0] == 'export PATH="$PWD/.venv/bin:$PATH"' and (BIN / "recorder").exists()
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    server = None
    outputs = []
    try:
        for command in commands[1:]:
            command = command.replace("6768", str(port))
            if command.endswith("&"):
                assert command.startswith("recorder serve")
                command = command[:-1] + f" --port {port} --rtmp-port 0"
                server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=tmp_path, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                wait_for_port(port, server)
                continue
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            outputs.append(done.stdout)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            console = server.communicate(timeout=120)[0]
    assert server is not None and server.returncode == 0, console
    listing, details = outputs[-2], outputs[-1]
    assert "3 sessions of 3 devices" in listing
    body = (ROOT / "sample_data" / "1M0YDA9HNM2419" / "body.srf").read_bytes()
    decoder = Decoder()
    decoder.feed(body)
    decoder.close()
    with recorder.open_session(tmp_path / "data" / "1M0YDA9HNM2419" / "8ea6d2c8-ba36-446f-9f04-3cee596d0583") as s:
        assert s.manifest["counters"]["records"] == decoder.counters.records
        assert s.manifest["state"] == "finished"
    assert "1M0YDA9HNM2419" in details and "imu-left" in details


def readme_command_lines() -> list[str]:
    """Every `recorder ...` example line of the README outside its first steps, comment cut off."""
    lines = re.findall(r"^    (recorder .*?)(?:\s{2,}#.*)?$", README, flags=re.M)
    return [line.strip() for line in lines]


def test_every_command_line_of_the_readme_runs(tmp_path):
    """certs, serve (each variant started and stopped), simulate (against two running servers),
    ls, info and recover, as written; a free port stands in for each port the README names, and
    <serial>/<session-id> for a stored session of the sample capture."""
    lines = readme_command_lines()
    assert {line.split()[1] for line in lines} >= {"certs", "serve", "simulate", "ls", "info", "recover"}
    env = {**os.environ, "HOME": str(tmp_path), "SECRET": "s3cret",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    ports = {name: str(free_port()) for name in ("6768", "6769", "1935", "1936", "8080")}
    device = ROOT / "sample_data" / "1M0YDA9HNM2419"
    headers = json.loads((device / "headers.json").read_text())
    store_body(Store(tmp_path / "data", sync=False), headers, (device / "body.srf").read_bytes())

    def concrete(line: str) -> str:
        for port, free in ports.items():
            line = line.replace(port, free)
        line = line.replace("<serial>", headers["device-serial"]).replace("<session-id>", headers["session-id"])
        if line.startswith("recorder serve"):
            line += "" if "--port" in line else f" --port {ports['6768']}"
            line += "" if "--rtmp-port" in line else f" --rtmp-port {ports['1935']}"
        return line

    def run(line: str) -> str:
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        return done.stdout

    def start(line: str) -> subprocess.Popen:
        server = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=tmp_path, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for_port(int(re.search(r"--port (\d+)", line).group(1)), server)
        return server

    def stop(server: subprocess.Popen) -> None:
        server.send_signal(signal.SIGINT)
        console = server.communicate(timeout=120)[0]
        assert server.returncode == 0, console

    (tmp_path / "my_handlers.py").write_text(HANDLERS)
    needs_servers = ("recorder simulate", "recorder replay")
    for line in [concrete(line) for line in lines if not line.startswith(needs_servers)]:
        if line.startswith("recorder serve"):
            stop(start(line))
        else:
            run(line)
    servers = [start(f"recorder serve --port {ports['6768']} --rtmp-port 0"),
               start(f"recorder serve --plain-http --port {ports['8080']} --rtmp-port 0 --data-dir plain"),
               start(f"recorder serve --port {ports['6769']} --rtmp-port 0 --data-dir copy")]
    try:
        simulations = [subprocess.Popen(["bash", "-c", concrete(line)], cwd=tmp_path, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                       for line in lines if line.startswith("recorder simulate")]
        for simulation in simulations:
            output = simulation.communicate(timeout=180)[0]
            assert simulation.returncode == 0, output
        replays = [run(concrete(line)) for line in lines if line.startswith("recorder replay")]
    finally:
        for server in servers:
            stop(server)
    assert len(list((tmp_path / "capture").iterdir())) == 2
    assert "4 sessions of 4 devices" in run("recorder ls data")
    assert "2 sessions of 1 device " in run("recorder ls plain")  # seed 0 twice: one device, two runs
    assert "4 sessions of 4 devices" in run("recorder ls copy")  # replayed --to the second recorder
    assert len(replays) == 3 and "imu-left" in replays[0]
    (export_block,) = [b for b in python_blocks() if "read_parquet('campaign" in b]
    run_block(export_block, tmp_path)  # the README's DuckDB query of the exported dataset


# The factory the README's replay commands name, as a user would save it beside the data.
HANDLERS = """
from recorder.sdk import StreamDataInterface

def make_handler():
    handler = StreamDataInterface()
    handler.register_imu_callback(lambda motion, label: None)
    return handler
"""


def test_the_live_examples_run(tmp_path):
    """Both blocks as scripts a user would run, in a fresh home (a free port for 6768): the
    RecorderServer block as written; then the LiveSource block, with the first block's factory,
    against a `recorder serve` while the simulator streams to it, until the recorder stops."""
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(BIN / "recorder"), "certs", "init"], check=True, capture_output=True, env=env)
    server_block, source_block = [b for b in python_blocks() if "RecorderServer(" in b or "LiveSource(" in b]
    report = "\nimport json\nprint('FRAMES=' + json.dumps(frames))\n"

    def frames_of(output: str) -> dict:
        return json.loads(re.search(r"^FRAMES=(.*)$", output, flags=re.M).group(1))

    port = str(free_port())
    done = subprocess.run([sys.executable, "-c", server_block.replace("6768", port) + report], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    serials = {path.parent.name for path in (tmp_path / "data").glob("*/*")}
    assert len(serials) == 2 and frames_of(done.stdout) == {serial: 10 for serial in serials}  # 5 fps, 2 s

    port = str(free_port())
    definitions = server_block[:server_block.index("with RecorderServer(")]
    server = subprocess.Popen([str(BIN / "recorder"), "serve", "--port", port, "--rtmp-port", "0", "--data-dir",
                               "feed"], cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        wait_for_port(int(port), server)
        reader = subprocess.Popen([sys.executable, "-c", definitions + source_block.replace("6768", port) + report],
                                  cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not feed_subscribers(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        subprocess.run([str(BIN / "recorder"), "simulate", "--duration", "2", "--url", f"https://localhost:{port}",
                        "--no-verify-server-certs"], check=True, capture_output=True, timeout=120, env=env)
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=120)
    output, errors = reader.communicate(timeout=120)
    assert reader.returncode == 0, errors
    (serial,) = {path.parent.name for path in (tmp_path / "feed").glob("*/*")}
    assert frames_of(output) == {serial: 10}


def feed_subscribers(port: str) -> list:
    import ssl
    import urllib.request

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/status", context=context, timeout=5) as answer:
            return json.loads(answer.read()).get("feed", {}).get("subscribers", [])
    except OSError:
        return []
