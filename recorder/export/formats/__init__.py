"""Export formats: one module each, behind one interface.

A format module has `NAME`, `SUFFIX` (the output's file suffix, or "" for a folder) and
`write(job, out, progress) -> dict`: it reads what `job` (recorder.export.job.ExportJob) gives,
writes one output at `out` (a file, or a folder it creates), calls `progress(rows)` as rows are
done, and returns what it wrote (counts per stream, files) for the summary. The format never
sees the final name: the export renames its output into place once it is whole.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module, imported when asked for: a format's library (rerun-sdk, say) loads only when used.
FORMATS = {
    "parquet": "parquet",
    "mp4": "mp4",
    "mcap": "mcap",
    "rerun": "rerun",
    "lerobot": "lerobot",
}


def load(name: str) -> ModuleType:
    if name not in FORMATS:
        raise KeyError(f"unknown format {name!r}: choose one of {', '.join(FORMATS)}")
    return importlib.import_module(f".{FORMATS[name]}", __name__)


def available() -> list[str]:
    """The formats whose module exists in this version."""
    found = []
    for name in FORMATS:
        try:
            load(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(__name__):
                continue
            found.append(name)  # present, its library missing: say so when it is used
        else:
            found.append(name)
    return found
