"""A session over several requests, reconnections and server restarts is one folder, appended
to, with resends stored once."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.dataset as ds
import pytest
from storage_support import assert_session_matches, expected_from, record_starts, send

from recorder import open_session
from recorder.sim.fleet import make_fleet
from recorder.storage import Store, layout
from recorder.wire import Decoder


@pytest.fixture(scope="module")
def device_bodies():
    device = make_fleet(2, seed=21, one_sample_per_message=True)[1]
    first, second, third = device.window(0, 0.6), device.window(0.6, 1.2), device.window(1.2, 1.8)
    return device, first, second, third


def test_resends_after_a_restart_are_stored_once(tmp_path, device_bodies):
    device, first, second, third = device_bodies
    store = Store(tmp_path)
    writer = store.open_writer(device.serial, device.session_id)
    send(writer, first, device.headers())
    highest = writer.highest_sequence
    writer.close()

    # A new server process: a new Store on the same folder. The device reconnects and sends
    # again from a little before where it stopped (the tail of `first` is resent).
    store = Store(tmp_path)
    writer = store.open_writer(device.serial, device.session_id)
    assert writer.path == tmp_path / device.serial / device.session_id
    assert writer.highest_sequence == highest
    starts = record_starts(first)
    resend_from = starts[len(starts) // 2]  # a device resends whole records
    decoder = send(writer, first[resend_from:] + second, device.headers())
    assert decoder.counters.resends > 0 and decoder.counters.corrupt_bytes == 0
    writer.close()

    # and once more on a third connection, without a restart in between
    writer = store.open_writer(device.serial, device.session_id)
    send(writer, third, device.headers())
    writer.close()

    reader = open_session(writer.path)
    assert_session_matches(reader, expected_from([first, second, third]))
    for stream in reader.streams():
        sequence = reader.table(stream).column("sequence").to_numpy()
        assert len(np.unique(sequence)) == len(sequence), stream  # one sample per record: a row per sequence
        assert ds.dataset(writer.path / stream, format="parquet").count_rows() == reader.table(stream).num_rows
    m = reader.manifest
    assert m["requests"] == 3
    assert m["counters"]["resends"] == decoder.counters.resends
    assert m["counters"]["gaps"] == 0
    assert len(layout.parts(writer.path / "imu-left")) == 3  # one part per time the session was open
    assert [r["end"]["counters"]["records"] > 0 for r in reader.requests()] == [True, True, True]


def test_a_gap_is_counted_and_the_session_continues(tmp_path, device_bodies):
    device, first, _, third = device_bodies
    store = Store(tmp_path)
    writer = store.open_writer(device.serial, device.session_id)
    send(writer, first, device.headers())
    writer.close()
    writer = store.open_writer(device.serial, device.session_id)
    decoder = send(writer, third, device.headers())  # `second` never arrived
    writer.close()
    assert decoder.counters.gaps > 0
    m = open_session(writer.path).manifest
    assert m["counters"]["gaps"] == decoder.counters.gaps
    assert m["highest_sequence"] == decoder.highest_sequence


def test_opening_an_open_session_shares_its_writer(tmp_path, device_bodies):
    device, first, second, _ = device_bodies
    store = Store(tmp_path)
    a = store.open_writer(device.serial, device.session_id)
    b = store.open_writer(device.serial, device.session_id)
    assert a is b
    send(a, first, device.headers())
    a.close()  # another opener still holds it: only flushed
    assert open_session(a.path).manifest["state"] == "recording"
    send(b, second, device.headers())
    b.close()
    assert open_session(a.path).manifest["state"] == "finished"
    c = store.open_writer(device.serial, device.session_id)
    assert c is not a and c.highest_sequence == a.highest_sequence
    c.close()


def test_unsafe_names_are_refused(tmp_path):
    store = Store(tmp_path)
    for serial in ("..", ".", "a/b", "", "x" * 200):
        with pytest.raises(ValueError):
            store.open_writer(serial, "597b9aec-079a-4ca3-bc6c-98bf10f6aa33")


def test_data_without_begin_request_is_kept(tmp_path, device_bodies):
    device, first, _, _ = device_bodies
    writer = Store(tmp_path).open_writer(device.serial, device.session_id)
    decoder = Decoder()
    writer.write(decoder.feed(first))
    writer.close()
    reader = open_session(writer.path)
    assert reader.manifest["requests"] == 1
    assert reader.requests()[0]["end"]["interrupted"] is True
    assert reader.table("imu-left").num_rows > 0
    assert time.time_ns() >= reader.manifest["last_wall_time_ns"]
