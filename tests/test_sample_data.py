"""sample_data/ is a clean, deterministic multi-device capture that the simulator can reproduce."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recorder.sim.fleet import make_fleet
from recorder.wire import Decoder

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


def decode(body: bytes):
    decoder = Decoder()
    batches = [decoder.feed(body), decoder.close()]
    samples = {}
    for batch in batches:
        for block in batch.samples:
            samples.setdefault(block.message.name, []).append(block.samples)
    return decoder.counters, {k: np.concatenate(v) for k, v in samples.items()}, [b for x in batches for b in x.blobs]


def test_sample_data_holds_three_devices_one_broadcaster_and_decodes_cleanly():
    folders = sorted(p for p in SAMPLE_DATA.iterdir() if p.is_dir())
    assert len(folders) == 3
    tdm_devices = []
    for folder in folders:
        headers = json.loads((folder / "headers.json").read_text())
        assert headers["device-serial"] == folder.name
        json.loads(headers["oatmeal-calibration"])
        counters, samples, blobs = decode((folder / "body.srf").read_bytes())
        assert counters.records > 0 and counters.blobs > 0
        assert (counters.corrupt_bytes, counters.bad_crc, counters.malformed, counters.truncated,
                counters.gaps, counters.resends, counters.opaque) == (0,) * 7
        if "TIME_DOMAIN_MAPPING_EVENT" in samples:
            tdm_devices.append(folder.name)
    assert tdm_devices == [f.name for f in folders[1:]], "the smallest serial broadcasts, the others receive"


# Floats may differ in their last bits between machines: numpy picks its sin/cos and matrix
# kernels by CPU (AVX-512 or not, FMA or not), and those are not correctly rounded, so one seed's
# unit quaternions differ by a few 1e-16 from one CPU to another. Making every float of the
# simulator bit-portable would mean doing all its math without numpy; instead floats are
# compared to within FLOAT_ULPS units in the last place at the scale of their field (its largest
# magnitude), which no real change of the simulated data stays inside.
FLOAT_ULPS = 16


def record_ids(body: bytes) -> dict[str, np.ndarray]:
    """Per message name, each sample's (record sequence, source) in wire order."""
    decoder = Decoder()
    ids = {}
    for batch in (decoder.feed(body), decoder.close()):
        for block in batch.samples:
            ids.setdefault(block.message.name, []).append(np.stack([block.sequence, block.source], axis=1))
    return {k: np.concatenate(v) for k, v in ids.items()}


def assert_same_values(stored: np.ndarray, fresh: np.ndarray, what: str) -> None:
    """Every field equal; floats to within FLOAT_ULPS at the scale of their field, the rest exactly."""
    assert stored.dtype == fresh.dtype and stored.shape == fresh.shape, what
    for name in stored.dtype.names:
        a, b = stored[name], fresh[name]
        if a.dtype.kind != "f":
            assert a.tobytes() == b.tobytes(), f"{what}.{name}"
            continue
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what}.{name}"
        scale = np.abs(a[~np.isnan(a)]).max(initial=0.0)
        tolerance = FLOAT_ULPS * np.finfo(a.dtype).eps * max(float(scale), np.finfo(a.dtype).tiny)
        worst = float(np.nanmax(np.abs(a.astype(np.float64) - b), initial=0.0))
        assert worst <= tolerance, f"{what}.{name} differs by up to {worst:.3g} (more than {tolerance:.3g})"


def prefix_values(blob) -> np.ndarray:
    """A blob's prefix as a one-row array of its wire dtype (floats as precise as they were sent)."""
    row = np.zeros(1, blob.message.prefix.dtype)
    for name, value in blob.prefix.items():
        row[name] = value
    return row


def assert_same_capture(stored: bytes, fresh: bytes) -> None:
    """Same records, sequences, sources, timestamps, integer fields, frame and audio bytes;
    floats within FLOAT_ULPS. H.264 bytes may differ between libx264 builds and are not compared."""
    _, stored_samples, stored_blobs = decode(stored)
    _, fresh_samples, fresh_blobs = decode(fresh)
    assert stored_samples.keys() == fresh_samples.keys()
    stored_ids, fresh_ids = record_ids(stored), record_ids(fresh)
    for name in stored_samples:
        assert np.array_equal(stored_ids[name], fresh_ids[name]), f"{name}: sequences or sources"
        assert_same_values(stored_samples[name], fresh_samples[name], name)
    assert len(stored_blobs) == len(fresh_blobs)
    for a, b in zip(stored_blobs, fresh_blobs, strict=True):
        what = f"{a.message.name} {a.label} #{a.sequence}"
        assert (a.message.name, a.label, a.sequence, a.timestamp_ns) == \
            (b.message.name, b.label, b.sequence, b.timestamp_ns), what
        assert a.prefix.keys() == b.prefix.keys(), what
        assert_same_values(prefix_values(a), prefix_values(b), what)
        if a.message.name != "POV_CAMERA_FRAME":
            assert bytes(a.data) == bytes(b.data), what


def test_the_simulator_reproduces_the_sample_values():
    """Same seed, same data on any machine: ids, sequences, timestamps, integer fields and
    image bytes exactly, floats to within a few units in the last place (see FLOAT_ULPS)."""
    fleet = make_fleet(3, seed=7, profile="mp_streaming_demo")
    for device in fleet:
        stored = (SAMPLE_DATA / device.serial / "body.srf").read_bytes()
        fresh = b"".join(device.window(k * 0.2, (k + 1) * 0.2) for k in range(10))
        assert_same_capture(stored, fresh)


def test_the_comparison_forgives_last_bits_and_nothing_more():
    device = make_fleet(1, seed=7, profile="mp_streaming_demo")[0]
    _, samples, _ = decode(b"".join(device.window(k * 0.2, (k + 1) * 0.2) for k in range(2)))
    pose = samples["MP_VIO_HIGH_FREQUENCY_POSE"]

    last_bits = pose.copy()
    for _ in range(2):
        last_bits["rotation"] = np.nextafter(last_bits["rotation"], np.inf)
    assert last_bits["rotation"].tobytes() != pose["rotation"].tobytes()
    assert_same_values(pose, last_bits, "pose")

    moved = pose.copy()
    moved["rotation"][5, 1] += 1e-9
    later = pose.copy()
    later["timestamp_ns"][5] += 1
    dimmer = pose.copy()
    dimmer["quality_score"][5] *= 1.0001
    for changed in (moved, later, dimmer):
        with pytest.raises(AssertionError):
            assert_same_values(pose, changed, "pose")
