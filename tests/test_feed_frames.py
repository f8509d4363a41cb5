"""A feed frame's body is the Arrow IPC stream any Arrow reader reads: byte for byte what
pyarrow's own stream writer writes for the batch, however it is put together for sending."""

import io
import os

import numpy as np
import pyarrow as pa

from recorder.server.feed import ROWS, FeedItem, binary_array, read_frame


def frame_bytes(item: FeedItem) -> bytes:
    return b"".join(bytes(memoryview(piece)) for piece in item.frame())


def test_a_frame_holds_the_stream_pyarrow_writes_for_its_batch():
    blobs = [os.urandom(n) for n in (0, 1, 13, 150_000, 333_333)]
    batches = [
        pa.RecordBatch.from_arrays([pa.array(np.arange(5, dtype=np.int64)), pa.array(["a", None, "c", "d", "e"]),
                                    binary_array(blobs)], names=["timestamp_ns", "source", "data_zstd"]),
        pa.RecordBatch.from_arrays([pa.array(np.linspace(0, 1, 800))], names=["accel_x"]),
        pa.RecordBatch.from_arrays([pa.array([], pa.int64())], names=["empty"]),
    ]
    for batch in batches:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        encoded = io.BytesIO(frame_bytes(FeedItem(ROWS, "S1", "session", "stream", batch)))
        head, body = read_frame(encoded.read)
        assert head["rows"] == batch.num_rows
        assert bytes(body) == sink.getvalue().to_pybytes()
        assert pa.ipc.open_stream(body).read_next_batch().equals(batch)
