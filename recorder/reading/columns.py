"""Which columns a reader gets by default, and the labels beside enumerated codes.

Stored fields carry their schema facts as Arrow field metadata (see storage.tables): a reserved
field is stored bit for bit, for replay, but left out of the default columns; an enumerated
code gets a dictionary-encoded `<name>_label` column beside it (`codec_label` = "H264").
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ..storage.tables import enum_labels, is_reserved

LABEL_SUFFIX = "_label"


def default_columns(schema: pa.Schema) -> list[str]:
    """Every stored column but the reserved ones, each enum code followed by its label."""
    names = []
    for field in schema:
        if is_reserved(field):
            continue
        names.append(field.name)
        if enum_labels(field) is not None:
            names.append(field.name + LABEL_SUFFIX)
    return names


def stored_columns(schema: pa.Schema, wanted: list[str]) -> list[str]:
    """The stored columns needed to produce `wanted` (a label needs its code)."""
    stored = set(schema.names)
    needed: list[str] = []
    for name in wanted:
        source = name
        if name not in stored and name.endswith(LABEL_SUFFIX) and name[:-len(LABEL_SUFFIX)] in stored:
            source = name[:-len(LABEL_SUFFIX)]
        if source not in stored:
            raise KeyError(f"no column {name!r} (columns: {', '.join(default_columns(schema))})")
        if source not in needed:
            needed.append(source)
    return needed


def finish(table: pa.Table, wanted: list[str]) -> pa.Table:
    """`table` (stored columns) as the `wanted` columns, labels computed, in the order asked."""
    columns = []
    for name in wanted:
        if name in table.column_names:
            columns.append((table.schema.field(name), table.column(name)))
        else:
            code = table.schema.field(name[:-len(LABEL_SUFFIX)])
            columns.append((pa.field(name, pa.dictionary(pa.int32(), pa.string())),
                            label_column(table.column(code.name), enum_labels(code) or {})))
    return pa.table([c for _, c in columns], schema=pa.schema([f for f, _ in columns], metadata=table.schema.metadata))


def label_column(codes: pa.ChunkedArray, labels: dict[int, str]) -> pa.ChunkedArray:
    """Codes as a dictionary of their labels; a code outside the table is labelled by its number."""
    distinct = pc.unique(codes).drop_null().to_pylist()
    known = dict(labels)
    for code in distinct:
        known.setdefault(code, str(code))
    values = list(known)
    indices = pc.index_in(codes, value_set=pa.array(values, codes.type))
    dictionary = pa.array([known[v] for v in values], pa.string())
    return pa.chunked_array([pa.DictionaryArray.from_arrays(chunk, dictionary) for chunk in indices.chunks],
                            pa.dictionary(pa.int32(), pa.string()))
