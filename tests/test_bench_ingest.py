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
