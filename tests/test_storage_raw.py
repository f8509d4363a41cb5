"""Bodies that are not version 1 are recorded losslessly and replay byte for byte, chunk for
chunk, with their headers."""

from __future__ import annotations

import os
import random

from recorder import open_session
from recorder.storage import Store
from recorder.wire import Counters

HEADERS = {"session-id": "597b9aec-079a-4ca3-bc6c-98bf10f6aa33", "device-serial": "1M0YDB6H7Y0110",
           "device-build": "51048810021100500", "oatmeal-calibration": '{"DeviceClassInfo": {"BuildVersion": "x"}}'}


def vendor_body(seed: int, size: int) -> tuple[bytes, list[int]]:
    """Bytes that are not SRF1 (as real Aria glasses send), cut into uneven chunks."""
    rng = random.Random(seed)
    body = b"VRS\x00" + os.urandom(size)
    sizes, left = [], len(body)
    while left:
        n = min(left, rng.choice([1, 7, 4096, 65536, 200_000]))
        sizes.append(n)
        left -= n
    return body, sizes


def send_raw(writer, body: bytes, sizes: list[int], t0: int) -> list[int]:
    writer.begin_request(HEADERS, "192.0.2.7:40000", t0)
    arrivals, pos = [], 0
    for k, n in enumerate(sizes):
        arrivals.append(t0 + 1000 * k)
        writer.write_raw(body[pos:pos + n], arrivals[-1])
        pos += n
        if k % 5 == 0:
            writer.flush()
    writer.end_request(Counters(bytes=len(body)), t0 + 10**9)
    return arrivals


def test_a_non_v1_body_replays_byte_for_byte_with_its_chunks(tmp_path):
    store = Store(tmp_path)
    writer = store.open_writer(HEADERS["device-serial"], HEADERS["session-id"])
    first, first_sizes = vendor_body(1, 1_500_000)
    arrivals = send_raw(writer, first, first_sizes, 1_700_000_000_000_000_000)
    writer.close()
    # the device reconnects and sends another body into the same session
    writer = store.open_writer(HEADERS["device-serial"], HEADERS["session-id"])
    second, second_sizes = vendor_body(2, 300_000)
    send_raw(writer, second, second_sizes, 1_700_000_100_000_000_000)
    writer.close()

    reader = open_session(writer.path)
    bodies = reader.raw_bodies()
    assert [b.request for b in bodies] == [0, 1]
    assert bodies[0].body == first and [len(c) for c in bodies[0].chunks] == first_sizes
    assert bodies[0].arrival_ns == arrivals
    assert bodies[1].body == second and [len(c) for c in bodies[1].chunks] == second_sizes
    for body in bodies:
        expected = {k: v for k, v in HEADERS.items() if k != "oatmeal-calibration"}
        assert {k: v for k, v in body.headers.items() if k != "oatmeal-calibration"} == expected
        assert body.headers["oatmeal-calibration"] == HEADERS["oatmeal-calibration"].encode()
        assert body.remote == "192.0.2.7:40000"
    m = reader.manifest
    assert m["raw_bodies"] == {"requests": 2, "chunks": len(first_sizes) + len(second_sizes),
                               "bytes": len(first) + len(second)}
    assert m["received_bytes"] == len(first) + len(second)  # not counted twice
    assert m["counters"]["bytes"] == 0  # the decoder's bytes: version-1 bodies only
    table = reader.table("raw-body")
    assert table.column("body_offset").to_pylist()[:3] == [0, first_sizes[0], first_sizes[0] + first_sizes[1]]
