"""The overload section in a short form: devices recording in real time while a flood of new
devices keeps connecting past --max-connections. What an operator checks: the flood is refused
with 503 (saying which limit, and when to come back), the recording devices are never refused
and lose nothing, and the flood's taken connections are the free places, no more. Figures are
checked for sense, never against a time."""

from __future__ import annotations

from recorder.bench import overload

DEVICES = 3
LIMIT = 2 * (DEVICES + 2)  # as the bench chooses it: every recording device fits either worker
FLOOD = LIMIT + 2  # more than the places left free: some always knock on a full server


def test_a_flood_past_the_limit_is_refused_and_the_recording_devices_lose_nothing(tmp_path):
    figures = overload.measure(DEVICES, 3.0, FLOOD, LIMIT, folder=tmp_path)
    for phase in ("quiet", "flooded"):
        p = figures[phase]
        assert p["answers"] == [200] * DEVICES, (phase, p)
        assert p["lost_records"] == 0, (phase, p)
        assert p["lag"]["batches"] == DEVICES * 15 and p["lag"]["max_s"] >= p["lag"]["median_s"] >= 0
    assert figures["quiet"]["flood"] is None
    flood = figures["flooded"]["flood"]
    assert flood["refused_503"] > 0 and flood["other"] == {}, flood
    # What the flood was given is what the limit left free beside the recording devices.
    assert 0 < flood["taken"] <= LIMIT - DEVICES and flood["taken_answers"] == [200] * flood["taken"], (
        f"taken {flood['taken']}, answered {flood['taken_answers']}: {flood}")
    assert flood["attempts"] == flood["refused_503"] + flood["closed_unanswered"] + flood["taken"], flood
    assert "refused 503" in overload.report(figures)
