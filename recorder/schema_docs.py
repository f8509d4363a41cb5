"""Renders schemas/messages.md from schemas/messages.toml, so the docs cannot drift from the layouts.

    python -m recorder.schema_docs          # rewrite schemas/messages.md
    python -m recorder.schema_docs --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
import tomllib

from .schema import FieldSpec, Schema, load, schema_path


def _type(f: FieldSpec) -> str:
    return f.type + "".join(f"[{d}]" for d in f.shape)


def _field_table(fields: tuple[FieldSpec, ...], schema: Schema) -> list[str]:
    rows = ["| offset | type | field | unit | meaning |", "|---|---|---|---|---|"]
    offset = 0
    for f in fields:
        meaning = f.description
        if f.enum:
            values = ", ".join(f"{k} {v}" for k, v in schema.enums[f.enum].values.items())
            meaning += f" ({values}{'; others are malformed' if f.strict else ''})"
        if f.range:
            meaning += f" ({f.range[0]} to {f.range[1]})"
        rows.append(f"| {offset} | {_type(f)} | `{f.name}` | {f.unit or ''} | {meaning} |")
        offset += f.size
    return rows


def render(schema: Schema | None = None, decisions: list[dict] | None = None) -> str:
    schema = schema or load()
    if decisions is None:
        with open(schema_path(), "rb") as fh:
            decisions = tomllib.load(fh).get("decisions", [])
    fr = schema.framing
    out = [
        "# Message layouts, version 1",
        "",
        "Generated from `messages.toml` by `python -m recorder.schema_docs`; do not edit by hand.",
        "The protocol itself (HTTP, receiver rules, time domain mapping) is described in",
        "[`protocol.md`](protocol.md); this page lists every layout and the recorder's decisions",
        "where the protocol is silent. All integers and floats are little-endian and packed.",
        "",
        "## Record header",
        "",
        f"Magic `{fr.magic.decode()}`, {fr.header_size} bytes, payload at most {fr.max_payload_length} bytes.",
        "",
        *_field_table(fr.header, schema),
        "",
        "## Sample messages",
        "",
        "Payload: a 4-byte prefix, then `count` samples of the layout below.",
        "",
        *_field_table(fr.sample_prefix, schema),
        "",
    ]
    for spec in schema.messages.values():
        if not spec.is_samples:
            continue
        sources = ", ".join(f"{k} `{v}`" for k, v in spec.sources.items()) or "sensor index"
        out += [
            f"### {spec.id:#06x} {spec.name}",
            "",
            f"{spec.description} Stored stream: `{spec.stream}`"
            + (" (one per source)" if spec.split_by_source else "") + f". Sources: {sources}; "
            f"others are labelled `{spec.source_label_format}`. Sample size {spec.sample_size} bytes; "
            f"time field `{spec.time_field}`.",
            "",
            *_field_table(spec.fields, schema),
            "",
        ]
    out += ["## Blob messages", "",
            "Payload: a fixed prefix, then bytes up to the end of the payload. Capture time is the "
            "header's `timestamp_ns`.", ""]
    for spec in schema.messages.values():
        if spec.is_samples:
            continue
        out += [f"- {spec.id:#06x} {spec.name}: {spec.description} Prefix `{spec.prefix.name}`.", ""]
    for prefix in schema.prefixes.values():
        label = (f"The stream is named by `{prefix.label_field}`." if prefix.label_field
                 else f"Stream label `{prefix.label}`.")
        out += [f"### Prefix `{prefix.name}` ({prefix.size} bytes)", "", f"{prefix.description} {label}", "",
                *_field_table(prefix.fields, schema), ""]
    out += ["## Enumerations", ""]
    for enum in schema.enums.values():
        values = ", ".join(f"{k} `{v}`" for k, v in enum.values.items())
        out += [f"- `{enum.name}`: {values}" + (f"; others `{enum.unknown}`" if enum.unknown else ""), ""]
    out += ["## Decisions where the specification is silent", ""]
    for d in decisions:
        out += [f"- **{d['topic']}.** {d['text']}", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    target = schema_path().with_name("messages.md")
    text = render()
    if "--check" in argv:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is out of date: run python -m recorder.schema_docs", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
