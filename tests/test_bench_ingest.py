"""The ingest section's device runs in their shortest form: one device, 0.4 s of profile9,
into a server with RAW frames as it chooses by its load (the default), one with them always
compressed and one with them stored. Figures are checked for
presence and sense, never against a time."""

from __future__ import annotations

import math

import pytest

from recorder.bench import ingest


@pytest.mark.parametrize("options", [(), ingest.COMPRESSED, ingest.STORED], ids=["auto", "compress", "store"])
def test_a_device_run_stores_every_record_and_reports_its_figures(options):
    windows, records, headers = ingest.profile9_windows(0.4)
    result = ingest.run_devices(1, windows, records, headers, paced=False, tls=True, options=options)
    assert result["lost_records"] == 0 and result["options"] == list(options)
    for key in ("mb_per_s", "records_per_s", "server_cpu_cores", "sender_cpu_cores"):
        assert result[key] > 0 and math.isfinite(result[key]), key


def test_a_search_begun_above_the_count_that_holds_steps_down_to_it():
    """The store and compress searches begin at the default's count: one begun too high names the
    count that holds below it, not 0; one begun low goes up until a count does not hold."""
    tried = []

    def holds_up_to(limit):
        def holds(n):
            tried.append(n)
            return n <= limit
        return holds

    counts = ingest.DEVICE_STEPS
    assert ingest.largest_sustained(counts, 16, holds_up_to(13)) == 12 and tried == [16, 14, 12]
    tried.clear()
    assert ingest.largest_sustained(counts, 8, holds_up_to(16)) == 16 and tried == [8, 10, 12, 14, 16, 20]
    tried.clear()
    assert ingest.largest_sustained(counts, 3, holds_up_to(0)) == 0 and tried == [3, 2, 1]
    assert ingest.largest_sustained(counts, 1, holds_up_to(100)) == 100
