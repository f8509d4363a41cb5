"""`recorder simulate` run after run against a real recorder: each run is a new session of the
same devices, a rerun of a session is reported as not stored, and a recorder that never answers
makes the command give up with a clear message."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import trio
from click.testing import CliRunner

from recorder.cli import main
from recorder.sim.fleet import make_fleet

SEED = 5
DURATION = 0.6
SIMULATE = [sys.executable, "-m", "recorder.cli", "simulate", "--devices", "2", "--duration", str(DURATION),
            "--fast", "--seed", str(SEED), "--profile", "mp_streaming_demo"]


async def simulate(*args: str):
    done = await trio.run_process([*SIMULATE, *args], capture_stdout=True, capture_stderr=True, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def expected_records() -> dict[str, int]:
    """Per serial, the records one run sends: a twin fleet of the same seed, windowed alike."""
    fleet = make_fleet(2, seed=SEED, profile="mp_streaming_demo")
    for device in fleet:
        device.window(0.0, DURATION)
    return {device.serial: device.records_sent for device in fleet}


def stored_sessions(data_dir) -> dict[tuple[str, str], dict]:
    """`recorder info --json` of every session folder under data_dir, by (serial, session id)."""
    sessions = {}
    for folder in sorted(p for serial in data_dir.iterdir() for p in serial.iterdir()):
        result = CliRunner().invoke(main, ["info", "--json", str(folder)])
        assert result.exit_code == 0, result.output
        info = json.loads(result.output)
        sessions[info["serial"], info["session_id"]] = info
    return sessions


async def test_two_runs_of_one_seed_store_two_sessions_with_every_record(start_server):
    server = await start_server(tls=False)
    outputs = []
    for _ in range(2):
        code, out, err = await simulate("--url", server.url)
        assert code == 0, out + err
        assert "NOT STORED" not in out and "resends" not in out
        outputs.append(out)
    await server.stop()

    records = expected_records()
    sessions = stored_sessions(server.data_dir)
    assert sorted(serial for serial, _ in sessions) == sorted(2 * list(records)), "same devices, two sessions each"
    for (serial, session_id), info in sessions.items():
        assert sum(session_id in out for out in outputs) == 1, "the summary names each run's own sessions"
        assert info["state"] == "finished"
        assert (info["counters"]["records"], info["counters"]["resends"]) == (records[serial], 0)
        assert info["highest_sequence"] == records[serial] - 1


async def test_a_rerun_of_a_session_is_reported_as_not_stored_and_fails(start_server):
    server = await start_server(tls=False)
    session_id = "5a1e0b7e-3c1d-4e2f-9a8b-7c6d5e4f3a2b"
    first = await simulate("--url", server.url, "--session-id", session_id)
    assert first[0] == 0, first[1] + first[2]
    code, out, err = await simulate("--url", server.url, "--session-id", session_id)
    await server.stop()

    assert code == 1, out + err
    assert "Traceback" not in err
    records = expected_records()
    for serial, count in records.items():
        line = next(line for line in out.splitlines() if line.startswith(serial))
        assert f"NOT STORED: the recorder already had {count} of these records" in line
        assert session_id in line
    assert f"{sum(records.values())} records were resends the recorder did not store again" in out
    sessions = stored_sessions(server.data_dir)
    assert set(sessions) == {(serial, session_id) for serial in records}


async def never_answer(listener, accepted: list) -> None:
    """Accept every connection and keep it open without reading a byte or answering."""
    while True:
        accepted.append(await listener.accept())


async def test_simulate_gives_up_on_a_recorder_that_never_answers(nursery):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    accepted: list = []
    nursery.start_soon(never_answer, listeners[0], accepted)

    started = time.monotonic()
    with trio.fail_after(30):  # a simulator that waits for ever fails here, its process killed
        code, out, err = await simulate("--url", f"http://127.0.0.1:{port}", "--timeout", "1", "--devices", "1")
    seconds = time.monotonic() - started

    assert accepted, "the simulator connected"
    assert code == 1, out + err
    assert seconds < 15
    assert "Traceback" not in err
    failure = next(line for line in out.splitlines() if "FAILED" in line and "total" not in line)
    assert f"127.0.0.1:{port}" in failure and "in 1 s; gave up" in failure
    assert out.splitlines()[-1].startswith("total: 1 device(s)")
    for stream in accepted:
        await stream.aclose()


async def read_all(stream, into: bytearray) -> None:
    while data := await stream.receive_some(1 << 16):
        into += data


async def test_ctrl_c_ends_a_run_with_the_summary_of_what_was_sent(start_server, nursery):
    server = await start_server(tls=False)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "recorder.cli", "simulate", "--devices", "1", "--duration", "60", "--seed", str(SEED),
         "--profile", "mp_streaming_demo", "--url", server.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = bytearray(), bytearray()
    nursery.start_soon(read_all, process.stdout, out)
    nursery.start_soon(read_all, process.stderr, err)
    try:
        await trio.sleep(2.5)  # streaming in real time by now
        process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            code = await process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    await trio.sleep(0.1)  # the readers take the last bytes
    output = out.decode()
    assert code == 130, output + err.decode()
    assert "Traceback" not in err.decode()
    assert "interrupted" in output
    line = next(line for line in output.splitlines() if "FAILED" in line and "total" not in line)
    assert "FAILED: interrupted" in line and " 0 records" not in line
    assert output.splitlines()[-1].startswith("total: 1 device(s)")
