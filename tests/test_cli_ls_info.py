"""`recorder ls` lists only real sessions (of a data folder or of one device's folder) and says so
when there are none; `recorder info` on anything but a session or recording says what the path
is and what it expected, and fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from storage_support import send

from recorder.cli import main
from recorder.sim.fleet import make_fleet
from recorder.storage import Store

NO_SESSIONS = ("expected a data folder written by `recorder serve`, holding "
               "<serial>/<session-id>/session.json")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Two devices' sessions, beside folders nested like sessions that are not (a user's notes)."""
    root = tmp_path_factory.mktemp("recorded") / "data"
    store = Store(root, sync=False)
    for device in make_fleet(2, seed=61, profile="mp_streaming_demo"):
        writer = store.open_writer(device.serial, device.session_id)
        send(writer, device.window(0.0, 0.5), device.headers())
        writer.close()
    (root / "notes" / "archive" / "photos").mkdir(parents=True)
    (root / "notes" / "archive" / "todo.txt").write_text("label the recordings\n")
    return root


def recorder(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def sessions(data_dir: Path) -> list[Path]:
    return sorted(p for device in data_dir.iterdir() if device.name != "notes" for p in device.iterdir())


def test_ls_of_a_data_folder_lists_only_its_sessions(data_dir):
    result = recorder("ls", data_dir)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    rows = [line for line in lines[1:] if line.strip() and "under" not in line]
    assert sorted(line.split()[:2] for line in rows) == [[p.parent.name, p.name] for p in sessions(data_dir)]
    assert lines[-1] == f"2 sessions of 2 devices under {data_dir}"


def test_ls_of_a_device_folder_lists_its_sessions(data_dir):
    session = sessions(data_dir)[0]
    result = recorder("ls", session.parent)
    assert result.exit_code == 0
    assert result.output.splitlines()[1].split()[:3] == [session.parent.name, session.name, "finished"]
    assert result.output.splitlines()[-1] == f"1 session of 1 device under {session.parent}"


def test_ls_of_a_folder_that_is_not_a_data_folder_says_so(tmp_path):
    for name in ("build/lib", "cache/pip", "notes/2026"):
        (tmp_path / name).mkdir(parents=True)
    result = recorder("ls", tmp_path)
    assert result.output.strip() == f"no sessions under {tmp_path}: {NO_SESSIONS}"
    assert "SERIAL" not in result.output


def test_info_of_a_device_folder_names_its_sessions_and_fails(data_dir):
    device = sessions(data_dir)[0].parent
    result = recorder("info", device)
    assert result.exit_code == 1
    assert f"{device} is a device folder holding 1 session, not a session" in result.output
    assert "give `recorder info` one session folder" in result.output
    assert str(sessions(data_dir)[0]) in result.output
    assert "Session:" not in result.output


def test_info_of_a_data_folder_says_so_and_fails(data_dir):
    result = recorder("info", data_dir)
    assert result.exit_code == 1
    assert f"{data_dir} is a data folder holding 2 device sessions, not a session" in result.output
    assert f"`recorder ls {data_dir}` lists them" in result.output


def test_info_of_another_folder_says_it_is_not_a_session_and_fails(data_dir):
    result = recorder("info", data_dir / "notes" / "archive")
    assert result.exit_code == 1
    assert f"{data_dir / 'notes' / 'archive'} is not a session: expected a session folder" in result.output


def test_info_of_a_session_still_shows_it(data_dir):
    session = sessions(data_dir)[1]
    result = recorder("info", session)
    assert result.exit_code == 0
    assert f"Session:      {session.parent.name} / {session.name}" in result.output
