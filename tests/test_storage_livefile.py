"""A live file's batches reach the file whole, one write() each, and read back exactly.

pyarrow writes a batch as some twenty small pieces; the live file gathers them and writes each
batch in one call (after which kill -9 cannot lose it), completing a write the OS took only in
part, since a hole in an IPC stream would make every later batch unreadable."""

from __future__ import annotations

import pyarrow as pa

from recorder.storage.livefile import LiveFile, WholeWrites, read_complete

SCHEMA = pa.schema([("timestamp_ns", pa.int64()), ("label", pa.string()), ("xyz", pa.list_(pa.float32(), 3))])


def batch(first: int, n: int) -> pa.RecordBatch:
    return pa.record_batch([pa.array(range(first, first + n), pa.int64()),
                            pa.array([f"s{i % 3}" for i in range(n)]),
                            pa.array([[i, -i, 0.5] for i in range(n)], pa.list_(pa.float32(), 3))], schema=SCHEMA)


class ShortWrites:
    """A file that takes at most 7 bytes per write() and counts the calls, as a disk filling up
    may take part of a write."""

    def __init__(self, file):
        self.file, self.calls = file, 0

    def write(self, data) -> int:
        self.calls += 1
        return self.file.write(bytes(memoryview(data)[:7]))

    @property
    def closed(self) -> bool:
        return self.file.closed


def test_each_batch_is_in_the_file_once_write_returns_and_reads_back(tmp_path):
    path = tmp_path / "live.arrows"
    live = LiveFile(path, SCHEMA)
    sizes = []
    for k in range(3):
        live.write(batch(10 * k, 10), sync=False)
        sizes.append(path.stat().st_size)
        assert read_complete(path, SCHEMA).num_rows == 10 * (k + 1)  # read as a crash would leave it
    assert sizes == sorted(sizes) and live.size == sizes[-1]
    live.close(sync=True)
    table = read_complete(path, SCHEMA)
    assert table.to_pydict() == pa.Table.from_batches([batch(0, 10), batch(10, 10), batch(20, 10)]).to_pydict()


def test_a_batch_is_one_write_and_a_short_one_is_completed(tmp_path):
    with open(tmp_path / "stream.arrows", "wb", buffering=0) as file:
        short = ShortWrites(file)
        sink = WholeWrites(short)
        writer = pa.ipc.new_stream(sink, SCHEMA)
        writer.write_batch(batch(0, 5))
        assert short.calls == 0  # gathered, not written piece by piece
        sink.commit()
        writer.close()
        sink.commit()
    data = (tmp_path / "stream.arrows").read_bytes()
    assert short.calls == -(-len(data) // 7)  # every byte, 7 at a time, in order
    assert read_complete(tmp_path / "stream.arrows", SCHEMA).to_pydict() == batch(0, 5).to_pydict()
