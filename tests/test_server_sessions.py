"""Rates on the status page: from the first sample of a new session on."""

from __future__ import annotations

import time

from recorder.server.live import LiveSession, RateMeter


def test_a_rate_meter_needs_two_samples():
    meter = RateMeter()
    meter.sample(10.0, {"records": 100})
    assert meter.rates == {}
    meter.sample(12.0, {"records": 300})
    assert meter.rates == {"records": 100.0}


def test_a_new_session_has_a_rate_at_its_first_sample():
    session = LiveSession("D1", "597b9aec-079a-4ca3-bc6c-98bf10f6aa33", writer=None, resumed=False)
    session.meter.sample(time.monotonic() + 1.0, {"records": 500, "stream:imu-right": 400})
    assert 0 < session.meter.rates["records"] <= 500
    assert session.meter.rates["stream:imu-right"] > 0


def test_a_resumed_session_waits_a_sample_rather_than_count_its_stored_rows_as_new():
    session = LiveSession("D1", "597b9aec-079a-4ca3-bc6c-98bf10f6aa33", writer=None, resumed=True)
    session.meter.sample(time.monotonic() + 1.0, {"stream:imu-right": 1_000_000})
    assert session.meter.rates == {}
