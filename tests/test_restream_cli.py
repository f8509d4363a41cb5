"""`recorder replay --to` as a user runs it: the README's command against real servers, and
clear errors for paths that are not sessions."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import trio
from server_support import RECORDER

from recorder import certs, open_session
from recorder.devicelink import Connection, Target, client_ssl_context

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
# The README's example, with the CA and the second recorder's port of the test's servers.
README_REPLAY = "recorder replay data --to https://localhost:{port} --ca-file {ca} --speed 0"


async def run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    with trio.fail_after(timeout):
        return await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)


async def record_sample_capture(url: str, context) -> list[tuple[str, str]]:
    sessions = []
    for folder in sorted(p for p in SAMPLE_DATA.iterdir() if p.is_dir()):
        headers = json.loads((folder / "headers.json").read_text())
        conn = await Connection.open(Target.parse(url), context)
        try:
            await conn.start("/", headers)
            body = (folder / "body.srf").read_bytes()
            for at in range(0, len(body), 65536):
                await conn.send(body[at:at + 65536])
            status, answer = await conn.finish()
            assert status == 200, answer
        finally:
            await conn.aclose()
        sessions.append((headers["device-serial"], headers["session-id"]))
    return sessions


async def test_the_readme_replay_sends_a_data_folder_to_a_second_recorder(start_server, certs_dir):
    ca = certs_dir / certs.CA
    context = client_ssl_context(str(ca))
    original = await start_server()
    sessions = await record_sample_capture(original.url, context)
    await original.stop()

    copy = await start_server()
    command = shlex.split(README_REPLAY.format(port=copy.port, ca=ca))
    command[0] = RECORDER
    data = original.data_dir
    command[2] = str(data)
    result = await run(command)
    out = result.stdout.decode()
    assert result.returncode == 0, (out, result.stderr.decode())
    for serial, session_id in sessions:
        [line] = [line for line in out.splitlines() if line.startswith(serial)]
        assert f"session {session_id}" in line and "1 x 200 ok" in line and "1 request(s)" in line, line
    assert out.splitlines()[-1].startswith("total: 3 session(s)")
    await copy.stop()
    for serial, session_id in sessions:
        with open_session(original.session_path(serial, session_id)) as a, \
                open_session(copy.session_path(serial, session_id)) as b:
            assert a.streams() == b.streams()
            assert a.manifest["counters"] == b.manifest["counters"]
            assert a.calibration_bytes == b.calibration_bytes


async def test_replaying_to_a_recorder_that_has_the_session_says_it_was_not_stored(start_server, certs_dir):
    ca = certs_dir / certs.CA
    server = await start_server()
    [(serial, session_id)] = (await record_sample_capture(server.url, client_ssl_context(str(ca))))[:1]
    path = server.session_path(serial, session_id)
    result = await run([RECORDER, "replay", str(path), "--to", server.url, "--ca-file", str(ca), "--speed", "0"])
    out = result.stdout.decode()
    assert result.returncode == 1, out
    assert "NOT STORED: the server already had" in out


async def test_an_untrusted_server_fails_the_session_with_the_reason(start_server, certs_dir, other_certs_dir):
    server = await start_server()
    await record_sample_capture(server.url, client_ssl_context(str(certs_dir / certs.CA)))
    result = await run([RECORDER, "replay", str(server.data_dir), "--to", server.url,
                        "--ca-file", str(other_certs_dir / certs.CA), "--speed", "0"])
    out = result.stdout.decode()
    assert result.returncode == 1
    assert "FAILED" in out and "certificate" in out.lower(), out
    assert "Traceback" not in result.stderr.decode()


async def test_paths_that_are_not_sessions_are_clear_errors(tmp_path):
    (tmp_path / "notes" / "2026").mkdir(parents=True)
    (tmp_path / "file.txt").write_text("hello")
    cases = [
        ([str(tmp_path / "missing")], "no such file or folder"),
        ([str(tmp_path / "notes")], "is not a session"),
        ([str(tmp_path / "file.txt")], "is a file, not a session folder"),
    ]
    for paths, words in cases:
        result = await run([RECORDER, "replay", *paths, "--to", "http://127.0.0.1:9"])
        err = result.stderr.decode()
        assert result.returncode != 0
        assert words in err, err
        assert "Traceback" not in err


async def test_a_session_sent_to_an_rtmp_url_or_no_url_is_a_clear_error(start_server):
    server = await start_server(tls=False)
    await record_sample_capture(server.url, None)
    await server.stop()
    result = await run([RECORDER, "replay", str(server.data_dir), "--to", "rtmp://127.0.0.1:9/live/x"])
    assert result.returncode != 0 and "replay it to an http(s):// URL" in result.stderr.decode()
    result = await run([RECORDER, "replay", str(server.data_dir)])
    assert result.returncode == 2 and "--to URL" in result.stderr.decode()
    result = await run([RECORDER, "replay", str(server.data_dir), "--to", "ftp://127.0.0.1/"])
    assert result.returncode != 0 and "--to must be an http://" in result.stderr.decode()
