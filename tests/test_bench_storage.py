"""The storage benchmark lives with the other benchmarks: the storage package stands alone (it
never imports the simulator), and `python -m recorder.bench.storage` still measures."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import recorder.storage


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, relative imports resolved against its package."""
    package = ["recorder", *path.parent.relative_to(Path(recorder.__file__).parent).parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.add(".".join([*base, *([node.module] if node.module else [])]))
    return found


def test_storage_never_imports_the_simulator():
    folder = Path(recorder.storage.__file__).parent
    offenders = {path.name: sorted(m for m in imported_modules(path) if m.startswith("recorder.sim"))
                 for path in sorted(folder.rglob("*.py"))}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_storage_benchmark_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "recorder.bench.storage", "--seconds", "1", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for needle in ("BYTE_STREAM_SPLIT + DELTA ints (chosen)", "blob zstd, one frame per blob",
                   "write() all records", "write() sample records only"):
        assert needle in done.stdout, needle
    assert list(tmp_path.iterdir()) == []  # the throughput runs clean up after themselves
