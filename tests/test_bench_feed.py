"""The feed section in its shortest form: one device for one second, once without a subscriber
and once with one. Figures are checked for presence and sense, never against a time."""

from __future__ import annotations

import math

from readme_support import run_readme_example

from recorder.bench import feed


def test_feed_section_measures_the_recorder_with_and_without_a_subscriber(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # each run's data folder is made in the current folder
    figures = feed.run(devices=1, seconds=1, repeats=1)
    out = capsys.readouterr().out

    without, subscribed = figures["runs"]
    assert (without["subscribed"], subscribed["subscribed"]) == (False, True)
    for run in (without, subscribed):
        assert run["device_seconds"] == 1 and run["lost_records"] == 0
        assert run["server_cpu_s"] > 0 and math.isfinite(run["cpu_per_device_second"]) and run["cpu_per_gb"] > 0
        assert run["published_rows"] > 0 or not run["subscribed"]
    assert subscribed["complete"] and subscribed["reader_error"] is None
    assert subscribed["received_rows"] == subscribed["published_rows"]
    assert subscribed["dropped_rows"] == 0 and figures["dropped_rows"] == 0
    assert subscribed["feed_mb"] > 0 and subscribed["reader_cpu_s"] >= 0
    assert math.isfinite(figures["extra_cpu_ratio"])
    assert "aim: under 10% more" in out and "received every published row" in out
    assert list(tmp_path.iterdir()) == []  # the runs clean up after themselves


def test_feed_section_in_phases_measures_one_recorder_without_and_with_a_subscriber(tmp_path, monkeypatch, capsys):
    """The phases method: one recorder, one device streaming throughout, its CPU read in three
    phases (without, with, without a subscriber); the subscribed phase is set against the two
    beside it, nothing is lost or dropped, and the recorder's data folder is gone afterwards."""
    monkeypatch.chdir(tmp_path)
    figures = feed.measure_in_phases(devices=1, phase_s=1.0, phases=3)
    phases = figures["phases"]
    assert [p["subscribed"] for p in phases] == [False, True, False]
    for phase in phases:
        assert phase["server_cpu_s"] > 0 and phase["device_seconds"] >= 1.0
        assert math.isclose(phase["cpu_per_device_second"], phase["server_cpu_s"] / phase["device_seconds"])
    beside = (phases[0]["cpu_per_device_second"] + phases[2]["cpu_per_device_second"]) / 2
    (paired,) = figures["paired_ratios"]
    assert math.isclose(paired, phases[1]["cpu_per_device_second"] / beside - 1, rel_tol=1e-9)
    assert figures["extra_cpu_ratio"] == figures["paired_ratios"][0]
    assert figures["lost_records"] == 0 and figures["dropped_rows"] == 0
    assert list(tmp_path.iterdir()) == []


def test_the_readme_command_for_a_subscriber_of_some_streams_runs_as_written(tmp_path):
    """The README's example of the phases method with --streams, run as written (from the
    repository's own interpreter): it measures a subscriber of the streams named, and the
    devices lose nothing."""
    words, out = run_readme_example("recorder.bench.feed", tmp_path)
    assert "--phases" in words
    streams = words[words.index("--streams") + 1]
    assert f"to streams {streams}" in out and "with one subscriber" in out
    assert "0 records lost" in out and "0 rows dropped" in out
    assert list(tmp_path.iterdir()) == []
