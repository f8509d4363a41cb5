"""The frames a worker relays from another worker's feed: cut anywhere by the transport, they
come back whole and byte for byte, and bytes that are no feed are refused."""

import random

import pytest

from recorder.server.feed import encode_frame
from recorder.server.feedrelay import FrameSplitter
from recorder.server.peers import PeerError


def test_frames_cut_anywhere_come_back_whole():
    rng = random.Random(5)
    frames = [({"type": "rows", "device": f"d{k}", "rows": k}, rng.randbytes(rng.choice([0, 1, 300, 70_000])))
              for k in range(40)]
    stream = b"".join(encode_frame(head, body) for head, body in frames)
    splitter, out, at = FrameSplitter(), [], 0
    while at < len(stream):
        step = rng.choice([1, 5, 100, 4096, 200_000])
        out += splitter.feed(stream[at:at + step])
        at += step
    assert [(head, pieces[1]) for head, pieces in out] == frames
    assert b"".join(b"".join(pieces) for _, pieces in out) == stream  # relayed as they came


def test_bytes_that_are_no_feed_are_refused():
    with pytest.raises(PeerError, match="not a recorder feed frame"):
        FrameSplitter().feed(b"HTTP/1.1 200 OK\r\n\r\n")
