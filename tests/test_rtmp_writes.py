"""The RTMP server's media writes: every stream's media that waits is written in one worker-thread
trip per tick, each stream's FLV byte for byte what writing its tags one by one gives; a stream
with too much waiting waits for its tick (backpressure); a stream whose write fails is told so,
and the other streams in the same trip are written all the same."""

from __future__ import annotations

import pytest
import trio
from test_rtmp_flv import feed, make_flv, read_tags

from recorder.rtmp import flv as F
from recorder.rtmp.events import AudioData, VideoData
from recorder.rtmp.recording import Recording
from recorder.rtmp.streams import RtmpSession
from recorder.rtmp.writes import MediaWrites

T0 = 1_795_256_102.25
TICK_S = 0.05


@pytest.fixture(scope="module")
def tags(tmp_path_factory) -> list:
    flv = make_flv(tmp_path_factory.mktemp("clip") / "a.flv")
    return [t for t in read_tags(flv) if t[0] != F.SCRIPT]


class Publisher:
    """What MediaWrites tells the connection that publishes a stream."""

    def __init__(self):
        self.failures: list[str] = []

    def failed_write(self, message: str) -> None:
        self.failures.append(message)


def events_of(tags) -> list:
    return [(VideoData if kind == F.VIDEO else AudioData)(1, ts, data) for kind, ts, data in tags]


def publishing(data_dir, key: str) -> RtmpSession:
    session = RtmpSession("live", key)
    session.recording = Recording.create(data_dir, "live", key, now=T0, sync=False)
    session.recording.begin_publish(client="10.0.0.1:5000", tc_url=None, publish_name=key, now=T0)
    return session


def written_one_by_one(data_dir, tags) -> bytes:
    recording = Recording.create(data_dir, "live", "reference", now=T0, sync=False)
    recording.begin_publish(client="10.0.0.1:5000", tc_url=None, publish_name="reference", now=T0)
    feed(recording, tags)
    return (recording.folder / "stream.flv").read_bytes()


async def test_every_streams_media_goes_in_one_trip_per_tick(tmp_path, tags):
    writes = MediaWrites(TICK_S)
    sessions = [publishing(tmp_path / "data", f"glasses{n}") for n in range(3)]
    publishers = [Publisher() for _ in sessions]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writes.run)
        for start in range(0, len(tags), 10):  # three streams, each sending a tick's worth at a time
            for session, publisher in zip(sessions, publishers, strict=True):
                part = tags[start:start + 10]
                writes.add(session, publisher, events_of(part), sum(len(d) for *_, d in part))
            trips = writes.trips
            await writes.settle(sessions[0])
            assert writes.trips == trips + 1  # all three in the one trip
            assert not any(writes.waiting_bytes(s) for s in sessions)
        writes.close()
    reference = written_one_by_one(tmp_path / "reference", tags)
    for session, publisher in zip(sessions, publishers, strict=True):
        assert (session.recording.folder / "stream.flv").read_bytes() == reference
        assert publisher.failures == []
        assert session.state == "active"
        assert session.stats["video_frames"] == sum(F.parse_video_header(d).is_frame for k, _, d in tags if k == F.VIDEO)


async def test_a_failed_write_is_told_to_its_publisher_and_the_others_are_written(tmp_path, tags):
    writes = MediaWrites(TICK_S)
    good, bad = publishing(tmp_path / "data", "good"), publishing(tmp_path / "data", "bad")
    good_publisher, bad_publisher = Publisher(), Publisher()
    bad.recording.finish()  # its FLV is closed: a write to it fails
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writes.run)
        writes.add(bad, bad_publisher, events_of(tags[:10]), 1)
        writes.add(good, good_publisher, events_of(tags[:10]), 1)
        await writes.settle(bad)
        writes.close()
    assert bad_publisher.failures and "recording failed" in bad_publisher.failures[0]
    assert good_publisher.failures == []
    assert (good.recording.folder / "stream.flv").read_bytes() == written_one_by_one(tmp_path / "ref", tags[:10])


async def test_a_stream_whose_lock_is_held_waits_for_a_later_tick(tmp_path, tags):
    """A publish being ended (or a finish) holds the stream's lock: its media waits, in order."""
    writes = MediaWrites(TICK_S)
    session, publisher = publishing(tmp_path / "data", "k"), Publisher()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writes.run)
        async with session.lock:
            writes.add(session, publisher, events_of(tags[:10]), 1)
            await trio.sleep(4 * TICK_S)
            assert writes.waiting_bytes(session) == 1  # not written while the lock is held
        writes.add(session, publisher, events_of(tags[10:]), 1)
        await writes.settle(session)
        writes.close()
    assert (session.recording.folder / "stream.flv").read_bytes() == written_one_by_one(tmp_path / "ref", tags)


async def test_close_writes_what_waits_then_ends(tmp_path, tags):
    writes = MediaWrites(3600)  # no tick would come for an hour
    session, publisher = publishing(tmp_path / "data", "k"), Publisher()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writes.run)
            writes.add(session, publisher, events_of(tags), 1)
            writes.close()
    assert (session.recording.folder / "stream.flv").read_bytes() == written_one_by_one(tmp_path / "ref", tags)
