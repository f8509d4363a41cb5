"""sample_data/ is a clean, deterministic multi-device capture that the simulator can reproduce."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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


def test_the_simulator_reproduces_the_sample_values():
    fleet = make_fleet(3, seed=7, profile="mp_streaming_demo")
    for device in fleet:
        stored = (SAMPLE_DATA / device.serial / "body.srf").read_bytes()
        fresh = b"".join(device.window(k * 0.2, (k + 1) * 0.2) for k in range(10))
        _, stored_samples, stored_blobs = decode(stored)
        _, fresh_samples, fresh_blobs = decode(fresh)
        assert stored_samples.keys() == fresh_samples.keys()
        for name in stored_samples:
            assert stored_samples[name].tobytes() == fresh_samples[name].tobytes(), name
        # Camera frames: same frames, same prefixes (H.264 bytes may differ between libx264 builds).
        assert [(b.label, b.prefix["frame_number"]) for b in stored_blobs if b.message.name != "POV_CAMERA_FRAME"] \
            == [(b.label, b.prefix["frame_number"]) for b in fresh_blobs if b.message.name != "POV_CAMERA_FRAME"]
