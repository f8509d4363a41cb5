"""raw_message: the records a batch's rows came in, rebuilt bit for bit from the stored fields
by the re-streamer's encoder (recorder.restream.rebuild), one SharedMessage per record.

A sample record is delivered at its first sample's row, with every sample of the record: the
rows after the batch (`following`) complete a record a read cut, and a record whose message
went out with the previous batch (`batched`) is not sent again. A camera frame or audio block
is its own record. What a rebuilt record cannot restore (a sample record's header time, count-0
records) is said in recorder/restream/rebuild.py. Records kept verbatim (opaque, malformed, bad
CRC) feed no callback.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..restream.rebuild import blob_records, sample_records
from ..schema import load
from ..storage.tables import MESSAGE_KEY
from .data import SharedMessage
from .streams import AUDIO, CAMERA

PREFIXES = {CAMERA: b"camera_frame", AUDIO: b"audio_block"}
HEADER_BYTES = 32


class RawMessages:
    def __init__(self, message: str, stream: str, batch: pa.RecordBatch, following: pa.RecordBatch | None,
                 batched: int | None):
        self.records: dict[int, bytes] = {}  # row -> the record that starts there
        if message in PREFIXES:
            index = pa.Table.from_batches([batch]).replace_schema_metadata({MESSAGE_KEY: PREFIXES[message]})
            blobs = blob_records(stream, index.drop_columns(["data"]))
            data = batch.column("data")
            self.records = {i: blobs.record(i, data[i].as_py()) for i in range(batch.num_rows)}
            return
        rows = pa.Table.from_batches([batch] + ([following] if following is not None and following.num_rows else []))
        rebuilt = sample_records(load().message(message), rows)
        by_sequence = {int(s): rebuilt.groups[g][r].tobytes()
                       for s, g, r in zip(rebuilt.sequence, rebuilt.group, rebuilt.row, strict=True)}
        sequence = batch.column("sequence").to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, sequence[1:] != sequence[:-1]]).tolist()
        self.records = {i: by_sequence[int(sequence[i])] for i in starts
                        if not (i == 0 and batched is not None and int(sequence[0]) == batched)}

    def at(self, i: int) -> SharedMessage | None:
        data = self.records.get(i)
        return None if data is None else SharedMessage(data)
