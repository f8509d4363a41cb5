"""The part of a stream being written: an append-only Arrow IPC stream file.

A Parquet file is only readable once its footer is written, so rows first go to an IPC stream,
one record batch per flush. An IPC stream is read front to back, message by message: after a
crash it reads up to its last complete batch, and a batch cut off by the crash is simply not
there. Closing the part turns the file into Parquet (parts.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa


class WholeWrites:
    """The IPC writer's sink: what it writes is gathered, and commit() writes it to the file in
    one call, everything or raising.

    Gathered, because pyarrow writes a batch as many small pieces (a message header, then each
    buffer and its padding): some twenty write() calls per batch, which cost a light device's
    flush more than its rows. Everything or raising, because a raw write may write short (a disk
    filling up takes part of it), and pyarrow does not look at the count: the bytes it left out
    would leave a hole inside the stream, and every batch after it unreadable."""

    def __init__(self, file):
        self._file = file
        self._pieces: list[bytes] = []

    def write(self, data) -> int:
        piece = bytes(data)  # pyarrow may reuse its buffer once write() returns
        self._pieces.append(piece)
        return len(piece)

    def commit(self) -> None:
        data, self._pieces = b"".join(self._pieces), []
        view = memoryview(data)
        while view:
            view = view[self._file.write(view):]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed


class LiveFile:
    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        # Unbuffered: each batch reaches the OS when write() returns (kill -9 cannot lose it).
        self._file = open(path, "wb", buffering=0)
        self._sink = WholeWrites(self._file)
        self._writer = pa.ipc.new_stream(self._sink, schema)
        self._sink.commit()  # whatever pyarrow writes as the stream opens (it may defer the schema)
        self.rows = 0

    @property
    def size(self) -> int:
        return self._file.tell()

    def write(self, batch: pa.RecordBatch, *, sync: bool) -> None:
        if batch.num_rows:
            self._writer.write_batch(batch)
            self._sink.commit()
            self.rows += batch.num_rows
        if sync:
            os.fdatasync(self._file.fileno())

    def close(self, *, sync: bool) -> None:
        if self._file.closed:
            return
        self._writer.close()  # the end-of-stream marker
        self._sink.commit()
        if sync:
            os.fdatasync(self._file.fileno())
        self._file.close()

    def abandon(self) -> None:
        """Close without another write (after a storage error): no end-of-stream marker, which
        readers do without."""
        self._file.close()


def read_complete(path: Path, schema: pa.Schema | None = None) -> pa.Table:
    """Every complete batch of an IPC stream file, even one cut off mid-write.

    An empty or headless file (the crash came before the schema was written) gives an empty
    table of `schema`; without a schema it raises.
    """
    batches = []
    # Read into memory rather than mapping: a mapped file may be deleted under a reader.
    with pa.OSFile(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except (pa.ArrowInvalid, OSError, EOFError):
            if schema is None:
                raise
            return schema.empty_table()
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError, EOFError):
                break  # the batch the crash cut off
        return pa.Table.from_batches(batches, schema=reader.schema)
