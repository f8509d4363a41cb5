"""Rows of a stored schema as JSON objects (one per row) with their JSON schema, built by Arrow
for a whole batch at once: no Python object per value.

How a batch is built: every number of one kind (floats, signed, unsigned integers) in the batch,
of every column and list element, is gathered into one array and turned into text by one Arrow
cast (the shortest text of the exact value: a float is widened to f64 first, so an f32 read back
as a double equals the stored f32; NaN and infinity, which JSON cannot hold, become null); each
column, and each element of a fixed-size list column, is then a slice of that text, and one
element-wise join lays the slices out between the keys. A handful of Arrow calls a batch
whatever its number of columns, so small batches (a few camera frames) cost little more than
their rows.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def json_type(arrow_type: pa.DataType) -> dict:
    if pa.types.is_integer(arrow_type):
        return {"type": "integer"}
    if pa.types.is_floating(arrow_type):
        # NaN and infinity are written as null; the type stays the single "number" that
        # Foxglove's schema reader (plot paths, message path completion) expects.
        return {"type": "number"}
    if pa.types.is_boolean(arrow_type):
        return {"type": "boolean"}
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return {"type": "string"}
    if pa.types.is_fixed_size_list(arrow_type):
        size = arrow_type.list_size
        return {"type": "array", "items": json_type(arrow_type.value_type), "minItems": size, "maxItems": size}
    return {}


def _text(value: str) -> pa.Scalar:
    # Arrow scalars, not Python strings: a Python argument costs compute functions a failed
    # optional import on every call (about 0.2 ms, more than the work on a small batch).
    return pa.scalar(value, pa.string())


NULL_TEXT = _text("null")
EMPTY_TEXT = _text("")

# The kinds of number formatted together, and the numpy type each is gathered as (exact for
# every member: f32 -> f64, any signed -> int64, any unsigned -> uint64).
_KINDS = {"float": np.float64, "signed": np.int64, "unsigned": np.uint64}


def _kind(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_signed_integer(arrow_type):
        return "signed"
    if pa.types.is_unsigned_integer(arrow_type):
        return "unsigned"
    return None


class JsonRows:
    """JSON text of the rows of one schema: `fields` (those kept), `schema` (a JSON schema, with
    each field's description and unit), `encode(table)` (one bytes object per row)."""

    def __init__(self, schema: pa.Schema, title: str, leave_out: tuple[str, ...] = ()):
        self.fields = [f for f in schema if not f.name.startswith("reserved") and f.name not in leave_out]
        properties = {}
        for f in self.fields:
            described = dict(json_type(f.type))
            meta = f.metadata or {}
            text = meta.get(b"recorder.description", b"").decode()
            unit = meta.get(b"recorder.unit", b"").decode()
            if text or unit:
                described["description"] = f"{text} [{unit}]" if unit else text
            properties[f.name] = described
        self.schema = json.dumps({"title": title, "type": "object", "properties": properties,
                                  "required": [f.name for f in self.fields]}).encode()
        # The text around the values, fixed by the schema: literal before value 0, value 0,
        # literal before value 1, ... (a list field's elements are values of their own).
        self._literals: list[pa.Scalar] = []
        literal = "{"
        for i, f in enumerate(self.fields):
            literal += ("," if i else "") + json.dumps(f.name) + ":"
            if pa.types.is_fixed_size_list(f.type):
                for k in range(f.type.list_size):
                    self._literals.append(_text(literal + ("[" if k == 0 else ",")))
                    literal = ""
                literal = "]"
            else:
                self._literals.append(_text(literal))
                literal = ""
        self._end = _text(literal + "}")

    def encode(self, table: pa.Table) -> list[bytes]:
        values = _value_texts(table, self.fields)
        pieces: list = []
        for literal, value in zip(self._literals, values, strict=True):
            pieces += [literal, value]
        pieces.append(self._end)
        joined = pc.binary_join_element_wise(*pieces, EMPTY_TEXT)
        return joined.cast(pa.binary()).to_pylist()


def _value_texts(table: pa.Table, fields: list[pa.Field]) -> list[pa.Array]:
    """The JSON text of every value slot of the rows (a field's, or each element's of a list
    field), in field order, as the module doc says."""
    rows = table.num_rows
    slots: list = []  # an Arrow array, or (kind, first, count) into the kind's gathered numbers
    gathered: dict[str, list[np.ndarray]] = {kind: [] for kind in _KINDS}
    sizes = dict.fromkeys(_KINDS, 0)

    def gather(kind: str, numbers: np.ndarray) -> None:
        slots.append((kind, sizes[kind], len(numbers)))
        gathered[kind].append(numbers)
        sizes[kind] += len(numbers)

    for f in fields:
        column = table.column(f.name)
        if pa.types.is_fixed_size_list(f.type):
            size = f.type.list_size
            array = column.combine_chunks()
            values = array.values.slice(array.offset * size, len(array) * size)  # .values ignores a slice
            if array.null_count:  # a null list (never stored by the recorder): its elements are null
                values = pc.if_else(pa.array(np.repeat(array.is_valid().to_numpy(zero_copy_only=False), size)),
                                    values, pa.scalar(None, values.type))
            kind = _kind(f.type.value_type)
            if kind is None or values.null_count:
                texts = _texts(values, f.type.value_type)  # element by element: rare
                slots += [texts.take(pa.array(np.arange(k, len(texts), size))) for k in range(size)]
                continue
            # Element-major (every row's element 0, then element 1, ...): each element a slice.
            elements = values.to_numpy(zero_copy_only=False).reshape(rows, size).T
            for k in range(size):
                gather(kind, elements[k])
            continue
        kind = _kind(f.type)
        if kind is None or (kind != "float" and column.null_count):
            slots.append(_texts(column.combine_chunks(), f.type))
        else:
            gather(kind, column.to_numpy())  # a float column's nulls come as NaN: null, as they should

    texts = {}
    for kind, parts in gathered.items():
        if parts:
            numbers = np.concatenate(parts).astype(_KINDS[kind], copy=False)
            text = pa.array(numbers).cast(pa.string())
            if kind == "float":
                bad = ~np.isfinite(numbers)
                if bad.any():
                    text = pc.if_else(pa.array(bad), NULL_TEXT, text)
            texts[kind] = text
    return [texts[slot[0]].slice(slot[1], slot[2]) if isinstance(slot, tuple) else slot for slot in slots]


def _texts(column: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    """One column's values as JSON text, on its own (strings, booleans, integers with nulls)."""
    if pa.types.is_floating(arrow_type):
        wide = pc.cast(column, pa.float64())
        finite = pc.fill_null(pc.is_finite(wide), False)
        return pc.if_else(finite, pc.cast(wide, pa.string()), NULL_TEXT)
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return pc.fill_null(pc.cast(column, pa.string()), NULL_TEXT)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        labels = column.dictionary_encode()  # few distinct labels: each quoted once
        quoted = pa.array([json.dumps(v) for v in labels.dictionary.to_pylist()], pa.string())
        return pc.fill_null(quoted.take(labels.indices), NULL_TEXT)
    return pa.array([json.dumps(v, default=str) for v in column.to_pylist()], pa.string())
