"""The frames a worker relays from another worker's feed: sent raw on a socket, they come back
whole and byte for byte however the transport cuts them, whether they were sent gathered or
not, and bytes that are no feed are refused; what came in one burst is queued for the reader
before its task is woken, once."""

import random

import pytest
import trio

from recorder.server.feed import FeedQueue, encode_frame, frame_pieces, send_pieces
from recorder.server.feedrelay import FrameReader, relay_frames
from recorder.server.peers import PeerError


def some_frames(rng: random.Random) -> list[tuple[dict, bytes]]:
    return [({"type": "rows", "device": f"d{k}", "rows": k}, rng.randbytes(rng.choice([0, 1, 300, 70_000, 900_000])))
            for k in range(40)]


async def read_all(sock, buffered: bytes = b"") -> list:
    reader, out = FrameReader(sock, buffered), []
    while (frame := await reader.next()) is not None:
        out.append(frame)
    return out


async def test_frames_cut_anywhere_come_back_whole():
    rng = random.Random(5)
    frames = some_frames(rng)
    stream = b"".join(encode_frame(head, body) for head, body in frames)
    sender, receiver = trio.socket.socketpair()
    # The first bytes arrive with the upgrade's answer, as h11's trailing data.
    buffered, rest = stream[:7], stream[7:]

    async def send_cut_anywhere():
        at = 0
        while at < len(rest):
            step = rng.choice([1, 5, 100, 4096, 200_000])
            await send_pieces(sender, [rest[at:at + step]])
            at += step
        sender.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_cut_anywhere)
        out = await read_all(receiver, buffered)
    assert [(head, bytes(pieces[1])) for head, pieces in out] == frames
    assert b"".join(b"".join(pieces) for _, pieces in out) == stream  # relayed as they came


async def test_frames_sent_gathered_come_back_as_they_were_sent():
    rng = random.Random(6)
    frames = some_frames(rng)
    # A burst is many frames' pieces in one gathered send, more than one sendmsg() takes.
    pieces = [piece for head, body in frames for piece in frame_pieces(head, [body[:10], body[10:]])] * 20
    sender, receiver = trio.socket.socketpair()

    async def send():
        await send_pieces(sender, pieces)
        sender.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        out = await read_all(receiver)
    assert [(head, bytes(p[1])) for head, p in out] == frames * 20


async def test_bytes_that_are_no_feed_are_refused_and_a_cut_frame_is_told():
    sender, receiver = trio.socket.socketpair()
    await send_pieces(sender, [b"HTTP/1.1 200 OK\r\n\r\n"])
    with pytest.raises(PeerError, match="not a recorder feed frame"):
        await FrameReader(receiver).next()
    sender, receiver = trio.socket.socketpair()
    await send_pieces(sender, [encode_frame({"type": "rows"}, b"x" * 1000)[:-1]])
    sender.close()
    with pytest.raises(PeerError, match="ended inside a frame"):
        await FrameReader(receiver).next()


async def test_a_burst_is_queued_whole_before_the_reader_is_woken_once():
    rng = random.Random(7)
    # Bursts that the socket holds whole (a worker's feed socket holds 4 MiB where the kernel
    # allows it), so that each comes in at once.
    bursts = [[({"type": "rows", "device": "d", "session_id": "s", "rows": k}, rng.randbytes(rng.choice([0, 300, 5000])))
               for k in range(n)] for n in (12, 5)]
    sender, receiver = trio.socket.socketpair()
    woken_with: list[int] = []  # how many items the queue held at each wake-up
    queue = FeedQueue(max_batches=1000, max_bytes=1 << 30, wake=lambda: woken_with.append(queue.queued()[0]))
    burst_sent = trio.Event()

    async def send():
        for n, burst in enumerate(bursts):
            # One gathered send, as a worker sends a burst of its feed.
            await send_pieces(sender, [p for head, body in burst for p in frame_pieces(head, body)])
            if n == 0:
                await burst_sent.wait()  # the next burst only once the reader saw this one
        sender.close()

    async def reader_sees_first_burst():
        while not woken_with:
            await trio.sleep(0.01)
        burst_sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(reader_sees_first_burst)
        await relay_frames(FrameReader(receiver), queue)
    # The whole first burst at the first wake-up, the second at the next, and the feed's end.
    assert woken_with == [12, 17, 17]
    relayed = [b"".join(queue.take().frame()) for _ in range(17)]
    assert relayed == [encode_frame(head, body) for head, body in bursts[0] + bursts[1]]
    assert queue.take() is None
