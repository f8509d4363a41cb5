"""The message layouts of schemas/messages.toml as Python objects and numpy dtypes.

Everything that needs a layout (decoder, encoder, Arrow schemas, simulator, docs) asks this
module; nothing else reads the TOML file.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

SCALAR_TYPES = {
    "u8": "<u1", "u16": "<u2", "u32": "<u4", "u64": "<u8",
    "i8": "<i1", "i16": "<i2", "i32": "<i4", "i64": "<i8",
    "f32": "<f4", "f64": "<f8",
    "bytes4": "S4",
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    shape: tuple[int, ...] = ()
    unit: str | None = None
    description: str = ""
    enum: str | None = None
    strict: bool = False
    range: tuple[int, int] | None = None

    @property
    def numpy_type(self) -> str:
        return SCALAR_TYPES[self.type]

    @property
    def count(self) -> int:
        """Number of scalars in the field (1 for a scalar)."""
        n = 1
        for dim in self.shape:
            n *= dim
        return n

    @property
    def size(self) -> int:
        return np.dtype(self.numpy_type).itemsize * self.count


def _fields(raw: list[dict]) -> tuple[FieldSpec, ...]:
    return tuple(
        FieldSpec(
            name=f["name"],
            type=f["type"],
            shape=tuple(f.get("shape", ())),
            unit=f.get("unit"),
            description=f.get("description", ""),
            enum=f.get("enum"),
            strict=f.get("strict", False),
            range=tuple(f["range"]) if "range" in f else None,
        )
        for f in raw
    )


def packed_dtype(fields: tuple[FieldSpec, ...]) -> np.dtype:
    """A packed little-endian structured dtype, field for field as on the wire."""
    return np.dtype([(f.name, f.numpy_type, f.shape) for f in fields])


@dataclass(frozen=True)
class Enum:
    name: str
    values: dict[int, str]
    unknown: str | None = None

    def label(self, value: int) -> str:
        if value in self.values:
            return self.values[value]
        return (self.unknown or f"{self.name}-{{value}}").format(value=value)

    def code(self, label: str) -> int:
        for value, name in self.values.items():
            if name == label:
                return value
        raise KeyError(f"{label!r} is not a value of {self.name}")


@dataclass(frozen=True)
class PrefixSpec:
    name: str
    size: int
    fields: tuple[FieldSpec, ...]
    label_field: str | None
    label: str | None
    rule: str | None
    description: str
    dtype: np.dtype = field(compare=False)


@dataclass(frozen=True)
class MessageSpec:
    id: int
    name: str
    kind: str  # "samples" or "blob"
    stream: str
    description: str
    fields: tuple[FieldSpec, ...] = ()
    sources: dict[int, str] = field(default_factory=dict)
    source_label_format: str = "{source}"
    split_by_source: bool = False
    time_field: str = "timestamp_ns"
    prefix: PrefixSpec | None = None
    dtype: np.dtype | None = field(default=None, compare=False)

    @property
    def is_samples(self) -> bool:
        return self.kind == "samples"

    @property
    def sample_size(self) -> int:
        assert self.dtype is not None
        return self.dtype.itemsize

    def source_label(self, source: int) -> str:
        if source in self.sources:
            return self.sources[source]
        return self.source_label_format.format(source=source)

    def source_code(self, label: str) -> int:
        for value, name in self.sources.items():
            if name == label:
                return value
        raise KeyError(f"{label!r} is not a source of {self.name}")


@dataclass(frozen=True)
class Framing:
    magic: bytes
    header_size: int
    max_payload_length: int
    opaque_flag: int
    reserved_flags_mask: int
    header: tuple[FieldSpec, ...]
    header_dtype: np.dtype
    sample_prefix: tuple[FieldSpec, ...]
    sample_prefix_dtype: np.dtype


@dataclass(frozen=True)
class Schema:
    format_version: int
    framing: Framing
    messages: dict[int, MessageSpec]
    enums: dict[str, Enum]
    prefixes: dict[str, PrefixSpec]

    def message(self, name_or_id: str | int) -> MessageSpec:
        if isinstance(name_or_id, int):
            return self.messages[name_or_id]
        for spec in self.messages.values():
            if spec.name == name_or_id:
                return spec
        raise KeyError(f"no message named {name_or_id!r}")


def schema_path() -> Path:
    """messages.toml: packaged inside `recorder` in a wheel, at the repository root otherwise."""
    packaged = resources.files("recorder").joinpath("schemas", "messages.toml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "schemas" / "messages.toml"


def _enum(name: str, raw: dict) -> Enum:
    values = {int(k): v for k, v in raw.items() if k != "unknown"}
    return Enum(name, values, raw.get("unknown"))


def parse(raw: dict) -> Schema:
    fr = raw["framing"]
    header = _fields(fr["header"])
    sample_prefix = _fields(raw["sample_prefix"]["fields"])
    framing = Framing(
        magic=fr["magic"].encode("ascii"),
        header_size=fr["header_size"],
        max_payload_length=fr["max_payload_length"],
        opaque_flag=fr["opaque_flag"],
        reserved_flags_mask=fr["reserved_flags_mask"],
        header=header,
        header_dtype=packed_dtype(header),
        sample_prefix=sample_prefix,
        sample_prefix_dtype=packed_dtype(sample_prefix),
    )
    if framing.header_dtype.itemsize != framing.header_size:
        raise ValueError("schema: header fields do not add up to header_size")

    enums = {name: _enum(name, values) for name, values in raw.get("enums", {}).items()}
    prefixes = {}
    for name, p in raw.get("prefixes", {}).items():
        fields = _fields(p["fields"])
        dtype = packed_dtype(fields)
        if dtype.itemsize != p["size"]:
            raise ValueError(f"schema: prefix {name} fields add up to {dtype.itemsize}, not {p['size']}")
        prefixes[name] = PrefixSpec(
            name=name, size=p["size"], fields=fields, label_field=p.get("label_field"),
            label=p.get("label"), rule=p.get("rule"), description=p.get("description", ""),
            dtype=dtype,
        )

    messages = {}
    for m in raw["messages"]:
        if m["id"] in messages:
            raise ValueError(f"schema: message id {m['id']:#06x} defined twice")
        if m["kind"] == "samples":
            fields = _fields(m["fields"])
            spec = MessageSpec(
                id=m["id"], name=m["name"], kind="samples", stream=m["stream"],
                description=m.get("description", ""), fields=fields,
                sources={int(k): v for k, v in m.get("sources", {}).items()},
                source_label_format=m.get("source_label", "{source}"),
                split_by_source=m.get("split_by_source", False),
                time_field=m.get("time_field", "timestamp_ns"),
                dtype=packed_dtype(fields),
            )
            if spec.time_field not in spec.dtype.names:
                raise ValueError(f"schema: {spec.name} has no time field {spec.time_field}")
        elif m["kind"] == "blob":
            spec = MessageSpec(
                id=m["id"], name=m["name"], kind="blob", stream=m["stream"],
                description=m.get("description", ""), prefix=prefixes[m["prefix"]],
            )
        else:
            raise ValueError(f"schema: message {m['name']} has unknown kind {m['kind']!r}")
        messages[spec.id] = spec
    return Schema(raw["format_version"], framing, messages, enums, prefixes)


@functools.cache
def load(path: Path | None = None) -> Schema:
    with open(path or schema_path(), "rb") as f:
        return parse(tomllib.load(f))
