"""The replay bench's figures in a short form: every stored row reaches a callback, and the
figures it reports are there (no timed assertion: speed is for `make bench`)."""

from __future__ import annotations

from recorder.bench import replay


def test_the_replay_bench_delivers_every_stored_row(tmp_path):
    paths = replay.store_sessions(tmp_path / "data", 0.5)
    rows = replay.stored_rows(paths)
    seconds, delivered = replay.replay(paths, decode=False)
    _, read = replay.read_with_pyarrow(paths)
    assert delivered == rows > 0 and seconds > 0 and read > 0
