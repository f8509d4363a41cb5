"""A sans-IO, incremental decoder of version-1 bodies.

Feed it the de-chunked body in pieces of any size; each feed() returns a Batch of what became
complete. close() at the end of the body reports the record it cut off, if any. No I/O, no
clock: the caller owns sockets and files.

The hot path is vectorised. Record starts are found by scanning the buffer for the magic
and checking that each record ends where the next begins; only where that chain breaks (corrupt
bytes, a magic inside a payload) is it followed step by step. Large records the chain leads to
(camera frames) are stepped over rather than scanned. Headers, CRCs and samples are then read
for all records at once with numpy.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..schema import MessageSpec, Schema, load
from .crc import crc32_many
from .events import Batch, Blob, CorruptBytes, Counters, SampleBlock, VerbatimRecord
from .rules import RULES

# A record at least this long, where the chain of records leads, is stepped over rather than
# searched for the magic; elsewhere, windows of this much (doubling) are searched.
SKIP_PAYLOAD_BYTES = 16 << 10
WINDOW_BYTES = 64 << 10

_U16 = np.dtype("<u2")
_U32 = np.dtype("<u4")


def windows(b: np.ndarray, width: int) -> np.ndarray:
    """A read-only view of b whose row i is b[i : i + width] (no copy)."""
    return as_strided(b, shape=(len(b) - width + 1, width), strides=(1, 1), writeable=False)


def _read(b: np.ndarray, offsets: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The little-endian integer of `dtype` at each byte offset of b."""
    if not len(offsets):
        return np.empty(0, dtype)
    return windows(b, dtype.itemsize)[offsets].view(dtype).reshape(-1)


def _rows(b: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """The `width` bytes at each offset, one row each (a copy)."""
    return windows(b, width)[offsets]


def _fields(value: np.void) -> dict:
    """A structured scalar's fields as Python values (arrays as lists): item() converts them
    all in one C call, where indexing field by field cost 15 us per camera frame's prefix."""
    values = dict(zip(value.dtype.names, value.item(), strict=True))
    for name in _array_fields(value.dtype):
        values[name] = values[name].tolist()
    return values


@functools.cache
def _array_fields(dtype: np.dtype) -> tuple[str, ...]:
    return tuple(name for name in dtype.names if dtype[name].shape)


class Decoder:
    """Decodes one session's body, or the part of it one request carries.

    `highest_sequence` is the highest sequence already stored for the session (None for a new
    session): records at or below it are resends and are counted, not given out again.
    """

    def __init__(self, schema: Schema | None = None, *, highest_sequence: int | None = None):
        self.schema = schema or load()
        framing = self.schema.framing
        self._magic = framing.magic
        self._magic_word = np.frombuffer(framing.magic, "<u4")[0]
        self._header_size = framing.header_size
        self._max_payload = framing.max_payload_length
        self._header_dtype = framing.header_dtype
        self._opaque_flag = framing.opaque_flag
        self._reserved_mask = framing.reserved_flags_mask
        self.skip_payload_bytes = SKIP_PAYLOAD_BYTES
        self.window_bytes = WINDOW_BYTES
        self._sample_ids = np.array(sorted(m.id for m in self.schema.messages.values() if m.is_samples))
        self._blob_ids = np.array(sorted(m.id for m in self.schema.messages.values() if not m.is_samples))

        self.highest_sequence = highest_sequence
        self.counters = Counters()
        self._pending: list = []
        self._pending_length = 0
        self._pending_offset = 0  # body offset of the first pending byte
        self._need = self._header_size  # bytes pending before parsing can progress
        self._closed = False

    # -- public interface ---------------------------------------------------------------------

    def feed(self, data) -> Batch:
        """Take the next piece of body. `data` must not be changed afterwards (bytes is best)."""
        return self.feed_pieces([data])

    def feed_pieces(self, pieces) -> Batch:
        """Take the next pieces of body, in order, as one: they are joined once, with what is
        held back from before, instead of joined by the caller and then again here."""
        if self._closed:
            raise RuntimeError("feed() after close()")
        size = 0
        for data in pieces:
            if len(data):
                self._pending.append(data)
                size += len(data)
        if not size:
            return Batch()
        self._pending_length += size
        self.counters.bytes += size
        if self._pending_length < self._need:
            batch = Batch()
            batch.counters.bytes = size
            return batch
        batch = self._parse(final=False)
        batch.counters.bytes = size
        return batch

    def close(self) -> Batch:
        """The body has ended: what is still pending is a truncated record or corrupt bytes."""
        if self._closed:
            return Batch()
        self._closed = True
        if not self._pending_length:
            return Batch()
        return self._parse(final=True)

    @property
    def pending_bytes(self) -> int:
        """Bytes held back because they do not yet make a whole record."""
        return self._pending_length

    # -- parsing ------------------------------------------------------------------------------

    def _take_pending(self):
        if len(self._pending) == 1:
            buf = self._pending[0]
        else:
            buf = b"".join(self._pending)
        if not isinstance(buf, (bytes, bytearray)):
            buf = bytes(buf)
        return buf

    def _find_magic(self, b: np.ndarray) -> np.ndarray:
        """Every offset where the magic starts, in order.

        Comparing 32-bit words at each of the four alignments is several times faster than
        finding the first byte and checking the other three (images are full of that byte).
        """
        hits = []
        for k in range(4):
            words = (len(b) - k) // 4
            if words > 0:
                hits.append(np.flatnonzero(b[k: k + 4 * words].view("<u4") == self._magic_word) * 4 + k)
        if not hits:
            return np.empty(0, np.int64)
        return np.sort(np.concatenate(hits)).astype(np.int64, copy=False)

    def _record_starts(self, b: np.ndarray, view: memoryview) -> np.ndarray:
        """The offsets _parse() may take a record to start at, in order: every magic, except in
        the payloads of the records it will certainly take whole, which are not searched.

        _parse() walks the chain of records (each starts where the one before ended, the first
        at the first magic), skipping what lies between. Here that walk is followed: a record
        of at least SKIP_PAYLOAD_BYTES found where the chain leads is stepped over in one go (a
        camera frame is never searched for the magic: measured, 10 % of a worker's CPU went
        into searching them); elsewhere a window is searched whole (_find_magic), and the chain
        followed through it as _parse() will, to where it leads past the window. The window
        doubles while no large record comes, so that a body of small records only is searched
        in a few numpy passes, as before.
        """
        n = len(b)
        hsize, magic, max_payload = self._header_size, self._magic, self._max_payload
        found: list[np.ndarray] = []
        single: list[int] = []  # starts stepped over one by one, put in `found` at each window
        pos = 0
        window = self.window_bytes
        while pos < n:
            if view[pos:pos + 4] == magic:
                if pos + hsize > n:
                    single.append(pos)
                    break
                length = int.from_bytes(view[pos + 8:pos + 12], "little")
                if self.skip_payload_bytes <= length <= max_payload:
                    single.append(pos)
                    pos += hsize + length
                    window = self.window_bytes
                    continue
            end = min(n, pos + window)
            hits = self._find_magic(b[pos:min(n, end + 3)]) + pos
            hits = hits[hits < end]
            if single:
                found.append(np.array(single, np.int64))
                single = []
            found.append(hits)
            pos = self._chain_end(b, hits, pos, end)
            window *= 2
        if single:
            found.append(np.array(single, np.int64))
        if not found:
            return np.empty(0, np.int64)
        return np.concatenate(found) if len(found) > 1 else found[0]

    def _ends(self, b: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For records at `starts`: whether the buffer holds each one's header, and where each
        ends (after its header alone if oversized; past any buffer if its header is cut off)."""
        n, hsize = len(b), self._header_size
        has_header = starts + hsize <= n
        lengths = np.full(len(starts), -1, np.int64)
        lengths[has_header] = _read(b, starts[has_header] + 8, _U32)
        oversized = lengths > self._max_payload
        unknown_end = np.int64(n + self._max_payload + hsize + 1)
        return has_header, np.where(has_header, starts + hsize + np.where(oversized, 0, lengths), unknown_end)

    def _chain_end(self, b: np.ndarray, hits: np.ndarray, pos: int, end: int) -> int:
        """Where _parse()'s walk, at `pos`, goes on after the window [pos, end) whose every
        magic is `hits`: the end of the record that leaves the window (past the buffer's end if
        the walk stops at a record the buffer cuts off), else the window's end."""
        _, ends = self._ends(b, hits)
        breaks = np.flatnonzero(hits[1:] != ends[:-1])
        while True:
            i = int(np.searchsorted(hits, pos))
            if i == len(hits):
                return end
            k = int(np.searchsorted(breaks, i))
            last = int(breaks[k]) if k < len(breaks) else len(hits) - 1
            pos = int(ends[last])
            if pos > end:
                return pos

    def _parse(self, final: bool) -> Batch:
        buf = self._take_pending()
        base = self._pending_offset
        b = np.frombuffer(buf, np.uint8)
        n = len(b)
        batch = Batch()
        counters = batch.counters
        view = memoryview(buf)
        hsize = self._header_size

        cand = self._record_starts(b, view)
        has_header, ends = self._ends(b, cand)
        breaks = np.flatnonzero(cand[1:] != ends[:-1])

        stretches: list[tuple[int, int]] = []  # candidate index ranges [i, j) of whole records
        pos = 0
        consumed = n
        tail_start = None  # start of a record the buffer does not yet hold whole
        while pos < n:
            i = int(np.searchsorted(cand, pos))
            if i == len(cand):
                if final:
                    if n - pos < 4 and self._magic.startswith(bytes(view[pos:n])):
                        tail_start = pos
                    else:
                        self._corrupt(batch, base, view, pos, n)
                else:
                    keep = max(pos, n - 3)  # may be the start of a magic
                    self._corrupt(batch, base, view, pos, keep)
                    consumed = keep
                break
            start = int(cand[i])
            if start > pos:
                self._corrupt(batch, base, view, pos, start)
            k = int(np.searchsorted(breaks, i))
            last = int(breaks[k]) if k < len(breaks) else len(cand) - 1
            end = int(ends[last])
            if end > n:
                if last > i:
                    stretches.append((i, last))
                tail_start = int(cand[last])
                consumed = tail_start
                break
            stretches.append((i, last + 1))
            pos = end

        if tail_start is not None:
            if final:
                self._truncated(batch, view, tail_start, n)
                consumed = n
            else:
                t = int(np.searchsorted(cand, tail_start))
                has_len = t < len(cand) and cand[t] == tail_start and has_header[t]
                self._need = int(ends[t] - tail_start) if has_len else hsize
        else:
            self._need = hsize

        if stretches:
            idx = np.concatenate([np.arange(i, j) for i, j in stretches])
            self._records(batch, buf, b, view, cand[idx])

        # Keep what is not consumed for the next feed.
        self._pending_offset = base + consumed
        if consumed >= n:
            self._pending, self._pending_length = [], 0
        else:
            rest = view[consumed:]
            self._pending, self._pending_length = [rest], len(rest)
        self.counters.add(counters)
        return batch

    def _corrupt(self, batch: Batch, base: int, view: memoryview, start: int, end: int) -> None:
        if end > start:
            batch.corrupt.append(CorruptBytes(base + start, view[start:end]))
            batch.counters.corrupt_bytes += end - start

    def _truncated(self, batch: Batch, view: memoryview, start: int, end: int) -> None:
        record = VerbatimRecord("truncated", f"record cut off by the end of the body after {end - start} bytes",
                                view[start:end])
        if end - start >= self._header_size:
            h = np.frombuffer(view[start:start + self._header_size], self._header_dtype)[0]
            record.message_id, record.flags = int(h["message_id"]), int(h["flags"])
            record.sequence, record.timestamp_ns = int(h["sequence"]), int(h["timestamp_ns"])
            record.detail += f" of {self._header_size + int(h['payload_length'])}"
        batch.verbatim.append(record)
        batch.counters.truncated += 1

    def _records(self, batch: Batch, buf, b: np.ndarray, view: memoryview, starts: np.ndarray) -> None:
        """Classify and decode whole records starting at `starts`."""
        counters = batch.counters
        hsize = self._header_size
        headers = _rows(b, starts, hsize).view(self._header_dtype).reshape(-1)
        ids = headers["message_id"].astype(np.int64)
        flags = headers["flags"]
        lengths = headers["payload_length"].astype(np.int64)
        sequences = headers["sequence"]
        payloads = starts + hsize

        oversized = lengths > self._max_payload
        crc_ok = np.zeros(len(starts), bool)
        fits = ~oversized
        crc_ok[fits] = crc32_many(b, payloads[fits], lengths[fits]) == headers["crc32"][fits]
        bad_crc = fits & ~crc_ok

        # Sequence accounting, on records whose payload checked out (a bad CRC may mean a bad header).
        resend = np.zeros(len(starts), bool)
        tracked = np.flatnonzero(crc_ok)
        if len(tracked):
            seq = sequences[tracked]
            running = np.maximum.accumulate(seq)
            before = np.empty_like(seq)
            before[1:] = running[:-1]
            if self.highest_sequence is None:
                before[0] = seq[0]  # nothing before the first: not a resend
                first_is_new = True
            else:
                before[0] = self.highest_sequence
                if len(seq) > 1:
                    before[1:] = np.maximum(before[1:], np.uint64(self.highest_sequence))
                first_is_new = False
            is_resend = seq <= before
            if first_is_new:
                is_resend[0] = False
            new = ~is_resend
            # uint64 throughout: exact for any u64 sequence, and the gaps, disjoint ranges of
            # missing sequence numbers, add up to less than 2**64.
            gaps = seq[new] - before[new] - np.uint64(1)
            if first_is_new and new[0]:
                gaps[0] = seq[0]  # the session starts at 0: anything below is missing
            counters.gaps += int(gaps.sum(dtype=np.uint64))
            counters.resends += int(is_resend.sum())
            resend[tracked] = is_resend
            top = int(running[-1])
            if self.highest_sequence is None or top > self.highest_sequence:
                self.highest_sequence = top

        reserved = (flags & self._reserved_mask) != 0
        opaque = (flags & self._opaque_flag) != 0
        is_sample = np.isin(ids, self._sample_ids)
        is_blob = np.isin(ids, self._blob_ids)
        decodable = crc_ok & ~reserved & ~opaque & ~resend & (is_sample | is_blob)

        verbatim_masks = (
            ("oversized", oversized & ~resend),
            ("bad_crc", bad_crc),
            ("reserved_flags", crc_ok & reserved & ~resend),
            ("opaque", crc_ok & ~reserved & opaque & ~resend),
            ("unknown_id", crc_ok & ~reserved & ~opaque & ~resend & ~is_sample & ~is_blob),
        )
        for reason, mask in verbatim_masks:
            for r in np.flatnonzero(mask):
                self._verbatim(batch, view, headers[r], int(starts[r]), reason)
        counters.oversized += int(verbatim_masks[0][1].sum())
        counters.bad_crc += int(bad_crc.sum())
        counters.reserved_flags += int(verbatim_masks[2][1].sum())
        counters.opaque += int(verbatim_masks[3][1].sum() + verbatim_masks[4][1].sum())

        todo = np.flatnonzero(decodable)
        if not len(todo):
            return
        todo_ids = ids[todo]
        for message_id in np.unique(todo_ids):
            group = todo[todo_ids == message_id]
            spec = self.schema.messages[int(message_id)]
            if spec.is_samples:
                self._samples(batch, b, view, spec, group, headers, starts)
            else:
                for r in group:
                    self._blob(batch, buf, view, spec, headers[r], int(starts[r]))

    def _verbatim(self, batch: Batch, view: memoryview, header, start: int, reason: str, detail: str = "") -> None:
        length = int(header["payload_length"])
        if reason == "oversized":
            end = start + self._header_size  # the length cannot be trusted; keep the header
            detail = f"payload_length {length} is over the limit of {self._max_payload}"
        else:
            end = start + self._header_size + length
        if not detail:
            detail = {
                "bad_crc": "CRC-32 of the payload does not match the header",
                "reserved_flags": f"reserved flag bits set (flags {int(header['flags']):#06x})",
                "opaque": "OPAQUE flag set",
                "unknown_id": f"message id {int(header['message_id']):#06x} is not in the table",
            }.get(reason, reason)
        batch.verbatim.append(VerbatimRecord(
            reason, detail, view[start:end], int(header["message_id"]), int(header["flags"]),
            int(header["sequence"]), int(header["timestamp_ns"])))

    def _samples(self, batch, b, view, spec: MessageSpec, group, headers, starts) -> None:
        counters = batch.counters
        hsize = self._header_size
        lengths = headers["payload_length"][group].astype(np.int64)
        payloads = starts[group] + hsize
        has_prefix = lengths >= 4
        counts = np.zeros(len(group), np.int64)
        sources = np.zeros(len(group), np.uint16)
        counts[has_prefix] = _read(b, payloads[has_prefix] + 2, _U16)
        sources[has_prefix] = _read(b, payloads[has_prefix], _U16)
        well_formed = has_prefix & (lengths == 4 + counts * spec.sample_size)
        for r in np.flatnonzero(~well_formed):
            detail = (f"{spec.name} payload of {int(lengths[r])} bytes does not hold "
                      f"{int(counts[r])} samples of {spec.sample_size} bytes after the 4-byte prefix")
            self._verbatim(batch, view, headers[group[r]], int(starts[group[r]]), "malformed", detail)
            counters.malformed += 1
        if not well_formed.all():
            group, counts, sources, payloads = (group[well_formed], counts[well_formed],
                                                sources[well_formed], payloads[well_formed])
        if not len(group):
            return
        size = spec.sample_size
        total = int(counts.sum())
        if (counts == 1).all():  # one sample per record: the common worst case
            offsets = payloads + 4
            per_sample_sources = sources
            per_sample_sequences = headers["sequence"][group]
        else:
            first = np.cumsum(counts) - counts
            within = np.arange(total, dtype=np.int64) - np.repeat(first, counts)
            offsets = np.repeat(payloads + 4, counts) + within * size
            per_sample_sources = np.repeat(sources, counts)
            per_sample_sequences = np.repeat(headers["sequence"][group], counts)
        samples = _rows(b, offsets, size).view(spec.dtype).reshape(-1) if total else np.empty(0, spec.dtype)
        batch.samples.append(SampleBlock(spec, per_sample_sequences, per_sample_sources, samples))
        counters.records += len(group)
        counters.samples += total

    def _blob(self, batch, buf, view, spec: MessageSpec, header, start: int) -> None:
        prefix_spec = spec.prefix
        length = int(header["payload_length"])
        payload = start + self._header_size
        problem = None
        if length < prefix_spec.size:
            problem = f"{spec.name} payload of {length} bytes is shorter than its {prefix_spec.size}-byte prefix"
        else:
            prefix = np.frombuffer(buf, prefix_spec.dtype, count=1, offset=payload)[0]
            problem = self._check_prefix(prefix_spec, prefix, length - prefix_spec.size)
        if problem:
            self._verbatim(batch, view, header, start, "malformed", problem)
            batch.counters.malformed += 1
            return
        values = _fields(prefix)
        if prefix_spec.label_field:
            f = next(f for f in prefix_spec.fields if f.name == prefix_spec.label_field)
            label = self.schema.enums[f.enum].label(values[f.name])
        else:
            label = prefix_spec.label
        batch.blobs.append(Blob(spec, int(header["sequence"]), int(header["timestamp_ns"]), label, values,
                                view[payload + prefix_spec.size: payload + length]))
        batch.counters.records += 1
        batch.counters.blobs += 1

    def _check_prefix(self, prefix_spec, prefix, data_length: int) -> str | None:
        for f in prefix_spec.fields:
            if not (f.strict or f.range):
                continue  # nothing to check (and a float field may hold NaN)
            value = int(prefix[f.name])
            if f.strict and value not in self.schema.enums[f.enum].values:
                return f"{f.name} {value} is not one of {sorted(self.schema.enums[f.enum].values)}"
            if f.range and not f.range[0] <= value <= f.range[1]:
                return f"{f.name} {value} is outside {f.range[0]}..{f.range[1]}"
        if prefix_spec.rule:
            return RULES[prefix_spec.rule](prefix, data_length)
        return None
