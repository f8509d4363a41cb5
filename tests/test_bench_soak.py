"""The soak section in a short form: a few devices for a few seconds, sessions short enough that
many come and go. What an operator checks after days in the field: /status lists only the
live sessions, its size does not follow the number of sessions seen, the open files go back to
the idle server's, and `recorder ls` lists every session. Figures are checked for presence
and sense, never against a time."""

from __future__ import annotations

import math
import os

from recorder.bench import soak

DEVICES = 4
DURATION_S = 16.0


def test_sessions_come_and_go_and_the_server_keeps_only_the_live_ones(tmp_path):
    result = soak.measure(DEVICES, DURATION_S, session_s=2.0, period_s=0.25, session_grace_s=0.5,
                          keep_finished_s=1.0, sample_every_s=0.5, folder=tmp_path)
    f = result["figures"]
    started = result["sessions_started"]
    assert result["device_errors"] == [] and result["sampler_errors"] == []
    assert started >= 6 * DEVICES  # many more sessions than devices came and went

    # /status lists the live sessions only: those receiving, and those ended within the session
    # grace and keep-finished times; the others are counted in finished_earlier.
    during = [s for s in result["samples"] if s["t"] <= DURATION_S]
    assert max(s["listed"] for s in during) <= 3 * DEVICES
    assert during[-1]["finished_earlier"] >= started - 3 * DEVICES
    # ... so its size does not grow with the sessions seen, which doubled between the parts.
    assert f["sessions_between_parts"] >= 2 * DEVICES
    assert f["status_bytes"]["last"] <= 1.5 * f["status_bytes"]["first"]
    assert result["after"]["listed"] == 0 and f["flat"]["status_empty_after"]
    assert result["finished_earlier"]["sessions"] == started

    # Every session is on disk whole, and listed.
    assert result["records_sent"] > 0 and result["sessions_short_on_disk"] == []
    assert result["sessions_not_listed_by_ls"] == []

    # Every session's files were closed: back to the idle server's descriptors.
    assert result["after"]["fds"] <= result["idle"]["fds"] + soak.FD_TOLERANCE and f["flat"]["fds_back_to_idle"]
    assert max(s["fds"] for s in during) > result["idle"]["fds"]  # the sessions' files were counted
    # ... and no sample found a file held open of a session /status no longer lists.
    assert f["files_held"]["max"] > 0 and max(s["files_held"] for s in during) > 0
    assert f["files_held"]["of_gone_sessions_max"] == 0 and f["flat"]["no_files_of_gone_sessions"]

    # The bench's own figures.
    assert len(result["samples"]) >= 10 and f["steady_samples"] >= 4
    assert result["idle"]["rss"] > 10 * soak.MIB and f["rss"]["max"] >= f["rss"]["idle"]
    assert math.isfinite(f["memory_per_device"]) and math.isfinite(f["rss_growth_per_1000_sessions"])
    assert 0 < f["server_cores"] and 0 < f["sender_cores"]
    sends = result["one_device_sends"]
    assert sends["bytes_per_s"] > 0 and sends["records_per_s"] > 0
    text = soak.summary(result)
    assert "memory per connected device" in text and f"{started} started" in text
    assert list(tmp_path.iterdir()) == []  # the run cleans up after itself


def test_a_status_a_worker_did_not_answer_counts_for_no_status_figure():
    """A /status that misses a worker's sessions would read as a smaller /status and fewer
    sessions listed; the verdict leaves those figures out, and a server whose /status lists
    no session while a worker is silent has not been seen to empty."""
    def at(t, listed, missing=0):
        return soak.Sample(t=t, rss=100 * soak.MIB, fds=50, threads=9, cpu_s=t, status_bytes=1000 * listed,
                           listed=listed, receiving=listed, finished_earlier=0, sessions_started=int(t),
                           connected=4, workers_not_answering=missing)
    samples = [at(t, 10) for t in range(1, 11)]
    samples[-1] = at(10, 0, missing=1)  # the last fifth: one sample, a worker silent
    samples[1] = at(2, 0, missing=1)
    idle = at(0, 0)
    f = soak.verdict(samples, idle, at(12, 0, missing=1), devices=4, warmup_s=0, duration_s=10)
    assert f["partial_status_samples"] == 2
    assert f["listed"]["first"] == f["listed"]["last"] == 10 and f["status_bytes"]["growth"] == 0
    assert f["flat"]["status_bytes"] and not f["flat"]["status_empty_after"]
    assert f["rss"]["first"] == 100 * soak.MIB  # /proc figures count every sample
    whole = soak.verdict(samples, idle, at(12, 0), devices=4, warmup_s=0, duration_s=10)
    assert whole["flat"]["status_empty_after"]


def test_files_held_are_counted_by_the_session_folder_they_are_in(tmp_path):
    """The soak bench's leak measure, on this process: files open under a session's folder are
    counted for that session; a file elsewhere, or in the RTMP recordings' folder, is not."""
    data = tmp_path / "data"
    session = data / "DEVICE-1" / "597b9aec-079a-4ca3-bc6c-98bf10f6aa33" / "imu"
    rtmp = data / "rtmp" / "live" / "glasses"
    for folder in (session, rtmp):
        folder.mkdir(parents=True)
    with open(session / "a", "wb") as a, open(session.parent / "session.json", "wb") as b, \
            open(rtmp / "c", "wb") as c, open(tmp_path / "d", "wb") as d:
        held = soak.files_held(os.getpid(), data)
        assert held == {"597b9aec-079a-4ca3-bc6c-98bf10f6aa33": 2}, (a, b, c, d)
    assert soak.files_held(os.getpid(), data) == {}
