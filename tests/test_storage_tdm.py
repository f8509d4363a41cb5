"""Time domain mapping: a receiver's device times mapped to the broadcaster's clock match the
simulator's true clocks; the mapping interpolates, and holds the nearest offset outside."""

from __future__ import annotations

import numpy as np
import pytest
from storage_support import send

from recorder import open_session
from recorder.sim.fleet import make_fleet
from recorder.sim.sensors import TDM_JITTER_NS
from recorder.storage import Store
from recorder.storage.timemap import to_broadcaster_time


@pytest.fixture(scope="module")
def fleet_sessions(tmp_path_factory):
    root = tmp_path_factory.mktemp("tdm")
    store = Store(root)
    fleet = make_fleet(3, seed=41, profile="mp_streaming_demo")
    paths = []
    for device in fleet:
        writer = store.open_writer(device.serial, device.session_id)
        send(writer, device.window(0.0, 4.0), device.headers())
        writer.close()
        paths.append(writer.path)
    return fleet, paths


def test_receivers_map_onto_the_broadcasters_true_clock(fleet_sessions):
    fleet, paths = fleet_sessions
    broadcaster = fleet[0]
    run_ns = np.linspace(0.05e9, 3.85e9, 500).astype(np.int64)  # inside the mapped span
    for device, path in zip(fleet[1:], paths[1:], strict=True):
        reader = open_session(path)
        mapped = reader.to_broadcaster_time(device.clock.at_ns(run_ns))
        error = mapped - broadcaster.clock.at_ns(run_ns)
        # each TDM sample carries up to TDM_JITTER_NS of jitter; interpolation cannot do better
        assert np.abs(error).max() <= TDM_JITTER_NS + 1_000
        assert abs(error.mean()) < TDM_JITTER_NS / 2
        # the devices' clocks really are far apart (boot times differ by minutes to hours)
        assert np.abs(device.clock.at_ns(run_ns) - broadcaster.clock.at_ns(run_ns)).min() > 1e9
        tdm = reader.tdm()
        assert tdm.num_rows == 40
        np.testing.assert_array_equal(tdm["offset_ns"].to_numpy(), (tdm["broadcaster_timestamp_ns"].to_numpy()
                                                                    - tdm["capture_timestamp_ns"].to_numpy()))
        assert reader.manifest["tdm"]["role"] == "receiver"
    broadcaster_reader = open_session(paths[0])
    assert broadcaster_reader.tdm().num_rows == 0
    assert broadcaster_reader.manifest["tdm"]["role"] == "broadcaster_or_unsynchronised"
    # The broadcaster's own times are on the broadcaster's clock already.
    np.testing.assert_array_equal(broadcaster_reader.to_broadcaster_time([0, 5, 7]), [0, 5, 7])


def test_interpolation_between_samples_and_nearest_outside():
    capture = np.array([1_000, 2_000, 4_000], np.int64)
    offset = np.array([100, 200, 0], np.int64)
    t = np.array([0, 1_000, 1_500, 2_000, 3_000, 4_000, 9_000], np.int64)
    np.testing.assert_array_equal(to_broadcaster_time(t, capture, offset),
                                  t + np.array([100, 100, 150, 200, 100, 0, 0]))
    # large device times (days of uptime) keep nanosecond precision
    base = 5 * 86_400 * 10**9
    np.testing.assert_array_equal(to_broadcaster_time([base + 1_500], capture + base, offset), [base + 1_650])
    # samples need not be sorted
    np.testing.assert_array_equal(to_broadcaster_time(t, capture[::-1], offset[::-1]),
                                  to_broadcaster_time(t, capture, offset))
