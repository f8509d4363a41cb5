"""`recorder serve` refuses to start when it cannot write to its data folder, with a message
that says which folder and why (no traceback, a non-zero exit), instead of starting and failing
the first device that connects with a 500.

The tests run as root, whom permission bits do not stop, so the unwritable folders are ones
nobody can write to: a data-dir path under a regular file (it can never be a folder), and a
folder made immutable with `chattr +i` (which stops root too; skipped where the file system
or the container does not allow it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from server_support import ServerProcess, get

RECORDER = str(Path(sys.executable).with_name("recorder"))


async def serve(data_dir: Path) -> subprocess.CompletedProcess:
    with trio.fail_after(20):  # a server that starts anyway would run until killed
        return await trio.run_process(
            [RECORDER, "serve", "--host", "127.0.0.1", "--port", "0", "--rtmp-port", "0", "--plain-http",
             "--data-dir", str(data_dir)],
            capture_stdout=True, capture_stderr=True, check=False)


def assert_refused(result: subprocess.CompletedProcess, data_dir: Path, reason: str) -> None:
    output = (result.stdout + result.stderr).decode()
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert f"cannot write to the data folder {data_dir}" in output, output
    assert reason in output, output
    assert "listening" not in output, output


async def test_a_data_dir_under_a_regular_file_is_refused_at_start(tmp_path):
    somefile = tmp_path / "somefile"
    somefile.write_bytes(b"not a folder")
    result = await serve(somefile / "data")
    assert_refused(result, somefile / "data", "Not a directory")
    assert somefile.read_bytes() == b"not a folder"


@pytest.fixture
def unwritable_folder(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not possible here: {made.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


async def test_a_read_only_data_dir_is_refused_at_start(unwritable_folder):
    result = await serve(unwritable_folder)
    assert_refused(result, unwritable_folder, "not permitted" if os.geteuid() == 0 else "Permission denied")
    assert not list(unwritable_folder.iterdir())


async def test_a_missing_data_dir_is_created(tmp_path):
    data_dir = tmp_path / "new" / "data"
    server = await ServerProcess(data_dir, tmp_path / "serve.log").start()
    try:
        assert (await get(server.url, "/healthz")).status == 200
    finally:
        await server.aclose()
    assert data_dir.is_dir() and not list(data_dir.iterdir())
