"""The README's inline examples of bench modules (`.venv/bin/python -m ...`), run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def run_readme_example(module: str, cwd: Path) -> tuple[list[str], str]:
    """The README's example of `python -m <module> ...`, run with the repository's own
    interpreter in `cwd`: its words and what it printed. It must exit 0."""
    pattern = rf"`\.venv/bin/(python -m {re.escape(module)} [^`]*)`"
    words = " ".join(re.search(pattern, README.read_text()).group(1).split()).split(" ")
    done = subprocess.run([sys.executable, *words[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return words, done.stdout
